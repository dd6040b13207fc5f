"""Small builders shared by the tests."""
import socket
import threading
import time
from contextlib import contextmanager

import pandas as pd

from sim.config import Client, Org, arrival, policy_table
from sim import RunSpec, simulate
from sim.engine import Simulation


#: a policy's settings for one attempt on the primary model and, after its 429, one on the fallback model
#: (``max_attempts`` counts the hop's attempt too), nothing retried: add ``"fallback": [MODEL]``
ONE_HOP = {"retry": "fixed", "delay": 1.0, "max_attempts": 2, "retry_on": []}


def client(name="c", model="llama-3.3-70b-versatile", rate="60/min", kind="poisson", policy="no-retry", **kw):
    process = kw.pop("arrival", None) or arrival(kind=kind, rate=rate)
    return Client(name=name, model=model, arrival=process, policy=policy, **kw)


def run(clients, duration=600.0, seed=1, org=None, extra_policies=None, kernel=True, **kw):
    """One run of these client groups; ``kernel=False``: on the general path even where the fast lane could."""
    spec = RunSpec(clients=clients if isinstance(clients, list) else [clients], policies=policy_table(extra_policies),
                   org=org or Org(), duration=duration, **kw)
    return simulate(spec, seed) if kernel else Simulation(spec, seed, kernel=False).run()


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


#: epoch seconds of 2026-11-02 00:00 UTC, where the tests' recorder logs start, and their model
LOG_T0 = 1_793_577_600.0
LOG_MODEL = "llama-3.1-8b-instant"


def log_line(t_send, t_recv, status, k, rid, retry_after=None, requested=None, usage=None, label="app",
             endpoint="chat.completions", audio=None, max_tokens=256):
    """A recorder log line (sim/recorder.py's format) of :data:`LOG_MODEL`, times in seconds from
    :data:`LOG_T0`: a 429 is Groq's on TPM with its ``Requested`` when ``requested`` is given, else on RPM;
    ``audio``: a transcription's seconds (no ``max_tokens``); ``k`` None: a line without ``retry_count``."""
    headers = {} if retry_after is None else {"retry-after": str(retry_after)}
    error = None
    if status == 429:
        unit = "tokens per minute (TPM)" if requested else "requests per minute (RPM)"
        error = {"type": "tokens" if requested else "requests", "code": "rate_limit_exceeded",
                 "message": f"Rate limit reached for model `{LOG_MODEL}` in organization `org_x` service tier "
                            f"`on_demand` on {unit}: Limit 6000, Used 5000, Requested {requested or 1}. "
                            f"Please try again in {retry_after or 1}s."}
    line = {"t_send": LOG_T0 + t_send, "t_recv": LOG_T0 + t_recv, "status": status, "model": LOG_MODEL,
            "endpoint": endpoint, "max_tokens": None if audio else max_tokens, "audio_seconds": audio,
            "usage": usage, "headers": headers, "error": error, "label": label, "request_id": rid}
    if k is not None:
        line["retry_count"] = k
    return line


def log_usage(prompt, completion):
    """A success's ``usage`` (Groq's fields) for ``prompt`` and ``completion`` tokens."""
    return {"queue_time": 0.01, "prompt_tokens": prompt, "prompt_time": 0.01, "completion_tokens": completion,
            "completion_time": 0.1, "total_tokens": prompt + completion, "total_time": 0.11}


def dense_sdk_log(n, seed):
    """``n`` requests started in the same 4 s, each refused twice on RPM and retried after its retry-after (1-3 s)
    plus a little, then answered: many failures a retry could be paired with (``log_line`` lines)."""
    import numpy as np
    rng = np.random.default_rng(seed)
    lines = []
    for r in range(n):
        t = float(rng.uniform(0, 4))
        for k in range(3):
            rtt = float(rng.uniform(0.05, 0.3))
            if k == 2:
                lines.append(log_line(t, t + rtt, 200, k, f"r{r}_{k}", usage=log_usage(100 + r, 10 + r)))
                break
            ra = int(rng.integers(1, 4))
            lines.append(log_line(t, t + rtt, 429, k, f"r{r}_{k}", retry_after=ra))
            t += rtt + ra + float(rng.uniform(0, 0.05))
    return lines


def answer_text(tokens: int) -> str:
    """The emulator's answer of ``tokens`` tokens as its docs describe it: one word a token, the pangram "The
    quick brown fox jumps over the lazy dog." over and over."""
    words = "The quick brown fox jumps over the lazy dog.".split()
    return " ".join(words[k % len(words)] for k in range(tokens))
