"""The one store under every cache: a :class:`diskcache.Cache` of raw bytes, and the policy for using it.

Scores, embeddings and LLM window answers all live in one diskcache directory, ``store-v4`` inside the
cache directory (private, 0700): a size limit with least-recently-used eviction, ``expire=``, tags naming
the reranker (so one reranker's entries can be cleared), and diskcache's own locking between threads and
processes. Every entry is committed by the call that writes it: nothing is buffered, nothing journaled.

Nothing stored is code. :class:`BytesDisk` stores raw bytes inline in SQLite and returns only values
stored that way: a value in any other mode (pickle, a value file, text), an integer or a float is a miss,
never unpickled and never opened, and no stored file name is ever removed (a tampered row cannot make a
clear delete another file).

A cache never fails a run (:class:`Store`): a cache that cannot be opened for writing (a read-only
directory or mount, a full disk) is opened read-only and still serves its hits; one that fails mid-run
stops writing at the first failure (no retries, so a full disk never stalls a run) and its owner warns
once, at the user's line. diskcache cannot open a cache read-only, so a read-only :class:`_Cache` reads
the same table through a read-only SQLite connection.

Examples
--------
>>> import tempfile
>>> store = Store(CacheSettings(tempfile.mkdtemp()))
>>> store.write(lambda cache: cache.set(b"Xkey", b"value"))
True
>>> store.cache.get(b"Xkey"), store.cache.get(b"missing")
(b'value', None)
>>> store.close()
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, overload
from urllib.parse import quote

import diskcache
from diskcache.core import DBNAME, MODE_RAW, UNKNOWN

from .. import config
from ..errors import CacheError, warn_user
from .keys import KINDS, SCORES

__all__ = [
    "STORE_ERRORS",
    "BytesDisk",
    "CacheSettings",
    "Store",
    "StoreUser",
    "cache_info",
    "clear_cache",
    "settings_for",
]

logger = logging.getLogger(__name__)

#: The diskcache directory inside the cache directory; a new format gets a new name.
STORE_DIR = "store-v4"
#: What earlier formats left in the cache directory: ignored, removed by :func:`clear_cache`.
LEGACY_FILES = ("cache.db", "scores-v2.sqlite3", "scores-v3.sqlite3", "embeddings.sqlite3")
LEGACY_PATTERNS = ("journal-*.scores",)
#: What a store that cannot be used raises.
STORE_ERRORS = (OSError, sqlite3.Error, diskcache.Timeout)
#: Seconds a statement waits for another process's lock.
BUSY_TIMEOUT = 10.0
#: diskcache's settings: a tag index (clear by reranker), LRU eviction when a run that wrote ends (not on
#: each write), no memory map and a small page cache (a run reads each entry once).
DISKCACHE_SETTINGS: dict[str, Any] = {"tag_index": True, "eviction_policy": "least-recently-used", "cull_limit": 0}
DISKCACHE_SETTINGS.update(sqlite_mmap_size=0, sqlite_cache_size=256)  # SQLite's, through diskcache
#: Why nothing is written when the cache was opened read-only.
READ_ONLY = "it is read-only: a read-only directory or mount, or a full disk"


@dataclasses.dataclass(frozen=True)
class CacheSettings:
    """Where the cache is and how it keeps entries; pass one as ``cache=`` to any call that takes it.

    Parameters
    ----------
    directory
        None: ``RERANKPD_CACHE_DIR``, else the user cache directory.
    size_limit
        Bytes (or ``"500MB"``, ``"2GiB"``); past it the least recently used entries are evicted. None:
        ``RERANKPD_CACHE_SIZE_LIMIT``, else 1 GiB.
    expire
        Seconds after which a new entry expires. None: ``RERANKPD_CACHE_EXPIRE``, else never.

    Examples
    --------
    >>> import rerankpd
    >>> rerankpd.CacheSettings("./scores", size_limit="200MB", expire=7 * 86400).expire
    604800
    """

    directory: Any = None
    size_limit: Any = None
    expire: Any = None


@overload
def settings_for(cache: CacheSettings) -> CacheSettings: ...
@overload
def settings_for(cache: Any) -> CacheSettings | None: ...
def settings_for(cache: Any) -> CacheSettings | None:
    """The resolved settings of a ``cache=`` argument (True, a path or :class:`CacheSettings`); None for
    False/None. Environment variables are read here, at call time."""
    if cache is False or cache is None:
        return None
    if not isinstance(cache, CacheSettings):
        cache = CacheSettings(config.cache_directory(cache))
    directory = os.path.expanduser(os.fspath(cache.directory if cache.directory is not None else config.cache_dir()))
    return CacheSettings(directory, config.cache_size_limit(cache.size_limit), config.cache_expire(cache.expire))


class BytesDisk(diskcache.Disk):
    """Raw bytes in, raw bytes out, always inline in SQLite; anything else read back is a miss (None)."""

    def store(self, value: Any, read: bool, key: Any = UNKNOWN) -> tuple:
        if read or not isinstance(value, bytes):
            raise TypeError(f"the rerankpd cache stores bytes only, not {type(value).__name__}")
        return 0, MODE_RAW, None, sqlite3.Binary(value)

    def fetch(self, mode: int, filename: Any, value: Any, read: bool) -> bytes | None:
        if mode != MODE_RAW or read or filename is not None or not isinstance(value, bytes):
            return None  # pickle, a value file, text, a number: never unpickled, never opened
        return value

    def remove(self, file_path: str) -> None:
        """Nothing to remove: this disk never writes a file, so a file name in a row is not ours."""


class _Cache(diskcache.Cache):
    """A diskcache cache of raw bytes whose :meth:`close` closes the connections of every thread that used
    it (diskcache closes only the calling thread's), so a run that ends leaves no SQLite file open.

    ``read_only``: read through a read-only SQLite connection (diskcache itself writes as it opens); a WAL
    database whose ``-shm`` file cannot be created (a read-only directory) is opened ``immutable``: nobody
    can be writing it then either.
    """

    def __init__(self, directory: str, read_only: bool = False, **settings: Any) -> None:
        self._connections: list[sqlite3.Connection] = []  # every thread's, for close()
        self._read_only, self._immutable = read_only, False
        if not read_only:
            try:
                super().__init__(directory, timeout=BUSY_TIMEOUT, disk=BytesDisk, **settings)
            except BaseException:  # a set-up that failed (read-only, locked) leaves no connection open
                self.close()
                raise
            return
        self._directory, self._timeout, self._txn_id = directory, BUSY_TIMEOUT, None  # not diskcache's: it writes
        self._local, self._disk = threading.local(), BytesDisk(directory)
        try:
            self._sql("SELECT 1 FROM Settings").fetchall()
        except sqlite3.Error:
            self.close()
            self._immutable = True
            self._sql("SELECT 1 FROM Settings").fetchall()
        self.statistics, self.eviction_policy = 0, "none"  # reads write nothing

    @property
    def _con(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None or getattr(self._local, "pid", None) != os.getpid():  # a forked child connects anew
            path = "file:" + quote(os.path.abspath(os.path.join(self._directory, DBNAME)))
            path += ("?mode=ro" + "&immutable=1" * self._immutable) if self._read_only else ""
            con = sqlite3.connect(path, uri=True, timeout=self._timeout, isolation_level=None, check_same_thread=False)
            self._local.con, self._local.pid = con, os.getpid()
            self._connections.append(con)  # close() runs when the run's threads are done
            if not self._read_only:  # the pragmas of each connection (a read-only one sets none)
                with contextlib.suppress(sqlite3.OperationalError):  # no Settings table yet: set-up sets them
                    for key, value in con.execute("SELECT key, value FROM Settings").fetchall():
                        if key.startswith("sqlite_"):
                            self.reset(key, value, update=False)
        return con

    def close(self) -> None:
        connections, self._connections = self._connections, []
        self._local = threading.local()
        for con in connections:
            con.close()


class Store:
    """One cache directory, opened for a run: writable if it can be, else read-only; never fails a run
    after it is open.

    Parameters
    ----------
    settings
        Resolved :class:`CacheSettings` (:func:`settings_for`).
    read_only
        Open for reading only and create nothing.
    """

    def __init__(self, settings: CacheSettings, *, read_only: bool = False) -> None:
        if settings.size_limit is None:
            settings = settings_for(settings)
        self.settings, self.directory = settings, settings.directory
        self.path = os.path.join(self.directory, STORE_DIR)
        self._database = os.path.join(self.path, DBNAME)
        self.wrote = False
        self.cache: diskcache.Cache = self._open(read_only)
        self.read_only = self.cache._read_only
        self.failure = READ_ONLY if self.read_only and not read_only else None  #: why writing stopped, if it did
        stat = os.stat(self._database)
        self._file = stat.st_dev, stat.st_ino  # the database this store opened
        self._lock = threading.Lock()  # this process's writers queue here, not in SQLite's busy handler
        self._queue: list[Callable[[diskcache.Cache], Any]] = []  # writes waiting for the lock
        self._queue_lock = threading.Lock()

    def _open(self, read_only: bool) -> diskcache.Cache:
        _check_directory(self.directory, "open", NotADirectoryError)
        if not read_only:
            try:
                os.makedirs(self.directory, mode=0o700, exist_ok=True)
                os.makedirs(self.path, mode=0o700, exist_ok=True)
                with contextlib.suppress(FileExistsError):  # private from its first byte; SQLite keeps the mode
                    os.close(os.open(self._database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
                return self._set_up()
            except STORE_ERRORS as exc:
                if not os.path.isfile(self._database) or not os.path.getsize(self._database):
                    raise
                logger.info("the cache at %s opens read-only: %s", self.directory, exc)
        if not os.path.isfile(self._database):
            raise FileNotFoundError(f"no cache at {self.directory}")
        return _Cache(self.path, read_only=True)

    def _set_up(self) -> diskcache.Cache:
        """A writable :class:`_Cache`; a set-up that meets another connection's (diskcache creates its tag
        index without waiting: "database is locked") is tried again, for up to :data:`BUSY_TIMEOUT`."""
        deadline = time.monotonic() + BUSY_TIMEOUT
        while True:
            try:
                return _Cache(self.path, size_limit=self.settings.size_limit, **DISKCACHE_SETTINGS)
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def write(self, fn: Callable[[diskcache.Cache], Any]) -> bool:
        """Run ``fn(cache)`` in one transaction; False (and :attr:`failure` set) when it could not.

        After the first failure nothing more is attempted: a full disk or a removed directory costs one
        failed write, not one per request.
        """
        if self.failure is not None:
            return False
        with self._queue_lock:
            self._queue.append(fn)
        try:
            with self._lock:  # the writer that holds it commits every write queued so far, in one transaction
                with self._queue_lock:
                    queued, self._queue = self._queue, []
                if queued:  # else an earlier writer committed this one
                    stat = os.stat(self._database) if os.path.exists(self._database) else None
                    if stat is None or (stat.st_dev, stat.st_ino) != self._file:
                        raise FileNotFoundError("the cache directory was removed or replaced during the run")
                    with self.cache.transact():
                        for queued_fn in queued:
                            queued_fn(self.cache)
                    self.wrote = True
            return self.failure is None
        except STORE_ERRORS as exc:
            locked = isinstance(exc, diskcache.Timeout)
            self.failure = "it is locked by another process (timed out waiting)" if locked else str(exc) or repr(exc)
            logger.info("cache write failed at %s: %s", self.directory, self.failure)
            return False

    @property
    def records_use(self) -> bool:
        """Whether a read runs in a write transaction (to record which entries were used) and so may write."""
        return not self.read_only and self.cache.eviction_policy != "none"

    def read(self, fn: Callable[[diskcache.Cache], Any]) -> Any:
        """``fn(cache)``, in one transaction when the store is writable (so the entries read count as
        recently used); a store that cannot take that transaction is read without it. Raises what the
        plain read raises."""
        if self.records_use:
            try:
                with self.cache.transact():
                    return fn(self.cache)
            except STORE_ERRORS as exc:
                logger.info("cache at %s read without recording use: %s", self.directory, exc)
                self.cache.eviction_policy = "none"  # this connection only: read as a read-only cache does
        return fn(self.cache)

    def close(self) -> None:
        """Evict (when this store wrote anything) expired entries, then the least recently used ones down to
        the size limit; then close every connection. Writes do not evict (each would cost a few more
        statements), nor does opening (a read-only run leaves the store as it is)."""
        try:
            if self.wrote and self.failure is None:
                self.cache.cull()
        except STORE_ERRORS as exc:  # busy, read-only, full: evicting waits for a later run
            logger.info("could not evict from the cache at %s: %s", self.directory, exc)
        finally:
            self.cache.close()


class StoreUser:
    """What each cache of one kind shares: its :class:`Store` (its own, or the run's when ``owned`` is
    False), the options of its new entries, reads that never fail a run, at most one warning, and closing.
    """

    #: The kind in messages, and what goes on without the cache.
    what, doing = "score", "scoring"

    def __init__(self, store: Store, tag: str | None = None, *, owned: bool = True) -> None:
        self._store: Store | None = store
        self._owned, self.tag, self._warned = owned, tag, False
        self.directory, self.settings = store.directory, store.settings
        self._options = {"expire": store.settings.expire, "tag": tag}  # of each new entry

    @classmethod
    def open(cls, cache: Any, *args: Any) -> Any:
        """``cls(store, *args)`` on the store of a ``cache=`` argument; None when it is off or cannot be
        opened (one warning)."""
        settings = settings_for(cache)
        try:
            store = None if settings is None else Store(settings)
        except STORE_ERRORS as exc:
            warn_user(
                f"rerankpd: the {cls.what} cache at {settings.directory} could not be opened ({exc}); {cls.doing} without it"
            )
            return None
        return None if store is None else cls(store, *args)

    def _read(self, fn: Callable[[Store], Any], default: Any) -> Any:
        """``fn(store)``; ``default`` (one warning, the store released) when the store is closed or cannot
        be read."""
        store = self._store
        if store is None:
            return default
        try:
            return fn(store)
        except BaseException as exc:  # also Ctrl-C while reading a large cache: do not leave SQLite open
            self.close()
            if not isinstance(exc, STORE_ERRORS):
                raise
            self._warn(
                f"rerankpd: the {self.what} cache at {self.directory} could not be read ({exc}); {self.doing} without it"
            )
            return default

    def report(self) -> None:
        """Warn once, at the user's line, when new results are not being kept (call it in the user's thread
        after a write)."""
        store = self._store
        if store is not None and store.failure is not None:
            self._warn(
                f"rerankpd: the {self.what} cache at {self.directory} could not be written ({store.failure}); "
                f"{self.doing} goes on and cached {self.what}s are still read, but new ones will not be kept"
            )

    def close(self) -> None:
        """Release the store (when this cache opened it); everything handed over is already committed."""
        store, self._store = self._store, None
        if store is not None and self._owned:
            store.close()

    def _warn(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            warn_user(message)

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _check_directory(directory: str, doing: str, error: type = CacheError) -> str:
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise error(f"cannot {doing} the cache at {directory}: it is a file, not a directory; pass a directory")
    return directory


def cache_info(directory: Any = None) -> dict:
    """Where the cache is, what it holds by kind, how many bytes it takes and its limit. Creates nothing.

    ``entries`` counts the entries that have not expired; ``kinds`` splits them into ``scores`` (blocks:
    one per finished request and query, or one per query once a rerun has compacted them), ``embeddings``
    and LLM ``windows``; ``scores`` is how many scores the blocks hold (a pair scored twice counts twice).
    A directory that does not exist holds nothing. Raises :class:`rerankpd.errors.CacheError` when the path
    is a file or the cache cannot be read.

    Examples
    --------
    >>> import rerankpd
    >>> sorted(rerankpd.cache_info())
    ['directory', 'entries', 'kinds', 'scores', 'size_bytes', 'size_limit']
    """
    settings = settings_for(CacheSettings(directory))
    directory = _check_directory(settings.directory, "read")
    kinds, rows = dict.fromkeys(KINDS.values(), 0), []
    if os.path.isfile(os.path.join(directory, STORE_DIR, DBNAME)):
        try:
            with contextlib.closing(Store(settings, read_only=True)) as store:
                # one statement over diskcache's table: the live entries by their key's first byte, and the
                # scores their blocks hold (a block's key is 21 bytes, its value 24 bytes per score)
                rows = store.cache._sql(
                    "SELECT CAST(substr(key, 1, 1) AS BLOB), count(*), sum(CASE WHEN length(key) = 21 THEN length(value) / 24 "
                    "ELSE 0 END) FROM Cache WHERE raw = 1 AND (expire_time IS NULL OR expire_time > ?) GROUP BY 1",
                    (time.time(),),
                ).fetchall()
        except STORE_ERRORS as exc:
            raise CacheError(f"cannot read the cache at {directory}: {exc}") from exc
    for prefix, count, _ in rows:
        kinds[KINDS.get(bytes(prefix), "other")] = count
    return {
        "directory": directory,
        "entries": sum(count for _, count, _ in rows),
        "kinds": {kind: kinds[kind] for kind in KINDS.values()},
        "scores": sum(scores for prefix, _, scores in rows if bytes(prefix) == SCORES),
        "size_bytes": sum(os.lstat(os.path.join(d, f)).st_size for d, _, names in os.walk(directory) for f in names),
        "size_limit": settings.size_limit,
    }


def clear_cache(directory: Any = None, *, reranker: Any = None) -> int:
    """Remove every cache entry (scores, embeddings, LLM windows; and the files of earlier formats), or
    with ``reranker=`` (a name, or a reranker) only that reranker's entries; returns how many were removed.

    Raises :class:`rerankpd.errors.CacheError` when the path is a file or the cache cannot be written
    (a read-only directory, say).
    """
    settings = settings_for(CacheSettings(directory))
    directory = _check_directory(settings.directory, "clear")
    tag = getattr(reranker, "name", reranker)
    if tag is not None and not isinstance(tag, str):
        raise ValueError(f"reranker must be a reranker's name or a reranker, got {reranker!r}")
    if not os.path.isdir(directory):
        return 0
    removed = 0
    try:
        if os.path.isfile(os.path.join(directory, STORE_DIR, DBNAME)):
            with contextlib.closing(Store(settings)) as store:
                if store.read_only:
                    raise CacheError(f"cannot clear the cache at {directory}: {READ_ONLY}")
                removed += store.cache.evict(tag, retry=True) if tag is not None else store.cache.clear(retry=True)
        if tag is None:
            _remove_legacy(directory)
    except STORE_ERRORS as exc:
        raise CacheError(f"cannot clear the cache at {directory}: {exc}") from exc
    logger.info("cleared %d cache entries from %s", removed, directory)
    return removed


def _remove_legacy(directory: str) -> None:
    """Remove the files of earlier cache formats (never read: their entries are not counted)."""
    patterns = [name + suffix for name in LEGACY_FILES for suffix in ("", "-wal", "-shm")] + list(LEGACY_PATTERNS)
    for pattern in patterns:
        for path in glob.glob(os.path.join(glob.escape(directory), pattern)):
            os.remove(path)
