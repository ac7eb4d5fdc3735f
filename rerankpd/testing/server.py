"""The loopback HTTP server: routing, auth, rate limit, latency, faults and the request log.

It knows nothing of any service's JSON: a dialect (:mod:`rerankpd.testing.dialects`) parses each body and
renders each answer. See :mod:`rerankpd.testing` for an example.
"""

from __future__ import annotations

import json
import math
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .dialects import DIALECTS, Dialect, DMXAPIDialect

__all__ = ["FAULT_KINDS", "Fault", "LoopbackRerankServer", "RecordedRequest", "overlap_score"]

#: The faults :class:`Fault` can serve (``"status"``, ``"raw"`` and ``"trickle"`` take options; the random
#: faults of ``fault_rate`` are drawn from these nine).
FAULT_KINDS = ("429", "500", "502", "503", "html", "truncated", "missing_index", "stall", "drop")


def _grams(text: str) -> set[str]:
    text = "".join(text.lower().split())
    return {text[i : i + 2] for i in range(len(text) - 1)} or ({text} if text else set())


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

    ``kind`` is one of :data:`FAULT_KINDS`, or:

    ``"status"``
        An error answer with ``status`` and ``message`` in the dialect's error body.
    ``"raw"``
        ``body`` (bytes) as it is, with ``status`` and ``headers`` (a malformed or hostile answer, a
        ``Content-Encoding: gzip`` bomb).
    ``"trickle"``
        A valid answer sent one byte every ``trickle_interval`` seconds for about ``stall_seconds``
        (whitespace first, then the JSON): a server that never times out a read but never finishes.
    """

    kind: str
    retry_after: str | None = "0"
    status: int = 500
    message: str = "injected fault"
    stall_seconds: float = 2.0
    body: bytes = b""
    trickle_interval: float = 0.1
    headers: dict | None = None


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
        When set, requests must carry it in ``Authorization`` (as the dialect's ``check_auth`` says), else 401.
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
    fault_retry_after
        The ``Retry-After`` header of a random ``"429"`` fault (``"0"``; None sends none).
    dialect
        The wire format: a :class:`~rerankpd.testing.Dialect` object or a name from
        :data:`~rerankpd.testing.DIALECTS` (``"cohere"``, ``"tei"``, ...); DMXAPI's by default.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        score_fn: Callable[[str, str], float] = overlap_score,
        latency: float = 0.0,
        fault_rate: float = 0.0,
        fault_kinds: tuple[str, ...] = FAULT_KINDS,
        seed: int = 0,
        dialect: Any = None,
        stall_seconds: float = 2.0,
        latency_per_document: float = 0.0,
        rate_limit: float | None = None,
        rate_limit_burst: float | None = None,
        fault_retry_after: str | None = "0",
    ) -> None:
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
        self.fault_retry_after = fault_retry_after
        self.stall_seconds = stall_seconds
        if isinstance(dialect, str):
            try:
                dialect = DIALECTS[dialect]()
            except KeyError:
                raise ValueError(f"unknown dialect {dialect!r}; choose one of {', '.join(sorted(DIALECTS))}") from None
        self.dialect: Dialect = dialect or DMXAPIDialect()
        self._rng = random.Random(seed)
        self._state = _State()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> LoopbackRerankServer:
        server = self

        class Handler(_Handler):
            owner = server

        self._httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="loopback-rerank", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> LoopbackRerankServer:
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
                out.extend(self.dialect.texts(self.dialect.parse_request(request.body)))
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
                return Fault(
                    self._rng.choice(self.fault_kinds),
                    stall_seconds=self.stall_seconds,
                    retry_after=self.fault_retry_after,
                )
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

    def _send(
        self, status: int, body: bytes, content_type: str = "application/json", headers: dict[str, str] | None = None
    ) -> None:
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
            state.requests.append(
                RecordedRequest("POST", self.path, dict(self.headers.items()), body, time.monotonic())
            )
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
            self._json(
                429,
                dialect.error_body(429, "rate limit exceeded"),
                {"Retry-After": f"{math.ceil(over * 100) / 100:.2f}"},
            )
            return
        if owner.latency:
            time.sleep(owner.latency)
        if self.path != dialect.path:
            self._json(404, dialect.error_body(404, f"no route for {self.path}"))
            return
        auth_header = getattr(dialect, "auth_header", "Authorization")
        if owner.api_key is not None and not dialect.check_auth(self.headers.get(auth_header), owner.api_key):
            # like some real services, the message quotes the key it was given: a client must scrub it
            presented = self.headers.get(auth_header) or ""
            self._json(401, dialect.error_body(401, f"invalid api key or insufficient quota: {presented!r}"))
            return
        try:
            request = dialect.parse_request(body)
        except ValueError as exc:
            status = getattr(exc, "status", 400)
            self._json(status, dialect.error_body(status, str(exc)))
            return
        if owner.latency_per_document:
            time.sleep(owner.latency_per_document * len(dialect.texts(request)))
        fault = owner._next_fault()
        if fault is not None and self._serve_fault(fault, dialect, request, owner):
            return
        self._json(200, dialect.respond(request, owner.score_fn))

    def _serve_fault(self, fault: Fault, dialect: Dialect, request: Any, owner: LoopbackRerankServer) -> bool:
        kind = fault.kind
        if kind == "429":
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            self._json(429, dialect.error_body(429, "rate limit exceeded"), headers)
        elif kind in ("500", "502", "503"):
            self._json(int(kind), dialect.error_body(int(kind), f"upstream error {kind}"))
        elif kind == "status":
            self._json(fault.status, dialect.error_body(fault.status, fault.message))
        elif kind == "raw":
            self._send(fault.status, fault.body, headers=fault.headers)
        elif kind == "html":
            self._send(502, b"<html><body><h1>502 Bad Gateway</h1>nginx</body></html>", "text/html")
        elif kind == "truncated":
            self._send(200, b'{"results": [{"index": 0, "relevance_sc')
        elif kind == "missing_index":
            self._json(200, dialect.incomplete(request))
        elif kind == "stall":
            time.sleep(fault.stall_seconds)
            return False
        elif kind == "trickle":
            self._trickle(json.dumps(dialect.respond(request, owner.score_fn)).encode("utf-8"), fault)
        elif kind == "drop":
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        else:
            raise ValueError(f"unknown fault kind {kind!r}")
        return True

    def _trickle(self, answer: bytes, fault: Fault) -> None:
        """Send ``answer`` after whitespace, one byte per ``trickle_interval``, for about ``stall_seconds``."""
        steps = max(1, int(fault.stall_seconds / fault.trickle_interval))
        body = b" " * steps + answer
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        try:
            for i in range(steps):
                self.wfile.write(body[i : i + 1])
                self.wfile.flush()
                time.sleep(fault.trickle_interval)
            self.wfile.write(body[steps:])
        except OSError:  # the client gave up: that is the point
            pass
