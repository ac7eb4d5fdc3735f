"""The wire formats the loopback server speaks: one class per service, most of them one base driven by attributes.

A dialect is everything about a service's JSON that the server does not decide: where requests go, how the
key is checked, which bodies are valid, what a success and an error look like. The server
(:mod:`rerankpd.testing.server`) does the rest (routing, auth, rate limit, latency, faults, the request log)
and never looks inside a body itself.

What a dialect must implement (see :class:`Dialect`):

``path``
    The route it answers (``"/v1/rerank"``); any other path is a 404.
``base_path``
    Optional: what a client's ``base_url`` ends with (default: ``path`` minus its last segment).
``check_auth(header, api_key) -> bool``
    Whether the ``auth_header`` (default ``Authorization``) carries the key (only asked when the server has a
    key).
``parse_request(body) -> request``
    The decoded JSON body checked as the service checks it; raise :class:`RequestRejected` (a ValueError,
    with the HTTP status) in the service's words. The return value is the dialect's own object; the server
    only hands it back to the two methods below.
``texts(request) -> list[str]``
    The texts the request carries (for ``latency_per_document`` and
    :meth:`~rerankpd.testing.LoopbackRerankServer.documents_received`).
``respond(request, score_fn) -> JSON``
    The success body; ``score_fn(query, text) -> float`` is the server's scorer.
``error_body(status, message) -> JSON``
    The service's error body.
``incomplete(request) -> JSON``
    Optional: a success body that leaves one text out (the ``"missing_index"`` fault).

A new wire format (an embeddings or chat API) subclasses :class:`Dialect` and registers itself with
:func:`register_dialect`; ``LoopbackRerankServer(dialect="name")`` then finds it. The rerank services share
:class:`RerankDialect`, set by class attributes (field names, limits, where results and usage go), as the
client side's :class:`~rerankpd.rerankers.http.client.HTTPReranker` is.

Examples
--------
>>> from rerankpd.testing import DIALECTS, register_dialect
>>> sorted(DIALECTS)[:3]
['cohere', 'dashscope', 'dmxapi']
>>> class Echo(Dialect):
...     path = "/echo"
...     def parse_request(self, body):
...         return body
...     def texts(self, request):
...         return []
...     def respond(self, request, score_fn):
...         return request
>>> register_dialect("echo-doc", Echo)
>>> DIALECTS.pop("echo-doc") is Echo
True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from ..core.tokens import request_tokens

__all__ = [
    "DIALECTS",
    "CohereDialect",
    "DMXAPIDialect",
    "DashScopeDialect",
    "Dialect",
    "InfinityDialect",
    "JinaDialect",
    "MixedbreadDialect",
    "NIMDialect",
    "PineconeDialect",
    "RequestRejected",
    "RerankDialect",
    "RerankRequest",
    "SiliconFlowDialect",
    "TEIDialect",
    "VLLMDialect",
    "VoyageDialect",
    "register_dialect",
]


class RequestRejected(ValueError):
    """A request the service would refuse; ``status`` is the HTTP status it answers with (400 by default)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class RerankRequest(NamedTuple):
    """A valid rerank request: what the server needs to answer it."""

    query: str
    documents: list[str]
    top_n: int | None
    return_documents: bool


class Dialect:
    """A wire format: the contract the server relies on (see the module's notes). Subclass it."""

    path = "/v1/rerank"
    #: What a client's base URL ends with; None: ``path`` minus its last segment.
    base_path: str | None = None
    #: True: the key may also come bare (``Authorization: <key>``), as DMXAPI's page shows.
    accepts_bare_key = False
    #: The header carrying the key (Pinecone: ``Api-Key``).
    auth_header = "Authorization"

    def check_auth(self, header: str | None, api_key: str) -> bool:
        """Whether ``header`` carries ``api_key`` (``Bearer <key>``, or bare when ``accepts_bare_key``)."""
        return header == f"Bearer {api_key}" or (self.accepts_bare_key and header == api_key)

    def parse_request(self, body: Any) -> Any:
        raise NotImplementedError

    def texts(self, request: Any) -> list[str]:
        raise NotImplementedError

    def respond(self, request: Any, score_fn: Callable[[str, str], float]) -> Any:
        raise NotImplementedError

    def incomplete(self, request: Any) -> Any:
        """A success body missing one text's answer; by default a body with nothing in it."""
        return {}

    def error_body(self, status: int, message: str) -> Any:
        """OpenAI-style ``{"error": {"message", "type", "code"}}``."""
        return {
            "error": {
                "message": message,
                "type": "invalid_request_error" if status < 500 else "server_error",
                "code": status,
            }
        }


def _object(body: Any, allowed: frozenset[str] | None, required: tuple[str, ...]) -> dict:
    """The body as a dict with only ``allowed`` fields (None: any) and every ``required`` one."""
    if not isinstance(body, dict):
        raise RequestRejected("request body must be a JSON object")
    if allowed is not None:
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise RequestRejected(f"unknown field(s) {', '.join(unknown)}", 422)
    for name in required:
        if body.get(name) in (None, ""):
            raise RequestRejected(f"{name} is required")
    return body


def _texts(query: Any, documents: Any, field: str, limit: int | None, limit_status: int) -> tuple[str, list[str]]:
    if not isinstance(query, str) or not query:
        raise RequestRejected("query must be a non-empty string")
    if not isinstance(documents, list) or not documents or not all(isinstance(d, str) for d in documents):
        raise RequestRejected(f"{field} must be a non-empty list of strings")
    if limit is not None and len(documents) > limit:
        raise RequestRejected(f"{field}: {len(documents)} items, at most {limit} per request", limit_status)
    return query, documents


def _check_request_tokens(query: str, documents: list[str], model: Any, caps: dict[str, int], default: int) -> None:
    """Refuse a request over its model's published token cap, counted as the service counts it (query tokens x
    documents + the documents' tokens), with :func:`rerankpd.core.tokens.request_tokens` standing in for the
    service's tokenizer."""
    cap = caps.get(model, default) if isinstance(model, str) else default
    total = request_tokens(query, documents)
    if total > cap:
        raise RequestRejected(
            f"the request has {total} tokens (query tokens x documents + documents' tokens); at most {cap} for {model}"
        )


def _top(value: Any, name: str, allow_zero: bool) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < (0 if allow_zero else 1):
        raise RequestRejected(f"{name} must be a positive integer")
    return value or None


class RerankDialect(Dialect):
    """The Cohere-shaped rerank services, set by class attributes; a service overrides only what differs.

    Request: ``fields`` (allowed names, None: any), ``required``, ``documents_field``, ``top_field`` (None:
    no top-n), ``top_allows_zero``, ``return_field`` (None: never echoed) with ``return_default``,
    ``echoes_documents`` (always echoed), ``max_documents`` and ``limit_status``.
    Answer: ``results_field``, ``score_field``, ``document_as`` (``"object"``: ``{"text": ...}``,
    ``"text"``, ``"null"``: the text or null), and :meth:`envelope` around the results.
    """

    fields: frozenset[str] | None = None
    required: tuple[str, ...] = ("model",)
    documents_field = "documents"
    top_field: str | None = "top_n"
    top_allows_zero = False
    return_field: str | None = "return_documents"
    return_default = False
    echoes_documents = False
    max_documents: int | None = None
    limit_status = 400
    results_field = "results"
    score_field = "relevance_score"
    document_as = "object"

    def parse_request(self, body: Any) -> RerankRequest:
        body = _object(body, self.fields, self.required)
        return self.request_from(body, body)

    def request_from(self, texts_at: dict, options_at: dict) -> RerankRequest:
        """The request from the object holding the texts and the one holding the options."""
        query, documents = _texts(
            texts_at.get("query"),
            texts_at.get(self.documents_field),
            self.documents_field,
            self.max_documents,
            self.limit_status,
        )
        top_n = _top(options_at.get(self.top_field), self.top_field, self.top_allows_zero) if self.top_field else None
        echo = self.echoes_documents or (
            self.return_field is not None and bool(options_at.get(self.return_field, self.return_default))
        )
        return RerankRequest(query, documents, top_n, echo)

    def texts(self, request: RerankRequest) -> list[str]:
        return request.documents

    def respond(self, request: RerankRequest, score_fn: Callable[[str, str], float]) -> Any:
        scored = [(i, float(score_fn(request.query, d))) for i, d in enumerate(request.documents)]
        ranked = sorted(scored, key=lambda item: -item[1])[: request.top_n or len(request.documents)]
        return self.render(ranked, request.documents, request.return_documents, self.tokens(request))

    def incomplete(self, request: RerankRequest) -> Any:
        ranked = [(i, 0.5) for i in range(1, len(request.documents))]
        return self.render(ranked, request.documents, False, 1)

    @staticmethod
    def tokens(request: RerankRequest) -> int:
        """The usage the server reports: characters of the query and the documents."""
        return len(request.query) + sum(len(d) for d in request.documents)

    def render(self, ranked: list[tuple[int, float]], documents: list[str], return_documents: bool, tokens: int) -> Any:
        """The answer for ``ranked`` ``(index, score)`` pairs: the one rendering loop of every rerank dialect."""
        results = []
        for index, score in ranked:
            item: dict[str, Any] = {"index": index, self.score_field: score}
            if self.document_as == "null":
                item["document"] = documents[index] if return_documents else None
            elif return_documents:
                item["document"] = {"text": documents[index]} if self.document_as == "object" else documents[index]
            results.append(item)
        return self.envelope(results, tokens)

    def envelope(self, results: list[dict], tokens: int) -> Any:
        """The answer around its results (OpenAI-style usage by default)."""
        return {
            self.results_field: results,
            "usage": {"prompt_tokens": tokens, "completion_tokens": 0, "total_tokens": tokens},
        }


class DMXAPIDialect(RerankDialect):
    """DMXAPI: ``POST /v1/rerank``, the key bare or as ``Bearer``; any extra field is accepted."""

    accepts_bare_key = True


class SiliconFlowDialect(RerankDialect):
    """SiliconFlow: https://docs.siliconflow.cn/en/api-reference/rerank/create-rerank. Usage in ``tokens``,
    errors ``{"code", "message", "data"}``, Bearer auth, ``overlap_tokens`` at most 80."""

    fields = frozenset(
        {
            "model",
            "query",
            "documents",
            "top_n",
            "return_documents",
            "max_chunks_per_doc",
            "overlap_tokens",
            "instruction",
        }
    )

    def parse_request(self, body):
        request = super().parse_request(body)
        overlap = body.get("overlap_tokens")
        if overlap is not None and (not isinstance(overlap, int) or not 0 <= overlap <= 80):
            raise RequestRejected("overlap_tokens must be between 0 and 80")
        return request

    def envelope(self, results, tokens):
        return {
            "id": "loopback-siliconflow",
            "results": results,
            "tokens": {"input_tokens": tokens, "output_tokens": 0},
        }

    def error_body(self, status, message):
        return {"code": 20000 + status, "message": message, "data": None}


class CohereDialect(RerankDialect):
    """Cohere v2: https://docs.cohere.com/reference/rerank. No ``return_documents`` in v2; ``priority`` and
    ``relevant_spans`` accepted; at most 10,000 documents; usage in ``meta.billed_units`` and ``meta.tokens``;
    errors ``{"message"}``."""

    path = "/v2/rerank"
    fields = frozenset({"model", "query", "documents", "top_n", "max_tokens_per_doc", "priority", "relevant_spans"})
    return_field = None
    max_documents = 10_000

    def envelope(self, results, tokens):
        return {
            "results": results,
            "id": "loopback-cohere",
            "meta": {
                "api_version": {"version": "2", "is_experimental": False},
                "billed_units": {"search_units": 1},
                "tokens": {"input_tokens": tokens, "output_tokens": 0},
            },
        }

    def error_body(self, status, message):
        return {"id": "loopback-cohere-error", "message": f"invalid request: {message}"}


class JinaDialect(RerankDialect):
    """Jina: https://jina.ai/reranker/ and https://api.jina.ai/openapi.json. Errors ``{"detail"}``."""

    fields = frozenset({"model", "query", "documents", "top_n", "return_documents"})
    return_default = True

    def envelope(self, results, tokens):
        return {
            "model": "jina-reranker-v2-base-multilingual",
            "usage": {"total_tokens": tokens, "prompt_tokens": tokens},
            "results": results,
        }

    def error_body(self, status, message):
        return {"detail": message}


class VoyageDialect(RerankDialect):
    """Voyage: https://docs.voyageai.com/reference/reranker-api. ``top_k``, at most 1,000 documents and
    600,000 tokens per request (rerank-2.5 and rerank-2 families; rerank-lite-1 300,000, rerank-1 100,000),
    results in ``data``; errors ``{"detail"}``."""

    fields = frozenset({"query", "documents", "model", "top_k", "return_documents", "truncation"})
    top_field = "top_k"
    max_documents = 1000
    results_field = "data"
    document_as = "text"

    def parse_request(self, body):
        request = super().parse_request(body)
        if "truncation" in body and not isinstance(body["truncation"], bool):
            raise RequestRejected("truncation must be a boolean")
        _check_request_tokens(
            request.query, request.documents, body.get("model"), self.request_tokens_by_model, 600_000
        )
        return request

    request_tokens_by_model = {"rerank-1": 100_000, "rerank-lite-1": 300_000}

    def envelope(self, results, tokens):
        return {"object": "list", "data": results, "model": "rerank-2.5", "usage": {"total_tokens": tokens}}

    def error_body(self, status, message):
        return {"detail": message}


class DashScopeDialect(RerankDialect):
    """DashScope: https://help.aliyun.com/zh/model-studio/text-rerank-api. ``input``/``parameters`` in
    (``top_n``, ``return_documents``, ``instruct``), ``output.results`` out, at most 500 documents and 30,000
    tokens per request (qwen3-rerank 120,000); errors ``{"code", "message", "request_id"}``."""

    path = "/api/v1/services/rerank/text-rerank/text-rerank"
    base_path = "/api/v1"
    fields = frozenset({"model", "input", "parameters"})
    required = ("model", "input")
    max_documents = 500
    codes = {
        400: "InvalidParameter",
        401: "InvalidApiKey",
        403: "AccessDenied",
        404: "InvalidURL",
        429: "Throttling.RateQuota",
        500: "InternalError",
    }

    def parse_request(self, body):
        body = _object(body, self.fields, self.required)
        given = body["input"]
        if not isinstance(given, dict) or set(given) - {"query", "documents"}:
            raise RequestRejected("input must be an object with query and documents")
        parameters = body.get("parameters") or {}
        if not isinstance(parameters, dict) or set(parameters) - {"top_n", "return_documents", "instruct"}:
            raise RequestRejected("parameters may hold only top_n, return_documents and instruct")
        if "instruct" in parameters and not isinstance(parameters["instruct"], str):
            raise RequestRejected("parameters.instruct must be a string")
        request = self.request_from(given, parameters)
        _check_request_tokens(request.query, request.documents, body.get("model"), self.request_tokens_by_model, 30_000)
        return request

    request_tokens_by_model = {"gte-rerank-v2": 30_000, "qwen3-rerank": 120_000}

    def envelope(self, results, tokens):
        return {"output": {"results": results}, "usage": {"total_tokens": tokens}, "request_id": "loopback-dashscope"}

    def error_body(self, status, message):
        return {
            "code": self.codes.get(status, "InternalError"),
            "message": message,
            "request_id": "loopback-dashscope-error",
        }


class TEIDialect(RerankDialect):
    """Text Embeddings Inference: ``POST /rerank`` with ``texts``; a bare array of ``{index, score}``;
    errors ``{"error", "error_type"}``; more than ``max_client_batch_size`` texts (32) is a 413."""

    path = "/rerank"
    base_path = ""
    fields = frozenset({"query", "texts", "truncate", "truncation_direction", "raw_scores", "return_text"})
    required = ()
    documents_field = "texts"
    top_field = None
    return_field = "return_text"
    max_documents = max_client_batch_size = 32
    limit_status = 413
    score_field = "score"
    document_as = "text"

    def render(self, ranked, documents, return_documents, tokens):
        results = super().render(ranked, documents, return_documents, tokens)
        if return_documents:  # TEI echoes the text as "text", not "document"
            for item in results:
                item["text"] = item.pop("document")
        return results

    def envelope(self, results, tokens):
        return results

    def error_body(self, status, message):
        kind = {413: "validation", 422: "tokenizer", 424: "backend", 429: "overloaded", 503: "unhealthy"}
        return {"error": message, "error_type": kind.get(status, "validation" if status < 500 else "backend")}


class InfinityDialect(RerankDialect):
    """Infinity: ``RerankInput``/``ReRankResult`` of michaelfeil/infinity. At most 2048 documents (422);
    OpenAI-style errors."""

    path = "/rerank"
    base_path = ""
    fields = frozenset({"query", "documents", "return_documents", "raw_scores", "model", "top_n"})
    required = ()
    max_documents = 2048
    limit_status = 422
    document_as = "null"

    def envelope(self, results, tokens):
        return {
            "object": "rerank",
            "results": results,
            "model": "loopback-model",
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            "id": "infinity-loopback",
            "created": 0,
        }


class VLLMDialect(RerankDialect):
    """vLLM's ``/v1/rerank``: ``top_n`` 0 means all; the answer always echoes each document's text."""

    fields = frozenset({"model", "query", "documents", "top_n", "truncate_prompt_tokens"})
    required = ()
    top_allows_zero = True
    return_field = None
    echoes_documents = True

    def envelope(self, results, tokens):
        return {
            "id": "rerank-loopback",
            "model": "loopback-model",
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            "results": results,
        }

    def error_body(self, status, message):
        return {
            "error": {
                "message": message,
                "type": "BadRequestError" if status < 500 else "InternalServerError",
                "param": None,
                "code": status,
            }
        }


class PineconeDialect(RerankDialect):
    """Pinecone: https://docs.pinecone.io/reference/api/2025-04/inference/rerank. The key in ``Api-Key`` (bare);
    documents as strings or ``{"text": ...}`` objects (``rank_fields`` names the field); per-model limits:
    100 documents (bge-reranker-v2-m3, pinecone-rerank-v0) or 200 (cohere-rerank-3.5); with
    ``parameters.truncate: "NONE"`` a query-document pair over the model's tokens (1,024, 512, 40,000) is
    refused. Results in ``data`` with ``score``; usage ``rerank_units``; errors ``{"error": {"code",
    "message"}, "status"}``."""

    path = "/rerank"
    base_path = ""
    auth_header = "Api-Key"
    fields = frozenset({"model", "query", "documents", "top_n", "return_documents", "rank_fields", "parameters"})
    return_default = True
    results_field = "data"
    score_field = "score"
    #: model -> (documents per request, tokens per query-document pair)
    limits = {"bge-reranker-v2-m3": (100, 1024), "pinecone-rerank-v0": (100, 512), "cohere-rerank-3.5": (200, 40_000)}

    def check_auth(self, header, api_key):
        return header == api_key

    def parse_request(self, body):
        body = _object(body, self.fields, ("model", "query", "documents"))
        field = body.get("rank_fields") or ["text"]
        if not isinstance(field, list) or len(field) != 1 or not isinstance(field[0], str):
            raise RequestRejected("rank_fields must name one field")
        documents = body["documents"]
        if isinstance(documents, list):
            documents = [d.get(field[0]) if isinstance(d, dict) else d for d in documents]
        parameters = body.get("parameters") or {}
        if (
            not isinstance(parameters, dict)
            or set(parameters) - {"truncate"}
            or parameters.get("truncate", "END") not in ("END", "NONE")
        ):
            raise RequestRejected("parameters may hold only truncate: END or NONE")
        request = self.request_from({"query": body["query"], "documents": documents}, body)
        max_documents, pair_tokens = self.limits.get(body["model"], (100, 1024))
        if len(request.documents) > max_documents:
            raise RequestRejected(f"{len(request.documents)} documents, at most {max_documents} for {body['model']}")
        if parameters.get("truncate") == "NONE":
            longest = max(request_tokens(request.query, [d]) for d in request.documents)
            if longest > pair_tokens:
                raise RequestRejected(f"a query-document pair has {longest} tokens, at most {pair_tokens}")
        return request

    def envelope(self, results, tokens):
        return {"model": "bge-reranker-v2-m3", "data": results, "usage": {"rerank_units": 1}}

    def error_body(self, status, message):
        code = {
            400: "INVALID_ARGUMENT",
            401: "UNAUTHENTICATED",
            403: "FORBIDDEN",
            404: "NOT_FOUND",
            429: "RESOURCE_EXHAUSTED",
        }.get(status, "INTERNAL")
        return {"error": {"code": code, "message": message}, "status": status}


class NIMDialect(RerankDialect):
    """NVIDIA NIM text reranking: ``POST /v1/ranking`` with ``query: {text}``, ``passages: [{text}]``,
    ``truncate``; at most 512 passages; with ``truncate: "NONE"`` (the default) a query-passage pair over
    8,192 tokens is refused. Answer ``{"rankings": [{"index", "logit"}]}``."""

    path = "/v1/ranking"
    base_path = ""
    fields = frozenset({"model", "query", "passages", "truncate"})
    top_field = None
    return_field = None
    max_documents = 512
    results_field = "rankings"
    score_field = "logit"
    max_pair_tokens = 8192

    def parse_request(self, body):
        body = _object(body, self.fields, ("model", "query", "passages"))
        query, passages = body["query"], body["passages"]
        if not isinstance(query, dict) or set(query) != {"text"}:
            raise RequestRejected('query must be an object {"text": ...}', 422)
        if not isinstance(passages, list) or not all(isinstance(p, dict) and set(p) == {"text"} for p in passages):
            raise RequestRejected('passages must be a list of objects {"text": ...}', 422)
        if body.get("truncate", "NONE") not in ("NONE", "END"):
            raise RequestRejected("truncate must be NONE or END", 422)
        request = self.request_from({"query": query["text"], "documents": [p["text"] for p in passages]}, body)
        if body.get("truncate", "NONE") == "NONE":
            longest = max(request_tokens(request.query, [d]) for d in request.documents)
            if longest > self.max_pair_tokens:
                raise RequestRejected(
                    f"input length {longest} exceeds the maximum of {self.max_pair_tokens} tokens; set truncate to END"
                )
        return request

    def envelope(self, results, tokens):
        return {"rankings": results}

    def error_body(self, status, message):
        return {
            "object": "error",
            "message": message,
            "type": "invalid_request_error" if status < 500 else "internal_error",
        }


class MixedbreadDialect(RerankDialect):
    """Mixedbread: https://www.mixedbread.com/api-reference/endpoints/reranking. ``input``, ``top_k``,
    ``return_input``; results in ``data`` with ``score``; errors ``{"type", "message"}``."""

    path = "/v1/reranking"
    base_path = ""
    fields = frozenset({"model", "query", "input", "rank_fields", "top_k", "return_input", "rewrite_query"})
    documents_field = "input"
    top_field = "top_k"
    return_field = "return_input"
    results_field = "data"
    score_field = "score"
    document_as = "text"

    def render(self, ranked, documents, return_documents, tokens):
        answer = super().render(ranked, documents, return_documents, tokens)
        for item in answer["data"]:
            item["object"] = "rank_result"
            item["input"] = item.pop("document", None)
        answer.update(top_k=len(ranked), return_input=return_documents)
        return answer

    def envelope(self, results, tokens):
        return {
            "object": "list",
            "data": results,
            "model": "mixedbread-ai/mxbai-rerank-large-v2",
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0},
        }

    def error_body(self, status, message):
        return {"type": "bad_request_error" if status < 500 else "internal_server_error", "message": message}


#: Dialect classes by name; add one with :func:`register_dialect`.
DIALECTS: dict[str, type] = {
    "cohere": CohereDialect,
    "dashscope": DashScopeDialect,
    "dmxapi": DMXAPIDialect,
    "infinity": InfinityDialect,
    "jina": JinaDialect,
    "mixedbread": MixedbreadDialect,
    "nim": NIMDialect,
    "pinecone": PineconeDialect,
    "siliconflow": SiliconFlowDialect,
    "tei": TEIDialect,
    "vllm": VLLMDialect,
    "voyage": VoyageDialect,
}


def register_dialect(name: str, cls: type) -> None:
    """Make ``LoopbackRerankServer(dialect=name)`` speak ``cls`` (a :class:`Dialect` subclass).

    Re-registering a name with the same class is harmless; another class under a taken name is an error.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"a dialect name must be a non-empty string, got {name!r}")
    if not (isinstance(cls, type) and issubclass(cls, Dialect)):
        raise TypeError(f"dialect {name!r} must be a subclass of rerankpd.testing.Dialect, got {cls!r}")
    if DIALECTS.get(name, cls) is not cls:
        raise ValueError(f"dialect {name!r} is already registered as {DIALECTS[name].__name__}")
    DIALECTS[name] = cls
