"""Run records: one row per request, stored as typed columns while a run goes, a DataFrame after.

The outcome codes live here, low in the house, so the engine, summaries, reports, the emulator and the
validation all read the same list.  Knows nothing of summaries.
"""
from __future__ import annotations

import functools
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
    """One client group's per-request columns (``array`` buffers: about 100 bytes a request, no per-request
    Python objects).  Request ``i`` is row ``i``; :meth:`add` appends a block of new requests."""

    def __init__(self):
        d = lambda: array("d")  # noqa: E731
        self.n = 0
        self.created, self.audio = d(), d()
        self.prompt, self.max_tokens, self.completion = array("i"), array("i"), array("i")  # whole tokens
        self.charge, self.z_speed, self.z_queue = d(), d(), d()
        self.finished, self.admitted, self.qt, self.pt, self.ct = d(), d(), d(), d(), d()
        self.model, self.served, self.pos = array("b"), array("b"), array("b")  # wanted, last tried, chain pos
        self.attempts, self.n429 = array("h"), array("h")
        self.outcome, self.refused = array("b"), array("b")
        self.refusal_t, self.refusal_code = d(), array("h")  # 429 log: time, model * 8 + unit index
        #: log of the admitted attempts the client stopped waiting for (its ``timeout``): row, time sent, model,
        #: when the server finished it (see :meth:`timed_out`)
        self.to_row, self.to_t, self.to_model, self.to_end = array("i"), d(), array("b"), d()
        self.to_tier = array("b")  # (a lane run: the service tier that admitted it)
        #: lane columns (see :meth:`lane_columns`), None for a run that uses no lanes
        self.extra: dict[str, array] | None = None
        self.labels: dict[str, str] = {}
        self._tier0 = 0

    def lane_columns(self, tier: int, project: str, lane: str) -> None:
        """Keep the lane columns too: the service tier each request was served on or last tried (``tier``
        until then), its 498 count, the scope of its last refusal, how many of its 429s a project quota
        gave, its batch job (-1: none) and the job's submission time; and the group's project and lane as
        labels."""
        self.extra = {"tier": array("b", bytes([tier]) * self.n), "n498": array("h", bytes(2 * self.n)),
                      "scope": array("b", bytes(self.n)), "n429_project": array("h", bytes(2 * self.n)),
                      "job": array("i", [-1]) * self.n,
                      "submitted": array("d", [np.nan]) * self.n}
        self.labels, self._tier0 = {"project": project, "lane": lane}, tier

    #: the float columns a new block of requests brings, in the order :meth:`add` fills them
    GIVEN = ("created", "prompt", "max_tokens", "completion", "audio", "charge", "z_speed", "z_queue")

    def add(self, block: dict, model) -> None:
        """Append a block of requests: ``block`` maps each of :attr:`GIVEN` to an array (or to a function
        returning one, called when its turn comes); ``model`` are the requests' model indices.  Each array is
        copied in and dropped from ``block`` before the next is made, so a day of pre-sampled arrays is never
        held twice."""
        n = len(model)
        for name in self.GIVEN:
            values = block.pop(name)
            values = values() if callable(values) else values
            col = getattr(self, name)
            col.frombytes(_raw(np.ascontiguousarray(values, dtype=np.int32 if col.typecode == "i" else float)))
            del values
        nan = _raw(np.full(n, np.nan))
        for col in (self.finished, self.admitted, self.qt, self.pt, self.ct):
            col.frombytes(nan)
        codes = _raw(np.asarray(model, dtype=np.int8))
        self.model.frombytes(codes)
        self.served.frombytes(codes)
        zeros = bytes(n)
        self.pos.frombytes(zeros)
        self.refused.frombytes(zeros)
        self.outcome.frombytes(_raw(np.full(n, PENDING, dtype=np.int8)))
        self.attempts.frombytes(bytes(2 * n))
        self.n429.frombytes(bytes(2 * n))
        if self.extra is not None:
            x = self.extra
            x["tier"].frombytes(bytes([self._tier0]) * n)
            x["n498"].frombytes(bytes(2 * n))
            x["scope"].frombytes(bytes(n))
            x["n429_project"].frombytes(bytes(2 * n))
            x["job"].extend(array("i", [-1]) * n)
            x["submitted"].extend(array("d", [np.nan]) * n)
        self.n += n

    def timed_out(self, i: int, t: float, m: int, end: float) -> None:
        """Request ``i``'s attempt sent at ``t`` to model index ``m`` was admitted (and charged), but the client
        stopped waiting for it; the server finishes it at ``end``.  A later attempt overwrites the request's
        ``admitted``: this log keeps the charge (:func:`earlier_admissions`)."""
        self.to_row.append(i)
        self.to_t.append(t)
        self.to_model.append(m)
        self.to_end.append(end)
        if self.extra is not None:
            self.to_tier.append(self.extra["tier"][i])

    def release_scratch(self) -> None:
        """Free the columns only the run itself needs (service draws, wanted model, chain position) before
        the records are built: a day of them is tens of MB."""
        for name in ("z_speed", "z_queue", "model", "pos"):
            setattr(self, name, array(getattr(self, name).typecode))

    def nbytes(self) -> int:
        """Bytes held by the columns."""
        cols = [*vars(self).values(), *(self.extra or {}).values()]
        return sum(col.itemsize * len(col) for col in cols if isinstance(col, array))


def _raw(values: np.ndarray) -> memoryview:
    """The bytes of a contiguous array, without copying them."""
    return memoryview(values).cast("B")


def _col(a: array, dtype=float) -> np.ndarray:
    return np.frombuffer(a, dtype=dtype) if len(a) else np.empty(0, dtype)


def _lane_columns(c: Columns) -> dict:
    """The lane columns of one group (see :meth:`Columns.lane_columns`); tiers and scopes as codes."""
    x = c.extra
    return {"service_tier": _col(x["tier"], np.int8), "n498": _col(x["n498"], np.int16),
            "refused_scope": _col(x["scope"], np.int8), "n429_project": _col(x["n429_project"], np.int16),
            "job": _col(x["job"], np.int32),
            "submitted": _col(x["submitted"]),
            "project": np.full(c.n, c.labels["project"], dtype=object),
            "lane": np.full(c.n, c.labels["lane"], dtype=object)}


def _group_columns(c: Columns, index: int, lanes: bool) -> dict[str, np.ndarray]:
    """One group's record columns as arrays (views of the run's buffers where no arithmetic is needed);
    categorical columns as their codes."""
    outcome = _col(c.outcome, np.int8).copy()
    outcome[outcome == PENDING] = UNFINISHED
    created, finished = _col(c.created), _col(c.finished)
    pt, ct = _col(c.pt), _col(c.ct)
    return {
        "client": np.full(c.n, index, np.int8), "model": _col(c.served, np.int8),
        "created": created, "finished": finished, "latency": finished - created, "admitted": _col(c.admitted),
        "attempts": _col(c.attempts, np.int16), "n429": _col(c.n429, np.int16),
        "outcome": outcome, "refused_by": _col(c.refused, np.int8),
        "prompt_tokens": _col(c.prompt, np.int32), "max_tokens": _col(c.max_tokens, np.int32),
        "completion_tokens": _col(c.completion, np.int32), "audio_seconds": _col(c.audio),
        "charged_tokens": _col(c.charge),
        "queue_time": _col(c.qt), "prompt_time": pt, "completion_time": ct, "total_time": pt + ct,
        **(_lane_columns(c) if lanes else {}),
    }


def _merged(parts: list[dict[str, np.ndarray]], key: str) -> dict[str, np.ndarray]:
    """The groups' columns as one table in ``key`` order, ties in group order (each group's rows are in
    ``key`` order already).  One group: its own arrays, uncopied; else each column concatenated and put in
    order one at a time (never a second copy of the whole table)."""
    if len(parts) == 1:
        return parts[0]
    order = _order([p[key] for p in parts])
    return {name: np.concatenate([p[name] for p in parts])[order] for name in parts[0]}


def _order(keys: list[np.ndarray]) -> np.ndarray:
    """The order that merges the groups' ``keys`` (each sorted), ties in group order."""
    return np.argsort(np.concatenate(keys), kind="stable")


def _frame(data: dict[str, np.ndarray], categories: dict[str, tuple]) -> pd.DataFrame:
    for name, cats in categories.items():
        if name in data:
            data[name] = pd.Categorical.from_codes(data[name], dtype=_categories(tuple(cats)))
    return pd.DataFrame(copy=False, data=data)  # copy=False: the columns stay views of the arrays


@functools.lru_cache(maxsize=256)
def _categories(values: tuple) -> pd.CategoricalDtype:
    """The dtype of a categorical column with these categories, made once: building it (an index of the
    categories, checked unique) was nearly all of a column's conversion, ~2 ms of each short run."""
    return pd.CategoricalDtype(values)


def frames(groups: list[Columns], client_names: list[str], model_names: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The request records (sorted by creation time, then client group) and the 429 log of a run.  A run
    with lanes adds ``service_tier``, ``n498``, ``refused_scope``, ``n429_project``, ``job``, ``submitted``,
    ``project`` and ``lane``.  A batch request is never ``admitted`` (no org limit sees it): its job's
    ``submitted`` time says when it entered the lane."""
    lanes = any(c.extra is not None for c in groups)
    records = _merged([_group_columns(c, k, lanes) for k, c in enumerate(groups)], "created")
    rec = _frame(records, {"client": client_names, "model": model_names, "outcome": OUTCOMES,
                           "refused_by": REFUSED_BY, "service_tier": LANE_TIERS, "refused_scope": REFUSED_SCOPES})
    del records
    if lanes:
        for col in ("project", "lane"):
            rec[col] = rec[col].astype("category")
    rec.insert(0, "id", np.arange(len(rec), dtype=np.int64))
    refusals = []
    for k, c in enumerate(groups):
        code = _col(c.refusal_code, np.int16)
        refusals.append({"time": _col(c.refusal_t), "client": np.full(len(code), k, np.int8),
                         "model": (code // 8).astype(np.int8), "unit": (code % 8).astype(np.int8)})
    ref = _frame(_merged(refusals, "time"), {"client": client_names, "model": model_names, "unit": REFUSED_BY})
    return rec, ref


def earlier_admissions(groups: list[Columns], client_names: list[str], model_names: list[str]) -> pd.DataFrame:
    """The admissions the records do not show: a request's ``admitted`` is its last admission's time, and an
    earlier attempt was admitted (and charged) only if the client then stopped waiting for it (its
    ``timeout``) and tried again.  One row each, in the order they were sent: ``client``, ``model``,
    ``admitted`` (when it was sent and charged), ``finished`` (when the server finished it: a refund of its
    unused reservation comes then), ``request`` (its request's ``id`` in the records, :func:`frames`), and the
    request's ``charged_tokens``, ``audio_seconds``, ``prompt_tokens``, ``max_tokens`` and ``completion_tokens``
    (and ``service_tier``, the tier that admitted it, in a lane run)."""
    lanes = any(c.extra is not None for c in groups)
    sizes = [len(c.created) for c in groups]
    ids = None  # a group's row -> its record's id (its position in frames): one group's are its rows
    if len(groups) > 1 and any(len(c.to_row) for c in groups):  # (most runs time nothing out: no sort then)
        ids = np.empty(sum(sizes), np.int64)
        ids[_order([_col(c.created) for c in groups])] = np.arange(len(ids))
    parts = []
    first = 0  # the group's first row among all the groups' rows
    for k, c in enumerate(groups):
        rows, sent = _col(c.to_row, np.int32), _col(c.to_t)
        keep = sent != _col(c.admitted)[rows]  # (the last admission is the record's own)
        rows = rows[keep]
        part = {"client": np.full(len(rows), k, np.int8), "model": _col(c.to_model, np.int8)[keep],
                "admitted": sent[keep], "finished": _col(c.to_end)[keep],
                "request": (rows if ids is None else ids[first + rows]).astype(np.int64),
                "charged_tokens": _col(c.charge)[rows], "audio_seconds": _col(c.audio)[rows],
                "prompt_tokens": _col(c.prompt, np.int32)[rows], "max_tokens": _col(c.max_tokens, np.int32)[rows],
                "completion_tokens": _col(c.completion, np.int32)[rows]}
        first += sizes[k]
        if lanes:
            part["service_tier"] = (_col(c.to_tier, np.int8)[keep] if c.extra is not None
                                    else np.zeros(len(rows), np.int8))
        parts.append(part)
    return _frame(_merged(parts, "admitted"), {"client": client_names, "model": model_names,
                                               "service_tier": LANE_TIERS})


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
    #: (model, unit) a pacing client's own limit set last waited on, one per paced model, in client order
    paced_by: tuple[tuple[str, str], ...] = ()
    #: (model, unit) of the on-demand limits whose refusals sent ``auto`` attempts to a 498, most first
    spilled_by: tuple[tuple[str, str], ...] = ()
    #: the admissions the records do not show (:func:`earlier_admissions`: attempts admitted and charged, then
    #: given up by the client's ``timeout`` and tried again); None for a result built from records alone
    earlier_admissions: pd.DataFrame | None = None
