"""Imports point down only (DESIGN.md: lab -> callbacks -> optimizers,
schedules -> keras), and the lab's modules import each other without a
circle. Every import statement counts, inside functions too."""

from __future__ import annotations

import ast
import pathlib

import keras_optlab

PACKAGE = pathlib.Path(keras_optlab.__file__).parent


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(name: str) -> set[str]:
    """keras_optlab modules imported by module `name`."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from package import module` imports the module.
            targets = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {t for t in targets if t in MODULES and t != name}
    return found


def _layer(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "top"


def test_lower_layers_never_import_higher_ones():
    forbidden = {
        "optimizers": {"callbacks", "lab"},
        "schedules": {"callbacks", "lab", "optimizers"},
        "callbacks": {"lab"},
    }
    for name in MODULES:
        for target in _imports(name):
            assert _layer(target) not in forbidden.get(_layer(name), set()), (name, target)


def test_lab_modules_import_each_other_without_a_circle():
    lab = {n for n in MODULES if n.startswith("keras_optlab.lab.")}
    graph = {n: {t for t in _imports(n) if t in lab} for n in lab}
    done, visiting = set(), []

    def visit(node):
        if node in done:
            return
        assert node not in visiting, "import circle: " + " -> ".join(visiting[visiting.index(node):] + [node])
        visiting.append(node)
        for target in sorted(graph[node]):
            visit(target)
        visiting.pop()
        done.add(node)

    for node in sorted(graph):
        visit(node)
    # The check can fail: runs, report and plots are all in the graph.
    assert {"keras_optlab.lab.plots", "keras_optlab.lab.report"} <= graph["keras_optlab.lab.runs"]
