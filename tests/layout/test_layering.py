"""Layers point down only: ``data`` <- ``router`` <- ``cascade`` <- ``training``, and
``serving`` <- ``router`` (+ ``cascade``, where the server runs a cascade).

Every ``import`` in every module of the package is read with :mod:`ast` (function-level
imports included: a lazy import is still a dependency) and each arrow between two first-level
packages must be allowed. The top-level modules (``errors``, ``atomic``, ``jsonable``) are below
every package; ``routecast/cli.py`` and ``routecast/__init__.py`` sit above them all.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "routecast"

#: package -> packages it may import (besides itself and the base modules)
ALLOWED: dict[str, set[str]] = {
    "base": set(),
    "data": {"base"},
    "router": {"base", "data"},
    "cascade": {"base", "data", "router"},
    "training": {"base", "data", "router", "cascade"},
    "serving": {"base", "data", "router", "cascade"},
    "top": {"base", "data", "router", "cascade", "training", "serving"},
}
BASE_MODULES = {"errors", "atomic", "jsonable", "cli_options", "_version"}


def layer_of(parts: tuple[str, ...]) -> str:
    """Layer of a module given by its dotted path below ``routecast`` (``('router', 'knn')``)."""
    if not parts or parts[0] in ("__init__", "cli", "__main__"):
        return "top"
    head = parts[0]
    if head in BASE_MODULES:
        return "base"
    if head in ALLOWED:
        return head
    raise AssertionError(f"module routecast.{'.'.join(parts)} is in no declared layer")


def imported_modules(source: str, module: tuple[str, ...], is_package: bool) -> list[tuple[int, tuple[str, ...]]]:
    """(line, dotted path below routecast) of every routecast module ``source`` imports."""
    out = []
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "routecast" or alias.name.startswith("routecast."):
                    out.append((node.lineno, tuple(alias.name.split(".")[1:])))
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against this module's package
                anchor = module if is_package else module[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                target = anchor + tuple((node.module or "").split(".")) if node.module else anchor
                out.append((node.lineno, tuple(p for p in target if p)))
            elif node.module and (node.module == "routecast" or node.module.startswith("routecast.")):
                target = tuple(node.module.split(".")[1:])
                if not target:  # from routecast import x: a subpackage/module, or a root attribute
                    # (the root package is imported with any submodule anyway, so its
                    # attributes such as __version__ are no arrow)
                    out.extend((node.lineno, (alias.name,)) for alias in node.names
                               if _is_module(alias.name))
                else:
                    out.append((node.lineno, target))
    return out


def _is_module(name: str) -> bool:
    return (PACKAGE / f"{name}.py").exists() or (PACKAGE / name / "__init__.py").exists()


def module_graph(package: Path = PACKAGE) -> dict[tuple[str, ...], list[tuple[int, tuple[str, ...]]]]:
    graph = {}
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package).with_suffix("")
        parts = tuple(rel.parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        graph[parts] = imported_modules(path.read_text(encoding="utf-8"), parts, is_package)
    return graph


def upward_imports(graph) -> list[str]:
    bad = []
    for module, imports in graph.items():
        src = layer_of(module)
        for line, target in imports:
            dst = layer_of(target)
            if dst != src and dst not in ALLOWED[src]:
                bad.append(f"routecast/{'/'.join(module) or '__init__'}.py:{line} ({src}) imports "
                           f"routecast.{'.'.join(target)} ({dst})")
    return bad


def package_cycles(graph) -> list[list[str]]:
    """Cycles between first-level packages (an upward arrow always closes one)."""
    edges: dict[str, set[str]] = {}
    for module, imports in graph.items():
        src = layer_of(module)
        for _, target in imports:
            dst = layer_of(target)
            if dst != src:
                edges.setdefault(src, set()).add(dst)
    cycles = []
    for start in edges:
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in edges.get(node, ()):
                if nxt == start:
                    cycles.append(path + [start])
                elif nxt not in path:
                    stack.append((nxt, path + [nxt]))
    return cycles


def test_every_import_points_down():
    bad = upward_imports(module_graph())
    assert bad == [], "upward imports:\n" + "\n".join(bad)


def test_no_cycle_between_layers():
    assert package_cycles(module_graph()) == []


def test_checker_catches_an_upward_import(tmp_path):
    """The check itself can fail: a router module importing training is reported, with its line."""
    for name in ("router", "training"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("", encoding="utf-8")
    (tmp_path / "training" / "tune.py").write_text("import routecast.router.knn\n", encoding="utf-8")
    (tmp_path / "router" / "knn.py").write_text(
        "def fit():\n    from routecast.training.tune import tune\n", encoding="utf-8")
    graph = module_graph(tmp_path)
    assert upward_imports(graph) == [
        "routecast/router/knn.py:2 (router) imports routecast.training.tune (training)"]
    assert sorted(map(tuple, package_cycles(graph))) == [("router", "training", "router"),
                                                         ("training", "router", "training")]


@pytest.mark.parametrize("module,expected", [(("router", "knn"), "router"), (("errors",), "base"),
                                             (("cli",), "top"), ((), "top")])
def test_layer_of(module, expected):
    assert layer_of(module) == expected
