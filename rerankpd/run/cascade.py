"""Cascades: a cheap prefilter ranks every row, only the best ``candidates`` of each query go to the reranker.

``df.rerank(query, reranker="dmxapi", prefilter="bm25", candidates=100)`` scores every row with the
prefilter (a reranker name or object, or a column of scores the frame already has), sends only each query's
``candidates`` best rows to the main reranker, and ranks the others after them in prefilter order:

``rerank_prefilter_score``
    The prefilter's score, for every row.
``rerank_score``
    The main reranker's score for the candidates; NaN below them.
``rerank_rank``
    Covers every row with text: the candidates by the main score, then the rest by the prefilter's.

With ``errors="coerce"``, a row whose prefilter request failed takes a candidate place left free by the
rows the prefilter scored (so with ``candidates`` at least a query's row count the cascade ranks like a
plain run); one that finds no place is marked failed as in a plain run (``rerank_error`` says
``prefilter <name>: ...``, ``attrs["rerank"]["failed"]`` counts it, a warning says how many) and ranked last.

``top_n <= candidates`` then never pays for a row it drops. :func:`rerankpd.cascade_curve`
(:mod:`rerankpd.evaluation.cascade_curve`) measures, on a labelled frame, what each candidate count costs and
keeps: the curve an analyst reads to choose ``candidates``.

Examples
--------
>>> import pandas as pd, rerankpd
>>> df = pd.DataFrame({"text": ["cold hands", "a cold winter", "stock prices", "cold"], "bm": [3, 2, 1, 0]})
>>> out = rerankpd.rerank(df, "cold", reranker="bm25", prefilter="bm", candidates=2, cache=False,
...                       progress=False)
>>> out.index.tolist(), out["rerank_score"].notna().tolist()
([0, 1, 2, 3], [True, True, False, False])
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from ..core.options import whole
from ..errors import RunCancelled, warn_user
from ..pairs import build_pairs, rank_within_groups, sort_order, top_n_mask
from ..rerankers.base import describe
from .estimate import estimate, reranker_for_estimate
from .pipeline import ERROR, RANK, SCORE, rerank
from .progress import ProgressCallback

__all__ = ["CascadeEstimate", "estimate_cascade", "rerank_cascade"]

logger = logging.getLogger(__name__)

#: The prefilter's score of every row, beside the pipeline's columns (:data:`rerankpd.run.pipeline.SCORE`, ...).
PREFILTER = "rerank_prefilter_score"


def _cells(values: Any) -> list[str | None]:
    return [v if isinstance(v, str) and v.strip() else None for v in values]


def _groups(df: pd.DataFrame, query: str | None, column: Any, query_column: Any) -> tuple[np.ndarray, np.ndarray]:
    """Each row's query group (-1: no query) and whether it has text to score."""
    queries = query if query is not None else _cells(df[query_column])
    pairs = build_pairs(queries, _cells(df[column]))
    return pairs.row_group, pairs.row_pair >= 0


def prefilter_scores(
    df: pd.DataFrame,
    query: str | None,
    column: Any,
    *,
    query_column: Any,
    prefilter: Any,
    cache: Any,
    progress: Any,
    errors: str,
    cancel: threading.Event | None = None,
) -> tuple[np.ndarray, str, np.ndarray | None]:
    """Every row's prefilter score (NaN where it has none), what the prefilter was, and each row's prefilter
    error (None where it has none; the array is None when nothing could fail: a column, or
    ``errors="raise"``). ``cancel`` stops a prefilter reranker's run between its requests
    (:class:`rerankpd.errors.RunCancelled`)."""
    if isinstance(prefilter, str) and prefilter in df.columns:
        values = df[prefilter]
        if not isinstance(values, pd.Series) or not (
            pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
        ):
            raise TypeError(
                f"prefilter column {prefilter!r} must hold numbers (the scores to rank by), "
                f"got dtype {getattr(values, 'dtype', 'of several columns')}"
            )
        return values.to_numpy(dtype=np.float64, na_value=np.nan), f"column {prefilter!r}", None
    out = rerank(
        df,
        query,
        column,
        query_column=query_column,
        reranker=prefilter,
        sort=False,
        cache=cache,
        progress=progress,
        errors=errors,
        _cancel=cancel,
    )
    name = prefilter if isinstance(prefilter, str) else (getattr(prefilter, "name", None) or type(prefilter).__name__)
    failures = out[ERROR].to_numpy(dtype=object) if ERROR in out.columns else None
    return out[SCORE].to_numpy(dtype=np.float64), str(name), failures


def candidate_mask(prefilter: np.ndarray, row_group: np.ndarray, has_text: np.ndarray, candidates: int) -> np.ndarray:
    """Rows among the ``candidates`` best by prefilter score within their query (rows with text only).

    >>> candidate_mask(np.array([1., 3., 2., np.nan]), np.zeros(4, dtype=int), np.ones(4, bool), 2).tolist()
    [False, True, True, False]
    """
    scores = np.where(has_text, prefilter, np.nan)
    ranks = rank_within_groups(scores, row_group)
    return (ranks >= 1) & (ranks <= candidates)


def cascade_ranks(
    main: np.ndarray, prefilter: np.ndarray, row_group: np.ndarray, has_text: np.ndarray, is_candidate: np.ndarray
) -> np.ndarray:
    """Ranks within each query: candidates the main reranker scored, by its score; then every other row with
    text, by prefilter score (rows with neither score last, by position); 0 for rows without text or query.

    >>> cascade_ranks(np.array([.1, .9, np.nan]), np.array([5., 4., 3.]), np.zeros(3, dtype=int),
    ...               np.ones(3, bool), np.array([True, True, False])).tolist()
    [2, 1, 3]
    """
    n = len(main)
    valid = has_text & (row_group >= 0)
    tier0 = valid & is_candidate & ~np.isnan(main)
    ranks0 = rank_within_groups(np.where(tier0, main, np.nan), row_group)
    rest = valid & ~tier0
    # the rest by prefilter score; rows without one after them, in row order
    floor = np.nanmin(prefilter[rest]) if rest.any() and not np.isnan(prefilter[rest]).all() else 0.0
    fallback = floor - 1.0 - np.arange(n) / max(n, 1)
    rest_scores = np.where(rest, np.where(np.isnan(prefilter), fallback, prefilter), np.nan)
    ranks1 = rank_within_groups(rest_scores, row_group)
    n_groups = int(row_group.max()) + 1 if len(row_group) and row_group.max() >= 0 else 0
    scored_per_group = np.bincount(row_group[tier0], minlength=n_groups) if n_groups else np.zeros(0, int)
    offset = np.where(row_group >= 0, scored_per_group[np.maximum(row_group, 0)] if n_groups else 0, 0)
    return np.where(tier0, ranks0, np.where(rest, ranks1 + offset, 0)).astype(np.int64)


@dataclass(frozen=True)
class _Scored:
    """One cascade's scores before assembly."""

    prefilter: np.ndarray
    prefilter_name: str
    row_group: np.ndarray
    has_text: np.ndarray
    main: np.ndarray
    is_candidate: np.ndarray
    main_info: dict


def _score(
    df,
    query,
    column,
    query_column,
    reranker,
    prefilter,
    candidates,
    cache,
    progress,
    errors,
    cancel: threading.Event | None = None,
    on_progress: ProgressCallback | None = None,
) -> _Scored:
    """Prefilter, pick the candidates, score them. ``cancel`` (the pipeline's private hook) stops the run in the
    prefilter, between it and the main run, or in the main run; ``on_progress`` follows the main run."""
    candidates = whole("candidates", candidates, minimum=1)
    pre, name, pre_errors = prefilter_scores(
        df,
        query,
        column,
        query_column=query_column,
        prefilter=prefilter,
        cache=cache,
        progress=progress,
        errors=errors,
        cancel=cancel,
    )
    row_group, has_text = _groups(df, query, column, query_column)
    pre_failed = has_text & pd.notna(pre_errors) if pre_errors is not None else np.zeros(len(df), dtype=bool)
    # a row the prefilter failed on takes a place left free by the scored rows (after them, in row order)
    is_candidate = candidate_mask(np.where(pre_failed, -np.inf, pre), row_group, has_text, candidates)
    if cancel is not None and cancel.is_set():
        raise RunCancelled(
            f"cancelled after the prefilter ({name}), before any of the {int(is_candidate.sum())} "
            "candidates reached the reranker"
        )
    main = np.full(len(df), np.nan)
    subset = df.iloc[np.flatnonzero(is_candidate)]
    ranked = rerank(
        subset,
        query,
        column,
        query_column=query_column,
        reranker=reranker,
        sort=False,
        cache=cache,
        progress=progress,
        errors=errors,
        _cancel=cancel,
        _on_progress=on_progress,
    )
    main[np.flatnonzero(is_candidate)] = ranked[SCORE].to_numpy(dtype=np.float64)
    info = dict(ranked.attrs.get("rerank", {}))
    if ERROR in ranked.columns:
        info["_errors"] = (np.flatnonzero(is_candidate), ranked[ERROR].to_numpy(dtype=object))
    left_out = np.flatnonzero(pre_failed & ~is_candidate)
    if len(left_out) and pre_errors is not None:  # failed as in a plain run: rerank_error says so, "failed" counts
        info["_prefilter_errors"] = (left_out, [f"prefilter {name}: {pre_errors[i]}" for i in left_out])
        warn_user(
            f"cascade: the prefilter {name} failed on {len(left_out)} row(s) that found no place among the "
            f"{candidates} candidates; they are marked failed in rerank_error and ranked last "
            f"(first error: {pre_errors[left_out[0]]})"
        )
    return _Scored(pre, name, row_group, has_text, main, is_candidate, info)


def _assemble(df: pd.DataFrame, s: _Scored, candidates: int, top_n: int | None, sort: bool) -> pd.DataFrame:
    ranks = cascade_ranks(s.main, s.prefilter, s.row_group, s.has_text, s.is_candidate)
    out = df.copy(deep=False)
    out[PREFILTER] = s.prefilter
    out[SCORE] = s.main
    out[RANK] = pd.arrays.IntegerArray(ranks, mask=ranks == 0)
    info = {k: v for k, v in s.main_info.items() if not k.startswith("_")}
    if "_errors" in s.main_info or "_prefilter_errors" in s.main_info:
        column = np.full(len(df), None, dtype=object)
        for key in ("_errors", "_prefilter_errors"):
            if key in s.main_info:
                rows, messages = s.main_info[key]
                column[rows] = messages
        out[ERROR] = column
        info["failed"] = int(pd.notna(column).sum())
    keep = np.flatnonzero(top_n_mask(ranks, top_n))
    if sort:
        keep = keep[sort_order(s.row_group[keep], ranks[keep])]
    if len(keep) != len(out) or sort:
        out = out.iloc[keep]
    info["rows"] = len(df)
    info["cascade"] = {
        "prefilter": s.prefilter_name,
        "candidates": candidates,
        "pairs_to_reranker": int(info.get("unique_pairs", s.is_candidate.sum())),
        "rows_with_text": int(s.has_text.sum()),
        "candidate_rows": int(s.is_candidate.sum()),
    }
    out.attrs = dict(df.attrs)
    out.attrs["rerank"] = info
    return out


def rerank_cascade(
    df: pd.DataFrame,
    query: str | None = None,
    column: Any = "text",
    *,
    query_column: Any = None,
    top_n: int | None = None,
    reranker: Any = None,
    prefilter: Any = "bm25",
    candidates: int = 100,
    sort: bool = True,
    cache: bool | str | os.PathLike = True,
    progress: bool | None = None,
    errors: str = "raise",
    _cancel: threading.Event | None = None,
    _on_progress: ProgressCallback | None = None,
) -> pd.DataFrame:
    """:func:`rerankpd.rerank` with a prefilter: see the module's notes (``rerank(..., prefilter=...)`` calls it).

    ``prefilter`` is a column of ``df`` holding scores (higher is better), a reranker name, or a reranker
    object; a string that is a column name means the column. ``_cancel`` and ``_on_progress`` are
    :func:`rerankpd.rerank`'s private hooks (the panel's Cancel button and progress bar): the event stops the
    cascade between requests (:class:`rerankpd.errors.RunCancelled`), the callback follows the main run.
    """
    candidates = whole("candidates", candidates, minimum=1)
    scored = _score(
        df, query, column, query_column, reranker, prefilter, candidates, cache, progress, errors, _cancel, _on_progress
    )
    return _assemble(df, scored, candidates, top_n, sort)


# ------------------------------------------------------------------------------------------- estimate
@dataclass(frozen=True)
class CascadeEstimate:
    """What a cascade would send to the reranker, beside what the same run without it would send.

    ``without`` and ``with_cascade`` are :class:`rerankpd.Estimate` figures; ``exact`` is False when the
    prefilter could not run without cost (a hosted or neural reranker): its candidates are then counted per
    query (at most ``candidates`` each) and their tokens estimated from that query's average.
    """

    prefilter: str
    candidates: int
    without: Any
    with_cascade: Any
    exact: bool

    @property
    def pairs_saved(self) -> int:
        return self.without.to_score - self.with_cascade.to_score

    @property
    def tokens_saved(self) -> int:
        return self.without.approx_tokens - self.with_cascade.approx_tokens

    def to_dict(self) -> dict:
        return {
            "prefilter": self.prefilter,
            "candidates": self.candidates,
            "exact": self.exact,
            "without": self.without.to_dict(),
            "with_cascade": self.with_cascade.to_dict(),
            "pairs_saved": self.pairs_saved,
            "tokens_saved": self.tokens_saved,
        }

    def __str__(self) -> str:
        about = "" if self.exact else "about "
        return (
            f"cascade {self.prefilter} -> top {self.candidates} per query: {about}"
            f"{self.with_cascade.to_score} pairs (~{self.with_cascade.approx_tokens} tokens) to score instead "
            f"of {self.without.to_score} (~{self.without.approx_tokens} tokens); saves {about}"
            f"{self.pairs_saved} pairs and ~{self.tokens_saved} tokens\n  with:    {self.with_cascade}"
            f"\n  without: {self.without}"
        )


def estimate_cascade(
    df: pd.DataFrame,
    query: str | None = None,
    column: Any = "text",
    *,
    query_column: Any = None,
    reranker: Any = None,
    prefilter: Any = "bm25",
    candidates: int = 100,
    cache: bool | str | os.PathLike = True,
    **checked: Any,
) -> CascadeEstimate:
    """:func:`rerankpd.estimate` with a prefilter (``estimate(..., prefilter=...)`` calls it).

    A prefilter that is a column, or a lexical reranker (bm25: local and cheap), is run, so the candidates
    and their cost are exact; any other prefilter is not run (an estimate sends nothing).

    Examples
    --------
    >>> import pandas as pd, rerankpd
    >>> df = pd.DataFrame({"text": ["a b", "c d e", "f"], "pre": [3, 2, 1]})
    >>> est = rerankpd.estimate(df, "q", reranker="bm25", prefilter="pre", candidates=2, cache=False)
    >>> est.without.to_score, est.with_cascade.to_score, est.pairs_saved
    (3, 2, 1)
    """
    candidates = whole("candidates", candidates, minimum=1)
    without = estimate(df, query, column, query_column=query_column, reranker=reranker, cache=cache, **checked)
    is_column = isinstance(prefilter, str) and prefilter in df.columns
    cheap = is_column
    if not is_column:
        with reranker_for_estimate(prefilter) as model:
            cheap = describe(model).kind == "lexical"
    if cheap:
        pre, name, _ = prefilter_scores(
            df,
            query,
            column,
            query_column=query_column,
            prefilter=prefilter,
            cache=cache,
            progress=False,
            errors="coerce",
        )
        row_group, has_text = _groups(df, query, column, query_column)
        mask = candidate_mask(pre, row_group, has_text, candidates)
        with_cascade = estimate(
            df.iloc[np.flatnonzero(mask)],
            query,
            column,
            query_column=query_column,
            reranker=reranker,
            cache=cache,
            **checked,
        )
        return CascadeEstimate(name, candidates, without, with_cascade, True)
    row_group, has_text = _groups(df, query, column, query_column)
    per_query = np.bincount(row_group[has_text & (row_group >= 0)]) if has_text.any() else np.zeros(0, int)
    share = float(np.minimum(per_query, candidates).sum()) / max(int(per_query.sum()), 1)
    to_score = round(without.to_score * share)
    with_cascade = replace(
        without,
        to_score=to_score,
        approx_tokens=round(without.approx_tokens * share),
        requests=max(round(without.requests * share), 1 if to_score else 0),
    )
    name = prefilter if isinstance(prefilter, str) else (getattr(prefilter, "name", None) or type(prefilter).__name__)
    return CascadeEstimate(str(name), candidates, without, with_cascade, False)
