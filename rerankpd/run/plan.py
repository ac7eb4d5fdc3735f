"""Planning one run: the pairs of a frame, what the cache already holds, and the requests for the rest.

:func:`plan_run` is the plan half of :func:`rerankpd.rerank`, shared with :func:`rerankpd.estimate` (which
stops there): read the text and query columns, build the unique pairs, cut long documents when the
reranker chunks on the client, look the pairs up in the score cache and cut the misses into batches. The
:class:`Run` it returns then collects what scoring finds (:meth:`Run.record`) until the pipeline assembles
the result.

Examples
--------
>>> import pandas as pd
>>> from rerankpd.rerankers import get_reranker
>>> run = plan_run(pd.DataFrame({"text": ["a b", "a b", "c"]}), "a", "text", None, get_reranker("bm25"),
...                cache=False, errors="raise")
>>> run.pairs.n_pairs, run.batches, run.to_score
(2, [[0, 1]], 2)
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..cache.scores import RunCache
from ..core.chunking import ChunkPlan, plan_chunks
from ..core.tokens import text_tokens
from ..errors import WarnOnce
from ..pairs import Pairs, build_pairs, plan_batches, take_texts
from ..rerankers.base import BatchResult, RerankerSpec, describe
from .columns import text_cells
from .scheduler import Finished, Request

__all__ = ["Run", "plan_run"]

#: Distinct texts held by Arrow are turned into Python strings all at once when there are at most this
#: many to score from (about 13 MB of str); beyond it, per request, so memory stays near the frame's.
LIST_TEXTS_UP_TO = 100_000


@dataclass(slots=True)
class Run:
    """Everything one call knows, from plan to assembly.

    ``pairs`` are what is cached, batched and sent (with client-side chunking, the (query, chunk) pairs;
    ``chunks`` then leads back to the documents). ``pair_scores`` is NaN until a pair is scored;
    ``pair_errors`` holds the message of each pair whose request failed. ``embedding`` is what the embedding
    path did (:class:`rerankpd.run.embedding_path.EmbeddingStats` as a dict), None when it did not run.
    """

    df: pd.DataFrame
    column: Any
    query: str | None
    query_column: Any
    reranker: Any
    spec: RerankerSpec
    pairs: Pairs
    errors: str
    cache: RunCache | None = None
    pair_scores: np.ndarray = field(default_factory=lambda: np.empty(0))
    pair_errors: dict[int, str] = field(default_factory=dict)
    batches: list[list[int]] = field(default_factory=list)
    from_cache: int = 0
    sent: int = 0
    requests: int = 0
    attempts: int = 0
    failed_requests: int = 0
    usage: Counter = field(default_factory=Counter)
    started: float = field(default_factory=time.perf_counter)
    chunks: ChunkPlan | None = None
    embedding: dict | None = None

    @property
    def to_score(self) -> int:
        """Pairs to send."""
        return sum(len(b) for b in self.batches)

    @property
    def doc_pairs(self) -> Pairs:
        """The frame's (query, document) pairs, which rows map onto (the pairs themselves without chunking)."""
        return self.chunks.doc_pairs if self.chunks is not None else self.pairs

    def requests_to_send(self) -> Iterator[Request]:
        """One :class:`~rerankpd.run.scheduler.Request` per batch, its documents made as it is sent.

        ``key`` is the batch's pair numbers.
        """
        pairs, texts = self.pairs, self.pairs.texts
        if isinstance(texts, pd.Index) and self.batches and len(texts) <= LIST_TEXTS_UP_TO:
            texts = texts.tolist()  # few enough to hold as str at once: cheaper than a take per request
        for batch in self.batches:
            yield Request(
                pairs.queries[pairs.pair_group[batch[0]]], take_texts(texts, pairs.pair_text[batch]), key=batch
            )

    def record(self, finished: Finished) -> None:
        """A scheduler callback: keep a finished request's scores, or its error for each of its pairs."""
        batch = finished.request.key
        self.attempts += finished.attempts
        if finished.error is not None:
            message = str(finished.error) or type(finished.error).__name__
            for p in batch:
                self.pair_errors[p] = message
            self.failed_requests += 1
            return
        assert finished.result is not None  # a request that raised nothing has its scores
        self.pair_scores[batch] = finished.result.scores
        self.requests += finished.result.requests
        self.sent += len(batch)
        self.usage.update(finished.result.usage)

    def store(self, request: Request, result: BatchResult) -> None:
        """Write a request's scores to the cache as soon as it succeeds, in the thread that ran it (the
        scheduler's ``on_scored``): before the next request is sent, without the calling thread waiting."""
        if self.cache is not None:
            self.cache.store(request.key, result.scores)

    def report_cache(self, finished: Finished) -> None:
        """A scheduler callback (in the calling thread): warn once, at the user's line, when finished scores
        cannot be kept."""
        if finished.ok and self.cache is not None:
            self.cache.report()


def plan_run(
    df: pd.DataFrame, query: str | None, column: Any, query_column: Any, reranker: Any, cache: Any, errors: str
) -> Run:
    """Read the frame, describe the reranker, open the cache and plan the requests; nothing is sent.

    Expects arguments already checked by :func:`rerankpd.run.arguments.check_arguments`. The caller closes
    ``run.cache`` when it is done.
    """
    spec = describe(reranker)
    texts = text_cells(df[column], column)
    row_queries = query if query is not None else text_cells(df[query_column], query_column)
    pairs = build_pairs(row_queries, texts)
    chunks = plan_chunks(pairs, spec.chunking) if spec.chunking is not None else None
    if chunks is not None:
        pairs = chunks.work  # the (query, chunk) pairs are what is cached, batched and sent
    run = Run(
        df=df,
        column=column,
        query=query,
        query_column=query_column,
        reranker=reranker,
        spec=spec,
        pairs=pairs,
        errors=errors,
        pair_scores=np.full(pairs.n_pairs, np.nan),
        chunks=chunks,
    )
    if pairs.n_pairs and spec.cacheable:
        assert spec.identity is not None  # cacheable: pairwise with an identity
        run.cache = RunCache.open(cache, spec.identity, spec.name)
    elif pairs.n_pairs and spec.pairwise and cache is not False:
        _warn_not_cached(reranker, spec)
    if run.cache is not None:
        run.from_cache = run.cache.lookup(pairs, run.pair_scores)
    todo = np.flatnonzero(np.isnan(run.pair_scores))
    # The misses, cut into requests of at most ``batch_size`` pairs of one query (and, for a service that
    # publishes one, at most its token budget). The pipeline's ``scoring_for`` sends them as they are, or
    # (an embedding reranker) hands them to the embedding path, which embeds each distinct query and text
    # once; a listwise LLM reranker windows each request itself.
    pair_tokens = _pair_tokens(pairs, todo) if spec.max_request_tokens else None
    run.batches = plan_batches(todo, pairs.pair_group, spec.batch_size, pair_tokens, spec.max_request_tokens)
    return run


def _pair_tokens(pairs: Pairs, todo: np.ndarray) -> np.ndarray:
    """Each pair's tokens as a request counts them (its query's plus its text's), for the pairs in ``todo``."""
    query_tokens = [text_tokens(q) for q in pairs.queries]
    out = np.zeros(pairs.n_pairs, dtype=np.int64)
    texts, of_text = pairs.texts, {}
    for p in todo:
        t = int(pairs.pair_text[p])
        if t not in of_text:
            of_text[t] = text_tokens(str(texts[t]))
        out[p] = query_tokens[int(pairs.pair_group[p])] + of_text[t]
    return out


#: Says once per reranker class per process that its scores are not cached.
NOT_CACHED_WARNING = WarnOnce()


def _warn_not_cached(reranker: Any, spec: RerankerSpec) -> None:
    """Say once per reranker class per process that its scores are not cached, and how to fix it."""
    NOT_CACHED_WARNING(
        f"{spec.name}: scores are not cached because the reranker names no model (a server can "
        "change models behind one URL) or declares no identity(); pass model=... (or define "
        "identity(), returning everything that decides the scores) to cache them",
        key=type(reranker),
    )
