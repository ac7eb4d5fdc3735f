"""Alibaba Cloud Model Studio (DashScope) text rerank:
``POST https://dashscope.aliyuncs.com/api/v1/services/rerank/text-rerank/text-rerank``.

API reference: https://help.aliyun.com/zh/model-studio/text-rerank-api (English:
https://www.alibabacloud.com/help/en/model-studio/text-rerank-api; status codes:
https://help.aliyun.com/zh/dashscope/return-status-code-description). The body nests the texts:
``{"model", "input": {"query", "documents"}, "parameters": {"top_n", "return_documents"}}``; the answer
nests the results: ``{"output": {"results": [{"index", "relevance_score"}]}, "usage": {"total_tokens"},
"request_id"}``; an error is ``{"code", "message", "request_id"}``. At most 500 documents per request,
4,000 tokens per text (longer ones are truncated by the service), 30,000 tokens per request.

Examples
--------
>>> r = DashScopeReranker(api_key="sk-test")
>>> r.request_body("q", ["a"])
{'model': 'gte-rerank-v2', 'input': {'query': 'q', 'documents': ['a']}, 'parameters': {'top_n': 1, 'return_documents': False}}
"""
from __future__ import annotations

from typing import Any, Sequence

from ..errors import BadResponseError
from .base import BatchResult
from .http.chunked import ClientChunkedReranker
from .http.client import scores_from_results, usage_counts

__all__ = ["DashScopeReranker"]


class DashScopeReranker(ClientChunkedReranker):
    """DashScope's text rerank models (``gte-rerank-v2``, ``qwen3-rerank``).

    Parameters
    ----------
    **options
        ``api_key`` (default ``DASHSCOPE_API_KEY``), ``base_url`` (default ``DASHSCOPE_BASE_URL``, else
        ``https://dashscope.aliyuncs.com/api/v1``; the international endpoint is
        ``https://dashscope-intl.aliyuncs.com/api/v1``), ``model``, ``batch_size`` (default 500), client
        chunking and the shared options.
    """

    name = "dashscope"
    default_base_url = "https://dashscope.aliyuncs.com/api/v1"
    base_url_env = "DASHSCOPE_BASE_URL"
    path = "/services/rerank/text-rerank/text-rerank"
    key_env = ("DASHSCOPE_API_KEY",)
    default_model = "gte-rerank-v2"
    default_batch_size = 500

    def build_payload(self, query: str, documents: Sequence[str]) -> dict:
        return {"model": self.model, "input": {"query": query, "documents": list(documents)},
                "parameters": {"top_n": len(documents), "return_documents": False}}

    def parse_response(self, data: Any, n_documents: int) -> BatchResult:
        if not isinstance(data, dict) or not isinstance(data.get("output"), dict):
            raise BadResponseError("expected a JSON object with an 'output' object")
        return BatchResult(scores_from_results(data["output"].get("results"), n_documents),
                           usage_counts(data.get("usage")))

    def error_message(self, data: Any, text: str) -> str:
        if isinstance(data, dict) and data.get("message"):
            code = data.get("code")
            return f"{code}: {data['message']}" if code else str(data["message"])
        return super().error_message(data, text)
