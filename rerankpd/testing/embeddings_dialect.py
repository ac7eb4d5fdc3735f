"""The loopback server's ``"openai-embeddings"`` dialect: OpenAI's ``POST /v1/embeddings``, with vectors.

The contract is OpenAI's "Create embeddings" reference (https://platform.openai.com/docs/api-reference/
embeddings/create): a JSON body with ``model`` and ``input`` (a string or an array of at most 2,048
non-empty strings; token arrays are not served here), the optional ``encoding_format`` (``"float"`` or
``"base64"``: little-endian float32 bytes), ``dimensions`` and ``user``; the answer ``{"object": "list",
"data": [{"object": "embedding", "index", "embedding"}], "model", "usage": {"prompt_tokens",
"total_tokens"}}``; errors ``{"error": {"message", "type", "param", "code"}}``; Bearer auth.

The vectors are deterministic: hashed character bigrams (:func:`bigram_embedding`), L2-normalised, so texts
that share bigrams have a high cosine. The server's ``score_fn`` is not used. Importing
:mod:`rerankpd.testing` registers the dialect, so ``LoopbackRerankServer(dialect="openai-embeddings")``
serves ``POST /v1/embeddings`` (its ``url`` is the ``base_url`` to give the ``"embeddings"`` reranker).

Examples
--------
>>> import numpy as np, rerankpd
>>> v = bigram_embedding(["cold hands", "cold hands!", "stock prices"])
>>> v.shape, bool(v[0] @ v[1] > v[0] @ v[2])
((3, 64), True)
>>> from rerankpd.testing import LoopbackRerankServer
>>> with LoopbackRerankServer(dialect="openai-embeddings") as server:
...     r = rerankpd.get_reranker("embeddings", api_key="sk-test", base_url=server.url, model="m")
...     s = r.score("cold hands", ["cold hands!", "stock prices"])
>>> s[0] > s[1]
True
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from .dialects import Dialect, RequestRejected, register_dialect

__all__ = ["EmbeddingsRequest", "OpenAIEmbeddingsDialect", "bigram_embedding"]

#: OpenAI's limit on the items of one ``input`` array.
MAX_INPUTS = 2048
DEFAULT_DIMENSIONS = 64


def bigram_embedding(texts: list[str], dimensions: int = DEFAULT_DIMENSIONS) -> np.ndarray:
    """Deterministic float32 embeddings: character-bigram counts (case and whitespace ignored) hashed into
    ``dimensions`` buckets by a multiplicative hash, L2-normalised (a text without characters gets the first
    unit vector)."""
    out = np.zeros((len(texts), dimensions), dtype=np.float32)
    for row, text in enumerate(texts):
        chars = np.frombuffer("".join(text.lower().split()).encode("utf-32-le", "surrogatepass"), dtype="<u4")
        codes = chars.astype(np.uint64)
        if len(codes) > 1:
            codes = codes[:-1] * np.uint64(1_114_112) + codes[1:]
        buckets = (codes * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(40)
        out[row] = np.bincount((buckets % np.uint64(dimensions)).astype(np.int64), minlength=dimensions)
    norms = np.linalg.norm(out, axis=1)
    out[norms == 0, 0] = 1.0
    norms[norms == 0] = 1.0
    return out / norms[:, None]


class EmbeddingsRequest(NamedTuple):
    """A valid request: the texts to embed and the options that shape the answer."""

    inputs: list[str]
    model: str
    encoding_format: str
    dimensions: int


def _reject(message: str, status: int = 400) -> RequestRejected:
    return RequestRejected(message, status)


class OpenAIEmbeddingsDialect(Dialect):
    """OpenAI's embeddings API (and the OpenAI-compatible ones: DMXAPI, SiliconFlow, Jina, vLLM, ...)."""

    path = "/v1/embeddings"
    fields = frozenset({"model", "input", "encoding_format", "dimensions", "user"})
    dimensions = DEFAULT_DIMENSIONS

    def parse_request(self, body: Any) -> EmbeddingsRequest:
        if not isinstance(body, dict):
            raise _reject("request body must be a JSON object")
        unknown = sorted(set(body) - self.fields)
        if unknown:
            raise _reject(f"Unrecognized request argument supplied: {', '.join(unknown)}")
        if not isinstance(body.get("model"), str) or not body["model"]:
            raise _reject("you must provide a model parameter")
        given = body.get("input")
        inputs = [given] if isinstance(given, str) else given
        if not isinstance(inputs, list) or not inputs or not all(isinstance(t, str) and t for t in inputs):
            raise _reject("'input' must be a non-empty string or an array of non-empty strings")
        if len(inputs) > MAX_INPUTS:
            raise _reject(f"'input': {len(inputs)} items, at most {MAX_INPUTS} per request")
        encoding = body.get("encoding_format", "float")
        if encoding not in ("float", "base64"):
            raise _reject(f"'encoding_format' must be 'float' or 'base64', got {encoding!r}")
        dimensions = body.get("dimensions", self.dimensions)
        if not isinstance(dimensions, int) or isinstance(dimensions, bool) or not 1 <= dimensions <= 4096:
            raise _reject("'dimensions' must be a whole number between 1 and 4096")
        return EmbeddingsRequest(inputs, body["model"], encoding, dimensions)

    def texts(self, request: EmbeddingsRequest) -> list[str]:
        return request.inputs

    def respond(self, request: EmbeddingsRequest, score_fn: Callable[[str, str], float] | None = None) -> dict:
        return self._body(request, range(len(request.inputs)))

    def incomplete(self, request: EmbeddingsRequest) -> dict:
        """An answer that leaves the first input out (the ``"missing_index"`` fault)."""
        return self._body(request, range(1, len(request.inputs)))

    def _body(self, request: EmbeddingsRequest, indices: Any) -> dict:
        indices = list(indices)
        vectors = bigram_embedding([request.inputs[i] for i in indices], request.dimensions)
        data = []
        for i, vector in zip(indices, vectors):
            if request.encoding_format == "base64":
                embedding: Any = base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
            else:
                embedding = vector.round(7).tolist()
            data.append({"object": "embedding", "index": i, "embedding": embedding})
        tokens = sum(len(t) for t in request.inputs)
        return {
            "object": "list",
            "data": data,
            "model": request.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    def error_body(self, status: int, message: str) -> dict:
        return {
            "error": {
                "message": message,
                "type": "invalid_request_error" if status < 500 else "server_error",
                "param": None,
                "code": None,
            }
        }


register_dialect("openai-embeddings", OpenAIEmbeddingsDialect)
