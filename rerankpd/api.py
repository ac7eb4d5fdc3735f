"""The entry points of a run: check the arguments, then run plain or as a cascade.

:func:`rerank`, :func:`scores` and :func:`estimate` are what ``rerankpd.rerank``, ``df.rerank`` and the
command line call. Each checks its arguments (:func:`rerankpd.run.arguments.check_arguments`), then hands
the work to the plain run (:mod:`rerankpd.run.pipeline`, :mod:`rerankpd.run.estimate`) or, with a
``prefilter``, to the cascade (:mod:`rerankpd.run.cascade`), which runs the plain one on its candidates. The
choice is made here, above all three, so the plain run knows nothing of cascades.

Examples
--------
>>> import pandas as pd
>>> df = pd.DataFrame({"text": ["cats purr", "dogs bark", "cats and dogs"], "pre": [1, 3, 2]})
>>> rerank(df, "cats", reranker="bm25", cache=False, progress=False)["rerank_rank"].tolist()
[1, 2, 3]
>>> rerank(df, "cats", reranker="bm25", prefilter="pre", candidates=2, cache=False, progress=False).index.tolist()
[2, 1, 0]
"""

from __future__ import annotations

import os
import threading
from typing import Any

import pandas as pd

from .run import cascade, pipeline
from .run import estimate as plain_estimate
from .run.arguments import check_arguments
from .run.pipeline import scores
from .run.progress import ProgressCallback

__all__ = ["estimate", "rerank", "scores"]


def rerank(
    df: pd.DataFrame,
    query: str | None = None,
    column: Any = "text",
    *,
    query_column: Any = None,
    top_n: int | None = None,
    reranker: Any = None,
    sort: bool = True,
    cache: bool | str | os.PathLike = True,
    progress: bool | None = None,
    errors: str = "raise",
    prefilter: Any = None,
    candidates: int = 100,
    _cancel: threading.Event | None = None,
    _on_progress: ProgressCallback | None = None,
) -> pd.DataFrame:
    """Score each row's text against a query and rank the rows.

    Parameters
    ----------
    df
        The frame; it is not modified.
    query
        One query for every row. Give this or ``query_column``, not both.
    column
        The column holding the text to score.
    query_column
        A column holding each row's query; ranks, ``top_n`` and sorting then apply within each query.
    top_n
        Keep only the ``top_n`` best rows of each query.
    reranker
        A name from :func:`rerankpd.available_rerankers` or a reranker object. None: ``RERANKPD_RERANKER``,
        else ``"dmxapi"`` when ``DMXAPI_API_KEY`` is set, else the embedded offline reranker.
    sort
        True orders rows by query (first appearance) then rank; False keeps input order.
    cache
        True uses the score cache in the default directory, a path uses that directory, False bypasses it.
    progress
        None shows a progress bar for work that takes more than a moment, True always, False never.
    errors
        ``"raise"``: a failure raises, with the partial result as ``exc.partial``. ``"coerce"``: failed rows
        get NaN and a message in a ``rerank_error`` column.
    prefilter
        None (default): the reranker scores every row. Else a cascade (:mod:`rerankpd.run.cascade`): a column of
        scores the frame has, or a reranker name or object (``"bm25"``, ``"e5"``), ranks every row first,
        and only each query's ``candidates`` best rows go to ``reranker``; the rest follow in prefilter
        order, with the prefilter's score in ``rerank_prefilter_score`` and NaN in ``rerank_score``.
    candidates
        Rows per query the prefilter hands to the reranker (with ``prefilter``).

    Returns
    -------
    DataFrame
        A new frame with the input's columns and index labels plus ``rerank_score`` (float64) and
        ``rerank_rank`` (Int64, 1 = most relevant within its query). Rows with missing or blank text keep
        NaN and <NA> and sort last. ``out.attrs["rerank"]`` says which reranker ran and what it cost.

    Examples
    --------
    >>> import pandas as pd, rerankpd
    >>> df = pd.DataFrame({"text": ["cats purr", "dogs bark", "cats and dogs"]})
    >>> rerankpd.rerank(df, "cats", reranker="bm25", cache=False, progress=False).index.tolist()
    [0, 2, 1]
    """
    check_arguments(df, query, column, query_column, top_n, errors)
    if prefilter is not None:
        return cascade.rerank_cascade(
            df,
            query,
            column,
            query_column=query_column,
            top_n=top_n,
            reranker=reranker,
            prefilter=prefilter,
            candidates=candidates,
            sort=sort,
            cache=cache,
            progress=progress,
            errors=errors,
            _cancel=_cancel,
            _on_progress=_on_progress,
        )
    return pipeline.rerank(
        df,
        query,
        column,
        query_column=query_column,
        top_n=top_n,
        reranker=reranker,
        sort=sort,
        cache=cache,
        progress=progress,
        errors=errors,
        _cancel=_cancel,
        _on_progress=_on_progress,
    )


def estimate(
    df: pd.DataFrame,
    query: str | None = None,
    column: Any = "text",
    *,
    query_column: Any = None,
    top_n: int | None = None,
    reranker: Any = None,
    sort: bool = True,
    cache: bool | str | os.PathLike = True,
    progress: bool | None = None,
    errors: str = "raise",
    prefilter: Any = None,
    candidates: int = 100,
) -> Any:
    """What :func:`rerankpd.rerank` with the same arguments would send, without sending anything.

    Takes every argument of :func:`rerankpd.rerank` (``top_n``, ``sort``, ``progress`` and ``errors`` do
    not change the cost and are only checked) and validates them the same way. With ``prefilter``, returns a
    :class:`rerankpd.run.cascade.CascadeEstimate`: the figures with and without the cascade. With a
    :class:`rerankpd.Fusion` as ``reranker``, returns a :class:`rerankpd.evaluation.fusion.FusionEstimate`: an
    estimate per reranker among its rankings.

    No API key is needed: a hosted reranker named (or chosen by default) without its key set is planned
    keyless, with a warning naming the variable a real run will need (:func:`rerankpd.run.estimate.reranker_for_estimate`).

    Returns
    -------
    Estimate

    Examples
    --------
    >>> import pandas as pd, rerankpd
    >>> df = pd.DataFrame({"text": ["a b", "c d e"]})
    >>> print(rerankpd.estimate(df, "q", reranker="bm25", cache=False))  # doctest: +ELLIPSIS
    bm25 (bm25s-lucene): 2 rows -> 2 unique pairs; 0 cached, 2 to score on this machine, under a second (measured here: 2 pairs in ... s)
    """
    check_arguments(df, query, column, query_column, top_n, errors)
    if callable(getattr(reranker, "estimate", None)) and callable(getattr(reranker, "ranking_scores", None)):
        # a composite ranking (rerankpd.Fusion): an Estimate per reranker it runs
        return reranker.estimate(df, query, column, query_column=query_column, cache=cache)
    if prefilter is not None:
        return cascade.estimate_cascade(
            df,
            query,
            column,
            query_column=query_column,
            reranker=reranker,
            prefilter=prefilter,
            candidates=candidates,
            cache=cache,
            top_n=top_n,
            errors=errors,
        )
    return plain_estimate.estimate(
        df,
        query,
        column,
        query_column=query_column,
        top_n=top_n,
        reranker=reranker,
        sort=sort,
        cache=cache,
        progress=progress,
        errors=errors,
    )
