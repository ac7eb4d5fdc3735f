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
>>> sorted(r.request_body("q", ["a"]))
['documents', 'max_chunks_per_doc', 'model', 'overlap_tokens', 'query', 'return_documents', 'top_n']
"""

from __future__ import annotations

from ..errors import ConfigurationError
from .http.server_chunked import ServerChunkedReranker

__all__ = ["SiliconFlowReranker"]


class SiliconFlowReranker(ServerChunkedReranker):
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
    key_env = ("SILICONFLOW_API_KEY",)
    key_domains = ("siliconflow.cn", "siliconflow.com")
    default_model = "BAAI/bge-reranker-v2-m3"
    default_batch_size = 64
    usage_field = "tokens"

    def __init__(self, *, instruction: str | None = None, **options) -> None:
        if instruction is not None and (not isinstance(instruction, str) or not instruction.strip()):
            raise ConfigurationError(f"instruction must be a non-empty string, got {instruction!r}")
        self.instruction = instruction
        super().__init__(**options)

    def score_options(self) -> dict:
        options = super().score_options()
        if self.instruction is not None:
            options["instruction"] = self.instruction
        return options
