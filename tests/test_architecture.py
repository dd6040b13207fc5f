"""The house rules of docs/architecture.md, checked: the package's imports form no circle, and no function
hides an import of the package's own modules (a lazy import is how a circle hides)."""
import ast
from pathlib import Path

import sim

PKG = Path(sim.__file__).parent


def _node(path: Path) -> str:
    """A top-level module, or a subpackage (all its files are one node)."""
    rel = path.relative_to(PKG)
    return rel.parts[0] if len(rel.parts) > 1 else path.stem


def _target(path: Path, node: ast.ImportFrom) -> str | None:
    """The package-level node an own-package import reaches (None: inside the same subpackage)."""
    sub = len(path.relative_to(PKG).parts) > 1
    if node.level == 1 and not sub or node.level == 2 and sub:
        return (node.module or "").split(".")[0] or None
    return None


def _imports() -> dict[str, set[str]]:
    """node -> the sim nodes it imports at module level."""
    graph: dict[str, set[str]] = {}
    for path in PKG.rglob("*.py"):
        deps = graph.setdefault(_node(path), set())
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ImportFrom) and node.level:
                target = _target(path, node)
                if target and target != _node(path):
                    deps.add(target)
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
    for path in PKG.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    if isinstance(inner, ast.ImportFrom) and inner.level and (target := _target(path, inner)):
                        if _reaches(graph, target, _node(path)):
                            hidden.append(f"{path.name}:{inner.lineno} imports {inner.module}, which imports it back")
    assert not hidden, hidden


def test_low_modules_do_not_reach_up():
    graph = _imports()
    for low in ("errors", "units", "texttable", "limiters", "catalog", "service", "limitset", "headers", "fields",
                "trace", "arrivals", "records", "spec", "policies"):
        assert not graph[low] & {"engine", "runner", "report", "scenario", "summary", "cli", "capacity",
                                 "validation", "study"}, low
