"""A second baseline: the simulator's own engine code driven by a minimal ``heapq`` event loop instead of its
SimPy-based :class:`sim.clock.Clock`.

Same calls, same event ids, same order: the records are identical (``bench.py`` checks it), so the time
difference is exactly what building on SimPy costs this design.  Closed-loop users (SimPy processes) are not
supported here; the benchmark workloads are all open loop.
"""
from __future__ import annotations

from heapq import heappop, heappush
from itertools import count

from sim.clock import Clock


class HeapClock:
    """The part of :class:`sim.clock.Clock` the open-loop engine uses, on a bare heap."""

    def __init__(self):
        self._now, self._queue, self._eid = 0.0, [], count()

    @property
    def now(self) -> float:
        return self._now

    def call_at(self, t, fn, a, b):
        now = self._now
        heappush(self._queue, (now + (t - now if t > now else 0.0), 1, next(self._eid), (fn, a, b)))

    def call_after(self, delay, fn, a, b):
        heappush(self._queue, (self._now + delay, 1, next(self._eid), (fn, a, b)))

    #: the clock's own merge of pre-sorted arrivals: it reads only ``_now``, ``_queue`` and ``_eid``, which this
    #: loop keeps the same way (priority 1 is SimPy's NORMAL)
    merge = Clock.merge

    def run(self, until):
        next(self._eid)  # SimPy's run schedules its stop event: keep the same ids
        queue, pop = self._queue, heappop
        while queue and queue[0][0] < until:
            self._now, _, _, (fn, a, b) = pop(queue)
            fn(a, b)
        self._now = until
