"""Groq's rate-limit response headers, produced from a :class:`~sim.limitset.LimitSet`'s state.

Per Groq's docs: ``x-ratelimit-*-requests`` always refer to RPD and ``x-ratelimit-*-tokens`` to TPM; they
are sent on every response; ``retry-after`` (whole seconds) only on a 429.  Remaining budgets are rounded
down to integers; reset durations are written like ``2m59.56s`` (see :func:`sim.units.format_reset`).
A model without an RPD (or TPM) limit gets no request (or token) headers.
"""
from __future__ import annotations

import math

from .limitset import LimitSet
from .units import format_reset, parse_duration

RETRY_AFTER_ROUNDING = ("ceil", "round", "floor")


def retry_after_seconds(wait: float, rounding: str = "ceil") -> int:
    """The whole-second ``retry-after`` for a wait.  ``ceil`` (default) never tells a client to come back
    before it would be admitted; ``round``/``floor`` are alternatives for studying early retries.
    Never below 1 on a 429: a retry-after of 0 would tell clients to hammer."""
    if rounding == "ceil":
        value = math.ceil(wait - 1e-9)
    elif rounding == "round":
        value = math.floor(wait + 0.5)
    elif rounding == "floor":
        value = math.floor(wait)
    else:
        raise ValueError(f"retry_after rounding {rounding!r} (allowed: {', '.join(RETRY_AFTER_ROUNDING)})")
    return max(1, int(value))


def rate_limit_headers(limits: LimitSet, now: float, wait: float | None = None,
                       rounding: str = "ceil") -> dict[str, str]:
    """The headers Groq sends at ``now``; pass the refusal's ``wait`` to add ``retry-after`` (a 429)."""
    h: dict[str, str] = {}
    for unit, suffix in (("rpd", "requests"), ("tpm", "tokens")):
        lim = limits.units.get(unit)
        if lim is None:
            continue
        h[f"x-ratelimit-limit-{suffix}"] = str(int(lim.limit))
        h[f"x-ratelimit-remaining-{suffix}"] = str(int(math.floor(lim.remaining(now) + 1e-9)))
        h[f"x-ratelimit-reset-{suffix}"] = format_reset(lim.reset(now))
    if wait is not None and math.isfinite(wait):
        h["retry-after"] = str(retry_after_seconds(wait, rounding))
    return h


def parse_reset(value: str) -> float:
    """Seconds from a reset header value (``2m59.56s`` -> 179.56)."""
    return parse_duration(value)


def retry_after_function(rounding: str = "ceil"):
    """``retry_after_seconds`` with the rounding fixed, as a fast one-argument function (the engine's hot
    path calls it on every 429)."""
    if rounding == "ceil":
        def ceil(wait: float, _ceil=math.ceil) -> int:
            value = _ceil(wait - 1e-9)
            return value if value > 1 else 1
        return ceil
    if rounding not in RETRY_AFTER_ROUNDING:
        raise ValueError(f"retry_after rounding {rounding!r} (allowed: {', '.join(RETRY_AFTER_ROUNDING)})")
    return lambda wait: retry_after_seconds(wait, rounding)


def observe(limits: LimitSet, now: float) -> tuple:
    """What the rate-limit headers tell a client at ``now``, as numbers before formatting:
    ``(now, RPD remaining, RPD limit, RPD reset s, TPM remaining, TPM limit, TPM reset s)``; a unit the
    model does not have reads as an unlimited budget (``inf``, ``inf``, 0)."""
    obs = [now]
    for unit in ("rpd", "tpm"):
        lim = limits.units.get(unit)
        obs += [lim.remaining(now), lim.limit, lim.reset(now)] if lim else [math.inf, math.inf, 0.0]
    return tuple(obs)
