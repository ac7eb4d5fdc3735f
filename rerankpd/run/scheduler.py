"""Running a reranker's requests: up to N in flight, each finished one reported to callbacks at once.

:func:`run_requests` knows nothing of frames, caches or progress bars. It takes the reranker, the requests
(an iterable, read lazily: a request's documents are made only when it is sent) and callbacks; each
callback gets a :class:`Finished` for every request as soon as it ends, in the calling thread, so the
pipeline stores scores, writes the cache and moves the progress bar from there.

The rules it keeps:

- ``max_in_flight=1`` scores in the calling thread (no hand-off to a worker thread per request).
- ``on_scored`` runs in the thread that ran a request, right after it succeeded and before its place is
  given to the next request: what it does (the pipeline writes the scores to the cache) is done before
  any further request is sent, without the calling thread waiting for it.
- The first failure stops new requests when ``stop_on_error`` (the pipeline's ``errors="raise"``); the
  requests already in flight still finish and are reported.
- ``cancel`` (a :class:`threading.Event`) stops new requests once set; a :class:`~rerankpd.Reranker` gets it
  through :meth:`~rerankpd.Reranker.bind_cancel` for the run (and None after), so its sleeps wake at once.
- Ctrl-C (or a failing callback) sets ``cancel``, waits for the requests in flight so their results are
  reported (a second Ctrl-C abandons them), then lets the exception go on.

Examples
--------
>>> class Length:
...     def score(self, query, documents):
...         return [len(d) for d in documents]
>>> seen = []
>>> outcome = run_requests(Length(), [Request("q", ["a", "abc"], key=0)], name="length",
...                        callbacks=[seen.append])
>>> seen[0].result.scores.tolist(), outcome.error, outcome.cancelled
([1.0, 3.0], None, False)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

from ..core.options import is_whole
from ..errors import BadResponseError, RunCancelled
from ..rerankers.base import BatchResult, EmbeddingBatch, Reranker

__all__ = ["Finished", "Outcome", "Request", "run_bounded", "run_requests", "score_request"]

logger = logging.getLogger(__name__)

R = TypeVar("R", BatchResult, EmbeddingBatch)  # what a job returned: scores, or an embedding call's vectors


@dataclass(frozen=True)
class Request:
    """One call to the reranker: a query and its documents; ``key`` says what they stand for (the caller's)."""

    query: str
    documents: list[str]
    key: Any = None


@dataclass(frozen=True)
class Finished(Generic[R]):
    """A request that ended: its ``result`` (scores as a float64 array), or the ``error`` it raised.

    ``attempts`` is how many HTTP requests it took, retries included (1 for a local reranker).
    ``request`` is the :class:`Request`, or the job given to :func:`run_bounded`.
    """

    request: Any
    result: R | None
    error: BaseException | None
    attempts: int = 1

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Outcome:
    """How a run of requests ended: the failure that stopped it (with ``stop_on_error``), whether the cancel
    event stopped it before every request was sent, and how many requests finished."""

    error: BaseException | None
    cancelled: bool
    finished: int


Callback = Callable[[Finished], None]


def score_request(reranker: Any, name: str, query: str, documents: list[str]) -> BatchResult:
    """Call the reranker once and check its answer: one finite score per document.

    A :class:`~rerankpd.Reranker` is called through ``score_batch`` (scores and usage), any other object
    through ``score``. Raises :class:`~rerankpd.errors.BadResponseError` for a wrong count or a NaN/inf.
    """
    if isinstance(reranker, Reranker):
        result = reranker.score_batch(query, documents)
    else:
        result = BatchResult(list(reranker.score(query, documents)))
    values = np.asarray(result.scores, dtype=np.float64).reshape(-1)  # also reads lists of str/int scores
    if len(values) != len(documents):
        raise BadResponseError(f"{name} returned {len(values)} scores for {len(documents)} documents", provider=name)
    finite = np.isfinite(values)
    if not finite.all():
        bad = int(np.flatnonzero(~finite)[0])
        raise BadResponseError(
            f"{name} returned a score of {values[bad]} for document {bad} of the "
            f"{len(documents)} in a request; scores must be finite numbers",
            provider=name,
        )
    requests = getattr(result, "requests", 1)
    return BatchResult(
        values,
        dict(result.usage),
        result.attempts if is_whole(result.attempts) else 1,
        requests if is_whole(requests) and requests >= 0 else 1,
    )


def _finished(request: Any, call: Callable[[], R]) -> Finished[R]:
    try:
        result = call()
    except Exception as exc:  # noqa: BLE001 - every failure is reported to the callbacks
        attempts = getattr(exc, "attempts", None)  # an APIError may say how many requests it took
        return Finished(request, None, exc, attempts if is_whole(attempts) else 1)
    return Finished(request, result, None, result.attempts)


def run_requests(
    reranker: Any,
    requests: Iterable[Request],
    *,
    name: str,
    max_in_flight: int = 1,
    callbacks: Sequence[Callback] = (),
    cancel: threading.Event | None = None,
    stop_on_error: bool = True,
    on_scored: Callable[[Request, BatchResult], None] | None = None,
) -> Outcome:
    """Send ``requests`` to ``reranker``, up to ``max_in_flight`` at once, reporting each to ``callbacks``.

    ``on_scored(request, result)`` is called in the thread that ran each successful request, before the
    request counts as finished (it must not raise).

    Returns an :class:`Outcome`; raises only what interrupts it (Ctrl-C, a failing callback), after the
    requests in flight have been waited for and reported.
    """
    cancel = cancel if cancel is not None else threading.Event()
    todo = iter(requests)
    state: dict[str, Any] = {"error": None, "finished": 0, "cut_short": False}

    def report(finished: Finished) -> None:
        state["finished"] += 1
        if cancel.is_set() and isinstance(finished.error, RunCancelled):
            state["cut_short"] = True  # the reranker gave up because of the cancel: not a failure of its own
        elif finished.error is not None and state["error"] is None and stop_on_error:
            state["error"] = finished.error
        for callback in callbacks:
            callback(finished)

    def stopping() -> bool:
        return state["error"] is not None or cancel.is_set()

    def call(request: Request) -> BatchResult:
        result = score_request(reranker, name, request.query, request.documents)
        if on_scored is not None:
            on_scored(request, result)
        return result

    if isinstance(reranker, Reranker):
        reranker.bind_cancel(cancel)
    try:
        run_bounded(call, todo, report, stopping, max_in_flight, cancel)
    finally:
        if isinstance(reranker, Reranker):
            reranker.bind_cancel(None)
    cancelled = state["error"] is None and cancel.is_set() and (state["cut_short"] or next(todo, None) is not None)
    return Outcome(state["error"], cancelled, state["finished"])


def run_bounded(
    call: Callable[[Any], Any],
    jobs: Iterator[Any],
    report: Callable[[Finished], None],
    stopping: Callable[[], bool],
    max_in_flight: int,
    cancel: threading.Event,
) -> None:
    """The one bounded in-flight loop: ``call(job)`` for each of ``jobs``, up to ``max_in_flight`` at once.

    Each job is reported as a :class:`Finished` (its ``request`` is the job) in the calling thread as soon
    as it ends. No new job starts once ``stopping()`` is true; those in flight still finish and are
    reported. ``max_in_flight=1`` calls in the calling thread. Ctrl-C (or a failing ``report``) sets
    ``cancel``, waits for the jobs in flight and reports those that succeeded (a second Ctrl-C abandons
    them), then lets the exception go on. The requests of a run (:func:`run_requests`) and the embedding
    calls of the embedding path both go through it.
    """
    if max_in_flight <= 1:
        _one_at_a_time(call, jobs, report, stopping)
    else:
        _in_flight(call, jobs, report, stopping, max_in_flight, cancel)


def _one_at_a_time(call, todo, report, stopping) -> None:
    """Score in the calling thread: no worker thread, no hand-off per request."""
    while not stopping():
        request = next(todo, None)
        if request is None:
            return
        report(_finished(request, lambda: call(request)))  # noqa: B023 - called within this iteration


def _in_flight(call, todo, report, stopping, max_in_flight: int, cancel: threading.Event) -> None:
    """Keep up to ``max_in_flight`` requests in worker threads; report each as it finishes."""
    pool = ThreadPoolExecutor(max_workers=max_in_flight, thread_name_prefix="rerankpd")
    pending: dict[Future, Request] = {}

    def submit() -> bool:
        request = next(todo, None)
        if request is not None:
            pending[pool.submit(call, request)] = request
        return request is not None

    try:
        while True:
            while len(pending) < max_in_flight and not stopping() and submit():
                pass
            if not pending:
                return
            done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for future in done:
                request = pending.pop(future)
                report(_finished(request, future.result))
    except BaseException:
        # Ctrl-C or a failure of our own: keep what is already in flight, then let the exception go on.
        cancel.set()  # no new attempt starts; a reranker's retry sleeps wake
        if pending:
            logger.warning(
                "rerankpd: waiting for %d requests in flight so their scores are kept "
                "(interrupt again to abandon them)",
                len(pending),
            )
        try:
            for future, request in list(pending.items()):
                finished = _finished(request, future.result)
                if finished.ok:  # a failed request has nothing to keep
                    report(finished)
        except KeyboardInterrupt:
            logger.warning("rerankpd: abandoned the requests still in flight")
        raise
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
