"""Reading a rerank answer: scores matched by index, usage counters, JSON that may be hostile.

Every function here either returns clean values or raises :class:`~rerankpd.errors.BadResponseError`;
nothing a server sends can make them raise anything else (a 400-digit number, ``Infinity``, JSON nested
100,000 deep).

Examples
--------
>>> scores_from_results([{"index": 1, "relevance_score": 0.2}, {"index": 0, "relevance_score": 0.9}], 2)
[0.9, 0.2]
>>> decode_json(b"[" * 100000 + b"]" * 100000)
(None, False)
"""

from __future__ import annotations

import json
import math
from typing import Any

from ...errors import BadResponseError

__all__ = ["decode_json", "scores_from_results", "usage_counts"]


def usage_counts(usage: Any) -> dict[str, int]:
    """The integer counters of a provider's usage object; anything else (nested, NaN, inf) is left out.

    Usage is informational: a malformed usage object gives ``{}``, never an error.

    >>> usage_counts({"total_tokens": 12, "bad": float("inf"), "nested": {"x": 1}, "nan": float("nan")})
    {'total_tokens': 12}
    """
    if not isinstance(usage, dict):
        return {}
    counts: dict[str, int] = {}
    for name, value in usage.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            continue
        counts[str(name)] = int(value)
    return counts


def _score(value: Any) -> float | None:
    """A finite float from a JSON number, else None (a 400-digit integer too)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number_ = float(value)
    except OverflowError:
        return None
    return number_ if math.isfinite(number_) else None


def scores_from_results(
    items: Any, n_documents: int, *, index_field: str = "index", score_field: str = "relevance_score"
) -> list[float]:
    """Scores in document order from a list of ``{index, score}`` results, matched by index, never position.

    Raises :class:`BadResponseError` unless the results cover exactly documents ``0..n_documents-1``, once
    each, with finite numeric scores.
    """
    if not isinstance(items, list):
        raise BadResponseError(f"expected a list of results, got {type(items).__name__}")
    scores: list[float | None] = [None] * n_documents
    for item in items:
        if not isinstance(item, dict):
            raise BadResponseError(f"a result is {type(item).__name__}, not an object")
        index, score = item.get(index_field), _score(item.get(score_field))
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < n_documents:
            raise BadResponseError(f"result index {str(index)[:40]!r} is not one of the {n_documents} documents sent")
        if scores[index] is not None:
            raise BadResponseError(f"document {index} was scored twice")
        if score is None:
            raise BadResponseError(
                f"document {index} has no finite numeric {score_field!r}: {str(item.get(score_field))[:40]!r}"
            )
        scores[index] = score
    missing = [i for i, s in enumerate(scores) if s is None]
    if missing:
        raise BadResponseError(
            f"{len(missing)} of the {n_documents} documents sent came back without a score (first: {missing[0]})"
        )
    return scores  # type: ignore[return-value]


def decode_json(raw: bytes) -> tuple[Any, bool]:
    """(data, True) for a JSON body; (None, False) for anything else (not JSON, too deeply nested, ...)."""
    try:
        return json.loads(raw.decode("utf-8-sig")), True
    except (ValueError, RecursionError, MemoryError):
        return None, False
