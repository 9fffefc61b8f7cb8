"""Int8 decoding is right on the CPU that runs the tests, whatever path it takes there: each layer
stays close to float32, the calibration check catches an int8 that is not accurate and falls back,
and stepping token by token (as decoding does) the copy's next-token distributions match float32's
on the bundled model and on GPT-2 small's shape with large activation features. The path the
machine took is printed at the end of the test run."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT, report

from gpt2 import GPT2, get_tokenizer, hooks, run_with_cache
from gpt2.data import DEFAULT_DATA, read_corpus, split_tokens
from gpt2.precision import int8_kernel_available
from gpt2.quantize import MAX_MEAN_KL, MIN_TOP1_AGREEMENT, Int8Linear, decoding_agreement, quantize_int8

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from outliers import with_outlier_features  # noqa: E402

pytestmark = pytest.mark.skipif(not int8_kernel_available(), reason="this PyTorch has no FBGEMM int8 kernel")


@pytest.fixture(scope="module")
def bundled():
    model = GPT2.from_pretrained("shakespeare")
    quantized = quantize_int8(model)
    report(f"int8 decoding on this CPU, bundled model: {quantized.decoding.summary} ({quantized.decoding})")
    return model, quantized


@pytest.mark.parametrize("rows", [1, 3, 40])  # a decode step, a few rows, a prompt (float32 weights)
def test_int8_linear_matches_float32(rows, bundled):
    bits = bundled[1].decoding.activation_bits or pytest.skip("int8 is not accurate on this CPU: float32 is used")
    torch.manual_seed(0)
    linear = torch.nn.Linear(96, 200)
    quantized = Int8Linear(linear.weight, linear.bias, bits)
    x = torch.randn(2, rows, 96)
    expected, got = linear(x), quantized(x)
    assert got.shape == expected.shape == (2, rows, 200) and got.dtype == torch.float32
    error = ((got - expected).norm() / expected.norm()).item()
    assert error < 0.03, f"{bits}-bit activations: relative error {error:.3f}"  # int8 products: about 1%
    assert torch.allclose(quantized.dequantized(), linear.weight, atol=linear.weight.abs().max().item() / 127)


def test_quantizing_copies_and_leaves_the_original_alone():
    model = GPT2.from_pretrained("shakespeare")
    before = {name: p.clone() for name, p in model.state_dict().items()}
    quantized = quantize_int8(model)
    assert all(torch.equal(before[name], p) for name, p in model.state_dict().items())
    assert isinstance(model.blocks[0].attn.c_attn, torch.nn.Linear) and model.lm_head.weight is model.wte.weight
    assert quantized.wte.weight is model.wte.weight  # the embedding lookup keeps the float rows, shared
    if quantized.decoding.activation_bits:
        assert isinstance(quantized.blocks[1].mlp.c_fc, Int8Linear) and isinstance(quantized.lm_head, Int8Linear)
        assert quantized.blocks[1].mlp.c_fc.weight.data_ptr() == model.blocks[1].mlp.c_fc.weight.data_ptr()


def _garbled(forward, bits_wrong):
    """A wrong quantizer on purpose: Int8Linear's forward, flipped in sign with these activation bits."""

    def wrong(self, x):
        y = forward(self, x)
        return -3 * y if self.activation_bits in bits_wrong else y

    return wrong


def test_calibration_falls_back_to_seven_bits_when_eight_are_wrong(monkeypatch):
    model = GPT2.from_pretrained("shakespeare")
    monkeypatch.setattr(Int8Linear, "forward", _garbled(Int8Linear.forward, {8}))
    quantized = quantize_int8(model)
    assert quantized.decoding.activation_bits == 7 and quantized.decoding.summary == "int8, 7-bit activations"
    assert isinstance(quantized.lm_head, Int8Linear) and quantized.lm_head.activation_bits == 7


def test_calibration_falls_back_to_float32_when_no_int8_is_accurate(monkeypatch):
    model = GPT2.from_pretrained("shakespeare")
    monkeypatch.setattr(Int8Linear, "forward", _garbled(Int8Linear.forward, {7, 8}))
    quantized = quantize_int8(model)
    check = quantized.decoding
    assert check.activation_bits is None and check.mean_kl > MAX_MEAN_KL
    assert check.summary.startswith("not used: this CPU's int8 was not accurate")
    assert not any(isinstance(m, Int8Linear) for m in quantized.modules())
    ids = torch.tensor([get_tokenizer().encode("ROMEO:\nBut soft, what light")])
    with torch.inference_mode():
        assert torch.equal(quantized(ids), model(ids))  # exactly float32
    assert torch.equal(quantized.generate(ids, 8, temperature=0), model.generate(ids, 8, temperature=0))


@pytest.fixture(scope="module")
def held_out(bundled):
    """Two 256-token texts the bundled model did not train on: the corpus's validation split where
    it is beside the repository, else texts the model wrote itself (in its own distribution)."""
    if DEFAULT_DATA.is_file():
        val = split_tokens(read_corpus(None)).val
        return [val[None, :256], val[None, 256:512]]
    model, _ = bundled
    prompt = torch.tensor([get_tokenizer().encode("ROMEO:\n")])
    return [model.generate(prompt, 256 - prompt.size(1), temperature=0.8, top_k=50, seed=s) for s in (0, 1)]


def test_bundled_int8_decoding_agrees_with_float32(bundled, held_out):
    """The documented tolerance, on whatever path this CPU took: stepping token by token through the
    KV cache, the copy's top token equals float32's at ≥ 97% of all the held-out positions (both
    texts together), and each text's mean KL of the next-token distributions is ≤ 1e-2 nats."""
    model, quantized = bundled
    agree = total = 0
    for ids in held_out:
        kl, top1 = decoding_agreement(model, quantized, ids, near_tie_nats=0.0)  # every position
        report(f"  bundled, 256 held-out tokens, {quantized.decoding.summary}: KL {kl:.4f}, top-1 {top1:.1%}")
        assert kl <= MAX_MEAN_KL, (quantized.decoding.summary, kl)
        agree, total = agree + round(top1 * ids.size(1)), total + ids.size(1)
    assert agree / total >= MIN_TOP1_AGREEMENT, (quantized.decoding.summary, f"{agree}/{total}")


@pytest.mark.slow
def test_gpt2_small_shape_with_outlier_features_decodes_close_to_float32():
    """Random weights make top-1 a toss-up among near-ties, so here the criterion is the KL alone."""
    torch.manual_seed(0)
    model = with_outlier_features(GPT2(50257, 768, 12, 12, 1024).eval())
    quantized = quantize_int8(model)
    kl, _ = decoding_agreement(model, quantized, torch.randint(0, 50257, (1, 128)))
    report(f"int8 decoding, GPT-2 small's shape with outlier features: {quantized.decoding.summary}, KL {kl:.4f}")
    assert kl <= MAX_MEAN_KL


AVX2_SCRIPT = """
import json, torch
from gpt2 import GPT2
from gpt2.quantize import Int8Linear, decoding_agreement, calibration_ids, quantize_int8
model = GPT2.from_pretrained("shakespeare")
chosen = quantize_int8(model)
eight_bit = quantize_int8(model, activation_bits=(8,), check=lambda reference, candidate: (0.0, 1.0))
ids = calibration_ids(model)
print(json.dumps({"bits": chosen.decoding.activation_bits, "summary": chosen.decoding.summary,
                  "chosen": decoding_agreement(model, chosen, ids), "eight_bit": decoding_agreement(model, eight_bit, ids)}))
"""


@pytest.mark.slow
def test_a_cpu_without_vnni_gets_an_accurate_path():
    """FBGEMM_ENABLE_INSTRUCTIONS=AVX2 makes FBGEMM run its kernels for CPUs without VNNI (where
    8-bit activations saturate), on any x86-64 CPU: the calibration must still keep an accurate path."""
    env = dict(os.environ, FBGEMM_ENABLE_INSTRUCTIONS="AVX2")
    out = subprocess.run([sys.executable, "-c", AVX2_SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    kl, top1 = result["chosen"]
    report(
        f"int8 decoding with FBGEMM's AVX2 kernels: {result['summary']} (KL {kl:.4f}, top-1 {top1:.1%}); "
        f"8-bit activations there: KL {result['eight_bit'][0]:.3f}"
    )
    assert kl <= MAX_MEAN_KL and top1 >= MIN_TOP1_AGREEMENT


def test_int8_copy_generates_and_keeps_its_hooks(bundled, held_out):
    """Hooks fire on the copy in both regimes: a prompt (float32 weights, the same maps as the float
    model) and decode steps through the KV cache (int8 weights, one row per call)."""
    model, quantized = bundled
    ids = held_out[0][:, :64]
    out = quantized.generate(ids[:, :8], 16, temperature=0)
    assert out.shape == (1, 24) and torch.equal(out[:, :8], ids[:, :8])
    patterns = lambda name: name.endswith("hook_pattern")  # noqa: E731
    with torch.inference_mode():
        float_maps = list(run_with_cache(model, ids, patterns, return_hidden=True)[1].values())
        prompt_maps = list(run_with_cache(quantized, ids, patterns, return_hidden=True)[1].values())
        rows = []  # each step's row of layer 1's map
        cache = quantized.new_kv_cache(1)
        quantized(ids[:, :8], cache)
        with hooks(quantized, {"blocks.1.attn.hook_pattern": lambda p, hook: rows.append(p[0, :, -1])}):
            for t in range(8, ids.size(1)):
                quantized(ids[:, t : t + 1], cache)
    assert len(prompt_maps) == model.config.num_layers
    for a, b in zip(float_maps, prompt_maps, strict=True):
        assert torch.equal(a, b)
    assert len(rows) == ids.size(1) - 8
    for t, row in zip(range(8, ids.size(1)), rows, strict=True):  # (H, t + 1)
        assert (row - float_maps[1][0, :, t, : t + 1]).abs().max().item() < 0.1
