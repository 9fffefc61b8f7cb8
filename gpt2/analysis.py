"""The analysis of one text: one pass that keeps the residual stream, and every map derived on demand.

`analyze(model, ids)` runs the model once, with hooks that keep the residual stream entering each
block and leaving the last one, (L + 1, T, C), and that reduce each layer's attention, read a block of
queries at a time (`hook_pattern_rows`: one softmax per block feeds both the layer's output and the
reduction), to what the overview needs: every head's scores and a pooled thumbnail. A view that
needs a layer's full maps recomputes them from that layer's cached input (`layer_maps`: one
LayerNorm, the queries and keys, a softmax), so no (L, H, T, T) tensor is ever held: on GPT-2 small
a 1,024-token text keeps 41 MB, not 604 MB.

Everything is float32: the maps a view shows are exactly the model's, and recomputing a layer from
the cache gives the same probabilities the scores were computed from.
"""

from dataclasses import dataclass

import torch

from .hooks import act_name, hooks
from .scores import SCORE_NAMES, MapSummary, head_roles, induction_targets

THUMB_AXIS = 32  # positions on one side of a head's thumbnail


@dataclass
class Analysis:
    """What one pass over a text keeps, on the CPU."""

    ids: list[int]
    resid: torch.Tensor  # (L + 1, T, C): x_l enters block l; x_L leaves the last block (before ln_f)
    scores: dict[str, torch.Tensor]  # score name → (L, H)
    roles: list[list[str]]  # (L, H) role labels
    thumbnails: torch.Tensor  # (L, H, S, S) maps pooled to S = min(T, THUMB_AXIS) bins, NaN in the future

    @property
    def num_layers(self) -> int:
        return self.resid.size(0) - 1

    @property
    def num_heads(self) -> int:
        return self.thumbnails.size(1)

    @property
    def nbytes(self) -> int:
        tensors = [self.resid, self.thumbnails, *self.scores.values()]
        return sum(t.numel() * t.element_size() for t in tensors) + 8 * len(self.ids)


def _device(model) -> torch.device:
    return model.wte.weight.device


def _on_model(model, x: torch.Tensor) -> torch.Tensor:
    weight = model.wte.weight
    return x.to(weight.device, weight.dtype)


@torch.no_grad()
def analyze(model, ids, fwd_hooks: dict | None = None) -> Analysis:
    """One pass over `ids` (a list or 1-D tensor of token ids, at most the block size). `fwd_hooks`,
    `{hook name: fn}`, intervene in the pass (see `gpt2.lab`): everything kept is then the changed
    model's."""
    idx = torch.as_tensor(ids, dtype=torch.long, device=_device(model)).reshape(1, -1)
    L, T = model.config.num_layers, idx.size(1)
    resid = torch.empty(L + 1, T, model.config.embed_dim)
    targets = induction_targets(idx[0].cpu())
    summaries = [MapSummary(idx[0], (model.config.num_heads,), THUMB_AXIS, idx.device, targets) for _ in range(L)]

    def keep_resid(layer: int):
        def hook(x, _hook):
            resid[layer].copy_(x[0])

        return hook

    def summarize(summary: MapSummary):
        next_row = 0

        def hook(probs, _hook):  # (1, H, n, K): the next n queries' attention, from query 0 on
            nonlocal next_row
            n = probs.size(2)
            summary.add(probs[0], slice(next_row, next_row + n))
            next_row += n

        return hook

    fns = {act_name("resid_pre", layer): keep_resid(layer) for layer in range(L)}
    fns[act_name("resid_post", L - 1)] = keep_resid(L)
    fns |= {act_name("pattern_rows", layer): summarize(summaries[layer]) for layer in range(L)}
    with hooks(model, fwd_hooks or {}), hooks(model, fns):
        model.run_blocks(model.embed(idx))
    layer_scores = [summary.scores() for summary in summaries]
    scores = {name: torch.stack([s[name] for s in layer_scores]).cpu() for name in SCORE_NAMES}
    thumbnails = torch.stack([summary.thumbnails() for summary in summaries]).cpu()
    return Analysis(idx[0].tolist(), resid, scores, head_roles(scores), thumbnails)


@torch.no_grad()
def layer_maps(model, analysis: Analysis, layer: int, heads: slice = slice(None)) -> torch.Tensor:
    """The attention (n, T, T) of the `heads` (all by default) of `layer`, recomputed from the
    cached residual stream entering it."""
    block = model.blocks[layer]
    x = _on_model(model, analysis.resid[layer])[None]  # (1, T, C)
    return block.attn.attention_pattern(block.ln_1(x), heads)[0].float().cpu()


@torch.no_grad()
def final_hidden(model, analysis: Analysis, positions=slice(None)) -> torch.Tensor:
    """The final LayerNorm's output at `positions` ((n, C), or (C,) for one position): what the LM
    head reads."""
    return model.ln_f(_on_model(model, analysis.resid[-1, positions]))
