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
from rerankpd.errors import ConfigurationError, MissingDependencyError
from rerankpd.rerankers.base import describe
from rerankpd.shared_store import SharedScoreStore, check_url, seeded_local_cache
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
    pq.write_table(pa.table({"key": pa.array(keys), "score": pa.array([7.0, None, float("nan")], pa.float64())}),
                   pathlib.Path(store.directory, "part-nulls.parquet"))
    assert store.lookup(keys) == {keys[0]: 7.0}
    out = rdask.with_scores(dd.from_pandas(df, npartitions=1), QUERY, reranker="dmxapi", cache=False,
                            shared_cache=tmp_path.as_uri()).compute(scheduler="sync")
    assert out["rerank_score"].iloc[0] == 7.0 and out["rerank_score"].notna().all()
    assert server.documents_received() == ["flu shots", "stock prices"]


def test_an_ftp_store_refusing_the_connection_warns_and_the_partition_is_scored(monkeypatch, server):
    monkeypatch.setenv("DMXAPI_API_KEY", API_KEY)
    monkeypatch.setenv("DMXAPI_BASE_URL", server.url)
    df = pd.DataFrame({"text": ["colds", "flu shots"]})
    url = f"ftp://127.0.0.1:{closed_port()}/scores"
    with pytest.warns(RuntimeWarning, match=r"shared score store ftp://127\.0\.0\.1:\d+/scores could not be"):
        out = rdask.with_scores(dd.from_pandas(df, npartitions=1), QUERY, reranker="dmxapi", cache=False,
                                shared_cache=url).compute(scheduler="sync")
    assert out["rerank_score"].notna().all() and len(server.requests) == 1
