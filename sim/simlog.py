"""A simulator run exported as a recorder log (:mod:`sim.recorder`'s JSONL format), one line per attempt.

``groqsim simlog SCENARIO -o LOG.jsonl`` runs one grid point of a scenario with a watcher
(:func:`sim.engine.simulate`'s ``watch``) and writes every attempt that reached a limit set as the line a
recorder would have written for it, so the calibrator (``groqsim calibrate``) and the trace export
(``groqsim trace``) can be checked against runs whose every parameter is known.

What a line holds, all from the simulator's own pieces:

* ``headers``, 429 and 413 bodies: :func:`sim.headers.rate_limit_headers` and
  :func:`sim.headers.rate_limit_error` on the run's own :class:`~sim.limitset.LimitSet`, computed at the
  moment the attempt's charge was decided (``retry-after`` with the org's rounding; the free tier's
  "Upgrade to Dev Tier" hint; the service tier whose limits refused, as Groq's message names it).  A 429 or
  413 body states the request's charge ("Requested"): the watcher reads it from the client group's columns.
* ``usage`` of an admitted chat attempt: the records' ``queue_time``, ``prompt_time`` and ``completion_time``,
  ``total_time = prompt_time + completion_time`` (queue apart, as Groq reports it), prompt and completion
  tokens.  Transcriptions carry no ``usage`` (as the emulator's).
* ``retry_count``: 0 for a request's first attempt, k for its k-th retry; ``service_tier``: the tier whose
  limits answered (``on_demand`` or ``flex``); ``label``: the client group's name;
  ``request_id``: ``req_sim_<group>_<row>_<attempt>``.  No text: the simulator has none.

Times.  Simulation time 0 is ``start`` (a UTC midnight, default 2026-11-02), so the limiters' calendar windows
(a fixed window's minutes and days) fall where a calibration replaying the log puts them.  The simulator
decides an attempt at the instant it is sent and the client hears the answer one round trip later; in the
log the server's decision sits half the round trip after ``t_send``, as on a real network (and as the
calibrator assumes): ``t_send = start + now - rtt/2`` and ``t_recv = t_send + rtt`` for a refusal,
``+ queue_time + total_time`` for an answer -- every duration is the simulator's.

Not in the log: attempts that never reach a limit set (injected 5xx errors, flex 498s, the Batch lane);
a request that had such an attempt counts only its logged attempts in ``retry_count``.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np

from .engine import Simulation
from .errors import ConfigError
from .headers import rate_limit_error, rate_limit_headers
from .recorder import CHAT, TRANSCRIPTIONS, LogWriter
from .records import LANE_TIERS
from .spec import RunSpec
from .units import usage_times

#: the default day whose UTC midnight is simulation time 0
START = date(2026, 11, 2)
ORG_ID = "org_groqsim"


@dataclass
class SimLog:
    """The log lines of one run (in the order the client received them) and the run's result."""
    lines: list[dict]
    result: object  # sim.records.RunResult
    unlogged: int   # attempts that reached no limit set (5xx injected, 498, batch): not in the log

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        try:
            with LogWriter(path, "w") as w:
                for line in self.lines:
                    w.write(line)
        except OSError as exc:
            raise ConfigError(f"{path}: cannot write the log ({exc.strerror})") from None
        return path


def _epoch(start: date | str) -> float:
    try:
        day = start if isinstance(start, date) else date.fromisoformat(str(start))
    except ValueError:
        raise ConfigError(f"start {start!r}: allowed: a date like 2026-11-02 (its UTC midnight is time 0)") from None
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


def _row_index(records) -> dict[tuple[int, int], int]:
    """(group, row of the group's columns) -> row of the records frame.  The records are the groups'
    columns sorted by (created, group), stably, and each group's requests are created in order."""
    codes = records["client"].cat.codes.to_numpy()
    index: dict[tuple[int, int], int] = {}
    for g in np.unique(codes):
        rows = np.flatnonzero(codes == g)
        index.update({(int(g), k): int(r) for k, r in enumerate(rows)})
    return index


def simulate_log(spec: RunSpec, seed: int | np.random.SeedSequence = 0, start: date | str = START) -> SimLog:
    """Run ``spec`` with ``seed`` and return its attempts as recorder log lines (see the module docstring)."""
    epoch = _epoch(start)
    org = spec.org
    hint = org.tier == "free"
    seen: list[tuple] = []
    attempts: dict[tuple[int, int], int] = {}

    def watch(group, m, limits, now, i, wait, rtt):
        g = group.index
        k = attempts.get((g, i), 0)
        attempts[(g, i)] = k + 1
        # the service tier whose limits answered (a routed group's lane columns say which it tried)
        tier = LANE_TIERS[group.extra["tier"][i]] if group.extra is not None else "on_demand"
        if wait == 0.0:
            seen.append((g, i, k, m, now, rtt, 200, rate_limit_headers(limits, now), None, tier))
            return
        # the 429/413 is written now, while the limit set is in the refusal's state; it states the charge and
        # names the service tier whose limits refused
        err = rate_limit_error(limits, sim.model_names[m], ORG_ID, group.charge[i], group.audio[i], now, wait,
                               service_tier=tier, upgrade_hint=hint, rounding=org.retry_after_rounding)
        seen.append((g, i, k, m, now, rtt, err.status, err.headers, err.error, tier))

    sim = Simulation(spec, seed, watch=watch)  # (the run copies a SeedSequence it is given)
    result = sim.run()
    index = _row_index(result.records)
    out = result.records
    names = list(out["client"].cat.categories)
    cols = {c: out[c].to_numpy() for c in ("prompt_tokens", "max_tokens", "completion_tokens", "audio_seconds",
                                           "queue_time", "prompt_time", "completion_time")}
    lines = []
    for g, i, k, m, now, rtt, status, headers, error, tier in seen:
        row = index[(g, i)]
        a = float(cols["audio_seconds"][row])
        t_send = epoch + now - rtt / 2
        t_recv = t_send + rtt
        usage = None
        if status == 200:
            times = [float(cols[x][row]) for x in ("queue_time", "prompt_time", "completion_time")]
            t_recv += sum(times)
            if not a:  # the times as Groq writes them: to the nanosecond, total = prompt + completion as written
                q, p, c, total = usage_times(times)
                prompt, completion = int(cols["prompt_tokens"][row]), int(cols["completion_tokens"][row])
                usage = {"queue_time": q, "prompt_tokens": prompt, "prompt_time": p, "completion_tokens": completion,
                         "completion_time": c, "total_tokens": prompt + completion, "total_time": total}
        lines.append({
            "t_send": t_send, "t_recv": t_recv, "status": int(status), "model": sim.model_names[m],
            "endpoint": TRANSCRIPTIONS if a else CHAT,
            "max_tokens": None if a else int(cols["max_tokens"][row]), "audio_seconds": a or None,
            "usage": usage, "headers": dict(headers),
            "error": None if error is None else {k2: error.get(k2) for k2 in ("type", "code", "message")},
            "label": names[g], "request_id": f"req_sim_{g}_{i}_{k}", "retry_count": k, "service_tier": tier})
    lines.sort(key=lambda x: x["t_recv"])
    unlogged = int(out["attempts"].sum()) - len(lines)
    return SimLog(lines, result, unlogged)
