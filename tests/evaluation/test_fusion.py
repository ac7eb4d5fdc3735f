"""rerankpd.evaluation.fusion: every method and norm against ranx's fuse (the oracle), fuse() on the frame, Fusion in
evaluate (each reranker run once), estimate, fit_fusion's cross-validation, the CLI's --fuse."""

from __future__ import annotations

import dataclasses
import json
import warnings

import numpy as np
import pandas as pd
import pytest
import ranx

import rerankpd
from rerankpd.errors import ConfigurationError
from rerankpd.evaluation.fusion import (
    METHODS,
    NORMS,
    Fusion,
    FusionEstimate,
    fuse_scores,
    normalize,
)
from rerankpd.evaluation.fusion_fit import simplex_grid
from rerankpd.pairs import rank_within_groups
from rerankpd.testing import LoopbackRerankServer

RANX_METHOD = {"rrf": "rrf", "combsum": "sum", "combmnz": "mnz", "wsum": "wsum", "max": "max"}
TOLERANCE = 1e-9


# ---------------------------------------------------------------------------------------------- the oracle
def generated(seed: int, n_queries: int = 40, rankings: int = 3, tied: bool = True) -> pd.DataFrame:
    """Queries of 1 to 8 rows (the first three of one row), rows in shuffled order; each ranking leaves
    about a quarter of the rows out (NaN) but scores at least one row of every query (ranx needs the same
    queries in every run); a few rows are in no ranking. ``tied``: scores from {0, 1, 2, 3}, so most
    queries hold ties."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 9, n_queries)
    sizes[:3] = 1
    q = np.repeat(np.arange(n_queries), sizes)
    n = len(q)
    first = np.r_[True, q[1:] != q[:-1]]
    in_none = ~first & (rng.random(n) < 0.1)
    df = pd.DataFrame({"q": [f"q{i}" for i in q], "doc": [f"d{i}" for i in range(n)]})
    for r in range(rankings):
        s = rng.integers(0, 4, n).astype(float) if tied else rng.normal(size=n) * (r + 1) * 3
        s[(rng.random(n) < 0.25) & ~first] = np.nan
        s[in_none] = np.nan
        df[f"s{r}"] = s
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def codes(df: pd.DataFrame) -> np.ndarray:
    return pd.factorize(df["q"])[0].astype(np.int64)


def as_run(df: pd.DataFrame, scores: np.ndarray) -> ranx.Run:
    run: dict = {}
    for q, doc, s in zip(df["q"], df["doc"], scores):
        run.setdefault(q, {})
        if not np.isnan(s):
            run[q][doc] = float(s)
    return ranx.Run(run)


def by_ranx(df: pd.DataFrame, scores: list[np.ndarray], method: str, norm: str, weights=None, k=60) -> np.ndarray:
    params = {"weights": list(weights)} if method == "wsum" else {"k": k} if method == "rrf" else {}
    fused = ranx.fuse(
        [as_run(df, s) for s in scores],
        norm=None if norm == "none" else norm,
        method=RANX_METHOD[method],
        params=params,
    ).to_dict()
    return np.array([fused.get(q, {}).get(doc, np.nan) for q, doc in zip(df["q"], df["doc"])])


def tie_free(scores: np.ndarray, group: np.ndarray) -> np.ndarray:
    """The same ranking with our tie rule made explicit: minus the rank (ties in row order)."""
    ranks = rank_within_groups(scores, group)
    return np.where(ranks > 0, -ranks.astype(float), np.nan)


def assert_same(ours: np.ndarray, theirs: np.ndarray) -> None:
    assert np.array_equal(np.isnan(ours), np.isnan(theirs)), "the fused rows differ"
    present = ~np.isnan(theirs)
    assert np.abs(ours[present] - theirs[present]).max(initial=0.0) <= TOLERANCE


def weights_for(method: str, n: int):
    return [0.2, 0.5, 0.3][:n] if method == "wsum" else None


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("method", METHODS)
def test_every_method_and_norm_equals_ranx_on_tied_scores_with_missing_rows_and_single_row_queries(method, norm):
    df = generated(seed=1)
    group = codes(df)
    scores = [df[c].to_numpy() for c in ("s0", "s1", "s2")]
    ours = fuse_scores(scores, group, method, norm, weights_for(method, 3))
    # ranx orders tied documents by its own (unspecified) sort: give it our order of ties where it matters
    rank_based = method == "rrf" or norm == "rank"
    theirs = by_ranx(
        df, [tie_free(s, group) for s in scores] if rank_based else scores, method, norm, weights_for(method, 3)
    )
    assert_same(ours, theirs)
    assert np.isnan(ours).sum() > 0 and (df.groupby("q").size() == 1).sum() >= 3  # the cases are there


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("method", METHODS)
def test_every_method_and_norm_equals_ranx_on_untied_scores_directly(method, norm):
    df = generated(seed=2, rankings=2, tied=False)
    scores = [df["s0"].to_numpy(), df["s1"].to_numpy()]
    ours = fuse_scores(scores, codes(df), method, norm, weights_for(method, 2), k=10)
    assert_same(ours, by_ranx(df, scores, method, norm, weights_for(method, 2), k=10))


def test_a_constant_ranking_normalises_like_ranx():
    """A query whose rows all score the same: min-max gives 0 (the range floored at 1e-9) and zmuv the
    rounding of the mean divided by 1e-9, both as ranx computes them."""
    df = pd.DataFrame(
        {
            "q": ["a"] * 7 + ["b"] * 3,
            "doc": [f"d{i}" for i in range(10)],
            "s0": [0.1] * 7 + [1.0, 2.0, 3.0],
            "s1": [0.3, 0.2, 0.1, 0.5, 0.7, 0.6, 0.4, 0.3, 0.3, 0.3],
        }
    )
    scores = [df["s0"].to_numpy(), df["s1"].to_numpy()]
    for norm in ("min-max", "zmuv"):
        assert_same(fuse_scores(scores, codes(df), "combsum", norm), by_ranx(df, scores, "combsum", norm))
    assert normalize(df["s0"].to_numpy(), codes(df), "min-max")[:7].tolist() == [0.0] * 7


def test_normalisation_is_per_query_not_over_the_frame():
    df = generated(seed=3, rankings=2, tied=False)
    group = codes(df)
    scores = [df["s0"].to_numpy(), df["s1"].to_numpy()]
    shifted = scores[0] + np.where(df["q"] == "q5", 1000.0, 0.0)  # one query's scores move far away
    for norm in ("min-max", "zmuv", "rank"):
        before = fuse_scores(scores, group, "combsum", norm)
        after = fuse_scores([shifted, scores[1]], group, "combsum", norm)
        np.testing.assert_allclose(after, before, rtol=0, atol=1e-9)
    alone = df["q"] == "q7"
    part = fuse_scores([s[alone] for s in scores], np.zeros(int(alone.sum()), dtype=np.int64), "combmnz", "zmuv")
    np.testing.assert_allclose(fuse_scores(scores, group, "combmnz", "zmuv")[alone], part, rtol=0, atol=1e-12)


def test_missing_rows_rule():
    group = np.zeros(4, dtype=np.int64)
    a = np.array([4.0, 2.0, np.nan, np.nan])
    b = np.array([1.0, np.nan, 3.0, np.nan])
    # a: [1, 0, -, -] after min-max; b: [0, -, 1, -]
    assert fuse_scores([a, b], group, "combsum").tolist()[:3] == [1.0, 0.0, 1.0]
    assert fuse_scores([a, b], group, "combmnz").tolist()[:3] == [2.0, 0.0, 1.0]
    assert fuse_scores([a, b], group, "max", "none").tolist()[:3] == [4.0, 2.0, 3.0]
    assert fuse_scores([a, b], group, "rrf", k=0).tolist()[:3] == [1 + 1 / 2, 1 / 2, 1.0]
    assert np.isnan(fuse_scores([a, b], group, "wsum")[3])  # in no ranking: NaN, no rank
    assert np.isnan(fuse_scores([a, b], np.array([0, 0, -1, 0]), "combsum")[2])  # no query: NaN


def test_bad_arguments_name_the_parameter():
    with pytest.raises(ConfigurationError, match="method must be one of"):
        Fusion(["a", "b"], method="borda")
    with pytest.raises(ConfigurationError, match="norm must be one of"):
        Fusion(["a", "b"], "combsum", norm="sum")
    with pytest.raises(ConfigurationError, match="weights apply to method='wsum' only"):
        Fusion(["a", "b"], "rrf", weights=[1, 2])
    with pytest.raises(ConfigurationError, match="2 weights for 3 rankings"):
        Fusion(["a", "b", "c"], "wsum", weights=[1, 2])
    with pytest.raises(ConfigurationError, match="two or more rankings"):
        Fusion(["a"])
    with pytest.raises(ConfigurationError, match="two are named 'a'"):
        Fusion(["a", "a"])
    with pytest.raises(TypeError, match="rankings must be a list"):
        Fusion("a,b")
    with pytest.raises(ConfigurationError, match="k must be a number >= 0"):
        Fusion(["a", "b"], k=-1)
    df = pd.DataFrame({"a": [1.0, 2.0], "b": [2.0, 1.0], "t": ["x", "y"], "text": ["x", "y"]})
    with pytest.raises(KeyError, match="'nope' is neither a column of the frame .* nor a reranker"):
        rerankpd.fuse(df, ["a", "nope"], "q")
    with pytest.raises(TypeError, match="column 't' must hold numbers"):
        rerankpd.fuse(df, ["a", "t"])
    with pytest.raises(ConfigurationError, match="sets its own method"):
        rerankpd.fuse(df, Fusion(["a", "b"]), method="max")
    with pytest.raises(KeyError, match="query_column 'qq'"):
        rerankpd.fuse(df, ["a", "b"], query_column="qq")
    with pytest.raises(ValueError, match="give exactly one of query"):
        rerankpd.fuse(df, ["a", "bm25"])  # a reranker needs a query


# ---------------------------------------------------------------------------------------------- fuse()
def test_fuse_adds_named_columns_keeps_the_index_ranks_sorts_and_cuts():
    df = pd.DataFrame(
        {
            "q": ["x", "y", "x", "x", "y", None],
            "a": [1.0, 5.0, 3.0, np.nan, 4.0, 9.0],
            "b": [0.5, 0.1, np.nan, np.nan, 0.9, 1.0],
        },
        index=list("ABCDEF"),
    )
    df.attrs["source"] = "test"
    out = df.rerank.fuse(["a", "b"], query_column="q", method="wsum", weights={"a": 0.75, "b": 0.25})
    # x: a -> A 0, C 1; b -> A only (1 row: 0) => A 0.75*0 + 0.25*0 = 0, C 0.75, D in none
    # y: a -> B 1, E 0; b -> B 0, E 1 => B 0.75, E 0.25. Unranked rows last in their query; no query: last
    assert out.index.tolist() == ["C", "A", "D", "B", "E", "F"]
    assert out["fusion_rank"].astype(object).where(out["fusion_rank"].notna(), None).tolist() == [
        1,
        2,
        None,
        1,
        2,
        None,
    ]
    assert out["fusion_score"].dtype == np.float64 and str(out["fusion_rank"].dtype) == "Int64"
    assert out.attrs["source"] == "test" and out.attrs["fusion"]["weights"] == {"a": 0.75, "b": 0.25}
    assert out.attrs["fusion"]["rankings"] == {"a": "column", "b": "column"}
    pd.testing.assert_frame_equal(out.loc[df.index, ["q", "a", "b"]], df)  # input columns untouched
    unsorted = rerankpd.fuse(df, ["a", "b"], query_column="q", sort=False)
    assert unsorted.index.tolist() == list("ABCDEF")
    top = rerankpd.fuse(df, ["a", "b"], query_column="q", top_n=1)
    # rrf: x -> A 1/62 + 1/61 beats C 1/61; y -> B and E tie (1/61 + 1/62): row order puts B first
    assert top.index.tolist() == ["A", "B"]
    assert (top["fusion_rank"] == 1).all()
    whole_frame = rerankpd.fuse(df, ["a", "b"])  # score columns only: the frame is one query
    assert whole_frame["fusion_rank"].notna().sum() == 5


def test_fuse_runs_rerankers_through_the_pipeline_once_with_cache_and_coerce(tmp_path):
    df = pd.DataFrame(
        {
            "q": ["cold"] * 3 + ["stock"] * 3,
            "text": ["cold hands", "a cold winter", "stock prices", "stock market", "cold", "prices"],
            "first": [0.3, 0.2, 0.1, 0.9, 0.5, 0.1],
        }
    )
    with LoopbackRerankServer(api_key="sk-test") as server:
        remote = rerankpd.get_reranker("dmxapi", api_key="sk-test", base_url=server.url, batch_size=3, max_retries=0)
        out = rerankpd.fuse(
            df, {"first": "first", "remote": remote, "bm25": "bm25"}, query_column="q", cache=tmp_path, progress=False
        )
        assert len(server.requests) == 2 and out.attrs["fusion"]["sent"] == 12
        assert {"fusion_score_remote", "fusion_score_bm25"} <= set(out.columns)
        assert out.attrs["fusion"]["runs"]["remote"]["sent"] == 6
        again = rerankpd.fuse(
            df, {"first": "first", "remote": remote, "bm25": "bm25"}, query_column="q", cache=tmp_path, progress=False
        )
        assert len(server.requests) == 2 and again.attrs["fusion"]["runs"]["remote"]["from_cache"] == 6
        pd.testing.assert_series_equal(again["fusion_score"], out["fusion_score"])
        expected = fuse_scores(
            [
                df["first"].to_numpy(),
                out.loc[df.index, "fusion_score_remote"].to_numpy(),
                out.loc[df.index, "fusion_score_bm25"].to_numpy(),
            ],
            codes(df),
            "rrf",
        )
        np.testing.assert_array_equal(out.loc[df.index, "fusion_score"].to_numpy(), expected)

        server.fail_next("status", status=500, count=1)
        coerced = rerankpd.fuse(
            df, {"first": "first", "remote": remote}, query_column="q", cache=False, progress=False, errors="coerce"
        ).loc[df.index]
    failed = coerced["fusion_score_remote"].isna().to_numpy()
    assert failed.sum() == 3 and coerced["fusion_score"].notna().all()  # failed rows ranked by "first" alone
    first_rank = rank_within_groups(df["first"].to_numpy(), codes(df))
    np.testing.assert_allclose(coerced["fusion_score"].to_numpy()[failed], 1 / (60 + first_rank[failed]))
    ranked = rerankpd.fuse(df.iloc[:3], ["first", "bm25"], "cold", cache=False, progress=False)
    assert ranked["fusion_rank"].tolist() == [1, 2, 3]


def test_estimate_of_a_fusion_lists_its_rerankers(tmp_path):
    df = pd.DataFrame({"text": ["cold hands", "a cold winter", "stock prices"], "first": [0.3, 0.2, 0.1]})
    estimate = rerankpd.estimate(df, "cold", reranker=Fusion(["first", "bm25"]), cache=False)
    assert isinstance(estimate, FusionEstimate)
    alone = rerankpd.estimate(df, "cold", reranker="bm25", cache=False)
    # the same figures as bm25's own estimate but the measured time (a fresh sample each call)
    untimed = lambda e: dataclasses.replace(e, seconds=None, timing=None)  # noqa: E731
    assert list(estimate.parts) == ["bm25"] and untimed(estimate.parts["bm25"]) == untimed(alone)
    assert estimate.columns == ["first"] and estimate.parts["bm25"].timing.startswith("measured here")
    assert estimate.to_score == alone.to_score == 3 and estimate.requests == alone.requests
    assert "first: a score column" in str(estimate) and json.dumps(estimate.to_dict())


# ---------------------------------------------------------------------------------------------- evaluate
def judged_frame(n_queries: int = 12, rows: int = 8, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    records = []
    for q in range(n_queries):
        labels = rng.integers(0, 3, rows)
        labels[rng.integers(0, rows)] = 2
        for i, label in enumerate(labels):
            records.append(
                {
                    "q": f"topic{q} answer",
                    "text": f"topic{q} w{i} " + "answer " * int(label),
                    "label": int(label),
                    "first": float(rng.random() + label * rng.random()),
                    "dense": float(rng.random() + label * rng.random()),
                }
            )
    return pd.DataFrame(records)


def test_evaluate_takes_fusions_and_runs_each_reranker_once(tmp_path):
    df = judged_frame()
    with LoopbackRerankServer(api_key="sk-test") as server:
        remote = rerankpd.get_reranker("dmxapi", api_key="sk-test", base_url=server.url, batch_size=100)
        ev = rerankpd.evaluate(
            df,
            query_column="q",
            label_column="label",
            score_columns=["first"],
            rerankers={
                "remote": remote,
                "first+remote": Fusion(["first", remote]),
                "all": Fusion({"f": "first", "r": remote, "d": "dense"}, "combsum"),
            },
            cache=False,
            progress=False,
        )
        assert len(server.requests) == df["q"].nunique()  # one run, however many rankings use it
    summary = ev.summary
    assert summary.loc["first+remote", "pairs_sent"] == summary.loc["remote", "pairs_sent"] == len(df)
    fused = rerankpd.fuse(df.assign(remote=ev_scores(df, remote)), ["first", "remote"], query_column="q")
    by_column = rerankpd.evaluate(
        fused.loc[df.index], query_column="q", label_column="label", score_columns="fusion_score"
    )
    np.testing.assert_array_equal(ev.values("first+remote", "ndcg@10"), by_column.values("fusion_score", "ndcg@10"))
    table = ev.compare(baseline="first+remote")
    assert set(table["ranking"]) == {"original", "first", "remote", "all"}


def ev_scores(df: pd.DataFrame, reranker) -> np.ndarray:
    return rerankpd.scores(df, query_column="q", reranker=reranker, cache=False, progress=False).to_numpy()


def test_evaluate_a_fusion_of_columns_needs_no_text_column():
    df = judged_frame().drop(columns="text")
    ev = rerankpd.evaluate(
        df,
        query_column="q",
        label_column="label",
        rerankers=[Fusion(["first", "dense"]), Fusion(["first", "dense"], "wsum", weights=[1, 3])],
    )
    assert ev.rankings == ["original", "rrf(first, dense)", "wsum(first=1, dense=3)"]


# ---------------------------------------------------------------------------------------------- fit
def test_simplex_grid():
    grid = simplex_grid(3, 0.1)
    assert grid.shape == (66, 3) and np.allclose(grid.sum(axis=1), 1) and (grid >= 0).all()
    with pytest.raises(ConfigurationError, match="step must divide 1"):
        simplex_grid(2, 0.3)
    with pytest.raises(ConfigurationError, match="choose a coarser step"):
        simplex_grid(8, 0.01)


def test_fit_fusion_cross_validates_honestly():
    df = judged_frame(n_queries=20, seed=4)
    fusion = rerankpd.fit_fusion(
        df, ["first", "dense"], query_column="q", label_column="label", folds=4, step=0.1, seed=1
    )
    fit = fusion.fitted
    assert fusion.method == "wsum" and fit.search == "grid" and len(fit.fold_weights) == 4
    assert fit.in_sample == fit.grid["ndcg@10"].max() >= fit.cv_mean
    # the final weights are the best of the grid on all queries, as evaluating every candidate finds them
    means = [
        rerankpd.evaluate(
            df,
            query_column="q",
            label_column="label",
            metrics=["ndcg@10"],
            rerankers={"w": Fusion(["first", "dense"], "wsum", weights=w)},
        ).summary.loc["w", "ndcg@10"]
        for w in simplex_grid(2, 0.1).tolist()
    ]
    assert fit.in_sample == pytest.approx(max(means), abs=1e-12)
    assert means[int(np.argmin(np.abs(simplex_grid(2, 0.1)[:, 0] - fusion.weights[0])))] == pytest.approx(max(means))
    # the cross-validated figure is what evaluate measures on the out-of-fold scores
    honest = rerankpd.evaluate(
        df.assign(learned=fit.cv_scores),
        query_column="q",
        label_column="label",
        score_columns="learned",
        metrics=["ndcg@10"],
    )
    assert honest.summary.loc["learned", "ndcg@10"] == pytest.approx(fit.cv_mean, abs=1e-12)
    np.testing.assert_allclose(honest.values("learned", "ndcg@10"), fit.cv_per_query.to_numpy(), atol=1e-12)
    # a fold's weights never saw its own queries: scrambling their labels leaves that fold's weights alone
    from rerankpd.evaluation.fusion_fit import _folds

    fold = _folds(20, 4, 1)
    test_queries = [q for q, f in zip(fit.cv_per_query.index, fold) if f == 0]
    scrambled = df.copy()
    rows = scrambled["q"].isin(test_queries)
    scrambled.loc[rows, "label"] = np.random.default_rng(0).permutation(scrambled.loc[rows, "label"].to_numpy())
    refit = rerankpd.fit_fusion(
        scrambled, ["first", "dense"], query_column="q", label_column="label", folds=4, step=0.1, seed=1
    ).fitted
    assert refit.fold_weights[0] == fit.fold_weights[0]
    assert "cross-validated" in repr(fusion) and "in-sample" in str(fit)


def test_evaluating_a_fitted_fusion_on_its_own_queries_warns():
    df = judged_frame(n_queries=6)
    fusion = rerankpd.fit_fusion(df, ["first", "dense"], query_column="q", label_column="label", folds=3)
    with pytest.warns(RuntimeWarning, match="in-sample"):
        rerankpd.evaluate(df, query_column="q", label_column="label", rerankers={"learned": fusion})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rerankpd.fuse(df, fusion, query_column="q")  # ranking with it is not evaluating
        other = judged_frame(n_queries=3, seed=9).assign(q=lambda d: "new " + d["q"])
        rerankpd.evaluate(other, query_column="q", label_column="label", rerankers={"learned": fusion})


def test_fit_fusion_bad_arguments():
    df = judged_frame(n_queries=3)
    with pytest.raises(ConfigurationError, match="folds=5 but the frame has 3 queries"):
        rerankpd.fit_fusion(df, ["first", "dense"], query_column="q", label_column="label")
    with pytest.raises(ConfigurationError, match="fits the weights of method='wsum'"):
        rerankpd.fit_fusion(df, ["first", "dense"], query_column="q", label_column="label", method="rrf", folds=2)
    with pytest.raises(KeyError, match="label_column 'grade'"):
        rerankpd.fit_fusion(df, ["first", "dense"], query_column="q", label_column="grade", folds=2)
    with pytest.raises(ConfigurationError, match="unknown metric"):
        rerankpd.fit_fusion(df, ["first", "dense"], query_column="q", label_column="label", metric="ndgc", folds=2)


# ---------------------------------------------------------------------------------------------- CLI
def test_cli_evaluate_fuse(tmp_path, capsys):
    from rerankpd.cli import main

    path = tmp_path / "judged.csv"
    judged_frame(n_queries=5).to_csv(path, index=False)
    status = main(
        [
            "evaluate",
            str(path),
            "--query-column",
            "q",
            "--label-column",
            "label",
            "-s",
            "first",
            "--fuse",
            "first,dense:rrf",
            "--fuse",
            "first=0.3,dense=0.7:wsum",
            "--json",
        ]
    )
    assert status == 0
    out = json.loads(capsys.readouterr().out)
    names = [row["ranking"] for row in out["summary"]]
    assert names == ["original", "first", "rrf(first, dense)", "wsum(first=0.3, dense=0.7)"]
    assert main(["evaluate", str(path), "--query-column", "q", "--label-column", "label", "--fuse", "first:rrf"]) == 2
    assert "--fuse" in capsys.readouterr().err
