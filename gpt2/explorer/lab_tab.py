"""Handlers of the *Lab* tab: loss and lens, attribution with the sweep, ablation, patching, the
tutorial's steps, and the export of every view on screen."""

import gradio as gr

from ..lab import Ablation
from ..tokenizer import get_tokenizer
from . import export, lab_views, service
from .attention_tab import session_entry
from .errors import user_errors
from .inputs import UserInputError, parse_heads
from .session import EMPTY_SESSION
from .widgets import on_gpu, plot_view, w

LAB_ERRORS = "lab_status"  # where the lab's user errors are said


def _lab_entry(session):
    model, entry, window = session_entry(session)
    return model, entry


def with_views(shown: dict | None, **views_by_file) -> dict:
    """The lab views on screen by export file name, with these added (replacing the same names)."""
    return {**(shown or {}), **views_by_file}


@user_errors(LAB_ERRORS)
@on_gpu
def lab_loss_and_lens(session, shown=None):
    model, entry = _lab_entry(session)
    loss_view, lens_view = lab_views.loss_view(model, entry), lab_views.lens_view(model, entry)
    return {
        w.lab_loss: plot_view(loss_view),
        w.lab_lens: plot_view(lens_view),
        w.lab_status: "Loss and logit lens of the current text.",
        w.lab_shown: with_views(shown, loss=loss_view, **{"logit-lens": lens_view}),
    }


@user_errors(LAB_ERRORS)
@on_gpu
def lab_attribute(session, position, target, shown=None, progress=gr.Progress()):  # noqa: B008 - gradio's idiom
    model, entry = _lab_entry(session)
    position, target_id = lab_views.with_default_target(model, entry, position, target)
    heads_view, rest_view = lab_views.attribution_view(model, entry, position, target_id)
    rank = lab_views.rank_view(model, entry, position, target_id)
    sweep = lab_views.sweep_view(
        model, entry, position, target_id, progress=lambda f: progress(f, desc="ablating each head")
    )
    return {
        w.lab_direct: plot_view(heads_view),
        w.lab_rest: plot_view(rest_view),
        w.lab_sweep: plot_view(sweep),
        w.lab_rank: plot_view(rank),
        w.lab_shown: with_views(
            shown,
            attribution=heads_view,
            **{"attribution-rest": rest_view, "ablation-sweep": sweep, "target-rank": rank},
        ),
        w.lab_status: "The gap between a head's direct share and its ablation effect shows composition: heads that act through later heads, and backups that take over.",
    }


@user_errors(LAB_ERRORS)
@on_gpu
def lab_ablate(session, heads_text, mode, position, target, shown=None):
    """Ablate the named heads: before/after, and the ablated run for the Attention tab."""
    model, entry = _lab_entry(session)
    config = model.config
    ablation = Ablation(parse_heads(heads_text, config.num_layers, config.num_heads), mode)
    window = session.window(config.block_size)
    ablated = service.analyses().get(session.model, model, window.ids, ablation)
    position, target_id = lab_views.with_default_target(model, entry, position, target)
    loss_view, bars_view, summary = lab_views.ablation_views(model, entry, ablated, ablation, position, target_id)
    return {
        w.ablation_state: ablation,
        w.lab_ablate_loss: plot_view(loss_view),
        w.lab_ablate_bars: plot_view(bars_view),
        w.lab_shown: with_views(shown, **{"ablation-loss": loss_view, "ablation-next-token": bars_view}),
        w.lab_status: summary,
        w.run_box: gr.update(visible=True, label=f"Run: clean, or {ablation.label}"),
    }


def tutorial_step(heads_text, mode="zero"):
    return {w.lab_heads_box: heads_text, w.lab_mode: mode}


@user_errors(LAB_ERRORS)
def export_lab(session, shown, request: gr.Request | None = None):
    """Every lab view on screen, as it is shown (.json, .csv, .html each); nothing is recomputed."""
    if not shown:
        raise UserInputError("run a Lab tool first: Export saves the views it shows")
    folder = service.stores().exports.fresh(request and request.session_hash, "lab")
    session = session or EMPTY_SESSION
    start = export.text_start([get_tokenizer().decode(session.ids)])
    files = []
    for name, view in shown.items():
        text = f" · “{start}”" if start and not name.startswith("patching") else ""  # patching has its own prompts
        title = f"{session.model} · {view.label}{text}"
        files += export.save_view(folder, name, view, title)
    return {
        w.lab_exports: gr.update(value=[str(f) for f in files], visible=True),
        w.lab_status: f"Exported {len(shown)} views as {len(files)} files: {', '.join(shown)}.",
    }
