"""What a run's served requests cost, by lane: on-demand and flex at list price (cached input at half price),
the Batch API at half price on every token (the batch discount does not stack with prompt caching).

Only successful requests are billed: expired batch requests, failures and refusals cost nothing.

The price table below is a stop-gap, kept apart so it can be swapped for :mod:`sim.prices` (the project's
price data) by replacing :func:`price` -- nothing else here reads ``PRICES``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

#: USD per 1M (input, output) tokens, Groq's pricing page (copies of 2025-07-19 and about 2025-12)
PRICES: dict[str, tuple[float, float]] = {
    "llama-3.1-8b-instant": (0.05, 0.08),
    "llama-3.3-70b-versatile": (0.59, 0.79),
    "openai/gpt-oss-20b": (0.075, 0.30),
    "openai/gpt-oss-120b": (0.15, 0.60),
}
#: the Batch API's price as a share of on-demand (50 % off since mid-2025; 25 % off before)
BATCH_SHARE = 0.5
#: cached input tokens' price as a share of the input price (on-demand and flex only)
CACHED_INPUT_SHARE = 0.5


def price(model: str) -> tuple[float, float] | None:
    """($ per 1M input tokens, $ per 1M output tokens) of ``model`` on demand, or None if unknown."""
    return PRICES.get(model)


def request_costs(records: pd.DataFrame, cache_hit_ratio: float = 0.0) -> np.ndarray:
    """Dollars per request row: 0 unless ``ok``; NaN for a served request whose model has no price.  A
    ``service_tier`` column equal to ``batch`` marks the batch lane (without the column, all on-demand)."""
    out = np.zeros(len(records))
    ok = (records["outcome"] == "ok").to_numpy()
    batch = ((records["service_tier"] == "batch").to_numpy() if "service_tier" in records
             else np.zeros(len(records), bool))
    models = records["model"].astype(str).to_numpy()
    prompt = records["prompt_tokens"].to_numpy(float)
    completion = records["completion_tokens"].to_numpy(float)
    for model in np.unique(models[ok]):
        rows = ok & (models == model)
        p = price(model)
        if p is None:
            out[rows] = np.nan
            continue
        p_in, p_out = p[0] / 1e6, p[1] / 1e6
        on_demand = rows & ~batch
        cached = prompt[on_demand] * cache_hit_ratio
        out[on_demand] = ((prompt[on_demand] - cached) * p_in + cached * p_in * CACHED_INPUT_SHARE
                          + completion[on_demand] * p_out)
        b = rows & batch
        out[b] = (prompt[b] * p_in + completion[b] * p_out) * BATCH_SHARE
    return out
