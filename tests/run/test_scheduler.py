"""The scheduler alone, with fake rerankers and no network: in-flight limit, callbacks, errors, cancel, Ctrl-C."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from rerankpd import errors
from rerankpd.rerankers import Reranker
from rerankpd.rerankers.base import BatchResult
from rerankpd.run.scheduler import Finished, Request, run_requests, score_request


def _requests(n, size=2):
    return [Request(f"q{i}", [f"d{i}.{j}" for j in range(size)], key=i) for i in range(n)]


class Lengths:
    """Not a Reranker subclass: only a score() method, as a third party writes it."""

    def __init__(self):
        self.threads = []

    def score(self, query, documents):
        self.threads.append(threading.get_ident())
        return [len(d) for d in documents]


class Slow(Reranker):
    """Holds each call for ``delay`` seconds and records how many calls overlap."""

    name = "slow"

    def __init__(self, delay=0.05, fail_on=(), attempts=1):
        self.delay, self.fail_on, self.attempts = delay, set(fail_on), attempts
        self.lock = threading.Lock()
        self.active = self.most_active = 0
        self.queries = []
        self.bound = []

    def score_batch(self, query, documents):
        self.bound.append(getattr(self, "_cancel_event", None))
        with self.lock:
            self.queries.append(query)
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        try:
            if query in self.fail_on:  # fails at once, before the others end
                exc = errors.ServerError(f"{query} failed", status_code=500, provider=self.name)
                exc.attempts = 3
                raise exc
            time.sleep(self.delay)
            return BatchResult([1.0] * len(documents), {"tokens": len(documents)}, self.attempts)
        finally:
            with self.lock:
                self.active -= 1

    def score(self, query, documents):
        return self.score_batch(query, documents).scores


def test_one_in_flight_scores_in_the_calling_thread_and_reports_each_request_in_order():
    reranker, seen = Lengths(), []
    outcome = run_requests(reranker, _requests(3), name="lengths", callbacks=[seen.append])
    assert set(reranker.threads) == {threading.get_ident()}
    assert [f.request.key for f in seen] == [0, 1, 2]
    assert all(f.ok and f.result.scores.tolist() == [4.0, 4.0] for f in seen)
    assert (outcome.error, outcome.cancelled, outcome.finished) == (None, False, 3)


def test_keeps_up_to_n_in_flight_and_reports_in_the_calling_thread():
    reranker, threads = Slow(delay=0.05), []
    outcome = run_requests(
        reranker,
        _requests(9),
        name="slow",
        max_in_flight=3,
        callbacks=[lambda f: threads.append(threading.get_ident())],
    )
    assert reranker.most_active == 3
    assert sorted(reranker.queries) == sorted(f"q{i}" for i in range(9))
    assert set(threads) == {threading.get_ident()} and len(threads) == 9
    assert outcome.finished == 9 and outcome.error is None


def test_requests_are_read_lazily_as_they_are_sent():
    made = []

    def requests():
        for request in _requests(4):
            made.append(request.key)
            yield request

    seen = []

    def check(finished):
        seen.append(finished.request.key)
        assert made == seen  # request i+1 is made only after request i ended (one in flight)

    run_requests(Lengths(), requests(), name="lengths", callbacks=[check])
    assert seen == [0, 1, 2, 3]


@pytest.mark.parametrize("in_flight", [1, 3])
def test_first_failure_stops_new_requests_and_is_returned(in_flight):
    reranker, seen = Slow(delay=0.02, fail_on={"q1"}), []
    outcome = run_requests(reranker, _requests(10), name="slow", max_in_flight=in_flight, callbacks=[seen.append])
    assert isinstance(outcome.error, errors.ServerError) and "q1 failed" in str(outcome.error)
    assert len(reranker.queries) <= 1 + in_flight  # nothing new once it failed
    assert len(seen) == len(reranker.queries)  # in-flight requests still reported
    failed = [f for f in seen if not f.ok]
    assert len(failed) == 1 and failed[0].attempts == 3  # an error may say how many requests it took


def test_without_stop_on_error_every_request_is_sent():
    reranker, seen = Slow(delay=0.0, fail_on={"q1", "q3"}, attempts=2), []
    outcome = run_requests(
        reranker, _requests(5), name="slow", max_in_flight=2, callbacks=[seen.append], stop_on_error=False
    )
    assert outcome.error is None and outcome.finished == 5
    assert sorted(f.request.key for f in seen if not f.ok) == [1, 3]
    assert sum(f.attempts for f in seen) == 3 * 2 + 2 * 3


@pytest.mark.parametrize("in_flight", [1, 2])
def test_cancel_stops_between_requests(in_flight):
    cancel = threading.Event()
    reranker, seen = Slow(delay=0.01), []

    def cancel_after_first(finished):
        seen.append(finished)
        cancel.set()

    outcome = run_requests(
        reranker, _requests(8), name="slow", max_in_flight=in_flight, callbacks=[cancel_after_first], cancel=cancel
    )
    assert outcome.cancelled and outcome.error is None
    assert len(seen) == len(reranker.queries) <= in_flight


def test_a_reranker_giving_up_on_cancel_is_a_cancel_not_a_failure():
    cancel = threading.Event()

    class GivesUp(Reranker):
        def score(self, query, documents):
            cancel.set()  # as if the panel's Cancel woke the reranker's retry sleep
            raise errors.RunCancelled("cancelled while waiting to retry")

    outcome = run_requests(GivesUp(), _requests(1), name="gives-up", cancel=cancel)
    assert outcome.cancelled and outcome.error is None


@pytest.mark.parametrize("in_flight", [1, 2])
def test_reranker_is_bound_to_the_cancel_event_while_scoring_only(in_flight):
    cancel, reranker = threading.Event(), Slow(delay=0.0)
    run_requests(reranker, _requests(3), name="slow", max_in_flight=in_flight, cancel=cancel)
    assert reranker.bound == [cancel] * 3
    assert reranker._cancel_event is None
    own = Slow(delay=0.0)  # no event given: the scheduler makes one, so sleeps can still be woken
    run_requests(own, _requests(1), name="slow")
    assert isinstance(own.bound[0], threading.Event) and own._cancel_event is None


def test_ctrl_c_waits_for_requests_in_flight_and_reports_them():
    reranker, seen, cancel = Slow(delay=0.1), [], threading.Event()

    def interrupt_at_first(finished):
        seen.append(finished.request.key)
        if len(seen) == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_requests(
            reranker, _requests(10), name="slow", max_in_flight=3, callbacks=[interrupt_at_first], cancel=cancel
        )
    assert len(seen) == 3 and len(reranker.queries) == 3  # the two in flight were waited for and kept
    assert cancel.is_set()  # and told to start no new attempt
    assert reranker._cancel_event is None


def test_score_request_checks_the_answer():
    class Short:
        def score(self, query, documents):
            return [1.0]

    class NotFinite:
        def score(self, query, documents):
            return [1.0, float("nan")]

    with pytest.raises(errors.BadResponseError, match="returned 1 scores for 2 documents"):
        score_request(Short(), "short", "q", ["a", "b"])
    with pytest.raises(errors.BadResponseError, match="score of nan for document 1"):
        score_request(NotFinite(), "nan", "q", ["a", "b"])
    result = score_request(Slow(delay=0, attempts=4), "slow", "q", ["a", "b"])
    assert result.scores.dtype == np.float64 and result.attempts == 4 and result.usage == {"tokens": 2}


def test_finished_says_whether_it_succeeded():
    request = Request("q", ["a"], key=[0])
    assert Finished(request, BatchResult([1.0]), None).ok
    assert not Finished(request, None, ValueError("x")).ok


@pytest.mark.parametrize("in_flight", [1, 3])
def test_on_scored_runs_in_the_requests_thread_before_any_later_request_is_sent(in_flight):
    """What makes the cache's guarantee: a succeeded request's ``on_scored`` (the cache write) has returned
    before a request sent after it finished starts, so a killed run loses at most the requests in flight;
    a failed request is not passed to it; it runs in the thread that ran the request."""
    events, lock = [], threading.Lock()

    class Recording(Reranker):
        name = "recording"

        def score(self, query, documents):
            with lock:
                events.append(("start", query))
            time.sleep(0.002)
            if query == "q5":
                raise errors.BadResponseError("broken", provider="recording")
            return [1.0] * len(documents)

    stored_in = {}

    def on_scored(request, result):
        time.sleep(0.01)  # a slow disk: the next request must still wait for it
        stored_in[request.query] = threading.get_ident()
        with lock:
            events.append(("stored", request.query))

    reported_in = set()
    outcome = run_requests(
        Recording(),
        _requests(12),
        name="recording",
        max_in_flight=in_flight,
        stop_on_error=False,
        on_scored=on_scored,
        callbacks=[lambda finished: reported_in.add(threading.get_ident())],
    )
    assert outcome.finished == 12 and outcome.error is None
    assert sorted(stored_in) == sorted(f"q{i}" for i in range(12) if i != 5)
    if in_flight > 1:
        assert threading.get_ident() not in set(stored_in.values())  # written by the workers
    assert reported_in == {threading.get_ident()}
    starts = [i for i, (kind, _) in enumerate(events) if kind == "start"]
    for n, at in enumerate(starts):
        ended_before = sum(1 for kind, _ in events[:at] if kind == "stored")
        # the (n+1)-th request starts only once all but in_flight - 1 of the earlier ones are written (the
        # failed one, q5, counts as ended once it has started)
        failed_before = 1 if any(q == "q5" for kind, q in events[:at] if kind == "start") else 0
        assert ended_before + failed_before >= n - (in_flight - 1), (n, events[: at + 1])
