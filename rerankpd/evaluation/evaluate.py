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

from ..core.options import boolean, one_of, whole
from ..errors import ConfigurationError, warn_user
from ..rerankers import Reranker, get_reranker
from ..run import pipeline
from .metrics import DEFAULT_METRICS, GAINS, Metric, parse_metric, per_query
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


# ---------------------------------------------------------------------------------------------- inputs
def _labels(df: pd.DataFrame, label_column: Any) -> np.ndarray:
    if label_column not in df.columns:
        raise KeyError(
            f"label_column {label_column!r} is not a column of the frame; its columns are {list(df.columns)!r}"
        )
    series = df[label_column]
    try:
        values = pd.to_numeric(series.astype("float64") if series.dtype == bool else series, errors="raise")
    except (TypeError, ValueError):
        raise TypeError(
            f"label_column {label_column!r} must hold numbers >= 0 or booleans; it holds {series.dtype}"
        ) from None
    labels = np.asarray(values, dtype=np.float64)
    labels = np.where(np.isnan(labels), 0.0, labels)  # a missing label means not relevant
    infinite = np.flatnonzero(np.isinf(labels))
    if len(infinite):
        raise ValueError(
            f"label_column {label_column!r}: the row with index {df.index[infinite[0]]!r} has label "
            f"{labels[infinite[0]]:g}; labels must be finite numbers >= 0 (relevant means > 0)"
        )
    bad = np.flatnonzero(labels < 0)
    if len(bad):
        raise ValueError(
            f"label_column {label_column!r}: the row with index {df.index[bad[0]]!r} has label "
            f"{labels[bad[0]]:g}; labels must be >= 0 (relevant means > 0): map 'not relevant' "
            "grades to 0 first"
        )
    return labels


#: The largest label ``gain="exponential"`` takes: 2^label - 1 overflows a float64 from 2^1024 on.
MAX_EXPONENTIAL_LABEL = 1023.0


def _check_gain(labels: np.ndarray, index: pd.Index, gain: str, where: str) -> None:
    """Refuse a label whose gain is not a finite number (NaN nDCG otherwise), naming its row."""
    if gain != "exponential" or not len(labels):
        return
    big = np.flatnonzero(labels > MAX_EXPONENTIAL_LABEL)
    if len(big):
        raise ValueError(
            f"{where}: the row with index {index[big[0]]!r} has label {labels[big[0]]:g}, whose gain "
            f"2^label - 1 under gain='exponential' is not a finite number; labels up to "
            f"{MAX_EXPONENTIAL_LABEL:g} work (graded labels are usually 0-4), or use gain='linear'"
        )


def _query_codes(df: pd.DataFrame, query: str | None, query_column: Any) -> tuple[np.ndarray, list]:
    if query is not None:
        return np.zeros(len(df), dtype=np.int64), [query]
    codes, uniques = pd.factorize(df[query_column], use_na_sentinel=True)
    missing = int((codes < 0).sum())
    if missing:
        warn_user(f"evaluate: {missing} rows have no query in {query_column!r}; they are left out")
    return codes.astype(np.int64), list(uniques)


def _score_column(df: pd.DataFrame, name: Any) -> np.ndarray:
    if name not in df.columns:
        raise KeyError(f"score_columns: {name!r} is not a column of the frame; its columns are {list(df.columns)!r}")
    try:
        return np.asarray(pd.to_numeric(df[name], errors="raise"), dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"score_columns: column {name!r} must hold numbers (higher ranks first)") from None


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


def _composite(ranking: Any) -> bool:
    """A composite ranking (see :class:`RankingRun`): it has ``evaluation_scores(run)``."""
    return callable(getattr(ranking, "evaluation_scores", None))


def _judgments(df, codes, labels, queries, qrels, column, id_column, gain) -> tuple[np.ndarray, np.ndarray]:
    """The judged set per query: the frame's rows, plus qrels rows whose document the frame does not hold."""
    if qrels is None:
        return codes, labels
    if not isinstance(qrels, pd.DataFrame) or qrels.shape[1] != 3:
        raise TypeError(
            "qrels must be a DataFrame of three columns: query, document (text, or id when id_column= is given), label"
        )
    q_labels = _labels(pd.DataFrame({"qrels label": qrels.iloc[:, 2]}, index=qrels.index), "qrels label")
    _check_gain(q_labels, qrels.index, gain, "qrels")
    qrels, q_labels = _distinct_judgments(qrels, q_labels)
    q_query, q_doc = qrels.iloc[:, 0], qrels.iloc[:, 1]
    key = df[id_column if id_column is not None else column]
    index = pd.Index(queries)
    q_codes = index.get_indexer(q_query)
    held = pd.MultiIndex.from_arrays([codes, key.to_numpy()])
    extra = (q_codes >= 0) & ~pd.MultiIndex.from_arrays([q_codes, q_doc.to_numpy()]).isin(held)
    return np.concatenate([codes, q_codes[extra]]), np.concatenate([labels, q_labels[extra]])


def _distinct_judgments(qrels: pd.DataFrame, labels: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """``qrels`` with each (query, document) judged once: a repeated row with the same label counts once (as in
    trec_eval); a document judged twice with different labels is refused, naming the rows."""
    pairs = pd.DataFrame(
        {"query": qrels.iloc[:, 0].to_numpy(), "doc": qrels.iloc[:, 1].to_numpy(), "label": labels}, index=qrels.index
    )
    repeated = pairs.duplicated(["query", "doc"], keep=False).to_numpy()
    if not repeated.any():
        return qrels, labels
    clashes = pairs[repeated].groupby(["query", "doc"], sort=False, dropna=False)["label"].nunique()
    clashes = clashes[clashes > 1]
    if len(clashes):
        query, doc = clashes.index[0]
        rows = pairs.index[repeated & (pairs["query"] == query).to_numpy() & (pairs["doc"] == doc).to_numpy()]
        raise ValueError(
            f"qrels judge document {doc!r} of query {query!r} more than once with different labels "
            f"(rows with index {', '.join(map(repr, rows.tolist()))}; {len(clashes)} such documents "
            "in all); keep one judgment per query and document"
        )
    kept = ~pairs.duplicated(["query", "doc"], keep="first").to_numpy()
    logger.info("evaluate: %d repeated qrels rows counted once", int((~kept).sum()))
    return qrels[kept], labels[kept]


def _tokens(usage: dict) -> int:
    if "total_tokens" in usage:
        return int(usage["total_tokens"])
    return int(sum(v for k, v in usage.items() if "tokens" in k))


# ---------------------------------------------------------------------------------------------- rankings
class RankingRun:
    """What a composite ranking sees of one :func:`evaluate` call: the frame, and its rows' scores, memoised.

    A **composite ranking** (:class:`rerankpd.Cascade`; a fusion of rankings) is any object with one method::

        def evaluation_scores(self, run: RankingRun) -> numpy.ndarray

    returning one float64 score per row of ``run.df`` (higher ranks first; NaN ranks last, ties and NaNs in
    row order, as every ranking of :func:`evaluate`). It gets what it combines from :meth:`scores`, never by
    running a reranker itself, so each underlying run happens once per evaluation however many rankings
    share it, and the pairs it sends are counted against the ranking that asked (the memo's hits included:
    a ranking's ``pairs_sent`` is what it needs, whether or not another ranking paid for it first).
    ``evaluate(rerankers={"label": composite})`` names it in the summary.

    Attributes
    ----------
    df, query, column, query_column, cache, progress
        As :func:`evaluate` was given them.
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


class Judged:
    """A frame's judgments, ready to score any ranking of its rows: the one place :func:`evaluate` and
    :func:`rerankpd.cascade_curve` compute metrics (so their figures agree exactly). Made by :func:`judgments`.

    ``values(scores)`` is the (queries x metrics) array of one ranking, given one score per row (higher
    first, NaN last); ``names``, ``queries`` and ``n_relevant`` describe its rows and columns.
    """

    def __init__(
        self,
        parsed: list[Metric],
        codes: np.ndarray,
        queries: list,
        labels: np.ndarray,
        judged: tuple[np.ndarray, np.ndarray],
        gain: str,
        skip_empty: bool,
        tie_ids: np.ndarray | None = None,
    ) -> None:
        self.parsed, self.names = parsed, list(dict.fromkeys(m.name for m in parsed))
        self._codes, self._labels, self._judged, self._gain = codes, labels, judged, gain
        self._tie_ids = tie_ids
        judged_codes, judged_labels = judged
        n_relevant = np.bincount(
            judged_codes[judged_codes >= 0], weights=judged_labels[judged_codes >= 0] > 0, minlength=len(queries)
        )
        self._n_queries = len(queries)
        self._keep = n_relevant > 0 if skip_empty else np.ones(len(queries), dtype=bool)
        self.queries = [q for q, k in zip(queries, self._keep) if k]
        self.n_relevant = n_relevant[self._keep]

    def values(self, scores: np.ndarray) -> np.ndarray:
        """One ranking's per-query values: a float64 array of (queries x metrics)."""
        by_metric = per_query(
            self.parsed,
            self._codes,
            scores,
            self._labels,
            n_queries=self._n_queries,
            judged=self._judged,
            gain=self._gain,
            tie_ids=self._tie_ids,
        )
        table = np.column_stack([by_metric[m] for m in self.names]) if self.names else np.empty((self._n_queries, 0))
        return table[self._keep]


def judgments(
    df: pd.DataFrame,
    query: str | None = None,
    column: Any = "text",
    *,
    query_column: Any = None,
    label_column: Any,
    metrics: Sequence[str] = DEFAULT_METRICS,
    qrels: pd.DataFrame | None = None,
    id_column: Any = None,
    gain: str = "linear",
    skip_empty: bool = False,
    text_needed: bool = True,
) -> Judged:
    """Check :func:`evaluate`'s judgment arguments and read them once (see :class:`Judged`)."""
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"evaluate expects a pandas DataFrame, got {type(df).__name__}")
    if (query is None) == (query_column is None):
        raise ConfigurationError("give exactly one of query (one query for every row) and query_column")
    text_needed = text_needed or (qrels is not None and id_column is None)
    for name, value in (
        ("column", column if text_needed else None),
        ("query_column", query_column),
        ("id_column", id_column),
    ):
        if value is not None and value not in df.columns:
            raise KeyError(f"{name} {value!r} is not a column of the frame; its columns are {list(df.columns)!r}")
    one_of("gain", gain, GAINS)
    skip_empty = boolean("skip_empty", skip_empty)
    if isinstance(metrics, str):
        metrics = [metrics]
    parsed = [parse_metric(m) for m in metrics]
    labels = _labels(df, label_column)
    _check_gain(labels, df.index, gain, f"label_column {label_column!r}")
    codes, queries = _query_codes(df, query, query_column)
    judged = _judgments(df, codes, labels, queries, qrels, column, id_column, gain)
    tie_ids = None if id_column is None else df[id_column].to_numpy(dtype=object)
    return Judged(parsed, codes, queries, labels, judged, gain, skip_empty, tie_ids)
