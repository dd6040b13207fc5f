"""Client policies: what a client does about 429s, errors and its own pacing, one small class per idea.

A client group's behaviour is assembled from injected pieces (:func:`client_policy` builds them from a
validated :class:`sim.config.Policy`):

* a **retry schedule** -- ``delay(attempt, retry_after, u, prev) -> seconds`` before the next attempt.
  ``attempt`` is the number of attempts already made (1 after the first), ``retry_after`` the whole seconds
  of the response's ``retry-after`` header (None without one), ``u`` a source of U(0,1) numbers (a
  zero-argument callable, called at most once and only by random schedules, so a deterministic schedule
  consumes no random numbers), ``prev`` this request's previous delay (None before the first retry; only
  schedules with ``memory = True`` read it).  Schedules are pure: check them directly,
  ``FullJitter(base=1, cap=60).delay(3, None, lambda: 0.5) == 2.0``.  :func:`schedule` builds the class
  ``SCHEDULES[retry]`` names (``JITTERS[jitter]`` for the ``exponential`` family) with its ``from_policy``.
* **gates** -- rules that hold requests in the client's own queue before they are sent.  Hooks the engine
  calls (a gate defines those it needs; docs/architecture.md says exactly when each fires):
  ``hold(i, model, now, first)`` -> 0.0 to let request ``i`` go, else the time to look again (``inf``: when a
  request completes, which a group hears only with a gate's ``on_done`` or a closed loop); ``blocks(now,
  first)`` the side-effect-free part of ``hold`` a full bounded queue asks; ``on_send(first)``;
  ``on_refused(t, retry_after, delay)`` (at ``t``, when the client reads it: every 429, ``delay`` None when
  it is not retried after a back-off -- a fallback hop, or a 429 that ends the request --, and every other
  refusal that will be retried); ``on_done(attempted)``;
  ``observe(model, limits, now, i, wait, rtt, read)`` (every attempt that reached a limit set, as its charge
  is decided: ``wait`` 0.0 admitted, ``inf`` too large, else refused; ``read`` when the client reads the
  answer, ``inf`` never).  The engine asks the gates' ``hold`` in order and stops at the
  first that holds; a gate whose ``hold`` charges something when it lets a request go (``charges = True``,
  the pacer) is asked after every other.

:class:`ClientPolicy` holds one client group's pieces for one run, plus the state they need.  To add a policy
idea: a class here, its settings in :class:`sim.config.Policy`, a line in :func:`client_policy`, and tests in
``tests/test_policies.py`` (docs/architecture.md's recipe lists every test that must learn of it); the engine
does not change.
"""
from __future__ import annotations

import heapq
import itertools
import math
from abc import ABC, abstractmethod
from collections import deque
from typing import Callable

from .catalog import UNIT_SPEC
from .headers import HEADER_UNITS, observe
from .limitset import LimitSet

Uniform = Callable[[], float]
_INF = math.inf  # (a module constant: a pacer's hold runs on every paced arrival)


# ---- retry schedules --------------------------------------------------------------------------------

class Schedule(ABC):
    """A retry schedule (see the module docstring for the ``delay`` contract)."""
    memory = False
    #: a ``retry-after`` of ``0 < value <= obeys`` seconds is the delay itself, whatever else the schedule
    #: says (0: never); sim/kernel.py reads it to skip the call for such a retry
    obeys = 0
    #: a ``retry-after`` above this many seconds is not waited for: the client gives up at once, attempts
    #: left or not (the openai SDK's ``_should_retry``); ``inf``: never
    gives_up_above = math.inf

    @abstractmethod
    def delay(self, attempt: int, retry_after: int | None, u: Uniform, prev: float | None = None) -> float:
        """Seconds to wait before the next attempt."""

    @classmethod
    def from_policy(cls, cfg) -> Schedule:
        """This schedule from a :class:`sim.config.Policy`'s settings: ``cls(base, cap)``.  A schedule with
        other parameters overrides it (:class:`FixedDelay` reads ``delay``)."""
        return cls(cfg.base, cfg.cap)


class FixedDelay(Schedule):
    """The same ``delay`` before every retry."""

    def __init__(self, delay: float):
        self.fixed = delay

    @classmethod
    def from_policy(cls, cfg) -> FixedDelay:
        return cls(cfg.delay)

    def delay(self, attempt, retry_after, u, prev=None):
        return self.fixed


class Exponential(Schedule):
    """``min(cap, base * 2^n)`` with ``n = attempt - 1`` retries made so far (no jitter)."""

    def __init__(self, base: float, cap: float):
        self.base, self.cap = base, cap

    def ceiling(self, attempt: int) -> float:
        n = min(attempt - 1, 60)  # 2^60 x base is past any cap; avoids float overflow
        return min(self.cap, self.base * 2.0 ** n)

    def delay(self, attempt, retry_after, u, prev=None):
        return self.ceiling(attempt)


class FullJitter(Exponential):
    """``U * ceiling`` (AWS Architecture Blog, "Exponential Backoff And Jitter", 2015)."""

    def delay(self, attempt, retry_after, u, prev=None):
        return u() * self.ceiling(attempt)


class EqualJitter(Exponential):
    """``ceiling / 2 + U * ceiling / 2`` (same source)."""

    def delay(self, attempt, retry_after, u, prev=None):
        ceiling = self.ceiling(attempt)
        return ceiling / 2 + u() * ceiling / 2


class DecorrelatedJitter(Exponential):
    """``min(cap, U(base, 3 * previous delay))``, the first previous delay being ``base`` (same source)."""
    memory = True

    def delay(self, attempt, retry_after, u, prev=None):
        prev = self.base if prev is None else prev
        return min(self.cap, self.base + u() * (3 * prev - self.base))


class GroqSDK(Exponential):
    """The official groq Python SDK (``_base_client._calculate_retry_timeout``): a ``retry-after`` of
    0 < value <= 60 s is obeyed as is; otherwise ``min(base * 2^n, cap) * (1 - 0.25 U)``."""
    obeys = 60

    def delay(self, attempt, retry_after, u, prev=None):
        if retry_after is not None and 0 < retry_after <= self.obeys:
            return float(retry_after)
        return self.ceiling(attempt) * (1 - 0.25 * u())


class OpenAISDK(GroqSDK):
    """The official openai Python SDK (``_base_client._calculate_retry_timeout`` and ``_should_retry``), as a
    client of Groq's OpenAI-compatible API: the groq SDK's backoff, but a ``retry-after`` of up to 120 s
    (``MAX_RETRY_AFTER_DELAY``) is obeyed, and one above it is not retried at all."""
    obeys = 120
    gives_up_above = 120


#: ``Policy.retry`` -> schedule class.  An entry of exactly :class:`Exponential` is the ``exponential`` family,
#: whose class ``Policy.jitter`` picks from ``JITTERS`` (``none`` too: with ``max_attempts = 1``, its default,
#: it never asks for a delay)
SCHEDULES = {"none": Exponential, "fixed": FixedDelay, "exponential": Exponential, "groq-sdk": GroqSDK,
             "openai-sdk": OpenAISDK}
#: ``Policy.jitter`` of an ``exponential`` schedule -> class
JITTERS = {"none": Exponential, "full": FullJitter, "equal": EqualJitter, "decorrelated": DecorrelatedJitter}


def schedule(cfg) -> Schedule:
    """The retry schedule of a :class:`sim.config.Policy`: the class ``SCHEDULES[cfg.retry]`` (or, for the
    ``exponential`` family, ``JITTERS[cfg.jitter]``), built by its ``from_policy``.  Every registered class is
    built as registered: nothing here names a schedule."""
    cls = SCHEDULES[cfg.retry]
    if cls is Exponential:  # (identity, not a subclass: GroqSDK or a new Exponential subclass is itself)
        cls = JITTERS[cfg.jitter]
    return cls.from_policy(cfg)


# ---- gates ------------------------------------------------------------------------------------------

class Cooldown:
    """After a refusal (every 429 the client reads, whether retried, sent down the fallback chain or ending
    its request; any other refusal that will be retried), the whole client pauses: for the response's
    ``retry-after`` (or, without one, the retry delay) when ``duration`` is None, else for ``duration``
    seconds."""

    def __init__(self, duration: float | None):
        self.duration = duration
        self.until = 0.0

    def hold(self, i, model, now, first):
        return self.until if now < self.until else 0.0

    def blocks(self, now, first):
        return now < self.until

    def on_refused(self, t, retry_after, delay):
        cool = (retry_after or delay or 0.0) if self.duration is None else self.duration
        self.until = max(self.until, t + cool)


class InFlightCap:
    """At most ``cap`` requests between their first attempt and their end; retries are not counted again."""

    def __init__(self, cap: int):
        self.cap, self.in_flight = cap, 0

    def hold(self, i, model, now, first):
        return math.inf if first and self.in_flight >= self.cap else 0.0

    def blocks(self, now, first):
        return first and self.in_flight >= self.cap

    def on_send(self, first):
        if first:
            self.in_flight += 1

    def on_done(self, attempted):
        if attempted:
            self.in_flight -= 1


#: the window of each unit the headers describe (RPD, TPM): its limit refills over it
_HEADER_WINDOWS = tuple(UNIT_SPEC[unit][0] for unit, _ in HEADER_UNITS)


def header_wait(obs: tuple, tokens: float, now: float, sent=()) -> float:
    """Header-aware pacing: the seconds from ``now`` until the budget the headers showed (``obs`` from
    :func:`sim.headers.observe`, its first field when they were read) covers one request and its tokens,
    assuming each budget refills linearly to full by its reset time.  ``sent``: the ``(time, tokens)`` of each
    attempt the client sent after the one those headers answered, in order, which they cannot show: the client
    follows its budget from the headers as a token bucket would, taking one request and its tokens for each
    when it went (or when it read the headers, if it went before) and refilling it up to the limit, at the rate
    the headers imply (a full budget's headers, reset 0, imply none: then the limit over its window)."""
    t0, wait = obs[0], 0.0
    for k, (rem, limit, reset, need) in enumerate(((obs[1], obs[2], obs[3], 1.0), (obs[4], obs[5], obs[6], tokens))):
        if need > limit or limit == _INF:  # (too large: the org answers 413; no such limit)
            continue
        per = reset / (limit - rem) if limit > rem and reset > 0 else _HEADER_WINDOWS[k] / limit  # s per unit
        level, t = rem, t0
        for when, charge in sent:
            if when > t:
                level, t = min(limit, level + (when - t) / per), when
            level -= 1.0 if k == 0 else charge
        if level < need:
            wait = max(wait, t + per * (need - level) - now)
    return wait


class Adaptive:
    """Reads every answer's rate-limit headers (RPD and TPM only: that is all Groq sends) and holds a request
    until, by :func:`header_wait`, the budget it saw would cover it.  Checked before a pacer, so a held
    request charges the pacer nothing.

    The headers are those of the limit set's state when the server decided the attempt, and the client reads
    them with the answer (``read``: a refusal a round trip later, a success when it has been served; never, an
    answer its ``timeout`` gave up on).  It goes by the answer to its latest attempt read so far (an answer to an
    earlier attempt, read later, is older news), counts the ``reset`` durations from when it read them (it
    cannot know when the server wrote them), and follows its budget from there with what it has sent since
    that attempt, which those headers cannot show yet.  Without that, every request sent before the first
    answer came back, or let go together when a wait ended, went on the same figures."""

    def __init__(self, charge, audio):
        self.charge = charge
        self.obs: dict = {}  # model -> the headers it goes by (as observe() gives them, timed when it read them)
        self.seen: dict = {}  # model -> the sequence number of the attempt those headers answered
        self.sent: dict = {}  # model -> deque of (sequence, (time, tokens)) of its attempts after that one
        self.unread: list = []  # heap of (read at, sequence, model, headers) of answers on their way back
        self._seq = itertools.count()

    def observe(self, model, limits, now, i, wait, rtt, read):
        seq = next(self._seq)
        sent = self.sent.get(model)
        if sent is None:
            sent = self.sent[model] = deque()
        sent.append((seq, (now, self.charge[i])))
        if read != _INF:
            heapq.heappush(self.unread, (read, seq, model, observe(limits, now)))

    def _read(self, now: float) -> None:
        """Take in the answers read by ``now``, in the order they were read."""
        unread = self.unread
        while unread and unread[0][0] <= now:
            read, seq, model, obs = heapq.heappop(unread)
            if seq <= self.seen.get(model, -1):
                continue  # an answer to an earlier attempt than the one it goes by
            self.obs[model] = (read, *obs[1:])
            self.seen[model] = seq
            sent = self.sent[model]
            while sent and sent[0][0] <= seq:  # in these headers now (or refused: never charged)
                sent.popleft()

    def hold(self, i, model, now, first):
        self._read(now)
        obs = self.obs.get(model)
        if obs is not None:
            wait = header_wait(obs, self.charge[i], now, [s for _, s in self.sent[model]])
            if wait > 0.0:
                return now + wait
        return 0.0


class Pacer:
    """A client-side token bucket per model at ``fraction`` of the org's rates (see
    :class:`sim.limitset.LimitSet`'s ``rate_fraction``): a request goes when the pacer admits it (and is
    charged then).  One larger than the org's limit is let through, for the org to answer 413."""
    #: its ``hold`` charges the pacer for a request it lets go, so it must be the last gate asked: a gate
    #: asked after it that then held the request would leave the pacer charged for an attempt not sent
    charges = True

    def __init__(self, fraction: float, limits_of: Callable[[int], LimitSet], charge, audio):
        self.fraction, self.limits_of, self.charge, self.audio = fraction, limits_of, charge, audio
        self.pacers: dict[int, LimitSet] = {}

    def limits(self, model: int) -> LimitSet:
        """The pacer's own limit set on ``model`` (made at its first use)."""
        pacer = self.pacers.get(model)
        if pacer is None:
            pacer = self.pacers[model] = LimitSet(self.limits_of(model).limits, "token_bucket",
                                                  rate_fraction=self.fraction)
        return pacer

    def hold(self, i, model, now, first):
        pacer = self.pacers.get(model)
        if pacer is None:
            pacer = self.limits(model)
        wait = pacer.acquire(self.charge[i], self.audio[i], now)
        return now + wait if 0.0 < wait < _INF else 0.0


# ---- one client group's policy ------------------------------------------------------------------------

#: the status of an attempt the client stopped waiting for (its ``timeout``): no answer came, so no HTTP status
TIMED_OUT = 0


class ClientPolicy:
    """One client group's policy pieces for one run, and the per-request memory its schedule needs."""

    def __init__(self, schedule: Schedule, *, u: Uniform, retry_on=(), max_attempts: int = 1,
                 honor_retry_after: bool = False, retry_after_cap: float | None = None,
                 deadline: float | None = None, fallback: int = 0, queue_size: int | None = None,
                 gates: list | None = None, timeout: float | None = None):
        self.schedule, self.u = schedule, u
        self.retry_on, self.max_attempts = frozenset(retry_on), max_attempts
        #: a retry-after above this ends the request (:attr:`Schedule.gives_up_above`)
        self.gives_up = schedule.gives_up_above
        self.honor, self.ra_cap = honor_retry_after, retry_after_cap
        self.deadline, self.fallback, self.queue_size = deadline, fallback, queue_size
        #: seconds the client waits for an answer before it gives the attempt up as a timeout (None: for ever)
        self.timeout = timeout
        self.gates = gates or []
        self._prev: dict[int, float] = {}
        # the hooks, prepared once: the engine loops over these lists on its hot path
        self.holds = [g.hold for g in self.gates]
        self.on_send = [g.on_send for g in self.gates if hasattr(g, "on_send")]
        self.on_refused = [g.on_refused for g in self.gates if hasattr(g, "on_refused")]
        self.on_done = [g.on_done for g in self.gates if hasattr(g, "on_done")]
        self.observers = [g.observe for g in self.gates if hasattr(g, "observe")]
        self._blocks = [g.blocks for g in self.gates if hasattr(g, "blocks")]
        #: the schedule's own ``delay`` when :meth:`backoff` adds nothing to it (no per-request memory, no
        #: retry-after floor), else None: ``delay(attempt, retry_after, u)`` is then the backoff, one call less
        self.plain_delay = schedule.delay if not schedule.memory and not honor_retry_after else None
        #: does the client hold requests in a queue of its own before sending?
        self.gated = bool(self.gates) or queue_size is not None

    def backoff(self, i: int, attempt: int, retry_after: int | None) -> float:
        """Seconds before request ``i``'s next attempt; a honoured ``retry-after`` (capped at
        ``retry_after_cap``) is a lower bound on the schedule's delay."""
        sched = self.schedule
        if sched.memory:
            delay = self._prev[i] = sched.delay(attempt, retry_after, self.u, self._prev.get(i))
        else:
            delay = sched.delay(attempt, retry_after, self.u)
        if self.honor and retry_after is not None:
            ra = retry_after if self.ra_cap is None else min(retry_after, self.ra_cap)
            delay = max(delay, ra)
        return delay

    def forget(self, i: int) -> None:
        """Request ``i`` has ended."""
        if self._prev:
            self._prev.pop(i, None)

    def next_model(self, pos: int, status: int) -> int:
        """Fallback: the position in the model chain to try at once after a refusal, or 0 (the primary
        model, through the ordinary retry path).  Only a 429 moves down the chain."""
        return pos + 1 if status == 429 and pos < self.fallback else 0

    def blocked(self, now: float, first: bool) -> bool:
        """Would the client's rules (cooldown, in-flight cap) keep a request from going now?"""
        return any(b(now, first) for b in self._blocks)


def client_policy(cfg, u: Uniform, charge, audio, limits_of: Callable[[int], LimitSet]) -> ClientPolicy:
    """Assemble a :class:`ClientPolicy` from validated settings (a :class:`sim.config.Policy`).  ``charge``
    and ``audio`` are the client's per-request columns (what pacing gates read), ``limits_of(model)`` the
    org's limit set of a model index."""
    gates: list = []
    if cfg.cooldown is not None:
        gates.append(Cooldown(None if cfg.cooldown == "retry-after" else cfg.cooldown))
    if cfg.max_in_flight:
        gates.append(InFlightCap(cfg.max_in_flight))
    if cfg.adaptive:
        gates.append(Adaptive(charge, audio))
    if cfg.pacing:
        gates.append(Pacer(cfg.pacing, limits_of, charge, audio))
    # the engine asks the gates in this order and stops at the first that holds: every gate that only looks
    # first (in the order appended), then any whose hold charges (the pacer), so nothing is charged for a
    # request another gate then holds
    gates.sort(key=lambda gate: getattr(gate, "charges", False))
    return ClientPolicy(schedule(cfg), u=u, retry_on=cfg.retry_on, max_attempts=cfg.max_attempts,
                        honor_retry_after=cfg.honor_retry_after, retry_after_cap=cfg.retry_after_cap,
                        deadline=cfg.deadline, fallback=len(cfg.fallback), queue_size=cfg.queue_size, gates=gates,
                        timeout=cfg.timeout)
