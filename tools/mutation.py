"""Mutation testing for groqsim's core: does the test suite notice a single-point change to the code?

    python tools/mutation.py                       # the core (DEFAULT_FILES) against tests/ (DEFAULT_TESTS)
    python tools/mutation.py sim/units.py --tests tests/test_units.py

Each mutant is the source with ONE change made on its syntax tree (``ast``), numbered in a deterministic
order (file, then tree order).  Operators:

* ``cmp``    comparison boundary and negation: ``<``/``<=``, ``>``/``>=``, ``==``/``!=``, ``is``/``is not``,
             ``in``/``not in``
* ``arith``  ``+``/``-``, ``*``/``/``, ``//`` -> ``/``, ``**`` -> ``*``, ``%`` -> ``*``; also in ``+=`` etc.;
             unary ``-x`` -> ``x``
* ``minmax`` ``min`` <-> ``max``
* ``const``  numbers: 0 -> 1, 1 -> 0, int n -> n + 1, float x -> x * 1.1 (0.0 -> 1.0); ``True`` <-> ``False``
* ``bool``   ``and`` <-> ``or``, ``not x`` -> ``x``
* ``if``     an ``if``/``elif``/conditional expression's test -> ``True`` (guard removed) and -> ``False``
* ``del``    a statement (assignment, augmented assignment, call, ``continue``/``break``, ``return``) -> ``pass``

Docstrings, f-strings, ``__repr__`` and lines marked ``# pragma: no mutate`` are left alone.  A coverage pass
(cached) finds which tests execute each line (``mutation_select``); each mutant then runs only those tests,
likeliest killers first, stopping at the first failure, in a forked child of a warmed-up pytest session
(``mutation_server``), with ``--hypothesis-seed`` fixed, hypothesis's shrinking and example database off and
at most ``--max-examples`` examples per property (``mutation_plugin``): a mutant's outcome depends on nothing
but the mutant.  A mutant is *killed* when a test fails, *timeout* when a test runs far longer than on the
original (counted as killed: the change broke something), *survived* when they pass or no test executes it.
``--equivalent FILE`` lists mutants judged to change no behaviour (one key per line, as printed by
``--list``, then ``  -- reason``); they are reported apart and left out of the score.  ``--verify N``
re-runs the survivors and N killed mutants on every test, without selection, to check the selection.

The score is killed / (mutants - equivalent).  Not part of CI: it runs tests once per mutant.
"""
from __future__ import annotations

import argparse
import ast
import copy
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mutation_select import Selection, cache_key, merge, read_pass, split_files, test_files  # noqa: E402
from mutation_server import RUNNING, Worker  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENT = ROOT / "tools" / "equivalent_mutants.txt"

_CMP_SWAPS: dict[type, tuple[type, ...]] = {
    ast.Lt: (ast.LtE, ast.GtE), ast.LtE: (ast.Lt, ast.Gt), ast.Gt: (ast.GtE, ast.LtE), ast.GtE: (ast.Gt, ast.Lt),
    ast.Eq: (ast.NotEq,), ast.NotEq: (ast.Eq,), ast.Is: (ast.IsNot,), ast.IsNot: (ast.Is,),
    ast.In: (ast.NotIn,), ast.NotIn: (ast.In,),
}
_BIN_SWAPS: dict[type, type] = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult,
                                ast.FloorDiv: ast.Div, ast.Pow: ast.Mult, ast.Mod: ast.Mult}
_SYMBOL = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=", ast.Is: "is",
           ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in", ast.Add: "+", ast.Sub: "-", ast.Mult: "*",
           ast.Div: "/", ast.FloorDiv: "//", ast.Pow: "**", ast.Mod: "%"}
_DELETABLE = (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Expr, ast.Continue, ast.Break, ast.Return)


@dataclass
class Mutant:
    id: int
    path: str          # relative to the project root
    line: int
    op: str            # operator family (cmp, arith, ...)
    change: str        # what was changed, e.g. "`<` -> `<=`"
    source: str        # the original line, stripped
    key: str = ""      # stable name for --equivalent: path | source line | change | occurrence
    site: int = 0      # index of the change among the file's sites (what mutated_source takes)
    status: str = ""   # killed / survived / timeout / equivalent
    seconds: float = 0.0
    lo: int = 0        # lines a test must execute to notice the change (the change's own, and its statement's)
    hi: int = 0
    stmt_line: int = 0
    func: str | None = None    # qualified name of the outermost function whose body holds the change
    header: bool = False       # in a function's decorators, defaults or annotations (run at import)
    body: tuple[int, int] = (0, 0)  # that function's body lines
    scope: str = ""            # innermost class/function: mutants of one scope share killers
    tests: int = 0             # tests selected
    killer: str = ""           # the test that failed
    note: str = ""             # "no coverage", or how the mutant was run
    refs: list | None = None   # a module constant's or class attribute's readers: [(file, line)]
    field: bool = False        # an annotated name in a class body: a dataclass or pydantic field, used whenever
    #                            the class is built or validated, not only where the name is read


class _Sites(ast.NodeTransformer):
    """Walks a module in a fixed order; numbers every possible single change.  With ``target`` set, makes
    that change and returns the tree; otherwise records (line, op, change) of every site in ``found``."""

    def __init__(self, skip_lines: set[int], target: int | None = None):
        self.skip_lines, self.target = skip_lines, target
        self._scope: list[ast.AST] = []  # enclosing class and function nodes
        self._stmts: list[ast.stmt] = []  # enclosing statements
        self.found: list[dict] = []
        self.count = 0
        self._protected: set[int] = set()  # ids of nodes never mutated (docstrings, f-string parts)

    # -- helpers ------------------------------------------------------------------------------------------
    def _site(self, node: ast.AST, op: str, change: str, make) -> ast.AST | None:
        """Register one variant of ``node``; build it (``make()``) when it is the target."""
        k = self.count
        self.count += 1
        if self.target is None:
            self.found.append(self._where(node, op, change))
            return None
        if k == self.target:
            return make()
        return None

    def _where(self, node: ast.AST, op: str, change: str) -> dict:
        """Where a change sits: its lines, its statement's first line, the function whose code it changes."""
        span = node.test if op == "if" else node
        names = [s.name for s in self._scope]
        site = {"line": node.lineno, "op": op, "change": change, "lo": span.lineno, "hi": span.end_lineno,
                "stmt_line": node.lineno if isinstance(node, ast.stmt) or not self._stmts else self._stmts[-1].lineno,
                "scope": ".".join(names), "func": None, "header": False, "body": (0, 0),
                "names": {".".join(names[k:j]) for k in range(len(names)) for j in range(k + 1, len(names) + 1)}}
        stmts = self._stmts + [node] if isinstance(node, ast.stmt) else self._stmts
        top = stmts[1] if len(stmts) > 1 and isinstance(stmts[0], ast.ClassDef) else stmts[0] if stmts else node
        targets = getattr(top, "targets", [getattr(top, "target", None)])
        # ``A = ...`` and ``A, B = ...`` alike: every name the statement binds
        assigned = [n.id for t in targets for n in (t.elts if isinstance(t, (ast.Tuple, ast.List)) else [t])
                    if isinstance(n, ast.Name)]
        site["assigns"] = assigned if isinstance(top, (ast.Assign, ast.AnnAssign)) and assigned else None
        site["field"] = isinstance(top, ast.AnnAssign) and bool(stmts) and isinstance(stmts[0], ast.ClassDef)
        for k, s in enumerate(self._scope):
            if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = (s.body[0].lineno, s.end_lineno)
                if node.lineno >= body[0]:
                    site["func"] = ".".join(names[:k + 1])
                else:
                    site["header"], site["body"] = True, body
                break
        return site

    def _skip(self, node: ast.AST) -> bool:
        return id(node) in self._protected or getattr(node, "lineno", 0) in self.skip_lines

    def visit(self, node):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                self._protected.add(id(body[0]))
                self._protected.update(id(n) for n in ast.walk(body[0]))
        if isinstance(node, ast.FunctionDef) and node.name == "__repr__":
            return node
        if isinstance(node, ast.JoinedStr):
            return node
        if not self._skip(node):
            for new in self._variants(node):
                if new is not None:
                    return ast.copy_location(new, node) if isinstance(new, ast.AST) else new
        scoped = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        if scoped:
            self._scope.append(node)
        if isinstance(node, ast.stmt):
            self._stmts.append(node)
        try:
            return self.generic_visit(node)
        finally:
            if scoped:
                self._scope.pop()
            if isinstance(node, ast.stmt):
                self._stmts.pop()

    # -- operators ----------------------------------------------------------------------------------------
    def _variants(self, node):
        if isinstance(node, ast.Compare):
            for i, op in enumerate(node.ops):
                for new_op in _CMP_SWAPS.get(type(op), ()):
                    def make(i=i, new_op=new_op):
                        n = copy.deepcopy(node)
                        n.ops[i] = new_op()
                        return n
                    yield self._site(node, "cmp", f"`{_SYMBOL[type(op)]}` -> `{_SYMBOL[new_op]}`", make)
        elif isinstance(node, (ast.BinOp, ast.AugAssign)) and type(node.op) in _BIN_SWAPS:
            new_op = _BIN_SWAPS[type(node.op)]

            def make(new_op=new_op):
                n = copy.deepcopy(node)
                n.op = new_op()
                return n
            yield self._site(node, "arith", f"`{_SYMBOL[type(node.op)]}` -> `{_SYMBOL[new_op]}`", make)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) \
                and not isinstance(node.operand, ast.Constant):
            yield self._site(node, "arith", "`-x` -> `x`", lambda: copy.deepcopy(node.operand))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            yield self._site(node, "bool", "`not x` -> `x`", lambda: copy.deepcopy(node.operand))
        elif isinstance(node, ast.BoolOp):
            new_op = ast.Or if isinstance(node.op, ast.And) else ast.And
            name = "and" if isinstance(node.op, ast.And) else "or"

            def make(new_op=new_op):
                n = copy.deepcopy(node)
                n.op = new_op()
                return n
            yield self._site(node, "bool", f"`{name}` -> `{'or' if name == 'and' else 'and'}`", make)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("min", "max"):
            other = "max" if node.func.id == "min" else "min"

            def make(other=other):
                n = copy.deepcopy(node)
                n.func = ast.Name(id=other, ctx=ast.Load())
                return n
            yield self._site(node, "minmax", f"`{node.func.id}` -> `{other}`", make)
        elif isinstance(node, ast.Constant) and not isinstance(node.value, str):
            for new in _const_variants(node.value):
                yield self._site(node, "const", f"`{node.value!r}` -> `{new!r}`", lambda new=new: ast.Constant(new))
        elif isinstance(node, (ast.If, ast.IfExp)):
            for value in (True, False):
                def make(value=value):
                    n = copy.deepcopy(node)
                    n.test = ast.Constant(value)
                    return n
                yield self._site(node, "if", f"condition -> `{value}`", make)
        if isinstance(node, _DELETABLE) and id(node) not in self._protected:
            yield self._site(node, "del", "statement -> `pass`", lambda: ast.Pass())


def _const_variants(value) -> list:
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        return {0: [1], 1: [0]}.get(value, [value + 1])
    if isinstance(value, float):
        if value == 0.0:
            return [1.0]
        if value in (float("inf"), float("-inf")):
            return []
        return [value * 1.1]
    return []


def _skip_lines(text: str) -> set[int]:
    return {k for k, line in enumerate(text.splitlines(), 1) if "pragma: no mutate" in line}


def list_mutants(paths: list[str], functions: set[str] | None = None) -> list[Mutant]:
    """The mutants of ``paths`` (``file`` or ``file::f,Class.m`` to mutate only inside those functions;
    ``functions`` applies to files without their own).  Keys and site numbers count every site of the
    file, so they do not depend on the functions chosen."""
    mutants: list[Mutant] = []
    readers = _readers()
    for spec in paths:
        path, _, only = spec.partition("::")
        wanted = set(only.split(",")) if only else functions
        text = (ROOT / path).read_text()
        lines = text.splitlines()
        sites = _Sites(_skip_lines(text))
        sites.visit(ast.parse(text))
        seen: dict[tuple, int] = {}
        for site, w in enumerate(sites.found):
            src = lines[w["line"] - 1].strip()
            occurrence = seen.get((src, w["change"]), 0)
            seen[(src, w["change"])] = occurrence + 1
            if wanted is not None and not w["names"] & wanted:
                continue
            mutants.append(Mutant(len(mutants), path, w["line"], w["op"], w["change"], src,
                                  key=f"{path} | {src} | {w['change']} | #{occurrence}", site=site,
                                  lo=w["lo"], hi=w["hi"], stmt_line=w["stmt_line"], func=w["func"],
                                  header=w["header"], body=w["body"], scope=w["scope"], field=w["field"]))
            if w["assigns"] and not w["func"] and not w["header"]:
                mutants[-1].refs = sorted(set().union(*(readers.get(n, set()) for n in w["assigns"])))
    return mutants


def _readers() -> dict[str, set[tuple[str, int]]]:
    """Every line of ``sim/`` that reads a name (``NAME``, ``x.NAME`` or ``getattr(x, "NAME", ...)``): who can
    see a module constant or class attribute change (an over-approximation: any name alike counts)."""
    out: dict[str, set[tuple[str, int]]] = {}
    for f in sorted((ROOT / "sim").rglob("*.py")):
        rel = str(f.relative_to(ROOT))
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                out.setdefault(node.id, set()).add((rel, node.lineno))
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                out.setdefault(node.attr, set()).add((rel, node.lineno))
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in GETTERS
                  and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
                  and isinstance(node.args[1].value, str)):
                out.setdefault(node.args[1].value, set()).add((rel, node.lineno))
    return out


#: built-ins that read an attribute named by a string
GETTERS = ("getattr", "hasattr")


def mutated_source(path: str, index_in_file: int) -> str:
    text = (ROOT / path).read_text()
    tree = _Sites(_skip_lines(text), target=index_in_file).visit(ast.parse(text))
    return ast.unparse(ast.fix_missing_locations(tree))


# ---- running ------------------------------------------------------------------------------------------

def _copy_project(dest: Path) -> None:
    ignore = shutil.ignore_patterns(".git", "__pycache__", ".hypothesis", ".pytest_cache", "out", "results",
                                    "*.egg-info", ".venv*")
    shutil.copytree(ROOT, dest, ignore=ignore, dirs_exist_ok=True)


def _stop_running(*_) -> None:
    for pgid in list(RUNNING):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    raise SystemExit(130)


_BASE = ["-q", "-p", "mutation_plugin", "-p", "no:cacheprovider", "--hypothesis-seed=0"]


def coverage_pass(workers: list[Worker], tests: list[str], extra: list[str], max_examples: int,
                  cache_dir: Path | None, progress: bool) -> dict:
    """Per-test coverage of the unmutated code (cached; the test files split among the workers)."""
    key = cache_key(ROOT, tests + extra, max_examples)
    cache = cache_dir / f"coverage-{key}.json" if cache_dir else None
    if cache and cache.exists():
        return json.loads(cache.read_text())
    files, other = test_files(tests, ROOT)
    groups = split_files(files, ROOT, len(workers))
    results: list[tuple[str, float, str, str]] = [("", 0.0, "", "")] * len(groups)
    t0 = time.perf_counter()
    if progress:
        print(f"coverage pass over {len(files)} test files ...", file=sys.stderr, flush=True)

    def one(k: int) -> None:
        data = str(workers[k].workdir / ".mutation-coverage")
        results[k] = workers[k].pytest([*_BASE, f"--basetemp={workers[k].workdir / '.tmp'}",
                                        f"--mutation-coverage={data}", *extra, *other], groups[k], 7200)

    with ThreadPoolExecutor(len(groups)) as pool:
        list(pool.map(one, range(len(groups))))
    for outcome, _, failed, _ in results:
        if outcome != "pass":
            sys.exit(f"the tests fail on the unmutated code ({failed or outcome}): fix that first")
    cov = merge([read_pass(str(w.workdir / ".mutation-coverage"), w.workdir) for w in workers[:len(groups)]])
    if progress:
        print(f"coverage pass: {len(cov['tests'])} tests in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    if cache:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(cov))
    return cov


def _module(path: str) -> str:
    return path.removesuffix(".py").replace("/", ".")


def run(mutants: list[Mutant], tests: list[str], jobs: int, timeout: float | None, extra: list[str],
        max_examples: int = 0, cache_dir: Path | None = None, select_tests: bool = True, verify: int = -1,
        progress: bool = True) -> dict:
    """Run every mutant (fills in status, seconds, tests, killer, note).  Returns facts about the run:
    the coverage pass's tests and, with ``verify`` >= 0, the selection check (see ``_verify``)."""
    tmp = Path(tempfile.mkdtemp(prefix="groqsim-mutation-"))
    workers: list[Worker] = []
    try:
        for k in range(jobs):
            _copy_project(tmp / f"w{k}")
            workers.append(Worker(tmp / f"w{k}", max_examples))
        cov = coverage_pass(workers, tests, extra, max_examples, cache_dir, progress)
        sel = Selection(cov)
        # in the suite's order; without selection, also the tests that start a process (their children are
        # forked from, or import, the worker's mutated copy: cold runs see the mutant there too)
        every = [t for t in cov["tests"] if t in sel.usable or not select_tests]
        files = sorted({t.split("::")[0] for t in every})
        with ThreadPoolExecutor(jobs) as pool:
            list(pool.map(lambda w: w.warm_up([*_BASE, f"--basetemp={w.workdir / '.tmp'}", *extra, *files]),
                          workers))
        free, lock, done = list(workers), threading.Lock(), [0]
        pending = [m for m in mutants if m.status != "equivalent"]

        def one(m: Mutant, full: bool = False) -> None:
            with lock:
                chosen, mode = sel.for_mutant(m) if select_tests and not full else (every, "cold")
            m.tests = len(chosen)
            if not chosen:
                m.status, m.note = "survived", "no coverage"
                return
            with lock:
                worker = free.pop()
            target = worker.workdir / m.path
            try:
                target.write_text(mutated_source(m.path, m.site))
                outcome, m.seconds, m.killer, used = worker.pytest(
                    [*_BASE, f"--basetemp={worker.workdir / '.tmp'}", "-x", *extra], chosen,
                    timeout or sel.timeout(chosen), mode, _module(m.path), m.func or "", str(target),
                    [sel.budget(t) for t in chosen])
                m.status = {"pass": "survived", "fail": "killed", "timeout": "timeout"}[outcome]
                m.note = used
                if m.killer:
                    with lock:
                        sel.killed_by(m, m.killer)
            finally:
                shutil.copy2(ROOT / m.path, target)
                with lock:
                    free.append(worker)
                    done[0] += 1
                    if progress:
                        print(f"\r{done[0]}/{len(pending)} mutants", end="", file=sys.stderr, flush=True)

        with ThreadPoolExecutor(jobs) as pool:
            list(pool.map(one, pending))
        if progress:
            print(file=sys.stderr)
        facts = {"tests": len(cov["tests"]), "usable": len(every), "selected": select_tests,
                 "process": sorted(t for t in cov["tests"] if t not in sel.usable)}
        if verify >= 0:
            facts["verify"] = _verify(pending, verify, lambda m: one(m, full=True), jobs, progress, done)
        return facts
    finally:
        for w in workers:
            w.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _verify(pending: list[Mutant], n_killed: int, run_full, jobs: int, progress: bool, done: list[int]) -> dict:
    """The selection check: every survivor, and ``n_killed`` killed mutants spread evenly over the list, run
    again on every test of the set (cold imports, no selection); the two outcomes must agree."""
    killed = [m for m in pending if m.status in ("killed", "timeout")]
    sample = killed[::max(1, len(killed) // n_killed)][:n_killed] if n_killed else []
    chosen = sorted([m for m in pending if m.status == "survived"] + sample, key=lambda m: m.id)
    before = {m.id: (m.status, m.seconds, m.tests, m.killer, m.note) for m in chosen}
    done[0] = 0
    if progress:
        print(f"selection check: {len(chosen)} mutants on every test", file=sys.stderr)
    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(run_full, chosen))
    dead = ("killed", "timeout")
    missed = [m for m in chosen if (before[m.id][0] in dead) != (m.status in dead)]
    full = {m.id: (m.status, m.seconds, m.killer) for m in chosen}
    for m in chosen:  # the reported outcome stays the selected run's
        m.status, m.seconds, m.tests, m.killer, m.note = before[m.id]
    return {"checked": len(chosen), "survivors": len(chosen) - len(sample), "killed_sample": len(sample),
            "disagree": [(m.id, m.key, before[m.id][0], full[m.id][0], full[m.id][2]) for m in missed],
            "seconds_full": sum(v[1] for v in full.values())}


def report(mutants: list[Mutant], show: str, facts: dict | None = None) -> str:
    counts = {s: sum(m.status == s for m in mutants) for s in ("killed", "timeout", "survived", "equivalent")}
    relevant = len(mutants) - counts["equivalent"]
    score = (counts["killed"] + counts["timeout"]) / relevant if relevant else 1.0
    out = []
    rows = [m for m in mutants if show == "all" or m.status in ("survived", "equivalent")]
    if rows:
        out.append(f"{'id':>4}  {'status':<10} {'s':>5} {'tests':>5}  {'where':<22} {'change':<26} line")
        for m in rows:
            why = f"  [{m.note}]" if m.note == "no coverage" else f"  [{m.killer}]" if m.killer else ""
            out.append(f"{m.id:>4}  {m.status:<10} {m.seconds:>5.1f} {m.tests:>5}  "
                       f"{m.path + ':' + str(m.line):<22} {m.change:<26} {m.source}{why}")
        out.append("")
    per_file = {}
    for m in mutants:
        per_file.setdefault(m.path, []).append(m)
    for path, ms in per_file.items():
        k = sum(m.status in ("killed", "timeout") for m in ms)
        e = sum(m.status == "equivalent" for m in ms)
        out.append(f"{path}: {len(ms)} mutants, {e} equivalent, {k} killed of {len(ms) - e} "
                   f"({100 * k / max(1, len(ms) - e):.1f} %)")
    ran = [m for m in mutants if m.status not in ("equivalent", "")]
    nocov = sum(m.note == "no coverage" for m in ran)
    out.append(f"total: {len(mutants)} mutants; killed {counts['killed']}, timeout {counts['timeout']}, "
               f"survived {counts['survived']} ({nocov} executed by no test), equivalent {counts['equivalent']}; "
               f"score {100 * score:.1f} % of {relevant} behaviour-changing mutants")
    if ran:
        out.append(f"tests per mutant: median {sorted(m.tests for m in ran)[len(ran) // 2]}, "
                   f"max {max(m.tests for m in ran)}; run warm (function code swapped) "
                   f"{sum(m.note == 'warm' for m in ran)}, cold (module re-imported) "
                   f"{sum(m.note == 'cold' for m in ran)}")
    if facts:
        if facts.get("selected", True):
            out.append(f"test set: {facts['tests']} tests, {facts['usable']} selectable "
                       f"({len(facts['process'])} start a process: per-test coverage cannot see them, left out)")
        else:
            out.append(f"test set: {facts['tests']} tests, every one run for every mutant, without selection "
                       f"({len(facts['process'])} of them start a process)")
        v = facts.get("verify")
        if v:
            out.append(f"selection check: {v['checked']} mutants ({v['survivors']} survivors, a sample of "
                       f"{v['killed_sample']} killed) re-run on all {facts['usable']} tests without selection "
                       f"({v['seconds_full']:.0f} s): {v['checked'] - len(v['disagree'])} agree, "
                       f"{len(v['disagree'])} differ")
            for d in v["disagree"]:
                out.append(f"  differs: {d[0]} {d[1]}: selected {d[2]}, all tests {d[3]} {d[4]}")
    return "\n".join(out)


DEFAULT_FILES = ["sim/limiters.py", "sim/limitset.py", "sim/headers.py", "sim/units.py", "sim/policies.py",
                 "sim/engine.py::Simulation._send,Simulation._refused,Simulation._on_retry,Simulation._finish"]
DEFAULT_TESTS = ["tests", "--ignore=tests/test_notebooks.py", "--ignore=tests/test_lanes_notebook.py",
                 "--ignore=tests/test_emulator.py", "--ignore=tests/test_calibrate_emulator.py",
                 "--ignore=tests/test_cli_errors.py"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="*", default=DEFAULT_FILES,
                    help="source files to mutate, relative to the project root; FILE::f,Class.m mutates only "
                         "inside those functions (default: the core, " + " ".join(DEFAULT_FILES) + ")")
    ap.add_argument("--tests", nargs="+", default=DEFAULT_TESTS,
                    help="pytest arguments selecting the candidate tests (default: " + " ".join(DEFAULT_TESTS) + ")")
    ap.add_argument("--jobs", type=int, default=2, help="parallel workers (default 2)")
    ap.add_argument("--timeout", type=float,
                    help="seconds per mutant (default 3 x its tests' time in the coverage pass + 5, >= 10)")
    ap.add_argument("--equivalent", default=str(EQUIVALENT.relative_to(ROOT)),
                    help="file of mutant keys judged equivalent (one per line, # comments; default %(default)s)")
    ap.add_argument("--only", help="comma-separated mutant ids to run")
    ap.add_argument("--max-examples", type=int, default=50,
                    help="cap on hypothesis examples per property (default 50; 0 = the suite's own profile)")
    ap.add_argument("--functions", help="comma-separated function or Class.method names: mutate only inside them")
    ap.add_argument("--op", help="comma-separated operator families to run (cmp,arith,minmax,const,bool,if,del)")
    ap.add_argument("--list", action="store_true", help="list the mutants (id, key) and exit")
    ap.add_argument("--show", choices=("survivors", "all"), default="survivors")
    ap.add_argument("--pytest-args", default="", help="extra pytest arguments, one string")
    ap.add_argument("--all-tests", action="store_true",
                    help="no selection: run every candidate test (cold imports) for every mutant, also those "
                         "that start a process (e.g. sim/pool.py against tests/test_pool.py)")
    ap.add_argument("--verify", type=int, metavar="N", default=-1,
                    help="selection check: then re-run every survivor and N killed mutants on all the tests")
    ap.add_argument("--json", metavar="FILE", help="also write every mutant's outcome there")
    ap.add_argument("--cache-dir", default=os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))
                    + "/groqsim-mutation", help="where the coverage pass is cached (default %(default)s)")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, _stop_running)
    signal.signal(signal.SIGINT, _stop_running)

    functions = set(args.functions.split(",")) if args.functions else None
    mutants = list_mutants(args.files, functions)
    if args.list:
        for m in mutants:
            print(f"{m.id:>4}  {m.key}")
        return 0
    if args.equivalent:
        keys = {k for k in (_key_of(line) for line in Path(args.equivalent).read_text().splitlines()) if k}
        for m in mutants:
            if m.key in keys:
                m.status = "equivalent"
    if args.only:
        wanted = {int(x) for x in args.only.split(",")}
        mutants = [m for m in mutants if m.id in wanted]
    if args.op:
        ops = set(args.op.split(","))
        mutants = [m for m in mutants if m.op in ops]
    t0 = time.perf_counter()
    load0 = os.getloadavg()
    facts = run(mutants, args.tests, args.jobs, args.timeout, args.pytest_args.split(), args.max_examples,
                Path(args.cache_dir) if args.cache_dir else None, not args.all_tests, args.verify)
    print(report(mutants, args.show, facts))
    if args.json:
        Path(args.json).write_text(json.dumps({"facts": facts, "mutants": [
            {k: v for k, v in vars(m).items() if k in ("id", "key", "status", "seconds", "tests", "killer", "note")}
            for m in mutants]}, indent=1))
    print(f"{len(mutants)} mutants in {time.perf_counter() - t0:.0f} s with {args.jobs} workers "
          f"(load average {load0[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end)")
    return 0


def _key_of(line: str) -> str | None:
    """A key from an --equivalent line: ``path | source | change | #n``, optionally followed by
    ``  -- reason``; blank lines and lines starting with ``#`` are ignored."""
    line = line.strip()
    if not line or line.startswith("#"):
        return None
    return line.split("  -- ", 1)[0].strip()


if __name__ == "__main__":
    sys.exit(main())
