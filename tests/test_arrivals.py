"""Arrival kinds: each samples inside the horizon, at its documented long-run rate and mean rate over a window."""
import math

import numpy as np
import pytest
from pydantic import ValidationError

from sim.arrivals import KINDS, ArrivalSpec, _Kind, arrival

DURATION = 8 * 3600.0  # whole periods of every periodic kind below
#: one example of every kind with a rate of its own (a new kind: its line here); trace and closed have none
RATE_CASES = [
    {"kind": "poisson", "rate": "30/min"},
    {"kind": "constant", "rate": "30/min"},
    {"kind": "bursty", "rate": "30/min", "burstiness": 3.0},
    {"kind": "onoff", "rate": "90/min", "on": "5m", "off": "10m"},
    {"kind": "piecewise", "schedule": [["0h", "10/min"], ["2h", "50/min"]], "period": "4h"},
    {"kind": "diurnal", "rate": "30/min", "period": "2h", "amplitude": 0.8},
]


def test_the_rate_test_covers_every_kind():
    missing = set(KINDS) - {"trace", "closed"} - {s["kind"] for s in RATE_CASES}
    assert not missing, f"arrival kind(s) {sorted(missing)} not in RATE_CASES of tests/test_arrivals.py: add an example"


@pytest.mark.parametrize("settings", RATE_CASES, ids=lambda s: s["kind"])
def test_times_are_sorted_in_the_horizon_at_the_mean_rate(settings):
    proc = arrival(**settings)
    t = proc.times(np.random.default_rng(4), DURATION)
    assert np.all(np.diff(t) >= 0) and t.min() >= 0 and t.max() < DURATION
    # the mean count over 30 seeds is within 4 standard errors (measured across the seeds) of rate x T
    counts = np.array([len(proc.times(np.random.default_rng(seed), DURATION)) for seed in range(30)])
    expected = proc.mean_rate() * DURATION
    assert abs(counts.mean() - expected) <= 4 * counts.std(ddof=1) / np.sqrt(30) + 1
    doubled = proc.times(np.random.default_rng(4), DURATION, load=2.0)
    assert abs(len(doubled) / len(t) - 2) < 0.15


@pytest.mark.parametrize("window", [600.0, 3000.0, 2.5 * 3600], ids=["10m", "50m", "2.5h"])
@pytest.mark.parametrize("settings", RATE_CASES, ids=lambda s: s["kind"])
def test_the_window_rate_is_the_mean_count_over_a_window_from_the_start(settings, window):
    """Windows that are no whole number of periods (a diurnal day's start, a piecewise schedule's first piece,
    an on/off source's first on period): the count over 200 seeds is within 4 standard errors of
    ``window_rate x T``."""
    proc = arrival(**settings)
    counts = np.array([len(proc.times(np.random.default_rng(seed), window)) for seed in range(200)])
    assert abs(counts.mean() - proc.window_rate(window) * window) <= 4 * counts.std(ddof=1) / np.sqrt(200) + 1


def test_window_rates_follow_their_definitions():
    # diurnal 30/min, amplitude 0.8, period 2h, peak 14h (= 0 mod 2h): over [0, 30m) the cosine's mean is
    # sin(pi/2) / (pi/2) = 2/pi, so 30 x (1 + 0.8 x 2/pi) a minute
    diurnal = arrival(kind="diurnal", rate="30/min", period="2h", amplitude=0.8)
    assert diurnal.window_rate(1800.0) * 60 == pytest.approx(30 * (1 + 0.8 * 2 / math.pi))
    assert diurnal.window_rate(4 * 3600.0) == pytest.approx(diurnal.mean_rate())  # whole periods: the mean
    # piecewise 10/min for 2h then 50/min for 2h: over 3h, (2 x 10 + 1 x 50) / 3 a minute; over 9h, two periods
    # of 120 x 10 + 120 x 50 requests and 60 minutes at 10/min, over 540 minutes
    pw = arrival(kind="piecewise", schedule=[["0h", "10/min"], ["2h", "50/min"]], period="4h")
    assert pw.window_rate(3 * 3600.0) * 60 == pytest.approx(70 / 3)
    assert pw.window_rate(9 * 3600.0) * 60 == pytest.approx((2 * (120 * 10 + 120 * 50) + 60 * 10) / 540)
    # on/off starting on: over 10 minutes with on 5m and off 10m, on 1/3 + 2/3 x (1 - e^-3) / 3 of the time
    onoff = arrival(kind="onoff", rate="90/min", on="5m", off="10m")
    assert onoff.window_rate(600.0) == pytest.approx(1.5 * (1 / 3 + 2 / 3 * (1 - math.exp(-3)) / 3))
    assert arrival(kind="onoff", rate="90/min", on="5m", off="0s").window_rate(600.0) == 1.5
    assert arrival(kind="poisson", rate="30/min").window_rate(60.0) == 0.5


def test_mean_rates_follow_their_definitions():
    assert arrival(kind="onoff", rate="90/min", on="5m", off="10m").mean_rate() == pytest.approx(1.5 / 3)
    pw = arrival(kind="piecewise", schedule=[["0h", "10/min"], ["3h", "70/min"]], period="4h")
    assert pw.mean_rate() == pytest.approx((10 * 3 + 70 * 1) / 4 / 60)
    assert arrival(kind="closed", users=3, think="1s").mean_rate() is None


def test_the_long_run_rate_is_the_mean_rate_and_none_is_refused_naming_the_kind():
    """What the capacity ceilings and the work check scale: a kind whose mean_rate is None (as a new open-loop
    kind might return) is told so, instead of a bare TypeError far away in the arithmetic."""
    assert arrival(kind="onoff", rate="90/min", on="5m", off="10m").long_run_rate() == pytest.approx(0.5)
    assert arrival(kind="poisson", rate="0/min").long_run_rate() == 0.0
    with pytest.raises(TypeError, match="arrival kind 'closed' gives no mean_rate"):
        arrival(kind="closed", users=3, think="1s").long_run_rate()


def test_constant_is_exactly_evenly_spaced_from_zero():
    t = arrival(kind="constant", rate="2/s").times(np.random.default_rng(0), 10.0)
    assert np.array_equal(t, np.arange(0.0, 10.0, 0.5))


def test_constant_makes_rate_times_duration_arrivals_whatever_the_rates_binary_rounding():
    """13/min is 13/60 per second, inexact in binary: np.arange alone made 781 arrivals in an hour, the last at
    3599.99999999999; 14 of the rates 1..199/min were off by one that way."""
    rng = np.random.default_rng(0)
    for k in range(1, 200):
        assert len(arrival(kind="constant", rate=f"{k}/min").times(rng, 3600.0)) == 60 * k, k
    assert len(arrival(kind="constant", rate="13/min").times(rng, 60.0)) == 13
    # a product with a fraction still rounds up: the arrival at 60 x 0.4 = 24 s is inside 25 s
    assert len(arrival(kind="constant", rate="0.4/s").times(rng, 25.0)) == 10
    assert len(arrival(kind="constant", rate="0.4/s").times(rng, 25.1)) == 11
    # the load scales the rate before the count
    assert len(arrival(kind="constant", rate="13/min").times(rng, 3600.0, load=2.0)) == 1560


def test_a_closed_loops_load_rounds_its_users_halves_up():
    """users x load to the nearest whole user, halves up, at least one: at load 0.5, 3, 5, 7 and 9 users
    start 2, 3, 4 and 5 (round() gave 2, 2, 4, 4: the same load scaled groups by different fractions)."""
    starts = [arrival(kind="closed", users=u, think="3s").users_at(0.5) for u in (3, 5, 7, 9)]
    assert starts == [2, 3, 4, 5]
    assert arrival(kind="closed", users=10, think="3s").users_at(0.247) == 2  # 2.47: below the half
    assert arrival(kind="closed", users=1, think="3s").users_at(0.1) == 1  # at least one


def test_closed_loop_has_no_precomputed_times():
    closed = arrival(kind="closed", users=2, think="3s")
    assert not closed.open_loop
    with pytest.raises(TypeError):
        closed.times(np.random.default_rng(0), 10.0)


def test_each_kind_accepts_only_its_own_keys():
    with pytest.raises(ValidationError):
        arrival(kind="poisson", rate="1/s", burstiness=2.0)
    with pytest.raises(ValidationError):
        arrival(kind="onoff", rate="1/s", on="0s", off="1s")  # on must be > 0
    with pytest.raises(ValidationError):
        arrival(kind="piecewise", schedule=[["1h", "1/s"]])  # must start at 0
    with pytest.raises(ValidationError):
        arrival(kind="weibull", rate="1/s")


def test_the_union_lists_every_kind():
    """``KINDS`` is read from ``ArrivalSpec``'s union; a kind class left out of the union is no kind at all."""
    import typing
    union = typing.get_args(typing.get_args(ArrivalSpec)[0])
    assert list(KINDS.values()) == list(union)
    classes, todo = set(), [_Kind]
    while todo:
        todo += (sub := todo.pop()).__subclasses__()
        classes.add(sub)
    missing = classes - {_Kind} - set(union)
    assert not missing, f"{sorted(c.__name__ for c in missing)}: add to ArrivalSpec's Union in sim/arrivals.py"
