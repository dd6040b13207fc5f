"""How long ``groqsim calibrate`` takes on a long log, phase by phase, with 1 and 2 processes.

    python bench/bench_calibrate.py                    # the 8-hour overload log (~89 000 lines), 3 repeats
    python bench/bench_calibrate.py --duration 2h --repeat 5 --json bench/calibrate_latest.json

The log is simulated, not shipped: ``groqsim simlog`` of ``bench/sweep_65.toml``'s grid point 1 (the groq SDK's
retries against the Free tier's RPM, so nearly every line after the first minutes is a 429 or its retry) for
``--duration`` of simulated traffic, written to a temporary file once.  Each repeat then times, in this
process: reading it (``read_log``), the evidence table, and ``calibrate_log`` with ``jobs`` 1 and 2 (the
service and limit fits, then the eight limiter hypotheses replayed, side by side on two processes), and the
check (the log's attempts simulated three times on the calibrated scenario, on two processes); minimum, median
and maximum over the repeats.  The two calibrations must agree: every hypothesis' errors, bit for bit.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sim.calibrate import calibrate_log  # noqa: E402
from sim.calibration_check import check_calibration  # noqa: E402
from sim.calibrate.evidence import evidence_table  # noqa: E402
from sim.pool import Pool  # noqa: E402
from sim.recorder import read_log  # noqa: E402
from sim.scenario import load_scenario  # noqa: E402
from sim.simlog import simulate_log  # noqa: E402
from sim.units import parse_duration  # noqa: E402

SCENARIO = ROOT / "bench" / "sweep_65.toml"
POINT = 1  # policy groq-sdk


def _timed(fn, *args, **kw):
    t = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", default="8h", help="simulated traffic in the log (default 8h: ~89 000 lines)")
    ap.add_argument("--repeat", type=int, default=3, help="repeats of each timing (default 3)")
    ap.add_argument("--json", help="write the figures to this file")
    args = ap.parse_args(argv)
    scenario = load_scenario(SCENARIO)
    spec = scenario.spec(scenario.point(POINT), duration=parse_duration(args.duration))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "overload.jsonl"
        simulate_log(spec, scenario.seed(0)).write(path)
        size = path.stat().st_size
        times: dict[str, list[float]] = {"read_log": [], "evidence_table": [], "calibrate_log jobs 1": [],
                                         "calibrate_log jobs 2": [], "check_calibration jobs 2": []}
        for _ in range(args.repeat):
            log, t = _timed(read_log, path)
            times["read_log"].append(t)
            times["evidence_table"].append(_timed(evidence_table, log)[1])
            one, t = _timed(calibrate_log, log, jobs=1)
            times["calibrate_log jobs 1"].append(t)
            two, t = _timed(calibrate_log, log, jobs=2)
            times["calibrate_log jobs 2"].append(t)
            with Pool(2) as pool:
                times["check_calibration jobs 2"].append(_timed(check_calibration, two, Path(tmp) / "check",
                                                                pool=pool)[1])
            pairs = zip(one.hypotheses, two.hypotheses)
            if not all(a.name == b.name and (a.errors == b.errors).all() for a, b in pairs):
                print("error: jobs 1 and jobs 2 ranked the hypotheses differently", file=sys.stderr)
                return 1
    print(f"log: {log.lines:,} lines ({size / 1e6:.1f} MB), {args.duration} of {SCENARIO.name} point {POINT}; "
          f"best: {one.best.name}")
    figures = {}
    for phase, values in times.items():
        figures[phase] = {"min": min(values), "median": statistics.median(values), "max": max(values)}
        print(f"  {phase:25s} median {figures[phase]['median']:6.2f} s  (min {min(values):.2f}, max {max(values):.2f})")
    if args.json:
        Path(args.json).write_text(json.dumps({"lines": log.lines, "bytes": size, "duration": args.duration,
                                               "repeat": args.repeat, "seconds": figures}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
