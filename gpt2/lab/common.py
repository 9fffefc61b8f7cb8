"""What the lab's tools share: their error, a progress callback, and reading the LM head's logits."""

from collections.abc import Callable

import torch

Progress = Callable[[float], None] | None
ROW_CHUNK = 128  # positions whose logits over the vocabulary are made at a time


class LabError(ValueError):
    """A causal-tool request that cannot be answered (the message says why, in one line)."""


def embedding_weight(model) -> torch.Tensor:
    return model.wte.weight


def ids_tensor(model, ids) -> torch.Tensor:
    return torch.as_tensor(ids, dtype=torch.long, device=embedding_weight(model).device).reshape(1, -1)


def logits_rows(model, hidden: torch.Tensor):
    """Yield (rows, logits (n, V) in float32) of the LM head over `hidden` (N, C), a chunk at a time."""
    weight_t = model.lm_head.weight.T.contiguous()  # (C, V): the layout this matmul reads fastest
    for start in range(0, hidden.size(0), ROW_CHUNK):
        rows = slice(start, min(start + ROW_CHUNK, hidden.size(0)))
        yield rows, (hidden[rows].to(weight_t.dtype) @ weight_t).float()


def target_logprob(model, final: torch.Tensor, target: int) -> torch.Tensor:
    """log p(target) (B,) from the stream after the last block at one position, (B, 1, C)."""
    logits = model.unembed(final.to(embedding_weight(model)))[:, -1].float()
    return (logits[:, target] - logits.logsumexp(-1)).cpu()
