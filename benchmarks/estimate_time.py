"""How close ``estimate()``'s expected time of a local run is to the run's real time (same run, same machine).

Takes ``--docs`` Cranfield abstracts (../shared/data/cranfield-dev.json.gz; a synthetic text otherwise) and one
query, estimates the e5 run (a 16-pair sample timed here), runs it (no cache) and prints the ratio
estimated / measured; the target is within 0.5x .. 2x. Ends with one ``BENCHMARK_JSON {...}`` line.

    python benchmarks/estimate_time.py --docs 300
"""

from __future__ import annotations

import argparse
import json
import time

import pandas as pd
from _common import cranfield_path, load_cranfield

import rerankpd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=300)
    parser.add_argument("--reranker", default="e5")
    args = parser.parse_args()
    path = cranfield_path()
    if path:
        data = load_cranfield(path)
        texts = list(data["docs"].values())[: args.docs]
        query = next(iter(data["queries"].values()))
    else:
        texts = [f"synthetic abstract {i} about boundary layers and heat transfer " * 8 for i in range(args.docs)]
        query = "boundary layer heat transfer"
    df = pd.DataFrame({"text": texts})
    started = time.perf_counter()
    est = rerankpd.estimate(df, query, reranker=args.reranker, cache=False)
    estimating = time.perf_counter() - started
    started = time.perf_counter()
    rerankpd.rerank(df, query, reranker=args.reranker, cache=False, progress=False)
    actual = time.perf_counter() - started
    ratio = est.seconds / actual
    print(
        f"{args.reranker}, {len(df)} abstracts: estimated {est.seconds:.1f} s ({est.timing}; the estimate took "
        f"{estimating:.1f} s), measured {actual:.1f} s: ratio {ratio:.2f} (target 0.5 .. 2)"
    )
    print(
        "BENCHMARK_JSON "
        + json.dumps(
            {
                "reranker": args.reranker,
                "docs": len(df),
                "estimated": est.seconds,
                "measured": actual,
                "ratio": ratio,
                "met": 0.5 <= ratio <= 2,
            }
        )
    )


if __name__ == "__main__":
    main()
