"""Defects of the hand-written store the caches ran on before diskcache, found by a hostile test as an
attacker with write access to the cache directory and as several processes sharing it would. Each test
failed on that store."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
import zlib

import pandas as pd
import pytest

import rerankpd
from rerankpd.rerankers.base import describe
from rerankpd.testing import LoopbackRerankServer, overlap_score

from .cache_faults import run_with_full_disk
from .conftest import API_KEY
from .test_reliability import QUERY, _reranker, _spawn, _texts


def _rerun(url, texts, cache_dir):
    return rerankpd.rerank(
        pd.DataFrame({"text": texts}), QUERY, reranker=_reranker(url, batch_size=10), cache=cache_dir, progress=False
    )


@pytest.mark.slow
def test_several_processes_with_kills_keep_every_finished_request(tmp_path):
    """Three processes share a directory and one is killed mid-run: the other two keep every score (a
    journal created but not yet locked was once taken for a dead run's and deleted by another process,
    and its run then kept nothing), and a rerun sends only what the killed one had not finished."""
    cache_dir = tmp_path / "shared"
    parts = {"a": _texts(300), "b": _texts(300, offset=300), "c": _texts(300, offset=600)}
    with LoopbackRerankServer(api_key=API_KEY, latency=0.02) as server:
        children = {name: _spawn(tmp_path, name, server.url, cache_dir, texts) for name, texts in parts.items()}
        deadline = time.monotonic() + 60
        c_texts = set(parts["c"])

        def sent_by_c() -> int:
            return sum(1 for r in list(server.requests) if set((r.body or {}).get("documents") or ()) <= c_texts)

        while sent_by_c() < 5 and time.monotonic() < deadline:  # c is mid-run: some requests answered
            time.sleep(0.01)
        time.sleep(0.2)  # the answers to those (20 ms each) have reached c and its cache
        children["c"].send_signal(signal.SIGKILL)
        for name in ("a", "b"):
            stdout, stderr = children[name].communicate(timeout=120)
            assert children[name].returncode == 0, stderr[-3000:]
            assert "could not be written" not in stderr, stderr[-3000:]
            assert len(json.loads(stdout)) == 300
        children["c"].wait(timeout=30)
        assert children["c"].returncode == -signal.SIGKILL
        server.reset()
        out = _rerun(server.url, parts["a"] + parts["b"] + parts["c"], cache_dir)
        resent = server.documents_received()
    assert set(resent) <= set(parts["c"])  # nothing of the two finished runs is paid again
    assert len(resent) < 300 and out.attrs["rerank"]["sent"] == len(resent)
    assert out["rerank_score"].tolist() == [overlap_score(QUERY, t) for t in out["text"]]


def _old_journal_record(url: str, text: str, score: float) -> bytes:
    """A record of the old per-run journal (magic, lengths, key, value, CRC-32), keyed as that store keyed
    the pair, with the stamp that sorted after every real write."""
    digest = hashlib.sha256(describe(_reranker(url)).identity.encode()).hexdigest()

    def field(data: bytes) -> bytes:
        return len(data).to_bytes(8, "little") + data

    prefix = hashlib.sha256(b"rerankpd score key v3\x00" + field(digest.encode()) + field(QUERY.encode())).digest()[:16]
    key = prefix + b"\xff" * 16
    value = hashlib.blake2b(text.encode(), digest_size=16).digest() + struct.pack("<d", score)
    body = struct.pack("<4sII", b"RPJ1", len(key), len(value)) + key + value
    return body + struct.pack("<I", zlib.crc32(body))


def test_a_forged_journal_in_the_directory_injects_no_score(tmp_path):
    """A journal file planted by another user of a shared directory was once moved into the cache and its
    scores served; journals are gone: the file is ignored and a clear removes it."""
    cache_dir = tmp_path / "shared"
    texts = _texts(5)
    with LoopbackRerankServer(api_key=API_KEY) as server:
        _rerun(server.url, texts[:1], cache_dir)
        (cache_dir / "journal-forged.scores").write_bytes(_old_journal_record(server.url, texts[2], 1e9))
        out = _rerun(server.url, texts, cache_dir)
    assert out.sort_index()["rerank_score"].tolist() == [overlap_score(QUERY, t) for t in texts]
    rerankpd.clear_cache(cache_dir)
    assert not (cache_dir / "journal-forged.scores").exists()


SMALL_MEMORY_CHILD = textwrap.dedent("""
    import json, resource, sys
    import pandas as pd
    import rerankpd
    url, cache_dir, key = sys.argv[1:4]
    limit = 2 * 2**30   # a 3 GiB file cannot be read whole in this process
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    r = rerankpd.get_reranker("dmxapi", api_key=key, base_url=url, batch_size=10, max_concurrency=1)
    texts = json.loads(sys.argv[4])
    out = rerankpd.rerank(pd.DataFrame({"text": texts}), "how to prevent a cold", reranker=r, cache=cache_dir,
                          progress=False)
    print(json.dumps(out.attrs["rerank"]["from_cache"]))
""")


def test_a_huge_sparse_journal_does_not_fail_every_run(tmp_path):
    """A 3 GiB sparse journal was read whole by every run (MemoryError) until someone deleted it. The run
    here is a child process whose address space is capped at 2 GiB."""
    cache_dir = tmp_path / "c"
    with LoopbackRerankServer(api_key=API_KEY) as server:
        _rerun(server.url, _texts(10), cache_dir)
        with open(cache_dir / "journal-huge.scores", "wb") as fh:
            fh.truncate(3 * 2**30)
        script = tmp_path / "child.py"
        script.write_text(SMALL_MEMORY_CHILD, encoding="utf-8")
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
        proc = subprocess.run(
            [sys.executable, str(script), server.url, str(cache_dir), API_KEY, json.dumps(_texts(20))],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert json.loads(proc.stdout.strip().splitlines()[-1]) == 10
    rerankpd.clear_cache(cache_dir)
    assert not (cache_dir / "journal-huge.scores").exists()


@pytest.mark.slow
def test_a_full_disk_warns_at_once_and_never_stalls_a_call(tmp_path):
    """Opening a cache on a full disk retried "disk I/O error" for about 2 seconds on every call."""
    with LoopbackRerankServer(api_key=API_KEY) as server:
        report = run_with_full_disk(tmp_path, server.url, API_KEY, total=3000, cached_first=300)
    assert report["scored"] == 3000 and report["from_cache"] == 300, report
    assert max(report["small_runs"]) < 1.0, report["small_runs"]
    assert [w for w in report["warnings"] if "score cache" in w][0].count("could not be written") == 1
    small = [w for w in report["small_warnings"] if "score cache" in w]
    assert len(small) == 3 and all("could not be written" in w for w in small), small  # one per call, at once


@pytest.mark.slow
def test_a_clear_during_another_processs_run_removes_what_it_had_written(tmp_path):
    """A clear while another process was scoring once reported 0 removed (its scores sat in that run's
    journal) and the run's scores came back when the run ended."""
    cache_dir = tmp_path / "cache"
    texts = _texts(1000)
    with LoopbackRerankServer(api_key=API_KEY, latency=0.03) as server:
        child = _spawn(tmp_path, "run", server.url, cache_dir, texts)
        deadline = time.monotonic() + 60
        while len(server.requests) < 30 and time.monotonic() < deadline:
            time.sleep(0.01)
        before_clear = set(server.documents_received())
        removed = rerankpd.clear_cache(cache_dir)
        stdout, stderr = child.communicate(timeout=120)
        assert child.returncode == 0, stderr[-3000:]
        assert removed > 0
        server.reset()
        out = _rerun(server.url, texts, cache_dir)
        resent = server.documents_received()
    # what the clear removed is scored again (all but the requests in flight as it ran, written after it)
    assert set(resent) <= before_clear and len(resent) >= len(before_clear) - 3 * 10
    assert out.attrs["rerank"]["from_cache"] + out.attrs["rerank"]["sent"] == 1000
