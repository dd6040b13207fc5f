"""The engine's fast lane: the event loop of a run whose client groups are all *plain*, with the attempt
written out inside the loop.

A plain group (:func:`plain_group`) sends its open-loop arrivals and its retries to the org's limits with no
fallback model, deadline, observer, lane or project, and the org injects no server errors; its only gates,
if any, are ones that just hold the head of its queue (a pacer): none that counts sends, refusals or
completions, and no bound on the queue.  Most capacity questions are of that shape (the four benchmark days
are), and for them the general engine's per-attempt method calls (arrive, pump, send, refusal, retry, finish)
and its limit set's call were most of the time.  :func:`run` is the same simulation with those calls unrolled
into one loop: same random draws in the same order, same float operations, same event ids on the same SimPy
heap, so the records are identical bit for bit (``tests/test_kernel.py`` compares it with the general path on
random runs; ``Simulation(..., kernel=False)`` forces the general path).  Anything else (a closed loop, a
cooldown...) runs on the general path, :meth:`sim.clock.Clock.run`.

What is inlined, operation for operation, and where its one real definition lives:

* :class:`sim.engine.Simulation`'s ``_arrive``, ``_pump``, ``_wake``, ``_send``, ``_refused``, ``_on_retry``
  and ``_finish``, for a plain group (the gates' ``hold`` and the retry schedule are called; a one-model group
  whose one gate is a :class:`~sim.policies.Pacer` has ``Pacer.hold`` written out, its limit set called);
* :meth:`sim.clock.Clock.merge` (a group's pre-sorted arrivals merged with the heap, one event id each);
* the all-token-bucket :meth:`sim.limitset.LimitSet.acquire` (``_acquire_buckets``) for a limit set with the
  two request units every Groq model has (RPM, RPD) and token units; any other limit set (audio units, another
  limiter) is called.
"""
from __future__ import annotations

from heapq import heappop, heappush
from math import ceil, inf

import numpy as np
from simpy.events import NORMAL, URGENT

from .policies import Pacer
from .records import GAVE_UP, OK, TOO_LARGE, UNIT_INDEX

_ATTEMPT, _ARRIVALS, _PUMP, _STOP = object(), object(), object(), object()  # what a heap entry of this loop holds


def plain_group(sim, c) -> bool:
    """Can group ``c`` of ``sim`` run in this loop?  (See the module docstring.)"""
    pol = c.policy
    return (not c.closed and c.route is None and c.plain and not pol.fallback and not c.observers
            and not c.on_refused and not pol.on_send and pol.queue_size is None and not sim.error_rate)


def usable(sim) -> bool:
    """Is every group of ``sim`` plain (and no lane in use)?"""
    return sim.lanes is None and all(plain_group(sim, c) for c in sim.clients)


def schedule_arrivals(sim, c) -> None:
    """Start group ``c``'s arrivals, as :meth:`sim.engine.Simulation._arrivals` does (same event id)."""
    if c.n:
        sim.events += c.n
        env = sim.env
        now, t = env._now, c.created[0]
        heappush(env._queue, (now + (t - now if t > now else 0.0), NORMAL, next(env._eid), (_ARRIVALS, c, 0)))


def _state(sim, c, buckets: list) -> tuple:
    """Group ``c``'s columns and settings, as one tuple the loop unpacks when it turns to the group.  A group
    whose requests all want its own model (no trace naming models) carries that model's service and limits."""
    pol = c.policy
    m0 = c.chain[0]
    one_model = len(c.model) == 0 or bool((np.frombuffer(c.model, dtype=np.int8) == m0).all())
    net = c.round_trips() if one_model else c.net
    gates = pol.gates
    # a group of one model whose one gate is a pacer: the loop calls the pacer's limit set itself (Pacer.hold)
    pace = gates[0].limits(m0).acquire if one_model and len(gates) == 1 and type(gates[0]) is Pacer else None
    return (c.attempts, c.model, c.charge, c.audio, c.prompt, c.completion, c.max_tokens, c.z_speed, c.z_queue,
            c.qt, c.pt, c.ct, c.admitted, c.outcome, c.finished, c.n429, c.refused, c.refusal_t.append,
            c.refusal_code.append, net, m0, c.svc0, not one_model, c.max_attempts if 429 in c.retry_on else 0,
            pol.backoff, pol.plain_delay, pol.u, c.created, c.n, c.gated, pol.holds, pace, c.queue,
            sim.limitsets[m0], buckets[m0])


def _buckets(ls) -> tuple | None:
    """A limit set's token buckets as the loop reads them: its two request units (RPM and RPD: every model
    Groq publishes has both) and its token units with the largest amount each admits; None for any other
    limit set (another limiter, other request units, audio units), which is called."""
    if (ls.acquire != ls._acquire_buckets or len(ls._requests) != 2
            or not all(is_tokens for _, _, is_tokens, _ in ls._amounts)):
        return None
    (u1, b1), (u2, b2) = ls._requests
    # with each bucket, its constants (rate, capacity, tolerance; a token unit's largest amount and whether it
    # keeps the peaks a refund reads), read from locals instead of attributes
    return (u1, b1, b1.rate, b1.limit, b1._eps, u2, b2, b2.rate, b2.limit, b2._eps,
            [(unit, b, most, b.rate, b.limit, b._eps, b._peak_t is not None) for unit, b, _, most in ls._amounts])


def run(sim, until: float) -> None:
    """Run ``sim`` (every group plain, arrivals started with :func:`schedule_arrivals`) to time ``until``,
    on its clock's heap, exactly as :meth:`sim.clock.Clock.run` would run the general engine."""
    env = sim.env
    queue, eid = env._queue, env._eid
    heappush(queue, (env._now + (until - env._now), URGENT, next(eid), (_STOP, None, 0)))  # SimPy's stop event
    limitsets, services = sim.limitsets, sim.services
    buckets = [_buckets(ls) for ls in limitsets]
    states = {id(c): _state(sim, c, buckets) for c in sim.clients}
    uncached, retry_after, refund = sim.uncached, sim.retry_after, sim.refund
    ceil_rounding = sim.spec.org.retry_after_rounding == "ceil"
    events = sim.events
    unit_index = UNIT_INDEX
    pop, push = heappop, heappush
    group = None
    times = None
    n = j = 0
    now = env._now
    pumping = False
    # the group's own, set when the loop turns to a group
    attempts = model = holds = pace = fifo = gated = charge = audio = None
    while True:
        # ---- the next attempt: the head of a group's own queue, a group's next arrival (merged), or the
        # heap's first entry
        if pumping:  # Simulation._pump: send queued requests while the group's gates let them go
            if not fifo:
                pumping = False
                continue
            i = fifo[0]
            if pace is not None:  # Pacer.hold
                w = pace(charge[i], audio[i], now)
                until = now + w if 0.0 < w < inf else 0.0
            else:
                first = attempts[i] == 0
                mi = model[i]
                until = 0.0
                for hold in holds:
                    until = hold(i, mi, now, first)
                    if until:
                        break
            if until:
                pumping = False
                if until != inf and not now < group.wake_at <= until:  # Simulation._wake
                    group.wake_at = until
                    events += 1
                    push(queue, (now + (until - now if until > now else 0.0), NORMAL, next(eid), (_PUMP, group, 0)))
                continue
            fifo.popleft()
        elif times is not None:  # merging a group's arrivals (Clock.merge)
            j += 1
            if j >= n:
                times = None
                continue
            t = times[j]
            t = now + (t - now if t > now else 0.0)
            e = next(eid)
            if queue[0][0] <= t:  # something queued comes first (the stop entry is always queued)
                push(queue, (t, NORMAL, e, (_ARRIVALS, group, j)))
                times = None
                continue
            now = t
            i = j
            if gated:  # Simulation._arrive: into the group's own queue
                fifo.append(i)
                pumping = True
                continue
        else:
            now, _, _, (kind, c, i) = pop(queue)
            if kind is not _ATTEMPT and kind is not _ARRIVALS and kind is not _PUMP:
                if kind is _STOP:
                    break
                env._now = now  # a light call scheduled by the engine (a token refund)
                kind(c, i)
                continue
            if c is not group:  # turn to the entry's group
                group = c
                (attempts, model, charge, audio, prompt, completion, max_tokens, z_speed, z_queue, qt, pt, ct_col,
                 admitted, outcome, finished, n429, refused, log_t, log_code, net, m0, svc0, mixed, max_tries,
                 backoff, plain_delay, u, created, count, gated, holds, pace, fifo, ls, bk) = states[id(c)]
                m, svc = m0, svc0  # (a group of several models sets them per request)
                if bk is not None:
                    u1, b1, r1, cap1, eps1, u2, b2, r2, cap2, eps2, amounts = bk
            if kind is _ARRIVALS:
                times, n, j = created, count, i
                if gated:  # Simulation._arrive: into the group's own queue
                    fifo.append(i)
                    pumping = True
                    continue
            elif kind is _PUMP:  # a wake-up of the group's queue (Simulation._wake)
                pumping = True
                continue
            elif gated:  # a retry (Simulation._on_retry): through the group's queue, first in line
                fifo.appendleft(i)
                pumping = True
                continue
        # ---- one attempt of request i (Simulation._send, _refused, _finish; a plain group's requests are
        # served by the model they want, which the records' "model" column already holds)
        attempts[i] = tries = attempts[i] + 1
        if mixed:  # (a group of one model has m, svc, ls and bk set when the loop turns to it)
            z, rtt = next(net)
            m = model[i]
            svc, ls, bk = services[m], limitsets[m], buckets[m]
            if bk is not None:
                u1, b1, r1, cap1, eps1, u2, b2, r2, cap2, eps2, amounts = bk
            if m != m0:
                rtt = svc.round_trip(z)
        else:
            rtt = next(net)  # (its network stream holds the round trips only)
        if bk is not None:  # LimitSet._acquire_buckets, operation for operation
            tokens = charge[i]
            blocked = ls._blocked_until
            if now < blocked - 1e-6:
                worst, binding = blocked - now, ls._blocked_by
            else:  # the two request units (RPM, RPD)
                dt = now - b1._t
                level = b1._level + dt * r1 if dt > 0 else b1._level
                seen1 = level = level if level < cap1 else cap1  # noqa: FURB136
                short = 1 - level
                worst, binding = (short / r1, u1) if short > eps1 else (0.0, None)
                dt = now - b2._t
                level = b2._level + dt * r2 if dt > 0 else b2._level
                seen2 = level = level if level < cap2 else cap2  # noqa: FURB136
                short = 1 - level
                if short > eps2:
                    w = short / r2
                    if w > worst:
                        worst, binding = w, u2
                if worst > 0.0:
                    ls._blocked_until, ls._blocked_by = now + worst, binding
            if tokens:  # the token units (TPM, TPD)
                for unit, b, most, rate, cap, eps, _ in amounts:
                    if tokens > most:
                        w = inf
                    else:
                        dt = now - b._t
                        level = b._level + dt * rate if dt > 0 else b._level
                        b._seen = level = level if level < cap else cap  # noqa: FURB136
                        short = tokens - level
                        w = 0.0 if short <= eps else short / rate
                    if w > worst:
                        worst, binding = w, unit
            if worst > 0.0:
                wait = worst
            else:  # admitted: charge every unit its level as just computed, less the amount
                level = seen1 - 1
                b1._level = level if level > 0.0 else 0.0  # noqa: FURB136
                if now > b1._t:
                    b1._t = now
                level = seen2 - 1
                b2._level = level if level > 0.0 else 0.0  # noqa: FURB136
                if now > b2._t:
                    b2._t = now
                if tokens:
                    for _, b, _, _, _, _, peaks in amounts:
                        if peaks:
                            b.admit(tokens, now)  # a refundable bucket keeps its peaks
                            continue
                        level = b._seen - tokens
                        b._level = level if level > 0.0 else 0.0  # noqa: FURB136
                        if now > b._t:
                            b._t = now
                wait = 0.0
        else:
            wait = ls.acquire(charge[i], audio[i], now)
            binding = ls.binding
        if wait == 0.0:
            q, p, ctime = svc.times(prompt[i] * uncached, completion[i], audio[i], z_speed[i], z_queue[i])
            qt[i] = q
            pt[i] = p
            ct_col[i] = ctime
            admitted[i] = now
            fin = now + rtt + q + p + ctime
            if refund:
                unused = max_tokens[i] - completion[i]
                if unused > 0:
                    events += 1
                    push(queue, (now + (fin - now if fin > now else 0.0), NORMAL, next(eid),
                                 (_refund, ls.refund_tokens, (unused, now, fin))))
            outcome[i] = OK
            finished[i] = fin
        elif wait == inf:
            refused[i] = unit_index[binding]
            outcome[i] = TOO_LARGE
            finished[i] = now + rtt
        else:
            n429[i] = tries  # every earlier attempt was a 429 too: any other answer ends a plain request
            refused[i] = k = unit_index[binding]
            log_t(now)
            log_code(m * 8 + k)
            t = now + rtt
            if tries >= max_tries:  # out of attempts, or a client that does not retry 429s
                outcome[i] = GAVE_UP
                finished[i] = t
                continue
            if ceil_rounding:  # headers.retry_after_function("ceil")
                ra = ceil(wait - 1e-9)
                if ra < 1:
                    ra = 1
            else:
                ra = retry_after(wait)
            delay = backoff(i, tries, ra) if plain_delay is None else plain_delay(tries, ra, u)
            events += 1
            push(queue, (now + (t + delay - now), NORMAL, next(eid), (_ATTEMPT, group, i)))
    env._now = now
    sim.events = events


def _refund(refund_tokens, args) -> None:
    refund_tokens(*args)
