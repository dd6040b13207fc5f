"""Groq's rate-limit headers and error bodies, reproduced from a LimitSet in the state of real examples."""
import json
import math
import re

import pytest
from hypothesis import assume, given, settings, strategies as st

from sim.catalog import Catalog, Limits
from sim.headers import (
    capacity_exceeded_error,
    invalid_request_error,
    rate_limit_error,
    rate_limit_headers,
    refusal,
    retry_after_seconds,
    server_error,
)
from sim.limitset import LimitSet
from sim.units import parse_duration, parse_go_duration

CAT = Catalog.published()
ORG = "org_01hq8xyz"
REAL_429 = ("Rate limit reached for model `llama-3.1-8b-instant` in organization `org_01hq8xyz` service tier "
            "`on_demand` on tokens per minute (TPM): Limit 6000, Used 5034, Requested 1443. Please try again in "
            "4.77s. Need more tokens? Upgrade to Dev Tier today at https://console.groq.com/settings/billing")
REAL_413 = ("Request too large for model `llama-3.3-70b-versatile` in organization `org_01hq8xyz` service tier "
            "`on_demand` on tokens per minute (TPM): Limit 12000, Requested 14137, please reduce your message size "
            "and try again.")
_TRY = re.compile(r"Limit (\d+), Used (\d+), Requested (\d+)\. Please try again in (\S+)\.")


def test_real_429_reproduced_from_limit_set_state():
    ls = LimitSet(Limits(rpm=30, rpd=14_400, tpm=6000, tpd=500_000))
    assert ls.acquire(5034, 0, 0.0) == 0.0
    wait = ls.acquire(1443, 0, 0.0)
    assert wait == pytest.approx(4.77) and ls.binding == "tpm"
    err = rate_limit_error(ls, "llama-3.1-8b-instant", ORG, 1443, 0, 0.0, wait, upgrade_hint=True)
    assert err.status == 429
    assert err.body == {"error": {"message": REAL_429, "type": "tokens", "code": "rate_limit_exceeded"}}
    assert err.headers["retry-after"] == "5"
    assert err.headers["x-ratelimit-remaining-tokens"] == "966"
    assert err.headers["x-ratelimit-limit-requests"] == "14400"
    assert json.loads(err.json()) == err.body


@pytest.mark.parametrize("limit,used,requested", [(6000, 5034, 1443), (12000, 11000, 3000), (30000, 29990, 11),
                                                  (500_000, 499_000, 7_000), (6000, 6000, 6000)])
def test_try_again_follows_groqs_rule(limit, used, requested):
    """(Used + Requested - Limit) / (Limit / window), to within 10 ms, from the figures the message shows."""
    ls = LimitSet(Limits(tpm=limit))
    ls.acquire(used, 0, 0.0)
    now = 0.0
    err = rate_limit_error(ls, "m", ORG, requested, 0, now)
    L, U, R, wait = _TRY.search(err.error["message"]).groups()
    assert (int(L), int(U), int(R)) == (limit, used, requested)
    expected = (int(U) + int(R) - int(L)) / (int(L) / 60)
    assert abs(parse_go_duration(wait) / 1e9 - expected) < 0.010


@settings(max_examples=200, deadline=None)
@given(unit=st.sampled_from(["rpm", "tpm", "tpd", "ash"]), limit=st.integers(1, 10**6), u=st.floats(0.01, 1.0),
       e=st.floats(0.001, 1.0), f=st.floats(0.0, 0.99))
def test_the_wait_shown_is_groqs_identity_of_the_figures_shown(unit, limit, u, e, f):
    """Every real message's wait is (Used + Requested - Limit) / (Limit / window) of its own figures, to the
    nanosecond; a bucket's use is fractional between refills, so the figures are rounded up and the wait
    shown is never shorter than the exact one (what retry-after gives), and less than one unit's refill longer
    for each of the two figures rounded (Requested is fractional only for audio seconds).  The state: a share
    ``u`` of the bucket used, a request ``e`` of that share too large, refused ``f`` of the way to its turn."""
    window = {"rpm": 60, "tpm": 60, "tpd": 86_400, "ash": 3_600}[unit]
    ls = LimitSet(Limits(**{unit: limit}))
    if unit == "rpm":
        limit = min(limit, 1000)
        ls = LimitSet(Limits(rpm=limit))
        for _ in range(limit):
            ls.acquire(0, 0, 0.0)
        amount, extra = 1, 1.0
    else:
        ls.acquire(*_cost(unit, u * limit), 0.0)
        extra = e * u * limit
        amount = (1 - u) * limit + extra
    elapsed = f * extra / (limit / window)
    r = refusal(ls, *_cost(unit, amount), elapsed)
    assume(r is not None and not r.too_large)
    err = rate_limit_error(ls, "m", ORG, *_cost(unit, amount), elapsed)
    L, U, R, shown = _TRY.search(err.error["message"]).groups()
    wait = parse_go_duration(shown) / 1e9
    assert abs(wait - (int(U) + int(R) - int(L)) / (int(L) / window)) <= 1e-9 * max(1.0, wait)
    assert r.wait - 1e-9 <= wait <= r.wait + 2 * window / limit + 1e-9
    if float(R) == amount:  # a whole Requested: only Used was rounded
        assert wait <= r.wait + window / limit + 1e-9
    assert int(err.headers["retry-after"]) == max(math.ceil(r.wait - 1e-9), 1)  # from the exact wait


def _cost(unit: str, amount: float) -> tuple[float, float]:
    """(tokens, audio seconds) of a request costing ``amount`` of ``unit`` (requests cost 1 anyway)."""
    return (0.0, amount) if unit == "ash" else (0.0 if unit == "rpm" else amount, 0.0)


def test_a_window_limiters_message_gives_its_exact_wait():
    ls = LimitSet(Limits(rpm=30), "fixed_window")
    for _ in range(30):
        ls.acquire(0, 0, 0.0)
    err = rate_limit_error(ls, "m", ORG, 0, 0, 12.5)  # the window ends at 60 s, whatever the figures say
    assert "Used 30, Requested 1. Please try again in 47.5s." in err.error["message"]
    err = rate_limit_error(ls, "m", ORG, 0, 0, 59.5)  # shorter than a bucket's (30 + 1 - 30) / 0.5 = 2 s
    assert "Used 30, Requested 1. Please try again in 500ms." in err.error["message"]


def test_used_is_measured_at_the_refusal_time_after_refill():
    ls = LimitSet(Limits(tpm=6000))
    ls.acquire(6000, 0, 0.0)
    now = 9.66  # 966 tokens refilled: the same state as the real example
    err = rate_limit_error(ls, "llama-3.1-8b-instant", ORG, 1443, 0, now, ls.acquire(1443, 0, now))
    assert "Limit 6000, Used 5034, Requested 1443. Please try again in 4.77s." in err.error["message"]


def test_real_413_reproduced():
    ls = LimitSet(CAT.limits("free", "llama-3.3-70b-versatile"))
    assert math.isinf(ls.acquire(14137, 0, 0.0))
    err = rate_limit_error(ls, "llama-3.3-70b-versatile", ORG, 14137, 0, 0.0)
    assert err.status == 413
    assert err.error == {"message": REAL_413, "type": "tokens", "code": "rate_limit_exceeded"}
    assert "retry-after" not in err.headers and err.headers["x-ratelimit-limit-tokens"] == "12000"


def test_requests_wording_and_type():
    ls = LimitSet(Limits(rpm=30, rpd=1000, tpm=6000))
    for _ in range(30):
        ls.acquire(10, 0, 0.0)
    err = rate_limit_error(ls, "llama-3.1-8b-instant", ORG, 10, 0, 0.0, service_tier="flex")
    assert err.error["type"] == "requests"
    assert ("service tier `flex` on requests per minute (RPM): Limit 30, Used 30, Requested 1. "
            "Please try again in 2s.") in err.error["message"]
    assert "Need more" not in err.error["message"]
    assert err.headers["retry-after"] == "2"


def test_rpd_binds_when_its_wait_is_longest():
    ls = LimitSet(Limits(rpm=100, rpd=3))
    for _ in range(3):
        ls.acquire(0, 0, 0.0)
    r = refusal(ls, 0, 0, 1.0)
    assert r.unit == "rpd" and r.wait == pytest.approx(86_400 / 3 - 1.0)
    msg = rate_limit_error(ls, "m", ORG, 0, 0, 1.0).error["message"]
    # (3 + 1 - 3) / (3 / day) of the figures shown; the exact wait is 1 s shorter
    assert "on requests per day (RPD): Limit 3, Used 3, Requested 1. Please try again in 8h0m0s." in msg


@pytest.mark.parametrize("tokens, unit, wait", [(100, "rpm", 30.0), (500, "tpm", 50.0), (300, "rpm", 30.0)])
def test_of_several_refusing_units_the_longest_wait_binds_the_first_on_a_tie(tokens, unit, wait):
    ls = LimitSet(Limits(rpm=2, tpm=600))  # both spent at 0: a request back every 30 s, 10 tokens a second
    for _ in range(2):
        assert ls.acquire(300, 0, 0.0) == 0.0
    r = refusal(ls, tokens, 0, 0.0)
    assert (r.unit, r.wait) == (unit, pytest.approx(wait))
    assert ls.acquire(tokens, 0, 0.0) == pytest.approx(wait) and ls.binding == unit  # the limit set agrees


def test_audio_units_wording():
    ls = LimitSet(CAT.limits("free", "whisper-large-v3"))  # ash 7200
    ls.acquire(0, 7000, 0.0)
    err = rate_limit_error(ls, "whisper-large-v3", ORG, 0, 600, 0.0, upgrade_hint=True)
    assert err.error["type"] == "audio_seconds"
    assert "on audio seconds per hour (ASH): Limit 7200, Used 7000, Requested 600. Please try again in 3m20s." \
        in err.error["message"]
    assert "Need more audio seconds? Upgrade to Dev Tier" in err.error["message"]
    big = rate_limit_error(ls, "whisper-large-v3", ORG, 0, 7200.4, 0.0)
    assert big.status == 413 and "Limit 7200, Requested 7201, please reduce" in big.error["message"]


def test_admitted_cost_is_not_an_error():
    ls = LimitSet(Limits(tpm=6000))
    assert refusal(ls, 100, 0, 0.0) is None
    with pytest.raises(ValueError):
        rate_limit_error(ls, "m", ORG, 100, 0, 0.0)


def test_real_header_capture_reproduced():
    """x-ratelimit-* 1000/8000, remaining 998/7927, reset 2m52.8s / 547ms (a real capture)."""
    ls = LimitSet(Limits(rpd=1000, tpm=8000))
    ls.acquire(73, 0, 0.0)
    ls.acquire(0, 0, 0.0)
    h = rate_limit_headers(ls, 0.0005)
    assert h == {"x-ratelimit-limit-requests": "1000", "x-ratelimit-limit-tokens": "8000",
                 "x-ratelimit-remaining-requests": "998", "x-ratelimit-remaining-tokens": "7927",
                 "x-ratelimit-reset-requests": "2m52.8s", "x-ratelimit-reset-tokens": "547ms"}


def test_docs_page_header_example_reproduced():
    """The reference's worked example (groq-rate-limits.md): RPD 14 400 with 30 requests used shows 14370
    left, full again in 30 x 86 400 / 14 400 = 180 s, 2m59.56s at 0.44 s; checked apart from the calibrator,
    whose replay reads its hypotheses through this same LimitSet and header arithmetic."""
    ls = LimitSet(Limits(rpd=14_400, tpm=18_000))
    for _ in range(30):
        ls.acquire(2300 / 30, 0, 0.0)  # 30 requests, 2 300 tokens
    h = rate_limit_headers(ls, 0.44)
    assert h["x-ratelimit-remaining-requests"] == "14370"
    assert h["x-ratelimit-reset-requests"] == "2m59.56s"
    assert h["x-ratelimit-reset-tokens"] == "7.227s"  # (2300 - 0.44 * 300) / 300 = 7.22667, rounded up
    assert parse_duration(h["x-ratelimit-reset-tokens"]) == pytest.approx((2300 - 132) / 300, abs=0.001)


def test_time_scale_divides_every_duration_but_not_the_figures():
    ls = LimitSet(Limits(rpd=1000, tpm=6000))
    ls.acquire(5034, 0, 0.0)
    wait = ls.acquire(1443, 0, 0.0)
    err = rate_limit_error(ls, "m", ORG, 1443, 0, 0.0, wait, time_scale=10)
    assert "Limit 6000, Used 5034, Requested 1443. Please try again in 477ms." in err.error["message"]
    assert err.headers["retry-after"] == "0.5"  # Groq's whole 5 s, on a clock 10x faster
    assert err.headers["x-ratelimit-reset-tokens"] == "5.034s"
    assert err.headers["x-ratelimit-reset-requests"] == "8.64s"


def test_retry_after_rounding():
    assert [retry_after_seconds(w) for w in (0.2, 2.0, 4.77, 59.5)] == [1, 2, 5, 60]
    assert retry_after_seconds(4.77, "floor") == 4 and retry_after_seconds(4.5, "round") == 5


def test_other_error_bodies():
    e = capacity_exceeded_error("openai/gpt-oss-20b")
    assert e.status == 498 and e.error["code"] == "capacity_exceeded" and "flex" in e.error["message"]
    for status in (500, 502, 503, 504, 520):
        s = server_error(status)
        assert s.status == status and set(s.error) == {"message", "type", "code"}
    with pytest.raises(ValueError):
        server_error(429)
    bad = invalid_request_error("model is required", param="model")
    assert bad.status == 400 and bad.body == {"error": {"message": "model is required",
                                                        "type": "invalid_request_error", "param": "model"}}


def test_remaining_at_whole_budgets_is_not_rounded_down_a_unit():
    """A full RPD of 14 400 reads 14400, and one used reads 14399 (floor with a float-noise margin)."""
    ls = LimitSet(Limits(rpd=14_400, tpm=6_000))
    assert rate_limit_headers(ls, 0.0)["x-ratelimit-remaining-requests"] == "14400"
    ls.acquire(1000, 0, 0.0)
    h = rate_limit_headers(ls, 0.0)
    assert h["x-ratelimit-remaining-requests"] == "14399" and h["x-ratelimit-remaining-tokens"] == "5000"
    later = rate_limit_headers(ls, 3.0)  # TPM refills 100 tokens/s, RPD 1/6 request/s: 5 300 and 14 399.5
    assert later["x-ratelimit-remaining-tokens"] == "5300" and later["x-ratelimit-remaining-requests"] == "14399"
    assert rate_limit_headers(ls, 6.0)["x-ratelimit-remaining-requests"] == "14400"  # refilled exactly
