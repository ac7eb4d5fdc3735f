"""HTTP rerankers against hostile answers on the loopback server: extreme embeddings, answers too large."""

from __future__ import annotations

import json
import time
import zlib

import numpy as np
import pytest

import rerankpd
from rerankpd.errors import BadResponseError, ConfigurationError
from rerankpd.testing import LoopbackRerankServer

KEY = "sk-canary-hostile-qzxwvu"


def embeddings_answer(vectors: list[list[float]]) -> bytes:
    return json.dumps(
        {
            "object": "list",
            "model": "m",
            "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
            "usage": {"prompt_tokens": 2, "total_tokens": 2},
        }
    ).encode()


@pytest.mark.parametrize("scale", [1e20, 1e-25, 1e35, 1e-40])
def test_embeddings_far_from_unit_length_are_normalised_exactly(scale):
    with LoopbackRerankServer(api_key=KEY, dialect="openai-embeddings") as server:
        r = rerankpd.get_reranker("embeddings", api_key=KEY, base_url=server.url, model="m", max_retries=0)
        direction = np.array([3.0, 4.0, 0.0])
        server.fail_next(
            "raw", status=200, body=embeddings_answer([(direction * scale).tolist(), (-direction * scale).tolist()])
        )
        vectors = r.embed_documents(["a", "b"])
        assert vectors == pytest.approx(np.array([[0.6, 0.8, 0.0], [-0.6, -0.8, 0.0]]), abs=1e-6)
        server.fail_next("raw", status=200, body=embeddings_answer([(direction * scale).tolist()]))
        server.fail_next("raw", status=200, body=embeddings_answer([(direction * scale).tolist()]))
        assert r.score("a perfect match", ["itself"]) == pytest.approx([1.0], abs=1e-6)


def gzip_bomb(decoded_bytes: int) -> bytes:
    """A valid gzip stream of ``decoded_bytes`` spaces (JSON whitespace), about a thousandth of that on the wire."""
    squeeze = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b" " * 2**20
    parts = [squeeze.compress(block) for _ in range(decoded_bytes // len(block))]
    return b"".join(parts) + squeeze.flush()


def test_an_answer_inflating_past_the_cap_fails_at_once_and_is_not_retried():
    bomb = gzip_bomb(256 * 2**20)  # 256 MiB decoded from about 250 KB
    assert len(bomb) < 2**20
    with LoopbackRerankServer(api_key=KEY, dialect="cohere") as server:
        r = rerankpd.get_reranker(
            "cohere",
            api_key=KEY,
            base_url=server.url,
            max_answer_bytes=2**20,
            max_retries=3,
            backoff_base=0.001,
            backoff_cap=0.01,
        )
        server.fail_next("raw", status=200, body=bomb, headers={"Content-Encoding": "gzip"})
        started = time.monotonic()
        with pytest.raises(BadResponseError) as info:
            r.score("q", ["a", "b"])
        assert time.monotonic() - started < 5
        message = str(info.value)
        assert "max_answer_bytes=1048576" in message and "gzip" in message and r.endpoint in message
        assert len(server.requests) == 1  # not retried
        server.reset()
        assert len(r.score("q", ["a", "b"])) == 2  # a normal answer is far below the cap


def test_the_default_cap_is_documented_and_far_above_a_real_answer():
    from rerankpd.rerankers.http.client import MAX_ANSWER_BYTES

    r = rerankpd.get_reranker("cohere", api_key=KEY)
    assert r.max_answer_bytes == MAX_ANSWER_BYTES == 512 * 2**20
    with pytest.raises(ConfigurationError, match="max_answer_bytes"):
        rerankpd.get_reranker("cohere", api_key=KEY, max_answer_bytes=0)
