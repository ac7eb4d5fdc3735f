"""The ``llm`` reranker against the loopback server's ``"openai-chat"`` dialect, a deterministic fake LLM.

The request body is checked against OpenAI's chat completions reference
(https://developers.openai.com/api/reference/python/resources/chat/subresources/completions/): the fields
sent, their values, and the fake server's own checks of the reference's rules. Then both modes end to end:
scores, request counts, the cache, the grade fallback, the repair of every malformed ranking, failed
windows, ``estimate()`` against what was sent, and 30% injected faults giving the clean result.
"""

from __future__ import annotations

import math
import re
import warnings

import pandas as pd
import pytest
import requests

import rerankpd
from rerankpd.errors import AuthenticationError, BadRequestError, BadResponseError, ConfigurationError
from rerankpd.rerankers.llm.prompts import (
    GRADE_PROMPT,
    LISTWISE_PROMPT,
    POINTWISE_PROMPT,
    cut_document,
    grade_score,
    parse_grade,
    parse_permutation,
    window_starts,
    yes_no_score,
)
from rerankpd.rerankers.llm.reranker import LLMReranker
from rerankpd.testing import LoopbackRerankServer, overlap_score

KEY = "sk-llm-canary-5e0c"
QUERY = "how to prevent a cold"
TOPICS = [
    "wash hands to prevent a cold",
    "stock market prices fell",
    "a cold winter ahead",
    "how to prevent the flu",
    "recipe for beef stew",
    "prevent a cold by sleeping well",
]


def corpus(n: int) -> list[str]:
    """``n`` distinct documents whose overlap with QUERY varies."""
    return [f"{TOPICS[i % len(TOPICS)]} note {i}" for i in range(n)]


@pytest.fixture
def chat():
    with LoopbackRerankServer(api_key=KEY, dialect="openai-chat") as server:
        yield server


def make(server, **options) -> LLMReranker:
    options.setdefault("model", "fake-chat")
    options.setdefault("api_key", KEY)
    options.setdefault("base_url", server.url)
    options.setdefault("backoff_base", 0.001)
    options.setdefault("backoff_cap", 0.01)
    options.setdefault("timeout", (2.0, 5.0))
    return rerankpd.get_reranker("llm", **options)


def expected_pointwise(query: str, document: str) -> float:
    p = min(0.98, max(0.02, overlap_score(query, document)))
    return math.log(p / (1 - p))


def expected_listwise(query: str, documents: list[str], window: int = 20, step: int = 10) -> list[int]:
    """RankGPT's sliding windows over the fake's overlap order, written out independently: the final order."""
    order = list(range(len(documents)))
    if len(documents) < 2:
        return order
    start = max(len(documents) - window, 0)
    while True:
        part = order[start : start + window]
        order[start : start + window] = sorted(part, key=lambda i: (-overlap_score(query, documents[i]), part.index(i)))
        if start == 0:
            return order
        start = max(start - step, 0)


def ranked_index(out: pd.DataFrame) -> list:
    return out.index.tolist()


# ------------------------------------------------------------------------------------------ configuration
def test_model_is_required_and_named_in_the_error(chat):
    with pytest.raises(ConfigurationError, match="model="):
        rerankpd.get_reranker("llm", api_key=KEY, base_url=chat.url)
    with pytest.raises(ConfigurationError, match="model="):
        rerankpd.get_reranker("llm", model="  ", api_key=KEY)


def test_options_are_checked_where_they_are_set():
    with pytest.raises(ConfigurationError, match="mode"):
        LLMReranker(model="m", api_key=KEY, mode="pairwise")
    with pytest.raises(ConfigurationError, match="top_logprobs"):
        LLMReranker(model="m", api_key=KEY, top_logprobs=21)
    with pytest.raises(ConfigurationError, match="batch_size"):
        LLMReranker(model="m", api_key=KEY, batch_size=8)
    with pytest.raises(ConfigurationError, match=r"prompt must use the placeholders .*lacks \{document\}"):
        LLMReranker(model="m", api_key=KEY, prompt="Is this about {query}?")
    with pytest.raises(ConfigurationError, match=r"prompt may use only .*\{doc\}"):
        LLMReranker(model="m", api_key=KEY, prompt="{query} {document} {doc}")
    with pytest.raises(ConfigurationError, match="prompt must use"):
        LLMReranker(model="m", api_key=KEY, mode="listwise", prompt=POINTWISE_PROMPT)
    with pytest.raises(ConfigurationError, match="step"):
        LLMReranker(model="m", api_key=KEY, mode="listwise", window=10, step=10)
    with pytest.raises(ConfigurationError, match="window_cache"):
        LLMReranker(model="m", api_key=KEY, window_cache=3)


def test_the_dmxapi_key_goes_only_to_dmxapi(monkeypatch, chat):
    monkeypatch.setenv("DMXAPI_API_KEY", KEY)
    assert LLMReranker(model="m").has_key  # DMXAPI's own host: its key
    elsewhere = LLMReranker(model="m", base_url=chat.url)  # another host: no key unless api_key= is given
    assert not elsewhere.has_key
    assert KEY not in repr(LLMReranker(model="m")) and "***" in repr(LLMReranker(model="m"))
    with LoopbackRerankServer(dialect="openai-chat") as open_server:  # a self-hosted server without a key
        r = make(open_server, api_key=None)
        r.score(QUERY, ["wash hands"])
        assert "Authorization" not in open_server.requests[0].headers


def test_declares_kind_and_planning_attributes():
    point = LLMReranker(model="m", api_key=KEY)
    lists = LLMReranker(model="m", api_key=KEY, mode="listwise")
    from rerankpd.rerankers.base import describe

    p, listwise = describe(point), describe(lists)
    assert (p.kind, p.pairwise, p.batch_size, p.cacheable) == ("llm", True, 1, True)
    assert (listwise.kind, listwise.pairwise, listwise.batch_size, listwise.cacheable) == ("llm", False, None, False)
    assert p.identity != listwise.identity
    assert (
        describe(LLMReranker(model="m", api_key=KEY, prompt="{query} / {document}? yes or no")).identity != p.identity
    )


# ------------------------------------------------------------------------------------------ the request body
def test_pointwise_request_body_follows_the_chat_completions_reference(chat):
    make(chat).score(QUERY, ["Wash your hands\n\n often."])
    (request,) = chat.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    body = request.body
    assert body == {
        "model": "fake-chat",
        "messages": [
            {"role": "system", "content": body["messages"][0]["content"]},
            {
                "role": "user",
                "content": POINTWISE_PROMPT.format(
                    query=f"<query>{QUERY}</query>", document="<document>Wash your hands often.</document>"
                ),
            },
        ],
        "max_tokens": 1,
        "temperature": 0,
        "logprobs": True,
        "top_logprobs": 5,
    }
    assert "yes or no" in body["messages"][1]["content"]


def test_listwise_request_body_numbers_the_window_and_bounds_the_answer(chat):
    make(chat, mode="listwise").score(QUERY, ["alpha text", "beta text", "gamma text"])
    (request,) = chat.requests
    body = request.body
    assert set(body) == {"model", "messages", "max_tokens", "temperature"}
    assert body["temperature"] == 0 and body["max_tokens"] == 5 * 3 + 20
    assert body["messages"][1]["content"] == LISTWISE_PROMPT.format(
        count=3,
        query=f"<query>{QUERY}</query>",
        passages="[1] <passage>alpha text</passage>\n[2] <passage>beta text</passage>\n"
        "[3] <passage>gamma text</passage>",
    )


def test_max_completion_tokens_replaces_max_tokens_when_asked(chat):
    make(chat, token_limit_field="max_completion_tokens").score(QUERY, ["a"])
    body = chat.requests[0].body
    assert body["max_completion_tokens"] == 1 and "max_tokens" not in body


@pytest.mark.parametrize(
    "change, words",
    [
        ({"stream_options": {}}, "Unrecognized request argument supplied: stream_options"),
        ({"top_logprobs": 21}, "between 0 and 20"),
        ({"logprobs": False}, "logprobs must be set to true"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_completion_tokens": 1}, "not both"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "role"),
        ({"model": ""}, "model"),
    ],
)
def test_the_fake_server_holds_requests_to_the_reference(chat, change, words):
    body = make(chat).build_payload(QUERY, ["doc"])
    body.update(change)
    response = requests.post(
        chat.url + "/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=5
    )
    assert response.status_code == 400
    assert words in response.json()["error"]["message"]


def test_a_refused_request_is_a_bad_request_error_with_the_providers_words(chat):
    chat.fail_next("status", status=400, message="model fake-chat does not exist")
    with pytest.raises(BadRequestError, match="does not exist"):
        make(chat, scoring="logprobs").score(QUERY, ["doc"])
    with pytest.raises(AuthenticationError):
        make(chat, api_key="sk-wrong").score(QUERY, ["doc"])


# ------------------------------------------------------------------------------------------ pointwise
def test_yes_no_score_folds_case_and_whitespace_and_adds_variants():
    alts = [
        {"token": "Yes", "logprob": math.log(0.3)},
        {"token": " yes ", "logprob": math.log(0.1)},
        {"token": "NO", "logprob": math.log(0.2)},
        {"token": "Maybe", "logprob": math.log(0.05)},
    ]
    assert yes_no_score(alts) == pytest.approx(math.log(0.4 / 0.2))
    # "no" absent: taken as the lowest returned logprob minus one nat
    only_yes = [{"token": "yes", "logprob": -0.2}, {"token": "The", "logprob": -4.0}]
    assert yes_no_score(only_yes) == pytest.approx(-0.2 - (-4.0 - 1.0))
    assert yes_no_score([{"token": "是", "logprob": -0.1}, {"token": "否", "logprob": -2.5}]) == pytest.approx(2.4)
    assert yes_no_score([{"token": "Sure", "logprob": -0.1}]) is None
    assert yes_no_score([]) is None


def test_alternatives_are_read_from_the_reference_shape_and_the_legacy_one():
    from rerankpd.rerankers.llm.reranker import _first_token_alternatives

    chosen = {
        "token": "Yes",
        "logprob": -0.2,
        "top_logprobs": [{"token": "Yes", "logprob": -0.2}, {"token": "No", "logprob": -1.8}],
    }
    assert _first_token_alternatives({"content": [chosen]}) == chosen["top_logprobs"]
    legacy = {"token": "no", "logprob": -0.1, "top_logprobs": {"no": -0.1, "yes": -2.5}}
    assert yes_no_score(_first_token_alternatives({"content": [legacy]})) == pytest.approx(-2.4)
    bare = {"token": "yes", "logprob": -0.3}  # top_logprobs=0: the chosen token alone
    assert _first_token_alternatives({"content": [bare]}) == [{"token": "yes", "logprob": -0.3}]
    assert _first_token_alternatives(None) is None and _first_token_alternatives({"content": None}) is None
    assert _first_token_alternatives({"content": []}) == []


def test_pointwise_scores_are_the_log_odds_of_yes(chat):
    docs = corpus(6)
    scores = make(chat).score(QUERY, docs)
    assert scores == pytest.approx([expected_pointwise(QUERY, d) for d in docs])


def test_pointwise_sends_exactly_one_request_per_pair_minus_cache_hits(chat, tmp_path):
    docs = corpus(100)
    df = pd.DataFrame({"text": docs})
    r = make(chat)
    out = df.rerank(QUERY, reranker=r, cache=tmp_path, progress=False)
    assert len(chat.requests) == 100
    info = out.attrs["rerank"]
    assert info["usage"]["scored_by_logprobs"] == 100 and info["usage"]["scored_by_grade"] == 0
    assert info["usage"]["chat_requests"] == info["requests"] == 100
    want = sorted(range(100), key=lambda i: -expected_pointwise(QUERY, docs[i]))
    assert out["rerank_score"].tolist() == pytest.approx([expected_pointwise(QUERY, docs[i]) for i in out.index])
    assert set(ranked_index(out)[:10]) == set(want[:10])
    chat.reset()
    more = pd.DataFrame({"text": docs[:70] + [f"fresh note {i} on colds" for i in range(30)]})
    again = more.rerank(QUERY, reranker=r, cache=tmp_path, progress=False)
    assert len(chat.requests) == 30 and again.attrs["rerank"]["from_cache"] == 70
    assert again.attrs["rerank"]["requests"] == 30


def test_chinese_query_and_documents(chat):
    docs = ["今天股市大跌", "预防感冒应勤洗手、戴口罩", "感冒药的价格"]
    query = "如何预防感冒"
    out = pd.DataFrame({"text": docs}).rerank(query, reranker=make(chat), cache=False, progress=False)
    expected = {i: expected_pointwise(query, d) for i, d in enumerate(docs)}
    assert ranked_index(out) == sorted(expected, key=lambda i: (-expected[i], i)) and ranked_index(out)[0] == 1
    assert out["rerank_score"].tolist() == pytest.approx([expected[i] for i in out.index])
    assert out["rerank_rank"].tolist() == [1, 2, 3]


def test_long_documents_are_cut_and_counted(chat):
    long = " ".join(f"word{i}" for i in range(400))
    out = pd.DataFrame({"text": [long, "short text"]}).rerank(
        QUERY, reranker=make(chat, max_doc_tokens=50), cache=False, progress=False
    )
    assert out.attrs["rerank"]["usage"]["documents_cut"] == 1
    sent = [r.body["messages"][1]["content"] for r in chat.requests]
    assert any(cut_document(long, 50)[0] in s and "word50" not in s for s in sent)
    assert cut_document("预防感冒应勤洗手", 3) == ("预防感", True)


def test_without_logprobs_the_grade_is_asked_and_reported(tmp_path):
    from rerankpd.testing.chat import FakeChatModel, OpenAIChatDialect

    docs = corpus(8)
    dialect = OpenAIChatDialect(FakeChatModel(logprobs=False))
    with LoopbackRerankServer(api_key=KEY, dialect=dialect) as server:
        with pytest.warns(RuntimeWarning, match="no logprobs.*0-10 grade"):
            out = pd.DataFrame({"text": docs}).rerank(
                QUERY, reranker=make(server, max_concurrency=1), cache=False, progress=False
            )
        usage = out.attrs["rerank"]["usage"]
        assert (usage["scored_by_logprobs"], usage["scored_by_grade"]) == (0, 8)
        assert len(server.requests) == usage["chat_requests"] == 8 + 1  # the first pair asked twice
        assert GRADE_PROMPT.split("{document}")[1][:30] in server.requests[-1].body["messages"][1]["content"]
        assert "logprobs" not in server.requests[-1].body
        grades = [round(10 * min(0.98, max(0.02, overlap_score(QUERY, d)))) for d in docs]
        assert out.sort_index()["rerank_score"].tolist() == pytest.approx([grade_score(g) for g in grades])


def test_strict_logprobs_scoring_fails_without_them():
    from rerankpd.testing.chat import FakeChatModel, OpenAIChatDialect

    with LoopbackRerankServer(api_key=KEY, dialect=OpenAIChatDialect(FakeChatModel(logprobs=False))) as server:
        with pytest.raises(BadResponseError, match="no logprobs"):
            make(server, scoring="logprobs", max_retries=0).score(QUERY, ["doc"])


def test_a_400_refusing_logprobs_switches_to_the_grade(chat):
    chat.fail_next("status", status=400, message="This model does not support logprobs")
    with pytest.warns(RuntimeWarning, match="refused logprobs"):
        result = make(chat).score_batch(QUERY, [TOPICS[0]])
    assert result.usage["scored_by_grade"] == 1
    assert [r.body.get("logprobs") for r in chat.requests] == [True, None]


def test_an_unclear_first_token_gets_a_grade_for_that_pair_only(chat):
    chat.dialect.model.malform_next("unclear")
    r = make(chat, max_concurrency=1)
    first = r.score_batch(QUERY, [TOPICS[0]])
    second = r.score_batch(QUERY, [TOPICS[1]])
    assert first.usage["scored_by_grade"] == 1 and second.usage["scored_by_logprobs"] == 1


def test_grades_are_read_from_the_answer_text():
    assert [parse_grade(t) for t in ("7", " 10 ", "Grade: 3/10", "<think>maybe 9</think>4", "n/a", "12", "-")] == [
        7.0,
        10.0,
        3.0,
        4.0,
        None,
        None,
        None,
    ]
    assert grade_score(0) < grade_score(5) == 0.0 < grade_score(10)


# ------------------------------------------------------------------------------------------ listwise
def test_window_plan_from_the_bottom_up():
    assert window_starts(100, 20, 10) == [80, 70, 60, 50, 40, 30, 20, 10, 0]
    for n in (2, 20, 21, 29, 30, 31, 100, 101, 250):
        assert len(window_starts(n, 20, 10)) == (1 if n <= 20 else math.ceil((n - 20) / 10) + 1)


def test_listwise_sends_exactly_nine_requests_for_100_candidates(chat):
    docs = corpus(100)
    out = pd.DataFrame({"text": docs}).rerank(QUERY, reranker=make(chat, mode="listwise"), cache=False, progress=False)
    assert len(chat.requests) == math.ceil((100 - 20) / 10) + 1 == 9
    want = expected_listwise(QUERY, docs)
    assert ranked_index(out) == want
    assert out.loc[want, "rerank_score"].tolist() == [float(100 - i) for i in range(100)]
    usage = out.attrs["rerank"]["usage"]
    assert (usage["windows"], usage["windows_repaired"], usage["windows_failed"]) == (9, 0, 0)
    assert usage["chat_requests"] == out.attrs["rerank"]["requests"] == 9  # not the one score() call
    assert [len(re.findall(r"^\[\d+\] ", r.body["messages"][1]["content"], re.M)) for r in chat.requests] == [20] * 9


def test_listwise_with_a_query_per_row_ranks_each_query_on_its_own(chat):
    queries = [QUERY, "beef stew recipe"]
    docs = corpus(25)
    df = pd.DataFrame({"q": [q for q in queries for _ in docs], "text": docs * 2})
    out = df.rerank(
        query_column="q", reranker=make(chat, mode="listwise", max_concurrency=2), cache=False, progress=False
    )
    assert len(chat.requests) == 2 * 2  # two windows per query
    for k, q in enumerate(queries):
        rows = out[out["q"] == q]
        assert [i - 25 * k for i in rows.index] == expected_listwise(q, docs)
        assert sorted(rows["rerank_score"]) == [float(s) for s in range(1, 26)]


@pytest.mark.parametrize("kind", ["unknown", "repeat", "missing", "garbage"])
def test_every_malformed_ranking_is_repaired_and_counted(chat, kind):
    docs = ["stock prices", "wash hands to prevent a cold", "recipe", "prevent a cold"]
    model_order = sorted(range(4), key=lambda i: (-overlap_score(QUERY, docs[i]), i))  # [1, 3, ...]
    chat.dialect.model.malform_next(kind)
    result = make(chat, mode="listwise").score_batch(QUERY, docs)
    assert result.usage["windows_repaired"] == 1
    final = sorted(range(4), key=lambda i: -result.scores[i])
    if kind in ("unknown", "repeat"):  # the valid ids, in the model's order
        assert final == model_order
    elif kind == "missing":  # the model's best was left out: appended in its previous place
        assert final == model_order[1:] + model_order[:1]
    else:  # nothing usable: the window keeps its order
        assert final == [0, 1, 2, 3]


def test_parse_permutation_repairs_each_kind():
    assert parse_permutation("[3] > [1] > [2]", 3) == ([2, 0, 1], [])
    assert parse_permutation("[3] > [7] > [1] > [2]", 3) == ([2, 0, 1], ["unknown id 7"])
    assert parse_permutation("[3] > [3] > [1] > [2]", 3) == ([2, 0, 1], ["repeated id 3"])
    assert parse_permutation("[3] > [1]", 4) == ([2, 0, 1, 3], ["missing 2 id(s)"])
    assert parse_permutation("3 > 1 > 2", 3) == ([2, 0, 1], [])  # no brackets: the numbers
    assert parse_permutation("no idea", 2) == ([0, 1], ["no ids in the answer", "missing 2 id(s)"])
    assert parse_permutation("<think>[1] first?</think>[2] > [1]", 2) == ([1, 0], [])


def test_a_window_that_fails_after_retries_keeps_its_order_and_is_reported(chat):
    docs = corpus(30)  # two windows: 10-29, then 0-19
    chat.fail_on_request(2, "500")
    chat.fail_on_request(3, "503")
    r = make(chat, mode="listwise", max_retries=1)
    with pytest.warns(RuntimeWarning, match="1 of 2 listwise windows failed"):
        out = pd.DataFrame({"text": docs}).rerank(QUERY, reranker=r, cache=False, progress=False)
    assert out.attrs["rerank"]["usage"]["windows_failed"] == 1
    first = sorted(range(10, 30), key=lambda i: (-overlap_score(QUERY, docs[i]), i))
    assert ranked_index(out) == list(range(10)) + first  # the top window kept the order it had


def test_when_every_window_fails_the_query_fails(chat):
    chat.fail_next("500", count=10)
    out = pd.DataFrame({"text": corpus(5)}).rerank(
        QUERY, reranker=make(chat, mode="listwise", max_retries=1), cache=False, progress=False, errors="coerce"
    )
    assert out["rerank_score"].isna().all() and out["rerank_error"].str.contains("500").all()


def test_an_authentication_failure_in_a_window_is_not_swallowed(chat):
    with pytest.raises(AuthenticationError):
        make(chat, mode="listwise", api_key="sk-wrong").score(QUERY, corpus(30))


def test_cancel_stops_between_windows(chat):
    import threading

    from rerankpd.errors import RunCancelled

    r = make(chat, mode="listwise")
    event = threading.Event()
    event.set()
    r.bind_cancel(event)
    with pytest.raises(RunCancelled):
        r.score(QUERY, corpus(30))
    assert chat.requests == []


def test_windows_are_cached_on_their_content(chat, tmp_path):
    docs = corpus(100)
    df = pd.DataFrame({"text": docs})
    first = df.rerank(QUERY, reranker=make(chat, mode="listwise", window_cache=tmp_path), progress=False)
    chat.reset()
    again = df.rerank(QUERY, reranker=make(chat, mode="listwise", window_cache=tmp_path), progress=False)
    assert len(chat.requests) == 0 and again.attrs["rerank"]["usage"]["windows_cached"] == 9
    assert again.attrs["rerank"]["usage"]["chat_requests"] == again.attrs["rerank"]["requests"] == 0
    assert ranked_index(again) == ranked_index(first)
    chat.reset()
    df.rerank("another query about colds", reranker=make(chat, mode="listwise", window_cache=tmp_path), progress=False)
    assert len(chat.requests) == 9  # another query: other windows
    chat.reset()
    make(chat, mode="listwise", window_cache=False).score(QUERY, docs)
    assert len(chat.requests) == 9


def test_cache_false_reads_and_writes_no_window_cache(chat, tmp_path):
    """rerank(cache=False), and evaluate(cache=False), read and write no window answer, whatever
    window_cache says; window_cache=True follows the run's cache= (the default directory here)."""
    docs = corpus(100)
    df = pd.DataFrame({"text": docs})
    default = tmp_path / "cache"  # RERANKPD_CACHE_DIR (conftest)
    for window_cache in (True, tmp_path / "windows"):
        r = make(chat, mode="listwise", window_cache=window_cache)
        df.rerank(QUERY, reranker=r, cache=False, progress=False)
        assert not default.exists() and not (tmp_path / "windows").exists()
    df.rerank(QUERY, reranker=make(chat, mode="listwise"), progress=False)  # cache=True: windows kept
    assert rerankpd.cache_info(default)["kinds"]["windows"] == 9
    chat.reset()
    r = make(chat, mode="listwise")
    out = df.rerank(QUERY, reranker=r, cache=False, progress=False)
    assert len(chat.requests) == 9 and out.attrs["rerank"]["usage"]["windows_cached"] == 0  # nothing read
    chat.reset()
    labelled = df.assign(q=QUERY, label=[1] + [0] * 99)
    rerankpd.evaluate(
        labelled, query_column="q", label_column="label", rerankers={"llm": r}, cache=False, progress=False
    )
    assert len(chat.requests) == 9
    chat.reset()
    df.rerank(QUERY, reranker=r, cache=tmp_path / "mine", progress=False)  # window_cache=True: the run's cache=
    assert len(chat.requests) == 9 and rerankpd.cache_info(tmp_path / "mine")["kinds"]["windows"] == 9
    r.close()


def test_window_answers_are_key_value_entries_of_the_cache(chat, tmp_path):
    from rerankpd.cache.windows import WindowCache

    docs = corpus(30)
    r = make(chat, mode="listwise", window_cache=tmp_path)
    scores = r.score(QUERY, docs)
    r.close()
    info = rerankpd.cache_info(tmp_path)
    assert info["kinds"] == {"scores": 0, "embeddings": 0, "windows": 2} and info["entries"] == 2
    windows = WindowCache.open(tmp_path, "another identity")
    assert windows.get(QUERY, docs[:20]) is None  # keyed on the reranker's identity too
    windows.close()
    assert rerankpd.clear_cache(tmp_path, reranker="llm") == 2
    chat.reset()
    again = make(chat, mode="listwise", window_cache=tmp_path)
    assert again.score(QUERY, docs) == scores and len(chat.requests) == 2
    again.close()


def test_estimate_names_the_llm_mode(chat):
    df = pd.DataFrame({"text": corpus(30)})
    for mode in ("pointwise", "listwise"):
        est = rerankpd.estimate(df, QUERY, reranker=make(chat, mode=mode), cache=False)
        assert est.mode == mode and f"(fake-chat, {mode})" in str(est)
    assert rerankpd.estimate(df, QUERY, reranker="bm25", cache=False).mode is None


def test_an_unusable_window_cache_warns_and_ranks_without_it(chat, tmp_path):
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("x")
    docs = corpus(30)
    with pytest.warns(RuntimeWarning, match="window cache could not be opened"):
        scores = make(chat, mode="listwise", window_cache=not_a_directory).score(QUERY, docs)
    assert len(chat.requests) == 2
    assert sorted(range(30), key=lambda i: -scores[i]) == expected_listwise(QUERY, docs)


def test_a_repaired_window_is_not_cached(chat, tmp_path):
    docs = corpus(5)
    chat.dialect.model.malform_next("garbage")
    make(chat, mode="listwise", window_cache=tmp_path).score(QUERY, docs)
    make(chat, mode="listwise", window_cache=tmp_path).score(QUERY, docs)
    assert len(chat.requests) == 2


# ------------------------------------------------------------------------------------------ estimate
@pytest.mark.parametrize("mode", ["pointwise", "listwise"])
def test_estimate_matches_the_requests_sent_and_the_tokens_counted(chat, mode):
    docs = corpus(100) + ["预防感冒应勤洗手、戴口罩，保持室内通风" * 3, " ".join(["long"] * 500)]
    df = pd.DataFrame({"text": docs})
    r = make(chat, mode=mode)
    est = rerankpd.estimate(df, QUERY, reranker=r, cache=False)
    assert chat.requests == []  # nothing sent by the estimate
    out = df.rerank(QUERY, reranker=r, cache=False, progress=False)
    assert est.requests == len(chat.requests) == (102 if mode == "pointwise" else 10)
    counted = out.attrs["rerank"]["usage"]["prompt_tokens"]  # as the fake server counted them
    assert abs(est.approx_tokens - counted) <= 0.10 * counted


# ------------------------------------------------------------------------------------------ chaos
@pytest.mark.parametrize("mode", ["pointwise", "listwise"])
def test_thirty_percent_faults_give_the_clean_result(mode):
    docs = corpus(60)
    df = pd.DataFrame({"text": docs})
    with LoopbackRerankServer(api_key=KEY, dialect="openai-chat") as clean:
        want = df.rerank(QUERY, reranker=make(clean, mode=mode), cache=False, progress=False)
    kinds = ("429", "500", "502", "503", "html", "truncated", "missing_index", "drop")
    with LoopbackRerankServer(api_key=KEY, dialect="openai-chat", fault_rate=0.3, fault_kinds=kinds, seed=7) as flaky:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no window failed, nothing fell back
            got = df.rerank(QUERY, reranker=make(flaky, mode=mode, max_retries=12), cache=False, progress=False)
        assert flaky.faults_served >= 5
    assert ranked_index(got) == ranked_index(want)
    assert got["rerank_score"].tolist() == pytest.approx(want["rerank_score"].tolist())


# ------------------------------------------------------------------------------------------ dask
def test_dask_refuses_the_listwise_mode_and_takes_the_pointwise_one():
    import dask.dataframe as dd

    import rerankpd.dask

    ddf = dd.from_pandas(pd.DataFrame({"text": corpus(6)}), npartitions=2)
    with pytest.raises(ConfigurationError, match="cannot be split across partitions"):
        rerankpd.dask.with_scores(ddf, QUERY, reranker="llm", reranker_options={"model": "m", "mode": "listwise"})
    lazy = rerankpd.dask.with_scores(ddf, QUERY, reranker="llm", reranker_options={"model": "m"})  # nothing sent
    assert isinstance(lazy, dd.DataFrame) and lazy.npartitions == 2
    assert list(lazy.columns) == ["text", "rerank_score"] and lazy["rerank_score"].dtype == "float64"


# ------------------------------------------------------------------ reasoning models (o-series, GPT-5)
def _reasoning_server(thinking=300):
    from rerankpd.testing.chat import FakeChatModel, OpenAIChatDialect

    return LoopbackRerankServer(dialect=OpenAIChatDialect(FakeChatModel(reasoning_tokens=thinking)))


@pytest.mark.parametrize("model", ["o3-mini", "gpt-5-mini", "openai/o4-mini"])
def test_reasoning_models_run_without_temperature_and_with_room_to_think(model):
    with _reasoning_server() as server:
        reranker = rerankpd.get_reranker("llm", model=model, base_url=server.url)
        scores = reranker.score("prevent a cold", ["wash hands to prevent a cold", "stock prices"])
        body = server.requests[-1].body
    assert scores[0] > scores[1]
    assert "temperature" not in body and "max_tokens" not in body and "logprobs" not in body
    assert body["max_completion_tokens"] >= 1024
    assert reranker.identity()["reasoning"] is True


def test_temperature_can_be_left_out_or_set():
    with _reasoning_server(thinking=0) as server:  # refuses temperature 0 like a reasoning model
        reranker = rerankpd.get_reranker(
            "llm",
            model="some-model",
            base_url=server.url,
            temperature=None,
            scoring="grade",
            token_limit_field="max_completion_tokens",
        )
        reranker.score("q", ["a"])
        assert "temperature" not in server.requests[-1].body
    body = rerankpd.get_reranker("llm", model="m", api_key="k", temperature=0.3).build_payload("q", ["a"])
    assert body["temperature"] == 0.3
    assert rerankpd.get_reranker("llm", model="m", api_key="k").build_payload("q", ["a"])["temperature"] == 0
    with pytest.raises(ConfigurationError, match="temperature"):
        rerankpd.get_reranker("llm", model="m", api_key="k", temperature=3)


def test_an_answer_cut_by_its_budget_names_finish_reason_and_answer_tokens():
    with _reasoning_server(thinking=300) as server:
        reranker = rerankpd.get_reranker("llm", model="o3-mini", base_url=server.url, answer_tokens=100, max_retries=0)
        with pytest.raises(BadResponseError) as info:
            reranker.score("q", ["a"])
    assert "finish_reason: length" in str(info.value) and "answer_tokens=" in str(info.value)
    assert "cut at 100 tokens" in str(info.value)


def test_a_reasoning_model_the_name_does_not_reveal_is_told_by_reasoning_true():
    with _reasoning_server(thinking=300) as server:
        plain = rerankpd.get_reranker("llm", model="deep-thinker", base_url=server.url, max_retries=0)
        with pytest.raises(BadRequestError, match="temperature"):
            plain.score("q", ["a"])
        told = rerankpd.get_reranker("llm", model="deep-thinker", base_url=server.url, reasoning=True)
        assert len(told.score("q", ["a cold", "b"])) == 2


def test_listwise_reasoning_budget_and_cut_windows():
    docs = [f"doc {i} about colds" for i in range(5)]
    with _reasoning_server(thinking=300) as server:
        ranked = rerankpd.get_reranker("llm", model="gpt-5", base_url=server.url, mode="listwise", window_cache=False)
        assert len(ranked.score_batch("colds", docs).scores) == 5
        cut = rerankpd.get_reranker(
            "llm",
            model="gpt-5",
            base_url=server.url,
            mode="listwise",
            answer_tokens=50,
            window_cache=False,
            max_retries=0,
        )
        with pytest.raises(BadResponseError, match="finish_reason: length"):
            cut.score_batch("colds", docs)
