"""Private: the listwise mode of :class:`rerankpd.rerankers.llm.reranker.LLMReranker` (RankGPT's sliding windows).

:class:`ListwiseWindows` ranks a query's candidates window by window, from the bottom of the list up
(:func:`rerankpd.rerankers.llm.prompts.window_starts`): each window's answer is read as a permutation and
repaired where malformed (:func:`rerankpd.rerankers.llm.prompts.parse_permutation`), a window that fails
after the retries keeps its order, and each well-formed answer is kept in the window cache
(:class:`rerankpd.cache.windows.WindowCache`).
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from ...cache import STORE_ERRORS
from ...cache.windows import WindowCache
from ...core.identity import identity_digest
from ...errors import (
    APIConnectionError,
    BadResponseError,
    RateLimitError,
    RerankError,
    RunCancelled,
    ServerError,
    warn_user,
)
from .prompts import parse_permutation, window_starts

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .reranker import _ChatAnswer, _Tally

__all__ = ["ListwiseWindows"]

logger = logging.getLogger("rerankpd.rerankers.llm.reranker")

#: Errors that mean "this window could not be ranked now" (after the retries): the window keeps its order.
_WINDOW_FAILURES = (RateLimitError, ServerError, BadResponseError, APIConnectionError)
#: What the window cache may raise; it is best effort, like the score cache in a run.
_CACHE_FAILURES = (*STORE_ERRORS, RerankError, ValueError)


class ListwiseWindows:
    """Ranking by sliding windows, and the window cache (mixed into ``LLMReranker``, which sets these)."""

    name: str
    window: int
    step: int
    _lock: threading.Lock
    _window_cache_arg: Any
    _window_stores: dict[Any, WindowCache | None]

    if TYPE_CHECKING:  # defined by LLMReranker and HTTPReranker

        def identity(self) -> dict: ...

        def _chat(self, body: dict, tally: _Tally) -> _ChatAnswer: ...

        def _ranking_body(self, query: str, passages: Sequence[str]) -> dict: ...

        def _cut_short(self, answer: _ChatAnswer, body: dict, wanted: str) -> BadResponseError: ...

        def _quote(self, answer: str, limit: int) -> str: ...

        def _shorten(self, text: str) -> str: ...

    # ----------------------------------------------------------------- listwise
    def _rank(self, query: str, documents: list[str], tally: _Tally) -> list[float]:
        n = len(documents)
        order = list(range(n))
        starts = window_starts(n, self.window, self.step) if n > 1 else []
        last_failure: Exception | None = None
        for start in starts:
            event = getattr(self, "_cancel_event", None)
            if event is not None and event.is_set():
                raise RunCancelled(f"{self.name}: cancelled between listwise windows")
            ids = order[start : start + self.window]
            tally.usage["windows"] += 1
            try:
                permutation = self._rank_window(query, [documents[i] for i in ids], tally)
            except _WINDOW_FAILURES as exc:
                tally.usage["windows_failed"] += 1
                last_failure = exc
                logger.warning("%s: window at %d-%d kept its order: %s", self.name, start + 1, start + len(ids), exc)
                continue
            order[start : start + len(ids)] = [ids[j] for j in permutation]
        failed = tally.usage["windows_failed"]
        if failed and failed == len(starts):
            raise last_failure  # type: ignore[misc]  # nothing was ranked: the query fails, not a silent no-op
        if failed:
            warn_user(
                f"{self.name}: {failed} of {len(starts)} listwise windows failed after retries and kept "
                f"their order (last error: {last_failure}); out.attrs['rerank']['usage']['windows_failed']"
            )
        scores = [0.0] * n
        for position, index in enumerate(order):
            scores[index] = float(n - position)
        return scores

    def _rank_window(self, query: str, passages: list[str], tally: _Tally) -> list[int]:
        windows = self._windows()
        cached = windows.get(query, passages) if windows is not None else None
        if cached is not None:
            tally.usage["windows_cached"] += 1
            return cached
        body = self._ranking_body(query, passages)
        answer = self._chat(body, tally)
        permutation, problems = parse_permutation(answer.content, len(passages))
        if problems and answer.finish_reason == "length":
            raise self._cut_short(answer, body, "a whole ranking")
        if problems:
            tally.usage["windows_repaired"] += 1
            logger.info(
                "%s: repaired a ranking answer (%s): %s",
                self.name,
                self._shorten("; ".join(problems)),
                self._quote(answer.content, 120),
            )
        elif windows is not None:  # a repaired answer is not cached: a rerun asks again
            windows.put(query, passages, permutation)
        return permutation

    # ----------------------------------------------------------------- the window cache
    def _window_setting(self) -> Any:
        """Where window answers are cached: nowhere when the run's ``cache=`` or ``window_cache`` is False;
        ``window_cache=True`` follows the run's ``cache=`` (the default directory outside a run)."""
        run_cache = getattr(self, "_run_cache", True)
        if self._window_cache_arg is False or run_cache is False or run_cache is None:
            return False
        return run_cache if self._window_cache_arg is True else self._window_cache_arg

    def _windows(self) -> WindowCache | None:
        setting = self._window_setting()
        if setting is False:
            return None
        with self._lock:
            if setting not in self._window_stores:
                try:
                    digest = identity_digest({**self.identity(), "cached": "listwise window"})
                    self._window_stores[setting] = WindowCache.open(setting, digest, self.name)
                except _CACHE_FAILURES as exc:
                    self._window_stores[setting] = None
                    warn_user(f"{self.name}: the window cache could not be opened ({exc}); ranking without it")
            return self._window_stores[setting]
