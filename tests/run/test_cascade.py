"""Cascades (rerankpd.run.cascade): a prefilter picks each query's candidates, only they reach the reranker."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rerankpd
from rerankpd.evaluation.cascade_curve import scores_from_ranks
from rerankpd.evaluation.evaluate import judgments
from rerankpd.rerankers import Reranker
from rerankpd.run.cascade import candidate_mask, cascade_ranks


class Recorder(Reranker):
    """A cross-encoder stand-in that records every (query, document) it is asked to score."""

    name = "recorder"

    def __init__(self):
        self.seen = []

    def identity(self):
        return {"reranker": "recorder"}

    def score(self, query, documents):
        self.seen.extend((query, d) for d in documents)
        return [float(d.count("x")) for d in documents]  # more x is better: easy to predict


def frame(n_per_query=6, queries=("q1", "q2")):
    rows = []
    for q in queries:
        for i in range(n_per_query):
            text = f"{q} doc " + "x" * ((i * 7) % 5 + 1) + f" {i}"
            rows.append({"q": q, "text": text, "pre": float(n_per_query - i)})
    return pd.DataFrame(rows)


def test_only_the_candidates_reach_the_reranker_and_the_rest_follow_in_prefilter_order():
    df = frame()
    r = Recorder()
    out = rerankpd.rerank(df, query_column="q", reranker=r, prefilter="pre", candidates=2, cache=False, progress=False)
    # the two best by prefilter score of each query (rows 0, 1 and 6, 7), nothing else
    assert sorted(d for _, d in r.seen) == sorted(df.loc[[0, 1, 6, 7], "text"])
    assert out["rerank_prefilter_score"].notna().all() and len(out) == len(df)
    assert out["rerank_score"].notna().sum() == 4
    for _q, group in out.groupby("q", sort=False):
        assert group["rerank_rank"].tolist() == list(range(1, 7))  # ranks cover every row
        top = group.iloc[:2]
        assert top["rerank_score"].notna().all() and top["rerank_score"].is_monotonic_decreasing
        assert group.iloc[2:]["rerank_prefilter_score"].is_monotonic_decreasing  # the rest in prefilter order
    assert out.attrs["rerank"]["cascade"]["pairs_to_reranker"] == 4
    assert out.attrs["rerank"]["cascade"]["prefilter"] == "column 'pre'"


def test_top_n_within_candidates_never_pays_for_dropped_rows():
    df = frame(n_per_query=10)
    r = Recorder()
    out = rerankpd.rerank(
        df, query_column="q", reranker=r, prefilter="pre", candidates=3, top_n=3, cache=False, progress=False
    )
    assert len(r.seen) == 6 and len(out) == 6 and out["rerank_score"].notna().all()


def test_a_reranker_name_or_object_as_prefilter():
    df = pd.DataFrame({"text": ["cold hands", "stock prices", "a cold cold winter", "cold", "weather"]})
    r = Recorder()
    out = rerankpd.rerank(df, "cold", reranker=r, prefilter="bm25", candidates=3, cache=False, progress=False)
    bm25 = rerankpd.scores(df, "cold", reranker="bm25", cache=False, progress=False)
    assert out["rerank_prefilter_score"].sort_index().tolist() == pytest.approx(bm25.tolist())
    assert {d for _, d in r.seen} == set(df.loc[bm25.nlargest(3).index, "text"])
    again = rerankpd.rerank(
        df,
        "cold",
        reranker=Recorder(),
        prefilter=rerankpd.get_reranker("bm25"),
        candidates=3,
        cache=False,
        progress=False,
    )
    assert again.index.tolist() == out.index.tolist()


def test_rows_without_text_stay_unranked_and_bad_options_are_named():
    df = pd.DataFrame({"text": ["a b", None, "  ", "a"], "pre": [1.0, 2.0, 3.0, np.nan]})
    out = rerankpd.rerank(
        df, "a", reranker=Recorder(), prefilter="pre", candidates=1, cache=False, progress=False, sort=False
    )
    assert out["rerank_rank"].tolist() == [1, pd.NA, pd.NA, 2]
    with pytest.raises(ValueError, match="candidates"):
        rerankpd.rerank(df, "a", reranker=Recorder(), prefilter="pre", candidates=0, cache=False, progress=False)
    with pytest.raises(TypeError, match="prefilter column 'text' must hold numbers"):
        rerankpd.rerank(df, "a", reranker=Recorder(), prefilter="text", cache=False, progress=False)


def test_the_cascade_is_cached_like_any_run(tmp_path):
    df = frame()
    rerankpd.rerank(
        df, query_column="q", reranker=Recorder(), prefilter="pre", candidates=3, cache=tmp_path, progress=False
    )
    r = Recorder()
    out = rerankpd.rerank(
        df, query_column="q", reranker=r, prefilter="pre", candidates=3, cache=tmp_path, progress=False
    )
    assert r.seen == [] and out.attrs["rerank"]["from_cache"] == 6


@settings(max_examples=60, deadline=None)
@given(
    scores=st.lists(st.one_of(st.none(), st.floats(-5, 5)), min_size=1, max_size=20),
    groups=st.lists(st.integers(-1, 2), min_size=20, max_size=20),
    candidates=st.integers(1, 6),
    seed=st.integers(0, 9),
)
def test_ranks_are_a_permutation_with_candidates_first(scores, groups, candidates, seed):
    n = len(scores)
    pre = np.array([np.nan if s is None else s for s in scores])
    row_group = np.array(groups[:n])
    has_text = np.random.default_rng(seed).random(n) > 0.2
    is_candidate = candidate_mask(pre, row_group, has_text, candidates)
    main = np.where(is_candidate, np.random.default_rng(seed + 1).random(n), np.nan)
    ranks = cascade_ranks(main, pre, row_group, has_text, is_candidate)
    for g in set(row_group[row_group >= 0].tolist()):
        rows = np.flatnonzero((row_group == g) & has_text)
        assert sorted(ranks[rows].tolist()) == list(range(1, len(rows) + 1))
        scored = int((~np.isnan(pre[rows])).sum())  # rows of this query with a prefilter score
        assert is_candidate[rows].sum() == min(candidates, scored)
        assert not is_candidate[rows][np.isnan(pre[rows])].any()
        if len(rows) and is_candidate[rows].any() and (~is_candidate[rows] & ~np.isnan(pre[rows])).any():
            # every candidate scores at least as high as every scored non-candidate of the same query
            assert pre[rows][is_candidate[rows]].min() >= pre[rows][~is_candidate[rows] & ~np.isnan(pre[rows])].max()
        cand = rows[is_candidate[rows]]
        if len(cand):
            assert ranks[cand].max() == len(cand)
    assert (ranks[~has_text | (row_group < 0)] == 0).all()


def _metrics(ranks, row_group, labels, k=10):
    """nDCG@k and MRR@k of a ranking by evaluate's own code, averaged over the queries with a relevant row."""
    import warnings

    df = pd.DataFrame({"q": np.where(row_group >= 0, row_group, np.nan), "label": labels})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rows with no query are left out, as the reference leaves them
        judged = judgments(
            df,
            query_column="q",
            label_column="label",
            metrics=[f"ndcg@{k}", f"mrr@{k}"],
            skip_empty=True,
            text_needed=False,
        )
    values = judged.values(scores_from_ranks(ranks))
    return {name: float(values[:, j].mean()) if len(values) else float("nan") for j, name in enumerate(judged.names)}


def test_metrics_match_hand_computed_ndcg():
    ranks = np.array([1, 2, 3, 4])
    labels = np.array([0.0, 3.0, 0.0, 1.0])
    got = _metrics(ranks, np.zeros(4, dtype=int), labels, k=10)
    dcg = 3 / np.log2(3) + 1 / np.log2(5)
    ideal = 3 / np.log2(2) + 1 / np.log2(3)
    assert got["ndcg@10"] == pytest.approx(dcg / ideal) and got["mrr@10"] == 0.5


def test_cascade_curve_pays_once_for_the_largest_count(tmp_path):
    df = frame(n_per_query=12)
    df["rel"] = (df["text"].str.count("x") >= 3).astype(int)
    r = Recorder()
    curve = rerankpd.cascade_curve(
        df,
        query_column="q",
        prefilter="pre",
        reranker=r,
        candidates=[2, 5, 12, 5],
        label_column="rel",
        cache=tmp_path,
        progress=False,
    )
    assert len(r.seen) == 24  # the largest count once, nothing for the smaller ones
    table = curve.table
    assert table["candidates"].tolist() == [2, 5, 12] and table["pairs_sent"].tolist() == [4, 10, 24]
    assert table["share_sent"].tolist() == pytest.approx([4 / 24, 10 / 24, 1.0])
    # each count's figures are exactly those of the cascade run with that count
    for count, ndcg in zip(table["candidates"], table["ndcg@10"]):
        out = rerankpd.rerank(
            df,
            query_column="q",
            reranker=Recorder(),
            prefilter="pre",
            candidates=count,
            cache=tmp_path,
            progress=False,
            sort=False,
        )
        groups = pd.factorize(df["q"])[0]
        assert _metrics(
            out["rerank_rank"].to_numpy(dtype=np.int64, na_value=0), groups, df["rel"].to_numpy(dtype=float)
        )["ndcg@10"] == pytest.approx(ndcg, abs=1e-12)
    assert table["ndcg@10"].iloc[-1] == pytest.approx(1.0)  # all candidates reranked by their x: ideal here
    assert 0 <= curve.prefilter_only["ndcg@10"] <= 1 and "recorder" in repr(curve)


def test_cascade_curve_plots(tmp_path):
    import matplotlib
    import matplotlib.figure

    matplotlib.use("Agg")
    df = frame()
    df["rel"] = [1, 0] * 6
    curve = rerankpd.cascade_curve(
        df,
        query_column="q",
        prefilter="pre",
        reranker=Recorder(),
        candidates=[1, 3],
        label_column="rel",
        cache=False,
        progress=False,
    )
    fig = curve.plot()
    assert isinstance(fig, matplotlib.figure.Figure) and type(fig) is type(curve.evaluation.plot())
    ax = fig.axes[0]
    assert ax.get_xlabel() == "pairs sent to the reranker" and len(ax.lines) == 2
    assert ax.get_ylim()[0] == 0  # small gains do not look large
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)  # pairs are counted in whole numbers
    with pytest.raises(KeyError, match="metric"):
        curve.plot("precision@3")
    with pytest.raises(KeyError, match="label_column"):
        rerankpd.cascade_curve(df, query_column="q", prefilter="pre", reranker=Recorder(), label_column="nope")


def test_estimate_shows_what_the_cascade_saves_without_sending_anything():
    df = frame(n_per_query=10)
    r = Recorder()
    est = df.rerank.estimate(query_column="q", reranker=r, prefilter="pre", candidates=3, cache=False)
    assert r.seen == [] and est.exact
    assert est.without.to_score == 20 and est.with_cascade.to_score == 6 and est.pairs_saved == 14
    assert est.tokens_saved > 0 and est.with_cascade.approx_tokens < est.without.approx_tokens
    assert "saves 14 pairs" in str(est) and est.to_dict()["with_cascade"]["to_score"] == 6
    lexical = rerankpd.estimate(df, query_column="q", reranker=r, prefilter="bm25", candidates=4, cache=False)
    assert lexical.exact and lexical.with_cascade.to_score == 8 and r.seen == []


def test_estimate_with_a_costly_prefilter_counts_candidates_without_running_it():
    class Costly(Recorder):
        name = "costly"

        def score(self, query, documents):
            raise AssertionError("an estimate must not run a costly prefilter")

    df = frame(n_per_query=10)
    est = rerankpd.estimate(df, query_column="q", reranker=Recorder(), prefilter=Costly(), candidates=4, cache=False)
    assert not est.exact and est.with_cascade.to_score == 8 and "about 8 pairs" in str(est)


def test_a_failed_candidate_is_reported_and_ranked_after_the_scored_ones():
    class Picky(Recorder):
        def score(self, query, documents):
            if any("xxxxx" in d for d in documents):
                raise RuntimeError("service refused a document")
            return super().score(query, documents)

    class OneByOne(Picky):
        batch_size = 1

    df = frame(n_per_query=6, queries=("q1",))
    out = rerankpd.rerank(
        df,
        "q1",
        reranker=OneByOne(),
        prefilter="pre",
        candidates=4,
        cache=False,
        progress=False,
        errors="coerce",
        sort=False,
    )
    failed = out["rerank_error"].notna()
    assert failed.sum() == 1 and "refused" in out.loc[failed, "rerank_error"].iloc[0]
    assert out.loc[failed, "rerank_score"].isna().all()
    assert int(out.loc[failed, "rerank_rank"].iloc[0]) == 4  # after the three scored candidates
    assert sorted(out["rerank_rank"].tolist()) == list(range(1, 7))


def reference_metrics(ranks, row_group, labels, k=10):
    """nDCG@k and MRR@k by a loop per query: the ranked rows in rank order, the ideal from every row."""
    ndcg, mrr = [], []
    labels = np.where(np.isnan(labels), 0.0, np.maximum(labels, 0.0))
    for g in np.unique(row_group[row_group >= 0]):
        rows = np.flatnonzero(row_group == g)
        gains = labels[rows]
        if not (gains > 0).any():
            continue
        # unranked rows (0) last, in row order: as evaluate ranks rows without a score
        ranked = rows[np.lexsort((rows, ranks[rows], ranks[rows] == 0))][:k]
        discounts = 1.0 / np.log2(np.arange(2, k + 2))
        dcg = float((labels[ranked] * discounts[: len(ranked)]).sum())
        ideal = np.sort(gains)[::-1][:k]
        ndcg.append(dcg / float((ideal * discounts[: len(ideal)]).sum()))
        hits = np.flatnonzero(labels[ranked] > 0)
        mrr.append(1.0 / (hits[0] + 1) if len(hits) else 0.0)
    return {
        f"ndcg@{k}": float(np.mean(ndcg)) if ndcg else float("nan"),
        f"mrr@{k}": float(np.mean(mrr)) if mrr else float("nan"),
    }


def test_cascade_metrics_equal_a_loop_per_query_reference():
    from rerankpd.pairs import rank_within_groups

    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 40))
        groups = rng.integers(-1, 4, n)
        labels = rng.choice([np.nan, 0, 1, 2, 3], n).astype(float)
        ranks = rank_within_groups(np.where(rng.random(n) < 0.1, np.nan, rng.random(n)), groups)
        got, want = _metrics(ranks, groups, labels, 10), reference_metrics(ranks, groups, labels, 10)
        for name in want:
            assert got[name] == pytest.approx(want[name], nan_ok=True)


class OneAtATime(Recorder):
    """A Recorder scoring one document per request, that sets ``event`` after its ``after``-th request."""

    batch_size, max_concurrency = 1, 1

    def __init__(self, event, after):
        super().__init__()
        self.event, self.after, self.requests = event, after, 0

    def score(self, query, documents):
        self.requests += 1
        if self.requests >= self.after:
            self.event.set()
        return super().score(query, documents)


def test_the_cancel_hook_stops_a_cascade_between_the_prefilter_and_the_reranker():
    from rerankpd.errors import RunCancelled

    cancel = threading.Event()
    main = Recorder()
    prefilter = OneAtATime(cancel, after=2)
    prefilter.batch_size = 64  # one request per query: Cancel lands in its last one
    with pytest.raises(RunCancelled, match="after the prefilter"):
        rerankpd.rerank(
            frame(),
            query_column="q",
            reranker=main,
            prefilter=prefilter,
            candidates=3,
            cache=False,
            progress=False,
            _cancel=cancel,
        )
    assert prefilter.requests == 2 and main.seen == []  # the prefilter finished; not one candidate was sent
    with pytest.raises(RunCancelled, match="after the prefilter"):  # a column prefilter: nothing to run
        rerankpd.rerank(
            frame(),
            query_column="q",
            reranker=main,
            prefilter="pre",
            candidates=3,
            cache=False,
            progress=False,
            _cancel=cancel,
        )
    assert main.seen == []


def test_the_cancel_hook_stops_a_cascade_inside_the_prefilter():
    from rerankpd.errors import RunCancelled

    cancel = threading.Event()
    main, prefilter = Recorder(), OneAtATime(cancel, after=1)
    with pytest.raises(RunCancelled, match="cancelled after 1 of 12 pairs"):
        rerankpd.rerank(
            frame(),
            query_column="q",
            reranker=main,
            prefilter=prefilter,
            candidates=3,
            cache=False,
            progress=False,
            _cancel=cancel,
        )
    assert prefilter.requests == 1 and main.seen == []


def test_the_cancel_hook_stops_a_cascade_inside_the_main_run():
    from rerankpd.errors import RunCancelled

    cancel = threading.Event()
    main = OneAtATime(cancel, after=2)
    with pytest.raises(RunCancelled) as caught:
        rerankpd.rerank(
            frame(),
            query_column="q",
            reranker=main,
            prefilter="pre",
            candidates=3,
            cache=False,
            progress=False,
            _cancel=cancel,
        )
    assert main.requests == 2 < 6  # 2 of the 6 candidates, then it stopped
    assert "cancelled after 2 of 6 pairs" in str(caught.value)


def test_the_progress_hook_follows_a_cascades_main_run():
    reports = []
    out = rerankpd.rerank(
        frame(),
        query_column="q",
        reranker=OneAtATime(threading.Event(), after=99),
        prefilter="pre",
        candidates=3,
        cache=False,
        progress=False,
        _on_progress=lambda done, total: reports.append((done, total)),
    )
    assert reports[0] == (0, 6) and reports[-1] == (6, 6)  # the 6 candidates, not the 12 rows
    assert [d for d, _ in reports] == sorted(d for d, _ in reports) and len(reports) == 7
    assert out["rerank_score"].notna().sum() == 6


# ------------------------------------------------------------------------- the curve and evaluate agree
def judged_frame(n_queries=6, per_query=12, seed=1):
    rng = np.random.default_rng(seed)
    df = frame(n_per_query=per_query, queries=tuple(f"q{i}" for i in range(n_queries)))
    df["rel"] = rng.choice([0, 0, 1, 2, 3], len(df))
    df["doc"] = [f"d{i}" for i in range(len(df))]
    # the collection judges documents the frame does not hold: recall and the ideal DCG are the collection's
    qrels = pd.DataFrame(
        {
            "q": [f"q{i}" for i in range(n_queries)] * 2,
            "doc": [f"x{i}" for i in range(2 * n_queries)],
            "grade": rng.integers(1, 4, 2 * n_queries),
        }
    )
    return df, qrels


@pytest.mark.parametrize("gain", ["linear", "exponential"])
def test_the_curve_computes_every_metric_as_evaluate_does(gain):
    df, qrels = judged_frame()
    metrics = ["ndcg@5", "mrr@5", "map", "recall@5", "precision@5"]
    options = {
        "query_column": "q",
        "label_column": "rel",
        "qrels": qrels,
        "id_column": "doc",
        "gain": gain,
        "cache": False,
        "progress": False,
    }
    curve = rerankpd.cascade_curve(
        df, prefilter="pre", reranker=Recorder(), candidates=[2, 5, 12], k=5, metrics=metrics, **options
    )
    r = Recorder()
    ev = rerankpd.evaluate(
        df,
        metrics=metrics,
        rerankers={c: rerankpd.Cascade("pre", c, r) for c in (2, 5, 12)},
        score_columns="pre",
        **options,
    )
    for _, row in curve.table.iterrows():
        for metric in metrics:
            assert abs(row[metric] - ev.summary.loc[str(int(row["candidates"])), metric]) <= 1e-12, (row, metric)
        assert row["pairs_sent"] == ev.summary.loc[str(int(row["candidates"])), "pairs_sent"]
    for metric in metrics:
        assert abs(curve.prefilter_only[metric] - ev.summary.loc["pre", metric]) <= 1e-12
    # the scale of evaluate's: with the collection's judgments, not the frame's alone
    alone = rerankpd.cascade_curve(
        df,
        query_column="q",
        prefilter="pre",
        reranker=Recorder(),
        candidates=[5],
        label_column="rel",
        k=5,
        cache=False,
        progress=False,
    )
    if gain == "linear":
        assert alone.table["ndcg@5"].iloc[0] > curve.table.set_index("candidates").loc[5, "ndcg@5"]
    # the curve's own evaluation compares each count with the prefilter
    table = curve.evaluation.compare(n_resamples=200)
    assert set(table["ranking"]) == {f"column 'pre'->recorder @{c}" for c in (2, 5, 12)}


def test_a_cascade_is_a_ranking_of_evaluate_with_its_pairs_counted_and_each_reranker_run_once():
    df, _ = judged_frame(n_queries=4, per_query=10)
    r = Recorder()
    ev = rerankpd.evaluate(
        df,
        query_column="q",
        label_column="rel",
        cache=False,
        progress=False,
        rerankers=[
            r,
            rerankpd.Cascade(prefilter="pre", candidates=3, reranker=r),
            rerankpd.Cascade(prefilter="pre", candidates=3, reranker=r),
        ][:2],
        metrics=["ndcg@10", "mrr@10"],
    )
    assert ev.rankings == ["original", "recorder", "pre->recorder"]
    # the cascade's pairs: 3 per query; the recorder alone: every row
    assert ev.summary.loc["pre->recorder", "pairs_sent"] == 12 and ev.summary.loc["recorder", "pairs_sent"] == 40
    assert len(r.seen) == 40 + 12
    # its ranking is the one rerank(..., prefilter=) returns
    out = rerankpd.rerank(
        df,
        query_column="q",
        reranker=Recorder(),
        prefilter="pre",
        candidates=3,
        cache=False,
        progress=False,
        sort=False,
    )
    groups = pd.factorize(df["q"])[0]
    want = _metrics(out["rerank_rank"].to_numpy(dtype=np.int64, na_value=0), groups, df["rel"].to_numpy(float))
    assert ev.summary.loc["pre->recorder", "ndcg@10"] == pytest.approx(want["ndcg@10"], abs=1e-12)
    table = ev.compare(baseline="recorder", n_resamples=200)
    assert table["ranking"].tolist() == ["original", "original", "pre->recorder", "pre->recorder"]
    # two rankings sharing a run: the memo runs the prefilter reranker once for both
    r2 = Recorder()
    rerankpd.evaluate(
        df,
        query_column="q",
        label_column="rel",
        cache=False,
        progress=False,
        rerankers={"a": rerankpd.Cascade(r2, 3, "bm25"), "b": rerankpd.Cascade(r2, 5, "bm25"), "alone": r2},
    )
    assert len(r2.seen) == 40
    with pytest.raises(ValueError, match="candidates"):
        rerankpd.Cascade("pre", 0, r)


def test_without_matplotlib_both_plots_say_which_install_fixes_it(monkeypatch):
    import sys

    from rerankpd.errors import MissingDependencyError

    df = frame()
    df["rel"] = [1, 0] * 6
    curve = rerankpd.cascade_curve(
        df,
        query_column="q",
        prefilter="pre",
        reranker=Recorder(),
        candidates=[1, 3],
        label_column="rel",
        cache=False,
        progress=False,
    )
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what `import matplotlib` meets when it is not installed
    with pytest.raises(
        MissingDependencyError, match=r"CascadeCurve.plot needs matplotlib: pip install 'rerankpd\[eval\]'"
    ):
        curve.plot()
    with pytest.raises(
        MissingDependencyError, match=r"Evaluation.plot needs matplotlib: pip install 'rerankpd\[eval\]'"
    ):
        curve.evaluation.plot()
