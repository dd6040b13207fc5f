"""Which limit set a request must pass, by project, service tier and model: one book for the simulator's
lanes and the emulator.

Groq counts an organization's limits per model and per service tier (its 429s name the tier):

* on-demand: the org's set per model (the caller's own, handed in as ``on_demand``);
* flex: one set per model at the on-demand limits x ``[org.flex] multiplier`` (:meth:`sim.flex.Flex.limits`);
* a project that lowers a model's limits (with ``org.project_quotas``): its own set per (project, tier, model)
  -- under flex multiplied like the org's -- checked with its tier's org set through a
  :class:`~sim.projects.ScopedLimits` (all-or-nothing across both).

Sets are made on first use and kept: a request sees the state earlier requests left.
"""
from __future__ import annotations

from typing import Callable, Hashable

from .limitset import LimitSet
from .projects import ScopedLimits, project_limits

#: service tier codes (the simulator's records keep them: ``sim.records.LANE_TIERS``)
ON_DEMAND, FLEX = 0, 1
#: a request's service-tier mode: a tier, or ``auto`` (on-demand first, then flex)
AUTO = 3
MODES = {"on_demand": ON_DEMAND, "flex": FLEX, "auto": AUTO}


class LimitBook:
    """The limit sets of one organization.  ``on_demand(model)`` gives the org's on-demand set of a model
    key, ``name(model)`` the model's name (the key may be an index)."""

    def __init__(self, org, projects: dict, on_demand: Callable[[Hashable], LimitSet],
                 name: Callable[[Hashable], str] = str):
        self.org, self.projects = org, projects
        self._on_demand, self._name = on_demand, name
        self.flex: dict[Hashable, LimitSet] = {}  # model -> the org's flex set
        self.scoped: dict[tuple, ScopedLimits] = {}  # (project, tier, model) -> a project's set with its org's
        self._sets: dict[tuple, object] = {}

    def limits(self, project: str | None, tier: int, model: Hashable):
        """The limits a request of ``project`` (None: the org's own) on ``tier`` and ``model`` must pass."""
        key = (project, tier, model)
        found = self._sets.get(key)
        if found is not None:
            return found
        org = on_demand = self._on_demand(model)
        if tier == FLEX:
            org = self.flex.get(model)
            if org is None:
                org = self.flex[model] = LimitSet(self.org.flex.limits(on_demand.limits), self.org.limiter)
        found = org
        if project is not None and self.org.project_quotas and project in self.projects:
            own = project_limits(project, self.projects[project], self._name(model), on_demand.limits)
            if own is not None:
                own = self.org.flex.limits(own) if tier == FLEX else own
                found = self.scoped[key] = ScopedLimits(LimitSet(own, self.org.limiter), org)
        self._sets[key] = found
        return found

    def admit(self, project: str | None, mode: int, model: Hashable, tokens: float, audio: float, now: float,
              short: Callable[[], bool]):
        """Route one attempt by its service-tier ``mode`` (:data:`MODES`) and charge what admits it: (the
        limits that decided, the wait as :meth:`LimitSet.acquire` gives it, the tier served), or
        (None, 0.0, FLEX) when flex capacity is short (``short()``, asked only when flex is tried: Groq's 498,
        nothing charged).  On-demand: its limits.  Flex: ``short()``, then flex's limits.  Auto: on-demand's,
        and if they refuse, flex as above; refused by both, the tier whose wait is shorter (the earliest
        either would admit).  The simulator's lanes and the emulator route by this one rule."""
        if mode == ON_DEMAND:
            s = self.limits(project, ON_DEMAND, model)
            return s, s.acquire(tokens, audio, now), ON_DEMAND
        s, w, served = None, 1.0, ON_DEMAND
        if mode == AUTO:
            s = self.limits(project, ON_DEMAND, model)
            w = s.acquire(tokens, audio, now)
        if w > 0.0:
            if short():
                return None, 0.0, FLEX
            f = self.limits(project, FLEX, model)
            wf = f.acquire(tokens, audio, now)
            if mode == FLEX or wf <= w:
                s, w, served = f, wf, FLEX
        return s, w, served
