"""Voyage AI's reranker API: ``POST https://api.voyageai.com/v1/rerank``.

API reference: https://docs.voyageai.com/reference/reranker-api (errors:
https://docs.voyageai.com/docs/error-codes, limits: https://docs.voyageai.com/docs/rate-limits). The body is
``query``, ``documents`` (at most 1,000), ``model``, ``top_k`` (not ``top_n``), ``return_documents`` and
``truncation`` (default true on Voyage's side); the answer is ``{"object": "list", "data": [{"index",
"relevance_score"}], "model", "usage": {"total_tokens"}}`` -- the results live in ``data``.

Examples
--------
>>> r = VoyageReranker(api_key="pa-test")
>>> r.request_body("q", ["a", "b"])["top_k"], r.batch_size
(2, 1000)
"""
from __future__ import annotations

from typing import Sequence

from ..core.options import boolean
from .http.chunked import ClientChunkedReranker

__all__ = ["VoyageReranker"]


class VoyageReranker(ClientChunkedReranker):
    """Voyage's rerankers (``rerank-2.5``, ``rerank-2.5-lite``, ``rerank-2``, ...).

    Parameters
    ----------
    truncation
        Voyage's ``truncation`` flag: True truncates over-long inputs on the server, False makes Voyage
        reject them. None (default) leaves Voyage's default (True) and sends nothing.
    **options
        ``api_key`` (default ``VOYAGE_API_KEY``), ``base_url`` (default ``VOYAGE_BASE_URL``, else
        ``https://api.voyageai.com/v1``), ``model``, ``batch_size`` (default 1000), client chunking and the
        shared options.
    """

    name = "voyage"
    default_base_url = "https://api.voyageai.com/v1"
    base_url_env = "VOYAGE_BASE_URL"
    key_env = ("VOYAGE_API_KEY",)
    default_model = "rerank-2.5"
    default_batch_size = 1000
    results_field = "data"

    def __init__(self, *, truncation: bool | None = None, **options) -> None:
        self.truncation = None if truncation is None else boolean("truncation", truncation)
        super().__init__(**options)

    def build_payload(self, query: str, documents: Sequence[str]) -> dict:
        return {"query": query, "documents": list(documents), "model": self.model,
                "top_k": len(documents), "return_documents": False}

    def score_options(self) -> dict:
        return {} if self.truncation is None else {"truncation": self.truncation}
