"""``rerankpd evaluate INPUT --label-column C ...``: the summary table of :func:`rerankpd.evaluate` (or JSON).

``cli.py`` registers it with :func:`add_parser` and dispatches to :func:`run`.

Examples
--------
$ rerankpd evaluate judged.csv --query-column question --label-column label -r bm25 -r e5
$ rerankpd evaluate judged.parquet --query-column qid --label-column grade --score-column bm25_score --json
$ rerankpd evaluate judged.csv --query-column qid --label-column grade -s bm25_score -r e5 --fuse "bm25_score,e5:rrf"
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import pandas as pd

from ..evaluation.metrics import DEFAULT_METRICS
from .io import QRELS_HELP

__all__ = ["HELP", "add_arguments", "run"]

HELP = "evaluate rankings of a labelled file: nDCG, MRR, MAP, recall"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``evaluate`` subcommand's arguments to its parser (see :data:`rerankpd.cli.commands.COMMANDS`)."""
    from ..rerankers import available_rerankers

    parser.add_argument("input", help="input file (.csv, .parquet, .jsonl) with a relevance label per row")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--query", "-q", help="one query for every row")
    which.add_argument("--query-column", help="a column holding each row's query")
    parser.add_argument(
        "--label-column", "-l", required=True, help="relevance per row: numbers >= 0 (relevant means > 0) or true/false"
    )
    parser.add_argument("--column", "-c", default="text", help="the text column (default: text)")
    parser.add_argument(
        "--reranker",
        "-r",
        action="append",
        default=[],
        choices=available_rerankers(),
        help="a reranker to evaluate, repeatable",
    )
    parser.add_argument(
        "--score-column",
        "-s",
        action="append",
        default=[],
        help="a column of scores to evaluate as a ranking (higher first), repeatable",
    )
    parser.add_argument(
        "--fuse",
        "-f",
        action="append",
        default=[],
        metavar="RANKINGS[:METHOD]",
        help="a fusion to evaluate, repeatable: score columns and reranker names separated by "
        "commas, then :rrf (default), :combsum, :combmnz, :max or :wsum (weights as "
        "name=weight), e.g. 'bm25_score,e5:rrf' or 'bm25_score=0.3,e5=0.7:wsum'",
    )
    parser.add_argument(
        "--metric", "-m", action="append", default=[], help=f"repeatable; default: {' '.join(DEFAULT_METRICS)}"
    )
    parser.add_argument("--qrels", metavar="FILE", help=QRELS_HELP)
    parser.add_argument("--id-column", help="match --qrels documents to this column instead of the text")
    parser.add_argument("--gain", choices=("linear", "exponential"), default="linear", help="nDCG's gain")
    parser.add_argument("--skip-empty", action="store_true", help="leave out queries with no relevant row")
    parser.add_argument("--baseline", default="original", help="compare against this ranking (default: original)")
    parser.add_argument(
        "--test",
        choices=("randomization", "bootstrap", "t"),
        default="randomization",
        help="significance test of each ranking against the baseline",
    )
    parser.add_argument("--no-cache", action="store_true", help="bypass the score cache")
    parser.add_argument("--cache-dir", help="score cache directory (default: RERANKPD_CACHE_DIR or user cache)")
    parser.add_argument("--json", action="store_true", help="print the summary and comparison as JSON")


def parse_fusion(spec: str) -> Any:
    """A ``--fuse`` value as a :class:`rerankpd.Fusion`: ``"a,b[:method]"``, weights as ``a=0.3,b=0.7:wsum``.

    >>> parse_fusion("bm25_score,e5")
    Fusion(['bm25_score', 'e5'], method='rrf', k=60)
    >>> parse_fusion("bm25_score=0.3,e5=0.7:wsum").weights
    (0.3, 0.7)
    """
    from ..evaluation.fusion import Fusion
    from .io import UsageError

    rankings, _, method = spec.rpartition(":") if ":" in spec else (spec, "", "rrf")
    names, weights = [], {}
    for item in (part.strip() for part in rankings.split(",")):
        name, equals, weight = item.partition("=")
        names.append(name.strip())
        if equals:
            try:
                weights[name.strip()] = float(weight)
            except ValueError:
                raise UsageError(f"--fuse {spec!r}: the weight of {name.strip()!r} is not a number") from None
    if len(names) < 2 or not all(names):
        raise UsageError(f"--fuse {spec!r}: give two or more rankings separated by commas, e.g. 'bm25_score,e5:rrf'")
    if weights and len(weights) != len(names):
        raise UsageError(f"--fuse {spec!r}: give a weight to every ranking or to none")
    return Fusion(names, method.strip() or "rrf", weights=weights or None)


def run(args: argparse.Namespace) -> int:
    """Evaluate and print; returns the exit status."""
    from ..evaluation.evaluate import evaluate
    from .io import check_columns, check_qrels, read_qrels, read_table

    fusions = [parse_fusion(spec) for spec in args.fuse]
    df = read_table(args.input)
    text_needed = bool(args.reranker or fusions) or (bool(args.qrels) and not args.id_column)
    check_columns(
        df,
        args.input,
        args.column if text_needed else None,
        args.query_column,
        more=[
            ("--label-column", args.label_column),
            ("--id-column", args.id_column),
            *(("--score-column", name) for name in args.score_column),
        ],
    )
    qrels = None
    if args.qrels:  # checked before any scoring: its format, its grades, and that it matches the input
        qrels = read_qrels(args.qrels)
        for name in (args.query_column, args.id_column):  # ids compare as text, as the qrels file holds them
            if name is not None:
                df[name] = df[name].where(df[name].isna(), df[name].astype(str))
        queries = df[args.query_column].dropna() if args.query_column else [args.query]
        check_qrels(
            qrels,
            args.qrels,
            df,
            args.input,
            queries,
            "--query-column" if args.query_column else "--query",
            args.id_column or args.column,
            "--id-column" if args.id_column else "--column",
        )
    rerankers = [*args.reranker, *fusions]
    evaluation = evaluate(
        df,
        args.query,
        args.column,
        query_column=args.query_column,
        label_column=args.label_column,
        rerankers=rerankers or None,
        score_columns=args.score_column or None,
        metrics=args.metric or DEFAULT_METRICS,
        baseline=args.baseline,
        cache=False if args.no_cache else (args.cache_dir or True),
        gain=args.gain,
        skip_empty=args.skip_empty,
        qrels=qrels,
        id_column=args.id_column,
    )
    comparison = evaluation.compare(test=args.test) if len(evaluation.rankings) > 1 else None
    if args.json:
        out = evaluation.to_dict()
        out["compare"] = [] if comparison is None else json.loads(comparison.to_json(orient="records"))
        print(json.dumps(out, indent=2, ensure_ascii=False))
        return 0
    print(evaluation.to_string())
    with pd.option_context("display.width", 160, "display.max_columns", 50, "display.precision", 4):
        if comparison is not None:
            print(f"\nagainst {evaluation.baseline} ({args.test} test, Holm-adjusted p):")
            print(comparison.drop(columns=["baseline"]).to_string(index=False))
    print(f"rerankpd: {len(evaluation.queries)} queries, {len(df)} rows", file=sys.stderr)
    return 0
