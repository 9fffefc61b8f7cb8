"""The Gradio app: widgets, their layout and wiring. Every computation is a call into `gpt2.explorer`.

Handlers return their outputs by component (`{component: value}`); errors a visitor can cause
become one status line and a warning toast, never a traceback.
"""

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
from gradio.components.plot import PlotData

from .. import plots
from ..lab import Ablation, LabError, parse_heads
from ..scores import SCORE_NAMES
from ..tokenizer import get_tokenizer
from . import api, export, lab_views, service, views
from .inputs import (
    MAX_NEW_TOKENS,
    MAX_PROMPT_CHARS,
    MEAN,
    UserInputError,
    encode_prompt,
    head_value,
    parse_head_value,
)
from .models import BUNDLED_NAME, decoding_note
from .session import EMPTY_SESSION, Session

try:  # ZeroGPU on Hugging Face Spaces; a no-op everywhere else
    import spaces

    on_gpu = spaces.GPU
except ImportError:

    def on_gpu(fn):
        return fn


SESSION_TTL_S = 1800  # session state (token ids only) expires after 30 minutes
REPEATED_EXAMPLE = (
    "sword crown honey winter tongue lamb night castle bread river. "
    "sword crown honey winter tongue lamb night castle bread river."
)
EXAMPLES = [
    [REPEATED_EXAMPLE],
    ["ROMEO:\nBut soft, what light through yonder window breaks?"],
    ["The quick brown fox jumps over the lazy dog because"],
    ["First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\nFirst Citizen:\n"],
]
PATCH_EXAMPLE = (
    "sword crown honey winter tongue lamb night castle. sword crown honey winter",
    "sword crown honey winter tongue lamb night castle. sword crown honey river",
)
CLEAN, ABLATED = "clean", "ablated"
ATTENTION_TAB = "attention"
LAB_START = (
    "Start with the Tutorial: it loads an example and finds the induction circuit in three clicks. "
    "Or generate a text, then open a tool: each works on the text shown (Patching on its own two prompts)."
)
TUTORIAL = """**Find the induction circuit in three clicks.** The bundled model has one: layer 1 copies what
followed an earlier occurrence of the current token, and it needs the previous-token head L0 H0 to
know what followed what.

1. **Load the example** (a sequence of ten words, repeated), then **Ablate layer 1**: the loss on the
   repeat jumps from about 2 nats to about 8, as bad as guessing.
2. **Ablate L0 H0**: the same jump. In the *Attention* tab, choose run *ablated* and head L1 H0: its
   induction stripes are gone (compare run *clean*).
3. **Ablate L4 H2**, a head with no part in this: nothing changes.

Then ask which heads carry a prediction directly (*Attribution*) and what a change of one word moves
(*Patching*)."""
FONTS = ["system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica Neue", "Arial", "sans-serif"]
MONO_FONTS = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"]
CSS = """
/* a plot's label above the plot, not over its top-left corner */
.gradio-container .block [data-testid="block-label"].float { position: relative; top: 0; left: 0; margin-bottom: 2px; }
#chips { max-height: 44vh; overflow-y: auto; }
#attn-chips { max-height: 30vh; overflow-y: auto; }
#heatmap .js-plotly-plot, #heatmap [data-testid=plotly] { aspect-ratio: 1 / 1; max-height: 80vh; }
.dark .js-plotly-plot .main-svg text { fill: var(--body-text-color) !important; }
.dark .js-plotly-plot .main-svg .xgrid, .dark .js-plotly-plot .main-svg .ygrid { stroke: #555 !important; }
#controls .wrap { flex-wrap: wrap; }
@media (max-width: 700px) {
  #chips { max-height: 32vh; }
  .gradio-container { padding: 4px !important; }
  /* one column: the prompt and tokens, then the views, then the examples and settings */
  #main { flex-direction: column; }
  #left { display: contents; }
  #core { order: 0; }
  #right { order: 1; }
  #extras { order: 2; }
}
"""
# Clicks on a head in the grid or a score map, or on a heatmap row, reach Python through the hidden
# #click-bridge box: "grid:layer,head", "scores:layer,head", "heatmap:row,column". Ctrl/Cmd+Enter
# in the prompt generates.
JS = """
() => {
  const bridge = (value) => {
    const box = document.querySelector('#click-bridge textarea, #click-bridge input');
    if (!box) return;
    box.value = value + '@' + Date.now();
    box.dispatchEvent(new Event('input', {bubbles: true}));
  };
  const owners = ['grid', 'scores', 'heatmap', 'lab-direct', 'lab-sweep', 'lab-patch-heads'];
  const bind = () => {
    for (const id of owners) {
      const gd = document.querySelector(`#${id} .js-plotly-plot`);
      if (!gd || gd.__explorerBound || typeof gd.on !== 'function') continue;
      gd.__explorerBound = true;
      gd.on('plotly_click', (event) => {
        const point = event.points && event.points[0];
        if (!point) return;
        let [row, col] = Array.isArray(point.pointNumber) ? point.pointNumber : [point.pointNumber, 0];
        if (id === 'grid') {
          const cell = gd.layout.meta && gd.layout.meta.cell;
          if (!cell) return;
          row = Math.floor(row / cell);
          col = Math.floor(col / cell);
        }
        bridge(`${id}:${row},${col}`);
      });
    }
  };
  // a byte token (part of a character, shown as its hex bytes like ‹F0›‹9F›): its group's hover
  // names the whole character
  const utf8 = new TextEncoder();
  const chipBytes = (text) => {
    const bytes = [];
    for (const part of text.replace(/␣/g, ' ').replace(/↵/g, '\\n').split(/(‹[0-9A-F]{2}›)/)) {
      if (/^‹[0-9A-F]{2}›$/.test(part)) bytes.push(parseInt(part.slice(1, -1), 16));
      else bytes.push(...utf8.encode(part));
    }
    return bytes;
  };
  const isBytes = (chip) => /‹[0-9A-F]{2}›/.test(chip.textContent);
  const nameByteChips = () => {
    for (const box of document.querySelectorAll('#chips, #attn-chips')) {
      const chips = [...box.querySelectorAll('.token')];
      for (let i = 0; i < chips.length; ) {
        if (!isBytes(chips[i])) { i++; continue; }
        let j = i;
        while (j < chips.length && isBytes(chips[j])) j++;
        const run = chips.slice(i, j);
        const text = new TextDecoder().decode(new Uint8Array(run.flatMap((c) => chipBytes(c.querySelector('.text')?.textContent || ''))));
        run.forEach((c) => { c.title = `bytes of “${text.trim()}”`; });
        i = j;
      }
    }
  };
  new MutationObserver(() => { bind(); nameByteChips(); }).observe(document.body, {childList: true, subtree: true});
  // a plot drawn while its tab was hidden took a default width: redraw plots when a tab opens
  document.addEventListener('click', (event) => {
    if (event.target.closest('[role=tab]')) setTimeout(() => window.dispatchEvent(new Event('resize')), 60);
  });
  document.addEventListener('keydown', (event) => {
    if ((event.ctrlKey || event.metaKey) && event.key === 'Enter' && event.target.closest('#prompt')) {
      event.preventDefault();
      document.querySelector('#generate')?.click();
    }
  });
}
"""


def plot(fig, **update) -> dict:
    """A Plotly figure for gr.Plot, with its display config (see `plots.figure_json`)."""
    return gr.update(value=PlotData(type="plotly", plot=plots.figure_json(fig)), **update)


def warn(exc: Exception) -> str:
    """A user error as a status line, also shown as a toast."""
    gr.Warning(str(exc))
    return f"⚠ {exc}"


def _entry(session: Session, run: str = CLEAN, ablation: Ablation | None = None):
    """(model, the analysis entry of the session's window, the window)."""
    if not session or not session.ids:
        raise UserInputError("generate some text first")
    model = service.MODELS.get(session.model)
    window = session.window(model.config.block_size)
    use = ablation if run == ABLATED and ablation is not None else None
    return model, service.ANALYSES.get(session.model, model, window.ids, use), window


def _query(entry, query) -> int:
    last = len(entry.analysis.ids) - 1
    return last if query is None or not 0 <= query <= last else int(query)


MEAN_OPTION, SINK_OPTION, LOG_OPTION = "mean of the layer", "hide the sink", "log colours"


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


# ---- generation -------------------------------------------------------------------------------------


def shown_text(session: Session, block_size: int) -> str:
    """The text as the model sees it: its context window, after a ✂ marker if tokens came before."""
    window = session.window(block_size)
    text = get_tokenizer().decode(window.ids)
    return f"✂ [{window.cut:,} earlier tokens] " + text if window.cut else text


def _idle(status: str) -> dict:
    return {
        status_box: status,
        generate_btn: gr.update(interactive=True),
        stop_btn: gr.update(interactive=False, variant="secondary"),
    }


@on_gpu
def run_generation(prompt, model_name, max_new_tokens, temperature, top_k, top_p, seed, fast_decode):
    """Stream the text, its token chips, the session and the status as tokens arrive."""
    try:
        settings, model, encoded = service.prepare(
            prompt, model_name, max_new_tokens, temperature, top_k, top_p, seed, fast_decode
        )
    except UserInputError as exc:
        yield _idle(warn(exc))
        return
    block = model.config.block_size
    session = Session(service.MODELS.resolve(model_name), tuple(encoded.ids), len(encoded.ids), encoded.cut)
    note = (encoded.note + " ") if encoded.note else ""
    decoding = decoding_note(model, fast_decode)
    decoding = f" ({decoding})" if decoding else ""
    running = {generate_btn: gr.update(interactive=False), stop_btn: gr.update(interactive=True, variant="stop")}
    status = f"{note}Generating {settings.max_new_tokens} tokens with {session.model}{decoding}…"
    yield {
        output: shown_text(session, block),
        chips: views.token_chips(session.window(block)),
        session_state: session,
        status_box: status,
        **running,
    }
    for ids in service.throttled(service.stream_text(model, encoded.ids, settings)):
        session = session.with_ids(ids)
        yield {
            output: shown_text(session, block),
            chips: views.token_chips(session.window(block)),
            session_state: session,
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
        service.MODELS.get(model_name)
    except UserInputError as exc:
        return {model_box: current, status_box: warn(f"{exc}. Staying on {current}")}
    return {model_box: model_name, status_box: f"Loaded {model_name}. Press Generate to use it."}


WAITING = "Generating… the maps appear when the text is complete."


def lab_text_plots() -> list:
    """The lab's plots that show the current text (patching shows its own prompts)."""
    return [lab_loss, lab_lens, lab_direct, lab_sweep, lab_rest, lab_rank, lab_ablate_loss, lab_ablate_bars]


def _blank(component, height: int = 260) -> dict:
    """`component` (a gr.Plot) back to its first label, with a waiting message."""
    return gr.update(value=_empty(WAITING, height), label=component.label)


def clear_text_views(shown) -> dict:
    """A new text is coming: every view of the old one goes blank and its downloads go away (the
    patching views stay: they show their own two prompts)."""
    return {
        query_state: None,
        ablation_state: None,
        run_box: gr.update(visible=False, value=CLEAN),
        heatmap: _blank(heatmap, 420),
        attn_chips: gr.update(value=None, label=attn_chips.label),
        next_tokens: _blank(next_tokens, 200),
        **{component: _blank(component) for component in (grid, scores_plot, *lab_text_plots())},
        exports: gr.update(value=None, visible=False),
        lab_exports: gr.update(value=None, visible=False),
        lab_shown: {name: view for name, view in (shown or {}).items() if name.startswith("patching")},
    }


# ---- attention views --------------------------------------------------------------------------------


def _attention_views(model, entry, window, view: HeadView, query: int) -> dict:
    heatmap_fig, label = views.heatmap_view(model, entry, view.layer, view.head, view.hide_sink, view.log_scale, query)
    bars, bars_label = views.next_token_view(model, entry, query)
    query_chips = views.query_chips(model, entry, view.layer, view.head, query, view.hide_sink)
    return {
        heatmap: plot(heatmap_fig, label=label),
        attn_chips: gr.update(value=query_chips, label=f"What token {query} attends to (brightest = most)"),
        next_tokens: plot(bars, label=bars_label),
        chips: views.token_chips(window, query),
    }


def _grid_views(entry, view: HeadView, score_name) -> dict:
    selected = (view.layer, view.grid_head)
    return {
        grid: plot(views.grid_view(entry, selected)),
        scores_plot: plot(views.score_view(entry, score_name, selected)),
    }


@on_gpu
def refresh_views(session, head_choice, options, score_name, query, run, ablation):
    """Everything that depends on the text, after new tokens: the head list and every view."""
    if not session or not session.ids:
        return {}
    try:
        model, entry, window = _entry(session, run, ablation)
        choices = views.head_choices(entry)
        if head_choice not in [value for _, value in choices]:
            head_choice = choices[0][1]
        view = _head_view(head_choice, options)
        query = _query(entry, query)
        return {
            head_box: gr.update(choices=choices, value=head_choice),
            query_state: query,
            **_attention_views(model, entry, window, view, query),
            **_grid_views(entry, view, score_name),
        }
    except UserInputError as exc:
        return {status_box: warn(exc)}


@on_gpu
def update_head(session, head_choice, options, score_name, query, run, ablation):
    """A new head, option or run: the heatmap, the query's views, the outlines in the grids, and the
    head list's roles (those of the run shown)."""
    try:
        model, entry, window = _entry(session, run, ablation)
        view = _head_view(head_choice, options)
        return {
            head_box: gr.update(choices=views.head_choices(entry), value=head_choice),
            **_attention_views(model, entry, window, view, _query(entry, query)),
            **_grid_views(entry, view, score_name),
        }
    except UserInputError as exc:
        return {status_box: warn(exc)}


def _select_query(session, head_choice, options, run, ablation, position) -> dict:
    model, entry, window = _entry(session, run, ablation)
    query = _query(entry, position)
    token = plots.visible_token(entry.tokens[query])
    return {
        query_state: query,
        status_box: f"Query: token {query} '{token}'.",
        **_attention_views(model, entry, window, _head_view(head_choice, options), query),
    }


@on_gpu
def select_query(session, head_choice, options, run, ablation, evt: gr.SelectData):
    """A token chip was clicked: it becomes the query."""
    try:
        model = service.MODELS.get(session.model) if session and session.ids else None
        if model is None:
            raise UserInputError("generate some text first")
        position = views.chip_position(session.window(model.config.block_size), evt.index)
        if position is None:
            raise UserInputError("that is the ✂ marker: the tokens before it are outside the model's context")
        return _select_query(session, head_choice, options, run, ablation, position)
    except UserInputError as exc:
        return {status_box: warn(exc)}


@on_gpu
def bridge_click(value, session, head_choice, options, score_name, query, run, ablation, lab_heads):
    """A click in a plot, sent by the page's script as "owner:row,column"."""
    try:
        owner, _, rest = str(value).partition(":")
        row, col = (int(part) for part in rest.split("@")[0].split(","))
        if owner in ("grid", "scores"):  # open the head in the Attention tab
            choice, options = head_value(row, col), [o for o in options or [] if o != MEAN_OPTION]
            result = update_head(session, choice, options, score_name, query, run, ablation)
            return {options_box: options, tabs: gr.Tabs(selected=ATTENTION_TAB), **result}
        if owner == "heatmap":
            _, entry, _ = _entry(session, run, ablation)
            position = views.heatmap_click_position(entry, row)
            return _select_query(session, head_choice, options, run, ablation, position)
        if owner in ("lab-direct", "lab-sweep", "lab-patch-heads"):  # toggle the head in the ablation box
            name = f"L{row}H{col}"
            parts = [p.strip() for p in str(lab_heads or "").split(",") if p.strip()]
            parts = [p for p in parts if p.upper() != name] if any(p.upper() == name for p in parts) else [*parts, name]
            return {lab_heads_box: ", ".join(parts)}
    except (ValueError, UserInputError) as exc:
        return {status_box: warn(exc)}
    return {}


def loss_chips(session, colour_by_loss, query):
    """The token chips, plain or coloured by each token's loss."""
    if not session or not session.ids:
        return {}
    try:
        model, entry, window = _entry(session)
        if not colour_by_loss:
            return {chips: gr.update(value=views.token_chips(window, _query(entry, query)), show_legend=True)}
        return {chips: gr.update(value=views.loss_chips(model, entry, window), show_legend=False)}
    except UserInputError as exc:
        return {status_box: warn(exc)}


# ---- lab --------------------------------------------------------------------------------------------


def _lab_entry(session):
    model, entry, window = _entry(session)
    return model, entry


def _shown(shown: dict | None, **views_by_file) -> dict:
    """The lab views on screen by export file name, with these added (replacing the same names)."""
    return {**(shown or {}), **views_by_file}


@on_gpu
def lab_loss_and_lens(session, shown=None):
    try:
        model, entry = _lab_entry(session)
        loss_view, lens_view = lab_views.loss_view(model, entry), lab_views.lens_view(model, entry)
    except UserInputError as exc:
        return {lab_status: warn(exc)}
    return {
        lab_loss: plot(loss_view.figure, label=loss_view.label),
        lab_lens: plot(lens_view.figure, label=lens_view.label),
        lab_status: "Loss and logit lens of the current text.",
        lab_shown: _shown(shown, loss=loss_view, **{"logit-lens": lens_view}),
    }


@on_gpu
def lab_attribute(session, position, target, shown=None, progress=gr.Progress()):  # noqa: B008 - gradio's idiom
    try:
        model, entry = _lab_entry(session)
        position, target_id = lab_views.with_default_target(model, entry, position, target)
        heads_view, rest_view = lab_views.attribution_view(model, entry, position, target_id)
        rank = lab_views.rank_view(model, entry, position, target_id)
        sweep = lab_views.sweep_view(
            model, entry, position, target_id, progress=lambda f: progress(f, desc="ablating each head")
        )
    except UserInputError as exc:
        return {lab_status: warn(exc)}
    return {
        lab_direct: plot(heads_view.figure, label=heads_view.label),
        lab_rest: plot(rest_view.figure, label=rest_view.label),
        lab_sweep: plot(sweep.figure, label=sweep.label),
        lab_rank: plot(rank.figure, label=rank.label),
        lab_shown: _shown(
            shown,
            attribution=heads_view,
            **{"attribution-rest": rest_view, "ablation-sweep": sweep, "target-rank": rank},
        ),
        lab_status: "The gap between a head's direct share and its ablation effect shows composition: heads that act through later heads, and backups that take over.",
    }


@on_gpu
def lab_ablate(session, heads_text, mode, position, target, shown=None):
    """Ablate the named heads: before/after, and the ablated run for the Attention tab."""
    try:
        model, entry = _lab_entry(session)
        config = model.config
        try:
            ablation = Ablation(parse_heads(heads_text, config.num_layers, config.num_heads), mode)
        except LabError as exc:
            raise UserInputError(str(exc)) from None
        window = session.window(config.block_size)
        ablated = service.ANALYSES.get(session.model, model, window.ids, ablation)
        position, target_id = lab_views.with_default_target(model, entry, position, target)
        loss_view, bars_view, summary = lab_views.ablation_views(model, entry, ablated, ablation, position, target_id)
    except UserInputError as exc:
        return {lab_status: warn(exc)}
    return {
        ablation_state: ablation,
        lab_ablate_loss: plot(loss_view.figure, label=loss_view.label),
        lab_ablate_bars: plot(bars_view.figure, label=bars_view.label),
        lab_shown: _shown(shown, **{"ablation-loss": loss_view, "ablation-next-token": bars_view}),
        lab_status: summary,
        run_box: gr.update(visible=True, label=f"Run: clean, or {ablation.label}"),
    }


def tutorial_step(heads_text, mode="zero"):
    return {lab_heads_box: heads_text, lab_mode: mode}


@on_gpu
def lab_patch(clean_text, corrupted_text, session, shown=None, progress=gr.Progress()):  # noqa: B008 - gradio's idiom
    try:
        model_name = (session or EMPTY_SESSION).model
        model = service.MODELS.get(model_name)
        clean = encode_prompt(clean_text, model.config.block_size, what="the clean prompt").ids
        corrupted = encode_prompt(corrupted_text, model.config.block_size, what="the corrupted prompt").ids
        resid_view, heads_view, summary = lab_views.patch_views(
            model, clean, corrupted, progress=lambda f: progress(f, desc="patching")
        )
    except UserInputError as exc:
        return {lab_status: warn(exc)}
    return {
        lab_patch_resid: plot(resid_view.figure, label=resid_view.label),
        lab_patch_heads: plot(heads_view.figure, label=heads_view.label),
        lab_shown: _shown(shown, **{"patching-residual": resid_view, "patching-heads": heads_view}),
        lab_status: summary,
    }


# ---- exports ----------------------------------------------------------------------------------------


def _export_folder() -> Path:
    return Path(tempfile.mkdtemp(dir=service.EXPORT_DIR))


def export_attention(session, head_choice, options, query):
    """All of the text's attention (.npz) and the current heatmap (.html)."""
    try:
        model, entry, _ = _entry(session)
        view = _head_view(head_choice, options)
        layer, head = view.layer, view.head
        fig, label = views.heatmap_view(model, entry, layer, head, view.hide_sink, view.log_scale, _query(entry, query))
    except UserInputError as exc:
        return {status_box: warn(exc)}
    folder = _export_folder()
    npz = export.save_npz(model, entry, folder / "attention.npz", session.model)
    title = f"{session.model} · {views.head_name(entry, layer, head)} · “{export.text_start(entry.tokens)}”"
    page = export.save_html(fig, folder / f"heatmap-L{layer}-{'mean' if head == MEAN else f'H{head}'}.html", title)
    return {
        exports: gr.update(value=[str(npz), str(page)], visible=True),
        status_box: "Exported attention.npz (every layer and head, float16, with the tokens and scores) and the heatmap as a page.",
    }


def export_lab(session, shown):
    """Every lab view on screen, as it is shown (.json, .csv, .html each); nothing is recomputed."""
    if not shown:
        return {lab_status: warn(UserInputError("run a Lab tool first: Export saves the views it shows"))}
    folder = _export_folder()
    session = session or EMPTY_SESSION
    start = export.text_start([get_tokenizer().decode(session.ids)])
    files = []
    for name, view in shown.items():
        text = f" · “{start}”" if start and not name.startswith("patching") else ""  # patching has its own prompts
        title = f"{session.model} · {view.label}{text}"
        files += export.save_view(folder, name, view, title)
    return {
        lab_exports: gr.update(value=[str(f) for f in files], visible=True),
        lab_status: f"Exported {len(shown)} views as {len(files)} files: {', '.join(shown)}.",
    }


# ---- layout -----------------------------------------------------------------------------------------


def _downloads(label: str, elem_id: str) -> gr.File:
    """A list of files to download, hidden until there are some."""
    return gr.File(label=label, file_count="multiple", interactive=False, visible=False, elem_id=elem_id)


def _empty(message: str, height: int = 260):
    return PlotData(type="plotly", plot=plots.figure_json(plots.placeholder(message, height)))


with gr.Blocks(title="GPT-2 Attention Explorer", fill_width=True) as demo:
    gr.Markdown(
        "**GPT-2 Attention Explorer** · type a prompt and **Generate**, click a token to see what it attended "
        "to, click a head in *All heads* to open it, and ask what heads *do* in the *Lab*.",
        elem_id="intro",
    )
    session_state = gr.State(EMPTY_SESSION, time_to_live=SESSION_TTL_S)
    query_state = gr.State(None, time_to_live=SESSION_TTL_S)
    ablation_state = gr.State(None, time_to_live=SESSION_TTL_S)
    lab_shown = gr.State({}, time_to_live=SESSION_TTL_S)  # export file name → the lab View on screen
    bridge = gr.Textbox(visible="hidden", elem_id="click-bridge", label="click")
    # on a phone the columns stack as core, views, extras (see the CSS): the views come right after the tokens
    with gr.Row(equal_height=False, elem_id="main"):
        with gr.Column(scale=2, min_width=340, elem_id="left"):
            with gr.Column(elem_id="core"):
                model_box = gr.Dropdown(service.MODELS.choices(), value=BUNDLED_NAME, label="Model", elem_id="model")
                prompt = gr.Textbox(
                    label="Prompt (Ctrl/Cmd+Enter generates)",
                    lines=3,
                    max_lines=8,
                    max_length=MAX_PROMPT_CHARS,
                    elem_id="prompt",
                )
                with gr.Row():
                    generate_btn = gr.Button("Generate", variant="primary", scale=3, min_width=100, elem_id="generate")
                    stop_btn = gr.Button(
                        "Stop", variant="secondary", interactive=False, scale=1, min_width=70, elem_id="stop"
                    )
                status_box = gr.Textbox(
                    show_label=False, placeholder="Status", interactive=False, lines=1, max_lines=8, elem_id="status"
                )
                chips = gr.HighlightedText(
                    label="Tokens: click one to make it the query",
                    color_map=views.CHIP_COLORS,
                    show_legend=True,
                    combine_adjacent=False,
                    elem_id="chips",
                )
                colour_by_loss = gr.Checkbox(
                    label="Colour tokens by their loss (darker = more surprising)", value=False, elem_id="loss-toggle"
                )
            with gr.Column(elem_id="extras"):
                gr.Examples(
                    EXAMPLES, inputs=prompt, label="Examples (the first repeats a sequence: watch the induction heads)"
                )
                with gr.Accordion("Sampling", open=False):
                    max_new_tokens = gr.Slider(
                        1, MAX_NEW_TOKENS, value=40, step=1, label="Max new tokens", elem_id="max-new-tokens"
                    )
                    temperature = gr.Slider(0, 2, value=0.8, step=0.05, label="Temperature (0 = greedy)")
                    top_k = gr.Slider(0, 200, value=50, step=1, label="Top-k (0 = off)")
                    top_p = gr.Slider(0.05, 1, value=1.0, step=0.05, label="Top-p (1 = off)")
                    seed = gr.Number(value=0, precision=0, label="Seed")
                    fast_decode = gr.Checkbox(
                        value=True, label="Fast decoding (int8 weights for GPT-2-sized models; maps stay float32)"
                    )
                with gr.Accordion("Plain text (as the model sees it)", open=False):
                    output = gr.Textbox(show_label=False, lines=4, max_lines=12, interactive=False, elem_id="output")
        with gr.Column(scale=5, min_width=340, elem_id="right"):
            with gr.Tabs(elem_id="tabs") as tabs:
                with gr.Tab("Attention", id=ATTENTION_TAB, elem_id="tab-attention"):
                    with gr.Row(elem_id="controls"):
                        head_box = gr.Dropdown(choices=[], label="Head", scale=3, min_width=260, elem_id="head")
                        options_box = gr.CheckboxGroup(
                            [MEAN_OPTION, SINK_OPTION, LOG_OPTION],
                            value=[],
                            label="Show",
                            scale=2,
                            min_width=260,
                            elem_id="options",
                        )
                    run_box = gr.Radio([CLEAN, ABLATED], value=CLEAN, label="Run", visible=False, elem_id="run")
                    with gr.Row(equal_height=False):
                        with gr.Column(scale=3, min_width=300):
                            heatmap = gr.Plot(
                                _empty("Generate some text: each head's attention appears here.", 420),
                                label="Attention",
                                elem_id="heatmap",
                            )
                        with gr.Column(scale=2, min_width=260):
                            attn_chips = gr.HighlightedText(
                                label="What the query attends to",
                                combine_adjacent=False,
                                show_inline_category=False,
                                elem_id="attn-chips",
                            )
                            next_tokens = gr.Plot(
                                _empty("The next-token probabilities at the query.", 200),
                                label="Next token",
                                elem_id="next-tokens",
                            )
                    with gr.Accordion("Export this text's attention", open=False):
                        gr.Markdown(
                            "Every layer's and head's maps (.npz, float16, with the tokens and head scores), and the heatmap above as a page that opens offline."
                        )
                        export_btn = gr.Button("Export attention (.npz) and heatmap (.html)", elem_id="export")
                        exports = _downloads("Downloads", "exports")
                with gr.Tab("All heads", id="heads", elem_id="tab-heads"):
                    score_name = gr.Radio(
                        list(SCORE_NAMES), value="previous-token", label="Head score (click a head to open it)"
                    )
                    with gr.Row(equal_height=False):
                        with gr.Column(scale=3, min_width=300):
                            grid = gr.Plot(
                                _empty("Every head at a glance, after you generate."),
                                label="Every head at a glance: layers down, heads across",
                                elem_id="grid",
                            )
                        with gr.Column(scale=2, min_width=260):
                            scores_plot = gr.Plot(
                                _empty("Head scores, after you generate."), label="Head scores", elem_id="scores"
                            )
                with gr.Tab("Lab", id="lab", elem_id="tab-lab"):
                    lab_status = gr.Textbox(
                        value=LAB_START, label="Lab", interactive=False, lines=1, max_lines=6, elem_id="lab-status"
                    )
                    with gr.Tabs(overflow_behavior="wrap"):  # every tool one tap away on a phone
                        with gr.Tab("Tutorial"):
                            gr.Markdown(TUTORIAL)
                            with gr.Row():
                                load_example = gr.Button("1. Load the example", min_width=120)
                                step_layer1 = gr.Button("Ablate layer 1", min_width=120)
                                step_prev = gr.Button("Ablate L0 H0", min_width=120)
                                step_control = gr.Button("Ablate L4 H2", min_width=120)
                        with gr.Tab("Loss & lens", elem_id="lab-loss-tab"):
                            loss_btn = gr.Button("Show the loss and the logit lens", elem_id="lab-loss-btn")
                            lab_loss = gr.Plot(
                                _empty("Each token's loss given the ones before it."),
                                label="Per-token loss",
                                elem_id="lab-loss",
                            )
                            lab_lens = gr.Plot(
                                _empty("The top token read from the residual stream after each layer."),
                                label="Logit lens",
                                elem_id="lab-lens",
                            )
                        with gr.Tab("Attribution", elem_id="lab-attr-tab"):
                            with gr.Row():
                                lab_position = gr.Number(
                                    value=-1, precision=0, label="Position (-1 = last)", min_width=120
                                )
                                lab_target = gr.Textbox(
                                    label="Target token (empty = the actual next one, or the top prediction at the end)",
                                    min_width=200,
                                )
                            attr_btn = gr.Button("Attribute and sweep", elem_id="lab-attr-btn")
                            with gr.Row(equal_height=False):
                                lab_direct = gr.Plot(
                                    _empty("Each head's direct share of the target's logit."),
                                    label="Direct attribution",
                                    elem_id="lab-direct",
                                    min_width=260,
                                )
                                lab_sweep = gr.Plot(
                                    _empty("Each head alone ablated: the change in log p."),
                                    label="Ablation sweep",
                                    elem_id="lab-sweep",
                                    min_width=260,
                                )
                            with gr.Row(equal_height=False):
                                lab_rest = gr.Plot(
                                    _empty("MLPs, embeddings and biases.", 200),
                                    label="The rest",
                                    elem_id="lab-rest",
                                    min_width=260,
                                )
                                lab_rank = gr.Plot(
                                    _empty("The target's rank, layer by layer.", 200),
                                    label="Rank in the logit lens",
                                    elem_id="lab-rank",
                                    min_width=260,
                                )
                        with gr.Tab("Ablation", elem_id="lab-ablate-tab"):
                            with gr.Row():
                                lab_heads_box = gr.Textbox(
                                    label="Heads (L0H0, L1H2, or L1 for a layer; click heads in the lab's maps)",
                                    value="L1",
                                    scale=3,
                                    elem_id="lab-heads",
                                )
                                lab_mode = gr.Radio(
                                    ["zero", "mean"], value="zero", label="Ablation", scale=1, min_width=140
                                )
                            ablate_btn = gr.Button("Ablate", variant="primary", elem_id="lab-ablate-btn")
                            lab_ablate_loss = gr.Plot(
                                _empty("Per-token loss, clean and ablated."),
                                label="Loss before and after",
                                elem_id="lab-ablate-loss",
                            )
                            lab_ablate_bars = gr.Plot(
                                _empty("Next-token probabilities, clean and ablated.", 220),
                                label="Next token before and after",
                                elem_id="lab-ablate-bars",
                            )
                        with gr.Tab("Patching", elem_id="lab-patch-tab"):
                            patch_clean = gr.Textbox(label="Clean prompt", value=PATCH_EXAMPLE[0], lines=2)
                            patch_corrupted = gr.Textbox(
                                label="Corrupted prompt (the same number of tokens)", value=PATCH_EXAMPLE[1], lines=2
                            )
                            patch_btn = gr.Button(
                                "Patch clean into corrupted", variant="primary", elem_id="lab-patch-btn"
                            )
                            lab_patch_resid = gr.Plot(
                                _empty("The residual stream patched per layer and position."),
                                label="Residual stream",
                                elem_id="lab-patch-resid",
                            )
                            lab_patch_heads = gr.Plot(
                                _empty("Each head's output patched."), label="Heads", elem_id="lab-patch-heads"
                            )
                    lab_export_btn = gr.Button(
                        "Export the lab's numbers (.json, .csv) and figures (.html)", elem_id="lab-export"
                    )
                    lab_exports = _downloads("Lab downloads", "lab-exports")

    view_inputs = [session_state, head_box, options_box, score_name, query_state, run_box, ablation_state]
    attention_outputs = [heatmap, attn_chips, next_tokens, chips]
    view_outputs = [head_box, query_state, *attention_outputs, grid, scores_plot, status_box]
    private = dict(api_visibility="private")

    text_views = [query_state, ablation_state, run_box, heatmap, attn_chips, next_tokens, grid, scores_plot]
    text_views += [*lab_text_plots(), exports, lab_exports, lab_shown]
    generation = generate_btn.click(clear_text_views, [lab_shown], text_views, **private).then(
        run_generation,
        inputs=[prompt, model_box, max_new_tokens, temperature, top_k, top_p, seed, fast_decode],
        outputs=[output, chips, session_state, status_box, generate_btn, stop_btn],
        **private,
    )
    generation.then(refresh_views, view_inputs, view_outputs, **private)
    # cancel first, then count: the last tokens streamed before the cancel took effect are in the session
    stop_btn.click(None, cancels=[generation], **private).then(
        stopped, [session_state], [status_box, generate_btn, stop_btn], **private
    ).then(refresh_views, view_inputs, view_outputs, **private)
    # .select, not .input: Gradio's dropdown sends .input twice for one choice (two runs, two toasts)
    model_box.select(switch_model, [model_box, session_state], [model_box, status_box], **private)
    gr.on(
        [head_box.input, options_box.input, score_name.input, run_box.input],
        update_head,
        view_inputs,
        [head_box, *attention_outputs, grid, scores_plot, status_box],
        **private,
    )
    chips.select(
        select_query,
        [session_state, head_box, options_box, run_box, ablation_state],
        [query_state, status_box, *attention_outputs],
        **private,
    )
    bridge.change(
        bridge_click,
        [bridge, session_state, head_box, options_box, score_name, query_state, run_box, ablation_state, lab_heads_box],
        [head_box, options_box, query_state, status_box, *attention_outputs, grid, scores_plot, lab_heads_box, tabs],
        **private,
    )
    colour_by_loss.input(loss_chips, [session_state, colour_by_loss, query_state], [chips, status_box], **private)

    heavy = dict(concurrency_id="lab", concurrency_limit=2, **private)
    loss_btn.click(lab_loss_and_lens, [session_state, lab_shown], [lab_loss, lab_lens, lab_status, lab_shown], **heavy)
    attr_btn.click(
        lab_attribute,
        [session_state, lab_position, lab_target, lab_shown],
        [lab_direct, lab_rest, lab_sweep, lab_rank, lab_status, lab_shown],
        **heavy,
    )
    ablate_inputs = [session_state, lab_heads_box, lab_mode, lab_position, lab_target, lab_shown]
    ablate_outputs = [ablation_state, lab_ablate_loss, lab_ablate_bars, lab_status, run_box, lab_shown]
    ablate_btn.click(lab_ablate, ablate_inputs, ablate_outputs, **heavy)
    for button, heads_text in ((step_layer1, "L1"), (step_prev, "L0H0"), (step_control, "L4H2")):
        button.click(lambda text=heads_text: tutorial_step(text), outputs=[lab_heads_box, lab_mode], **private).then(
            lab_ablate, ablate_inputs, ablate_outputs, **heavy
        )
    load_example.click(lambda: REPEATED_EXAMPLE, outputs=prompt, **private).then(
        lambda: None, js="() => document.querySelector('#generate').click()", **private
    )
    patch_btn.click(
        lab_patch,
        [patch_clean, patch_corrupted, session_state, lab_shown],
        [lab_patch_resid, lab_patch_heads, lab_status, lab_shown],
        **heavy,
    )
    export_btn.click(
        export_attention, [session_state, head_box, options_box, query_state], [exports, status_box], **private
    )
    lab_export_btn.click(export_lab, [session_state, lab_shown], [lab_exports, lab_status], **private)

    demo.load(
        lambda: gr.update(choices=service.MODELS.choices()), outputs=model_box, **private
    )  # with --model checkpoints

    gr.api(api.api_generate, api_name="generate")
    gr.api(api.api_attention, api_name="attention")
    gr.api(api.api_loss, api_name="loss")
    gr.api(api.api_logit_lens, api_name="logit_lens")
    gr.api(api.api_head_effects, api_name="head_effects")
    gr.api(api.api_ablate, api_name="ablate")
    gr.api(api.api_patch, api_name="patch")

demo.queue(default_concurrency_limit=4, max_size=64)
# Gradio keeps every session's last outputs (figures, API answers) until it holds this many sessions
# (10,000 by default, gigabytes on a busy Space); the least recently used go first.
SESSIONS_KEPT = 500

THEME = gr.themes.Soft(font=FONTS, font_mono=MONO_FONTS)


def launch(**kwargs):
    """Serve the app (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT override the address, as on Spaces)."""
    service.MODELS.get(BUNDLED_NAME)  # load before the first request
    return demo.launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        allowed_paths=[str(service.EXPORT_DIR)],
        state_session_capacity=SESSIONS_KEPT,
        theme=THEME,
        css=CSS,
        js=JS,
        **kwargs,
    )
