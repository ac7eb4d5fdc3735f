"""The ``llm`` reranker: requests per run, estimate() against the tokens counted, and Cranfield end to end.

    python benchmarks/llm.py            # loopback fake LLM only (about half a minute)
    python benchmarks/llm.py --quick    # fewer Cranfield queries
    DMXAPI_API_KEY=sk-... python benchmarks/llm.py --real gpt-4o-mini            # prints the cost, sends nothing
    DMXAPI_API_KEY=sk-... python benchmarks/llm.py --real gpt-4o-mini --confirm  # the real nDCG@10 (costs money)

Every figure is a ratio against a baseline from the same run: requests sent against the number the issue
fixes (100 pairs pointwise, ceil((100 - 20) / 10) + 1 = 9 windows listwise), ``estimate()``'s prompt tokens
against the tokens the fake server counted (its own rule: CJK characters plus whitespace-separated pieces
of every message), and nDCG@10 of each mode (:func:`rerankpd.evaluate`) against the BM25 first stage it
reranks. The Cranfield part
reads ``../shared/data/cranfield-dev.json.gz`` from the repository root and is skipped when it is absent.
With the fake LLM (character-bigram overlap) the nDCG only shows the evaluation runs end to end; ``--real MODEL``
runs the same cell against DMXAPI's chat API. Ends with one ``BENCHMARK_JSON`` line.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import tempfile
import time

import pandas as pd
from _common import (
    CRANFIELD_NEXT_TO_ROOT,
    KEY,
    QUERY,
    cranfield_path,
    exit_unless_checks_met,
    load_cranfield,
    print_report,
)

import rerankpd
from rerankpd.testing import LoopbackRerankServer

logging.getLogger("rerankpd").setLevel(logging.ERROR)
CRANFIELD = cranfield_path() or CRANFIELD_NEXT_TO_ROOT
TOPICS = [
    "wash hands often to prevent a cold",
    "stock markets fell sharply today",
    "a cold winter is coming",
    "how to prevent the flu in winter",
    "a recipe for beef stew",
    "sleep well to prevent a common cold",
    "预防感冒应勤洗手、戴口罩，保持室内通风",
    "冬天如何预防感冒",
]
CANDIDATES = 30  # BM25 candidates reranked per Cranfield query


def row(name, value, baseline, ratio, target, met, detail="") -> dict:
    return dict(
        name=name, value=str(value), baseline=str(baseline), ratio=float(ratio), target=target, met=met, detail=detail
    )


def synthetic(n: int) -> pd.DataFrame:
    return pd.DataFrame({"text": [f"{TOPICS[i % len(TOPICS)]} (note {i}) " + "detail " * (i % 13) for i in range(n)]})


def reranker(server, mode: str, **options):
    return rerankpd.get_reranker(
        "llm",
        model="fake-chat",
        mode=mode,
        api_key=KEY,
        base_url=server.url,
        backoff_base=0.001,
        backoff_cap=0.01,
        **options,
    )


# ----------------------------------------------------------------------------------------- requests and tokens
def bench_requests() -> list[dict]:
    rows = []
    df = synthetic(100)
    with LoopbackRerankServer(api_key=KEY, dialect="openai-chat") as server, tempfile.TemporaryDirectory() as cache:
        for mode in ("pointwise", "listwise"):
            server.reset()
            r = reranker(server, mode, window_cache=False)
            est = rerankpd.estimate(df, QUERY, reranker=r, cache=cache)
            out = df.rerank(QUERY, reranker=r, cache=cache, progress=False)
            sent = len(server.requests)
            want = 100 if mode == "pointwise" else math.ceil((100 - 20) / 10) + 1
            rows.append(
                row(
                    f"1. requests, {mode}, 100 candidates",
                    sent,
                    f"expected {want}",
                    sent / want,
                    "== 1.00",
                    sent == want,
                    f"estimate() said {est.requests}",
                )
            )
            counted = out.attrs["rerank"]["usage"]["prompt_tokens"]
            ratio = est.approx_tokens / counted
            rows.append(
                row(
                    f"2. estimate tokens, {mode}",
                    est.approx_tokens,
                    f"counted {counted}",
                    ratio,
                    "within 10%",
                    abs(ratio - 1) <= 0.10,
                    "synthetic English and Chinese notes",
                )
            )
        server.reset()
        mixed = pd.concat([df.iloc[:70], synthetic(130).iloc[100:]], ignore_index=True)
        r = reranker(server, "pointwise")
        est = rerankpd.estimate(mixed, QUERY, reranker=r, cache=cache)
        out = mixed.rerank(QUERY, reranker=r, cache=cache, progress=False)
        sent, hits = len(server.requests), out.attrs["rerank"]["from_cache"]
        rows.append(
            row(
                "1. requests, pointwise rerun, 70 cached",
                sent,
                f"100 - {hits} hits",
                sent / (100 - hits),
                "== 1.00",
                sent == 100 - hits == est.requests,
                f"estimate() said {est.requests}",
            )
        )
    return rows


# ----------------------------------------------------------------------------------------- Cranfield
def ndcg_at_10(ranked: list[str], gains: dict[str, float]) -> float:
    """trec_eval's ndcg_cut.10: linear gains, log2(rank + 1) discount, ideal from every judged document."""
    dcg = sum(gains.get(d, 0.0) / math.log2(i + 2) for i, d in enumerate(ranked[:10]))
    ideal = sorted((g for g in gains.values() if g > 0), reverse=True)[:10]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def cranfield_candidates(data: dict, n_queries: int) -> tuple[pd.DataFrame, dict[str, dict[str, float]]]:
    """Each query's BM25 top CANDIDATES over all 1,400 abstracts, best first, with the judged gains."""
    gains: dict[str, dict[str, float]] = {}
    for qid, did, grade in data["qrels"]:
        if grade in (1, 2, 3, 4):
            gains.setdefault(str(qid), {})[str(did)] = 5.0 - grade
    docs = pd.DataFrame({"doc_id": list(data["docs"]), "text": list(data["docs"].values())})
    frames = []
    for qid in [q for q in data["queries"] if q in gains][:n_queries]:
        top = docs.rerank(data["queries"][qid], reranker="bm25", top_n=CANDIDATES, cache=False, progress=False)
        frames.append(top.assign(query_id=qid, query=data["queries"][qid])[["query_id", "query", "doc_id", "text"]])
    return pd.concat(frames, ignore_index=True), gains


def mean_ndcg(frame: pd.DataFrame, gains: dict) -> float:
    per_query = [
        ndcg_at_10(group["doc_id"].tolist(), gains[qid]) for qid, group in frame.groupby("query_id", sort=False)
    ]
    return sum(per_query) / len(per_query)


def bench_cranfield(path: str, n_queries: int, real_model: str | None, confirm: bool) -> list[dict]:
    if not os.path.exists(path):
        print(f"[cranfield: {path} not found, skipped]", file=sys.stderr)
        return []
    data = load_cranfield(path)
    frame, gains = cranfield_candidates(data, n_queries)
    rows, runs = [], {}
    with LoopbackRerankServer(api_key=KEY, dialect="openai-chat") as server:
        for mode in ("pointwise", "listwise"):
            if real_model:
                r = rerankpd.get_reranker("llm", model=real_model, mode=mode, window_cache=False)
                label = real_model
            else:
                server.reset()
                r = reranker(server, mode, window_cache=False)
                label = "fake LLM"
            est = rerankpd.estimate(frame, query_column="query", reranker=r, cache=False)
            print(f"[cranfield {mode}, {label}: {est}]", file=sys.stderr, flush=True)
            if real_model and not confirm:
                continue
            t = time.perf_counter()
            out = frame.rerank(query_column="query", reranker=r, cache=False, progress=False)
            wall = time.perf_counter() - t
            column = f"llm {mode} ({label})"
            frame[column] = out["rerank_score"]  # aligned on the index
            runs[column] = (out, wall)
            usage = out.attrs["rerank"]["usage"]
            counted = usage.get("prompt_tokens", 0)
            if counted:
                ratio = est.approx_tokens / counted
                rows.append(
                    row(
                        f"2. estimate tokens, Cranfield {mode} ({label})",
                        est.approx_tokens,
                        f"counted {counted}",
                        ratio,
                        "within 10%" if not real_model else "report",
                        abs(ratio - 1) <= 0.10 if not real_model else None,
                        f"{est.requests} requests estimated",
                    )
                )
    if not runs:
        return rows
    # the evaluation, as a user would run it: the BM25 order is the frame's "original" ranking
    frame["gain"] = [gains[q].get(d, 0.0) for q, d in zip(frame["query_id"], frame["doc_id"])]
    judged = pd.DataFrame(
        [(data["queries"][q], d, g) for q in frame["query_id"].unique() for d, g in gains[q].items()],
        columns=["query", "doc_id", "label"],
    )
    evaluation = rerankpd.evaluate(
        frame,
        query_column="query",
        label_column="gain",
        score_columns=list(runs),
        qrels=judged,
        id_column="doc_id",
        metrics=["ndcg@10"],
        progress=False,
    )
    ndcg = evaluation.summary["ndcg@10"]
    compared = evaluation.compare(n_resamples=2000).set_index("ranking")
    for column, (out, wall) in runs.items():
        check = mean_ndcg(out, gains)
        rows.append(
            row(
                f"3. Cranfield nDCG@10, {column}",
                f"{ndcg[column]:.4f}",
                f"BM25 {ndcg['original']:.4f}",
                ndcg[column] / ndcg["original"],
                "report",
                None,
                f"{n_queries} queries x BM25 top {CANDIDATES}; p = "
                f"{compared.loc[column, 'p_adjusted']:.3g} vs BM25 (paired randomization, Holm); "
                f"{wall:.1f}s; local nDCG check {check:.4f}; "
                f"usage {out.attrs['rerank']['usage']}",
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 Cranfield queries instead of 25")
    parser.add_argument("--real", metavar="MODEL", help="rerank Cranfield with this chat model on DMXAPI")
    parser.add_argument(
        "--data", default=CRANFIELD, help="the Cranfield file (default: ../shared/data/... from the repository root)"
    )
    parser.add_argument("--confirm", action="store_true", help="with --real: send the requests (costs money)")
    args = parser.parse_args()
    started = time.perf_counter()
    rows = [] if args.real else bench_requests()
    rows += bench_cranfield(args.data, 5 if args.quick else 25, args.real, args.confirm)
    total = time.perf_counter() - started
    print()
    print_report(rows, args.quick, total, table_digits=3, json_digits=4)
    exit_unless_checks_met(rows, ("1. requests", "2. estimate tokens"))  # counts: exact whatever the machine


if __name__ == "__main__":
    main()
