"""The documentation: the README as a short front page, the MkDocs site builds with ``--strict``, every
relative link resolves, and user-facing text holds no internal issue numbers or development history.

The build needs mkdocs-material and mkdocstrings (in the ``test`` and ``docs`` extras); when they are
missing the build test fails, naming the install, rather than skipping.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
README_MAX_LINES = 300

#: Snippets waiting to be placed into the guides: not pages of the site (mkdocs.yml excludes them).
INCOMING = DOCS / "incoming"


def _pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if INCOMING not in p.parents)


def _user_facing() -> list[Path]:
    """Everything a user reads: the README, the site, the notebooks (CHANGELOG and CONTRIBUTING are not)."""
    return [README, *_pages(), *sorted((ROOT / "notebooks").glob("*.ipynb"))]


def _text(path: Path) -> str:
    """A page's text; for a notebook, its cells' sources (not their outputs, which hold colours like #333)."""
    if path.suffix == ".ipynb":
        nb = json.loads(path.read_text(encoding="utf-8"))
        return "\n".join("".join(cell["source"]) for cell in nb["cells"])
    return path.read_text(encoding="utf-8")


_FENCE = re.compile(r"^```.*?^```", re.S | re.M)
_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _links(markdown: str) -> list[str]:
    """The targets of the Markdown links and images outside code."""
    prose = _CODE.sub("", _FENCE.sub("", markdown))
    return _LINK.findall(prose)


def _slugs(markdown: str) -> set[str]:
    """The anchors of a page's headings, as GitHub makes them and as MkDocs (Python-Markdown's toc) does."""
    slugs = set()
    for heading in re.findall(r"^#{1,6}\s+(.*?)\s*$", _FENCE.sub("", markdown), re.M):
        text = re.sub(r"[^\w\s-]", "", heading.replace("`", "")).strip().lower()
        slugs.add(re.sub(r"\s", "-", text))  # GitHub keeps runs of hyphens
        slugs.add(re.sub(r"[-\s]+", "-", text))  # MkDocs collapses them
    return slugs


def test_the_readme_is_a_front_page():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines: move detail into docs/"


def test_the_readme_links_every_guide_and_says_how_to_open_the_notebooks():
    readme = README.read_text(encoding="utf-8")
    linked = {(README.parent / target.split("#")[0]).resolve() for target in _links(readme)}
    missing = [p.relative_to(ROOT).as_posix() for p in _pages() if p.resolve() not in linked]
    assert not missing, f"README.md does not link these pages: {missing}"
    assert "pip install 'rerankpd[notebooks]' && jupyter lab notebooks/" in readme
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        assert f"`{notebook.stem}`" in readme, f"README.md does not list {notebook.name}"
        assert f"`{notebook.stem}`" in (DOCS / "notebooks-and-panel.md").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "path",
    [README, ROOT / "CHANGELOG.md", ROOT / "CONTRIBUTING.md", *_pages()],
    ids=lambda p: p.relative_to(ROOT).as_posix(),
)
def test_every_relative_link_resolves(path):
    text = path.read_text(encoding="utf-8")
    broken = []
    for target in _links(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if not dest.exists():
            broken.append(target)
        elif anchor and dest.suffix == ".md" and anchor not in _slugs(dest.read_text(encoding="utf-8")):
            broken.append(target)
    assert not broken, f"{path.relative_to(ROOT)}: links that lead nowhere: {broken}"


_HISTORY = re.compile(
    r"\bissues?\s+#?\d+|(?<![\w&/])#\d+\b|\bused to\b|\bbefore this change\b|\bwhat it took\b|"
    r"\b(?:this|the last) change\b",
    re.I,
)


@pytest.mark.parametrize("path", _user_facing(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_user_facing_text_holds_no_issue_numbers_or_history(path):
    found = sorted({m.group() for m in _HISTORY.finditer(_text(path))})
    assert not found, f"{path.relative_to(ROOT)}: {found}: internal references and history go to CHANGELOG.md"


def test_every_page_is_in_the_navigation():
    import yaml

    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))

    def walk(node):
        if isinstance(node, str):
            yield node
        elif isinstance(node, list):
            for item in node:
                yield from walk(item)
        elif isinstance(node, dict):
            for value in node.values():
                yield from walk(value)

    in_nav = set(walk(config["nav"]))
    pages = {p.relative_to(DOCS).as_posix() for p in _pages()}
    assert pages - in_nav == set(), "pages missing from mkdocs.yml's nav"
    assert in_nav - pages == set(), "mkdocs.yml's nav names pages that do not exist"


@pytest.mark.slow
def test_the_site_builds_strictly(tmp_path):
    try:
        import material  # noqa: F401
        import mkdocs  # noqa: F401
        import mkdocstrings  # noqa: F401
    except ImportError as exc:
        pytest.fail(f"building the docs needs {exc.name}: pip install -e '.[docs]' (the test extra has it)")
    # mkdocstrings documents this checkout's rerankpd, whatever else is installed
    env = {
        **os.environ,
        "NO_MKDOCS_2_WARNING": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--site-dir",
            str(tmp_path / "site"),
            "--config-file",
            str(ROOT / "mkdocs.yml"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    site = tmp_path / "site"
    assert (site / "index.html").exists() and (site / "reference" / "rerankpd" / "index.html").exists()
    # the API reference is generated from the docstrings of this checkout
    reference = (site / "reference" / "rerankpd" / "index.html").read_text(encoding="utf-8")
    for name in ("rerankpd.rerank", "rerankpd.get_reranker", "rerankpd.cascade_curve"):
        assert f'id="{name}"' in reference, f"{name} is missing from the API reference"
    assert 'id="rerankpd.testing.cranfield_sample"' in (site / "reference" / "testing" / "index.html").read_text(
        encoding="utf-8"
    )
    assert (site / "evaluate.png").exists() and (site / "panel.png").exists()
