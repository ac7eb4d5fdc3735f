"""Client-side rate limiting: a shared request/token budget and adaptive concurrency.

Two independent, thread-safe tools, both free of third-party dependencies:

``RateLimiter``
    Spaces requests so that a provider's published limits -- requests per minute
    and (estimated) tokens per minute -- are never exceeded.  One instance is
    shared by every in-flight request of a reranker.  It is a generic cell rate
    algorithm (GCRA, a token bucket written as "the earliest time the next unit
    may go"): each call *reserves* its slot under a lock and then sleeps outside
    it, so waiting threads never block each other and are served first come,
    first served.  It bursts while the service grants it and spaces requests
    evenly while 429s are frequent (:meth:`RateLimiter.rate_limited`).

``AdaptiveConcurrency``
    Additive-increase / multiplicative-decrease on the number of requests in
    flight: a 429 halves the allowed count (down to 1), a run of successes raises
    it by one (up to the configured maximum).  A long run therefore settles just
    under the provider's real limit instead of hammering it.

Both take an injectable clock (and sleep) so tests run on a fake clock.

Examples
--------
>>> limiter = RateLimiter(requests_per_minute=600, tokens_per_minute=60_000)
>>> waited = limiter.acquire(n_tokens=120)        # first call goes at once
>>> waited
0.0
>>> gate = AdaptiveConcurrency(max_concurrency=8)
>>> with gate.acquire() as slot:
...     slot.succeeded()                          # or slot.rate_limited() on a 429
>>> gate.limit
8
"""

from __future__ import annotations

import logging
import math
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from types import TracebackType

from ...core.options import number, whole
from ...errors import RunCancelled

__all__ = [
    "PUBLISHED_LIMITS",
    "AdaptiveConcurrency",
    "RateLimitWaitTooLong",
    "RateLimiter",
    "Slot",
]

logger = logging.getLogger(__name__)

#: Default ceiling on one wait, in seconds.  A wait longer than this means the
#: configured limits cannot serve the work in any reasonable time.
DEFAULT_MAX_WAIT = 600.0


#: How many recent answers the budget looks back over to tell a service's real limit from a stray 429.
RATE_WINDOW = 12
#: 429s among the last ``RATE_WINDOW`` answers that make the budget space requests evenly (half of them):
#: a server that really limits answers most requests above its rate with 429, a flaky one an odd few.
THROTTLE_AT = 6


#: Published rerank limits of hosted services, as (requests per minute, tokens per minute) for the
#: entry-level paid tier; HTTP rerankers of these names use them unless told otherwise. Sources: each
#: service's rate-limit page (SiliconFlow: reranker RPM 2000 / TPM 500k; Cohere: rerank 1000/min on a
#: production key, 10/min on a trial key; Jina: 500 RPM / 1M TPM with a key; Voyage: rerank-2 tier 1
#: 2000 RPM / 2M TPM). Services without a published figure (DMXAPI, DashScope) and self-hosted servers
#: (TEI, Infinity, vLLM) have none: there only the adaptive concurrency reacts to 429s.
PUBLISHED_LIMITS: dict[str, tuple[float | None, float | None]] = {
    "siliconflow": (2000, 500_000),
    "cohere": (1000, None),
    "jina": (500, 1_000_000),
    "voyage": (2000, 2_000_000),
}


class RateLimitWaitTooLong(TimeoutError):
    """A wait for the rate limiter or a concurrency slot would exceed its bound.

    Raised *before* anything is reserved, so the limiter's state is unchanged. ``delay`` is the wait it
    would have taken (None for a slot) and ``bound`` the limit it exceeds.
    """

    def __init__(self, message: str, delay: float | None = None, bound: float | None = None) -> None:
        super().__init__(message)
        self.delay, self.bound = delay, bound


def _rate(value: float | None, name: str) -> float | None:
    return number(name, value, minimum=0, exclusive_minimum=True, allow_none=True)


def _seconds(value: float | None, name: str) -> float | None:
    return number(name, value, minimum=0, allow_none=True, allow_inf=True)


def _bound(default: float | None, override: float | None, name: str) -> float | None:
    """The effective wait bound: the per-call override, else the default; inf -> None."""
    value = default if override is None else _seconds(override, name)
    return None if value is None or math.isinf(value) else value


class RateLimiter:
    """A thread-safe budget of requests and tokens per minute, shared by all requests.

    Each :meth:`acquire` reserves one request and ``n_tokens`` tokens and sleeps
    until both budgets allow it.  Without burst tolerance requests are spaced
    evenly (``60 / requests_per_minute`` seconds apart, or longer when a request
    carries many tokens), which keeps every sliding window of the provider under
    its limit.  With ``burst_seconds=60`` it is a token bucket holding one
    minute's quota: a run that fits in the quota goes at once, a longer one
    settles on the rate.  The outcome of every answer is reported with
    :meth:`rate_limited` (a 429) or :meth:`answered` (anything else): while half
    of the last ``RATE_WINDOW`` answers are 429s the budget spaces requests
    evenly; once that many answers in a row come without one it may burst again
    (with an empty bucket, refilled only by sending slower than the rate).

    Parameters
    ----------
    requests_per_minute : float, optional
        Request budget; ``None`` means unlimited.
    tokens_per_minute : float, optional
        Token budget; ``None`` means unlimited.
    burst_seconds : float, default 0.0
        How far ahead of the even schedule a request may go, in seconds of
        budget (e.g. ``1.0`` lets one second's worth of requests go at once;
        ``60`` a minute's quota, never more).
    max_wait : float or None, default 600.0
        Longest a single :meth:`acquire` may wait; a longer wait raises
        :class:`RateLimitWaitTooLong` without reserving anything.  ``None``
        waits as long as it takes.
    clock : callable, default time.monotonic
        Returns the current time in seconds.
    sleep : callable, default time.sleep
        Sleeps for a number of seconds.

    Examples
    --------
    >>> t = [0.0]
    >>> limiter = RateLimiter(requests_per_minute=60, clock=lambda: t[0], sleep=lambda s: None)
    >>> limiter.reserve(), limiter.reserve(), limiter.reserve()
    (0.0, 1.0, 2.0)
    """

    def __init__(
        self,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        *,
        burst_seconds: float = 0.0,
        max_wait: float | None = DEFAULT_MAX_WAIT,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        self.requests_per_minute = _rate(requests_per_minute, "requests_per_minute")
        self.tokens_per_minute = _rate(tokens_per_minute, "tokens_per_minute")
        tau = _seconds(burst_seconds, "burst_seconds")
        #: The burst tolerance in force: the configured one, or 0 while 429s are frequent.
        self.burst_seconds = 0.0 if tau is None else tau
        self._burst = self.burst_seconds
        self._recent: deque[bool] = deque(maxlen=RATE_WINDOW)  # True: a 429
        self.throttled = False  #: spacing requests evenly because 429s are frequent
        self.max_wait = _seconds(max_wait, "max_wait")
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        start = clock()
        # Theoretical arrival time per budget: when it is fully "paid off".
        self._next_request = start
        self._next_token = start
        self._paused_until = start

    @property
    def enabled(self) -> bool:
        """True when at least one budget is set."""
        return self.requests_per_minute is not None or self.tokens_per_minute is not None

    def __repr__(self) -> str:
        return (
            f"RateLimiter(requests_per_minute={self.requests_per_minute!r}, "
            f"tokens_per_minute={self.tokens_per_minute!r})"
        )

    def reserve(self, n_tokens: int = 0, *, max_wait: float | None = None) -> float:
        """Reserve one request and ``n_tokens`` tokens; return the delay before it may go.

        Does not sleep: the caller must wait the returned number of seconds.

        Parameters
        ----------
        n_tokens : int, default 0
            Tokens this request consumes (see :func:`rerankpd.core.tokens.request_tokens`).
        max_wait : float, optional
            Overrides the instance's ``max_wait`` for this call (``math.inf``:
            no bound).

        Returns
        -------
        float
            Seconds to wait, ``>= 0``.

        Raises
        ------
        RateLimitWaitTooLong
            If the delay would exceed ``max_wait``; nothing is reserved then.
        """
        n_tokens = whole("n_tokens", n_tokens, minimum=0)
        bound = _bound(self.max_wait, max_wait, "max_wait")
        rpm, tpm, tau = self.requests_per_minute, self.tokens_per_minute, self.burst_seconds
        with self._lock:
            now = self._clock()
            start = max(now, self._paused_until)
            if rpm is not None:  # a burst never goes beyond one minute's quota of requests
                start = max(start, self._next_request - min(tau, 60.0 - 60.0 / rpm))
            if tpm is not None:
                start = max(start, self._next_token - tau)
            delay = start - now
            if bound is not None and delay > bound:
                raise RateLimitWaitTooLong(
                    f"rate limiter would wait {delay:.1f}s (> max_wait={bound:g}s); "
                    f"raise requests_per_minute/tokens_per_minute or max_wait, or lower concurrency",
                    delay,
                    bound,
                )
            if rpm is not None:
                self._next_request = max(self._next_request, start) + 60.0 / rpm
            if tpm is not None:
                self._next_token = max(self._next_token, start) + 60.0 * n_tokens / tpm
        return delay

    def acquire(self, n_tokens: int = 0, *, max_wait: float | None = None) -> float:
        """Block until one request carrying ``n_tokens`` tokens may go.

        Parameters
        ----------
        n_tokens : int, default 0
            Tokens this request consumes.
        max_wait : float, optional
            Overrides the instance's ``max_wait`` for this call (``math.inf``:
            no bound).

        Returns
        -------
        float
            Seconds waited.

        Raises
        ------
        RateLimitWaitTooLong
            If the wait would exceed ``max_wait``; nothing is reserved then.

        Examples
        --------
        >>> RateLimiter(requests_per_minute=6000).acquire()
        0.0
        """
        delay = self.reserve(n_tokens, max_wait=max_wait)
        if delay > 0:
            logger.debug("rate limiter: waiting %.3fs", delay)
            self._sleep(delay)
        return delay

    def pause(self, seconds: float) -> None:
        """Hold every request for ``seconds`` from now (e.g. a 429's Retry-After).

        Pauses never shorten an earlier pause.

        Examples
        --------
        >>> t = [0.0]
        >>> limiter = RateLimiter(clock=lambda: t[0])
        >>> limiter.pause(2.5)
        >>> limiter.reserve()
        2.5
        """
        secs = _seconds(seconds, "seconds") or 0.0
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + secs)

    def rate_limited(self) -> None:
        """The service answered 429: when half of the recent answers were 429s, stop bursting.

        A stray 429 changes nothing here (its ``Retry-After`` is a :meth:`pause`). When ``THROTTLE_AT`` of
        the last ``RATE_WINDOW`` answers were 429s, the service does not grant the burst: requests are
        spaced evenly (``burst_seconds`` becomes 0), and as the schedule already counts every request of
        the burst, the next one waits until the even schedule catches up.

        >>> t = [0.0]
        >>> limiter = RateLimiter(requests_per_minute=60, burst_seconds=60, clock=lambda: t[0])
        >>> limiter.reserve(), limiter.reserve()
        (0.0, 0.0)
        >>> limiter.rate_limited()                     # one 429: still bursting
        >>> limiter.reserve()
        0.0
        >>> for _ in range(THROTTLE_AT - 1):
        ...     limiter.rate_limited()
        >>> limiter.throttled, limiter.reserve()
        (True, 3.0)
        """
        with self._lock:
            self._recent.append(True)
            if not self.throttled and sum(self._recent) >= THROTTLE_AT:
                self.throttled = True
                self.burst_seconds = 0.0
                if self._burst:
                    logger.info(
                        "rate limiter: %d of the last %d answers were 429s; spacing requests evenly until they stop",
                        sum(self._recent),
                        len(self._recent),
                    )

    def answered(self) -> None:
        """The service answered without a 429: after ``RATE_WINDOW`` such answers in a row, burst again.

        The bucket starts empty then: it fills only while requests go slower than the rate, so a service
        that really limits at the budget's rate keeps being paced evenly, and one that only had a bad
        moment gets its burst back as the run slows down.

        >>> t = [0.0]
        >>> limiter = RateLimiter(requests_per_minute=60, burst_seconds=60, clock=lambda: t[0])
        >>> for _ in range(THROTTLE_AT):
        ...     limiter.rate_limited()
        >>> for _ in range(RATE_WINDOW):
        ...     limiter.answered()
        >>> limiter.throttled, limiter.burst_seconds
        (False, 60.0)
        """
        with self._lock:
            self._recent.append(False)
            if self.throttled and not any(self._recent) and len(self._recent) == RATE_WINDOW:
                self.throttled = False
                self.burst_seconds = self._burst
                now = self._clock()
                if self.requests_per_minute is not None:
                    ahead = min(self._burst, 60.0 - 60.0 / self.requests_per_minute)
                    self._next_request = max(self._next_request, now + ahead)
                self._next_token = max(self._next_token, now + self._burst)
                logger.info("rate limiter: no 429 in the last %d answers; bursting again", RATE_WINDOW)


#: The longest one wait for a free slot sleeps before it looks again (a release normally wakes it at once).
POLL_SECONDS = 0.05


class Slot:
    """One granted place in an :class:`AdaptiveConcurrency` gate.

    A context manager: leaving the ``with`` block releases it.  Report the
    outcome with :meth:`succeeded` or :meth:`rate_limited` before releasing.
    A slot that is dropped without being released (its holder was interrupted
    between taking it and entering the ``with`` block) is given back when it is
    garbage collected.
    """

    __slots__ = ("_gate", "_epoch", "_released", "__weakref__")  # a weak reference counts it in flight

    def __init__(self, gate: AdaptiveConcurrency, epoch: int) -> None:
        self._gate = gate
        self._epoch = epoch
        self._released = False

    def succeeded(self) -> None:
        """Count a successful request towards raising the limit."""
        self._gate._on_success()

    def rate_limited(self) -> None:
        """Report a 429: halve the limit (once per congestion episode)."""
        self._gate._on_rate_limited(self._epoch)

    def release(self) -> None:
        """Give the place back; calling it twice is harmless."""
        if not self._released:
            self._released = True
            self._gate._release(self)

    def __enter__(self) -> Slot:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class AdaptiveConcurrency:
    """A thread-safe gate on requests in flight whose width adapts to 429s (AIMD).

    On a 429 the limit halves (never below 1).  After ``increase_after``
    consecutive successes it grows by one (never above ``max_concurrency``).
    Several 429s from requests that were already in flight when the limit was
    cut count as one congestion signal, so a burst of 429s halves the limit
    once, not once per request.

    Interrupt-safe: the places in flight are the live :class:`Slot` objects
    (held by weak reference, counted without callbacks), so a KeyboardInterrupt
    anywhere in :meth:`acquire` or a release cannot leak a place; the state lock
    is a C lock taken only by ``with`` (CPython checks for signals and async
    exceptions after a call returns, so ``lock.acquire()`` followed by ``try`` can
    be interrupted holding the lock, but nothing runs between a ``with`` statement's
    ``__enter__`` and its protected block), and a waiter never depends on a
    notification (it looks again at least every ``POLL_SECONDS``), so no wait
    can hang.

    Parameters
    ----------
    max_concurrency : int
        Upper bound and starting value of the limit.
    increase_after : int or None, default None
        Successes needed to raise the limit by one; ``None`` means "the current
        limit", i.e. about one full round of requests per step (like TCP's
        congestion avoidance).
    max_wait : float, default 600.0
        Longest :meth:`acquire` waits for a place before raising
        :class:`RateLimitWaitTooLong` (``math.inf`` or None: no bound; an HTTP
        reranker always passes a bound).

    Examples
    --------
    >>> gate = AdaptiveConcurrency(max_concurrency=4, increase_after=2)
    >>> with gate.acquire() as slot:
    ...     slot.rate_limited()
    >>> gate.limit
    2
    >>> for _ in range(2):
    ...     with gate.acquire() as slot:
    ...         slot.succeeded()
    >>> gate.limit
    3
    """

    def __init__(
        self,
        max_concurrency: int,
        *,
        increase_after: int | None = None,
        max_wait: float | None = DEFAULT_MAX_WAIT,
    ) -> None:
        self.max_concurrency = whole("max_concurrency", max_concurrency, minimum=1)
        self.increase_after = whole("increase_after", increase_after, minimum=1, allow_none=True)
        self.max_wait = _seconds(max_wait, "max_wait")
        self._lock = threading.Lock()
        # A wake-up hint, as a raw lock (no Python-level Condition, whose __enter__ an interrupt can split):
        # held means "nothing freed"; a release lets one waiter through. Waiters never rely on it alone.
        self._freed = threading.Lock()
        self._freed.acquire()
        self._holders: dict[int, weakref.ReferenceType[Slot]] = {}
        self._limit = self.max_concurrency
        self._successes = 0
        self._epoch = 0  # bumped on every decrease
        self.decreases = 0  #: number of times the limit was cut (for reporting)

    @property
    def limit(self) -> int:
        """Requests currently allowed in flight."""
        return self._limit

    @property
    def in_flight(self) -> int:
        """Requests currently holding a slot."""
        return sum(1 for ref in list(self._holders.values()) if ref() is not None)

    def _live(self) -> int:
        """Places held by live slots, forgetting slots that were dropped unreleased (call under the lock)."""
        for key in [key for key, ref in self._holders.items() if ref() is None]:
            self._holders.pop(key, None)
        return len(self._holders)

    def __repr__(self) -> str:
        return (
            f"AdaptiveConcurrency(limit={self._limit}, max_concurrency={self.max_concurrency}, "
            f"in_flight={self.in_flight})"
        )

    def try_acquire(self) -> Slot | None:
        """Take a slot if one is free now, else return ``None`` without waiting."""
        slot = Slot(self, self._epoch)
        try:
            with self._lock:
                if self._live() >= self._limit:
                    return None
                slot._epoch = self._epoch
                self._holders[id(slot)] = weakref.ref(slot)
            return slot
        except BaseException:  # interrupted after taking it: give it back
            self._release(slot)
            raise

    def acquire(self, timeout: float | None = None, cancel: threading.Event | None = None) -> Slot:
        """Wait for a slot; use the result as a context manager.

        Parameters
        ----------
        timeout : float, optional
            Overrides ``max_wait`` for this call (``math.inf``: no bound).
        cancel : threading.Event, optional
            When it is set the wait ends with :class:`rerankpd.errors.RunCancelled`.

        Returns
        -------
        Slot
            Release it by leaving its ``with`` block (or calling ``release()``).

        Raises
        ------
        RateLimitWaitTooLong
            If no slot frees up within the timeout.
        """
        bound = _bound(self.max_wait, timeout, "timeout")
        deadline = None if bound is None else time.monotonic() + bound
        while True:
            if cancel is not None and cancel.is_set():
                raise RunCancelled("cancelled while waiting for a concurrency slot")
            slot = self.try_acquire()
            if slot is not None:
                return slot
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise RateLimitWaitTooLong(
                    f"no concurrency slot freed within {bound:g}s (limit={self._limit}, in flight={self.in_flight})",
                    None,
                    bound,
                )
            self._freed.acquire(timeout=POLL_SECONDS if left is None else min(POLL_SECONDS, left))

    def _wake(self) -> None:
        try:
            self._freed.release()
        except RuntimeError:  # already signalled
            pass

    def _release(self, slot: Slot) -> None:
        with self._lock:
            ref = self._holders.get(id(slot))
            if ref is not None and ref() is slot:
                del self._holders[id(slot)]
        self._wake()

    def _on_success(self) -> None:
        raised = False
        with self._lock:
            if self._limit >= self.max_concurrency:
                self._successes = 0
            else:
                self._successes += 1
                if self._successes >= (self.increase_after or self._limit):
                    self._limit += 1
                    self._successes = 0
                    raised = True
        if raised:
            logger.debug("adaptive concurrency: limit raised to %d", self._limit)
            self._wake()

    def _on_rate_limited(self, epoch: int) -> None:
        with self._lock:
            self._successes = 0
            if epoch != self._epoch:
                return  # already cut for this episode
            self._epoch += 1
            self.decreases += 1
            old, self._limit = self._limit, max(1, self._limit // 2)
        if old != self._limit:
            logger.info("adaptive concurrency: 429 received, limit %d -> %d", old, self._limit)
