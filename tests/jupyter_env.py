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


NOTEBOOK_EXTRA = "notebooks"
_STARTUP = """\
# Written by tests/jupyter_env.py: this kernel imports only what `pip install 'rerankpd[{extra}]'` installs.
import importlib.abc
import sys

_BLOCKED = frozenset({blocked!r})


class _NotInstalledByTheExtra(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in _BLOCKED:
            raise ModuleNotFoundError(
                f"No module named {{name!r}} (rerankpd[{extra}] does not install it: add it to that extra "
                f"in setup.cfg if a notebook needs it)", name=name)
        return None


sys.meta_path.insert(0, _NotInstalledByTheExtra())
"""


def _requirements(section: str, key: str) -> list[str]:
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg", encoding="utf-8")
    lines = cfg[section][key].splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


def distributions_of(extra: str) -> set[str]:
    """The (normalised) names of the distributions ``pip install 'rerankpd[extra]'`` brings: the core
    requirements and the extra's in setup.cfg, and theirs in turn as this environment's metadata lists them
    (a requirement that is not installed here adds only its own name)."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    todo = [Requirement(r) for r in _requirements("options", "install_requires")]
    todo += [Requirement(r) for r in _requirements("options.extras_require", extra)]
    done: dict[str, set[str]] = {"rerankpd": set()}
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in done and set(req.extras) <= done[name]:
            continue
        extras = done.setdefault(name, set())
        extras |= set(req.extras)
        try:
            requires = metadata.distribution(name).requires or []
        except metadata.PackageNotFoundError:
            continue
        for line in requires:
            sub = Requirement(line)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in (extras or {""})):
                todo.append(sub)
    return set(done)


def modules_outside(extra: str) -> set[str]:
    """Top-level modules installed in this environment by distributions that ``rerankpd[extra]`` does not
    bring (the standard library, rerankpd and this checkout's own packages are never among them)."""
    from importlib import metadata

    from packaging.utils import canonicalize_name

    allowed = distributions_of(extra)
    own = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
    allowed |= {"pip", "setuptools", "wheel"}  # what a virtualenv comes with
    return {
        module
        for module, dists in metadata.packages_distributions().items()
        if module.isidentifier()
        and module not in sys.stdlib_module_names
        and module not in own
        and not any(canonicalize_name(d) in allowed for d in dists)
    }


def isolated_env(tmp_path: Path, extra: str | None = None) -> dict:
    """The variables of a Jupyter of our own under ``tmp_path``, with a ``python3`` kernel that runs this
    interpreter (installed there).

    With ``extra`` (``"notebooks"``), the kernel can import only the distributions that
    ``pip install 'rerankpd[extra]'`` installs, as on a machine where that is all the user installed: an
    IPython startup file puts a finder first on ``sys.meta_path`` that refuses every other installed
    package with the ``ModuleNotFoundError`` a user would meet.
    """
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
    if extra is not None:
        ipython = tmp_path / "ipython"
        startup = ipython / "profile_default" / "startup"
        startup.mkdir(parents=True)
        (startup / "00-only-the-extra.py").write_text(
            _STARTUP.format(extra=extra, blocked=sorted(modules_outside(extra))), encoding="utf-8"
        )
        env["IPYTHONDIR"] = str(ipython)
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


@pytest.fixture
def notebook_env(tmp_path, monkeypatch) -> dict:
    """Like ``jupyter_env``, for running the example notebooks: the kernel imports only what the core
    package and the ``notebooks`` extra install (the README's one line for opening them)."""
    env = isolated_env(tmp_path, NOTEBOOK_EXTRA)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return {**os.environ, **env}


def execute(nb, cwd: Path, timeout: int = 300):
    """Run every cell of ``nb`` in a fresh kernel (this interpreter) in ``cwd``; the outputs land in ``nb``.

    No timing metadata is recorded, so an executed notebook changes only when its outputs do.
    """
    from nbclient import NotebookClient

    NotebookClient(
        nb,
        timeout=timeout,
        kernel_name=KERNEL_NAME,
        allow_errors=False,
        record_timing=False,
        resources={"metadata": {"path": str(cwd)}},
    ).execute()
    return nb


def is_progress_bar(output: dict) -> bool:
    """A tqdm bar's output (its text has the run's timings, so it is not kept in a committed notebook)."""
    return output.get("output_type") == "display_data" and output.get("data", {}).get("text/plain", "").startswith(
        "rerank ["
    )


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
        os.environ.update(isolated_env(Path(tmp), NOTEBOOK_EXTRA))
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
