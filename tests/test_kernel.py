"""The engine's fast lane (sim/kernel.py) against the general path: identical records, refusals, earlier
admissions (timed-out attempts) and event counts on random plain runs, and the lane taken exactly when every
group is plain."""
import hashlib
from dataclasses import replace

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from sim import kernel
from sim.config import Accounting, Org, arrival, policy_table
from sim.engine import Simulation
from sim.limiters import ALGORITHMS
from sim.policies import JITTERS, SCHEDULES
from sim.projects import Project
from sim.service import service_models
from sim.spec import RunSpec
from tests.helpers import client


def _digest(frame: pd.DataFrame) -> str:
    return hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()).hexdigest()


def both(spec: RunSpec, seed: int):
    """(general, kernel) simulations of ``spec``, run."""
    out = []
    for fast in (False, True):
        sim = Simulation(spec, seed, kernel=fast)
        out.append((sim, sim.run()))
    return out


def assert_same(spec: RunSpec, seed: int) -> None:
    (gs, g), (ks, k) = both(spec, seed)
    assert kernel.usable(ks)
    pd.testing.assert_frame_equal(g.records, k.records)
    pd.testing.assert_frame_equal(g.refusals, k.refusals)
    pd.testing.assert_frame_equal(g.earlier_admissions, k.earlier_admissions)  # (the timed-out admissions)
    assert _digest(g.records) == _digest(k.records) and gs.events == ks.events
    for a, b in zip(gs.limitsets, ks.limitsets):  # the org's limits end in the same state too (the kernel
        # writes back what it keeps in locals: levels, times, the request units' refusal memory, the peaks)
        assert (a._blocked_until, a._blocked_by) == (b._blocked_until, b._blocked_by)
        for unit in a.units:
            assert a.remaining(unit, 1e6) == b.remaining(unit, 1e6)
            state = ("_level", "_t", "_peak_t", "_peak_level")
            assert [vars(a.units[unit]).get(k) for k in state] == [vars(b.units[unit]).get(k) for k in state]
    assert gs.env.now == ks.env.now


#: what the random comparison draws of a plain policy: every policy setting the kernel reads (KERNEL_READS, a
#: test below checks it).  Schedules and jitters come from their registries, in a fixed order, all but those
#: with per-request memory (they leave the fast lane: sim/engine.py's _Group.plain)
PLAIN_DRAWS = {
    "retry": st.sampled_from([name for name in sorted(SCHEDULES) if not SCHEDULES[name].memory]),
    "max_attempts": st.integers(1, 6),
    "jitter": st.sampled_from([name for name in sorted(JITTERS) if not JITTERS[name].memory]),
    "honor_retry_after": st.booleans(),
    "retry_on": st.sampled_from([[429, 503], [503]]),
}
PLAIN_OPTIONAL = {"retry_after_cap": st.sampled_from([1.0, 5.0]), "pacing": st.sampled_from([0.5, 0.95]),
                  # answers take ~0.2-1.5 s here: a timeout of 0.3 s or 1 s cuts many, and retries them
                  "timeout": st.sampled_from([0.3, 1.0]),
                  "delay": st.sampled_from([1.0, 3.0]), "base": st.sampled_from([0.5, 2.0]),
                  "cap": st.sampled_from([8.0, 30.0])}
plain_policies = st.fixed_dictionaries(PLAIN_DRAWS, optional=PLAIN_OPTIONAL)
arrivals = st.sampled_from([
    arrival(kind="poisson", rate="400/min"), arrival(kind="bursty", rate="300/min", burstiness=3.0),
    arrival(kind="onoff", rate="900/min", on="20s", off="40s"), arrival(kind="diurnal", rate="200/min", period="5m"),
    arrival(kind="constant", rate="240/min"),
])
orgs = st.builds(Org, tier=st.sampled_from(["free", "developer"]),
                 # every algorithm, the token bucket (the one the kernel writes out) twice as often
                 limiter=st.sampled_from(["token_bucket", *sorted(ALGORITHMS)]),
                 accounting=st.builds(Accounting, charge=st.sampled_from(["max_tokens", "actual"]),
                                      refund_unused=st.booleans(), cache_hit_ratio=st.sampled_from([0.0, 0.5])),
                 retry_after_rounding=st.sampled_from(["ceil", "round", "floor"]))
models = st.sampled_from(["llama-3.1-8b-instant", "llama-3.3-70b-versatile", "openai/gpt-oss-20b"])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pols=st.lists(plain_policies, min_size=1, max_size=3), arrival=arrivals, org=orgs,
       model_list=st.lists(models, min_size=3, max_size=3), seed=st.integers(0, 2**32 - 1),
       rtt=st.sampled_from([None, 0.25, 0.5]))
def test_kernel_gives_the_general_paths_records_on_random_plain_runs(pols, arrival, org, model_list, seed, rtt):
    """(``rtt``: a constant round trip, so that with constant arrivals retries and arrivals fall due together:
    the ties a gated group's URGENT retries order.)"""
    clients = [client(name=f"g{k}", model=model_list[k], arrival=arrival, policy=f"p{k}",
                      prompt_tokens={"dist": "lognormal", "median": 300, "p95": 3000}, max_tokens=256,
                      completion_tokens={"dist": "uniform", "low": 0, "high": 300}) for k in range(len(pols))]
    spec = RunSpec(clients=clients, policies=policy_table({f"p{k}": p for k, p in enumerate(pols)}), org=org,
                   duration=240.0, drain=300.0,
                   **({} if rtt is None else {"service": service_models(
                       {m: {"rtt_median": rtt, "rtt_p90": rtt} for m in set(model_list)})}))
    assert_same(spec, seed)


def test_kernel_gives_the_same_records_for_audio_a_models_mix_and_a_413(tmp_path):
    """A trace naming several models (requests not on the group's own model: their own round trips and
    limits), Whisper's audio units and a prompt larger than TPM (413) go through the kernel's other branches."""
    rows = ["timestamp,model,prompt_tokens,max_tokens,completion_tokens"]
    models = ["llama-3.1-8b-instant", "llama-3.3-70b-versatile", "openai/gpt-oss-20b"]
    rows += [f"{k * 0.07:.3f},{models[k % 3 if k % 5 else 0]},{300 + 37 * (k % 11)},256,{20 + k % 200}"
             for k in range(3000)]
    trace = tmp_path / "mixed.csv"
    trace.write_text("\n".join(rows) + "\n")
    mix = client(name="mix", arrival=arrival(kind="trace", file=str(trace)), policy="groq-sdk")
    service = service_models()
    service["openai/gpt-oss-20b"] = replace(service["openai/gpt-oss-20b"], rtt_median=0.2, rtt_p90=0.5)  # slower
    cached = Org(tier="free", accounting=Accounting(cache_hit_ratio=0.5))  # (uncached prompt tokens: prefill)
    spec = RunSpec(clients=[mix], policies=policy_table(), org=cached, duration=300.0, service=service)
    (_, g), _ = both(spec, 3)
    assert g.records["model"].nunique() == 3 and g.records["n429"].gt(0).any()
    assert_same(spec, 3)
    paced = RunSpec(clients=[mix.model_copy(update={"policy": "paced"})], policies=policy_table(),
                    org=Org(tier="free"), duration=300.0, service=service)  # a pacer per model: the gates' holds
    assert_same(paced, 3)
    whisper = client(name="w", model="whisper-large-v3-turbo", rate="300/min", policy="groq-sdk", prompt_tokens=0,
                     max_tokens=0, audio_seconds={"dist": "uniform", "low": 5, "high": 60})
    big = client(name="big", model="llama-3.1-8b-instant", rate="30/min", policy="groq-sdk",
                 prompt_tokens={"dist": "lognormal", "median": 2000, "p95": 40000}, max_tokens=100)
    spec = RunSpec(clients=[whisper, big], policies=policy_table(), org=Org(tier="free"), duration=600.0)
    (_, g), _ = both(spec, 5)
    assert (g.records["outcome"] == "too_large").any() and g.records["audio_seconds"].gt(0).any()
    assert g.records["n429"].gt(0).any()
    assert_same(spec, 5)


def _spec(policy="groq-sdk", kind="poisson", org=None, **kw):
    c = client(arrival=arrival(kind=kind, rate="120/min") if kind != "closed" else
               arrival(kind="closed", users=3, think="1s"), policy=policy, **kw)
    return RunSpec(clients=[c], policies=policy_table({"dl": {"extends": "groq-sdk", "deadline": "30s"},
                                                        "fb": {"extends": "groq-sdk",
                                                               "fallback": ["llama-3.1-8b-instant"]}}),
                   org=org or Org(), duration=120.0)


@pytest.mark.parametrize("spec, plain", [
    (_spec(), True), (_spec("no-retry"), True), (_spec("full-jitter"), True),
    (_spec("paced"), True), (_spec("adaptive"), False), (_spec("cooldown"), False), (_spec("dl"), False),
    (_spec("fb"), False), (_spec(kind="closed"), False), (_spec(org=Org(error_rate=0.1)), False),
    (_spec(service_tier="flex"), False), (_spec(project="p"), False),
])
def test_the_kernel_runs_exactly_the_plain_runs(spec, plain, monkeypatch):
    if spec.clients[0].project:
        spec = RunSpec(clients=spec.clients, policies=spec.policies, org=spec.org, duration=spec.duration,
                       projects={"p": Project()})
    ran = []
    monkeypatch.setattr(kernel, "run", lambda sim, until, real=kernel.run: ran.append(1) or real(sim, until))
    sim = Simulation(spec, 1)
    assert kernel.usable(sim) is plain
    sim.run()
    assert ran == ([1] if plain else [])
    sim = Simulation(spec, 1, kernel=False)
    sim.run()
    assert ran == ([1] if plain else [])  # kernel=False: the general path, always


def test_a_watched_run_takes_the_general_path():
    seen = []
    sim = Simulation(_spec(), 1, watch=lambda *a: seen.append(a))
    assert not kernel.usable(sim)
    sim.run()
    assert seen


def test_kernel_keeps_the_peaks_a_refund_reads():
    """Reserving max_tokens and refunding the unused part (slow answers, so other charges land between a
    charge and its refund): the refund is bounded by the bucket's highest level since the charge, which the
    kernel's charge must record as LimitSet's does."""
    slow = client(model="llama-3.3-70b-versatile", rate="4/min", policy="groq-sdk", prompt_tokens=300,
                  max_tokens=8000, completion_tokens={"dist": "uniform", "low": 10, "high": 8000})
    org = Org(tier="free", accounting=Accounting(charge="max_tokens", refund_unused=True))
    spec = RunSpec(clients=[slow], policies=policy_table(), org=org, duration=3600.0)  # (a charge without its
    # peak changes this run's records: checked against that mutant)
    (_, g), _ = both(spec, 11)
    assert g.records["n429"].gt(0).any()
    assert_same(spec, 11)


#: every setting of a policy, client group and org, by how the kernel treats it: a new setting fails the test
#: below until someone decides.  Either the kernel honours it (KERNEL_READS: a policy setting is then drawn by
#: the random comparison above, PLAIN_DRAWS/PLAIN_OPTIONAL), or a run using it takes the general path
#: (KERNEL_EXCLUDES, with a run in GENERAL_RUNS that uses it: sim/kernel.py's plain_group already sends a
#: group whose gates have on_send, on_refused, on_done or observe there; anything else must be excluded there)
KERNEL_READS = {
    "Policy": {"retry", "base", "cap", "delay", "jitter", "max_attempts", "honor_retry_after", "retry_after_cap",
               "retry_on", "pacing", "timeout"},  # through the policy's backoff, retry_on and the pacer's hold
    "Client": {"name", "model", "arrival", "prompt_tokens", "max_tokens", "completion_tokens", "audio_seconds",
               "policy", "batch"},  # sampled before the loop (batch: only read for the batch lane)
    "Org": {"tier", "limits_file", "limiter", "accounting", "retry_after_rounding", "error_status", "flex",
            "batch", "project_quotas"},  # limits and charges; flex, batch, quotas only with lanes (excluded)
    "Accounting": {"charge", "refund_unused", "cache_hit_ratio",
                   "bill_timed_out"},  # (read by the summary from the run's records, as the general path's)
}
KERNEL_EXCLUDES = {  # a run using any of these takes the general path
    "Policy": {"deadline", "fallback", "adaptive", "cooldown", "max_in_flight", "queue_size"},
    "Client": {"service_tier", "project", "lane"},
    "Org": {"error_rate", "service_tier"},
    "Accounting": set(),
}
#: runs that must take the general path, by the class of their settings: together they use every excluded
#: setting.  An entry may carry several settings, for one that only takes effect with a companion (a
#: breaker's open time with its failure count: ``{"breaker_failures": 3, "breaker_open": 30.0}``)
GENERAL_RUNS = {
    "Policy": [{"deadline": "30s"}, {"fallback": ["llama-3.1-8b-instant"]}, {"adaptive": True}, {"cooldown": 2.0},
               {"max_in_flight": 3}, {"queue_size": 5}],
    "Client": [{"service_tier": "flex"}, {"project": "p"}, {"lane": "batch"}],
    "Org": [{"error_rate": 0.1}, {"service_tier": "auto"}],
    "Accounting": [],
}


def _general_run(where: str, values: dict) -> RunSpec:
    """A one-group run using the settings ``values`` of class ``where`` (Policy, Client, Org, Accounting), the
    rest plain."""
    c = client(policy="x", **(values if where == "Client" else {}))
    org = Org(**values) if where == "Org" else Org(accounting=Accounting(**values if where == "Accounting" else {}))
    return RunSpec(clients=[c], policies=policy_table({"x": values if where == "Policy" else {}}), org=org,
                   duration=60.0, projects={c.project: Project()} if c.project else {})


def test_every_setting_is_either_read_by_the_kernel_or_sends_the_run_down_the_general_path():
    from sim.config import Client, Policy
    for cls in (Policy, Client, Org, Accounting):
        name = cls.__name__
        unknown = set(cls.model_fields) - KERNEL_READS[name] - KERNEL_EXCLUDES[name]
        assert not unknown and set(cls.model_fields) == KERNEL_READS[name] | KERNEL_EXCLUDES[name], (
            f"{name} setting(s) {sorted(unknown) or '(none; a listed one is gone)'} unknown to tests/test_kernel.py. "
            f"If sim/kernel.py honours it, add it to KERNEL_READS[{name!r}] (a policy setting also to PLAIN_OPTIONAL, "
            f"so the random comparison draws it); if a run using it takes the general path (a gate with on_send, "
            f"on_refused, on_done or observe does; else exclude it in plain_group), add it to "
            f"KERNEL_EXCLUDES[{name!r}] and a run using it, with any companion setting it needs, to GENERAL_RUNS")
        used = {k for run_settings in GENERAL_RUNS[name] for k in run_settings}
        assert KERNEL_EXCLUDES[name] <= used, (
            f"GENERAL_RUNS[{name!r}] uses no run of {sorted(KERNEL_EXCLUDES[name] - used)}: add one (an entry may "
            "carry companion settings)")
        assert used <= set(cls.model_fields), sorted(used - set(cls.model_fields))
        for run_settings in GENERAL_RUNS[name]:
            assert not kernel.usable(Simulation(_general_run(name, run_settings), 0)), (
                f"a run with {name} {run_settings} takes the fast lane: if a setting there takes effect only with "
                "another, put both in this entry; else exclude it in sim/kernel.py's plain_group (or, if the kernel "
                "honours it, move it to KERNEL_READS)")
    assert KERNEL_READS["Policy"] <= set(PLAIN_DRAWS) | set(PLAIN_OPTIONAL), (
        f"the kernel reads Policy setting(s) {sorted(KERNEL_READS['Policy'] - set(PLAIN_DRAWS) - set(PLAIN_OPTIONAL))}"
        " that the random comparison never draws: add them to PLAIN_OPTIONAL")


@pytest.mark.parametrize("model, rate, policy, refund", [
    ("groq/compound", "60/min", "groq-sdk", False),  # RPM binds, then RPD (250 a day) after ~8 minutes
    ("groq/compound", "90/min", "full-jitter", True),
    ("playai-tts", "20/min", "groq-sdk", False),  # TPD (3 600 a day) and RPD (100) run out
    ("llama-3.3-70b-versatile", "40/min", "retry-after", True),  # TPD (100 000) runs out within the hour
    ("llama-3.3-70b-versatile", "40/min", "groq-sdk", False),  # the same, TPD's bucket keeping no peaks
])
def test_kernel_matches_when_the_daily_units_bind(model, rate, policy, refund):
    """Runs long enough for the second request unit (RPD) or a second token unit (TPD) to bind, so the
    kernel's unrolled RPD bucket, its refusal memory and its TPD bucket decide refusals."""
    c = client(model=model, rate=rate, policy=policy, prompt_tokens={"dist": "uniform", "low": 50, "high": 400},
               max_tokens=200, completion_tokens={"dist": "uniform", "low": 10, "high": 200})
    org = Org(tier="free", accounting=Accounting(charge="max_tokens", refund_unused=refund))
    spec = RunSpec(clients=[c], policies=policy_table(), org=org, duration=3600.0)
    (gs, g), _ = both(spec, 21)
    daily = {"rpd", "tpd"} & set(gs.limitsets[0].units)
    bound = set(g.refusals["unit"].astype(str)) if "unit" in g.refusals else set()
    assert daily & bound, (daily, bound)  # a daily unit refused some attempts
    assert_same(spec, 21)


def _whole_seconds(path, period: int, burst: int, prompt: int, policies: list[str]) -> RunSpec:
    """Bursts of ``burst`` requests every ``period`` s from a trace, no network, so a retry after a
    whole-second retry-after lands on the very instant of a later arrival; one group per policy."""
    path.write_text("timestamp,prompt_tokens,max_tokens,completion_tokens\n" + "".join(
        f"{period * (k // burst)},{prompt + 13 * (k % 5)},64,{10 + k % 50}\n" for k in range(burst * 300 // period)))
    service = service_models()
    service["llama-3.1-8b-instant"] = replace(service["llama-3.1-8b-instant"], rtt_median=0.0, rtt_p90=0.0)
    groups = [client(name=f"g{k}", model="llama-3.1-8b-instant", arrival=arrival(kind="trace", file=str(path)),
                     policy=policy) for k, policy in enumerate(policies)]
    return RunSpec(clients=groups, policies=policy_table(), org=Org(tier="free"), duration=300.0, service=service)


@pytest.mark.parametrize("period, burst, prompt, policies", [
    (10, 10, 700, ["groq-sdk"]),  # ties both ways: a retry queued before the arrival got its id, and after
    (2, 7, 200, ["groq-sdk", "retry-after"]),  # two groups on one model: the loop turns with an arrival waiting
])
def test_kernel_orders_a_retry_and_an_arrival_at_the_same_instant_as_the_clock_does(tmp_path, period, burst,
                                                                                    prompt, policies):
    """The kernel keeps a group's next arrival out of the heap; when a retry falls on the same instant it
    must go before or after it by event id, as the clock's heap orders them (checked against both mutants:
    arrival first, retry first)."""
    spec = _whole_seconds(tmp_path / "t.csv", period, burst, prompt, policies)
    (_, g), _ = both(spec, 2)
    retried = g.records[g.records["n429"] > 0]
    assert len(retried) and (retried["admitted"].dropna() % 1 == 0).any()  # retries sent on whole seconds
    assert_same(spec, 2)


def test_kernel_stops_and_resumes_as_the_clock_does():
    """``kernel.run(sim, until)`` in pieces gives the records of one run to the end, as SimPy's
    ``run(until=...)`` does: what the loop holds outside the heap (a group's waiting arrival, the limit set's
    state in locals) is back in the heap and the buckets when it stops."""
    groups = [client(name="a", model="llama-3.1-8b-instant", rate="90/min", policy="groq-sdk"),
              client(name="b", model="llama-3.3-70b-versatile", rate="60/min", policy="full-jitter")]
    spec = RunSpec(clients=groups, policies=policy_table(), org=Org(tier="free"), duration=600.0)
    whole = Simulation(spec, 4)
    expected = whole.run()
    pieces = Simulation(spec, 4)
    for c in pieces.clients:
        pieces._generate(c)
        kernel.schedule_arrivals(pieces, c)
    for until in (61.3, 200.0, 200.0, 487.25, spec.duration + spec.drain):
        kernel.run(pieces, until)
        assert pieces.env.now == until
    got = pieces.result()
    assert expected.records["n429"].gt(0).any()
    pd.testing.assert_frame_equal(expected.records, got.records)
    pd.testing.assert_frame_equal(expected.refusals, got.refusals)
    assert whole.events == pieces.events


# ---- edges the random runs do not reach, each against the general path -------------------------------------
M, OTHER = "llama-3.1-8b-instant", "llama-3.3-70b-versatile"
BIG = {"rpm": 30, "rpd": 100_000, "tpm": 1_000_000, "tpd": 10_000_000}


def _edge(limits: dict, clients: list, duration: float = 600.0) -> RunSpec:
    """A run on a custom tier ``edge`` whose models have ``limits`` (model -> {unit: limit})."""
    from sim.catalog import Catalog, Limits
    catalog = Catalog({"edge": {m: Limits(**units) for m, units in limits.items()}})
    return RunSpec(clients=clients, policies=policy_table(), org=Org(tier="edge"), catalog=catalog,
                   duration=duration, drain=300.0)


def _fixed(name="c", model=M, rate="6/min", **kw):
    """Requests charging exactly 150 tokens (100 prompt + 50 max_tokens, charged as reserved)."""
    return client(name=name, model=model, rate=rate, policy="groq-sdk", prompt_tokens=100, max_tokens=50,
                  completion_tokens=20, **kw)


def _trace(tmp_path, name: str, models: list[str]):
    path = tmp_path / f"{name}.csv"
    path.write_text("timestamp,model,prompt_tokens,max_tokens,completion_tokens\n" + "".join(
        f"{k * 2.5:.1f},{m},100,50,20\n" for k, m in enumerate(models)))
    return arrival(kind="trace", file=str(path))


def _outcomes(spec, seed=7):
    (_, g), _ = both(spec, seed)
    assert_same(spec, seed)
    return g.records


def test_kernel_edge_a_bucket_that_holds_exactly_one_request():
    """RPM 1 (or RPD 1): a full bucket holds exactly the one request it admits, and is then exactly empty."""
    for unit in ("rpm", "rpd"):
        rec = _outcomes(_edge({M: {**BIG, unit: 1}}, [_fixed()]))
        assert (rec["outcome"] == "ok").sum() >= 1 and rec["n429"].gt(0).any(), unit
        assert rec["refused_by"].astype(str).eq(unit).any(), unit


def test_kernel_edge_a_request_of_exactly_the_token_limit():
    """A request charging exactly TPM (or TPD) is admitted, not refused as too large; TPD then is exactly
    empty.  One larger than TPD (though within TPM) is a 413 of TPD."""
    for unit in ("tpm", "tpd"):
        rec = _outcomes(_edge({M: {**BIG, unit: 150}}, [_fixed()]))
        assert rec["outcome"].iloc[0] == "ok" and not (rec["outcome"] == "too_large").any(), unit
    rec = _outcomes(_edge({M: {**BIG, "tpd": 149}}, [_fixed()]))
    assert (rec["outcome"] == "too_large").all() and (rec["refused_by"].astype(str) == "tpd").all()


def test_kernel_edge_limits_without_token_units_and_requests_without_tokens():
    """A model limited by requests only (a limit set the kernel calls rather than writes out), and requests
    that charge no tokens at all (a zero-token request passes every token unit)."""
    rec = _outcomes(_edge({M: {"rpm": 2, "rpd": 100}}, [_fixed(rate="20/min")]))
    assert rec["n429"].gt(0).any()
    empty = client(model=M, rate="90/min", policy="groq-sdk", prompt_tokens=0, max_tokens=0, completion_tokens=0)
    rec = _outcomes(RunSpec(clients=[empty], policies=policy_table(), org=Org(tier="free"), duration=300.0))
    assert rec["charged_tokens"].eq(0).all() and rec["n429"].gt(0).any() and (rec["outcome"] == "ok").any()


def test_kernel_edge_a_group_without_requests():
    """A plain group whose first arrival falls after the horizon, beside one that sends."""
    idle = client(name="idle", model=M, rate="1/day", policy="groq-sdk")
    rec = _outcomes(RunSpec(clients=[_fixed(rate="60/min"), idle], policies=policy_table(), org=Org(tier="free"),
                            duration=120.0))
    assert (rec["client"] == "idle").sum() == 0 and len(rec)


def test_kernel_edge_traces_whose_requests_name_other_models(tmp_path):
    """A trace group switching between a model whose limits the kernel writes out and one it calls (requests
    only); a group whose every request names a model other than its own; one of a single such request."""
    limits = {M: BIG, OTHER: {"rpm": 2, "rpd": 1000}}
    switching = client(name="s", model=M, policy="groq-sdk", arrival=_trace(tmp_path, "s", [M, OTHER] * 40))
    rec = _outcomes(_edge(limits, [switching]))
    assert set(rec["model"].astype(str)) == {M, OTHER} and rec["n429"].gt(0).any()
    elsewhere = client(name="e", model=M, policy="groq-sdk", arrival=_trace(tmp_path, "e", [OTHER] * 40))
    single = client(name="one", model=M, policy="groq-sdk", arrival=_trace(tmp_path, "one", [OTHER]))
    rec = _outcomes(_edge({M: {**BIG, "rpm": 1}, OTHER: BIG}, [elsewhere, single]))
    assert (rec["model"].astype(str) == OTHER).all() and not rec["n429"].gt(0).any()  # (M's RPM 1 would refuse)


def test_kernel_edge_both_request_units_short_and_rpm_the_longer_wait(tmp_path):
    """RPM 1 and RPD 2: after half a day idle RPD is nearly full again; a request then empties RPM and leaves
    RPD just under one, so the next one finds both short, RPD's wait (~29 s) the shorter: RPM's (59 s) is the
    wait, and RPM the binding unit."""
    path = tmp_path / "idle.csv"
    path.write_text("timestamp,prompt_tokens,max_tokens,completion_tokens\n0,100,50,20\n43170,100,50,20\n"
                    "43171,100,50,20\n")
    c = client(model=M, policy="groq-sdk", arrival=arrival(kind="trace", file=str(path)))
    g = _outcomes(_edge({M: {**BIG, "rpm": 1, "rpd": 2}}, [c], duration=43_300.0))
    assert list(g["refused_by"].astype(str)) == ["", "", "rpm"] and list(g["outcome"]) == ["ok"] * 3
    assert g["finished"].iloc[2] - g["created"].iloc[2] > 59  # waited RPM's 59 s, not RPD's 29


def test_kernel_edge_a_refusal_that_comes_back_after_the_timeout():
    """A 429 whose round trip is longer than the client's timeout is a timeout (retried whatever retry_on
    says, while attempts remain): round trips slowed to ~0.2-0.5 s, a 0.3 s timeout, 429s not retried.
    A 413 that comes back late is retried too, and counts no 429.  The random runs' timeouts are longer than
    their round trips, so only this run reaches that branch."""
    pol = {"slow": {"retry": "fixed", "delay": 1.0, "max_attempts": 2, "retry_on": [503], "timeout": 0.3}}
    service = service_models()
    service[M] = replace(service[M], rtt_median=0.25, rtt_p90=0.5)
    c = client(model=M, rate="600/min", policy="slow", prompt_tokens=100, max_tokens=50, completion_tokens=20)
    big = client(name="big", model=M, rate="10/min", policy="slow", prompt_tokens=9000, max_tokens=50)  # > TPM
    spec = RunSpec(clients=[c, big], policies=policy_table(pol), org=Org(tier="free"), duration=120.0,
                   drain=60.0, service=service)
    every = _outcomes(spec)
    late_413 = every[every["client"] == "big"]  # a 413 is no 429, whenever it comes back; a late one is retried
    assert late_413["n429"].eq(0).all() and late_413["attempts"].eq(2).any()
    assert set(late_413["outcome"]) == {"too_large", "error"}
    rec = every[every["client"] == "c"]
    # a refused first attempt that came back in time gives up (429 not retried); one that came back late
    # was retried: its second attempt was sent, and a late refusal of that one ends as an error
    refused_first = rec["n429"].gt(0) & rec["attempts"].eq(1)
    assert (rec.loc[refused_first, "outcome"] == "gave_up").any()
    assert (rec["attempts"].eq(2) & rec["n429"].ge(1)).any()
    assert (rec["outcome"] == "error").any()
