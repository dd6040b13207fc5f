"""One parallel map for every command: ``run`` (the runs of a study and its output files), ``capacity``
(the replications of each bisection step) and ``validate`` (its groups of checks).

Same ``--jobs`` semantics everywhere: ``jobs=1`` runs in this process, in order; ``jobs=N`` in N worker
processes started at the first map and kept warm for every later map of the same :class:`Pool` (the runs and
then the plots of a study share one set of workers).  Workers are forked from the parent (on Linux; with
the fork start method asked for explicitly, as Python 3.14 made ``forkserver`` the default there), so the
modules it has imported are already loaded in them; the parent's objects are frozen out of the workers' garbage
collections (:func:`gc.freeze` around the fork, as Python's documentation advises), so a worker does not
scan, collection after collection, the ~80 000 objects it inherited (0.2 s of the workers' time in the
65-run sweep of ``bench/bench_sweep.py``).  Calls go out in the order the caller asks for (``order``: a
study hands out its longest runs first).  Results are handed back with the index of their call: callers
place them by index, so what they compute never depends on which worker finished first, nor on the order.
"""
from __future__ import annotations

import gc
import multiprocessing
import os
import signal
import sys
import threading
from contextlib import contextmanager, nullcontext
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, Callable, Iterable, Iterator


def call(fn: Callable, *args) -> Any:
    """``fn(*args)``: lets one map run different functions (``pool.map(call, [(f, a), (g, b)])``)."""
    return fn(*args)


def _context():
    """Fork on Linux: a worker then starts with the parent's modules loaded.  Under ``forkserver`` (Python
    3.14's default there) each worker imports pandas, SimPy and the simulator again: 0.53-0.59 s before the
    first result of a 2-worker map instead of 0.01 s, and the 65-run sweep of ``bench/bench_sweep.py`` took
    2.7-2.8 s instead of 2.3 s.  Elsewhere the platform's default (macOS: ``spawn``; forking is unsafe there)."""
    return multiprocessing.get_context("fork") if sys.platform.startswith("linux") else None


def _worker_signals() -> None:
    """A worker's start: Ctrl-C is the parent's to handle, and SIGTERM ends the worker as the default does.
    Forked, a worker would inherit the parent's handlers (Python's SIGINT, the command's SIGTERM, both raising
    KeyboardInterrupt): a Ctrl-C or a ``timeout`` reaching the whole process group then interrupted a worker
    inside the pool's queue lock, and the other worker and the parent waited on it for ever."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextmanager
def _signals_to(handler):
    """Inside, SIGINT and SIGTERM go to ``handler``, their handlers restored after; in the main thread only
    (elsewhere Python cannot set them, and they are left as they are)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, before in previous.items():  # (None: a handler Python did not install)
            signal.signal(sig, signal.SIG_DFL if before is None else before)


@contextmanager
def signals_held(hold: bool = True):
    """With ``hold``, SIGINT and SIGTERM are ignored inside (:func:`_signals_to`): the command is already
    stopping."""
    with _signals_to(signal.SIG_IGN) if hold else nullcontext():
        yield


@contextmanager
def _signals_deferred():
    """Inside, SIGINT and SIGTERM are noted, not acted on (:func:`_signals_to`); on leaving, the first one
    noted is raised again, so a Ctrl-C lands after the work inside, not in the middle of it: an import
    stopped half-way leaves its modules half made for the rest of the process."""
    noted: list[int] = []
    try:
        with _signals_to(lambda signum, frame: noted.append(signum)):
            yield
    finally:
        if noted:
            signal.raise_signal(noted[0])


class Pool:
    """``jobs`` worker processes (None: one per core), started at first use, closed on leaving ``with``."""

    def __init__(self, jobs: int | None = None):
        self.jobs = max(1, jobs or os.cpu_count() or 1)
        self._executor: ProcessPoolExecutor | None = None

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(cancel=exc_type is not None)

    def close(self, cancel: bool = False) -> None:
        """Stop the workers (after the calls under way; ``cancel``: drop the ones not started).  Cancelled
        (an interrupted command), the wait for the workers is not itself interrupted: a Ctrl-C or ``timeout``
        signals the whole process group, often twice, and a second KeyboardInterrupt inside the executor's
        shutdown left its threads half closed and the command hung at exit."""
        if self._executor is not None:
            with signals_held(cancel):
                self._executor.shutdown(wait=True, cancel_futures=cancel)
            self._executor = None

    def imap(self, fn: Callable, calls: Iterable[tuple], meanwhile: Callable[[], Any] | None = None,
             order: Callable[[list[int]], list[int]] | None = None) -> Iterator[tuple[int, Any]]:
        """``(n, fn(*calls[n]))`` for every call, as each finishes (in call order in-process).  ``meanwhile``
        is called once after the calls are handed out: parent-side work (an import the end needs) that then
        overlaps the workers instead of adding to the time; a Ctrl-C during it is raised when it returns.
        ``order(remaining)``: called before each hand-out with the indices of the calls not handed out yet
        (in the order they will go), returns them in the order they should go; what the caller learns from
        results can so put the longest calls first, and the last calls, short, leave no worker idle long
        while another finishes.  An exception in a call cancels the calls not started and is raised here."""
        calls = list(calls)
        if self.jobs <= 1 or len(calls) <= 1:
            if meanwhile is not None:
                with _signals_deferred():
                    meanwhile()
            for n, args in enumerate(calls):
                yield n, fn(*args)
            return
        fresh = self._executor is None
        if fresh:  # no more workers than the first map has calls: they would only idle
            self._executor = ProcessPoolExecutor(max_workers=min(self.jobs, len(calls)), mp_context=_context(),
                                                 initializer=_worker_signals)
        # calls are handed to the workers a few at a time, so that a :meth:`submit` made meanwhile (a file
        # whose inputs are ready) waits behind a few calls, not behind all of them
        ahead = 2 * self._executor._max_workers
        index: dict = {}
        pending: set = set()
        remaining = list(range(len(calls)))

        def top_up():
            nonlocal remaining
            if order is not None and remaining and len(pending) < ahead:
                remaining = order(remaining)
            handed = 0
            for n in remaining:
                if len(pending) >= ahead:
                    break
                fut = self._executor.submit(fn, *calls[n])
                index[fut] = n
                pending.add(fut)
                handed += 1
            del remaining[:handed]

        if fresh:  # the workers are forked at the first call handed out
            gc.freeze()
            try:
                top_up()
            finally:
                gc.unfreeze()  # in this process only: its objects are collected as before
        else:
            top_up()
        try:
            if meanwhile is not None:
                with _signals_deferred():
                    meanwhile()
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                top_up()
                for fut in sorted(done, key=index.__getitem__):
                    yield index[fut], fut.result()
        finally:
            for fut in pending:
                fut.cancel()

    def submit(self, fn: Callable, *args) -> Future | None:
        """Start ``fn(*args)`` on a worker now, beside a map under way; None when there are no workers
        (``jobs=1``, or no map has started them): the caller then does the work itself later."""
        return None if self._executor is None else self._executor.submit(fn, *args)

    def map(self, fn: Callable, calls: Iterable[tuple]) -> list:
        """``[fn(*args) for args in calls]``, in call order whatever order they finish in."""
        calls = list(calls)
        out: list = [None] * len(calls)
        for n, result in self.imap(fn, calls):
            out[n] = result
        return out
