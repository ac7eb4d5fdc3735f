"""Planning a run: custom rerankers without identity() are never cached (and say so once), the hooks."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import textwrap
import warnings

import pandas as pd
import pytest

import rerankpd
from rerankpd.rerankers import Reranker, get_reranker
from rerankpd.run.plan import plan_run

DF = pd.DataFrame({"text": ["a", "bb", "ccc"]})


class Scaled(Reranker):
    """A custom reranker whose scores depend on an option its author forgot to declare (no identity())."""

    name = "scaled"

    def __init__(self, factor):
        self.factor = factor

    def score(self, query, documents):
        return [self.factor * len(d) for d in documents]


def _quietly(call):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return call()


def test_a_custom_reranker_without_identity_never_gets_anothers_cached_scores(tmp_path):
    one = _quietly(lambda: rerankpd.scores(DF, "q", reranker=Scaled(1), cache=tmp_path, progress=False))
    hundred = _quietly(lambda: rerankpd.scores(DF, "q", reranker=Scaled(100), cache=tmp_path, progress=False))
    assert one.tolist() == [1.0, 2.0, 3.0] and hundred.tolist() == [100.0, 200.0, 300.0]
    assert rerankpd.cache_info(tmp_path)["entries"] == 0


def test_two_classes_of_one_name_in_two_processes_do_not_share_scores(tmp_path):
    script = textwrap.dedent("""
        import json, sys, warnings
        import pandas as pd
        import rerankpd
        warnings.simplefilter("ignore")

        class MyReranker(rerankpd.Reranker):
            def score(self, query, documents):
                return [FACTOR * len(d) for d in documents]

        s = rerankpd.scores(pd.DataFrame({"text": ["a", "bb"]}), "q", reranker=MyReranker(), progress=False)
        print(json.dumps(s.tolist()))
    """)
    env = {**os.environ, "RERANKPD_CACHE_DIR": str(tmp_path / "shared")}
    results = []
    for factor in (1, -1):
        done = subprocess.run(
            [sys.executable, "-c", script.replace("FACTOR", str(factor))],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        results.append(json.loads(done.stdout.splitlines()[-1]))
    assert results == [[1.0, 2.0], [-1.0, -2.0]]


def test_not_cached_warning_is_said_once_per_class_and_points_at_the_callers_line():
    class Uncached(Reranker):
        name = "uncached"

        def score(self, query, documents):
            return [0.0] * len(documents)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = inspect.currentframe().f_lineno + 1
        DF.rerank("q", reranker=Uncached(), progress=False)
        DF.rerank("q", reranker=Uncached(), progress=False)  # a second object of the same class
        rerankpd.scores(DF, "q", reranker=Uncached(), progress=False)
    said = [w for w in caught if "not cached" in str(w.message)]
    assert len(said) == 1, [str(w.message) for w in caught]
    assert "define identity()" in str(said[0].message)
    assert said[0].filename == __file__ and said[0].lineno == line


def test_cache_false_or_a_declared_identity_says_nothing():
    class Declared(Scaled):
        def identity(self):
            return {"reranker": "scaled", "factor": self.factor}

    class Quiet(Scaled):
        pass

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        declared = rerankpd.scores(DF, "q", reranker=Declared(2), cache=False, progress=False)
        quiet = rerankpd.scores(DF, "q", reranker=Quiet(2), cache=False, progress=False)
    assert [str(w.message) for w in caught] == []
    assert declared.tolist() == quiet.tolist() == [2.0, 4.0, 6.0]


def test_plan_reads_the_reranker_once_and_cuts_requests():
    run = plan_run(
        pd.DataFrame({"text": ["x y", "x y", None, "z"]}),
        "x",
        "text",
        None,
        get_reranker("bm25"),
        cache=False,
        errors="raise",
    )
    assert run.spec.kind == "lexical" and run.cache is None
    assert run.pairs.n_pairs == 2 and run.batches == [[0, 1]] and run.to_score == 2
    [request] = list(run.requests_to_send())
    assert (request.query, request.documents, request.key) == ("x", ["x y", "z"], [0, 1])


class Lexical(Reranker):
    """Records prepare() and score() calls, in order."""

    name = "lexical"
    kind = "lexical"
    pairwise = False
    batch_size = None

    def __init__(self):
        self.calls = []

    def prepare(self, texts):
        from rerankpd.pairs import take_texts

        self.calls.append(("prepare", take_texts(texts, range(len(texts)))))

    def score(self, query, documents):
        self.calls.append(("score", query))
        return [float(len(d)) for d in documents]


def test_lexical_rerankers_are_prepared_once_with_every_distinct_text_before_scoring():
    df = pd.DataFrame({"q": ["q1", "q1", "q2", "q2", None], "text": ["red", "blue", "red", "  ", "green"]})
    reranker = Lexical()
    rerankpd.rerank(df, query_column="q", reranker=reranker, progress=False)
    assert reranker.calls == [("prepare", ["red", "blue", "green"]), ("score", "q1"), ("score", "q2")]


def test_prepare_is_only_for_lexical_rerankers():
    class Embedding(Lexical):
        kind = "embedding"

    reranker = Embedding()
    _quietly(lambda: rerankpd.rerank(DF, "q", reranker=reranker, progress=False))
    assert [c[0] for c in reranker.calls] == ["score"]
    nothing = Lexical()
    rerankpd.rerank(pd.DataFrame({"text": [None, " "]}), "q", reranker=nothing, progress=False)
    assert nothing.calls == []  # nothing to score: neither prepared nor called


@pytest.mark.parametrize("name", rerankpd.available_rerankers())
def test_every_registered_class_can_be_described_without_an_object(name):
    from rerankpd.rerankers import reranker_class
    from rerankpd.rerankers.base import KINDS, describe

    spec = describe(reranker_class(name))
    assert spec.name == name and spec.identity is None and spec.kind in KINDS


def test_a_run_declares_every_field_it_carries():
    """Nothing attaches an attribute to a Run from outside: what the embedding path reports is a field."""
    run = plan_run(
        pd.DataFrame({"text": ["a b", "c"]}), "a", "text", None, get_reranker("bm25"), cache=False, errors="raise"
    )
    assert run.embedding is None
    with pytest.raises(AttributeError):
        run.undeclared = 1
