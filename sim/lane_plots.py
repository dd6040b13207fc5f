"""Plots and tables of a study whose runs compare ways of buying capacity (lane metrics in its summary):
what each alternative costs against when its work is done, how long its batch jobs take, and results per
project, lane and service tier.

Kept apart from :mod:`sim.report` (which draws every study's plots); :func:`plot_lanes` and
:func:`lane_tables` write nothing for a study without lane metrics, so a report can always call them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .batch import jobs_from_records
from .figures import dot_styles, line_styles, save, subplots
from .records import RunResult
from .study import StudyResult, load_earlier, load_records
from .summary import breakdown

#: the records columns a lane study is broken down by, one CSV each (``by_project.csv`` ...)
BREAKDOWNS = ("project", "lane", "service_tier")


def plot_lanes(study: StudyResult, out: Path) -> list[Path]:
    """``lanes_cost_time.png`` (cost against when the last success came back, one dot a run) and, if any run
    used the batch lane, ``batch_job_times.png`` (completion-time CDF of the jobs that completed; the
    legend gives the share of jobs that expired): the jobs of the requests created in the measurement window,
    the ones ``summary.csv``'s ``batch_jobs`` and job times count."""
    summary = study.summary
    if "done_by" not in summary:  # lane metrics: only studies that compare lanes have them
        return []
    out = Path(out)
    files = []
    points = sorted(summary["point"].unique())
    fig, ax = subplots(figsize=(8, 5))
    for k, (p, style) in enumerate(zip(points, dot_styles(len(points)))):
        runs = summary[summary["point"] == p]
        # a colour, marker and size of its own, hollow: alternatives with identical runs (a batch job ignores
        # the service tier) stay visible one inside the other instead of one hiding the other
        ax.scatter(runs["done_by"] / 3600, runs["cost_usd"], facecolors="none", edgecolors=[style["color"]],
                   marker=style["marker"], s=max(110 - 25 * k, 30), linewidths=1.5, label=study.label(p))
    ax.ticklabel_format(axis="x", useOffset=False)  # runs done within seconds of each other: "2.0005", not
    # "0.0005" and a "+2.0" in the corner
    ax.set_xlabel("last success answered (hours from the start)")
    ax.set_ylabel("cost of the billed requests ($)")
    ax.set_title("Cost against time to done, one dot per run")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    files.append(save(fig, out / "lanes_cost_time.png"))

    batch_points = [p for p in points if summary.loc[summary["point"] == p, "batch_jobs"].sum() > 0]
    if batch_points:
        window = study.spec(points[0])  # (no axis moves the measurement window)
        fig, ax = subplots(figsize=(8, 5))
        for p, style in zip(batch_points, line_styles(len(batch_points))):
            rec = load_records(study, p, columns=["client", "job", "submitted", "finished", "outcome", "replication",
                                                  "created"])
            # the jobs of the measurement window's requests, as summary.csv's batch_jobs
            rec = rec[((rec["created"] >= window.warmup) & (rec["created"] < window.duration)).to_numpy()]
            run_client = rec["client"].astype(str) + "#" + rec["replication"].astype(str)  # jobs are per run
            jobs = jobs_from_records(rec.assign(client=run_client))
            t = np.sort(jobs["completion_time"].dropna().to_numpy(float)) / 3600
            expired = (jobs["status"] == "expired").mean() if len(jobs) else np.nan
            label = f"{study.label(p)} ({len(jobs)} jobs, {100 * expired:.0f}% expired)"
            if len(t):
                ax.step(np.concatenate([[0], t]), np.arange(len(t) + 1) / len(jobs), where="post", label=label,
                        **style)
            else:
                ax.plot([], [], label=label, **style)
        ax.set_xlabel("job completion time (hours from submission)")
        ax.set_ylabel("share of jobs completed")
        ax.set_ylim(0, 1)
        ax.set_title("Batch jobs: completion time (expired jobs never reach the top)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        files.append(save(fig, out / "batch_job_times.png"))
    return files


def lane_tables(study: StudyResult, out: Path) -> list[Path]:
    """``by_project.csv``, ``by_lane.csv``, ``by_service_tier.csv``: :func:`sim.summary.breakdown` of every
    run (one row per run and group, with the run's point, its axis values as ``compare.<axis>`` -- the
    ``service_tier`` axis sets the org's tier, the ``service_tier`` column is the tier each request was
    served on -- and replication)."""
    summary = study.summary
    if "done_by" not in summary:  # lane metrics: only studies that compare lanes have them
        return []
    out = Path(out)
    tables: dict[str, list[pd.DataFrame]] = {by: [] for by in BREAKDOWNS}
    for _, run in summary.iterrows():
        point, rep = int(run["point"]), int(run["replication"])
        records = load_records(study, point, rep)
        spec = study.spec(point)
        # (with the attempts a timeout gave up: billed with [org] accounting.bill_timed_out, as in the summary)
        result = RunResult(records, pd.DataFrame(), spec, earlier_admissions=load_earlier(study, point, rep))
        for by in BREAKDOWNS:
            table = breakdown(result, by)
            labels = [("point", point), *((f"compare.{a}", v) for a, v in study.point(point).items()),
                      ("replication", rep)]
            for k, (name, value) in enumerate(labels):
                table.insert(k, name, value)
            tables[by].append(table)
    files = []
    for by, parts in tables.items():
        path = out / f"by_{by}.csv"
        pd.concat(parts, ignore_index=True).to_csv(path, index=False)
        files.append(path)
    return files
