"""Cascades as rankings of an evaluation, and their cost/quality curve on labelled data.

:class:`Cascade` is a cascade as one ranking of :func:`rerankpd.evaluate`. :func:`cascade_curve` runs the
cascade of :mod:`rerankpd.run.cascade` once, for the largest candidate count, then ranks the frame for each
count and scores every ranking with the very code :func:`rerankpd.evaluate` uses
(:func:`rerankpd.evaluation.judgments.judgments`): the curve an analyst reads to choose ``candidates``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..core.options import whole
from ..pairs import rank_within_groups
from ..run.cascade import _groups, _score, candidate_mask, cascade_ranks
from .evaluate import Evaluation
from .judgments import judgments

__all__ = ["Cascade", "CascadeCurve", "cascade_curve", "scores_from_ranks"]


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
        from ..config import default_reranker_name

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
        """Every row's score in this cascade's ranking (see :class:`rerankpd.evaluation.rankings.RankingRun`)."""
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

    def __init__(
        self,
        table: pd.DataFrame,
        prefilter_only: dict[str, float],
        prefilter: str,
        reranker: str,
        evaluation: Any = None,
    ) -> None:
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
        from .plots import cascade_figure

        metrics = [c for c in self.table.columns if c not in ("candidates", "pairs_sent", "share_sent")]
        metric = metrics[0] if metric is None else metric
        if metric not in metrics:
            raise KeyError(f"metric {metric!r} is not in the curve; choose one of {metrics}")
        return cascade_figure(self, metric, ax)


def cascade_curve(
    df: pd.DataFrame,
    query: str | None = None,
    column: Any = "text",
    *,
    query_column: Any = None,
    prefilter: Any = "bm25",
    reranker: Any = None,
    candidates: Sequence[int] = (10, 20, 50, 100),
    label_column: Any,
    k: int = 10,
    metrics: Sequence[str] | None = None,
    qrels: pd.DataFrame | None = None,
    id_column: Any = None,
    gain: str = "linear",
    skip_empty: bool = False,
    cache: bool | str | os.PathLike = True,
    progress: bool | None = None,
) -> CascadeCurve:
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
    k = whole("k", k, minimum=1)
    judged = judgments(
        df,
        query,
        column,
        query_column=query_column,
        label_column=label_column,
        metrics=[f"ndcg@{k}", f"mrr@{k}"] if metrics is None else metrics,
        qrels=qrels,
        id_column=id_column,
        gain=gain,
        skip_empty=skip_empty,
    )
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
        rows.append(
            {
                "candidates": count,
                "pairs_sent": sent,
                "share_sent": sent / with_text if with_text else float("nan"),
                **_means(values[name], judged.names),
            }
        )
    evaluation = Evaluation(values, judged.names, judged.queries, judged.n_relevant, costs, scored.prefilter_name)
    prefilter_only = _means(values[scored.prefilter_name], judged.names)
    return CascadeCurve(pd.DataFrame(rows), prefilter_only, scored.prefilter_name, reranker_name, evaluation)


def _means(values: np.ndarray, names: list[str]) -> dict[str, float]:
    means = values.mean(axis=0) if len(values) else np.full(len(names), np.nan)
    return {name: float(v) for name, v in zip(names, means)}
