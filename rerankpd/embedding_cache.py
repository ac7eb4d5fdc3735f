"""The embedding cache: each text's embedding on disk, so a new query over the same frame embeds only the query.

It lives beside the score cache, in the same directory: one :class:`rerankpd.sqlite_store.SQLiteTable`
(``embeddings`` in ``embeddings.sqlite3``, BLOB values), so it shares the score cache's storage policy -- a
private (0700) directory and private file, WAL, read-only fallback, a writer thread, no pickle. A key is the
SHA-256 digest of the reranker's identity (model and every option that changes vectors, never an API key),
the role (``"query"`` or ``"document"``: e5 and most embedding models embed the two with different prefixes)
and the text. A value is raw bytes: a fixed header (magic, dtype, dimension) followed by the float32 vector,
little-endian. Nothing is ever pickled, so a shared cache directory is never a way to run code; a value that
is not a blob, or whose header, length or numbers are wrong, is a miss (and is overwritten when re-embedded).

:class:`EmbeddingCache` follows the score cache's run policy (:class:`rerankpd.cache.RunCache`): opening,
reading and writing are best effort. A cache that cannot be opened is switched off with one warning; one
that can only be read (a read-only directory or mount, a full disk, a directory deleted mid-run, a lock held
by another process) still serves what it holds, with one warning that new vectors are not kept. Each finished
batch is handed to the writer thread at once (one call, so a Ctrl-C lands before or after it, never inside a
transaction) and committed within milliseconds; :meth:`EmbeddingCache.close` waits until everything handed
over is written, so an interrupted run keeps what it embedded and a rerun resumes from there.

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
from .sqlite_store import SQLiteTable, WriteBehind, close_writer, flush_writer, hand_over

__all__ = ["FILENAME", "EmbeddingCache", "decode_vector", "encode_vector"]

logger = logging.getLogger(__name__)

#: The cache file inside the cache directory (beside the score cache's own files), and its table.
FILENAME = "embeddings.sqlite3"
TABLE = "embeddings"
#: Header of every value: magic, format version, dtype code ('<f4'), dimension.
_MAGIC = b"RPDE"
_HEADER = struct.Struct("<4sB3sI")
_VERSION = 1
_DTYPE = b"<f4"
#: Only a blob can be a vector; anything else stored under a key is a miss (decode_vector checks the rest).
_VALID_VALUE = f"typeof(value) = 'blob' AND length(value) >= {_HEADER.size}"
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

    Use :meth:`open` (it returns None when ``cache`` is off or the cache cannot be opened), then
    :meth:`lookup`, :meth:`store` and, on every exit path, :meth:`close`.
    """

    def __init__(self, directory: str, identity: str) -> None:
        self.directory = directory
        self.table: SQLiteTable | None = SQLiteTable.open(directory, FILENAME, TABLE, "BLOB", valid=_VALID_VALUE)
        self.path = self.table.path
        self.read_only = self.table.read_only
        self._digest = hashlib.sha256(identity.encode("utf-8")).digest()
        self._writer = None if self.read_only else WriteBehind(self.table, self._rows)
        self._warned = False

    @classmethod
    def open(cls, cache: Any, identity: str | None) -> "EmbeddingCache | None":
        """The cache for ``identity`` under ``cache`` (True: the default directory, or a path), else None.

        None also when ``cache`` is False/None, when ``identity`` is None (nothing ties the vectors to a
        model), or when the cache can be neither written nor read (one warning; the run goes on without it).
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
        """The cached vectors of ``texts`` as ``{position: vector}``; misses are absent.

        Everything handed to :meth:`store` before is read back (the writer is waited for first).
        """
        if self.table is None or not len(texts):
            return {}
        self.flush()
        try:
            keys = [self.key(role, t) for t in texts]
            rows = self.table.get_many(keys)
            found: dict[int, np.ndarray] = {}
            for i, key in enumerate(keys):
                vector = decode_vector(rows[key]) if key in rows else None
                if vector is not None and np.isfinite(vector).all():
                    found[i] = vector
            return found
        except (OSError, sqlite3.Error) as exc:
            self._warn(f"rerankpd: the embedding cache at {self.path} could not be read ({exc}); "
                       "embedding without it")
            self.close()
            return {}
        except BaseException:  # Ctrl-C while reading: do not leave SQLite open
            self.close()
            raise

    def store(self, role: str, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Hand the vectors of one finished batch (row ``i`` is the embedding of ``texts[i]``) to the writer,
        which commits them in one transaction within milliseconds."""
        if len(texts):
            hand_over(self._writer, self.table, (role, list(texts), vectors), self._warn_not_written)

    def flush(self) -> None:
        """Wait until every batch handed to :meth:`store` so far is on disk (or writing has failed)."""
        flush_writer(self._writer, self._warn_not_written)

    def __len__(self) -> int:
        """How many vectors the file holds (after writing what is queued)."""
        if self.table is None:
            return 0
        self.flush()
        return len(self.table)

    def close(self) -> None:
        """Write every batch handed over (waits a bounded time), then release SQLite; safe to call twice."""
        writer, self._writer = self._writer, None
        try:
            close_writer(writer, self._warn_not_written)
        finally:
            table, self.table = self.table, None
            if table is not None:
                table.close()

    def _rows(self, item: tuple[str, list[str], np.ndarray]) -> list[tuple[bytes, bytes]]:
        """In the writer thread: the (key, encoded vector) rows of one finished batch."""
        role, texts, vectors = item
        return [(self.key(role, t), encode_vector(v)) for t, v in zip(texts, vectors)]

    def _warn_not_written(self, reason: str) -> None:
        self._warn(f"rerankpd: the embedding cache at {self.path} could not be written ({reason}); embedding "
                   "goes on and cached embeddings are still read, but new ones will not be kept")

    def _warn(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            warn_user(message)

    def __repr__(self) -> str:
        return f"EmbeddingCache({self.path!r}{', read-only' if self.read_only else ''})"
