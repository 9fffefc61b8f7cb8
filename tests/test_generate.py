import pytest
import torch

from gpt2 import GPT2, SamplingError, SamplingSettings


def greedy_without_cache(model, idx, steps):
    for _ in range(steps):
        window = idx[:, -model.config.block_size :]
        next_id = model(window)[:, -1].argmax(-1, keepdim=True)
        idx = torch.cat([idx, next_id], dim=1)
    return idx


def test_cached_greedy_equals_full_recompute(small_vocab_model):
    idx = torch.randint(0, 100, (2, 5))
    with torch.no_grad():
        expected = greedy_without_cache(small_vocab_model, idx, 20)
    assert torch.equal(small_vocab_model.generate(idx, 20, temperature=0), expected)


def test_generation_continues_past_block_size_on_the_last_window(small_vocab_model):
    idx = torch.randint(0, 100, (1, 30))  # block_size is 32
    out = small_vocab_model.generate(idx, 40, temperature=0)
    assert out.shape == (1, 70)
    with torch.no_grad():
        assert torch.equal(out, greedy_without_cache(small_vocab_model, idx, 40))
    long_prompt = torch.randint(0, 100, (1, 50))  # longer than the block: its last 32 tokens are used
    assert small_vocab_model.generate(long_prompt, 3, temperature=0).shape == (1, 53)


def test_seed_makes_sampling_repeatable(small_vocab_model):
    idx = torch.randint(0, 100, (1, 4))
    a = small_vocab_model.generate(idx, 30, temperature=1.0, seed=7)
    b = small_vocab_model.generate(idx, 30, temperature=1.0, seed=7)
    c = small_vocab_model.generate(idx, 30, temperature=1.0, seed=8)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_top_k_one_and_tiny_top_p_are_greedy(small_vocab_model):
    idx = torch.randint(0, 100, (1, 4))
    greedy = small_vocab_model.generate(idx, 15, temperature=0)
    assert torch.equal(small_vocab_model.generate(idx, 15, temperature=1.5, top_k=1, seed=0), greedy)
    assert torch.equal(small_vocab_model.generate(idx, 15, temperature=1.5, top_p=1e-6, seed=0), greedy)


def test_top_k_and_top_p_restrict_the_support():
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0]])
    gen = torch.Generator().manual_seed(0)
    from gpt2 import sample_next

    draws = {int(sample_next(logits, 1.0, top_k=2, generator=gen)) for _ in range(200)}
    assert draws == {0, 1}
    # softmax: 0.636, 0.234, 0.086, ... → top_p 0.8 keeps the first two tokens
    draws = {int(sample_next(logits, 1.0, top_p=0.8, generator=gen)) for _ in range(300)}
    assert draws == {0, 1}
    draws = {int(sample_next(logits, 1.0, top_k=4, top_p=0.95, generator=gen)) for _ in range(500)}
    assert draws == {0, 1, 2}


def test_stop_at_end_of_text():
    torch.manual_seed(0)
    model = GPT2(50257, 16, 2, 1, 16).eval()
    with torch.no_grad():
        model.lm_head.weight[50256] += 5 * model.ln_f.weight.sign()  # make <|endoftext|> very likely
        model.ln_f.bias.fill_(1.0)
    out = model.generate(torch.tensor([[1, 2]]), 10, temperature=0, stop_at_eot=True)
    assert out[0, -1].item() == 50256 and out.shape[1] < 12
    assert list(model.stream([1, 2], 10, temperature=0, stop_at_eot=True))[-1] == 50256


def test_stream_yields_the_same_tokens_as_generate(small_vocab_model):
    idx = torch.randint(0, 100, (1, 6))
    streamed = list(small_vocab_model.stream(idx[0].tolist(), 12, temperature=0.8, top_k=20, seed=3))
    generated = small_vocab_model.generate(idx, 12, temperature=0.8, top_k=20, seed=3)
    assert streamed == generated[0, 6:].tolist()


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(max_new_tokens=-1),
        dict(max_new_tokens=2.5),
        dict(temperature=-0.1),
        dict(temperature=float("nan")),
        dict(top_k=-1),
        dict(top_k=60000),
        dict(top_p=0.0),
        dict(top_p=1.5),
        dict(seed="abc"),
        dict(seed=-1),
        dict(top_k=1.5),
        dict(stop_at_eot="yes"),
    ],
)
def test_bad_settings_raise_sampling_error(kwargs):
    with pytest.raises(SamplingError) as info:
        SamplingSettings(**(dict(max_new_tokens=3) | kwargs))
    assert "\n" not in str(info.value)


def test_settings_normal_forms_and_form_values():
    assert SamplingSettings(top_k=0, top_p=1.0) == SamplingSettings(top_k=None, top_p=None)
    assert SamplingSettings.from_form(40.0, 0, 50.0, 1.0, 3.0) == SamplingSettings(40, 0, 50, None, 3)
    with pytest.raises(SamplingError, match="max_new_tokens"):
        SamplingSettings.from_form(2.5, 0.8, 50, None, None)
    defaults = SamplingSettings()
    assert (defaults.temperature, defaults.top_k, defaults.top_p) == (0.8, 50, None)


def test_zero_new_tokens_returns_the_prompt(small_vocab_model):
    idx = torch.randint(0, 100, (1, 4))
    assert torch.equal(small_vocab_model.generate(idx, 0), idx)
