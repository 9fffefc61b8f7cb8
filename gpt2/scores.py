"""Head scores, roles and pooled thumbnails, computed from attention maps block by block of queries.

`MapSummary` reduces maps (..., T, T), e.g. one layer's (H, T, T), fed to it as blocks of query rows,
to every head's scores and a pooled thumbnail; the analysis pass feeds it each layer's blocks as
they are computed, so no map is held whole. `head_scores` does the same for maps already in hand.
Query 0 is skipped by every score: it can only attend to itself, so it says nothing about a head.
"""

import torch

SCORE_NAMES = ("previous-token", "induction", "first-token sink", "entropy")
# A head gets a role when its score reaches the threshold; the first match in this order wins.
ROLE_THRESHOLDS = (("induction", 0.4), ("previous-token", 0.5), ("first-token sink", 0.6))
MIXED = "mixed"


def induction_targets(ids) -> torch.Tensor:
    """(T, T) bool: key j + 1 is a target of query t when token j equals token t, j + 1 < t, and
    j + 1 is not t - 1.

    An induction head, seeing a token again, attends to what followed its earlier occurrence. Where
    that successor is the query's own previous token (text with period 2, "a b a b"), attending there
    is what a previous-token head does too, so those keys are left out: the score then tells the
    two patterns apart.
    """
    ids = torch.as_tensor(ids).flatten()
    T = ids.numel()
    same = ids[:, None] == ids[None, :]  # same[t, j]
    earlier = torch.ones(T, T, dtype=torch.bool).tril(diagonal=-3)  # j + 1 < t - 1
    targets = torch.zeros(T, T, dtype=torch.bool)
    targets[:, 1:] = (same & earlier)[:, :-1]  # shift: mark key j + 1
    return targets


def bin_size(T: int, max_axis: int) -> int:
    """Positions per bin when T positions are pooled into at most `max_axis` bins."""
    return -(-T // max_axis)


def bin_members(T: int, max_axis: int, device=None) -> torch.Tensor:
    """(T, bins) 0/1 matrix putting each of T positions in one of at most `max_axis` bins of
    `bin_size` consecutive positions (the last bin may hold fewer)."""
    size = bin_size(T, max_axis)
    which = torch.arange(T, device=device) // size
    return (which[:, None] == torch.arange(-(-T // size), device=device)).float()


def _pool_rows(key_sums: torch.Tensor, member: torch.Tensor) -> torch.Tensor:
    """(..., bins, bins) from each query's attention summed per key bin (..., T, bins): rows averaged
    per query bin; bins entirely in the future are NaN."""
    pooled = (member.T / member.sum(0)[:, None]) @ key_sums
    bins = member.size(1)
    return pooled.masked_fill(torch.ones(bins, bins, dtype=torch.bool, device=pooled.device).triu(1), float("nan"))


def pool_map(attn: torch.Tensor, max_axis: int) -> torch.Tensor:
    """Maps (..., T, T) average-pooled to at most `max_axis` bins per axis: a pooled row is the mean
    of its queries' rows, a pooled column the sum of its keys, so pooled rows still sum to 1. Bins
    entirely in the future are NaN (with one position per bin: the future cells)."""
    member = bin_members(attn.size(-1), max_axis, attn.device)
    return _pool_rows(attn.float() @ member, member)


class MapSummary:
    """Every head's scores and thumbnail, accumulated from blocks of query rows of maps (..., T, T)
    of the token sequence `ids`."""

    def __init__(self, ids, lead_shape: tuple[int, ...], thumb_axis: int, device=None, targets=None):
        """`targets`: `induction_targets(ids)`, where the caller summarizes several layers of one text."""
        ids = torch.as_tensor(ids).flatten()
        self.T = T = ids.numel()
        targets = induction_targets(ids) if targets is None else targets
        self.scored = targets.any(-1).to(device)  # (T,) queries that have an induction target
        # the targets in query order, so a block of queries finds its own as one slice
        self.target_queries, self.target_keys = (t.to(device) for t in targets.nonzero(as_tuple=True))
        self.member = bin_members(T, thumb_axis, device)
        # one matrix product sums each row per key bin and, in the last column, beyond key 0
        beyond_sink = torch.ones(T, 1, device=device)
        beyond_sink[0] = 0
        self.reducer = torch.cat([self.member, beyond_sink], dim=1)  # (T, bins + 1)
        per_row = ("previous-token", "first-token sink", "entropy", "on target", "beyond sink")
        self.rows = {name: torch.zeros(*lead_shape, T, device=device) for name in per_row}
        self.key_sums = torch.zeros(*lead_shape, T, self.member.size(1), device=device)

    def add(self, probs: torch.Tensor, rows: slice) -> None:
        """Take the probabilities (..., n, K) of queries `rows` (n of them) over keys 0..K-1."""
        start, end = rows.start, rows.stop
        probs = probs.float()
        # previous token: element (r, start + r - 1) of the block, for global queries >= 1
        self.rows["previous-token"][..., max(start, 1) : end] = probs.diagonal(start - 1, -2, -1)
        self.rows["first-token sink"][..., rows] = probs[..., 0]
        # -sum p log p; a probability of 0 adds 0 (0 * log 1e-30), not 0 * -inf
        self.rows["entropy"][..., rows] = -torch.linalg.vecdot(probs, probs.clamp_min(1e-30).log())
        sums = probs @ self.reducer[: probs.size(-1)]  # (..., n, bins + 1)
        self.key_sums[..., rows, :] = sums[..., :-1]
        # each row's attention beyond key 0 (a sum, not 1 - sink, which cancels to noise)
        self.rows["beyond sink"][..., rows] = sums[..., -1]
        first, last = torch.searchsorted(self.target_queries, torch.tensor([start, end], device=probs.device)).tolist()
        queries, keys = self.target_queries[first:last], self.target_keys[first:last]
        self.rows["on target"].index_add_(-1, queries, probs[..., queries - start, keys])

    def scores(self) -> dict[str, torch.Tensor]:
        """Score name → (...) values; all 0 for a one-token text, induction 0 where nothing repeats."""
        if self.T < 2:
            return {name: self.rows["entropy"][..., 0] * 0 for name in SCORE_NAMES}
        mean = {name: self.rows[name][..., 1:].mean(-1) for name in ("previous-token", "first-token sink", "entropy")}
        if self.scored.any():
            on_target, beyond = self.rows["on target"][..., self.scored], self.rows["beyond sink"][..., self.scored]
            induction = (on_target / beyond.clamp_min(1e-12)).mean(-1)
        else:
            induction = torch.zeros_like(mean["entropy"])
        return {
            "previous-token": mean["previous-token"],
            "induction": induction,
            "first-token sink": mean["first-token sink"],
            "entropy": mean["entropy"],
        }

    def thumbnails(self) -> torch.Tensor:
        """(..., S, S) pooled maps (see `pool_map`)."""
        return _pool_rows(self.key_sums, self.member)


def head_scores(attn: torch.Tensor, ids) -> dict[str, torch.Tensor]:
    """Every score for maps (..., T, T) of the token sequence `ids`, one value per map:

    - previous-token: mean attention from each query t to key t - 1;
    - induction: mean attention to induction targets (see `induction_targets`) over the queries
      that have one, each row renormalized without key 0, so a head that parks its spare attention
      on the first token is scored on where the rest goes;
    - first-token sink: mean attention to key 0;
    - entropy: mean entropy of the rows in nats (0 = one key, log(t + 1) = uniform).
    """
    summary = MapSummary(ids, attn.shape[:-2], thumb_axis=1, device=attn.device)
    summary.add(attn, slice(0, attn.size(-2)))
    return summary.scores()


def head_roles(scores: dict) -> list[list[str]]:
    """A role label per head ((L, H) nested lists): the first score over its threshold, else 'mixed'."""
    num_layers, num_heads = scores["previous-token"].shape
    return [
        [
            next((name for name, threshold in ROLE_THRESHOLDS if scores[name][layer, head] >= threshold), MIXED)
            for head in range(num_heads)
        ]
        for layer in range(num_layers)
    ]


def drop_first_token(attn: torch.Tensor) -> torch.Tensor:
    """The map without the first-token sink: key 0 zeroed and each row renormalized over the
    remaining keys (query 0 keeps its row)."""
    out = attn.clone()
    out[..., 1:, 0] = 0.0
    out[..., 1:, :] /= out[..., 1:, :].sum(-1, keepdim=True).clamp_min(1e-12)
    return out
