"""The exact gaps between a request's attempts, for every retry setting, through the public engine.

Each run replays a trace against limits set by hand, so every wait is known: a 429 is logged (in
``result.refusals``) at the time its attempt was sent; the client reads it one round trip ``rtt`` later and
sends the next attempt after its delay, so consecutive attempts of one request are ``rtt + delay`` apart.
Expected delays come from docs/modelling.md and, for ``groq-sdk``, from the SDK's own code
(``groq._base_client.BaseClient._calculate_retry_timeout``), called here.  Random delays are compared with
their distributions (Kolmogorov-Smirnov, scipy); the seeds are fixed, so the tests are deterministic.
"""
import math

import numpy as np
import pandas as pd
import pytest
from helpers import run
from scipy import stats

import sim
from sim import RunSpec, kernel
from sim.catalog import Catalog
from sim.config import Client, Org, arrival, policy_table
from sim.engine import Simulation
from sim.service import service_models

MODEL, SECOND = "llama-3.3-70b-versatile", "llama-3.1-8b-instant"
NO_LIMITS = {"rpm": None, "rpd": None, "tpm": None, "tpd": None}
SPACING = 40.0  # seconds between the requests of the distribution runs: their attempts never interleave
#: a constant 120 ms network (p90 = median), so every gap below is exact
CONST_NET = service_models({m: {"rtt_median": 0.12, "rtt_p90": 0.12} for m in (MODEL, SECOND)})


def trace_run(tmp_path, times, limits, policy, org=None, seed=1, fallback_limits=None, models=None, **kw):
    """Replay requests created at ``times`` (10 prompt + 10 max tokens each) under ``limits`` on MODEL
    (and ``fallback_limits`` on SECOND) with the policy settings ``policy``."""
    path = tmp_path / "trace.csv"
    df = pd.DataFrame({"timestamp": times, "prompt_tokens": 10, "max_tokens": 10})
    if models is not None:
        df["model"] = models
    df.to_csv(path, index=False)
    catalog = Catalog.published().copy().override("free", MODEL, **{**NO_LIMITS, **limits})
    catalog.override("free", SECOND, **{**NO_LIMITS, **(fallback_limits or {"rpm": 1000})})
    c = Client(name="c", model=MODEL, arrival=arrival(kind="trace", file=str(path)), policy="p")
    return run(c, duration=max(times) + 1, seed=seed, org=org or Org(tier="free"), extra_policies={"p": policy},
               catalog=catalog, service=CONST_NET, **kw)


def rtt(result, model=MODEL):
    return result.spec.service[model].rtt_median


def attempt_times(result):
    """Send times of the 429s (all refused requests, in time order)."""
    return result.refusals["time"].to_numpy()


def delays(result, model=MODEL):
    """The delays between consecutive 429s of the only refused request."""
    return np.diff(attempt_times(result)) - rtt(result, model)


# ---- deterministic policies ---------------------------------------------------------------------------------
# RPD = 1: the first request empties it for a day (retry-after 86 400 s, which these policies ignore)

def test_fixed_waits_delay_not_base(tmp_path):
    r = trace_run(tmp_path, [0.0, 0.0], {"rpd": 1}, {"retry": "fixed", "delay": 2.5, "base": 7.0, "max_attempts": 4})
    assert delays(r) == pytest.approx([2.5, 2.5, 2.5], abs=1e-9)
    rec = r.records.iloc[1]
    assert rec["outcome"] == "gave_up" and rec["attempts"] == 4 and rec["n429"] == 4
    assert rec["finished"] == pytest.approx(attempt_times(r)[-1] + rtt(r))


def test_exponential_without_jitter_doubles_up_to_the_cap(tmp_path):
    r = trace_run(tmp_path, [0.0, 0.0], {"rpd": 1},
                  {"retry": "exponential", "base": 0.5, "cap": 3.0, "max_attempts": 6})
    assert delays(r) == pytest.approx([0.5, 1.0, 2.0, 3.0, 3.0], abs=1e-9)


def test_first_attempt_goes_out_at_creation_and_a_success_after_retries_is_recorded(tmp_path):
    # RPM 1: the second request waits 59 s (retry-after 59); a fixed 20 s delay: refused at 1, 21.12, 41.24,
    # admitted at 61.36
    r = trace_run(tmp_path, [0.0, 1.0], {"rpm": 1}, {"retry": "fixed", "delay": 20.0, "max_attempts": 5})
    assert attempt_times(r) == pytest.approx([1.0, 21.12, 41.24])
    rec = r.records.iloc[1]
    assert rec["outcome"] == "ok" and rec["attempts"] == 4 and rec["admitted"] == pytest.approx(61.36)


def test_retry_on_excludes_429(tmp_path):
    r = trace_run(tmp_path, [0.0, 0.0], {"rpd": 1}, {"retry": "fixed", "max_attempts": 5, "retry_on": [503]})
    rec = r.records.iloc[1]
    assert rec["outcome"] == "gave_up" and rec["attempts"] == 1


def test_no_attempt_after_the_deadline(tmp_path):
    # attempts every rtt + 1 = 1.12 s from t = 0; the one due at 10.08 would start after created + 10
    r = trace_run(tmp_path, [0.0, 0.0], {"rpd": 1},
                  {"retry": "fixed", "delay": 1.0, "max_attempts": 100, "deadline": "10s"})
    times = attempt_times(r)
    assert times == pytest.approx([1.12 * k for k in range(9)])
    rec = r.records.iloc[1]
    assert rec["outcome"] == "deadline" and rec["finished"] == 10.0 and rec["attempts"] == 9


# ---- retry-after -------------------------------------------------------------------------------------------
# RPM = 1 and a request at t=0: the next one, at t0, waits 60 - t0 s; retry-after = that rounded up

@pytest.mark.parametrize("t0,retry_after", [(0.0, 60), (1.0, 59), (0.3, 60), (59.9, 1)])
def test_groq_sdk_sleeps_exactly_the_retry_after_up_to_60s(tmp_path, t0, retry_after):
    r = trace_run(tmp_path, [0.0, t0], {"rpm": 1}, {"retry": "groq-sdk"})
    rec = r.records.iloc[1]
    assert attempt_times(r) == pytest.approx([t0])
    assert rec["outcome"] == "ok" and rec["attempts"] == 2
    assert rec["admitted"] == pytest.approx(t0 + rtt(r) + retry_after)


def test_groq_sdk_ignores_a_retry_after_above_60s(tmp_path):
    # RPD 1417 emptied at t=0: the next request waits 86 400 / 1417 = 60.97 s, retry-after 61 > 60: the SDK
    # backs off 0.5 x (1 - 0.25 U), then 1 x (1 - 0.25 U), and gives up after 3 attempts
    r = trace_run(tmp_path, [0.0] * 1418, {"rpd": 1417}, {"retry": "groq-sdk"})
    rec = r.records.iloc[-1]
    assert rec["outcome"] == "gave_up" and rec["attempts"] == 3
    d = delays(r)
    assert 0.375 <= d[0] <= 0.5 and 0.75 <= d[1] <= 1.0


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("rpd,retry_after,attempts", [(1417, 61, 2), (720, 120, 2), (719, 121, 1)])
def test_openai_sdk_obeys_a_retry_after_up_to_120s_and_gives_up_above(tmp_path, fast, rpd, retry_after, attempts):
    """The openai SDK as a client of Groq (openai/_base_client.py): a retry-after of up to 120 s is slept
    exactly, one above it is not retried at all.  RPD emptied at t=0: the next request waits 86 400 / RPD,
    retry-after 61 s (RPD 1417), 120 s (RPD 720) or 121 s (RPD 719); in both the fast lane and the general path."""
    path = tmp_path / "t.csv"
    pd.DataFrame({"timestamp": [0.0] * (rpd + 1), "prompt_tokens": 10, "max_tokens": 10}).to_csv(path, index=False)
    catalog = Catalog.published().copy().override("free", MODEL, **{**NO_LIMITS, "rpd": rpd})
    c = Client(name="c", model=MODEL, arrival=arrival(kind="trace", file=str(path)), policy="openai-sdk")
    spec = RunSpec(clients=[c], policies=policy_table(), org=Org(tier="free"), duration=1.0, drain=600.0,
                   catalog=catalog, service=CONST_NET)
    sim = Simulation(spec, 1, kernel=fast)
    assert kernel.usable(sim)
    r = sim.run()
    rec = r.records.iloc[-1]
    assert math.ceil(86_400 / rpd) == retry_after and rec["attempts"] == attempts
    if attempts == 1:  # above 120 s: the request ends at its first 429, with two attempts unused
        assert rec["outcome"] == "gave_up" and rec["finished"] == pytest.approx(rtt(r))
    else:  # the retry-after slept exactly, then admitted (the bucket holds one request again by then)
        assert rec["outcome"] == "ok" and rec["admitted"] == pytest.approx(rtt(r) + retry_after)


@pytest.mark.parametrize("fast", [True, False])
def test_groq_sdk_times_out_at_60s_and_retries_with_its_backoff(tmp_path, fast):
    # 60 000 tokens at ~280 tokens/s take minutes: the SDK's read timeout (60 s, groq/_constants.py) fires on
    # each of its 3 attempts; each was admitted (charged), each timeout retried after the SDK's backoff
    # (0.5 then 1 s, x(1 - 0.25 U)); the last one ends the request as an error 60 s after it went
    path = tmp_path / "long.csv"
    pd.DataFrame({"timestamp": [0.0], "prompt_tokens": [10], "max_tokens": [60_000],
                  "completion_tokens": [60_000]}).to_csv(path, index=False)
    catalog = Catalog.published().copy().override("free", MODEL, **{**NO_LIMITS, "rpm": 1000})

    def record(policy):
        c = Client(name="c", model=MODEL, arrival=arrival(kind="trace", file=str(path)), policy=policy)
        spec = RunSpec(clients=[c], policies=policy_table({"patient": {"extends": "groq-sdk", "timeout": "10m"}}),
                       org=Org(tier="free"), duration=1.0, drain=900.0, catalog=catalog, service=CONST_NET)
        sim = Simulation(spec, 1, kernel=fast)
        assert kernel.usable(sim)  # (a plain group: the fast lane unless told otherwise)
        return sim.run().records.iloc[0]

    rec = record("groq-sdk")
    assert rec["outcome"] == "error" and rec["attempts"] == 3 and rec["n429"] == 0
    assert 120 + 0.375 + 0.75 <= rec["admitted"] <= 120 + 0.5 + 1.0  # sent at 0, 60 + d1, 120 + d1 + d2
    assert rec["finished"] == pytest.approx(rec["admitted"] + 60.0)
    assert rec["completion_time"] > 60.0  # what the server took, after the client had stopped waiting
    waited = record("patient")  # the same request, waited for
    assert waited["outcome"] == "ok" and waited["attempts"] == 1 and waited["finished"] > 60.0


def slow_network_run(tmp_path, times, limits, policy, fast):
    """``trace_run``'s requests and limits on a constant 0.5 s network, in the fast lane or the general path."""
    path = tmp_path / "t.csv"
    pd.DataFrame({"timestamp": times, "prompt_tokens": 10, "max_tokens": 10}).to_csv(path, index=False)
    catalog = Catalog.published().copy().override("free", MODEL, **{**NO_LIMITS, **limits})
    c = Client(name="c", model=MODEL, arrival=arrival(kind="trace", file=str(path)), policy="p")
    spec = RunSpec(clients=[c], policies=policy_table({"p": policy}), org=Org(tier="free"), duration=max(times) + 1,
                   catalog=catalog, service=service_models({MODEL: {"rtt_median": 0.5, "rtt_p90": 0.5}}))
    sim = Simulation(spec, 1, kernel=fast)
    assert kernel.usable(sim)
    return sim.run()


@pytest.mark.parametrize("fast", [True, False])
def test_a_429_later_than_the_timeout_is_a_timeout(tmp_path, fast):
    # a 0.3 s timeout on a 0.5 s network: no answer is ever read.  RPM 1.  Request 0 (t=0) is admitted, given
    # up at 0.3, retried at 1.3 (1 s delay) and refused there, given up at 1.6: its last attempt, an error.
    # Request 1 (t=1) is refused, its 429 never read: given up at 1.3, retried at 2.3, refused, an error at 2.6.
    # No retry-after is read, so the delays are the schedule's 1 s
    r = slow_network_run(tmp_path, [0.0, 1.0], {"rpm": 1},
                         {"retry": "fixed", "delay": 1.0, "max_attempts": 2, "timeout": "0.3s"}, fast)
    rec = r.records
    assert list(rec["outcome"]) == ["error", "error"]
    assert rec["finished"].to_numpy() == pytest.approx([1.6, 2.6])
    assert list(rec["attempts"]) == [2, 2] and list(rec["n429"]) == [1, 2]  # the server's 429s, unread
    assert attempt_times(r) == pytest.approx([1.0, 1.3, 2.3])


@pytest.mark.parametrize("fast", [True, False])
def test_a_413_later_than_the_timeout_is_a_timeout_retried(tmp_path, fast):
    # 20 tokens against a TPM of 10: a 413, but it would come back after 0.5 s and the client gives up at 0.3;
    # it retries (a timeout is retried, a 413 never would be) at 1.3, gives up again at 1.6: an error
    r = slow_network_run(tmp_path, [0.0], {"tpm": 10},
                         {"retry": "fixed", "delay": 1.0, "max_attempts": 2, "timeout": "0.3s"}, fast)
    rec = r.records.iloc[0]
    assert rec["outcome"] == "error" and rec["attempts"] == 2 and rec["refused_by"] == "tpm"
    assert rec["finished"] == pytest.approx(1.6)


@pytest.mark.parametrize("fast", [True, False])
def test_utilisation_counts_every_admitted_attempt_timed_out_ones_too(tmp_path, fast):
    # one output token a second: each attempt (10 completion tokens) takes over 10 s, past the 5 s timeout.
    # Request 0 (t=0) is sent at 0, 6 and 12 (each timeout read 5 s after, then 1 s of delay), request 1
    # (t=59) at 59, 65 and 71: every attempt admitted and charged 1 request and 10 + 10 tokens.  The window
    # [0, 60) holds 4 of those admissions (0, 6, 12, 59): RPM 10 refills 10 in a minute, util_rpm 0.4; TPM
    # 1 000, 80 tokens, util_tpm 0.08.  The records show only each request's last admission (12 and 71).
    from sim.summary import summarize
    path = tmp_path / "slow.csv"
    pd.DataFrame({"timestamp": [0.0, 59.0], "prompt_tokens": 10, "max_tokens": 10}).to_csv(path, index=False)
    catalog = Catalog.published().copy().override("free", MODEL, **{**NO_LIMITS, "rpm": 10, "tpm": 1000})
    slow = service_models({MODEL: {"rtt_median": 0.12, "rtt_p90": 0.12, "output_tps": 1.0, "speed_cv": 0.0}})
    c = Client(name="c", model=MODEL, arrival=arrival(kind="trace", file=str(path)), policy="p")
    spec = RunSpec(clients=[c], policies=policy_table({"p": {"retry": "fixed", "delay": 1.0, "max_attempts": 3,
                                                              "timeout": "5s"}}),
                   org=Org(tier="free"), duration=60.0, drain=120.0, catalog=catalog, service=slow)
    sim = Simulation(spec, 1, kernel=fast)
    assert kernel.usable(sim)
    r = sim.run()
    assert list(r.records["outcome"]) == ["error", "error"] and list(r.records["attempts"]) == [3, 3]
    assert r.records["admitted"].to_numpy() == pytest.approx([12.0, 71.0])
    assert r.earlier_admissions["admitted"].to_numpy() == pytest.approx([0.0, 6.0, 59.0, 65.0])
    assert "service_tier" not in r.earlier_admissions and "service_tier" not in r.records  # (no lanes)
    s = summarize(r)
    assert s["util_rpm"] == pytest.approx(0.4) and s["util_tpm"] == pytest.approx(0.08)


@pytest.mark.parametrize("rounding,t0,expected", [
    ("ceil", 0.7, [60]), ("round", 0.7, [59, 1]), ("floor", 0.3, [59, 1]), ("round", 0.3, [60]),
    ("round", 0.53, [59, 1]),
    ("floor", 59.9, [1]), ("round", 59.9, [1])])
def test_retry_after_rounding(tmp_path, rounding, t0, expected):
    # the wait is 60 - t0; a retry-after rounded down brings the client back too early: refused again
    # with a retry-after of 1 (never 0)
    r = trace_run(tmp_path, [0.0, t0], {"rpm": 1}, {"retry": "groq-sdk"}, org=Org(retry_after_rounding=rounding))
    rec = r.records.iloc[1]
    assert rec["outcome"] == "ok" and rec["attempts"] == len(expected) + 1
    assert delays(r) == pytest.approx(expected[:-1], abs=1e-9)
    assert rec["admitted"] == pytest.approx(attempt_times(r)[-1] + rtt(r) + expected[-1])


@pytest.mark.parametrize("base,cap,ra_cap,delay", [
    (0.5, 60.0, None, 59.0),    # the header is longer than the backoff: wait the header (max, not min)
    (100.0, 200.0, None, 100.0),  # the backoff is longer: wait the backoff
    (0.5, 60.0, "10s", 10.0),   # the header capped at 10 s
    (0.5, 60.0, "90s", 59.0),   # a cap above the header changes nothing
])
def test_honor_retry_after_waits_the_longer_of_backoff_and_header(tmp_path, base, cap, ra_cap, delay):
    policy = {"retry": "exponential", "base": base, "cap": cap, "max_attempts": 2, "honor_retry_after": True,
              "retry_after_cap": ra_cap}
    r = trace_run(tmp_path, [0.0, 1.0], {"rpm": 1}, policy)
    rec = r.records.iloc[1]
    assert rec["attempts"] == 2
    second = rec["admitted"] if rec["outcome"] == "ok" else attempt_times(r)[-1]
    assert second == pytest.approx(1.0 + rtt(r) + delay)


def test_retry_after_ignored_unless_honoured(tmp_path):
    r = trace_run(tmp_path, [0.0, 1.0], {"rpm": 1}, {"retry": "exponential", "base": 0.5, "max_attempts": 2})
    assert delays(r) == pytest.approx([0.5])


# ---- cooldown ----------------------------------------------------------------------------------------------

def test_cooldown_waits_the_retry_after_not_the_backoff(tmp_path):
    # request 1 refused at t=1 with retry-after 59: its retry (due at 2.12) and request 2 (arriving at 2)
    # are held until 1.12 + 59 = 60.12, when the retry goes first
    r = trace_run(tmp_path, [0.0, 1.0, 2.0], {"rpm": 1},
                  {"retry": "fixed", "delay": 1.0, "max_attempts": 3, "cooldown": "retry-after"})
    rec = r.records
    assert rec.loc[0, "admitted"] == 0.0  # nothing held before the first refusal
    assert attempt_times(r)[0] == 1.0
    assert rec.loc[1, "admitted"] == pytest.approx(60.12)
    assert attempt_times(r)[1] == pytest.approx(60.12)  # request 2, refused just after
    assert rec.loc[2, "attempts"] >= 2


def test_fixed_cooldown_holds_retries_for_its_duration(tmp_path):
    r = trace_run(tmp_path, [0.0, 1.0], {"rpm": 1},
                  {"retry": "fixed", "delay": 1.0, "max_attempts": 2, "cooldown": "5s"})
    assert attempt_times(r) == pytest.approx([1.0, 1.0 + rtt(r) + 5.0])


def test_a_full_bounded_queue_drops_arrivals_during_a_cooldown(tmp_path):
    # queue_size 0: a request goes only if it can go at once; request 2 arrives during request 1's cooldown
    r = trace_run(tmp_path, [0.0, 1.0, 2.0], {"rpm": 1},
                  {"retry": "fixed", "delay": 1.0, "max_attempts": 2, "cooldown": "retry-after", "queue_size": 0})
    assert list(r.records["outcome"]) == ["ok", "ok", "dropped"]


def test_a_429_that_ends_its_request_starts_the_cooldown(tmp_path):
    # retry "none": request 1 (t=1) is refused with retry-after 59 (RPM 1, one request back a minute after
    # request 0) and gives up when it reads the 429 at 1.12; the cooldown holds request 2 (t=2) until
    # 1.12 + 59 = 60.12, when the bucket has a whole request again: it is admitted then, no 429
    r = trace_run(tmp_path, [0.0, 1.0, 2.0], {"rpm": 1}, {"retry": "none", "cooldown": "retry-after"})
    rec = r.records
    assert list(rec["outcome"]) == ["ok", "gave_up", "ok"]
    assert rec.loc[1, "finished"] == pytest.approx(1.12)
    assert rec.loc[2, "admitted"] == pytest.approx(60.12)
    assert attempt_times(r) == pytest.approx([1.0])


def test_a_last_429_starts_a_fixed_cooldown(tmp_path):
    # max_attempts 1 with a fixed 5 s cooldown: request 2 waits from 2 to 1.12 + 5 = 6.12, is refused then
    # (RPM 1: 0.1 of a request back) and gives up at 6.24
    r = trace_run(tmp_path, [0.0, 1.0, 2.0], {"rpm": 1}, {"retry": "none", "cooldown": "5s"})
    assert attempt_times(r) == pytest.approx([1.0, 6.12])
    assert list(r.records["outcome"]) == ["ok", "gave_up", "gave_up"]
    assert r.records.loc[2, "finished"] == pytest.approx(6.24)


def test_a_429_that_sends_a_request_to_its_fallback_starts_the_cooldown(tmp_path):
    # request 1 (t=1) refused by the primary (RPM 1) is read at 1.12: the 5 s cooldown holds the whole group,
    # its hop to the fallback model too, which goes at 6.12 and is admitted there
    r = trace_run(tmp_path, [0.0, 1.0], {"rpm": 1},
                  {"retry": "fixed", "delay": 1.0, "max_attempts": 2, "fallback": [SECOND], "cooldown": "5s"})
    rec = r.records
    assert list(rec["outcome"]) == ["ok", "ok"] and rec.loc[1, "model"] == SECOND
    assert rec.loc[1, "admitted"] == pytest.approx(6.12) and rec.loc[1, "attempts"] == 2


def test_the_cooldown_starts_when_the_client_reads_the_429(tmp_path):
    # request 1 is sent at 1.0 and refused (RPM 1); the client reads the 429 at 1.12.  Request 2, arriving at
    # 1.05 before that, is sent at once and refused too (retry-after 59: 0.0175 of a request back), read at
    # 1.17; request 3, at 1.2, is held by the cooldown until the later end, 1.17 + 59 = 60.17, admitted then
    r = trace_run(tmp_path, [0.0, 1.0, 1.05, 1.2], {"rpm": 1}, {"retry": "none", "cooldown": "retry-after"})
    rec = r.records
    assert attempt_times(r) == pytest.approx([1.0, 1.05])
    assert list(rec["outcome"]) == ["ok", "gave_up", "gave_up", "ok"]
    assert rec.loc[3, "admitted"] == pytest.approx(60.17)


def test_a_request_whose_deadline_passes_in_a_bounded_queue_frees_its_place(tmp_path):
    # RPM 1, a 30 s cooldown, a queue of 1, a 10 s deadline.  Request 0 (t=0) is served.  Request 1 (t=1) is
    # refused, read at 1.12: cooldown until 31.12, its retry (due 2.12) waits in the queue; request 2 (t=3)
    # finds the queue full: dropped.  Request 1's deadline (11) passes in the queue: it leaves it then, so
    # request 3 (t=12) takes the free place, and leaves it in turn at its own deadline, 22
    r = trace_run(tmp_path, [0.0, 1.0, 3.0, 12.0], {"rpm": 1},
                  {"retry": "fixed", "delay": 1.0, "max_attempts": 2, "cooldown": "30s", "queue_size": 1,
                   "deadline": "10s"})
    rec = r.records
    assert list(rec["outcome"]) == ["ok", "deadline", "dropped", "deadline"]
    assert rec["finished"].to_numpy()[1:] == pytest.approx([11.0, 3.0, 22.0])
    assert list(rec["attempts"]) == [1, 1, 0, 0]


def test_an_expired_first_attempt_leaves_the_queue_at_its_deadline(tmp_path):
    # RPM 1, a fixed 20 s cooldown, a queue of 1, a 10 s deadline, retries 100 s apart (past any deadline).
    # Request 1 (t=1) is refused, read at 1.12: cooldown until 21.12, and its retry would come after its
    # deadline, so it ends at 11.  Request 2 (t=2) waits in the queue; request 3 (t=5) finds it full: dropped.
    # Request 2 leaves the queue at its deadline, 12, so request 4 (t=13) finds room; the cooldown lets it go
    # at 21.12, refused (RPM: 0.35 of a request back), and its retry would come after 23: it ends at 23
    r = trace_run(tmp_path, [0.0, 1.0, 2.0, 5.0, 13.0], {"rpm": 1},
                  {"retry": "fixed", "delay": 100.0, "max_attempts": 2, "cooldown": "20s", "queue_size": 1,
                   "deadline": "10s"})
    rec = r.records
    assert list(rec["outcome"]) == ["ok", "deadline", "deadline", "dropped", "deadline"]
    assert rec["finished"].to_numpy()[1:] == pytest.approx([11.0, 12.0, 5.0, 23.0])
    assert list(rec["attempts"]) == [1, 1, 0, 0, 1]
    assert attempt_times(r) == pytest.approx([1.0, 21.12])


def test_a_request_whose_deadline_passes_behind_the_queues_head_leaves_it_too(tmp_path):
    # RPM 1, a 30 s cooldown, a queue of 2, a 10 s deadline, a retry 1 s after a 429 is read.  Request 0 (t=0)
    # is served.  Requests 1 (t=1) and 2 (t=1.05) go out before the first 429 is read (1.12) and are refused;
    # their retries (2.12, then 2.17) wait in the queue, each put in front: [2, 1].  Request 1, behind the
    # head, reaches its deadline at 11 and leaves: request 3 (t=11.02) finds a place (with request 1 still
    # there it was dropped), and leaves at its own deadline, 21.02, after request 2 at 11.05
    r = trace_run(tmp_path, [0.0, 1.0, 1.05, 11.02], {"rpm": 1},
                  {"retry": "fixed", "delay": 1.0, "max_attempts": 2, "cooldown": "30s", "queue_size": 2,
                   "deadline": "10s"})
    rec = r.records
    assert list(rec["outcome"]) == ["ok", "deadline", "deadline", "deadline"]
    assert rec["finished"].to_numpy()[1:] == pytest.approx([11.0, 11.05, 21.02])
    assert list(rec["attempts"]) == [1, 1, 1, 0]
    assert attempt_times(r) == pytest.approx([1.0, 1.05])


def test_when_the_queues_head_leaves_at_its_deadline_the_next_request_is_asked_about_at_once(tmp_path):
    # TPM 1 000 (16.7 tokens/s back), a pacer at 100 %, a 10 s deadline.  Request 0 (t=0, 700 tokens) goes at
    # once (300 left); request 1 (t=1, 900) waits for its tokens until ~36 s; request 2 (t=1.1, 340 tokens)
    # waits behind it.  Request 1 leaves the queue at its deadline, 11, and request 2, the new head, fits then
    # (483 tokens back): it goes at 11, not never.  Its answer (a 0.12 s round trip at least) comes after its
    # own deadline, 11.1: a deadline miss then, while it is in flight, out of the queue
    path = tmp_path / "trace.csv"
    pd.DataFrame({"timestamp": [0.0, 1.0, 1.1], "prompt_tokens": [690, 890, 40],
                  "max_tokens": [10, 10, 300]}).to_csv(path, index=False)
    catalog = Catalog.published().copy().override("free", MODEL, **{**NO_LIMITS, "tpm": 1000})
    c = Client(name="c", model=MODEL, arrival=arrival(kind="trace", file=str(path)), policy="p")
    r = run(c, duration=2.0, seed=1, org=Org(tier="free"), catalog=catalog, service=CONST_NET,
            extra_policies={"p": {"pacing": 1.0, "deadline": "10s"}})
    rec = r.records
    assert list(rec["outcome"]) == ["ok", "deadline", "deadline"]
    assert rec["admitted"].to_numpy()[[0, 2]] == pytest.approx([0.0, 11.0])
    assert rec["finished"].to_numpy()[1:] == pytest.approx([11.0, 11.1])


# ---- adaptive pacing (reads x-ratelimit-* headers: RPD and TPM) --------------------------------------------

ADAPTIVE = {"retry": "exponential", "base": 1.0, "max_attempts": 3, "adaptive": True}


# The client reads an attempt's headers with its answer (a success: when it has been served, its ``finished``)
# and counts their reset from then: each wait below ends when the bucket admits the request plus that lag.

def test_adaptive_waits_for_the_rpd_the_headers_announce(tmp_path):
    # RPD 3 (one request back every 28 800 s): after three requests the headers written at 2 s announce
    # 0.00007 left; the fourth waits until one whole request has refilled since t=0 (when the bucket admits
    # it), counted from when the third's answer was read: no 429
    r = trace_run(tmp_path, [0.0, 1.0, 2.0, 3.0], {"rpd": 3}, ADAPTIVE, drain=90_000.0)
    assert len(r.refusals) == 0
    rec = r.records
    assert 2.0 < rec.loc[2, "finished"] < 3.0  # (read before the fourth arrived)
    assert rec.loc[3, "admitted"] == pytest.approx(86_400 / 3 + rec.loc[2, "finished"] - 2.0, abs=0.01)


def test_adaptive_waits_for_a_whole_tpm_budget(tmp_path):
    # each request costs 20 tokens = the whole TPM: the second waits until the bucket is full again (60 s after
    # the first was charged), counted from the first's answer
    r = trace_run(tmp_path, [0.0, 1.0], {"tpm": 20}, ADAPTIVE)
    assert len(r.refusals) == 0
    assert r.records.loc[1, "admitted"] == pytest.approx(60.0 + r.records.loc[0, "finished"])


def test_adaptive_holds_even_a_short_wait(tmp_path):
    # TPM 1200 emptied by 60 requests of 20 tokens at t=0 refills 20 tokens a second: the one at 0.5 s waits
    # 1 s from the answer of the last of them sent (the latest news, whichever answer came back last)
    r = trace_run(tmp_path, [0.0] * 60 + [0.5], {"tpm": 1200}, ADAPTIVE)
    assert len(r.refusals) == 0
    rec = r.records
    assert rec.loc[59, "finished"] < 0.5 < rec["finished"][:60].max()  # (some answers still out at 0.5 s)
    assert rec.loc[60, "admitted"] == pytest.approx(1.0 + rec.loc[59, "finished"])


def test_adaptive_sent_before_the_first_answer_knows_nothing_yet(tmp_path):
    # TPM 20 (one request's tokens): the second goes at 0.1 s, before the first's answer is back, and is
    # refused; the third, at 1 s, waits on what the client read: the headers instantly read (the old model)
    # held the second too
    r = trace_run(tmp_path, [0.0, 0.1, 1.0], {"tpm": 20}, {**ADAPTIVE, "max_attempts": 1})
    rec = r.records
    assert rec.loc[0, "finished"] > 0.1
    assert list(rec["outcome"]) == ["ok", "gave_up", "ok"] and len(r.refusals) == 1
    assert rec.loc[2, "admitted"] > 59.0


def test_adaptive_requests_let_go_together_take_each_other_off_the_budget(tmp_path):
    # TPM 40 (two requests): two at 0 s empty it; four queued at 5 s all wait on the same headers (nothing
    # left, a request's 20 tokens back every 30 s).  When the wait ends, the first goes and the client counts
    # it: the next waits another 30 s, and so on; none is refused.  Without that count, the four went together
    # and three came back 429.
    r = trace_run(tmp_path, [0.0, 0.0, 5.0, 5.0, 5.0, 5.0], {"tpm": 40}, ADAPTIVE, drain=600.0)
    assert len(r.refusals) == 0
    admitted = np.sort(r.records["admitted"].to_numpy()[2:])
    assert 30.0 < admitted[0] < 31.0
    assert (np.diff(admitted) > 29.0).all() and (np.diff(admitted) < 31.0).all()


def test_client_policy_defaults_retry_nothing():
    # a bare ClientPolicy (what the engine builds for retry "none"): one attempt, headers not honoured,
    # no fallback
    from sim.policies import ClientPolicy, FixedDelay

    p = ClientPolicy(FixedDelay(2.0), u=lambda: 0.5)
    assert p.max_attempts == 1 and p.next_model(0, 429) == 0
    assert p.backoff(0, 1, 30) == 2.0 and not p.gated


# ---- fallback ----------------------------------------------------------------------------------------------

def test_fallback_tries_the_next_model_at_once_then_starts_again_from_the_primary(tmp_path):
    # both models allow one request a day; request 0 takes the primary, request 1 the fallback; request 2
    # is refused by both, waits its delay, and starts again from the primary
    r = trace_run(tmp_path, [0.0, 0.0, 1.0], {"rpd": 1},
                  {"retry": "fixed", "delay": 1.0, "max_attempts": 4, "fallback": [SECOND]},
                  fallback_limits={"rpd": 1})
    rec = r.records
    assert list(rec["outcome"]) == ["ok", "ok", "gave_up"]
    assert list(rec["model"].astype(str))[:2] == [MODEL, SECOND]
    ref = r.refusals
    later = ref[ref["time"] >= 1.0]
    assert later["time"].to_numpy() == pytest.approx([1.0, 1.12, 2.24, 2.36])
    assert list(later["model"].astype(str)) == [MODEL, SECOND, MODEL, SECOND]
    assert rec.loc[2, "attempts"] == 4 and rec.loc[2, "finished"] == pytest.approx(2.48)


def test_max_attempts_counts_the_fallback_hops(tmp_path):
    # as above with max_attempts 3: request 2's attempts are the primary at 1.0, the fallback at 1.12 and the
    # primary again at 2.24 (1.12 + 0.12 + its 1 s delay); refused there, it has made its 3 attempts: it gives
    # up when it reads that 429, at 2.36, without a fourth attempt on the fallback
    r = trace_run(tmp_path, [0.0, 0.0, 1.0], {"rpd": 1},
                  {"retry": "fixed", "delay": 1.0, "max_attempts": 3, "fallback": [SECOND]},
                  fallback_limits={"rpd": 1})
    rec = r.records
    assert list(rec["outcome"]) == ["ok", "ok", "gave_up"]
    later = r.refusals[r.refusals["time"] >= 1.0]
    assert later["time"].to_numpy() == pytest.approx([1.0, 1.12, 2.24])
    assert list(later["model"].astype(str)) == [MODEL, SECOND, MODEL]
    assert rec.loc[2, "attempts"] == 3 and rec.loc[2, "finished"] == pytest.approx(2.36)
    assert rec.loc[2, "model"] == MODEL  # the model it last tried


def test_one_attempt_allowed_leaves_no_hop_to_the_fallback(tmp_path):
    # max_attempts 1 (retry "none"): the request refused by the primary has made its one attempt; it gives up
    # at 1.12 and never tries the fallback (which would have admitted it)
    from sim.config import resolve_policy
    r = trace_run(tmp_path, [0.0, 1.0], {"rpm": 1}, {"retry": "none", "fallback": [SECOND]})
    assert list(r.records["outcome"]) == ["ok", "gave_up"]
    assert list(r.records["attempts"]) == [1, 1] and r.records.loc[1, "finished"] == pytest.approx(1.12)
    notes = resolve_policy("p", {"retry": "none", "fallback": [SECOND]}).inert()
    assert any("never tried" in n and "max_attempts = 1" in n for n in notes)


# ---- random delays: distributions --------------------------------------------------------------------------

def spaced_run(tmp_path, policy, n=300, attempts=3, seed=3):
    """``n`` requests refused for a day, SPACING s apart; returns the delays (n x attempts-1)."""
    r = trace_run(tmp_path, [0.0] + [SPACING * k for k in range(1, n + 1)], {"rpd": 1},
                  {**policy, "max_attempts": attempts}, seed=seed)
    t = attempt_times(r)
    groups = np.floor(t / SPACING + 1e-9)
    out = np.array([np.diff(t[groups == k]) for k in range(1, n + 1)]) - rtt(r)
    assert out.shape == (n, attempts - 1)
    return out


def ks_uniform(x, low, high):
    return stats.kstest(x, stats.uniform(low, high - low).cdf).pvalue


def test_full_jitter_is_uniform_up_to_the_exponential_ceiling(tmp_path):
    d = spaced_run(tmp_path, {"retry": "exponential", "jitter": "full", "base": 2.0, "cap": 5.0})
    assert ks_uniform(d[:, 0], 0, 2) > 1e-3 and ks_uniform(d[:, 1], 0, 4) > 1e-3
    d = spaced_run(tmp_path, {"retry": "exponential", "jitter": "full", "base": 2.0, "cap": 3.0})
    assert ks_uniform(d[:, 1], 0, 3) > 1e-3   # the ceiling min(cap, base 2^n) = 3


def test_equal_jitter_is_half_the_ceiling_plus_a_uniform_half(tmp_path):
    d = spaced_run(tmp_path, {"retry": "exponential", "jitter": "equal", "base": 2.0, "cap": 60.0})
    assert ks_uniform(d[:, 0], 1, 2) > 1e-3 and ks_uniform(d[:, 1], 2, 4) > 1e-3


def test_decorrelated_jitter_draws_between_base_and_three_times_the_previous_delay(tmp_path):
    base = 2.0
    d = spaced_run(tmp_path, {"retry": "exponential", "jitter": "decorrelated", "base": base, "cap": 1000.0})
    assert ks_uniform(d[:, 0], base, 3 * base) > 1e-3
    # given the first delay d1, the second is U(base, 3 d1): its position in that interval is U(0, 1)
    u = (d[:, 1] - base) / (3 * d[:, 0] - base)
    assert ks_uniform(u, 0, 1) > 1e-3


def test_decorrelated_jitter_is_capped(tmp_path):
    d = spaced_run(tmp_path, {"retry": "exponential", "jitter": "decorrelated", "base": 2.0, "cap": 5.0},
                   attempts=2)[:, 0]
    assert d.max() == pytest.approx(5.0)
    at_cap = np.mean(np.isclose(d, 5.0))  # P(U(2, 6) > 5) = 1/4
    assert stats.binomtest(int(at_cap * len(d)), len(d), 0.25).pvalue > 1e-3
    assert ks_uniform(d[~np.isclose(d, 5.0)], 2, 5) > 1e-3


def sdk_timeouts(retry_index, n, retry_after=None, seed=0):
    """``n`` sleeps of the real groq SDK before retry number ``retry_index`` (0 = the first retry)."""
    import random

    import groq
    from groq import _base_client
    from groq._models import FinalRequestOptions

    client = groq.Groq(api_key="test-key-not-used")
    options = FinalRequestOptions.construct(method="post", url="/chat/completions")
    headers = None if retry_after is None else {"retry-after": str(retry_after)}
    rng = random.Random(seed)
    saved = _base_client.random
    _base_client.random = rng.random
    try:
        remaining = client.max_retries - retry_index
        return np.array([client._calculate_retry_timeout(remaining, options, headers) for _ in range(n)])
    finally:
        _base_client.random = saved


def test_groq_sdk_backoff_matches_the_sdk_distribution(tmp_path):
    d = spaced_run(tmp_path, {"retry": "groq-sdk"})  # retry-after 86 400 s: the SDK's backoff applies
    for k in (0, 1):
        ref = sdk_timeouts(k, 4000)
        assert stats.ks_2samp(d[:, k], ref).pvalue > 1e-3, k
        assert d[:, k].min() >= ref.min() - 0.01 and d[:, k].max() <= 0.5 * 2 ** k + 1e-9


def test_sdk_reference_honours_retry_after_up_to_60s():
    # the rule the engine's groq-sdk policy copies, read from the SDK itself
    assert sdk_timeouts(0, 1, retry_after=60)[0] == 60.0
    assert sdk_timeouts(0, 1, retry_after=1)[0] == 1.0
    assert sdk_timeouts(0, 1, retry_after=61)[0] <= 0.5
    assert math.isclose(sdk_timeouts(1, 200).max(), 1.0, abs_tol=0.01)


def test_no_retry_due_exactly_at_the_deadline(tmp_path):
    # refused at 0 (answer at 0.12); the retry would go out at 0.12 + 1.0 = 1.12 = the deadline: it is not sent
    r = trace_run(tmp_path, [0.0, 0.0], {"rpd": 1},
                  {"retry": "fixed", "delay": 1.0, "max_attempts": 5, "deadline": "1.12s"})
    assert 0.12 + 1.0 == 0.0 + 1.12  # (the tie is exact in floating point)
    rec = r.records.iloc[1]
    assert rec["outcome"] == "deadline" and rec["finished"] == 1.12 and rec["attempts"] == 1


def test_an_answer_exactly_at_the_deadline_is_not_a_miss(tmp_path):
    # refused at 0, the 429 read one round trip later: with the deadline exactly then, the client read it in
    # time (only an answer that comes later is a deadline miss, docs/modelling.md) and gives up on it; a
    # deadline one float earlier makes it a miss
    read = trace_run(tmp_path, [0.0, 0.0], {"rpd": 1}, {"max_attempts": 1}).records.iloc[1]["finished"]
    assert read == pytest.approx(0.12)
    for deadline, outcome in ((read, "gave_up"), (np.nextafter(read, 0.0), "deadline")):
        rec = trace_run(tmp_path, [0.0, 0.0], {"rpd": 1}, {"max_attempts": 1, "deadline": float(deadline)}).records
        assert rec.iloc[1]["outcome"] == outcome and rec.iloc[1]["finished"] == deadline


def test_no_fallback_attempt_after_the_deadline(tmp_path):
    # the primary's 429 arrives at 0.12, after the 0.1 s deadline: the client has given up, so the fallback
    # model must not be tried (it once was, and the attempt took the fallback's only request of the day)
    r = trace_run(tmp_path, [0.0, 0.0], {"rpd": 1},
                  {"retry": "fixed", "delay": 1.0, "max_attempts": 4, "fallback": [SECOND], "deadline": "0.1s"},
                  fallback_limits={"rpd": 1})
    rec = r.records.iloc[1]
    assert rec["outcome"] == "deadline" and rec["finished"] == 0.1
    assert rec["attempts"] == 1


def test_attempts_given_up_by_the_timeout_on_flex_are_kept_as_flex_admissions():
    """On Flex every admitted attempt is charged to the flex limits: the admissions a client's timeout gave up
    (all but each request's last, none refused here) are kept with the tier that admitted them."""
    import warnings
    data = {"scenario": {"duration": "5m", "drain": "10m"},
            "org": {"tier": "developer", "service_tier": "flex", "flex": {"scarce": 0}},
            "policies": {"p": {"retry": "fixed", "delay": 0.5, "max_attempts": 3, "timeout": 1.0, "retry_on": [429]}},
            "clients": [{"name": "c", "model": "openai/gpt-oss-20b", "policy": "p",
                         "arrival": {"kind": "poisson", "rate": "20/min"}, "prompt_tokens": 100, "max_tokens": 2000,
                         "completion_tokens": {"dist": "uniform", "low": 500, "high": 2000}}]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scenario = sim.scenario_from_dict(data, source="<test>")
    r = sim.simulate(scenario.spec(), scenario.seed(0))
    rec, earlier = r.records, r.earlier_admissions
    assert (rec["n429"] == 0).all() and (rec["outcome"] == "error").sum() > 10  # three timeouts each
    assert len(earlier) == (rec["attempts"] - 1).sum() > 0
    assert set(earlier["service_tier"]) == {"flex"} and set(rec["service_tier"]) == {"flex"}
