"""The cache's store: bytes only, private directory, keys, info and clear, size limit, expiry, tags."""

from __future__ import annotations

import hashlib
import os
import pathlib
import pickle
import stat
import struct
import time

import pandas as pd
import pytest

import rerankpd
from rerankpd.cache import CacheSettings, ScoreCache
from rerankpd.cache.store import STORE_DIR
from rerankpd.core.identity import identity_digest
from rerankpd.errors import ConfigurationError
from rerankpd.testing import LoopbackRerankServer
from tests.cache_faults import plant, score_record, tamper_score
from tests.conftest import API_KEY


def test_roundtrip_and_keys(tmp_path):
    cache = ScoreCache(tmp_path / "c")
    digest = identity_digest({"provider": "x", "model": "m"})
    k1, k2 = cache.key(digest, "q", "a"), cache.key(digest, "q", "b")
    assert k1 != k2 and k1 == cache.key(digest, "q", "a")
    cache.set_many({k1: 0.25})
    assert cache.get_many([k1, k2]) == {k1: 0.25}
    cache.set_many({k1: 0.5})
    assert cache.get_many([k1]) == {k1: 0.5}  # the later block wins
    assert identity_digest({"a": 1, "b": 2}) == identity_digest({"b": 2, "a": 1})
    assert identity_digest({"model": "m1"}) != identity_digest({"model": "m2"})
    cache.close()


@pytest.mark.parametrize(
    "mode, value, filename",
    [
        (4, pickle.dumps(["a", "list"]), None),  # a pickle: never unpickled
        (1, "0.5", None),  # text in raw mode
        (1, 7, None),  # an integer
        (1, 0.5, None),  # a float
        (2, None, "SECRET"),  # a binary value file: never opened
        (3, None, "SECRET"),  # a text value file: never opened
        (1, b"\x00" * 23, None),  # not whole (hash, score) records
    ],
)
def test_a_value_stored_in_any_other_mode_is_a_miss_never_unpickled_or_opened(tmp_path, mode, value, filename):
    cache_dir = tmp_path / "c"
    cache = ScoreCache(cache_dir)
    key, other = ScoreCache.key("d", "q", "a"), ScoreCache.key("d", "q", "b")
    with pytest.raises(TypeError):
        cache.store.cache.set(b"X", {"not": "bytes"})
    cache.set_many({key: 0.5, other: 0.25})
    secret = tmp_path / "secret.bin"
    secret.write_bytes(score_record(other, 123.5) * 2)
    canary = tmp_path / "unpickled"
    if mode == 4:  # a pickle that would leave a file behind if it were ever unpickled
        value = pickle.dumps(_Canary(str(canary)))
    tamper_score(cache_dir, other, value, mode=mode, filename=str(secret) if filename else None)
    assert cache.get_many([key, other]) == {key: 0.5}
    cache.close()
    assert not canary.exists()
    rerankpd.clear_cache(cache_dir)
    assert secret.exists()  # a file named by a row is not the cache's: a clear never removes it


class _Canary:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_directory_and_database_are_private(tmp_path):
    ScoreCache(tmp_path / "private").close()
    assert stat.S_IMODE(os.stat(tmp_path / "private").st_mode) & 0o077 == 0
    database = tmp_path / "private" / STORE_DIR / "cache.db"
    assert stat.S_IMODE(os.stat(database).st_mode) & 0o077 == 0


def test_settings_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("RERANKPD_CACHE_DIR", str(tmp_path / "envdir"))
    monkeypatch.setenv("RERANKPD_CACHE_SIZE_LIMIT", "200MB")
    monkeypatch.setenv("RERANKPD_CACHE_EXPIRE", "3600")
    info = rerankpd.cache_info()
    assert info["directory"] == str(tmp_path / "envdir") and info["size_limit"] == 200_000_000
    settings = rerankpd.cache.settings_for(True)
    assert settings.expire == 3600.0 and settings.size_limit == 200_000_000
    assert rerankpd.cache.settings_for(CacheSettings(size_limit="2GiB", expire=5)).size_limit == 2 * 2**30
    monkeypatch.setenv("RERANKPD_CACHE_EXPIRE", "soon")
    with pytest.raises(ConfigurationError, match="RERANKPD_CACHE_EXPIRE='soon'"):
        rerankpd.cache.settings_for(True)
    monkeypatch.delenv("RERANKPD_CACHE_EXPIRE")
    monkeypatch.setenv("RERANKPD_CACHE_SIZE_LIMIT", "lots")
    with pytest.raises(ConfigurationError, match="RERANKPD_CACHE_SIZE_LIMIT='lots'"):
        rerankpd.cache_info()
    monkeypatch.delenv("RERANKPD_CACHE_SIZE_LIMIT")
    assert rerankpd.cache_info()["size_limit"] == 2**30
    monkeypatch.delenv("RERANKPD_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert rerankpd.cache_info()["directory"].startswith(str(tmp_path / "xdg"))


def _run(url, texts, cache, query="alpha"):
    r = rerankpd.get_reranker("dmxapi", api_key=API_KEY, base_url=url, batch_size=2)
    return pd.DataFrame({"text": texts}).rerank(query, reranker=r, cache=cache, progress=False)


def test_info_and_clear_after_a_run_and_no_key_on_disk(tmp_path):
    with LoopbackRerankServer(api_key=API_KEY) as srv:
        _run(srv.url, ["alpha", "beta", "gamma"], True)
    info = rerankpd.cache_info()
    # two requests of one query: two blocks
    assert info["entries"] == 2 and info["kinds"] == {"scores": 2, "embeddings": 0, "windows": 0}
    assert info["scores"] == 3
    assert info["size_bytes"] > 0
    for path in pathlib.Path(info["directory"]).rglob("*"):
        if path.is_file():
            assert API_KEY.encode() not in path.read_bytes()
    assert rerankpd.clear_cache() == 2
    assert rerankpd.cache_info()["entries"] == 0


def test_clear_by_reranker_removes_only_that_rerankers_entries(tmp_path):
    with ScoreCache(tmp_path, tag="cohere") as a, ScoreCache(tmp_path, tag="jina") as b:
        a.set_many({ScoreCache.key("d1", "q", "x"): 1.0})
        b.set_many({ScoreCache.key("d2", "q", "x"): 2.0})
    assert rerankpd.clear_cache(tmp_path, reranker="cohere") == 1  # its block
    with ScoreCache(tmp_path) as cache:
        assert list(cache.get_many([ScoreCache.key("d1", "q", "x"), ScoreCache.key("d2", "q", "x")]).values()) == [2.0]
    with LoopbackRerankServer(api_key=API_KEY) as srv:
        _run(srv.url, ["alpha", "beta"], tmp_path)
        r = rerankpd.get_reranker("dmxapi", api_key=API_KEY, base_url=srv.url)
        assert rerankpd.clear_cache(tmp_path, reranker=r) == 1
        srv.reset()
        assert _run(srv.url, ["alpha", "beta"], tmp_path).attrs["rerank"]["sent"] == 2
    assert rerankpd.cache_info(tmp_path)["entries"] == 2  # jina's block and dmxapi's new one
    with pytest.raises(ValueError, match="reranker"):
        rerankpd.clear_cache(tmp_path, reranker=3)


def test_entries_expire(tmp_path):
    settings = CacheSettings(tmp_path, expire=0.4)
    key = ScoreCache.key("d", "q", "a")
    with ScoreCache(settings) as cache:
        cache.set_many({key: 0.5})
        assert cache.get_many([key]) == {key: 0.5}
        time.sleep(0.6)
        assert cache.get_many([key]) == {}
    with LoopbackRerankServer(api_key=API_KEY) as srv:
        _run(srv.url, ["alpha"], settings)
        time.sleep(0.6)
        srv.reset()
        assert _run(srv.url, ["alpha"], settings).attrs["rerank"]["sent"] == 1  # expired: scored again
        assert _run(srv.url, ["alpha"], settings).attrs["rerank"]["sent"] == 0


def test_a_query_found_in_many_blocks_is_compacted_into_one_that_keeps_the_latest_score_tag_and_expiry(tmp_path):
    """A first run writes one block per request; the rerun that finds more than COMPACT_BLOCKS of them
    rewrites them as one block, so later reruns read one entry per query."""
    texts = [f"text {i}" for i in range(40)]
    with LoopbackRerankServer(api_key=API_KEY) as srv:
        first = _run(srv.url, texts, tmp_path)  # 20 requests of 2: 20 blocks
        assert rerankpd.cache_info(tmp_path)["kinds"]["scores"] == 20
        for _ in range(2):
            srv.reset()
            again = _run(srv.url, texts, tmp_path)
            assert again.attrs["rerank"]["sent"] == 0 and srv.requests == []
            assert again["rerank_score"].tolist() == first["rerank_score"].tolist()
            assert rerankpd.cache_info(tmp_path)["kinds"]["scores"] == 1
            assert rerankpd.cache_info(tmp_path)["scores"] == 40
        assert rerankpd.clear_cache(tmp_path, reranker="dmxapi") == 1  # the compacted block kept its tag

    # a pair re-scored in a later block keeps its latest score; the compacted block expires with the first
    keys = ScoreCache.keys("d", ["q"], [f"t{i}" for i in range(40)], [0] * 40, range(40))
    with ScoreCache(CacheSettings(tmp_path, expire=1.0)) as soon:
        soon.set_many({keys[0]: 1.0, keys[1]: 1.0})
    with ScoreCache(CacheSettings(tmp_path, expire=3600)) as later:
        for i in range(1, 20):
            later.set_many({keys[2 * i]: 2.0, keys[2 * i + 1]: 2.0, keys[0]: 3.0})
    with ScoreCache(tmp_path) as cache:
        found = cache.get_many(keys)
        assert len(found) == 40 and found[keys[0]] == 3.0 and found[keys[1]] == 1.0
    assert rerankpd.cache_info(tmp_path)["kinds"]["scores"] == 1
    time.sleep(1.2)
    with ScoreCache(tmp_path) as cache:
        assert cache.get_many(keys) == {}


def test_the_size_limit_evicts_the_least_recently_used_entries(tmp_path):
    """A 1 MiB limit and about 4 MiB of blocks written by 39 "runs": each run that wrote evicts down to the
    limit as it ends, and a query read by every run survives them all."""
    settings = CacheSettings(tmp_path, size_limit=2**20)
    keep = ScoreCache.keys("d", ["keep"], [f"t{i}" for i in range(100)], [0] * 100, range(100))
    with ScoreCache(settings) as cache:
        cache.set_many(dict.fromkeys(keep, 1.0))
    for q in range(1, 40):
        with ScoreCache(settings) as cache:
            assert len(cache.get_many(keep)) == 100  # read: recently used
            keys = ScoreCache.keys("d", [f"q{q}"], [f"t{i}" for i in range(4000)], [0] * 4000, range(4000))
            for start in range(0, 4000, 1000):
                cache.set_many(dict.fromkeys(keys[start : start + 1000], 2.0))
        assert rerankpd.cache_info(tmp_path)["size_bytes"] < 2**20 + 2**19
    with ScoreCache(settings) as cache:
        first = ScoreCache.keys("d", ["q1"], [f"t{i}" for i in range(4000)], [0] * 4000, range(4000))
        assert cache.get_many(first) == {}  # written long ago and never read since: evicted
        last = ScoreCache.keys("d", ["q39"], [f"t{i}" for i in range(4000)], [0] * 4000, range(4000))
        assert len(cache.get_many(last)) == 4000 and len(cache.get_many(keep)) == 100


def test_key_format_is_stable(tmp_path):
    """Keys on disk outlive releases: changing how they are made would silently miss every cached score
    (a change must come with a new store directory). A query's prefix is the first 16 bytes of
    ``SHA-256(tag, identity digest, query)`` with each field's UTF-8 preceded by its length as 8 bytes
    little-endian; a text's hash is BLAKE2b-128 of its UTF-8; a pair's key is the two together. A query's
    block ``n`` is stored under ``S`` + prefix + ``n`` (4 bytes big-endian) and holds the hashes, then
    the scores as little-endian float64."""

    def field(text: str) -> bytes:
        data = text.encode()
        return len(data).to_bytes(8, "little") + data

    prefix = hashlib.sha256(b"rerankpd score key v4\x00" + field("digest") + field("如何预防感冒")).digest()[:16]
    text_hash = hashlib.blake2b("text 🙂".encode(), digest_size=16).digest()
    want = prefix + text_hash
    assert ScoreCache.key("digest", "如何预防感冒", "text 🙂") == want
    assert ScoreCache.keys("digest", ["x", "如何预防感冒"], ["text 🙂"], [1], [0]) == [want]
    assert STORE_DIR == "store-v4"
    with ScoreCache(tmp_path) as cache:
        cache.set_many({want: 0.75})
        assert cache.store.cache.get(b"S" + prefix + bytes(4)) == text_hash + struct.pack("<d", 0.75)
        cache.set_many({want: 0.5})
        assert cache.store.cache.get(b"S" + prefix + (1).to_bytes(4, "big")) == text_hash + struct.pack("<d", 0.5)
    plant(tmp_path, b"S" + prefix + bytes(4), None)  # not a block: skipped, the later ones still read
    with ScoreCache(tmp_path) as cache:
        assert cache.get_many([want]) == {want: 0.5}
        cache.store.cache.delete(b"S" + prefix + bytes(4))  # a hole at block 0 (evicted, expired)
        assert cache.get_many([want]) == {}  # blocks are read up to the first missing one
        cache.set_many({want: 0.25})  # the next write fills the hole
        assert cache.get_many([want]) == {want: 0.5}  # block 1 is read again, and is the later one
