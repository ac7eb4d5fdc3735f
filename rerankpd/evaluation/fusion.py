"""Hybrid rankings: fuse score columns and rerankers into one ranking per query, and learn the weights.

``df.rerank.fuse(["bm25_score", "e5"], query_column="q", method="rrf")`` ranks each query's rows by a blend
of several rankings: score columns the frame already has (a first stage's BM25 or dense scores) and
rerankers, each run through :func:`rerankpd.rerank` (score cache, batching, retries, progress) once.

Within each query (never over the whole frame), each ranking's scores are normalised (``norm``), then
combined (``method``):

``norm``
    ``"min-max"`` (default): (s - min) / (max - min), with the range floored at 1e-9 (a query whose rows
    all score the same gets 0); ``"zmuv"``: (s - mean) / std (population std, floored at 1e-9);
    ``"rank"``: 1 - (r - 1) / n for the row ranked r of the n the ranking scored; ``"none"``: the raw
    scores. ``method="rrf"`` uses ranks, so ``norm`` does not change it.
``method``
    ``"rrf"``: the sum over rankings of 1 / (k + r) (reciprocal rank fusion, ``k=60``);
    ``"combsum"``: the sum of the normalised scores; ``"combmnz"``: that sum times the number of
    rankings that scored the row; ``"wsum"``: the sum of ``weights`` x normalised score (equal weights
    1/n by default); ``"max"``: the largest normalised score.

These are the definitions of ranx's ``fuse`` (``norm="none"`` is ranx's ``norm=None``; ``method`` names
``combsum``, ``combmnz``, ``max`` are its ``sum``, ``mnz``, ``max``), and the tests hold every method and
norm to it within 1e-9.

**Rows missing from a ranking.** A NaN score (a row without text, a cascade's row below its candidates, a
row that failed with ``errors="coerce"``) means the ranking did not rank that row, as a run file omits a
document it did not retrieve: the row is left out of that ranking's normalisation and ranks, adds 0 to the
sums (``rrf``, ``combsum``, ``wsum``), does not count towards ``combmnz``'s multiplier, and is skipped by
``max``. A row that no ranking scored gets NaN and no rank, and sorts last, like a row without text in
:func:`rerankpd.rerank`.

**Ties.** Within a ranking, rows with equal scores take consecutive ranks in row order (``rrf`` and
``norm="rank"``), and rows with equal fused scores are ranked in row order, as in :func:`rerankpd.rerank`.
ranx orders tied documents by its own sort, which is unspecified, so on tied scores its ``rrf`` and
``rank`` values may be those of another order of the tied rows; every score-based norm is unaffected.

Examples
--------
>>> import pandas as pd, rerankpd
>>> df = pd.DataFrame({"q": ["a", "a", "a", "b", "b"], "bm25": [3.0, 2.0, 1.0, 5.0, 4.0],
...                    "dense": [0.1, 0.9, 0.5, 0.2, 0.8]})
>>> out = rerankpd.fuse(df, ["bm25", "dense"], query_column="q", method="rrf")
>>> out.index.tolist(), out["fusion_rank"].tolist()
([1, 0, 2, 3, 4], [1, 2, 3, 1, 2])
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..api import estimate as estimate_one
from ..core.options import boolean, number, one_of, whole
from ..errors import ConfigurationError, warn_user
from ..pairs import rank_within_groups, sort_order, top_n_mask
from ..rerankers import available_rerankers
from ..rerankers.base import describe
from ..run.arguments import ERRORS, check_arguments
from ..run.estimate import Estimate
from .rankings import RankingRuns, is_composite, no_cost, query_groups

if TYPE_CHECKING:
    from .fusion_fit import FusionFit

__all__ = ["METHODS", "NORMS", "Fusion", "FusionEstimate", "fuse", "fuse_scores", "normalize"]

logger = logging.getLogger(__name__)

METHODS = ("rrf", "combsum", "combmnz", "wsum", "max")
NORMS = ("min-max", "zmuv", "rank", "none")
SCORE, RANK = "fusion_score", "fusion_rank"
#: A reranker's raw scores go to ``fusion_score_<name>``; score columns given as rankings are already there.
INPUT_PREFIX = "fusion_score_"
#: ranx's floor for a query's score range (min-max) and standard deviation (zmuv).
SPREAD_FLOOR = 1e-9
#: fit_fusion refuses a grid larger than this (choose a coarser step).
MAX_GRID = 20_000


# ---------------------------------------------------------------------------------------------- the core
def _n_groups(group: np.ndarray) -> int:
    return int(group.max()) + 1 if len(group) and group.max() >= 0 else 0


def normalize(scores: np.ndarray, group: np.ndarray, norm: str = "min-max") -> np.ndarray:
    """One ranking's scores normalised within each query (``group``: each row's query code, -1 for none).

    NaN stays NaN (the ranking did not score the row), and so does a row without a query.

    >>> normalize(np.array([2.0, 4.0, np.nan, 7.0]), np.array([0, 0, 0, 1])).tolist()
    [0.0, 1.0, nan, 0.0]
    >>> normalize(np.array([2.0, 4.0, 3.0]), np.zeros(3, dtype=int), "rank").tolist()
    [0.33333333333333337, 1.0, 0.6666666666666667]
    """
    one_of("norm", norm, NORMS)
    scores = np.asarray(scores, dtype=np.float64)
    group = np.asarray(group, dtype=np.int64)
    present = ~np.isnan(scores) & (group >= 0)
    out = np.full(len(scores), np.nan)
    if norm == "none":
        out[present] = scores[present]
        return out
    n_groups = _n_groups(group)
    g, x = group[present], scores[present]
    count = np.bincount(g, minlength=n_groups)
    if norm == "rank":
        ranks = rank_within_groups(np.where(present, scores, np.nan), group)[present]
        out[present] = 1 - ((ranks - 1) / count[g])
    elif norm == "min-max":
        low, high = np.full(n_groups, np.inf), np.full(n_groups, -np.inf)
        np.minimum.at(low, g, x)
        np.maximum.at(high, g, x)
        out[present] = (x - low[g]) / np.maximum(high - low, SPREAD_FLOOR)[g]
    else:  # zmuv: sums in row order, as ranx's (numba's) mean and std add up
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.bincount(g, weights=x, minlength=n_groups) / count
            centred = x - mean[g]
            std = np.sqrt(np.bincount(g, weights=centred * centred, minlength=n_groups) / count)
        out[present] = centred / np.maximum(std, SPREAD_FLOOR)[g]
    return out


def _contributions(
    scores: Sequence[np.ndarray], group: np.ndarray, method: str, norm: str, k: float
) -> list[np.ndarray]:
    """Each ranking's per-row contribution before combining (NaN where it did not score the row)."""
    if method == "rrf":
        out = []
        for s in scores:
            s = np.asarray(s, dtype=np.float64)
            ranks = rank_within_groups(np.where(group >= 0, s, np.nan), group)
            contribution = np.full(len(s), np.nan)
            ranked = ranks > 0
            contribution[ranked] = 1 / ((k + (ranks[ranked] - 1)) + 1)
            out.append(contribution)
        return out
    return [normalize(s, group, norm) for s in scores]


def _combine(contributions: Sequence[np.ndarray], method: str, weights: Sequence[float] | None) -> np.ndarray:
    """Add up the rankings' contributions row by row, in ranking order (as ranx does)."""
    n = len(contributions[0])
    present = [~np.isnan(c) for c in contributions]
    scored = np.logical_or.reduce(present)
    if method == "max":
        total = np.full(n, -np.inf)
        for c, p in zip(contributions, present):
            total = np.maximum(total, np.where(p, c, -np.inf))
    else:
        total = np.zeros(n)
        if method == "wsum" and weights is None:
            raise ConfigurationError("method='wsum' needs weights")
        for r, (c, p) in enumerate(zip(contributions, present)):
            value = np.where(p, c, 0.0)
            total = total + (weights[r] * value if weights is not None and method == "wsum" else value)
        if method == "combmnz":
            total = total * np.add.reduce(present, dtype=np.int64)
    return np.where(scored, total, np.nan)


def fuse_scores(
    scores: Sequence[np.ndarray],
    group: np.ndarray,
    method: str = "rrf",
    norm: str = "min-max",
    weights: Sequence[float] | None = None,
    k: float = 60,
) -> np.ndarray:
    """The fused score of every row: the rankings' ``scores`` (one array per ranking, NaN where a ranking
    did not score the row) normalised within each query of ``group`` and combined by ``method``; NaN for a
    row no ranking scored or without a query (group -1). See the module's notes.

    >>> fuse_scores([np.array([3.0, 2.0, 1.0]), np.array([0.1, 0.9, np.nan])], np.zeros(3, dtype=int),
    ...             method="rrf", k=1).round(4).tolist()
    [0.8333, 0.8333, 0.25]
    """
    one_of("method", method, METHODS)
    one_of("norm", norm, NORMS)
    group = np.asarray(group, dtype=np.int64)
    if not scores:
        raise ConfigurationError("fuse_scores needs at least one ranking")
    if any(len(s) != len(group) for s in scores):
        raise ValueError(
            f"every ranking needs one score per row ({len(group)}); got lengths {[len(s) for s in scores]}"
        )
    if weights is not None and len(weights) != len(scores):
        raise ConfigurationError(f"weights: {len(weights)} weights for {len(scores)} rankings")
    if method == "wsum" and weights is None:
        weights = [1 / len(scores)] * len(scores)
    return _combine(_contributions(scores, group, method, norm, k), method, weights)


# ---------------------------------------------------------------------------------------------- Fusion
def _label_of(item: Any) -> str:
    if isinstance(item, str):
        return item
    if is_composite(item):
        return str(item.name)
    return describe(item).name


def _named(rankings: Any) -> dict[str, Any]:
    if isinstance(rankings, dict):
        named = {str(k): v for k, v in rankings.items()}
    elif isinstance(rankings, (list, tuple)):
        named = {}
        for item in rankings:
            label = _label_of(item)
            if label in named:
                raise ConfigurationError(f"rankings: two are named {label!r}; pass a dict {{label: ranking}}")
            named[label] = item
    else:
        raise TypeError(
            f"rankings must be a list of score columns and rerankers (names or objects), or a dict "
            f"{{label: ranking}}; got {type(rankings).__name__}"
        )
    if len(named) < 2:
        raise ConfigurationError(f"rankings: a fusion needs two or more rankings, got {list(named)}")
    return named


def _weights(weights: Any, names: list[str], method: str) -> tuple[float, ...] | None:
    if weights is None:
        return None
    if method != "wsum":
        raise ConfigurationError(f"weights apply to method='wsum' only; method={method!r} has none")
    if isinstance(weights, dict):
        unknown = [w for w in weights if w not in names]
        if unknown or len(weights) != len(names):
            raise ConfigurationError(f"weights: give one per ranking, keyed by {names}; got {list(weights)}")
        weights = [weights[n] for n in names]
    if isinstance(weights, (str, bytes)) or not isinstance(weights, (list, tuple, np.ndarray, pd.Series)):
        raise ConfigurationError(
            f"weights must be a list of numbers (one per ranking) or a dict keyed by "
            f"{names}; got {type(weights).__name__}"
        )
    if len(weights) != len(names):
        raise ConfigurationError(f"weights: {len(weights)} weights for {len(names)} rankings {names}")
    return tuple(float(number(f"weights[{n!r}]", w)) for n, w in zip(names, weights))  # type: ignore[arg-type]


class Fusion:
    """A ranking made of other rankings: score columns and rerankers fused per query.

    Use it wherever a reranker goes in :func:`rerankpd.evaluate` (``rerankers={"bm25+e5": Fusion(...)}``),
    with :func:`rerankpd.fuse` (``df.rerank.fuse(fusion, query_column="q")``) and with
    :func:`rerankpd.estimate` (``reranker=fusion``: what its rerankers would send).

    Parameters
    ----------
    rankings
        Two or more of: the name of a score column of the frame (higher ranks first), a reranker name
        (``"e5"``, ``"bm25"``, ``"dmxapi"``...), a reranker object, another Fusion; a list (each labelled
        by the column's or reranker's name) or a dict ``{label: ranking}``. A string that names a column
        of the frame means the column.
    method, norm, k
        How to combine and normalise (see the module's notes); ``k`` is RRF's constant.
    weights
        For ``method="wsum"``: one number per ranking (a list in the rankings' order, or a dict by label);
        default equal weights 1/n.
    name
        The label in tables (default like ``"rrf(bm25_score, e5)"``).

    Attributes
    ----------
    fitted : FusionFit or None
        Set by :func:`fit_fusion`: how the weights were chosen and their cross-validated metric.

    Examples
    --------
    >>> Fusion(["bm25_score", "e5"])
    Fusion(['bm25_score', 'e5'], method='rrf', k=60)
    >>> Fusion({"bm25": "bm25_score", "dense": "e5"}, method="wsum", weights=[0.3, 0.7]).name
    'wsum(bm25=0.3, dense=0.7)'
    """

    def __init__(
        self,
        rankings: Any,
        method: str = "rrf",
        *,
        norm: str = "min-max",
        weights: Any = None,
        k: float = 60,
        name: str | None = None,
    ) -> None:
        self.rankings = _named(rankings)
        self.method = one_of("method", method, METHODS)
        self.norm = one_of("norm", norm, NORMS)
        self.k = float(number("k", k, minimum=0))  # type: ignore[arg-type]
        self.weights = _weights(weights, list(self.rankings), self.method)
        self._name = None if name is None else str(name)
        self.fitted: FusionFit | None = None

    @property
    def name(self) -> str:
        if self._name is not None:
            return self._name
        labels = list(self.rankings)
        if self.method == "wsum" and self.weights is not None:
            labels = [f"{n}={w:g}" for n, w in zip(labels, self.weights)]
        return f"{self.method}({', '.join(labels)})"

    def __repr__(self) -> str:
        options = [f"method={self.method!r}"]
        if self.method == "rrf":
            options.append(f"k={self.k:g}")
        else:
            options.append(f"norm={self.norm!r}")
        if self.weights is not None:
            options.append(f"weights={list(self.weights)}")
        if self._name is not None:
            options.append(f"name={self._name!r}")
        text = f"Fusion({list(self.rankings)!r}, {', '.join(options)})"
        return text if self.fitted is None else f"{text}\n  {self.fitted}"

    # ------------------------------------------------------------------------------------------ scoring
    def _parts(self, runs: RankingRuns) -> dict[str, tuple[np.ndarray, dict, str]]:
        """Each ranking's per-row scores, what it cost and what it is (``"column"`` or ``"reranker"``)."""
        parts = {}
        for label, ranking in self.rankings.items():
            if isinstance(ranking, str) and ranking in runs.df.columns:
                parts[label] = (runs.score_column(ranking), no_cost(), "column")
                continue
            if isinstance(ranking, str) and ranking.lower() not in available_rerankers():
                raise KeyError(
                    f"ranking {ranking!r} is neither a column of the frame (its columns are "
                    f"{list(runs.df.columns)!r}) nor a reranker ({', '.join(available_rerankers())})"
                )
            scores, cost = runs.scores(ranking, label)
            parts[label] = (scores, cost, "fusion" if is_composite(ranking) else "reranker")
        return parts

    def _fuse(self, parts: dict, group: np.ndarray) -> np.ndarray:
        return fuse_scores([p[0] for p in parts.values()], group, self.method, self.norm, self.weights, self.k)

    def ranking_scores(self, runs: RankingRuns) -> tuple[np.ndarray, dict]:
        """Each row's fused score over ``runs``' frame and the total cost of the rerankers it ran (the hook
        :class:`rerankpd.evaluation.rankings.RankingRuns` calls; evaluate and fuse go through it)."""
        if runs.evaluating:
            self._warn_in_sample(runs.queries)
        parts = self._parts(runs)
        cost = no_cost()
        for _, part_cost, _ in parts.values():
            for key in cost:
                cost[key] += int(part_cost.get(key, 0))
        return self._fuse(parts, runs.groups), cost

    def evaluation_scores(self, run: Any) -> np.ndarray:
        """Each row's fused score in an evaluation (the composite-ranking hook of
        :class:`rerankpd.evaluation.rankings.RankingRun`: each part comes from ``run.scores``, so a reranker
        runs once per evaluation however many fusions and cascades use it)."""
        groups, queries = query_groups(run.df, run.query, run.query_column)
        self._warn_in_sample(queries)
        parts = {}
        for label, ranking in self.rankings.items():
            if (
                isinstance(ranking, str)
                and ranking not in run.df.columns
                and ranking.lower() not in available_rerankers()
            ):
                raise KeyError(
                    f"ranking {ranking!r} is neither a column of the frame (its columns are "
                    f"{list(run.df.columns)!r}) nor a reranker ({', '.join(available_rerankers())})"
                )
            parts[label] = (run.scores(ranking), no_cost(), "ranking")
        return self._fuse(parts, groups)

    def _warn_in_sample(self, queries: Sequence) -> None:
        """Warn when this fusion's weights were fitted on some of ``queries`` (its figures are then optimistic)."""
        if self.fitted is None:
            return
        seen = set(self.fitted.queries)
        overlap = sum(1 for q in queries if q in seen)
        if overlap:
            warn_user(
                f"{self.name}: its weights were fitted on {overlap} of the {len(queries)} queries "
                "evaluated here, so its figures on them are in-sample (optimistic); for an honest "
                "comparison evaluate its cross-validated scores: "
                "df.assign(learned=fusion.fitted.cv_scores) with score_columns='learned'"
            )

    # ------------------------------------------------------------------------------------------ estimate
    def estimate(
        self,
        df: pd.DataFrame,
        query: str | None = None,
        column: Any = "text",
        *,
        query_column: Any = None,
        cache: bool | str | os.PathLike = True,
    ) -> FusionEstimate:
        """What fusing ``df`` would send: an :class:`rerankpd.Estimate` per reranker among the rankings
        (score columns cost nothing), without sending anything."""
        parts: dict[str, Any] = {}
        columns: list[str] = []
        for label, ranking in self.rankings.items():
            if isinstance(ranking, str) and ranking in df.columns:
                columns.append(label)
            elif is_composite(ranking):
                inner = ranking.estimate(df, query, column, query_column=query_column, cache=cache)
                parts.update({f"{label}/{k}": v for k, v in inner.parts.items()})
                columns.extend(f"{label}/{c}" for c in inner.columns)
            else:
                parts[label] = estimate_one(df, query, column, query_column=query_column, reranker=ranking, cache=cache)
        return FusionEstimate(self.name, parts, columns)


@dataclass(frozen=True)
class FusionEstimate:
    """What a fusion would cost: one :class:`rerankpd.Estimate` per reranker it runs (``parts``), and the
    score columns it reads (free). The totals add up the parts."""

    fusion: str
    parts: dict[str, Estimate]
    columns: list[str]

    @property
    def to_score(self) -> int:
        return sum(e.to_score for e in self.parts.values())

    @property
    def cached(self) -> int:
        return sum(e.cached for e in self.parts.values())

    @property
    def requests(self) -> int:
        return sum(e.requests for e in self.parts.values())

    @property
    def approx_tokens(self) -> int:
        return sum(e.approx_tokens for e in self.parts.values())

    def to_dict(self) -> dict:
        """The figures as plain data (for JSON)."""
        return {
            "fusion": self.fusion,
            "columns": list(self.columns),
            "parts": {k: v.to_dict() for k, v in self.parts.items()},
            "to_score": self.to_score,
            "cached": self.cached,
            "requests": self.requests,
            "approx_tokens": self.approx_tokens,
        }

    def __str__(self) -> str:
        head = (
            f"{self.fusion}: {self.to_score} pairs to score in {self.requests} requests, ~{self.approx_tokens} tokens"
        )
        lines = [head]
        lines += [f"  {label}: {e}" for label, e in self.parts.items()]
        lines += [f"  {label}: a score column, nothing to send" for label in self.columns]
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- fuse
def _fusion_of(rankings: Any, method: Any, norm: Any, weights: Any, k: Any) -> Fusion:
    if isinstance(rankings, Fusion):
        given = [n for n, v in (("method", method), ("norm", norm), ("weights", weights), ("k", k)) if v is not None]
        if given:
            raise ConfigurationError(
                f"rankings is a Fusion, which sets its own {', '.join(given)}; make a new Fusion(...) to change them"
            )
        return rankings
    return Fusion(
        rankings,
        "rrf" if method is None else method,
        norm="min-max" if norm is None else norm,
        weights=weights,
        k=60 if k is None else k,
    )


def _without_output_columns(df: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    present = [c for c in names if c in df.columns]
    if not present:
        return df.copy(deep=False)
    if not isinstance(df.attrs.get("fusion"), dict):
        warn_user(
            f"the frame already has {', '.join(map(repr, present))}, which fuse writes; it is replaced in "
            "the result (rename that column to keep it)"
        )
    return df.drop(columns=present)


def fuse(
    df: pd.DataFrame,
    rankings: Any,
    query: str | None = None,
    column: Any = "text",
    *,
    query_column: Any = None,
    method: str | None = None,
    norm: str | None = None,
    weights: Any = None,
    k: float | None = None,
    top_n: int | None = None,
    sort: bool = True,
    cache: bool | str | os.PathLike = True,
    progress: bool | None = None,
    errors: str = "raise",
) -> pd.DataFrame:
    """Fuse several rankings of the frame's rows into one, within each query.

    Parameters
    ----------
    df
        The frame; it is not modified.
    rankings
        A list of score columns and rerankers (names or objects), a dict ``{label: ranking}``, or a
        :class:`Fusion` (which brings its own ``method``, ``norm``, ``weights`` and ``k``).
    query, column, query_column
        As for :func:`rerankpd.rerank`: the rerankers among the rankings score ``column`` against one query
        or each row's ``query_column``, and everything is fused within each query. With score columns only,
        both may be left out: the whole frame is then one query.
    method, norm, weights, k
        See the module's notes; defaults ``"rrf"``, ``"min-max"``, equal weights, 60.
    top_n, sort
        As for :func:`rerankpd.rerank`: keep each query's ``top_n`` best rows; order by query then rank.
    cache, progress, errors
        Passed to each reranker's run. With ``errors="coerce"`` a failed row is missing from that ranking.

    Returns
    -------
    DataFrame
        The input's columns and index labels plus ``fusion_score_<label>`` (each reranker's raw score),
        ``fusion_score`` (float64) and ``fusion_rank`` (Int64, 1 = best within its query; <NA> for a row
        no ranking scored). ``out.attrs["fusion"]`` says how it was fused and what each reranker's run cost.

    Examples
    --------
    >>> import pandas as pd, rerankpd
    >>> df = pd.DataFrame({"text": ["cats purr", "dogs bark", "cats and dogs"], "first": [0.2, 0.9, 0.5]})
    >>> out = rerankpd.fuse(df, ["first", "bm25"], "cats", cache=False, progress=False)
    >>> out.index.tolist(), [c for c in out.columns if c.startswith("fusion")]
    ([0, 1, 2], ['fusion_score_bm25', 'fusion_score', 'fusion_rank'])
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"fuse expects a pandas DataFrame, got {type(df).__name__}")
    fusion = _fusion_of(rankings, method, norm, weights, k)
    top_n = whole("top_n", top_n, minimum=1, allow_none=True)
    sort = boolean("sort", sort)
    one_of("errors", errors, ERRORS)
    needs_text = any(not (isinstance(r, str) and r in df.columns) for r in fusion.rankings.values())
    if needs_text:
        check_arguments(df, query, column, query_column, top_n, errors)
    elif query is not None and query_column is not None:
        raise ValueError("give at most one of query and query_column; got both")
    elif query_column is not None and query_column not in df.columns:
        raise KeyError(
            f"query_column {query_column!r} is not a column of the frame; its columns are {list(df.columns)!r}"
        )
    runs = RankingRuns(df, query, column, query_column=query_column, cache=cache, progress=progress, errors=errors)
    parts = fusion._parts(runs)
    fused = fusion._fuse(parts, runs.groups)
    ranks = rank_within_groups(fused, runs.groups)
    written = [INPUT_PREFIX + label for label, part in parts.items() if part[2] != "column"]
    out = _without_output_columns(df, [*written, SCORE, RANK])
    for label, (scores, _, source) in parts.items():
        if source != "column":
            out[INPUT_PREFIX + label] = scores
    out[SCORE] = fused
    out[RANK] = pd.arrays.IntegerArray(ranks, mask=ranks == 0)
    keep = np.flatnonzero(top_n_mask(ranks, top_n))
    if sort:
        keep = keep[sort_order(runs.groups[keep], ranks[keep])]
    if len(keep) != len(out) or sort:
        out = out.iloc[keep]
    out.attrs = dict(df.attrs)
    out.attrs["fusion"] = {
        "fusion": fusion.name,
        "method": fusion.method,
        "norm": fusion.norm,
        "k": fusion.k,
        "weights": None if fusion.weights is None else dict(zip(fusion.rankings, fusion.weights)),
        "rankings": {label: part[2] for label, part in parts.items()},
        "rows": len(df),
        "fused_rows": int(np.count_nonzero(~np.isnan(fused))),
        "sent": sum(part[1]["sent"] for part in parts.values()),
        "runs": runs.infos,
    }
    logger.info("fused %d rankings over %d rows (%s)", len(parts), len(df), fusion.name)
    return out
