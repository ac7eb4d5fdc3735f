"""Shared fixtures: a real rerank server on 127.0.0.1, an isolated cache directory and environment."""

from __future__ import annotations

import json
import os
import pathlib
import threading

import pytest

from rerankpd.testing import LoopbackRerankServer

SEED = pathlib.Path(__file__).parent / "data" / "seed_response.json"
SEED_QUERY = "如何预防感冒"
SEED_DOCUMENTS = [
    "预防感冒应勤洗手、戴口罩，保持室内通风（来源：协和医院研究）",
    "流感疫苗每年10月接种最佳，可降低70%感染风险（来源：卫健委2024指南）",
    "维生素C对感冒的预防效果存在争议（来源：JAMA医学期刊）",
]
API_KEY = "sk-canary-4f1d2b7e9a"


class FakeClock:
    """A clock that only moves when told to; ``sleep`` advances it and records how long it slept.

    Give it to a limiter (``RateLimiter(clock=clock, sleep=clock.sleep)``) or an HTTP reranker
    (``dmxapi(clock=clock, sleep=clock.sleep)``): timing is then checked without waiting.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.slept: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
            self.now += seconds


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    """No test sees the developer's keys or cache; each gets its own cache directory."""
    for var in list(os.environ):
        if var.endswith("_API_KEY") or var.startswith("RERANKPD_") or var.endswith("_BASE_URL"):
            monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("RERANKPD_CACHE_DIR", str(tmp_path / "cache"))
    yield


@pytest.fixture
def seed_response() -> dict:
    """DMXAPI's own example answer, verbatim from the API page."""
    return json.loads(SEED.read_text(encoding="utf-8"))


@pytest.fixture
def server():
    """A loopback DMXAPI-shaped server that requires API_KEY."""
    with LoopbackRerankServer(api_key=API_KEY) as srv:
        yield srv


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def dmxapi(server):
    """Factory for a dmxapi reranker pointed at the loopback server, with quick retries."""
    import rerankpd

    def make(**options):
        options.setdefault("api_key", API_KEY)
        options.setdefault("base_url", server.url)
        options.setdefault("backoff_base", 0.01)
        options.setdefault("backoff_cap", 0.05)
        options.setdefault("timeout", (2.0, 5.0))
        return rerankpd.get_reranker("dmxapi", **options)

    return make


# --------------------------------------------------------------------------------------------- no skips in CI
# Every test of the suite can run on a machine set up by the README's test command, so a skip there means a
# missing install step, not a test that does not apply. In CI (CI set in the environment) a skipped test
# fails the run, naming the test and the reason; elsewhere a skip is reported as usual.
_SKIPPED: list[str] = []


def pytest_runtest_logreport(report):
    if report.skipped and os.environ.get("CI"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        line = f"{report.nodeid}: {reason}"
        if line not in _SKIPPED:
            _SKIPPED.append(line)


def pytest_collectreport(report):
    pytest_runtest_logreport(report)  # a module that skips itself (importorskip) at collection


def pytest_sessionfinish(session, exitstatus):
    if _SKIPPED and exitstatus == 0:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter):
    if _SKIPPED:
        terminalreporter.section("skipped in CI: each is a failure (install what it needs)", red=True)
        for line in _SKIPPED:
            terminalreporter.line(line, red=True)
