"""Find a Chromium for the browser test, or install Debian's where the machine allows it.

The README's test command runs ``python -m tests.chromium`` before ``pytest``, so the suite has what it
needs on a fresh machine. It looks, in order, at:

1. ``RERANKPD_CHROMIUM`` (a path to the browser; when set, nothing else is tried);
2. ``chromium``, ``chromium-browser``, ``google-chrome``, ``google-chrome-stable``, ``chrome`` on ``PATH``,
   then in ``/usr/bin``, ``/usr/local/bin``, ``/snap/bin`` and ``/opt/google/chrome``;
3. Playwright's own downloads (``PLAYWRIGHT_BROWSERS_PATH``, else ``~/.cache/ms-playwright``).

When none is found and the process is root on a machine with ``apt-get``, it installs Debian's
``chromium`` package (``apt-get install chromium``; ``playwright install`` needs a download site this
project does not rely on). Otherwise it prints what to install and exits 0, so the rest of the suite still
runs and the browser test fails naming the fix. The browser test itself is never skipped.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
DIRECTORIES = ("/usr/bin", "/usr/local/bin", "/snap/bin", "/opt/google/chrome")
#: Playwright's browser builds, newest first within each pattern (full Chromium before the headless shell).
PLAYWRIGHT_PATTERNS = ("chromium-*/chrome-linux*/chrome", "chromium_headless_shell-*/chrome-linux*/headless_shell")
INSTALL_HINT = "install a Chromium (Debian/Ubuntu: sudo apt-get install chromium) or point RERANKPD_CHROMIUM at one"


def _executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def _playwright_dirs(environ: Mapping[str, str]) -> list[str]:
    chosen = environ.get("PLAYWRIGHT_BROWSERS_PATH")
    if chosen and chosen != "0":
        return [chosen]
    home = environ.get("HOME") or os.path.expanduser("~")
    return [os.path.join(environ.get("XDG_CACHE_HOME") or os.path.join(home, ".cache"), "ms-playwright")]


def candidates(environ: Mapping[str, str] | None = None, directories: Sequence[str] = DIRECTORIES) -> list[str]:
    """Every place looked at, in order (existing or not), for messages and tests."""
    environ = os.environ if environ is None else environ
    if environ.get("RERANKPD_CHROMIUM"):
        return [environ["RERANKPD_CHROMIUM"]]
    found: list[str] = []
    path_dirs = [d for d in (environ.get("PATH") or "").split(os.pathsep) if d]
    for name in NAMES:
        found += [os.path.join(d, name) for d in [*path_dirs, *directories]]
    for base in _playwright_dirs(environ):
        for pattern in PLAYWRIGHT_PATTERNS:
            found += sorted(glob.glob(os.path.join(base, pattern)), reverse=True)
    return list(dict.fromkeys(found))


def find_chromium(environ: Mapping[str, str] | None = None, directories: Sequence[str] = DIRECTORIES) -> str | None:
    """The first Chromium found (see the module's notes), or None."""
    return next((path for path in candidates(environ, directories) if _executable(path)), None)


def can_install() -> bool:
    """True when this process may install Debian's chromium: root, with apt-get."""
    return hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get") is not None


def apt_install_chromium() -> bool:
    """``apt-get update && apt-get install -y chromium``; True when it succeeded."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        if subprocess.run(command, env=env, stdout=subprocess.DEVNULL, timeout=1800).returncode != 0:
            return False
    return True


def ensure_chromium(
    environ: Mapping[str, str] | None = None,
    directories: Sequence[str] = DIRECTORIES,
    *,
    allowed: Callable[[], bool] = can_install,
    install: Callable[[], bool] = apt_install_chromium,
    say: Callable[[str], None] = print,
) -> str | None:
    """Find a Chromium; when there is none and ``allowed()``, ``install()`` one and look again."""
    found = find_chromium(environ, directories)
    if found:
        say(f"tests.chromium: the browser test will use {found}")
        return found
    environ = os.environ if environ is None else environ
    if environ.get("RERANKPD_CHROMIUM"):
        say(
            f"tests.chromium: RERANKPD_CHROMIUM={environ['RERANKPD_CHROMIUM']} is not an executable file; "
            "fix it or unset it"
        )
        return None
    if not allowed():
        say(f"tests.chromium: no Chromium found, and this process cannot install one: {INSTALL_HINT}")
        return None
    say(
        "tests.chromium: no Chromium found; installing Debian's chromium package (apt-get install chromium) "
        "for the browser test"
    )
    if not install():
        say(f"tests.chromium: apt-get could not install chromium: {INSTALL_HINT}")
        return None
    return ensure_chromium(environ, directories, allowed=lambda: False, install=install, say=say)


def main() -> int:
    ensure_chromium()
    return 0  # never stop the test command: the browser test fails on its own, naming the fix


if __name__ == "__main__":
    sys.exit(main())
