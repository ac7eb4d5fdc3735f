"""Voyage AI's reranker API: ``POST https://api.voyageai.com/v1/rerank``.

API reference: https://docs.voyageai.com/reference/reranker-api (errors:
https://docs.voyageai.com/docs/error-codes, limits: https://docs.voyageai.com/docs/rate-limits). The body is
``query``, ``documents`` (at most 1,000), ``model``, ``top_k`` (not ``top_n``), ``return_documents`` and
``truncation`` (default true on Voyage's side); per request at most 600,000 tokens (rerank-2.5, rerank-2 and
their lite models; rerank-lite-1 300,000, rerank-1 100,000), counted as query tokens x documents + the
documents' tokens, so requests are cut by tokens as well as by count; the answer is ``{"object": "list", "data": [{"index",
"relevance_score"}], "model", "usage": {"total_tokens"}}`` -- the results live in ``data``.

Examples
--------
>>> r = VoyageReranker(api_key="pa-test")
>>> r.request_body("q", ["a", "b"])["top_k"], r.batch_size
(2, 1000)
"""

from __future__ import annotations

from collections.abc import Sequence

from ..core.options import boolean
from .http.chunked import ClientChunkedReranker

__all__ = ["MONGODB_BASE_URL", "VoyageReranker"]

#: Where Voyage's models are served for MongoDB Atlas keys (``al-...``).
MONGODB_BASE_URL = "https://ai.mongodb.com/v1"


class VoyageReranker(ClientChunkedReranker):
    """Voyage's rerankers (``rerank-2.5``, ``rerank-2.5-lite``, ``rerank-2``, ...).

    Parameters
    ----------
    truncation
        Voyage's ``truncation`` flag: True truncates over-long inputs on the server, False makes Voyage
        reject them. None (default) leaves Voyage's default (True) and sends nothing.
    **options
        ``api_key`` (default ``VOYAGE_API_KEY``), ``base_url`` (default ``VOYAGE_BASE_URL``, else
        ``https://ai.mongodb.com/v1`` for a MongoDB Atlas key (``al-...``), else ``https://api.voyageai.com/v1``), ``model``, ``batch_size`` (default 1000), client chunking and the
        shared options.
    """

    name = "voyage"
    default_base_url = "https://api.voyageai.com/v1"
    base_url_env = "VOYAGE_BASE_URL"
    key_env = ("VOYAGE_API_KEY",)
    key_domains = ("voyageai.com", "ai.mongodb.com")
    default_model = "rerank-2.5"
    default_batch_size = 1000
    results_field = "data"
    max_documents = 1000
    #: Published tokens per request by model (query tokens x documents + the documents' tokens).
    request_tokens_by_model = {
        "rerank-2.5": 600_000,
        "rerank-2.5-lite": 600_000,
        "rerank-2": 600_000,
        "rerank-2-lite": 600_000,
        "rerank-1": 100_000,
        "rerank-lite-1": 300_000,
    }

    def request_limits(self) -> tuple[int | None, int | None]:
        return self.max_documents, self.request_tokens_by_model.get(self.model or "", 100_000)

    def default_base_for(self, key: str | None) -> str:
        """MongoDB Atlas keys (``al-...``) belong to ``https://ai.mongodb.com/v1``, as in the official SDK."""
        return MONGODB_BASE_URL if isinstance(key, str) and key.strip().startswith("al-") else self.default_base_url

    def __init__(self, *, truncation: bool | None = None, **options) -> None:
        self.truncation = None if truncation is None else boolean("truncation", truncation)
        super().__init__(**options)

    def build_payload(self, query: str, documents: Sequence[str]) -> dict:
        # return_documents is left at Voyage's default (false), as the official SDK leaves it
        return {"query": query, "documents": list(documents), "model": self.model, "top_k": len(documents)}

    def score_options(self) -> dict:
        return {} if self.truncation is None else {"truncation": self.truncation}
