"""Running a study: every grid point x replication, in parallel, resumable, bit-identical everywhere.

* Seeds: run (point, replication) uses ``SeedSequence(seed, spawn_key=(replication,))``: the same random
  numbers for every grid point of one replication (common random numbers: alternatives are compared on
  identical traffic), independent across replications, and independent of which worker runs it.
* Resumable: with an output directory, each finished run is written at once under ``runs/`` as
  ``<key>.parquet`` (its request records), ``<key>.refusals.parquet`` and, last, ``<key>.json`` (its
  summary).  ``key`` hashes the run's resolved configuration, replication and seed, so re-running skips
  what is done and a changed scenario re-runs only the points that changed.
* Executors: ``jobs=1`` in-process; ``jobs=N`` a local process pool (:class:`sim.pool.Pool`, shared with
  ``capacity``, ``validate`` and the output stage); ``dask="local"`` or a scheduler address runs on Dask
  distributed (workers write their own records; the directory must be shared storage).
* Workers summarise their own runs: the parent only gathers the small summary rows.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import sys
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable


from .cluster import run_on_dask
from .engine import simulate
from .errors import ConfigError
from .fields import is_whole
from .groups import client_summaries
from .pool import Pool
from .records import RunResult
from .report import compare, jsonable
from .scenario import DASK_ALLOWED, DASK_ADDRESS, Scenario, require_scenario
from .study import StudyResult, summary_frame, tagged, write_run_file
from .summary import summarize
from .spec import RunSpec
from .trace import file_digest, read_trace
from .version import __version__


@dataclass(frozen=True)
class Job:
    """One simulation run of a study."""
    point_index: int
    point: dict
    replication: int
    key: str


def run_inputs(spec: RunSpec) -> dict:
    """What one run reads, as plain data: its org, client groups (a trace file by the SHA-256 of its
    contents), the policies they use, its projects, and the limits, service figures and prices of the models
    it can touch on its tier (own models, fallbacks, models a trace names), horizon and load.  Editing an
    input changes exactly the runs that read it: a custom tier's limits only the runs on that tier, a model's
    speeds only the runs that use that model, a trace every run that replays it (touching it without changing
    it, none)."""
    clients, models = [], set()
    for c in spec.clients:
        data = c.model_dump(mode="json")
        models.add(c.model)
        if c.arrival.kind == "trace":
            data["arrival"]["file"] = file_digest(c.arrival.file)
            df = read_trace(c.arrival.file)
            if "model" in df:
                models.update(m for m in df["model"] if isinstance(m, str))
        clients.append(data)
    used = {c.policy for c in spec.clients}
    for name in used:
        models.update(spec.policies[name].fallback)
    tier = spec.catalog.tier(spec.org.tier)
    return {"org": spec.org.model_dump(mode="json"), "clients": clients,
            "policies": {n: spec.policies[n].model_dump(mode="json") for n in sorted(used)},
            "limits": {m: dataclasses.asdict(tier[m]) if m in tier else None for m in sorted(models)},
            "service": {m: dataclasses.asdict(dataclasses.replace(spec.service[m], source=""))
                        if m in spec.service else None for m in sorted(models)},
            "prices": {m: dataclasses.asdict(dataclasses.replace(spec.prices[m], source=""))
                       if m in spec.prices else None for m in sorted(models)},
            "billed": spec.catalog.bills(spec.org.tier),
            "projects": {n: p.model_dump(mode="json") for n, p in sorted(spec.projects.items())},
            "lane_report": spec.lane_report,
            "duration": spec.duration, "warmup": spec.warmup, "drain": spec.drain, "load": spec.load}


@functools.cache
def code_fingerprint() -> str:
    """A hash of the package's own files (its code and data tables): part of every run's key, so that a run
    finished by other code (a fix that changes results, with the version number unchanged) is run again, not
    reused beside runs that would come out differently.  Any edit counts, a comment's too: a needless re-run
    costs time, a wrong reuse a wrong answer."""
    return files_fingerprint(Path(__file__).resolve().parent)


def files_fingerprint(root: Path) -> str:
    """A hash of the ``.py`` and ``.csv`` files under ``root`` (their paths and bytes; caches left out)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.suffix in (".py", ".csv") and "__pycache__" not in p.parts):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def plan(scenario: Scenario, duration: float | None = None) -> list[Job]:
    """Every (grid point, replication) with its resumption key: a hash of everything the run reads
    (:func:`run_inputs`), the scenario's seed, the replication, the simulator's version and its code
    (:func:`code_fingerprint`)."""
    jobs = []
    code = code_fingerprint()
    for p, point in enumerate(scenario.grid()):
        inputs = run_inputs(scenario.spec(point, duration=duration))
        for rep in range(scenario.scenario.replications):
            blob = json.dumps({"v": __version__, "code": code, "inputs": inputs, "seed": scenario.scenario.seed,
                               "rep": rep}, sort_keys=True, default=str)
            jobs.append(Job(p, point, rep, hashlib.sha256(blob.encode()).hexdigest()[:20]))
    return jobs


#: the summary row's key of the run's per client group summaries (kept out of summary.csv)
BY_CLIENT = "by_client"


def execute(scenario: Scenario, job: Job, out: str | None = None, duration: float | None = None,
            keep: bool = False) -> tuple[dict, RunResult | None]:
    """Run one job; with ``out``, write its records and summary under ``out/runs``.  Returns the summary
    row (point values, replication, key, metrics) and, if ``keep``, the full result."""
    spec = scenario.spec(job.point, duration=duration)  # (its errors name the file and line themselves)
    try:
        result = simulate(spec, scenario.seed(job.replication))
    except ConfigError as exc:  # what only the run finds out (a closed loop that cannot advance)
        raise scenario.run_error(exc, {a: job.point[a] for a in scenario.compare}, job.point_index) from None
    summary = summarize(result)
    row = {"point": job.point_index, **{f"{k}": v for k, v in job.point.items()},
           "replication": job.replication, "key": job.key, **summary, "events": result.events}
    if len(result.spec.clients) > 1:  # by_client.csv's rows: summarised here, while the records are in memory
        row[BY_CLIENT] = client_summaries(result)
    if out is not None:
        runs = Path(out) / "runs"
        try:
            runs.mkdir(parents=True, exist_ok=True)
            write_run_file(tagged(result.records, job.point_index, job.replication), runs / f"{job.key}.parquet")
            write_run_file(result.refusals, runs / f"{job.key}.refusals.parquet")
            earlier = runs / f"{job.key}.earlier.parquet"
            if result.earlier_admissions is not None and len(result.earlier_admissions):
                write_run_file(result.earlier_admissions, earlier)
            elif earlier.exists():  # (from a run of an older version under the same key)
                earlier.unlink()
            tmp = runs / f"{job.key}.json.tmp"
            tmp.write_text(json.dumps(jsonable(row), allow_nan=False))
            os.replace(tmp, runs / f"{job.key}.json")  # the summary appears last: its presence means "done"
        except OSError as exc:  # (pyarrow's own error for a directory in the way is an OSError too)
            raise ConfigError(f"{runs}: cannot write run {job.key} ({exc.strerror or exc}); the runs already "
                              "finished are kept: free the path (make it writable, or move what is in the way) and "
                              "run the same command again to resume") from None
    return row, (result if keep else None)


def finished_rows(out: Path, jobs: Iterable[Job]) -> dict[str, dict]:
    """The summary rows of the runs already done under ``out/runs``, placed where the current plan puts them
    (:func:`retag`).  A run whose files cannot be read (truncated, emptied, a directory in the way) is not
    done: it runs again."""
    done = {}
    for job in jobs:
        if (out / "runs" / f"{job.key}.json").exists():
            row = _readable_run(out / "runs", job.key)
            if row is not None:
                done[job.key] = retag(row, job)
    return done


def _readable_run(runs: Path, key: str) -> dict | None:
    """A finished run's summary row, if its summary reads and both its Parquet files are whole (they begin and
    end with Parquet's magic bytes: a truncated file lacks its footer)."""
    try:
        row = json.loads((runs / f"{key}.json").read_text())
        earlier = runs / f"{key}.earlier.parquet"  # (only a run whose client timed out admitted attempts has one)
        names = (f"{key}.parquet", f"{key}.refusals.parquet", *([earlier.name] if earlier.exists() else []))
        if not all(_whole_parquet(runs / name) for name in names):
            return None
    except (OSError, ValueError):
        return None
    return row if isinstance(row, dict) and {"point", "replication", "key"} <= row.keys() else None


def _whole_parquet(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(4)
        f.seek(0, os.SEEK_END)
        if f.tell() < 12:
            return False
        f.seek(-4, os.SEEK_END)
        return head == b"PAR1" and f.read(4) == b"PAR1"


def retag(row: dict, job: Job) -> dict:
    """A finished run's summary row as the current plan places it.  A run is reused by what it computes (its
    key), while its grid point's number and axis values are those of the scenario it was written for: after
    the ``[compare]`` grid changed (values reordered, an axis added), they are the current grid's.  The row's
    axis values are the keys :func:`execute` wrote between ``point`` and ``replication``."""
    keys = list(row)
    written_axes = keys[keys.index("point") + 1:keys.index("replication")]
    metrics = {k: v for k, v in row.items() if k not in ("point", "replication", "key", *written_axes)}
    return {"point": job.point_index, **job.point, "replication": job.replication, "key": job.key, **metrics}


def run_study(scenario: Scenario, out: str | Path | None = None, *, jobs: int | None = None,
              dask: str | None = None, resume: bool = True, duration: float | None = None,
              progress: bool | None = None, keep_results: bool | None = None,
              on_row: Callable[[dict], None] | None = None, pool: Pool | None = None,
              on_first_replication: Callable[[StudyResult], None] | None = None) -> StudyResult:
    """Run every grid point x replication and summarise.  Ctrl-C stops cleanly: runs already finished
    are kept (on disk with ``out``) and the partial result is returned with ``complete=False``.  ``pool``:
    workers to run on (kept warm for the caller's next map, e.g. the plots); by default ``jobs`` of them
    for this study only.  ``on_first_replication(study)``: called once, as soon as replication 0 of every grid
    point is done (those runs go first), with the study so far: what reads only replication 0 (the figures
    over time) can start while the other replications run."""
    require_scenario(scenario, "run_study(scenario)")
    if out is not None and not isinstance(out, (str, os.PathLike)):
        raise TypeError(f"run_study(out={out!r}): the output directory is a path (str or Path), or None for "
                        "in memory")
    if jobs is not None and (not is_whole(jobs) or jobs < 1):
        raise ValueError(f"run_study(jobs={jobs!r}): jobs is a number of processes >= 1 (None: one per core)")
    out = Path(out) if out is not None else None
    duration = scenario.run_duration(duration)
    all_jobs = plan(scenario, duration)
    rows: dict[str, dict] = {}
    if out is not None:
        prepare_out(out, runs=True)
        if resume:
            rows.update(finished_rows(out, all_jobs))
    reused = len(rows)

    def discard() -> None:
        """``--fresh``: remove the finished runs, once the work can start (a Dask scheduler that cannot be
        reached leaves them, and the directory, as they were)."""
        if out is None or resume:
            return
        for f in (out / "runs").glob("*"):
            if not f.is_dir():  # (only run files live there)
                try:
                    f.unlink()
                except OSError as exc:
                    raise ConfigError(f"--fresh: cannot remove {f} ({exc.strerror or exc})") from None
    todo = sorted((j for j in all_jobs if j.key not in rows), key=lambda j: j.replication > 0)  # stable
    keep = out is None if keep_results is None else keep_results
    results: dict[tuple[int, int], RunResult] = {}
    jobs = pool.jobs if pool is not None else jobs or scenario.run.jobs or os.cpu_count() or 1
    flag = "--dask" if dask else f"{scenario.source}: run.dask"  # who asked for it, for an error
    dask = dask or scenario.run.dask
    bar = _progress(len(all_jobs), len(rows), progress)
    complete = True

    first = {j.key for j in all_jobs if j.replication == 0}
    order = {j.key: n for n, j in enumerate(all_jobs)}

    def study_so_far(done: bool) -> StudyResult:
        ordered = sorted(rows.values(), key=lambda r: order.get(r["key"], len(order)))
        summary = summary_frame([{k: v for k, v in r.items() if k != BY_CLIENT} for r in ordered])
        return StudyResult(scenario, summary, compare(summary, list(scenario.compare)) if len(summary) else summary,
                           out, results, done, duration, reused,
                           {r["key"]: r[BY_CLIENT] for r in ordered if BY_CLIENT in r})

    def first_done():
        nonlocal first
        if on_first_replication is not None and first and first <= rows.keys():
            first = set()
            on_first_replication(study_so_far(False))

    def collect(row, result):
        rows[row["key"]] = row
        if result is not None:
            results[(row["point"], row["replication"])] = result
        bar.update(1)
        if on_row:
            on_row(row)
        first_done()

    out_arg = None if out is None else str(out)
    calls = [(scenario, job, out_arg, duration, keep) for job in todo]
    longest = LongestFirst(todo, rows)
    try:
        if dask and todo:
            _on_dask(dask, scenario, [c[1:] for c in calls], collect, jobs, flag, ready=discard,
                     say=progress is not False)
        else:
            discard()
            with Pool(jobs) if pool is None else nullcontext(pool) as runner:
                # the comparison's t quantiles import scipy.special (~0.4 s): done while the workers run
                first_done()  # (resumed with replication 0 already done)
                for _, done in runner.imap(execute, calls, meanwhile=_warm_compare, order=longest):
                    collect(*done)
    except KeyboardInterrupt:
        complete = False
        if pool is not None:  # (a pool of our own is closed on leaving its ``with``)
            pool.close(cancel=True)  # the calls already handed out end first: then every run kept is counted
    finally:
        bar.close()
    if out is not None and not complete:
        rows.update(finished_rows(out, all_jobs))  # runs that workers finished while we were interrupted
    return study_so_far(complete and len(rows) == len(all_jobs))


class LongestFirst:
    """The order a pool hands a study's remaining runs out in: replication 0 of every grid point first (in plan
    order), then the other replications, those of the grid points whose replication 0 took the most events
    first (each run's ``events`` row; a point not measured yet counts as the longest so far).  Runs of one grid
    point cost about the same, so the sweep ends on short runs and no worker waits long for another's last
    run (longest processing time first, Graham 1969).  Only the order of work changes, never a result.
    ``rows``: the study's rows by key (filled as runs finish; resumed ones already there).  The order is
    sorted again only when a replication 0 has finished: a sweep of N runs sorts about once per grid point."""

    def __init__(self, jobs: list[Job], rows: dict[str, dict]):
        self.jobs = jobs
        self.rows = rows
        self.events: dict[int, int] = {}  # grid point -> events its replication 0 took
        self._seen = -1  # how many rows the last call had read (-1: not called yet)

    def __call__(self, remaining: list[int]) -> list[int]:
        if len(self.rows) == self._seen:
            return remaining
        first = self._seen < 0
        new = list(self.rows.values())[max(self._seen, 0):]  # rows only grow, in the order they came
        self._seen = len(self.rows)
        measured = {r["point"]: r.get("events") or 0 for r in new if r["replication"] == 0}
        if not measured and not first:
            return remaining
        self.events.update(measured)
        longest = max(self.events.values(), default=0)
        return sorted(remaining, key=lambda n: (self.jobs[n].replication > 0,
                                                -self.events.get(self.jobs[n].point_index, longest)
                                                if self.jobs[n].replication > 0 else 0))


def _warm_compare() -> None:
    import scipy.special  # noqa: F401


def check_out(out: Path) -> None:
    """Refuse an ``--out`` that is an existing file, before any work (creates nothing)."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: is an existing file, not a directory (give a directory to write into)")


def prepare_out(out: Path, runs: bool = False) -> int:
    """Create the output directory (and, for a study, its ``runs/``), or say in one line why it cannot be
    used (a file, not writable).  Returns the file system's time then, as it stamps files (its clock may lag
    ``time.time``): a file changed later has an ``st_mtime_ns`` of at least this."""
    check_out(out)
    stamps = []
    for where in (out, out / "runs") if runs else (out,):
        try:
            where.mkdir(parents=True, exist_ok=True)
            probe = where / ".groqsim-write-test"
            probe.write_bytes(b"")
            stamps.append(probe.stat().st_mtime_ns)
            probe.unlink()
        except OSError as exc:
            raise ConfigError(f"--out {out}: cannot write to {where} ({exc.strerror or exc}); choose a writable "
                              "directory") from None
    return stamps[0]


@contextmanager
def hold_out(out: Path):
    """Hold ``out`` for this command alone (an exclusive ``flock`` on the directory, released when the
    command ends, however it ends): a second command writing the same ``--out`` at once is refused in one
    line.  Both used the same temporary names, so one of them failed half-way or wrote over the other.
    Where ``flock`` does not exist (Windows) nothing is held."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    fd = os.open(out, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"--out {out}: another groqsim command is writing there now; wait for it to end, "
                              "or choose another --out") from None
        yield
    finally:
        os.close(fd)


#: how long to wait for a Dask scheduler to answer before giving up (Dask's own default is 30 s)
DASK_CONNECT_TIMEOUT = "5s"


def check_dask_address(address: str) -> None:
    """``local`` or ``[scheme://]host:port``; anything else is refused before any connection is tried."""
    if address != "local" and not DASK_ADDRESS.match(address):
        raise ConfigError(f"--dask {address!r}: not a scheduler address (allowed: {DASK_ALLOWED})")


def _on_dask(address: str, scenario: Scenario, calls: list[tuple], collect, workers: int,
             flag: str = "--dask", ready: Callable[[], None] | None = None, say: bool = True) -> None:
    """Run on Dask with a short connection timeout; an unreachable scheduler is a one-line error naming
    ``flag``, where the address came from (``ready``: called once connected, see :func:`run_on_dask`).
    ``say``: tell stderr a remote scheduler is being reached (not under ``--quiet``)."""
    check_dask_address(address)
    import logging

    import dask
    try:  # distributed's config defaults must exist before dask.config.set: on leaving its block, set would
        import distributed  # noqa: F401  -- delete a "distributed" section it had created, defaults and all
    except ImportError:  # pragma: no cover - run_on_dask says what to install
        pass
    # no worker tracebacks on Ctrl-C; and none from the client's event loop (tornado.application), where a
    # Ctrl-C landing inside distributed's own ``sync`` trips its cancel callback on an unassigned variable
    # (NameError: free variable 'future', distributed/utils.py) and tornado logs it
    for name in ("distributed", "distributed.worker", "distributed.nanny", "distributed.scheduler",
                 "tornado.application"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    if address != "local" and say:
        print(f"groqsim: connecting to the Dask scheduler at {address} (waiting up to {DASK_CONNECT_TIMEOUT})",
              file=sys.stderr)
    # worker processes read their logging level from the environment when they start: on Ctrl-C they
    # would otherwise log every cancelled task, and a worker whose heartbeat finds the scheduler already
    # gone logs an ERROR with its traceback (seen once in a full test run on a loaded machine)
    quiet = {"DASK_LOGGING__DISTRIBUTED": "critical"}
    saved = {k: os.environ.get(k) for k in quiet}
    os.environ.update({k: v for k, v in quiet.items() if saved[k] is None})
    try:
        with dask.config.set({"distributed.comm.timeouts.connect": DASK_CONNECT_TIMEOUT}):
            run_on_dask(address, execute, scenario, calls, collect, workers, ready)
    except (OSError, TimeoutError) as exc:
        raise ConfigError(f"{flag} {address}: cannot reach the scheduler within {DASK_CONNECT_TIMEOUT} "
                          f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no answer'}); "
                          "is `dask scheduler` running there and the port open?") from None
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)


def _progress(total: int, done: int, enabled: bool | None):
    """A bar over runs (done / total, ETA) on stderr; silent when it is not a terminal or when disabled."""
    from tqdm import tqdm
    return tqdm(total=total, initial=done, unit="run", desc="runs", file=sys.stderr,
                disable=not (sys.stderr.isatty() if enabled is None else enabled))
