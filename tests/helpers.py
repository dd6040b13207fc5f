"""Small builders shared by the tests."""
import pandas as pd

from sim.config import Client, Org, arrival, policy_table
from sim import RunSpec, simulate


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
