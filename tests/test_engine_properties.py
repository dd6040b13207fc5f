"""Property test of the whole engine: for random org, workload and policy settings, every request is
accounted for exactly once and its record is internally consistent; same seed, same records."""
import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings, strategies as st

from sim.records import OUTCOMES
from sim.summary import summarize
from sim.config import Accounting, Org, Policy, arrival
from sim.limiters import ALGORITHMS
from sim.policies import JITTERS, SCHEDULES
from tests.helpers import client, run

#: every policy setting, drawn (a new setting, a new gate's above all: its line in OPTIONAL, or the test below
#: fails); schedules, jitters and limiters come from their registries, in a fixed order
REQUIRED = {
    "retry": st.sampled_from(sorted(SCHEDULES)),
    "max_attempts": st.integers(1, 8),
    "jitter": st.sampled_from(sorted(JITTERS)),
    "honor_retry_after": st.booleans(),
}
OPTIONAL = {
    "deadline": st.sampled_from([2.0, 10.0, 60.0]),
    "timeout": st.sampled_from([0.5, 2.0]),  # answers take ~0.2-1.5 s here: some time out
    "pacing": st.sampled_from([0.5, 0.95]),
    "adaptive": st.booleans(),
    "cooldown": st.sampled_from(["retry-after", 3.0]),
    "max_in_flight": st.integers(1, 5),
    "queue_size": st.integers(0, 20),
    "fallback": st.just(["llama-3.1-8b-instant"]),
    "delay": st.sampled_from([0.5, 3.0]),
    "base": st.sampled_from([0.25, 2.0]),
    "cap": st.sampled_from([8.0, 30.0]),
    "retry_after_cap": st.sampled_from([1.0, 5.0]),
    "retry_on": st.sampled_from([[429], [429, 500, 502, 503]]),
}
policies = st.fixed_dictionaries(REQUIRED, optional=OPTIONAL)
arrivals = st.sampled_from([
    arrival(kind="poisson", rate="80/min"), arrival(kind="bursty", rate="60/min", burstiness=3.0),
    arrival(kind="onoff", rate="200/min", on="20s", off="40s"), arrival(kind="closed", users=4, think="1s"),
    arrival(kind="diurnal", rate="50/min", period="5m"),
])
orgs = st.builds(Org, tier=st.sampled_from(["free", "developer"]),
                 limiter=st.sampled_from(sorted(ALGORITHMS)),
                 accounting=st.builds(Accounting, charge=st.sampled_from(["max_tokens", "actual"]),
                                      refund_unused=st.booleans(), cache_hit_ratio=st.sampled_from([0.0, 0.5])),
                 error_rate=st.sampled_from([0.0, 0.1]))


def test_every_policy_setting_is_drawn():
    missing = set(Policy.model_fields) - set(REQUIRED) - set(OPTIONAL)
    assert not missing, (f"Policy setting(s) {sorted(missing)} never drawn by tests/test_engine_properties.py: "
                         "add each to OPTIONAL with a few values")


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(policy=policies, arrival=arrivals, org=orgs, seed=st.integers(0, 2**32 - 1))
def test_every_request_accounted_for_and_consistent(policy, arrival, org, seed):
    c = client(model="llama-3.3-70b-versatile", arrival=arrival, policy="p",
               prompt_tokens={"dist": "lognormal", "median": 300, "p95": 3000}, max_tokens=256,
               completion_tokens={"dist": "uniform", "low": 0, "high": 300})
    result = run(c, duration=300, seed=seed, org=org, extra_policies={"p": policy}, drain=600)
    rec = result.records
    s = summarize(result)
    assert s["offered"] == sum(s[k] for k in OUTCOMES)
    assert rec["id"].is_unique and (rec["created"] < 300).all()
    assert (rec["attempts"] <= policy["max_attempts"]).all()  # every model's attempts, fallback hops too
    assert (rec["n429"] <= rec["attempts"]).all()
    assert (rec.loc[rec["outcome"] != "dropped", "attempts"] >= 0).all()
    assert (rec.loc[rec["outcome"] == "dropped", "attempts"] == 0).all()
    done = rec[rec["outcome"] != "unfinished"]
    assert (done["finished"] >= done["created"] - 1e-9).all()
    ok = rec[rec["outcome"] == "ok"]
    assert (ok["attempts"] >= 1).all()
    assert (ok["admitted"] >= ok["created"] - 1e-9).all() and (ok["finished"] > ok["admitted"]).all()
    np.testing.assert_allclose(ok["total_time"], ok["prompt_time"] + ok["completion_time"])  # queue time apart
    wait = ok["finished"] - ok["admitted"] - ok["queue_time"] - ok["total_time"]  # the network round trip
    assert (wait > 0).all() and (wait < 5).all()
    if "deadline" in policy:
        assert (done["latency"] <= policy["deadline"] + 1e-6).all()
    if "timeout" in policy:  # an answer is read only if it came within the timeout of its attempt's send
        assert (ok["finished"] - ok["admitted"] <= policy["timeout"] + 1e-9).all()
    if policy.get("pacing") and not result.records["model"].astype(str).eq("llama-3.1-8b-instant").any() \
            and org.limiter == "token_bucket":
        # pacing mirrors the org's token buckets below their limits: the org never refuses a paced client
        assert (rec["n429"] == 0).all()
    again = run(c, duration=300, seed=seed, org=org, extra_policies={"p": policy}, drain=600)
    pd.testing.assert_frame_equal(rec, again.records)


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(rate=st.integers(5, 300), tpm=st.integers(500, 20_000),
       rpd=st.one_of(st.integers(20, 500), st.integers(5_000, 100_000)),
       prompt=st.integers(10, 3000), kind=st.sampled_from(["poisson", "bursty", "constant", "onoff"]),
       in_flight=st.sampled_from([None, 1, 4]), timeout=st.sampled_from([None, 0.3]), seed=st.integers(0, 10**6))
def test_an_adaptive_client_alone_is_refused_only_before_it_has_read_an_answer(rate, tpm, rpd, prompt, kind,
                                                                               in_flight, timeout, seed):
    """Alone on token-bucket limits of RPD and TPM only (what the headers describe), an adaptive client that
    follows its budget from the last headers it read, with what it sent since, gets a 429 only for what it sent
    blind, before its first answer came back: its view is late, but never above the bucket's level."""
    import math

    from sim.catalog import Catalog
    from sim.config import policy_table
    from sim.engine import Simulation
    from sim.spec import RunSpec
    model = "openai/gpt-oss-20b"
    catalog = Catalog.published().copy().override("free", model, rpm=None, rpd=rpd, tpm=tpm, tpd=None)
    process = {"kind": kind, "rate": f"{rate}/min", **{"bursty": {"burstiness": 2.5},
                                                         "onoff": {"on": "1m", "off": "2m"}}.get(kind, {})}
    settings_ = {"retry": "none", "adaptive": True, "timeout": timeout,
                 **({"max_in_flight": in_flight} if in_flight else {})}
    spec = RunSpec(clients=[client(model=model, arrival=arrival(**process), prompt_tokens=prompt, max_tokens=50,
                                   completion_tokens=50, policy="p")],
                   policies=policy_table({"p": settings_}), org=Org(tier="free"), catalog=catalog, duration=900.0)
    sim = Simulation(spec, seed)
    seen = []
    sim.clients[0].observers.append(lambda m, limits, now, i, wait, rtt, read: seen.append((now, wait, read)))
    sim.run()
    first_read = min((read for _, _, read in seen), default=math.inf)
    refused_after = [now for now, wait, _ in seen if 0 < wait < math.inf and now >= first_read]
    assert not refused_after
