"""The *Lab* tab's components: the tutorial and a sub-tab per tool (`layout.build` places it)."""

import gradio as gr

from ..lab.pairs import MAX_PAIRS
from .texts import CIRCUIT_PANEL, LAB_START, PATCH_EXAMPLE, TASK_SEED, TUTORIAL
from .widgets import downloads, empty_plot


def task_row() -> tuple[gr.Dropdown, gr.Number, gr.Button]:
    """A task preset, its seed (another seed, another pair), and the button that fills the pair and
    answers from them."""
    with gr.Row():
        task = gr.Dropdown(
            [("induction (every model)", "induction"), ("names (GPT-2-sized models)", "names")],
            value="induction",
            label="Task",
            min_width=160,
            scale=2,
        )
        seed = gr.Number(value=TASK_SEED, precision=0, label="Seed", min_width=80, scale=1)
        load = gr.Button("Fill in the task", min_width=120, scale=1)
    return task, seed, load


def answers_and_set() -> tuple[gr.Textbox, gr.Textbox, gr.Textbox]:
    """The two answers, and a prompt set that replaces the two prompts."""
    with gr.Row():
        clean = gr.Textbox(label='Clean answer (one token, like " Juliet"; empty = the top prediction)', min_width=160)
        corrupted = gr.Textbox(label="Corrupted answer", min_width=160)
    with gr.Accordion(f"Prompt set: up to {MAX_PAIRS} pairs, averaged (replaces the two prompts)", open=False):
        pairs = gr.Textbox(
            show_label=False,
            lines=4,
            placeholder='one pair a line: clean prompt | corrupted prompt | " answer" | " answer" (answers optional)',
        )
    return clean, corrupted, pairs


def lab_tab() -> dict:
    """The *Lab* tab: the causal tools on the current text."""
    with gr.Tab("Lab", id="lab", elem_id="tab-lab"):
        lab_status = gr.Textbox(
            value=LAB_START, label="Lab", interactive=False, lines=1, max_lines=6, elem_id="lab-status"
        )
        with gr.Tabs(overflow_behavior="wrap") as lab_tabs:  # every tool one tap away on a phone
            with gr.Tab("Tutorial"):
                gr.Markdown(TUTORIAL)
                with gr.Row():
                    load_example = gr.Button("1. Load the example", min_width=120)
                    step_layer1 = gr.Button("Ablate layer 1", min_width=120)
                    step_prev = gr.Button("Ablate L0 H0", min_width=120)
                    step_control = gr.Button("Ablate L4 H2", min_width=120)
                    step_circuit = gr.Button("4. Find the circuit", min_width=120, elem_id="step-circuit")
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
                    lab_position = gr.Number(value=-1, precision=0, label="Position (-1 = last)", min_width=120)
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
                    lab_mode = gr.Radio(["zero", "mean"], value="zero", label="Ablation", scale=1, min_width=140)
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
                patch_task, patch_seed, patch_load = task_row()
                patch_clean = gr.Textbox(label="Clean prompt", value=PATCH_EXAMPLE[0], lines=2)
                patch_corrupted = gr.Textbox(
                    label="Corrupted prompt (the same number of tokens)", value=PATCH_EXAMPLE[1], lines=2
                )
                patch_answer_clean, patch_answer_corrupted, patch_set = answers_and_set()
                with gr.Row():
                    patch_btn = gr.Button("Patch exactly", variant="primary", elem_id="lab-patch-btn", min_width=140)
                    apatch_btn = gr.Button("Estimate by attribution", elem_id="lab-apatch-btn", min_width=140)
                    apatch_steps = gr.Radio(
                        [("integrated gradients (5 steps)", 5), ("one gradient (fastest)", 0)],
                        value=5,
                        label="Attribution",
                        min_width=220,
                    )
                lab_patch_resid = gr.Plot(
                    empty_plot("The residual stream patched per layer and position."),
                    label="Residual stream",
                    elem_id="lab-patch-resid",
                )
                with gr.Row(equal_height=False):
                    lab_patch_heads = gr.Plot(
                        empty_plot("Each head's output patched, exactly."),
                        label="Heads, exact",
                        elem_id="lab-patch-heads",
                        min_width=260,
                    )
                    lab_apatch_heads = gr.Plot(
                        empty_plot("Each head estimated by attribution, in one pass."),
                        label="Heads, by attribution",
                        elem_id="lab-apatch-heads",
                        min_width=260,
                    )
                lab_apatch_mlp = gr.Plot(
                    empty_plot("Each MLP estimated by attribution.", 200),
                    label="MLPs, by attribution",
                    elem_id="lab-apatch-mlp",
                )
            with gr.Tab("Circuit", id=CIRCUIT_PANEL, elem_id="lab-circuit-tab"):
                circ_task, circ_seed, circ_load = task_row()
                circ_clean = gr.Textbox(label="Clean prompt", lines=2, elem_id="circ-clean")
                circ_corrupted = gr.Textbox(label="Corrupted prompt (the same number of tokens)", lines=2)
                circ_answer_clean, circ_answer_corrupted, circ_set = answers_and_set()
                with gr.Row():
                    circ_edges = gr.Slider(5, 200, value=30, step=1, label="Edges kept", min_width=200)
                    circ_method = gr.Radio(
                        [("EAP-IG (5 steps)", "eap-ig"), ("EAP (one gradient)", "eap")],
                        value="eap-ig",
                        label="Edge scores",
                        min_width=200,
                    )
                circ_btn = gr.Button("Find the circuit", variant="primary", elem_id="lab-circuit-btn")
                with gr.Row(equal_height=False, elem_id="circuit-row"):
                    circ_graph = gr.Plot(
                        empty_plot("Load a task (or type a pair), then find its circuit.", 300),
                        label="Circuit",
                        elem_id="circuit-graph",
                        scale=3,
                        min_width=300,
                    )
                    circ_curve = gr.Plot(
                        empty_plot("Faithfulness against the number of edges kept.", 260),
                        label="Faithfulness",
                        elem_id="circuit-curve",
                        scale=2,
                        min_width=260,
                    )
        lab_export_btn = gr.Button("Export the lab's numbers (.json, .csv) and figures (.html)", elem_id="lab-export")
        lab_exports = downloads("Lab downloads", "lab-exports")
        circuit_nodes = gr.State([])  # the graph's nodes, in its order, for clicks on them

    return locals()
