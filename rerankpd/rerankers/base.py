"""What a reranker is: an object with one job, scoring a query against documents.

Examples
--------
>>> class Length(Reranker):
...     name = "length"
...     def score(self, query, documents):
...         return [float(len(d)) for d in documents]
>>> Length().score("q", ["a", "abc"])
[1.0, 3.0]
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field

__all__ = ["BatchResult", "Reranker"]


@dataclass
class BatchResult:
    """The scores of one request, in the order of the documents sent, and the provider's usage counts."""

    scores: list[float]
    usage: dict[str, int] = field(default_factory=dict)


class Reranker(abc.ABC):
    """Base class of every reranker.

    A subclass sets ``name`` and implements :meth:`score`. The pipeline plans around the other attributes:

    ``model``
        The model name, or None.
    ``batch_size``
        Documents per :meth:`score` call; None means all of a query's documents in one call.
    ``max_concurrency``
        Calls in flight at once (threads); 1 for rerankers that compute locally.
    ``pairwise``
        True when a document's score does not depend on the other documents in the call (a cross-encoder,
        an embedding): the pipeline then batches freely and caches each pair. False (BM25, whose IDF depends
        on the candidate set): each query's candidates go in one call and nothing is cached.
    """

    name: str = "reranker"
    model: str | None = None
    batch_size: int | None = 64
    max_concurrency: int = 1
    pairwise: bool = True

    @abc.abstractmethod
    def score(self, query: str, documents: list[str]) -> list[float]:
        """Relevance of each document to ``query``, higher is more relevant, in the order given."""

    def score_batch(self, query: str, documents: list[str]) -> BatchResult:
        """:meth:`score` plus the provider's usage counts (tokens); the pipeline calls this."""
        return BatchResult(list(self.score(query, documents)))

    def identity(self) -> dict | None:
        """Everything that decides the scores (never a key): the score cache is keyed on it.

        None means the scores cannot be tied to what produced them, and are not cached.
        """
        return {"reranker": self.name, "class": f"{type(self).__module__}.{type(self).__qualname__}",
                "model": self.model}

    def __repr__(self) -> str:
        model = f", model={self.model!r}" if self.model else ""
        return f"{type(self).__name__}(name={self.name!r}{model})"
