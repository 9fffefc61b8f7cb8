"""The app's components in one typed object, and the helpers every tab's handlers share.

`layout.build` makes the components and fills in `w`; handlers name their outputs as `w.heatmap`,
`w.status_box`, … and return them by component (`{w.status_box: "…"}`). A visitor's mistake becomes
one status line and a warning toast (see `errors.user_errors`), never a traceback.
"""

from dataclasses import dataclass

import gradio as gr
from gradio.components.plot import PlotData

from . import figures
from .chart import Chart

try:  # ZeroGPU on Hugging Face Spaces; a no-op everywhere else
    import spaces

    on_gpu = spaces.GPU
except ImportError:

    def on_gpu(fn):
        return fn


# The plots whose clicks reach Python, by elem_id: what a click on a cell (row, column) does, and
# where its answer appears (scrolled into view if it is off screen, as on a phone). The page's
# script binds exactly these (`ui.build_demo` writes them into it); `attention_tab.bridge_click`
# and `heads_tab.bridge_card` dispatch on the action.
OPEN_HEAD, SELECT_CELL, TOGGLE_HEAD = "open head", "select cell", "toggle head"
OPEN_CARD, OPEN_PARTNER, OPEN_NODE = "open card", "open partner", "open node"


@dataclass(frozen=True)
class ClickTarget:
    action: str
    reveal: str | None = None  # a CSS selector


CLICK_TARGETS = {
    "grid": ClickTarget(OPEN_HEAD),
    "scores": ClickTarget(OPEN_HEAD),
    "heatmap": ClickTarget(SELECT_CELL, "#query-panels"),
    "lab-direct": ClickTarget(TOGGLE_HEAD),
    "lab-sweep": ClickTarget(TOGGLE_HEAD),
    "lab-patch-heads": ClickTarget(TOGGLE_HEAD),
    "composition": ClickTarget(OPEN_CARD, "#head-card"),
    "card-partners": ClickTarget(OPEN_PARTNER, "#head-card"),
    "lab-apatch-heads": ClickTarget(TOGGLE_HEAD),
    "circuit-graph": ClickTarget(OPEN_NODE, "#tabs"),  # a head opens in the Attention tab
}


class Widgets:
    """Every component a handler reads or writes (filled in once, by `layout.build`)."""

    session_state: gr.State
    query_state: gr.State
    ablation_state: gr.State
    lab_shown: gr.State
    bridge: gr.Textbox
    model_box: gr.Dropdown
    prompt: gr.Textbox
    generate_btn: gr.Button
    stop_btn: gr.Button
    status_box: gr.Textbox
    chips: gr.HighlightedText
    colour_by_loss: gr.Checkbox
    max_new_tokens: gr.Slider
    temperature: gr.Slider
    top_k: gr.Slider
    top_p: gr.Slider
    seed: gr.Number
    fast_decode: gr.Checkbox
    output: gr.Textbox
    tabs: gr.Tabs
    head_box: gr.Dropdown
    options_box: gr.CheckboxGroup
    run_box: gr.Radio
    heatmap: gr.Plot
    attn_chips: gr.HighlightedText
    query_tabs: gr.Tabs
    qk_plot: gr.Plot
    qk_matrix_btn: gr.Button
    qk_matrix: gr.Plot
    qk_shown: gr.State
    next_tokens: gr.Plot
    export_btn: gr.Button
    exports: gr.File
    score_name: gr.Radio
    grid: gr.Plot
    scores_plot: gr.Plot
    weights_status: gr.Textbox
    comp_mode: gr.Radio
    comp_plot: gr.Plot
    card_head: gr.Dropdown
    card_tokens: gr.Textbox
    card_md: gr.Markdown
    card_partners: gr.Plot
    weights_export_btn: gr.Button
    weights_exports: gr.File
    weights_shown: gr.State
    lab_status: gr.Textbox
    load_example: gr.Button
    step_layer1: gr.Button
    step_prev: gr.Button
    step_control: gr.Button
    loss_btn: gr.Button
    lab_loss: gr.Plot
    lab_lens: gr.Plot
    lab_position: gr.Number
    lab_target: gr.Textbox
    attr_btn: gr.Button
    lab_direct: gr.Plot
    lab_sweep: gr.Plot
    lab_rest: gr.Plot
    lab_rank: gr.Plot
    lab_heads_box: gr.Textbox
    lab_mode: gr.Radio
    ablate_btn: gr.Button
    lab_ablate_loss: gr.Plot
    lab_ablate_bars: gr.Plot
    lab_tabs: gr.Tabs
    step_circuit: gr.Button
    patch_task: gr.Dropdown
    patch_seed: gr.Number
    patch_load: gr.Button
    patch_clean: gr.Textbox
    patch_corrupted: gr.Textbox
    patch_answer_clean: gr.Textbox
    patch_answer_corrupted: gr.Textbox
    patch_set: gr.Textbox
    patch_btn: gr.Button
    apatch_btn: gr.Button
    apatch_steps: gr.Radio
    lab_patch_resid: gr.Plot
    lab_patch_heads: gr.Plot
    lab_apatch_heads: gr.Plot
    lab_apatch_mlp: gr.Plot
    circ_task: gr.Dropdown
    circ_seed: gr.Number
    circ_load: gr.Button
    circ_clean: gr.Textbox
    circ_corrupted: gr.Textbox
    circ_answer_clean: gr.Textbox
    circ_answer_corrupted: gr.Textbox
    circ_set: gr.Textbox
    circ_edges: gr.Slider
    circ_method: gr.Radio
    circ_btn: gr.Button
    circ_graph: gr.Plot
    circ_curve: gr.Plot
    circuit_nodes: gr.State
    training_status: gr.Textbox
    training_md: gr.Markdown
    train_loss_plot: gr.Plot
    train_icl_plot: gr.Plot
    train_score: gr.Radio
    train_heads_plot: gr.Plot
    replay: gr.Column
    train_step: gr.Slider
    train_head: gr.Dropdown
    train_heatmap: gr.Plot
    train_grid: gr.Plot
    lab_export_btn: gr.Button
    lab_exports: gr.File

    def fill(self, components: dict) -> None:
        """Take each annotated component from `components` (a namespace of the layout)."""
        for name in self.__annotations__:
            setattr(self, name, components[name])


w = Widgets()


def plot(chart: Chart, **update) -> dict:
    """A view's chart, drawn, for gr.Plot with its display config (see `figures.figure_json`)."""
    return gr.update(value=PlotData(type="plotly", plot=figures.figure_json(figures.draw(chart))), **update)


def plot_view(view, **update) -> dict:
    """A view (`lab_views.View`) for gr.Plot: its chart, drawn, under its label."""
    return plot(view.chart, label=view.label, **update)


def empty_plot(message: str, height: int = 260) -> PlotData:
    """A placeholder figure: no axes, one line of guidance."""
    return PlotData(type="plotly", plot=figures.figure_json(figures.placeholder(message, height)))


def downloads(label: str, elem_id: str) -> gr.File:
    """A list of files to download, hidden until there are some."""
    return gr.File(label=label, file_count="multiple", interactive=False, visible=False, elem_id=elem_id)
