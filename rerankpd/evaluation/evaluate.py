"""``rerankpd.evaluate``: is the reranking any good? Metrics, costs and significance for rankings of a frame.

A frame with a relevance label per row (and a query per row, or one query) holds one or more rankings:
``"original"`` (the rows' own order within each query: the first stage that retrieved them), columns of
scores the user already has, and rerankers, each run through the normal pipeline (cache, batching,
retries, progress), so evaluating twice sends nothing the second time. Metrics follow trec_eval's
definitions (see :mod:`rerankpd.evaluation.metrics`): order by score descending, missing scores last, ties by document
id descending as trec_eval breaks them when ``id_column=`` is given, else by input position (rerankpd's
rule: with many ties the numbers can then differ from trec_eval's); nDCG with linear gain
(``gain="exponential"`` for 2^label - 1); MRR@k; AP; Recall@k;
Precision@k dividing by k. A query with no relevant row scores 0 and is counted (``skip_empty=True``
leaves it out). ``qrels=`` adds the collection's judgments of documents the frame does not hold, so
recall and ideal DCG are those of the collection.

Examples
--------
>>> import pandas as pd, rerankpd
>>> df = pd.DataFrame({"q": ["cats"] * 3 + ["dogs"] * 3,
...                    "text": ["dogs bark", "cats purr", "fish swim", "cats purr", "dogs bark", "birds sing"],
...                    "label": [0, 1, 0, 0, 1, 0]})
>>> ev = rerankpd.evaluate(df, query_column="q", label_column="label", rerankers="bm25",
...                        metrics=["mrr@10", "ndcg@10"], cache=False, progress=False)
>>> ev.summary["mrr@10"].to_dict()
{'original': 0.5, 'bm25': 1.0}
"""

from __future__ import annotations

import html
import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..core.options import one_of, whole
from ..errors import ConfigurationError
from .judgments import (  # noqa: F401  (re-exported: rerankpd.evaluation.evaluate.judgments is imported elsewhere)
    MAX_EXPONENTIAL_LABEL,
    Judged,
    _check_gain,
    _distinct_judgments,
    _judgments,
    _labels,
    _query_codes,
    judgments,
)
from .metrics import DEFAULT_METRICS
from .rankings import (  # noqa: F401  (re-exported: the composite-ranking seam and its costs lived here)
    RankingRun,
    _composite,
    _cost,
    _default_reranker,
    _only,
    _scatter,
    _score_column,
    _tokens,
    _total,
)
from .significance import TESTS, holm, paired_p_value

__all__ = ["Evaluation", "RankingRun", "evaluate"]

logger = logging.getLogger(__name__)

ORIGINAL = "original"
COST_COLUMNS = ("queries", "no_relevant", "pairs_sent", "tokens")


class Evaluation:
    """The result of :func:`evaluate`: per-query metric values of each ranking, and what they cost.

    Attributes
    ----------
    summary : DataFrame
        One row per ranking (index ``ranking``), one column per metric (the mean over queries), then
        ``queries`` (evaluated), ``no_relevant`` (of those, queries with no relevant judgment),
        ``pairs_sent`` and ``tokens`` (what the ranking's reranker runs sent: pairs scored by a model, not
        from the cache -- for a cascade, the pairs its reranker (and a model prefilter) scored; 0 for columns,
        the original order and bm25, which no model sees; ``tokens`` <NA> (shown ``-``) where nothing goes
        to a service: columns, the original order, rerankers that compute on this machine).
    per_query : DataFrame
        Long form: ``query``, ``ranking``, ``metric``, ``value``.
    metrics, rankings, queries, baseline
        The metric names, ranking names, the queries (in first-appearance order) and the default baseline.
    """

    def __init__(
        self,
        values: dict[str, np.ndarray],
        metrics: list[str],
        queries: list,
        n_relevant: np.ndarray,
        costs: dict[str, dict],
        baseline: str,
    ) -> None:
        self._values = values  # ranking -> (queries x metrics) array
        self.metrics = list(metrics)
        self.rankings = list(values)
        self.queries = list(queries)
        self.baseline = baseline
        self._n_relevant = n_relevant
        self._costs = costs

    # ------------------------------------------------------------------------------------------ tables
    @property
    def summary(self) -> pd.DataFrame:
        rows = []
        for name, values in self._values.items():
            cost = self._costs.get(name, {})
            means = values.mean(axis=0) if len(self.queries) else np.full(len(self.metrics), np.nan)
            rows.append(
                [
                    *means,
                    len(self.queries),
                    int((self._n_relevant == 0).sum()),
                    int(cost.get("sent", 0)),
                    cost.get("tokens"),
                ]
            )
        table = pd.DataFrame(
            rows, columns=[*self.metrics, *COST_COLUMNS], index=pd.Index(self.rankings, name="ranking")
        )
        table["tokens"] = table["tokens"].astype("Int64")  # <NA>: nothing was sent to a service
        return table

    def to_string(self, width: int | None = None) -> str:
        """The summary as text, every column shown (wrapped to ``width``, default the terminal's), means to 4
        decimals, and ``-`` for tokens of rankings that sent nothing to a service (columns, local models)."""
        import shutil

        width = shutil.get_terminal_size((120, 24)).columns if width is None else width
        table = self.summary.astype({"tokens": object})
        table["tokens"] = [("-" if v is pd.NA else int(v)) for v in table["tokens"]]
        with pd.option_context("display.width", max(width, 40), "display.max_columns", None, "display.precision", 4):
            return table.to_string(line_width=max(width, 40), float_format=lambda v: f"{v:.4f}")

    @property
    def per_query(self) -> pd.DataFrame:
        n_q, n_m = len(self.queries), len(self.metrics)
        stacked = np.stack([self._values[r] for r in self.rankings]) if self.rankings else np.empty((0, n_q, n_m))
        return pd.DataFrame(
            {
                "query": np.tile(np.repeat(np.asarray(self.queries, dtype=object), n_m), len(self.rankings)),
                "ranking": np.repeat(np.asarray(self.rankings, dtype=object), n_q * n_m),
                "metric": np.tile(np.asarray(self.metrics, dtype=object), n_q * len(self.rankings)),
                "value": stacked.reshape(-1),
            }
        )

    def values(self, ranking: str, metric: str) -> np.ndarray:
        """One ranking's per-query values of one metric (a float64 array in the order of ``queries``)."""
        if ranking not in self._values:
            raise KeyError(f"ranking {ranking!r} was not evaluated; the rankings are {self.rankings}")
        if metric not in self.metrics:
            raise KeyError(f"metric {metric!r} was not evaluated; the metrics are {self.metrics}")
        return self._values[ranking][:, self.metrics.index(metric)]

    # ------------------------------------------------------------------------------------------ compare
    def compare(
        self,
        baseline: str | None = None,
        test: str = "randomization",
        correction: str | None = "holm",
        n_resamples: int = 10_000,
        seed: int | None = 0,
    ) -> pd.DataFrame:
        """Each other ranking against ``baseline``, per metric: is the difference real?

        Returns one row per (ranking, metric): ``baseline_mean``, ``mean``, ``mean_delta``, ``p_value``
        (two-sided, paired over queries; see :mod:`rerankpd.evaluation.significance`), ``p_adjusted`` (Holm's
        correction across every ranking x metric of the table; equal to ``p_value`` with
        ``correction=None``), and ``wins``, ``ties``, ``losses`` (queries where the ranking is better,
        equal, worse).

        >>> import pandas as pd, rerankpd
        >>> df = pd.DataFrame({"q": [0, 0, 1, 1], "label": [0, 1, 0, 1], "s": [0.0, 1.0, 0.0, 1.0]})
        >>> rerankpd.evaluate(df, query_column="q", label_column="label", score_columns="s",
        ...                   metrics=["mrr@10"]).compare(n_resamples=100)[["ranking", "mean_delta", "wins"]]
          ranking  mean_delta  wins
        0       s         0.5     2
        """
        baseline = self.baseline if baseline is None else baseline
        if baseline not in self._values:
            raise KeyError(f"baseline {baseline!r} was not evaluated; the rankings are {self.rankings}")
        one_of("test", test, TESTS)
        one_of("correction", correction, ("holm", None))
        n_resamples = whole("n_resamples", n_resamples, minimum=1)
        rows = []
        for name in self.rankings:
            if name == baseline:
                continue
            for j, metric in enumerate(self.metrics):
                base, ours = self._values[baseline][:, j], self._values[name][:, j]
                delta = ours - base
                tie = np.isclose(ours, base, rtol=0, atol=1e-12)
                rows.append(
                    {
                        "ranking": name,
                        "metric": metric,
                        "baseline": baseline,
                        "baseline_mean": base.mean() if len(base) else np.nan,
                        "mean": ours.mean() if len(ours) else np.nan,
                        "mean_delta": delta.mean() if len(delta) else np.nan,
                        "p_value": paired_p_value(np.where(tie, 0.0, delta), test, n_resamples, seed),
                        "wins": int((~tie & (delta > 0)).sum()),
                        "ties": int(tie.sum()),
                        "losses": int((~tie & (delta < 0)).sum()),
                    }
                )
        columns = [
            "ranking",
            "metric",
            "baseline",
            "baseline_mean",
            "mean",
            "mean_delta",
            "p_value",
            "p_adjusted",
            "wins",
            "ties",
            "losses",
        ]
        table = pd.DataFrame(rows, columns=columns)
        p = table["p_value"].to_numpy(dtype=np.float64)
        table["p_adjusted"] = holm(p) if correction == "holm" else p
        return table

    # ------------------------------------------------------------------------------------------ show
    def plot(self, metric: str | None = None, baseline: str | None = None, confidence: float = 0.95):
        """A matplotlib Figure of three panels (see :mod:`rerankpd.evaluation.plots`): each metric's mean per
        ranking (from 0); each ranking's mean difference against ``baseline`` with its paired ``confidence``
        interval; and the per-query difference of ``metric`` (default: the first) against ``baseline``,
        sorted. Returns the Figure (``fig.savefig(path)``), as :meth:`rerankpd.CascadeCurve.plot` does."""
        from .plots import evaluation_figure

        metric = self.metrics[0] if metric is None else metric
        baseline = self.baseline if baseline is None else baseline
        self.values(baseline, metric)  # raises KeyError naming what exists
        return evaluation_figure(self, metric, baseline, confidence)

    def to_dict(self, per_query: bool = False) -> dict:
        """Plain JSON-ready data: metrics, baseline, query count, the summary rows (and per-query values)."""
        summary = self.summary.reset_index()
        out = {
            "metrics": self.metrics,
            "baseline": self.baseline,
            "queries": len(self.queries),
            "summary": [{k: _plain(v) for k, v in row.items()} for row in summary.to_dict("records")],
        }
        if per_query:
            out["per_query"] = [{k: _plain(v) for k, v in row.items()} for row in self.per_query.to_dict("records")]
        return out

    def __repr__(self) -> str:
        return f"Evaluation of {len(self.rankings)} rankings on {len(self.queries)} queries\n{self.to_string()}"

    def _repr_html_(self) -> str:
        head = (
            f"<p><b>Evaluation</b> of {len(self.rankings)} rankings on {len(self.queries)} queries "
            f"(baseline {html.escape(str(self.baseline))}; <code>.compare()</code> for significance, "
            "<code>.plot()</code> for the picture)</p>"
        )
        return head + self.summary.to_html(float_format=lambda v: f"{v:.4f}", classes="rerankpd-evaluation", na_rep="-")


def _plain(value: Any) -> Any:
    if value is pd.NA:
        return None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return None if np.isnan(value) else float(value)
    return value


def _named_rerankers(rerankers: Any) -> dict[str, Any]:
    from ..rerankers.base import describe

    if rerankers is None:
        return {}
    if isinstance(rerankers, dict):
        return {str(k): v for k, v in rerankers.items()}
    items = rerankers if isinstance(rerankers, (list, tuple)) else [rerankers]
    named: dict[str, Any] = {}
    for item in items:
        name = item if isinstance(item, str) else str(item.name) if _composite(item) else describe(item).name
        if name in named:
            raise ConfigurationError(f"rerankers: two are named {name!r}; pass a dict {{label: reranker}}")
        named[name] = item
    return named


def _needs_text(df: pd.DataFrame, ranking: Any) -> bool:
    """Whether a ranking reads the text column: a score column does not, nor a fusion of score columns only."""
    if isinstance(ranking, str) and ranking in df.columns:
        return False
    parts = getattr(ranking, "rankings", None)
    if _composite(ranking) and isinstance(parts, dict):
        return any(_needs_text(df, part) for part in parts.values())
    return True


# ---------------------------------------------------------------------------------------------- public
def evaluate(
    df: pd.DataFrame,
    query: str | None = None,
    column: Any = "text",
    *,
    query_column: Any = None,
    label_column: Any,
    rerankers: Any = None,
    score_columns: Any = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    baseline: str = ORIGINAL,
    cache: bool | str | os.PathLike = True,
    progress: bool | None = None,
    qrels: pd.DataFrame | None = None,
    id_column: Any = None,
    gain: str = "linear",
    skip_empty: bool = False,
) -> Evaluation:
    """Evaluate the frame's rankings against its relevance labels (trec_eval's definitions; see the module).

    Parameters
    ----------
    df, query, column, query_column
        As for :func:`rerankpd.rerank`: the frame, one query for all rows or a column of each row's query,
        and the text column the rerankers score.
    label_column
        Each row's relevance: graded (finite numbers >= 0; relevant means > 0) or booleans; missing means 0.
        Infinite labels are refused, and under ``gain="exponential"`` labels above 1023 (whose gain
        2^label - 1 is not a finite number).
    rerankers
        A name, a reranker object, a composite ranking (a :class:`rerankpd.Cascade` or a :class:`rerankpd.Fusion`),
        a list of them, or a dict ``{label: ranking}``; each reranker runs once through :func:`rerankpd.rerank`
        (score cache, batching, retries, progress bar), however many rankings use it. A composite is named by
        its ``name`` (``"bm25->e5"``) unless a dict labels it; its ``pairs_sent`` counts the pairs its rerankers
        need.
    score_columns
        A column name or a list of them holding scores the frame already has (e.g. the retriever's);
        higher ranks first.
    metrics
        Names such as ``"ndcg@10"``, ``"mrr@10"``, ``"map"``, ``"recall@10"``, ``"precision@10"``.
    baseline
        The ranking :meth:`Evaluation.compare` and :meth:`Evaluation.plot` compare against by default;
        ``"original"`` (the frame's own row order within each query) is always evaluated.
    cache, progress
        Passed to each reranker's run.
    qrels
        The collection's judgments, a frame of three columns (query, document, label), for relevant
        documents the frame does not hold: they count in recall, AP and the ideal DCG. The document is
        matched to ``column``'s text, or to ``id_column`` when given. A row repeated with the same label
        counts once; a document judged twice with different labels is refused (the rows are named).
    id_column
        A column of document ids: ``qrels`` documents are matched to it, and rows with equal scores are
        ordered by id descending (compared as strings), trec_eval's rule, so the numbers equal trec_eval's
        and ir-measures'. Without it, equal scores keep their input order.
    gain
        nDCG's gain: ``"linear"`` (the label) or ``"exponential"`` (2^label - 1).
    skip_empty
        Leave out queries with no relevant judgment (by default they are kept and score 0).

    Returns
    -------
    Evaluation
    """
    judged = judgments(
        df,
        query,
        column,
        query_column=query_column,
        label_column=label_column,
        metrics=metrics,
        qrels=qrels,
        id_column=id_column,
        gain=gain,
        skip_empty=skip_empty,
        text_needed=any(_needs_text(df, r) for r in _named_rerankers(rerankers).values()),
    )
    rankings: dict[str, np.ndarray] = {ORIGINAL: -np.arange(len(df), dtype=np.float64)}
    costs: dict[str, dict] = {}
    columns = (
        []
        if score_columns is None
        else (
            [score_columns]
            if isinstance(score_columns, str) or not isinstance(score_columns, (list, tuple))
            else list(score_columns)
        )
    )
    for name in columns:
        if str(name) in rankings:
            raise ConfigurationError(f"score_columns: {name!r} repeats a ranking name")
        rankings[str(name)] = _score_column(df, name)
    named = _named_rerankers(rerankers)
    for name in named:
        if name in rankings:
            raise ConfigurationError(f"rerankers: {name!r} repeats a ranking name; pass a dict {{label: reranker}}")
    if baseline not in rankings and baseline not in named:
        raise KeyError(f"baseline {baseline!r} is not one of the rankings {[*rankings, *named]}")
    run = RankingRun(df, query, column, query_column, cache, progress)
    try:
        for name, ranking in named.items():
            rankings[name], costs[name] = run._ranking(ranking)
    finally:
        run.close()
    values = {name: judged.values(scores) for name, scores in rankings.items()}
    logger.info("evaluated %d rankings on %d queries", len(values), len(judged.queries))
    return Evaluation(values, judged.names, judged.queries, judged.n_relevant, costs, baseline)
