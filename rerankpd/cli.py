"""The command line: ``rerankpd rank``, ``rerankpd demo``, ``rerankpd cache info|clear``.

Examples
--------
$ rerankpd demo
$ rerankpd rank docs.csv --query "如何预防感冒" --top-n 10 -o ranked.parquet
$ rerankpd rank qa.jsonl --query-column question --column passage > ranked.csv
$ rerankpd rank docs.csv --query "如何预防感冒" --reranker cohere --dry-run
$ rerankpd cache info
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Sequence

import pandas as pd

from . import __version__, config, evaluate_cli
from .cache import cache_info, clear_cache
from .errors import RerankError
from .estimate import estimate
from .pipeline import rerank
from .rerankers import available_rerankers, get_reranker

__all__ = ["main"]

#: The seed's example (DMXAPI's API page): one query, three documents.
DEMO_QUERY = "如何预防感冒"
DEMO_DOCUMENTS = [
    "预防感冒应勤洗手、戴口罩，保持室内通风（来源：协和医院研究）",
    "流感疫苗每年10月接种最佳，可降低70%感染风险（来源：卫健委2024指南）",
    "维生素C对感冒的预防效果存在争议（来源：JAMA医学期刊）",
]

_READERS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def _format(path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    try:
        return _READERS[ext]
    except KeyError:
        raise ValueError(f"{path!r}: unknown file type {ext or '(none)'}; use .csv, .parquet or .jsonl") from None


def read_table(path: str) -> pd.DataFrame:
    """Read CSV, Parquet or JSON Lines by extension. In CSV only empty cells are missing ("NA" stays text)."""
    kind = _format(path)
    if kind == "csv":
        return pd.read_csv(path, keep_default_na=False, na_values=[""])
    if kind == "parquet":
        return pd.read_parquet(path)
    return pd.read_json(path, lines=True)


def write_table(df: pd.DataFrame, path: str | None) -> None:
    """Write CSV, Parquet or JSON Lines by extension; CSV to stdout when ``path`` is None or ``-``."""
    if path in (None, "-"):
        df.to_csv(sys.stdout, index=False)
        return
    kind = _format(path)
    if kind == "csv":
        df.to_csv(path, index=False)
    elif kind == "parquet":
        df.to_parquet(path, index=False)
    else:
        df.to_json(path, orient="records", lines=True, force_ascii=False)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rerankpd", description="Rerank table rows by relevance to a query.")
    parser.add_argument("--version", action="version", version=f"rerankpd {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log retries and requests to stderr")
    commands = parser.add_subparsers(dest="command", required=True)

    rank = commands.add_parser("rank", help="rank the rows of a CSV, Parquet or JSONL file")
    rank.add_argument("input", help="input file (.csv, .parquet, .jsonl)")
    which = rank.add_mutually_exclusive_group(required=True)
    which.add_argument("--query", "-q", help="one query for every row")
    which.add_argument("--query-column", help="a column holding each row's query")
    rank.add_argument("--column", "-c", default="text", help="the text column (default: text)")
    rank.add_argument("--top-n", "-n", type=int, help="keep the n best rows per query")
    rank.add_argument("--reranker", "-r", choices=available_rerankers(),
                      help="default: RERANKPD_RERANKER, else dmxapi with DMXAPI_API_KEY set, else offline")
    rank.add_argument("--option", "-O", action="append", default=[], metavar="KEY=VALUE",
                      help="a reranker option, repeatable: -O model=rerank-v3.5 -O batch_size=50 "
                           "-O max_chunks_per_doc=4 -O timeout=[5,60] (values read as JSON, else text)")
    rank.add_argument("--no-sort", action="store_true", help="keep input order")
    rank.add_argument("--no-cache", action="store_true", help="bypass the score cache")
    rank.add_argument("--cache-dir", help="score cache directory (default: RERANKPD_CACHE_DIR or user cache)")
    rank.add_argument("--errors", choices=("raise", "coerce"), default="raise",
                      help="coerce: failed rows get NaN and a rerank_error message")
    rank.add_argument("--output", "-o", help="output file by extension; CSV to stdout if omitted")
    rank.add_argument("--dry-run", action="store_true",
                      help="send nothing: print what the run would send (pairs, requests, ~tokens) as JSON")

    demo = commands.add_parser("demo", help="rank the DMXAPI page's example offline and print it")
    demo.add_argument("--reranker", "-r", choices=available_rerankers(), help="default: the embedded one")

    cache = commands.add_parser("cache", help="inspect or clear the score cache")
    cache.add_argument("action", choices=("info", "clear"))
    cache.add_argument("--cache-dir", help="score cache directory")
    evaluate_cli.add_parser(commands)
    return parser


def reranker_options(pairs: Sequence[str]) -> dict:
    """``KEY=VALUE`` strings as reranker options; values are read as JSON when they parse, else as text.

    >>> reranker_options(["batch_size=50", "model=rerank-v3.5", "timeout=[5, 60]", "truncate=true"])
    {'batch_size': 50, 'model': 'rerank-v3.5', 'timeout': [5, 60], 'truncate': True}
    """
    options: dict = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ValueError(f"--option {pair!r} is not KEY=VALUE (for example -O batch_size=50)")
        if key == "api_key":
            raise ValueError("--option api_key=... would put the key in your shell history and the process "
                             "list; set the provider's key variable (e.g. DMXAPI_API_KEY) instead")
        try:
            options[key] = json.loads(value)
        except ValueError:
            options[key] = value
    return options


def _rank(args: argparse.Namespace) -> int:
    df = read_table(args.input)
    cache: bool | str = False if args.no_cache else (args.cache_dir or True)
    if args.option:
        options = reranker_options(args.option)
        try:
            args.reranker = get_reranker(args.reranker or config.default_reranker_name(), **options)
        except TypeError as exc:  # an option the reranker does not take
            raise ValueError(f"--option: {exc}") from None
    if args.dry_run:
        est = estimate(df, args.query, args.column, query_column=args.query_column, top_n=args.top_n,
                       reranker=args.reranker, cache=cache, errors=args.errors)
        print(json.dumps(est.to_dict(), indent=2, ensure_ascii=False))
        print(f"rerankpd: dry run, nothing sent: {est}", file=sys.stderr)
        return 0
    out = rerank(df, args.query, args.column, query_column=args.query_column, top_n=args.top_n,
                 reranker=args.reranker, sort=not args.no_sort, cache=cache, errors=args.errors)
    write_table(out, args.output)
    info = out.attrs["rerank"]
    print(f"rerankpd: {info['rows']} rows ranked with {info['reranker']} ({info['model']}): "
          f"{info['sent']} pairs scored in {info['requests']} requests, {info['from_cache']} from cache"
          + (f", written to {args.output}" if args.output else ""), file=sys.stderr)
    return 0


def _demo(args: argparse.Namespace) -> int:
    name = args.reranker or config.embedded_default()
    df = pd.DataFrame({"text": DEMO_DOCUMENTS})
    out = rerank(df, DEMO_QUERY, reranker=name, cache=False, progress=False)
    info = out.attrs["rerank"]
    print(f"query: {DEMO_QUERY}    reranker: {info['reranker']} ({info['model']})\n")
    with pd.option_context("display.max_colwidth", 60, "display.width", 120):
        print(out[["rerank_rank", "rerank_score", "text"]].to_string())
    return 0


def _cache(args: argparse.Namespace) -> int:
    if args.action == "info":
        print(json.dumps(cache_info(args.cache_dir), indent=2, ensure_ascii=False))
    else:
        removed = clear_cache(args.cache_dir)
        print(f"removed {removed} cached scores")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 failed, 2 bad usage or input)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    handler = {"rank": _rank, "demo": _demo, "cache": _cache, "evaluate": evaluate_cli.run}[args.command]
    try:
        return handler(args)
    except (KeyError, TypeError, ValueError, FileNotFoundError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"rerankpd: error: {message}", file=sys.stderr)
        return 2
    except RerankError as exc:
        print(f"rerankpd: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("rerankpd: interrupted; finished scores are cached, rerun to continue", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
