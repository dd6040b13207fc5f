"""Fit one model's service times from the ``usage`` of its answered requests (scipy), with 95 % CIs.

* output speed: ``completion_tokens / completion_time`` per request; its mean is the simulator's
  ``output_tps`` (the speed factor has mean 1) and its lognormal shape gives ``speed_cv``;
* prefill: ``prompt_time = fixed + prompt_tokens * slope`` by least squares weighted for noise proportional
  to the time (a per-request speed factor); the simulator's prompt time is
  ``(prefill_fixed + prompt_tokens / prefill_tps) / S``, so ``prefill_tps = E[1/S] / slope`` and
  ``prefill_fixed = fixed / E[1/S]`` (``E[1/S] = 1 + cv^2`` for its mean-1 lognormal speed factor ``S``) make
  its mean prompt time match the observed line;
* queue_time: lognormal by maximum likelihood (``loc = 0``); goodness of fit by Anderson-Darling on the logs
  (parameters estimated, so the plain KS table would be too lenient);
* network round trip: ``(t_recv - t_send) - queue_time - total_time`` of answered requests (Groq's
  ``total_time`` is prompt + completion; queue_time is apart), and ``t_recv - t_send`` of refused ones (not
  estimated on whole-second times, or with a zero median and a positive p90: :func:`_fit_rtt`);
* speech-to-text (a model whose requests are all transcriptions, whose responses carry no usage): the
  whole response time ``t_recv - t_send = fixed + audio_seconds * slope`` by the same weighted least squares;
  the simulator's audio time is ``audio_seconds / (audio_speed_factor * S)``, so
  ``audio_speed_factor = E[1/S] / slope`` with the model's configured ``speed_cv`` (a transcription shows no
  per-request speed); the fixed part is network + queue + prefill, which such a log cannot tell apart.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from ..service import SPEED_CV_MAX, Z90, load_service_table, service_defaults
from ..recorder import AUDIO_ENDPOINTS
from .evidence import finite, successes


@dataclass
class Figure:
    """One estimated number: value, 95 % confidence interval (NaN when the sample cannot give one), sample
    count."""
    value: float
    low: float
    high: float
    n: int

    def text(self, fmt: str = ".4g", unit: str = "") -> str:
        if math.isnan(self.low) or math.isnan(self.high):
            return f"{self.value:{fmt}}{unit} (n={self.n}: too few for a 95% CI)"
        return f"{self.value:{fmt}}{unit} (95% CI {self.low:{fmt}}-{self.high:{fmt}}, n={self.n})"


@dataclass
class ServiceFit:
    model: str
    n_answered: int
    kind: str = "chat"                        # "stt": fitted from transcriptions' response times
    output_tps: Figure | None = None
    output_median: Figure | None = None
    speed_cv: float | None = None
    prefill_slope: Figure | None = None       # seconds per prompt token
    prefill_fixed: Figure | None = None       # seconds
    prefill_tps: float | None = None          # what the simulator should use
    audio_slope: Figure | None = None         # seconds of response per second of audio (transcriptions)
    audio_fixed: Figure | None = None         # seconds: network + queue + prefill of a transcription
    audio_speed_factor: float | None = None   # what the simulator should use
    queue_median: Figure | None = None
    queue_p90: float | None = None
    queue_sigma: float | None = None
    queue_fit: dict = field(default_factory=dict)   # Anderson-Darling statistic, p-value (tabulated), verdict
    rtt: Figure | None = None                  # the round trip's median, with its 95 % CI
    rtt_p90: float | None = None
    notes: list[str] = field(default_factory=list)
    # samples kept for plots
    speeds: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    queue: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    prompt: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    prompt_time: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    audio: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    response_time: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)

    def params(self) -> dict[str, float]:
        """The ``[service."MODEL"]`` keys that could be estimated (sim.service.ServiceParams names)."""
        out = {}
        if self.output_tps:
            out["output_tps"] = self.output_tps.value
        if self.audio_speed_factor:
            out["audio_speed_factor"] = self.audio_speed_factor
        if self.prefill_tps:
            out["prefill_tps"] = self.prefill_tps
            # the simulator divides the fixed part by the speed factor too: E[1/S] = 1 + cv^2
            out["prefill_fixed"] = max(self.prefill_fixed.value, 0.0) / (1 + (self.speed_cv or 0.0) ** 2)
        if self.speed_cv is not None:
            out["speed_cv"] = self.speed_cv
        if self.queue_median:
            out["queue_median"] = self.queue_median.value
            out["queue_p90"] = self.queue_p90
        if self.rtt:
            out["rtt_median"] = self.rtt.value
            out["rtt_p90"] = max(self.rtt_p90, self.rtt.value)
        return out


def _median_ci(x: np.ndarray) -> Figure:
    """The median with its distribution-free 95 % CI (order statistics of a binomial(n, 1/2)); none (NaN) below
    6 samples, where even the widest, min to max, covers the median with less than 95 % (1 - 2^(1-n))."""
    x = np.sort(x)
    n = len(x)
    lo, hi = (int(k) for k in stats.binom.interval(0.95, n, 0.5))
    if lo < 1 or hi > n - 1:
        return Figure(float(np.median(x)), math.nan, math.nan, n)
    return Figure(float(np.median(x)), float(x[lo - 1]), float(x[hi]), n)


def _mean_ci(x: np.ndarray, floor: float = -math.inf) -> Figure:
    """The mean with Student's 95 % interval, its low end at least ``floor`` (a speed's, 0: two samples' interval
    reached -694 t/s, a speed no server has)."""
    n = len(x)
    m = float(np.mean(x))
    if n < 2:
        return Figure(m, math.nan, math.nan, n)
    half = stats.t.ppf(0.975, n - 1) * float(np.std(x, ddof=1)) / math.sqrt(n)
    return Figure(m, max(m - half, floor), m + half, n)


def _lognormal(x: np.ndarray) -> tuple[Figure, float]:
    """(median with CI, sigma) of a lognormal fitted by maximum likelihood with loc = 0."""
    sigma, _, scale = stats.lognorm.fit(x, floc=0)
    n = len(x)
    half = stats.t.ppf(0.975, n - 1) * sigma / math.sqrt(n) if n > 1 else math.nan
    return Figure(float(scale), float(scale * math.exp(-half)), float(scale * math.exp(half)), n), float(sigma)


def _weighted_line(x: np.ndarray, y: np.ndarray) -> tuple[Figure, Figure]:
    """(slope, fixed) of ``y = fixed + slope * x`` with 95 % CIs, for noise proportional to ``y`` (a
    per-request speed factor): ordinary least squares of ``y/x`` on ``1/x``."""
    reg = stats.linregress(1.0 / x, y / x)
    t = stats.t.ppf(0.975, len(x) - 2)
    return (Figure(reg.intercept, reg.intercept - t * reg.intercept_stderr, reg.intercept + t * reg.intercept_stderr,
                   len(x)),
            Figure(reg.slope, reg.slope - t * reg.stderr, reg.slope + t * reg.stderr, len(x)))


def _fit_transcriptions(df: pd.DataFrame, model: str) -> ServiceFit:
    """A speech-to-text model's fit from response times (module docstring)."""
    answered = df[df["status"] == 200]
    fit = ServiceFit(model, len(answered), kind="stt")
    x = answered["audio_seconds"].to_numpy(float)
    y = (answered["t_recv"] - answered["t_send"]).to_numpy(float)
    use = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    x, y = x[use], y[use]
    if len(x) >= 3 and len(np.unique(x)) >= 2:
        fit.audio_slope, fit.audio_fixed = _weighted_line(x, y)
        fit.audio, fit.response_time = x, y
        params = load_service_table().get(model)
        cv = params.speed_cv if params is not None else service_defaults()["speed_cv"]
        if fit.audio_slope.low > 0:
            fit.audio_speed_factor = float((1 + cv ** 2) / fit.audio_slope.value)
            fit.notes.append(f"transcriptions carry no usage: audio_speed_factor from response times with speed_cv "
                             f"{cv:g} assumed; queue and prefill are inside the fixed part, kept at defaults")
        elif fit.audio_slope.value > 0:  # a positive slope the noise could have made: a factor from it is noise
            fit.notes.append(f"response time grows with audio_seconds by {fit.audio_slope.text('.3g', ' s/s')}, "
                             "too little to tell from noise (the interval includes 0): audio speed not estimated "
                             "(longer or more varied audio would tell)")
        else:
            fit.notes.append("response time does not grow with audio_seconds: audio speed not estimated")
    else:
        fit.notes.append(f"audio speed: {len(x)} answered transcription(s) with audio_seconds and "
                         f"{len(np.unique(x))} distinct length(s); need 3 and 2")
    _fit_rtt(fit, _refused_round_trips(df), "network round trip: fewer than 2 refused requests (a "
             "transcription's own time includes its processing)", _whole_seconds(df))
    return fit


def fit_service(df: pd.DataFrame, model: str) -> ServiceFit:
    if len(df) and (df["endpoint"].isin(AUDIO_ENDPOINTS) | (df["audio_seconds"] > 0)).all():  # as sim.tracelog
        return _fit_transcriptions(df, model)
    ok = successes(df)
    fit = ServiceFit(model, len(ok))
    if ok.empty:
        fit.notes.append("no answered request with usage: no service figures")
        return fit
    good = ok[(ok["completion_tokens"] > 0) & (ok["completion_time"] > 0)]
    speeds = finite(good["completion_tokens"] / good["completion_time"])
    if len(speeds) >= 2:
        fit.speeds = speeds
        fit.output_tps = _mean_ci(speeds, floor=0.0)
        fit.output_median, sigma = _lognormal(speeds)
        fit.speed_cv = float(math.sqrt(math.expm1(sigma ** 2)))
        if fit.speed_cv > SPEED_CV_MAX:  # a scenario may not set more: the simulator's spread at its widest
            fit.notes.append(f"output speed's spread (lognormal cv {fit.speed_cv:.3g}) is beyond the simulator's "
                             f"largest speed_cv: written as {SPEED_CV_MAX:g} (a few answers of implausible speed?)")
            fit.speed_cv = SPEED_CV_MAX
    else:
        fit.notes.append(f"output speed: {len(speeds)} usable sample(s), need 2")

    pre = ok[(ok["prompt_time"] > 0) & (ok["prompt_tokens"] > 0)]
    if len(pre) >= 3 and pre["prompt_tokens"].nunique() >= 2:
        x, y = pre["prompt_tokens"].to_numpy(float), pre["prompt_time"].to_numpy(float)
        fit.prefill_slope, fit.prefill_fixed = _weighted_line(x, y)
        fit.prompt, fit.prompt_time = x, y
        if fit.prefill_slope.low > 0:
            fit.prefill_tps = float((1 + (fit.speed_cv or 0.0) ** 2) / fit.prefill_slope.value)
            if fit.prefill_fixed.low > 0:
                fit.notes.append(f"prefill has a fixed part of {fit.prefill_fixed.value * 1000:.1f} ms per request, "
                                 f"written as prefill_fixed = {fit.params()['prefill_fixed']:.4g} s (divided by 1 + "
                                 "speed_cv^2: the simulator divides it by each request's speed factor)")
        elif fit.prefill_slope.value > 0:  # as for transcriptions: a speed from a slope the noise could have made
            fit.notes.append(f"prompt_time grows with prompt_tokens by {fit.prefill_slope.text('.3g', ' s/token')}, "
                             "too little to tell from noise (the interval includes 0): prefill speed not estimated "
                             "(more answers or more varied prompt sizes would tell)")
        else:
            fit.notes.append("prompt_time does not grow with prompt_tokens: prefill speed not estimated")
    else:
        fit.notes.append(f"prefill: {len(pre)} usable sample(s) with {pre['prompt_tokens'].nunique()} distinct "
                         "prompt size(s); need 3 samples and 2 sizes")

    q = finite(ok["queue_time"])
    q = q[q > 0]
    if len(q) >= 8:
        fit.queue = q
        fit.queue_median, fit.queue_sigma = _lognormal(q)
        fit.queue_p90 = float(fit.queue_median.value * math.exp(Z90 * fit.queue_sigma))
        ad = stats.anderson(np.log(q), dist="norm", method="interpolate")
        fit.queue_fit = {"statistic": float(ad.statistic), "p_value": float(ad.pvalue),
                         "verdict": "fits" if ad.pvalue >= 0.05 else "rejected at 5%"}
        if ad.pvalue < 0.05:
            fit.notes.append(f"queue_time is not lognormal (Anderson-Darling {ad.statistic:.2f}, p={ad.pvalue:.3g}): "
                             "the simulator's lognormal queue is an approximation here")
    else:
        fit.notes.append(f"queue_time: {len(q)} positive sample(s), need 8 for a lognormal fit")

    net = (ok["t_recv"] - ok["t_send"]) - ok["queue_time"] - ok["total_time"]
    _fit_rtt(fit, np.concatenate([net.to_numpy(float), _refused_round_trips(df)]),
             "network round trip: fewer than 2 samples", _whole_seconds(df))
    return fit


def _refused_round_trips(df: pd.DataFrame) -> np.ndarray:
    """``t_recv - t_send`` of the refused requests (429, 413): nothing but the network in them."""
    refused = df[df["status"].isin([429, 413])]
    return (refused["t_recv"] - refused["t_send"]).to_numpy(float)


def _whole_seconds(df: pd.DataFrame) -> bool:
    """Is every ``t_send`` and ``t_recv`` of ``df`` a whole second (a clock too coarse for a round trip)?"""
    t = finite(df[["t_send", "t_recv"]].to_numpy(float).ravel())
    return len(t) > 0 and bool(np.all(t == np.floor(t)))


def _fit_rtt(fit: ServiceFit, rtts: np.ndarray, too_few: str, whole_seconds: bool = False) -> None:
    """The round trip's median (with its CI) and p90 from ``rtts``, or the note ``too_few``.  A negative round
    trip (``t_recv`` before ``t_send``, or a response quicker than its own usage's times) is no network delay:
    it is left out and counted, not taken as 0 (which would pull the median down).  Not estimated, with a note,
    when the times are all whole seconds (a round trip of tens of ms reads as 0 or 1 s) or the median is 0 while
    the p90 is not: a zero median is no network at all, which ``sim.service`` allows only with a zero p90."""
    if whole_seconds:
        fit.notes.append("every t_send and t_recv is a whole second: round trips cannot be measured on such a "
                         "clock, so the network round trip is not estimated (log sub-second times, as time.time())")
        return
    rtts = finite(rtts)
    negative = int((rtts < 0).sum())
    if negative:
        fit.notes.append(f"{negative} of {len(rtts)} round trip(s) are negative (t_recv before t_send, or a response "
                         "quicker than its usage's times: clocks or times inconsistent): left out of the round trip")
        rtts = rtts[rtts >= 0]
    if len(rtts) < 2:
        fit.notes.append(too_few)
    elif np.median(rtts) == 0 and np.percentile(rtts, 90) > 0:
        fit.notes.append(f"network round trip: median 0 s but p90 {np.percentile(rtts, 90):.4g} s (times too coarse "
                         "to measure it?): not estimated, as a zero median means no network at all")
    else:
        fit.rtt = _median_ci(rtts)
        fit.rtt_p90 = float(np.percentile(rtts, 90))
