"""Which tests can notice a mutant, from one coverage pass (tools/mutation.py).

A test that never executes the mutated line runs exactly as on the original code, so it cannot kill the
mutant: each mutant runs only the tests that executed its line(s) in a coverage pass over the unmutated
code (coverage.py, one context per test: ``mutation_plugin``).  The pass is cached under ``--cache-dir``,
keyed by the hashes of ``sim/``, ``tests/``, the plugin, the pytest arguments and the Python version, so it
is paid once per change of the code or the tests.

Lines run while importing (module constants, class attributes, default arguments, ``def`` lines) have no
test context.  A mutated module constant or class attribute ``NAME = ...`` runs the tests that execute a line
of ``sim/`` reading ``NAME`` or ``x.NAME``; a default argument, the tests that execute its function; any other
code run at import, the tests that execute any line of the file.  Tests that start a process (a
subprocess or a fork) are left out: per-test coverage cannot see what the child executes.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path


def test_files(args: list[str], root: Path) -> tuple[list[str], list[str]]:
    """(test files or node ids, other pytest arguments) of ``--tests``: directories become their
    ``test_*.py`` files, minus the ``--ignore=`` ones."""
    ignored = {str(Path(a.split("=", 1)[1])) for a in args if a.startswith("--ignore=")}
    files, other = [], []
    for a in args:
        if a.startswith("-"):
            if not a.startswith("--ignore="):
                other.append(a)
            continue
        p = root / a
        if p.is_dir():
            files += [str(f.relative_to(root)) for f in sorted(p.rglob("test_*.py"))
                      if str(f.relative_to(root)) not in ignored]
        elif a not in ignored:
            files.append(a)
    return files, other


def cache_key(root: Path, args: list[str], max_examples: int) -> str:
    h = hashlib.sha256(json.dumps([args, max_examples, sys.version]).encode())
    for top in ("sim", "tests", "tools/mutation_plugin.py"):
        paths = [root / top] if (root / top).is_file() else sorted((root / top).rglob("*"))
        for p in paths:
            if p.is_file() and "__pycache__" not in p.parts:
                h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:20]


def split_files(files: list[str], root: Path, parts: int) -> list[list[str]]:
    """Test files in ``parts`` groups of about equal size in bytes (the coverage pass's workers)."""
    groups: list[list[str]] = [[] for _ in range(parts)]
    sizes = [0] * parts
    for f in sorted(files, key=lambda f: -(root / f.split("::")[0]).stat().st_size):
        k = sizes.index(min(sizes))
        groups[k].append(f)
        sizes[k] += (root / f.split("::")[0]).stat().st_size
    return [g for g in groups if g]


def read_pass(data_file: str, workdir: Path) -> dict:
    """One coverage pass's result: ``tests`` {node id: {seconds, process}}, ``lines`` {file: {line: [node
    ids]}}, ``import_lines`` {file: [lines run with no test context]} (paths relative to the project)."""
    import coverage
    data = coverage.CoverageData(basename=data_file)
    data.read()
    out = {"tests": json.loads(Path(data_file + ".json").read_text()), "lines": {}, "import_lines": {}}
    for f in data.measured_files():
        rel = os.path.relpath(f, workdir)
        by_line = data.contexts_by_lineno(f)
        out["lines"][rel] = {str(n): sorted(c for c in ctx if c) for n, ctx in by_line.items() if any(ctx)}
        out["import_lines"][rel] = sorted(n for n, ctx in by_line.items() if "" in ctx)
    return out


def merge(passes: list[dict]) -> dict:
    out = {"tests": {}, "lines": {}, "import_lines": {}}
    for p in passes:
        out["tests"].update(p["tests"])
        for f, by_line in p["lines"].items():
            mine = out["lines"].setdefault(f, {})
            for n, tests in by_line.items():
                mine[n] = sorted(set(mine.get(n, [])) | set(tests))
        for f, lines in p["import_lines"].items():
            out["import_lines"][f] = sorted(set(out["import_lines"].get(f, [])) | set(lines))
    return out


@dataclass
class Selection:
    """Tests per mutant from a coverage pass; orders them so the likeliest killers run first."""
    cov: dict
    killers: dict = field(default_factory=dict)  # scope -> {node id: kills}

    def __post_init__(self):
        tests = self.cov["tests"]
        self.usable = {t for t, v in tests.items() if not v["process"]}
        self.seconds = {t: v["seconds"] for t, v in tests.items()}
        self._import_lines = {f: set(lines) for f, lines in self.cov["import_lines"].items()}
        self._file_tests = {f: set().union(*by_line.values()) & self.usable if by_line else set()
                            for f, by_line in self.cov["lines"].items()}

    def tests_of_lines(self, path: str, lines) -> set[str]:
        by_line = self.cov["lines"].get(path, {})
        return set().union(*(by_line.get(str(n), ()) for n in lines)) & self.usable

    def for_mutant(self, m) -> tuple[list[str], str]:
        """(candidate tests in run order, mode): ``warm`` when only the mutated function's code needs
        swapping, ``cold`` when the module must be imported afresh (code run at import)."""
        lines = set(range(m.lo, m.hi + 1)) | {m.stmt_line}
        imported = bool(lines & self._import_lines.get(m.path, set()))
        tests = self.tests_of_lines(m.path, lines)
        if m.func and not imported:
            mode = "warm"
        elif m.header:  # a default argument or annotation: whoever calls the function
            tests |= self.tests_of_lines(m.path, range(m.body[0], m.body[1] + 1))
            mode = "cold"
        elif m.refs is not None:  # a module constant or class attribute: whoever reads it
            for path, line in m.refs:  # (read at import, e.g. in a class body: whoever uses that file)
                imported_there = line in self._import_lines.get(path, ())
                tests |= self._file_tests.get(path, set()) if imported_there else self.tests_of_lines(path, (line,))
            if m.field:  # a field's default or constraint acts wherever its class is built: whoever uses its file
                tests |= self._file_tests.get(m.path, set())
            mode = "cold"
        else:
            if imported:
                tests |= self._file_tests.get(m.path, set())
            mode = "cold"
        return self.order(tests, m), mode

    def order(self, tests, m) -> list[str]:
        own = self.killers.get((m.path, m.scope), {})
        near = self.killers.get((m.path, None), {})
        return sorted(tests, key=lambda t: (-own.get(t, 0), -near.get(t, 0), self.seconds.get(t, 0.0), t))

    def killed_by(self, m, test: str) -> None:
        for scope in ((m.path, m.scope), (m.path, None)):
            d = self.killers.setdefault(scope, {})
            d[test] = d.get(test, 0) + 1

    def budget(self, test: str) -> float:
        """Seconds one test may run on a mutant (``warm`` runs stop there: ``timeout``)."""
        return 3 * self.seconds.get(test, 1.0) + 2

    def timeout(self, tests) -> float:
        return max(10.0, 3 * sum(self.seconds.get(t, 1.0) for t in tests) + 5)
