"""The model's own head roles, measured on inputs chosen by us, not on the visitor's text
(docs/lab.md, "The model's own roles").

- previous-token, duplicate-token and induction scores: averaged over a batch of random sequences of
  distinct known tokens, each sequence repeated once;
- first-token sink: on a fixed passage of natural text (`NATURAL_TEXT`);
- copying: from the weights (`copying_scores`).

The random sequences are drawn from the model's known tokens (`known_tokens`).
"""

from dataclasses import dataclass

import torch

from ..analysis import analyze
from ..data import random_repeated_tokens
from ..hooks import act_name, hooks
from ..scores import head_scores
from ..tokenizer import get_tokenizer
from .circuits import copying_scores
from .common import cached, known_tokens

BATCH, LENGTH = 8, 40  # random sequences of LENGTH distinct tokens, each followed by itself
NATURAL_TEXT = """Shall I compare thee to a summer's day?
Thou art more lovely and more temperate:
Rough winds do shake the darling buds of May,
And summer's lease hath all too short a date;
Sometime too hot the eye of heaven shines,
And often is his gold complexion dimm'd;
And every fair from fair sometime declines,
By chance or nature's changing course untrimm'd;
But thy eternal summer shall not fade,
Nor lose possession of that fair thou ow'st;
Nor shall Death brag thou wander'st in his shade,
When in eternal lines to time thou grow'st:
So long as men can breathe or eyes can see,
So long lives this, and this gives life to thee."""
ROLE_SCORES = ("previous-token", "duplicate-token", "induction", "sink", "copying")
# (label, score, threshold): a head takes the first label whose score reaches its threshold
# (suppression: copying at or below −0.7); attention roles come before the weights' roles.
ROLE_RULES = (
    ("induction", "induction", 0.4),
    ("previous-token", "previous-token", 0.5),
    ("duplicate-token", "duplicate-token", 0.4),
    ("sink", "sink", 0.6),
    ("copying", "copying", 0.7),
    ("suppression", "copying", -0.7),
)
MIXED = "mixed"


@dataclass
class ModelRoles:
    labels: list[list[str]]  # (L, H) one role per head
    scores: dict[str, torch.Tensor]  # ROLE_SCORES name → (L, H)
    tokens: torch.Tensor  # (POOL_SIZE,) the known tokens the random sequences were drawn from

    def to_dict(self) -> dict:
        return {"labels": self.labels, "scores": {name: s.tolist() for name, s in self.scores.items()}}


def duplicate_targets(ids) -> torch.Tensor:
    """(T, T) bool: key j is a target of query t when token j equals token t and 0 < j < t."""
    ids = torch.as_tensor(ids).flatten()
    T = ids.numel()
    targets = (ids[:, None] == ids[None, :]) & torch.ones(T, T, dtype=torch.bool).tril(-1)
    targets[:, 0] = False
    return targets


def duplicate_token_score(attn: torch.Tensor, ids) -> torch.Tensor:
    """(...) for maps (..., T, T): the attention on earlier copies of the query's own token, each row
    renormalized without key 0 as the induction score is (`gpt2.scores.head_scores`), averaged over
    the queries that have an earlier copy; 0 where none has."""
    targets = duplicate_targets(ids).to(attn.device)
    scored = targets.any(-1)
    if not scored.any():
        return attn.new_zeros(attn.shape[:-2])
    on_target = (attn * targets).sum(-1)[..., scored]
    beyond = attn[..., 1:].sum(-1)[..., scored]
    return (on_target / beyond.clamp_min(1e-12)).mean(-1)


def repeated_sequences(pool: torch.Tensor, batch: int = BATCH, length: int = LENGTH) -> torch.Tensor:
    """(batch, 2 length) random sequences of `length` distinct tokens from `pool`, each repeated once
    (sequence i drawn with seed i, so the same pool always gives the same batch)."""
    return torch.stack([random_repeated_tokens(length, pool, seed) for seed in range(batch)])


@torch.no_grad()
def sequence_scores(model, idx: torch.Tensor) -> dict:
    """(L, H) previous-token, duplicate-token and induction scores averaged over `idx` (B, T), a batch
    of sequences with one pattern of repeats (`repeated_sequences`)."""
    idx = idx.to(model.wte.weight.device)
    pattern_ids = idx[0].cpu()  # every sequence has the same pattern of repeats
    per_layer: list[dict] = [{} for _ in model.blocks]

    def reduce(layer: int):
        def hook(probs, _hook):  # (B, H, T, T)
            probs = probs.float()
            scores = head_scores(probs, pattern_ids)
            per_layer[layer] = {
                "previous-token": scores["previous-token"].mean(0),
                "induction": scores["induction"].mean(0),
                "duplicate-token": duplicate_token_score(probs, pattern_ids).mean(0),
            }

        return hook

    fns = {act_name("pattern", layer): reduce(layer) for layer in range(len(model.blocks))}
    with hooks(model, fns):
        model.run_blocks(model.embed(idx))
    return {name: torch.stack([s[name] for s in per_layer]).cpu() for name in per_layer[0]}


def random_sequence_scores(model, pool: torch.Tensor, batch: int = BATCH, length: int = LENGTH) -> dict:
    """(L, H) previous-token, duplicate-token and induction scores averaged over `batch` random
    sequences of `length` distinct tokens from `pool`, each repeated once."""
    length = min(length, model.config.block_size // 2, pool.numel())
    return sequence_scores(model, repeated_sequences(pool, batch, length))


def natural_sink_scores(model) -> torch.Tensor:
    """(L, H) first-token sink scores on `NATURAL_TEXT` (cut to the block size)."""
    ids = get_tokenizer().encode(NATURAL_TEXT)[: model.config.block_size]
    return analyze(model, ids).scores["first-token sink"]


def label_heads(scores: dict[str, torch.Tensor]) -> list[list[str]]:
    """(L, H) labels from `ROLE_RULES`; `mixed` where no score reaches its threshold."""
    L, H = scores["copying"].shape

    def label(layer, head):
        for name, score, threshold in ROLE_RULES:
            value = scores[score][layer, head].item()
            if (value <= threshold) if threshold < 0 else (value >= threshold):
                return name
        return MIXED

    return [[label(layer, head) for head in range(H)] for layer in range(L)]


def _compute_roles(model) -> ModelRoles:
    pool = known_tokens(model)
    scores = random_sequence_scores(model, pool)
    scores["sink"] = natural_sink_scores(model)
    scores["copying"] = copying_scores(model)
    scores = {name: scores[name] for name in ROLE_SCORES}
    return ModelRoles(label_heads(scores), scores, pool)


def model_roles(model) -> ModelRoles:
    """Every head's role from the model's own behaviour (docs/lab.md): computed on first use, then
    kept for as long as the model lives and its weights are unchanged (`gpt2.heads.forget` drops it)."""
    return cached(model, ("roles",), lambda: _compute_roles(model))
