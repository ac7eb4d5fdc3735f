"""One HTTP client for every rerank service, and the dialect hooks a provider fills in.

A provider module subclasses :class:`HTTPReranker`, sets a few class attributes (name, default base URL,
path when it is not ``/rerank``, key variables, default model and batch size) and overrides the dialect
hooks that differ from the common Cohere-style shape: :meth:`~HTTPReranker.build_payload`,
:meth:`~HTTPReranker.parse_response`, :meth:`~HTTPReranker.error_message`,
:meth:`~HTTPReranker.score_options` (added to every request body by :meth:`~HTTPReranker.request_body`).
Everything else is shared: one ``requests.Session`` per reranker with a pool sized to its concurrency and
the proxy settings read once, explicit (connect, read) timeouts and a total deadline per attempt, one retry
loop driven by the pure policy functions of :mod:`rerankpd.rerankers.http.retry`, and one translation of
failures into the :mod:`rerankpd.errors` tree, with every text scrubbed of the key
(:func:`rerankpd.redact.scrub`).

Retry policy: 408, 409, 429 and 5xx answers, timeouts, dropped connections and malformed answers are
retried up to ``max_retries`` times and for at most ``max_retry_time`` seconds per request. A ``Retry-After``
header is honoured as given (fractions too) up to a cap; a dropped connection or a 502/503/504 is retried
after a short jittered wait; other faults wait a jittered backoff that doubles only with repeated failures
of the same request. 400, 401, 403, 404, 413 and 422 are never retried. Every wait (backoff,
``Retry-After``, the request budget, a concurrency slot) wakes when the run is cancelled
(:meth:`~rerankpd.rerankers.base.Reranker.bind_cancel`), and no attempt starts after that. The policy's
functions, with examples, are in :mod:`rerankpd.rerankers.http.retry`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3

from ... import config
from ...core.options import boolean, number, timeout_pair, whole
from ...core.tokens import budget_spans, request_tokens, text_tokens
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
from ...redact import scrub, shorten
from ..base import BatchResult, Reranker, Scores
from .answers import decode_json, scores_from_results, usage_counts
from .keys import EndpointAndKey, _is_loopback, openai_key_homes
from .ratelimit import PUBLISHED_LIMITS, AdaptiveConcurrency, RateLimiter, RateLimitWaitTooLong
from .retry import backoff_delay, is_quick, may_retry, parse_retry_after, retry_delay, should_retry
from .transport import AnswerTooLarge, DeadlinePassed, make_session, post

__all__ = [
    "MAX_ANSWER_BYTES",
    "HTTPReranker",
    "openai_key_homes",
    "backoff_delay",
    "parse_retry_after",
    "scores_from_results",
    "should_retry",
    "usage_counts",
]

logger = logging.getLogger(__name__)

#: Characters of a provider's error text kept in a message (after the key is scrubbed).
ERROR_TEXT_LIMIT = 300
#: The default largest answer body, in bytes once decoded (gzip ...): 512 MiB, some four times the largest
#: real answer (2,048 embeddings of 3,072 dimensions written as JSON text, about 130 MB); a rerank answer
#: is kilobytes.
MAX_ANSWER_BYTES = 512 * 2**20


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


class HTTPReranker(EndpointAndKey, Reranker):
    """A rerank service reached over HTTP.

    Parameters
    ----------
    api_key
        The key; default from the first set variable in ``key_env``. Held as a :class:`~rerankpd.config.Secret`.
    base_url
        The service's base URL; requests go to ``base_url + path``. A ``user:password@`` in it is sent as
        HTTP basic auth and shown masked (``***:***@``) everywhere.
    model
        The model name.
    batch_size
        Documents per request.
    max_concurrency
        Requests in flight at once.
    timeout
        Seconds, or a ``(connect, read)`` pair: how long to wait to connect, and for each read.
    attempt_deadline
        Seconds one attempt may take in total, however the server trickles its answer; default the connect
        timeout plus twice the read timeout.
    max_retries
        Further attempts after the first, for retryable failures.
    max_retry_time
        The longest one request may spend retrying, in seconds from its first attempt: a retry whose wait
        would end later is not made (None: no bound).
    auth_scheme
        Prefix of the key in the ``Authorization`` header (``"Bearer"``); ``""`` sends the bare key.
    backoff_base, backoff_cap
        Seconds of the first backoff and the longest one; each wait is jittered between half and all of
        ``backoff_base * 2**retry``. A dropped connection or a 502/503/504 starts at a fifth of
        ``backoff_base`` (50 ms by default).
    retry_after_cap
        The longest ``Retry-After`` honoured, in seconds; a shorter one is waited exactly as given.
    max_request_tokens
        The most tokens one request may carry (query tokens x documents + the documents' tokens, counted by
        :func:`rerankpd.core.tokens.request_tokens`); requests are cut to stay within 80% of it
        (:data:`rerankpd.core.tokens.REQUEST_TOKEN_HEADROOM`). None: the service's published limit for the model
        (:meth:`request_limits`); 0: no limit.
    requests_per_minute, tokens_per_minute
        A budget shared by every request of this reranker (tokens are estimated from the text, see
        :func:`rerankpd.core.tokens.request_tokens`). None: the service's published limit where known
        (:data:`rerankpd.rerankers.http.ratelimit.PUBLISHED_LIMITS`), else unlimited; 0: unlimited. The budget is a
        per-minute quota: a run that fits in a minute's quota goes at full concurrency; beyond it, or while
        429s are frequent (half of the recent answers), requests are spaced evenly at the rate. A stray 429
        changes nothing but its own retry and the ``Retry-After`` pause.
    adaptive_concurrency
        While 429s are frequent (half of the recent answers), each 429 halves the requests allowed in
        flight (down to 1); a run of successes raises them again by one, up to ``max_concurrency``. A 429's
        ``Retry-After`` also holds every request back.
    max_answer_bytes
        The largest answer accepted, in bytes once decoded (default :data:`MAX_ANSWER_BYTES`, 512 MiB): a
        larger one (a compressed answer that inflates to gigabytes) fails its request with a
        :class:`~rerankpd.errors.BadResponseError`, not retried.
    clock, sleep
        For tests: the monotonic clock and the sleep the budget and the retry waits use (default: real time,
        and a sleep that wakes when the run is cancelled).
    """

    name = "http"
    path = "/rerank"
    #: Statuses that mean the key was refused (Cohere adds 498, "invalid token").
    auth_statuses: tuple[int, ...] = (401, 403)
    default_model: str | None = None
    default_batch_size = 64
    default_max_concurrency = 4
    default_auth_scheme = "Bearer"
    default_timeout: tuple[float, float] = (10.0, 60.0)
    #: Where the common answer shape keeps its results list and its usage object (Voyage: ``data``;
    #: SiliconFlow: ``tokens``); a dialect whose answer differs more overrides :meth:`parse_response`.
    results_field = "results"
    usage_field = "usage"
    default_requests_per_minute: float | None = None  # None: PUBLISHED_LIMITS[name], if any
    #: The service's published per-request limits: documents, and tokens (query tokens x documents + the
    #: documents' tokens); None where none is published. A model-specific limit: :meth:`request_limits`.
    max_documents: int | None = None
    default_max_request_tokens: int | None = None
    default_tokens_per_minute: float | None = None

    def __init__(
        self,
        *,
        api_key: str | config.Secret | None = None,
        base_url: str | None = None,
        model: str | None = None,
        batch_size: int | None = None,
        max_concurrency: int | None = None,
        timeout: float | tuple[float, float] | None = None,
        attempt_deadline: float | None = None,
        max_retries: int = 8,
        max_retry_time: float | None = 120.0,
        auth_scheme: str | None = None,
        backoff_base: float = 0.25,
        backoff_cap: float = 20.0,
        retry_after_cap: float = 60.0,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        adaptive_concurrency: bool = True,
        max_request_tokens: int | None = None,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], object] | None = None,
    ) -> None:
        self._init_url(base_url, self._key_candidate(api_key))
        self._api_key = self._resolve_key(api_key)
        self.model = model or self.default_model
        if self.model is not None and not isinstance(self.model, str):
            raise ConfigurationError(f"model must be a string, got {self.model!r}")
        self.batch_size = whole("batch_size", self.default_batch_size if batch_size is None else batch_size, minimum=1)
        self._init_request_limits(max_request_tokens)
        self.max_concurrency = whole(
            "max_concurrency", self.default_max_concurrency if max_concurrency is None else max_concurrency, minimum=1
        )
        self.timeout = timeout_pair("timeout", self.default_timeout if timeout is None else timeout)
        self.attempt_deadline = (
            number("attempt_deadline", attempt_deadline, minimum=0, exclusive_minimum=True, allow_none=True)
            or self.timeout[0] + 2 * self.timeout[1]
        )
        self.max_retries = whole("max_retries", max_retries, minimum=0)
        self.max_retry_time = number("max_retry_time", max_retry_time, minimum=0, allow_none=True)
        self.auth_scheme = self.default_auth_scheme if auth_scheme is None else auth_scheme
        if not isinstance(self.auth_scheme, str):
            raise ConfigurationError(f"auth_scheme must be a string such as 'Bearer' or '', got {auth_scheme!r}")
        self.backoff_base = number("backoff_base", backoff_base, minimum=0)
        self.backoff_cap = number("backoff_cap", backoff_cap, minimum=0)
        self.retry_after_cap = number("retry_after_cap", retry_after_cap, minimum=0)
        self.max_answer_bytes = whole("max_answer_bytes", max_answer_bytes, minimum=1)
        if clock is not None and not callable(clock) or sleep is not None and not callable(sleep):
            raise ConfigurationError("clock and sleep must be callables (a clock() -> seconds, a sleep(seconds))")
        self._clock = clock or time.monotonic
        self._sleep = sleep
        self._cancel_event: threading.Event | None = None
        self._session: requests.Session | None = None
        self._verify: bool | str = True
        self._session_lock = threading.Lock()
        self._init_rate_limits(requests_per_minute, tokens_per_minute, adaptive_concurrency)
        parts = urlsplit(self._url)
        if self._api_key and parts.scheme == "http" and not _is_loopback(parts.hostname):
            warnings.warn(
                f"{self.name}: the API key would travel unencrypted over plain http:// to {parts.hostname}; "
                "use https://",
                stacklevel=3,
            )

    # ----------------------------------------------------------------- configuration
    def request_limits(self) -> tuple[int | None, int | None]:
        """The published (documents, tokens) per request for :attr:`model`; None where none is published."""
        return self.max_documents, self.default_max_request_tokens

    def _init_request_limits(self, max_request_tokens: int | None) -> None:
        max_documents, published_tokens = self.request_limits()
        assert self.batch_size is not None  # __init__ has just set it to a whole number
        if max_documents is not None and self.batch_size > max_documents:
            raise ConfigurationError(
                f"batch_size={self.batch_size} is above {self.name}'s limit of {max_documents} documents per "
                f"request{f' for {self.model}' if self.model else ''}; use batch_size <= {max_documents}"
            )
        tokens = whole("max_request_tokens", max_request_tokens, minimum=0, allow_none=True)
        #: The cap on one request's tokens the plan keeps below (None: none).
        self.max_request_tokens = published_tokens if tokens is None else (tokens or None)

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

    @property
    def endpoint(self) -> str:
        """The URL requests are sent to (credentials in it masked)."""
        return self.base_url + self.path

    @property
    def has_key(self) -> bool:
        return bool(self._api_key)

    def identity(self) -> dict | None:
        """Provider, endpoint, model and score options; None when no model is named (a self-hosted server
        can be restarted with another model behind the same URL, so its scores are not cached)."""
        if self.model is None:
            return None
        return {"provider": self.name, "endpoint": self.endpoint, "model": self.model, **self.score_options()}

    def __repr__(self) -> str:
        key = ", api_key=***" if self._api_key else ""
        return f"{type(self).__name__}(endpoint={self.endpoint!r}, model={self.model!r}{key})"

    def __getstate__(self):
        raise TypeError(f"{type(self).__name__} holds an API key and cannot be pickled")

    # ----------------------------------------------------------------- dialect hooks
    def build_payload(self, query: str, documents: Sequence[str]) -> dict:
        """The JSON body of one request without the score options (the common Cohere-style shape)."""
        body = {"query": query, "documents": list(documents), "top_n": len(documents), "return_documents": False}
        if self.model:
            body["model"] = self.model
        return body

    def request_body(self, query: str, documents: Sequence[str]) -> dict:
        """What is sent: :meth:`build_payload` plus :meth:`score_options` (the one place they are added)."""
        body = self.build_payload(query, documents)
        body.update(self.score_options())
        return body

    def parse_response(self, data: Any, n_documents: int) -> BatchResult:
        """Scores (matched by index) and usage from a successful answer."""
        if not isinstance(data, dict):
            raise BadResponseError(f"expected a JSON object, got {type(data).__name__}")
        return BatchResult(
            scores_from_results(data.get(self.results_field), n_documents), usage_counts(data.get(self.usage_field))
        )

    def error_message(self, data: Any, text: str) -> str:
        """The provider's own words from an error answer (cut and scrubbed by the caller)."""
        if isinstance(data, dict):
            err = data.get("error")
            if isinstance(err, dict) and err.get("message"):
                return str(err["message"])
            for field in ("message", "detail", "error", "msg"):
                if data.get(field):
                    value = data[field]
                    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        return " ".join(text[: 20 * ERROR_TEXT_LIMIT].split())

    def score_options(self) -> dict:
        """Options that change scores: sent in every request body and part of the cache identity."""
        return {}

    # ----------------------------------------------------------------- the one job
    def score(self, query: str, documents: list[str]) -> Scores:
        return self.score_batch(query, documents).scores

    def score_batch(self, query: str, documents: list[str]) -> BatchResult:
        """One request for ``documents``; more, one after another, when they exceed the batch size or the
        token cap (a direct call: the pipeline plans requests that fit)."""
        if not documents:
            return BatchResult([])
        spans = [(0, len(documents))]
        assert self.batch_size is not None  # set by __init__ (the listwise llm reranker, which clears it, has its own)
        if len(documents) > self.batch_size or self.max_request_tokens:
            query_tokens = text_tokens(query)
            costs = (
                [query_tokens + text_tokens(d) for d in documents] if self.max_request_tokens else [0] * len(documents)
            )
            spans = budget_spans(costs, self.batch_size, self.max_request_tokens)
        results = [self._score_one(query, documents[a:b]) for a, b in spans]
        if len(results) == 1:
            return results[0]
        usage: dict[str, int] = {}
        for result in results:
            for name, value in result.usage.items():
                usage[name] = usage.get(name, 0) + value
        return BatchResult(
            [s for r in results for s in r.scores],
            usage,
            attempts=sum(r.attempts for r in results),
            requests=len(results),
        )

    def _score_one(self, query: str, documents: list[str]) -> BatchResult:
        tokens = request_tokens(query, documents) if self.rate_limiter.tokens_per_minute else 0
        return self._request(self.request_body(query, documents), len(documents), tokens)

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

    # ----------------------------------------------------------------- transport
    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            key = self._api_key.reveal()
            headers["Authorization"] = f"{self.auth_scheme} {key}" if self.auth_scheme else key
        return headers

    def session(self) -> requests.Session:
        """The shared session, made on first use with a pool as large as the concurrency.

        The environment (``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY``, ``REQUESTS_CA_BUNDLE``) is read once
        here for this reranker's URL, not again for every request.
        """
        with self._session_lock:
            if self._session is None:
                self._session, self._verify = make_session(
                    self._url + self.path, self.max_concurrency, self._basic_auth
                )
            return self._session

    def close(self) -> None:
        """Close the connection pool."""
        with self._session_lock:
            if self._session is not None:
                self._session.close()
                self._session = None

    def _after_interrupt(self) -> None:
        """An attempt was interrupted (Ctrl-C): drop the session (its pool may be mid-request) and the gate."""
        self._session = None  # not closed: its pool may hold a lock the interrupted thread never released
        self._new_gate()

    def _secrets(self) -> list[str]:
        secrets = [self._api_key.reveal()] if self._api_key else []
        if self._basic_auth is not None:
            secrets += [s.reveal() for s in self._basic_auth]
        return secrets

    def _scrub(self, text: str) -> str:
        """``text`` without the key or URL credentials, in any form a server echoes them (one scrub for all)."""
        return scrub(text, self._secrets())

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
