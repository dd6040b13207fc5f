"""Mutation testing for groqsim's core: does the test suite notice a single-point change to the code?

    python tools/mutation.py sim/limiters.py sim/limitset.py --tests tests/test_limiters.py tests/test_limitset.py

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

Docstrings, f-strings, ``__repr__`` and lines marked ``# pragma: no mutate`` are left alone.  Every mutant
runs ``pytest -x -q --ff`` on the chosen tests in a copy of the project (``--jobs`` copies, each served by
a process that imported the heavy dependencies once and forks a child per mutant), with
``--hypothesis-seed`` fixed, hypothesis's shrinking and example database off and at most ``--max-examples``
examples per property (``tools/mutation_plugin.py``): a mutant's outcome depends on nothing but the
mutant.  A mutant is *killed* when the tests fail, *timeout* when they run longer than ``--timeout``
(counted as killed: the change broke something), *survived* when they pass.  ``--equivalent FILE`` lists
mutants judged to change no behaviour (one key per line, as printed by ``--list``, then ``  -- reason``);
they are reported apart and left out of the score.

The score is killed / (mutants - equivalent).  Not part of CI: it runs the tests once per mutant.
"""
from __future__ import annotations

import argparse
import ast
import copy
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

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


class _Sites(ast.NodeTransformer):
    """Walks a module in a fixed order; numbers every possible single change.  With ``target`` set, makes
    that change and returns the tree; otherwise records (line, op, change) of every site in ``found``."""

    def __init__(self, skip_lines: set[int], target: int | None = None, functions: set[str] | None = None):
        self.skip_lines, self.target, self.functions = skip_lines, target, functions
        self._scope: list[str] = []  # enclosing class and function names
        self.found: list[tuple[int, str, str]] = []
        self.count = 0
        self._protected: set[int] = set()  # ids of nodes never mutated (docstrings, f-string parts)

    # -- helpers ------------------------------------------------------------------------------------------
    def _site(self, node: ast.AST, op: str, change: str, make) -> ast.AST | None:
        """Register one variant of ``node``; build it (``make()``) when it is the target."""
        k = self.count
        self.count += 1
        if self.target is None:
            self.found.append((node.lineno, op, change))
            return None
        if k == self.target:
            return make()
        return None

    def _skip(self, node: ast.AST) -> bool:
        if self.functions is not None:
            names = set(self._scope) | {".".join(self._scope[k:j]) for k in range(len(self._scope))
                                        for j in range(k + 1, len(self._scope) + 1)}
            if not names & self.functions:
                return True
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
            self._scope.append(node.name)
        try:
            return self.generic_visit(node)
        finally:
            if scoped:
                self._scope.pop()

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
    mutants: list[Mutant] = []
    for path in paths:
        text = (ROOT / path).read_text()
        lines = text.splitlines()
        sites = _Sites(_skip_lines(text), functions=functions)
        sites.visit(ast.parse(text))
        seen: dict[tuple, int] = {}
        for site, (line, op, change) in enumerate(sites.found):
            src = lines[line - 1].strip()
            occurrence = seen.get((src, change), 0)
            seen[(src, change)] = occurrence + 1
            mutants.append(Mutant(len(mutants), path, line, op, change, src,
                                  key=f"{path} | {src} | {change} | #{occurrence}", site=site))
    return mutants


def mutated_source(path: str, index_in_file: int, functions: set[str] | None = None) -> str:
    text = (ROOT / path).read_text()
    tree = _Sites(_skip_lines(text), target=index_in_file, functions=functions).visit(ast.parse(text))
    return ast.unparse(ast.fix_missing_locations(tree))


# ---- running ------------------------------------------------------------------------------------------

def _copy_project(dest: Path) -> None:
    ignore = shutil.ignore_patterns(".git", "__pycache__", ".hypothesis", ".pytest_cache", "out", "results",
                                    "*.egg-info", ".venv*")
    shutil.copytree(ROOT, dest, ignore=ignore, dirs_exist_ok=True)


_RUNNING: set[int] = set()  # process groups to stop if the tool is interrupted (servers, pytest runs)


def _stop_running(*_) -> None:
    for pgid in list(_RUNNING):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    raise SystemExit(130)


class _Worker:
    """A server process in one copy of the project: it imports the heavy dependencies (numpy, pandas,
    scipy, hypothesis, pytest) once, never ``sim``, and forks a fresh child per pytest run, so a run costs
    the tests' time, not an interpreter's start-up."""

    def __init__(self, workdir: Path, max_examples: int):
        self.workdir = workdir
        env = {**os.environ, "PYTHONPATH": f"{workdir}{os.pathsep}{workdir / 'tools'}",
               "PYTHONDONTWRITEBYTECODE": "1", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
               "GROQSIM_MUTATION_MAX_EXAMPLES": str(max_examples)}
        self.proc = subprocess.Popen([sys.executable, str(workdir / "tools" / "mutation.py"), "--serve"],
                                     cwd=workdir, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     bufsize=0, start_new_session=True)
        _RUNNING.add(self.proc.pid)
        self._buf = b""

    def _readline(self, deadline: float | None) -> dict | None:
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                return None
            chunk = os.read(fd, 4096)
            if not chunk:
                raise RuntimeError("mutation server died")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def pytest(self, args: list[str], timeout: float) -> tuple[str, float]:
        """('pass' | 'fail' | 'timeout', seconds) of ``pytest args`` in a fresh child."""
        shutil.rmtree(self.workdir / ".hypothesis", ignore_errors=True)
        t0 = time.monotonic()
        self.proc.stdin.write(json.dumps({"args": args}).encode() + b"\n")
        child = self._readline(None)["pid"]
        _RUNNING.add(child)
        try:
            answer = self._readline(t0 + timeout)
            if answer is None:
                try:
                    os.killpg(child, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self._readline(None)
                return "timeout", time.monotonic() - t0
        finally:
            _RUNNING.discard(child)
        return ("pass" if answer["rc"] == 0 else "fail"), time.monotonic() - t0

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()
        _RUNNING.discard(self.proc.pid)


def _serve() -> None:
    """The server side of :class:`_Worker` (``mutation.py --serve``)."""
    import hypothesis  # noqa: F401
    import numpy  # noqa: F401
    import pandas  # noqa: F401
    import pydantic  # noqa: F401
    import pytest
    import scipy.stats  # noqa: F401
    import simpy  # noqa: F401
    for line in sys.stdin:
        args = json.loads(line)["args"]
        pid = os.fork()
        if pid == 0:
            rc = 1
            try:
                os.setsid()
                null = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(null, fd)
                sys.dont_write_bytecode = True
                rc = int(pytest.main(args))
            finally:
                os._exit(rc)
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"rc": os.waitstatus_to_exitcode(status)}), flush=True)


def run(mutants: list[Mutant], tests: list[str], jobs: int, timeout: float | None, extra: list[str],
        functions: set[str] | None = None, max_examples: int = 0, progress: bool = True) -> float:
    """Run every mutant; fills in status and seconds.  Returns the unmutated suite's time."""
    tmp = Path(tempfile.mkdtemp(prefix="groqsim-mutation-"))
    workers: list[_Worker] = []
    # --ff: each worker runs first the tests that failed on its previous mutant (they kill most mutants);
    # the order changes no outcome: hypothesis seeds each test from its name and --hypothesis-seed
    args = ["-x", "-q", "--ff", "-p", "mutation_plugin", "--hypothesis-seed=0", *extra, *tests]
    try:
        for k in range(jobs):
            _copy_project(tmp / f"w{k}")
            workers.append(_Worker(tmp / f"w{k}", max_examples))
        status, base = workers[0].pytest(args, 3600)
        if status != "pass":
            sys.exit("the tests fail on the unmutated code: fix that first")
        timeout = timeout or max(10.0, 3 * base + 5)
        free, lock, done = list(workers), threading.Lock(), [0]
        pending = [m for m in mutants if m.status != "equivalent"]

        def one(m: Mutant) -> None:
            with lock:
                worker = free.pop()
            target = worker.workdir / m.path
            try:
                target.write_text(mutated_source(m.path, m.site, functions))
                outcome, m.seconds = worker.pytest(args, timeout)
                m.status = {"pass": "survived", "fail": "killed", "timeout": "timeout"}[outcome]
                if m.status == "survived" and progress:
                    print(f"\rsurvived: {m.id} {m.path}:{m.line} {m.change}  {m.source}", file=sys.stderr, flush=True)
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
        return base
    finally:
        for w in workers:
            w.close()
        shutil.rmtree(tmp, ignore_errors=True)


def report(mutants: list[Mutant], show: str) -> str:
    counts = {s: sum(m.status == s for m in mutants) for s in ("killed", "timeout", "survived", "equivalent")}
    relevant = len(mutants) - counts["equivalent"]
    score = (counts["killed"] + counts["timeout"]) / relevant if relevant else 1.0
    out = []
    rows = [m for m in mutants if show == "all" or m.status in ("survived", "equivalent")]
    if rows:
        out.append(f"{'id':>4}  {'status':<10} {'s':>5}  {'where':<22} {'change':<26} line")
        for m in rows:
            out.append(f"{m.id:>4}  {m.status:<10} {m.seconds:>5.1f}  {m.path + ':' + str(m.line):<22} "
                       f"{m.change:<26} {m.source}")
        out.append("")
    per_file = {}
    for m in mutants:
        per_file.setdefault(m.path, []).append(m)
    for path, ms in per_file.items():
        k = sum(m.status in ("killed", "timeout") for m in ms)
        e = sum(m.status == "equivalent" for m in ms)
        out.append(f"{path}: {len(ms)} mutants, {e} equivalent, {k} killed of {len(ms) - e} "
                   f"({100 * k / max(1, len(ms) - e):.1f} %)")
    out.append(f"total: {len(mutants)} mutants; killed {counts['killed']}, timeout {counts['timeout']}, "
               f"survived {counts['survived']}, equivalent {counts['equivalent']}; "
               f"score {100 * score:.1f} % of {relevant} behaviour-changing mutants")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+", help="source files to mutate, relative to the project root")
    ap.add_argument("--tests", nargs="+", default=["tests"], help="pytest arguments selecting the tests")
    ap.add_argument("--jobs", type=int, default=2, help="parallel workers (default 2)")
    ap.add_argument("--timeout", type=float, help="seconds per mutant (default 3 x the clean run + 5, >= 10)")
    ap.add_argument("--equivalent", help="file of mutant keys judged equivalent (one per line, # comments)")
    ap.add_argument("--only", help="comma-separated mutant ids to run")
    ap.add_argument("--max-examples", type=int, default=50,
                    help="cap on hypothesis examples per property (default 50; 0 = the suite's own profile)")
    ap.add_argument("--functions", help="comma-separated function or Class.method names: mutate only inside them")
    ap.add_argument("--op", help="comma-separated operator families to run (cmp,arith,minmax,const,bool,if,del)")
    ap.add_argument("--list", action="store_true", help="list the mutants (id, key) and exit")
    ap.add_argument("--show", choices=("survivors", "all"), default="survivors")
    ap.add_argument("--pytest-args", default="", help="extra pytest arguments, one string")
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
    base = run(mutants, args.tests, args.jobs, args.timeout, args.pytest_args.split(), functions,
               args.max_examples)
    print(report(mutants, args.show))
    print(f"clean test run {base:.1f} s; {len(mutants)} mutants in {time.perf_counter() - t0:.0f} s "
          f"with {args.jobs} workers")
    return 0


def _key_of(line: str) -> str | None:
    """A key from an --equivalent line: ``path | source | change | #n``, optionally followed by
    ``  -- reason``; blank lines and lines starting with ``#`` are ignored."""
    line = line.strip()
    if not line or line.startswith("#"):
        return None
    return line.split("  -- ", 1)[0].strip()


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        _serve()
    else:
        sys.exit(main())
