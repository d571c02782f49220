"""Import cycles in ``rotation``: ``python scripts/import_cycles.py [--packages]``.

Prints the module count, the import count and every strongly connected component of more than one
module (a set of modules that import each other, directly or through others), largest first. Lazy
imports inside functions and ``TYPE_CHECKING`` imports count, as they do for ``lint-imports``.

``--packages`` also counts the package ``__init__`` that Python runs before a submodule: importing
``rotation.service.retry`` runs ``rotation/service/__init__.py`` first, so an adapter importing it
loads the whole service layer. ``make lint`` enforces the rules themselves (``[tool.importlinter]`` in
pyproject.toml); this script measures.
"""

from __future__ import annotations

import argparse
import sys

import grimp


def import_graph(package: str, *, with_packages: bool) -> dict[str, set[str]]:
    graph = grimp.build_graph(package, cache_dir=None)
    edges = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    if with_packages:
        for module, imported in edges.items():
            for target in list(imported):
                parts = target.split(".")
                for i in range(2, len(parts)):
                    parent = ".".join(parts[:i])
                    if parent in edges and parent != module and not module.startswith(parent + "."):
                        imported.add(parent)
    return edges


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
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
                    work.append((child, iter(sorted(edges[child]))))
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
    return components


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", default="rotation")
    parser.add_argument("--packages", action="store_true", help="count the package __init__ run before a submodule")
    args = parser.parse_args(argv)
    edges = import_graph(args.package, with_packages=args.packages)
    cycles = sorted((c for c in strongly_connected(edges) if len(c) > 1), key=len, reverse=True)
    print(
        f"modules={len(edges)} imports={sum(len(v) for v in edges.values())} "
        f"cyclic_components={len(cycles)} largest={len(cycles[0]) if cycles else 1}"
    )
    for component in cycles:
        print(f"{len(component)}: {' '.join(component)}")
    return 1 if cycles else 0


if __name__ == "__main__":
    sys.exit(main())
