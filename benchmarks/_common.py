"""What the benchmark scripts share: a loopback server in a child process, synthetic texts, the Cranfield
dev data, and the results table with its ``BENCHMARK_JSON`` line.

Imported as ``_common`` by the scripts next to it (``python benchmarks/X.py`` puts this directory on the
path). It imports only the standard library, numpy and pandas at module level: ``benchmarks/dask.py``
imports it before taking this directory off ``sys.path``.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
KEY = "sk-benchmark-not-a-real-key"
QUERY = "how to prevent a common cold in winter"
VOCAB = np.array(
    "cold flu winter hands wash vitamin sleep rest fever cough doctor tea honey mask "
    "school work office virus season water soup walk sun air window room".split()
)
#: Where the Cranfield dev data sits next to this checkout (``../shared/...`` from the repository root).
CRANFIELD_NEXT_TO_ROOT = os.path.normpath(os.path.join(ROOT, "..", "shared", "data", "cranfield-dev.json.gz"))


# ----------------------------------------------------------------------------------------- the server
@contextlib.contextmanager
def server(**options) -> Iterator[tuple[str, Callable[[], dict]]]:
    """A ``LoopbackRerankServer(**options)`` in a child process (``benchmarks/_server.py``), so that its CPU
    time is not charged to the client; yields ``(url, stats())``, ``stats()`` returning the server's
    counters ``{"requests", "rate_limited", "max_in_flight"}`` so far."""
    proc = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "_server.py"), json.dumps(options)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = proc.stdout.readline().strip()
        if not url.startswith("http://127.0.0.1:"):
            raise RuntimeError(f"benchmark server did not start: {url!r}")

        def stats() -> dict:
            proc.stdin.write("stats\n")
            proc.stdin.flush()
            return json.loads(proc.stdout.readline())

        yield url, stats
    finally:
        with contextlib.suppress(OSError):
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


# ----------------------------------------------------------------------------------------- synthetic data
def texts(n: int, seed: int = 0, words: int = 12, rng: np.random.Generator | None = None) -> list[str]:
    """n distinct English-like texts: ``"<i> "`` and ``words`` words drawn from :data:`VOCAB` (from ``rng``
    when given, else a generator seeded with ``seed``)."""
    rng = np.random.default_rng(seed) if rng is None else rng
    picks = VOCAB[rng.integers(0, len(VOCAB), size=(n, words))]
    return [f"{i} " + " ".join(row) for i, row in enumerate(picks)]


def repeated_texts_frame(rows: int, distinct: int, seed: int) -> pd.DataFrame:
    """``rows`` rows (columns ``text``, ``id``) over ``distinct`` texts: each text once, then random repeats."""
    pool = texts(distinct, seed=seed)
    rng = np.random.default_rng(seed)
    order = np.concatenate([np.arange(distinct), rng.integers(0, distinct, rows - distinct)])
    return pd.DataFrame({"text": np.asarray(pool, dtype=object)[order], "id": np.arange(rows)})


def merge_rank_floor(df: pd.DataFrame, scored: pd.DataFrame, sort: bool = False) -> Callable[[], None]:
    """The baseline of a cached rerun: a call that joins ``scored``'s known scores onto ``df`` by text with
    pandas and ranks them (and sorts by rank when ``sort``): the least a rerun served from a cache does."""
    table = pd.DataFrame({"text": scored["text"].to_numpy(), "rerank_score": scored["rerank_score"].to_numpy()})
    table = table.drop_duplicates("text")

    def floor() -> None:
        merged = df.merge(table, on="text", how="left")
        merged["rerank_rank"] = merged["rerank_score"].rank(ascending=False, method="first")
        if sort:
            merged.sort_values("rerank_rank", kind="stable")

    return floor


# ----------------------------------------------------------------------------------------- Cranfield
def cranfield_path() -> str | None:
    """``../shared/data/cranfield-dev.json.gz`` from the repository root, or from its main checkout (a git
    worktree's common directory is the main checkout's ``.git``); None when neither has it."""
    roots = [ROOT]
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        common = subprocess.run(
            ["git", "-C", ROOT, "rev-parse", "--path-format=absolute", "--git-common-dir"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        if common:
            roots.append(os.path.dirname(common))
    for root in roots:
        path = os.path.join(root, "..", "shared", "data", "cranfield-dev.json.gz")
        if os.path.exists(path):
            return os.path.normpath(path)
    return None


def load_cranfield(path: str | os.PathLike) -> dict:
    """The Cranfield dev file: ``{"docs": {id: text}, "queries": {id: text}, "qrels": [[qid, did, grade]]}``."""
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return json.load(fh)


# ----------------------------------------------------------------------------------------- the report
def print_table(rows: list[dict], ratio_digits: int = 2) -> None:
    """One line per result (name, value, baseline, ratio, target, met: yes / NO / -) and its detail below."""
    width = max([len(r["name"]) for r in rows] + [len("measurement")])
    value_w = max([len(r["value"]) for r in rows] + [len("rerankpd")])
    base_w = max([len(r["baseline"]) for r in rows] + [len("baseline")])
    ratio_w = max(ratio_digits + 5, len("ratio"))
    target_w = max([len(r["target"]) for r in rows] + [len("target")])
    print(
        f"{'measurement':<{width}}  {'rerankpd':>{value_w}}  {'baseline':>{base_w}}  {'ratio':>{ratio_w}}  "
        f"{'target':<{target_w}} met"
    )
    for r in rows:
        met = "-" if r["met"] is None else ("yes" if r["met"] else "NO")
        print(
            f"{r['name']:<{width}}  {r['value']:>{value_w}}  {r['baseline']:>{base_w}}  "
            f"{r['ratio']:>{ratio_w}.{ratio_digits}f}  {r['target']:<{target_w}} {met}"
        )
        if r.get("detail"):
            print(f"{'':<{width}}    {r['detail']}")


def print_report(rows: list[dict], quick: bool, seconds: float, table_digits: int = 2, json_digits: int = 3) -> None:
    """The end of a run: the table (:func:`print_table`), the total time, and the last line,
    ``BENCHMARK_JSON {"sizes", "seconds", "results": {name: {ratio, value, baseline, met}}}``."""
    print_table(rows, ratio_digits=table_digits)
    print(f"\ntotal {seconds:.0f}s")
    results = {
        r["name"]: {
            "ratio": round(r["ratio"], json_digits),
            "value": r["value"],
            "baseline": r["baseline"],
            "met": None if r["met"] is None else bool(r["met"]),
        }
        for r in rows
    }
    print(
        "BENCHMARK_JSON "
        + json.dumps(
            {"sizes": "quick" if quick else "full", "seconds": round(seconds, 1), "results": results},
            ensure_ascii=False,
        )
    )


def exit_unless_checks_met(rows: list[dict], prefixes: tuple[str, ...]) -> None:
    """Exit with status 1, naming them, when a row whose name starts with one of ``prefixes`` is not met.

    Those rows are the benchmark's exact checks (counts, tokens, equal scores), not timings: a run that
    measures something wrong must not print a report that looks fine.
    """
    failed = [r["name"] for r in rows if r["name"].startswith(prefixes) and not r["met"]]
    if failed:
        print("CHECKS NOT MET: " + "; ".join(failed), file=sys.stderr)
        sys.exit(1)
