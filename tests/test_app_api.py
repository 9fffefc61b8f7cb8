"""The real app in a subprocess, driven through its named API endpoints with gradio_client."""

import pytest
import torch

from gpt2 import GPT2
from gpt2.explorer.models import BUNDLED_NAME
from gpt2.history import read_history
from gpt2.paths import BUNDLED_MODEL_DIR
from gpt2.tokenizer import get_tokenizer

gradio_client = pytest.importorskip("gradio_client")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(app_server):
    return gradio_client.Client(app_server, verbose=False)


def test_api_lists_the_named_endpoints(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    expected = {"/generate", "/attention", "/loss", "/logit_lens", "/head_effects", "/ablate", "/patch", "/history"}
    assert expected <= set(endpoints)
    names = [p["parameter_name"] for p in endpoints["/generate"]["parameters"]]
    assert names == ["prompt", "model", "max_new_tokens", "temperature", "top_k", "top_p", "seed", "fast_decode"]


def test_greedy_generation_through_the_api_equals_the_library(client):
    prompt = "ROMEO:\nWhat light is this"
    text = client.predict(prompt, BUNDLED_NAME, 24, 0.0, 0, 1.0, 0, api_name="/generate")
    model = GPT2.from_pretrained("shakespeare")
    tok = get_tokenizer()
    ids = tok.encode(prompt)
    expected = model.generate(torch.tensor([ids]), 24, temperature=0)[0, len(ids) :].tolist()
    assert text == prompt + tok.decode(expected)


def test_seeded_sampling_is_repeatable_through_the_api(client):
    a = client.predict("The king", BUNDLED_NAME, 12, 1.0, 40, 0.9, 123, api_name="/generate")
    b = client.predict("The king", BUNDLED_NAME, 12, 1.0, 40, 0.9, 123, api_name="/generate")
    assert a == b and a.startswith("The king")


def test_attention_endpoint(client):
    prompt = "one two three one two three <b>x</b>"
    out = client.predict(prompt, BUNDLED_NAME, 1, 2, api_name="/attention")
    tokens, attention = out["tokens"], out["attention"]
    assert "".join(tokens) == prompt
    assert len(attention) == len(tokens) and all(len(row) == len(tokens) for row in attention)
    for q, row in enumerate(attention):
        assert abs(sum(row) - 1) < 1e-4 and all(v == 0 for v in row[q + 1 :])


@pytest.mark.parametrize(
    "args, message",
    [
        (("", BUNDLED_NAME, 10, 1.0, 0, 1.0, 0), "empty"),
        (("hi", "gpt-5", 10, 1.0, 0, 1.0, 0), "unknown model"),
        (("hi", BUNDLED_NAME, 0, 1.0, 0, 1.0, 0), "max_new_tokens"),
        (("hi", BUNDLED_NAME, 10, -1.0, 0, 1.0, 0), "temperature"),
        (("hi", BUNDLED_NAME, 10, 1.0, 0, 2.0, 0), "top_p"),
        (("hi", BUNDLED_NAME, 10, 1.0, 0, 1.0, 0, "yes"), "fast_decode"),
    ],
)
def test_generate_errors_are_clear(client, args, message):
    with pytest.raises(Exception, match=message):
        client.predict(*args, api_name="/generate")


def test_attention_errors_are_clear_and_the_server_keeps_serving(client):
    with pytest.raises(Exception, match="layer"):
        client.predict("hello", BUNDLED_NAME, 99, 0, api_name="/attention")
    with pytest.raises(Exception, match="head"):
        client.predict("hello", BUNDLED_NAME, 0, -1, api_name="/attention")
    assert client.predict("hello", BUNDLED_NAME, 0, 0, api_name="/attention")["tokens"] == ["hello"]


REPEATED = "sword crown honey winter tongue lamb night castle bread river. sword crown honey winter tongue lamb night castle bread river."


def test_loss_and_logit_lens_endpoints(client):
    loss = client.predict(REPEATED, BUNDLED_NAME, api_name="/loss")
    T = len(loss["tokens"])
    assert "".join(loss["tokens"]) == REPEATED and len(loss["loss"]) == T - 1
    assert sum(loss["loss"][T // 2 :]) / (T - 1 - T // 2) < 3 < sum(loss["loss"][1 : T // 2]) / (T // 2 - 1)
    lens = client.predict(REPEATED, BUNDLED_NAME, api_name="/logit_lens")
    assert lens["layers"] == ["embed", "L0", "L1", "L2", "L3", "L4", "L5"] and lens["tokens"] == loss["tokens"]
    assert len(lens["top_token"]) == len(lens["top_prob"]) == 7 and all(len(row) == T for row in lens["top_prob"])


def test_head_effects_ablate_and_patch_endpoints(client):
    effects = client.predict(REPEATED, BUNDLED_NAME, 12, "", api_name="/head_effects")  # after the second " crown"
    assert effects["position"] == 12 and effects["target"] == " honey"
    assert len(effects["direct"]) == len(effects["ablation"]) == 6 and len(effects["ablation"][1]) == 4
    assert min(effects["ablation"][1]) < -1  # the induction heads carry the copy
    ablated = client.predict(REPEATED, BUNDLED_NAME, "L1", "zero", api_name="/ablate")
    assert len(ablated["loss_before"]) == len(ablated["loss_after"]) == len(ablated["tokens"]) - 1
    assert sum(ablated["loss_after"][-10:]) - sum(ablated["loss_before"][-10:]) > 30
    assert len(ablated["top_before"]) == 10 and isinstance(ablated["top_after"][0][1], float)
    clean, corrupted = REPEATED[:-8] + " river", REPEATED[:-8] + " night"
    patched = client.predict(clean, corrupted, BUNDLED_NAME, api_name="/patch")
    assert len(patched["resid"]) == 6 and len(patched["resid"][0]) == len(get_tokenizer().encode(clean))
    assert patched["answer_clean"] != patched["answer_corrupted"] and len(patched["heads"][0]) == 4


@pytest.mark.parametrize(
    "args, api, message",
    [
        (("a b", "a b c", BUNDLED_NAME), "/patch", "clean has 2, corrupted 3"),
        ((REPEATED, BUNDLED_NAME, "L7", "zero"), "/ablate", "layer 7 does not exist"),
        ((REPEATED, BUNDLED_NAME, "L0H9", "zero"), "/ablate", "head 9 does not exist"),
        ((REPEATED, BUNDLED_NAME, "L1", "half"), "/ablate", "zero or mean"),
        ((REPEATED, BUNDLED_NAME, -1, " two words"), "/head_effects", "is 2 tokens"),
        ((REPEATED, BUNDLED_NAME, 500, ""), "/head_effects", "position must be between"),
        (("", BUNDLED_NAME), "/loss", "empty"),
    ],
)
def test_lab_errors_are_clear(client, args, api, message):
    with pytest.raises(Exception, match=message):
        client.predict(*args, api_name=api)


def test_a_callers_mistake_leaves_one_line_in_the_server_log(client, app_process):
    with pytest.raises(Exception, match="empty"):
        client.predict("", BUNDLED_NAME, api_name="/loss")
    log = app_process.log.read_text()
    assert "API request refused: the prompt is empty" in log and "Traceback" not in log, log[-3000:]


def test_heads_explained_endpoints(client):
    """Why a key wins (the parts sum to the score), composition, the model's own roles and a head card."""
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    names = [p["parameter_name"] for p in endpoints["/qk_attribution"]["parameters"]]
    assert names == ["prompt", "model", "layer", "head", "query", "key"]
    cell = client.predict(REPEATED, BUNDLED_NAME, 1, 0, 15, 5, api_name="/qk_attribution")
    assert abs(sum(map(sum, cell["matrix"])) - cell["score"]) < 1e-3 and len(cell["labels"]) == len(cell["key"])
    contrast = dict(zip(cell["labels"], cell["key_contrast"], strict=True))
    assert max(contrast, key=contrast.get) == "L0H0"  # the previous-token head makes the induction key win
    scores = client.predict(BUNDLED_NAME, "k", api_name="/composition")["scores"]
    assert len(scores) == 6 and len(scores[0][0]) == 6 and scores[1][0][0][0] == 0  # no layer reads a later one
    roles = client.predict(BUNDLED_NAME, api_name="/head_roles")
    assert roles["labels"][0][0] == "previous-token" and roles["labels"][1] == ["induction"] * 4
    assert set(roles["scores"]) >= {"previous-token", "duplicate-token", "induction", "sink", "copying"}
    card = client.predict(BUNDLED_NAME, 1, 0, " king", api_name="/head_card")
    assert card["role"] == "induction" and -1 <= card["copying"] <= 1 and card["ov"][0]["token"] == "␣king"
    assert any(p["layer"] == 0 and p["head"] == 0 for p in card["partners"])


@pytest.mark.parametrize(
    "args, api, message",
    [
        ((REPEATED, BUNDLED_NAME, 1, 0, 5, 15), "/qk_attribution", "key 15 comes after query 5"),
        ((REPEATED, BUNDLED_NAME, 1, 7, 5, 1), "/qk_attribution", "head must be between 0 and 3"),
        ((REPEATED, BUNDLED_NAME, 9, 0, 5, 1), "/qk_attribution", "layer must be between 0 and 5"),
        ((BUNDLED_NAME, "w"), "/composition", "unknown composition mode 'w'"),
        ((BUNDLED_NAME, 1, 9, ""), "/head_card", "head must be between 0 and 3"),
    ],
)
def test_heads_explained_errors_are_one_line(client, args, api, message):
    with pytest.raises(Exception, match=message):
        client.predict(*args, api_name=api)


def test_circuit_endpoints(client):
    """A task's pair, exact and attribution patching with typed answers, and its circuit."""
    task = client.predict(BUNDLED_NAME, "induction", 2, api_name="/task")
    pair = (task["clean"], task["corrupted"], BUNDLED_NAME, task["answer_clean"], task["answer_corrupted"])
    exact = client.predict(*pair, api_name="/patch")
    assert exact["answer_clean"] == task["answer_clean"] and exact["answer_corrupted"] == task["answer_corrupted"]
    estimate = client.predict(*pair, 5, api_name="/attribute")
    assert (estimate["answer_clean"], estimate["answer_corrupted"]) == (task["answer_clean"], task["answer_corrupted"])
    assert (
        len(estimate["heads"]) == 6
        and len(estimate["mlp"]) == 6
        and len(estimate["resid"][0]) == len(exact["resid"][0])
    )
    circuit = client.predict(*pair, 30, "eap-ig", api_name="/circuit")
    assert circuit["answer_clean"] == task["answer_clean"]  # the token's own text, as /patch gives it
    assert circuit["nodes"][0] == "embed" and circuit["nodes"][-1] == "logits" and 0.8 <= circuit["faithfulness"] <= 1.1
    assert {"from", "to", "input", "score"} == set(circuit["edges"][0])
    assert any(e["from"] == "L0H0" and e["to"].startswith("L1") and e["input"] == "k" for e in circuit["edges"])
    assert [n for n, _ in circuit["curve"]][:3] == [5, 10, 20]


@pytest.mark.parametrize(
    "args, api, message",
    [
        (("a b", "a c", BUNDLED_NAME, " two words", " c"), "/patch", "is 2 tokens"),
        (("a b", "a c", BUNDLED_NAME, " b", ""), "/attribute", "type both answers"),
        (("a b", "a b c", BUNDLED_NAME, "", ""), "/attribute", "clean has 2, corrupted 3"),
        (("a b", "a c", BUNDLED_NAME, "", "", 0, "eap-ig"), "/circuit", "number of edges"),
        (("a b", "a c", BUNDLED_NAME, "", "", 30, "magic"), "/circuit", "unknown method"),
        ((BUNDLED_NAME, "sorting", 0), "/task", "unknown task"),
    ],
)
def test_circuit_errors_are_one_line(client, args, api, message):
    with pytest.raises(Exception, match=message):
        client.predict(*args, api_name=api)


def test_history_endpoint_serves_the_rows_as_written(client):
    rows = client.predict(BUNDLED_NAME, api_name="/history")["rows"]
    assert rows == read_history(BUNDLED_MODEL_DIR)
    assert rows[0]["step"] == 0 and len(rows[0]["induction"]) == 6 and len(rows[0]["induction"][0]) == 4
    with pytest.raises(Exception, match="gpt2 has no training history: it comes from the Hugging Face Hub"):
        client.predict("gpt2", api_name="/history")
