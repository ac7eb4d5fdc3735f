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

Where they live: :class:`Dialect`, :class:`RerankDialect` and the request checks they share in
:mod:`rerankpd.testing.dialect_base`; one class per rerank service in :mod:`rerankpd.testing.rerank_dialects`.
This module names them all and holds the registry (:data:`DIALECTS`, :func:`register_dialect`).

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

from .dialect_base import Dialect, RequestRejected, RerankDialect, RerankRequest
from .rerank_dialects import (
    CohereDialect,
    DashScopeDialect,
    DMXAPIDialect,
    InfinityDialect,
    JinaDialect,
    MixedbreadDialect,
    NIMDialect,
    PineconeDialect,
    SiliconFlowDialect,
    TEIDialect,
    VLLMDialect,
    VoyageDialect,
)

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
