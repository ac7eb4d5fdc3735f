"""The rankings of one frame: score columns read, rerankers run once each, composite rankings delegated.

:class:`RankingRuns` is what :func:`rerankpd.evaluate`, :func:`rerankpd.fuse` and :func:`rerankpd.fit_fusion`
share: given one frame and its queries, it reads a score column, or runs a reranker through
:func:`rerankpd.rerank` (score cache, batching, retries, progress) **once**, however many rankings use it
(a memo keyed by the reranker: its name when given as a name, the object itself otherwise). A composite
ranking (a :class:`rerankpd.Fusion`) is any object with a ``ranking_scores(runs)`` method: it asks the runs
for its parts and returns its own per-row scores and what they cost.

:class:`RankingRun` is the older seam of the same kind that :func:`rerankpd.evaluate` itself runs its rankings
through (a :class:`rerankpd.Cascade` or a fusion computes ``evaluation_scores(run)`` from ``run.scores``; costs
are charged to each ranking that asks, memo hits included). The two sit side by side: their memo keys, cost
figures and composite hooks differ, so one class serving both would change what evaluate reports.

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

from ..rerankers import Reranker, get_reranker
from ..run import pipeline

__all__ = ["RankingRun", "RankingRuns", "is_composite", "no_cost", "query_groups"]

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


def _score_column(df: pd.DataFrame, name: Any) -> np.ndarray:
    if name not in df.columns:
        raise KeyError(f"score_columns: {name!r} is not a column of the frame; its columns are {list(df.columns)!r}")
    try:
        return np.asarray(pd.to_numeric(df[name], errors="raise"), dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"score_columns: column {name!r} must hold numbers (higher ranks first)") from None


def _composite(ranking: Any) -> bool:
    """A composite ranking (see :class:`RankingRun`): it has ``evaluation_scores(run)``."""
    return callable(getattr(ranking, "evaluation_scores", None))


# ---------------------------------------------------------------------------------------------- rankings
class RankingRun:
    """What a composite ranking sees of one :func:`rerankpd.evaluate` call: the frame, and its rows' scores, memoised.

    A **composite ranking** (:class:`rerankpd.Cascade`; a fusion of rankings) is any object with one method::

        def evaluation_scores(self, run: RankingRun) -> numpy.ndarray

    returning one float64 score per row of ``run.df`` (higher ranks first; NaN ranks last, ties and NaNs in
    row order, as every ranking of :func:`rerankpd.evaluate`). It gets what it combines from :meth:`scores`, never by
    running a reranker itself, so each underlying run happens once per evaluation however many rankings
    share it, and the pairs it sends are counted against the ranking that asked (the memo's hits included:
    a ranking's ``pairs_sent`` is what it needs, whether or not another ranking paid for it first).
    ``evaluate(rerankers={"label": composite})`` names it in the summary.

    Attributes
    ----------
    df, query, column, query_column, cache, progress
        As :func:`rerankpd.evaluate` was given them.
    """

    def __init__(
        self, df: pd.DataFrame, query: str | None, column: Any, query_column: Any, cache: Any, progress: bool | None
    ) -> None:
        self.df, self.query, self.column, self.query_column = df, query, column, query_column
        self.cache, self.progress = cache, progress
        self._memo: dict[tuple, tuple[np.ndarray, dict, Any]] = {}
        self._models: dict[str, Any] = {}  # reranker name -> the object made once for this evaluation
        self._charged: list[dict] = []  # costs of the calls made for the ranking being computed

    def scores(self, ranking: Any, rows: np.ndarray | None = None) -> np.ndarray:
        """Every row's score under ``ranking``: a reranker (name or object), a column of scores of ``df``
        (a string naming a column means the column), or another composite ranking.

        ``rows`` (positions into ``df``) scores only those rows (the others are NaN): a reranker is then run
        on ``df.iloc[rows]`` alone, as a cascade sends only its candidates. The result is read-only and
        shared with other callers: copy it before writing to it.
        """
        key_rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        if isinstance(ranking, str) and ranking in self.df.columns:
            values = _score_column(self.df, ranking)
            return values if key_rows is None else _only(values, key_rows)
        if _composite(ranking):
            values = np.asarray(ranking.evaluation_scores(self), dtype=np.float64)
            if values.shape != (len(self.df),):
                raise ValueError(
                    f"{type(ranking).__name__}.evaluation_scores returned {values.shape} scores for "
                    f"a frame of {len(self.df)} rows"
                )
            return values if key_rows is None else _only(values, key_rows)
        return self._rerank(ranking, key_rows)

    def _rerank(self, reranker: Any, rows: np.ndarray | None) -> np.ndarray:
        name = (reranker or "").lower() if reranker is None or isinstance(reranker, str) else None
        key = (name if name is not None else id(reranker), None if rows is None else rows.tobytes())
        if key not in self._memo:
            model = reranker
            if name is not None:
                if name not in self._models:
                    self._models[name] = get_reranker(name or _default_reranker())
                model = self._models[name]
            frame = self.df if rows is None else self.df.iloc[rows]
            out = pipeline.rerank(
                frame,
                self.query,
                self.column,
                query_column=self.query_column,
                reranker=model,
                sort=False,
                cache=self.cache,
                progress=self.progress,
            )
            values = out[pipeline.SCORE].to_numpy(dtype=np.float64)
            values = values if rows is None else _scatter(values, rows, len(self.df))
            values.setflags(write=False)
            self._memo[key] = (values, _cost(out.attrs["rerank"], model), reranker)
        values, cost, _ = self._memo[key]
        self._charged.append(cost)
        return values

    def _ranking(self, ranking: Any) -> tuple[np.ndarray, dict]:
        """One ranking of the summary and what it cost (every call it made, memo hits included)."""
        self._charged = []
        values = self.scores(ranking) if not isinstance(ranking, str) else self._rerank(ranking, None)
        return values, _total(self._charged)

    def close(self) -> None:
        """Close the rerankers made from names for this evaluation."""
        for model in self._models.values():
            if isinstance(model, Reranker):
                model.close()
        self._models.clear()


def _default_reranker() -> str:
    from ..config import default_reranker_name

    return default_reranker_name()


def _only(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    return _scatter(values[rows], rows, len(values))


def _scatter(values: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    out = np.full(n, np.nan)
    out[rows] = values
    return out


def _cost(info: dict, model: Any) -> dict:
    """What one run sent: pairs to a model (a lexical reranker such as bm25 counts none: it computes word
    statistics in this process, no model sees a pair), requests and tokens (None for a reranker that computes
    on this machine: nothing goes to a service)."""
    from ..rerankers.base import describe
    from ..run.estimate import computes_locally

    remote = not computes_locally(model)
    lexical = describe(model).kind == "lexical"
    return {
        "sent": 0 if lexical else int(info["sent"]),
        "requests": int(info["requests"]) if remote else None,
        "tokens": _tokens(info["usage"]) if remote else None,
    }


def _total(costs: list[dict]) -> dict:
    """The sum of several runs' costs; a figure no run counted (all None) stays None."""
    out: dict = {}
    for field in ("sent", "requests", "tokens"):
        counted = [c[field] for c in costs if c[field] is not None]
        out[field] = sum(counted) if counted or field == "sent" else None
    return out
