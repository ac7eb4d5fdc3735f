"""The command line when stdout cannot take the ranking: closed, or a full device. One line, naming stdout."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest


def _csv(tmp_path, n=50):
    path = tmp_path / "in.csv"
    pd.DataFrame({"text": [f"cats and dogs number {i}" for i in range(n)]}).to_csv(path, index=False)
    return str(path)


def _rank(tmp_path, **popen):
    return subprocess.run(
        [sys.executable, "-m", "rerankpd", "rank", _csv(tmp_path), "-q", "cats", "-r", "bm25", "--no-cache"],
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
        check=False,
        **popen,
    )


def test_stdout_closed_says_one_line_naming_stdout(tmp_path):
    proc = _rank(tmp_path, stdout=subprocess.DEVNULL, preexec_fn=lambda: os.close(1))  # `>&-`
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("rerankpd: error:"), proc.stderr
    assert "stdout" in proc.stderr and "closed" in proc.stderr and "None" not in proc.stderr


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_stdout_on_a_full_device_says_one_line_naming_stdout(tmp_path):
    with open("/dev/full", "w") as full:
        proc = _rank(tmp_path, stdout=full)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("rerankpd: error:"), proc.stderr
    assert "could not write to stdout" in proc.stderr and "No space left" in proc.stderr
    assert "None" not in proc.stderr and "Exception ignored" not in proc.stderr
