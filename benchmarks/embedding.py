"""Embedding rerankers and cascades: every figure a ratio against a baseline measured in the same run.

    python benchmarks/embedding.py                   # Cranfield dev data when present, else a synthetic frame
    python benchmarks/embedding.py --max-chars 0     # full-length abstracts (slow on 2 busy cores)
    python benchmarks/embedding.py --quick           # a smoke test (--synthetic: never read the Cranfield data)

1. Per-row e5 over Q queries x C candidates (each query's BM25 top C, via ``bm25s``): passages embedded must
   equal the distinct texts (counted from ``attrs["rerank"]["embedding"]``, and checked against the frame),
   and the wall time must be >= 5x faster than the old pair-by-pair path (``E5Reranker.score(query, docs)``
   per query, as the pipeline called it). The old path is timed on the first ``--old-queries`` queries and
   its per-pair time scaled to all pairs (the work is the same per pair; say ``--old-queries Q`` to time all).
2. A second query over the embedded frame: only the query is embedded.
3. Cascade bm25 -> e5 with ``candidates=20`` of 100: exactly 20% of the pairs reach e5; nDCG@10 (gain 5 -
   grade, Cranfield's judgments) retained against reranking all 100.
4. The embeddings API through a loopback server (in a child process) with 100 ms latency: efficiency
   limit / wall, as benchmark 1 of ``benchmarks/run.py`` measures the rerank APIs (target >= 0.9).

Cranfield dev data is read from ``../shared/data/cranfield-dev.json.gz`` next to the repository's main
checkout (``--data`` overrides). By default abstracts are cut to their first ``--max-chars`` characters
(120) so that the run fits in minutes on two shared cores: the ratios count work per text and per pair,
which the length does not change. Ends with one ``BENCHMARK_JSON {...}`` line.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import tempfile
import time

import numpy as np
import pandas as pd
from _common import KEY, cranfield_path, exit_unless_checks_met, load_cranfield, server

import rerankpd
from rerankpd.evaluation.cascade_curve import scores_from_ranks
from rerankpd.evaluation.evaluate import judgments

logging.getLogger("rerankpd").setLevel(logging.ERROR)


# ----------------------------------------------------------------------------------------- data
def load_corpus(path: str | None, max_chars: int) -> tuple[dict, dict, dict, str]:
    """(docs, queries, gains by (query id, doc id)) and where they came from."""
    cut = lambda t: t[:max_chars].rsplit(" ", 1)[0] if max_chars and len(t) > max_chars else t
    if path is not None:
        data = load_cranfield(path)
        docs = {k: cut(v) for k, v in data["docs"].items()}
        gains = {(str(q), str(d)): float(5 - g) for q, d, g in data["qrels"] if g > 0}
        return docs, dict(data["queries"]), gains, f"Cranfield dev ({os.path.basename(path)})"
    rng = np.random.default_rng(0)
    vocab = [f"w{i}" for i in range(400)]
    docs = {str(i): cut(" ".join(rng.choice(vocab, 40))) for i in range(1400)}
    queries = {str(i): " ".join(rng.choice(vocab, 6)) for i in range(100)}
    words = {d: set(t.split()) for d, t in docs.items()}
    gains = {}
    for q, text in queries.items():  # the 8 documents sharing most words with the query are its relevant ones
        overlap = sorted(docs, key=lambda d: -len(words[d] & set(text.split())))
        gains.update({(q, d): 1.0 for d in overlap[:8]})
    return docs, queries, gains, "synthetic (no Cranfield data found)"


def bm25_frame(docs: dict, queries: dict, gains: dict, n_queries: int, n_candidates: int) -> pd.DataFrame:
    """Each query's BM25 top ``n_candidates`` documents (bm25s over the whole collection), one row each."""
    import bm25s

    ids = list(docs)
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize([docs[i] for i in ids], stopwords="en", show_progress=False), show_progress=False)
    qids = list(queries)[:n_queries]
    hits, scores = retriever.retrieve(
        bm25s.tokenize([queries[q] for q in qids], stopwords="en", show_progress=False),
        k=n_candidates,
        show_progress=False,
    )
    rows = []
    for qi, q in enumerate(qids):
        for di, score in zip(hits[qi], scores[qi]):
            d = ids[int(di)]
            rows.append(
                {
                    "qid": q,
                    "query": queries[q],
                    "doc_id": d,
                    "text": docs[d],
                    "bm25": float(score),
                    "gain": gains.get((q, d), 0.0),
                }
            )
    return pd.DataFrame(rows)


def ndcg(df: pd.DataFrame, ranks) -> float:
    judged = judgments(
        df, query_column="qid", label_column="gain", metrics=["ndcg@10"], skip_empty=True, text_needed=False
    )  # evaluate's own figures; the mean over queries with a relevant row
    return float(judged.values(scores_from_ranks(np.asarray(ranks, dtype=np.int64))).mean())


# ----------------------------------------------------------------------------------------- the API
def bench_api(n_docs: int) -> dict:
    batch, conc, latency = 50, 8, 0.1
    docs = [f"{i} embedding benchmark text about cold hands and winter tea" for i in range(n_docs)]
    df = pd.DataFrame({"text": docs})
    n_requests = 1 + math.ceil(n_docs / batch)  # the query's request shares the pool with the texts'
    limit = math.ceil(n_requests / conc) * latency
    with server(dialect="openai-embeddings", latency=latency) as (url, stats):
        r = rerankpd.get_reranker(
            "embeddings",
            api_key=KEY,
            base_url=url,
            model="loopback-embed",
            batch_size=batch,
            max_concurrency=conc,
            timeout=(5.0, 30.0),
        )
        rerankpd.rerank(df.head(100), "warm up", reranker=r, cache=False, progress=False)
        walls = []
        for _ in range(3):
            start = time.perf_counter()
            out = rerankpd.rerank(df, "how to keep hands warm", reranker=r, cache=False, progress=False)
            walls.append(time.perf_counter() - start)
        wall = statistics.median(walls)
        info = out.attrs["rerank"]["embedding"]
        seen = stats()
        r.close()
    return dict(
        name="4. embeddings API efficiency (limit / wall)",
        value=f"{wall:.3f}s",
        baseline=f"limit {limit:.2f}s",
        ratio=limit / wall,
        target=">= 0.9",
        met=limit / wall >= 0.9,
        detail=f"{n_docs} texts + 1 query in {info['requests']} requests, batch {batch}, concurrency "
        f"{conc}, latency {latency * 1000:.0f} ms; server saw at most {seen['max_in_flight']} "
        "in flight",
    )


# ----------------------------------------------------------------------------------------- e5 and cascades
def bench_e5(df: pd.DataFrame, old_queries: int, cache_dir: str) -> tuple[list[dict], dict]:
    e5 = rerankpd.get_reranker("e5")
    distinct = int(df["text"].nunique())
    pairs = len(df.drop_duplicates(["qid", "text"]))
    e5.embed_documents(["warm up"])
    start = time.perf_counter()
    new = rerankpd.rerank(df, query_column="query", reranker=e5, cache=cache_dir, progress=False, sort=False)
    new_wall = time.perf_counter() - start
    info = new.attrs["rerank"]["embedding"]

    # the old path: E5Reranker.score(query, docs) per query, as the pipeline called it before
    old_df = df[df["qid"].isin(df["qid"].unique()[:old_queries])]
    old_pairs = 0
    start = time.perf_counter()
    old_scores = []
    for query, group in old_df.groupby("query", sort=False):
        docs = group["text"].drop_duplicates().tolist()
        old_scores.append(pd.Series(e5.score(query, docs), index=docs))
        old_pairs += len(docs)
    old_measured = time.perf_counter() - start
    old_wall = old_measured * pairs / old_pairs
    # same scores (float32 rounding apart)
    worst = 0.0
    for (_query, group), s in zip(old_df.groupby("query", sort=False), old_scores):
        got = new.loc[group.index].set_index("text")["rerank_score"].groupby(level=0).first()
        worst = max(worst, float(np.abs(got.reindex(s.index).to_numpy() - s.to_numpy()).max()))

    # 2. a second query over the embedded frame
    texts = pd.DataFrame({"text": df["text"].drop_duplicates().tolist()})
    start = time.perf_counter()
    second = rerankpd.rerank(
        texts, "supersonic flow over a swept wing at high angle of attack", reranker=e5, cache=cache_dir, progress=False
    )
    second_wall = time.perf_counter() - start
    second_info = second.attrs["rerank"]["embedding"]
    rows = [
        dict(
            name="1a. passages embedded == distinct texts",
            value=str(info["texts_embedded"]),
            baseline=f"{distinct} distinct of {len(df)} rows",
            ratio=info["texts_embedded"] / distinct,
            target="== 1.0",
            met=info["texts_embedded"] == distinct and info["queries_embedded"] == df["qid"].nunique(),
            detail=f"{info['queries_embedded']} queries embedded; {pairs} pairs scored",
        ),
        dict(
            name="1b. e5 per-row speed-up over the pair-by-pair path",
            value=f"{new_wall:.1f}s",
            baseline=f"old {old_wall:.1f}s",
            ratio=old_wall / new_wall,
            target=">= 5",
            met=old_wall / new_wall >= 5,
            detail=f"old path timed on {old_queries} queries ({old_pairs} pairs, {old_measured:.1f}s), scaled to "
            f"{pairs} pairs; largest score difference {worst:.1e}",
        ),
        dict(
            name="2. second query over the embedded frame",
            value=f"{second_wall:.2f}s",
            baseline=f"{len(texts)} texts",
            ratio=float(second_info["texts_embedded"] == 0 and second_info["queries_embedded"] == 1),
            target="1 query, 0 texts embedded",
            met=second_info["texts_embedded"] == 0 and second_info["queries_embedded"] == 1,
            detail=f"texts from the embedding cache: {second_info['texts_from_cache']}",
        ),
    ]
    return rows, {"full": new, "e5": e5}


def bench_cascade(df: pd.DataFrame, full: pd.DataFrame, e5, cache_dir: str, candidates: int) -> list[dict]:
    total = len(df.drop_duplicates(["qid", "text"]))
    cascade = rerankpd.rerank(
        df,
        query_column="query",
        reranker=e5,
        prefilter="bm25",
        candidates=candidates,
        cache=cache_dir,
        progress=False,
        sort=False,
    )
    info = cascade.attrs["rerank"]["cascade"]
    rows, sent = info["rows_with_text"], info["candidate_rows"]
    full_ndcg = ndcg(df, full["rerank_rank"].to_numpy(dtype=np.int64, na_value=0))
    cascade_ndcg = ndcg(df, cascade["rerank_rank"].to_numpy(dtype=np.int64, na_value=0))
    bm25_ranks = df.groupby("qid", sort=False)["bm25"].rank(ascending=False, method="first").astype(int)
    bm25_ndcg = ndcg(df, bm25_ranks.to_numpy())
    n_candidates = df.groupby("qid").size().max()
    return [
        dict(
            name=f"3a. cascade candidates={candidates} of {n_candidates}: share of pairs to e5",
            value=f"{sent} pairs",
            baseline=f"{rows} pairs",
            ratio=sent / rows,
            target=f"== {candidates / n_candidates:.2f}",
            met=bool(sent * n_candidates == rows * candidates),
            detail=f"prefilter: the BM25 scores the candidates came with (column 'bm25'); after dedupe "
            f"{info['pairs_to_reranker']} of {total} unique (query, text) pairs (a repeated text is "
            "one pair)",
        ),
        dict(
            name="3b. nDCG@10 retained, bm25 -> e5 cascade vs e5 on all",
            value=f"{cascade_ndcg:.4f}",
            baseline=f"all {full_ndcg:.4f}",
            ratio=cascade_ndcg / full_ndcg,
            target="report",
            met=True,
            detail=f"bm25 alone {bm25_ndcg:.4f}",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=None, help="path of cranfield-dev.json.gz")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--old-queries", type=int, default=5)
    parser.add_argument("--max-chars", type=int, default=120, help="cut each abstract (0: full length)")
    parser.add_argument("--api-docs", type=int, default=4000)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--synthetic", action="store_true", help="use a synthetic frame even if Cranfield is there")
    args = parser.parse_args()
    if args.quick:
        args.queries, args.candidates, args.old_queries, args.api_docs = 6, 20, 1, 400
        args.max_chars = min(args.max_chars or 80, 80)
    path = None if args.synthetic else (args.data or cranfield_path())
    docs, queries, gains, source = load_corpus(path, args.max_chars)
    results = [bench_api(args.api_docs)]
    df = bm25_frame(docs, queries, gains, args.queries, args.candidates)
    with tempfile.TemporaryDirectory() as cache_dir:
        rows, state = bench_e5(df, args.old_queries, cache_dir)
        results += rows
        results += bench_cascade(df, state["full"], state["e5"], cache_dir, max(1, args.candidates // 5))
    print(
        f"data: {source}; {args.queries} queries x {args.candidates} BM25 candidates; abstracts cut to "
        f"{args.max_chars or 'full'} characters; {os.cpu_count()} cores"
    )
    for r in results:
        mark = "met" if r["met"] else "NOT MET"
        print(
            f"{r['name']:<62} {r['value']:>14}  vs {r['baseline']:<26} ratio {r['ratio']:7.3f}  "
            f"target {r['target']:<26} {mark}\n    {r['detail']}"
        )
    print(
        "BENCHMARK_JSON "
        + json.dumps(
            {
                "source": source,
                "queries": args.queries,
                "candidates": args.candidates,
                "max_chars": args.max_chars,
                "results": results,
            },
            default=str,
        )
    )
    exit_unless_checks_met(results, ("1a.", "2.", "3a."))  # what was embedded and sent: counts, not timings


if __name__ == "__main__":
    main()
