""""Do we need to upgrade?": the analytic ceiling of a request mix and the simulated highest load that
still meets a service target.

Analytic ceiling: for load multiplier ``m`` the mix sends ``m * rate_c`` requests/s of client group ``c``,
each costing on average ``cost_c,u`` of unit ``u`` (1 request, the mean charged tokens, the mean audio
seconds).  Unit ``u`` of a model sustains ``limit_u / window_u`` per second, so the mix fits while
``m * sum_c rate_c * cost_c,u <= limit_u / window_u`` for every unit: the smallest such ``m`` is the
ceiling and its unit the binding one.  It is the long-run (steady-state) answer: a token bucket starts
full, so a short run can briefly do better, and daily units only bite over a day.

A policy's ``fallback`` chain lets a stream's 429s spill onto other models: the ceiling is then the largest
load whose requests can be split over their chains' models with every unit within its limit (a linear
programme, :func:`_fluid_ceiling`), and its binding names every unit that holds it back
(``"a RPM + b RPD"``).

Reported three ways: the long-run ceiling over all units (req/min), the ceiling of the minute/hour units
alone (req/min: what a run shorter than a day can sustain once its daily budget is still unspent) and of the
daily units alone (req/day).

Charges are the long-run ones: with ``refund_unused`` a request costs its prompt and completion (the unused
reservation comes back), a flex client group's requests pass the flex limits (x ``[org.flex] multiplier``;
``auto`` the on-demand and flex limits together), a project's own lower limits are a limit set of their own
(``project/model``), and the Batch lane passes none.  A request larger than a unit's whole limit is a 413,
refused: it charges no unit (the others carry the limits alone), and a mix where every request is one has
no ceiling (0, binding ``none fits (413)``).

Simulated: a search over load multipliers (doubling from twice the minute ceiling while the target holds,
then bisection) for the highest load whose mean (over replications) success ratio and p95 latency meet
``[capacity]`` targets over the scenario's duration; its rate is the one the window was offered (measured).
The searches of every tier x model advance in lock step, each round's runs (every cell's next load x every
replication) spread over the shared :class:`sim.pool.Pool`, as ``run`` spreads a study's runs.
"""
from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, Generator

import numpy as np

from .catalog import UNIT_SPEC
from .engine import simulate
from .errors import ConfigError
from .pool import Pool
from .scenario import Scenario, require_scenario
from .projects import project_limits
from .summary import summarize
from .workload import request_mix


#: the binding of a mix whose every request is larger than a unit's whole limit (a 413 at any load)
NONE_FITS = "none fits (413)"


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
    per_unit: dict           # "model UNIT" -> ceiling of the whole mix in requests/min (that unit alone: with a
    #                          fallback chain, infinite for a unit whose requests can all go elsewhere)
    too_large: float = 0.0   # share of the mix's requests above a unit's whole limit: a 413 at any load


def analytic_ceiling(scenario: Scenario, point: dict | None = None) -> Ceiling:
    require_scenario(scenario, "analytic_ceiling(scenario)")
    spec = scenario.spec(point)
    rng = np.random.default_rng(12345)  # fixed: the mean costs are a property of the mix, not of a run
    # a stream of requests (one client group's, on one model) and, for each model it may be served by (its own,
    # then its policy's fallback chain), the units it charges there: (limit set, unit) -> charge per request
    streams: list[tuple[float, list[dict[tuple[str, str], float]]]] = []
    limit_of: dict[tuple[str, str], float] = {}  # (limit set, unit) -> its limit
    base = limited = too_large = 0.0  # req/s: all, through the per-model limits, above a unit's whole limit
    kinds = spec.kinds
    for client in spec.clients:
        policy = spec.policies[client.policy]
        # the models a request may reach: a hop is an attempt, so only the first max_attempts of the chain
        reachable = [client.model, *policy.fallback][:policy.max_attempts]
        for model, rate, sz in request_mix(client, spec.duration, rng, kinds=kinds):
            base += rate
            if client.lane == "batch":  # the Batch API's own lane: none of the per-model limits
                continue
            # what admission charges (the whole reservation): above a unit's whole limit, a request never fits
            admitted, audio = np.broadcast_arrays(np.asarray(spec.org.accounting.charged(
                sz["prompt"], sz["max_tokens"], sz["completion"], kinds.get(model) != "tts"), float),
                np.asarray(sz["audio"], float))
            chain = [limit_sets(spec, client, m) for m in [model, *reachable[1:]]]  # (a trace's row's model too)
            # a request larger than a unit's whole limit on a model is a 413 there, which ends it (no fallback
            # hop): it can be served by the chain's models before the first it does not fit, by none when that
            # is its own (refused: it charges nothing, the units carry the others alone)
            fits = np.ones((len(chain), admitted.size), bool)
            for k, sets in enumerate(chain):
                for label, limits in sets:
                    for unit, limit in limits.items():
                        limit_of[(label, unit)] = limit
                        kind = UNIT_SPEC[unit][1]
                        if kind != "requests":
                            fits[k] &= (audio if kind == "audio_seconds" else admitted) <= limit
            reach = np.cumprod(fits, axis=0).sum(axis=0)  # how many of the chain's models each request may use
            tokens = long_run_tokens(spec, sz, admitted)
            for j in range(1, len(chain) + 1):  # one stream per reach: its requests' flows over the first j models
                members = reach == j
                if not members.any():
                    continue
                # charges per request of the group's (members' share folded in, so all streams share ``rate``)
                cost = {"requests": float(np.mean(members)),
                        "tokens": float(np.mean(np.where(members, tokens, 0.0))),
                        "audio_seconds": float(np.mean(np.where(members, audio, 0.0)))}
                streams.append((rate, [{(label, unit): cost[UNIT_SPEC[unit][1]]
                                        for label, limits in sets for unit in limits} for sets in chain[:j]]))
            limited += rate
            too_large += rate * float(np.mean(reach == 0))
    ceiling = _fluid_ceiling if any(len(hops) > 1 for _, hops in streams) else _one_model_ceiling
    capacity = {key: limit / UNIT_SPEC[key[1]][0] for key, limit in limit_of.items()}  # units per second
    per_unit = {}
    for key in limit_of:
        load, _ = ceiling(streams, {key: capacity[key]})
        per_unit[_unit_name(key)] = load * base * 60.0

    def smallest(daily: bool | None) -> tuple[float, str]:
        units = {k: v for k, v in capacity.items() if daily is None or (UNIT_SPEC[k[1]][0] == 86_400.0) == daily}
        load, binding = ceiling(streams, units)
        return load * base * 60.0, binding

    rpm, binding = smallest(None)
    minute, minute_binding = smallest(False)
    day, day_binding = smallest(True)
    if limited and too_large >= limited:  # every request through the limits is a 413: none is ever served
        rpm = minute = day = 0.0
        binding = minute_binding = day_binding = NONE_FITS
    load = rpm / (base * 60.0) if base else math.nan
    return Ceiling(base * 60.0, load, rpm, binding, minute, minute_binding, day * 1440.0, day_binding, per_unit,
                   too_large / limited if limited else 0.0)


def _unit_name(key: tuple[str, str]) -> str:
    """(limit set, unit) as the tables name it: ``"openai/gpt-oss-20b TPM"``."""
    return f"{key[0]} {key[1].upper()}"


def _one_model_ceiling(streams: list, capacity: dict) -> tuple[float, str]:
    """(highest load multiplier, binding unit) when every stream is served by its own model alone: each unit
    ``u`` holds while ``load * use_u <= capacity_u``, so the ceiling is the smallest ``capacity_u / use_u``
    (infinite, binding "", when no unit is charged)."""
    use: dict = {}
    for rate, (charges,) in streams:
        for key, charge in charges.items():
            if key in capacity:
                use[key] = use.get(key, 0.0) + rate * charge
    loads = {key: capacity[key] / per_s if per_s > 0 else math.inf for key, per_s in use.items()}
    if not loads:
        return math.inf, ""
    key = min(loads, key=loads.get)
    return loads[key], _unit_name(key)


def _fluid_ceiling(streams: list, capacity: dict) -> tuple[float, str]:
    """(highest load multiplier, binding units) when some streams may also be served by fallback models: the
    largest ``load`` for which the streams' requests can be split over their models (flows ``x >= 0``, each
    stream's summing to ``load * rate``) with every unit within its capacity -- a linear programme (scipy's
    HiGHS).  It is the fluid limit of a fallback chain: the primary model takes what it can and its 429s
    spill, at once, onto the next model; a request charges a fallback model what it charges its own, and
    one too large for a model of the chain (a 413 there ends it) is a stream of its own, served by the models
    before that one.  The binding units are the ones whose capacity
    holds the load back (a shadow price), joined by " + " ("model A RPM + model B RPD")."""
    from scipy.optimize import linprog
    keys = list(capacity)
    flows = [(s, charges) for s, (_, hops) in enumerate(streams) for charges in hops]
    # variables: [load, x_1 .. x_F]; maximise load
    a_ub = np.zeros((len(keys), 1 + len(flows)))
    for f, (_, charges) in enumerate(flows):
        for row, key in enumerate(keys):
            a_ub[row, 1 + f] = charges.get(key, 0.0)
    a_eq = np.zeros((len(streams), 1 + len(flows)))
    for f, (s, _) in enumerate(flows):
        a_eq[s, 1 + f] = 1.0
    a_eq[:, 0] = [-rate for rate, _ in streams]
    c = np.zeros(1 + len(flows))
    c[0] = -1.0
    res = linprog(c, A_ub=a_ub if keys else None, b_ub=[capacity[k] for k in keys] if keys else None, A_eq=a_eq,
                  b_eq=np.zeros(len(streams)), bounds=[(0, None)] * (1 + len(flows)), method="highs")
    if res.status == 3:  # unbounded: every stream can be served by models none of these units limit
        return math.inf, ""
    if res.status != 0:  # pragma: no cover - a feasible, bounded programme (load 0 always fits) solves
        raise RuntimeError(f"capacity: the fallback ceiling's linear programme failed: {res.message}")
    binding = [_unit_name(k) for k, price in zip(keys, res.ineqlin.marginals) if price < -1e-12]
    return float(res.x[0]), " + ".join(binding)


def long_run_tokens(spec, sizes: dict, admitted: np.ndarray) -> np.ndarray:
    """What each sampled request costs the token units in the long run: its charge at admission
    (``admitted``), less the unused reservation a completed response gives back when the org refunds it
    (``refund_unused``)."""
    if spec.org.accounting.refunds:
        return admitted - np.maximum(np.asarray(sizes["max_tokens"], float) - sizes["completion"], 0.0)
    return admitted


def limit_sets(spec, client, model: str) -> list[tuple[str, dict]]:
    """(label, unit -> limit) of every limit set a client group's requests on ``model`` pass, as
    :class:`sim.lanes.Lanes` routes them: the org's on-demand limits; on flex the org's x ``[org.flex]
    multiplier`` (label ``model (flex)``); on ``auto`` both, as one set of their summed limits (on-demand
    first, then flex); and a project's own lower limits (label ``project/model``), multiplied alike."""
    org = spec.catalog.limits(spec.org.tier, model)
    tier = client.service_tier or spec.org.service_tier
    flex = spec.org.flex.limits

    def tiered(limits) -> dict:  # as the tier's requests see them
        if tier == "on_demand":
            return dict(limits.items())
        if tier == "flex":
            return dict(flex(limits).items())
        return {u: v + getattr(flex(limits), u) for u, v in limits.items()}  # auto: both sets, summed

    label = {"on_demand": model, "flex": f"{model} (flex)", "auto": f"{model} (on-demand + flex)"}[tier]
    sets = [(label, tiered(org))]
    if client.project is not None and spec.org.project_quotas:
        own = project_limits(client.project, spec.projects[client.project], model, org)
        if own is not None:
            sets.append((f"{client.project}/{model}", tiered(own)))
    return sets


def run_summary(scenario: Scenario, point: dict, replication: int, duration: float | None = None
                ) -> tuple[float, float, float, float]:
    """One replication of ``point``: (success ratio, p95 latency, cost per successful request in USD,
    requests offered per minute in the measurement window).  The success ratio leaves out requests too large
    for the tier (a 413: above a unit's whole limit): no load makes them fit, and counting them made the
    target unreachable at every load, so the bisection ended on whichever tiny load happened to draw none.
    The offered rate is what the window really saw: a diurnal, piecewise, on/off or trace arrival's rate
    over a run differs from its long-run mean."""
    spec = scenario.spec(point, duration=duration)
    try:
        s = summarize(simulate(spec, scenario.seed(replication)))
    except ConfigError as exc:  # what only a run finds out (a closed loop that cannot advance), as `run` says it
        raise scenario.run_error(exc, point) from None
    fits = s["offered"] - s["too_large"]
    minutes = (spec.duration - spec.warmup) / 60.0
    return (s["ok"] / fits if fits else math.nan), s["latency_p95"], s["cost_per_success"], s["offered"] / minutes


def _summary_or_error(*args) -> tuple | ConfigError:
    """:func:`run_summary`, or the error a run found, returned: one cell's fault stops that cell's search, not
    the round's other cells."""
    try:
        return run_summary(*args)
    except ConfigError as exc:
        return exc


def held_axes(scenario: Scenario) -> dict:
    """The ``[compare]`` axes other than tier, model and load, at the first value each: what capacity holds
    fixed while it searches every tier x model."""
    return {a: v[0] for a, v in scenario.compare.items() if a not in ("tier", "model", "load")}


def verdict(scenario: Scenario, runs: list[tuple[float, float, float, float]]
            ) -> tuple[bool, float, float, float, float]:
    """(meets target, mean success ratio, mean p95 latency, mean cost per success, mean offered req/min) of
    a load's replications, in replication order.
    A replication with no success ratio (every request too large for the tier), p95 (no success) or cost
    is left out of its mean; none at all gives a success ratio and cost that are not a number and a p95 of
    infinity (numpy's nanmean would warn of an empty slice)."""
    target = scenario.capacity
    succ, p95, cost, offered = (np.array([r[k] for r in runs], dtype=float) for k in range(4))

    def mean(values, empty):
        return float(np.nanmean(values)) if not np.all(np.isnan(values)) else empty

    ok_s, ok_p, ok_c = mean(succ, math.nan), mean(p95, math.inf), mean(cost, math.nan)
    return (ok_s >= target.success and ok_p <= target.p95), ok_s, ok_p, ok_c, float(np.mean(offered))


def bisection(scenario: Scenario, ceiling: Ceiling) -> Generator[float, tuple, dict]:
    """The search for the highest load meeting the target (relative tolerance ``capacity.tolerance``), as a
    generator: it yields each load to try, is sent that load's :func:`verdict`, and returns the result row.
    Driving it apart from simulating lets many searches share one pool (:func:`search`).  It starts at twice
    the analytic minute ceiling (a run shorter than a day can spend the daily units' initial budget) and,
    while that load still meets the target (the ceiling missed something: a refund, a lull), doubles it up
    to ``capacity.max_load`` before bisecting; ``sim_capped`` says the target was met at ``max_load``,
    ``sim_missed_load`` is the lowest load tried that missed it (NaN when capped: none did).  When no load
    meets the target, the halving stops at x0.001 of the traffic, or at a thousandth of the first load tried
    when that is below x1."""
    target = scenario.capacity
    fastest = max(ceiling.per_minute, ceiling.rpm) / ceiling.base_rpm if ceiling.base_rpm else math.inf
    hi = min(target.max_load, 2.0 * fastest) if math.isfinite(fastest) and fastest > 0 else target.max_load
    # a target no load meets ends the search a thousandth below the traffic, or below the first load tried
    # when that is already less (a traffic thousands of times the tier's: its ceiling is there)
    floor = 1e-3 * min(1.0, hi)
    lo = 0.0
    best = _NONE_MET
    while True:
        ok, s, p, c, r = yield hi
        if not ok:
            break
        lo, best = hi, (hi, s, p, c, r)
        if hi >= target.max_load:
            break
        hi = min(target.max_load, 2.0 * hi)
    if not ok:
        while hi - lo > target.tolerance * max(hi, 1e-9) and hi > floor:
            mid = (lo + hi) / 2
            if not lo < mid < hi:  # the bracket is as narrow as floating point goes
                break
            ok, s, p, c, r = yield mid
            if ok:
                lo, best = mid, (mid, s, p, c, r)
            else:
                hi = mid
    return _row(best, hi if best[0] < target.max_load else math.nan, target.max_load, True)  # (below: hi missed)


#: a cell's best so far before any load tried met the target, and what a cell knows before any load is tried
_NONE_MET = (0.0, math.nan, math.nan, math.nan, 0.0)
_UNTRIED = (_NONE_MET, math.nan)


def _row(best: tuple, missed: float, max_load: float, finished: bool) -> dict:
    """A cell's result: ``best`` = (load, success, p95, cost per request, offered req/min) of the highest load
    that met the target, ``missed`` the lowest load that missed it (NaN: none), ``finished``: the search ran
    to its end (False: stopped, the answer lies between the two loads)."""
    load, s, p, c, r = best
    return {"sim_load": load, "sim_rpm": r, "sim_success": s, "sim_p95": p, "sim_cost_per_1k": 1000 * c,
            "sim_capped": bool(finished and load >= max_load), "sim_missed_load": missed, "sim_finished": finished}


def search(scenario: Scenario, cells: list[tuple[dict, Ceiling]], duration: float | None = None,
           pool: Pool | None = None, step: Callable[[int, float, bool], None] | None = None,
           max_requests: float | None = None, max_users: int | None = None) -> list[dict]:
    """Run the bisections of several (point, ceiling) cells in lock step: each round simulates the next load
    of every unfinished cell, all replications, as one map on ``pool``.  Each cell sees the same loads and
    seeds as when searched alone, so the results do not depend on the pool.  ``step(cell, load, ok)`` is
    told each load tried.  ``max_requests``: the most simulated requests one run may take (about: the
    scenario's mean rates x the load x the horizon); a cell whose next load is beyond it stops there, before
    simulating it, the others run to their end, and then a :class:`ConfigError` names the heaviest such load
    and ``[capacity] max_load``; ``max_users``: the same for the closed-loop users one run starts.  A cell
    whose run finds an error (a closed loop that cannot advance) stops there too, the others run to their end,
    and then that error is raised.  Stopped after a round (Ctrl-C, or either error), the exception raised
    carries ``capacity_rows``: every cell's row as far as it went (:func:`_row`; a cell not finished has
    ``sim_finished`` False and lies between its ``sim_load`` and ``sim_missed_load``), so a caller loses none
    of the runs done."""
    pool = pool or Pool(1)
    searches = [bisection(scenario, ceiling) for _, ceiling in cells]
    loads = {n: next(g) for n, g in enumerate(searches)}
    results: list[dict] = [{} for _ in cells]
    planned, requests = scenario.size(duration)
    per_load = requests / planned / float(np.mean(scenario.compare.get("load", [1.0])))  # one run at load 1
    known: dict[int, tuple] = {}  # cell -> (best so far, lowest load missed): loads met rise, loads missed fall
    reps = scenario.scenario.replications
    refused: dict[int, float] = {}  # cell -> the load it would try next, beyond the work limit
    errors: dict[int, ConfigError] = {}  # cell -> what a run of it found (a closed loop that cannot advance)
    try:
        while loads:
            if max_requests is not None or max_users is not None:  # a cell whose next load is too heavy stops
                refused.update({n: load for n, load in loads.items()  # (the others go on)
                                if max_requests is not None and load * per_load > max_requests
                                or max_users is not None and scenario.users(load) > max_users})
                loads = {n: load for n, load in loads.items() if n not in refused}
                if not loads:
                    break
            order = sorted(loads)
            calls = [(scenario, {**cells[n][0], "load": loads[n]}, rep, duration) for n in order for rep in range(reps)]
            runs = pool.map(_summary_or_error, calls)
            for k, n in enumerate(order):
                mine = runs[k * reps:(k + 1) * reps]
                if failed := [r for r in mine if isinstance(r, ConfigError)]:  # this cell stops; the others go on
                    errors[n] = failed[0]
                    del loads[n]
                    continue
                answer = verdict(scenario, mine)
                best, missed = known.get(n, _UNTRIED)
                known[n] = ((loads[n], *answer[1:]), missed) if answer[0] else (best, loads[n])
                if step is not None:
                    step(n, loads[n], answer[0])
                try:
                    loads[n] = searches[n].send(answer)
                except StopIteration as done:
                    results[n] = done.value
                    del loads[n]
        if errors:  # (the first cell's, in table order; the rows say how far each search went)
            raise errors[min(errors)]
        if refused:
            top = max(refused.values())
            if max_users is not None and (users := scenario.users(top)) > max_users:
                raise ConfigError(f"{scenario.source}: capacity: the search would simulate load x{top:.3g}, "
                                  f"{users:,} closed-loop users in one run (users x load, summed over the groups), "
                                  f"more than this command starts without --force ({max_users:,}; each holds about "
                                  f"1 KB of memory); lower [capacity] max_load ({scenario.capacity.max_load:g}) "
                                  "or add --force")
            raise ConfigError(f"{scenario.source}: capacity: the search would simulate load x{top:.3g}, about "
                              f"{top * per_load:,.0f} simulated requests in one run, more than this command does "
                              f"without --force ({max_requests:,.0f}); lower [capacity] max_load "
                              f"({scenario.capacity.max_load:g}) or add --force")
    except (KeyboardInterrupt, ConfigError) as exc:
        if known:  # at least one round ran: what it found is the caller's
            exc.capacity_rows = [r or _row(*known.get(n, _UNTRIED), scenario.capacity.max_load, False)
                                 for n, r in enumerate(results)]
        raise
    return results


def simulated_capacity(scenario: Scenario, point: dict, ceiling: Ceiling, duration: float | None = None,
                       step=None, pool: Pool | None = None) -> dict:
    """Bisection for the highest load meeting the target (relative tolerance ``capacity.tolerance``);
    ``step(load, ok)`` is told each load tried."""
    tell = None if step is None else (lambda _, load, ok: step(load, ok))
    return search(scenario, [(point, ceiling)], duration, pool, tell)[0]


def capacity_table(scenario: Scenario, duration: float | None = None, jobs: int | None = 1,
                   progress: bool | None = False, pool: Pool | None = None,
                   max_requests: float | None = None, max_users: int | None = None) -> list[dict]:
    """One row per tier x model of the scenario's grid (other axes at their first value).  The rows'
    bisections run in lock step, the replications of every load tried in ``jobs`` processes (None: one per
    core; or on ``pool``); each run is seeded the same wherever it runs, so the table does not depend on
    ``jobs``.  ``progress``: a bar on stderr (None: when it is a terminal); ``max_requests``, ``max_users`` and a search
    stopped half way (the exception's ``capacity_rows``: these rows as far as they went): see :func:`search`."""
    import sys

    from tqdm import tqdm
    require_scenario(scenario, "capacity_table(scenario)")
    no_traffic(scenario)
    axes = {a: v for a, v in scenario.compare.items() if a in ("tier", "model")}
    others = held_axes(scenario)
    tiers = axes.get("tier", [scenario.org.tier])
    models = axes.get("model", [None])
    points = [{**others, "tier": tier, **({"model": model} if model else {})} for tier in tiers for model in models]
    ceilings = [analytic_ceiling(scenario, point) for point in points]
    rows = [{"tier": point["tier"],
             "model": point.get("model") or ", ".join(sorted(scenario.client_models())),
             "offered_rpm": c.base_rpm, "ceiling_rpm": c.rpm, "binding": c.binding,
             "minute_ceiling_rpm": c.per_minute, "minute_binding": c.per_minute_binding,
             "daily_ceiling_per_day": c.per_day, "daily_binding": c.per_day_binding, "ceilings_rpm": c.per_unit,
             "too_large_share": c.too_large}
            for point, c in zip(points, ceilings)]
    bar = tqdm(total=len(points), desc="capacity", unit="tier x model", file=sys.stderr,
               disable=not (sys.stderr.isatty() if progress is None else progress))

    def step(n, load, ok):
        bar.set_postfix_str(f"{rows[n]['tier']} {rows[n]['model']} load x{load:.3g}: {'ok' if ok else 'miss'}")

    try:
        with Pool(jobs) if pool is None else nullcontext(pool) as runner:
            found = search(scenario, list(zip(points, ceilings)), duration, runner, step, max_requests, max_users)
        bar.update(len(points))
    except (KeyboardInterrupt, ConfigError) as exc:
        if hasattr(exc, "capacity_rows"):  # the table as far as it went (see search)
            exc.capacity_rows = [{**row, **sim} for row, sim in zip(rows, exc.capacity_rows)]
        raise
    finally:
        bar.close()
    return [{**row, **sim} for row, sim in zip(rows, found)]


def no_traffic(scenario: Scenario) -> None:
    """A :class:`ConfigError` when no load sends a request: every group open-loop (no trace) at rate 0."""
    arrivals = [c.arrival for c in scenario.clients]
    if all(a.open_loop and a.kind != "trace" and a.long_run_rate() == 0 for a in arrivals):
        key = "clients[0].arrival" if len(arrivals) == 1 else "clients"
        raise scenario.error(key, "capacity: no traffic to scale: every client group's arrival rate is 0, so no "
                             "load multiplier sends a request (allowed: a rate > 0 in at least one group)")


def knee(comparison, success: float = 0.99, p95: float = 10.0, by: str = "load"):
    """The highest value of ``by`` in a sweep's comparison rows whose mean success ratio and mean p95
    latency meet the targets, assuming service gets worse with load (None if even the lowest fails)."""
    if not hasattr(comparison, "sort_values"):
        raise TypeError(f"knee(comparison): takes a comparison frame (study.comparison), got "
                        f"{type(comparison).__name__}")
    if by not in comparison:
        raise ValueError(f"knee(by={by!r}): the comparison has no such column (a [compare] axis of the sweep; "
                         f"it has: {', '.join(c for c in comparison.columns if not c.endswith(('_mean', '_ci95')))})")
    rows = comparison.sort_values(by)
    ok = (rows["success_ratio_mean"] >= success) & (rows["latency_p95_mean"] <= p95)
    best = None
    for value, good in zip(rows[by], ok):
        if not good:
            break
        best = value
    return best
