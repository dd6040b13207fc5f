"""The SimPy model: client groups send requests to one Groq organization and live with its limits.

Data flows one way: a :class:`RunSpec` (org, clients, policies) + a seed -> workloads sampled in vectors ->
the event loop (arrivals, attempts, retries, client-side queues) -> columnar records -> :class:`RunResult`.

Modelling rules (docs/modelling.md has the full list):

* The org's limits are checked when an attempt is sent (the constant one-way network delay only shifts
  every client's clock equally); the client learns the answer ``rtt`` later: a 429/413/5xx after ``rtt``,
  a success after ``rtt + queue_time + prompt_time + completion_time``.
* One :class:`~sim.limitset.LimitSet` per model, shared by every client group (limits are org-level).
* Events are scheduled only when somebody waits for them: a success that nothing depends on is recorded
  at once with its finish time; completions become events only for closed loops, in-flight caps and
  token refunds.
* Random numbers are drawn in vectors from independent streams per (replication, client group, purpose),
  so two alternatives compared with the same seed see the same arrivals and sizes.
"""
from __future__ import annotations

import math
from array import array
from collections import deque
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import pandas as pd
import simpy
from simpy.events import Timeout

from .catalog import UNITS, Catalog
from .config import Client, Org, Policy
from .errors import ConfigError, did_you_mean
from .headers import retry_after_seconds
from .limitset import LimitSet
from .service import ServiceModel, ServiceParams, service_models
from .workload import arrival_times, read_trace, sizes, trace_sizes

OUTCOMES = ("ok", "gave_up", "too_large", "deadline", "dropped", "error", "unfinished")
OK, GAVE_UP, TOO_LARGE, DEADLINE, DROPPED, ERROR, UNFINISHED = range(7)
PENDING = -1
REFUSED_BY = ("",) + UNITS  # records store the index: 0 = never refused
_UNIT_INDEX = {u: k + 1 for k, u in enumerate(UNITS)}
_BLOCK = 4096
# independent random streams per client group
_ARRIVALS, _SIZES, _SERVICE, _POLICY, _FAULTS = range(5)


@dataclass
class RunSpec:
    """Everything one simulation run needs, fully resolved (no grid, no replications)."""
    clients: list[Client]
    policies: dict[str, Policy]
    org: Org = field(default_factory=Org)
    catalog: Catalog = field(default_factory=Catalog.published)
    service: dict[str, ServiceParams] = field(default_factory=service_models)
    duration: float = 3600.0
    warmup: float = 0.0
    drain: float = 3600.0
    load: float = 1.0


class _Uniforms:
    """U(0,1) numbers drawn a block at a time from one stream."""

    def __init__(self, rng: np.random.Generator):
        self.rng, self.buf, self.i = rng, [], 0

    def __call__(self) -> float:
        if self.i >= len(self.buf):
            self.buf, self.i = self.rng.random(_BLOCK).tolist(), 0
        self.i += 1
        return self.buf[self.i - 1]


class _ClientState:
    """One client group's configuration, per-request columns and client-side queue."""

    def __init__(self, index: int, cfg: Client, policy: Policy, chain: list[int], seed: np.random.SeedSequence):
        self.index, self.cfg, self.policy, self.chain = index, cfg, policy, chain
        self.rngs = [np.random.default_rng(s) for s in seed.spawn(5)]
        self.uniform = _Uniforms(self.rngs[_POLICY])
        self.fault = _Uniforms(self.rngs[_FAULTS])
        self.n = 0
        d = lambda: array("d")  # noqa: E731
        self.created, self.prompt, self.max_tokens, self.completion, self.audio = d(), d(), d(), d(), d()
        self.charge, self.z_speed, self.z_queue = d(), d(), d()
        self.finished, self.admitted, self.qt, self.pt, self.ct = d(), d(), d(), d(), d()
        self.model, self.served, self.pos = array("b"), array("b"), array("b")  # wanted, last tried, chain pos
        self.attempts, self.n429 = array("h"), array("h")
        self.outcome, self.refused = array("b"), array("b")
        self.refusal_t, self.refusal_code = d(), array("h")  # 429 log: time, model * 8 + unit index
        self.prev_delay: dict[int, float] = {}
        # client-side queue (pacing, cooldown, in-flight cap, bounded queue)
        self.gated = policy.gated
        self.queue: deque[int] = deque()
        self.in_flight = 0
        self.cooldown_until = 0.0
        self.wake_at = -1.0
        self.pacers: dict[int, LimitSet] = {}
        self.obs: dict[int, tuple] = {}
        self.closed = cfg.arrival.kind == "closed"
        # the policy's fields read on every attempt, as plain attributes
        self.adaptive, self.deadline, self.cooldown = policy.adaptive, policy.deadline, policy.cooldown
        self.retry_on, self.max_attempts = frozenset(policy.retry_on), policy.max_attempts
        self.fallback = len(chain) > 1
        self.notify = self.closed or bool(policy.max_in_flight)
        self._block: dict[str, np.ndarray] | None = None  # closed loop: sizes drawn a block at a time
        self._bi = 0
        self.think_u = _Uniforms(self.rngs[_ARRIVALS])  # closed loop: think times from buffered uniforms

    def think(self) -> float:
        """An exponential think time (closed loop), by inversion of a buffered uniform."""
        mean = self.cfg.arrival.think
        return -mean * math.log1p(-self.think_u()) if mean else 0.0

    def add(self, created: np.ndarray, sz: dict[str, np.ndarray], charge: np.ndarray, model: np.ndarray) -> None:
        """Append a block of requests (open loop: all of them at once).  ``sz`` may carry the service's
        standard-normal draws ``z_speed``/``z_queue``; otherwise they are drawn here, in one vector each."""
        n = len(created)
        rng = self.rngs[_SERVICE]
        z_speed = sz["z_speed"] if "z_speed" in sz else rng.standard_normal(n)
        z_queue = sz["z_queue"] if "z_queue" in sz else rng.standard_normal(n)
        for col, values in ((self.created, created), (self.prompt, sz["prompt"]), (self.max_tokens, sz["max_tokens"]),
                            (self.completion, sz["completion"]), (self.audio, sz["audio"]), (self.charge, charge),
                            (self.z_speed, z_speed), (self.z_queue, z_queue)):
            col.frombytes(np.ascontiguousarray(values, dtype=float).tobytes())
        nan = np.full(n, np.nan).tobytes()
        for col in (self.finished, self.admitted, self.qt, self.pt, self.ct):
            col.frombytes(nan)
        self.model.frombytes(np.asarray(model, dtype=np.int8).tobytes())
        zeros = bytes(n)
        self.pos.frombytes(zeros)
        self.served.frombytes(np.asarray(model, dtype=np.int8).tobytes())
        self.refused.frombytes(zeros)
        self.outcome.frombytes(np.full(n, PENDING, dtype=np.int8).tobytes())
        self.attempts.frombytes(bytes(2 * n))
        self.n429.frombytes(bytes(2 * n))
        self.n += n


@dataclass
class RunResult:
    """One run's request records (one row per request), 429 log and identifying spec."""
    records: pd.DataFrame
    refusals: pd.DataFrame
    spec: RunSpec
    events: int = 0

    def summary(self) -> dict:
        from .summary import summarize
        return summarize(self)


class Simulation:
    """Build with a :class:`RunSpec` and a seed, call :meth:`run`, read :meth:`result`."""

    def __init__(self, spec: RunSpec, seed: int | np.random.SeedSequence = 0):
        self.spec = spec
        self.env = simpy.Environment()
        self.events = 0
        seed = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
        org = spec.org
        self.accounting = org.accounting
        self.refund = org.accounting.refund_unused and org.accounting.charge == "max_tokens"
        self.rounding = org.retry_after_rounding
        self.error_rate, self.error_status = org.error_rate, org.error_status
        self.model_names: list[str] = []
        self.limitsets: list[LimitSet] = []
        self.services: list[ServiceModel] = []
        self.clients: list[_ClientState] = []
        client_seeds = seed.spawn(len(spec.clients))
        for k, cfg in enumerate(spec.clients):
            if cfg.policy not in spec.policies:
                raise ConfigError(did_you_mean(cfg.policy, spec.policies, f"policy for client {cfg.name!r}:"))
            policy = spec.policies[cfg.policy]
            chain = [self._model_index(m) for m in [cfg.model, *policy.fallback]]
            self.clients.append(_ClientState(k, cfg, policy, chain, client_seeds[k]))

    # ---- set-up -----------------------------------------------------------------------------------------
    def _model_index(self, model: str) -> int:
        if model in self.model_names:
            return self.model_names.index(model)
        limits = self.spec.catalog.limits(self.spec.org.tier, model)
        if model not in self.spec.service:
            raise ConfigError(did_you_mean(model, self.spec.service, "model for the service table:"))
        self.model_names.append(model)
        self.limitsets.append(LimitSet(limits, self.spec.org.limiter))
        self.services.append(ServiceModel(model, self.spec.service[model]))
        return len(self.model_names) - 1

    def _generate(self, c: _ClientState) -> None:
        """Open loop: sample every arrival and size now, in vectors."""
        arrival, duration = c.cfg.arrival, self.spec.duration
        if arrival.kind == "trace":
            df = read_trace(arrival.file)
            df = df.assign(timestamp=df["timestamp"] / self.spec.load)
            df = df[df["timestamp"] < duration]
            sz = trace_sizes(df, c.cfg, c.rngs[_SIZES])
            models = (np.array([self._model_index(m) if isinstance(m, str) else c.chain[0]
                                for m in df["model"]]) if "model" in df else np.full(len(df), c.chain[0]))
            created = df["timestamp"].to_numpy(float)
        else:
            created = arrival_times(arrival, c.rngs[_ARRIVALS], duration, self.spec.load)
            sz = sizes(c.cfg, c.rngs[_SIZES], len(created))
            models = np.full(len(created), c.chain[0])
        c.add(created, sz, self.accounting.charged(sz["prompt"], sz["max_tokens"], sz["completion"]), models)

    def _new_closed_request(self, c: _ClientState, now: float) -> int:
        if c._block is None or c._bi >= _BLOCK:
            c._block = sizes(c.cfg, c.rngs[_SIZES], _BLOCK)
            c._block["z_speed"] = c.rngs[_SERVICE].standard_normal(_BLOCK)
            c._block["z_queue"] = c.rngs[_SERVICE].standard_normal(_BLOCK)
            c._bi = 0
        b, j = c._block, c._bi
        c._bi += 1
        one = {k: v[j:j + 1] for k, v in b.items()}
        c.add(np.array([now]), one, self.accounting.charged(one["prompt"], one["max_tokens"], one["completion"]),
              np.array([c.chain[0]]))
        return c.n - 1

    # ---- scheduling -------------------------------------------------------------------------------------
    def _at(self, t: float, fn, *args) -> None:
        """Call ``fn(*args)`` at simulated time ``t``."""
        self.events += 1
        ev = Timeout(self.env, max(t - self.env.now, 0.0))
        ev.callbacks.append(partial(_drop_event, fn, args))

    def _arrivals(self, c: _ClientState, i: int = 0) -> None:
        """Schedule arrival ``i``; its callback handles it and schedules the next (a chain of timeouts,
        lighter than a process)."""
        if i < c.n:
            self.events += 1
            ev = Timeout(self.env, max(c.created[i] - self.env.now, 0.0), (c, i))
            ev.callbacks.append(self._on_arrival)

    def _on_arrival(self, ev) -> None:
        c, i = ev._value
        if c.gated:
            self._arrive(c, i)
        else:
            self._send(c, i, self.env._now)
        self._arrivals(c, i + 1)

    def _closed_user(self, c: _ClientState):
        yield Timeout(self.env, c.think())
        self._start_closed(c)

    def _start_closed(self, c: _ClientState) -> None:
        now = self.env.now
        if now < self.spec.duration:
            self._arrive(c, self._new_closed_request(c, now))

    # ---- request life cycle -----------------------------------------------------------------------------
    def _arrive(self, c: _ClientState, i: int) -> None:
        if not c.gated:
            self._send(c, i, self.env.now)
            return
        size = c.policy.queue_size
        if size is not None and len(c.queue) >= size and (c.queue or not self._can_dispatch(c, i, self.env.now)):
            self._finish(c, i, DROPPED, self.env.now)  # the client's own queue is full
            return
        c.queue.append(i)
        self._pump(c)

    def _can_dispatch(self, c: _ClientState, i: int, now: float) -> bool:
        cap = c.policy.max_in_flight
        return now >= c.cooldown_until and not (cap and c.attempts[i] == 0 and c.in_flight >= cap)

    def _pump(self, c: _ClientState) -> None:
        """Send queued requests while the client's own rules allow; otherwise arrange to be woken."""
        now, pol, q = self.env.now, c.policy, c.queue
        while q:
            i = q[0]
            if pol.deadline is not None and now >= c.created[i] + pol.deadline:
                q.popleft()
                self._finish(c, i, DEADLINE, c.created[i] + pol.deadline)
                continue
            if now < c.cooldown_until:
                self._wake(c, c.cooldown_until)
                return
            first = c.attempts[i] == 0
            if first and pol.max_in_flight and c.in_flight >= pol.max_in_flight:
                return  # a completion will pump again
            m = c.chain[c.pos[i]] if c.pos[i] else c.model[i]
            wait = self._pacing_wait(c, i, m, now)
            if wait > 0.0:
                self._wake(c, now + wait)
                return
            q.popleft()
            if first and pol.max_in_flight:
                c.in_flight += 1
            self._send(c, i, now)

    def _pacing_wait(self, c: _ClientState, i: int, m: int, now: float) -> float:
        """Seconds the client's own pacing rules hold request ``i`` back (0: send now; the pacer is charged)."""
        pol, tokens, audio = c.policy, c.charge[i], c.audio[i]
        if pol.adaptive and m in c.obs:
            wait = _header_wait(c.obs[m], tokens, now)
            if wait > 0.0:
                return wait  # checked before the pacer so a held request charges nothing
        if pol.pacing:
            pacer = c.pacers.get(m)
            if pacer is None:
                pacer = c.pacers[m] = LimitSet(self.limitsets[m].limits, "token_bucket", rate_fraction=pol.pacing)
            wait = pacer.acquire(tokens, audio, now)
            return 0.0 if wait == math.inf else wait  # larger than the org's limit: let the org answer 413
        return 0.0

    def _wake(self, c: _ClientState, t: float) -> None:
        if self.env.now < c.wake_at <= t:
            return
        c.wake_at = t
        self._at(t, self._pump, c)

    def _send(self, c: _ClientState, i: int, now: float) -> None:
        c.attempts[i] += 1
        pos = c.pos[i]
        m = c.chain[pos] if pos else c.model[i]
        svc = self.services[m]
        if self.error_rate and c.fault() < self.error_rate:
            self._refused(c, i, now + svc.rtt, self.error_status, None)
            return
        limits = self.limitsets[m]
        audio = c.audio[i]
        wait = limits.acquire(c.charge[i], audio, now)
        if c.adaptive:
            c.obs[m] = _observe(limits, now)
        if wait == 0.0:
            q, p, ct = svc.times(c.prompt[i], c.completion[i], audio, c.z_speed[i], c.z_queue[i])
            c.qt[i] = q
            c.pt[i] = p
            c.ct[i] = ct
            c.admitted[i] = now
            c.served[i] = m
            fin = now + svc.rtt + q + p + ct
            if self.refund:
                unused = c.max_tokens[i] - c.completion[i]
                if unused > 0:
                    self._at(fin, limits.refund_tokens, unused, now, fin)
            self._finish(c, i, OK, fin)
        elif wait == math.inf:
            c.refused[i] = _UNIT_INDEX[limits.binding]
            c.served[i] = m
            self._finish(c, i, TOO_LARGE, now + svc.rtt)
        else:
            unit = limits.binding
            c.n429[i] += 1
            c.refused[i] = k = _UNIT_INDEX[unit]
            c.refusal_t.append(now)
            c.refusal_code.append(m * 8 + k)
            c.served[i] = m
            if self.rounding == "ceil":  # retry_after_seconds(wait, "ceil"), inlined
                ra = math.ceil(wait - 1e-9)
                ra = ra if ra > 1 else 1
            else:
                ra = retry_after_seconds(wait, self.rounding)
            self._refused(c, i, now + svc.rtt, 429, ra)

    def _refused(self, c: _ClientState, i: int, t: float, status: int, retry_after: int | None) -> None:
        """The client reads a 429 or 5xx at time ``t``: fall back, retry later, or give up."""
        if c.fallback:
            if status == 429 and c.pos[i] + 1 < len(c.chain):
                c.pos[i] += 1  # fallback model: try it at once
                self._at(t, self._retry, c, i)
                return
            c.pos[i] = 0
        if status not in c.retry_on or c.attempts[i] >= c.max_attempts:
            self._finish(c, i, GAVE_UP if status == 429 else ERROR, t)
            return
        delay = self._backoff(c, i, retry_after)
        if c.cooldown is not None:
            cool = (retry_after or delay) if c.cooldown == "retry-after" else c.cooldown
            c.cooldown_until = max(c.cooldown_until, t + cool)
        deadline = c.deadline
        if deadline is not None and t + delay >= c.created[i] + deadline:
            self._finish(c, i, DEADLINE, c.created[i] + deadline)
            return
        self.events += 1
        Timeout(self.env, t + delay - self.env._now, (c, i)).callbacks.append(self._on_retry)

    def _on_retry(self, ev) -> None:
        c, i = ev._value
        if c.gated:
            self._retry(c, i)
        else:
            self._send(c, i, self.env._now)

    def _retry(self, c: _ClientState, i: int) -> None:
        if c.gated:
            c.queue.appendleft(i)  # retries go first: they are the oldest requests
            self._pump(c)
        else:
            self._send(c, i, self.env.now)

    def _backoff(self, c: _ClientState, i: int, retry_after: int | None) -> float:
        """Seconds to wait before the next attempt (n = retries already made)."""
        pol = c.policy
        if pol.retry == "groq-sdk" and retry_after is not None and 0 < retry_after <= 60:
            return float(retry_after)
        n = min(c.attempts[i] - 1, 60)  # 2^60 x base is past any cap; avoids float overflow
        if pol.retry == "groq-sdk":
            return min(pol.base * 2.0 ** n, pol.cap) * (1 - 0.25 * c.uniform())
        if pol.retry == "fixed":
            delay = pol.delay
        else:
            ceiling = min(pol.cap, pol.base * 2.0 ** n)
            jitter = pol.jitter
            if jitter == "none":
                delay = ceiling
            elif jitter == "full":
                delay = c.uniform() * ceiling
            elif jitter == "equal":
                delay = ceiling / 2 + c.uniform() * ceiling / 2
            else:  # decorrelated: min(cap, U(base, 3 * previous))
                prev = c.prev_delay.get(i, pol.base)
                delay = min(pol.cap, pol.base + c.uniform() * (3 * prev - pol.base))
                c.prev_delay[i] = delay
        if pol.honor_retry_after and retry_after is not None:
            ra = retry_after if pol.retry_after_cap is None else min(retry_after, pol.retry_after_cap)
            delay = max(delay, ra)
        return delay

    def _finish(self, c: _ClientState, i: int, outcome: int, t: float) -> None:
        """Record request ``i``'s outcome at ``t``.  An answer that comes after the request's deadline is a
        deadline miss at ``created + deadline`` (the client's timeout fires first)."""
        if c.deadline is not None and t > c.created[i] + c.deadline and outcome != DROPPED:
            outcome, t = DEADLINE, c.created[i] + c.deadline
        c.outcome[i] = outcome
        c.finished[i] = t
        if c.prev_delay:
            c.prev_delay.pop(i, None)
        if c.notify and (c.closed or c.attempts[i] > 0):
            self._at(t, self._completed, c, i)  # somebody waits for this completion

    def _completed(self, c: _ClientState, i: int) -> None:
        if c.policy.max_in_flight and c.attempts[i] > 0:
            c.in_flight -= 1
        if c.closed:
            self._at(self.env.now + c.think(), self._start_closed, c)
        if c.queue:
            self._pump(c)

    # ---- running ----------------------------------------------------------------------------------------
    def run(self) -> RunResult:
        for c in self.clients:
            if c.closed:
                for _ in range(max(1, round(c.cfg.arrival.users * self.spec.load))):
                    self.env.process(self._closed_user(c))
            else:
                self._generate(c)
                self._arrivals(c)
        self.env.run(until=self.spec.duration + self.spec.drain)
        return self.result()

    def result(self) -> RunResult:
        frames, refusals = [], []
        for c in self.clients:
            col = lambda a, dt=float: np.frombuffer(a, dtype=dt) if len(a) else np.empty(0, dt)  # noqa: E731
            outcome = col(c.outcome, np.int8).copy()
            outcome[outcome == PENDING] = UNFINISHED
            created, finished = col(c.created), col(c.finished)
            qt, pt, ct = col(c.qt), col(c.pt), col(c.ct)
            frames.append(pd.DataFrame({
                "client": pd.Categorical.from_codes(np.full(c.n, c.index, np.int8),
                                                    [x.name for x in self.spec.clients]),
                "model": col(c.served, np.int8),
                "created": created, "finished": finished, "latency": finished - created,
                "admitted": col(c.admitted),
                "attempts": col(c.attempts, np.int16), "n429": col(c.n429, np.int16),
                "outcome": pd.Categorical.from_codes(outcome, OUTCOMES),
                "refused_by": pd.Categorical.from_codes(col(c.refused, np.int8), REFUSED_BY),
                "prompt_tokens": col(c.prompt).astype(np.int32), "max_tokens": col(c.max_tokens).astype(np.int32),
                "completion_tokens": col(c.completion).astype(np.int32), "audio_seconds": col(c.audio),
                "charged_tokens": col(c.charge),
                "queue_time": qt, "prompt_time": pt, "completion_time": ct, "total_time": qt + pt + ct,
            }))
            refusals.append(pd.DataFrame({
                "time": col(c.refusal_t),
                "client": pd.Categorical.from_codes(np.full(len(c.refusal_t), c.index, np.int8),
                                                    [x.name for x in self.spec.clients]),
                "model": (col(c.refusal_code, np.int16) // 8).astype(np.int8),
                "unit": pd.Categorical.from_codes((col(c.refusal_code, np.int16) % 8).astype(np.int8), REFUSED_BY)}))
        records = pd.concat(frames, ignore_index=True)
        records["model"] = pd.Categorical.from_codes(records["model"].to_numpy(np.int8), self.model_names)
        if len(frames) > 1:  # one client's requests are already in creation order: no copy needed
            records = records.sort_values(["created", "client"], kind="stable", ignore_index=True)
        records.insert(0, "id", np.arange(len(records), dtype=np.int64))
        refusals = pd.concat(refusals, ignore_index=True).sort_values("time", kind="stable", ignore_index=True)
        refusals["model"] = pd.Categorical.from_codes(refusals["model"].to_numpy(np.int8), self.model_names)
        return RunResult(records, refusals, self.spec, self.events)


def _drop_event(fn, args, _event) -> None:
    fn(*args)


def _observe(limits: LimitSet, now: float) -> tuple:
    """What the response headers tell an adaptive client: (time, rem/limit/reset for RPD, for TPM)."""
    obs = [now]
    for unit in ("rpd", "tpm"):
        lim = limits.units.get(unit)
        obs += [lim.remaining(now), lim.limit, lim.reset(now)] if lim else [math.inf, math.inf, 0.0]
    return tuple(obs)


def _header_wait(obs: tuple, tokens: float, now: float) -> float:
    """Header-aware pacing: assume each budget refills linearly to full by its reset time and wait until
    the last-seen remaining budget covers one request and its tokens."""
    t0, wait = obs[0], 0.0
    for rem, limit, reset, need in ((obs[1], obs[2], obs[3], 1.0), (obs[4], obs[5], obs[6], tokens)):
        if rem >= need or need > limit:
            continue
        ready = t0 + reset * (need - rem) / (limit - rem)
        wait = max(wait, ready - now)
    return wait


def simulate(spec: RunSpec, seed: int | np.random.SeedSequence = 0) -> RunResult:
    """Run one simulation of ``spec`` with ``seed``."""
    return Simulation(spec, seed).run()
