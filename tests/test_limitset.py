"""Rate-limit sets: all-or-nothing charging, binding unit, 413 vs 429, and Groq's headers."""
import copy
import math

import pytest
from hypothesis import given, strategies as st

from sim.catalog import Catalog, Limits
from sim.headers import parse_reset, rate_limit_headers, retry_after_seconds
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
