import math
import threading

import pytest
import torch

from gpt2 import capture_attention


def test_capture_gives_one_causal_map_per_layer(small_vocab_model):
    idx = torch.randint(0, 100, (2, 16))
    with capture_attention(small_vocab_model) as maps:
        small_vocab_model(idx)
    assert len(maps) == 3
    for attn_probs in maps:
        assert attn_probs.shape == (2, 4, 16, 16) and not attn_probs.requires_grad
        assert torch.allclose(attn_probs.sum(-1), torch.ones(2, 4, 16), atol=1e-6)
        above = torch.triu(torch.ones(16, 16, dtype=torch.bool), diagonal=1)
        assert (attn_probs[..., above] == 0).all()


def test_maps_equal_softmax_recomputed_from_the_weights(small_vocab_model):
    model = small_vocab_model
    idx = torch.randint(0, 100, (1, 10))
    with capture_attention(model) as maps, torch.no_grad():
        model(idx)
        x = model.wte(idx) + model.wpe(torch.arange(10))
        for layer, block in enumerate(model.blocks):
            h = block.ln_1(x)
            W, b = block.attn.c_attn.weight, block.attn.c_attn.bias  # (3C, C)
            C, H = 32, 4
            q = (h @ W[:C].T + b[:C]).view(1, 10, H, C // H).transpose(1, 2)
            k = (h @ W[C : 2 * C].T + b[C : 2 * C]).view(1, 10, H, C // H).transpose(1, 2)
            scores = q @ k.transpose(-1, -2) / math.sqrt(C // H)
            scores = scores.masked_fill(torch.triu(torch.ones(10, 10, dtype=torch.bool), 1), float("-inf"))
            assert torch.allclose(maps[layer], torch.softmax(scores, -1), atol=1e-6)
            x = block(x)


def test_rows_match_what_cached_generation_saw(small_vocab_model):
    model = small_vocab_model
    seen = {layer: [] for layer in range(3)}
    handles = [
        model.blocks[layer].attn.hook_pattern.register_forward_hook(
            lambda m, i, out, layer=layer: seen[layer].append(out.clone())
        )
        for layer in range(3)
    ]
    try:
        prompt = torch.randint(0, 100, (1, 5))
        out = model.generate(prompt, 8, temperature=0)
    finally:
        for handle in handles:
            handle.remove()
    with capture_attention(model) as maps:
        model(out[:, :-1])
    for layer in range(3):
        prefill, *steps = seen[layer]
        assert torch.allclose(maps[layer][:, :, :5, :5], prefill, atol=1e-6)
        for step, step_map in enumerate(steps):
            t = 5 + step  # query position of this step
            assert step_map.shape == (1, 4, 1, t + 1)
            assert torch.allclose(maps[layer][:, :, t, : t + 1], step_map[:, :, 0], atol=1e-6)


def test_hooks_are_removed_even_after_an_exception(small_vocab_model):
    with pytest.raises(RuntimeError, match="boom"):
        with capture_attention(small_vocab_model):
            raise RuntimeError("boom")
    assert not any(point.has_hooks() for _, point in small_vocab_model.hook_points())


def test_threads_capturing_at_once_see_only_their_own_maps(small_vocab_model):
    model = small_vocab_model
    prompts = {name: torch.randint(0, 100, (1, length)) for name, length in (("a", 12), ("b", 20))}
    with capture_attention(model) as reference_a:
        model(prompts["a"])
    with capture_attention(model) as reference_b:
        model(prompts["b"])
    references = {"a": [m.clone() for m in reference_a], "b": [m.clone() for m in reference_b]}
    barrier = threading.Barrier(2)
    failures = []

    def worker(name):
        try:
            for _ in range(30):
                with capture_attention(model) as maps:
                    barrier.wait(timeout=10)  # both threads hold hooks on the same modules now
                    model(prompts[name])
                for got, want in zip(maps, references[name], strict=True):
                    if got.shape != want.shape or not torch.allclose(got, want, atol=1e-6):
                        failures.append(name)
        except Exception as exc:  # noqa: BLE001 - reported below
            failures.append(repr(exc))

    threads = [threading.Thread(target=worker, args=(name,)) for name in prompts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_capture_works_on_a_bfloat16_model(tiny_model):
    model = tiny_model.to(torch.bfloat16)
    with torch.inference_mode(), capture_attention(model) as maps:
        model(torch.tensor([[1, 2, 3, 4]]))
    assert maps[0].shape == (1, 4, 4, 4) and torch.allclose(maps[0].float().sum(-1), torch.ones(()), atol=1e-3)
