"""SiliconFlow's rerank API: ``POST https://api.siliconflow.cn/v1/rerank``.

API reference: https://docs.siliconflow.cn/en/api-reference/rerank/create-rerank (errors:
https://docs.siliconflow.cn/faqs/error-code). The body is Cohere-like (``model``, ``query``, ``documents``,
``top_n``, ``return_documents``) plus server-side chunking for the bge/bce rerankers:
``max_chunks_per_doc`` and ``overlap_tokens`` (0 to 80), passed through as given, and ``instruction`` for
the Qwen3 rerankers. The answer is ``{"id", "results": [{"index", "relevance_score"}], "tokens":
{"input_tokens", "output_tokens"}}``; an error is ``{"code", "message", "data"}``.

Examples
--------
>>> r = SiliconFlowReranker(api_key="sk-test", max_chunks_per_doc=4, overlap_tokens=40)
>>> r.endpoint, r.model
('https://api.siliconflow.cn/v1/rerank', 'BAAI/bge-reranker-v2-m3')
>>> sorted(r.build_payload("q", ["a"]))
['documents', 'max_chunks_per_doc', 'model', 'overlap_tokens', 'query', 'return_documents', 'top_n']
"""
from __future__ import annotations

from typing import Any, Sequence

from ..errors import BadResponseError, ConfigurationError
from .base import BatchResult
from .http import HTTPReranker, scores_from_results, usage_counts

__all__ = ["SiliconFlowReranker"]


class SiliconFlowReranker(HTTPReranker):
    """SiliconFlow's rerank API (``bge-reranker-v2-m3``, ``bce-reranker-base_v1``, Qwen3 rerankers).

    Parameters
    ----------
    max_chunks_per_doc
        Chunks a long document is cut into on the server (bge/bce models only); its score is its best chunk's.
    overlap_tokens
        Tokens shared by neighbouring chunks on the server, 0 to 80.
    instruction
        Instruction for the Qwen3 rerankers.
    **options
        ``api_key`` (default ``SILICONFLOW_API_KEY``), ``base_url`` (default ``SILICONFLOW_BASE_URL``, else
        ``https://api.siliconflow.cn/v1``), ``model``, ``batch_size``, ``max_concurrency``, ``timeout``,
        ``max_retries``, ``auth_scheme``.
    """

    name = "siliconflow"
    default_base_url = "https://api.siliconflow.cn/v1"
    base_url_env = "SILICONFLOW_BASE_URL"
    path = "/rerank"
    key_env = ("SILICONFLOW_API_KEY",)
    default_model = "BAAI/bge-reranker-v2-m3"
    default_batch_size = 64

    def __init__(self, *, max_chunks_per_doc: int | None = None, overlap_tokens: int | None = None,
                 instruction: str | None = None, **options) -> None:
        if max_chunks_per_doc is not None and (
                not isinstance(max_chunks_per_doc, int) or isinstance(max_chunks_per_doc, bool)
                or max_chunks_per_doc < 1):
            raise ConfigurationError(f"max_chunks_per_doc must be a whole number >= 1, got {max_chunks_per_doc!r}")
        if overlap_tokens is not None and (
                not isinstance(overlap_tokens, int) or isinstance(overlap_tokens, bool)
                or not 0 <= overlap_tokens <= 80):
            raise ConfigurationError(f"overlap_tokens must be a whole number from 0 to 80, got {overlap_tokens!r}")
        if instruction is not None and (not isinstance(instruction, str) or not instruction.strip()):
            raise ConfigurationError(f"instruction must be a non-empty string, got {instruction!r}")
        self.max_chunks_per_doc = max_chunks_per_doc
        self.overlap_tokens = overlap_tokens
        self.instruction = instruction
        super().__init__(**options)

    def build_payload(self, query: str, documents: Sequence[str]) -> dict:
        body = {"model": self.model, "query": query, "documents": list(documents),
                "top_n": len(documents), "return_documents": False}
        body.update(self.score_options())
        return body

    def parse_response(self, data: Any, n_documents: int) -> BatchResult:
        if not isinstance(data, dict):
            raise BadResponseError(f"expected a JSON object, got {type(data).__name__}")
        return BatchResult(scores_from_results(data.get("results"), n_documents), usage_counts(data.get("tokens")))

    def score_options(self) -> dict:
        options: dict = {}
        if self.max_chunks_per_doc is not None:
            options["max_chunks_per_doc"] = self.max_chunks_per_doc
        if self.overlap_tokens is not None:
            options["overlap_tokens"] = self.overlap_tokens
        if self.instruction is not None:
            options["instruction"] = self.instruction
        return options
