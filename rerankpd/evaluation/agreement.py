"""Do two rerankers agree? Score one random sample of rows with both, and compare the rankings per query.

Before paying for a hosted reranker, or switching to a cheaper one, check that it ranks like the one you
trust: that DMXAPI's ``bge-reranker-v2-m3-free`` agrees with ``BAAI/bge-reranker-v2-m3`` run locally, or
that ``bm25`` agrees with an expensive model well enough for a first pass. Both rerankers score the same
seeded sample through the ordinary pipeline (so the score cache applies: a second check costs nothing), and
:class:`Agreement` holds, per query: Spearman's and Kendall's rank correlation, the largest absolute score
difference (meaningful when both give scores on one scale, e.g. probabilities), and the overlap of the two
top-10s. The correlations need scipy (in ``rerankpd[eval]`` and ``rerankpd[local]``); ``.plot()`` needs
matplotlib (``rerankpd[eval]``).

Examples
--------
>>> import pandas as pd, rerankpd
>>> df = pd.DataFrame({"text": ["cats purr", "dogs bark", "cats and dogs", "fish swim", "a cat sat"]})
>>> check = rerankpd.agreement(df, "cats", a="bm25", b="bm25", cache=False, progress=False)
>>> [round(x, 9) for x in (check.spearman, check.kendall, check.max_abs_diff, check.top10_overlap)]
[1.0, 1.0, 0.0, 1.0]
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..core.options import whole
from ..errors import MissingDependencyError

__all__ = ["Agreement", "agreement"]

TOP_K = 10


@dataclass(frozen=True)
class Agreement:
    """How two rerankers' scores of the same rows compare.

    Attributes
    ----------
    a, b
        The two rerankers' labels.
    scores
        One row per sampled row that both scored (index: the input frame's labels): ``query``, ``score_a``,
        ``score_b``.
    per_query
        One row per query (index: the query): ``rows``, ``spearman``, ``kendall``, ``max_abs_diff``,
        ``top10_overlap`` (the share of the smaller top-10 found in both). Correlations are NaN for a query
        with fewer than two rows or with constant scores.
    """

    a: str
    b: str
    scores: pd.DataFrame
    per_query: pd.DataFrame

    @property
    def spearman(self) -> float:
        """Spearman's rank correlation, averaged over queries."""
        return _mean(self.per_query["spearman"])

    @property
    def kendall(self) -> float:
        """Kendall's tau-b, averaged over queries."""
        return _mean(self.per_query["kendall"])

    @property
    def max_abs_diff(self) -> float:
        """The largest absolute score difference over every sampled row."""
        return float(self.per_query["max_abs_diff"].max()) if len(self.per_query) else math.nan

    @property
    def top10_overlap(self) -> float:
        """Top-10 overlap, averaged over queries."""
        return _mean(self.per_query["top10_overlap"])

    def to_dict(self) -> dict:
        """The summary figures, for JSON."""
        return {
            "a": self.a,
            "b": self.b,
            "rows": len(self.scores),
            "queries": len(self.per_query),
            "spearman": self.spearman,
            "kendall": self.kendall,
            "max_abs_diff": self.max_abs_diff,
            "top10_overlap": self.top10_overlap,
        }

    def __repr__(self) -> str:
        return (
            f"agreement of {self.a} and {self.b} over {len(self.scores)} rows, {len(self.per_query)} "
            f"quer{'y' if len(self.per_query) == 1 else 'ies'}: Spearman {self.spearman:.3f}, Kendall "
            f"{self.kendall:.3f}, largest |a - b| {self.max_abs_diff:.4g}, top-10 overlap "
            f"{self.top10_overlap:.2f}"
        )

    def plot(self, ax: Any = None) -> Any:
        """A scatter plot of the two scores of each sampled row (one colour per query, up to 10); the Axes.

        Needs matplotlib (imported only here).
        """
        try:
            import matplotlib.pyplot as plt
        except ImportError as exc:
            raise MissingDependencyError("Agreement.plot needs matplotlib: pip install 'rerankpd[eval]'") from exc
        if ax is None:
            _, ax = plt.subplots(figsize=(5, 5))
        queries = self.per_query.index
        if 1 < len(queries) <= 10:
            for query, rows in self.scores.groupby("query", sort=False):
                ax.scatter(rows["score_a"], rows["score_b"], s=12, alpha=0.7, label=f"{query!s:.30}")
            ax.legend(fontsize="small")
        else:
            ax.scatter(self.scores["score_a"], self.scores["score_b"], s=12, alpha=0.7)
        ax.set_xlabel(f"{self.a} score")
        ax.set_ylabel(f"{self.b} score")
        ax.set_title(f"Spearman {self.spearman:.3f}, top-10 overlap {self.top10_overlap:.2f}")
        return ax


def _mean(values: pd.Series) -> float:
    values = values.dropna()
    return float(values.mean()) if len(values) else math.nan


def _label(reranker: Any) -> str:
    from ..rerankers.base import describe

    if reranker is None or isinstance(reranker, str):
        return reranker or "default reranker"
    spec = describe(reranker)
    return f"{spec.name} ({spec.model})" if spec.model else spec.name


def _usable_text(series: pd.Series) -> np.ndarray:
    return np.fromiter((isinstance(v, str) and bool(v.strip()) for v in series), dtype=bool, count=len(series))


def _sample_positions(df: pd.DataFrame, column: Any, query_column: Any, sample: int | None, seed: int) -> np.ndarray:
    """Up to ``sample`` random positions of rows with text, per query; sorted."""
    usable = _usable_text(df[column]) if column in df.columns else np.ones(len(df), dtype=bool)
    if query_column is not None and query_column in df.columns:
        codes = pd.factorize(df[query_column], use_na_sentinel=True)[0]
        usable &= codes >= 0
    else:
        codes = np.zeros(len(df), dtype=np.int64)
    rng = np.random.default_rng(seed)
    chosen = []
    for group in pd.unique(codes[usable]):
        members = np.flatnonzero(usable & (codes == group))
        chosen.append(
            members if sample is None or len(members) <= sample else rng.choice(members, size=sample, replace=False)
        )
    return np.sort(np.concatenate(chosen)) if chosen else np.empty(0, dtype=np.int64)


def _top_overlap(a: np.ndarray, b: np.ndarray) -> float:
    k = min(TOP_K, len(a))
    if k == 0:
        return math.nan
    top_a = set(np.argsort(-a, kind="stable")[:k].tolist())
    top_b = set(np.argsort(-b, kind="stable")[:k].tolist())
    return len(top_a & top_b) / k


def _compare(table: pd.DataFrame) -> pd.DataFrame:
    try:
        from scipy import stats
    except ImportError as exc:
        raise MissingDependencyError(
            "rerankpd.agreement needs scipy: pip install 'rerankpd[eval]' (or 'rerankpd[local]')"
        ) from exc
    rows = []
    for query, group in table.groupby("query", sort=False):
        a, b = group["score_a"].to_numpy(), group["score_b"].to_numpy()
        spearman = kendall = math.nan
        if len(a) > 1:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # constant input: NaN, which is what we report
                spearman = float(stats.spearmanr(a, b).statistic)
                kendall = float(stats.kendalltau(a, b).statistic)
        rows.append(
            {
                "query": query,
                "rows": len(a),
                "spearman": spearman,
                "kendall": kendall,
                "max_abs_diff": float(np.max(np.abs(a - b))),
                "top10_overlap": _top_overlap(a, b),
            }
        )
    columns = ["query", "rows", "spearman", "kendall", "max_abs_diff", "top10_overlap"]
    return pd.DataFrame(rows, columns=columns).set_index("query")


def agreement(
    df: pd.DataFrame,
    query: str | None = None,
    column: Any = "text",
    *,
    query_column: Any = None,
    a: Any,
    b: Any,
    sample: int | None = 200,
    seed: int = 0,
    cache: Any = True,
    progress: bool | None = None,
) -> Agreement:
    """Score a seeded random sample of rows with rerankers ``a`` and ``b`` and compare their rankings.

    Parameters
    ----------
    df, query, column, query_column
        As for :func:`rerankpd.rerank`.
    a, b
        The two rerankers: names or objects, as ``reranker=`` takes them.
    sample
        Rows drawn at random from each query's rows with text (all of them when there are fewer); None
        takes every row.
    seed
        The random seed: the same seed draws the same rows.
    cache, progress
        As for :func:`rerankpd.rerank`; both rerankers score through the score cache.

    Returns
    -------
    Agreement
        Per-query Spearman, Kendall, largest absolute score difference and top-10 overlap; ``.plot()``.

    Examples
    --------
    >>> import pandas as pd, rerankpd
    >>> df = pd.DataFrame({"text": ["cats purr", "dogs bark", "cats and dogs", "a cat"]})
    >>> rerankpd.agreement(df, "cats", a="bm25", b="bm25", cache=False, progress=False).per_query["rows"].tolist()
    [4]
    """
    from ..api import scores

    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"agreement expects a pandas DataFrame, got {type(df).__name__}")
    sample = whole("sample", sample, minimum=2, allow_none=True)
    seed = whole("seed", seed, minimum=0)
    subset = df.iloc[_sample_positions(df, column, query_column, sample, seed)]
    options = dict(query_column=query_column, cache=cache, progress=progress)
    score_a = scores(subset, query, column, reranker=a, **options)
    score_b = scores(subset, query, column, reranker=b, **options)
    queries = subset[query_column] if query_column is not None else pd.Series(query, index=subset.index)
    table = pd.DataFrame(
        {"query": queries.to_numpy(dtype=object), "score_a": score_a.to_numpy(), "score_b": score_b.to_numpy()},
        index=subset.index,
    ).dropna(subset=["score_a", "score_b"])
    label_a, label_b = _label(a), _label(b)
    if label_a == label_b:
        label_a, label_b = f"{label_a} [a]", f"{label_b} [b]"
    return Agreement(label_a, label_b, table, _compare(table))
