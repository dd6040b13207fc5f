"""Arrival processes beyond their mean rate (tests/test_arrivals.py checks that): bursty's gap variability,
diurnal's shape and phase, zero rates, the piecewise validator's edges, the trace's horizon, on/off's periods;
and request sizes of 0 (sim/workload.py).  Shapes are checked against docs/modelling.md's definitions."""
import numpy as np
import pytest
from pydantic import ValidationError

from sim.arrivals import arrival, poisson_times
from sim.config import Client
from sim.workload import sizes


def _gap_cv(t: np.ndarray) -> float:
    gaps = np.diff(np.concatenate([[0.0], t]))  # a renewal process from 0: the first arrival is a gap too
    return gaps.std() / gaps.mean()


@pytest.mark.parametrize("burstiness", [3.0, 0.5, None])
def test_bursty_gaps_have_the_coefficient_of_variation_asked(burstiness):
    """bursty = gamma gaps whose coefficient of variation is ``burstiness`` (default 1: Poisson); below 1 is
    allowed (more regular than Poisson).  ~2e6 gaps at 1/s: the CV's standard error is below 0.01 at CV 3
    (gamma of shape 1/9: excess kurtosis 54, sd(s)/sigma ~ sqrt(56 / 4n) = 0.0026, plus the mean's 3/sqrt(n)),
    and 0.004 / 0.001 were measured over 20 seeds; tolerance 2 % (>= 5 standard errors) while a CV of
    sqrt(6) = 2.45 (shape 1/(2b)) or 3/sqrt(1.1) = 2.86 (shape 1.1/b^2) is off by 5 % or more."""
    settings = {} if burstiness is None else {"burstiness": burstiness}
    t = arrival(kind="bursty", rate="60/min", **settings).times(np.random.default_rng(7), 2e6)
    assert _gap_cv(t) == pytest.approx(burstiness or 1.0, rel=0.02)
    assert len(t) == pytest.approx(2e6, rel=0.02)  # (and still 1/s on average)


def test_bursty_burstiness_bounds():
    for bad in (0.0, -1.0, 51.0, 1e-300, 0.00099):  # (1e-300: its gamma's shape overflowed in the run)
        with pytest.raises(ValidationError):
            arrival(kind="bursty", rate="1/s", burstiness=bad)
    assert arrival(kind="bursty", rate="1/s", burstiness=50.0).burstiness == 50.0
    least = arrival(kind="bursty", rate="1/s", burstiness=0.001)
    t = least.times(np.random.default_rng(1), 1000.0)
    assert np.diff(t) == pytest.approx(1.0, rel=0.01)  # (as good as constant: what the bound points to)


def test_onoff_periods_last_at_least_a_second_and_closed_loops_need_a_user():
    with pytest.raises(ValidationError):
        arrival(kind="onoff", rate="1/s", on="0.5s", off="1s")
    assert arrival(kind="onoff", rate="1/s", on="1s", off="0s").on == 1.0
    with pytest.raises(ValidationError):
        arrival(kind="closed", users=0, think="1s")
    assert arrival(kind="closed", users=1, think="1s").users == 1


def _share_between(t: np.ndarray, period: float, lo: float, hi: float) -> float:
    phase = np.mod(t, period)
    return float(np.mean((phase >= lo) & (phase < hi)))


def test_diurnal_puts_the_cosines_share_in_the_half_period_around_the_peak():
    """rate(t) = r (1 + a cos(2 pi (t - peak) / T)) (docs/modelling.md): over the half period centred on the
    peak, [peak - T/4, peak + T/4), the integral is r (T/2 + a T/pi), so that half holds 0.5 + a/pi of the
    arrivals.  a = 1, T = 1 h, peak 15 min: [0, 30 min) holds 0.5 + 1/pi = 0.818 (0.182 if the sign, the phase
    or the period were wrong).  ~3.6e5 arrivals: binomial sd 0.0006; tolerance 0.005."""
    proc = arrival(kind="diurnal", rate="60/min", period="1h", amplitude=1.0, peak="15m")
    t = proc.times(np.random.default_rng(3), 100 * 3600.0)
    assert _share_between(t, 3600.0, 0.0, 1800.0) == pytest.approx(0.5 + 1 / np.pi, abs=0.005)
    assert _share_between(t, 3600.0, 0.0, 900.0) == pytest.approx(0.25 + 1 / (2 * np.pi), abs=0.005)  # rising quarter
    assert len(t) == pytest.approx(360_000, rel=0.01)


def test_diurnal_defaults_peak_at_14h_of_a_24h_day_with_amplitude_one_half():
    """Defaults: period 24 h, amplitude 0.5, peak 14 h.  [8 h, 20 h) holds 0.5 + 0.5/pi = 0.659 of 20 days'
    ~8.6e5 arrivals (sd 0.0005; tolerance 0.005).  Amplitude 0.55 would give 0.675; a peak at 15.4 h
    0.5 + cos(2 pi 1.4/24)/(2 pi) = 0.649; a 26.4 h period drifts through the day toward 0.5."""
    t = arrival(kind="diurnal", rate="30/min").times(np.random.default_rng(5), 20 * 86_400.0)
    assert _share_between(t, 86_400.0, 8 * 3600.0, 20 * 3600.0) == pytest.approx(0.5 + 0.5 / np.pi, abs=0.005)


@pytest.mark.parametrize("settings", [
    {"kind": "poisson", "rate": "0/min"},
    {"kind": "constant", "rate": "0/min"},
    {"kind": "bursty", "rate": "0/min", "burstiness": 2.0},
    {"kind": "onoff", "rate": "0/min", "on": "5m", "off": "1m"},
    {"kind": "diurnal", "rate": "0/min"},
    {"kind": "piecewise", "schedule": [["0h", "0/min"], ["1h", "0/min"]], "period": "2h"},
], ids=lambda s: s["kind"])
def test_a_zero_rate_sends_nothing(settings):
    # validation accepts a rate of 0 (a group switched off): no arrival, not an error, not one stray time
    t = arrival(**settings).times(np.random.default_rng(0), 600.0)
    assert isinstance(t, np.ndarray) and t.size == 0
    assert arrival(**settings).times(np.random.default_rng(0), 600.0, load=3.0).size == 0


def test_piecewise_schedule_starts_must_increase_and_stay_inside_the_period():
    ok = [["0h", "1/s"], ["1h", "2/s"]]
    for schedule, period in [([*ok, ["1h", "3/s"]], {}),             # a start listed twice
                             ([*ok, ["30m", "3/s"]], {}),            # out of order
                             ([["0h", "1/s"], ["24h", "2/s"]], {}),  # at the (default, 24 h) period: outside it
                             (ok, {"period": "1h"})]:                # at a period given explicitly
        with pytest.raises(ValidationError):
            arrival(kind="piecewise", schedule=schedule, **period)
    # just inside: accepted
    assert arrival(kind="piecewise", schedule=[["0h", "1/s"], ["23h", "2/s"]]).period == 86_400.0
    assert len(arrival(kind="piecewise", schedule=ok, period="61m").schedule) == 2


def test_a_trace_row_at_the_horizon_is_not_sent(tmp_path):
    """Arrivals are in [0, duration): a row at exactly ``duration`` is left out (trace times are discrete,
    so the tie is common); ``load`` divides time before the cut."""
    path = tmp_path / "t.csv"
    path.write_text("timestamp\n0\n5\n10\n10.5\n")
    tr = arrival(kind="trace", file=str(path))
    assert list(tr.times(np.random.default_rng(0), 10.0)) == [0.0, 5.0]
    assert list(tr.rows(10.0)["timestamp"]) == [0.0, 5.0]  # default load 1: time unchanged
    assert list(tr.times(np.random.default_rng(0), 5.0, load=2.0)) == [0.0, 2.5]
    assert list(tr.times(np.random.default_rng(0), 11.0)) == [0.0, 5.0, 10.0, 10.5]


class _MeanDraws:
    """A generator stand-in whose exponential and gamma draws are ``fraction`` of their means (on/off: every on
    period lasts ``on``, every off period ``off``, every Poisson gap 1/rate) and whose uniforms are ``uniform``,
    so times can be written by hand."""

    def __init__(self, fraction: float = 1.0, uniform: float = 0.5):
        self.fraction, self.uniform = fraction, uniform

    def exponential(self, scale, size):
        return np.full(size, self.fraction * scale)

    def gamma(self, shape, scale, size=None):
        return self.fraction * shape * scale if size is None else np.full(size, self.fraction * shape * scale)

    def random(self, size=None):
        return self.uniform if size is None else np.full(size, self.uniform)


@pytest.mark.parametrize("settings, first", [({"kind": "poisson", "rate": "60/min"}, 0.25),
                                             ({"kind": "bursty", "rate": "60/min", "burstiness": 2.0}, 0.625)],
                         ids=lambda s: s["kind"] if isinstance(s, dict) else "")
def test_gaps_are_summed_from_zero_over_as_many_blocks_as_the_horizon_takes(settings, first):
    # gaps of a quarter of the mean (0.25 s at 1/s): the first block (sized for mean gaps, 221 gaps for
    # Poisson, 121 for bursty over 100 s) ends far before the horizon; every later block must be kept.
    # Poisson's clock starts at 0 (its first arrival a gap after it); bursty's first arrival is its
    # forward-recurrence time, uniform (here 1/2) x a gamma of shape 1/b^2 + 1 (here 1/4 of its mean, 5 s)
    t = arrival(**settings).times(_MeanDraws(0.25), 100.0)
    assert t.tolist() == [first + 0.25 * k for k in range(0, int((100 - first) / 0.25) + 1)
                          if first + 0.25 * k < 100]


def test_bursty_traffic_is_stationary_from_the_start():
    """A bursty source is already running when the horizon starts (a stationary renewal process): its first
    arrival comes after the mean forward-recurrence time E[X^2] / 2E[X] = (1 + b^2) / (2 rate) (Cox, Renewal
    Theory, 1962), not after a whole gap, and any window holds rate x length arrivals on average.  Starting
    with a whole gap (before 0.4.0) gave a first arrival after 10.2 s and 15.2 arrivals in the minute below
    instead of 6 (means over the same 2 000 seeds)."""
    b, rate = 5.0, 0.1  # 6/min
    proc = arrival(kind="bursty", rate="6/min", burstiness=b)
    firsts = [proc.times(np.random.default_rng(seed), 1e4)[0] for seed in range(2000)]
    assert np.mean(firsts) == pytest.approx((1 + b * b) / (2 * rate), rel=0.1)  # 130 s (a whole gap: 10 s)
    counts = [proc.times(np.random.default_rng(seed), 60.0).size for seed in range(2000)]
    assert np.mean(counts) == pytest.approx(6.0, abs=1.0)


def test_a_horizon_of_a_few_arrivals_and_an_empty_one():
    # bursty over a horizon that expects 3 arrivals: one block of gaps (its size has a floor) covers it, and
    # the count is right on average (400 seeds: the standard error of the mean is ~0.15 at CV 2)
    proc = arrival(kind="bursty", rate="3/min", burstiness=2.0)
    counts = [proc.times(np.random.default_rng(seed), 60.0).size for seed in range(400)]
    assert np.mean(counts) == pytest.approx(3.0, abs=0.6)
    # an empty horizon has no arrival, whatever the rate
    assert poisson_times(np.random.default_rng(0), 5.0, 0.0).size == 0


def test_arrivals_start_at_zero_even_within_a_one_second_horizon():
    # 100/s: ~50 arrivals in [0, 0.5 s) (none with probability e^-50)
    t = arrival(kind="poisson", rate="100/s").times(np.random.default_rng(0), 0.5)
    assert 20 < t.size < 80 and t.max() < 0.5


def test_onoff_starts_on_at_zero_and_maps_its_on_clock_onto_the_on_periods():
    # on 10 s, off 20 s, 1/s while on: the on-clock's arrivals 1, 2, ... fall at 1..9 in the first period
    # [0, 10), then 10..19 at 30..39 (second period [30, 40)), 20..29 at 60..69
    proc = arrival(kind="onoff", rate="60/min", on="10s", off="20s")
    expected = [*range(1, 10), *range(30, 40), *range(60, 70)]
    assert proc.times(_MeanDraws(), 70.0).tolist() == expected
    # off 1 s is an off period still (not rounded to none): 1..9, 11..20, 22..31, ...
    proc = arrival(kind="onoff", rate="60/min", on="10s", off="1s")
    assert proc.times(_MeanDraws(), 25.0).tolist() == [*range(1, 10), *range(11, 21), 22, 23, 24]
    # no off period: the on-clock itself
    proc = arrival(kind="onoff", rate="60/min", on="10s", off="0s")
    assert proc.times(_MeanDraws(), 25.0).tolist() == list(range(1, 25))


def _client(**kw):
    return Client(name="c", model="llama-3.1-8b-instant", arrival=arrival(kind="poisson", rate=2.0), **kw)


def test_zero_prompt_and_max_tokens_stay_zero():
    """Sizes are whole and floored at 0, not at 1: a prompt of 0 tokens stays 0, and max_tokens uniform on
    {0, 1, 2} is 0 a third of the time (4 000 draws: sd 0.007, tolerance 0.05)."""
    sz = sizes(_client(prompt_tokens=0, max_tokens={"dist": "uniform", "low": 0, "high": 2}),
               np.random.default_rng(2), 4000)
    assert (sz["prompt"] == 0).all()
    assert (sz["max_tokens"] == 0).mean() == pytest.approx(1 / 3, abs=0.05)
    assert set(np.unique(sz["max_tokens"])) == {0.0, 1.0, 2.0}
    assert ((sz["completion"] == 0) == (sz["max_tokens"] == 0)).all()  # the whole max_tokens, 0 included
