"""Which limits an attempt must pass: service tier (on-demand, flex, auto), project scope, or the batch lane.

The engine hands an attempt of a routed client group to its :class:`Route` (client groups that use none
of this keep the engine's direct path to the org's on-demand limit set) and a batch-lane group's requests
to :meth:`Lanes.run_batch`.  The limit sets are org-level and shared, kept in a
:class:`~sim.limitbook.LimitBook` (the emulator keeps its own in one too):

* on-demand: the engine's own limit set per model;
* flex: one set per model at the on-demand limits x ``[org.flex] multiplier``, apart from on-demand;
* a project that overrides a model's limits: its own set per (project, tier, model) -- under flex its
  limits are multiplied like the org's -- checked with the org's through a
  :class:`~sim.projects.ScopedLimits` (all-or-nothing across both);
* batch: none of these (the lane has its own, :mod:`sim.batch`).

``auto`` tries the on-demand limits first and, if they refuse, flex; a refusal by both reports the shorter
wait (the earliest either would admit).  A flex attempt first meets the capacity process
(:mod:`sim.flex`): a 498 charges nothing.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from . import batch
from .catalog import UNITS
from .errors import ConfigError, did_you_mean
from .flex import CapacityProcess
from .limitbook import AUTO, FLEX, MODES, ON_DEMAND, LimitBook
from .limitset import LimitSet
from .projects import PROJECT, SCOPES
from .records import ERROR, EXPIRED, LANE_TIERS, OK
from .spec import RunSpec
from .workload import FAULTS, Uniforms

#: the service tier a request was served on (or last tried), as kept in the records
TIERS = LANE_TIERS
BATCH = 2  # after the limit book's ON_DEMAND and FLEX
_SCOPE = {s: k for k, s in enumerate(SCOPES)}


def uses_lanes(spec: RunSpec) -> bool:
    """Does this run use a service tier other than on-demand, projects or the batch lane?  (If not, the
    engine runs exactly as without this module.)"""
    return (spec.lane_report or spec.org.service_tier != "on_demand" or bool(spec.projects)
            or any(c.lane != "on_demand" or (c.service_tier or "on_demand") != "on_demand" or c.project
                   for c in spec.clients))


class Lanes:
    """One run's lanes: the flex and project limit sets, the flex capacity process and the batch jobs."""

    def __init__(self, spec: RunSpec, limitsets: list[LimitSet], model_names: list[str],
                 seed: np.random.SeedSequence):
        self.spec, self.limitsets, self.model_names = spec, limitsets, model_names
        timeline, draws = seed.spawn(2)
        self.capacity = CapacityProcess(spec.org.flex, np.random.default_rng(timeline), spec.duration + spec.drain)
        self.u = Uniforms(np.random.default_rng(draws))
        self.book = LimitBook(spec.org, spec.projects, limitsets.__getitem__, model_names.__getitem__)
        self.jobs: list = []
        #: (model index, unit) of the on-demand limit that sent an ``auto`` attempt to flex, where flex's
        #: capacity then answered 498 -> count (the limit that held those requests back: no 429 names it)
        self.spilled: dict[tuple[int, str], int] = {}

    def spilled_by(self) -> tuple[tuple[str, str], ...]:
        """(model, unit) of the on-demand limits whose refusals ended in a 498 on ``auto``, most first; on a tie
        in the run's model order, then the catalog's unit order (RPM, RPD, TPM, ...), as the 429s' binding."""
        ranked = sorted(self.spilled.items(), key=lambda kv: (-kv[1], kv[0][0], UNITS.index(kv[0][1])))
        return tuple((self.model_names[m], unit) for (m, unit), _ in ranked)

    def limits(self, project: str | None, tier: int, m: int):
        """The limits an attempt of ``project`` on tier ``tier`` and model index ``m`` must pass."""
        return self.book.limits(project, tier, m)

    def route(self, cfg) -> "Route | None":
        """A client group's route (None for a batch-lane group: :meth:`run_batch` serves it).  Its project, if
        any, must be one of the run's, whatever its lane."""
        if cfg.project is not None and cfg.project not in self.spec.projects:  # (a batch group's too)
            raise ConfigError(did_you_mean(cfg.project, self.spec.projects, f"project of client {cfg.name!r}:"))
        if cfg.lane == "batch":
            return None
        mode = MODES[cfg.service_tier or self.spec.org.service_tier]
        return Route(self, mode, cfg.project)

    def first_tier(self, cfg) -> int:
        """The tier a group's requests are marked with until an attempt says otherwise."""
        if cfg.lane == "batch":
            return BATCH
        return FLEX if (cfg.service_tier or self.spec.org.service_tier) == "flex" else ON_DEMAND

    def job_table(self):
        """Every batch job of the run (None without batch-lane groups)."""
        if not self.jobs:
            return None
        return pd.concat(self.jobs, ignore_index=True)

    def run_batch(self, c, horizon: float, services: list) -> None:
        """Process a batch-lane client group's requests (already generated in its columns) as batch jobs,
        writing their outcomes; ``services``: the run's service models by model index (a speech-to-text
        request's time comes from its model's speed).  Touches no on-demand or flex limit set."""
        n = c.n
        created = np.frombuffer(c.created, dtype=float)
        audio, model = np.frombuffer(c.audio, dtype=float)[:n], np.frombuffer(c.model, dtype=np.int8)[:n]
        audio_time = np.zeros(n)
        for m in np.unique(model).tolist():  # (a chat model's audio is 0: so is its time)
            audio_time[model == m] = services[m].audio_time(audio[model == m])
        per, table = batch.process(created, np.frombuffer(c.prompt, dtype=np.int32)[:n].astype(float),
                                   np.frombuffer(c.completion, dtype=np.int32)[:n].astype(float),
                                   c.cfg.batch, self.spec.org.batch,
                                   c.rngs[FAULTS], horizon, audio_time)
        if not n:
            return
        extra = c.extra
        np.frombuffer(c.outcome, dtype=np.int8)[:] = np.choose(per["status"], [OK, EXPIRED, ERROR])
        np.frombuffer(c.finished, dtype=float)[:] = per["finished"]
        np.frombuffer(extra["submitted"], dtype=float)[:] = per["submitted"]
        np.frombuffer(c.attempts, dtype=np.int16)[:] = 1
        np.frombuffer(extra["job"], dtype=np.int32)[:] = per["job"] + sum(len(t) for t in self.jobs)
        table["job"] += sum(len(t) for t in self.jobs)
        table.insert(0, "client", c.cfg.name)
        self.jobs.append(table)


class Route:
    """One client group's way through the limits: its service tier mode and project."""
    __slots__ = ("lanes", "mode", "project", "capacity", "u")

    def __init__(self, lanes: Lanes, mode: int, project: str | None):
        self.lanes, self.mode, self.project = lanes, mode, project
        self.capacity, self.u = lanes.capacity, lanes.u

    def limits_of(self, m: int):
        """The limits of this group's first-choice tier on model index ``m`` (what a pacer copies)."""
        return self.lanes.limits(self.project, FLEX if self.mode == FLEX else ON_DEMAND, m)

    def send(self, c, i: int, m: int, now: float):
        """Try request ``i`` of group ``c`` on model index ``m`` at ``now``: returns (limits that decided,
        wait as :meth:`LimitSet.acquire`), or (None, 0.0) for a 498 ``capacity_exceeded``.  Writes the
        tier tried, the refusing scope and the 498 count into the group's lane columns."""
        extra = c.extra
        s, w, served = self.lanes.book.admit(self.project, self.mode, m, c.charge[i], c.audio[i], now,
                                             lambda: self.capacity.fails(now, self.u()))
        extra["tier"][i] = served
        if s is None:  # flex capacity short: a 498
            extra["n498"][i] += 1
            if self.mode == AUTO:  # on-demand refused first: its limit is what sent the request here
                key = (m, self.lanes.book.limits(self.project, ON_DEMAND, m).binding)
                self.lanes.spilled[key] = self.lanes.spilled.get(key, 0) + 1
            return None, 0.0
        if w > 0.0:
            scope = extra["scope"][i] = _SCOPE[getattr(s, "binding_scope", None) or "org"]
            if scope == _SCOPE[PROJECT] and w != math.inf:  # a 429 (not a 413) by a project quota
                extra["n429_project"][i] += 1
        return s, w

    def capacity_exceeded(self, c, i: int) -> None:
        """An injected 498 (``[org] error_status = 498``) on request ``i``: counted in its n498 and, unless the
        group asks for on-demand only, marked as flex's (the emulator answers it so on auto too)."""
        c.extra["n498"][i] += 1
        if self.mode != ON_DEMAND:
            c.extra["tier"][i] = FLEX


__all__ = ["Lanes", "Route", "TIERS", "uses_lanes", "PROJECT"]
