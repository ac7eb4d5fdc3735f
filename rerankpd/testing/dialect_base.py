"""The base of every wire format: :class:`Dialect` (the contract the server relies on, spelled out in
:mod:`rerankpd.testing.dialects`), the request checks the rerank services share, and :class:`RerankDialect`,
the Cohere-shaped rerank services set by class attributes.

Import these names from :mod:`rerankpd.testing` (or :mod:`rerankpd.testing.dialects`); this module is where
they live, not a public path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from ..core.tokens import request_tokens

__all__ = ["Dialect", "RequestRejected", "RerankDialect", "RerankRequest"]


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
