"""benchmarks/embedding.py runs end to end (quick sizes, synthetic data) and reports every measurement.

As for benchmarks/run.py, only that it runs and reports is checked: the figures depend on the machine."""
from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "embedding.py"


@pytest.mark.slow
def test_embedding_benchmark_quick_run_reports_every_measurement():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--synthetic"], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(l for l in proc.stdout.splitlines() if l.startswith("BENCHMARK_JSON "))
    report = json.loads(line.split(" ", 1)[1])
    assert report["source"].startswith("synthetic")
    names = " | ".join(r["name"] for r in report["results"])
    for needle in ("embeddings API", "passages embedded", "speed-up", "second query", "share of pairs",
                   "nDCG@10 retained"):
        assert needle in names, needle
    by_name = {r["name"].split(".")[0]: r for r in report["results"]}
    assert by_name["1a"]["met"] and by_name["2"]["met"] and by_name["3a"]["met"]   # counts, not timings
    for result in report["results"]:
        assert result["ratio"] == result["ratio"] and result["ratio"] > 0
