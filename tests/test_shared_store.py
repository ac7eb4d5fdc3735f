"""rerankpd.cache.shared: one score store for a whole Dask cluster, as Parquet files on an fsspec URL."""

from __future__ import annotations

import json
import os
import pathlib

import dask.dataframe as dd
import pandas as pd
import pyarrow.parquet as pq
import pytest

import rerankpd
import rerankpd.dask as rdask
from rerankpd import errors
from rerankpd.cache import ScoreCache
from rerankpd.cache.shared import SharedScoreStore, check_url, pair_keys, seeded_local_cache
from rerankpd.rerankers.base import describe
from rerankpd.testing import LoopbackRerankServer
from tests.conftest import API_KEY
from tests.dask_cluster import COMPUTE_TIMEOUT, local_cluster, set_worker_caches, set_worker_env

IDENTITY = json.dumps({"provider": "demo", "model": "m"}, sort_keys=True)
QUERY = "how to prevent colds"


def store_files(root: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


# ------------------------------------------------------------------------------------------ the store
def test_append_then_lookup_across_store_objects(tmp_path):
    writer = SharedScoreStore(tmp_path.as_uri(), IDENTITY)
    keys = writer.keys([QUERY], ["a", "b", "c"], [0, 0, 0], [0, 1, 2])
    assert writer.lookup(keys) == {}  # nothing there yet (not even a directory)
    assert writer.append({keys[0]: 0.25, keys[1]: -1.5}) == 2
    assert writer.append({keys[2]: 3.0}) == 1
    reader = SharedScoreStore(str(tmp_path), IDENTITY)  # a plain path works too; a new object sees it all
    assert reader.lookup(keys) == {keys[0]: 0.25, keys[1]: -1.5, keys[2]: 3.0}
    assert reader.lookup(keys[1:2]) == {keys[1]: -1.5}
    assert len(reader.files()) == 2  # append-only: one file per append


def test_files_hold_digests_and_scores_only(tmp_path):
    store = SharedScoreStore(tmp_path.as_uri(), IDENTITY)
    secret_text = "a passage about the canary 7f3e"
    keys = store.keys([QUERY], [secret_text], [0], [0])
    store.append({keys[0]: 0.5})
    (path,) = store_files(tmp_path)
    assert path.suffix == ".parquet" and not path.name.startswith(".")
    table = pq.read_table(path)
    assert table.column_names == ["key", "score"]
    assert table.column("key").to_pylist() == keys  # the local cache's own key of the pair
    raw = path.read_bytes()
    for clear in (secret_text, QUERY, "canary", "demo"):
        assert clear.encode() not in raw


def test_keys_are_the_local_caches_keys(tmp_path, dmxapi):
    """The shared store's keys find the scores a pipeline run wrote to the local cache (same key function)."""
    df = pd.DataFrame({"text": ["colds and hand washing", "stock prices", "flu shots"]})
    reranker = dmxapi()
    rerankpd.scores(df, QUERY, reranker=reranker, cache=tmp_path / "local", progress=False)
    keys = pair_keys(describe(reranker).identity, [QUERY], df["text"].tolist(), [0, 0, 0], [0, 1, 2])
    with ScoreCache(tmp_path / "local") as local:
        assert len(local.get_many(keys)) == 3


def test_each_identity_has_its_own_directory(tmp_path):
    one = SharedScoreStore(tmp_path.as_uri(), IDENTITY)
    other = SharedScoreStore(tmp_path.as_uri(), json.dumps({"provider": "demo", "model": "other"}))
    assert one.directory != other.directory
    keys = one.keys([QUERY], ["a"], [0], [0])
    one.append({keys[0]: 1.0})
    assert other.lookup(other.keys([QUERY], ["a"], [0], [0])) == {}
    assert other.files() == []


def test_unfinished_files_are_never_read_and_writes_leave_no_temporary(tmp_path):
    store = SharedScoreStore(tmp_path.as_uri(), IDENTITY)
    keys = store.keys([QUERY], ["a", "b"], [0, 0], [0, 1])
    store.append({keys[0]: 1.0})
    directory = pathlib.Path(store.directory)
    assert [p.name for p in directory.iterdir() if p.name.startswith(".")] == []
    # a writer killed mid-file leaves a dot-named temporary: readers must not trip over it
    (directory / ".part-dead.parquet.tmp").write_bytes(b"PAR1 half a file")
    assert store.lookup(keys) == {keys[0]: 1.0}


def test_check_url_names_the_option():
    assert check_url("file:///tmp/x") == "file:///tmp/x"
    with pytest.raises(errors.ConfigurationError, match="shared_cache.*no protocol 'nosuchfs'"):
        check_url("nosuchfs://bucket/prefix")
    with pytest.raises(errors.ConfigurationError, match="shared_cache must be a URL"):
        check_url(pathlib.Path("/tmp/x"))
    ddf = dd.from_pandas(pd.DataFrame({"text": ["a"]}), npartitions=1)
    with pytest.raises(errors.ConfigurationError, match="shared_cache"):
        rdask.with_scores(ddf, "q", reranker="e5", shared_cache="nosuchfs://x")


# ------------------------------------------------------------------ plugged around a partition's run
def test_seeded_local_cache_without_a_local_cache(tmp_path, dmxapi, server):
    """cache=False: a temporary local cache carries the shared scores in and the new ones out, then goes."""
    df = pd.DataFrame({"text": ["colds", "flu shots", "stock prices"]})
    reranker = dmxapi(batch_size=1)
    store = SharedScoreStore(tmp_path.as_uri(), describe(reranker).identity)
    keys = store.keys([QUERY], df["text"].tolist(), [0, 0, 0], [0, 1, 2])
    store.append({keys[0]: 42.0})  # one pair is already known to the cluster
    with seeded_local_cache(store, keys, False) as local:
        got = rerankpd.scores(df, QUERY, reranker=reranker, cache=local, progress=False)
    assert got.tolist()[0] == 42.0  # came from the shared store
    assert len(server.requests) == 2  # only the two others were sent
    assert not os.path.exists(local)  # the temporary cache is gone
    assert store.lookup(keys) == {keys[0]: 42.0, keys[1]: got[1], keys[2]: got[2]}


def test_a_corrupt_store_warns_and_the_partition_is_still_scored(tmp_path, monkeypatch, server):
    monkeypatch.setenv("DMXAPI_API_KEY", API_KEY)
    monkeypatch.setenv("DMXAPI_BASE_URL", server.url)
    df = pd.DataFrame({"text": ["colds", "flu shots"]})
    identity = describe(rerankpd.get_reranker("dmxapi")).identity
    store = SharedScoreStore(tmp_path.as_uri(), identity)
    os.makedirs(store.directory)
    pathlib.Path(store.directory, "part-garbage.parquet").write_bytes(b"not parquet at all")
    with pytest.warns(RuntimeWarning, match="shared score store .* could not be read"):
        out = rdask.with_scores(
            dd.from_pandas(df, npartitions=1), QUERY, reranker="dmxapi", shared_cache=tmp_path.as_uri()
        ).compute(scheduler="sync")
    assert out["rerank_score"].notna().all()
    assert len(server.requests) == 1


# ------------------------------------------------------------------ a real cluster of worker processes
@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with local_cluster(str(tmp_path_factory.mktemp("workers"))) as client:
        yield client


@pytest.fixture
def cluster_server(client, tmp_path):
    """The loopback server, its URL and key in the workers' environment, and fresh local caches."""
    with LoopbackRerankServer(api_key=API_KEY) as srv:
        set_worker_env(client, {"DMXAPI_API_KEY": API_KEY, "DMXAPI_BASE_URL": srv.url})
        try:
            yield srv
        finally:
            set_worker_env(client, remove=("DMXAPI_API_KEY", "DMXAPI_BASE_URL"))


@pytest.fixture
def passages():
    texts = [
        f"passage {i} on {'colds' if i % 3 else 'flu shots'} and {'hands' if i % 4 else 'masks'}" for i in range(120)
    ]
    texts[7] = None
    texts[8] = "   "
    return pd.DataFrame(
        {"text": texts, "q": ["prevent colds", "flu shots"] * 60, "id": range(120)}, index=[f"r{i}" for i in range(120)]
    )


@pytest.mark.timeout(300)
def test_second_run_on_fresh_workers_sends_nothing(client, cluster_server, passages, tmp_path):
    shared = (tmp_path / "shared").as_uri()
    ddf = dd.from_pandas(passages, npartitions=8, sort=False)
    options = {"batch_size": 8}

    caches = set_worker_caches(client, tmp_path / "first")
    assert len(set(caches.values())) == 2  # each worker its own local cache
    first = client.compute(
        rdask.with_scores(ddf, query_column="q", reranker="dmxapi", reranker_options=options, shared_cache=shared)
    ).result(timeout=COMPUTE_TIMEOUT)
    sent_first = len(cluster_server.requests)
    assert sent_first > 0
    assert first["rerank_score"].notna().sum() == 118

    # Fresh, empty local caches on every worker: only the shared store remembers.
    set_worker_caches(client, tmp_path / "second")
    cluster_server.reset()
    second = client.compute(
        rdask.with_scores(ddf, query_column="q", reranker="dmxapi", reranker_options=options, shared_cache=shared)
    ).result(timeout=COMPUTE_TIMEOUT)
    assert len(cluster_server.requests) == 0
    pd.testing.assert_series_equal(second["rerank_score"], first["rerank_score"])

    # Control: the same fresh start without the shared store sends everything again.
    set_worker_caches(client, tmp_path / "third")
    cluster_server.reset()
    client.compute(rdask.with_scores(ddf, query_column="q", reranker="dmxapi", reranker_options=options)).result(
        timeout=COMPUTE_TIMEOUT
    )
    assert len(cluster_server.requests) == sent_first
    files = store_files(tmp_path / "shared")
    assert files and not any(API_KEY.encode() in path.read_bytes() for path in files)


@pytest.mark.timeout(300)
def test_top_n_with_the_shared_store_matches_pandas(client, cluster_server, passages, tmp_path):
    shared = (tmp_path / "shared").as_uri()
    ddf = dd.from_pandas(passages, npartitions=5, sort=False)
    want = passages.rerank(
        query_column="q",
        top_n=4,
        progress=False,
        cache=False,
        reranker=rerankpd.get_reranker("dmxapi", api_key=API_KEY, base_url=cluster_server.url),
    )
    for run in range(2):  # scored, then all from the shared store
        set_worker_caches(client, tmp_path / f"run{run}")
        cluster_server.reset()
        got = rdask.top_n(ddf, query_column="q", n=4, reranker="dmxapi", shared_cache=shared)
        assert got.index.tolist() == want.index.tolist()
        assert got["rerank_score"].tolist() == want["rerank_score"].tolist()
        assert got["rerank_rank"].tolist() == want["rerank_rank"].tolist()
        assert got["q"].tolist() == want["q"].tolist()
        assert (len(cluster_server.requests) == 0) == (run == 1)


def test_chunking_reranker_shares_its_chunk_scores(tmp_path, monkeypatch):
    """A reranker that cuts documents on the client caches chunks: the shared store holds those."""
    long_text = " ".join(f"word{i}" for i in range(60)) + " colds"
    df = pd.DataFrame({"text": [long_text, "short text on colds", long_text + " again"]})
    options = {"max_chunks_per_doc": 3, "chunk_tokens": 20, "batch_size": 2}
    with LoopbackRerankServer(api_key=API_KEY, dialect="jina") as srv:
        monkeypatch.setenv("JINA_API_KEY", API_KEY)
        monkeypatch.setenv("JINA_BASE_URL", srv.url)
        results = []
        for run in range(2):
            monkeypatch.setenv("RERANKPD_CACHE_DIR", str(tmp_path / f"local{run}"))  # a fresh worker each run
            srv.reset()
            results.append(
                rdask.with_scores(
                    dd.from_pandas(df, npartitions=2, sort=False),
                    QUERY,
                    reranker="jina",
                    reranker_options=options,
                    shared_cache=str(tmp_path / "shared"),
                ).compute(scheduler="sync")
            )
            assert (len(srv.requests) > 0) == (run == 0)
    assert results[1]["rerank_score"].tolist() == results[0]["rerank_score"].tolist()
    assert len(srv.documents_received()) == 0  # reset before the second run: nothing sent


def test_an_unwritable_store_warns_and_the_scores_stay_local(tmp_path, monkeypatch, server):
    monkeypatch.setenv("DMXAPI_API_KEY", API_KEY)
    monkeypatch.setenv("DMXAPI_BASE_URL", server.url)
    df = pd.DataFrame({"text": ["colds", "flu shots"]})
    store = SharedScoreStore(tmp_path.as_uri(), describe(rerankpd.get_reranker("dmxapi")).identity)
    pathlib.Path(store.directory).write_bytes(b"")  # a file where the store's directory should be
    with pytest.warns(RuntimeWarning, match="could not be written.*only in the worker's local cache"):
        out = rdask.with_scores(
            dd.from_pandas(df, npartitions=1),
            QUERY,
            reranker="dmxapi",
            shared_cache=tmp_path.as_uri(),
            cache=tmp_path / "local",
        ).compute(scheduler="sync")
    assert out["rerank_score"].notna().all()
    server.reset()
    rerankpd.scores(df, QUERY, reranker="dmxapi", cache=tmp_path / "local", progress=False)
    assert len(server.requests) == 0  # the local cache kept them


def test_a_failed_partition_still_shares_what_it_scored(tmp_path, monkeypatch, server):
    monkeypatch.setenv("DMXAPI_API_KEY", API_KEY)
    monkeypatch.setenv("DMXAPI_BASE_URL", server.url)
    df = pd.DataFrame({"text": ["colds", "flu shots", "hand washing", "masks"]})
    server.fail_on_request(2, "status", status=400, message="too long")
    lazy = rdask.with_scores(
        dd.from_pandas(df, npartitions=1),
        QUERY,
        reranker="dmxapi",
        reranker_options={"batch_size": 2, "max_concurrency": 1},
        cache=False,
        shared_cache=tmp_path.as_uri(),
    )
    with pytest.raises(errors.APIError, match="too long"):
        lazy.compute(scheduler="sync")
    store = SharedScoreStore(tmp_path.as_uri(), describe(rerankpd.get_reranker("dmxapi")).identity)
    keys = store.keys([QUERY], df["text"].tolist(), [0] * 4, range(4))
    assert set(store.lookup(keys)) == set(keys[:2])  # the first request's two scores were shared


@pytest.mark.slow
def test_benchmark_script_quick_run_sends_nothing_on_the_second_run():
    import subprocess
    import sys

    script = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "dask.py"
    proc = subprocess.run([sys.executable, str(script), "--quick"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(text for text in proc.stdout.splitlines() if text.startswith("BENCHMARK_JSON "))
    results = json.loads(line.split(" ", 1)[1])["results"]
    assert len(results) == 3
    assert results["second run on fresh workers, from the shared store"]["requests_sent"] == 0
    for result in results.values():
        assert result["ratio"] > 0 and result["value"] > 0 and result["baseline"] > 0


def test_compact_merges_each_identitys_files_and_drops_duplicates(tmp_path):
    from rerankpd.cache.shared import compact

    one = SharedScoreStore(tmp_path.as_uri(), IDENTITY)
    other = SharedScoreStore(tmp_path.as_uri(), json.dumps({"provider": "demo", "model": "other"}))
    keys = one.keys([QUERY], ["a", "b", "c"], [0, 0, 0], [0, 1, 2])
    one.append({keys[0]: 1.0, keys[1]: 2.0})
    one.append({keys[1]: 2.0, keys[2]: 3.0})
    one.append({keys[2]: 3.0})
    other_key = other.keys([QUERY], ["a"], [0], [0])[0]
    other.append({other_key: 9.0})
    before = one.lookup(keys)
    assert compact(tmp_path.as_uri()) == {one.directory: 3}  # the single-file directory is left as it is
    assert len(one.files()) == 1 and len(other.files()) == 1
    assert one.lookup(keys) == before == {keys[0]: 1.0, keys[1]: 2.0, keys[2]: 3.0}
    assert other.lookup([other_key]) == {other_key: 9.0}
    assert compact(str(tmp_path / "nothing-here")) == {}
