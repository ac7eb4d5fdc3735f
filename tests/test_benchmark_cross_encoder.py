"""benchmarks/cross_encoder.py runs end to end on the CPU (quick sizes) and reports both ratios.

Its figures are read from its output, never asserted here (they depend on the machine); that rerankpd's
scores are the model's own is asserted (to float tolerance)."""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "cross_encoder.py"


@pytest.mark.slow
def test_cross_encoder_benchmark_quick_run_reports_both_ratios():
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--pairs", "96", "--repeat", "1"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(l for l in proc.stdout.splitlines() if l.startswith("BENCHMARK_JSON "))
    report = json.loads(line.split(" ", 1)[1])
    assert report["device"] == "cpu" and report["pairs"] == 96
    assert set(report["results"]) == {"vs predict", "vs unsorted loop"}
    for result in report["results"].values():
        assert result["ratio"] > 0 and result["value"] > 0 and result["baseline"] > 0
    assert report["max_abs_diff_vs_predict"] < 1e-5
