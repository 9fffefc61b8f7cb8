"""Handlers of the *Attention* and *All heads* tabs: the heatmap, the query's panel, the head grid
and score map, clicks in them, and the attention export."""

from dataclasses import dataclass

import gradio as gr

from ..lab import Ablation
from . import export, heads_views, service, views
from .chart import visible_token
from .errors import user_errors
from .inputs import MEAN, UserInputError, parse_head_value
from .lab_views import View
from .session import Session
from .texts import ABLATED, CLEAN, LOG_OPTION, MEAN_OPTION, MODEL_ROLES, QK_START, SINK_OPTION
from .widgets import empty_plot, on_gpu, plot, plot_view, w


def run_ablation(run: str, ablation: Ablation | None) -> Ablation | None:
    """The ablation of the run shown: None for the clean run."""
    return ablation if run == ABLATED and ablation is not None else None


def session_entry(session: Session, run: str = CLEAN, ablation: Ablation | None = None):
    """(model, the analysis entry of the session's window, the window)."""
    if not session or not session.ids:
        raise UserInputError("generate some text first")
    model = service.models().get(session.model)
    window = session.window(model.config.block_size)
    return model, service.analyses().get(session.model, model, window.ids, run_ablation(run, ablation)), window


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


def score_map(model, entry, score_name, selected) -> dict:
    """The All heads tab's map: the model's own roles (`entry` may be None), or a score on the text."""
    if score_name == MODEL_ROLES:
        return plot_view(heads_views.roles_view(model, selected))
    if entry is None:
        raise UserInputError("generate some text first: the text's scores are measured on it")
    return plot(views.score_view(entry, score_name, selected), label="This text's head scores")


def _grid_views(model, entry, view: HeadView, score_name) -> dict:
    selected = (view.layer, view.grid_head)
    return {
        w.grid: plot(views.grid_view(entry, selected)),
        w.scores_plot: score_map(model, entry, score_name, selected),
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
        **_grid_views(model, entry, view, score_name),
        **qk_blank(),
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
        **_grid_views(model, entry, view, score_name),
        **qk_blank(),
    }


@dataclass(frozen=True)
class QKShown:
    """The cell whose QK parts are on screen, and their view (for the matrix and the export)."""

    run: str
    layer: int
    head: int
    query: int
    key: int
    view: View  # the parts, for the export


def qk_blank(message: str = QK_START) -> dict:
    return {w.qk_plot: gr.update(value=empty_plot(message, 220), label="Why this key"), w.qk_shown: None}


def _qk_views(session, model, entry, view: HeadView, run, ablation, query: int, key: int | None) -> dict:
    """Why the query attends to `key` (by default the key it attends to most), in the head shown."""
    if view.head == MEAN:
        return qk_blank("Choose one head (not the layer's mean) to see why its query attends where it does.")
    if key is None:
        key = int(views.head_map(model, entry, view.layer, view.head)[query, : query + 1].argmax())
    outputs = service.analyses().head_outputs(session.model, model, entry, run_ablation(run, ablation))
    qk = heads_views.qk_view(model, entry, outputs, view.layer, view.head, query, key)
    return {w.qk_plot: plot_view(qk), w.qk_shown: QKShown(run, view.layer, view.head, query, key, qk)}


def select_position(session, head_choice, options, run, ablation, position, key=None) -> dict:
    model, entry, window = session_entry(session, run, ablation)
    query = query_position(entry, position)
    token = visible_token(entry.tokens[query])
    view = _head_view(head_choice, options)
    return {
        w.query_state: query,
        w.status_box: f"Query: token {query} '{token}'.",
        **_attention_views(model, entry, window, view, query),
        **_qk_views(session, model, entry, view, run, ablation, query, key),
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
    return select_position(session, head_choice, options, run, ablation, position)


@user_errors("status_box")
@on_gpu
def show_qk_matrix(session, shown: QKShown | None, ablation):
    """Every query-side part × key-side part of the cell on screen."""
    if shown is None:
        raise UserInputError("click a token or a heatmap cell first: the matrix is of the cell shown")
    model, entry, _ = session_entry(session, shown.run, ablation)
    outputs = service.analyses().head_outputs(session.model, model, entry, run_ablation(shown.run, ablation))
    matrix = heads_views.qk_matrix_view(model, entry, outputs, shown.layer, shown.head, shown.query, shown.key)
    return {w.qk_matrix: plot_view(matrix)}


@user_errors("status_box")
@on_gpu
def export_attention(
    session, head_choice, options, query, qk: QKShown | None = None, request: gr.Request | None = None
):
    """All of the text's attention (.npz), the current heatmap (.html), and the QK parts shown."""
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
    files = [npz, page]
    said = (
        "Exported attention.npz (every layer and head, float16, with the tokens and scores) and the heatmap as a page"
    )
    if qk is not None:
        files += export.save_view(folder, "qk-parts", qk.view, f"{session.model} · {qk.view.label}")
        said += ", and the QK parts shown (.json, .csv, .html)"
    return {w.exports: gr.update(value=[str(f) for f in files], visible=True), w.status_box: said + "."}
