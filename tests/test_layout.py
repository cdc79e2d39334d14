"""The layout shows the architecture, and stays that way: read from the source with `ast`, nothing imported.

- no import cycles between the modules of `fundarb_dagster/` and `mpi_jobs/` (imports inside functions count:
  they only hide a circle);
- `core/` is plain Python: it imports neither dagster nor mpi4py; only `mpi_jobs/` imports mpi4py;
- a Dagster domain (`defs/<domain>/`) never imports another domain (shared helpers live in `defs/common/`,
  shared definitions at the `defs/` root), and no `defs/` module imports `definitions.py`;
- no source file over 900 lines and no function over 120 lines.

Each allow-list names a remaining offender and who is moving it; it may only shrink. An entry that no longer
offends fails the test too, so the list is kept honest.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("fundarb_dagster", "mpi_jobs")
MAX_FILE_LINES = 900
MAX_FUNCTION_LINES = 120
SHARED_DEFS = {"common"}  # packages under defs/ that every domain may import

# path relative to the repository -> owner of the move that brings it under the limit
LONG_FILES: dict[str, str] = {}
# "path::function" -> owner
LONG_FUNCTIONS: dict[str, str] = {}
# modules that a remaining cycle runs through (all of them) -> owner of the move that breaks it
CYCLES: dict[tuple[str, ...], str] = {}
# (importing module, imported module) across two Dagster domains -> owner of the move
DOMAIN_IMPORTS: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    tree: ast.Module

    @property
    def rel(self) -> str:
        return self.path.relative_to(ROOT).as_posix()


@cache
def modules() -> dict[str, Module]:
    out: dict[str, Module] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            name = ".".join(parts)
            out[name] = Module(name, path, ast.parse(path.read_text(), filename=str(path)))
    return out


def _is_package(module: Module) -> bool:
    return module.path.name == "__init__.py"


def _from_base(module: Module, node: ast.ImportFrom) -> str:
    """The absolute module of `from <base> import ...`, relative levels resolved."""
    if not node.level:
        return node.module or ""
    base = module.name.split(".")
    if not _is_package(module):
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imported_names(module: Module) -> set[str]:
    """Every module `module` imports anywhere (top level, functions, branches), as absolute names: for
    `from pkg import name`, `pkg.name` when that is a project module, else `pkg`."""
    known = modules()
    names: set[str] = set()
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _from_base(module, node)
            for alias in node.names:
                name = f"{base}.{alias.name}"
                names.add(name if name in known else base)
    return names


def internal_edges(module: Module) -> set[str]:
    """The project modules `module` depends on."""
    known = modules()
    return {name for name in imported_names(module) if name in known and name != module.name}


def import_cycles() -> list[tuple[str, ...]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    graph = {name: internal_edges(module) for name, module in modules().items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[tuple[str, ...]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(tuple(sorted(component)))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return sorted(found)


def _cycle_path(component: tuple[str, ...]) -> str:
    """One concrete loop through a component, for the failure message."""
    members = set(component)
    graph = {name: internal_edges(modules()[name]) & members for name in component}
    start = component[0]
    path = [start]
    seen = {start}
    node = start
    while True:
        nxt = sorted(graph[node])[0] if graph[node] else start
        for candidate in sorted(graph[node]):
            if candidate == start:
                return " -> ".join([*path, start])
            if candidate not in seen:
                nxt = candidate
                break
        if nxt in seen:
            return " -> ".join([*path, nxt])
        path.append(nxt)
        seen.add(nxt)
        node = nxt


def test_the_import_graph_has_no_cycles():
    cycles = import_cycles()
    unexpected = [c for c in cycles if not any(set(entry) <= set(c) for entry in CYCLES)]
    assert not unexpected, "import cycles:\n" + "\n".join(_cycle_path(c) for c in unexpected)
    stale = [entry for entry in CYCLES if not any(set(entry) <= set(c) for c in cycles)]
    assert not stale, f"allow-listed cycles that no longer exist (remove them from CYCLES): {stale}"


def _top(name: str) -> str:
    return name.split(".", 1)[0]


def test_core_imports_neither_dagster_nor_mpi4py():
    offenders = []
    for module in modules().values():
        if not module.name.startswith("fundarb_dagster.core"):
            continue
        for name in imported_names(module):
            if _top(name) in ("dagster", "dagster_duckdb", "mpi4py") or _top(name).startswith("dagster_"):
                offenders.append(f"{module.rel}: {name}")
    assert not offenders, "core/ must stay plain Python:\n" + "\n".join(sorted(offenders))


def test_only_mpi_jobs_imports_mpi4py():
    offenders = [
        f"{module.rel}: {name}"
        for module in modules().values()
        if not module.name.startswith("mpi_jobs")
        for name in imported_names(module)
        if _top(name) == "mpi4py"
    ]
    assert not offenders, "importing mpi4py initialises MPI:\n" + "\n".join(sorted(offenders))


def _domain(name: str) -> str | None:
    """`raw` for fundarb_dagster.defs.raw.assets; None outside a domain package (defs root, common)."""
    parts = name.split(".")
    if parts[:2] != ["fundarb_dagster", "defs"] or len(parts) < 3:
        return None
    package = ".".join(parts[:3])
    module = modules().get(package)
    if module is None or not _is_package(module) or parts[2] in SHARED_DEFS:
        return None
    return parts[2]


def test_dagster_domains_never_import_each_other():
    found = set()
    for module in modules().values():
        own = _domain(module.name)
        if own is None:
            continue
        for target in internal_edges(module):
            other = _domain(target)
            if other is not None and other != own:
                found.add((module.rel, target))
    unexpected = sorted(found - set(DOMAIN_IMPORTS))
    assert not unexpected, "move what is shared into defs/common or core:\n" + "\n".join(
        f"{a} imports {b}" for a, b in unexpected
    )
    stale = sorted(set(DOMAIN_IMPORTS) - found)
    assert not stale, f"allow-listed domain imports that are gone (remove them from DOMAIN_IMPORTS): {stale}"


def test_no_defs_module_imports_definitions():
    offenders = [
        module.rel
        for module in modules().values()
        if module.name.startswith("fundarb_dagster.defs") and "fundarb_dagster.definitions" in internal_edges(module)
    ]
    assert not offenders, f"definitions.py is the root: nothing under defs/ imports it: {offenders}"


def _long_files() -> dict[str, int]:
    out = {}
    for module in modules().values():
        lines = len(module.path.read_text().splitlines())
        if lines > MAX_FILE_LINES:
            out[module.rel] = lines
    return out


def _long_functions() -> dict[str, int]:
    out = {}
    for module in modules().values():
        for node in ast.walk(module.tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    out[f"{module.rel}::{node.name}"] = lines
    return out


@pytest.mark.parametrize(
    ("found", "allowed", "limit", "what"),
    [
        (_long_files, LONG_FILES, MAX_FILE_LINES, "files"),
        (_long_functions, LONG_FUNCTIONS, MAX_FUNCTION_LINES, "functions"),
    ],
    ids=["files", "functions"],
)
def test_no_file_or_function_is_too_long(found, allowed, limit, what):
    current = found()
    unexpected = {k: v for k, v in current.items() if k not in allowed}
    assert not unexpected, f"{what} over {limit} lines (split by concern): {unexpected}"
    stale = sorted(set(allowed) - set(current))
    assert not stale, f"allow-listed {what} now within {limit} lines (remove them from the list): {stale}"


def test_the_graph_reader_sees_function_level_imports():
    # The cycle test is only as good as the reader: an import inside a function must be an edge.
    cli = modules()["fundarb_dagster.cli"]
    assert "fundarb_dagster.demo" in internal_edges(cli)
