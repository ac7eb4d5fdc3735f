"""A frame's relevance judgments, read once and checked: what :func:`rerankpd.evaluate` and
:func:`rerankpd.cascade_curve` score every ranking against (:func:`judgments` makes a :class:`Judged`).

Labels are graded (finite numbers >= 0; relevant means > 0) or booleans, a missing label meaning 0; ``qrels=``
adds the collection's judgments of documents the frame does not hold (see :func:`rerankpd.evaluate`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..core.options import boolean, one_of
from ..errors import ConfigurationError, warn_user
from .metrics import DEFAULT_METRICS, GAINS, Metric, parse_metric, per_query

__all__ = ["Judged", "judgments"]

logger = logging.getLogger(__name__)


def _labels(df: pd.DataFrame, label_column: Any) -> np.ndarray:
    if label_column not in df.columns:
        raise KeyError(
            f"label_column {label_column!r} is not a column of the frame; its columns are {list(df.columns)!r}"
        )
    series = df[label_column]
    try:
        values = pd.to_numeric(series.astype("float64") if series.dtype == bool else series, errors="raise")
    except (TypeError, ValueError):
        raise TypeError(
            f"label_column {label_column!r} must hold numbers >= 0 or booleans; it holds {series.dtype}"
        ) from None
    labels = np.asarray(values, dtype=np.float64)
    labels = np.where(np.isnan(labels), 0.0, labels)  # a missing label means not relevant
    infinite = np.flatnonzero(np.isinf(labels))
    if len(infinite):
        raise ValueError(
            f"label_column {label_column!r}: the row with index {df.index[infinite[0]]!r} has label "
            f"{labels[infinite[0]]:g}; labels must be finite numbers >= 0 (relevant means > 0)"
        )
    bad = np.flatnonzero(labels < 0)
    if len(bad):
        raise ValueError(
            f"label_column {label_column!r}: the row with index {df.index[bad[0]]!r} has label "
            f"{labels[bad[0]]:g}; labels must be >= 0 (relevant means > 0): map 'not relevant' "
            "grades to 0 first"
        )
    return labels


#: The largest label ``gain="exponential"`` takes: 2^label - 1 overflows a float64 from 2^1024 on.
MAX_EXPONENTIAL_LABEL = 1023.0


def _check_gain(labels: np.ndarray, index: pd.Index, gain: str, where: str) -> None:
    """Refuse a label whose gain is not a finite number (NaN nDCG otherwise), naming its row."""
    if gain != "exponential" or not len(labels):
        return
    big = np.flatnonzero(labels > MAX_EXPONENTIAL_LABEL)
    if len(big):
        raise ValueError(
            f"{where}: the row with index {index[big[0]]!r} has label {labels[big[0]]:g}, whose gain "
            f"2^label - 1 under gain='exponential' is not a finite number; labels up to "
            f"{MAX_EXPONENTIAL_LABEL:g} work (graded labels are usually 0-4), or use gain='linear'"
        )


def _query_codes(df: pd.DataFrame, query: str | None, query_column: Any) -> tuple[np.ndarray, list]:
    if query is not None:
        return np.zeros(len(df), dtype=np.int64), [query]
    codes, uniques = pd.factorize(df[query_column], use_na_sentinel=True)
    missing = int((codes < 0).sum())
    if missing:
        warn_user(f"evaluate: {missing} rows have no query in {query_column!r}; they are left out")
    return codes.astype(np.int64), list(uniques)


def _judgments(df, codes, labels, queries, qrels, column, id_column, gain) -> tuple[np.ndarray, np.ndarray]:
    """The judged set per query: the frame's rows, plus qrels rows whose document the frame does not hold."""
    if qrels is None:
        return codes, labels
    if not isinstance(qrels, pd.DataFrame) or qrels.shape[1] != 3:
        raise TypeError(
            "qrels must be a DataFrame of three columns: query, document (text, or id when id_column= is given), label"
        )
    q_labels = _labels(pd.DataFrame({"qrels label": qrels.iloc[:, 2]}, index=qrels.index), "qrels label")
    _check_gain(q_labels, qrels.index, gain, "qrels")
    qrels, q_labels = _distinct_judgments(qrels, q_labels)
    q_query, q_doc = qrels.iloc[:, 0], qrels.iloc[:, 1]
    key = df[id_column if id_column is not None else column]
    index = pd.Index(queries)
    q_codes = index.get_indexer(q_query)
    held = pd.MultiIndex.from_arrays([codes, key.to_numpy()])
    extra = (q_codes >= 0) & ~pd.MultiIndex.from_arrays([q_codes, q_doc.to_numpy()]).isin(held)
    return np.concatenate([codes, q_codes[extra]]), np.concatenate([labels, q_labels[extra]])


def _distinct_judgments(qrels: pd.DataFrame, labels: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """``qrels`` with each (query, document) judged once: a repeated row with the same label counts once (as in
    trec_eval); a document judged twice with different labels is refused, naming the rows."""
    pairs = pd.DataFrame(
        {"query": qrels.iloc[:, 0].to_numpy(), "doc": qrels.iloc[:, 1].to_numpy(), "label": labels}, index=qrels.index
    )
    repeated = pairs.duplicated(["query", "doc"], keep=False).to_numpy()
    if not repeated.any():
        return qrels, labels
    clashes = pairs[repeated].groupby(["query", "doc"], sort=False, dropna=False)["label"].nunique()
    clashes = clashes[clashes > 1]
    if len(clashes):
        query, doc = clashes.index[0]
        rows = pairs.index[repeated & (pairs["query"] == query).to_numpy() & (pairs["doc"] == doc).to_numpy()]
        raise ValueError(
            f"qrels judge document {doc!r} of query {query!r} more than once with different labels "
            f"(rows with index {', '.join(map(repr, rows.tolist()))}; {len(clashes)} such documents "
            "in all); keep one judgment per query and document"
        )
    kept = ~pairs.duplicated(["query", "doc"], keep="first").to_numpy()
    logger.info("evaluate: %d repeated qrels rows counted once", int((~kept).sum()))
    return qrels[kept], labels[kept]


class Judged:
    """A frame's judgments, ready to score any ranking of its rows: the one place :func:`evaluate` and
    :func:`rerankpd.cascade_curve` compute metrics (so their figures agree exactly). Made by :func:`judgments`.

    ``values(scores)`` is the (queries x metrics) array of one ranking, given one score per row (higher
    first, NaN last); ``names``, ``queries`` and ``n_relevant`` describe its rows and columns.
    """

    def __init__(
        self,
        parsed: list[Metric],
        codes: np.ndarray,
        queries: list,
        labels: np.ndarray,
        judged: tuple[np.ndarray, np.ndarray],
        gain: str,
        skip_empty: bool,
        tie_ids: np.ndarray | None = None,
    ) -> None:
        self.parsed, self.names = parsed, list(dict.fromkeys(m.name for m in parsed))
        self._codes, self._labels, self._judged, self._gain = codes, labels, judged, gain
        self._tie_ids = tie_ids
        judged_codes, judged_labels = judged
        n_relevant = np.bincount(
            judged_codes[judged_codes >= 0], weights=judged_labels[judged_codes >= 0] > 0, minlength=len(queries)
        )
        self._n_queries = len(queries)
        self._keep = n_relevant > 0 if skip_empty else np.ones(len(queries), dtype=bool)
        self.queries = [q for q, k in zip(queries, self._keep) if k]
        self.n_relevant = n_relevant[self._keep]

    def values(self, scores: np.ndarray) -> np.ndarray:
        """One ranking's per-query values: a float64 array of (queries x metrics)."""
        by_metric = per_query(
            self.parsed,
            self._codes,
            scores,
            self._labels,
            n_queries=self._n_queries,
            judged=self._judged,
            gain=self._gain,
            tie_ids=self._tie_ids,
        )
        table = np.column_stack([by_metric[m] for m in self.names]) if self.names else np.empty((self._n_queries, 0))
        return table[self._keep]


def judgments(
    df: pd.DataFrame,
    query: str | None = None,
    column: Any = "text",
    *,
    query_column: Any = None,
    label_column: Any,
    metrics: Sequence[str] = DEFAULT_METRICS,
    qrels: pd.DataFrame | None = None,
    id_column: Any = None,
    gain: str = "linear",
    skip_empty: bool = False,
    text_needed: bool = True,
) -> Judged:
    """Check :func:`evaluate`'s judgment arguments and read them once (see :class:`Judged`)."""
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"evaluate expects a pandas DataFrame, got {type(df).__name__}")
    if (query is None) == (query_column is None):
        raise ConfigurationError("give exactly one of query (one query for every row) and query_column")
    text_needed = text_needed or (qrels is not None and id_column is None)
    for name, value in (
        ("column", column if text_needed else None),
        ("query_column", query_column),
        ("id_column", id_column),
    ):
        if value is not None and value not in df.columns:
            raise KeyError(f"{name} {value!r} is not a column of the frame; its columns are {list(df.columns)!r}")
    one_of("gain", gain, GAINS)
    skip_empty = boolean("skip_empty", skip_empty)
    if isinstance(metrics, str):
        metrics = [metrics]
    parsed = [parse_metric(m) for m in metrics]
    labels = _labels(df, label_column)
    _check_gain(labels, df.index, gain, f"label_column {label_column!r}")
    codes, queries = _query_codes(df, query, query_column)
    judged = _judgments(df, codes, labels, queries, qrels, column, id_column, gain)
    tie_ids = None if id_column is None else df[id_column].to_numpy(dtype=object)
    return Judged(parsed, codes, queries, labels, judged, gain, skip_empty, tie_ids)
