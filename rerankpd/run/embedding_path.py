"""The embedding path: embed each distinct query and each distinct text once, then score every pair at once.

A reranker of kind ``"embedding"`` (e5, an embeddings API) scores a pair as the dot product of a query
embedding and a text embedding. Calling its ``score(query, documents)`` per query would embed every text
again under every query it appears with; here each distinct text of the run is embedded once (and each
distinct query once), through the embedding cache (:mod:`rerankpd.cache.embeddings`), and the scores of all
pairs come from one vectorised row-wise product.

An embedding reranker offers:

``embed_queries(texts) -> array``, ``embed_documents(texts) -> array``
    float32 arrays of shape ``(len(texts), dim)``, L2-normalised when the model's score is a cosine.
``embed_batch(texts, role) -> EmbeddingBatch``
    Optional: the same with the provider's usage counts (``role`` is ``"query"`` or ``"document"``).

:func:`score_pairs` is pure apart from the reranker and the cache it is given, so it is tested without a
network; :func:`execute_run` is the pipeline's hook around it.

Examples
--------
>>> import numpy as np
>>> from rerankpd.pairs import build_pairs
>>> class Axes:
...     kind, batch_size = "embedding", 8
...     def embed_queries(self, texts):
...         return np.array([[1.0, 0.0] if "x" in t else [0.0, 1.0] for t in texts], dtype=np.float32)
...     embed_documents = embed_queries
>>> pairs = build_pairs(["x", "y", "x"], ["ax", "ax", "b"])
>>> out = score_pairs(Axes(), pairs, np.arange(pairs.n_pairs))
>>> out.scores.tolist(), out.stats.texts_embedded, out.stats.queries_embedded
([1.0, 0.0, 0.0], 2, 2)
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..cache.embeddings import EmbeddingCache
from ..errors import BadResponseError, RunCancelled
from ..pairs import Pairs, take_texts
from ..rerankers.base import EmbeddingBatch, RerankerSpec, describe
from .scheduler import Finished, run_bounded

__all__ = [
    "EmbeddingBatch",
    "EmbeddingOutcome",
    "EmbeddingStats",
    "applies",
    "embed_groups",
    "embed_texts",
    "execute_run",
    "rowwise_products",
    "score_pairs",
]

logger = logging.getLogger(__name__)

#: Pairs whose row-wise products are taken at once (bounds the temporary (pairs x dim) arrays).
_PRODUCT_CHUNK = 65_536
ProgressCallback = Callable[[int, int], None]


@dataclass
class EmbeddingStats:
    """What the embedding path did in one run (``attrs["rerank"]["embedding"]``)."""

    texts_embedded: int = 0
    queries_embedded: int = 0
    texts_from_cache: int = 0
    queries_from_cache: int = 0
    requests: int = 0
    usage: Counter = field(default_factory=Counter)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["usage"] = dict(self.usage)
        return out


@dataclass
class EmbeddingOutcome:
    """Scores per pair (NaN where not scored), error messages per pair, the stats, the error that stopped it."""

    scores: np.ndarray
    errors: dict[int, str]
    stats: EmbeddingStats
    failure: BaseException | None = None


def applies(spec: RerankerSpec) -> bool:
    """True when the reranker is of kind ``"embedding"`` and offers ``embed_queries`` and ``embed_documents``."""
    return spec.kind == "embedding" and spec.embeds is not None


def _call(reranker: Any, spec: RerankerSpec, texts: list[str], role: str) -> EmbeddingBatch:
    if spec.embeds == "batch":
        result = reranker.embed_batch(texts, role)
    else:
        method = reranker.embed_queries if role == "query" else reranker.embed_documents
        result = EmbeddingBatch(method(texts))
    name = spec.name
    vectors = np.asarray(result.vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(texts):
        raise BadResponseError(
            f"{name} returned embeddings of shape {vectors.shape} for {len(texts)} {role} "
            "texts; expected one row per text",
            provider=name,
        )
    if not np.isfinite(vectors).all():
        raise BadResponseError(f"{name} returned an embedding with a non-finite value for a {role} text", provider=name)
    return EmbeddingBatch(vectors, dict(result.usage), result.attempts)


def embed_texts(
    reranker: Any, texts: Sequence[str], role: str, **options
) -> tuple[list[np.ndarray | None], dict[int, str], BaseException | None]:
    """Embed ``texts`` (distinct), each once: from the cache, else in batches of ``batch_size``, up to
    ``max_concurrency`` batches in flight; each finished batch is written to the cache at once.

    Returns the vector of each text (None where it failed), error messages by position, and the error that
    stopped the work (``errors="raise"``; with ``"coerce"`` failures are only recorded). ``options`` are
    those of :func:`embed_groups`.
    """
    vectors, failed, error = embed_groups(reranker, [(role, texts)], **options)
    return vectors[0], failed[0], error


def embed_groups(
    reranker: Any,
    groups: Sequence[tuple[str, Sequence[str]]],
    *,
    batch_size: int | None = None,
    max_concurrency: int = 1,
    cache: EmbeddingCache | None = None,
    stats: EmbeddingStats | None = None,
    errors: str = "raise",
    cancel: threading.Event | None = None,
    on_batch: Callable[[int], None] | None = None,
):
    """:func:`embed_texts` for several (role, texts) groups at once, their batches sharing one pool (so the
    queries' batch is in flight beside the documents' first ones). Returns lists with one entry per group."""
    stats = stats if stats is not None else EmbeddingStats()
    spec = describe(reranker)
    vectors: list[list[np.ndarray | None]] = [[None] * len(texts) for _, texts in groups]
    failed: list[dict[int, str]] = [{} for _ in groups]
    plan: list[tuple[int, list[int]]] = []
    for g, (role, texts) in enumerate(groups):
        if cache is not None:
            for i, vector in cache.lookup(role, texts).items():
                vectors[g][i] = vector
        todo = [i for i, v in enumerate(vectors[g]) if v is None]
        if role == "query":
            stats.queries_from_cache += len(texts) - len(todo)
        else:
            stats.texts_from_cache += len(texts) - len(todo)
        size = batch_size or max(len(todo), 1)
        plan.extend((g, todo[i : i + size]) for i in range(0, len(todo), size))
    cancel = cancel if cancel is not None else threading.Event()
    state: dict[str, BaseException | None] = {"error": None}

    def call(job: tuple[int, list[int]]) -> EmbeddingBatch:
        g, batch = job
        role, texts = groups[g]
        return _call(reranker, spec, [texts[i] for i in batch], role)

    def report(finished: Finished) -> None:
        g, batch = finished.request
        role, texts = groups[g]
        if finished.error is not None:
            for i in batch:
                failed[g][i] = str(finished.error) or type(finished.error).__name__
            if state["error"] is None and errors == "raise":
                state["error"] = finished.error
        else:
            result = finished.result
            assert result is not None  # a call that raised nothing has its vectors
            for i, vector in zip(batch, result.vectors):
                vectors[g][i] = vector
            if cache is not None:
                cache.store(role, [texts[i] for i in batch], result.vectors)
            stats.requests += result.attempts
            stats.usage.update(result.usage)
            if role == "query":
                stats.queries_embedded += len(batch)
            else:
                stats.texts_embedded += len(batch)
        if on_batch is not None:
            on_batch(len(batch))

    def stopping() -> bool:  # let what is in flight finish (and reach the cache); send nothing new
        return state["error"] is not None or cancel.is_set()

    run_bounded(call, iter(plan), report, stopping, max_concurrency, cancel)
    first_error = state["error"]
    if (
        first_error is None
        and cancel is not None
        and cancel.is_set()
        and any(v is None for group in vectors for v in group)
    ):
        first_error = RunCancelled("cancelled while embedding; finished embeddings are cached")
    return vectors, failed, first_error


def _stack(vectors: list[np.ndarray | None], dim: int | None, name: str) -> tuple[np.ndarray, np.ndarray]:
    """The vectors as one (n, dim) float32 matrix (zero rows where missing) and a mask of those present."""
    present = np.array([v is not None for v in vectors], dtype=bool)
    matrix = np.zeros((len(vectors), dim or 0), dtype=np.float32)
    for i, vector in enumerate(vectors):
        if vector is not None:
            if vector.shape[0] != dim:
                raise BadResponseError(
                    f"{name}: embeddings of different sizes ({vector.shape[0]} and {dim}) in "
                    "one run; the model's identity should say what changed",
                    provider=name,
                )
            matrix[i] = vector
    return matrix, present


def rowwise_products(queries: np.ndarray, texts: np.ndarray, query_of: np.ndarray, text_of: np.ndarray) -> np.ndarray:
    """``queries[query_of[i]] . texts[text_of[i]]`` for every ``i``, in float32, returned as float64.

    >>> q = np.array([[1, 0], [0, 1]], dtype=np.float32)
    >>> rowwise_products(q, q, np.array([0, 0, 1]), np.array([0, 1, 1])).tolist()
    [1.0, 0.0, 1.0]
    """
    out = np.empty(len(query_of), dtype=np.float64)
    for start in range(0, len(query_of), _PRODUCT_CHUNK):
        stop = start + _PRODUCT_CHUNK
        out[start:stop] = np.einsum("ij,ij->i", queries[query_of[start:stop]], texts[text_of[start:stop]])
    return out


def score_pairs(
    reranker: Any,
    pairs: Pairs,
    todo: np.ndarray,
    *,
    batch_size: int | None = None,
    max_concurrency: int = 1,
    cache: EmbeddingCache | None = None,
    errors: str = "raise",
    cancel: threading.Event | None = None,
    on_progress: ProgressCallback | None = None,
) -> EmbeddingOutcome:
    """Score the pairs ``todo`` of ``pairs``: each distinct query and text embedded once, one product.

    Parameters
    ----------
    reranker
        An embedding reranker (see the module's notes).
    pairs, todo
        The run's pairs and the pair numbers to score.
    batch_size, max_concurrency
        Texts per embedding call (None: all at once) and calls in flight (default: the reranker's).
    cache
        An open :class:`~rerankpd.cache.embeddings.EmbeddingCache`, or None.
    errors
        ``"raise"``: stop at the first failed call (``outcome.failure``); ``"coerce"``: record and go on.
    on_progress
        Called with (texts done, texts to do) after each call, queries included.
    """
    todo = np.asarray(todo, dtype=np.int64)
    spec = describe(reranker)
    name = spec.name
    if batch_size is None:
        batch_size = spec.batch_size
    stats = EmbeddingStats()
    scores = np.full(pairs.n_pairs, np.nan)
    if not len(todo):
        return EmbeddingOutcome(scores, {}, stats)
    query_ids, query_of = np.unique(pairs.pair_group[todo], return_inverse=True)
    text_ids, text_of = np.unique(pairs.pair_text[todo], return_inverse=True)
    total, done = len(query_ids) + len(text_ids), 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if on_progress is not None:
            on_progress(done, total)

    options: dict[str, Any] = dict(
        batch_size=batch_size,
        max_concurrency=max_concurrency,
        cache=cache,
        stats=stats,
        errors=errors,
        cancel=cancel,
        on_batch=advance,
    )
    if on_progress is not None:
        on_progress(0, total)
    (query_vectors, text_vectors), (query_failed, text_failed), failure = embed_groups(
        reranker,
        [("query", [pairs.queries[i] for i in query_ids]), ("document", take_texts(pairs.texts, text_ids))],
        **options,
    )
    known = next((v for v in (*query_vectors, *text_vectors) if v is not None), None)
    dim = None if known is None else known.shape[0]
    q_matrix, q_ok = _stack(query_vectors, dim, name)
    t_matrix, t_ok = _stack(text_vectors, dim, name)
    ok = q_ok[query_of] & t_ok[text_of]
    scores[todo[ok]] = rowwise_products(q_matrix, t_matrix, query_of[ok], text_of[ok])
    pair_errors: dict[int, str] = {}
    for position in np.flatnonzero(~ok).tolist():
        message = query_failed.get(int(query_of[position])) or text_failed.get(int(text_of[position]))
        if message is not None:
            pair_errors[int(todo[position])] = message
    return EmbeddingOutcome(scores, pair_errors, stats, failure)


def execute_run(
    run: Any, progress: Any, cancel: threading.Event | None, on_progress: ProgressCallback | None
) -> BaseException | None:
    """The pipeline's hook: score the planned pairs of ``run`` through the embedding path.

    Reads ``run.batches`` (the pairs the score cache did not have) and ``run.cache`` (the embedding cache is
    opened in the same directory only when the score cache is open), writes ``run.pair_scores``,
    ``run.pair_errors``, ``run.sent``, ``run.requests``, ``run.usage`` and ``run.embedding`` (the stats as a
    dict), stores the scores in the score cache, and returns the error that stopped it (like ``_execute``).
    """
    todo = np.array(sorted(p for batch in run.batches for p in batch), dtype=np.int64)
    spec = run.spec
    # beside the score cache: used when it is (a directory the score cache could not open has had its warning)
    store = None
    if len(todo) and run.cache is not None:
        store = EmbeddingCache.open(run.cache, spec.identity)  # shares the run's open store
    bar = None
    n_pairs = len(todo)
    if progress is not False and n_pairs:
        from .progress import progress_bar

        bar = progress_bar(spec.name, n_pairs, progress)

    def report(done: int, total: int) -> None:
        # the run's progress is in pairs, as for every reranker: the share of the embedding work done
        pairs_done = n_pairs if done >= total else n_pairs * done // max(total, 1)
        if bar is not None:
            bar.update(pairs_done - bar.n)
        if on_progress is not None:
            on_progress(pairs_done, n_pairs)

    try:
        outcome = score_pairs(
            run.reranker,
            run.pairs,
            todo,
            batch_size=spec.batch_size,
            max_concurrency=spec.max_concurrency,
            cache=store,
            errors=run.errors,
            cancel=cancel,
            on_progress=report,
        )
    finally:
        if store is not None:
            store.close()
        if bar is not None:
            bar.close()
    scored = np.flatnonzero(~np.isnan(outcome.scores))
    run.pair_scores[scored] = outcome.scores[scored]
    run.pair_errors.update(outcome.errors)
    run.sent += len(scored)
    run.requests += outcome.stats.requests
    run.attempts += outcome.stats.requests
    run.usage.update(outcome.stats.usage)
    if run.cache is not None and len(scored):
        run.cache.store(scored.tolist(), outcome.scores[scored].tolist())
    run.embedding = outcome.stats.to_dict()
    return outcome.failure
