"""rerankpd.evaluation.metrics against ir-measures (trec_eval's definitions) on generated tie-free frames, and the tie rules."""

from __future__ import annotations

import ir_measures
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ir_measures import AP, RR, P, R, nDCG

from rerankpd.errors import ConfigurationError
from rerankpd.evaluation.metrics import parse_metric, per_query, ranked_order

KS = (1, 3, 5, 20)  # 20 is larger than every generated list


def oracle_measures(k: int, max_label: int) -> dict:
    exponential = {level: 2**level - 1 for level in range(max_label + 1)}
    return {
        f"ndcg@{k}": nDCG @ k,
        "ndcg": nDCG,
        f"mrr@{k}": RR @ k,
        "map": AP,
        f"map@{k}": AP @ k,
        f"recall@{k}": R @ k,
        "recall": R @ 1000,
        f"precision@{k}": P @ k,
        ("exponential", f"ndcg@{k}"): nDCG(gains=exponential) @ k,
    }


def oracle(measures: dict, codes, scores, labels, extra_judged=()) -> dict:
    """ir-measures' per-query values: {(our name, query code): value}. Rows are documents "d<row>"."""
    qrels = [ir_measures.Qrel(f"q{q}", f"d{i}", int(lab)) for i, (q, lab) in enumerate(zip(codes, labels))]
    qrels += [ir_measures.Qrel(f"q{q}", f"extra{i}", int(lab)) for i, (q, lab) in enumerate(extra_judged)]
    run = [ir_measures.ScoredDoc(f"q{q}", f"d{i}", float(s)) for i, (q, s) in enumerate(zip(codes, scores))]
    by_measure = {m: name for name, m in measures.items()}
    # nDCG with gains= goes in a call of its own: computed in one call with plain nDCG, ir-measures 0.4.3
    # gave it 0 on a query where it is 1 (binary labels, where both gains agree)
    groups = [
        [m for m in measures.values() if "gains" not in m.params],
        [m for m in measures.values() if "gains" in m.params],
    ]
    return {
        (by_measure[r.measure], int(r.query_id[1:])): r.value
        for group in groups
        if group
        for r in ir_measures.iter_calc(group, qrels, run)
    }


@st.composite
def tie_free_frames(draw):
    n_queries = draw(st.integers(1, 6))
    sizes = draw(st.lists(st.integers(1, 12), min_size=n_queries, max_size=n_queries))
    codes = np.repeat(np.arange(n_queries), sizes)
    order = draw(st.permutations(range(len(codes))))  # all scores distinct: no ties
    scores = np.asarray(order, dtype=np.float64) / 7.0
    binary = draw(st.booleans())
    max_label = 1 if binary else 4
    labels = np.asarray(draw(st.lists(st.integers(0, max_label), min_size=len(codes), max_size=len(codes))))
    if n_queries > 1 and draw(st.booleans()):
        labels[codes == 0] = 0  # a query with no relevant row
    return codes, scores, labels, max_label


def _ours(codes, scores, labels, k, judged=None, n_queries=None):
    names = [f"ndcg@{k}", "ndcg", f"mrr@{k}", "map", f"map@{k}", f"recall@{k}", "recall", f"precision@{k}"]
    values = per_query(names, codes, scores, labels, judged=judged, n_queries=n_queries)
    exp = per_query([f"ndcg@{k}"], codes, scores, labels, judged=judged, n_queries=n_queries, gain="exponential")
    values[("exponential", f"ndcg@{k}")] = exp[f"ndcg@{k}"]
    return values


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=tie_free_frames(), k=st.sampled_from(KS))
def test_every_per_query_value_equals_ir_measures(frame, k):
    codes, scores, labels, max_label = frame
    expected = oracle(oracle_measures(k, max_label), codes, scores, labels)
    ours = _ours(codes, scores, labels, k)
    assert len(expected) == len(ours) * (codes.max() + 1)
    for (name, q), value in expected.items():
        assert ours[name][q] == pytest.approx(value, abs=1e-9), (name, q)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=tie_free_frames(), k=st.sampled_from(KS), data=st.data())
def test_judgments_beyond_the_ranking_equal_ir_measures(frame, k, data):
    """qrels for documents the first stage never retrieved: recall, AP and ideal DCG of the collection."""
    codes, scores, labels, max_label = frame
    n_queries = int(codes.max()) + 1
    extra = data.draw(st.lists(st.tuples(st.integers(0, n_queries - 1), st.integers(0, max_label)), max_size=8))
    expected = oracle(oracle_measures(k, max_label), codes, scores, labels, extra)
    judged = (
        np.concatenate([codes, [q for q, _ in extra]]).astype(int),
        np.concatenate([labels, [lab for _, lab in extra]]).astype(float),
    )
    ours = _ours(codes, scores, labels, k, judged=judged, n_queries=n_queries)
    for (name, q), value in expected.items():
        assert ours[name][q] == pytest.approx(value, abs=1e-9), (name, q)


def test_known_values_by_hand():
    # one query, ranked labels [0, 2, 1] (scores descending), two relevant
    v = per_query(["ndcg@3", "mrr@10", "map", "recall@1", "precision@5"], [0, 0, 0], [3, 2, 1], [0, 2, 1])
    dcg = 2 / np.log2(3) + 1 / np.log2(4)
    ideal = 2 + 1 / np.log2(3)
    assert v["ndcg@3"][0] == pytest.approx(dcg / ideal)
    assert v["mrr@10"][0] == 0.5
    assert v["map"][0] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert v["recall@1"][0] == 0.0
    assert v["precision@5"][0] == pytest.approx(2 / 5)  # divides by k although the list has 3 rows


def test_ties_follow_input_position_and_missing_scores_rank_last():
    scores = np.array([0.5, np.nan, 0.5, 0.9, 0.5])
    assert ranked_order(np.zeros(5, dtype=int), scores).tolist() == [3, 0, 2, 4, 1]
    # the labels follow the same order: the relevant row at position 2 is third
    v = per_query(["mrr@10"], np.zeros(5, dtype=int), scores, [0, 1, 1, 0, 0])
    assert v["mrr@10"][0] == pytest.approx(1 / 3)


def test_constant_scores_reproduce_the_input_order_exactly():
    rng = np.random.default_rng(1)
    codes = np.repeat(np.arange(50), 20)
    labels = rng.integers(0, 3, len(codes))
    names = ["ndcg@10", "mrr@10", "map", "recall@5", "precision@3"]
    original = per_query(names, codes, -np.arange(len(codes), dtype=float), labels)
    constant = per_query(names, codes, np.full(len(codes), 0.25), labels)
    for name in names:
        np.testing.assert_array_equal(constant[name], original[name])


def test_queries_without_rows_or_relevant_rows_score_zero_and_negative_codes_are_left_out():
    v = per_query(
        ["ndcg@10", "map", "recall@10", "mrr@10"], [0, 0, -1, 2], [1.0, 2.0, 3.0, 1.0], [0, 0, 1, 1], n_queries=3
    )
    for name in v:
        assert v[name].tolist()[:2] == [0.0, 0.0]
        assert v[name][2] == 1.0


def test_metric_names_are_checked():
    assert parse_metric("nDCG@10").name == "ndcg@10" and parse_metric("RR@5").name == "mrr@5"
    with pytest.raises(ConfigurationError, match="unknown metric 'ndgc@10'"):
        parse_metric("ndgc@10")
    with pytest.raises(ConfigurationError, match="needs a cutoff"):
        parse_metric("precision")
    with pytest.raises(ConfigurationError, match="k >= 1"):
        parse_metric("ndcg@0")
    with pytest.raises(ValueError, match="differ in length"):
        per_query(["map"], [0, 0], [1.0], [1, 0])


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=tie_free_frames(), k=st.sampled_from(KS), data=st.data())
def test_with_ties_and_missing_scores_values_are_those_of_the_documented_order(frame, k, data):
    """Ties by input position, NaN last: ir-measures on the order that rule gives (made tie-free by rank)."""
    codes, _, labels, max_label = frame
    scores = np.asarray(
        data.draw(st.lists(st.sampled_from([0.0, 1.0, 2.0, np.nan]), min_size=len(codes), max_size=len(codes)))
    )
    rule = sorted(
        range(len(codes)), key=lambda i: (codes[i], np.isnan(scores[i]), 0.0 if np.isnan(scores[i]) else -scores[i], i)
    )
    tie_free = np.empty(len(codes))
    tie_free[rule] = -np.arange(len(codes), dtype=float)
    expected = oracle(oracle_measures(k, max_label), codes, tie_free, labels)
    ours = _ours(codes, scores, labels, k)
    for (name, q), value in expected.items():
        assert ours[name][q] == pytest.approx(value, abs=1e-9), (name, q)
