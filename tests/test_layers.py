"""The layering of devjobs' packages, and every Kubernetes and Catalyst fact declared
once (`python -m tests.import_graph` prints the graph these tests read)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.import_graph import ROOT, cycles, module_graph, package_graph

ALLOWED = {
    "errors": set(),
    "catalyst": set(),
    "resolver": {"errors", "catalyst"},
    "schemas": {"resolver", "kube"},
    "kube": {"errors", "resolver", "catalyst"},
    "github": {"errors", "kube"},
    "runner": {"errors", "resolver", "catalyst", "kube", "github"},
    "controller": {"errors", "resolver", "catalyst", "kube", "github"},
    "ui": {"errors", "resolver", "catalyst", "kube", "github", "controller"},
    "cli": {
        "errors",
        "resolver",
        "catalyst",
        "kube",
        "github",
        "runner",
        "controller",
        "ui",
        "schemas",
        "devjobs",
    },  # fmt: skip
    "__main__": {"cli"},
    "devjobs": set(),
}
"""What each package may import: lower layers never import higher ones (the runner and
the controller never import the CLI, the Kubernetes layer never imports either)."""


def test_every_package_imports_only_the_layers_below_it() -> None:
    graph = package_graph()
    assert set(graph) <= set(ALLOWED), "a new package: give it a place in ALLOWED"
    wrong = {
        f"{source} -> {target}"
        for source, targets in graph.items()
        for target in targets
        if target not in ALLOWED[source]
    }
    assert not wrong


def test_no_module_imports_itself_back_through_others() -> None:
    assert cycles(module_graph()) == []


def string_constants(path: Path) -> list[tuple[int, str]]:
    """String literals of a module that are not docstrings."""
    tree = ast.parse(path.read_text(), str(path))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    # Attribute docstrings (a string right after an assignment) are documentation too.
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if not isinstance(body, list):
            continue
        for before, after in zip(body, body[1:], strict=False):
            if isinstance(before, (ast.Assign, ast.AnnAssign)) and isinstance(after, ast.Expr):
                docstrings.add(id(after.value))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


def literals_outside(home: str, marker: str) -> list[str]:
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        if path.relative_to(ROOT).as_posix() == home:
            continue
        for line, text in string_constants(path):
            if marker in text and "://" not in text and not re.search(r"\.dev/v\d", text):
                found.append(f"{path.relative_to(ROOT)}:{line}: {text!r}")
    return found


def test_devjobs_labels_and_annotations_are_declared_only_in_the_vocabulary() -> None:
    assert literals_outside("kube/vocabulary.py", "devjobs.dev/") == []


def test_catalysts_labels_are_declared_only_in_the_catalyst_model() -> None:
    assert literals_outside("catalyst.py", "catalyst.dev/") == []
