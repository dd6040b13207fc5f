"""Arrival processes: how a client group's requests arrive, one validated class per ``kind``.

Each kind owns its parameters, its validation, its sampling (``times``: every arrival in ``[0, duration)``
at once, in vectors), its long-run rate (``mean_rate``) and its mean rate over a window from the start
(``window_rate``: the long-run rate unless its rate changes with time, as a diurnal day's does).
``ArrivalSpec`` is the discriminated union a scenario's ``arrival = { kind = "...", ... }`` is validated into,
and the one list of kinds: ``KINDS`` (name -> class) is read from it.  :func:`arrival` builds one from
keywords.  To add a kind: one class here with ``kind: Literal["name"]``, its fields, ``times`` and
``mean_rate`` (and ``window_rate`` if its rate changes with time), listed in ``ArrivalSpec``'s ``Union``, and
its settings in ``tests/test_arrivals.py``'s ``RATE_CASES`` (the rate tests; a test fails until both are done).
"""
from __future__ import annotations

import math
from typing import Annotated, ClassVar, Literal, Union, get_args

import numpy as np
import pandas as pd
from pydantic import Field, TypeAdapter, model_validator

from .fields import Duration, PositiveDuration, Rate, Strict
from .trace import read_trace
from .units import half_up


def poisson_times(rng: np.random.Generator, rate: float, duration: float) -> np.ndarray:
    """Homogeneous Poisson arrival times in [0, duration), drawn in blocks of exponential gaps."""
    if rate <= 0 or duration <= 0:
        return np.empty(0)
    chunks, t0 = [], 0.0
    block = int(rate * duration * 1.05 + 10 * np.sqrt(rate * duration) + 16)
    while t0 < duration:
        times = t0 + np.cumsum(rng.exponential(1.0 / rate, block))
        chunks.append(times)
        t0 = times[-1]
    times = np.concatenate(chunks)
    return times[times < duration]


def _renewal_times(gaps_sampler, first: float, mean_gap: float, duration: float) -> np.ndarray:
    """Arrivals in [0, duration): one at ``first``, then one each gap (``gaps_sampler(n)``: n gaps) later."""
    chunks, t0 = [np.array([first])], first
    block = int((duration - first) / mean_gap * 1.05) + 16
    while t0 < duration:
        times = t0 + np.cumsum(gaps_sampler(block))
        chunks.append(times)
        t0 = times[-1]
    times = np.concatenate(chunks)
    return times[times < duration]


def _thinned(rng, rate_fn, max_rate: float, duration: float) -> np.ndarray:
    """Non-homogeneous Poisson by thinning (Lewis & Shedler): candidates at ``max_rate``, kept with
    probability ``rate(t) / max_rate``."""
    cand = poisson_times(rng, max_rate, duration)
    keep = rng.random(cand.size) * max_rate < rate_fn(cand)
    return cand[keep]


class _Kind(Strict):
    #: open loop (arrival times known in advance) or closed (the engine drives users)
    open_loop: ClassVar[bool] = True

    def times(self, rng: np.random.Generator, duration: float, load: float = 1.0) -> np.ndarray:
        """Sorted arrival times (s) in ``[0, duration)`` with every rate scaled by ``load``."""
        raise TypeError(f"arrival kind {self.kind!r} has no precomputed arrival times")

    def mean_rate(self) -> float | None:
        """Long-run requests per second at load 1: a number for every open-loop kind; None for a closed loop
        (its rate depends on latency) and a trace (its rows are counted instead)."""
        return None

    def long_run_rate(self) -> float:
        """``mean_rate()``, refused when it is None: the capacity ceilings and the work check
        (``Scenario.size``) scale an open-loop kind's rate, so a new kind that gives none is told so here."""
        rate = self.mean_rate()
        if rate is None:
            raise TypeError(f"arrival kind {self.kind!r} gives no mean_rate(): an open-loop kind must return its "
                            "long-run rate (requests per second at load 1)")
        return rate

    def window_rate(self, duration: float) -> float:
        """Mean requests per second over ``[0, duration)`` at load 1 (``times``' expected count / ``duration``):
        the long-run rate, unless the kind's rate changes with time from the start (overridden there: a day's
        first hours are not a diurnal day's mean).  What the work check (``Scenario.size``) counts."""
        return self.long_run_rate()


class Poisson(_Kind):
    kind: Literal["poisson"]
    rate: Rate

    def times(self, rng, duration, load=1.0):
        return poisson_times(rng, self.rate * load, duration)

    def mean_rate(self):
        return self.rate


class Constant(_Kind):
    """Evenly spaced arrivals, the first at t = 0: ``ceil(duration x rate)`` of them, the product read to six
    decimals, so that 13/min (13/60 per second, not exact in binary) makes 780 in an hour, not 781 with the
    last at 3599.99...: ``np.arange`` alone counts ``ceil`` of 780.0000000000001."""
    kind: Literal["constant"]
    rate: Rate

    def times(self, rng, duration, load=1.0):
        rate = self.rate * load
        if not rate > 0:
            return np.empty(0)
        return np.arange(0.0, duration, 1.0 / rate)[:math.ceil(round(duration * rate, 6))]

    def mean_rate(self):
        return self.rate


class Bursty(_Kind):
    """A stationary renewal process with gamma gaps whose coefficient of variation is ``burstiness``
    (1 = Poisson): the traffic of a source already running when the horizon starts, ``rate`` requests per
    second on average over any window.  The first arrival comes after the equilibrium forward-recurrence
    time, ``U x G`` with ``U`` uniform and ``G`` gamma of shape ``1 / burstiness^2 + 1`` (a gap drawn in
    proportion to its length, cut at a uniform point), the others a gap apart: Cox's equilibrium renewal
    process (*Renewal Theory*, 1962).  Starting with a whole gap instead (an ordinary renewal process) adds
    ``(burstiness^2 - 1) / 2`` arrivals on average, 1 250 at burstiness 50, mostly in a burst at the start."""
    kind: Literal["bursty"]
    rate: Rate
    #: (at most 50: a coefficient of variation beyond that is one burst and silence, and its gamma gaps
    #: underflow to zero; at least 0.001: gaps equal to a thousandth are ``constant``'s, and below ~1e-154
    #: the gamma's shape 1 / burstiness^2 overflows)
    burstiness: Annotated[float, Field(ge=0.001, le=50)] = 1.0

    def times(self, rng, duration, load=1.0):
        rate = self.rate * load
        if rate <= 0:
            return np.empty(0)
        shape = 1.0 / self.burstiness ** 2
        scale = 1.0 / (rate * shape)
        first = rng.random() * rng.gamma(shape + 1.0, scale)
        return _renewal_times(lambda n: rng.gamma(shape, scale, n), first, 1.0 / rate, duration)

    def mean_rate(self):
        return self.rate


class OnOff(_Kind):
    """Exponential on and off periods (means ``on``, ``off``); Poisson at ``rate`` while on."""
    kind: Literal["onoff"]
    rate: Rate
    on: Annotated[Duration, Field(ge=1)]  # (>= 1 s: the periods are drawn one by one)
    off: Duration

    def times(self, rng, duration, load=1.0):
        rate = self.rate * load
        if rate <= 0:
            return np.empty(0)
        n = int(duration / (self.on + self.off)) * 2 + 16
        on = rng.exponential(self.on, n)
        off = rng.exponential(self.off, n) if self.off > 0 else np.zeros(n)
        starts = np.concatenate([[0.0], np.cumsum(on + off)[:-1]])
        cum_on = np.concatenate([[0.0], np.cumsum(on)])
        u = poisson_times(rng, rate, cum_on[-1])  # times on a clock that only runs while "on"
        period = np.searchsorted(cum_on, u, side="right") - 1
        times = starts[period] + (u - cum_on[period])
        return times[times < duration]

    def mean_rate(self):
        return self.rate * self.on / (self.on + self.off)

    def window_rate(self, duration):
        # the first period is on: P(on at t) = pi + (1 - pi) e^(-lambda t), lambda = 1/on + 1/off (a two-state
        # Markov chain), averaged over [0, duration)
        if self.off == 0:
            return self.rate
        pi, lam = self.on / (self.on + self.off), 1.0 / self.on + 1.0 / self.off
        return self.rate * (pi + (1.0 - pi) * -np.expm1(-lam * duration) / (lam * duration))


class Piecewise(_Kind):
    """A rate schedule ``[[start, rate], ...]`` repeating every ``period`` (Poisson within each piece)."""
    kind: Literal["piecewise"]
    schedule: list[Annotated[tuple[Duration, Rate], Field(strict=False)]]  # (TOML writes each as a list)
    period: PositiveDuration = 86_400.0

    @model_validator(mode="after")
    def _starts_at_zero(self):
        if not self.schedule or self.schedule[0][0] != 0:
            raise ValueError("piecewise schedule must start at time 0, like "
                             "[[\"0h\", \"10/min\"], [\"8h\", \"60/min\"]]")
        starts = [s for s, _ in self.schedule]
        for k in range(1, len(starts)):
            if starts[k] <= starts[k - 1]:
                raise ValueError(f"piecewise schedule: piece {k} starts at {starts[k]:g} s, not after piece "
                                 f"{k - 1} ({starts[k - 1]:g} s): list the pieces in time order, each start once")
        if starts[-1] >= self.period:
            raise ValueError(f"piecewise schedule: piece {len(starts) - 1} starts at {starts[-1]:g} s, not within "
                             f"the period ({self.period:g} s) it repeats every")
        return self

    def times(self, rng, duration, load=1.0):
        starts = np.array([s for s, _ in self.schedule])
        rates = np.array([r for _, r in self.schedule]) * load
        fn = lambda t: rates[np.searchsorted(starts, np.mod(t, self.period), side="right") - 1]  # noqa: E731
        return _thinned(rng, fn, rates.max(), duration) if rates.max() > 0 else np.empty(0)

    def mean_rate(self):
        return self._requests(self.period) / self.period

    def window_rate(self, duration):
        whole, rest = divmod(duration, self.period)
        return (whole * self._requests(self.period) + self._requests(rest)) / duration

    def _requests(self, x: float) -> float:
        """Expected requests in ``[0, x)`` at load 1, ``x`` at most one period."""
        starts = [s for s, _ in self.schedule] + [self.period]
        return sum(r * (min(b, x) - min(a, x)) for (a, r), b in zip(self.schedule, starts[1:]))


class Diurnal(_Kind):
    """Poisson with rate ``rate * (1 + amplitude * cos(2 pi (t - peak) / period))``."""
    kind: Literal["diurnal"]
    rate: Rate
    period: PositiveDuration = 86_400.0
    amplitude: Annotated[float, Field(ge=0, le=1)] = 0.5
    peak: Duration = 14 * 3600.0

    def times(self, rng, duration, load=1.0):
        rate, a, peak, period = self.rate * load, self.amplitude, self.peak, self.period
        fn = lambda t: rate * (1 + a * np.cos(2 * np.pi * (t - peak) / period))  # noqa: E731
        return _thinned(rng, fn, rate * (1 + a), duration) if rate > 0 else np.empty(0)

    def mean_rate(self):
        return self.rate

    def window_rate(self, duration):
        w = 2 * np.pi / self.period  # the integral of the cosine over [0, duration), over duration
        swing = (np.sin(w * (duration - self.peak)) - np.sin(w * -self.peak)) / (w * duration)
        return self.rate * (1.0 + self.amplitude * swing)


class Trace(_Kind):
    """Recorded traffic (see :mod:`sim.trace`); ``load`` compresses time (2 = twice as fast)."""
    kind: Literal["trace"]
    file: str

    def rows(self, duration: float, load: float = 1.0) -> pd.DataFrame:
        """The trace's rows that fall in ``[0, duration)`` once time is divided by ``load``."""
        df = read_trace(self.file)
        df = df.assign(timestamp=df["timestamp"] / load)
        return df[df["timestamp"] < duration]

    def times(self, rng, duration, load=1.0):
        return self.rows(duration, load)["timestamp"].to_numpy(float)


class Closed(_Kind):
    """``users`` users, each sending one request, waiting for its end, then thinking (exponential, mean
    ``think``) before the next: the offered rate depends on latency, so there is no mean rate."""
    open_loop: ClassVar[bool] = False
    kind: Literal["closed"]
    users: Annotated[int, Field(ge=1)]
    think: Duration

    def users_at(self, load: float) -> int:
        """The users a run at ``load`` starts: whole users, the nearest to ``users x load`` (halves up: Python's
        ``round`` took 2.5 to 2 and 3.5 to 4, so 5 and 7 users at load 0.5 became 2 and 4), at least one."""
        return max(1, half_up(self.users * float(load)))


ArrivalSpec = Annotated[Union[Poisson, Constant, Bursty, OnOff, Piecewise, Diurnal, Trace, Closed],
                        Field(discriminator="kind")]
_ADAPTER = TypeAdapter(ArrivalSpec)
#: kind name -> class, in ``ArrivalSpec``'s order (read from its union: the one list of kinds)
KINDS = {get_args(cls.model_fields["kind"].annotation)[0]: cls for cls in get_args(get_args(ArrivalSpec)[0])}


def arrival(**fields) -> _Kind:
    """An arrival process from keywords, e.g. ``arrival(kind="poisson", rate="20/min")``."""
    return _ADAPTER.validate_python(fields)
