"""The score cache: JSON only, never the key, private directory, info and clear."""
from __future__ import annotations

import hashlib
import os
import pathlib
import pickle
import sqlite3
import stat
import struct

import pandas as pd
import pytest

import rerankpd
from rerankpd.cache import SCORES_FILE, SCORES_TABLE, ScoreCache, identity_digest
from rerankpd.testing import LoopbackRerankServer
from tests.cache_faults import score_record, tamper_score
from tests.conftest import API_KEY


def test_roundtrip_and_keys(tmp_path):
    cache = ScoreCache(tmp_path / "c")
    digest = identity_digest({"provider": "x", "model": "m"})
    k1, k2 = cache.key(digest, "q", "a"), cache.key(digest, "q", "b")
    assert k1 != k2 and k1 == cache.key(digest, "q", "a")
    cache.set_many({k1: 0.25})
    assert cache.get_many([k1, k2]) == {k1: 0.25}
    assert len(cache) == 1
    assert identity_digest({"a": 1, "b": 2}) == identity_digest({"b": 2, "a": 1})
    assert identity_digest({"model": "m1"}) != identity_digest({"model": "m2"})


def test_values_are_score_records_and_nothing_else_is_ever_read(tmp_path):
    """No pickle, JSON or file reference exists in the format: a value is a BLOB of (text hash, float64)
    records, and a planted value of any other kind (a pickle, JSON text, a path) is a miss, never unpickled,
    parsed or opened."""
    cache = ScoreCache(tmp_path / "c")
    key, other = ScoreCache.key("d", "q", "a"), ScoreCache.key("d", "q", "b")
    with pytest.raises((TypeError, ValueError)):
        cache.set_many({key: {"not": "a number"}})
    cache.set_many({key: 0.5, other: 0.25})
    tamper_score(tmp_path / "c", other, pickle.dumps(["a", "list"]))
    con = sqlite3.connect(tmp_path / "c" / SCORES_FILE)
    values = [value for (value,) in con.execute(f"SELECT value FROM {SCORES_TABLE}")]
    con.close()
    assert score_record(key, 0.5) in values and pickle.dumps(["a", "list"]) in values
    assert cache.get_many([key, other]) == {key: 0.5}
    cache.close()


def test_directory_is_private(tmp_path):
    ScoreCache(tmp_path / "private")
    mode = stat.S_IMODE(os.stat(tmp_path / "private").st_mode)
    assert mode & 0o077 == 0


def test_default_directory_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("RERANKPD_CACHE_DIR", str(tmp_path / "envdir"))
    assert rerankpd.cache_info()["directory"] == str(tmp_path / "envdir")
    monkeypatch.delenv("RERANKPD_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert rerankpd.cache_info()["directory"].startswith(str(tmp_path / "xdg"))


def test_info_and_clear_after_a_run_and_no_key_on_disk(tmp_path):
    df = pd.DataFrame({"text": ["alpha", "beta", "gamma"]})
    with LoopbackRerankServer(api_key=API_KEY) as srv:
        r = rerankpd.get_reranker("dmxapi", api_key=API_KEY, base_url=srv.url)
        df.rerank("alpha", reranker=r, progress=False)
    info = rerankpd.cache_info()
    assert info["entries"] == 3 and info["size_bytes"] > 0
    for path in pathlib.Path(info["directory"]).rglob("*"):
        if path.is_file():
            assert API_KEY.encode() not in path.read_bytes()
    assert rerankpd.clear_cache() == 3
    assert rerankpd.cache_info()["entries"] == 0


def test_unwritable_cache_warns_and_keeps_scoring(tmp_path):
    target = tmp_path / "not-a-dir"
    target.write_text("a file where the cache directory should be")
    df = pd.DataFrame({"text": ["a b", "c"]})
    from rerankpd.rerankers.e5 import E5Reranker  # a pairwise reranker, which uses the cache
    with pytest.warns(RuntimeWarning, match="score cache could not be opened"):
        out = df.rerank("a", reranker=E5Reranker(), cache=target / "sub", progress=False)
    assert out["rerank_score"].notna().all()


def test_key_format_is_stable(tmp_path):
    """Keys on disk outlive releases: changing how they are made would silently miss every cached score
    (a change must come with a new file name, as v3 did). v3: a query's prefix is the first 16 bytes of
    ``SHA-256(tag, identity digest, query)`` with each field's UTF-8 preceded by its length as 8 bytes
    little-endian; a text's hash is BLAKE2b-128 of its UTF-8; a pair's
    key is the two together. A block row is keyed by the prefix and a 16-byte stamp and holds the hashes,
    then the scores as little-endian float64."""
    def field(text: str) -> bytes:
        data = text.encode()
        return len(data).to_bytes(8, "little") + data

    prefix = hashlib.sha256(b"rerankpd score key v3\x00" + field("digest") + field("如何预防感冒")).digest()[:16]
    text_hash = hashlib.blake2b("text 🙂".encode(), digest_size=16).digest()
    want = prefix + text_hash
    assert ScoreCache.key("digest", "如何预防感冒", "text 🙂") == want
    assert ScoreCache.keys("digest", ["x", "如何预防感冒"], ["text 🙂"], [1], [0]) == [want]
    assert SCORES_FILE == "scores-v3.sqlite3"
    with ScoreCache(tmp_path) as cache:
        cache.set_many({want: 0.75})
    con = sqlite3.connect(tmp_path / SCORES_FILE)
    [(row_key, value)] = con.execute(f"SELECT key, value FROM {SCORES_TABLE}").fetchall()
    con.close()
    assert row_key[:16] == prefix and len(row_key) == 32
    assert value == text_hash + struct.pack("<d", 0.75)
