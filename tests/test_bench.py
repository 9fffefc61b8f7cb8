"""The benchmark keeps working: its --quick mode runs every row at tiny sizes (no timing is asserted)."""

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
    }
    assert expected <= set(saved["rows"])
    for row in saved["rows"].values():
        assert row["peak_rss_MB"] > 0
    assert saved["rows"]["decode float32"]["ours_tok_s"] > 0
    assert "of the floor" in capsys.readouterr().out
