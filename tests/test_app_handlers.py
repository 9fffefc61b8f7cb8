"""The app's handlers called directly, without a server: streaming, Stop, model switching, clicks on
tokens and heads, the lab's buttons. Each handler returns its outputs by component."""

import json
from pathlib import Path

import gradio as gr
import pytest

from gpt2.explorer import service, ui
from gpt2.explorer.models import BUNDLED_NAME, ModelStore
from gpt2.explorer.session import EMPTY_SESSION, Session
from gpt2.quantize import Int8Linear

DEMO = ui.build_demo()  # the components the handlers answer with


def generate(prompt, max_new_tokens=6, temperature=0):
    return list(ui.run_generation(prompt, BUNDLED_NAME, max_new_tokens, temperature, 0, 1.0, 0, True))


def last_session(updates) -> Session:
    return [u[ui.session_state] for u in updates if ui.session_state in u][-1]


def views(session, head="0,0", options=(), score="induction", query=None, run=ui.CLEAN, ablation=None):
    return ui.refresh_views(session, head, list(options), score, query, run, ablation)


def test_generation_streams_token_by_token_and_frees_the_buttons(monkeypatch):
    monkeypatch.setattr(ui.service, "STREAM_INTERVAL_S", 0.0)
    updates = generate("ROMEO:\n", 6)
    texts = [u[ui.output] for u in updates if ui.output in u]
    assert texts[0] == "ROMEO:\n" and len(texts) == 7  # the prompt, then one update per new token
    assert all(b.startswith(a) for a, b in zip(texts, texts[1:], strict=False))
    assert updates[0][ui.stop_btn]["interactive"] is True and updates[0][ui.generate_btn]["interactive"] is False
    final = updates[-1]
    assert final[ui.status_box].startswith("Done: 6 new tokens")
    assert final[ui.stop_btn]["interactive"] is False and final[ui.generate_btn]["interactive"] is True
    session = last_session(updates)
    assert len(session.ids) == session.prompt_len + 6 and session.generated == 6


def test_fast_tokens_are_batched_into_fewer_redraws(monkeypatch):
    monkeypatch.setattr(ui.service, "STREAM_INTERVAL_S", 3600.0)
    updates = generate("ROMEO:\n", 6)
    texts = [u[ui.output] for u in updates if ui.output in u]
    assert len(texts) == 3  # the prompt, the first token, and the complete text
    assert last_session(updates).generated == 6


def test_stop_reports_how_many_tokens_came():
    session = Session(BUNDLED_NAME, (1, 2, 3, 4, 5), 2)
    update = ui.stopped(session)
    assert update[ui.status_box] == "Stopped after 3 new tokens."
    assert update[ui.stop_btn]["interactive"] is False and update[ui.generate_btn]["interactive"] is True


def test_bad_input_is_a_status_line_and_a_warning(monkeypatch):
    warnings = []
    monkeypatch.setattr(gr, "Warning", warnings.append)
    (update,) = generate("   ")
    assert update[ui.status_box].startswith("⚠") and "empty" in update[ui.status_box] and ui.session_state not in update
    (update,) = generate("hi", temperature=-2)
    assert "temperature" in update[ui.status_box]
    assert len(warnings) == 2 and "empty" in warnings[0]


def test_a_long_prompt_is_cut_and_said_so():
    updates = generate("word " * 400, 2)
    assert updates[0][ui.output].startswith("✂ [") and "were cut" in updates[0][ui.status_box]
    session = last_session(updates)
    chips = updates[-2][ui.chips]
    assert chips[0][0].startswith("✂") and len(chips) == 257  # the marker, then the model's 256 tokens
    assert session.prompt_cut > 0 and len(session.window(256).ids) == 256


def test_views_wait_for_text_and_then_render():
    assert views(EMPTY_SESSION) == {}
    session = last_session(generate("one two three one two three", 4))
    out = views(session, head=None)
    assert out[ui.head_box]["value"] == "0,0" and len(out[ui.head_box]["choices"]) == 24
    assert "L0 H0" in out[ui.heatmap]["label"] and out[ui.query_state] == len(session.ids) - 1
    assert out[ui.next_tokens]["value"].type == "plotly" and len(out[ui.chips]) == len(session.ids)


def test_switching_to_an_unreachable_model_stays_on_the_current_one(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", "/nonexistent-cache")
    monkeypatch.setattr(gr, "Warning", lambda message: None)
    out = ui.switch_model("gpt2-medium", EMPTY_SESSION)
    status = out[ui.status_box]
    assert out[ui.model_box] == BUNDLED_NAME and status.startswith("⚠")
    assert (
        "could not be reached" in status
        and "hf download" in status
        and status.endswith("Staying on shakespeare (bundled)")
    )


def test_clicking_a_token_selects_the_query_and_marks_it():
    session = last_session(generate("The king and the queen", 3))
    out = ui.select_query(session, "0,0", [], ui.CLEAN, None, gr.SelectData(None, {"index": 2, "value": None}))
    assert out[ui.query_state] == 2 and out[ui.status_box].startswith("Query: token 2 ")
    assert out[ui.chips][2][1] == "query" and out[ui.attn_chips]["value"][2][0].startswith("[")
    assert out[ui.next_tokens]["label"] == "Next token after position 2"


def test_the_cut_marker_chip_is_not_a_query(monkeypatch):
    monkeypatch.setattr(gr, "Warning", lambda message: None)
    session = Session(BUNDLED_NAME, tuple([464] * 300), 300, prompt_cut=50)
    out = ui.select_query(session, "0,0", [], ui.CLEAN, None, gr.SelectData(None, {"index": 0, "value": None}))
    assert "✂ marker" in out[ui.status_box]
    out = ui.select_query(session, "0,0", [], ui.CLEAN, None, gr.SelectData(None, {"index": 256, "value": None}))
    assert out[ui.query_state] == 255 and out[ui.status_box].startswith("Query: token 255")


def test_clicks_in_the_plots_select_a_head_or_a_query():
    session = last_session(generate("sword crown honey winter tongue. sword crown honey winter tongue.", 2))
    args = (session, "0,0", [ui.MEAN_OPTION], "induction", 4, ui.CLEAN, None, "")
    out = ui.bridge_click("grid:1,2@123", *args)
    assert out[ui.head_box]["value"] == "1,2" and out[ui.options_box] == [] and "L1 H2" in out[ui.heatmap]["label"]
    assert out[ui.tabs].selected == ui.ATTENTION_TAB  # a click in the grid opens the head
    assert out[ui.attn_chips]["label"].startswith("What token 4 ")  # the query stays
    out = ui.bridge_click("heatmap:3,1@124", *args)  # the layer's mean: a query, no QK parts
    assert out[ui.query_state] == 3 and out[ui.qk_shown] is None and "one head" in str(out[ui.qk_plot]["value"])
    one_head = (session, "0,0", [], *args[3:])
    out = ui.bridge_click("heatmap:3,1@124", *one_head)  # a cell: the query, and why it attends to the key
    assert out[ui.query_state] == 3 and out[ui.qk_plot]["label"].startswith("Why L0 H0's query 3")
    assert "attends to key 1 " in out[ui.qk_plot]["label"] and out[ui.qk_shown].key == 1
    out = ui.bridge_click("heatmap:3,7@124", *one_head)  # a cell in the future: the query's last key
    assert out[ui.qk_shown].key == 3
    out = ui.bridge_click("lab-sweep:2,1@125", *args[:-1], "L1")
    assert out[ui.lab_heads_box] == "L1, L2H1"
    assert ui.bridge_click("lab-sweep:2,1@126", *args[:-1], "L1, L2H1")[ui.lab_heads_box] == "L1"


def test_the_lab_buttons():
    session = last_session(generate(ui.REPEATED_EXAMPLE, 2))
    out = ui.lab_loss_and_lens(session)
    assert "mean" in out[ui.lab_loss]["label"] and "Logit lens" in out[ui.lab_lens]["label"]
    out = ui.lab_attribute(session, -1, "", progress=lambda *a, **k: None)
    assert {ui.lab_direct, ui.lab_sweep, ui.lab_rest, ui.lab_rank} <= set(out)
    out = ui.lab_ablate(session, "L1", "zero", -1, "")
    ablation = out[ui.ablation_state]
    assert ablation.heads == ((1, 0), (1, 1), (1, 2), (1, 3)) and out[ui.run_box]["visible"] is True
    ablated_views = views(session, head="1,0", run=ui.ABLATED, ablation=ablation)
    assert "L1 H0" in ablated_views[ui.heatmap]["label"]
    # the head list names the roles of the run shown, as the map's title does
    switched = ui.update_head(session, "1,0", [], "induction", None, ui.ABLATED, ablation)
    label = dict((v, k) for k, v in switched[ui.head_box]["choices"])["1,0"]
    assert label.split(" (")[0] in switched[ui.heatmap]["label"]
    out = ui.lab_patch(*ui.PATCH_EXAMPLE, "", "", "", session, progress=lambda *a, **k: None)
    assert "Answers:" in out[ui.lab_status] and ui.lab_patch_resid in out


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda s: ui.lab_ablate(s, "L9", "zero", -1, ""), "layer 9 does not exist"),
        (lambda s: ui.lab_ablate(s, "L1", "half", -1, ""), "zero or mean"),
        (lambda s: ui.lab_attribute(s, 999, "", progress=lambda *a, **k: None), "position must be between"),
        (
            lambda s: ui.lab_patch("a b", "a b c", "", "", "", s, progress=lambda *a, **k: None),
            "clean has 2, corrupted 3",
        ),
        (lambda s: ui.lab_patch("a b", "a c", " b", "", "", s, progress=lambda *a, **k: None), "type both answers"),
        (lambda s: ui.lab_circuit("a b", "a c", " two words", " c", "", 30, "eap-ig", s), "is 2 tokens"),
        (lambda s: ui.lab_circuit("a b", "a c", "", "", "", 0, "eap-ig", s), "number of edges"),
        (lambda s: ui.lab_circuit("a b", "a c", "", "", "x | y | z", 30, "eap", s), "line 1 of the prompt set"),
        (lambda s: ui.load_task("sorting", 0, s), "unknown task"),
        (lambda s: ui.lab_loss_and_lens(EMPTY_SESSION), "generate some text first"),
    ],
)
def test_lab_errors_are_one_line(monkeypatch, call, message):
    monkeypatch.setattr(gr, "Warning", lambda message: None)
    session = Session(BUNDLED_NAME, (464, 5822, 290), 3)
    status = call(session)[ui.lab_status]
    assert status.startswith("⚠") and message in status and "\n" not in status


def test_exports_go_to_one_folder_per_session_that_goes_with_it():
    session = last_session(generate("<script>alert(1)</script> king", 3))
    visitor = gr.Request(session_hash="visitor-1")
    out = ui.export_attention(session, "0,1", [], None, request=visitor)
    files = [Path(f) for f in out[ui.exports]["value"]]
    assert [f.suffix for f in files] == [".npz", ".html"] and out[ui.exports]["visible"] is True
    folder = service.stores().exports.root / "visitor-1"
    assert all(f.is_file() and folder in f.parents for f in files)
    again = [Path(f) for f in ui.export_attention(session, "0,2", [], None, request=visitor)[ui.exports]["value"]]
    assert not files[1].exists() and again[1].is_file()  # a new export replaces the last one's files
    qk = ui.bridge_click("heatmap:5,2@1", session, "1,0", [], "induction", None, ui.CLEAN, None, "")[ui.qk_shown]
    with_qk = ui.export_attention(session, "1,0", [], 5, qk, request=visitor)[ui.exports]["value"]
    assert sorted(Path(f).name for f in with_qk)[-3:] == ["qk-parts.csv", "qk-parts.html", "qk-parts.json"]
    from gpt2.explorer.wiring import drop_exports

    drop_exports(visitor)
    assert not folder.exists()


def test_the_lab_exports_every_view_it_shows(monkeypatch):
    """Each lab tool's views join the export as they are shown, ablation and patching included; a new
    text clears the text's views (not patching's, which show their own prompts)."""
    warnings = []
    monkeypatch.setattr(gr, "Warning", warnings.append)
    session = last_session(generate(ui.REPEATED_EXAMPLE, 2))
    assert ui.export_lab(session, {})[ui.lab_status].startswith("⚠ run a Lab tool first") and warnings
    shown = ui.lab_loss_and_lens(session)[ui.lab_shown]
    shown = ui.lab_ablate(session, "L0H0", "zero", -1, "", shown)[ui.lab_shown]
    shown = ui.lab_patch(*ui.PATCH_EXAMPLE, "", "", "", session, shown, progress=lambda *a, **k: None)[ui.lab_shown]
    out = ui.export_lab(session, shown)
    names = sorted(Path(f).name for f in out[ui.lab_exports]["value"])
    stems = ["ablation-loss", "ablation-next-token", "logit-lens", "loss", "patching-heads", "patching-residual"]
    assert names == sorted(f"{stem}.{ext}" for stem in stems for ext in ("csv", "html", "json"))
    saved = json.loads(
        Path(next(f for f in out[ui.lab_exports]["value"] if f.endswith("ablation-loss.json"))).read_text()
    )
    assert "L0H0" in saved["title"] and saved["loss_after"] == shown["ablation-loss"].data["loss_after"]
    cleared = ui.clear_text_views(shown)
    assert sorted(cleared[ui.lab_shown]) == ["patching-heads", "patching-residual"]
    assert cleared[ui.exports]["visible"] is False and cleared[ui.lab_exports]["visible"] is False


def test_launch_bounds_the_sessions_gradio_keeps(monkeypatch):
    """Gradio keeps each session's last outputs until it holds `state_session_capacity` sessions;
    its default, 10,000, would let a busy Space grow by gigabytes."""
    seen = {}
    monkeypatch.setattr(DEMO, "launch", lambda **kwargs: seen.update(kwargs))
    ui.launch(DEMO)
    assert seen["state_session_capacity"] == ui.SESSIONS_KEPT <= 1000


def test_an_inaccurate_int8_is_not_used_and_the_status_says_so(monkeypatch):
    """A quantizer wrong on purpose: the calibration check catches it, the app generates with float32
    weights (the same tokens as float32), and its status line says why."""
    from gpt2 import precision

    monkeypatch.setattr(precision, "WIDE_MODEL_MIN_WIDTH", 128)
    forward = Int8Linear.forward
    monkeypatch.setattr(Int8Linear, "forward", lambda self, x: -3 * forward(self, x))
    monkeypatch.setattr(service.stores(), "models", ModelStore())
    updates = list(ui.run_generation("ROMEO:\n", BUNDLED_NAME, 5, 0, 0, 1.0, 0, True))
    status = updates[-1][ui.status_box]
    assert "fast decoding: not used: this CPU's int8 was not accurate" in status, status
    assert not any(isinstance(m, Int8Linear) for m in service.models().decoder(BUNDLED_NAME, True).modules())
    float_ids = list(ui.run_generation("ROMEO:\n", BUNDLED_NAME, 5, 0, 0, 1.0, 0, False))[-2][ui.session_state].ids
    assert updates[-2][ui.session_state].ids == float_ids


def test_the_models_own_heads_before_any_text(monkeypatch):
    """On page load, the All heads tab shows the model's own roles and the Weights tab its
    composition map and a passport, with no text; clicks open heads' passports."""
    monkeypatch.setattr(gr, "Warning", lambda message: None)
    out = ui.show_model_heads(BUNDLED_NAME, ui.MODEL_ROLES, "k", None, "", None, {})
    roles = out[ui.weights_shown]["model-roles"].data["labels"]
    assert roles[0][0] == "previous-token" and roles[1] == ["induction"] * 4
    assert out[ui.scores_plot]["label"].startswith("The model's own roles") and "L0 H0" in out[ui.card_md]
    shown = out[ui.weights_shown]
    no_text = (None, None, [], ui.MODEL_ROLES, None, ui.CLEAN, None, "", BUNDLED_NAME, "k", "0,0", "", shown)
    opened = ui.bridge_click("composition:0,4@1", *no_text)  # sender L0 H0, receiver L1 H0 (column 4)
    assert opened[ui.card_head]["value"] == "1,0" and opened[ui.card_md].startswith("### L1 H0 · induction")
    partners = opened[ui.weights_shown]["head-card"].data["partners"]
    first = partners[0]
    partner = ui.bridge_click("card-partners:0,0@2", *no_text[:-3], "1,0", "", shown)
    assert partner[ui.card_head]["value"] == f"{first['layer']},{first['head']}"
    from_roles = ui.bridge_click("scores:1,2@3", *no_text)  # a head of the roles map, no text yet
    assert from_roles[ui.tabs].selected == ui.WEIGHTS_TAB and from_roles[ui.card_head]["value"] == "1,2"
    assert ui.show_scores(None, BUNDLED_NAME, None, "induction")[ui.status_box].startswith("⚠ generate some text")
    files = ui.export_weights(BUNDLED_NAME, opened[ui.weights_shown])[ui.weights_exports]["value"]
    stems = {Path(f).stem for f in files}
    assert stems == {"model-roles", "composition", "head-card"} and len(files) == 9


def test_why_this_key_follows_the_text_and_goes_with_it():
    session = last_session(generate(ui.REPEATED_EXAMPLE, 2))
    chosen = ui.bridge_click("heatmap:15,5@1", session, "1,0", [], "induction", None, ui.CLEAN, None, "")
    assert (
        chosen[ui.query_tabs].selected == "why"
        and "reads keys from (K-composition): L0 H0" in chosen[ui.qk_plot]["label"]
    )
    matrix = ui.show_qk_matrix(session, chosen[ui.qk_shown], None)[ui.qk_matrix]
    assert "every pair of parts" in matrix["label"]
    token_click = ui.update_head(session, "1,1", [], "induction", 15, ui.CLEAN, None)
    assert token_click[ui.qk_shown] is None  # another head: the old cell's parts go
    cleared = ui.clear_text_views({})
    assert cleared[ui.qk_shown] is None


def test_the_circuit_of_the_induction_task(monkeypatch):
    """The tutorial's fourth step loads the induction task into the Circuit sub-tab; its circuit is a
    graph from the embeddings to the logits with a faithfulness curve; a head node opens the head."""
    out = ui.tutorial_circuit(30, "eap-ig", None, {})
    assert out[ui.lab_tabs].selected == "circuit" and out[ui.circ_clean] and out[ui.circ_answer_clean]
    nodes = out[ui.circuit_nodes]
    assert nodes[0] == "embed" and nodes[-1] == "logits" and "L0H0" in nodes
    graph = out[ui.lab_shown]["circuit"].data
    assert any(e["src"] == "L0H0" and e["dst"].startswith("L1") and e["input"] == "k" for e in graph["edges"])
    assert [n for n, _ in graph["curve"]][:3] == [5, 10, 20] and "faithfulness" in out[ui.lab_status]
    session = last_session(generate(ui.REPEATED_EXAMPLE, 2))
    args = (session, "0,0", [], "induction", None, ui.CLEAN, None, "", BUNDLED_NAME, "k", None, "", {}, nodes)
    opened = ui.bridge_click(f"circuit-graph:{nodes.index('L0H0')},0@1", *args)
    assert opened[ui.head_box]["value"] == "0,0" and opened[ui.tabs].selected == ui.ATTENTION_TAB
    assert ui.bridge_click("circuit-graph:0,3@2", *args) == {}  # an edge's hover point, not a node
    monkeypatch.setattr(gr, "Warning", lambda message: None)
    assert "embed is not a head" in ui.bridge_click("circuit-graph:0,0@3", *args)[ui.status_box]


def test_attribution_patching_beside_exact_patching():
    pair = (*ui.PATCH_EXAMPLE, "", "")
    shown = ui.lab_patch(*pair, "", None, {}, progress=lambda *a, **k: None)[ui.lab_shown]
    out = ui.lab_attribution_patch(*pair, "", 5, None, shown)
    assert "Pearson r = " in out[ui.lab_status] and ui.lab_apatch_heads in out
    other = ui.lab_attribution_patch(*pair, f"{ui.PATCH_EXAMPLE[0]} | {ui.PATCH_EXAMPLE[1]}", 0, None, shown)
    assert "Pearson" not in other[ui.lab_status]  # a prompt set is not the pair exact patching saw
    assert "one gradient" in other[ui.lab_status]


def test_a_change_of_score_shows_the_run_on_screen():
    """The score map follows the run shown (clean or ablated), as the head's other views do."""
    session = last_session(generate(ui.REPEATED_EXAMPLE, 2))
    ablation = ui.lab_ablate(session, "L1", "zero", -1, "")[ui.ablation_state]
    clean = ui.show_scores(session, BUNDLED_NAME, "1,0", "induction", ui.CLEAN, ablation)[ui.scores_plot]
    ablated = ui.show_scores(session, BUNDLED_NAME, "1,0", "induction", ui.ABLATED, ablation)[ui.scores_plot]
    assert clean["value"].plot != ablated["value"].plot
    via_head = ui.update_head(session, "1,0", [], "induction", None, ui.ABLATED, ablation)[ui.scores_plot]
    assert via_head["value"].plot == ablated["value"].plot
