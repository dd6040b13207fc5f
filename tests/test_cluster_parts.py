"""sim.cluster.run_on_dask on Dask distributed: against an in-process cluster (threads of this process, so the
calls' side effects and the scheduler's state can be read here) and, once, ``local``'s own cluster of worker
processes."""
import os
import time

import pytest

pytest.importorskip("dask.distributed")
from dask.distributed import LocalCluster  # noqa: E402
from distributed import default_client, get_worker  # noqa: E402

from sim.cluster import run_on_dask  # noqa: E402


@pytest.fixture
def cluster():
    """Two single-threaded workers in this process."""
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as c:
        yield c


#: what the calls did, read back here (module functions travel by reference: they append to these very lists)
RAN: list = []
KEYS: list = []


@pytest.fixture(autouse=True)
def _fresh():
    RAN.clear()
    KEYS.clear()


def _call(shared, x, y=0):
    """What a worker ran: its inputs, a value of the shared object's, and the process it ran in."""
    RAN.append(x)
    return (x, y, shared["factor"] * x + y, os.getpid())


def test_every_call_runs_once_with_the_shared_object_and_every_result_is_collected(cluster):
    got, order = [], []
    shared = {"factor": 3}
    calls = [(x, 10 * x) for x in range(6)]
    run_on_dask(cluster.scheduler_address, _call, shared, calls, lambda *r: got.append(r), workers=7,
                ready=lambda: order.append("ready"))
    assert sorted(r[:3] for r in got) == [(x, 10 * x, 13 * x) for x in range(6)] and sorted(RAN) == list(range(6))
    assert {r[3] for r in got} == {os.getpid()}  # (the cluster given ran them: it is this process)
    assert len(cluster.scheduler.workers) == 2  # (``workers`` is for ``local`` only)
    assert order == ["ready"]


def test_ready_is_called_once_before_any_work_and_may_be_left_out(cluster):
    events = RAN
    run_on_dask(cluster.scheduler_address, _logged, None, [(1,), (2,)], lambda x: events.append(("got", x)), 1,
                ready=lambda: events.append(("ready", len(cluster.scheduler.tasks))))
    assert events[0] == ("ready", 0) and sum(e[0] == "ready" for e in events) == 1
    assert sorted(e for e in events if e[0] in ("got", "run")) == [("got", 1), ("got", 2), ("run", 1), ("run", 2)]
    got = []
    run_on_dask(cluster.scheduler_address, _logged, None, [(3,)], got.append, 1)  # no ready
    assert got == [3]


def test_the_shared_object_is_sent_to_every_worker_before_the_calls(cluster):
    """``shared`` is scattered once to all workers: at the first result both workers hold it, though only one
    call ran."""
    holders = []

    def collect(*result):
        shared = [ts for ts in cluster.scheduler.tasks.values() if ts.run_spec is None and ts.who_has]
        holders.append(sorted(len(ts.who_has) for ts in shared))

    run_on_dask(cluster.scheduler_address, _call, {"factor": 1}, [(1,)], collect, 1)
    assert holders == [[2]]


def test_calls_are_named_by_their_jobs_key(cluster):
    """A call whose first argument has a ``key`` (a runner's Job) is the Dask task ``groqsim-<key>``, else
    ``groqsim-<its place>``."""
    class Job:
        def __init__(self, key):
            self.key = key

    got = []
    run_on_dask(cluster.scheduler_address, _keyed, None, [(Job("a1"),), (Job("b2"),), (7,)], got.append, 1)
    assert sorted(KEYS) == ["groqsim-2", "groqsim-a1", "groqsim-b2"] and sorted(map(str, got)) == ["7", "a1", "b2"]


def test_no_client_is_left_behind(cluster):
    run_on_dask(cluster.scheduler_address, _call, {"factor": 1}, [(1,)], lambda *r: None, 1)
    with pytest.raises(ValueError, match="No clients found"):
        default_client()
    deadline = time.monotonic() + 5
    while set(cluster.scheduler.clients) - {"fire-and-forget"} and time.monotonic() < deadline:
        time.sleep(0.02)
    assert set(cluster.scheduler.clients) == {"fire-and-forget"}


def test_an_error_while_collecting_stops_the_calls_not_started():
    """A result that cannot be collected (or Ctrl-C) ends the run: it is raised, and the calls still waiting
    are dropped (one worker thread, 8 calls of 0.2 s: the one running when it stopped, and on a busy machine
    one or two the worker took before the cancel reached it, run on; not the rest)."""
    def collect(x):
        raise KeyError(x)

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as one:
        with pytest.raises(KeyError):
            run_on_dask(one.scheduler_address, _slow, None, [(x,) for x in range(8)], collect, 1)
        deadline = time.monotonic() + 10
        while one.scheduler.tasks and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # what the worker still runs, ends
        assert not one.scheduler.tasks and 1 <= len(RAN) <= 4, RAN


def test_local_runs_the_calls_in_single_threaded_worker_processes_and_stops_them():
    """``local``: a cluster of ``workers`` worker processes of one thread each, closed at the end."""
    psutil = pytest.importorskip("psutil")
    got = []
    run_on_dask("local", _where, {"factor": 2}, [(x,) for x in range(4)], lambda *r: got.append(r), 2)
    assert sorted(r[:2] for r in got) == [(x, 2 * x) for x in range(4)]
    assert os.getpid() not in {r[2] for r in got}
    assert {r[3] for r in got} == {1} and {r[4] for r in got} == {2}
    workers = {r[2] for r in got}
    deadline = time.monotonic() + 10
    while any(map(psutil.pid_exists, workers)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(map(psutil.pid_exists, workers))


def test_local_leaves_port_8787_alone_and_serves_http_on_loopback_only():
    """``local``'s scheduler serves its HTTP on a free loopback port: with 8787 held (by another cluster, a
    notebook's), no warning about it, and nothing listens beyond this machine."""
    pytest.importorskip("psutil")
    import socket
    import warnings
    held = socket.socket()
    try:
        held.bind(("127.0.0.1", 8787))
        held.listen()
    except OSError:
        pass  # (held already: as good)
    seen = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_on_dask("local", _http, None, [(0,)], lambda *r: seen.append(r), 1)
    held.close()
    assert not [w for w in caught if "8787" in str(w.message)], [str(w.message) for w in caught]
    (ips, port), = seen
    assert ips == {"127.0.0.1"} and port != 8787


def _http(shared, x):
    """The address and port the scheduler's HTTP server listens on (read in the scheduler's process)."""
    from distributed import get_client
    client = get_client()
    port = client.scheduler_info()["services"]["dashboard"]
    return client.run_on_scheduler(_listening, port)


def _listening(port, dask_scheduler=None):
    import psutil
    ips = {c.laddr.ip for c in psutil.Process().net_connections("tcp")
           if c.status == psutil.CONN_LISTEN and c.laddr.port == port}
    return ips, port


def _where(shared, x):
    """(x, shared factor x x, pid, the worker's threads, the cluster's workers)."""
    from distributed import get_client
    return (x, shared["factor"] * x, os.getpid(), get_worker().state.nthreads,
            len(get_client().scheduler_info()["workers"]))


def _logged(shared, x):
    RAN.append(("run", x))
    return (x,)


def _keyed(shared, job):
    KEYS.append(get_worker().get_current_task())
    return (getattr(job, "key", job),)


def _slow(shared, x):
    RAN.append(x)
    time.sleep(0.2)
    return (x,)
