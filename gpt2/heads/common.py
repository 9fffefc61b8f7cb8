"""What the heads package shares: its errors, each head's weight matrices, and the per-model cache.

Weights follow TransformerLens's layout, acting on row vectors (C = embed_dim, D = head_dim):
W_Q, W_K, W_V are (L, H, C, D), W_O is (L, H, D, C), so a head reads `x @ W_V[l, h]` and writes
`z @ W_O[l, h]`. They are views into the model's own parameters, taken as they are: no LayerNorm is
folded in.
"""

import threading
import weakref

import torch

from ..config import EOT_ID

POOL_SIZE = 2000  # known tokens
MEDIAN_STRIDE = 8  # a row in 8 is plenty for the median of the embedding matrix


class HeadsError(ValueError):
    """A request the heads tools cannot answer; the message is one line."""


class UnknownModeError(HeadsError):
    """A composition mode other than q, k or v."""


class CellError(HeadsError):
    """A layer, head, query or key outside the model or the text, or a key after its query."""


def check_head(model, layer: int, head: int) -> None:
    L, H = model.config.num_layers, model.config.num_heads
    if not 0 <= layer < L:
        raise CellError(f"layer {layer} is out of range: the model has layers 0..{L - 1}")
    if not 0 <= head < H:
        raise CellError(f"head {head} is out of range: the model has heads 0..{H - 1}")


def head_weights(model, layer: int | None = None) -> dict[str, torch.Tensor]:
    """{"W_Q", "W_K", "W_V": (L, H, C, D), "W_O": (L, H, D, C), "b_Q", "b_K", "b_V": (L, H, D)},
    detached, on the model's device and in its dtype; without the leading L for one `layer`."""
    blocks = model.blocks if layer is None else [model.blocks[layer]]
    L, H, C = len(blocks), model.config.num_heads, model.config.embed_dim
    D = C // H
    qkv = torch.stack([block.attn.c_attn.weight.detach() for block in blocks])  # (L, 3C, C)
    qkv = qkv.view(L, 3, H, D, C).transpose(-1, -2)  # (L, 3, H, C, D)
    bias = torch.stack([block.attn.c_attn.bias.detach() for block in blocks]).view(L, 3, H, D)
    proj = torch.stack([block.attn.c_proj.weight.detach() for block in blocks])  # (L, C_out, C_in)
    W_O = proj.view(L, C, H, D).permute(0, 2, 3, 1)  # (L, H, D, C)
    weights = {
        "W_Q": qkv[:, 0],
        "W_K": qkv[:, 1],
        "W_V": qkv[:, 2],
        "W_O": W_O,
        "b_Q": bias[:, 0],
        "b_K": bias[:, 1],
        "b_V": bias[:, 2],
    }
    return weights if layer is None else {name: w[0] for name, w in weights.items()}


def known_tokens(model, count: int = POOL_SIZE) -> torch.Tensor:
    """(count,) ids of the tokens the model has learnt, sorted: those farthest from the coordinate-wise
    median token embedding, without <|endoftext|>. A model trained on a small corpus leaves the tokens
    it never saw bunched together near that median (they only ever get the same push-down through
    the tied unembedding) while the ones it saw move apart: on the bundled model, all 2,000 picked
    occur at least 5 times in its training split. On a model that saw every token the rule picks
    tokens as well as any, and it needs no corpus. Cached per model."""
    return cached(model, ("known tokens", count), lambda: _known_tokens(model, count))


def _known_tokens(model, count: int) -> torch.Tensor:
    W = model.wte.weight.detach().float()
    center = W[::MEDIAN_STRIDE].median(dim=0).values  # (C,)
    distance = (W - center).norm(dim=-1)
    if distance.numel() > EOT_ID:
        distance[EOT_ID] = -1.0
    return distance.topk(min(count, distance.numel())).indices.sort().values.cpu()


def head_label(layer: int, head: int) -> str:
    return f"L{layer}H{head}"


_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # model → {key: (stamp, value)}
_LOCK = threading.Lock()


def _stamp(model) -> tuple:
    """Changes whenever a parameter is replaced or edited in place."""
    return tuple((p.data_ptr(), p._version) for p in model.parameters())


def cached(model, key, compute):
    """`compute()` once per model and key, kept while the model lives and its weights are unchanged
    (a parameter replaced or edited in place computes it again)."""
    stamp = _stamp(model)
    with _LOCK:
        entry = _CACHE.setdefault(model, {}).get(key)
    if entry is not None and entry[0] == stamp:
        return entry[1]
    value = compute()
    with _LOCK:
        _CACHE.setdefault(model, {})[key] = (stamp, value)
    return value


def forget(model) -> None:
    """Drop everything cached for `model`."""
    with _LOCK:
        _CACHE.pop(model, None)
