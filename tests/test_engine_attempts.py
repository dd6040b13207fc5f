"""One attempt (the engine's ``_send`` and ``_refused``): what each answer does to a request's record, timed
to the round trip of the model actually tried, and what an admitted attempt costs and gives back."""
import numpy as np
import pytest

from sim.config import Accounting, Org
from sim.flex import Flex
from sim.limitset import LimitSet
from sim.service import service_models
from tests.helpers import ONE_HOP, client, run

BIG, SMALL = "llama-3.3-70b-versatile", "llama-3.1-8b-instant"


def test_a_fallback_attempt_takes_the_fallback_models_round_trip():
    """Constant networks (p90 = median): 0.05 s to the primary model, 2 s to the fallback.  A request served
    by the fallback was refused by the primary (its 429 back after 0.05 s), then sent on at once, so its
    latency less service time is 0.05 + 2 s; one that kept the primary's round trip would show 0.1 s."""
    net = service_models({BIG: {"rtt_median": 0.05, "rtt_p90": 0.05}, SMALL: {"rtt_median": 2.0, "rtt_p90": 2.0}})
    extra = {"fb": {**ONE_HOP, "fallback": [SMALL]}}
    rec = run(client(rate="90/min", prompt_tokens=100, max_tokens=100, policy="fb"), duration=300,
              extra_policies=extra, service=net).records
    ok = rec[rec["outcome"] == "ok"]
    network = ok["latency"] - ok["queue_time"] - ok["total_time"]
    on_fallback = ok["model"] == SMALL
    assert on_fallback.sum() > 10 and (~on_fallback).sum() > 10
    assert np.allclose(network[on_fallback], 2.05) and np.allclose(network[~on_fallback], 0.05)


def test_cached_prompt_tokens_skip_prefill():
    """``cache_hit_ratio``: the cached part of a prompt is not prefilled.  The same seed and an unbound
    workload give each request the same speed draw, so its prompt time with half the prompt cached is
    ``fixed + prompt / 2 / rate`` against ``fixed + prompt / rate`` (times the same speed factor)."""
    def prompt_times(ratio):
        rec = run(client(model=SMALL, rate="20/min", prompt_tokens=4000, max_tokens=50), duration=300,
                  org=Org(tier="developer", accounting=Accounting(charge="actual", cache_hit_ratio=ratio))).records
        assert (rec["outcome"] == "ok").all()
        return rec["prompt_time"].to_numpy()

    full, half = prompt_times(0.0), prompt_times(0.5)
    p = service_models()[SMALL]
    expected = (p.prefill_fixed + 2000 / p.prefill_tps) / (p.prefill_fixed + 4000 / p.prefill_tps)
    assert len(full) > 50 and np.allclose(half / full, expected)


def test_refunds_give_back_exactly_the_unused_reservation_at_the_finish(monkeypatch):
    """``max_tokens`` charging with ``refund_unused``: each admitted request is refunded ``max_tokens -
    completion_tokens`` when its answer is complete, and nothing is refunded for a request that used all it
    reserved (here completions of 99 or 100 of 100 reserved: refunds of exactly 1 token or none)."""
    refunds = []
    real = LimitSet.refund_tokens

    def spy(self, tokens, charged_at, now):
        refunds.append((tokens, charged_at, now))
        real(self, tokens, charged_at, now)

    monkeypatch.setattr(LimitSet, "refund_tokens", spy)
    rec = run(client(model=SMALL, rate="30/min", prompt_tokens=100, max_tokens=100,
                     completion_tokens={"dist": "empirical", "values": [99, 100]}), duration=300,
              org=Org(tier="developer", accounting=Accounting(charge="max_tokens", refund_unused=True))).records
    ok = rec[rec["outcome"] == "ok"]
    short = ok[ok["completion_tokens"] == 99]
    assert len(short) > 20 and (ok["completion_tokens"] == 100).sum() > 20
    got = sorted(refunds, key=lambda r: r[2])
    assert [r[0] for r in got] == [1] * len(short)
    assert np.allclose([r[1] for r in got], short.sort_values("finished")["admitted"])
    assert np.allclose([r[2] for r in got], short.sort_values("finished")["finished"])


def test_a_498_is_answered_one_round_trip_after_it_was_sent():
    """Flex capacity short: the 498 comes back after the attempt's round trip, like a 429 (nothing is
    admitted, so with one attempt the request ends ``rtt`` after it was created)."""
    rtt = service_models()[SMALL].rtt_median
    net = service_models({SMALL: {"rtt_p90": rtt}})
    org = Org(service_tier="flex", flex=Flex(calm_failure=1.0, scarce=0))
    rec = run(client(model=SMALL, policy="groq-sdk"), duration=300, org=org, service=net).records
    assert len(rec) > 20 and (rec["outcome"] == "error").all()
    assert np.allclose(rec["latency"], rtt)


@pytest.mark.parametrize("policy", [{"retry": "none", "deadline": 0.2},
                                    {"retry": "fixed", "delay": 0.05, "max_attempts": 3, "deadline": 0.4}])
def test_no_request_ends_after_its_deadline_even_when_it_gives_up(policy):
    """A refusal that reaches the client after its deadline is a deadline miss at ``created + deadline``,
    also when the client would give up on it anyway (round trips of about 0.1-0.3 s against deadlines of
    0.2 and 0.4 s: many answers come late)."""
    rec = run(client(model=SMALL, rate="600/min", prompt_tokens=100, max_tokens=100, policy="p"),
              duration=120, org=Org(tier="free"), extra_policies={"p": policy}).records
    late = rec["finished"] > rec["created"] + policy["deadline"] + 1e-9
    assert (rec["outcome"] == "gave_up").sum() > 10 and (rec["outcome"] == "deadline").sum() > 10
    assert not late.any()


def test_an_in_flight_slot_is_freed_when_a_request_gives_up():
    """A client capped at 2 requests in flight whose requests mostly give up on their first 429 (free tier,
    RPM 30, 300 requests a minute): every give-up frees its slot, so the client keeps sending to the end."""
    rec = run(client(model=SMALL, rate="300/min", prompt_tokens=50, max_tokens=50, policy="cap"), duration=300,
              org=Org(tier="free"), extra_policies={"cap": {"retry": "none", "max_in_flight": 2}}).records
    assert (rec["outcome"] == "gave_up").sum() > 100
    late = rec[rec["created"] > 240]
    assert (late["attempts"] > 0).mean() > 0.2


def test_a_request_that_gives_up_on_the_fallback_is_recorded_on_the_fallback():
    """Both models saturated (free tier, RPM 30 each, 90 requests a minute): a request refused by the primary
    and then by its fallback gives up, and its record names the model it last tried."""
    extra = {"fb": {**ONE_HOP, "fallback": [SMALL]}}
    rec = run(client(rate="90/min", prompt_tokens=100, max_tokens=100, policy="fb"), duration=300,
              extra_policies=extra).records
    both = rec[(rec["outcome"] == "gave_up") & (rec["attempts"] == 2)]
    assert len(both) > 10 and (both["model"] == SMALL).all() and (both["n429"] == 2).all()


def test_a_request_too_large_for_its_fallback_is_a_413_of_the_fallback():
    """8 000 tokens fit the primary's free TPM (12 000) but not the fallback's (6 000): a request the
    primary refuses with a 429 goes to the fallback, which answers 413; the record names the fallback."""
    extra = {"fb": {**ONE_HOP, "fallback": [SMALL]}}
    rec = run(client(rate="10/min", prompt_tokens=5000, max_tokens=3000, policy="fb"), duration=600,
              extra_policies=extra).records
    large = rec[rec["outcome"] == "too_large"]
    assert len(large) > 5 and (large["model"] == SMALL).all() and (large["refused_by"] == "tpm").all()
    assert (large["attempts"] == 2).all()
