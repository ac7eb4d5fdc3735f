"""Client-side chunking of long documents: approximate tokens, overlapping windows, max-aggregation.

Services that chunk on their own (DMXAPI, SiliconFlow: ``max_chunks_per_doc``, ``overlap_tokens``) get the
options passed through. For the others, which truncate or reject long inputs, rerankpd does the same on
the client when ``max_chunks_per_doc`` is set: each document is cut into windows of ``chunk_tokens``
approximate tokens overlapping by ``overlap_tokens``, at most ``max_chunks_per_doc`` of them; every chunk
is scored as an ordinary (query, text) pair, so chunks share the score cache; a document's score is its
best chunk's.

Approximate tokens are the window count of :mod:`rerankpd.core.tokens`, what a reader would count: every CJK
character (Han, kana, Hangul) is one token, and every run of other non-space characters is one token (a
Latin word with its punctuation). Real tokenizers count more, so a window of ``chunk_tokens`` approximate
tokens usually stays within a model's limit of the same number of real tokens only for CJK text; choose
``chunk_tokens`` with that margin.

Examples
--------
>>> spec = ChunkSpec(chunk_tokens=3, overlap_tokens=1, max_chunks=10)
>>> split_text("one two three four five", spec)
['one two three', 'three four five']
>>> from rerankpd.core.tokens import window_token_count
>>> window_token_count("预防感冒 wash hands")
6
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigurationError
from ..pairs import Pairs
from .options import whole
from .tokens import window_token_spans

__all__ = [
    "ChunkPlan",
    "ChunkSpec",
    "chunk_spec",
    "max_by_owner",
    "plan_chunks",
    "split_text",
    "window_bounds",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChunkSpec:
    """How to cut documents on the client.

    Parameters
    ----------
    chunk_tokens
        Window length in approximate tokens (>= 1).
    overlap_tokens
        Tokens shared by neighbouring windows (0 <= overlap_tokens < chunk_tokens).
    max_chunks
        At most this many windows per document (>= 1); text past the last window is not scored.

    Examples
    --------
    >>> ChunkSpec(chunk_tokens=4, overlap_tokens=1, max_chunks=2).step
    3
    """

    chunk_tokens: int = 512
    overlap_tokens: int = 0
    max_chunks: int = 1

    def __post_init__(self) -> None:
        # Validated and stored as plain ints (a NumPy integer is accepted), naming the reranker option.
        object.__setattr__(self, "chunk_tokens", whole("chunk_tokens", self.chunk_tokens, minimum=1))
        object.__setattr__(self, "max_chunks", whole("max_chunks_per_doc", self.max_chunks, minimum=1))
        object.__setattr__(self, "overlap_tokens", whole("overlap_tokens", self.overlap_tokens, minimum=0))
        if not 0 <= self.overlap_tokens < self.chunk_tokens:
            raise ConfigurationError(
                f"overlap_tokens must be >= 0 and < chunk_tokens ({self.chunk_tokens}), got {self.overlap_tokens}"
            )

    @property
    def step(self) -> int:
        """Tokens between the starts of neighbouring windows."""
        return self.chunk_tokens - self.overlap_tokens


def window_bounds(n_tokens: int, spec: ChunkSpec) -> list[tuple[int, int]]:
    """Token ranges ``[start, stop)`` of the windows over ``n_tokens`` tokens.

    Windows start every ``spec.step`` tokens and are ``spec.chunk_tokens`` long (the last may be shorter);
    they stop once the text is covered or ``spec.max_chunks`` windows exist.

    Examples
    --------
    >>> window_bounds(10, ChunkSpec(chunk_tokens=4, overlap_tokens=1, max_chunks=9))
    [(0, 4), (3, 7), (6, 10)]
    >>> window_bounds(10, ChunkSpec(chunk_tokens=4, overlap_tokens=1, max_chunks=2))
    [(0, 4), (3, 7)]
    """
    if n_tokens <= spec.chunk_tokens:
        return [(0, n_tokens)]
    bounds: list[tuple[int, int]] = []
    start = 0
    while len(bounds) < spec.max_chunks:
        stop = min(start + spec.chunk_tokens, n_tokens)
        bounds.append((start, stop))
        if stop >= n_tokens:
            break
        start += spec.step
    return bounds


def split_text(text: str, spec: ChunkSpec) -> list[str]:
    """Cut ``text`` into overlapping windows of approximate tokens.

    A text that fits in one window comes back unchanged as the only chunk, so its pair is the same pair
    (and cache entry) as without chunking. Otherwise each chunk is the text from its first token's start
    to its last token's end, whitespace between tokens kept as it was.

    Examples
    --------
    >>> split_text("a b c d e", ChunkSpec(chunk_tokens=2, overlap_tokens=0, max_chunks=2))
    ['a b', 'c d']
    """
    spans = window_token_spans(text)
    if len(spans) <= spec.chunk_tokens:
        return [text]
    bounds = window_bounds(len(spans), spec)
    if bounds[-1][1] < len(spans):
        logger.debug(
            "document of ~%d tokens cut to %d chunks of %d; its last %d tokens are not scored",
            len(spans),
            spec.max_chunks,
            spec.chunk_tokens,
            len(spans) - bounds[-1][1],
        )
    return [text[spans[a][0] : spans[b - 1][1]] for a, b in bounds]


def max_by_owner(
    scores: list[float], owner: list[int], chunk_no: list[int], n_owners: int
) -> tuple[list[float], list[int]]:
    """Each owner's best chunk score and which chunk it was (the first one on ties).

    An owner with a NaN chunk score (a chunk not scored) gets NaN and chunk -1: a maximum over part of a
    document would pass for the document's score.

    Examples
    --------
    >>> max_by_owner([0.1, 0.9, 0.5], [0, 0, 1], [0, 1, 0], 2)
    ([0.9, 0.5], [1, 0])
    """
    best = [float("nan")] * n_owners
    which = [-1] * n_owners
    unscored = set()
    for score, i, k in zip(scores, owner, chunk_no):
        if score != score:  # NaN
            unscored.add(i)
        elif which[i] < 0 or score > best[i]:
            best[i] = float(score)
            which[i] = k
    for i in unscored:
        best[i], which[i] = float("nan"), -1
    return best, which


DEFAULT_CHUNK_TOKENS = 512
DEFAULT_OVERLAP_TOKENS = 0


def chunk_spec(
    max_chunks_per_doc: int | None, chunk_tokens: int | None = None, overlap_tokens: int | None = None
) -> ChunkSpec | None:
    """The :class:`ChunkSpec` a reranker's options ask for, or None when ``max_chunks_per_doc`` is None.

    Raises :class:`~rerankpd.errors.ConfigurationError` naming the option that is out of range, or when
    ``chunk_tokens``/``overlap_tokens`` are given without ``max_chunks_per_doc`` (they would do nothing).

    Examples
    --------
    >>> chunk_spec(None) is None
    True
    >>> chunk_spec(2)
    ChunkSpec(chunk_tokens=512, overlap_tokens=0, max_chunks=2)
    """
    if max_chunks_per_doc is None:
        if chunk_tokens is not None or overlap_tokens is not None:
            raise ConfigurationError(
                "chunk_tokens and overlap_tokens take effect only with max_chunks_per_doc; set it too"
            )
        return None
    return ChunkSpec(
        chunk_tokens=DEFAULT_CHUNK_TOKENS if chunk_tokens is None else chunk_tokens,
        overlap_tokens=DEFAULT_OVERLAP_TOKENS if overlap_tokens is None else overlap_tokens,
        max_chunks=max_chunks_per_doc,
    )


@dataclass(frozen=True)
class ChunkPlan:
    """Documents cut into chunks, as the pairs that are scored and the way back to the documents.

    Attributes
    ----------
    doc_pairs
        The (query, document) pairs of the frame (:class:`rerankpd.pairs.Pairs`); rows map onto these.
    work
        The distinct (query, chunk) pairs: what is looked up in the cache, batched and sent.
    occ_doc, occ_chunk, occ_work
        One entry per chunk of every document: its document pair, its position in the document
        (0-based) and its pair in ``work`` (identical chunks share one).
    """

    doc_pairs: Pairs
    work: Pairs
    occ_doc: np.ndarray
    occ_chunk: np.ndarray
    occ_work: np.ndarray

    @property
    def n_chunks(self) -> int:
        """Chunks over all documents, before identical ones are merged."""
        return len(self.occ_work)

    def reduce(
        self, work_scores: np.ndarray, work_errors: dict[int, str]
    ) -> tuple[np.ndarray, dict[int, str], np.ndarray]:
        """Document scores (best chunk), errors (a document fails if any chunk did) and winning chunks.

        Returns ``(scores, errors, chunk)`` indexed by document pair; ``chunk`` is -1 where a document
        has no score.
        """
        scores, chunk = max_by_owner(
            np.asarray(work_scores, dtype=np.float64)[self.occ_work].tolist(),
            self.occ_doc.tolist(),
            self.occ_chunk.tolist(),
            self.doc_pairs.n_pairs,
        )
        errors: dict[int, str] = {}
        for doc, work in zip(self.occ_doc.tolist(), self.occ_work.tolist()):
            if work in work_errors and doc not in errors:
                errors[doc] = work_errors[work]
        for doc in errors:
            scores[doc], chunk[doc] = float("nan"), -1
        return np.asarray(scores, dtype=np.float64), errors, np.asarray(chunk, dtype=np.int64)


def plan_chunks(pairs: Pairs, spec: ChunkSpec) -> ChunkPlan:
    """Cut every document of ``pairs`` with ``spec`` and merge identical (query, chunk) pairs.

    Examples
    --------
    >>> from rerankpd.pairs import build_pairs
    >>> plan = plan_chunks(build_pairs("q", ["a b c", "a b", "z"]), ChunkSpec(2, 0, 5))
    >>> plan.work.texts, plan.occ_work.tolist(), plan.n_chunks
    (['a b', 'c', 'z'], [0, 1, 0, 2], 4)
    """
    occ_doc: list[int] = []
    occ_chunk: list[int] = []
    occ_work: list[int] = []
    texts: dict[str, int] = {}
    work_ids: dict[tuple[int, int], int] = {}
    work_group: list[int] = []
    work_text: list[int] = []
    for doc in range(pairs.n_pairs):
        group = int(pairs.pair_group[doc])
        for k, chunk in enumerate(split_text(pairs.texts[pairs.pair_text[doc]], spec)):
            t = texts.setdefault(chunk, len(texts))
            w = work_ids.get((group, t))
            if w is None:
                w = work_ids[(group, t)] = len(work_group)
                work_group.append(group)
                work_text.append(t)
            occ_doc.append(doc)
            occ_chunk.append(k)
            occ_work.append(w)
    empty = np.empty(0, dtype=np.int64)
    work = Pairs(
        queries=pairs.queries,
        texts=list(texts),
        pair_group=np.asarray(work_group, dtype=np.int64),
        pair_text=np.asarray(work_text, dtype=np.int64),
        row_pair=empty,
        row_group=empty,
    )
    as_array = lambda values: np.asarray(values, dtype=np.int64)  # noqa: E731
    return ChunkPlan(pairs, work, as_array(occ_doc), as_array(occ_chunk), as_array(occ_work))
