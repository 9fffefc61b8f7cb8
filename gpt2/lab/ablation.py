"""Zero and mean ablation of heads, the ablated rerun, and the one-head-at-a-time sweep
(docs/lab.md, "Ablation")."""

from dataclasses import dataclass

import torch

from ..analysis import Analysis, analyze
from ..hooks import act_name, hooks, run_with_cache
from .common import LabError, Progress, embedding_weight, ids_tensor, target_logprob

ABLATION_MODES = ("zero", "mean")


@dataclass(frozen=True)
class Ablation:
    """Heads to ablate: `zero` sets their `hook_z` to 0, `mean` to its mean over this text's positions."""

    heads: tuple[tuple[int, int], ...]
    mode: str = "zero"

    def __post_init__(self):
        if self.mode not in ABLATION_MODES:
            raise LabError(f"unknown ablation mode {str(self.mode)[:20]!r}: use zero or mean")

    @property
    def label(self) -> str:
        return f"{self.mode}-ablated " + ", ".join(f"L{layer}H{head}" for layer, head in self.heads)

    @property
    def first_layer(self) -> int:
        return min(layer for layer, _ in self.heads)


@torch.no_grad()
def mean_z(model, ids, layers) -> dict[int, torch.Tensor]:
    """Each head's output (hook_z) averaged over this text's positions in a clean run, (H, D) by layer."""
    names = [act_name("z", layer) for layer in layers]
    _, cache = run_with_cache(model, ids_tensor(model, ids), names, return_hidden=True)
    return {layer: cache[act_name("z", layer)][0].mean(0) for layer in layers}


def ablation_hooks(model, ids, ablation: Ablation) -> dict:
    """`{hook name: fn}` that apply `ablation` (to every row of a batch)."""
    by_layer: dict[int, list[int]] = {}
    for layer, head in ablation.heads:
        by_layer.setdefault(layer, []).append(head)
    means = mean_z(model, ids, list(by_layer)) if ablation.mode == "mean" else {}

    def replace(layer: int, heads: list[int]):
        def hook(z, _hook):  # (B, T, H, D)
            z = z.clone()
            z[:, :, heads] = means[layer][heads].to(z.dtype) if ablation.mode == "mean" else 0.0
            return z

        return hook

    return {act_name("z", layer): replace(layer, heads) for layer, heads in by_layer.items()}


def ablated_analysis(model, ids, ablation: Ablation) -> Analysis:
    """The analysis of `ids` with `ablation` applied: scores, thumbnails and the residual stream of the
    ablated run, so every downstream head's maps are recomputed under it."""
    return analyze(model, ids, fwd_hooks=ablation_hooks(model, ids, ablation))


@torch.no_grad()
def ablation_sweep(model, analysis: Analysis, position: int, target: int, progress: Progress = None) -> torch.Tensor:
    """(L, H): log p(target) at `position` with that head alone mean-ablated, minus the clean run's.
    The heads of one layer run as one batch, from the cached stream entering that layer; only
    positions 0..position matter (attention is causal)."""
    ids = analysis.ids[: position + 1]
    L, H = analysis.num_layers, analysis.num_heads
    means = mean_z(model, ids, range(L))
    clean = target_logprob(model, analysis.resid[-1, position][None, None], target)
    effects = torch.zeros(L, H)
    for layer in range(L):
        x = analysis.resid[layer, : position + 1].to(embedding_weight(model)).expand(H, -1, -1)  # (H, T', C)

        def one_head_each(z, _hook, layer=layer):  # row h of the batch ablates head h
            z = z.clone()
            heads = torch.arange(H)
            z[heads, :, heads] = means[layer].to(z.dtype)[:, None, :]  # (H, T', D) ← (H, 1, D)
            return z

        with hooks(model, {act_name("z", layer): one_head_each}):
            final = model.run_blocks(x, layer)[:, -1:]
        effects[layer] = target_logprob(model, final, target) - clean
        if progress:
            progress((layer + 1) / L)
    return effects
