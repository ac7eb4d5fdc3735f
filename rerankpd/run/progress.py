"""The progress of one run: a tqdm bar and the panel's callback, moved by each finished request.

:class:`Progress` is a callback of :func:`rerankpd.run.scheduler.run_requests`. The bar counts pairs, names the
reranker, shows cache hits (``cached=N``) and failures (``failed=N``); when every pair failed it ends red
and says so, so a run that scored nothing never reads as a success.

Examples
--------
>>> calls = []
>>> p = Progress("bm25", total=2, cached=0, progress=False, on_progress=lambda d, t: calls.append((d, t)))
>>> p.advance(2, failed=False); p.close()
>>> calls
[(0, 2), (2, 2)]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .scheduler import Finished

__all__ = ["Progress", "ProgressCallback", "progress_bar"]

#: tqdm's smoothing of the rate behind the ETA: 0.05 averages over about the last 20 updates (tqdm's default
#: 0.3 over the last 3), so the ETA settles within a few batches instead of following the first, fast ones.
SMOOTHING = 0.05

#: ``on_progress(done, total)``: pairs finished (scored or failed) and pairs to score.
ProgressCallback = Callable[[int, int], None]


class Progress:
    """Counts finished pairs for a tqdm bar (unless ``progress`` is False) and ``on_progress``.

    ``progress``: None shows the bar when the work takes more than a second, True always, False never.
    """

    def __init__(
        self, name: str, total: int, cached: int, progress: Any, on_progress: ProgressCallback | None = None
    ) -> None:
        self.name, self.total, self.cached = name, total, cached
        self.done = self.failed = 0
        self._on_progress = on_progress
        self._bar = None
        if progress is not False and total:
            self._bar = progress_bar(name, total, progress)
            if cached:
                self._bar.set_postfix(cached=cached, refresh=False)
        if on_progress is not None:
            on_progress(0, total)

    def __call__(self, finished: Finished) -> None:
        """The scheduler's callback: one request ended."""
        self.advance(len(finished.request.documents), failed=not finished.ok)

    def advance(self, pairs: int, *, failed: bool) -> None:
        self.done += pairs
        if failed:
            self.failed += pairs
        if self._bar is not None:
            if failed:
                postfix = {"cached": self.cached} if self.cached else {}
                self._bar.set_postfix(**postfix, failed=self.failed, refresh=False)
            self._bar.update(pairs)
        if self._on_progress is not None:
            self._on_progress(self.done, self.total)

    def close(self) -> None:
        """End the bar; red, and saying so, when every pair failed."""
        if self._bar is None:
            return
        if self.failed and self.failed == self.done:
            self._bar.colour = "red"
            self._bar.set_description(f"rerank [{self.name}] failed", refresh=False)
        self._bar.close()


def progress_bar(name: str, total: int, progress: Any):
    """The tqdm bar of a run: pairs of ``total``, named after the reranker; shown after a second unless
    ``progress`` is True (then at once), left on screen only then; the one place its look is decided."""
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        desc=f"rerank [{name}]",
        unit="pair",
        delay=0 if progress else 1.0,
        dynamic_ncols=True,
        leave=bool(progress),
        smoothing=SMOOTHING,
    )
