"""Reading a frame's text columns: each row's code into the column's distinct texts, without a str per row.

:func:`text_cells` is how the pipeline reads the text column and the query column. Missing and blank
cells (blank exactly as ``not text.strip()`` decides it) get code -1: they have no pair and are never
sent. A cell that is not text, or text that is not valid Unicode, raises TypeError naming the column
and the row's index label.

Examples
--------
>>> import pandas as pd
>>> cells = text_cells(pd.Series(["a", None, " ", "a", "b"]), "text")
>>> cells.codes.tolist(), list(cells.uniques)
([0, -1, -1, 0, 1], ['a', 'b'])
"""

from __future__ import annotations

from typing import Any, NoReturn

import numpy as np
import pandas as pd

from ..pairs import Factorized

__all__ = ["BLANK", "WHITESPACE", "check_unicode", "text_cells"]

#: Python's whitespace characters (those for which ``str.isspace()`` is True), listed rather than found
#: by scanning every code point at import; ``tests/test_columns.py`` checks the list against that scan.
WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
#: A blank text, exactly as ``not text.strip()`` decides it, as a regular expression (Python's and Arrow's).
BLANK = "[" + WHITESPACE + "]*"


def check_unicode(text: str, what: str) -> None:
    """Raise TypeError when ``text`` cannot be encoded as UTF-8 (a lone surrogate): no service can take it.

    ``what`` names the text in the message (``"query"``, ``"column 'text': the row with index 3"``).

    >>> check_unicode("ok", "query")
    >>> check_unicode("bad \\ud800", "query")
    Traceback (most recent call last):
    ...
    TypeError: query is not valid Unicode (a lone surrogate '\\ud800' at position 4); decode the source text with errors='replace' or drop it
    """
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise TypeError(
            f"{what} is not valid Unicode (a lone surrogate {text[exc.start]!r} at position "
            f"{exc.start}); decode the source text with errors='replace' or drop it"
        ) from None


def text_cells(series: pd.Series, column: Any) -> Factorized:
    """The column's distinct texts and each row's code into them (-1 where missing or blank).

    Only the distinct values become Python strings, so a large column of repeated or Arrow-backed text
    costs a code per row, not a string object per row. TypeError names the first row that is not text.
    """
    try:
        codes, uniques = pd.factorize(series, use_na_sentinel=True)
    except TypeError:  # unhashable cells (lists, dicts): find and name the first one
        for label, value in series.items():
            if not isinstance(value, str) and not _is_missing(value):
                _not_text(column, label, value)
        raise AssertionError("unreachable") from None  # pragma: no cover
    codes = np.asarray(codes, dtype=np.int64)
    if isinstance(series.dtype, pd.StringDtype):  # every value is a str: check blanks without making one
        values = pd.Index(uniques)
        keep = ~np.asarray(values.str.fullmatch(BLANK), dtype=bool)
        return _without_blanks(codes, values if keep.all() else values[keep], keep)
    values = np.asarray(uniques, dtype=object)
    keep = np.ones(len(values), dtype=bool)
    for j, value in enumerate(values):
        if type(value) is not str:
            if not isinstance(value, str):
                _not_text(column, _first_label(series, codes, j), value)
            value = values[j] = str(value)
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate: name the row
                check_unicode(value, f"column {column!r}: the row with index {_first_label(series, codes, j)!r}")
        if not value.strip():
            keep[j] = False
    return _without_blanks(codes, values[keep].tolist(), keep)


def _without_blanks(codes: np.ndarray, uniques: Any, keep: np.ndarray) -> Factorized:
    if not keep.all():  # blank texts: their rows get code -1, like missing ones
        remap = np.where(keep, np.cumsum(keep) - 1, -1)
        codes = np.where(codes >= 0, remap[np.maximum(codes, 0)], -1)
    return Factorized(codes, uniques)


def _first_label(series: pd.Series, codes: np.ndarray, j: int) -> Any:
    return series.index[int(np.flatnonzero(codes == j)[0])]


def _is_missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _not_text(column: Any, label: Any, value: Any) -> NoReturn:
    raise TypeError(
        f"column {column!r} must hold text (str) or missing values; the row with index "
        f"{label!r} holds {type(value).__name__} {value!r:.60}"
    )
