"""The panel in a real browser: Voilà serves notebooks/03_panel.ipynb on 127.0.0.1, Chromium (driven by
Playwright) types a query, clicks Run and reads the ranked table.

Needs ``voila`` and ``playwright`` (the ``test`` extra) and a Chromium, found by :mod:`tests.chromium`
(``RERANKPD_CHROMIUM``, the usual names on ``PATH``, Playwright's cache); the README's test command runs
``python -m tests.chromium`` first, which installs Debian's ``chromium`` where none is found and it may.
It is marked ``browser`` so it can be selected or deselected, and it is never skipped: a missing piece is
a failure that names what to install.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.chromium import INSTALL_HINT, candidates, find_chromium
from tests.jupyter_env import jupyter_env  # noqa: F401  (fixture)

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "03_panel.ipynb"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(os.environ.get("RERANKPD_TEST_ARTIFACTS", ROOT / "test-artifacts"))
START_TIMEOUT = 60.0


def _require() -> str:
    """The Chromium to drive; a failure naming what to install when something is missing."""
    missing = []
    for module in ("voila", "playwright"):
        try:
            __import__(module)
        except ImportError:
            missing.append(f"pip install {module}")
    chromium = find_chromium()
    if chromium is None:
        looked = candidates()
        where = looked[0] if len(looked) == 1 else f"{len(looked)} places (RERANKPD_CHROMIUM, PATH, Playwright's cache)"
        missing.append(
            f"{INSTALL_HINT}; or run python -m tests.chromium, which installs it as root (looked at {where})"
        )
    if missing:
        pytest.fail("the browser test needs: " + "; ".join(missing), pytrace=False)
    return chromium


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


@pytest.fixture
def voila_url(tmp_path, jupyter_env):
    chromium = _require()
    work = tmp_path / "nb"
    work.mkdir()
    shutil.copy(NOTEBOOK, work / NOTEBOOK.name)
    port = _free_port()
    env = dict(jupyter_env)  # conftest already removed keys and pointed RERANKPD_CACHE_DIR at tmp_path
    log_path = tmp_path / "voila.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "voila",
                NOTEBOOK.name,
                "--no-browser",
                f"--port={port}",
                "--Voila.ip=127.0.0.1",
                "--Voila.port_retries=0",
                "--show_tracebacks=True",
            ],
            cwd=work,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:  # any HTTP answer means the server is up; GET / would start a kernel, so ask elsewhere
            if proc.poll() is not None:
                pytest.fail(f"voila exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/voila/static/", timeout=2).close()
                break
            except urllib.error.HTTPError:
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"voila did not answer within {START_TIMEOUT} s:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/", log_path, chromium
    finally:
        _stop(proc)


def test_panel_ranks_in_a_real_browser(voila_url):
    from playwright.sync_api import expect, sync_playwright

    url, log_path, chromium = voila_url
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            # Only loopback: Voilà's page asks a CDN for icon fonts, which must fail fast, not hang.
            page.route(re.compile(r"^https?://(?!127\.0\.0\.1[:/])"), lambda route: route.abort())
            page.goto(url, timeout=60_000)
            query = page.locator(".rerankpd-query input")
            try:
                query.wait_for(state="visible", timeout=90_000)
            except Exception:
                page.screenshot(path=str(ARTIFACTS / "panel-failed-to-render.png"), full_page=True)
                raise AssertionError(f"the panel never rendered; voila log:\n{log_path.read_text()[-3000:]}") from None
            try:
                run = page.locator("button.rerankpd-run-button")
                table = page.locator("table.rerankpd-table")
                status = page.locator(".rerankpd-status")

                histograms = page.locator(".rerankpd-histograms")
                # the notebook's own cell already ran the query it opened with
                expect(histograms).to_contain_text("catching a cold", timeout=30_000)

                query.fill("how do I bake bread at home?")
                page.locator(".rerankpd-reranker select").select_option(label="e5 (offline)")
                run.click()
                expect(histograms).to_contain_text("bake bread", timeout=60_000)
                expect(status).to_contain_text("rows scored", timeout=10_000)
                first_row = table.locator("tbody tr").first
                expect(first_row).to_contain_text("Sourdough", timeout=10_000)
                expect(status).to_contain_text("e5")
                expect(run).to_be_enabled()
                scores = table.locator(".rerankpd-score").all_inner_texts()
                assert len(scores) == 10
                values = [float(s) for s in scores]
                assert values == sorted(values, reverse=True)
                assert table.locator(".rerankpd-bar").count() == 10
                panel = page.locator(".rerankpd-panel")
                expect(panel).to_contain_text("0 = all rows")  # what Top n 0 means
                expect(status).to_contain_text("cosine similarities")  # e5 scores are not probabilities
                expect(panel).to_contain_text("bars are relative")
                labels = [
                    label.replace("\xa0", " ")  # ipywidgets draws spaces in options as no-break spaces
                    for label in page.locator(".rerankpd-reranker select option").all_inner_texts()
                ]
                assert any(label.startswith("tei (self-hosted: needs a server at") for label in labels), labels
                page.screenshot(path=str(ARTIFACTS / "panel.png"), full_page=True)
                page.locator(".rerankpd-panel").screenshot(path=str(ARTIFACTS / "panel-widget.png"))
            except Exception:
                page.screenshot(path=str(ARTIFACTS / "panel-failure.png"), full_page=True)
                raise
        finally:
            browser.close()
