"""The package's layering contract (README, Architecture), checked on the source.

Every import inside ``lib/cortexzoo`` counts, function-level (lazy) imports included:
a lazy import still ties the two modules together. The contract:

* stages import only from stages below them (``LAYERS``, lowest first); stages on one
  row are independent rooms and do not import each other;
* no import circle between modules;
* argparse lives in ``cortexzoo.cli`` only, and no library module imports the CLI;
* ``jobs/*.py`` import nothing of cortexzoo but ``cortexzoo.cli``;
* no module over ``MAX_LINES`` lines, except the one algorithm the README names.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys

import pytest

ROOT = os.path.join(os.path.dirname(__file__), "..")
LIB = os.path.join(ROOT, "lib")

#: Lowest first. A stage may import from any row below its own.
LAYERS: list[tuple[str, ...]] = [
    ("core",),
    ("mapping",),
    ("data",),
    ("zoo",),
    ("features",),
    ("store",),
    ("report",),
    ("scan", "training", "twins"),
    ("probe", "decode", "control"),
    ("cli",),
]
MAX_LINES = 600
#: One algorithm that needs the room: the exact leave-one-out ridge solvers (README).
LONG_MODULES = {"cortexzoo.mapping.solvers"}


def _modules() -> dict[str, str]:
    mods = {}
    for d, _, files in os.walk(os.path.join(LIB, "cortexzoo")):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(d, f)
                name = os.path.relpath(path, LIB)[:-3].replace(os.sep, ".")
                mods[name[:-len(".__init__")] if name.endswith(".__init__") else name] = path
    return mods


MODULES = _modules()


def _imports(module: str, path: str) -> set[str]:
    """cortexzoo modules imported by ``module`` (the most specific module named)."""
    tree = ast.parse(open(path).read(), path)
    base = module if path.endswith("__init__.py") else module.rsplit(".", 1)[0]
    out: set[str] = set()
    for node in _runtime_nodes(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = base.split(".")
                parts = parts[:len(parts) - (node.level - 1)]
                mod = ".".join(parts + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            names = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in MODULES else mod
                     for a in node.names]
        for n in names:
            if not n.startswith("cortexzoo"):
                continue
            while n not in MODULES and "." in n:
                n = n.rsplit(".", 1)[0]
            if n in MODULES and n != module:
                out.add(n)
    return out


def _runtime_nodes(tree: ast.AST):
    """Every node except those under ``if TYPE_CHECKING:`` (annotations only, never run)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                todo.extend(child.orelse)
                continue
            todo.append(child)


GRAPH = {m: _imports(m, p) for m, p in MODULES.items()}


def _stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _rank(stage: str) -> int:
    for i, row in enumerate(LAYERS):
        if stage in row:
            return i
    raise AssertionError(f"stage {stage!r} is not in the layering contract (tests/test_layering.py)")


def test_every_stage_is_in_the_contract():
    for m in MODULES:
        if _stage(m) and m.count(".") >= 1 and os.path.isdir(os.path.join(LIB, "cortexzoo", _stage(m))):
            _rank(_stage(m))


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for m, deps in sorted(graph.items()):
        a = _stage(m)
        if not a:
            continue
        for d in sorted(deps):
            b = _stage(d)
            if b and a != b and _rank(b) >= _rank(a):
                bad.append(f"{m} -> {d}")
    return bad


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            visit(v)
    return cycles


def test_imports_only_run_downward():
    bad = upward_imports(GRAPH)
    assert not bad, "imports that run upward or between sibling rooms:\n" + "\n".join(bad)


def test_no_import_circles():
    assert not import_circles(GRAPH), f"import circles: {import_circles(GRAPH)}"


def test_the_checks_catch_what_they_forbid():
    planted = {"cortexzoo.data.a": {"cortexzoo.store.b"}, "cortexzoo.store.b": set(),
               "cortexzoo.scan.c": {"cortexzoo.twins.d"}, "cortexzoo.twins.d": set(),
               "cortexzoo.zoo.e": {"cortexzoo.zoo.f"}, "cortexzoo.zoo.f": {"cortexzoo.zoo.e"}}
    assert upward_imports(planted) == ["cortexzoo.data.a -> cortexzoo.store.b",
                                       "cortexzoo.scan.c -> cortexzoo.twins.d"]
    assert import_circles(planted) == [["cortexzoo.zoo.e", "cortexzoo.zoo.f"]]
    # lazy imports count; TYPE_CHECKING ones do not
    tree = ast.parse("def f():\n    import cortexzoo.store\nif TYPE_CHECKING:\n    import cortexzoo.scan\n")
    seen = [n.names[0].name for n in _runtime_nodes(tree) if isinstance(n, ast.Import)]
    assert seen == ["cortexzoo.store"]


def test_argparse_only_in_cli_and_no_library_imports_the_cli():
    bad = []
    for m, path in MODULES.items():
        if _stage(m) == "cli":
            continue
        tree = ast.parse(open(path).read(), path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import) and any(a.name == "argparse" for a in node.names):
                bad.append(f"{m} imports argparse")
        bad += [f"{m} imports {d}" for d in GRAPH[m] if _stage(d) == "cli"]
    assert not bad, bad


def test_jobs_are_thin():
    jobs = os.path.join(ROOT, "jobs")
    for f in sorted(os.listdir(jobs)):
        if not f.endswith(".py"):
            continue
        tree = ast.parse(open(os.path.join(jobs, f)).read())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cortexzoo"):
                assert node.module == "cortexzoo.cli", f"jobs/{f} imports {node.module}"
        assert len(open(os.path.join(jobs, f)).read().splitlines()) < 40, f"jobs/{f} is not thin"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_size(module):
    n = len(open(MODULES[module]).read().splitlines())
    if module in LONG_MODULES:
        return
    assert n <= MAX_LINES, f"{module} has {n} lines (more than {MAX_LINES}): split it by concern"


def test_building_the_parser_imports_no_stage():
    code = ("import sys, cortexzoo.cli as c; c.build_parser(); "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith(('cortexzoo.', 'torch', "
            "'ray', 'sklearn')))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    heavy = [m for m in out if not m.startswith(("cortexzoo.cli", "cortexzoo.core"))]
    assert not heavy, f"building the CLI parser imported {heavy}"


@pytest.mark.parametrize("module", ["cortexzoo.scan.workers", "cortexzoo.scan.encoders"])
def test_what_scoring_tasks_unpickle_imports_no_torch(module):
    # scoring and encoder-fitting tasks run in Ray workers that never load a network:
    # torch costs each such worker seconds and hundreds of MB
    code = f"import sys, {module}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
