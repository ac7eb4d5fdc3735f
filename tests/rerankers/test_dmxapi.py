"""The dmxapi reranker against a real HTTP server on 127.0.0.1 speaking DMXAPI's documented JSON."""

from __future__ import annotations

import threading
import time

import pandas as pd
import pytest

import rerankpd
from rerankpd import errors
from rerankpd.rerankers.http.client import scores_from_results
from rerankpd.testing import LoopbackRerankServer, overlap_score
from tests.conftest import API_KEY, SEED_DOCUMENTS, SEED_QUERY


def seed_server(seed_response, **kw):
    """A server whose scores are DMXAPI's own example answer."""
    table = {r["document"]["text"]: r["relevance_score"] for r in seed_response["results"]}
    return LoopbackRerankServer(api_key=API_KEY, score_fn=lambda q, d: table[d], **kw)


def test_request_shape_and_header_follow_the_seed(dmxapi, server):
    r = dmxapi(max_chunks_per_doc=5, overlap_tokens=20)
    assert r.score(SEED_QUERY, SEED_DOCUMENTS) and len(server.requests) == 1
    req = server.requests[0]
    assert req.path == "/v1/rerank"
    assert req.headers["Authorization"] == API_KEY  # the seed sends the bare key
    assert req.headers["Content-Type"] == "application/json"
    assert req.body == {
        "model": "bge-reranker-v2-m3-free",
        "query": SEED_QUERY,
        "documents": SEED_DOCUMENTS,
        "top_n": 3,  # never fewer than the documents sent
        "return_documents": False,
        "max_chunks_per_doc": 5,
        "overlap_tokens": 20,
    }


def test_bearer_scheme_is_an_option(dmxapi, server):
    dmxapi(auth_scheme="Bearer").score("q", ["d"])
    assert server.requests[0].headers["Authorization"] == f"Bearer {API_KEY}"


def test_seed_response_parsed_by_index(seed_response):
    # The seed's answer, verbatim, but shuffled: matching must be by index, never position.
    results = list(reversed(seed_response["results"]))
    assert scores_from_results(results, 3) == [0.9700092673301697, 0.14572574198246002, 0.02796747349202633]
    r = rerankpd.get_reranker("dmxapi", api_key="k")
    batch = r.parse_response(seed_response, 3)
    assert batch.usage == {
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "total_tokens": 0,
        "claude_cache_creation_5_m_tokens": 0,
        "claude_cache_creation_1_h_tokens": 0,
    }


def test_one_liner_against_seed_server(seed_response):
    with seed_server(seed_response) as srv:
        df = pd.DataFrame({"text": SEED_DOCUMENTS[::-1]}, index=["c", "b", "a"])
        out = df.rerank(
            SEED_QUERY, reranker=rerankpd.get_reranker("dmxapi", api_key=API_KEY, base_url=srv.url), progress=False
        )
    assert out.index.tolist() == ["a", "b", "c"]
    assert out["rerank_score"].tolist() == [0.9700092673301697, 0.14572574198246002, 0.02796747349202633]
    assert out["rerank_rank"].tolist() == [1, 2, 3]
    info = out.attrs["rerank"]
    assert info["reranker"] == "dmxapi" and info["model"] == "bge-reranker-v2-m3-free"
    assert info["requests"] == 1 and info["sent"] == 3


def test_env_key_and_base_url_make_dmxapi_the_default(seed_response, monkeypatch):
    with seed_server(seed_response) as srv:
        monkeypatch.setenv("DMXAPI_API_KEY", API_KEY)
        monkeypatch.setenv("DMXAPI_BASE_URL", srv.url)
        out = pd.DataFrame({"text": SEED_DOCUMENTS}).rerank(SEED_QUERY, progress=False)
        assert out.attrs["rerank"]["reranker"] == "dmxapi"
        assert len(srv.requests) == 1


@pytest.mark.parametrize("value", [-1, 81, 2.5])
def test_overlap_tokens_validated(value):
    with pytest.raises(errors.ConfigurationError, match="overlap_tokens"):
        rerankpd.get_reranker("dmxapi", api_key="k", overlap_tokens=value)


def test_missing_key_names_the_variable():
    with pytest.raises(errors.ConfigurationError, match="DMXAPI_API_KEY"):
        rerankpd.get_reranker("dmxapi")


def test_batching_and_concurrency_limits(dmxapi):
    with LoopbackRerankServer(api_key=API_KEY, latency=0.05) as srv:
        r = dmxapi(base_url=srv.url, batch_size=7, max_concurrency=3)
        df = pd.DataFrame({"text": [f"document number {i}" for i in range(50)]})
        out = df.rerank("document 7", reranker=r, progress=False, cache=False)
    sizes = [len(req.body["documents"]) for req in srv.requests]
    assert sorted(sizes) == sorted([7] * 7 + [1])
    assert srv.max_in_flight == 3
    assert out["rerank_score"].notna().all()
    assert sorted(srv.documents_received()) == sorted(df["text"])


def test_assembly_deterministic_whatever_order_answers_arrive():
    import random

    rng = random.Random(1)

    def slow_random(q, d):
        time.sleep(rng.random() * 0.02)
        return float(len(d) % 13)

    with LoopbackRerankServer(api_key=API_KEY, score_fn=slow_random) as srv:
        r = rerankpd.get_reranker("dmxapi", api_key=API_KEY, base_url=srv.url, batch_size=3, max_concurrency=4)
        df = pd.DataFrame({"text": ["x" * i for i in range(1, 40)]})
        a = df.rerank("x", reranker=r, cache=False, progress=False)
        b = df.rerank("x", reranker=r, cache=False, progress=False)
    pd.testing.assert_frame_equal(a, b, check_like=False)
    assert a["rerank_score"].tolist() == sorted((float(i % 13) for i in range(1, 40)), reverse=True)


def test_reranker_is_usable_from_many_threads(dmxapi, server):
    r = dmxapi(max_concurrency=4)
    results = {}

    def work(i):
        results[i] = r.score(f"doc{i} q", [f"doc{i} words", "other", f"doc{i} q"])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    # each thread got the scores of its own query and documents, in its documents' order
    assert results == {
        i: pytest.approx([overlap_score(f"doc{i} q", d) for d in (f"doc{i} words", "other", f"doc{i} q")])
        for i in range(8)
    }
    assert sorted(req.body["query"] for req in server.requests) == sorted(f"doc{i} q" for i in range(8))


def test_per_row_queries_over_http_one_query_per_request(dmxapi, server):
    df = pd.DataFrame(
        {
            "q": ["cold", "flu", "cold", "flu", "cold"],
            "text": ["a cold day", "flu shot", "cold hands", "a cold day", "cold hands"],
        }
    )
    out = df.rerank(query_column="q", reranker=dmxapi(batch_size=10), progress=False, sort=False)
    bodies = [r.body for r in server.requests]
    assert sorted((b["query"], tuple(b["documents"])) for b in bodies) == [
        ("cold", ("a cold day", "cold hands")),
        ("flu", ("flu shot", "a cold day")),
    ]
    assert out.loc[2, "rerank_score"] == out.loc[4, "rerank_score"]
    assert out.loc[0, "rerank_score"] != out.loc[3, "rerank_score"]  # same text, different query
    assert out.attrs["rerank"]["usage"]["total_tokens"] > 0


# ----------------------------------------------------------------------- review findings, kept fixed
@pytest.mark.parametrize("key", ["sk-CANARY123\nx", "sk-CANARY123\u200b", "sk-CANARY\x00123"])
def test_malformed_key_is_refused_without_echoing_it(key, caplog):
    import traceback

    with pytest.raises(errors.ConfigurationError, match="paste it again") as info:
        rerankpd.get_reranker("dmxapi", api_key=key)
    text = "".join(traceback.format_exception(info.value)) + caplog.text
    assert "CANARY" not in text


def test_cache_directory_with_tilde_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    out = pd.DataFrame({"text": ["a", "b"]}).rerank("a", reranker="e5", cache="~/scores", progress=False)
    assert out.attrs["rerank"]["cache_dir"] == str(tmp_path / "scores")
    assert (tmp_path / "scores").is_dir()
