"""The OpenAI-compatible embeddings reranker, against a real loopback server speaking the embeddings API."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pandas as pd
import pytest

import rerankpd
from rerankpd.errors import AuthenticationError, BadRequestError, BadResponseError, ConfigurationError
from rerankpd.testing import LoopbackRerankServer, bigram_embedding

KEY = "sk-canary-7e1b0d9c77a1"  # random-looking: the scrubber masks any 8 characters of a key
DOCS = ["cold hands in winter", "stock prices fell", "wash hands to prevent a cold", "cold hands in winter"]


@pytest.fixture
def server():
    with LoopbackRerankServer(api_key=KEY, dialect="openai-embeddings") as srv:
        yield srv


def make(server, **options):
    options.setdefault("api_key", KEY)
    options.setdefault("base_url", server.url)
    options.setdefault("model", "text-embedding-3-small")
    options.setdefault("backoff_base", 0.01)
    options.setdefault("backoff_cap", 0.05)
    options.setdefault("timeout", (2.0, 5.0))
    return rerankpd.get_reranker("embeddings", **options)


def cosine(a: str, b: str) -> float:
    v = bigram_embedding([a, b])
    return float(v[0] @ v[1])


def test_model_is_required_and_options_are_checked():
    with pytest.raises(ConfigurationError, match="model="):
        rerankpd.get_reranker("embeddings", api_key=KEY)
    for bad in (
        dict(prefixes="bge"),
        dict(dimensions=0),
        dict(encoding_format="int8"),
        dict(batch_size=5000),
        dict(query_prefix=3),
    ):
        with pytest.raises(ConfigurationError):
            rerankpd.get_reranker("embeddings", api_key=KEY, model="m", **bad)


def test_key_comes_from_dmxapi_api_key_and_never_shows(monkeypatch):
    with pytest.raises(ConfigurationError, match="DMXAPI_API_KEY"):
        rerankpd.get_reranker("embeddings", model="m")
    monkeypatch.setenv("DMXAPI_API_KEY", KEY)
    r = rerankpd.get_reranker("embeddings", model="m")
    assert r.endpoint == "https://www.dmxapi.cn/v1/embeddings" and r.kind == "embedding"
    assert KEY not in repr(r) and KEY not in str(r.identity())
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(r)
    assert rerankpd.rerankers.reranker_class("embeddings").availability().ready is True


def test_payload_follows_the_openai_reference():
    r = rerankpd.get_reranker(
        "embeddings", api_key=KEY, model="m", prefixes="e5", dimensions=256, encoding_format="base64"
    )
    assert r.build_embeddings_payload(["q"], "query") == {
        "model": "m",
        "input": ["query: q"],
        "encoding_format": "base64",
        "dimensions": 256,
    }
    assert r.build_embeddings_payload(["d"], "document")["input"] == ["passage: d"]
    plain = rerankpd.get_reranker("embeddings", api_key=KEY, model="m")
    assert plain.build_embeddings_payload(["d"], "document") == {"model": "m", "input": ["d"]}
    assert plain.identity() != r.identity() and "m" == plain.identity()["model"]


def test_a_frame_is_reranked_with_each_distinct_text_embedded_once(server):
    df = pd.DataFrame({"q": ["cold", "cold", "cold", "stock"], "text": DOCS})
    r = make(server, batch_size=2)
    out = rerankpd.rerank(df, query_column="q", reranker=r, cache=False, progress=False, sort=False)
    for label, row in df.iterrows():
        assert out.loc[label, "rerank_score"] == pytest.approx(cosine(row.q, row.text), abs=1e-6)
    sent = server.documents_received()
    assert sorted(sent) == sorted(["cold", "stock", *set(DOCS[:3])])  # 2 queries, 3 distinct texts, once each
    info = out.attrs["rerank"]
    assert info["embedding"]["texts_embedded"] == 3 and info["embedding"]["queries_embedded"] == 2
    assert info["usage"]["total_tokens"] == sum(len(t) for t in sent) and info["requests"] == 3
    assert all(req.headers["Authorization"] == f"Bearer {KEY}" for req in server.requests)
    assert all(req.path == "/v1/embeddings" for req in server.requests)


def test_score_for_direct_callers_and_base64_give_the_same_cosines(server):
    want = [cosine("cold", d) for d in DOCS]
    assert make(server).score("cold", DOCS) == pytest.approx(want, abs=1e-6)
    assert make(server, encoding_format="base64", batch_size=3).score("cold", DOCS) == pytest.approx(want, abs=1e-6)
    assert make(server).score("cold", []) == []
    vectors = make(server, dimensions=8).embed_documents(DOCS)
    assert vectors.shape == (4, 8) and vectors.dtype == np.float32


def test_prefixes_reach_the_server(server):
    make(server, prefixes="e5").score("cold", ["a b"])
    inputs = [req.body["input"] for req in server.requests]
    assert inputs == [["query: cold"], ["passage: a b"]]


def test_a_new_query_sends_only_the_query(server, tmp_path):
    df = pd.DataFrame({"text": DOCS})
    rerankpd.rerank(df, "cold", reranker=make(server), cache=tmp_path, progress=False)
    server.reset()
    out = rerankpd.rerank(df, "stock market", reranker=make(server), cache=tmp_path, progress=False)
    assert server.documents_received() == ["stock market"]
    assert out.attrs["rerank"]["embedding"]["texts_from_cache"] == 3


def test_an_answer_missing_an_index_is_retried(server):
    server.fail_next("missing_index")
    r = make(server, batch_size=10)
    assert r.score("cold", DOCS) == pytest.approx([cosine("cold", d) for d in DOCS], abs=1e-6)
    assert len(server.requests) == 3  # the query, the incomplete answer, its retry


def test_an_answer_that_never_covers_the_inputs_is_a_bad_response(server):
    server.fail_next("missing_index", count=10)
    with pytest.raises(BadResponseError, match="without an embedding"):
        make(server, max_retries=1).embed_documents(["a", "b"])


def test_429_is_retried_and_a_bad_key_is_not(server):
    server.fail_next("429")
    assert len(make(server).embed_queries(["cold"])) == 1
    server.reset()
    with pytest.raises(AuthenticationError) as info:
        make(server, api_key="sk-wrong-key-123").embed_queries(["cold"])
    assert len(server.requests) == 1 and "sk-wrong-key-123" not in str(info.value)


def test_the_server_refusing_an_option_is_a_bad_request(server):
    with pytest.raises(BadRequestError, match="dimensions"):
        make(server, dimensions=5000).embed_queries(["cold"])


def test_requests_run_concurrently_up_to_the_limit():
    with LoopbackRerankServer(api_key=KEY, dialect="openai-embeddings", latency=0.05) as server:
        df = pd.DataFrame({"text": [f"text number {i}" for i in range(80)]})
        out = rerankpd.rerank(
            df, "text", reranker=make(server, batch_size=5, max_concurrency=4), cache=False, progress=False
        )
        assert out["rerank_score"].notna().all() and server.max_in_flight == 4
        assert len(server.requests) == 1 + math.ceil(80 / 5)


@pytest.mark.parametrize(
    "parse",
    [
        {"data": [{"index": 0, "embedding": [1, 0]}, {"index": 0, "embedding": [1, 0]}]},
        {"data": [{"index": 0, "embedding": [1, 0]}, {"index": 1, "embedding": [1, 0, 0]}]},
        {"data": [{"index": 0, "embedding": "%%%"}, {"index": 1, "embedding": [1, 0]}]},
        {"data": [{"index": 0, "embedding": [0, 0]}, {"index": 1, "embedding": [1, 0]}]},
        {"data": [{"index": 2, "embedding": [1, 0]}]},
        {"results": []},
    ],
)
def test_malformed_answers_are_rejected(parse):
    r = rerankpd.get_reranker("embeddings", api_key=KEY, model="m")
    with pytest.raises(BadResponseError):
        r.parse_response(parse, 2)


def test_answers_are_matched_by_index_not_position():
    r = rerankpd.get_reranker("embeddings", api_key=KEY, model="m", normalize=False)
    got = r.parse_response(
        {
            "data": [{"index": 1, "embedding": [0, 2]}, {"index": 0, "embedding": [3, 0]}],
            "usage": {"prompt_tokens": 4, "total_tokens": 4},
        },
        2,
    )
    assert got.vectors.tolist() == [[3, 0], [0, 2]] and got.usage == {"prompt_tokens": 4, "total_tokens": 4}
