"""The example notebooks: stored without outputs, and each runs top to bottom offline in a real kernel.

Each notebook asserts its own claims in its cells (the seed's best answer, requests saved by the cache, the
panel's top row), so executing it is the test; here we also check what a reader would see in the outputs.
"""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.jupyter_env import KERNEL_NAME, jupyter_env  # noqa: F401  (fixture)

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
TIMEOUT = 300  # per cell; the e5 model loads in about two seconds


def _execute(nb: nbformat.NotebookNode, cwd: Path) -> nbformat.NotebookNode:
    client = NotebookClient(nb, timeout=TIMEOUT, kernel_name=KERNEL_NAME, allow_errors=False,
                            resources={"metadata": {"path": str(cwd)}})
    client.execute()
    return nb


def _outputs(nb: nbformat.NotebookNode) -> list[dict]:
    return [out for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])]


def _html(nb: nbformat.NotebookNode) -> str:
    return "\n".join(out.get("data", {}).get("text/html", "") for out in _outputs(nb))


def test_the_four_notebooks_are_there():
    assert [p.name for p in NOTEBOOKS] == [
        "01_quickstart.ipynb",
        "02_per_row_queries_and_top_n.ipynb",
        "03_panel.ipynb",
        "04_caching_and_cost.ipynb",
        "06_cascade.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: strip the outputs"
    assert "widgets" not in nb.metadata, f"{path.name}: strip the saved widget state"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path, tmp_path, jupyter_env):
    nb = _execute(nbformat.read(path, as_version=4), tmp_path)
    errors = [out for out in _outputs(nb) if out.get("output_type") == "error"]
    assert not errors
    html = _html(nb)
    if path.stem == "01_quickstart":
        assert "rerankpd-table" in html and "rerankpd-bar" in html   # rerankpd.show drew score bars
        assert "sk-demo-not-a-real-key" not in json.dumps(_outputs(nb))  # the key never shows
    if path.stem == "02_per_row_queries_and_top_n":
        assert html.count("<svg class=\"rerankpd-hist\"") == 2      # one histogram per question
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
    nb.cells = [nbformat.v4.new_code_cell(
        "import pandas as pd, rerankpd\n"
        "out = pd.DataFrame({'text': ['cats purr', 'dogs bark']}).rerank('cats', reranker='bm25', progress=True)\n"
    )]
    _execute(nb, tmp_path)
    data = [out.get("data", {}) for out in _outputs(nb)]
    assert any("application/vnd.jupyter.widget-view+json" in d for d in data), data
    assert any("rerank [bm25]" in d.get("text/plain", "") for d in data), data
