"""GPT-2, written out in full: embeddings, pre-LayerNorm blocks of causal attention and MLP, a tied LM head.

The four classes keep the constructor signatures of the project's spec; `forward(x)` / `forward(idx)`
return plain tensors. Everything extra (KV cache, hook points, loading, generation) is an optional
keyword argument or another method.

Hook points carry TransformerLens's names and shapes (B = batch, T = positions, H = heads,
D = head_dim, C = embed_dim):

    hook_embed, hook_pos_embed                                        (B, T, C)
    blocks.{l}.hook_resid_pre, hook_attn_out, hook_resid_mid,
              hook_mlp_in, hook_mlp_out, hook_resid_post              (B, T, C)
    blocks.{l}.hook_q_input, hook_k_input, hook_v_input               (B, T, H, C)
    blocks.{l}.attn.hook_q, hook_k, hook_v, hook_z                    (B, T, H, D)
    blocks.{l}.attn.hook_result                                       (B, T, H, C)
    blocks.{l}.attn.hook_attn_scores, hook_pattern                    (B, H, T_query, T_key)
    blocks.{l}.mlp.hook_pre, hook_post                                (B, T, 4C)

`hook_attn_scores` holds the scaled scores with the future at -inf, `hook_pattern` the softmax
probabilities. One hook point is ours, not TransformerLens's: `blocks.{l}.attn.hook_pattern_rows`
sees the probabilities a block of consecutive queries at a time, (B, H, n, K) over keys 0..K-1, the
blocks in order from query 0, so a pass can read (or change) every head's attention without ever
holding a (T, T) map. Attention computes the probabilities explicitly only while one of those three
is hooked on the calling thread; otherwise it runs the fused SDPA kernel (see `gpt2.attention`).

The per-head hook points cost nothing unless hooked. `hook_q_input`, `hook_k_input`, `hook_v_input`
hold the stream entering the block once per head, before `ln_1`, as that head's query, key or value
reads it; while one is hooked the block applies `ln_1` and the projections head by head, so a hook can
change what one head's keys see and nothing else. `attn.hook_result` holds each head's output through
its own columns of `c_proj`, without the bias; while it is hooked, the attention output is their sum
plus the bias. `hook_mlp_in` is the stream entering `ln_2`.
"""

import math
from collections.abc import Iterator

import torch
from torch import nn

from .attention import CausalSelfAttention, MatVecLinear, maybe_dropout
from .config import GPT2Config
from .generate import KVCache, SamplingSettings, generate, stream_tokens
from .hook_points import HookPoint
from .weights import check_state, read_checkpoint, write_checkpoint


class MLP(nn.Module):
    def __init__(self, embed_dim: int, dropout_p: float = 0.0) -> None:
        super().__init__()
        self.c_fc = MatVecLinear(embed_dim, 4 * embed_dim)
        self.gelu = nn.GELU(approximate="tanh")  # GPT-2's "gelu_new"
        self.c_proj = MatVecLinear(4 * embed_dim, embed_dim)
        self.dropout = nn.Dropout(dropout_p)
        self.hook_pre, self.hook_post = HookPoint(), HookPoint()  # (B, T, 4C): before and after the GELU

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.hook_post(self.gelu(self.hook_pre(self.c_fc(x))))
        return maybe_dropout(self.dropout, self.c_proj(hidden))


class TransformerBlock(nn.Module):
    def __init__(self, embed_dim: int, num_heads: int, block_size: int, dropout_p: float = 0.0) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(embed_dim, eps=1e-5)
        self.attn = CausalSelfAttention(embed_dim, num_heads, block_size, dropout_p)
        self.ln_2 = nn.LayerNorm(embed_dim, eps=1e-5)
        self.mlp = MLP(embed_dim, dropout_p)
        # the residual stream, (B, T, C): entering, after attention, leaving; and what each part adds
        self.hook_resid_pre, self.hook_resid_mid, self.hook_resid_post = HookPoint(), HookPoint(), HookPoint()
        self.hook_attn_out, self.hook_mlp_out = HookPoint(), HookPoint()
        self.hook_mlp_in = HookPoint()  # (B, T, C): the stream entering ln_2
        # (B, T, H, C): the stream entering ln_1, once per head, as its query, key or value reads it
        self.hook_q_input, self.hook_k_input, self.hook_v_input = HookPoint(), HookPoint(), HookPoint()

    def forward(self, x: torch.Tensor, kv_cache: KVCache | None = None) -> torch.Tensor:
        x = self.hook_resid_pre(x)
        split = any(p.is_hooked() for p in (self.hook_q_input, self.hook_k_input, self.hook_v_input))
        attn_in = self._per_head_inputs(x) if split else self.ln_1(x)
        x = self.hook_resid_mid(x + self.hook_attn_out(self.attn(attn_in, kv_cache=kv_cache)))
        return self.hook_resid_post(x + self.hook_mlp_out(self.mlp(self.ln_2(self.hook_mlp_in(x)))))

    def _per_head_inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """`ln_1` of the stream as each head's query, key and value read it: three (B, T, H, C), each
        a copy of `x` per head passed through its hook point first."""
        B, T, C = x.shape
        per_head = x[:, :, None].expand(B, T, self.attn.num_heads, C)
        points = (self.hook_q_input, self.hook_k_input, self.hook_v_input)
        return tuple(self.ln_1(point(per_head.clone())) for point in points)


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
        self.hook_embed, self.hook_pos_embed = HookPoint(), HookPoint()  # (B, T, C)
        self.drop = nn.Dropout(dropout_p)
        self.blocks = nn.ModuleList(
            TransformerBlock(embed_dim, num_heads, block_size, dropout_p) for _ in range(num_layers)
        )
        for i, block in enumerate(self.blocks):
            block.attn.layer_idx = i
        self.ln_f = nn.LayerNorm(embed_dim, eps=1e-5)
        self.lm_head = MatVecLinear(embed_dim, vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied, as in GPT-2
        for name, module in self.named_modules():
            if isinstance(module, HookPoint):
                module.name = name

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
        return cls(**config.to_dict())

    @classmethod
    def from_pretrained(cls, name_or_path, dtype: torch.dtype = torch.float32, device=None) -> "GPT2":
        """The bundled model (`"shakespeare"`), a Hub name (`gpt2`, `gpt2-medium`, ...) or a local
        directory in Hugging Face's layout, in eval mode. Errors are `gpt2.ModelLoadError`s."""
        checkpoint = read_checkpoint(name_or_path, dtype)
        with torch.device("meta"):
            model = cls.from_config(checkpoint.config)
        expected = {name: t.shape for name, t in model.state_dict().items() if name != "lm_head.weight"}
        check_state(checkpoint.state, expected, checkpoint.path)
        state = {name: t.to(dtype=dtype, device=device) for name, t in checkpoint.state.items()}
        model.load_state_dict(state, strict=False, assign=True)
        model.lm_head.weight = model.wte.weight  # assign=True replaced wte's parameter: tie again
        return model.eval()

    def save_pretrained(self, directory, dtype: torch.dtype = torch.float32) -> None:
        """Write `config.json` + `model.safetensors` in Hugging Face's GPT-2 layout."""
        write_checkpoint(self.config, self.state_dict(), directory, dtype)

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
        start = kv_cache.length if kv_cache is not None else 0
        x = self.run_blocks(self.embed(idx, start), kv_cache=kv_cache)
        if kv_cache is not None:
            kv_cache.length += idx.size(1)
        return self.unembed(x, only_last=only_last, return_hidden=return_hidden)

    def embed(self, idx: torch.Tensor, start: int = 0) -> torch.Tensor:
        """The residual stream entering block 0, (B, T, C): token plus position embeddings of `idx`
        (B, T), whose first token sits at position `start`."""
        B, T = idx.shape
        if start + T > self.config.block_size:
            raise ValueError(f"sequence of {start + T} tokens is longer than block_size {self.config.block_size}")
        pos = torch.arange(start, start + T, device=idx.device)
        x = self.hook_embed(self.wte(idx)) + self.hook_pos_embed(self.wpe(pos).expand(B, T, -1))
        return self.drop(x)

    def run_blocks(self, x: torch.Tensor, start_layer: int = 0, kv_cache: KVCache | None = None) -> torch.Tensor:
        """The residual stream (B, T, C) after the last block, from `x` entering block `start_layer`:
        what an intervention at a later layer reruns, from a cached stream."""
        for block in self.blocks[start_layer:]:
            x = block(x, kv_cache=kv_cache)
        return x

    def unembed(self, x: torch.Tensor, *, only_last: bool = False, return_hidden: bool = False) -> torch.Tensor:
        """Logits from the residual stream after the last block: the final LayerNorm, then the tied head."""
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

    def generate(self, idx: torch.Tensor, max_new_tokens: int, **sampling) -> torch.Tensor:
        """`idx` (B, T) followed by `max_new_tokens` sampled tokens; `sampling` holds the fields of
        `gpt2.SamplingSettings` (temperature, top_k, top_p, seed, stop_at_eot)."""
        return generate(self, idx, SamplingSettings(max_new_tokens=max_new_tokens, **sampling))

    def stream(self, prompt_ids, max_new_tokens: int, **sampling) -> Iterator[int]:
        """Yield each new token id as it is sampled (the options of `generate`)."""
        return stream_tokens(self, prompt_ids, SamplingSettings(max_new_tokens=max_new_tokens, **sampling))
