"""Jina AI's reranker API: ``POST https://api.jina.ai/v1/rerank``.

API reference: https://jina.ai/reranker/ (schema and limits: https://api.jina.ai/openapi.json). The body is
``model``, ``query``, ``documents``, ``top_n``, ``return_documents``; the answer ``{"model", "usage":
{"total_tokens", ...}, "results": [{"index", "relevance_score", "document"?}]}``. Errors carry the message
in ``detail`` (read by the shared :meth:`~rerankpd.rerankers.http.client.HTTPReranker.error_message`). Published
limits are per minute (free tier 500 RPM / 1M TPM); no per-request document limit is published, so the
default batch is 64.

Examples
--------
>>> r = JinaReranker(api_key="jina_test")
>>> r.endpoint, r.model
('https://api.jina.ai/v1/rerank', 'jina-reranker-v2-base-multilingual')
"""

from __future__ import annotations

from .http.chunked import ClientChunkedReranker

__all__ = ["JinaReranker"]


class JinaReranker(ClientChunkedReranker):
    """Jina's rerankers (``jina-reranker-v2-base-multilingual``, ``jina-reranker-v3``, ...).

    The request and answer are the common Cohere-style shape the shared client speaks.

    Parameters
    ----------
    **options
        ``api_key`` (default ``JINA_API_KEY``), ``base_url`` (default ``JINA_BASE_URL``, else
        ``https://api.jina.ai/v1``), ``model``, client chunking and the shared options.
    """

    name = "jina"
    default_base_url = "https://api.jina.ai/v1"
    base_url_env = "JINA_BASE_URL"
    key_env = ("JINA_API_KEY",)
    key_domains = ("jina.ai",)
    default_model = "jina-reranker-v2-base-multilingual"
    default_batch_size = 64
