"""Client-side chunking through df.rerank against a real loopback server: what is sent, max-aggregation,
the rerank_chunk column, chunks sharing the cache, failures of a chunk."""

from __future__ import annotations

import math

import pandas as pd
import pytest

import rerankpd
from rerankpd.core.chunking import ChunkSpec, split_text
from rerankpd.testing import LoopbackRerankServer, overlap_score

QUERY = "prevent a cold"
KEY = "sk-chunk-canary-93e1"
HEAD = " ".join(f"h{i}" for i in range(30))
TAIL = " ".join(f"t{i}" for i in range(30))
LONG = f"{HEAD} to prevent a cold wash hands {TAIL}"  # the relevant words sit in the middle
SHORT = "prevent a cold early"


@pytest.fixture
def server():
    with LoopbackRerankServer(dialect="jina", api_key=KEY) as srv:
        yield srv


def jina(server, **options):
    return rerankpd.get_reranker(
        "jina", api_key=KEY, base_url=server.url, backoff_base=0.01, backoff_cap=0.02, **options
    )


def test_long_documents_are_cut_and_score_their_best_chunk(server):
    spec = ChunkSpec(chunk_tokens=12, overlap_tokens=3, max_chunks=8)
    df = pd.DataFrame({"text": [LONG, SHORT, None]})
    out = df.rerank(
        QUERY,
        reranker=jina(server, max_chunks_per_doc=8, chunk_tokens=12, overlap_tokens=3),
        cache=False,
        progress=False,
        sort=False,
    )
    chunks = split_text(LONG, spec)
    assert len(chunks) > 2
    chunk_scores = [overlap_score(QUERY, c) for c in chunks]
    best = max(range(len(chunks)), key=lambda k: chunk_scores[k])
    assert best not in (0, len(chunks) - 1)  # the middle chunk wins
    assert out["rerank_score"].iloc[0] == pytest.approx(chunk_scores[best])
    assert out["rerank_score"].iloc[1] == pytest.approx(overlap_score(QUERY, SHORT))
    assert out["rerank_chunk"].tolist() == [best, 0, pd.NA]
    assert str(out["rerank_chunk"].dtype) == "Int64"
    sent = server.documents_received()
    assert sorted(sent) == sorted(chunks + [SHORT])  # chunks, not the long text; short as is
    assert LONG not in sent
    info = out.attrs["rerank"]
    assert info["unique_pairs"] == 2 and info["chunks"] == len(chunks) + 1 and info["sent"] == len(chunks) + 1


def test_no_chunk_column_without_chunking(server):
    out = pd.DataFrame({"text": [LONG]}).rerank(QUERY, reranker=jina(server), cache=False, progress=False)
    assert "rerank_chunk" not in out.columns
    assert server.documents_received() == [LONG]
    assert out.attrs["rerank"]["chunks"] is None


def test_max_chunks_caps_what_is_sent(server):
    out = pd.DataFrame({"text": [LONG]}).rerank(
        QUERY, reranker=jina(server, max_chunks_per_doc=2, chunk_tokens=10), cache=False, progress=False
    )
    sent = server.documents_received()
    assert sent == split_text(LONG, ChunkSpec(10, 0, 2)) and len(sent) == 2
    assert out["rerank_chunk"].iloc[0] in (0, 1)


def test_chunks_share_the_cache_with_plain_pairs(server, tmp_path):
    cache = tmp_path / "c"
    reranker = jina(server, max_chunks_per_doc=4, chunk_tokens=4)
    # "prevent a cold early" fits one window: the same pair, and cache entry, as without chunking
    pd.DataFrame({"text": [SHORT]}).rerank(QUERY, reranker=jina(server), cache=cache, progress=False)
    assert len(server.requests) == 1
    server.reset()
    long = f"{SHORT} and then some more words here"  # its first chunk is SHORT
    out = pd.DataFrame({"text": [SHORT, long]}).rerank(QUERY, reranker=reranker, cache=cache, progress=False)
    assert server.documents_received() == split_text(long, ChunkSpec(4, 0, 4))[1:]
    assert out.attrs["rerank"]["from_cache"] == 1
    server.reset()
    again = pd.DataFrame({"text": [SHORT, long]}).rerank(QUERY, reranker=reranker, cache=cache, progress=False)
    assert server.requests == []  # every chunk came from the cache
    assert again["rerank_score"].tolist() == out["rerank_score"].tolist()
    assert again["rerank_chunk"].tolist() == out["rerank_chunk"].tolist()


def test_identical_chunks_of_different_documents_are_sent_once(server):
    a = "alpha beta gamma delta prevent a cold"
    b = "alpha beta gamma delta something else"
    pd.DataFrame({"text": [a, b]}).rerank(
        QUERY, reranker=jina(server, max_chunks_per_doc=3, chunk_tokens=4), cache=False, progress=False
    )
    sent = server.documents_received()
    assert sent.count("alpha beta gamma delta") == 1 and len(sent) == 3


def test_a_failed_chunk_fails_its_document_under_coerce(server):
    server.fail_next("status", status=400, message="chunk rejected")
    df = pd.DataFrame({"text": [LONG]})
    out = df.rerank(
        QUERY,
        reranker=jina(server, max_chunks_per_doc=8, chunk_tokens=12, batch_size=1, max_concurrency=1),
        cache=False,
        progress=False,
        errors="coerce",
    )
    assert math.isnan(out["rerank_score"].iloc[0])  # no maximum over part of a document
    assert out["rerank_chunk"].isna().all()
    assert "chunk rejected" in out["rerank_error"].iloc[0]


def test_per_row_queries_chunk_within_each_query(server):
    df = pd.DataFrame({"q": ["prevent a cold", "wash hands"], "text": [LONG, LONG]})
    out = df.rerank(
        query_column="q",
        reranker=jina(server, max_chunks_per_doc=8, chunk_tokens=12),
        cache=False,
        progress=False,
        sort=False,
    )
    for i, q in enumerate(df["q"]):
        chunks = split_text(LONG, ChunkSpec(12, 0, 8))
        assert out["rerank_score"].iloc[i] == pytest.approx(max(overlap_score(q, c) for c in chunks))
    assert out["rerank_rank"].tolist() == [1, 1]


def test_chunking_options_on_a_server_side_chunker_are_passed_through():
    with LoopbackRerankServer(dialect="siliconflow", api_key=KEY) as server:
        r = rerankpd.get_reranker(
            "siliconflow", api_key=KEY, base_url=server.url, max_chunks_per_doc=3, overlap_tokens=20
        )
        out = pd.DataFrame({"text": [LONG]}).rerank(QUERY, reranker=r, cache=False, progress=False)
        assert server.documents_received() == [LONG]  # the server cuts it, not us
        assert server.requests[0].body["max_chunks_per_doc"] == 3
        assert "rerank_chunk" not in out.columns


def test_a_failed_chunked_run_attaches_a_document_level_partial(server):
    server.fail_on_request(2, "status", status=400, message="second request rejected")
    df = pd.DataFrame({"text": [LONG, SHORT]}, index=["long", "short"])
    with pytest.raises(rerankpd.RerankError) as info:
        df.rerank(
            QUERY,
            reranker=jina(server, max_chunks_per_doc=8, chunk_tokens=12, batch_size=1, max_concurrency=1),
            cache=False,
            progress=False,
        )
    partial = info.value.partial
    assert sorted(partial.index) == ["long", "short"]  # one row per document, not per chunk
    assert "rerank_chunk" in partial.columns
    assert partial.loc["long", "rerank_score"] != partial.loc["long", "rerank_score"]  # NaN: not fully scored
