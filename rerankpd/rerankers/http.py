"""One HTTP client for every rerank service, and the dialect hooks a provider fills in.

A provider module subclasses :class:`HTTPReranker`, sets a few class attributes (name, default base URL,
path, key variables, default model and batch size) and overrides the dialect hooks that differ from the
common Cohere-style shape: :meth:`~HTTPReranker.build_payload`, :meth:`~HTTPReranker.parse_response`,
:meth:`~HTTPReranker.error_message`, :meth:`~HTTPReranker.score_options`. Everything else is shared: one
``requests.Session`` per reranker with a pool sized to its concurrency, explicit (connect, read) timeouts,
one retry loop driven by the small pure policy functions below, and one translation of failures into the
:mod:`rerankpd.errors` tree.

Retry policy: 408, 409, 429 and 5xx answers, timeouts, dropped connections and malformed answers are
retried up to ``max_retries`` times with capped exponential backoff and full jitter; a ``Retry-After``
header is honoured up to a cap. 400, 401, 403, 404, 413 and 422 are never retried.

Examples
--------
>>> should_retry(429), should_retry(503), should_retry(401)
(True, True, False)
>>> parse_retry_after("2", cap=30.0)
2.0
>>> 0.0 <= backoff_delay(3, base=0.5, cap=4.0) <= 4.0
True
"""
from __future__ import annotations

import email.utils
import ipaddress
import json
import logging
import math
import random
import threading
import time
import warnings
from typing import Any, Callable, Sequence
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from .. import config
from ..ratelimit import PUBLISHED_LIMITS, AdaptiveConcurrency, RateLimiter, RateLimitWaitTooLong, estimate_tokens
from ..errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    BadResponseError,
    ConfigurationError,
    RateLimitError,
    ServerError,
)
from .base import Availability, BatchResult, Reranker

__all__ = [
    "HTTPReranker",
    "backoff_delay",
    "parse_retry_after",
    "scores_from_results",
    "should_retry",
    "usage_counts",
]

logger = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 409, 429})


def should_retry(status: int) -> bool:
    """Whether an HTTP status is worth another attempt: 408, 409, 429 and every 5xx."""
    return status in RETRY_STATUSES or 500 <= status <= 599


def parse_retry_after(value: str | None, cap: float, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date), at most ``cap``.

    None when the header is absent or unreadable.
    """
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), cap)


def backoff_delay(attempt: int, base: float, cap: float, rng: Callable[[], float] = random.random) -> float:
    """Full-jitter exponential backoff: a random delay in [0, min(cap, base * 2**attempt)]."""
    return rng() * min(cap, base * (2 ** attempt))


def usage_counts(usage: Any) -> dict[str, int]:
    """The integer counters of a provider's usage object (nested objects are left out)."""
    if not isinstance(usage, dict):
        return {}
    return {k: int(v) for k, v in usage.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def scores_from_results(items: Any, n_documents: int, *, index_field: str = "index",
                        score_field: str = "relevance_score") -> list[float]:
    """Scores in document order from a list of ``{index, score}`` results, matched by index, never position.

    Raises :class:`BadResponseError` unless the results cover exactly documents ``0..n_documents-1``, once
    each, with finite numeric scores.
    """
    if not isinstance(items, list):
        raise BadResponseError(f"expected a list of results, got {type(items).__name__}")
    scores: list[float | None] = [None] * n_documents
    for item in items:
        if not isinstance(item, dict):
            raise BadResponseError(f"a result is {type(item).__name__}, not an object")
        index, score = item.get(index_field), item.get(score_field)
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < n_documents:
            raise BadResponseError(f"result index {index!r} is not one of the {n_documents} documents sent")
        if scores[index] is not None:
            raise BadResponseError(f"document {index} was scored twice")
        if not isinstance(score, (int, float)) or isinstance(score, bool) or not math.isfinite(score):
            raise BadResponseError(f"document {index} has no numeric {score_field!r}: {score!r}")
        scores[index] = float(score)
    missing = [i for i, s in enumerate(scores) if s is None]
    if missing:
        raise BadResponseError(
            f"{len(missing)} of the {n_documents} documents sent came back without a score (first: {missing[0]})"
        )
    return scores  # type: ignore[return-value]


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _RetryableFailure(Exception):
    """Internal: an attempt failed in a way worth retrying; carries the error to raise if none are left."""

    def __init__(self, error: APIError, wait: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.wait = wait


class HTTPReranker(Reranker):
    """A rerank service reached over HTTP.

    Parameters
    ----------
    api_key
        The key; default from the first set variable in ``key_env``. Held as a :class:`~rerankpd.config.Secret`.
    base_url
        The service's base URL; requests go to ``base_url + path``.
    model
        The model name.
    batch_size
        Documents per request.
    max_concurrency
        Requests in flight at once.
    timeout
        Seconds, or a ``(connect, read)`` pair.
    max_retries
        Further attempts after the first, for retryable failures.
    auth_scheme
        Prefix of the key in the ``Authorization`` header (``"Bearer"``); ``""`` sends the bare key.
    requests_per_minute, tokens_per_minute
        A budget shared by every request of this reranker (tokens are estimated from the text, see
        :func:`rerankpd.ratelimit.estimate_tokens`). None: the service's published limit where known
        (:data:`rerankpd.ratelimit.PUBLISHED_LIMITS`), else unlimited; 0: unlimited.
    adaptive_concurrency
        On a 429, halve the requests allowed in flight (down to 1) and raise them again by one after a run
        of successes, up to ``max_concurrency``; a 429's ``Retry-After`` also holds every request back.
    """

    name = "http"
    default_base_url = ""
    base_url_env: str | None = None
    path = "/rerank"
    key_env: tuple[str, ...] = ()
    key_required = True
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
        max_retries: int = 5,
        auth_scheme: str | None = None,
        backoff_base: float = 0.5,
        backoff_cap: float = 20.0,
        retry_after_cap: float = 60.0,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        adaptive_concurrency: bool = True,
    ) -> None:
        self._api_key = self._resolve_key(api_key)
        base = base_url or (config.env(self.base_url_env) if self.base_url_env else None) or self.default_base_url
        if not isinstance(base, str) or not base.startswith(("http://", "https://")):
            raise ConfigurationError(f"base_url must be an http:// or https:// URL, got {base!r}")
        self.base_url = base.rstrip("/")
        self.model = model or self.default_model
        self.batch_size = _positive_int("batch_size", self.default_batch_size if batch_size is None else batch_size)
        self.max_concurrency = _positive_int(
            "max_concurrency", self.default_max_concurrency if max_concurrency is None else max_concurrency)
        self.timeout = _timeout_pair(self.default_timeout if timeout is None else timeout)
        if not isinstance(max_retries, int) or isinstance(max_retries, bool) or max_retries < 0:
            raise ConfigurationError(f"max_retries must be a whole number >= 0, got {max_retries!r}")
        self.max_retries = max_retries
        self.auth_scheme = self.default_auth_scheme if auth_scheme is None else auth_scheme
        self.backoff_base, self.backoff_cap, self.retry_after_cap = backoff_base, backoff_cap, retry_after_cap
        self._session: requests.Session | None = None
        self._session_lock = threading.Lock()
        self._init_rate_limits(requests_per_minute, tokens_per_minute, adaptive_concurrency)
        parts = urlsplit(self.base_url)
        if self._api_key and parts.scheme == "http" and not _is_loopback(parts.hostname):
            warnings.warn(
                f"{self.name}: the API key would travel unencrypted over plain http:// to {parts.hostname}; "
                "use https://", stacklevel=3)

    # ----------------------------------------------------------------- configuration
    def _init_rate_limits(self, rpm: float | None, tpm: float | None, adaptive: bool) -> None:
        published_rpm, published_tpm = PUBLISHED_LIMITS.get(self.name, (None, None))
        if rpm is None:
            rpm = self.default_requests_per_minute or published_rpm
        if tpm is None:
            tpm = self.default_tokens_per_minute or published_tpm
        try:
            #: The request/token budget shared by all requests of this reranker.
            self.rate_limiter = RateLimiter(rpm or None, tpm or None)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(str(exc)) from None
        self.adaptive_concurrency = bool(adaptive)
        #: Requests in flight, narrowed on 429s when ``adaptive_concurrency`` (see rerankpd.ratelimit).
        self.concurrency_gate = AdaptiveConcurrency(self.max_concurrency, max_wait=None)

    @classmethod
    def availability(cls) -> Availability:
        """Ready when the key is set; a self-hosted server (no key required) cannot be known without trying."""
        if not cls.key_required:
            url = (config.env(cls.base_url_env) if cls.base_url_env else None) or cls.default_base_url
            return Availability(None, f"self-hosted: needs a server at {url}")
        if any(config.env(var) for var in cls.key_env):
            return Availability(True, "key set")
        return Availability(False, f"no key: set {cls.key_env[0] if cls.key_env else 'api_key='}")

    def _resolve_key(self, api_key: str | config.Secret | None) -> config.Secret | None:
        if isinstance(api_key, config.Secret):
            key = api_key.reveal()
        else:
            key = api_key
        if key is None:
            key = next((config.env(var) for var in self.key_env if config.env(var)), None)
        if key is not None and not isinstance(key, str):
            raise ConfigurationError(f"api_key must be a string, got {type(key).__name__}")
        if not key or not key.strip():
            if self.key_required:
                where = " or ".join(self.key_env) or "api_key="
                raise ConfigurationError(
                    f"{self.name} needs an API key: set {where} or pass api_key=... to the reranker")
            return None
        key = key.strip()
        if not (key.isascii() and key.isprintable()):
            source = "api_key=" if api_key is not None else " or ".join(self.key_env)
            raise ConfigurationError(
                f"{self.name}: the API key (from {source}) contains a line break, a control character or a "
                "non-ASCII character (often a stray zero-width space from copy and paste); paste it again")
        return config.Secret(key)

    @property
    def endpoint(self) -> str:
        """The URL requests are sent to."""
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
        """The JSON body of one request (the common Cohere-style shape)."""
        body = {"query": query, "documents": list(documents), "top_n": len(documents), "return_documents": False}
        if self.model:
            body["model"] = self.model
        return body

    def parse_response(self, data: Any, n_documents: int) -> BatchResult:
        """Scores (matched by index) and usage from a successful answer."""
        if not isinstance(data, dict):
            raise BadResponseError(f"expected a JSON object, got {type(data).__name__}")
        return BatchResult(scores_from_results(data.get(self.results_field), n_documents),
                           usage_counts(data.get(self.usage_field)))

    def error_message(self, data: Any, text: str) -> str:
        """The provider's own words from an error answer."""
        if isinstance(data, dict):
            err = data.get("error")
            if isinstance(err, dict) and err.get("message"):
                return str(err["message"])
            for field in ("message", "detail", "error", "msg"):
                if data.get(field):
                    value = data[field]
                    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        return " ".join(text.split())[:300]

    def score_options(self) -> dict:
        """Options that change scores, for the cache identity (model and endpoint are already in it)."""
        return {}

    # ----------------------------------------------------------------- the one job
    def score(self, query: str, documents: list[str]) -> list[float]:
        return self.score_batch(query, documents).scores

    def score_batch(self, query: str, documents: list[str]) -> BatchResult:
        if not documents:
            return BatchResult([])
        tokens = estimate_tokens(query, documents) if self.rate_limiter.tokens_per_minute else 0
        return self._request(self.build_payload(query, documents), len(documents), tokens)

    # ----------------------------------------------------------------- transport
    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            key = self._api_key.reveal()
            headers["Authorization"] = f"{self.auth_scheme} {key}" if self.auth_scheme else key
        return headers

    def session(self) -> requests.Session:
        """The shared session, made on first use with a pool as large as the concurrency."""
        with self._session_lock:
            if self._session is None:
                session = requests.Session()
                adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(self.max_concurrency, 1), max_retries=0)
                session.mount("http://", adapter)
                session.mount("https://", adapter)
                self._session = session
            return self._session

    def close(self) -> None:
        """Close the connection pool."""
        with self._session_lock:
            if self._session is not None:
                self._session.close()
                self._session = None

    def _scrub(self, text: str) -> str:
        if self._api_key and self._api_key.reveal() in text:
            text = text.replace(self._api_key.reveal(), "***")
        return text

    def _request(self, payload: dict, n_documents: int, n_tokens: int = 0) -> BatchResult:
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        for attempt in range(self.max_retries + 1):
            try:
                return self._attempt(body, n_documents, n_tokens)
            except _RetryableFailure as failure:
                if attempt >= self.max_retries:
                    raise failure.error from failure.__cause__
                wait = failure.wait
                if not wait:  # no Retry-After, or "0": back off anyway rather than hammer the service
                    wait = backoff_delay(attempt, self.backoff_base, self.backoff_cap)
                logger.info("%s: %s; retry %d of %d in %.2fs", self.name, failure.error.message,
                            attempt + 1, self.max_retries, wait)
                time.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(self, body: bytes, n_tokens: int) -> requests.Response:
        """One POST inside a concurrency slot and the rate budget; a 429 narrows the slot gate."""
        with self.concurrency_gate.acquire() as slot:
            try:
                self.rate_limiter.acquire(n_tokens)
            except RateLimitWaitTooLong as exc:
                raise RateLimitError(f"{self.name}: {exc}", provider=self.name) from None
            response = self.session().post(self.endpoint, data=body, headers=self._headers(), timeout=self.timeout)
            if response.status_code == 429:
                wait = parse_retry_after(response.headers.get("Retry-After"), self.retry_after_cap)
                if wait:
                    self.rate_limiter.pause(wait)
                if self.adaptive_concurrency:
                    slot.rate_limited()
            elif response.status_code < 300:
                slot.succeeded()
            return response

    def _attempt(self, body: bytes, n_documents: int, n_tokens: int = 0) -> BatchResult:
        logger.debug("%s: POST %s with %d documents", self.name, self.endpoint, n_documents)
        try:
            response = self._send(body, n_tokens)
        except requests.ConnectTimeout as exc:
            raise _RetryableFailure(APITimeoutError(
                f"{self.name}: could not connect to {self.endpoint} within {self.timeout[0]:g}s "
                f"(timeout={self.timeout})", provider=self.name)) from exc
        except requests.Timeout as exc:
            raise _RetryableFailure(APITimeoutError(
                f"{self.name}: no answer from {self.endpoint} within {self.timeout[1]:g}s "
                f"(timeout={self.timeout})", provider=self.name)) from exc
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError,
                requests.exceptions.ContentDecodingError) as exc:
            raise _RetryableFailure(APIConnectionError(
                f"{self.name}: connection to {self.endpoint} failed: {type(exc).__name__}",
                provider=self.name)) from exc
        except requests.RequestException as exc:  # an invalid URL or header: retrying cannot help
            raise ConfigurationError(f"{self.name}: cannot send to {self.endpoint}: {type(exc).__name__}: "
                                     f"{self._scrub(str(exc))}") from None
        status = response.status_code
        if 200 <= status < 300:
            try:
                return self.parse_response(response.json(), n_documents)
            except (ValueError, KeyError, TypeError, AttributeError, BadResponseError) as exc:
                detail = exc.message if isinstance(exc, BadResponseError) else "the body is not valid JSON"
                raise _RetryableFailure(BadResponseError(
                    f"{self.name}: unusable answer from {self.endpoint}: {self._scrub(detail)}",
                    status_code=status, provider=self.name)) from None
        error = self._error_for(response)
        if should_retry(status):
            wait = parse_retry_after(response.headers.get("Retry-After"), self.retry_after_cap)
            raise _RetryableFailure(error, wait)
        raise error

    def _error_for(self, response: requests.Response) -> APIError:
        status = response.status_code
        try:
            data = response.json()
        except ValueError:
            data = None
        said = self._scrub(self.error_message(data, response.text or ""))
        message = f"{self.name} answered HTTP {status}" + (f": {said}" if said else "")
        kwargs = {"status_code": status, "provider": self.name}
        if status in (401, 403):
            return AuthenticationError(message + self.auth_hint(status), **kwargs)
        if status == 429:
            return RateLimitError(message, retry_after=parse_retry_after(
                response.headers.get("Retry-After"), self.retry_after_cap), **kwargs)
        if 500 <= status <= 599:
            return ServerError(message, **kwargs)
        if 400 <= status <= 499 and not should_retry(status):
            return BadRequestError(message, **kwargs)
        return APIError(message, **kwargs)

    def auth_hint(self, status: int) -> str:
        """Words added to an authentication error: where the key comes from."""
        where = " or ".join(self.key_env) or "api_key="
        return f" (check the API key: {where})"


def _positive_int(name: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigurationError(f"{name} must be a whole number >= 1, got {value!r}")
    return value


def _timeout_pair(value: Any) -> tuple[float, float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        pair = (float(value), float(value))
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        pair = (float(value[0]), float(value[1]))
    else:
        raise ConfigurationError(f"timeout must be seconds or a (connect, read) pair, got {value!r}")
    if not all(math.isfinite(t) and t > 0 for t in pair):
        raise ConfigurationError(f"timeout must be positive seconds, got {value!r}")
    return pair
