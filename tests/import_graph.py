"""devjobs' import graph, read from the source (every `import`, also those inside
functions), between packages and between modules.

    python -m tests.import_graph            # the package graph, one arrow a line
    python -m tests.import_graph --modules  # every module's imports of devjobs modules

`tests/test_layers.py` checks the layering against it.
"""

from __future__ import annotations

import argparse
import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "devjobs"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> Iterator[str]:
    """The devjobs modules `path` imports (a `from package import name` counts as the
    module `package.name` when that is a module, else as `package`)."""
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("devjobs"):
                    yield alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if not node.module.startswith("devjobs"):
                continue
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                yield candidate if is_module(candidate) else node.module


def is_module(name: str) -> bool:
    base = ROOT.parent.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def module_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted(ROOT.rglob("*.py")):
        name = module_name(path)
        graph[name] = {m for m in imports(path) if m != name}
    return graph


def package_of(module: str) -> str:
    """`devjobs.kube.render` -> `kube`; top-level modules (`devjobs.catalyst`) are their
    own package; `runner.local` and `runner.cluster` count as `runner`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "devjobs"


def package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, targets in module_graph().items():
        source = package_of(module)
        graph.setdefault(source, set()).update(
            package_of(t) for t in targets if package_of(t) != source
        )
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every elementary cycle's nodes, found by depth-first search from each node."""
    found: list[list[str]] = []
    seen: set[tuple[str, ...]] = set()

    def visit(start: str, node: str, path: list[str]) -> None:
        for target in sorted(graph.get(node, ())):
            if target == start:
                key = tuple(sorted(path))
                if key not in seen:
                    seen.add(key)
                    found.append([*path, start])
            elif target not in path and target > start:
                visit(start, target, [*path, target])

    for start in sorted(graph):
        visit(start, start, [start])
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--modules", action="store_true")
    args = parser.parse_args()
    graph = module_graph() if args.modules else package_graph()
    for source in sorted(graph):
        for target in sorted(graph[source]):
            print(f"{source} -> {target}")


if __name__ == "__main__":
    main()
