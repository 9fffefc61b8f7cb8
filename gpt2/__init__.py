"""GPT-2 from scratch: the model, its tokenizer, weight loading, generation, hook points and analysis."""

from .config import EOT_ID, PRESETS, VOCAB_SIZE, GPT2Config
from .generate import SamplingError, SamplingSettings, generate, sample_next, stream_tokens
from .hook_points import HookPoint
from .hooks import UnknownHookError, hook_dict, hooks, run_with_cache
from .model import GPT2, MLP, CausalSelfAttention, KVCache, TransformerBlock
from .paths import BUNDLED_MODEL_DIR, BUNDLED_MODEL_NAME
from .tokenizer import IncrementalDecoder, Tokenizer, TokenizerError, get_tokenizer
from .weights import CheckpointError, HubUnavailableError, ModelLoadError, ModelTooLargeError, UnknownModelError

load_pretrained = GPT2.from_pretrained

__all__ = [
    "BUNDLED_MODEL_DIR",
    "BUNDLED_MODEL_NAME",
    "EOT_ID",
    "GPT2",
    "MLP",
    "PRESETS",
    "VOCAB_SIZE",
    "CausalSelfAttention",
    "CheckpointError",
    "GPT2Config",
    "HookPoint",
    "HubUnavailableError",
    "IncrementalDecoder",
    "KVCache",
    "ModelLoadError",
    "ModelTooLargeError",
    "SamplingError",
    "SamplingSettings",
    "Tokenizer",
    "TokenizerError",
    "TransformerBlock",
    "UnknownHookError",
    "UnknownModelError",
    "generate",
    "get_tokenizer",
    "hook_dict",
    "hooks",
    "load_pretrained",
    "run_with_cache",
    "sample_next",
    "stream_tokens",
]
