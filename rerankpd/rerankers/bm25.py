"""BM25 with :mod:`bm25s`: lexical, offline, no model, fast on any machine.

BM25's IDF depends on the whole candidate set, so a query's candidates are scored together in one call
(``pairwise = False``): the pipeline sends all of a query's distinct texts at once and does not cache
them per pair. The tokenizer handles space-separated languages (lower-cased words) and Chinese, Japanese
and Korean (each run of CJK characters becomes its characters and character bigrams), so it needs no
dictionary.

Examples
--------
>>> r = BM25Reranker()
>>> s = r.score("如何预防感冒", ["预防感冒应勤洗手", "流感疫苗每年接种", "今天天气很好"])
>>> s[0] > s[1] > s[2]
True
"""
from __future__ import annotations

import logging
import re

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

from ..tokens import CJK as _CJK  # noqa: E402  (the one CJK table, shared with chunking)
_TOKEN = re.compile(rf"[{_CJK}]+|[^\W{_CJK}]+", re.UNICODE)
_CJK_RUN = re.compile(rf"[{_CJK}]")


def tokenize(text: str) -> list[str]:
    """Lower-cased words, plus characters and character bigrams of CJK runs.

    >>> tokenize("Hello, 感冒预防!")
    ['hello', '感', '冒', '预', '防', '感冒', '冒预', '预防']
    """
    tokens: list[str] = []
    for match in _TOKEN.finditer(text.lower()):
        run = match.group()
        if _CJK_RUN.match(run):
            tokens.extend(run)
            tokens.extend(run[i:i + 2] for i in range(len(run) - 1))
        else:
            tokens.append(run)
    return tokens


class BM25Reranker(Reranker):
    """Okapi BM25 over each query's candidate documents.

    Parameters
    ----------
    k1, b
        BM25's term-frequency saturation and length normalisation.
    method
        The bm25s variant (``"lucene"``, ``"robertson"``, ``"atire"``, ``"bm25l"``, ``"bm25+"``).
    """

    name = "bm25"
    kind = "lexical"
    model = None
    batch_size = None
    max_concurrency = 1
    pairwise = False

    def __init__(self, k1: float = 1.5, b: float = 0.75, method: str = "lucene") -> None:
        self._bm25s = _bm25s()
        self.k1, self.b, self.method = k1, b, method
        self.model = f"bm25s-{method}"

    def identity(self) -> dict:
        return {"reranker": self.name, "k1": self.k1, "b": self.b, "method": self.method}

    def score(self, query: str, documents: list[str]) -> list[float]:
        return self.score_batch(query, documents).scores.tolist()

    def score_batch(self, query: str, documents: list[str]) -> BatchResult:
        """The scores as one float64 array (a million Python floats would cost more than the frame)."""
        return BatchResult(self._scores(query, documents))

    def _scores(self, query: str, documents: list[str]) -> np.ndarray:
        if not documents:
            return np.zeros(0)
        query_tokens = tokenize(query)
        corpus, vocab = query_view(query_tokens, documents)
        if not any(any(doc) for doc in corpus):
            return np.zeros(len(documents))     # nothing in common (or no words at all): no evidence
        retriever = self._bm25s.BM25(k1=self.k1, b=self.b, method=self.method)
        retriever.index((corpus, vocab), show_progress=False)
        return np.asarray(retriever.get_scores(query_tokens), dtype=np.float64)


def query_view(query_tokens: list[str], documents: list[str]) -> tuple[list, dict[str, int]]:
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
    if len(vocab) <= 256:
        pack = bytes
    else:
        from array import array

        def pack(ids, _code="H" if len(vocab) <= 65536 else "I"):
            return array(_code, ids)
    get = vocab.get
    return [pack([get(t, 0) for t in tokenize(d)]) for d in documents], vocab


_OTHER = "\x00other"
