"""The score cache under attack and under faults: colliding keys, tampered rows, corrupt values, read-only
and full disks, a deleted directory, Ctrl-C inside the cache's own code, and cache_info / clear_cache on
paths that cannot hold a cache."""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import shutil
import sqlite3
import sys
import threading
import time
import warnings

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rerankpd
import rerankpd.cache.scores as cache_module
from rerankpd.cache import ScoreCache
from rerankpd.cache.store import STORE_DIR, CacheSettings, Store
from rerankpd.errors import CacheError
from rerankpd.rerankers.base import describe
from rerankpd.rerankers.dmxapi import DMXAPIReranker
from rerankpd.testing import LoopbackRerankServer, overlap_score
from tests.cache_faults import plant, read_only, run_with_full_disk, score_record, tamper_score
from tests.conftest import API_KEY
from tests.interrupts import interruptible_offsets

QUERY = "how to prevent a cold"


def _texts(n: int, offset: int = 0) -> list[str]:
    return [f"doc {i}: wash hands, rest and drink tea to prevent a cold" for i in range(offset, offset + n)]


def _reranker(url: str, **options) -> DMXAPIReranker:
    options.setdefault("batch_size", 10)
    return DMXAPIReranker(api_key=API_KEY, base_url=url, backoff_base=0.005, backoff_cap=0.02, **options)


def _run(texts, url, cache_dir, query=QUERY, **options):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = rerankpd.rerank(
            pd.DataFrame({"text": texts}), query, reranker=_reranker(url, **options), cache=cache_dir, progress=False
        )
    return out, [str(w.message) for w in caught if "score cache" in str(w.message)]


def _key(url: str, query: str, text: str) -> bytes:
    identity = describe(_reranker(url)).identity
    return ScoreCache.key(hashlib.sha256(identity.encode()).hexdigest(), query, text)


# ----------------------------------------------------------------------------------------- #2 keys
def test_a_nul_in_a_text_cannot_make_two_pairs_share_a_key(tmp_path):
    assert ScoreCache.key("d", "wash\0hands", "soap") != ScoreCache.key("d", "wash", "hands\0soap")
    with LoopbackRerankServer(api_key=API_KEY) as server:
        _run(["soap"], server.url, tmp_path, query="wash\0hands")
        server.reset()
        out, _ = _run(["hands\0soap"], server.url, tmp_path, query="wash")
        assert server.documents_received() == ["hands\0soap"]  # not served the other pair's score
    assert out["rerank_score"].tolist() == [overlap_score("wash", "hands\0soap")]


_field = st.text(alphabet=st.sampled_from("ab\0\x01\x08é"), max_size=6)


@settings(max_examples=300, deadline=None)
@given(first=st.tuples(_field, _field, _field), second=st.tuples(_field, _field, _field))
def test_keys_are_injective_on_identity_query_and_text(first, second):
    d1, q1, t1 = first
    d2, q2, t2 = second
    key1 = ScoreCache.key(hashlib.sha256(d1.encode()).hexdigest(), q1, t1)
    key2 = ScoreCache.key(hashlib.sha256(d2.encode()).hexdigest(), q2, t2)
    assert (key1 == key2) == (first == second)
    # the same characters split differently between query and text never share a key
    joined = q1 + t1
    for cut in range(len(joined) + 1):
        if cut != len(q1):
            assert ScoreCache.key("d", joined[:cut], joined[cut:]) != ScoreCache.key("d", q1, t1)


def test_caches_of_the_old_formats_are_ignored_and_cleared(tmp_path):
    """0.1's diskcache file, the one-row-per-pair v2 file, the v3 block table, the old embeddings file and
    a killed run's journal are never read, and clearing removes them with their entries."""
    legacy = tmp_path / "cache.db"
    con = sqlite3.connect(legacy)
    con.execute("CREATE TABLE Cache (key TEXT, raw INT, value TEXT)")
    con.execute("INSERT INTO Cache VALUES ('k', 1, '0.5')")
    con.commit()
    con.close()
    con = sqlite3.connect(tmp_path / "scores-v2.sqlite3")
    con.execute("PRAGMA journal_mode = WAL")
    con.execute("CREATE TABLE scores (key BLOB PRIMARY KEY, value REAL) WITHOUT ROWID")
    con.executemany("INSERT INTO scores VALUES (?, ?)", [(bytes([i]) * 32, 0.5) for i in range(2)])
    con.commit()
    for name, table in (("scores-v3.sqlite3", "score_blocks"), ("embeddings.sqlite3", "embeddings")):
        old = sqlite3.connect(tmp_path / name)
        old.execute(f"CREATE TABLE {table} (key BLOB PRIMARY KEY, value BLOB) WITHOUT ROWID")
        old.execute(f"INSERT INTO {table} VALUES (?, ?)", (b"k" * 32, b"v" * 24))
        old.commit()
        old.close()
    (tmp_path / "journal-0123.scores").write_bytes(b"RPJ1" + bytes(60))
    with LoopbackRerankServer(api_key=API_KEY) as server:
        out, messages = _run(_texts(3), server.url, tmp_path)
        assert out.attrs["rerank"]["sent"] == 3 and messages == []
    con.close()
    assert rerankpd.cache_info(tmp_path)["kinds"]["scores"] == 1  # one block
    assert rerankpd.clear_cache(tmp_path) == 1  # that one (the old files are removed, their rows not counted)
    assert sorted(os.listdir(tmp_path)) == [STORE_DIR]


# ----------------------------------------------------------------------------------------- #5, #6 tampered rows
def _plant_old_format_row(directory, url: str, text: str, filename: str) -> None:
    """What a tampered 0.1 cache (diskcache's ``cache.db``) looked like: the pair's row in diskcache's
    'text file' mode (3), naming any file; 0.1 opened it and served its content as the score."""
    identity = describe(_reranker(url)).identity
    old_key = hashlib.sha256(f"{hashlib.sha256(identity.encode()).hexdigest()}\0{QUERY}\0{text}".encode()).hexdigest()
    os.makedirs(directory, mode=0o700, exist_ok=True)
    con = sqlite3.connect(os.path.join(directory, "cache.db"))
    con.execute("CREATE TABLE IF NOT EXISTS Settings (key TEXT NOT NULL UNIQUE, value)")
    con.execute(
        "CREATE TABLE IF NOT EXISTS Cache (rowid INTEGER PRIMARY KEY, key BLOB, raw INTEGER, "
        "store_time REAL, expire_time REAL, access_time REAL, access_count INTEGER DEFAULT 0, tag BLOB, "
        "size INTEGER DEFAULT 0, mode INTEGER DEFAULT 0, filename TEXT, value BLOB)"
    )
    con.execute(
        "INSERT INTO Cache (key, raw, store_time, expire_time, access_time, access_count, tag, size, "
        "mode, filename, value) VALUES (?, 1, 0, NULL, 0, 0, NULL, 0, 3, ?, NULL)",
        (old_key, filename),
    )
    con.commit()
    con.close()


def test_a_tampered_row_never_reads_another_file(tmp_path):
    secret = tmp_path / "outside.txt"
    secret.write_text("123.5")
    cache_dir = tmp_path / "cache"
    text = "doc with a tampered row"
    with LoopbackRerankServer(api_key=API_KEY) as server:
        _plant_old_format_row(cache_dir, server.url, text, str(secret))
        out, _ = _run([text], server.url, cache_dir)
        assert server.documents_received() == [text]
    assert out["rerank_score"].tolist() == [overlap_score(QUERY, text)] != [123.5]


def test_a_row_of_the_store_pointing_at_a_fifo_is_a_miss_and_does_not_hang_the_run(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    cache_dir = tmp_path / "cache"
    text = "doc pointing at a fifo"
    with LoopbackRerankServer(api_key=API_KEY) as server:
        _run(["another doc"], server.url, cache_dir)
        prefix = _key(server.url, QUERY, text)[:16]
        plant(cache_dir, b"S" + prefix + bytes(4), None, mode=2, filename=str(fifo))
        server.reset()
        out, _ = _run([text], server.url, cache_dir)
        assert server.documents_received() == [text]
    assert out["rerank_score"].tolist() == [overlap_score(QUERY, text)]
    assert rerankpd.clear_cache(cache_dir) > 0 and fifo.exists()


def test_a_row_pointing_at_a_fifo_does_not_hang_the_run(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    cache_dir = tmp_path / "cache"
    text = "doc pointing at a fifo"
    result: dict = {}
    with LoopbackRerankServer(api_key=API_KEY) as server:
        _plant_old_format_row(cache_dir, server.url, text, str(fifo))
        worker = threading.Thread(target=lambda: result.update(out=_run([text], server.url, cache_dir)[0]), daemon=True)
        worker.start()
        worker.join(30)
        finished = not worker.is_alive()
        if not finished:  # release the reader so the thread ends, then fail
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            os.write(fd, b"1")
            os.close(fd)
            worker.join(10)
    assert finished, "the run hung on a FIFO named by a cache row"
    assert result["out"]["rerank_score"].tolist() == [overlap_score(QUERY, text)]


def test_corrupt_values_are_misses_overwritten_and_the_rest_of_the_cache_keeps_working(tmp_path):
    texts = _texts(40)
    with LoopbackRerankServer(api_key=API_KEY) as server:
        _run(texts[:20], server.url, tmp_path)
        bad = {
            texts[0]: None,
            texts[1]: "not json {",
            texts[2]: b"\x80\x04K\x01.",
            texts[3]: "/etc/passwd",
            texts[4]: float("inf"),
        }
        for text, value in bad.items():
            tamper_score(tmp_path, _key(server.url, QUERY, text), value)
        tamper_score(
            tmp_path, _key(server.url, QUERY, texts[5]), score_record(_key(server.url, QUERY, texts[5]), float("nan"))
        )
        bad[texts[5]] = float("nan")
        server.reset()
        out, messages = _run(texts, server.url, tmp_path)
        assert sorted(server.documents_received()) == sorted(list(bad) + texts[20:])  # 15 hits served
        assert messages == []
        server.reset()
        out, _ = _run(texts, server.url, tmp_path)
        assert server.requests == []  # healed: the fresh scores overwrote the bad values
    assert out.sort_index()["rerank_score"].tolist() == [overlap_score(QUERY, t) for t in texts]


# ----------------------------------------------------------------------------------------- #7 unwritable caches
def test_a_read_only_cache_is_read_and_warns_once_that_new_scores_are_not_kept(tmp_path):
    texts = _texts(60)
    cache_dir = tmp_path / "ro"
    with LoopbackRerankServer(api_key=API_KEY) as server:
        _run(texts[:40], server.url, cache_dir)
        server.reset()
        with read_only(cache_dir):
            out, messages = _run(texts, server.url, cache_dir)
            assert sorted(server.documents_received()) == sorted(texts[40:])  # the 40 hits were served
            assert len(messages) == 1 and "could not be written" in messages[0] and "not be kept" in messages[0]
            assert "locked" not in messages[0]
            info = rerankpd.cache_info(cache_dir)
            assert info["entries"] == 4 and info["scores"] == 40  # four blocks of ten
            with pytest.raises(CacheError, match="read-only"):
                rerankpd.clear_cache(cache_dir)
            server.reset()
            out, messages = _run(texts[:40], server.url, cache_dir)  # all cached: nothing to warn about
            assert server.requests == [] and messages == []
    assert out.sort_index()["rerank_score"].tolist() == [overlap_score(QUERY, t) for t in texts[:40]]
    assert rerankpd.cache_info(cache_dir)["entries"] == 4


@pytest.mark.slow
def test_a_full_disk_still_serves_the_cached_scores(tmp_path):
    with LoopbackRerankServer(api_key=API_KEY) as server:
        report = run_with_full_disk(tmp_path, server.url, API_KEY, total=6000, cached_first=600)
    assert report["scored"] == 6000 and report["from_cache"] == 600 and report["sent"] == 5400, report
    cache_warnings = [w for w in report["warnings"] if "score cache" in w]
    assert len(cache_warnings) == 1 and "could not be written" in cache_warnings[0], report["warnings"]


def test_deleting_the_cache_directory_mid_run_warns_instead_of_writing_to_a_deleted_file(tmp_path):
    cache_dir = tmp_path / "doomed"

    class DeletesTheCache(DMXAPIReranker):
        calls = 0

        def score_batch(self, query, documents):
            type(self).calls += 1
            if type(self).calls == 3:
                shutil.rmtree(cache_dir)
            return super().score_batch(query, documents)

    with LoopbackRerankServer(api_key=API_KEY) as server:
        r = DeletesTheCache(api_key=API_KEY, base_url=server.url, batch_size=10, max_concurrency=1)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = rerankpd.rerank(
                pd.DataFrame({"text": _texts(100)}), QUERY, reranker=r, cache=cache_dir, progress=False
            )
    messages = [str(w.message) for w in caught if "score cache" in str(w.message)]
    assert len(messages) == 1 and "could not be written" in messages[0] and "removed" in messages[0], messages
    assert out["rerank_score"].notna().all()
    assert not cache_dir.exists()  # nothing recreated behind the user's back either


# ----------------------------------------------------------------------------------------- #9 Ctrl-C
def _is_store(code) -> bool:
    return code.co_name == "store" and code.co_filename == cache_module.__file__


def _interrupt_at_point(n: int, files: tuple[str, ...]):
    """A tracer raising KeyboardInterrupt at the n-th point where CPython could deliver one (see
    :func:`tests.interrupts.interruptible_offsets`) in the cache's code (and anything it calls in ``files``)
    while the pipeline hands a finished request to :meth:`RunCache.store`."""
    state = {"points": 0, "depth": 0, "fired": False}
    offsets: dict = {}

    def local(frame, event, arg):
        frame.f_trace_opcodes = True
        if event == "opcode" and not state["fired"]:
            code = frame.f_code
            if code not in offsets:
                offsets[code] = interruptible_offsets(code)
            if frame.f_lasti in offsets[code]:
                state["points"] += 1
                if state["points"] == n:
                    state["fired"] = True
                    raise KeyboardInterrupt
        elif event == "return" and _is_store(frame.f_code):
            state["depth"] -= 1
        return local

    def tracer(frame, event, arg):
        code = frame.f_code
        if state["fired"]:
            return None
        if _is_store(code):
            state["depth"] += 1
            frame.f_trace_opcodes = True
            return local
        if state["depth"] and code.co_filename.startswith(files):
            frame.f_trace_opcodes = True
            return local
        return None

    return tracer, state


@pytest.mark.slow
def test_ctrl_c_inside_the_cache_keeps_every_score_the_run_waits_for(tmp_path):
    """Statistical, bounded and seeded: 40 runs, each interrupted at a random point (where CPython delivers a
    Ctrl-C) of the cache code that a finished request runs through (diskcache's too, as it was when the loss was found). The run then waits
    for the requests in flight; every one of their scores must reach the cache (a rerun sends at most the
    one request whose write the interrupt cut), and no warning may blame another process's lock.

    At concurrency 1 the scores are written in the user's thread, where a Ctrl-C lands; above it they are
    written by the worker thread that ran the request, which Python never interrupts (the scheduler's own
    tests check that the write happens there, before the next request is sent)."""
    import importlib.util

    files = tuple(
        os.path.dirname(spec.origin)
        for spec in map(importlib.util.find_spec, ("rerankpd", "diskcache"))
        if spec is not None and spec.origin
    )
    rng = random.Random(9)
    texts = _texts(120)
    interrupted = 0
    with LoopbackRerankServer(api_key=API_KEY, latency=0.01) as server:
        for trial in range(40):
            cache_dir = tmp_path / f"t{trial}"
            tracer, state = _interrupt_at_point(rng.randint(1, 60), files)
            r = _reranker(server.url, max_concurrency=1)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                sys.settrace(tracer)
                try:
                    rerankpd.rerank(pd.DataFrame({"text": texts}), QUERY, reranker=r, cache=cache_dir, progress=False)
                    partial = None
                except KeyboardInterrupt as exc:
                    partial = exc.partial
                finally:
                    sys.settrace(None)
            messages = [str(w.message) for w in caught if "score cache" in str(w.message)]
            assert not any("locked" in m for m in messages), (trial, messages)
            if partial is None:
                assert not state["fired"]
                continue
            interrupted += 1
            scored = int(partial["rerank_score"].notna().sum())
            server.reset()
            out, _ = _run(texts, server.url, cache_dir)
            resent = out.attrs["rerank"]["sent"]
            assert resent <= len(texts) - scored + 10, (trial, scored, resent)
    assert interrupted >= 20  # the interrupts did land


# ----------------------------------------------------------------------------------------- info and clear
def test_cache_info_creates_nothing_and_reports_an_empty_cache(tmp_path):
    missing = tmp_path / "typo"
    assert rerankpd.cache_info(missing) == {
        "directory": str(missing),
        "entries": 0,
        "size_bytes": 0,
        "kinds": {"scores": 0, "embeddings": 0, "windows": 0},
        "scores": 0,
        "size_limit": 2**30,
    }
    assert rerankpd.clear_cache(missing) == 0
    assert not missing.exists()


def test_cache_info_and_clear_on_a_file_raise_a_clear_error(tmp_path):
    a_file = tmp_path / "scores.csv"
    a_file.write_text("not a directory")
    for call in (rerankpd.cache_info, rerankpd.clear_cache):
        with pytest.raises(CacheError, match=f"{a_file}.*is a file, not a directory"):
            call(a_file)
    assert a_file.read_text() == "not a directory"


def test_a_file_that_is_not_a_database_gives_a_clear_error(tmp_path):
    (tmp_path / STORE_DIR).mkdir()
    (tmp_path / STORE_DIR / "cache.db").write_text("garbage " * 100)
    with pytest.raises(CacheError, match=str(tmp_path)):
        rerankpd.cache_info(tmp_path)
    with LoopbackRerankServer(api_key=API_KEY) as server:
        out, messages = _run(_texts(3), server.url, tmp_path)  # a run warns and scores without it
    assert out["rerank_score"].notna().all()
    assert len(messages) == 1 and "could not be opened" in messages[0]


def test_many_connections_opening_one_new_cache_at_once_all_get_a_writable_cache(tmp_path):
    """Setting up a new store from several connections at once must wait, never be taken for a read-only
    cache (seen with Dask partitions in threads: a rerun then paid again)."""
    for trial in range(10):
        settings = CacheSettings(str(tmp_path / f"c{trial}"))
        barrier = threading.Barrier(6)
        stores, errors = [], []

        def open_one():
            barrier.wait()  # noqa: B023 - called within this iteration
            try:
                stores.append(Store(settings))  # noqa: B023 - called within this iteration
            except Exception as exc:  # noqa: BLE001 - recorded and asserted below
                errors.append(exc)  # noqa: B023 - called within this iteration

        threads = [threading.Thread(target=open_one) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not errors
        assert [s.read_only for s in stores] == [False] * 6, f"trial {trial}"
        for s in stores:
            s.close()


def _open_files_under(directory) -> list[str]:
    """The files under ``directory`` this process holds open (from /proc/self/fd)."""
    links = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own descriptor is gone by now
            links.append(os.readlink(f"/proc/self/fd/{fd}"))
    return [link for link in links if link.startswith(str(directory))]


def test_a_run_that_ends_leaves_no_cache_file_open(tmp_path):
    """Four threads commit finished requests, each on its own SQLite connection; when the run ends every
    one of them is closed, and so are a reread's and a read-only run's."""
    cache_dir = tmp_path / "c"
    with LoopbackRerankServer(api_key=API_KEY) as server:
        out, _ = _run(_texts(40), server.url, cache_dir, batch_size=2, max_concurrency=4)
        assert out.attrs["rerank"]["sent"] == 40
        assert len(server.requests) == 20
        assert _open_files_under(cache_dir) == []
        assert _run(_texts(40), server.url, cache_dir)[0].attrs["rerank"]["sent"] == 0
        assert _open_files_under(cache_dir) == []
        with read_only(cache_dir):
            assert _run(_texts(40), server.url, cache_dir)[0].attrs["rerank"]["sent"] == 0
            assert _open_files_under(cache_dir) == []


def test_an_unreadable_window_cache_warns_once_and_is_a_miss(tmp_path):
    from rerankpd.cache.windows import WindowCache

    windows = WindowCache.open(tmp_path, "digest")
    windows.put("q", ["a", "b"], [1, 0])
    assert windows.get("q", ["a", "b"]) == [1, 0]
    windows._store.cache._sql("DROP TABLE Cache")  # the table goes away under an open cache
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert windows.get("q", ["a", "b"]) is None
        assert windows.get("q", ["a", "b"]) is None
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "the LLM window cache at" in messages[0] and "reranking without it" in messages[0]
    windows.close()


def test_writes_queued_behind_another_are_committed_together_before_each_returns(tmp_path):
    """While one thread holds the store, the others queue; the next one to get it commits every queued write
    in one transaction, and each write returns only once its entry is in the database (read back here
    through a connection of its own)."""
    store = Store(CacheSettings(str(tmp_path)))
    holding, release = threading.Event(), threading.Event()

    def slow(cache):
        holding.set()
        release.wait(10)
        cache.set(b"Xslow", b"slow")

    transactions = []
    transact = store.cache.transact

    def counted(*args, **kwargs):
        transactions.append(1)
        return transact(*args, **kwargs)

    store.cache.transact = counted
    seen, threads = {}, []

    def write(i):
        ok = store.write(lambda cache: cache.set(b"X%d" % i, b"%d" % i))
        with contextlib.closing(sqlite3.connect(os.path.join(store.path, "cache.db"))) as con:
            rows = con.execute("SELECT value FROM Cache WHERE key = ?", (b"X%d" % i,)).fetchall()
        seen[i] = (ok, rows)

    first = threading.Thread(target=store.write, args=(slow,))
    first.start()
    assert holding.wait(10)
    for i in range(6):
        threads.append(threading.Thread(target=write, args=(i,)))
        threads[-1].start()
    time.sleep(0.3)  # all six are queued behind the slow write
    release.set()
    for t in [first, *threads]:
        t.join(30)
    assert seen == {i: (True, [(b"%d" % i,)]) for i in range(6)}
    assert len(transactions) == 2  # the slow write's, then one for the six queued behind it
    store.close()
