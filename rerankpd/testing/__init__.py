"""A real rerank server on 127.0.0.1, for tests, notebooks and benchmarks that must run offline.

:class:`LoopbackRerankServer` is an HTTP server in a background thread that speaks a rerank service's
documented JSON (DMXAPI's by default: ``POST /v1/rerank`` with ``model``, ``query``, ``documents``,
``top_n``, ``return_documents``; results sorted by score with ``index`` and ``relevance_score``, and a
``usage`` object). It scores with a deterministic function (character-bigram overlap by default, or the
``score_fn`` you give), records every request, measures how many were in flight at once, and can inject
the faults a real gateway throws: 429 with Retry-After, 5xx, an HTML error page, truncated JSON, a result
missing an index, a stall past the client's read timeout, a body trickled byte by byte, a dropped
connection, or any raw body.

Two modules: :mod:`rerankpd.testing.server` (the server, its faults and its request log) and
:mod:`rerankpd.testing.dialects` (the wire formats). A dialect is a :class:`Dialect` subclass with ``path``,
``check_auth``, ``parse_request``, ``texts``, ``respond`` and ``error_body`` (the contract is spelled out in
:mod:`rerankpd.testing.dialects`); :func:`register_dialect` adds one under a name that
``LoopbackRerankServer(dialect=name)`` then accepts, without touching the server.

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

from . import dialects
from .dialects import (
    DIALECTS,
    CohereDialect,
    DashScopeDialect,
    Dialect,
    DMXAPIDialect,
    InfinityDialect,
    JinaDialect,
    MixedbreadDialect,
    NIMDialect,
    PineconeDialect,
    RequestRejected,
    RerankDialect,
    RerankRequest,
    SiliconFlowDialect,
    TEIDialect,
    VLLMDialect,
    VoyageDialect,
    register_dialect,
)
from .embeddings_dialect import OpenAIEmbeddingsDialect, bigram_embedding  # registers "openai-embeddings"
from .samples import cranfield_sample
from .server import FAULT_KINDS, Fault, LoopbackRerankServer, RecordedRequest, overlap_score

__all__ = [
    "FAULT_KINDS",
    "Fault",
    "LoopbackRerankServer",
    "OpenAIEmbeddingsDialect",
    "RecordedRequest",
    "bigram_embedding",
    "cranfield_sample",
    "overlap_score",
]
__all__ += dialects.__all__  # the dialects' names (a form type checkers read)

# Registers the "openai-chat" dialect (the llm reranker's fake LLM): rerankpd.testing.chat.OpenAIChatDialect.
from . import chat as _chat  # noqa: E402,F401
