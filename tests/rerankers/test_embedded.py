"""The offline rerankers rank DMXAPI's own example sensibly: the hand-washing advice first."""

from __future__ import annotations

import pandas as pd
import pytest

import rerankpd
from rerankpd.rerankers.bm25 import stopword_set, tokenize
from tests.conftest import SEED_DOCUMENTS, SEED_QUERY


@pytest.mark.parametrize("name", ["e5", "bm25"])
def test_seed_example_ranked_sensibly(name):
    out = pd.DataFrame({"text": SEED_DOCUMENTS}).rerank(SEED_QUERY, reranker=name, progress=False)
    # the direct answer on top, the vaccine advice next, the disputed vitamin C last
    assert out.index.tolist() == [0, 2, 1]
    scores = out["rerank_score"].tolist()
    assert scores[0] > scores[1] > scores[2]  # no ties: the order is the scores'


@pytest.mark.parametrize(("name", "order"), [("e5", [1, 2, 0]), ("bm25", [1, 0, 2])])
def test_english_and_mixed_languages(name, order):
    docs = [
        "The stock market fell sharply today.",
        "Wash your hands often to avoid catching a cold.",
        "Recipe: slow-cooked beef stew.",
    ]
    out = pd.DataFrame({"text": docs}).rerank("how to prevent a cold", reranker=name, progress=False)
    assert out.index.tolist() == order
    if name == "bm25":  # only the cold advice shares a word; the others tie at 0, in row order
        assert out["rerank_score"].tolist()[0] > 0 and out["rerank_score"].tolist()[1:] == [0.0, 0.0]


def test_bm25_tokenizer():
    assert tokenize("Hello World") == ["hello", "world"]
    assert tokenize("预防感冒") == ["预", "防", "感", "冒", "预防", "防感", "感冒"]
    assert tokenize("!!!") == []


def test_bm25_scores_depend_on_candidates_so_it_is_not_pairwise(tmp_path):
    r = rerankpd.get_reranker("bm25")
    assert r.pairwise is False and r.batch_size is None
    # the same pair scores differently among other candidates (IDF is over the candidate set) ...
    alone = r.score("cats", ["cats purr", "dogs bark"])[0]
    among_cats = r.score("cats", ["cats purr", "cats meow", "cats hiss"])[0]
    assert alone > among_cats > 0
    # ... so a rerun scores again instead of reading pairs from the cache
    df = pd.DataFrame({"text": ["cats purr", "dogs bark"]})
    df.rerank("cats", reranker=r, cache=tmp_path, progress=False)
    again = df.rerank("cats", reranker=r, cache=tmp_path, progress=False)
    assert again.attrs["rerank"]["from_cache"] == 0 and again["rerank_score"].tolist()[0] == pytest.approx(alone)


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


@pytest.mark.parametrize("method", ["lucene", "robertson", "atire", "bm25l", "bm25+"])
def test_bm25_query_view_gives_exactly_the_scores_of_a_full_bm25s_index(method):
    """Folding the words a query lacks into one id must not change a single score."""
    import bm25s
    from hypothesis import given, settings
    from hypothesis import strategies as st

    words = st.sampled_from(["cold", "flu", "hands", "wash", "预防", "感冒", "the", "a", "x"])
    texts = st.lists(st.lists(words, max_size=12).map(" ".join), min_size=1, max_size=12)

    @settings(max_examples=40, deadline=None)
    @given(query=st.lists(words, min_size=1, max_size=4).map(" ".join), documents=texts)
    def check(query, documents):
        got = rerankpd.get_reranker("bm25", method=method).score(query, documents)
        english = stopword_set("en")  # the reranker's default: Lucene's English stop words are left out
        corpus = [tokenize(d, english) for d in documents]
        q = tokenize(query, english)
        if not any(set(q).intersection(doc) for doc in corpus):
            assert got == [0.0] * len(documents)
            return
        full = bm25s.BM25(method=method)
        full.index(corpus, show_progress=False)
        want = full.get_scores([t for t in q if t in full.vocab_dict]).tolist()
        assert got == pytest.approx(want, rel=1e-6, abs=1e-7)

    check()


def test_bm25_query_with_many_distinct_terms():
    query = " ".join(f"w{i}" for i in range(400))
    s = rerankpd.get_reranker("bm25").score(query, ["w1 w2", "w399 w399 zzz", "nothing here"])
    assert s[0] > 0 and s[1] > 0 and s[2] == 0.0


def test_e5_rerankers_in_two_threads_share_one_model_safely():
    import threading

    a, b = rerankpd.get_reranker("e5"), rerankpd.get_reranker("e5")
    assert a._model is b._model and a._lock is b._lock  # one model, one lock, however many rerankers
    docs = ["预防感冒应勤洗手", "今天天气很好", "wash your hands"] * 20
    want = a.score("如何预防感冒", docs)
    got = {}

    def work(name, r):
        got[name] = r.score("如何预防感冒", docs)

    threads = [threading.Thread(target=work, args=(i, r)) for i, r in enumerate((a, b, a, b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(got) == 4 and all(v == pytest.approx(want, rel=1e-5) for v in got.values())
