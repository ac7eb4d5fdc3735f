"""NVIDIA NIM text reranking (NeMo Retriever), self-hosted or on NVIDIA's API: ``POST {base_url}/v1/ranking``.

API reference: https://docs.nvidia.com/nim/nemo-retriever/text-reranking/latest/reference.html. The body is
``model``, ``query: {"text"}``, ``passages: [{"text"}]`` and ``truncate`` (``"NONE"``, the default, refuses a
query-passage pair longer than the model's context; ``"END"`` cuts it); the answer is ``{"rankings":
[{"index", "logit"}], "usage"?}``, best first, scored by raw logits. A request holds at most 512 passages.
A self-hosted NIM needs no key; NVIDIA's hosted API takes ``NVIDIA_API_KEY`` as a Bearer token at
``https://ai.api.nvidia.com/v1/retrieval/<model path>``, where the route is ``/reranking``.

Examples
--------
>>> r = NIMReranker()
>>> r.endpoint, r.model
('http://localhost:8000/v1/ranking', 'nvidia/llama-3.2-nv-rerankqa-1b-v2')
>>> r.request_body("q", ["a"])
{'model': 'nvidia/llama-3.2-nv-rerankqa-1b-v2', 'query': {'text': 'q'}, 'passages': [{'text': 'a'}]}
>>> NIMReranker(base_url="https://ai.api.nvidia.com/v1/retrieval/nvidia/llama-3_2-nv-rerankqa-1b-v2",
...             api_key="nvapi-test").endpoint
'https://ai.api.nvidia.com/v1/retrieval/nvidia/llama-3_2-nv-rerankqa-1b-v2/reranking'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from ..core.options import one_of
from ..errors import BadResponseError
from .base import BatchResult
from .http.answers import scores_from_results, usage_counts
from .http.chunked import ClientChunkedReranker
from .http.keys import _host_in

__all__ = ["NIMReranker"]


class NIMReranker(ClientChunkedReranker):
    """A NeMo Retriever reranking NIM (``nvidia/llama-3.2-nv-rerankqa-1b-v2``, ``nvidia/llama-nemotron-rerank-1b-v2``).

    Parameters
    ----------
    truncate
        ``"END"`` cuts an over-long query-passage pair, ``"NONE"`` makes the NIM refuse it; None (default)
        sends nothing (the NIM's default, ``"NONE"``).
    **options
        ``base_url`` (default ``NIM_BASE_URL``, else ``http://localhost:8000``; for NVIDIA's hosted API the
        model's URL, ``https://ai.api.nvidia.com/v1/retrieval/nvidia/llama-3_2-nv-rerankqa-1b-v2``),
        ``api_key`` (default ``NVIDIA_API_KEY``, sent only to ``*.nvidia.com``; a self-hosted NIM needs
        none), ``model``, ``batch_size`` (default 64, at most 512), client chunking and the shared options.
    """

    name = "nim"
    default_base_url = "http://localhost:8000"
    base_url_env = "NIM_BASE_URL"
    path = "/v1/ranking"
    key_env = ("NVIDIA_API_KEY",)
    key_domains = ("nvidia.com",)
    key_required = False
    default_model = "nvidia/llama-3.2-nv-rerankqa-1b-v2"
    default_batch_size = 64
    max_documents = 512

    def __init__(self, *, truncate: str | None = None, **options) -> None:
        self.truncate = None if truncate is None else one_of("truncate", truncate, ("END", "NONE"))
        super().__init__(**options)
        if _host_in(urlsplit(self._url).hostname or "", self.key_domains):
            self.path = "/reranking"  # NVIDIA's hosted API: one URL per model

    def build_payload(self, query: str, documents: Sequence[str]) -> dict:
        return {"model": self.model, "query": {"text": query}, "passages": [{"text": d} for d in documents]}

    def score_options(self) -> dict:
        return {} if self.truncate is None else {"truncate": self.truncate}

    def parse_response(self, data: Any, n_documents: int) -> BatchResult:
        if not isinstance(data, dict):
            raise BadResponseError(f"expected a JSON object, got {type(data).__name__}")
        return BatchResult(
            scores_from_results(data.get("rankings"), n_documents, score_field="logit"), usage_counts(data.get("usage"))
        )
