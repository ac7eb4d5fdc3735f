"""A Jupyter environment of the tests' own: a ``python3`` kernelspec that runs this interpreter.

Jupyter looks for kernelspecs in the user's directory before the virtualenv's, so a ``python3`` kernel
installed elsewhere on the machine could run the notebooks with another Python. The fixture installs one
into a temporary prefix that runs ``sys.executable`` and puts it first on ``JUPYTER_PATH``. Config and
runtime directories are temporary too, so no test reads or writes the developer's ``~/.jupyter``, and
``PYTHONPATH`` makes the kernel import this checkout's rerankpd.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

KERNEL_NAME = "python3"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def jupyter_env(tmp_path, monkeypatch) -> dict:
    """Environment variables for Jupyter processes (kernels, Voilà); also applied to ``os.environ``."""
    from ipykernel.kernelspec import install

    prefix = tmp_path / "jupyter-prefix"
    env = {
        "JUPYTER_PATH": str(prefix / "share" / "jupyter"),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter-runtime"),
        "JUPYTER_PLATFORM_DIRS": "1",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        # the kernel imports the rerankpd under test, whatever else is installed
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    install(kernel_name=KERNEL_NAME, prefix=str(prefix))
    spec = json.loads((prefix / "share" / "jupyter" / "kernels" / KERNEL_NAME / "kernel.json").read_text())
    assert spec["argv"][0] == sys.executable, spec["argv"]
    return {**os.environ, **env}
