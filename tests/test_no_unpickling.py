"""jobq never unpickles or evaluates stored data: a walk over the package's syntax trees.

What the walk refuses anywhere in ``jobq/``: importing ``pickle`` (``_pickle``, ``cPickle``),
``marshal``, ``shelve``, ``dill``, ``cloudpickle``, ``jsonpickle`` or ``copyreg``; calling
``eval``, ``exec``, ``compile`` or ``__import__``; any ``.loads``/``.load`` on a pickler.

What it allows, and why:
- ``multiprocessing`` pipes (``Connection.send``/``recv``) pickle the messages between a
  supervisor and the worker processes it started itself (named tuples of ids and JSON text).
  Those bytes never come from, nor go to, the database; stored arguments and results are
  JSON. The worker pool writes its task batches in that same framing itself
  (``multiprocessing.reduction.ForkingPickler.dumps``, non-blocking): allowed in
  ``workerpool.py`` only, and only ``dumps``.
- ``importlib.import_module`` is how a job's target is found; it may appear only in the two
  resolvers (``models.resolve_target`` and ``allow.resolve_allowed``, which the allow-list
  gates), so no other code path imports a name read from the database; and in the package's
  ``__getattr__``, which imports jobq's own modules from a fixed table.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "jobq"
BANNED_MODULES = {
    "pickle",
    "_pickle",
    "cPickle",
    "marshal",
    "shelve",
    "dill",
    "cloudpickle",
    "jsonpickle",
    "copyreg",
}
PIPE_PICKLER_FILES = {"workerpool.py"}  # may import multiprocessing.reduction, to dumps only
PICKLERS = {"ForkingPickler", "pickle", "reduction", "_pickle"}
BANNED_CALLS = {"eval", "exec", "compile", "__import__"}
IMPORT_MODULE_ALLOWED = {("models.py", "resolve_target"), ("allow.py", "resolve_allowed"), ("__init__.py", "__getattr__")}


def findings(source: str, filename: str) -> list[str]:
    """Every banned use in ``source`` as 'file:line: what'."""
    tree = ast.parse(source, filename)
    out: list[str] = []
    functions: dict[ast.AST, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for child in ast.walk(node):
                functions[child] = node.name  # ast.walk is breadth-first: the innermost wins
    for node in ast.walk(tree):
        where = f"{filename}:{getattr(node, 'lineno', '?')}"
        pipe_ok = Path(filename).name in PIPE_PICKLER_FILES
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in BANNED_MODULES or alias.name.split(".")[0] in BANNED_MODULES:
                    out.append(f"{where}: import {alias.name}")
                if alias.name == "multiprocessing.reduction" and not pipe_ok:
                    out.append(f"{where}: import {alias.name} outside the worker pool")
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            names = {f"{module}.{a.name}" for a in node.names}
            if module in BANNED_MODULES or module.split(".")[0] in BANNED_MODULES or names & BANNED_MODULES:
                out.append(f"{where}: from {module} import {', '.join(a.name for a in node.names)}")
            if ("multiprocessing.reduction" in names or module == "multiprocessing.reduction") and not pipe_ok:
                out.append(f"{where}: from {module} import ... outside the worker pool")
            if any(a.name in BANNED_CALLS for a in node.names):
                out.append(f"{where}: from {module} import a banned builtin")
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
            if isinstance(func, ast.Name) and name in BANNED_CALLS:
                out.append(f"{where}: {name}()")
            if isinstance(func, ast.Attribute) and name in BANNED_CALLS and isinstance(func.value, ast.Name):
                if func.value.id in ("builtins", "__builtins__"):
                    out.append(f"{where}: {func.value.id}.{name}()")
            if (
                isinstance(func, ast.Attribute)
                and name in ("loads", "load", "Unpickler")
                and isinstance(func.value, ast.Name)
                and func.value.id in PICKLERS
            ):
                out.append(f"{where}: {func.value.id}.{name}()")
            if name == "import_module":
                key = (Path(filename).name, functions.get(node, ""))
                if key not in IMPORT_MODULE_ALLOWED:
                    out.append(f"{where}: import_module outside the target resolvers")
    return out


def test_the_walk_catches_what_it_looks_for() -> None:
    bad = (
        "import pickle\nimport marshal as m\nfrom shelve import open\nfrom multiprocessing import reduction\n"
        "import builtins\n"
        "def f(x):\n    eval(x)\n    exec(x)\n    builtins.eval(x)\n    __import__(x)\n"
        "    importlib.import_module(x)\n"
        "    ForkingPickler.loads(x)\n"
    )
    found = findings(bad, "evil.py")
    assert len(found) == 10, found
    pipe = "from multiprocessing.reduction import ForkingPickler\n"
    assert findings(pipe + "ForkingPickler.dumps(1)\n", "workerpool.py") == []
    assert len(findings(pipe + "ForkingPickler.loads(b'')\n", "workerpool.py")) == 1
    assert len(findings(pipe, "supervisor.py")) == 1
    assert findings("import json\njson.loads('1')\n", "ok.py") == []
    assert findings("def resolve_target(t):\n    importlib.import_module(t)\n", "models.py") == []


def test_package_never_unpickles_or_evaluates() -> None:
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 20  # the walk really reads the package
    problems = [p for f in files for p in findings(f.read_text(), str(f.relative_to(PACKAGE.parent)))]
    assert problems == []
