"""Base of the HTTP rerankers that cut long documents on the server: DMXAPI and SiliconFlow.

Both take ``max_chunks_per_doc`` and ``overlap_tokens`` (0 to 80) in the request body and give a document
its best chunk's score. The options change scores, so they are part of the cache identity.

Examples
--------
>>> from rerankpd.rerankers.dmxapi import DMXAPIReranker
>>> r = DMXAPIReranker(api_key="k", max_chunks_per_doc=5, overlap_tokens=20)
>>> r.build_payload("q", ["a"])["max_chunks_per_doc"], r.score_options()
(5, {'max_chunks_per_doc': 5, 'overlap_tokens': 20})
"""
from __future__ import annotations

from typing import Sequence

from ..errors import ConfigurationError
from .http import HTTPReranker

__all__ = ["ServerChunkedReranker"]


def _whole(name: str, value, low: int, high: int | None = None) -> None:
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < low or (high is not None and value > high):
        bound = f"from {low} to {high}" if high is not None else f">= {low}"
        raise ConfigurationError(f"{name} must be a whole number {bound}, got {value!r}")


class ServerChunkedReranker(HTTPReranker):
    """An :class:`~rerankpd.rerankers.http.HTTPReranker` whose service chunks long documents itself.

    Parameters
    ----------
    max_chunks_per_doc
        Chunks a long document is cut into on the server; its score is its best chunk's.
    overlap_tokens
        Tokens shared by neighbouring chunks, 0 to 80.
    **options
        The :class:`~rerankpd.rerankers.http.HTTPReranker` options.
    """

    def __init__(self, *, max_chunks_per_doc: int | None = None, overlap_tokens: int | None = None,
                 **options) -> None:
        _whole("max_chunks_per_doc", max_chunks_per_doc, 1)
        _whole("overlap_tokens", overlap_tokens, 0, 80)
        self.max_chunks_per_doc = max_chunks_per_doc
        self.overlap_tokens = overlap_tokens
        super().__init__(**options)

    def build_payload(self, query: str, documents: Sequence[str]) -> dict:
        body = super().build_payload(query, documents)
        body.update(self.score_options())
        return body

    def score_options(self) -> dict:
        options: dict = {}
        if self.max_chunks_per_doc is not None:
            options["max_chunks_per_doc"] = self.max_chunks_per_doc
        if self.overlap_tokens is not None:
            options["overlap_tokens"] = self.overlap_tokens
        return options
