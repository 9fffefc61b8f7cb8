"""Handlers of heads explained outside the heatmap: the model's own roles (in *All heads*), and the
*Weights* tab: the composition map and a head's passport, clicks in them, and their export. The
model is the one chosen in the model list; nothing here needs a text."""

import gradio as gr

from ..tokenizer import get_tokenizer
from . import export, heads_views, service
from .attention_tab import score_map, session_entry
from .errors import user_errors
from .inputs import UserInputError, clean_text, head_value, parse_head_value
from .texts import CLEAN, MODEL_ROLES
from .widgets import on_gpu, plot_view, w

CARD_TOKENS = 6  # tokens of the text a passport's tables show when none are typed
CARD_EXAMPLE = " king love night sword crown the"  # their tokens, before any text


def head_options(model) -> list[tuple[str, str]]:
    config = model.config
    return [
        (f"L{layer} H{head}", head_value(layer, head))
        for layer in range(config.num_layers)
        for head in range(config.num_heads)
    ]


def card_token_ids(typed, session) -> list[int]:
    """The tokens a passport's tables are about: those typed, else the text's first distinct ones,
    else `CARD_EXAMPLE`'s."""
    typed = clean_text(typed or "", "the tokens")
    if typed.strip():
        return get_tokenizer().encode(typed)
    if session and session.ids:
        return list(dict.fromkeys(session.ids))[:CARD_TOKENS]
    return get_tokenizer().encode(CARD_EXAMPLE)


def _card(model, layer: int, head: int, tokens, session, shown: dict | None) -> dict:
    partners, markdown = heads_views.head_card(model, layer, head, card_token_ids(tokens, session))
    return {
        w.card_head: gr.update(choices=head_options(model), value=head_value(layer, head)),
        w.card_md: markdown,
        w.card_partners: plot_view(partners),
        w.weights_shown: {**(shown or {}), "head-card": partners},
    }


def _composition(model, mode, selected, shown: dict | None) -> dict:
    view = heads_views.composition_view(model, mode or "k", selected)
    return {w.comp_plot: plot_view(view), w.weights_shown: {**(shown or {}), "composition": view}}


@user_errors("weights_status")
@on_gpu
def show_model_heads(model_name, score_name, mode, card_head, tokens, session, shown=None):
    """The chosen model's heads from the model alone: its roles (when the score map shows them), the
    composition map and the passport; on page load and when the model changes."""
    model = service.models().get(model_name)
    layer, head = parse_head_value(card_head) if card_head else (0, 0)
    if not (layer < model.config.num_layers and head < model.config.num_heads):
        layer, head = 0, 0
    roles = heads_views.roles_view(model, (layer, head))
    out = {w.weights_status: f"The heads of {service.models().resolve(model_name)}, read from the model itself."}
    if score_name == MODEL_ROLES and not (session and session.ids):
        out[w.scores_plot] = plot_view(roles)
    shown = {**(shown or {}), "model-roles": roles}
    out |= _composition(model, mode, (layer, head), shown)
    return out | _card(model, layer, head, tokens, session, out[w.weights_shown])


@user_errors("weights_status")
@on_gpu
def show_composition(model_name, mode, card_head, shown=None):
    model = service.models().get(model_name)
    return _composition(model, mode, parse_head_value(card_head) if card_head else None, shown)


@user_errors("weights_status")
@on_gpu
def show_card(model_name, mode, card_head, tokens, session, shown=None):
    model = service.models().get(model_name)
    layer, head = parse_head_value(card_head)
    return _composition(model, mode, (layer, head), shown) | _card(model, layer, head, tokens, session, shown)


def receiver(model_name, column: int) -> tuple[int, int]:
    """(layer, head) of a composition map's column."""
    return divmod(column, service.models().get(model_name).config.num_heads)


def partner(model_name, card_head, index: int) -> tuple[int, int]:
    """(layer, head) of the passport's `index`-th partner bar."""
    found = heads_views.partners(service.models().get(model_name), *parse_head_value(card_head))
    if not 0 <= index < len(found):
        raise UserInputError("that bar is not a head any more: open the passport again")
    return found[index]["layer"], found[index]["head"]


def open_card(model_name, mode, layer: int, head: int, tokens, session, shown=None) -> dict:
    """Head (layer, head)'s passport, outlined in the composition map."""
    model = service.models().get(model_name)
    out = _composition(model, mode, (layer, head), shown)
    out |= _card(model, layer, head, tokens, session, out[w.weights_shown])
    return out | {w.weights_status: f"Opened L{layer} H{head}."}


@user_errors("status_box")
@on_gpu
def show_scores(session, model_name, head_choice, score_name, run=CLEAN, ablation=None):
    """The score map after a change of score, for the run shown; the model's own roles need no text."""
    selected = parse_head_value(head_choice) if head_choice else None
    if session and session.ids:
        model, entry, _ = session_entry(session, run, ablation)
    else:
        model, entry = service.models().get(model_name), None
    return {w.scores_plot: score_map(model, entry, score_name, selected)}


@user_errors("weights_status")
def export_weights(model_name, shown, request: gr.Request | None = None):
    """The Weights tab's views on screen and the model's roles (.json, .csv, .html each)."""
    if not shown:
        raise UserInputError("open the Weights tab's maps first: Export saves the views shown")
    folder = service.stores().exports.fresh(request and request.session_hash, "weights")
    files = []
    for name, view in shown.items():
        files += export.save_view(folder, name, view, f"{model_name} · {view.label}")
    return {
        w.weights_exports: gr.update(value=[str(f) for f in files], visible=True),
        w.weights_status: f"Exported {len(shown)} views as {len(files)} files: {', '.join(shown)}.",
    }
