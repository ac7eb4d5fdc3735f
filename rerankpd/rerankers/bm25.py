"""BM25 with :mod:`bm25s`: lexical, offline, no model, fast on any machine.

Statistics. BM25 weighs a query term by its IDF and normalises by document length against the average
length; both come from a collection. By default (``statistics="corpus"``) the collection is every distinct
text of the frame, as the user gave it: the pipeline hands them over once per run (:meth:`BM25Reranker.prepare`)
before scoring, so reranking a retriever's top 100 per query weighs terms as the retriever did.
``statistics="query"`` takes them from each query's candidates alone (a term common among a query's
candidates then counts for little, even when it is rare in the collection). Called directly, without
:meth:`~BM25Reranker.prepare`, :meth:`~BM25Reranker.score` uses the documents it is given. When a query's
candidates are the whole collection, both give the same scores (and take the same path).

A query's candidates are scored together in one call (``pairwise = False``; no per-pair cache). The
tokenizer handles space-separated languages (lower-cased words, minus English stop words: Lucene's list of
33, ``bm25s.stopwords.STOPWORDS_EN``, by default) and Chinese, Japanese and Korean (each run of CJK
characters becomes its characters and character bigrams), so it needs no dictionary.

Examples
--------
>>> r = BM25Reranker()
>>> s = r.score("如何预防感冒", ["预防感冒应勤洗手", "流感疫苗每年接种", "今天天气很好"])
>>> s[0] > s[1] > s[2]
True
>>> collection = ["the wing flutter", "wing lift", "the boundary layer", "heat transfer"]
>>> r.prepare(collection)      # what the pipeline does: "wing" is in 2 of 4 texts, not in 2 of 2
>>> [round(x, 3) for x in r.score("wing flutter", ["the wing flutter", "wing lift"])]
[0.759, 0.277]
>>> [round(x, 3) for x in BM25Reranker(statistics="query").score("wing flutter", ["the wing flutter", "wing lift"])]
[0.35, 0.073]
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from ..errors import MissingDependencyError
from .base import BatchResult, Reranker

__all__ = ["BM25Reranker", "tokenize"]


def _bm25s():
    """Import bm25s; it sets its own logger to DEBUG at import, so quiet its per-call chatter after."""
    try:
        import bm25s
    except ImportError as exc:  # pragma: no cover - bm25s is a core dependency
        raise MissingDependencyError("the bm25 reranker needs bm25s: pip install bm25s") from exc
    logging.getLogger("bm25s").setLevel(logging.WARNING)
    return bm25s


from ..core.tokens import CJK as _CJK  # noqa: E402  (the one CJK table, shared with chunking)

_TOKEN = re.compile(rf"[{_CJK}]+|[^\W{_CJK}]+", re.UNICODE)
_CJK_RUN = re.compile(rf"[{_CJK}]")


def tokenize(text: str, stopwords: frozenset[str] = frozenset()) -> list[str]:
    """Lower-cased words (minus ``stopwords``), plus characters and character bigrams of CJK runs.

    >>> tokenize("Hello, the 感冒预防!", frozenset({"the"}))
    ['hello', '感', '冒', '预', '防', '感冒', '冒预', '预防']
    """
    tokens: list[str] = []
    for match in _TOKEN.finditer(text.lower()):
        run = match.group()
        if _CJK_RUN.match(run):
            tokens.extend(run)
            tokens.extend(run[i : i + 2] for i in range(len(run) - 1))
        elif run not in stopwords:
            tokens.append(run)
    return tokens


def stopword_set(stopwords: Any) -> frozenset[str]:
    """``"en"`` (Lucene's English list, from bm25s), None or False (none), or your own words.

    >>> sorted(stopword_set(["The", "a"])), "the" in stopword_set("en"), stopword_set(None)
    (['a', 'the'], True, frozenset())
    """
    if stopwords is None or stopwords is False:
        return frozenset()
    if stopwords == "en":
        _bm25s()
        from bm25s.stopwords import STOPWORDS_EN

        return frozenset(STOPWORDS_EN)
    if isinstance(stopwords, str) or not isinstance(stopwords, Iterable):
        from ..errors import ConfigurationError

        raise ConfigurationError(f"stopwords must be 'en', None or a list of words, got {stopwords!r}")
    return frozenset(str(w).lower() for w in stopwords)


class BM25Reranker(Reranker):
    """Okapi BM25 over each query's candidate documents, with the collection's statistics.

    Parameters
    ----------
    k1, b
        BM25's term-frequency saturation and length normalisation.
    method
        The bm25s variant (``"lucene"``, ``"robertson"``, ``"atire"``, ``"bm25l"``, ``"bm25+"``).
    statistics
        ``"corpus"`` (default): IDF and average length over every distinct text of the frame (given by
        :meth:`prepare`); ``"query"``: over each query's candidates only. See the module's notes.
    stopwords
        ``"en"`` (default: Lucene's 33 English stop words), None to keep every word, or a list of words.
    """

    name = "bm25"
    kind = "lexical"
    model = None
    batch_size = None
    max_concurrency = 1
    pairwise = False

    def __init__(
        self,
        k1: float = 1.5,
        b: float = 0.75,
        method: str = "lucene",
        statistics: str = "corpus",
        stopwords: Any = "en",
    ) -> None:
        from ..core.options import one_of

        self._bm25s = _bm25s()
        self.k1, self.b, self.method = k1, b, method
        self.statistics = one_of("statistics", statistics, ("corpus", "query"))
        self.stopwords = stopwords if stopwords in ("en", None) else sorted(stopword_set(stopwords))
        self._stop = stopword_set(stopwords)
        self.model = f"bm25s-{method}"
        self._corpus: Any = None  # the frame's distinct texts, from prepare()
        self._stats: _CorpusStats | None = None

    def identity(self) -> dict:
        return {
            "reranker": self.name,
            "k1": self.k1,
            "b": self.b,
            "method": self.method,
            "statistics": self.statistics,
            "stopwords": self.stopwords,
        }

    def prepare(self, texts: Any) -> None:
        """Take the collection (every distinct text of the frame) for corpus statistics; computed lazily,
        and only when a query's candidates are fewer than the collection."""
        self._corpus = texts if self.statistics == "corpus" else None
        self._stats = None

    def score(self, query: str, documents: list[str]) -> list[float]:
        return self._scores(query, documents).tolist()

    def score_batch(self, query: str, documents: list[str]) -> BatchResult:
        """The scores as one float64 array (a million Python floats would cost more than the frame)."""
        return BatchResult(self._scores(query, documents))

    def _scores(self, query: str, documents: list[str]) -> np.ndarray:
        if not documents:
            return np.zeros(0)
        query_tokens = tokenize(query, self._stop)
        corpus, vocab = query_view(query_tokens, documents, self._stop)
        if not any(any(doc) for doc in corpus):
            return np.zeros(len(documents))  # nothing in common (or no words at all): no evidence
        if self._corpus is not None and len(documents) < len(self._corpus):
            return self._corpus_scores(query_tokens, corpus, vocab)
        retriever = self._bm25s.BM25(k1=self.k1, b=self.b, method=self.method)
        retriever.index((corpus, vocab), show_progress=False)
        return np.asarray(retriever.get_scores(query_tokens), dtype=np.float64)

    def _corpus_scores(self, query_tokens: list[str], docs: list, vocab: dict[str, int]) -> np.ndarray:
        """BM25 of the candidates with the collection's document frequencies and average length (bm25s's
        own term formulas, so ``statistics="query"`` and a one-query frame give the same numbers)."""
        from bm25s import scoring

        if self._stats is None:
            self._stats = _CorpusStats.of(self._corpus, self._stop)
        stats = self._stats
        n_vocab = len(vocab)
        lengths = np.fromiter(map(len, docs), dtype=np.int64, count=len(docs))
        ids = np.concatenate(
            [np.frombuffer(d, dtype=np.uint8) if isinstance(d, bytes) else np.asarray(d) for d in docs]
        ).astype(np.int64)
        doc_of = np.repeat(np.arange(len(docs)), lengths)
        hit = ids != 0
        key, tf = np.unique(doc_of[hit] * n_vocab + ids[hit], return_counts=True)
        doc, term = key // n_vocab, key % n_vocab
        idf_of, tfc_of = scoring._select_idf_scorer(self.method), scoring._select_tfc_scorer(self.method)
        idf, absent = np.zeros(n_vocab), np.zeros(n_vocab)
        for token, i in vocab.items():
            df = stats.frequency(token)
            if i and df:
                idf[i] = idf_of(df, N=stats.n_documents)
                absent[i] = idf[i] * tfc_of(
                    tf_array=0.0,
                    l_d=stats.average_length,
                    l_avg=stats.average_length,
                    k1=self.k1,
                    b=self.b,
                    delta=_DELTA,
                )
        tfc = tfc_of(
            tf_array=tf.astype(np.float64),
            l_d=lengths[doc],
            l_avg=stats.average_length,
            k1=self.k1,
            b=self.b,
            delta=_DELTA,
        )
        weights = idf[term] * tfc - absent[term]
        counts = Counter(vocab[t] for t in query_tokens)
        return np.bincount(
            doc, weights=weights * np.fromiter((counts[t] for t in term), float, len(term)), minlength=len(docs)
        ) + sum(absent[i] * c for i, c in counts.items())


_DELTA = 0.5  # bm25s's default delta of BM25L and BM25+


class _CorpusStats:
    """Document frequency of every token (kept as sorted 64-bit token hashes and counts: 16 bytes per
    distinct token, no string kept) and the average length, over a collection of texts."""

    __slots__ = ("n_documents", "average_length", "_hashes", "_counts")
    _CHUNK = 50_000  # texts counted at once, so the transient arrays stay small on a million rows

    def __init__(self, n_documents: int, average_length: float, hashes: np.ndarray, counts: np.ndarray) -> None:
        self.n_documents, self.average_length = n_documents, average_length
        self._hashes, self._counts = hashes, counts

    def frequency(self, token: str) -> int:
        """In how many texts ``token`` occurs."""
        i = int(np.searchsorted(self._hashes, hash(token)))
        return int(self._counts[i]) if i < len(self._hashes) and self._hashes[i] == hash(token) else 0

    @classmethod
    def of(cls, texts: Any, stopwords: frozenset[str]) -> _CorpusStats:
        from array import array

        hashes, counts = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        total = n = 0
        chunk = array("q")
        for text in texts:
            tokens = tokenize(text, stopwords)
            total += len(tokens)
            n += 1
            chunk.extend(map(hash, set(tokens)))
            if n % cls._CHUNK == 0:
                hashes, counts = cls._merge(hashes, counts, chunk)
                chunk = array("q")
        hashes, counts = cls._merge(hashes, counts, chunk)
        return cls(n, total / n if n else 1.0, hashes, counts)

    @staticmethod
    def _merge(hashes: np.ndarray, counts: np.ndarray, chunk) -> tuple[np.ndarray, np.ndarray]:
        """Add a chunk's token hashes to the sorted (hashes, counts), in place where they are known."""
        new, new_counts = np.unique(np.frombuffer(chunk, dtype=np.int64), return_counts=True)
        at = np.searchsorted(hashes, new)
        known = at < len(hashes)
        known[known] = hashes[at[known]] == new[known]
        counts[at[known]] += new_counts[known]
        fresh = ~known
        return np.insert(hashes, at[fresh], new[fresh]), np.insert(counts, at[fresh], new_counts[fresh])


def query_view(
    query_tokens: list[str], documents: list[str], stopwords: frozenset[str] = frozenset()
) -> tuple[list, dict[str, int]]:
    """Each document as token ids over the query's vocabulary, every other token folded into one id (0).

    BM25 scores a document from the query terms' frequencies in it, its length, the average length and
    the query terms' document frequencies; none of that changes when the words the query does not contain
    become one placeholder, so bm25s gives exactly the scores of a full index. But a document then costs a
    few bytes (a ``bytes`` of ids while the query has fewer than 255 distinct terms) instead of a list of
    strings, which is what lets one query rank a million rows in a few times the frame's memory.

    >>> docs, vocab = query_view(["cold", "flu"], ["a cold cold day", "flu"])
    >>> [list(d) for d in docs], sorted(vocab.values())
    ([[0, 1, 1, 0], [2]], [0, 1, 2])
    """
    vocab = {_OTHER: 0}
    for token in query_tokens:
        vocab.setdefault(token, len(vocab))
    pack: Callable[[list[int]], Any]
    if len(vocab) <= 256:
        pack = bytes
    else:
        from array import array

        def pack(ids, _code="H" if len(vocab) <= 65536 else "I"):  # noqa: B008 - computed once, when the function is defined
            return array(_code, ids)

    get = vocab.get
    return [pack([get(t, 0) for t in tokenize(d, stopwords)]) for d in documents], vocab


_OTHER = "\x00other"
