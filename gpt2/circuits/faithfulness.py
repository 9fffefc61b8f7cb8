"""Exact faithfulness: rerun the clean prompt with every edge outside a circuit carrying its source's
corrupted output (docs/lab.md, "Circuits").

Each consumer's input is built edge by edge through the per-head hook points. With `base` the
corrupted run's stream at that input (the sum of every source's corrupted output and the biases),

    input = base + Σ over the circuit's edges into it of (out_u now − out_u corrupted)

so an edge in the circuit carries the output computed in this run and every other edge the corrupted
one. The logit differences with every edge and with none come from the same construction, which
makes the ends 1 and 0 exactly.
"""

import torch

from ..hooks import act_name, hooks
from .common import PairRuns, logit_diff
from .graph import Graph, node_outputs

CURVE_SIZES = (5, 10, 20, 50, 100, 200)


def base_names(num_layers: int) -> list[str]:
    """The corrupted run's streams that the consumers' inputs start from."""
    names = [act_name(part, layer) for layer in range(num_layers) for part in ("resid_pre", "mlp_in")]
    return names + [act_name("resid_post", num_layers - 1)]


@torch.no_grad()
def circuit_ld(model, graph: Graph, run: PairRuns, kept: torch.Tensor) -> float:
    """LD of the clean prompt where only the edges with `kept` (E,) bool carry this run's outputs."""
    L, H = graph.num_layers, graph.num_heads
    corrupted_out = node_outputs(run.corrupted, run.embed_corrupted, L)  # (N - 1, T * C)
    delta = torch.zeros_like(corrupted_out)  # now − corrupted, row by row as the run reaches each node
    delta[0] = (run.embed_clean - run.embed_corrupted)[0].flatten()
    T, C = run.embed_clean.shape[1:]
    masks = graph.blocks(kept)

    def into(mask: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        """base + Σ over kept sources: `mask` (n, k) of the first n nodes for k inputs → (k, T, C)."""
        rows = mask.any(1).nonzero().flatten()
        if rows.numel() == 0:
            return base.expand(mask.size(1), T, C)
        return base + (mask[rows].T.to(delta.dtype) @ delta[rows]).view(-1, T, C)

    def head_inputs(layer: int, kind: int):
        def hook(x, _hook):  # (1, T, H, C)
            mask = masks[layer][0][:, kind]  # (n, H)
            return into(mask, run.corrupted[act_name("resid_pre", layer)][0]).transpose(0, 1)[None]

        return hook

    def outputs(layer: int):
        first = graph.sources_of_heads(layer)

        def heads(result, _hook):  # (1, T, H, C)
            now = result[0].transpose(0, 1).flatten(1)  # (H, T * C)
            delta[first : first + H] = now - corrupted_out[first : first + H]

        def mlp(out, _hook):
            delta[first + H] = out[0].flatten() - corrupted_out[first + H]

        return heads, mlp

    def mlp_input(layer: int):
        return lambda x, _hook: into(masks[layer][1][:, None], run.corrupted[act_name("mlp_in", layer)])

    final = act_name("resid_post", L - 1)
    fns = {final: lambda x, _hook: into(masks[-1][:, None], run.corrupted[final])}
    for layer in range(L):
        for kind, part in enumerate(("q_input", "k_input", "v_input")):
            fns[act_name(part, layer)] = head_inputs(layer, kind)
        fns[act_name("result", layer)], fns[act_name("mlp_out", layer)] = outputs(layer)
        fns[act_name("mlp_in", layer)] = mlp_input(layer)
    with hooks(model, fns):
        return float(logit_diff(model, model.run_blocks(run.embed_clean), run.answers)[0])
