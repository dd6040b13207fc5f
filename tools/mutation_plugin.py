"""pytest plugin loaded by tools/mutation.py.

* hypothesis without shrinking and without its example database, and with at most
  ``GROQSIM_MUTATION_MAX_EXAMPLES`` examples per property, on top of whatever profile the suite loaded.  A mutant
  only needs *a* failing example, and shrinking one can take longer than the whole search; the database would
  let one mutant's failure leak into the next run.
* ``--mutation-failed FILE``: the node id of the first failing test is written there (the test that killed
  the mutant: the runner tries it first on the next mutants of the same function).
* ``--mutation-coverage FILE``: the coverage pass.  coverage.py measures ``sim/`` with one context per test
  (its node id, as pytest-cov's ``--cov-context=test`` does; lines run while importing and collecting have
  the empty context), and ``FILE.json`` gets each test's duration and whether it started a process (a
  subprocess or a fork), whose lines per-test coverage cannot see.
"""
import json
import os
import subprocess
import time

import pytest
from hypothesis import Phase, settings


def pytest_addoption(parser):
    parser.addoption("--mutation-failed", default=None)
    parser.addoption("--mutation-coverage", default=None)


_FAILED: list[str] = []  # --mutation-failed, once configured


def pytest_configure(config):
    _FAILED[:] = [config.getoption("--mutation-failed") or ""]
    path = config.getoption("--mutation-coverage")
    if path:
        config.pluginmanager.register(_CoveragePass(path, str(config.rootpath / "sim" / "*")), "mutation-coverage")


def pytest_sessionstart(session):
    cap = int(os.environ.get("GROQSIM_MUTATION_MAX_EXAMPLES", "0"))
    extra = {"max_examples": min(cap, settings.default.max_examples)} if cap else {}
    settings.register_profile("mutation", parent=settings.default, database=None,
                              phases=(Phase.explicit, Phase.reuse, Phase.generate), **extra)
    settings.load_profile("mutation")


def pytest_runtest_logreport(report):
    path = _FAILED[0] if _FAILED else ""
    if report.failed and path and not os.path.exists(path):
        with open(path, "w") as f:
            f.write(report.nodeid)


def pytest_collectreport(report):
    pytest_runtest_logreport(report)


class _CoveragePass:
    """Per-test line coverage of ``sim/`` (coverage.py contexts), durations and process starts."""

    def __init__(self, data_file: str, include: str):
        import coverage
        self.data_file, self.tests, self.current = data_file, {}, ""
        self.cov = coverage.Coverage(data_file=data_file, include=[include], config_file=False)
        self.cov.start()  # before collection: lines run by imports get the empty context
        popen_init = subprocess.Popen.__init__

        def popen(inner_self, *args, **kw):
            self._started()
            popen_init(inner_self, *args, **kw)
        subprocess.Popen.__init__ = popen
        os.register_at_fork(before=self._started)

    def _started(self):
        if self.current:
            self.tests[self.current]["process"] = True

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item, nextitem):
        self.current = item.nodeid
        self.tests[item.nodeid] = {"seconds": 0.0, "process": False}
        self.cov.switch_context(item.nodeid)
        t0 = time.perf_counter()
        yield
        self.tests[item.nodeid]["seconds"] = time.perf_counter() - t0
        self.cov.switch_context("")
        self.current = ""

    def pytest_sessionfinish(self, session):
        self.cov.stop()
        self.cov.save()
        with open(self.data_file + ".json", "w") as f:
            json.dump(self.tests, f)
