"""One attempt of a request: sent, checked against the org's limits, answered, and what the client does with
the answer (record it, retry later, fall back, give up).

This is the simulator's hot path: a day of overload is millions of attempts, and each one's cost is almost
all interpreter overhead (attribute look-ups, calls, boxing).  So :func:`attempt_function` builds, once per
client group, one function that does the whole attempt with everything it reads bound as local names: the
group's columns, its policy's pieces, the clock's heap.  The behaviour is the engine's (the rules are listed
in :mod:`sim.engine`); options a group does not use cost one false test each.

The function has the clock's call signatures: ``send(c, i, now)`` from the arrival merge and the client's
queue, ``send(c, i)`` (now = the clock's time) when a scheduled retry comes up.
"""
from __future__ import annotations

import math
from heapq import heappush

from simpy.events import NORMAL

from .flex import CAPACITY_EXCEEDED
from .records import DEADLINE, ERROR, GAVE_UP, OK, TOO_LARGE, UNIT_INDEX


def attempt_function(sim, c):
    """The attempt function of client group ``c`` of simulation ``sim`` (build it once the group is set up:
    it binds the group's columns, policy hooks and observers as they are then)."""
    env = sim.env
    heap, eid = env._queue, env._eid
    pol = c.policy
    # the group's columns (the same array objects for the whole run: blocks are appended in place)
    attempts, pos, chain, model, created = c.attempts, c.pos, c.chain, c.model, c.created
    charge, audio_col, prompt, completion, max_tokens = c.charge, c.audio, c.prompt, c.completion, c.max_tokens
    z_speed, z_queue, qt, pt, ct = c.z_speed, c.z_queue, c.qt, c.pt, c.ct
    admitted, served, outcome, finished = c.admitted, c.served, c.outcome, c.finished
    n429, refused_by, log_t, log_code = c.n429, c.refused, c.refusal_t.append, c.refusal_code.append
    services, limitsets, svc0, net, route = sim.services, sim.limitsets, c.svc0, c.net, c.route
    error_rate, error_status, fault = sim.error_rate, sim.error_status, c.fault
    refund, uncached, retry_after, finish = sim.refund, sim.uncached, sim.retry_after, sim._finish
    plain, observers, deadline = c.plain, c.observers, c.deadline
    fallback, next_model, backoff, on_refused = pol.fallback, pol.next_model, pol.backoff, c.on_refused
    retry_on, max_attempts = c.retry_on, c.max_attempts
    unit_index, inf = UNIT_INDEX, math.inf

    def answered_no(i: int, tries: int, t: float, status: int, ra: int | None) -> None:
        """The client reads a 429, 498 or 5xx at ``t``, after ``tries`` attempts: fall back, retry later, or
        give up.  ``ra`` is the answer's ``retry-after`` (whole seconds; None without one)."""
        nxt = 0
        if fallback:
            pos[i] = nxt = next_model(pos[i], status)
        if nxt:
            delay = 0.0  # the fallback model, at once
        else:
            if status not in retry_on or tries >= max_attempts:
                end = GAVE_UP if status == 429 else ERROR
                if plain:
                    outcome[i] = end
                    finished[i] = t
                else:
                    finish(c, i, end, t)
                return
            delay = backoff(i, tries, ra)
            for hook in on_refused:
                hook(t, ra, delay)
        if deadline is not None and t + delay >= created[i] + deadline:
            finish(c, i, DEADLINE, created[i] + deadline)  # no attempt goes out once the client has given up
            return
        sim.events += 1
        now = env._now
        heappush(heap, (now + (t + delay - now), NORMAL, next(eid), (again, c, i)))

    def send(_, i: int, now: float | None = None) -> None:
        """Attempt request ``i`` at ``now``."""
        if now is None:
            now = env._now
        attempts[i] = tries = attempts[i] + 1
        p = pos[i]
        m = chain[p] if p else model[i]
        svc = services[m]
        z, rtt = next(net)
        if svc is not svc0:
            rtt = svc.round_trip(z)
        if error_rate and fault() < error_rate:
            answered_no(i, tries, now + rtt, error_status, None)
            return
        audio = audio_col[i]
        if route is None:
            limits = limitsets[m]
            wait = limits.acquire(charge[i], audio, now)
        else:
            limits, wait = route.send(c, i, m, now)
            if limits is None:  # flex capacity short: 498 capacity_exceeded, fast, nothing charged
                answered_no(i, tries, now + rtt, CAPACITY_EXCEEDED, None)
                return
        for observe in observers:
            observe(m, limits, now, i, wait, rtt)
        served[i] = m
        if wait == 0.0:
            q, pre, out = svc.times(prompt[i] * uncached, completion[i], audio, z_speed[i], z_queue[i])
            qt[i] = q
            pt[i] = pre
            ct[i] = out
            admitted[i] = now
            fin = now + rtt + q + pre + out
            if refund:
                unused = max_tokens[i] - completion[i]
                if unused > 0:
                    sim._at(fin, limits.refund_tokens, unused, now, fin)
            if plain:  # what finish() does for a group with nothing more to do at a finish
                outcome[i] = OK
                finished[i] = fin
            else:
                finish(c, i, OK, fin)
        elif wait == inf:
            refused_by[i] = unit_index[limits.binding]
            finish(c, i, TOO_LARGE, now + rtt)
        else:
            n429[i] += 1
            refused_by[i] = k = unit_index[limits.binding]
            log_t(now)
            log_code(m * 8 + k)
            answered_no(i, tries, now + rtt, 429, retry_after(wait))

    if c.gated:
        queue, pump = c.queue, sim._pump

        def again(_, i: int) -> None:
            """A retry is due: it goes first in the client's own queue (it is among the oldest requests)."""
            queue.appendleft(i)
            pump(c)
    else:
        again = send
    return send
