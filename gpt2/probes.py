"""Probes: a model's head scores measured on texts made for them, as the model card reports them.

- previous-token and first-token sink: on natural text, in windows of the block size;
- induction: on random sequences of distinct tokens, each repeated once (an induction head, seeing
  the repeat, attends to the token that followed the earlier copy).
"""

import torch

from .analysis import analyze
from .data import random_repeated_tokens, token_pool


def _scores(model, ids) -> dict[str, torch.Tensor]:
    return analyze(model, ids).scores


def induction_probe(model, pool, length: int = 50, seeds=(0, 1, 2, 3)) -> torch.Tensor:
    """(L, H) induction scores averaged over random repeated sequences (tokens drawn from `pool`)."""
    runs = [_scores(model, random_repeated_tokens(length, pool, seed))["induction"] for seed in seeds]
    return torch.stack(runs).mean(0)


def natural_text_probe(model, ids, score: str, window: int | None = None) -> torch.Tensor:
    """(L, H) values of one head score on natural text `ids`, averaged over windows of the block size."""
    ids = torch.as_tensor(ids).flatten()
    window = window or model.config.block_size
    chunks = [ids[i : i + window] for i in range(0, max(1, ids.numel() - 1), window)]
    return torch.stack([_scores(model, chunk)[score] for chunk in chunks if chunk.numel() > 1]).mean(0)


def head_score_table(model, split, natural_tokens: int = 2048) -> dict[str, torch.Tensor]:
    """(L, H) previous-token and first-token-sink scores on held-out text, and induction scores on
    random repeated sequences of tokens seen at least 5 times in training."""
    natural = split.val[:natural_tokens]
    length = min(50, model.config.block_size // 2)
    return {
        "previous-token": natural_text_probe(model, natural, "previous-token"),
        "induction": induction_probe(model, token_pool(split.train), length=length),
        "first-token sink": natural_text_probe(model, natural, "first-token sink"),
    }
