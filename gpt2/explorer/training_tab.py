"""Handlers of the *Training* tab: the chosen model's training history (loss, in-context learning,
each head's scores against the step) and, where its run kept snapshots, a step slider that redraws
the text's heatmap and head grid with the weights of that step."""

import gradio as gr

from ..tokenizer import get_tokenizer
from . import service, training_views, views
from .errors import user_errors
from .heads_tab import head_options
from .inputs import UserInputError, as_int, head_value, parse_head_value
from .session import Session
from .texts import REPEATED_EXAMPLE, TRAINING_NONE
from .widgets import empty_plot, on_gpu, plot, plot_view, w

DEFAULT_FIELD = training_views.SCORE_CHOICES[0][1]


def _no_history(message: str) -> dict:
    """The tab without a history: one line that says why, and nothing to replay."""
    return {
        w.training_status: message,
        w.training_md: "",
        w.train_loss_plot: empty_plot(TRAINING_NONE),
        w.train_icl_plot: empty_plot(TRAINING_NONE),
        w.train_heads_plot: empty_plot(TRAINING_NONE),
        w.replay: gr.update(visible=False),
    }


def _slider(steps: list[int]) -> dict:
    """The step slider over the snapshots' steps (their common spacing as its step)."""
    gaps = {b - a for a, b in zip(steps, steps[1:], strict=False)}
    spacing = min(gaps) if gaps else 1
    return gr.update(minimum=steps[0], maximum=max(steps[-1], steps[0] + 1), step=spacing, value=steps[-1])


def _best_head(rows, field) -> tuple[int, int]:
    """The head with the highest `field` score at the last evaluation."""
    last = training_views.head_series(rows, field)[-1]
    layer, head = divmod(int(last.argmax()), last.shape[1])
    return layer, head


@user_errors("training_status")
@on_gpu
def show_training(model_name, field, session):
    """The chosen model's history and, with snapshots, the replay at the last one (on page load and
    when the model changes)."""
    store = service.models()
    try:
        rows = store.history(model_name)
    except UserInputError as exc:  # most models have none: a plain line, not a warning
        return _no_history(str(exc))
    field = training_views.check_field(field or DEFAULT_FIELD)
    name = store.resolve(model_name)
    steps = store.snapshot_steps(model_name)
    out = {
        w.training_md: training_views.summary(rows, name),
        w.train_loss_plot: plot_view(training_views.loss_view(rows)),
        w.train_icl_plot: plot_view(training_views.icl_view(rows)),
        w.train_heads_plot: plot_view(training_views.head_lines_view(rows, field)),
        w.replay: gr.update(visible=bool(steps)),
    }
    replay = (
        "Drag the step slider to replay the run's snapshots."
        if steps
        else "No snapshots to replay (a run keeps them with --snapshot-every N)."
    )
    out[w.training_status] = f"{name}: training history of {len(rows)} evaluations. {replay}"
    if not steps:
        return out
    model = store.get(model_name)
    layer, head = _best_head(rows, field)
    out[w.train_step] = _slider(steps)
    out[w.train_head] = gr.update(choices=head_options(model), value=head_value(layer, head))
    return out | _replay(name, steps[-1], (layer, head), rows, field, session)


def _text_ids(name: str, session: Session | None, block_size: int) -> tuple[list[int], str]:
    """What the replay shows, with what it is: the visitor's text (as the model sees it), else the
    run's first probe sequence (what its induction scores were measured on), else the repeated example."""
    if session and session.ids:
        return session.window(block_size).ids, "your text"
    probe = service.models().probe_sequence(name)
    if probe:
        return probe[:block_size], "the run's probe sequence (random frequent tokens, repeated)"
    return get_tokenizer().encode(REPEATED_EXAMPLE)[:block_size], "the repeated example"


def _replay(name: str, step: int, head: tuple[int, int], rows, field: str, session) -> dict:
    """The heatmap and grid of the text at snapshot `step`, and the head lines marked at it."""
    model = service.models().snapshot(name, step)
    ids, what = _text_ids(name, session, model.config.block_size)
    entry = service.analyses().get(f"{name} · step {step}", model, ids)
    chart, _ = views.heatmap_view(model, entry, *head)
    heads = training_views.head_lines_view(rows, field, marked_step=step)
    label = f"Step {step:,}: {views.head_name(entry, *head)}: queries down, keys across, on {what}"
    return {
        w.train_heatmap: plot(chart, label=label),
        w.train_grid: plot(views.grid_view(entry, head), label=f"Step {step:,}: every head on {what}"),
        w.train_heads_plot: plot_view(heads),
    }


@user_errors("training_status")
@on_gpu
def show_step(model_name, step, head_choice, field, session):
    """The slider moved (or the head changed): the snapshot nearest `step`, drawn."""
    store = service.models()
    steps = store.snapshot_steps(model_name)
    if not steps:
        raise UserInputError(f"{store.resolve(model_name)} has no snapshots to replay")
    step = as_int(step, "step")
    nearest = min(steps, key=lambda s: (abs(s - step), s))
    rows = store.history(model_name)
    field = training_views.check_field(field or DEFAULT_FIELD)
    head = parse_head_value(head_choice) if head_choice else _best_head(rows, field)
    out = _replay(store.resolve(model_name), nearest, head, rows, field, session)
    out[w.training_status] = f"Step {nearest:,}: the weights as the run kept them then."
    return out | ({w.train_step: gr.update(value=nearest)} if nearest != step else {})


@user_errors("training_status")
def show_head_lines(model_name, field, step):
    """Another score's lines, marked at the slider's step when the run kept snapshots."""
    store = service.models()
    rows = store.history(model_name)
    marked = as_int(step, "step") if store.snapshot_steps(model_name) else None
    return {w.train_heads_plot: plot_view(training_views.head_lines_view(rows, field or DEFAULT_FIELD, marked))}


def replay_text(model_name, step, head_choice, field, session):
    """A new text: where the model's run kept snapshots, the replay redrawn on it."""
    if not service.models().snapshot_steps(model_name):
        return {}
    return show_step(model_name, step, head_choice, field, session)
