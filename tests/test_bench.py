"""The benchmarks keep working: bench.py --quick runs every row at tiny sizes, and the induction toy
trains for two steps (no timing is asserted)."""

import json
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
    assert rows["decode float32"]["ours_tok_s"] > 0 and rows["analysis T=32"]["reference_s"] > 0
    # the analysis keeps the residual stream (3 x 32 x 64 floats) and thumbnails, not the maps
    assert 0.02 < rows["analysis T=32"]["kept_MiB"] < 0.1
    assert {"loss_s", "logit_lens_s", "ablation_s", "attribution_s", "sweep_s", "patching_s"} <= set(rows["lab (bundled)"])
    out = capsys.readouterr().out
    assert "of the floor" in out and "patching" in out


def test_induction_toy_trains_and_reports(capsys):
    from gpt2.train import DEFAULT_DATA

    if not DEFAULT_DATA.is_file():
        pytest.skip(f"the Shakespeare corpus is not at {DEFAULT_DATA}")
    import induction_toy

    induction_toy.main(["--windows", "4", "--steps", "2", "--num-layers", "1", "--every", "1", "--threads", "1"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["step 1", "step 2"]
    loss, score = (float(part.split()[-1]) for part in lines[-1].split(":")[1].split(",")[:2])
    assert 0 < loss < 20 and 0 <= score <= 1
