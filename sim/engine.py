"""The SimPy model: client groups send requests to one Groq organization and live with its limits.

Data flows one way: a :class:`~sim.spec.RunSpec` + a seed -> workloads sampled in vectors
(:mod:`sim.workload`) -> this event loop (arrivals, attempts, retries, client-side queues) -> columnar
records (:mod:`sim.records`).  What a client does about refusals is its :class:`~sim.policies.ClientPolicy`;
what a response says about limits comes from :mod:`sim.headers`; this module only keeps the clock.

Modelling rules (docs/modelling.md has the full list):

* The org's limits are checked when an attempt is sent; the client learns the answer one network round trip
  later (``rtt``, drawn per answer from the model's lognormal): a 429/413/5xx after ``rtt``, a success after
  ``rtt + queue_time + total_time`` with ``total_time = prompt_time + completion_time``, as Groq's ``usage``
  reports them (queue time apart).
* One :class:`~sim.limitset.LimitSet` per model, shared by every client group (limits are org-level).
* Events are scheduled only when somebody waits for them: a success that nothing depends on is recorded
  at once with its finish time; completions become events only for closed loops, in-flight caps and
  token refunds.
"""
from __future__ import annotations

import itertools
import math
from collections import deque
from functools import partial

import numpy as np
from simpy.events import Timeout

from .clock import Clock
from .config import Client
from .errors import ConfigError, KeyedError, did_you_mean
from .fields import is_whole
from .flex import CAPACITY_EXCEEDED
from . import kernel as fast_lane
from .headers import retry_after_function
from .lanes import Lanes, uses_lanes
from .limitset import LimitSet
from .policies import TIMED_OUT, ClientPolicy, Pacer, client_policy
from .records import (DEADLINE, DROPPED, ERROR, GAVE_UP, OK, PENDING, TOO_LARGE, UNIT_INDEX, Columns, RunResult,
                      earlier_admissions, frames)
from .service import ServiceModel
from .spec import RunSpec
from .workload import (ARRIVALS, BLOCK, FAULTS, NETWORK, POLICY, RESERVICE, SERVICE, SIZES, Normals, Uniforms,
                       client_streams, open_loop, sizes)


#: a closed-loop group whose users sent this many requests in a row that ended the instant they began, with no
#: think time, would loop for ever at one instant of simulated time: the run stops with an error instead
INSTANT_LOOP = 10_000


class _Group(Columns):
    """One client group during a run: its request columns (inherited, so the hot path reads them as plain
    attributes), its policy, model chain, random streams and client-side queue."""

    def __init__(self, index: int, cfg: Client, chain: list[int], seed: np.random.SeedSequence):
        super().__init__()
        self.index, self.cfg, self.chain = index, cfg, chain
        self.rngs = client_streams(seed)
        self.fault = Uniforms(self.rngs[FAULTS])
        #: (z, round trip on the primary model) per answer: ``next(self.net)`` (see _network_block)
        self.net = itertools.chain.from_iterable(map(self._network_block, itertools.repeat(None)))
        self.svc0 = None  # the primary model's service
        self.policy: ClientPolicy | None = None
        self.route = None  # a sim.lanes.Route when the group uses a service tier or project
        #: the client's own queue (a gated group): its first ``retrying`` entries are retries, in the order they
        #: fell due, then new requests in arrival order
        self.queue: deque[int] = deque()
        self.retrying = 0
        self.wake_at = -1.0
        #: set by a send whose refusal the client reads at once (no round trip): what that refusal starts is due
        #: now, ahead of the rest of the queue (:meth:`_pump`)
        self.stalled = False
        self._rtts = None  # the round-trip-only network stream, once made (round_trips)
        self.closed = not cfg.arrival.open_loop
        self.instants = 0  # closed loop: requests in a row that ended the instant they began (see _completed)
        self._block: dict[str, np.ndarray] | None = None  # closed loop: sizes drawn a block at a time
        self._bi = 0
        self.think_u = Uniforms(self.rngs[ARRIVALS])  # closed loop: think times from buffered uniforms
        self.redraw = Normals(self.rngs[RESERVICE])  # the service draws of a request sent again after a timeout

    def setup(self, policy: ClientPolicy) -> None:
        self.policy = policy
        # the policy's parts read on every attempt, as plain attributes
        self.gated, self.deadline, self.timeout = policy.gated, policy.deadline, policy.timeout
        self.retry_on, self.max_attempts = policy.retry_on, policy.max_attempts
        self.observers, self.on_refused = policy.observers, policy.on_refused
        self.notify = self.closed or bool(policy.on_done)
        self.memory = policy.schedule.memory  # does the schedule keep a delay per request (forget it at the end)?
        #: a finish is just its outcome and time: no deadline to check, no memory to drop, nobody to notify
        self.plain = self.deadline is None and not self.memory and not self.notify

    def _network_block(self, _=None) -> list[tuple[float, float]]:
        """The next block of the group's network stream (one standard normal per answer), each with the
        round trip it makes on the primary model (:meth:`ServiceModel.with_round_trips`).  ``self.net`` walks
        these blocks in C."""
        return self.svc0.with_round_trips(self.rngs[NETWORK].standard_normal(BLOCK))

    def round_trips(self):
        """The group's network stream as round trips on the primary model only, drawn the same way as
        ``self.net`` (which it replaces; for a group whose requests all go to that model).  One stream per
        group: every call returns it, where the last left off."""
        if self._rtts is None:
            draw, rtts = self.rngs[NETWORK].standard_normal, self.svc0.round_trips
            self._rtts = itertools.chain.from_iterable(map(rtts, map(draw, itertools.repeat(BLOCK))))
        return self._rtts

    def think(self) -> float:
        """An exponential think time (closed loop), by inversion of a buffered uniform."""
        mean = self.cfg.arrival.think
        return -mean * math.log1p(-self.think_u()) if mean else 0.0

    def timed_out(self, i: int, t: float, m: int, end: float) -> None:
        """:meth:`Columns.timed_out`, and request ``i``'s service draws drawn again (speed, then queue): an
        attempt sent after this one is a new request to the server, served in its own time, not a replay of
        the one given up.  Kept, a slow draw timed out every retry of it (docs/modelling.md: `timeout`)."""
        super().timed_out(i, t, m, end)
        self.z_speed[i] = self.redraw()
        self.z_queue[i] = self.redraw()

    def append(self, block: dict, model) -> None:
        """Add requests (see :meth:`Columns.add`); the service's standard-normal draws come from the service
        stream unless ``block`` has them."""
        rng, n = self.rngs[SERVICE], len(model)
        block.setdefault("z_speed", lambda: rng.standard_normal(n))
        block.setdefault("z_queue", lambda: rng.standard_normal(n))
        self.add(block, model)



def _cut_at(c, end: float) -> None:
    """The run ends at ``end`` (``duration + drain``): a request whose end comes later is still in flight then,
    ``unfinished``, whatever its outcome would be: the engine knows an outcome as soon as it is decided and
    records it at once (a success when admitted, a timeout when the attempt is sent, a 429, 413 or 5xx one
    round trip before the client reads it, a deadline miss when the deadline is set)."""
    outcome, finished = np.frombuffer(c.outcome, np.int8), np.frombuffer(c.finished)  # (views: written through)
    late = finished > end  # (an unfinished request's finish is NaN: never later)
    outcome[late] = PENDING
    finished[late] = np.nan

class Simulation:
    """Build with a :class:`RunSpec` and a seed, call :meth:`run`, read :meth:`result`."""

    def __init__(self, spec: RunSpec, seed: int | np.random.SeedSequence = 0, watch=None, clock=None,
                 kernel: bool = True):
        """``watch``: see :func:`simulate`; ``clock``: the event loop to run on (default a new
        :class:`~sim.clock.Clock`; bench/heapq_clock.py passes its bare-heap baseline); ``kernel=False``: run on
        the general path even when :mod:`sim.kernel` could run it (the two give identical records)."""
        self.spec = spec
        self.kernel = kernel
        self.env = Clock() if clock is None else clock
        self.events = 0
        seed = fresh_seed(seed)
        org = spec.org
        self.accounting = org.accounting
        self.refund = org.accounting.refunds
        self.prefilled: list[float] = []  # by model index: the share of a prompt prefilled (read on every admission)
        self.cacheable: list[bool] = []  # by model index: is a prompt's cached part spared its charge?
        self.retry_after = retry_after_function(org.retry_after_rounding)
        self.error_rate, self.error_status = org.error_rate, org.error_status
        self.model_names: list[str] = []
        self.limitsets: list[LimitSet] = []
        self.services: list[ServiceModel] = []
        self.clients: list[_Group] = []
        client_seeds = seed.spawn(len(spec.clients))
        self.lanes = Lanes(spec, self.limitsets, self.model_names, seed.spawn(1)[0]) if uses_lanes(spec) else None
        for k, cfg in enumerate(spec.clients):
            if cfg.policy not in spec.policies:
                raise ConfigError(did_you_mean(cfg.policy, spec.policies, f"policy for client {cfg.name!r}:"))
            pol = spec.policies[cfg.policy]
            chain = [self._model_index(m) for m in [cfg.model, *pol.fallback]]
            c = _Group(k, cfg, chain, client_seeds[k])
            c.svc0 = self.services[chain[0]]
            limits_of = self.limitsets.__getitem__
            if self.lanes is not None:
                c.route = self.lanes.route(cfg)
                c.lane_columns(self.lanes.first_tier(cfg), cfg.project or "", cfg.lane)
                limits_of = c.route.limits_of if c.route else limits_of
            c.setup(client_policy(pol, Uniforms(c.rngs[POLICY]), c.charge, c.audio, limits_of))
            if watch is not None:
                c.observers = [*c.observers, partial(_watching, watch, c)]
            self.clients.append(c)

    # ---- set-up -----------------------------------------------------------------------------------------
    def _model_index(self, model: str) -> int:
        if model in self.model_names:
            return self.model_names.index(model)
        limits = self.spec.catalog.limits(self.spec.org.tier, model)
        if model not in self.spec.service:
            raise ConfigError(did_you_mean(model, self.spec.service, "model for the service table:"))
        self.model_names.append(model)
        self.limitsets.append(LimitSet(limits, self.spec.org.limiter, refunds=self.refund))
        self.services.append(ServiceModel(model, self.spec.service[model]))
        self.prefilled.append(self.accounting.prefilled(self.services[-1].kind))
        self.cacheable.append(self.services[-1].kind != "tts")  # (a TTS request's characters are all charged)
        return len(self.model_names) - 1

    def _generate(self, c: _Group) -> None:
        """Open loop: every arrival and size, sampled now in vectors."""
        created, sz, names = open_loop(c.cfg, c.rngs, self.spec.duration, self.spec.load, self.spec.kinds)
        models = (np.full(len(created), c.chain[0]) if names is None
                  else np.array([self._model_index(m) for m in names], dtype=np.int64))
        charge = self.accounting.charged(sz["prompt"], sz["max_tokens"], sz["completion"],
                                         np.asarray(self.cacheable)[models])
        block = {"created": created, **sz, "charge": charge}
        del created, sz, charge  # the block owns them now: add() drops each once copied
        c.append(block, models)

    def _new_closed_request(self, c: _Group, now: float) -> int:
        if c._block is None or c._bi >= BLOCK:
            c._block = sizes(c.cfg, c.rngs[SIZES], BLOCK)
            c._block["z_speed"] = c.rngs[SERVICE].standard_normal(BLOCK)
            c._block["z_queue"] = c.rngs[SERVICE].standard_normal(BLOCK)
            c._bi = 0
        b, j = c._block, c._bi
        c._bi += 1
        one = {k: v[j:j + 1] for k, v in b.items()}
        one["created"] = np.array([now])
        one["charge"] = self.accounting.charged(one["prompt"], one["max_tokens"], one["completion"],
                                                self.cacheable[c.chain[0]])
        c.append(one, np.array([c.chain[0]]))
        return c.n - 1

    # ---- scheduling -------------------------------------------------------------------------------------
    def _at(self, t: float, fn, *args) -> None:
        """Call ``fn(*args)`` at simulated time ``t``."""
        self.events += 1
        self.env.call_at(t, _apply, fn, args)

    def _arrivals(self, c: _Group) -> None:
        """Start an open-loop group's arrivals: the clock merges them, pre-sorted, with its queue
        (:meth:`Clock.merge`); one event each."""
        if c.n:
            self.events += c.n
            stream = (c.created, self._send if not c.gated else self._arrive, c)
            self.env.call_at(c.created[0], self.env.merge, stream, 0)

    def _closed_user(self, c: _Group):
        yield Timeout(self.env, c.think())
        self._start_closed(c)

    def _start_closed(self, c: _Group) -> None:
        now = self.env.now
        if now < self.spec.duration:
            self._arrive(c, self._new_closed_request(c, now), now)

    # ---- request life cycle -----------------------------------------------------------------------------
    def _arrive(self, c: _Group, i: int, now: float) -> None:
        if not c.gated:
            self._send(c, i, now)
            return
        size = c.policy.queue_size
        if size is not None and len(c.queue) >= size and (
                c.queue or c.policy.blocked(now, c.attempts[i] == 0)):
            self._finish(c, i, DROPPED, now)  # the client's own queue is full
            return
        c.queue.append(i)
        self._pump(c)
        if size is not None and len(c.queue) > size and c.queue[-1] == i:
            # still held, beyond the queue's room: a gate with no side-effect-free ``blocks`` (the pacer, the
            # adaptive client: their hold depends on the request) held it where a full queue has no place
            c.queue.pop()
            self._finish(c, i, DROPPED, now)
        elif c.deadline is not None and c.queue and c.queue[-1] == i:
            self._at(c.created[i] + c.deadline, self._expire, c, i)  # held: it leaves the queue at its deadline

    def _pump(self, c: _Group, retries_only=None) -> None:
        """Send queued requests while the client's own rules allow; otherwise arrange to be woken.
        ``retries_only``: stop at the first new request (:meth:`_on_retry`).  (The second argument also makes it
        a light call of the clock, which passes two: None.)"""
        now, q, pol = self.env._now, c.queue, c.policy
        deadline = pol.deadline
        while q:
            if retries_only and not c.retrying:
                return
            i = q[0]
            expired = deadline is not None and now >= c.created[i] + deadline
            first = c.attempts[i] == 0
            if not expired:
                m = c.chain[c.pos[i]] if c.pos[i] else c.model[i]
                for hold in pol.holds:
                    until = hold(i, m, now, first)
                    if until:
                        if until != math.inf:  # inf: a completion will pump again
                            self._wake(c, until)
                        return
            q.popleft()
            if c.retrying:  # (the retries are the queue's first entries)
                c.retrying -= 1
            if expired:  # its deadline came as the queue was pumped: a deadline miss, not sent
                self._finish(c, i, DEADLINE, c.created[i] + deadline)
                continue
            for sent in pol.on_send:
                sent(first)
            c.stalled = False
            self._send(c, i, now)
            if c.stalled:  # its refusal is read now (no round trip): the cooldown it starts, the retry or hop due
                self.events += 1  # now go first; the pump goes on after them, at this instant
                self.env.call_at(now, self._pump, c, retries_only)
                return

    def _wake(self, c: _Group, t: float) -> None:
        if self.env._now < c.wake_at <= t:
            return
        c.wake_at = t
        self.events += 1
        self.env.call_at(t, self._pump, c, None)

    def _send(self, c: _Group, i: int, now: float) -> None:
        c.attempts[i] = tries = c.attempts[i] + 1
        pos = c.pos[i]
        m = c.chain[pos] if pos else c.model[i]
        c.served[i] = m  # (the model it was last sent to, whatever answers: a 5xx or 498 before any limit too)
        svc = self.services[m]
        z, rtt = next(c.net)
        if svc is not c.svc0:
            rtt = svc.round_trip(z)
        if self.error_rate and c.fault() < self.error_rate:
            if self.error_status == CAPACITY_EXCEEDED and c.route is not None:
                c.route.capacity_exceeded(c, i)
            self._answer(c, i, tries, now, rtt, self.error_status)
            return
        audio = c.audio[i]
        if c.route is None:
            limits = self.limitsets[m]
            wait = limits.acquire(c.charge[i], audio, now)
        else:
            limits, wait = c.route.send(c, i, m, now)
            if limits is None:  # flex capacity short: 498 capacity_exceeded, fast, nothing charged
                self._answer(c, i, tries, now, rtt, CAPACITY_EXCEEDED)
                return
        if wait == 0.0:
            q, p, ct = svc.times(c.prompt[i] * self.prefilled[m], c.completion[i], audio, c.z_speed[i], c.z_queue[i])
            fin = now + rtt + q + p + ct
            given_up = c.timeout is not None and fin - now > c.timeout  # the client stops waiting; the server goes on
            if c.observers:  # (read with the answer, when served)
                self._observe(c, m, limits, now, i, wait, rtt, math.inf if given_up else fin)
            c.qt[i] = q
            c.pt[i] = p
            c.ct[i] = ct
            c.admitted[i] = now
            if self.refund:
                unused = c.max_tokens[i] - c.completion[i]
                if unused > 0:
                    self._at(fin, limits.refund_tokens, unused, now, fin)
            if given_up:
                c.timed_out(i, now, m, fin)  # (still charged: its admission is logged)
                self._refused(c, i, tries, now + c.timeout, TIMED_OUT, None)
            elif c.plain:  # _finish, for a group with nothing more to do at a finish
                c.outcome[i] = OK
                c.finished[i] = fin
            else:
                self._finish(c, i, OK, fin)
        else:
            if c.observers:  # (read a round trip after the send, as _answer and the 413 below decide it)
                self._observe(c, m, limits, now, i, wait, rtt,
                              math.inf if c.timeout is not None and rtt > c.timeout else now + rtt)
            if wait == math.inf:
                c.refused[i] = UNIT_INDEX[limits.binding]
                if c.timeout is not None and rtt > c.timeout:  # the 413 comes too late: given up, and retried
                    self._refused(c, i, tries, now + c.timeout, TIMED_OUT, None)
                else:
                    self._finish(c, i, TOO_LARGE, now + rtt)
            else:
                c.n429[i] += 1
                c.refused[i] = k = UNIT_INDEX[limits.binding]
                c.refusal_t.append(now)
                c.refusal_code.append(m * 8 + k)
                self._answer(c, i, tries, now, rtt, 429, wait)

    def _observe(self, c: _Group, m: int, limits, now: float, i: int, wait: float, rtt: float, read: float) -> None:
        """The observers of the attempt of request ``i`` sent at ``now`` (a gate's ``observe`` hook, a ``watch``),
        told after its charge was decided; also ``read``, when the client reads the answer and its headers (a
        refusal a round trip after the send, a success when served), ``inf`` if the client's ``timeout`` gives
        the attempt up before, or its ``deadline`` comes first: the client has stopped waiting, as for a timeout."""
        if c.deadline is not None and read > c.created[i] + c.deadline:
            read = math.inf
        for observe in c.observers:
            observe(m, limits, now, i, wait, rtt, read)

    def _answer(self, c: _Group, i: int, tries: int, now: float, rtt: float, status: int,
                wait: float | None = None) -> None:
        """A refusal (``status``; a 429's limit ``wait``) for the attempt sent at ``now``, read a round trip later
        -- unless the client's ``timeout`` is shorter: it has given the attempt up by then, a timeout retried as
        one (no retry-after read, no fallback hop)."""
        if c.timeout is not None and rtt > c.timeout:
            self._refused(c, i, tries, now + c.timeout, TIMED_OUT, None)
        else:
            self._refused(c, i, tries, now + rtt, status, None if wait is None else self.retry_after(wait))

    def _refused(self, c: _Group, i: int, tries: int, t: float, status: int, retry_after: int | None) -> None:
        """The client reads a 429, 498 or 5xx at time ``t``, or stops waiting for an answer (``TIMED_OUT``, retried
        whatever ``retry_on`` says, as the SDK retries its timeouts), after ``tries`` attempts: fall back, retry
        later, or give up (a last attempt that timed out ends the request as an ``error``).  ``max_attempts``
        bounds every attempt of the request, on any model of its ``fallback`` chain: a 429 on the last allowed
        attempt ends it, a hop left or not.  The gates' ``on_refused`` hear every 429 (a hop and a last one
        with ``delay`` None) and every other refusal that will be retried, at ``t`` (:meth:`_heard`).  A refusal
        that comes after the request's deadline is not read: the client gave the request up at the deadline (a
        deadline miss then), so no gate hears it (a cooldown would pause the group for an answer nobody saw)."""
        if c.deadline is not None and t > c.created[i] + c.deadline:
            self._finish(c, i, DEADLINE, c.created[i] + c.deadline)
            return
        pol = c.policy
        nxt = 0
        if pol.fallback:
            c.pos[i] = nxt = pol.next_model(c.pos[i], status)
        if nxt and tries < c.max_attempts:  # (max_attempts counts every model's attempts, a hop's too)
            delay = 0.0  # the fallback model, at once
            if c.on_refused:  # every 429 the client reads starts a cooldown, a hop's too
                self._hear(c, t, retry_after, None)
        else:
            if ((status not in c.retry_on and status != TIMED_OUT) or tries >= c.max_attempts
                    or (retry_after is not None and retry_after > pol.gives_up)):
                if status == 429 and c.on_refused:  # a 429 that ends the request starts a cooldown too
                    self._hear(c, t, retry_after, None)
                self._finish(c, i, GAVE_UP if status == 429 else ERROR, t)
                return
            delay = pol.backoff(i, tries, retry_after)
            if c.on_refused:
                self._hear(c, t, retry_after, delay)
        deadline = c.deadline  # no attempt, retry or fallback, goes out once the client has given up
        if deadline is not None and t + delay >= c.created[i] + deadline:
            self._finish(c, i, DEADLINE, c.created[i] + deadline)
            return
        self.events += 1
        if c.gated:  # due ahead of everything else at its instant (see _on_retry)
            now = self.env._now
            if t + delay <= now:  # (no round trip and no delay: see _pump)
                c.stalled = True
            self.env.call_first_after(t + delay - now, self._on_retry, c, i)
        else:
            self.env.call_after(t + delay - self.env._now, self._on_retry, c, i)

    def _hear(self, c: _Group, t: float, retry_after: int | None, delay: float | None) -> None:
        """Schedule :meth:`_heard` at ``t`` (>= now), ahead of everything else at that instant: a retry or hop
        due then (also ahead of the rest, scheduled after this) is held by the cooldown it starts."""
        self.events += 1
        now = self.env._now
        if t <= now:  # (no round trip: see _pump)
            c.stalled = True
        self.env.call_first_after(t - now, _apply, self._heard, (c, t, retry_after, delay))

    def _heard(self, c: _Group, t: float, retry_after: int | None, delay: float | None) -> None:
        """The client reads a refusal (or gives an attempt up) at ``t``, now: the gates' ``on_refused`` hear it
        then, not when the attempt was sent (an event scheduled before the request's own retry or hop, so a
        cooldown it starts holds that too)."""
        for refused in c.on_refused:
            refused(t, retry_after, delay)

    def _on_retry(self, c: _Group, i: int) -> None:
        """Request ``i``'s next attempt is due: through the client's own queue if it keeps one.  There it goes
        ahead of the new requests (retries are the oldest requests) and behind the retries already waiting: they
        leave in the order they fell due.  A gated group's retries are due ahead of everything else at their
        instant (SimPy's ``URGENT`` priority, :meth:`Clock.call_first_after`) and send only retries: every
        retry due at an instant is queued before a new request can go then."""
        if c.gated:
            q = c.queue
            q.insert(c.retrying, i)
            c.retrying += 1
            self._pump(c, True)
            if c.deadline is not None and c.retrying:  # held (with the retries before it): it leaves the queue
                self._at(c.created[i] + c.deadline, self._expire, c, i)  # at its deadline
        else:
            self._send(c, i, self.env._now)

    def _expire(self, c: _Group, i: int) -> None:
        """Request ``i``'s deadline has come: if it is waiting in the client's own queue, it leaves it now (a
        deadline miss), and its place is free for the next arrival."""
        q = c.queue
        if c.outcome[i] == PENDING and i in q:
            at = q.index(i)
            if at < c.retrying:
                c.retrying -= 1
            del q[at]
            head = at == 0
            self._finish(c, i, DEADLINE, c.created[i] + c.deadline)
            if head and q:  # a new head: the client's rules are asked about it
                self._pump(c)

    def _finish(self, c: _Group, i: int, outcome: int, t: float) -> None:
        """Record request ``i``'s outcome at ``t``.  An answer that comes after the request's deadline is a
        deadline miss at ``created + deadline`` (the client's timeout fires first)."""
        if c.deadline is not None and t > c.created[i] + c.deadline and outcome != DROPPED:
            outcome, t = DEADLINE, c.created[i] + c.deadline
        c.outcome[i] = outcome
        c.finished[i] = t
        if c.memory:
            c.policy.forget(i)
        if c.notify and (c.closed or c.attempts[i] > 0):
            self._at(t, self._completed, c, i)  # somebody waits for this completion

    def _completed(self, c: _Group, i: int) -> None:
        attempted = c.attempts[i] > 0
        for done in c.policy.on_done:
            done(attempted)
        if c.closed:
            think = c.think()
            if think == 0.0 and c.finished[i] == c.created[i]:
                c.instants += 1
                if c.instants > INSTANT_LOOP:
                    raise KeyedError(f"clients[{c.index}].arrival.think",
                                     f"client {c.cfg.name!r}: a think time of 0 and requests that end the instant "
                                     "they start (dropped by a full queue, or a 413 or error with no network round "
                                     "trip): its users would send requests for ever with no time passing; give "
                                     "arrival.think > 0")
            else:
                c.instants = 0
            self._at(self.env.now + think, self._start_closed, c)
        if c.queue:
            self._pump(c)

    # ---- running ----------------------------------------------------------------------------------------
    def run(self) -> RunResult:
        fast = self.kernel and fast_lane.usable(self)
        for c in self.clients:
            if c.cfg.lane == "batch":  # to the Batch API: its own lane, no on-demand limits, no events
                self._generate(c)
                self.lanes.run_batch(c, self.spec.duration, self.services)
            elif c.closed:
                for _ in range(c.cfg.arrival.users_at(self.spec.load)):
                    self.env.process(self._closed_user(c))
            else:
                self._generate(c)
                (fast_lane.schedule_arrivals if fast else Simulation._arrivals)(self, c)
        if fast:
            fast_lane.run(self, self.spec.duration + self.spec.drain)
        else:
            self.env.run(until=self.spec.duration + self.spec.drain)
        return self.result()

    def result(self) -> RunResult:
        end = self.spec.duration + self.spec.drain
        for c in self.clients:
            c.release_scratch()
            if c.cfg.lane != "batch":  # (a batch job is not cut by the drain: it runs to its own window)
                _cut_at(c, end)
        names = [x.name for x in self.spec.clients]
        records, refusals = frames(self.clients, names, self.model_names)
        jobs = self.lanes.job_table() if self.lanes is not None else None
        spilled = self.lanes.spilled_by() if self.lanes is not None else ()
        return RunResult(records, refusals, self.spec, self.events, jobs, self._paced_by(), spilled,
                         earlier_admissions(self.clients, names, self.model_names))

    def _paced_by(self) -> tuple[tuple[str, str], ...]:
        """(model, unit) each pacer's limit set last waited on (its ``binding``), in client then model order."""
        seen = []
        for c in self.clients:
            for gate in c.policy.gates if c.policy is not None else ():
                for m, pacer in sorted(gate.pacers.items()) if isinstance(gate, Pacer) else ():
                    if pacer.binding is not None and (self.model_names[m], pacer.binding) not in seen:
                        seen.append((self.model_names[m], pacer.binding))
        return tuple(seen)


def _apply(fn, args) -> None:
    fn(*args)


def fresh_seed(seed: int | np.random.SeedSequence) -> np.random.SeedSequence:
    """The seed as a SeedSequence the run may spawn from: a caller's own is copied as it is (spawning changes
    a SeedSequence), so one seed object given to two runs gives them the same random streams."""
    if isinstance(seed, np.random.SeedSequence):
        return np.random.SeedSequence(seed.entropy, spawn_key=seed.spawn_key, pool_size=seed.pool_size,
                                      n_children_spawned=seed.n_children_spawned)
    if not is_whole(seed) or seed < 0:
        raise ValueError(f"seed {seed!r}: a seed is an integer >= 0 or a numpy SeedSequence "
                         "(scenario.seed(replication) gives the one `groqsim run` uses)")
    return np.random.SeedSequence(seed)


def _watching(watch, c: _Group, m: int, limits, now: float, i: int, wait: float, rtt: float, read: float) -> None:
    """A :func:`simulate` ``watch`` as an observer: told what its contract names (not the gates' ``read``)."""
    watch(c, m, limits, now, i, wait, rtt)


def simulate(spec: RunSpec, seed: int | np.random.SeedSequence = 0, watch=None) -> RunResult:
    """Run one simulation of ``spec`` with ``seed``.  ``watch(group, model, limits, now, i, wait, rtt)``, if
    given, sees every attempt that reached a limit set, just after its charge was decided: ``group`` the
    client group (its ``index`` and request columns: ``charge[i]``, ``audio[i]``...), ``model`` the index of
    the model tried, ``limits`` its limit set, ``i`` the request's row in the group, ``wait`` 0.0 admitted,
    > 0 refused with a 429, inf too large, ``rtt`` the attempt's network round trip.  How a run's attempts
    are exported (:mod:`sim.simlog`) without costing an unwatched run anything."""
    if not isinstance(spec, RunSpec):
        raise TypeError(f"simulate(spec, ...) takes a RunSpec, got {type(spec).__name__}: resolve a grid point "
                        "first, scenario.spec(point)")
    return Simulation(spec, seed, watch).run()
