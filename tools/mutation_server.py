"""The test runner of tools/mutation.py: a server process in one copy of the project that forks a child per
pytest run, so a mutant costs its tests' time, not an interpreter's start-up and imports.

The server imports the heavy dependencies (numpy, pandas, scipy, hypothesis, pytest) and, once warmed up, the
project and its test modules (a ``--collect-only`` session in-process).  A child then runs a mutant

* ``warm``: when the change is inside a function's body and that body never runs at import, the child
  compiles the mutated file and puts the mutated function's code object into the already-imported function
  (``f.__code__ = ...``): every reference to the function sees the mutant, nothing is re-imported;
* ``cold``: otherwise (module constants, class attributes, default arguments, code run at import, or a
  function the swap cannot find unambiguously) the child forgets the project's modules and pytest imports
  them afresh from the mutated file on disk.

Protocol: one JSON request per line on stdin, answers on the original stdout; the server's own fd 1 and 2 go
to /dev/null (pytest's output is not read: outcomes are the exit status and ``--mutation-failed``).
"""
from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

TIMEOUT = 124  # exit status of a child stopped by a test's time budget
RUNNING: set[int] = set()  # process groups to stop if the tool is interrupted (servers, pytest runs)


class Worker:
    """The client side: a server in ``workdir`` (a copy of the project)."""

    def __init__(self, workdir: Path, max_examples: int):
        self.workdir = workdir
        env = {**os.environ, "PYTHONPATH": f"{workdir}{os.pathsep}{workdir / 'tools'}",
               "PYTHONDONTWRITEBYTECODE": "1", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
               "GROQSIM_MUTATION_MAX_EXAMPLES": str(max_examples)}
        self.proc = subprocess.Popen([sys.executable, str(workdir / "tools" / "mutation_server.py")],
                                     cwd=workdir, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     bufsize=0, start_new_session=True)
        RUNNING.add(self.proc.pid)
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

    def warm_up(self, args: list[str]) -> None:
        """Make the server a pytest session (``args``) that imports the project and collects the tests once,
        then serves every further request from that collection."""
        self.proc.stdin.write(json.dumps({"warm_up": args}).encode() + b"\n")
        if self._readline(None).get("rc") != 0:
            raise RuntimeError("collecting the tests failed in the mutation server")

    def pytest(self, args: list[str], tests: list[str], timeout: float, mode: str = "cold", module: str = "",
               qualname: str = "", path: str = "", budgets: list[float] | None = None) -> tuple[str, float, str, str]:
        """(``pass`` | ``fail`` | ``timeout``, seconds, first failing test, mode used) of ``pytest args tests``
        in a fresh child (``warm``: the server's own collected ``tests``, run in that order, stopping at the
        first failure); ``mode``/``module``/``qualname``/``path`` say how the child takes the mutant in."""
        shutil.rmtree(self.workdir / ".hypothesis", ignore_errors=True)
        failed = self.workdir / ".mutation-failed"
        failed.unlink(missing_ok=True)
        t0 = time.monotonic()
        request = {"args": [*args, f"--mutation-failed={failed}"], "tests": tests, "mode": mode, "module": module,
                   "qualname": qualname, "path": path, "failed": str(failed),
                   "budgets": budgets or [timeout] * len(tests)}
        self.proc.stdin.write(json.dumps(request).encode() + b"\n")
        child = self._readline(None)["pid"]
        RUNNING.add(child)
        try:
            answer = self._readline(t0 + timeout)
            if answer is None:
                try:
                    os.killpg(child, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                answer = self._readline(None)
                return "timeout", time.monotonic() - t0, "", answer.get("mode", mode)
        finally:
            RUNNING.discard(child)
        killer = failed.read_text() if failed.exists() else ""
        outcome = "pass" if answer["rc"] == 0 else "timeout" if answer["rc"] == TIMEOUT else "fail"
        return outcome, time.monotonic() - t0, killer, answer["mode"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()
        RUNNING.discard(self.proc.pid)


# ---- server side --------------------------------------------------------------------------------------

def _codes(code: types.CodeType):
    yield code
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            yield from _codes(c)


def _functions(mod: types.ModuleType, qualname: str) -> list[types.FunctionType]:
    """The module's functions (and methods, static/class methods, property accessors, wrapped functions)
    whose code is ``qualname``."""
    found, seen = [], set()

    def visit(obj, depth=0):
        if id(obj) in seen or depth > 4:
            return
        seen.add(id(obj))
        if isinstance(obj, (staticmethod, classmethod)):
            visit(obj.__func__, depth + 1)
        elif isinstance(obj, property):
            for f in (obj.fget, obj.fset, obj.fdel):
                if f is not None:
                    visit(f, depth + 1)
        elif isinstance(obj, types.FunctionType):
            if obj.__code__.co_qualname == qualname and obj.__code__.co_filename == mod.__file__:
                found.append(obj)
            if hasattr(obj, "__wrapped__"):
                visit(obj.__wrapped__, depth + 1)
        elif isinstance(obj, type) and obj.__module__ == mod.__name__:
            for v in vars(obj).values():
                visit(v, depth + 1)
        elif hasattr(obj, "__wrapped__") and callable(obj):
            visit(obj.__wrapped__, depth + 1)

    for value in list(vars(mod).values()):
        visit(value)
    return found


def _swap(module: str, qualname: str, path: str) -> bool:
    """Put the mutated ``qualname``'s code into the imported function; False when that is not possible."""
    mod = sys.modules.get(module)
    if mod is None:
        return False
    new = [c for c in _codes(compile(Path(path).read_text(), mod.__file__, "exec", dont_inherit=True))
           if c.co_qualname == qualname]
    old = _functions(mod, qualname)
    if len(new) != 1 or len(old) != 1:
        return False
    try:
        old[0].__code__ = new[0]
    except ValueError:  # different free variables
        return False
    return True


def _forget_project(root: Path) -> None:
    """Drop the project's modules (``sim``, the tests) so that the next import reads them from disk."""
    dirs = (str(root / "sim") + os.sep, str(root / "tests") + os.sep)
    for name, mod in list(sys.modules.items()):
        f = getattr(mod, "__file__", None) or ""
        if f.startswith(dirs):
            del sys.modules[name]


def _child(req: dict, root: Path, out, items: dict | None) -> int:
    """In the forked child: take the mutant in, run the tests; the exit status (0 = every test passed)."""
    import pytest
    os.setsid()
    warm = items is not None and req["mode"] == "warm" and all(t in items for t in req["tests"]) \
        and _swap(req["module"], req["qualname"], req["path"])
    (root / ".mutation-mode").write_text("warm" if warm else "cold")
    if not warm:
        _forget_project(root)
        return int(pytest.main([*req["args"], *req["tests"]]))
    from _pytest.runner import runtestprotocol
    chosen = [items[t] for t in req["tests"]]
    current = [""]

    def too_long(*_):  # one test ran far past its time on the unmutated code: an endless loop, most likely
        Path(req["failed"]).write_text(current[0])
        os._exit(TIMEOUT)
    signal.signal(signal.SIGALRM, too_long)
    for k, item in enumerate(chosen):  # -x: stop at the first failure
        current[0] = item.nodeid
        signal.setitimer(signal.ITIMER_REAL, req["budgets"][k])
        if any(r.failed for r in runtestprotocol(item, nextitem=chosen[k + 1] if k + 1 < len(chosen) else None,
                                                 log=False)):
            Path(req["failed"]).write_text(item.nodeid)
            return 1
    return 0


class _Loop:
    """pytest plugin of the warmed-up server: after collection, serve requests instead of running tests."""

    def __init__(self, root: Path, out):
        self.root, self.out = root, out

    def pytest_runtestloop(self, session):
        items = {item.nodeid: item for item in session.items}
        print(json.dumps({"rc": 0}), file=self.out, flush=True)
        _loop(self.root, self.out, items)
        return True


def _loop(root: Path, out, items: dict | None) -> None:
    import pytest
    for line in sys.stdin:
        req = json.loads(line)
        if "warm_up" in req:  # the server becomes a pytest session that serves the rest from its collection
            rc = int(pytest.main(["-p", "no:cacheprovider", "-s", *req["warm_up"]], plugins=[_Loop(root, out)]))
            print(json.dumps({"rc": rc}), file=out, flush=True)
            return
        pid = os.fork()
        if pid == 0:
            rc = 1
            try:
                rc = _child(req, root, out, items)
            finally:
                os._exit(rc)
        print(json.dumps({"pid": pid}), file=out, flush=True)
        _, status = os.waitpid(pid, 0)
        try:  # what the child left running (a mutant's pool workers it never stopped: the child ends with
            os.killpg(pid, signal.SIGKILL)  # os._exit, so no atexit joins them) goes with it: its own group
        except ProcessLookupError:
            pass
        mode_file = root / ".mutation-mode"
        mode = mode_file.read_text() if mode_file.exists() else "cold"
        mode_file.unlink(missing_ok=True)
        print(json.dumps({"rc": os.waitstatus_to_exitcode(status), "mode": mode}), file=out, flush=True)


def serve() -> None:
    import hypothesis  # noqa: F401
    import numpy  # noqa: F401
    import pandas  # noqa: F401
    import pydantic  # noqa: F401
    import pytest  # noqa: F401
    import scipy.stats  # noqa: F401
    import simpy  # noqa: F401
    root = Path.cwd()
    out = os.fdopen(os.dup(1), "w")
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 1)
    os.dup2(null, 2)
    sys.dont_write_bytecode = True
    _loop(root, out, None)


if __name__ == "__main__":
    serve()
