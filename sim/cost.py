"""What a run's served requests cost, by lane: :mod:`sim.prices`' rules (successes only, cached input at the
cached price, nothing on a tier that does not bill), with the Batch API's rows at its discount (which does
not stack with prompt caching).  Expired batch requests, failures and refusals cost nothing.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .prices import BATCH_DISCOUNT
from .prices import request_costs as priced
from .spec import RunSpec


def request_costs(records: pd.DataFrame, spec: RunSpec) -> np.ndarray:
    """Dollars per request row of a run of ``spec``: 0 unless ``ok`` (or on a tier that does not bill); NaN
    for a success of a model without a price.  A ``service_tier`` column equal to ``batch`` marks the batch
    lane (without the column, every row is on-demand or flex: same price)."""
    billed = spec.catalog.bills(spec.org.tier)
    out = priced(records, spec.prices, billed=billed, cache_hit_ratio=spec.org.accounting.cache_hit_ratio)
    if "service_tier" in records:
        batch = (records["service_tier"] == "batch").to_numpy()
        if batch.any():
            out[batch] = priced(records[batch], spec.prices, billed=billed, batch_discount=BATCH_DISCOUNT)
    return out
