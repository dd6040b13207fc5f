"""Validation checks against what real Groq responses show (groq-real-responses.md, section 1).

* ``total_time = prompt_time + completion_time`` in every success, ``queue_time`` apart;
* a success reaches the client ``rtt + queue_time + total_time`` after it was sent, with the round trip's
  median and p90 those of the service table;
* the default ``queue_time`` has the median and p90 of the 18 real samples;
* the fitted prefill reproduces the real prompt_time samples;
* the real output-speed samples are plausible draws of each model's speed distribution.

Each function returns :class:`~sim.checks.Check` rows; :func:`fidelity_checks` runs them all (sim.validation
adds them to ``groqsim validate``).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .catalog import Catalog, Limits
from .checks import Check
from .config import Client, Dist, Org, arrival, policy_table
from .engine import simulate
from .headers import rate_limit_error, rate_limit_headers
from .limitset import LimitSet
from .service import Z90, ServiceModel, data_rows, load_service_table, service_defaults
from .spec import RunSpec
from .units import format_reset

TIMED_MODEL = "llama-3.3-70b-versatile"
Z995 = 2.5758293035489004  # the central 99 % of a standard normal
#: real output speeds, (model, completion tokens, completion_time s), groq-real-responses.md section 1
OUTPUT_SAMPLES = [("openai/gpt-oss-120b", 3222, 6.725), ("openai/gpt-oss-20b", 126, 0.124),
                  ("qwen/qwen3-32b", 839, 2.867), ("llama-3.3-70b-versatile", 275, 1.0),
                  ("llama-3.3-70b-versatile", 528, 1.0)]  # the reference gives llama-3.3-70b's range 275-528 t/s


def _timed_records(hours: float, model: str = TIMED_MODEL, rate: str = "100/min") -> pd.DataFrame:
    """Successes of a no-retry client on a tier without limits: pure service and network times."""
    client = Client(name="t", model=model, arrival=arrival(kind="poisson", rate=rate),
                    prompt_tokens=Dist(dist="lognormal", median=500, p95=4000), max_tokens=400, policy="no-retry")
    cat = Catalog.published().copy().define_tier("unlimited", "developer")
    cat.override("unlimited", model, rpm=None, rpd=None, tpm=None, tpd=None)
    spec = RunSpec(clients=[client], policies=policy_table(), org=Org(tier="unlimited"), catalog=cat,
                       duration=hours * 3600)
    rec = simulate(spec, 11).records
    return rec[(rec["outcome"] == "ok") & (rec["attempts"] == 1)]


def quantile_ci(x: np.ndarray, p: float, z: float = Z995) -> tuple[float, float]:
    """Distribution-free confidence interval of the ``p`` quantile of the sample ``x`` (order statistics at
    ``n p ± z sqrt(n p (1 - p))``; 99 % by default): the tolerance of a quantile check follows the sample size."""
    x = np.sort(np.asarray(x, dtype=float))
    n = len(x)
    if n == 0:
        return math.nan, math.nan
    half = z * math.sqrt(n * p * (1 - p))
    return float(x[max(0, math.floor(n * p - half))]), float(x[min(n - 1, math.ceil(n * p + half))])


def _inside(x: np.ndarray, p: float, target: float) -> tuple[bool, str]:
    lo, hi = quantile_ci(x, p)
    return lo <= target <= hi, f"[{lo:.3f}, {hi:.3f}]"


def check_total_time_identity(records: pd.DataFrame):
    """``total_time = prompt_time + completion_time`` exactly, and ``queue_time`` is not in it."""
    ok = records[records["outcome"] == "ok"]
    gap = float(np.max(np.abs(ok["total_time"] - (ok["prompt_time"] + ok["completion_time"])))) if len(ok) else 0.0
    return Check("total_time = prompt_time + completion_time", "every real usage object (reference §1)",
                  "max |difference| = 0, queue_time apart", f"{gap:.2e} s over {len(ok)} requests",
                  len(ok) > 0 and gap < 1e-9)


def check_client_wait(records: pd.DataFrame, model: str = TIMED_MODEL):
    """A first-attempt success reaches the client ``rtt + queue_time + total_time`` after it was created:
    the remainder is the round trip, whose median and p90 must be the service table's (each inside the
    remainders' 99 % confidence interval)."""
    p = load_service_table()[model]
    rtt = (records["latency"] - records["queue_time"] - records["total_time"]).to_numpy()
    if not len(rtt):
        return Check("client wait = rtt + queue_time + total_time", "reference §1", "successes", "none", False)
    ok_med, ci_med = _inside(rtt, 0.5, p.rtt_median)
    ok_90, ci_90 = _inside(rtt, 0.9, p.rtt_p90)
    return Check("client wait = rtt + queue_time + total_time", "reference §1; service_defaults.csv",
                  f"rtt median {p.rtt_median * 1e3:.0f} ms, p90 {p.rtt_p90 * 1e3:.0f} ms inside the 99% CIs",
                  f"median {np.median(rtt) * 1e3:.1f} ms, p90 {np.percentile(rtt, 90) * 1e3:.1f} ms "
                  f"(CIs {ci_med}, {ci_90} s; min {np.min(rtt) * 1e3:.1f} ms)", ok_med and ok_90)


def check_queue_defaults(records: pd.DataFrame):
    """The 18 real samples' ``queue_time`` median and p90 lie inside the 99 % confidence intervals of the
    simulated median and p90."""
    real = np.array([float(r["queue_time"]) for r in data_rows("queue_time_samples.csv")])
    q = records["queue_time"].to_numpy()
    rm, r90 = float(np.median(real)), float(np.percentile(real, 90))
    if not len(q):
        return Check("queue_time median and p90", "reference §1", "successes", "none", False)
    ok_med, ci_med = _inside(q, 0.5, rm)
    ok_90, ci_90 = _inside(q, 0.9, r90)
    return Check("queue_time median and p90", f"{len(real)} real usage samples (reference §1)",
                  f"median {rm:.3f} s, p90 {r90:.3f} s inside the 99% CIs",
                  f"median {np.median(q):.3f} s {ci_med}, p90 {np.percentile(q, 90):.3f} s {ci_90} "
                  f"over {len(q)} requests", ok_med and ok_90)


def check_prefill_samples():
    """The fitted prefill (fixed part + tokens / prefill_tps, at the median speed factor) against every real
    prompt_time sample used in the fit: each within a factor 2, each model's total within 1 %."""
    table = load_service_table()
    worst, totals = 1.0, {}
    for r in data_rows("prefill_samples.csv"):
        if r["used_in_fit"] != "yes":
            continue
        p = table[r["model"]]
        n = float(r["prompt_tokens"]) - float(r["cached_tokens"] or 0)
        model_s = p.prefill_fixed + n / p.prefill_tps
        real = float(r["prompt_time"])
        worst = max(worst, model_s / real, real / model_s)
        t = totals.setdefault(r["model"], [0.0, 0.0])
        t[0] += model_s
        t[1] += real
    total_err = max(abs(a / b - 1) for a, b in totals.values())
    return Check("prefill vs real prompt_time samples", "prefill_samples.csv (reference §1)",
                  "each sample within x2; each model's total ±1%",
                  f"worst ratio x{worst:.2f}; totals within {total_err:.2%}", worst <= 2 and total_err <= 0.01)


def check_output_speed_samples():
    """Each real output speed lies in the central 99 % of its model's speed distribution (docs speeds)."""
    table = load_service_table()
    worst, where = 0.0, ""
    for model, tokens, seconds in OUTPUT_SAMPLES:
        p = table[model]
        sigma = math.sqrt(math.log1p(p.speed_cv ** 2))
        z = (math.log(tokens / seconds / p.output_tps) + sigma ** 2 / 2) / sigma
        if abs(z) > abs(worst):
            worst, where = z, f"{model} {tokens / seconds:.0f} t/s vs {p.output_tps:g}"
    return Check("real output speeds vs speed distribution", "reference §1 samples; service_params.csv",
                  f"|z| <= {Z995:.2f} (central 99%)", f"worst z = {worst:+.2f} ({where})", abs(worst) <= Z995)


def check_queue_lognormal_fit():
    """The default queue lognormal's own median and p90 are the samples' (closed form, no simulation)."""
    d = service_defaults()
    model = ServiceModel("q", load_service_table()[TIMED_MODEL])
    med, p90 = model.times(0, 0, 0, 0.0, 0.0)[0], model.times(0, 0, 0, 0.0, Z90)[0]
    ok = math.isclose(med, d["queue_median"]) and math.isclose(p90, d["queue_p90"])
    return Check("queue lognormal quantiles", "service_defaults.csv", f"{d['queue_median']:g} s, {d['queue_p90']:g} s",
                  f"{med:.4f} s, {p90:.4f} s", ok)


def fidelity_checks(hours: float):
    """Every check of this module; ``hours`` of simulated traffic for the timing checks."""
    rec = _timed_records(hours)
    return [check_total_time_identity(rec), check_client_wait(rec), check_queue_defaults(rec),
            check_queue_lognormal_fit(), check_prefill_samples(), check_output_speed_samples(),
            *check_error_examples()]


def check_error_examples() -> list[Check]:
    """Groq's real 429 and 413 messages (reference section 3) reproduced from a limit set in their state,
    and the real header formats (section 4)."""
    out = []
    ls = LimitSet(Limits(tpm=6000))  # Limit 6000, Used 5034, Requested 1443: "Please try again in 4.77s"
    ls.acquire(5034, 0, 0.0)
    msg = rate_limit_error(ls, "llama-3.1-8b-instant", "org_x", 1443, 0, 0.0).body["error"]["message"]
    wait = float(msg.split("Please try again in ")[1].split("s.")[0])
    out.append(Check("429 'try again in' of the real TPM example", "reference §3 (Limit 6000, Used 5034, "
                      "Requested 1443)", "4.77 s ±10 ms", f"{wait:.3f} s; 'Used 5034, Requested 1443' in message: "
                      f"{'Used 5034, Requested 1443' in msg}", abs(wait - 4.77) <= 0.01 and "Used 5034" in msg))
    big = LimitSet(Catalog.published().limits("free", "llama-3.3-70b-versatile"))
    err = rate_limit_error(big, "llama-3.3-70b-versatile", "org_x", 14137, 0, 0.0)
    text = err.body["error"]["message"]
    ok = err.status == 413 and "Limit 12000, Requested 14137, please reduce your message size" in text
    out.append(Check("413 request too large", "reference §3 (Limit 12000, Requested 14137)",
                      "413, 'Limit 12000, Requested 14137, please reduce…'", f"{err.status}: {text[:60]}…", ok))
    # the §4 capture's state: 2 requests of the day's 1 000 and 72.93 tokens of the minute's 8 000 in use (what
    # its 547ms and 7 927 remaining imply: 0.547 s x 8 000 / 60 tokens/s), i.e. 73 tokens charged 0.5 ms before
    rpd = LimitSet(Limits(rpd=1000, tpm=8000))
    rpd.acquire(73, 0, 0.0)
    rpd.acquire(0, 0, 0.0)
    h = rate_limit_headers(rpd, 0.0005)
    capture = {"x-ratelimit-limit-requests": "1000", "x-ratelimit-limit-tokens": "8000",
               "x-ratelimit-remaining-requests": "998", "x-ratelimit-remaining-tokens": "7927",
               "x-ratelimit-reset-requests": "2m52.8s", "x-ratelimit-reset-tokens": "547ms"}
    got = {k: h.get(k) for k in capture}
    hour = format_reset(3723.5)
    ok = got == capture and hour == "1h2m3.5s"
    out.append(Check("reset headers as Go durations", "reference §4 capture",
                     "requests 1000/998/2m52.8s, tokens 8000/7927/547ms; 1h2m3.5s",
                     f"requests {got['x-ratelimit-limit-requests']}/{got['x-ratelimit-remaining-requests']}/"
                     f"{got['x-ratelimit-reset-requests']}, tokens {got['x-ratelimit-limit-tokens']}/"
                     f"{got['x-ratelimit-remaining-tokens']}/{got['x-ratelimit-reset-tokens']}; {hour}", ok))
    return out
