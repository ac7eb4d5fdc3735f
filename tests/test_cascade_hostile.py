"""A cascade whose prefilter fails on some rows, with errors="coerce": the failures are not hidden."""

from __future__ import annotations

import pandas as pd
import pytest

import rerankpd
from rerankpd.rerankers import Reranker


class Counter(Reranker):
    """The main reranker: more x is better; records what it was sent."""

    name = "counter"

    def __init__(self):
        self.seen = []

    def identity(self):
        return {"reranker": "counter"}

    def score(self, query, documents):
        self.seen.extend(documents)
        return [float(d.count("x")) for d in documents]


class Picky(Reranker):
    """The prefilter: refuses any document that says 'refused' (one request per document)."""

    name = "picky"
    batch_size = 1

    def identity(self):
        return {"reranker": "picky"}

    def score(self, query, documents):
        if any("refused" in d for d in documents):
            raise RuntimeError("the prefilter service refused a document")
        return [float(len(d)) for d in documents]


def frame():
    return pd.DataFrame({"text": ["refused xxxxx", "a x", "bb xx", "ccc xxx", "dddd x"]})


def test_rows_the_prefilter_failed_on_reach_the_reranker_when_there_is_room():
    main = Counter()
    out = rerankpd.rerank(
        frame(), "q", reranker=main, prefilter=Picky(), candidates=10, cache=False, progress=False, errors="coerce"
    )
    assert out.index[0] == 0 and "refused xxxxx" in main.seen  # the reranker's best comes first, as in a plain run
    plain = rerankpd.rerank(frame(), "q", reranker=Counter(), cache=False, progress=False, errors="coerce")
    assert out.index.tolist() == plain.index.tolist()
    assert out["rerank_error"].isna().all() and out.attrs["rerank"]["failed"] == 0


def test_rows_the_prefilter_failed_on_and_left_out_are_marked_failed():
    with pytest.warns(RuntimeWarning, match=r"prefilter picky failed on 1 row"):
        out = rerankpd.rerank(
            frame(),
            "q",
            reranker=Counter(),
            prefilter=Picky(),
            candidates=2,
            cache=False,
            progress=False,
            errors="coerce",
            sort=False,
        )
    error = out.loc[0, "rerank_error"]
    assert isinstance(error, str) and "prefilter picky" in error and "refused a document" in error
    assert out["rerank_error"].notna().sum() == 1 and out.attrs["rerank"]["failed"] == 1
    assert pd.isna(out.loc[0, "rerank_score"]) and int(out.loc[0, "rerank_rank"]) == 5
    assert out.attrs["rerank"]["cascade"]["candidate_rows"] == 2
