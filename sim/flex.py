"""The Flex service tier: higher limits, same price, best effort.

Groq's ``service_tier = "flex"`` (paid plans) gives about 10x the on-demand limits at the same price; when
flex capacity is short, requests fail fast with 498 ``capacity_exceeded`` and clients are told to back off
with jitter and retry.  ``auto`` uses the on-demand limits first and flex for what they refuse.

Groq publishes no statistics of flex scarcity, so the shortage is a stated, configurable assumption
(:class:`Flex`): an alternating on/off process -- calm periods, then scarce periods, each exponentially
distributed with the given means -- and, during each, a probability that a flex attempt fails with 498.
The process starts in its stationary state (scarce with probability ``scarce / (calm + scarce)``), so the
long-run share of failing attempts is :meth:`Flex.failure_share`.  One timeline per run, shared by every
client group (scarcity is Groq's, not a client's); each attempt's failure is a draw against the
probability of the period it falls in.  A 498 is decided before the limits and charges none of them (the
request never ran).  The flex limits are the org's on-demand limits x ``multiplier``, a separate limit
state per model (inferred: Groq's 429s name the service tier, so its limits are taken as counted per tier).
"""
from __future__ import annotations

import bisect
from collections.abc import Iterable
from typing import Annotated, Literal

import numpy as np
from pydantic import Field, field_validator

from .catalog import UNITS, Limits
from .errors import KeyedError
from .fields import Duration, Strict

SERVICE_TIERS = ("on_demand", "flex", "auto")
CAPACITY_EXCEEDED = 498


class Flex(Strict):
    """``[org.flex]``: the flex tier's limit multiplier and its capacity-shortage process (assumptions)."""
    multiplier: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 10.0
    #: mean length of a calm period (flex capacity available)
    calm: Annotated[Duration, Field(ge=1)] = 3000.0  # (>= 1 s: the periods are drawn one by one)
    #: mean length of a scarce period (0: never scarce; else >= 1 s)
    scarce: Annotated[Duration, Field(ge=0)] = 600.0
    #: probability that a flex attempt fails with 498 during a scarce period / during a calm one
    scarce_failure: Annotated[float, Field(ge=0, le=1)] = 0.5
    calm_failure: Annotated[float, Field(ge=0, le=1)] = 0.0

    @field_validator("scarce")
    @classmethod
    def _scarce(cls, value):
        if 0 < value < 1:
            raise ValueError(f"{value:g} s: a scarce period is 0 (never) or at least 1 s (the periods are drawn "
                             "one by one)")
        return value

    def limits(self, on_demand: Limits) -> Limits:
        """The flex tier's limits: the on-demand ones x ``multiplier``, rounded as any scaled limit (one below 1
        is a :class:`~sim.errors.KeyedError`)."""
        return on_demand.scaled(dict.fromkeys(UNITS, self.multiplier))

    def check(self, models: Iterable[tuple[str, Limits]]) -> None:
        """Each ``(model, on-demand limits)``'s flex limits (:meth:`limits`) are 1 or more: else a
        :class:`~sim.errors.KeyedError` on ``org.flex.multiplier`` naming the first model that falls below."""
        for model, on_demand in models:
            try:
                self.limits(on_demand)
            except KeyedError as exc:
                raise KeyedError("org.flex.multiplier",
                                 f"{self.multiplier:g} makes {model}'s flex {exc.message}") from None

    def scarce_share(self) -> float:
        """Long-run share of time in scarce periods."""
        return self.scarce / (self.calm + self.scarce)

    def failure_share(self) -> float:
        """Long-run probability that a flex attempt at a random time fails with 498."""
        s = self.scarce_share()
        return s * self.scarce_failure + (1 - s) * self.calm_failure


class CapacityProcess:
    """One run's flex scarcity timeline over ``[0, horizon]`` (longer with :meth:`extend`), and the 498 draw
    of an attempt."""

    def __init__(self, flex: Flex, rng: np.random.Generator, horizon: float):
        self.flex, self._rng = flex, rng
        scarce = bool(flex.scarce) and rng.random() < flex.scarce_share()
        self.switches, self.states = [0.0], [scarce]
        self._p = (flex.calm_failure, flex.scarce_failure)
        self.extend(horizon)

    def extend(self, horizon: float) -> None:
        """Draw the timeline on until it covers ``horizon`` (an emulator's clock runs on without end)."""
        flex, rng, switches, states = self.flex, self._rng, self.switches, self.states
        t, scarce = switches[-1], states[-1]
        while t < horizon:
            t += rng.exponential(flex.scarce if scarce else flex.calm)
            scarce = not scarce if flex.scarce else False
            switches.append(t)
            states.append(scarce)

    def scarce(self, t: float) -> bool:
        """Is flex capacity short at ``t``?"""
        return self.states[bisect.bisect_right(self.switches, t) - 1]

    def failure_probability(self, t: float) -> float:
        return self._p[self.scarce(t)]

    def fails(self, t: float, u: float) -> bool:
        """Does an attempt at ``t`` fail with 498, given a U(0,1) draw ``u``?"""
        return u < self._p[self.states[bisect.bisect_right(self.switches, t) - 1]]

    def scarce_time(self, t0: float, t1: float) -> float:
        """Seconds of scarcity within ``[t0, t1)``."""
        total = 0.0
        for k, start in enumerate(self.switches):
            end = self.switches[k + 1] if k + 1 < len(self.switches) else float("inf")
            if self.states[k]:
                total += max(0.0, min(end, t1) - max(start, t0))
        return total


ServiceTier = Literal[SERVICE_TIERS]
