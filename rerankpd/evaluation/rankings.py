"""The rankings of one frame: score columns read, rerankers run once each, composite rankings delegated.

:class:`RankingRuns` is what :func:`rerankpd.evaluate`, :func:`rerankpd.fuse` and :func:`rerankpd.fit_fusion`
share: given one frame and its queries, it reads a score column, or runs a reranker through
:func:`rerankpd.rerank` (score cache, batching, retries, progress) **once**, however many rankings use it
(a memo keyed by the reranker: its name when given as a name, the object itself otherwise). A composite
ranking (a :class:`rerankpd.Fusion`) is any object with a ``ranking_scores(runs)`` method: it asks the runs
for its parts and returns its own per-row scores and what they cost.

Examples
--------
>>> import pandas as pd
>>> df = pd.DataFrame({"text": ["cats purr", "dogs bark"], "s": [0.2, 0.9]})
>>> runs = RankingRuns(df, "cats", cache=False, progress=False)
>>> runs.score_column("s").tolist()
[0.2, 0.9]
>>> scores, cost = runs.scores("bm25")
>>> bool(scores[0] > scores[1]), cost["sent"], runs.scores("bm25")[1]["sent"]  # the second call runs nothing
(True, 2, 2)
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import pandas as pd

from ..run import pipeline

__all__ = ["RankingRuns", "is_composite", "no_cost", "query_groups"]

logger = logging.getLogger(__name__)


def is_composite(ranking: Any) -> bool:
    """True for a ranking made of other rankings (it has a ``ranking_scores(runs)`` method)."""
    return callable(getattr(ranking, "ranking_scores", None)) and not isinstance(ranking, type)


def query_groups(df: pd.DataFrame, query: Any, query_column: Any) -> tuple[np.ndarray, list]:
    """Each row's query as an integer (first-appearance order; -1 without one) and the distinct queries."""
    if query_column is None:
        return np.zeros(len(df), dtype=np.int64), [query]
    codes, uniques = pd.factorize(df[query_column], use_na_sentinel=True)
    return codes.astype(np.int64, copy=False), list(uniques)


def no_cost() -> dict:
    """What a score column costs: nothing."""
    return {"sent": 0, "tokens": 0, "requests": 0}


def _tokens(usage: dict) -> int:
    if "total_tokens" in usage:
        return int(usage["total_tokens"])
    return int(sum(v for k, v in usage.items() if "tokens" in k))


class RankingRuns:
    """One frame's rankings, each reranker run at most once.

    Parameters
    ----------
    df, query, column, query_column
        As for :func:`rerankpd.rerank`. ``query`` and ``query_column`` may both be None when only score
        columns are read: the whole frame is then one query.
    cache, progress, errors
        Passed to each reranker's run.
    evaluating
        True when the rankings are being measured against labels (:func:`rerankpd.evaluate`); a composite
        ranking may then warn about figures that cannot be trusted (weights fitted on these queries).

    Attributes
    ----------
    groups : ndarray
        Each row's query as an integer (first-appearance order; -1 for a row without a query).
    queries : list
        The distinct queries, in that order.
    infos : dict
        ``attrs["rerank"]`` of each reranker run, by the reranker's label.
    """

    def __init__(
        self,
        df: pd.DataFrame,
        query: str | None = None,
        column: Any = "text",
        *,
        query_column: Any = None,
        cache: bool | str | os.PathLike = True,
        progress: bool | None = None,
        errors: str = "raise",
        evaluating: bool = False,
    ) -> None:
        self.df, self.query, self.column, self.query_column = df, query, column, query_column
        self.cache, self.progress, self.errors, self.evaluating = cache, progress, errors, evaluating
        self.groups, self.queries = query_groups(df, query, query_column)
        self._memo: dict[Any, tuple[np.ndarray, dict]] = {}
        self._objects: list[Any] = []  # keeps memo keys of objects (their id) from being reused
        self.infos: dict[str, dict] = {}

    def score_column(self, name: Any) -> np.ndarray:
        """A score column of the frame as float64 (missing values NaN); errors name the column."""
        if name not in self.df.columns:
            raise KeyError(f"{name!r} is not a column of the frame; its columns are {list(self.df.columns)!r}")
        values = self.df[name]
        if not isinstance(values, pd.Series):
            raise ValueError(
                f"{name!r} names {values.shape[1]} columns of the frame (its column labels repeat); "  # noqa: TRY004
                "give each column a unique name first"
            )
        if pd.api.types.is_bool_dtype(values) or not (pd.api.types.is_numeric_dtype(values) or values.dtype == object):
            raise TypeError(f"column {name!r} must hold numbers (scores, higher ranks first), got {values.dtype}")
        try:
            return pd.to_numeric(values, errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError):
            raise TypeError(f"column {name!r} must hold numbers (scores, higher ranks first)") from None

    def reranker(self, reranker: Any, label: str | None = None) -> tuple[np.ndarray, dict]:
        """Each row's score from ``reranker`` (a name or an object; NaN where it gave none) and what its run
        sent; the first call runs it, later calls with the same reranker return the same scores."""
        key = reranker if isinstance(reranker, str) else ("object", id(reranker))
        if key not in self._memo:
            if self.query is None and self.query_column is None:
                raise ValueError(
                    f"the reranker {label or reranker!r} needs a query: give query= (one for every "
                    "row) or query_column= (a column holding each row's query)"
                )
            out = pipeline.rerank(
                self.df,
                self.query,
                self.column,
                query_column=self.query_column,
                reranker=reranker,
                sort=False,
                cache=self.cache,
                progress=self.progress,
                errors=self.errors,
            )
            info = out.attrs["rerank"]
            cost = {"sent": int(info["sent"]), "tokens": _tokens(info["usage"]), "requests": int(info["requests"])}
            self._memo[key] = (out[pipeline.SCORE].to_numpy(dtype=np.float64), cost)
            if not isinstance(reranker, str):
                self._objects.append(reranker)
            self.infos[label or (reranker if isinstance(reranker, str) else info["reranker"])] = dict(info)
        return self._memo[key]

    def scores(self, ranking: Any, label: str | None = None) -> tuple[np.ndarray, dict]:
        """Each row's score from ``ranking`` and what it cost: a composite computes its own from its parts
        (through these runs), anything else is a reranker."""
        if is_composite(ranking):
            return ranking.ranking_scores(self)
        return self.reranker(ranking, label)
