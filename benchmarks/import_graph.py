"""The project's import graph in figures: modules, import cycles, imports of private names.

Context:
    Issue 27 asks for the import graph's figures before and after the kernels corner was made
    legible. This script measures them from the source alone (``ast``; nothing is imported or
    run), so it gives the same figures on any machine, with or without Triton or a GPU.

What it counts, per top-level package (``probe``, ``circuits``, ``apps``, ``data``; tests and
benchmarks are not modules of the graph):

    modules   ``.py`` files (a package's ``__init__.py`` is the package's module).
    lines     their lines.
    imports   edges A -> B, A's source names project module B in an import statement, at any
              depth (a function-level import is an edge too: it still ties the two files). An
              implicit import of a parent package (``import a.b`` runs ``a/__init__.py``) is not
              an edge; ``importlib.import_module("a.b")`` by a string is not one either.
    cycles    strongly connected components of more than one module (files that import each
              other in a loop, however long the loop), and the modules inside them.
    private   uses of another module's private name (``_name``, not ``__dunder__``):
              ``from a.b import _name`` and ``b._name`` where ``b`` is bound to a project module by
              an import. Counted for the graph's files and, in rows of their own, for
              ``benchmarks/`` and ``tests/`` (which import the project's names too).

    python benchmarks/import_graph.py [--list] [--root DIR]

``--list`` also prints every cycle (its modules) and every private use (file:line, module, name).
Not a test: it reports, it does not assert.
"""

from __future__ import annotations

import argparse
import ast
from dataclasses import dataclass
from pathlib import Path

GRAPH_PACKAGES = ("probe", "circuits", "apps", "data")
CONSUMERS = ("benchmarks", "tests")


@dataclass(frozen=True)
class PrivateUse:
    """One use of another module's private name."""

    file: str
    line: int
    module: str
    name: str


@dataclass(frozen=True)
class SourceFile:
    """One parsed file: its module name (or None outside the graph), path and syntax tree."""

    module: str | None
    path: Path
    tree: ast.Module
    lines: int


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def read_files(root: Path, folders: tuple[str, ...], in_graph: bool) -> list[SourceFile]:
    files = []
    for folder in folders:
        for path in sorted((root / folder).rglob("*.py")):
            if any(part.startswith(".") or part == "__pycache__" for part in path.relative_to(root).parts):
                continue
            text = path.read_text(encoding="utf-8")
            files.append(SourceFile(
                module=module_name(path, root) if in_graph else None,
                path=path,
                tree=ast.parse(text, filename=str(path)),
                lines=len(text.splitlines()),
            ))
    return files


def absolute_module(source: SourceFile, node: ast.ImportFrom, root: Path) -> str:
    """The module an ``ImportFrom`` names, with relative imports resolved against the file."""
    if node.level == 0:
        return node.module or ""
    package = module_name(source.path, root).split(".")
    if source.path.name != "__init__.py":
        package = package[:-1]
    package = package[: len(package) - (node.level - 1)]
    return ".".join(package + ([node.module] if node.module else []))


def imported_modules(source: SourceFile, modules: set[str], root: Path):
    """Yield ``(line, target module, imported name or None, bound alias or None)`` per project import.

    ``from a import b`` with ``a.b`` a module yields an edge to ``a.b`` (bound as ``b``); with ``b``
    a name defined in ``a`` it yields an edge to ``a`` and the name ``b``.
    """
    for node in ast.walk(source.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules:
                    bound = alias.asname if alias.asname else None
                    yield node.lineno, alias.name, None, bound
        elif isinstance(node, ast.ImportFrom):
            base = absolute_module(source, node, root)
            for alias in node.names:
                child = f"{base}.{alias.name}"
                if child in modules:
                    yield node.lineno, child, None, alias.asname or alias.name
                elif base in modules:
                    yield node.lineno, base, alias.name, None


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_uses(source: SourceFile, modules: set[str], root: Path) -> list[PrivateUse]:
    """Private names of other project modules that ``source`` imports or reaches as attributes."""
    uses, bound_modules = [], {}
    for line, target, name, bound in imported_modules(source, modules, root):
        if target == source.module:
            continue
        if name is not None and is_private(name):
            uses.append(PrivateUse(str(source.path), line, target, name))
        if bound is not None:
            if is_private(bound.split(".")[-1]) and bound == target.split(".")[-1]:
                uses.append(PrivateUse(str(source.path), line, target.rsplit(".", 1)[0], bound))
            bound_modules[bound] = target
    for node in ast.walk(source.tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in bound_modules and is_private(node.attr)):
            uses.append(PrivateUse(str(source.path), node.lineno, bound_modules[node.value.id], node.attr))
    return uses


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components (iterative), each sorted, largest first."""
    index, low, on_stack, stack, components, counter = {}, {}, set(), [], [], [0]

    def visit(start: str) -> None:
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(components, key=lambda c: (-len(c), c))


def measure(root: Path) -> tuple[list[tuple], list[list[str]], list[PrivateUse]]:
    """The table's rows, the cycles and every private use, for the project under ``root``."""
    graph_files = read_files(root, GRAPH_PACKAGES, in_graph=True)
    consumer_files = read_files(root, CONSUMERS, in_graph=False)
    modules = {f.module for f in graph_files}
    graph = {f.module: set() for f in graph_files}
    for source in graph_files:
        for _, target, _, _ in imported_modules(source, modules, root):
            if target != source.module:
                graph[source.module].add(target)
    cycles = [c for c in strongly_connected(graph) if len(c) > 1]
    uses = {id(f): private_uses(f, modules, root) for f in graph_files + consumer_files}

    rows = []
    for package in GRAPH_PACKAGES:
        files = [f for f in graph_files if f.module.split(".")[0] == package]
        names = {f.module for f in files}
        rows.append((
            package, len(files), sum(f.lines for f in files), sum(len(graph[m]) for m in names),
            sum(1 for c in cycles if c[0].split(".")[0] == package),
            sum(1 for c in cycles for m in c if m in names),
            sum(len(uses[id(f)]) for f in files),
        ))
    rows.append(("graph total", len(graph_files), sum(f.lines for f in graph_files),
                 sum(len(t) for t in graph.values()), len(cycles), sum(len(c) for c in cycles),
                 sum(len(uses[id(f)]) for f in graph_files)))
    for folder in CONSUMERS:
        files = [f for f in consumer_files if f.path.relative_to(root).parts[0] == folder]
        rows.append((f"({folder})", len(files), sum(f.lines for f in files), "", "", "",
                     sum(len(uses[id(f)]) for f in files)))
    all_uses = [u for f in graph_files + consumer_files for u in uses[id(f)]]
    return rows, cycles, all_uses


def print_table(rows: list[tuple]) -> None:
    header = ("package", "modules", "lines", "imports", "cycles", "modules in cycles", "private uses")
    table = [header] + [tuple(str(v) for v in row) for row in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in table[1:]:
        print("| " + " | ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths))) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent,
                        help="the project's root (default: this script's repository)")
    parser.add_argument("--list", action="store_true", help="also list every cycle and every private use")
    args = parser.parse_args()
    if not (args.root / "probe").is_dir():
        parser.error(f"--root {args.root} has no probe/ folder; pass the project's root")
    rows, cycles, uses = measure(args.root.resolve())
    print_table(rows)
    if args.list:
        print("\ncycles (strongly connected components of more than one module):")
        for cycle in cycles:
            print("  " + " <-> ".join(cycle))
        print("\nprivate uses (file:line  module  name):")
        for use in sorted(uses, key=lambda u: (u.file, u.line)):
            print(f"  {Path(use.file).relative_to(args.root.resolve())}:{use.line}  {use.module}  {use.name}")


if __name__ == "__main__":
    main()
