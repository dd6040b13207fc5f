"""Run records: one row per request, stored as typed columns while a run goes, a DataFrame after.

The outcome codes live here, low in the house, so the engine, summaries, reports, the emulator and the
validation all read the same list.  Knows nothing of summaries.
"""
from __future__ import annotations

from array import array
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .catalog import UNITS
from .projects import SCOPES
from .spec import RunSpec

OUTCOMES = ("ok", "gave_up", "too_large", "deadline", "dropped", "error", "unfinished", "expired")
OK, GAVE_UP, TOO_LARGE, DEADLINE, DROPPED, ERROR, UNFINISHED, EXPIRED = range(8)
PENDING = -1
REFUSED_BY = ("",) + UNITS  # records store the index: 0 = never refused
UNIT_INDEX = {u: k + 1 for k, u in enumerate(UNITS)}
#: a lane run's ``service_tier`` and ``refused_scope`` categories (codes as :mod:`sim.lanes` writes them)
LANE_TIERS = ("on_demand", "flex", "batch")
REFUSED_SCOPES = SCOPES


class Columns:
    """One client group's per-request columns (``array`` buffers: about 120 bytes a request, no per-request
    Python objects).  Request ``i`` is row ``i``; :meth:`add` appends a block of new requests."""

    def __init__(self):
        d = lambda: array("d")  # noqa: E731
        self.n = 0
        self.created, self.prompt, self.max_tokens, self.completion, self.audio = d(), d(), d(), d(), d()
        self.charge, self.z_speed, self.z_queue = d(), d(), d()
        self.finished, self.admitted, self.qt, self.pt, self.ct = d(), d(), d(), d(), d()
        self.model, self.served, self.pos = array("b"), array("b"), array("b")  # wanted, last tried, chain pos
        self.attempts, self.n429 = array("h"), array("h")
        self.outcome, self.refused = array("b"), array("b")
        self.refusal_t, self.refusal_code = d(), array("h")  # 429 log: time, model * 8 + unit index
        #: lane columns (see :meth:`lane_columns`), None for a run that uses no lanes
        self.extra: dict[str, array] | None = None
        self.labels: dict[str, str] = {}
        self._tier0 = 0

    def lane_columns(self, tier: int, project: str, lane: str) -> None:
        """Keep the lane columns too: the service tier each request was served on or last tried (``tier``
        until then), its 498 count, the scope of its last refusal, its batch job (-1: none) and the job's
        submission time; and the group's project and lane as labels."""
        self.extra = {"tier": array("b", bytes([tier]) * self.n), "n498": array("h", bytes(2 * self.n)),
                      "scope": array("b", bytes(self.n)), "job": array("i", [-1]) * self.n,
                      "submitted": array("d", [np.nan]) * self.n}
        self.labels, self._tier0 = {"project": project, "lane": lane}, tier

    def add(self, created, sz: dict, charge, model, z_speed, z_queue) -> None:
        """Append a block of requests: arrival times, sizes (``prompt``, ``max_tokens``, ``completion``,
        ``audio``), tokens charged, model indices and the service's standard-normal draws."""
        n = len(created)
        for col, values in ((self.created, created), (self.prompt, sz["prompt"]), (self.max_tokens, sz["max_tokens"]),
                            (self.completion, sz["completion"]), (self.audio, sz["audio"]), (self.charge, charge),
                            (self.z_speed, z_speed), (self.z_queue, z_queue)):
            col.frombytes(np.ascontiguousarray(values, dtype=float).tobytes())
        nan = np.full(n, np.nan).tobytes()
        for col in (self.finished, self.admitted, self.qt, self.pt, self.ct):
            col.frombytes(nan)
        self.model.frombytes(np.asarray(model, dtype=np.int8).tobytes())
        zeros = bytes(n)
        self.pos.frombytes(zeros)
        self.served.frombytes(np.asarray(model, dtype=np.int8).tobytes())
        self.refused.frombytes(zeros)
        self.outcome.frombytes(np.full(n, PENDING, dtype=np.int8).tobytes())
        self.attempts.frombytes(bytes(2 * n))
        self.n429.frombytes(bytes(2 * n))
        if self.extra is not None:
            x = self.extra
            x["tier"].frombytes(bytes([self._tier0]) * n)
            x["n498"].frombytes(bytes(2 * n))
            x["scope"].frombytes(bytes(n))
            x["job"].extend(array("i", [-1]) * n)
            x["submitted"].extend(array("d", [np.nan]) * n)
        self.n += n

    def nbytes(self) -> int:
        """Bytes held by the columns."""
        cols = [*vars(self).values(), *(self.extra or {}).values()]
        return sum(col.itemsize * len(col) for col in cols if isinstance(col, array))


def _col(a: array, dtype=float) -> np.ndarray:
    return np.frombuffer(a, dtype=dtype) if len(a) else np.empty(0, dtype)


def _lane_frame(c: Columns) -> dict:
    """The lane columns of one group (see :meth:`Columns.lane_columns`)."""
    x = c.extra
    return {"service_tier": _col(x["tier"], np.int8), "n498": _col(x["n498"], np.int16),
            "refused_scope": _col(x["scope"], np.int8), "job": _col(x["job"], np.int32),
            "submitted": _col(x["submitted"]),
            "project": np.full(c.n, c.labels["project"], dtype=object),
            "lane": np.full(c.n, c.labels["lane"], dtype=object)}


def frames(groups: list[Columns], client_names: list[str], model_names: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The request records (sorted by creation time, then client group) and the 429 log of a run.  A run
    with lanes adds ``service_tier``, ``n498``, ``refused_scope``, ``job``, ``submitted``, ``project`` and
    ``lane``.  A batch request is never ``admitted`` (no org limit sees it): its job's ``submitted`` time says
    when it entered the lane."""
    records, refusals = [], []
    lanes = any(c.extra is not None for c in groups)
    for index, c in enumerate(groups):
        outcome = _col(c.outcome, np.int8).copy()
        outcome[outcome == PENDING] = UNFINISHED
        created, finished = _col(c.created), _col(c.finished)
        qt, pt, ct = _col(c.qt), _col(c.pt), _col(c.ct)
        records.append(pd.DataFrame({
            "client": pd.Categorical.from_codes(np.full(c.n, index, np.int8), client_names),
            "model": _col(c.served, np.int8),
            "created": created, "finished": finished, "latency": finished - created,
            "admitted": _col(c.admitted),
            "attempts": _col(c.attempts, np.int16), "n429": _col(c.n429, np.int16),
            "outcome": pd.Categorical.from_codes(outcome, OUTCOMES),
            "refused_by": pd.Categorical.from_codes(_col(c.refused, np.int8), REFUSED_BY),
            "prompt_tokens": _col(c.prompt).astype(np.int32), "max_tokens": _col(c.max_tokens).astype(np.int32),
            "completion_tokens": _col(c.completion).astype(np.int32), "audio_seconds": _col(c.audio),
            "charged_tokens": _col(c.charge),
            "queue_time": qt, "prompt_time": pt, "completion_time": ct, "total_time": qt + pt + ct,
            **(_lane_frame(c) if lanes else {}),
        }))
        code = _col(c.refusal_code, np.int16)
        refusals.append(pd.DataFrame({
            "time": _col(c.refusal_t),
            "client": pd.Categorical.from_codes(np.full(len(c.refusal_t), index, np.int8), client_names),
            "model": (code // 8).astype(np.int8),
            "unit": pd.Categorical.from_codes((code % 8).astype(np.int8), REFUSED_BY)}))
    rec = pd.concat(records, ignore_index=True)
    rec["model"] = pd.Categorical.from_codes(rec["model"].to_numpy(np.int8), model_names)
    if lanes:
        rec["service_tier"] = pd.Categorical.from_codes(rec["service_tier"].to_numpy(np.int8), LANE_TIERS)
        rec["refused_scope"] = pd.Categorical.from_codes(rec["refused_scope"].to_numpy(np.int8), REFUSED_SCOPES)
        for col in ("project", "lane"):
            rec[col] = rec[col].astype("category")
    if len(records) > 1:  # one client's requests are already in creation order: no copy needed
        rec = rec.sort_values(["created", "client"], kind="stable", ignore_index=True)
    rec.insert(0, "id", np.arange(len(rec), dtype=np.int64))
    ref = pd.concat(refusals, ignore_index=True).sort_values("time", kind="stable", ignore_index=True)
    ref["model"] = pd.Categorical.from_codes(ref["model"].to_numpy(np.int8), model_names)
    return rec, ref


@dataclass
class RunResult:
    """One run's request records (one row per request), 429 log, spec and event count."""
    records: pd.DataFrame
    refusals: pd.DataFrame
    spec: RunSpec
    events: int = 0
    #: batch jobs (one row per job: client, job, submitted, requests, bytes, started, speed, completed,
    #: failed, expired, finished, status, completion_time); None when no client group uses the batch lane
    jobs: pd.DataFrame | None = None
