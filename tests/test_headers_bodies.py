"""Error bodies and rate-limit messages, every argument and default asserted exactly (closes mutation-test
survivors of sim/headers.py: default arguments, the 5xx table, the admitted-cost check, rounding of figures)."""
import json

import pytest

from sim.catalog import Limits
from sim.headers import (
    Refusal,
    invalid_request_error,
    rate_limit_error,
    rate_limit_message,
    refusal,
    server_error,
)
from sim.limitset import LimitSet

ORG = "org_01hq8xyz"


@pytest.mark.parametrize("status,code,message", [
    (500, "internal_server_error", "Internal Server Error"), (502, "bad_gateway", "Bad Gateway"),
    (503, "service_unavailable", "Service Unavailable"), (504, "gateway_timeout", "Gateway Timeout"),
    (501, "server_error", "Server error 501"), (599, "server_error", "Server error 599"),
])
def test_server_error_bodies(status, code, message):
    err = server_error(status, {"x-request-id": "r1"})
    assert err.status == status and err.headers == {"x-request-id": "r1"}
    assert err.body == {"error": {"message": message, "type": code, "code": code}}


def test_server_error_defaults_to_500_and_rejects_other_statuses():
    assert server_error().status == 500 and server_error().error["type"] == "internal_server_error"
    for bad in (499, 600, 429):
        with pytest.raises(ValueError):
            server_error(bad)


def test_invalid_request_error_has_param_and_code_only_when_given():
    assert invalid_request_error("bad").body == {"error": {"message": "bad", "type": "invalid_request_error"}}
    err = invalid_request_error("bad", 404, code="model_not_found", param="model")
    assert err.status == 404
    assert err.error == {"message": "bad", "type": "invalid_request_error", "param": "model",
                         "code": "model_not_found"}


def test_no_refusal_for_a_cost_that_would_be_admitted():
    ls = LimitSet(Limits(rpm=30, rpd=14_400, tpm=6000, tpd=500_000))
    assert refusal(ls, 100, 0, 0.0) is None
    assert ls.acquire(5900, 0, 0.0) == 0.0
    r = refusal(ls, 200, 0, 0.0)
    assert r.unit == "tpm" and r.used == 5900 and r.requested == 200 and r.wait == pytest.approx(1.0)
    with pytest.raises(ValueError):
        rate_limit_error(ls, "m", ORG, 50, 0, 0.0)


def test_message_defaults_and_whole_number_figures():
    r = Refusal("tpm", 6000, 5034.0, 1443, 4.77)  # the real capture: (5034 + 1443 - 6000) / 100 = 4.77
    assert rate_limit_message(r, "llama-3.1-8b-instant", ORG) == (
        "Rate limit reached for model `llama-3.1-8b-instant` in organization `org_01hq8xyz` service tier "
        "`on_demand` on tokens per minute (TPM): Limit 6000, Used 5034, Requested 1443. Please try again in 4.77s.")
    # a fractional use is rounded up, as the headers round the remaining down (965.53 -> 965: 6000 - 965)
    assert "Used 5035," in rate_limit_message(Refusal("tpm", 6000, 5034.47, 1443, 4.77), "m", ORG)
    assert "Used 5034," in rate_limit_message(Refusal("tpm", 6000, 5034 + 1e-10, 1443, 4.77), "m", ORG)
    assert "try again in 2.385s." in rate_limit_message(r, "m", ORG, time_scale=2.0)


def test_explicit_wait_sets_retry_after_and_a_413_has_none():
    ls = LimitSet(Limits(rpm=30, rpd=14_400, tpm=6000, tpd=500_000))
    assert ls.acquire(5900, 0, 0.0) == 0.0
    assert rate_limit_error(ls, "m", ORG, 200, 0, 0.0).headers["retry-after"] == "1"
    assert rate_limit_error(ls, "m", ORG, 200, 0, 0.0, wait=10.2).headers["retry-after"] == "11"
    too_large = rate_limit_error(ls, "m", ORG, 7000, 0, 0.0, wait=10.2)
    assert too_large.status == 413 and "retry-after" not in too_large.headers


def test_body_json_keeps_non_ascii_as_groq_writes_it():
    ls = LimitSet(Limits(tpm=60_000_000))  # refills a million tokens a second
    assert ls.acquire(60_000_000, 0, 0.0) == 0.0
    err = rate_limit_error(ls, "m", ORG, 1, 0, 0.0)  # a wait of 1 µs
    assert "try again in 1µs." in err.json()
    assert json.loads(err.json()) == err.body


def test_refusal_names_the_longest_wait_and_the_binding_unit_among_equal_waits():
    ls = LimitSet(Limits(rpm=1, tpm=600))  # token buckets: after 1 request of 600 tokens both need 60 s
    assert ls.acquire(600, 0, 0.0) == 0.0
    assert ls.acquire(600, 0, 0.0) == pytest.approx(60.0)
    r = refusal(ls, 600, 0, 0.0)
    assert r.wait == pytest.approx(60.0) and r.unit == ls.binding == "rpm"
    r = refusal(ls, 60, 0, 0.0)  # tpm would need 6 s, rpm 60 s: the longer binds
    assert r.unit == "rpm" and r.wait == pytest.approx(60.0)
    ls2 = LimitSet(Limits(rpm=100, tpm=600))
    assert ls2.acquire(600, 0, 0.0) == 0.0
    r = refusal(ls2, 600, 0, 0.0)  # rpm 0.6 s, tpm 60 s
    assert r.unit == "tpm" and r.wait == pytest.approx(60.0)
