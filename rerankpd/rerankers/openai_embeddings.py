"""Any OpenAI-compatible embeddings API as a reranker: ``POST {base_url}/embeddings``.

The contract is OpenAI's "Create embeddings" reference (https://platform.openai.com/docs/api-reference/
embeddings/create; the same ``CreateEmbeddingRequest`` schema is in OpenAI's published OpenAPI spec): a
JSON body with ``model`` and ``input`` (an array of at most 2,048 non-empty strings), the optional
``encoding_format`` (``"float"``, the default, or ``"base64"``) and ``dimensions`` (text-embedding-3 and
later); the answer ``{"object": "list", "data": [{"object": "embedding", "index", "embedding"}], "model",
"usage": {"prompt_tokens", "total_tokens"}}``; the key as ``Authorization: Bearer <key>``. DMXAPI
(the default ``base_url``), SiliconFlow (``BAAI/bge-m3``), OpenAI, Jina and vLLM speak it.

The score is the cosine similarity of the query's embedding and the text's (the vectors are L2-normalised on
the client, so a model that does not normalise scores the same way). The pipeline embeds each distinct query
and text of a run once, through the embedding cache (:mod:`rerankpd.run.embedding_path`); embeddings come back
matched by their ``index``, never by position. Batching, retries, rate limits, usage tokens and key handling
are the shared HTTP client's (:class:`~rerankpd.rerankers.http.client.HTTPReranker`).

Examples
--------
>>> r = EmbeddingsReranker(api_key="sk-test", model="text-embedding-3-small", prefixes="e5")
>>> r.endpoint, r.kind
('https://www.dmxapi.cn/v1/embeddings', 'embedding')
>>> r.build_embeddings_payload(["how to prevent a cold"], "query")["input"]
['query: how to prevent a cold']
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core.tokens import request_tokens
from ..errors import BadResponseError, ConfigurationError
from .base import BatchResult, EmbeddingBatch, Scores
from .http.client import HTTPReranker, openai_key_homes, usage_counts

__all__ = ["EmbeddingsReranker"]

#: Query and passage prefixes by name (the e5 family is trained with them).
PREFIXES = {"e5": ("query: ", "passage: ")}
#: OpenAI's limit on the items of one ``input`` array.
MAX_INPUTS = 2048


class EmbeddingsReranker(HTTPReranker):
    """Cosine similarity of embeddings from an OpenAI-compatible ``/embeddings`` API.

    Parameters
    ----------
    model
        The embedding model (required): ``"text-embedding-3-small"``, ``"BAAI/bge-m3"``, ...
    prefixes
        ``"e5"`` puts ``"query: "`` before queries and ``"passage: "`` before texts (for e5 models);
        None (default): no prefixes. ``query_prefix`` and ``document_prefix`` set them one by one.
    dimensions
        Ask for shorter embeddings (text-embedding-3 and later); None: the model's own size.
    encoding_format
        ``"float"`` (default) or ``"base64"`` (a quarter of the bytes on the wire; decoded as float32).
    normalize
        L2-normalise every vector (True: the score is a cosine whatever the model returns).
    **options
        ``api_key`` (default ``DMXAPI_API_KEY``, sent only to DMXAPI's hosts, or ``OPENAI_API_KEY``, sent only
        to ``api.openai.com`` and the host of ``OPENAI_BASE_URL``; with another ``base_url`` pass ``api_key=``,
        a self-hosted server needs none), ``base_url`` (default ``DMXAPI_BASE_URL``, else
        ``https://www.dmxapi.cn/v1``), ``batch_size`` (texts per request, default 64, at most 2,048),
        ``max_concurrency``, ``timeout``, ``max_retries``, ``auth_scheme``, ``requests_per_minute``,
        ``tokens_per_minute``, ``adaptive_concurrency``.
    """

    name = "embeddings"
    kind = "embedding"
    default_base_url = "https://www.dmxapi.cn/v1"
    base_url_env = "DMXAPI_BASE_URL"
    path = "/embeddings"
    key_env = ("DMXAPI_API_KEY", "OPENAI_API_KEY")
    key_domains = ("dmxapi.cn", "dmxapi.com")
    keyless_elsewhere = True
    default_model = None
    batch_size: int  # __init__ sets a whole number from 1 to MAX_INPUTS, never None
    default_batch_size = 64
    default_max_concurrency = 4

    def __init__(
        self,
        *,
        model: str | None = None,
        prefixes: str | None = None,
        query_prefix: str | None = None,
        document_prefix: str | None = None,
        dimensions: int | None = None,
        encoding_format: str = "float",
        normalize: bool = True,
        **options,
    ) -> None:
        if not isinstance(model, str) or not model.strip():
            raise ConfigurationError(
                "the embeddings reranker needs model=... (the embedding model's name, e.g. "
                "'text-embedding-3-small' or 'BAAI/bge-m3')"
            )
        if prefixes is not None and prefixes not in PREFIXES:
            raise ConfigurationError(f"prefixes must be None or one of {sorted(PREFIXES)}, got {prefixes!r}")
        default_query, default_document = PREFIXES[prefixes] if prefixes is not None else ("", "")
        self.query_prefix = _text_option("query_prefix", default_query if query_prefix is None else query_prefix)
        self.document_prefix = _text_option(
            "document_prefix", default_document if document_prefix is None else document_prefix
        )
        if dimensions is not None and (
            not isinstance(dimensions, int) or isinstance(dimensions, bool) or dimensions < 1
        ):
            raise ConfigurationError(f"dimensions must be a whole number >= 1 or None, got {dimensions!r}")
        if encoding_format not in ("float", "base64"):
            raise ConfigurationError(f"encoding_format must be 'float' or 'base64', got {encoding_format!r}")
        self.dimensions, self.encoding_format, self.normalize = dimensions, encoding_format, bool(normalize)
        super().__init__(model=model, **options)
        if self.batch_size > MAX_INPUTS:
            raise ConfigurationError(
                f"batch_size must be at most {MAX_INPUTS} (the API's limit), got {self.batch_size}"
            )

    def key_homes(self) -> dict[str, tuple[str, ...] | None]:
        """``DMXAPI_API_KEY`` goes only to DMXAPI, ``OPENAI_API_KEY`` only to OpenAI (see :func:`openai_key_homes`)."""
        return openai_key_homes(super().key_homes())

    def score_options(self) -> dict:
        """What changes the vectors besides the model: prefixes, dimensions, normalisation."""
        return {
            "query_prefix": self.query_prefix,
            "document_prefix": self.document_prefix,
            "dimensions": self.dimensions,
            "normalize": self.normalize,
        }

    # ----------------------------------------------------------------- the embedding reranker's methods
    def build_embeddings_payload(self, texts: Sequence[str], role: str) -> dict:
        """The JSON body of one request embedding ``texts`` as queries or documents (``role``)."""
        prefix = self.query_prefix if role == "query" else self.document_prefix
        body: dict[str, Any] = {"model": self.model, "input": [prefix + t for t in texts]}
        if self.encoding_format != "float":
            body["encoding_format"] = self.encoding_format
        if self.dimensions is not None:
            body["dimensions"] = self.dimensions
        return body

    def embed_batch(self, texts: Sequence[str], role: str) -> EmbeddingBatch:
        """One request (with the client's retries) embedding ``texts``; float32 vectors and usage counts."""
        texts = list(texts)
        if not texts:
            return EmbeddingBatch(np.zeros((0, self.dimensions or 0), dtype=np.float32))
        payload = self.build_embeddings_payload(texts, role)
        tokens = request_tokens("", payload["input"]) if self.rate_limiter.tokens_per_minute else 0
        return self._request(payload, len(texts), tokens)

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        """The embeddings of ``texts`` as queries: float32, one row per text."""
        return self._in_batches(texts, "query")

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        """The embeddings of ``texts`` as documents: float32, one row per text."""
        return self._in_batches(texts, "document")

    def _in_batches(self, texts: list[str], role: str) -> np.ndarray:
        parts = [
            self.embed_batch(texts[i : i + self.batch_size], role).vectors
            for i in range(0, len(texts), self.batch_size)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, self.dimensions or 0), dtype=np.float32)

    def parse_response(self, data: Any, n_documents: int) -> EmbeddingBatch:  # type: ignore[override]
        """Vectors matched by ``index`` (every input exactly once, one length, finite) and usage."""
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise BadResponseError("expected a JSON object with a 'data' list of embeddings")
        rows: list[np.ndarray | None] = [None] * n_documents
        for item in data["data"]:
            if not isinstance(item, dict):
                raise BadResponseError(f"an embedding is {type(item).__name__}, not an object")
            index = item.get("index")
            if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < n_documents:
                raise BadResponseError(f"embedding index {index!r} is not one of the {n_documents} inputs sent")
            if rows[index] is not None:
                raise BadResponseError(f"input {index} was embedded twice")
            rows[index] = _vector(item.get("embedding"), index)
        missing = [i for i, row in enumerate(rows) if row is None]
        if missing:
            raise BadResponseError(
                f"{len(missing)} of the {n_documents} inputs sent came back without an embedding (first: {missing[0]})"
            )
        sizes = {len(row) for row in rows}  # type: ignore[arg-type]
        if len(sizes) != 1:
            raise BadResponseError(f"embeddings of different lengths in one answer: {sorted(sizes)}")
        vectors = np.stack(rows)  # type: ignore[arg-type]
        if self.normalize:
            vectors = unit_rows(vectors)
        return EmbeddingBatch(vectors.astype(np.float32), usage_counts(data.get("usage")))

    # ----------------------------------------------------------------- score() for direct callers
    def score(self, query: str, documents: list[str]) -> Scores:
        return self.score_batch(query, documents).scores

    def score_batch(self, query: str, documents: list[str]) -> BatchResult:
        """Cosine of ``query`` with each document (the pipeline embeds each distinct text once instead)."""
        if not documents:
            return BatchResult([])
        q = self.embed_batch([query], "query")
        usage = dict(q.usage)
        parts = []
        for i in range(0, len(documents), self.batch_size):
            batch = self.embed_batch(documents[i : i + self.batch_size], "document")
            parts.append(batch.vectors)
            for k, v in batch.usage.items():
                usage[k] = usage.get(k, 0) + v
        scores = np.concatenate(parts) @ q.vectors[0]
        return BatchResult(np.asarray(scores, dtype=np.float64).tolist(), usage)


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Each row divided by its L2 norm, computed in float64 after scaling the row by its largest magnitude, so
    no finite vector overflows or underflows (a vector of 1e20s or of 1e-25s is a direction like any other).

    >>> unit_rows(np.array([[3e20, 4e20], [3e-25, -4e-25]])).round(12).tolist()
    [[0.6, 0.8], [0.6, -0.8]]
    """
    vectors = np.asarray(vectors, dtype=np.float64)
    largest = np.abs(vectors).max(axis=1, keepdims=True) if vectors.size else np.ones((len(vectors), 1))
    if (largest == 0).any():
        raise BadResponseError("an embedding is all zeros; it cannot be normalised")
    scaled = vectors / largest
    return scaled / np.linalg.norm(scaled, axis=1, keepdims=True)


def _text_option(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigurationError(f"{name} must be a string, got {type(value).__name__}")
    return value


def _vector(value: Any, index: int) -> np.ndarray:
    """One embedding from the answer: a list of numbers, or base64 of little-endian float32."""
    if isinstance(value, str):
        try:
            raw = base64.b64decode(value, validate=True)
        except ValueError:
            raise BadResponseError(f"embedding {index} is a string but not base64") from None
        if not raw or len(raw) % 4:
            raise BadResponseError(f"embedding {index} decodes to {len(raw)} bytes, not float32 values")
        vector = np.frombuffer(raw, dtype="<f4").astype(np.float64)
    elif isinstance(value, list) and value:
        try:
            numbers = np.asarray(value)
        except (TypeError, ValueError):
            numbers = np.asarray([None])
        if numbers.ndim != 1 or numbers.dtype.kind not in "iuf":  # not bool, str, None or nested lists
            raise BadResponseError(f"embedding {index} is not a list of numbers")
        vector = numbers.astype(np.float64)  # float64 until normalised: 1e20s would overflow a float32 norm
    else:
        raise BadResponseError(f"embedding {index} is not a list of numbers")
    if not np.isfinite(vector).all():
        raise BadResponseError(f"embedding {index} holds a value that is not a finite number")
    return vector
