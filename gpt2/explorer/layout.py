"""The page: every component in its place (`build` fills in `widgets.w`) and every event wired to
its handler. On a phone the columns stack as core, views, extras (see assets/explorer.css), so the
views come right after the tokens."""

import gradio as gr

from ..scores import SCORE_NAMES
from . import service, training_views, views, wiring
from .inputs import MAX_NEW_TOKENS, MAX_PROMPT_CHARS
from .lab_layout import lab_tab
from .models import BUNDLED_NAME
from .session import EMPTY_SESSION
from .texts import (
    ABLATED,
    ATTENDS_PANEL,
    ATTENTION_TAB,
    CLEAN,
    EXAMPLES,
    LOG_OPTION,
    MEAN_OPTION,
    MODEL_ROLES,
    QK_START,
    SINK_OPTION,
    TRAINING_NONE,
    TRAINING_START,
    TRAINING_TAB,
    WEIGHTS_START,
    WEIGHTS_TAB,
    WHY_PANEL,
)
from .widgets import downloads, empty_plot, w

SESSION_TTL_S = 1800  # session state (token ids only) expires after 30 minutes


def weights_tab() -> dict:
    """The *Weights* tab: composition between heads and a head's passport, from the model alone."""
    with gr.Tab("Weights", id=WEIGHTS_TAB, elem_id="tab-weights"):
        weights_status = gr.Textbox(
            value=WEIGHTS_START, label="Weights", interactive=False, lines=1, max_lines=4, elem_id="weights-status"
        )
        with gr.Row(equal_height=False):
            with gr.Column(scale=3, min_width=300):
                comp_mode = gr.Radio(
                    [("Q: into its queries", "q"), ("K: into its keys", "k"), ("V: into its values", "v")],
                    value="k",
                    label="Composition: how much a sender's output can reach a later head's…",
                    elem_id="comp-mode",
                )
                comp_plot = gr.Plot(
                    empty_plot("Composition between heads, from the weights."),
                    label="Composition",
                    elem_id="composition",
                )
            with gr.Column(scale=2, min_width=280, elem_id="head-card"):
                with gr.Row():
                    card_head = gr.Dropdown(choices=[], label="Head passport", min_width=120, elem_id="card-head")
                    card_tokens = gr.Textbox(
                        label="Tokens for its circuits (empty = the text's)", min_width=160, elem_id="card-tokens"
                    )
                card_md = gr.Markdown(elem_id="card-md")
                card_partners = gr.Plot(
                    empty_plot("Its strongest composition partners.", 200), label="Partners", elem_id="card-partners"
                )
        weights_export_btn = gr.Button("Export these views (.json, .csv) and figures (.html)", elem_id="weights-export")
        weights_exports = downloads("Weights downloads", "weights-exports")
    return locals()


def training_tab() -> dict:
    """The *Training* tab: the model's training history and, with snapshots, a step slider."""
    with gr.Tab("Training", id=TRAINING_TAB, elem_id="tab-training"):
        training_status = gr.Textbox(
            value=TRAINING_START, label="Training", interactive=False, lines=1, max_lines=4, elem_id="training-status"
        )
        training_md = gr.Markdown(elem_id="training-md")
        with gr.Row(equal_height=False):
            with gr.Column(min_width=300):
                train_loss_plot = gr.Plot(empty_plot(TRAINING_NONE, 240), label="Loss", elem_id="train-loss")
            with gr.Column(min_width=300):
                train_icl_plot = gr.Plot(
                    empty_plot(TRAINING_NONE, 240), label="In-context learning", elem_id="train-icl"
                )
        train_score = gr.Radio(
            list(training_views.SCORE_CHOICES),
            value=training_views.SCORE_CHOICES[0][1],
            label="Each head's score against the step",
            elem_id="train-score",
        )
        train_heads_plot = gr.Plot(empty_plot(TRAINING_NONE, 300), label="Heads", elem_id="train-heads")
        with gr.Column(visible=False, elem_id="replay") as replay:
            with gr.Row():
                train_step = gr.Slider(
                    0, 1, value=1, step=1, label="Step (a snapshot of the run)", scale=3, elem_id="train-step"
                )
                train_head = gr.Dropdown(choices=[], label="Head", scale=1, min_width=120, elem_id="train-head")
            with gr.Row(equal_height=False):
                with gr.Column(scale=3, min_width=300):
                    train_heatmap = gr.Plot(
                        empty_plot("The head's attention at that step.", 360),
                        label="Attention",
                        elem_id="train-heatmap",
                    )
                with gr.Column(scale=2, min_width=260):
                    train_grid = gr.Plot(
                        empty_plot("Every head at that step.", 300), label="Every head", elem_id="train-grid"
                    )
    return locals()


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
    weights_shown = gr.State({}, time_to_live=SESSION_TTL_S)  # the same, for the Weights tab
    qk_shown = gr.State(None, time_to_live=SESSION_TTL_S)  # the cell whose QK parts are on screen
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
            with gr.Tabs(elem_id="tabs", overflow_behavior="wrap") as tabs:  # every tab on screen, phone included
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
                            # the query's two panels share one place: a heatmap cell's click opens "why"
                            with gr.Tabs(elem_id="query-panels") as query_tabs:
                                with gr.Tab("What it attends to", id=ATTENDS_PANEL, elem_id="attends-panel"):
                                    attn_chips = gr.HighlightedText(
                                        label="What the query attends to",
                                        combine_adjacent=False,
                                        show_inline_category=False,
                                        elem_id="attn-chips",
                                    )
                                with gr.Tab("Why this key", id=WHY_PANEL, elem_id="why-panel"):
                                    qk_plot = gr.Plot(
                                        empty_plot(QK_START, 220), label="Why this key", elem_id="qk-parts"
                                    )
                                    with gr.Accordion("Every part × every part of that cell", open=False):
                                        qk_matrix_btn = gr.Button(
                                            "Show the query side × key side matrix", elem_id="qk-matrix-btn"
                                        )
                                        qk_matrix = gr.Plot(
                                            empty_plot("Each pair's share of the score: they sum to it.", 200),
                                            label="All parts",
                                            elem_id="qk-matrix",
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
                        [MODEL_ROLES, *SCORE_NAMES],
                        value=MODEL_ROLES,
                        label="Head map: the model's own roles (no text needed), or a score on this text (click a head to open it)",
                        elem_id="score-name",
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
                                empty_plot("The model's own head roles."), label="Head roles", elem_id="scores"
                            )
                weights = weights_tab()
                lab = lab_tab()
                training = training_tab()

    w.fill(locals() | weights | lab | training)  # the handlers' handle on every component
    wiring.wire(demo)
