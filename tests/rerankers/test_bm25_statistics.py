"""bm25 weighs terms with the frame's collection (every distinct text), not each query's candidates alone."""

from __future__ import annotations

import bm25s
import numpy as np
import pandas as pd
import pytest

import rerankpd
from rerankpd.errors import ConfigurationError
from rerankpd.rerankers import Reranker
from rerankpd.rerankers.bm25 import BM25Reranker, stopword_set, tokenize

ENGLISH = stopword_set("en")


def full_index_scores(query: str, collection: list[str], method: str = "lucene") -> dict[str, float]:
    index = bm25s.BM25(method=method)
    index.index([tokenize(t, ENGLISH) for t in collection], show_progress=False)
    q = [t for t in tokenize(query, ENGLISH) if t in index.vocab_dict]
    return dict(zip(collection, index.get_scores(q).tolist()))


def two_query_frame() -> pd.DataFrame:
    # "wing" is in every candidate of the first query but rare in the collection; "flutter" is the reverse
    return pd.DataFrame(
        {
            "question": ["wing flutter"] * 2 + ["heat transfer"] * 4,
            "text": [
                "wing wing surface",
                "flutter flutter surface",
                "flutter of a panel",
                "flutter at high speed",
                "heat transfer in the flutter regime",
                "the heat of the boundary layer",
            ],
        }
    )


@pytest.mark.parametrize("method", ["lucene", "robertson", "atire", "bm25l", "bm25+"])
def test_through_the_pipeline_scores_are_those_of_an_index_over_every_distinct_text(method):
    df = two_query_frame()
    got = rerankpd.scores(
        df, query_column="question", reranker=BM25Reranker(method=method), cache=False, progress=False
    )
    collection = list(dict.fromkeys(df["text"]))
    for question, rows in df.groupby("question", sort=False):
        want = full_index_scores(question, collection, method)
        assert got[rows.index].tolist() == pytest.approx([want[t] for t in rows["text"]], rel=1e-5, abs=1e-6)


def test_corpus_statistics_change_the_order_as_documented():
    df = two_query_frame()
    corpus = rerankpd.scores(df, query_column="question", reranker="bm25", cache=False, progress=False)
    per_query = rerankpd.scores(
        df, query_column="question", reranker=BM25Reranker(statistics="query"), cache=False, progress=False
    )
    # among the two candidates "wing" and "flutter" are equally rare: a tie; in the collection "flutter"
    # is common (4 of 6 texts) and "wing" rare (1 of 6), so the wing document comes first
    assert per_query[0] == pytest.approx(per_query[1])
    assert corpus[0] > 2 * corpus[1] > 0
    # statistics="query" is exactly the former behaviour: each query's candidates indexed alone
    for question, rows in df.groupby("question", sort=False):
        want = full_index_scores(question, rows["text"].tolist())
        assert per_query[rows.index].tolist() == pytest.approx([want[t] for t in rows["text"]], rel=1e-5)


def test_one_query_over_the_whole_frame_gives_the_same_scores_either_way():
    df = two_query_frame()
    a = rerankpd.scores(df, "flutter of the wing", reranker="bm25", cache=False, progress=False)
    b = rerankpd.scores(
        df, "flutter of the wing", reranker=BM25Reranker(statistics="query"), cache=False, progress=False
    )
    assert a.tolist() == b.tolist()


def test_english_stop_words_are_left_out_unless_asked():
    docs = ["the the the of", "a cold day"]
    assert BM25Reranker().score("the cold", docs)[0] == 0.0
    assert BM25Reranker(stopwords=None).score("the cold", docs)[0] > 0
    own = BM25Reranker(stopwords=["Cold"])
    assert own.score("cold", docs) == [0.0, 0.0] and own.score("the", docs)[0] > 0
    # CJK is untouched
    assert BM25Reranker().score("如何预防感冒", ["预防感冒应勤洗手", "今天天气很好"])[0] > 0
    assert BM25Reranker().identity()["stopwords"] == "en" and BM25Reranker().identity()["statistics"] == "corpus"
    with pytest.raises(ConfigurationError, match="statistics"):
        BM25Reranker(statistics="global")
    with pytest.raises(ConfigurationError, match="stopwords"):
        BM25Reranker(stopwords="english")


def test_prepare_is_called_once_per_run_with_every_distinct_text_before_any_score_for_lexical_only():
    calls: list = []

    class Lexical(Reranker):
        name, kind, pairwise = "lex", "lexical", False

        def prepare(self, texts):
            calls.append(("prepare", sorted(texts)))

        def score(self, query, documents):
            calls.append(("score", query))
            return [float(len(d)) for d in documents]

    class Pairwise(Lexical):
        name, kind, pairwise = "pairwise", "cross-encoder", True

    df = two_query_frame()
    rerankpd.rerank(df, query_column="question", reranker=Lexical(), cache=False, progress=False)
    assert calls[0] == ("prepare", sorted(set(df["text"])))
    assert [c[0] for c in calls] == ["prepare", "score", "score"]
    calls.clear()
    rerankpd.rerank(df, query_column="question", reranker=Pairwise(), cache=False, progress=False)
    assert calls and all(c[0] == "score" for c in calls)


def test_scores_without_prepare_use_the_documents_given():
    r = BM25Reranker()
    docs = ["wing wing surface", "flutter flutter surface"]
    assert r.score("wing flutter", docs) == BM25Reranker(statistics="query").score("wing flutter", docs)
    r.prepare(two_query_frame()["text"].tolist())
    assert np.greater(*r.score("wing flutter", docs))
