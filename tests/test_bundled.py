"""The bundled Shakespeare model: loads offline, generates, stays under the loss floor, and has the
interpretable heads its model card promises."""

import pytest
import torch

from gpt2 import BUNDLED_MODEL_DIR, GPT2, get_tokenizer
from gpt2.data import DEFAULT_DATA, read_corpus, split_tokens
from gpt2.loss import validation_loss
from gpt2.probes import head_score_table

LOSS_FLOOR = 5.2  # nats per token on the held-out last 10%


@pytest.fixture(scope="module")
def model():
    return GPT2.from_pretrained("shakespeare")


@pytest.fixture(scope="module")
def split():
    if not DEFAULT_DATA.is_file():
        pytest.skip(f"the Shakespeare corpus is not at {DEFAULT_DATA}")
    return split_tokens(read_corpus(None))


def test_checkpoint_is_small_and_complete():
    sizes = {path.name: path.stat().st_size for path in BUNDLED_MODEL_DIR.iterdir()}
    assert set(sizes) == {"config.json", "model.safetensors", "history.jsonl"}  # no snapshots
    assert sum(sizes.values()) <= 25_000_000 and sizes["history.jsonl"] <= 300_000


def test_loads_offline_in_float32_and_generates(model, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = model.config
    assert config.vocab_size == 50257 and config.num_layers >= 4 and config.num_heads >= 4
    assert model.wte.weight.dtype == torch.float32 and not model.training
    tok = get_tokenizer()
    out = model.generate(torch.tensor([tok.encode("ROMEO:\n")]), 30, temperature=0.8, top_k=50, seed=0)
    text = tok.decode(out[0].tolist())
    assert text.startswith("ROMEO:\n") and len(text) > 40


def test_validation_loss_is_under_the_floor(model, split):
    loss = validation_loss(model, split.val, model.config.block_size, max_windows=40)  # ~10k held-out tokens
    assert loss < LOSS_FLOOR


@pytest.fixture(scope="module")
def head_scores(model, split):
    return head_score_table(model, split, natural_tokens=1024)


def test_has_a_previous_token_head(head_scores):
    assert head_scores["previous-token"].max().item() >= 0.7


def test_has_an_induction_head(head_scores):
    assert head_scores["induction"].max().item() >= 0.5
