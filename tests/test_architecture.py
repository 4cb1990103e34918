"""The package's shape as rules a change cannot silently break: no import cycle (function-level imports
included), a registry that knows no family, private Paddle / PaddleNLP API only behind utils/compat."""
import ast
import os
import sys
from typing import Dict, List, Set

PACKAGE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "paddlemix_eva")


def _modules() -> Dict[str, str]:
    found = {}
    for folder, _, files in os.walk(PACKAGE_DIR):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, os.path.dirname(PACKAGE_DIR))[:-3].replace(os.sep, ".")
                found[rel.removesuffix(".__init__")] = path
    return found


MODULES = _modules()


def _imported(module: str, node: ast.AST) -> List[str]:
    """The package modules an import statement loads (a `from pkg import sub` names the submodule)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name in MODULES]
    if node.level:
        parts = module.split(".") if MODULES[module].endswith("__init__.py") else module.split(".")[:-1]
        parts = parts[: len(parts) - (node.level - 1)]
        base = ".".join(parts + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    submodules = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES]
    targets = submodules if len(submodules) == len(node.names) else [base, *submodules]
    return [t for t in targets if t in MODULES]


def _import_graph() -> Dict[str, Set[str]]:
    graph = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                graph[module].update(t for t in _imported(module, node) if t != module)
    return graph


def _cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph)))
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    found: List[List[str]] = []

    def visit(v: str) -> None:
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
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_the_package():
    graph = _import_graph()
    assert len(graph) > 50 and graph["paddlemix_eva.zoo"], "the import graph came out empty: the parser is broken"
    assert _cycles(graph) == []


def test_registry_imports_no_family_code():
    graph = _import_graph()
    for module in ("paddlemix_eva.zoo", "paddlemix_eva.zoo.entry"):
        assert graph[module] <= {"paddlemix_eva.zoo.entry"}, f"{module} imports {sorted(graph[module])}"


PRIVATE_PADDLE_NAMES = {"_legacy_C_ops", "_C_ops", "_rank2params", "_inner_opt", "_parameter_list", "_init_weights"}


def test_private_paddle_api_only_in_compat():
    offenders = []
    for module, path in MODULES.items():
        if module == "paddlemix_eva.utils.compat":
            continue
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                dotted = ast.unparse(node)
                if node.attr in PRIVATE_PADDLE_NAMES or dotted.startswith(("paddle.base.core", "paddle.fluid")):
                    offenders.append(f"{module}:{node.lineno} {dotted}")
    assert offenders == [], "private Paddle API outside utils/compat.py: " + ", ".join(offenders)
