"""Rerank a Dask DataFrame when one pandas frame is not enough.

Partitions are scored in parallel, each with :func:`rerankpd.scores` (so batching, concurrency, retries and
the score cache all apply per partition, and identical pairs across partitions meet in the cache); then
only the best rows of each partition travel back to be ranked. On a cluster that spans machines,
``shared_cache=`` names a score store all workers share (:func:`compact` merges its files).

Two rules follow from running on workers:

- The reranker is named (``reranker="dmxapi"``, ``reranker_options={...}``) and built on each worker. API
  keys are read from the workers' environment (``DMXAPI_API_KEY``, ...): a key given in
  ``reranker_options`` would be written into the task graph in clear, so it is refused. A key set in the
  client after the workers started is not seen by them: :func:`copy_env_to_workers` copies it over.
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

import os
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pandas as pd

from . import config
from .cache.shared import SharedScoreStore, check_url, compact, seeded_local_cache
from .core.options import whole
from .errors import ConfigurationError, MissingDependencyError, warn_user
from .pairs import Pairs, rank_within_groups, sort_order
from .redact import mask_url, scrub, url_secrets
from .rerankers import get_reranker, reranker_class
from .rerankers.base import Reranker, describe
from .run import pipeline
from .run.arguments import check_arguments
from .run.plan import plan_run

__all__ = ["compact", "copy_env_to_workers", "top_n", "with_scores"]

SCORE, RANK, ERROR = pipeline.SCORE, pipeline.RANK, pipeline.ERROR


def _dd():
    try:
        import dask.dataframe as dd
    except ImportError as exc:
        raise MissingDependencyError("rerankpd.dask needs dask: pip install 'dask[dataframe]'") from exc
    return dd


def _check_reranker(reranker: Any, options: dict | None) -> str:
    if reranker is not None and not isinstance(reranker, str):
        raise ValueError(
            "with Dask, name the reranker (reranker='dmxapi', reranker_options={...}); each worker builds its own"
        )
    name = reranker or config.default_reranker_name()
    if options and "api_key" in options:
        raise ConfigurationError(
            "do not put api_key in reranker_options: it would be written into the Dask "
            "task graph in clear; set the provider's key variable in the workers' "
            "environment instead"
        )
    cls = reranker_class(name)
    for option, value in (options or {}).items():
        if isinstance(value, str) and url_secrets(value):
            variable = getattr(cls, "base_url_env", None)
            where = f"{variable} in the workers' environment" if variable else "the workers' environment"
            raise ConfigurationError(
                f"reranker_options[{option!r}] = {mask_url(value)!r} holds a user name and password, which would "
                f"be written into the Dask task graph in clear; put the URL with its credentials in {where} "
                "instead (rerankpd.dask.copy_env_to_workers copies it from this process)"
            )
    if not describe(cls).pairwise or not cls.pairwise_with(options or {}):  # an option may make it listwise
        raise ConfigurationError(
            f"the {name!r} reranker scores a query's candidates together, so its scores "
            "cannot be split across partitions; use a pairwise reranker (e5, dmxapi, ...) "
            "or rerankpd.rerank on a pandas frame"
        )
    return name


def _without_credentials(url: str) -> str:
    """``url`` if it holds no ``user:password@`` (it is written into the task graph); else ConfigurationError."""
    if not url_secrets(url):
        return url
    protocol = urlsplit(url).scheme.upper()
    raise ConfigurationError(
        f"shared_cache {mask_url(url)!r} holds a user name and password, which would be written into the Dask task "
        f"graph in clear; give them to fsspec on the workers instead: the variables FSSPEC_{protocol}_USERNAME and "
        f"FSSPEC_{protocol}_PASSWORD in the workers' environment (fsspec reads FSSPEC_<PROTOCOL>_<OPTION> when "
        "it starts), or the protocol's own credentials (~/.aws, ~/.ssh, ~/.netrc), and drop them from the URL"
    )


def _score_partition(part: pd.DataFrame, query, column, query_column, name, options, cache, shared_cache, errors):
    reranker = _build_on_worker(name, options)
    try:
        with pipeline.reranker_in_use(reranker) as model:
            if shared_cache is None:
                return _scored(part, query, column, query_column, model, cache, errors)
            spec = describe(model)
            pairs = _partition_pairs(part, query, column, query_column, model)
            if not pairs.n_pairs or not spec.cacheable:
                return _scored(part, query, column, query_column, model, cache, errors)
            assert spec.identity is not None  # cacheable: pairwise with an identity
            try:
                store = SharedScoreStore(shared_cache, spec.identity)  # a remote store may connect here
            except (OSError, ValueError) as exc:
                warn_user(
                    f"rerankpd: the shared score store {mask_url(shared_cache)} could not be reached "
                    f"({scrub(str(exc), url_secrets(shared_cache))}); scoring this partition without it"
                )
                return _scored(part, query, column, query_column, model, cache, errors)
            keys = store.keys(pairs.queries, pairs.texts, pairs.pair_group, pairs.pair_text)
            with seeded_local_cache(store, keys, cache) as local_cache:
                return _scored(part, query, column, query_column, model, local_cache, errors)
    finally:
        if isinstance(reranker, Reranker):
            reranker.close()


def _scored(part: pd.DataFrame, query, column, query_column, reranker, cache, errors) -> pd.DataFrame:
    result = part.copy(deep=False)
    if errors == "coerce":
        ranked = pipeline.rerank(
            part,
            query,
            column,
            query_column=query_column,
            reranker=reranker,
            sort=False,
            cache=cache,
            progress=False,
            errors="coerce",
        )
        result[SCORE] = ranked[SCORE]
        result[ERROR] = ranked[ERROR].astype(object)
    else:
        result[SCORE] = pipeline.scores(
            part, query, column, query_column=query_column, reranker=reranker, cache=cache, progress=False
        )
    return result


def _build_on_worker(name: str, options: dict | None):
    """The named reranker, built here on the worker from the worker's own environment.

    A missing key is the usual first failure on a cluster (a key set in the client after the workers
    started never reaches them), so that error says where the key must go.
    """
    try:
        return get_reranker(name, **(options or {}))
    except ConfigurationError as exc:
        availability = reranker_class(name).availability()
        if availability.ready is not False:
            raise
        raise ConfigurationError(
            f"{exc}. On a Dask worker the key must be in the workers' environment: each worker reads it from "
            "its own, fixed when the worker started, so a variable set in the client afterwards is not seen. "
            "Set it before the cluster starts (LocalCluster(env={...}), or your cluster's worker "
            "environment), or copy it from the client to the running workers with "
            f"rerankpd.dask.copy_env_to_workers(client, {_key_variable(availability.note)!r})"
        ) from None


def _key_variable(note: str) -> str:
    """The variable an availability note names (``"no key: set DMXAPI_API_KEY"``), else a placeholder."""
    word = note.rsplit(" ", 1)[-1]
    return word if word.isidentifier() and word.isupper() else "THE_KEY_VARIABLE"


def _set_environment(values: dict) -> list[str]:
    """Runs on a worker: put ``values`` into its environment (a module function, so the real os.environ)."""
    os.environ.update(values)
    return sorted(values)


def copy_env_to_workers(client, *names: str) -> dict:
    """Copy environment variables (API keys, base URLs) from this process to every running Dask worker.

    A worker reads keys from its own environment, fixed when it started, so a key set here afterwards is
    not seen. Workers that start later (scaling, restarts) need the variables in their own environment:
    set them where the cluster is configured (``LocalCluster(env={...})``, the worker spec of your cluster
    manager). Note that ``client.run(os.environ.update, {...})`` does not work: the bound method is
    pickled with a copy of ``os.environ``, and the worker updates the copy.

    Parameters
    ----------
    client
        A ``distributed.Client``.
    names
        The variables to copy, e.g. ``"DMXAPI_API_KEY"``; each must be set (and not blank) here.

    Returns
    -------
    dict
        The names copied, by worker address (what ``client.run`` returns).
    """
    if not names:
        raise ValueError("name the variables to copy, e.g. copy_env_to_workers(client, 'DMXAPI_API_KEY')")
    missing = [name for name in names if not config.env(name)]
    if missing:
        raise ConfigurationError(
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set in this "
            "process, so there is nothing to copy to the workers"
        )
    return client.run(_set_environment, {name: os.environ[name] for name in names})


def _partition_pairs(part: pd.DataFrame, query, column, query_column, reranker) -> Pairs:
    """The pairs the pipeline will look up in the cache for this partition (chunks, for a chunking reranker):
    the pipeline's own plan, made without a cache (nothing is opened or sent)."""
    return plan_run(part, query, column, query_column, reranker, False, "coerce").pairs


def with_scores(
    ddf,
    query: str | None = None,
    column: Any = "text",
    *,
    query_column: Any = None,
    reranker: str | None = None,
    reranker_options: dict | None = None,
    cache: Any = True,
    shared_cache: str | None = None,
    errors: str = "raise",
):
    """The Dask frame with a ``rerank_score`` column (and ``rerank_error`` with ``errors="coerce"``), lazily.

    Nothing is scored until the result is computed. Arguments are those of :func:`rerankpd.rerank`, except
    that the reranker is given by name and options (see the module's notes), plus:

    Parameters
    ----------
    shared_cache
        A directory or object store URL every worker can reach (``"file:///mnt/shared/rerankpd"``,
        ``"s3://bucket/prefix"``): a score store shared by the whole cluster (see
        see :func:`compact`). Each partition takes the scores it holds before scoring, and adds the
        ones it scored after. None (the default): only each worker's local ``cache``.
    """
    dd = _dd()
    if not isinstance(ddf, dd.DataFrame):
        raise TypeError(f"expected a dask DataFrame, got {type(ddf).__name__}")
    meta = ddf._meta
    check_arguments(meta, query, column, query_column, None, errors)
    name = _check_reranker(reranker, reranker_options)
    if shared_cache is not None:
        shared_cache = _without_credentials(check_url(shared_cache))
    out_meta = meta.copy()
    out_meta[SCORE] = pd.Series(dtype="float64")
    if errors == "coerce":
        out_meta[ERROR] = pd.Series(dtype=object)
    return ddf.map_partitions(
        _score_partition,
        query,
        column,
        query_column,
        name,
        reranker_options,
        cache,
        shared_cache,
        errors,
        meta=out_meta,
    )


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
    return pd.DataFrame(
        {"query": pd.Series(list(uniques), dtype=object), "key": (np.int64(number) << 40) + positions.astype(np.int64)}
    )


def top_n(
    ddf,
    query: str | None = None,
    column: Any = "text",
    *,
    n: int,
    query_column: Any = None,
    reranker: str | None = None,
    reranker_options: dict | None = None,
    cache: Any = True,
    shared_cache: str | None = None,
) -> pd.DataFrame:
    """The ``n`` best rows (of each query), scored on the workers and ranked here, as a pandas frame.

    Returns the same shape as ``rerankpd.rerank(df, ..., top_n=n)``: the input columns and index labels,
    ``rerank_score`` and ``rerank_rank``, sorted by query (first appearance in the result) then rank.
    Other arguments are those of :func:`with_scores` (``shared_cache=`` included).
    """
    n = whole("n", n, minimum=1)
    scored = with_scores(
        ddf,
        query,
        column,
        query_column=query_column,
        reranker=reranker,
        reranker_options=reranker_options,
        cache=cache,
        shared_cache=shared_cache,
    )
    best = scored.map_partitions(_best_of, n, query_column, meta=scored._meta)
    if query_column is None:
        best = best.compute()
        groups = np.zeros(len(best), dtype=np.int64)
    else:
        # Queries are ordered by their first row in the whole input, as rerankpd.rerank orders them.
        import dask

        firsts = ddf.map_partitions(
            _first_seen,
            query_column,
            meta=pd.DataFrame({"query": pd.Series(dtype=object), "key": pd.Series(dtype="int64")}),
        )
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
