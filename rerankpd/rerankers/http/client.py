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

from ... import config
from ...core.options import number, timeout_pair, whole
from ...core.tokens import budget_spans, request_tokens, text_tokens
from ...errors import BadResponseError, ConfigurationError
from ...redact import scrub
from ..base import BatchResult, Reranker, Scores
from .answers import scores_from_results, usage_counts
from .exchange import ERROR_TEXT_LIMIT, Exchange
from .keys import EndpointAndKey, _is_loopback, openai_key_homes
from .retry import backoff_delay, parse_retry_after, should_retry
from .transport import make_session

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

#: The default largest answer body, in bytes once decoded (gzip ...): 512 MiB, some four times the largest
#: real answer (2,048 embeddings of 3,072 dimensions written as JSON text, about 130 MB); a rerank answer
#: is kilobytes.
MAX_ANSWER_BYTES = 512 * 2**20


class HTTPReranker(EndpointAndKey, Exchange, Reranker):
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
