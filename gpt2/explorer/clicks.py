"""Clicks in the plots: the page's script sends each as "owner:row,column" through a hidden box, and
`bridge_click` does what `widgets.CLICK_TARGETS` says that plot's clicks do."""

import gradio as gr

from . import views
from .attention_tab import select_position, session_entry, update_head
from .errors import user_errors
from .figures.circuits import HEAD_NODE
from .heads_tab import open_card, partner, receiver
from .inputs import UserInputError, head_value, toggled_head
from .models import BUNDLED_NAME
from .texts import ATTENTION_TAB, MEAN_OPTION, WEIGHTS_TAB, WHY_PANEL
from .widgets import CLICK_TARGETS, OPEN_CARD, OPEN_HEAD, OPEN_NODE, OPEN_PARTNER, SELECT_CELL, TOGGLE_HEAD, on_gpu, w


def clicked_cell(value) -> tuple[str, int, int]:
    """(action, row, column) of a click the page's script sent as "owner:row,column@time"."""
    owner, _, rest = str(value).partition(":")
    try:
        row, col = (int(part) for part in rest.split("@")[0].split(","))
    except ValueError:
        raise UserInputError(f"not a plot click: {str(value)[:40]!r}") from None
    if owner not in CLICK_TARGETS:
        raise UserInputError(f"not a clickable plot: {owner[:40]!r}")
    return CLICK_TARGETS[owner].action, row, col


@user_errors("status_box")
@on_gpu
def bridge_click(
    value,
    session,
    head_choice,
    options,
    score_name,
    query,
    run,
    ablation,
    lab_heads,
    model=BUNDLED_NAME,
    mode="k",
    card=None,
    tokens="",
    shown=None,
    nodes=None,
):
    """A click in one of the `CLICK_TARGETS` plots; `model` … `shown` are the Weights tab's, `nodes`
    the circuit graph's."""
    action, row, col = clicked_cell(value)

    def open_head(layer: int, head: int) -> dict:
        """The head in the Attention tab; before any text, its passport in the Weights tab."""
        if not (session and session.ids):
            return {
                w.tabs: gr.Tabs(selected=WEIGHTS_TAB),
                **open_card(model, mode, layer, head, tokens, session, shown),
            }
        choice, kept = head_value(layer, head), [o for o in options or [] if o != MEAN_OPTION]
        result = update_head(session, choice, kept, score_name, query, run, ablation)
        return {w.options_box: kept, w.tabs: gr.Tabs(selected=ATTENTION_TAB), **result}

    if action == OPEN_HEAD:  # a head of the grid or the score map
        return open_head(row, col)
    if action == OPEN_NODE:  # a node of the circuit graph (its nodes are the graph's first trace)
        if col != 0 or not 0 <= row < len(nodes or []):
            return {}
        head = HEAD_NODE.match(nodes[row])
        if head is None:
            raise UserInputError(f"{nodes[row]} is not a head: click a head (like L1H0) to open it")
        return open_head(int(head.group(1)), int(head.group(2)))
    if action == SELECT_CELL:  # a heatmap cell: its row is the query, its column the key
        _, entry, _ = session_entry(session, run, ablation)
        query = views.heatmap_click_position(entry, row)
        key = min(views.heatmap_click_position(entry, col), query)
        selected = select_position(session, head_choice, options, run, ablation, query, key)
        return selected | {w.query_tabs: gr.Tabs(selected=WHY_PANEL)}
    if action == OPEN_CARD:  # a composition cell: the receiver's passport
        return open_card(model, mode, *receiver(model, col), tokens, session, shown)
    if action == OPEN_PARTNER:  # a passport's partner bar: that head's passport
        return open_card(model, mode, *partner(model, card, row), tokens, session, shown)
    assert action == TOGGLE_HEAD  # a head in a lab map: in or out of the ablation box
    return {w.lab_heads_box: toggled_head(lab_heads, row, col)}
