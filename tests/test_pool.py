"""The one parallel map of run, capacity and validate: results in call order whatever finishes first, the
same in-process and in workers, errors raised in the caller, workers kept for the next map."""
import gc
import os
import time

import pytest

from sim.pool import Pool, call


def _slow_square(x: float) -> tuple[float, int]:
    time.sleep(x)
    return x * x, os.getpid()


def _fail(x):
    raise ValueError(f"bad {x}")


def test_map_keeps_call_order_when_later_calls_finish_first():
    delays = [0.5, 0.0, 0.01, 0.02]
    with Pool(2) as pool:
        finished = [n for n, _ in pool.imap(_slow_square, [(d,) for d in delays])]
        assert finished != sorted(finished)  # the short calls came back first...
        assert [r[0] for r in pool.map(_slow_square, [(d,) for d in delays])] == [d * d for d in delays]  # ...placed
    assert [r[0] for r in Pool(1).map(_slow_square, [(d,) for d in delays])] == [d * d for d in delays]


def test_workers_are_started_once_and_reused():
    with Pool(2) as pool:
        first = {pid for _, pid in pool.map(_slow_square, [(0.1,)] * 4)}
        second = {pid for _, pid in pool.map(_slow_square, [(0.1,)] * 4)}
    assert os.getpid() not in first | second and len(first | second) <= 2  # the same two workers, not new ones
    assert {pid for _, pid in Pool(1).map(_slow_square, [(0.0,)] * 2)} == {os.getpid()}


def test_an_error_in_a_worker_is_raised_in_the_caller():
    with Pool(2) as pool, pytest.raises(ValueError, match="bad 3"):
        pool.map(call, [(_slow_square, 0.0), (_fail, 3)])


def test_a_call_submitted_during_a_map_runs_before_the_maps_remaining_calls():
    """Calls go to the workers a few at a time, so a submit made while a long map runs starts early (how a
    study's replication-0 figures overlap its other runs); without workers there is nothing to submit to."""
    with Pool(2) as pool:
        early = None
        finished_before = 0
        for n, _ in pool.imap(_slow_square, [(0.05,)] * 40):
            if early is None:
                early = pool.submit(_slow_square, 0.0)
            elif early.done() and not finished_before:
                finished_before = n + 1
        assert early.result()[0] == 0.0
        assert 0 < finished_before < 20  # done long before the 40 calls were
    assert Pool(1).submit(_slow_square, 0.0) is None and Pool(2).submit(_slow_square, 0.0) is None


def _freeze_count(_) -> int:
    return gc.get_freeze_count()


def test_workers_inherit_the_parents_objects_frozen_and_the_parent_is_left_as_it_was():
    """gc.freeze around the fork: a worker's collections skip the objects it inherited (it sees them frozen),
    while this process's objects stay collectable (nothing frozen here after the map)."""
    assert gc.get_freeze_count() == 0
    with Pool(2) as pool:
        counts = pool.map(_freeze_count, [(n,) for n in range(4)])
        assert gc.get_freeze_count() == 0
        assert min(counts) > 1000  # every object this test process had when the workers were forked
        assert pool.map(_freeze_count, [(n,) for n in range(4)]) == counts  # warm workers: not forked again


def _log_start(path: str, n: int) -> int:
    with open(path, "a") as f:  # one short append per call: whole lines, in the order the calls started
        f.write(f"{n}\n")
    time.sleep(0.1)
    return n


def test_calls_are_handed_out_in_the_order_the_caller_asks_for(tmp_path):
    """``order`` sees the calls not handed out yet and its answer is the order they go in (here: the highest
    index first); the results still come back under their own index."""
    log = tmp_path / "starts"
    asked = []

    def highest_first(remaining):
        asked.append(list(remaining))
        return sorted(remaining, reverse=True)

    with Pool(2) as pool:
        results = [r for _, r in sorted(pool.imap(_log_start, [(str(log), n) for n in range(12)],
                                                  order=highest_first))]
    assert results == list(range(12))
    started = [int(x) for x in log.read_text().split()]
    assert sorted(started) == list(range(12))
    # two workers may log calls handed out together in either order (a worker slow to write its line may
    # fall two behind), nothing more
    assert all(abs(s - (11 - k)) <= 2 for k, s in enumerate(started)), started
    assert asked[0] == list(range(12)) and all(set(a) <= set(range(12)) for a in asked)


_SET_IN_THE_PARENT = None  # set at run time by the test below: a spawned or forkserver worker sees None


def _what_the_parent_set():
    return _SET_IN_THE_PARENT


def test_workers_are_forked_whatever_the_default_start_method():
    """Workers start with the parent's state (its imports, here a value it set at run time) even where
    Python's default is not fork (``forkserver``, Linux's default from Python 3.14): they do not import the
    simulator again."""
    import multiprocessing
    import sys
    global _SET_IN_THE_PARENT

    if not sys.platform.startswith("linux"):
        pytest.skip("fork is used on Linux only")
    default = multiprocessing.get_start_method()
    multiprocessing.set_start_method("forkserver", force=True)
    _SET_IN_THE_PARENT = os.getpid()
    try:
        with Pool(2) as pool:
            assert pool.map(_what_the_parent_set, [(), ()]) == [os.getpid()] * 2
    finally:
        _SET_IN_THE_PARENT = None
        multiprocessing.set_start_method(default, force=True)


def test_one_call_or_one_job_runs_here_and_a_generator_of_calls_is_taken():
    """A map of a single call runs in this process (starting workers for it would only cost), as does any
    map with one job; calls may come as a generator."""
    with Pool(2) as pool:
        assert pool.map(_slow_square, [(0.0,)]) == [(0.0, os.getpid())]
        assert pool.submit(_slow_square, 0.0) is None  # no workers were started
        results = pool.map(_slow_square, ((d,) for d in (0.0, 0.01, 0.02)))
        assert [r[0] for r in results] == [0.0, 0.0001, 0.0004] and os.getpid() not in {r[1] for r in results}
        assert sorted(r[0] for _, r in pool.imap(_slow_square, ((d,) for d in (0.0, 0.01)))) == [0.0, 0.0001]
    assert Pool(1).map(_slow_square, ((d,) for d in (0.0, 0.01))) == [(0.0, os.getpid()), (0.0001, os.getpid())]


def test_meanwhile_runs_once_here_with_or_without_workers():
    for jobs in (1, 2):
        ran = []
        with Pool(jobs) as pool:
            results = [r[0] for _, r in sorted(pool.imap(_slow_square, [(0.0,), (0.01,)],
                                                         meanwhile=lambda ran=ran: ran.append(os.getpid())))]
        assert results == [0.0, 0.0001] and ran == [os.getpid()]


def test_closing_stops_the_workers_and_the_next_map_starts_new_ones():
    """Leaving ``with`` (or ``close``) ends the worker processes; a pool that never started any closes
    quietly; a closed pool starts fresh workers at its next map."""
    with Pool(2):
        pass
    Pool(2).close()
    with Pool(2) as pool:
        first = {pid for _, pid in pool.map(_slow_square, [(0.05,)] * 4)}
    for pid in first:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # gone (and reaped) by the time ``with`` is left
    pool = Pool(2)
    try:
        before = {pid for _, pid in pool.map(_slow_square, [(0.05,)] * 4)}
        queued = [pool.submit(_slow_square, 0.05) for _ in range(8)]
        pool.close()  # after the calls under way and queued: all of them done
        assert [f.result()[0] for f in queued] == [0.05 * 0.05] * 8
        after = {pid for _, pid in pool.map(_slow_square, [(0.05,)] * 4)}
        assert before.isdisjoint(after)
    finally:
        pool.close()


def test_an_error_in_the_caller_drops_the_calls_not_started(tmp_path):
    """An exception inside ``with`` (a Ctrl-C, a failed file) leaves without running the calls still
    queued: a few are under way, the rest never start."""
    log = tmp_path / "starts"
    with pytest.raises(RuntimeError, match="stop"), Pool(2) as pool:
        for _ in pool.imap(_log_start, [(str(log), 0), (str(log), 1)]):
            break
        for n in range(2, 30):
            pool.submit(_log_start, str(log), n)
        raise RuntimeError("stop")
    assert len(log.read_text().split()) < 10


def _signal_handlers(_) -> tuple:
    import signal
    return signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)


def test_workers_leave_ctrl_c_to_the_parent_and_die_of_sigterm():
    """Forked workers do not keep the parent's handlers: SIGINT is ignored (the parent stops the work) and
    SIGTERM ends a worker by default, so a signal to the whole process group never interrupts a worker
    inside the pool's queue lock (which had left a sweep hung after a Ctrl-C, 2 times in 12)."""
    import signal

    from sim.cli import _terminated
    previous = signal.signal(signal.SIGTERM, _terminated)  # as the groqsim command sets it
    try:
        with Pool(2) as pool:
            seen = pool.map(_signal_handlers, [(0,), (1,)])
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert seen == [(signal.SIG_IGN, signal.SIG_DFL)] * 2


def test_an_interrupted_close_is_not_itself_interrupted(monkeypatch):
    """Cancelled (the command was interrupted), the wait for the workers ignores SIGINT and SIGTERM, which a
    Ctrl-C or ``timeout`` often sends twice to the whole group: a second KeyboardInterrupt inside the
    executor's shutdown left it half closed and the command hung at exit.  The handlers come back after."""
    import signal
    seen = []
    with Pool(2) as pool:
        pool.map(_signal_handlers, [(0,), (1,)])  # workers started
        shutdown = pool._executor.shutdown
        monkeypatch.setattr(pool._executor, "shutdown",
                            lambda **kw: (seen.append(_signal_handlers(None)), shutdown(**kw)))
        before = _signal_handlers(None)
        pool.close(cancel=True)
        assert seen == [(signal.SIG_IGN, signal.SIG_IGN)] and _signal_handlers(None) == before
    with Pool(2) as pool:
        pool.map(_signal_handlers, [(0,), (1,)])
        shutdown = pool._executor.shutdown
        monkeypatch.setattr(pool._executor, "shutdown",
                            lambda **kw: (seen.append(_signal_handlers(None)), shutdown(**kw)))
        pool.close()  # a normal end: a Ctrl-C still stops the wait
        assert seen[-1] == before


def test_a_ctrl_c_during_meanwhile_is_raised_once_it_has_finished():
    """``meanwhile`` (an import, in ``run``) is not stopped half-way by a Ctrl-C or SIGTERM: the signal is
    raised as KeyboardInterrupt when it returns, and the handlers are as they were after."""
    import signal

    def interrupt_then_finish(done, sig):
        os.kill(os.getpid(), sig)
        time.sleep(0.05)  # the signal has arrived: without the deferral it is raised here
        done.append("finished")

    def as_ctrl_c(signum, frame):
        raise KeyboardInterrupt
    before = signal.signal(signal.SIGTERM, as_ctrl_c)  # as the command's console() sets it
    try:
        for jobs in (1, 2):
            for sig in (signal.SIGINT, signal.SIGTERM):
                done: list = []
                with Pool(jobs) as pool, pytest.raises(KeyboardInterrupt):
                    list(pool.imap(_slow_square, [(0.01,), (0.01,)],
                                   meanwhile=lambda done=done, sig=sig: interrupt_then_finish(done, sig)))
                assert done == ["finished"], (jobs, sig)
                assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
                assert signal.getsignal(signal.SIGTERM) is as_ctrl_c
    finally:
        signal.signal(signal.SIGTERM, before)


def test_a_map_with_meanwhile_runs_in_a_thread_other_than_the_main_one():
    """Signal handlers can be set only from the main thread: elsewhere (a notebook's or a server's worker
    thread) ``meanwhile`` runs without the deferral, instead of failing."""
    import threading

    seen: list = []

    def mapping():
        try:
            with Pool(1) as pool:
                seen.append([r for _, r in pool.imap(_slow_square, [(0.0,), (0.01,)],
                                                     meanwhile=lambda: seen.append("meanwhile"))])
        except Exception as exc:  # noqa: BLE001 - reported below
            seen.append(exc)
    thread = threading.Thread(target=mapping)
    thread.start()
    thread.join(timeout=30)
    assert seen == ["meanwhile", [(0.0, os.getpid()), (0.0001, os.getpid())]]
