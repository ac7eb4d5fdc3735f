"""Faults for the cache tests (``test_cache_robust.py``, ``test_reliability.py``, ``test_embedding.py``): a
read-only cache directory, and a rerank run in a child process whose "disk" fills up mid-run.

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
    import json, os, resource, signal, sys, warnings
    import pandas as pd
    import rerankpd
    url, cache_dir, key, total, cached_first = sys.argv[1:6]
    r = rerankpd.get_reranker("dmxapi", api_key=key, base_url=url, batch_size=50, max_concurrency=2)
    texts = [f"text number {i} about colds and flu and tea" * 3 for i in range(int(total))]
    rerankpd.rerank(pd.DataFrame({"text": texts[:int(cached_first)]}), "cold", reranker=r, cache=cache_dir,
                    progress=False)
    size = sum(os.path.getsize(os.path.join(cache_dir, f)) for f in os.listdir(cache_dir))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)           # a write past the limit fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 4096, size + 4096))   # the "disk" is now full
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = rerankpd.rerank(pd.DataFrame({"text": texts}), "cold", reranker=r, cache=cache_dir,
                              progress=False)
    print(json.dumps({"warnings": [str(w.message) for w in caught],
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
    proc = subprocess.run([sys.executable, str(script), url, str(tmp_path / "cache"), api_key, str(total),
                           str(cached_first)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def tamper_score(directory, key: bytes, value) -> None:
    """Replace the stored score of the pair whose 32-byte cache key is ``key`` with ``value`` (any SQL value),
    as an attacker or a broken disk would: the pair's record is taken out of its block and ``value`` is
    written as a row of its own, the way a block of that one pair is stored. Fails when the key is not
    stored, so a test cannot tamper with nothing."""
    import sqlite3

    from rerankpd.cache import SCORES_FILE, SCORES_TABLE

    prefix, text_hash = key[:16], key[16:]
    con = sqlite3.connect(os.path.join(directory, SCORES_FILE), isolation_level=None)
    try:
        con.execute("BEGIN IMMEDIATE")
        rows = con.execute(f"SELECT key, value FROM {SCORES_TABLE} WHERE substr(key, 1, 16) = ?",
                           (prefix,)).fetchall()
        for row_key, blob in rows:
            n = len(blob) // 24
            hashes = [blob[i * 16:(i + 1) * 16] for i in range(n)]
            if text_hash not in hashes:
                continue
            i = hashes.index(text_hash)
            rest = hashes[:i] + hashes[i + 1:]
            scores = blob[n * 16:]
            rest_scores = scores[:i * 8] + scores[(i + 1) * 8:]
            if rest:
                con.execute(f"UPDATE {SCORES_TABLE} SET value = ? WHERE key = ?",
                            (b"".join(rest) + rest_scores, row_key))
            else:
                con.execute(f"DELETE FROM {SCORES_TABLE} WHERE key = ?", (row_key,))
            con.execute(f"INSERT INTO {SCORES_TABLE} (key, value) VALUES (?, ?)",
                        (prefix + b"\xff" * 15 + bytes([len(rows)]), value))
            con.execute("COMMIT")
            return
        raise AssertionError(f"no stored score has the key {key.hex()}")
    finally:
        if con.in_transaction:
            con.execute("ROLLBACK")
        con.close()


def score_record(key: bytes, score: float) -> bytes:
    """A well-formed stored record (the text's hash, then the score as little-endian float64) of ``key``."""
    import struct

    return key[16:] + struct.pack("<d", score)
