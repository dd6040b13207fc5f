"""The ``groqsim`` command.  Bad input -> one line on stderr naming what is wrong, exit status 2."""
from __future__ import annotations

import argparse
import datetime
import errno
import gc
import math
import os
import shutil
import signal
import sys
import warnings
from pathlib import Path

from .catalog import Catalog, format_rows, with_shutdowns
from .errors import ConfigError, did_you_mean, printable, write_problems
from .texttable import align
from .units import format_duration, parse_duration


def _limits(args) -> int:
    cat = Catalog.from_file(args.file) if args.file else Catalog.published()
    if args.tier is not None and args.tier not in cat.tiers:
        raise ConfigError(f"--tier {args.tier}: {did_you_mean(args.tier, cat.tiers, 'tier')}")
    try:
        rows = cat.rows(args.tier, args.model)
    except ConfigError as exc:  # (only --model can be unknown here: --tier is checked above)
        raise ConfigError(f"--model {args.model}: {exc}") from None
    rows = with_shutdowns(rows, datetime.date.today())
    sys.stdout.write(format_rows(rows, args.format))
    if args.format == "table":
        print("groqsim: '-' = no published limit of that unit for that model on that tier (nothing enforced)"
              + ("; shut_down = the day Groq stopped serving the model on that tier (a scenario sending it is "
                 "warned)" if any(r["shut_down"] for r in rows) else ""), file=sys.stderr)
    return 0


def _utf8(out: Path) -> Path:
    """``out``, the directory a command writes Parquet files in, if its name is UTF-8 text: pyarrow's writer
    takes no other name (bytes such as 0xff, which Linux allows, failed the run after its first simulation)."""
    try:
        str(out).encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(f"--out {printable(out)}: the path is not UTF-8 text (the Parquet writer takes no other; "
                          "allowed: a directory whose name is UTF-8)") from None
    return out


#: work a command does without ``--force``: beyond either, it says how much and refuses
MAX_RUNS = 20_000
MAX_REQUESTS = 50_000_000
#: closed-loop users one run starts without ``--force``: each is a simulated process holding ~0.8 KB (400 000
#: users took 514 MB against 273 MB for 100 000), so a few million exhaust a laptop before a request is sent
MAX_USERS = 1_000_000
#: simulated requests ``simlog`` writes without ``--force`` (about 500 bytes of log each)
MAX_LOG_REQUESTS = 2_000_000
#: simulated requests no command starts even with ``--force``: at ~100 bytes of records each, 10**12 need
#: 100 TB, and past 2**63 numpy cannot even size the arrays (a ValueError, not a MemoryError)
MAX_EVER = 10**12


def count(n: float) -> str:
    """A count for a message: with thousands separators, or as 2.4e+303 when that would be a wall of digits."""
    return f"{n:,.0f}" if n < 1e15 else f"{n:.2g}"


def _within_any_machine(args, requests: float, what: str, also: str) -> None:
    """Refuse, even with --force, work past :data:`MAX_EVER` simulated requests (``what`` says how much; ``also``:
    the command's other ways to ask for less)."""
    if requests > MAX_EVER:
        raise ConfigError(f"{args.scenario}: {what} is more than any machine holds, even with --force (limit "
                          f"{MAX_EVER:.0e} requests, ~100 bytes of records each); lower the rate, --duration"
                          + (f", {also}" if also else ""))


def _load(args):
    from .scenario import load_scenario
    return load_scenario(args.scenario, {"seed": args.seed, "replications": args.replications})


def _notes(scenario, duration: float | None = None) -> None:
    """One line per model the scenario uses that Groq has shut down, per setting that changes nothing, and per
    trace the horizon cuts (said once the input is known good)."""
    for note in scenario.notes() + scenario.setting_notes(duration) + scenario.trace_notes(duration):
        print(f"groqsim: {note}", file=sys.stderr)


def _duration(args) -> float | None:
    """``--duration`` in seconds (None: the scenario's; its warm-up is scaled alike, see Scenario.spec)."""
    if args.duration is None:
        return None
    try:
        value = parse_duration(args.duration)
    except ValueError:
        raise ConfigError(f"--duration {args.duration!r}: not a duration (allowed: > 0, e.g. 90s, 15m, 1d)") from None
    if value <= 0:
        raise ConfigError(f"--duration {args.duration!r}: must be > 0 (e.g. 90s, 15m, 1d)")
    return value


#: the work limit on closed-loop users, as named in messages
USERS = "closed-loop users in one run"


def _over_limits(scenario, runs: int, requests: float) -> dict[str, tuple[float, int]]:
    """What is over the work limits a command keeps to without --force (runs, simulated requests, closed-loop
    users in one run), as (size, limit): the one place those limits are compared."""
    sizes = {"runs": (runs, MAX_RUNS), "simulated requests": (requests, MAX_REQUESTS),
             USERS: (scenario.users(), MAX_USERS)}
    return {what: (size, limit) for what, (size, limit) in sizes.items() if size > limit}


def _work(args, scenario, duration: float | None, runs_factor: float = 1.0, at: str = "") -> None:
    """Say how much work the command is (runs, simulated requests) and refuse a huge one unless --force.
    ``at``: what the request estimate assumes, when the command scales the traffic itself."""
    runs, requests = scenario.size(duration)
    runs, requests = int(runs * runs_factor), requests * runs_factor
    what = f"{count(runs)} run(s), about {count(requests)} simulated requests{at}"
    _within_any_machine(args, requests, what, "[compare] load or --replications")
    over = _over_limits(scenario, runs, requests)
    if ({"runs", "simulated requests"} & over.keys()) and not args.force:
        raise ConfigError(f"{args.scenario}: {what} is more than this command does without --force (limits: "
                          f"{MAX_RUNS:,} runs, {MAX_REQUESTS:,} requests); lower --replications/--duration or "
                          "add --force")
    if USERS in over and not args.force:
        users = over[USERS][0]
        raise ConfigError(f"{args.scenario}: {users:,} closed-loop users in one run (users x load, summed over the "
                          f"groups) is more than this command starts without --force (limit {MAX_USERS:,}; each "
                          "holds about 1 KB of memory); lower arrival.users or add --force")
    _notes(scenario, duration)  # warnings: --quiet hides progress and the work estimate, not these
    if not getattr(args, "quiet", False):
        print(f"groqsim: {what}", file=sys.stderr)


def _check(args) -> int:
    scenario = _load(args)
    grid = scenario.check()
    meta = scenario.scenario
    duration = _duration(args)
    runs, requests = scenario.size(duration)
    print(f"{args.scenario}: ok: {meta.name!r}, {len(grid)} grid point(s) x {meta.replications} replication(s)"
          f" = {len(grid) * meta.replications} run(s) of {format_duration(duration or meta.duration)}, about "
          f"{count(requests)} simulated requests")
    for k, point in enumerate(grid):
        print(f"  [{k}] " + (", ".join(f"{a}={v}" for a, v in point.items()) or "(no [compare] axes)"))
    # every model a run may send to: a trace's rows can name others than its client group's
    print(f"  models: {', '.join(sorted(scenario.used_models()))}")
    if over := _over_limits(scenario, runs, requests):  # valid, but `run` would stop at it: said now
        print("  note: `groqsim run` refuses this without --force: "
              + ", ".join(f"{count(size)} {what} (limit {limit:,})" for what, (size, limit) in over.items()))
    _notes(scenario, duration)
    return 0


def _run(args) -> int:
    from .pool import Pool
    from .runner import check_dask_address, hold_out, prepare_out
    scenario = _load(args)
    duration = _duration(args)
    if args.dask:
        check_dask_address(args.dask)
    out = _utf8(Path(args.out) if args.out else Path("results") / Path(args.scenario).stem)
    created = not out.exists()
    mark = prepare_out(out)  # output files changed after this are this command's (see _interrupted)
    with hold_out(out), Pool(args.jobs or scenario.run.jobs) as pool:  # one set of workers: runs, then files
        return _run_study(args, scenario, duration, out, created, pool, mark)


def _run_study(args, scenario, duration, out, created, pool, mark: int) -> int:
    from .report import start_early_figures
    from .runner import finished_rows, plan, run_study
    early: dict = {}  # figures of replication 0, drawn by the workers while the other replications run
    started = False
    try:
        _work(args, scenario, duration)
        started = True
        study = run_study(scenario, out, dask=args.dask, resume=not args.fresh, duration=duration,
                          progress=False if args.quiet else None, pool=pool,
                          on_first_replication=lambda s: start_early_figures(pool, s, out, early))
    except ConfigError as exc:
        if created and not any(f.is_file() for f in out.rglob("*")):
            shutil.rmtree(out, ignore_errors=True)  # leave nothing behind a command that did nothing
        kept = len(finished_rows(out, plan(scenario, duration))) if started and (out / "runs").is_dir() else 0
        if kept:  # (an error only a run finds: the runs finished before it are not lost)
            raise ConfigError(f"{exc}; the {kept} run(s) finished are kept in {out / 'runs'}: the same command, "
                              "once that is fixed, reuses them") from None
        raise
    except KeyboardInterrupt:  # a second signal while the first one's partial study was gathered
        _interrupted(out, mark, pool)
        print(_kept(len(finished_rows(out, plan(scenario, duration))), out), file=sys.stderr)
        return 130
    try:
        return _report_study(args, scenario, duration, out, pool, study, early, mark)
    except KeyboardInterrupt:  # (a second signal while the table was printed or the files listed): runs are kept
        _interrupted(out, mark, pool)
        print(_kept(len(study.summary), out), file=sys.stderr)
        return 130


def _interrupted(out: Path, mark: int, pool) -> None:
    """After a Ctrl-C that stopped the command's own part of the output stage: the workers end the files they
    had started (the signals held meanwhile: a second Ctrl-C inside the executor's shutdown left the command
    waiting for them for ever), and every output file changed since ``mark`` (:func:`sim.runner.prepare_out`'s)
    is listed in the manifest, so that the next complete study removes the ones it does not write
    (:func:`sim.report.remove_stale`)."""
    from .pool import signals_held
    from .report import OUTPUT_FILES, remove_stale
    with signals_held():  # (a further Ctrl-C: the command is already stopping)
        pool.close(cancel=True)
        written = [out / name for name in OUTPUT_FILES
                   if (out / name).is_file() and (out / name).stat().st_mtime_ns >= mark]
        remove_stale(out, written, remove=False)


def _report_study(args, scenario, duration, out, pool, study, early, mark: int) -> int:
    """The end of ``run``: the comparison printed, the output files written and listed; 130 after an
    interrupted study (its partial table and files), 2 when a file could not be written."""
    from .report import (comparison_json, format_by_client, format_by_project, format_comparison, remove_stale,
                         write_outputs)
    if not len(study.summary):
        print("groqsim: interrupted before any run finished", file=sys.stderr)
        return 130
    axes = list(scenario.compare)
    meta = scenario.scenario
    planned = len(scenario.grid()) * meta.replications
    if study.reused and not args.quiet:
        print(f"groqsim: resumed: {study.reused} of {planned} run(s) were already finished in {out / 'runs'} and "
              "were read back, not run again (--fresh runs them all)", file=sys.stderr)
    if not args.quiet and args.format == "table":
        reps = (f"{meta.replications} replication(s)" if study.complete else
                f"at most {meta.replications} replication(s) (interrupted: {len(study.summary)} of "
                f"{planned} runs finished, so fewer for some)")
        print(f"{meta.name}: {len(study.comparison)} alternative(s) x {reps} of "
              f"{format_duration(duration or meta.duration)} simulated; mean ±95% CI over replications; latencies "
              "of successful requests; binding = the limit that refused most, or whose budget ran out with "
              "requests unfinished, or that a pacing client waited on (none: no limit held anything back)",
              file=sys.stderr)
    if args.format == "json":
        sys.stdout.write(comparison_json(study.comparison))
    elif args.format == "csv":
        sys.stdout.write(study.comparison.to_csv(index=False))
    else:
        sys.stdout.write(format_comparison(study.comparison, axes))
    problems: list[str] = []
    kept = _kept(len(study.summary), out)
    try:
        files = write_outputs(study, out, pool if study.complete else None,  # Ctrl-C also stopped the workers
                              early if study.complete else None, errors=problems)
    except KeyboardInterrupt:  # (a second Ctrl-C, or the first while the files are written): the runs are kept
        _interrupted(out, mark, pool)
        print(kept.replace("interrupted:", "interrupted while writing the outputs:"), file=sys.stderr)
        return 130
    # each group its own project: the per-group section (more figures) says what the per-project one would,
    # with the project named beside its group
    own = {c.name: c.project for c in scenario.clients}
    one_each = all(own.values()) and len(set(own.values())) == len(own)
    by_client = args.format == "table" and out / "by_client.csv" in files  # (a study of two groups or more)
    if args.format == "table" and out / "by_project.csv" in files and not (by_client and one_each):
        sys.stdout.write(format_by_project(out / "by_project.csv", axes))  # (written by this run: listed)
    if by_client:
        sys.stdout.write(format_by_client(out / "by_client.csv", axes, own if one_each else None))
    stale = remove_stale(out, files, remove=study.complete and not problems)
    if not args.quiet:
        print(f"wrote {', '.join(str(f) for f in files)}", file=sys.stderr)
        if stale:
            print(f"removed an earlier study's {', '.join(f.name for f in stale)} from {out}", file=sys.stderr)
    if not study.complete:
        print(kept, file=sys.stderr)
        return 130
    if problems:  # the runs are kept in runs/: the same command, once the path is free, writes them
        print(f"groqsim: error: {write_problems(problems)}", file=sys.stderr)
        return 2
    return 0


def _kept(runs: int, out: Path) -> str:
    """The line an interrupted ``run`` ends with."""
    return f"groqsim: interrupted: {runs} run(s) finished and kept in {out}; run the same command again to resume"


def _capacity(args) -> int:
    from .capacity import capacity_table
    scenario = _load(args)
    duration = _duration(args)
    _work(args, scenario, duration, runs_factor=_capacity_runs(scenario),
          at=" at load x1 (the loads the search tries send more or fewer)")
    try:
        rows = capacity_table(scenario, duration, jobs=args.jobs or scenario.run.jobs,
                              progress=False if args.quiet else None,
                              max_requests=None if args.force else MAX_REQUESTS,
                              max_users=None if args.force else MAX_USERS)
    except (KeyboardInterrupt, ConfigError) as exc:
        if not hasattr(exc, "capacity_rows"):  # stopped before any load was simulated
            raise
        interrupted = isinstance(exc, KeyboardInterrupt)
        try:
            _capacity_rows(args, scenario, duration, exc.capacity_rows)  # what the search found, then why it stopped
        except KeyboardInterrupt:  # (a Ctrl-C while they are printed; a terminal's or `timeout`'s often come twice)
            interrupted = True
        if isinstance(exc, ConfigError):
            print(f"groqsim: error: {exc}", file=sys.stderr)
        if not interrupted:
            return 2
        print("groqsim: interrupted: the rows marked 'unfinished' are as far as their search went (the highest "
              "load that met the target so far, and the lowest that missed it)", file=sys.stderr)
        return 130
    return _capacity_rows(args, scenario, duration, rows)


def _capacity_rows(args, scenario, duration, rows: list[dict]) -> int:
    """Print ``capacity``'s table (or its JSON rows), a search stopped half way included."""
    import json

    from .capacity import NONE_FITS, held_axes
    from .report import jsonable
    from .units import format_duration
    t = scenario.capacity
    if args.format == "json":
        print(json.dumps(jsonable(rows), indent=2, allow_nan=False))
        return 0
    horizon = duration or scenario.scenario.duration
    written = t.model_fields_set & {"success", "p95"}  # (a default target may not suit the traffic: a batch's p95)
    default = "" if written == {"success", "p95"} else (
        " (the default target" + (f" for {', '.join(sorted({'success', 'p95'} - written))}" if written else "")
        + ": set yours in [capacity] success / p95)")
    print(f"target: success >= {t.success:.0%} (of the requests that fit the tier: 413s left out), p95 latency "
          f"<= {t.p95:g} s{default} over {horizon:g} s simulated; ceilings are long-run (a run also spends the budget "
          "each limit starts with); simulated max = the rate offered in the window at the highest load "
          f"meeting the target (≥: still met at [capacity] max_load = {t.max_load:g}), with that load: below "
          "x1 the traffic as it is does not meet the target (offered is the long-run mean rate, which a "
          "diurnal or trace window can exceed)")
    if held := held_axes(scenario):
        print("held at the first value of their [compare] axis: "
              + ", ".join(f"{a} = {v if isinstance(v, str) else repr(v)}" for a, v in held.items()))
    header = ["tier", "model", "offered req/min", "ceiling req/min", "binding", "minute/hour-units req/min",
              "daily-units req/day", "simulated max req/min", "success %", "p95 s", "$/1k ok"]

    def unit(binding: str) -> str:  # "model TPM" -> "TPM"; a fallback chain's "a RPM + b TPM" -> "RPM + TPM"
        if binding == NONE_FITS:
            return "none fits"
        return " + ".join(dict.fromkeys(b.rsplit(" ", 1)[-1] for b in binding.split(" + ")))

    def num(value: float, spec: str) -> str:  # no figure (no success at any load tried): "-", as `run` prints
        return (_rate(value) if spec == ".3g" else f"{value:{spec}}") if math.isfinite(value) else "-"

    def ceiling(value: float, spec: str, binding: str) -> str:  # no ceiling (no rate to scale): "-"
        return f"{num(value, spec)} ({unit(binding)})" if binding else num(value, spec)

    lines = [header] + [[r["tier"], r["model"], _rate(r["offered_rpm"]), num(r["ceiling_rpm"], ".3g"), r["binding"],
                         ceiling(r["minute_ceiling_rpm"], ".3g", r["minute_binding"]),
                         ceiling(r["daily_ceiling_per_day"], ".0f", r["daily_binding"]),
                         _simulated_max(r),
                         num(100 * r["sim_success"], ".1f"), num(r["sim_p95"], ".2f"),
                         num(r["sim_cost_per_1k"], ".3f")]
                        for r in rows]
    sys.stdout.write(align(lines, left=2))
    for r in rows:
        if 0 < r["too_large_share"] < 1:  # (success counts the others: said, or "fits" would hide them)
            print(f"{r['tier']} {r['model']}: {r['too_large_share']:.1%} of the requests are larger than a unit's "
                  "whole limit of the tier (a 413 at any load): they never succeed there; success counts the "
                  "others, and the ceilings are rates of the whole mix, 413s included")
        if not r["sim_finished"]:
            continue
        if r["sim_load"] > 0 and r["sim_rpm"] > 1.05 * r["ceiling_rpm"]:  # (a minute's, an hour's or a day's)
            print(f"{r['tier']} {r['model']}: the simulated max ({_rate(r['sim_rpm'])} req/min) is above the long-run "
                  f"ceiling ({_rate(r['ceiling_rpm'])} req/min, {unit(r['binding'])}): a limit starts with its whole "
                  f"budget (a token bucket starts full), which the {format_duration(horizon)} simulated spend on top "
                  "of what refills; day after day the traffic fits only up to the ceiling")
        if r["sim_load"] == 0 and r["too_large_share"] >= 1.0:
            print(f"{r['tier']} {r['model']}: no load met the target: every request of the mix is larger than a "
                  "unit's whole limit of the tier (a 413 at any load), so there is no success ratio to meet: the "
                  "requests must be smaller or the tier's limits larger")
        elif r["sim_load"] == 0:  # the bisection found no load meeting the target, down to its floor
            spec = scenario.spec(scenario.grid()[0], duration=duration)  # (a --duration keeps the warm-up's share)
            window = spec.duration - spec.warmup
            print(f"{r['tier']} {r['model']}: no load met the target, down to x{r['sim_missed_load']:.3g} of the "
                  "traffic: its success "
                  f"or p95 target (p95 <= {t.p95:g} s) is out of reach at any load, e.g. below the service's own "
                  f"latency, or the window ({window:g} s after the warm-up) too short "
                  "for a request to finish in")
    if any(not r["offered_rpm"] for r in rows):
        print("offered 0 req/min: no open-loop on-demand traffic to scale (a closed loop, the batch lane or zero "
              "rates), so the ceilings do not apply; simulated max is the load multiplier (a closed loop's users x "
              "load) that still meets the target")
    return 0


def _rate(value: float) -> str:
    """A rate in the capacity table: three significant digits, a whole number from what they round to 1 000 on
    (1030, not 1.03e+03; 999.7 is 1000, not 1e+03)."""
    return f"{value:.0f}" if abs(value) >= 999.5 else f"{value:.3g}"


def _simulated_max(r: dict) -> str:
    """A row's "simulated max" cell: the rate offered at the highest load that met the target (≥: still met
    at max_load); for a search stopped half way, the bracket it had narrowed the answer to."""
    load, rpm = f"x{r['sim_load']:.3g}", _rate(r["sim_rpm"])
    if r["sim_finished"]:
        return ("≥ " if r["sim_capped"] else "") + (f"{rpm} (load {load})" if r["offered_rpm"] else f"load {load}")
    if r["sim_load"] == 0:
        return (f"< load x{r['sim_missed_load']:.3g} (unfinished, none met yet)" if math.isfinite(r["sim_missed_load"])
                else "unfinished: no load simulated")  # (its first load was beyond the work limit)
    missed = f"x{r['sim_missed_load']:.3g} missed" if math.isfinite(r["sim_missed_load"]) else "none missed yet"
    return (f"≥ {rpm} (load {load}; unfinished, {missed})" if r["offered_rpm"]
            else f"≥ load {load} (unfinished, {missed})")


def _capacity_runs(scenario) -> float:
    """Simulations per grid point of ``capacity`` relative to ``run``: one bisection (about 12 loads) per
    tier x model instead of every grid point."""
    axes = [a for a in ("tier", "model") if a in scenario.compare]
    rows = 1
    for a in axes:
        rows *= len(scenario.compare[a])
    return 12.0 * rows / len(scenario.grid())  # (a grid has at least one point)


def _validate(args) -> int:
    from .runner import prepare_out
    from .validation import format_checks, run_checks, write_report
    out = Path(args.out) if args.out else None
    if out is not None:
        prepare_out(out)
    checks = run_checks(short=args.short, progress=False if args.quiet else None, jobs=args.jobs)
    sys.stdout.write(format_checks(checks))
    if out is not None and (errors := write_report(checks, out)):  # the results are printed whatever happens
        raise ConfigError(write_problems(errors))
    return 0 if all(c.passed for c in checks) else 1


def _calibrate(args) -> int:
    from .calibrate import calibrate
    from .calibrate.output import report_text, write_outputs
    from .pool import Pool
    from .runner import check_out, prepare_out
    out = Path(args.out) if args.out else Path("results") / "calibration" / Path(args.log).stem
    check_out(out)  # before the work
    with Pool(args.jobs) as pool:  # one set of workers: the hypotheses' replays, then the check's runs
        cal = calibrate(args.log, pool=pool)
        sys.stdout.write(report_text(cal))
        if not cal.estimated_anything:
            print(f"groqsim: error: {args.log}: nothing could be estimated (see above)", file=sys.stderr)
            return 2
        prepare_out(out)  # an unwritable place: one line, before anything is written (the report is shown above)
        problems: list[str] = []
        files = write_outputs(cal, out, plots=not args.no_plots, errors=problems)
        files += _check_calibration(cal, out, pool, problems, made=not args.no_check)
    print(f"wrote {', '.join(str(f) for f in files)}", file=sys.stderr)
    if problems:
        print(f"groqsim: error: {write_problems(problems)}", file=sys.stderr)
        return 2
    return 0


def _check_calibration(cal, out: Path, pool, problems: list[str], made: bool = True) -> list[Path]:
    """The log's attempts simulated on the calibrated scenario (sim.calibration_check): printed, added to
    report.txt and written as check.csv; a fragment that cannot run alone is said, not checked.  Not ``made``
    (--no-check), or not possible: an earlier check's files in ``out`` are removed."""
    from .calibration_check import CHECK_REPLICATIONS, check_calibration, check_text, remove_earlier, why_not
    reason = why_not(cal)
    files: list[Path] = []
    if not made or reason:
        try:
            remove_earlier(out)
        except OSError as exc:
            problems.append(f"{exc.filename or out}: cannot remove an earlier check ({exc.strerror or exc})")
    if not made:
        return files
    if reason:
        text = f"check: not made: {reason}\n"
    else:
        try:
            check = check_calibration(cal, out, CHECK_REPLICATIONS, pool)
            check.table.to_csv(out / "check.csv", index=False)
        except OSError as exc:
            problems.append(f"{exc.filename or out}: cannot write the check ({exc.strerror or exc})")
            return files
        text = check_text(check)
        files = [*check.files, out / "check.csv"]
    sys.stdout.write("\n" + text)
    try:
        with open(out / "report.txt", "a", encoding="utf-8") as f:
            f.write("\n" + text)
    except OSError as exc:
        problems.append(f"{out / 'report.txt'}: cannot add the check ({exc.strerror or exc})")
    return files


def _not_the_input(output: str, given: str, what: str) -> None:
    """Refuse ``-o`` naming the command's own input file: writing it would destroy what is being read."""
    out, src = Path(output), Path(given)
    if out.exists() and src.exists() and out.resolve() == src.resolve():
        raise ConfigError(f"-o {output}: that is the {what} being read; write to another file")


def _trace(args) -> int:
    from .tracelog import log_to_trace
    _not_the_input(args.output, args.log, "log")
    export = log_to_trace(args.log)
    try:
        export.trace.to_csv(args.output, index=False)
    except OSError as exc:  # a directory, a missing directory, no permission
        raise ConfigError(f"-o {args.output}: cannot write the trace ({exc.strerror or exc}); give a CSV file "
                          "path in an existing, writable directory") from None
    for note in export.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"wrote {args.output}: {len(export.trace)} request(s) from {export.lines} log line(s) "
          f"({export.retries_folded} SDK retr{'y' if export.retries_folded == 1 else 'ies'} folded)", file=sys.stderr)
    return 0


def _simlog(args) -> int:
    """One grid point of a scenario simulated and written as a recorder log (sim.simlog)."""
    from .scenario import load_scenario
    from .simlog import simulate_log
    _not_the_input(args.output, args.scenario, "scenario")
    scenario = load_scenario(args.scenario, {"seed": args.seed})
    point = scenario.point(args.point, args.scenario)
    duration = _duration(args)
    _, requests = scenario.size(duration, point.get("load"))  # the point's own load, not the grid's mean
    requests /= len(scenario.grid()) * scenario.scenario.replications
    _within_any_machine(args, requests, f"about {count(requests)} simulated requests", "")
    if requests > MAX_LOG_REQUESTS and not args.force:
        raise ConfigError(f"{args.scenario}: about {count(requests)} simulated requests is more than simlog writes "
                          f"without --force (limit {MAX_LOG_REQUESTS:,}); lower --duration or add --force")
    try:
        log = simulate_log(scenario.spec(point, duration=duration), scenario.seed(0))
    except ConfigError as exc:  # what only a run finds out (a closed loop that cannot advance), as `run` says it
        raise scenario.run_error(exc, point, args.point) from None
    log.write(args.output)
    refused = sum(x["status"] == 429 for x in log.lines)
    print(f"wrote {args.output}: {len(log.lines)} attempt(s) of {len(log.result.records)} request(s), "
          f"{refused} 429(s)", file=sys.stderr)
    if log.unlogged:
        print(f"note: {log.unlogged} attempt(s) reached no limit set (injected errors, flex 498s, batch lane): "
              "not in the log", file=sys.stderr)
    return 0


def _port(text: str) -> int:
    """A TCP port for ``--port``: an integer 1-65535 (the operating system would take 99999 modulo 65536)."""
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: allowed: an integer from 1 to 65535")
    return port


def _serve(args) -> int:
    import socket

    from .emulator.core import MAX_TIME_SCALE
    from .runner import hold_out, prepare_out
    if not 0 < args.time_scale <= MAX_TIME_SCALE:
        raise ConfigError(f"--time-scale {args.time_scale}: allowed: a number > 0 and at most {MAX_TIME_SCALE:g} "
                          "(e.g. 20)")
    out = _utf8(Path(args.out) if args.out else Path("results") / "serve" / Path(args.scenario).stem)
    try:  # a host that is not an address of this machine: named as such, not blamed on the port
        socket.getaddrinfo(args.host, args.port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise ConfigError(f"--host {args.host}: not an address to listen on ({getattr(exc, 'strerror', None) or exc}"
                          "); allowed: an IP address or name of this machine, e.g. 127.0.0.1") from None
    try:  # a port taken or not ours: one line now, not uvicorn's error after the address was announced
        with socket.create_server((args.host, args.port)):
            pass
    except OSError as exc:
        if exc.errno == errno.EADDRNOTAVAIL:
            raise ConfigError(f"--host {args.host}: not an address of this machine ({exc.strerror}); allowed: "
                              "one of its own addresses, e.g. 127.0.0.1") from None
        raise ConfigError(f"--port {args.port}: cannot listen on {args.host}:{args.port} "
                          f"({exc.strerror or exc}); choose a free port") from None
    created = not out.exists()
    prepare_out(out)
    try:  # one emulator a directory: a second one would set this one's files aside and write over its records
        with hold_out(out):
            return _serving(args, out)
    except ConfigError:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # leave nothing behind a command that did nothing
        raise


def _serving(args, out: Path) -> int:
    from .emulator import emulator_from_scenario, parse_keys, serve
    emu = emulator_from_scenario(args.scenario, args.time_scale, parse_keys(args.key), out, args.seed, args.point)
    for note in emu.notes:
        print(f"groqsim serve: {note}", file=sys.stderr)
    unkeyed = [name for name, p in emu.spec.projects.items() if p.limits and name not in emu.keys.values()]
    if emu.spec.org.project_quotas and unkeyed:
        print(f"note: {args.scenario}: no --key is labelled {' or '.join(unkeyed)}, so the project limits of "
              f"[projects] apply to no request here (label a key with its project: --key KEY={unkeyed[0]})",
              file=sys.stderr)
    print(f"groqsim serve: http://{args.host}:{args.port}/openai/v1 (tier {emu.spec.org.tier}, limiter "
          f"{emu.spec.org.limiter}, time scale {args.time_scale:g}); log {emu.log_path}", file=sys.stderr)
    serve(emu, args.host, args.port)
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse, with usage mistakes reported as one line (``groqsim run: error: ...``) and exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


LIMITS_EPILOG = ("In the table, '-' means Groq publishes no limit of that unit for that model on that tier "
                 "(e.g. no audio-seconds limit for a text model): nothing is enforced there.  Units: RPM/RPD "
                 "requests per minute/day, TPM/TPD tokens per minute/day, ASH/ASD audio seconds per hour/day.  "
                 "shut_down (table and JSON): the day Groq stopped serving that model on that tier, which the "
                 "table of limits still lists (sim/data/model_shutdowns.csv).")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="groqsim", description="Capacity simulator for the Groq API's rate limits.",
                epilog="Bad input is reported as one line naming the file, line and key, with exit status 2.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p.commands = sub  # (main names a command's own mistakes by it)
    lim = sub.add_parser("limits", help="list Groq's published rate limits", epilog=LIMITS_EPILOG,
                         description="Groq's published rate limits per tier and model.")
    lim.add_argument("--file", help="your own limits CSV to check and list (groq_rate_limits.csv's shape or the "
                                    "console's column names; rows without a tier column are tier 'console')")
    lim.add_argument("--tier", help="only this tier (e.g. free, developer)")
    lim.add_argument("--model", help="only this model (e.g. llama-3.1-8b-instant)")
    lim.add_argument("--format", choices=["table", "csv", "json"], default="table",
                     help="output format (default: table; csv/json leave a missing limit empty/null)")
    lim.set_defaults(func=_limits)

    def scenario_args(sp):
        sp.add_argument("scenario", help="scenario file (TOML)")
        sp.add_argument("--seed", type=int, help="override [scenario] seed (an integer >= 0)")
        sp.add_argument("--replications", type=int, help="override [scenario] replications (an integer >= 1)")
        sp.add_argument("--duration", help="override the simulated duration, e.g. 90s, 15m, 1d (> 0); the warm-up "
                                           "keeps its share of it")

    def work_args(sp):
        sp.add_argument("--force", action="store_true",
                        help=f"run even beyond {MAX_RUNS:,} runs, {MAX_REQUESTS:,} simulated requests or "
                             f"{MAX_USERS:,} closed-loop users in one run")
        sp.add_argument("--quiet", action="store_true",
                        help="no progress, work estimate, file list or (run) table caption on stderr (warnings stay)")

    run = sub.add_parser("run", help="run every grid point x replication of a scenario",
                         description="Run every grid point x replication of a scenario and compare them.")
    scenario_args(run)
    run.add_argument("--out", help="output directory (default results/<scenario file's stem>); must be a directory")
    run.add_argument("--format", choices=["table", "csv", "json"], default="table",
                     help="format of the comparison on stdout (default: table)")
    run.add_argument("--jobs", type=int, help="parallel processes (default: number of cores; 1 = in-process)")
    run.add_argument("--dask", help="Dask scheduler address (host:port, tcp://host:port), or 'local' for a "
                                    "LocalCluster of --jobs workers; --out must be storage every worker can reach")
    group = run.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="skip runs already finished in --out (default)")
    group.add_argument("--fresh", action="store_true", help="discard finished runs in --out and start again")
    work_args(run)
    run.set_defaults(func=_run)

    chk = sub.add_parser("check", help="validate a scenario and print its expanded grid",
                         description="Validate a scenario (every key, name and trace) and print its grid.")
    scenario_args(chk)
    chk.set_defaults(func=_check)

    cap = sub.add_parser("capacity", help="analytic ceiling and simulated capacity per tier x model",
                         description="Per tier x model of the grid: the analytic ceiling and the highest "
                                     "simulated load meeting [capacity] targets (bisection).")
    scenario_args(cap)
    cap.add_argument("--format", choices=["table", "json"], default="table",
                     help="output format (default: table; json is strict JSON, null where undefined)")
    cap.add_argument("--jobs", type=int, help="bisections run in parallel (default: number of cores); results "
                                              "do not depend on it")
    work_args(cap)
    cap.set_defaults(func=_capacity)

    val = sub.add_parser("validate", help="check the simulator against known answers (exit 1 if any fails)",
                         description="Check the simulator against known answers (exit 1 if any fails).")
    val.add_argument("--short", action="store_true", help="short horizons (seconds instead of minutes)")
    val.add_argument("--out", help="directory for the report's table (validation.md) and plots")
    val.add_argument("--quiet", action="store_true", help="no progress on stderr")
    val.add_argument("--jobs", type=int, help="groups of checks run in parallel (default: number of cores); the "
                                              "report does not depend on it")
    val.set_defaults(func=_validate)

    cal = sub.add_parser("calibrate", help="estimate service times, limits and limiter from a recorded log")
    cal.add_argument("log", help="JSONL log written by sim.recorder or the emulator")
    cal.add_argument("--out", help="output directory (default results/calibration/<log name>)")
    cal.add_argument("--no-plots", action="store_true", help="write the TOML fragment and report only")
    cal.add_argument("--no-check", action="store_true",
                     help="skip the check (the log's attempts simulated on the calibrated scenario)")
    cal.add_argument("--jobs", type=int, help="processes for the hypotheses' replays and the check's runs (default: "
                                              "number of cores); the results do not depend on it")
    cal.set_defaults(func=_calibrate)

    tr = sub.add_parser("trace", help="turn a recorded log into a replayable trace (CSV)")
    tr.add_argument("log", help="JSONL log written by sim.recorder or the emulator")
    tr.add_argument("-o", "--output", required=True, help="trace file to write (CSV)")
    tr.set_defaults(func=_trace)

    sl = sub.add_parser("simlog", help="simulate one grid point and write its attempts as a recorder log (JSONL)",
                        description="Simulate one grid point of a scenario (replication 0) and write every attempt "
                                    "as the line sim.recorder would log for it (docs/calibration.md).")
    sl.add_argument("scenario", help="scenario file (TOML)")
    sl.add_argument("-o", "--output", required=True, help="log file to write (JSONL)")
    sl.add_argument("--point", type=int, default=0, help="grid point to simulate (default 0; groqsim check lists them)")
    sl.add_argument("--seed", type=int, help="override [scenario] seed (an integer >= 0)")
    sl.add_argument("--duration", help="override the simulated duration, e.g. 90s, 15m, 1d (> 0); the warm-up "
                                       "keeps its share of it")
    sl.add_argument("--force", action="store_true", help=f"write even beyond {MAX_LOG_REQUESTS:,} simulated requests")
    sl.set_defaults(func=_simlog)

    srv = sub.add_parser("serve", help="a live Groq API emulator enforcing the scenario's limits (docs/emulator.md)")
    srv.add_argument("scenario", help="scenario file (TOML); a grid point of it gives org, tier and limits")
    srv.add_argument("--point", type=int, default=0, help="grid point to serve (default 0; groqsim check lists them)")
    srv.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    srv.add_argument("--port", type=_port, default=8000, help="port to listen on, 1-65535 (default 8000)")
    srv.add_argument("--time-scale", type=float, default=1.0, help="limiter clock runs K times faster (at most 1e6)")
    srv.add_argument("--key", action="append", help="accepted API key, KEY or KEY=PROJECT (repeatable)")
    srv.add_argument("--seed", type=int, help="seed of the service times and answer lengths (default: scenario's)")
    srv.add_argument("--out", help="directory for requests.jsonl and records.parquet "
                                   "(default results/serve/<scenario file's stem>)")
    srv.set_defaults(func=_serve)
    return p


def _warnings() -> None:
    """Show the simulator's own :class:`InputWarning` as one line; silence other libraries' warnings
    (numpy, matplotlib, pandas), which say nothing a user can act on."""
    from .errors import InertSettingWarning, InputWarning, ShutDownModelWarning
    warnings.simplefilter("ignore")
    warnings.simplefilter("always", InputWarning)
    for said in (ShutDownModelWarning, InertSettingWarning):  # said by the command itself (_notes)
        warnings.simplefilter("ignore", said)

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"groqsim: warning: {message}", file=sys.stderr)

    warnings.showwarning = show


#: the BLAS libraries' thread counts the command sets to one (a value the user set is kept): the command's
#: parallelism is its worker processes, one per core, and a BLAS library loaded while they run (scipy's own
#: OpenBLAS, when the comparison imports ``scipy.special``) would otherwise start helper threads that spin
#: ~0.1 s each on the cores the workers use.  Dask's nanny sets the same three for its workers.
BLAS_THREADS = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS")


def console() -> int:
    """The ``groqsim`` command (and ``python -m sim``): :func:`main`, then a quick exit.  Before the interpreter
    exits, every object left is frozen out of the garbage collector (:func:`gc.freeze`): its exit would
    otherwise run full collections over everything a command loaded (pandas, matplotlib, a study's frames),
    0.2-0.5 s after a sweep, only to free memory the process is about to give back.  Every file the command
    writes is closed before :func:`main` returns.  Not in :func:`main`, which tests and notebooks call in a
    process that lives on.  ``SIGTERM`` (a scheduler's time limit, ``kill``) stops the command as Ctrl-C does:
    finished runs are kept and said, and the same command resumes.  BLAS libraries loaded from here on run on
    one thread (:data:`BLAS_THREADS`)."""
    signal.signal(signal.SIGTERM, _terminated)
    for name in BLAS_THREADS:
        os.environ.setdefault(name, "1")
    code = main()
    gc.freeze()
    return code


#: what an option names, for the error of an empty one (default: a path)
_NAMED = {"tier": "a tier name, e.g. free", "model": "a model name, e.g. openai/gpt-oss-20b",
          "dask": "a scheduler address, e.g. tcp://host:8786, or local", "host": "an address, e.g. 127.0.0.1"}


def _terminated(signum, frame):
    raise KeyboardInterrupt


#: options whose value may start with "-" (a negative number or duration: refused with its own message)
_SIGNED = ("--duration", "--seed", "--jobs", "--replications", "--point", "--time-scale", "--port")


def _signed_values(argv: list[str]) -> list[str]:
    """``--duration -5m`` as ``--duration=-5m``: argparse reads a value starting with "-" as an option unless it
    looks like a plain negative number, and ``-5m`` got only "expected one argument", not what is allowed."""
    out: list[str] = []
    for token in argv:
        if out and out[-1] in _SIGNED and token[:1] == "-" and token[1:2] in tuple("0123456789."):
            out[-1] = f"{out[-1]}={token}"
        else:
            out.append(token)
    return out


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
        args, extra = parser.parse_known_args(_signed_values(sys.argv[1:] if argv is None else list(argv)))
        if extra:  # named by the command they were given to ("groqsim check: error: ...", see its --help)
            parser.commands.choices[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:  # usage errors and --help
        return exc.code  # argparse exits with an int: 0 after --help, 2 for a usage error
    for name in ("out", "output", "tier", "model", "file", "dask", "host"):  # paths and names: empty is no value
        value = getattr(args, name, None)
        if isinstance(value, str) and not value.strip():
            optional = "" if name == "output" else ", or leave the option out"  # (-o is required where it exists)
            print(f"groqsim: error: --{name} {value!r}: empty (allowed: {_NAMED.get(name, 'a path')}{optional})",
                  file=sys.stderr)
            return 2
    for name in ("replications", "jobs"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            print(f"groqsim: error: --{name} must be >= 1, got {value}", file=sys.stderr)
            return 2
    if getattr(args, "seed", None) is not None and args.seed < 0:
        print(f"groqsim: error: --seed must be >= 0, got {args.seed}", file=sys.stderr)
        return 2
    try:
        with warnings.catch_warnings():
            _warnings()
            return args.func(args)
    except ConfigError as exc:
        print(f"groqsim: error: {exc}", file=sys.stderr)
        return 2
    except MemoryError:  # (only past the work limits: --force) one line, as for too much work asked without it
        print("groqsim: error: out of memory: the work asked for more than this machine holds; lower the rate, "
              "--duration, [compare] load or the replications", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("groqsim: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `groqsim limits | head`
        sys.stderr.close()
        return 0
