"""HTTP client benchmarks: the default request budget on a small run, the long rate-limited run, client CPU.

    python benchmarks/http_client.py            # full sizes (about a minute on 2 cores)
    python benchmarks/http_client.py --quick    # smaller, for a smoke test

(Named ``http_client.py``, not ``http.py``: a script's directory comes first on ``sys.path``, and a
``benchmarks/http.py`` would hide the standard library's ``http`` package from every script here.)

(a) Small run (issue 8 #15): a Cohere-shaped loopback server with 100 ms latency, 4,000 documents in batches
    of 50 at concurrency 8. rerankpd with cohere's published budget (1,000 requests a minute) against the
    same run with the budget off: the 80 requests fit in one minute's quota, so the budget must cost nothing
    (target: within 10%).
(b) Long run (benchmark R of ``benchmarks/run.py``, run here as it is there): a server admitting 50
    requests/s and answering 429 above, ``requests_per_minute=3000``: within 10% of 50 requests/s, few 429s.
(c) Client CPU per request at concurrency 8 against a zero-latency server (issue 15 #3): rerankpd's
    ``score_batch`` against a bare ``requests.Session`` loop posting the same bodies (target: within 1.1x).

The servers run in a child process (``benchmarks/_server.py``), so their CPU is not charged to the client.
Ends with one ``BENCHMARK_JSON`` line.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import requests
from _common import HERE, KEY, QUERY, print_report, server, texts

import rerankpd

_spec = importlib.util.spec_from_file_location("benchmarks_run", os.path.join(HERE, "run.py"))
run = importlib.util.module_from_spec(_spec)  # benchmarks/run.py: its timed() and benchmark R
_spec.loader.exec_module(run)


def small_run(sizes: dict) -> dict:
    """(a) the default budget against no budget on a run that fits in the minute's quota."""
    docs = texts(sizes["small_docs"], seed=3)
    df = pd.DataFrame({"text": docs})
    walls: dict[str, list[float]] = {"default budget": [], "no budget": []}
    with server(latency=0.1, dialect="cohere", api_key=KEY) as (url, stats):
        for _ in range(sizes["repeat"]):
            for label, options in (("default budget", {}), ("no budget", {"requests_per_minute": 0})):
                r = rerankpd.get_reranker(
                    "cohere", api_key=KEY, base_url=url, batch_size=50, max_concurrency=8, **options
                )
                assert label != "default budget" or r.rate_limiter.requests_per_minute == 1000
                walls[label].append(
                    run.timed(lambda: rerankpd.rerank(df, QUERY, reranker=r, cache=False, progress=False))  # noqa: B023 - called within this iteration
                )
                r.close()
        served = stats()
    ours, base = statistics.median(walls["default budget"]), statistics.median(walls["no budget"])
    ratio = ours / base
    return dict(
        name="H1. small run, default budget (vs none)",
        value=f"{ours:.2f}s",
        baseline=f"{base:.2f}s",
        ratio=ratio,
        target="<= 1.10",
        met=ratio <= 1.10,
        detail=f"{len(docs)} docs, batch 50, concurrency 8, 100 ms latency, cohere's 1000/min budget; "
        f"median of {sizes['repeat']}; {served['rate_limited']} answered 429",
    )


def client_cpu(sizes: dict) -> dict:
    """(c) client CPU seconds per request at concurrency 8: rerankpd's client against a bare Session loop."""
    n, batch = sizes["cpu_requests"], 10
    docs = texts(n * batch, seed=5)
    batches = [docs[i : i + batch] for i in range(0, len(docs), batch)]
    with server() as (url, _):
        r = rerankpd.get_reranker("dmxapi", api_key=KEY, base_url=url, max_concurrency=8, timeout=(5, 30))
        headers = {"Content-Type": "application/json", "Accept": "application/json", "Authorization": KEY}
        bare = requests.Session()
        bare.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=8))

        def ours(documents):
            return r.score_batch(QUERY, documents).scores

        def plain(documents):
            body = json.dumps(
                {
                    "query": QUERY,
                    "documents": documents,
                    "top_n": len(documents),
                    "return_documents": False,
                    "model": r.model,
                }
            ).encode()
            answer = bare.post(url + "/rerank", data=body, headers=headers, timeout=(5, 30))
            answer.raise_for_status()
            return answer.json()["results"]

        def cpu(fn) -> float:
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(fn, batches[:50]))  # warm the pools
                start = time.process_time()
                list(pool.map(fn, batches))
                return (time.process_time() - start) / len(batches)

        rounds = [(cpu(ours), cpu(plain)) for _ in range(sizes["repeat"])]
        r.close()
        bare.close()
    per_ours = statistics.median(a for a, _ in rounds)
    per_bare = statistics.median(b for _, b in rounds)
    ratio = per_ours / per_bare
    return dict(
        name="H3. client CPU per request, concurrency 8 (vs bare Session)",
        value=f"{per_ours * 1e3:.2f} ms",
        baseline=f"{per_bare * 1e3:.2f} ms",
        ratio=ratio,
        target="<= 1.10",
        met=ratio <= 1.10,
        detail=f"{n} requests of {batch} docs, zero latency, process CPU time; median of {sizes['repeat']}",
    )


FULL = dict(small_docs=4000, repeat=3, cpu_requests=2000, rate_rps=50, rate_requests=300)
QUICK = dict(small_docs=800, repeat=1, cpu_requests=300, rate_rps=50, rate_requests=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke test")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    started = time.perf_counter()
    rows = [small_run(sizes)]
    rows += [row for row in run.bench_rate_limit(sizes) if row["met"] is not None]  # (b): benchmark R
    rows.append(client_cpu(sizes))
    total = time.perf_counter() - started
    print_report(rows, args.quick, total)


if __name__ == "__main__":
    main()
