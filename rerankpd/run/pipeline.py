"""The plain run behind ``rerankpd.rerank`` (no prefilter; :mod:`rerankpd.api` decides plain or cascade).

The flow of one call, each step in its own module and this one only orchestrating:

1. check the arguments (:mod:`rerankpd.run.arguments`);
2. plan (:mod:`rerankpd.run.plan`): read the columns (:mod:`rerankpd.run.columns`), build unique pairs
   (:mod:`rerankpd.pairs`), cut long documents (:mod:`rerankpd.core.chunking`), look the pairs up in the score
   cache (:mod:`rerankpd.cache`) and cut the misses into requests;
3. score (:mod:`rerankpd.run.scheduler`): up to the reranker's ``max_concurrency`` requests in flight, each
   finished one recorded, written to the cache and counted on the progress bar (:mod:`rerankpd.run.progress`)
   at once;
4. assemble a new frame: scores scattered back to rows, ranks, ``top_n``, order, ``attrs["rerank"]``.

Examples
--------
>>> import pandas as pd, rerankpd
>>> df = pd.DataFrame({"text": ["预防感冒应勤洗手", "今天天气很好", None]})
>>> out = rerankpd.rerank(df, "如何预防感冒", reranker="bm25", cache=False, progress=False)
>>> out["rerank_rank"].tolist()
[1, 2, <NA>]
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd

from .. import config
from ..errors import RerankError, RunCancelled, warn_user
from ..pairs import Pairs, rank_within_groups, scatter, sort_order, top_n_mask
from ..rerankers import Reranker, get_reranker
from ..rerankers.base import RerankerSpec
from . import embedding_path as embedding
from .arguments import check_arguments
from .plan import Run, plan_run
from .progress import Progress, ProgressCallback
from .scheduler import run_requests

__all__ = ["rerank", "scores"]

logger = logging.getLogger(__name__)

SCORE, RANK, ERROR, CHUNK = "rerank_score", "rerank_rank", "rerank_error", "rerank_chunk"
#: The columns rerankpd writes; those of an earlier run are replaced, a user's own only with a warning.
OUTPUT_COLUMNS = (SCORE, RANK, CHUNK, ERROR)


# --------------------------------------------------------------------------------------------- reranker
@contextlib.contextmanager
def reranker_in_use(reranker: Any, **options) -> Iterator[Reranker]:
    """The reranker object to use for one call; one this call made (from a name) is closed after it.

    ``options`` go to :func:`rerankpd.get_reranker` when ``reranker`` is a name or None.
    """
    if reranker is None or isinstance(reranker, str):
        model = get_reranker(reranker or config.default_reranker_name(), **options)
        try:
            yield model
        finally:
            if isinstance(model, Reranker):
                model.close()
        return
    if isinstance(reranker, type):
        raise ValueError(
            f"reranker is the class {reranker.__name__}; pass an object: reranker={reranker.__name__}(...)"
        )
    yield reranker


# --------------------------------------------------------------------------------------------- score
def scoring_for(spec: RerankerSpec) -> Callable[..., BaseException | None]:
    """How a run of this kind of reranker is scored: the one place that chooses by ``spec.kind``.

    An embedding reranker goes through the embedding path (each distinct query and text embedded once);
    every other kind is scored in batches of (query, documents) requests (:func:`score_in_batches`).
    """
    if spec.kind == "embedding":
        return _score_embedding
    return score_in_batches


def _score_embedding(
    run: Run, progress: Any, cancel: threading.Event | None, on_progress: ProgressCallback | None
) -> BaseException | None:
    """An embedding reranker (``embed_queries``/``embed_documents``): :mod:`rerankpd.run.embedding_path`; one of
    kind "embedding" without those methods is scored in batches like any other."""
    if embedding.applies(run.spec):
        return embedding.execute_run(run, progress, cancel, on_progress)
    return score_in_batches(run, progress, cancel, on_progress)


def score_in_batches(
    run: Run, progress: Any, cancel: threading.Event | None, on_progress: ProgressCallback | None
) -> BaseException | None:
    """Send every planned batch; returns the error that stopped the run (errors='raise'), if any."""
    if run.spec.kind == "lexical" and isinstance(run.reranker, Reranker) and run.batches:
        run.reranker.prepare(run.doc_pairs.texts)  # corpus statistics over every distinct text, once
    counter = Progress(run.spec.name, run.to_score, run.from_cache, progress, on_progress)
    try:
        outcome = run_requests(
            run.reranker,
            run.requests_to_send(),
            name=run.spec.name,
            max_in_flight=run.spec.max_concurrency,
            callbacks=(run.record, run.report_cache, counter),
            on_scored=run.store,
            cancel=cancel,
            stop_on_error=run.errors == "raise",
        )
    finally:
        counter.close()
    if outcome.cancelled:
        kept = "finished scores are cached" if run.cache is not None else "the cache was off"
        return RunCancelled(f"cancelled after {counter.done} of {counter.total} pairs; {kept}")
    return outcome.error


# --------------------------------------------------------------------------------------------- assemble
def _doc_level(run: Run) -> tuple[Pairs, np.ndarray, dict[int, str], np.ndarray | None]:
    """The frame's pairs with their scores and errors; with chunking, each document's best chunk and which."""
    if run.chunks is None:
        return run.pairs, run.pair_scores, run.pair_errors, None
    scores, errors, chunk = run.chunks.reduce(run.pair_scores, run.pair_errors)
    return run.chunks.doc_pairs, scores, errors, chunk


def _assemble(run: Run, top_n: int | None, sort: bool) -> pd.DataFrame:
    pairs, pair_scores, pair_errors, pair_chunk = _doc_level(run)
    row_scores = scatter(pair_scores, pairs.row_pair)
    ranks = rank_within_groups(row_scores, pairs.row_group)
    out = _without_output_columns(run.df)
    out[SCORE] = row_scores.astype(np.float64, copy=False)
    out[RANK] = pd.arrays.IntegerArray(ranks, mask=ranks == 0)
    if pair_chunk is not None:
        row_chunk = scatter(pair_chunk, pairs.row_pair, fill=-1)
        out[CHUNK] = pd.arrays.IntegerArray(row_chunk, mask=row_chunk < 0)
    failed_rows = 0
    if run.errors == "coerce" or pair_errors:
        messages = np.full(pairs.n_pairs, None, dtype=object)
        for p, message in pair_errors.items():
            messages[p] = message
        row_errors = scatter(messages, pairs.row_pair, fill=None)
        out[ERROR] = row_errors
        failed_rows = int(pd.notna(row_errors).sum())
    keep = top_n_mask(ranks, top_n)
    order = np.flatnonzero(keep)
    if sort:
        order = order[sort_order(pairs.row_group[order], ranks[order])]
    if len(order) != len(out) or sort:
        out = out.iloc[order]
    out.attrs = dict(run.df.attrs)
    out.attrs["rerank"] = _summary(run, failed_rows)
    return out


def _without_output_columns(df: pd.DataFrame) -> pd.DataFrame:
    """A shallow copy of ``df`` without the columns rerankpd writes, so none of them is left stale.

    Those of an earlier rerankpd run (``attrs["rerank"]``, or both ``rerank_score`` and ``rerank_rank``) go
    silently; a user's own column of one of those names goes with a warning.
    """
    present = [c for c in OUTPUT_COLUMNS if c in df.columns]
    if not present:
        return df.copy(deep=False)
    earlier_run = isinstance(df.attrs.get("rerank"), dict) or {SCORE, RANK} <= set(present)
    if not earlier_run:
        warn_user(
            f"the frame already has {', '.join(map(repr, present))}, which rerankpd writes; "
            "it is replaced in the result (rename that column to keep it)"
        )
    return df.drop(columns=present)


def _summary(run: Run, failed_rows: int) -> dict:
    pairs = run.doc_pairs
    return {
        "reranker": run.spec.name,
        "model": run.spec.model,
        "query": run.query,
        "query_column": run.query_column,
        "column": run.column,
        "rows": len(run.df),
        "unique_pairs": pairs.n_pairs,
        "chunks": run.chunks.n_chunks if run.chunks is not None else None,
        "from_cache": run.from_cache,
        "sent": run.sent,
        "missing": int((pairs.row_pair < 0).sum()),
        "failed": failed_rows,
        "requests": run.requests,
        "attempts": run.attempts,
        "failed_requests": run.failed_requests,
        "usage": dict(run.usage),
        "seconds": round(time.perf_counter() - run.started, 3),
        "cache_dir": run.cache.directory if run.cache is not None else None,
        "embedding": run.embedding,
    }


# --------------------------------------------------------------------------------------------- public
def _run(df, query, column, query_column, reranker, cache, progress, errors, top_n, cancel, on_progress):
    check_arguments(df, query, column, query_column, top_n, errors)
    with reranker_in_use(reranker) as model:
        run = plan_run(df, query, column, query_column, model, cache, errors)
        previous = model.bind_cache(cache) if hasattr(model, "bind_cache") else None
        try:
            failure = scoring_for(run.spec)(run, progress, cancel, on_progress)
        except BaseException as exc:
            _attach_partial(exc, run)
            raise
        finally:
            if hasattr(model, "bind_cache"):
                model.bind_cache(previous)
            if run.cache is not None:
                run.cache.close()  # every score is written; release SQLite's connection and page cache
        if failure is not None:
            _attach_partial(failure, run)
            if not isinstance(failure, RunCancelled):
                _say_how_to_resume(failure, run)
            raise failure
        return run


def _attach_partial(exc: BaseException, run: Run) -> None:
    for p in range(run.pairs.n_pairs):
        if math.isnan(run.pair_scores[p]) and p not in run.pair_errors:
            run.pair_errors[p] = "not scored: the run stopped first"
    try:
        setattr(exc, "partial", _assemble(run, None, True))  # noqa: B010 - an attribute BaseException does not declare
    except Exception:  # noqa: BLE001 - never hide the real error behind a failure to attach
        logger.debug("could not attach a partial result", exc_info=True)


def _say_how_to_resume(exc: BaseException, run: Run) -> None:
    """Add to the message of the error that stopped a run how many rows it left unscored and how to resume.

    The requests in flight when it failed have finished by then (:func:`rerankpd.run.scheduler.run_requests`),
    so every scored row is in ``exc.partial`` and, with the cache on, in the cache.
    """
    pairs, pair_scores, _, _ = _doc_level(run)
    has_text = pairs.row_pair >= 0
    missing = int((np.isnan(scatter(pair_scores, pairs.row_pair)) & has_text).sum())
    if not missing:
        return
    scored = int(has_text.sum()) - missing
    if run.cache is not None:
        how = "they are cached too: run the same call again and only the missing rows are sent"
    else:
        how = (
            "the cache was off, so a rerun sends every row again: turn the cache on, or rerank only the rows "
            "whose rerank_score is NaN in exc.partial"
        )
    note = (
        f"{missing} of {missing + scored} rows were not scored; the {scored} scored rows are in exc.partial, and {how}"
    )
    if isinstance(exc, RerankError):
        message = f"{exc.args[0] if exc.args else ''} -- {note}"
        exc.args = (message, *exc.args[1:])
        if hasattr(exc, "message"):
            exc.message = message
    elif hasattr(exc, "add_note"):  # Python 3.11+: a caller's own exception keeps its message
        exc.add_note(note)


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
    _cancel: threading.Event | None = None,
    _on_progress: ProgressCallback | None = None,
) -> pd.DataFrame:
    """The plain run behind :func:`rerankpd.rerank` (no prefilter): plan, score, assemble.

    Same arguments as :func:`rerankpd.rerank` without ``prefilter`` and ``candidates``; a cascade is
    :func:`rerankpd.run.cascade.rerank_cascade`, and :mod:`rerankpd.api` chooses between the two.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"text": ["cats purr", "dogs bark", "cats and dogs"]})
    >>> rerank(df, "cats", reranker="bm25", cache=False, progress=False).index.tolist()
    [0, 2, 1]
    """
    run = _run(df, query, column, query_column, reranker, cache, progress, errors, top_n, _cancel, _on_progress)
    out = _assemble(run, top_n, sort)
    _log_summary(out.attrs["rerank"])
    return out


def _log_summary(info: dict) -> None:
    logger.info(
        "reranked %d rows with %s (%s): %d pairs, %d from cache, %d sent in %d requests, %.2fs",
        info["rows"],
        info["reranker"],
        info["model"],
        info["unique_pairs"],
        info["from_cache"],
        info["sent"],
        info["requests"],
        info["seconds"],
    )


def scores(
    df: pd.DataFrame,
    query: str | None = None,
    column: Any = "text",
    *,
    query_column: Any = None,
    reranker: Any = None,
    cache: bool | str | os.PathLike = True,
    progress: bool | None = None,
    errors: str = "raise",
    _cancel: threading.Event | None = None,
    _on_progress: ProgressCallback | None = None,
) -> pd.Series:
    """The scores alone: a float Series named ``rerank_score`` aligned to ``df.index``.

    Same arguments as :func:`rerank` without ``top_n`` and ``sort``.

    Examples
    --------
    >>> import pandas as pd, rerankpd
    >>> df = pd.DataFrame({"text": ["cats purr", "dogs bark"]}, index=["a", "b"])
    >>> s = rerankpd.scores(df, "cats", reranker="bm25", cache=False, progress=False)
    >>> s.index.tolist(), bool(s["a"] > s["b"])
    (['a', 'b'], True)
    """
    run = _run(df, query, column, query_column, reranker, cache, progress, errors, None, _cancel, _on_progress)
    pairs, pair_scores, _, _ = _doc_level(run)
    return pd.Series(scatter(pair_scores, pairs.row_pair), index=df.index, name=SCORE, dtype="float64")
