"""The attention views, as plain functions of an analysis entry: token chips, the heatmap of one
head (or a layer's mean), the query's attention over the text, next-token bars, the head grid and
the head-score map. Each returns data: chips, arrays, or a `Chart` that `gpt2.explorer.figures`
draws; the tabs' handlers only route them.
"""

import threading
import weakref
from collections import OrderedDict

import numpy as np
import torch

from ..analysis import final_hidden, layer_maps
from ..lab import token_losses
from ..scores import SCORE_NAMES, bin_size, drop_first_token, pool_map
from ..tokenizer import get_tokenizer
from .cache import Entry
from .chart import MAX_AXIS, Chart, visible_token
from .inputs import MEAN, UserInputError, as_int, check_head, head_value
from .session import Window

PROMPT, GENERATED, QUERY = "prompt", "generated", "query"
CHIP_COLORS = {PROMPT: "#9ecae1", GENERATED: "#fdae6b", QUERY: "#e45756"}


# ---- token chips ---------------------------------------------------------------------------------


def cut_marker(window: Window) -> str:
    return f"✂ {window.cut:,} earlier tokens"


def token_chips(window: Window, query: int | None = None, losses: np.ndarray | None = None) -> list:
    """(text, category) chips for gr.HighlightedText: what the model sees, after a ✂ marker when
    tokens came before it; the query marked. With `losses` ((n - 1,) nats, each next token's loss),
    chips carry a score instead: each token's own loss scaled to 0..1 (the first has none)."""
    tokenizer = get_tokenizer()
    texts = [visible_token(tokenizer.token_text(i)) for i in window.ids]
    chips: list = [(cut_marker(window), None)] if window.cut else []
    if losses is not None:
        scale = max(float(np.max(losses)), 1e-6) if len(losses) else 1.0
        return (
            chips
            + [(texts[0], None)]
            + [(text, round(float(loss) / scale, 3)) for text, loss in zip(texts[1:], losses, strict=True)]
        )
    for n, text in enumerate(texts):
        category = QUERY if n == query else PROMPT if n < window.prompt_len else GENERATED
        chips.append((text, category))
    return chips


def loss_chips(model, entry: Entry, window: Window) -> list:
    """The token chips coloured by each token's loss given the ones before it."""
    return token_chips(window, losses=token_losses(model, entry.analysis)[0].numpy())


def chip_position(window: Window, chip_index) -> int | None:
    """The window position of a clicked chip; None for the ✂ marker."""
    index = as_int(chip_index if not isinstance(chip_index, (list, tuple)) else chip_index[0], "token")
    position = index - (1 if window.cut else 0)
    if not 0 <= position < len(window.ids):
        return None
    return position


# ---- one head's maps -----------------------------------------------------------------------------


class _MapCache:
    """The last few maps shown, so that a click on a token does not recompute its head's map."""

    def __init__(self, size: int = 8):
        self._items: OrderedDict[tuple, tuple] = OrderedDict()
        self._lock = threading.Lock()
        self.size = size

    def get(self, model, entry: Entry, layer: int, head: int | str) -> np.ndarray:
        key = (id(entry.analysis), layer, head)
        with self._lock:
            hit = self._items.get(key)
            if hit is not None and hit[0]() is entry.analysis:
                self._items.move_to_end(key)
                return hit[1]
        heads = slice(None) if head == MEAN else slice(head, head + 1)
        maps = layer_maps(model, entry.analysis, layer, heads)
        attn = (maps.mean(0) if head == MEAN else maps[0]).numpy()
        with self._lock:
            # a weak reference: a map must not keep an analysis that the analysis cache let go
            self._items[key] = (weakref.ref(entry.analysis), attn)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return attn


MAPS = _MapCache()


def checked_head(entry: Entry, layer, head) -> tuple[int, int | str]:
    return check_head(layer, head, entry.analysis.num_layers, entry.analysis.num_heads)


def head_map(model, entry: Entry, layer: int, head: int | str, hide_sink: bool = False) -> np.ndarray:
    """(T, T) map of one head, or the layer's mean over heads; optionally without the first-token sink."""
    attn = MAPS.get(model, entry, layer, head)
    return drop_first_token(torch.from_numpy(attn)).numpy() if hide_sink else attn


def head_name(entry: Entry, layer: int, head: int | str) -> str:
    if head == MEAN:
        return f"L{layer} · mean of {entry.analysis.num_heads} heads"
    return f"L{layer} H{head} · {entry.analysis.roles[layer][head]}"


def heatmap_view(model, entry: Entry, layer, head, hide_sink=False, log_scale=False, query: int | None = None):
    """(chart, label): the big heatmap, the query's row outlined; texts over `MAX_AXIS` tokens are
    pooled (rows averaged, keys summed) and the label says so."""
    layer, head = checked_head(entry, layer, head)
    attn = head_map(model, entry, layer, head, hide_sink)
    T = attn.shape[-1]
    label = f"Attention of {head_name(entry, layer, head)}: queries down, keys across"
    if hide_sink:
        label += " · first-token sink hidden"
    if T <= MAX_AXIS:
        z = np.where(np.tril(np.ones((T, T), dtype=bool)), attn, np.nan)
        return Chart("text_heatmap", dict(attn=z, tokens=entry.tokens, log_scale=log_scale, query_row=query)), label
    size = bin_size(T, MAX_AXIS)
    pooled = pool_map(torch.from_numpy(attn), MAX_AXIS).numpy()
    row = None if query is None else query // size
    args = dict(attn=pooled, tokens=entry.tokens, bin_size=size, log_scale=log_scale, query_row=row)
    return Chart("text_heatmap", args), label + f" · {T} tokens pooled in bins of {size}"


def heatmap_click_position(entry: Entry, row) -> int:
    """The position a click on heatmap row `row` selects (the first of a pooled bin)."""
    T = len(entry.analysis.ids)
    size = bin_size(T, MAX_AXIS)
    return min(T - 1, max(0, as_int(row, "row") * size))


def query_chips(model, entry: Entry, layer, head, query: int, hide_sink: bool = False) -> list:
    """The tokens up to the query coloured by how much it attends to each (scaled so the strongest
    key is 1), bertviz's head view; the query bracketed. Later tokens are out of its sight."""
    layer, head = checked_head(entry, layer, head)
    row = head_map(model, entry, layer, head, hide_sink)[query, : query + 1]
    scale = max(float(row.max()), 1e-9)
    chips = []
    for n, tok in enumerate(entry.tokens[: query + 1]):
        text = visible_token(tok)
        chips.append((f"[{text}]" if n == query else text, round(float(row[n]) / scale, 3)))
    later = len(entry.tokens) - query - 1
    if later:
        chips.append((f"… {later} later token{'s' if later > 1 else ''} (the query cannot see them)", None))
    return chips


# ---- next-token bars -----------------------------------------------------------------------------


@torch.no_grad()
def next_token_probs(model, entry: Entry, position: int) -> torch.Tensor:
    """(V,) next-token probabilities after `position`."""
    logits = final_hidden(model, entry.analysis, position) @ model.lm_head.weight.T
    return torch.softmax(logits.float(), -1).cpu()


def next_token_view(
    probs: torch.Tensor, position: int, k: int = 10, compare: torch.Tensor | None = None, names=("clean", "ablated")
):
    """(chart, label): the top-k next tokens of `probs` ((V,), after `position`); with `compare`
    (another run's probabilities there), the same tokens' probabilities beside them."""
    tokenizer = get_tokenizer()
    top_probs, top_ids = probs.topk(k)
    args = dict(tokens=[tokenizer.token_text(i) for i in top_ids.tolist()], probs=top_probs.numpy())
    if compare is not None:
        args.update(compare=compare[top_ids].numpy(), names=names)
    return Chart("probability_bars", args), f"Next token after position {position}"


# ---- every head ----------------------------------------------------------------------------------


def grid_view(entry: Entry, selected: tuple[int, int] | None) -> Chart:
    return Chart(
        "head_grid", dict(thumbnails=entry.analysis.thumbnails.numpy(), roles=entry.analysis.roles, selected=selected)
    )


def score_view(entry: Entry, score_name: str, selected: tuple[int, int] | None) -> Chart:
    if score_name not in entry.analysis.scores:
        raise UserInputError(f"unknown score {score_name!r}: choose one of {', '.join(SCORE_NAMES)}")
    scores = entry.analysis.scores[score_name].numpy()
    roles = entry.analysis.roles
    text = [
        [f"{scores[layer, head]:.2f}<br>{roles[layer][head]}" for head in range(scores.shape[1])]
        for layer in range(scores.shape[0])
    ]
    return Chart("layer_head_map", dict(values=scores, title=score_name, text=text, selected=selected))


def head_choices(entry: Entry) -> list[tuple[str, str]]:
    """Dropdown entries: every head with its role and scores, as (label, 'layer,head')."""
    analysis = entry.analysis
    choices = []
    for layer in range(analysis.num_layers):
        for head in range(analysis.num_heads):
            s = {name: float(analysis.scores[name][layer, head]) for name in SCORE_NAMES}
            label = (
                f"L{layer} H{head} · {analysis.roles[layer][head]} "
                f"(prev {s['previous-token']:.2f}, ind {s['induction']:.2f}, sink {s['first-token sink']:.2f})"
            )
            choices.append((label, head_value(layer, head)))
    return choices


def attention_json(model, entry: Entry, layer, head) -> dict:
    """{"tokens": [...], "attention": [[...]]} for one head (rows are queries)."""
    layer, head = checked_head(entry, layer, head)
    attn = np.round(head_map(model, entry, layer, head).astype(np.float64), 6)
    # Gradio keeps each session's last answer: the future of every row shares one 0.0 object,
    # which halves what a long text's answer holds
    T = attn.shape[0]
    rows = [attn[query, : query + 1].tolist() + [0.0] * (T - query - 1) for query in range(T)]
    return {"tokens": entry.tokens, "attention": rows}
