"""Under faults: rerankpd beside the official cohere SDK on the same Cohere-shaped loopback server.

    pip install 'rerankpd[bench]'            # the official cohere SDK, for this script only
    python benchmarks/faults.py              # full sizes (about a minute on 2 cores)
    python benchmarks/faults.py --quick      # smaller, for a smoke test

A Cohere-shaped loopback server answers in 100 ms. 4,000 documents, one query, 80 requests of 50: rerankpd
(its default Cohere budget, 1,000 requests a minute, concurrency 8, ``errors="raise"``) and the cohere SDK
(``ClientV2.rerank`` from 8 threads, its default retries) on the same server:

(F) 30% of requests fail (429 with ``Retry-After: 0.1``, 500, 503, a dropped connection), three seeds: rows
    scored right (the server's own score) and wall time of each; target: rerankpd scores every row and its
    median wall is at most the SDK's.
(C) Clean: rerankpd's wall against the limit ceil(80 / 8) x 100 ms; target <= 1.1x.
(R) A server admitting 50 requests/s and answering 429 above (benchmark R of ``benchmarks/run.py``, the
    budget set to the server's rate): within 10% of 50 requests/s, few 429s.

The servers run in a child process (``benchmarks/_server.py``). Ends with one ``BENCHMARK_JSON`` line.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import requests
from _common import HERE, KEY, QUERY, print_report, server, texts

import rerankpd
from rerankpd.testing import overlap_score

_spec = importlib.util.spec_from_file_location("benchmarks_run", os.path.join(HERE, "run.py"))
run = importlib.util.module_from_spec(_spec)  # benchmarks/run.py: benchmark R
_spec.loader.exec_module(run)

LATENCY, BATCH, THREADS = 0.1, 50, 8
FAULTS = dict(fault_rate=0.3, fault_kinds=["429", "500", "503", "drop"], fault_retry_after="0.1")


def _right(scores: dict[int, float], docs: list[str]) -> int:
    """Rows whose score is the server's own score for that document."""
    return sum(1 for i, s in scores.items() if math.isclose(s, overlap_score(QUERY, docs[i]), abs_tol=1e-9))


def ours(url: str, docs: list[str]) -> tuple[int, float, str]:
    """rerankpd with its defaults (the Cohere budget on): rows right, wall seconds, how it ended."""
    df = pd.DataFrame({"text": docs})
    r = rerankpd.get_reranker("cohere", api_key=KEY, base_url=url, batch_size=BATCH, max_concurrency=THREADS)
    assert r.rate_limiter.requests_per_minute == 1000
    start = time.perf_counter()
    try:
        out, ended = rerankpd.rerank(df, QUERY, reranker=r, cache=False, progress=False), "ok"
    except rerankpd.RerankError as exc:
        out, ended = exc.partial, f"raised {type(exc).__name__}"
    wall = time.perf_counter() - start
    r.close()
    scored = out["rerank_score"].dropna() if out is not None else pd.Series(dtype=float)
    return _right(dict(zip(scored.index, scored)), docs), wall, ended


def sdk(url: str, docs: list[str]) -> tuple[int, float, str]:
    """The cohere SDK's ``ClientV2.rerank`` from 8 threads (its default retries); a failed request loses rows."""
    import cohere

    client = cohere.ClientV2(api_key=KEY, base_url=url.rsplit("/v2", 1)[0], timeout=30)
    batches = [list(range(i, min(i + BATCH, len(docs)))) for i in range(0, len(docs), BATCH)]

    def one(rows: list[int]) -> dict[int, float]:
        try:
            answer = client.rerank(model="rerank-v3.5", query=QUERY, documents=[docs[i] for i in rows], top_n=len(rows))
        except Exception:  # noqa: BLE001 - a lost request: its rows are not scored
            return {}
        return {rows[item.index]: item.relevance_score for item in answer.results}

    start = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as pool:
        parts = list(pool.map(one, batches))
    wall = time.perf_counter() - start
    scores = {k: v for part in parts for k, v in part.items()}
    lost = sum(1 for p in parts if not p)
    return _right(scores, docs), wall, f"{lost} requests lost"


def under_faults(sizes: dict) -> list[dict]:
    docs = texts(sizes["docs"], seed=11)
    seen: dict[str, list[tuple[int, float, str]]] = {"rerankpd": [], "cohere SDK": []}
    for seed in sizes["seeds"]:
        for label, client in (("rerankpd", ours), ("cohere SDK", sdk)):
            with server(latency=LATENCY, dialect="cohere", api_key=KEY, seed=seed, **FAULTS) as (url, stats):
                right, wall, ended = client(url, docs)
                served = stats()
            seen[label].append((right, wall, ended))
            print(
                f"  seed {seed} {label:10s}: {right} / {len(docs)} rows right in {wall:.2f}s ({ended}; "
                f"{served['requests']} requests served)",
                flush=True,
            )
    walls = {label: statistics.median(w for _, w, _ in runs) for label, runs in seen.items()}
    rights = {label: [r for r, _, _ in runs] for label, runs in seen.items()}
    ratio = walls["rerankpd"] / walls["cohere SDK"]
    every_row = all(r == len(docs) for r in rights["rerankpd"])
    return [
        dict(
            name="F. 30% faults, default budget (vs cohere SDK, 8 threads)",
            value=f"{walls['rerankpd']:.2f}s",
            baseline=f"{walls['cohere SDK']:.2f}s",
            ratio=ratio,
            target="<= 1.00, every row",
            met=every_row and ratio <= 1.0,
            detail=f"{len(docs)} docs, batch {BATCH}, 100 ms answers, 429 (Retry-After 0.1)/500/503/drop; median wall "
            f"of seeds {sizes['seeds']}; rows right: rerankpd {rights['rerankpd']}, "
            f"SDK {rights['cohere SDK']}",
        )
    ]


def bare(url: str, docs: list[str]) -> float:
    """The floor of this harness: a bare ``requests.Session`` posting the same 80 bodies from 8 threads."""
    session = requests.Session()
    session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=THREADS))
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}

    def one(i: int) -> None:
        body = {"model": "rerank-v3.5", "query": QUERY, "documents": docs[i : i + BATCH], "top_n": BATCH}
        session.post(url + "/rerank", json=body, headers=headers, timeout=30).raise_for_status()

    start = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(one, range(0, len(docs), BATCH)))
    wall = time.perf_counter() - start
    session.close()
    return wall


def clean(sizes: dict) -> list[dict]:
    docs = texts(sizes["docs"], seed=11)
    limit = math.ceil(len(docs) / BATCH / THREADS) * LATENCY
    walls, sdk_walls, bare_walls = [], [], []
    with server(latency=LATENCY, dialect="cohere", api_key=KEY) as (url, stats):
        for _ in range(sizes["repeat"]):
            right, wall, _ = ours(url, docs)
            assert right == len(docs), right
            walls.append(wall)
            sdk_walls.append(sdk(url, docs)[1])
            bare_walls.append(bare(url, docs))
        served = stats()
    wall = statistics.median(walls)
    return [
        dict(
            name="C. clean, default budget (vs the limit ceil(requests / 8) x 100 ms)",
            value=f"{wall:.2f}s",
            baseline=f"{limit:.2f}s",
            ratio=wall / limit,
            target="<= 1.10",
            met=wall / limit <= 1.10,
            detail=f"median of {sizes['repeat']}; same server: cohere SDK {statistics.median(sdk_walls):.2f}s, "
            f"bare requests.Session {statistics.median(bare_walls):.2f}s (this harness's floor); "
            f"{served['rate_limited']} answered 429",
        )
    ]


FULL = dict(docs=4000, seeds=[1, 2, 3], repeat=3, rate_rps=50, rate_requests=300)
QUICK = dict(docs=1000, seeds=[1], repeat=1, rate_rps=50, rate_requests=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke test")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    started = time.perf_counter()
    rows = under_faults(sizes) + clean(sizes)
    rows += [row for row in run.bench_rate_limit(sizes) if row["met"] is not None]  # (R): benchmark R
    print_report(rows, args.quick, time.perf_counter() - started)


if __name__ == "__main__":
    main()
