"""The rerank services' wire formats: one :class:`~rerankpd.testing.RerankDialect` subclass per service,
each overriding only what its service does differently (fields, limits, where results and usage go, errors).

The registry (:data:`rerankpd.testing.dialects.DIALECTS`) names them; import them from
:mod:`rerankpd.testing` (or :mod:`rerankpd.testing.dialects`).
"""

from __future__ import annotations

from ..core.tokens import request_tokens
from .dialect_base import RequestRejected, RerankDialect, _check_request_tokens, _object

__all__ = [
    "CohereDialect",
    "DMXAPIDialect",
    "DashScopeDialect",
    "InfinityDialect",
    "JinaDialect",
    "MixedbreadDialect",
    "NIMDialect",
    "PineconeDialect",
    "SiliconFlowDialect",
    "TEIDialect",
    "VLLMDialect",
    "VoyageDialect",
]


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
