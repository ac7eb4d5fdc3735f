"""rerank() end to end: arguments, missing text, dedupe, per-row queries, top_n, sort, errors, cache."""

from __future__ import annotations

import inspect
import math
import threading
import warnings

import numpy as np
import pandas as pd
import pytest

import rerankpd
from rerankpd import errors
from rerankpd.rerankers import Reranker
from rerankpd.rerankers.base import BatchResult
from rerankpd.testing import LoopbackRerankServer
from tests.conftest import API_KEY


class Counting(Reranker):
    """A local reranker that scores by shared words and records every call."""

    name = "counting"

    def __init__(self, batch_size=64, fail_on=None):
        self.batch_size = batch_size
        self.calls: list[tuple[str, list[str]]] = []
        self.fail_on = fail_on

    def identity(self):
        return {"reranker": self.name}

    def score(self, query, documents):
        self.calls.append((query, list(documents)))
        if self.fail_on is not None and self.fail_on in documents:
            raise errors.ServerError("boom", status_code=500, provider=self.name)
        words = set(query.split())
        return [float(len(words & set(d.split()))) + 1.0 / (1 + len(d)) for d in documents]

    @property
    def sent(self):
        return [d for _, docs in self.calls for d in docs]


@pytest.fixture
def frame():
    return pd.DataFrame(
        {
            "text": ["red apple", None, "green apple pie", "  ", "red apple", "blue sky", float("nan")],
            "other": list("abcdefg"),
        },
        index=[10, 11, 12, 13, 14, 15, 16],
    )


def test_adds_columns_and_keeps_input(frame):
    before = frame.copy()
    out = frame.rerank("red apple", reranker=Counting(), progress=False)
    pd.testing.assert_frame_equal(frame, before)  # input untouched
    assert list(out.columns) == ["text", "other", "rerank_score", "rerank_rank"]
    assert out["rerank_score"].dtype == np.float64 and str(out["rerank_rank"].dtype) == "Int64"
    assert sorted(out.index) == sorted(frame.index)
    assert out.loc[10, "other"] == "a" and out.loc[15, "text"] == "blue sky"


def test_missing_and_blank_never_sent_and_sorted_last(frame):
    r = Counting()
    out = frame.rerank("red apple", reranker=r, progress=False)
    assert set(r.sent) == {"red apple", "green apple pie", "blue sky"}
    assert out.index.tolist()[-3:] == [11, 13, 16]
    assert out.loc[[11, 13, 16], "rerank_score"].isna().all()
    assert out.loc[[11, 13, 16], "rerank_rank"].isna().all()
    assert out.index.tolist()[:4] == [10, 14, 12, 15]
    assert out.loc[[10, 14], "rerank_rank"].tolist() == [1, 2]  # duplicates rank by position
    info = out.attrs["rerank"]
    assert (info["rows"], info["unique_pairs"], info["missing"], info["sent"]) == (7, 3, 3, 3)


def test_duplicates_scored_once(frame):
    r = Counting()
    out = frame.rerank("red apple", reranker=r, progress=False)
    assert r.sent.count("red apple") == 1
    assert out.loc[10, "rerank_score"] == out.loc[14, "rerank_score"]


def test_sort_false_keeps_input_order(frame):
    out = frame.rerank("red apple", reranker=Counting(), sort=False, progress=False)
    assert out.index.tolist() == frame.index.tolist()


def test_top_n(frame):
    out = frame.rerank("red apple", reranker=Counting(), top_n=2, progress=False)
    assert out.index.tolist() == [10, 14]
    out = frame.rerank("red apple", reranker=Counting(), top_n=100, sort=False, progress=False)
    assert out.index.tolist() == [10, 12, 14, 15]  # unscored rows are never among the best


def test_per_row_queries_rank_within_each_query():
    df = pd.DataFrame(
        {
            "question": ["cats", "dogs", "cats", "dogs", "cats", None, "dogs"],
            "passage": ["cats purr", "cats purr", "dogs bark", "dogs bark", "cats and dogs", "cats", None],
        },
        index=list("abcdefg"),
    )
    r = Counting()
    out = df.rerank(query_column="question", column="passage", reranker=r, progress=False)
    assert out.index.tolist() == ["a", "e", "c", "d", "b", "g", "f"]
    assert out["rerank_rank"].tolist()[:5] == [1, 2, 3, 1, 2]
    assert {q for q, _ in r.calls} == {"cats", "dogs"}
    assert all(len({q}) == 1 for q, _ in r.calls)  # one query per request
    top = df.rerank(query_column="question", column="passage", reranker=Counting(), top_n=1, progress=False)
    assert top.index.tolist() == ["a", "d"]
    assert top.attrs["rerank"]["query_column"] == "question"


def test_scores_series_aligned(frame):
    s = frame.rerank.scores("red apple", reranker=Counting(), progress=False)
    assert s.index.equals(frame.index) and s.name == "rerank_score"
    assert math.isnan(s[11]) and s[10] == s[14]


def test_empty_frame():
    out = pd.DataFrame({"text": pd.Series([], dtype=object)}).rerank("q", reranker=Counting(), progress=False)
    assert list(out.columns) == ["text", "rerank_score", "rerank_rank"] and len(out) == 0


def test_all_missing_sends_nothing():
    r = Counting()
    out = pd.DataFrame({"text": [None, "", " \n"]}).rerank("q", reranker=r, progress=False)
    assert r.calls == [] and out["rerank_score"].isna().all()


def test_categorical_and_string_dtype_columns():
    for dtype in ("category", "string"):
        df = pd.DataFrame({"text": pd.Series(["red apple", "blue sky", None], dtype=dtype)})
        out = df.rerank("red", reranker=Counting(), progress=False)
        assert out.index.tolist() == [0, 1, 2]


# ----------------------------------------------------------------------- caller mistakes
def test_missing_column_keyerror_lists_columns(frame):
    with pytest.raises(KeyError, match=r"'body'.*\['text', 'other'\]"):
        frame.rerank("q", column="body", reranker=Counting())
    with pytest.raises(KeyError, match="query_column 'qq'"):
        frame.rerank(query_column="qq", reranker=Counting())


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({}, "neither"),
        ({"query": "q", "query_column": "other"}, "both"),
        ({"query": "   "}, "query is empty"),
        ({"query": 5}, "query must be a string"),
        ({"query": "q", "top_n": 0}, "top_n"),
        ({"query": "q", "top_n": True}, "top_n"),
        ({"query": "q", "errors": "ignore"}, "errors"),
        ({"query": "q", "reranker": "nope"}, "unknown reranker 'nope'"),
        ({"query": "q", "cache": 3}, "cache"),
    ],
)
def test_bad_arguments_valueerror(frame, kwargs, match):
    kwargs.setdefault("reranker", Counting())
    with pytest.raises(ValueError, match=match):
        frame.rerank(**kwargs)


def test_non_text_cell_typeerror_names_column_and_label():
    df = pd.DataFrame({"text": ["ok", 42, "fine", 3.5]}, index=["a", "b", "c", "d"])
    with pytest.raises(TypeError, match=r"column 'text'.*index 'b'.*int 42"):
        df.rerank("q", reranker=Counting())


# ----------------------------------------------------------------------- failures
def test_errors_coerce_gives_nan_and_message():
    df = pd.DataFrame({"text": ["good one", "bad", "good two"]})
    out = df.rerank("good", reranker=Counting(batch_size=1, fail_on="bad"), errors="coerce", progress=False)
    assert out.loc[1, "rerank_error"].startswith("boom")
    assert math.isnan(out.loc[1, "rerank_score"]) and pd.isna(out.loc[1, "rerank_rank"])
    assert out.loc[[0, 2], "rerank_error"].isna().all()
    assert out.attrs["rerank"]["failed"] == 1


def test_errors_raise_attaches_partial_and_caches_finished(tmp_path):
    df = pd.DataFrame({"text": [f"doc {i}" for i in range(10)]})
    failing = Counting(batch_size=2, fail_on="doc 6")
    with pytest.raises(errors.ServerError) as info:
        df.rerank("doc", reranker=failing, cache=tmp_path, progress=False)
    partial = info.value.partial
    assert isinstance(partial, pd.DataFrame) and len(partial) == 10
    assert sorted(partial.index) == list(range(10))
    scored = partial["rerank_score"].notna()
    assert scored.sum() == 6 and not scored[6]
    # the rerun sends only what is missing
    again = Counting(batch_size=2)
    out = df.rerank("doc", reranker=again, cache=tmp_path, progress=False)
    assert sorted(again.sent) == ["doc 6", "doc 7", "doc 8", "doc 9"]
    assert out["rerank_score"].notna().all() and out.attrs["rerank"]["from_cache"] == 6


def test_keyboard_interrupt_keeps_finished_scores(tmp_path):
    class Interrupting(Counting):
        def score(self, query, documents):
            if "doc 4" in documents:
                raise KeyboardInterrupt
            return super().score(query, documents)

    df = pd.DataFrame({"text": [f"doc {i}" for i in range(8)]})
    with pytest.raises(KeyboardInterrupt) as info:
        df.rerank("doc", reranker=Interrupting(batch_size=2), cache=tmp_path, progress=False)
    assert info.value.partial["rerank_score"].notna().sum() == 4
    again = Counting(batch_size=2)
    df.rerank("doc", reranker=again, cache=tmp_path, progress=False)
    assert sorted(again.sent) == ["doc 4", "doc 5", "doc 6", "doc 7"]


def test_cancel_stops_between_requests(tmp_path):
    cancel = threading.Event()
    seen = []

    def on_progress(done, total):
        seen.append((done, total))
        if done >= 4:
            cancel.set()

    df = pd.DataFrame({"text": [f"doc {i}" for i in range(10)]})
    with pytest.raises(errors.RunCancelled) as info:
        rerankpd.rerank(
            df,
            "doc",
            reranker=Counting(batch_size=2),
            cache=tmp_path,
            progress=False,
            _cancel=cancel,
            _on_progress=on_progress,
        )
    assert seen[0] == (0, 10) and seen[-1] == (4, 10)
    assert info.value.partial["rerank_score"].notna().sum() == 4


# ----------------------------------------------------------------------- cache over HTTP
def test_interrupted_http_run_resumes_sending_only_the_rest(tmp_path, server):
    df = pd.DataFrame({"text": [f"passage about topic {i}" for i in range(40)]})

    def reranker():
        return rerankpd.get_reranker(
            "dmxapi", api_key=API_KEY, base_url=server.url, batch_size=5, max_concurrency=1, max_retries=0
        )

    # Run 1: the 4th request meets a 400; three batches (15 pairs) are finished and cached.
    server.fail_on_request(4, "status", status=400, message="rejected")
    with pytest.raises(errors.BadRequestError) as info:
        df.rerank("topic 3", reranker=reranker(), cache=tmp_path, progress=False)
    assert info.value.partial["rerank_score"].notna().sum() == 15
    assert len(server.requests) == 4
    server.reset()

    # Run 2: only the 25 missing pairs are sent.
    out = df.rerank("topic 3", reranker=reranker(), cache=tmp_path, progress=False)
    assert len(server.documents_received()) == 25 and len(server.requests) == 5
    assert out["rerank_score"].notna().all()
    assert out.attrs["rerank"]["from_cache"] == 15 and out.attrs["rerank"]["sent"] == 25
    server.reset()

    # Run 3: a rerun costs nothing.
    again = df.rerank("topic 3", reranker=reranker(), cache=tmp_path, progress=False)
    assert len(server.requests) == 0
    pd.testing.assert_frame_equal(again, out, check_like=True)
    assert again.attrs["rerank"]["from_cache"] == 40 and again.attrs["rerank"]["requests"] == 0


def test_cache_false_always_sends(tmp_path):
    df = pd.DataFrame({"text": ["a b", "c d"]})
    r = Counting()
    df.rerank("a", reranker=r, cache=False, progress=False)
    df.rerank("a", reranker=r, cache=False, progress=False)
    assert len(r.calls) == 2


def test_cache_key_depends_on_model_and_options(tmp_path, server):
    df = pd.DataFrame({"text": ["a b", "c d"]})

    def run(**kw):
        r = rerankpd.get_reranker("dmxapi", api_key=API_KEY, base_url=server.url, **kw)
        df.rerank("a", reranker=r, cache=tmp_path, progress=False)

    run()
    run()
    assert len(server.requests) == 1
    run(model="bge-reranker-v2-m3")
    run(max_chunks_per_doc=3)
    assert len(server.requests) == 3
    # a different key is the same identity: the key never enters the cache key
    other = rerankpd.get_reranker("dmxapi", api_key="another-key", base_url=server.url)
    assert other.identity() == rerankpd.get_reranker("dmxapi", api_key=API_KEY, base_url=server.url).identity()
    assert "another-key" not in repr(other.identity())


def test_progress_bar_names_reranker_and_cache_hits(tmp_path, capsys):
    df = pd.DataFrame({"text": ["a b", "c d", "e f"]})
    df.iloc[:1].rerank("a", reranker=Counting(), cache=tmp_path, progress=True)
    df.rerank("a", reranker=Counting(), cache=tmp_path, progress=True)
    err = capsys.readouterr().err
    assert "rerank [counting]" in err and "cached=1" in err and "2/2" in err
    df.rerank("zzz", reranker=Counting(), cache=tmp_path, progress=False)
    assert capsys.readouterr().err == ""


def test_bm25_scores_each_query_in_one_call_and_is_not_cached(tmp_path):
    df = pd.DataFrame({"q": ["a", "b", "a"] * 40, "text": [f"t{i} a b" for i in range(120)]})
    out = df.rerank(query_column="q", reranker="bm25", cache=tmp_path, progress=False)
    assert out.attrs["rerank"]["requests"] == 2
    assert rerankpd.cache_info(tmp_path)["entries"] == 0


# ----------------------------------------------------------------------- review findings, kept fixed
def test_non_finite_score_is_a_failure_never_cached(tmp_path):
    class NaNs(Counting):
        def score(self, query, documents):
            return [float("nan") if d == "bad" else 1.0 for d in documents]

    df = pd.DataFrame({"text": ["good", "bad"]})
    out = df.rerank("q", reranker=NaNs(), cache=tmp_path, errors="coerce", progress=False)
    assert "score of nan for document 1" in out.loc[1, "rerank_error"]
    assert out["rerank_score"].isna().all()  # the whole request failed, nothing half-kept
    again = Counting()
    out = df.rerank("q", reranker=again, cache=tmp_path, progress=False)
    assert sorted(again.sent) == ["bad", "good"] and out["rerank_score"].notna().all()


def test_lone_surrogate_names_the_row():
    df = pd.DataFrame({"text": pd.Series(["fine", "bad \ud800 cell"], dtype=object, index=["r1", "r2"])})
    with pytest.raises(TypeError, match=r"column 'text': the row with index 'r2' is not valid Unicode"):
        df.rerank("q", reranker=Counting())


def test_duplicate_column_labels_and_unhashable_column():
    df = pd.DataFrame([["a", "b"]], columns=["text", "text"])
    with pytest.raises(ValueError, match="column 'text' names 2 columns"):
        df.rerank("q", reranker=Counting())
    with pytest.raises(TypeError, match="column must be one column label"):
        pd.DataFrame({"text": ["a"]}).rerank("q", column=["text"], reranker=Counting())


def test_reranker_class_instead_of_object():
    from rerankpd.rerankers.bm25 import BM25Reranker

    with pytest.raises(ValueError, match=r"pass an object: reranker=BM25Reranker\(...\)"):
        pd.DataFrame({"text": ["a"]}).rerank("q", reranker=BM25Reranker)


def test_cancel_message_says_whether_scores_were_cached():
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(errors.RunCancelled, match="the cache was off"):
        rerankpd.rerank(
            pd.DataFrame({"text": ["a", "b"]}),
            "q",
            reranker=Counting(batch_size=1),
            cache=False,
            progress=False,
            _cancel=cancel,
            _on_progress=lambda d, t: None,
        )


# ----------------------------------------------------------------------- output columns of an earlier run
def test_reranking_a_coerce_result_replaces_the_stale_errors():
    df = pd.DataFrame({"text": ["good one", "bad", "good two"]})
    first = df.rerank("good", reranker=Counting(batch_size=1, fail_on="bad"), errors="coerce", progress=False)
    assert first["rerank_error"].notna().sum() == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an earlier run's columns are replaced silently
        again = first.rerank("good", reranker=Counting(batch_size=1), progress=False)
        coerced = first.rerank("good", reranker=Counting(batch_size=1), errors="coerce", progress=False)
    assert "rerank_error" not in again.columns  # no stale error left behind
    assert coerced["rerank_error"].isna().all() and coerced["rerank_score"].notna().all()
    assert list(again.columns) == ["text", "rerank_score", "rerank_rank"]


def test_an_earlier_runs_columns_are_recognised_without_attrs():
    earlier = pd.DataFrame({"text": ["a b", "c"], "rerank_score": [0.1, 0.2], "rerank_rank": [2, 1]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = earlier.rerank("a", reranker=Counting(), progress=False)
    assert out.loc[0, "rerank_rank"] == 1 and out["rerank_score"].tolist()[0] > 1


@pytest.mark.parametrize("column", ["rerank_score", "rerank_rank", "rerank_chunk", "rerank_error"])
def test_a_users_own_column_of_an_output_name_is_replaced_with_a_warning(column):
    df = pd.DataFrame({"text": ["a b", "c"], column: ["mine", "mine"]})
    with pytest.warns(RuntimeWarning, match=f"already has '{column}', which rerankpd writes") as caught:
        line = inspect.currentframe().f_lineno + 1
        out = df.rerank("a", reranker=Counting(), progress=False)
    assert caught[0].filename == __file__ and caught[0].lineno == line  # points at the caller's line
    assert "mine" not in out.get(column, pd.Series(dtype=object)).tolist()


# ----------------------------------------------------------------------- what a run reports
def test_attrs_count_attempts_and_failed_requests():
    class Retrying(Counting):
        def score_batch(self, query, documents):
            result = super().score_batch(query, documents)
            return BatchResult(result.scores, {"tokens": 1}, attempts=3)  # two retries, then an answer

    df = pd.DataFrame({"text": ["a", "b", "bad", "c"]})
    out = df.rerank("a", reranker=Retrying(batch_size=1, fail_on="bad"), errors="coerce", progress=False)
    info = out.attrs["rerank"]
    assert (info["requests"], info["failed_requests"], info["attempts"]) == (3, 1, 3 * 3 + 1)
    assert info["usage"] == {"tokens": 3}


def test_the_reranker_is_bound_to_the_runs_cancel_event_while_scoring():
    cancel = threading.Event()

    class Watching(Counting):
        bound = []

        def score(self, query, documents):
            self.bound.append(self._cancel_event)
            return super().score(query, documents)

    r = Watching(batch_size=1)
    rerankpd.rerank(pd.DataFrame({"text": ["a", "b"]}), "q", reranker=r, progress=False, _cancel=cancel)
    assert r.bound == [cancel, cancel] and r._cancel_event is None


def test_an_object_without_score_is_refused_naming_the_rerankers():
    with pytest.raises(ValueError, match=r"reranker must be a name \(.*bm25.*\) or an object with a score"):
        pd.DataFrame({"text": ["a"]}).rerank("q", reranker=object())


def test_third_party_object_with_only_score_still_works():
    class Plain:
        def score(self, query, documents):
            return [float(len(d)) for d in documents]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = pd.DataFrame({"text": ["a", "abc"]}).rerank("q", reranker=Plain(), progress=False)
    assert out.index.tolist() == [1, 0] and out.attrs["rerank"]["reranker"] == "Plain"


def test_an_exhausted_request_lets_those_in_flight_finish_and_says_how_to_resume(tmp_path):
    """errors="raise": the requests in flight when one runs out of retries finish and are kept (partial and
    cache); the message counts the missing rows and says how to resume; the rerun sends only those."""
    df = pd.DataFrame({"text": [f"document {i} about colds" for i in range(8)]})
    with LoopbackRerankServer(api_key=API_KEY) as srv:
        srv.fail_next("500")  # the first answer: at once
        srv.fail_next("stall", count=3, stall_seconds=0.4)  # the three beside it: slow, but they succeed
        r = rerankpd.get_reranker(
            "dmxapi", api_key=API_KEY, base_url=srv.url, batch_size=1, max_concurrency=4, max_retries=0
        )
        with pytest.raises(errors.ServerError) as info:
            rerankpd.rerank(df, "colds", reranker=r, cache=tmp_path / "cache", progress=False)
        assert len(srv.requests) == 4  # nothing new was sent after the failure
        partial = info.value.partial
        scored = partial["rerank_score"].notna()
        assert scored.sum() == 3  # the three in flight finished and are kept
        message = str(info.value)
        assert "5 of 8 rows were not scored" in message and "the 3 scored rows are in exc.partial" in message
        assert "run the same call again and only the missing rows are sent" in message
        assert info.value.message == message
        srv.reset()
        again = rerankpd.rerank(df, "colds", reranker=r, cache=tmp_path / "cache", progress=False)
        assert again["rerank_score"].notna().all()
        assert sorted(srv.documents_received()) == sorted(partial.loc[~scored, "text"])


def test_the_resume_hint_without_a_cache_says_what_to_rerank():
    df = pd.DataFrame({"text": ["a cold", "b cold"]})
    with LoopbackRerankServer(api_key=API_KEY) as srv:
        srv.fail_next("500")
        r = rerankpd.get_reranker(
            "dmxapi", api_key=API_KEY, base_url=srv.url, batch_size=1, max_concurrency=1, max_retries=0
        )
        with pytest.raises(errors.ServerError, match="2 of 2 rows were not scored") as info:
            rerankpd.rerank(df, "colds", reranker=r, cache=False, progress=False)
    assert "whose rerank_score is NaN in exc.partial" in str(info.value)
