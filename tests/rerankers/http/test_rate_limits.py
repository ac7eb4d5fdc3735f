"""Rate limits of HTTP rerankers against a real loopback server: budget, Retry-After, adaptive concurrency.

Timing is checked on a fake clock given to the reranker (``clock=``, ``sleep=``), never on the wall clock.
"""

from __future__ import annotations

import pandas as pd
import pytest

import rerankpd
from rerankpd.core.tokens import request_tokens
from rerankpd.errors import ConfigurationError
from rerankpd.rerankers.dmxapi import DMXAPIReranker
from rerankpd.rerankers.http.ratelimit import PUBLISHED_LIMITS, THROTTLE_AT
from rerankpd.testing import LoopbackRerankServer, overlap_score
from tests.conftest import API_KEY


def _frame(n: int) -> pd.DataFrame:
    return pd.DataFrame({"text": [f"document number {i} about colds" for i in range(n)]})


def test_no_budget_by_default_for_services_without_published_limits(dmxapi):
    r = dmxapi()
    assert not r.rate_limiter.enabled
    assert r.adaptive_concurrency
    assert r.concurrency_gate.max_concurrency == r.max_concurrency


def test_budget_options_and_published_defaults(dmxapi, server):
    r = dmxapi(requests_per_minute=120, tokens_per_minute=10_000)
    assert (r.rate_limiter.requests_per_minute, r.rate_limiter.tokens_per_minute) == (120, 10_000)

    class SiliconFlowLike(DMXAPIReranker):
        name = "siliconflow"

    published = SiliconFlowLike(api_key=API_KEY, base_url=server.url)
    assert (
        (published.rate_limiter.requests_per_minute, published.rate_limiter.tokens_per_minute)
        == PUBLISHED_LIMITS["siliconflow"]
        == (2000, 500_000)
    )
    off = SiliconFlowLike(api_key=API_KEY, base_url=server.url, requests_per_minute=0, tokens_per_minute=0)
    assert not off.rate_limiter.enabled
    # the budget never changes scores, so it stays out of the cache identity
    assert published.identity() == off.identity()


@pytest.mark.parametrize("option", ["requests_per_minute", "tokens_per_minute"])
def test_bad_budget_is_a_configuration_error_naming_it(dmxapi, option):
    with pytest.raises(ConfigurationError, match=option):
        dmxapi(**{option: -5})


def test_requests_are_spaced_by_the_request_budget(dmxapi, server, fake_clock):
    clock = fake_clock
    r = dmxapi(batch_size=10, max_concurrency=1, requests_per_minute=30, clock=clock, sleep=clock.sleep)
    out = rerankpd.rerank(_frame(350), "colds", reranker=r, cache=False, progress=False)
    assert out["rerank_score"].notna().all()
    assert len(server.requests) == 35
    # 30 per minute: the minute's 30 go at once (a per-minute quota allows the burst), then one every 2 s
    assert clock.slept == [2.0] * 5


def test_token_budget_uses_the_estimate_of_each_request(dmxapi, server, fake_clock):
    clock = fake_clock
    r = dmxapi(batch_size=10, max_concurrency=1, tokens_per_minute=600, clock=clock, sleep=clock.sleep)
    df = _frame(100)
    rerankpd.rerank(df, "colds", reranker=r, cache=False, progress=False)
    sent = [req.body["documents"] for req in server.requests]
    assert len(sent) == 10
    # 10 tokens a second, a bucket of one minute's 600: request k may go once the tokens of the requests
    # before it, less the 600 of the bucket, have been earned
    costs = [request_tokens("colds", docs) / 10.0 for docs in sent]
    expected, now, due = [], 0.0, 0.0
    for cost in costs:
        start = max(now, due - 60.0)
        if start > now:
            expected.append(start - now)
            now = start
        due = max(due, start) + cost
    assert expected and clock.slept == pytest.approx(expected)


def test_retry_after_holds_every_request_back(dmxapi, server, fake_clock):
    clock = fake_clock
    r = dmxapi(batch_size=10, max_concurrency=1, clock=clock, sleep=clock.sleep)
    server.fail_next("429", retry_after="0.3")
    out = rerankpd.rerank(_frame(20), "colds", reranker=r, cache=False, progress=False)
    assert out["rerank_score"].notna().all()
    assert 0.3 in clock.slept  # the shared limiter was paused for Retry-After
    assert r.rate_limiter._paused_until >= 1000.3  # and the pause is the limiter's, for every request


def test_a_stray_429_leaves_concurrency_and_the_burst_alone(dmxapi, server):
    r = dmxapi(batch_size=5, max_concurrency=8, requests_per_minute=6000)
    server.fail_next("429", count=THROTTLE_AT - 1, retry_after="0")
    out = rerankpd.rerank(_frame(400), "colds", reranker=r, cache=False, progress=False)
    assert out["rerank_score"].notna().all()
    assert r.concurrency_gate.decreases == 0 and not r.rate_limiter.throttled
    assert r.rate_limiter.burst_seconds == 60.0


def test_frequent_429s_halve_concurrency_and_successes_raise_it_again(dmxapi, server):
    r = dmxapi(batch_size=5, max_concurrency=8)
    server.fail_next("429", count=THROTTLE_AT, retry_after="0")  # half of the window: the service's limit
    df = _frame(400)
    out = rerankpd.rerank(df, "colds", reranker=r, cache=False, progress=False)
    expected = [overlap_score("colds", t) for t in df["text"]]
    assert out.sort_index()["rerank_score"].tolist() == pytest.approx(expected)
    gate = r.concurrency_gate
    assert gate.decreases == 1
    assert gate.limit == 8  # 80 requests: enough successes to climb back from 4
    assert gate.in_flight == 0


def test_adaptive_concurrency_can_be_switched_off(dmxapi, server):
    r = dmxapi(batch_size=5, max_concurrency=4, adaptive_concurrency=False)
    server.fail_next("429", count=3, retry_after="0")
    rerankpd.rerank(_frame(50), "colds", reranker=r, cache=False, progress=False)
    assert r.concurrency_gate.decreases == 0
    assert r.concurrency_gate.limit == 4


def test_server_rate_limit_429s_above_its_rate():
    import requests

    with LoopbackRerankServer(rate_limit=2.0, rate_limit_burst=2) as srv:
        body = {"model": "m", "query": "q", "documents": ["a"]}
        codes = [requests.post(srv.url + "/rerank", json=body, timeout=5) for _ in range(4)]
    assert [c.status_code for c in codes[:2]] == [200, 200]
    assert 429 in [c.status_code for c in codes[2:]]
    limited = next(c for c in codes if c.status_code == 429)
    assert 0 < float(limited.headers["Retry-After"]) <= 0.5
    assert srv.rate_limited >= 1


def test_rate_limited_server_run_completes_with_a_matching_budget():
    """Against a server admitting 40 requests/s, a 2400/min budget gets everything through."""
    with LoopbackRerankServer(api_key=API_KEY, rate_limit=40.0) as srv:
        r = rerankpd.get_reranker(
            "dmxapi",
            api_key=API_KEY,
            base_url=srv.url,
            batch_size=2,
            max_concurrency=8,
            requests_per_minute=2400,
            backoff_base=0.01,
            backoff_cap=0.05,
        )
        df = _frame(60)
        out = rerankpd.rerank(df, "colds", reranker=r, cache=False, progress=False)
        assert out["rerank_score"].notna().all()
        assert len(srv.requests) - srv.rate_limited == 30
        assert srv.rate_limited <= 3
