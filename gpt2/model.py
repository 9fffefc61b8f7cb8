"""GPT-2, written out in full: embeddings, pre-LayerNorm blocks of causal attention and MLP, a tied LM head.

The four classes keep the constructor signatures of the project's spec; `forward(x)` / `forward(idx)`
return plain tensors. Everything extra (KV cache, hooks, loading, generation) is an optional keyword
argument or another method.
"""

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .config import GPT2Config
from .hooks import HookPoint


class KVCache:
    """Keys and values of every layer, pre-allocated to `max_len` tokens and written in place."""

    def __init__(self, config: GPT2Config, batch_size: int, max_len: int, device=None, dtype=torch.float32):
        shape = (config.num_layers, batch_size, config.num_heads, max_len, config.head_dim)
        self.keys = torch.empty(shape, device=device, dtype=dtype)  # (L, B, H, max_len, D)
        self.values = torch.empty(shape, device=device, dtype=dtype)
        self.max_len = max_len
        self.length = 0  # tokens stored so far

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this layer's new keys/values (B, H, T, D) after the cached ones; return all of them."""
        end = self.length + k.size(2)
        if end > self.max_len:
            raise ValueError(f"KV cache holds {self.max_len} tokens; {end} requested")
        self.keys[layer, :, :, self.length : end] = k
        self.values[layer, :, :, self.length : end] = v
        return self.keys[layer, :, :, :end], self.values[layer, :, :, :end]


class CausalSelfAttention(nn.Module):
    def __init__(self, embed_dim: int, num_heads: int, block_size: int, dropout_p: float = 0.0) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.block_size = block_size
        self.dropout_p = dropout_p
        self.c_attn = nn.Linear(embed_dim, 3 * embed_dim)  # fused query, key, value
        self.c_proj = nn.Linear(embed_dim, embed_dim)
        self.attn_dropout = nn.Dropout(dropout_p)
        self.resid_dropout = nn.Dropout(dropout_p)
        self.hook_pattern = HookPoint()  # attention probabilities, (B, H, T_query, T_key)
        self.layer_idx = 0  # set by GPT2 so a shared KVCache knows which slot is ours

    def forward(self, x: torch.Tensor, kv_cache: KVCache | None = None) -> torch.Tensor:
        B, T, C = x.shape
        explicit = self.hook_pattern.has_hooks()
        q, k, v = self._project(x, float32=explicit).split(C, dim=2)
        q = q.view(B, T, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, T, D)
        k = k.view(B, T, self.num_heads, self.head_dim).transpose(1, 2)
        v = v.view(B, T, self.num_heads, self.head_dim).transpose(1, 2)
        if kv_cache is not None:
            k, v = kv_cache.update(self.layer_idx, k, v)  # (B, H, T_key, D)

        if explicit:
            y = self._explicit_attention(q, k, v)
        else:
            y = self._fused_attention(q, k, v)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))

    def _project(self, x: torch.Tensor, float32: bool) -> torch.Tensor:
        """Fused queries, keys, values (B, T, 3C). With `float32`, in float32 also under autocast:
        attention probabilities that people read move by several hundredths when sharp heads see
        bf16 keys."""
        if not (float32 and torch.is_autocast_enabled(x.device.type)):
            return self.c_attn(x)
        with torch.autocast(x.device.type, enabled=False):
            return self.c_attn(x.float())

    def _causal_mask(self, T_query: int, T_key: int, device) -> torch.Tensor:
        # The queries are the last T_query positions of T_key: query i sits at position T_key - T_query + i
        # and sees keys 0..that position (the mask is aligned to the bottom-right corner).
        return torch.ones(T_query, T_key, dtype=torch.bool, device=device).tril(diagonal=T_key - T_query)

    def _fused_attention(self, q, k, v) -> torch.Tensor:
        T_query, T_key = q.size(2), k.size(2)
        dropout_p = self.dropout_p if self.training else 0.0
        if T_query == T_key:
            return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
        # SDPA's is_causal aligns the mask to the top-left corner, wrong when queries are the newest tokens.
        mask = None if T_query == 1 else self._causal_mask(T_query, T_key, q.device)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)

    def _explicit_attention(self, q, k, v) -> torch.Tensor:
        T_query, T_key = q.size(2), k.size(2)
        # scores and probabilities in float32 even under bf16 autocast: the probabilities are what people read
        with torch.autocast(q.device.type, enabled=False):
            scores = (q.float() * (1.0 / math.sqrt(self.head_dim))) @ k.float().transpose(-2, -1)  # (B, H, Tq, Tk)
            scores.masked_fill_(~self._causal_mask(T_query, T_key, q.device), float("-inf"))
            attn_probs = self.hook_pattern(_softmax(scores))
        return self.attn_dropout(attn_probs).to(v.dtype) @ v  # (B, H, T_query, D)


def _softmax(scores: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dimension; in place when no gradient is needed, which saves allocating
    (and faulting in) a second (B, H, T, T) buffer: most of a long capture pass's time otherwise."""
    if scores.requires_grad:
        return torch.softmax(scores, dim=-1)
    scores.sub_(scores.amax(dim=-1, keepdim=True)).exp_()
    return scores.div_(scores.sum(dim=-1, keepdim=True))


class MLP(nn.Module):
    def __init__(self, embed_dim: int, dropout_p: float = 0.0) -> None:
        super().__init__()
        self.c_fc = nn.Linear(embed_dim, 4 * embed_dim)
        self.gelu = nn.GELU(approximate="tanh")  # GPT-2's "gelu_new"
        self.c_proj = nn.Linear(4 * embed_dim, embed_dim)
        self.dropout = nn.Dropout(dropout_p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class TransformerBlock(nn.Module):
    def __init__(self, embed_dim: int, num_heads: int, block_size: int, dropout_p: float = 0.0) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(embed_dim, eps=1e-5)
        self.attn = CausalSelfAttention(embed_dim, num_heads, block_size, dropout_p)
        self.ln_2 = nn.LayerNorm(embed_dim, eps=1e-5)
        self.mlp = MLP(embed_dim, dropout_p)

    def forward(self, x: torch.Tensor, kv_cache: KVCache | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), kv_cache=kv_cache)
        return x + self.mlp(self.ln_2(x))


class GPT2(nn.Module):
    def __init__(
        self,
        vocab_size: int,
        embed_dim: int,
        num_heads: int,
        num_layers: int,
        block_size: int,
        dropout_p: float = 0.0,
    ) -> None:
        super().__init__()
        self.config = GPT2Config(vocab_size, embed_dim, num_heads, num_layers, block_size, dropout_p)
        self.wte = nn.Embedding(vocab_size, embed_dim)
        self.wpe = nn.Embedding(block_size, embed_dim)
        self.drop = nn.Dropout(dropout_p)
        self.blocks = nn.ModuleList(
            TransformerBlock(embed_dim, num_heads, block_size, dropout_p) for _ in range(num_layers)
        )
        for i, block in enumerate(self.blocks):
            block.attn.layer_idx = i
        self.ln_f = nn.LayerNorm(embed_dim, eps=1e-5)
        self.lm_head = nn.Linear(embed_dim, vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied, as in GPT-2

        self.apply(self._init_weights)
        residual_std = 0.02 / math.sqrt(2 * num_layers)  # GPT-2 scales the residual output projections
        for block in self.blocks:
            nn.init.normal_(block.attn.c_proj.weight, mean=0.0, std=residual_std)
            nn.init.normal_(block.mlp.c_proj.weight, mean=0.0, std=residual_std)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    @classmethod
    def from_config(cls, config: GPT2Config) -> "GPT2":
        return cls(
            config.vocab_size,
            config.embed_dim,
            config.num_heads,
            config.num_layers,
            config.block_size,
            config.dropout_p,
        )

    @classmethod
    def from_pretrained(cls, name_or_path: str, **kwargs) -> "GPT2":
        """A Hub name (`gpt2`, `gpt2-medium`, ...) or a local directory in Hugging Face's layout; eval mode."""
        from .weights import load_pretrained

        return load_pretrained(name_or_path, **kwargs)

    def save_pretrained(self, directory, dtype: torch.dtype = torch.float32) -> None:
        """Write `config.json` + `model.safetensors` in Hugging Face's GPT-2 layout."""
        from .weights import save_pretrained

        save_pretrained(self, directory, dtype=dtype)

    def forward(
        self,
        idx: torch.Tensor,
        kv_cache: KVCache | None = None,
        *,
        only_last: bool = False,
        return_hidden: bool = False,
    ) -> torch.Tensor:
        """Logits (B, T, vocab_size). With `kv_cache`, `idx` holds only the new tokens and the cache
        grows by T. `only_last` returns logits of the last position only, (B, 1, vocab_size);
        `return_hidden` returns the final LayerNorm's output (B, T, embed_dim) instead of logits."""
        B, T = idx.shape
        start = kv_cache.length if kv_cache is not None else 0
        if start + T > self.config.block_size:
            raise ValueError(f"sequence of {start + T} tokens is longer than block_size {self.config.block_size}")
        pos = torch.arange(start, start + T, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))  # (B, T, C)
        for block in self.blocks:
            x = block(x, kv_cache=kv_cache)
        if kv_cache is not None:
            kv_cache.length += T
        x = self.ln_f(x)
        if return_hidden:
            return x
        if only_last:
            x = x[:, -1:, :]
        return self.lm_head(x)

    def new_kv_cache(self, batch_size: int = 1, max_len: int | None = None) -> KVCache:
        weight = self.wte.weight
        return KVCache(self.config, batch_size, max_len or self.config.block_size, weight.device, weight.dtype)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def hook_points(self) -> Iterator[tuple[str, HookPoint]]:
        """(name, module) of every hook point, e.g. `blocks.0.attn.hook_pattern`."""
        return ((name, m) for name, m in self.named_modules() if isinstance(m, HookPoint))

    def generate(self, idx: torch.Tensor, max_new_tokens: int, **kwargs) -> torch.Tensor:
        """Sample `max_new_tokens` after `idx` (B, T); see `gpt2.generate.generate` for the options."""
        from .generate import generate

        return generate(self, idx, max_new_tokens, **kwargs)

    def stream(self, prompt_ids, max_new_tokens: int, **kwargs):
        """Yield each new token id as it is sampled; see `gpt2.generate.stream_tokens`."""
        from .generate import stream_tokens

        return stream_tokens(self, prompt_ids, max_new_tokens, **kwargs)
