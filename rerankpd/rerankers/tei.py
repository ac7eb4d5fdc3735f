"""Hugging Face Text Embeddings Inference (TEI) serving a reranker: ``POST {base_url}/rerank``.

API reference: https://huggingface.github.io/text-embeddings-inference/ (the OpenAPI of the router,
``docs/openapi.json`` in huggingface/text-embeddings-inference) and
https://huggingface.co/docs/text-embeddings-inference/cli_arguments. The body is ``{"query", "texts",
"raw_scores", "truncate", "return_text"}`` -- ``texts``, not ``documents``, and no model or top-n; the
answer is a bare JSON array ``[{"index", "score"}]`` sorted by score; an error is ``{"error", "error_type"}``
(413 batch too large, 422 tokenization, 424 inference, 429 overloaded). The server takes at most
``--max-client-batch-size`` texts per request, 32 by default, hence the default batch. TEI needs no key;
one started with ``--api-key`` wants ``Authorization: Bearer <key>``.

Examples
--------
>>> r = TEIReranker()
>>> r.endpoint, r.batch_size, r.has_key
('http://127.0.0.1:8080/rerank', 32, False)
>>> r.request_body("q", ["a"])
{'query': 'q', 'texts': ['a'], 'return_text': False, 'raw_scores': False}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..core.options import boolean
from .base import BatchResult
from .http.chunked import ClientChunkedReranker
from .http.client import scores_from_results

__all__ = ["TEIReranker"]


class TEIReranker(ClientChunkedReranker):
    """A TEI server running a cross-encoder (``BAAI/bge-reranker-v2-m3`` and the like).

    Parameters
    ----------
    raw_scores
        True asks TEI for raw logits instead of sigmoid-normalised scores (changes the scores, so it is
        part of the cache identity).
    truncate
        TEI's ``truncate``: True cuts over-long inputs to the model's length; None (default) sends nothing,
        and TEI then rejects them (422).
    **options
        ``api_key`` (optional, ``TEI_API_KEY``), ``base_url`` (default ``TEI_BASE_URL``, else
        ``http://127.0.0.1:8080``), ``model`` (a label for the cache identity only: TEI serves one model),
        ``batch_size`` (default 32), client chunking and the shared options.
    """

    name = "tei"
    default_base_url = "http://127.0.0.1:8080"
    base_url_env = "TEI_BASE_URL"
    key_env = ("TEI_API_KEY",)
    key_domains = None  # a self-hosted server's own variable: wherever base_url says
    key_required = False
    default_model = None
    default_batch_size = 32

    def __init__(self, *, raw_scores: bool = False, truncate: bool | None = None, **options) -> None:
        self.raw_scores = boolean("raw_scores", raw_scores)
        self.truncate = None if truncate is None else boolean("truncate", truncate)
        super().__init__(**options)

    def build_payload(self, query: str, documents: Sequence[str]) -> dict:
        return {"query": query, "texts": list(documents), "return_text": False}

    def parse_response(self, data: Any, n_documents: int) -> BatchResult:
        return BatchResult(scores_from_results(data, n_documents, score_field="score"), {})

    def error_message(self, data: Any, text: str) -> str:
        if isinstance(data, dict) and isinstance(data.get("error"), str):
            kind = data.get("error_type")
            return f"{data['error']} ({kind})" if kind else data["error"]
        return super().error_message(data, text)

    def score_options(self) -> dict:
        options: dict = {"raw_scores": self.raw_scores}
        if self.truncate is not None:
            options["truncate"] = self.truncate
        return options
