"""Property and example tests of the pure helpers: every row scored exactly once, nothing dropped."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rerankpd.pairs import build_pairs, plan_batches, rank_within_groups, scatter, sort_order, top_n_mask

texts_st = st.lists(
    st.one_of(st.none(), st.sampled_from(["a", "b", "感冒", "🙂", "שלום", "a"]), st.text(max_size=6)), max_size=40
)


@given(texts=texts_st, data=st.data())
def test_every_row_maps_to_exactly_its_own_pair(texts, data):
    queries = data.draw(
        st.lists(st.one_of(st.none(), st.sampled_from(["q1", "q2", "问题"])), min_size=len(texts), max_size=len(texts))
    )
    p = build_pairs(queries, texts)
    assert len(p.row_pair) == len(texts)
    for i, (q, t) in enumerate(zip(queries, texts)):
        if q is None or t is None:
            assert p.row_pair[i] == -1
        else:
            assert p.pair(p.row_pair[i]) == (q, t)
    # pairs are unique and each is used by at least one row
    pairs = [p.pair(i) for i in range(p.n_pairs)]
    assert len(set(pairs)) == len(pairs)
    assert set(p.row_pair[p.row_pair >= 0].tolist()) == set(range(p.n_pairs))


@given(texts=texts_st, batch_size=st.integers(1, 7))
def test_plan_batches_covers_each_pair_once_grouped_by_query(texts, batch_size):
    queries = ["q1" if i % 3 else "q2" for i in range(len(texts))]
    p = build_pairs(queries, texts)
    batches = plan_batches(range(p.n_pairs), p.pair_group, batch_size)
    flat = [x for b in batches for x in b]
    assert sorted(flat) == list(range(p.n_pairs))
    for batch in batches:
        assert 1 <= len(batch) <= batch_size
        assert len({int(p.pair_group[x]) for x in batch}) == 1


@given(texts=texts_st, data=st.data())
def test_scatter_rank_sort_keep_every_row(texts, data):
    queries = data.draw(st.lists(st.sampled_from(["q1", "q2", None]), min_size=len(texts), max_size=len(texts)))
    p = build_pairs(queries, texts)
    pair_scores = np.array(data.draw(st.lists(st.floats(-5, 5), min_size=p.n_pairs, max_size=p.n_pairs)), dtype=float)
    rows = scatter(pair_scores, p.row_pair)
    for i in range(len(texts)):
        if p.row_pair[i] < 0:
            assert math.isnan(rows[i])
        else:
            assert rows[i] == pair_scores[p.row_pair[i]]
    ranks = rank_within_groups(rows, p.row_group)
    for g in set(p.row_group[p.row_group >= 0].tolist()):
        in_group = (p.row_group == g) & ~np.isnan(rows)
        assert sorted(ranks[in_group].tolist()) == list(range(1, int(in_group.sum()) + 1))
        # higher score never ranks below a lower one
        idx = np.flatnonzero(in_group)
        for a in idx:
            for b in idx:
                if rows[a] > rows[b]:
                    assert ranks[a] < ranks[b]
    assert (ranks[np.isnan(rows)] == 0).all()
    order = sort_order(p.row_group, ranks)
    assert sorted(order.tolist()) == list(range(len(texts)))


@given(ranks=st.lists(st.integers(0, 6), max_size=30), n=st.one_of(st.none(), st.integers(1, 5)))
def test_top_n_mask(ranks, n):
    r = np.array(ranks, dtype=np.int64)
    mask = top_n_mask(r, n)
    expected = [True] * len(ranks) if n is None else [1 <= x <= n for x in ranks]
    assert mask.tolist() == expected


@settings(max_examples=60, deadline=None)  # the first example pays one-time imports (bm25s)
@given(st.data())
def test_output_index_equals_input_index_for_random_frames(data):
    """The whole pipeline on random frames with duplicate labels, NaN and unicode keeps every row."""
    import rerankpd

    n = data.draw(st.integers(0, 25))
    texts = data.draw(
        st.lists(
            st.one_of(st.none(), st.just(float("nan")), st.text(max_size=8), st.sampled_from(["感冒", "cold", "  "])),
            min_size=n,
            max_size=n,
        )
    )
    labels = data.draw(st.lists(st.one_of(st.integers(0, 3), st.sampled_from(["a", "b"])), min_size=n, max_size=n))
    df = pd.DataFrame({"text": np.array(texts, dtype=object)}, index=pd.Index(labels, dtype=object))
    out = rerankpd.rerank(df, "cold 感冒", reranker="bm25", cache=False, progress=False, sort=False)
    assert out.index.equals(df.index)
    assert out["text"].equals(df["text"])
    scored = out["rerank_score"].notna()
    has_text = [isinstance(t, str) and bool(t.strip()) for t in texts]
    assert scored.tolist() == has_text
    assert (out["rerank_rank"].notna() == scored).all()
    srt = rerankpd.rerank(df, "cold 感冒", reranker="bm25", cache=False, progress=False)
    assert sorted(map(str, srt.index)) == sorted(map(str, df.index))
    assert len(srt) == len(df)


def test_plan_batches_rejects_bad_batch_size():
    with pytest.raises(ValueError, match="batch_size"):
        plan_batches([0], np.array([0]), 0)


def test_examples():
    p = build_pairs("q", ["a", None, "a", "b"])
    assert p.row_pair.tolist() == [0, -1, 0, 1]
    assert plan_batches(range(p.n_pairs), p.pair_group, None) == [[0, 1]]
    ranks = rank_within_groups(np.array([0.1, np.nan, 0.1, 0.9]), p.row_group)
    assert ranks.tolist() == [2, 0, 3, 1]
    assert sort_order(p.row_group, ranks).tolist() == [3, 0, 2, 1]


@given(
    scores=st.lists(st.one_of(st.floats(-3, 3), st.just(float("nan")), st.sampled_from([0.5, 1.0])), max_size=40),
    group=st.sampled_from([0, 3, -1]),
)
def test_one_query_fast_path_equals_the_general_sort(scores, group):
    """With a single query the helpers take a cheaper stable sort; it must order exactly like lexsort."""
    s = np.array(scores, dtype=float)
    groups = np.full(len(s), group, dtype=np.int64)
    ranks = rank_within_groups(s, groups)
    rankable = np.flatnonzero(~np.isnan(s) & (groups >= 0))
    want = np.zeros(len(s), dtype=np.int64)
    order = rankable[np.lexsort((rankable, -s[rankable], groups[rankable]))]
    want[order] = np.arange(1, len(order) + 1)
    assert ranks.tolist() == want.tolist()
    big = np.iinfo(np.int64).max
    general = np.lexsort((np.arange(len(s)), np.where(ranks >= 1, ranks, big), np.where(groups >= 0, groups, big)))
    assert sort_order(groups, ranks).tolist() == general.tolist()
