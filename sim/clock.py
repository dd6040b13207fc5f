"""The simulation clock: SimPy's environment, extended to carry plain function calls as well as events.

A SimPy event costs an object, a callbacks list and a bound method per firing; most of what the simulator
schedules (the next arrival, a retry, a pump of a client's queue) is just "call f(a, b) at time t".  This
environment keeps SimPy's heap, its ``(time, priority, event id)`` order and its id counter, and puts such
calls in the heap as ``(f, a, b)`` tuples in the event's place: :meth:`call_at` costs one tuple and one
heap push, and :meth:`run` calls it when it comes up.  A pre-sorted stream (a client group's arrivals) is
merged with the heap by :meth:`merge`: an item due before anything queued is handled at once.
Everything else (processes, timeouts, conditions) is untouched SimPy, so closed-loop users stay ordinary
SimPy processes, and the firing order is exactly what the same calls scheduled as :class:`simpy.Timeout`
events would have had.
"""
from __future__ import annotations

from heapq import heappop, heappush

import simpy
from simpy.core import EmptySchedule, StopSimulation
from simpy.events import NORMAL, URGENT, Event


class Clock(simpy.Environment):
    """A :class:`simpy.Environment` whose queue also holds light calls (see the module docstring)."""

    def call_at(self, t: float, fn, a, b) -> None:
        """Call ``fn(a, b)`` at time ``t`` (never before now), ordered like a :class:`simpy.Timeout`
        created at this moment with delay ``t - now``."""
        now = self._now
        heappush(self._queue, (now + (t - now if t > now else 0.0), NORMAL, next(self._eid), (fn, a, b)))

    def call_after(self, delay: float, fn, a, b) -> None:
        """Call ``fn(a, b)`` after ``delay`` seconds (>= 0)."""
        heappush(self._queue, (self._now + delay, NORMAL, next(self._eid), (fn, a, b)))

    def call_first_after(self, delay: float, fn, a, b) -> None:
        """Call ``fn(a, b)`` after ``delay`` seconds (>= 0), ahead of every ordinary entry due at that instant
        (SimPy's ``URGENT`` priority; among such calls, in the order they were scheduled)."""
        heappush(self._queue, (self._now + delay, URGENT, next(self._eid), (fn, a, b)))

    def merge(self, stream: tuple, i: int) -> None:
        """Merge a pre-sorted stream ``(times, fn, a)`` with the queue from item ``i``, which is due now: call
        ``fn(a, j, now)`` for item ``j`` with the clock at ``times[j]``, for ``j = i, i + 1, ...`` as long as
        nothing queued comes first; the first item that cannot go now is scheduled (as a call of this method)
        and the merge resumes there.  Each item uses one event id, as a :meth:`call_at` per item would, so
        the order of everything is that of scheduling each item on its own (a queued entry at the same time
        has an older id: it goes first).  Start a stream with ``call_at(times[0], clock.merge, stream, 0)``."""
        times, fn, a = stream
        n, queue, eid, merge = len(times), self._queue, self._eid, self.merge
        while True:
            fn(a, i, self._now)
            i += 1
            if i >= n:
                return
            now = self._now
            t = times[i]
            t = now + (t - now if t > now else 0.0)
            e = next(eid)
            if queue and queue[0][0] <= t:
                heappush(queue, (t, NORMAL, e, (merge, stream, i)))
                return
            self._now = t

    def step(self) -> None:
        """Process the next entry: a light call, or a SimPy event as :meth:`simpy.Environment.step` does."""
        try:
            self._now, _, _, event = heappop(self._queue)
        except IndexError:
            raise EmptySchedule from None
        if event.__class__ is tuple:
            event[0](event[1], event[2])
            return
        self._fire(event)

    def _fire(self, event: Event) -> None:
        callbacks, event.callbacks = event.callbacks, None
        try:
            for callback in callbacks:
                callback(event)
        except StopSimulation:
            event.callbacks = callbacks[callbacks.index(callback) + 1:]
            self.schedule(event, URGENT - 1)
            raise
        if not event._ok and not hasattr(event, "_defused"):
            exc = type(event._value)(*event._value.args)
            exc.__cause__ = event._value
            raise exc

    def run(self, until=None):
        """:meth:`simpy.Environment.run`, with light calls made in a tight loop instead of one :meth:`step`
        call each: ``until`` a number (run until the clock reaches it), an event (run until it has been
        processed and return its value; a :exc:`RuntimeError` if nothing is left to do before) or None (run
        until nothing is left)."""
        if until is not None:
            if not isinstance(until, Event):
                at = until if isinstance(until, int) else float(until)
                if at <= self._now:
                    raise ValueError(f"until ({at}) must be greater than the current simulation time")
                until = Event(self)
                until._ok, until._value = True, None
                self.schedule(until, URGENT, at - self._now)
            elif until.callbacks is None:  # processed already
                return until.value
            until.callbacks.append(StopSimulation.callback)
        queue, pop, fire = self._queue, heappop, self._fire
        try:
            while queue:
                self._now, _, _, event = pop(queue)
                if event.__class__ is tuple:
                    event[0](event[1], event[2])
                else:
                    fire(event)
        except StopSimulation as exc:
            return exc.args[0]
        if until is not None:
            raise RuntimeError(f'No scheduled events left but "until" event was not triggered: {until}')
        return None
