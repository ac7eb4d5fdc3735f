"""Base of the HTTP rerankers that cut long documents on the server: DMXAPI and SiliconFlow.

Both take ``max_chunks_per_doc`` and ``overlap_tokens`` (0 to 80) in the request body and give a document
its best chunk's score. The options change scores, so they are part of the cache identity.

Examples
--------
>>> from rerankpd.rerankers.dmxapi import DMXAPIReranker
>>> r = DMXAPIReranker(api_key="k", max_chunks_per_doc=5, overlap_tokens=20)
>>> r.request_body("q", ["a"])["max_chunks_per_doc"], r.score_options()
(5, {'max_chunks_per_doc': 5, 'overlap_tokens': 20})
"""

from __future__ import annotations

from ...core.options import whole
from .client import HTTPReranker

__all__ = ["ServerChunkedReranker"]


class ServerChunkedReranker(HTTPReranker):
    """An :class:`~rerankpd.rerankers.http.client.HTTPReranker` whose service chunks long documents itself.

    Parameters
    ----------
    max_chunks_per_doc
        Chunks a long document is cut into on the server; its score is its best chunk's.
    overlap_tokens
        Tokens shared by neighbouring chunks, 0 to 80.
    **options
        The :class:`~rerankpd.rerankers.http.client.HTTPReranker` options.
    """

    def __init__(self, *, max_chunks_per_doc: int | None = None, overlap_tokens: int | None = None, **options) -> None:
        self.max_chunks_per_doc = whole("max_chunks_per_doc", max_chunks_per_doc, minimum=1, allow_none=True)
        self.overlap_tokens = whole("overlap_tokens", overlap_tokens, minimum=0, maximum=80, allow_none=True)
        super().__init__(**options)

    def score_options(self) -> dict:
        options: dict = {}
        if self.max_chunks_per_doc is not None:
            options["max_chunks_per_doc"] = self.max_chunks_per_doc
        if self.overlap_tokens is not None:
            options["overlap_tokens"] = self.overlap_tokens
        return options
