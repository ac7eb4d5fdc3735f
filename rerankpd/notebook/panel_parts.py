"""Private: the panel's pure parts, no widget state: the query-column choice :data:`ONE_QUERY`, the text
columns of a frame, checking the panel's arguments as :func:`rerankpd.rerank` would, and the text of the
status line (:func:`_summary_html`, :func:`_plain_error`).

:mod:`rerankpd.notebook.panel` (the :class:`~rerankpd.RerankPanel` itself) imports them; ``ONE_QUERY`` is
public there.
"""

from __future__ import annotations

import html
import inspect
from typing import Any

import pandas as pd

from ..core.options import whole
from ..errors import MissingDependencyError
from .display import score_note

_ALL_ROWS_LABEL = "(one query for every row)"


class _NoQueryColumn:
    """The query-column choice that means "one query for every row" (ipywidgets reads None as no choice)."""

    def __repr__(self) -> str:
        return "<one query for every row>"


ONE_QUERY = _NoQueryColumn()
_EXPORT_FORMATS = ("csv", "parquet")


def _widgets():
    try:
        import ipywidgets
    except ImportError as exc:
        raise MissingDependencyError("the rerank panel needs ipywidgets: pip install ipywidgets") from exc
    return ipywidgets


def _text_columns(df: pd.DataFrame) -> list:
    """Columns that hold text: object or string dtype with at least one str among their values."""
    found = []
    for name in df.columns:
        series = df[name]
        if isinstance(series, pd.DataFrame):  # duplicated column label
            continue
        if pd.api.types.is_string_dtype(series.dtype) or series.dtype == object:
            sample = series.dropna().head(50)
            if len(sample) and any(isinstance(v, str) for v in sample):
                found.append(name)
    return found


def _plain_error(exc: BaseException) -> str:
    """One line a person can act on: the error's own message, no traceback."""
    message = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, KeyError) and message.startswith(("'", '"')) and message.endswith(("'", '"')):
        message = message[1:-1]
    kind = type(exc).__name__
    return f"{kind}: {message}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _rerank_parameters() -> set[str]:
    from ..api import rerank

    return {name for name in inspect.signature(rerank).parameters if not name.startswith("_")}


_TOP_N_HINT = "0 = all rows"


def _check_arguments(
    df: Any, column: Any, query_column: Any, top_n: Any, max_rows: Any, options: dict
) -> tuple[Any, int | None]:
    """Check the panel's arguments as :func:`rerankpd.rerank` would; return the text column and top_n."""
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"the panel needs a pandas DataFrame, got {type(df).__name__}")
    allowed = _rerank_parameters() - {"df", "query", "column", "query_column", "top_n", "reranker", "progress"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise TypeError(
            f"unknown panel option(s) {', '.join(map(repr, unknown))}; the panel passes on "
            f"only {', '.join(sorted(allowed))} to rerankpd.rerank"
        )
    whole("max_rows", max_rows, minimum=1)
    for name, value in (("column", column), ("query_column", query_column)):
        if value is not None and value not in df.columns:
            raise KeyError(f"{name} {value!r} is not a column of the frame; its columns are {list(df.columns)!r}")
    if column is None:
        text_columns = _text_columns(df)
        if not text_columns:
            raise ValueError(f"the frame has no text column to rank; its columns are {list(df.columns)!r}")
        column = "text" if "text" in text_columns else text_columns[0]
    return column, whole("top_n", top_n, minimum=1, allow_none=True)


def _summary_html(info: dict) -> str:
    """The status line after a run: reranker, model, rows, cache hits, requests, tokens, time."""
    usage = info.get("usage") or {}
    tokens = usage.get("total_tokens")
    if tokens is None and usage:
        tokens = sum(v for k, v in usage.items() if "token" in k and k != "total_tokens") or None
    model = info.get("model")
    name = f"<b>{html.escape(str(info.get('reranker', '?')))}</b>"
    parts = [
        name + (f" ({html.escape(str(model))})" if model else ""),
        f"{info.get('rows', 0) - info.get('missing', 0) - (info.get('failed') or 0)} of {info.get('rows', 0)} "
        "rows scored",
        f"{info.get('from_cache', 0)} pairs from cache",
        _plural(info.get("attempts") or info.get("requests", 0), "request"),
        f"{tokens:,} tokens" if tokens is not None else "tokens: n/a",
        f"{info.get('seconds', 0.0):.2f} s",
    ]
    if info.get("failed"):
        parts.append(f"{info['failed']} rows failed (see rerank_error)")
    line = " \u00b7 ".join(parts)
    note = score_note(info.get("reranker"))
    if note:
        line += f'<br><span class="rerankpd-score-note" style="color:#777">{html.escape(note)}</span>'
    return line
