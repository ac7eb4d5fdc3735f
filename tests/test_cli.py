"""The command line: rank (CSV, Parquet, JSONL), demo, cache info|clear, errors as exit codes."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from rerankpd.cli import main
from rerankpd.testing import LoopbackRerankServer
from tests.conftest import API_KEY, SEED_DOCUMENTS


@pytest.fixture
def table(tmp_path):
    df = pd.DataFrame({"id": [1, 2, 3, 4], "text": ["cats purr", "dogs bark", "NA", "cats and dogs"],
                       "q": ["cats", "dogs", "cats", "dogs"]})
    return df


@pytest.mark.parametrize("ext", ["csv", "parquet", "jsonl"])
def test_rank_file_formats(tmp_path, table, ext, capsys):
    src, dst = tmp_path / f"in.{ext}", tmp_path / f"out.{ext}"
    if ext == "csv":
        table.to_csv(src, index=False)
    elif ext == "parquet":
        table.to_parquet(src, index=False)
    else:
        table.to_json(src, orient="records", lines=True)
    assert main(["rank", str(src), "--query", "cats", "--reranker", "bm25", "-o", str(dst)]) == 0
    out = {"csv": pd.read_csv, "parquet": pd.read_parquet,
           "jsonl": lambda p: pd.read_json(p, lines=True)}[ext](dst)
    assert set(out["id"].tolist()[:2]) == {1, 4}
    assert out["rerank_rank"].tolist()[:2] == [1, 2]
    assert "ranked with bm25" in capsys.readouterr().err


def test_csv_to_stdout_with_query_column_and_top_n(tmp_path, table, capsys):
    src = tmp_path / "in.csv"
    table.to_csv(src, index=False)
    assert main(["rank", str(src), "--query-column", "q", "--top-n", "1", "-r", "bm25"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert lines[0] == "id,text,q,rerank_score,rerank_rank"
    assert len(lines) == 3
    assert main(["rank", str(src), "-q", "cats", "-r", "bm25"]) == 0
    ranked = capsys.readouterr().out
    assert "3,NA,cats," in ranked and "3,NA,cats,,\n" not in ranked     # "NA" is text, scored


def test_rank_against_dmxapi_loopback(tmp_path, table, monkeypatch, capsys):
    src = tmp_path / "in.csv"
    table.to_csv(src, index=False)
    with LoopbackRerankServer(api_key=API_KEY) as srv:
        monkeypatch.setenv("DMXAPI_API_KEY", API_KEY)
        monkeypatch.setenv("DMXAPI_BASE_URL", srv.url)
        assert main(["rank", str(src), "-q", "cats"]) == 0
        assert len(srv.requests) == 1
    captured = capsys.readouterr()
    assert "dmxapi" in captured.err and API_KEY not in captured.out + captured.err


def test_errors_are_one_line_with_exit_codes(tmp_path, table, capsys):
    src = tmp_path / "in.csv"
    table.to_csv(src, index=False)
    assert main(["rank", str(src), "-q", "x", "--column", "body", "-r", "bm25"]) == 2
    err = capsys.readouterr().err
    assert "column 'body'" in err and "Traceback" not in err
    assert main(["rank", str(tmp_path / "nope.csv"), "-q", "x"]) == 2
    assert main(["rank", str(tmp_path / "in.txt"), "-q", "x"]) == 2
    assert ".csv, .parquet or .jsonl" in capsys.readouterr().err
    assert main(["rank", str(src), "-q", "x", "-r", "dmxapi"]) == 2
    assert "DMXAPI_API_KEY" in capsys.readouterr().err


def test_cache_info_and_clear(tmp_path, table, capsys):
    src = tmp_path / "in.csv"
    table.to_csv(src, index=False)
    cache = str(tmp_path / "c")
    assert main(["rank", str(src), "-q", "cats", "-r", "e5", "--cache-dir", cache]) == 0
    capsys.readouterr()
    assert main(["cache", "info", "--cache-dir", cache]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["entries"] == 4 and info["directory"] == cache
    assert main(["cache", "clear", "--cache-dir", cache]) == 0
    assert "removed 4" in capsys.readouterr().out


def test_demo_and_python_m_entry_points():
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    for cmd in ([sys.executable, "-m", "rerankpd", "demo"],
                [os.path.join(os.path.dirname(sys.executable), "rerankpd"), "demo", "-r", "bm25"]):
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert "如何预防感冒" in lines[0]
        assert SEED_DOCUMENTS[0] in lines[3] and lines[3].split()[1] == "1"
        assert result.stderr == ""


def test_reranker_options_on_the_command_line(tmp_path, table, monkeypatch, capsys):
    src = tmp_path / "in.csv"
    table.to_csv(src, index=False)
    with LoopbackRerankServer(api_key=API_KEY) as srv:
        monkeypatch.setenv("DMXAPI_API_KEY", API_KEY)
        assert main(["rank", str(src), "-q", "cats", "-r", "dmxapi", "-O", f"base_url={srv.url}",
                     "-O", "batch_size=2", "-O", "model=bge-reranker-v2-m3", "-O", "timeout=[2, 5]"]) == 0
        bodies = [r.body for r in srv.requests]
    assert [len(b["documents"]) for b in bodies] == [2, 2]
    assert {b["model"] for b in bodies} == {"bge-reranker-v2-m3"}
    capsys.readouterr()
    assert main(["rank", str(src), "-q", "cats", "-r", "dmxapi", "-O", "api_key=sk-secret"]) == 2
    err = capsys.readouterr().err
    assert "shell history" in err and "sk-secret" not in err
    assert main(["rank", str(src), "-q", "cats", "-r", "bm25", "-O", "nonsense"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    assert main(["rank", str(src), "-q", "cats", "-r", "bm25", "-O", "colour=3"]) == 2
    assert "colour" in capsys.readouterr().err
