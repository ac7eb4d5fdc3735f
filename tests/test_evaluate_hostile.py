"""rerankpd.evaluate on hostile judgments: duplicate qrels, infinite labels, and ties, against ir-measures."""

from __future__ import annotations

import ir_measures
import numpy as np
import pandas as pd
import pytest
from ir_measures import AP, RR, P, R, nDCG

import rerankpd

# RR@10 comes from another provider (msmarco) with its own order of ties; RR (whole ranking) from trec_eval
NAMES = {nDCG @ 10: "ndcg@10", AP: "map", R @ 5: "recall@5", P @ 3: "precision@3", RR: "mrr"}


def assert_equals_ir_measures(ev, ranking, qrels, run):
    results = list(ir_measures.iter_calc(list(NAMES), qrels, run))
    assert results
    for r in results:
        ours = ev.values(ranking, NAMES[r.measure])[ev.queries.index(r.query_id)]
        assert ours == pytest.approx(r.value, abs=1e-9), (ranking, r)


# ------------------------------------------------------------------------------------ duplicate qrels
def small():
    df = pd.DataFrame(
        {"q": ["q1"] * 4, "doc": ["d1", "d2", "d3", "d4"], "label": [1, 0, 0, 0], "s": [4.0, 3.0, 2.0, 1.0]}
    )
    return df


def test_a_qrels_row_given_twice_counts_once_as_ir_measures_does():
    df = small()
    qrels = pd.DataFrame({"query": ["q1", "q1", "q1"], "doc": ["d9", "d9", "d1"], "label": [1, 1, 1]})
    ev = rerankpd.evaluate(
        df,
        query_column="q",
        label_column="label",
        score_columns="s",
        qrels=qrels,
        id_column="doc",
        metrics=list(NAMES.values()),
    )
    assert ev.values("s", "recall@5")[0] == pytest.approx(0.5)
    judged = [ir_measures.Qrel(q, d, int(lab)) for q, d, lab in qrels.itertuples(index=False)]
    run = [ir_measures.ScoredDoc("q1", d, s) for d, s in zip(df.doc, df.s)]
    assert_equals_ir_measures(ev, "s", judged, run)


def test_qrels_that_judge_a_document_twice_differently_are_refused_with_the_rows_named():
    df = small()
    qrels = pd.DataFrame(
        {"query": ["q1", "q1", "q1"], "doc": ["d9", "d1", "d9"], "label": [1, 1, 2]}, index=[10, 11, 12]
    )
    with pytest.raises(ValueError, match=r"qrels.*'d9'.*10.*12"):
        rerankpd.evaluate(df, query_column="q", label_column="label", score_columns="s", qrels=qrels, id_column="doc")


# ------------------------------------------------------------------------------------ infinite labels
@pytest.mark.parametrize("label", [np.inf, -np.inf])
def test_an_infinite_label_is_refused_with_its_row(label):
    df = small().astype({"label": float})
    df.loc[2, "label"] = label
    with pytest.raises(ValueError, match=r"label.*index 2.*finite"):
        rerankpd.evaluate(df, query_column="q", label_column="label", score_columns="s")


def test_an_infinite_qrels_label_is_refused():
    qrels = pd.DataFrame({"query": ["q1"], "doc": ["d9"], "label": [np.inf]})
    with pytest.raises(ValueError, match="finite"):
        rerankpd.evaluate(
            small(), query_column="q", label_column="label", score_columns="s", qrels=qrels, id_column="doc"
        )


def test_a_label_whose_exponential_gain_overflows_is_refused():
    df = small()
    df.loc[1, "label"] = 2000
    with pytest.raises(ValueError, match=r"index 1 has label 2000.*gain='exponential'"):
        rerankpd.evaluate(df, query_column="q", label_column="label", score_columns="s", gain="exponential")
    ev = rerankpd.evaluate(df, query_column="q", label_column="label", score_columns="s")  # linear: fine
    assert np.isfinite(ev.summary.loc["s", "ndcg@10"])


# ------------------------------------------------------------------------------------ ties
def tie_heavy(n_queries: int = 30, rows: int = 12, seed: int = 3) -> pd.DataFrame:
    """Scores from three values only, ids in an order unrelated to the rows' (so the two tie rules differ)."""
    rng = np.random.default_rng(seed)
    records = []
    for q in range(n_queries):
        ids = rng.permutation(rows)
        for i in range(rows):
            label = int(rng.integers(0, 3) * (rng.random() < 0.5))
            records.append({"q": f"q{q}", "doc": f"doc{ids[i]:03d}", "label": label, "s": float(rng.integers(0, 3))})
    return pd.DataFrame(records)


def test_with_id_column_ties_follow_trec_eval_document_id_descending():
    df = tie_heavy()
    ev = rerankpd.evaluate(
        df, query_column="q", label_column="label", score_columns="s", id_column="doc", metrics=list(NAMES.values())
    )
    qrels = [ir_measures.Qrel(q, d, lab) for q, d, lab in zip(df.q, df.doc, df.label)]
    run = [ir_measures.ScoredDoc(q, d, s) for q, d, s in zip(df.q, df.doc, df.s)]
    assert_equals_ir_measures(ev, "s", qrels, run)


def test_without_id_column_ties_follow_the_input_order_as_documented():
    df = tie_heavy()
    ev = rerankpd.evaluate(df, query_column="q", label_column="label", score_columns="s", metrics=list(NAMES.values()))
    qrels = [ir_measures.Qrel(q, d, lab) for q, d, lab in zip(df.q, df.doc, df.label)]
    position = df.groupby("q").cumcount().to_numpy()
    run = [ir_measures.ScoredDoc(q, d, s - p * 1e-6) for q, d, s, p in zip(df.q, df.doc, df.s, position)]
    assert_equals_ir_measures(ev, "s", qrels, run)
    # and the two rules really differ on this frame
    by_id = rerankpd.evaluate(
        df, query_column="q", label_column="label", score_columns="s", id_column="doc", metrics=["map"]
    )
    assert (by_id.values("s", "map") != ev.values("s", "map")).sum() >= 10
