"""Pure helpers behind :func:`rerankpd.rerank`: pairs, dedupe, the batching plan, scatter, ranks, order.

Nothing here touches the network, a cache, a progress bar or a DataFrame: inputs and outputs are plain
sequences and NumPy arrays, so the invariants (every row scored exactly once, the output keeps every input
row) are tested exhaustively in ``tests/test_pairs.py``.

Examples
--------
>>> p = build_pairs("q", ["a", None, "a", "b"])
>>> p.row_pair.tolist(), p.texts
([0, -1, 0, 1], ['a', 'b'])
>>> plan_batches(range(p.n_pairs), p.pair_group, batch_size=1)
[[0], [1]]
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .core.options import whole
from .core.tokens import budget_spans

__all__ = [
    "Factorized",
    "Pairs",
    "build_pairs",
    "plan_batches",
    "rank_within_groups",
    "scatter",
    "sort_order",
    "take_texts",
    "top_n_mask",
]


@dataclass(frozen=True)
class Pairs:
    """The unique (query, text) pairs of a frame and how rows map onto them.

    Attributes
    ----------
    queries, texts
        The distinct queries in order of first appearance, and the distinct texts likewise (``texts`` is
        a list, or a pandas Index of Arrow-backed strings when built from a factorized text column; read
        many at once with :func:`take_texts`).
    pair_group, pair_text
        For each unique pair, the index of its query in ``queries`` and of its text in ``texts``.
        Pairs are numbered in order of their first row.
    row_pair
        For each row, its pair's number, or -1 when the row has no pair (missing text or query).
    row_group
        For each row, its query's index in ``queries``, or -1 when the row's query is missing.
    """

    queries: Sequence[str]
    texts: Sequence[str]
    pair_group: np.ndarray
    pair_text: np.ndarray
    row_pair: np.ndarray
    row_group: np.ndarray

    @property
    def n_pairs(self) -> int:
        return len(self.pair_group)

    def pair(self, i: int) -> tuple[str, str]:
        """The (query, text) of pair ``i``."""
        return self.queries[self.pair_group[i]], self.texts[self.pair_text[i]]


@dataclass(frozen=True)
class Factorized:
    """A column already factorized: each row's code into ``uniques`` (-1 where missing or blank).

    ``uniques`` may be a pandas Index of Arrow-backed strings: a Python str is then made per request
    (:func:`take_texts`), not per distinct text.
    """

    codes: np.ndarray
    uniques: Sequence[str]

    def __len__(self) -> int:
        return len(self.codes)


def _codes(values: Sequence[str | None] | Factorized) -> tuple[np.ndarray, Sequence[str]]:
    if isinstance(values, Factorized):
        return values.codes, values.uniques
    codes, uniques = pd.factorize(np.asarray(values, dtype=object), use_na_sentinel=True)
    return codes.astype(np.int64, copy=False), list(uniques)


def build_pairs(queries: str | Sequence[str | None] | Factorized, texts: Sequence[str | None] | Factorized) -> Pairs:
    """Deduplicate rows into unique (query, text) pairs.

    Parameters
    ----------
    queries
        One query for every row, or a sequence with each row's query (None where missing).
    texts
        Each row's text, None where missing or blank (those rows get no pair and are never sent).
        Either may also be a :class:`Factorized` column (the pipeline's, made without a str per row).

    Returns
    -------
    Pairs
    """
    n = len(texts)
    text_codes, text_uniques = _codes(texts)
    if isinstance(queries, str):  # one query: the pairs are the distinct texts, already in first-row order
        n_texts = len(text_uniques)
        return Pairs(
            queries=[queries],
            texts=text_uniques,
            pair_group=np.zeros(n_texts, dtype=np.int64),
            pair_text=np.arange(n_texts, dtype=np.int64),
            row_pair=text_codes,
            row_group=np.zeros(n, dtype=np.int64),
        )
    else:
        if len(queries) != n:
            raise ValueError(f"queries has {len(queries)} entries but texts has {n}")
        query_codes, query_uniques = _codes(queries)
    valid = (text_codes >= 0) & (query_codes >= 0)
    combined = query_codes[valid] * max(len(text_uniques), 1) + text_codes[valid]
    pair_of_valid, unique_combined = pd.factorize(combined)
    row_pair = np.full(n, -1, dtype=np.int64)
    row_pair[valid] = pair_of_valid
    width = max(len(text_uniques), 1)
    unique_combined = np.asarray(unique_combined, dtype=np.int64)
    return Pairs(
        queries=query_uniques,
        texts=text_uniques,
        pair_group=unique_combined // width,
        pair_text=unique_combined % width,
        row_pair=row_pair,
        row_group=query_codes,
    )


def take_texts(texts: Sequence[str], positions: Sequence[int] | np.ndarray) -> list[str]:
    """``[texts[i] for i in positions]`` as Python strings, fast for a list and for a pandas Index.

    >>> take_texts(["a", "b", "c"], [2, 0]), take_texts(pd.Index(["a", "b"], dtype="string"), [1])
    (['c', 'a'], ['b'])
    """
    if not isinstance(texts, pd.Index):
        return [texts[i] for i in positions]
    return texts.array.take(np.asarray(positions, dtype=np.int64)).tolist()  # a pandas Index of str


def plan_batches(
    pair_ids: Iterable[int],
    pair_group: np.ndarray,
    batch_size: int | None,
    pair_tokens: np.ndarray | None = None,
    max_tokens: int | None = None,
) -> list[list[int]]:
    """Group pairs by query and cut each group into requests of at most ``batch_size`` pairs and, with
    ``pair_tokens`` (each pair's query plus document tokens) and ``max_tokens``, within that token budget
    (:func:`rerankpd.core.tokens.budget_spans`, the one rule).

    Groups come in order of their first pair; within a group pairs keep their order.
    ``batch_size=None`` puts each query's pairs in one request (token budget permitting).
    """
    batch_size = whole("batch_size", batch_size, minimum=1, allow_none=True)
    by_group: dict[int, list[int]] = {}
    for pair_id in pair_ids:
        by_group.setdefault(int(pair_group[pair_id]), []).append(int(pair_id))
    batches: list[list[int]] = []
    for members in by_group.values():
        costs = [int(pair_tokens[m]) for m in members] if pair_tokens is not None and max_tokens else [0] * len(members)
        batches.extend(members[a:b] for a, b in budget_spans(costs, batch_size, max_tokens))
    return batches


def scatter(pair_values: np.ndarray, row_pair: np.ndarray, fill=np.nan) -> np.ndarray:
    """Each row's value from its pair's value; rows with no pair (-1) get ``fill``."""
    pair_values = np.asarray(pair_values)
    out = np.empty(len(row_pair), dtype=np.result_type(pair_values.dtype, np.asarray(fill).dtype))
    has_pair = row_pair >= 0
    out[has_pair] = pair_values[row_pair[has_pair]]
    out[~has_pair] = fill
    return out


def rank_within_groups(scores: np.ndarray, row_group: np.ndarray) -> np.ndarray:
    """Rank rows by descending score within each group: 1 is best, 0 means no rank (NaN score or no group).

    Ties are broken by row position, so ranks are a permutation of 1..k within each group.
    """
    scores = np.asarray(scores, dtype=np.float64)
    n = len(scores)
    ranks = np.zeros(n, dtype=np.int64)
    rankable = ~np.isnan(scores) & (row_group >= 0)
    rows = np.flatnonzero(rankable)
    if len(rows) == 0:
        return ranks
    groups = row_group[rows]
    if groups[0] == groups[-1] and (groups == groups[0]).all():  # one query: a stable sort by score will do
        order = rows[np.argsort(-scores[rows], kind="stable")]
        ranks[order] = np.arange(1, len(order) + 1)
        return ranks
    order = rows[np.lexsort((rows, -scores[rows], groups))]
    groups_sorted = row_group[order]
    starts = np.r_[0, np.flatnonzero(np.diff(groups_sorted)) + 1]
    run_lengths = np.diff(np.r_[starts, len(order)])
    position = np.arange(len(order)) - np.repeat(starts, run_lengths)
    ranks[order] = position + 1
    return ranks


def top_n_mask(ranks: np.ndarray, top_n: int | None) -> np.ndarray:
    """Rows to keep: all when ``top_n`` is None, else rows ranked 1..top_n within their group."""
    if top_n is None:
        return np.ones(len(ranks), dtype=bool)
    return (ranks >= 1) & (ranks <= top_n)


def sort_order(row_group: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """The row order of a sorted result: by query (first appearance), then rank, unranked rows last.

    Rows without a query come after every group; ties keep input order.
    """
    n = len(ranks)
    big = np.iinfo(np.int64).max
    rank_key = np.where(ranks >= 1, ranks, big)
    if n == 0 or row_group.min() == row_group.max():  # one query (or none): rank order alone, stably
        return np.argsort(rank_key, kind="stable")
    group_key = np.where(row_group >= 0, row_group, big)
    return np.lexsort((np.arange(n), rank_key, group_key))
