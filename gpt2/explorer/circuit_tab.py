"""Handlers of the Lab's pairs of prompts: exact patching (with typed answers and prompt sets),
attribution patching beside it, the *Circuit* sub-tab, the task presets and the tutorial's fourth
step. Patching and circuits run on their own prompts, not on the text generated."""

import gradio as gr
import numpy as np

from . import circuit_views, lab_views, service
from .errors import user_errors
from .inputs import as_int, read_pairs
from .lab_tab import LAB_ERRORS, with_views
from .session import EMPTY_SESSION
from .texts import CIRCUIT_PANEL, TASK_SEED
from .widgets import on_gpu, plot_view, w


def _model(session):
    return service.models().get((session or EMPTY_SESSION).model)


@user_errors(LAB_ERRORS)
@on_gpu
def lab_patch(clean, corrupted, answer_clean, answer_corrupted, set_text, session, shown=None, progress=gr.Progress()):  # noqa: B008 - gradio's idiom
    """Exact patching of the pair (or the prompt set) into the corrupted run."""
    model = _model(session)
    pairs = read_pairs(model, clean, corrupted, answer_clean, answer_corrupted, set_text)
    resid_view, heads_view, summary = lab_views.patch_views(
        model, pairs, progress=lambda f: progress(f, desc="patching")
    )
    return {
        w.lab_patch_resid: plot_view(resid_view),
        w.lab_patch_heads: plot_view(heads_view),
        w.lab_shown: with_views(shown, **{"patching-residual": resid_view, "patching-heads": heads_view}),
        w.lab_status: summary,
    }


@user_errors(LAB_ERRORS)
@on_gpu
def lab_attribution_patch(clean, corrupted, answer_clean, answer_corrupted, set_text, steps, session, shown=None):
    """Attribution patching of the same pair: every head and MLP estimated at once, compared with the
    exact patching on screen when it is of the same pair."""
    model = _model(session)
    pairs = read_pairs(model, clean, corrupted, answer_clean, answer_corrupted, set_text)
    exact = (shown or {}).get("patching-heads")
    exact_heads = np.asarray(exact.data["heads"]) if exact is not None and exact.source == pairs.key else None
    heads_view, mlp_view, summary = circuit_views.attribution_views(model, pairs, int(steps), exact_heads)
    heads_view.source = pairs.key
    return {
        w.lab_apatch_heads: plot_view(heads_view),
        w.lab_apatch_mlp: plot_view(mlp_view),
        w.lab_shown: with_views(
            shown, **{"attribution-patching-heads": heads_view, "attribution-patching-mlp": mlp_view}
        ),
        w.lab_status: summary,
    }


@user_errors(LAB_ERRORS)
@on_gpu
def lab_circuit(clean, corrupted, answer_clean, answer_corrupted, set_text, edges, method, session, shown=None):
    """The circuit of the pair's prediction, its graph and its faithfulness curve."""
    model = _model(session)
    pairs = read_pairs(model, clean, corrupted, answer_clean, answer_corrupted, set_text)
    graph, curve, summary = circuit_views.circuit_views(model, pairs, int(edges), method)
    return {
        w.circ_graph: plot_view(graph),
        w.circ_curve: plot_view(curve),
        w.circuit_nodes: graph.data["nodes"],
        w.lab_shown: with_views(shown, **{"circuit": graph, "circuit-faithfulness": curve}),
        w.lab_status: summary,
    }


@user_errors(LAB_ERRORS)
def load_task(task, seed, session, where: str = "circuit"):
    """A task's pair and answers (drawn with `seed`) into the Circuit sub-tab's boxes (or the
    Patching sub-tab's)."""
    texts = circuit_views.task_texts(_model(session), task, as_int(seed, "the seed"))
    boxes = (
        (w.circ_clean, w.circ_corrupted, w.circ_answer_clean, w.circ_answer_corrupted, w.circ_set)
        if where == "circuit"
        else (w.patch_clean, w.patch_corrupted, w.patch_answer_clean, w.patch_answer_corrupted, w.patch_set)
    )
    values = (texts["clean"], texts["corrupted"], texts["answer_clean"], texts["answer_corrupted"], "")
    said = f"Loaded the {task} task: the corrupted prompt breaks what the clean answer needs."
    return dict(zip(boxes, values, strict=True)) | {w.lab_status: said}


@user_errors(LAB_ERRORS)
def tutorial_circuit(edges, method, session, shown=None):
    """The tutorial's fourth step: the induction task in the Circuit sub-tab, and its circuit."""
    boxes = load_task("induction", TASK_SEED, session)
    pair = [boxes[box] for box in (w.circ_clean, w.circ_corrupted, w.circ_answer_clean, w.circ_answer_corrupted)]
    found = lab_circuit(*pair, "", edges, method, session, shown)
    return boxes | found | {w.lab_tabs: gr.Tabs(selected=CIRCUIT_PANEL)}
