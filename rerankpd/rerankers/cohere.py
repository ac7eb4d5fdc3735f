"""Cohere's Rerank API v2: ``POST https://api.cohere.com/v2/rerank``.

API reference: https://docs.cohere.com/reference/rerank (errors: https://docs.cohere.com/reference/errors,
limits: https://docs.cohere.com/v2/docs/rate-limits). The body is ``model``, ``query``, ``documents``,
``top_n`` and the optional ``max_tokens_per_doc`` (Cohere truncates longer documents to it, default 4096);
v2 has no ``return_documents``. The answer is ``{"id", "results": [{"index", "relevance_score"}], "meta":
{"billed_units": {"search_units"}, "tokens": {...}}}`` (usage keeps both: ``search_units`` and
``tokens.input_tokens``); an error is ``{"message": "..."}``, a refused key 401 or 498 ("invalid token"). Cohere
recommends at most 1000 documents per request; trial keys get 10 rerank calls a minute.

Examples
--------
>>> r = CohereReranker(api_key="k")
>>> r.endpoint, r.model, r.batch_size
('https://api.cohere.com/v2/rerank', 'rerank-v3.5', 1000)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import config
from ..core.options import whole
from ..errors import BadResponseError
from .base import BatchResult
from .http.chunked import ClientChunkedReranker
from .http.client import scores_from_results, usage_counts

__all__ = ["CohereReranker"]


class CohereReranker(ClientChunkedReranker):
    """Cohere's rerank models (``rerank-v3.5``, ``rerank-v4.0-pro``, ...).

    Parameters
    ----------
    max_tokens_per_doc
        Cohere's own truncation length (server side); None leaves Cohere's default.
    **options
        ``api_key`` (default ``CO_API_KEY``, else ``COHERE_API_KEY``: the official SDK's order; sent only to
        Cohere's hosts and the one the environment names), ``base_url`` (default ``COHERE_BASE_URL``, else
        the SDK's ``CO_API_URL`` plus ``/v2``, else ``https://api.cohere.com/v2``), ``model``, ``batch_size`` (default 1000),
        client chunking (``max_chunks_per_doc``, ``chunk_tokens``, ``overlap_tokens``) and the shared options.
    """

    name = "cohere"
    default_base_url = "https://api.cohere.com/v2"
    base_url_env = ("COHERE_BASE_URL", "CO_API_URL")
    key_env = ("CO_API_KEY", "COHERE_API_KEY")  # the official SDK's order
    key_domains = ("cohere.com", "cohere.ai")
    auth_statuses = (401, 403, 498)  # 498: "invalid token" (the SDK's InvalidTokenError)
    default_model = "rerank-v3.5"
    default_batch_size = 1000
    max_documents = 10_000  # Cohere's maximum; it recommends at most 1,000 (the default batch)

    @classmethod
    def configured_base_url(cls) -> str | None:
        """``COHERE_BASE_URL`` (with the version, ``.../v2``), else the SDK's ``CO_API_URL`` (without it)."""
        if config.env("COHERE_BASE_URL"):
            return config.env("COHERE_BASE_URL")
        sdk_url = config.env("CO_API_URL")
        return sdk_url.rstrip("/") + "/v2" if sdk_url else None

    def __init__(self, *, max_tokens_per_doc: int | None = None, **options) -> None:
        self.max_tokens_per_doc = whole("max_tokens_per_doc", max_tokens_per_doc, minimum=1, allow_none=True)
        super().__init__(**options)

    def build_payload(self, query: str, documents: Sequence[str]) -> dict:
        return {"model": self.model, "query": query, "documents": list(documents), "top_n": len(documents)}

    def parse_response(self, data: Any, n_documents: int) -> BatchResult:
        if not isinstance(data, dict):
            raise BadResponseError(f"expected a JSON object, got {type(data).__name__}")
        meta = data.get("meta")
        if not isinstance(meta, dict):
            meta = {}
        usage = usage_counts(meta.get("billed_units"))  # what is billed, under its own names
        usage.update({f"tokens.{k}": v for k, v in usage_counts(meta.get("tokens")).items()})  # what was read
        return BatchResult(scores_from_results(data.get("results"), n_documents), usage)

    def score_options(self) -> dict:
        return {} if self.max_tokens_per_doc is None else {"max_tokens_per_doc": self.max_tokens_per_doc}
