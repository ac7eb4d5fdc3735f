"""Faults for the cache tests (``test_cache_robust.py``, ``test_reliability.py``, ``test_embedding.py``): a
read-only cache directory, a rerank run in a child process whose "disk" fills up mid-run, and rows
planted in the cache's table as an attacker would.

:func:`run_with_full_disk`: the child first scores ``cached_first`` texts with the cache on (so the cache file exists and holds them),
caps the size of any file it writes just above the cache's current size, then scores all ``total`` texts
and prints one JSON line: the warnings it caught, how many rows were scored, sent and served from the
cache. A real loopback server answers; nothing is patched.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap

FULL_DISK_CHILD = textwrap.dedent("""
    import json, os, resource, signal, sys, time, warnings
    import pandas as pd
    import rerankpd
    url, cache_dir, key, total, cached_first = sys.argv[1:6]
    r = rerankpd.get_reranker("dmxapi", api_key=key, base_url=url, batch_size=50, max_concurrency=2)
    texts = [f"text number {i} about colds and flu and tea" * 3 for i in range(int(total))]
    rerankpd.rerank(pd.DataFrame({"text": texts[:int(cached_first)]}), "cold", reranker=r, cache=cache_dir,
                    progress=False)
    size = max(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(cache_dir) for f in files)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)           # a write past the limit fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 4096, size + 4096))   # the "disk" is now full
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = rerankpd.rerank(pd.DataFrame({"text": texts}), "cold", reranker=r, cache=cache_dir,
                              progress=False)
    small_runs, small_warnings = [], []
    for run in range(3):  # more calls on the full disk: each warns at once, none waits on the disk
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as more:
            warnings.simplefilter("always")
            rerankpd.rerank(pd.DataFrame({"text": [f"small run {run} text {i}" for i in range(5)]}), "cold",
                            reranker=r, cache=cache_dir, progress=False)
        small_runs.append(time.perf_counter() - start)
        small_warnings.extend(str(w.message) for w in more)
    print(json.dumps({"warnings": [str(w.message) for w in caught], "small_runs": small_runs,
                      "small_warnings": small_warnings,
                      "scored": int(out["rerank_score"].notna().sum()),
                      "sent": out.attrs["rerank"]["sent"], "from_cache": out.attrs["rerank"]["from_cache"]}))
""")


@contextlib.contextmanager
def read_only(path):
    """Make ``path`` read-only: by permissions for a user; by a read-only bind mount for root (to whom
    permissions do not apply)."""
    if os.geteuid() != 0:
        os.chmod(path, 0o500)
        try:
            yield
        finally:
            os.chmod(path, 0o700)
        return
    subprocess.run(["mount", "--bind", str(path), str(path)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(path), str(path)], check=True)
        yield
    finally:
        if subprocess.run(["umount", str(path)]).returncode:
            subprocess.run(["umount", "-l", str(path)], check=True)  # still busy: detach it lazily


def run_with_full_disk(tmp_path, url: str, api_key: str, *, total: int, cached_first: int) -> dict:
    """Run :data:`FULL_DISK_CHILD` against ``url`` with its cache under ``tmp_path``; its JSON report.

    Fails the test (with the child's stderr) when the child exits non-zero; bounded at 120 seconds.
    """
    script = tmp_path / "full.py"
    script.write_text(FULL_DISK_CHILD, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(script), url, str(tmp_path / "cache"), api_key, str(total), str(cached_first)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _store_db(directory) -> str:
    from rerankpd.cache.store import STORE_DIR

    return os.path.join(directory, STORE_DIR, "cache.db")


def plant(directory, key: bytes, value, *, mode: int = 1, filename: str | None = None) -> None:
    """Write a row of diskcache's table directly, as an attacker with write access to the directory (or a
    broken disk) would: any SQL ``value``, any diskcache ``mode`` (1 raw, 2 binary file, 3 text file,
    4 pickle) and any ``filename``."""
    import sqlite3
    import time

    con = sqlite3.connect(_store_db(directory), isolation_level=None)
    try:
        con.execute("DELETE FROM Cache WHERE key = ? AND raw = 1", (key,))
        con.execute(
            "INSERT INTO Cache (key, raw, store_time, expire_time, access_time, access_count, tag, size, "
            "mode, filename, value) VALUES (?, 1, ?, NULL, ?, 0, NULL, 0, ?, ?, ?)",
            (key, time.time(), time.time(), mode, filename, value),
        )
    finally:
        con.close()


def tamper_score(directory, key: bytes, value, *, mode: int = 1, filename: str | None = None) -> None:
    """Replace the stored score of the pair whose 32-byte cache key is ``key``: its record is taken out of
    its block and a block of its own is planted after the query's others, holding ``value`` in ``mode``
    (:func:`plant`). Fails when the key is not stored, so a test cannot tamper with nothing."""
    import sqlite3

    prefix, text_hash = key[:16], key[16:]
    con = sqlite3.connect(_store_db(directory), isolation_level=None)
    found, n = False, 0
    try:
        while (
            row := con.execute(
                "SELECT value FROM Cache WHERE key = ?", (b"S" + prefix + n.to_bytes(4, "big"),)
            ).fetchone()
        ) is not None:
            blob = row[0] if isinstance(row[0], bytes) else b""  # a value planted before
            k = len(blob) // 24
            hashes = [blob[i * 16 : (i + 1) * 16] for i in range(k)]
            if not found and text_hash in hashes:
                i = hashes.index(text_hash)
                scores = blob[k * 16 :]
                rest = b"".join(hashes[:i] + hashes[i + 1 :]) + scores[: i * 8] + scores[(i + 1) * 8 :]
                con.execute("UPDATE Cache SET value = ? WHERE key = ?", (rest, b"S" + prefix + n.to_bytes(4, "big")))
                found = True
            n += 1
    finally:
        con.close()
    if not found:
        raise AssertionError(f"no stored score has the key {key.hex()}")
    plant(directory, b"S" + prefix + n.to_bytes(4, "big"), value, mode=mode, filename=filename)


def score_record(key: bytes, score: float) -> bytes:
    """A well-formed stored record (the text's hash, then the score as little-endian float64) of ``key``."""
    import struct

    return key[16:] + struct.pack("<d", score)
