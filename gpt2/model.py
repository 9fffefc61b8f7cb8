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
is hooked on the calling thread; otherwise it runs the fused SDPA kernel (see `AttentionPath`).

The per-head hook points cost nothing unless hooked. `hook_q_input`, `hook_k_input`, `hook_v_input`
hold the stream entering the block once per head, before `ln_1`, as that head's query, key or value
reads it; while one is hooked the block applies `ln_1` and the projections head by head, so a hook can
change what one head's keys see and nothing else. `attn.hook_result` holds each head's output through
its own columns of `c_proj`, without the bias; while it is hooked, the attention output is their sum
plus the bias. `hook_mlp_in` is the stream entering `ln_2`.
"""

import enum
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .config import GPT2Config
from .generate import KVCache, SamplingSettings, generate, stream_tokens
from .hook_points import HookPoint
from .weights import check_state, read_checkpoint, write_checkpoint

QUERY_BLOCK = 128  # queries whose probabilities explicit attention computes at a time


class MatVecLinear(nn.Linear):
    """`nn.Linear` that multiplies a single row as a matrix-vector product: each decoding step's
    case, where the general matrix product reads the same weight more slowly."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.weight, self.bias
        if x.numel() != self.in_features or x.dtype != weight.dtype or torch.is_autocast_enabled(x.device.type):
            return F.linear(x, weight, bias)
        row = x.reshape(-1)
        out = torch.mv(weight, row) if bias is None else torch.addmv(bias, weight, row)
        return out.view(*x.shape[:-1], self.out_features)


def _dropout(dropout: nn.Dropout, x: torch.Tensor) -> torch.Tensor:
    # skips the module call where dropout is the identity: a decoding step passes three a layer
    return dropout(x) if dropout.training and dropout.p else x


class AttentionPath(enum.Enum):
    """How attention computes its output; `CausalSelfAttention._choose_path` picks one per call."""

    FUSED = "fused"  # SDPA's kernel: nothing on this thread reads the probabilities
    SCORES = "scores"  # the whole scores (B, H, T, T), then the softmax: the scores are hooked, or a gradient flows
    PATTERN = "pattern"  # the probabilities a block of queries at a time, put together whole for hook_pattern
    ROWS = "rows"  # a block of queries at a time and never whole: only hook_pattern_rows is hooked


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention. `block_size` is the spec's argument and is not kept: the
    causal mask is made for each call's query and key lengths."""

    def __init__(self, embed_dim: int, num_heads: int, block_size: int, dropout_p: float = 0.0) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.dropout_p = dropout_p
        self.c_attn = MatVecLinear(embed_dim, 3 * embed_dim)  # fused query, key, value
        self.c_proj = MatVecLinear(embed_dim, embed_dim)
        self.attn_dropout = nn.Dropout(dropout_p)
        self.resid_dropout = nn.Dropout(dropout_p)
        self.hook_q, self.hook_k, self.hook_v = HookPoint(), HookPoint(), HookPoint()  # (B, T, H, D)
        self.hook_attn_scores = HookPoint()  # (B, H, T_query, T_key), scaled, future = -inf
        self.hook_pattern = HookPoint()  # (B, H, T_query, T_key), the probabilities
        # (B, H, n, K): the probabilities of n consecutive queries, block after block from query 0
        self.hook_pattern_rows = HookPoint(per_block=True)
        self.hook_z = HookPoint()  # (B, T, H, D): each head's output, before c_proj mixes them
        self.hook_result = HookPoint()  # (B, T, H, C): each head's output through its columns of c_proj
        self.layer_idx = 0  # set by GPT2 so a shared KVCache knows which slot is ours

    def forward(self, x, kv_cache: KVCache | None = None) -> torch.Tensor:
        """`x` is the output of the block's first LayerNorm, (B, T, C), or three of them, (B, T, H, C)
        each: what each head's query, key and value read (see `TransformerBlock`)."""
        B, T, C = x.shape if isinstance(x, torch.Tensor) else (*x[0].shape[:2], x[0].size(-1))
        path = self._choose_path(x)
        q, k, v = self._heads(x, float32=path is not AttentionPath.FUSED)
        q, k, v = self.hook_q(q), self.hook_k(k), self.hook_v(v)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, H, T, D)
        if kv_cache is not None:
            k, v = kv_cache.update(self.layer_idx, k, v)  # (B, H, T_key, D)
        if path is AttentionPath.FUSED:
            z = self._fused_attention(q, k, v)
        elif path is AttentionPath.ROWS:  # the whole pattern is never held
            z = self._attend(self.probability_blocks(q, k), v)
        else:
            z = self._attend(self._pattern_blocks(path, q, k), v)
        z = self.hook_z(z.transpose(1, 2))  # (B, T, H, D)
        if self.hook_result.is_hooked():
            w_o = self.c_proj.weight.view(C, self.num_heads, self.head_dim)  # (C, H, D): each head's columns
            result = self.hook_result(torch.einsum("bthd,chd->bthc", z, w_o.to(z.dtype)))  # (B, T, H, C)
            out = result.sum(2) + self.c_proj.bias.to(result.dtype)
        else:
            out = self.c_proj(z.reshape(B, T, C))
        return _dropout(self.resid_dropout, out)

    def _choose_path(self, x: torch.Tensor) -> AttentionPath:
        """The fused kernel unless a hook on this thread reads the scores or the probabilities; then
        the whole scores where they are hooked or a gradient flows, else blocks of queries."""
        scores, pattern, rows = (
            p.is_hooked() for p in (self.hook_attn_scores, self.hook_pattern, self.hook_pattern_rows)
        )
        if not (scores or pattern or rows):
            return AttentionPath.FUSED
        grad_in = any(t.requires_grad for t in ([x] if isinstance(x, torch.Tensor) else x))
        if scores or (torch.is_grad_enabled() and (grad_in or self.c_attn.weight.requires_grad)):
            return AttentionPath.SCORES
        return AttentionPath.PATTERN if pattern else AttentionPath.ROWS

    def attention_pattern(self, x: torch.Tensor, heads: slice = slice(None)) -> torch.Tensor:
        """The probabilities (B, n, T, T) of the `heads` (all by default) for this layer's input
        `x` (B, T, C), the output of the block's first LayerNorm; float32, no hook runs."""
        with torch.no_grad():
            q, k, _ = self._heads(x, float32=True, heads=heads)
            return self._causal_probs(q.transpose(1, 2), k.transpose(1, 2))

    def probability_blocks(self, q: torch.Tensor, k: torch.Tensor):
        """Yield (query rows, visible keys, probabilities (B, H, n, T_visible)) for blocks of
        `QUERY_BLOCK` queries, from queries (B, H, T_query, D) and keys (B, H, T_key, D), in float32.
        A block never computes the keys after its last query, so this skips most of the masked
        future, and no (T, T) map is ever held whole."""
        for rows, keys in _query_blocks(q.size(2), k.size(2)):
            yield rows, keys, torch.softmax(self._masked_scores(q[:, :, rows], k[:, :, keys]), dim=-1)

    def _heads(self, x: torch.Tensor, float32: bool, heads: slice = slice(None)):
        """Queries, keys, values, each (B, T, n, D), of the `heads` (all by default). With `float32`,
        in float32 also under autocast: attention probabilities that people read move by several
        hundredths when sharp heads see bf16 keys. `x` may be three (B, T, H, C) inputs, one per
        projection: each head then projects its own row."""
        H, D = self.num_heads, self.head_dim
        if not isinstance(x, torch.Tensor):
            return self._split_heads(x, float32)
        n = len(range(H)[heads])
        project = self.c_attn
        if n != H:  # only these heads' rows of the fused projection, (3 * n * D, C)
            weight = self.c_attn.weight.view(3, H, D, -1)[:, heads].flatten(0, 2)
            bias = self.c_attn.bias.view(3, H, D)[:, heads].flatten()
            project = lambda inputs: F.linear(inputs, weight.to(inputs.dtype), bias.to(inputs.dtype))
        if float32 and torch.is_autocast_enabled(x.device.type):
            with torch.autocast(x.device.type, enabled=False):
                qkv = project(x.float())
        else:
            qkv = project(x)
        B, T, _ = x.shape
        return qkv.view(B, T, 3, n, D).unbind(2)

    def _split_heads(self, inputs, float32: bool):
        """Queries, keys, values (B, T, H, D) from what each head's query, key and value read, three
        (B, T, H, C): each head projects its own row."""
        H, D = self.num_heads, self.head_dim
        weight, bias = self.c_attn.weight.view(3, H, D, -1), self.c_attn.bias.view(3, H, D)

        def project(part: int, x: torch.Tensor) -> torch.Tensor:
            return torch.einsum("bthc,hdc->bthd", x, weight[part].to(x.dtype)) + bias[part].to(x.dtype)

        device = inputs[0].device.type
        if float32 and torch.is_autocast_enabled(device):
            with torch.autocast(device, enabled=False):
                return tuple(project(part, x.float()) for part, x in enumerate(inputs))
        return tuple(project(part, x) for part, x in enumerate(inputs))

    def _masked_scores(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Scaled scores (B, H, T_query, T_key) in float32, the future set to -inf."""
        with torch.autocast(q.device.type, enabled=False):
            scores = (q.float() * (1.0 / math.sqrt(self.head_dim))) @ k.float().transpose(-2, -1)
        # the future lies in the last T_query keys only: key T_key - T_query + i is query i's own position
        T_query = q.size(2)
        future = torch.ones(T_query, T_query, dtype=torch.bool, device=q.device).triu(1)
        scores[..., scores.size(-1) - T_query :].masked_fill_(future, float("-inf"))
        return scores

    def _fused_attention(self, q, k, v) -> torch.Tensor:
        T_query, T_key = q.size(2), k.size(2)
        dropout_p = self.dropout_p if self.training else 0.0
        if T_query in (1, T_key):  # SDPA's causal mask where the lengths agree; one new query sees every key
            return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=T_query == T_key)
        # SDPA's is_causal aligns the mask to the top-left corner, wrong when the queries are the newest
        # tokens: query i sits at position T_key - T_query + i and sees the keys up to it
        mask = torch.ones(T_query, T_key, dtype=torch.bool, device=q.device).tril(T_key - T_query)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)

    def _pattern_blocks(self, path: AttentionPath, q, k):
        """Yield (query rows, keys, probabilities) cut from the whole pattern (B, H, T_query, T_key),
        made by `path` (SCORES or PATTERN) and passed through its hook points first."""
        if path is AttentionPath.SCORES:
            masked = self._masked_scores(q, k)
            scores = self.hook_attn_scores(masked)
            computed, causal = torch.softmax(scores, dim=-1), scores is masked
        else:
            computed, causal = self._causal_probs(q, k), True
        pattern = self.hook_pattern(computed)
        # Where no hook replaced the scores or the pattern, the future is 0 and each block of queries
        # needs only the keys it sees; otherwise it takes all of them.
        causal = causal and pattern is computed
        for rows, visible in _query_blocks(q.size(2), k.size(2)):
            keys = visible if causal else slice(None)
            yield rows, keys, pattern[:, :, rows, keys]

    def _attend(self, blocks, v) -> torch.Tensor:
        """Each head's output (B, H, T_query, D) from blocks of (query rows, keys, probabilities);
        each block passes `hook_pattern_rows` first."""
        z = []
        for _, keys, probs in blocks:
            z.append(self.attn_dropout(self.hook_pattern_rows(probs)).to(v.dtype) @ v[:, :, keys])
        return torch.cat(z, dim=2)

    def _causal_probs(self, q, k) -> torch.Tensor:
        """The probabilities (B, H, T_query, T_key) in float32, block by block (see
        `probability_blocks`); the future is exactly 0."""
        attn_probs = q.new_zeros(*q.shape[:3], k.size(2), dtype=torch.float32)
        for rows, keys, probs in self.probability_blocks(q, k):
            attn_probs[:, :, rows, keys] = probs
        return attn_probs


def _query_blocks(T_query: int, T_key: int):
    """(query rows, the keys they can see) for blocks of `QUERY_BLOCK` queries; the queries are the
    last T_query of T_key positions."""
    for start in range(0, T_query, QUERY_BLOCK):
        end = min(start + QUERY_BLOCK, T_query)
        yield slice(start, end), slice(0, T_key - T_query + end)


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
        return _dropout(self.dropout, self.c_proj(hidden))


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
