"""rerankpd benchmarks: one command, loopback servers only, every figure a ratio against a baseline
measured in the same run.

    python benchmarks/run.py            # full run (about 2-4 minutes on 2 cores)
    python benchmarks/run.py --quick    # smaller sizes, for a smoke test

Prints a table, then one JSON line (prefixed ``BENCHMARK_JSON``) with every figure. The rerank servers
run in a child process (``benchmarks/_server.py``) so that their CPU time is not charged to the client;
memory is measured in fresh child processes from the kernel's peak-RSS counter (VmHWM, reset after the
frame is built and a 2,000-row warm-up call has paid the one-time costs: imports, sessions, SQLite).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import pandas as pd
import requests
from _common import HERE, KEY, QUERY, merge_rank_floor, print_report, repeated_texts_frame, server, texts

import rerankpd

logging.getLogger("rerankpd").setLevel(logging.ERROR)  # the 429 benchmark retries on purpose; keep output clean


# ----------------------------------------------------------------------------------------- helpers
def reranker(url: str, **options):
    options.setdefault("timeout", (5.0, 30.0))
    return rerankpd.get_reranker("dmxapi", api_key=KEY, base_url=url, **options)


def timed(fn, repeat: int = 1) -> float:
    """Median wall seconds of ``repeat`` calls."""
    walls = []
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - start)
    return statistics.median(walls)


def batches_of(docs: list[str], size: int) -> list[list[str]]:
    return [docs[i : i + size] for i in range(0, len(docs), size)]


def seed_style(url: str, docs: list[str], batch: int) -> None:
    """The seed's own way: one ``requests.post`` per batch, sequential (API page example)."""
    for chunk in batches_of(docs, batch):
        payload = {
            "model": "bge-reranker-v2-m3-free",
            "query": QUERY,
            "documents": chunk,
            "top_n": len(chunk),
            "return_documents": False,
        }
        response = requests.post(
            url + "/rerank",
            headers={"Authorization": KEY, "Content-Type": "application/json"},
            data=json.dumps(payload),
            timeout=30,
        )
        response.raise_for_status()
        response.json()


def bare_session(url: str, docs: list[str], batch: int) -> None:
    """The floor for a client: a reused requests.Session sending the same batches, nothing else."""
    with requests.Session() as s:
        for chunk in batches_of(docs, batch):
            payload = {
                "model": "bge-reranker-v2-m3-free",
                "query": QUERY,
                "documents": chunk,
                "top_n": len(chunk),
                "return_documents": False,
            }
            response = s.post(url + "/rerank", headers={"Authorization": KEY}, data=json.dumps(payload), timeout=30)
            response.raise_for_status()
            response.json()


# ----------------------------------------------------------------------------------------- measurements
def bench_api_bound(sizes: dict) -> list[dict]:
    n, batch, conc, latency = sizes["api_docs"], 50, 8, 0.1
    docs = texts(n, seed=1)
    df = pd.DataFrame({"text": docs})
    n_requests = math.ceil(n / batch)
    limit = math.ceil(n_requests / conc) * latency
    with server(latency=latency) as (url, _):
        r = reranker(url, batch_size=batch, max_concurrency=conc)
        rerankpd.rerank(df.head(100), QUERY, reranker=r, cache=False, progress=False)  # warm the pool
        wall = timed(lambda: rerankpd.rerank(df, QUERY, reranker=r, cache=False, progress=False), repeat=3)
        seed = timed(lambda: seed_style(url, docs, batch))
        r.close()
    return [
        dict(
            name="1. API-bound efficiency (limit / wall)",
            value=f"{wall:.3f}s",
            baseline=f"limit {limit:.2f}s",
            ratio=limit / wall,
            target=">= 0.9",
            met=limit / wall >= 0.9,
            detail=f"{n} docs, batch {batch}, concurrency {conc}, latency {latency * 1000:.0f} ms",
        ),
        dict(
            name="2. speed-up over the seed style",
            value=f"{wall:.3f}s",
            baseline=f"seed {seed:.2f}s",
            ratio=seed / wall,
            target=f">= {0.85 * conc:.1f} (0.85 x {conc})",
            met=seed / wall >= 0.85 * conc,
            detail="seed: one requests.post per batch, sequential",
        ),
    ]


def bench_overhead(sizes: dict) -> list[dict]:
    n, batch = sizes["overhead_docs"], 50
    docs = texts(n, seed=2)
    df = pd.DataFrame({"text": docs})
    with server() as (url, _):
        r = reranker(url, batch_size=batch, max_concurrency=1)
        rerankpd.rerank(df.head(100), QUERY, reranker=r, cache=False, progress=False)
        bare_session(url, docs[:100], batch)
        ours, bare = [], []
        for _ in range(7):  # interleave so drift in the machine's load hits both alike
            ours.append(timed(lambda: rerankpd.rerank(df, QUERY, reranker=r, cache=False, progress=False)))
            bare.append(timed(lambda: bare_session(url, docs, batch)))
        r.close()
    ratio = min(ours) / min(bare)
    return [
        dict(
            name="3. client overhead, zero latency (vs bare Session)",
            value=f"{min(ours):.3f}s",
            baseline=f"bare {min(bare):.3f}s",
            ratio=ratio,
            target="<= 1.2",
            met=ratio <= 1.2,
            detail=f"{n} docs in {math.ceil(n / batch)} requests, concurrency 1, cache off; best of 7",
        )
    ]


def bench_cached(sizes: dict) -> list[dict]:
    rows, distinct = sizes["cached_rows"], sizes["cached_distinct"]
    df = repeated_texts_frame(rows, distinct, seed=3)
    with tempfile.TemporaryDirectory() as cache_dir, server() as (url, _):
        r = reranker(url, batch_size=100, max_concurrency=4)
        first = timed(lambda: rerankpd.rerank(df, QUERY, reranker=r, cache=cache_dir, progress=False))
        out = rerankpd.rerank(df, QUERY, reranker=r, cache=cache_dir, progress=False)
        assert out.attrs["rerank"]["sent"] == 0, "the rerun should be served from the cache"
        rerun = timed(lambda: rerankpd.rerank(df, QUERY, reranker=r, cache=cache_dir, progress=False), repeat=3)
        r.close()
    floor = merge_rank_floor(df, out)
    base = timed(floor, repeat=3)
    ratio = rerun / base
    return [
        dict(
            name="4. cached rerun (vs pandas merge + rank)",
            value=f"{rerun:.3f}s",
            baseline=f"merge+rank {base:.3f}s",
            ratio=ratio,
            target="<= 10",
            met=ratio <= 10,
            detail=f"{rows} rows, {distinct} distinct texts; first (uncached) run {first:.1f}s",
        )
    ]


def _memory_child(kind: str, rows: int) -> dict:
    """Run in a fresh process: build the frame, reset the peak-RSS counter, rerank, report."""
    import gc as _gc

    def status(field: str) -> int:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError(field)

    if kind in ("bm25", "bm25one"):
        # bm25: 1000 candidates per query, as a retriever would hand over; bm25one: one query over every row
        queries = max(1, rows // 1000) if kind == "bm25" else 1
        body = texts(rows, seed=4, words=8)
        df = pd.DataFrame(
            {
                "question": [f"{QUERY} {i}" for i in range(queries) for _ in range(rows // queries)],
                "text": body[: queries * (rows // queries)],
            }
        )
        del body
        run = lambda frame=df: rerankpd.rerank(
            frame,
            query_column="question",
            reranker="bm25",  # noqa: E731
            cache=False,
            progress=False,
        )
    else:
        cache_dir = os.environ["RERANKPD_BENCH_CACHE"]
        df = repeated_texts_frame(rows, rows // 2, seed=3)
        df["text"] = df["text"].astype(pd.StringDtype() if pd.__version__ < "3" else "str")
        url = os.environ["RERANKPD_BENCH_URL"]
        r = reranker(url, batch_size=100, max_concurrency=4)
        run = lambda frame=df: rerankpd.rerank(
            frame,
            QUERY,
            reranker=r,
            cache=cache_dir,  # noqa: E731
            progress=False,
        )
    run(df.head(2000))  # warm up: imports, the model/session and SQLite are one-time costs, not per row
    _gc.collect()
    frame = int(df.memory_usage(deep=True).sum())
    before = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset VmHWM to the current RSS
    start = time.perf_counter()
    out = run()
    seconds = time.perf_counter() - start
    peak = status("VmHWM")
    return {
        "rows": len(df),
        "frame_bytes": frame,
        "rss_before": before,
        "peak": peak,
        "extra": peak - before,
        "seconds": seconds,
        "out_rows": len(out),
    }


def run_child(kind: str, rows: int, env: dict | None = None) -> dict:
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", kind, str(rows)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )
    if proc.returncode:
        raise RuntimeError(f"memory child {kind} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_memory(sizes: dict) -> list[dict]:
    results = []
    bm = run_child("bm25", sizes["memory_bm25_rows"])
    bm_one = run_child("bm25one", sizes["memory_bm25_rows"])
    with tempfile.TemporaryDirectory() as cache_dir, server() as (url, _):
        env = {"RERANKPD_BENCH_CACHE": cache_dir, "RERANKPD_BENCH_URL": url}
        run_child("cached", sizes["cached_rows"], env)  # fills the cache
        cached = run_child("cached", sizes["cached_rows"], env)
    for label, m in (("bm25", bm), ("bm25, one query", bm_one), ("cached rerun", cached)):
        ratio = m["extra"] / m["frame_bytes"]
        results.append(
            dict(
                name=f"5. memory, {label} (peak extra RSS / frame)",
                value=f"{m['extra'] / m['rows']:.0f} B/row",
                baseline=f"frame {m['frame_bytes'] / m['rows']:.0f} B/row",
                ratio=ratio,
                target="<= 3",
                met=ratio <= 3,
                detail=f"{m['rows']} rows, peak +{m['extra'] / 2**20:.0f} MiB over {m['rss_before'] / 2**20:.0f} MiB, "
                f"{m['seconds']:.1f}s",
            )
        )
    return results


def bench_embedded(sizes: dict) -> list[dict]:
    results = []
    n = sizes["e5_pairs"]
    try:
        e5 = rerankpd.get_reranker("e5")
    except Exception as exc:  # noqa: BLE001 - reported, not hidden
        results.append(
            dict(
                name="6. e5 throughput",
                value="n/a",
                baseline="",
                ratio=float("nan"),
                target="report",
                met=None,
                detail=f"e5 unavailable: {exc}",
            )
        )
    else:
        docs = texts(n, seed=5)
        e5.score(QUERY, docs[:8])
        wall = timed(
            lambda: rerankpd.rerank(pd.DataFrame({"text": docs}), QUERY, reranker=e5, cache=False, progress=False)
        )
        results.append(
            dict(
                name="6. e5 throughput (pairs/s)",
                value=f"{n / wall:.0f} pairs/s",
                baseline="-",
                ratio=n / wall,
                target="report",
                met=None,
                detail=f"{n} pairs of ~14 words, batch {e5.batch_size}, {os.cpu_count()} cores",
            )
        )
    queries, per_query = sizes["bm25_queries"], 1000
    docs = texts(queries * per_query, seed=6, words=8)
    df = pd.DataFrame({"question": [f"{QUERY} {i}" for i in range(queries) for _ in range(per_query)], "text": docs})
    wall = timed(lambda: rerankpd.rerank(df, query_column="question", reranker="bm25", cache=False, progress=False))
    results.append(
        dict(
            name="6. bm25 throughput (pairs/s)",
            value=f"{len(df) / wall:.0f} pairs/s",
            baseline="-",
            ratio=len(df) / wall,
            target="report",
            met=None,
            detail=f"{queries} queries x {per_query} candidates",
        )
    )
    return results


def bench_rate_limit(sizes: dict) -> list[dict]:
    rps, n_requests, batch = sizes["rate_rps"], sizes["rate_requests"], 10
    docs = texts(n_requests * batch, seed=7)
    df = pd.DataFrame({"text": docs})
    out = []
    for label, options in (
        ("budget = server limit", {"requests_per_minute": rps * 60}),
        ("no budget, adaptive only", {}),
    ):
        with server(latency=0.02, rate_limit=rps) as (url, stats):
            r = reranker(
                url, batch_size=batch, max_concurrency=8, max_retries=20, backoff_base=0.05, backoff_cap=1.0, **options
            )
            wall = timed(lambda: rerankpd.rerank(df, QUERY, reranker=r, cache=False, progress=False))  # noqa: B023 - called within this iteration
            s = stats()
            r.close()
        ok = s["requests"] - s["rate_limited"]
        achieved = ok / wall
        ratio = achieved / rps
        met = abs(ratio - 1) <= 0.10 and s["rate_limited"] <= 0.05 * ok
        out.append(
            dict(
                name=f"R. rate limit {rps}/s, {label}",
                value=f"{achieved:.1f} req/s",
                baseline=f"limit {rps} req/s",
                ratio=ratio,
                target="within 10%, few 429s",
                met=met if options else None,
                detail=f"{ok} requests in {wall:.1f}s, {s['rate_limited']} answered 429, "
                f"concurrency ended at {r.concurrency_gate.limit}, cut {r.concurrency_gate.decreases}x",
            )
        )
    return out


def _import_times() -> dict:
    """One fresh ``python -X importtime -c "import rerankpd"``: cumulative microseconds of rerankpd and
    pandas, and the sum of rerankpd's own modules' self times."""
    root = os.path.dirname(HERE)
    err = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import rerankpd"],
        capture_output=True,
        text=True,
        cwd=root,
        check=True,
    ).stderr
    found = {"rerankpd": 0, "pandas": 0, "own": 0}
    for line in err.splitlines():
        parts = line.split("|")
        if len(parts) != 3 or not parts[0].startswith("import time:"):
            continue
        try:
            self_us, cumulative_us = int(parts[0].split(":")[1]), int(parts[1])
        except ValueError:  # the header line
            continue
        name = parts[2].strip()
        if name in ("rerankpd", "pandas"):
            found[name] = cumulative_us
        if name == "rerankpd" or name.startswith("rerankpd."):
            found["own"] += self_us
    return found


def bench_import(sizes: dict) -> list[dict]:
    runs = [_import_times() for _ in range(sizes["import_runs"])]
    total = statistics.median(r["rerankpd"] for r in runs) / 1e6
    pandas_s = statistics.median(r["pandas"] for r in runs) / 1e6
    own = statistics.median(r["own"] for r in runs) / 1e6
    return [
        dict(
            name="I. import rerankpd (python -X importtime)",
            value=f"{total * 1000:.0f} ms",
            baseline=f"pandas {pandas_s * 1000:.0f} ms",
            ratio=total / pandas_s,
            target="report",
            met=None,
            detail=f"median of {len(runs)} fresh processes; rerankpd's own modules {own * 1000:.1f} ms, "
            "the rest is pandas, numpy and the other dependencies",
        )
    ]


# ----------------------------------------------------------------------------------------- main
FULL = dict(
    api_docs=4000,
    overhead_docs=4000,
    cached_rows=100_000,
    cached_distinct=50_000,
    memory_bm25_rows=1_000_000,
    e5_pairs=256,
    bm25_queries=20,
    rate_rps=50,
    rate_requests=300,
    import_runs=9,
)
QUICK = dict(
    api_docs=800,
    overhead_docs=800,
    cached_rows=10_000,
    cached_distinct=5_000,
    memory_bm25_rows=50_000,
    e5_pairs=32,
    bm25_queries=2,
    rate_rps=50,
    rate_requests=60,
    import_runs=3,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke test")
    parser.add_argument(
        "--only", nargs="*", help="run only these groups: api overhead cached memory embedded rate import"
    )
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_memory_child(args.child[0], int(args.child[1]))))
        return
    sizes = QUICK if args.quick else FULL
    groups = {
        "api": bench_api_bound,
        "overhead": bench_overhead,
        "cached": bench_cached,
        "memory": bench_memory,
        "embedded": bench_embedded,
        "rate": bench_rate_limit,
        "import": bench_import,
    }
    started = time.perf_counter()
    rows: list[dict] = []
    for name, fn in groups.items():
        if args.only and name not in args.only:
            continue
        t = time.perf_counter()
        rows.extend(fn(sizes))
        print(f"[{name}: {time.perf_counter() - t:.1f}s]", file=sys.stderr, flush=True)
    total = time.perf_counter() - started

    print(
        f"\nrerankpd {rerankpd.__version__} benchmarks - python {platform.python_version()}, "
        f"pandas {pd.__version__}, {os.cpu_count()} cores, {'quick' if args.quick else 'full'} sizes\n"
    )
    print_report(rows, args.quick, total)


if __name__ == "__main__":
    main()
