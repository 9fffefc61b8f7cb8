"""Every event of the page wired to its handler: `wire` runs once `layout.build` has filled in
`widgets.w`."""

import gradio as gr

from . import api, service
from .attention_tab import export_attention, refresh_views, select_query, show_qk_matrix, update_head
from .circuit_tab import lab_attribution_patch, lab_circuit, lab_patch, load_task, tutorial_circuit
from .clicks import bridge_click
from .generation_tab import clear_text_views, lab_text_plots, loss_chips, run_generation, stopped, switch_model
from .heads_tab import export_weights, show_card, show_composition, show_model_heads, show_scores
from .lab_tab import export_lab, lab_ablate, lab_attribute, lab_loss_and_lens, tutorial_step
from .texts import REPEATED_EXAMPLE
from .training_tab import replay_text, show_head_lines, show_step, show_training
from .widgets import w


def wire(demo: gr.Blocks) -> None:
    """Every event to its handler (the components are `w`'s)."""

    view_inputs = [w.session_state, w.head_box, w.options_box, w.score_name, w.query_state, w.run_box, w.ablation_state]
    attention_outputs = [w.heatmap, w.attn_chips, w.next_tokens, w.chips]
    qk_outputs = [w.qk_plot, w.qk_shown]
    view_outputs = [w.head_box, w.query_state, *attention_outputs, w.grid, w.scores_plot, *qk_outputs, w.status_box]
    model_heads = dict(
        inputs=[w.model_box, w.score_name, w.comp_mode, w.card_head, w.card_tokens, w.session_state, w.weights_shown],
        outputs=[
            w.scores_plot,
            w.comp_plot,
            w.card_head,
            w.card_md,
            w.card_partners,
            w.weights_shown,
            w.weights_status,
        ],
    )
    private = dict(api_visibility="private")

    text_views = [
        w.query_state,
        w.ablation_state,
        w.run_box,
        w.heatmap,
        w.attn_chips,
        w.next_tokens,
        w.grid,
        w.scores_plot,
    ]
    text_views += [*lab_text_plots(), w.exports, w.lab_exports, w.lab_shown, w.qk_plot, w.qk_matrix, w.qk_shown]
    generation = w.generate_btn.click(clear_text_views, [w.lab_shown], text_views, **private).then(
        run_generation,
        inputs=[w.prompt, w.model_box, w.max_new_tokens, w.temperature, w.top_k, w.top_p, w.seed, w.fast_decode],
        outputs=[w.output, w.chips, w.session_state, w.status_box, w.generate_btn, w.stop_btn],
        **private,
    )
    generation.then(refresh_views, view_inputs, view_outputs, **private)
    # a new text: the Training tab's replay, where there is one, redrawn on it
    replay = dict(inputs=[w.model_box, w.train_step, w.train_head, w.train_score, w.session_state], **private)
    replay["outputs"] = [w.train_heatmap, w.train_grid, w.train_heads_plot, w.training_status, w.train_step]
    generation.then(replay_text, **replay)
    # cancel first, then count: the last tokens streamed before the cancel took effect are in the session
    w.stop_btn.click(None, cancels=[generation], **private).then(
        stopped, [w.session_state], [w.status_box, w.generate_btn, w.stop_btn], **private
    ).then(refresh_views, view_inputs, view_outputs, **private).then(replay_text, **replay)
    training = dict(
        fn=show_training,
        inputs=[w.model_box, w.train_score, w.session_state],
        outputs=[w.training_status, w.training_md, w.train_loss_plot, w.train_icl_plot, w.train_heads_plot]
        + [w.replay, w.train_step, w.train_head, w.train_heatmap, w.train_grid],
    )
    # .select, not .input: Gradio's dropdown sends .input twice for one choice (two runs, two toasts)
    w.model_box.select(switch_model, [w.model_box, w.session_state], [w.model_box, w.status_box], **private).then(
        show_model_heads, **model_heads, **private
    ).then(**training, **private)
    gr.on(
        [w.head_box.input, w.options_box.input, w.run_box.input],
        update_head,
        view_inputs,
        [w.head_box, *attention_outputs, w.grid, w.scores_plot, *qk_outputs, w.status_box],
        **private,
    )
    w.score_name.input(
        show_scores,
        [w.session_state, w.model_box, w.head_box, w.score_name, w.run_box, w.ablation_state],
        [w.scores_plot, w.status_box],
        **private,
    )
    w.chips.select(
        select_query,
        [w.session_state, w.head_box, w.options_box, w.run_box, w.ablation_state],
        [w.query_state, w.status_box, *attention_outputs, *qk_outputs],
        **private,
    )
    w.qk_matrix_btn.click(
        show_qk_matrix, [w.session_state, w.qk_shown, w.ablation_state], [w.qk_matrix, w.status_box], **private
    )
    card_inputs = [w.model_box, w.comp_mode, w.card_head, w.card_tokens, w.weights_shown]
    card_outputs = [w.comp_plot, w.card_head, w.card_md, w.card_partners, w.weights_shown, w.weights_status]
    w.bridge.change(
        bridge_click,
        [
            w.bridge,
            w.session_state,
            w.head_box,
            w.options_box,
            w.score_name,
            w.query_state,
            w.run_box,
            w.ablation_state,
            w.lab_heads_box,
            *card_inputs,
            w.circuit_nodes,
        ],
        [w.head_box, w.options_box, w.query_state, w.status_box, *attention_outputs, w.grid, w.scores_plot]
        + [*qk_outputs, w.query_tabs, w.lab_heads_box, w.tabs, *card_outputs],
        **private,
    )
    w.colour_by_loss.input(
        loss_chips, [w.session_state, w.colour_by_loss, w.query_state], [w.chips, w.status_box], **private
    )

    heavy = dict(concurrency_id="lab", concurrency_limit=2, **private)  # the lab's tools share 2 workers
    w.loss_btn.click(
        lab_loss_and_lens, [w.session_state, w.lab_shown], [w.lab_loss, w.lab_lens, w.lab_status, w.lab_shown], **heavy
    )
    w.attr_btn.click(
        lab_attribute,
        [w.session_state, w.lab_position, w.lab_target, w.lab_shown],
        [w.lab_direct, w.lab_rest, w.lab_sweep, w.lab_rank, w.lab_status, w.lab_shown],
        **heavy,
    )
    ablate_inputs = [w.session_state, w.lab_heads_box, w.lab_mode, w.lab_position, w.lab_target, w.lab_shown]
    ablate_outputs = [w.ablation_state, w.lab_ablate_loss, w.lab_ablate_bars, w.lab_status, w.run_box, w.lab_shown]
    w.ablate_btn.click(lab_ablate, ablate_inputs, ablate_outputs, **heavy)
    for button, heads_text in ((w.step_layer1, "L1"), (w.step_prev, "L0H0"), (w.step_control, "L4H2")):
        button.click(
            lambda text=heads_text: tutorial_step(text), outputs=[w.lab_heads_box, w.lab_mode], **private
        ).then(lab_ablate, ablate_inputs, ablate_outputs, **heavy)
    w.load_example.click(lambda: REPEATED_EXAMPLE, outputs=w.prompt, **private).then(
        lambda: None, js="() => document.querySelector('#generate').click()", **private
    )
    wire_pairs(heavy, private)
    w.export_btn.click(
        export_attention,
        [w.session_state, w.head_box, w.options_box, w.query_state, w.qk_shown],
        [w.exports, w.status_box],
        **private,
    )
    w.lab_export_btn.click(export_lab, [w.session_state, w.lab_shown], [w.lab_exports, w.lab_status], **private)

    # with --model checkpoints in the list, then the chosen model's heads (no text needed)
    demo.load(lambda: gr.update(choices=service.models().choices()), outputs=w.model_box, **private).then(
        show_model_heads, **model_heads, **private
    ).then(**training, **private)
    for event in (w.train_step.release, w.train_head.select):
        event(show_step, **replay).then(**scroll_to("#train-heatmap"), **private)
    w.train_score.input(
        show_head_lines, [w.model_box, w.train_score, w.train_step], [w.train_heads_plot, w.training_status], **private
    )
    w.comp_mode.input(
        show_composition,
        [w.model_box, w.comp_mode, w.card_head, w.weights_shown],
        [w.comp_plot, w.weights_shown, w.weights_status],
        **private,
    )
    card = [w.model_box, w.comp_mode, w.card_head, w.card_tokens, w.session_state, w.weights_shown]
    gr.on([w.card_head.select, w.card_tokens.submit], show_card, card, card_outputs, **private)
    w.weights_export_btn.click(
        export_weights, [w.model_box, w.weights_shown], [w.weights_exports, w.weights_status], **private
    )

    demo.unload(drop_exports)  # a session's downloads go with it

    gr.api(api.api_generate, api_name="generate")
    gr.api(api.api_attention, api_name="attention")
    lab_group = dict(concurrency_id=heavy["concurrency_id"], concurrency_limit=heavy["concurrency_limit"])
    gr.api(api.api_loss, api_name="loss", **lab_group)
    gr.api(api.api_logit_lens, api_name="logit_lens", **lab_group)
    gr.api(api.api_head_effects, api_name="head_effects", **lab_group)
    gr.api(api.api_ablate, api_name="ablate", **lab_group)
    gr.api(api.api_patch, api_name="patch", **lab_group)
    gr.api(api.api_qk_attribution, api_name="qk_attribution")
    gr.api(api.api_composition, api_name="composition")
    gr.api(api.api_head_roles, api_name="head_roles")
    gr.api(api.api_head_card, api_name="head_card")
    gr.api(api.api_attribute, api_name="attribute", **lab_group)
    gr.api(api.api_circuit, api_name="circuit", **lab_group)
    gr.api(api.api_task, api_name="task")
    gr.api(api.api_history, api_name="history")


def drop_exports(request: gr.Request):
    service.stores().exports.drop(request.session_hash)


def scroll_to(selector: str) -> dict:
    """An event step that brings a result below the Lab's inputs into view, as the page's script
    brings a click's answer (`revealAnswer` in assets/explorer.js)."""
    return dict(fn=None, js=f"() => window.revealAnswer?.('{selector}')")


def wire_pairs(heavy: dict, private: dict) -> None:
    """The Lab's pairs of prompts: exact and attribution patching, the circuit, the task presets."""
    patch_pair = [w.patch_clean, w.patch_corrupted, w.patch_answer_clean, w.patch_answer_corrupted, w.patch_set]
    circuit_pair = [w.circ_clean, w.circ_corrupted, w.circ_answer_clean, w.circ_answer_corrupted, w.circ_set]
    w.patch_btn.click(
        lab_patch,
        [*patch_pair, w.session_state, w.lab_shown],
        [w.lab_patch_resid, w.lab_patch_heads, w.lab_status, w.lab_shown],
        **heavy,
    ).then(**scroll_to("#lab-patch-heads"), **private)
    w.apatch_btn.click(
        lab_attribution_patch,
        [*patch_pair, w.apatch_steps, w.session_state, w.lab_shown],
        [w.lab_apatch_heads, w.lab_apatch_mlp, w.lab_status, w.lab_shown],
        **heavy,
    ).then(**scroll_to("#lab-patch-heads"), **private)
    find = dict(
        fn=lab_circuit,
        inputs=[*circuit_pair, w.circ_edges, w.circ_method, w.session_state, w.lab_shown],
        outputs=[w.circ_graph, w.circ_curve, w.circuit_nodes, w.lab_status, w.lab_shown],
    )
    show_graph = scroll_to("#circuit-graph")
    w.circ_btn.click(**find, **heavy).then(**show_graph, **private)
    w.circ_load.click(
        lambda task, seed, session: load_task(task, seed, session, "circuit"),
        [w.circ_task, w.circ_seed, w.session_state],
        [*circuit_pair, w.lab_status],
        **private,
    )
    w.patch_load.click(
        lambda task, seed, session: load_task(task, seed, session, "patching"),
        [w.patch_task, w.patch_seed, w.session_state],
        [*patch_pair, w.lab_status],
        **private,
    )
    w.step_circuit.click(
        tutorial_circuit,
        [w.circ_edges, w.circ_method, w.session_state, w.lab_shown],
        [*circuit_pair, w.lab_tabs, *find["outputs"]],
        **heavy,
    ).then(**show_graph, **private)
