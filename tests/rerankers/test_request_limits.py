"""Requests fit each service's published per-request limits: documents and tokens.

The loopback fakes refuse what the services refuse (DashScope: 500 documents and 30,000 tokens for
gte-rerank-v2, 120,000 for qwen3-rerank; Voyage: 1,000 documents and 600,000 tokens), counting tokens as the
services do: query tokens x documents + the documents' tokens.
"""

from __future__ import annotations

import pandas as pd
import pytest

import rerankpd
from rerankpd.core.tokens import REQUEST_TOKEN_HEADROOM, budget_spans, request_tokens
from rerankpd.errors import BadRequestError, ConfigurationError
from rerankpd.testing import LoopbackRerankServer

KEY = "sk-limits"
QUERY = "how do ordinary paragraphs behave against a capped service"


def paragraphs(n, words=80):
    return [f"{i} " + " ".join(["word"] * (words - 1)) for i in range(n)]


def make(name, server, **options):
    return rerankpd.get_reranker(
        name, api_key=KEY, base_url=server.url, backoff_base=0.01, backoff_cap=0.02, max_retries=0, **options
    )


@pytest.mark.parametrize("model, cap", [("gte-rerank-v2", 30_000), ("qwen3-rerank", 120_000)])
def test_dashscope_requests_fit_the_models_token_cap(model, cap):
    docs = paragraphs(500, words=80 if cap == 30_000 else 300)
    assert request_tokens(QUERY, docs) > cap  # one request of 500 would be refused
    with LoopbackRerankServer(api_key=KEY, dialect="dashscope") as server:
        reranker = make("dashscope", server, model=model)
        assert reranker.max_request_tokens == cap
        est = pd.DataFrame({"text": docs}).rerank.estimate(QUERY, reranker=reranker, cache=False)
        out = pd.DataFrame({"text": docs}).rerank(QUERY, reranker=reranker, cache=False, progress=False)
        assert out["rerank_score"].notna().all()
        sent = [(r.body["input"]["query"], r.body["input"]["documents"]) for r in server.requests]
        assert len(sent) == est.requests > 1
        assert all(request_tokens(q, d) <= cap * REQUEST_TOKEN_HEADROOM for q, d in sent)
        assert sorted(t for _, d in sent for t in d) == sorted(docs)
        # the fake refuses what the service refuses: the same 500 in one request
        with pytest.raises(BadRequestError, match=f"at most {cap}"):
            make("dashscope", server, model=model, max_request_tokens=0).score(QUERY, docs)


def test_a_direct_score_call_is_split_to_fit():
    docs = paragraphs(300)
    with LoopbackRerankServer(api_key=KEY, dialect="dashscope") as server:
        result = make("dashscope", server).score_batch(QUERY, docs)
    assert len(result.scores) == 300 and result.requests == len(server.requests) > 1
    # usage is summed over the requests (the fake reports the characters of each request's texts)
    assert result.usage["total_tokens"] == sum(
        len(r.body["input"]["query"]) + sum(map(len, r.body["input"]["documents"])) for r in server.requests
    )


def test_voyage_requests_fit_600k_tokens():
    long_doc = "x" * 3_000  # 750 tokens each
    docs = [f"{i} {long_doc}" for i in range(1000)]
    assert request_tokens(QUERY, docs) > 600_000 * REQUEST_TOKEN_HEADROOM
    with LoopbackRerankServer(api_key=KEY, dialect="voyage") as server:
        reranker = make("voyage", server)
        out = pd.DataFrame({"text": docs}).rerank(QUERY, reranker=reranker, cache=False, progress=False)
        assert out["rerank_score"].notna().all() and len(server.requests) == 2
        with pytest.raises(BadRequestError, match="at most 600000"):
            make("voyage", server, max_request_tokens=0).score(QUERY, docs)


@pytest.mark.parametrize("name, limit", [("dashscope", 500), ("voyage", 1000), ("cohere", 10_000)])
def test_batch_size_above_the_published_document_limit_is_refused(name, limit):
    with pytest.raises(ConfigurationError, match=f"batch_size={limit + 1} is above {name}'s limit of {limit}"):
        rerankpd.get_reranker(name, api_key=KEY, batch_size=limit + 1)


def test_budget_spans_keep_order_and_caps():
    costs = [5, 5, 5, 30, 5, 5]
    spans = budget_spans(costs, max_items=3, max_tokens=20)  # 16 tokens with the headroom
    assert spans == [(0, 3), (3, 4), (4, 6)]
    assert [i for a, b in spans for i in range(a, b)] == list(range(len(costs)))


def test_fakes_accept_documented_fields():
    with LoopbackRerankServer(api_key=KEY, dialect="cohere") as server:
        import requests

        answer = requests.post(
            server.root + "/v2/rerank",
            json={
                "model": "rerank-v3.5",
                "query": "q",
                "documents": ["a", "b"],
                "top_n": 2,
                "priority": 1,
                "max_tokens_per_doc": 100,
            },
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=5,
        )
        assert answer.status_code == 200, answer.text
    with LoopbackRerankServer(api_key=KEY, dialect="dashscope") as server:
        reranker = make("dashscope", server, model="qwen3-rerank", instruct="Retrieve passages that answer it")
        reranker.score("q", ["a", "b"])
        assert server.requests[0].body["parameters"]["instruct"] == "Retrieve passages that answer it"
        assert reranker.identity() != make("dashscope", server, model="qwen3-rerank").identity()
