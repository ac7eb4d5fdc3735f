"""Pinecone's hosted rerankers: ``POST https://api.pinecone.io/rerank``.

API reference: https://docs.pinecone.io/reference/api/2025-04/inference/rerank (models and limits:
https://docs.pinecone.io/guides/search/rerank-results). The key goes in an ``Api-Key`` header, with the API
version in ``X-Pinecone-Api-Version``. The body is ``model``, ``query``, ``documents`` (objects; each text as
``{"text": ...}``, and ``rank_fields: ["text"]``, as the official SDK sends them), ``top_n``, ``return_documents`` and the model's
``parameters`` (``truncate``: ``"END"`` or ``"NONE"``); the answer is ``{"model", "data": [{"index",
"score", "document"?}], "usage": {"rerank_units"}}``; an error is ``{"error": {"code", "message"},
"status"}``. Per request: bge-reranker-v2-m3 and pinecone-rerank-v0 take at most 100 documents,
cohere-rerank-3.5 200; a query with one document may hold 1,024 tokens (bge-reranker-v2-m3), 512
(pinecone-rerank-v0) or 40,000 (cohere-rerank-3.5), truncated at the end unless ``truncate="NONE"``.

Examples
--------
>>> r = PineconeReranker(api_key="pcsk-test")
>>> r.endpoint, r.model, r.batch_size
('https://api.pinecone.io/rerank', 'bge-reranker-v2-m3', 100)
>>> r.request_body("q", ["a"])
{'model': 'bge-reranker-v2-m3', 'query': 'q', 'documents': [{'text': 'a'}], 'rank_fields': ['text'], 'top_n': 1, 'return_documents': False}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..core.options import one_of
from ..errors import BadResponseError, ConfigurationError
from .base import BatchResult
from .http.answers import scores_from_results, usage_counts
from .http.chunked import ClientChunkedReranker

__all__ = ["API_VERSION", "PineconeReranker"]

#: The ``X-Pinecone-Api-Version`` sent unless ``api_version=`` says otherwise.
API_VERSION = "2025-04"

#: Published documents per request by model; a model not listed gets the smallest.
MAX_DOCUMENTS = {"bge-reranker-v2-m3": 100, "pinecone-rerank-v0": 100, "cohere-rerank-3.5": 200}


class PineconeReranker(ClientChunkedReranker):
    """Pinecone's hosted rerank models (``bge-reranker-v2-m3``, ``pinecone-rerank-v0``, ``cohere-rerank-3.5``).

    Parameters
    ----------
    truncate
        ``"END"`` (Pinecone's default: an over-long query-document pair is cut at the end) or ``"NONE"`` (it is
        refused); None sends nothing.
    api_version
        The ``X-Pinecone-Api-Version`` header (default :data:`API_VERSION`).
    **options
        ``api_key`` (default ``PINECONE_API_KEY``, sent only to ``*.pinecone.io`` and the host the environment
        names), ``base_url`` (default ``PINECONE_BASE_URL``, else the SDK's ``PINECONE_CONTROLLER_HOST``, else
        ``https://api.pinecone.io``), ``model``, ``batch_size`` (default and at most the model's limit: 100
        for bge-reranker-v2-m3), client chunking and the shared options.
    """

    name = "pinecone"
    default_base_url = "https://api.pinecone.io"
    base_url_env = ("PINECONE_BASE_URL", "PINECONE_CONTROLLER_HOST")
    path = "/rerank"
    key_env = ("PINECONE_API_KEY",)
    key_domains = ("pinecone.io",)
    default_model = "bge-reranker-v2-m3"
    default_batch_size = 100
    results_field = "data"

    def __init__(self, *, truncate: str | None = None, api_version: str = API_VERSION, **options) -> None:
        self.truncate = None if truncate is None else one_of("truncate", truncate, ("END", "NONE"))
        if not isinstance(api_version, str) or not api_version.strip():
            raise ConfigurationError(f"api_version must be a date such as {API_VERSION!r}, got {api_version!r}")
        self.api_version = api_version.strip()
        if "batch_size" not in options:
            options["batch_size"] = MAX_DOCUMENTS.get(
                options.get("model") or self.default_model, min(MAX_DOCUMENTS.values())
            )
        super().__init__(**options)

    def request_limits(self) -> tuple[int | None, int | None]:
        return MAX_DOCUMENTS.get(self.model or "", min(MAX_DOCUMENTS.values())), None

    def build_payload(self, query: str, documents: Sequence[str]) -> dict:
        return {
            "model": self.model,
            "query": query,
            "documents": [{"text": d} for d in documents],
            "rank_fields": ["text"],
            "top_n": len(documents),
            "return_documents": False,
        }

    def score_options(self) -> dict:
        return {} if self.truncate is None else {"parameters": {"truncate": self.truncate}}

    def parse_response(self, data: Any, n_documents: int) -> BatchResult:
        if not isinstance(data, dict):
            raise BadResponseError(f"expected a JSON object, got {type(data).__name__}")
        return BatchResult(
            scores_from_results(data.get("data"), n_documents, score_field="score"), usage_counts(data.get("usage"))
        )

    def _headers(self) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "X-Pinecone-Api-Version": self.api_version,
        }
        if self._api_key:
            headers["Api-Key"] = self._api_key.reveal()
        return headers
