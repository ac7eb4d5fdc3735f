"""The rerankers, found by name through a registry that imports lazily.

``import rerankpd`` imports none of them; :func:`get_reranker` imports the one asked for, so an optional
dependency is needed only by the reranker that uses it.

Examples
--------
>>> from rerankpd.rerankers import available_rerankers
>>> "bm25" in available_rerankers()
True
"""

from __future__ import annotations

from .base import BatchResult, Reranker
from .registry import REGISTRY, available_rerankers, get_reranker, reranker_class

__all__ = ["REGISTRY", "BatchResult", "Reranker", "available_rerankers", "get_reranker", "reranker_class"]
