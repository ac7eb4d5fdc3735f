"""rerankpd.dask: partitions scored in parallel give exactly what one pandas call gives."""

from __future__ import annotations

import dask.dataframe as dd
import pandas as pd
import pytest

import rerankpd
import rerankpd.dask as rdask
from rerankpd import errors
from rerankpd.testing import LoopbackRerankServer
from tests.conftest import API_KEY


def assert_same_ranking(got, want):
    """Same rows in the same order with the same scores and ranks (dask may store strings as arrow)."""
    assert got.index.tolist() == want.index.tolist()
    assert list(got.columns) == list(want.columns)
    # e5 computes in float32: a score may differ in the 7th digit with the batch it was embedded in
    assert got["rerank_score"].tolist() == pytest.approx(want["rerank_score"].tolist(), rel=1e-5)
    assert got["rerank_rank"].tolist() == want["rerank_rank"].tolist()
    assert str(got["rerank_rank"].dtype) == "Int64" and got["rerank_score"].dtype == "float64"
    assert got["text"].tolist() == want["text"].tolist()


@pytest.fixture
def frame():
    texts = [f"passage {i} about {'colds' if i % 3 else 'flu shots'} and hand washing" for i in range(60)]
    texts[5] = None
    return pd.DataFrame(
        {"text": texts, "q": ["prevent colds", "flu shots"] * 30, "id": range(60)}, index=[f"r{i}" for i in range(60)]
    )


def test_top_n_matches_pandas(frame):
    ddf = dd.from_pandas(frame, npartitions=4, sort=False)
    got = rdask.top_n(ddf, "how to prevent colds", n=5, reranker="e5", cache=False)
    want = frame.rerank("how to prevent colds", reranker="e5", top_n=5, cache=False, progress=False)
    assert_same_ranking(got, want)


def test_top_n_per_query_matches_pandas(frame):
    ddf = dd.from_pandas(frame, npartitions=3, sort=False)
    got = rdask.top_n(ddf, query_column="q", n=3, reranker="e5", cache=False)
    want = frame.rerank(query_column="q", reranker="e5", top_n=3, cache=False, progress=False)
    assert_same_ranking(got, want)
    assert got["q"].tolist() == want["q"].tolist()


def test_with_scores_is_lazy_and_uses_worker_env(frame, monkeypatch, tmp_path, server):
    monkeypatch.setenv("DMXAPI_API_KEY", API_KEY)
    monkeypatch.setenv("DMXAPI_BASE_URL", server.url)
    lazy = rdask.with_scores(
        dd.from_pandas(frame, npartitions=4, sort=False),
        "colds",
        reranker="dmxapi",
        reranker_options={"batch_size": 8},
        cache=tmp_path,
    )
    assert len(server.requests) == 0
    scored = lazy.compute()
    assert len(server.requests) > 0
    want = frame.rerank.scores(
        "colds", reranker=rerankpd.get_reranker("dmxapi", base_url=server.url), cache=False, progress=False
    )
    assert scored.index.tolist() == want.index.tolist()
    assert scored["rerank_score"].tolist() == pytest.approx(want.tolist(), nan_ok=True)
    server.reset()
    lazy.compute()  # every pair now comes from the shared cache
    assert len(server.requests) == 0


def test_refuses_key_in_options_and_bm25(frame):
    ddf = dd.from_pandas(frame, npartitions=2, sort=False)
    with pytest.raises(errors.ConfigurationError, match="task graph"):
        rdask.with_scores(ddf, "q", reranker="dmxapi", reranker_options={"api_key": "sk-x"})
    with pytest.raises(errors.ConfigurationError, match="cannot be split across partitions"):
        rdask.with_scores(ddf, "q", reranker="bm25")
    with pytest.raises(ValueError, match="name the reranker"):
        rdask.with_scores(ddf, "q", reranker=rerankpd.get_reranker("e5"))
    with pytest.raises(KeyError, match="body"):
        rdask.with_scores(ddf, "q", column="body", reranker="e5")
    with pytest.raises(ValueError, match="n must be"):
        rdask.top_n(ddf, "q", n=0, reranker="e5")


def test_errors_coerce_on_workers(frame, monkeypatch):
    with LoopbackRerankServer(api_key=API_KEY) as srv:
        monkeypatch.setenv("DMXAPI_API_KEY", API_KEY)
        monkeypatch.setenv("DMXAPI_BASE_URL", srv.url)
        srv.fail_next("status", status=400, message="too long")
        out = rdask.with_scores(
            dd.from_pandas(frame, npartitions=1, sort=False),
            "colds",
            reranker="dmxapi",
            reranker_options={"batch_size": 100},
            cache=False,
            errors="coerce",
        ).compute()
    assert out["rerank_score"].isna().all()
    assert out["rerank_error"].dropna().str.contains("too long").all()


def test_query_order_is_first_appearance_in_the_whole_input():
    # Query "a" appears first (row 0, no text), but all its scored rows sit in the last partition.
    df = pd.DataFrame(
        {
            "q": ["a"] + ["b"] * 5 + ["a"] * 5,
            "text": [None] + [f"b text {i}" for i in range(5)] + [f"a text {i}" for i in range(5)],
        }
    )
    got = rdask.top_n(dd.from_pandas(df, npartitions=3, sort=False), query_column="q", n=2, reranker="e5", cache=False)
    want = df.rerank(query_column="q", top_n=2, reranker="e5", cache=False, progress=False)
    assert want["q"].tolist() == ["a", "a", "b", "b"]
    assert_same_ranking(got, want)


# ------------------------------------------------------------------ a real cluster of worker processes
@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from tests.dask_cluster import local_cluster

    with local_cluster(str(tmp_path_factory.mktemp("workers"))) as client:
        yield client


@pytest.mark.timeout(300)
def test_key_set_in_the_client_after_the_cluster_started_is_not_seen_and_the_error_says_so(client, frame, monkeypatch):
    from tests.dask_cluster import COMPUTE_TIMEOUT, set_worker_env

    with LoopbackRerankServer(api_key=API_KEY) as srv:
        set_worker_env(client, {"DMXAPI_BASE_URL": srv.url})
        monkeypatch.setenv("DMXAPI_API_KEY", API_KEY)  # in the client only: too late for the workers
        lazy = rdask.with_scores(
            dd.from_pandas(frame, npartitions=2, sort=False), "colds", reranker="dmxapi", cache=False
        )
        future = client.compute(lazy)
        with pytest.raises(errors.ConfigurationError) as caught:
            future.result(timeout=COMPUTE_TIMEOUT)
        future.release()
        message = str(caught.value)
        assert "DMXAPI_API_KEY" in message
        assert "must be in the workers' environment" in message
        assert "rerankpd.dask.copy_env_to_workers(client, 'DMXAPI_API_KEY')" in message
        assert API_KEY not in message
        assert len(srv.requests) == 0
        try:
            rdask.copy_env_to_workers(client, "DMXAPI_API_KEY")  # what the message says to do
            # a new graph (the failed one's keys may still be held as erred by the scheduler)
            again = rdask.with_scores(
                dd.from_pandas(frame, npartitions=3, sort=False), "colds", reranker="dmxapi", cache=False
            )
            scored = client.compute(again).result(timeout=COMPUTE_TIMEOUT)
        finally:
            set_worker_env(client, remove=("DMXAPI_API_KEY", "DMXAPI_BASE_URL"))
        assert scored["rerank_score"].notna().sum() == 59
        assert len(srv.requests) > 0


def test_copy_env_to_workers_names_what_is_missing(monkeypatch):
    with pytest.raises(ValueError, match="name the variables"):
        rdask.copy_env_to_workers(None)
    monkeypatch.setenv("DMXAPI_API_KEY", "  ")
    with pytest.raises(errors.ConfigurationError, match="DMXAPI_API_KEY is not set in this process"):
        rdask.copy_env_to_workers(None, "DMXAPI_API_KEY")
