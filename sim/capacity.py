""""Do we need to upgrade?": the analytic ceiling of a request mix and the simulated highest load that
still meets a service target.

Analytic ceiling: for load multiplier ``m`` the mix sends ``m * rate_c`` requests/s of client group ``c``,
each costing on average ``cost_c,u`` of unit ``u`` (1 request, the mean charged tokens, the mean audio
seconds).  Unit ``u`` of a model sustains ``limit_u / window_u`` per second, so the mix fits while
``m * sum_c rate_c * cost_c,u <= limit_u / window_u`` for every unit: the smallest such ``m`` is the
ceiling and its unit the binding one.  It is the long-run (steady-state) answer: a token bucket starts
full, so a short run can briefly do better, and daily units only bite over a day.

Reported three ways: the long-run ceiling over all units (req/min), the ceiling of the minute/hour units
alone (req/min: what a run shorter than a day can sustain once its daily budget is still unspent) and of the
daily units alone (req/day).

Simulated: bisection over load multipliers for the highest load whose mean (over replications) success
ratio and p95 latency meet ``[capacity]`` targets over the scenario's duration.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .catalog import UNIT_SPEC
from .engine import simulate
from .scenario import Scenario
from .summary import summarize
from .workload import request_mix


@dataclass
class Ceiling:
    base_rpm: float          # the mix's offered requests/min at load 1
    load: float              # the highest sustainable load multiplier (all units, long run)
    rpm: float               # = base_rpm * load
    binding: str             # "model UNIT" that sets `rpm`
    per_minute: float        # req/min allowed by the minute and hour units alone (RPM, TPM, ASH)
    per_minute_binding: str
    per_day: float           # req/day allowed by the daily units alone (RPD, TPD, ASD)
    per_day_binding: str
    per_unit: dict           # "model UNIT" -> ceiling of the whole mix in requests/min


def analytic_ceiling(scenario: Scenario, point: dict | None = None) -> Ceiling:
    spec = scenario.spec(point)
    rng = np.random.default_rng(12345)  # fixed: the mean costs are a property of the mix, not of a run
    use: dict[tuple[str, str], float] = {}  # (model, unit) -> units per second at load 1
    base = 0.0
    for client in spec.clients:
        for model, rate, sz in request_mix(client, spec.duration, rng):
            charged = spec.org.accounting.charged(sz["prompt"], sz["max_tokens"], sz["completion"])
            cost = {"requests": 1.0, "tokens": float(np.mean(charged)), "audio_seconds": float(np.mean(sz["audio"]))}
            base += rate
            for unit, _ in spec.catalog.limits(spec.org.tier, model).items():
                use[(model, unit)] = use.get((model, unit), 0.0) + rate * cost[UNIT_SPEC[unit][1]]
    per_unit = {}
    for (model, unit), per_s in use.items():
        limit = getattr(spec.catalog.limits(spec.org.tier, model), unit)
        load = (limit / UNIT_SPEC[unit][0]) / per_s if per_s > 0 else math.inf
        per_unit[f"{model} {unit.upper()}"] = load * base * 60.0

    def smallest(daily: bool | None):
        units = {k: v for k, v in per_unit.items()
                 if daily is None or (UNIT_SPEC[k.rsplit(" ", 1)[1].lower()][0] == 86_400.0) == daily}
        if not units:
            return math.inf, ""
        key = min(units, key=units.get)
        return units[key], key

    rpm, binding = smallest(None)
    minute, minute_binding = smallest(False)
    day, day_binding = smallest(True)
    load = rpm / (base * 60.0) if base else math.nan
    return Ceiling(base * 60.0, load, rpm, binding, minute, minute_binding, day * 1440.0, day_binding, per_unit)


def meets_target(scenario: Scenario, point: dict, load: float,
                 duration: float | None = None) -> tuple[bool, float, float, float]:
    """Simulate ``load`` (all replications); (meets target, mean success ratio, mean p95 latency, mean cost
    per successful request in USD)."""
    target = scenario.capacity
    succ, p95, cost = [], [], []
    spec = scenario.spec({**point, "load": load}, duration=duration)
    for rep in range(scenario.scenario.replications):
        s = summarize(simulate(spec, scenario.seed(rep)))
        succ.append(s["success_ratio"])
        p95.append(s["latency_p95"])
        cost.append(s["cost_per_success"])
    ok_s, ok_p = float(np.nanmean(succ)), float(np.nanmean(p95)) if not np.all(np.isnan(p95)) else math.inf
    ok_c = float(np.nanmean(cost)) if not np.all(np.isnan(cost)) else math.nan
    return (ok_s >= target.success and ok_p <= target.p95), ok_s, ok_p, ok_c


def simulated_capacity(scenario: Scenario, point: dict, ceiling: Ceiling, duration: float | None = None,
                       step=None) -> dict:
    """Bisection for the highest load meeting the target (relative tolerance ``capacity.tolerance``);
    ``step(load, ok)`` is told each load tried."""
    if step is None:
        step = lambda load, ok: None  # noqa: E731
    target = scenario.capacity
    # a run shorter than a day can spend the daily units' initial budget: search up to 2x the minute ceiling
    fastest = max(ceiling.per_minute, ceiling.rpm) / ceiling.base_rpm if ceiling.base_rpm else math.inf
    hi = min(target.max_load, 2.0 * fastest) if math.isfinite(fastest) else target.max_load
    lo = 0.0
    ok, s, p, c = meets_target(scenario, point, hi, duration)
    step(hi, ok)
    best = (hi, s, p, c) if ok else (0.0, math.nan, math.nan, math.nan)
    if not ok:
        while hi - lo > target.tolerance * max(hi, 1e-9) and hi > 1e-3:
            mid = (lo + hi) / 2
            ok, s, p, c = meets_target(scenario, point, mid, duration)
            step(mid, ok)
            if ok:
                lo, best = mid, (mid, s, p, c)
            else:
                hi = mid
    load, s, p, c = best
    return {"sim_load": load, "sim_rpm": load * ceiling.base_rpm, "sim_success": s, "sim_p95": p,
            "sim_cost_per_1k": 1000 * c}


def capacity_table(scenario: Scenario, duration: float | None = None, jobs: int | None = 1,
                   progress: bool | None = False) -> list[dict]:
    """One row per tier x model of the scenario's grid (other axes at their first value).  The rows'
    bisections run in ``jobs`` processes (None: one per core); each is seeded the same wherever it runs,
    so the table does not depend on ``jobs``.  ``progress``: a bar on stderr (None: when it is a terminal)."""
    import os
    import sys
    from concurrent.futures import ProcessPoolExecutor

    from tqdm import tqdm
    axes = {a: v for a, v in scenario.compare.items() if a in ("tier", "model")}
    others = {a: v[0] for a, v in scenario.compare.items() if a not in ("tier", "model", "load")}
    tiers = axes.get("tier", [scenario.org.tier])
    models = axes.get("model", [None])
    cells = [(tier, model) for tier in tiers for model in models]
    jobs = min(jobs or os.cpu_count() or 1, len(cells))
    bar = tqdm(total=len(cells), desc="capacity", unit="tier x model", file=sys.stderr,
               disable=not (sys.stderr.isatty() if progress is None else progress))
    try:
        if jobs <= 1:
            rows = []
            for tier, model in cells:
                bar.set_postfix_str(f"{tier} {model or ''}".strip())
                name = f"{tier} {model or ''}".strip()
                rows.append(_capacity_row(scenario, others, tier, model, duration,
                                          step=lambda load, ok, name=name: bar.set_postfix_str(
                                              f"{name} load x{load:.3g}: {'ok' if ok else 'miss'}")))
                bar.update(1)
        else:
            with ProcessPoolExecutor(max_workers=jobs) as pool:
                futures = [pool.submit(_capacity_row, scenario, others, tier, model, duration) for tier, model in cells]
                for fut in futures:  # in table order: the result does not depend on which finishes first
                    fut.add_done_callback(lambda _: bar.update(1))
                rows = [fut.result() for fut in futures]
    finally:
        bar.close()
    return rows


def _capacity_row(scenario: Scenario, others: dict, tier: str, model: str | None, duration: float | None,
                  step=None) -> dict:
    point = {**others, "tier": tier, **({"model": model} if model else {})}
    c = analytic_ceiling(scenario, point)
    row = {"tier": tier, "model": model or ", ".join(sorted({x.model for x in scenario.clients})),
           "offered_rpm": c.base_rpm, "ceiling_rpm": c.rpm, "binding": c.binding,
           "minute_ceiling_rpm": c.per_minute, "minute_binding": c.per_minute_binding,
           "daily_ceiling_per_day": c.per_day, "daily_binding": c.per_day_binding,
           "ceilings_rpm": c.per_unit}
    row.update(simulated_capacity(scenario, point, c, duration, step))
    return row


def knee(comparison, success: float = 0.99, p95: float = 10.0, by: str = "load"):
    """The highest value of ``by`` in a sweep's comparison rows whose mean success ratio and mean p95
    latency meet the targets, assuming service gets worse with load (None if even the lowest fails)."""
    rows = comparison.sort_values(by)
    ok = (rows["success_ratio_mean"] >= success) & (rows["latency_p95_mean"] <= p95)
    best = None
    for value, good in zip(rows[by], ok):
        if not good:
            break
        best = value
    return best
