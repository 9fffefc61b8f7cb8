"""The computational graph of nodes and edges, and edge attribution (EAP, EAP-IG) over it
(docs/lab.md, "Circuits").

Nodes in order: `embed`, then for each layer its heads `L{l}H{h}` and `MLP{l}`, then `logits`. Every
edge runs from an earlier node's output to one input of a later node: a head's `q`, `k` or `v`, an
MLP's `mlp`, or `logits`. Edges are kept flat, grouped by the input they feed:

    layer l:  q of heads 0..H-1, k of heads, v of heads   (sources: embed and every node of layers < l)
              mlp                                          (sources: those and layer l's heads)
    logits                                                 (sources: every node but logits)

and within an input by source, in node order.
"""

from dataclasses import dataclass

import torch

from ..hooks import act_name
from .common import PairRuns, gradients, head_node, mlp_node

INPUT_KINDS = ("q", "k", "v", "mlp", "logits")


@dataclass(frozen=True)
class Edge:
    src: str  # "embed", "L{l}H{h}" or "MLP{l}"
    dst: str  # "L{l}H{h}", "MLP{l}" or "logits"
    input: str  # "q", "k", "v", "mlp" or "logits"
    score: float = 0.0


class Graph:
    """Node and edge indices of a model with L layers of H heads."""

    def __init__(self, num_layers: int, num_heads: int):
        L, H = self.num_layers, self.num_heads = num_layers, num_heads
        self.nodes = ["embed"]
        for layer in range(L):
            self.nodes += [head_node(layer, h) for h in range(H)] + [mlp_node(layer)]
        self.nodes.append("logits")
        self.index = {name: i for i, name in enumerate(self.nodes)}
        src, dst, kinds = [], [], []
        for layer in range(L):
            for kind in ("q", "k", "v"):
                for h in range(H):
                    for u in range(self.sources_of_heads(layer)):
                        src.append(u), dst.append(self.index[head_node(layer, h)]), kinds.append(kind)
            for u in range(self.sources_of_mlp(layer)):
                src.append(u), dst.append(self.index[mlp_node(layer)]), kinds.append("mlp")
        for u in range(len(self.nodes) - 1):
            src.append(u), dst.append(len(self.nodes) - 1), kinds.append("logits")
        self.src, self.dst = torch.tensor(src), torch.tensor(dst)
        self.kinds = kinds
        self.edge_index = {
            (self.nodes[s], self.nodes[d], k): i for i, (s, d, k) in enumerate(zip(src, dst, kinds, strict=True))
        }

    def sources_of_heads(self, layer: int) -> int:
        """How many nodes come before layer `layer`'s heads: embed and every node of earlier layers."""
        return 1 + layer * (self.num_heads + 1)

    def sources_of_mlp(self, layer: int) -> int:
        return self.sources_of_heads(layer) + self.num_heads

    @property
    def num_edges(self) -> int:
        return self.src.numel()

    def blocks(self, flat: torch.Tensor) -> list:
        """Cut a per-edge vector into [(heads (n, 3, H), mlp (n,)) per layer] + [logits (N,)]: each
        row a source, in the flat order."""
        out, start, H = [], 0, self.num_heads
        for layer in range(self.num_layers):
            n, m = self.sources_of_heads(layer), self.sources_of_mlp(layer)
            heads = flat[start : start + 3 * H * n].view(3, H, n).permute(2, 0, 1)
            start += 3 * H * n
            out.append((heads, flat[start : start + m]))
            start += m
        out.append(flat[start:])
        return out

    def edge(self, i: int, score: float) -> Edge:
        return Edge(self.nodes[int(self.src[i])], self.nodes[int(self.dst[i])], self.kinds[i], float(score))


def output_names(num_layers: int) -> list[str]:
    """The hook points that hold the nodes' outputs (after the embeddings)."""
    return [act_name(part, layer) for layer in range(num_layers) for part in ("result", "mlp_out")]


def node_outputs(run_cache: dict, embed: torch.Tensor, num_layers: int) -> torch.Tensor:
    """(N - 1, T * C): every node's output but the logits', in node order, from one run's cache."""
    rows = [embed[0].flatten()]
    for layer in range(num_layers):
        result = run_cache[act_name("result", layer)][0]  # (T, H, C)
        rows += list(result.transpose(0, 1).flatten(1))
        rows.append(run_cache[act_name("mlp_out", layer)][0].flatten())
    return torch.stack(rows)


def input_names(num_layers: int) -> list[str]:
    """The hook points that hold the consumers' inputs: each head's q, k, v, each MLP's, the logits'."""
    names = [act_name(part, layer) for layer in range(num_layers) for part in ("q_input", "k_input", "v_input")]
    return names + [act_name("mlp_in", layer) for layer in range(num_layers)] + [act_name("resid_post", num_layers - 1)]


def edge_scores(model, graph: Graph, run: PairRuns, steps: int) -> torch.Tensor:
    """(E,) one pair's EAP scores, in LD units: (out_u corrupted − out_u clean) · ∂LD/∂(v's input),
    the gradient taken in the clean run (`steps` = 0) or averaged over `steps` runs interpolated from
    the corrupted input embeddings to the clean ones (EAP-IG)."""
    L, _H = graph.num_layers, graph.num_heads
    delta = node_outputs(run.corrupted, run.embed_corrupted, L) - node_outputs(run.clean, run.embed_clean, L)
    names = input_names(L)
    grads = gradients(model, run, names, steps, at="clean")
    scores = []
    for layer in range(L):
        qkv = torch.stack([grads[act_name(f"{kind}_input", layer)][0] for kind in ("q", "k", "v")])  # (3, T, H, C)
        qkv = qkv.permute(0, 2, 1, 3).flatten(2).flatten(0, 1)  # (3H, T * C)
        scores.append((qkv @ delta[: graph.sources_of_heads(layer)].T).flatten())  # (3H * n,)
        mlp = grads[act_name("mlp_in", layer)][0].flatten()
        scores.append(delta[: graph.sources_of_mlp(layer)] @ mlp)
    scores.append(delta @ grads[names[-1]][0].flatten())
    return torch.cat(scores).double().cpu()
