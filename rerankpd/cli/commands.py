"""The command line: ``rerankpd rank``, ``rerankpd demo``, ``rerankpd cache info|clear``.

Each subcommand is one entry of :data:`COMMANDS`: a function that adds its arguments to a subparser and a
handler that returns the exit status. A user's mistake prints one line and exits with a documented code
(:data:`EXIT_CODES`), never a traceback.

Examples
--------
$ rerankpd demo
$ rerankpd rank docs.csv --query "如何预防感冒" --top-n 10 -o ranked.parquet
$ rerankpd rank qa.jsonl --query-column question --column passage > ranked.csv
$ rerankpd rank docs.csv --query "如何预防感冒" --reranker cohere --dry-run
$ rerankpd cache info
$ rerankpd cache clear --reranker cohere
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sqlite3
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from .. import __version__, config
from ..cache import STORE_ERRORS, cache_info, clear_cache
from ..errors import ConfigurationError, RerankError, RunCancelled
from ..rerankers import Reranker, available_rerankers, get_reranker, reranker_class
from ..run.estimate import computes_locally
from ..run.pipeline import RANK, SCORE
from . import evaluate as evaluate_cli
from .io import UsageError, check_columns, check_output, cli_terms, read_table, reranker_options, write_table

__all__ = ["COMMANDS", "EXIT_CODES", "main", "reranker_options", "summary_line"]

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ROWS_FAILED, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 0, 1, 2, 3, 130, 141

#: The exit statuses, as ``--help`` and the README list them.
EXIT_CODES = {
    EXIT_OK: "every row ranked (or the command did what it says)",
    EXIT_FAILED: "failed: a service error, or the cache or the output file could not be used",
    EXIT_USAGE: "bad usage or input: an unknown option, a missing file or column, an unknown file type",
    EXIT_ROWS_FAILED: "written, but some rows failed (--errors coerce): NaN score, message in rerank_error",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C): finished scores are cached, rerun to continue",
    EXIT_BROKEN_PIPE: "stdout was closed early (e.g. piped into head)",
}

#: The seed's example (DMXAPI's API page): one query, three documents.
DEMO_QUERY = "如何预防感冒"
DEMO_DOCUMENTS = [
    "预防感冒应勤洗手、戴口罩，保持室内通风（来源：协和医院研究）",
    "流感疫苗每年10月接种最佳，可降低70%感染风险（来源：卫健委2024指南）",
    "维生素C对感冒的预防效果存在争议（来源：JAMA医学期刊）",
]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# --------------------------------------------------------------------------------------------- reranker
def reranker_name(chosen: str | None) -> str:
    """The reranker to use: ``--reranker``, else ``RERANKPD_RERANKER`` (an unknown name is an error naming
    the variable), else the default (``dmxapi`` with its key set, else offline). Names are case-insensitive.
    """
    if chosen:
        return chosen.lower()
    from_env = config.env("RERANKPD_RERANKER")
    if from_env:
        if from_env.lower() not in available_rerankers():
            raise UsageError(
                f"RERANKPD_RERANKER={from_env!r} is not a reranker; set it to one of "
                f"{', '.join(available_rerankers())} (or pass --reranker)"
            )
        return from_env.lower()
    return config.default_reranker_name()


def check_reranker_options(name: str, options: dict) -> None:
    """Every ``-O`` key must be a parameter of the reranker's ``__init__``; else list the valid ones.

    >>> check_reranker_options("bm25", {"colour": 3})
    Traceback (most recent call last):
    ...
    rerankpd.cli.io.UsageError: -O colour: bm25 takes no option 'colour'; its options are: k1, b, ...
    """
    import inspect

    parameters = inspect.signature(reranker_class(name).__init__).parameters
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return
    valid = [p for p, spec in parameters.items() if p != "self" and spec.kind is not spec.VAR_POSITIONAL]
    for key in options:
        if key not in valid:
            raise UsageError(f"-O {key}: {name} takes no option {key!r}; its options are: {', '.join(valid)}")


# --------------------------------------------------------------------------------------------- rank
def summary_line(info: dict, written: int, output: str | None = None, local: bool = False) -> str:
    """The line ``rank`` prints on stderr: rows written, reranker, pairs, requests (retries included; for a
    ``local`` reranker, which sends none, "on this machine" instead), cache hits and failed rows.

    >>> summary_line({"reranker": "bm25", "model": None, "rows": 2, "sent": 2, "requests": 1, "from_cache": 0},
    ...              2, local=True)
    'rerankpd: 2 rows written, ranked with bm25: 2 pairs scored on this machine, 0 from cache'

    >>> summary_line({"reranker": "bm25", "model": "m", "rows": 5, "sent": 1, "requests": 1, "from_cache": 0}, 4)
    'rerankpd: 4 rows (of 5) written, ranked with bm25 (m): 1 pair scored in 1 request, 0 from cache'
    >>> summary_line({"reranker": "x", "model": None, "rows": 3, "sent": 2, "requests": 1, "attempts": 3,
    ...               "from_cache": 1, "failed": 1, "failed_requests": 1}, 3, "out.csv")
    'rerankpd: 3 rows written to out.csv, ranked with x: 2 pairs scored in 3 requests, 1 from cache; 1 row FAILED (1 failed request): see its rerank_error'
    """
    rows = int(info.get("rows", written))
    model = f" ({info['model']})" if info.get("model") else ""
    requests = int(info.get("attempts") or info.get("requests") or 0)
    line = (
        f"rerankpd: {_plural(written, 'row')}"
        + (f" (of {rows})" if written != rows else "")
        + " written"
        + (f" to {output}" if output else "")
        + f", ranked with {info.get('reranker', '?')}{model}: "
        + f"{_plural(int(info.get('sent', 0)), 'pair')} scored "
        + ("on this machine, " if local else f"in {_plural(requests, 'request')}, ")
        + f"{info.get('from_cache', 0)} from cache"
    )
    failed = int(info.get("failed") or 0)
    if failed:
        failed_requests = info.get("failed_requests")
        detail = f" ({_plural(int(failed_requests), 'failed request')})" if failed_requests else ""
        line += f"; {_plural(failed, 'row')} FAILED{detail}: see {'its' if failed == 1 else 'their'} rerank_error"
    return line


def _add_rank(rank: argparse.ArgumentParser) -> None:
    rank.add_argument("input", help="input file (.csv, .parquet, .jsonl)")
    which = rank.add_mutually_exclusive_group(required=True)
    which.add_argument("--query", "-q", help="one query for every row")
    which.add_argument("--query-column", help="a column holding each row's query")
    rank.add_argument("--column", "-c", default="text", help="the text column (default: text)")
    rank.add_argument("--sep", default=",", help="the input CSV's delimiter (default: ,), e.g. --sep ';'")
    rank.add_argument("--top-n", "-n", type=int, help="keep the n best rows per query")
    rank.add_argument(
        "--reranker",
        "-r",
        type=str.lower,
        choices=available_rerankers(),
        help="default: RERANKPD_RERANKER, else dmxapi with DMXAPI_API_KEY set, else offline",
    )
    rank.add_argument(
        "--option",
        "-O",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a reranker option, repeatable: -O model=rerank-v3.5 -O batch_size=50 "
        "-O max_chunks_per_doc=4 -O timeout=[5,60] (values read as JSON, else text)",
    )
    rank.add_argument(
        "--prefilter",
        metavar="RERANKER_OR_COLUMN",
        help="a cascade: this cheap ranking (bm25, or a column of scores) orders every row first, and "
        "only each query's --candidates best rows go to --reranker",
    )
    rank.add_argument(
        "--candidates", type=int, default=100, help="rows per query the --prefilter hands to --reranker (default: 100)"
    )
    rank.add_argument("--no-sort", action="store_true", help="keep input order")
    rank.add_argument("--no-cache", action="store_true", help="bypass the score cache")
    rank.add_argument("--cache-dir", help="score cache directory (default: RERANKPD_CACHE_DIR or user cache)")
    rank.add_argument(
        "--errors",
        choices=("raise", "coerce"),
        default="raise",
        help="coerce: failed rows get NaN and a rerank_error message, and the exit status is 3",
    )
    rank.add_argument("--output", "-o", help="output file by extension; CSV to stdout if omitted")
    rank.add_argument(
        "--dry-run", action="store_true", help="send nothing (no API key needed): print what the run would send as JSON"
    )


def _rank(args: argparse.Namespace) -> int:
    check_output(args.output)
    df = read_table(args.input, sep=args.sep)
    check_columns(df, args.input, args.column, args.query_column, args.sep)
    name = reranker_name(args.reranker)
    options = reranker_options(args.option)
    check_reranker_options(name, options)
    cache: bool | str = False if args.no_cache else (args.cache_dir or True)
    common = dict(query_column=args.query_column, top_n=args.top_n, cache=cache, errors=args.errors)
    if args.prefilter is not None:
        if args.prefilter.lower() in available_rerankers() and args.prefilter not in df.columns:
            args.prefilter = args.prefilter.lower()
        elif args.prefilter not in df.columns:
            raise UsageError(
                f"--prefilter {args.prefilter!r} is neither a reranker ({', '.join(available_rerankers())}) "
                f"nor a column of {args.input}; its columns are {list(map(str, df.columns))!r}"
            )
        common.update(prefilter=args.prefilter, candidates=args.candidates)
    local = computes_locally(reranker_class(name))
    model: Reranker | str  # the estimate's reranker, then the one (or the name) the run uses
    if args.dry_run or local:
        from ..api import estimate
        from ..run.estimate import reranker_for_estimate

        with reranker_for_estimate(name, **options) as model:  # a hosted service without its key: keyless, noted
            est = estimate(df, args.query, args.column, reranker=model, **common)
        if args.dry_run:
            print(json.dumps(est.to_dict(), indent=2, ensure_ascii=False))
            print(f"rerankpd: dry run, nothing sent: {est}", file=sys.stderr)
            return EXIT_OK
        _say_if_long(est, name, df, args)
    model = get_reranker(name, **options) if options else name

    def work(cancel: threading.Event) -> pd.DataFrame:
        from ..api import rerank

        return rerank(df, args.query, args.column, reranker=model, sort=not args.no_sort, _cancel=cancel, **common)

    try:
        out = _interruptible(work, patience=LOCAL_PATIENCE if local else None)
    finally:
        if not isinstance(model, str):
            model.close()
    try:
        write_table(out, args.output)
    except BrokenPipeError:
        raise
    except OSError as exc:
        kept = "; the scores are cached: rerun to write them" if not args.no_cache else ""
        where = args.output
        if args.output in (None, "-"):
            where = "to stdout"
            _quiet_stdout()  # what could not be written must not be flushed again (and fail) at exit
        raise RerankError(f"could not write {where}: {exc.strerror or exc}{kept}") from None
    info = out.attrs.get("rerank", {})
    print(summary_line(info, len(out), args.output, local=local), file=sys.stderr)
    return EXIT_ROWS_FAILED if info.get("failed") else EXIT_OK


def _quiet_stdout() -> None:
    """Point file descriptor 1 at /dev/null, so Python's last flush of stdout at exit has nowhere to fail."""
    if sys.stdout is None:
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


#: A run that will take longer than this (seconds) says so before it starts, with the faster choices.
LONG_RUN = 180.0
#: After Ctrl-C, how long a run computing on this machine may take to finish its batch before the command
#: quits without it (a finished batch is cached; a hosted service's request in flight is always awaited: it is
#: paid for).
LOCAL_PATIENCE = 1.0


def _say_if_long(est: Any, name: str, df: pd.DataFrame, args: argparse.Namespace) -> None:
    """Before a run of a local reranker that will take more than :data:`LONG_RUN` seconds: say how long, and
    name the faster choices (bm25, a cascade, a hosted service's key)."""
    from ..run.estimate import duration

    seconds = getattr(est, "with_cascade", est).seconds
    if seconds is None or seconds <= LONG_RUN:
        return
    to_score = getattr(est, "with_cascade", est).to_score
    faster = []
    if name != "bm25":
        faster.append("--reranker bm25 (seconds; words only)")
    if getattr(args, "prefilter", None) is None and args.query_column is not None and to_score:
        per_query = df.groupby(args.query_column, sort=False).size()
        share = float(per_query.clip(upper=50).sum()) / max(int(per_query.sum()), 1)
        if share < 0.9:
            faster.append(f"a cascade, --prefilter bm25 --candidates 50 (about {duration(seconds * share)})")
    if not config.env("DMXAPI_API_KEY"):
        faster.append("a hosted reranker: set DMXAPI_API_KEY (then dmxapi is the default)")
    print(
        f"rerankpd: {name} will score {to_score} pairs on this machine: about {duration(seconds)} "
        f"({getattr(est, 'with_cascade', est).timing})"
        + (f"; faster: {'; '.join(faster)}" if faster else "")
        + ". Ctrl-C stops it; finished scores are cached",
        file=sys.stderr,
        flush=True,
    )


def _interruptible(work: Callable[[threading.Event], Any], patience: float | None = None) -> Any:
    """Run ``work(cancel)`` in a thread; Ctrl-C says at once that the run stops after the current request,
    sets ``cancel`` and waits for it (a second Ctrl-C quits without waiting). With ``patience`` (a run that
    computes on this machine), the wait lasts at most that many seconds: then the command quits, the batch
    in progress dropped (every finished one is cached)."""
    cancel, finished = threading.Event(), threading.Event()
    outcome: dict = {}

    def target() -> None:
        try:
            outcome["value"] = work(cancel)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            outcome["error"] = exc
        finally:
            finished.set()

    thread = threading.Thread(target=target, name="rerankpd-cli", daemon=True)
    restore = _notice_on_sigint(cancel)
    thread.start()
    try:
        while not finished.is_set():  # an Event, not join(): an interrupted join() can report a live thread dead
            try:
                finished.wait(0.2)
            except KeyboardInterrupt:
                cancel.set()
                if patience is not None and not finished.wait(patience):
                    raise RunCancelled(
                        "stopped; the batch in progress was dropped, every finished one is cached"
                    ) from None
    finally:
        restore()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _notice_on_sigint(cancel: threading.Event) -> Callable[[], object]:
    """Install a SIGINT handler that prints what happens next, then raises KeyboardInterrupt."""
    import signal

    def handler(signum: int, frame: Any) -> None:
        if cancel.is_set():  # the second Ctrl-C: quit now (each finished request is already in the cache)
            print("\nrerankpd: stopped; requests in flight are lost, the rest is cached", file=sys.stderr, flush=True)
            sys.stdout.flush()
            os._exit(EXIT_INTERRUPTED)
        print(
            "\nrerankpd: stopping after the current request... (Ctrl-C again to quit at once)",
            file=sys.stderr,
            flush=True,
        )
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.signal(signal.SIGINT, handler)
    return lambda: signal.signal(signal.SIGINT, previous)


# --------------------------------------------------------------------------------------------- demo
def _add_demo(demo: argparse.ArgumentParser) -> None:
    demo.add_argument(
        "--reranker", "-r", type=str.lower, choices=available_rerankers(), help="default: the embedded one"
    )


def _demo(args: argparse.Namespace) -> int:
    from ..api import rerank

    name = args.reranker or config.embedded_default()
    df = pd.DataFrame({"text": DEMO_DOCUMENTS})
    out = rerank(df, DEMO_QUERY, reranker=name, cache=False, progress=False)
    info = out.attrs["rerank"]
    print(f"query: {DEMO_QUERY}    reranker: {info['reranker']} ({info['model']})\n")
    with pd.option_context("display.max_colwidth", 60, "display.width", 120):
        print(out[[RANK, SCORE, "text"]].to_string())
    return EXIT_OK


# --------------------------------------------------------------------------------------------- cache
def _add_cache(cache: argparse.ArgumentParser) -> None:
    cache.add_argument("action", choices=("info", "clear"))
    cache.add_argument("--cache-dir", help="cache directory (default: RERANKPD_CACHE_DIR or user cache)")
    cache.add_argument(
        "--reranker",
        metavar="NAME",
        help="clear only this reranker's entries (its name, as in --reranker of rank: cohere, e5, llm, ...)",
    )


class CacheUnusable(RerankError):
    """The cache directory is missing, not a directory, or cannot be read or written (exit 1)."""


def _cache(args: argparse.Namespace) -> int:
    directory = args.cache_dir or config.cache_dir()
    if not os.path.exists(directory):
        raise CacheUnusable(f"no cache at {directory} (nothing was cached there; check the path)")
    if not os.path.isdir(directory):
        raise CacheUnusable(f"{directory} is a file, not a cache directory")
    if args.reranker is not None and args.action == "info":
        raise UsageError("--reranker goes with 'cache clear' (cache info reports the whole cache)")
    try:
        if args.action == "info":
            print(json.dumps(cache_info(directory), indent=2, ensure_ascii=False))
        else:
            removed = clear_cache(directory, reranker=args.reranker)
            whose = f" of {args.reranker}" if args.reranker is not None else ""
            print(f"removed {removed} cache entr{'y' if removed == 1 else 'ies'}{whose}")
    except (*STORE_ERRORS, RerankError) as exc:
        raise CacheUnusable(
            f"the cache at {directory} could not be {'read' if args.action == 'info' else 'cleared'}: {exc}"
        ) from None
    return EXIT_OK


#: name -> (adds the subcommand's arguments, runs it and returns the exit status, one line of help)
COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int], str]] = {
    "rank": (_add_rank, _rank, "rank the rows of a CSV, Parquet or JSONL file"),
    "demo": (_add_demo, _demo, "rank the DMXAPI page's example offline and print it"),
    "cache": (_add_cache, _cache, "inspect or clear the cache (scores, embeddings, LLM windows)"),
    "evaluate": (evaluate_cli.add_arguments, evaluate_cli.run, evaluate_cli.HELP),
}


def _parser() -> argparse.ArgumentParser:
    codes = "\n".join(f"  {code:<4} {meaning}" for code, meaning in EXIT_CODES.items())
    parser = argparse.ArgumentParser(
        prog="rerankpd",
        description="Rerank table rows by relevance to a query.",
        epilog=f"exit status:\n{codes}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"rerankpd {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log retries and requests to stderr")
    # -v after the subcommand too; SUPPRESS keeps a -v given before it
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log retries and requests to stderr"
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, (add_arguments, _, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(
            name,
            help=help_text,
            parents=[common],
            epilog=f"exit status:\n{codes}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        add_arguments(sub)
    return parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    text = str(message)
    print(text if text.startswith("rerankpd") else f"rerankpd: warning: {text}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (see :data:`EXIT_CODES`)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    handler = COMMANDS[args.command][1]
    with warnings.catch_warnings():
        warnings.showwarning = _one_line_warning
        try:
            return handler(args)
        except BrokenPipeError:
            # the reader went away (| head): say nothing, and keep Python from complaining at exit
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return EXIT_BROKEN_PIPE
        except RunCancelled as exc:
            print(f"rerankpd: interrupted: {exc}; rerun to continue", file=sys.stderr)
            return EXIT_INTERRUPTED
        except KeyboardInterrupt:
            print("rerankpd: interrupted; finished scores are cached, rerun to continue", file=sys.stderr)
            return EXIT_INTERRUPTED
        except (
            UsageError,
            ConfigurationError,
            KeyError,
            TypeError,
            ValueError,
            FileNotFoundError,
            IsADirectoryError,
        ) as exc:
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            print(f"rerankpd: error: {cli_terms(str(message))}", file=sys.stderr)
            return EXIT_USAGE
        except (RerankError, OSError, sqlite3.Error) as exc:
            print(f"rerankpd: error: {cli_terms(str(exc))}", file=sys.stderr)
            return EXIT_FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
