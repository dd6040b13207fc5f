"""Per client group summaries of a run: :func:`sim.summary.summarize` over each group's own requests.

Several client groups ("apps") sharing an org's limits are added up by the run's summary, which can hide one
app served far worse than the others.  A group's row has the run summary's metrics with the same definitions
(its success, latency, 429s, cost, outcome counts and lane metrics), read on its requests and its 429s; the
metrics of the org's limits as a whole (``util_*``, ``top_*``, ``binding``) are left out: a group does not own
them.
"""
from __future__ import annotations

from dataclasses import replace

from .records import RunResult
from .summary import summarize

#: summary metrics of the org's limits as a whole, not of one group's requests
ORG_WIDE = ("top_unit", "top_util", "binding")


def client_summaries(result: RunResult) -> list[dict]:
    """One summary per client group of ``result.spec``, in scenario order (a group that sent nothing in the
    window too: its ratios are NaN), each ``{"client": name, **metrics}``."""
    rec = result.records
    none = result.refusals.iloc[:0]  # (the 429 log gives only ``binding``, which is the org's, left out)
    rows = []
    for client in result.spec.clients:
        mine = replace(result, records=rec[(rec["client"] == client.name).to_numpy()], refusals=none,
                       jobs=None, paced_by=(), spilled_by=())
        summary = summarize(mine)
        rows.append({"client": client.name, **{k: v for k, v in summary.items()
                                               if k not in ORG_WIDE and not k.startswith("util_")}})
    return rows
