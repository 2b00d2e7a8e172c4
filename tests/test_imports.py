"""The house's layering: every module imports, and no deepscape module imports itself round a
cycle — neither at import time nor through an import deferred into a function."""

from __future__ import annotations

import ast
import graphlib
import importlib
from pathlib import Path

import pytest

import deepscape

PACKAGE = Path(deepscape.__file__).parent


def module_files(package: Path) -> dict[str, Path]:
    """Every module of `package` by its dotted name (a sub-package by its own name)."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


class _Imports(ast.NodeVisitor):
    """The names a module imports, each with whether the import waits inside a function."""

    def __init__(self, name: str, is_package: bool):
        self.package = name if is_package else name.rpartition(".")[0]
        # (a module's dotted name, or (module, name) from `from module import name`; deferred)
        self.found: list[tuple[str | tuple[str, str], bool]] = []
        self.depth = 0

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_If(self, node: ast.If) -> None:
        if ast.unparse(node.test).endswith("TYPE_CHECKING"):  # read by type checkers only
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.found += [(alias.name, self.depth > 0) for alias in node.names]

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:  # relative: from the package, one level up per extra dot
            anchor = self.package.split(".")[: len(self.package.split(".")) - node.level + 1]
            base = ".".join([*anchor, *([node.module] if node.module else [])])
        # `from a import b` imports the module a.b when there is one, else a name of a
        self.found += [((base, alias.name), self.depth > 0) for alias in node.names]


def import_graph(package: Path) -> dict[str, set[str]]:
    """Which of the package's modules each of its modules imports.

    A package's `__init__` may import its own submodules inside a function: that is how a
    registry loads its plugins (deepscape.data's loaders) or a package offers a heavy name lazily
    (deepscape.run_lab), and it cannot run round a cycle at import time. Every other import
    counts, at module level or deferred.
    """
    files = module_files(package)
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        visitor = _Imports(name, is_package)
        visitor.visit(ast.parse(path.read_text(), str(path)))
        graph[name] = set()
        for imported, deferred in visitor.found:
            target = imported
            if isinstance(imported, tuple):
                module, member = imported
                target = f"{module}.{member}" if f"{module}.{member}" in files else module
            if target not in files or target == name:
                continue
            if is_package and deferred and target.startswith(name + "."):
                continue
            graph[name].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph` (its first module repeated at the end), or None."""
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as error:
        return list(reversed(error.args[1]))  # graphlib lists it against the import direction
    return None


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(PACKAGE)


def test_deepscape_has_no_import_cycle(graph):
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " → ".join(cycle or [])


def test_the_check_finds_a_cycle_even_through_a_deferred_import(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("def lazy():\n    from pkg import a\n")
    (package / "a.py").write_text("from pkg.b import thing\n")
    (package / "b.py").write_text("def thing():\n    from . import a\n")
    (package / "c.py").write_text("import pkg\nfrom pkg import a\n")
    graph = import_graph(package)
    expected = {"pkg": set(), "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.a"}, "pkg.c": {"pkg", "pkg.a"}}
    assert graph == expected
    assert find_cycle(graph) in (["pkg.a", "pkg.b", "pkg.a"], ["pkg.b", "pkg.a", "pkg.b"])


def test_cli_commands_import_only_the_shared_module(graph):
    for name in graph:
        if name.startswith("deepscape.cli.") and name != "deepscape.cli.common":
            cli_imports = {m for m in graph[name] if m.startswith("deepscape.cli")}
            assert cli_imports <= {"deepscape.cli.common"}, name


def test_tracking_is_a_leaf(graph):
    """W&B logging imports only the run store it logs: sweeps build on it, not it on them."""
    assert graph["deepscape.tracking"] <= {"deepscape.runs"}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(module_files(PACKAGE)))
def test_every_module_imports(name):
    importlib.import_module(name)
