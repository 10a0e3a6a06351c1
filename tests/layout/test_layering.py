"""Layers point down only: ``data`` <- ``core`` (the kernel) <- ``evaluation`` <- ``router`` <-
``cascade`` <- ``training``, and ``serving`` <- ``core`` + ``router`` (+ ``cascade``, where the
server runs a cascade).

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
    "core": {"base", "data"},
    "evaluation": {"base", "data", "core"},
    "router": {"base", "data", "core", "evaluation"},
    "cascade": {"base", "data", "core", "evaluation", "router"},
    "training": {"base", "data", "core", "evaluation", "router", "cascade"},
    "serving": {"base", "data", "core", "router", "cascade"},
    "top": {"base", "data", "core", "evaluation", "router", "cascade", "training", "serving"},
}
BASE_MODULES = {"errors", "atomic", "jsonable", "cli_options", "progress", "_version"}


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


# ---- file level: no cycle between files, no private name across modules, no oversized file ----

#: a module longer than this is several concepts in one file
MAX_FILE_LINES = 600


def _resolve(target: tuple[str, ...], modules: set[tuple[str, ...]]) -> tuple[str, ...] | None:
    """The module an import names: ``('router', 'knn', 'KNNRouter')`` -> ``('router', 'knn')``."""
    while target and target not in modules:
        target = target[:-1]
    return target if target else None


def file_cycles(graph) -> list[list[str]]:
    """Strongly connected groups of files (Tarjan): every file in one imports, perhaps lazily and
    through others, every other file in it."""
    modules = set(graph)
    edges = {m: sorted({t for _, imp in imps if (t := _resolve(imp, modules)) and t != m})
             for m, imps in graph.items()}
    index: dict = {}
    low: dict = {}
    stack: list = []
    on_stack: set = set()
    groups: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(edges[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(edges.get(child, ()))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(".".join(member) or "__init__")
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return sorted(groups)


def private_imports(package: Path = PACKAGE) -> list[str]:
    """``from routecast.x import _name``: a private name used outside the module that owns it."""
    bad = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("routecast")):
                bad.extend(f"routecast/{path.relative_to(package).as_posix()}:{node.lineno} imports "
                           f"{node.module}.{alias.name}" for alias in node.names
                           if alias.name.startswith("_") and not alias.name.startswith("__"))
    return bad


def oversized_files(package: Path = PACKAGE) -> list[str]:
    return [f"{path.relative_to(package).as_posix()}: {n} lines" for path in sorted(package.rglob("*.py"))
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_FILE_LINES]


def test_no_cycle_between_files():
    assert file_cycles(module_graph()) == []


def test_no_private_name_imported_from_another_module():
    assert private_imports() == []


def test_no_file_over_the_size_limit():
    assert oversized_files() == []


def test_file_checks_catch_a_lazy_cycle_and_a_private_import(tmp_path):
    """The checks themselves can fail: a lazy import closing a cycle, and a private name."""
    (tmp_path / "router").mkdir()
    (tmp_path / "router" / "__init__.py").write_text("", encoding="utf-8")
    (tmp_path / "router" / "a.py").write_text("from routecast.router.b import make\n", encoding="utf-8")
    (tmp_path / "router" / "b.py").write_text(
        "def make():\n    from routecast.router.a import _helper\n", encoding="utf-8")
    (tmp_path / "router" / "c.py").write_text("import routecast.router.a\n", encoding="utf-8")
    assert file_cycles(module_graph(tmp_path)) == [["router.a", "router.b"]]
    assert private_imports(tmp_path) == ["routecast/router/b.py:2 imports routecast.router.a._helper"]
    (tmp_path / "router" / "c.py").write_text("x = 1\n" * (MAX_FILE_LINES + 1), encoding="utf-8")
    assert oversized_files(tmp_path) == [f"router/c.py: {MAX_FILE_LINES + 1} lines"]
