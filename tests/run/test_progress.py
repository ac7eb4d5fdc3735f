"""The progress bar and the panel's callback: counts, cache hits, failures."""

from __future__ import annotations

import pandas as pd

import rerankpd
from rerankpd import errors
from rerankpd.rerankers import Reranker
from rerankpd.run.progress import Progress


class Failing(Reranker):
    name = "failing"
    batch_size = 1

    def __init__(self, fail=lambda document: True):
        self.fail = fail

    def score(self, query, documents):
        if self.fail(documents[0]):
            raise errors.ServerError("down", status_code=503, provider=self.name)
        return [1.0] * len(documents)


def test_counts_pairs_and_failures_for_the_callback():
    calls = []
    p = Progress("x", total=5, cached=0, progress=False, on_progress=lambda done, total: calls.append(done))
    p.advance(2, failed=False)
    p.advance(3, failed=True)
    p.close()
    assert calls == [0, 2, 5] and (p.done, p.failed) == (5, 3)


def test_bar_shows_failed_pairs(capsys):
    df = pd.DataFrame({"text": ["a", "b", "c", "d"]})
    out = rerankpd.rerank(
        df, "q", reranker=Failing(lambda d: d in ("b", "c")), cache=False, progress=True, errors="coerce"
    )
    assert out["rerank_error"].notna().sum() == 2
    err = capsys.readouterr().err
    assert "failed=2" in err and "rerank [failing]" in err and "rerank [failing] failed" not in err


def test_bar_says_failed_when_every_pair_failed(capsys):
    df = pd.DataFrame({"text": ["a", "b", "c"]})
    out = rerankpd.rerank(df, "q", reranker=Failing(), cache=False, progress=True, errors="coerce")
    assert out["rerank_score"].isna().all()
    err = capsys.readouterr().err
    assert "rerank [failing] failed" in err and "failed=3" in err
    assert "\x1b[31m" in err  # the bar itself is drawn red


def test_bar_of_a_clean_run_shows_no_failures(capsys):
    rerankpd.rerank(
        pd.DataFrame({"text": ["a", "b"]}), "q", reranker=Failing(lambda d: False), cache=False, progress=True
    )
    err = capsys.readouterr().err
    assert "rerank [failing]" in err and "failed" not in err


def test_the_eta_averages_over_many_batches_in_every_bar():
    """tqdm's default smoothing (0.3) follows the last few updates, so an ETA after a fast first batch was
    several times too optimistic; every run's bar (batched and embedding runs alike) averages over ~20."""
    from rerankpd.run.progress import SMOOTHING, Progress, progress_bar

    p = Progress("x", total=10, cached=0, progress=True)
    try:
        assert p._bar.smoothing == SMOOTHING <= 0.1
    finally:
        p.close()
    bar = progress_bar("e5", 10, True)
    assert bar.smoothing == SMOOTHING
    bar.close()
