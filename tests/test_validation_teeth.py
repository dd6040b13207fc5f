"""The validation checks have teeth: each FAILS when the simulator is wrong in the way it exists to catch, and
its tolerance sits where its source puts it (just inside passes, just beyond fails).

Expected figures are computed here from the closed form or the reference documents
(/work/shared/reference/groq-rate-limits.md, groq-real-responses.md), never by the code under test.  The
simulator is broken by monkeypatching the component a check validates, or the measurement a check reads is
replaced by a hand-made one.
"""
import csv
import dataclasses
import io
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import sim.validation as validation
import sim.validation_fidelity as fidelity
from sim.checks import Check
from sim.limiters import ALGORITHMS

DATA = Path(validation.__file__).parent / "data"
ARRIVAL = validation.arrival


def by_name(checks):
    return {c.name: c for c in checks}


def only_failed(checks, *names):
    """Exactly the ``names`` failed; every other check still passes."""
    failed = {c.name for c in checks if not c.passed}
    assert failed == set(names), [(c.name, c.measured) for c in checks]


# --- ceilings: TPM 6 000 / 30-token requests = 200 req/min; (6 000 - 300) / 300 = 19 req/min --------------

def test_a_limiter_refilling_2_percent_too_fast_fails_every_ceiling(monkeypatch):
    """The TPM the limiter enforces reads 6 120 instead of 6 000: throughput 204/min, 2 % over the ceiling."""
    cat = validation.Catalog.published().copy().define_tier(
        "validation", "free", overrides={validation.MODEL: {"rpm": None, "rpd": None, "tpd": None, "tpm": 6120}})
    monkeypatch.setattr(validation, "_tpm_only_catalog", lambda: cat)
    checks = [c for a in ALGORITHMS for c in validation.check_ceiling(0.5, a)]
    checks += validation.check_ceiling_large_requests(0.5)
    assert checks and not any(c.passed for c in checks), [c.measured for c in checks]
    assert validation.check_pacing(0.5)[0].passed  # pacing mirrors the (wrong) limits: still never refused


@pytest.mark.parametrize("got, passed", [(200 * 1.0099, True), (200 * 0.9901, True), (200 * 1.0101, False),
                                         (200 * 0.9899, False), (200 * 1.0105, False), (200 * 0.9895, False)])
def test_the_ceilings_tolerance_is_one_percent(monkeypatch, got, passed):
    calls = []
    monkeypatch.setattr(validation, "_throughput", lambda *a: calls.append(a) or got)
    (c,) = validation.check_ceiling(0.5, "token_bucket")
    assert c.passed == passed and c.name == "ceiling, token_bucket"
    (hours, algorithm, rate, prompt, max_tokens), = calls
    assert (hours, algorithm) == (0.5, "token_bucket")
    assert 6000 / (prompt + max_tokens) == 200.0  # the request size the expected figure assumes
    assert ARRIVAL(kind="poisson", rate=rate).rate * 60 > 200  # overload


@pytest.mark.parametrize("got, passed", [(19 * 1.0099, True), (19 * 0.9901, True), (19 * 1.0101, False),
                                         (19 * 0.9899, False), (19 * 1.0105, False), (20.0, False)])
def test_the_large_request_ceiling_is_one_request_less_per_window(monkeypatch, got, passed):
    """20/min (limit / cost, what the other algorithms sustain) is not the sliding window counter's ceiling."""
    calls = []
    monkeypatch.setattr(validation, "_throughput", lambda *a: calls.append(a) or got)
    (c,) = validation.check_ceiling_large_requests(0.5)
    assert c.passed == passed
    (hours, algorithm, rate, prompt, max_tokens), = calls
    cost = prompt + max_tokens
    assert algorithm == "sliding_window_counter" and (6000 - cost) / cost == 19.0
    assert ARRIVAL(kind="poisson", rate=rate).rate * 60 > 19


def _patient_spec(monkeypatch):
    specs = []
    monkeypatch.setattr(validation, "simulate", lambda spec, seed: specs.append(spec) or SimpleNamespace())
    monkeypatch.setattr(validation, "summarize", lambda r: {"throughput_rpm": 200.0})
    validation._throughput(0.5, "token_bucket", "230/min", 20, 10)
    return specs[0]


def test_the_ceiling_clients_are_patient_and_measured_after_the_warm_up(monkeypatch):
    """Throughput equals the refill rate only when refused requests come back: retries honour retry-after
    and never give up; the first 10 minutes (the bucket's initial burst) are left out."""
    spec = _patient_spec(monkeypatch)
    policy = spec.policies["patient"]
    assert policy.honor_retry_after and policy.max_attempts >= 10_000
    assert (policy.base, policy.cap) == (1.0, 30.0)
    assert spec.warmup == 600 and spec.drain == 0 and spec.duration == 0.5 * 3600
    limits = spec.catalog.limits("validation", validation.MODEL)
    assert (limits.rpm, limits.rpd, limits.tpm, limits.tpd) == (None, None, 6000, None)


def test_pacing_fails_on_a_refusal_or_on_nothing_done(monkeypatch):
    specs = []
    monkeypatch.setattr(validation, "simulate", lambda spec, seed: specs.append(spec) or SimpleNamespace())
    for summary, passed in [({"n429": 0, "ok": 10, "attempts": 10}, True), ({"n429": 1, "ok": 10, "attempts": 11},
                            False), ({"n429": 0, "ok": 0, "attempts": 0}, False), ({"n429": 0, "ok": 1, "attempts": 1},
                                                                                  True)]:
        monkeypatch.setattr(validation, "summarize", lambda r, s=summary: s)
        assert validation.check_pacing(0.5)[0].passed == passed, summary
    client = specs[0].clients[0]
    # 18/min of 300-token requests = 5 400 TPM: below the 6 000 ceiling
    assert client.prompt_tokens.value + client.max_tokens.value == 300 and specs[0].duration == 0.5 * 3600
    assert client.arrival.rate * 60 * 300 < 6000


def test_check_ceilings_runs_every_ceiling(monkeypatch):
    monkeypatch.setattr(validation, "_throughput", lambda *a: 19.0 if a[1] == "sliding_window_counter"
                        and a[3] == 200 else 200.0)
    monkeypatch.setattr(validation, "simulate", lambda spec, seed: SimpleNamespace())
    monkeypatch.setattr(validation, "summarize", lambda r: {"n429": 0, "ok": 1, "attempts": 1})
    names = [c.name for c in validation.check_ceilings(0.5)]
    assert names == [*(f"ceiling, {a}" for a in ALGORITHMS), "ceiling, sliding_window_counter, large requests",
                     "pacing below the ceiling"]


# --- the rate-limits page's examples ----------------------------------------------------------------------

def _spy_limitsets(monkeypatch):
    made = []
    real = validation.LimitSet

    def spy(limits, *a, **k):
        ls = real(limits, *a, **k)
        ls.calls = []
        for name in ("acquire", "check"):
            method = getattr(ls, name)
            setattr(ls, name, lambda *a, _m=method, _n=name: ls.calls.append((_n, *a)) or _m(*a))
        made.append(ls)
        return ls
    monkeypatch.setattr(validation, "LimitSet", spy)
    return made


def test_the_page_examples_are_the_pages_states(monkeypatch):
    """RPM 50 / TPM 200K, 100-token requests within a minute; RPD 14 400 / TPM 18 000 after 30 requests whose
    tokens leave 17 997 (the page's headers)."""
    made = _spy_limitsets(monkeypatch)
    checks = validation.check_reference_examples()
    assert all(c.passed for c in checks)
    rpm, rpd = made
    assert (rpm.limits.rpm, rpm.limits.tpm) == (50, 200_000) and rpm.limits.rpd is None
    assert (rpd.limits.rpd, rpd.limits.tpm) == (14_400, 18_000)
    # 100-token requests inside one minute, the first 50 admitted, then one more refused
    assert {c[1] for c in rpm.calls} == {100} and all(c[3] < 60 for c in rpm.calls)
    assert rpm.calls[-1][0] == "check" and sum(c[0] == "acquire" for c in rpm.calls) > 50
    assert [c[0] for c in rpd.calls] == ["acquire"] * 30 and all(c[3] == 0.0 for c in rpd.calls)
    assert validation.rate_limit_headers(rpd, 0.44)["x-ratelimit-limit-tokens"] == "18000"


def test_a_limit_set_refusing_by_tpm_fails_the_rpm_example(monkeypatch):
    real_check = validation.LimitSet.check

    def wrong_unit(self, *a, **k):
        d = real_check(self, *a, **k)
        return dataclasses.replace(d, refused=tuple("tpm" if u == "rpm" else u for u in d.refused))
    monkeypatch.setattr(validation.LimitSet, "check", wrong_unit)
    only_failed(validation.check_reference_examples(), "page example: RPM binds first")


@pytest.mark.parametrize("remaining, reset, passed", [
    ("14370", "2m59.56s", True), ("14370", "2m59.57s", True), ("14370", "2m59.55s", True),
    ("14370", "2m59.572s", False), ("14370", "2m59.548s", False), ("14371", "2m59.56s", False),
    ("14370", "3m0s", False)])
def test_the_rpd_reset_header_is_30_times_6_seconds_less_0_44(monkeypatch, remaining, reset, passed):
    """30 of 14 400/day refill in 30 x 86 400 / 14 400 = 180 s; at 0.44 s: 179.56 s ± 11 ms."""
    assert 30 * 86_400 / 14_400 - 0.44 == pytest.approx(179.56)
    monkeypatch.setattr(validation, "rate_limit_headers", lambda ls, now: {
        "x-ratelimit-remaining-requests": remaining, "x-ratelimit-reset-requests": reset})
    assert by_name(validation.check_reference_examples())["page example: RPD reset header"].passed == passed


# --- queueing laws ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("ratio, passed", [(1.0199, True), (0.9801, True), (1.0201, False), (0.9799, False),
                                           (1.021, False)])
def test_littles_law_tolerance_is_two_percent(monkeypatch, ratio, passed):
    """L is replaced by λW (λ: arrivals per second, W: mean time in system of the completed) times ``ratio``."""
    def in_system(rec, t0, t1):
        lam = (rec["created"] < t1).sum() / (t1 - t0)
        done = rec[(rec["created"] >= t0) & (rec["finished"] < t1)]
        return lam * float((done["finished"] - done["created"]).mean()) * ratio
    monkeypatch.setattr(validation, "_in_system", in_system)
    checks = validation.check_queueing_laws(0.5)
    assert by_name(checks)["Little's law L = λW"].passed == passed
    assert by_name(checks)["conservation of requests"].passed


def test_time_in_system_is_the_average_number_present():
    rec = pd.DataFrame({"created": [0.0, 10.0, 50.0, 90.0], "finished": [20.0, 30.0, np.nan, 95.0]})
    # inside [0, 100]: 20 + 20 + 50 (still there at the end) + 5 = 95 request-seconds
    assert validation._in_system(rec, 0.0, 100.0) == pytest.approx(0.95)
    # inside [10, 60]: 10 + 20 + 10 = 40 request-seconds over 50 s
    assert validation._in_system(rec, 10.0, 60.0) == pytest.approx(0.8)


def test_a_request_without_outcome_fails_conservation(monkeypatch):
    real = validation.summarize
    monkeypatch.setattr(validation, "summarize", lambda r: {**real(r), "offered": real(r)["offered"] + 1})
    only_failed(validation.check_queueing_laws(0.5), "conservation of requests")


# --- workloads --------------------------------------------------------------------------------------------

class _FakeArrival:
    def __init__(self, poisson=None, bursty=None):
        self._p, self._b = poisson, bursty
        self.calls = []

    def __call__(self, kind, rate, **kw):
        self.calls.append((kind, rate, kw))
        real = ARRIVAL(kind=kind, rate=rate, **kw)
        made = self._p if kind == "poisson" else self._b

        def times(rng, d):
            drawn = real.times(rng, d)  # the same draws from the shared generator: the later checks unchanged
            return made(rng, d) if made else drawn
        return SimpleNamespace(times=times)


def _counts_times(counts):
    return np.concatenate([i * 60 + (np.arange(c) + 0.5) * 60 / c for i, c in enumerate(counts)])


def _alternating_counts(lo, hi):
    """60 minutes' counts mean ± a (alternating), var(ddof=1) / mean within (lo, hi)."""
    for a in range(5, 80):
        for mu in range(200, 3000):
            r = a * a * 60 / (59 * mu)
            if lo < r < hi:
                return np.array([mu + a if i % 2 else mu - a for i in range(60)])
    raise AssertionError


@pytest.mark.parametrize("lo, hi, passed", [(1.095, 1.0999, True), (0.9001, 0.905, True), (1.101, 1.109, False),
                                            (0.89, 0.8999, False)])
def test_poisson_dispersion_tolerance_is_a_tenth(monkeypatch, lo, hi, passed):
    counts = _alternating_counts(lo, hi) if hi > 1 else None
    if counts is None:  # below 1: fewer spread
        for a in range(5, 80):
            mu = next((m for m in range(200, 5000) if lo < a * a * 60 / (59 * m) < hi), None)
            if mu:
                counts = np.array([mu + a if i % 2 else mu - a for i in range(60)])
                break
    assert lo < counts.var(ddof=1) / counts.mean() < hi
    monkeypatch.setattr(validation, "arrival", _FakeArrival(poisson=lambda rng, d: _counts_times(counts)))
    c = by_name(validation.check_workloads(1.0))["Poisson counts: dispersion"]
    assert c.passed == passed and c.measured.endswith("over 60 minutes")


def test_evenly_spaced_arrivals_fail_both_poisson_checks(monkeypatch):
    monkeypatch.setattr(validation, "arrival", _FakeArrival(poisson=lambda rng, d: np.arange(0.25, d, 0.5)))
    only_failed(validation.check_workloads(4.0), "Poisson counts: dispersion", "Poisson gaps: exponential")


def test_poisson_arrivals_10_percent_fast_fail_the_ks_test(monkeypatch):
    fast = ARRIVAL(kind="poisson", rate=2.2)
    monkeypatch.setattr(validation, "arrival", _FakeArrival(poisson=fast.times))
    checks = by_name(validation.check_workloads(4.0))
    assert not checks["Poisson gaps: exponential"].passed  # a rate the check does not expect: gaps 9 % short
    assert checks["lognormal sizes: median and p95"].passed and checks["bursty gaps: coefficient of variation"].passed


@pytest.mark.parametrize("target, passed", [(0.0105, True), (0.0095, False), (0.0108, True), (0.0099, False)])
def test_the_ks_check_rejects_below_p_one_percent(monkeypatch, target, passed):
    """Exponential gaps rescaled until scipy's KS p-value against rate 2 lands just above/below 0.01."""
    base = np.random.default_rng(5).exponential(0.5, 4_000)
    lo, hi = 1.0, 1.2
    for _ in range(30):
        mid = (lo + hi) / 2
        p = stats.kstest(base * mid, "expon", args=(0, 0.5)).pvalue
        lo, hi = (mid, hi) if p > target else (lo, mid)
    p = stats.kstest(base * lo, "expon", args=(0, 0.5)).pvalue
    assert abs(p - target) < 2e-4 and (p > 0.01) == passed
    times = np.concatenate([[0.0], np.cumsum(base * lo)])
    monkeypatch.setattr(validation, "arrival", _FakeArrival(poisson=lambda rng, d: times))
    assert by_name(validation.check_workloads(1.0))["Poisson gaps: exponential"].passed == passed


class _FakeDist:
    def __init__(self, med, p95, calls):
        self.med, self.p95, self.calls = med, p95, calls

    def __call__(self, **kw):
        self.calls.append(kw)
        return SimpleNamespace(sample=lambda rng, n: np.array([self.med] * 51 + [self.p95] * 50, dtype=float))


@pytest.mark.parametrize("med, p95, passed", [
    (800 * 1.0199, 3000, True), (800 * 0.9801, 3000, True), (800 * 1.0201, 3000, False), (800 * 0.9799, 3000, False),
    (800 * 1.021, 3000, False), (800, 3000 * 1.0199, True), (800, 3000 * 0.9801, True), (800, 3000 * 1.0201, False),
    (800, 3000 * 0.9799, False), (800, 3000 * 1.021, False)])
def test_lognormal_sizes_within_two_percent_of_median_800_and_p95_3000(monkeypatch, med, p95, passed):
    calls = []
    monkeypatch.setattr(validation, "Dist", _FakeDist(med, p95, calls))
    c = by_name(validation.check_workloads(1.0))["lognormal sizes: median and p95"]
    assert c.passed == passed
    assert calls == [{"dist": "lognormal", "median": 800, "p95": 3000}]


def _gamma_like(cv, rate, duration):
    """Gaps with coefficient of variation exactly ``cv`` (9 short, 1 long) and ``rate`` arrivals per second."""
    k = 9
    s = np.array([-1 / math.sqrt(k)] * k + [math.sqrt(k)])  # mean 0, std 1
    n = int(rate * duration) // 10 * 10
    gaps = np.tile(1 + cv * s, n // 10) * (duration * 0.999 / n)
    return np.concatenate([[0.0], np.cumsum(gaps)])[:n], n


@pytest.mark.parametrize("cv, rate_f, passed", [
    (2 * 1.049, 1.0, True), (2 * 0.951, 1.0, True), (2 * 1.051, 1.0, False), (2 * 0.949, 1.0, False),
    (2 * 1.054, 1.0, False), (2.0, 1.029, True), (2.0, 0.975, True), (2.0, 1.032, False), (2.0, 0.968, False)])
def test_bursty_gaps_cv_2_within_5_percent_and_rate_within_3(monkeypatch, cv, rate_f, passed):
    duration = 3600.0

    def bursty(rng, d):
        t, n = _gamma_like(cv, 2.0 * rate_f, d)
        return t
    fake = _FakeArrival(bursty=bursty)
    monkeypatch.setattr(validation, "arrival", fake)
    c = by_name(validation.check_workloads(duration / 3600))["bursty gaps: coefficient of variation"]
    assert c.passed == passed, c.measured
    assert ("bursty", 2.0, {"burstiness": 2.0}) in fake.calls and ("poisson", 2.0, {}) in fake.calls


def test_every_workload_check_is_reported():
    assert [c.name for c in validation.check_workloads(1.0)] == [
        "Poisson counts: dispersion", "Poisson gaps: exponential", "lognormal sizes: median and p95",
        "bursty gaps: coefficient of variation"]


# --- trace replay -----------------------------------------------------------------------------------------

def test_a_replay_that_moves_or_drops_requests_fails(monkeypatch, tmp_path):
    real = validation.simulate

    def shifted(spec, seed):
        r = real(spec, seed)
        r.records["created"] = r.records["created"] + 0.001
        return r

    def resized(spec, seed):
        r = real(spec, seed)
        r.records["prompt_tokens"] = r.records["prompt_tokens"] + 1
        return r

    def dropped(spec, seed):
        return SimpleNamespace(records=real(spec, seed).records.iloc[:0])

    (ok,) = validation.check_trace(tmp_path)
    assert ok.passed and ok.measured == "200 requests, identical: True"
    trace = pd.read_csv(tmp_path / "validation_trace.csv")
    assert len(trace) == 200 and trace["timestamp"].between(0, 600).all() and (trace["max_tokens"] == 100).all()
    for broken in (shifted, resized, dropped):
        monkeypatch.setattr(validation, "simulate", broken)
        assert not validation.check_trace(tmp_path)[0].passed, broken.__name__


# --- window algorithms: 30 per 60 s under saturating demand -----------------------------------------------

def test_the_window_checks_report_the_closed_form_figures():
    checks = by_name(validation.check_windows_vs_bucket())
    assert checks["fixed window: 2x limit across a boundary"].measured == "60"
    assert checks["token bucket: ≤ capacity + rate·T"].measured == "holds: True; max in 60 s = 60 (≤ 60)"
    assert checks["sliding log: ≤ limit in every window"].measured == "30"
    assert all(c.passed for c in checks.values())


def test_the_token_bucket_bound_is_checked_on_the_intervals_it_names(monkeypatch):
    lengths = []
    real = validation._max_in_interval
    monkeypatch.setattr(validation, "_max_in_interval", lambda t, n: lengths.append(n) or real(t, n))
    validation.check_windows_vs_bucket()
    # the fixed window's 60 s, the bound's six intervals, the bucket's 60 s, the log's (60 s less an instant)
    assert lengths[:8] == [60, 1, 5, 30, 60, 120, 300, 60] and lengths[8:] == [60 - 1e-6] * 2


@pytest.mark.parametrize("algorithm, make, failing", [
    ("fixed_window", lambda real: real["sliding_log"], "fixed window: 2x limit across a boundary"),
    ("token_bucket", lambda real: lambda limit, window: real["token_bucket"](limit, window / 1.02),
     "token bucket: ≤ capacity + rate·T"),
    ("token_bucket", lambda real: lambda limit, window: real["token_bucket"](limit + 1, window * (limit + 1) / limit),
     "token bucket: ≤ capacity + rate·T"),
    ("sliding_log", lambda real: lambda limit, window: real["sliding_log"](limit, window * 0.99),
     "sliding log: ≤ limit in every window"),
])
def test_a_wrong_window_algorithm_fails_its_check(monkeypatch, algorithm, make, failing):
    """A fixed window that never resets, a bucket refilling 2 % fast (or one token too deep), a log whose window is
    1 % short (or long: it admits fewer than its limit)."""
    real = dict(ALGORITHMS)
    monkeypatch.setitem(ALGORITHMS, algorithm, make(real))
    only_failed(validation.check_windows_vs_bucket(), failing)


def test_max_in_interval_counts_half_open_intervals():
    assert validation._max_in_interval(np.array([]), 60.0) == 0
    assert validation._max_in_interval(np.array([0.0, 30.0, 60.0, 100.0]), 60.0) == 2
    assert validation._max_in_interval(np.array([0.0, 30.0, 60.0, 100.0]), 61.0) == 3
    assert validation._max_in_interval(np.array([5.0]), 1.0) == 1
    t = validation._admissions("sliding_log", 3, 10.0, 25.0, 1.0)
    assert list(t) == [0.0, 1.0, 2.0, 10.0, 11.0, 12.0, 20.0, 21.0, 22.0]  # demand from 0 by default


def test_the_window_figure_shows_each_algorithm_against_the_bound(monkeypatch, tmp_path):
    import warnings
    figs = []
    monkeypatch.setattr(validation, "save", lambda fig, path: figs.append(fig) or path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns of contradictory arguments (a grid off with its style)
        assert validation.plot_windows_vs_bucket(tmp_path) == [tmp_path / "windows_vs_bucket.png"]
    (fig,) = figs
    assert tuple(fig.get_size_inches()) == (8, 4.5)
    (ax,) = fig.axes
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert set(lines) == {*ALGORITHMS, "capacity + rate·(t − start)"}
    for a in ALGORITHMS:
        x, y = lines[a].get_xdata(), lines[a].get_ydata()
        assert lines[a].get_drawstyle() == "steps-post" and list(y) == list(range(1, len(x) + 1))
        assert 50 <= x[0] < 50.1 and x[-1] < 240
    # from t = 50 to 240: 30 at once, then 0.5/s for the bucket; 4 windows of 30 for the fixed window and the log
    assert len(lines["token_bucket"].get_xdata()) in (124, 125, 126)
    assert len(lines["fixed_window"].get_xdata()) == 120 and len(lines["sliding_log"].get_xdata()) == 120
    bound = lines["capacity + rate·(t − start)"]
    assert list(bound.get_xdata()) == [50, 240] and list(bound.get_ydata()) == [30, 30 + 0.5 * (240 - 50)]
    assert bound.get_linestyle() == "--" and bound.get_linewidth() == 0.8 and bound.get_color() == "k"
    assert ax.get_xlabel() == "time (s)" and ax.get_ylabel() == "admitted (cumulative)"
    assert ax.get_title() == "Saturating demand from t = 50 s against 30 per 60 s"
    legend = ax.get_legend()
    assert legend is not None and legend._loc == 2 and legend.get_texts()[0].get_fontsize() == 8
    grid = ax.get_xgridlines()[0]
    assert grid.get_visible() and grid.get_alpha() == 0.3


# --- report files and tables ------------------------------------------------------------------------------

_CHECKS = [Check("a", "src a", "1", "1", True), Check("bb", "src b", "2", "3", False)]


def test_write_report_writes_the_table_under_a_new_directory(monkeypatch, tmp_path):
    monkeypatch.setattr(validation, "plot_windows_vs_bucket", lambda out: [])
    out = tmp_path / "x" / "y"
    assert validation.write_report(_CHECKS, out) == []
    assert (out / "validation.md").read_text() == (
        "| check | source | expected | measured | result |\n| --- | --- | --- | --- | --- |\n"
        "| a | src a | 1 | 1 | pass |\n| bb | src b | 2 | 3 | FAIL |\n")
    assert validation._write_text(tmp_path / "t.md", "x") == [tmp_path / "t.md"]


def test_format_checks_aligns_the_table_and_counts_the_passes():
    assert validation.format_checks(_CHECKS) == (
        "check  source  expected  measured  result\n"
        "a      src a   1         1         pass\n"
        "bb     src b   2         3         FAIL\n"
        "1/2 checks passed\n")


class _FakePool:
    made = []

    def __init__(self, jobs=None):
        self.jobs, self.tasks = jobs, []
        _FakePool.made.append(self)

    def __enter__(self):
        return self

    def __exit__(self, *a):
        return None

    def imap(self, fn, tasks):
        self.tasks = list(tasks)
        return [(n, [Check(str(n), "", "", "", True)]) for n in reversed(range(len(self.tasks)))]


def test_run_checks_horizons_and_order(monkeypatch):
    """Full report: 3 h (service speeds 1 h, n ≈ 6 000 at 100/min; workloads 24 h); --short: 0.5 h."""
    _FakePool.made = []
    monkeypatch.setattr(validation, "Pool", _FakePool)
    checks = validation.run_checks()
    (pool,) = _FakePool.made
    assert pool.jobs == 1 and [c.name for c in checks] == [str(n) for n in range(len(pool.tasks))]
    hours = {t[0].__name__: t[1:] for t in pool.tasks}
    assert hours["check_queueing_laws"] == (3.0,) and hours["check_workloads"] == (24.0,)
    assert hours["check_service_speeds"] == (1.0,) and hours["fidelity_checks"] == (3.0,)
    assert [t[1:] for t in pool.tasks if t[0] is validation.check_ceiling] == [(3.0, a) for a in ALGORITHMS]
    given = _FakePool(2)
    _FakePool.made = []
    validation.run_checks(short=True, pool=given)
    assert _FakePool.made == []  # the given pool, not a new one
    hours = {t[0].__name__: t[1:] for t in given.tasks}
    assert hours["check_service_speeds"] == (0.5 / 3,) and hours["check_workloads"] == (4.0,)


class _TTY(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("progress, tty, shown", [(False, True, False), (True, False, True), (None, True, True),
                                                  (None, False, False), ("default", True, False)])
def test_run_checks_progress_bar(monkeypatch, progress, tty, shown):
    """No bar by default (the test suite, a library call); None: when stderr is a terminal."""
    err = _TTY() if tty else io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    pool = _FakePool()
    if progress == "default":
        validation.run_checks(short=True, pool=pool)
    else:
        validation.run_checks(short=True, pool=pool, progress=progress)
    n = len(pool.tasks)
    assert (f"{n}/{n}" in err.getvalue()) == shown, err.getvalue()


# --- output speeds ----------------------------------------------------------------------------------------

def _speed_records(speed, n, outcome_noise=True):
    ok = pd.DataFrame({"outcome": "ok", "completion_tokens": [300.0] * n, "completion_time": [300.0 / speed] * n})
    bad = pd.DataFrame({"outcome": ["timeout"] * 5, "completion_tokens": [300.0] * 5, "completion_time": [1e-6] * 5})
    return pd.concat([ok, bad] if outcome_noise else [ok], ignore_index=True)


@pytest.mark.parametrize("k, passed", [(0.99, True), (-0.99, True), (1.01, False), (-1.01, False), (1.05, False)])
def test_output_speed_tolerance_is_4_standard_errors(monkeypatch, k, passed):
    """n = 400 successes: the tolerance is 4 x speed_cv / 20; the failed attempts are not counted."""
    table = validation.load_service_table()
    model = next(m for m, p in table.items() if p.output_tps)
    monkeypatch.setattr(validation, "load_service_table", lambda: {model: table[model]})
    tps, cv = table[model].output_tps, table[model].speed_cv
    specs = []
    monkeypatch.setattr(validation, "simulate", lambda spec, seed: specs.append(spec) or SimpleNamespace(
        records=_speed_records(tps * (1 + k * 4 * cv / 20), 400)))
    (c,) = validation.check_service_speeds(0.5)
    assert c.passed == passed, c.measured
    assert f"±{4 * cv / 20:.1%} (4 s.e., n = 400)" in c.expected
    (spec,) = specs
    lim = spec.catalog.limits(spec.org.tier, model)
    assert (lim.rpm, lim.rpd, lim.tpm, lim.tpd) == (None, None, None, None) and spec.duration == 1800


def test_an_output_speed_exactly_at_the_tolerance_passes(monkeypatch):
    """speed_cv 5/16, n = 400: tolerance 4 x 0.3125 / 20 = 1/16 exactly; 272 tok/s against 256 is +1/16."""
    monkeypatch.setattr(validation, "load_service_table", lambda: {
        "m": SimpleNamespace(output_tps=256.0, speed_cv=0.3125)})
    for speed, passed in [(272.0, True), (240.0, True), (272.0 + 2 ** -40 * 256, False)]:
        monkeypatch.setattr(validation, "simulate", lambda spec, seed, v=speed: SimpleNamespace(
            records=_speed_records(v, 400)))
        (c,) = validation.check_service_speeds(0.5)
        assert c.passed == passed, (speed, c.measured)


def test_a_ks_p_value_of_exactly_one_percent_fails(monkeypatch):
    """The check demands p > 0.01: the p-value scipy reports is replaced by 0.01 and by the next float up."""
    for p, passed in [(0.01, False), (math.nextafter(0.01, 1), True)]:
        monkeypatch.setattr(validation, "stats", SimpleNamespace(kstest=lambda *a, v=p, **k: SimpleNamespace(
            statistic=0.01, pvalue=v)))
        assert by_name(validation.check_workloads(1.0))["Poisson gaps: exponential"].passed == passed


# --- fidelity: quantile intervals -------------------------------------------------------------------------

def test_quantile_ci_is_the_order_statistics_at_np_pm_z_sqrt_npq():
    z = stats.norm.ppf(0.995)
    assert fidelity.Z995 == pytest.approx(z, rel=1e-12)
    x = np.arange(100.0)[::-1]
    # p = 0.5: 50 ± 2.576 x 5 -> order statistics 37 and 63; p = 0.9: 90 ± 2.576 x 3 -> 82 and 98
    assert fidelity.quantile_ci(x, 0.5) == (37.0, 63.0)
    assert fidelity.quantile_ci(x, 0.9) == (82.0, 98.0)
    assert fidelity.quantile_ci(x, 0.5, z=1.0) == (45.0, 55.0)
    assert fidelity.quantile_ci([5.0, 1.0, 3.0], 0.5) == (1.0, 5.0)  # clipped to the sample
    assert fidelity.quantile_ci([2.0], 0.9) == (2.0, 2.0)
    assert all(math.isnan(v) for v in fidelity.quantile_ci([], 0.5))
    assert fidelity._inside(x, 0.5, 37.0)[0] and fidelity._inside(x, 0.5, 63.0)[0]
    assert not fidelity._inside(x, 0.5, 36.9)[0] and not fidelity._inside(x, 0.5, 63.1)[0]
    assert fidelity._inside(x, 0.5, 40.0)[1] == "[37.000, 63.000]"


# --- fidelity: the usage identity and the client's wait ----------------------------------------------------

def _usage(gaps, outcome="ok"):
    n = len(gaps)
    return pd.DataFrame({"outcome": [outcome] * n, "prompt_time": [0.0] * n, "completion_time": [0.0] * n,
                         "total_time": list(gaps)})


@pytest.mark.parametrize("gaps, passed", [([0.0], True), ([0.9e-9, 0.0], True), ([1e-9], False), ([1.05e-9], False),
                                          ([0.0, -0.5], False), ([], False)])
def test_total_time_identity_is_exact(gaps, passed):
    c = fidelity.check_total_time_identity(_usage(gaps))
    assert c.passed == passed
    assert c.measured == f"{max(map(abs, gaps), default=0.0):.2e} s over {len(gaps)} requests"


def test_a_total_time_that_counts_queue_time_fails_the_identity(monkeypatch):
    rec = fidelity._timed_records(0.05)
    rec = rec.assign(total_time=rec["total_time"] + rec["queue_time"])
    assert not fidelity.check_total_time_identity(rec).passed
    failed = rec.assign(outcome="error")
    assert not fidelity.check_total_time_identity(failed).passed  # no success: nothing shown


def _lognormal_quantiles(median, p90, n=2000):
    sigma = math.log(p90 / median) / stats.norm.ppf(0.9)
    return median * np.exp(sigma * stats.norm.ppf((np.arange(n) + 0.5) / n))


def _waits(rtt):
    return pd.DataFrame({"latency": rtt + 0.3, "queue_time": [0.1] * len(rtt), "total_time": [0.2] * len(rtt)})


def test_client_wait_needs_the_round_trips_median_and_p90():
    p = validation.load_service_table()[fidelity.TIMED_MODEL]
    good = _lognormal_quantiles(p.rtt_median, p.rtt_p90)
    assert fidelity.check_client_wait(_waits(good)).passed
    assert not fidelity.check_client_wait(_waits(good * 1.2)).passed
    tail = np.where(good > p.rtt_median * 1.05, good * 1.3, good)  # the median kept, the p90 30 % long
    assert not fidelity.check_client_wait(_waits(tail)).passed
    head = np.where(good < p.rtt_p90 * 0.95, good * 0.7, good)  # the p90 kept, the median 30 % short
    assert not fidelity.check_client_wait(_waits(head)).passed
    none = fidelity.check_client_wait(_waits(good[:0]))
    assert not none.passed and none.measured == "none"


def _queue_samples():
    with open(DATA / "queue_time_samples.csv") as f:
        real = np.array([float(r["queue_time"]) for r in csv.DictReader(f)])
    return float(np.median(real)), float(np.percentile(real, 90))


def test_queue_times_drawn_20_percent_long_fail_the_queue_check():
    median, p90 = _queue_samples()
    good = _lognormal_quantiles(median, p90)
    assert fidelity.check_queue_defaults(pd.DataFrame({"queue_time": good})).passed
    assert not fidelity.check_queue_defaults(pd.DataFrame({"queue_time": good * 1.2})).passed
    tail = np.where(good > median * 1.05, good * 1.3, good)
    assert not fidelity.check_queue_defaults(pd.DataFrame({"queue_time": tail})).passed
    none = fidelity.check_queue_defaults(pd.DataFrame({"queue_time": good[:0]}))
    assert not none.passed and none.measured == "none"


def test_a_simulated_queue_20_percent_long_fails_only_the_queue_checks(monkeypatch):
    real = fidelity.service_defaults
    monkeypatch.setattr(fidelity, "service_defaults", lambda: {**real(), "queue_p90": real()["queue_p90"] * 1.2})
    c = fidelity.check_queue_lognormal_fit()
    assert not c.passed
    monkeypatch.setattr(fidelity, "service_defaults", lambda: {**real(), "queue_median": real()["queue_median"] * 1.2})
    assert not fidelity.check_queue_lognormal_fit().passed
    monkeypatch.setattr(fidelity, "service_defaults", real)
    median, p90 = _queue_samples()
    c = fidelity.check_queue_lognormal_fit()
    med, q90 = (float(v.split()[0]) for v in c.measured.split(", "))
    assert c.passed and med == pytest.approx(median, abs=5e-4) and q90 == pytest.approx(p90, abs=5e-4)


# --- fidelity: prefill and output speed samples ----------------------------------------------------------

def _prefill(monkeypatch, rows, params):
    monkeypatch.setattr(fidelity, "data_rows", lambda name: [
        {"model": m, "prompt_tokens": str(n), "cached_tokens": c, "prompt_time": str(t), "used_in_fit": u}
        for m, n, c, t, u in rows])
    monkeypatch.setattr(fidelity, "load_service_table", lambda: {
        m: SimpleNamespace(prefill_fixed=f, prefill_tps=tps) for m, (f, tps) in params.items()})
    return fidelity.check_prefill_samples()


def test_prefill_exact_samples_read_ratio_one(monkeypatch):
    c = _prefill(monkeypatch, [("a", 200, "", 2.0, "yes"), ("a", 300, "100", 2.0, "yes"),
                               ("a", 100, "0", 50.0, "no")], {"a": (0.0, 100.0)})
    assert c.passed and c.measured == "worst ratio x1.00; totals within 0.00%"


@pytest.mark.parametrize("model_s, passed", [(2.0, True), (2.5, False), (0.4, False), (0.5, True)])
def test_prefill_each_sample_within_a_factor_2(monkeypatch, model_s, passed):
    # a second, large sample makes the model's total exact: only the ratio decides
    rows = [("a", model_s * 100, "0", 1.0, "yes"), ("a", 100_000, "0", 1000.0 + model_s - 1.0, "yes")]
    c = _prefill(monkeypatch, rows, {"a": (0.0, 100.0)})
    assert c.passed == passed, c.measured
    assert c.measured.startswith(f"worst ratio x{max(model_s, 1 / model_s):.2f}")


@pytest.mark.parametrize("err, passed", [(0.0099, True), (-0.0099, True), (0.0101, False), (-0.0101, False),
                                         (0.0105, False)])
def test_prefill_each_models_total_within_1_percent(monkeypatch, err, passed):
    rows = [("a", 100, "0", 1.0, "yes"), ("b", 100, "0", 1.0 / (1 + err), "yes")]
    c = _prefill(monkeypatch, rows, {"a": (0.0, 100.0), "b": (0.0, 100.0)})
    assert c.passed == passed, c.measured


def test_a_prefill_20_percent_slow_fails_on_the_real_samples(monkeypatch):
    table = validation.load_service_table()
    assert fidelity.check_prefill_samples().passed
    monkeypatch.setattr(fidelity, "load_service_table", lambda: {
        m: dataclasses.replace(p, prefill_tps=p.prefill_tps / 1.2, prefill_fixed=p.prefill_fixed * 1.2)
        for m, p in table.items()})
    assert not fidelity.check_prefill_samples().passed


# real output speeds of groq-real-responses.md section 1: (model, tokens, seconds)
REAL_SPEEDS = [("openai/gpt-oss-120b", 3222, 6.725), ("openai/gpt-oss-20b", 126, 0.124),
               ("qwen/qwen3-32b", 839, 2.867), ("llama-3.3-70b-versatile", 275, 1.0),
               ("llama-3.3-70b-versatile", 528, 1.0)]


def _z(speed, tps, cv):
    """z of a speed under the lognormal of mean ``tps``, coefficient of variation ``cv``."""
    sigma = math.sqrt(math.log1p(cv * cv))
    return (math.log(speed / tps) + sigma * sigma / 2) / sigma


def test_the_real_output_speeds_worst_z(monkeypatch):
    assert fidelity.OUTPUT_SAMPLES == REAL_SPEEDS
    table = validation.load_service_table()
    zs = [(_z(t / s, table[m].output_tps, table[m].speed_cv), m, t / s) for m, t, s in REAL_SPEEDS]
    worst = max(zs, key=lambda z: abs(z[0]))
    c = fidelity.check_output_speed_samples()
    assert c.passed and c.measured == f"worst z = {worst[0]:+.2f} ({worst[1]} {worst[2]:.0f} t/s vs " \
                                      f"{table[worst[1]].output_tps:g})"
    monkeypatch.setattr(fidelity, "Z995", abs(worst[0]))  # exactly at the edge: inside
    assert fidelity.check_output_speed_samples().passed
    monkeypatch.setattr(fidelity, "Z995", abs(worst[0]) * 0.999)
    assert not fidelity.check_output_speed_samples().passed


def test_the_worst_z_is_the_first_largest(monkeypatch):
    """Two samples at the mean speed's median (z = sigma / 2 each, below 1): the first one is reported."""
    monkeypatch.setattr(fidelity, "OUTPUT_SAMPLES", [("m", 100, 1.0), ("n", 100, 1.0)])
    monkeypatch.setattr(fidelity, "load_service_table", lambda: {
        "m": SimpleNamespace(output_tps=100.0, speed_cv=0.32), "n": SimpleNamespace(output_tps=100.0, speed_cv=0.32)})
    c = fidelity.check_output_speed_samples()
    assert c.passed and c.measured == f"worst z = {_z(100.0, 100.0, 0.32):+.2f} (m 100 t/s vs 100)"


@pytest.mark.parametrize("factor", [3.0, 1 / 3.0])
def test_a_model_three_times_off_its_real_speed_fails(monkeypatch, factor):
    table = validation.load_service_table()
    monkeypatch.setattr(fidelity, "load_service_table", lambda: {
        m: dataclasses.replace(p, output_tps=p.output_tps * factor) if m == "qwen/qwen3-32b" else p
        for m, p in table.items()})
    c = fidelity.check_output_speed_samples()
    assert not c.passed and "qwen/qwen3-32b" in c.measured


# --- fidelity: Groq's real errors and headers -------------------------------------------------------------

ERROR_CHECKS = ["429 'try again in' of the real TPM example", "413 request too large",
                "reset headers as Go durations"]


def test_the_error_examples_are_the_references():
    checks = fidelity.check_error_examples()
    assert [c.name for c in checks] == ERROR_CHECKS and all(c.passed for c in checks)


@pytest.mark.parametrize("wait, used, passed", [("4.77", "5034", True), ("4.779", "5034", True),
                                                ("4.761", "5034", True), ("4.781", "5034", False),
                                                ("4.7805", "5034", False), ("4.759", "5034", False),
                                                ("4.78", "5035", False)])
def test_the_429_wait_is_4_77_s_within_10_ms(monkeypatch, wait, used, passed):
    """(5 034 + 1 443 − 6 000) / 100 tokens per second = 4.77 s."""
    assert (5034 + 1443 - 6000) / (6000 / 60) == pytest.approx(4.77)
    real = fidelity.rate_limit_error

    def fake(ls, model, *a, **k):
        err = real(ls, model, *a, **k)
        if err.status != 429:
            return err
        msg = (f"Rate limit reached for model `{model}` in organization `org_x` on tokens per minute (TPM): "
               f"Limit 6000, Used {used}, Requested 1443. Please try again in {wait}s. Need more tokens?")
        return SimpleNamespace(status=429, body={"error": {"message": msg}})
    monkeypatch.setattr(fidelity, "rate_limit_error", fake)
    checks = fidelity.check_error_examples()
    assert by_name(checks)[ERROR_CHECKS[0]].passed == passed
    assert by_name(checks)[ERROR_CHECKS[1]].passed and by_name(checks)[ERROR_CHECKS[2]].passed


@pytest.mark.parametrize("status, text, passed", [
    (413, "Limit 12000, Requested 14137, please reduce your message size", True),
    (429, "Limit 12000, Requested 14137, please reduce your message size", False),
    (413, "Limit 12000, Requested 14138, please reduce your message size", False)])
def test_the_413_needs_the_status_and_the_message(monkeypatch, status, text, passed):
    real = fidelity.rate_limit_error

    def fake(ls, model, org, tokens, *a, **k):
        if tokens != 14137:
            return real(ls, model, org, tokens, *a, **k)
        return SimpleNamespace(status=status, body={"error": {"message": f"Request too large: {text}"}})
    monkeypatch.setattr(fidelity, "rate_limit_error", fake)
    only_failed(fidelity.check_error_examples(), *([] if passed else [ERROR_CHECKS[1]]))


def test_the_header_example_is_the_captures_state(monkeypatch):
    """The §4 capture: remaining-requests 998 and remaining-tokens 7 927 (of 8 000 after 73 tokens), and its
    resets read from that state: 2 of 1 000 requests a day back in 2 x 86.4 s, 72.93 of 8 000 tokens a minute
    back in 547 ms."""
    made = []
    real = fidelity.LimitSet
    monkeypatch.setattr(fidelity, "LimitSet", lambda limits: made.append(real(limits)) or made[-1])
    fidelity.check_error_examples()
    h = fidelity.rate_limit_headers(made[-1], 0.0)
    assert h["x-ratelimit-remaining-requests"] == "998" and h["x-ratelimit-remaining-tokens"] == "7927"
    h = fidelity.rate_limit_headers(made[-1], 0.0005)
    assert (h["x-ratelimit-reset-requests"], h["x-ratelimit-reset-tokens"]) == ("2m52.8s", "547ms")
    assert made[0].limits.tpm == 6000 and fidelity.rate_limit_headers(made[0], 0.0)[
        "x-ratelimit-remaining-tokens"] == str(6000 - 5034)


@pytest.mark.parametrize("broken", ["format", "remaining", "reset", "hour"])
def test_a_wrong_go_duration_or_count_fails_the_header_check(monkeypatch, broken):
    if broken == "format":  # the headers' own durations rounded to whole seconds
        import sim.headers
        real = sim.headers.format_reset
        monkeypatch.setattr(sim.headers, "format_reset", lambda s: real(math.ceil(s)))
    elif broken == "hour":
        real = fidelity.format_reset
        monkeypatch.setattr(fidelity, "format_reset", lambda s: real(math.ceil(s)))
    else:
        real = fidelity.rate_limit_headers
        key, value = {"remaining": ("x-ratelimit-remaining-requests", "999"),
                      "reset": ("x-ratelimit-reset-tokens", "548ms")}[broken]
        monkeypatch.setattr(fidelity, "rate_limit_headers", lambda ls, now: {**real(ls, now), key: value})
    only_failed(fidelity.check_error_examples(), ERROR_CHECKS[2])


def test_fidelity_checks_report_every_check():
    names = [c.name for c in fidelity.fidelity_checks(0.05)]
    assert names == ["total_time = prompt_time + completion_time", "client wait = rtt + queue_time + total_time",
                     "queue_time median and p90", "queue lognormal quantiles", "prefill vs real prompt_time samples",
                     "real output speeds vs speed distribution", *ERROR_CHECKS]


def test_timed_records_are_first_attempt_successes_without_limits(monkeypatch):
    specs = []
    real = fidelity.simulate
    monkeypatch.setattr(fidelity, "simulate", lambda spec, seed: specs.append(spec) or real(spec, seed))
    rec = fidelity._timed_records(0.05)
    assert len(rec) and (rec["outcome"] == "ok").all() and (rec["attempts"] == 1).all()
    (spec,) = specs
    lim = spec.catalog.limits(spec.org.tier, fidelity.TIMED_MODEL)
    assert (lim.rpm, lim.rpd, lim.tpm, lim.tpd) == (None, None, None, None) and spec.duration == 0.05 * 3600
