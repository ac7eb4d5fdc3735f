"""HTTP rerankers against hostile answers on the loopback server: extreme embeddings, answers too large."""
from __future__ import annotations

import json

import numpy as np
import pytest

import rerankpd
from rerankpd.testing import LoopbackRerankServer

KEY = "sk-canary-hostile-qzxwvu"


def embeddings_answer(vectors: list[list[float]]) -> bytes:
    return json.dumps({"object": "list", "model": "m",
                       "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
                       "usage": {"prompt_tokens": 2, "total_tokens": 2}}).encode()


@pytest.mark.parametrize("scale", [1e20, 1e-25, 1e35, 1e-40])
def test_embeddings_far_from_unit_length_are_normalised_exactly(scale):
    with LoopbackRerankServer(api_key=KEY, dialect="openai-embeddings") as server:
        r = rerankpd.get_reranker("embeddings", api_key=KEY, base_url=server.url, model="m", max_retries=0)
        direction = np.array([3.0, 4.0, 0.0])
        server.fail_next("raw", status=200, body=embeddings_answer([(direction * scale).tolist(),
                                                                    (-direction * scale).tolist()]))
        vectors = r.embed_documents(["a", "b"])
        assert vectors == pytest.approx(np.array([[0.6, 0.8, 0.0], [-0.6, -0.8, 0.0]]), abs=1e-6)
        server.fail_next("raw", status=200, body=embeddings_answer([(direction * scale).tolist()]))
        server.fail_next("raw", status=200, body=embeddings_answer([(direction * scale).tolist()]))
        assert r.score("a perfect match", ["itself"]) == pytest.approx([1.0], abs=1e-6)
