"""The package's layers (DESIGN.md) as a test: walk every import of every module (lazy imports
inside functions included), fail on an import cycle and on an import that goes up a layer.

    deepcalc (root __init__)   may import anything; so may the command line (cli) and the
                               experiments it runs (applications of the whole library)
    user API                   nn, optim, data, train, serialization, cli, ...
    func                       transforms (grad, vjp, jvp, jacrev, hessian, ...), testing
    ops                        primitives, creation, memory: the only users of deepcalc._core
    autodiff                   Tensor, Node, Primitive, apply, the reverse engine
    deepcalc._core             the native module
"""
from __future__ import annotations

import ast
import os

import deepcalc

PKG_DIR = os.path.dirname(deepcalc.__file__)

LAYERS = {"_core": 0, "autodiff": 1, "ops": 2, "creation": 2, "memory": 2, "func": 3,
          "testing": 3, "cli": 5, "experiments": 5}
USER_API = 4          # every other top-level module or subpackage
ROOT = 5              # deepcalc/__init__.py


def _modules():
    """Dotted name -> file of every Python module in the package."""
    mods = {}
    for dirpath, _, files in os.walk(PKG_DIR):
        for f in files:
            if not f.endswith(".py"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, f), os.path.dirname(PKG_DIR))
            name = rel[:-3].replace(os.sep, ".")
            if name.endswith(".__init__"):
                name = name[: -len(".__init__")]
            mods[name] = os.path.join(dirpath, f)
    mods["deepcalc._core"] = None
    return mods


def _imports(name, path, mods):
    """The package modules ``name`` imports (``from A import B`` counts as A.B when that is a
    module of the package, else as A)."""
    tree = ast.parse(open(path).read())
    is_pkg = path.endswith("__init__.py")
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parent = base[: len(base) - node.level + 1]
                src = ".".join(parent + ([node.module] if node.module else []))
            else:
                src = node.module or ""
            targets = [f"{src}.{a.name}" if f"{src}.{a.name}" in mods else src
                       for a in node.names]
        else:
            continue
        out.update(t for t in targets if t in mods and t != name)
    return out


def _layer(name):
    parts = name.split(".")
    if parts == ["deepcalc"]:
        return ROOT
    return LAYERS.get(parts[1], USER_API)


def _graph():
    mods = _modules()
    return {m: _imports(m, p, mods) for m, p in mods.items() if p is not None}


def test_no_upward_imports():
    bad = []
    for mod, deps in _graph().items():
        for dep in deps:
            if _layer(dep) > _layer(mod):
                bad.append(f"{mod} (layer {_layer(mod)}) imports {dep} (layer {_layer(dep)})")
    assert not bad, "imports that go up a layer:\n" + "\n".join(sorted(bad))


def test_only_ops_call_the_native_module():
    bad = [m for m, deps in _graph().items()
           if "deepcalc._core" in deps and _layer(m) not in (LAYERS["ops"], ROOT)]
    assert not bad, f"modules above ops that call deepcalc._core directly: {sorted(bad)}"


def test_no_import_cycles():
    graph = _graph()
    state, stack, cycles = {}, [], []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == "open":
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_walk_sees_imports():
    """The checks above cannot pass vacuously: the walk finds known edges."""
    graph = _graph()
    assert "deepcalc.autodiff.graph" in graph["deepcalc.autodiff.engine"]
    assert "deepcalc._core" in graph["deepcalc.ops.linear"]
    assert "deepcalc.ops.shape" in graph["deepcalc.ops.elementwise"]
