"""The score cache: finished scores on disk, so a rerun costs nothing and an interrupted run loses nothing.

Scores live in one SQLite table (:mod:`rerankpd.sqlite_store`) in ``scores-v2.sqlite3`` of a private (0700)
directory: 32-byte keys, REAL values, nothing else. A key is the SHA-256 of the reranker's identity digest
(provider, endpoint, model and every option that changes scores, never the API key), the query and the
text, each field length-prefixed so no two pairs share a key. A value is a float: no JSON to parse, no
pickle, no file to open, so a tampered cache can at worst cost a miss. A stored value that is not a finite
REAL (NULL, text, a blob, infinity) is a miss and is overwritten by the fresh score.

Caches made by rerankpd 0.1 (diskcache's ``cache.db``, keys without length prefixes) are ignored, never
read; :func:`clear_cache` removes them too.

Examples
--------
>>> import tempfile
>>> cache = ScoreCache(tempfile.mkdtemp())
>>> key = cache.key(identity_digest({"provider": "demo"}), "q", "text")
>>> cache.set_many({key: 0.5})
>>> list(cache.get_many([key, ScoreCache.key("other", "q", "text")]).values())
[0.5]
>>> cache.close()
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import sqlite3
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from . import config
from .errors import CacheError, warn_user
from .pairs import Pairs, take_texts
from .sqlite_store import SQLiteTable, WriteBehind, close_writer, flush_writer, hand_over

__all__ = ["RunCache", "ScoreCache", "cache_info", "clear_cache", "identity_digest"]

logger = logging.getLogger(__name__)

#: The file and table of the current key and value format. A change of either bumps the version in the
#: file name: older files are left alone (never read) and :func:`clear_cache` removes them.
SCORES_FILE = "scores-v2.sqlite3"
SCORES_TABLE = "scores"
#: The files of the 0.1 format (diskcache, text keys without length prefixes): ignored, removed by clear.
LEGACY_FILES = ("cache.db", "cache.db-wal", "cache.db-shm")

#: Only a finite REAL is a score; any other stored value is a miss (and is overwritten).
_VALID_SCORE = "typeof(value) = 'real' AND abs(value) <= 1.7976931348623157e308"

#: Starts every key's hash input: a new key format gets a new tag (and a new file).
_KEY_TAG = b"rerankpd score key v2\x00"

#: Pairs whose keys are made and looked up at once (the writer makes the keys of what it stores itself).
LOOKUP_CHUNK_PAIRS = 8192

#: A query with at least this many pairs in a run reads its block of the table in one walk.
_BLOCK_MIN_PAIRS = 2048


def identity_digest(identity: Mapping) -> str:
    """A stable digest of a reranker's identity dict (sorted JSON, SHA-256)."""
    text = json.dumps(identity, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _field(data: bytes) -> bytes:
    return len(data).to_bytes(8, "little") + data


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _directory(directory: str | os.PathLike | None) -> str:
    return os.path.expanduser(os.fspath(directory) if directory is not None else config.cache_dir())


class ScoreCache:
    """Scores of (reranker, query, text) on disk.

    Parameters
    ----------
    directory
        Where the cache lives; created (0700) if missing. None means :func:`rerankpd.config.cache_dir`.
    read_only
        Open for reading only and create nothing. A cache that cannot be written (a read-only directory or
        mount, a full disk) is opened read-only anyway; :attr:`read_only` says so.
    """

    def __init__(self, directory: str | os.PathLike | None = None, *, read_only: bool = False) -> None:
        self.directory = _directory(directory)
        self.table = SQLiteTable.open(self.directory, SCORES_FILE, SCORES_TABLE, "REAL", valid=_VALID_SCORE,
                                      read_only=read_only)

    def __repr__(self) -> str:
        return f"ScoreCache({self.directory!r}{', read-only' if self.read_only else ''})"

    @property
    def read_only(self) -> bool:
        return self.table.read_only

    @staticmethod
    def key(identity_digest: str, query: str, text: str) -> bytes:
        """The 32-byte key of one pair under one reranker identity.

        The first 16 bytes name the (identity, query) block: ``Q = SHA-256(tag, identity digest, query)``,
        each field preceded by its length (8 bytes, little-endian), so no choice of texts makes two pairs'
        inputs equal. The last 16 are BLAKE2b of the text's UTF-8 keyed with the whole ``Q``. A query's
        scores are therefore one contiguous stretch of the table, read in one sequential walk.
        """
        return ScoreCache.keys(identity_digest, [query], [text], [0], [0])[0]

    @staticmethod
    def keys(identity_digest: str, queries: Sequence[str], texts: Sequence[str],
             pair_group: Iterable[int], pair_text: Iterable[int]) -> list[bytes]:
        """:meth:`key` of many pairs at once (pair ``i`` is ``queries[pair_group[i]], texts[pair_text[i]]``).

        Hashes each query's prefix once and copies it per text, so it costs one short hash per pair.

        Examples
        --------
        >>> ScoreCache.keys("d", ["q"], ["a", "b"], [0, 0], [1, 0]) == [
        ...     ScoreCache.key("d", "q", "b"), ScoreCache.key("d", "q", "a")]
        True
        """
        prefixes: dict[int, Any] = {}
        out: list[bytes] = []
        pair_group, pair_text = _as_list(pair_group), _as_list(pair_text)
        step = LOOKUP_CHUNK_PAIRS  # texts may be Arrow-backed: make str in chunks
        for start in range(0, len(pair_text), step):
            out.extend(_keys_chunk(identity_digest, queries, prefixes, pair_group[start:start + step],
                                   take_texts(texts, pair_text[start:start + step])))
        return out

    def get_many(self, keys: Sequence[bytes]) -> dict[bytes, float]:
        """The cached scores of those keys that are present and valid (finite REAL values).

        Keys are read in large sorted batches, one SQL query per batch.
        """
        return self.table.get_many(keys)

    def block(self, prefix: bytes, max_rows: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Every valid score whose key starts with the 16-byte ``prefix`` (one query's block), in key order:
        ``(high, low, values)`` where ``high`` and ``low`` are the key's last 16 bytes as two unsigned
        integers (so the block is sorted by ``high``). None when it holds more than ``max_rows`` scores."""
        end = _block_end(prefix)
        if max_rows is not None and self.table.count_range(prefix, end) > max_rows:
            return None
        tails, value_parts = [_key_tails(b"")], [np.empty(0)]
        for rows in self.table.scan_range(prefix, end):
            keys, values = zip(*rows)
            tails.append(_key_tails(b"".join(keys)))
            value_parts.append(np.fromiter(values, dtype=np.float64, count=len(values)))
        tail = np.concatenate(tails)
        return tail["high"].astype(np.uint64), tail["low"].astype(np.uint64), np.concatenate(value_parts)

    def set_many(self, scores: Mapping[bytes, float]) -> None:
        """Store scores now, in one transaction (a run writes through :class:`RunCache` instead)."""
        if scores:
            self.table.put_many([(key, float(score)) for key, score in scores.items()])

    def __len__(self) -> int:
        return len(self.table)

    def volume(self) -> int:
        """Bytes the score table takes on disk (its database, WAL and shared-memory files)."""
        return sum(_size(self.table.path + suffix) for suffix in ("", "-wal", "-shm"))

    def clear(self) -> int:
        """Remove every entry; returns how many there were."""
        return self.table.clear()

    def close(self) -> None:
        self.table.close()

    def __enter__(self) -> "ScoreCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def query_block(identity_digest: str, query: str) -> tuple[bytes, bytes]:
    """``(Q, Q[:16])``: the digest keying a query's texts and the prefix its keys share."""
    digest = hashlib.sha256(_KEY_TAG + _field(identity_digest.encode("ascii")) + _field(_encode(query))).digest()
    return digest, digest[:16]


#: A 32-byte key as its block prefix and its text part read as two big-endian integers (key order).
_KEY_LAYOUT = np.dtype([("block", "S16"), ("high", ">u8"), ("low", ">u8")])


def _key_tails(joined: bytes) -> np.ndarray:
    """Concatenated 32-byte keys as an array of :data:`_KEY_LAYOUT` records."""
    return np.frombuffer(joined, dtype=_KEY_LAYOUT)


def _block_end(prefix: bytes) -> bytes | None:
    """The smallest 16-byte string above every key starting with ``prefix`` (None: there is none)."""
    value = int.from_bytes(prefix, "big") + 1
    return value.to_bytes(16, "big") if value < 1 << 128 else None


def _keys_chunk(identity_digest: str, queries: Sequence[str], prefixes: dict, groups: list[int],
                texts: list[str]) -> list[bytes]:
    blake2b = hashlib.blake2b
    out: list[bytes] = []
    append = out.append
    for g, text in zip(groups, texts):
        block = prefixes.get(g)
        if block is None:
            block = prefixes[g] = query_block(identity_digest, queries[g])
        append(block[1] + blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16, key=block[0]).digest())
    return out


def _as_list(values: Iterable[int]) -> list[int]:
    return values.tolist() if hasattr(values, "tolist") else list(values)


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _check_directory(directory: str, doing: str) -> None:
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise CacheError(f"cannot {doing} the score cache at {directory}: it is a file, not a directory; "
                         "pass a directory (cache=... or --cache-dir)")


def cache_info(directory: str | os.PathLike | None = None) -> dict:
    """Where the score cache is, how many scores it holds and how many bytes it takes. Creates nothing.

    A directory that does not exist holds 0 scores. Raises :class:`rerankpd.errors.CacheError` when the
    path is a file or the cache cannot be read.

    Examples
    --------
    >>> import rerankpd
    >>> sorted(rerankpd.cache_info())
    ['directory', 'entries', 'size_bytes']
    """
    directory = _directory(directory)
    _check_directory(directory, "read")
    info = {"directory": directory, "entries": 0, "size_bytes": 0}
    if not os.path.isdir(directory):
        return info
    info["size_bytes"] = sum(_size(os.path.join(d, f)) for d, _, files in os.walk(directory) for f in files)
    if os.path.exists(os.path.join(directory, SCORES_FILE)):
        try:
            with ScoreCache(directory, read_only=True) as cache:
                info["entries"] = len(cache)
        except (OSError, sqlite3.Error) as exc:
            raise CacheError(f"cannot read the score cache at {directory}: {exc}") from exc
    return info


def clear_cache(directory: str | os.PathLike | None = None) -> int:
    """Remove every cached score (and any cache of the older 0.1 format); returns how many were removed.

    Raises :class:`rerankpd.errors.CacheError` when the path is a file or the cache cannot be written
    (a read-only directory, say).
    """
    directory = _directory(directory)
    _check_directory(directory, "clear")
    removed = 0
    if not os.path.isdir(directory):
        return 0
    try:
        if os.path.exists(os.path.join(directory, SCORES_FILE)):
            with ScoreCache(directory) as cache:
                if cache.read_only:
                    raise CacheError(f"cannot clear the score cache at {directory}: it is read-only "
                                     "(check the directory's permissions, or whether its disk is full)")
                removed += cache.clear()
        removed += _remove_legacy(directory)
    except (OSError, sqlite3.Error) as exc:
        raise CacheError(f"cannot clear the score cache at {directory}: {exc}") from exc
    logger.info("cleared %d cached scores from %s", removed, directory)
    return removed


def _remove_legacy(directory: str) -> int:
    legacy = os.path.join(directory, LEGACY_FILES[0])
    if not os.path.exists(legacy):
        return 0
    count = 0
    try:
        con = sqlite3.connect(f"file:{legacy}?mode=ro", uri=True)
        try:
            count = con.execute("SELECT COUNT(*) FROM Cache").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        pass  # unreadable: removed all the same
    for name in LEGACY_FILES:
        path = os.path.join(directory, name)
        if os.path.exists(path):
            os.remove(path)
    return count


class RunCache:
    """The score cache as one run sees it: best effort, and the pipeline's only door to it.

    Opening, reading and writing never fail a run, and the pipeline only calls :meth:`open`,
    :meth:`lookup`, :meth:`store` and :meth:`close`. Finished scores go to one writer thread
    (:class:`rerankpd.sqlite_store.WriteBehind`) that commits them within milliseconds in bulk
    transactions; :meth:`close` (on success, error and Ctrl-C alike) waits until all are written. A cache
    that cannot be written (read-only, full disk, deleted mid-run, locked by another process) is still
    read; the run warns once, at the user's line, that new scores will not be kept.

    Parameters
    ----------
    scores
        The open :class:`ScoreCache`.
    identity
        The reranker's identity as canonical JSON text (:attr:`rerankpd.rerankers.base.RerankerSpec.identity`).
    """

    def __init__(self, scores: ScoreCache, identity: str) -> None:
        self._scores: ScoreCache | None = scores
        self.directory = scores.directory
        self._digest = hashlib.sha256(identity.encode("utf-8")).hexdigest()
        self._pairs: Pairs | None = None
        self._writer = None if scores.read_only else WriteBehind(scores.table, self._rows)
        self._warned = False

    @classmethod
    def open(cls, cache: Any, identity: str) -> "RunCache | None":
        """The run's cache, or None when ``cache`` is False or the cache cannot be opened (one warning)."""
        if cache is False or cache is None:
            return None
        if cache is True:
            directory = None
        elif isinstance(cache, (str, os.PathLike)):
            directory = cache
        else:
            raise ValueError(f"cache must be True, False or a directory path, got {cache!r}")
        try:
            return cls(ScoreCache(directory), identity)
        except (OSError, sqlite3.Error) as exc:
            warn_user(f"rerankpd: the score cache could not be opened ({exc}); scoring without it")
            return None

    @property
    def active(self) -> bool:
        return self._scores is not None

    def lookup(self, pairs: Pairs, scores: np.ndarray) -> int:
        """Fill ``scores[i]`` for every cached pair ``i`` of ``pairs``; returns how many were found.

        Works in chunks of :data:`LOOKUP_CHUNK_PAIRS` pairs and keeps no keys (the writer thread makes the
        keys of the pairs it stores). A query with many pairs reads its whole block of the table in one
        sequential walk (once, kept as compact arrays until its last pair is looked up) and matches keys
        with a binary search; the other pairs are read by key in sorted batches. An empty cache is not
        read at all.
        """
        found_count = 0
        self._pairs = pairs
        try:
            if self._scores is None or self._scores.table.is_empty():
                return 0
            groups_all = np.asarray(pairs.pair_group)
            sizes = np.bincount(groups_all, minlength=len(pairs.queries)) if pairs.n_pairs else np.zeros(0, int)
            left = sizes.copy()
            blocks: dict[int, tuple[np.ndarray, np.ndarray] | None] = {}
            for start in range(0, pairs.n_pairs, LOOKUP_CHUNK_PAIRS):
                stop = min(start + LOOKUP_CHUNK_PAIRS, pairs.n_pairs)
                groups = groups_all[start:stop]
                keys = ScoreCache.keys(self._digest, pairs.queries, pairs.texts, groups, pairs.pair_text[start:stop])
                values = self._read(keys, groups, sizes, blocks)
                hit = ~np.isnan(values)
                scores[start:stop][hit] = values[hit]
                found_count += int(hit.sum())
                done, counts = np.unique(groups, return_counts=True)
                left[done] -= counts
                for g in done[left[done] == 0].tolist():
                    blocks.pop(g, None)  # the query's last pair is looked up: free its block
        except BaseException:  # Ctrl-C while reading a large cache: do not leave SQLite open
            self.close()
            raise
        return found_count

    def _read(self, keys: list[bytes], groups: np.ndarray, sizes: np.ndarray, blocks: dict) -> np.ndarray:
        """The cached scores of ``keys`` (NaN where missing)."""
        values = np.full(len(keys), np.nan)
        if self._scores is None:
            return values
        try:
            by_key = np.flatnonzero(sizes[groups] < _BLOCK_MIN_PAIRS)
            for g in np.unique(groups[sizes[groups] >= _BLOCK_MIN_PAIRS]).tolist():
                at = np.flatnonzero(groups == g)
                if g not in blocks:
                    blocks[g] = self._scores.block(keys[at[0]][:16], max_rows=4 * int(sizes[g]) + _BLOCK_MIN_PAIRS)
                block = blocks[g]
                if block is None:  # the block is much larger than this run needs: read by key
                    by_key = np.concatenate([by_key, at])
                elif len(block[0]):
                    block_high, block_low, block_values = block
                    want = _key_tails(b"".join([keys[i] for i in at.tolist()]))
                    pos = np.searchsorted(block_high, want["high"])
                    pos[pos == len(block_high)] = 0
                    match = (block_high[pos] == want["high"]) & (block_low[pos] == want["low"])
                    values[at[match]] = block_values[pos[match]]
            if len(by_key):
                found = self._scores.get_many([keys[i] for i in by_key.tolist()])
                if found:
                    for i in by_key.tolist():
                        score = found.get(keys[i])
                        if score is not None:
                            values[i] = score
            return values
        except (OSError, sqlite3.Error) as exc:
            self._warn(f"rerankpd: the score cache at {self.directory} could not be read ({exc}); "
                       "scoring without it")
            self.close()
            return np.full(len(keys), np.nan)

    def store(self, pair_ids: Sequence[int], values: Sequence[float]) -> None:
        """Write the scores of one finished request (pairs numbered as in :meth:`lookup`) before returning.

        The writer thread makes the keys and commits; this waits for that commit, so the pipeline sends no
        further request before a finished one is on disk: a killed process loses at most its requests in
        flight (the answers it already had are never only in a queue).
        """
        hand_over(self._writer, self._scores, (pair_ids, values), self._warn_not_written, wait=True)

    def flush(self) -> None:
        """Wait until every score handed to :meth:`store` so far is on disk (or writing has failed)."""
        flush_writer(self._writer, self._warn_not_written)

    def close(self) -> None:
        """Write every score handed over, then release SQLite (waits at most a bounded time)."""
        writer, self._writer = self._writer, None
        try:
            close_writer(writer, self._warn_not_written)
        finally:
            if self._scores is not None:
                self._scores.close()
                self._scores = None

    def _rows(self, item: tuple[Sequence[int], Sequence[float]]) -> list[tuple[bytes, float]]:
        """In the writer thread: the (key, score) rows of one finished request (its keys are made here,
        off the scoring thread)."""
        pair_ids, values = item
        pairs = self._pairs
        ids = np.asarray(pair_ids, dtype=np.int64)
        keys = ScoreCache.keys(self._digest, pairs.queries, pairs.texts, pairs.pair_group[ids], pairs.pair_text[ids])
        values = values.tolist() if hasattr(values, "tolist") else list(values)
        return [(key, v) for key, v in zip(keys, values) if math.isfinite(v)]

    def _warn_not_written(self, reason: str) -> None:
        self._warn(f"rerankpd: the score cache at {self.directory} could not be written ({reason}); scoring "
                   "goes on and cached scores are still read, but new scores will not be kept")

    def _warn(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            warn_user(message)
