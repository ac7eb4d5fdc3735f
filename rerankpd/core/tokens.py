"""The two token counts rerankpd uses, and its one table of CJK characters.

No tokenizer of a real model is loaded: these are approximations, each for one job.

Billed tokens (:func:`text_tokens`, :func:`request_tokens`)
    What a request costs at a rerank service: about 4 ASCII characters per token, every other character
    (CJK, emoji, accented letters) one token, which errs on the high side. Used by :func:`rerankpd.estimate`
    and by the rate limiter's ``tokens_per_minute`` budget.
Window tokens (:func:`window_token_spans`, :func:`window_token_count`)
    What a reader would count: every CJK character is one token, every run of other non-space characters
    one token (a word with its punctuation). Client-side chunking (:mod:`rerankpd.core.chunking`) cuts documents
    into windows of these, so a window never splits a word.

:data:`CJK` is the one table of CJK characters (Han, kana, Hangul, Bopomofo), as a regular-expression
character class body; the window count and the BM25 tokenizer both use it.

Examples
--------
>>> text_tokens("wash your hands"), text_tokens("预防感冒")
(4, 4)
>>> window_token_count("预防感冒 wash hands")
6
>>> request_tokens("cold", ["wash hands", "预防感冒"])
9
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

__all__ = [
    "CJK",
    "REQUEST_TOKEN_HEADROOM",
    "budget_spans",
    "request_tokens",
    "text_tokens",
    "window_token_count",
    "window_token_spans",
]

#: CJK characters as the body of a regular-expression character class: ``re.compile(f"[{CJK}]")``.
CJK = (
    "\u1100-\u11ff"  # Hangul Jamo
    "\u3040-\u30ff"  # Hiragana, Katakana
    "\u3100-\u312f"  # Bopomofo
    "\u3130-\u318f"  # Hangul compatibility Jamo
    "\u3400-\u4dbf"  # CJK extension A
    "\u4e00-\u9fff"  # CJK unified ideographs
    "\uac00-\ud7af"  # Hangul syllables
    "\uf900-\ufaff"  # CJK compatibility ideographs
    "\U00020000-\U0003134f"  # CJK extensions B-G
)
_WINDOW_TOKEN = re.compile(f"[{CJK}]|[^\\s{CJK}]+")


def text_tokens(text: str) -> int:
    """Approximate billed tokens of one text: ~4 ASCII characters per token, any other character one.

    At least 1, as services bill an empty document too.

    >>> text_tokens("wash your hands"), text_tokens("预防感冒"), text_tokens("")
    (4, 4, 1)
    """
    n_ascii = len(text.encode("ascii", "ignore"))
    return max(1, -(-n_ascii // 4) + (len(text) - n_ascii))


def request_tokens(query: str, documents: Iterable[str]) -> int:
    """Approximate billed tokens of one rerank request: each document counts with its own copy of the query.

    Rerank services bill every (query, document) pair, so the query counts once per document.

    >>> request_tokens("cold", ["wash hands", "预防感冒"])
    9
    """
    q = text_tokens(query)
    return sum(q + text_tokens(doc) for doc in documents)


def window_token_spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` character offsets of each window token of ``text``, in order.

    >>> window_token_spans("hi 你好")
    [(0, 2), (3, 4), (4, 5)]
    """
    return [m.span() for m in _WINDOW_TOKEN.finditer(text)]


def window_token_count(text: str) -> int:
    """How many window tokens ``text`` has (CJK characters and other words).

    >>> window_token_count("Wash hands, 勤洗手")
    5
    """
    return sum(1 for _ in _WINDOW_TOKEN.finditer(text))


#: The share of a service's published per-request token budget that a planned request fills. The count is an
#: approximation (a real tokenizer may count more than :func:`text_tokens` for some texts), so requests keep
#: this much below the published figure.
REQUEST_TOKEN_HEADROOM = 0.8


def budget_spans(costs: Sequence[int], max_items: int | None, max_tokens: int | None) -> list[tuple[int, int]]:
    """Cut consecutive items into ``(start, end)`` spans of at most ``max_items`` items whose summed cost stays
    within ``max_tokens`` times :data:`REQUEST_TOKEN_HEADROOM` (None: no limit).

    ``costs`` are each item's tokens as a request counts them (a document's with its copy of the query, as in
    :func:`request_tokens`). An item over the budget by itself goes alone: the service truncates or refuses it.

    >>> budget_spans([3, 3, 3, 9, 1], max_items=2, max_tokens=10)
    [(0, 2), (2, 3), (3, 4), (4, 5)]
    >>> budget_spans([1, 1, 1], max_items=None, max_tokens=None)
    [(0, 3)]
    """
    n = len(costs)
    step = max_items or max(n, 1)
    if not max_tokens:
        return [(start, min(start + step, n)) for start in range(0, n, step)]
    budget = max_tokens * REQUEST_TOKEN_HEADROOM
    spans: list[tuple[int, int]] = []
    start, total = 0, 0
    for i, cost in enumerate(costs):
        if i > start and (i - start >= step or total + cost > budget):
            spans.append((start, i))
            start, total = i, 0
        total += cost
    if n:
        spans.append((start, n))
    return spans
