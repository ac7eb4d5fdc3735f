"""Alibaba Cloud Model Studio (DashScope) text rerank:
``POST https://dashscope.aliyuncs.com/api/v1/services/rerank/text-rerank/text-rerank``.

API reference: https://help.aliyun.com/zh/model-studio/text-rerank-api (English:
https://www.alibabacloud.com/help/en/model-studio/text-rerank-api; status codes:
https://help.aliyun.com/zh/dashscope/return-status-code-description). The body nests the texts:
``{"model", "input": {"query", "documents"}, "parameters": {"top_n", "return_documents"}}``; the answer
nests the results: ``{"output": {"results": [{"index", "relevance_score"}]}, "usage": {"total_tokens"},
"request_id"}``; an error is ``{"code", "message", "request_id"}``. At most 500 documents per request,
4,000 tokens per text (longer ones are truncated by the service), and per request 30,000 tokens for
gte-rerank-v2, 120,000 for qwen3-rerank, counted as query tokens x documents + the documents' tokens:
requests are cut to fit both. ``parameters.instruct`` (qwen3-rerank) is sent as ``instruct=``.

Examples
--------
>>> r = DashScopeReranker(api_key="sk-test")
>>> r.request_body("q", ["a"])
{'model': 'gte-rerank-v2', 'input': {'query': 'q', 'documents': ['a']}, 'parameters': {'top_n': 1, 'return_documents': False}}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import BadResponseError, ConfigurationError
from .base import BatchResult
from .http.chunked import ClientChunkedReranker
from .http.client import scores_from_results, usage_counts

__all__ = ["DashScopeReranker"]


class DashScopeReranker(ClientChunkedReranker):
    """DashScope's text rerank models (``gte-rerank-v2``, ``qwen3-rerank``).

    Parameters
    ----------
    **options
        ``api_key`` (default ``DASHSCOPE_API_KEY``), ``base_url`` (default ``DASHSCOPE_BASE_URL``, else the
        SDK's ``DASHSCOPE_HTTP_BASE_URL``, else ``https://dashscope.aliyuncs.com/api/v1``; the international endpoint is
        ``https://dashscope-intl.aliyuncs.com/api/v1``), ``model``, ``batch_size`` (default 500, at most 500),
        ``max_request_tokens`` (default the model's published cap), client chunking and the shared options.
    instruct
        qwen3-rerank's task instruction (``parameters.instruct``), e.g. ``"Given a web search query, retrieve
        relevant passages that answer the query"``; it changes the scores, so it is part of the cache identity.
    """

    name = "dashscope"
    default_base_url = "https://dashscope.aliyuncs.com/api/v1"
    base_url_env = ("DASHSCOPE_BASE_URL", "DASHSCOPE_HTTP_BASE_URL")  # ours, then the official SDK's
    path = "/services/rerank/text-rerank/text-rerank"
    key_env = ("DASHSCOPE_API_KEY",)
    key_domains = ("dashscope.aliyuncs.com", "dashscope-intl.aliyuncs.com")
    default_model = "gte-rerank-v2"
    default_batch_size = 500
    max_documents = 500
    #: Published tokens per request by model (query tokens x documents + the documents' tokens); a model not
    #: listed gets the smallest.
    request_tokens_by_model = {"gte-rerank-v2": 30_000, "qwen3-rerank": 120_000}

    def __init__(self, *, instruct: str | None = None, **options) -> None:
        if instruct is not None and (not isinstance(instruct, str) or not instruct.strip()):
            raise ConfigurationError(f"instruct must be a non-empty string, got {instruct!r}")
        self.instruct = instruct
        super().__init__(**options)

    def request_limits(self) -> tuple[int | None, int | None]:
        return self.max_documents, self.request_tokens_by_model.get(
            self.model or "", min(self.request_tokens_by_model.values())
        )

    def score_options(self) -> dict:
        return {} if self.instruct is None else {"instruct": self.instruct}

    def request_body(self, query: str, documents: Sequence[str]) -> dict:
        body = self.build_payload(query, documents)
        body["parameters"].update(self.score_options())  # DashScope's options live in "parameters"
        return body

    def build_payload(self, query: str, documents: Sequence[str]) -> dict:
        return {
            "model": self.model,
            "input": {"query": query, "documents": list(documents)},
            "parameters": {"top_n": len(documents), "return_documents": False},
        }

    def parse_response(self, data: Any, n_documents: int) -> BatchResult:
        if not isinstance(data, dict) or not isinstance(data.get("output"), dict):
            raise BadResponseError("expected a JSON object with an 'output' object")
        return BatchResult(
            scores_from_results(data["output"].get("results"), n_documents), usage_counts(data.get("usage"))
        )

    def error_message(self, data: Any, text: str) -> str:
        if isinstance(data, dict) and data.get("message"):
            code = data.get("code")
            return f"{code}: {data['message']}" if code else str(data["message"])
        return super().error_message(data, text)
