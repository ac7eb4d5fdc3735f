"""A Jupyter environment of the tests' own: a ``python3`` kernelspec that runs this interpreter.

``python -m tests.jupyter_env notebooks/*.ipynb`` executes the notebooks the same way and saves them with
their outputs (they are committed executed, so a reader on GitHub sees the results).

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


def _installed_data_dirs() -> list[str]:
    """``share/jupyter`` of every prefix whose site-packages this interpreter imports from (Voilà's templates
    live there), for virtualenvs that take their packages from another environment."""
    dirs = []
    for entry in sys.path:
        parts = Path(entry).parts
        if len(parts) > 3 and parts[-1] == "site-packages" and parts[-3] == "lib":
            data = Path(*parts[:-3]) / "share" / "jupyter"
            if data.is_dir():
                dirs.append(str(data))
    return list(dict.fromkeys(dirs))


def isolated_env(tmp_path: Path) -> dict:
    """The variables of a Jupyter of our own under ``tmp_path``, with a ``python3`` kernel that runs this
    interpreter (installed there)."""
    from ipykernel.kernelspec import install

    prefix = tmp_path / "jupyter-prefix"
    env = {
        "JUPYTER_PATH": os.pathsep.join([str(prefix / "share" / "jupyter"), *_installed_data_dirs()]),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter-runtime"),
        "JUPYTER_PLATFORM_DIRS": "1",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        # a score cache of its own: the user's default one may hold the notebooks' scores from another run
        "RERANKPD_CACHE_DIR": str(tmp_path / "rerankpd-cache"),
        # the kernel imports the rerankpd under test, whatever else is installed
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    install(kernel_name=KERNEL_NAME, prefix=str(prefix))
    spec = json.loads((prefix / "share" / "jupyter" / "kernels" / KERNEL_NAME / "kernel.json").read_text())
    assert spec["argv"][0] == sys.executable, spec["argv"]
    return env


@pytest.fixture
def jupyter_env(tmp_path, monkeypatch) -> dict:
    """Environment variables for Jupyter processes (kernels, Voilà); also applied to ``os.environ``."""
    env = isolated_env(tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return {**os.environ, **env}


def execute(nb, cwd: Path, timeout: int = 300):
    """Run every cell of ``nb`` in a fresh kernel (this interpreter) in ``cwd``; the outputs land in ``nb``.

    No timing metadata is recorded, so an executed notebook changes only when its outputs do.
    """
    from nbclient import NotebookClient

    NotebookClient(nb, timeout=timeout, kernel_name=KERNEL_NAME, allow_errors=False, record_timing=False,
                   resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def is_progress_bar(output: dict) -> bool:
    """A tqdm bar's output (its text has the run's timings, so it is not kept in a committed notebook)."""
    return output.get("output_type") == "display_data" and \
        output.get("data", {}).get("text/plain", "").startswith("rerank [")


def without_progress_bars(nb):
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [out for out in cell.outputs if not is_progress_bar(out)]
    return nb


def write_executed(paths: list[Path]) -> None:
    """Execute the notebooks at ``paths`` offline and save them with their outputs (no saved widget state):
    ``python -m tests.jupyter_env notebooks/*.ipynb``."""
    import tempfile

    import nbformat

    with tempfile.TemporaryDirectory(prefix="rerankpd-notebooks-") as tmp:
        os.environ.update(isolated_env(Path(tmp)))
        for name in [v for v in os.environ if v.endswith("_API_KEY") or v.endswith("_BASE_URL")]:
            del os.environ[name]
        for path in paths:
            os.environ["RERANKPD_CACHE_DIR"] = os.path.join(tmp, "cache", Path(path).stem)  # each starts empty
            nb = nbformat.read(path, as_version=4)
            without_progress_bars(execute(nb, Path(tmp)))
            nb.metadata.pop("widgets", None)
            nbformat.write(nb, path)
            print(f"executed {path}")


if __name__ == "__main__":
    write_executed([Path(p) for p in sys.argv[1:]])
