"""The organization's limits on one model, from headers and 429/413 messages, matched to the catalog.

``x-ratelimit-limit-requests`` is always RPD and ``x-ratelimit-limit-tokens`` always TPM; every other unit is
seen only when a 429 or 413 names it ("on requests per minute (RPM): Limit 30").  A unit never seen is
unknown: the calibrated tier inherits it from the closest published tier, and the report says so.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from ..catalog import UNITS, Catalog, Limits
from .evidence import mode_value

PUBLISHED_TIERS = ("free", "developer")


@dataclass
class Observed:
    value: int
    source: str      # "headers" or "429 messages"
    n: int           # responses that showed it
    conflicts: int   # distinct other values seen


@dataclass
class LimitsFit:
    model: str
    observed: dict[str, Observed] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def fit_limits(df: pd.DataFrame, model: str) -> LimitsFit:
    fit = LimitsFit(model)
    for unit, col in (("rpd", "h_limit_req"), ("tpm", "h_limit_tok")):
        value, n, distinct = mode_value(df[col])
        if value is not None:
            fit.observed[unit] = Observed(int(value), "headers", n, distinct - 1)
            if distinct > 1:
                fit.notes.append(f"{unit.upper()} header changed during the log ({distinct} values); "
                                 f"kept the most frequent, {int(value)}")
    for unit, rows in df[df["msg_unit"].notna()].groupby("msg_unit"):
        value, n, distinct = mode_value(rows["msg_limit"])
        if value is None:
            continue
        if unit in fit.observed and fit.observed[unit].value != int(value):
            fit.notes.append(f"{unit.upper()}: headers say {fit.observed[unit].value}, messages say {int(value)}; "
                             "kept the headers'")
            continue
        if unit not in fit.observed:
            fit.observed[unit] = Observed(int(value), "429 messages", n, distinct - 1)
    return fit


@dataclass
class TierMatch:
    base: str | None                     # the closest published tier (None: the model is in none)
    overrides: dict[str, dict[str, int]]  # model -> unit -> observed value differing from base
    sentence: str
    unknown: dict[str, list[str]]        # model -> units inherited from base, never observed
    per_tier: dict[str, tuple[int, int, float]]  # tier -> (matching units, compared units, sum |log ratio|)


def _ratio_text(observed: int, published: int) -> str:
    r = observed / published
    return f"{r:.3g}x" if abs(r - round(r)) > 0.005 or r < 1 else f"{round(r)}x"


def match_catalog(fits: list[LimitsFit], catalog: Catalog | None = None) -> TierMatch:
    """The published tier closest to every model's observed limits, and what differs from it."""
    catalog = catalog or Catalog.published()
    per_tier: dict[str, tuple[int, int, float]] = {}
    for tier in PUBLISHED_TIERS:
        match = compared = 0
        dist = 0.0
        for fit in fits:
            limits = catalog.tiers.get(tier, {}).get(fit.model)
            for unit, obs in fit.observed.items():
                compared += 1
                published = getattr(limits, unit) if limits else None
                if published == obs.value:
                    match += 1
                else:
                    dist += abs(math.log(obs.value / published)) if published else 10.0
        per_tier[tier] = (match, compared, dist)
    observed_any = any(f.observed for f in fits)
    known = [t for t in PUBLISHED_TIERS if any(f.model in catalog.tiers.get(t, {}) for f in fits)]
    if not observed_any or not known:
        base = known[0] if known else None
        why = "no limit was observed" if not observed_any else "no model of the log is in the published table"
        return TierMatch(base, {f.model: {u: o.value for u, o in f.observed.items()} for f in fits if f.observed},
                         f"tier unknown: {why}", {}, per_tier)
    base = max(known, key=lambda t: (per_tier[t][0], -per_tier[t][2]))
    overrides: dict[str, dict[str, int]] = {}
    diffs, unknown = [], {}
    for fit in fits:
        limits = catalog.tiers[base].get(fit.model, Limits())
        for unit, obs in fit.observed.items():
            published = getattr(limits, unit)
            if published != obs.value:
                overrides.setdefault(fit.model, {})[unit] = obs.value
                where = f"{fit.model} " if len(fits) > 1 else ""  # two models' RPD would read alike
                diffs.append(f"{where}{unit.upper()} {_ratio_text(obs.value, published)}" if published
                             else f"{where}{unit.upper()} {obs.value} (not in the published {base} tier)")
        unknown[fit.model] = [u for u in UNITS if getattr(limits, u) is not None and u not in fit.observed]
    if not diffs:
        sentence = f"matches the published {base} tier on every observed limit"
    else:
        sentence = f"{base}, except {', '.join(dict.fromkeys(diffs))}: a custom tier"
    return TierMatch(base, overrides, sentence, unknown, per_tier)
