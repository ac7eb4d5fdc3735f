"""The batched cache paths: keys hashed by shared prefix, a query's blocks read together, values read as numbers."""

from __future__ import annotations

import hashlib
import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rerankpd.cache.scores as cache_module
from rerankpd.cache import ScoreCache
from rerankpd.cache.scores import RunCache
from rerankpd.core.identity import identity_digest
from rerankpd.pairs import build_pairs
from tests.cache_faults import score_record, tamper_score


@settings(max_examples=50, deadline=None)
@given(
    queries=st.lists(st.text(max_size=20), min_size=1, max_size=4),
    texts=st.lists(st.text(max_size=30), min_size=1, max_size=10),
    data=st.data(),
)
def test_keys_equal_key_of_each_pair(queries, texts, data):
    n = data.draw(st.integers(0, 30))
    groups = data.draw(st.lists(st.integers(0, len(queries) - 1), min_size=n, max_size=n))
    idx = data.draw(st.lists(st.integers(0, len(texts) - 1), min_size=n, max_size=n))
    digest = identity_digest({"provider": "p", "model": "m"})
    assert ScoreCache.keys(digest, queries, texts, groups, idx) == [
        ScoreCache.key(digest, queries[g], texts[t]) for g, t in zip(groups, idx)
    ]


def test_get_many_across_blocks_returns_exactly_the_present_keys(tmp_path):
    digest = identity_digest({"provider": "p"})
    keys = ScoreCache.keys(digest, ["q"], [f"t{i}" for i in range(2500)], [0] * 2500, range(2500))
    with ScoreCache(tmp_path) as cache:
        stored = {k: i / 7 for i, k in enumerate(keys) if i % 3}
        for start in range(0, 2500, 1000):  # three blocks
            cache.set_many({k: v for k, v in stored.items() if k in set(keys[start : start + 1000])})
        found = cache.get_many(keys + [b"not-a-key"] * 5)
    assert found == stored  # exact floats back, across three blocks, misses left out


def test_a_tampered_value_that_is_not_a_finite_number_is_a_miss(tmp_path):
    keys = [ScoreCache.key("d", "q", t) for t in "abcdefgh"]
    with ScoreCache(tmp_path) as cache:
        cache.set_many(dict.fromkeys(keys, 0.25))
    for key, value in zip(
        keys[1:],
        [
            '{"__reduce__": "os.system"}',
            None,
            b"\x00\x01",
            "/etc/passwd",
            float("inf"),
            score_record(keys[6], float("inf")),
            score_record(keys[7], float("nan")),
        ],
    ):
        tamper_score(tmp_path, key, value)
    with ScoreCache(tmp_path) as cache:
        assert cache.get_many(keys) == {keys[0]: 0.25}


@pytest.mark.parametrize("chunk_pairs, chunk_queries", [(700, 1), (700, 2), (10**9, 10**9)])
def test_lookups_in_any_chunking_find_exactly_the_valid_cached_scores(
    tmp_path, monkeypatch, chunk_pairs, chunk_queries
):
    """Queries read one at a time, two at a time, or all at once find the same scores, and nothing else."""
    monkeypatch.setattr(cache_module, "LOOKUP_CHUNK_TEXTS", chunk_pairs)
    monkeypatch.setattr(cache_module, "LOOKUP_CHUNK_QUERIES", chunk_queries)
    identity = '{"provider": "p"}'
    digest = hashlib.sha256(identity.encode()).hexdigest()
    big = [f"big {i}" for i in range(3000)]
    small = [f"small {i}" for i in range(30)]
    huge = [f"huge {i}" for i in range(150)]
    rows = [("qb", t) for t in big] + [("qs", t) for t in small] + [("qh", t) for t in huge]
    random.Random(1).shuffle(rows)  # queries interleaved across chunks
    pairs = build_pairs([q for q, _ in rows], [t for _, t in rows])
    with ScoreCache(tmp_path) as cache:
        stored = {}
        for i, (q, t) in enumerate(rows):
            if i % 3:
                stored[(q, t)] = i / 7
        # the "qh" block holds far more than the run asks for
        extra = {ScoreCache.key(digest, "qh", f"other {i}"): 1.0 for i in range(2000)}
        cache.set_many({**{ScoreCache.key(digest, q, t): v for (q, t), v in stored.items()}, **extra})
        corrupt = [(q, t) for (q, t) in stored if t.endswith("5")]
    for q, t in corrupt:
        tamper_score(tmp_path, ScoreCache.key(digest, q, t), "x")
    for q, t in corrupt:
        del stored[(q, t)]
    run = RunCache.open(tmp_path, identity)
    scores = np.full(pairs.n_pairs, np.nan)
    found = run.lookup(pairs, scores)
    run.close()
    want = np.array([stored.get(pairs.pair(p), np.nan) for p in range(pairs.n_pairs)])
    assert found == len(stored)
    np.testing.assert_array_equal(scores, want)


@pytest.mark.parametrize("compact_blocks", [1, cache_module.COMPACT_BLOCKS])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_each_run_reads_back_exactly_the_latest_finite_score_stored_for_each_pair(
    tmp_path, monkeypatch, compact_blocks, data
):
    """Runs over random frames (shared texts, several queries, requests mixing queries, non-finite scores,
    pairs re-scored by a later run): each lookup finds exactly the latest finite score stored per pair,
    also when every lookup compacts a query's blocks into one (``compact_blocks=1``)."""
    import math
    import uuid

    monkeypatch.setattr(cache_module, "COMPACT_BLOCKS", compact_blocks)

    directory = tmp_path / uuid.uuid4().hex
    identity = '{"provider": "p"}'
    queries = data.draw(st.lists(st.text(max_size=8), min_size=1, max_size=4, unique=True))
    texts = data.draw(st.lists(st.text(max_size=12), min_size=1, max_size=12, unique=True))
    latest: dict = {}
    for _ in range(data.draw(st.integers(1, 3))):
        rows = data.draw(st.lists(st.tuples(st.sampled_from(queries), st.sampled_from(texts)), min_size=1, max_size=20))
        pairs = build_pairs([q for q, _ in rows], [t for _, t in rows])
        run = RunCache.open(directory, identity)
        scores = np.full(pairs.n_pairs, np.nan)
        found = run.lookup(pairs, scores)
        want = np.array([latest.get(pairs.pair(p), np.nan) for p in range(pairs.n_pairs)])
        np.testing.assert_array_equal(scores, want)
        assert found == int(np.isfinite(want).sum())
        ids = data.draw(st.permutations(range(pairs.n_pairs)))[: data.draw(st.integers(0, pairs.n_pairs))]
        values = data.draw(st.lists(st.floats(width=64), min_size=len(ids), max_size=len(ids)))
        size = data.draw(st.integers(1, 5))
        for start in range(0, len(ids), size):
            batch, batch_values = ids[start : start + size], values[start : start + size]
            run.store(batch, np.array(batch_values))
            for i, v in zip(batch, batch_values):
                if math.isfinite(v):
                    latest[pairs.pair(i)] = v
        run.report()
        run.close()
