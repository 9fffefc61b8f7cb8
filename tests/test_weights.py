"""Loading real GPT-2 checkpoints, offline: random transformers models saved with save_pretrained,
and a fake Hub cache read with HF_HUB_OFFLINE=1."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from gpt2 import GPT2, CheckpointError, UnknownModelError, load_pretrained
from gpt2.weights import canonical_hub_name, resolve_checkpoint

transformers = pytest.importorskip("transformers")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def hf_model(**config):
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(transformers.GPT2Config(**config)).eval()


@pytest.fixture(scope="module")
def small_hf_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("hf_small")
    hf_model(n_embd=48, n_head=4, n_layer=3, n_positions=40, vocab_size=1000).save_pretrained(path)
    return path


def test_logits_match_transformers_small(small_hf_dir):
    reference = transformers.GPT2LMHeadModel.from_pretrained(small_hf_dir).eval()
    ours = GPT2.from_pretrained(str(small_hf_dir))
    assert not ours.training
    idx = torch.randint(0, 1000, (2, 40))
    with torch.no_grad():
        diff = (ours(idx) - reference(idx).logits).abs().max().item()
    assert diff < 1e-4


def test_logits_match_transformers_gpt2_small_shape(tmp_path):
    reference = hf_model()  # GPT-2 small's shape, random weights
    reference.save_pretrained(tmp_path)
    ours = GPT2.from_pretrained(str(tmp_path))
    assert ours.num_parameters() == 124_439_808
    idx = torch.randint(0, 50257, (1, 64))
    with torch.no_grad():
        diff = (ours(idx) - reference(idx).logits).abs().max().item()
    assert diff < 1e-4


def test_our_checkpoint_loads_in_transformers(tmp_path, small_vocab_model):
    small_vocab_model.save_pretrained(tmp_path)
    reference = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    idx = torch.randint(0, 100, (2, 32))
    with torch.no_grad():
        assert (small_vocab_model(idx) - reference(idx).logits).abs().max().item() < 1e-4
    again = GPT2.from_pretrained(tmp_path)
    assert torch.equal(again(idx), small_vocab_model(idx))


def test_half_precision_storage_loads_as_float32(tmp_path, small_vocab_model):
    small_vocab_model.save_pretrained(tmp_path, dtype=torch.float16)
    loaded = GPT2.from_pretrained(tmp_path)
    assert loaded.wte.weight.dtype == torch.float32
    assert (loaded.wte.weight - small_vocab_model.wte.weight).abs().max().item() < 1e-3


def copy_checkpoint(src, dst, edit):
    shutil.copytree(src, dst)
    state = load_file(dst / "model.safetensors")
    edit(state)
    save_file(state, dst / "model.safetensors", metadata={"format": "pt"})
    return dst


def test_missing_extra_and_misshaped_keys_are_named(small_hf_dir, tmp_path):
    missing = copy_checkpoint(small_hf_dir, tmp_path / "missing", lambda s: s.pop("transformer.h.1.mlp.c_fc.bias"))
    with pytest.raises(CheckpointError, match=r"missing the tensor 'blocks\.1\.mlp\.c_fc\.bias'"):
        load_pretrained(missing)

    def add_extra(state):
        state["transformer.h.0.attn.surprise"] = torch.zeros(3)

    extra = copy_checkpoint(small_hf_dir, tmp_path / "extra", add_extra)
    with pytest.raises(CheckpointError, match=r"unexpected tensor 'blocks\.0\.attn\.surprise'"):
        load_pretrained(extra)

    def reshape(state):
        state["transformer.ln_f.weight"] = torch.ones(47)

    bad_shape = copy_checkpoint(small_hf_dir, tmp_path / "shape", reshape)
    with pytest.raises(CheckpointError, match=r"'ln_f\.weight' has shape \(47,\)"):
        load_pretrained(bad_shape)

    def poison(state):
        state["transformer.h.2.attn.c_attn.weight"][0, 0] = float("nan")

    nan = copy_checkpoint(small_hf_dir, tmp_path / "nan", poison)
    with pytest.raises(CheckpointError, match=r"'blocks\.2\.attn\.c_attn\.weight' contains NaN"):
        load_pretrained(nan)


def test_pickle_checkpoints_are_refused_unread(tmp_path, small_hf_dir):
    (tmp_path / "config.json").write_text((small_hf_dir / "config.json").read_text())
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04 not to be unpickled")
    with pytest.raises(CheckpointError, match="pickle"):
        load_pretrained(tmp_path)


def test_corrupt_and_truncated_files(tmp_path, small_hf_dir):
    truncated = tmp_path / "truncated"
    shutil.copytree(small_hf_dir, truncated)
    data = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        load_pretrained(truncated)

    bad_config = tmp_path / "bad_config"
    shutil.copytree(small_hf_dir, bad_config)
    config = json.loads((bad_config / "config.json").read_text())
    config["n_embd"] = 64
    (bad_config / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="shape"):
        load_pretrained(bad_config)


def test_names_are_validated():
    assert canonical_hub_name("openai-community/gpt2-medium") == "gpt2-medium"
    assert canonical_hub_name("distilbert/distilgpt2") == "distilgpt2"
    for bad in ("gpt3", "../../etc/passwd", "openai-community/../gpt2", ""):
        with pytest.raises(UnknownModelError):
            resolve_checkpoint(bad)


def fake_hub_cache(cache, repo_id, checkpoint_dir):
    """The layout huggingface_hub's cache uses: refs/main → a commit, snapshots/<commit>/files."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        shutil.copy(checkpoint_dir / name, snapshot / name)


def run_offline(cache, code):
    env = dict(os.environ, HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1", PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


def test_hub_name_loads_from_the_cache_offline(tmp_path, small_hf_dir):
    fake_hub_cache(tmp_path, "openai-community/gpt2", small_hf_dir)
    code = (
        "import torch; from gpt2 import GPT2\n"
        "a = GPT2.from_pretrained('gpt2'); b = GPT2.from_pretrained('openai-community/gpt2')\n"
        f"c = GPT2.from_pretrained({str(small_hf_dir)!r})\n"
        "idx = torch.randint(0, 1000, (1, 8))\n"
        "assert torch.equal(a(idx), c(idx)) and torch.equal(b(idx), c(idx))\n"
        "print('ok', a.config.num_layers)\n"
    )
    result = run_offline(tmp_path, code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok 3"


def test_offline_without_cache_is_one_clear_error(tmp_path):
    code = (
        "from gpt2 import GPT2, HubUnavailableError\n"
        "try:\n    GPT2.from_pretrained('gpt2-medium')\n"
        "except HubUnavailableError as e:\n    print(e)\n"
    )
    result = run_offline(tmp_path, code)
    assert result.returncode == 0, result.stderr
    message = result.stdout.strip()
    assert "'gpt2-medium'" in message and "could not be reached" in message and "hf download" in message
    assert "\n" not in message and "Retry" not in result.stderr


def test_a_model_too_large_for_free_memory_is_refused(small_hf_dir, monkeypatch):
    from gpt2 import ModelTooLargeError, weights

    monkeypatch.setattr(weights, "_available_memory", lambda: 1_000_000)  # 1 MB free
    with pytest.raises(ModelTooLargeError, match=r"needs about .* GiB of memory"):
        load_pretrained(small_hf_dir)
