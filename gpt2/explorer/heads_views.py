"""The views of heads explained: why a query attends to a key (QK parts), the model's own head roles,
composition between heads, and one head's passport. Each returns a `View` (numbers, and the chart
that draws them); the quantities come from `gpt2.heads` (defined in docs/lab.md)."""

import numpy as np
import torch

from ..heads import MODES, HeadOutputs, composition_scores, model_roles, ov_table, qk_attribution_from, qk_table
from ..heads.roles import ROLE_RULES
from ..tokenizer import get_tokenizer
from .cache import Entry
from .chart import Chart, visible_token
from .lab_views import View

TOP_PARTS = 8  # bars on each side of a QK view
TOP_PARTNERS = 4  # composition partners per direction in a passport
TABLE_TOKENS, TABLE_TOP = 6, 5  # a passport's token tables: rows, and tokens per row
ROLE_SCORE = {label: score for label, score, _ in ROLE_RULES}  # the score each role label rests on


def _token(token_id: int) -> str:
    return visible_token(get_tokenizer().token_text(int(token_id)))


def head_name(layer: int, head: int) -> str:
    return f"L{layer} H{head}"


# ---- why this key --------------------------------------------------------------------------------


def _top_parts(labels: list[str], values: torch.Tensor, k: int = TOP_PARTS) -> tuple[list[str], list[float]]:
    """The `k` parts with the largest |value|, largest first."""
    order = values.abs().argsort(descending=True)[:k].tolist()
    return [labels[i] for i in order], [float(values[i]) for i in order]


def top_senders(model, layer: int, head: int, mode: str = "k", k: int = 3) -> list[tuple[str, float]]:
    """The earlier heads whose output the head reads most in `mode` (composition scores)."""
    if layer == 0:
        return []
    scores = composition_scores(model, mode)[:layer, :, layer, head]  # (layer, H)
    flat = scores.flatten()
    H = scores.size(1)
    order = flat.argsort(descending=True)[:k].tolist()
    return [(head_name(i // H, i % H), float(flat[i])) for i in order]


def qk_view(model, entry: Entry, outputs: HeadOutputs, layer: int, head: int, query: int, key: int) -> View:
    """Why `query` attends to `key` in one head: the key side's top parts by contrast (what makes this
    key beat the others the query sees), the query side's top parts, and the head's top K-composition
    senders, with every part in `data` and `table`."""
    cell = qk_attribution_from(model, entry.analysis, layer, head, query, key, outputs)
    key_labels, key_values = _top_parts(cell.labels, cell.key_contrast)
    query_labels, query_values = _top_parts(cell.labels, cell.query)
    chart = Chart(
        "qk_parts",
        dict(
            key_labels=key_labels,
            key_values=key_values,
            query_labels=query_labels,
            query_values=query_values,
            key_title=f"key {key}: why it wins",
            query_title=f"query {query}: its parts",
        ),
    )
    senders = top_senders(model, layer, head)
    reads = ", ".join(f"{name} {score:.2f}" for name, score in senders)
    label = (
        f"Why {head_name(layer, head)}'s query {query} '{_token(entry.analysis.ids[query])}' attends to key {key} "
        f"'{_token(entry.analysis.ids[key])}': score {cell.score:.2f}, {cell.score - cell.mean_score:+.2f} over its mean "
        f"across the {query + 1} keys it sees"
    )
    if reads:
        label += f" · reads keys from (K-composition): {reads}"
    data = {**cell.to_dict(), "tokens": entry.tokens, "k_composition_senders": [list(s) for s in senders]}
    table = [["part", "query_share", "key_share", "key_contrast"]] + [
        [name, round(float(q), 6), round(float(k), 6), round(float(c), 6)]
        for name, q, k, c in zip(cell.labels, cell.query, cell.key, cell.key_contrast, strict=True)
    ]
    return View(chart, label, data, table)


def qk_matrix_view(model, entry: Entry, outputs: HeadOutputs, layer: int, head: int, query: int, key: int) -> View:
    """Every query-side part × every key-side part of one cell (they sum to its score)."""
    cell = qk_attribution_from(model, entry.analysis, layer, head, query, key, outputs)
    chart = Chart("qk_matrix", dict(matrix=cell.matrix.numpy(), query_labels=cell.labels, key_labels=cell.labels))
    label = f"{head_name(layer, head)}, query {query} × key {key}: every pair of parts (they sum to {cell.score:.2f})"
    table = [["query part \\ key part", *cell.labels]] + [
        [name, *(round(float(v), 6) for v in row)] for name, row in zip(cell.labels, cell.matrix, strict=True)
    ]
    return View(chart, label, cell.to_dict(), table)


# ---- the model's own roles ------------------------------------------------------------------------


def role_strengths(roles) -> np.ndarray:
    """(L, H) how strongly each head holds its role: the score its label rests on (|copying| for
    suppression), or its largest attention score where it is mixed."""
    scores = {name: s.numpy() for name, s in roles.scores.items()}
    attention = np.maximum.reduce([scores[n] for n in ("previous-token", "duplicate-token", "induction", "sink")])
    L, H = attention.shape
    out = np.empty((L, H), dtype=np.float32)
    for layer in range(L):
        for head in range(H):
            label = roles.labels[layer][head]
            name = ROLE_SCORE.get(label)
            out[layer, head] = abs(scores[name][layer, head]) if name else attention[layer, head]
    return out


def roles_view(model, selected: tuple[int, int] | None = None) -> View:
    """Every head's role from the model's own behaviour, independent of any text."""
    roles = model_roles(model)
    strengths = role_strengths(roles)
    L, H = strengths.shape
    chart = Chart("role_map", dict(labels=roles.labels, strengths=strengths, selected=selected))
    label = (
        "The model's own roles (random repeated sequences of tokens it knows, a fixed natural text, its "
        "weights; not your text): click a head for its passport"
    )
    table = [["layer", "head", "role", *roles.scores]] + [
        [layer, h, roles.labels[layer][h], *(round(float(s[layer, h]), 6) for s in roles.scores.values())]
        for layer in range(L)
        for h in range(H)
    ]
    return View(chart, label, roles.to_dict(), table)


# ---- composition and a head's passport ------------------------------------------------------------


def composition_view(model, mode: str, selected: tuple[int, int] | None = None) -> View:
    scores = composition_scores(model, mode)  # checks the mode
    mode = mode.lower()
    chart = Chart("composition_map", dict(scores=scores.numpy(), title=f"{mode.upper()}-comp.", selected=selected))
    label = (
        f"{mode.upper()}-composition from the weights: how much each sender's output (rows) can reach each "
        "later head's "
        + {"q": "queries", "k": "keys", "v": "values"}[mode]
        + " (columns); click a cell to open the receiver"
    )
    L, H = scores.shape[:2]
    table = [["sender", "receiver", "score"]] + [
        [head_name(l1, h1), head_name(l2, h2), round(float(scores[l1, h1, l2, h2]), 6)]
        for l1 in range(L)
        for h1 in range(H)
        for l2 in range(l1 + 1, L)
        for h2 in range(H)
    ]
    return View(chart, label, {"mode": mode, "scores": scores.tolist()}, table)


def partners(model, layer: int, head: int, k: int = TOP_PARTNERS) -> list[dict]:
    """The head's strongest composition partners in each direction over the three modes: the earlier
    heads it reads from and the later heads that read it, `k` of each, strongest first."""
    found = []
    for mode in MODES:
        scores = composition_scores(model, mode)
        L, H = scores.shape[:2]
        for other in range(L):
            for h in range(H):
                if other < layer:  # an earlier head this one reads
                    score = float(scores[other, h, layer, head])
                    found.append(dict(layer=other, head=h, mode=mode, direction="reads", score=score))
                elif other > layer:  # a later head that reads this one
                    score = float(scores[layer, head, other, h])
                    found.append(dict(layer=other, head=h, mode=mode, direction="feeds", score=score))
    best = []
    for direction in ("reads", "feeds"):
        mine = sorted((p for p in found if p["direction"] == direction), key=lambda p: -p["score"])
        best += mine[:k]
    return best


def _table_rows(table) -> list[dict]:
    return [
        {"token": _token(token), "top": [[_token(i), round(float(v), 4)] for i, v in zip(ids, values, strict=True)]}
        for token, ids, values in zip(table.inputs, table.ids.tolist(), table.values.tolist(), strict=True)
    ]


def head_card(model, layer: int, head: int, token_ids: list[int]) -> tuple[View, str]:
    """A head's passport: its role and scores from the model itself, its copying score, its strongest
    composition partners (a chart: click a bar to open that head), and its OV and QK circuits as
    token tables for `token_ids`. Returns (the partners' view, the passport as Markdown)."""
    roles = model_roles(model)
    found = partners(model, layer, head)
    token_ids = list(dict.fromkeys(token_ids))[:TABLE_TOKENS]
    ov = _table_rows(ov_table(model, layer, head, token_ids, k=TABLE_TOP))
    qk = _table_rows(qk_table(model, layer, head, token_ids, k=TABLE_TOP))
    scores = {name: round(float(s[layer, head]), 4) for name, s in roles.scores.items()}
    names = [head_name(p["layer"], p["head"]) for p in found]
    modes = [f"{p['mode'].upper()}, {p['direction']}" for p in found]
    chart = Chart(
        "partner_bars",
        dict(labels=names, values=[p["score"] for p in found], modes=modes, title="composition score"),
    )
    label = f"{head_name(layer, head)}'s strongest composition partners: the heads it reads and the heads that read it (click one to open it)"
    data = {"layer": layer, "head": head, "role": roles.labels[layer][head], "scores": scores}
    data |= {"partners": found, "ov": ov, "qk": qk}
    table = [["partner", "mode", "direction", "score"]] + [
        [name, p["mode"], p["direction"], round(p["score"], 6)] for name, p in zip(names, found, strict=True)
    ]
    return View(chart, label, data, table), passport_markdown(data)


def passport_markdown(card: dict) -> str:
    scores = " · ".join(
        f"{name} {value:+.2f}" if name == "copying" else f"{name} {value:.2f}" for name, value in card["scores"].items()
    )
    lines = [
        f"### {head_name(card['layer'], card['head'])} · {card['role']}",
        f"From the model itself: {scores}",
        "",
        "| token | it writes (OV: top logits raised when attended to) | as a query it prefers keys (QK) |",
        "|---|---|---|",
    ]
    for ov, qk in zip(card["ov"], card["qk"], strict=True):
        written = ", ".join(f"`{_md(t)}`" for t, _ in ov["top"])
        keys = ", ".join(f"`{_md(t)}`" for t, _ in qk["top"])
        lines.append(f"| `{_md(ov['token'])}` | {written} | {keys} |")
    return "\n".join(lines)


def _md(text: str) -> str:
    """Token text safe inside a Markdown code span in a table cell."""
    return text.replace("`", "ˋ").replace("|", "¦")
