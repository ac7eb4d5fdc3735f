"""The score cache: finished scores in the store, so a rerun costs nothing and an interrupted run loses
nothing.

A finished request is written as one *block* per query it holds: the texts' 16-byte hashes followed by
the scores as little-endian float64 (:mod:`rerankpd.cache.keys`). A query's blocks are numbered from 0:
block ``n`` is ``S`` + prefix + ``n`` (4 bytes, big-endian). A lookup reads a query's blocks from 0 up to
the first that is missing and matches the pairs through one hash index (a later block wins). A write
appends a block in one transaction: from the position the run's lookup stopped at, it steps down past
missing blocks (a clear by another process) and up past present ones (another writer), so the blocks
stay contiguous; a block evicted or expired from the middle is a hole that the next write fills. A
lookup that finds a query in many blocks rewrites them as one (see :func:`read_blocks`).

So a finished request of 100 pairs costs one short insert. A block that is not whole (hash, score)
records, and a score that is not finite, are misses.

Examples
--------
>>> import tempfile
>>> from rerankpd.core.identity import identity_digest
>>> cache = ScoreCache(tempfile.mkdtemp())
>>> key = cache.key(identity_digest({"provider": "demo"}), "q", "text")
>>> cache.set_many({key: 0.5})
>>> list(cache.get_many([key, ScoreCache.key("other", "q", "text")]).values())
[0.5]
>>> cache.close()
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import diskcache
import numpy as np
import pandas as pd

from ..pairs import Pairs, take_texts
from .keys import HASH_BYTES, SCORES, pair_keys, query_prefix, text_hashes
from .store import CacheSettings, Store, StoreUser

__all__ = ["RunCache", "ScoreCache"]

#: Bytes of one stored pair in a block: the text's hash and the score.
RECORD_BYTES = HASH_BYTES + 8
#: Texts hashed at once while looking up a run (texts may be Arrow-backed).
LOOKUP_CHUNK_TEXTS = 65_536
#: A query found in more blocks than this is compacted into one by the lookup that reads it (a rerun then
#: reads one block per query, not one per request of the first run).
COMPACT_BLOCKS = 16
#: ... unless its blocks hold more bytes than this (64 MiB: 2.8 million scores), which stay as they are.
COMPACT_BYTES = 2**26
#: Queries read in one transaction while looking up a run (other processes' writes wait meanwhile).
LOOKUP_CHUNK_QUERIES = 256


_MISSING = object()


def split_block(block: bytes) -> tuple[bytes, bytes]:
    """A block's texts' hashes and its scores."""
    at = len(block) // RECORD_BYTES * HASH_BYTES
    return block[:at], block[at:]


def _block_key(prefix: bytes, n: int) -> bytes:
    return SCORES + prefix + n.to_bytes(4, "big")


def read_blocks(cache: diskcache.Cache, prefix: bytes, compact: bool = False) -> list[bytes]:
    """The valid blocks of one query, oldest first: blocks 0, 1, ... up to the first missing one (a value
    that is not a block is skipped).

    With ``compact`` (inside a write transaction), a query found in more than :data:`COMPACT_BLOCKS`
    blocks (of at most :data:`COMPACT_BYTES` in all) is rewritten as one: their records in order (so a
    later record still wins), with the first block's tag, expiring when the first of them would have.
    """
    entries, n = [], 0  # (block, expire time, tag) of each valid block
    while (entry := cache.get(_block_key(prefix, n), _MISSING, expire_time=True, tag=True))[0] is not _MISSING:
        if entry[0] is not None and len(entry[0]) and len(entry[0]) % RECORD_BYTES == 0:
            entries.append(entry)
        n += 1
    blocks = [block for block, _, _ in entries]
    if compact and len(blocks) > COMPACT_BLOCKS and sum(map(len, blocks)) <= COMPACT_BYTES:
        times = [e[1] for e in entries if e[1] is not None]
        hashes, scores = zip(*map(split_block, blocks))
        blocks = [b"".join(hashes) + b"".join(scores)]
        expire = min(times) - time.time() if times else None
        cache.set(_block_key(prefix, 0), blocks[0], expire=expire, tag=entries[0][2])
        for m in range(1, n):
            cache.delete(_block_key(prefix, m))
    return blocks


def write_block(cache: diskcache.Cache, prefix: bytes, block: bytes, options: dict, start: int = 0) -> int:
    """Append one block to a query's blocks, looking from position ``start`` (call it inside a
    transaction); returns the position written."""
    n = start
    while n > 0 and _block_key(prefix, n - 1) not in cache:
        n -= 1
    while not cache.add(_block_key(prefix, n), block, **options):
        n += 1
    return n


def block_rows(prefixes: Sequence[bytes], groups: np.ndarray, hashes: np.ndarray, values: Any) -> list[tuple]:
    """One ``(prefix, block)`` per query of the pairs; non-finite scores are left out.

    Pair ``i`` belongs to query ``groups[i]``, whose prefix is ``prefixes[groups[i]]``.
    """
    values = np.asarray(values, dtype="<f8").reshape(-1)
    if groups.min(initial=0) == groups.max(initial=0) and np.isfinite(values).all():  # the usual request
        return [(prefixes[int(groups[0])], hashes.tobytes() + values.tobytes())] if len(values) else []
    order = np.flatnonzero(np.isfinite(values))
    order = order[np.argsort(groups[order], kind="stable")]  # each query's pairs together, in order
    groups, hashes, values = groups[order], hashes[order], values[order]
    cuts = np.flatnonzero(groups[1:] != groups[:-1]) + 1
    parts = zip(np.split(groups, cuts), np.split(hashes, cuts), np.split(values, cuts))
    return [(prefixes[int(g[0])], h.tobytes() + v.tobytes()) for g, h, v in parts if len(g)]


def folded(keys: np.ndarray) -> np.ndarray:
    """A 64-bit digest of each 32-byte key (its four 8-byte words XORed): what :class:`Found` indexes."""
    words = np.ascontiguousarray(keys).view(np.uint64).reshape(-1, 4)
    return words[:, 0] ^ words[:, 1] ^ words[:, 2] ^ words[:, 3]


class Found:
    """The scores stored under some queries, in a hash index for :meth:`scores_of` (a later block wins).

    The index is on each key's 64-bit :func:`folded` digest, and a match is confirmed on the whole key:
    should two keys ever share a digest, only the later one is kept and the other is a miss (re-scored),
    never another pair's score.
    """

    def __init__(self, blocks: list[tuple[bytes, bytes]]) -> None:
        hashes, values = zip(*(split_block(block) for _, block in blocks)) if blocks else ((), ())
        prefixes = np.frombuffer(b"".join(prefix * (len(v) // 8) for (prefix, _), v in zip(blocks, values)), np.uint8)
        keys = pair_keys(prefixes.reshape(-1, 16), np.frombuffer(b"".join(hashes), np.uint8).reshape(-1, HASH_BYTES))
        scores = np.frombuffer(b"".join(values), dtype="<f8").astype(np.float64)
        digests = pd.Index(folded(keys))
        keep = np.isfinite(scores) & ~digests.duplicated(keep="last")
        self.keys, self.scores, self.index = keys[keep], scores[keep], digests[keep]

    def scores_of(self, keys: np.ndarray) -> np.ndarray:
        """The stored score of each of ``keys`` (an ``S32`` array), NaN where there is none."""
        out = np.full(len(keys), np.nan)
        pos = self.index.get_indexer(folded(keys))
        match = np.flatnonzero(pos >= 0)
        match = match[self.keys[pos[match]] == keys[match]]
        out[match] = self.scores[pos[match]]
        return out


def read_found(store: Store, prefixes: Sequence[bytes]) -> Found:
    """The scores of those queries, read a few hundred queries per transaction (other processes' writes
    wait meanwhile)."""
    blocks: list[tuple[bytes, bytes]] = []
    for start in range(0, len(prefixes), LOOKUP_CHUNK_QUERIES):
        chunk = prefixes[start : start + LOOKUP_CHUNK_QUERIES]

        def read_chunk(cache: Any, chunk: Sequence[bytes] = chunk) -> list[tuple[bytes, list[bytes]]]:
            compact = store.records_use and store.failure is None  # in a write transaction (see Store.read)
            return [(p, read_blocks(cache, p, compact)) for p in chunk]

        blocks += [(prefix, block) for prefix, query_blocks in store.read(read_chunk) for block in query_blocks]
    return Found(blocks)


class ScoreCache(StoreUser):
    """Scores of (reranker, query, text) by 32-byte pair key, outside a run (the shared store for Dask
    and tests use it; a run uses :class:`RunCache`).

    Parameters
    ----------
    directory
        The cache directory (or :class:`~rerankpd.cache.CacheSettings`); None: the default one.
    read_only
        Open for reading only and create nothing.
    tag
        The reranker name new entries are tagged with (for ``clear_cache(reranker=...)``).
    """

    def __init__(self, directory: Any = None, *, read_only: bool = False, tag: str | None = None) -> None:
        settings = directory if isinstance(directory, CacheSettings) else CacheSettings(directory)
        store = Store(settings, read_only=read_only)
        super().__init__(store, tag)
        #: The open store (a ScoreCache is never closed by a failed read: it raises instead).
        self.store: Store = store

    @staticmethod
    def key(identity_digest: str, query: str, text: str) -> bytes:
        """The 32-byte key of one pair under one reranker identity: :func:`query_prefix` of the query, then
        the text's hash (:func:`text_hashes`)."""
        return ScoreCache.keys(identity_digest, [query], [text], [0], [0])[0]

    @staticmethod
    def keys(digest: str, queries: Sequence[str], texts: Sequence[str], groups: Iterable, at: Iterable) -> list[bytes]:
        """:meth:`key` under identity ``digest`` of many pairs at once (pair ``i`` is ``queries[groups[i]]``
        and ``texts[at[i]]``).

        >>> ScoreCache.keys("d", ["q"], ["a", "b"], [0, 0], [1, 0]) == [
        ...     ScoreCache.key("d", "q", "b"), ScoreCache.key("d", "q", "a")]
        True
        """
        used_groups, group_at = np.unique(np.fromiter(groups, np.int64), return_inverse=True)
        used_texts, text_at = np.unique(np.fromiter(at, np.int64), return_inverse=True)
        joined = b"".join(query_prefix(digest, queries[g]) for g in used_groups.tolist())
        prefixes = np.frombuffer(joined, np.uint8).reshape(-1, 16)
        hashes = text_hashes(take_texts(texts, used_texts))
        joined = pair_keys(prefixes[group_at], hashes[text_at]).tobytes()
        return [joined[i : i + 32] for i in range(0, len(joined), 32)]

    def get_many(self, keys: Sequence[bytes]) -> dict[bytes, float]:
        """The cached scores of those of ``keys`` (32 bytes each) that are present and finite."""
        keys = [k for k in keys if len(k) == 32]
        found = read_found(self.store, sorted({k[:16] for k in keys}))
        scores = found.scores_of(np.frombuffer(b"".join(keys), dtype="S32"))
        return {k: float(v) for k, v in zip(keys, scores.tolist()) if v == v}

    def set_many(self, scores: Mapping[bytes, float]) -> None:
        """Store scores now, one block per query, in one transaction; raises when they cannot be written."""
        if not scores:
            return
        keys = np.frombuffer(b"".join(scores), np.uint8).reshape(len(scores), 32)
        prefixes, groups = np.unique(keys[:, :16], axis=0, return_inverse=True)
        rows = block_rows([p.tobytes() for p in prefixes], groups.reshape(-1), keys[:, 16:], list(scores.values()))
        if not self.store.write(lambda cache: [write_block(cache, p, block, self._options) for p, block in rows]):
            raise PermissionError(f"the cache at {self.directory} could not be written: {self.store.failure}")


class RunCache(StoreUser):
    """The score cache as one run sees it: best effort, and the pipeline's only door to it.

    Opening, reading and writing never fail a run, and the pipeline only calls :meth:`open`,
    :meth:`lookup`, :meth:`store`, :meth:`report` and :meth:`close`. Each finished request is committed
    (one block per query) before :meth:`store` returns. A cache that cannot be written (read-only, full
    disk, deleted mid-run) is still read; the run warns once, at the user's line, that new scores will not
    be kept.

    Parameters
    ----------
    store
        The open :class:`~rerankpd.cache.store.Store`.
    identity
        The reranker's identity as canonical JSON text (:attr:`rerankpd.rerankers.base.RerankerSpec.identity`).
    tag
        The reranker's name, which its entries are tagged with.
    """

    def __init__(self, store: Store, identity: str, tag: str | None = None) -> None:
        super().__init__(store, tag)
        self._digest = hashlib.sha256(identity.encode("utf-8")).hexdigest()
        self._pairs: Pairs | None = None
        self._prefixes: list[bytes] = []  # each query's prefix, made once per run
        self._hashes: np.ndarray | None = None  # every text's hash, made by the lookup
        self._next: dict[bytes, int] = {}  # query prefix -> where its next block probably goes

    def lookup(self, pairs: Pairs, scores: np.ndarray) -> int:
        """Fill ``scores[i]`` for every cached pair ``i`` of ``pairs``; returns how many were found.

        Hashes every distinct text once (kept for :meth:`store`), reads each query's blocks (a few hundred
        queries per transaction) and matches the pairs through one hash index.
        """
        self._pairs, self._next = pairs, {}
        self._prefixes = [query_prefix(self._digest, query) for query in pairs.queries]
        self._hashes = hashes = np.empty((len(pairs.texts), HASH_BYTES), dtype=np.uint8)
        for start in range(0, len(pairs.texts), LOOKUP_CHUNK_TEXTS):
            stop = min(start + LOOKUP_CHUNK_TEXTS, len(pairs.texts))
            hashes[start:stop] = text_hashes(take_texts(pairs.texts, np.arange(start, stop)))
        groups = np.asarray(pairs.pair_group, dtype=np.int64)
        prefixes = [self._prefixes[g] for g in np.unique(groups).tolist()]
        found = self._read(lambda store: read_found(store, prefixes), None)
        if found is None or not pairs.n_pairs:
            return 0
        table = np.frombuffer(b"".join(self._prefixes), np.uint8).reshape(-1, 16)
        values = found.scores_of(pair_keys(table[groups], hashes[np.asarray(pairs.pair_text)]))
        hit = ~np.isnan(values)
        scores[hit] = values[hit]
        return int(hit.sum())

    def store(self, pair_ids: Sequence[int], values: Sequence[float] | np.ndarray) -> None:
        """Commit the scores of one finished request (pairs numbered as in :meth:`lookup`) before returning.

        One block per query of the request. The scheduler calls this in the thread that ran the request,
        before the next request is sent, so a killed process loses at most its requests in flight.
        Any thread may call it; it never warns (:meth:`report` does, in the user's thread).
        """
        store = self._store
        if store is None or store.failure is not None:
            return
        pairs, ids = self._pairs, np.asarray(pair_ids, dtype=np.int64)
        assert pairs is not None and self._hashes is not None  # lookup() came first: it numbers and hashes
        groups = np.asarray(pairs.pair_group[ids], dtype=np.int64)
        rows = block_rows(self._prefixes, groups, self._hashes[pairs.pair_text[ids]], values)

        def write(cache: diskcache.Cache) -> None:
            for prefix, block in rows:
                self._next[prefix] = write_block(cache, prefix, block, self._options, self._next.get(prefix, 0)) + 1

        if rows:
            store.write(write)
