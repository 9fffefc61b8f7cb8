"""Activation patching from a clean prompt into a corrupted one, per (layer, position) of the
residual stream and per head (docs/lab.md, "Patching")."""

from dataclasses import dataclass

import torch

from ..hooks import act_name, hooks, run_with_cache
from ..precision import causal_bf16
from .common import LabError, Progress, embedding_weight, ids_tensor
from .pairs import pair_answers, prompt_pairs, resolve_answers, right_aligned


@dataclass
class Patching:
    """Logit difference restored by patching clean activations into the corrupted run: 0 = no effect,
    1 = the clean run's. `resid` (L, T): the stream entering each layer at one position; `heads` (L, H):
    one head's output at every position. For a prompt set, the logit differences are means over its
    pairs and `answer_clean`, `answer_corrupted` the first pair's."""

    answer_clean: int
    answer_corrupted: int
    ld_clean: float
    ld_corrupted: float
    resid: torch.Tensor
    heads: torch.Tensor
    mlp: torch.Tensor | None = None  # (L,): one MLP's output at every position (attribution only)
    answers: tuple[tuple[int, int], ...] = ()  # each pair's (clean, corrupted) answer ids


class _Runs:
    """The clean and corrupted runs' residual streams, head outputs, keys and values, for reruns that
    start at any layer and position."""

    def __init__(self, model, ids):
        L = model.config.num_layers
        parts = ("resid_pre", "z", "k", "v")
        names = [act_name(part, layer) for part in parts for layer in range(L)] + [act_name("resid_post", L - 1)]
        _, cache = run_with_cache(model, ids_tensor(model, ids), names, return_hidden=True)

        def every_layer(part: str) -> torch.Tensor:  # (L, T, ...): one run, its layers stacked
            return torch.cat([cache[act_name(part, layer)] for layer in range(L)])

        self.resid = every_layer("resid_pre")  # (L, T, C)
        self.final = cache[act_name("resid_post", L - 1)]  # (1, T, C)
        self.z = every_layer("z")  # (L, T, H, D)
        self.keys = every_layer("k").transpose(1, 2)[:, None]  # (L, 1, H, T, D): a KVCache's layout
        self.values = every_layer("v").transpose(1, 2)[:, None]


PATCH_BATCH = 32  # reruns batched together


class _Rerun:
    """Reruns of the corrupted run from a layer and position on. A change at position p leaves the
    earlier positions alone, so their keys and values come from the corrupted run, in a KV cache
    made once and refilled for each batch."""

    def __init__(self, model, corrupted: _Runs):
        self.model, self.corrupted = model, corrupted
        batch = max(PATCH_BATCH, model.config.num_heads)
        self.cache = model.new_kv_cache(batch, max_len=corrupted.resid.size(1))

    def last_logits(self, x: torch.Tensor, layer: int, start: int, fns=None) -> torch.Tensor:
        """Logits at the last position (B, V) for the batch `x` (B, T - start, C) of streams entering
        `layer` at positions start..T-1."""
        cache = self.cache.rows(x.size(0))
        cache.refill(self.corrupted.keys, self.corrupted.values, start, first_layer=layer)
        with hooks(self.model, fns or {}):
            final = self.model.run_blocks(x, layer, kv_cache=cache)
        return self.model.unembed(final, only_last=True)[:, -1].float()


def _batches(items: list, size: int = PATCH_BATCH):
    for start in range(0, len(items), size):
        yield items[start : start + size]


@torch.no_grad()
def patch(model, clean_ids, corrupted_ids, answers=None, progress: Progress = None) -> Patching:
    """Activation patching from `clean_ids` into `corrupted_ids` (the same number of tokens), scored
    by the logit difference between the two answers at the last position (ids or one-token texts;
    default: each prompt's top next token). A prompt set (two lists of prompts, up to 16 pairs,
    `answers` one pair for all or one per pair) scores the mean logit difference over its pairs;
    its `resid` columns align the pairs at their last token."""
    pairs = prompt_pairs(clean_ids, corrupted_ids)
    per_pair = pair_answers(answers, len(pairs))
    runs = []
    for index, ((clean, corrupted), given) in enumerate(zip(pairs, per_pair, strict=True)):
        where = f"pair {index + 1}: " if len(pairs) > 1 else ""
        step = (lambda done, i=index: progress((i + done) / len(pairs))) if progress else None
        runs.append(_patch_pair(model, clean, corrupted, given, where, step))
    ld_clean = sum(r.ld_clean for r in runs) / len(runs)
    ld_corrupted = sum(r.ld_corrupted for r in runs) / len(runs)
    if abs(ld_clean - ld_corrupted) < 1e-6:
        raise LabError("the two prompts give the same logit difference: patching cannot restore anything")

    def restored(lds: torch.Tensor) -> torch.Tensor:  # (n, ...) per pair → the set's score
        return ((lds.mean(0) - ld_corrupted) / (ld_clean - ld_corrupted)).float()

    resid = restored(right_aligned([r.resid for r in runs], [r.ld_corrupted for r in runs]))
    heads = restored(torch.stack([r.heads for r in runs]))
    answer_ids = tuple((r.answer_clean, r.answer_corrupted) for r in runs)
    return Patching(*answer_ids[0], ld_clean, ld_corrupted, resid, heads, answers=answer_ids)


def _patch_pair(model, clean_ids, corrupted_ids, answers, where: str, progress: Progress) -> Patching:
    """One pair's logit differences (float64): `resid` (L, T) and `heads` (L, H) hold the patched
    runs' own, LD_corrupted where nothing differs."""
    device = embedding_weight(model).device
    with torch.autocast(device.type, torch.bfloat16, enabled=causal_bf16(model)):
        clean, corrupted = _Runs(model, clean_ids), _Runs(model, corrupted_ids)
        clean_logits = model.unembed(clean.final, only_last=True)[0, -1].float()
        corrupted_logits = model.unembed(corrupted.final, only_last=True)[0, -1].float()
        answer_clean, answer_corrupted = resolve_answers(answers, clean_logits, corrupted_logits, where)

        def logit_diff(logits: torch.Tensor) -> torch.Tensor:
            return (logits[..., answer_clean] - logits[..., answer_corrupted]).double().cpu()

        ld_clean, ld_corrupted = float(logit_diff(clean_logits)), float(logit_diff(corrupted_logits))
        rerun = _Rerun(model, corrupted)
        L, H = model.config.num_layers, model.config.num_heads
        resid = torch.full((L, len(clean_ids)), ld_corrupted, dtype=torch.float64)
        heads = torch.full((L, H), ld_corrupted, dtype=torch.float64)
        for layer in range(L):
            # the stream entering `layer` at one position, clean into corrupted; where both runs hold the
            # same stream there is nothing to patch and the score stays 0
            differs = (clean.resid[layer] != corrupted.resid[layer]).any(-1).nonzero().flatten().tolist()
            for positions in _batches(differs):
                start = positions[0]
                x = corrupted.resid[layer, start:].repeat(len(positions), 1, 1)  # (B, T - start, C)
                for row, p in enumerate(positions):
                    x[row, p - start] = clean.resid[layer, p]
                resid[layer, positions] = logit_diff(rerun.last_logits(x, layer, start))
            # each head's output at every position, clean into corrupted: row h of the batch takes head h's
            z_differs = (clean.z[layer] != corrupted.z[layer]).flatten(1).any(-1).nonzero().flatten()
            if z_differs.numel():
                start = int(z_differs[0])
                clean_z = clean.z[layer, start:].transpose(0, 1)  # (H, T - start, D)

                def clean_head_each(z, _hook, clean_z=clean_z):
                    z = z.clone()
                    z[torch.arange(H), :, torch.arange(H)] = clean_z.to(z.dtype)
                    return z

                x = corrupted.resid[layer, start:].expand(H, -1, -1)
                fns = {act_name("z", layer): clean_head_each}
                heads[layer] = logit_diff(rerun.last_logits(x, layer, start, fns))
            if progress:
                progress((layer + 1) / L)
    return Patching(answer_clean, answer_corrupted, ld_clean, ld_corrupted, resid, heads)
