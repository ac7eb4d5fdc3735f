"""A score store every Dask worker can reach: append-only Parquet files of (key, score) on an fsspec URL.

A cluster that spans machines has no common disk for the SQLite score cache (SQLite's locking is unsafe
on a network filesystem), so finished scores are also kept here: a directory on a shared filesystem
(``file:///mnt/shared/rerankpd``) or an object store prefix (``s3://bucket/prefix``, with ``s3fs``), read
and written through fsspec and pyarrow. Each scored partition appends one new Parquet file and never
touches another, so writers need no lock; a reader sees every file finished before it listed the
directory. A file appears whole: on a filesystem it is written under a dot-name and renamed, and an object
store publishes an upload only when it is complete.

Rows hold the score cache's key of a pair (a digest of the reranker's identity, the query and the text;
never the text itself, never an API key) and the score. Files live under one directory per reranker
identity and key format, so a cache whose keys change starts a fresh directory instead of missing in an
old one.

Examples
--------
>>> import tempfile, json
>>> store = SharedScoreStore("file://" + tempfile.mkdtemp(), json.dumps({"provider": "demo"}))
>>> keys = store.keys(["q"], ["a", "b"], [0, 0], [0, 1])
>>> store.append({keys[0]: 0.5})
1
>>> list(store.lookup(keys).values())
[0.5]
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import posixpath
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from ..core.identity import identity_digest
from ..errors import ConfigurationError, MissingDependencyError, warn_user
from ..redact import mask_url, scrub, url_secrets
from .scores import ScoreCache
from .store import STORE_ERRORS, CacheSettings, settings_for

__all__ = ["SharedScoreStore", "check_url", "compact", "pair_keys", "seeded_local_cache"]

logger = logging.getLogger(__name__)

#: A fixed pair whose key names a store's directory: it changes with the identity and the key function.
_NAMESPACE_PAIR = ("rerankpd shared score store", "namespace")

#: What a store or cache that cannot be used raises (pyarrow's errors are OSError or ValueError subclasses).
_UNREADABLE = (ValueError, *STORE_ERRORS)


def pair_keys(
    identity: str, queries: Sequence[str], texts: Sequence[str], pair_group: Iterable[int], pair_text: Iterable[int]
) -> list:
    """The local score cache's key of each pair under a reranker identity (canonical JSON text).

    The one place that knows how the score cache derives keys (:meth:`rerankpd.cache.ScoreCache.keys` over
    the SHA-256 of the identity, as :class:`rerankpd.cache.scores.RunCache` does), so the shared store and the
    worker's local cache always agree. Keys are ``str`` or ``bytes``, whatever the cache uses.
    """
    return ScoreCache.keys(identity_digest(identity), queries, texts, pair_group, pair_text)


def check_url(url: Any) -> str:
    """``url`` if fsspec can open it here; else a :class:`~rerankpd.errors.ConfigurationError` naming it.

    Only the protocol is checked (no connection is made): a missing ``s3fs`` is reported on the client
    rather than on every worker.
    """
    if not isinstance(url, str) or not url.strip():
        raise ConfigurationError(
            f"shared_cache must be a URL or path string (file:///mnt/shared/rerankpd, s3://bucket/prefix), got {url!r}"
        )
    fsspec = _fsspec()
    protocol = fsspec.utils.get_protocol(url)
    shown = mask_url(url)
    try:
        fsspec.get_filesystem_class(protocol)
    except ValueError:
        raise ConfigurationError(f"shared_cache {shown!r}: fsspec knows no protocol {protocol!r}") from None
    except ImportError as exc:
        raise MissingDependencyError(
            f"shared_cache {shown!r} needs a package for {protocol}://: {scrub(str(exc), url_secrets(url))}"
        ) from None
    return url


def _fsspec():
    try:
        import fsspec
    except ImportError as exc:  # pragma: no cover - fsspec comes with dask
        raise MissingDependencyError("a shared score store needs fsspec: pip install 'rerankpd[dask]'") from exc
    return fsspec


class SharedScoreStore:
    """The shared scores of one reranker identity under ``url``.

    Parameters
    ----------
    url
        A directory or object store prefix fsspec understands; every worker must be able to reach it.
    identity
        The reranker's identity as canonical JSON text (:attr:`rerankpd.rerankers.base.RerankerSpec.identity`).
    """

    def __init__(self, url: str, identity: str) -> None:
        fsspec = _fsspec()
        self.url = url
        self.identity: str | None = identity  # None: a store opened by _over, identity unknown
        self.fs, root = fsspec.core.url_to_fs(url)
        sample = pair_keys(identity, [_NAMESPACE_PAIR[0]], [_NAMESPACE_PAIR[1]], [0], [0])[0]
        sample = sample.encode("ascii") if isinstance(sample, str) else bytes(sample)
        self.directory = posixpath.join(root.rstrip("/") or "/", hashlib.sha256(sample).hexdigest()[:32])

    @classmethod
    def _over(cls, url: str, fs: Any, directory: str) -> SharedScoreStore:
        """The store over an existing directory, identity unknown (for :func:`compact`, which needs none)."""
        store = cls.__new__(cls)
        store.url, store.identity, store.fs, store.directory = url, None, fs, directory
        return store

    @property
    def shown(self) -> str:
        """The URL as shown in messages and logs: a ``user:password@`` in it masked (``***:***@``)."""
        return mask_url(self.url)

    def _said(self, exc: BaseException) -> str:
        """An error's text without the URL's user name or password."""
        return scrub(str(exc), url_secrets(self.url))

    def __repr__(self) -> str:
        return f"SharedScoreStore({self.shown!r})"

    def keys(
        self, queries: Sequence[str], texts: Sequence[str], pair_group: Iterable[int], pair_text: Iterable[int]
    ) -> list:
        """:func:`pair_keys` under this store's identity."""
        assert self.identity is not None  # only a store opened with an identity makes keys
        return pair_keys(self.identity, queries, texts, pair_group, pair_text)

    def files(self) -> list[str]:
        """The finished Parquet files (a file being written has a dot-name and is not listed)."""
        try:
            names = self.fs.ls(self.directory, detail=False)
        except FileNotFoundError:
            return []
        return sorted(
            name for name in names if name.endswith(".parquet") and not posixpath.basename(name).startswith((".", "_"))
        )

    def lookup(self, keys: Sequence) -> dict:
        """The stored score of each of ``keys`` that the store holds (read with one pyarrow dataset scan);
        a row whose score is null or not finite (written by another tool) is not a score and is left out.

        Only the ``key`` and ``score`` columns are read, filtered to ``keys`` as they stream in. A file
        removed between listing and reading (by :func:`compact`) means one more listing, not a failure.
        """
        if not len(keys):
            return {}
        try:
            return self._lookup(keys)
        except FileNotFoundError:
            return self._lookup(keys)

    def _lookup(self, keys: Sequence) -> dict:
        files = self.files()
        if not files:
            return {}
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.dataset as ds

        wanted = pa.array(list(keys))
        dataset = ds.dataset(files, format="parquet", filesystem=self.fs)
        key_type = dataset.schema.field("key").type
        if key_type != wanted.type:  # e.g. large_binary written elsewhere: compare in the stored type
            wanted = wanted.cast(key_type)
        table = dataset.to_table(columns=["key", "score"], filter=pc.field("key").isin(wanted))
        found = {
            key: score
            for key, score in zip(table.column("key").to_pylist(), table.column("score").to_pylist())
            if isinstance(score, (int, float)) and math.isfinite(score)
        }  # a null or NaN: not a score
        if len(found) < table.num_rows:
            logger.warning(
                "shared store %s: %d stored rows have no usable score (null or not finite); those pairs "
                "are scored again",
                self.shown,
                table.num_rows - len(found),
            )
        logger.debug("shared store %s: %d of %d keys found in %d files", self.shown, len(found), len(keys), len(files))
        return found

    def append(self, scores: Mapping) -> int:
        """Write ``scores`` ({key: score}) as one new Parquet file; returns how many were written.

        On a filesystem the file is written under a dot-name and renamed, so readers never see half a file;
        an object store (s3, gcs, ...) makes an upload visible only when it is complete.
        """
        if not scores:
            return 0
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table(
            {
                "key": pa.array(list(scores.keys())),
                "score": pa.array([float(v) for v in scores.values()], type=pa.float64()),
            }
        )
        name = f"part-{uuid.uuid4().hex}.parquet"
        final = posixpath.join(self.directory, name)
        self.fs.makedirs(self.directory, exist_ok=True)
        if _renames_atomically(self.fs):
            temporary = posixpath.join(self.directory, "." + name + ".tmp")
            try:
                with self.fs.open(temporary, "wb") as out:
                    pq.write_table(table, out)
                self.fs.mv(temporary, final)
            except BaseException:
                _remove_quietly(self.fs, temporary)
                raise
        else:
            with self.fs.open(final, "wb") as out:
                pq.write_table(table, out)
        logger.debug("shared store %s: wrote %d scores to %s", self.shown, len(table), name)
        return len(table)


def compact(url: str) -> dict[str, int]:
    """Rewrite each reranker's files under ``url`` as one file, without duplicate keys.

    Every scored partition adds a file, so a store used for many runs holds many small ones, and every
    lookup opens them all. Compaction writes the scores of the files it listed into one new file (the last
    score of a key wins), then removes those files; a file appended meanwhile is kept. Readers that listed
    a removed file list again. Returns the number of scores kept, by directory.

    Examples
    --------
    >>> import tempfile, json
    >>> url = tempfile.mkdtemp()
    >>> store = SharedScoreStore(url, json.dumps({"provider": "demo"}))
    >>> key = store.keys(["q"], ["a"], [0], [0])[0]
    >>> store.append({key: 0.5}), store.append({key: 0.5})
    (1, 1)
    >>> list(compact(url).values()), len(store.files())
    ([1], 1)
    """
    import pyarrow.dataset as ds

    fs, root = _fsspec().core.url_to_fs(check_url(url))
    kept: dict[str, int] = {}
    try:
        directories = [entry["name"] for entry in fs.ls(root, detail=True) if entry["type"] == "directory"]
    except FileNotFoundError:
        return kept
    for directory in directories:
        store = SharedScoreStore._over(url, fs, directory)
        files = store.files()
        if len(files) < 2:
            continue
        frame = ds.dataset(files, format="parquet", filesystem=fs).to_table(columns=["key", "score"]).to_pandas()
        frame = frame.drop_duplicates("key", keep="last")
        kept[directory] = store.append(dict(zip(frame["key"].tolist(), frame["score"].tolist())))
        for path in files:
            _remove_quietly(fs, path)
        logger.info("shared store %s: %d files compacted into one of %d scores", directory, len(files), kept[directory])
    return kept


def _renames_atomically(fs) -> bool:
    """Whether ``fs`` is a filesystem (a rename is atomic) rather than an object store (a rename copies)."""
    protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    return bool({"file", "local"} & set(protocols))


def _remove_quietly(fs, path: str) -> None:
    try:
        fs.rm(path)
    except OSError:
        pass


@contextlib.contextmanager
def seeded_local_cache(store: SharedScoreStore, keys: Sequence, cache: Any) -> Iterator[Any]:
    """The ``cache=`` argument for one partition's pipeline run, with the shared store plugged in around it.

    Before the run, every score the shared store holds for ``keys`` (and the worker's local cache lacks) is
    written into the local cache, so the run finds it there and sends only the rest. After the run (also
    when it failed part-way), the scores of ``keys`` the shared store lacked and the local cache now holds
    are appended to the shared store as one file. ``cache=False`` uses a temporary local cache that is
    removed afterwards. The shared store is best effort like the local cache: a store that cannot be read
    or written warns once and the partition is scored all the same.
    """
    temporary = None
    if cache is False or cache is None:
        cache = temporary = tempfile.mkdtemp(prefix="rerankpd-partition-")
    directory = settings_for(cache)  # resolved once: the local cache read and written below
    try:
        try:
            shared = store.lookup(keys)
        except _UNREADABLE as exc:
            warn_user(
                f"rerankpd: the shared score store {store.shown} could not be read ({store._said(exc)}); "
                "scoring this partition without it"
            )
            yield cache
            return
        if shared:
            try:
                with ScoreCache(directory) as local:
                    held = local.get_many(list(shared))
                    local.set_many({key: score for key, score in shared.items() if key not in held})
            except _UNREADABLE as exc:
                warn_user(
                    f"rerankpd: the local score cache could not take the shared scores ({exc}); "
                    "scoring this partition without them"
                )
                yield cache
                return
        try:
            yield cache
        finally:
            _share_new_scores(store, directory, [key for key in keys if key not in shared])
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)


def _share_new_scores(store: SharedScoreStore, directory: CacheSettings | None, missing: list) -> None:
    """Append the scores of ``missing`` keys that the local cache now holds to the shared store."""
    if not missing:
        return
    try:
        local = ScoreCache(directory, read_only=True)
    except _UNREADABLE:  # no local cache to read back: the run kept nothing (and warned if it could not)
        return
    try:
        with local:
            scored = local.get_many(missing)
        store.append(scored)
    except _UNREADABLE as exc:
        warn_user(
            f"rerankpd: the shared score store {store.shown} could not be written ({store._said(exc)}); "
            "this partition's new scores are only in the worker's local cache"
        )
