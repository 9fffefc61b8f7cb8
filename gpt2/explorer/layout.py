"""The page: every component in its place (`build` fills in `widgets.w`) and every event wired to
its handler. On a phone the columns stack as core, views, extras (see assets/explorer.css), so the
views come right after the tokens."""

import gradio as gr

from ..scores import SCORE_NAMES
from . import api, service, views
from .attention_tab import bridge_click, export_attention, refresh_views, select_query, update_head
from .generation_tab import clear_text_views, lab_text_plots, loss_chips, run_generation, stopped, switch_model
from .inputs import MAX_NEW_TOKENS, MAX_PROMPT_CHARS
from .lab_tab import export_lab, lab_ablate, lab_attribute, lab_loss_and_lens, lab_patch, tutorial_step
from .models import BUNDLED_NAME
from .session import EMPTY_SESSION
from .texts import (
    ABLATED,
    ATTENTION_TAB,
    CLEAN,
    EXAMPLES,
    LAB_START,
    LOG_OPTION,
    MEAN_OPTION,
    PATCH_EXAMPLE,
    REPEATED_EXAMPLE,
    SINK_OPTION,
    TUTORIAL,
)
from .widgets import empty_plot, w

SESSION_TTL_S = 1800  # session state (token ids only) expires after 30 minutes


def downloads(label: str, elem_id: str) -> gr.File:
    """A list of files to download, hidden until there are some."""
    return gr.File(label=label, file_count="multiple", interactive=False, visible=False, elem_id=elem_id)


def build(demo: gr.Blocks) -> None:
    """Lay out the app inside `demo` (the current gr.Blocks) and wire its events."""
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
                model_box = gr.Dropdown(service.models().choices(), value=BUNDLED_NAME, label="Model", elem_id="model")
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
                                empty_plot("Generate some text: each head's attention appears here.", 420),
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
                                empty_plot("The next-token probabilities at the query.", 200),
                                label="Next token",
                                elem_id="next-tokens",
                            )
                    with gr.Accordion("Export this text's attention", open=False):
                        gr.Markdown(
                            "Every layer's and head's maps (.npz, float16, with the tokens and head scores), and the heatmap above as a page that opens offline."
                        )
                        export_btn = gr.Button("Export attention (.npz) and heatmap (.html)", elem_id="export")
                        exports = downloads("Downloads", "exports")
                with gr.Tab("All heads", id="heads", elem_id="tab-heads"):
                    score_name = gr.Radio(
                        list(SCORE_NAMES), value="previous-token", label="Head score (click a head to open it)"
                    )
                    with gr.Row(equal_height=False):
                        with gr.Column(scale=3, min_width=300):
                            grid = gr.Plot(
                                empty_plot("Every head at a glance, after you generate."),
                                label="Every head at a glance: layers down, heads across",
                                elem_id="grid",
                            )
                        with gr.Column(scale=2, min_width=260):
                            scores_plot = gr.Plot(
                                empty_plot("Head scores, after you generate."), label="Head scores", elem_id="scores"
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
                                empty_plot("Each token's loss given the ones before it."),
                                label="Per-token loss",
                                elem_id="lab-loss",
                            )
                            lab_lens = gr.Plot(
                                empty_plot("The top token read from the residual stream after each layer."),
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
                                    empty_plot("Each head's direct share of the target's logit."),
                                    label="Direct attribution",
                                    elem_id="lab-direct",
                                    min_width=260,
                                )
                                lab_sweep = gr.Plot(
                                    empty_plot("Each head alone ablated: the change in log p."),
                                    label="Ablation sweep",
                                    elem_id="lab-sweep",
                                    min_width=260,
                                )
                            with gr.Row(equal_height=False):
                                lab_rest = gr.Plot(
                                    empty_plot("MLPs, embeddings and biases.", 200),
                                    label="The rest",
                                    elem_id="lab-rest",
                                    min_width=260,
                                )
                                lab_rank = gr.Plot(
                                    empty_plot("The target's rank, layer by layer.", 200),
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
                                empty_plot("Per-token loss, clean and ablated."),
                                label="Loss before and after",
                                elem_id="lab-ablate-loss",
                            )
                            lab_ablate_bars = gr.Plot(
                                empty_plot("Next-token probabilities, clean and ablated.", 220),
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
                                empty_plot("The residual stream patched per layer and position."),
                                label="Residual stream",
                                elem_id="lab-patch-resid",
                            )
                            lab_patch_heads = gr.Plot(
                                empty_plot("Each head's output patched."), label="Heads", elem_id="lab-patch-heads"
                            )
                    lab_export_btn = gr.Button(
                        "Export the lab's numbers (.json, .csv) and figures (.html)", elem_id="lab-export"
                    )
                    lab_exports = downloads("Lab downloads", "lab-exports")

    w.fill(locals())  # the handlers' handle on every component

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

    heavy = dict(concurrency_id="lab", concurrency_limit=2, **private)  # the lab's tools share 2 workers
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
        lambda: gr.update(choices=service.models().choices()), outputs=model_box, **private
    )  # with --model checkpoints

    demo.unload(drop_exports)  # a session's downloads go with it

    gr.api(api.api_generate, api_name="generate")
    gr.api(api.api_attention, api_name="attention")
    lab_group = dict(concurrency_id=heavy["concurrency_id"], concurrency_limit=heavy["concurrency_limit"])
    gr.api(api.api_loss, api_name="loss", **lab_group)
    gr.api(api.api_logit_lens, api_name="logit_lens", **lab_group)
    gr.api(api.api_head_effects, api_name="head_effects", **lab_group)
    gr.api(api.api_ablate, api_name="ablate", **lab_group)
    gr.api(api.api_patch, api_name="patch", **lab_group)


def drop_exports(request: gr.Request):
    service.stores().exports.drop(request.session_hash)
