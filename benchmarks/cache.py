"""Score cache benchmarks (issue 15 #1 and #2), each against a baseline measured in the same run.

    python benchmarks/cache.py            # full sizes (about 2 minutes on 2 cores)
    python benchmarks/cache.py --quick    # small sizes, a smoke test

1. First-run throughput with the cache on / off, against a zero-latency loopback server in a child process
   (``benchmarks/_server.py``), median of 9 runs each, alternating: target >= 0.95 (each finished request
   is one short row, committed by the thread that ran it).
2. Cached rerun of 100k and 1M rows (half of them distinct texts) / a pandas merge + rank + sort of the
   same scores, best of 5 on each side: target <= 3.

Ends with one ``BENCHMARK_JSON {...}`` line.
"""
from __future__ import annotations

import argparse
import gc
import logging
import os
import statistics
import sys
import tempfile
import time

import pandas as pd

import rerankpd
from _common import KEY, QUERY, merge_rank_floor, print_report, repeated_texts_frame, server, texts

logging.getLogger("rerankpd").setLevel(logging.ERROR)


def reranker(url: str):
    return rerankpd.get_reranker("dmxapi", api_key=KEY, base_url=url, batch_size=100, max_concurrency=4,
                                 timeout=(5.0, 30.0))


def timed(fn, cpu: list | None = None) -> float:
    """Wall seconds of one call; appends this process's CPU seconds to ``cpu`` when given."""
    gc.collect()
    start, start_cpu = time.perf_counter(), time.process_time()
    fn()
    if cpu is not None:
        cpu.append(time.process_time() - start_cpu)
    return time.perf_counter() - start


def bench_first_run(url: str, docs: int, repeat: int) -> dict:
    df = pd.DataFrame({"text": texts(docs, seed=1)})
    r = reranker(url)
    rerankpd.rerank(df.head(500), QUERY, reranker=r, cache=False, progress=False)  # warm the pool
    off, on, cpu_off, cpu_on = [], [], [], []
    for _ in range(repeat):  # alternate, so drift on a shared machine hits both sides alike
        off.append(timed(lambda: rerankpd.rerank(df, QUERY, reranker=r, cache=False, progress=False), cpu_off))
        with tempfile.TemporaryDirectory() as cache_dir:
            on.append(timed(lambda: rerankpd.rerank(df, QUERY, reranker=r, cache=cache_dir, progress=False),
                            cpu_on))
            assert rerankpd.cache_info(cache_dir)["entries"] == docs, "every score should be cached"
    r.close()
    t_off, t_on = statistics.median(off), statistics.median(on)
    ratio = t_off / t_on  # throughput on / throughput off
    return dict(name="first run, cache on / off (throughput)", value=f"{docs / t_on:,.0f} pairs/s",
                baseline=f"off {docs / t_off:,.0f} pairs/s", ratio=ratio, target=">= 0.95", met=ratio >= 0.95,
                detail=f"{docs} docs, batch 100, concurrency 4, zero-latency loopback; median of {repeat}; "
                       f"client CPU {1e6 * statistics.median(cpu_on) / docs:.1f} us/pair on, "
                       f"{1e6 * statistics.median(cpu_off) / docs:.1f} off; load average "
                       f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


def bench_rerun(url: str, rows: int, repeat: int) -> dict:
    df = repeated_texts_frame(rows, rows // 2, seed=3)
    r = reranker(url)
    with tempfile.TemporaryDirectory() as cache_dir:
        first = timed(lambda: rerankpd.rerank(df, QUERY, reranker=r, cache=cache_dir, progress=False))
        runs = []
        for _ in range(repeat):
            out = None

            def rerun():
                nonlocal out
                out = rerankpd.rerank(df, QUERY, reranker=r, cache=cache_dir, progress=False)
            runs.append(timed(rerun))
            assert out.attrs["rerank"]["sent"] == 0, "the rerun should be served from the cache"
        size = rerankpd.cache_info(cache_dir)["size_bytes"]
        load = os.getloadavg()[0]
    r.close()
    floor = merge_rank_floor(df, out, sort=True)
    base = min(timed(floor) for _ in range(repeat))  # best of: on a shared machine the floor of each side
    rerun_s = min(runs)
    ratio = rerun_s / base
    return dict(name=f"cached rerun, {rows:,} rows", value=f"{rerun_s:.3f}s",
                baseline=f"merge+rank+sort {base:.3f}s", ratio=ratio, target="<= 3", met=ratio <= 3,
                detail=f"{rows // 2} distinct texts; first run {first:.1f}s; cache file {size / 2**20:.1f} MiB; "
                       f"best of {repeat}; load average {load:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes")
    args = parser.parse_args()
    sizes = dict(first=4000, reruns=(10_000, 100_000), repeat=3) if args.quick else \
        dict(first=40_000, reruns=(100_000, 1_000_000), repeat=5)
    start = time.perf_counter()
    results = []
    with server() as (url, _):
        results.append(bench_first_run(url, sizes["first"], 2 * sizes["repeat"] - 1))
        for rows in sizes["reruns"]:
            results.append(bench_rerun(url, rows, 5))
    print(f"\nrerankpd {rerankpd.__version__} score cache benchmarks - python {sys.version.split()[0]}, "
          f"pandas {pd.__version__}, {os.cpu_count()} cores, {'quick' if args.quick else 'full'} sizes\n")
    print_report(results, args.quick, time.perf_counter() - start)


if __name__ == "__main__":
    main()
