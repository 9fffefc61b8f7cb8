"""The benchmarks keep working: bench.py --quick runs every row at tiny sizes, train_speed.py --quick
takes two tiny steps per variant, history_cost.py --quick two tiny turns, and the induction toy trains
for two steps (no timing is asserted)."""

import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

pytest.importorskip("transformers")
pytestmark = pytest.mark.slow


def test_quick_benchmark_runs_and_writes_json(tmp_path, capsys):
    import bench

    results = bench.main(["--quick", "--json", str(tmp_path / "bench.json")])
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["rows"].keys() == results["rows"].keys()
    expected = {
        "decode float32",
        "decode bfloat16",
        "decode int8 weights",
        "floor",
        "analysis T=32",
        "app (bundled)",
        "app (GPT-2 shape)",
        "lab (bundled)",
        "lab (GPT-2 shape)",
    }
    assert set(saved["rows"]) == expected
    rows = saved["rows"]
    assert all(row["peak_rss_MB"] > 0 for row in rows.values())
    assert rows["decode int8 weights"]["outlier_kl"] >= 0 and rows["decode int8 weights"]["path"]
    assert rows["decode float32"]["ours_tok_s"] > 0 and rows["analysis T=32"]["reference_s"] > 0
    # the analysis keeps the residual stream (3 x 32 x 64 floats) and thumbnails, not the maps
    assert 0.02 < rows["analysis T=32"]["kept_MiB"] < 0.1
    assert {"loss_s", "logit_lens_s", "ablation_s", "attribution_s", "sweep_s", "patching_s"} <= set(
        rows["lab (bundled)"]
    )
    out = capsys.readouterr().out
    assert "of the floor" in out and "patching" in out


def test_induction_toy_trains_and_reports(capsys):
    import torch
    import torch.nn.functional as F

    from gpt2.data import DEFAULT_DATA, frequent_tokens, read_corpus, split_tokens

    if not DEFAULT_DATA.is_file():
        pytest.skip(f"the Shakespeare corpus is not at {DEFAULT_DATA}")
    import induction_toy

    argv = ["--windows", "4", "--steps", "2", "--num-layers", "1", "--every", "1", "--threads", "1"]
    history = induction_toy.main(argv)
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["step 1", "step 2"]
    loss, score = (float(part.split()[-1]) for part in lines[0].split(":")[1].split(",")[:2])
    assert (loss, score) == (round(history[0]["loss"], 3), round(history[0]["induction"], 3))
    # step 1's loss is the fresh model's on the first copy batch, over the 500-token pool's logits only:
    # recomputed here with full logits and F.cross_entropy, and close to uniform over the pool
    args = induction_toy.parse_args(argv)
    torch.manual_seed(args.seed)
    model = induction_toy.toy_model(args)
    pool = frequent_tokens(split_tokens(read_corpus(None)).train, args.pool_size)
    x, y = induction_toy.copy_batch(pool, args.windows, args.seq_len, torch.Generator().manual_seed(args.seed))
    logits = model(x)[..., pool]
    expected = F.cross_entropy(logits.reshape(-1, pool.numel()), (y[..., None] == pool).int().argmax(-1).view(-1))
    assert abs(history[0]["loss"] - expected.item()) < 0.02  # the toy runs in bf16
    assert abs(expected.item() - math.log(500)) < 0.1  # not the full vocabulary's log(50257) = 10.8
    assert all(h["induction"] < 0.2 for h in history)  # two steps of 4 windows form no induction head


def test_train_speed_quick_runs_every_variant():
    import train_speed

    results = train_speed.main(["--quick"])
    assert {"plain (fp32 logits + cross_entropy)", "ours (chunked head loss)"} <= results.keys()
    assert results["plain (fp32 logits + cross_entropy)"]["vs_plain"] == 1.0
    for row in results.values():
        assert row["tokens_s"] == pytest.approx(2 * 32 / row["median_s"]) and row["median_s"] > 0


def test_history_cost_quick_times_all_three():
    import history_cost

    medians = history_cost.main(["--quick"])
    assert medians.keys() == {"step", "validation before", "evaluation with history", "of which the probes"}
    assert all(seconds > 0 for seconds in medians.values())
