"""The official SDKs as oracles: each parses the loopback fake's answer to the scores rerankpd reads, and
rerankpd's request equals the SDK's field by field.

``pinecone`` and ``mixedbread`` are in the ``test`` extra. ``cohere`` (heavy) is used when installed; the
others (``voyageai``, ``dashscope``, ``openai``) are compared by ``benchmarks/sdk_oracles.py``.
"""

from __future__ import annotations

import pytest

import rerankpd
from rerankpd.testing import LoopbackRerankServer

KEY = "sk-oracle-6b0d"
QUERY = "how to prevent a cold"
DOCS = ["stock prices fell", "wash hands to prevent a cold", "cold weather ahead", "prevent a cold: sleep"]


def _ours(name, server, **options):
    reranker = rerankpd.get_reranker(name, api_key=KEY, base_url=server.url, **options)
    scores = reranker.score(QUERY, DOCS)
    return scores, server.requests[-1]


def test_pinecone_sdk_matches():
    pinecone = pytest.importorskip("pinecone", reason="in the test extra: pip install -e '.[test]'")
    with LoopbackRerankServer(api_key=KEY, dialect="pinecone") as server:
        client = pinecone.Pinecone(api_key=KEY, host=server.root)
        answer = client.inference.rerank(
            model="bge-reranker-v2-m3",
            query=QUERY,
            documents=DOCS,
            top_n=len(DOCS),
            return_documents=False,
            parameters={"truncate": "END"},
        )
        sdk = server.requests[-1]
        scores, ours = _ours("pinecone", server, truncate="END")
    assert ours.body == sdk.body  # field by field
    assert ours.path == sdk.path == "/rerank"
    assert ours.headers["Api-Key"] == sdk.headers["Api-Key"] == KEY
    assert ours.headers["X-Pinecone-Api-Version"] and sdk.headers["X-Pinecone-Api-Version"]
    assert {d.index: d.score for d in answer.data} == dict(enumerate(scores))
    assert answer.usage.rerank_units == 1


def test_mixedbread_sdk_matches():
    mixedbread = pytest.importorskip("mixedbread", reason="in the test extra: pip install -e '.[test]'")
    with LoopbackRerankServer(api_key=KEY, dialect="mixedbread") as server:
        client = mixedbread.Mixedbread(api_key=KEY, base_url=server.root, max_retries=0)
        answer = client.rerank(
            model="mixedbread-ai/mxbai-rerank-large-v2", query=QUERY, input=DOCS, top_k=len(DOCS), return_input=False
        )
        sdk = server.requests[-1]
        scores, ours = _ours("mixedbread", server)
    assert ours.body == sdk.body
    assert ours.path == sdk.path == "/v1/reranking"
    assert ours.headers["Authorization"] == sdk.headers["Authorization"] == f"Bearer {KEY}"
    assert {d.index: d.score for d in answer.data} == dict(enumerate(scores))
    assert answer.usage.total_tokens > 0


def test_cohere_sdk_matches_and_its_documented_fields_are_accepted():
    cohere = pytest.importorskip("cohere", reason="optional oracle (heavy): pip install cohere")
    with LoopbackRerankServer(api_key=KEY, dialect="cohere") as server:
        client = cohere.ClientV2(api_key=KEY, base_url=server.root)
        answer = client.rerank(
            model="rerank-v3.5", query=QUERY, documents=DOCS, top_n=len(DOCS), max_tokens_per_doc=512
        )
        sdk = server.requests[-1]
        client.rerank(model="rerank-v3.5", query=QUERY, documents=DOCS, priority=5)  # accepted, as Cohere does
        scores, ours = _ours("cohere", server, max_tokens_per_doc=512)
    assert ours.body == sdk.body
    assert {r.index: r.relevance_score for r in answer.results} == dict(enumerate(scores))
    assert answer.meta.billed_units.search_units == 1 and answer.meta.tokens.input_tokens > 0
