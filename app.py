"""GPT-2 Attention Explorer: type a prompt, watch GPT-2 write, and look at what every head attended to.

`python app.py` serves on 127.0.0.1:7860 (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT override it, as
Hugging Face Spaces does). All logic lives in `gpt2.explorer`; this file only wires widgets.
"""

import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import gradio as gr

from gpt2 import explorer as ex

try:  # ZeroGPU on Hugging Face Spaces; a no-op everywhere else
    import spaces

    on_gpu = spaces.GPU
except ImportError:

    def on_gpu(fn):
        return fn


MODELS = ex.ModelStore()
ANALYSES = ex.AnalysisCache(budget_bytes=int(os.environ.get("EXPLORER_CACHE_BYTES", 1 << 30)))
EXPORT_DIR = Path(tempfile.mkdtemp(prefix="gpt2-explorer-"))
STREAM_INTERVAL_S = 0.04  # the browser re-renders every chip per update: batch tokens that come faster
SESSION_TTL_S = 1800  # session state (token ids only) expires after 30 minutes

EXAMPLES = [
    [
        "sword crown honey winter tongue lamb night castle bread river. sword crown honey winter tongue lamb night castle bread river."
    ],
    ["ROMEO:\nBut soft, what light through yonder window breaks?"],
    ["The quick brown fox jumps over the lazy dog because"],
    ["First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\nFirst Citizen:\n"],
]
EMPTY_SESSION = {"model": ex.BUNDLED_NAME, "ids": [], "prompt_len": 0}


def _analysis(session):
    if not session or not session.get("ids"):
        raise ex.UserInputError("generate some text first")
    model = MODELS.get(session["model"])
    ids = session["ids"][-model.config.block_size :]
    return model, ANALYSES.get(session["model"], model, ids)


# ---- generation -------------------------------------------------------------------------------------


def _prepare(prompt, model_name, max_new_tokens, temperature, top_k, top_p, seed, fast_decode):
    """Checked settings, the model to decode with, the cleaned prompt, its token ids and a truncation note."""
    settings = ex.check_settings(max_new_tokens, temperature, top_k, top_p, seed)
    model = MODELS.decoder(model_name, fast_decode)
    prompt = ex.clean_text(prompt)
    prompt_ids, note = ex.encode_prompt(prompt, model.config.block_size)
    return settings, model, prompt, prompt_ids, note


def _throttled(stream):
    """The items of `stream`, at most one every STREAM_INTERVAL_S (the browser re-renders every chip
    per update, so tokens that come faster are batched), and always the last one."""
    last_update, pending = float("-inf"), None
    for item in stream:
        pending = item
        if time.monotonic() - last_update >= STREAM_INTERVAL_S:
            last_update, pending = time.monotonic(), None
            yield item
    if pending is not None:
        yield pending


@on_gpu
def run_generation(prompt, model_name, max_new_tokens, temperature, top_k, top_p, seed, fast_decode, session):
    """Stream (text, token chips, session, status) as tokens arrive."""
    try:
        settings, model, prompt, prompt_ids, note = _prepare(
            prompt, model_name, max_new_tokens, temperature, top_k, top_p, seed, fast_decode
        )
    except ex.UserInputError as exc:
        yield gr.skip(), gr.skip(), session, f"⚠ {exc}"
        return
    session = {"model": ex.ModelStore.resolve(model_name), "ids": prompt_ids, "prompt_len": len(prompt_ids)}
    status = note or f"Generating {settings.max_new_tokens} tokens with {session['model']}…"
    yield prompt, ex.token_chips(prompt_ids, len(prompt_ids)), session, status
    for text, ids in _throttled(ex.stream_generation(model, prompt_ids, settings)):
        session = {**session, "ids": ids}
        yield prompt + text, ex.token_chips(ids, len(prompt_ids)), session, status
    done = f"Done: {len(session['ids']) - len(prompt_ids)} new tokens. Click a token to see what it attended to."
    yield gr.skip(), gr.skip(), session, (note + " " if note else "") + done


def switch_model(model_name, session, progress=gr.Progress(track_tqdm=True)):  # noqa: B008 - gradio's idiom
    """Load the chosen model (the Hub download's progress bar shows in the UI); if that fails, say why
    and stay on the current one."""
    current = (session or EMPTY_SESSION)["model"]
    try:
        MODELS.get(model_name)
    except ex.UserInputError as exc:
        return current, f"⚠ {exc}. Staying on {current}."
    return model_name, f"Loaded {model_name}."


# ---- views ------------------------------------------------------------------------------------------


def _head(head_value, mean_heads):
    layer, head = ex.parse_head_choice(head_value)
    return layer, (ex.MEAN if mean_heads else head), head


def _note(note):
    """The pooling note, shown only when there is one."""
    return gr.update(value=note, visible=bool(note))


def _query(analysis, query):
    last = len(analysis.ids) - 1
    return last if query is None or query < 0 or query > last else query


@on_gpu
def refresh_views(session, head_value, mean_heads, hide_sink, log_scale, score_name, query):
    """Everything below the text after new tokens: head list, heatmap, grid, chips, next-token bars."""
    if not session or not session.get("ids"):
        return (gr.skip(),) * 8  # nothing generated yet: leave the views (and any error message) alone
    try:
        model, analysis = _analysis(session)
        choices = ex.head_choices(analysis)
        if head_value not in [value for _, value in choices]:
            head_value = choices[0][1]
        layer, head, grid_head = _head(head_value, mean_heads)
        query = _query(analysis, query)
        heatmap, note = ex.heatmap_view(analysis, layer, head, hide_sink, log_scale)
        grid, score_fig = ex.grid_view(analysis, score_name, (layer, grid_head))
        chips = ex.attention_chips(analysis, layer, head, query, hide_sink)
        bars = ex.next_token_view(model, analysis, query)
    except ex.UserInputError as exc:
        return (gr.skip(),) * 7 + (f"⚠ {exc}",)
    return gr.update(choices=choices, value=head_value), heatmap, _note(note), grid, score_fig, chips, bars, gr.skip()


@on_gpu
def update_head(session, head_value, mean_heads, hide_sink, log_scale, score_name, query):
    """A new head or option: the heatmap, the outlines in the grid, and the query's chips."""
    try:
        _, analysis = _analysis(session)
        layer, head, grid_head = _head(head_value, mean_heads)
        heatmap, note = ex.heatmap_view(analysis, layer, head, hide_sink, log_scale)
        grid, score_fig = ex.grid_view(analysis, score_name, (layer, grid_head))
        chips = ex.attention_chips(analysis, layer, head, _query(analysis, query), hide_sink)
    except ex.UserInputError as exc:
        return (gr.skip(),) * 5 + (f"⚠ {exc}",)
    return heatmap, _note(note), grid, score_fig, chips, gr.skip()


@on_gpu
def select_query(session, head_value, mean_heads, hide_sink, evt: gr.SelectData):
    """A token chip was clicked: it becomes the query."""
    try:
        model, analysis = _analysis(session)
        clicked = evt.index if isinstance(evt.index, int) else evt.index[0]
        query = clicked - (len(session["ids"]) - len(analysis.ids))  # the analysis covers the last block only
        if query < 0:
            raise ex.UserInputError(
                f"token {clicked} is outside the model's context window of {len(analysis.ids)} tokens"
            )
        query = _query(analysis, query)
        layer, head, _ = _head(head_value, mean_heads)
        chips = ex.attention_chips(analysis, layer, head, query, hide_sink)
        bars = ex.next_token_view(model, analysis, query)
    except ex.UserInputError as exc:
        return gr.skip(), gr.skip(), gr.skip(), f"⚠ {exc}"
    status = f"Query: token {query} '{chips[query][0][1:-1]}'."
    return query, chips, bars, status


def export_files(session, head_value, mean_heads, hide_sink, log_scale):
    """The current text's attention (all layers and heads, .npz) and the current heatmap (.html)."""
    try:
        _, analysis = _analysis(session)
        layer, head, _ = _head(head_value, mean_heads)
        heatmap, _ = ex.heatmap_view(analysis, layer, head, hide_sink, log_scale)
    except ex.UserInputError as exc:
        return gr.skip(), f"⚠ {exc}"
    folder = Path(tempfile.mkdtemp(dir=EXPORT_DIR))
    npz = ex.save_npz(analysis, folder / "attention.npz", session["model"])
    html = ex.save_html(heatmap, folder / f"heatmap-layer{layer}-head{head}.html")
    return [
        str(npz),
        str(html),
    ], "Exported: attention.npz (all layers and heads, with the tokens) and the heatmap as HTML."


# ---- API endpoints ----------------------------------------------------------------------------------


def api_generate(
    prompt: str,
    model: str = ex.BUNDLED_NAME,
    max_new_tokens: int = 40,
    temperature: float = 0.8,
    top_k: int = 50,
    top_p: float = 1.0,
    seed: int = 0,
    fast_decode: bool = True,
) -> Iterator[str]:
    """Generate a continuation: streams the prompt followed by the text so far; the last value is the
    whole result. `fast_decode` uses int8 weights for GPT-2-sized models (the text may differ slightly
    from float32's). A client that disconnects (or cancels) stops the generation and frees its worker."""
    try:
        settings, loaded, prompt, prompt_ids, _ = _prepare(
            prompt, model, max_new_tokens, temperature, top_k, top_p, seed, fast_decode
        )
    except ex.UserInputError as exc:
        raise gr.Error(str(exc)) from None
    yield prompt  # at once: a streaming client sees its request start
    for text, _ in _throttled(ex.stream_generation(loaded, prompt_ids, settings)):
        yield prompt + text


def api_attention(prompt: str, model: str = ex.BUNDLED_NAME, layer: int = 0, head: int = 0) -> dict:
    """One head's attention over the prompt: {"tokens": [...], "attention": [[...]]}, rows are queries."""
    try:
        loaded = MODELS.get(model)
        prompt_ids, _ = ex.encode_prompt(prompt, loaded.config.block_size)
        analysis = ANALYSES.get(ex.ModelStore.resolve(model), loaded, prompt_ids)
        return ex.attention_json(analysis, layer, head)
    except ex.UserInputError as exc:
        raise gr.Error(str(exc)) from None


# ---- layout -----------------------------------------------------------------------------------------

with gr.Blocks(title="GPT-2 Attention Explorer") as demo:
    gr.Markdown(
        "# GPT-2 Attention Explorer\n"
        "Type a prompt and press **Generate**: the text streams in token by token. Then explore what every "
        "attention head looked at: click a token to make it the query, pick a head from the list (roles are "
        "detected for you), and hover the heatmap for exact values."
    )
    session = gr.State(EMPTY_SESSION, time_to_live=SESSION_TTL_S)
    query = gr.State(-1, time_to_live=SESSION_TTL_S)
    with gr.Row():
        with gr.Column(scale=1, min_width=320):
            model_name = gr.Dropdown(list(ex.MODEL_CHOICES), value=ex.BUNDLED_NAME, label="Model")
            prompt = gr.Textbox(label="Prompt", lines=4, max_length=ex.MAX_PROMPT_CHARS, elem_id="prompt")
            gr.Examples(EXAMPLES, inputs=prompt, label="Examples (the first repeats a sequence: watch induction heads)")
            with gr.Accordion("Sampling", open=False):
                max_new_tokens = gr.Slider(
                    1, ex.MAX_NEW_TOKENS, value=40, step=1, label="Max new tokens", elem_id="max-new-tokens"
                )
                temperature = gr.Slider(0, 2, value=0.8, step=0.05, label="Temperature (0 = greedy)")
                top_k = gr.Slider(0, 200, value=50, step=1, label="Top-k (0 = off)")
                top_p = gr.Slider(0.05, 1, value=1.0, step=0.05, label="Top-p (1 = off)")
                seed = gr.Number(value=0, precision=0, label="Seed")
                fast_decode = gr.Checkbox(
                    value=True,
                    label="Fast decoding: int8 weights for GPT-2-sized models (about 3× faster on a CPU; "
                    "the text may differ slightly; attention maps are always float32)",
                )
            with gr.Row():
                generate_btn = gr.Button("Generate", variant="primary", elem_id="generate")
                stop_btn = gr.Button("Stop", variant="stop", elem_id="stop")
            status = gr.Textbox(label="Status", interactive=False, max_lines=2, elem_id="status")
        with gr.Column(scale=2):
            output = gr.Textbox(label="Text (prompt + generated)", lines=6, interactive=False, elem_id="output")
            chips = gr.HighlightedText(
                label="Tokens (click one to make it the query)",
                color_map={"prompt": "#9ecae1", "generated": "#fdae6b"},
                show_legend=True,
                combine_adjacent=False,
                elem_id="chips",
            )
    with gr.Row():
        head_choice = gr.Dropdown(
            choices=[], label="Head (role and scores on the current text)", scale=3, elem_id="head"
        )
        mean_heads = gr.Checkbox(label="Mean over the layer's heads", value=False)
        hide_sink = gr.Checkbox(label="Hide first-token sink (renormalize)", value=False)
        log_scale = gr.Checkbox(label="Log colour scale", value=False)
    with gr.Row():
        with gr.Column(scale=3):
            heatmap = gr.Plot(label="Attention: queries down, keys across", show_label=False, elem_id="heatmap")
            heatmap_note = gr.Textbox(label="Note", interactive=False, max_lines=2, visible=False)
        with gr.Column(scale=2):
            attn_chips = gr.HighlightedText(
                label="What the query attends to (brightest = most)", combine_adjacent=False, elem_id="attn-chips"
            )
            next_tokens = gr.Plot(
                label="Next-token probabilities at the query", show_label=False, elem_id="next-tokens"
            )
    with gr.Row():
        with gr.Column(scale=3):
            grid = gr.Plot(label="Every head at a glance (layers down, heads across)", show_label=False, elem_id="grid")
        with gr.Column(scale=2):
            score_name = gr.Radio(list(ex.SCORE_CHOICES), value="previous-token", label="Head score")
            score_fig = gr.Plot(label="Head scores", show_label=False, elem_id="scores")
    with gr.Row():
        export_btn = gr.Button("Export attention (.npz) and heatmap (.html)", elem_id="export")
        exports = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id="exports")

    view_inputs = [session, head_choice, mean_heads, hide_sink, log_scale, score_name, query]
    refresh_outputs = [head_choice, heatmap, heatmap_note, grid, score_fig, attn_chips, next_tokens, status]
    head_outputs = [heatmap, heatmap_note, grid, score_fig, attn_chips, status]

    generation = generate_btn.click(lambda: -1, outputs=query, api_visibility="private").then(
        run_generation,
        inputs=[prompt, model_name, max_new_tokens, temperature, top_k, top_p, seed, fast_decode, session],
        outputs=[output, chips, session, status],
        api_visibility="private",
    )
    generation.then(refresh_views, view_inputs, refresh_outputs, api_visibility="private")
    stop_btn.click(None, cancels=[generation], api_visibility="private").then(
        refresh_views, view_inputs, refresh_outputs, api_visibility="private"
    )
    model_name.input(switch_model, [model_name, session], [model_name, status], api_visibility="private")
    for control in (head_choice, mean_heads, hide_sink, log_scale):
        control.input(update_head, view_inputs, head_outputs, api_visibility="private")
    score_name.input(update_head, view_inputs, head_outputs, api_visibility="private")
    chips.select(
        select_query,
        [session, head_choice, mean_heads, hide_sink],
        [query, attn_chips, next_tokens, status],
        api_visibility="private",
    )
    export_btn.click(export_files, view_inputs[:5], [exports, status], api_visibility="private")

    gr.api(api_generate, api_name="generate")
    gr.api(api_attention, api_name="attention")

demo.queue(default_concurrency_limit=4, max_size=64)

if __name__ == "__main__":
    MODELS.get(ex.BUNDLED_NAME)  # load before the first request
    demo.launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        allowed_paths=[str(EXPORT_DIR)],
    )
