"""Base of the HTTP rerankers that cut long documents on the client (every provider but the two that chunk
on the server, DMXAPI and SiliconFlow).

It only holds the three options; the cutting, scoring and max-aggregation happen in the pipeline through
:mod:`rerankpd.core.chunking`, so chunks are ordinary (query, text) pairs: batched, cached and retried like any.

Examples
--------
>>> from rerankpd.rerankers.jina import JinaReranker
>>> JinaReranker(api_key="k", max_chunks_per_doc=3, chunk_tokens=200, overlap_tokens=20).chunking
ChunkSpec(chunk_tokens=200, overlap_tokens=20, max_chunks=3)
"""

from __future__ import annotations

from ...core.chunking import chunk_spec
from .client import HTTPReranker

__all__ = ["ClientChunkedReranker"]


class ClientChunkedReranker(HTTPReranker):
    """An :class:`~rerankpd.rerankers.http.client.HTTPReranker` with client-side chunking options.

    Parameters
    ----------
    max_chunks_per_doc
        When set, documents longer than ``chunk_tokens`` approximate tokens are cut into at most this many
        overlapping windows; each is scored and the document gets its best chunk's score (and the output a
        ``rerank_chunk`` column). None (default): documents are sent whole.
    chunk_tokens
        Window length in approximate tokens (CJK characters and other words); default 512.
    overlap_tokens
        Tokens shared by neighbouring windows; default 0.
    **options
        The :class:`~rerankpd.rerankers.http.client.HTTPReranker` options.
    """

    def __init__(
        self,
        *,
        max_chunks_per_doc: int | None = None,
        chunk_tokens: int | None = None,
        overlap_tokens: int | None = None,
        **options,
    ) -> None:
        self.chunking = chunk_spec(max_chunks_per_doc, chunk_tokens, overlap_tokens)
        super().__init__(**options)
