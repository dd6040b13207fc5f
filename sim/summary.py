"""Per-run summaries: the numbers a capacity planner compares.

Request counts, ratios and latencies are over the requests *created* in the measurement window
``[warmup, duration)``; every one of them has exactly one outcome (conservation).  Throughput is the
successful requests *finished* in that window per minute (what the org actually got served);
``after_window_share`` is the share of the window's successes that finished after it, while the run drained
(a batch job's are all late: its throughput in the window reads 0 though every request succeeds).
Utilisation of a unit is what was charged to it in the window, less the unused tokens refunded in it
(``refund_unused``), divided by what the limit refills over the window (``limit x T / unit window``); flex
traffic is read against the flex limits.  1.0 means the unit was used at exactly its sustainable rate; a
token bucket exceeds 1 by spending a full budget (the one it starts with, or one refilled during a lull) on
top of the refill, which on a daily unit over a short run reads far above 1.  ``binding`` is the unit that
refused most requests in the window with 429s, else the limit that held requests back otherwise (a 413, an
on-demand limit sending ``auto``'s attempts to flex's 498s, a pacing client's wait, a budget spent with
requests unfinished; ``none`` when none did: :func:`_binding`);
``top_unit``/``top_util`` the most utilised
unit (against its refill: a daily unit reads high in a short run long before its budget runs out, see
:func:`spent`).  ``cost_usd`` is the bill of the window's requests (:mod:`sim.prices`: successes only,
nothing on a tier that does not bill; with ``org.accounting.bill_timed_out``, also the attempts their clients'
timeouts gave up on) and ``cost_per_success`` that bill over the successful requests.
"""
from __future__ import annotations

import numpy as np

import pandas as pd

from .catalog import UNIT_SPEC
from .batch import jobs_from_records
from .lanes import uses_lanes
from .cost import request_costs, timed_out_cost
from .records import OUTCOMES, RunResult

PERCENTILES = (50, 90, 95, 99)


def summarize(result: RunResult) -> dict:
    """The run's metrics (see the module docstring), computed on the records' columns as arrays: a boolean
    mask per subset, no filtered copy of the frame (those copies took a quarter of a 30-minute run's time)."""
    if not isinstance(result, RunResult):
        hint = {"DataFrame": ": pass the RunResult itself, not its .records",
                "StudyResult": ": a study's summaries are study.summary (each run) and study.comparison (each grid "
                               "point)"}.get(type(result).__name__, "")
        raise TypeError(f"summarize(result): takes the RunResult sim.simulate returns, got "
                        f"{type(result).__name__}{hint}")
    spec, rec = result.spec, result.records
    t0, t1 = spec.warmup, spec.duration
    minutes = (t1 - t0) / 60.0
    created, finished = rec["created"].to_numpy(), rec["finished"].to_numpy()
    window = (created >= t0) & (created < t1)
    outcome = _is(rec["outcome"])
    ok_all = outcome("ok")
    ok = window & ok_all
    offered, n_ok = int(window.sum()), int(ok.sum())
    attempts, n429 = int(rec["attempts"].to_numpy()[window].sum()), int(rec["n429"].to_numpy()[window].sum())
    out = {"offered": offered, "ok": n_ok, "success_ratio": n_ok / offered if offered else np.nan}
    for name in OUTCOMES[1:]:
        out[name] = int((window & outcome(name)).sum())
    done = ok_all & (finished >= t0) & (finished < t1)
    out["throughput_rpm"] = int(done.sum()) / minutes
    out["after_window_share"] = int((ok & (finished >= t1)).sum()) / n_ok if n_ok else np.nan
    out["tokens_per_min"] = float((rec["prompt_tokens"].to_numpy()[done].sum()
                                   + rec["completion_tokens"].to_numpy()[done].sum()) / minutes)
    out["attempts"], out["n429"] = attempts, n429
    out["n429_per_attempt"] = n429 / attempts if attempts else 0.0
    out["attempts_per_success"] = attempts / n_ok if n_ok else np.nan
    lat = rec["latency"].to_numpy()[ok]
    for p in PERCENTILES:
        out[f"latency_p{p}"] = float(np.percentile(lat, p)) if n_ok else np.nan
    out["latency_max"] = float(lat.max()) if n_ok else np.nan
    waits = rec["admitted"].to_numpy()[ok] - created[ok]
    waits = waits[~np.isnan(waits)]  # a batch success has no admission: its wait is its job's, not a limit's
    out["mean_wait"] = float(waits.mean()) if len(waits) else np.nan
    # per row: the window's rows, in order; and the attempts their clients' timeouts gave up on, if billed
    out["cost_usd"] = (float(request_costs(rec, spec)[window].sum())
                       + timed_out_cost(spec, rec, result.earlier_admissions, window))
    out["cost_per_success"] = out["cost_usd"] / n_ok if n_ok else np.nan
    util = utilisation(result)
    for unit in UNIT_SPEC:
        values = [v for (m, u), v in util.items() if u == unit]
        out[f"util_{unit}"] = max(values) if values else np.nan
    multi = len(rec["model"].cat.categories) > 1
    name = lambda model, unit: f"{model}:{unit}" if multi else unit  # noqa: E731
    binding = _most_refused(result.refusals, t0, t1)
    out["binding"] = name(*binding) if binding else "none"
    if binding and "n429_project" in rec and 2 * int(rec["n429_project"].to_numpy()[window].sum()) > n429:
        out["binding"] += " (project quota)"  # most 429s came from a project's own limit, not the org's
    top = max(util, key=util.get) if util else None
    out["top_unit"] = name(*top) if top else ""
    out["top_util"] = util[top] if top else np.nan
    if "service_tier" in rec:
        out.update(lane_metrics(result, rec[window]))
    out["binding"] = _binding(result, out)
    return out


def _binding(result: RunResult, summary: dict) -> str:
    """The limit that bound a run: the unit that refused most with 429s; without 429s, on ``auto``, the
    on-demand unit whose refusals sent attempts to flex where its capacity answered 498 (``spilled``); else,
    when a pacing client held successful requests back (their mean wait before admission > 0), the unit its own
    limit set last waited on; else, when requests ended unfinished with a unit used up (>= 95 % of its full
    budget plus its refill over the run, :func:`spent`: a client holding on the headers), that unit; else the
    unit that refused requests as too large (413) -- ``none`` only when no limit held anything back.  A 413
    comes last: it stops only the requests too large for a unit (their share is a column of its own), while
    the others name what held the rest of the traffic back (one 413 in 50 000 requests named the run's
    binding limit TPM while the day's TPD was spent)."""
    if summary["binding"] != "none":
        return summary["binding"]
    rec = result.records
    window = rec[(rec["created"] >= result.spec.warmup) & (rec["created"] < result.spec.duration)]
    multi = len(rec["model"].cat.categories) > 1

    def named(model: str, unit: str, how: str) -> str:  # the model named only when the run has several
        return f"{model}:{unit} ({how})" if multi else f"{unit} ({how})"

    if result.spilled_by:  # auto: on-demand refused, then flex's capacity answered 498 (no 429 names it)
        return named(*result.spilled_by[0], "spilled")
    if result.paced_by and summary.get("mean_wait", 0.0) > 0.0:
        return named(*result.paced_by[0], "paced")
    if summary.get("unfinished"):
        used = spent(result)
        top = max(used, key=used.get) if used else None
        if top is not None and used[top] >= 0.95:
            return named(*top, "spent")
    large = window[window["outcome"] == "too_large"]
    if len(large):
        (model, unit), _ = max(large.groupby(["model", "refused_by"], observed=True).size().items(),
                               key=lambda kv: kv[1])
        return named(model, unit, "413")
    return "none"


def _codes(column: pd.Series) -> tuple[np.ndarray, list]:
    """A column as integer codes (-1: missing) and the values they stand for: a categorical's own categories,
    else its distinct values sorted (the order a groupby lists them in)."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        return column.cat.codes.to_numpy(), list(column.cat.categories)
    codes, values = pd.factorize(column, sort=True)
    return codes, list(values)


def _is(column: pd.Series):
    """``_is(column)(value)``: the mask of the column's rows equal to ``value``, read on its codes."""
    codes, values = _codes(column)
    return lambda value: codes == values.index(value) if value in values else np.zeros(len(codes), bool)


def _most_refused(refusals: pd.DataFrame, t0: float, t1: float) -> tuple[str, str] | None:
    """The (model, unit) that refused most in ``[t0, t1)``, the first in (model, unit) category order on a
    tie; None without refusals there."""
    if not len(refusals):
        return None
    t = refusals["time"].to_numpy()
    (mc, models), (uc, units) = _codes(refusals["model"]), _codes(refusals["unit"])
    mc, uc = mc.astype(np.int64), uc.astype(np.int64)
    keep = (t >= t0) & (t < t1) & (mc >= 0) & (uc >= 0)
    if not keep.any():
        return None
    keys, counts = np.unique(mc[keep] * len(units) + uc[keep], return_counts=True)  # sorted keys
    best = int(keys[np.argmax(counts)])  # (argmax: the first of equal counts)
    return models[best // len(units)], units[best % len(units)]


def lane_metrics(result: RunResult, window: pd.DataFrame) -> dict:
    """A lane run's extra metrics over the requests created in the window: 498s, the share served on flex,
    429s whose binding scope was a project quota, and the batch lane's jobs (count, completion-time
    percentiles of completed jobs, jobs expired, share of batch requests expired)."""
    out = {"n498": int(window["n498"].sum())}
    ok = window["outcome"] == "ok"
    # (pandas: the mean and max of no rows are NaN)
    out["flex_share"] = float((window["service_tier"][ok] == "flex").mean())
    #: when the last successful request was answered (seconds from the start): when a job of requests is done
    out["done_by"] = float(window["finished"][ok].max())
    out["project_refusals"] = int(window["n429_project"].sum())
    batch = window[window["service_tier"] == "batch"]
    jobs = jobs_from_records(window)
    t = jobs["completion_time"].dropna().to_numpy(float)
    out["batch_jobs"] = len(jobs)
    out["jobs_expired"] = int((jobs["status"] == "expired").sum())
    for p in (50, 90):
        out[f"job_time_p{p}"] = float(np.percentile(t, p)) if len(t) else np.nan
    out["job_time_max"] = float(t.max()) if len(t) else np.nan
    # of batch requests (``expired_share``, of every request, is the outcome's share that compare adds)
    out["batch_expired_share"] = float((batch["outcome"] == "expired").mean())
    return out


def breakdown(result: RunResult, by: str = "project") -> pd.DataFrame:
    """Per value of a records column (``project``, ``lane``, ``service_tier``, ``client``): requests created
    in the window, outcomes, 429s and 498s, latency percentiles of the successes and cost.  A run without
    lane columns can still be broken down by ``client`` or ``model``."""
    spec, rec = result.spec, result.records
    if by not in rec:
        allowed = [c for c in ("project", "lane", "service_tier", "client", "model") if c in rec]
        raise ValueError(f"no column {by!r} to break down by (allowed: {', '.join(allowed)})")
    in_window = ((rec["created"] >= spec.warmup) & (rec["created"] < spec.duration)).to_numpy()
    window = rec[in_window]
    cost = request_costs(window, spec)
    rows = []
    for key, g in window.groupby(by, observed=True, sort=True):
        ok = g[g["outcome"] == "ok"]
        row = {by: key, "offered": len(g), "ok": len(ok), "success_ratio": len(ok) / len(g)}  # (observed: never empty)
        for name in OUTCOMES[1:]:
            row[name] = int((g["outcome"] == name).sum())
        row["n429"] = int(g["n429"].sum())
        if "n498" in g:
            row["n498"] = int(g["n498"].sum())
        lat = ok["latency"].to_numpy()
        for p in (50, 95):
            row[f"latency_p{p}"] = float(np.percentile(lat, p)) if len(lat) else np.nan
        row["cost_usd"] = float(cost[(window[by] == key).to_numpy()].sum()) + timed_out_cost(
            spec, rec, result.earlier_admissions, in_window & (rec[by] == key).to_numpy())
        rows.append(row)
    return pd.DataFrame(rows)


def usage_columns(spec) -> list[str]:
    """The record columns :func:`charged_by_model` reads for a run of ``spec``."""
    cols = ["admitted", "model", "charged_tokens", "audio_seconds"]
    if spec.org.accounting.refunds:
        cols += ["finished", "max_tokens", "completion_tokens"]
    return cols + (["service_tier"] if uses_lanes(spec) else [])


def charged_by_model(records, refund: bool = False, tier: str = "on_demand", earlier=None
                     ) -> dict[str, tuple[np.ndarray, dict[str, np.ndarray]]]:
    """Per model (by name, in sorted order), what the limits of service tier ``tier`` (``on_demand`` or
    ``flex``) were charged and when, keyed by what the units count (``requests``, ``tokens``,
    ``audio_seconds``): each admission at its time, and with ``refund`` each unused reservation given back
    (``max_tokens - completion``, negative, tokens only) when the response completed; times sorted (a tie in
    the records' order, a charge before a refund).  Every admitted attempt counts: the records' (each
    request's last admission) and ``earlier``'s (a run's :attr:`~sim.records.RunResult.earlier_admissions`,
    the attempts admitted and then given up by the client's ``timeout``; same columns).  What utilisation is
    measured from.  Read on the columns as arrays: grouping the frame cost a short run more than its whole
    summary."""
    parts = [_charges(records, refund, tier)]
    if earlier is not None and len(earlier):
        parts.append(_charges(earlier, refund, tier))
    names = sorted({n for part in parts for n in part[0]})
    index = {n: k for k, n in enumerate(names)}
    codes = np.concatenate([np.array([index[n] for n in part[0]], dtype=np.int64)[part[1]] for part in parts])
    times, tokens, audio, requests = (np.concatenate([part[k] for part in parts]) for k in range(2, 6))
    order = np.argsort(times, kind="stable")
    times, codes, tokens, audio, requests = times[order], codes[order], tokens[order], audio[order], requests[order]
    out = {}
    for code in np.unique(codes).tolist():
        mine = codes == code
        out[names[code]] = (times[mine], {"requests": requests[mine], "tokens": tokens[mine],
                                          "audio_seconds": audio[mine]})
    return out


def _charges(records, refund: bool, tier: str) -> tuple:
    """One frame's admissions (and refunds) on ``tier``'s limits, for :func:`charged_by_model`: the model names
    its codes stand for (a missing model as "nan", as str() says), each charge's model code, time, tokens,
    audio seconds and requests."""
    admitted = records["admitted"].to_numpy()
    keep = ~np.isnan(admitted)
    if "service_tier" in records:  # a lane run: only what this tier's limits admitted
        keep &= _is(records["service_tier"])(tier)
    elif tier != "on_demand":
        keep[:] = False
    rows = np.flatnonzero(keep)
    codes, names = _codes(records["model"])
    names = [str(m) for m in names] + ["nan"]
    codes = codes[rows].astype(np.int64)
    codes[codes < 0] = len(names) - 1  # (a missing model)
    tokens, audio = records["charged_tokens"].to_numpy(float)[rows], records["audio_seconds"].to_numpy(float)[rows]
    times, requests = admitted[rows], np.ones(len(rows))
    if refund:
        unused = (records["max_tokens"].to_numpy(float) - records["completion_tokens"].to_numpy(float))[rows]
        back = unused > 0
        n = int(back.sum())
        times = np.concatenate([times, records["finished"].to_numpy(float)[rows][back]])
        codes = np.concatenate([codes, codes[back]])
        tokens, audio = np.concatenate([tokens, -unused[back]]), np.concatenate([audio, np.zeros(n)])
        requests = np.concatenate([requests, np.zeros(n)])
    return names, codes, times, tokens, audio, requests


def limits_used(spec, records, earlier=None) -> list[tuple[str, dict, tuple[np.ndarray, dict[str, np.ndarray]] | None]]:
    """(label, limits, charges) of every org limit set a run's records (and ``earlier`` admissions, see
    :func:`charged_by_model`) charged: each model's on-demand limits (label: the model) and, in a run with flex
    traffic, its flex limits (label ``model (flex)``: the on-demand limits x ``[org.flex] multiplier``)."""
    refund = spec.org.accounting.refunds
    out = []
    on_demand = charged_by_model(records, refund, earlier=earlier)
    for model in _codes(records["model"])[1]:  # (a categorical's categories; the models of a read-back file)
        out.append((model, spec.catalog.limits(spec.org.tier, model), on_demand.get(model)))
    if "service_tier" in records:
        for model, charges in charged_by_model(records, refund, "flex", earlier).items():
            flex = spec.org.flex.limits(spec.catalog.limits(spec.org.tier, model))
            out.append((f"{model} (flex)", dict(flex.items()), charges))
    return out


def spent(result: RunResult) -> dict[tuple[str, str], float]:
    """(limit set, unit) -> share of all a unit could give over the whole run that it gave: charges less
    refunds from 0 to the run's end, over a full budget plus its refill (``limit x (1 + T / window)``, the
    most a token bucket admits in T).  Near 1, the budget is spent: unlike utilisation, which a daily unit
    exceeds in a short run long before its budget runs out."""
    spec = result.spec
    end = spec.duration + spec.drain
    out = {}
    for label, limits, charges in limits_used(spec, result.records, result.earlier_admissions):
        for unit, limit in limits.items():
            window, counts = UNIT_SPEC[unit]
            used = float(charges[1][counts][charges[0] < end].sum()) if charges is not None else 0.0
            out[(label, unit)] = used / (limit * (1.0 + end / window))
    return out


def utilisation(result: RunResult) -> dict[tuple[str, str], float]:
    """(limit set, unit) -> share of the unit's refill used in the measurement window: what admissions in
    the window charged (every admitted attempt, one the client's ``timeout`` gave up included) less what
    completions in it gave back (``refund_unused``), per :func:`limits_used`."""
    spec, rec = result.spec, result.records
    t0, t1 = spec.warmup, spec.duration
    out = {}
    for label, limits, charges in limits_used(spec, rec, result.earlier_admissions):
        times, amounts = charges if charges is not None else (np.empty(0), None)
        in_window = (times >= t0) & (times < t1)
        for unit, limit in limits.items():
            window, counts = UNIT_SPEC[unit]
            used = float(amounts[counts][in_window].sum()) if amounts else 0.0
            out[(label, unit)] = used / (limit * (t1 - t0) / window)
    return out
