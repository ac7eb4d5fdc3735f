"""The embedding cache: each text's embedding on disk, so a new query over the same frame embeds only the query.

It lives beside the score cache, in the same directory (one SQLite file, ``embeddings.sqlite3``, opened with
the standard library's :mod:`sqlite3`). A key is the SHA-256 digest of the reranker's identity (model and
every option that changes vectors, never an API key), the role (``"query"`` or ``"document"``: e5 and most
embedding models embed the two with different prefixes) and the text. A value is raw bytes: a fixed header
(magic, dtype, dimension) followed by the float32 vector, little-endian. Nothing is ever pickled, so a shared
cache directory is never a way to run code; a value whose header or length is wrong is ignored (a miss).

:class:`EmbeddingCache` follows the score cache's run policy (:class:`rerankpd.cache.RunCache`): opening,
reading and writing are best effort -- a cache that cannot be used is switched off with one warning and the
run goes on embedding. Each finished batch is written at once (one transaction), so an interrupted run keeps
what it embedded and a rerun resumes from there. The directory is created private to the user (0700).

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
import logging
import os
import sqlite3
import struct
from typing import Any, Sequence

import numpy as np

from . import config
from .errors import warn_user

__all__ = ["FILENAME", "EmbeddingCache", "decode_vector", "encode_vector"]

logger = logging.getLogger(__name__)

#: The cache file inside the cache directory (beside the score cache's own files).
FILENAME = "embeddings.sqlite3"
#: Header of every value: magic, format version, dtype code ('<f4'), dimension.
_MAGIC = b"RPDE"
_HEADER = struct.Struct("<4sB3sI")
_VERSION = 1
_DTYPE = b"<f4"
#: Keys per SQL query when reading (below SQLite's oldest bound-variable limit, 999).
_LOOKUP_CHUNK = 900
ROLES = ("query", "document")


def encode_vector(vector: np.ndarray) -> bytes:
    """A vector as cache bytes: the header, then float32 little-endian values.

    >>> decode_vector(encode_vector(np.array([1.5, -2.0]))).tolist()
    [1.5, -2.0]
    """
    values = np.ascontiguousarray(vector, dtype="<f4").reshape(-1)
    return _HEADER.pack(_MAGIC, _VERSION, _DTYPE, values.shape[0]) + values.tobytes()


def decode_vector(blob: bytes) -> np.ndarray | None:
    """The vector in ``blob``, or None when it is not a value this module wrote (wrong header or length)."""
    if not isinstance(blob, (bytes, bytearray, memoryview)) or len(blob) < _HEADER.size:
        return None
    magic, version, dtype, dim = _HEADER.unpack_from(blob)
    if magic != _MAGIC or version != _VERSION or dtype != _DTYPE or len(blob) != _HEADER.size + 4 * dim:
        return None
    return np.frombuffer(blob, dtype="<f4", count=dim, offset=_HEADER.size).astype(np.float32)


def _directory(cache: Any) -> str:
    if cache is True:
        return config.cache_dir()
    if isinstance(cache, (str, os.PathLike)):
        return os.path.expanduser(os.fspath(cache))
    raise ValueError(f"cache must be True, False or a directory path, got {cache!r}")


class EmbeddingCache:
    """Embeddings of one reranker identity, on disk; best effort, as one run sees it.

    Use :meth:`open` (it returns None when ``cache`` is off or the cache cannot be opened).
    """

    def __init__(self, directory: str, identity: str) -> None:
        self.directory = directory
        os.makedirs(directory, mode=0o700, exist_ok=True)
        self.path = os.path.join(directory, FILENAME)
        existed = os.path.exists(self.path)
        self._db: sqlite3.Connection | None = sqlite3.connect(self.path, timeout=10.0, check_same_thread=False)
        if not existed:
            os.chmod(self.path, 0o600)
        self._db.execute("CREATE TABLE IF NOT EXISTS embeddings (key BLOB PRIMARY KEY, value BLOB NOT NULL) "
                         "WITHOUT ROWID")
        self._db.commit()
        self._digest = hashlib.sha256(identity.encode("utf-8")).digest()
        self._failed = False

    @classmethod
    def open(cls, cache: Any, identity: str | None) -> "EmbeddingCache | None":
        """The cache for ``identity`` under ``cache`` (True: the default directory, or a path), else None.

        None also when ``cache`` is False/None, when ``identity`` is None (nothing ties the vectors to a
        model), or when the cache cannot be opened (one warning; the run goes on without it).
        """
        if cache is False or cache is None or identity is None:
            return None
        directory = _directory(cache)
        try:
            return cls(directory, identity)
        except (OSError, sqlite3.Error) as exc:
            warn_user(f"rerankpd: the embedding cache at {directory} could not be opened ({exc}); "
                      "embedding without it")
            return None

    def key(self, role: str, text: str) -> bytes:
        """SHA-256 of ``identity NUL role NUL text`` (raw 32 bytes)."""
        h = hashlib.sha256(self._digest)
        h.update(b"\x00" + role.encode("ascii") + b"\x00")
        h.update(text.encode("utf-8", "surrogatepass"))
        return h.digest()

    def lookup(self, role: str, texts: Sequence[str]) -> dict[int, np.ndarray]:
        """The cached vectors of ``texts`` as ``{position: vector}``; misses are absent."""
        if self._db is None:
            return {}
        keys = [self.key(role, t) for t in texts]
        position = {k: i for i, k in enumerate(keys)}
        found: dict[int, np.ndarray] = {}
        try:
            for start in range(0, len(keys), _LOOKUP_CHUNK):
                chunk = keys[start:start + _LOOKUP_CHUNK]
                rows = self._db.execute(
                    f"SELECT key, value FROM embeddings WHERE key IN ({','.join('?' * len(chunk))})", chunk)
                for key, value in rows:
                    vector = decode_vector(value)
                    if vector is not None and np.isfinite(vector).all():
                        found[position[bytes(key)]] = vector
        except sqlite3.Error as exc:
            self._give_up(f"could not be read ({exc})")
            return {}
        return found

    def store(self, role: str, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Write the vectors of one finished batch (row ``i`` is the embedding of ``texts[i]``), in one
        transaction."""
        if self._db is None or self._failed or not len(texts):
            return
        rows = [(self.key(role, t), encode_vector(v)) for t, v in zip(texts, vectors)]
        try:
            with self._db:
                self._db.executemany("INSERT OR REPLACE INTO embeddings (key, value) VALUES (?, ?)", rows)
        except sqlite3.Error as exc:
            self._failed = True
            self._give_up(f"could not be written ({exc}); embedding goes on, but this run's vectors will not "
                          "be cached")

    def __len__(self) -> int:
        if self._db is None:
            return 0
        return int(self._db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0])

    def _give_up(self, what: str) -> None:
        warn_user(f"rerankpd: the embedding cache at {self.path} {what}")
        self.close()

    def close(self) -> None:
        """Release the SQLite connection (every finished batch is written by then)."""
        if self._db is not None:
            try:
                self._db.close()
            except sqlite3.Error:  # pragma: no cover - closing is best effort too
                logger.debug("could not close the embedding cache", exc_info=True)
            self._db = None

    def __repr__(self) -> str:
        return f"EmbeddingCache({self.path!r})"
