"""Tests for ratelimit: all timing runs on a fake clock; no wall-clock assertions."""

from __future__ import annotations

import math
import random
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from rerankpd.rerankers.http.ratelimit import (
    AdaptiveConcurrency,
    RateLimiter,
    RateLimitWaitTooLong,
)
from tests.conftest import FakeClock
from tests.interrupts import interruptible_offsets

EPS = 1e-9


def make(clock: FakeClock, **kwargs) -> RateLimiter:
    return RateLimiter(clock=clock, sleep=clock.sleep, **kwargs)


# ----------------------------------------------------------------------------- RateLimiter: validation


@pytest.mark.parametrize("bad", [0, -1, math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("name", ["requests_per_minute", "tokens_per_minute"])
def test_rate_must_be_positive_finite(name, bad):
    with pytest.raises(ValueError, match=name):
        RateLimiter(**{name: bad})


@pytest.mark.parametrize("bad", ["60", True, [60]])
def test_rate_must_be_a_number(bad):
    from rerankpd.errors import ConfigurationError  # one error type for a bad option (issue 10 #4)

    with pytest.raises(ConfigurationError, match="requests_per_minute"):
        RateLimiter(requests_per_minute=bad)


@pytest.mark.parametrize("bad", [-1, 1.5, "3", True, None])
def test_n_tokens_must_be_non_negative_int(bad):
    with pytest.raises(ValueError, match="n_tokens"):
        RateLimiter(tokens_per_minute=100).reserve(bad)


@pytest.mark.parametrize("name", ["burst_seconds", "max_wait"])
def test_negative_wait_parameters_rejected(name):
    with pytest.raises(ValueError, match=name):
        RateLimiter(**{name: -0.5})


def test_repr_names_budgets_only():
    assert repr(RateLimiter(requests_per_minute=10)) == (
        "RateLimiter(requests_per_minute=10.0, tokens_per_minute=None)"
    )


# ----------------------------------------------------------------------------- RateLimiter: behaviour


def test_unlimited_never_waits():
    clock = FakeClock()
    limiter = make(clock)
    assert not limiter.enabled
    assert [limiter.acquire(10**9) for _ in range(1000)] == [0.0] * 1000
    assert clock.slept == []


def test_requests_are_spaced_evenly():
    clock = FakeClock()
    limiter = make(clock, requests_per_minute=60)
    assert limiter.enabled
    assert [limiter.reserve() for _ in range(4)] == [0.0, 1.0, 2.0, 3.0]


def test_acquire_sleeps_exactly_the_delay_and_skips_zero_sleeps():
    clock = FakeClock()
    limiter = make(clock, requests_per_minute=120)
    waits = [limiter.acquire() for _ in range(3)]
    assert waits == [0.0, 0.5, 0.5]  # clock advanced by each sleep
    assert clock.slept == [0.5, 0.5]


def test_idle_time_does_not_accumulate_without_burst():
    clock = FakeClock()
    limiter = make(clock, requests_per_minute=60)
    limiter.reserve()
    clock.advance(100)
    assert limiter.reserve() == 0.0
    assert limiter.reserve() == 1.0


def test_burst_seconds_lets_that_much_budget_go_at_once():
    clock = FakeClock()
    limiter = make(clock, requests_per_minute=60, burst_seconds=2)
    assert [limiter.reserve() for _ in range(5)] == [0.0, 0.0, 0.0, 1.0, 2.0]


def test_token_budget_spaces_by_tokens_of_previous_request():
    clock = FakeClock()
    limiter = make(clock, tokens_per_minute=600)  # 10 tokens/s
    assert limiter.reserve(50) == 0.0
    assert limiter.reserve(10) == 5.0
    assert limiter.reserve(0) == 6.0
    assert limiter.reserve(0) == 6.0  # zero-token requests add nothing


def test_request_bigger_than_a_minute_of_tokens_still_goes():
    clock = FakeClock()
    limiter = make(clock, tokens_per_minute=60)
    assert limiter.reserve(600) == 0.0
    assert limiter.reserve(1) == 600.0


def test_both_budgets_the_tighter_one_wins():
    clock = FakeClock()
    limiter = make(clock, requests_per_minute=60, tokens_per_minute=600)
    assert limiter.reserve(5) == 0.0  # tokens need 0.5s, requests 1s
    assert limiter.reserve(30) == 1.0  # tokens need 3s after this one
    assert limiter.reserve(0) == 4.0


def test_pause_holds_all_requests_and_never_shortens():
    clock = FakeClock()
    limiter = make(clock, requests_per_minute=60)
    limiter.pause(5)
    limiter.pause(2)
    assert limiter.reserve() == 5.0
    assert limiter.reserve() == 6.0


def test_pause_works_without_budgets():
    clock = FakeClock()
    limiter = make(clock)
    limiter.pause(3)
    assert limiter.acquire() == 3.0
    assert limiter.acquire() == 0.0


def test_max_wait_raises_without_reserving():
    clock = FakeClock()
    limiter = make(clock, requests_per_minute=60, max_wait=2.5)
    assert [limiter.reserve() for _ in range(3)] == [0.0, 1.0, 2.0]
    with pytest.raises(RateLimitWaitTooLong, match="max_wait=2.5"):
        limiter.reserve()
    with pytest.raises(RateLimitWaitTooLong):
        limiter.acquire()
    assert clock.slept == []
    clock.advance(1.0)
    assert limiter.reserve() == 2.0  # the failed calls took nothing


def test_per_call_max_wait_overrides_and_inf_means_unbounded():
    clock = FakeClock()
    limiter = make(clock, requests_per_minute=1, max_wait=0)
    assert limiter.reserve() == 0.0
    with pytest.raises(RateLimitWaitTooLong):
        limiter.reserve()
    assert limiter.reserve(max_wait=60) == 60.0
    assert limiter.reserve(max_wait=math.inf) == 120.0
    unbounded = make(clock, requests_per_minute=1, max_wait=None)
    assert [unbounded.reserve() for _ in range(3)] == [0.0, 60.0, 120.0]


# ----------------------------------------------------------------------------- RateLimiter: properties

ops = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=5, allow_nan=False),  # clock advance before the call
        st.integers(min_value=0, max_value=5000),  # tokens
    ),
    min_size=1,
    max_size=60,
)
rates = st.one_of(st.none(), st.floats(min_value=1, max_value=10_000, allow_nan=False))


def _run(limiter: RateLimiter, clock: FakeClock, seq):
    grants = []
    for dt, n in seq:
        clock.advance(dt)
        now = clock()
        delay = limiter.reserve(n)
        assert delay >= 0
        grants.append((now + delay, n, now))
    return grants


@settings(max_examples=200, deadline=None)
@given(rpm=rates, tpm=rates, seq=ops)
def test_schedule_matches_the_even_spacing_oracle(rpm, tpm, seq):
    """With no burst, each grant is exactly max(arrival, previous grant + spacing)."""
    clock = FakeClock()
    limiter = make(clock, requests_per_minute=rpm, tokens_per_minute=tpm, max_wait=None)
    grants = _run(limiter, clock, seq)
    prev = None
    for start, n, arrival in grants:
        expected = arrival
        if prev is not None:
            p_start, p_n = prev
            gap = max(
                60.0 / rpm if rpm else 0.0,
                60.0 * p_n / tpm if tpm else 0.0,
            )
            expected = max(arrival, p_start + gap)
        assert start == pytest.approx(expected, abs=1e-6)
        prev = (start, n)


@settings(max_examples=200, deadline=None)
@given(
    rpm=rates,
    tpm=rates,
    burst=st.floats(min_value=0, max_value=10, allow_nan=False),
    seq=ops,
)
def test_no_window_ever_exceeds_the_budget(rpm, tpm, burst, seq):
    """For any two grants s_i <= s_j, what went in [s_i, s_j) fits the budget plus the burst."""
    clock = FakeClock()
    limiter = make(clock, requests_per_minute=rpm, tokens_per_minute=tpm, burst_seconds=burst, max_wait=None)
    grants = sorted(_run(limiter, clock, seq))
    for i in range(len(grants)):
        tokens = 0
        for j in range(i + 1, len(grants)):
            tokens += grants[j - 1][1]
            span = grants[j][0] - grants[i][0]
            if rpm:
                assert j - i <= rpm / 60.0 * (span + burst) + 1e-6
            if tpm:
                assert tokens <= tpm / 60.0 * (span + burst) + 1e-6


@settings(max_examples=100, deadline=None)
@given(rpm=st.floats(min_value=1, max_value=10_000), n=st.integers(min_value=2, max_value=200))
def test_saturated_throughput_equals_the_budget(rpm, n):
    clock = FakeClock()
    limiter = make(clock, requests_per_minute=rpm, max_wait=None)
    delays = [limiter.reserve() for _ in range(n)]
    achieved_per_minute = (n - 1) / delays[-1] * 60.0
    assert achieved_per_minute == pytest.approx(rpm, rel=1e-9)


# ----------------------------------------------------------------------------- RateLimiter: threads


def test_concurrent_reservations_are_all_distinct_and_spaced():
    clock = FakeClock()
    limiter = make(clock, requests_per_minute=600, tokens_per_minute=60_000, max_wait=None)
    n_threads, per_thread = 8, 200
    results: list[list[tuple[float, int]]] = [[] for _ in range(n_threads)]
    barrier = threading.Barrier(n_threads)

    def worker(k: int) -> None:
        rng = random.Random(k)
        barrier.wait(timeout=10)
        for _ in range(per_thread):
            n = rng.randint(0, 300)
            now = clock()
            results[k].append((now + limiter.reserve(n), n))
            if rng.random() < 0.1:
                clock.advance(0.01)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
        assert not t.is_alive()
    grants = sorted(g for r in results for g in r)
    assert len(grants) == n_threads * per_thread
    for (s0, n0), (s1, _) in zip(grants, grants[1:]):
        # Reservation order is the lock order, so consecutive grants honour both spacings.
        assert s1 - s0 >= max(0.1, 60.0 * n0 / 60_000) - 1e-6


def test_concurrent_acquire_with_sleep_completes():
    clock = FakeClock()
    limiter = make(clock, requests_per_minute=6000, max_wait=None)
    done = []

    def worker() -> None:
        for _ in range(100):
            limiter.acquire()
        done.append(True)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert done == [True] * 4
    # 400 requests at 100/s need at least 3.99 s of (fake) time.
    assert clock.now - 1000.0 >= 3.99 - 1e-6


# ----------------------------------------------------------------------------- AdaptiveConcurrency


@pytest.mark.parametrize("bad", [0, -3, 2.0, "4", True, None])
def test_max_concurrency_validated(bad):
    with pytest.raises(ValueError, match="max_concurrency"):
        AdaptiveConcurrency(bad)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_increase_after_validated(bad):
    with pytest.raises(ValueError, match="increase_after"):
        AdaptiveConcurrency(4, increase_after=bad)


def test_slots_up_to_the_limit_then_none():
    gate = AdaptiveConcurrency(3)
    slots = [gate.try_acquire() for _ in range(3)]
    assert all(s is not None for s in slots)
    assert gate.in_flight == 3
    assert gate.try_acquire() is None
    slots[0].release()
    slots[0].release()  # idempotent
    assert gate.in_flight == 2
    assert gate.try_acquire() is not None


def test_context_manager_releases_on_exception():
    gate = AdaptiveConcurrency(1)
    with pytest.raises(RuntimeError):
        with gate.acquire():
            assert gate.in_flight == 1
            raise RuntimeError("boom")
    assert gate.in_flight == 0


def test_acquire_times_out_when_full():
    gate = AdaptiveConcurrency(1, max_wait=0)
    held = gate.acquire()
    with pytest.raises(RateLimitWaitTooLong, match="limit=1"):
        gate.acquire()
    with pytest.raises(RateLimitWaitTooLong):
        gate.acquire(timeout=0.0)
    held.release()
    gate.acquire().release()


def test_429_halves_down_to_one():
    gate = AdaptiveConcurrency(8)
    seen = []
    for _ in range(5):
        with gate.acquire() as slot:
            slot.rate_limited()
        seen.append(gate.limit)
    assert seen == [4, 2, 1, 1, 1]
    assert gate.decreases == 5


def test_odd_limit_halves_down():
    gate = AdaptiveConcurrency(7)
    with gate.acquire() as slot:
        slot.rate_limited()
    assert gate.limit == 3


def test_burst_of_429s_from_one_round_cuts_once():
    gate = AdaptiveConcurrency(8)
    slots = [gate.acquire() for _ in range(8)]
    for s in slots:
        s.rate_limited()
        s.release()
    assert gate.limit == 4
    with gate.acquire() as slot:  # a new round's 429 cuts again
        slot.rate_limited()
    assert gate.limit == 2


def test_run_of_successes_raises_by_one_up_to_max():
    gate = AdaptiveConcurrency(4, increase_after=3)
    with gate.acquire() as slot:
        slot.rate_limited()
    assert gate.limit == 2
    limits = []
    for _ in range(9):
        with gate.acquire() as slot:
            slot.succeeded()
        limits.append(gate.limit)
    assert limits == [2, 2, 3, 3, 3, 4, 4, 4, 4]


def test_default_increase_after_is_the_current_limit():
    gate = AdaptiveConcurrency(8)
    with gate.acquire() as slot:
        slot.rate_limited()
    assert gate.limit == 4
    for _ in range(3):
        with gate.acquire() as slot:
            slot.succeeded()
    assert gate.limit == 4
    with gate.acquire() as slot:
        slot.succeeded()
    assert gate.limit == 5  # 4 successes at limit 4


def test_429_resets_the_success_run():
    gate = AdaptiveConcurrency(8, increase_after=2)
    with gate.acquire() as slot:
        slot.rate_limited()  # 4
    with gate.acquire() as slot:
        slot.succeeded()
    with gate.acquire() as slot:
        slot.rate_limited()  # 2
    with gate.acquire() as slot:
        slot.succeeded()
    assert gate.limit == 2
    with gate.acquire() as slot:
        slot.succeeded()
    assert gate.limit == 3


def test_successes_at_max_are_not_banked():
    gate = AdaptiveConcurrency(2, increase_after=2)
    for _ in range(10):
        with gate.acquire() as slot:
            slot.succeeded()
    with gate.acquire() as slot:
        slot.rate_limited()
    with gate.acquire() as slot:
        slot.succeeded()
    assert gate.limit == 1


def test_waiter_wakes_on_release():
    gate = AdaptiveConcurrency(1, max_wait=30)
    held = gate.acquire()
    got = threading.Event()

    def waiter() -> None:
        with gate.acquire():
            got.set()

    t = threading.Thread(target=waiter)
    t.start()
    assert not got.wait(timeout=0.05)  # still blocked (a liveness check, not a timing assert)
    held.release()
    t.join(timeout=30)
    assert got.is_set()
    assert gate.in_flight == 0


def test_waiter_wakes_when_limit_rises():
    gate = AdaptiveConcurrency(2, increase_after=1, max_wait=30)
    with gate.acquire() as slot:
        slot.rate_limited()
    assert gate.limit == 1
    held = gate.acquire()
    got = threading.Event()

    def waiter() -> None:
        with gate.acquire():
            got.set()

    t = threading.Thread(target=waiter)
    t.start()
    assert not got.wait(timeout=0.05)
    held.succeeded()  # limit 1 -> 2 frees a place while `held` is still in flight
    t.join(timeout=30)
    assert got.is_set()
    held.release()


def test_threads_never_exceed_max_and_end_balanced():
    gate = AdaptiveConcurrency(6, increase_after=4, max_wait=30)
    lock = threading.Lock()
    holders = 0
    peak = 0
    over_limit = []

    def worker(seed: int) -> None:
        nonlocal holders, peak
        rng = random.Random(seed)
        for _ in range(300):
            with gate.acquire() as slot:
                with lock:
                    holders += 1
                    peak = max(peak, holders)
                    if holders > gate.max_concurrency:
                        over_limit.append(holders)
                if rng.random() < 0.05:
                    slot.rate_limited()
                else:
                    slot.succeeded()
                with lock:
                    holders -= 1

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
        assert not t.is_alive()
    assert over_limit == []
    assert 1 <= peak <= 6
    assert gate.in_flight == 0
    assert 1 <= gate.limit <= 6


def test_converges_under_a_hard_concurrency_cap():
    """Rounds against a server that 429s beyond `cap` in flight: limit hovers near the cap."""
    cap, max_c = 5, 32
    gate = AdaptiveConcurrency(max_c)
    limits = []
    for _ in range(400):
        slots = []
        while (s := gate.try_acquire()) is not None:
            slots.append(s)
        for k, s in enumerate(slots):
            (s.succeeded if k < cap else s.rate_limited)()
            s.release()
        limits.append(gate.limit)
    tail = limits[50:]
    assert max(tail) <= cap + 1
    assert min(tail) >= cap // 2
    assert sum(tail) / len(tail) >= 0.6 * cap


class GateMachine(RuleBasedStateMachine):
    """Model-based check of AdaptiveConcurrency against a plain-Python model."""

    def __init__(self) -> None:
        super().__init__()
        self.max_c = 6
        self.after = 3
        self.gate = AdaptiveConcurrency(self.max_c, increase_after=self.after)
        self.slots: list = []  # (slot, epoch)
        self.limit = self.max_c
        self.successes = 0
        self.epoch = 0

    @rule()
    def try_acquire(self):
        slot = self.gate.try_acquire()
        if len(self.slots) < self.limit:
            assert slot is not None
            self.slots.append((slot, self.epoch))
        else:
            assert slot is None

    @precondition(lambda self: self.slots)
    @rule(data=st.data())
    def release(self, data):
        k = data.draw(st.integers(0, len(self.slots) - 1))
        slot, _ = self.slots.pop(k)
        slot.release()

    @precondition(lambda self: self.slots)
    @rule(data=st.data())
    def success(self, data):
        slot, _ = self.slots[data.draw(st.integers(0, len(self.slots) - 1))]
        slot.succeeded()
        if self.limit < self.max_c:
            self.successes += 1
            if self.successes >= self.after:
                self.limit += 1
                self.successes = 0
        else:
            self.successes = 0

    @precondition(lambda self: self.slots)
    @rule(data=st.data())
    def rate_limited(self, data):
        slot, epoch = self.slots[data.draw(st.integers(0, len(self.slots) - 1))]
        slot.rate_limited()
        self.successes = 0
        if epoch == self.epoch:
            self.epoch += 1
            self.limit = max(1, self.limit // 2)

    @invariant()
    def matches_model(self):
        assert self.gate.limit == self.limit
        assert self.gate.in_flight == len(self.slots)
        assert 1 <= self.gate.limit <= self.max_c


TestGateMachine = GateMachine.TestCase
TestGateMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


# ----------------------------------------------------------------------------- interrupts (issue 9 #8)


@pytest.mark.timeout(120)  # before the fix this deadlocked: a Condition's lock left held by the interrupt
def test_an_interrupt_at_any_point_of_acquire_or_release_leaves_a_working_gate():
    """A KeyboardInterrupt raised at each point where CPython can deliver one, in the gate and the
    threading/weakref code under it, in turn: after every one the gate still grants its one place within a
    bounded wait, and its state lock is free (an interrupt never leaves it held)."""
    import _weakrefset
    import sys
    import weakref as weakref_module

    import rerankpd.rerankers.http.ratelimit as ratelimit

    watched = {ratelimit.__file__, threading.__file__, _weakrefset.__file__, weakref_module.__file__}
    gate = AdaptiveConcurrency(1, increase_after=1, max_wait=1)
    offsets: dict = {}

    def cycle():
        with gate.acquire() as slot:
            slot.succeeded()
        with gate.acquire() as slot:
            slot.rate_limited()

    broken, locked, points = [], [], 0
    for k in range(1, 2000):
        seen = [0]

        def opcode(frame, event, arg):
            frame.f_trace_opcodes = True
            if event == "opcode":
                code = frame.f_code
                if code not in offsets:
                    offsets[code] = interruptible_offsets(code)
                if frame.f_lasti in offsets[code]:
                    seen[0] += 1  # noqa: B023 - called within this iteration
                    if seen[0] == k:  # noqa: B023 - called within this iteration
                        raise KeyboardInterrupt
            return opcode

        sys.settrace(lambda frame, event, arg: opcode if frame.f_code.co_filename in watched else None)
        try:
            cycle()
        except KeyboardInterrupt:
            pass
        finally:
            sys.settrace(None)
        points = max(points, seen[0])
        if seen[0] < k:  # every point has had its interrupt
            break
        if not gate._lock.acquire(timeout=1):
            locked.append(k)
            gate = AdaptiveConcurrency(1, increase_after=1, max_wait=1)
            continue
        gate._lock.release()
        granted = []
        probe = threading.Thread(target=lambda: granted.append(gate.acquire(timeout=1).release()), daemon=True)  # noqa: B023 - called within this iteration
        probe.start()
        probe.join(timeout=5)
        if not granted:
            broken.append(k)
            gate = AdaptiveConcurrency(1, increase_after=1, max_wait=1)
    assert points > 40  # the sweep did cover the gate's code
    assert locked == []
    assert broken == []
    assert gate.in_flight == 0


# ----------------------------------------------------------------------- the rate of 429s, not a stray one
def _bursting_limiter(clock: FakeClock) -> RateLimiter:
    return RateLimiter(requests_per_minute=60, burst_seconds=60, clock=clock, sleep=clock.sleep)


def test_stray_429s_below_half_of_the_window_keep_the_burst(fake_clock):
    from rerankpd.rerankers.http.ratelimit import RATE_WINDOW, THROTTLE_AT

    limiter = _bursting_limiter(fake_clock)
    for i in range(3 * RATE_WINDOW):  # 429s spread thinner than THROTTLE_AT per window: never throttled
        limiter.rate_limited() if i % RATE_WINDOW < THROTTLE_AT - 1 else limiter.answered()
        assert not limiter.throttled
    assert [limiter.reserve() for _ in range(10)] == [0.0] * 10 and limiter.burst_seconds == 60


def test_frequent_429s_space_evenly_and_the_burst_returns_when_they_stop(fake_clock):
    from rerankpd.rerankers.http.ratelimit import RATE_WINDOW, THROTTLE_AT

    limiter = _bursting_limiter(fake_clock)
    assert [limiter.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    for _ in range(THROTTLE_AT):
        limiter.rate_limited()
    assert limiter.throttled and limiter.burst_seconds == 0
    assert limiter.reserve() == 3.0  # the burst's three requests are still counted: even spacing from there
    for _ in range(RATE_WINDOW - 1):
        limiter.answered()
    assert limiter.throttled  # one answer short of a clean window
    limiter.answered()
    assert not limiter.throttled and limiter.burst_seconds == 60
    # the bucket starts empty: a service that really limits at this rate is still paced evenly ...
    assert [limiter.reserve() for _ in range(3)] == [0.0, 1.0, 2.0]
    # ... and idle time refills it: after a quiet minute the burst is back
    fake_clock.advance(120.0)
    assert [limiter.reserve() for _ in range(5)] == [0.0] * 5
