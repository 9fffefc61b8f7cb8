"""The lab's views: per-token loss, the logit lens, direct attribution with the ablation sweep beside
it, ablation before/after, and activation patching. Each returns `View`s: the numbers (for the API
and the exports) and a `Chart` of them that `gpt2.explorer.figures` draws for the screen and the
exported pages; the quantities come from `gpt2.lab` (defined in docs/lab.md).
"""

from dataclasses import dataclass, field

import numpy as np

from .. import lab
from ..tokenizer import get_tokenizer
from .cache import Entry
from .chart import MAX_AXIS, Chart
from .inputs import Pairs, UserInputError, as_int, clean_text
from .views import next_token_probs, next_token_view

TOP_K = 10


@dataclass
class View:
    """The numbers a view shows (`data` for JSON, `table` with its header row first for CSV) and the
    chart that draws them."""

    chart: Chart
    label: str
    data: dict
    table: list[list] = field(default_factory=list)
    source: str = ""  # what the numbers were computed from (e.g. the pairs patched), not exported


def token_text(token_id: int) -> str:
    """A token's own text, as the API and the exports give it (" king")."""
    return get_tokenizer().token_text(token_id)


def _layer_names(num_layers: int) -> list[str]:
    return ["embed", *(f"L{layer}" for layer in range(num_layers))]


def grid_table(values: np.ndarray, row_name: str = "layer") -> list[list]:
    """(L, H) as CSV rows: a header of heads, one row per layer."""
    return [[row_name, *(f"H{h}" for h in range(values.shape[1]))]] + [
        [f"L{layer}", *(round(float(v), 6) for v in row)] for layer, row in enumerate(values)
    ]


def head_map_chart(values: np.ndarray, title: str, number: str) -> Chart:
    """A diverging layers × heads map of `values` (L, H), each cell labelled with `number`."""
    text = [[number.format(v) for v in row] for row in values]
    return Chart("layer_head_map", dict(values=values, title=title, text=text, diverging=True))


# ---- where and what ------------------------------------------------------------------------------


def resolve_target(entry: Entry, position, target) -> tuple[int, int]:
    """(position, target token id). Position -1 (the default) is the last; a negative position counts
    from the end. An empty target is the actual next token there, or the model's top prediction at
    the end (decided by the caller via `None`); a typed target must be exactly one token."""
    T = len(entry.analysis.ids)
    position = as_int(position, "position")
    if position < 0:
        position += T
    if not 0 <= position < T:
        raise UserInputError(f"position must be between 0 and {T - 1} (or negative, from the end), got {position}")
    target = clean_text(target if target is not None else "", "the target")
    if not target:
        return position, entry.analysis.ids[position + 1] if position + 1 < T else -1
    ids = get_tokenizer().encode(target)
    if len(ids) != 1:
        raise UserInputError(f"the target must be exactly one token; {target[:30]!r} is {len(ids)} tokens")
    return position, ids[0]


def with_default_target(model, entry: Entry, position, target) -> tuple[int, int]:
    """`resolve_target`, with the model's top prediction as the target at the last position."""
    position, target_id = resolve_target(entry, position, target)
    if target_id < 0:
        target_id = int(next_token_probs(model, entry, position).argmax())
    return position, target_id


# ---- per-token loss ------------------------------------------------------------------------------


def loss_view(model, entry: Entry) -> View:
    loss, entropy = (t.numpy() for t in lab.token_losses(model, entry.analysis))
    fig = Chart(
        "token_line",
        dict(
            tokens=entry.tokens[1:],
            series={"loss": loss},
            y_title="loss of the next token (nats)",
            extra_hover={"entropy": entropy[:-1]},
        ),
    )
    mean = float(loss.mean()) if len(loss) else 0.0
    label = f"Per-token loss: each token's loss given the ones before it (mean {mean:.2f} nats); hover for the entropy"
    data = {"tokens": entry.tokens, "loss": loss.tolist(), "entropy": entropy.tolist()}
    table = [["position", "token", "loss", "entropy"]] + [
        [i + 1, entry.tokens[i + 1], round(float(loss[i]), 6), round(float(entropy[i]), 6)] for i in range(len(loss))
    ]
    return View(fig, label, data, table)


# ---- logit lens ----------------------------------------------------------------------------------


def lens_view(model, entry: Entry, max_positions: int = MAX_AXIS) -> View:
    """The logit lens over the last `max_positions` positions (all of them in `data`)."""
    lens = lab.logit_lens(model, entry.analysis)
    tokenizer = get_tokenizer()
    top_tokens = [[[tokenizer.token_text(i) for i in row] for row in layer] for layer in lens.top_ids.tolist()]
    layers = _layer_names(entry.analysis.num_layers)
    start = max(0, len(entry.tokens) - max_positions)
    fig = Chart(
        "lens_map",
        dict(
            top_probs=lens.top_probs[:, start:].numpy(),
            top_tokens=[layer[start:] for layer in top_tokens],
            tokens=entry.tokens[start:],
            layer_names=layers,
        ),
    )
    label = (
        "Logit lens: the top next token read from the residual stream after each layer (last row = the model's output)"
    )
    if start:
        label += f" · the last {max_positions} positions"
    data = {
        "tokens": entry.tokens,
        "layers": layers,
        "top_token": [[pos[0] for pos in layer] for layer in top_tokens],
        "top_prob": lens.top_probs[..., 0].tolist(),
    }
    table = [["layer", "position", "token", *(f"top{i + 1}" for i in range(lens.top_ids.size(-1)))]]
    for layer_name, layer in zip(layers, top_tokens, strict=True):
        for pos, tops in enumerate(layer):
            table.append([layer_name, pos, entry.tokens[pos], *tops])
    return View(fig, label, data, table)


def rank_view(model, entry: Entry, position: int, target: int) -> View:
    ranks = lab.lens_ranks(model, entry.analysis, position, target).numpy()
    layers = _layer_names(entry.analysis.num_layers)
    fig = Chart("line_series", dict(x=layers, values=ranks, y_title="rank (0 = top)"))
    label = f"Rank of {token_text(target)!r} at position {position}, layer by layer"
    return View(
        fig,
        label,
        {"layers": layers, "rank": ranks.tolist()},
        [["layer", "rank"], *map(list, zip(layers, ranks.tolist(), strict=True))],
    )


# ---- attribution and the sweep -------------------------------------------------------------------


def attribution_view(model, entry: Entry, position: int, target: int) -> tuple[View, View]:
    """(heads, MLPs and the rest): each component's direct contribution to the target's logit."""
    att = lab.direct_attribution(model, entry.analysis.ids, position, target)
    heads = att.heads.numpy()
    where = f"{token_text(target)!r} at position {position}"
    heads_fig = head_map_chart(heads, "direct", "{:+.2f}")
    L = heads.shape[0]
    labels = [
        "embed",
        *(f"MLP {layer}" for layer in range(L)),
        *(f"attn bias {layer}" for layer in range(L)),
        "LN bias",
    ]
    values = np.array([att.embed, *att.mlps.tolist(), *att.attn_biases.tolist(), att.constant])
    rest_fig = Chart("bar_series", dict(labels=labels, values=values, title="direct contribution"))
    data = {
        "position": position,
        "target": token_text(target),
        "direct": heads.tolist(),
        "mlps": att.mlps.tolist(),
        "attn_biases": att.attn_biases.tolist(),
        "embed": att.embed,
        "constant": att.constant,
        "total": att.total,
        "logit": att.logit,
    }
    heads_view = View(
        heads_fig,
        f"Direct logit attribution of each head to {where} (they sum, with the rest, to {att.logit:.2f})",
        data,
        grid_table(heads),
    )
    rest_view = View(
        rest_fig,
        f"Embeddings, MLPs and biases: direct contributions to {where}",
        data,
        [["component", "value"], *map(list, zip(labels, values.round(6).tolist(), strict=True))],
    )
    return heads_view, rest_view


def sweep_view(model, entry: Entry, position: int, target: int, progress=None) -> View:
    effects = lab.ablation_sweep(model, entry.analysis, position, target, progress).numpy()
    fig = head_map_chart(effects, "Δ log p", "{:+.2f}")
    label = f"Each head alone mean-ablated: change in log p({token_text(target)!r}) at position {position}"
    return View(
        fig,
        label,
        {"position": position, "target": token_text(target), "ablation": effects.tolist()},
        grid_table(effects),
    )


# ---- ablation ------------------------------------------------------------------------------------


def top_tokens(probs, k: int = TOP_K) -> list[list]:
    """[[token, probability], ...] of the `k` most likely."""
    values, ids = probs.topk(k)
    return [[token_text(i), round(float(p), 6)] for i, p in zip(ids.tolist(), values.tolist(), strict=True)]


def ablation_views(
    model, clean: Entry, ablated: Entry, ablation: lab.Ablation, position: int, target: int
) -> tuple[View, View, str]:
    """(loss before/after, next-token bars before/after, a one-line summary of the target's log p)."""
    loss_before = lab.token_losses(model, clean.analysis)[0].numpy()
    loss_after = lab.token_losses(model, ablated.analysis)[0].numpy()
    series = {"clean": loss_before, ablation.label: loss_after}
    loss_chart = Chart(
        "token_line", dict(tokens=clean.tokens[1:], series=series, y_title="loss of the next token (nats)")
    )
    before = next_token_probs(model, clean, position)
    after = next_token_probs(model, ablated, position)
    bars, _ = next_token_view(before, position, TOP_K, compare=after, names=("clean", "ablated"))
    lp_before, lp_after = float(before[target].log()), float(after[target].log())
    summary = (
        f"{ablation.label}: log p({token_text(target)!r}) at position {position} went from {lp_before:.2f} to "
        f"{lp_after:.2f} ({lp_after - lp_before:+.2f}); mean loss {loss_before.mean():.2f} → {loss_after.mean():.2f} nats"
    )
    data = {
        "tokens": clean.tokens,
        "loss_before": loss_before.tolist(),
        "loss_after": loss_after.tolist(),
        "top_before": top_tokens(before),
        "top_after": top_tokens(after),
    }
    table = [["position", "token", "loss_before", "loss_after"]] + [
        [i + 1, clean.tokens[i + 1], round(float(a), 6), round(float(b), 6)]
        for i, (a, b) in enumerate(zip(loss_before, loss_after, strict=True))
    ]
    loss_view = View(loss_chart, f"Per-token loss, clean and {ablation.label}", data, table)
    top_ids = before.topk(TOP_K).indices.tolist()
    bar_table = [["token", "p_clean", "p_ablated"]] + [
        [token_text(i), float(before[i]), float(after[i])] for i in top_ids
    ]
    bars_view = View(bars, f"Next token after position {position}: clean and {ablation.label}", data, bar_table)
    return loss_view, bars_view, summary


# ---- patching ------------------------------------------------------------------------------------


def patch_views(model, pairs: Pairs, progress=None) -> tuple[View, View, str]:
    """Exact patching of one pair or a prompt set (its positions aligned at each pair's last token,
    named by the longest corrupted prompt's tokens)."""
    result = lab.patch(model, pairs.clean, pairs.corrupted, pairs.answers, progress=progress)
    tokenizer = get_tokenizer()
    longest = pairs.corrupted if pairs.count == 1 else max(pairs.corrupted, key=len)
    tokens = [tokenizer.token_text(i) for i in longest]
    answer_clean, answer_corrupted = token_text(result.answer_clean), token_text(result.answer_corrupted)
    data = {
        "answer_clean": answer_clean,
        "answer_corrupted": answer_corrupted,
        "resid": result.resid.tolist(),
        "heads": result.heads.tolist(),
        "logit_diff_clean": result.ld_clean,
        "logit_diff_corrupted": result.ld_corrupted,
        "pairs": pairs.count,
    }
    resid_fig = Chart("layer_position_map", dict(values=result.resid.numpy(), tokens=tokens, title="restored"))
    heads_fig = head_map_chart(result.heads.numpy(), "restored", "{:.2f}")
    resid_table = [["layer", *(f"{i}:{t}" for i, t in enumerate(tokens))]] + [
        [f"L{layer}", *(round(float(v), 6) for v in row)] for layer, row in enumerate(result.resid.numpy())
    ]
    which = "" if pairs.count == 1 else f"Over {pairs.count} pairs (the first pair's answers shown): "
    summary = (
        f"{which}Answers: {answer_clean!r} (clean) vs {answer_corrupted!r} (corrupted); logit difference "
        f"{result.ld_clean:.2f} clean, {result.ld_corrupted:.2f} corrupted. 1 = patching restores the clean "
        "difference, 0 = no effect."
    )
    return (
        View(resid_fig, "Residual stream patched at one layer and position (clean into corrupted)", data, resid_table),
        View(
            heads_fig,
            "One head's output patched at every position (clean into corrupted)",
            data,
            grid_table(result.heads.numpy()),
            source=pairs.key,
        ),
        summary,
    )
