"""How a sweep scales with processes: ``groqsim run`` timed with --jobs 1 and --jobs 2, end to end.

    python bench/bench_sweep.py                      # 65-run sweep and its 6-hour variant, 3 repeats each
    python bench/bench_sweep.py --repeat 5 --json bench/sweep_latest.json
    python bench/bench_sweep.py --only 65            # only the 65-run sweep (30 simulated minutes a run)
    python bench/bench_sweep.py --dask               # also 200 runs on a Dask LocalCluster of 1 and 2 workers

What is timed is the command a user types, as a child process (Python start, imports, the runs, the comparison,
every output file and plot): ``python -m sim run bench/sweep_65.toml --replications 5
[--duration 6h] --out DIR --jobs J --fresh --quiet --format csv`` (13 policies x 5 replications = 65 runs),
each time into an empty directory (deleting the last repeat's files is not timed).  Each repeat times --jobs 1
then --jobs 2 back to back, so both see the same machine load; the speed-up of a repeat is their ratio,
reported min / median / max over the repeats, with the load average (and how busy the CPUs were in the second
before each command, from /proc/stat) next to it: a machine busy with other work distorts the figures, so
measure when it is quiet (``--settle`` waits for that).  The machine's own ceiling is measured
before and after: the speed-up of plain CPU-bound Python loops on 2 processes.

From the median speed-up S on p = 2 processes: the Karp-Flatt serial fraction ``e = (1/S - 1/p) / (1 - 1/p)``
and Amdahl's projection ``1 / (e + (1 - e) / n)`` for n = 16, 32, 64 cores.  ``--phases`` also times, in one
process, where a sweep's time goes (imports, runs, comparison, each output task).  Outputs of --jobs 1 and 2
are checked byte-identical (stdout, summary.csv, comparison.csv).
"""
from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "bench" / "sweep_65.toml"
SWEEP_200 = ROOT / "bench" / "sweep_200.toml"
#: name -> (scenario, replications, --duration or None, runs)
SWEEPS = {"65": (SCENARIO, 5, None, 65), "65x6h": (SCENARIO, 5, "6h", 65)}
PROJECT_TO = (16, 32, 64)


def _cpu_busy(seconds: float = 1.0) -> float:
    """Share of all CPUs busy over ``seconds`` (from /proc/stat; NaN where there is none)."""
    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return v[3] + v[4], sum(v)  # idle + iowait, total
    try:
        i0, t0 = sample()
        time.sleep(seconds)
        i1, t1 = sample()
    except OSError:
        return float("nan")
    return 1.0 - (i1 - i0) / max(t1 - t0, 1)


def _settle(limit: float, wait: float) -> float:
    """Wait (up to ``wait`` s) until the CPUs are less than ``limit`` busy; the last busy share seen."""
    deadline = time.time() + wait
    busy = _cpu_busy()
    while busy >= limit and time.time() < deadline:
        busy = _cpu_busy()
    return busy


def _stats(values: list[float]) -> dict:
    return {"min": min(values), "median": statistics.median(values), "max": max(values), "all": values}


#: ``python -m sim ARGS``, then the CPU seconds of this process and of its (waited) workers on stderr's last line
_RUN = ("import json, resource, sys; from sim.cli import console; code = console(); "
        "cpu = lambda w: (lambda r: r.ru_utime + r.ru_stime)(resource.getrusage(w)); "
        "print(json.dumps({'parent': cpu(resource.RUSAGE_SELF), 'workers': cpu(resource.RUSAGE_CHILDREN)}), "
        "file=sys.stderr); sys.exit(code)")


def _command(scenario: Path, reps: int, duration: str | None, out: Path, jobs: int, dask: bool) -> list[str]:
    cmd = ["python", "-m", "sim", "run", str(scenario), "--replications", str(reps), "--out", str(out),
           "--jobs", str(jobs), "--fresh", "--quiet", "--format", "csv"]
    if duration:
        cmd += ["--duration", duration]
    if dask:
        cmd += ["--dask", "local"]
    return cmd


def _timed(cmd: list[str], stdout: Path, settle: tuple[float, float]) -> dict:
    busy = _settle(*settle)
    load = os.getloadavg()[0]
    t = time.perf_counter()
    with open(stdout, "w") as f:
        res = subprocess.run([sys.executable, "-c", _RUN, *cmd[3:]], stdout=f, stderr=subprocess.PIPE, text=True,
                             cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall = time.perf_counter() - t
    if res.returncode != 0:
        raise SystemExit(f"bench_sweep: {' '.join(cmd)} failed ({res.returncode}):\n{res.stderr}")
    cpu = json.loads(res.stderr.strip().splitlines()[-1])
    return {"wall": wall, "load1": load, "busy_before": busy, "cpu_parent": cpu["parent"],
            "cpu_workers": cpu["workers"]}


def _same_outputs(a: Path, b: Path) -> bool:
    return all((a / n).read_bytes() == (b / n).read_bytes() for n in ("stdout.csv", "summary.csv", "comparison.csv"))


def karp_flatt(speedup: float, p: int) -> float:
    """Serial fraction implied by ``speedup`` on ``p`` processors (Karp & Flatt, 1990)."""
    return (1 / speedup - 1 / p) / (1 - 1 / p)


def amdahl(serial: float, n: int) -> float:
    return 1 / (serial + (1 - serial) / n)


def measure(name: str, scenario: Path, reps: int, duration: str | None, runs: int, configs: list[tuple[str, int, bool]],
            repeat: int, settle: tuple[float, float], tmp: Path) -> dict:
    """Time each (label, jobs, dask) config ``repeat`` times, interleaved; speed-ups against the first."""
    walls: dict[str, list[dict]] = {label: [] for label, _, _ in configs}
    identical = True
    for r in range(repeat):
        for label, jobs, dask in configs:
            out = tmp / f"{name}-{label}"
            cmd = _command(scenario, reps, duration, out, jobs, dask)
            shutil.rmtree(out, ignore_errors=True)  # untimed: --fresh would unlink the last repeat's files
            walls[label].append(_timed(cmd, tmp / f"{name}-{label}.stdout", settle))
            out.mkdir(parents=True, exist_ok=True)
            (out / "stdout.csv").write_bytes((tmp / f"{name}-{label}.stdout").read_bytes())
            print(f"  {name} {label} repeat {r + 1}: {walls[label][-1]['wall']:.2f} s "
                  f"(load {walls[label][-1]['load1']:.2f}, busy before {walls[label][-1]['busy_before']:.0%})",
                  file=sys.stderr)
        first = configs[0][0]
        identical &= all(_same_outputs(tmp / f"{name}-{first}", tmp / f"{name}-{label}") for label, _, _ in configs)
    base = configs[0][0]
    result = {"command": " ".join(_command(scenario.relative_to(ROOT), reps, duration, Path("DIR"), 0, False))
              .replace("--jobs 0", "--jobs J"), "runs": runs, "repeats": repeat, "outputs_identical": identical}
    for label, jobs, dask in configs:
        w = [x["wall"] for x in walls[label]]
        entry = {"jobs": jobs, "dask": dask, "wall_s": _stats(w), "load1": [x["load1"] for x in walls[label]],
                 "busy_before": [round(x["busy_before"], 3) for x in walls[label]],
                 "cpu_parent_s": _stats([x["cpu_parent"] for x in walls[label]]),
                 "cpu_workers_s": _stats([x["cpu_workers"] for x in walls[label]])}
        if label != base:
            pairs = [b["wall"] / x["wall"] for b, x in zip(walls[base], walls[label])]
            entry["speedup_vs_" + base] = _stats(pairs)
            # load-independent cross-check: CPU seconds, the parent's as serial, the workers' shared evenly
            serial = [b["cpu_parent"] + b["cpu_workers"] for b in walls[base]]
            model = [x["cpu_parent"] + x["cpu_workers"] / jobs for x in walls[label]]
            entry["cpu_model_speedup_vs_" + base] = statistics.median(serial) / statistics.median(model)
        result[label] = entry
    return result


def project(speedup: float, p: int = 2) -> dict:
    e = karp_flatt(speedup, p)
    return {"measured_speedup": speedup, "p": p, "serial_fraction": e,
            "amdahl": {str(n): amdahl(e, n) for n in PROJECT_TO}, "limit": (1 / e) if e > 0 else None}


def _spin(n: int) -> float:
    t = time.process_time()
    x = 0
    for i in range(n):
        x += i * i % 7
    return time.process_time() - t


def machine_ceiling(n: int = 4_000_000, tasks: int = 4) -> dict:
    """The speed-up this machine gives plain CPU-bound Python on 2 processes right now (2.0 on two idle
    cores; less when its CPUs are hyperthreads of one core, or busy with other work): the sweep's
    speed-up is bounded by it."""
    from concurrent.futures import ProcessPoolExecutor
    t = time.perf_counter()
    for _ in range(tasks):
        _spin(n)
    one = time.perf_counter() - t
    with ProcessPoolExecutor(2) as pool:
        list(pool.map(_spin, [1, 1]))
        t = time.perf_counter()
        list(pool.map(_spin, [n] * tasks))
        two = time.perf_counter() - t
    return {"one_process_s": one, "two_processes_s": two, "speedup": one / two}


def phases(scenario: str, reps: int, duration: str | None) -> dict:
    """Where one in-process sweep's time goes: imports, plan, runs, comparison, each output task (jobs 1)."""
    t0 = time.perf_counter()
    from sim.report import FIGURES, write_requests
    from sim.lane_plots import lane_tables, plot_lanes
    from sim.runner import plan, run_study
    from sim.scenario import load_scenario
    from sim.units import parse_duration
    t1 = time.perf_counter()
    s = load_scenario(scenario, {"seed": None, "replications": reps})
    dur = parse_duration(duration) if duration else None
    t = time.perf_counter()
    plan(s, dur)
    t_plan = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        study = run_study(s, d, jobs=1, resume=False, progress=False, duration=dur)
        t_runs = time.perf_counter() - t
        tasks = {}
        for fn in (write_requests, *FIGURES, plot_lanes, lane_tables):
            t = time.perf_counter()
            fn(study, Path(d))
            tasks[fn.__name__] = time.perf_counter() - t
    return {"imports_s": t1 - t0, "plan_s": t_plan, "runs_and_comparison_s": t_runs, "output_tasks_s": tasks,
            "note": "in one process, --jobs 1; the first output task that draws also imports matplotlib"}


def dask_overhead(workers: int, tasks: int = 200) -> dict:
    """Seconds to start and stop a LocalCluster of ``workers`` processes, and per no-op task round trip."""
    from dask.distributed import Client, LocalCluster, wait
    t = time.perf_counter()
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
    client = Client(cluster)
    start = time.perf_counter() - t
    client.submit(abs, -1).result()  # a first task: the workers are up
    t = time.perf_counter()
    wait([client.submit(abs, -k, pure=False) for k in range(tasks)])
    per_task = (time.perf_counter() - t) / tasks
    t = time.perf_counter()
    client.close()
    cluster.close()
    return {"workers": workers, "start_s": start, "per_task_s": per_task, "close_s": time.perf_counter() - t}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=3, help="repeats of each timing (default 3)")
    ap.add_argument("--only", choices=[*sorted(SWEEPS), "none"], help="only this sweep (none: only --dask/--phases)")
    ap.add_argument("--dask", action="store_true", help="also the 200-run sweep on a Dask LocalCluster (1, 2 workers)")
    ap.add_argument("--phases", action="store_true", help="also where a 65-run sweep's time goes, in one process")
    ap.add_argument("--settle", type=float, default=60.0,
                    help="before each command wait up to this many seconds for the CPUs to be < 25%% busy "
                         "(default 60; 0: do not wait)")
    ap.add_argument("--json", help="write the figures to this file (e.g. bench/sweep_latest.json)")
    ap.add_argument("--phases-child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.phases_child:
        scenario, reps, duration = args.phases_child
        print(json.dumps(phases(scenario, int(reps), None if duration == "-" else duration)))
        return 0
    settle = (0.25, args.settle)
    # every timed command reads the package's cached bytecode, as groqsim does from its second run on (an
    # environment with PYTHONDONTWRITEBYTECODE set never caches it and compiles the package at every start)
    compileall.compile_dir(ROOT / "sim", quiet=1)
    report = {"machine": {"cores": os.cpu_count(), "python": platform.python_version(),
                          "load_at_start": os.getloadavg(), "bytecode": "compiled (compileall) before timing"},
              "sweeps": {}}
    _settle(*settle)
    report["machine"]["ceiling_before"] = machine_ceiling()
    print(f"machine: plain CPU-bound Python gains {report['machine']['ceiling_before']['speedup']:.2f}x on 2 "
          "processes right now", file=sys.stderr)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for name, (scenario, reps, duration, runs) in SWEEPS.items():
            if args.only and name != args.only:
                continue
            res = measure(name, scenario, reps, duration, runs, [("jobs1", 1, False), ("jobs2", 2, False)],
                          args.repeat, settle, tmp)
            res["projection"] = project(res["jobs2"]["speedup_vs_jobs1"]["median"])
            report["sweeps"][name] = res
            s = res["jobs2"]["speedup_vs_jobs1"]
            j1, j2 = res["jobs1"]["wall_s"]["median"], res["jobs2"]["wall_s"]["median"]
            print(f"{name}: jobs 1 {j1:.2f} s, jobs 2 {j2:.2f}"
                  f" s: speed-up {s['median']:.2f}x (min {s['min']:.2f}, max {s['max']:.2f}); outputs identical: "
                  f"{res['outputs_identical']}")
        if args.dask:
            res = measure("200", SWEEP_200, 20, None, 200, [("dask1", 1, True), ("dask2", 2, True), ("jobs1", 1, False),
                                                            ("jobs2", 2, False)], args.repeat, settle, tmp)
            res["projection"] = project(res["dask2"]["speedup_vs_dask1"]["median"])
            res["overhead"] = [dask_overhead(n) for n in (1, 2)]
            report["dask"] = res
            s = res["dask2"]["speedup_vs_dask1"]
            print(f"200 runs on Dask LocalCluster: 1 worker {res['dask1']['wall_s']['median']:.2f} s, 2 workers "
                  f"{res['dask2']['wall_s']['median']:.2f} s: speed-up {s['median']:.2f}x; serial fraction "
                  f"{res['projection']['serial_fraction']:.3f}; projected "
                  + ", ".join(f"{n} cores {v:.1f}x" for n, v in res["projection"]["amdahl"].items()))
        if args.phases:
            report["phases"] = {}
            for name in ("65", "65x6h"):
                scenario, reps, duration, _ = SWEEPS[name]
                out = subprocess.run([sys.executable, __file__, "--phases-child", str(scenario), str(reps),
                                      duration or "-"], capture_output=True, text=True, cwd=ROOT,
                                     env={**os.environ, "PYTHONPATH": str(ROOT)})
                report["phases"][name] = json.loads(out.stdout) if out.returncode == 0 else out.stderr
                print(f"phases {name}: {report['phases'][name]}")
    report["machine"]["load_at_end"] = os.getloadavg()
    report["machine"]["ceiling_after"] = machine_ceiling()
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
