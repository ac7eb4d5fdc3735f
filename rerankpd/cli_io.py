"""The command line's files: reading and writing tables by extension, and checking them before any work.

Every problem is a :class:`UsageError` naming the file and saying how to fix it, so ``rerankpd rank`` prints
one line and scores nothing when the output could not be written or the input is not what it looks like.

Examples
--------
>>> check_output("ranked.xlsx")
Traceback (most recent call last):
...
rerankpd.cli_io.UsageError: --output 'ranked.xlsx': unknown file type .xlsx; use .csv, .parquet or .jsonl
"""
from __future__ import annotations

import errno
import importlib.util
import json
import os
import sys
from typing import Any, Sequence

import pandas as pd

__all__ = ["UsageError", "check_columns", "check_output", "read_table", "reranker_options", "write_table"]

_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}
_NAMES = {"csv": "CSV", "parquet": "Parquet", "jsonl": "JSON Lines"}
#: Delimiters a CSV is often written with, for the hint when a file read as one column holds them.
_OTHER_DELIMITERS = (";", "\t", "|")


class UsageError(ValueError):
    """A mistake in the command or its files: the CLI prints it as one line and exits 2."""


def file_format(path: str, role: str = "input") -> str:
    """``"csv"``, ``"parquet"`` or ``"jsonl"`` from the extension; UsageError for any other."""
    ext = os.path.splitext(path)[1].lower()
    try:
        return _FORMATS[ext]
    except KeyError:
        flag = "--output " if role == "output" else ""
        raise UsageError(f"{flag}{path!r}: unknown file type {ext or '(none)'}; "
                         "use .csv, .parquet or .jsonl") from None


def check_output(path: str | None) -> None:
    """Fail now, before any scoring, if ``path`` could not be written: unknown extension, missing or
    unwritable directory, a directory in its place, or Parquet without pyarrow. None or ``-``: stdout."""
    if path in (None, "-"):
        return
    kind = file_format(path, "output")
    if os.path.isdir(path):
        raise UsageError(f"--output {path!r} is a directory; name a file in it")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise UsageError(f"--output {path!r}: the directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise UsageError(f"--output {path!r}: no permission to write there")
    if kind == "parquet" and not any(importlib.util.find_spec(m) for m in ("pyarrow", "fastparquet")):
        raise UsageError(f"--output {path!r}: writing Parquet needs pyarrow: pip install pyarrow "
                         "(or write .csv or .jsonl)")


def read_table(path: str, sep: str = ",") -> pd.DataFrame:
    """Read CSV, Parquet or JSON Lines by extension. In CSV only empty cells are missing ("NA" stays text).

    A file that cannot be parsed is a UsageError naming the file and the format it was read as.
    """
    kind = file_format(path)
    if not os.path.exists(path):
        raise UsageError(f"input file {path!r} not found")
    if os.path.isdir(path):
        raise UsageError(f"input {path!r} is a directory, not a file")
    try:
        if kind == "csv":
            return pd.read_csv(path, keep_default_na=False, na_values=[""], sep=sep)
        if kind == "parquet":
            return pd.read_parquet(path)
        return pd.read_json(path, lines=True)
    except ImportError as exc:
        raise UsageError(f"reading {path!r} needs pyarrow: pip install pyarrow ({exc})") from None
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        detail = " ".join(str(exc).split())[:300]
        raise UsageError(f"{path}: could not read it as {_NAMES[kind]}: {detail}") from None


def check_columns(df: pd.DataFrame, path: str, column: Any, query_column: Any, sep: str = ",") -> None:
    """Every named column must be in the file; a CSV read as one column gets a hint about its delimiter."""
    for flag, name in (("--column", column), ("--query-column", query_column)):
        if name is None or name in df.columns:
            continue
        message = f"{flag} {name!r} is not a column of {path}; its columns are {list(map(str, df.columns))!r}"
        if sep == "," and len(df.columns) == 1:
            found = [d for d in _OTHER_DELIMITERS if d in str(df.columns[0])]
            if found:
                shown = "\\t" if found[0] == "\t" else found[0]
                message += f"; the file looks separated by {shown!r}: pass --sep '{shown}'"
        raise UsageError(message)


def write_table(df: pd.DataFrame, path: str | None, sep: str = ",") -> None:
    """Write CSV, Parquet or JSON Lines by extension; CSV to stdout when ``path`` is None or ``-``."""
    if path in (None, "-"):
        if sys.stdout is None:  # started with stdout closed (`>&-`)
            raise OSError(errno.EBADF, "stdout is closed")
        df.to_csv(sys.stdout, index=False, sep=sep)
        sys.stdout.flush()
        return
    kind = file_format(path, "output")
    if kind == "csv":
        df.to_csv(path, index=False, sep=sep)
    elif kind == "parquet":
        df.to_parquet(path, index=False)
    else:
        df.to_json(path, orient="records", lines=True, force_ascii=False)


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
            raise UsageError(f"--option {pair!r} is not KEY=VALUE (for example -O batch_size=50)")
        if key == "api_key":
            raise UsageError("--option api_key=... would put the key in your shell history and the process "
                             "list; set the provider's key variable (e.g. DMXAPI_API_KEY) instead")
        try:
            options[key] = json.loads(value)
        except ValueError:
            options[key] = value
    return options
