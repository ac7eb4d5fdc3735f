"""rerankpd.agreement: two offline rerankers (bm25 and a tiny local cross-encoder) over one seeded sample."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import rerankpd
from rerankpd.errors import ConfigurationError
from tests.rerankers.tiny_cross_encoder import build_tiny_cross_encoder

stats = pytest.importorskip("scipy.stats")

WORDS = "cold flu hands wash mask vaccine winter fever rest water tea sleep doctor cough".split()


def corpus(n=60, seed=3):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {"text": [" ".join(rng.choice(WORDS, size=rng.integers(2, 9))) for _ in range(n)]},
        index=[f"r{i}" for i in range(n)],
    )


class Reversed(rerankpd.Reranker):
    """BM25 upside down: must disagree completely."""

    name = "reversed-bm25"
    kind = "lexical"
    pairwise = False
    batch_size = None

    def score(self, query, documents):
        return [-s for s in rerankpd.get_reranker("bm25").score(query, documents)]


class Counting(rerankpd.Reranker):
    """A pairwise reranker with an identity (so cached), counting the pairs it is asked to score."""

    name = "counting"
    model = "length-v1"

    def __init__(self):
        self.pairs = 0

    def identity(self):
        return {"reranker": self.name, "model": self.model}

    def score(self, query, documents):
        self.pairs += len(documents)
        return [float(len(d)) for d in documents]


@pytest.fixture(scope="module")
def cross_encoder_dir(tmp_path_factory):
    return build_tiny_cross_encoder(tmp_path_factory.mktemp("tiny-ce"))


def test_a_reranker_agrees_with_itself():
    check = rerankpd.agreement(corpus(), "wash hands cold", a="bm25", b="bm25", sample=40, progress=False)
    assert check.spearman == pytest.approx(1.0, abs=1e-12)
    assert check.kendall == pytest.approx(1.0, abs=1e-12)
    assert check.max_abs_diff == 0.0 and check.top10_overlap == 1.0
    assert len(check.scores) == 40 and check.per_query["rows"].tolist() == [40]


def test_the_local_cross_encoder_agrees_with_itself_and_the_second_run_comes_from_the_cache(
    cross_encoder_dir, monkeypatch
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    r = rerankpd.get_reranker("cross-encoder", model=str(cross_encoder_dir))
    calls = []
    real = r.score_batch
    monkeypatch.setattr(r, "score_batch", lambda q, docs: calls.append(len(docs)) or real(q, docs))
    df = corpus()
    check = rerankpd.agreement(df, "wash hands cold", a=r, b=r, sample=30, progress=False)
    assert check.spearman == pytest.approx(1.0, abs=1e-12) and check.kendall == pytest.approx(1.0, abs=1e-12)
    assert check.max_abs_diff == 0.0 and check.top10_overlap == 1.0
    distinct = df.loc[check.scores.index, "text"].nunique()
    assert len(check.scores) == 30 and sum(calls) == distinct  # b's scores all came from the cache a filled
    assert check.a != check.b and check.a.startswith("cross-encoder")


def test_bm25_against_the_cross_encoder_matches_scipy_on_the_same_rows(cross_encoder_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ce = rerankpd.get_reranker("cross-encoder", model=str(cross_encoder_dir))
    df = corpus()
    check = rerankpd.agreement(df, "wash hands cold", a="bm25", b=ce, sample=25, seed=1, progress=False)
    rows = df.loc[check.scores.index]
    a = rerankpd.scores(rows, "wash hands cold", reranker="bm25", progress=False).to_numpy()
    b = rerankpd.scores(rows, "wash hands cold", reranker=ce, progress=False).to_numpy()
    np.testing.assert_allclose(check.scores["score_a"], a)
    np.testing.assert_allclose(check.scores["score_b"], b)
    assert check.spearman == pytest.approx(stats.spearmanr(a, b).statistic)
    assert check.kendall == pytest.approx(stats.kendalltau(a, b).statistic)
    assert check.max_abs_diff == pytest.approx(np.abs(a - b).max())
    top = lambda x: set(np.argsort(-x, kind="stable")[:10])  # noqa: E731
    assert check.top10_overlap == len(top(a) & top(b)) / 10
    assert -1 <= check.spearman <= 1 and check.spearman != pytest.approx(1.0)
    assert "bm25" in repr(check) and "Spearman" in repr(check)


def test_a_reversed_ranking_disagrees_completely():
    check = rerankpd.agreement(corpus(), "wash hands cold", a="bm25", b=Reversed(), progress=False)
    assert check.spearman == pytest.approx(-1.0) and check.kendall == pytest.approx(-1.0)


def test_the_sample_is_seeded_and_skips_rows_without_text():
    df = corpus(100)
    df.loc[["r0", "r1"], "text"] = [None, "   "]
    one = rerankpd.agreement(df, "cold", a="bm25", b="bm25", sample=20, seed=5, progress=False)
    same = rerankpd.agreement(df, "cold", a="bm25", b="bm25", sample=20, seed=5, progress=False)
    other = rerankpd.agreement(df, "cold", a="bm25", b="bm25", sample=20, seed=6, progress=False)
    assert one.scores.index.tolist() == same.scores.index.tolist()
    assert one.scores.index.tolist() != other.scores.index.tolist()
    everything = rerankpd.agreement(df, "cold", a="bm25", b="bm25", sample=None, progress=False)
    assert len(everything.scores) == 98 and not {"r0", "r1"} & set(everything.scores.index)


def test_per_row_queries_are_compared_per_query_with_a_sample_each():
    df = corpus(90)
    df["question"] = ["wash hands", "flu vaccine", "sleep rest"] * 30
    counting = Counting()
    check = rerankpd.agreement(
        df, column="text", query_column="question", a="bm25", b=counting, sample=12, progress=False
    )
    assert check.per_query.index.tolist() == ["wash hands", "flu vaccine", "sleep rest"]
    assert check.per_query["rows"].tolist() == [12, 12, 12]
    for query, rows in check.scores.groupby("query"):
        assert (df.loc[rows.index, "question"] == query).all()
    assert counting.pairs <= 36
    assert set(check.to_dict()) >= {"spearman", "kendall", "max_abs_diff", "top10_overlap", "rows", "queries"}


@pytest.mark.parametrize("sample", [1, 0, 2.5, True])
def test_a_bad_sample_names_the_option(sample):
    with pytest.raises(ConfigurationError, match="sample"):
        rerankpd.agreement(corpus(), "cold", a="bm25", b="bm25", sample=sample)


def test_a_missing_column_is_named():
    with pytest.raises(KeyError, match="body"):
        rerankpd.agreement(corpus(), "cold", "body", a="bm25", b="bm25")


def test_plot_draws_every_sampled_row():
    import matplotlib

    matplotlib.use("Agg")
    check = rerankpd.agreement(corpus(), "wash hands cold", a="bm25", b=Counting(), sample=30, progress=False)
    ax = check.plot()
    points = sum(len(c.get_offsets()) for c in ax.collections)
    assert points == 30
    assert ax.get_xlabel() == "bm25 score" and ax.get_ylabel().startswith("counting")
    import matplotlib.pyplot as plt

    plt.close(ax.figure)
