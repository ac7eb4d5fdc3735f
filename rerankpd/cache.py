"""The score cache: finished scores on disk, so a rerun costs nothing and an interrupted run loses nothing.

Scores live in one SQLite table (:mod:`rerankpd.sqlite_store`) in ``scores-v3.sqlite3`` of a private (0700)
directory. Each row is one *block*: the scores of one finished request for one (reranker, query), written
as one row when the request finishes. A row's key is the query's 16-byte block prefix and a 16-byte stamp
(write time and a random number, so later blocks sort after earlier ones); its value is the texts' 16-byte
hashes followed by the scores as little-endian float64. So a finished request of 100 pairs costs one short
append, not 100 inserts at random places of a B-tree, and a query's scores are one contiguous stretch of
the table, read in one walk.

The key of a pair (what :meth:`ScoreCache.key` returns and a block stores in two halves) is 32 bytes:
``Q[:16]``, where ``Q = SHA-256(tag, identity digest, query)`` over the reranker's identity digest
(provider, endpoint, model and every option that changes scores, never the API key) with each field
length-prefixed, then BLAKE2b-128 of the text's UTF-8. No two pairs share a key, and a text's hash does
not depend on the query: a lookup hashes each text once however many queries it appears under.

Nothing in a row is code: no JSON to parse, no pickle, no file to open, so a tampered cache can at worst
cost a miss. A row whose value is not a BLOB of whole (hash, score) records is ignored; a stored score that
is not finite is a miss; when a pair is stored twice (a re-scored pair, two processes) the later block wins.

Caches of earlier formats (rerankpd 0.1's diskcache ``cache.db``; ``scores-v2.sqlite3``, one row per pair)
are ignored, never read; :func:`clear_cache` removes them too.

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
import itertools
import json
import logging
import os
import sqlite3
import threading
import time
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from . import config
from .errors import CacheError, warn_user
from .pairs import Pairs, take_texts
from . import journal
from .sqlite_store import SQLiteTable, TableWriter, close_writer, report_failure

__all__ = ["RunCache", "ScoreCache", "cache_info", "clear_cache", "identity_digest"]

logger = logging.getLogger(__name__)

#: The file and table of the current key and value format. A change of either bumps the version in the
#: file name: older files are left alone (never read) and :func:`clear_cache` removes them.
SCORES_FILE = "scores-v3.sqlite3"
SCORES_TABLE = "score_blocks"
#: The files of earlier formats: ignored, removed by :func:`clear_cache` (with the table they count).
LEGACY_FILES = {"cache.db": "Cache", "scores-v2.sqlite3": "scores"}

#: Bytes of one stored pair in a block's value: the text's hash and the score.
_HASH_BYTES = 16
_RECORD_BYTES = _HASH_BYTES + 8
#: Only a BLOB of whole records is a block; any other stored value is ignored.
_VALID_BLOCK = f"typeof(value) = 'blob' AND length(value) > 0 AND length(value) % {_RECORD_BYTES} = 0"

#: Starts every query prefix's hash input: a new format gets a new one.
_KEY_TAG = b"rerankpd score key v3\x00"

#: Texts hashed (and pairs matched) at once while looking up a run.
LOOKUP_CHUNK_PAIRS = 65_536
#: Query prefixes read in one go while looking up a run.
LOOKUP_CHUNK_QUERIES = 4096


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


def query_prefix(identity_digest: str, query: str) -> bytes:
    """The 16 bytes every key of ``query`` under that identity starts with (its block prefix)."""
    return hashlib.sha256(_KEY_TAG + _field(identity_digest.encode("ascii")) + _field(_encode(query))).digest()[:16]


def text_hashes(texts: Sequence[str]) -> np.ndarray:
    """The 16-byte hash of each text, as an ``(n, 16)`` uint8 array (BLAKE2b-128 of its UTF-8)."""
    blake2b = hashlib.blake2b
    joined = b"".join([blake2b(_encode(t), digest_size=_HASH_BYTES).digest() for t in texts])
    return np.frombuffer(joined, dtype=np.uint8).reshape(len(texts), _HASH_BYTES)


def pair_keys(prefixes: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    """32-byte keys from per-pair prefixes ``(n, 16)`` and text hashes ``(n, 16)``, as an ``S32`` array
    (compare, sort and search it as a whole; never read single items: NumPy drops their trailing NULs)."""
    keys = np.empty((len(hashes), 32), dtype=np.uint8)
    keys[:, :16] = prefixes
    keys[:, 16:] = hashes
    return keys.view("S32").reshape(-1)


class _Stamps:
    """Row stamps of one writer: the write time in nanoseconds (strictly increasing within the process) and
    a random number, so a query's blocks sort in the order they were written and two processes never write
    the same row key."""

    _lock = threading.Lock()
    _last = 0

    def __init__(self) -> None:
        self._salt = int.from_bytes(os.urandom(8), "big")
        self._count = itertools.count()

    def __call__(self) -> bytes:
        with _Stamps._lock:
            now = _Stamps._last = max(time.time_ns(), _Stamps._last + 1)
        return now.to_bytes(8, "big") + ((self._salt + next(self._count)) % (1 << 64)).to_bytes(8, "big")


def _block_rows(prefix_of: Callable[[int], bytes], groups: np.ndarray, hashes: np.ndarray, values: Any,
                stamp: _Stamps) -> list[tuple[bytes, bytes]]:
    """One row per query of the pairs: ``(prefix + stamp, hashes + scores)``; non-finite scores are left out.

    Pair ``i`` belongs to query ``groups[i]``, whose prefix is ``prefix_of(groups[i])``.
    """
    values = np.asarray(values, dtype="<f8").reshape(-1)
    keep = np.isfinite(values)
    if not keep.all():
        groups, hashes, values = groups[keep], hashes[keep], values[keep]
    if not len(values):
        return []
    if (groups == groups[0]).all():  # the usual request: one query
        return [(prefix_of(int(groups[0])) + stamp(), hashes.tobytes() + values.tobytes())]
    order = np.argsort(groups, kind="stable")
    groups, hashes, values = groups[order], hashes[order], values[order]
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    ends = np.r_[starts[1:], len(groups)]
    hash_bytes, value_bytes = hashes.tobytes(), values.tobytes()
    return [(prefix_of(int(groups[a])) + stamp(),
             hash_bytes[a * _HASH_BYTES:b * _HASH_BYTES] + value_bytes[a * 8:b * 8])
            for a, b in zip(starts.tolist(), ends.tolist())]


class _Found:
    """The scores stored under some query prefixes, sorted by key for :meth:`scores_of` (later wins)."""

    def __init__(self, rows: list[tuple[bytes, bytes]]) -> None:
        rows.sort(key=lambda row: row[0])  # by prefix, then stamp: a later block after an earlier one
        prefixes, hashes, values = [], [], []
        for key, value in rows:
            n = len(value) // _RECORD_BYTES
            prefixes.append(key[:16] * n)
            hashes.append(value[:n * _HASH_BYTES])
            values.append(value[n * _HASH_BYTES:])
        n_total = sum(len(v) for v in values) // 8
        keys = pair_keys(np.frombuffer(b"".join(prefixes), np.uint8).reshape(n_total, 16),
                         np.frombuffer(b"".join(hashes), np.uint8).reshape(n_total, _HASH_BYTES))
        scores = np.frombuffer(b"".join(values), dtype="<f8").astype(np.float64)
        finite = np.isfinite(scores)
        keys, scores = keys[finite], scores[finite]
        order = np.argsort(keys, kind="stable")
        keys, scores = keys[order], scores[order]
        last = np.r_[keys[1:] != keys[:-1], True] if len(keys) else np.zeros(0, bool)
        self.keys, self.scores = keys[last], scores[last]

    def scores_of(self, keys: np.ndarray) -> np.ndarray:
        """The stored score of each of ``keys`` (an ``S32`` array), NaN where there is none."""
        out = np.full(len(keys), np.nan)
        if len(self.keys) and len(keys):
            pos = np.searchsorted(self.keys, keys)
            pos[pos == len(self.keys)] = 0
            match = self.keys[pos] == keys
            out[match] = self.scores[pos[match]]
        return out


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
        self.table = SQLiteTable.open(self.directory, SCORES_FILE, SCORES_TABLE, "BLOB", valid=_VALID_BLOCK,
                                      read_only=read_only)
        self.stamp = _Stamps()  #: makes the key stamps of the blocks written through this cache

    def __repr__(self) -> str:
        return f"ScoreCache({self.directory!r}{', read-only' if self.read_only else ''})"

    @property
    def read_only(self) -> bool:
        return self.table.read_only

    @staticmethod
    def key(identity_digest: str, query: str, text: str) -> bytes:
        """The 32-byte key of one pair under one reranker identity: :func:`query_prefix` of the query, then
        the text's hash (:func:`text_hashes`)."""
        return ScoreCache.keys(identity_digest, [query], [text], [0], [0])[0]

    @staticmethod
    def keys(identity_digest: str, queries: Sequence[str], texts: Sequence[str],
             pair_group: Iterable[int], pair_text: Iterable[int]) -> list[bytes]:
        """:meth:`key` of many pairs at once (pair ``i`` is ``queries[pair_group[i]], texts[pair_text[i]]``).

        Hashes each query and each text once.

        Examples
        --------
        >>> ScoreCache.keys("d", ["q"], ["a", "b"], [0, 0], [1, 0]) == [
        ...     ScoreCache.key("d", "q", "b"), ScoreCache.key("d", "q", "a")]
        True
        """
        groups = np.asarray(_as_list(pair_group), dtype=np.int64)
        positions = np.asarray(_as_list(pair_text), dtype=np.int64)
        if not len(groups):
            return []
        used_groups, group_at = np.unique(groups, return_inverse=True)
        used_texts, text_at = np.unique(positions, return_inverse=True)
        prefixes = np.frombuffer(b"".join(query_prefix(identity_digest, queries[g]) for g in used_groups.tolist()),
                                 np.uint8).reshape(-1, 16)
        hashes = text_hashes(take_texts(texts, used_texts))
        joined = pair_keys(prefixes[group_at], hashes[text_at]).tobytes()
        return [joined[i:i + 32] for i in range(0, len(joined), 32)]

    def get_many(self, keys: Sequence[bytes]) -> dict[bytes, float]:
        """The cached scores of those of ``keys`` (32 bytes each) that are present and finite."""
        keys = [k for k in keys if len(k) == 32]
        if not keys:
            return {}
        found = self.read(sorted({k[:16] for k in keys}))
        scores = found.scores_of(np.frombuffer(b"".join(keys), dtype="S32"))
        return {k: float(v) for k, v in zip(keys, scores.tolist()) if v == v}

    def read(self, prefixes: Sequence[bytes]) -> _Found:
        """Every stored score of the queries with those 16-byte prefixes."""
        return _Found(self.table.scan_prefixes(prefixes))

    def set_many(self, scores: Mapping[bytes, float]) -> None:
        """Store scores now, in one transaction (a run writes through :class:`RunCache` instead)."""
        if not scores:
            return
        keys = list(scores)
        values = np.array([float(scores[k]) for k in keys])
        prefixes = sorted({k[:16] for k in keys})
        number = {p: i for i, p in enumerate(prefixes)}
        groups = np.array([number[k[:16]] for k in keys], dtype=np.int64)
        hashes = np.frombuffer(b"".join(k[16:] for k in keys), np.uint8).reshape(len(keys), _HASH_BYTES)
        self.table.put_many(_block_rows(prefixes.__getitem__, groups, hashes, values, self.stamp))

    def __len__(self) -> int:
        """How many scores are stored (a pair stored twice counts twice)."""
        return self.table.value_bytes() // _RECORD_BYTES

    def volume(self) -> int:
        """Bytes the score table takes on disk (its database, WAL and shared-memory files)."""
        return sum(_size(self.table.path + suffix) for suffix in ("", "-wal", "-shm"))

    def clear(self) -> int:
        """Remove every entry; returns how many scores there were."""
        count = len(self)
        self.table.clear()
        return count

    def close(self) -> None:
        self.table.close()

    def __enter__(self) -> "ScoreCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


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
                journal.recover(directory, cache.table)  # a killed run's journal is cleared with the rest
                removed += cache.clear()
        removed += _remove_legacy(directory)
    except (OSError, sqlite3.Error) as exc:
        raise CacheError(f"cannot clear the score cache at {directory}: {exc}") from exc
    logger.info("cleared %d cached scores from %s", removed, directory)
    return removed


def _remove_legacy(directory: str) -> int:
    """Remove the files of earlier cache formats; returns how many entries their tables held."""
    count = 0
    for filename, table in LEGACY_FILES.items():
        legacy = os.path.join(directory, filename)
        if not os.path.exists(legacy):
            continue
        try:
            con = sqlite3.connect(f"file:{legacy}?mode=ro", uri=True)
            try:
                count += con.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            finally:
                con.close()
        except sqlite3.Error:
            pass  # unreadable: removed all the same
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(legacy + suffix):
                os.remove(legacy + suffix)
    return count


class RunCache:
    """The score cache as one run sees it: best effort, and the pipeline's only door to it.

    Opening, reading and writing never fail a run, and the pipeline only calls :meth:`open`,
    :meth:`lookup`, :meth:`store`, :meth:`report` and :meth:`close`. Each finished request is kept as one
    block per query before :meth:`store` returns; :meth:`close` (on success, error and Ctrl-C alike)
    moves the run's journal into the table and releases SQLite. A cache that cannot be written (read-only,
    full disk, deleted mid-run, locked by another process) is still read; the run warns once, at the
    user's line, that new scores will not be kept.

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
        self._prefixes: dict[int, bytes] = {}  # query number -> its block prefix, made once per run
        self._hashes: np.ndarray | None = None  # every text's hash, when the lookup made them
        self._stamp = scores.stamp
        self._writer: TableWriter | None = None
        if not scores.read_only:
            if journal.supported():
                journal.recover(self.directory, scores.table)  # what a killed run left, before the lookup
                self._writer = journal.JournalWriter(scores.table, self._rows)
            else:
                self._writer = TableWriter(scores.table, self._rows)
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

    def _prefix(self, group: int) -> bytes:
        prefix = self._prefixes.get(group)
        if prefix is None:
            prefix = self._prefixes[group] = query_prefix(self._digest, self._pairs.queries[group])
        return prefix

    def lookup(self, pairs: Pairs, scores: np.ndarray) -> int:
        """Fill ``scores[i]`` for every cached pair ``i`` of ``pairs``; returns how many were found.

        Hashes every distinct text once (kept for :meth:`store`), then reads the stored blocks of a few
        thousand queries at a time and matches their pairs with one binary search. An empty cache is not
        read at all.
        """
        self._pairs, self._prefixes, self._hashes = pairs, {}, None
        found_count = 0
        try:
            if self._scores is None or not pairs.n_pairs:
                return 0
            if self._scores.table.is_empty():
                return 0  # nothing to read; store() hashes each request's texts as it finishes
            # every text's hash, in bulk: what the lookup matches, kept for store()
            hashes = np.empty((len(pairs.texts), _HASH_BYTES), dtype=np.uint8)
            for start in range(0, len(pairs.texts), LOOKUP_CHUNK_PAIRS):  # texts may be Arrow-backed
                stop = min(start + LOOKUP_CHUNK_PAIRS, len(pairs.texts))
                hashes[start:stop] = text_hashes(take_texts(pairs.texts, np.arange(start, stop)))
            self._hashes = hashes
            pair_group = np.asarray(pairs.pair_group, dtype=np.int64)
            order = np.argsort(pair_group, kind="stable")
            groups = pair_group[order]
            starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
            sizes = np.diff(np.r_[starts, len(groups)])
            chunk = np.maximum((np.cumsum(sizes) - sizes) // LOOKUP_CHUNK_PAIRS,
                               np.arange(len(starts)) // LOOKUP_CHUNK_QUERIES)
            edges = np.r_[np.flatnonzero(np.r_[True, chunk[1:] != chunk[:-1]]), len(starts)]
            for a, b in zip(edges[:-1].tolist(), edges[1:].tolist()):
                prefixes = [self._prefix(g) for g in groups[starts[a:b]].tolist()]
                stored = self._read(prefixes)
                if stored is None:
                    break
                ids = order[starts[a]:starts[b] if b < len(starts) else len(order)]
                want = pair_keys(np.repeat(np.frombuffer(b"".join(prefixes), np.uint8).reshape(-1, 16),
                                           sizes[a:b], axis=0), hashes[pairs.pair_text[ids]])
                values = stored.scores_of(want)
                hit = ~np.isnan(values)
                scores[ids[hit]] = values[hit]
                found_count += int(hit.sum())
        except BaseException:  # Ctrl-C while reading a large cache: do not leave SQLite open
            self.close()
            raise
        return found_count

    def _read(self, prefixes: list[bytes]) -> _Found | None:
        """The stored scores of those queries; None (after one warning) when the cache cannot be read."""
        try:
            return self._scores.read(prefixes)
        except (OSError, sqlite3.Error) as exc:
            self._warn(f"rerankpd: the score cache at {self.directory} could not be read ({exc}); "
                       "scoring without it")
            self.close()
            return None

    def store(self, pair_ids: Sequence[int], values: Sequence[float], texts: Sequence[str] | None = None) -> None:
        """Keep the scores of one finished request (pairs numbered as in :meth:`lookup`) before returning.

        One short row per query of the request (its texts' hashes and scores), appended to the run's
        journal (:mod:`rerankpd.journal`: one write; :meth:`close` moves it into the table) or, where
        journals are not supported, committed to the table. The scheduler calls this in the thread that
        ran the request, before the next request is sent, so a killed process loses at most its requests
        in flight. ``texts`` are the request's documents when the caller has them (the pairs' texts, in
        order: saves looking them up). Any thread may call it; it never warns (:meth:`report` does, in the
        user's thread). An interrupt inside it loses that one request's scores at most.
        """
        writer = self._writer
        if writer is not None:
            writer.write((pair_ids, values, texts))

    def report(self) -> None:
        """Warn once, at the user's line, when finished scores are not being kept (call it in the user's
        thread after :meth:`store`)."""
        report_failure(self._writer, self._scores, self._warn_not_written)

    def close(self) -> None:
        """Write every score handed over, then release SQLite (waits at most a bounded time)."""
        writer, self._writer = self._writer, None
        try:
            close_writer(writer, self._warn_not_written)
        finally:
            if self._scores is not None:
                self._scores.close()
                self._scores = None

    def _rows(self, item: tuple) -> list[tuple[bytes, bytes]]:
        """The block rows of one finished request (its texts' hashes are the lookup's, or made here)."""
        pair_ids, values, texts = item
        pairs = self._pairs
        ids = np.asarray(pair_ids, dtype=np.int64)
        if self._hashes is not None:
            hashes = self._hashes[pairs.pair_text[ids]]
        else:
            hashes = text_hashes(texts if texts is not None else take_texts(pairs.texts, pairs.pair_text[ids]))
        groups = np.asarray(pairs.pair_group[ids], dtype=np.int64)
        return _block_rows(self._prefix, groups, hashes, values, self._stamp)

    def _warn_not_written(self, reason: str) -> None:
        self._warn(f"rerankpd: the score cache at {self.directory} could not be written ({reason}); scoring "
                   "goes on and cached scores are still read, but new scores will not be kept")

    def _warn(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            warn_user(message)
