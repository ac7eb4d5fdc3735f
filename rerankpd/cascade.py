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

``top_n <= candidates`` then never pays for a row it drops. :func:`cascade_curve` measures, on a labelled
frame, what each candidate count costs and keeps: the curve an analyst reads to choose ``candidates``.

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
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .errors import RunCancelled, warn_user
from .pairs import build_pairs, rank_within_groups, sort_order, top_n_mask
from .progress import ProgressCallback
from .validate import whole

__all__ = ["Cascade", "CascadeCurve", "cascade_curve", "rerank_cascade"]

logger = logging.getLogger(__name__)

SCORE, RANK, PREFILTER = "rerank_score", "rerank_rank", "rerank_prefilter_score"
ERROR = "rerank_error"


def _cells(values: Any) -> list[str | None]:
    return [v if isinstance(v, str) and v.strip() else None for v in values]


def _groups(df: pd.DataFrame, query: str | None, column: Any, query_column: Any) -> tuple[np.ndarray, np.ndarray]:
    """Each row's query group (-1: no query) and whether it has text to score."""
    queries = query if query is not None else _cells(df[query_column])
    pairs = build_pairs(queries, _cells(df[column]))
    return pairs.row_group, pairs.row_pair >= 0


def prefilter_scores(df: pd.DataFrame, query: str | None, column: Any, *, query_column: Any, prefilter: Any,
                     cache: Any, progress: Any, errors: str,
                     cancel: threading.Event | None = None) -> tuple[np.ndarray, str]:
    """Every row's prefilter score (NaN where it has none) and what the prefilter was; ``cancel`` stops a
    prefilter reranker's run between its requests (:class:`rerankpd.errors.RunCancelled`)."""
    scores, name, _ = _prefilter_run(df, query, column, query_column=query_column, prefilter=prefilter, cache=cache,
                                     progress=progress, errors=errors, cancel=cancel)
    return scores, name


def _prefilter_run(df: pd.DataFrame, query: str | None, column: Any, *, query_column: Any, prefilter: Any,
                   cache: Any, progress: Any, errors: str, cancel: threading.Event | None = None
                   ) -> tuple[np.ndarray, str, np.ndarray | None]:
    """:func:`prefilter_scores`, plus each row's prefilter error (None where it has none; the array is None
    when nothing could fail: a column, or ``errors="raise"``)."""
    if isinstance(prefilter, str) and prefilter in df.columns:
        values = df[prefilter]
        if not isinstance(values, pd.Series) or not (pd.api.types.is_numeric_dtype(values)
                                                     and not pd.api.types.is_bool_dtype(values)):
            raise TypeError(f"prefilter column {prefilter!r} must hold numbers (the scores to rank by), "
                            f"got dtype {getattr(values, 'dtype', 'of several columns')}")
        return values.to_numpy(dtype=np.float64, na_value=np.nan), f"column {prefilter!r}", None
    from .pipeline import rerank

    out = rerank(df, query, column, query_column=query_column, reranker=prefilter, sort=False, cache=cache,
                 progress=progress, errors=errors, _cancel=cancel)
    name = prefilter if isinstance(prefilter, str) else (getattr(prefilter, "name", None) or
                                                         type(prefilter).__name__)
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


def cascade_ranks(main: np.ndarray, prefilter: np.ndarray, row_group: np.ndarray, has_text: np.ndarray,
                  is_candidate: np.ndarray) -> np.ndarray:
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


def _score(df, query, column, query_column, reranker, prefilter, candidates, cache, progress, errors,
           cancel: threading.Event | None = None, on_progress: ProgressCallback | None = None) -> _Scored:
    """Prefilter, pick the candidates, score them. ``cancel`` (the pipeline's private hook) stops the run in the
    prefilter, between it and the main run, or in the main run; ``on_progress`` follows the main run."""
    from .pipeline import rerank

    candidates = whole("candidates", candidates, minimum=1)
    pre, name, pre_errors = _prefilter_run(df, query, column, query_column=query_column, prefilter=prefilter,
                                           cache=cache, progress=progress, errors=errors, cancel=cancel)
    row_group, has_text = _groups(df, query, column, query_column)
    pre_failed = has_text & pd.notna(pre_errors) if pre_errors is not None else np.zeros(len(df), dtype=bool)
    # a row the prefilter failed on takes a place left free by the scored rows (after them, in row order)
    is_candidate = candidate_mask(np.where(pre_failed, -np.inf, pre), row_group, has_text, candidates)
    if cancel is not None and cancel.is_set():
        raise RunCancelled(f"cancelled after the prefilter ({name}), before any of the {int(is_candidate.sum())} "
                           "candidates reached the reranker")
    main = np.full(len(df), np.nan)
    subset = df.iloc[np.flatnonzero(is_candidate)]
    ranked = rerank(subset, query, column, query_column=query_column, reranker=reranker, sort=False, cache=cache,
                    progress=progress, errors=errors, _cancel=cancel, _on_progress=on_progress)
    main[np.flatnonzero(is_candidate)] = ranked[SCORE].to_numpy(dtype=np.float64)
    info = dict(ranked.attrs.get("rerank", {}))
    if "rerank_error" in ranked.columns:
        info["_errors"] = (np.flatnonzero(is_candidate), ranked["rerank_error"].to_numpy(dtype=object))
    left_out = np.flatnonzero(pre_failed & ~is_candidate)
    if len(left_out) and pre_errors is not None:  # failed as in a plain run: rerank_error says so, "failed" counts
        info["_prefilter_errors"] = (left_out, [f"prefilter {name}: {pre_errors[i]}" for i in left_out])
        warn_user(f"cascade: the prefilter {name} failed on {len(left_out)} row(s) that found no place among the "
                  f"{candidates} candidates; they are marked failed in rerank_error and ranked last "
                  f"(first error: {pre_errors[left_out[0]]})")
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
        out["rerank_error"] = column
        info["failed"] = int(pd.notna(column).sum())
    keep = np.flatnonzero(top_n_mask(ranks, top_n))
    if sort:
        keep = keep[sort_order(s.row_group[keep], ranks[keep])]
    if len(keep) != len(out) or sort:
        out = out.iloc[keep]
    info["rows"] = len(df)
    info["cascade"] = {"prefilter": s.prefilter_name, "candidates": candidates,
                       "pairs_to_reranker": int(info.get("unique_pairs", s.is_candidate.sum())),
                       "rows_with_text": int(s.has_text.sum()), "candidate_rows": int(s.is_candidate.sum())}
    out.attrs = dict(df.attrs)
    out.attrs["rerank"] = info
    return out


def rerank_cascade(df: pd.DataFrame, query: str | None = None, column: Any = "text", *, query_column: Any = None,
                   top_n: int | None = None, reranker: Any = None, prefilter: Any = "bm25", candidates: int = 100,
                   sort: bool = True, cache: bool | str | os.PathLike = True, progress: bool | None = None,
                   errors: str = "raise", _cancel: threading.Event | None = None,
                   _on_progress: ProgressCallback | None = None) -> pd.DataFrame:
    """:func:`rerankpd.rerank` with a prefilter: see the module's notes (``rerank(..., prefilter=...)`` calls it).

    ``prefilter`` is a column of ``df`` holding scores (higher is better), a reranker name, or a reranker
    object; a string that is a column name means the column. ``_cancel`` and ``_on_progress`` are
    :func:`rerankpd.rerank`'s private hooks (the panel's Cancel button and progress bar): the event stops the
    cascade between requests (:class:`rerankpd.errors.RunCancelled`), the callback follows the main run.
    """
    candidates = whole("candidates", candidates, minimum=1)
    scored = _score(df, query, column, query_column, reranker, prefilter, candidates, cache, progress, errors,
                    _cancel, _on_progress)
    return _assemble(df, scored, candidates, top_n, sort)


# ------------------------------------------------------------------------------------------- as a ranking
def scores_from_ranks(ranks: np.ndarray) -> np.ndarray:
    """Scores that order rows as ``ranks`` do (1 = best; 0 = unranked, which becomes NaN: last).

    >>> scores_from_ranks(np.array([2, 1, 0])).tolist()
    [-2.0, -1.0, nan]
    """
    ranks = np.asarray(ranks, dtype=np.float64)
    return np.where(ranks >= 1, -ranks, np.nan)


def _label(ranker: Any) -> str:
    if isinstance(ranker, str):
        return ranker
    if ranker is None:
        from .config import default_reranker_name

        return default_reranker_name()
    return str(getattr(ranker, "name", None) or type(ranker).__name__)


@dataclass(frozen=True)
class Cascade:
    """A cascade as one ranking of :func:`rerankpd.evaluate`: ``prefilter`` ranks every row, its ``candidates``
    best per query go to ``reranker``, the rest follow in prefilter order -- the ranking
    ``rerank(..., prefilter=prefilter, candidates=candidates, reranker=reranker)`` returns.

    The arguments are :func:`rerankpd.rerank`'s, with the same meanings: ``prefilter`` a reranker name or
    object or a column of scores, ``reranker`` a name or object (None: the default reranker). In
    :func:`rerankpd.evaluate`, each reranker of a cascade runs once per evaluation, shared with the other
    rankings that use it, and the summary's ``pairs_sent`` counts the pairs the cascade needs.

    Examples
    --------
    >>> import pandas as pd, rerankpd
    >>> df = pd.DataFrame({"q": ["cold"] * 4, "text": ["cold hands", "cold", "stock prices", "a cold winter"],
    ...                    "rel": [1, 2, 0, 1], "order": [4, 3, 2, 1]})
    >>> ev = rerankpd.evaluate(df, query_column="q", label_column="rel", metrics=["mrr@10"], cache=False,
    ...                        progress=False, rerankers=rerankpd.Cascade("order", 2, "bm25"))
    >>> ev.rankings, float(ev.summary.loc["order->bm25", "mrr@10"])
    (['original', 'order->bm25'], 1.0)
    """

    prefilter: Any = "bm25"
    candidates: int = 100
    reranker: Any = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "candidates", whole("candidates", self.candidates, minimum=1))

    @property
    def name(self) -> str:
        """``"prefilter->reranker"``, the cascade's name in an evaluation's summary."""
        return f"{_label(self.prefilter)}->{_label(self.reranker)}"

    def evaluation_scores(self, run: Any) -> np.ndarray:
        """Every row's score in this cascade's ranking (see :class:`rerankpd.evaluate.RankingRun`)."""
        pre = run.scores(self.prefilter)
        row_group, has_text = _groups(run.df, run.query, run.column, run.query_column)
        is_candidate = candidate_mask(pre, row_group, has_text, self.candidates)
        main = run.scores(self.reranker, rows=np.flatnonzero(is_candidate))
        return scores_from_ranks(cascade_ranks(main, pre, row_group, has_text, is_candidate))


# ------------------------------------------------------------------------------------------- the curve
class CascadeCurve:
    """What each candidate count costs (pairs sent to the reranker) and keeps (metrics); see :func:`cascade_curve`.

    ``table`` is a DataFrame with one row per candidate count; ``prefilter_only`` the metrics of the
    prefilter's ranking alone; ``evaluation`` the :class:`rerankpd.Evaluation` the figures come from (one
    ranking per count, named ``"<prefilter>-><reranker> @<count>"``, and the prefilter's, its baseline):
    ``curve.evaluation.compare()`` says which counts differ from the prefilter for real. :meth:`plot` draws
    the metric against the pairs sent.
    """

    def __init__(self, table: pd.DataFrame, prefilter_only: dict[str, float], prefilter: str, reranker: str,
                 evaluation: Any = None) -> None:
        self.table = table
        self.prefilter_only = prefilter_only
        self.prefilter, self.reranker = prefilter, reranker
        self.evaluation = evaluation

    def __repr__(self) -> str:
        return f"CascadeCurve({self.prefilter} -> {self.reranker})\n{self.table.to_string(index=False)}"

    def _repr_html_(self) -> str:
        return f"<b>cascade {self.prefilter} &rarr; {self.reranker}</b>" + self.table.to_html(index=False)

    def plot(self, metric: str | None = None, ax: Any = None):
        """Draw ``metric`` (default: the first) against the pairs sent, one point per candidate count, on a
        y-axis from 0; returns the matplotlib Figure, as :meth:`rerankpd.Evaluation.plot` does (``ax=`` draws
        into that Axes instead, and returns its Figure)."""
        from .plotting import cascade_figure

        metrics = [c for c in self.table.columns if c not in ("candidates", "pairs_sent", "share_sent")]
        metric = metrics[0] if metric is None else metric
        if metric not in metrics:
            raise KeyError(f"metric {metric!r} is not in the curve; choose one of {metrics}")
        return cascade_figure(self, metric, ax)


def cascade_curve(df: pd.DataFrame, query: str | None = None, column: Any = "text", *, query_column: Any = None,
                  prefilter: Any = "bm25", reranker: Any = None, candidates: Sequence[int] = (10, 20, 50, 100),
                  label_column: Any, k: int = 10, metrics: Sequence[str] | None = None,
                  qrels: pd.DataFrame | None = None, id_column: Any = None, gain: str = "linear",
                  skip_empty: bool = False, cache: bool | str | os.PathLike = True,
                  progress: bool | None = None) -> CascadeCurve:
    """The cost/quality curve of a cascade: pairs sent and metrics for each candidate count.

    Pays once, for the largest count (a smaller count's candidates are a subset of the largest's, so their
    scores are already in hand, and in the cache); ranks the frame for each count as
    ``rerank(..., prefilter=prefilter, candidates=count)`` would, and scores each ranking exactly as
    :func:`rerankpd.evaluate` does, with the same code and options: ``label_column``, ``qrels`` and
    ``id_column`` (the collection's judgments: recall and the ideal DCG are then the collection's), ``gain``,
    ``skip_empty``, and ``metrics`` (default ``ndcg@k`` and ``mrr@k``). A count's figures equal those of
    ``evaluate(..., rerankers=Cascade(prefilter, count, reranker))`` for a reranker that scores each pair on
    its own.

    Examples
    --------
    >>> import pandas as pd, rerankpd
    >>> df = pd.DataFrame({"text": ["cold hands", "cold", "stock prices", "a cold winter"],
    ...                    "rel": [1, 2, 0, 1], "order": [4, 3, 2, 1]})
    >>> curve = rerankpd.cascade_curve(df, "cold", prefilter="order", reranker="bm25", candidates=[1, 4],
    ...                                label_column="rel", cache=False, progress=False)
    >>> curve.table["pairs_sent"].tolist()
    [1, 4]
    """
    from .evaluate import Evaluation, judgments

    k = whole("k", k, minimum=1)
    judged = judgments(df, query, column, query_column=query_column, label_column=label_column,
                       metrics=[f"ndcg@{k}", f"mrr@{k}"] if metrics is None else metrics, qrels=qrels,
                       id_column=id_column, gain=gain, skip_empty=skip_empty)
    counts = sorted({whole("candidates", c, minimum=1) for c in candidates})
    if not counts:
        raise ValueError("candidates must list at least one count, e.g. [10, 20, 50, 100]")
    scored = _score(df, query, column, query_column, reranker, prefilter, counts[-1], cache, progress, "raise")
    reranker_name = str(scored.main_info.get("reranker", reranker))
    pre_ranks = rank_within_groups(np.where(scored.has_text, scored.prefilter, np.nan), scored.row_group)
    with_text = int(scored.has_text.sum())
    values = {scored.prefilter_name: judged.values(scores_from_ranks(pre_ranks))}
    costs: dict[str, dict] = {scored.prefilter_name: {"sent": 0, "tokens": None}}
    rows = []
    for count in counts:
        is_candidate = scored.is_candidate & (pre_ranks <= count)
        ranks = cascade_ranks(scored.main, scored.prefilter, scored.row_group, scored.has_text, is_candidate)
        sent = int(is_candidate.sum())
        name = f"{scored.prefilter_name}->{reranker_name} @{count}"
        values[name] = judged.values(scores_from_ranks(ranks))
        costs[name] = {"sent": sent, "tokens": None}
        rows.append({"candidates": count, "pairs_sent": sent,
                     "share_sent": sent / with_text if with_text else float("nan"),
                     **_means(values[name], judged.names)})
    evaluation = Evaluation(values, judged.names, judged.queries, judged.n_relevant, costs, scored.prefilter_name)
    prefilter_only = _means(values[scored.prefilter_name], judged.names)
    return CascadeCurve(pd.DataFrame(rows), prefilter_only, scored.prefilter_name, reranker_name, evaluation)


def _means(values: np.ndarray, names: list[str]) -> dict[str, float]:
    means = values.mean(axis=0) if len(values) else np.full(len(names), np.nan)
    return {name: float(v) for name, v in zip(names, means)}


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
        return {"prefilter": self.prefilter, "candidates": self.candidates, "exact": self.exact,
                "without": self.without.to_dict(), "with_cascade": self.with_cascade.to_dict(),
                "pairs_saved": self.pairs_saved, "tokens_saved": self.tokens_saved}

    def __str__(self) -> str:
        about = "" if self.exact else "about "
        return (f"cascade {self.prefilter} -> top {self.candidates} per query: {about}"
                f"{self.with_cascade.to_score} pairs (~{self.with_cascade.approx_tokens} tokens) to score instead "
                f"of {self.without.to_score} (~{self.without.approx_tokens} tokens); saves {about}"
                f"{self.pairs_saved} pairs and ~{self.tokens_saved} tokens\n  with:    {self.with_cascade}"
                f"\n  without: {self.without}")


def estimate_cascade(df: pd.DataFrame, query: str | None = None, column: Any = "text", *, query_column: Any = None,
                     reranker: Any = None, prefilter: Any = "bm25", candidates: int = 100,
                     cache: bool | str | os.PathLike = True, **checked: Any) -> CascadeEstimate:
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
    from dataclasses import replace

    from .estimate import estimate, reranker_for_estimate
    from .rerankers.base import describe

    candidates = whole("candidates", candidates, minimum=1)
    without = estimate(df, query, column, query_column=query_column, reranker=reranker, cache=cache, **checked)
    is_column = isinstance(prefilter, str) and prefilter in df.columns
    cheap = is_column
    if not is_column:
        with reranker_for_estimate(prefilter) as model:
            cheap = describe(model).kind == "lexical"
    if cheap:
        pre, name = prefilter_scores(df, query, column, query_column=query_column, prefilter=prefilter,
                                     cache=cache, progress=False, errors="coerce")
        row_group, has_text = _groups(df, query, column, query_column)
        mask = candidate_mask(pre, row_group, has_text, candidates)
        with_cascade = estimate(df.iloc[np.flatnonzero(mask)], query, column, query_column=query_column,
                                reranker=reranker, cache=cache, **checked)
        return CascadeEstimate(name, candidates, without, with_cascade, True)
    row_group, has_text = _groups(df, query, column, query_column)
    per_query = np.bincount(row_group[has_text & (row_group >= 0)]) if has_text.any() else np.zeros(0, int)
    share = float(np.minimum(per_query, candidates).sum()) / max(int(per_query.sum()), 1)
    to_score = round(without.to_score * share)
    with_cascade = replace(without, to_score=to_score, approx_tokens=round(without.approx_tokens * share),
                           requests=max(round(without.requests * share), 1 if to_score else 0))
    name = prefilter if isinstance(prefilter, str) else (getattr(prefilter, "name", None) or
                                                         type(prefilter).__name__)
    return CascadeEstimate(str(name), candidates, without, with_cascade, False)
