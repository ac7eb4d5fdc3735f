"""Checking the arguments of :func:`rerankpd.rerank` (and ``estimate``, ``scores``, ``rerankpd.dask``).

One function, :func:`check_arguments`, run before anything is read or sent, so a bad call fails at once
with an error naming the parameter, the column or the value: ``KeyError`` for a column the frame does not
have, ``TypeError`` for a value of the wrong kind, ``ValueError`` (a
:class:`~rerankpd.errors.ConfigurationError` for options) for a value out of range.

Examples
--------
>>> import pandas as pd
>>> df = pd.DataFrame({"text": ["a"]})
>>> check_arguments(df, "q", "text", None, 3, "raise")
>>> check_arguments(df, "q", "body", None, None, "raise")
Traceback (most recent call last):
...
KeyError: "column 'body' is not a column of the frame; its columns are ['text']"
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from ..core.options import one_of, whole
from .columns import check_unicode

__all__ = ["ERRORS", "check_arguments"]

#: The values of ``errors=``.
ERRORS = ("raise", "coerce")


def check_arguments(df: Any, query: Any, column: Any, query_column: Any, top_n: Any, errors: Any) -> None:
    """Raise an error naming the parameter when the arguments of a rerank call cannot work."""
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"rerank expects a pandas DataFrame, got {type(df).__name__}")
    one_of("errors", errors, ERRORS)
    whole("top_n", top_n, minimum=1, allow_none=True)
    if (query is None) == (query_column is None):
        raise ValueError(
            "give exactly one of query (one query for every row) and query_column "
            "(a column holding each row's query)" + ("; got both" if query is not None else "; got neither")
        )
    if query is not None:
        if not isinstance(query, str):
            raise ValueError(
                f"query must be a string, got {type(query).__name__}; for a query per row use query_column="
            )
        if not query.strip():
            raise ValueError("query is empty")
        check_unicode(query, "query")
    if column is None:
        raise ValueError("column is None; name the column holding the text to score, e.g. column='text'")
    for name, value in (("column", column), ("query_column", query_column)):
        if value is not None:
            _check_column(df, name, value)
    if query_column is not None and query_column == column:
        raise ValueError(f"query_column and column are both {column!r}; they must be different columns")


def _check_column(df: pd.DataFrame, name: str, value: Any) -> None:
    try:
        present = value in df.columns
    except TypeError:
        raise TypeError(f"{name} must be one column label, got {type(value).__name__} {value!r}") from None
    if not present:
        raise KeyError(f"{name} {value!r} is not a column of the frame; its columns are {list(df.columns)!r}")
    if not isinstance(df[value], pd.Series):
        raise ValueError(
            f"{name} {value!r} names {df[value].shape[1]} columns of the frame "
            "(its column labels repeat); give each column a unique name first"
        )
