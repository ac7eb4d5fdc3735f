"""Learned fusion weights, honestly reported: :func:`fit_fusion` searches the weights of a weighted sum on
labelled queries and reports the k-fold cross-validated metric (weights fitted on the other folds).
"""

from __future__ import annotations

import itertools
import logging
import math
import os
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..core.options import number, one_of, whole
from ..errors import ConfigurationError
from .fusion import MAX_GRID, METHODS, Fusion, _combine, _contributions
from .judgments import _check_gain, _judgments, _labels
from .metrics import GAINS, parse_metric, per_query
from .rankings import RankingRuns

__all__ = ["FusionFit", "fit_fusion", "simplex_grid"]

logger = logging.getLogger(__name__)


@dataclass
class FusionFit:
    """How :func:`fit_fusion` chose a fusion's weights, and the figure to report.

    Attributes
    ----------
    metric : str
        The metric the weights maximise.
    cv_mean : float
        The k-fold cross-validated metric: each query scored with the weights fitted on the other folds,
        averaged over queries. This is the figure to report.
    in_sample : float
        The metric of the final weights on the very queries they were fitted on (optimistic; for contrast).
    cv_per_query : Series
        Each query's out-of-fold value (index: the query).
    cv_scores : Series
        Each row's fused score with its query's out-of-fold weights, aligned to the judged frame's index:
        evaluate it as a score column to compare the learned fusion honestly (``compare()``).
    weights : dict
        The final weights (fitted on every query), by ranking label.
    fold_weights : list of dict
        The weights fitted for each fold (on the other folds' queries).
    grid : DataFrame
        Every candidate: its weights and its mean metric over all queries (in-sample).
    folds, step, seed, search, queries
        The set-up: number of folds, the grid's step, the seed that assigned queries to folds, the search
        (``"grid"``) and the queries it was fitted on.
    """

    metric: str
    cv_mean: float
    in_sample: float
    cv_per_query: pd.Series
    cv_scores: pd.Series
    weights: dict
    fold_weights: list
    grid: pd.DataFrame
    folds: int
    step: float
    seed: int | None
    queries: list = field(repr=False)
    search: str = "grid"

    def __str__(self) -> str:
        weights = ", ".join(f"{k}={v:g}" for k, v in self.weights.items())
        return (
            f"weights {weights} fitted on {len(self.queries)} queries ({self.search} search, step {self.step:g}); "
            f"{self.metric}: {self.folds}-fold cross-validated {self.cv_mean:.4f} "
            f"(in-sample {self.in_sample:.4f}, optimistic)"
        )

    def plot(self, ax: Any = None):
        """The in-sample metric along the grid (for two rankings: against the second one's weight), with the
        cross-validated figure and each fold's chosen weight marked. Returns the Axes."""
        import matplotlib.pyplot as plt

        labels = list(self.weights)
        if ax is None:
            _, ax = plt.subplots(figsize=(6, 4))
        if len(labels) == 2:
            x = self.grid[labels[1]].to_numpy()
            ax.plot(x, self.grid[self.metric].to_numpy(), marker="o", label=f"{self.metric} on all queries (in-sample)")
            for i, w in enumerate(self.fold_weights):
                ax.axvline(
                    w[labels[1]],
                    color="grey",
                    alpha=0.4,
                    linestyle=":",
                    label="weight chosen in each fold" if i == 0 else None,
                )
            ax.set_xlabel(f"weight of {labels[1]} (of {labels[0]}: 1 - that)")
        else:
            best = self.grid.sort_values(self.metric, ascending=False).head(15)
            ax.barh([", ".join(f"{w:g}" for w in row) for row in best[labels].to_numpy()], best[self.metric])
            ax.set_xlabel(self.metric)
            ax.set_ylabel(f"weights ({', '.join(labels)})")
        if len(labels) == 2:
            ax.axhline(
                self.cv_mean, color="C3", linestyle="--", label=f"{self.folds}-fold cross-validated: {self.cv_mean:.3f}"
            )
        ax.set_title(f"wsum weights against {self.metric}")
        ax.legend(fontsize=8)
        return ax

    def to_dict(self) -> dict:
        """Plain data: the metric, cv_mean, in_sample, weights, fold weights and set-up."""
        out = asdict(self)
        for key in ("cv_per_query", "cv_scores", "grid", "queries"):
            out.pop(key)
        return out


def simplex_grid(n: int, step: float) -> np.ndarray:
    """Every weight vector of ``n`` non-negative multiples of ``step`` that sum to 1 (rows), in
    lexicographic order of the counts.

    >>> simplex_grid(2, 0.5).tolist()
    [[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]]
    """
    parts = round(1 / step)
    if parts < 1 or abs(parts * step - 1) > 1e-9:
        raise ConfigurationError(f"step must divide 1 into whole parts (0.1, 0.05, 0.25...), got {step!r}")
    size = math.comb(parts + n - 1, n - 1)
    if size > MAX_GRID:
        raise ConfigurationError(
            f"a grid of step {step:g} over {n} rankings has {size:,} points (over {MAX_GRID:,}); choose a coarser step"
        )
    rows = []
    for bars in itertools.combinations(range(parts + n - 1), n - 1):
        edges = (-1, *bars, parts + n - 1)
        rows.append([edges[i + 1] - edges[i] - 1 for i in range(n)])
    return np.asarray(rows, dtype=np.float64) / parts


def _folds(n_queries: int, folds: int, seed: int | None) -> np.ndarray:
    """Each query's fold: a seeded shuffle cut into ``folds`` parts as equal as can be."""
    order = np.random.default_rng(seed).permutation(n_queries)
    fold = np.empty(n_queries, dtype=np.int64)
    fold[order] = np.arange(n_queries) % folds
    return fold


def _best(means: np.ndarray, grid: np.ndarray) -> int:
    """The best candidate; among those within 1e-12 of the best, the one nearest equal weights."""
    top = np.flatnonzero(means >= means.max() - 1e-12)
    spread = ((grid[top] - 1 / grid.shape[1]) ** 2).sum(axis=1)
    return int(top[np.argmin(spread)])


def fit_fusion(
    judged: pd.DataFrame,
    rankings: Any,
    query: str | None = None,
    column: Any = "text",
    *,
    query_column: Any = None,
    label_column: Any,
    metric: str = "ndcg@10",
    method: str = "wsum",
    norm: str = "min-max",
    folds: int = 5,
    step: float = 0.1,
    seed: int | None = 0,
    qrels: pd.DataFrame | None = None,
    id_column: Any = None,
    gain: str = "linear",
    cache: bool | str | os.PathLike = True,
    progress: bool | None = None,
) -> Fusion:
    """Learn a weighted sum's weights on labelled queries, and say how good it is on queries it did not see.

    Each ranking is normalised per query (``norm``) once; every weight vector of a grid over the simplex
    (non-negative multiples of ``step`` summing to 1: 11 points for two rankings at step 0.1, 66 for
    three) is scored by ``metric`` on every query (exhaustive **grid search**; a weighted sum's ranking does
    not change when all weights are scaled, so the simplex holds every choice of non-negative weights).
    The returned Fusion carries the weights best on all queries (ties: the candidate nearest equal
    weights). Its ``fitted.cv_mean`` is the **k-fold cross-validated** metric: queries are shuffled
    (``seed``) into ``folds`` folds, each fold's queries are scored with the weights best on the other
    folds, and the values are averaged over all queries: the figure to report. ``fitted.in_sample`` (the
    final weights on the queries that chose them) is optimistic, and is shown only for contrast.

    Parameters
    ----------
    judged
        A frame with a relevance label per row (and a query per row, or one query).
    rankings
        As for :class:`Fusion`: score columns and rerankers (each run once through the normal pipeline).
    query, column, query_column, label_column, qrels, id_column, gain
        As for :func:`rerankpd.evaluate`.
    metric
        The metric to maximise, e.g. ``"ndcg@10"``, ``"map"``, ``"mrr@10"``.
    method
        ``"wsum"``, the method with weights to fit.
    norm
        The per-query normalisation of each ranking before the weighted sum.
    folds
        Folds of queries for the cross-validation (2 to the number of queries).
    step
        The grid's step: each weight is a multiple of it.
    seed
        Seeds the assignment of queries to folds.
    cache, progress
        Passed to each reranker's run.

    Returns
    -------
    Fusion
        ``Fusion(rankings, "wsum", norm=norm, weights=...)`` with ``.fitted`` (a :class:`FusionFit`).

    Examples
    --------
    >>> import pandas as pd, rerankpd
    >>> df = pd.DataFrame({"q": [1, 1, 2, 2, 3, 3, 4, 4], "label": [1, 0, 0, 1, 1, 0, 0, 1],
    ...                    "a": [2, 1, 1, 2, 2, 1, 2, 1], "b": [1, 2, 2, 1, 1, 2, 1, 2]})
    >>> fusion = rerankpd.fit_fusion(df, ["a", "b"], query_column="q", label_column="label", metric="mrr@10",
    ...                              folds=2, step=0.5)
    >>> fusion.weights, fusion.fitted.cv_mean, fusion.fitted.in_sample
    ((1.0, 0.0), 0.75, 0.875)
    """

    if not isinstance(judged, pd.DataFrame):
        raise TypeError(f"fit_fusion expects a pandas DataFrame, got {type(judged).__name__}")
    if method != "wsum":
        one_of("method", method, METHODS)
        raise ConfigurationError(
            f"fit_fusion fits the weights of method='wsum'; method={method!r} has no weights to fit"
        )
    one_of("gain", gain, GAINS)
    parsed = parse_metric(metric)
    template = Fusion(rankings, "wsum", norm=norm)
    if query is not None and query_column is not None:
        raise ValueError("give at most one of query and query_column; got both")
    if query_column is not None and query_column not in judged.columns:
        raise KeyError(
            f"query_column {query_column!r} is not a column of the frame; its columns are {list(judged.columns)!r}"
        )
    labels = _labels(judged, label_column)
    runs = RankingRuns(judged, query, column, query_column=query_column, cache=cache, progress=progress)
    queries, groups = runs.queries, runs.groups
    n_queries = len(queries)
    folds = int(whole("folds", folds, minimum=2))  # type: ignore[arg-type]
    if folds > n_queries:
        raise ConfigurationError(f"folds={folds} but the frame has {n_queries} queries; use at most {n_queries}")
    step = float(number("step", step, minimum=0, exclusive_minimum=True, maximum=1))  # type: ignore[arg-type]
    names = list(template.rankings)
    grid = simplex_grid(len(names), step)
    _check_gain(labels, judged.index, gain, f"label_column {label_column!r}")
    judged_codes, judged_labels = _judgments(judged, groups, labels, queries, qrels, column, id_column, gain)
    tie_ids = None if id_column is None else judged[id_column].to_numpy(dtype=object)  # as evaluate breaks ties
    parts = template._parts(runs)
    contributions = _contributions([p[0] for p in parts.values()], groups, "wsum", template.norm, template.k)

    fused_by_candidate = [_combine(contributions, "wsum", w) for w in grid]
    values = np.vstack(
        [
            per_query(
                [parsed],
                groups,
                fused,
                labels,
                n_queries=n_queries,
                judged=(judged_codes, judged_labels),
                gain=gain,
                tie_ids=tie_ids,
            )[parsed.name]
            for fused in fused_by_candidate
        ]
    )  # candidates x queries
    fold = _folds(n_queries, folds, seed)
    cv = np.empty(n_queries)
    cv_scores = np.full(len(judged), np.nan)
    fold_weights = []
    for f in range(folds):
        test = fold == f
        best = _best(values[:, ~test].mean(axis=1), grid)
        cv[test] = values[best, test]
        rows = (groups >= 0) & test[np.maximum(groups, 0)]
        cv_scores[rows] = fused_by_candidate[best][rows]
        fold_weights.append(dict(zip(names, grid[best].tolist())))
    final = _best(values.mean(axis=1), grid)
    fusion = Fusion(template.rankings, "wsum", norm=template.norm, weights=grid[final].tolist())
    table = pd.DataFrame(grid, columns=names)
    table[parsed.name] = values.mean(axis=1)
    fusion.fitted = FusionFit(
        metric=parsed.name,
        cv_mean=float(cv.mean()),
        in_sample=float(values[final].mean()),
        cv_per_query=pd.Series(cv, index=pd.Index(queries, name="query"), name=parsed.name),
        cv_scores=pd.Series(cv_scores, index=judged.index, name="fusion_cv_score"),
        weights=dict(zip(names, grid[final].tolist())),
        fold_weights=fold_weights,
        grid=table,
        folds=folds,
        step=step,
        seed=seed,
        queries=list(queries),
    )
    logger.info("fit_fusion: %s", fusion.fitted)
    return fusion
