"""A third baseline: a minimal hand-written ``heapq`` event loop doing the same work as the engine, for the
benchmark's one-group workloads (``steady``, ``overload``): no generality at all.

It reads the engine's own pre-sampled request columns (so arrivals, sizes and service draws are the same),
draws the network round trips from the same stream, keeps the org's token buckets (RPM, RPD, TPM and TPD
when the model has it) in local variables, and retries a 429 by the groq SDK's rule or not at all, writing the
same record columns.  ``bench.py`` checks its records identical to the engine's, so engine time / this loop's
time is what the engine's generality costs against the practical limit of plain Python.
"""
from __future__ import annotations

import itertools
import math
from heapq import heappop, heappush

from sim.engine import Simulation
from sim.policies import GroqSDK
from sim.records import GAVE_UP, OK, UNIT_INDEX
from sim.workload import BLOCK, NETWORK


def supported(sim: Simulation) -> bool:
    """One open-loop group on one model with RPM, RPD and TPM (and optionally TPD) token buckets, no refunds,
    retrying 429s the groq SDK's way without a retry-after floor, or not at all; nothing else."""
    if len(sim.clients) != 1 or sim.lanes is not None or sim.refund or sim.error_rate:
        return False
    c = sim.clients[0]
    pol, ls = c.policy, sim.limitsets[c.chain[0]]
    units = set(ls.units)
    return (not c.closed and c.plain and not c.gated and not pol.fallback and not c.observers
            and units in ({"rpm", "rpd", "tpm"}, {"rpm", "rpd", "tpm", "tpd"})
            and ls.acquire == ls._acquire_buckets and sim.spec.org.retry_after_rounding == "ceil"
            and (pol.max_attempts == 1 or (isinstance(pol.schedule, GroqSDK) and not pol.honor
                                           and 429 in pol.retry_on)))


def run(sim: Simulation):
    """Run ``sim`` (see :func:`supported`) with this loop; returns its RunResult."""
    until = sim.spec.duration + sim.spec.drain
    c = sim.clients[0]
    sim._generate(c)
    ls = sim.limitsets[c.chain[0]]
    rpm, rpd, tpm, tpd = (ls.units.get(u) for u in ("rpm", "rpd", "tpm", "tpd"))
    has_tpd = tpd is not None
    tpd = tpd or tpm  # (unused without TPD)
    svc = c.svc0
    s_nmu, s_sigma, q_mu, q_sigma = svc._s_nmu, svc._s_sigma, svc._q_mu, svc._q_sigma
    fixed, inv_pre, inv_out, inv_audio = svc._fixed, svc._inv_pre, svc._inv_out, svc._inv_audio
    r_mu, r_sigma = svc._r_mu, svc._r_sigma
    exp, ceil, inf = math.exp, math.ceil, math.inf
    draw = c.rngs[NETWORK].standard_normal
    net = itertools.chain.from_iterable(map(lambda z: [exp(r_mu + r_sigma * x) for x in z.tolist()],
                                            map(draw, itertools.repeat(BLOCK))))
    created, n = c.created, c.n
    attempts, charge, prompt, completion, audio = c.attempts, c.charge, c.prompt, c.completion, c.audio
    zsp, zqu = c.z_speed, c.z_queue
    qt, pt, ctc, admitted, outcome, finished = c.qt, c.pt, c.ct, c.admitted, c.outcome, c.finished
    n429, refused, log_t, log_code = c.n429, c.refused, c.refusal_t.append, c.refusal_code.append
    uncached = sim.prefilled[c.chain[0]]  # (one model: its prompt share prefilled)
    code = 8 * c.chain[0]  # the refusal log's model * 8 + unit
    max_attempts = c.policy.max_attempts
    sched, u = c.policy.schedule, c.policy.u
    k_rpm, k_rpd, k_tpm, k_tpd = UNIT_INDEX["rpm"], UNIT_INDEX["rpd"], UNIT_INDEX["tpm"], UNIT_INDEX["tpd"]
    rpm_rate, rpd_rate, tpm_rate, tpd_rate = rpm.rate, rpd.rate, tpm.rate, tpd.rate
    rpm_eps, rpd_eps, tpm_eps, tpd_eps = rpm._eps, rpd._eps, tpm._eps, tpd._eps
    rpm_cap, rpd_cap, tpm_cap, tpd_cap = rpm.limit, rpd.limit, tpm.limit, tpd.limit
    tpm_most, tpd_most = tpm_cap + tpm_eps, tpd_cap + tpd_eps
    rpm_l, rpm_t, rpd_l, rpd_t = rpm._level, rpm._t, rpd._level, rpd._t
    tpm_l, tpm_t, tpd_l, tpd_t = tpm._level, tpm._t, tpd._level, tpd._t
    s_rpm = s_rpd = s_tpm = s_tpd = 0.0
    blocked, blocked_k = -inf, 0
    heap = []
    seq = itertools.count()
    next(seq)  # the engine's clock gives its stop event an id
    events = n
    j = 0
    now = 0.0
    nxt = created[0] if n else inf
    while True:
        if heap and heap[0][0] <= nxt:  # a retry first (ties: the older entry, as the engine's heap)
            if heap[0][0] >= until:
                break
            now, _, i = heappop(heap)
        elif j < n:
            t = nxt
            now = now + (t - now if t > now else 0.0)
            i = j
            j += 1
            nxt = created[j] if j < n else inf
            next(seq)
        else:
            break
        attempts[i] = tries = attempts[i] + 1
        rtt = next(net)
        tok = charge[i]
        if now < blocked - 1e-6:  # the request units' refusal, remembered
            worst, kb = blocked - now, blocked_k
        else:
            worst, kb = 0.0, 0
            dt = now - rpm_t
            lv = rpm_l + dt * rpm_rate if dt > 0 else rpm_l
            s_rpm = lv = lv if lv < rpm_cap else rpm_cap  # noqa: FURB136
            if 1 - lv > rpm_eps:
                worst, kb = (1 - lv) / rpm_rate, k_rpm
            dt = now - rpd_t
            lv = rpd_l + dt * rpd_rate if dt > 0 else rpd_l
            s_rpd = lv = lv if lv < rpd_cap else rpd_cap  # noqa: FURB136
            if 1 - lv > rpd_eps:
                w = (1 - lv) / rpd_rate
                if w > worst:
                    worst, kb = w, k_rpd
            if worst > 0.0:
                blocked, blocked_k = now + worst, kb
        if tok:
            if tok > tpm_most:
                w = inf
            else:
                dt = now - tpm_t
                lv = tpm_l + dt * tpm_rate if dt > 0 else tpm_l
                s_tpm = lv = lv if lv < tpm_cap else tpm_cap  # noqa: FURB136
                w = 0.0 if tok - lv <= tpm_eps else (tok - lv) / tpm_rate
            if w > worst:
                worst, kb = w, k_tpm
            if has_tpd:
                if tok > tpd_most:
                    w = inf
                else:
                    dt = now - tpd_t
                    lv = tpd_l + dt * tpd_rate if dt > 0 else tpd_l
                    s_tpd = lv = lv if lv < tpd_cap else tpd_cap  # noqa: FURB136
                    w = 0.0 if tok - lv <= tpd_eps else (tok - lv) / tpd_rate
                if w > worst:
                    worst, kb = w, k_tpd
        if worst == 0.0:
            lv = s_rpm - 1
            rpm_l = lv if lv > 0.0 else 0.0  # noqa: FURB136
            rpm_t = now if now > rpm_t else rpm_t
            lv = s_rpd - 1
            rpd_l = lv if lv > 0.0 else 0.0  # noqa: FURB136
            rpd_t = now if now > rpd_t else rpd_t
            if tok:
                lv = s_tpm - tok
                tpm_l = lv if lv > 0.0 else 0.0  # noqa: FURB136
                tpm_t = now if now > tpm_t else tpm_t
                if has_tpd:
                    lv = s_tpd - tok
                    tpd_l = lv if lv > 0.0 else 0.0  # noqa: FURB136
                    tpd_t = now if now > tpd_t else tpd_t
            inv_s = exp(s_nmu - s_sigma * zsp[i])
            q = exp(q_mu + q_sigma * zqu[i])
            p = (fixed + prompt[i] * uncached * inv_pre) * inv_s
            ct = (completion[i] * inv_out + audio[i] * inv_audio) * inv_s
            qt[i] = q
            pt[i] = p
            ctc[i] = ct
            admitted[i] = now
            outcome[i] = OK
            finished[i] = now + rtt + q + p + ct
        elif worst == inf:
            raise NotImplementedError("a request larger than a limit (413): not in the benchmark workloads")
        else:
            n429[i] = tries
            refused[i] = kb
            log_t(now)
            log_code(code + kb)
            t = now + rtt
            if tries >= max_attempts:
                outcome[i] = GAVE_UP
                finished[i] = t
                continue
            ra = ceil(worst - 1e-9)
            ra = ra if ra > 1 else 1
            delay = float(ra) if ra <= 60 else sched.delay(tries, ra, u)
            events += 1
            heappush(heap, (now + (t + delay - now), next(seq), i))
    sim.events = events
    return sim.result()
