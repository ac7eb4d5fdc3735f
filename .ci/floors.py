"""Print a pip constraints file pinning every dependency setup.cfg declares with a floor to that floor.

Read by .ci/oldest: the oldest versions the package says it supports are installed and tested, so the
floors in setup.cfg stay true (one place for them: setup.cfg itself).
"""

from __future__ import annotations

import configparser
import pathlib
import re
import sys

EXTRAS = sys.argv[1:] or ["embedded", "parquet", "dask", "eval"]
config = configparser.ConfigParser()
config.read(pathlib.Path(__file__).resolve().parents[1] / "setup.cfg")
lines = config["options"]["install_requires"].splitlines()
for extra in EXTRAS:
    lines += config["options.extras_require"][extra].splitlines()
pins = {}
for line in lines:
    match = re.fullmatch(
        r"\s*([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?\s*>=\s*([0-9][^,;\s]*)\s*(?:,\s*<[^;\s]*)?\s*", line.split("#")[0]
    )
    if match:
        pins[match.group(1).lower()] = match.group(2)
for name, version in sorted(pins.items()):
    print(f"{name}=={version}")
