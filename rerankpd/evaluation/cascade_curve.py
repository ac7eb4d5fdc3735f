"""The cost/quality curve of a cascade: what each candidate count sends and what it keeps, on labelled data.

:func:`cascade_curve` runs the cascade of :mod:`rerankpd.run.cascade` once, for the largest candidate count,
then ranks the frame for each count and scores the rankings with :mod:`rerankpd.evaluation.metrics`: the curve
an analyst reads to choose ``candidates``.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..core.options import whole
from ..pairs import rank_within_groups
from ..run.cascade import _score, cascade_ranks
from .metrics import per_query

__all__ = ["CascadeCurve", "cascade_curve"]


def _metrics(ranks: np.ndarray, row_group: np.ndarray, labels: np.ndarray, k: int = 10) -> dict[str, float]:
    """nDCG@k and MRR@k of a ranking (``ranks`` 1 = best, 0 = unranked), by :func:`rerankpd.evaluation.metrics.per_query`
    (trec_eval's definitions: linear gains, the ideal from the frame's own labels), averaged over the queries
    with a positive label; missing and negative labels count as not relevant, and unranked rows (no text)
    count in the ideal ranking only.

    >>> _metrics(np.array([1, 2, 3]), np.zeros(3, dtype=int), np.array([0., 1., 0.]), k=10)["mrr@10"]
    0.5
    """
    labels = np.where(np.isnan(labels), 0.0, np.maximum(labels, 0.0))
    valid = row_group >= 0
    n_queries = int(row_group[valid].max()) + 1 if valid.any() else 0
    names = [f"ndcg@{k}", f"mrr@{k}"]
    if not n_queries:
        return {name: float("nan") for name in names}
    ranked = valid & (np.asarray(ranks) >= 1)   # unranked rows (no text) are not retrieved, only judged
    values = per_query(names, row_group[ranked], -np.asarray(ranks, dtype=np.float64)[ranked], labels[ranked],
                       n_queries=n_queries, judged=(row_group[valid], labels[valid]))
    relevant = np.bincount(row_group[valid], weights=(labels[valid] > 0).astype(float), minlength=n_queries) > 0
    return {name: float(values[name][relevant].mean()) if relevant.any() else float("nan") for name in names}


class CascadeCurve:
    """What each candidate count costs (pairs sent to the reranker) and keeps (metrics); see :func:`cascade_curve`.

    ``table`` is a DataFrame with one row per candidate count; ``prefilter_only`` the metrics of the
    prefilter's ranking alone; :meth:`plot` draws the metric against the pairs sent.
    """

    def __init__(self, table: pd.DataFrame, prefilter_only: dict[str, float], prefilter: str, reranker: str) -> None:
        self.table = table
        self.prefilter_only = prefilter_only
        self.prefilter, self.reranker = prefilter, reranker

    def __repr__(self) -> str:
        return f"CascadeCurve({self.prefilter} -> {self.reranker})\n{self.table.to_string(index=False)}"

    def _repr_html_(self) -> str:
        return f"<b>cascade {self.prefilter} &rarr; {self.reranker}</b>" + self.table.to_html(index=False)

    def plot(self, metric: str = "ndcg@10", ax: Any = None):
        """Plot ``metric`` against the pairs sent, one point per candidate count; returns the Axes."""
        import matplotlib.pyplot as plt

        if metric not in self.table.columns:
            raise KeyError(f"metric {metric!r} is not in the curve; choose one of "
                           f"{[c for c in self.table.columns if '@' in c]}")
        if ax is None:
            _, ax = plt.subplots(figsize=(6, 4))
        ax.plot(self.table["pairs_sent"], self.table[metric], marker="o", label=f"{self.prefilter} -> {self.reranker}")
        for _, row in self.table.iterrows():
            ax.annotate(f"{int(row['candidates'])}", (row["pairs_sent"], row[metric]), textcoords="offset points",
                        xytext=(4, -10), fontsize=8)
        if metric in self.prefilter_only:
            ax.axhline(self.prefilter_only[metric], linestyle="--", color="grey", label=f"{self.prefilter} alone")
        ax.set_xlabel("pairs sent to the reranker")
        ax.set_ylabel(metric)
        ax.set_title(f"cascade {self.prefilter} -> {self.reranker}: cost and quality per candidate count")
        ax.legend()
        return ax


def cascade_curve(df: pd.DataFrame, query: str | None = None, column: Any = "text", *, query_column: Any = None,
                  prefilter: Any = "bm25", reranker: Any = None, candidates: Sequence[int] = (10, 20, 50, 100),
                  label_column: Any, k: int = 10, cache: bool | str | os.PathLike = True,
                  progress: bool | None = None) -> CascadeCurve:
    """The cost/quality curve of a cascade: pairs sent and metrics for each candidate count.

    Pays once, for the largest count (a smaller count's candidates are a subset of the largest's, so their
    scores are already in hand, and in the cache); ranks the frame for each count as
    ``rerank(..., prefilter=prefilter, candidates=count)`` would, and scores the ranking against
    ``label_column`` (graded relevance, higher is better, missing or negative = not relevant).

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
    if label_column not in df.columns:
        raise KeyError(f"label_column {label_column!r} is not a column of the frame; its columns are "
                       f"{list(df.columns)!r}")
    counts = sorted({whole("candidates", c, minimum=1) for c in candidates})
    if not counts:
        raise ValueError("candidates must list at least one count, e.g. [10, 20, 50, 100]")
    labels = pd.to_numeric(df[label_column], errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)
    scored = _score(df, query, column, query_column, reranker, prefilter, counts[-1], cache, progress, "raise")
    reranker_name = str(scored.main_info.get("reranker", reranker))
    rows = []
    pre_ranks = rank_within_groups(np.where(scored.has_text, scored.prefilter, np.nan), scored.row_group)
    with_text = int(scored.has_text.sum())
    for count in counts:
        is_candidate = scored.is_candidate & (pre_ranks <= count)
        ranks = cascade_ranks(scored.main, scored.prefilter, scored.row_group, scored.has_text, is_candidate)
        sent = int(is_candidate.sum())
        rows.append({"candidates": count, "pairs_sent": sent,
                     "share_sent": sent / with_text if with_text else float("nan"),
                     **_metrics(ranks, scored.row_group, labels, k)})
    prefilter_only = _metrics(pre_ranks, scored.row_group, labels, k)
    return CascadeCurve(pd.DataFrame(rows), prefilter_only, scored.prefilter_name, reranker_name)
