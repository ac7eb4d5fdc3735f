"""Rerank a Dask DataFrame when one pandas frame is not enough.

Partitions are scored in parallel, each with :func:`rerankpd.scores` (so batching, concurrency, retries and
the score cache all apply per partition, and identical pairs across partitions meet in the cache); then
only the best rows of each partition travel back to be ranked.

Two rules follow from running on workers:

- The reranker is named (``reranker="dmxapi"``, ``reranker_options={...}``) and built on each worker. API
  keys are read from the workers' environment (``DMXAPI_API_KEY``, ...): a key given in
  ``reranker_options`` would be written into the task graph in clear, so it is refused.
- Only pairwise rerankers can be split across partitions. BM25's scores depend on the whole candidate
  set, so partition-wise BM25 scores could not be compared; ``"bm25"`` is refused with a clear error.

Examples
--------
>>> import pandas as pd, dask.dataframe as dd, rerankpd.dask
>>> df = pd.DataFrame({"text": ["预防感冒应勤洗手", "今天天气很好", "感冒了要多喝水", None]})
>>> ddf = dd.from_pandas(df, npartitions=2)
>>> best = rerankpd.dask.top_n(ddf, "如何预防感冒", n=2, reranker="e5", cache=False)
>>> best["rerank_rank"].tolist()
[1, 2]
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from . import config, pipeline
from .arguments import check_arguments
from .errors import ConfigurationError, MissingDependencyError
from .pairs import rank_within_groups, sort_order
from .rerankers import reranker_class
from .rerankers.base import describe
from .validate import whole

__all__ = ["top_n", "with_scores"]

SCORE, RANK, ERROR = pipeline.SCORE, pipeline.RANK, pipeline.ERROR


def _dd():
    try:
        import dask.dataframe as dd
    except ImportError as exc:
        raise MissingDependencyError("rerankpd.dask needs dask: pip install 'dask[dataframe]'") from exc
    return dd


def _check_reranker(reranker: Any, options: dict | None) -> str:
    if reranker is not None and not isinstance(reranker, str):
        raise ValueError("with Dask, name the reranker (reranker='dmxapi', reranker_options={...}); "
                         "each worker builds its own")
    name = reranker or config.default_reranker_name()
    if options and "api_key" in options:
        raise ConfigurationError("do not put api_key in reranker_options: it would be written into the Dask "
                                 "task graph in clear; set the provider's key variable in the workers' "
                                 "environment instead")
    if not describe(reranker_class(name)).pairwise:
        raise ConfigurationError(f"the {name!r} reranker scores a query's candidates together, so its scores "
                                 "cannot be split across partitions; use a pairwise reranker (e5, dmxapi, ...) "
                                 "or rerankpd.rerank on a pandas frame")
    return name


def _score_partition(part: pd.DataFrame, query, column, query_column, name, options, cache, errors):
    with pipeline.reranker_in_use(name, **(options or {})) as reranker:
        result = part.copy(deep=False)
        if errors == "coerce":
            ranked = pipeline.rerank(part, query, column, query_column=query_column, reranker=reranker,
                                     sort=False, cache=cache, progress=False, errors="coerce")
            result[SCORE] = ranked[SCORE]
            result[ERROR] = ranked[ERROR].astype(object)
        else:
            result[SCORE] = pipeline.scores(part, query, column, query_column=query_column, reranker=reranker,
                                            cache=cache, progress=False)
        return result


def with_scores(ddf, query: str | None = None, column: Any = "text", *, query_column: Any = None,
                reranker: str | None = None, reranker_options: dict | None = None, cache: Any = True,
                errors: str = "raise"):
    """The Dask frame with a ``rerank_score`` column (and ``rerank_error`` with ``errors="coerce"``), lazily.

    Nothing is scored until the result is computed. Arguments are those of :func:`rerankpd.rerank`, except
    that the reranker is given by name and options (see the module's notes).
    """
    dd = _dd()
    if not isinstance(ddf, dd.DataFrame):
        raise TypeError(f"expected a dask DataFrame, got {type(ddf).__name__}")
    meta = ddf._meta
    check_arguments(meta, query, column, query_column, None, errors)
    name = _check_reranker(reranker, reranker_options)
    out_meta = meta.copy()
    out_meta[SCORE] = pd.Series(dtype="float64")
    if errors == "coerce":
        out_meta[ERROR] = pd.Series(dtype=object)
    return ddf.map_partitions(_score_partition, query, column, query_column, name, reranker_options, cache,
                              errors, meta=out_meta)


def _best_of(part: pd.DataFrame, n: int, query_column: Any) -> pd.DataFrame:
    """A partition's ``n`` best scored rows (of each query), in input order."""
    if query_column is None:
        codes = np.zeros(len(part), dtype=np.int64)
    else:
        codes = pd.factorize(part[query_column])[0].astype(np.int64)
    scores = part[SCORE].to_numpy(dtype=np.float64)
    scored = np.flatnonzero(~np.isnan(scores) & (codes >= 0))
    ranks = rank_within_groups(scores[scored], codes[scored])
    return part.iloc[np.sort(scored[ranks <= n])]


def _first_seen(part: pd.DataFrame, query_column: Any, partition_info: dict | None = None) -> pd.DataFrame:
    """Each query of a partition with a sortable key of its first row: (partition number, position)."""
    number = (partition_info or {}).get("number", 0)
    codes, uniques = pd.factorize(part[query_column])
    _, first = np.unique(codes[codes >= 0], return_index=True)
    positions = np.flatnonzero(codes >= 0)[first] if len(first) else np.empty(0, dtype=np.int64)
    return pd.DataFrame({"query": pd.Series(list(uniques), dtype=object),
                         "key": (np.int64(number) << 40) + positions.astype(np.int64)})


def top_n(ddf, query: str | None = None, column: Any = "text", *, n: int, query_column: Any = None,
          reranker: str | None = None, reranker_options: dict | None = None, cache: Any = True) -> pd.DataFrame:
    """The ``n`` best rows (of each query), scored on the workers and ranked here, as a pandas frame.

    Returns the same shape as ``rerankpd.rerank(df, ..., top_n=n)``: the input columns and index labels,
    ``rerank_score`` and ``rerank_rank``, sorted by query (first appearance in the result) then rank.
    """
    n = whole("n", n, minimum=1)
    scored = with_scores(ddf, query, column, query_column=query_column, reranker=reranker,
                         reranker_options=reranker_options, cache=cache)
    best = scored.map_partitions(_best_of, n, query_column, meta=scored._meta)
    if query_column is None:
        best = best.compute()
        groups = np.zeros(len(best), dtype=np.int64)
    else:
        # Queries are ordered by their first row in the whole input, as rerankpd.rerank orders them.
        import dask

        firsts = ddf.map_partitions(_first_seen, query_column,
                                    meta=pd.DataFrame({"query": pd.Series(dtype=object),
                                                       "key": pd.Series(dtype="int64")}))
        best, firsts = dask.compute(best, firsts)
        order = firsts.groupby("query", sort=False)["key"].min().sort_values(kind="stable")
        position = pd.Series(np.arange(len(order), dtype=np.int64), index=order.index)
        groups = best[query_column].map(position).to_numpy(dtype=np.int64)
    ranks = rank_within_groups(best[SCORE].to_numpy(dtype=np.float64), groups)
    keep = (ranks >= 1) & (ranks <= n)
    best, groups, ranks = best[keep], groups[keep], ranks[keep]
    best = best.copy(deep=False)
    best[RANK] = pd.arrays.IntegerArray(ranks, mask=ranks == 0)
    return best.iloc[sort_order(groups, ranks)]
