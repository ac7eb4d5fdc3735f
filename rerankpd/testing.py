"""A real rerank server on 127.0.0.1, for tests, notebooks and benchmarks that must run offline.

:class:`LoopbackRerankServer` is an HTTP server in a background thread that speaks a rerank service's
documented JSON (DMXAPI's by default: ``POST /v1/rerank`` with ``model``, ``query``, ``documents``,
``top_n``, ``return_documents``; results sorted by score with ``index`` and ``relevance_score``, and a
``usage`` object). It scores with a deterministic function (character-bigram overlap by default, or the
``score_fn`` you give), records every request, measures how many were in flight at once, and can inject
the faults a real gateway throws: 429 with Retry-After, 5xx, an HTML error page, truncated JSON, a result
missing an index, a stall past the client's read timeout, a dropped connection.

Examples
--------
>>> import pandas as pd, rerankpd
>>> from rerankpd.testing import LoopbackRerankServer
>>> with LoopbackRerankServer(api_key="sk-test") as server:
...     r = rerankpd.get_reranker("dmxapi", api_key="sk-test", base_url=server.url)
...     out = pd.DataFrame({"text": ["cold prevention tips", "stock prices"]}).rerank(
...         "how to prevent a cold", reranker=r, cache=False, progress=False)
>>> out.index.tolist(), len(server.requests)
([0, 1], 1)
"""
from __future__ import annotations

import json
import math
import random
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

__all__ = [
    "DIALECTS",
    "CohereDialect",
    "DMXAPIDialect",
    "DashScopeDialect",
    "Fault",
    "InfinityDialect",
    "JinaDialect",
    "LoopbackRerankServer",
    "RecordedRequest",
    "RequestRejected",
    "SiliconFlowDialect",
    "TEIDialect",
    "VLLMDialect",
    "VoyageDialect",
    "overlap_score",
]

FAULT_KINDS = ("429", "500", "502", "503", "html", "truncated", "missing_index", "stall", "drop")


def _grams(text: str) -> set[str]:
    text = "".join(text.lower().split())
    return {text[i:i + 2] for i in range(len(text) - 1)} or ({text} if text else set())


def overlap_score(query: str, document: str) -> float:
    """A deterministic stand-in for a cross-encoder: the share of the query's character bigrams in the document.

    >>> overlap_score("abc", "xabcx") > overlap_score("abc", "xyz")
    True
    """
    q = _grams(query)
    if not q:
        return 0.0
    d = _grams(document)
    return round(len(q & d) / len(q) * 0.98 + 0.01 * (1.0 / (1.0 + len(document) / 100.0)), 6)


@dataclass
class RecordedRequest:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    received_at: float


@dataclass
class Fault:
    """A fault to serve instead of a normal answer.

    ``kind`` is one of ``"429"``, ``"500"``, ``"502"``, ``"503"``, ``"html"``, ``"truncated"``,
    ``"missing_index"``, ``"stall"``, ``"drop"``, or ``"status"`` with ``status`` and ``message``.
    """

    kind: str
    retry_after: str | None = "0"
    status: int = 500
    message: str = "injected fault"
    stall_seconds: float = 2.0


class RequestRejected(ValueError):
    """A request the service would refuse; ``status`` is the HTTP status it answers with (400 by default)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class DMXAPIDialect:
    """DMXAPI's (and Cohere-style) request and answer shape; other dialects override these four methods."""

    path = "/v1/rerank"

    def parse_request(self, body: Any) -> tuple[str, list[str], int | None, bool]:
        """(query, documents, top_n, return_documents); ValueError with the service's words if invalid."""
        if not isinstance(body, dict):
            raise ValueError("request body must be a JSON object")
        if not body.get("model"):
            raise ValueError("model is required")
        query, documents = body.get("query"), body.get("documents")
        if not isinstance(query, str) or not query:
            raise ValueError("query is required")
        if not isinstance(documents, list) or not documents or not all(isinstance(d, str) for d in documents):
            raise ValueError("documents must be a non-empty list of strings")
        top_n = body.get("top_n")
        if top_n is not None and (not isinstance(top_n, int) or top_n < 1):
            raise ValueError("top_n must be a positive integer")
        return query, documents, top_n, bool(body.get("return_documents", False))

    def render(self, ranked: list[tuple[int, float]], documents: list[str], return_documents: bool,
               tokens: int) -> dict:
        results = []
        for index, score in ranked:
            item: dict[str, Any] = {"index": index, "relevance_score": score}
            if return_documents:
                item["document"] = {"text": documents[index]}
            results.append(item)
        return {"results": results, "usage": {"prompt_tokens": tokens, "completion_tokens": 0,
                                              "total_tokens": tokens}}

    def error_body(self, status: int, message: str) -> dict:
        return {"error": {"message": message, "type": "invalid_request_error" if status < 500 else "server_error",
                          "code": status}}

    def check_auth(self, header: str | None, api_key: str) -> bool:
        return header in (api_key, f"Bearer {api_key}")


def _bearer(header: str | None, api_key: str) -> bool:
    return header == f"Bearer {api_key}"


def _object(body: Any, allowed: set[str], required: tuple[str, ...]) -> dict:
    """The body as a dict with only ``allowed`` fields and every ``required`` one (RequestRejected if not)."""
    if not isinstance(body, dict):
        raise RequestRejected("request body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise RequestRejected(f"unknown field(s) {', '.join(unknown)}", 422)
    for name in required:
        if body.get(name) in (None, ""):
            raise RequestRejected(f"{name} is required")
    return body


def _texts(query: Any, documents: Any, field: str = "documents", limit: int | None = None,
           limit_status: int = 400) -> tuple[str, list[str]]:
    if not isinstance(query, str) or not query:
        raise RequestRejected("query must be a non-empty string")
    if not isinstance(documents, list) or not documents or not all(isinstance(d, str) for d in documents):
        raise RequestRejected(f"{field} must be a non-empty list of strings")
    if limit is not None and len(documents) > limit:
        raise RequestRejected(f"{field}: {len(documents)} items, at most {limit} per request", limit_status)
    return query, documents


def _top(value: Any, name: str, allow_zero: bool = False) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < (0 if allow_zero else 1):
        raise RequestRejected(f"{name} must be a positive integer")
    return value or None


def _cohere_results(ranked, documents, return_documents, document_as="object") -> list[dict]:
    results = []
    for index, score in ranked:
        item: dict[str, Any] = {"index": index, "relevance_score": score}
        if return_documents:
            item["document"] = {"text": documents[index]} if document_as == "object" else documents[index]
        results.append(item)
    return results


class SiliconFlowDialect(DMXAPIDialect):
    """SiliconFlow: https://docs.siliconflow.cn/en/api-reference/rerank/create-rerank. Usage in ``tokens``,
    errors ``{"code", "message", "data"}``, Bearer auth, ``overlap_tokens`` at most 80."""

    path = "/v1/rerank"
    fields = {"model", "query", "documents", "top_n", "return_documents", "max_chunks_per_doc",
              "overlap_tokens", "instruction"}

    def parse_request(self, body):
        body = _object(body, self.fields, ("model",))
        query, documents = _texts(body.get("query"), body.get("documents"))
        overlap = body.get("overlap_tokens")
        if overlap is not None and (not isinstance(overlap, int) or not 0 <= overlap <= 80):
            raise RequestRejected("overlap_tokens must be between 0 and 80")
        return query, documents, _top(body.get("top_n"), "top_n"), bool(body.get("return_documents", False))

    def render(self, ranked, documents, return_documents, tokens):
        return {"id": "loopback-siliconflow", "results": _cohere_results(ranked, documents, return_documents),
                "tokens": {"input_tokens": tokens, "output_tokens": 0}}

    def error_body(self, status, message):
        return {"code": 20000 + status, "message": message, "data": None}

    def check_auth(self, header, api_key):
        return _bearer(header, api_key)


class CohereDialect(DMXAPIDialect):
    """Cohere v2: https://docs.cohere.com/reference/rerank. No ``return_documents`` in v2; usage in
    ``meta.billed_units``; errors ``{"message"}``."""

    path = "/v2/rerank"
    fields = {"model", "query", "documents", "top_n", "max_tokens_per_doc"}

    def parse_request(self, body):
        body = _object(body, self.fields, ("model",))
        query, documents = _texts(body.get("query"), body.get("documents"))
        return query, documents, _top(body.get("top_n"), "top_n"), False

    def render(self, ranked, documents, return_documents, tokens):
        return {"results": _cohere_results(ranked, documents, False), "id": "loopback-cohere",
                "meta": {"api_version": {"version": "2", "is_experimental": False},
                         "billed_units": {"search_units": 1}}}

    def error_body(self, status, message):
        return {"id": "loopback-cohere-error", "message": f"invalid request: {message}"}

    def check_auth(self, header, api_key):
        return _bearer(header, api_key)


class JinaDialect(DMXAPIDialect):
    """Jina: https://jina.ai/reranker/ and https://api.jina.ai/openapi.json. Errors ``{"detail"}``."""

    path = "/v1/rerank"
    fields = {"model", "query", "documents", "top_n", "return_documents"}

    def parse_request(self, body):
        body = _object(body, self.fields, ("model",))
        query, documents = _texts(body.get("query"), body.get("documents"))
        return query, documents, _top(body.get("top_n"), "top_n"), bool(body.get("return_documents", True))

    def render(self, ranked, documents, return_documents, tokens):
        return {"model": "jina-reranker-v2-base-multilingual",
                "usage": {"total_tokens": tokens, "prompt_tokens": tokens},
                "results": _cohere_results(ranked, documents, return_documents)}

    def error_body(self, status, message):
        return {"detail": message}

    def check_auth(self, header, api_key):
        return _bearer(header, api_key)


class VoyageDialect(DMXAPIDialect):
    """Voyage: https://docs.voyageai.com/reference/reranker-api. ``top_k``, at most 1,000 documents,
    results in ``data``; errors ``{"detail"}``."""

    path = "/v1/rerank"
    fields = {"query", "documents", "model", "top_k", "return_documents", "truncation"}
    max_documents = 1000

    def parse_request(self, body):
        body = _object(body, self.fields, ("model",))
        query, documents = _texts(body.get("query"), body.get("documents"), limit=self.max_documents)
        if "truncation" in body and not isinstance(body["truncation"], bool):
            raise RequestRejected("truncation must be a boolean")
        return query, documents, _top(body.get("top_k"), "top_k"), bool(body.get("return_documents", False))

    def render(self, ranked, documents, return_documents, tokens):
        data = []
        for index, score in ranked:
            item: dict[str, Any] = {"index": index, "relevance_score": score}
            if return_documents:
                item["document"] = documents[index]
            data.append(item)
        return {"object": "list", "data": data, "model": "rerank-2.5", "usage": {"total_tokens": tokens}}

    def error_body(self, status, message):
        return {"detail": message}

    def check_auth(self, header, api_key):
        return _bearer(header, api_key)


class DashScopeDialect(DMXAPIDialect):
    """DashScope: https://help.aliyun.com/zh/model-studio/text-rerank-api. ``input``/``parameters`` in,
    ``output.results`` out, at most 500 documents; errors ``{"code", "message", "request_id"}``."""

    path = "/api/v1/services/rerank/text-rerank/text-rerank"
    base_path = "/api/v1"
    max_documents = 500
    codes = {400: "InvalidParameter", 401: "InvalidApiKey", 403: "AccessDenied", 404: "InvalidURL",
             429: "Throttling.RateQuota", 500: "InternalError"}

    def parse_request(self, body):
        body = _object(body, {"model", "input", "parameters"}, ("model", "input"))
        given = body["input"]
        if not isinstance(given, dict) or set(given) - {"query", "documents"}:
            raise RequestRejected("input must be an object with query and documents")
        query, documents = _texts(given.get("query"), given.get("documents"), limit=self.max_documents)
        parameters = body.get("parameters") or {}
        if not isinstance(parameters, dict) or set(parameters) - {"top_n", "return_documents"}:
            raise RequestRejected("parameters may hold only top_n and return_documents")
        return query, documents, _top(parameters.get("top_n"), "top_n"), bool(parameters.get("return_documents"))

    def render(self, ranked, documents, return_documents, tokens):
        return {"output": {"results": _cohere_results(ranked, documents, return_documents)},
                "usage": {"total_tokens": tokens}, "request_id": "loopback-dashscope"}

    def error_body(self, status, message):
        return {"code": self.codes.get(status, "InternalError"), "message": message,
                "request_id": "loopback-dashscope-error"}

    def check_auth(self, header, api_key):
        return _bearer(header, api_key)


class TEIDialect(DMXAPIDialect):
    """Text Embeddings Inference: ``POST /rerank`` with ``texts``; a bare array of ``{index, score}``;
    errors ``{"error", "error_type"}``; more than ``max_client_batch_size`` texts (32) is a 413."""

    path = "/rerank"
    base_path = ""
    max_client_batch_size = 32
    fields = {"query", "texts", "truncate", "truncation_direction", "raw_scores", "return_text"}

    def parse_request(self, body):
        body = _object(body, self.fields, ())
        query, documents = _texts(body.get("query"), body.get("texts"), field="texts",
                                  limit=self.max_client_batch_size, limit_status=413)
        return query, documents, None, bool(body.get("return_text", False))

    def render(self, ranked, documents, return_documents, tokens):
        out = []
        for index, score in ranked:
            item: dict[str, Any] = {"index": index, "score": score}
            if return_documents:
                item["text"] = documents[index]
            out.append(item)
        return out

    def error_body(self, status, message):
        kind = {413: "validation", 422: "tokenizer", 424: "backend", 429: "overloaded", 503: "unhealthy"}
        return {"error": message, "error_type": kind.get(status, "validation" if status < 500 else "backend")}

    def check_auth(self, header, api_key):
        return _bearer(header, api_key)


class InfinityDialect(DMXAPIDialect):
    """Infinity: ``RerankInput``/``ReRankResult`` of michaelfeil/infinity. At most 2048 documents (422);
    OpenAI-style errors."""

    path = "/rerank"
    base_path = ""
    max_documents = 2048
    fields = {"query", "documents", "return_documents", "raw_scores", "model", "top_n"}

    def parse_request(self, body):
        body = _object(body, self.fields, ())
        query, documents = _texts(body.get("query"), body.get("documents"), limit=self.max_documents,
                                  limit_status=422)
        return query, documents, _top(body.get("top_n"), "top_n"), bool(body.get("return_documents", False))

    def render(self, ranked, documents, return_documents, tokens):
        results = [{"relevance_score": score, "index": index,
                    "document": documents[index] if return_documents else None} for index, score in ranked]
        return {"object": "rerank", "results": results, "model": "loopback-model",
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}, "id": "infinity-loopback",
                "created": 0}

    def check_auth(self, header, api_key):
        return _bearer(header, api_key)


class VLLMDialect(DMXAPIDialect):
    """vLLM's ``/v1/rerank``: ``top_n`` 0 means all; the answer always echoes each document's text."""

    path = "/v1/rerank"
    fields = {"model", "query", "documents", "top_n", "truncate_prompt_tokens"}

    def parse_request(self, body):
        body = _object(body, self.fields, ())
        query, documents = _texts(body.get("query"), body.get("documents"))
        return query, documents, _top(body.get("top_n"), "top_n", allow_zero=True), True

    def render(self, ranked, documents, return_documents, tokens):
        return {"id": "rerank-loopback", "model": "loopback-model",
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                "results": _cohere_results(ranked, documents, True)}

    def error_body(self, status, message):
        return {"error": {"message": message, "type": "BadRequestError" if status < 500 else "InternalServerError",
                          "param": None, "code": status}}

    def check_auth(self, header, api_key):
        return _bearer(header, api_key)


#: Dialect classes by reranker name.
DIALECTS: dict[str, type] = {
    "cohere": CohereDialect,
    "dashscope": DashScopeDialect,
    "dmxapi": DMXAPIDialect,
    "infinity": InfinityDialect,
    "jina": JinaDialect,
    "siliconflow": SiliconFlowDialect,
    "tei": TEIDialect,
    "vllm": VLLMDialect,
    "voyage": VoyageDialect,
}


@dataclass
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: list[RecordedRequest] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    queued_faults: list[Fault] = field(default_factory=list)
    scheduled_faults: dict[int, Fault] = field(default_factory=dict)
    faults_served: int = 0
    rate_limited: int = 0


class LoopbackRerankServer:
    """A rerank server on 127.0.0.1 in a background thread; use as a context manager.

    Parameters
    ----------
    api_key
        When set, requests must carry it in ``Authorization`` (bare or ``Bearer``), else 401.
    score_fn
        ``score_fn(query, document) -> float``; default :func:`overlap_score`.
    latency
        Seconds each answer waits before it is sent.
    latency_per_document
        Further seconds per document in the request (the cost of scoring).
    rate_limit, rate_limit_burst
        Admit at most ``rate_limit`` requests per second (a token bucket holding ``rate_limit_burst``
        requests, one second's worth by default); any request above it is answered at once with 429 and a
        ``Retry-After`` of the seconds until the next one would be admitted. ``rate_limited`` counts them.
    fault_rate, fault_kinds, seed
        The share of requests that meet a random fault drawn from ``fault_kinds`` (seeded, repeatable).
    dialect
        The wire format: a dialect object or a name from :data:`DIALECTS` (``"cohere"``, ``"tei"``, ...);
        :class:`DMXAPIDialect` by default.
    """

    def __init__(self, *, api_key: str | None = None, score_fn: Callable[[str, str], float] = overlap_score,
                 latency: float = 0.0, fault_rate: float = 0.0, fault_kinds: tuple[str, ...] = FAULT_KINDS,
                 seed: int = 0, dialect: Any = None, stall_seconds: float = 2.0,
                 latency_per_document: float = 0.0, rate_limit: float | None = None,
                 rate_limit_burst: float | None = None) -> None:
        self.api_key = api_key
        self.score_fn = score_fn
        self.latency = latency
        self.latency_per_document = latency_per_document
        if rate_limit is not None and not rate_limit > 0:
            raise ValueError(f"rate_limit must be a positive number of requests per second, got {rate_limit!r}")
        self.rate_limit = rate_limit
        self.rate_limit_burst = max(1.0, rate_limit_burst or rate_limit or 1.0)
        self._bucket = (self.rate_limit_burst, time.monotonic())  # (tokens, at)
        self.fault_rate = fault_rate
        self.fault_kinds = tuple(fault_kinds)
        self.stall_seconds = stall_seconds
        if isinstance(dialect, str):
            try:
                dialect = DIALECTS[dialect]()
            except KeyError:
                raise ValueError(f"unknown dialect {dialect!r}; choose one of {', '.join(sorted(DIALECTS))}") from None
        self.dialect = dialect or DMXAPIDialect()
        self._rng = random.Random(seed)
        self._state = _State()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "LoopbackRerankServer":
        server = self

        class Handler(_Handler):
            owner = server

        self._httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="loopback-rerank", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "LoopbackRerankServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "start the server first"
        return self._httpd.server_address[1]

    @property
    def root(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The base URL to give a reranker: the dialect's ``base_path``, else its path minus the last part."""
        base = getattr(self.dialect, "base_path", None)
        return self.root + (base if base is not None else self.dialect.path.rsplit("/", 1)[0])

    # ------------------------------------------------------------------ observation and faults
    @property
    def requests(self) -> list[RecordedRequest]:
        with self._state.lock:
            return list(self._state.requests)

    @property
    def max_in_flight(self) -> int:
        return self._state.max_in_flight

    @property
    def faults_served(self) -> int:
        return self._state.faults_served

    @property
    def rate_limited(self) -> int:
        """Requests answered 429 because they came above ``rate_limit``."""
        return self._state.rate_limited

    def _admit(self) -> float | None:
        """None if the request is within ``rate_limit``, else the seconds until one would be."""
        if self.rate_limit is None:
            return None
        with self._state.lock:
            tokens, at = self._bucket
            now = time.monotonic()
            tokens = min(self.rate_limit_burst, tokens + (now - at) * self.rate_limit)
            if tokens >= 1.0:
                self._bucket = (tokens - 1.0, now)
                return None
            self._bucket = (tokens, now)
            self._state.rate_limited += 1
            return (1.0 - tokens) / self.rate_limit

    def documents_received(self) -> list[str]:
        """Every document of every recorded request, in arrival order."""
        out: list[str] = []
        for request in self.requests:
            try:
                out.extend(self.dialect.parse_request(request.body)[1])
            except ValueError:
                continue
        return out

    def fail_next(self, kind: str, count: int = 1, **options) -> None:
        """Serve the fault ``kind`` to the next ``count`` requests."""
        with self._state.lock:
            self._state.queued_faults.extend(Fault(kind, **options) for _ in range(count))

    def fail_on_request(self, number: int, kind: str, **options) -> None:
        """Serve the fault ``kind`` to the ``number``-th request received (1-based, counted since reset)."""
        with self._state.lock:
            self._state.scheduled_faults[number] = Fault(kind, **options)

    def reset(self) -> None:
        with self._state.lock:
            self._state.requests.clear()
            self._state.scheduled_faults.clear()
            self._state.max_in_flight = 0
            self._state.faults_served = 0
            self._state.rate_limited = 0

    def _next_fault(self) -> Fault | None:
        with self._state.lock:
            scheduled = self._state.scheduled_faults.pop(len(self._state.requests), None)
            if scheduled is not None:
                self._state.faults_served += 1
                return scheduled
            if self._state.queued_faults:
                self._state.faults_served += 1
                return self._state.queued_faults.pop(0)
            if self.fault_rate and self._rng.random() < self.fault_rate:
                self._state.faults_served += 1
                return Fault(self._rng.choice(self.fault_kinds), stall_seconds=self.stall_seconds)
        return None


class _QuietServer(ThreadingHTTPServer):
    """A client that hangs up (a timed-out or dropped request, by design in these tests) is not an error."""

    def handle_error(self, request, client_address) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    owner: LoopbackRerankServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go in two writes; Nagle + delayed ACK would add ~40 ms

    def log_message(self, format, *args):  # noqa: A002 - keep test output quiet
        pass

    def _send(self, status: int, body: bytes, content_type: str = "application/json",
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload, ensure_ascii=False).encode("utf-8"), headers=headers)

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        owner, state = self.owner, self.owner._state
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw.decode("utf-8"))
        except ValueError:
            body = None
        with state.lock:
            state.requests.append(RecordedRequest("POST", self.path, dict(self.headers.items()), body,
                                                  time.monotonic()))
            state.in_flight += 1
            state.max_in_flight = max(state.max_in_flight, state.in_flight)
        try:
            self._answer(owner, body)
        finally:
            with state.lock:
                state.in_flight -= 1

    def _answer(self, owner: LoopbackRerankServer, body: Any) -> None:
        dialect = owner.dialect
        over = owner._admit()
        if over is not None:
            self._json(429, dialect.error_body(429, "rate limit exceeded"),
                       {"Retry-After": f"{math.ceil(over * 100) / 100:.2f}"})
            return
        if owner.latency:
            time.sleep(owner.latency)
        if self.path != dialect.path:
            self._json(404, dialect.error_body(404, f"no route for {self.path}"))
            return
        if owner.api_key is not None and not dialect.check_auth(self.headers.get("Authorization"), owner.api_key):
            self._json(401, dialect.error_body(401, "invalid api key or insufficient quota"))
            return
        try:
            query, documents, top_n, return_documents = dialect.parse_request(body)
        except ValueError as exc:
            status = getattr(exc, "status", 400)
            self._json(status, dialect.error_body(status, str(exc)))
            return
        if owner.latency_per_document:
            time.sleep(owner.latency_per_document * len(documents))
        fault = owner._next_fault()
        if fault is not None and self._serve_fault(fault, dialect, documents):
            return
        scored = [(i, float(owner.score_fn(query, d))) for i, d in enumerate(documents)]
        ranked = sorted(scored, key=lambda item: -item[1])[: top_n or len(documents)]
        tokens = len(query) + sum(len(d) for d in documents)
        self._json(200, dialect.render(ranked, documents, return_documents, tokens))

    def _serve_fault(self, fault: Fault, dialect: Any, documents: list[str]) -> bool:
        kind = fault.kind
        if kind == "429":
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            self._json(429, dialect.error_body(429, "rate limit exceeded"), headers)
        elif kind in ("500", "502", "503"):
            self._json(int(kind), dialect.error_body(int(kind), f"upstream error {kind}"))
        elif kind == "status":
            self._json(fault.status, dialect.error_body(fault.status, fault.message))
        elif kind == "html":
            self._send(502, b"<html><body><h1>502 Bad Gateway</h1>nginx</body></html>", "text/html")
        elif kind == "truncated":
            self._send(200, b'{"results": [{"index": 0, "relevance_sc')
        elif kind == "missing_index":
            ranked = [(i, 0.5) for i in range(1, len(documents))]
            self._json(200, dialect.render(ranked, documents, False, 1))
        elif kind == "stall":
            time.sleep(fault.stall_seconds)
            return False
        elif kind == "drop":
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        else:
            raise ValueError(f"unknown fault kind {kind!r}")
        return True
