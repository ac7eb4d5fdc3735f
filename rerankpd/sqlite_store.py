"""A best-effort key -> value table in one SQLite file of a private directory, written by one background thread.

The storage under rerankpd's caches: the score cache (:mod:`rerankpd.cache`, REAL values) and the
embedding cache (:mod:`rerankpd.embedding_cache`, BLOB values) are each one :class:`SQLiteTable`. It is the
stdlib :mod:`sqlite3` and nothing else:

- one table ``(key BLOB PRIMARY KEY, value <type>) WITHOUT ROWID``: keys are fixed-size digests, values
  are plain SQL values (no pickle, no file references), so a tampered file can give a wrong-typed value
  (which the table's ``valid`` condition turns into a miss) but never runs code or reads another file;
- WAL journal and a busy timeout, so several processes share one directory (readers never wait for the
  writer);
- the directory is created 0700 and the file 0600 (private to the user);
- opened read-write when it can be, else read-only: a cache on a read-only directory, a read-only mount or
  a full disk still serves what it holds;
- reads go in large sorted batches (one ``IN (...)`` query per batch);
- writes go through a :class:`TableWriter` (committed in the caller's thread before it goes on: the score
  cache, one short row per finished request) or a :class:`WriteBehind` (one writer thread that commits
  whatever has queued in one transaction: the embedding cache); both share one failure policy, and a
  transaction an interrupt cuts short is rolled back (or, left open, rolled back when the connection is
  reopened).

Nothing here raises into a run: a writer records the first failure as a sentence the owner shows once.

Examples
--------
>>> import tempfile
>>> table = SQLiteTable.open(tempfile.mkdtemp(), "demo-v1.sqlite3", "demo", "REAL")
>>> table.put_many([(b"k" * 32, 0.5)])
>>> table.get_many([b"k" * 32, b"x" * 32])
{b'kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk': 0.5}
>>> table.close()
"""
from __future__ import annotations

import logging
import os
import queue
import sqlite3
import threading
import time
from typing import Any, Callable, Iterable, Sequence

__all__ = ["CLOSE_TIMEOUT", "SQLiteTable", "TableWriter", "WriteBehind", "close_writer", "flush_writer", "hand_over",
           "is_busy", "report_failure"]

logger = logging.getLogger(__name__)

#: Seconds a statement waits for another process's lock before it fails as busy.
BUSY_TIMEOUT = 10.0
#: How long opening a cache waits out other connections of the same file before it gives up on writing.
OPEN_RETRY_SECONDS = 2.0

#: Keys per read query (sorted, so each query walks one stretch of the B-tree); SQLite before 3.32 allows
#: 999 bound variables per statement, later versions 32766.
READ_CHUNK = 30_000 if sqlite3.sqlite_version_info >= (3, 32) else 999

#: Rows per statement that binds two variables per row (an INSERT of (key, value), a read of key ranges).
ROWS_PER_STATEMENT = READ_CHUNK // 2

#: SQLite page cache per connection, in KiB (negative cache_size is KiB), and no memory map: a large
#: cached rerun's peak memory stays a small multiple of the frame's own.
_CACHE_KIB = 1024


def is_busy(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite saying another connection holds the lock (SQLITE_BUSY / SQLITE_LOCKED)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)


class SQLiteTable:
    """One key -> value table in ``directory/filename``.

    Use :meth:`open`; ``read_only`` says whether it could only be opened for reading.
    """

    def __init__(self, path: str, table: str, con: sqlite3.Connection, read_only: bool,
                 valid: str | None = None) -> None:
        self.path = path
        self.table = table
        self.read_only = read_only
        self._con: sqlite3.Connection | None = con
        self._lock = threading.Lock()
        self._identity = _file_identity(path)
        self._valid = f"({valid}) AND " if valid else ""
        self._select = f"SELECT key, value FROM {table} WHERE {self._valid}key IN "
        self._insert = f"INSERT OR REPLACE INTO {table} (key, value) VALUES "

    def __repr__(self) -> str:
        return f"SQLiteTable({self.path!r}, {self.table!r}{', read-only' if self.read_only else ''})"

    @classmethod
    def open(cls, directory: str, filename: str, table: str, value_type: str, *, valid: str | None = None,
             create: bool = True, read_only: bool = False) -> "SQLiteTable":
        """Open the table, creating directory, file and table when ``create``; read-only when it cannot be
        written (or when asked: ``read_only`` creates nothing and never writes).

        ``valid`` is an SQL condition on ``value`` that a row must meet to be read at all (the rest are
        misses), e.g. ``"typeof(value) = 'real'"``. Raises OSError or :class:`sqlite3.Error` when the
        table can be neither written nor read.
        """
        path = os.path.join(directory, filename)
        if not read_only and os.path.exists(path) and not _writable(directory, path):
            read_only = True  # a read-only directory, file or mount (access() sees a read-only mount as root)
        if read_only:
            return cls(path, table, _open_read_only(path, table), read_only=True, valid=valid)
        if create:
            try:
                os.makedirs(directory, mode=0o700, exist_ok=True)
            except OSError:
                if not os.path.isdir(directory):
                    raise
        try:
            if create:
                _create_private(path)
            con = _open_writable(path, "rwc" if create else "rw", table, value_type)
            return cls(path, table, con, read_only=False, valid=valid)
        except (OSError, sqlite3.Error) as exc:
            if not os.path.exists(path):
                raise
            logger.info("opening %s read-only: %s", path, exc)
        return cls(path, table, _open_read_only(path, table), read_only=True, valid=valid)

    # ------------------------------------------------------------------------------------- reading
    def get_many(self, keys: Sequence[bytes]) -> dict[bytes, Any]:
        """The values of those ``keys`` that are present (and valid), read in sorted batches."""
        found: dict[bytes, Any] = {}
        ordered = sorted(set(keys))
        with self._lock:
            con = self._connection()
            for start in range(0, len(ordered), READ_CHUNK):
                chunk = ordered[start:start + READ_CHUNK]
                found.update(con.execute(self._select + _placeholders(len(chunk)), chunk).fetchall())
        return found

    def scan_prefixes(self, prefixes: Sequence[bytes]) -> list[tuple[bytes, Any]]:
        """The valid rows whose key starts with one of ``prefixes`` (all of one length), in no set order.

        One statement per :data:`ROWS_PER_STATEMENT` prefixes: each prefix is a range of the primary key,
        and SQLite seeks each range in turn.
        """
        found: list[tuple[bytes, Any]] = []
        step = ROWS_PER_STATEMENT
        with self._lock:
            con = self._connection()
            for start in range(0, len(prefixes), step):
                ranges = [(p, _prefix_end(p)) for p in prefixes[start:start + step]]
                bounded = [r for r in ranges if r[1] is not None]
                if bounded:
                    values = ",".join(["(?,?)"] * len(bounded))
                    found.extend(con.execute(
                        f"WITH wanted(low, high) AS (VALUES {values}) SELECT t.key, t.value FROM wanted "
                        f"CROSS JOIN {self.table} AS t WHERE {self._valid}t.key >= wanted.low AND t.key < wanted.high",
                        [bound for r in bounded for bound in r]).fetchall())
                for low, _ in (r for r in ranges if r[1] is None):  # a prefix of only 0xFF bytes
                    found.extend(con.execute(f"SELECT key, value FROM {self.table} WHERE {self._valid}key >= ?",
                                             (low,)).fetchall())
        return found

    def value_bytes(self) -> int:
        """Total length of the valid values (for BLOB values: how many bytes of data the table holds)."""
        with self._lock:
            return self._connection().execute(
                f"SELECT COALESCE(SUM(length(value)), 0) FROM {self.table} WHERE {self._valid}1").fetchone()[0]

    def is_empty(self) -> bool:
        with self._lock:
            return self._connection().execute(f"SELECT 1 FROM {self.table} LIMIT 1").fetchone() is None

    def __len__(self) -> int:
        with self._lock:
            return self._connection().execute(f"SELECT COUNT(*) FROM {self.table}").fetchone()[0]

    # ------------------------------------------------------------------------------------- writing
    def put_many(self, rows: Iterable[tuple[bytes, Any]]) -> None:
        """Write rows in one transaction (rolled back, never left open, if anything fails).

        Up to :data:`ROWS_PER_STATEMENT` rows go in one multi-row INSERT, a transaction of its own: one call
        into SQLite, so a writer gives up the GIL (and waits to take it back) once, not once per row and per
        BEGIN and COMMIT.
        """
        rows = rows if isinstance(rows, list) else list(rows)
        if not rows:
            return
        with self._lock:
            con = self._connection()
            self._check_file()
            if con.in_transaction:  # left open by an interrupted write: undo it, or it would swallow this one
                con.execute("ROLLBACK")
            if len(rows) <= ROWS_PER_STATEMENT:
                self._insert_rows(con, rows)
                return
            try:
                con.execute("BEGIN IMMEDIATE")
                for start in range(0, len(rows), ROWS_PER_STATEMENT):
                    self._insert_rows(con, rows[start:start + ROWS_PER_STATEMENT])
                con.execute("COMMIT")
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise

    def _insert_rows(self, con: sqlite3.Connection, rows: list[tuple[bytes, Any]]) -> None:
        """One INSERT of up to :data:`ROWS_PER_STATEMENT` rows."""
        con.execute(self._insert + ",".join(["(?,?)"] * len(rows)), [v for row in rows for v in row])

    def clear(self) -> int:
        """Delete every row; returns how many there were."""
        with self._lock:
            con = self._connection()
            con.execute("BEGIN IMMEDIATE")
            try:
                removed = con.execute(f"DELETE FROM {self.table}").rowcount
                con.execute("COMMIT")
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise
        return removed

    def reopen(self) -> None:
        """Drop the connection (rolling back anything open) and open a fresh one on the same file; a
        closed table stays closed."""
        with self._lock:
            con = self._connection()  # raises when closed
            try:
                if con.in_transaction:
                    con.execute("ROLLBACK")
            finally:
                con.close()
            self._con = _connect(self.path, "ro" if self.read_only else "rw")

    def _check_file(self) -> None:
        """Refuse to write when the file was deleted or replaced since it was opened (the writes would go to
        an unlinked file that nobody will ever read)."""
        if _file_identity(self.path) != self._identity:
            raise FileNotFoundError(f"{self.path} was removed or replaced during the run")

    def _connection(self) -> sqlite3.Connection:
        if self._con is None:
            raise sqlite3.ProgrammingError(f"{self.path} is closed")
        return self._con

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None


def _prefix_end(prefix: bytes) -> bytes | None:
    """The smallest string of ``len(prefix)`` bytes above every key starting with ``prefix`` (None: none)."""
    value = int.from_bytes(prefix, "big") + 1
    return value.to_bytes(len(prefix), "big") if value < 1 << (8 * len(prefix)) else None


def _writable(directory: str, path: str) -> bool:
    return os.access(directory, os.W_OK | os.X_OK) and os.access(path, os.W_OK)


def _placeholders(n: int) -> str:
    return "(" + ",".join("?" * n) + ")"


def _create_private(path: str) -> None:
    """Create ``path`` empty and readable by its owner only (0600) unless it exists: SQLite then makes its
    ``-wal`` and ``-shm`` files with the same mode. An empty file is a valid, empty database."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass


def _file_identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _connect(path: str, mode: str, immutable: bool = False) -> sqlite3.Connection:
    from urllib.parse import quote

    uri = f"file:{quote(os.path.abspath(path))}?mode={mode}" + ("&immutable=1" if immutable else "")
    con = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)
    try:
        con.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")
        con.execute("PRAGMA mmap_size = 0")
    except BaseException:
        con.close()
        raise
    return con


def _open_writable(path: str, mode: str, table: str, value_type: str) -> sqlite3.Connection:
    """Connect and set up the table, waiting out what other connections of the file are doing.

    Connections that open, set up (switch to WAL) or close (remove the ``-wal``/``-shm`` files) the same
    file at that moment can make this fail at once, without SQLite's busy handler being asked (seen with
    Dask partitions in threads: the cache was then taken for a read-only one and a rerun paid again).
    Those are waits, never a read-only cache: retry for up to :data:`OPEN_RETRY_SECONDS`. What says the
    file cannot be written (read-only, disk full) is raised at once.
    """
    deadline = time.monotonic() + OPEN_RETRY_SECONDS
    while True:
        con = None
        try:
            con = _connect(path, mode)
            _setup(con, table, value_type)
            return con
        except sqlite3.OperationalError as exc:
            if con is not None:
                con.close()
            text = str(exc).lower()
            final = any(word in text for word in ("readonly", "read-only", "full", "not a database"))
            if final or time.monotonic() >= deadline:
                raise
            time.sleep(0.02)
        except BaseException:
            if con is not None:
                con.close()
            raise


def _setup(con: sqlite3.Connection, table: str, value_type: str) -> None:
    # WAL first: a new file's table is then created by a WAL commit, which NORMAL does not fsync
    if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
        con.execute("PRAGMA journal_mode = WAL")
    con.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: a killed process loses no commit
    con.execute(f"CREATE TABLE IF NOT EXISTS {table} (key BLOB PRIMARY KEY, value {value_type}) WITHOUT ROWID")


def _open_read_only(path: str, table: str) -> sqlite3.Connection:
    """Open for reading. A WAL database in a directory we cannot write needs ``immutable`` when its
    ``-shm`` file is absent (SQLite cannot create it); nobody can be writing it then either."""
    last: BaseException | None = None
    for immutable in (False, True):
        try:
            con = _connect(path, "ro", immutable=immutable)
        except sqlite3.Error as exc:
            last = exc
            continue
        try:
            con.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchall()
            return con
        except sqlite3.Error as exc:
            con.close()
            last = exc
    assert last is not None
    raise last


_STOP = object()
_FLUSH = object()


#: Longest a cache waits for its writer to commit what it was handed (a flush, or the close at a run's end).
CLOSE_TIMEOUT = 120.0
#: Why nothing is written when a cache was opened read-only (no writer).
READ_ONLY = "it is read-only: a read-only directory or mount, or a full disk"


def hand_over(writer: "TableWriter | None", table: SQLiteTable | None, item: Any,
              report: Callable[[str], None]) -> None:
    """Give ``item`` to ``writer`` (a :class:`WriteBehind` queues it for its thread, a :class:`TableWriter`
    commits it before returning), then :func:`report_failure`. The one policy of both caches."""
    if writer is not None:
        writer.write(item)
    report_failure(writer, table, report)


def report_failure(writer: "TableWriter | None", table: SQLiteTable | None, report: Callable[[str], None]) -> None:
    """``report`` why what is handed to ``writer`` is not kept: the writer's failure, or ``table`` having
    been opened read-only (no writer)."""
    if writer is not None:
        if writer.failure is not None:
            report(writer.failure)
    elif table is not None:
        report(READ_ONLY)


def flush_writer(writer: "TableWriter | None", report: Callable[[str], None]) -> None:
    """Wait until everything handed to ``writer`` so far is committed; ``report`` a failure."""
    if writer is not None:
        writer.flush(CLOSE_TIMEOUT)
        if writer.failure is not None:
            report(writer.failure)


def close_writer(writer: "TableWriter | None", report: Callable[[str], None]) -> None:
    """Write what ``writer`` holds and stop it, waiting at most :data:`CLOSE_TIMEOUT`; ``report`` a failure."""
    if writer is None:
        return
    if not writer.close(CLOSE_TIMEOUT):
        report(f"its writer did not finish within {CLOSE_TIMEOUT:.0f}s")
    elif writer.failure is not None:
        report(writer.failure)


class TableWriter:
    """Writes items to a :class:`SQLiteTable` in the calling thread: :meth:`write` returns once committed.
    Several threads may write at once (the table serialises them).

    For a caller that must not go on before its rows are on disk, when a write is cheap (the score cache
    writes one row per finished request: handing it to a thread and waiting cost more than the write). The
    first failure stops writing (the rows are dropped, not retried forever); :attr:`failure` says what went
    wrong in a sentence.

    Parameters
    ----------
    table
        Where the rows go. Must not be read-only.
    prepare
        Called on each item; returns the rows to write. Lets the caller hand over whatever is cheapest to
        hand over (the score cache hands over pair numbers and scores).
    """

    def __init__(self, table: SQLiteTable, prepare: Callable[[Any], Iterable[tuple[bytes, Any]]]) -> None:
        self.table = table
        self.failure: str | None = None
        self.written = 0  # rows committed
        self.transactions = 0  # transactions committed
        self.busy_seconds = 0.0  # CPU seconds spent writing
        self._prepare = prepare

    def write(self, item: Any) -> None:
        """Prepare and commit ``item`` now (nothing once writing has failed)."""
        if self.failure is None:
            rows = self._rows([item])
            if rows and self.failure is None:
                self._write(rows)

    def flush(self, timeout: float | None = None) -> bool:
        """Everything written is already committed."""
        return True

    def close(self, timeout: float | None = None) -> bool:
        return True

    def _rows(self, items: list) -> list:
        rows: list = []
        for item in items:
            try:
                rows.extend(self._prepare(item))
            except Exception as exc:  # noqa: BLE001 - a bug here must not break the run
                self._fail(f"its rows could not be prepared ({type(exc).__name__}: {exc})")
                return []
        return rows

    def _write(self, rows: list) -> None:
        for attempt in (1, 2):
            try:
                started = time.thread_time()
                self.table.put_many(rows)
                self.busy_seconds += time.thread_time() - started
                self.written += len(rows)
                self.transactions += 1
                return
            except (OSError, sqlite3.Error) as exc:
                if is_busy(exc):
                    return self._fail(f"it is locked by another process ({exc})")
                if isinstance(exc, OSError) or attempt == 2:
                    return self._fail(str(exc))
                logger.info("cache write failed (%s); reopening %s and trying once more", exc, self.table.path)
                try:
                    self.table.reopen()  # a connection left in a bad state: roll back, reopen, write again
                except (OSError, sqlite3.Error) as reopen_exc:
                    return self._fail(str(reopen_exc))

    def _fail(self, reason: str) -> None:
        if self.failure is None:
            self.failure = reason
            logger.info("cache writes stopped: %s", reason)


class WriteBehind(TableWriter):
    """One writer thread in front of a :class:`SQLiteTable`: :meth:`write` hands an item over and returns
    at once.

    The thread takes everything queued, writes it in one transaction, and repeats; with a slow source each
    item is committed within milliseconds, with a fast one the transactions grow. Same failure policy as
    :class:`TableWriter`.
    """

    def __init__(self, table: SQLiteTable, prepare: Callable[[Any], Iterable[tuple[bytes, Any]]]) -> None:
        super().__init__(table, prepare)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()  # put() is one C call: safe under Ctrl-C
        self._thread = threading.Thread(target=self._loop, name="rerankpd-cache-writer", daemon=True)

    def write(self, item: Any) -> None:
        """Queue one item for writing (ignored once writing has failed); the thread starts at the first."""
        if self.failure is None:
            self._queue.put(item)
            if self._thread.ident is None:
                self._thread.start()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far is committed (or dropped after a failure); False on timeout."""
        if not self._thread.is_alive():
            return True
        done = threading.Event()
        self._queue.put((_FLUSH, done))
        return done.wait(timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Write what is queued, then stop the thread; False if it did not finish within ``timeout``."""
        if self._thread.ident is None:  # never started (or a Ctrl-C landed between queueing and starting)
            if self._queue.empty():
                return True
            self._thread.start()
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _loop(self) -> None:
        stop = False
        while not stop:
            items = [self._queue.get()]
            while True:  # take everything that has queued meanwhile: one transaction for all of it
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            waiters, data = [], []
            for item in items:
                if item is _STOP:
                    stop = True
                elif isinstance(item, tuple) and len(item) == 2 and item[0] is _FLUSH:
                    waiters.append(item[1])
                else:
                    data.append(item)
            if data and self.failure is None:
                rows = self._rows(data)
                if rows and self.failure is None:
                    self._write(rows)
            for event in waiters:
                event.set()
