"""The shared HTTP client's retry policy and failure handling, against a real loopback server.

Moved here from test_dmxapi.py (the policy is every provider's, not DMXAPI's), plus what issue 9 asked
for: a total deadline per attempt, waits that wake on cancel, malformed answers retried as
BadResponseError, options checked at construction, attempts counted, interrupts that cannot break the
reranker.
"""

from __future__ import annotations

import logging
import threading
import time

import pytest
import requests

import rerankpd
from rerankpd import errors
from rerankpd.rerankers.http.client import backoff_delay, parse_retry_after, scores_from_results, should_retry
from rerankpd.testing import LoopbackRerankServer
from tests.conftest import API_KEY


# ----------------------------------------------------------------------- retries
def test_429_with_retry_after_is_retried_and_honoured(dmxapi, server):
    server.fail_next("429", retry_after="0.3")
    t0 = time.perf_counter()
    scores = dmxapi().score("q", ["a", "b"])
    assert time.perf_counter() - t0 >= 0.3
    assert len(scores) == 2 and len(server.requests) == 2


@pytest.mark.parametrize("kind", ["500", "502", "503", "html", "truncated", "missing_index", "drop"])
def test_transient_faults_are_retried(dmxapi, server, kind):
    server.fail_next(kind, count=2)
    assert dmxapi(max_retries=3).score("cold", ["cold", "hot"]) == pytest.approx(
        [server.score_fn("cold", "cold"), server.score_fn("cold", "hot")]
    )
    assert len(server.requests) == 3


def test_stall_past_read_timeout_is_retried(dmxapi, server):
    server.fail_next("stall", stall_seconds=1.0)
    assert len(dmxapi(timeout=(1.0, 0.3)).score("q", ["a"])) == 1
    assert len(server.requests) == 2


@pytest.mark.parametrize(
    "status,error",
    [
        (400, errors.BadRequestError),
        (404, errors.BadRequestError),
        (422, errors.BadRequestError),
        (403, errors.AuthenticationError),
    ],
)
def test_client_errors_are_not_retried(dmxapi, server, status, error):
    server.fail_next("status", status=status, message="nope: bad thing")
    with pytest.raises(error) as info:
        dmxapi().score("q", ["a"])
    assert info.value.status_code == status
    assert "nope: bad thing" in str(info.value)
    assert len(server.requests) == 1


def test_401_says_quota_and_never_leaks_the_key(dmxapi, server, caplog):
    bad = "sk-wrong-key-123456"
    caplog.set_level(logging.DEBUG)
    with pytest.raises(errors.AuthenticationError) as info:
        dmxapi(api_key=bad).score("q", ["a"])
    assert info.value.status_code == 401
    assert "quota" in str(info.value) and "api_key=" in str(info.value)  # where this key came from
    assert "invalid api key" in str(info.value)  # the provider's own message
    assert len(server.requests) == 1
    echoed = requests.post(
        server.url + "/rerank",
        json={"model": "m", "query": "q", "documents": ["a"]},
        headers={"Authorization": f"Bearer {bad}"},
        timeout=5,
    )
    assert echoed.status_code == 401 and bad in echoed.text  # the server does quote the key back
    text = str(info.value) + repr(info.value) + caplog.text + repr(dmxapi(api_key=bad))
    assert bad not in text


def test_retries_exhausted_raise_with_status(dmxapi, server):
    server.fail_next("503", count=10)
    with pytest.raises(errors.ServerError) as info:
        dmxapi(max_retries=2).score("q", ["a"])
    assert info.value.status_code == 503 and len(server.requests) == 3


def test_rate_limit_exhausted(dmxapi, server):
    server.fail_next("429", count=10, retry_after="0")
    with pytest.raises(errors.RateLimitError):
        dmxapi(max_retries=1).score("q", ["a"])


def test_connection_refused_is_a_connection_error(dmxapi):
    r = dmxapi(base_url="http://127.0.0.1:9/v1", max_retries=1)
    with pytest.raises(errors.APIConnectionError):
        r.score("q", ["a"])


def test_timeout_is_a_timeout_error(dmxapi, server):
    server.fail_next("stall", count=5, stall_seconds=0.6)
    with pytest.raises(errors.APITimeoutError):
        dmxapi(timeout=(1.0, 0.2), max_retries=1).score("q", ["a"])


def test_retry_policy_functions():
    assert [should_retry(s) for s in (408, 409, 429, 500, 599)] == [True] * 5
    assert [should_retry(s) for s in (200, 400, 401, 403, 404, 422)] == [False] * 6
    assert parse_retry_after("5", cap=2.0) == 2.0
    assert parse_retry_after("-3", cap=2.0) == 0.0
    assert parse_retry_after("soon", cap=2.0) is None
    assert parse_retry_after(None, cap=2.0) is None
    # the date is 1445412480: ten seconds after `now`, cut to the cap when the cap is lower
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", cap=60.0, now=1445412470.0) == 10.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", cap=9.0, now=1445412470.0) == 9.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", cap=60.0, now=1445412490.0) == 0.0
    assert backoff_delay(10, base=0.5, cap=4.0, rng=lambda: 1.0) == 4.0
    assert backoff_delay(1, base=0.5, cap=4.0, rng=lambda: 0.5) == 0.5


def test_incomplete_or_duplicate_results_are_rejected():
    with pytest.raises(errors.BadResponseError, match="without a score"):
        scores_from_results([{"index": 0, "relevance_score": 1.0}], 2)
    with pytest.raises(errors.BadResponseError, match="twice"):
        scores_from_results([{"index": 0, "relevance_score": 1.0}] * 2, 2)
    with pytest.raises(errors.BadResponseError, match="not one of"):
        scores_from_results([{"index": 5, "relevance_score": 1.0}], 2)
    with pytest.raises(errors.BadResponseError, match="numeric"):
        scores_from_results([{"index": 0, "relevance_score": "high"}], 1)


def test_invalid_url_is_not_retried_and_says_why(dmxapi):
    r = dmxapi(base_url="https://exa mple.com/v1", max_retries=3, backoff_base=1.0)
    t0 = time.perf_counter()
    with pytest.raises(errors.ConfigurationError, match="InvalidURL"):
        r.score("q", ["a"])
    assert time.perf_counter() - t0 < 0.5


def test_retry_after_zero_still_backs_off(dmxapi, server, fake_clock):
    server.fail_next("429", count=3, retry_after="0")
    r = dmxapi(backoff_base=0.2, backoff_cap=10, max_retries=3, clock=fake_clock, sleep=fake_clock.sleep)
    r.score("q", ["a"])
    assert len(server.requests) == 4 and len(fake_clock.slept) == 3
    # the backoff of retries 1, 2, 3: between half and all of 0.2, 0.4, 0.8 seconds
    for wait, full in zip(fake_clock.slept, (0.2, 0.4, 0.8)):
        assert full / 2 <= wait <= full


def test_retry_after_is_waited_as_given_with_fractions(dmxapi, server, fake_clock):
    server.fail_next("429", retry_after="0.25")
    server.fail_next("429", retry_after="1.5")
    r = dmxapi(clock=fake_clock, sleep=fake_clock.sleep, backoff_base=4, backoff_cap=4)
    r.score("q", ["a"])
    assert fake_clock.slept == [0.25, 1.5]  # the server's words, not rounded, no jitter added


def test_each_reranker_caps_retry_after_at_its_own_retry_after_cap(dmxapi, server, fake_clock):
    server.fail_next("429", retry_after="7200")
    r = dmxapi(clock=fake_clock, sleep=fake_clock.sleep, retry_after_cap=12.5)
    r.score("q", ["a"])
    assert fake_clock.slept == [12.5]
    assert r.rate_limiter._paused_until == pytest.approx(1000 + 12.5)  # the shared pause is capped too
    server.fail_next("429", retry_after="7200")
    jina = rerankpd.get_reranker("jina", api_key=API_KEY, base_url=server.url, clock=fake_clock, sleep=fake_clock.sleep)
    fake_clock.slept.clear()
    jina.score("q", ["a"])  # another service, its default cap
    assert fake_clock.slept == [60.0]


def test_dropped_connections_and_502_503_are_retried_quickly(dmxapi, server, fake_clock):
    server.fail_next("drop")
    server.fail_next("502")
    server.fail_next("503")
    server.fail_next("500")
    r = dmxapi(clock=fake_clock, sleep=fake_clock.sleep, backoff_base=0.5, backoff_cap=20)
    r.score("q", ["a"])
    quick = [0.1, 0.2, 0.4]  # a fifth of backoff_base, doubling with each failure of the same request
    for wait, full in zip(fake_clock.slept[:3], quick):
        assert full / 2 <= wait <= full
    assert 0.5 * 8 / 2 <= fake_clock.slept[3] <= 0.5 * 8  # a 500 (4th failure): the normal backoff
    assert len(fake_clock.slept) == 4


def test_the_wait_grows_only_with_failures_of_the_same_request(dmxapi, server, fake_clock):
    r = dmxapi(clock=fake_clock, sleep=fake_clock.sleep, backoff_base=1, backoff_cap=20)
    for _ in range(3):  # three requests, each failing once: each first retry waits the first backoff
        server.fail_next("500")
        r.score("q", ["a"])
    assert len(fake_clock.slept) == 3 and all(0.5 <= w <= 1 for w in fake_clock.slept)


def test_max_retry_time_bounds_the_time_one_request_spends_retrying(dmxapi, server, fake_clock):
    server.fail_next("429", count=10, retry_after="4")
    r = dmxapi(clock=fake_clock, sleep=fake_clock.sleep, max_retries=10, max_retry_time=10)
    with pytest.raises(errors.RateLimitError):
        r.score("q", ["a"])
    assert fake_clock.slept == [4.0, 4.0]  # a third wait would end 12 s after the first attempt began
    assert len(server.requests) == 3


def test_connect_timeout_names_the_connect_timeout():
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = []
    try:  # fill the accept backlog so that a further connect hangs
        for _ in range(8):
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex(listener.getsockname())
            fillers.append(c)
        r = rerankpd.get_reranker(
            "dmxapi",
            api_key="k" * 10,
            max_retries=0,
            timeout=(0.3, 5.0),
            base_url=f"http://127.0.0.1:{listener.getsockname()[1]}/v1",
        )
        with pytest.raises(errors.APITimeoutError) as info:
            r.score("q", ["a"])
        assert "could not connect" in str(info.value) and "within 0.3s" in str(info.value)
    finally:
        for c in fillers:
            c.close()
        listener.close()


# ----------------------------------------------------------------------- issue 9 and 10: the client's promises
def test_every_result_counts_its_attempts(dmxapi, server):
    r = dmxapi(max_retries=3)
    assert r.score_batch("q", ["a", "b"]).attempts == 1
    server.fail_next("503", count=2)
    assert r.score_batch("q", ["a", "b"]).attempts == 3


def test_retry_after_is_read_once_per_429(dmxapi, server, monkeypatch):
    import rerankpd.rerankers.http.exchange as http  # where the attempt reads Retry-After

    calls = []

    def counting(value, cap, now=None):
        calls.append(value)
        return parse_retry_after(value, cap, now)

    monkeypatch.setattr(http, "parse_retry_after", counting)
    server.fail_next("429", retry_after="0.01")
    dmxapi().score("q", ["a"])
    assert calls == ["0.01"]


def test_an_injected_clock_times_the_retry_waits(dmxapi, server, fake_clock):
    server.fail_next("429", retry_after="7")
    server.fail_next("503")
    t0 = time.perf_counter()
    r = dmxapi(clock=fake_clock, sleep=fake_clock.sleep, retry_after_cap=30, backoff_base=4, backoff_cap=4)
    assert len(r.score("q", ["a"])) == 1
    assert time.perf_counter() - t0 < 2  # nothing really slept
    assert fake_clock.slept[0] == 7.0 and 0 <= fake_clock.slept[1] <= 4 and len(fake_clock.slept) == 2


def test_attempt_deadline_bounds_a_trickling_answer(dmxapi, server):
    """One byte every 0.1 s never trips the read timeout; the total deadline per attempt ends it."""
    server.fail_next("trickle", stall_seconds=30)
    r = dmxapi(timeout=(1, 1), max_retries=0)
    assert r.attempt_deadline == 3.0  # connect + 2 x read by default
    t0 = time.perf_counter()
    with pytest.raises(errors.APITimeoutError, match="attempt_deadline=3s"):
        r.score("q", ["a"])
    assert time.perf_counter() - t0 < 6
    server.fail_next("trickle", stall_seconds=30)
    t0 = time.perf_counter()
    scores = dmxapi(timeout=(1, 1), attempt_deadline=0.5, max_retries=1).score("q", ["a"])  # retried, answered
    assert len(scores) == 1 and time.perf_counter() - t0 < 4


def test_a_trickled_answer_within_the_deadline_is_read(dmxapi, server):
    server.fail_next("trickle", stall_seconds=0.5)
    r = dmxapi(timeout=(1, 0.3), max_retries=0)  # each byte comes well within the read timeout
    assert r.score("cold", ["cold"]) == pytest.approx([server.score_fn("cold", "cold")])


def _cancel_after(event: threading.Event, seconds: float) -> threading.Timer:
    timer = threading.Timer(seconds, event.set)
    timer.start()
    return timer


def test_cancel_wakes_a_retry_after_pause_and_no_attempt_follows(dmxapi, server):
    server.fail_next("429", retry_after="20")
    r = dmxapi(retry_after_cap=60)
    cancel = threading.Event()
    r.bind_cancel(cancel)
    timer = _cancel_after(cancel, 0.3)
    t0 = time.perf_counter()
    with pytest.raises(errors.RunCancelled):
        r.score("q", ["a"])
    timer.join()
    assert time.perf_counter() - t0 < 1.3
    assert len(server.requests) == 1


def test_cancel_wakes_a_budget_wait_and_a_backoff(dmxapi, server):
    r = dmxapi(requests_per_minute=1, batch_size=1)
    cancel = threading.Event()
    r.bind_cancel(cancel)
    r.score("q", ["a"])  # the minute's one request
    timer = _cancel_after(cancel, 0.3)
    t0 = time.perf_counter()
    with pytest.raises(errors.RunCancelled):
        r.score("q", ["b"])  # would wait 60 s for the budget
    timer.join()
    assert time.perf_counter() - t0 < 1.3 and len(server.requests) == 1
    server.fail_next("503")
    slow = dmxapi(backoff_base=30, backoff_cap=30)
    slow.bind_cancel(cancel)  # already set: nothing is sent at all
    with pytest.raises(errors.RunCancelled):
        slow.score("q", ["c"])
    assert len(server.requests) == 1


BIG = b"1" + b"0" * 400  # a 401-digit integer: json gives an int that float() cannot hold
NESTED = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize(
    "status,body",
    [
        (200, b'{"results": [{"index": 0, "relevance_score": ' + BIG + b"}]}"),
        (200, NESTED),
        (200, b'{"results": ' + NESTED + b"}"),
        (500, NESTED),
    ],
    ids=["huge-integer-score", "nested-200", "nested-results", "nested-500"],
)
def test_malformed_answers_are_retried_and_end_as_rerank_errors(dmxapi, server, status, body):
    server.fail_next("raw", status=status, body=body)
    assert dmxapi(max_retries=1).score("cold", ["cold"]) == pytest.approx([server.score_fn("cold", "cold")])
    assert len(server.requests) == 2
    server.fail_next("raw", count=2, status=status, body=body)
    with pytest.raises(errors.BadResponseError if status == 200 else errors.ServerError):
        dmxapi(max_retries=1).score("cold", ["cold"])


@pytest.mark.parametrize("usage", [b"Infinity", b"-Infinity", b"NaN", BIG, b'{"deep": [[[1]]]}', b'"lots"'])
def test_a_bad_usage_field_never_costs_the_scores(dmxapi, server, usage):
    body = (
        b'{"results": [{"index": 0, "relevance_score": 0.25}], "usage": {"prompt_tokens": 3, "total_tokens": '
        + usage
        + b"}}"
    )
    server.fail_next("raw", status=200, body=body)
    result = dmxapi(max_retries=0).score_batch("q", ["a"])
    assert result.scores == [0.25]
    assert result.usage.get("prompt_tokens") == 3 and len(server.requests) == 1


@pytest.mark.parametrize(
    "option,value",
    [
        ("backoff_cap", -1),
        ("retry_after_cap", -1),
        ("backoff_base", "x"),
        ("timeout", [5, "x"]),
        ("timeout", [5, None]),
        ("timeout", [5]),
        ("attempt_deadline", 0),
        ("max_retries", -1),
        ("max_retries", 1.5),
        ("batch_size", True),
        ("adaptive_concurrency", "yes"),
        ("requests_per_minute", "60"),
        ("auth_scheme", 1),
        ("clock", 5),
    ],
)
def test_every_option_is_checked_at_construction_naming_it(dmxapi, option, value):
    with pytest.raises(errors.ConfigurationError, match=option.split("_")[0]):
        dmxapi(**{option: value})


def test_a_budget_that_cannot_serve_a_request_says_what_to_change(dmxapi, server):
    r = dmxapi(tokens_per_minute=1)
    long_text = "words " * 400  # ~600 tokens: at 1 token a minute the next request would wait for hours
    r.score("q", [long_text])  # the first request fits the minute's (tiny) burst
    t0 = time.perf_counter()
    with pytest.raises(errors.RateLimitError) as info:
        r.score("q", [long_text])
    assert time.perf_counter() - t0 < 1  # said at once, not after a wait
    message = str(info.value)
    assert "max_wait" not in message
    assert "tokens_per_minute" in message and "batch_size" in message


def test_a_stray_429_within_the_budget_keeps_the_burst(dmxapi, server, fake_clock):
    r = dmxapi(batch_size=1, max_concurrency=1, requests_per_minute=60, clock=fake_clock, sleep=fake_clock.sleep)
    for i in range(5):
        r.score("q", [f"d{i}"])
    assert fake_clock.slept == []  # five requests fit the minute's quota: no spacing
    server.fail_next("429", retry_after="0")
    r.score("q", ["after"])
    fake_clock.slept.clear()
    for i in range(5):
        r.score("q", [f"next{i}"])
    assert fake_clock.slept == []  # still bursting


def test_frequent_429s_within_the_budget_turn_the_burst_into_even_spacing(dmxapi, server, fake_clock):
    from rerankpd.rerankers.http.ratelimit import THROTTLE_AT

    r = dmxapi(
        batch_size=1,
        max_concurrency=1,
        requests_per_minute=60,
        clock=fake_clock,
        sleep=fake_clock.sleep,
        backoff_base=0.01,
        backoff_cap=0.01,
    )
    server.fail_next("429", count=THROTTLE_AT, retry_after="0")
    r.score("q", ["first"])
    assert r.rate_limiter.throttled
    fake_clock.slept.clear()
    r.score("q", ["next"])
    r.score("q", ["next"])
    assert fake_clock.slept and fake_clock.slept[-1] == pytest.approx(1.0)  # now one a second


def test_proxy_settings_are_read_once_and_still_route(monkeypatch):
    """HTTP_PROXY is honoured (the request goes through the proxy) though the environment is read once."""
    with LoopbackRerankServer() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.root)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        r = rerankpd.get_reranker("dmxapi", api_key=API_KEY, base_url="http://127.0.0.1:9/v1", max_retries=0)
        session = r.session()
        assert session.trust_env is False and session.proxies.get("http") == proxy.root
        with pytest.raises(errors.BadRequestError):  # the "proxy" is a rerank server: it has no such route
            r.score("q", ["a"])
        assert [req.path for req in proxy.requests] == ["http://127.0.0.1:9/v1/rerank"]
        monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:1")  # read once: a later change is not seen
        with pytest.raises(errors.BadRequestError):
            r.score("q", ["a"])
        assert len(proxy.requests) == 2


def test_self_hosted_availability_tries_the_port(monkeypatch):
    from rerankpd.rerankers.tei import TEIReranker

    with LoopbackRerankServer(dialect="tei") as server:
        monkeypatch.setenv("TEI_BASE_URL", server.url)
        status = TEIReranker.availability()
        assert (status.ready, status.note) == (True, f"server at {server.url} answers")
        port = server.port
    monkeypatch.setenv("TEI_BASE_URL", f"http://me:hunter2-secret@127.0.0.1:{port}")
    t0 = time.perf_counter()
    status = TEIReranker.availability()
    assert status.ready is False and status.note.startswith("self-hosted: needs a server at")
    assert "none answers" in status.note
    assert "hunter2" not in status.note and time.perf_counter() - t0 < 1


# ----------------------------------------------------------------------- interrupts
def _interrupt_at_random(rng, work, trials: int, max_delay: float) -> int:
    """Run ``work()`` ``trials`` times with a KeyboardInterrupt fired at a random moment; count interrupts."""
    import signal

    def raise_interrupt(signum, frame):
        raise KeyboardInterrupt

    import gc

    # Garbage (earlier tests', or an interrupted call's abandoned connections) is collected with the timer
    # off: an interrupt landing in a finalizer is "ignored" by Python, which is not what is tested here.
    gc.collect()
    gc.disable()
    previous = signal.signal(signal.SIGALRM, raise_interrupt)
    interrupted = 0
    try:
        for _ in range(trials):
            try:
                signal.setitimer(signal.ITIMER_REAL, rng.uniform(1e-5, max_delay))
                work()
                signal.setitimer(signal.ITIMER_REAL, 0)
            except KeyboardInterrupt:
                interrupted += 1
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                gc.collect()
    finally:
        signal.signal(signal.SIGALRM, previous)
        gc.enable()
    return interrupted


def test_interrupts_never_leak_a_slot_or_leave_the_gate_locked():
    """Statistical (fixed seed, bounded trials): Ctrl-C anywhere in acquire/release leaves a working gate."""
    import random

    from rerankpd.rerankers.http.ratelimit import AdaptiveConcurrency

    rng = random.Random(9)
    gate = AdaptiveConcurrency(2, increase_after=1, max_wait=2)

    def churn():
        for i in range(2000):
            with gate.acquire() as slot:
                (slot.rate_limited if i % 7 == 0 else slot.succeeded)()

    interrupted = _interrupt_at_random(rng, churn, trials=200, max_delay=0.004)
    assert interrupted >= 150  # the interrupts did land mid-churn
    assert gate.in_flight == 0
    assert gate._lock.acquire(timeout=1)
    gate._lock.release()
    with gate.acquire(timeout=1) as slot:  # the last 429 may have left the limit at 1: one success raises it
        slot.succeeded()
    assert gate.limit == 2
    with gate.acquire(timeout=1), gate.acquire(timeout=1):
        pass


def test_an_interrupted_reranker_keeps_working(dmxapi, server):
    """Ctrl-C at random points of score() (the gate, the pool, a read): the next call still answers."""
    import random

    rng = random.Random(11)
    server.latency = 0.002
    r = dmxapi(max_concurrency=1, timeout=(2, 2))
    interrupted = _interrupt_at_random(rng, lambda: r.score("q", ["a", "b"]), trials=60, max_delay=0.01)
    assert interrupted >= 10
    done = []
    worker = threading.Thread(target=lambda: done.append(r.score("q", ["a", "b"])), daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert done and len(done[0]) == 2
    assert r.concurrency_gate.in_flight == 0
