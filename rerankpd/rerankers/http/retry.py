"""The retry policy of the HTTP rerankers: small pure functions, driven by one loop in ``http.py``.

408, 409, 429 and 5xx answers are worth another attempt; a ``Retry-After`` header (seconds or an HTTP date)
is honoured up to a cap; otherwise the wait is capped exponential backoff with full jitter.

Examples
--------
>>> should_retry(429), should_retry(503), should_retry(401)
(True, True, False)
>>> parse_retry_after("2", cap=30.0)
2.0
>>> parse_retry_after("soon", cap=30.0) is None
True
>>> 0.0 <= backoff_delay(3, base=0.5, cap=4.0) <= 4.0
True
"""
from __future__ import annotations

import email.utils
import math
import random
import time
from typing import Callable

__all__ = ["RETRY_STATUSES", "backoff_delay", "parse_retry_after", "should_retry"]

RETRY_STATUSES = frozenset({408, 409, 429})


def should_retry(status: int) -> bool:
    """Whether an HTTP status is worth another attempt: 408, 409, 429 and every 5xx."""
    return status in RETRY_STATUSES or 500 <= status <= 599


def parse_retry_after(value: str | None, cap: float, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date), at most ``cap``.

    None when the header is absent or unreadable.
    """
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when is None:
            return None
        try:
            seconds = when.timestamp() - (time.time() if now is None else now)
        except (OverflowError, ValueError, OSError):
            return None
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), cap)


def backoff_delay(attempt: int, base: float, cap: float, rng: Callable[[], float] = random.random) -> float:
    """Full-jitter exponential backoff: a random delay in [0, min(cap, base * 2**attempt)]."""
    return rng() * min(cap, base * (2 ** min(attempt, 64)))
