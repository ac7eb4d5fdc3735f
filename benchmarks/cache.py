"""Cache benchmarks, each against a baseline measured in the same run.

    python benchmarks/cache.py            # full sizes (about 3 minutes on 2 cores)
    python benchmarks/cache.py --quick    # small sizes, a smoke test

1. First-run throughput with the cache on / off, 40,000 docs, batch 100, concurrency 4, against a loopback
   server in a child process (``benchmarks/_server.py``) that answers in 5 ms (a fast local GPU server):
   target >= 0.95; and against one that answers at once: target >= 0.85. Median of 9 runs each,
   alternating. Each finished request is committed to diskcache by the thread that ran it.
2. Cached rerun of 100k and 1M rows (half of them distinct texts) / a pandas merge + rank + sort of the
   same scores, best of 5 on each side: target <= 3.
3. Peak memory of the cached rerun of 100k rows (``tracemalloc``: Python and NumPy allocations) / the
   frame's own (``memory_usage(deep=True)``): target <= 3.
4. Lines of code of the cache, everything it needs beyond diskcache (``rerankpd/cache/`` and the cache
   settings in ``rerankpd/config.py``; no blank, comment or docstring lines) / 600: target <= 1.

Ends with one ``BENCHMARK_JSON {...}`` line.
"""

from __future__ import annotations

import argparse
import ast
import gc
import io
import logging
import os
import statistics
import sys
import tempfile
import time
import tokenize
import tracemalloc

import pandas as pd
from _common import KEY, QUERY, merge_rank_floor, print_report, repeated_texts_frame, server, texts

import rerankpd

logging.getLogger("rerankpd").setLevel(logging.ERROR)


def reranker(url: str):
    return rerankpd.get_reranker(
        "dmxapi", api_key=KEY, base_url=url, batch_size=100, max_concurrency=4, timeout=(5.0, 30.0)
    )


def timed(fn, cpu: list | None = None) -> float:
    """Wall seconds of one call; appends this process's CPU seconds to ``cpu`` when given."""
    gc.collect()
    start, start_cpu = time.perf_counter(), time.process_time()
    fn()
    if cpu is not None:
        cpu.append(time.process_time() - start_cpu)
    return time.perf_counter() - start


def bench_first_run(url: str, docs: int, repeat: int, latency: float, target: float) -> dict:
    df = pd.DataFrame({"text": texts(docs, seed=1)})
    r = reranker(url)
    rerankpd.rerank(df.head(500), QUERY, reranker=r, cache=False, progress=False)  # warm the pool
    off, on, cpu_off, cpu_on = [], [], [], []
    for _ in range(repeat):  # alternate, so drift on a shared machine hits both sides alike
        off.append(timed(lambda: rerankpd.rerank(df, QUERY, reranker=r, cache=False, progress=False), cpu_off))
        with tempfile.TemporaryDirectory() as cache_dir:
            on.append(timed(lambda: rerankpd.rerank(df, QUERY, reranker=r, cache=cache_dir, progress=False), cpu_on))
            assert rerankpd.cache_info(cache_dir)["scores"] == docs, "every score should be cached"
    r.close()
    t_off, t_on = statistics.median(off), statistics.median(on)
    ratio = t_off / t_on  # throughput on / throughput off
    server_kind = f"loopback answering in {latency * 1000:g} ms" if latency else "zero-latency loopback"
    return dict(
        name=f"first run, cache on / off, server {latency * 1000:g} ms",
        value=f"{docs / t_on:,.0f} pairs/s",
        baseline=f"off {docs / t_off:,.0f} pairs/s",
        ratio=ratio,
        target=f">= {target}",
        met=ratio >= target,
        detail=f"{docs} docs, batch 100, concurrency 4, {server_kind}; median of {repeat}; "
        f"client CPU {1e6 * statistics.median(cpu_on) / docs:.1f} us/pair on, "
        f"{1e6 * statistics.median(cpu_off) / docs:.1f} off; load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores",
    )


def bench_rerun(url: str, rows: int, repeat: int, memory: bool = False) -> list[dict]:
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
        if memory:
            gc.collect()
            tracemalloc.start()
            rerankpd.rerank(df, QUERY, reranker=r, cache=cache_dir, progress=False)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    r.close()
    floor = merge_rank_floor(df, out, sort=True)
    base = min(timed(floor) for _ in range(repeat))  # best of: on a shared machine the floor of each side
    rerun_s = min(runs)
    ratio = rerun_s / base
    results = [
        dict(
            name=f"cached rerun, {rows:,} rows",
            value=f"{rerun_s:.3f}s",
            baseline=f"merge+rank+sort {base:.3f}s",
            ratio=ratio,
            target="<= 3",
            met=ratio <= 3,
            detail=f"{rows // 2} distinct texts; first run {first:.1f}s; cache {size / 2**20:.1f} MiB; "
            f"best of {repeat}; load average {load:.1f}",
        )
    ]
    if memory:
        frame = int(df.memory_usage(deep=True).sum())
        results.append(
            dict(
                name=f"memory of the cached rerun, {rows:,} rows",
                value=f"{peak / 2**20:.1f} MiB",
                baseline=f"frame {frame / 2**20:.1f} MiB",
                ratio=peak / frame,
                target="<= 3",
                met=peak / frame <= 3,
                detail="peak traced by tracemalloc (Python and NumPy)",
            )
        )
    return results


def code_lines(path: str) -> int:
    """Lines of ``path`` that hold code: not blank, not only a comment, not part of a docstring."""
    with open(path, encoding="utf-8") as fh:
        source = fh.read()
    docstrings = set()
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            docstrings.update(range(body[0].lineno, body[0].end_lineno + 1))
    lines = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in (
            tokenize.COMMENT,
            tokenize.NL,
            tokenize.NEWLINE,
            tokenize.INDENT,
            tokenize.DEDENT,
            tokenize.ENDMARKER,
        ):
            lines.update(range(token.start[0], token.end[0] + 1))
    return len(lines - docstrings)


def config_cache_lines(path: str) -> int:
    """Code lines of the cache settings in ``config.py`` (its ``cache_*`` functions and their constants)."""
    with open(path, encoding="utf-8") as fh:
        tree = ast.parse(fh.read())
    names = ("cache_size_limit", "cache_expire", "DEFAULT_CACHE_SIZE_LIMIT")
    count = 0
    for node in tree.body:
        name = getattr(node, "name", None) or getattr(getattr(node, "targets", [None])[0], "id", None)
        if name in names:
            body_doc = set()
            if isinstance(node, ast.FunctionDef) and isinstance(node.body[0], ast.Expr):
                body_doc = set(range(node.body[0].lineno, node.body[0].end_lineno + 1))
            count += len(set(range(node.lineno, node.end_lineno + 1)) - body_doc)
    return count


def bench_lines() -> dict:
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "rerankpd")
    package = os.path.join(root, "cache")
    # shared.py is the Dask cluster's Parquet score store (rerankpd.dask's shared_cache=), not diskcache's
    files = sorted(f for f in os.listdir(package) if f.endswith(".py") and f != "shared.py")
    per_file = {f: code_lines(os.path.join(package, f)) for f in files}
    settings = config_cache_lines(os.path.join(root, "config.py"))
    total = sum(per_file.values()) + settings
    return dict(
        name="cache code beyond diskcache",
        value=f"{total} lines",
        baseline="600 lines",
        ratio=total / 600,
        target="<= 1",
        met=total <= 600,
        detail=", ".join(f"{f} {n}" for f, n in per_file.items()) + f", config.py settings {settings}",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes")
    args = parser.parse_args()
    sizes = (
        dict(first=4000, reruns=(10_000, 100_000), repeat=3)
        if args.quick
        else dict(first=40_000, reruns=(100_000, 1_000_000), repeat=5)
    )
    start = time.perf_counter()
    results = []
    for latency, target in ((0.005, 0.95), (0.0, 0.85)):
        with server(latency=latency) as (url, _):
            results.append(bench_first_run(url, sizes["first"], 2 * sizes["repeat"] - 1, latency, target))
    with server() as (url, _):
        for rows in sizes["reruns"]:
            results += bench_rerun(url, rows, 5, memory=rows == 100_000)
    results.append(bench_lines())
    print(
        f"\nrerankpd {rerankpd.__version__} cache benchmarks - python {sys.version.split()[0]}, "
        f"pandas {pd.__version__}, {os.cpu_count()} cores, {'quick' if args.quick else 'full'} sizes\n"
    )
    print_report(results, args.quick, time.perf_counter() - start)


if __name__ == "__main__":
    main()
