"""Handlers of the text column: generating and stopping, switching models, the token chips, and
blanking the old text's views when a new one comes."""

import gradio as gr

from ..tokenizer import get_tokenizer
from . import service, views
from .attention_tab import qk_blank, query_position, session_entry
from .errors import USER_ERRORS, user_errors, warn
from .models import decoding_note
from .session import EMPTY_SESSION, Session
from .texts import CLEAN, WAITING
from .widgets import empty_plot, on_gpu, w


def shown_text(session: Session, block_size: int) -> str:
    """The text as the model sees it: its context window, after a ✂ marker if tokens came before."""
    window = session.window(block_size)
    text = get_tokenizer().decode(window.ids)
    return f"✂ [{window.cut:,} earlier tokens] " + text if window.cut else text


def _idle(status: str) -> dict:
    return {
        w.status_box: status,
        w.generate_btn: gr.update(interactive=True),
        w.stop_btn: gr.update(interactive=False, variant="secondary"),
    }


@user_errors("status_box")
@on_gpu
def run_generation(prompt, model_name, max_new_tokens, temperature, top_k, top_p, seed, fast_decode):
    """Stream the text, its token chips, the session and the status as tokens arrive."""
    settings, model, encoded = service.prepare(
        prompt, model_name, max_new_tokens, temperature, top_k, top_p, seed, fast_decode
    )
    block = model.config.block_size
    session = Session(service.models().resolve(model_name), tuple(encoded.ids), len(encoded.ids), encoded.cut)
    note = (encoded.note + " ") if encoded.note else ""
    decoding = decoding_note(model, fast_decode)
    decoding = f" ({decoding})" if decoding else ""
    running = {w.generate_btn: gr.update(interactive=False), w.stop_btn: gr.update(interactive=True, variant="stop")}
    status = f"{note}Generating {settings.max_new_tokens} tokens with {session.model}{decoding}…"
    yield {
        w.output: shown_text(session, block),
        w.chips: views.token_chips(session.window(block)),
        w.session_state: session,
        w.status_box: status,
        **running,
    }
    for ids in service.throttled(service.stream_text(model, encoded.ids, settings)):
        session = session.with_ids(ids)
        yield {
            w.output: shown_text(session, block),
            w.chips: views.token_chips(session.window(block)),
            w.session_state: session,
        }
    done = f"{note}Done: {session.generated} new tokens{decoding}. Click a token to make it the query, or a head in the grid."
    yield _idle(done)


def stopped(session: Session) -> dict:
    count = session.generated if session else 0
    return _idle(f"Stopped after {count} new token{'s' if count != 1 else ''}.")


def switch_model(model_name, session: Session, progress=gr.Progress(track_tqdm=True)):  # noqa: B008 - gradio's idiom
    """Load the chosen model (the Hub download's progress bar shows in the UI); if that fails, say why
    and stay on the current one."""
    current = (session or EMPTY_SESSION).model
    try:
        service.models().get(model_name)
    except USER_ERRORS as exc:
        return {w.model_box: current, w.status_box: warn(f"{exc}. Staying on {current}")}
    return {w.model_box: model_name, w.status_box: f"Loaded {model_name}. Press Generate to use it."}


def lab_text_plots() -> list:
    """The lab's plots that show the current text (patching shows its own prompts)."""
    return [
        w.lab_loss,
        w.lab_lens,
        w.lab_direct,
        w.lab_sweep,
        w.lab_rest,
        w.lab_rank,
        w.lab_ablate_loss,
        w.lab_ablate_bars,
    ]


def _blank(component, height: int = 260) -> dict:
    """`component` (a gr.Plot) back to its first label, with a waiting message."""
    return gr.update(value=empty_plot(WAITING, height), label=component.label)


def clear_text_views(shown) -> dict:
    """A new text is coming: every view of the old one goes blank and its downloads go away (the
    patching views stay: they show their own two prompts)."""
    return {
        w.query_state: None,
        w.ablation_state: None,
        w.run_box: gr.update(visible=False, value=CLEAN),
        w.heatmap: _blank(w.heatmap, 420),
        w.attn_chips: gr.update(value=None, label=w.attn_chips.label),
        w.next_tokens: _blank(w.next_tokens, 200),
        **{component: _blank(component) for component in (w.grid, w.scores_plot, *lab_text_plots())},
        w.exports: gr.update(value=None, visible=False),
        w.lab_exports: gr.update(value=None, visible=False),
        w.lab_shown: {name: view for name, view in (shown or {}).items() if name.startswith("patching")},
        **qk_blank(),
        w.qk_matrix: _blank(w.qk_matrix, 200),
    }


@user_errors("status_box")
@on_gpu
def loss_chips(session, colour_by_loss, query):
    """The token chips, plain or coloured by each token's loss."""
    if not session or not session.ids:
        return {}
    model, entry, window = session_entry(session)
    if not colour_by_loss:
        return {w.chips: gr.update(value=views.token_chips(window, query_position(entry, query)), show_legend=True)}
    return {w.chips: gr.update(value=views.loss_chips(model, entry, window), show_legend=False)}
