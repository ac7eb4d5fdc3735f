"""The retry policy of the HTTP rerankers: small pure functions, driven by one loop in ``http.py``.

408, 409, 429 and 5xx answers, dropped connections, timeouts and malformed answers are worth another
attempt. The wait before it fits the fault:

- a ``Retry-After`` header (seconds, fractions included, or an HTTP date) is honoured as given, up to a cap;
- a dropped connection, 502, 503 or 504 (a proxy or a restarting server: usually gone at once) is retried
  quickly, after a short jittered wait;
- anything else (500, a timeout, a 429 without a usable ``Retry-After``) waits the normal backoff;
- the wait doubles only with repeated failures of the same request, and no request spends more than a
  bound in total on retrying.

Examples
--------
>>> should_retry(429), should_retry(503), should_retry(401)
(True, True, False)
>>> parse_retry_after("2", cap=30.0), parse_retry_after("0.1", cap=30.0)
(2.0, 0.1)
>>> parse_retry_after("soon", cap=30.0) is None
True
>>> 0.0 <= backoff_delay(3, base=0.5, cap=4.0) <= 4.0
True
>>> retry_delay(0, retry_after=0.1, quick=False, base=0.5, cap=20.0)   # the server's word, as given
0.1
>>> retry_delay(0, retry_after=None, quick=True, base=0.5, cap=20.0, rng=lambda: 1.0)
0.1
>>> retry_delay(2, retry_after=None, quick=False, base=0.5, cap=20.0, rng=lambda: 1.0)
2.0
>>> may_retry(attempt=3, max_retries=5, elapsed=50.0, wait=20.0, max_retry_time=60.0)
False
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Callable

__all__ = [
    "QUICK_FACTOR",
    "QUICK_STATUSES",
    "RETRY_STATUSES",
    "backoff_delay",
    "is_quick",
    "may_retry",
    "parse_retry_after",
    "retry_delay",
    "should_retry",
]

RETRY_STATUSES = frozenset({408, 409, 429})

#: Answers from a proxy or a server that is (re)starting: retried quickly, like a dropped connection.
QUICK_STATUSES = frozenset({502, 503, 504})

#: A quick retry's first wait is this share of ``backoff_base`` (0.1 s of the default 0.5 s).
QUICK_FACTOR = 0.2


def should_retry(status: int) -> bool:
    """Whether an HTTP status is worth another attempt: 408, 409, 429 and every 5xx."""
    return status in RETRY_STATUSES or 500 <= status <= 599


def is_quick(status: int | None) -> bool:
    """Whether a failure is retried quickly: a dropped connection (``None``: no answer) or a 502/503/504.

    >>> is_quick(None), is_quick(503), is_quick(500), is_quick(429)
    (True, True, False, False)
    """
    return status is None or status in QUICK_STATUSES


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


def retry_delay(
    attempt: int,
    *,
    retry_after: float | None,
    quick: bool,
    base: float,
    cap: float,
    rng: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before retrying a request whose attempt number ``attempt`` (0 = the first) failed.

    A positive ``retry_after`` (already capped by :func:`parse_retry_after`) is the server's word and is
    returned as it is. Otherwise the wait is ``min(cap, b * 2**attempt)`` with "equal jitter" (a random
    share between a half and all of it), where ``b`` is ``base`` for most faults and ``base * QUICK_FACTOR``
    when ``quick`` (see :func:`is_quick`). ``Retry-After: 0`` still backs off, so a busy service is not
    hammered.
    """
    if retry_after is not None and retry_after > 0:
        return retry_after
    step = base * QUICK_FACTOR if quick else base
    return min(cap, step * (2 ** min(attempt, 64))) * (0.5 + 0.5 * rng())


def may_retry(*, attempt: int, max_retries: int, elapsed: float, wait: float, max_retry_time: float | None) -> bool:
    """Whether a request whose attempt ``attempt`` (0 = the first) failed gets another one.

    Not when its retries are used up, nor when waiting ``wait`` more would take it past ``max_retry_time``
    seconds since its first attempt began (None: no bound).

    >>> may_retry(attempt=0, max_retries=5, elapsed=0.2, wait=0.1, max_retry_time=60.0)
    True
    >>> may_retry(attempt=5, max_retries=5, elapsed=0.2, wait=0.1, max_retry_time=None)
    False
    """
    if attempt >= max_retries:
        return False
    return max_retry_time is None or elapsed + wait <= max_retry_time
