"""Client policies: each retry schedule's delay checked directly against its published definition (the groq
SDK's own code for ``groq-sdk``), every registered schedule built as registered, and each gate's hooks, the
setting that builds it and its place in the order the engine asks them."""
import math

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sim.config import Policy, policy_table
from sim.limitset import LimitSet
from sim.headers import observe as observe_headers
from sim.catalog import Limits
from sim.policies import (JITTERS, SCHEDULES, Adaptive, Cooldown, DecorrelatedJitter, EqualJitter, Exponential,
                          FixedDelay, FullJitter, GroqSDK, InFlightCap, OpenAISDK, Pacer, client_policy, header_wait,
                          schedule)


def fixed_u(value):
    calls = []

    def u():
        calls.append(value)
        return value
    u.calls = calls
    return u


def test_fixed_and_exponential_are_deterministic_and_draw_nothing():
    u = fixed_u(0.7)
    assert [FixedDelay(2.5).delay(a, None, u) for a in (1, 2, 9)] == [2.5, 2.5, 2.5]
    assert [Exponential(1.0, 60.0).delay(a, None, u) for a in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert u.calls == []


@given(attempt=st.integers(1, 5000), u=st.floats(0, 1, exclude_max=True))
def test_jittered_schedules_follow_the_aws_definitions(attempt, u):
    base, cap = 1.0, 60.0
    ceiling = min(cap, base * 2.0 ** min(attempt - 1, 60))
    assert FullJitter(base, cap).delay(attempt, None, lambda: u) == pytest.approx(u * ceiling)
    assert EqualJitter(base, cap).delay(attempt, None, lambda: u) == pytest.approx(ceiling / 2 + u * ceiling / 2)
    prev = 7.0
    assert DecorrelatedJitter(base, cap).delay(attempt, None, lambda: u, prev) == pytest.approx(
        min(cap, base + u * (3 * prev - base)))


def test_decorrelated_jitter_starts_from_base_and_remembers():
    d = DecorrelatedJitter(1.0, 60.0)
    assert d.memory and d.delay(1, None, lambda: 1.0) == pytest.approx(3.0)  # U(base, 3 base) at its top
    assert d.delay(1, None, lambda: 0.0) == pytest.approx(1.0)  # ... and at its bottom
    assert d.delay(2, None, lambda: 0.5, 2.0) == pytest.approx(3.5)  # 1 + 0.5 (6 - 1)
    assert d.delay(3, None, lambda: 1.0, 50.0) == 60.0  # capped


@pytest.mark.parametrize("retry_after", [None, 0, 1, 7, 60, 61, 3600])
@pytest.mark.parametrize("remaining", [2, 1])
@pytest.mark.parametrize("u", [0.0, 0.37, 0.999])
def test_groq_sdk_delay_equals_the_real_sdk(monkeypatch, retry_after, remaining, u):
    """The installed groq SDK's own _calculate_retry_timeout is the reference."""
    import groq
    from groq import _base_client
    from groq._models import FinalRequestOptions
    monkeypatch.setattr(_base_client, "random", lambda: u)
    client = groq.Groq(api_key="test", max_retries=2)
    headers = httpx.Headers({} if retry_after is None else {"retry-after": str(retry_after)})
    expected = client._calculate_retry_timeout(remaining, FinalRequestOptions.construct(method="post", url="/x"),
                                               headers)
    attempt = 2 - remaining + 1  # attempts already made
    ours = schedule(Policy(retry="groq-sdk")).delay(attempt, retry_after, lambda: u)
    assert ours == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_every_registered_schedule_is_the_one_built(name):
    """``Policy.retry = name`` builds ``SCHEDULES[name]`` (and for the ``exponential`` family, whose entry is
    ``Exponential``, the class ``jitter`` names); a schedule outside that family ignores ``jitter``.  A new
    schedule must be registered, nothing more: ``schedule()`` names none."""
    cls = SCHEDULES[name]
    assert type(schedule(Policy(retry=name))) is cls, f"retry = {name!r} does not build {cls.__name__}"
    for jitter, jittered in JITTERS.items():
        built = type(schedule(Policy(retry=name, jitter=jitter)))
        assert built is (jittered if cls is Exponential else cls), (name, jitter, built.__name__)


def test_a_newly_registered_schedule_is_built_from_the_policy(monkeypatch):
    """Registering is enough (schedule() special-cased ``fixed`` and ``groq-sdk`` and built everything else
    from ``JITTERS``: a new ``linear`` ran as ``Exponential``), with the one constructor convention
    ``from_policy`` (default ``cls(base, cap)``).  (Registered under a name no real schedule will take: a
    newcomer who adds a ``linear`` of their own must not find this test replacing it.)"""
    class Linear(Exponential):
        def delay(self, attempt, retry_after, u, prev=None):
            return min(self.cap, self.base * attempt)

    assert "test-only-linear" not in SCHEDULES
    monkeypatch.setitem(SCHEDULES, "test-only-linear", Linear)
    cfg = Policy(base=2.0, cap=7.0).model_copy(update={"retry": "test-only-linear", "jitter": "full"})
    built = schedule(cfg)
    assert type(built) is Linear and (built.base, built.cap) == (2.0, 7.0)
    assert [built.delay(a, None, fixed_u(0.5)) for a in (1, 2, 3, 4)] == [2.0, 4.0, 6.0, 7.0]
    assert schedule(Policy(retry="fixed", delay=2.5)).fixed == 2.5  # FixedDelay.from_policy reads delay


def test_groq_sdk_settings_match_the_sdk_constants():
    from groq import _constants
    pol = Policy(retry="groq-sdk")
    assert (pol.max_attempts, pol.base, pol.cap) == (_constants.DEFAULT_MAX_RETRIES + 1,
                                                     _constants.INITIAL_RETRY_DELAY, _constants.MAX_RETRY_DELAY)
    assert pol.timeout == _constants.DEFAULT_TIMEOUT.read  # the wait for an answer (connect apart: no network)
    assert isinstance(schedule(pol), GroqSDK)


def _policy(**settings):
    cfg = Policy(**settings)
    return client_policy(cfg, fixed_u(0.5), [100.0] * 10, [0.0] * 10, lambda m: LimitSet(Limits(rpm=60)))


#: every gate class of sim/policies.py -> the settings that make client_policy build it (a new gate: its line
#: here, with every setting it needs to be built, e.g. ``{"breaker_failures": 3, "breaker_open": 30.0}``)
GATES = {Cooldown: {"cooldown": 2.0}, InFlightCap: {"max_in_flight": 3}, Adaptive: {"adaptive": True},
         Pacer: {"pacing": 0.5}}


def _gate_classes() -> set:
    """The classes of sim/policies.py with a ``hold``: its gates."""
    import inspect
    import sim.policies as module
    return {cls for _, cls in inspect.getmembers(module, inspect.isclass)
            if cls.__module__ == module.__name__ and hasattr(cls, "hold")}


def test_every_gate_is_built_by_its_settings_and_asked_in_order():
    """Each gate class is built by its settings alone, and with every gate on, the gates the engine asks
    first only look: one whose ``hold`` charges (``charges = True``, the pacer) comes after every other."""
    assert _gate_classes() == set(GATES), (
        "a gate class of sim/policies.py is missing from GATES in tests/test_policies.py (or GATES names one "
        "no longer there): add it with the settings that make client_policy build it")
    for cls, settings in GATES.items():
        p = _policy(**settings)
        assert [type(g) for g in p.gates] == [cls] and p.gated, (cls.__name__, settings)
    every = _policy(**{k: v for settings in GATES.values() for k, v in settings.items()})
    assert {type(g) for g in every.gates} == set(GATES)
    charges = [getattr(g, "charges", False) for g in every.gates]
    assert charges == sorted(charges), [type(g).__name__ for g in every.gates]  # charging gates last
    assert type(every.gates[-1]) is Pacer


def test_retry_after_is_a_lower_bound_when_honoured_and_its_cap_applies():
    p = _policy(retry="fixed", delay=1.0, max_attempts=5, honor_retry_after=True)
    assert p.backoff(0, 1, 7) == 7 and p.backoff(0, 1, None) == 1.0
    assert _policy(retry="fixed", delay=9.0, max_attempts=5, honor_retry_after=True).backoff(0, 1, 7) == 9.0
    capped = _policy(retry="fixed", delay=1.0, max_attempts=5, honor_retry_after=True, retry_after_cap=3.0)
    assert capped.backoff(0, 1, 7) == 3.0
    assert _policy(retry="fixed", delay=1.0, max_attempts=5).backoff(0, 1, 7) == 1.0  # not honoured


def test_client_policy_keeps_decorrelated_memory_per_request_until_forgotten():
    p = _policy(retry="exponential", jitter="decorrelated", base=1.0, cap=60.0, max_attempts=9)
    first = p.backoff(3, 1, None)   # U = 0.5: 1 + 0.5 * (3 - 1) = 2
    second = p.backoff(3, 2, None)  # 1 + 0.5 * (6 - 1) = 3.5
    other = p.backoff(4, 1, None)
    assert (first, second, other) == (2.0, 3.5, 2.0)
    p.forget(3)
    assert p.backoff(3, 3, None) == 2.0


def test_cooldown_waits_retry_after_or_its_own_duration():
    c = Cooldown(None)
    c.on_refused(10.0, 4, 1.0)
    assert c.hold(0, 0, 12.0, True) == 14.0 and c.blocks(12.0, True) and not c.blocks(14.0, True)
    assert c.hold(0, 0, 14.0, True) == 0.0
    c.on_refused(20.0, None, 2.5)  # no retry-after: the retry delay
    assert c.until == 22.5
    fixed = Cooldown(30.0)
    fixed.on_refused(5.0, 4, 1.0)
    assert fixed.until == 35.0
    fixed.on_refused(6.0, 4, 1.0)
    assert fixed.until == 36.0
    fixed.on_refused(1.0, 4, 1.0)  # never moves back
    assert fixed.until == 36.0


def test_in_flight_cap_counts_first_attempts_only():
    cap = InFlightCap(2)
    for _ in range(2):
        assert cap.hold(0, 0, 0.0, True) == 0.0
        cap.on_send(True)
    assert cap.hold(0, 0, 0.0, True) == math.inf and cap.blocks(0.0, True)
    assert cap.hold(0, 0, 0.0, False) == 0.0  # a retry of a request already counted
    cap.on_send(False)
    assert cap.in_flight == 2
    cap.on_done(True)
    assert cap.in_flight == 1 and not cap.blocks(0.0, True)
    cap.on_done(False)  # ended before any attempt: was never counted
    assert cap.in_flight == 1


def test_pacer_starts_at_its_fraction_and_lets_oversized_requests_through():
    limits = LimitSet(Limits(rpm=60, tpm=10_000))
    pacer = Pacer(0.5, lambda m: limits, [100.0, 50_000.0], [0.0, 0.0])
    assert pacer.hold(1, 0, 0.0, True) == 0.0  # larger than the org's TPM: let through, the org answers 413
    passed = 0
    while pacer.hold(0, 0, 0.0, True) == 0.0:
        passed += 1
    assert passed == 30  # starts half full: RPM 60 at fraction 0.5
    assert pacer.hold(0, 0, 0.0, True) == pytest.approx(2.0)  # refills 1 request per 2 s
    assert pacer.hold(0, 0, 2.0, True) == 0.0


def test_header_wait_refills_linearly_to_the_reset():
    # seen at t=0: RPD 0 of 100 left, full again in 100 s; TPM plenty
    obs = (0.0, 0.0, 100.0, 100.0, math.inf, math.inf, 0.0)
    assert header_wait(obs, 10, 0.0) == pytest.approx(1.0)  # one request's share of the reset
    assert header_wait(obs, 10, 0.4) == pytest.approx(0.6)
    tpm = (0.0, math.inf, math.inf, 0.0, 100.0, 1000.0, 54.0)  # 100 of 1000 tokens left, full in 54 s
    assert header_wait(tpm, 400, 0.0) == pytest.approx(54.0 * 300 / 900)
    assert header_wait(tpm, 5000, 0.0) == 0.0  # above the limit: wait would be forever; let the org say 413


def test_adaptive_reads_the_headers_the_limit_set_produces():
    limits = LimitSet(Limits(rpd=10, tpm=1000))
    for _ in range(10):
        limits.acquire(10, 0, 0.0)
    gate = Adaptive([10.0], [0.0])
    assert gate.hold(0, 0, 0.0, True) == 0.0  # nothing seen yet
    gate.observe(0, limits, 0.0, 0, 0.0, 0.0, 0.0)
    assert gate.hold(0, 0, 0.0, True) == pytest.approx(86_400 / 10)  # one request's refill of RPD


def test_adaptive_reads_the_headers_when_the_answer_arrives_and_counts_their_reset_from_then():
    """Headers written at 0 s and read at 2 s: before 2 s the client knows nothing (it lets the request go);
    from 2 s it waits one request's refill of RPD counted from 2 s (8 640 s later), not from 0 s.  An answer
    never read (``read`` inf: the client's timeout gave it up) tells it nothing; a request of another model is
    not held by this model's headers."""
    spent = LimitSet(Limits(rpd=10, tpm=1000))
    for _ in range(10):
        spent.acquire(10, 0, 0.0)
    gate = Adaptive([10.0], [0.0])
    gate.observe(0, spent, 0.0, 0, 0.0, 0.1, 2.0)
    assert gate.hold(0, 0, 1.999, True) == 0.0
    assert gate.hold(0, 0, 2.0, True) == pytest.approx(2.0 + 86_400 / 10)
    assert gate.hold(0, 1, 2.0, True) == 0.0  # (model 1: no headers of its own yet)
    never = Adaptive([10.0], [0.0])
    never.observe(0, spent, 0.0, 0, 0.0, 0.1, math.inf)
    assert never.hold(0, 0, 1e9, True) == 0.0


def test_adaptive_counts_what_it_sent_since_the_headers_against_their_budget():
    """RPD 3 (a request back every 28 800 s).  Attempt 0 (0 s, read at 1 s) leaves 2 requests; attempt 1 goes
    at 0.5 s.  At 1 s the client reads "2 left" and knows one of them went at 0.5 s: one left, so request 2
    goes.  At 1.2 s "2 left" less two sent is none: request 3 waits for one request's refill, 28 800 s from the
    headers (read at 1 s).  Taken at face value (the old reading) "2 left" let both go, and every request
    queued behind a wait went on the same figures."""
    limits = LimitSet(Limits(rpd=3, tpm=1000))
    gate = Adaptive([10.0] * 4, [0.0] * 4)
    limits.acquire(10, 0, 0.0)
    first = observe_headers(limits, 0.0)
    gate.observe(0, limits, 0.0, 0, 0.0, 0.1, 1.0)
    limits.acquire(10, 0, 0.5)
    second = observe_headers(limits, 0.5)
    gate.observe(0, limits, 0.5, 1, 0.0, 0.1, 1.5)
    assert first[1] == 2 and first[3] == pytest.approx(28_800) and gate.hold(2, 0, 1.0, True) == 0.0
    limits.acquire(10, 0, 1.0)
    gate.observe(0, limits, 1.0, 2, 0.0, 0.1, 2.0)
    assert gate.hold(3, 0, 1.2, True) == pytest.approx(1.0 + 28_800)
    # at 1.5 s the answer to attempt 1 (1 left at 0.5 s, less a 28 800th of a request refilled) less attempt 2,
    # counted from 1.5 s: again one request's refill, less what had refilled by 0.5 s
    assert second[1] == pytest.approx(1 + 0.5 / 28_800)
    assert gate.hold(3, 0, 1.5, True) == pytest.approx(1.5 + 28_800 - 0.5)
    assert gate.hold(3, 0, 1.5, True) == pytest.approx(1.5 + header_wait((1.5, *second[1:]), 10.0, 1.5, [(1.0, 10.0)]))


def test_adaptive_counts_the_tokens_it_sent_since_against_the_tpm_budget():
    """TPM 100 (100 tokens back a minute), 30 tokens a request: the headers of attempt 0 say 70 left; with
    attempt 1 (30) out, 40 are left and request 2 goes; with attempts 1 and 2 out, 10: request 3 waits until 20
    more tokens have come back, 12 s after the headers were read."""
    limits = LimitSet(Limits(tpm=100))
    gate = Adaptive([30.0] * 4, [0.0] * 4)
    limits.acquire(30, 0, 0.0)
    first = observe_headers(limits, 0.0)
    gate.observe(0, limits, 0.0, 0, 0.0, 0.1, 1.0)
    limits.acquire(30, 0, 0.5)
    gate.observe(0, limits, 0.5, 1, 0.0, 0.1, 5.0)
    assert first[4] == 70 and gate.hold(2, 0, 1.0, True) == 0.0
    limits.acquire(30, 0, 1.0)
    gate.observe(0, limits, 1.0, 2, 0.0, 0.1, 5.0)
    assert gate.hold(3, 0, 1.1, True) == pytest.approx(1.0 + 12.0)


def test_header_wait_follows_the_budget_with_what_was_sent_since_as_a_token_bucket():
    """``sent`` (time, tokens) refills at the rate the headers imply (here 10 tokens a second: 540 back in
    54 s), one request and its tokens taken at each send (or when the headers were read, if it went before);
    the budget refills no higher than its limit, so a burst after a long lull finds the limit, not the lull's
    refill on top; headers of a full budget (reset 0) imply no rate: the limit over its minute then."""
    tpm = (0.0, math.inf, math.inf, 0.0, 60.0, 600.0, 54.0)
    assert header_wait(tpm, 100, 0.0) == pytest.approx(4.0)
    assert header_wait(tpm, 100, 0.0, [(0.0, 50.0)]) == pytest.approx(9.0)
    assert header_wait(tpm, 100, 2.0, [(0.0, 50.0)]) == pytest.approx(7.0)  # (RPD not limited)
    assert header_wait(tpm, 100, 2.0, [(1.0, 50.0)]) == pytest.approx(7.0)  # (not full by 1 s: the same)
    read_later = (5.0, *tpm[1:])
    assert header_wait(read_later, 100, 5.0, [(3.0, 50.0)]) == pytest.approx(9.0)  # (sent before: at 5 s)
    # a lull of 100 s fills it (600); two sends of 500 then leave -400: 500 tokens to come back, 50 s
    assert header_wait(tpm, 100, 100.0, [(100.0, 500.0), (100.0, 500.0)]) == pytest.approx(50.0)
    full = (0.0, math.inf, math.inf, 0.0, 600.0, 600.0, 0.0)
    assert header_wait(full, 100, 0.0, [(0.0, 550.0)]) == pytest.approx(5.0)
    assert header_wait(full, 100, 0.0, [(0.0, 500.0)]) == 0.0
    rpd = (0.0, 0.5, 10.0, 4320.0, math.inf, math.inf, 0.0)  # half a request left, full in 4 320 s
    assert header_wait(rpd, 10, 0.0, [(0.0, 20.0), (0.0, 20.0)]) == pytest.approx(4320.0 * 2.5 / 9.5)
    assert header_wait(tpm, 700, 0.0, [(0.0, 50.0)]) == 0.0  # above the limit: let the org answer 413
    # a window limiter's headers: the reset is the window's end, not the refill of what is used
    untouched = (0.0, math.inf, math.inf, 0.0, 600.0, 600.0, 30.0)  # (nothing used, the window ends in 30 s)
    assert header_wait(untouched, 100, 0.0, [(0.0, 650.0)]) == pytest.approx(15.0)  # (the limit a minute)
    ending = (0.0, math.inf, math.inf, 0.0, 590.0, 600.0, 0.0)  # (a window ending now)
    assert header_wait(ending, 600, 0.0) == pytest.approx(1.0)
    assert header_wait((0.0, math.inf, math.inf, 0.0, 590.0, 600.0, 0.5), 600, 0.0) == pytest.approx(0.5)


def test_adaptive_goes_by_its_latest_attempt_answered_not_the_last_answer_read():
    """A long success sent at 0 s (headers: RPD full but one) is read at 5 s, after the quick 429 of an attempt
    sent at 1 s (RPD spent) was read at 1.1 s: the 429 is the newer news, and the client keeps going by it."""
    full, spent = LimitSet(Limits(rpd=10)), LimitSet(Limits(rpd=10))
    full.acquire(10, 0, 0.0)
    for _ in range(10):
        spent.acquire(10, 0, 0.0)
    gate = Adaptive([10.0] * 3, [0.0] * 3)
    gate.observe(0, full, 0.0, 0, 0.0, 0.1, 5.0)
    gate.observe(0, spent, 1.0, 1, 40.0, 0.1, 1.1)
    held = gate.hold(2, 0, 1.1, True)
    assert held == pytest.approx(1.1 + header_wait((1.1, *observe_headers(spent, 1.0)[1:]), 10.0, 1.1))
    assert held > 1.1 + 8000  # (a tenth of a day: one request's refill)
    assert gate.hold(2, 0, 5.0, True) == held  # (the older answer, read at 5 s, changes nothing)


def test_every_builtin_policy_assembles():
    gate_settings = {k for settings in GATES.values() for k in settings}
    for name, cfg in policy_table().items():
        p = client_policy(cfg, fixed_u(0.5), [1.0], [0.0], lambda m: LimitSet(Limits(rpm=60)))
        gated = any(getattr(cfg, k) != Policy.model_fields[k].default for k in gate_settings)
        assert p.gated == (gated or cfg.queue_size is not None), name
        assert p.max_attempts == cfg.max_attempts and p.retry_on == frozenset(cfg.retry_on)


@pytest.mark.parametrize("status", [400, 408, 409, 413, 422, 429, 498, 499, 500, 501, 502, 503, 504, 505, 520, 529])
def test_groq_sdk_retries_exactly_what_the_real_sdk_retries(status):
    """The installed SDK's own _should_retry is the reference (no x-should-retry header: Groq sends none)."""
    import groq
    client = groq.Groq(api_key="test")
    reference = client._should_retry(httpx.Response(status, request=httpx.Request("POST", "http://x")))
    assert (status in Policy(retry="groq-sdk").retry_on) == reference


@pytest.mark.parametrize("cls", sorted({*SCHEDULES.values(), *JITTERS.values()}, key=lambda c: c.__name__))
def test_a_schedules_obeys_is_what_its_delay_does(cls):
    """``Schedule.obeys`` (read by the engine's fast lane to skip the call) promises that every retry-after
    up to it is the delay itself, at any attempt and draw; the groq SDK's is 60 s, the others obey none."""
    s = cls.from_policy(Policy(delay=2.5, base=1.0, cap=60.0))
    for attempt in (1, 2, 5):
        for u in (0.0, 0.3, 0.6):
            for ra in range(1, s.obeys + 1):
                assert s.delay(attempt, ra, lambda u=u: u, None) == float(ra), (cls.__name__, attempt, ra)
    shipped = {FixedDelay: 0, Exponential: 0, FullJitter: 0, EqualJitter: 0, DecorrelatedJitter: 0, GroqSDK: 60,
               OpenAISDK: 120}
    assert cls.obeys == shipped.get(cls, cls.obeys)  # (the shipped schedules' promises, pinned)


def test_a_gate_whose_hold_charges_is_asked_after_those_that_only_look(monkeypatch):
    """``client_policy`` orders the gates so that one whose ``hold`` charges (``charges = True``: the pacer)
    comes after every gate that only looks, whatever order they were appended in: a gate asked after it that
    then held the request would leave it charged for an attempt not sent."""
    import sim.policies as policies

    class ChargingCooldown(Cooldown):  # a gate appended before another, that charges
        charges = True
    monkeypatch.setattr(policies, "Cooldown", ChargingCooldown)
    cfg = Policy(retry="fixed", max_attempts=3, cooldown=5.0, max_in_flight=2, pacing=0.5)
    gates = client_policy(cfg, fixed_u(0.5), [1.0], [0.0], lambda m: LimitSet(Limits(rpm=60))).gates
    assert [type(g).__name__ for g in gates] == ["InFlightCap", "ChargingCooldown", "Pacer"]
    assert [getattr(g, "charges", False) for g in gates] == [False, True, True]


def test_the_pacer_keeps_one_limit_set_per_model():
    """The pacer's set is made at its first use and kept: the kernel reads it through ``limits`` and the
    general path charges it through ``hold``, so both must see one state."""
    pacer = Pacer(0.5, lambda m: LimitSet(Limits(rpm=60)), [1.0] * 100, [0.0] * 100)
    own = pacer.limits(0)
    assert pacer.limits(0) is own and pacer.limits(1) is not own
    holds = [pacer.hold(i, 0, 0.0, True) for i in range(31)]
    assert holds[:30] == [0.0] * 30 and holds[30] == pytest.approx(2.0)  # 30 a minute: the next in 2 s
    assert own.units["rpm"].remaining(0.0) == pytest.approx(0.0, abs=1e-9)  # what hold charged, limits shows


@pytest.mark.parametrize("retry_after", [None, 0, 1, 7, 60, 61, 120, 121, 3600])
@pytest.mark.parametrize("remaining", [2, 1])
@pytest.mark.parametrize("u", [0.0, 0.37, 0.999])
def test_openai_sdk_delay_equals_the_real_sdk(monkeypatch, retry_after, remaining, u):
    """A client of Groq's OpenAI-compatible API through the openai SDK: its own _calculate_retry_timeout is the
    reference (a retry-after obeyed up to 120 s, else the groq SDK's backoff)."""
    openai = pytest.importorskip("openai")
    httpx2 = pytest.importorskip("httpx2")
    from openai import _base_client
    from openai._models import FinalRequestOptions
    monkeypatch.setattr(_base_client, "random", lambda: u)
    client = openai.OpenAI(api_key="test", max_retries=2)
    headers = httpx2.Headers({} if retry_after is None else {"retry-after": str(retry_after)})
    expected = client._calculate_retry_timeout(remaining, FinalRequestOptions.construct(method="post", url="/x"),
                                               headers)
    ours = schedule(Policy(retry="openai-sdk")).delay(2 - remaining + 1, retry_after, lambda: u)
    assert ours == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("retry_after", [None, 1, 120, 121, 346])
@pytest.mark.parametrize("status", [400, 408, 409, 413, 429, 498, 500, 503, 529])
def test_openai_sdk_retries_exactly_what_the_real_sdk_retries(status, retry_after):
    """The openai SDK's own _should_retry: the groq SDK's statuses, but never when the retry-after is above
    120 s (a Groq 429 on RPD or TPD says minutes to hours): the request then ends at its first 429."""
    openai = pytest.importorskip("openai")
    httpx2 = pytest.importorskip("httpx2")
    client = openai.OpenAI(api_key="test")
    headers = {} if retry_after is None else {"retry-after": str(retry_after)}
    reference = client._should_retry(httpx2.Response(status, headers=headers,
                                                     request=httpx2.Request("POST", "http://x")))
    cfg = Policy(retry="openai-sdk")
    p = client_policy(cfg, fixed_u(0.5), [1.0], [0.0], lambda m: None)
    ours = status in p.retry_on and not (retry_after is not None and retry_after > p.gives_up)
    assert ours == reference


def test_openai_sdk_settings_match_the_sdk_constants():
    openai = pytest.importorskip("openai")
    from openai import _constants
    pol = Policy(retry="openai-sdk")
    assert (pol.max_attempts, pol.base, pol.cap) == (_constants.DEFAULT_MAX_RETRIES + 1,
                                                     _constants.INITIAL_RETRY_DELAY, _constants.MAX_RETRY_DELAY)
    assert pol.timeout == _constants.DEFAULT_TIMEOUT.read and openai is not None
    assert OpenAISDK.obeys == OpenAISDK.gives_up_above == _constants.MAX_RETRY_AFTER_DELAY
    assert isinstance(schedule(pol), OpenAISDK)
