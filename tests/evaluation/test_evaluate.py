"""rerankpd.evaluate: rankings of a frame against its labels, costs through the real pipeline, significance."""

from __future__ import annotations

import json

import ir_measures
import numpy as np
import pandas as pd
import pytest
from ir_measures import AP, R, nDCG

import rerankpd
from rerankpd.errors import ConfigurationError
from rerankpd.evaluation.evaluate import Evaluation
from rerankpd.rerankers import Reranker
from rerankpd.testing import LoopbackRerankServer

METRICS = ["ndcg@10", "mrr@10", "map", "recall@10", "precision@10"]


def frame(n_queries: int = 30, rows: int = 10, seed: int = 0) -> pd.DataFrame:
    """Each query's relevant rows mention its topic; the original order puts them anywhere."""
    rng = np.random.default_rng(seed)
    records = []
    for q in range(n_queries):
        labels = rng.integers(0, 3, rows)
        labels[rng.integers(0, rows)] = 2  # at least one relevant row
        for i, label in enumerate(labels):
            text = f"topic{q} word{i} " + ("relevant answer " * int(label)) + f"filler{rng.integers(1000)}"
            records.append(
                {
                    "question": f"topic{q} relevant answer",
                    "text": text,
                    "label": int(label),
                    "retriever": float(rng.random()),
                    "oracle": float(label + rng.random() / 10),
                }
            )
    return pd.DataFrame(records)


class Constant(Reranker):
    name = "constant"

    def score(self, query, documents):
        return [0.5] * len(documents)


class ByLabelWord(Reranker):
    """Scores by how often a document says 'relevant': knows the answer key of ``frame``."""

    name = "bylabel"

    def score(self, query, documents):
        return [d.count("relevant") + 1.0 / (1 + len(d)) for d in documents]


def test_summary_has_one_row_per_ranking_and_the_documented_columns():
    df = frame()
    ev = rerankpd.evaluate(
        df,
        query_column="question",
        label_column="label",
        score_columns=["retriever", "oracle"],
        rerankers={"by label": ByLabelWord()},
        cache=False,
        progress=False,
    )
    assert isinstance(ev, Evaluation)
    s = ev.summary
    assert s.index.tolist() == ["original", "retriever", "oracle", "by label"]
    assert s.columns.tolist() == [*METRICS, "queries", "no_relevant", "pairs_sent", "tokens"]
    assert (s["queries"] == 30).all() and (s["no_relevant"] == 0).all()
    assert s.loc["oracle", "ndcg@10"] == pytest.approx(1.0)
    assert s.loc["by label", "ndcg@10"] > s.loc["original", "ndcg@10"]
    assert s.loc["by label", "pairs_sent"] == len(df) and s.loc["original", "pairs_sent"] == 0
    pq = ev.per_query
    assert pq.columns.tolist() == ["query", "ranking", "metric", "value"]
    assert len(pq) == 4 * 30 * 5
    mean = pq[(pq.ranking == "retriever") & (pq.metric == "map")]["value"].mean()
    assert mean == pytest.approx(s.loc["retriever", "map"])


def test_original_and_score_columns_equal_ir_measures_on_the_frame():
    df = frame(n_queries=12)
    ev = rerankpd.evaluate(
        df,
        query_column="question",
        label_column="label",
        score_columns="retriever",
        metrics=["ndcg@10", "map", "recall@5"],
    )
    qrels = [ir_measures.Qrel(q, str(i), int(lab)) for i, (q, lab) in enumerate(zip(df.question, df.label))]
    for ranking, scores in (("original", -np.arange(len(df))), ("retriever", df.retriever.to_numpy())):
        run = [ir_measures.ScoredDoc(q, str(i), float(s)) for i, (q, s) in enumerate(zip(df.question, scores))]
        for result in ir_measures.iter_calc([nDCG @ 10, AP, R @ 5], qrels, run):
            name = {nDCG @ 10: "ndcg@10", AP: "map", R @ 5: "recall@5"}[result.measure]
            ours = ev.values(ranking, name)[ev.queries.index(result.query_id)]
            assert ours == pytest.approx(result.value, abs=1e-9)


def test_the_accessor_is_the_function():
    df = frame(n_queries=5)
    a = df.rerank.evaluate(query_column="question", label_column="label", score_columns="retriever")
    b = rerankpd.evaluate(df, query_column="question", label_column="label", score_columns="retriever")
    pd.testing.assert_frame_equal(a.summary, b.summary)
    assert "label_column" in str(__import__("inspect").signature(df.rerank.evaluate))


def test_a_constant_score_reranker_reproduces_the_original_order_exactly():
    df = frame(n_queries=10)
    ev = rerankpd.evaluate(
        df, query_column="question", label_column="label", rerankers=Constant(), cache=False, progress=False
    )
    for metric in METRICS:
        np.testing.assert_array_equal(ev.values("constant", metric), ev.values("original", metric))
    table = ev.compare()
    assert (table["p_value"] == 1.0).all() and (table["ties"] == 10).all()


def test_labels_boolean_missing_and_bad():
    df = pd.DataFrame({"text": ["a", "b", "c"], "rel": [False, True, None], "grade": [0, np.nan, 2]})
    ev = rerankpd.evaluate(df, "q", label_column="rel", metrics=["mrr@10"])
    assert ev.summary.loc["original", "mrr@10"] == 0.5
    ev = rerankpd.evaluate(df, "q", label_column="grade", metrics=["mrr@10"])  # missing label = 0
    assert ev.summary.loc["original", "mrr@10"] == pytest.approx(1 / 3)
    bad = pd.DataFrame({"text": ["a", "b"], "g": [1, -1]}, index=["x", "y"])
    with pytest.raises(ValueError, match=r"label_column 'g': the row with index 'y' has label -1"):
        rerankpd.evaluate(bad, "q", label_column="g")
    with pytest.raises(TypeError, match="label_column 'w' must hold numbers"):
        rerankpd.evaluate(pd.DataFrame({"w": ["yes", "no"]}), "q", label_column="w")
    with pytest.raises(KeyError, match="label_column 'nope' is not a column"):
        rerankpd.evaluate(df, "q", label_column="nope")


def test_arguments_are_checked():
    df = frame(n_queries=2)
    with pytest.raises(ConfigurationError, match="exactly one of query"):
        rerankpd.evaluate(df, label_column="label")
    with pytest.raises(ConfigurationError, match="unknown metric"):
        rerankpd.evaluate(df, query_column="question", label_column="label", metrics=["ndgc@10"])
    with pytest.raises(KeyError, match="score_columns: 'nope'"):
        rerankpd.evaluate(df, query_column="question", label_column="label", score_columns=["nope"])
    with pytest.raises(KeyError, match="baseline 'bm26'"):
        rerankpd.evaluate(df, query_column="question", label_column="label", baseline="bm26")
    with pytest.raises(ConfigurationError, match="gain"):
        rerankpd.evaluate(df, query_column="question", label_column="label", gain="square")
    with pytest.raises(ConfigurationError, match="repeats a ranking name"):
        rerankpd.evaluate(
            df,
            query_column="question",
            label_column="label",
            score_columns="retriever",
            rerankers={"retriever": Constant()},
            cache=False,
            progress=False,
        )


def test_queries_with_no_relevant_row_count_and_skip_empty_leaves_them_out():
    df = frame(n_queries=6)
    df.loc[df.question == "topic0 relevant answer", "label"] = 0
    ev = rerankpd.evaluate(df, query_column="question", label_column="label", metrics=["map", "ndcg@10"])
    assert ev.summary.loc["original", "no_relevant"] == 1 and ev.summary.loc["original", "queries"] == 6
    assert ev.values("original", "map")[0] == 0.0
    skipped = rerankpd.evaluate(df, query_column="question", label_column="label", metrics=["map"], skip_empty=True)
    assert skipped.summary.loc["original", "queries"] == 5 and skipped.summary.loc["original", "no_relevant"] == 0
    assert skipped.summary.loc["original", "map"] == pytest.approx(ev.values("original", "map")[1:].mean())


def test_qrels_make_recall_that_of_the_collection():
    df = pd.DataFrame(
        {
            "q": ["a", "a", "b", "b"],
            "doc": ["d1", "d2", "d3", "d4"],
            "text": ["x", "y", "z", "w"],
            "label": [1, 0, 2, 0],
        }
    )
    qrels = pd.DataFrame(
        {"query": ["a", "a", "b", "b", "zzz"], "doc": ["d1", "d9", "d3", "d8", "d1"], "grade": [1, 1, 2, 3] + [1]}
    )
    ev = rerankpd.evaluate(
        df, query_column="q", label_column="label", metrics=["recall@10", "ndcg@10"], qrels=qrels, id_column="doc"
    )
    assert ev.values("original", "recall@10").tolist() == [0.5, 0.5]
    ideal_b = 3 + 2 / np.log2(3)
    assert ev.values("original", "ndcg@10")[1] == pytest.approx(2 / ideal_b)
    by_text = rerankpd.evaluate(
        df,
        query_column="q",
        label_column="label",
        metrics=["recall@10"],
        qrels=pd.DataFrame({"q": ["a"], "t": ["unretrieved"], "l": [1]}),
    )
    assert by_text.values("original", "recall@10").tolist() == [0.5, 1.0]
    with pytest.raises(TypeError, match="three columns"):
        rerankpd.evaluate(df, query_column="q", label_column="label", qrels=qrels[["query", "doc"]])


def test_rerankers_run_through_the_pipeline_and_a_second_evaluation_sends_nothing(tmp_path):
    df = frame(n_queries=4, rows=5)
    with LoopbackRerankServer(api_key="sk-test") as server:
        remote = rerankpd.get_reranker("dmxapi", api_key="sk-test", base_url=server.url, batch_size=10)
        first = rerankpd.evaluate(
            df,
            query_column="question",
            label_column="label",
            rerankers={"remote": remote, "bm25": "bm25"},
            cache=tmp_path,
            progress=False,
        )
        sent = len(server.requests)
        second = rerankpd.evaluate(
            df,
            query_column="question",
            label_column="label",
            rerankers={"remote": remote, "bm25": "bm25"},
            cache=tmp_path,
            progress=False,
        )
        assert len(server.requests) == sent > 0
    assert first.summary.loc["remote", "pairs_sent"] == len(df) and first.summary.loc["remote", "tokens"] > 0
    assert second.summary.loc["remote", "pairs_sent"] == 0 and second.summary.loc["remote", "tokens"] == 0
    pd.testing.assert_frame_equal(
        first.summary.drop(columns=["pairs_sent", "tokens"]), second.summary.drop(columns=["pairs_sent", "tokens"])
    )


def _two_rankings(n_queries: int, better_by: float) -> Evaluation:
    rng = np.random.default_rng(3)
    df = pd.DataFrame({"q": np.repeat(np.arange(n_queries), 10), "label": rng.integers(0, 2, n_queries * 10)})
    df.loc[::10, "label"] = 0
    df.loc[1::10, "label"] = 1
    # "same" ranks like the original; "better" puts one more relevant row first (query by query)
    df["same"] = -np.arange(len(df), dtype=float)
    df["better"] = df["same"] + np.where(np.arange(len(df)) % 10 == 1, better_by, 0.0)
    return rerankpd.evaluate(
        df, query_column="q", label_column="label", score_columns=["same", "better"], metrics=["mrr@10", "ndcg@10"]
    )


@pytest.mark.parametrize("test", ["randomization", "bootstrap", "t"])
def test_identical_rankings_give_p_one_and_better_on_every_query_is_significant(test):
    ev = _two_rankings(30, better_by=1.5)
    assert (ev.values("better", "mrr@10") > ev.values("original", "mrr@10")).all()
    table = ev.compare(test=test).set_index(["ranking", "metric"])
    assert table.loc[("same", "mrr@10"), "p_value"] == 1.0
    assert table.loc[("same", "ndcg@10"), "p_adjusted"] == 1.0
    assert table.loc[("better", "mrr@10"), "p_value"] < 0.01
    assert table.loc[("better", "mrr@10"), "wins"] == 30
    assert table.loc[("better", "mrr@10"), ["ties", "losses"]].tolist() == [0, 0]


def test_compare_is_seeded_and_holm_adjusts_across_rankings_and_metrics():
    ev = _two_rankings(8, better_by=1.5)
    a = ev.compare(n_resamples=500, seed=7)
    b = ev.compare(n_resamples=500, seed=7)
    pd.testing.assert_frame_equal(a, b)
    assert len(a) == 4 and (a["p_adjusted"] >= a["p_value"]).all()
    smallest = a["p_value"].min()
    assert a["p_adjusted"].min() == pytest.approx(min(1.0, smallest * 4))
    raw = ev.compare(n_resamples=500, seed=7, correction=None)
    assert (raw["p_adjusted"] == raw["p_value"]).all()
    against_better = ev.compare(baseline="better", n_resamples=500)
    assert set(against_better["ranking"]) == {"original", "same"} and (against_better["mean_delta"] <= 0).all()
    with pytest.raises(ConfigurationError, match="test"):
        ev.compare(test="wilcoxon")


def test_plot_html_and_dict(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    ev = _two_rankings(10, better_by=1.5)
    fig = ev.plot()
    assert len(fig.axes) == 3
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["mrr@10", "ndcg@10"]
    assert "better: 10 better, 0 worse" in [t.get_text() for t in fig.axes[2].get_legend().get_texts()]
    fig.savefig(tmp_path / "eval.png")
    assert (tmp_path / "eval.png").stat().st_size > 1000
    with pytest.raises(KeyError, match="metric 'map' was not evaluated"):
        ev.plot(metric="map")
    html = ev._repr_html_()
    assert "<table" in html and "better" in html and "10 queries" in html
    data = json.loads(json.dumps(ev.to_dict(per_query=True)))
    assert data["metrics"] == ["mrr@10", "ndcg@10"] and data["queries"] == 10
    assert [row["ranking"] for row in data["summary"]] == ["original", "same", "better"]
    assert len(data["per_query"]) == 3 * 10 * 2
    assert "Evaluation of 3 rankings on 10 queries" in repr(ev)


def _visible_ticks(axis_ticks, limits):
    return [t for t in axis_ticks if limits[0] <= t <= limits[1]]


def test_the_figure_is_readable_with_six_rankings_and_shows_paired_intervals():
    import matplotlib
    from matplotlib.figure import Figure

    matplotlib.use("Agg")
    rng = np.random.default_rng(5)
    n_queries = 20
    df = pd.DataFrame({"q": np.repeat(np.arange(n_queries), 10), "label": rng.integers(0, 2, n_queries * 10)})
    base = -np.arange(len(df), dtype=float)
    noise = {f"s{i}": base + rng.normal(0, 3, len(df)) for i in range(5)}
    df = df.assign(**noise)
    ev = rerankpd.evaluate(
        df, query_column="q", label_column="label", score_columns=list(noise), metrics=["ndcg@10", "mrr@10"]
    )
    fig = ev.plot()
    assert isinstance(fig, Figure) and len(ev.rankings) == 6
    means, paired, steps = fig.axes
    assert means.get_ylim()[0] == 0 and steps.get_xlim()[0] >= 0
    # six rankings: every (colour, line style, marker) of the per-query lines differs
    step_lines = [line for line in steps.get_lines() if line.get_linestyle() != "None" and len(line.get_xdata()) > 2]
    looks = {(matplotlib.colors.to_hex(line.get_color()), line.get_linestyle()) for line in step_lines}
    assert len(step_lines) == 5 and len(looks) == 5
    assert len({line.get_marker() for line in steps.get_lines() if line.get_linestyle() == "None"}) == 5
    # whole queries on the x axis
    assert all(float(t).is_integer() for t in _visible_ticks(steps.get_xticks(), steps.get_xlim()))
    # the middle panel's intervals are those of the paired differences: mean(delta) +/- z sd(delta) / sqrt(n)
    from statistics import NormalDist

    z = NormalDist().inv_cdf(0.975)
    delta = ev.values("s0", "ndcg@10") - ev.values("original", "ndcg@10")
    half = z * delta.std(ddof=1) / np.sqrt(n_queries)
    segments = [seg for coll in paired.collections for seg in coll.get_segments()]
    lows_highs = {(round(float(seg[0][1]), 12), round(float(seg[1][1]), 12)) for seg in segments}
    assert (round(delta.mean() - half, 12), round(delta.mean() + half, 12)) in lows_highs


def test_print_shows_every_column_and_tokens_dash_for_rankings_that_send_nothing():
    df = frame(n_queries=3, rows=4)
    ev = rerankpd.evaluate(
        df,
        query_column="question",
        label_column="label",
        rerankers="bm25",
        score_columns="oracle",
        cache=False,
        progress=False,
    )
    text = ev.to_string(width=80)
    assert "..." not in text
    for column in ev.summary.columns:
        assert column in text
    assert ev.summary["tokens"].isna().all()  # bm25, a column, the original order: nothing sent anywhere
    rows = {line.split()[0]: line.split() for line in text.splitlines()[1:] if line.split()}
    assert rows["bm25"][-1] == "-" and rows["oracle"][-1] == "-"
    assert "..." not in repr(ev)
    assert json.loads(json.dumps(ev.to_dict()))["summary"][1]["tokens"] is None


def test_command_line_prints_the_summary_and_json(tmp_path, capsys):
    from rerankpd.cli.commands import main

    path = tmp_path / "judged.csv"
    frame(n_queries=5, rows=6).to_csv(path, index=False)
    assert (
        main(
            [
                "evaluate",
                str(path),
                "--query-column",
                "question",
                "--label-column",
                "label",
                "-r",
                "bm25",
                "-s",
                "oracle",
                "-m",
                "ndcg@10",
                "-m",
                "map",
                "--no-cache",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["ndcg@10", "map", "queries", "no_relevant", "pairs_sent", "tokens"]
    assert "oracle     1.0000" in out and "against original (randomization test" in out
    assert main(["evaluate", str(path), "--query-column", "question", "-l", "label", "-s", "oracle", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["ranking"] for r in data["summary"]] == ["original", "oracle"]
    assert {r["metric"] for r in data["compare"]} == {"ndcg@10", "mrr@10", "map", "recall@10", "precision@10"}
    qrels = tmp_path / "qrels.csv"
    judged = frame(n_queries=5, rows=6)
    # one judgment of a row the file holds (so the qrels match the input), one of an abstract nobody retrieved
    pd.DataFrame(
        {
            "q": ["topic0 relevant answer"] * 2,
            "doc": [judged.loc[0, "text"], "an abstract nobody retrieved"],
            "l": [int(judged.loc[0, "label"]), 2],
        }
    ).to_csv(qrels, index=False)
    assert (
        main(
            [
                "evaluate",
                str(path),
                "--query-column",
                "question",
                "-l",
                "label",
                "-m",
                "recall@10",
                "--qrels",
                str(qrels),
                "--json",
            ]
        )
        == 0
    )
    with_qrels = json.loads(capsys.readouterr().out)["summary"][0]["recall@10"]
    assert with_qrels < 1.0 == data["summary"][0]["recall@10"]
    assert main(["evaluate", str(path), "--query-column", "question", "-l", "nope"]) == 2
    assert f"--label-column 'nope' is not a column of {path}" in capsys.readouterr().err


def cranfield_sample() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The shipped sample (rerankpd/testing/data/CRANFIELD.md): 10 queries x their BM25 top 20, gain 5 - grade."""
    from rerankpd.testing import cranfield_sample as load

    data = load()
    qrels = pd.DataFrame(data["qrels"], columns=["qid", "doc", "grade"]).astype({"qid": str, "doc": str})
    qrels["label"] = np.where(qrels["grade"] > 0, 5 - qrels["grade"], 0)
    qrels["query"] = qrels["qid"].map(data["queries"])
    rows = [(q, data["queries"][q], d, data["docs"][d]) for q, docs in data["first_stage"].items() for d in docs]
    df = pd.DataFrame(rows, columns=["qid", "query", "doc", "text"])
    df = df.merge(qrels[["qid", "doc", "label"]], on=["qid", "doc"], how="left").fillna({"label": 0})
    return df, qrels


def test_on_real_judgments_every_value_equals_ir_measures_with_the_collection_qrels():
    df, qrels = cranfield_sample()
    ev = rerankpd.evaluate(
        df,
        query_column="query",
        label_column="label",
        rerankers="bm25",
        cache=False,
        progress=False,
        qrels=qrels[["query", "doc", "label"]],
        id_column="doc",
    )
    assert ev.summary.loc["original", "queries"] == 10
    judged = [ir_measures.Qrel(q, d, int(lab)) for q, d, lab in zip(qrels["query"], qrels["doc"], qrels["label"])]
    names = {nDCG @ 10: "ndcg@10", AP: "map", R @ 10: "recall@10"}
    for ranking in ("original", "bm25"):
        scores = -np.arange(len(df), dtype=float) if ranking == "original" else None
        if scores is None:  # the reranker's own order, made tie-free by its ranks
            order = rerankpd.rerank(df, query_column="query", reranker="bm25", cache=False, progress=False)
            scores = -order.groupby("query", sort=False).cumcount().reindex(df.index).to_numpy(dtype=float)
        run = [ir_measures.ScoredDoc(q, d, float(s)) for q, d, s in zip(df["query"], df["doc"], scores)]
        results = list(ir_measures.iter_calc(list(names), judged, run))
        assert len(results) == 30
        for r in results:
            ours = ev.values(ranking, names[r.measure])[ev.queries.index(r.query_id)]
            assert ours == pytest.approx(r.value, abs=1e-9), (ranking, r)
    # recall of the collection: the top 20 cannot hold every relevant abstract of every query
    assert ev.summary.loc["original", "recall@10"] < 1 and ev.values("original", "recall@10").max() <= 1


@pytest.mark.slow
def test_the_evaluation_benchmark_runs_and_reports_speed_and_agreement():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "evaluate.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--only", "speed", "--quick"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(text for text in proc.stdout.splitlines() if text.startswith("BENCHMARK_JSON "))
    speed = json.loads(line.split(" ", 1)[1])["speed"]
    assert speed["rows"] == 20_000 and speed["max_abs_difference"] < 1e-9 and speed["speedup"] > 0
