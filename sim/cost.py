"""What a run's served requests cost, by lane: :mod:`sim.prices`' rules (successes only, cached input at the
cached price, nothing on a tier that does not bill), with the Batch API's rows at its discount (which does
not stack with prompt caching).  Expired batch requests, failures and refusals cost nothing; attempts the
client's timeout gave up on cost nothing unless ``org.accounting.bill_timed_out`` (:func:`timed_out_cost`).
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


def timed_out_cost(spec: RunSpec, records: pd.DataFrame, earlier: pd.DataFrame | None, rows: np.ndarray) -> float:
    """Dollars billed for the attempts the client's ``timeout`` gave up on (the server finished them:
    ``earlier``, a run's :attr:`~sim.records.RunResult.earlier_admissions`) of the requests that the mask
    ``rows`` selects in ``records`` (a run's, or a subset of them, by their ``id``): with
    ``org.accounting.bill_timed_out`` each is priced as a success of the attempt's model with its request's
    tokens (NaN for an unpriced model, as a success's); without it, 0."""
    if not spec.org.accounting.bill_timed_out or earlier is None or not len(earlier) or not len(rows):
        return 0.0
    ids, request = records["id"].to_numpy(), earlier["request"].to_numpy()
    known = np.isin(request, ids)  # (attempts of requests in these records)
    mine = np.zeros(len(request), bool)
    mine[known] = rows[np.searchsorted(ids, request[known])]  # (ids ascend: records keep creation order)
    attempts = earlier[mine]
    served = pd.DataFrame({"model": attempts["model"].astype(str), "outcome": "ok",
                           **{col: attempts[col].to_numpy() for col in ("prompt_tokens", "completion_tokens",
                                                                      "audio_seconds")}})
    return float(request_costs(served, spec).sum())
