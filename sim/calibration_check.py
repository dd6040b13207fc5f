"""A calibration checked against its log: the log's attempts simulated on the calibrated scenario, beside the log.

Every attempt of the log, SDK retries included, becomes a request of a trace (:func:`sim.tracelog.trace_of_log`
with ``fold=False``: sent when the log sent it, its sizes its own line's), and the trace a client group that
never retries, in a scenario made of the calibration's fragment (:func:`~sim.calibrate.output.toml_fragment`):
``check.toml`` beside ``check_attempts.csv`` in the output directory.  So what is checked is what the
calibration estimated -- the limits, the limiter and its charging, the service and network times -- and not
the client's retry policy, which a log does not say.  The scenario is simulated ``replications`` times (seeds
0, 1, ...), and each figure is set beside the log's: the share of attempts answered, 429s per attempt, and
the latency percentiles of the answered ones (send to whole response, as the log's client saw it).  A 400 Groq
charged (:data:`~sim.calibrate.evidence.CHARGED_FAILURES`: a structured answer written, then failed its
validation) counts as answered: the simulation, which writes no answers, serves it.

Some gap is expected where the log holds what no calibration sees: a budget already in use when the log starts
(the simulation starts every limit full), other keys of the organization spending the same limits, a step in
the client's clock.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .calibrate import Calibration
from .calibrate.evidence import CHARGED_FAILURES
from .calibrate.output import toml_fragment
from .engine import simulate
from .errors import printable
from .pool import Pool
from .recorder import client_failure
from .report import compare
from .scenario import Scenario, load_scenario
from .summary import summarize
from .tracelog import TraceExport, trace_of_log

#: runs of the check's scenario (its seeds 0, 1, 2): the latency percentiles' 95 % intervals from three
CHECK_REPLICATIONS = 3
#: the files a check writes in the output directory (its table, check.csv, is the command line's)
CHECK_FILES = ("check_attempts.csv", "check.toml", "check.csv")
#: how check.toml ends its first line: what tells a check's files from a user's of the same names
MARK = "(groqsim calibrate's check)"
#: (label, the simulated summary's key) of each figure compared
FIGURES = (("share answered", "success_ratio"), ("429s per attempt", "n429_per_attempt"),
           ("latency p50 (s)", "latency_p50"), ("latency p95 (s)", "latency_p95"), ("latency p99 (s)", "latency_p99"))


@dataclass
class LogCheck:
    """The check's table (a row per figure: logged, simulated mean, its 95 % interval's half-width, and
    simulated / logged) and what it rests on."""
    table: pd.DataFrame
    replications: int
    attempts: int
    runs: pd.DataFrame                     # each replication's summary (sim.summarize), a row each
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def why_not(cal: Calibration) -> str | None:
    """Why the fragment cannot be simulated on its own (None: it can)."""
    if cal.new_models:
        return (f"{', '.join(cal.new_models)}: in no published tier and no limit of its shown, so the fragment "
                "cannot run it (its limits are left to fill in)")
    if not (cal.tier and cal.limits_observed):
        return "the log shows no limit, so the fragment sets no tier to simulate it on"


def logged_figures(export: TraceExport) -> dict[str, float]:
    """What the log shows of its attempts (the unfolded trace's rows), under :data:`FIGURES`' keys."""
    o = export.outcomes
    # answered: served, a 400 Groq charged too (the simulation, which writes no answers, serves it)
    answered = o.loc[o["served"], "latency"].to_numpy(float)
    out = {"success_ratio": len(answered) / len(o), "n429_per_attempt": int(o["n429"].sum()) / len(o)}
    for p in (50, 95, 99):
        out[f"latency_p{p}"] = float(np.percentile(answered, p)) if len(answered) else math.nan
    return out


def check_toml(cal: Calibration, export: TraceExport, trace_file: str, replications: int) -> str:
    """The check's scenario: the fragment, a run as long as the trace (and a day to finish), and one client
    group sending the trace without retries."""
    span = float(export.trace["timestamp"].max())
    return (f"# the attempts of {printable(cal.log.path)} on the calibrated model {MARK}\n"
            f"[scenario]\nname = \"check of {_quoted(printable(Path(cal.log.path).name))}\"\n"
            f"duration = \"{math.floor(span) + 1}s\"\nwarmup = \"0s\"\ndrain = \"1d\"\nseed = 0\n"
            f"replications = {replications}\n\n{toml_fragment(cal)}\n"
            f"[[clients]]\nname = \"log\"\nmodel = \"{_quoted(export.trace['model'].iloc[0])}\"\n"
            f"arrival = {{ kind = \"trace\", file = \"{trace_file}\" }}\npolicy = \"no-retry\"\n")


def _quoted(text: str) -> str:
    """``text`` inside a TOML basic string."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _simulated(scenario: Scenario, replication: int) -> dict:
    return {"point": 0, "replication": replication,
            **summarize(simulate(scenario.spec(), scenario.seed(replication)))}


def check_calibration(cal: Calibration, out: str | Path, replications: int = CHECK_REPLICATIONS,
                      pool: Pool | None = None) -> LogCheck:
    """Write ``check_attempts.csv`` and ``check.toml`` in ``out``, simulate the scenario ``replications`` times
    (on ``pool``'s workers, or here) and set each figure beside the log's.  :class:`ValueError` when
    :func:`why_not` says the fragment cannot be simulated."""
    reason = why_not(cal)
    if reason:
        raise ValueError(f"check_calibration: {reason}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # the calibration's evidence: without the attempts that failed on the client (their timeout, the
    # connection), which have no answer to compare
    export = trace_of_log(cal.log, fold=False, evidence=cal.evidence)
    failed = sum(client_failure(r) is not None for r in cal.log.records)
    if failed:
        export.notes.append(f"{failed} attempt(s) that failed on the client (no answer) left out of the check")
    charged = int((export.outcomes["served"] & ~export.outcomes["answered"]).sum())
    if charged:
        export.notes.append(f"{charged} attempt(s) answered a 400 Groq charged ({' or '.join(CHARGED_FAILURES)}: a "
                            "structured answer written, then failed) counted as answered, with their latency: the "
                            "simulation, which writes no answers, serves them")
    trace, scenario_file = out / "check_attempts.csv", out / "check.toml"
    export.trace.to_csv(trace, index=False)
    scenario_file.write_text(check_toml(cal, export, trace.name, replications), encoding="utf-8")
    scenario = load_scenario(scenario_file)
    runs = pd.DataFrame((pool or Pool(1)).map(_simulated, [(scenario, r) for r in range(replications)]))
    simulated = compare(runs, []).iloc[0]  # mean and 95 % interval over the replications, as a study's table
    logged = logged_figures(export)
    rows = []
    for label, key in FIGURES:
        mean, half = simulated[f"{key}_mean"], simulated[f"{key}_ci95"]
        values = runs[key].dropna()
        if len(values) > 1 and values.nunique() == 1:  # the same in every run: no interval, not a mean's round-off
            half = 0.0
        rows.append({"figure": label, "logged": logged[key], "simulated": mean, "ci95": half,
                     "ratio": mean / logged[key] if logged[key] else math.nan})
    return LogCheck(pd.DataFrame(rows), replications, len(export.trace), runs, [trace, scenario_file],
                    list(export.notes))


def remove_earlier(out: str | Path) -> list[Path]:
    """Remove the files of an earlier check in ``out`` (a calibration without one must not leave them beside its
    report, read as its own); only when ``check.toml`` is a check's (:data:`MARK`).  Returns what it removed."""
    out = Path(out)
    try:
        with open(out / "check.toml", encoding="utf-8", errors="replace") as f:
            ours = f.readline().rstrip("\n").endswith(MARK)
    except OSError:
        return []
    gone = [out / name for name in CHECK_FILES if ours and (out / name).is_file()]
    for path in gone:
        path.unlink()
    return gone


def check_text(check: LogCheck) -> str:
    """The check as the report shows it."""
    lines = [f"check: the log's {check.attempts} attempt(s), each sent when the log sent it and never retried, "
             f"simulated on the calibrated scenario ({check.replications} replications)",
             f"  {'':22s} {'logged':>10s} {'simulated':>10s} {'±95%':>8s} {'sim/log':>8s}"]
    for r in check.table.itertuples():
        lines.append(f"  {r.figure:22s} {r.logged:10.4g} {r.simulated:10.4g} {r.ci95:8.2g} {r.ratio:8.3f}")
    lines += [f"  note: {n}" for n in check.notes]
    return "\n".join(lines) + "\n"
