"""The command line: rank (CSV, Parquet, JSONL), demo, cache info|clear, errors as exit codes."""

from __future__ import annotations

import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pandas as pd
import pytest

from rerankpd.cli.commands import main, summary_line
from rerankpd.errors import RerankError, RunCancelled
from rerankpd.rerankers import Reranker
from rerankpd.testing import LoopbackRerankServer
from tests.conftest import API_KEY, SEED_DOCUMENTS


@pytest.fixture
def table(tmp_path):
    df = pd.DataFrame(
        {
            "id": [1, 2, 3, 4],
            "text": ["cats purr", "dogs bark", "NA", "cats and dogs"],
            "q": ["cats", "dogs", "cats", "dogs"],
        }
    )
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
    out = {"csv": pd.read_csv, "parquet": pd.read_parquet, "jsonl": lambda p: pd.read_json(p, lines=True)}[ext](dst)
    # "cats purr" and "cats and dogs" tie ("and" is a stop word): the earlier row first
    assert out["id"].tolist() == [1, 4, 2, 3]
    assert out["rerank_rank"].tolist() == [1, 2, 3, 4]
    assert out["rerank_score"].tolist() == pytest.approx([0.260512, 0.260512, 0.0, 0.0], abs=1e-6)
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
    assert "3,NA,cats," in ranked and "3,NA,cats,,\n" not in ranked  # "NA" is text, scored


def test_rank_against_dmxapi_loopback(tmp_path, table, monkeypatch, capsys):
    src = tmp_path / "in.csv"
    table.to_csv(src, index=False)
    with LoopbackRerankServer(api_key=API_KEY) as srv:
        monkeypatch.setenv("DMXAPI_API_KEY", API_KEY)
        monkeypatch.setenv("DMXAPI_BASE_URL", srv.url)
        assert main(["rank", str(src), "-q", "cats"]) == 0
        assert len(srv.requests) == 1
        assert srv.requests[0].body["query"] == "cats"
        assert srv.requests[0].body["documents"] == ["cats purr", "dogs bark", "NA", "cats and dogs"]
    captured = capsys.readouterr()
    assert "dmxapi" in captured.err and API_KEY not in captured.out + captured.err
    ranked = pd.read_csv(io.StringIO(captured.out))
    # the fake scores by word overlap: 0.989174 (cats purr), 0.98885 (cats and dogs), 0.009804 (NA), 0.009174
    assert ranked["id"].tolist() == [1, 4, 3, 2]
    assert ranked["rerank_rank"].tolist() == [1, 2, 3, 4]
    assert ranked["rerank_score"].tolist() == pytest.approx([0.989174, 0.98885, 0.009804, 0.009174], abs=1e-6)


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
    assert info["directory"] == cache and info["kinds"]["scores"] == 1  # one block
    assert info["entries"] == sum(info["kinds"].values()) and info["kinds"]["embeddings"] > 0
    assert main(["cache", "clear", "--cache-dir", cache, "--reranker", "bm25"]) == 0
    assert "removed 0 cache entries of bm25" in capsys.readouterr().out
    assert main(["cache", "clear", "--cache-dir", cache, "--reranker", "e5"]) == 0
    assert f"removed {info['entries']} cache entries of e5" in capsys.readouterr().out
    assert main(["cache", "info", "--cache-dir", cache, "--reranker", "e5"]) == 2
    assert "cache clear" in capsys.readouterr().err


def test_demo_and_python_m_entry_points():
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    for cmd in (
        [sys.executable, "-m", "rerankpd", "demo"],
        [os.path.join(os.path.dirname(sys.executable), "rerankpd"), "demo", "-r", "bm25"],
    ):
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
        monkeypatch.setenv("DMXAPI_BASE_URL", srv.url)  # the key in DMXAPI_API_KEY goes only to this URL's host
        assert (
            main(
                [
                    "rank",
                    str(src),
                    "-q",
                    "cats",
                    "-r",
                    "dmxapi",
                    "-O",
                    f"base_url={srv.url}",
                    "-O",
                    "batch_size=2",
                    "-O",
                    "model=bge-reranker-v2-m3",
                    "-O",
                    "timeout=[2, 5]",
                ]
            )
            == 0
        )
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


# ------------------------------------------------------------------------------------- issue 8: CLI hardening
def _csv(tmp_path, texts, name="in.csv"):
    src = tmp_path / name
    pd.DataFrame({"text": texts}).to_csv(src, index=False)
    return str(src)


def test_coerce_counts_failed_rows_and_says_so_in_the_exit_status(tmp_path, monkeypatch, capsys):
    src = _csv(tmp_path, [f"cats {i}" for i in range(5)])
    with LoopbackRerankServer(api_key=API_KEY, fault_rate=1.0, fault_kinds=("500",)) as srv:
        monkeypatch.setenv("DMXAPI_API_KEY", API_KEY)
        monkeypatch.setenv("DMXAPI_BASE_URL", srv.url)  # the key in DMXAPI_API_KEY goes only to this URL's host
        argv = [
            "rank",
            src,
            "-q",
            "cats",
            "-r",
            "dmxapi",
            "-O",
            f"base_url={srv.url}",
            "-O",
            "max_retries=0",
            "-O",
            "batch_size=2",
            "-o",
            str(tmp_path / "out.csv"),
        ]
        assert main(argv + ["--errors", "coerce"]) == 3
        err = capsys.readouterr().err
        assert "5 rows FAILED" in err and "0 pairs scored" in err and "rerank_error" in err
        out = pd.read_csv(tmp_path / "out.csv")
        assert out["rerank_score"].isna().all() and out["rerank_error"].notna().all()
        assert main(argv) == 1  # --errors raise: the run failed
        assert "Traceback" not in capsys.readouterr().err
    assert "3  " in _help() and "some rows failed" in _help()  # the codes are in --help


def _help() -> str:
    from rerankpd.cli.commands import _parser

    return _parser().format_help()


@pytest.mark.parametrize("output", ["out.xlsx", "missing-dir/out.csv", "a-file/out.csv", "a-dir"])
def test_output_is_checked_before_any_request(tmp_path, monkeypatch, capsys, output):
    src = _csv(tmp_path, ["cats purr", "dogs bark"])
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "a-dir").mkdir()
    with LoopbackRerankServer(api_key=API_KEY) as srv:
        monkeypatch.setenv("DMXAPI_API_KEY", API_KEY)
        monkeypatch.setenv("DMXAPI_BASE_URL", srv.url)
        assert main(["rank", src, "-q", "cats", "-r", "dmxapi", "-o", str(tmp_path / output)]) == 2
        assert srv.requests == []  # nothing was scored (or paid for)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "--output" in err


def test_piping_into_head_is_quiet(tmp_path):
    src = _csv(tmp_path, [f"cats and dogs number {i} " * 4 for i in range(4000)])  # far beyond a pipe buffer
    cli = os.path.join(os.path.dirname(sys.executable), "rerankpd")
    proc = subprocess.Popen(
        [cli, "rank", src, "-q", "cats", "-r", "bm25", "--no-cache"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    head = [proc.stdout.readline() for _ in range(2)]
    proc.stdout.close()  # what `| head -2` does
    err = proc.stderr.read().decode()
    assert proc.wait(60) == 141, err
    assert head[0].startswith(b"text,rerank_score,rerank_rank")
    assert "Traceback" not in err and "Exception ignored" not in err


def test_cache_commands_on_a_file_or_a_typo_say_one_line_and_create_nothing(tmp_path, capsys):
    afile = tmp_path / "not-a-dir"
    afile.write_text("x")
    typo = tmp_path / "typo"
    for action in ("info", "clear"):
        assert main(["cache", action, "--cache-dir", str(afile)]) == 1
        err = capsys.readouterr().err
        assert "not a cache directory" in err and err.count("\n") == 1
        assert main(["cache", action, "--cache-dir", str(typo)]) == 1
        assert "no cache at" in capsys.readouterr().err
        assert not typo.exists()  # an info command creates nothing


@pytest.mark.parametrize(
    "failure",
    [
        sqlite3.OperationalError("attempt to write a readonly database"),
        PermissionError(13, "Permission denied"),
        RerankError("the score cache is read-only"),
    ],
)
def test_cache_commands_on_an_unusable_cache_say_one_line(tmp_path, monkeypatch, capsys, failure):
    """Whatever cache_info/clear_cache raise for a read-only directory (OSError, sqlite3.Error or a
    RerankError): one line and exit 1. (The test runs as root, where chmod cannot make a directory read-only.)"""
    import rerankpd.cli.commands as cli

    def broken(directory=None, **options):
        raise failure

    monkeypatch.setattr(cli, "cache_info", broken)
    monkeypatch.setattr(cli, "clear_cache", broken)
    (tmp_path / "c").mkdir()
    for action in ("info", "clear"):
        assert main(["cache", action, "--cache-dir", str(tmp_path / "c")]) == 1
        err = capsys.readouterr().err
        assert err.startswith("rerankpd: error: the cache at") and err.count("\n") == 1


def test_dry_run_of_a_hosted_service_needs_no_key(tmp_path, capsys):
    src = _csv(tmp_path, ["cats purr", "dogs bark", "cats and dogs"])
    assert main(["rank", src, "-q", "cats", "-r", "cohere", "--dry-run"]) == 0
    captured = capsys.readouterr()
    est = json.loads(captured.out)
    assert est["reranker"] == "cohere" and est["to_score"] == 3 and est["requests"] == 1
    assert "COHERE_API_KEY" in captured.err  # says what a real run will need
    assert main(["rank", src, "-q", "cats", "-r", "cohere"]) == 2  # a real run still does need it
    assert main(["rank", src, "-q", "cats", "-r", "cohere", "-O", "batch_size=1", "--dry-run"]) == 0
    captured = capsys.readouterr()  # -O options reach the keyless planner
    assert json.loads(captured.out)["requests"] == 3 and "COHERE_API_KEY" in captured.err


def test_errors_name_where_the_input_came_from(tmp_path, monkeypatch, capsys):
    src = _csv(tmp_path, ["cats purr", "dogs bark"])
    monkeypatch.setenv("RERANKPD_RERANKER", "foo")
    assert main(["rank", src, "-q", "cats"]) == 2
    assert "RERANKPD_RERANKER='foo'" in capsys.readouterr().err
    monkeypatch.setenv("RERANKPD_RERANKER", "BM25")  # names are case-insensitive
    assert main(["rank", src, "-q", "cats"]) == 0
    assert "ranked with bm25" in capsys.readouterr().err
    monkeypatch.delenv("RERANKPD_RERANKER")

    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text('text\n"an unclosed quote\n', encoding="utf-8")
    bad_jsonl = tmp_path / "bad.jsonl"
    bad_jsonl.write_text('{"text": "ok"}\n{"text": \n', encoding="utf-8")
    for path, kind in ((bad_csv, "CSV"), (bad_jsonl, "JSON Lines")):
        assert main(["rank", str(path), "-q", "cats", "-r", "bm25"]) == 2
        err = capsys.readouterr().err
        assert str(path) in err and f"could not read it as {kind}" in err and "Traceback" not in err

    semi = tmp_path / "semi.csv"
    semi.write_text("id;text\n1;cats purr\n2;dogs bark\n", encoding="utf-8")
    assert main(["rank", str(semi), "-q", "cats", "-r", "bm25"]) == 2
    assert "--sep ';'" in capsys.readouterr().err
    assert main(["rank", str(semi), "-q", "cats", "-r", "bm25", "--sep", ";"]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("1,cats purr,")

    assert main(["rank", src, "-q", "cats", "-r", "bm25", "-O", "batchsize=3"]) == 2
    err = capsys.readouterr().err
    assert "batchsize" in err and "its options are: k1, b" in err and "unexpected keyword" not in err


def test_reranker_names_are_case_insensitive(tmp_path, monkeypatch, capsys):
    import rerankpd

    assert rerankpd.get_reranker("BM25").name == "bm25"
    src = _csv(tmp_path, ["cats purr", "dogs bark"])
    with LoopbackRerankServer(api_key=API_KEY) as srv:
        monkeypatch.setenv("DMXAPI_API_KEY", API_KEY)
        monkeypatch.setenv("DMXAPI_BASE_URL", srv.url)
        assert main(["rank", src, "-q", "cats", "-r", "DMXAPI"]) == 0
        out = pd.DataFrame({"text": ["cats", "dogs"]}).rerank("cats", reranker="DMXAPI", cache=False)
    assert out.attrs["rerank"]["reranker"] == "dmxapi"


def test_verbose_works_before_and_after_the_subcommand():
    from rerankpd.cli.commands import _parser

    assert _parser().parse_args(["-v", "rank", "x.csv", "-q", "q"]).verbose is True
    assert _parser().parse_args(["rank", "x.csv", "-q", "q", "-v"]).verbose is True
    assert _parser().parse_args(["cache", "info", "--verbose"]).verbose is True
    assert _parser().parse_args(["rank", "x.csv", "-q", "q"]).verbose is False


def test_summary_wording_counts_what_was_written_and_every_request(tmp_path, capsys):
    src = _csv(tmp_path, ["cats purr"])
    assert main(["rank", src, "-q", "cats", "-r", "bm25", "--no-cache"]) == 0
    # bm25 computes here: no request to count
    assert "1 row written, ranked with bm25 (bm25s-lucene): 1 pair scored on this machine," in capsys.readouterr().err
    src = _csv(tmp_path, ["cats purr", "dogs bark", "cats", "birds"], "four.csv")
    assert main(["rank", src, "-q", "cats", "-r", "bm25", "--top-n", "2"]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.strip().splitlines()) == 3 and "2 rows (of 4) written" in captured.err
    info = {"reranker": "dmxapi", "model": "m", "rows": 2, "sent": 2, "requests": 1, "attempts": 4, "from_cache": 0}
    assert "2 pairs scored in 4 requests" in summary_line(info, 2)  # retries are requests too
    del info["attempts"]
    assert "2 pairs scored in 1 request," in summary_line(info, 2)


def _rank_in_a_child_until_its_first_request(tmp_path, srv, *extra: str) -> subprocess.Popen:
    """``rerankpd rank`` of three rows, one request at a time, in a child process against ``srv``; returns
    once the server has its first request (or the child ended, or 60 s passed)."""
    src = _csv(tmp_path, [f"cats {i}" for i in range(3)])
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.update(DMXAPI_API_KEY=API_KEY, DMXAPI_BASE_URL=srv.url, RERANKPD_CACHE_DIR=str(tmp_path / "c"))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rerankpd",
            "rank",
            src,
            "-q",
            "cats",
            "-O",
            "batch_size=1",
            "-O",
            "max_concurrency=1",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    deadline = time.monotonic() + 60
    while not srv.requests and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    return proc


def test_ctrl_c_says_at_once_that_the_run_stops_after_the_current_request(tmp_path):
    with LoopbackRerankServer(api_key=API_KEY, latency=4.0) as srv:
        proc = _rank_in_a_child_until_its_first_request(tmp_path, srv, "-o", str(tmp_path / "out.csv"))
        try:
            assert srv.requests, proc.stderr.read().decode()
            lines: list[tuple[float, str]] = []
            reader = threading.Thread(
                target=lambda: lines.extend((time.monotonic(), line.decode()) for line in proc.stderr), daemon=True
            )
            reader.start()
            sent_at = time.monotonic()
            proc.send_signal(signal.SIGINT)
            code = proc.wait(30)
            reader.join(5)
            assert code == 130, lines
        finally:
            if proc.poll() is None:
                proc.kill()
    notice = [(t, line) for t, line in lines if "stopping after the current request..." in line]
    assert notice, lines
    assert notice[0][0] - sent_at < 3.0  # at once, while the request is in flight
    assert "rerun to continue" in lines[-1][1]
    assert len(srv.requests) == 1  # it stopped after the current request


def test_a_second_ctrl_c_quits_at_once(tmp_path):
    with LoopbackRerankServer(api_key=API_KEY, latency=20.0) as srv:
        proc = _rank_in_a_child_until_its_first_request(tmp_path, srv)
        try:
            proc.send_signal(signal.SIGINT)
            time.sleep(0.5)
            started = time.monotonic()
            proc.send_signal(signal.SIGINT)
            assert proc.wait(10) == 130
            assert time.monotonic() - started < 5  # not after the 20 s request
        finally:
            if proc.poll() is None:
                proc.kill()
    err = proc.stderr.read().decode()
    assert "stopping after the current request..." in err and "stopped; requests in flight are lost" in err
    assert "Traceback" not in err


def test_a_warning_on_the_command_line_is_one_line_without_a_library_location(tmp_path, capsys):
    src = _csv(tmp_path, ["cats purr", "dogs bark"])
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    assert main(["rank", src, "-q", "cats", "-r", "e5", "--cache-dir", str(not_a_dir)]) == 0
    err = capsys.readouterr().err
    assert f"the score cache at {not_a_dir} could not be opened" in err
    assert "Warning" not in err and "rerankpd/" not in err.replace(str(tmp_path), "")


def test_a_write_that_fails_after_scoring_is_one_line_and_says_the_scores_are_kept(tmp_path, capsys):
    if not os.path.exists("/dev/full"):
        pytest.fail("this test needs /dev/full (Linux) to play a full disk")
    src = _csv(tmp_path, ["cats purr", "dogs bark"])
    full = tmp_path / "out.csv"
    full.symlink_to("/dev/full")  # every write: No space left on device
    assert main(["rank", src, "-q", "cats", "-r", "e5", "-o", str(full)]) == 1
    err = capsys.readouterr().err.rpartition("\r")[2]  # a progress bar may come first on a slow machine
    assert err.startswith(f"rerankpd: error: could not write {full}: No space left on device")
    assert "rerun to write them" in err and "Traceback" not in err and err.count("\n") == 1


# ----------------------------------------------------------------------------- messages in the CLI's words
def test_reranker_messages_speak_in_flags_not_python_parameters(tmp_path, table, monkeypatch, capsys):
    path = tmp_path / "in.csv"
    table.to_csv(path, index=False)
    monkeypatch.delenv("DMXAPI_API_KEY", raising=False)
    assert main(["rank", str(path), "--query", "q", "-r", "llm"]) == 2
    err = capsys.readouterr().err
    assert "-O model=..." in err and "-O model=gpt-4o-mini" in err and " model=..." not in err.replace("-O model", "")
    assert main(["rank", str(path), "--query", "q", "-r", "dmxapi", "--no-cache"]) == 2
    err = capsys.readouterr().err
    assert "DMXAPI_API_KEY" in err and "api_key" not in err


def _judged(tmp_path):
    df = pd.DataFrame(
        {
            "qid": [1, 1, 2, 2],
            "doc": ["d1", "d2", "d3", "d4"],
            "text": ["cold hands", "stock prices", "warm socks", "cold feet"],
            "rel": [1, 0, 0, 1],
        }
    )
    path = tmp_path / "judged.csv"
    df.to_csv(path, index=False)
    return df, path


def test_evaluate_names_the_file_and_its_columns_for_a_missing_label_column(tmp_path, capsys):
    _, path = _judged(tmp_path)
    assert main(["evaluate", str(path), "--query-column", "qid", "--label-column", "relevance", "-r", "bm25"]) == 2
    err = capsys.readouterr().err
    assert f"--label-column 'relevance' is not a column of {path}" in err
    assert "'qid', 'doc', 'text', 'rel'" in err and "label_column" not in err
    assert main(["evaluate", str(path), "--query-column", "qid", "-l", "rel", "-s", "nope"]) == 2
    assert "--score-column 'nope' is not a column of" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["trec", "csv"])
def test_evaluate_takes_an_ordinary_qrels_file(tmp_path, capsys, kind):
    _, path = _judged(tmp_path)
    if kind == "trec":  # qid 0 docid grade, no header; d9 is relevant but not in the input
        qrels = tmp_path / "qrels.txt"
        qrels.write_text("1 0 d1 1\n1 0 d9 2\n2 0 d4 1\n")
    else:
        qrels = tmp_path / "qrels.csv"
        pd.DataFrame({"qid": [1, 1, 2], "doc": ["d1", "d9", "d4"], "grade": [1, 2, 1], "note": ["", "", ""]}).to_csv(
            qrels, index=False
        )
    assert (
        main(
            [
                "evaluate",
                str(path),
                "--query-column",
                "qid",
                "-l",
                "rel",
                "--qrels",
                str(qrels),
                "--id-column",
                "doc",
                "-m",
                "recall@10",
                "--json",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)["summary"]
    assert summary[0]["recall@10"] == pytest.approx((0.5 + 1.0) / 2)  # d9 counts in query 1's recall base


def test_qrels_are_checked_before_any_scoring(tmp_path, monkeypatch, capsys):
    from rerankpd.testing import LoopbackRerankServer

    _, path = _judged(tmp_path)
    bad = tmp_path / "bad.qrels"
    bad.write_text("1 0 d1 1\n1 d9 2\n")
    wrong_ids = tmp_path / "ids.qrels"
    wrong_ids.write_text("1 0 d1 1\n")
    negative = tmp_path / "neg.qrels"
    negative.write_text("1 0 d1 -1\n")
    with LoopbackRerankServer(api_key="sk-test") as server:
        monkeypatch.setenv("DMXAPI_API_KEY", "sk-test")
        monkeypatch.setenv("DMXAPI_BASE_URL", server.url)
        for qrels, want in [
            (bad, "line 2: expected 4 fields 'QUERY 0 DOC GRADE'"),
            (wrong_ids, "pass --id-column"),
            (negative, "line 1: grade '-1' is not a number >= 0"),
            (tmp_path / "missing.qrels", "file not found"),
        ]:
            assert (
                main(
                    [
                        "evaluate",
                        str(path),
                        "--query-column",
                        "qid",
                        "-l",
                        "rel",
                        "-r",
                        "dmxapi",
                        "--qrels",
                        str(qrels),
                        "--no-cache",
                    ]
                )
                == 2
            )
            err = capsys.readouterr().err
            assert want in err and f"--qrels {qrels}" in err, err
        assert (
            main(
                [
                    "evaluate",
                    str(path),
                    "--query-column",
                    "text",
                    "-l",
                    "rel",
                    "--id-column",
                    "doc",
                    "-r",
                    "dmxapi",
                    "--qrels",
                    str(wrong_ids),
                    "--no-cache",
                ]
            )
            == 2
        )
        assert "pass --query-column naming the column" in capsys.readouterr().err
        assert server.requests == []  # nothing was scored
    import argparse

    from rerankpd.cli.evaluate import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    text = " ".join(parser.format_help().split())
    assert "QUERY 0 DOC GRADE" in text and "qid, doc, grade" in text


# ----------------------------------------------------------------------------- long local runs
class SlowLocal(Reranker):
    """A local reranker (no HTTP) taking 5 ms a document: what e5 on a long file is, faster."""

    name = "slowlocal"
    computes_locally = True  # timing a sample costs nothing
    batch_size = 20

    def identity(self):
        return {"reranker": "slowlocal"}

    def score(self, query, documents):
        time.sleep(0.005 * len(documents))
        return [float(len(d)) for d in documents]


@pytest.fixture
def slow_registered(monkeypatch):
    from rerankpd.rerankers import REGISTRY

    monkeypatch.setitem(REGISTRY, "slowlocal", "tests.cli.test_commands:SlowLocal")
    monkeypatch.delenv("DMXAPI_API_KEY", raising=False)


def test_a_long_local_run_says_how_long_and_the_faster_choices_before_it_starts(
    tmp_path, monkeypatch, capsys, slow_registered
):
    from rerankpd.cli import commands as cli

    monkeypatch.setattr(cli, "LONG_RUN", 0.3)  # "a few minutes", scaled to this small file
    rows = [{"q": q, "text": f"{q} passage {i}"} for q in ("a", "b") for i in range(120)]
    src = tmp_path / "long.csv"
    pd.DataFrame(rows).to_csv(src, index=False)
    assert (
        main(
            ["rank", str(src), "--query-column", "q", "-r", "slowlocal", "--no-cache", "-o", str(tmp_path / "out.csv")]
        )
        == 0
    )
    err = capsys.readouterr().err
    notice, summary = err.strip().splitlines()[0], err.strip().splitlines()[-1]
    assert notice.startswith("rerankpd: slowlocal will score 240 pairs on this machine: about ")
    assert "(measured here: 16 pairs in" in notice
    assert "--reranker bm25" in notice and "--prefilter bm25 --candidates 50" in notice
    assert "DMXAPI_API_KEY" in notice and "Ctrl-C stops it" in notice
    assert "240 pairs scored on this machine" in summary
    # the dry run gives the time too; the cascade it names runs
    assert main(["rank", str(src), "--query-column", "q", "-r", "slowlocal", "--no-cache", "--dry-run"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["seconds"] > 0 and "to score on this machine, about" in captured.err
    assert (
        main(
            [
                "rank",
                str(src),
                "--query-column",
                "q",
                "-r",
                "slowlocal",
                "--no-cache",
                "--prefilter",
                "bm25",
                "--candidates",
                "50",
                "-o",
                str(tmp_path / "cascade.csv"),
            ]
        )
        == 0
    )
    assert "100 pairs scored on this machine" in capsys.readouterr().err
    out = pd.read_csv(tmp_path / "cascade.csv")
    assert out["rerank_score"].notna().sum() == 100 and out["rerank_rank"].notna().all()
    assert main(["rank", str(src), "--query-column", "q", "--prefilter", "nope"]) == 2
    assert "--prefilter 'nope' is neither a reranker" in capsys.readouterr().err


def test_ctrl_c_stops_a_local_run_within_a_second_or_so():
    """A local batch cannot be interrupted, and its result is not paid for: the command waits at most
    LOCAL_PATIENCE for it, then stops (every finished batch is already cached)."""
    from rerankpd.cli.commands import LOCAL_PATIENCE, _interruptible

    def work(cancel):
        time.sleep(20)  # one long local batch that ignores the event until it ends

    timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    started = time.monotonic()
    with pytest.raises(RunCancelled, match="finished one is cached"):
        _interruptible(work, patience=LOCAL_PATIENCE)
    assert time.monotonic() - started < 0.5 + LOCAL_PATIENCE + 1.5
