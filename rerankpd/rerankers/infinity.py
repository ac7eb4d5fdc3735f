"""Infinity (michaelfeil/infinity) serving a reranker: ``POST {base_url}/rerank``.

API reference: https://michaelfeil.github.io/infinity/ and the server's schema
(``libs/infinity_emb/infinity_emb/fastapi_schemas/pymodels.py`` in michaelfeil/infinity: ``RerankInput``,
``ReRankResult``). The body is ``{"query", "documents", "return_documents", "raw_scores", "model",
"top_n"}`` with at most 2048 documents; the answer follows Cohere: ``{"object": "rerank", "results":
[{"relevance_score", "index", "document"}], "model", "usage": {"prompt_tokens", "total_tokens"}, "id",
"created"}``; errors are OpenAI-style ``{"error": {"message", "type", "code"}}`` (validation errors
FastAPI's ``{"detail": [...]}``). No key is needed unless the server was started with ``--api-key``.

Examples
--------
>>> r = InfinityReranker(model="mixedbread-ai/mxbai-rerank-xsmall-v1")
>>> r.endpoint, r.batch_size
('http://127.0.0.1:7997/rerank', 2048)
"""

from __future__ import annotations

from collections.abc import Sequence

from ..core.options import boolean
from .http.chunked import ClientChunkedReranker

__all__ = ["InfinityReranker"]


class InfinityReranker(ClientChunkedReranker):
    """An Infinity server; ``model`` picks one of the models it serves (None: its only one).

    Parameters
    ----------
    raw_scores
        True asks for raw logits instead of sigmoid scores (part of the cache identity).
    **options
        ``api_key`` (optional, ``INFINITY_API_KEY``), ``base_url`` (default ``INFINITY_BASE_URL``, else
        ``http://127.0.0.1:7997``), ``model``, ``batch_size`` (default 2048), client chunking and the
        shared options.
    """

    name = "infinity"
    default_base_url = "http://127.0.0.1:7997"
    base_url_env = "INFINITY_BASE_URL"
    key_env = ("INFINITY_API_KEY",)
    key_domains = None  # a self-hosted server's own variable: wherever base_url says
    key_required = False
    default_model = None
    default_batch_size = 2048

    def __init__(self, *, raw_scores: bool = False, **options) -> None:
        self.raw_scores = boolean("raw_scores", raw_scores)
        super().__init__(**options)

    def build_payload(self, query: str, documents: Sequence[str]) -> dict:
        body = {"query": query, "documents": list(documents), "return_documents": False, "top_n": len(documents)}
        if self.model:
            body["model"] = self.model
        return body

    def score_options(self) -> dict:
        return {"raw_scores": self.raw_scores}
