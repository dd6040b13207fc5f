"""Per-run summaries: the numbers a capacity planner compares.

Request counts, ratios and latencies are over the requests *created* in the measurement window
``[warmup, duration)``; every one of them has exactly one outcome (conservation).  Throughput is the
successful requests *finished* in that window per minute (what the org actually got served).  Utilisation of a
unit is what was charged to it in the window divided by what the limit refills over the window
(``limit x T / unit window``): 1.0 means the unit was used at exactly its sustainable rate; a token bucket
can briefly exceed 1 by spending its initial full budget.  ``binding`` is the unit that refused most requests
in the window (``none`` without 429s); ``top_unit``/``top_util`` the most utilised unit, the one that would
bind first.  ``cost_usd`` is the bill of the window's requests (:mod:`sim.prices`: successes only, nothing on
a tier that does not bill) and ``cost_per_success`` that bill over the successful requests.
"""
from __future__ import annotations

import numpy as np

from .catalog import UNIT_SPEC
from .prices import bill
from .records import OUTCOMES, RunResult

PERCENTILES = (50, 90, 95, 99)


def summarize(result: RunResult) -> dict:
    spec, rec = result.spec, result.records
    t0, t1 = spec.warmup, spec.duration
    minutes = (t1 - t0) / 60.0
    window = rec[(rec["created"] >= t0) & (rec["created"] < t1)]
    ok = window[window["outcome"] == "ok"]
    offered, n_ok = len(window), len(ok)
    attempts, n429 = int(window["attempts"].sum()), int(window["n429"].sum())
    out = {"offered": offered, "ok": n_ok, "success_ratio": n_ok / offered if offered else np.nan}
    for name in OUTCOMES[1:]:
        out[name] = int((window["outcome"] == name).sum())
    done = rec[(rec["outcome"] == "ok") & (rec["finished"] >= t0) & (rec["finished"] < t1)]
    out["throughput_rpm"] = len(done) / minutes
    out["tokens_per_min"] = float((done["prompt_tokens"].sum() + done["completion_tokens"].sum()) / minutes)
    out["attempts"], out["n429"] = attempts, n429
    out["n429_per_attempt"] = n429 / attempts if attempts else 0.0
    out["attempts_per_success"] = attempts / n_ok if n_ok else np.nan
    lat = ok["latency"].to_numpy()
    for p in PERCENTILES:
        out[f"latency_p{p}"] = float(np.percentile(lat, p)) if n_ok else np.nan
    out["latency_max"] = float(lat.max()) if n_ok else np.nan
    out["mean_wait"] = float((ok["admitted"] - ok["created"]).mean()) if n_ok else np.nan
    paid = bill(window, spec.prices, billed=spec.catalog.bills(spec.org.tier),
                cache_hit_ratio=spec.org.accounting.cache_hit_ratio)
    out["cost_usd"], out["cost_per_success"] = paid.usd, paid.per_success
    util = utilisation(result)
    for unit in UNIT_SPEC:
        values = [v for (m, u), v in util.items() if u == unit]
        out[f"util_{unit}"] = max(values) if values else np.nan
    refused = result.refusals
    refused = refused[(refused["time"] >= t0) & (refused["time"] < t1)]
    multi = len(rec["model"].cat.categories) > 1
    name = lambda model, unit: f"{model}:{unit}" if multi else unit  # noqa: E731
    if len(refused):
        (model, unit), _ = max(refused.groupby(["model", "unit"], observed=True).size().items(), key=lambda kv: kv[1])
        out["binding"] = name(model, unit)
    else:
        out["binding"] = "none"
    top = max(util, key=util.get) if util else None
    out["top_unit"] = name(*top) if top else ""
    out["top_util"] = util[top] if top else np.nan
    return out


def charged_by_model(records) -> dict[str, tuple[np.ndarray, dict[str, np.ndarray]]]:
    """Per model, the admitted requests' admission times (sorted) and what each charged, keyed by what the
    units count (``requests``, ``tokens``, ``audio_seconds``): what utilisation is measured from."""
    adm = records[records["admitted"].notna()].sort_values("admitted", kind="stable")
    return {model: (mine["admitted"].to_numpy(), {"requests": np.ones(len(mine)),
                                                   "tokens": mine["charged_tokens"].to_numpy(float),
                                                   "audio_seconds": mine["audio_seconds"].to_numpy(float)})
            for model, mine in adm.groupby(adm["model"].astype(str), sort=True)}


def utilisation(result: RunResult) -> dict[tuple[str, str], float]:
    """(model, unit) -> share of the unit's refill used by admissions in the measurement window."""
    spec, rec = result.spec, result.records
    t0, t1 = spec.warmup, spec.duration
    charged = charged_by_model(rec)
    out = {}
    for model in rec["model"].cat.categories:
        times, amounts = charged.get(model, (np.empty(0), None))
        in_window = (times >= t0) & (times < t1)
        for unit, limit in spec.catalog.limits(spec.org.tier, model).items():
            window, counts = UNIT_SPEC[unit]
            used = float(amounts[counts][in_window].sum()) if amounts else 0.0
            out[(model, unit)] = used / (limit * (t1 - t0) / window)
    return out


def token_cost(records, prices: dict[str, tuple[float, float]]) -> float:
    """Dollars for the successful requests: ``prices[model] = ($ per million input tokens,
    $ per million output tokens)``; models without a price cost nothing."""
    ok = records[records["outcome"] == "ok"]
    total = 0.0
    for model, group in ok.groupby(ok["model"].astype(str)):
        if model in prices:
            p_in, p_out = prices[model]
            total += (group["prompt_tokens"].sum() * p_in + group["completion_tokens"].sum() * p_out) / 1e6
    return float(total)
