"""The test command finds a Chromium wherever a user's machine may have one, or installs Debian's.

The README's second command runs ``python -m tests.chromium`` before ``pytest`` (issue 8 #1: on a fresh
machine the browser test used to fail with "needs: apt-get install chromium"). Here fake browsers are
small executable files in temporary directories; nothing is installed or downloaded.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.chromium import candidates, ensure_chromium, find_chromium

ROOT = Path(__file__).resolve().parents[1]


def _fake_browser(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return str(path)


def test_finds_chromium_wherever_a_machine_may_have_one(tmp_path):
    empty = {"PATH": str(tmp_path / "nothing"), "HOME": str(tmp_path / "home")}
    assert find_chromium(empty, directories=()) is None
    for name in ("chromium", "chromium-browser", "google-chrome"):
        bin_dir = tmp_path / f"bin-{name}"
        expected = _fake_browser(bin_dir / name)
        assert find_chromium({**empty, "PATH": str(bin_dir)}, directories=()) == expected
        assert find_chromium(empty, directories=[str(bin_dir)]) == expected  # /usr/bin and friends
    # Playwright's own download, in its default cache and where PLAYWRIGHT_BROWSERS_PATH points
    shell = _fake_browser(
        tmp_path / "home/.cache/ms-playwright/chromium_headless_shell-1200/chrome-linux/headless_shell"
    )
    assert find_chromium(empty, directories=()) == shell
    full = _fake_browser(tmp_path / "pw/chromium-1169/chrome-linux/chrome")
    assert find_chromium({**empty, "PLAYWRIGHT_BROWSERS_PATH": str(tmp_path / "pw")}, directories=()) == full
    # RERANKPD_CHROMIUM wins, and when it is wrong nothing else is tried
    chosen = _fake_browser(tmp_path / "my/browser")
    assert find_chromium({**empty, "RERANKPD_CHROMIUM": chosen}) == chosen
    assert find_chromium({**empty, "RERANKPD_CHROMIUM": str(tmp_path / "typo")}) is None
    assert candidates({"RERANKPD_CHROMIUM": "/x"}) == ["/x"]


def test_installs_debians_chromium_only_where_the_machine_allows_it(tmp_path):
    empty = {"PATH": str(tmp_path / "bin"), "HOME": str(tmp_path / "home")}
    said, installs = [], []

    def install():  # what apt-get would leave behind
        installs.append(1)
        _fake_browser(tmp_path / "bin" / "chromium")
        return True

    assert ensure_chromium(empty, (), allowed=lambda: False, install=install, say=said.append) is None
    assert installs == [] and "apt-get install chromium" in said[-1]
    found = ensure_chromium(empty, (), allowed=lambda: True, install=install, say=said.append)
    assert installs == [1] and found == str(tmp_path / "bin" / "chromium")
    assert "installing Debian's chromium" in said[-2] and found in said[-1]
    assert ensure_chromium(empty, (), allowed=lambda: True, install=install, say=said.append) == found
    assert installs == [1]  # found now: nothing installed twice


def test_the_readme_test_command_provides_the_browser_and_says_so():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"^```bash\n(.*?)^```", readme, re.S | re.M).group(1).splitlines()
    test_command = block[1]
    assert test_command.index("python -m tests.chromium") < test_command.index("python -m pytest")
    after = readme[readme.index("```", readme.index("```bash") + 3) :][:1200]
    assert "apt-get install chromium" in after and "RERANKPD_CHROMIUM" in after
    ci = (ROOT / ".ci" / "run").read_text()
    assert "apt-get" not in ci  # CI runs the README's commands and nothing else


def test_the_module_runs_and_never_stops_the_test_command(tmp_path):
    env = {**os.environ, "RERANKPD_CHROMIUM": str(tmp_path / "no-browser-here")}
    result = subprocess.run(
        [sys.executable, "-m", "tests.chromium"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and "RERANKPD_CHROMIUM" in result.stdout
