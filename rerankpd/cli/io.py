"""The command line's files: reading and writing tables by extension, and checking them before any work.

Every problem is a :class:`UsageError` naming the file and saying how to fix it, so ``rerankpd rank`` prints
one line and scores nothing when the output could not be written or the input is not what it looks like.

Examples
--------
>>> check_output("ranked.xlsx")
Traceback (most recent call last):
...
rerankpd.cli.io.UsageError: --output 'ranked.xlsx': unknown file type .xlsx; use .csv, .parquet or .jsonl
"""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import re
import sys
from collections.abc import Sequence
from typing import Any

import pandas as pd

__all__ = [
    "UsageError",
    "check_columns",
    "check_output",
    "check_qrels",
    "cli_terms",
    "read_qrels",
    "read_table",
    "reranker_options",
    "write_table",
]

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
        raise UsageError(f"{flag}{path!r}: unknown file type {ext or '(none)'}; use .csv, .parquet or .jsonl") from None


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
        raise UsageError(
            f"--output {path!r}: writing Parquet needs pyarrow: pip install pyarrow (or write .csv or .jsonl)"
        )


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


def check_columns(
    df: pd.DataFrame, path: str, column: Any, query_column: Any, sep: str = ",", more: Sequence[tuple[str, Any]] = ()
) -> None:
    """Every named column must be in the file; a CSV read as one column gets a hint about its delimiter.

    ``more`` adds ``(flag, column name)`` pairs to check, e.g. ``[("--label-column", "relevance")]``.
    """
    for flag, name in (("--column", column), ("--query-column", query_column), *more):
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
            raise UsageError(
                "--option api_key=... would put the key in your shell history and the process "
                "list; set the provider's key variable (e.g. DMXAPI_API_KEY) instead"
            )
        try:
            options[key] = json.loads(value)
        except ValueError:
            options[key] = value
    return options


# --------------------------------------------------------------------------------------------- qrels
#: Column names a qrels table may use, per role (the first match wins; case-insensitive).
QRELS_NAMES = {
    "query": ("qid", "query_id", "query", "topic"),
    "document": ("docid", "doc_id", "doc", "document", "docno"),
    "label": ("grade", "label", "relevance", "rel", "judgment", "score"),
}
QRELS_HELP = (
    "the collection's judgments, for relevant documents the input does not hold: a TREC qrels file "
    "('QUERY 0 DOC GRADE' per line, any extension but .csv/.parquet/.jsonl), or a table (.csv, "
    ".parquet, .jsonl) with query, document and grade columns (named e.g. qid, doc, grade; else its "
    "first three). QUERY matches the values of --query-column (or the --query), DOC the --id-column "
    "values (else the --column text); GRADE is a number >= 0, relevant means > 0"
)


def read_qrels(path: str) -> pd.DataFrame:
    r"""Read ``--qrels``: a TREC qrels file or a table, as a frame of three columns (query, document, label).

    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as fh:
    ...     _ = fh.write("1 0 184 2\n1 0 29 1\n")
    >>> read_qrels(fh.name).values.tolist()
    [['1', '184', 2.0], ['1', '29', 1.0]]
    """
    if os.path.splitext(path)[1].lower() in _FORMATS:
        table = read_table(path)
        table = table.rename(columns=str)
        lower = {c.lower(): c for c in table.columns}
        picked = [next((lower[n] for n in names if n in lower), None) for names in QRELS_NAMES.values()]
        if None in picked:
            if len(table.columns) == 4:  # a TREC qrels table: query, iteration, document, grade
                picked = [table.columns[0], table.columns[2], table.columns[3]]
            elif len(table.columns) == 3:
                picked = list(table.columns)
            else:
                raise UsageError(
                    f"--qrels {path}: cannot tell its query, document and grade columns among "
                    f"{list(table.columns)!r}; name them qid, doc and grade (or give three columns)"
                )
        qrels = table[picked].copy()
        qrels.columns = ["query", "document", "label"]
        qrels["query"], qrels["document"] = qrels["query"].astype(str), qrels["document"].astype(str)
        where = lambda i: f"row {i + 2}"  # the header is line 1
    else:
        if not os.path.isfile(path):
            raise UsageError(
                f"--qrels {path}: file not found"
                if not os.path.exists(path)
                else f"--qrels {path}: a directory, not a file"
            )
        rows = []
        with open(path, encoding="utf-8", errors="replace") as fh:
            for number, line in enumerate(fh, 1):
                fields = line.split()
                if not fields:
                    continue
                if len(fields) != 4:
                    raise UsageError(
                        f"--qrels {path}, line {number}: expected 4 fields 'QUERY 0 DOC GRADE' "
                        f"(TREC qrels), got {len(fields)}: {line.strip()[:80]!r}"
                    )
                rows.append((fields[0], fields[2], fields[3], number))
        if not rows:
            raise UsageError(f"--qrels {path} holds no judgment")
        qrels = pd.DataFrame([r[:3] for r in rows], columns=["query", "document", "label"])
        lines = [r[3] for r in rows]
        where = lambda i: f"line {lines[i]}"
    labels = pd.to_numeric(qrels["label"], errors="coerce")
    bad = [int(i) for i in (labels.isna() | (labels < 0) | ~labels.abs().lt(float("inf"))).to_numpy().nonzero()[0]]
    if bad:
        raise UsageError(
            f"--qrels {path}, {where(bad[0])}: grade {qrels['label'].iloc[bad[0]]!r} is not a number "
            ">= 0 (relevant means > 0; map 'not relevant' grades such as -1 to 0)"
        )
    qrels["label"] = labels.astype("float64")
    return qrels


def check_qrels(
    qrels: pd.DataFrame,
    path: str,
    df: pd.DataFrame,
    input_path: str,
    queries: Any,
    query_flag: str,
    documents: Any,
    document_flag: str,
) -> None:
    """Fail before any scoring when ``--qrels`` cannot match the input: none of its queries is a query of the
    input, or none of its documents is a document of the input (then it names the flag that fixes it)."""
    values = pd.Series(queries).astype(str)
    if not qrels["query"].isin(set(values)).any():
        raise UsageError(
            f"--qrels {path}: none of its {qrels['query'].nunique()} queries (e.g. "
            f"{qrels['query'].iloc[0]!r}) is a {query_flag} value of {input_path} (e.g. "
            f"{values.iloc[0]!r}); pass --query-column naming the column of {input_path} that "
            "holds the qrels' query ids"
        )
    docs = df[documents].astype(str)
    if not qrels["document"].isin(set(docs)).any():
        hint = (
            "pass --id-column, the column of document ids the qrels name"
            if document_flag == "--column"
            else "check that --id-column holds the ids the qrels name"
        )
        raise UsageError(
            f"--qrels {path}: none of its documents (e.g. {qrels['document'].iloc[0]!r}) is a "
            f"{document_flag} {documents!r} value of {input_path}; {hint}"
        )


# --------------------------------------------------------------------------------------------- messages
#: The library's parameter names the command line spells as flags.
FLAGS = {
    "label_column": "--label-column",
    "query_column": "--query-column",
    "id_column": "--id-column",
    "score_columns": "--score-column",
    "top_n": "--top-n",
}
_PARAMETER = re.compile(r"(?<![\w\-])(?<!-O )(?<!--option )(?!api_key=)([a-z_][a-z0-9_]*)=(\.\.\.|'([^'\s]*)')")
_FLAG = re.compile(r"\b(" + "|".join(FLAGS) + r")\b")


def cli_terms(message: str) -> str:
    """A library message in the command line's words: a reranker option ``model=...`` is ``-O model=...``
    (``model='m'``: ``-O model=m``), a parameter is its flag (``label_column`` -> ``--label-column``), the
    frame is the input file, and no message asks for ``api_key=`` (the command line takes keys from the
    environment only).

    >>> cli_terms("the llm reranker needs model=... (for example model='gpt-4o-mini')")
    'the llm reranker needs -O model=... (for example -O model=gpt-4o-mini)'
    >>> cli_terms("dmxapi needs an API key: set DMXAPI_API_KEY or pass api_key=... to the reranker")
    'dmxapi needs an API key: set DMXAPI_API_KEY'
    >>> cli_terms("label_column 'rel' is not a column of the frame")
    "--label-column 'rel' is not a column of the input file"
    """
    message = message.replace(" or pass api_key=... to the reranker", "")
    message = _PARAMETER.sub(lambda m: f"-O {m.group(1)}={m.group(3) if m.group(3) is not None else '...'}", message)
    message = _FLAG.sub(lambda m: FLAGS[m.group(1)], message)
    message = re.sub(r"^metrics: ", "--metric: ", message)
    return message.replace("of the frame", "of the input file")
