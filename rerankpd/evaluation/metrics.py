"""Ranking metrics for many queries at once, as trec_eval defines them, computed with numpy.

Every function here is pure: arrays in, arrays out, one value per query, vectorised over all rows of all
queries (a few sorts and ``bincount`` calls; no Python loop per row or per query).

Definitions (what trec_eval computes; ``rel`` is a row's label, relevant means ``rel > 0``):

Order within a query
    Score descending; rows with a missing (NaN) score rank last, in input order. Ties: given document ids
    (``tie_ids``; ``evaluate(..., id_column=...)`` gives them), by document id descending, compared as
    strings, which is trec_eval's rule (and so ir-measures' and pytrec_eval's); without ids, by input
    position (the first-stage order), so a ranking with constant scores reproduces the input order exactly.
    The second rule is rerankpd's own: on a ranking with ties it can differ from trec_eval's numbers.
``ndcg@k``
    DCG@k / ideal DCG@k, with DCG@k = sum over ranks r <= k of gain(rel_r) / log2(r + 1); the gain is the
    label (``gain="linear"``, trec_eval's) or 2^rel - 1 (``gain="exponential"``). The ideal DCG sorts the
    query's judgments (the frame's labels, plus ``qrels`` when given) by label. 0 when nothing is relevant.
``mrr@k``
    1 / rank of the first relevant row within the top k, else 0 (reciprocal rank; MRR is its mean).
``map`` (``map@k``)
    Average precision: the sum of precision@r over the ranks r (<= k) of relevant rows, divided by the
    number of relevant judgments of the query (its recall base), 0 when there is none.
``recall@k``
    Relevant rows in the top k / relevant judgments of the query (0 when there is none).
``precision@k``
    Relevant rows in the top k / k, even when the query has fewer than k rows (as trec_eval does).

Without ``@k`` a measure covers the whole ranking (``precision`` needs a k).

Examples
--------
>>> import numpy as np
>>> codes = np.array([0, 0, 0, 1, 1])                 # two queries
>>> scores = np.array([0.1, 0.9, 0.5, 0.2, 0.2])      # query 1 ties: input order decides
>>> labels = np.array([1, 0, 2, 0, 1])
>>> values = per_query(["mrr@10", "precision@2", "recall@10"], codes, scores, labels)
>>> values["mrr@10"].tolist(), values["precision@2"].tolist(), values["recall@10"].tolist()
([0.5, 0.5], [0.5, 0.5], [1.0, 1.0])
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["DEFAULT_METRICS", "GAINS", "Metric", "parse_metric", "ranked_order", "per_query"]

DEFAULT_METRICS = ("ndcg@10", "mrr@10", "map", "recall@10", "precision@10")
GAINS = ("linear", "exponential")

_MEASURES = {
    "ndcg": "ndcg",
    "mrr": "mrr",
    "rr": "mrr",
    "map": "map",
    "ap": "map",
    "recall": "recall",
    "r": "recall",
    "precision": "precision",
    "p": "precision",
}
_SPEC = re.compile(r"^\s*([a-z]+)\s*(?:@\s*(\d+))?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Metric:
    """One parsed metric: ``measure`` (ndcg, mrr, map, recall, precision) and its cutoff ``k`` (or None)."""

    measure: str
    k: int | None

    @property
    def name(self) -> str:
        """The canonical name, e.g. ``ndcg@10`` or ``map``."""
        return self.measure if self.k is None else f"{self.measure}@{self.k}"


def parse_metric(text: str) -> Metric:
    """Read a metric name: ``ndcg@10``, ``mrr@10``, ``map``, ``recall@100``, ``precision@5`` (also ``ap``,
    ``rr``, ``r@k``, ``p@k``; case-insensitive).

    >>> parse_metric("nDCG@10").name, parse_metric("AP").name, parse_metric("P@5").name
    ('ndcg@10', 'map', 'precision@5')
    """
    from ..errors import ConfigurationError

    match = _SPEC.match(text) if isinstance(text, str) else None
    measure = _MEASURES.get(match.group(1).lower()) if match else None
    if measure is None:
        raise ConfigurationError(
            f"metrics: unknown metric {text!r}; use ndcg@k, mrr@k, map, recall@k or precision@k (for example 'ndcg@10')"
        )
    assert match is not None  # the measure was read from it
    k = int(match.group(2)) if match.group(2) else None
    if k is not None and k < 1:
        raise ConfigurationError(f"metrics: {text!r} needs a cutoff k >= 1")
    if measure == "precision" and k is None:
        raise ConfigurationError(f"metrics: {text!r} needs a cutoff, for example 'precision@10'")
    return Metric(measure, k)


def ranked_order(
    query_codes: np.ndarray, scores: np.ndarray, tie_ids: Sequence | np.ndarray | None = None
) -> np.ndarray:
    """Row positions sorted by query code, then score descending, missing scores last; ties by document id
    descending (as strings, trec_eval's rule) when ``tie_ids`` are given, else by position.

    >>> ranked_order(np.array([0, 0, 0, 0]), np.array([1.0, np.nan, 3.0, 1.0])).tolist()
    [2, 0, 3, 1]
    >>> ranked_order(np.array([0, 0, 0, 0]), np.array([1.0, np.nan, 3.0, 1.0]), ["a", "b", "c", "d"]).tolist()
    [2, 3, 0, 1]
    """
    scores = np.asarray(scores, dtype=np.float64)
    missing = np.isnan(scores)
    key = np.where(missing, 0.0, -scores)
    ties = [np.arange(len(scores))]
    if tie_ids is not None:
        ids = np.array([str(i) for i in tie_ids], dtype=object)
        if len(ids) != len(scores):
            raise ValueError(f"tie_ids and scores differ in length: {len(ids)}, {len(scores)}")
        ties.append(-np.unique(ids, return_inverse=True)[1].reshape(-1))  # code point order: strcmp on UTF-8
    return np.lexsort((*ties, key, missing, np.asarray(query_codes)))


def _gain(labels: np.ndarray, gain: str) -> np.ndarray:
    return labels if gain == "linear" else np.exp2(labels) - 1.0


def _ranks(sorted_codes: np.ndarray, n_queries: int) -> np.ndarray:
    """1-based rank of each row of a code-sorted array within its query."""
    starts = np.searchsorted(sorted_codes, np.arange(n_queries))
    return np.arange(1, len(sorted_codes) + 1) - starts[sorted_codes]


def _cut(ranks: np.ndarray, k: int | None) -> np.ndarray | bool:
    return True if k is None else ranks <= k


def per_query(
    metrics: Iterable[str | Metric],
    query_codes: Sequence[int] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    labels: Sequence[float] | np.ndarray,
    *,
    n_queries: int | None = None,
    judged: tuple[np.ndarray, np.ndarray] | None = None,
    gain: str = "linear",
    tie_ids: Sequence | np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Each metric's value for every query: ``{name: float64 array of n_queries}``.

    Parameters
    ----------
    metrics
        Metric names (see :func:`parse_metric`) or :class:`Metric` objects.
    query_codes
        Each row's query, an integer in ``0 .. n_queries - 1``; rows with a negative code are left out.
    scores
        Each row's score (higher ranks first; NaN ranks last).
    labels
        Each row's relevance label (>= 0; relevant means > 0).
    n_queries
        How many queries (default: the largest code + 1); a query with no row scores 0.
    judged
        ``(codes, labels)`` of every judgment of each query, for the ideal DCG and the number of relevant
        documents (the recall base). Default: the rows themselves. Give it to count relevant documents
        the ranking does not hold (the collection's judgments).
    gain
        ``"linear"`` (the label, trec_eval's) or ``"exponential"`` (2^label - 1) for nDCG.
    tie_ids
        Each row's document id: equal scores are ordered by id descending, as trec_eval orders them.
        None: by input position (see the module notes).

    Examples
    --------
    >>> v = per_query(["ndcg@3"], [0, 0, 0], [3.0, 2.0, 1.0], [0, 1, 1])
    >>> round(float(v["ndcg@3"][0]), 4)
    0.6934
    """
    parsed = [m if isinstance(m, Metric) else parse_metric(m) for m in metrics]
    codes = np.asarray(query_codes, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    if not len(codes) == len(scores) == len(labels):
        raise ValueError(f"query_codes, scores and labels differ in length: {len(codes)}, {len(scores)}, {len(labels)}")
    if n_queries is None:
        n_queries = int(codes.max()) + 1 if len(codes) else 0
    keep = codes >= 0
    if tie_ids is not None:
        tie_ids = np.asarray(tie_ids, dtype=object)
        if len(tie_ids) != len(codes):
            raise ValueError(f"tie_ids and query_codes differ in length: {len(tie_ids)}, {len(codes)}")
    if not keep.all():
        codes, scores, labels = codes[keep], scores[keep], labels[keep]
        tie_ids = None if tie_ids is None else tie_ids[keep]
    order = ranked_order(codes, scores, tie_ids)
    group, label = codes[order], labels[order]
    rank = _ranks(group, n_queries)
    relevant = label > 0
    judged_codes, judged_labels = (
        (codes, labels)
        if judged is None
        else (np.asarray(judged[0], dtype=np.int64), np.asarray(judged[1], dtype=np.float64))
    )
    n_relevant = np.bincount(
        judged_codes[judged_codes >= 0], weights=judged_labels[judged_codes >= 0] > 0, minlength=n_queries
    )
    out: dict[str, np.ndarray] = {}
    ideal_cache: dict[int | None, np.ndarray] = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        for metric in parsed:
            top = _cut(rank, metric.k)
            if metric.measure == "ndcg":
                gains = _gain(label, gain)
                dcg = np.bincount(group, weights=top * gains / np.log2(rank + 1.0), minlength=n_queries)
                if metric.k not in ideal_cache:
                    ideal_cache[metric.k] = _ideal_dcg(judged_codes, judged_labels, n_queries, metric.k, gain)
                ideal = ideal_cache[metric.k]
                value = np.where(ideal > 0, dcg / ideal, 0.0)
            elif metric.measure == "mrr":
                hits = np.flatnonzero(relevant & top)
                first_query, first = np.unique(group[hits], return_index=True)
                value = np.zeros(n_queries)
                value[first_query] = 1.0 / rank[hits[first]]
            elif metric.measure == "map":
                seen = np.cumsum(relevant)
                before = np.concatenate([[0], seen])[np.searchsorted(group, np.arange(n_queries))]
                precision_here = (seen - before[group]) / rank
                total = np.bincount(group, weights=relevant * top * precision_here, minlength=n_queries)
                value = np.where(n_relevant > 0, total / n_relevant, 0.0)
            else:
                found = np.bincount(group, weights=relevant & top, minlength=n_queries)
                if metric.measure == "recall":
                    value = np.where(n_relevant > 0, found / n_relevant, 0.0)
                else:
                    assert metric.k is not None  # parse_metric gives precision a cutoff
                    value = found / metric.k
            out[metric.name] = value.astype(np.float64, copy=False)
    return out


def _ideal_dcg(codes: np.ndarray, labels: np.ndarray, n_queries: int, k: int | None, gain: str) -> np.ndarray:
    keep = (codes >= 0) & (labels > 0)
    codes, labels = codes[keep], labels[keep]
    order = np.lexsort((-labels, codes))
    group, label = codes[order], labels[order]
    rank = _ranks(group, n_queries)
    weights = _cut(rank, k) * _gain(label, gain) / np.log2(rank + 1.0)
    return np.bincount(group, weights=weights, minlength=n_queries)
