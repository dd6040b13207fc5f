"""``refund``, ``reset`` and the shortest wait of every limiter, against brute-force references.

The references keep only the list of admitted ``(time, amount)`` and recompute everything from it, with
none of the limiters' incremental state.  Amounts are whole or 1/8 units (tokens, audio seconds): float
noise in the 10th significant digit is the limiters' documented tolerance, not what these tests are about.
"""
import copy
import math

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from sim.limiters import (
    ALGORITHMS,
    FixedWindow,
    SlidingLog,
    SlidingWindowCounter,
    TokenBucket,
)

ALGS = list(ALGORITHMS.values())
T_EPS = 1e-9  # the documented 1 ns slack at window boundaries


@st.composite
def histories(draw, max_steps=25):
    """(limit, window, [(dt, amount)]): bursts at one instant, gaps inside and beyond a window."""
    limit = draw(st.integers(1, 200))
    window = draw(st.sampled_from([1.0, 60.0, 86_400.0]) | st.integers(1, 120).map(float))
    amount = st.integers(0, limit) | st.integers(1, 8 * limit).map(lambda k: k / 8)
    dt = st.just(0.0) | st.integers(1, 64).map(lambda k: k * window / 32) | st.floats(0, 2 * window)
    steps = draw(st.lists(st.tuples(dt, amount), min_size=1, max_size=max_steps))
    return limit, window, steps


def replay(cls, limit, window, steps):
    """The limiter after ``steps`` (each tried with try_admit), the final time and what it admitted."""
    lim = cls(limit, window)
    now, admitted = 0.0, []
    for dt, amount in steps:
        now += dt
        if lim.try_admit(amount, now) and amount:
            admitted.append((now, amount))
    return lim, now, admitted


# ---- brute-force references ----------------------------------------------------------------------------

def _k(t, window):
    return math.floor((t + T_EPS) / window)


def ref_used(kind, limit, window, admitted, t):
    """Budget in use at ``t`` (limit - remaining), recomputed from the admitted history alone (one model per
    algorithm of ``ALGORITHMS``: a new algorithm needs its own here)."""
    if kind == "sliding_log":
        return sum(a for s, a in admitted if s > t - window + T_EPS)
    if kind == "fixed_window":
        return sum(a for s, a in admitted if _k(s, window) == _k(t, window))
    if kind == "token_bucket":
        level, last = float(limit), 0.0
        for s, a in admitted:
            level = max(0.0, min(limit, level + (s - last) * limit / window) - a)
            last = s
        return limit - min(limit, level + (t - last) * limit / window)
    if kind == "sliding_window_counter":
        k = _k(t, window)
        curr = sum(a for s, a in admitted if _k(s, window) == k)
        prev = sum(a for s, a in admitted if _k(s, window) == k - 1)
        frac = min(max((t - k * window) / window, 0.0), 1.0)
        return prev * (1 - frac) + curr
    raise NotImplementedError(f"no brute-force reference for limiter {kind!r}: add one to ref_used in "
                              "tests/test_refund_reset.py (and to reference_admits in tests/test_limiters.py)")


def ref_earliest(kind, limit, window, admitted, now, amount, slack):
    """Earliest t >= now at which ``amount`` fits with ``slack`` units of tolerance.  Sliding log and fixed
    window: scan the times at which the budget can change (entries leaving, window boundaries); any other
    algorithm (token bucket, window counter): bisection (the budget in use never grows while nothing is
    admitted)."""
    def fits(t):
        return ref_used(kind, limit, window, admitted, t) + amount <= limit + slack
    if fits(now):
        return now
    if kind == "sliding_log":
        return next(t for t in sorted(s + window for s, _ in admitted) if t > now and fits(t))
    if kind == "fixed_window":
        return (_k(now, window) + 1) * window
    lo, hi = now, now + 3 * window
    for _ in range(200):
        mid = (lo + hi) / 2
        if fits(mid):
            hi = mid
        else:
            lo = mid
        if hi - lo <= 1e-12 * max(hi, 1.0):
            break
    return hi


# ---- the announced wait is the shortest ------------------------------------------------------------------

@pytest.mark.parametrize("cls", ALGS)
@given(h=histories(), frac=st.integers(1, 8))
def test_wait_is_the_earliest_admission_of_a_brute_force_reference(cls, h, frac):
    limit, window, steps = h
    lim, now, admitted = replay(cls, limit, window, steps)
    amount = limit * frac / 8
    w = lim.wait(amount, now)
    eps = 1e-9 * max(limit, 1.0)
    # the limiter admits within eps units: its answer lies between the reference's exact earliest time and
    # the earliest with twice that tolerance (they differ only where the budget moves very slowly)
    latest = ref_earliest(cls.kind, limit, window, admitted, now, amount, 0.0)
    earliest = ref_earliest(cls.kind, limit, window, admitted, now, amount, 2 * eps)
    tol = 1e-9 * window + 4 * T_EPS
    assert earliest - tol <= now + w <= latest + tol, (now, w, earliest, latest)


def test_sliding_log_wait_counts_from_the_oldest_entries_that_free_enough():
    lim = SlidingLog(10, 60.0)
    for t, a in ((0.0, 3), (10.0, 3), (20.0, 4)):
        assert lim.try_admit(a, t)
    assert lim.wait(1, 30.0) == pytest.approx(30.0)   # the entry of t=0 leaves at 60
    assert lim.wait(4, 30.0) == pytest.approx(40.0)   # 3 + 3 must leave: t=70
    assert lim.wait(10, 30.0) == pytest.approx(50.0)  # all of them: t=80


def test_window_counter_wait_into_the_next_window():
    lim = SlidingWindowCounter(10, 60.0)
    assert lim.try_admit(8, 50.0)
    # in window 0 nothing decays: wait until window 1, where prev = 8 weighs (1 - f): 8 (1 - f) + 6 <= 10
    assert lim.wait(6, 50.0) == pytest.approx(10.0 + 0.5 * 60.0)
    # a request that fits next to the whole previous window is admitted at the boundary
    assert lim.wait(2, 55.0) == 0.0 and lim.wait(3, 55.0) == pytest.approx(5.0 + 60.0 * (1 - 7 / 8))


# ---- reset -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", ALGS)
@given(h=histories(), later=st.floats(0, 1.5))
def test_reset_is_zero_exactly_when_full_and_full_after_reset(cls, h, later):
    limit, window, steps = h
    lim, now, admitted = replay(cls, limit, window, steps)
    now += later * window
    reset, remaining = copy.deepcopy(lim).reset(now), copy.deepcopy(lim).remaining(now)
    assert (reset == 0.0) == (remaining == limit), (reset, remaining)
    assert copy.deepcopy(lim).remaining(now + reset) == pytest.approx(limit, abs=1e-9 * limit)
    # and no earlier: shortly before, the reference still has budget in use
    if reset > 1e-6 * window:
        assert ref_used(cls.kind, limit, window, admitted, now + reset - 1e-6 * window) > 0
        assert copy.deepcopy(lim).remaining(now + reset - 1e-6 * window) < limit


@pytest.mark.parametrize("cls,want", [(TokenBucket, 20.0), (FixedWindow, 50.0), (SlidingLog, 55.0),
                                      (SlidingWindowCounter, 110.0)])
def test_reset_values(cls, want):
    # limit 10 per minute; 3 used at t=0 and 2 at t=5, asked at t=10.  Token bucket: level 10 - 3 + 5/6 - 2
    # + 5/6 = 6.67, full after 3.33 / (1/6) = 20 s; fixed window: the boundary at 60; log: the newest entry
    # leaves at 65; window counter: the current window weighs until the end of the next one, 120
    lim = cls(10, 60.0)
    assert lim.reset(0.0) == 0.0 and lim.remaining(0.0) == 10
    assert lim.try_admit(3, 0.0) and lim.try_admit(2, 5.0)
    assert lim.reset(10.0) == pytest.approx(want)
    assert lim.remaining(10.0 + want) == pytest.approx(10.0)


def test_fixed_window_reset_is_zero_in_an_empty_window():
    lim = FixedWindow(10, 60.0)
    assert lim.try_admit(4, 59.0)
    assert lim.reset(59.5) == pytest.approx(0.5)
    assert lim.reset(60.0) == 0.0 and lim.remaining(60.0) == 10


def test_sliding_log_reset_waits_for_the_newest_entry():
    lim = SlidingLog(10, 60.0)
    assert lim.try_admit(4, 0.0) and lim.try_admit(4, 30.0)
    assert lim.reset(40.0) == pytest.approx(50.0)


# ---- refund ----------------------------------------------------------------------------------------------

@st.composite
def refund_cases(draw):
    """A history, one admitted charge in it, a later refund time and a refund <= that charge."""
    limit, window, steps = draw(histories())
    lim, now, admitted = replay(ALGORITHMS[draw(st.sampled_from(sorted(ALGORITHMS)))], limit, window, steps)
    assume(admitted)
    t0, charge = draw(st.sampled_from(admitted))
    refund = draw(st.integers(0, 8).map(lambda k: charge * k / 8))
    later = draw(st.just(0.0) | st.floats(0, 1.5 * window))
    return lim, now + later, admitted, t0, charge, refund


def smaller_history(admitted, t0, charge, refund):
    """The admitted history with the charge ``(t0, charge)`` made ``refund`` smaller."""
    out, done = [], False
    for s, a in admitted:
        if not done and (s, a) == (t0, charge):
            a, done = a - refund, True
        out.append((s, a))
    return out


@given(case=refund_cases())
def test_refund_gives_back_what_a_smaller_charge_would_have_left(case):
    lim, now, admitted, t0, charge, refund = case
    kind, limit, window = lim.kind, lim.limit, lim.window
    before = copy.deepcopy(lim).remaining(now)
    lim.refund(refund, t0, now)
    after = copy.deepcopy(lim).remaining(now)
    smaller = smaller_history(admitted, t0, charge, refund)
    # what a smaller charge would have left: the budget the reference finds in use, with and without it
    expected = ref_used(kind, limit, window, admitted, now) - ref_used(kind, limit, window, smaller, now)
    assert after - before == pytest.approx(expected, abs=1e-9 * limit), (kind, before, after)
    assert 0.0 <= after - before <= min(refund, charge) + 1e-9 * limit  # never more than was charged
    assert after <= limit
    # later, the refunded limiter is the smaller-charge history (no refill counted twice, none lost)
    for dt in (0.25 * window, window, 2.5 * window):
        got = copy.deepcopy(lim).remaining(now + dt)
        assert got == pytest.approx(limit - ref_used(kind, limit, window, smaller, now + dt), abs=1e-9 * limit)


@pytest.mark.parametrize("cls", ALGS)
def test_refund_after_the_window_has_passed_gives_nothing(cls):
    lim = cls(10, 60.0)
    assert lim.try_admit(10, 0.0)
    assert lim.try_admit(10, 200.0)  # a later full charge: the budget is empty again
    lim.refund(5, 0.0, 200.5)
    # what is left is what the history alone leaves (the token bucket's half second of refill, 10 x 0.5 / 60;
    # the windowed algorithms' nothing): the refund gave nothing back
    assert lim.remaining(200.5) == pytest.approx(10 - ref_used(cls.kind, 10, 60.0, [(0.0, 10), (200.0, 10)], 200.5))


@pytest.mark.parametrize("cls", ALGS)
def test_refund_in_the_same_window_frees_budget_and_reset(cls):
    lim = cls(10, 60.0)
    assert lim.try_admit(6, 1.0) and lim.try_admit(4, 2.0)
    lim.refund(3, 1.0, 2.0)
    lim.refund(4, 2.0, 2.0)
    # as if 3 and 0 had been charged: 7 left (the token bucket also refilled 1/6 between the charges)
    left = 10 - ref_used(cls.kind, 10, 60.0, [(1.0, 3), (2.0, 0)], 2.0)
    assert lim.remaining(2.0) == pytest.approx(left)
    assert lim.try_admit(7, 2.0) and not lim.try_admit(1, 2.0)


@pytest.mark.parametrize("cls", ALGS)
def test_refunding_everything_empties_the_limiter(cls):
    lim = cls(10, 60.0)
    assert lim.try_admit(4, 1.0)
    lim.refund(4, 1.0, 1.0)
    assert lim.remaining(1.0) == 10 and lim.reset(1.0) == 0.0


def test_window_counter_refund_into_the_previous_window_decays():
    lim = SlidingWindowCounter(10, 60.0)
    assert lim.try_admit(8, 30.0) and lim.try_admit(1, 70.0)
    lim.refund(4, 30.0, 75.0)   # the previous window now counts 4: estimate 4 (1 - 0.25) + 1
    assert lim.remaining(75.0) == pytest.approx(10 - 4 * 0.75 - 1)
    lim.refund(1, 70.0, 75.0)   # and the current one 0
    assert lim.remaining(75.0) == pytest.approx(10 - 4 * 0.75)
    lim.refund(100, 30.0, 130.0)  # two windows later: nothing left to refund, nothing changes
    assert lim.remaining(130.0) == 10


def test_token_bucket_refund_does_not_refill_twice():
    lim = TokenBucket(60, 60.0)  # 1 token per second
    assert lim.try_admit(60, 0.0)
    lim.refund(10, 0.0, 20.0)    # level 20 + 10
    assert lim.remaining(20.0) == pytest.approx(30.0)
    assert lim.remaining(30.0) == pytest.approx(40.0)
    assert lim.wait(50, 30.0) == pytest.approx(10.0)


def test_token_bucket_refund_of_a_charge_the_bucket_already_refilled_gives_nothing():
    lim = TokenBucket(60, 60.0)
    assert lim.try_admit(60, 0.0)    # emptied; full again at 60
    assert lim.try_admit(60, 100.0)  # emptied again by a new charge
    lim.refund(30, 0.0, 100.0)       # the first charge was paid back by the refill long ago
    assert lim.remaining(100.0) == 0.0


def test_pacer_bucket_starts_at_its_fraction_and_refills_at_it():
    lim = TokenBucket(100, 60.0, rate_fraction=0.5)
    assert lim.remaining(0.0) == 50.0
    assert lim.rate == pytest.approx(100 / 60 * 0.5)
    assert lim.wait(60, 0.0) == pytest.approx(10 / (100 / 120))
    assert lim.remaining(30.0) == pytest.approx(75.0)
    assert lim.remaining(90.0) == 100.0   # 50 + 90 x 0.833 = 125, capped at the capacity


@pytest.mark.parametrize("cls", ALGS)
@pytest.mark.parametrize("limit,window", [(0, 60.0), (-1, 60.0), (10, 0.0), (10, -5.0), (math.inf, 60.0),
                                          (10, math.inf), (math.nan, 60.0)])
def test_invalid_limit_or_window_is_refused(cls, limit, window):
    with pytest.raises(ValueError):
        cls(limit, window)
