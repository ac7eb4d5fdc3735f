"""What a reranker is: an object with one job, scoring a query against documents, and what it declares.

A reranker declares once, as class or instance attributes, everything the pipeline plans around (its
``name``, ``model``, ``kind``, ``identity()``, ``pairwise``, ``batch_size``, ``max_concurrency`` and
``chunking``). :func:`describe` reads those once per call into a frozen :class:`RerankerSpec`; the pipeline,
``estimate``, the panel and ``rerankpd.dask`` read the spec and never ask the object again. A third-party
object with only a ``score(query, documents)`` method is described with the defaults below (and its scores
are not cached: nothing says what produced them).

The kinds (:data:`KINDS`), because the cheapest correct plan depends on them:

``"cross-encoder"``
    Per-pair scores (the rerank APIs, a local cross-encoder): batch freely, cache per pair.
``"embedding"``
    A score is a product of a query embedding and a text embedding (e5, an embeddings API).
``"lexical"``
    Statistics over a set of texts (BM25): a query's candidates are scored together, not cached per pair.
``"llm"``
    A chat model: per pair (pointwise) or per window of candidates (listwise).

Examples
--------
>>> class Length(Reranker):
...     name = "length"
...     def score(self, query, documents):
...         return [float(len(d)) for d in documents]
>>> Length().score("q", ["a", "abc"])
[1.0, 3.0]
>>> spec = describe(Length())
>>> spec.name, spec.kind, spec.identity, spec.cacheable
('length', 'cross-encoder', None, False)
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.identity import identity_text

__all__ = ["KINDS", "Availability", "BatchResult", "EmbeddingBatch", "Reranker", "RerankerSpec", "describe"]

#: What ``score`` and ``BatchResult.scores`` hold: one float per document, as a list or a float64 array.
Scores = Sequence[float] | np.ndarray

#: What a reranker can be; see the module's notes.
KINDS = ("cross-encoder", "embedding", "lexical", "llm")


@dataclass
class BatchResult:
    """The scores of one request, in the order of the documents sent, and the provider's usage counts.

    ``attempts`` is how many HTTP requests it took (1 plus the retries), for what a run reports.
    ``requests`` is how many requests answered it: 1 for a rerank call; a chat reranker asks one prompt per
    pair or per window, and says so here (0 when every window came from its cache).
    """

    scores: Scores
    usage: dict[str, int] = field(default_factory=dict)
    attempts: int = 1
    requests: int = 1


@dataclass
class EmbeddingBatch:
    """The vectors of one embedding call (one row per text sent, in order), usage counts and HTTP attempts."""

    vectors: Any
    usage: dict[str, int] = field(default_factory=dict)
    attempts: int = 1


@dataclass(frozen=True)
class Availability:
    """Whether a reranker can run here, and a few words saying why (never a key).

    ``ready`` is True when it can run now (offline, or its key is set), False when something is missing
    (``note`` says what: the variable to set, the extra to install), None when it cannot be known without
    trying (a self-hosted server: ``note`` names the URL it needs).
    """

    ready: bool | None
    note: str = ""


class Reranker(abc.ABC):
    """Base class of every reranker.

    A subclass sets ``name`` and implements :meth:`score`. The pipeline plans around the other attributes:

    ``model``
        The model name, or None.
    ``kind``
        One of :data:`KINDS`.
    ``batch_size``
        Documents per :meth:`score` call; None means all of a query's documents in one call.
    ``max_concurrency``
        Calls in flight at once (threads); 1 for rerankers that compute locally.
    ``pairwise``
        True when a document's score does not depend on the other documents in the call (a cross-encoder,
        an embedding): the pipeline then batches freely and caches each pair. False (BM25, whose IDF depends
        on the candidate set): each query's candidates go in one call and nothing is cached per pair.
    ``chunking``
        A :class:`rerankpd.core.chunking.ChunkSpec` when long documents are cut on the client, else None.
    :meth:`identity`
        Everything that decides the scores; None (the default) means the scores are not cached.
    :meth:`prepare`
        For ``kind = "lexical"``: every distinct text of the frame, once per run, before any score() call.
    """

    name: str = "reranker"
    model: str | None = None
    kind: str = "cross-encoder"
    batch_size: int | None = 64
    max_concurrency: int = 1
    pairwise: bool = True
    chunking: Any = None
    #: The service's published cap on one request's tokens (query tokens x documents + the documents' tokens,
    #: counted by :func:`rerankpd.core.tokens.request_tokens`); requests are planned to stay below it. None: none.
    max_request_tokens: int | None = None

    @abc.abstractmethod
    def score(self, query: str, documents: list[str]) -> Scores:
        """Relevance of each document to ``query``, higher is more relevant, in the order given."""

    def prepare(self, texts: Sequence[str]) -> None:  # noqa: B027 - an optional hook: doing nothing is the default
        """Called once per run, before any score() call, with every distinct text of the frame.

        ``texts`` is a sequence; it may be an Arrow-backed pandas Index: read it with
        :func:`rerankpd.pairs.take_texts`. The pipeline calls it for rerankers of kind ``"lexical"`` (corpus
        statistics such as BM25's IDF over the whole frame); the default does nothing.
        """

    def score_batch(self, query: str, documents: list[str]) -> BatchResult:
        """:meth:`score` plus the provider's usage counts (tokens); the pipeline calls this."""
        return BatchResult(list(self.score(query, documents)))

    def identity(self) -> dict | None:
        """Everything that decides the scores (never a key): the score cache is keyed on it.

        None (this default) means the scores cannot be tied to what produced them, and are not cached: a
        subclass whose scores should be cached returns its class, model and every option that changes
        scores.
        """
        return None

    @classmethod
    def pairwise_with(cls, options: dict) -> bool:
        """Whether a reranker of this class made with ``options`` scores each pair on its own, for a planner
        that sees only the class and the options (:mod:`rerankpd.dask`); the declared ``pairwise`` unless an
        option changes it (a listwise chat model)."""
        return bool(cls.pairwise)

    @classmethod
    def availability(cls) -> Availability:
        """Whether this reranker can run on this machine now (the panel lists it with the note)."""
        return Availability(True, "offline")

    def close(self) -> None:  # noqa: B027 - an optional hook: doing nothing is the default
        """Release what the reranker holds (connections); the pipeline calls it for rerankers it made."""

    def bind_cancel(self, event: threading.Event | None) -> None:
        """The pipeline hands over its run's cancel event before scoring (and None after).

        A reranker that sleeps (retry backoff, a rate budget, a ``Retry-After``) waits on this event instead
        of sleeping blindly, so Cancel and Ctrl-C take effect at once; once it is set, no new attempt starts.
        """
        self._cancel_event = event

    def bind_cache(self, cache: Any) -> Any:
        """The pipeline hands over its run's ``cache=`` argument before scoring and the previous one after;
        returns the previous one. A reranker with a cache of its own (the LLM reranker's window answers)
        follows it: with ``cache=False`` nothing is read from or written to any cache."""
        previous, self._run_cache = getattr(self, "_run_cache", True), cache
        return previous

    def __repr__(self) -> str:
        model = f", model={self.model!r}" if self.model else ""
        return f"{type(self).__name__}(name={self.name!r}{model})"


@dataclass(frozen=True)
class RerankerSpec:
    """What the pipeline needs to know about a reranker, read once per call by :func:`describe`.

    Attributes
    ----------
    name, model, kind
        As the reranker declares them (``name`` defaults to the class name).
    identity
        The identity as canonical JSON text (None: the scores are not cached).
    embeds
        How an embedding reranker embeds: ``"batch"`` (``embed_batch(texts, role)``, with usage), ``"texts"``
        (``embed_queries``/``embed_documents``), None (it does not).
    counts_own_requests
        True when it counts the requests and tokens of a call itself (``estimate_requests``: a chat model).
    max_request_tokens
        The service's cap on one request's tokens (None: none); the plan cuts requests to stay below it.
    pairwise, batch_size, max_concurrency, chunking
        As declared; ``batch_size`` is None for a non-pairwise reranker (a query's candidates in one call),
        and ``chunking`` None unless the reranker is pairwise and cuts documents on the client.
    """

    name: str
    model: str | None
    kind: str
    identity: str | None
    pairwise: bool
    batch_size: int | None
    max_concurrency: int
    chunking: Any
    embeds: str | None = None
    counts_own_requests: bool = False
    max_request_tokens: int | None = None

    @property
    def cacheable(self) -> bool:
        """True when scores may be cached per pair (pairwise, with an identity)."""
        return self.pairwise and self.identity is not None


def describe(reranker: Any) -> RerankerSpec:
    """Read what ``reranker`` declares, once: the only place that asks a reranker object what it is.

    ``reranker`` is an object with a ``score(query, documents)`` method, or a reranker class (then
    ``identity`` is None: it takes an object to know). Raises ValueError when it has no ``score`` method or
    a declared value cannot work (an unknown ``kind``, a ``batch_size`` below 1).

    >>> from rerankpd.rerankers.bm25 import BM25Reranker
    >>> spec = describe(BM25Reranker)
    >>> spec.kind, spec.pairwise, spec.batch_size
    ('lexical', False, None)
    """
    from ..core.options import one_of, whole

    is_class = isinstance(reranker, type)
    if not callable(getattr(reranker, "score", None)) and _embeds(reranker) is None:
        from .registry import available_rerankers

        raise ValueError(
            f"reranker must be a name ({', '.join(available_rerankers())}) or an object with a "
            f"score(query, documents) method (or embed_queries and embed_documents), got "
            f"{type(reranker).__name__}"
        )
    name = getattr(reranker, "name", None) or (reranker.__name__ if is_class else type(reranker).__name__)
    kind = one_of(f"{name}.kind", getattr(reranker, "kind", "cross-encoder"), KINDS)
    pairwise = bool(getattr(reranker, "pairwise", True))
    identity_of = getattr(reranker, "identity", None)
    identity = identity_of() if callable(identity_of) and not is_class else None
    batch_size = whole(f"{name}.batch_size", getattr(reranker, "batch_size", 64), minimum=1, allow_none=True)
    concurrency = getattr(reranker, "max_concurrency", 1)
    return RerankerSpec(
        name=str(name),
        model=getattr(reranker, "model", None),
        kind=kind,
        identity=None if identity is None else identity_text(identity),
        pairwise=pairwise,
        batch_size=batch_size if pairwise else None,
        max_concurrency=whole(f"{name}.max_concurrency", concurrency or 1, minimum=1),
        chunking=getattr(reranker, "chunking", None) if pairwise else None,
        max_request_tokens=whole(
            f"{name}.max_request_tokens",
            getattr(reranker, "max_request_tokens", None) or None,
            minimum=1,
            allow_none=True,
        )
        if pairwise
        else None,
        embeds=_embeds(reranker),
        counts_own_requests=callable(getattr(reranker, "estimate_requests", None)),
    )


def _embeds(reranker: Any) -> str | None:
    if not all(callable(getattr(reranker, m, None)) for m in ("embed_queries", "embed_documents")):
        return None
    return "batch" if callable(getattr(reranker, "embed_batch", None)) else "texts"
