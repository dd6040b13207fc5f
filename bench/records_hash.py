"""Fingerprints of the simulator's outcomes, to prove a refactor or speed-up changed nothing.

    python bench/records_hash.py --write bench/records_hash.json   # before the change
    python bench/records_hash.py --check bench/records_hash.json   # after: exit 1 on any difference

Every shipped scenario's grid point (replication 0, its first 20 simulated minutes) and every benchmark
workload (2 simulated hours) is run, and a SHA-256 of its request records and refusal log is taken: the
same hash means bit-identical outcomes, attempts, times and sizes.
"""
from __future__ import annotations

import argparse
import hashlib
import json
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
