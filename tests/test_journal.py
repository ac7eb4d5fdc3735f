"""The score cache's run journal: records framed and checked, a killed run's journal recovered, a live one
left alone, nothing left behind, and the plain SQLite path where journals are not supported."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import rerankpd
import rerankpd.cache as cache_module
from rerankpd import journal
from rerankpd.cache import SCORES_FILE, RunCache, ScoreCache
from rerankpd.pairs import build_pairs
from rerankpd.sqlite_store import SQLiteTable, TableWriter


QUERY = "how to prevent a cold"
IDENTITY = '{"provider": "p"}'


def _texts(n: int) -> list[str]:
    return [f"doc {i}: wash hands and drink tea" for i in range(n)]


def _journals(directory) -> list[str]:
    return sorted(name for name in os.listdir(directory) if name.startswith("journal-"))


def test_records_round_trip_and_reading_stops_at_the_first_bad_one():
    rows = [(bytes([i]) * 32, os.urandom(24 * (i + 1))) for i in range(5)]
    data = b"".join(journal.frame(k, v) for k, v in rows)
    assert journal.read_rows(data) == rows
    assert journal.read_rows(data[:-3]) == rows[:4]  # a write cut short by a kill
    one = len(journal.frame(*rows[0]))
    flipped = bytearray(data)
    flipped[one + 40] ^= 1  # a changed byte in the second record
    assert journal.read_rows(bytes(flipped)) == rows[:1]
    assert journal.read_rows(b"garbage" * 10) == []
    assert journal.read_rows(b"") == []


def _run_cache(directory, texts, values):
    pairs = build_pairs([QUERY] * len(texts), texts)
    run = RunCache(ScoreCache(directory), IDENTITY)
    scores = np.full(pairs.n_pairs, np.nan)
    run.lookup(pairs, scores)
    return run, pairs


def test_scores_stay_in_the_journal_until_the_run_ends_then_move_into_the_table(tmp_path):
    texts = _texts(30)
    run, pairs = _run_cache(tmp_path, texts, None)
    run.store(list(range(10)), np.arange(10) / 10)
    run.store(list(range(10, 30)), np.arange(10, 30) / 10, texts[10:30])
    [name] = _journals(tmp_path)
    assert os.stat(tmp_path / name).st_mode & 0o777 == 0o600
    with ScoreCache(tmp_path) as other:  # not yet in the table, and another process cannot take the journal
        assert len(other) == 0
        assert journal.recover(str(tmp_path), other.table) == 0
    run.close()
    assert _journals(tmp_path) == []
    again, pairs = _run_cache(tmp_path, texts, None)
    scores = np.full(pairs.n_pairs, np.nan)
    assert again.lookup(pairs, scores) == 30
    np.testing.assert_array_equal(scores, np.arange(30) / 10)
    again.close()
    assert _journals(tmp_path) == []  # a run that stores nothing makes no journal


KILLED_CHILD = textwrap.dedent("""
    import os, sys
    import numpy as np
    from rerankpd.cache import RunCache, ScoreCache
    from rerankpd.pairs import build_pairs
    directory, n = sys.argv[1], int(sys.argv[2])
    texts = [f"doc {i}: wash hands and drink tea" for i in range(n)]
    pairs = build_pairs(["how to prevent a cold"] * n, texts)
    run = RunCache(ScoreCache(directory), '{"provider": "p"}')
    run.lookup(pairs, np.full(n, np.nan))
    for start in range(0, n, 10):
        run.store(list(range(start, start + 10)), np.arange(start, start + 10) / 100)
    print("stored", flush=True)
    sys.stdin.read()   # killed here: never closed
""")


def test_a_killed_runs_journal_is_recovered_by_the_next_run_and_a_live_one_is_not(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(KILLED_CHILD)
    cache_dir = tmp_path / "cache"
    child = subprocess.Popen([sys.executable, str(script), str(cache_dir), "40"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "stored"
        assert len(_journals(cache_dir)) == 1
        run, pairs = _run_cache(cache_dir, _texts(40), None)  # the child is alive: its journal is its own
        assert _journals(cache_dir) != [] and len(ScoreCache(cache_dir, read_only=True)) == 0
        run.close()
    finally:
        child.kill()
        child.wait(timeout=30)
    run, pairs = _run_cache(cache_dir, _texts(40), None)
    assert _journals(cache_dir) == []  # moved into the table before the lookup
    scores = np.full(pairs.n_pairs, np.nan)
    assert run.lookup(pairs, scores) == 40
    np.testing.assert_array_equal(scores, np.arange(40) / 100)
    run.close()


def test_clear_also_removes_a_killed_runs_journal_and_counts_it(tmp_path):
    table = SQLiteTable.open(str(tmp_path), SCORES_FILE, cache_module.SCORES_TABLE, "BLOB")
    table.close()
    orphan = tmp_path / "journal-0123.scores"
    orphan.write_bytes(journal.frame(b"p" * 32, b"h" * 16 + np.float64(0.5).tobytes()))
    assert rerankpd.clear_cache(tmp_path) == 1
    assert _journals(tmp_path) == []


def test_a_tampered_journal_is_read_up_to_its_first_bad_record(tmp_path):
    with ScoreCache(tmp_path) as cache:
        good = cache_module.ScoreCache.key("d", "q", "a")
        bad = cache_module.ScoreCache.key("d", "q", "b")
    record = journal.frame(good[:16] + b"\x00" * 16, good[16:] + np.float64(0.25).tobytes())
    forged = bytearray(journal.frame(bad[:16] + b"\x01" * 16, bad[16:] + np.float64(9.0).tobytes()))
    forged[-1] ^= 0xFF  # its checksum no longer matches
    (tmp_path / "journal-tampered.scores").write_bytes(record + bytes(forged))
    with ScoreCache(tmp_path) as cache:
        journal.recover(str(tmp_path), cache.table)
        assert cache.get_many([good, bad]) == {good: 0.25}
    assert _journals(tmp_path) == []


def test_without_journals_each_request_is_committed_to_the_table(tmp_path, monkeypatch):
    """Where advisory locks do not exist (Windows), the cache commits each finished request itself."""
    monkeypatch.setattr(journal, "fcntl", None)
    texts = _texts(30)
    run, pairs = _run_cache(tmp_path, texts, None)
    assert type(run._writer) is TableWriter
    run.store(list(range(10)), np.arange(10) / 10)
    with ScoreCache(tmp_path, read_only=True) as other:
        assert len(other) == 10  # committed before store() returned
    run.close()
    assert _journals(tmp_path) == []


@pytest.mark.parametrize("threads", [4])
def test_concurrent_writers_each_append_whole_records(tmp_path, threads):
    """Worker threads storing at once: every record is one append, so all of them are read back."""
    import threading

    texts = _texts(400)
    run, pairs = _run_cache(tmp_path, texts, None)

    def work(k):
        for start in range(k * 100, k * 100 + 100, 5):
            run.store(list(range(start, start + 5)), np.arange(start, start + 5) / 1000)

    workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    run.close()
    again, pairs = _run_cache(tmp_path, texts, None)
    scores = np.full(pairs.n_pairs, np.nan)
    assert again.lookup(pairs, scores) == 400
    np.testing.assert_array_equal(scores, np.arange(400) / 1000)
    again.close()
