"""``benchmarks/llm.py`` runs end to end and reports its request counts and token ratios.

Its figures are read from its output, never asserted as timings; the Cranfield part is pointed at a file
that does not exist (tests never read the shared data), which the script must skip gracefully.
"""
from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "llm.py"


@pytest.mark.slow
def test_llm_benchmark_reports_requests_and_estimate_ratios(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--data", str(tmp_path / "absent.json.gz")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "not found, skipped" in proc.stderr
    line = next(l for l in proc.stdout.splitlines() if l.startswith("BENCHMARK_JSON "))
    results = json.loads(line.split(" ", 1)[1])["results"]
    assert results["1. requests, pointwise, 100 candidates"]["value"] == "100"
    assert results["1. requests, listwise, 100 candidates"]["value"] == "9"
    assert results["1. requests, pointwise rerun, 70 cached"]["value"] == "30"
    for mode in ("pointwise", "listwise"):
        assert results[f"2. estimate tokens, {mode}"]["met"] is True
