"""The package's shape: no import circle, nothing imports a module above it, the public surface documented.

The import graph is read from the package's own import statements (``ast``: every ``import`` and ``from ...
import`` anywhere in a module, inside functions too, since an import inside a function can hide a circle).
Only imports under ``if TYPE_CHECKING:`` are left out: they never run, so they make no circle.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pathlib

import pytest

import rerankpd

PACKAGE = pathlib.Path(rerankpd.__file__).parent

#: The floors, lowest first: a module may import its own floor or one below, never one above.
#: A name matches a module and everything under it; the longest match wins.
LAYERS: list[list[str]] = [
    ["rerankpd.errors"],
    ["rerankpd.config", "rerankpd.redact", "rerankpd.core", "rerankpd.pairs", "rerankpd.testing"],
    ["rerankpd.cache"],
    ["rerankpd.rerankers"],
    ["rerankpd.run"],
    ["rerankpd.api"],
    ["rerankpd.evaluation", "rerankpd.notebook", "rerankpd.dask"],
    ["rerankpd.accessor"],
    ["rerankpd", "rerankpd.cli", "rerankpd.__main__"],
]

#: The documented public surface: these modules, and every name in their ``__all__``.
PUBLIC = ["rerankpd", "rerankpd.rerankers", "rerankpd.errors", "rerankpd.testing", "rerankpd.dask"]


def modules() -> dict[str, pathlib.Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ["rerankpd", *path.relative_to(PACKAGE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and (
        (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
        or (isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING")
    )


def import_graph() -> dict[str, set[str]]:
    """module -> the package's modules it imports (a name imported from a package that is a submodule counts
    as that submodule; otherwise as the package itself)."""
    mods = modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        targets: set[str] = set()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        typing_only = {
            id(n) for block in ast.walk(tree) if _is_type_checking(block) for stmt in block.body for n in ast.walk(stmt)
        }
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name.split(".")[0] == "rerankpd")
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                if source.split(".")[0] != "rerankpd":
                    continue
                for alias in node.names:
                    sub = f"{source}.{alias.name}"
                    targets.add(sub if sub in mods else source)
        graph[name] = {t for t in targets if t != name and t in mods}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def floor(module: str) -> int:
    best, level = -1, None
    for i, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best:
                best, level = len(name), i
    assert level is not None, f"{module} is on no floor: add it to LAYERS"
    return level


def test_the_graph_sees_imports_inside_functions():
    graph = import_graph()
    # rerankpd.run.cascade imports the plain pipeline at the top; the panel imports rerank inside a function
    assert "rerankpd.run.pipeline" in graph["rerankpd.run.cascade"]
    assert "rerankpd.api" in graph["rerankpd.notebook.panel"]


def test_no_import_circle():
    assert cycles(import_graph()) == []


def test_cycles_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_nothing_imports_a_module_above_it():
    upward = [
        f"{m} (floor {floor(m)}) imports {t} (floor {floor(t)})"
        for m, targets in import_graph().items()
        for t in sorted(targets)
        if floor(t) > floor(m)
    ]
    assert upward == []


def test_every_module_is_on_a_floor():
    for module in modules():
        floor(module)


def test_at_most_twelve_modules_at_the_top():
    top = sorted(p.stem for p in PACKAGE.glob("*.py"))
    assert len(top) <= 12, top


@pytest.mark.parametrize("module", PUBLIC)
def test_each_public_name_is_importable_and_documented(module):
    mod = importlib.import_module(module)
    assert (mod.__doc__ or "").strip(), f"{module} has no docstring"
    names = getattr(mod, "__all__", None)
    assert names, f"{module} declares no __all__"
    for name in names:
        value = getattr(mod, name)  # importable
        if name.startswith("__") or not (inspect.isclass(value) or inspect.isfunction(value)):
            continue
        assert (inspect.getdoc(value) or "").strip(), f"{module}.{name} has no docstring"


def test_the_package_all_is_sorted():
    assert rerankpd.__all__ == sorted(rerankpd.__all__)


def test_internal_subpackages_say_they_are_private():
    for package in ("core", "run", "evaluation", "notebook", "cli", "rerankers/http", "rerankers/llm"):
        doc = ast.get_docstring(ast.parse((PACKAGE / package / "__init__.py").read_text(encoding="utf-8")))
        assert doc and doc.startswith("Private"), package
