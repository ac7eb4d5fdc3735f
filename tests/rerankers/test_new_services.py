"""Pinecone, NVIDIA NIM and Mixedbread: in the registry, the command line, the panel and estimate, with their
published limits (the wire format itself is checked with every provider in test_providers.py)."""

from __future__ import annotations

import pandas as pd
import pytest

import rerankpd
from rerankpd.errors import BadRequestError, ConfigurationError
from rerankpd.testing import LoopbackRerankServer

KEY = "sk-new-services"
NEW = ("pinecone", "nim", "mixedbread")


def test_new_services_are_everywhere_a_reranker_is_chosen():
    from rerankpd.cli.commands import _parser
    from rerankpd.notebook.panel import reranker_choices

    assert set(NEW) <= set(rerankpd.available_rerankers())
    assert set(NEW) <= {name for _, name in reranker_choices()}
    rank = _parser().parse_args(["rank", "in.csv", "-q", "x", "-r", "pinecone"])
    assert rank.reranker == "pinecone"


def test_estimate_counts_pinecones_100_document_requests(monkeypatch):
    monkeypatch.delenv("PINECONE_API_KEY", raising=False)
    df = pd.DataFrame({"text": [f"doc {i}" for i in range(250)]})
    with pytest.warns(RuntimeWarning, match="PINECONE_API_KEY"):
        est = df.rerank.estimate("q", reranker="pinecone", cache=False)
    assert est.requests == 3 and est.to_score == 250
    est = df.rerank.estimate(
        "q", reranker=rerankpd.get_reranker("pinecone", api_key=KEY, model="cohere-rerank-3.5"), cache=False
    )
    assert est.requests == 2  # 200 documents per request for cohere-rerank-3.5


def test_pinecone_limits_are_per_model():
    assert rerankpd.get_reranker("pinecone", api_key=KEY).batch_size == 100
    assert rerankpd.get_reranker("pinecone", api_key=KEY, model="cohere-rerank-3.5").batch_size == 200
    with pytest.raises(ConfigurationError, match="limit of 100 documents"):
        rerankpd.get_reranker("pinecone", api_key=KEY, batch_size=101)
    with pytest.raises(ConfigurationError, match="truncate"):
        rerankpd.get_reranker("pinecone", api_key=KEY, truncate="START")


def test_pinecone_truncate_none_is_sent_and_the_fake_refuses_an_over_long_pair():
    with LoopbackRerankServer(api_key=KEY, dialect="pinecone") as server:
        strict = rerankpd.get_reranker("pinecone", api_key=KEY, base_url=server.url, truncate="NONE")
        with pytest.raises(BadRequestError, match="at most 1024"):
            strict.score("q", ["word " * 1200])
        assert server.requests[-1].body["parameters"] == {"truncate": "NONE"}
        lenient = rerankpd.get_reranker("pinecone", api_key=KEY, base_url=server.url, truncate="END")
        assert lenient.score("q", ["word " * 1200])
        assert strict.identity() != lenient.identity()


def test_nim_hosted_route_key_and_passage_limit(monkeypatch):
    monkeypatch.setenv("NVIDIA_API_KEY", KEY)
    hosted = rerankpd.get_reranker(
        "nim", base_url="https://ai.api.nvidia.com/v1/retrieval/nvidia/llama-3_2-nv-rerankqa-1b-v2"
    )
    assert hosted.endpoint.endswith("/llama-3_2-nv-rerankqa-1b-v2/reranking") and hosted.has_key
    assert not rerankpd.get_reranker("nim").has_key  # a self-hosted NIM on localhost never gets NVIDIA's key
    with pytest.raises(ConfigurationError, match="limit of 512"):
        rerankpd.get_reranker("nim", batch_size=513)
    with LoopbackRerankServer(dialect="nim") as server:
        nim = rerankpd.get_reranker("nim", base_url=server.url)
        with pytest.raises(BadRequestError, match="set truncate to END"):
            nim.score("q", ["x" * 40_000])
        assert rerankpd.get_reranker("nim", base_url=server.url, truncate="END").score("q", ["x" * 40_000])


def test_mixedbread_reads_the_sdks_variables(monkeypatch):
    with LoopbackRerankServer(api_key=KEY, dialect="mixedbread") as server:
        monkeypatch.setenv("MXBAI_API_KEY", KEY)
        monkeypatch.setenv("MIXEDBREAD_BASE_URL", server.root)  # the SDK's: without /v1
        reranker = rerankpd.get_reranker("mixedbread")
        assert reranker.endpoint == server.root + "/v1/reranking"
        assert reranker.score("q", ["a", "b"])
