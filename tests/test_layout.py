"""The house by role (issue 15): subpackages whose imports go one way, no import cycle (type-only
and function-level imports included), every module at most 400 lines."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "jobq"
MAX_LINES = 400
# Lower layers first: a module may import its own subpackage and the layers below it.
LAYERS = ["core", "store", "worker", "runtime", ("client",), ("compat", "ops"), "dashboard", "cli"]
# The package's front door and the shims kept for stored targets stand above every layer.
FACADES = {"jobq", "jobq.__main__", "jobq.chunks"}
STANDALONE = {"jobq.examples"}  # job functions for the demo and the docs: import nothing of jobq


def _rank(module: str) -> int:
    sub = module.split(".")[1] if "." in module else ""
    for rank, layer in enumerate(LAYERS):
        if sub in ((layer,) if isinstance(layer, str) else layer):
            return rank
    raise AssertionError(f"{module}: not in a subpackage of a known role ({sub!r})")


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ["jobq", *path.relative_to(PACKAGE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imports(module: str, path: Path, known: set[str]) -> set[str]:
    """Every jobq module that ``module`` imports, anywhere in its body."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "jobq")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "jobq":
                continue
            for alias in node.names:  # `from . import x` imports the module x
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in known else target)
    return {m for m in found if m in known and m != module}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {m: _imports(m, p, set(modules)) for m, p in modules.items()}


def test_every_module_is_at_most_400_lines() -> None:
    long = {m: n for m, p in _modules().items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_every_subpackage_says_what_it_owns() -> None:
    for init in PACKAGE.glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc) > 40, f"{init.parent.name}/__init__.py has no docstring saying what it owns"


def test_imports_go_one_way() -> None:
    wrong = []
    for module, imported in _graph().items():
        if module in FACADES:
            continue
        for target in imported:
            if module in STANDALONE or target in FACADES:
                wrong.append(f"{module} -> {target}")
            elif target in STANDALONE:
                continue
            elif _rank(target) > _rank(module) or (
                _rank(target) == _rank(module) and target.split(".")[1] != module.split(".")[1]
            ):
                wrong.append(f"{module} -> {target}")
    assert sorted(wrong) == []


def test_no_import_cycle() -> None:
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert cycles == []


def test_the_graph_is_read() -> None:
    """The checks above would pass on an empty graph: make sure imports really are found."""
    graph = _graph()
    assert "jobq.core.errors" in graph["jobq.client.queue"]
    assert "jobq.client.aio" in graph["jobq.client.handles"]  # a function-level import counts
    assert len(graph) > 50
