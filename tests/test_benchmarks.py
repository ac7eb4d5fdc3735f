"""The benchmark script runs end to end (quick sizes) and reports every measurement.

Only that it runs and reports is checked here: its figures are read from its output, never asserted in a
unit test (they depend on the machine)."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"


@pytest.mark.slow
def test_benchmark_script_quick_run_reports_every_measurement():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(text for text in proc.stdout.splitlines() if text.startswith("BENCHMARK_JSON "))
    report = json.loads(line.split(" ", 1)[1])
    names = " | ".join(report["results"])
    for needle in (
        "API-bound",
        "seed style",
        "client overhead",
        "cached rerun",
        "memory, bm25",
        "memory, cached",
        "e5 throughput",
        "bm25 throughput",
        "rate limit",
        "import rerankpd",
    ):
        assert needle in names, needle
    for result in report["results"].values():
        assert result["ratio"] == result["ratio"] and result["ratio"] > 0  # a real, positive number
