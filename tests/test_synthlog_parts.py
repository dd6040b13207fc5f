"""sim.synthlog line by line: the log a synthetic Groq client would have written, checked against what the
spec says went in (Poisson arrivals, lognormal token counts, the service's times), Groq's formats
(/work/shared/reference/groq-real-responses.md: the ``usage`` object, the 429 text, reset headers as Go
durations) and the official SDK's retry rule (``groq._base_client._calculate_retry_timeout``: a
``retry-after`` of 0 < s <= 60 is obeyed, otherwise min(0.5 x 2^n, 8) s x (1 - 0.25 U))."""
import math
import re
import runpy
import sys
from collections import defaultdict
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest
from groq._constants import DEFAULT_MAX_RETRIES, INITIAL_RETRY_DELAY, MAX_RETRY_DELAY
from scipy import stats

from sim.catalog import Catalog, Limits
from sim.errors import ConfigError
from sim.recorder import read_log
from sim.service import ServiceParams
from sim.synthlog import SynthSpec, example_spec, main, synthesize, write_log

#: limits nothing reaches: every request admitted at once
ROOMY = Limits(rpm=10**7, rpd=10**9, tpm=10**10, tpd=10**12)
#: a network round trip of exactly 0.1 s (median = p90: no spread), the other figures the defaults'
FIXED_RTT = ServiceParams(output_tps=560.0, prefill_tps=6000.0, prefill_fixed=0.0, speed_cv=0.15, queue_median=0.12,
                          queue_p90=0.23, rtt_median=0.1, rtt_p90=0.1)
USAGE_ORDER = ["queue_time", "prompt_tokens", "prompt_time", "completion_tokens", "completion_time", "total_tokens",
               "total_time"]  # groq-real-responses.md section 1, a real response's order


def go_seconds(text: str) -> float:
    """Seconds of a Go ``time.Duration`` string (``14h59m59.056s``, ``547ms``), written out here from Go's
    format rather than taken from the package."""
    if re.fullmatch(r"[\d.]+ms", text):
        return float(text[:-2]) / 1000
    m = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:([\d.]+)s)?", text)
    assert m and text, text
    h, mi, s = m.groups()
    return int(h or 0) * 3600 + int(mi or 0) * 60 + float(s or 0)


def by_request(lines) -> dict[str, list[dict]]:
    """Each request's attempts in order (request ids are ``req_<seed>_<request>_<attempt>``)."""
    out = defaultdict(list)
    for line in sorted(lines, key=lambda x: x["retry_count"]):
        out[line["request_id"].rsplit("_", 1)[0]].append(line)
    return out


def lognormal_sigma(median, p95):
    return math.log(p95 / median) / stats.norm.ppf(0.95)


# ---- arrivals and sizes --------------------------------------------------------------------------------------

def test_arrivals_are_a_poisson_stream_over_the_duration():
    spec = SynthSpec(limits=ROOMY, rate=5.0, duration=400.0, start="2026-11-02T09:00:00")
    lines = synthesize(spec, seed=1)
    start = datetime(2026, 11, 2, 9, tzinfo=UTC).timestamp()
    first = np.array(sorted(x["t_send"] for x in lines if x["retry_count"] == 0))
    assert all(x["status"] == 200 for x in lines) and len(first) == len(lines)
    lo, hi = stats.poisson.interval(1 - 1e-6, 5.0 * 400.0)
    assert lo <= len(first) <= hi
    assert start <= first[0] and first[-1] <= start + 400.0
    assert first[0] - start < 1.0  # 2 000 uniform arrivals over 400 s: the first one within 1 s (p = 1 - 0.9975^2000)
    assert stats.kstest(first - start, stats.uniform(0, 400.0).cdf).pvalue > 1e-3


def test_token_counts_are_the_lognormals_the_spec_names():
    """Prompt and completion tokens: median and 95th percentile as given (scipy's lognormal), completions
    capped at max_tokens in the share the lognormal puts above it."""
    spec = SynthSpec(limits=ROOMY, rate=10.0, duration=400.0, prompt_median=400.0, prompt_p95=1500.0,
                     completion_median=150.0, completion_p95=450.0, max_tokens=300)
    usage = [x["usage"] for x in synthesize(spec, seed=2)]
    prompt = np.array([u["prompt_tokens"] for u in usage])
    completion = np.array([u["completion_tokens"] for u in usage])
    assert np.median(prompt) == pytest.approx(400.0, rel=0.05)
    assert np.percentile(prompt, 95) == pytest.approx(1500.0, rel=0.08)
    assert np.median(completion) == pytest.approx(150.0, rel=0.05)
    assert completion.max() == 300
    above = stats.lognorm(lognormal_sigma(150.0, 450.0), scale=150.0).sf(299.5)  # rounds to 300 or more
    assert np.mean(completion == 300) == pytest.approx(above, abs=0.015)
    assert all(u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"] for u in usage)


def test_a_request_has_at_least_one_prompt_token_and_one_completion_token():
    """Tiny medians: the lognormal puts ~20 % below 0.5, which would round to 0; a request has at least a token
    each way, so every value below 1.5 is 1."""
    spec = SynthSpec(limits=ROOMY, rate=10.0, duration=200.0, prompt_median=1.0, prompt_p95=4.0,
                     completion_median=1.0, completion_p95=4.0)
    usage = [x["usage"] for x in synthesize(spec, seed=3)]
    below = stats.lognorm(lognormal_sigma(1.0, 4.0), scale=1.0).cdf(1.5)
    for key in ("prompt_tokens", "completion_tokens"):
        values = np.array([u[key] for u in usage])
        assert values.min() == 1
        assert np.mean(values == 1) == pytest.approx(below, abs=0.03)


def test_service_times_follow_the_service_figures():
    """Queue time: the lognormal of median queue_median and 90th percentile queue_p90; output speed: mean
    output_tps (the speed factor has mean 1); speed and queue drawn independently."""
    service = ServiceParams(output_tps=500.0, prefill_tps=6000.0, prefill_fixed=0.0, speed_cv=0.3,
                            queue_median=0.1, queue_p90=0.3, rtt_median=0.1, rtt_p90=0.15)
    usage = [x["usage"] for x in synthesize(SynthSpec(limits=ROOMY, rate=10.0, duration=300.0, service=service),
                                            seed=4)]
    queue = np.array([u["queue_time"] for u in usage])
    speed = np.array([u["completion_tokens"] / u["completion_time"] for u in usage])
    assert np.median(queue) == pytest.approx(0.1, rel=0.06)
    assert np.percentile(queue, 90) == pytest.approx(0.3, rel=0.08)
    assert speed.mean() == pytest.approx(500.0, rel=0.03)
    assert np.std(speed) / speed.mean() == pytest.approx(0.3, rel=0.1)
    assert abs(stats.spearmanr(queue, speed).statistic) < 0.1


# ---- the lines -----------------------------------------------------------------------------------------------

def test_usage_is_groqs_object():
    """Fields in Groq's order, total_time = prompt_time + completion_time with queue_time apart, times at
    nanosecond precision."""
    lines = synthesize(SynthSpec(limits=ROOMY, duration=300.0), seed=5)
    for line in lines:
        u = line["usage"]
        assert list(u) == USAGE_ORDER
        assert u["total_time"] == pytest.approx(u["prompt_time"] + u["completion_time"], abs=1.5e-9)
        for key in ("queue_time", "prompt_time", "completion_time", "total_time"):
            assert abs(u[key] * 1e9 - round(u[key] * 1e9)) < 1e-3
    assert {(x["model"], x["endpoint"], x["label"], x["audio_seconds"], x["error"]) for x in lines} == {
        ("llama-3.1-8b-instant", "chat.completions", "synthetic", None, None)}


def test_an_answer_comes_back_after_the_round_trip_the_queue_and_the_service():
    """t_recv = t_send + network + queue_time + total_time for a 200; t_send + network for a refusal."""
    spec = SynthSpec(limits=Limits(rpm=3, rpd=10**6, tpm=10**9, tpd=10**12), rate=0.2, duration=600.0,
                     service=FIXED_RTT)
    lines = synthesize(spec, seed=6)
    assert {x["status"] for x in lines} == {200, 429}
    for line in lines:
        u = line["usage"]
        served = u["queue_time"] + u["total_time"] if line["status"] == 200 else 0.0
        assert line["t_recv"] - line["t_send"] == pytest.approx(0.1 + served, abs=1e-6)


def test_lines_come_in_the_order_the_answers_arrived():
    lines = synthesize(SynthSpec(limits=Limits(rpm=3, rpd=10**6, tpm=10**9, tpd=10**12), rate=0.5,
                                 duration=600.0), seed=7)
    t = [x["t_recv"] for x in lines]
    assert t == sorted(t)
    sent = [x["t_send"] for x in lines]
    assert sent != sorted(sent)  # (answers overtake each other: the order is not the sending order)


def test_the_windows_are_utc_days_and_the_server_sees_a_request_half_a_round_trip_after_it_was_sent():
    """Fixed windows: the RPD reset header of every answer (first attempts and retries) is the time from the
    request's arrival at the server (t_send + 0.05 s) to the next UTC midnight, rounded up to the ms."""
    spec = SynthSpec(algorithm="fixed_window", limits=Limits(rpm=4, rpd=10**6, tpm=10**9, tpd=10**12),
                     rate=0.2, duration=900.0, start="2026-11-02T09:00:00", service=FIXED_RTT)
    lines = synthesize(spec, seed=8)
    midnight = datetime(2026, 11, 3, tzinfo=UTC).timestamp()
    assert any(x["status"] == 200 and x["retry_count"] > 0 for x in lines)
    for line in lines:
        expected = math.ceil(round((midnight - (line["t_send"] + 0.05)) * 1000, 6)) / 1000
        assert go_seconds(line["headers"]["x-ratelimit-reset-requests"]) == pytest.approx(expected, abs=1.5e-3)


def test_a_refusals_wait_is_exact_to_the_nanosecond():
    """Groq writes the wait at full nanosecond precision ("6.780999999s"): with no network delay, a request
    refused by a one-a-day fixed window at about noon is told the time from its sending to midnight, to the
    nanosecond (exact arithmetic here; the limiters' clock counts from the midnight, where an epoch-sized clock
    of ~1.8e9 s would blur it by a quarter of a microsecond)."""
    service = replace(FIXED_RTT, rtt_median=0.0, rtt_p90=0.0)
    spec = SynthSpec(algorithm="fixed_window", limits=Limits(rpm=10**6, rpd=1, tpm=10**9, tpd=10**12), rate=1.0,
                     duration=60.0, start="2026-11-02T12:00:00", service=service, max_retries=0)
    refused = [x for x in synthesize(spec, seed=19) if x["status"] == 429]
    midnight = Fraction(datetime(2026, 11, 3, tzinfo=UTC).timestamp())
    assert len(refused) > 30
    for line in refused:
        h, m, sec = re.search(r"Please try again in (\d+)h(\d+)m([\d.]+)s\.", line["error"]["message"]).groups()
        told = (int(h) * 3600 + int(m) * 60 + Fraction(Decimal(sec))) * 10**9
        assert abs(told - round((midnight - Fraction(line["t_send"])) * 10**9)) <= 1


def test_the_limits_are_the_catalogs_unless_given():
    """No limits: the published ones of the model on the tier (Groq's table in the reference); limits given
    are used as they are."""
    assert SynthSpec(tier="free").resolved_limits() == Catalog.published().limits("free", "llama-3.1-8b-instant")
    line = synthesize(replace(SynthSpec(tier="free"), duration=60.0), seed=9)[0]
    assert (line["headers"]["x-ratelimit-limit-requests"], line["headers"]["x-ratelimit-limit-tokens"]) == (
        "14400", "6000")  # groq_rate_limits.csv: free, llama-3.1-8b-instant, RPD 14.4K, TPM 6K
    mine = Limits(rpm=7, rpd=70, tpm=7000, tpd=70000)
    assert SynthSpec(limits=mine).resolved_limits() is mine
    line = synthesize(SynthSpec(limits=mine, duration=60.0), seed=9)[0]
    assert (line["headers"]["x-ratelimit-limit-requests"], line["headers"]["x-ratelimit-limit-tokens"]) == (
        "70", "7000")


@pytest.mark.parametrize("charge", ["max_tokens", "actual"])
def test_the_charge_is_the_prompt_and_max_tokens_or_the_actual_tokens(charge):
    """The first answer's remaining tokens: a full bucket less the charge -- prompt + max_tokens as Groq
    reserves it (reference section 3), or prompt + completion when charging actual tokens."""
    spec = SynthSpec(limits=Limits(rpm=100, rpd=10**6, tpm=100_000, tpd=10**9), charge=charge, duration=60.0)
    line = synthesize(spec, seed=10)[0]
    u = line["usage"]
    charged = u["prompt_tokens"] + (spec.max_tokens if charge == "max_tokens" else u["completion_tokens"])
    assert u["completion_tokens"] < spec.max_tokens
    assert int(line["headers"]["x-ratelimit-remaining-tokens"]) == 100_000 - charged


def test_a_chat_request_charges_no_audio_seconds():
    """Limits with an audio unit (ASH 1 s): chat requests never reach it."""
    spec = SynthSpec(limits=Limits(rpm=100, rpd=10**6, tpm=10**9, tpd=10**12, ash=1), duration=300.0)
    lines = synthesize(spec, seed=11)
    assert len(lines) > 10 and all(x["status"] == 200 for x in lines)


# ---- refusals and retries ------------------------------------------------------------------------------------

def _retry_gaps_follow_the_sdk(lines, max_retries, gaps=None):
    """Each retry sent when the SDK would: retry-after seconds after the 429 came back if 0 < s <= 60, else
    after the backoff min(0.5 x 2^n, 8) x (1 - 0.25 U); a 429 with retries left is retried, a 413 never."""
    seen = set()
    gaps = [] if gaps is None else gaps
    for attempts in by_request(lines).values():
        assert [x["retry_count"] for x in attempts] == list(range(len(attempts)))
        assert len(attempts) <= max_retries + 1
        for n, (prev, nxt) in enumerate(zip(attempts, attempts[1:])):
            assert prev["status"] == 429
            after = int(prev["headers"]["retry-after"])
            gap = nxt["t_send"] - prev["t_recv"]
            if after <= 60:
                assert gap == pytest.approx(after, abs=1e-6)
            else:
                backoff = min(INITIAL_RETRY_DELAY * 2 ** n, MAX_RETRY_DELAY)
                assert 0.75 * backoff - 1e-9 <= gap <= backoff + 1e-9
                gaps.append((n, gap / backoff))
            seen.add(min(after, 61))
        last = attempts[-1]
        assert last["status"] in (200, 413) or len(attempts) == max_retries + 1
    return seen


def test_retries_follow_the_sdk_around_midnight():
    """One request a day (fixed window, UTC days): requests reaching the server between 23:58:59 and 23:59:01
    are told to wait 61 s, 60 s or 59 s, until midnight.  The SDK obeys 60 s, and answers 61 s with its own
    backoff."""
    spec = SynthSpec(algorithm="fixed_window", limits=Limits(rpm=10**6, rpd=1, tpm=10**9, tpd=10**12),
                     rate=10.0, duration=2.0, start="2026-11-02T23:58:59", service=FIXED_RTT, max_retries=2)
    lines = synthesize(spec, seed=12)
    midnight = datetime(2026, 11, 3, tzinfo=UTC).timestamp()
    first = [x for x in lines if x["retry_count"] == 0 and x["status"] == 429]
    for line in first:  # the wait is until midnight, from the request's arrival at the server
        wait = midnight - (line["t_send"] + 0.05)
        assert line["headers"]["retry-after"] == str(math.ceil(wait))
    assert {int(x["headers"]["retry-after"]) for x in first} >= {60, 61}
    assert _retry_gaps_follow_the_sdk(lines, 2) >= {60, 61}
    assert sum(x["status"] == 200 for x in lines) == 2  # one on the 2nd, one on the 3rd of November


@pytest.mark.parametrize("max_retries", [0, 1, 3])
def test_at_most_max_retries(max_retries):
    spec = SynthSpec(limits=Limits(rpm=2, rpd=10**6, tpm=10**9, tpd=10**12), rate=0.5, duration=300.0,
                     max_retries=max_retries)
    lines = synthesize(spec, seed=13)
    attempts = by_request(lines)
    _retry_gaps_follow_the_sdk(lines, max_retries)
    assert max(len(a) for a in attempts.values()) == max_retries + 1
    assert len({x["request_id"] for x in lines}) == len(lines)


def test_a_retry_after_of_one_second_is_obeyed():
    """RPM 60 as a token bucket (a request a second) against 3 requests a second: waits under a second."""
    spec = SynthSpec(limits=Limits(rpm=60, rpd=10**6, tpm=10**9, tpd=10**12), rate=3.0, duration=60.0)
    assert 1 in _retry_gaps_follow_the_sdk(synthesize(spec, seed=17), 2)


def test_the_sdks_backoff_doubles_up_to_its_cap_with_its_jitter():
    """One request a day, asked for at noon: every retry-after is hours, so each of six retries waits the SDK's
    backoff 0.5, 1, 2, 4, 8, 8 s, less up to a quarter (uniform)."""
    spec = SynthSpec(algorithm="fixed_window", limits=Limits(rpm=10**6, rpd=1, tpm=10**9, tpd=10**12), rate=1.0,
                     duration=120.0, start="2026-11-02T12:00:00", max_retries=6)
    gaps = []
    assert _retry_gaps_follow_the_sdk(synthesize(spec, seed=18), 6, gaps) == {61}
    assert {n for n, _ in gaps} == set(range(6)) and len(gaps) > 300
    assert stats.kstest([g for _, g in gaps], stats.uniform(0.75, 0.25).cdf).pvalue > 1e-3


def test_a_request_larger_than_the_limit_is_a_413_and_not_retried():
    spec = SynthSpec(limits=Limits(rpm=100, rpd=10**6, tpm=600, tpd=10**9), prompt_median=200.0, prompt_p95=800.0,
                     max_tokens=200, duration=600.0, rate=0.1)
    lines = synthesize(spec, seed=14)
    big = [x for x in lines if x["status"] == 413]
    assert big and all(x["retry_count"] == 0 and "retry-after" not in x["headers"] for x in big)
    assert all(x["error"]["message"].startswith("Request too large for model `llama-3.1-8b-instant`") for x in big)
    for line in big:
        assert not any(x["request_id"].rsplit("_", 1)[0] == line["request_id"].rsplit("_", 1)[0]
                       and x is not line for x in lines)
    _retry_gaps_follow_the_sdk(lines, 2)


@pytest.mark.parametrize("tier,hint", [("free", True), ("developer", False)])
def test_only_the_free_tier_is_told_to_upgrade(tier, hint):
    """Groq's 429 text (reference section 3), "Requested" being prompt + max_tokens; the free tier's ends
    "Need more tokens? Upgrade to Dev Tier today at ..."."""
    spec = SynthSpec(tier=tier, limits=Limits(rpm=100, rpd=10**6, tpm=2000, tpd=10**9), rate=0.5, duration=300.0)
    lines = synthesize(spec, seed=15)
    prompt = {x["request_id"].rsplit("_", 1)[0]: x["usage"]["prompt_tokens"] for x in lines if x["usage"]}
    refused = [x for x in lines if x["status"] == 429]
    assert refused
    checked = 0
    for line in refused:
        message = line["error"]["message"]
        assert re.match(r"Rate limit reached for model `llama-3\.1-8b-instant` in organization `org_synthetic` "
                        r"service tier `on_demand` on tokens per minute \(TPM\): Limit 2000, Used \d+, Requested "
                        r"\d+\. Please try again in [\dhms.]+\.", message)
        assert message.endswith(" Need more tokens? Upgrade to Dev Tier today at "
                                "https://console.groq.com/settings/billing") == hint
        req = line["request_id"].rsplit("_", 1)[0]
        if req in prompt:
            assert int(re.search(r"Requested (\d+)", message).group(1)) == prompt[req] + spec.max_tokens
            checked += 1
    assert checked > 5


# ---- seeds, files, the command -------------------------------------------------------------------------------

def test_a_seed_is_a_log():
    spec = SynthSpec(limits=Limits(rpm=3, rpd=10**6, tpm=10**9, tpd=10**12), duration=300.0)
    assert synthesize(spec) == synthesize(spec, seed=0) == synthesize(spec, 0)
    assert synthesize(spec, seed=1) != synthesize(spec, seed=0)


def test_write_log_writes_every_line(tmp_path):
    lines = synthesize(SynthSpec(limits=Limits(rpm=3, rpd=10**6, tpm=10**9, tpd=10**12), duration=300.0), 16)
    write_log(lines, tmp_path / "log.jsonl")
    log = read_log(tmp_path / "log.jsonl")
    assert not log.problems and len(log.records) == len(lines) > 10
    assert [(r["request_id"], r["status"], r["t_send"], r["retry_count"]) for r in log.records] == [
        (x["request_id"], x["status"], x["t_send"], x["retry_count"]) for x in lines]


def test_python_m_sim_synthlog_writes_the_example(tmp_path, monkeypatch):
    """``python -m sim.synthlog OUT`` (run in this process) writes the example spec's log of seed 2026."""
    out = tmp_path / "ex.jsonl"
    monkeypatch.setattr(sys, "argv", ["python -m sim.synthlog", str(out)])
    with pytest.warns(RuntimeWarning, match="sim.synthlog"), pytest.raises(SystemExit) as stop:
        runpy.run_module("sim.synthlog", run_name="__main__")
    assert stop.value.code == 0
    write_log(synthesize(example_spec(), seed=2026), tmp_path / "ref.jsonl")
    assert out.read_bytes() == (tmp_path / "ref.jsonl").read_bytes()
    assert main([str(tmp_path / "again.jsonl")]) == 0


def test_the_default_client_is_the_sdks():
    """The defaults the calibration tests lean on: llama-3.1-8b-instant on the free tier at its published
    output speed (560 t/s, service_params.csv and reference section 2), retrying as often as the SDK does."""
    spec = SynthSpec()
    assert (spec.model, spec.tier, spec.limits, spec.algorithm, spec.charge) == (
        "llama-3.1-8b-instant", "free", None, "token_bucket", "max_tokens")
    assert spec.max_retries == DEFAULT_MAX_RETRIES
    assert spec.service.output_tps == 560.0


def test_an_unknown_charge_is_refused_not_taken_for_actual():
    """Only ``max_tokens`` and ``actual`` are charging rules; any other word charged the actual tokens."""
    with pytest.raises(ConfigError, match=r"^unknown SynthSpec charge 'max-tokens' \(did you mean 'max_tokens'\? "
                                          r"allowed: max_tokens, actual\)$"):
        synthesize(replace(SynthSpec(), charge="max-tokens"))
