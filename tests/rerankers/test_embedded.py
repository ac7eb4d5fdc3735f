"""The offline rerankers rank DMXAPI's own example sensibly: the hand-washing advice first."""
from __future__ import annotations

import pandas as pd
import pytest

import rerankpd
from rerankpd.rerankers.bm25 import tokenize
from tests.conftest import SEED_DOCUMENTS, SEED_QUERY


@pytest.mark.parametrize("name", ["e5", "bm25"])
def test_seed_example_ranked_sensibly(name):
    out = pd.DataFrame({"text": SEED_DOCUMENTS}).rerank(SEED_QUERY, reranker=name, progress=False)
    assert out.index[0] == 0                                   # the direct answer on top
    assert out["rerank_rank"].tolist() == [1, 2, 3]


@pytest.mark.parametrize("name", ["e5", "bm25"])
def test_english_and_mixed_languages(name):
    docs = ["The stock market fell sharply today.", "Wash your hands often to avoid catching a cold.",
            "Recipe: slow-cooked beef stew."]
    out = pd.DataFrame({"text": docs}).rerank("how to prevent a cold", reranker=name, progress=False)
    assert out.index[0] == 1


def test_bm25_tokenizer():
    assert tokenize("Hello World") == ["hello", "world"]
    assert tokenize("预防感冒") == ["预", "防", "感", "冒", "预防", "防感", "感冒"]
    assert tokenize("!!!") == []


def test_bm25_scores_depend_on_candidates_so_it_is_not_pairwise():
    r = rerankpd.get_reranker("bm25")
    assert r.pairwise is False and r.batch_size is None


def test_e5_is_cached_and_identity_names_model(tmp_path):
    r = rerankpd.get_reranker("e5")
    assert r.pairwise and "e5" in r.identity()["model"]
    df = pd.DataFrame({"text": SEED_DOCUMENTS})
    df.rerank(SEED_QUERY, reranker=r, cache=tmp_path, progress=False)
    out = df.rerank(SEED_QUERY, reranker=r, cache=tmp_path, progress=False)
    assert out.attrs["rerank"]["from_cache"] == 3 and out.attrs["rerank"]["sent"] == 0


def test_bm25_documents_without_words():
    r = rerankpd.get_reranker("bm25")
    assert r.score("cold", ["\x1b", "!!!"]) == [0.0, 0.0]
    assert r.score("!!!", ["cold", "warm"]) == [0.0, 0.0]
    s = r.score("cold", ["\x1b", "a cold day"])
    assert s[0] == 0.0 and s[1] > 0
