"""GPT-2 from scratch: model, tokenizer, weight loading, generation and attention capture."""

from .config import PRESETS, GPT2Config
from .generate import SamplingError, generate, sample_next, stream_tokens
from .hooks import HookPoint, capture_attention
from .model import GPT2, MLP, CausalSelfAttention, KVCache, TransformerBlock
from .tokenizer import IncrementalDecoder, Tokenizer, TokenizerError, get_tokenizer
from .weights import (
    CheckpointError,
    HubUnavailableError,
    ModelLoadError,
    ModelTooLargeError,
    UnknownModelError,
    load_pretrained,
    save_pretrained,
)

__all__ = [
    "GPT2",
    "MLP",
    "PRESETS",
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
    "Tokenizer",
    "TokenizerError",
    "TransformerBlock",
    "UnknownModelError",
    "capture_attention",
    "generate",
    "get_tokenizer",
    "load_pretrained",
    "sample_next",
    "save_pretrained",
    "stream_tokens",
]
