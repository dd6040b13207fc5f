"""`groqsim capacity` and the notebooks' helpers, pinned on values computed by hand: the knee of a sweep,
the target's boundaries, the bisection's exact loads and stopping rule, the rate a window with a warm-up was
offered, the analytic ceiling's load and its edges (a project lowering nothing, a unit nothing costs, no
offered rate, refunds of nothing)."""
import math

import pandas as pd
import pytest

from sim.capacity import Ceiling, analytic_ceiling, bisection, knee, run_summary, verdict
from sim.scenario import scenario_from_dict

CHAT = {"name": "c", "model": "openai/gpt-oss-20b", "arrival": {"kind": "constant", "rate": "100/min"},
        "prompt_tokens": 100, "max_tokens": 4000, "completion_tokens": 100}
M = "openai/gpt-oss-20b"  # developer: RPM 1 000, RPD 500 000, TPM 250 000 (sim/data/groq_rate_limits.csv)


def _scenario(org=None, client=None, scenario=None, **extra):
    data = {"scenario": {"name": "cap", "duration": "5m", "replications": 1, **(scenario or {})},
            "org": {"tier": "developer", **(org or {})}, "clients": [{**CHAT, **(client or {})}], **extra}
    return scenario_from_dict(data, source="<test>")


def _sweep(load, success, p95):
    return pd.DataFrame({"load": load, "success_ratio_mean": success, "latency_p95_mean": p95})


def test_the_knee_is_the_highest_load_before_the_first_miss():
    # sorted by load: 1 and 2 meet the defaults (0.99 and 10 s exactly meet them), 4 misses on success:
    # the search stops there, so 8 (which meets them again) is not the knee
    assert knee(_sweep([8, 1, 4, 2], [1, 1, .98, .99], [1, 1, 1, 10])) == 2
    assert knee(_sweep([1, 2], [1, 1], [10.0, 10.5])) == 1  # p95 just above the default 10 s
    assert knee(_sweep([1, 2], [.985, 1], [1, 1])) is None  # even the lowest misses
    assert knee(_sweep([1, 2, 3], [.9, .9, .8], [30, 20, 40]), success=0.9, p95=30) == 2  # targets given


def test_a_load_exactly_at_the_target_meets_it():
    scenario = _scenario()  # defaults: success 0.99, p95 10 s
    assert verdict(scenario, [(0.99, 10.0, 0.001, 5.0)]) == (True, 0.99, 10.0, 0.001, 5.0)
    assert verdict(scenario, [(0.9899, 10.0, 0.001, 5.0)])[0] is False
    assert verdict(scenario, [(0.99, 10.01, 0.001, 5.0)])[0] is False


def _drive(search, meets):
    """Run a bisection generator, answering each load with ``meets(load)``; (loads tried, result)."""
    tried, load = [], next(search)
    while True:
        tried.append(load)
        try:
            load = search.send((meets(load), 1.0, 1.0, 0.002, 10.0 * load))
        except StopIteration as done:
            return tried, done.value


def test_the_bisection_tries_these_loads_and_stops_at_its_tolerance():
    # ceiling 10 req/min at 10 offered: starts at 2 x 1; doubles 2, 4, 8 (misses); then halves [4, 8]:
    # 6 ok, 7 ok, 7.5 miss, 7.25 miss; the bracket [7, 7.25] is 0.25 wide, within 5 % of 7.25 (0.3625):
    # stop (at 7.5 it was 0.5 > 0.375)
    ceiling = Ceiling(10.0, 1.0, 10.0, "m RPM", 10.0, "m RPM", math.inf, "", {})
    tried, row = _drive(bisection(_scenario(), ceiling), lambda load: load <= 7.0)
    assert tried == [2.0, 4.0, 8.0, 6.0, 7.0, 7.5, 7.25]
    assert row["sim_load"] == 7.0 and row["sim_rpm"] == 70.0 and not row["sim_capped"]


def test_the_offered_rate_is_counted_over_the_window_after_the_warm_up():
    # 60/min for 10 minutes, the first 5 a warm-up: 300 requests offered in 5 minutes measured, 60/min
    scenario = _scenario(scenario={"duration": "10m", "warmup": "5m"},
                         client={"arrival": {"kind": "constant", "rate": "60/min"}, "max_tokens": 200})
    success, p95, _, offered = run_summary(scenario, {}, 0)
    assert offered == pytest.approx(60.0) and success == 1.0 and p95 > 0


def test_a_window_of_requests_too_large_for_the_tier_has_no_success_ratio():
    # 100/min of 300 000 prompt tokens > TPM 250 000: every request a 413, none fits; no ratio (not a
    # division by 0)
    scenario = _scenario(scenario={"duration": "1m"}, client={"prompt_tokens": 300_000, "max_tokens": 100})
    success, p95, cost, offered = run_summary(scenario, {}, 0)
    assert math.isnan(success) and math.isnan(p95) and math.isnan(cost) and offered == pytest.approx(100.0)


def test_a_project_that_lowers_no_limit_has_the_orgs_ceiling():
    # project b sets no limit of its own: no "b/..." limit set, the org's TPM binds at 250 000 / 4 100
    c = analytic_ceiling(_scenario(client={"project": "b"}, projects={"b": {}}))
    assert c.rpm == pytest.approx(250_000 / 4100) and c.binding == f"{M} TPM"
    assert sorted(c.per_unit) == [f"{M} RPD", f"{M} RPM", f"{M} TPM"]


def test_the_ceilings_load_is_its_rate_over_the_offered_rate():
    # refunds: 200 tokens a request; RPD binds at 500 000 / 1 440 req/min, 3.47 x the 100/min offered
    c = analytic_ceiling(_scenario({"accounting": {"refund_unused": True}}))
    assert c.base_rpm == pytest.approx(100.0)
    assert c.load == pytest.approx(500_000 / 1440 / 100) and c.rpm == pytest.approx(500_000 / 1440)
    # of the minute units RPM binds at 1 000/min; of the daily ones RPD at 500 000 a day
    assert c.per_minute == pytest.approx(1000) and c.per_minute_binding == f"{M} RPM"
    assert c.per_day == pytest.approx(500_000) and c.per_day_binding == f"{M} RPD"


def test_a_refund_of_nothing_leaves_the_charge_whole():
    # every answer uses its whole max_tokens (no completion distribution): nothing comes back, a request
    # costs 100 + 100 tokens, TPM allows 250 000 / 200; at 30/min (below 1 request a second) RPM still binds
    # at its 1 000/min
    c = analytic_ceiling(_scenario({"accounting": {"refund_unused": True}},
                                   {"max_tokens": 100, "completion_tokens": None,
                                    "arrival": {"kind": "constant", "rate": "30/min"}}))
    assert c.per_unit[f"{M} TPM"] == pytest.approx(1250.0) and c.per_unit[f"{M} RPM"] == pytest.approx(1000.0)


def test_a_unit_nothing_costs_never_binds_and_no_rate_has_no_load():
    # requests of 0 tokens: TPM allows any load; RPM 1 000 and RPD 500 000/day still bind
    c = analytic_ceiling(_scenario(client={"prompt_tokens": 0, "max_tokens": 0, "completion_tokens": None}))
    assert math.isinf(c.per_unit[f"{M} TPM"]) and c.rpm == pytest.approx(500_000 / 1440)
    # a closed loop offers no rate of its own: nothing to scale, the load is not a number
    closed = analytic_ceiling(_scenario(client={"arrival": {"kind": "closed", "users": 2, "think": "1s"}}))
    assert closed.base_rpm == 0.0 and math.isnan(closed.load) and closed.per_unit == {}
