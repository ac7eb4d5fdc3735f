"""The exceptions rerankpd raises.

Everything rerankpd raises on its own account derives from :class:`RerankError`::

    RerankError
    ├── ConfigurationError          (also a ValueError) no key, a bad option, an unknown reranker
    │   └── MissingDependencyError  an optional extra is not installed; names the ``pip install``
    ├── RunCancelled                the run was cancelled (the panel's Cancel); finished scores are cached
    ├── CacheError                  cache_info / clear_cache cannot use the cache directory (a file, read-only)
    └── APIError                    a provider answered, or failed to; carries status_code and message
        ├── AuthenticationError     401 / 403 (DMXAPI also answers 401 when the quota is exhausted)
        ├── RateLimitError          429, after the retries ran out; ``retry_after`` if the server said
        ├── BadRequestError         400 / 404 / 413 / 422: the request itself is wrong, never retried
        ├── ServerError             5xx, after the retries ran out
        ├── BadResponseError        an answer that is not valid JSON or does not cover the documents sent
        └── APIConnectionError      the connection failed or dropped
            └── APITimeoutError     connect or read timeout

Caller mistakes stay ordinary Python exceptions: ``KeyError`` for a missing column, ``TypeError`` for a
cell that is not text, ``ValueError`` for bad arguments; each message names the column, row or parameter.

When a run fails, the exception that ends it carries what was finished as ``exc.partial``: a DataFrame
shaped like the result, with NaN scores for the rows that were not scored. Every finished request has
reached the cache by then, so a rerun sends only what is missing.

Examples
--------
>>> import rerankpd
>>> issubclass(rerankpd.errors.RateLimitError, rerankpd.RerankError)
True
"""

from __future__ import annotations

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "BadResponseError",
    "CacheError",
    "ConfigurationError",
    "MissingDependencyError",
    "RateLimitError",
    "RerankError",
    "RunCancelled",
    "ServerError",
    "WarnOnce",
    "warn_user",
]


class RerankError(Exception):
    """Root of every exception rerankpd raises on its own account."""

    #: The partial result of the run this error ended, when there was one (a DataFrame), else None.
    partial = None


class ConfigurationError(RerankError, ValueError):
    """The configuration cannot work: no API key, an unknown reranker, an option out of range."""


class MissingDependencyError(ConfigurationError, ImportError):
    """An optional dependency is not installed; the message names the ``pip install`` that fixes it."""


class RunCancelled(RerankError):
    """The run was cancelled between requests; ``partial`` holds what was finished (and cached)."""


class CacheError(RerankError):
    """The score cache directory cannot be used by :func:`rerankpd.cache_info` or :func:`rerankpd.clear_cache`
    (it is a file, unreadable, or read-only for a clear); the message names the directory. A run never
    raises it: a run's cache is best effort and only warns."""


class APIError(RerankError):
    """A rerank service failed to give scores.

    Parameters
    ----------
    message
        What went wrong, in plain words, including the provider's own message when it sent one.
    status_code
        The HTTP status, or None when no answer arrived.
    provider
        The reranker's name, e.g. ``"dmxapi"``.
    """

    def __init__(self, message: str, *, status_code: int | None = None, provider: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.provider = provider


class AuthenticationError(APIError):
    """401 or 403: the key is wrong, missing, or (DMXAPI) its quota is used up."""


class RateLimitError(APIError):
    """429 after every retry; ``retry_after`` is the server's last Retry-After in seconds, if any."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class BadRequestError(APIError):
    """400, 404, 413 or 422: the service rejected the request itself; retrying would not help."""


class ServerError(APIError):
    """5xx after every retry."""


class BadResponseError(APIError):
    """The answer was not valid JSON, or did not score exactly the documents that were sent."""


class APIConnectionError(APIError):
    """No answer: the connection could not be made, or it dropped."""


class APITimeoutError(APIConnectionError):
    """The connect or read timeout ran out."""


def warn_user(message: str, category: type[Warning] = RuntimeWarning) -> None:
    """Issue a warning attributed to the first caller outside rerankpd: the user's own line.

    The one place that decides a warning's stack level, so every warning points at the notebook cell or
    script line that made the call, never into the library.
    """
    import os
    import sys
    import types
    import warnings

    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame: types.FrameType | None
    frame, level = sys._getframe(1), 2
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


class WarnOnce:
    """A warning said at most once per key (through :func:`warn_user`): the one warn-once rule.

    A module-level instance says a thing once per process (the key says what is the same thing: a reranker
    class, a directory); an instance held by an object, once per object. Thread-safe; a pickled copy keeps
    what was said.

    Examples
    --------
    >>> import warnings
    >>> once = WarnOnce()
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     said = [once("the cache is full", key="/tmp/c"), once("the cache is full", key="/tmp/c")]
    >>> said, len(caught)
    ([True, False], 1)
    """

    def __init__(self) -> None:
        import threading

        self._said: set = set()
        self._lock = threading.Lock()

    def __call__(self, message: str, key: object = None, category: type[Warning] = RuntimeWarning) -> bool:
        """Warn ``message`` unless ``key`` was warned about already; True when it was said now."""
        with self._lock:
            if key in self._said:
                return False
            self._said.add(key)
        warn_user(message, category)
        return True

    def reset(self) -> None:
        """Forget what was said (for tests)."""
        with self._lock:
            self._said.clear()

    def __getstate__(self) -> dict:
        return {"said": set(self._said)}

    def __setstate__(self, state: dict) -> None:
        WarnOnce.__init__(self)
        self._said = set(state["said"])
