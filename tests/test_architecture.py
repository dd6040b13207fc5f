"""The house rules of docs/architecture.md, checked: each module imports only modules on its own floor of the
doc's module table or below (at module level or inside a function), every module has a floor, the package's
imports form no circle, and no function hides an import of a module that imports it back (a lazy import is
how a circle hides)."""
import ast
import re
from pathlib import Path

import sim

PKG = Path(sim.__file__).parent
DOC = PKG.parent / "docs" / "architecture.md"
FRONT_DOOR = {"__init__", "__main__"}  # the package's own entry points: they import from every floor


def _node(path: Path) -> str:
    """A top-level module, or a subpackage (all its files are one node)."""
    rel = path.relative_to(PKG)
    return rel.parts[0] if len(rel.parts) > 1 else path.stem


def _targets(path: Path, node: ast.ImportFrom) -> list[str]:
    """The package-level nodes an own-package import reaches (none: inside the same subpackage, or not ours).
    ``from .x import y`` reaches ``x``; ``from . import x, y`` reaches ``x`` and ``y``."""
    sub = len(path.relative_to(PKG).parts) > 1
    if not (node.level == 1 and not sub or node.level == 2 and sub):
        return []
    if node.module:
        return [node.module.split(".")[0]]
    return [alias.name for alias in node.names]


def _own_imports(tree: ast.AST):
    """Every relative import in ``tree`` (``ast.walk``: module level and inside functions alike)."""
    return (n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level)


def _imports() -> dict[str, set[str]]:
    """node -> the sim nodes it imports at module level."""
    graph: dict[str, set[str]] = {}
    for path in PKG.rglob("*.py"):
        deps = graph.setdefault(_node(path), set())
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ImportFrom) and node.level:
                deps.update(t for t in _targets(path, node) if t != _node(path))
    return graph


def _floors() -> dict[str, int]:
    """Module (or subpackage) -> its floor, read from the doc's table ``| floor | module | owns |``."""
    floors = {}
    for line in DOC.read_text().splitlines():
        row = re.match(r"\| (\d+) \| ([^|]+) \|", line)
        if row:
            for name in re.findall(r"`(\w+)/?`", row.group(2)):
                floors[name] = int(row.group(1))
    return floors


def test_every_module_has_a_floor_in_the_doc():
    floors = _floors()
    modules = {_node(path) for path in PKG.rglob("*.py")} - FRONT_DOOR
    assert not modules - set(floors), (f"module(s) {sorted(modules - set(floors))} have no row in "
                                       "docs/architecture.md's module table: give each a floor")
    assert not set(floors) - modules, f"docs/architecture.md's table names no module {sorted(set(floors) - modules)}"


def test_each_module_imports_only_its_own_floor_or_below():
    floors = _floors()
    up = []
    for path in PKG.rglob("*.py"):
        me = _node(path)
        if me in FRONT_DOOR:
            continue
        for node in _own_imports(ast.parse(path.read_text())):
            for target in _targets(path, node):
                if target != me and floors.get(target, -1) > floors[me]:
                    up.append(f"{path.relative_to(PKG)}:{node.lineno}: {me} (floor {floors[me]}) imports {target} "
                              f"(floor {floors[target]})")
    assert not up, "imports reaching up a floor (move the code, or the module's row in docs/architecture.md): " + \
        "; ".join(up)


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
                for inner in _own_imports(node):
                    for target in _targets(path, inner):
                        if target != _node(path) and _reaches(graph, target, _node(path)):
                            hidden.append(f"{path.name}:{inner.lineno} imports {target}, which imports it back")
    assert not hidden, hidden


def test_low_modules_do_not_reach_up():
    graph = _imports()
    for low in ("errors", "units", "texttable", "limiters", "catalog", "service", "limitset", "headers", "fields",
                "trace", "arrivals", "records", "spec", "policies"):
        assert not graph[low] & {"engine", "runner", "report", "scenario", "summary", "cli", "capacity",
                                 "validation", "study"}, low


def test_the_recipes_breaker_has_the_hooks_the_engine_calls():
    """docs/architecture.md's example gate, pasted as it is: each hook takes what the engine passes a built-in
    gate's hook of that name, and it opens from the moment the client reads its third 429."""
    import inspect
    import math
    import re
    import textwrap

    from sim import policies

    text = DOC.read_text()
    block = re.search(r"\n((    class Breaker:\n)(    .*\n|\n)+)", text).group(1)
    namespace = {"math": math}
    exec(textwrap.dedent(block), namespace)
    breaker_cls = namespace["Breaker"]
    builtin = {"observe": policies.Adaptive, "hold": policies.Cooldown, "blocks": policies.Cooldown}
    for hook, cls in builtin.items():
        assert list(inspect.signature(getattr(breaker_cls, hook)).parameters) == \
            list(inspect.signature(getattr(cls, hook)).parameters), f"the recipe's Breaker.{hook}"
    gate = breaker_cls(failures=3, open_for=30.0)
    for k, now in enumerate((1.0, 2.0, 3.0)):
        gate.observe(0, None, now, k, 5.0, 0.2, now + 0.2)
    assert gate.until == 3.2 + 30.0 and gate.blocks(10.0, True) and not gate.blocks(33.3, True)
    gate.observe(0, None, 40.0, 4, 5.0, 0.2, math.inf)  # a 429 given up before it was read: not counted
    assert gate.run == 0
