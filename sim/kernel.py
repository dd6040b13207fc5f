"""The engine's fast lane: the event loop of a run whose client groups are all *plain*, with the attempt
written out inside the loop.

A plain group (:func:`plain_group`) sends its open-loop arrivals and its retries to the org's limits with no
fallback model, deadline, observer, lane or project, and the org injects no server errors; its only gates,
if any, are ones that just hold the head of its queue (a pacer): none that counts sends, refusals or
completions, and no bound on the queue (nor, for a gated group, a model with no network round trip: a
refusal read as its attempt goes out stops the general path's pump, which this loop does not copy).  Most
capacity questions are of that shape (the four benchmark days are), and for them the general engine's
per-attempt method calls (arrive, pump, send, refusal, retry, finish) and its limit set's call were most of
the time.  :func:`run` is the same simulation with those calls unrolled
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
  limiter) is called;
* :meth:`sim.service.ServiceModel.times` for a group of one model (its ``coefficients()`` as locals), and a
  retry schedule's ``delay`` when the retry-after is one it takes as is (:attr:`sim.policies.Schedule.obeys`).

Three things differ in form, not in result.  A merged group's next arrival is not pushed onto the heap when
something queued comes first: it waits beside it under the key ``(time, priority, id)`` it would have there
and goes first when that key is the smaller (on the heap only when the loop turns to another group or stops).
The state of the limit set in hand (RPM's, RPD's and the first token unit's level and time, the request
units' refusal memory) lives in local variables, written back to the buckets (:func:`_spill`) before anything
else reads them: a refund, a bucket that keeps peaks, another limit set, the end of the run.  Heap entries
are flat, ``(time, priority, id, kind, a)``, with an attempt's kind its group.
"""
from __future__ import annotations

from heapq import heappop, heappush
from math import ceil, exp, inf

import numpy as np
from simpy.events import NORMAL, URGENT

from .policies import Pacer
from .records import ERROR, GAVE_UP, OK, REFUSED_BY, TOO_LARGE, UNIT_INDEX

_ARRIVALS, _PUMP, _STOP = object(), object(), object()  # what a heap entry of this loop holds (else a group)


def plain_group(sim, c) -> bool:
    """Can group ``c`` of ``sim`` run in this loop?  (See the module docstring.)"""
    pol = c.policy
    return (not c.closed and c.route is None and c.plain and not pol.fallback and not c.observers
            and not c.on_refused and not pol.on_send and pol.queue_size is None and not sim.error_rate
            # a gated group with no network: a refusal read as it is sent stops its pump (Simulation._pump)
            and not (c.gated and any(svc.rtt == 0 for svc in sim.services)))


def usable(sim) -> bool:
    """Is every group of ``sim`` plain (and no lane in use)?"""
    return sim.lanes is None and all(plain_group(sim, c) for c in sim.clients)


def schedule_arrivals(sim, c) -> None:
    """Start group ``c``'s arrivals, as :meth:`sim.engine.Simulation._arrivals` does (same event id)."""
    if c.n:
        sim.events += c.n
        env = sim.env
        now, t = env._now, c.created[0]
        heappush(env._queue, (now + (t - now if t > now else 0.0), NORMAL, next(env._eid), _ARRIVALS, (c, 0)))


def _state(c) -> tuple:
    """Group ``c``'s columns and settings, as one tuple the loop unpacks when it turns to the group.  A group
    whose requests all want its own model (no trace naming models) reads only that model's round trips."""
    pol = c.policy
    m0 = c.chain[0]
    one_model = len(c.model) == 0 or bool((np.frombuffer(c.model, dtype=np.int8) == m0).all())
    net = c.round_trips() if one_model else c.net
    gates = pol.gates
    # a group of one model whose one gate is a pacer: the loop calls the pacer's limit set itself (Pacer.hold)
    pace = gates[0].limits(m0).acquire if one_model and len(gates) == 1 and type(gates[0]) is Pacer else None
    # a retry-after the schedule takes as its delay (Schedule.obeys), when the policy adds nothing to the schedule
    obeys = pol.schedule.obeys if pol.plain_delay is not None else 0
    # no timeout: inf, so that the loop tests a round trip against it in one comparison (never true)
    return (c.attempts, c.model, c.charge, c.audio, c.prompt, c.completion, c.max_tokens, c.z_speed, c.z_queue,
            c.qt, c.pt, c.ct, c.admitted, c.outcome, c.finished, c.n429, c.refused, c.refusal_t.append,
            c.refusal_code.append, net, m0, c.svc0, c.svc0.coefficients(), not one_model,
            c.max_attempts if 429 in c.retry_on else 0, pol.backoff, pol.plain_delay, obeys, pol.u, c.created, c.n,
            c.gated, pol.holds, pace, c.queue, inf if pol.timeout is None else pol.timeout, c.max_attempts,
            pol.gives_up, c.timed_out)


def _buckets(ls) -> tuple | None:
    """A limit set's token buckets as the loop reads them: its two request units (RPM and RPD: every model
    Groq publishes has both) and its token units with the largest amount each admits; None for any other
    limit set (another limiter, other request units, audio units), which is called."""
    if (ls.acquire != ls._acquire_buckets or len(ls._requests) != 2 or not ls._amounts
            or not all(is_tokens for _, _, is_tokens, _ in ls._amounts)):
        return None
    (u1, b1), (u2, b2) = ls._requests
    # with each bucket, its unit (as the records' index) and constants (rate, capacity, tolerance; a token
    # unit's largest amount and whether it keeps the peaks a refund reads), read from locals instead of
    # attributes; the first token unit (TPM) unrolled, any others (TPD) in a list
    amounts = [(UNIT_INDEX[unit], b, most, b.rate, b.limit, b._eps, b._peak_t is not None)
               for unit, b, _, most in ls._amounts]
    return (UNIT_INDEX[u1], b1, b1.rate, b1.limit, b1._eps, UNIT_INDEX[u2], b2, b2.rate, b2.limit, b2._eps, *amounts[0],
            amounts[1:])


_B1, _B2, _BT = 1, 6, 11  # where _buckets' tuple holds the RPM, RPD and first token unit's buckets


def _load(ls, bk: tuple) -> tuple:
    """The state the loop keeps in locals while it works with limit set ``ls`` (``bk``: its :func:`_buckets`):
    the request units' refusal memory (its unit as the records' index) and the levels and times of RPM, RPD
    and the first token unit."""
    b1, b2, bt = bk[_B1], bk[_B2], bk[_BT]
    by = ls._blocked_by
    return (ls._blocked_until, by if by is None else UNIT_INDEX[by], b1._level, b1._t, b2._level, b2._t, bt._level,
            bt._t)


def _spill(ls, bk: tuple, blk, blk_by, l1, t1, l2, t2, lt, tt) -> None:
    """Write the state :func:`_load` took back to ``ls`` and its buckets."""
    b1, b2, bt = bk[_B1], bk[_B2], bk[_BT]
    ls._blocked_until, ls._blocked_by = blk, blk_by if blk_by is None else REFUSED_BY[blk_by]
    b1._level, b1._t, b2._level, b2._t, bt._level, bt._t = l1, t1, l2, t2, lt, tt


def run(sim, until: float) -> None:
    """Run ``sim`` (every group plain, arrivals started with :func:`schedule_arrivals`) to time ``until``,
    on its clock's heap, exactly as :meth:`sim.clock.Clock.run` would run the general engine; again with a
    later ``until`` to go on, as SimPy's ``run(until=...)`` (what the loop holds outside the heap and the
    buckets is put back when it stops)."""
    env = sim.env
    queue, eid = env._queue, env._eid
    heappush(queue, (env._now + (until - env._now), URGENT, next(eid), _STOP, None))  # SimPy's stop event
    limitsets, services = sim.limitsets, sim.services
    buckets = [_buckets(ls) for ls in limitsets]
    states = {c: _state(c) for c in sim.clients}
    prefilled, retry_after, refund = sim.prefilled, sim.retry_after, sim.refund
    ceil_rounding = sim.spec.org.retry_after_rounding == "ceil"
    events = sim.events
    unit_index = UNIT_INDEX
    pop, push = heappop, heappush
    group = None
    times = None
    n = j = 0
    ta, ea = inf, 0  # the merged group's next arrival: its time and event id (None: not given yet; inf: none)
    mark = None  # the group in hand when it sends its retries at once (no queue of its own)
    now = env._now
    pumping = retries_only = False
    # the group's own, set when the loop turns to a group
    attempts = model = holds = pace = fifo = gated = charge = audio = log_timeout = prio = None
    # the limit set in hand: its model, and for one the loop writes out (bk, see _buckets) its state in locals
    # (_load), written back (_spill) before anything else reads it and when the loop turns to another
    bound, ls, bk = -1, None, None
    blk = blk_by = l1 = t1 = l2 = t2 = lt = tt = None
    while True:
        # ---- the next attempt: the head of a group's own queue, a group's next arrival (merged), or the
        # heap's first entry
        if pumping:  # Simulation._pump: send queued requests while the group's gates let them go
            if not fifo or retries_only and not group.retrying:
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
                    push(queue, (now + (until - now if until > now else 0.0), NORMAL, next(eid), _PUMP, group))
                continue
            fifo.popleft()
            if group.retrying:
                group.retrying -= 1
        else:
            if ta is None:  # Clock.merge: the merged group's next arrival gets its time and event id
                j += 1
                if j < n:
                    t = times[j]
                    ta = now + (t - now if t > now else 0.0)
                    ea = next(eid)
                else:
                    ta = inf  # (its arrivals all sent)
            # the arrival waits outside the heap with the key (ta, NORMAL, ea) it would have in it, and goes
            # first when that is smaller than the heap's first entry's key (the stop entry is always queued)
            if ta < queue[0][0] or ta == (h := queue[0])[0] and ta != inf and (NORMAL, ea) < (h[1], h[2]):
                now, i, ta = ta, j, None
                if gated:  # Simulation._arrive: into the group's own queue
                    fifo.append(i)
                    pumping, retries_only = True, False
                    continue
            else:
                now, _, _, kind, i = pop(queue)
                if kind is not mark:  # (mark: the group in hand, when it sends a retry at once)
                    if kind in states:  # a retry of another group, or of one with a queue of its own
                        c = kind
                    elif kind is _ARRIVALS:
                        c, i = i
                    elif kind is _PUMP:
                        c = i
                    elif kind is _STOP:
                        if ta != inf:  # the waiting arrival into the heap, where the clock keeps it
                            push(queue, (ta, NORMAL, ea, _ARRIVALS, (group, j)))
                        if bk is not None:
                            _spill(ls, bk, blk, blk_by, l1, t1, l2, t2, lt, tt)
                        break
                    else:  # a light call scheduled by the loop (a token refund)
                        env._now = now
                        if bk is None:
                            kind(*i)
                        else:  # (it reads and writes the buckets: their state out of the locals and back)
                            _spill(ls, bk, blk, blk_by, l1, t1, l2, t2, lt, tt)
                            kind(*i)
                            blk, blk_by, l1, t1, l2, t2, lt, tt = _load(ls, bk)
                        continue
                    if c is not group:  # turn to the entry's group
                        if ta != inf:  # (its waiting arrival into the heap, as the clock would hold it)
                            push(queue, (ta, NORMAL, ea, _ARRIVALS, (group, j)))
                            ta = inf
                        group = c
                        (attempts, model, charge, audio, prompt, completion, max_tokens, z_speed, z_queue, qt, pt,
                         ct_col, admitted, outcome, finished, n429, refused, log_t, log_code, net, m0, svc0,
                         (s_nmu, s_sigma, q_mu, q_sigma, fixed, inv_pre, inv_out, inv_audio), mixed, max_tries,
                         backoff, plain_delay, obeys, u, created, count, gated, holds, pace, fifo, timeout,
                         max_attempts, gives_up, log_timeout) = states[c]
                        mark = None if gated else c
                        prio = URGENT if gated else NORMAL  # a retry's: a gated group's go first at their instant
                        m, svc = m0, svc0  # (a group of several models sets them per request)
                        if m != bound:  # the model's limit set in hand
                            if bk is not None:  # (the state of the limit set in hand back to its buckets)
                                _spill(ls, bk, blk, blk_by, l1, t1, l2, t2, lt, tt)
                            bound, ls, bk = m, limitsets[m], buckets[m]
                            if bk is not None:
                                (u1, b1, r1, cap1, eps1, u2, b2, r2, cap2, eps2, ut, bt, most_t, rt, capt, epst,
                                 peaks_t, amounts) = bk
                                blk, blk_by, l1, t1, l2, t2, lt, tt = _load(ls, bk)
                    if kind is _ARRIVALS:
                        times, n, j, ta = created, count, i, None
                        if gated:  # Simulation._arrive: into the group's own queue
                            fifo.append(i)
                            pumping, retries_only = True, False
                            continue
                    elif kind is _PUMP:  # a wake-up of the group's queue (Simulation._wake)
                        pumping, retries_only = True, False
                        continue
                    elif gated:  # a retry (Simulation._on_retry): behind the retries waiting; only retries go
                        fifo.insert(group.retrying, i)
                        group.retrying += 1
                        pumping = retries_only = True
                        continue
        # ---- one attempt of request i (Simulation._send, _refused, _finish; a plain group's requests are
        # served by the model they want, which the records' "model" column already holds)
        attempts[i] = tries = attempts[i] + 1
        if mixed:  # (a group of one model has m, svc, ls and bk in hand from when the loop turned to it)
            z, rtt = next(net)
            m = model[i]
            svc = services[m]
            if m != bound:
                if bk is not None:  # (the state of the limit set in hand back to its buckets)
                    _spill(ls, bk, blk, blk_by, l1, t1, l2, t2, lt, tt)
                bound, ls, bk = m, limitsets[m], buckets[m]
                if bk is not None:
                    (u1, b1, r1, cap1, eps1, u2, b2, r2, cap2, eps2, ut, bt, most_t, rt, capt, epst, peaks_t,
                     amounts) = bk
                    blk, blk_by, l1, t1, l2, t2, lt, tt = _load(ls, bk)
            if m != m0:
                rtt = svc.round_trip(z)
        else:
            rtt = next(net)  # (its network stream holds the round trips only)
        if bk is not None:  # LimitSet._acquire_buckets, operation for operation, its state in locals
            tokens = charge[i]
            if now < blk - 1e-6:
                worst, binding = blk - now, blk_by
            else:  # the two request units (RPM, RPD)
                dt = now - t1
                level = l1 + dt * r1 if dt > 0 else l1
                seen1 = level = level if level < cap1 else cap1  # noqa: FURB136
                short = 1 - level
                if short > eps1:
                    worst, binding = short / r1, u1
                else:
                    worst, binding = 0.0, None
                dt = now - t2
                level = l2 + dt * r2 if dt > 0 else l2
                seen2 = level = level if level < cap2 else cap2  # noqa: FURB136
                short = 1 - level
                if short > eps2:
                    w = short / r2
                    if w > worst:
                        worst, binding = w, u2
                if worst > 0.0:
                    blk, blk_by = now + worst, binding
            if tokens:  # the token units (TPM, then any others: TPD)
                if tokens > most_t:
                    w = inf
                else:
                    dt = now - tt
                    level = lt + dt * rt if dt > 0 else lt
                    seen_t = level = level if level < capt else capt  # noqa: FURB136
                    short = tokens - level
                    w = 0.0 if short <= epst else short / rt
                if w > worst:
                    worst, binding = w, ut
                if amounts:  # (empty for most models: no iterator made for nothing)
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
        else:
            worst = ls.acquire(charge[i], audio[i], now)
            if worst:
                binding = unit_index[ls.binding]
        if worst == 0.0:
            if bk is not None:  # admitted: charge every unit its level as just computed, less the amount
                level = seen1 - 1
                l1 = level if level > 0.0 else 0.0  # noqa: FURB136
                if now > t1:
                    t1 = now
                level = seen2 - 1
                l2 = level if level > 0.0 else 0.0  # noqa: FURB136
                if now > t2:
                    t2 = now
                if tokens:
                    if peaks_t:  # a refundable bucket keeps its peaks
                        bt._level, bt._t = lt, tt
                        bt.admit(tokens, now)
                        lt, tt = bt._level, bt._t
                    else:
                        level = seen_t - tokens
                        lt = level if level > 0.0 else 0.0  # noqa: FURB136
                        if now > tt:
                            tt = now
                    if amounts:
                        for _, b, _, _, _, _, peaks in amounts:
                            if peaks:
                                b.admit(tokens, now)  # a refundable bucket keeps its peaks
                                continue
                            level = b._seen - tokens
                            b._level = level if level > 0.0 else 0.0  # noqa: FURB136
                            if now > b._t:
                                b._t = now
            if mixed:
                q, p, ctime = svc.times(prompt[i] * prefilled[m], completion[i], audio[i], z_speed[i], z_queue[i])
            else:  # ServiceModel.times, with its coefficients() as locals
                inv_s = exp(s_nmu - s_sigma * z_speed[i])
                q = exp(q_mu + q_sigma * z_queue[i])
                p = (fixed + prompt[i] * prefilled[m] * inv_pre) * inv_s
                ctime = (completion[i] * inv_out + audio[i] * inv_audio) * inv_s
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
                                 ls.refund_tokens, (unused, now, fin)))
            if fin - now > timeout:  # Simulation._refused(..., TIMED_OUT, None) (no timeout: inf)
                log_timeout(i, now, m, fin)  # (_Group.timed_out: still charged; the request's service drawn again)
                t = now + timeout
                if tries >= max_attempts:  # a timeout is retried whatever retry_on says, while attempts remain
                    outcome[i] = ERROR
                    finished[i] = t
                    continue
                delay = backoff(i, tries, None) if plain_delay is None else plain_delay(tries, None, u)
                events += 1
                push(queue, (now + (t + delay - now), prio, next(eid), group, i))
                continue
            outcome[i] = OK
            finished[i] = fin
        elif rtt > timeout:  # a 413 or 429 that comes too late: a timeout, retried
            refused[i] = binding  # (as above; the server's refusal stays in the records and the 429 log)
            if worst != inf:
                n429[i] += 1
                log_t(now)
                log_code(m * 8 + binding)
            t = now + timeout
            if tries >= max_attempts:
                outcome[i] = ERROR
                finished[i] = t
                continue
            delay = backoff(i, tries, None) if plain_delay is None else plain_delay(tries, None, u)
            events += 1
            push(queue, (now + (t + delay - now), prio, next(eid), group, i))
            continue
        elif worst == inf:
            refused[i] = binding
            outcome[i] = TOO_LARGE
            finished[i] = now + rtt
        else:
            n429[i] += 1
            refused[i] = k = binding
            log_t(now)
            log_code(m * 8 + k)
            t = now + rtt
            if tries >= max_tries:  # out of attempts, or a client that does not retry 429s
                outcome[i] = GAVE_UP
                finished[i] = t
                continue
            if ceil_rounding:  # headers.retry_after_function("ceil")
                ra = ceil(worst - 1e-9)
                if ra < 1:
                    ra = 1
            else:
                ra = retry_after(worst)
            if ra > gives_up:  # a retry-after the client does not wait for (Schedule.gives_up_above)
                outcome[i] = GAVE_UP
                finished[i] = t
                continue
            if 0 < ra <= obeys:  # (the schedule's delay is the retry-after itself)
                delay = float(ra)
            elif plain_delay is None:
                delay = backoff(i, tries, ra)
            else:
                delay = plain_delay(tries, ra, u)
            events += 1  # (an attempt: its group, its row)
            push(queue, (now + (t + delay - now), prio, next(eid), group, i))
    env._now = now
    sim.events = events

