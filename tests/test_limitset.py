"""Rate-limit sets: all-or-nothing charging, binding unit, 413 vs 429, and Groq's headers."""
import copy
import math
import numpy as np

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sim.catalog import Catalog, Limits
from sim.headers import parse_reset, rate_limit_headers, retry_after_function, retry_after_seconds
from sim.limiters import ALGORITHMS
from sim.limitset import LimitSet
from sim.units import format_reset

CAT = Catalog.published()


def snapshot(ls, now):
    return {u: lim.remaining(now) for u, lim in ls.units.items()}


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
@given(ops=st.lists(st.tuples(st.floats(0, 20), st.integers(0, 9000), st.integers(0, 400)), min_size=1, max_size=40),
       limits=st.builds(Limits, rpm=st.integers(1, 40), rpd=st.integers(1, 200), tpm=st.integers(100, 8000),
                        tpd=st.none() | st.integers(500, 50_000), ash=st.none() | st.integers(100, 3000)))
def test_all_or_nothing_and_binding_unit(algorithm, ops, limits):
    ls = LimitSet(limits, algorithm)
    now = 0.0
    for dt, tokens, audio in ops:
        now += dt
        before = snapshot(ls, now)
        probe = copy.deepcopy(ls)
        wait = ls.acquire(tokens, audio, now)
        after = snapshot(ls, now)
        decision = probe.check(tokens, audio, now)
        assert decision.admitted == (wait == 0.0)
        if wait == 0.0:
            costs = {"rpm": 1, "rpd": 1, "tpm": tokens, "tpd": tokens, "ash": audio, "asd": audio}
            for unit in before:
                assert after[unit] == pytest.approx(before[unit] - costs[unit], abs=1e-6)
        else:
            assert after == before, "a refused request charged something"
            assert ls.binding in decision.refused
            assert ls.units[ls.binding].wait(
                {"rpm": 1, "rpd": 1, "tpm": tokens, "tpd": tokens, "ash": audio, "asd": audio}[ls.binding], now) > 0
            assert decision.wait == pytest.approx(wait, rel=1e-12, abs=1e-9)  # acquire may answer from its cache
            assert decision.too_large == math.isinf(wait)
            if not math.isinf(wait):
                assert probe.acquire(tokens, audio, now + wait) == 0.0, "not admitted after the announced wait"


def test_reference_example_rpm_binds_before_tpm():
    ls = LimitSet(Limits(rpm=50, tpm=200_000))
    assert all(ls.acquire(100, 0, 1.0) == 0.0 for _ in range(50))
    d = ls.check(100, 0, 1.0)
    assert not d.admitted and d.refused == ("rpm",)
    assert ls.units["tpm"].remaining(1.0) == pytest.approx(195_000)


def test_too_large_is_413_not_429():
    ls = LimitSet(CAT.limits("free", "llama-3.3-70b-versatile"))
    d = ls.check(12_001, 0, 0.0)
    assert d.too_large and not d.admitted and "tpm" in d.refused
    assert ls.check(12_000, 0, 0.0).admitted


def test_headers_reproduce_reference_example():
    ls = LimitSet(Limits(rpd=14_400, tpm=18_000))
    for _ in range(30):
        assert ls.acquire(0.1, 0, 0.0) == 0.0
    h = rate_limit_headers(ls, 0.44)
    assert h["x-ratelimit-limit-requests"] == "14400"
    assert h["x-ratelimit-limit-tokens"] == "18000"
    assert h["x-ratelimit-remaining-requests"] == "14370"
    assert h["x-ratelimit-reset-requests"] == "2m59.56s"
    assert parse_reset(h["x-ratelimit-reset-requests"]) == pytest.approx(179.56)
    assert "retry-after" not in h


def test_retry_after_only_on_429_and_whole_seconds():
    ls = LimitSet(Limits(rpm=1, rpd=100, tpm=1000))
    assert ls.acquire(10, 0, 0.0) == 0.0
    wait = ls.acquire(10, 0, 0.5)
    h = rate_limit_headers(ls, 0.5, wait)
    assert wait == pytest.approx(59.5)
    assert h["retry-after"] == "60"
    assert retry_after_seconds(59.5, "floor") == 59
    assert retry_after_seconds(0.2, "ceil") == 1
    assert retry_after_seconds(2.0, "ceil") == 2


def test_whisper_has_audio_units_and_no_token_headers():
    ls = LimitSet(CAT.limits("free", "whisper-large-v3"))
    assert set(ls.units) == {"rpm", "rpd", "ash", "asd"}
    assert ls.check(0, 7_201, 0.0).too_large
    h = rate_limit_headers(ls, 0.0)
    assert "x-ratelimit-limit-tokens" not in h and h["x-ratelimit-limit-requests"] == "2000"


@pytest.mark.parametrize("seconds,text", [(179.56, "2m59.56s"), (7.66, "7.66s"), (180, "3m0s"), (0, "0s"),
                                          (3725.5, "1h2m5.5s"), (0.004, "4ms")])
def test_reset_format_round_trips(seconds, text):
    assert format_reset(seconds) == text
    assert parse_reset(text) == pytest.approx(seconds, abs=0.001)


# ---- binding unit, the request units' refusal memory, refunds -------------------------------------------

COST = {"rpm": lambda t, a: 1, "rpd": lambda t, a: 1, "tpm": lambda t, a: t, "tpd": lambda t, a: t,
        "ash": lambda t, a: a, "asd": lambda t, a: a}


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
@given(ops=st.lists(st.tuples(st.floats(0, 20), st.integers(0, 3000), st.integers(0, 300)), min_size=1, max_size=30),
       limits=st.builds(Limits, rpm=st.integers(1, 20), rpd=st.integers(1, 100), tpm=st.integers(100, 4000),
                        tpd=st.none() | st.integers(500, 20_000), ash=st.none() | st.integers(100, 1000)))
def test_refused_units_and_binding_unit_are_the_units_own_answers(algorithm, ops, limits):
    ls = LimitSet(limits, algorithm)
    now = 0.0
    for dt, tokens, audio in ops:
        now += dt
        own = {u: lim.wait(COST[u](tokens, audio), now) for u, lim in copy.deepcopy(ls).units.items()
               if COST[u](tokens, audio)}
        decision = copy.deepcopy(ls).check(tokens, audio, now)
        wait = ls.acquire(tokens, audio, now)
        assert set(decision.refused) == {u for u, w in own.items() if w > 0}
        assert decision.wait == max(own.values(), default=0.0)
        if wait > 0:
            assert wait == pytest.approx(max(own.values()), rel=1e-9, abs=1e-6)
            assert own[ls.binding] == pytest.approx(max(own.values()), rel=1e-9, abs=1e-6)


def _spy(lim):
    calls = []
    wait = lim.wait

    def spied(amount, now):
        calls.append(now)
        return wait(amount, now)
    lim.wait = spied
    return calls


def test_request_units_are_not_asked_again_while_they_refuse():
    ls = LimitSet(Limits(rpm=2, tpm=1000))
    ls.acquire = LimitSet.acquire.__get__(ls)  # the generic path, which asks each limiter's wait (spied on)
    assert ls.acquire(500, 0, 0.0) == 0.0 and ls.acquire(500, 0, 0.0) == 0.0
    calls = _spy(ls.units["rpm"])
    # t=1: RPM (1/30 per s) has refilled 1/30: waits 29 s, until 30; TPM waits (900 - 16.7) / 16.7 = 53 s
    assert ls.acquire(900, 0, 1.0) == pytest.approx(53.0) and ls.binding == "tpm"
    assert calls == [1.0]
    assert ls.acquire(10, 0, 2.0) == pytest.approx(28.0) and ls.binding == "rpm"  # from memory
    assert ls.acquire(2000, 0, 3.0) == math.inf and ls.binding == "tpm"          # 413 while blocked
    assert calls == [1.0]
    assert ls.acquire(10, 0, 30.0 - 1e-7) > 0 and calls[-1] == 30.0 - 1e-7    # near the end: asked again
    assert ls.acquire(10, 0, 30.0) == 0.0
    assert ls.units["rpm"].remaining(30.0) == pytest.approx(0.0, abs=1e-9)


def test_memory_of_a_refusal_ends_when_the_unit_would_admit():
    ls = LimitSet(Limits(rpm=1))
    assert ls.acquire(0, 0, 0.0) == 0.0
    assert ls.acquire(0, 0, 0.0) == pytest.approx(60.0)
    assert ls.acquire(0, 0, 59.0) == pytest.approx(1.0)
    assert ls.acquire(0, 0, 60.0) == 0.0
    assert ls.acquire(0, 0, 60.5) == pytest.approx(59.5)


def test_zero_tokens_or_audio_skip_those_units():
    ls = LimitSet(Limits(rpm=100, tpm=100, ash=100))
    assert ls.acquire(100, 100, 0.0) == 0.0
    assert ls.acquire(0, 0, 0.0) == 0.0       # TPM and ASH are empty but not asked
    assert ls.check(1, 0, 0.0).refused == ("tpm",)
    assert ls.check(0, 1, 0.0).refused == ("ash",)
    assert ls.check(1, 1, 0.0).refused == ("tpm", "ash")
    assert ls.units["rpm"].remaining(0.0) == pytest.approx(98.0)


def test_refund_tokens_gives_back_to_token_units_only():
    ls = LimitSet(Limits(rpm=10, rpd=100, tpm=1000, tpd=5000))
    assert ls.acquire(800, 0, 0.0) == 0.0
    ls.refund_tokens(300, 0.0, 0.0)
    assert ls.remaining("tpm", 0.0) == pytest.approx(500.0)
    assert ls.remaining("tpd", 0.0) == pytest.approx(4500.0)
    assert ls.remaining("rpm", 0.0) == pytest.approx(9.0) and ls.remaining("rpd", 0.0) == pytest.approx(99.0)


def test_remaining_and_reset_of_absent_units_are_none():
    ls = LimitSet(Limits(rpm=10, tpm=1000))
    assert ls.remaining("tpd", 0.0) is None and ls.reset("ash", 0.0) is None
    assert ls.acquire(600, 0, 0.0) == 0.0
    assert ls.reset("tpm", 0.0) == pytest.approx(36.0) and ls.reset("rpm", 0.0) == pytest.approx(6.0)


def test_admit_charges_only_when_admitted():
    ls = LimitSet(Limits(rpm=10, tpm=1000))
    assert ls.admit(600, 0, 0.0).admitted
    d = ls.admit(600, 0, 0.0)
    assert not d.admitted and d.refused == ("tpm",) and d.wait == pytest.approx(12.0)
    assert ls.remaining("tpm", 0.0) == pytest.approx(400.0) and ls.remaining("rpm", 0.0) == pytest.approx(9.0)


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_pacer_is_token_buckets_at_the_fraction_whatever_the_algorithm(algorithm):
    ls = LimitSet(Limits(rpm=60, tpm=6000), algorithm, rate_fraction=0.5)
    assert all(type(lim).__name__ == "TokenBucket" for lim in ls.units.values())
    assert ls.remaining("rpm", 0.0) == 30.0 and ls.remaining("tpm", 0.0) == 3000.0
    assert ls.acquire(3000, 0, 0.0) == 0.0
    assert ls.acquire(100, 0, 0.0) == pytest.approx(100 / 50.0)   # TPM refills at 0.5 x 100 per s
    assert LimitSet(Limits(rpm=60), algorithm).units["rpm"].kind == algorithm


def test_defaults_cost_one_request_at_time_zero():
    ls = LimitSet(Limits(rpm=1, tpm=10, ash=10))
    assert ls.acquire() == 0.0                      # one request, no tokens, no audio, at t = 0
    assert ls.units["tpm"].remaining(0.0) == 10 and ls.units["ash"].remaining(0.0) == 10
    assert ls.check(now=0.5).wait == pytest.approx(59.5)
    assert not ls.admit(now=0.5).admitted and ls.admit(now=60.0).admitted


@pytest.mark.parametrize("algorithm", ["sliding_log", "fixed_window"])
def test_the_generic_acquire_defaults_cost_one_request_at_time_zero(algorithm):
    ls = LimitSet(Limits(rpm=1, tpm=10, ash=10), algorithm)
    assert ls.acquire() == 0.0
    assert ls.remaining("rpm", 0.0) == 0 and ls.remaining("tpm", 0.0) == 10 and ls.remaining("ash", 0.0) == 10
    assert ls.check(now=0.0).wait > 0 and ls.check(now=60.5).wait == 0.0  # charged at 0: out of the window at 60


def test_the_longest_wait_of_two_refusing_request_units_binds():
    """RPM empty (2 s to the next request) and RPD 0.01 short (0.864 s): the wait is RPM's, the longer,
    though RPD is asked last."""
    ls = LimitSet(Limits(rpm=30, rpd=1000))
    ls.units["rpm"]._level, ls.units["rpd"]._level = 0.0, 0.99
    for _, b in ls._requests:
        b._t = 0.0
    assert ls.acquire(0, 0, 0.0) == pytest.approx(2.0) and ls.binding == "rpm"


def test_a_refund_after_the_bucket_was_full_gives_nothing_back():
    """Charged 800 of TPM 1000 at 0, full again by 60 s, charged 900 at 70: refunding the first charge's
    unused 500 at 71 gives nothing (the bucket has been full since: it cannot be higher than it is), while
    refunding the second's gives it back; the inlined acquire keeps the peaks a refund reads."""
    ls = LimitSet(Limits(rpm=10, tpm=1000))
    assert ls.acquire(800, 0, 0.0) == 0.0 and ls.acquire(900, 0, 70.0) == 0.0
    before = ls.remaining("tpm", 71.0)
    ls.refund_tokens(500, 0.0, 71.0)
    assert ls.remaining("tpm", 71.0) == before
    ls.refund_tokens(500, 70.0, 71.0)
    assert ls.remaining("tpm", 71.0) == pytest.approx(before + 500)


def test_retry_after_function_is_retry_after_seconds_never_below_one():
    for rounding in ("ceil", "round", "floor"):
        f = retry_after_function(rounding)
        for w in (1e-12, 0.2, 0.5, 0.999, 1.0, 1.47, 1.5, 59.5, 60.0, 86_399.3):
            assert f(w) == retry_after_seconds(w, rounding) >= 1
    assert retry_after_function("ceil")(1e-12) == 1 and retry_after_function("ceil")(1.2) == 2
    assert retry_after_seconds(59.47, "round") == 59 and retry_after_seconds(59.53, "round") == 60
    with pytest.raises(ValueError):
        retry_after_function("nearest")
    with pytest.raises(ValueError):
        retry_after_seconds(1.0, "nearest")


@pytest.mark.parametrize("refunds", [True, False])
@pytest.mark.parametrize("limits", [Limits(rpm=30, rpd=1000, tpm=6000, tpd=100_000),
                                    Limits(rpm=20, ash=7200, asd=28_800), Limits(rpm=1, tpm=500)])
def test_the_inlined_token_bucket_acquire_is_the_generic_one_bit_for_bit(limits, refunds):
    """All-token-bucket sets use an inlined acquire: it must decide, wait and charge exactly as the generic
    per-limiter loop does, float for float, refusals, 413s and refunds included."""
    fast, slow = LimitSet(limits, refunds=refunds), LimitSet(limits, refunds=refunds)
    assert fast.acquire != slow.__class__.acquire.__get__(slow)  # the inlined path is the one in use
    rng = np.random.default_rng(11)
    now, charged = 0.0, []
    for _ in range(3000):
        now += float(rng.exponential(0.8))
        tokens = float(rng.choice([0, rng.integers(1, 700), 7000]))
        audio = float(rng.choice([0.0, rng.uniform(1, 300)]))
        a = fast.acquire(tokens, audio, now)
        b = LimitSet.acquire(slow, tokens, audio, now)
        assert a == b and (a == 0.0 or fast.binding == slow.binding)
        if a == 0.0 and tokens:
            charged.append((now, tokens))
        if refunds and charged and rng.random() < 0.3:
            # refund part of a recent or an older charge: a bucket full since then gives nothing back
            at, amount = charged[int(rng.integers(max(0, len(charged) - 20), len(charged)))]
            fast.refund_tokens(amount / 3, at, now)
            slow.refund_tokens(amount / 3, at, now)
        for unit in limits.items():
            assert fast.remaining(unit[0], now) == slow.remaining(unit[0], now)
