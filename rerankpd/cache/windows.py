"""The LLM reranker's window cache: the model's answer (a permutation) for one listwise window.

A key is ``W`` + SHA-256 of the reranker's identity digest, the query and the window's documents in order
(each field length-prefixed); a value is the permutation as little-endian uint32, one per document. A
value of another length, or one that is not a permutation of the window's positions, is a miss.

Examples
--------
>>> import tempfile
>>> windows = WindowCache.open(tempfile.mkdtemp(), "digest")
>>> windows.put("q", ["a", "b", "c"], [2, 0, 1])
>>> windows.get("q", ["a", "b", "c"]), windows.get("q", ["a", "c", "b"])
([2, 0, 1], None)
>>> windows.close()
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from .keys import WINDOWS, digest, encode
from .store import Store, StoreUser, settings_for

__all__ = ["WindowCache"]

logger = logging.getLogger(__name__)


class WindowCache(StoreUser):
    """Window answers of one LLM reranker identity. Reads and writes never raise (a cache that cannot be read
    warns once and is not used again; a failed write is logged); :meth:`open` raises what opening the store
    raises."""

    what, doing = "LLM window", "reranking"

    def __init__(self, store: Store, identity_digest: str, tag: str | None = None) -> None:
        super().__init__(store, tag)
        self._identity = identity_digest.encode("utf-8")

    @classmethod
    def open(cls, cache: Any, identity_digest: str, tag: str | None = None) -> WindowCache | None:
        """The window cache under ``cache`` (True, a path or :class:`~rerankpd.cache.CacheSettings`); None
        for False/None."""
        settings = settings_for(cache)
        return None if settings is None else cls(Store(settings), identity_digest, tag)

    def key(self, query: str, passages: Sequence[str]) -> bytes:
        return WINDOWS + digest(self._identity, encode(query), *(encode(p) for p in passages))

    def get(self, query: str, passages: Sequence[str]) -> list[int] | None:
        """The cached permutation of this window, or None."""
        value = self._read(lambda store: store.read(lambda cache: cache.get(self.key(query, passages))), None)
        k = len(passages)
        if value is None or len(value) != 4 * k:
            return None
        permutation = np.frombuffer(value, dtype="<u4").tolist()
        return permutation if sorted(permutation) == list(range(k)) else None

    def put(self, query: str, passages: Sequence[str], permutation: Sequence[int]) -> None:
        """Commit one window's answer (never raises)."""
        value = np.asarray(permutation, dtype="<u4").tobytes()
        store = self._store
        if store is not None and not store.write(
            lambda cache: cache.set(self.key(query, passages), value, **self._options)
        ):
            logger.warning("window cache write failed at %s: %s", self.directory, store.failure)
