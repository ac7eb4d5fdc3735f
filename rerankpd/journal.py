"""A run's journal: finished score blocks appended to a private file as they come, moved into the table at the end.

Committing each finished request to SQLite costs a transaction (locks, WAL frames, page reads: about a
hundred microseconds of CPU), which against a fast server is a few percent of the run. Appending the same
row to a file is one ``write``. So a writable score cache (:class:`rerankpd.cache.RunCache`) writes through
a :class:`JournalWriter`:

- each finished request's rows go to the run's own journal file (``journal-<random>.scores`` beside the
  table, 0600) in one ``os.write``, before the thread that ran it takes the next request: the kernel has
  them once the call returns, so a killed process loses at most its requests in flight;
- the run holds an exclusive ``flock`` on its journal for as long as it writes it;
- when the run ends (done, error or Ctrl-C) its journal goes into the table in one transaction and is
  removed;
- a journal whose lock can be taken belongs to a process that died: the next run that opens the cache for
  writing moves it into the table first (:func:`recover`), so its scores are served, not paid again.

A record is framed (magic, length, CRC-32), and a journal is read up to its first record that is cut short
or does not check out (a process killed in the middle of a write, a tampered file); what it holds is only
ever a table row: a key and a BLOB of hashes and scores, never code or a path. Moving a journal twice (a
race between two processes) writes the same rows twice, which changes nothing: a row's key is unique.

Needs ``fcntl.flock`` (every POSIX system); elsewhere :func:`supported` is False and the cache commits each
request to SQLite itself.
"""
from __future__ import annotations

import glob
import logging
import os
import sqlite3
import struct
import threading
import zlib
from typing import Any, Callable, Iterable

from .sqlite_store import SQLiteTable, TableWriter

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["JournalWriter", "recover", "supported"]

logger = logging.getLogger(__name__)

#: Journal files in a cache directory (the random part keeps two runs apart).
PATTERN = "journal-*.scores"
_MAGIC = b"RPJ1"
_HEADER = struct.Struct("<4sII")  # magic, key length, value length; then key, value, CRC-32
_CRC = struct.Struct("<I")


def supported() -> bool:
    """Whether journals can be used here (advisory file locks exist)."""
    return fcntl is not None


def frame(key: bytes, value: bytes) -> bytes:
    """One row as a journal record."""
    body = _HEADER.pack(_MAGIC, len(key), len(value)) + key + value
    return body + _CRC.pack(zlib.crc32(body))


def read_rows(data: bytes) -> list[tuple[bytes, bytes]]:
    """The rows of a journal's bytes, up to the first record that is cut short or does not check out."""
    rows, at = [], 0
    while at + _HEADER.size <= len(data):
        magic, key_length, value_length = _HEADER.unpack_from(data, at)
        end = at + _HEADER.size + key_length + value_length
        if magic != _MAGIC or end + _CRC.size > len(data):
            break
        if _CRC.unpack_from(data, end)[0] != zlib.crc32(data[at:end]):
            break
        key_at = at + _HEADER.size
        rows.append((data[key_at:key_at + key_length], data[key_at + key_length:end]))
        at = end + _CRC.size
    if at < len(data):
        logger.info("a score journal ends in %d bytes that are not a whole record; they are ignored", len(data) - at)
    return rows


def _read(fd: int) -> bytes:
    chunks = []
    os.lseek(fd, 0, os.SEEK_SET)
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _move(fd: int, path: str, table: SQLiteTable) -> int:
    """Write a locked journal's rows into ``table`` and remove it; returns how many rows it held."""
    rows = read_rows(_read(fd))
    if rows:
        table.put_many(rows)
    try:
        os.remove(path)
    except FileNotFoundError:  # another process moved it first (the rows are the same)
        pass
    return len(rows)


def recover(directory: str, table: SQLiteTable) -> int:
    """Move every journal of ``directory`` that no live run holds into ``table``; returns the rows moved.

    Best effort: a journal that cannot be read or moved now is left for a later run.
    """
    if fcntl is None:
        return 0
    moved = 0
    for path in sorted(glob.glob(os.path.join(glob.escape(directory), PATTERN))):
        try:
            fd = os.open(path, os.O_RDWR | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # a live run's
            os.close(fd)
            continue
        try:
            moved += _move(fd, path, table)
        except (OSError, sqlite3.Error) as exc:
            logger.info("could not move the score journal %s into the cache yet: %s", path, exc)
        finally:
            os.close(fd)
    if moved:
        logger.info("moved %d score blocks left by an interrupted run into the cache", moved)
    return moved


class JournalWriter(TableWriter):
    """Appends each item's rows to this run's journal (one ``os.write``, in the calling thread); :meth:`close`
    moves the journal into the table. Same failure policy as :class:`~rerankpd.sqlite_store.TableWriter`:
    the first failure stops writing and :attr:`failure` says why in a sentence.

    The journal file is made at the first write (a run that stores nothing leaves no file).
    """

    def __init__(self, table: SQLiteTable, prepare: Callable[[Any], Iterable[tuple[bytes, Any]]]) -> None:
        super().__init__(table, prepare)
        self.path = os.path.join(os.path.dirname(table.path), PATTERN.replace("*", os.urandom(12).hex()))
        self._fd: int | None = None
        self._closed = False
        self._opening = threading.Lock()

    def write(self, item: Any) -> None:
        """Append ``item``'s rows to the journal before returning (nothing once writing has failed or the
        writer is closed). Several threads may write at once: each record is one append."""
        if self.failure is not None or self._closed:
            return
        rows = self._rows([item])
        if not rows or self.failure is not None:
            return
        try:
            fd = self._fd if self._fd is not None else self._open()
            if fd is None:
                return
            record = b"".join(frame(key, value) for key, value in rows)
            written = os.write(fd, record)
            if written != len(record):
                raise OSError(f"only {written} of {len(record)} bytes could be written")
        except OSError as exc:
            self._fail(str(exc))

    def close(self, timeout: float | None = None) -> bool:
        """Move the journal into the table (one transaction) and remove it. When that fails the journal is
        left for the next run to move (and :attr:`failure` says why)."""
        with self._opening:
            self._closed = True
            fd, self._fd = self._fd, None
        if fd is None:
            return True
        try:
            rows = read_rows(_read(fd))
            if rows:
                self._write(rows)  # the table's failure policy: retried once, then recorded
            if self.failure is None:
                os.remove(self.path)
        except OSError as exc:
            self._fail(str(exc))
        finally:
            os.close(fd)  # releases the lock: from now on a journal left here is an orphan
        return True

    def _open(self) -> int | None:
        """The journal, made and locked at the first write (None once closed)."""
        with self._opening:
            if self._fd is not None or self._closed:
                return self._fd
            self.table._check_file()  # the cache was removed or replaced: say so now, not at the end
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND | getattr(os, "O_CLOEXEC", 0),
                         0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                os.remove(self.path)
                raise
            self._fd = fd
            return fd
