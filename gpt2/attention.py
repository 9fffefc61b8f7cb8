"""Causal self-attention, the spec's `CausalSelfAttention`, with the ways it can compute its output.

Attention computes the probabilities explicitly only while `attn.hook_attn_scores`, `hook_pattern` or
`hook_pattern_rows` is hooked on the calling thread (or a gradient must flow through the scores);
otherwise it runs the fused SDPA kernel. `CausalSelfAttention._choose_path` picks one `AttentionPath`
per call. The explicit paths compute the probabilities `QUERY_BLOCK` queries at a time, so a pass
hooked at `hook_pattern_rows` never holds a (T, T) map. The hook points are listed in `gpt2.model`.
"""

import enum
import math

import torch
import torch.nn.functional as F
from torch import nn

from .generate import KVCache
from .hook_points import HookPoint

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


def maybe_dropout(dropout: nn.Dropout, x: torch.Tensor) -> torch.Tensor:
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
        return maybe_dropout(self.resid_dropout, out)

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
