"""Small builders shared by the tests."""
import socket
import threading
import time
from contextlib import contextmanager

import pandas as pd

from sim.config import Client, Org, arrival, policy_table
from sim import RunSpec, simulate


#: a policy's settings for one attempt on the primary model and, after its 429, one on the fallback model
#: (``max_attempts`` counts the hop's attempt too), nothing retried: add ``"fallback": [MODEL]``
ONE_HOP = {"retry": "fixed", "delay": 1.0, "max_attempts": 2, "retry_on": []}


def client(name="c", model="llama-3.3-70b-versatile", rate="60/min", kind="poisson", policy="no-retry", **kw):
    process = kw.pop("arrival", None) or arrival(kind=kind, rate=rate)
    return Client(name=name, model=model, arrival=process, policy=policy, **kw)


def run(clients, duration=600.0, seed=1, org=None, extra_policies=None, **kw):
    spec = RunSpec(clients=clients if isinstance(clients, list) else [clients], policies=policy_table(extra_policies),
                   org=org or Org(), duration=duration, **kw)
    return simulate(spec, seed)


def summary_rows(values: dict[str, list[float]]) -> pd.DataFrame:
    """One grid point's summary rows (as :func:`sim.report.compare` reads them): every key metric 1.0, 100
    offered, none gave up, unless ``values`` says otherwise (one entry per replication)."""
    n = len(next(iter(values.values())))
    base = {"point": [0] * n, "offered": [100] * n, "binding": ["none"] * n, "gave_up": [0] * n}
    metrics = {m: [1.0] * n for m in ("success_ratio", "throughput_rpm", "tokens_per_min", "latency_p50",
                                      "latency_p95", "latency_p99", "n429_per_attempt", "attempts_per_success",
                                      "mean_wait")}
    return pd.DataFrame({**base, **metrics, **values})


@contextmanager
def running(emu):
    """The emulator's real server (uvicorn) on a free loopback port, in a thread: its base URL; stopped (and
    the records written) on exit."""
    import uvicorn

    from sim.emulator import build_app
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets whose proto says TCP (a plain socket.socket()
    # has proto 0), and without it Nagle's algorithm and the client's delayed ACK add ~40 ms to every answer
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(build_app(emu), log_level="warning", access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
