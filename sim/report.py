"""From run summaries to what goes in a decision document: comparison rows with 95% confidence
intervals, the files of a study (``summary.csv``, ``comparison.csv``, ``requests.parquet``) and plots."""
from __future__ import annotations

import json
import math
import os
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from .catalog import UNIT_SPEC
from .records import OUTCOMES, RunResult
from .lane_plots import lane_tables, plot_lanes
from .errors import writing
from .figures import line_styles, save, subplots
from .pool import Pool, call
from .study import StudyResult, load_earlier, load_records, load_refusals, run_records, run_table, summary_frame
from .groups import client_summaries
from .summary import limits_used, usage_columns
from .texttable import align

#: metrics compared across grid points (mean and 95% CI over replications)
KEY_METRICS = ("success_ratio", "throughput_rpm", "tokens_per_min", "latency_p50", "latency_p95", "latency_p99",
               "n429_per_attempt", "attempts_per_success", "mean_wait", "cost_usd", "cost_per_success")
#: the metrics of the bill: unknown for a point when any replication's is (``cost_usd`` NaN)
BILL_METRICS = ("cost_usd", "cost_per_success")
#: metrics only runs of a lane comparison have (sim.summary.lane_metrics), compared when present
LANE_METRICS = ("n498", "flex_share", "done_by", "project_refusals", "batch_expired_share", "job_time_p50",
                "job_time_p90")
#: shares compared like the outcome shares, not flagged when their interval is wider than their mean (a share
#: near 0 always is): the successes finished after the window (:func:`sim.summary.summarize`), and the requests
#: that succeeded by the window's end (``success_ratio x (1 - after_window_share)``, run by run)
SHARE_METRICS = ("after_window_share", "success_in_window")
#: the share of an alternative's successes finished after the window from which the table notes it
LATE_NOTE = 0.01
#: outcomes other than success, each compared as its share of the requests offered (``<outcome>_share``)
OTHER_OUTCOMES = OUTCOMES[1:]
#: how the table names them when non-zero
OUTCOME_LABELS = {"gave_up": "gave up", "too_large": "too large (413)", "deadline": "deadline",
                  "dropped": "dropped", "error": "error", "unfinished": "unfinished",
                  "expired": "expired (batch window)"}


def compare(summary: pd.DataFrame, axes: list[str], by: tuple[str, ...] = ()) -> pd.DataFrame:
    """One row per grid point (and, with ``by``, per value of those columns within it, in the order they first
    appear: ``by=("client",)`` gives a row per grid point and client group): its axis values, the number of
    replications, and for each key metric, each outcome share and each of :data:`SHARE_METRICS`
    ``<metric>_mean`` and ``<metric>_ci95`` (half-width of the t-interval; NaN with one replication), and
    ``wide_ci``: the key metrics whose interval is wider than their mean; the :data:`BILL_METRICS` NaN when
    any replication's bill is unknown (an unpriced model served), a metric's other NaNs (no success: no
    latency) left out of its mean, and ``partial`` says so: ``metric:n`` for each key metric whose mean is of
    n replications, fewer than the point has (and more than none); ``binding`` (when the runs have one):
    the one most replications name (:func:`_most_often`)."""
    # here, not at import: workers need none of it; scipy.special's stdtrit is what scipy.stats.t.ppf computes,
    # without importing scipy.stats (~1 s, ~60 MB)
    from scipy.special import stdtrit
    summary = summary.copy()
    for name in OTHER_OUTCOMES:
        if name in summary:
            summary[f"{name}_share"] = summary[name].astype(float) / summary["offered"].where(summary["offered"] > 0)
    if "after_window_share" in summary:  # (no success: no late share, and none in the window either)
        summary["success_in_window"] = summary["success_ratio"] * (1.0 - summary["after_window_share"].fillna(0.0))
    metrics = tuple(m for m in KEY_METRICS + LANE_METRICS if m in summary) + tuple(
        f"{o}_share" for o in OTHER_OUTCOMES if f"{o}_share" in summary) + tuple(
        m for m in SHARE_METRICS if m in summary)
    data = summary[list(metrics)].astype(float).to_numpy()  # one array, sliced per point: no Series per metric
    t975 = {}  # stdtrit(n - 1, 0.975) by n
    rows = []
    # point (or (point, *by)) -> positions of its rows, in summary order
    at = summary.groupby(["point", *by] if by else "point", sort=False).indices
    for key in sorted(at, key=lambda k: (k[0], at[k][0]) if by else k):
        group = summary.iloc[at[key]]
        row = {"point": int(group["point"].iloc[0]), **{a: group[a].iloc[0] for a in (*axes, *by)},
               "replications": len(group)}
        wide, partial = [], []
        block = data[at[key]]
        # a replication's bill unknown (a success on a model Groq publishes no price for): the point's is too,
        # not the mean of the replications that happened to serve none there
        unknown_bill = "cost_usd" in metrics and np.isnan(block[:, metrics.index("cost_usd")]).any()
        for j, m in enumerate(metrics):
            values = block[:, j]
            values = values[~np.isnan(values)] if not (unknown_bill and m in BILL_METRICS) else values[:0]
            n = len(values)
            row[f"{m}_mean"] = float(values.mean()) if n else math.nan
            if n > 1 and n not in t975:
                t975[n] = stdtrit(n - 1, 0.975)
            row[f"{m}_ci95"] = float(t975[n] * values.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
            if m in KEY_METRICS and np.isfinite(row[f"{m}_ci95"]) and row[f"{m}_ci95"] > abs(row[f"{m}_mean"]):
                wide.append(m)
            if m in KEY_METRICS and 0 < n < len(group):
                partial.append(f"{m}:{n}")
        row["wide_ci"] = " ".join(wide)
        row["partial"] = " ".join(partial)
        row["offered_mean"] = float(group["offered"].mean())
        if "binding" in group:  # (a client group's rows have none: the org's limits are not one group's)
            row["binding"] = _most_often(group["binding"])
        rows.append(row)
    return pd.DataFrame(rows)


def _most_often(bindings: pd.Series) -> str:
    """The binding named by most replications; on a tie a limit rather than ``none`` (half the runs held back
    by a limit is worth naming), then the one of the earliest replication ("" when none is named)."""
    counts = bindings.dropna().value_counts(sort=False)  # (in order of first appearance)
    if counts.empty:
        return ""
    top = counts[counts == counts.max()].index
    return next((b for b in top if b != "none"), top[0])


def _num(value) -> float:
    """A table cell as a float (None, as read back from JSON, is NaN)."""
    return math.nan if value is None or pd.isna(value) else float(value)


def _pm(mean: float, ci: float, fmt: str) -> str:
    """``mean ±ci`` in ``fmt`` (the column's: :func:`_column_format`)."""
    if not np.isfinite(mean):
        return "-"
    if not np.isfinite(ci):
        return format(mean, fmt)
    return format(mean, fmt) + " ±" + format(ci, fmt) + ("!" if ci > abs(mean) else "")


def _other_outcomes(r) -> str:
    """Non-zero shares of the outcomes other than success, e.g. ``too large (413) 100%``."""
    shares = {o: _num(r[f"{o}_share_mean"]) for o in OTHER_OUTCOMES if f"{o}_share_mean" in r}
    parts = [f"{OUTCOME_LABELS[o]} {100 * v:.3g}%" for o, v in shares.items() if np.isfinite(v) and v > 0]
    return ", ".join(parts) or "-"


#: the printed tables' metric columns: header -> (metric, scale, format) of its ``<metric>_mean`` ±``_ci95``
COLUMNS = {"success %": ("success_ratio", 100, ".1f"), "req/min": ("throughput_rpm", 1, ".1f"),
           "p50 s": ("latency_p50", 1, ".2f"), "p95 s": ("latency_p95", 1, ".2f"), "p99 s": ("latency_p99", 1, ".2f"),
           "429/attempt": ("n429_per_attempt", 1, ".3f"), "attempts/ok": ("attempts_per_success", 1, ".2f"),
           "$/1k ok": ("cost_per_success", 1000, ".3f"), "done by h": ("done_by", 1 / 3600, ".2f")}
#: the comparison table's columns (``done by h`` added when a study uses the batch or flex lane)
MAIN_COLUMNS = ("success %", "req/min", "p50 s", "p95 s", "p99 s", "429/attempt", "attempts/ok", "$/1k ok")
#: the per-client-group section's columns (``done by h`` added alike)
CLIENT_COLUMNS = ("success %", "req/min", "p95 s", "p99 s", "429/attempt", "$/1k ok")
#: how the table marks a success that partly came after the window, while the run drained
DRAIN_MARK = "*"


def _column_format(comp: pd.DataFrame, header: str) -> str:
    """The format of a column's cells: :data:`COLUMNS`'s, or, when it would round a mean onto a bound the mean
    does not reach, 0 (0.04 req/min at ``.1f``, read as none served) or a success of 100 % (99.97, read as
    all), as many decimals as give the smallest such gap two significant digits, for every cell of the column
    (one precision a column: 0.044 beside 0.084, not 0.1)."""
    metric, scale, fmt = COLUMNS[header]
    means = scale * pd.to_numeric(comp.get(f"{metric}_mean", pd.Series(dtype=float)), errors="coerce")
    bounds = (0.0, 100.0) if metric == "success_ratio" else (0.0,)
    gaps = [abs(m - b) for m in means if np.isfinite(m) for b in bounds if m != b and float(format(m, fmt)) == b]
    if not gaps:
        return fmt
    return f".{1 - math.floor(math.log10(min(gaps)))}f"


def _cell(r, header: str, fmt: str, marks: bool) -> str:
    """One metric cell, in ``fmt``: mean ±CI (``!`` when the interval is wider than the mean); with ``marks``
    (some row is marked), a success cell whose successes finished after the window for :data:`LATE_NOTE` of
    them or more is marked :data:`DRAIN_MARK`, the others padded alike (their digits aligned)."""
    metric, scale, _ = COLUMNS[header]
    cell = _pm(scale * _num(r.get(f"{metric}_mean")), scale * _num(r.get(f"{metric}_ci95")), fmt)
    if metric == "success_ratio" and marks:
        cell += DRAIN_MARK if _late(r) else " "
    return cell


def _late(r) -> bool:
    return _num(r.get("after_window_share_mean")) >= LATE_NOTE  # (NaN: not)


def _uses_batch_or_flex(comp: pd.DataFrame) -> bool:
    """Some alternative served requests on flex or sent them through the batch lane (lane metrics: the
    question is then also when the work is done)."""
    flex = comp.get("flex_share_mean", pd.Series(dtype=float)).astype(float)
    batch = comp.get("batch_expired_share_mean", pd.Series(dtype=float)).astype(float)
    return bool((flex > 0).any() or batch.notna().any())


def _table(comp: pd.DataFrame, names: list[str], columns: tuple[str, ...]) -> tuple[str, list[str]]:
    """The aligned rows of ``comp`` (``names``: its name columns, then ``columns``, ``done by h`` for a batch
    or flex study, ``binding`` if ``comp`` has it, and the other outcomes) and the footnotes their marks
    need, in order: ``!``, ``done by h``, :data:`DRAIN_MARK`."""
    done = ("done by h",) if _uses_batch_or_flex(comp) else ()
    binding = ["binding"] if "binding" in comp else []
    lines = [[*names, *columns, *done, *binding, "not ok"]]
    marks = any(_late(r) for _, r in comp.iterrows())
    formats = {h: _column_format(comp, h) for h in (*columns, *done)}
    for _, r in comp.iterrows():
        lines.append([*(str(r[a]) for a in names), *(_cell(r, h, formats[h], marks) for h in (*columns, *done)),
                      *(str(r["binding"]) for _ in binding), _other_outcomes(r)])
    notes = []
    if any("!" in cell for line in lines[1:] for cell in line[len(names):-1 - len(binding)]):
        notes.append("! = the 95% interval is wider than the mean: too few replications to tell these apart "
                     "(raise --replications)")
    if done:
        notes.append("done by h = when the last successful request was answered, in hours from the start (the "
                     "drain after the window included)")
    return align(lines, left=len(names)), notes + _partial_note(comp, names, columns) + _late_note(comp, names)


def _partial_note(comp: pd.DataFrame, names: list[str], columns: tuple[str, ...]) -> list[str]:
    """The footnote of the alternatives whose shown columns are means of fewer replications than they ran
    (compare's ``partial``: a replication with no success has no latency, attempts or cost per success to
    average), with how many: a mean of the lucky replications is not the alternative's mean."""
    header = {COLUMNS[h][0]: h for h in columns}
    said = []
    for _, r in comp.iterrows():
        given = r.get("partial")
        counts = dict(item.split(":") for item in given.split()) if isinstance(given, str) else {}  # (NaN: none)
        by_n: dict[str, list[str]] = {}
        for metric, n in counts.items():
            if metric in header:
                by_n.setdefault(n, []).append(header[metric])
        said += [f"{_label(r, names)}: {', '.join(hs)} over {n} of {int(r['replications'])}"
                 for n, hs in by_n.items()]
    if not said:
        return []
    return ["some means are over fewer replications than ran, those with a success to measure (a mean of the "
            "lucky ones, not of the alternative): " + "; ".join(said)]


def format_comparison(comp: pd.DataFrame, axes: list[str]) -> str:
    """An aligned text table, one line per grid point; an interval wider than its mean is marked ``!``
    (too few replications to tell), a success partly served after the window :data:`DRAIN_MARK`, each with a
    footnote; with the batch or flex lane, when the work was done (``done by h``)."""
    text, notes = _table(comp, axes, MAIN_COLUMNS)
    unpriced = "cost_per_success_mean" in comp and any(
        _num(r["success_ratio_mean"]) > 0 and not np.isfinite(_num(r["cost_per_success_mean"]))
        for _, r in comp.iterrows())
    if unpriced:
        notes.insert(1 if notes and notes[0].startswith("!") else 0,
                     "$/1k ok '-' = a model Groq publishes no price for was served: give it one in "
                     "[prices.\"MODEL\"] (input_per_m, output_per_m)")
    return text + "".join(f"{n}\n" for n in notes)


def client_comparison(study: StudyResult) -> pd.DataFrame:
    """One row per grid point and client group, in scenario order, with the mean and 95% CI over replications
    of each group's run summary (:func:`sim.groups.client_summaries`; :func:`compare` with ``by=("client",)``):
    what ``by_client.csv`` holds.  Empty for a scenario of one group (its comparison says it all)."""
    clients = study.scenario.clients
    if len(clients) < 2 or not len(study.summary):
        return pd.DataFrame()
    axes = list(study.scenario.compare)
    rows = []
    for _, run in study.summary.iterrows():
        point, rep = int(run["point"]), int(run["replication"])
        groups = study.by_client.get(run["key"])  # summarised by the run's worker
        if groups is None:  # (a run an earlier version finished, resumed: summarised from its files)
            spec = study.spec(point)
            groups = client_summaries(RunResult(load_records(study, point, rep), load_refusals(study, point, rep),
                                                spec, earlier_admissions=load_earlier(study, point, rep)))
        rows += [{"point": point, **{a: run[a] for a in axes}, "replication": rep, **row} for row in groups]
    return compare(summary_frame(rows), axes, by=("client",))


def client_table(study: StudyResult, out: Path) -> list[Path]:
    """``by_client.csv`` (:func:`client_comparison`) when the scenario has two client groups or more (nothing
    otherwise)."""
    frame = client_comparison(study)
    if frame.empty:
        return []
    path = Path(out) / "by_client.csv"
    frame.to_csv(path, index=False)
    return [path]


def format_by_client(path: Path, axes: list[str], projects: dict[str, str] | None = None) -> str:
    """The per-client-group section printed under the comparison table, from ``by_client.csv``: the table adds
    the groups up, which can hide one app served far worse than the others.  ``projects`` (group -> its
    project, each group a project of its own): a project column beside the group, the section then standing
    for the per-project one too."""
    keys = [*axes, "client"]
    columns = pd.read_csv(path, nrows=0).columns
    # names read as written (a tier "1", a flag "True"); a metric's empty cell is NaN
    table = pd.read_csv(path, dtype={k: str for k in keys}, keep_default_na=False,
                        na_values={c: [""] for c in columns if c not in keys})
    if projects:
        table["project"] = table["client"].map(projects)
        keys.append("project")  # (printed after the group: the names print in this order)
    text, notes = _table(table, keys, CLIENT_COLUMNS)
    title = ("per client group and its project (mean ±95% CI over replications; by_client.csv, by_project.csv)"
             if projects else "per client group (mean ±95% CI over replications; by_client.csv)")
    return f"{title}:\n" + text + "".join(f"{n}\n" for n in notes)


#: how the per-project table names the traffic of client groups that belong to no project
NO_PROJECT = "(no project)"


def format_by_project(path: Path, axes: list[str]) -> str:
    """The per-project means of ``by_project.csv`` (success %, p95 s) for each alternative, when a study has
    two projects or more: the comparison table adds the projects up, which can hide what a quota buys one of
    them.  Empty otherwise."""
    if not Path(path).exists():
        return ""
    # the traffic of no project is the empty name: read as such (not as a missing value, which groupby drops)
    columns = pd.read_csv(path, nrows=0).columns
    table = pd.read_csv(path, keep_default_na=False, na_values={c: [""] for c in columns if c != "project"})
    table["project"] = table["project"].astype(str).replace("", NO_PROJECT)
    if table["project"].nunique() < 2:
        return ""
    keys = [f"compare.{a}" for a in axes if f"compare.{a}" in table] + ["project"]
    means = table.groupby(keys, sort=False)[["success_ratio", "latency_p95"]].mean().reset_index()
    lines = [[*(k.removeprefix("compare.") for k in keys), "success %", "p95 s"]]
    lines += [[*(str(r[k]) for k in keys), f"{100 * r['success_ratio']:.1f}", f"{r['latency_p95']:.2f}"]
              for _, r in means.iterrows()]
    return "per project (mean over replications; by_project.csv):\n" + align(lines, left=len(keys))


def _late_note(comp: pd.DataFrame, names: list[str]) -> list[str]:
    """The footnote of the :data:`DRAIN_MARK` rows: the alternatives whose successes finished after the window,
    while the run drained, for at least :data:`LATE_NOTE` of them, with that share and the share of requests
    that succeeded by the window's end; their req/min counts only the window's (a batch job's reads 0 at
    100 % success)."""
    late = [f"{_label(r, names)} {100 * _num(r['after_window_share_mean']):.3g}%"
            + (f" ({100 * ok:.3g}%)" if np.isfinite(ok := _num(r.get("success_in_window_mean"))) else "")
            for _, r in comp.iterrows() if _late(r)]
    if not late:
        return []
    return [f"{DRAIN_MARK} = success includes requests finished after the simulated window, while the run drained "
            "(req/min counts only the window's): share of the successes finished after it (and success by the "
            f"window's end): {', '.join(late)}"]


def _label(r, names: list[str]) -> str:
    """An alternative named in a footnote: its axis values joined by "/", a number with its axis (``load=2``:
    a bare 2 beside the shares reads as one of them)."""
    return "/".join(f"{a}={r[a]}" if isinstance(r[a], (int, float, np.number)) and not isinstance(r[a], bool)
                    else str(r[a]) for a in names) or "the alternative"


def jsonable(value):
    """``value`` with every non-finite float (NaN, inf) as None and numpy scalars as Python ones, so it is
    strict JSON (``json.dumps(..., allow_nan=False)`` accepts it)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    return value


def comparison_json(comp: pd.DataFrame) -> str:
    return json.dumps(jsonable(comp.to_dict(orient="records")), indent=2, allow_nan=False, default=str) + "\n"


def write_outputs(study: StudyResult, out: Path, pool: Pool | None = None, early: dict | None = None,
                  errors: list[str] | None = None) -> list[Path]:
    """summary.csv, comparison.csv, requests.parquet (streamed run by run), the plots, the lane tables and the
    per-client-group table.
    With a ``pool`` the files other than the two tables are written by its workers, one task each, in
    parallel (a study held in memory is written here: its records are not sent to workers).  ``early``:
    figures already started on the pool (figure function -> future, see :func:`start_early_figures`).  A
    file that cannot be written does not stop the others: its line (:func:`sim.errors.writing`) goes to
    ``errors``.  ``out``: a str or Path, as :func:`sim.run_study` takes it."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    early = early or {}
    # the longest first, so that it does not start last
    tasks = [(writing, write_requests, study, out),
             *((writing, fig, study, out) for fig in FIGURES if fig not in early),
             (writing, plot_lanes, study, out), (writing, lane_tables, study, out), (writing, client_table, study, out)]
    results = {"summary": writing(_csv, study.summary, out / "summary.csv"),
               "comparison": writing(_csv, study.comparison, out / "comparison.csv")}
    ran = [call(*task) for task in tasks] if pool is None or study.results else pool.map(call, tasks)
    results.update(zip((task[1] for task in tasks), ran))
    results.update((fig, future.result()) for fig, future in early.items())
    # listed in one order whatever drew what when (the files written, the ones that could not be)
    done = [results[k] for k in ("summary", "comparison", write_requests, *FIGURES, plot_lanes, lane_tables,
                                 client_table)]
    if errors is not None:
        errors += [e for _, e in done if e]
    return [f for files, _ in done for f in files]


def _csv(frame: pd.DataFrame, path: Path) -> list[Path]:
    """One table as CSV (``summary.csv``: a row per run; ``comparison.csv``: a row per grid point)."""
    frame.to_csv(path, index=False)
    return [path]


def write_requests(study: StudyResult, out: Path) -> list[Path]:
    """``requests.parquet``: every run's records in summary order, written run by run so that a study larger
    than memory still writes.  Categorical columns are read back as plain strings (runs differ in their
    categories): written from their dictionaries as they are (one index type for all runs) without the Arrow
    schema, rather than turned into strings that the writer would then encode as a dictionary again (a fifth
    of the file's time on the 6-hour 65-run sweep).  It is written to ``requests.parquet.partial`` and renamed
    when complete: a command interrupted while writing leaves the earlier file whole, not a shorter valid one."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    path, partial = out / "requests.parquet", out / "requests.parquet.partial"
    writer = None
    try:
        for _, r in study.summary.iterrows():
            if (r["point"], r["replication"]) in study.results:
                table = run_table(load_records(study, r["point"], r["replication"]))
            else:
                table = run_records(study, r["point"], r["replication"], r["key"])
            table = table.cast(pa.schema([f.with_type(pa.dictionary(pa.int32(), pa.string()))
                                          if pa.types.is_dictionary(f.type) else f for f in table.schema]))
            if writer is None:
                writer = pq.ParquetWriter(partial, table.schema, store_schema=False,
                                          use_dictionary=_few_values(table))
            writer.write_table(table.select(writer.schema.names))
        if writer is not None:
            writer, done = None, writer
            done.close()
            os.replace(partial, path)
    finally:
        if writer is not None:
            writer.close()
        partial.unlink(missing_ok=True)  # stopped or failed part-way: no file, rather than a shorter one
    return [path]


def _few_values(table) -> list[str]:
    """The columns of ``requests.parquet`` to dictionary-encode: the categorical ones (client, model, outcome,
    unit) and those with at most one distinct value per 8 rows in the first run (counts, token sizes, point,
    replication).  Parquet's default tries a dictionary on every column and falls back to plain encoding for
    the times, nearly all distinct: on the 6-hour 65-run sweep that made the file a fifth larger (54 MB
    against 45 MB) and its writing ~0.15 s slower.  Only the encoding changes; the values read back are the
    same."""
    import pyarrow as pa
    import pyarrow.compute as pc
    return [name for name, column in zip(table.column_names, table.columns)
            if pa.types.is_dictionary(column.type) or pc.count_distinct(column).as_py() * 8 <= table.num_rows]


# ---- plots ------------------------------------------------------------------------------------------

def usage_over_time(records: pd.DataFrame, spec, times: np.ndarray, earlier=None) -> dict[str, np.ndarray]:
    """For each unit of each limit set the records (and the ``earlier`` admissions they do not show) charged
    (:func:`~sim.summary.limits_used`: per model, and its flex limits in a flex run): the amount charged (less
    refunds given back) in the unit's trailing window ending at each of ``times``, divided by the limit (1.0 =
    the limit is fully used)."""
    out = {}
    for label, limits, charges in limits_used(spec, records, earlier):
        if charges is None:
            continue
        t, amounts = charges
        for unit, limit in limits.items():
            window, counts = UNIT_SPEC[unit]
            cum = np.concatenate([[0.0], np.cumsum(amounts[counts])])
            hi = np.searchsorted(t, times, side="right")
            lo = np.searchsorted(t, times - window, side="right")
            out[f"{label} {unit.upper()}"] = (cum[hi] - cum[lo]) / limit
    return out


def plot_study(study: StudyResult, out: Path) -> list[Path]:
    """The study's four figures (:data:`FIGURES`), drawn here one after the other (``out``: a str or Path)."""
    return [f for fig in FIGURES for f in fig(study, Path(out))]


#: the most bins a figure over time draws (a long run's bins widen instead)
MAX_BINS = 2000


def _time_axis(study: StudyResult) -> tuple[float, float, float, str]:
    """(duration, histogram bin s, time-axis scale, its unit): a day reads in hours.  Past 2 000 bins of 15
    minutes (about three weeks), the bins widen by whole quarter hours to stay within 2 000."""
    duration = study.duration or study.scenario.scenario.duration
    bin_s = 60.0 if duration > 600 else 10.0
    if duration > 6 * 3600:
        bin_s = 900.0 if duration > 2 * 86400 else 300.0
    if duration > MAX_BINS * 900.0:
        bin_s = 900.0 * math.ceil(duration / (MAX_BINS * 900.0))
    scale, unit = (3600.0, "h") if duration > 6 * 3600 else (60.0, "min")
    return duration, bin_s, scale, unit


def plot_latency_cdf(study: StudyResult, out: Path) -> list[Path]:
    """``latency_cdf.png``: latency CDF of successful requests per alternative, all replications pooled: those
    created in the measurement window ``[warmup, duration)``, the requests of the table's latency percentiles
    (which average each replication's own: the pooled quantiles differ from them)."""
    points = list(study.comparison["point"])
    # the legend goes beside the axes (inside, it hid whichever curves ran under it), in a margin sized for
    # a line sample and the longest label at 7 pt (about 0.06 in a character)
    legend_w = 0.55 + 0.06 * max((len(study.label(p)) for p in points), default=0)
    fig, ax = subplots(figsize=(8 + legend_w, 5))
    levels = np.linspace(0, 1, 1001)
    style = line_styles(len(points))
    for k, p in enumerate(points):
        # the table's percentiles' requests: successes created in the measurement window (a warm-up that
        # spent a daily budget would otherwise add a fast share the steady state does not have)
        spec = study.spec(p)
        rec = load_records(study, p, columns=["outcome", "latency", "created"])
        measured = (rec["outcome"] == "ok") & (rec["created"] >= spec.warmup) & (rec["created"] < spec.duration)
        lat = rec.loc[measured, "latency"].to_numpy()
        if len(lat):
            # (sorted first: numpy's quantile then partitions an ordered array, the same values 4x faster than
            # partitioning at 1 001 places)
            ax.plot(np.quantile(np.sort(lat), levels), levels, label=study.label(p), lw=1.2,
                    **_marked(style[k], k, len(levels), len(points)))
    ax.set_xscale("log")
    ax.set_xlabel("end-to-end latency of successful requests (s, log scale)")
    ax.set_ylabel("fraction of successful requests")
    # (the table's percentiles are each replication's, averaged: the pooled CDF's quantiles differ from them)
    ax.set_title("Latency CDF per alternative (successes of the measurement window, replications pooled)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    _margins(fig, left=0.75, right=0.2 + legend_w, bottom=0.55, top=0.4)
    return [save(fig, out / "latency_cdf.png", layout=False)]


def plot_throughput(study: StudyResult, out: Path) -> list[Path]:
    """``throughput_over_time.png``: completed requests and 429s per minute over time (replication 0)."""
    points = list(study.comparison["point"])
    duration, bin_s, scale, unit = _time_axis(study)
    style = line_styles(len(points))
    fig, (ax1, ax2) = subplots(2, 1, figsize=(9, 6), sharex=True)
    edges = np.arange(0, duration + bin_s, bin_s)
    per = 60.0 / bin_s
    refused = 0
    for k, p in enumerate(points):
        rec = load_records(study, p, 0, columns=["outcome", "finished"])
        ok = rec.loc[rec["outcome"] == "ok", "finished"].to_numpy()
        ax1.plot(edges[:-1] / scale, np.histogram(ok, edges)[0] * per, label=study.label(p), lw=1,
                 **_marked(style[k], k, len(edges) - 1, len(points)))
        ref = load_refusals(study, p, 0)["time"].to_numpy()
        refused += len(ref)
        ax2.plot(edges[:-1] / scale, np.histogram(ref, edges)[0] * per, lw=1,
                 **_marked(style[k], k, len(edges) - 1, len(points)))
    ax1.set_ylabel("completed req/min")
    ax2.set_ylabel("429s per min")
    ax2.set_xlabel(f"simulated time ({unit})")
    for a in (ax1, ax2):
        a.set_ylim(bottom=0)  # counts: an empty panel must not show a negative axis
    if not refused:  # (a flat line at 0 on an axis of 0 to 0.05 read as a plotting fault)
        ax2.text(0.5, 0.5, "no 429s in replication 0", transform=ax2.transAxes, ha="center", va="center",
                 color="0.3")
    ax1.set_title("Throughput and 429s over time (replication 0)")
    # beside the panels, not on them: inside, it hid the peaks of whichever alternative ran highest
    ax1.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    for a in (ax1, ax2):
        a.grid(True, alpha=0.3)
    return [save(fig, out / "throughput_over_time.png")]


#: a limit's unit -> its colour in the utilisation figure, the same in every panel (the line style tells the
#: limit sets apart: a model, its flex limits, a fallback model)
UNIT_COLORS = {"RPM": "tab:blue", "RPD": "tab:orange", "TPM": "tab:green", "TPD": "tab:red", "ASH": "tab:purple",
               "ASD": "tab:brown"}
_SET_STYLES = ("-", "--", ":", "-.")
#: the least height of a utilisation panel (inches), whatever the legend above it takes
PANEL_MIN = 1.8


def plot_utilisation(study: StudyResult, out: Path) -> list[Path]:
    """``utilisation_over_time.png``: each limit's use over its window (replication 0), a panel per
    alternative.  One legend for the figure, in the grid's empty places or above the panels: a colour per
    unit and a line style per limit set, the same in every panel (a legend in each panel hid the curves, and
    colours taken in turn gave one limit different colours in panels that charge different limit sets)."""
    points = list(study.comparison["point"])
    duration, _, scale, unit = _time_axis(study)
    n = len(points)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = subplots(rows, cols, figsize=(5 * cols, 3.2 * rows), squeeze=False, sharex=True, sharey=True)
    times = np.linspace(0, duration, 400)
    over_limit = False
    lines: dict[str, object] = {}  # legend entry -> its first line
    sets: dict[str, str] = {}  # limit set -> its line style
    for k, p in enumerate(points):
        ax = axes[k // cols][k % cols]
        spec = study.spec(p)
        rec = load_records(study, p, 0, columns=usage_columns(spec))
        peak = 0.0
        used = usage_over_time(rec, spec, times, load_earlier(study, p, 0))
        for name, frac in used.items():
            limit_set, unit_name = name.rsplit(" ", 1)
            style = sets.setdefault(limit_set, _SET_STYLES[len(sets) % len(_SET_STYLES)])
            line, = ax.plot(times / scale, frac, lw=1, color=UNIT_COLORS.get(unit_name), linestyle=style)
            lines.setdefault(name, line)
            peak = max(peak, float(np.max(frac, initial=0.0)))
        if not used:  # (the batch lane: its jobs charge none of the per-model limits)
            ax.text(0.5, 0.25, "no limit charged here\n(the batch lane uses none of the per-model limits)",
                    transform=ax.transAxes, ha="center", va="center", fontsize=8, color="0.3")
        ax.axhline(1.0, color="k", lw=0.8, ls="--")
        over_limit |= peak > 1.0  # (said once, in the title: a note in the panel sat on the curves' peaks)
        ax.set_title(study.label(p), fontsize=8, y=1.0)  # placed, not searched for: nothing above a panel
        ax.grid(True, alpha=0.3)
        if k + cols >= n:  # nothing below it: the column's time axis is read here
            ax.xaxis.set_tick_params(labelbottom=True)
            ax.set_xlabel(f"simulated time ({unit})")
    axes[0][0].set_xlim(0, duration / scale)  # (shared: every panel)
    axes[0][0].set_ylim(bottom=0)
    empty = rows * cols - n
    for k in range(n, rows * cols):
        fig.delaxes(axes[k // cols][k % cols])  # the last row's empty places: the legend goes there
    for r in range(rows):
        axes[r][0].set_ylabel("used / limit over\nthe unit's window", fontsize=8)
    title = "Limit utilisation over time (replication 0)" + (
        "; above 1 = more than the limit in one window: a token bucket that is full (at the start, or after a "
        "lull) lets one window spend its budget on top of the refill" if over_limit else "")
    # wrapped to the figure's width (about 14 characters an inch at 9 points): one or two panels cut it
    title = textwrap.fill(title, int(14 * 5 * cols))
    fig.suptitle(title, fontsize=9 if over_limit else None)
    width, height = fig.get_size_inches()
    # entries side by side as many as the width holds (about 17 characters an inch at 7 points, and the key)
    ncols = max(1, min(len(lines), int(width // (max(map(len, lines), default=0) / 17 + 0.6))))
    legend_rows = 0 if empty or not lines else math.ceil(len(lines) / ncols)
    # room for the title, a legend above the panels when no place is empty, and a panel title above each panel;
    # below the last row, tick labels and an axis label; between rows, a panel title
    title_height = 0.45 + 0.2 * title.count("\n")
    top = title_height + 0.2 * legend_rows + 0.3
    # a legend above the panels grows the figure, not into the panels: a single panel of four models' limits had
    # 16 entries in 8 rows, taller than the figure (matplotlib refused its margins, and the run its figures)
    height = max(height, top + 0.5 + rows * PANEL_MIN + (rows - 1) * 0.35)
    fig.set_size_inches(width, height)
    _margins(fig, left=0.75, right=0.15, bottom=0.5, top=top, wspace=0.06,
             hspace=0.35 / ((height - top - 0.5) / rows - 0.35))
    if lines:
        if empty:  # centred in the empty places of the last row
            first = axes[rows - 1][n % cols].get_subplotspec().get_position(fig)
            box = (first.x0, first.y0, 1 - 0.15 / width - first.x0, first.height)
            fig.legend(lines.values(), lines.keys(), loc="center", bbox_to_anchor=box, fontsize=8, frameon=False)
        else:  # under the title
            fig.legend(lines.values(), lines.keys(), loc="upper center", ncols=ncols, fontsize=7, frameon=False,
                       bbox_to_anchor=(0.5, 1 - title_height / height))
    return [save(fig, out / "utilisation_over_time.png", layout=False)]


def plot_attempts(study: StudyResult, out: Path) -> list[Path]:
    """``attempts_per_success.png``: attempts per successful request per alternative (mean, 95% CI)."""
    comp = study.comparison
    points = list(comp["point"])
    n = len(points)
    fig, ax = subplots(figsize=(8, 4.5))
    labels = [study.label(p) for p in points]
    ax.bar(range(n), comp["attempts_per_success_mean"], yerr=comp["attempts_per_success_ci95"].fillna(0),
           capsize=3, color="tab:blue")
    ax.set_xticks(range(n), labels, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("attempts per successful request")
    ax.set_title("Attempts per success (mean, 95% CI)")
    ax.grid(True, axis="y", alpha=0.3)
    return [save(fig, out / "attempts_per_success.png")]


#: every study's figures, one function each (independent: a pool draws them in parallel), most costly first
FIGURES = (plot_utilisation, plot_latency_cdf, plot_throughput, plot_attempts)
#: every file :func:`write_outputs` can write in the output directory
OUTPUT_FILES = ("summary.csv", "comparison.csv", "requests.parquet", "utilisation_over_time.png", "latency_cdf.png",
                "throughput_over_time.png", "attempts_per_success.png", "lanes_cost_time.png", "batch_job_times.png",
                "by_project.csv", "by_lane.csv", "by_service_tier.csv", "by_client.csv")


#: the list, in the output directory, of the output files the last study wrote there (one name a line)
MANIFEST = ".groqsim-outputs"


def remove_stale(out: Path, written: list[Path], remove: bool = True) -> list[Path]:
    """Remove the output files (:data:`OUTPUT_FILES`) that an earlier study wrote in ``out`` and this one did
    not (its lane tables, say, in a directory a scenario without lanes now shares): next to this study's files
    they would read as its own.  Only files the earlier study listed in ``out``'s :data:`MANIFEST` go: a file of
    the same name that someone else put there is left alone.  Then lists this study's files there.  Returns
    what it removed.  ``remove`` False (an interrupted study, or one whose files were not all written): nothing
    goes, and its files join the list, so the next complete study removes those it does not write."""
    manifest = out / MANIFEST
    try:
        before = set(manifest.read_text(encoding="utf-8").splitlines())
    except (OSError, UnicodeDecodeError):
        before = set()
    keep = {Path(f).name for f in written}
    if not remove:
        keep |= before
    stale = [out / name for name in OUTPUT_FILES if name in before and name not in keep and (out / name).is_file()]
    for path in stale:
        path.unlink()
    manifest.write_text("".join(f"{name}\n" for name in OUTPUT_FILES if name in keep), encoding="utf-8")
    return stale

#: the figures that read only replication 0: they can be drawn while the other replications run
FIRST_REPLICATION_FIGURES = (plot_utilisation, plot_throughput)


def start_early_figures(pool: Pool, study: StudyResult, out: Path, early: dict) -> None:
    """Start the :data:`FIRST_REPLICATION_FIGURES` of ``study`` (its replication 0 done) on ``pool``'s
    workers, recording their futures in ``early`` for :func:`write_outputs`; nothing without workers.  The
    figures come out the same as at the end: they read only what is already done."""
    if study.results:  # a study held in memory is drawn at the end, in this process
        return
    for fig in FIRST_REPLICATION_FIGURES:
        future = pool.submit(call, writing, fig, study, out)
        if future is not None:
            early[fig] = future


def _marked(style: dict, k: int, points: int, n: int) -> dict:
    """``style`` plus a marker of its own, placed at offsets that differ per alternative: two alternatives
    with identical results still show both (the later line would otherwise hide the earlier)."""
    markers = "os^vD<>pXh*"
    every = max(points // 8, 1)
    return {**style, "marker": markers[k % len(markers)], "markersize": 4,
            "markevery": (int(every * k / max(n, 1)) % every, every)}


def _margins(fig, left: float, right: float, bottom: float, top: float, **spacing: float) -> None:
    """Fixed margins, in inches, around a figure's axes: room for tick labels, axis labels and a title known in
    advance (``spacing``: ``wspace``/``hspace`` between panels, as :meth:`Figure.subplots_adjust` takes them).
    ``tight_layout`` would measure every text to find them, a third of a simple figure's drawing time and
    more with a dozen panels."""
    width, height = fig.get_size_inches()
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height,
                        **spacing)


