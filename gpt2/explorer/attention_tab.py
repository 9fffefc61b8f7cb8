"""Handlers of the *Attention* and *All heads* tabs: the heatmap, the query's panel, the head grid
and score map, clicks in them, and the attention export."""

from dataclasses import dataclass

import gradio as gr

from ..lab import Ablation
from . import export, service, views
from .chart import visible_token
from .errors import user_errors
from .inputs import MEAN, UserInputError, head_value, parse_head_value, toggled_head
from .session import Session
from .texts import ABLATED, ATTENTION_TAB, CLEAN, LOG_OPTION, MEAN_OPTION, SINK_OPTION
from .widgets import CLICK_TARGETS, OPEN_HEAD, SELECT_QUERY, TOGGLE_HEAD, on_gpu, plot, w


def session_entry(session: Session, run: str = CLEAN, ablation: Ablation | None = None):
    """(model, the analysis entry of the session's window, the window)."""
    if not session or not session.ids:
        raise UserInputError("generate some text first")
    model = service.models().get(session.model)
    window = session.window(model.config.block_size)
    use = ablation if run == ABLATED and ablation is not None else None
    return model, service.analyses().get(session.model, model, window.ids, use), window


def query_position(entry, query) -> int:
    last = len(entry.analysis.ids) - 1
    return last if query is None or not 0 <= query <= last else int(query)


@dataclass(frozen=True)
class HeadView:
    """What the heatmap shows: a head (or MEAN), and how."""

    layer: int
    head: int | str
    grid_head: int  # the head outlined in the grids
    hide_sink: bool
    log_scale: bool


def _head_view(head_choice, options) -> HeadView:
    layer, head = parse_head_value(head_choice)
    options = options or []
    return HeadView(
        layer, MEAN if MEAN_OPTION in options else head, head, SINK_OPTION in options, LOG_OPTION in options
    )


def _attention_views(model, entry, window, view: HeadView, query: int) -> dict:
    heatmap, label = views.heatmap_view(model, entry, view.layer, view.head, view.hide_sink, view.log_scale, query)
    bars, bars_label = views.next_token_view(views.next_token_probs(model, entry, query), query)
    query_chips = views.query_chips(model, entry, view.layer, view.head, query, view.hide_sink)
    return {
        w.heatmap: plot(heatmap, label=label),
        w.attn_chips: gr.update(value=query_chips, label=f"What token {query} attends to (brightest = most)"),
        w.next_tokens: plot(bars, label=bars_label),
        w.chips: views.token_chips(window, query),
    }


def _grid_views(entry, view: HeadView, score_name) -> dict:
    selected = (view.layer, view.grid_head)
    return {
        w.grid: plot(views.grid_view(entry, selected)),
        w.scores_plot: plot(views.score_view(entry, score_name, selected)),
    }


@user_errors("status_box")
@on_gpu
def refresh_views(session, head_choice, options, score_name, query, run, ablation):
    """Everything that depends on the text, after new tokens: the head list and every view."""
    if not session or not session.ids:
        return {}
    model, entry, window = session_entry(session, run, ablation)
    choices = views.head_choices(entry)
    if head_choice not in [value for _, value in choices]:
        head_choice = choices[0][1]
    view = _head_view(head_choice, options)
    query = query_position(entry, query)
    return {
        w.head_box: gr.update(choices=choices, value=head_choice),
        w.query_state: query,
        **_attention_views(model, entry, window, view, query),
        **_grid_views(entry, view, score_name),
    }


@user_errors("status_box")
@on_gpu
def update_head(session, head_choice, options, score_name, query, run, ablation):
    """A new head, option or run: the heatmap, the query's views, the outlines in the grids, and the
    head list's roles (those of the run shown)."""
    model, entry, window = session_entry(session, run, ablation)
    view = _head_view(head_choice, options)
    return {
        w.head_box: gr.update(choices=views.head_choices(entry), value=head_choice),
        **_attention_views(model, entry, window, view, query_position(entry, query)),
        **_grid_views(entry, view, score_name),
    }


def _select_query(session, head_choice, options, run, ablation, position) -> dict:
    model, entry, window = session_entry(session, run, ablation)
    query = query_position(entry, position)
    token = visible_token(entry.tokens[query])
    return {
        w.query_state: query,
        w.status_box: f"Query: token {query} '{token}'.",
        **_attention_views(model, entry, window, _head_view(head_choice, options), query),
    }


@user_errors("status_box")
@on_gpu
def select_query(session, head_choice, options, run, ablation, evt: gr.SelectData):
    """A token chip was clicked: it becomes the query."""
    if not session or not session.ids:
        raise UserInputError("generate some text first")
    model = service.models().get(session.model)
    position = views.chip_position(session.window(model.config.block_size), evt.index)
    if position is None:
        raise UserInputError("that is the ✂ marker: the tokens before it are outside the model's context")
    return _select_query(session, head_choice, options, run, ablation, position)


def _clicked_cell(value) -> tuple[str, int, int]:
    """(action, row, column) of a click the page's script sent as "owner:row,column@time"."""
    owner, _, rest = str(value).partition(":")
    try:
        row, col = (int(part) for part in rest.split("@")[0].split(","))
    except ValueError:
        raise UserInputError(f"not a plot click: {str(value)[:40]!r}") from None
    if owner not in CLICK_TARGETS:
        raise UserInputError(f"not a clickable plot: {owner[:40]!r}")
    return CLICK_TARGETS[owner], row, col


@user_errors("status_box")
@on_gpu
def bridge_click(value, session, head_choice, options, score_name, query, run, ablation, lab_heads):
    """A click in one of the `CLICK_TARGETS` plots."""
    action, row, col = _clicked_cell(value)
    if action == OPEN_HEAD:  # the head, in the Attention tab
        choice, options = head_value(row, col), [o for o in options or [] if o != MEAN_OPTION]
        result = update_head(session, choice, options, score_name, query, run, ablation)
        return {w.options_box: options, w.tabs: gr.Tabs(selected=ATTENTION_TAB), **result}
    if action == SELECT_QUERY:  # a heatmap row: its query
        _, entry, _ = session_entry(session, run, ablation)
        position = views.heatmap_click_position(entry, row)
        return _select_query(session, head_choice, options, run, ablation, position)
    assert action == TOGGLE_HEAD  # a head in a lab map: in or out of the ablation box
    return {w.lab_heads_box: toggled_head(lab_heads, row, col)}


@user_errors("status_box")
@on_gpu
def export_attention(session, head_choice, options, query, request: gr.Request | None = None):
    """All of the text's attention (.npz) and the current heatmap (.html)."""
    model, entry, _ = session_entry(session)
    view = _head_view(head_choice, options)
    layer, head = view.layer, view.head
    heatmap, _ = views.heatmap_view(
        model, entry, layer, head, view.hide_sink, view.log_scale, query_position(entry, query)
    )
    folder = service.stores().exports.fresh(request and request.session_hash, "attention")
    npz = export.save_npz(model, entry, folder / "attention.npz", session.model)
    title = f"{session.model} · {views.head_name(entry, layer, head)} · “{export.text_start(entry.tokens)}”"
    page = export.save_html(heatmap, folder / f"heatmap-L{layer}-{'mean' if head == MEAN else f'H{head}'}.html", title)
    return {
        w.exports: gr.update(value=[str(npz), str(page)], visible=True),
        w.status_box: "Exported attention.npz (every layer and head, float16, with the tokens and scores) and the heatmap as a page.",
    }
