"""Private: how an HTTP reranker's request goes out and what comes back (the retry loop, one attempt, errors).

:class:`Exchange` is the part of :class:`rerankpd.rerankers.http.client.HTTPReranker` that sends a request:
the shared request/token budget and the concurrency gate (:mod:`rerankpd.rerankers.http.ratelimit`), the
retry loop driven by :mod:`rerankpd.rerankers.http.retry`, one attempt's exchange within its deadline, the
cancellable waits, and the translation of every failure into the :mod:`rerankpd.errors` tree (scrubbed of
the key). The retry policy is described in :mod:`rerankpd.rerankers.http.client`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import requests
import urllib3

from ...core.options import boolean, number
from ...errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    BadResponseError,
    ConfigurationError,
    RateLimitError,
    RerankError,
    RunCancelled,
    ServerError,
)
from ...redact import shorten
from .answers import decode_json
from .ratelimit import PUBLISHED_LIMITS, AdaptiveConcurrency, RateLimiter, RateLimitWaitTooLong
from .retry import is_quick, may_retry, parse_retry_after, retry_delay, should_retry
from .transport import AnswerTooLarge, DeadlinePassed, post

__all__ = ["ERROR_TEXT_LIMIT", "Exchange"]

logger = logging.getLogger("rerankpd.rerankers.http.client")

#: Characters of a provider's error text kept in a message (after the key is scrubbed).
ERROR_TEXT_LIMIT = 300


class _RetryableFailure(Exception):
    """Internal: an attempt failed in a way worth retrying; carries the error to raise if none are left.

    ``wait`` is the server's ``Retry-After`` (if any); ``quick`` says the fault is retried quickly (see
    :func:`rerankpd.rerankers.http.retry.is_quick`).
    """

    def __init__(self, error: APIError, wait: float | None = None, quick: bool = False) -> None:
        super().__init__(str(error))
        self.error = error
        self.wait = wait
        self.quick = quick


class Exchange:
    """Sending a request and reading its answer (mixed into ``HTTPReranker``, which sets these attributes)."""

    name: str
    path: str
    auth_statuses: tuple[int, ...]
    default_requests_per_minute: float | None
    default_tokens_per_minute: float | None
    max_concurrency: int
    timeout: tuple[float, float]
    attempt_deadline: float
    max_retries: int
    max_retry_time: float | None
    backoff_base: float
    backoff_cap: float
    retry_after_cap: float
    max_answer_bytes: int
    _url: str
    _verify: bool | str
    _clock: Callable[[], float]
    _sleep: Callable[[float], object] | None
    _cancel_event: threading.Event | None

    if TYPE_CHECKING:  # defined by HTTPReranker and EndpointAndKey

        @property
        def endpoint(self) -> str: ...

        def session(self) -> requests.Session: ...

        def _headers(self) -> dict[str, str]: ...

        def _secrets(self) -> list[str]: ...

        def _scrub(self, text: str) -> str: ...

        def _after_interrupt(self) -> None: ...

        def parse_response(self, data: Any, n_documents: int) -> Any: ...

        def error_message(self, data: Any, text: str) -> str: ...

        def auth_hint(self, status: int) -> str: ...

    # ----------------------------------------------------------------- budget and concurrency
    def _init_rate_limits(self, rpm: float | None, tpm: float | None, adaptive: bool) -> None:
        published_rpm, published_tpm = PUBLISHED_LIMITS.get(self.name, (None, None))
        rpm = number("requests_per_minute", rpm, minimum=0, allow_none=True)
        tpm = number("tokens_per_minute", tpm, minimum=0, allow_none=True)
        if rpm is None:
            rpm = self.default_requests_per_minute or published_rpm
        if tpm is None:
            tpm = self.default_tokens_per_minute or published_tpm
        #: The request/token budget shared by all requests of this reranker: a bucket holding one minute's
        #: quota, spaced evenly while 429s are frequent (see :meth:`rerankpd.rerankers.http.ratelimit.RateLimiter.rate_limited`).
        self.rate_limiter = RateLimiter(
            rpm or None, tpm or None, burst_seconds=60.0, clock=self._clock, sleep=self._wait
        )
        self.adaptive_concurrency = boolean("adaptive_concurrency", adaptive)
        self._new_gate()

    def _new_gate(self) -> None:
        #: Requests in flight, narrowed on 429s when ``adaptive_concurrency`` (see rerankpd.rerankers.http.ratelimit).
        self.concurrency_gate = AdaptiveConcurrency(self.max_concurrency, max_wait=self._slot_wait())

    def _slot_wait(self) -> float:
        """The longest wait for a concurrency slot: every other request in flight running to its deadline."""
        return self.max_concurrency * (self.attempt_deadline + self.retry_after_cap)

    # ----------------------------------------------------------------- time and cancel
    def _wait(self, seconds: float) -> None:
        """Sleep ``seconds`` (the injected sleep, else on the cancel event); RunCancelled once cancelled."""
        event = self._cancel_event
        if seconds > 0:
            if self._sleep is not None:
                self._sleep(seconds)
            elif event is None:
                time.sleep(seconds)
            else:  # short sleeps, looking at the flag: Event.wait's Python-level lock is not interrupt-safe
                until = time.monotonic() + seconds
                while not event.is_set() and (left := until - time.monotonic()) > 0:
                    time.sleep(min(left, 0.05))
        self._check_cancel()

    def _check_cancel(self) -> None:
        event = self._cancel_event
        if event is not None and event.is_set():
            raise RunCancelled(f"{self.name}: the run was cancelled; no further request is sent")

    # ----------------------------------------------------------------- one request
    def _request(self, payload: dict, n_documents: int, n_tokens: int = 0) -> Any:  # what parse_response returns
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        started = self._clock()
        try:
            for attempt in range(self.max_retries + 1):
                self._check_cancel()
                try:
                    result = self._attempt(body, n_documents, n_tokens)
                except _RetryableFailure as failure:
                    wait = retry_delay(
                        attempt,
                        retry_after=failure.wait,
                        quick=failure.quick,
                        base=self.backoff_base,
                        cap=self.backoff_cap,
                    )
                    if not may_retry(
                        attempt=attempt,
                        max_retries=self.max_retries,
                        wait=wait,
                        elapsed=self._clock() - started,
                        max_retry_time=self.max_retry_time,
                    ):
                        raise failure.error from failure.__cause__
                    logger.info(
                        "%s: %s; retry %d of %d in %.2fs",
                        self.name,
                        self._scrub(failure.error.message),
                        attempt + 1,
                        self.max_retries,
                        wait,
                    )
                    self._wait(wait)
                    continue
                result.attempts = attempt + 1
                return result
        except BaseException as exc:
            if not isinstance(exc, Exception):
                self._after_interrupt()
            raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _reserve_budget(self, n_tokens: int) -> None:
        try:
            self.rate_limiter.acquire(n_tokens)
        except RateLimitWaitTooLong as exc:
            budget = ", ".join(
                f"{name}={value:g}"
                for name, value in (
                    ("requests_per_minute", self.rate_limiter.requests_per_minute),
                    ("tokens_per_minute", self.rate_limiter.tokens_per_minute),
                )
                if value
            )
            raise RateLimitError(
                f"{self.name}: the request budget ({budget}) would hold this request {exc.delay or 0:.0f}s, more "
                f"than {exc.bound or 0:g}s; raise requests_per_minute/tokens_per_minute if your plan allows it "
                "(0 switches the budget off), or send fewer tokens per request (a smaller batch_size)",
                provider=self.name,
            ) from None

    def _attempt(self, body: bytes, n_documents: int, n_tokens: int = 0) -> Any:  # what parse_response returns
        """One request: the budget, a concurrency slot, the exchange, then the answer or a typed error."""
        self._reserve_budget(n_tokens)
        try:
            slot_context = self.concurrency_gate.acquire(cancel=self._cancel_event)
        except RateLimitWaitTooLong as exc:
            raise _RetryableFailure(RateLimitError(f"{self.name}: {exc}", provider=self.name)) from None
        with slot_context as slot:
            self._check_cancel()
            status, headers, raw = self._exchange(body, n_documents)
            retry_after = None
            if should_retry(status):  # the one place Retry-After is read
                retry_after = parse_retry_after(headers.get("Retry-After"), self.retry_after_cap)
            if status == 429:
                if retry_after:
                    self.rate_limiter.pause(retry_after)
                self.rate_limiter.rate_limited()
                if self.adaptive_concurrency and self.rate_limiter.throttled:  # 429s are frequent, not stray
                    slot.rate_limited()
            else:
                self.rate_limiter.answered()
                if status < 300:
                    slot.succeeded()
        if 200 <= status < 300:
            return self._parse(raw, status, n_documents)
        error = self._error_for(status, raw, retry_after)
        if should_retry(status):
            raise _RetryableFailure(error, retry_after, quick=is_quick(status))
        raise error

    def _exchange(self, body: bytes, n_documents: int) -> tuple[int, Any, bytes]:
        """POST ``body``; (status, headers, raw body), read within ``attempt_deadline``; transport errors typed."""
        logger.debug("%s: POST %s with %d documents", self.name, self.endpoint, n_documents)
        deadline = time.monotonic() + self.attempt_deadline
        connect, read = self.timeout
        try:
            return post(
                self.session(),
                self._url + self.path,
                body,
                self._headers(),
                (connect, min(read, self.attempt_deadline)),
                deadline,
                self._verify,
                self.max_answer_bytes,
            )
        except AnswerTooLarge as exc:  # not retried: the next answer would be as large, and as costly to read
            raise BadResponseError(
                f"{self.name}: the answer from {self.endpoint} is larger than max_answer_bytes="
                f"{self.max_answer_bytes} ({exc}); no real answer is this large: check base_url, or raise "
                "max_answer_bytes if the service really sends this much",
                provider=self.name,
            ) from None
        except DeadlinePassed:
            raise _RetryableFailure(
                APITimeoutError(
                    f"{self.name}: the answer from {self.endpoint} took longer than attempt_deadline="
                    f"{self.attempt_deadline:g}s",
                    provider=self.name,
                )
            ) from None
        except (requests.ConnectTimeout, urllib3.exceptions.ConnectTimeoutError) as exc:
            raise _RetryableFailure(
                APITimeoutError(
                    f"{self.name}: could not connect to {self.endpoint} within {connect:g}s (timeout={self.timeout})",
                    provider=self.name,
                )
            ) from exc
        except (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError) as exc:
            raise _RetryableFailure(
                APITimeoutError(
                    f"{self.name}: no answer from {self.endpoint} within {read:g}s (timeout={self.timeout})",
                    provider=self.name,
                )
            ) from exc
        except (
            requests.ConnectionError,
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError,
        ) as exc:
            raise self._connection_failed(exc) from exc
        except requests.RequestException as exc:  # an invalid URL or header: retrying cannot help
            raise ConfigurationError(
                f"{self.name}: cannot send to {self.endpoint}: {type(exc).__name__}: {self._scrub(str(exc))}"
            ) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:  # while reading the body
            raise self._connection_failed(exc) from exc

    def _connection_failed(self, exc: BaseException) -> _RetryableFailure:
        return _RetryableFailure(
            APIConnectionError(
                f"{self.name}: connection to {self.endpoint} failed: {type(exc).__name__}", provider=self.name
            ),
            quick=is_quick(None),
        )

    def _parse(self, raw: bytes, status: int, n_documents: int) -> Any:
        """A 2xx answer as :meth:`parse_response` reads it (scores, or a dialect's own answer); any
        malformed answer is a retryable BadResponseError."""
        data, is_json = decode_json(raw)
        try:
            if not is_json:
                raise BadResponseError("the body is not valid JSON")
            return self.parse_response(data, n_documents)
        except RerankError as exc:
            if not isinstance(exc, BadResponseError):
                raise
            detail = exc.message if isinstance(exc, APIError) else str(exc)
        except Exception as exc:  # a dialect tripping over a hostile answer: still a bad answer
            detail = f"{type(exc).__name__} reading the answer"
        raise _RetryableFailure(
            BadResponseError(
                f"{self.name}: unusable answer from {self.endpoint}: {self._shorten(detail)}",
                status_code=status,
                provider=self.name,
            )
        ) from None

    def _shorten(self, text: str) -> str:
        return shorten(text, self._secrets(), ERROR_TEXT_LIMIT)

    def _error_for(self, status: int, raw: bytes, retry_after: float | None) -> APIError:
        data, _ = decode_json(raw)
        try:
            said = self.error_message(data, raw.decode("utf-8", "replace"))
        except Exception:  # a hostile error body: keep the status, drop the words
            said = ""
        said = self._shorten(said)
        message = f"{self.name} answered HTTP {status}" + (f": {said}" if said else "")
        kwargs: dict[str, Any] = {"status_code": status, "provider": self.name}
        if status in self.auth_statuses:
            return AuthenticationError(message + self.auth_hint(status), **kwargs)
        if status == 429:
            return RateLimitError(message, retry_after=retry_after, **kwargs)
        if 500 <= status <= 599:
            return ServerError(message, **kwargs)
        if 400 <= status <= 499 and not should_retry(status):
            return BadRequestError(message, **kwargs)
        return APIError(message, **kwargs)
