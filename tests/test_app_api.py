"""The real app in a subprocess, driven through its named API endpoints with gradio_client."""

import pytest
import torch

from gpt2 import explorer as ex
from gpt2.tokenizer import get_tokenizer

gradio_client = pytest.importorskip("gradio_client")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(app_server):
    return gradio_client.Client(app_server, verbose=False)


def test_api_lists_the_named_endpoints(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/generate", "/attention"} <= set(endpoints)
    names = [p["parameter_name"] for p in endpoints["/generate"]["parameters"]]
    assert names == ["prompt", "model", "max_new_tokens", "temperature", "top_k", "top_p", "seed", "fast_decode"]


def test_greedy_generation_through_the_api_equals_the_library(client):
    prompt = "ROMEO:\nWhat light is this"
    text = client.predict(prompt, ex.BUNDLED_NAME, 24, 0.0, 0, 1.0, 0, api_name="/generate")
    model = ex.ModelStore().get(ex.BUNDLED_NAME)
    tok = get_tokenizer()
    ids = tok.encode(prompt)
    expected = model.generate(torch.tensor([ids]), 24, temperature=0)[0, len(ids) :].tolist()
    assert text == prompt + tok.decode(expected)


def test_seeded_sampling_is_repeatable_through_the_api(client):
    a = client.predict("The king", ex.BUNDLED_NAME, 12, 1.0, 40, 0.9, 123, api_name="/generate")
    b = client.predict("The king", ex.BUNDLED_NAME, 12, 1.0, 40, 0.9, 123, api_name="/generate")
    assert a == b and a.startswith("The king")


def test_attention_endpoint(client):
    prompt = "one two three one two three <b>x</b>"
    out = client.predict(prompt, ex.BUNDLED_NAME, 1, 2, api_name="/attention")
    tokens, attention = out["tokens"], out["attention"]
    assert "".join(tokens) == prompt
    assert len(attention) == len(tokens) and all(len(row) == len(tokens) for row in attention)
    for q, row in enumerate(attention):
        assert abs(sum(row) - 1) < 1e-4 and all(v == 0 for v in row[q + 1 :])


@pytest.mark.parametrize(
    "args, message",
    [
        (("", ex.BUNDLED_NAME, 10, 1.0, 0, 1.0, 0), "empty"),
        (("hi", "gpt-5", 10, 1.0, 0, 1.0, 0), "unknown model"),
        (("hi", ex.BUNDLED_NAME, 0, 1.0, 0, 1.0, 0), "max_new_tokens"),
        (("hi", ex.BUNDLED_NAME, 10, -1.0, 0, 1.0, 0), "temperature"),
        (("hi", ex.BUNDLED_NAME, 10, 1.0, 0, 2.0, 0), "top_p"),
        (("hi", ex.BUNDLED_NAME, 10, 1.0, 0, 1.0, 0, "yes"), "fast_decode"),
    ],
)
def test_generate_errors_are_clear(client, args, message):
    with pytest.raises(Exception, match=message):
        client.predict(*args, api_name="/generate")


def test_attention_errors_are_clear_and_the_server_keeps_serving(client):
    with pytest.raises(Exception, match="layer"):
        client.predict("hello", ex.BUNDLED_NAME, 99, 0, api_name="/attention")
    with pytest.raises(Exception, match="head"):
        client.predict("hello", ex.BUNDLED_NAME, 0, -1, api_name="/attention")
    assert client.predict("hello", ex.BUNDLED_NAME, 0, 0, api_name="/attention")["tokens"] == ["hello"]
