"""Find a circuit: score every edge, keep the strongest, drop what is on no path from the embeddings
to the logits, and check the result by exact faithfulness (docs/lab.md, "Circuits")."""

from dataclasses import dataclass, field

import torch

from .common import CircuitError, PairRuns, check_steps, mean_lds, pair_runs
from .faithfulness import CURVE_SIZES, base_names, circuit_ld
from .graph import Edge, Graph, edge_scores, output_names

METHODS = ("eap", "eap-ig")


@dataclass
class Circuit:
    """The kept edges (strongest |score| first; scores in logit-difference units, negative where
    corrupting the edge lowers the clean answer's lead), the nodes they touch, the circuit's exact
    faithfulness and the curve [(edges kept, faithfulness), ...]."""

    edges: list[Edge]
    nodes: list[str]
    faithfulness: float
    curve: list[tuple[int, float]] = field(default_factory=list)
    method: str = "eap-ig"
    steps: int = 5
    answers: tuple[tuple[int, int], ...] = ()
    ld_clean: float = 0.0
    ld_corrupted: float = 0.0
    total_edges: int = 0


class _Graphs:
    """One request's graph, pair runs and the faithfulness ends, reused across circuits."""

    def __init__(self, model, graph: Graph, clean_ids, corrupted_ids, answers):
        L = graph.num_layers
        self.model, self.graph = model, graph
        self.runs: list[PairRuns] = pair_runs(model, clean_ids, corrupted_ids, answers, output_names(L) + base_names(L))
        self._ends: tuple[float, float] | None = None

    def ld(self, kept: torch.Tensor) -> float:
        return sum(circuit_ld(self.model, self.graph, run, kept) for run in self.runs) / len(self.runs)

    def faithfulness(self, kept: torch.Tensor) -> float:
        if self._ends is None:
            every = torch.ones(self.graph.num_edges, dtype=torch.bool)
            self._ends = (self.ld(every), self.ld(~every))
        full, empty = self._ends
        if full == empty:
            raise CircuitError("the two prompts give the same logit difference: faithfulness is undefined")
        return (self.ld(kept) - empty) / (full - empty)

    def scores(self, steps: int) -> torch.Tensor:
        """(E,) the mean over the pairs of each edge's score."""
        return sum(edge_scores(self.model, self.graph, run, steps) for run in self.runs) / len(self.runs)

    def top(self, scores: torch.Tensor, n: int) -> torch.Tensor:
        """(E,) bool: the `n` edges of largest |score|, less those on no path from embed to logits."""
        kept = torch.zeros(scores.numel(), dtype=torch.bool)
        kept[scores.abs().topk(n).indices] = True
        return on_paths(self.graph, kept)


def on_paths(graph: Graph, kept: torch.Tensor) -> torch.Tensor:
    """`kept` less the edges on no path from `embed` to `logits` through kept edges."""
    N = len(graph.nodes)
    src, dst = graph.src[kept], graph.dst[kept]
    reached = torch.zeros(N, dtype=torch.bool)  # from embed
    reached[0] = True
    for v in range(1, N):  # sources come before their consumers in node order
        reached[v] = reached[src[dst == v]].any()
    reaches = torch.zeros(N, dtype=torch.bool)  # to logits
    reaches[N - 1] = True
    for u in range(N - 2, -1, -1):
        reaches[u] = reaches[dst[src == u]].any()
    out = kept.clone()
    out[kept] = reached[src] & reaches[dst]
    return out


def _check(method: str, edges: int, total: int) -> None:
    if method not in METHODS:
        raise CircuitError(f"unknown method {str(method)[:20]!r}: use eap or eap-ig")
    if not isinstance(edges, int) or not 1 <= edges <= total:
        raise CircuitError(f"the number of edges must be from 1 to {total} (this model's graph), not {edges!r}")


def find_circuit(
    model,
    clean_ids,
    corrupted_ids,
    answers=None,
    edges: int = 30,
    method: str = "eap-ig",
    steps: int = 5,
    curve: bool = True,
) -> Circuit:
    """The circuit of the `edges` strongest edges by EAP (`method="eap"`: gradients of the clean run)
    or EAP-IG (`"eap-ig"`: averaged over `steps` interpolated runs), pruned to the paths from `embed`
    to `logits`, with its faithfulness and (with `curve`) the faithfulness of the top 5, 10, 20, 50,
    100, 200 and `edges` edges, each capped at the graph's size. `answers` and prompt sets as in
    `gpt2.lab.patch`."""
    graph = Graph(model.config.num_layers, model.config.num_heads)
    _check(method, edges, graph.num_edges)
    steps = check_steps(steps) if method == "eap-ig" else 0
    if method == "eap-ig" and steps == 0:
        raise CircuitError("eap-ig needs at least one step: use method eap for plain gradients")
    graphs = _Graphs(model, graph, clean_ids, corrupted_ids, answers)
    scores = graphs.scores(steps)
    kept = graphs.top(scores, edges)
    order = kept.nonzero().flatten()
    order = order[scores[order].abs().argsort(descending=True)]
    kept_edges = [graphs.graph.edge(int(i), scores[i]) for i in order]
    nodes = [n for n in graphs.graph.nodes if any(n in (e.src, e.dst) for e in kept_edges)]
    total = graphs.graph.num_edges
    sizes = sorted({min(n, total) for n in (*CURVE_SIZES, edges)}) if curve else [edges]
    points = [(n, graphs.faithfulness(kept if n == edges else graphs.top(scores, n))) for n in sizes]
    ld_clean, ld_corrupted = mean_lds(graphs.runs)
    return Circuit(
        edges=kept_edges,
        nodes=nodes,
        faithfulness=dict(points)[edges],
        curve=points if curve else [],
        method=method,
        steps=steps,
        answers=tuple(run.answers for run in graphs.runs),
        ld_clean=ld_clean,
        ld_corrupted=ld_corrupted,
        total_edges=total,
    )


def faithfulness(model, clean_ids, corrupted_ids, edges, answers=None) -> float:
    """Exact faithfulness of the circuit made of `edges` (`Edge`s or (src, dst, input) triples):
    (LD_C − LD_corrupted) / (LD_clean − LD_corrupted), where in the clean run every edge outside the
    circuit carries its source's corrupted output. Every edge gives 1, none 0."""
    graph = Graph(model.config.num_layers, model.config.num_heads)
    graphs = _Graphs(model, graph, clean_ids, corrupted_ids, answers)
    kept = torch.zeros(graphs.graph.num_edges, dtype=torch.bool)
    for edge in edges:
        key = (edge.src, edge.dst, edge.input) if isinstance(edge, Edge) else tuple(edge)
        if key not in graphs.graph.edge_index:
            raise CircuitError(f"this model's graph has no edge {key[0]} → {key[1]} ({key[2]})")
        kept[graphs.graph.edge_index[key]] = True
    return graphs.faithfulness(kept)
