"""Imports run one way along the layers, and no two packages import each other.

Every module under `hub/` and `auth/` is parsed (not imported) and placed in a layer, bottom-up as
listed in `LAYERS`; a module may import its own layer or a lower one, never a higher one. Packages
(`auth`, each `hub.<package>`, each `hub.delivery.<package>`, each top-level `hub` module) must form
no cycle. A new module outside every layer fails the test until it is given one.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Bottom-up; a module belongs to the layer of the longest prefix that names it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("auth", ("auth",)),
    ("shared", ("hub", "hub.config", "hub.redis", "hub.logs", "hub.lifetime", "hub.singleflight", "hub.anonymise",
                "hub.schema", "hub.translate")),
    ("ingest", ("hub.ingest",)),
    ("fanout", ("hub.fanout",)),
    ("control", ("hub.control",)),
    ("delivery", ("hub.delivery",)),
    ("admin", ("hub.admin",)),
    ("app", ("hub.app", "hub.backfill", "hub.cli", "hub.dev", "hub.doctor", "hub.eventbus", "hub.logimport",
             "hub.metrics", "hub.render_stage")),
]
# Namespaces whose children are packages of their own (for the cycle check).
NAMESPACES = ("hub", "hub.delivery")


def modules() -> dict[str, Path]:
    found = {}
    for top in ("hub", "auth"):
        for path in (ROOT / top).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def layer_of(module: str) -> int:
    best, best_length = -1, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_length:
                best, best_length = index, len(prefix)
    assert best >= 0, f"{module} is in no layer: add it to LAYERS in tests/test_layers.py"
    return best


def package_of(module: str) -> str:
    parts = module.split(".")
    for depth in range(len(parts) - 1, 0, -1):
        if ".".join(parts[:depth]) in NAMESPACES:
            return ".".join(parts[: depth + 1])
    return parts[0]


def imports(module: str, path: Path, known: dict[str, Path]) -> list[tuple[int, str]]:
    """(line, imported module) for every import of a module under hub/ or auth/."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                found.append((node.lineno, name))
    return sorted(set(found))


def test_imports_never_climb_a_layer_and_packages_form_no_cycle() -> None:
    known = modules()
    upward, edges = [], defaultdict(set)
    for module, path in sorted(known.items()):
        for line, target in imports(module, path, known):
            if layer_of(target) > layer_of(module):
                upward.append(f"{path.relative_to(ROOT)}:{line}: {module} ({LAYERS[layer_of(module)][0]}) imports "
                              f"{target} ({LAYERS[layer_of(target)][0]})")
            if package_of(target) != package_of(module):
                edges[package_of(module)].add(package_of(target))
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(upward)
    cycles = [cycle for cycle in strongly_connected(edges) if len(cycle) > 1]
    assert not cycles, "packages that import each other: " + "; ".join(" <-> ".join(sorted(c)) for c in cycles)


def strongly_connected(edges: dict[str, set[str]]) -> list[frozenset[str]]:
    """Tarjan's strongly connected components of the package graph."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[frozenset[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in edges.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                component.add(member)
                if member == node:
                    break
            components.append(frozenset(component))

    for node in list(edges):
        if node not in index:
            visit(node)
    return components
