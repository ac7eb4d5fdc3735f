"""The embedding cache: each text's embedding in the store, so a new query over the same frame embeds only
the query.

A key is ``E`` + SHA-256 of the reranker's identity digest, the role (``"query"`` or ``"document"``: most
embedding models embed the two differently) and the text; a value is the vector as float32 little-endian
bytes. The model's dimension is an entry of its own (``E`` + the identity digest's first 16 bytes, 4
bytes), written with the first batch: a vector of another length is a miss, and a batch of another
length is not written (one warning). A vector with a non-finite number is a miss.

Examples
--------
>>> import tempfile, numpy as np
>>> cache = EmbeddingCache.open(tempfile.mkdtemp(), '{"model": "demo"}')
>>> cache.store("document", ["a", "b"], np.eye(2, dtype=np.float32))
>>> found = cache.lookup("document", ["b", "c"])
>>> sorted(found), found[0].tolist()
([0], [0.0, 1.0])
>>> cache.close()
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from .keys import EMBEDDINGS, digest, encode
from .store import Store, StoreUser

__all__ = ["EmbeddingCache"]

ROLES = ("query", "document")


class EmbeddingCache(StoreUser):
    """Embeddings of one reranker identity; best effort, as one run sees it.

    Use :meth:`open` (it returns None when ``cache`` is off or the cache cannot be opened), then
    :meth:`lookup`, :meth:`store` and, on every exit path, :meth:`close`.
    """

    what, doing = "embedding", "embedding"

    def __init__(self, store: Store, identity: str, tag: str | None = None, *, owned: bool = True) -> None:
        super().__init__(store, tag, owned=owned)
        self._digest = hashlib.sha256(identity.encode("utf-8")).digest()
        self._dim_key = EMBEDDINGS + self._digest[:16]

    @classmethod
    def open(cls, cache: Any, identity: str | None, tag: str | None = None) -> EmbeddingCache | None:
        """The cache for ``identity`` under ``cache`` (True, a path, :class:`~rerankpd.cache.CacheSettings`,
        or a run's :class:`~rerankpd.cache.scores.RunCache`, whose open store it shares), else None.

        None also when ``cache`` is False/None, when ``identity`` is None (nothing ties the vectors to a
        model), or when the cache can be neither written nor read (one warning; the run goes on without it).
        """
        if cache is False or cache is None or identity is None:
            return None
        if isinstance(cache, StoreUser):
            shared = cache._store
            return None if shared is None else cls(shared, identity, tag if tag is not None else cache.tag, owned=False)
        return super().open(cache, identity, tag)

    def key(self, role: str, text: str) -> bytes:
        """``E`` + SHA-256 of the identity, the role and the text."""
        return EMBEDDINGS + digest(self._digest, role.encode("ascii"), encode(text))

    def lookup(self, role: str, texts: Sequence[str]) -> dict[int, np.ndarray]:
        """The cached vectors of ``texts`` as ``{position: vector}``; misses are absent."""
        keys = [self.key(role, t) for t in texts]
        dim, values = self._read(
            lambda store: store.read(lambda cache: (cache.get(self._dim_key), [cache.get(k) for k in keys])), (None, [])
        )
        size = 4 * int.from_bytes(dim, "little") if dim is not None and len(dim) == 4 else 0
        vectors = {
            i: np.frombuffer(v, dtype="<f4").astype(np.float32) for i, v in enumerate(values) if v and len(v) == size
        }
        return {i: vector for i, vector in vectors.items() if np.isfinite(vector).all()}

    def store(self, role: str, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Commit the vectors of one finished batch (row ``i`` is the embedding of ``texts[i]``) in one
        transaction. A batch whose length differs from the model's (as the cache knows it) is not written."""
        store = self._store
        if store is None or not len(texts) or store.failure is not None:
            return self.report()
        matrix = np.ascontiguousarray(vectors, dtype="<f4")
        if matrix.ndim != 2 or matrix.shape[0] != len(texts) or not np.isfinite(matrix).all():
            return  # the embedding path fails such a batch itself; never write it
        dim = matrix.shape[1].to_bytes(4, "little")
        rows = [(self.key(role, t), matrix[i].tobytes()) for i, t in enumerate(texts)]
        refused: list[int] = []

        def write(cache: Any) -> None:
            known = cache.get(self._dim_key)
            if known is not None and len(known) == 4 and known != dim:
                refused.append(int.from_bytes(known, "little"))
                return
            cache.set(self._dim_key, dim, **self._options)
            for key, value in rows:
                cache.set(key, value, **self._options)

        store.write(write)
        if refused:
            self._warn(
                f"rerankpd: embeddings of {matrix.shape[1]} numbers were not cached: the cache at "
                f"{self.directory} holds embeddings of {refused[0]} for this model (clear it with "
                "rerankpd.clear_cache() if the model really changed)"
            )
        self.report()
