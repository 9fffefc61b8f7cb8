"""Head analysis on captured attention: the standard head scores, role labels, and probes.

All score functions take attention probabilities shaped (..., T_query, T_key), e.g. (L, H, T, T),
and return one number per head, shaped (...). Query 0 is skipped everywhere: it can only attend to
itself, so it says nothing about a head.
"""

import torch

from .hooks import capture_attention
from .precision import fast_bf16

SCORE_NAMES = ("previous-token", "induction", "first-token sink", "entropy")
# A head gets a role when its score reaches the threshold; the first match in this order wins.
ROLE_THRESHOLDS = (("induction", 0.4), ("previous-token", 0.5), ("first-token sink", 0.6))


def previous_token_scores(attn: torch.Tensor) -> torch.Tensor:
    """Mean attention from each query t ≥ 1 to key t - 1."""
    return attn.diagonal(offset=-1, dim1=-2, dim2=-1).mean(-1)


def first_token_scores(attn: torch.Tensor) -> torch.Tensor:
    """Mean attention from each query t ≥ 1 to key 0 (the 'attention sink')."""
    return attn[..., 1:, 0].mean(-1)


def entropy_scores(attn: torch.Tensor) -> torch.Tensor:
    """Mean entropy (nats) of the attention rows t ≥ 1: 0 = one key, log(t + 1) = uniform."""
    rows = attn[..., 1:, :]
    maps = rows.unsqueeze(0).flatten(0, -3)  # (heads, T - 1, T), also for one map or an empty one
    buffer = torch.empty_like(maps[0])  # one head's -p log p at a time, not a copy of every map
    entropies = [torch.special.entr(m, out=buffer).sum(-1).mean(-1) for m in maps]
    return torch.stack(entropies).reshape(rows.shape[:-2])


def induction_targets(ids) -> torch.Tensor:
    """(T, T) bool: key j + 1 is a target of query t when token j equals token t and j + 1 < t.

    An induction head, seeing a token again, attends to what followed its earlier occurrence.
    """
    ids = torch.as_tensor(ids).flatten()
    T = ids.numel()
    same = ids[:, None] == ids[None, :]  # same[t, j]
    earlier = torch.ones(T, T, dtype=torch.bool).tril(diagonal=-2)  # j + 1 < t
    targets = torch.zeros(T, T, dtype=torch.bool)
    targets[:, 1:] = (same & earlier)[:, :-1]  # shift: mark key j + 1
    return targets


def induction_scores(attn: torch.Tensor, ids) -> torch.Tensor:
    """Mean attention to induction targets, over queries that have one, with the first-token sink
    removed: each row's key 0 is dropped and the rest renormalized, so a head that parks its spare
    attention on the first token is scored on where the remainder goes. 0 when no query repeats."""
    targets = induction_targets(ids).to(attn.device)
    scored = targets.any(-1)  # (T,) queries that have a target
    if not scored.any():
        return attn.new_zeros(attn.shape[:-2])
    queries, keys = targets.nonzero(as_tuple=True)  # the few (query, target key) pairs; key 0 is never one
    on_target = attn.new_zeros(attn.shape[:-1]).index_add_(-1, queries, attn[..., queries, keys])  # (..., T)
    beyond_sink = attn[..., 1:].sum(-1)  # (..., T): each row's attention to keys ≥ 1 (not 1 - sink: that cancels)
    return (on_target[..., scored] / beyond_sink[..., scored].clamp_min(1e-12)).mean(-1)


def head_scores(attn: torch.Tensor, ids) -> dict[str, torch.Tensor]:
    """Every score for maps (L, H, T, T) of the token sequence `ids`."""
    return {
        "previous-token": previous_token_scores(attn),
        "induction": induction_scores(attn, ids),
        "first-token sink": first_token_scores(attn),
        "entropy": entropy_scores(attn),
    }


def head_roles(scores: dict[str, torch.Tensor]) -> list[list[str]]:
    """A role label per head ((L, H) nested lists): the first score over its threshold, else 'mixed'."""
    num_layers, num_heads = scores["previous-token"].shape
    roles = []
    for layer in range(num_layers):
        row = []
        for head in range(num_heads):
            role = next(
                (name for name, threshold in ROLE_THRESHOLDS if scores[name][layer, head] >= threshold), "mixed"
            )
            row.append(role)
        roles.append(row)
    return roles


@torch.inference_mode()
def capture_maps(model, ids, bf16: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Every head's attention (L, H, T, T) and the final hidden states (T, C) of one pass over `ids`.

    `bf16` runs the MLPs and output projections in bfloat16 (default: where the hardware makes that
    faster); queries, keys, scores and probabilities stay float32, so the maps stay close to float32's
    (`bench/bench.py` prints the largest difference). The maps are written into one preallocated
    tensor as each layer makes them."""
    device = model.wte.weight.device
    idx = torch.as_tensor(ids, dtype=torch.long, device=device).reshape(1, -1)
    config, T = model.config, idx.size(1)
    attn = torch.empty((config.num_layers, 1, config.num_heads, T, T), device=device)
    use_bf16 = fast_bf16(device) if bf16 is None else bf16
    with capture_attention(model, into=attn), torch.autocast(device.type, torch.bfloat16, enabled=use_bf16):
        hidden = model(idx, return_hidden=True)[0]
    return attn[:, 0], hidden.float()


def attention_maps(model, ids) -> torch.Tensor:
    """(L, H, T, T) float32 attention of one token sequence, on the CPU."""
    return capture_maps(model, ids, bf16=False)[0].cpu()


def random_distinct_tokens(pool: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """`count` tokens drawn at random without replacement from `pool`, a tensor of distinct tokens
    (all of them, shuffled, if it holds fewer)."""
    return pool[torch.randperm(pool.numel(), generator=generator)[:count]]


def random_repeated_tokens(length: int, pool, seed: int = 0) -> torch.Tensor:
    """A random sequence of `length` distinct tokens drawn from `pool`, then the same sequence again."""
    pool = torch.as_tensor(pool).unique()
    if pool.numel() < length:
        raise ValueError(f"the pool has {pool.numel()} tokens, fewer than {length}")
    first = random_distinct_tokens(pool, length, torch.Generator().manual_seed(seed))
    return torch.cat([first, first])


def induction_probe(model, pool, length: int = 50, seeds=(0, 1, 2, 3)) -> torch.Tensor:
    """(L, H) induction scores averaged over random repeated sequences (tokens drawn from `pool`)."""
    scores = [
        induction_scores(attention_maps(model, ids), ids)
        for ids in (random_repeated_tokens(length, pool, s) for s in seeds)
    ]
    return torch.stack(scores).mean(0)


def previous_token_probe(model, ids, window: int | None = None) -> torch.Tensor:
    """(L, H) previous-token scores on natural text `ids`, averaged over windows of the block size."""
    ids = torch.as_tensor(ids).flatten()
    window = window or model.config.block_size
    chunks = [ids[i : i + window] for i in range(0, max(1, ids.numel() - 1), window) if ids[i : i + window].numel() > 1]
    return torch.stack([previous_token_scores(attention_maps(model, chunk)) for chunk in chunks]).mean(0)
