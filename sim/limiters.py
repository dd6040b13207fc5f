"""Rate limiters: pure Python, no SimPy; the caller passes the time ``now`` (seconds, non-decreasing).

Every limiter enforces ``limit`` units per ``window`` seconds and answers the same questions, five of them
written by each algorithm (``try_admit`` and ``fits`` are :class:`Limiter`'s, composed of ``wait`` and ``admit``):

* ``wait(amount, now)``   -- 0.0 if ``amount`` can be admitted now, ``inf`` if it never can
  (``amount > limit``), else the exact number of seconds until it could be if nothing else happens.
* ``admit(amount, now)``  -- charge ``amount`` unconditionally (call after ``wait`` returned 0).
* ``remaining(now)``      -- budget left now, in ``[0, limit]``.
* ``reset(now)``          -- seconds until the budget is full again (0 when it is full).
* ``refund(amount, charged_at, now)`` -- give back part of an earlier charge (unused token reservation).
* ``try_admit(amount, now)`` -- (inherited) check and charge atomically; a refusal changes no observable state.
* ``fits(amount, now)``   -- (inherited) ``wait(amount, now) == 0``; an algorithm whose wait searches
  (:class:`SlidingLog`'s, through its log) answers it without the search.

A new algorithm: a subclass with ``kind = "name"`` and those five methods, listed in ``ALGORITHMS`` (then
``[org] limiter``, the ``limiter`` axis, ``calibrate`` and ``validate`` use it; docs/architecture.md lists the
tests that must learn of it).  Only :class:`TokenBucket` is written out for speed elsewhere
(:class:`sim.limitset.LimitSet`'s inlined ``acquire``, :mod:`sim.kernel`'s loop); another algorithm is called.

Exact semantics (the one place they are written down; docs/modelling.md points here):

``TokenBucket`` (default; matches Groq's ``x-ratelimit-reset-*`` headers, see the reference page):
  capacity = limit, starts full, refills continuously at ``limit / window`` per second, never above
  capacity.  ``amount`` is admitted iff ``amount <= level``.  Wait = ``(amount - level) / rate``.
  In any interval of length T it admits at most ``capacity + rate * T``.
``FixedWindow``: windows ``[k*W, (k+1)*W)`` aligned on t = 0, the start inclusive; the count resets at
  each boundary; the first window starts at t = 0.  Admitted iff ``count + amount <= limit``; otherwise
  wait = time to the next boundary.  Two back-to-back windows can admit ``2 * limit`` across a boundary.
``SlidingLog``: exact moving window: admitted iff (sum of amounts admitted in ``(now - W, now]``) +
  amount <= limit.  An entry admitted at t leaves the window at exactly ``t + W``.
``SlidingWindowCounter``: the common two-window approximation: with ``f`` the elapsed fraction of the
  current aligned window, ``estimate = previous * (1 - f) + current``; admitted iff
  ``estimate + amount <= limit``.  Wait is solved exactly from that linear decay.

All algorithms: ``amount > limit`` can never be admitted (wait = inf; the API's 413 "request too large");
an amount of 0 is always admitted; rejected attempts consume nothing.  Comparisons carry a tolerance of
1e-9 x limit units and window boundaries one of 1 ns, so that ``wait`` is exact despite float round-off:
``try_admit(a, now + wait(a, now))`` succeeds, and it is refused just before unless the tolerance spans
longer: the window counter's estimate decays at ``previous / W`` per second, so with a nearly empty
previous window the 1e-9 x limit tolerance can admit up to ``1e-9 x limit x W / previous`` s early.
"""
from __future__ import annotations

import math
import numbers
from bisect import bisect_right
from collections import deque

from .errors import ConfigError, did_you_mean

INF = math.inf
_T_EPS = 1e-9  # seconds of slack at window boundaries (float round-off only)


class Limiter:
    """Common parameters and the ``try_admit`` composition."""

    kind = "abstract"

    def __init__(self, limit: float, window: float):
        for name, value in (("limit", limit), ("window", window)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"{type(self).__name__}({name}={value!r}): a number (a count such as '14.4K' or a "
                                "duration such as '1m' is the scenario file's way to write one: here 14400, 60.0)")
        if not limit > 0 or not window > 0 or not math.isfinite(limit) or not math.isfinite(window):
            raise ValueError(f"limit and window must be positive and finite, got {limit!r}, {window!r}")
        self.limit = limit
        self.window = window
        self._eps = 1e-9 * max(limit, 1.0)

    def try_admit(self, amount: float, now: float) -> bool:
        if not amount >= 0:  # (NaN too) a negative charge would add to the budget: 20 admitted under a limit of 10
            raise ValueError(f"{type(self).__name__}.try_admit(amount={amount!r}): an amount is >= 0")
        if self.fits(amount, now):
            self.admit(amount, now)
            return True
        return False

    def fits(self, amount: float, now: float) -> bool:
        """Would ``amount`` be admitted now (``wait(amount, now) == 0``)?  A refusal's wait is not needed to
        know it: the calibration's replay asks only this, of every logged response under every hypothesis."""
        return self.wait(amount, now) == 0.0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(limit={self.limit}, window={self.window})"


class TokenBucket(Limiter):
    kind = "token_bucket"

    def __init__(self, limit: float, window: float, rate_fraction: float = 1.0, refunds: bool = True):
        """``rate_fraction`` < 1 refills at that fraction of ``limit / window`` and starts that full (a client
        pacing itself below an org bucket of the same capacity); the org's own buckets use 1.  ``refunds=False``:
        a bucket that is never refunded (a request unit, a pacer, a run that charges actual tokens) keeps no
        peak levels, so its :meth:`admit` is cheaper; :meth:`refund` then refuses."""
        super().__init__(limit, window)
        self.rate = rate_fraction * limit / window
        self._level = float(limit) * rate_fraction
        self._t = 0.0
        self._seen = 0.0  # scratch: the level LimitSet's inlined acquire computed when checking this bucket
        # levels just before each charge, kept only while higher than every later one (times, levels):
        # the highest level since any past charge, which bounds what a refund of that charge gives back
        self._peak_t: list[float] | None = [] if refunds else None
        self._peak_level: list[float] | None = [] if refunds else None
        if not refunds:
            self.admit = self._charge

    def _level_at(self, now: float) -> float:
        dt = now - self._t
        level = self._level + dt * self.rate if dt > 0 else self._level
        return level if level < self.limit else self.limit  # noqa: FURB136 (hot path: no call)

    def wait(self, amount: float, now: float) -> float:
        if amount > self.limit + self._eps:
            return INF
        dt = now - self._t  # _level_at inlined: this is the simulator's hottest line
        level = self._level + dt * self.rate if dt > 0 else self._level
        short = amount - (level if level < self.limit else self.limit)  # noqa: FURB136 (hot path: no call)
        return 0.0 if short <= self._eps else short / self.rate

    def admit(self, amount: float, now: float) -> None:
        dt = now - self._t
        level = self._level + dt * self.rate if dt > 0 else self._level
        level = level if level < self.limit else self.limit  # noqa: FURB136 (hot path: no call)
        peak_level = self._peak_level
        while peak_level and peak_level[-1] <= level:
            peak_level.pop()
            self._peak_t.pop()
        peak_level.append(level)
        self._peak_t.append(now)
        level -= amount
        self._level = level if level > 0.0 else 0.0  # noqa: FURB136 (hot path: no call)
        if dt > 0:
            self._t = now

    def _charge(self, amount: float, now: float) -> None:
        """:meth:`admit` without keeping peaks (``refunds=False``)."""
        dt = now - self._t
        level = self._level + dt * self.rate if dt > 0 else self._level
        level = (level if level < self.limit else self.limit) - amount  # noqa: FURB136 (hot path: no call)
        self._level = level if level > 0.0 else 0.0  # noqa: FURB136 (hot path: no call)
        if dt > 0:
            self._t = now

    def remaining(self, now: float) -> float:
        return self._level_at(now)

    def reset(self, now: float) -> float:
        return (self.limit - self._level_at(now)) / self.rate

    def refund(self, amount: float, charged_at: float, now: float) -> None:
        """The level the bucket would have now had the charge been ``amount`` smaller: that level is
        ``amount`` higher until it reaches the capacity, and stays at most the capacity after, so the
        refund is ``min(amount, limit - highest level since the charge)`` (0 once the bucket has been full)."""
        if self._peak_t is None:
            raise ValueError("refund() of a TokenBucket made with refunds=False")
        level = self._level_at(now)
        k = bisect_right(self._peak_t, charged_at)
        peak = max(level, self._peak_level[k]) if k < len(self._peak_level) else level
        give = min(amount, self.limit - peak)
        if give > 0.0:
            self._level = level + give
            self._t = max(self._t, now)


class FixedWindow(Limiter):
    kind = "fixed_window"

    def __init__(self, limit: float, window: float):
        super().__init__(limit, window)
        self._index = 0
        self._count = 0.0

    def _idx(self, now: float) -> int:
        return int((now + _T_EPS) // self.window)

    def _count_at(self, now: float) -> float:
        return self._count if self._idx(now) == self._index else 0.0

    def wait(self, amount: float, now: float) -> float:
        if amount > self.limit + self._eps:
            return INF
        if self._count_at(now) + amount <= self.limit + self._eps:
            return 0.0
        return (self._idx(now) + 1) * self.window - now

    def admit(self, amount: float, now: float) -> None:
        idx = self._idx(now)
        if idx != self._index:
            self._index, self._count = idx, 0.0
        self._count += amount

    def remaining(self, now: float) -> float:
        return max(0.0, self.limit - self._count_at(now))

    def reset(self, now: float) -> float:
        return (self._idx(now) + 1) * self.window - now if self._count_at(now) > 0 else 0.0

    def refund(self, amount: float, charged_at: float, now: float) -> None:
        if self._idx(charged_at) == self._index == self._idx(now):
            self._count = max(0.0, self._count - amount)


class SlidingLog(Limiter):
    kind = "sliding_log"

    def __init__(self, limit: float, window: float):
        super().__init__(limit, window)
        self._log: deque[list] = deque()  # [admitted_at, amount], oldest first
        self._total = 0.0

    def _expire(self, now: float) -> None:
        log, horizon = self._log, now + _T_EPS - self.window
        while log and log[0][0] <= horizon:
            self._total -= log.popleft()[1]
        if not log:
            self._total = 0.0  # drop accumulated round-off

    def wait(self, amount: float, now: float) -> float:
        if amount > self.limit + self._eps:
            return INF
        self._expire(now)  # entries outside the window are not observable state
        need = self._total + amount - self.limit
        if need <= self._eps:
            return 0.0
        freed = 0.0
        for t, a in self._log:
            freed += a
            if freed >= need - self._eps:
                return max(t + self.window - now, 0.0)
        return INF  # unreachable: amount <= limit

    def fits(self, amount: float, now: float) -> bool:
        # (wait's first answer: a refusal's wait, the search through the log, is never 0, since every entry
        # left after _expire leaves the window more than _T_EPS from now; an amount above the limit needs no
        # test of its own: the log's total is >= 0)
        self._expire(now)
        return self._total + amount - self.limit <= self._eps

    def admit(self, amount: float, now: float) -> None:
        if amount <= 0:
            return
        self._expire(now)
        if self._log and self._log[-1][0] == now:
            self._log[-1][1] += amount
        else:
            self._log.append([now, amount])
        self._total += amount

    def remaining(self, now: float) -> float:
        self._expire(now)
        return min(self.limit, max(0.0, self.limit - self._total))

    def reset(self, now: float) -> float:
        self._expire(now)
        return self._log[-1][0] + self.window - now if self._log else 0.0

    def refund(self, amount: float, charged_at: float, now: float) -> None:
        self._expire(now)
        log = self._log
        for k in range(len(log) - 1, -1, -1):
            entry = log[k]
            if entry[0] == charged_at:
                take = min(amount, entry[1])
                entry[1] -= take
                self._total -= take
                if entry[1] <= 0.0:  # an empty entry must not hold up reset()
                    del log[k]
                    if not log:
                        self._total = 0.0
                return
            if entry[0] < charged_at:
                return


class SlidingWindowCounter(Limiter):
    kind = "sliding_window_counter"

    def __init__(self, limit: float, window: float):
        super().__init__(limit, window)
        self._index = 0
        self._curr = 0.0
        self._prev = 0.0

    def _state(self, now: float) -> tuple[int, float, float, float]:
        """(window index, previous count, current count, elapsed fraction) at ``now``."""
        idx = int((now + _T_EPS) // self.window)
        if idx == self._index:
            prev, curr = self._prev, self._curr
        elif idx == self._index + 1:
            prev, curr = self._curr, 0.0
        else:
            prev, curr = 0.0, 0.0
        frac = min(max((now - idx * self.window) / self.window, 0.0), 1.0)
        return idx, prev, curr, frac

    def _estimate(self, now: float) -> float:
        _, prev, curr, frac = self._state(now)
        return prev * (1.0 - frac) + curr

    def wait(self, amount: float, now: float) -> float:
        if amount > self.limit + self._eps:
            return INF
        idx, prev, curr, frac = self._state(now)
        if prev * (1.0 - frac) + curr + amount <= self.limit + self._eps:
            return 0.0
        room = self.limit - curr - amount
        if room >= 0 and prev > 0:  # fits later in this window as `prev` decays
            return max((1.0 - room / prev) - frac, 0.0) * self.window
        # next window: prev' = curr decays from 1 to 0
        need = 1.0 - (self.limit - amount) / curr if curr > 0 else 0.0
        return (idx + 1) * self.window - now + max(need, 0.0) * self.window

    def admit(self, amount: float, now: float) -> None:
        idx, prev, curr, _ = self._state(now)
        self._index, self._prev, self._curr = idx, prev, curr + amount

    def remaining(self, now: float) -> float:
        return min(self.limit, max(0.0, self.limit - self._estimate(now)))

    def reset(self, now: float) -> float:
        idx, prev, curr, _ = self._state(now)
        if curr > 0:
            return (idx + 2) * self.window - now
        if prev > 0:
            return (idx + 1) * self.window - now
        return 0.0

    def refund(self, amount: float, charged_at: float, now: float) -> None:
        idx, prev, curr, _ = self._state(now)
        charged_idx = int((charged_at + _T_EPS) // self.window)
        if charged_idx == idx:
            curr = max(0.0, curr - amount)
        elif charged_idx == idx - 1:
            prev = max(0.0, prev - amount)
        self._index, self._prev, self._curr = idx, prev, curr


ALGORITHMS: dict[str, type[Limiter]] = {
    cls.kind: cls for cls in (TokenBucket, FixedWindow, SlidingLog, SlidingWindowCounter)
}


def make_limiter(kind: str, limit: float, window: float) -> Limiter:
    if kind not in ALGORITHMS:
        raise ConfigError(did_you_mean(kind, ALGORITHMS, "limiter algorithm"))
    return ALGORITHMS[kind](limit, window)
