"""Limiter and LimitSet edge cases pinned exactly (closes mutation-test survivors: sub-unit refunds,
same-time merges in the sliding log, the refund walk, unknown algorithm names, LimitSet's public attributes
and default arguments)."""
import pytest

from sim.catalog import Limits
from sim.errors import ConfigError
from sim.limiters import ALGORITHMS, SlidingLog, TokenBucket, make_limiter
from sim.limitset import LimitSet


def test_unknown_algorithm_is_a_config_error():
    with pytest.raises(ConfigError, match="token_bucket"):
        make_limiter("token-bucket", 10, 60)
    with pytest.raises(ConfigError):
        LimitSet(Limits(rpm=30), "leaky")


def test_token_bucket_refund_below_one_unit_is_given_back():
    b = TokenBucket(10, 60)
    b.admit(4, 0.0)
    b.refund(0.5, 0.0, 0.0)
    assert b.remaining(0.0) == pytest.approx(6.5)


def test_sliding_log_charges_at_the_same_time_expire_together():
    log = SlidingLog(10, 60)
    log.admit(3, 0.0)
    log.admit(2, 0.0)
    assert log.remaining(0.0) == 5 and log.reset(0.0) == 60.0
    assert log.remaining(60.0) == 10 and log.reset(60.0) == 0.0


def test_sliding_log_refund_leaving_less_than_one_unit_keeps_the_entry():
    log = SlidingLog(10, 60)
    log.admit(3, 0.0)
    log.refund(2.5, 0.0, 0.0)
    assert log.remaining(0.0) == pytest.approx(9.5) and log.reset(0.0) == 60.0
    assert log.remaining(60.0) == 10


def test_sliding_log_refund_walks_past_newer_small_entries():
    log = SlidingLog(100, 60)
    log.admit(5, 10.0)
    log.admit(2, 11.0)
    log.refund(3, 10.0, 11.0)
    assert log.remaining(11.0) == 96
    assert log.remaining(70.0) == 98  # the entry at 10 (2 left) is gone, the one at 11 (2) is not


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_limit_set_attributes(algorithm):
    limits = Limits(rpm=2, rpd=100, tpm=1000)
    ls = LimitSet(limits, algorithm)
    assert ls.algorithm == algorithm and ls.limits is limits and ls.binding is None
    assert ls.acquire(10, 0, 0.0) == 0.0 and ls.binding is None


def test_check_and_admit_defaults_are_one_request_no_tokens_at_time_zero():
    ls = LimitSet(Limits(rpm=2, rpd=100, tpm=1000), "sliding_log")
    assert ls.check().admitted and ls.admit().admitted
    assert ls.remaining("rpm", 0.0) == 1 and ls.remaining("tpm", 0.0) == 1000
    assert ls.reset("rpm", 0.0) == 60.0  # charged at time 0
    assert ls.admit().admitted
    d = ls.check()
    assert not d.admitted and d.wait == 60.0 and d.refused == ("rpm",)
    assert ls.admit().wait == 60.0 and ls.remaining("tpm", 0.0) == 1000


def test_sliding_log_merges_a_same_time_charge_into_the_newest_entry():
    log = SlidingLog(10, 60)
    log.admit(3, 0.0)
    log.admit(1, 5.0)
    log.admit(2, 5.0)
    assert log.remaining(60.0) == 7 and log.reset(60.0) == 5.0  # the entry at 0 (3) expired, 1 + 2 at 5 remain


def test_check_defaults_ask_for_no_tokens_and_no_audio():
    ls = LimitSet(Limits(rpm=10, tpm=100, ash=100), "sliding_log")
    assert ls.acquire(100, 100, 0.0) == 0.0  # tokens and audio full, requests not
    assert ls.check().admitted and ls.check(1).refused == ("tpm",) and ls.check(0, 1).refused == ("ash",)
    assert ls.admit().admitted and ls.remaining("rpm", 0.0) == 8
