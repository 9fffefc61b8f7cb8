"""app.py's handlers called directly, without a server: streaming, model switching, query selection."""

import gradio as gr

import app
from gpt2 import explorer as ex


def generate(prompt, max_new_tokens=6, session=None):
    return list(
        app.run_generation(prompt, ex.BUNDLED_NAME, max_new_tokens, 0, 0, 1.0, 0, True, session or app.EMPTY_SESSION)
    )


def test_generation_streams_token_by_token(monkeypatch):
    monkeypatch.setattr(app, "STREAM_INTERVAL_S", 0.0)
    updates = generate("ROMEO:\n", 6)
    texts = [u[0] for u in updates if isinstance(u[0], str)]
    assert texts[0] == "ROMEO:\n" and len(texts) >= 7  # the prompt, then one update per new token
    assert all(b.startswith(a) for a, b in zip(texts, texts[1:], strict=False))
    session, status = updates[-1][2], updates[-1][3]
    assert len(session["ids"]) == session["prompt_len"] + 6 and status.startswith("Done: 6 new tokens")


def test_fast_tokens_are_batched_into_fewer_redraws(monkeypatch):
    monkeypatch.setattr(app, "STREAM_INTERVAL_S", 3600.0)
    updates = generate("ROMEO:\n", 6)
    texts = [u[0] for u in updates if isinstance(u[0], str)]
    assert len(texts) == 3  # the prompt, the first token, and the complete text
    assert len(updates[-1][2]["ids"]) == updates[-1][2]["prompt_len"] + 6
    assert texts[-1] == generate("ROMEO:\n", 6)[-2][0]


def test_bad_input_gives_a_status_line_and_keeps_the_session():
    session = {"model": ex.BUNDLED_NAME, "ids": [1, 2, 3], "prompt_len": 2}
    (update,) = list(app.run_generation("   ", ex.BUNDLED_NAME, 5, 0, 0, 1.0, 0, True, session))
    assert update[2] is session and update[3].startswith("⚠") and "empty" in update[3]
    (update,) = list(app.run_generation("hi", ex.BUNDLED_NAME, 5, -2, 0, 1.0, 0, True, session))
    assert "temperature" in update[3]


def test_views_wait_for_text_and_then_render():
    assert all(
        isinstance(o, type(gr.skip()))
        for o in app.refresh_views(app.EMPTY_SESSION, None, False, False, False, "induction", -1)
    )
    session = generate("one two three one two three", 4)[-1][2]
    head_update, heatmap, note, grid, scores, chips, bars, status = app.refresh_views(
        session, None, False, False, False, "induction", -1
    )
    assert head_update["value"] == "0,0" and len(head_update["choices"]) == len(
        ex.head_choices(app._analysis(session)[1])
    )
    assert heatmap.data[0].type == "heatmap" and bars.data[0].type == "bar"
    assert len(chips) == len(session["ids"])


def test_switching_to_an_unreachable_model_stays_on_the_current_one(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_CACHE", "/nonexistent-cache")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", "/nonexistent-cache")
    choice, status = app.switch_model("gpt2-medium", {"model": ex.BUNDLED_NAME, "ids": [], "prompt_len": 0})
    assert choice == ex.BUNDLED_NAME
    assert status.startswith("⚠") and "could not be reached" in status and "Staying on" in status


def test_clicking_a_token_selects_the_query():
    session = generate("The king and the queen", 3)[-1][2]
    event = gr.SelectData(None, {"index": 2, "value": None})
    query, chips, bars, status = app.select_query(session, "0,0", False, False, event)
    assert query == 2 and status.startswith("Query: token 2")
    assert chips[2][0].startswith("[") and "next token after" in bars.layout.title.text


def test_tokens_outside_the_context_window_cannot_be_queried():
    session = generate("The king", 2)[-1][2]
    block = app.MODELS.get(ex.BUNDLED_NAME).config.block_size
    long_session = {**session, "ids": [464] * (block + 5) + session["ids"][-2:]}
    _, _, _, status = app.select_query(
        long_session, "0,0", False, False, gr.SelectData(None, {"index": 3, "value": None})
    )
    assert "outside the model's context window" in status
    query, _, _, status = app.select_query(
        long_session, "0,0", False, False, gr.SelectData(None, {"index": block + 6, "value": None})
    )
    assert query == block - 1 and status.startswith("Query:")
