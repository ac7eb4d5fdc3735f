"""Reliability: chaos against a faulty gateway, SIGKILL and resume, two processes on one cache, hostile
cells, and a cache that cannot be written. Every server is a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rerankpd
from rerankpd.testing import FAULT_KINDS, LoopbackRerankServer, overlap_score
from tests.cache_faults import run_with_full_disk
from tests.conftest import API_KEY

QUERY = "how to prevent a cold"


def _texts(n: int, offset: int = 0) -> list[str]:
    return [f"doc {i}: wash hands, rest and drink tea to prevent a cold ({i % 7})" for i in range(offset, offset + n)]


def _reranker(url: str, **options):
    options.setdefault("api_key", API_KEY)
    options.setdefault("backoff_base", 0.005)
    options.setdefault("backoff_cap", 0.02)
    options.setdefault("timeout", (2.0, 5.0))
    return rerankpd.get_reranker("dmxapi", base_url=url, **options)


def _clean_scores(texts) -> list[float]:
    return [overlap_score(QUERY, t) for t in texts]


# ----------------------------------------------------------------------------------------- chaos
@pytest.mark.slow
def test_chaos_every_fault_kind_and_every_row_gets_the_clean_score(tmp_path):
    texts = _texts(3000)
    df = pd.DataFrame({"text": texts})
    with LoopbackRerankServer(
        api_key=API_KEY, fault_rate=0.3, fault_kinds=FAULT_KINDS, seed=7, stall_seconds=0.5
    ) as server:
        r = _reranker(server.url, batch_size=25, max_concurrency=4, max_retries=12, timeout=(2.0, 0.25))
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # nothing may degrade silently into a warning either
            out = rerankpd.rerank(df, QUERY, reranker=r, cache=tmp_path / "cache", progress=False)
        served = server.faults_served
        received = len(server.requests)
        # The cache holds exactly the clean scores: a rerun (now without faults) sends nothing.
        server.fault_rate = 0.0
        server.reset()
        again = rerankpd.rerank(df, QUERY, reranker=r, cache=tmp_path / "cache", progress=False)
        assert server.requests == []
    assert out.sort_index()["rerank_score"].tolist() == _clean_scores(texts)
    assert out["rerank_rank"].notna().all()
    assert out.attrs["rerank"]["sent"] == 3000 and out.attrs["rerank"]["failed"] == 0
    assert received >= 120 + served * 0.9  # 120 batches, plus a retry for (nearly) every fault
    assert served >= 0.2 * received  # about 30% of requests met a fault
    assert again.sort_index()["rerank_score"].tolist() == _clean_scores(texts)


def test_chaos_serves_each_kind_of_fault(tmp_path):
    """Each fault kind on its own, in sequence, is survived (the random mix above may miss a kind)."""
    texts = _texts(20)
    with LoopbackRerankServer(api_key=API_KEY, stall_seconds=0.5) as server:
        r = _reranker(server.url, batch_size=20, max_concurrency=1, max_retries=2, timeout=(2.0, 0.25))
        for kind in FAULT_KINDS:
            server.fail_next(kind)
            got = r.score(QUERY, texts)
            assert got == _clean_scores(texts), kind
        assert server.faults_served == len(FAULT_KINDS)


# ----------------------------------------------------------------------------------------- crash
CHILD = textwrap.dedent("""
    import json, sys
    import pandas as pd
    import rerankpd
    url, cache_dir, texts_file, key = sys.argv[1:5]
    texts = json.load(open(texts_file, encoding="utf-8"))
    r = rerankpd.get_reranker("dmxapi", api_key=key, base_url=url, batch_size=10, max_concurrency=2,
                              timeout=(2.0, 10.0))
    out = rerankpd.rerank(pd.DataFrame({"text": texts}), "how to prevent a cold", reranker=r,
                          cache=cache_dir, progress=False)
    json.dump(dict(zip(out["text"], out["rerank_score"])), sys.stdout)
""")


def _spawn(tmp_path, name: str, url: str, cache_dir, texts: list[str]) -> subprocess.Popen:
    texts_file = tmp_path / f"{name}.json"
    texts_file.write_text(json.dumps(texts), encoding="utf-8")
    script = tmp_path / "child.py"
    script.write_text(CHILD, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    return subprocess.Popen(
        [sys.executable, str(script), url, str(cache_dir), str(texts_file), API_KEY],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.mark.slow
def test_sigkill_mid_run_then_rerun_sends_only_what_was_not_answered(tmp_path):
    texts = _texts(1000)
    cache_dir = tmp_path / "cache"
    with LoopbackRerankServer(api_key=API_KEY, latency=0.03) as server:
        child = _spawn(tmp_path, "crash", server.url, cache_dir, texts)
        deadline = time.monotonic() + 60
        while len(server.requests) < 40 and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.01)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        assert child.returncode == -signal.SIGKILL, child.stderr.read()[-2000:]
        received_before_kill = len(server.requests)
        assert 40 <= received_before_kill < 100  # killed mid-run
        server.reset()
        out = rerankpd.rerank(
            pd.DataFrame({"text": texts}),
            QUERY,
            reranker=_reranker(server.url, batch_size=10),
            cache=cache_dir,
            progress=False,
        )
        resent = server.documents_received()
    # At most the requests in flight when the child died (its concurrency, 2) are lost and sent again.
    assert len(resent) <= 1000 - (received_before_kill - 2) * 10
    assert len(set(resent)) == len(resent)
    assert out.attrs["rerank"]["from_cache"] + out.attrs["rerank"]["sent"] == 1000
    assert out.sort_index()["rerank_score"].tolist() == _clean_scores(texts)


@pytest.mark.slow
def test_two_processes_share_one_cache_directory(tmp_path):
    cache_dir = tmp_path / "shared-cache"
    first, second = _texts(600), _texts(600, offset=300)  # 300 texts in common
    with LoopbackRerankServer(api_key=API_KEY, latency=0.01) as server:
        children = [
            _spawn(tmp_path, "a", server.url, cache_dir, first),
            _spawn(tmp_path, "b", server.url, cache_dir, second),
        ]
        results = []
        for child in children:
            stdout, stderr = child.communicate(timeout=120)
            assert child.returncode == 0, stderr[-3000:]
            results.append(json.loads(stdout))
        server.reset()
        union = _texts(900)
        out = rerankpd.rerank(
            pd.DataFrame({"text": union}), QUERY, reranker=_reranker(server.url), cache=cache_dir, progress=False
        )
        assert server.requests == []  # both processes' scores all reached the shared cache
    a, b = results
    shared = set(a) & set(b)
    assert len(shared) == 300
    assert all(a[t] == b[t] == overlap_score(QUERY, t) for t in shared)
    assert all(a[t] == overlap_score(QUERY, t) for t in a) and all(b[t] == overlap_score(QUERY, t) for t in b)
    assert out.sort_index()["rerank_score"].tolist() == _clean_scores(union)


# ----------------------------------------------------------------------------------------- hostile cells
HOSTILE = [
    "预防感冒应勤洗手",
    "風邪の予防",
    "감기 예방",
    "🤧🍵💊 stay warm 🧣",
    "الوقاية من نزلات البرد",
    "מניעת הצטננות",
    "nul\x00byte inside",
    "\x00",
    "tab\tand\nnewline",
    "   ",
    "\u200b",
    "",
    "e\u0301 combining",
    "x" * 200_000,
    "Zalgo z̷̢a̸l̴g̵o",
    "\ufeffBOM",
    "a\u202eRTL override",
]


@pytest.fixture(scope="module")
def hostile_server():
    with LoopbackRerankServer(api_key=API_KEY) as srv:
        yield srv


def _check_output(df: pd.DataFrame, out: pd.DataFrame, column: str = "text") -> None:
    assert len(out) == len(df)
    assert out.index.equals(df.index)  # sort=False: same labels, same order
    for cell, score in zip(df[column], out["rerank_score"]):
        blank = cell is None or (isinstance(cell, float) and np.isnan(cell)) or pd.isna(cell) or not str(cell).strip()
        if blank:
            assert np.isnan(score)
        else:
            assert score == overlap_score(QUERY, str(cell))


def test_hand_picked_hostile_cells_with_duplicate_and_mixed_labels(hostile_server):
    texts = HOSTILE + HOSTILE[:5] + [None, np.nan]
    labels = [0, "0", 1.5, ("t", 1), None, 0, 0] + list(range(100, 100 + len(texts) - 7))
    df = pd.DataFrame({"text": texts}, index=pd.Index(labels, dtype=object))
    out = rerankpd.rerank(
        df, QUERY, reranker=_reranker(hostile_server.url, batch_size=4), cache=False, progress=False, sort=False
    )
    _check_output(df, out)
    ranked = rerankpd.rerank(df, QUERY, reranker=_reranker(hostile_server.url), cache=False, progress=False)
    assert sorted(map(repr, ranked.index)) == sorted(map(repr, df.index))
    assert ranked["rerank_rank"].notna().sum() == sum(1 for t in texts if isinstance(t, str) and t.strip())


def test_categorical_and_arrow_columns_with_hostile_cells(hostile_server, tmp_path):
    r = _reranker(hostile_server.url)
    for dtype in ("category", "string", "object"):
        df = pd.DataFrame({"text": pd.Series(HOSTILE + [None] + HOSTILE[:3], dtype=dtype)})
        out = rerankpd.rerank(df, QUERY, reranker=r, cache=tmp_path / "c", progress=False, sort=False)
        _check_output(df, out)


cells = st.one_of(
    st.none(),
    st.text(max_size=40),
    st.text(alphabet=st.characters(whitelist_categories=("Lo", "So", "Zs", "Cc", "Mn")), max_size=20),
    st.sampled_from(HOSTILE[:-4]),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    texts=st.lists(cells, min_size=1, max_size=30),
    labels=st.lists(st.one_of(st.integers(-3, 3), st.sampled_from(["a", "b", "0"])), min_size=30, max_size=30),
    categorical=st.booleans(),
)
def test_property_hostile_frames_keep_every_row(hostile_server, texts, labels, categorical):
    series = pd.Series(texts, dtype="category" if categorical else object)
    df = pd.DataFrame(
        {"text": series.to_numpy(), "n": range(len(texts))}, index=pd.Index(labels[: len(texts)], dtype=object)
    )
    if categorical:
        df["text"] = df["text"].astype("category")
    out = rerankpd.rerank(
        df, QUERY, reranker=_reranker(hostile_server.url, batch_size=7), cache=False, progress=False, sort=False
    )
    _check_output(df, out)
    assert out["n"].tolist() == list(range(len(texts)))


# ----------------------------------------------------------------------------------------- unwritable cache
@pytest.mark.slow
def test_full_cache_disk_warns_once_and_loses_no_result(tmp_path):
    with LoopbackRerankServer(api_key=API_KEY) as server:
        report = run_with_full_disk(tmp_path, server.url, API_KEY, total=4000, cached_first=10)
    assert report["scored"] == 4000, report  # every row scored, none lost
    cache_warnings = [w for w in report["warnings"] if "score cache" in w]
    assert len(cache_warnings) == 1, report["warnings"]  # warned once, not once per request
    # On a full disk SQLite may already fail to open the cache (it writes as it opens) or only on writing.
    assert "could not be opened" in cache_warnings[0] or "could not be written" in cache_warnings[0]


def test_cache_locked_by_another_process_mid_run_warns_once_and_keeps_scoring(tmp_path, monkeypatch):
    """Another process takes the cache database's write lock after the run has opened it: every write
    fails (SQLite busy), the run warns once, scores everything and returns every score."""
    import threading

    import rerankpd.cache.store as store_module
    from rerankpd.rerankers.dmxapi import DMXAPIReranker

    cache_dir = tmp_path / "locked"

    monkeypatch.setattr(store_module, "BUSY_TIMEOUT", 0.2)
    holder: list[sqlite3.Connection] = []
    taken = threading.Lock()

    class LockAfterOpen(DMXAPIReranker):
        def score_batch(self, query, documents):
            with taken:
                if not holder:  # the run has opened the cache and planned; now lock it from outside
                    con = sqlite3.connect(
                        cache_dir / store_module.STORE_DIR / "cache.db",
                        timeout=0.1,
                        isolation_level=None,
                        check_same_thread=False,
                    )
                    con.execute("BEGIN IMMEDIATE")
                    holder.append(con)
            return super().score_batch(query, documents)

    with LoopbackRerankServer(api_key=API_KEY) as server:
        r = LockAfterOpen(api_key=API_KEY, base_url=server.url, batch_size=10, max_concurrency=2)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                out = rerankpd.rerank(
                    pd.DataFrame({"text": _texts(100)}), QUERY, reranker=r, cache=cache_dir, progress=False
                )
        finally:
            for con in holder:
                con.execute("ROLLBACK")
                con.close()
        assert len(server.requests) == 10
    assert out.sort_index()["rerank_score"].tolist() == _clean_scores(_texts(100))
    messages = [str(w.message) for w in caught if "score cache" in str(w.message)]
    assert len(messages) == 1, messages
    assert "could not be written" in messages[0] and "locked" in messages[0]
