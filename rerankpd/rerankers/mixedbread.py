"""Mixedbread's reranking API: ``POST https://api.mixedbread.com/v1/reranking``.

API reference: https://www.mixedbread.com/api-reference/endpoints/reranking. Bearer auth; the body is
``model``, ``query``, ``input`` (the documents), ``top_k``, ``return_input`` (and ``rank_fields`` for
objects, which rerankpd does not send); the answer is ``{"object": "list", "data": [{"index", "score",
"input"?, "object": "rank_result"}], "model", "usage": {...}, "top_k", "return_input"}``; an error is
``{"type", "message", "details"?}``. Documents beyond the model's context are truncated by the service; no
per-request document or token limit is published, so the default batch is 64.

Examples
--------
>>> r = MixedbreadReranker(api_key="mxb-test")
>>> r.endpoint, r.model
('https://api.mixedbread.com/v1/reranking', 'mixedbread-ai/mxbai-rerank-large-v2')
>>> r.request_body("q", ["a"])
{'model': 'mixedbread-ai/mxbai-rerank-large-v2', 'query': 'q', 'input': ['a'], 'top_k': 1, 'return_input': False}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import BadResponseError
from .base import BatchResult
from .http.answers import scores_from_results, usage_counts
from .http.chunked import ClientChunkedReranker

__all__ = ["MixedbreadReranker"]


class MixedbreadReranker(ClientChunkedReranker):
    """Mixedbread's rerankers (``mixedbread-ai/mxbai-rerank-large-v2``, ``mixedbread-ai/mxbai-rerank-base-v2``).

    Parameters
    ----------
    **options
        ``api_key`` (default ``MXBAI_API_KEY``, the official SDK's variable, sent only to Mixedbread's hosts),
        ``base_url`` (default ``MIXEDBREAD_BASE_URL``, the SDK's, else ``https://api.mixedbread.com``; the
        route is ``/v1/reranking``), ``model``, ``batch_size`` (default 64), client chunking and the shared
        options.
    """

    name = "mixedbread"
    default_base_url = "https://api.mixedbread.com"
    base_url_env = "MIXEDBREAD_BASE_URL"
    path = "/v1/reranking"
    key_env = ("MXBAI_API_KEY",)
    key_domains = ("mixedbread.com", "mixedbread.ai")
    default_model = "mixedbread-ai/mxbai-rerank-large-v2"
    default_batch_size = 64

    def build_payload(self, query: str, documents: Sequence[str]) -> dict:
        return {
            "model": self.model,
            "query": query,
            "input": list(documents),
            "top_k": len(documents),
            "return_input": False,
        }

    def parse_response(self, data: Any, n_documents: int) -> BatchResult:
        if not isinstance(data, dict):
            raise BadResponseError(f"expected a JSON object, got {type(data).__name__}")
        return BatchResult(
            scores_from_results(data.get("data"), n_documents, score_field="score"), usage_counts(data.get("usage"))
        )
