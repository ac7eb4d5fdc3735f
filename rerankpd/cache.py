"""The score cache: finished scores on disk, so a rerun costs nothing and an interrupted run loses nothing.

A thin layer over :mod:`diskcache`. Keys are SHA-256 digests of the reranker's identity (provider, endpoint,
model and every option that changes scores, never the API key), the query and the text. Values are JSON
text; the cache's :class:`JSONOnlyDisk` refuses to pickle or unpickle anything, so a shared cache directory
is never a way to run code. The directory is created private to the user (0700).

Examples
--------
>>> import tempfile
>>> cache = ScoreCache(tempfile.mkdtemp())
>>> key = cache.key(identity_digest({"provider": "demo"}), "q", "text")
>>> cache.set_many({key: 0.5})
>>> list(cache.get_many([key, "missing"]).values())
[0.5]
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import sqlite3
import time
from typing import Any, Iterable, Mapping, Sequence

import diskcache
import numpy as np
from diskcache.core import MODE_PICKLE, MODE_RAW

from . import config
from .errors import warn_user
from .pairs import Pairs, take_texts

__all__ = ["JSONOnlyDisk", "RunCache", "ScoreCache", "cache_info", "clear_cache", "identity_digest"]

logger = logging.getLogger(__name__)

#: Keys per SQL query in :meth:`ScoreCache.get_many` (below SQLite's oldest bound-variable limit, 999).
_LOOKUP_CHUNK = 900

#: Memory-map nothing and keep SQLite's page cache at 1 MiB (diskcache's defaults, 64 MiB of mmap and a
#: 32 MiB page cache, would make a large cached rerun's peak memory several times the frame's own).
_SQLITE_SETTINGS = {"sqlite_mmap_size": 0, "sqlite_cache_size": 2**8}


class JSONOnlyDisk(diskcache.Disk):
    """A diskcache ``Disk`` that stores only text keys and JSON text values, and never unpickles."""

    def put(self, key):
        if not isinstance(key, str):
            raise TypeError(f"score cache keys are str, got {type(key).__name__}")
        return super().put(key)

    def get(self, key, raw):
        if not raw:
            raise ValueError("refusing to unpickle a score cache key")
        return super().get(key, raw)

    def store(self, value, read, key=diskcache.core.UNKNOWN):
        if not isinstance(value, str):
            raise TypeError(f"score cache values are JSON text, got {type(value).__name__}")
        return super().store(value, read, key=key)

    def fetch(self, mode, filename, value, read):
        if mode == MODE_PICKLE:
            raise ValueError("refusing to unpickle a score cache value")
        return super().fetch(mode, filename, value, read)


def identity_digest(identity: Mapping) -> str:
    """A stable digest of a reranker's identity dict (sorted JSON, SHA-256)."""
    text = json.dumps(identity, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ScoreCache:
    """Scores of (reranker, query, text) on disk.

    Parameters
    ----------
    directory
        Where the cache lives; created (0700) if missing. None means :func:`rerankpd.config.cache_dir`.
    """

    def __init__(self, directory: str | os.PathLike | None = None) -> None:
        self.directory = os.path.expanduser(os.fspath(directory) if directory is not None else config.cache_dir())
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        with _busy_is_timeout(self.directory):
            self._cache = diskcache.Cache(self.directory, disk=JSONOnlyDisk, **_SQLITE_SETTINGS)

    def __repr__(self) -> str:
        return f"ScoreCache({self.directory!r})"

    @staticmethod
    def key(identity_digest: str, query: str, text: str) -> str:
        """The cache key of one pair under one reranker identity: SHA-256 of ``digest NUL query NUL text``."""
        return ScoreCache.keys(identity_digest, [query], [text], [0], [0])[0]

    @staticmethod
    def keys(identity_digest: str, queries: Sequence[str], texts: Sequence[str],
             pair_group: Iterable[int], pair_text: Iterable[int]) -> list[str]:
        """:meth:`key` of many pairs at once (pair ``i`` is ``queries[pair_group[i]], texts[pair_text[i]]``).

        Hashes each query's prefix once and copies it per text, so it costs one short hash per pair.

        Examples
        --------
        >>> ScoreCache.keys("d", ["q"], ["a", "b"], [0, 0], [1, 0]) == [
        ...     ScoreCache.key("d", "q", "b"), ScoreCache.key("d", "q", "a")]
        True
        """
        prefixes: dict[int, "hashlib._Hash"] = {}
        out: list[str] = []
        pair_group, pair_text = _as_list(pair_group), _as_list(pair_text)
        step = LOOKUP_CHUNK_PAIRS  # texts may be Arrow-backed: make str in chunks
        for start in range(0, len(pair_text), step):
            out.extend(ScoreCache._keys_chunk(identity_digest, queries, prefixes, pair_group[start:start + step],
                                              take_texts(texts, pair_text[start:start + step])))
        return out

    @staticmethod
    def _keys_chunk(identity_digest: str, queries: Sequence[str], prefixes: dict, groups: list[int],
                    texts: list[str]) -> list[str]:
        out: list[str] = []
        for g, text in zip(groups, texts):
            base = prefixes.get(g)
            if base is None:
                base = hashlib.sha256(identity_digest.encode("ascii"))
                base.update(b"\x00")
                base.update(queries[g].encode("utf-8", "surrogatepass"))
                base.update(b"\x00")
                prefixes[g] = base
            h = base.copy()
            h.update(text.encode("utf-8", "surrogatepass"))
            out.append(h.hexdigest())
        return out

    def get_many(self, keys: Sequence[str]) -> dict[str, float]:
        """The cached scores of those keys that are present.

        One SQL query per chunk of keys (not one lookup per key): a 50,000-pair rerun reads its scores in
        a few dozen queries. Only raw text keys and JSON text values are read; a pickled value raises.
        """
        with _busy_is_timeout(self.directory):
            return self._get_many(list(keys))

    def _get_many(self, keys: list[str]) -> dict[str, float]:
        found: dict[str, float] = {}
        cache = self._cache
        disk = cache.disk
        now = time.time()
        for start in range(0, len(keys), _LOOKUP_CHUNK):
            chunk = keys[start:start + _LOOKUP_CHUNK]
            rows = cache._sql(
                "SELECT key, mode, filename, value FROM Cache WHERE raw = 1 AND key IN "
                f"({','.join('?' * len(chunk))}) AND (expire_time IS NULL OR expire_time > ?)",
                (*chunk, now)).fetchall()
            for key, mode, filename, value in rows:
                if mode != MODE_RAW:
                    try:
                        value = disk.fetch(mode, filename, value, False)
                    except OSError:  # removed by another process meanwhile: a miss
                        continue
                found[key] = _number(value)
        return found

    def set_many(self, scores: Mapping[str, float]) -> None:
        """Store scores, all in one transaction."""
        if not scores:
            return
        with _busy_is_timeout(self.directory), self._cache.transact():
            for key, score in scores.items():
                self._cache.set(key, json.dumps(float(score)))

    def __len__(self) -> int:
        return len(self._cache)

    def volume(self) -> int:
        """Bytes the cache takes on disk."""
        return self._cache.volume()

    def clear(self) -> int:
        """Remove every entry; returns how many there were."""
        return self._cache.clear()

    def close(self) -> None:
        self._cache.close()

    def __enter__(self) -> "ScoreCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _as_list(values: Iterable[int]) -> list[int]:
    return values.tolist() if hasattr(values, "tolist") else list(values)


def _number(text: str) -> float:
    """A cached value: JSON text of one number (float() reads JSON numbers exactly, and fast)."""
    try:
        return float(text)
    except (TypeError, ValueError):
        value = json.loads(text)  # anything else must still be JSON; a number is all we accept
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"score cache value is not a number: {text!r:.40}") from None
        return float(value)


@contextlib.contextmanager
def _busy_is_timeout(directory: str):
    """diskcache raises its own ``Timeout`` (not an OSError) when another process holds the database
    locked; raise it as :class:`TimeoutError` (an OSError) so callers treat it like any unusable cache."""
    try:
        yield
    except diskcache.Timeout:
        raise TimeoutError(f"the score cache at {directory} is locked by another process") from None


def cache_info(directory: str | os.PathLike | None = None) -> dict:
    """Where the score cache is, how many scores it holds and how many bytes it takes.

    Examples
    --------
    >>> import rerankpd
    >>> sorted(rerankpd.cache_info())
    ['directory', 'entries', 'size_bytes']
    """
    with ScoreCache(directory) as cache:
        return {"directory": cache.directory, "entries": len(cache), "size_bytes": cache.volume()}


def clear_cache(directory: str | os.PathLike | None = None) -> int:
    """Remove every cached score; returns how many were removed."""
    with ScoreCache(directory) as cache:
        removed = cache.clear()
    logger.info("cleared %d cached scores from %s", removed, cache.directory)
    return removed


#: Pairs whose keys are made and looked up at once; only the misses' keys are kept (to write their scores).
LOOKUP_CHUNK_PAIRS = 8192

#: What a cache that cannot be used raises; the run goes on without it (best effort).
_UNUSABLE = (OSError, sqlite3.Error, ValueError)


class RunCache:
    """The score cache as one run sees it: best effort, and the pipeline's only door to it.

    Opening, reading and writing never fail a run: a cache that cannot be used is switched off with one
    warning pointing at the user's line, and the run goes on scoring. The pipeline only asks
    :meth:`lookup` for the scores it has and :meth:`store` for each finished request.

    Parameters
    ----------
    cache
        True (the default directory), a directory path, or False/None (no cache: :meth:`open` returns None).
    identity
        The reranker's identity as canonical JSON text (:attr:`rerankpd.rerankers.base.RerankerSpec.identity`).
    """

    def __init__(self, store: ScoreCache, identity: str) -> None:
        self._store: ScoreCache | None = store
        self.directory = store.directory
        self._digest = hashlib.sha256(identity.encode("utf-8")).hexdigest()
        self._keys: list[str | None] = []
        self._write_failed = False

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
        return self._store is not None

    def lookup(self, pairs: Pairs, scores: np.ndarray) -> int:
        """Fill ``scores[i]`` for every cached pair ``i`` of ``pairs``; returns how many were found.

        Works in chunks of :data:`LOOKUP_CHUNK_PAIRS` pairs and keeps the keys of the misses only.
        """
        found_count = 0
        self._keys = [None] * pairs.n_pairs
        try:
            for start in range(0, pairs.n_pairs, LOOKUP_CHUNK_PAIRS):
                stop = min(start + LOOKUP_CHUNK_PAIRS, pairs.n_pairs)
                keys = ScoreCache.keys(self._digest, pairs.queries, pairs.texts, pairs.pair_group[start:stop],
                                       pairs.pair_text[start:stop])
                found = self._read(keys)
                for i, key in enumerate(keys, start):
                    score = found.get(key)
                    if score is None or not math.isfinite(score):
                        self._keys[i] = key
                    else:
                        scores[i] = score
                        found_count += 1
        except BaseException:  # Ctrl-C while reading a large cache: do not leave SQLite open
            self.close()
            raise
        return found_count

    def _read(self, keys: list[str]) -> dict[str, float]:
        if self._store is None:
            return {}
        try:
            return self._store.get_many(keys)
        except _UNUSABLE as exc:
            warn_user(f"rerankpd: the score cache could not be read ({exc}); scoring without it")
            self.close()
            return {}

    def store(self, pair_ids: Sequence[int], values: Sequence[float]) -> None:
        """Write the scores of one finished request (pairs numbered as in :meth:`lookup`)."""
        if self._store is None or self._write_failed:
            return
        try:
            self._store.set_many({self._keys[p]: v for p, v in zip(pair_ids, values) if self._keys[p] is not None})
        except (OSError, sqlite3.Error) as exc:
            self._write_failed = True
            warn_user(f"rerankpd: the score cache at {self.directory} could not be written ({exc}); "
                      "scoring goes on, but this run's scores will not be cached")

    def close(self) -> None:
        """Release SQLite's connection and page cache (every score is written by then)."""
        if self._store is not None:
            self._store.close()
            self._store = None
