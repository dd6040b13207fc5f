"""Fingerprints of the simulator's outcomes, to prove a refactor or speed-up changed nothing.

    python bench/records_hash.py --write bench/records_hash.json   # before the change
    python bench/records_hash.py --check bench/records_hash.json   # after: exit 1 on any difference

Every shipped scenario's grid point (replication 0, its first 20 simulated minutes), every benchmark
workload (2 simulated hours) and 60 random client-policy set-ups (every retry kind, jitter, deadline,
pacing, adaptive, cooldown, in-flight cap, bounded queue, fallback, limiter and accounting, 15 minutes each)
are run, and a SHA-256 of their request records and refusal log is taken: the same hash means bit-identical
outcomes, attempts, times and sizes.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from pathlib import Path

import pandas as pd

import sim


ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))


def _digest(result) -> str:
    h = hashlib.sha256()
    for frame in (result.records, result.refusals):
        h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
        h.update(",".join(frame.columns).encode())
    return h.hexdigest()[:24]


def random_setup(k: int) -> sim.RunSpec:
    """Random set-up ``k``: one client group with a random policy, sometimes a second sharing the org."""
    from sim.config import Accounting, Client, Org, arrival, policy_table
    r = random.Random(k)
    pol = {"retry": r.choice(["fixed", "exponential", "groq-sdk"]), "max_attempts": r.randint(1, 8),
           "honor_retry_after": r.random() < 0.5}
    if pol["retry"] != "groq-sdk":
        pol["jitter"] = r.choice(["none", "full", "equal", "decorrelated"])
    for key, p, values in (("deadline", 0.5, [5, 20, 60]), ("pacing", 0.4, [0.5, 0.9, 1.0]),
                           ("adaptive", 0.3, [True]), ("cooldown", 0.4, ["retry-after", 2.0, 10.0]),
                           ("max_in_flight", 0.4, [1, 3, 10]), ("queue_size", 0.4, [0, 5, 20]),
                           ("fallback", 0.2, [["llama-3.3-70b-versatile"]]), ("retry_after_cap", 0.3, [3.0])):
        if r.random() < p:
            pol[key] = r.choice(values)
    kind = r.choice(["poisson", "bursty", "constant", "onoff", "closed"])
    process = ({"kind": kind, "users": r.randint(1, 6), "think": r.choice([0.5, 2.0])} if kind == "closed"
               else {"kind": kind, "rate": f"{r.randint(20, 120)}/min"})
    process.update({"bursty": {"burstiness": 2.5}, "onoff": {"on": "1m", "off": "2m"}}.get(kind, {}))
    clients = [Client(name="a", model="llama-3.1-8b-instant", arrival=arrival(**process),
                      prompt_tokens=r.choice([50, 2000]), max_tokens=r.choice([32, 1024]),
                      completion_tokens={"dist": "uniform", "low": 1, "high": 32}, policy="p")]
    if r.random() < 0.5:
        clients.append(Client(name="b", model="llama-3.1-8b-instant", arrival=arrival(kind="poisson", rate="30/min"),
                              policy=r.choice(["groq-sdk", "paced", "cooldown"])))
    org = Org(tier=r.choice(["free", "developer"]), limiter=r.choice(["token_bucket", "sliding_log", "fixed_window"]),
              accounting=Accounting(charge=r.choice(["max_tokens", "actual"]), refund_unused=r.random() < 0.3),
              error_rate=r.choice([0.0, 0.05]))
    return sim.RunSpec(clients=clients, policies=policy_table({"p": pol}), org=org, duration=900.0, drain=300.0)


def fingerprints() -> dict[str, str]:
    from bench import workloads  # the benchmark's own workloads
    out = {}
    for path in sorted((ROOT / "scenarios").glob("*.toml")):
        scenario = sim.load_scenario(path)
        duration = min(scenario.scenario.duration, 1200.0)
        for k, point in enumerate(scenario.grid()):
            result = sim.simulate(scenario.spec(point, duration=duration), scenario.seed(0))
            out[f"{path.stem}[{k}]"] = _digest(result)
    for name, spec in workloads(7200.0).items():
        out[f"bench:{name}"] = _digest(sim.simulate(spec, 0))
    for k in range(60):
        out[f"random:{k}"] = _digest(sim.simulate(random_setup(k), k))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--write", help="write the fingerprints to this JSON file")
    g.add_argument("--check", help="compare with the fingerprints in this JSON file")
    args = p.parse_args()
    now = fingerprints()
    if args.write:
        Path(args.write).write_text(json.dumps(now, indent=1, sort_keys=True) + "\n")
        print(f"{len(now)} fingerprints written to {args.write}")
        return 0
    before = json.loads(Path(args.check).read_text())
    changed = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
    for k in changed:
        print(f"changed: {k}: {before.get(k)} -> {now.get(k)}")
    print(f"{len(now) - len(changed)} of {len(before.keys() | now.keys())} fingerprints identical")
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())
