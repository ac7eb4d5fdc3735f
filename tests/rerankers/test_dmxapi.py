"""The dmxapi reranker against a real HTTP server on 127.0.0.1 speaking DMXAPI's documented JSON."""
from __future__ import annotations

import logging
import threading
import time

import pandas as pd
import pytest

import rerankpd
from rerankpd import errors
from rerankpd.rerankers.http import backoff_delay, parse_retry_after, scores_from_results, should_retry
from rerankpd.testing import LoopbackRerankServer
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
    assert req.headers["Authorization"] == API_KEY            # the seed sends the bare key
    assert req.headers["Content-Type"] == "application/json"
    assert req.body == {
        "model": "bge-reranker-v2-m3-free",
        "query": SEED_QUERY,
        "documents": SEED_DOCUMENTS,
        "top_n": 3,                       # never fewer than the documents sent
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
    assert batch.usage == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0,
                           "claude_cache_creation_5_m_tokens": 0, "claude_cache_creation_1_h_tokens": 0}


def test_one_liner_against_seed_server(seed_response):
    with seed_server(seed_response) as srv:
        df = pd.DataFrame({"text": SEED_DOCUMENTS[::-1]}, index=["c", "b", "a"])
        out = df.rerank(SEED_QUERY, reranker=rerankpd.get_reranker("dmxapi", api_key=API_KEY, base_url=srv.url),
                        progress=False)
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


# ----------------------------------------------------------------------- retries
def test_429_with_retry_after_is_retried_and_honoured(dmxapi, server):
    server.fail_next("429", retry_after="0.3")
    t0 = time.perf_counter()
    scores = dmxapi().score("q", ["a", "b"])
    assert time.perf_counter() - t0 >= 0.3
    assert len(scores) == 2 and len(server.requests) == 2


@pytest.mark.parametrize("kind", ["500", "502", "503", "html", "truncated", "missing_index", "drop"])
def test_transient_faults_are_retried(dmxapi, server, kind):
    server.fail_next(kind, count=2)
    assert dmxapi(max_retries=3).score("cold", ["cold", "hot"]) == pytest.approx(
        [server.score_fn("cold", "cold"), server.score_fn("cold", "hot")])
    assert len(server.requests) == 3


def test_stall_past_read_timeout_is_retried(dmxapi, server):
    server.fail_next("stall", stall_seconds=1.0)
    assert len(dmxapi(timeout=(1.0, 0.3)).score("q", ["a"])) == 1
    assert len(server.requests) == 2


@pytest.mark.parametrize("status,error", [(400, errors.BadRequestError), (404, errors.BadRequestError),
                                          (422, errors.BadRequestError), (403, errors.AuthenticationError)])
def test_client_errors_are_not_retried(dmxapi, server, status, error):
    server.fail_next("status", status=status, message="nope: bad thing")
    with pytest.raises(error) as info:
        dmxapi().score("q", ["a"])
    assert info.value.status_code == status
    assert "nope: bad thing" in str(info.value)
    assert len(server.requests) == 1


def test_401_says_quota_and_never_leaks_the_key(dmxapi, server, caplog):
    bad = "sk-wrong-key-123456"
    caplog.set_level(logging.DEBUG)
    with pytest.raises(errors.AuthenticationError) as info:
        dmxapi(api_key=bad).score("q", ["a"])
    assert info.value.status_code == 401
    assert "quota" in str(info.value) and "DMXAPI_API_KEY" in str(info.value)
    assert "invalid api key" in str(info.value)            # the provider's own message
    assert len(server.requests) == 1
    text = str(info.value) + repr(info.value) + caplog.text + repr(dmxapi(api_key=bad))
    assert bad not in text


def test_retries_exhausted_raise_with_status(dmxapi, server):
    server.fail_next("503", count=10)
    with pytest.raises(errors.ServerError) as info:
        dmxapi(max_retries=2).score("q", ["a"])
    assert info.value.status_code == 503 and len(server.requests) == 3


def test_rate_limit_exhausted(dmxapi, server):
    server.fail_next("429", count=10, retry_after="0")
    with pytest.raises(errors.RateLimitError):
        dmxapi(max_retries=1).score("q", ["a"])


def test_connection_refused_is_a_connection_error(dmxapi):
    r = dmxapi(base_url="http://127.0.0.1:9/v1", max_retries=1)
    with pytest.raises(errors.APIConnectionError):
        r.score("q", ["a"])


def test_timeout_is_a_timeout_error(dmxapi, server):
    server.fail_next("stall", count=5, stall_seconds=0.6)
    with pytest.raises(errors.APITimeoutError):
        dmxapi(timeout=(1.0, 0.2), max_retries=1).score("q", ["a"])


def test_retry_policy_functions():
    assert [should_retry(s) for s in (408, 409, 429, 500, 599)] == [True] * 5
    assert [should_retry(s) for s in (200, 400, 401, 403, 404, 422)] == [False] * 6
    assert parse_retry_after("5", cap=2.0) == 2.0
    assert parse_retry_after("-3", cap=2.0) == 0.0
    assert parse_retry_after("soon", cap=2.0) is None
    assert parse_retry_after(None, cap=2.0) is None
    assert 0 < parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", cap=9.0, now=1445412470.0) <= 9.0
    assert backoff_delay(10, base=0.5, cap=4.0, rng=lambda: 1.0) == 4.0
    assert backoff_delay(1, base=0.5, cap=4.0, rng=lambda: 0.5) == 0.5


def test_incomplete_or_duplicate_results_are_rejected():
    with pytest.raises(errors.BadResponseError, match="without a score"):
        scores_from_results([{"index": 0, "relevance_score": 1.0}], 2)
    with pytest.raises(errors.BadResponseError, match="twice"):
        scores_from_results([{"index": 0, "relevance_score": 1.0}] * 2, 2)
    with pytest.raises(errors.BadResponseError, match="not one of"):
        scores_from_results([{"index": 5, "relevance_score": 1.0}], 2)
    with pytest.raises(errors.BadResponseError, match="numeric"):
        scores_from_results([{"index": 0, "relevance_score": "high"}], 1)


def test_reranker_is_usable_from_many_threads(dmxapi, server):
    r = dmxapi(max_concurrency=4)
    results = []

    def work(i):
        results.append(r.score(f"q{i}", [f"doc {i}", "other"]))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(results) == 8 and all(len(x) == 2 for x in results)


def test_per_row_queries_over_http_one_query_per_request(dmxapi, server):
    df = pd.DataFrame({"q": ["cold", "flu", "cold", "flu", "cold"],
                       "text": ["a cold day", "flu shot", "cold hands", "a cold day", "cold hands"]})
    out = df.rerank(query_column="q", reranker=dmxapi(batch_size=10), progress=False, sort=False)
    bodies = [r.body for r in server.requests]
    assert sorted((b["query"], tuple(b["documents"])) for b in bodies) == [
        ("cold", ("a cold day", "cold hands")), ("flu", ("flu shot", "a cold day"))]
    assert out.loc[2, "rerank_score"] == out.loc[4, "rerank_score"]
    assert out.loc[0, "rerank_score"] != out.loc[3, "rerank_score"]    # same text, different query
    assert out.attrs["rerank"]["usage"]["total_tokens"] > 0


# ----------------------------------------------------------------------- review findings, kept fixed
@pytest.mark.parametrize("key", ["sk-CANARY123\nx", "sk-CANARY123\u200b", "sk-CANARY\x00123"])
def test_malformed_key_is_refused_without_echoing_it(key, caplog):
    import traceback

    with pytest.raises(errors.ConfigurationError, match="paste it again") as info:
        rerankpd.get_reranker("dmxapi", api_key=key)
    text = "".join(traceback.format_exception(info.value)) + caplog.text
    assert "CANARY" not in text


def test_invalid_url_is_not_retried_and_says_why(dmxapi):
    r = dmxapi(base_url="https://exa mple.com/v1", max_retries=3, backoff_base=1.0)
    t0 = time.perf_counter()
    with pytest.raises(errors.ConfigurationError, match="InvalidURL"):
        r.score("q", ["a"])
    assert time.perf_counter() - t0 < 0.5


def test_retry_after_zero_still_backs_off(dmxapi, server):
    server.fail_next("429", count=3, retry_after="0")
    t0 = time.perf_counter()
    dmxapi(backoff_base=0.2, backoff_cap=0.2, max_retries=3).score("q", ["a"])
    # full jitter: each wait is uniform in [0, 0.2]; three of them all under 1 ms would be a 1-in-10^7 event
    assert time.perf_counter() - t0 > 0.003 and len(server.requests) == 4


def test_connect_timeout_names_the_connect_timeout():
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = []
    try:  # fill the accept backlog so that a further connect hangs
        for _ in range(8):
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex(listener.getsockname())
            fillers.append(c)
        r = rerankpd.get_reranker("dmxapi", api_key="k" * 10, max_retries=0, timeout=(0.3, 5.0),
                                  base_url=f"http://127.0.0.1:{listener.getsockname()[1]}/v1")
        with pytest.raises(errors.APITimeoutError) as info:
            r.score("q", ["a"])
        assert "could not connect" in str(info.value) and "within 0.3s" in str(info.value)
    finally:
        for c in fillers:
            c.close()
        listener.close()


def test_cache_directory_with_tilde_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    out = pd.DataFrame({"text": ["a", "b"]}).rerank("a", reranker="e5", cache="~/scores", progress=False)
    assert out.attrs["rerank"]["cache_dir"] == str(tmp_path / "scores")
    assert (tmp_path / "scores").is_dir()
