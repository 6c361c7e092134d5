"""Imports point down only (DESIGN.md: lab -> callbacks -> optimizers,
schedules -> keras), and the package's modules import each other without a
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


def _circle(graph):
    """An import circle of `graph` as a list of modules, or None."""
    done, visiting = set(), []

    def visit(node):
        if node in done:
            return None
        if node in visiting:
            return visiting[visiting.index(node):] + [node]
        visiting.append(node)
        for target in sorted(graph[node]):
            found = visit(target)
            if found:
                return found
        visiting.pop()
        done.add(node)
        return None

    for node in sorted(graph):
        found = visit(node)
        if found:
            return found
    return None


def _import_graph():
    """Module -> the modules it imports. A package that contains the module
    is left out: Python imports it before the module anyway (`from
    keras_optlab import _validation` reads a sibling, not the package)."""
    return {
        name: {t for t in _imports(name) if not name.startswith(t + ".")}
        for name in MODULES
    }


def test_the_package_imports_without_a_circle():
    graph = _import_graph()
    circle = _circle(graph)
    assert circle is None, "import circle: " + " -> ".join(circle)


def test_the_circle_check_finds_a_circle():
    # The check can fail: runs, report and plots are in the graph, and one
    # import back from plots to runs would close a circle.
    graph = _import_graph()
    assert {"keras_optlab.lab.plots", "keras_optlab.lab.report"} <= graph["keras_optlab.lab.runs"]
    graph["keras_optlab.lab.plots"] = graph["keras_optlab.lab.plots"] | {"keras_optlab.lab.runs"}
    circle = _circle(graph)
    assert circle is not None and circle[0] == circle[-1]
