"""``rerankpd.rerank``: the one real entry point behind ``df.rerank``.

The flow of one call (``design.md``): validate, build unique pairs, look them up in the score cache, plan
the requests for the misses, score them (up to the reranker's ``max_concurrency`` in flight, each finished
request written to the cache at once), then assemble a new frame. This module only orchestrates; the pure
steps live in :mod:`rerankpd.pairs`, the cache in :mod:`rerankpd.cache`, scoring in the rerankers.

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
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd

from . import cascade, config, embedding
from .cache import RunCache
from .chunking import ChunkPlan, plan_chunks
from .errors import BadResponseError, RunCancelled, warn_user
from .pairs import (Factorized, Pairs, build_pairs, plan_batches, rank_within_groups, scatter, sort_order, take_texts,
                    top_n_mask)
from .rerankers import Reranker, get_reranker
from .rerankers.base import BatchResult, RerankerSpec, describe

__all__ = ["rerank", "scores"]

logger = logging.getLogger(__name__)

SCORE, RANK, ERROR, CHUNK = "rerank_score", "rerank_rank", "rerank_error", "rerank_chunk"
_ERRORS = ("raise", "coerce")
ProgressCallback = Callable[[int, int], None]
#: Distinct texts held by Arrow are turned into Python strings all at once when there are at most this
#: many to score from (about 13 MB of str); beyond it, per request, so memory stays near the frame's.
_LIST_TEXTS_UP_TO = 100_000


# --------------------------------------------------------------------------------------------- validate
def _check_arguments(df: Any, query: Any, column: Any, query_column: Any, top_n: Any, errors: Any) -> None:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"rerank expects a pandas DataFrame, got {type(df).__name__}")
    if errors not in _ERRORS:
        raise ValueError(f"errors must be 'raise' or 'coerce', got {errors!r}")
    if top_n is not None and (not isinstance(top_n, (int, np.integer)) or isinstance(top_n, bool) or top_n < 1):
        raise ValueError(f"top_n must be a whole number >= 1 or None, got {top_n!r}")
    if (query is None) == (query_column is None):
        raise ValueError("give exactly one of query (one query for every row) and query_column "
                         "(a column holding each row's query)"
                         + ("; got both" if query is not None else "; got neither"))
    if query is not None:
        if not isinstance(query, str):
            raise ValueError(f"query must be a string, got {type(query).__name__}; "
                             "for a query per row use query_column=")
        if not query.strip():
            raise ValueError("query is empty")
    for name, value in (("column", column), ("query_column", query_column)):
        if value is None:
            continue
        try:
            present = value in df.columns
        except TypeError:
            raise TypeError(f"{name} must be one column label, got {type(value).__name__} {value!r}") from None
        if not present:
            raise KeyError(f"{name} {value!r} is not a column of the frame; its columns are {list(df.columns)!r}")
        if not isinstance(df[value], pd.Series):
            raise ValueError(f"{name} {value!r} names {df[value].shape[1]} columns of the frame "
                             "(its column labels repeat); give each column a unique name first")
    if query_column is not None and query_column == column:
        raise ValueError(f"query_column and column are both {column!r}; they must be different columns")


#: A blank text, exactly as ``not text.strip()`` decides it (Python's own whitespace characters).
_BLANK = "[" + "".join(chr(c) for c in range(0x110000) if chr(c).isspace()) + "]*"


def _text_cells(series: pd.Series, column: Any) -> Factorized:
    """The column's distinct texts and each row's code into them (-1 where missing or blank).

    Only the distinct values become Python strings, so a large column of repeated or Arrow-backed text
    costs a code per row, not a string object per row. TypeError names the first row that is not text.
    """
    try:
        codes, uniques = pd.factorize(series, use_na_sentinel=True)
    except TypeError:  # unhashable cells (lists, dicts): find and name the first one
        codes, uniques = None, None
    if codes is None:
        for label, value in series.items():
            if not isinstance(value, str) and not _is_missing(value):
                _not_text(column, label, value)
        raise AssertionError("unreachable")  # pragma: no cover
    if isinstance(series.dtype, pd.StringDtype):  # every value is a str: check blanks without making one
        values = pd.Index(uniques)
        keep = ~np.asarray(values.str.fullmatch(_BLANK), dtype=bool)
        return _factorized(np.asarray(codes, dtype=np.int64), values if keep.all() else values[keep], keep)
    values = np.asarray(uniques, dtype=object)
    keep = np.ones(len(values), dtype=bool)
    for j, value in enumerate(values):
        if type(value) is not str:
            if not isinstance(value, str):
                _not_text(column, series.index[int(np.flatnonzero(codes == j)[0])], value)
            value = values[j] = str(value)
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:  # a lone surrogate: no service or model can take it
                label = series.index[int(np.flatnonzero(codes == j)[0])]
                raise TypeError(f"column {column!r}: the row with index {label!r} is not valid Unicode (a lone "
                                f"surrogate {value[exc.start]!r} at position {exc.start}); decode the source "
                                "text with errors='replace' or drop the row") from None
        if not value.strip():
            keep[j] = False
    return _factorized(np.asarray(codes, dtype=np.int64), values[keep].tolist(), keep)


def _factorized(codes: np.ndarray, uniques: Any, keep: np.ndarray) -> Factorized:
    if not keep.all():  # blank texts: their rows get code -1, like missing ones
        remap = np.where(keep, np.cumsum(keep) - 1, -1)
        codes = np.where(codes >= 0, remap[np.maximum(codes, 0)], -1)
    return Factorized(codes, uniques)


def _is_missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _not_text(column: Any, label: Any, value: Any):
    raise TypeError(
        f"column {column!r} must hold text (str) or missing values; the row with index "
        f"{label!r} holds {type(value).__name__} {value!r:.60}")


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
            if callable(getattr(model, "close", None)):
                model.close()
        return
    if isinstance(reranker, type):
        raise ValueError(f"reranker is the class {reranker.__name__}; pass an object: "
                         f"reranker={reranker.__name__}(...)")
    if not callable(getattr(reranker, "score", None)):
        raise ValueError(f"reranker must be a name ({', '.join(_names())}) or an object with a "
                         f"score(query, documents) method, got {type(reranker).__name__}")
    yield reranker


def _names() -> list[str]:
    from .rerankers import available_rerankers

    return available_rerankers()


# --------------------------------------------------------------------------------------------- the run
@dataclass
class _Run:
    """Everything one call knows, from plan to assembly."""

    df: pd.DataFrame
    column: Any
    query: str | None
    query_column: Any
    reranker: Any
    spec: RerankerSpec
    pairs: Pairs
    errors: str
    cache: RunCache | None = None
    pair_scores: np.ndarray = field(default_factory=lambda: np.empty(0))
    pair_errors: dict[int, str] = field(default_factory=dict)
    batches: list[list[int]] = field(default_factory=list)
    from_cache: int = 0
    sent: int = 0
    requests: int = 0
    usage: Counter = field(default_factory=Counter)
    started: float = field(default_factory=time.perf_counter)
    chunks: ChunkPlan | None = None  # set when the reranker cuts documents on the client; pairs are then chunks
    embedding: dict | None = None  # [embedding hook] what the embedding path did (rerankpd.embedding)

    @property
    def to_score(self) -> int:
        return sum(len(b) for b in self.batches)


def _plan(df, query, column, query_column, reranker, cache, errors) -> _Run:
    texts = _text_cells(df[column], column)
    row_queries = query if query is not None else _text_cells(df[query_column], query_column)
    pairs = build_pairs(row_queries, texts)
    spec = describe(reranker)
    chunks = plan_chunks(pairs, spec.chunking) if spec.chunking is not None else None
    if chunks is not None:
        pairs = chunks.work  # the (query, chunk) pairs are what is cached, batched and sent
    run = _Run(df=df, column=column, query=query, query_column=query_column, reranker=reranker, spec=spec,
               pairs=pairs, errors=errors, pair_scores=np.full(pairs.n_pairs, np.nan), chunks=chunks)
    if pairs.n_pairs and spec.cacheable:
        run.cache = RunCache.open(cache, spec.identity)
    elif pairs.n_pairs and spec.pairwise and cache is not False:
        warn_user(f"{spec.name}: scores are not cached because the reranker names no model (a server can change "
                  "models behind one URL) or declares no identity(); pass model=... (or define identity()) to "
                  "cache them")
    if run.cache is not None:
        run.from_cache = run.cache.lookup(pairs, run.pair_scores)
    todo = np.flatnonzero(np.isnan(run.pair_scores))
    run.batches = plan_batches(todo, pairs.pair_group, spec.batch_size)
    return run


def _score_one(reranker: Any, name: str, query: str, documents: list[str]) -> BatchResult:
    score_batch = getattr(reranker, "score_batch", None)
    result = score_batch(query, documents) if callable(score_batch) else BatchResult(
        list(reranker.score(query, documents)))
    values = np.asarray(result.scores, dtype=np.float64).reshape(-1)   # also reads lists of str/int scores
    if len(values) != len(documents):
        raise BadResponseError(f"{name} returned {len(values)} scores for {len(documents)} documents",
                               provider=name)
    finite = np.isfinite(values)
    if not finite.all():
        bad = int(np.flatnonzero(~finite)[0])
        raise BadResponseError(f"{name} returned a score of {values[bad]} for document {bad} of the "
                               f"{len(documents)} in a request; scores must be finite numbers", provider=name)
    return BatchResult(values, dict(result.usage))


def _make_bar(run: _Run, progress: Any):
    if progress is False or run.to_score == 0:
        return None
    from tqdm.auto import tqdm

    name = run.spec.name
    bar = tqdm(total=run.to_score, desc=f"rerank [{name}]", unit="pair", delay=0 if progress else 1.0,
               dynamic_ncols=True, leave=bool(progress))
    if run.from_cache:
        bar.set_postfix(cached=run.from_cache, refresh=False)
    return bar


def _execute(run: _Run, progress: Any, cancel: threading.Event | None,
             on_progress: ProgressCallback | None) -> BaseException | None:
    """Score every planned batch; returns the error that stopped the run (errors='raise'), if any."""
    batches = iter(run.batches)
    total, done = run.to_score, 0
    pairs = run.pairs
    concurrency = run.spec.max_concurrency
    first_error: BaseException | None = None
    bar = _make_bar(run, progress)
    if on_progress is not None:
        on_progress(0, total)
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="rerankpd")
    pending: dict[Future, list[int]] = {}
    texts = pairs.texts
    if not isinstance(texts, list) and total and len(texts) <= _LIST_TEXTS_UP_TO:
        texts = texts.tolist()  # few enough to hold as str at once: cheaper than a take per request

    def submit_next() -> bool:
        batch = next(batches, None)
        if batch is None:
            return False
        query = pairs.queries[pairs.pair_group[batch[0]]]
        documents = take_texts(texts, pairs.pair_text[batch])
        if concurrency == 1:  # one at a time: score right here, without a hand-off to a worker thread
            future: Future = Future()
            try:
                future.set_result(_score_one(run.reranker, run.spec.name, query, documents))
            except Exception as exc:  # noqa: BLE001 - recorded by collect() like a worker's failure
                future.set_exception(exc)
            pending[future] = batch
        else:
            pending[pool.submit(_score_one, run.reranker, run.spec.name, query, documents)] = batch
        return True

    def collect(future: Future, batch: list[int]) -> BaseException | None:
        nonlocal done
        try:
            result = future.result()
        except Exception as exc:  # noqa: BLE001 - every failure is recorded or re-raised below
            message = str(exc) or type(exc).__name__
            for p in batch:
                run.pair_errors[p] = message
            outcome = exc
        else:
            run.pair_scores[batch] = result.scores
            run.requests += 1
            run.sent += len(batch)
            run.usage.update(result.usage)
            if run.cache is not None:
                run.cache.store(batch, result.scores)
            outcome = None
        done += len(batch)
        if bar is not None:
            bar.update(len(batch))
        if on_progress is not None:
            on_progress(done, total)
        return outcome

    try:
        while len(pending) < concurrency and submit_next():
            pass
        while pending:
            finished, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for future in finished:
                error = collect(future, pending.pop(future))
                if error is not None and first_error is None and run.errors == "raise":
                    first_error = error
            stopping = first_error is not None or (cancel is not None and cancel.is_set())
            while not stopping and len(pending) < concurrency and submit_next():
                pass
        if first_error is None and cancel is not None and cancel.is_set() and done < total:
            kept = "finished scores are cached" if run.cache is not None else "the cache was off"
            first_error = RunCancelled(f"cancelled after {done} of {total} pairs; {kept}")
    except BaseException:
        # Ctrl-C or a failure of our own: keep what is already in flight, then let the exception go on.
        if pending:
            logger.warning("rerankpd: waiting for %d requests in flight so their scores are kept "
                           "(interrupt again to abandon them)", len(pending))
        try:
            for future, batch in list(pending.items()):
                try:
                    future.result()
                except Exception:  # noqa: BLE001 - a failed request has nothing to keep
                    continue
                collect(future, batch)
        except KeyboardInterrupt:
            logger.warning("rerankpd: abandoned the requests still in flight")
        raise
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        if bar is not None:
            bar.close()
    return first_error


# --------------------------------------------------------------------------------------------- assemble
def _doc_level(run: _Run) -> tuple[Pairs, np.ndarray, dict[int, str], np.ndarray | None]:
    """The frame's pairs with their scores and errors; with chunking, each document's best chunk and which."""
    if run.chunks is None:
        return run.pairs, run.pair_scores, run.pair_errors, None
    scores, errors, chunk = run.chunks.reduce(run.pair_scores, run.pair_errors)
    return run.chunks.doc_pairs, scores, errors, chunk


def _assemble(run: _Run, top_n: int | None, sort: bool) -> pd.DataFrame:
    pairs, pair_scores, pair_errors, pair_chunk = _doc_level(run)
    row_scores = scatter(pair_scores, pairs.row_pair)
    ranks = rank_within_groups(row_scores, pairs.row_group)
    out = run.df.copy(deep=False)
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


def _summary(run: _Run, failed_rows: int) -> dict:
    pairs = run.chunks.doc_pairs if run.chunks is not None else run.pairs
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
        "usage": dict(run.usage),
        "seconds": round(time.perf_counter() - run.started, 3),
        "cache_dir": run.cache.directory if run.cache is not None else None,
        "embedding": run.embedding,  # [embedding hook]
    }


# --------------------------------------------------------------------------------------------- public
def _run(df, query, column, query_column, reranker, cache, progress, errors, top_n, cancel, on_progress):
    _check_arguments(df, query, column, query_column, top_n, errors)
    with reranker_in_use(reranker) as model:
        run = _plan(df, query, column, query_column, model, cache, errors)
        try:
            if embedding.applies(run.spec.kind, model):  # [embedding hook] each distinct text embedded once
                failure = embedding.execute_run(run, cache, progress, cancel, on_progress)
            else:
                failure = _execute(run, progress, cancel, on_progress)
        except BaseException as exc:
            _attach_partial(exc, run)
            raise
        finally:
            if run.cache is not None:
                run.cache.close()  # every score is written; release SQLite's connection and page cache
        if failure is not None:
            _attach_partial(failure, run)
            raise failure
        return run


def _attach_partial(exc: BaseException, run: _Run) -> None:
    for p in range(run.pairs.n_pairs):
        if math.isnan(run.pair_scores[p]) and p not in run.pair_errors:
            run.pair_errors[p] = "not scored: the run stopped first"
    try:
        exc.partial = _assemble(run, None, True)
    except Exception:  # noqa: BLE001 - never hide the real error behind a failure to attach
        logger.debug("could not attach a partial result", exc_info=True)


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
        None (default): the reranker scores every row. Else a cascade (:mod:`rerankpd.cascade`): a column of
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
    if prefilter is not None:  # [cascade hook] a prefilter picks the candidates; rerankpd.cascade does the rest
        _check_arguments(df, query, column, query_column, top_n, errors)
        return cascade.rerank_cascade(df, query, column, query_column=query_column, top_n=top_n, reranker=reranker,
                                      prefilter=prefilter, candidates=candidates, sort=sort, cache=cache,
                                      progress=progress, errors=errors)
    run = _run(df, query, column, query_column, reranker, cache, progress, errors, top_n, _cancel, _on_progress)
    out = _assemble(run, top_n, sort)
    _log_summary(out.attrs["rerank"])
    return out


def _log_summary(info: dict) -> None:
    logger.info("reranked %d rows with %s (%s): %d pairs, %d from cache, %d sent in %d requests, %.2fs",
                info["rows"], info["reranker"], info["model"], info["unique_pairs"], info["from_cache"],
                info["sent"], info["requests"], info["seconds"])


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

