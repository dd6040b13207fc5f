"""The simulation engine: reproducibility, conservation, every policy path, faithful limits."""
import math

import numpy as np
import pandas as pd
import pytest

from sim import scenario_from_dict, simulate
from sim.config import Accounting, Org, arrival
from sim.records import OUTCOMES
from sim.service import service_models
from sim.summary import summarize
from tests.helpers import ONE_HOP, client, run

FREE_70B = "llama-3.3-70b-versatile"
RTT = service_models()[FREE_70B].rtt_median
#: the service table with a constant network (p90 = median): tests that time gaps exactly subtract it
CONST_NET = service_models({FREE_70B: {"rtt_p90": RTT}})


def mixed_workload():
    return [
        client("chat", rate="20/min", prompt_tokens={"dist": "lognormal", "median": 600, "p95": 2000},
               completion_tokens={"dist": "uniform", "low": 50, "high": 400}, policy="groq-sdk"),
        client("batch", model="llama-3.1-8b-instant", kind="bursty",
               arrival=arrival(kind="bursty", rate="40/min", burstiness=3.0), prompt_tokens=1500, max_tokens=300,
               policy="full-jitter"),
        client("voice", model="whisper-large-v3-turbo",
               arrival=arrival(kind="onoff", rate="30/min", on="5m", off="10m"),
               prompt_tokens=0, max_tokens=0, audio_seconds={"dist": "uniform", "low": 10, "high": 120},
               policy="retry-after"),
    ]


def test_one_hour_mixed_workload_is_reproducible_bit_for_bit():
    a = run(mixed_workload(), duration=3600, seed=42)
    b = run(mixed_workload(), duration=3600, seed=42)
    c = run(mixed_workload(), duration=3600, seed=43)
    pd.testing.assert_frame_equal(a.records, b.records)
    pd.testing.assert_frame_equal(a.refusals, b.refusals)
    assert summarize(a) == summarize(b) or str(summarize(a)) == str(summarize(b))
    assert not a.records[["created", "finished"]].equals(c.records[["created", "finished"]])
    assert set(a.records["client"]) == {"chat", "batch", "voice"}


def test_conservation_every_request_has_exactly_one_outcome():
    r = run(mixed_workload(), duration=1800, seed=3, org=Org(error_rate=0.05))
    rec = r.records
    s = summarize(r)
    assert rec["outcome"].notna().all()
    assert s["offered"] == sum(s[k] for k in OUTCOMES)
    assert s["offered"] == len(rec)
    assert (rec["finished"].dropna() >= rec.loc[rec["finished"].notna(), "created"] - 1e-9).all()
    ok = rec[rec["outcome"] == "ok"]
    np.testing.assert_allclose(ok["total_time"], ok["prompt_time"] + ok["completion_time"])  # queue apart
    assert (ok["latency"] >= ok["queue_time"] + ok["total_time"]).all()


def test_overload_throughput_equals_binding_limit_rate():
    # free 70B: RPM 30 binds for 100-token requests (TPM 12K would allow 120/min); patient retries
    r = run(client(rate="60/min", prompt_tokens=50, max_tokens=50, policy="retry-after"),
            duration=1500, warmup=300, drain=0)
    s = summarize(r)
    assert s["binding"] == "rpm"
    assert s["throughput_rpm"] == pytest.approx(30.0, rel=0.03)


def test_tpm_binds_for_large_requests():
    # 2 000 tokens each: TPM 12K allows 6/min; RPM 30 does not bind
    r = run(client(rate="20/min", prompt_tokens=1500, max_tokens=500, policy="retry-after"),
            duration=1500, warmup=300, drain=0, org=Org(tier="free"))
    s = summarize(r)
    assert s["binding"] in ("tpm", "tpd")
    assert s["throughput_rpm"] <= 6.0 * 1.03 + 100_000 / 2000 / 20  # TPM rate (+ TPD's initial budget share)


def test_no_retry_gives_up_after_one_attempt():
    rec = run(client(rate="120/min", policy="no-retry"), duration=300).records
    assert (rec["attempts"] == 1).all()
    assert set(rec["outcome"]) == {"ok", "gave_up"}
    assert (rec.loc[rec["outcome"] == "gave_up", "n429"] == 1).all()


def test_groq_sdk_retries_twice_then_gives_up_honouring_retry_after():
    rec = run(client(rate="300/min", prompt_tokens=10, max_tokens=10, policy="groq-sdk"), duration=300).records
    assert rec["attempts"].max() == 3
    gave_up = rec[rec["outcome"] == "gave_up"]
    assert len(gave_up) > 0 and (gave_up["attempts"] == 3).all() and (gave_up["n429"] == 3).all()
    # RPM 30 refusals carry retry-after <= 60 s, which the SDK honours instead of its 0.5/1 s backoff:
    # time from creation to giving up is at least two whole seconds
    assert (gave_up["latency"] >= 2.0).all()


def test_groq_sdk_backoff_without_retry_after():
    # 503 faults carry no retry-after: the SDK waits 0.5*2^n * (1 - 0.25 U): 0.375-0.5 s then 0.75-1 s
    rec = run(client(rate="60/min", policy="groq-sdk"), duration=120, org=Org(error_rate=1.0),
              service=CONST_NET).records
    assert (rec["outcome"] == "error").all() and (rec["attempts"] == 3).all()
    waited = rec["latency"] - 3 * RTT
    assert waited.min() >= 0.375 + 0.75 - 1e-9 and waited.max() <= 0.5 + 1.0 + 1e-9


def _retry_times(policy, extra=None):
    # 60 requests at t ~ 0 against RPM 30 (free 70B): the second half is refused at once
    r = run(client(rate="6000/min", kind="constant", prompt_tokens=10, max_tokens=10, policy=policy),
            duration=0.6, extra_policies=extra)
    return r.refusals["time"].to_numpy(), r.records


def test_full_jitter_spreads_retries_and_no_jitter_clumps_them():
    clumped, _ = _retry_times("p", {"p": {"retry": "exponential", "base": 1.0, "cap": 8, "max_attempts": 2}})
    spread, _ = _retry_times("p", {"p": {"retry": "exponential", "jitter": "full", "base": 1.0, "cap": 8,
                                         "max_attempts": 2}})
    second_clumped = clumped[clumped > 0.7]
    second_spread = spread[spread > 0.7]
    assert np.ptp(second_clumped) < 0.7  # everybody retried one second after their 429
    assert np.unique(np.round(second_spread, 3)).size > 0.8 * second_spread.size
    assert np.ptp(spread[spread > 0.6]) > 0.5


@pytest.mark.parametrize("jitter,low,high", [("none", 2.0, 2.0), ("full", 0.0, 2.0), ("equal", 1.0, 2.0),
                                             ("decorrelated", 1.0, 3.0)])
def test_jitter_delays_follow_the_standard_definitions(jitter, low, high):
    # error_rate 1: every attempt fails; attempts 1 and 2 are separated by delay(n=0)=base, then delay(n=1)
    extra = {"p": {"retry": "exponential", "jitter": jitter, "base": 1.0, "cap": 60, "max_attempts": 3}}
    rec = run(client(rate="60/min", policy="p"), duration=300, org=Org(error_rate=1.0), extra_policies=extra,
              service=CONST_NET).records
    assert (rec["attempts"] == 3).all()
    total_wait = rec["latency"].to_numpy() - 3 * RTT
    # first delay: none=1, full U(0,1), equal U(.5,1), decorrelated U(1,3); second: 2, U(0,2), U(1,2), U(1,3*d1)
    first = {"none": (1, 1), "full": (0, 1), "equal": (0.5, 1), "decorrelated": (1, 3)}[jitter]
    second_high = high if jitter != "decorrelated" else 9.0
    assert total_wait.min() >= first[0] + low - 1e-9
    assert total_wait.max() <= first[1] + second_high + 1e-9
    if jitter != "none":
        assert np.std(total_wait) > 0.1


def test_pacing_yields_no_429s_under_overload():
    r = run(client(rate="90/min", prompt_tokens=200, max_tokens=100, policy="paced"), duration=900)
    s = summarize(r)
    assert s["n429"] == 0
    assert s["ok"] > 0
    assert s["mean_wait"] > 1.0  # requests queued at the client instead


def test_adaptive_pacing_cuts_429s_on_a_token_bound_workload():
    # free 8B: TPM 6K binds for 2 000-token requests (3/min); TPD 500K does not within 15 minutes
    kw = dict(model="llama-3.1-8b-instant", rate="6/min", prompt_tokens=1500, max_tokens=500)
    plain = summarize(run(client(policy="retry-after", **kw), duration=900, org=Org(tier="developer")))
    base = summarize(run(client(policy="retry-after", **kw), duration=900))
    adaptive = summarize(run(client(policy="adaptive", **kw), duration=900))
    assert plain["n429"] == 0
    assert adaptive["n429"] < 0.5 * base["n429"]


def test_cooldown_pauses_the_whole_client():
    """Nothing is sent while a cooldown holds: from when the client reads a 429 (sent + the round trip, a
    constant 0.12 s here) for the cooldown's 5 s.  What goes out before the client has read it is not held."""
    net = service_models({FREE_70B: {"rtt_median": 0.12, "rtt_p90": 0.12}})
    r = run(client(rate="120/min", prompt_tokens=10, max_tokens=10, policy="cool"), duration=600, service=net,
            extra_policies={"cool": {"extends": "cooldown", "cooldown": 5.0}})
    refused = r.refusals["time"].to_numpy()
    sent = np.sort(np.concatenate([refused, r.records["admitted"].dropna().to_numpy()]))
    read = refused + 0.12
    during = np.searchsorted(sent, read + 5.0 - 1e-9) - np.searchsorted(sent, read + 1e-9)
    assert len(refused) > 100 and (during == 0).all()
    before = np.searchsorted(sent, read - 1e-9) - np.searchsorted(sent, refused + 1e-9)  # sent, 429 unread
    assert (before > 0).sum() > 10


def test_in_flight_cap_serialises_requests():
    extra = {"one": {"retry": "none", "max_in_flight": 1}}
    rec = run(client(model="llama-3.1-8b-instant", rate="120/min", policy="one"), duration=120,
              org=Org(tier="developer"), extra_policies=extra).records
    ok = rec[rec["outcome"] == "ok"].sort_values("admitted")
    assert len(ok) == len(rec)
    starts, ends = ok["admitted"].to_numpy(), ok["finished"].to_numpy()
    assert (starts[1:] >= ends[:-1] - 1e-9).all()


def test_bounded_queue_drops_when_full():
    extra = {"tight": {"retry": "none", "max_in_flight": 1, "queue_size": 2}}
    rec = run(client(model="llama-3.1-8b-instant", rate="600/min", policy="tight"), duration=60,
              org=Org(tier="developer"), extra_policies=extra).records
    assert (rec["outcome"] == "dropped").sum() > 0
    assert (rec.loc[rec["outcome"] == "dropped", "attempts"] == 0).all()


@pytest.mark.parametrize("gate", [{"pacing": 0.9}, {"adaptive": True}, {"max_in_flight": 1}])
def test_a_queue_of_size_zero_sends_at_once_or_drops_whatever_the_gate(gate):
    """queue_size = 0: no client queue, a request that cannot go at once is dropped.  The pacer's and the
    adaptive client's hold depends on the request (no side-effect-free check), and such a request used to
    wait in a queue of one."""
    extra = {"q0": {"retry": "none", "queue_size": 0, **gate}, "q1": {"retry": "none", "queue_size": 1, **gate}}
    runs = {name: run(client(rate="120/min", prompt_tokens=1000, max_tokens=500, policy=name), duration=300,
                      extra_policies=extra).records for name in extra}
    rec = runs["q0"]
    sent = rec[rec["outcome"] != "dropped"]
    assert (rec["outcome"] == "dropped").sum() > 0 and len(sent) > 0
    assert (sent["admitted"].dropna() == sent["created"][sent["admitted"].notna()]).all()  # nobody waited
    one = runs["q1"]
    waited = one["admitted"] > one["created"]
    assert waited.sum() > 0 and (one["outcome"] == "dropped").sum() < (rec["outcome"] == "dropped").sum()


def test_deadline_ends_requests_at_created_plus_deadline():
    extra = {"d": {"retry": "fixed", "delay": 2.0, "max_attempts": 100, "deadline": 5.0}}
    rec = run(client(rate="120/min", prompt_tokens=10, max_tokens=10, policy="d"), duration=300,
              extra_policies=extra).records
    late = rec[rec["outcome"] == "deadline"]
    assert len(late) > 0
    np.testing.assert_allclose(late["latency"], 5.0)
    assert (rec.loc[rec["outcome"] == "ok", "latency"] <= 5.0).all()


def test_request_too_large_is_413_not_retried():
    rec = run(client(rate="10/min", prompt_tokens=13_000, max_tokens=100, policy="groq-sdk"), duration=120).records
    assert (rec["outcome"] == "too_large").all()
    assert (rec["attempts"] == 1).all() and (rec["n429"] == 0).all()
    assert (rec["refused_by"] == "tpm").all()


def test_fallback_sends_429s_to_the_second_model():
    extra = {"fb": {**ONE_HOP, "fallback": ["llama-3.1-8b-instant"]}}
    rec = run(client(rate="90/min", prompt_tokens=100, max_tokens=100, policy="fb"), duration=300,
              extra_policies=extra).records
    ok = rec[rec["outcome"] == "ok"]
    assert set(ok["model"]) == {FREE_70B, "llama-3.1-8b-instant"}
    assert (ok.loc[ok["model"] == "llama-3.1-8b-instant", "attempts"] == 2).all()


def test_faults_exhaust_retries_as_errors():
    rec = run(client(rate="60/min", policy="full-jitter"), duration=120, org=Org(error_rate=1.0)).records
    assert (rec["outcome"] == "error").all() and (rec["attempts"] == 6).all() and (rec["n429"] == 0).all()


def test_closed_loop_keeps_at_most_n_users_busy():
    users = 3
    closed = arrival(kind="closed", users=users, think="2s")
    rec = run(client(model="llama-3.1-8b-instant", arrival=closed), duration=600, org=Org(tier="developer")).records
    events = np.concatenate([np.stack([rec["created"], np.ones(len(rec))], 1),
                             np.stack([rec["finished"], -np.ones(len(rec))], 1)])
    events = events[np.lexsort((events[:, 1], events[:, 0]))]
    assert np.cumsum(events[:, 1]).max() <= users
    cycle = 2.0 + rec["latency"].mean()
    assert len(rec) == pytest.approx(users * 600 / cycle, rel=0.1)


def _tpm_bound(accounting):
    # free 8B: TPM 6K binds, TPD 500K does not within 20 minutes
    return summarize(run(client(model="llama-3.1-8b-instant", rate="30/min", prompt_tokens=400, max_tokens=1000,
                      completion_tokens={"dist": "fixed", "value": 100}, policy="retry-after"),
               duration=1200, warmup=300, drain=0, org=Org(tier="free", accounting=accounting)))


def test_token_accounting_changes_what_fits():
    reserve = _tpm_bound(Accounting(charge="max_tokens"))
    refund = _tpm_bound(Accounting(charge="max_tokens", refund_unused=True))
    actual = _tpm_bound(Accounting(charge="actual"))
    cached = _tpm_bound(Accounting(charge="actual", cache_hit_ratio=0.5))
    # reserving 1 400 tokens/request fits 6000/1400 per minute; charging the actual 500 fits 12/min;
    # caching half the prompt (300 charged) fits 20/min
    assert reserve["throughput_rpm"] == pytest.approx(6_000 / 1400, rel=0.05)
    assert refund["throughput_rpm"] > 2 * reserve["throughput_rpm"]
    assert actual["throughput_rpm"] == pytest.approx(6_000 / 500, rel=0.05)
    assert cached["throughput_rpm"] == pytest.approx(6_000 / 300, rel=0.05)


def test_audio_is_charged_against_ash():
    voice = client(model="whisper-large-v3", rate="10/min", prompt_tokens=0, max_tokens=0, audio_seconds=60,
                   policy="retry-after")
    s = summarize(run(voice, duration=5400, warmup=1800, drain=0))  # after the first hour's full bucket
    # ASH 7 200 audio-seconds/hour = 120 one-minute files an hour = 2/min
    assert s["binding"] in ("ash", "asd")
    assert s["throughput_rpm"] == pytest.approx(2.0, rel=0.05)


def test_text_to_speech_is_charged_its_characters_only():
    # playai-tts on free: TPM 1.2K, TPD 3.6K characters (docs/modelling.md: characters are its "tokens"); a
    # 100-character request reserves no max_tokens, so TPD admits exactly 36 of them in 10 minutes (its
    # refill, 25 characters, does not make a 37th); charging the 512-token chat default on top let in 5
    sc = scenario_from_dict({"scenario": {"name": "tts", "duration": "10m", "seed": 1}, "clients": [
        {"name": "voice", "model": "playai-tts", "arrival": {"kind": "poisson", "rate": "12/min"},
         "prompt_tokens": {"dist": "fixed", "value": 100}}]})
    rec = simulate(sc.spec(), sc.seed(0)).records  # (a model shut down on 2025-12-31: a warning, ignored here)
    assert (rec["charged_tokens"] == 100).all() and (rec["max_tokens"] == 0).all()
    ok = rec[rec["outcome"] == "ok"]
    assert len(ok) == 36 and (ok["completion_tokens"] == 0).all() and (ok["completion_time"] == 0).all()
    # synthesis at 140 characters/s (an assumption) divided by the request's speed factor S (lognormal, mean
    # 1, sigma 0.3168): the median of 1/S is exp(sigma^2 / 2)
    assert ok["prompt_time"].median() == pytest.approx((0.00505 + 100 / 140) * np.exp(0.3168**2 / 2), rel=0.15)


def test_service_speeds_match_the_parameter_table():
    rec = run(client(model="llama-3.1-8b-instant", rate="120/min", prompt_tokens=1000, max_tokens=400),
              duration=1800, org=Org(tier="developer")).records
    ok = rec[rec["outcome"] == "ok"]
    speed = ok["completion_tokens"] / ok["completion_time"]
    assert speed.mean() == pytest.approx(560, rel=0.02)
    assert speed.std() > 0.05 * 560  # speeds vary request to request
    assert np.median(ok["queue_time"]) == pytest.approx(service_models()["llama-3.1-8b-instant"].queue_median, rel=0.1)


def test_trace_replay_is_exact(tmp_path):
    trace = tmp_path / "t.csv"
    pd.DataFrame({"timestamp": [0.5, 1.25, 7.0, 30.0], "prompt_tokens": [10, 20, 30, 40],
                  "max_tokens": [5, 6, 7, 8],
                  "model": ["llama-3.1-8b-instant"] * 2 + [FREE_70B] * 2}).to_csv(trace, index=False)
    rec = run(client(arrival=arrival(kind="trace", file=str(trace))), duration=60, org=Org(tier="developer")).records
    assert rec["created"].tolist() == [0.5, 1.25, 7.0, 30.0]
    assert rec["prompt_tokens"].tolist() == [10, 20, 30, 40]
    assert rec["max_tokens"].tolist() == [5, 6, 7, 8]
    assert rec["model"].astype(str).tolist() == ["llama-3.1-8b-instant"] * 2 + [FREE_70B] * 2


def test_thousands_of_retries_do_not_overflow_the_backoff():
    extra = {"stubborn": {"retry": "exponential", "base": 0.001, "cap": 0.01, "max_attempts": 3000}}
    rec = run(client(rate="2/min", policy="stubborn"), duration=60, org=Org(error_rate=1.0),
              extra_policies=extra).records
    assert (rec["attempts"] == 3000).all() and (rec["outcome"] == "error").all()


def test_watch_sees_every_attempt_with_its_decision_and_changes_nothing():
    from sim.engine import simulate
    from sim.spec import RunSpec
    from sim.config import policy_table
    spec = RunSpec(clients=mixed_workload(), policies=policy_table(), org=Org(), duration=900.0)
    seen = []
    watched = simulate(spec, 3, watch=lambda g, m, limits, now, i, wait, rtt: seen.append((g.index, i, now, wait, rtt)))
    plain = simulate(spec, 3)
    pd.testing.assert_frame_equal(watched.records, plain.records)  # watching changes no outcome
    rec = plain.records
    assert len(seen) == rec["attempts"].sum() > len(rec)  # every attempt once, retries included
    by_request = pd.DataFrame(seen, columns=["g", "i", "now", "wait", "rtt"])
    refused = by_request[(by_request["wait"] > 0) & np.isfinite(by_request["wait"])]
    assert len(refused) == rec["n429"].sum()  # each refusal a 429 the records count
    ok = by_request[by_request["wait"] == 0.0].groupby(["g", "i"])["now"].max().to_numpy()
    assert np.array_equal(np.sort(ok), np.sort(rec.loc[rec["outcome"] == "ok", "admitted"].to_numpy()))
    assert (by_request["rtt"] > 0).all()


def test_one_seed_object_given_to_two_runs_gives_them_the_same_streams():
    """A SeedSequence is changed by spawning: the run spawns from a copy, so looping over alternatives with
    one seed object (``scenario.seed(0)``) gives each the same traffic, and the caller's object is untouched."""
    import sim
    from sim.scenario import scenario_from_dict
    scenario = scenario_from_dict({
        "scenario": {"name": "seed", "duration": "3m", "seed": 4},
        "org": {"tier": "free"},
        "clients": [{"name": "c", "model": "openai/gpt-oss-20b", "arrival": {"kind": "poisson", "rate": "60/min"},
                     "prompt_tokens": {"dist": "lognormal", "median": 200, "p95": 900}, "max_tokens": 100},
                    {"name": "d", "model": "openai/gpt-oss-20b", "arrival": {"kind": "bursty", "rate": "20/min"},
                     "prompt_tokens": 50, "max_tokens": 50}]}, source="<test>")
    seed = scenario.seed(0)
    before = seed.n_children_spawned
    first, second = sim.simulate(scenario.spec(), seed), sim.simulate(scenario.spec(), seed)
    assert seed.n_children_spawned == before
    pd.testing.assert_frame_equal(first.records, second.records)
    fresh = sim.simulate(scenario.spec(), scenario.seed(0))
    pd.testing.assert_frame_equal(first.records, fresh.records)
    for bad in (-3, 1.5, "x", True, None):  # a clear error naming the seed, not numpy's
        with pytest.raises(ValueError, match=r"seed .*: a seed is an integer >= 0 or a numpy SeedSequence"):
            sim.simulate(scenario.spec(), bad)
    pd.testing.assert_frame_equal(sim.simulate(scenario.spec(), np.int64(7)).records,
                                  sim.simulate(scenario.spec(), 7).records)
    for jobs in (0, -1, 1.5):
        with pytest.raises(ValueError, match="jobs is a number of processes >= 1"):
            sim.run_study(scenario, jobs=jobs, progress=False)


@pytest.mark.parametrize("timeout, cached", [(None, 0.5), (0.9, 0.0), (0.12, 0.0)])
def test_observers_are_told_when_the_client_reads_each_answer(timeout, cached):
    """A gate's ``observe`` gets ``read``: a refusal a round trip after its send, a success at its finish (the
    very float the records hold, cached prompt tokens skipping prefill), ``inf`` for an admitted attempt its
    client's timeout gave up on (one of the run's earlier admissions) and for a refusal that came back too
    late."""
    from sim.engine import Simulation
    from sim.spec import RunSpec
    from sim.config import policy_table
    pol = {"p": {"retry": "fixed", "delay": 2.0, "max_attempts": 3, "adaptive": True, "timeout": timeout}}
    spec = RunSpec(clients=[client(rate="90/min", prompt_tokens=400, max_tokens=300, policy="p")],
                   policies=policy_table(pol), org=Org(accounting=Accounting(cache_hit_ratio=cached)),
                   duration=600.0)
    sim = Simulation(spec, 4)
    seen = []
    sim.clients[0].observers.append(lambda m, limits, now, i, wait, rtt, read: seen.append((i, now, wait, rtt, read)))
    result = sim.run()
    rec = result.records
    seen = pd.DataFrame(seen, columns=["i", "now", "wait", "rtt", "read"])
    refused, admitted = seen[seen["wait"] > 0], seen[seen["wait"] == 0]
    assert len(refused) > 20 and len(admitted) > 20
    late = refused["rtt"] > (timeout or np.inf)
    assert late.any() == (timeout == 0.12)  # (a timeout shorter than some round trips)
    assert (refused.loc[~late, "read"] == refused.loc[~late, "now"] + refused.loc[~late, "rtt"]).all()
    assert np.isinf(refused.loc[late, "read"]).all()
    heard = admitted[np.isfinite(admitted["read"])]
    assert (heard["read"].to_numpy() == rec["finished"].to_numpy()[heard["i"]]).all()
    assert (rec["outcome"].to_numpy()[heard["i"]] == "ok").all()
    given_up = admitted.loc[np.isinf(admitted["read"]), "now"].to_numpy()
    assert np.array_equal(given_up, np.asarray(sim.clients[0].to_t))  # (every admission its timeout gave up)
    if timeout is not None:
        assert len(given_up) > 10 and len(result.earlier_admissions) > 0
        assert (heard["read"] - heard["now"] <= timeout).all()


@pytest.mark.parametrize("policies", [None, {"fb": {"retry": "groq-sdk", "fallback": ["openai/gpt-oss-20b"]}}],
                         ids=["fast-lane", "event-loop"])
@pytest.mark.parametrize("drain", ["0s", "2s"])
def test_a_success_answered_after_the_run_ends_is_unfinished(policies, drain):
    """The run ends at duration + drain: a request admitted just before whose answer comes later is in flight
    then, unfinished, not a success finished after the end (with drain = 0 they were counted, 'finished'
    at 120.1 s of a 120 s run).  Answers of ~0.7 s at 100/min: some are always cut."""
    data = {"scenario": {"name": "d", "duration": "2m", "warmup": "0s", "drain": drain, "replications": 1},
            "org": {"tier": "developer"},
            "clients": [{"name": "c", "model": "openai/gpt-oss-120b", "arrival": {"kind": "poisson", "rate": "100/min"},
                         "prompt_tokens": 500, "max_tokens": 300, "completion_tokens": 300,
                         **({"policy": "fb"} if policies else {})}],
            **({"policies": policies} if policies else {})}
    s = scenario_from_dict(data, source="<test>")
    end = 120.0 + {"0s": 0.0, "2s": 2.0}[drain]
    cut = 0
    for seed in range(3):
        rec = simulate(s.spec(), s.seed(seed)).records
        ok = rec["outcome"] == "ok"
        assert (rec.loc[ok, "finished"] <= end).all()
        unfinished = rec[rec["outcome"] == "unfinished"]
        assert unfinished["finished"].isna().all()
        cut += len(unfinished)
    if drain == "0s":  # (with 2 s of drain every ~0.7 s answer comes back)
        assert cut > 0


@pytest.mark.parametrize("kernel", [True, False], ids=["fast-lane", "event-loop"])
def test_no_outcome_ends_after_the_run_unless_unfinished(kernel):
    """Every outcome is recorded when decided: a timeout when its attempt goes (read ``timeout`` later), a 429 or
    413 one round trip before the client reads it.  With drain = 0, a timeout read at 302 s of a 300 s run was
    an ``error``, and a 429 read after the end ``gave_up``: both still in flight at the end, ``unfinished``."""
    policies = {"to": {"retry": "none", "timeout": "5s"}}
    model = "openai/gpt-oss-20b"
    groups = [client(name="a", model=model, arrival=arrival(kind="poisson", rate="6000/min"), policy="no-retry",
                     prompt_tokens=500, max_tokens=512),  # (over Developer's RPM: 429s to the end)
              client(name="b", model="openai/gpt-oss-120b", arrival=arrival(kind="constant", rate="20/min"),
                     policy="to", prompt_tokens=100, max_tokens=8000, completion_tokens=8000)]  # (> 5 s: timeouts)
    late = {"error": 0, "gave_up": 0}
    for seed in range(2):
        rec = run(groups, 300.0, seed, Org(tier="developer"), policies, kernel, drain=0.0).records
        done = rec[rec["outcome"] != "unfinished"]
        assert (done["finished"] <= 300.0).all()
        unfinished = rec[rec["outcome"] == "unfinished"]
        assert unfinished["finished"].isna().all()
        # what the cut turned: b's last timeouts (sent in the run's last 5 s), a's 429s sent at its very end
        late["error"] += int(((unfinished["client"] == "b") & (unfinished["attempts"] > 0)).sum())
        late["gave_up"] += int(((unfinished["client"] == "a") & (unfinished["n429"] > 0)).sum())
    assert late["error"] > 0 and late["gave_up"] > 0


@pytest.mark.parametrize("kernel", [True, False], ids=["fast-lane", "event-loop"])
def test_a_cache_hit_ratio_spares_chat_prompts_not_text_to_speech_characters(kernel):
    """Prompt caching is of chat prompts (groq-rate-limits.md: cached prompt tokens do not count): a TTS
    request's characters all count against TPM and are all synthesised.  At cache 0.5 a TTS request of 1 000
    characters had been charged 500 and synthesised in half the time, while its bill still counted 1 000."""
    def one(model, ratio):
        group = client(name="c", model=model, arrival=arrival(kind="constant", rate="6/min"), prompt_tokens=1000,
                       max_tokens=0 if model == "playai-tts" else 100,
                       completion_tokens=0 if model == "playai-tts" else 100)
        rec = run(group, 300.0, 3, Org(tier="developer", accounting=Accounting(cache_hit_ratio=ratio)),
                  kernel=kernel).records
        return rec["charged_tokens"].to_numpy(), rec["prompt_time"].to_numpy()

    tts0, tts5 = one("playai-tts", 0.0), one("playai-tts", 0.5)
    assert (tts5[0] == 1000).all() and np.array_equal(tts5[1], tts0[1])
    chat0, chat5 = one("openai/gpt-oss-20b", 0.0), one("openai/gpt-oss-20b", 0.5)
    assert (chat5[0] == 600).all() and (chat0[0] == 1100).all() and (chat5[1] < chat0[1]).all()


def _tiny(clients, policies, org=None, service=None, duration=60):
    """A run on a tier of 1 RPM on gpt-oss-20b (its fallback gpt-oss-120b as on Developer), with exact times
    (no spread in the service or the network) where ``service`` says so."""
    data = {"scenario": {"name": "t", "duration": duration, "drain": 600, "seed": 1},
            "org": {"tier": "tiny", **(org or {})},
            "tiers": {"tiny": {"base": "developer", "overrides": {"openai/gpt-oss-20b": {"rpm": 1}}}},
            "service": service or {}, "clients": clients, "policies": policies}
    return scenario_from_dict(data, source="<test>").spec()


def test_the_model_column_names_a_fallback_hop_that_failed_with_a_server_error():
    """The records' ``model`` is the model the request was last sent to: a hop after a 429 whose attempt met
    an injected 503 (before any limit) had kept the primary's name."""
    spec = _tiny([{"name": "a", "model": "openai/gpt-oss-20b", "arrival": {"kind": "constant", "rate": "30/min"},
                   "prompt_tokens": 10, "max_tokens": 10, "policy": "p"}],
                 {"p": {"retry": "fixed", "max_attempts": 2, "retry_on": [], "fallback": ["openai/gpt-oss-120b"]}},
                 org={"error_rate": 0.5})
    hops = 0
    for seed in range(3):
        rec = simulate(spec, seed).records
        hopped = rec[(rec["attempts"] == 2) & (rec["n429"] == 1) & (rec["outcome"] == "error")]
        assert (hopped["model"] == "openai/gpt-oss-120b").all()
        hops += len(hopped)
    assert hops > 0


def test_a_refusal_read_after_the_deadline_is_not_heard(monkeypatch):
    """A 429 read after the request's deadline comes to a client that gave the request up at its deadline: it
    starts no cooldown (it had paused the group at 20.3 s for a request missed at 20 s) and the adaptive gate
    does not read its headers (read = inf), as with a timeout.  Round trips of exactly 0.5 s; a retry 9.3 s
    after the first 429 is read (10.5 s) goes at 19.8 s, and its 429 comes at 20.3 s, past the deadline."""
    import sim.policies
    heard, read = [], []
    cooldown, adaptive = sim.policies.Cooldown.on_refused, sim.policies.Adaptive.observe
    monkeypatch.setattr(sim.policies.Cooldown, "on_refused",
                        lambda self, t, ra, delay: heard.append(t) or cooldown(self, t, ra, delay))
    monkeypatch.setattr(sim.policies.Adaptive, "observe", lambda self, m, limits, now, i, wait, rtt, when:
                        read.append((i, when)) or adaptive(self, m, limits, now, i, wait, rtt, when))
    exact = {"rtt_median": 0.5, "rtt_p90": 0.5, "queue_median": 0.1, "queue_p90": 0.1, "speed_cv": 0.0}
    spec = _tiny([{"name": "a", "model": "openai/gpt-oss-20b", "arrival": {"kind": "constant", "rate": "6/min"},
                   "prompt_tokens": 10, "max_tokens": 10, "policy": "p"}],
                 {"p": {"retry": "fixed", "delay": 9.3, "max_attempts": 5, "deadline": "10s", "cooldown": "5s",
                        "retry_on": [429], "adaptive": True}}, service={"openai/gpt-oss-20b": exact}, duration=15)
    rec = simulate(spec, 1).records
    deadline = (rec["created"] + 10.0).to_numpy()
    assert (rec["outcome"] == "deadline").any() and heard and read
    last = {}
    for i, when in read:
        last[i] = when
        assert when == math.inf or when <= deadline[i], (i, when)
    assert math.inf in last.values()  # (an answer came after some deadline: unread)
    # every cooldown started from a 429 read before the deadline of the request it answered
    assert max(heard) <= deadline.max()
    assert heard == [10.5]  # request 1's first 429 (sent at 10 s); its second, sent at 19.8 s, is read at 20.3 s


@pytest.mark.parametrize("policy", ["no-retry", "groq-sdk", "cooldown", "adaptive", "paced"])
def test_the_event_count_is_every_entry_a_run_scheduled(policy):
    """``events`` (a run's cost, by which a study hands out its longest runs first) counts each arrival, retry,
    wake-up, refusal heard and completion the run put on the clock's heap: the event ids it drew, less the two
    SimPy draws for the run's end (its stop event, scheduled again as SimPy stops on it)."""
    from sim.config import policy_table
    from sim.engine import Simulation
    from sim.spec import RunSpec
    spec = RunSpec(clients=[client(rate="300/min", prompt_tokens=10, max_tokens=10, policy=policy)],
                   policies=policy_table(), duration=300.0)
    sim = Simulation(spec, 1, kernel=False)
    result = sim.run()
    assert policy == "paced" or result.records["n429"].sum() > 0
    assert next(sim.env._eid) == result.events + 2


@pytest.mark.parametrize("kernel", [True, False], ids=["fast-lane", "event-loop"])
def test_an_attempt_sent_again_after_a_timeout_is_served_anew(kernel):
    """A retry after a timeout is a new request to the server: its queue time and speed are drawn again, so
    whether it times out too does not depend on the attempt it follows.  The draws were made once per request:
    a request whose first attempt drew a slow answer timed out on every retry (the SDK's three attempts all
    timing out for 0.51 of the requests, where independent attempts give about p³ = 0.14)."""
    from sim.catalog import Catalog
    model = "openai/gpt-oss-20b"
    catalog = Catalog.published().copy().define_tier(
        "open", "developer", overrides={model: {"rpm": None, "rpd": None, "tpm": None, "tpd": None}})
    group = client(name="c", model=model, arrival=arrival(kind="poisson", rate="60/min"), policy="short",
                   prompt_tokens=500, max_tokens=1000)
    result = run(group, 3600.0, 7, Org(tier="open"), {"short": {"extends": "groq-sdk", "timeout": 1.25}}, kernel,
                 catalog=catalog, drain=600.0)
    rec = result.records
    assert (rec["n429"] == 0).all()  # (no limits: an attempt after the first follows a timeout)
    p = (rec["attempts"] > 1).mean()  # the first attempt timed out
    assert 0.4 < p < 0.6
    assert abs((rec["outcome"] == "error").mean() - p ** 3) < 0.03  # all three timed out
    # a request's attempts are not one answer replayed: after an attempt that took more than 1.25 s, most
    # retries are served within it
    again = rec[rec["attempts"] > 1]
    assert (again["outcome"] == "ok").mean() > 0.4
    # the same traffic with no timeout: a request sent once is served as there, one sent again on new draws of
    # both its queue time and its speed (its prompt time)
    patient = run(group, 3600.0, 7, Org(tier="open"), {"short": {"extends": "groq-sdk"}}, kernel,
                  catalog=catalog, drain=600.0).records
    assert (patient["attempts"] == 1).all() and len(patient) == len(rec)
    once = (rec["attempts"] == 1).to_numpy()
    for col in ("queue_time", "prompt_time"):
        first, served = patient[col].to_numpy(), rec[col].to_numpy()
        assert np.array_equal(first[once], served[once])
        assert (first[~once] != served[~once]).all()
