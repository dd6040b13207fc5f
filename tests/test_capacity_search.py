"""`groqsim capacity` and the notebooks' helpers, pinned on values computed by hand: the knee of a sweep,
the target's boundaries, the bisection's exact loads and stopping rule, the rate a window with a warm-up was
offered, the analytic ceiling's load and its edges (a project lowering nothing, a unit nothing costs, no
offered rate, refunds of nothing)."""
import math
import sys
import warnings

import pandas as pd
import pytest

from sim import capacity
from sim.capacity import (Ceiling, analytic_ceiling, bisection, capacity_table, knee, no_traffic, run_summary, search,
                          simulated_capacity, verdict)
from sim.errors import ConfigError
from sim.pool import Pool
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
    assert row["sim_missed_load"] == 7.25 and row["sim_finished"] is True  # the bracket it closed: [7, 7.25)


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


def test_a_load_with_nothing_to_average_has_no_mean_and_no_warning():
    # every request too large (no success ratio), none succeeded (no p95, no cost): the success ratio and cost
    # are not numbers and the p95 is infinite, quietly; a replication with numbers is averaged alone
    scenario = _scenario()
    nan = math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ok, s, p, c, r = verdict(scenario, [(nan, nan, nan, 4.0), (nan, nan, nan, 6.0)])
        assert not ok and math.isnan(s) and p == math.inf and math.isnan(c) and r == 5.0
        assert verdict(scenario, [(1.0, nan, nan, 4.0)])[1:4][1] == math.inf
        assert verdict(scenario, [(nan, 2.0, 0.01, 4.0), (1.0, 4.0, nan, 4.0)])[:4] == (True, 1.0, 3.0, 0.01)


def test_the_ceiling_says_what_share_of_the_mix_no_load_can_fit():
    # Free gpt-oss-20b: TPM 8 000.  Admission charges prompt + max_tokens: 7 900 + 100 fits exactly, 7 901 + 100
    # never does (a 413 at any load), whatever a refund would give back later
    free = {"tier": "free"}
    assert analytic_ceiling(_scenario(free, {"prompt_tokens": 7900, "max_tokens": 100})).too_large == 0.0
    assert analytic_ceiling(_scenario(free, {"prompt_tokens": 7901, "max_tokens": 100})).too_large == 1.0
    refunded = _scenario({**free, "accounting": {"refund_unused": True}}, {"prompt_tokens": 7901, "max_tokens": 100})
    assert analytic_ceiling(refunded).too_large == 1.0
    # a tenth of the prompts too large, in a group sending a quarter of the traffic; the Batch lane passes no
    # per-model limit and counts in neither
    big = {"dist": "empirical", "values": [300] * 9 + [9000]}
    mix = scenario_from_dict({"scenario": {"name": "cap", "duration": "1h"}, "org": free, "clients": [
        {**CHAT, "name": "a", "max_tokens": 100, "arrival": {"kind": "poisson", "rate": "30/min"}},
        {**CHAT, "name": "b", "max_tokens": 100, "prompt_tokens": big,
         "arrival": {"kind": "poisson", "rate": "10/min"}},
        {**CHAT, "name": "c", "lane": "batch", "prompt_tokens": 99_999, "arrival": {"kind": "poisson",
                                                                                     "rate": "60/min"}}]},
        source="<test>")
    assert analytic_ceiling(mix).too_large == pytest.approx(0.25 * 0.1, abs=0.01)
    # audio against the audio units: Free whisper-large-v3 allows 7 200 audio seconds an hour (ASH)
    for seconds, share in ((7200, 0.0), (7201, 1.0)):
        audio = _scenario(free, {"model": "whisper-large-v3", "audio_seconds": seconds, "prompt_tokens": 0,
                                 "max_tokens": 0, "completion_tokens": None})
        assert analytic_ceiling(audio).too_large == share
    # the Batch lane alone: nothing passes a per-model limit, nothing is too large for one
    assert analytic_ceiling(_scenario(client={"lane": "batch", "prompt_tokens": 99_999})).too_large == 0.0
    with pytest.raises(ConfigError, match="capacity: no traffic to scale"):
        capacity_table(_scenario(client={"arrival": {"kind": "poisson", "rate": 0}}))


def test_a_unit_that_allows_nothing_starts_the_search_at_max_load():
    # a ceiling of 0 req/min (a limit of 0): twice it is no load to start from, so the search starts at the top
    zero = Ceiling(10.0, 0.0, 0.0, "m RPM", 0.0, "m RPM", 0.0, "m RPD", {})
    assert next(bisection(_scenario(), zero)) == 64.0


def test_the_search_stops_when_the_bracket_is_exactly_the_tolerance():
    # tolerance 0.5, starts at 2 (twice a ceiling of the offered rate): 2 misses, 1 meets; [1, 2] is 1 wide,
    # exactly 0.5 x 2: narrow enough, so 1.5 is not tried
    tried, row = _drive(bisection(_scenario(capacity={"tolerance": 0.5}), Ceiling(
        10.0, 1.0, 10.0, "m RPM", 10.0, "m RPM", math.inf, "", {})), lambda load: load <= 1.0)
    assert tried == [2.0, 1.0] and row["sim_load"] == 1.0


@pytest.mark.parametrize("fastest, tried", [(0.5, [1.0 / 2 ** k for k in range(11)]),  # 1/1024 <= 0.001
                                             (0.55, [1.1 / 2 ** k for k in range(12)]),  # 1.1/1024 > 0.001
                                             (0.512, [1.024 / 2 ** k for k in range(11)]),  # 1.024/1024 == 0.001
                                             (0.001, [0.002 / 2 ** k for k in range(11)]),  # a 1000th of 0.002
                                             (0.00105, [0.0021 / 2 ** k for k in range(11)])])
def test_a_target_no_load_meets_ends_the_search_below_a_thousandth(fastest, tried):
    # nothing meets the target: the search halves its top until it is at most x0.001 of the traffic, or a
    # thousandth of its first load when that is below x1
    ceiling = Ceiling(1.0, fastest, fastest, "m RPM", fastest, "m RPM", math.inf, "", {})
    got, row = _drive(bisection(_scenario(), ceiling), lambda load: False)
    assert got == pytest.approx(tried, rel=1e-12) and row["sim_load"] == 0.0
    assert row["sim_missed_load"] == got[-1]


def test_a_traffic_thousands_of_times_the_tiers_finds_its_ceiling():
    # offered 4 000 x the ceiling: the first load tried is x0.0005, and x0.00025 meets the target; the old
    # floor at x0.001 of the traffic ended the search after one load with "no load met the target"
    fastest = 0.00025
    ceiling = Ceiling(4000.0, 1.0, 1.0, "m RPM", 1.0, "m RPM", math.inf, "", {})
    got, row = _drive(bisection(_scenario(), ceiling), lambda load: load <= fastest * 1.01)
    assert got[0] == 2 * fastest and len(got) > 2
    assert fastest * 0.95 <= row["sim_load"] <= fastest * 1.01


def test_the_bracket_also_ends_when_its_midpoint_rounds_up_to_its_top():
    # the limit is just below 7.0 (load < 7 meets): at a tolerance below a float's spacing the bracket closes
    # on [7 - ulp, 7], whose midpoint rounds to 7 itself; trying 7 again would loop for ever
    scenario = _scenario()
    # below what a scenario may ask, as a guard; on a copy: a frozen default may be shared by every scenario
    object.__setattr__(scenario, "capacity", scenario.capacity.model_copy(update={"tolerance": 1e-300}))
    ceiling = Ceiling(10.0, 1.0, 10.0, "m RPM", 10.0, "m RPM", math.inf, "", {})
    tried = []
    search, load = bisection(scenario, ceiling), None
    load = next(search)
    with pytest.raises(StopIteration) as done:
        while len(tried) < 200:
            tried.append(load)
            load = search.send((load < 7.0, 1.0, 1.0, 0.002, 10.0 * load))
    assert done.value.value["sim_load"] == math.nextafter(7.0, 0.0) and len(tried) < 80


def _cells(*fastest):
    return [({}, Ceiling(100.0, f, 100.0 * f, "m RPM", 100.0 * f, "m RPM", math.inf, "", {})) for f in fastest]


@pytest.mark.parametrize("compare, replications", [({}, 1), ({}, 2), ({"load": [1, 3]}, 2)])
def test_the_work_limit_is_the_heaviest_runs_requests_before_it_is_simulated(compare, replications):
    # 100 req/min for 5 minutes: 500 requests a run at load 1, however many runs or loads the grid holds; the
    # first round tries load 2 (twice a ceiling at the offered rate): 1 000 requests, allowed at exactly 1 000;
    # 200/min of 4 100 tokens miss the target (TPM binds at 61/min), so the search goes no higher
    scenario = _scenario(scenario={"replications": replications, "duration": "5m"}, compare=compare)
    rows = search(scenario, _cells(1.0), max_requests=1000)
    assert rows[0]["sim_load"] > 0
    with pytest.raises(ConfigError, match=r"load x2, about 1,000 simulated requests in one run.*\(999\)"):
        search(scenario, _cells(1.0), max_requests=999)


def test_the_work_limit_weighs_the_heaviest_cell_of_a_round():
    # cells starting at loads 2 and 4: the round's heaviest run is load 4's, 2 000 requests
    scenario = _scenario()
    with pytest.raises(ConfigError, match=r"load x4, about 2,000"):
        search(scenario, _cells(1.0, 2.0), max_requests=1500)
    with pytest.raises(ConfigError, match=r"load x4, about 2,000") as both:  # both refused: the heavier named
        search(scenario, _cells(1.0, 2.0), max_requests=999)
    assert not hasattr(both.value, "capacity_rows")  # neither simulated a load


class _SpyPool(Pool):
    """A pool that runs in this process and says how many processes it was asked for and how many maps ran."""
    made: list = []

    def __init__(self, jobs=None):
        _SpyPool.made.append(jobs)
        super().__init__(1)
        self.maps = 0

    def map(self, fn, calls):
        self.maps += 1
        return super().map(fn, calls)


def test_each_load_tried_is_told_with_its_verdict_and_the_cells_alone_give_the_same_rows(monkeypatch):
    # two cells searched in lock step: every load each tried is told once, in its own order, with a bool
    # verdict; the highest load that met the target is the row's; each cell searched alone gives its row,
    # without a pool in this one process
    monkeypatch.setattr(capacity, "Pool", _SpyPool)
    _SpyPool.made = []
    scenario = _scenario(scenario={"duration": "2m"}, client={"max_tokens": 200})
    told = []
    rows = search(scenario, _cells(0.3, 0.6), step=lambda n, load, ok: told.append((n, load, ok)))
    for n, row in enumerate(rows):
        mine = [(load, ok) for cell, load, ok in told if cell == n]
        assert all(type(ok) is bool for _, ok in mine) and len({load for load, _ in mine}) == len(mine)
        assert row["sim_load"] == max([load for load, ok in mine if ok], default=0.0)
        alone = []
        assert simulated_capacity(scenario, *_cells(0.3, 0.6)[n], step=lambda load, ok, into=alone: into.append(
            (load, ok))) == row
        assert alone == mine
    assert simulated_capacity(scenario, *_cells(0.3)[0]) == rows[0]
    assert _SpyPool.made == [1] * 4


TWO_BY_TWO = {"tier": ["free", "developer"], "model": ["openai/gpt-oss-20b", "llama-3.1-8b-instant"]}


def test_the_capacity_table_has_a_row_per_tier_and_model_in_grid_order(monkeypatch, capsys):
    monkeypatch.setattr(capacity, "Pool", _SpyPool)
    _SpyPool.made = []
    scenario = _scenario(scenario={"duration": "1m"}, client={"max_tokens": 200,
                                                              "arrival": {"kind": "constant", "rate": "20/min"}},
                         compare=TWO_BY_TWO)
    capsys.readouterr()  # (what reading the scenario said: llama-3.1-8b-instant's shutdown, the first time only)
    rows = capacity_table(scenario)
    assert [(r["tier"], r["model"]) for r in rows] == [(t, m) for t in TWO_BY_TWO["tier"] for m in TWO_BY_TWO["model"]]
    assert [r["binding"].split(" ")[0] for r in rows] == [r["model"] for r in rows]  # each row its model's limits
    assert rows[0]["ceiling_rpm"] != rows[2]["ceiling_rpm"]  # and its tier's
    assert _SpyPool.made == [1] and capsys.readouterr().err == ""  # one process and no bar by default
    # a pool given is the one used; jobs says how many processes otherwise
    given = _SpyPool(1)
    _SpyPool.made = []
    assert capacity_table(scenario, pool=given) == rows and given.maps > 0 and _SpyPool.made == []
    capacity_table(scenario, jobs=3)
    assert _SpyPool.made == [3]


def test_the_capacity_bar_shows_each_load_and_ends_full(monkeypatch, capsys):
    monkeypatch.setattr(capacity, "Pool", _SpyPool)
    scenario = _scenario(scenario={"duration": "1m"}, client={"max_tokens": 200})
    capacity_table(scenario, progress=True)
    err = capsys.readouterr().err
    assert "capacity: 100%" in err and "1/1" in err and "developer openai/gpt-oss-20b load x" in err
    assert err.endswith("\n") and ": ok" in err
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    capacity_table(scenario, progress=None)  # None: a bar only on a terminal
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    capacity_table(scenario, progress=None)
    assert "1/1" in capsys.readouterr().err


def test_no_traffic_names_the_groups():
    quiet = {**CHAT, "arrival": {"kind": "poisson", "rate": 0}}
    one = _scenario(client={"arrival": {"kind": "poisson", "rate": 0}})
    with pytest.raises(ConfigError, match=r"clients\[0\]\.arrival: capacity: no traffic"):
        no_traffic(one)
    two = scenario_from_dict({"scenario": {"name": "cap", "duration": "5m"}, "org": {"tier": "developer"},
                              "clients": [quiet, {**quiet, "name": "d"}]}, source="<test>")
    with pytest.raises(ConfigError, match=r"<test>: clients: capacity: no traffic"):
        no_traffic(two)


def _fake_runs(monkeypatch, threshold: dict, stop_at: int | None = None):
    """Runs that meet the target while load < ``threshold[tier]`` (the tier names a cell), each at 10 req/min
    x load; the ``stop_at``-th run (from 1) is a Ctrl-C."""
    calls = []

    def run(scenario, point, replication, duration=None):
        calls.append(point["load"])
        if len(calls) == stop_at:
            raise KeyboardInterrupt
        return (1.0 if point["load"] < threshold[point["tier"]] else 0.5), 1.0, 0.002, 10.0 * point["load"]
    monkeypatch.setattr(capacity, "run_summary", run)
    return calls


def _tier_cells(*tiers):
    return [({"tier": t}, Ceiling(10.0, 1.0, 10.0, "m RPM", 10.0, "m RPM", math.inf, "", {})) for t in tiers]


def test_a_search_stopped_after_a_round_keeps_every_cells_bracket(monkeypatch):
    # cell 0 meets below 3: 2 ok, 4 missed, then 3 missed, 2.5 ok...; cell 1 meets below 100: 2, 4, 8... ok.
    # Ctrl-C in round 3 (the 5th run): rounds 1-2 are kept: cell 0 between 2 (met) and 4 (missed), cell 1
    # met 4 and has missed nothing yet; neither finished
    calls = _fake_runs(monkeypatch, {"free": 3.0, "developer": 100.0}, stop_at=5)
    with pytest.raises(KeyboardInterrupt) as stopped:
        search(_scenario(), _tier_cells("free", "developer"))
    assert calls == [2.0, 2.0, 4.0, 4.0, 3.0]
    first, second = stopped.value.capacity_rows
    assert (first["sim_load"], first["sim_missed_load"], first["sim_rpm"]) == (2.0, 4.0, 20.0)
    assert (second["sim_load"], second["sim_rpm"]) == (4.0, 40.0) and math.isnan(second["sim_missed_load"])
    assert not first["sim_finished"] and not second["sim_finished"] and not second["sim_capped"]


def test_a_cell_finished_before_the_stop_keeps_its_row_and_one_that_met_nothing_its_lowest_miss(monkeypatch):
    # cell 0 meets below 3: 2 ok, 4 missed, 3 missed, 2.5 ok, 2.75 ok, 2.875 ok: finished after round 6
    # ([2.875, 3] within 5 % of 3); cell 1 (below 1000) meets 2, 4, ... 64; round 7 would try x128, 6 400
    # requests a run (10/min x 5 min x 128), one more than the work limit: refused before it runs
    _fake_runs(monkeypatch, {"free": 3.0, "developer": 1000.0})
    scenario = _scenario(client={"arrival": {"kind": "constant", "rate": "10/min"}}, capacity={"max_load": 1000})
    with pytest.raises(ConfigError, match=r"load x128, about 6,400 ") as refused:
        search(scenario, _tier_cells("free", "developer"), max_requests=6399)
    first, second = refused.value.capacity_rows
    assert (first["sim_load"], first["sim_missed_load"], first["sim_finished"]) == (2.875, 3.0, True)
    assert (second["sim_load"], second["sim_finished"]) == (64.0, False) and math.isnan(second["sim_missed_load"])
    # a cell refused goes no further while the others run to their end: cell 1 stops before x8 (400 requests),
    # cell 0, which meets no load, halves down to x0.001 and finishes; the error comes after it
    calls = _fake_runs(monkeypatch, {"free": 0.0, "developer": 1000.0})
    with pytest.raises(ConfigError, match=r"load x8, ") as refused:
        search(scenario, _tier_cells("free", "developer"), max_requests=399)
    first, second = refused.value.capacity_rows
    assert (first["sim_load"], first["sim_finished"]) == (0.0, True) and first["sim_missed_load"] < 1e-3
    assert (second["sim_load"], second["sim_finished"]) == (4.0, False) and math.isnan(second["sim_missed_load"])
    assert 8.0 not in calls and calls.count(4.0) == 1 and len(calls) == 2 + 12  # x2 and x4, then cell 0 alone
    # a cell refused before its first load: no row of its own to keep, the other's whole
    _fake_runs(monkeypatch, {"free": 3.0, "developer": 1000.0})
    with pytest.raises(ConfigError, match=r"load x640, ") as refused:
        search(scenario, [_tier_cells("free")[0], ({"tier": "developer"}, Ceiling(10.0, 320.0, 3200.0, "m RPM",
                                                                                  3200.0, "m RPM", math.inf, "", {}))],
               max_requests=6000)
    first, second = refused.value.capacity_rows
    assert (first["sim_load"], first["sim_finished"]) == (2.875, True)
    assert (second["sim_load"], second["sim_finished"]) == (0.0, False) and math.isnan(second["sim_missed_load"])
    # a search stopped before its first round carries no rows: nothing was simulated
    with pytest.raises(ConfigError) as refused:
        search(scenario, _tier_cells("free", "developer"), max_requests=50)
    assert not hasattr(refused.value, "capacity_rows")


def test_knee_names_the_column_it_lacks():
    """A sweep compared on something other than load: knee's default ``by`` is missing, said with the columns the
    comparison has (a bare pandas KeyError: 'load')."""
    import pandas as pd
    comp = pd.DataFrame({"point": [0], "tier": ["free"], "success_ratio_mean": [1.0], "latency_p95_mean": [1.0]})
    with pytest.raises(ValueError, match=r"^knee\(by='load'\): the comparison has no such column \(a \[compare\] axis "
                                         r"of the sweep; it has: point, tier\)$"):
        knee(comp)
    assert knee(comp, by="tier") == "free"
