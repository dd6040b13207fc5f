"""The house rules of docs/architecture.md, checked: the package's imports form no circle, and no function
hides an import of the package's own modules (a lazy import is how a circle hides)."""
import ast
from pathlib import Path

import sim

PKG = Path(sim.__file__).parent


def _imports() -> dict[str, set[str]]:
    """module -> the sim modules it imports at module level; functions' own-package imports are listed apart."""
    graph = {}
    for path in PKG.glob("*.py"):
        name = path.stem
        tree = ast.parse(path.read_text())
        deps = set()
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                deps |= {node.module} if node.module else {a.name for a in node.names}
        graph[name] = {d.split(".")[0] for d in deps} - {name}
    return graph


def test_no_import_circles():
    graph = _imports()
    state: dict[str, int] = {}

    def visit(node, stack):
        state[node] = 1
        for dep in graph.get(node, ()):
            assert state.get(dep) != 1, "import circle: " + " -> ".join([*stack, node, dep])
            if dep not in state:
                visit(dep, [*stack, node])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [])


def _reaches(graph, start: str, target: str) -> bool:
    seen, todo = set(), [start]
    while todo:
        node = todo.pop()
        if node == target:
            return True
        if node not in seen:
            seen.add(node)
            todo += graph.get(node, ())
    return False


def test_no_lazy_import_hides_a_circle():
    """A function may import late (the CLI does, to start fast), but never a module that imports it back."""
    graph = _imports()
    hidden = []
    for path in PKG.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    if isinstance(inner, ast.ImportFrom) and inner.level == 1 and inner.module:
                        if _reaches(graph, inner.module.split(".")[0], path.stem):
                            hidden.append(f"{path.name}:{inner.lineno} imports {inner.module}, which imports it back")
    assert not hidden, hidden


def test_low_modules_do_not_reach_up():
    graph = _imports()
    for low in ("errors", "units", "texttable", "limiters", "catalog", "service", "limitset", "headers", "fields",
                "trace", "arrivals", "records", "spec", "policies"):
        assert not graph[low] & {"engine", "runner", "report", "scenario", "summary", "cli", "capacity",
                                 "validation", "study"}, low
