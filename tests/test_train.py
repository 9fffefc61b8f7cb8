"""The trainer: the chunked loss, the schedule, checkpoints and eval-only, resume, the copy and mix
groups through the CLI, the recipe, and DDP on 2 CPU processes (the only run in a subprocess)."""

import json
import math
import os
import re
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from gpt2 import GPT2
from gpt2.curriculum import Curriculum, fixed_scale_params
from gpt2.data import frequent_tokens, read_corpus, split_tokens
from gpt2.loss import chunked_cross_entropy, validation_loss
from gpt2.recipes import stage_flags
from gpt2.train import build_config, learning_rate, main, make_optimizer, parse_args

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# float32: the comparisons below are exact, and bf16 autocast (the default on CPUs with bf16 units) rounds
# differently in one process and in two
TINY = ["--preset", "tiny", "--dropout", "0", "--threads", "1", "--eval-windows", "4", "--eval-interval", "2"]
TINY += ["--dtype", "float32"]
pytestmark = pytest.mark.usefixtures("keep_threads")


def logged(capsys) -> str:
    captured = capsys.readouterr()  # tqdm.write prints the step lines to stdout, the rest goes to stderr
    return captured.out + captured.err


def weights(path):
    return load_file(path / "model.safetensors")


def history(path):
    rows = [json.loads(line) for line in (path / "history.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in ("minutes", "eval_seconds")} for row in rows]  # timings differ


def assert_same_weights(a, b, atol=0.0):
    assert a.keys() == b.keys()
    for name in a:
        assert (torch.equal if atol == 0 else lambda x, y: torch.allclose(x, y, atol=atol))(a[name], b[name]), name


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


def test_learning_rate_schedule():
    args = parse_args(["--lr", "1e-3", "--min-lr", "1e-4", "--warmup-steps", "10", "--max-steps", "110"])
    assert learning_rate(0, args) == pytest.approx(1e-4)
    assert learning_rate(9, args) == pytest.approx(1e-3)
    assert learning_rate(60, args) == pytest.approx(5.5e-4)
    assert learning_rate(110, args) == pytest.approx(1e-4)


def test_train_saves_a_loadable_hf_checkpoint_and_eval_only(tmp_path, corpus, capsys):
    out = tmp_path / "run"
    main([*TINY, "--data", str(corpus), "--out", str(out), "--max-steps", "4", "--batch", "2"])
    assert re.search(r"step 4: train loss [\d.]+, val loss [\d.]+", logged(capsys))
    files = {"config.json", "model.safetensors", "train_state.pt", "history.jsonl", "probe.json"}
    assert {p.name for p in out.iterdir()} == files
    assert [(h["step"], h["tokens"]) for h in history(out)] == [(0, 0), (2, 2 * 2 * 64), (4, 4 * 2 * 64)]
    state = torch.load(out / "train_state.pt", weights_only=True)
    assert state["step"] == 4 and state["history_start"] == {"step": 0, "tokens": 0}
    assert state.keys() == {"model", "optimizer", "data_rng", "torch_rng", "step", "history_start"}
    model = GPT2.from_pretrained(out)
    assert model.config.num_layers == 2 and not model.training
    assert_same_weights({k: v for k, v in state["model"].items()}, dict(model.state_dict()))
    main(["--eval-only", "--model", str(out), "--data", str(corpus), "--eval-windows", "4"])
    printed = float(re.match(r"validation loss: (\d+\.\d{4}) nats/token", capsys.readouterr().out).group(1))
    val = validation_loss(model, split_tokens(read_corpus(str(corpus))).val, 64, max_windows=4)
    assert abs(printed - val) < 5.1e-5 and abs(history(out)[-1]["val_loss"] - val) < 1e-6


def test_resume_continues_exactly(tmp_path, corpus, capsys):
    common = [*TINY, "--warmup-steps", "1", "--batch", "2", "--data", str(corpus), "--max-steps", "4"]
    common += ["--mix", "lagged=0.5", "--position-init", "helix"]  # the data generator's state is resumed too
    main([*common, "--out", str(tmp_path / "straight")])
    main([*common, "--out", str(tmp_path / "split"), "--stop-at-step", "2"])
    assert "stopping at step 2" in logged(capsys)
    main([*common, "--out", str(tmp_path / "split"), "--resume"])
    assert "resumed from" in logged(capsys)
    assert_same_weights(weights(tmp_path / "straight"), weights(tmp_path / "split"))
    assert history(tmp_path / "straight") == history(tmp_path / "split")


def test_copy_windows_add_their_pool_loss_to_the_step(tmp_path, corpus):
    base = [*TINY, "--data", str(corpus), "--max-steps", "1", "--mix", "lagged=0.5"]
    copy = ["--batch", "mix=2,copy=4", "--copy-seq-len", "16", "--copy-pool-size", "8"]
    main([*base, *copy, "--out", str(tmp_path / "copy")])
    main([*base, "--batch", "2", "--out", str(tmp_path / "plain")])  # the same mix windows: they are drawn first
    with_copy, plain = weights(tmp_path / "copy"), weights(tmp_path / "plain")
    assert not torch.equal(plain["transformer.h.1.attn.c_attn.weight"], with_copy["transformer.h.1.attn.c_attn.weight"])
    # the step's loss is the mix windows' mean plus the copy windows' mean, on the windows drawn in that order
    args = parse_args([*base, *copy])
    torch.manual_seed(1337)  # train's default seed, so this is the run's initial model
    model = GPT2.from_config(build_config(args))
    train_tokens = split_tokens(read_corpus(str(corpus))).train
    groups = Curriculum.from_args(args, train_tokens, 64, 1).draw(torch.Generator().manual_seed(1337))
    assert [g.pool is None for g in groups] == [True, False] and groups[1].inputs.shape == (4, 16)
    expected = sum(g.loss(model, 0, "cpu").item() for g in groups)
    assert history(tmp_path / "copy")[-1]["train_loss"] == pytest.approx(expected, abs=1e-5)


def test_copy_windows_alone_move_only_the_pool_rows(tmp_path, corpus):
    args = [*TINY, "--data", str(corpus), "--max-steps", "1", "--weight-decay", "0"]
    args += ["--batch", "copy=4", "--copy-seq-len", "16", "--copy-pool-size", "8"]
    main([*args, "--out", str(tmp_path / "out")])
    trained = GPT2.from_pretrained(tmp_path / "out").wte.weight
    torch.manual_seed(1337)
    initial = GPT2.from_config(build_config(parse_args(args))).wte.weight
    changed = (trained != initial).any(dim=1).nonzero().flatten()
    pool = frequent_tokens(split_tokens(read_corpus(str(corpus))).train, 8)
    # no text window: only the pool's embedding rows (inputs and the pool loss's logits) moved
    assert len(changed) > 0 and set(changed.tolist()) <= set(pool.tolist())
    for bad in (["--batch", "mix=0"], ["--batch", "copy=-1"], ["--batch", "copy=4", "--mix", "lagged=0.5"]):
        with pytest.raises(SystemExit):
            parse_args(bad)
    for bad in (["--copy-pool-size", "-5"], ["--copy-seq-len", "1"], ["--mix", "synthetic=0.6,lagged=0.5"]):
        with pytest.raises(SystemExit):
            parse_args(bad)


def test_helix_positions_flag_sets_them_and_keeps_them_out_of_weight_decay(tmp_path, corpus):
    out = tmp_path / "helix"
    main([*TINY, "--data", str(corpus), "--max-steps", "2", "--position-init", "helix", "--out", str(out)])
    wpe = weights(out)["transformer.wpe.weight"]
    rotation = torch.linalg.lstsq(wpe[:-1], wpe[1:]).solution
    misfit = (wpe[:-1] @ rotation - wpe[1:]).norm() / wpe[1:].norm()
    assert misfit < 0.1  # two small steps keep the helix; GPT-2's random rows leave about 0.7
    model = GPT2.from_pretrained(str(out))
    decayed = make_optimizer(model, 1e-3, 0.1, fixed_scale_params(model, "helix")).param_groups[0]["params"]
    assert any(p is model.wte.weight for p in decayed) and not any(p is model.wpe.weight for p in decayed)
    decayed = make_optimizer(model, 1e-3, 0.1, fixed_scale_params(model, "gpt2")).param_groups[0]["params"]
    assert any(p is model.wpe.weight for p in decayed)


def test_too_few_tokens_and_too_long_windows_are_one_line_errors(tmp_path):
    corpus = tmp_path / "few.txt"
    corpus.write_text("to be or not " * 400, encoding="utf-8")  # 4 distinct tokens
    with pytest.raises(SystemExit, match="^error: synthetic windows need at least 8 distinct tokens"):
        main(["--data", str(corpus), *TINY, "--mix", "synthetic=0.5"])
    with pytest.raises(SystemExit, match="^error: --seq-len must be between 2 and the block size 64"):
        main(["--data", str(corpus), *TINY, "--seq-len", "65"])
    with pytest.raises(SystemExit, match="^error: --copy-seq-len must be at most the block size 64"):
        main(["--data", str(corpus), *TINY, "--batch", "copy=2", "--copy-seq-len", "65"])


def test_recipe_stages_hold_the_bundled_models_commands(tmp_path):
    # the two commands that made gpt2/assets/shakespeare, in this trainer's flags (the evaluations,
    # which change no weight, are closer together now: they are also the rows of history.jsonl)
    common = "--preset shakespeare --threads 1 --position-init helix --eval-windows 24 --seed 1337"
    copy = f"{common} --batch copy=256 --copy-seq-len 64 --copy-pool-size 500 --weight-decay 0 --lr 1e-3 "
    copy += "--min-lr 1e-3 --warmup-steps 10 --max-steps 450 --eval-interval 25 --out out/copy"
    main_run = f"{common} --init-from out/copy --batch mix=16,copy=64 --mix text=0.5,lagged=0.4,synthetic=0.1 "
    main_run += "--copy-seq-len 64 --copy-pool-size 500 --dropout 0 --weight-decay 0.1 --lr 2e-3 --min-lr 1e-4 "
    main_run += "--warmup-steps 20 --max-steps 2000 --eval-interval 50 --save-dtype float16 --out out/shakespeare"
    for stage, flags in (("copy", copy), ("main", main_run)):
        from_recipe = vars(parse_args(["--recipe", "shakespeare", "--stage", stage]))
        assert (from_recipe.pop("recipe"), from_recipe.pop("stage")) == ("shakespeare", stage)
        assert from_recipe.pop("recipe_flags")  # printed at the start of the run
        explicit = vars(parse_args(flags.split()))
        assert (explicit.pop("recipe"), explicit.pop("stage")) == (None, None)
        assert from_recipe == explicit
    overridden = parse_args(["--recipe", "shakespeare", "--stage", "copy", "--max-steps", "3"])
    assert overridden.max_steps == 3 and overridden.batch == {"copy": 256}
    mine = tmp_path / "mine.toml"
    mine.write_text('lr = 0.5\n[only]\nresume = true\ndtype = "float32"\n', encoding="utf-8")
    assert stage_flags(str(mine), "only") == ["--lr", "0.5", "--resume", "--dtype", "float32"]
    for bad in (["--recipe", "shakespeare"], ["--recipe", "shakespeare", "--stage", "nope"], ["--recipe", "nope"]):
        with pytest.raises(SystemExit):
            parse_args(bad)
    with pytest.raises(SystemExit):
        parse_args(["--stage", "copy"])


def test_recipe_main_stage_starts_from_the_copy_stages_weights(tmp_path, corpus, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the recipe's own out/copy and out/shakespeare, under tmp_path
    small = [*TINY, "--data", str(corpus), "--max-steps", "1", "--copy-seq-len", "16"]
    main(["--recipe", "shakespeare", "--stage", "copy", *small, "--batch", "copy=2"])
    frozen = ["--lr", "0", "--min-lr", "0"]
    main(["--recipe", "shakespeare", "--stage", "main", *small, "--batch", "mix=2,copy=2", *frozen])
    copied, started = weights(tmp_path / "out" / "copy"), weights(tmp_path / "out" / "shakespeare")
    assert started["transformer.wte.weight"].dtype == torch.float16  # the main stage saves float16
    assert_same_weights({k: v.half() for k, v in copied.items()}, started)  # learning rate 0: unchanged


def test_ddp_on_two_cpu_processes_matches_one_process(tmp_path, corpus):
    if shutil.which("torchrun") is None and not hasattr(torch.distributed, "run"):
        pytest.skip("torch.distributed.run is unavailable")
    common = [*TINY, "--data", str(corpus), "--max-steps", "4", "--grad-accum", "2", "--mix", "lagged=0.5"]
    common += ["--copy-seq-len", "16", "--copy-pool-size", "8"]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "-m", "gpt2.train"]
    two = subprocess.run(
        [*command, *common, "--out", str(tmp_path / "two"), "--batch", "mix=2,copy=2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    assert "all 2 processes hold identical weights" in two.stdout + two.stderr
    main([*common, "--out", str(tmp_path / "one"), "--batch", "mix=4,copy=4"])  # the same global batch
    assert_same_weights(weights(tmp_path / "two"), weights(tmp_path / "one"), atol=1e-5)
    one, two = history(tmp_path / "one"), history(tmp_path / "two")
    # rank 0 alone records: one row per evaluation
    assert [h["step"] for h in two] == [0, 2, 4]
    assert [h["tokens"] for h in one] == [h["tokens"] for h in two] == [0, 2 * 2 * (4 * 64 + 4 * 16), 4 * 2 * 320]
    assert all(
        math.isclose(a["train_loss"], b["train_loss"], abs_tol=1e-5) for a, b in zip(one[1:], two[1:], strict=True)
    )
    assert all(math.isclose(a["icl_score"], b["icl_score"], abs_tol=1e-4) for a, b in zip(one, two, strict=True))
