"""One model's service times fitted from its log (sim/calibrate/service_fit.py), on small logs whose answers
are computed by hand: the output speed's mean, median and lognormal shape, the prefill line and the speed the
simulator needs from it, the queue's lognormal and its Anderson-Darling verdict, the network round trip, a
transcription model's audio speed, and which rows each fit leaves out.  Confidence intervals are checked
against scipy's own interval functions (``stats.t.interval``), a weighted least-squares fit solved with numpy,
and the distribution-free median interval's textbook ranks (n = 10: 2nd and 9th order statistics)."""
import math
import warnings
from dataclasses import replace

import numpy as np
import pytest
from scipy import stats

from sim.calibrate import service_fit
from sim.calibrate.evidence import evidence_table
from sim.calibrate.service_fit import (Figure, ServiceFit, _fit_rtt, _lognormal, _mean_ci, _median_ci,
                                       _weighted_line, fit_service)
from sim.recorder import Log
from sim.service import load_service_table

nan = math.nan
MODEL = "llama-3.1-8b-instant"
LN2 = math.log(2)


def _answer(t, *, pt=100, ptime=0.25, ct=100, ctime=0.25, q=0.125, rtt=0.0625, status=200, **kw):
    """An answered request: the client waits rtt + queue_time + total_time (prompt_time + completion_time)."""
    usage = {"queue_time": q, "prompt_tokens": pt, "prompt_time": ptime, "completion_tokens": ct,
             "completion_time": ctime, "total_tokens": None if pt is None or ct is None else pt + ct,
             "total_time": ptime + ctime}
    took = rtt + (q or 0.0) + ptime + ctime
    rec = {"t_send": 1000.0 + t, "t_recv": 1000.0 + t + took, "status": status, "model": MODEL,
           "endpoint": "chat.completions", "max_tokens": 4096, "audio_seconds": None, "usage": usage, "headers": {},
           "error": None, "label": None, "request_id": None, "retry_count": None, "service_tier": None}
    rec.update(kw)
    return rec


def _refusal(t, rtt, status=429):
    return {"t_send": 1000.0 + t, "t_recv": 1000.0 + t + rtt, "status": status, "model": MODEL,
            "endpoint": "chat.completions", "max_tokens": 4096, "audio_seconds": None, "usage": None,
            "headers": {"x-ratelimit-remaining-tokens": "0"}, "error": {"message": "Rate limit reached"},
            "label": None, "request_id": None, "retry_count": None, "service_tier": None}


def _fit(records, model=MODEL):
    return fit_service(evidence_table(Log("<test>", records)), model)


def _t_interval(x):
    """scipy's Student-t interval of a mean (the reference for ``_mean_ci``)."""
    x = np.asarray(x, float)
    return stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))


# ---- Figure and params ---------------------------------------------------------------------------------------

def test_a_figure_as_text():
    assert Figure(0.25, 0.2, 0.3, 12).text(".3g", " s") == "0.25 s (95% CI 0.2-0.3, n=12)"
    assert Figure(512.0, 480.5, 540.25, 40).text() == "512 (95% CI 480.5-540.2, n=40)"
    for low, high in ((nan, 0.3), (0.2, nan), (nan, nan)):  # either end unknown: no interval
        assert Figure(0.25, low, high, 3).text(".3g", " s") == "0.25 s (n=3: too few for a 95% CI)"


def test_params_are_the_estimated_numbers_only():
    assert ServiceFit(MODEL, 0).params() == {}
    fit = ServiceFit(MODEL, 50, output_tps=Figure(500.0, 480.0, 520.0, 50), speed_cv=0.5,
                     prefill_slope=Figure(1.25e-4, 1e-4, 1.5e-4, 50), prefill_fixed=Figure(0.02, 0.01, 0.03, 50),
                     prefill_tps=10_000.0, audio_speed_factor=150.0, queue_median=Figure(0.12, 0.1, 0.14, 50),
                     queue_p90=0.3, rtt=Figure(0.05, 0.04, 0.06, 50), rtt_p90=0.09)
    # the simulator divides the fixed part by the speed factor too: 0.02 / E[1/S] = 0.02 / (1 + 0.5^2)
    assert fit.params() == {"output_tps": 500.0, "audio_speed_factor": 150.0, "prefill_tps": 10_000.0,
                            "prefill_fixed": pytest.approx(0.016, rel=1e-12), "speed_cv": 0.5,
                            "queue_median": 0.12, "queue_p90": 0.3, "rtt_median": 0.05, "rtt_p90": 0.09}


def test_params_of_a_negative_fixed_part_no_speed_shape_and_a_p90_below_the_median():
    fit = ServiceFit(MODEL, 5, prefill_tps=8000.0, prefill_fixed=Figure(-0.003, -0.01, 0.004, 5),
                     rtt=Figure(0.05, nan, nan, 5), rtt_p90=0.04)
    assert fit.params() == {"prefill_tps": 8000.0, "prefill_fixed": 0.0, "rtt_median": 0.05, "rtt_p90": 0.05}
    fit = ServiceFit(MODEL, 5, prefill_tps=8000.0, prefill_fixed=Figure(0.004, nan, nan, 5), speed_cv=0.0)
    assert fit.params() == {"prefill_tps": 8000.0, "prefill_fixed": 0.004, "speed_cv": 0.0}  # cv 0: divided by 1


def test_a_fit_starts_with_empty_samples_kept_out_of_its_repr():
    fit = ServiceFit(MODEL, 0)
    for name in ("speeds", "queue", "prompt", "prompt_time", "audio", "response_time"):
        assert getattr(fit, name).shape == (0,), name
        assert f"{name}=" not in repr(fit), name  # samples are for the plots, not for printing
    assert "model='llama-3.1-8b-instant'" in repr(fit)
    full = _fit(_prefill_rows([100, 200, 400], [0.012, 0.022, 0.042]))
    assert full.prompt.size == 3 and "prompt=" not in repr(full) and "speeds=" not in repr(full)


# ---- the statistics ------------------------------------------------------------------------------------------

def test_the_median_interval_is_the_binomial_order_statistics():
    # n = 10: P(B <= 1) = 11/1024 < 2.5 % < P(B <= 2) = 56/1024, so the 2nd and 9th smallest (coverage 97.9 %)
    x = np.array([7.0, 3.0, 10.0, 1.0, 9.0, 4.0, 2.0, 8.0, 6.0, 5.0])
    assert _median_ci(x) == Figure(5.5, 2.0, 9.0, 10)
    # n = 6: the widest interval, min to max, covers with 1 - 2/64 = 96.9 %; n = 5 (93.75 %) gets none
    assert _median_ci(np.array([6.0, 1.0, 5.0, 2.0, 4.0, 3.0])) == Figure(3.5, 1.0, 6.0, 6)
    five = _median_ci(np.array([6.0, 1.0, 5.0, 4.0, 3.0]))
    assert five.value == 4.0 and math.isnan(five.low) and math.isnan(five.high)
    # n = 9: P(B <= 1) = 10/512 < 2.5 % < P(B <= 2) = 46/512: the 2nd and 8th smallest
    assert _median_ci(np.arange(1.0, 10.0)) == Figure(5.0, 2.0, 8.0, 9)
    # n = 8: P(B <= 0) = 1/256 < 2.5 % < P(B <= 1) = 9/256: the 1st and 8th
    assert _median_ci(np.arange(1.0, 9.0)) == Figure(4.5, 1.0, 8.0, 8)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_below_six_samples_no_median_interval_and_no_index_error(n):
    f = _median_ci(np.arange(float(n)))
    assert f.value == (n - 1) / 2 and f.n == n and math.isnan(f.low) and math.isnan(f.high)


def test_the_mean_interval_is_students():
    x = [100.0, 400.0]
    f = _mean_ci(np.array(x))
    assert (f.value, f.n) == (250.0, 2)
    assert (f.low, f.high) == pytest.approx(_t_interval(x), rel=1e-12)
    # by hand: t(0.975, 1) = 12.706, s = 150 sqrt(2), half = 12.706 x 150
    assert f.high - f.value == pytest.approx(12.7062047 * 150, rel=1e-7)
    x = [3.0, 5.0, 4.0, 8.0, 10.0]
    assert (_mean_ci(np.array(x)).low, _mean_ci(np.array(x)).high) == pytest.approx(_t_interval(x), rel=1e-12)


def test_a_speeds_interval_stops_at_zero():
    """Two speeds far apart: Student's interval reaches below 0 (250 - 12.7 x 150 x 1.41 / 1.41 = -1 656), where
    no speed is; a speed's is cut there.  The high end is Student's."""
    x = np.array([100.0, 400.0])
    f = _mean_ci(x, floor=0.0)
    assert f.low == 0.0 and f.high == pytest.approx(_t_interval(list(x))[1], rel=1e-12) and f.value == 250.0
    assert _mean_ci(x).low < 0  # (the default: no floor)
    assert _mean_ci(np.array([3.0, 5.0, 4.0]), floor=0.0).low == pytest.approx(_t_interval([3.0, 5.0, 4.0])[0])


def test_one_sample_has_a_mean_but_no_interval_and_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (numpy warns of a standard deviation of one sample)
        f = _mean_ci(np.array([42.0]))
    assert f.value == 42.0 and f.n == 1 and math.isnan(f.low) and math.isnan(f.high)


def test_the_lognormal_fit_is_the_mean_and_spread_of_the_logs():
    # logs 0 and 2: mu = 1, sigma (maximum likelihood: divided by n) = 1, median e
    f, sigma = _lognormal(np.array([1.0, math.e ** 2]))
    assert sigma == pytest.approx(1.0, rel=1e-6) and f.value == pytest.approx(math.e, rel=1e-6) and f.n == 2
    lo, hi = stats.t.interval(0.95, 1, loc=1.0, scale=1.0 / math.sqrt(2))
    assert (f.low, f.high) == pytest.approx((math.exp(lo), math.exp(hi)), rel=1e-5)
    x = np.array([0.05, 0.08, 0.11, 0.2, 0.09, 0.3])
    f, sigma = _lognormal(x)
    mu, s = np.log(x).mean(), np.log(x).std()
    assert sigma == pytest.approx(s, rel=1e-5) and f.value == pytest.approx(math.exp(mu), rel=1e-5)
    lo, hi = stats.t.interval(0.95, 5, loc=mu, scale=s / math.sqrt(6))
    assert (f.low, f.high) == pytest.approx((math.exp(lo), math.exp(hi)), rel=1e-5)


def _wls(x, y):
    """Weighted least squares of y = a + b x with weights 1 / x^2 (noise growing in proportion to the size, as a
    per-request speed factor makes it), by the normal equations: (b, a) and their 95 % intervals."""
    X = np.column_stack([np.ones_like(x), x])
    w = 1.0 / x ** 2
    xtwx = X.T @ (w[:, None] * X)
    beta = np.linalg.solve(xtwx, X.T @ (w * y))
    resid = y - X @ beta
    s2 = np.sum(w * resid ** 2) / (len(x) - 2)
    se = np.sqrt(np.diag(s2 * np.linalg.inv(xtwx)))
    t = stats.t.ppf(0.975, len(x) - 2)
    (a, b), (sa, sb) = beta, se
    return (b, b - t * sb, b + t * sb), (a, a - t * sa, a + t * sa)


def test_the_weighted_line_is_weighted_least_squares():
    x = np.array([100.0, 250.0, 400.0, 800.0, 1600.0, 3000.0])
    y = np.array([0.014, 0.031, 0.042, 0.094, 0.17, 0.33])
    slope, fixed = _weighted_line(x, y)
    (b, blo, bhi), (a, alo, ahi) = _wls(x, y)
    assert (slope.value, slope.low, slope.high) == pytest.approx((b, blo, bhi), rel=1e-9)
    assert (fixed.value, fixed.low, fixed.high) == pytest.approx((a, alo, ahi), rel=1e-9)
    assert slope.n == fixed.n == 6
    # noise-free: the line itself, with intervals of no width
    slope, fixed = _weighted_line(np.array([100.0, 200.0, 400.0]), np.array([0.012, 0.022, 0.042]))
    assert (slope.value, fixed.value) == pytest.approx((1e-4, 0.002), rel=1e-9)
    assert slope.high - slope.low < 1e-6 * slope.value and fixed.high - fixed.low < 1e-6 * fixed.value


# ---- output speed --------------------------------------------------------------------------------------------

def test_output_speed_mean_median_and_shape():
    # speeds 100 and 400 t/s; an answer of 0 tokens and one of 0 s tell no speed
    fit = _fit([_answer(0, ct=100, ctime=1.0), _answer(10, ct=200, ctime=0.5), _answer(20, ct=0, ctime=0.5),
                _answer(30, ct=5, ctime=0.0)])
    assert fit.n_answered == 4 and fit.kind == "chat" and fit.speeds.tolist() == [100.0, 400.0]
    assert fit.output_tps.value == 250.0 and fit.output_tps.n == 2
    # Student's interval, cut at 0 (its low end is -1 656 t/s)
    assert (fit.output_tps.low, fit.output_tps.high) == pytest.approx((0.0, _t_interval([100, 400])[1]), rel=1e-12)
    # the lognormal: logs ln 100 +- ln 2, so median 200 (the geometric mean) and sigma ln 2
    assert fit.output_median.value == pytest.approx(200.0, rel=1e-6)
    s = stats.lognorm(LN2)
    assert fit.speed_cv == pytest.approx(s.std() / s.mean(), rel=1e-5)  # the lognormal's coefficient of variation
    assert fit.params()["output_tps"] == 250.0 and fit.params()["speed_cv"] == fit.speed_cv


def test_a_speed_spread_beyond_the_simulators_is_written_at_its_bound():
    """Speeds alternating 10 and 10 000 t/s fit a lognormal of cv 389 (sigma ln 1000 / 2); a scenario allows
    speed_cv up to 3, so the fragment writes 3 with a note (4.8 was written, and ``groqsim check`` rejected the
    fragment), and the prefill speed is the one for that cv (its E[1/S] = 1 + cv^2)."""
    fit = _fit(_prefill_rows([100, 200, 400, 800], [0.012, 0.022, 0.042, 0.082], speeds=((100, 10.0), (1000, 0.1))))
    assert fit.speed_cv == 3.0 and fit.params()["speed_cv"] == 3.0
    assert fit.notes[0] == ("output speed's spread (lognormal cv 389) is beyond the simulator's largest "
                            "speed_cv: written as 3 (a few answers of implausible speed?)")
    assert fit.prefill_tps == pytest.approx((1 + 3.0 ** 2) * 10_000, rel=1e-6)
    replace(load_service_table()[MODEL], **fit.params()).check(MODEL)  # what the fragment writes loads


def test_a_one_token_answer_is_a_speed_sample():
    fit = _fit([_answer(0, ct=1, ctime=0.01), _answer(10, ct=200, ctime=0.5)])
    assert fit.speeds.tolist() == pytest.approx([100.0, 400.0]) and fit.output_tps.value == pytest.approx(250.0)


def test_one_speed_is_not_enough():
    fit = _fit([_answer(0, ct=100, ctime=1.0), _answer(10, ct=0, ctime=1.0)])
    assert fit.output_tps is None and fit.speed_cv is None and fit.speeds.size == 0
    assert fit.notes[0] == "output speed: 1 usable sample(s), need 2"


def test_no_answer_with_usage_no_figures():
    fit = _fit([_refusal(0, 0.05), _answer(5, ct=None)])
    assert fit.n_answered == 0 and fit.notes == ["no answered request with usage: no service figures"]
    empty = fit_service(evidence_table(Log("<test>", [])), MODEL)
    assert empty.kind == "chat" and empty.notes == ["no answered request with usage: no service figures"]


# ---- prefill -------------------------------------------------------------------------------------------------

def _prefill_rows(sizes, times, speeds=((100, 1.0), (200, 0.5))):
    """Answers of the given prompt sizes and times; their speeds alternate 100 and 400 t/s (sigma ln 2)."""
    return [_answer(10 * k, pt=p, ptime=pt_time, ct=speeds[k % 2][0], ctime=speeds[k % 2][1])
            for k, (p, pt_time) in enumerate(zip(sizes, times))]


def test_prefill_speed_and_fixed_part_from_a_noise_free_line():
    # prompt_time = 2 ms + prompt_tokens / 10 000 t/s; rows with no prompt time or no prompt tokens left out
    rows = _prefill_rows([100, 200, 400, 800], [0.012, 0.022, 0.042, 0.082])
    rows += [_answer(50, pt=300, ptime=0.0, ct=0), _answer(60, pt=0, ptime=0.003, ct=0)]
    fit = _fit(rows)
    assert fit.prompt.tolist() == [100.0, 200.0, 400.0, 800.0] and fit.prompt_time.tolist()[0] == 0.012
    assert fit.prefill_slope.value == pytest.approx(1e-4, rel=1e-9)
    assert fit.prefill_fixed.value == pytest.approx(0.002, rel=1e-9)
    # E[1/S] = 1 + cv^2 = exp(sigma^2) for the lognormal speed factor: the simulator's mean prompt time matches
    e_inv = math.exp(LN2 ** 2)
    assert fit.speed_cv ** 2 == pytest.approx(e_inv - 1, rel=1e-6)
    assert fit.prefill_tps == pytest.approx(e_inv * 10_000, rel=1e-6)
    assert fit.params()["prefill_fixed"] == pytest.approx(0.002 / e_inv, rel=1e-6)
    # the note gives the fitted part and the value written (the two differ by E[1/S]: 1.237 ms, not 2.0)
    assert ("prefill has a fixed part of 2.0 ms per request, written as prefill_fixed = 0.001237 s (divided by "
            "1 + speed_cv^2: the simulator divides it by each request's speed factor)") in fit.notes


def test_without_a_speed_shape_prefill_speed_is_the_slopes_inverse():
    rows = [_answer(0, pt=100, ptime=0.012, ct=100, ctime=1.0), _answer(10, pt=200, ptime=0.022, ct=0),
            _answer(20, pt=400, ptime=0.042, ct=0)]
    fit = _fit(rows)
    assert fit.speed_cv is None and fit.prefill_tps == pytest.approx(10_000, rel=1e-9)
    assert fit.params()["prefill_fixed"] == pytest.approx(0.002, rel=1e-9)


def test_a_prefill_line_through_zero_has_no_fixed_part_note():
    fit = _fit(_prefill_rows([100, 200, 400, 800], [0.0101, 0.0199, 0.0402, 0.0798]))
    assert fit.prefill_fixed.low < 0 < fit.prefill_fixed.value  # a fixed part the noise could have made
    assert fit.prefill_tps is not None and not any("fixed part" in n for n in fit.notes)


def test_a_one_token_prompt_is_a_prefill_sample():
    fit = _fit(_prefill_rows([1, 100, 200], [0.0021, 0.012, 0.022]))
    assert fit.prompt.tolist() == [1.0, 100.0, 200.0]
    assert fit.prefill_slope.value == pytest.approx(1e-4, rel=1e-9)


def test_three_samples_of_two_sizes_are_enough():
    fit = _fit(_prefill_rows([100, 100, 300], [0.012, 0.0125, 0.032]))
    assert fit.prefill_slope.n == 3 and fit.prefill_tps is not None


@pytest.mark.parametrize("sizes,times,note", [
    ([100, 200], [0.012, 0.022], "prefill: 2 usable sample(s) with 2 distinct prompt size(s); need 3 samples and 2 "
                                 "sizes"),
    ([100, 100, 100], [0.012, 0.013, 0.011], "prefill: 3 usable sample(s) with 1 distinct prompt size(s); need 3 "
                                             "samples and 2 sizes"),
])
def test_too_few_prefill_samples_or_sizes_say_so(sizes, times, note):
    fit = _fit(_prefill_rows(sizes, times))
    assert fit.prefill_slope is None and fit.prefill_tps is None and note in fit.notes
    assert "prefill_tps" not in fit.params()


def test_a_flat_prompt_time_is_no_prefill_speed():
    # exactly flat: a slope of 0 with an interval of no width
    fit = _fit(_prefill_rows([100, 200, 400], [0.5, 0.5, 0.5]))
    assert fit.prefill_slope.value == 0.0 and fit.prefill_tps is None
    assert "prompt_time does not grow with prompt_tokens: prefill speed not estimated" in fit.notes
    # a slope of exactly 0 whose interval is wide (prompt_time / prompt_tokens = 1 + (0, 1, -3, 2) / 64 per
    # 1 / prompt_tokens, residuals orthogonal to the line): still no growth, not "too little to tell"
    fit = _fit(_prefill_rows([1, 2, 4, 8], [1.0, 1.03125, 0.8125, 1.25]))
    assert fit.prefill_slope.value == 0.0 and fit.prefill_slope.low < 0 < fit.prefill_slope.high
    assert "prompt_time does not grow with prompt_tokens: prefill speed not estimated" in fit.notes


def test_a_slope_the_noise_could_have_made_is_said_with_its_interval():
    fit = _fit(_prefill_rows([100, 200, 300, 400], [0.02, 0.015, 0.035, 0.025]))
    slope = fit.prefill_slope
    assert slope.value > 0 > slope.low and fit.prefill_tps is None
    assert (f"prompt_time grows with prompt_tokens by {slope.text('.3g', ' s/token')}, too little to tell from noise "
            "(the interval includes 0): prefill speed not estimated (more answers or more varied prompt sizes would "
            "tell)") in fit.notes


# ---- queue ---------------------------------------------------------------------------------------------------

# two sets of 8 queue times whose Anderson-Darling p-values (scipy, interpolated) fall either side of 5 %
QUEUE_FITS = [0.052, 0.054, 0.302, 0.259, 0.238, 0.067, 0.314, 0.175]      # A^2 0.6655, p 0.0502
QUEUE_REJECTED = [0.122, 0.437, 0.277, 0.083, 0.11, 0.1, 0.536, 0.099]     # A^2 0.6661, p 0.04998


def _anderson_darling(x):
    """A^2 of a normal sample with mean and standard deviation estimated (Stephens' formula, unadjusted)."""
    z = np.sort(x)
    z = (z - z.mean()) / z.std(ddof=1)
    f = stats.norm.cdf(z)
    i = np.arange(1, len(z) + 1)
    return -len(z) - np.sum((2 * i - 1) * (np.log(f) + np.log(1 - f[::-1]))) / len(z)


def _queue_rows(queue):
    # and an answer with no queue time and one with a queue time of 0: neither is a lognormal sample
    return [_answer(k, q=q) for k, q in enumerate(queue)] + [_answer(50, q=0.0), _answer(60, q=None)]


def test_the_queue_lognormal_from_eight_samples():
    fit = _fit(_queue_rows(QUEUE_FITS))
    logs = np.log(QUEUE_FITS)
    mu, sigma = logs.mean(), logs.std()
    assert sorted(fit.queue.tolist()) == sorted(QUEUE_FITS)
    assert fit.queue_median.value == pytest.approx(math.exp(mu), rel=1e-5) and fit.queue_median.n == 8
    assert fit.queue_sigma == pytest.approx(sigma, rel=1e-5)
    lo, hi = stats.t.interval(0.95, 7, loc=mu, scale=sigma / math.sqrt(8))
    assert (fit.queue_median.low, fit.queue_median.high) == pytest.approx((math.exp(lo), math.exp(hi)), rel=1e-5)
    assert fit.queue_p90 == pytest.approx(stats.lognorm(sigma, scale=math.exp(mu)).ppf(0.9), rel=1e-5)
    assert fit.queue_fit["statistic"] == pytest.approx(_anderson_darling(logs), rel=1e-9)
    assert fit.queue_fit["p_value"] == pytest.approx(0.0502, abs=1e-4)
    assert fit.queue_fit["verdict"] == "fits" and not any("lognormal" in n for n in fit.notes)
    assert fit.params()["queue_median"] == fit.queue_median.value and fit.params()["queue_p90"] == fit.queue_p90


def test_a_queue_rejected_at_five_percent_is_noted():
    fit = _fit(_queue_rows(QUEUE_REJECTED))
    assert fit.queue_fit["p_value"] == pytest.approx(0.04998, abs=1e-5)
    assert fit.queue_fit["verdict"] == "rejected at 5%"
    assert fit.queue_fit["statistic"] == pytest.approx(_anderson_darling(np.log(QUEUE_REJECTED)), rel=1e-9)
    assert ("queue_time is not lognormal (Anderson-Darling 0.67, p=0.05): the simulator's lognormal queue is an "
            "approximation here") in fit.notes


def test_seven_queue_samples_are_too_few():
    fit = _fit(_queue_rows(QUEUE_FITS[:7]))
    assert fit.queue_median is None and fit.queue_fit == {} and fit.queue.size == 0
    assert "queue_time: 7 positive sample(s), need 8 for a lognormal fit" in fit.notes


# ---- network round trip --------------------------------------------------------------------------------------

def test_the_round_trip_of_answers_and_refusals():
    # answers: the response time less queue_time and total_time (0.0625 and 0.125 s); refusals (429 and 413):
    # the whole response time (0.03125, 0.25 s); another status tells nothing of the network
    rows = [_answer(0, rtt=0.0625), _answer(10, rtt=0.125, q=0.5, ptime=0.125, ctime=1.5),
            _refusal(20, 0.03125), _refusal(30, 0.25, status=413), _refusal(40, 5.0, status=500)]
    fit = _fit(rows)
    assert fit.rtt.value == pytest.approx(0.09375, abs=1e-9) and fit.rtt.n == 4 and math.isnan(fit.rtt.low)
    # numpy's p90 of 0.03125, 0.0625, 0.125, 0.25: 0.125 + 0.7 x 0.125
    assert fit.rtt_p90 == pytest.approx(0.2125, abs=1e-9)
    assert fit.params()["rtt_median"] == fit.rtt.value and fit.params()["rtt_p90"] == fit.rtt_p90


def test_two_round_trips_are_enough_one_is_not():
    fit = _fit([_answer(0, rtt=0.0625), _answer(10, rtt=0.125)])
    assert fit.rtt.value == pytest.approx(0.09375, abs=1e-9)
    assert fit.rtt_p90 == pytest.approx(0.0625 + 0.9 * 0.0625, abs=1e-9)
    fit = _fit([_answer(0, rtt=0.0625)])
    assert fit.rtt is None and fit.rtt_p90 is None and fit.notes[-1] == "network round trip: fewer than 2 samples"


def test_a_round_trip_of_zero_is_kept_a_negative_one_left_out_and_counted():
    fit = ServiceFit(MODEL, 0)
    _fit_rtt(fit, np.array([0.0, 0.5, nan]), "too few")
    assert fit.rtt.value == 0.25 and fit.rtt_p90 == pytest.approx(0.45) and fit.notes == []
    fit = ServiceFit(MODEL, 0)
    _fit_rtt(fit, np.array([0.1, -0.2, 0.3, 0.0, -0.01]), "too few")
    assert fit.rtt.value == 0.1 and fit.rtt.n == 3
    assert fit.notes == ["2 of 5 round trip(s) are negative (t_recv before t_send, or a response quicker than its "
                         "usage's times: clocks or times inconsistent): left out of the round trip"]
    fit = ServiceFit(MODEL, 0)
    _fit_rtt(fit, np.array([0.2, -0.1]), "too few")
    assert fit.rtt is None and fit.notes[-1] == "too few" and len(fit.notes) == 2


def test_a_zero_median_round_trip_with_a_positive_p90_is_not_estimated():
    """A zero median is no network at all, which the scenario loader allows only with a zero p90: a fit of
    median 0 and p90 0.35 s (too coarse a clock) would write a fragment ``groqsim check`` rejects."""
    fit = ServiceFit(MODEL, 0)
    _fit_rtt(fit, np.array([0.0, 0.0, 0.0, 0.5]), "too few")
    assert fit.rtt is None and fit.rtt_p90 is None and "rtt_median" not in fit.params()
    assert fit.notes == ["network round trip: median 0 s but p90 0.35 s (times too coarse to measure it?): not "
                         "estimated, as a zero median means no network at all"]
    fit = ServiceFit(MODEL, 0)
    _fit_rtt(fit, np.array([0.0, 0.0]), "too few")  # no network: what the loader allows
    assert (fit.rtt.value, fit.rtt_p90, fit.notes) == (0.0, 0.0, [])


def test_whole_second_times_measure_no_round_trip():
    """Every t_send and t_recv a whole second: round trips read as 0 or 1 s, so none is estimated (the fit had
    median 0 and p90 1 s, a fragment the loader rejects), and a note says why; the usage's figures stay."""
    rows = [_answer(10 * k, rtt=0.375) for k in range(4)] + [_refusal(50 + k, float(k % 2)) for k in range(6)]
    assert all(r["t_send"] % 1 == 0 and r["t_recv"] % 1 == 0 for r in rows)
    fit = _fit(rows)
    assert fit.rtt is None and not {"rtt_median", "rtt_p90"} & fit.params().keys() and fit.output_tps.value == 400
    assert fit.notes[-1] == ("every t_send and t_recv is a whole second: round trips cannot be measured on such a "
                             "clock, so the network round trip is not estimated (log sub-second times, as time.time())")
    replace(load_service_table()[MODEL], **fit.params()).check(MODEL)  # what the fragment writes loads
    whisper = _stt([(10.0 * k, 2.0, 200, 30.0 * (k + 1)) for k in range(3)] + [(40.0, 0.0, 429, None),
                                                                            (50.0, 1.0, 429, None)])
    assert whisper.rtt is None and whisper.notes[-1].startswith("every t_send and t_recv is a whole second")


def test_an_answer_quicker_than_its_own_usage_is_a_negative_round_trip():
    fit = _fit([_answer(0, rtt=0.0625), _answer(10, rtt=0.125), _answer(20, rtt=-0.25)])
    assert fit.rtt.value == pytest.approx(0.09375, abs=1e-9) and fit.rtt.n == 2
    assert fit.notes[-1].startswith("1 of 3 round trip(s) are negative")


# ---- transcriptions ------------------------------------------------------------------------------------------

def _stt(rows, model="whisper-large-v3", endpoint="audio.transcriptions"):
    records = [{"t_send": 1000.0 + t, "t_recv": 1000.0 + t + took, "status": status, "model": model,
                "endpoint": endpoint, "max_tokens": None, "audio_seconds": audio, "usage": None, "headers": {},
                "error": None, "label": None, "request_id": None, "retry_count": None, "service_tier": None}
               for t, took, status, audio in rows]
    return _fit(records, model)


def test_a_transcription_of_no_audio_is_left_out_of_the_line():
    cv = load_service_table()["whisper-large-v3"].speed_cv
    fit = _stt([(0.0, 0.25 + 30 / 128, 200, 30), (10.0, 0.25 + 60 / 128, 200, 60), (20.0, 0.25 + 120 / 128, 200, 120),
                (30.0, 0.5, 200, 0)])
    assert fit.kind == "stt" and fit.n_answered == 4 and fit.audio.tolist() == [30.0, 60.0, 120.0]
    assert fit.audio_slope.value == pytest.approx(1 / 128, rel=1e-9)
    assert fit.audio_fixed.value == pytest.approx(0.25, rel=1e-9)
    assert fit.audio_speed_factor == pytest.approx((1 + cv ** 2) * 128, rel=1e-9)


def test_a_transcription_model_s_own_speed_cv_from_the_table(monkeypatch):
    # every model of the shipped table has the default speed_cv 0.32: a table whose whisper differs
    table = {"whisper-large-v3": replace(load_service_table()["whisper-large-v3"], speed_cv=0.5)}
    monkeypatch.setattr(service_fit, "load_service_table", lambda: table)
    fit = _stt([(0.0, 0.25 + 30 / 128, 200, 30), (10.0, 0.25 + 60 / 128, 200, 60), (20.0, 0.25 + 120 / 128, 200, 120)])
    assert fit.audio_speed_factor == pytest.approx(1.25 * 128, rel=1e-9)  # (1 + 0.5^2) / slope
    assert fit.notes[0].startswith("transcriptions carry no usage: audio_speed_factor from response times with "
                                   "speed_cv 0.5 assumed")


def test_a_log_whose_lines_carry_audio_seconds_is_a_transcription_log_whatever_the_endpoint():
    # as sim.tracelog: a line is audio if its endpoint is, or it names a positive audio length
    fit = _stt([(0.0, 0.5, 200, 30), (10.0, 0.7, 200, 60), (20.0, 1.1, 200, 120)], endpoint=None)
    assert fit.kind == "stt" and fit.audio_slope is not None
    fit = _stt([(0.0, 0.5, 200, 0.5)], endpoint=None)
    assert fit.kind == "stt"
    # a chat answer whose line says audio_seconds 0 is a chat answer
    fit = _fit([_answer(0, audio_seconds=0), _answer(10, audio_seconds=0)])
    assert fit.kind == "chat" and fit.output_tps is not None


def test_a_flat_response_time_is_no_audio_speed():
    # exactly flat: a slope of 0 with an interval of no width
    fit = _stt([(0.0, 0.5, 200, 1), (10.0, 0.5, 200, 2), (20.0, 0.5, 200, 4)])
    assert fit.audio_slope.value == 0.0 and fit.audio_speed_factor is None
    assert "response time does not grow with audio_seconds: audio speed not estimated" in fit.notes
    # a slope of exactly 0 with a wide interval (time / audio = 2 + (2, -3, 1, 0) per 1 / audio, residuals
    # orthogonal to the line)
    fit = _stt([(0.0, 4.0, 200, 1.0), (10.0, 0.5, 200, 0.5), (20.0, 2.25, 200, 0.25), (30.0, 2.0, 200, 0.125)])
    assert fit.audio_slope.value == 0.0 and fit.audio_slope.low < 0 and fit.audio_speed_factor is None
    assert "response time does not grow with audio_seconds: audio speed not estimated" in fit.notes


def test_a_noisy_audio_slope_is_said_with_its_interval():
    fit = _stt([(0.0, 1.0, 200, 60), (5.0, 1.3, 200, 120), (9.0, 1.3, 200, 60), (13.0, 1.05, 200, 120)])
    slope = fit.audio_slope
    assert (f"response time grows with audio_seconds by {slope.text('.3g', ' s/s')}, too little to tell from noise "
            "(the interval includes 0): audio speed not estimated (longer or more varied audio would tell)") \
        in fit.notes


# ---- at the boundaries exactly (samples found by search so that a float lands exactly on the threshold) -------

# 13 queue times whose Anderson-Darling A^2 is exactly scipy's 5 % critical value for n = 13 (0.752 / (1 + 0.75/13
# + 2.25/169), to 3 decimals: 0.702), so the interpolated p-value is exactly 0.05
QUEUE_AT_5_PERCENT = [0.143, 0.203, 0.119, 0.218, 0.01055664777586969, 0.216, 0.37, 0.084, 0.156, 0.098, 0.148,
                      0.059, 0.09]


def test_a_queue_whose_p_value_is_exactly_five_percent_fits():
    ad = stats.anderson(np.log(QUEUE_AT_5_PERCENT), dist="norm", method="interpolate")
    if ad.pvalue != 0.05:  # (scipy's arithmetic changed: the sample no longer sits on the boundary)
        pytest.skip(f"A^2 {ad.statistic!r} is not exactly the 5 % critical value with this scipy")
    fit = _fit([_answer(k, q=q) for k, q in enumerate(QUEUE_AT_5_PERCENT)])
    assert fit.queue_fit == {"statistic": 0.702, "p_value": 0.05, "verdict": "fits"}
    assert not any("not lognormal" in n for n in fit.notes)


# prompt times of 100, 200, 400 and 800 tokens whose fixed part's interval ends exactly at 0
PREFILL_LOW_AT_0 = [0.01186, 0.02303, 0.04503, 0.08691536971577588]


def test_a_fixed_part_whose_interval_ends_exactly_at_zero_is_not_reported():
    slope, fixed = _weighted_line(np.array([100.0, 200.0, 400.0, 800.0]), np.array(PREFILL_LOW_AT_0))
    if fixed.low != 0.0:
        pytest.skip(f"the interval ends at {fixed.low!r}, not exactly 0, with this scipy")
    fit = _fit(_prefill_rows([100, 200, 400, 800], PREFILL_LOW_AT_0))
    assert fit.prefill_fixed.low == 0.0 < fit.prefill_fixed.value and fit.prefill_slope.low > 0
    assert fit.prefill_tps is not None and not any("fixed part" in n for n in fit.notes)
