"""All the rate limits of one organization on one model, charged all-or-nothing.

A request costs ``{requests: 1, tokens: n, audio_seconds: s}``.  It is admitted only if every unit
(RPM, RPD, TPM, TPD, ASH, ASD, as the tier defines them) admits its share; then every unit is charged.
If any unit refuses, nothing is charged, and the refusal names the refusing units and the wait until all
of them would admit.  While the request units (RPM, RPD) refuse, nothing can be admitted, so their state
cannot change: :meth:`acquire` remembers until when they refuse instead of asking them on every attempt
(charge the limiters only through the set, or the memory goes stale).  A cost that exceeds a unit's whole
limit can never be admitted: that is the API's 413 "request too large", not a retryable 429.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .catalog import UNIT_SPEC, Limits
from .limiters import Limiter, TokenBucket, make_limiter


@dataclass(frozen=True)
class Decision:
    """Outcome of :meth:`LimitSet.check`: ``wait`` is 0 when admitted, ``inf`` when too large."""
    admitted: bool
    wait: float
    refused: tuple[str, ...]
    too_large: bool


class LimitSet:
    """The unit limiters of one (organization, model)."""

    def __init__(self, limits: Limits, algorithm: str = "token_bucket", rate_fraction: float = 1.0,
                 refunds: bool = True):
        """``rate_fraction`` < 1 (token buckets only) makes a client-side pacer: the org's capacities,
        refilling at that fraction of its rates and starting that full.  Its level never exceeds the org
        bucket's, so whatever it admits the org's token buckets admit too (if nobody else shares them).
        ``refunds=False``: :meth:`refund_tokens` will never be called, so token buckets need not keep what a
        refund reads (see :class:`~sim.limiters.TokenBucket`); request units never do."""
        self.limits = limits
        self.algorithm = algorithm
        self.units: dict[str, Limiter] = {}
        groups: dict[str, list[tuple[str, Limiter]]] = {"requests": [], "tokens": [], "audio_seconds": []}
        for unit, limit in limits.items():
            window, counts = UNIT_SPEC[unit]
            if rate_fraction != 1.0 or algorithm == TokenBucket.kind:
                lim = TokenBucket(limit, window, rate_fraction, refunds=refunds and counts == "tokens"
                                  and rate_fraction == 1.0)
            else:
                lim = make_limiter(algorithm, limit, window)
            self.units[unit] = lim
            groups[counts].append((unit, lim))
        # (unit, limiter) pairs by what they count, in the catalog's unit order
        self._requests, self._tokens, self._audio = groups["requests"], groups["tokens"], groups["audio_seconds"]
        self._blocked_until, self._blocked_by = -math.inf, None  # cache of the request units' refusal
        #: the unit whose wait was longest in the last refused :meth:`acquire` (the binding unit)
        self.binding: str | None = None
        if all(type(lim) is TokenBucket for lim in self.units.values()) and all(
                lim.limit >= 1 for _, lim in self._requests):
            # every unit a token bucket (the default): the same arithmetic, without a method call per unit;
            # (unit, bucket, counts tokens?, the largest amount it can ever admit) of the token and audio units
            self._amounts = [(unit, lim, counts == "tokens", lim.limit + lim._eps) for counts, pairs in groups.items()
                             for unit, lim in pairs if counts != "requests"]
            self.acquire = self._acquire_buckets

    def look(self, now: float) -> "LimitSet":
        """The set as headers read it at ``now``: itself (a :class:`~sim.projects.ScopedLimits` picks, per
        unit, the scope with less remaining)."""
        return self

    def _units_for(self, tokens: float, audio: float):
        """(unit, limiter, amount) for every unit this cost touches (zero amounts are always admitted)."""
        for group, amount in ((self._requests, 1), (self._tokens, tokens), (self._audio, audio)):
            if amount:
                for unit, lim in group:
                    yield unit, lim, amount

    def check(self, tokens: float = 0, audio_seconds: float = 0, now: float = 0.0) -> Decision:
        """Would a request of this cost be admitted at ``now``?  Changes nothing."""
        waits = [(unit, w) for unit, lim, amount in self._units_for(tokens, audio_seconds)
                 if (w := lim.wait(amount, now)) > 0]
        wait = max((w for _, w in waits), default=0.0)
        return Decision(not waits, wait, tuple(u for u, _ in waits), math.isinf(wait))

    def acquire(self, tokens: float = 0, audio_seconds: float = 0, now: float = 0.0) -> float:
        """Admit and charge all units, or charge nothing.  Returns 0.0 when admitted, else the wait until
        every unit would admit (``inf`` = too large); :attr:`binding` names the unit with the longest wait.
        (The per-request hot path: plain loops over prepared lists, no allocation.)"""
        if now < self._blocked_until - 1e-6:  # (near the end, ask the limiters: exact at the boundary)
            # the request units refused earlier and nothing can have been admitted since (admission needs
            # them): their wait is known without asking them again -- the common case under overload
            worst, binding = self._blocked_until - now, self._blocked_by
        else:
            worst, binding = 0.0, None
            for unit, lim in self._requests:
                w = lim.wait(1, now)
                if w > worst:
                    worst, binding = w, unit
            if worst > 0.0:
                self._blocked_until, self._blocked_by = now + worst, binding
        if tokens:
            for unit, lim in self._tokens:
                w = lim.wait(tokens, now)
                if w > worst:
                    worst, binding = w, unit
        if audio_seconds:
            for unit, lim in self._audio:
                w = lim.wait(audio_seconds, now)
                if w > worst:
                    worst, binding = w, unit
        if worst > 0.0:
            self.binding = binding
            return worst
        for _, lim in self._requests:
            lim.admit(1, now)
        if tokens:
            for _, lim in self._tokens:
                lim.admit(tokens, now)
        if audio_seconds:
            for _, lim in self._audio:
                lim.admit(audio_seconds, now)
        return 0.0

    def _acquire_buckets(self, tokens: float = 0, audio_seconds: float = 0, now: float = 0.0) -> float:
        """:meth:`acquire` when every unit is a :class:`~sim.limiters.TokenBucket`: its ``wait`` and ``admit``
        inlined, operation for operation (so bit for bit the same; tests/test_limitset.py compares the two on
        random traffic).  The simulator's hottest function."""
        blocked = self._blocked_until
        if now < blocked - 1e-6:
            worst, binding = blocked - now, self._blocked_by
        else:
            worst, binding = 0.0, None
            for unit, b in self._requests:  # (one request never exceeds a request unit: limits are >= 1)
                dt = now - b._t
                level = b._level + dt * b.rate if dt > 0 else b._level
                cap = b.limit
                b._seen = level = level if level < cap else cap  # noqa: FURB136
                short = 1 - level
                if short > b._eps:
                    w = short / b.rate
                    if w > worst:
                        worst, binding = w, unit
            if worst > 0.0:
                self._blocked_until, self._blocked_by = now + worst, binding
        for unit, b, is_tokens, most in self._amounts:
            amount = tokens if is_tokens else audio_seconds
            if not amount:
                continue
            if amount > most:
                w = math.inf
            else:
                dt = now - b._t
                level = b._level + dt * b.rate if dt > 0 else b._level
                cap = b.limit
                b._seen = level = level if level < cap else cap  # noqa: FURB136
                short = amount - level
                w = 0.0 if short <= b._eps else short / b.rate
            if w > worst:
                worst, binding = w, unit
        if worst > 0.0:
            self.binding = binding
            return worst
        # charge: each unit's level as the check just computed it (``_seen``), less the amount
        for _, b in self._requests:
            level = b._seen - 1
            b._level = level if level > 0.0 else 0.0  # noqa: FURB136
            if now > b._t:
                b._t = now
        for _, b, is_tokens, _ in self._amounts:
            amount = tokens if is_tokens else audio_seconds
            if not amount:
                continue
            if b._peak_t is not None:
                b.admit(amount, now)  # a refundable bucket keeps its peaks
                continue
            level = b._seen - amount
            b._level = level if level > 0.0 else 0.0  # noqa: FURB136
            if now > b._t:
                b._t = now
        return 0.0

    def admit(self, tokens: float = 0, audio_seconds: float = 0, now: float = 0.0) -> Decision:
        """:meth:`check`, then charge every unit if admitted."""
        decision = self.check(tokens, audio_seconds, now)
        if decision.admitted:
            self.acquire(tokens, audio_seconds, now)
        return decision

    def refund_tokens(self, tokens: float, charged_at: float, now: float) -> None:
        """Give back unused reserved tokens to the token units (TPM, TPD)."""
        for _, lim in self._tokens:
            lim.refund(tokens, charged_at, now)

    def remaining(self, unit: str, now: float) -> float | None:
        lim = self.units.get(unit)
        return None if lim is None else lim.remaining(now)

    def reset(self, unit: str, now: float) -> float | None:
        lim = self.units.get(unit)
        return None if lim is None else lim.reset(now)
