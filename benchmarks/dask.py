"""Dask: partition sizing, and the shared score store, on a real LocalCluster against a loopback server.

    python benchmarks/dask.py            # about a minute on 2 cores
    python benchmarks/dask.py --quick    # smaller sizes, for a smoke test

Two worker processes (one thread each) score one query over distinct texts with ``reranker="dmxapi"``
pointed at a loopback server in a child process (``benchmarks/_server.py``) that answers each request
after ``latency`` seconds plus ``per_document`` seconds per document. Every figure is a ratio against a
baseline measured in the same run (medians of ``--repeats`` runs, alternating the two sides):

1. partition sizing: the same rows in 64 partitions against 8, the local cache off;
2. first-run cost of the shared store: ``shared_cache=`` on against off (both with fresh, empty local
   caches on every worker, so both score everything);
3. the second run with the shared store on fresh workers (new, empty local caches): requests sent, and its
   time against a rerun from warm local caches.

Ends with one ``BENCHMARK_JSON {...}`` line.
"""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
# The shared benchmark helpers sit next to this file (put on the path here too: Dask's worker processes run
# this file as their __main__ without its directory on the path) ...
sys.path.insert(0, HERE)
from _common import KEY, QUERY, server, texts  # noqa: E402

# ... but this file is named dask.py: keep its directory off the path so ``import dask`` finds the library.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != HERE]

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import pandas as pd  # noqa: E402


def _use_cache_dir(root: str, common: bool = False, dask_worker=None) -> str:
    """Runs on each worker: a new local cache directory of its own (or ``root`` itself, for all workers)."""
    path = root if common else os.path.join(root, f"worker-{dask_worker.name}")
    os.environ["RERANKPD_CACHE_DIR"] = path
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--repeats", type=int, default=None, help="runs per figure (median); default 3, quick 1")
    args = parser.parse_args()
    rows = 2_000 if args.quick else 10_000
    repeats = args.repeats or (1 if args.quick else 3)
    batch_size, concurrency = 32, 4
    latency, per_document = 0.02, 0.0002

    import dask.dataframe as dd
    from distributed import Client, LocalCluster

    import rerankpd
    import rerankpd.dask as rdask

    frame = pd.DataFrame({"text": texts(rows)})
    options = {"batch_size": batch_size, "max_concurrency": concurrency}
    scratch = tempfile.mkdtemp(prefix="rerankpd-bench-dask-")
    results: dict[str, dict] = {}
    with server(latency=latency, latency_per_document=per_document, api_key=KEY) as (url, stats):
        # The workers read the key and the URL from the environment they start with (as a user's would).
        os.environ.update({"DMXAPI_API_KEY": KEY, "DMXAPI_BASE_URL": url})
        cluster = LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            host="127.0.0.1",
            silence_logs=logging.ERROR,
        )
        with cluster, Client(cluster) as client:
            fresh = iter(range(10_000))

            def requests_so_far() -> int:
                return stats()["requests"]

            def fresh_local_caches() -> None:
                client.run(_use_cache_dir, os.path.join(scratch, f"local-{next(fresh)}"))

            def run(npartitions: int, *, cache=True, shared=None) -> tuple[float, int]:
                ddf = dd.from_pandas(frame, npartitions=npartitions, sort=False)
                lazy = rdask.with_scores(
                    ddf, QUERY, reranker="dmxapi", reranker_options=options, cache=cache, shared_cache=shared
                )
                before = requests_so_far()
                started = time.perf_counter()
                out = client.compute(lazy).result(timeout=600)
                seconds = time.perf_counter() - started
                if out["rerank_score"].isna().any():
                    raise RuntimeError("a row was not scored")
                return seconds, requests_so_far() - before

            fresh_local_caches()
            run(2, cache=False)  # warm-up: imports and connections on workers

            # 1. partition sizing
            few, many = [], []
            for _ in range(repeats):
                few.append(run(8, cache=False)[0])
                many.append(run(64, cache=False)[0])
            ideal = -(-rows // batch_size) / (2 * concurrency) * (latency + batch_size * per_document)
            results["partitions: 64 against 8 (cache off)"] = {
                "value": statistics.median(many),
                "baseline": statistics.median(few),
                "ratio": statistics.median(many) / statistics.median(few),
                "note": f"{rows} rows, batch {batch_size}, concurrency {concurrency} per partition, 2 workers; "
                f"8 partitions = {rows // 8} rows each, 64 = {rows // 64}; "
                f"all requests at full concurrency would take {ideal:.2f} s",
            }

            # 2. first run: shared store on against off (fresh local caches both times)
            with_store, without_store, first_requests = [], [], []
            for i in range(repeats):
                fresh_local_caches()
                without_store.append(run(8)[0])
                fresh_local_caches()
                seconds, sent = run(8, shared=os.path.join(scratch, f"shared-{i}"))
                with_store.append(seconds)
                first_requests.append(sent)
            results["first run: shared store on against off"] = {
                "value": statistics.median(with_store),
                "baseline": statistics.median(without_store),
                "ratio": statistics.median(with_store) / statistics.median(without_store),
                "note": f"8 partitions; local caches on and empty; {first_requests[0]} requests either way",
            }

            # 3. second run on fresh workers, from the shared store, against a rerun from one warm local cache
            # that every worker uses (the one-machine case: whichever worker gets a partition finds its scores)
            from_store, from_local, sent_second, sent_local = [], [], [], []
            for i in range(repeats):
                fresh_local_caches()
                seconds, sent = run(8, shared=os.path.join(scratch, f"shared-{i}"))
                from_store.append(seconds)
                sent_second.append(sent)
                client.run(_use_cache_dir, os.path.join(scratch, f"common-{i}"), True)
                run(8)  # fills the common cache
                seconds, sent = run(8)
                from_local.append(seconds)
                sent_local.append(sent)
            results["second run on fresh workers, from the shared store"] = {
                "value": statistics.median(from_store),
                "baseline": statistics.median(from_local),
                "ratio": statistics.median(from_store) / statistics.median(from_local),
                "requests_sent": max(sent_second),
                "baseline_requests_sent": max(sent_local),
                "note": "8 partitions, every local cache new and empty; baseline: a rerun with one warm local "
                "cache directory common to both workers (as on one machine); requests sent must be 0",
            }
    print(f"rerankpd {rerankpd.__version__}, {rows} rows, {repeats} run(s) per figure, 2 worker processes")
    print(f"{'measurement':<55} {'value':>9} {'baseline':>9} {'ratio':>7}")
    for name, result in results.items():
        print(f"{name:<55} {result['value']:>8.3f}s {result['baseline']:>8.3f}s {result['ratio']:>7.2f}")
        print(
            f"    {result['note']}"
            + (
                f"; sent {result['requests_sent']} requests (baseline {result['baseline_requests_sent']})"
                if "requests_sent" in result
                else ""
            )
        )
    print("BENCHMARK_JSON " + json.dumps({"benchmark": "dask", "rows": rows, "repeats": repeats, "results": results}))


if __name__ == "__main__":
    main()
