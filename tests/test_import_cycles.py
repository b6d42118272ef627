"""No import cycles between the package's modules, and every module imports on its own.

The graph has an edge A -> B for every ``import`` of module B written anywhere in module A, inside
functions too (an import deferred into a function still ties the two modules together: whichever
is imported first must not need the other half-initialised).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "imbench"

#: Cycles accepted for now (none).
KNOWN: set[frozenset[str]] = set()


def modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return out


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    graph: dict[str, set[str]] = {name: set() for name in mods}
    for name, (path, is_package) in mods.items():
        package = name if is_package else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                targets = [module] + [f"{module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            graph[name] |= {t for t in targets if t in mods and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected component of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_deferred_imports():
    graph = import_graph()
    assert "imbench.methods.losses" in graph["imbench.methods"]  # imported inside build_loss
    assert "imbench.config" in graph["imbench.plan"]
    assert "imbench.plan" not in graph["imbench.models"]  # the former models <-> plan cycle
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles():
    found = [c for c in cycles(import_graph()) if frozenset(c) not in KNOWN]
    assert found == [], found


def test_registry_modules_import_first_in_a_fresh_interpreter():
    # each of these can be the first module a process imports (the plug-in API, the registry,
    # the modules found in methods/builtin, the workflow's checks, the plan)
    for module in (
        "imbench.plugins",
        "imbench.methods.api",
        "imbench.methods.builtin",
        "imbench.methods",
        "imbench.config",
        "imbench.grid",
        "imbench.plan",
        "imbench.docs",
    ):
        proc = subprocess.run(
            [sys.executable, "-c", f"import {module}, imbench.methods as m; assert m.METHODS"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, (module, proc.stderr[-2000:])
