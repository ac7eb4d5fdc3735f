"""vLLM's OpenAI-compatible server running a cross-encoder: ``POST {base_url}/rerank`` (``/v1/rerank``).

API reference: https://docs.vllm.ai/en/stable/serving/openai_compatible_server.html#re-rank-api (schema:
``RerankRequest``/``RerankResponse`` in ``vllm/entrypoints/openai/protocol.py``). It is Jina/Cohere
compatible: the body is ``{"model", "query", "documents", "top_n", "truncate_prompt_tokens"}``
(``top_n`` 0 means all); the answer is ``{"id", "model", "usage": {"prompt_tokens", "total_tokens"},
"results": [{"index", "document": {"text"}, "relevance_score"}]}``; errors are ``{"error": {"message",
"type", "code"}}`` (older releases: flat ``{"object": "error", "message", ...}``). No key is needed unless
the server was started with ``--api-key``.

Examples
--------
>>> r = VLLMReranker(model="BAAI/bge-reranker-v2-m3")
>>> r.endpoint
'http://127.0.0.1:8000/v1/rerank'
>>> r.request_body("q", ["a", "b"])
{'query': 'q', 'documents': ['a', 'b'], 'top_n': 2, 'model': 'BAAI/bge-reranker-v2-m3'}
"""

from __future__ import annotations

from collections.abc import Sequence

from ..core.options import whole
from ..errors import ConfigurationError
from .http.chunked import ClientChunkedReranker

__all__ = ["VLLMReranker"]


class VLLMReranker(ClientChunkedReranker):
    """A vLLM server (``vllm serve <reranker model>``); ``model`` is the served model's name.

    Parameters
    ----------
    truncate_prompt_tokens
        vLLM's ``truncate_prompt_tokens``: cut each (query, document) prompt to this many tokens on the
        server (-1: the model's maximum). None (default) sends nothing.
    **options
        ``api_key`` (optional, ``VLLM_API_KEY``), ``base_url`` (default ``VLLM_BASE_URL``, else
        ``http://127.0.0.1:8000/v1``), ``model``, client chunking and the shared options.
    """

    name = "vllm"
    default_base_url = "http://127.0.0.1:8000/v1"
    base_url_env = "VLLM_BASE_URL"
    key_env = ("VLLM_API_KEY",)
    key_domains = None  # a self-hosted server's own variable: wherever base_url says
    key_required = False
    default_model = None
    default_batch_size = 64

    def __init__(self, *, truncate_prompt_tokens: int | None = None, **options) -> None:
        self.truncate_prompt_tokens = whole(
            "truncate_prompt_tokens", truncate_prompt_tokens, minimum=-1, allow_none=True
        )
        if self.truncate_prompt_tokens == 0:
            raise ConfigurationError(
                "truncate_prompt_tokens must be -1 (the model's maximum) or a whole number >= 1, got 0"
            )
        super().__init__(**options)

    def build_payload(self, query: str, documents: Sequence[str]) -> dict:
        body: dict = {"query": query, "documents": list(documents), "top_n": len(documents)}
        if self.model:
            body["model"] = self.model
        return body

    def score_options(self) -> dict:
        return {} if self.truncate_prompt_tokens is None else {"truncate_prompt_tokens": self.truncate_prompt_tokens}
