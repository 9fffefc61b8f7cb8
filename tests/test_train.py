"""The training CLI: single process, resume, eval-only, and DDP on 2 CPU processes."""

import os
import re
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from gpt2 import GPT2
from gpt2.loss import chunked_cross_entropy, pool_cross_entropy
from gpt2.train import (
    build_config,
    copy_batch,
    frequent_tokens,
    helix_positions,
    lagged_copy_windows,
    learning_rate,
    make_optimizer,
    parse_args,
    read_corpus,
    repeated_random_window,
    sample_batch,
    split_tokens,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# float32: the comparisons below are exact, and bf16 autocast (the default on CPUs with bf16 units) rounds
# differently in one process and in two
TINY = [
    "--preset",
    "tiny",
    "--dropout",
    "0",
    "--threads",
    "1",
    "--eval-windows",
    "4",
    "--eval-interval",
    "2",
    "--dtype",
    "float32",
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    words = [
        "king",
        "queen",
        "sword",
        "crown",
        "night",
        "day",
        "love",
        "death",
        "honour",
        "blood",
        "war",
        "peace",
        "rose",
        "thorn",
        "lord",
        "lady",
    ]
    gen = torch.Generator().manual_seed(0)
    lines = [" ".join(words[i] for i in torch.randint(len(words), (12,), generator=gen).tolist()) for _ in range(800)]
    path = tmp_path_factory.mktemp("data") / "corpus.txt"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def run(args, cwd=ROOT, torchrun=False):
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2"] if torchrun else [sys.executable]
    result = subprocess.run([*command, "-m", "gpt2.train", *args], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def weights(path):
    return load_file(path / "model.safetensors")


def assert_same_weights(a, b, atol):
    assert a.keys() == b.keys()
    for name in a:
        assert torch.allclose(a[name], b[name], atol=atol), name


@pytest.mark.parametrize("group", [1, 3, 4])
def test_chunked_loss_equals_plain_cross_entropy(group):
    torch.manual_seed(0)
    hidden = torch.randn(2, 37, 16, requires_grad=True)
    weight = torch.randn(300, 16, requires_grad=True)
    targets = torch.randint(0, 300, (2, 37))
    plain = torch.nn.functional.cross_entropy((hidden @ weight.t()).view(-1, 300), targets.view(-1))
    plain.backward()
    grads = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    ours = chunked_cross_entropy(hidden, weight, targets, chunk_size=10, group=group)  # 74 rows: ragged ends
    (2 * ours).backward()
    assert torch.allclose(ours, plain, atol=1e-5)
    assert torch.allclose(hidden.grad, 2 * grads[0], atol=1e-6) and torch.allclose(weight.grad, 2 * grads[1], atol=1e-6)


def test_pool_loss_is_cross_entropy_over_the_pool_logits():
    torch.manual_seed(0)
    hidden = torch.randn(3, 20, 16, requires_grad=True)
    weight = torch.randn(300, 16, requires_grad=True)
    pool = torch.tensor([7, 250, 3, 99, 42])
    local = torch.randint(0, 5, (3, 20))
    plain = torch.nn.functional.cross_entropy((hidden @ weight[pool].t()).view(-1, 5), local.view(-1))
    plain.backward()
    grads = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    ours = pool_cross_entropy(hidden, weight, pool[local], pool)
    ours.backward()
    assert torch.allclose(ours, plain, atol=1e-5)
    assert torch.allclose(hidden.grad, grads[0], atol=1e-6) and torch.allclose(weight.grad, grads[1], atol=1e-6)
    outside = torch.ones(300, dtype=torch.bool)
    outside[pool] = False
    assert weight.grad[outside].abs().max() == 0 and weight.grad[pool].abs().min() > 0
    with pytest.raises(ValueError, match="pool"):
        pool_cross_entropy(hidden, weight, torch.full((3, 20), 8), pool)


def test_chunked_loss_with_large_logits_subtracts_the_row_max():
    torch.manual_seed(0)
    hidden = torch.randn(40, 16, requires_grad=True)
    weight = (8 * torch.randn(300, 16)).requires_grad_()  # logits of ±100: exp would overflow unshifted
    targets = torch.randint(0, 300, (40,))
    plain = torch.nn.functional.cross_entropy(hidden @ weight.t(), targets)
    plain.backward()
    grads = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    ours = chunked_cross_entropy(hidden, weight, targets, chunk_size=8, group=2)
    ours.backward()
    assert torch.isfinite(ours) and torch.allclose(ours, plain, rtol=1e-5)
    assert torch.allclose(hidden.grad, grads[0], atol=1e-5) and torch.allclose(weight.grad, grads[1], atol=1e-5)


def test_chunked_loss_under_bf16_autocast_stays_close():
    torch.manual_seed(0)
    hidden = torch.randn(3, 50, 32, requires_grad=True)
    weight = (0.1 * torch.randn(500, 32)).requires_grad_()
    targets = torch.randint(0, 500, (3, 50))
    exact = chunked_cross_entropy(hidden, weight, targets, chunk_size=64)
    exact.backward()
    grads = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fast = chunked_cross_entropy(hidden, weight, targets, chunk_size=16, group=4)
    fast.backward()
    assert fast.dtype == torch.float32 and abs(fast.item() - exact.item()) < 1e-2
    for got, want in zip((hidden.grad, weight.grad), grads, strict=True):
        assert got.dtype == torch.float32 and (got - want).norm() / want.norm() < 2e-2


def test_synthetic_windows_repeat_a_run_of_distinct_pool_tokens():
    pool = torch.arange(6000, 6400)
    gen = torch.Generator().manual_seed(0)
    runs = set()
    for _ in range(50):
        window = repeated_random_window(pool, 65, gen)
        run = next(r for r in range(1, 66) if torch.equal(window[r:], window[:-r]))  # the period
        assert 8 <= run <= 32 and window[:run].unique().numel() == run
        assert torch.isin(window, pool).all()
        runs.add(run)
    assert len(runs) > 10  # the run length varies, so no fixed offset predicts the copy

    text = torch.arange(5000)  # no token repeats within a window of natural "text"
    x, y = sample_batch(text, 400, 64, gen, synthetic_fraction=0.25, pool=pool)
    assert torch.equal(x[:, 1:], y[:, :-1])
    synthetic = torch.isin(x[:, 0], pool)
    assert 60 < synthetic.sum() < 140
    assert (x[~synthetic, 1:] - x[~synthetic, :-1]).eq(1).all()  # the rest is untouched text

    small = torch.arange(6000, 6005)  # fewer tokens than the shortest run: the run shrinks to fit
    window = repeated_random_window(small, 65, gen)
    assert window.shape == (65,) and torch.equal(window[5:], window[:-5])


def test_copy_batch_targets_are_the_inputs_shifted_and_runs_repeat():
    pool = torch.arange(100, 140)
    x, y = copy_batch(pool, 6, 48, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (6, 48) and torch.equal(x[:, 1:], y[:, :-1])
    for row in torch.cat([x, y[:, -1:]], 1):
        run = int((row[1:] == row[0]).nonzero()[0]) + 1  # where the first token comes back
        assert 8 <= run <= 24 and len(set(row[:run].tolist())) == run
        assert torch.equal(row[run:], row[: len(row) - run]) and set(row.tolist()) <= set(pool.tolist())


def test_copy_windows_flag_adds_their_loss(tmp_path, corpus):
    # one step: both runs see the same text batch, so only the copy windows' loss can tell them apart
    common = [*TINY, "--data", str(corpus), "--max-steps", "1", "--batch-size", "2"]
    run([*common, "--out", str(tmp_path / "plain")])
    copy = ["--copy-windows", "4", "--copy-seq-len", "16", "--copy-pool-size", "8"]
    run([*common, *copy, "--out", str(tmp_path / "copy")])
    plain, with_copy = weights(tmp_path / "plain"), weights(tmp_path / "copy")
    assert not torch.equal(plain["transformer.h.1.attn.c_attn.weight"], with_copy["transformer.h.1.attn.c_attn.weight"])
    for bad in (["--copy-windows", "-1"], ["--copy-pool-size", "-5"], ["--copy-seq-len", "1"]):
        with pytest.raises(SystemExit):
            parse_args(bad)


def test_batch_size_zero_trains_on_copy_windows_only(tmp_path, corpus):
    copy_only = ["--batch-size", "0", "--copy-windows", "4", "--copy-seq-len", "16", "--copy-pool-size", "8"]
    args = [*TINY, "--data", str(corpus), "--max-steps", "1", "--weight-decay", "0", *copy_only]
    run([*args, "--out", str(tmp_path / "out")])
    trained = GPT2.from_pretrained(tmp_path / "out").wte.weight
    torch.manual_seed(1337)  # train's default seed, so this is the run's initial model
    initial = GPT2.from_config(build_config(parse_args(args))).wte.weight
    changed = (trained != initial).any(dim=1).nonzero().flatten()
    pool = frequent_tokens(split_tokens(read_corpus(str(corpus))).train, 8)
    # no text window: only the pool's embedding rows (inputs and the pool loss's logits) moved
    assert len(changed) > 0 and set(changed.tolist()) <= set(pool.tolist())
    for bad in (["--batch-size", "0"], ["--batch-size", "-1", "--copy-windows", "4"]):
        with pytest.raises(SystemExit):
            parse_args(bad)


def test_lagged_copy_windows_copy_the_token_two_back_about_half_the_time():
    pool = torch.arange(7000, 7500)
    gen = torch.Generator().manual_seed(0)
    windows = lagged_copy_windows(pool, 64, 257, gen)
    assert windows.shape == (64, 257) and torch.isin(windows, pool).all()
    copies = windows[:, 2:] == windows[:, :-2]
    assert 0.45 < copies.float().mean() < 0.56  # half copied, plus the rare chance repeat (1 in 500)
    assert (windows[:, 1:] == windows[:, :-1]).float().mean() < 0.01  # neighbours are independent

    text = torch.arange(5000)
    x, y = sample_batch(
        text, 400, 32, gen, synthetic_fraction=0.25, pool=pool[:100], lagged_fraction=0.5, lagged_pool=pool[100:]
    )
    assert torch.equal(x[:, 1:], y[:, :-1])
    synthetic, lagged = torch.isin(x[:, 0], pool[:100]), torch.isin(x[:, 0], pool[100:])
    assert 60 < synthetic.sum() < 140 and 160 < lagged.sum() < 240
    assert torch.isin(x[lagged], pool[100:]).all()
    text_rows = ~(synthetic | lagged)
    assert (x[text_rows, 1:] - x[text_rows, :-1]).eq(1).all()


def test_helix_positions_one_rotation_maps_each_position_to_the_next():
    wpe = helix_positions(256, 64, num_frequencies=16, row_norm=0.5, generator=torch.Generator().manual_seed(0))
    assert wpe.shape == (256, 64) and torch.allclose(wpe.norm(dim=1), torch.full((256,), 0.5))
    rotation = torch.linalg.lstsq(wpe[:-1], wpe[1:]).solution  # one linear map for every step
    assert torch.allclose(wpe[:-1] @ rotation, wpe[1:], atol=1e-4)
    gram = wpe @ wpe.T  # similarity depends only on the distance between positions
    assert torch.allclose(gram[:-1, :-1], gram[1:, 1:], atol=1e-5)
    assert gram.diagonal(-1).mean() < 0.5 * gram.diagonal().mean()  # neighbours are told apart
    with pytest.raises(ValueError, match="dims"):
        helix_positions(16, 16, num_frequencies=16)


def test_helix_positions_flag_sets_them_and_keeps_them_out_of_weight_decay(tmp_path, corpus):
    out = tmp_path / "helix"
    run(
        [
            "--data",
            str(corpus),
            *TINY,
            "--max-steps",
            "2",
            "--position-init",
            "helix",
            "--lagged-fraction",
            "0.5",
            "--out",
            str(out),
        ]
    )
    wpe = weights(out)["transformer.wpe.weight"]
    rotation = torch.linalg.lstsq(wpe[:-1], wpe[1:]).solution
    misfit = (wpe[:-1] @ rotation - wpe[1:]).norm() / wpe[1:].norm()
    assert misfit < 0.1  # two small steps keep the helix; GPT-2's random rows leave about 0.7
    model = GPT2.from_pretrained(str(out))
    decayed = make_optimizer(model, parse_args(["--position-init", "helix"])).param_groups[0]["params"]
    assert any(p is model.wte.weight for p in decayed) and not any(p is model.wpe.weight for p in decayed)


def test_bad_mixing_fractions_and_too_few_tokens_are_one_line_errors(tmp_path):
    for flag in ("--synthetic-fraction", "--repeat-fraction", "--lagged-fraction"):
        with pytest.raises(SystemExit):
            parse_args(["--preset", "tiny", flag, "1.5"])
    with pytest.raises(SystemExit):
        parse_args(["--synthetic-fraction", "0.6", "--lagged-fraction", "0.5"])
    assert parse_args(["--synthetic-fraction", "0.5", "--lagged-fraction", "0.5"]).lagged_fraction == 0.5
    corpus = tmp_path / "few.txt"
    corpus.write_text("to be or not " * 400, encoding="utf-8")  # 4 distinct tokens
    result = subprocess.run(
        [sys.executable, "-m", "gpt2.train", "--data", str(corpus), *TINY, "--synthetic-fraction", "0.5"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: --synthetic-fraction needs at least 8")


def test_learning_rate_schedule():
    args = parse_args(["--lr", "1e-3", "--min-lr", "1e-4", "--warmup-steps", "10", "--max-steps", "110"])
    assert learning_rate(0, args) == pytest.approx(1e-4)
    assert learning_rate(9, args) == pytest.approx(1e-3)
    assert learning_rate(60, args) == pytest.approx(5.5e-4)
    assert learning_rate(110, args) == pytest.approx(1e-4)


def test_train_saves_a_loadable_hf_checkpoint_and_eval_only(tmp_path, corpus):
    out = tmp_path / "run"
    result = run([*TINY, "--data", str(corpus), "--out", str(out), "--max-steps", "4", "--batch-size", "2"])
    assert re.search(r"step 4: train loss [\d.]+, val loss [\d.]+", result.stdout + result.stderr)
    assert {"config.json", "model.safetensors", "train_state.pt", "history.json"} <= {p.name for p in out.iterdir()}
    model = GPT2.from_pretrained(out)
    assert model.config.num_layers == 2 and not model.training
    evaluation = run(["--eval-only", "--model", str(out), "--data", str(corpus), "--eval-windows", "4"])
    assert re.match(r"validation loss: \d+\.\d{4} nats/token", evaluation.stdout)


def test_resume_continues_exactly(tmp_path, corpus):
    common = [*TINY, "--warmup-steps", "1", "--batch-size", "2", "--data", str(corpus), "--max-steps", "4"]
    run([*common, "--out", str(tmp_path / "straight")])
    stopped = run([*common, "--out", str(tmp_path / "split"), "--stop-at-step", "2"])
    assert "stopping at step 2" in stopped.stdout + stopped.stderr
    result = run([*common, "--out", str(tmp_path / "split"), "--resume"])
    assert "resumed from" in result.stderr and "at step 2" in result.stderr
    assert_same_weights(weights(tmp_path / "straight"), weights(tmp_path / "split"), atol=1e-6)


def test_ddp_on_two_cpu_processes_matches_one_process(tmp_path, corpus):
    if shutil.which("torchrun") is None and not hasattr(torch.distributed, "run"):
        pytest.skip("torch.distributed.run is unavailable")
    common = [*TINY, "--data", str(corpus), "--max-steps", "4", "--grad-accum", "2"]
    two = run([*common, "--out", str(tmp_path / "two"), "--batch-size", "2"], torchrun=True)
    assert "all 2 processes hold identical weights" in two.stdout + two.stderr
    run([*common, "--out", str(tmp_path / "one"), "--batch-size", "4"])  # the same global batch
    assert_same_weights(weights(tmp_path / "two"), weights(tmp_path / "one"), atol=1e-5)
