"""The batched cache paths: many keys per SQL query, keys hashed by shared prefix, values read as numbers."""
from __future__ import annotations

import sqlite3

from hypothesis import given, settings
from hypothesis import strategies as st

from rerankpd.cache import SCORES_FILE, ScoreCache, identity_digest


@settings(max_examples=50, deadline=None)
@given(queries=st.lists(st.text(max_size=20), min_size=1, max_size=4),
       texts=st.lists(st.text(max_size=30), min_size=1, max_size=10), data=st.data())
def test_keys_equal_key_of_each_pair(queries, texts, data):
    n = data.draw(st.integers(0, 30))
    groups = data.draw(st.lists(st.integers(0, len(queries) - 1), min_size=n, max_size=n))
    idx = data.draw(st.lists(st.integers(0, len(texts) - 1), min_size=n, max_size=n))
    digest = identity_digest({"provider": "p", "model": "m"})
    assert ScoreCache.keys(digest, queries, texts, groups, idx) == [
        ScoreCache.key(digest, queries[g], texts[t]) for g, t in zip(groups, idx)]


def test_get_many_across_chunks_returns_exactly_the_present_keys(tmp_path, monkeypatch):
    import rerankpd.sqlite_store as store

    monkeypatch.setattr(store, "READ_CHUNK", 1000)  # three read queries
    digest = identity_digest({"provider": "p"})
    keys = ScoreCache.keys(digest, ["q"], [f"t{i}" for i in range(2500)], [0] * 2500, range(2500))
    with ScoreCache(tmp_path) as cache:
        stored = {k: i / 7 for i, k in enumerate(keys) if i % 3}
        cache.set_many(stored)
        found = cache.get_many(keys + [b"not-a-key"] * 5)
    assert found == stored  # exact floats back, across three SQL chunks, misses left out


def test_a_tampered_value_that_is_not_a_finite_number_is_a_miss(tmp_path):
    keys = [ScoreCache.key("d", "q", t) for t in "abcdef"]
    with ScoreCache(tmp_path) as cache:
        cache.set_many(dict.fromkeys(keys, 0.25))
    con = sqlite3.connect(tmp_path / SCORES_FILE)
    for key, value in zip(keys[1:], ['{"__reduce__": "os.system"}', None, b"\x00\x01", "/etc/passwd",
                                     float("inf")]):
        con.execute("UPDATE scores SET value = ? WHERE key = ?", (value, key))
    con.commit()
    con.close()
    with ScoreCache(tmp_path) as cache:
        assert cache.get_many(keys) == {keys[0]: 0.25}
