"""The Flex tier: its capacity process, 498s as the real groq SDK treats them, flex limits and ``auto``."""
import httpx
import numpy as np
import pytest
from scipy import stats

from helpers import client, run
from sim.config import BUILTIN_POLICIES, Org, resolve_policy
from sim.flex import CapacityProcess, Flex
from sim.projects import Project

groq = pytest.importorskip("groq")


def test_capacity_process_long_run_shares():
    """Time share of scarcity and share of failing attempts match the stated means (alternating
    exponential periods, stationary start)."""
    flex = Flex(calm=600, scarce=200, scarce_failure=0.6, calm_failure=0.05)
    assert flex.scarce_share() == 0.25 and flex.failure_share() == pytest.approx(0.25 * 0.6 + 0.75 * 0.05)
    horizon = 4e6  # ~5 000 cycles
    proc = CapacityProcess(flex, np.random.default_rng(3), horizon)
    assert proc.scarce_time(0, horizon) / horizon == pytest.approx(0.25, abs=0.02)
    rng = np.random.default_rng(4)
    t, u = rng.uniform(0, horizon, 50_000), rng.random(50_000)
    fails = np.mean([proc.fails(a, b) for a, b in zip(t, u)])
    assert fails == pytest.approx(flex.failure_share(), abs=0.015)
    # period lengths are exponential with the stated means (Kolmogorov-Smirnov against scipy)
    lengths = np.diff(proc.switches)
    calm = lengths[~np.asarray(proc.states[:-1])][1:-1]
    assert stats.kstest(calm, stats.expon(scale=600).cdf).pvalue > 0.001


def test_no_scarcity_never_fails():
    proc = CapacityProcess(Flex(scarce=0), np.random.default_rng(1), 1e5)
    assert not any(proc.fails(t, 0.0) for t in np.linspace(0, 1e5, 1000))


def test_a_process_extended_step_by_step_is_the_one_drawn_at_once():
    """The emulator draws the timeline on as its clock runs: in steps it is the same timeline, in order."""
    flex = Flex(calm=60, scarce=30)
    whole = CapacityProcess(flex, np.random.default_rng(5), 5000)
    steps = CapacityProcess(flex, np.random.default_rng(5), 10)
    for horizon in (10, 700, 701, 2500, 4999.5, 5000):
        steps.extend(horizon)
        assert steps.switches[-1] >= horizon
    assert steps.switches == whole.switches and steps.states == whole.states
    assert steps.switches == sorted(steps.switches) and steps.switches[0] == 0.0


def test_the_process_starts_in_its_stationary_state_and_never_scarce_stays_calm():
    """The state at time 0 is scarce with probability scarce / (calm + scarce) (binomial test over seeds); with
    ``scarce = 0`` every period is calm."""
    flex = Flex(calm=300, scarce=100)
    starts = [CapacityProcess(flex, np.random.default_rng(seed), 1.0).scarce(0.0) for seed in range(2000)]
    assert stats.binomtest(sum(starts), 2000, 0.25).pvalue > 1e-3, sum(starts)
    calm = CapacityProcess(Flex(scarce=0, calm=10), np.random.default_rng(2), 1000)
    assert len(calm.switches) > 50 and not any(calm.states) and not calm.scarce(0.5)


def _sdk_attempts(headers: dict) -> tuple[int, type]:
    """How many HTTP requests the real groq SDK makes for a chat completion answered 498, and what it raises."""
    calls = []

    def handler(request):
        calls.append(request)
        return httpx.Response(498, headers={"retry-after-ms": "1", **headers},
                              json={"error": {"message": "capacity exceeded", "type": "capacity_exceeded",
                                              "code": "capacity_exceeded"}})
    sdk = groq.Groq(api_key="test", base_url="http://127.0.0.1:9", max_retries=2,
                    http_client=httpx.Client(transport=httpx.MockTransport(handler)))
    with pytest.raises(groq.APIStatusError) as exc:
        sdk.chat.completions.create(model="openai/gpt-oss-20b", messages=[{"role": "user", "content": "hi"}])
    return len(calls), type(exc.value)


def test_groq_sdk_does_not_retry_498_like_the_real_sdk():
    """The real SDK (groq 1.7.0, _base_client._should_retry): 498 is not 408/409/429 nor >= 500, so it is not
    retried and surfaces as a plain APIStatusError -- unless the server sends ``x-should-retry: true``."""
    assert _sdk_attempts({}) == (1, groq.APIStatusError)
    assert _sdk_attempts({"x-should-retry": "true"})[0] == 3
    assert 498 not in resolve_policy("groq-sdk", {}).retry_on
    # the simulator's groq-sdk policy: one attempt, outcome error
    org = Org(service_tier="flex", flex=Flex(calm_failure=1.0, scarce=0))
    rec = run(client(model="llama-3.1-8b-instant", policy="groq-sdk"), duration=300, org=org).records
    assert len(rec) and (rec["outcome"] == "error").all()
    assert (rec["attempts"] == 1).all() and (rec["n498"] == 1).all() and (rec["n429"] == 0).all()


def test_a_policy_can_retry_498_and_a_498_charges_nothing():
    org = Org(service_tier="flex", flex=Flex(calm_failure=1.0, scarce=0))
    extra = {"flex-retry": {**BUILTIN_POLICIES["full-jitter"], "max_attempts": 3, "retry_on": [429, 498]}}
    res = run(client(model="llama-3.1-8b-instant", policy="flex-retry"), duration=300, org=org,
              extra_policies=extra)
    rec = res.records
    assert (rec["n498"] == 3).all() and (rec["outcome"] == "error").all()
    assert rec["admitted"].isna().all()  # never reached the limits


def test_flex_limits_are_the_multiplier_times_on_demand():
    """Free tier llama-3.1-8b-instant: 6 000 TPM on demand.  A steady 50 requests/min of 1 012 tokens
    (50 600 TPM) fits the flex 60 000 TPM and not on-demand; with multiplier 5 (30 000 TPM) it does not."""
    c = client(model="llama-3.1-8b-instant", kind="constant", rate="50/min", policy="no-retry")
    calm = Flex(scarce=0)
    on_demand = run(c, duration=600, org=Org()).records
    flex = run(c, duration=600, org=Org(service_tier="flex", flex=calm)).records
    flex5 = run(c, duration=600, org=Org(service_tier="flex", flex=calm.model_copy(update={"multiplier": 5}))).records
    assert (flex["outcome"] == "ok").all() and (flex["service_tier"] == "flex").all()
    assert (on_demand["outcome"] == "ok").mean() < 0.2
    ok5 = (flex5["outcome"] == "ok").sum()
    # a full 30 000-token bucket at the start, then 30 000 tokens a minute for 10 minutes
    assert ok5 == pytest.approx((30_000 + 30_000 * 10) / 1012, rel=0.02)


def test_auto_serves_on_demand_first_then_flex():
    """With no retries, ``auto`` asks the on-demand limits exactly what an on-demand client asks, so the
    same requests are served on demand; flex takes (some of) the rest."""
    c = client(model="llama-3.1-8b-instant", kind="poisson", rate="40/min", policy="no-retry")
    flex = Flex(calm=600, scarce=300, scarce_failure=0.5)
    plain = run(c, duration=1800, org=Org(flex=flex)).records
    auto = run(c, duration=1800, org=Org(service_tier="auto", flex=flex)).records
    on_demand_ok = plain["outcome"] == "ok"
    served_on_demand = (auto["outcome"] == "ok") & (auto["service_tier"] == "on_demand")
    assert (on_demand_ok == served_on_demand).all()
    rest = auto[~on_demand_ok]
    assert (rest["service_tier"] == "flex").all()
    assert (rest["outcome"] == "ok").sum() > 0 and (rest["n498"] > 0).sum() > 0
    assert ((rest["n498"] > 0) == (rest["outcome"] == "error")).all()


@pytest.mark.parametrize("tier, marked", [("auto", "flex"), ("flex", "flex"), ("on_demand", "on_demand")])
def test_an_injected_498_is_counted_as_a_498(tier, marked):
    """``error_status = 498`` injects what flex's capacity answers: each is counted in n498, like a 498 of the
    capacity process, and marks the request as flex's unless the group is on-demand only (the emulator
    answers an injected 498 on auto as flex's).  Every attempt is injected here (error_rate 1)."""
    org = Org(tier="developer", service_tier=tier, error_rate=1.0, error_status=498, flex=Flex(scarce=0),
              project_quotas=True)
    extra = {"r": {"retry": "fixed", "delay": 1.0, "max_attempts": 2, "retry_on": [498]}}
    rec = run([client(model="llama-3.1-8b-instant", policy="r"), client(name="p", model="llama-3.1-8b-instant",
                                                                      policy="r", project="a")],
              duration=300, org=org, extra_policies=extra, projects={"a": Project()}).records
    assert len(rec) > 400 and (rec["outcome"] == "error").all()
    assert (rec["n498"] == 2).all() and (rec["attempts"] == 2).all()
    assert (rec["service_tier"] == marked).all() and rec["admitted"].isna().all()


def test_auto_refused_on_demand_then_498_names_the_on_demand_limit_as_binding():
    """On ``auto``, an attempt on-demand refuses goes to flex; when flex's capacity answers 498 no 429 names
    the limit that held it back, yet it was on-demand's: the run's binding says so (``rpm (spilled)``), where
    it had read ``none`` ("no limit held anything back") with 45 % of the requests failed."""
    from sim.summary import summarize
    c = client(model="llama-3.1-8b-instant", kind="constant", rate="2000/min", prompt_tokens=10, max_tokens=10)
    short, calm = Flex(calm_failure=1.0, scarce=0), Flex(scarce=0)
    spilled = run(c, duration=300, org=Org(tier="developer", service_tier="auto", flex=short))
    s = summarize(spilled)
    assert s["binding"] == "rpm (spilled)" and s["n429"] == 0 and s["success_ratio"] < 0.7
    assert spilled.spilled_by == (("llama-3.1-8b-instant", "rpm"),)
    absorbed = run(c, duration=300, org=Org(tier="developer", service_tier="auto", flex=calm))
    assert summarize(absorbed)["binding"] == "none" and absorbed.spilled_by == ()  # flex took them all
    assert summarize(run(c, duration=300, org=Org(tier="developer")))["binding"] == "rpm"  # on demand: 429s


def test_spills_are_counted_only_on_auto_and_ranked_most_first():
    """``spilled_by`` lists the on-demand limits that sent ``auto`` attempts to a 498, most first: a flex-only
    group's 498s were sent by no on-demand limit, and two models' spills rank by their counts."""
    from sim.summary import summarize
    short = Flex(calm_failure=1.0, scarce=0)
    flex_only = run(client(model="llama-3.1-8b-instant", kind="constant", rate="2000/min", prompt_tokens=10,
                           max_tokens=10), duration=120, org=Org(tier="developer", service_tier="flex", flex=short))
    assert flex_only.spilled_by == () and summarize(flex_only)["binding"] == "none"
    assert (flex_only.records["n498"] == 1).all()
    # two auto groups: the 8b model's RPM (1 000 on Developer) spills ~1 000 of 4 000, allam-2-7b's (300) ~100
    # (the fewer spills on the first model seen, so that a rank by anything but the count would put it first)
    both = run([client(name="d", model="allam-2-7b", kind="constant", rate="500/min", prompt_tokens=10,
                       max_tokens=10),
                client(model="llama-3.1-8b-instant", kind="constant", rate="2000/min", prompt_tokens=10,
                       max_tokens=10)],
               duration=120, org=Org(tier="developer", service_tier="auto", flex=short))
    spilled = both.records[both.records["n498"] > 0].groupby("model", observed=True).size()
    assert spilled["llama-3.1-8b-instant"] > spilled["allam-2-7b"] > 0
    assert both.spilled_by == (("llama-3.1-8b-instant", "rpm"), ("allam-2-7b", "rpm"))
    assert summarize(both)["binding"] == "llama-3.1-8b-instant:rpm (spilled)"


def test_scarce_time_and_failure_probability_read_the_timeline():
    """``scarce_time`` against a fine grid of ``scarce(t)``, and the failure probability of each period."""
    flex = Flex(calm="5m", scarce="2m", scarce_failure=0.7, calm_failure=0.1)
    proc = CapacityProcess(flex, np.random.default_rng(11), 3600.0)
    grid = np.arange(600.0, 3000.0, 0.5)
    scarce = np.array([proc.scarce(t) for t in grid])
    assert 0 < scarce.mean() < 1  # both kinds of period in the window
    assert proc.scarce_time(600.0, 3000.0) == pytest.approx(scarce.sum() * 0.5, abs=2 * 0.5 * len(proc.switches))
    assert proc.scarce_time(600.0, 600.0) == 0.0 and proc.scarce_time(1000.0, 900.0) == 0.0
    assert {proc.failure_probability(t) for t in grid[scarce]} == {0.7}
    assert {proc.failure_probability(t) for t in grid[~scarce]} == {0.1}
