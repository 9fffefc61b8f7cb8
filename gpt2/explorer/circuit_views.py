"""The views of circuits: the pairs a visitor typed (or a task made), attribution patching beside
exact patching, and the circuit graph with its faithfulness curve. Each returns `View`s; the
quantities come from `gpt2.circuits` (defined in docs/lab.md)."""

import numpy as np

from ..circuits import attribution_patching, find_circuit
from ..circuits.tasks import make_task
from ..tokenizer import get_tokenizer
from .chart import Chart
from .inputs import Pairs
from .lab_views import View, grid_table, head_map_chart, token_text
from .texts import TASK_SEED

TASK_PAIRS = 1  # pairs a task fills in (the prompt-set box takes more)


def task_texts(model, name: str, seed: int = TASK_SEED) -> dict:
    """A task's first pair as the boxes show it: {clean, corrupted, answer_clean, answer_corrupted}."""
    task = make_task(model, name, TASK_PAIRS, seed)
    tok = get_tokenizer()
    (clean, corrupted), (a, b) = task.texts()[0], task.answers[0]
    return {
        "clean": clean,
        "corrupted": corrupted,
        "answer_clean": tok.decode([a]),
        "answer_corrupted": tok.decode([b]),
    }


def _pair_words(count: int) -> str:
    return "this pair" if count == 1 else f"these {count} pairs"


# ---- attribution patching ------------------------------------------------------------------------


def attribution_views(model, pairs: Pairs, steps: int, exact_heads: np.ndarray | None = None) -> tuple[View, View, str]:
    """(heads, MLPs) estimated by attribution patching, and a summary that compares the heads with
    exact patching's (`exact_heads`, when it was run on the same pairs)."""
    result = attribution_patching(model, pairs.clean, pairs.corrupted, pairs.answers, steps=steps)
    heads, mlp = result.heads.numpy(), result.mlp.numpy()
    how = f"integrated gradients, {steps} steps" if steps else "one gradient"
    data = {
        "steps": steps,
        "answer_clean": token_text(result.answer_clean),
        "answer_corrupted": token_text(result.answer_corrupted),
        "resid": result.resid.tolist(),
        "heads": heads.tolist(),
        "mlp": mlp.tolist(),
        "logit_diff_clean": result.ld_clean,
        "logit_diff_corrupted": result.ld_corrupted,
    }
    heads_view = View(
        head_map_chart(heads, "estimated", "{:.2f}"),
        f"Attribution patching ({how}): each head's estimated share of the logit difference restored",
        data,
        grid_table(heads),
    )
    names = [f"MLP {layer}" for layer in range(len(mlp))]
    mlp_view = View(
        Chart("bar_series", dict(labels=names, values=mlp, title="estimated")),
        f"Attribution patching ({how}): each MLP's estimated share",
        data,
        [["mlp", "estimated"], *map(list, zip(names, mlp.round(6).tolist(), strict=True))],
    )
    summary = (
        f"Estimated in one pass ({how}) on {_pair_words(pairs.count)}: answers {data['answer_clean']!r} vs "
        f"{data['answer_corrupted']!r}."
    )
    if exact_heads is not None and exact_heads.shape == heads.shape and heads.std() > 0 and exact_heads.std() > 0:
        r = float(np.corrcoef(heads.ravel(), exact_heads.ravel())[0, 1])
        summary += f" Agreement with exact patching over the heads: Pearson r = {r:.2f}."
    else:
        summary += " Patch exactly to confirm a candidate."
    return heads_view, mlp_view, summary


# ---- the circuit ---------------------------------------------------------------------------------


def circuit_views(model, pairs: Pairs, edges: int, method: str, steps: int = 5) -> tuple[View, View, str]:
    """(the graph, the faithfulness curve, a summary) of the circuit of the `edges` strongest edges."""
    circuit = find_circuit(model, pairs.clean, pairs.corrupted, pairs.answers, edges=edges, method=method, steps=steps)
    config = model.config
    edge_rows = [{"src": e.src, "dst": e.dst, "input": e.input, "score": float(e.score)} for e in circuit.edges]
    counts, values = [n for n, _ in circuit.curve], [float(f) for _, f in circuit.curve]
    (answer_clean, answer_corrupted), *_ = circuit.answers
    data = {
        "method": circuit.method,
        "steps": circuit.steps,
        "answer_clean": token_text(answer_clean),
        "answer_corrupted": token_text(answer_corrupted),
        "nodes": circuit.nodes,
        "edges": edge_rows,
        "faithfulness": float(circuit.faithfulness),
        "curve": [list(point) for point in circuit.curve],
        "logit_diff_clean": circuit.ld_clean,
        "logit_diff_corrupted": circuit.ld_corrupted,
    }
    how = f"EAP-IG, {circuit.steps} steps" if circuit.method == "eap-ig" else "EAP"
    graph = View(
        Chart(
            "circuit_graph",
            dict(nodes=circuit.nodes, edges=edge_rows, num_layers=config.num_layers, num_heads=config.num_heads),
        ),
        f"The circuit: the {len(edge_rows)} strongest edges ({how}) on a path from the embeddings to the logits; "
        "width = |score|; blue edges carry the clean answer, red ones work against it; click a head to open it",
        data,
        [["from", "to", "input", "score"]]
        + [[e["src"], e["dst"], e["input"], round(e["score"], 6)] for e in edge_rows],
    )
    curve = View(
        Chart("faithfulness_curve", dict(counts=counts, values=values, shown=edges)),
        f"Faithfulness against edges kept (exact: the share of the logit difference the circuit alone restores); "
        f"{edges} edges: {circuit.faithfulness:.2f}",
        data,
        [["edges", "faithfulness"], *map(list, circuit.curve)],
    )
    summary = (
        f"Circuit of {_pair_words(pairs.count)}, answers {data['answer_clean']!r} vs {data['answer_corrupted']!r}: "
        f"{len(edge_rows)} edges, {len(circuit.nodes)} nodes, faithfulness {circuit.faithfulness:.2f} "
        f"(1 = the circuit alone carries the effect, 0 = none of it)."
    )
    return graph, curve, summary
