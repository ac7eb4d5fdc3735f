"""Hybrid rankings: fusion speed against a vectorised pandas baseline (and ranx), and what fusing BM25 with e5
does on the Cranfield dev queries.

    python benchmarks/fusion.py                   # both (a few minutes on 2 busy cores; e5 is cached after)
    python benchmarks/fusion.py --only speed      # speed cranfield
    python benchmarks/fusion.py --only cranfield --depth 20 --max-chars 200

1. speed: two score columns over 1,000,000 rows (10,000 queries x 100 rows). ``rerankpd.fuse`` (min-max +
   wsum, and rrf; ``sort=False``, i.e. the fused score and rank columns on a copy of the frame) against the
   same work written as vectorised pandas in the same run (groupby min/max transform, weighted sum, groupby
   rank; for rrf: groupby rank of each column, 1/(60 + rank), sum, rank). Target: <= 2x the baseline.
   ranx's ``fuse`` on the same runs is timed beside it (its ``Run.from_df`` conversion separately).
2. cranfield: ``../shared/data/cranfield-dev.json.gz`` (skipped when absent). A BM25 first stage (bm25s over
   the collection) hands each query its top ``--depth`` abstracts; e5 scores them, on abstracts cut to their
   first ``--max-chars`` characters so that it runs in minutes on 2 shared cores (scores are cached, so a
   rerun is fast); then RRF of the two and a weighted sum with weights learned by ``fit_fusion`` (min-max,
   grid step 0.1, 5-fold cross-validated over queries). nDCG@10 of each (the learned fusion's from its
   out-of-fold scores) with ``compare()``'s Holm-adjusted p against the first stage and against e5.

Ends with one ``BENCHMARK_JSON {...}`` line.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from _common import CRANFIELD_NEXT_TO_ROOT, cranfield_path, load_cranfield

import rerankpd

CRANFIELD = Path(cranfield_path() or CRANFIELD_NEXT_TO_ROOT)
logging.getLogger("bm25s").setLevel(logging.WARNING)


def timed(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


# ------------------------------------------------------------------------------------------------ speed
def speed_frame(queries: int, rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = queries * rows
    return pd.DataFrame(
        {
            "q": np.repeat(np.arange(queries), rows),
            "doc": np.tile(np.arange(rows), queries),
            "bm25": rng.gamma(2.0, 3.0, n),
            "dense": rng.random(n),
        }
    )


def pandas_wsum(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy(deep=False)
    grouped = df.groupby("q", sort=False)[["bm25", "dense"]]
    low, high = grouped.transform("min"), grouped.transform("max")
    norm = (df[["bm25", "dense"]] - low) / (high - low).clip(lower=1e-9)
    out["fused"] = 0.5 * norm["bm25"] + 0.5 * norm["dense"]
    out["rank"] = out.groupby("q", sort=False)["fused"].rank(ascending=False, method="first")
    return out


def pandas_rrf(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy(deep=False)
    ranks = df.groupby("q", sort=False)[["bm25", "dense"]].rank(ascending=False, method="first")
    out["fused"] = (1 / (60 + ranks)).sum(axis=1)
    out["rank"] = out.groupby("q", sort=False)["fused"].rank(ascending=False, method="first")
    return out


def bench_speed(queries: int, rows: int) -> dict:
    df = speed_frame(queries, rows)
    results = {"rows": len(df), "queries": queries}
    for method, baseline in (("wsum", pandas_wsum), ("rrf", pandas_rrf)):
        options = {"weights": [0.5, 0.5]} if method == "wsum" else {}
        ours = timed(
            lambda m=method, o=options: rerankpd.fuse(
                df, ["bm25", "dense"], query_column="q", method=m, sort=False, **o
            )
        )
        base = timed(lambda b=baseline: b(df))
        sorted_s = timed(
            lambda m=method, o=options: rerankpd.fuse(df, ["bm25", "dense"], query_column="q", method=m, **o), repeat=1
        )
        check = rerankpd.fuse(df, ["bm25", "dense"], query_column="q", method=method, sort=False, **options)
        agree = float(np.abs(check["fusion_score"].to_numpy() - baseline(df)["fused"].to_numpy()).max())
        results[method] = {
            "rerankpd_s": round(ours, 3),
            "pandas_s": round(base, 3),
            "ratio": round(ours / base, 2),
            "met": ours / base <= 2,
            "sorted_s": round(sorted_s, 3),
            "max_abs_difference": agree,
        }
    try:
        import ranx
    except ImportError as exc:  # reported, not hidden
        results["ranx"] = {"skipped": str(exc)}
        return results
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frame = df.assign(q=df["q"].astype(str).astype(object), doc=df["doc"].astype(str).astype(object))
        start = time.perf_counter()
        runs = [ranx.Run.from_df(frame, q_id_col="q", doc_id_col="doc", score_col=c) for c in ("bm25", "dense")]
        convert = time.perf_counter() - start
        ranx.fuse(runs[:1] * 2, norm="min-max", method="wsum", params={"weights": [0.5, 0.5]})  # compile
        wsum = timed(lambda: ranx.fuse(runs, norm="min-max", method="wsum", params={"weights": [0.5, 0.5]}), repeat=1)
        rrf = timed(lambda: ranx.fuse(runs, method="rrf"), repeat=1)
    results["ranx"] = {"from_df_s": round(convert, 3), "wsum_s": round(wsum, 3), "rrf_s": round(rrf, 3)}
    return results


# ------------------------------------------------------------------------------------------------ cranfield
def first_stage(data: dict, depth: int, max_chars: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """BM25 (bm25s over the whole collection) top ``depth`` per query, judgments as gain 5 - grade."""
    import bm25s

    doc_ids = list(data["docs"])
    index = bm25s.BM25()
    index.index(
        bm25s.tokenize([data["docs"][d] for d in doc_ids], stopwords="en", show_progress=False), show_progress=False
    )
    qids = list(data["queries"])
    hits, scores = index.retrieve(
        bm25s.tokenize([data["queries"][q] for q in qids], stopwords="en", show_progress=False),
        k=depth,
        show_progress=False,
    )
    qrels = pd.DataFrame(data["qrels"], columns=["qid", "doc", "grade"]).astype({"qid": str, "doc": str})
    qrels["label"] = np.where(qrels["grade"] > 0, 5 - qrels["grade"], 0)
    qrels["query"] = qrels["qid"].map(data["queries"])
    cut = lambda t: t[:max_chars].rsplit(" ", 1)[0] if max_chars and len(t) > max_chars else t
    frame = pd.DataFrame(
        {
            "qid": np.repeat(qids, depth),
            "doc": [doc_ids[i] for i in hits.reshape(-1)],
            "first_stage": scores.reshape(-1).astype(float),
        }
    )
    frame["query"] = frame["qid"].map(data["queries"])
    frame["text"] = frame["doc"].map(data["docs"]).map(cut)
    frame = frame.merge(qrels[["qid", "doc", "label"]], on=["qid", "doc"], how="left")
    frame["label"] = frame["label"].fillna(0).astype(int)
    return frame, qrels[["query", "doc", "label"]]


def bench_cranfield(depth: int, max_chars: int) -> dict:
    if not CRANFIELD.exists():
        return {"skipped": f"{CRANFIELD} not found"}
    frame, qrels = first_stage(load_cranfield(CRANFIELD), depth, max_chars)
    start = time.perf_counter()
    e5 = rerankpd.scores(frame, query_column="query", reranker="e5", progress=False)
    e5_seconds = time.perf_counter() - start
    frame["e5"] = e5.to_numpy()
    common = {"query_column": "query", "label_column": "label", "qrels": qrels, "id_column": "doc"}
    learned = rerankpd.fit_fusion(frame, ["first_stage", "e5"], metric="ndcg@10", folds=5, **common)
    frame["learned (cross-validated)"] = learned.fitted.cv_scores
    evaluation = rerankpd.evaluate(
        frame,
        score_columns=["first_stage", "e5", "learned (cross-validated)"],
        rerankers={"rrf(first_stage, e5)": rerankpd.Fusion(["first_stage", "e5"])},
        metrics=["ndcg@10", "map", "recall@10"],
        baseline="first_stage",
        **common,
    )
    summary = evaluation.summary
    p = {}
    for baseline in ("first_stage", "e5"):
        table = evaluation.compare(baseline=baseline)
        p[baseline] = {r.ranking: round(float(r.p_adjusted), 4) for r in table.itertuples() if r.metric == "ndcg@10"}
    return {
        "queries": len(evaluation.queries),
        "rows": len(frame),
        "depth": depth,
        "max_chars": max_chars,
        "e5_seconds": round(e5_seconds, 1),
        "ndcg@10": {k: round(float(v), 4) for k, v in summary["ndcg@10"].items()},
        "learned_weights": learned.fitted.weights,
        "learned_in_sample_ndcg@10": round(learned.fitted.in_sample, 4),
        "learned_cv_ndcg@10": round(learned.fitted.cv_mean, 4),
        "fold_weights": learned.fitted.fold_weights,
        "p_ndcg@10_holm": p,
        "summary": summary,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=["speed", "cranfield"])
    parser.add_argument("--queries", type=int, default=10_000, help="speed: queries (x --rows rows each)")
    parser.add_argument("--rows", type=int, default=100)
    parser.add_argument("--depth", type=int, default=20, help="cranfield: first-stage candidates per query")
    parser.add_argument("--max-chars", type=int, default=200, help="cranfield: cut abstracts for e5 (0: full)")
    args = parser.parse_args(argv)
    results: dict = {}
    started = time.perf_counter()
    if "speed" in args.only:
        s = results["speed"] = bench_speed(args.queries, args.rows)
        print(f"1. speed: two score columns, {s['rows']:,} rows ({s['queries']:,} queries)")
        for method in ("wsum", "rrf"):
            r = s[method]
            print(
                f"   {method:<4} rerankpd.fuse {r['rerankpd_s']}s (sorted {r['sorted_s']}s), pandas {r['pandas_s']}s "
                f"-> ratio {r['ratio']} (target <= 2: {'met' if r['met'] else 'NOT met'}); "
                f"max |difference| {r['max_abs_difference']:.1e}"
            )
        print(f"   ranx: {s['ranx']}")
    if "cranfield" in args.only:
        c = bench_cranfield(args.depth, args.max_chars)
        if "skipped" in c:
            print(f"2. cranfield: skipped ({c['skipped']})")
        else:
            summary = c.pop("summary")
            print(
                f"2. cranfield: {c['queries']} queries x top {c['depth']} of a BM25 first stage; e5 on abstracts "
                f"cut to {c['max_chars'] or 'full'} characters ({c['e5_seconds']}s)"
            )
            with pd.option_context("display.width", 160, "display.precision", 4):
                print(summary.drop(columns=["tokens"]).to_string())
            print(
                f"   learned weights {c['learned_weights']}: nDCG@10 5-fold cross-validated "
                f"{c['learned_cv_ndcg@10']} (in-sample {c['learned_in_sample_ndcg@10']}, optimistic)"
            )
            for baseline, p in c["p_ndcg@10_holm"].items():
                print(f"   nDCG@10 against {baseline}, Holm-adjusted p (randomization): {p}")
        results["cranfield"] = c
    print(f"total {time.perf_counter() - started:.0f}s; {os.cpu_count()} cores")
    print("BENCHMARK_JSON " + json.dumps(results, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
