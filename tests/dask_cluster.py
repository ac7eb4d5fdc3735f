"""A real ``distributed.LocalCluster`` with worker processes, for the Dask tests (bounded in time)."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

#: Seconds any one computation on the test cluster may take.
COMPUTE_TIMEOUT = 120


@contextlib.contextmanager
def local_cluster(worker_cache_root: str) -> Iterator[distributed.Client]:  # noqa: F821
    """Two worker processes (one thread each) started from an environment without keys or rerankpd settings.

    The workers copy the environment when they start; it is cleaned for that moment (so a developer's own
    key never reaches them) and restored afterwards. Each worker gets its own local cache directory under
    ``worker_cache_root``; :func:`set_worker_env` changes their environment later.
    """
    from distributed import Client, LocalCluster

    saved = dict(os.environ)
    for var in list(os.environ):
        if var.endswith("_API_KEY") or var.startswith("RERANKPD_") or var.endswith("_BASE_URL"):
            del os.environ[var]
    try:
        cluster = LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            host="127.0.0.1",
            silence_logs=logging.ERROR,
            memory_limit=0,
        )
    finally:
        os.environ.clear()
        os.environ.update(saved)
    try:
        with Client(cluster, timeout=COMPUTE_TIMEOUT) as client:
            client.wait_for_workers(2, timeout=COMPUTE_TIMEOUT)
            set_worker_caches(client, worker_cache_root)
            yield client
    finally:
        cluster.close(timeout=30)


def _worker_env(updates: dict, remove: tuple = (), dask_worker=None) -> str:
    """Runs on each worker: ``{name}`` in a value is replaced by a name unique to the worker."""
    tag = str(dask_worker.name if dask_worker is not None else os.getpid())
    for var in remove:
        os.environ.pop(var, None)
    os.environ.update({var: value.replace("{name}", tag) for var, value in updates.items()})
    return tag


def set_worker_env(client, updates: dict | None = None, remove: tuple = ()) -> dict:
    """Change every worker's environment (``{name}`` in a value becomes the worker's name)."""
    return client.run(_worker_env, dict(updates or {}), tuple(remove))


def set_worker_caches(client, root: str) -> dict:
    """Give each worker its own, new local cache directory ``root/worker-<name>``; returns them by worker."""
    set_worker_env(client, {"RERANKPD_CACHE_DIR": os.path.join(str(root), "worker-{name}")})
    return client.run(lambda: os.environ["RERANKPD_CACHE_DIR"])
