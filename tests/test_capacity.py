"""`groqsim capacity`: the analytic ceiling charges what the limits really see (refunds, flex, auto, projects,
the Batch lane), and the simulated search neither stops at its first guess nor reads the rate off the mean."""
import math

import pytest

from sim.capacity import NONE_FITS, Ceiling, analytic_ceiling, bisection, capacity_table
from sim.scenario import scenario_from_dict

CHAT = {"name": "c", "model": "openai/gpt-oss-20b", "arrival": {"kind": "constant", "rate": "100/min"},
        "prompt_tokens": 100, "max_tokens": 4000, "completion_tokens": 100}


def _scenario(org=None, client=None, **extra):
    data = {"scenario": {"name": "cap", "duration": "5m", "replications": 1},
            "org": {"tier": "developer", **(org or {})}, "clients": [{**CHAT, **(client or {})}], **extra}
    return scenario_from_dict(data, source="<test>")


def test_refunded_reservations_cost_only_what_was_used():
    # Developer gpt-oss-20b: RPM 1 000, RPD 500 000, TPM 250 000.  Charged 4 100 a request, TPM binds at
    # 61/min; with the 3 900 unused tokens given back, a request costs 200: of the minute units RPM binds at
    # 1 000/min, and over a day RPD at 347/min
    charged = analytic_ceiling(_scenario())
    assert charged.rpm == pytest.approx(250_000 / 4100) and charged.binding == "openai/gpt-oss-20b TPM"
    refunded = analytic_ceiling(_scenario({"accounting": {"refund_unused": True}}))
    assert refunded.per_minute == pytest.approx(1000) and refunded.per_minute_binding == "openai/gpt-oss-20b RPM"
    assert refunded.rpm == pytest.approx(500_000 / 1440) and refunded.binding == "openai/gpt-oss-20b RPD"
    assert refunded.per_unit["openai/gpt-oss-20b TPM"] == pytest.approx(250_000 / 200)


def test_flex_and_auto_pass_the_flex_limits_and_the_batch_lane_none():
    flex = analytic_ceiling(_scenario(client={"service_tier": "flex"}))  # x10 by default
    assert flex.rpm == pytest.approx(2_500_000 / 4100) and flex.binding == "openai/gpt-oss-20b (flex) TPM"
    auto = analytic_ceiling(_scenario({"service_tier": "auto", "flex": {"multiplier": 4}}))
    assert auto.rpm == pytest.approx(5 * 250_000 / 4100)  # on-demand first, then flex: both sets' limits
    batch = analytic_ceiling(_scenario(client={"lane": "batch"}))
    assert batch.per_unit == {} and math.isinf(batch.rpm) and batch.base_rpm == pytest.approx(100)
    assert batch.too_large == 0  # (nothing passes the limits: no share of it is too large)


def test_a_projects_own_lower_limit_is_a_ceiling_of_its_own():
    projects = {"etl": {"limits": {"openai/gpt-oss-20b": {"tpm": 41_000}}}}
    c = analytic_ceiling(_scenario(client={"project": "etl"}, projects=projects))
    assert c.rpm == pytest.approx(10) and c.binding == "etl/openai/gpt-oss-20b TPM"
    off = analytic_ceiling(_scenario({"project_quotas": False}, client={"project": "etl"}, projects=projects))
    assert off.rpm == pytest.approx(250_000 / 4100)  # quotas off: only the org's limits


def test_requests_that_never_fit_charge_no_unit():
    """Half the mix is larger than Free's whole TPM (8 000 on gpt-oss-120b): a 413, refused, charged nothing.
    The units carry the other half alone: 100 req/min of the mix, 50 of them fitting at 4 100 tokens each,
    so TPM allows x8 000 / 205 000 of it (3.9 req/min of the mix; it read 1.95, charging the refused half
    too), RPM 30 / 50 (60 req/min) and over a day TPD 200 000 / (50 x 4 100 x 1 440).  With every request
    too large no request is ever served: no ceiling, the binding says why."""
    two = [{**CHAT, "model": "openai/gpt-oss-120b", "name": f"c{k}",
            "arrival": {"kind": "constant", "rate": "50/min"}} for k in range(2)]
    two[1]["prompt_tokens"] = 9000
    data = {"scenario": {"name": "cap", "duration": "5m", "replications": 1}, "org": {"tier": "free"},
            "clients": two}
    c = analytic_ceiling(scenario_from_dict(data, source="<test>"))
    assert c.base_rpm == pytest.approx(100) and c.too_large == pytest.approx(0.5)
    assert c.per_unit["openai/gpt-oss-120b RPM"] == pytest.approx(30 / 50 * 100)
    assert c.per_minute == pytest.approx(8000 / (50 * 4100) * 100)
    assert c.per_minute_binding == "openai/gpt-oss-120b TPM"
    assert c.rpm == pytest.approx(200_000 / (50 * 4100 * 1440) * 100) and c.binding == "openai/gpt-oss-120b TPD"
    assert c.load == pytest.approx(c.rpm / 100)
    assert c.per_day == pytest.approx(200_000 / 4100 * 2) and c.per_day_binding == "openai/gpt-oss-120b TPD"
    two[1]["prompt_tokens"] = 4000  # 4 000 + 4 000 = the whole TPM: fits (a full bucket holds it)
    assert analytic_ceiling(scenario_from_dict(data, source="<test>")).too_large == 0
    two[1]["prompt_tokens"] = 4001
    assert analytic_ceiling(scenario_from_dict(data, source="<test>")).too_large == pytest.approx(0.5)
    two[0]["prompt_tokens"] = 9000
    none = analytic_ceiling(scenario_from_dict(data, source="<test>"))
    assert none.too_large == 1.0 and (none.rpm, none.per_minute, none.per_day) == (0, 0, 0)
    assert none.binding == none.per_minute_binding == none.per_day_binding == NONE_FITS


def test_audio_that_never_fits_charges_no_audio_unit():
    """Free whisper-large-v3: ASH 7 200 s, RPM 20.  Half the mix is a file of 7 300 s (a 413), half a minute of
    audio: 2 req/min of the mix carry 60 audio-s a minute, so ASH allows x2 (4 req/min), RPM x20 (40)."""
    stt = [{"name": f"s{k}", "model": "whisper-large-v3", "arrival": {"kind": "constant", "rate": "1/min"},
            "audio_seconds": seconds} for k, seconds in enumerate((7300, 60))]
    data = {"scenario": {"name": "cap", "duration": "5m", "replications": 1}, "org": {"tier": "free"},
            "clients": stt}
    c = analytic_ceiling(scenario_from_dict(data, source="<test>"))
    assert c.too_large == pytest.approx(0.5) and c.base_rpm == pytest.approx(2)
    assert c.per_unit["whisper-large-v3 ASH"] == pytest.approx(4) and c.per_minute_binding == "whisper-large-v3 ASH"
    assert c.per_unit["whisper-large-v3 RPM"] == pytest.approx(40)


def _drive(search, meets):
    """Run a bisection generator, answering each load with ``meets(load)``; (loads tried, result)."""
    tried, load = [], next(search)
    while True:
        tried.append(load)
        try:
            load = search.send((meets(load), 1.0, 1.0, 0.002 if meets(load) else 9.0, 10.0 * load))
        except StopIteration as done:
            return tried, done.value


def _ceiling(per_minute):
    return Ceiling(10.0, per_minute / 10.0, per_minute, "m RPM", per_minute, "m RPM", math.inf, "", {})


def test_the_search_doubles_past_a_ceiling_that_was_too_low():
    scenario = _scenario()
    tried, row = _drive(bisection(scenario, _ceiling(10.0)), lambda load: load <= 7.0)  # starts at 2x = 2
    assert tried[:3] == [2.0, 4.0, 8.0]  # doubled while the target held
    assert 7.0 * (1 - scenario.capacity.tolerance) <= row["sim_load"] <= 7.0 and not row["sim_capped"]
    assert row["sim_rpm"] == pytest.approx(10.0 * row["sim_load"])  # the rate the runs were offered


def test_the_search_ends_at_the_finest_tolerance():
    # at tolerance 1e-4 the bracket [lo, hi] around 7 halves ~15 times; the bracket cannot split below a
    # float's spacing, so even a tolerance no float can meet ends (it once looped for ever)
    scenario = _scenario(capacity={"tolerance": 1e-4})
    tried, row = _drive(bisection(scenario, _ceiling(10.0)), lambda load: load <= 7.0)
    assert 7.0 * (1 - 1e-4) <= row["sim_load"] <= 7.0 and len(tried) < 40
    # below what a scenario may ask, as a guard; on a copy: a frozen default may be shared by every scenario
    object.__setattr__(scenario, "capacity", scenario.capacity.model_copy(update={"tolerance": 1e-300}))
    tried, row = _drive(bisection(scenario, _ceiling(10.0)), lambda load: load <= 7.0)
    assert row["sim_load"] <= 7.0 and len(tried) < 80


def test_the_search_says_when_max_load_still_met_the_target():
    scenario = _scenario()
    tried, row = _drive(bisection(scenario, _ceiling(10.0)), lambda load: True)
    assert tried == [2.0, 4.0, 8.0, 16.0, 32.0, 64.0] and row["sim_load"] == 64.0 and row["sim_capped"]
    assert math.isnan(row["sim_missed_load"])  # no load missed
    tried, row = _drive(bisection(scenario, _ceiling(10.0)), lambda load: False)  # even the first load fails
    assert row["sim_load"] == 0.0 and row["sim_rpm"] == 0.0 and not row["sim_capped"]
    assert row["sim_missed_load"] == tried[-1] < 1e-3 and row["sim_finished"]


def test_the_simulated_rate_is_the_one_the_window_was_offered():
    # 30/min for the first 10 minutes of every hour: a long-run mean of 5/min, but a 10-minute run sees 30
    data = {"scenario": {"name": "cap", "duration": "10m", "replications": 1}, "org": {"tier": "developer"},
            "clients": [{**CHAT, "max_tokens": 200, "arrival": {"kind": "piecewise", "period": "1h",
                                                                 "schedule": [["0m", "30/min"], ["10m", "0/min"]]}}]}
    (row,) = capacity_table(scenario_from_dict(data, source="<test>"))
    assert row["offered_rpm"] == pytest.approx(5.0)
    assert row["sim_rpm"] == pytest.approx(30.0 * row["sim_load"], rel=0.05)
    assert 500 < row["sim_rpm"] <= 1000  # RPM 1 000 binds what the window can be offered


def test_the_search_starts_at_twice_the_faster_ceiling_and_reports_what_it_found():
    scenario = _scenario()
    # per-minute units allow 30/min, all units 12/min, 10/min offered: starts at 2 x 30 / 10 = 6
    ceiling = Ceiling(10.0, 1.2, 12.0, "m RPD", 30.0, "m RPM", 17280.0, "m RPD", {})
    search = bisection(scenario, ceiling)
    assert next(search) == 6.0
    tried, row = _drive(bisection(scenario, ceiling), lambda load: load <= 5.0)
    assert tried[0] == 6.0 and tried[1] == 3.0  # failed at 6: bisect [0, 6]
    assert 5.0 * (1 - scenario.capacity.tolerance) <= row["sim_load"] <= 5.0
    assert row["sim_cost_per_1k"] == pytest.approx(2.0) and row["sim_success"] == 1.0 and row["sim_p95"] == 1.0
    no_ceiling = Ceiling(10.0, math.inf, math.inf, "", math.inf, "", math.inf, "", {})  # the Batch lane only
    assert next(bisection(scenario, no_ceiling)) == scenario.capacity.max_load
    closed = Ceiling(0.0, math.nan, math.inf, "", math.inf, "", math.inf, "", {})  # no offered rate
    assert next(bisection(scenario, closed)) == scenario.capacity.max_load


def test_a_projects_limits_under_flex_are_multiplied_like_the_orgs():
    projects = {"etl": {"limits": {"openai/gpt-oss-20b": {"tpm": 41_000}}}}
    c = analytic_ceiling(_scenario(client={"project": "etl", "service_tier": "flex"}, projects=projects))
    assert c.binding == "etl/openai/gpt-oss-20b TPM" and c.rpm == pytest.approx(10 * 41_000 / 4100)


SMALL = {"small": {"base": "developer", "overrides": {"openai/gpt-oss-20b": {"rpm": 30}}}}
TINY = {**CHAT, "prompt_tokens": 100, "max_tokens": 50, "completion_tokens": 20}


def _fallback(clients, policies=None) -> Ceiling:
    data = {"scenario": {"name": "cap", "duration": "5m", "replications": 1}, "org": {"tier": "small"},
            "tiers": SMALL, "clients": clients,
            "policies": policies or {"fb": {"retry": "groq-sdk", "fallback": ["openai/gpt-oss-120b"]}}}
    return analytic_ceiling(scenario_from_dict(data, source="<test>"))


def test_a_fallback_chain_adds_its_models_limits_to_the_ceiling():
    """gpt-oss-20b at RPM 30, falling back to gpt-oss-120b (Developer: RPM 1 000, RPD 500 000; each request 150
    tokens, far inside both TPMs): per minute 30 + 1 000 req/min; over a day 20b's RPM (30/min, below its RPD's
    347) plus 120b's RPD (347/min).  The ceiling counted the primary alone: 30 req/min, 35x below what a run
    reaches (the simulated search found 1 050)."""
    c = _fallback([{**TINY, "arrival": {"kind": "poisson", "rate": "45/min"}, "policy": "fb"}])
    assert c.per_minute == pytest.approx(1030)
    assert c.per_minute_binding == "openai/gpt-oss-20b RPM + openai/gpt-oss-120b RPM"
    assert c.rpm == pytest.approx(30 + 500_000 / 1440) and c.load == pytest.approx(c.rpm / 45)
    assert c.binding == "openai/gpt-oss-20b RPM + openai/gpt-oss-120b RPD"
    assert c.per_day == pytest.approx(1_000_000) and c.per_day_binding == ("openai/gpt-oss-20b RPD + "
                                                                           "openai/gpt-oss-120b RPD")
    assert math.isinf(c.per_unit["openai/gpt-oss-20b RPM"])  # (alone, it holds nothing back: the rest spills)
    # without the fallback, the primary alone, as before
    alone = _fallback([{**TINY, "arrival": {"kind": "poisson", "rate": "45/min"}}])
    assert alone.per_minute == pytest.approx(30) and alone.per_minute_binding == "openai/gpt-oss-20b RPM"


def test_a_fallback_the_policys_attempts_never_reach_adds_nothing():
    """A hop is an attempt: with max_attempts = 1 the fallback is never tried (the ceiling had counted it:
    1 030 req/min where runs reach 30); with 2, only the chain's first fallback model is."""
    clients = [{**TINY, "arrival": {"kind": "poisson", "rate": "45/min"}, "policy": "fb"}]
    one = _fallback(clients, {"fb": {"retry": "none", "fallback": ["openai/gpt-oss-120b"]}})
    assert one.per_minute == pytest.approx(30) and one.per_minute_binding == "openai/gpt-oss-20b RPM"
    chain = ["openai/gpt-oss-120b", "llama-3.1-8b-instant"]
    two = _fallback(clients, {"fb": {"retry": "fixed", "max_attempts": 2, "fallback": chain}})
    assert two.per_minute == pytest.approx(1030)
    assert two.per_minute_binding == "openai/gpt-oss-20b RPM + openai/gpt-oss-120b RPM"
    three = _fallback(clients, {"fb": {"retry": "fixed", "max_attempts": 3, "fallback": chain}})
    assert three.per_minute > 1030 and "llama-3.1-8b-instant" in three.per_minute_binding


def test_a_fallback_model_shared_with_another_group_carries_both():
    """Group a (40/min on gpt-oss-20b, falling back to gpt-oss-120b) and group b (500/min on gpt-oss-120b): at load
    m, a's 40m - 30 that 20b refuses and b's 500m share 120b's RPM 1 000, so m = 1 030 / 540 (of the mix's 540
    req/min: 1 030 req/min)."""
    c = _fallback([{**TINY, "name": "a", "arrival": {"kind": "constant", "rate": "40/min"}, "policy": "fb"},
                   {**TINY, "name": "b", "model": "openai/gpt-oss-120b",
                    "arrival": {"kind": "constant", "rate": "500/min"}}])
    assert c.base_rpm == pytest.approx(540) and c.per_minute == pytest.approx(1030)
    assert c.per_minute_binding == "openai/gpt-oss-20b RPM + openai/gpt-oss-120b RPM"


@pytest.mark.parametrize("seed", range(5))
def test_the_fallback_programme_agrees_with_the_closed_form_when_no_stream_has_a_choice(seed):
    """With one model a stream, the linear programme's answer is the closed form's, min over units of capacity
    over use, binding unit included: checked on random mixes of streams and units."""
    import numpy as np

    from sim.capacity import _fluid_ceiling, _one_model_ceiling
    rng = np.random.default_rng(seed)
    keys = [(f"m{k}", u) for k in range(3) for u in ("rpm", "tpm", "rpd")]
    streams = [(float(rng.uniform(0.1, 5)), [{key: float(rng.uniform(1, 3000)) if key[1] != "rpm" else 1.0
                                              for key in keys if rng.random() < 0.4}]) for _ in range(4)]
    capacity = {key: float(rng.uniform(10, 1e5)) for key in keys}
    load, binding = _one_model_ceiling(streams, capacity)
    fluid, fluid_binding = _fluid_ceiling(streams, capacity)
    assert fluid == pytest.approx(load, rel=1e-7) and fluid_binding == binding


def test_a_trace_row_on_another_model_falls_back_through_the_chain_too(tmp_path):
    """The engine sends a 429 of any request, a trace's row naming another model included, down the policy's
    chain: 60 rows a minute on gpt-oss-20b (RPM 30) from a group whose policy falls back to gpt-oss-120b (RPM
    1 000): 30 + 1 000 req/min (it read 30, the row's own model alone)."""
    trace = tmp_path / "t.csv"
    trace.write_text("timestamp,model\n" + "".join(f"{k},openai/gpt-oss-20b\n" for k in range(300)))
    c = _fallback([{**TINY, "model": "openai/gpt-oss-120b", "arrival": {"kind": "trace", "file": str(trace)},
                    "policy": "fb"}])
    assert c.per_minute == pytest.approx(1030)


def test_a_trace_of_two_models_falls_back_as_two_groups_of_one_would(tmp_path):
    """Each of a trace's models goes down the whole chain: the ceiling of one group whose rows name
    gpt-oss-20b and allam-2-7b is that of the same rows in two groups, one a model (the chain was lost after
    the first model: a traceback, or that model's fallback silently dropped)."""
    rows = [(k, "openai/gpt-oss-20b" if k % 3 else "allam-2-7b") for k in range(300)]
    files = {}
    for name, keep in (("both", None), ("20b", "openai/gpt-oss-20b"), ("allam", "allam-2-7b")):
        files[name] = tmp_path / f"{name}.csv"
        files[name].write_text("timestamp,model\n" + "".join(f"{t},{m}\n" for t, m in rows if keep in (None, m)))
    group = {**TINY, "model": "openai/gpt-oss-120b", "policy": "fb"}
    one = _fallback([{**group, "arrival": {"kind": "trace", "file": str(files["both"])}}])
    two = _fallback([{**group, "name": name, "arrival": {"kind": "trace", "file": str(files[name])}}
                     for name in ("20b", "allam")])
    assert one.base_rpm == pytest.approx(two.base_rpm) and one.per_minute == pytest.approx(two.per_minute, rel=1e-9)
    assert set(one.per_minute_binding.split(" + ")) == set(two.per_minute_binding.split(" + ")) == {
        "openai/gpt-oss-20b RPM", "openai/gpt-oss-120b RPM", "allam-2-7b RPM"}  # (the order: first met)


def test_a_request_too_large_for_a_fallback_is_served_by_the_models_before_it():
    """The engine ends a request at a 413 on any model of its chain, a fallback's too.  Group a (40/min of 150
    tokens) and group b (40/min of 7 050 tokens) on gpt-oss-20b (RPM 30), falling back to gpt-oss-120b with TPM
    6 000: b's requests never fit 120b, so at load m b's 40m must all go to 20b: m = 30 / 40 (60 req/min of the
    mix's 80), whatever 120b has left.  Counting b's requests as fitting 120b let its TPM carry 6 000 / 7 050 of
    one more a minute: 60.41 req/min."""
    tiers = {"small": {"base": "developer", "overrides": {"openai/gpt-oss-20b": {"rpm": 30},
                                                          "openai/gpt-oss-120b": {"tpm": 6_000}}}}
    data = {"scenario": {"name": "cap", "duration": "5m", "replications": 1}, "org": {"tier": "small"},
            "tiers": tiers, "policies": {"fb": {"retry": "groq-sdk", "fallback": ["openai/gpt-oss-120b"]}},
            "clients": [{**TINY, "name": "a", "arrival": {"kind": "constant", "rate": "40/min"}, "policy": "fb"},
                        {**TINY, "name": "b", "prompt_tokens": 7_000, "arrival": {"kind": "constant", "rate": "40/min"},
                         "policy": "fb"}]}
    c = analytic_ceiling(scenario_from_dict(data, source="<test>"))
    assert c.base_rpm == pytest.approx(80) and c.per_minute == pytest.approx(60, rel=1e-9)
    assert c.per_minute_binding == "openai/gpt-oss-20b RPM"
    assert c.too_large == 0.0  # (every request fits its own model: none is a 413 at the ceiling)
    # a model further down the chain is out of reach too, once one before it is too small: 120b, then 20b again
    data["policies"]["fb"]["fallback"] = ["openai/gpt-oss-120b", "llama-3.1-8b-instant"]
    c3 = analytic_ceiling(scenario_from_dict(data, source="<test>"))
    assert c3.per_minute == pytest.approx(60, rel=1e-9)


def test_without_a_fallback_the_closed_form_is_used_not_the_programme(monkeypatch):
    """(The programme gives the same ceilings up to its round-off; the closed form keeps them exact, and spares
    the scipy.optimize import.)"""
    import sim.capacity

    def refused(*_):
        raise AssertionError("the linear programme ran for a mix without a fallback")
    monkeypatch.setattr(sim.capacity, "_fluid_ceiling", refused)
    alone = _fallback([{**TINY, "arrival": {"kind": "poisson", "rate": "45/min"}}])
    assert alone.per_minute == pytest.approx(30)
