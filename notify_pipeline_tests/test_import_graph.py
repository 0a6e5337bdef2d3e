"""The package's import graph, read from the source with `ast` (imports under TYPE_CHECKING and
inside functions count too): no cycles, the layers point one way, and no module reaches into
another's private names."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import notify_pipeline

ROOT = Path(notify_pipeline.__file__).parent
PACKAGE = "notify_pipeline"
# The engine is the bottom layer the rest is built on: it reads none of the layers above it.
ABOVE_ENGINE = ("reporting", "operations", "defs", "cli", "service", "bench", "demo")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in ROOT.rglob("*.py") if "migrations" not in path.parts}


def resolve(node: ast.ImportFrom, name: str, is_package: bool) -> str:
    """The absolute module an ImportFrom names (relative imports resolved against `name`)."""
    if not node.level:
        return node.module or ""
    base = name.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join([*base, *([node.module] if node.module else [])])


def imports(name: str, path: Path, known: dict[str, Path]) -> Iterator[tuple[str, str | None]]:
    """(module imported, the name taken from it or None) for every import in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(PACKAGE):
                    yield alias.name, None
        elif isinstance(node, ast.ImportFrom):
            target = resolve(node, name, path.name == "__init__.py")
            if not target.startswith(PACKAGE):
                continue
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                # `from package import module` is an import of that module, not of the package.
                yield (submodule, None) if submodule in known else (target, alias.name)


def graph() -> dict[str, set[str]]:
    known = modules()
    edges: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        for target, _ in imports(name, path, known):
            if target in known and target != name:
                edges[name].add(target)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_package_has_no_import_cycle() -> None:
    edges = graph()
    assert len(edges) > 100, "the walk found the package's modules"
    assert cycles(edges) == []


def test_the_cycle_finder_sees_a_cycle() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(edges) == [["a", "b", "c"]]


def test_the_engine_imports_nothing_from_the_layers_above_it() -> None:
    above = tuple(f"{PACKAGE}.{layer}" for layer in ABOVE_ENGINE)
    wrong = sorted(
        f"{name} -> {target}"
        for name, targets in graph().items()
        if name.startswith(f"{PACKAGE}.engine")
        for target in targets
        if target.startswith(above)
    )
    assert wrong == []


def test_no_module_imports_another_modules_private_names() -> None:
    known = modules()
    wrong = sorted(
        f"{name}: from {target} import {taken}"
        for name, path in known.items()
        for target, taken in imports(name, path, known)
        if taken and taken.startswith("_") and not taken.startswith("__") and target != name
    )
    assert wrong == []


def test_no_module_reads_another_modules_private_attributes() -> None:
    """`module._name` on a module imported from the package (`from pkg import mod; mod._x`)."""
    known = modules()
    wrong = []
    for name, path in known.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        aliases = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                target = resolve(node, name, path.name == "__init__.py")
                for alias in node.names:
                    if f"{target}.{alias.name}" in known:
                        aliases[alias.asname or alias.name] = f"{target}.{alias.name}"
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                wrong.append(f"{name}: {aliases[node.value.id]}.{node.attr}")
    assert sorted(set(wrong)) == []
