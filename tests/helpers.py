"""Small builders shared by the engine tests."""
from sim.config import Client, Org, arrival, policy_table
from sim import RunSpec, simulate


def client(name="c", model="llama-3.3-70b-versatile", rate="60/min", kind="poisson", policy="no-retry", **kw):
    process = kw.pop("arrival", None) or arrival(kind=kind, rate=rate)
    return Client(name=name, model=model, arrival=process, policy=policy, **kw)


def run(clients, duration=600.0, seed=1, org=None, extra_policies=None, **kw):
    spec = RunSpec(clients=clients if isinstance(clients, list) else [clients], policies=policy_table(extra_policies),
                   org=org or Org(), duration=duration, **kw)
    return simulate(spec, seed)
