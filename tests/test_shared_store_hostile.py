"""The shared score store and the Dask path against hostile stores and URLs holding passwords."""

from __future__ import annotations

import json
import pathlib
import socket
import warnings

import dask.dataframe as dd
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import rerankpd
import rerankpd.dask as rdask
from rerankpd.cache.shared import SharedScoreStore, check_url, seeded_local_cache
from rerankpd.errors import ConfigurationError, MissingDependencyError
from rerankpd.rerankers.base import describe
from tests.conftest import API_KEY

QUERY = "how to prevent colds"
IDENTITY = json.dumps({"provider": "demo", "model": "m"}, sort_keys=True)
PASSWORD = "hunter2-canary-pw"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------ the store's faults
def test_null_scores_in_a_store_file_are_ignored_and_those_pairs_scored(tmp_path, monkeypatch, server):
    monkeypatch.setenv("DMXAPI_API_KEY", API_KEY)
    monkeypatch.setenv("DMXAPI_BASE_URL", server.url)
    df = pd.DataFrame({"text": ["colds", "flu shots", "stock prices"]})
    store = SharedScoreStore(tmp_path.as_uri(), describe(rerankpd.get_reranker("dmxapi")).identity)
    keys = store.keys([QUERY], df["text"].tolist(), [0, 0, 0], [0, 1, 2])
    pathlib.Path(store.directory).mkdir(parents=True)
    pq.write_table(
        pa.table({"key": pa.array(keys), "score": pa.array([7.0, None, float("nan")], pa.float64())}),
        pathlib.Path(store.directory, "part-nulls.parquet"),
    )
    assert store.lookup(keys) == {keys[0]: 7.0}
    out = rdask.with_scores(
        dd.from_pandas(df, npartitions=1), QUERY, reranker="dmxapi", cache=False, shared_cache=tmp_path.as_uri()
    ).compute(scheduler="sync")
    assert out["rerank_score"].iloc[0] == 7.0 and out["rerank_score"].notna().all()
    assert server.documents_received() == ["flu shots", "stock prices"]


def test_an_ftp_store_refusing_the_connection_warns_and_the_partition_is_scored(monkeypatch, server):
    monkeypatch.setenv("DMXAPI_API_KEY", API_KEY)
    monkeypatch.setenv("DMXAPI_BASE_URL", server.url)
    df = pd.DataFrame({"text": ["colds", "flu shots"]})
    url = f"ftp://127.0.0.1:{closed_port()}/scores"
    with pytest.warns(RuntimeWarning, match=r"shared score store ftp://127\.0\.0\.1:\d+/scores could not be"):
        out = rdask.with_scores(
            dd.from_pandas(df, npartitions=1), QUERY, reranker="dmxapi", cache=False, shared_cache=url
        ).compute(scheduler="sync")
    assert out["rerank_score"].notna().all() and len(server.requests) == 1


# ------------------------------------------------------------------------------------ passwords in URLs
def test_a_password_in_the_store_url_never_shows():
    with pytest.raises(MissingDependencyError) as info:
        check_url(f"sftp://me:{PASSWORD}@files.example.com/rerankpd")
    assert PASSWORD not in str(info.value) and "sftp://***:***@files.example.com/rerankpd" in str(info.value)
    store = SharedScoreStore(f"memory://me:{PASSWORD}@bucket/scores", IDENTITY)
    assert PASSWORD not in repr(store) and "***:***@" in repr(store)


def test_the_store_warnings_mask_the_password(tmp_path):
    url = f"memory://me:{PASSWORD}@bucket/scores"
    store = SharedScoreStore(url, IDENTITY)
    keys = store.keys([QUERY], ["a"], [0], [0])
    store.fs.makedirs(store.directory, exist_ok=True)
    with store.fs.open(store.directory + "/part-broken.parquet", "wb") as out:
        out.write(b"not parquet")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with seeded_local_cache(store, keys, False):
            pass
    assert caught and all(PASSWORD not in str(w.message) for w in caught)
    assert any("could not be read" in str(w.message) and "***:***@" in str(w.message) for w in caught)


def test_credentials_that_would_enter_the_task_graph_are_refused(tmp_path):
    ddf = dd.from_pandas(pd.DataFrame({"text": ["colds"]}), npartitions=1)
    with pytest.raises(ConfigurationError) as info:
        rdask.with_scores(
            ddf, QUERY, reranker="dmxapi", reranker_options={"base_url": f"https://me:{PASSWORD}@rerank.example.com/v1"}
        )
    message = str(info.value)
    assert PASSWORD not in message and "***:***@" in message and "DMXAPI_BASE_URL" in message
    with pytest.raises(ConfigurationError) as info:
        rdask.with_scores(ddf, QUERY, reranker="dmxapi", shared_cache=f"ftp://me:{PASSWORD}@127.0.0.1/scores")
    message = str(info.value)
    assert PASSWORD not in message and "***:***@" in message and "FSSPEC_FTP_PASSWORD" in message
