"""Honest comparison tables: outcomes other than success shown, the binding limit named also without 429s,
intervals wider than the mean flagged, strict JSON everywhere."""
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sim.cli import main
from tests.helpers import summary_rows
from sim.report import LATE_NOTE, compare, comparison_json, format_comparison, jsonable

CLIENT = ("[[clients]]\nname = 'c'\nmodel = 'llama-3.1-8b-instant'\narrival = {{ kind = 'poisson', rate = '10/min' }}\n"
          "prompt_tokens = {prompt}\nmax_tokens = 100\npolicy = '{policy}'\n")


def _strict(text):
    """json.loads that refuses NaN / Infinity (which are not JSON)."""
    return json.loads(text, parse_constant=lambda c: pytest.fail(f"not JSON: {c}"))


def _run(tmp_path, capsys, text, *extra):
    path = tmp_path / "s.toml"
    path.write_text(text)
    code = main(["run", str(path), "--out", str(tmp_path / "out"), "--jobs", "1", "--format", "json", *extra])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return _strict(captured.out)


def test_every_request_too_large_is_shown_with_its_binding_limit(tmp_path, capsys):
    # free 8B: TPM 6000; 9000 + 100 tokens can never be admitted -> 413 for every request, no 429
    rows = _run(tmp_path, capsys, "[scenario]\nduration = '5m'\n" + CLIENT.format(prompt=9000, policy="groq-sdk"),
                "--replications", "2")
    (row,) = rows
    assert row["success_ratio_mean"] == 0.0 and row["n429_per_attempt_mean"] == 0.0
    assert row["too_large_share_mean"] == 1.0
    assert row["binding"] == "tpm (413)"
    table = format_comparison(pd.DataFrame(rows), [])
    assert "too large (413) 100%" in table and "tpm (413)" in table


def test_a_spent_daily_budget_binds_without_any_429(tmp_path, capsys):
    # an adaptive client holds on the headers (RPD's remaining) instead of collecting 429s: RPD 20, then
    # nothing moves
    text = ("[scenario]\nduration = '10m'\ndrain = '1m'\n[tiers.mine]\nbase = 'free'\n"
            "[tiers.mine.overrides.'llama-3.1-8b-instant']\nrpd = 20\n[org]\ntier = 'mine'\n"
            + CLIENT.format(prompt=200, policy="adaptive"))
    (row,) = _run(tmp_path, capsys, text, "--replications", "2")
    assert row["n429_per_attempt_mean"] == 0.0
    assert row["unfinished_share_mean"] > 0.5
    assert row["binding"] == "rpd (spent)"


def test_a_daily_unit_read_high_in_a_short_run_is_not_called_spent(tmp_path, capsys):
    # 40/min paced at 95 % of Free's RPM 30 for 30 minutes: ~900 of the day's 1 000 requests; RPD's
    # utilisation (against its refill over the window) reads ~40, yet the budget is not spent: the pacer's
    # RPM is what holds the unfinished requests
    text = ("[scenario]\nduration = '30m'\nwarmup = '2m'\ndrain = '1m'\n[[clients]]\nname = 'c'\n"
            "model = 'openai/gpt-oss-20b'\narrival = { kind = 'constant', rate = '40/min' }\nprompt_tokens = 50\n"
            "max_tokens = 50\npolicy = 'paced'\n")
    (row,) = _run(tmp_path, capsys, text, "--replications", "1")
    assert pd.read_csv(tmp_path / "out" / "summary.csv")["util_rpd"].iloc[0] > 30
    assert row["unfinished_share_mean"] > 0.2 and row["binding"] == "rpm (paced)"


@pytest.mark.parametrize("limit, rate, unit", [("tpd = 25000", "10/min", "tpd"), ("rpm = 4", "10/min", "rpm"),
                                               ("tpm = 1000", "10/min", "tpm")])
def test_a_pacing_client_held_back_by_a_limit_names_it(tmp_path, capsys, limit, rate, unit):
    # every request finishes (no 429, no 413, none unfinished), but only because the pacer held them back:
    # the limit it waited on binds, not "none"
    text = ("[scenario]\nduration = '10m'\ndrain = '12h'\n[tiers.mine]\nbase = 'free'\n"
            f"[tiers.mine.overrides.'llama-3.1-8b-instant']\n{limit}\n[org]\ntier = 'mine'\n"
            + CLIENT.format(prompt=200, policy="paced").replace("10/min", rate))
    (row,) = _run(tmp_path, capsys, text, "--replications", "2")
    assert row["n429_per_attempt_mean"] == 0.0 and row["success_ratio_mean"] == 1.0
    assert row["mean_wait_mean"] > 0
    assert row["binding"] == f"{unit} (paced)"


def test_with_two_models_the_binding_names_its_model(tmp_path, capsys):
    # a paced group held by its model's tiny TPD and a group on another model at twice its RPM: with 429s
    # those bind (model named); when both are paced, the first paced group's limit binds, model named
    paced = ("[[clients]]\nname = 'p'\nmodel = 'llama-3.1-8b-instant'\n"
             "arrival = { kind = 'poisson', rate = '10/min' }\nprompt_tokens = 200\nmax_tokens = 100\n"
             "policy = 'paced'\n")
    other = ("[[clients]]\nname = 'o'\nmodel = 'openai/gpt-oss-20b'\n"
             "arrival = { kind = 'constant', rate = '60/min' }\nprompt_tokens = 10\nmax_tokens = 10\n"
             "policy = 'POLICY'\n")
    head = ("[scenario]\nduration = '10m'\ndrain = '12h'\n[tiers.mine]\nbase = 'free'\n"
            "[tiers.mine.overrides.'llama-3.1-8b-instant']\ntpd = 25000\n[org]\ntier = 'mine'\n")
    (row,) = _run(tmp_path, capsys, head + paced + other.replace("POLICY", "no-retry"), "--replications", "1")
    assert row["binding"] == "openai/gpt-oss-20b:rpm"
    (row,) = _run(tmp_path, capsys, head + paced + other.replace("POLICY", "paced"), "--replications", "1", "--fresh")
    assert row["binding"] == "llama-3.1-8b-instant:tpd (paced)"


def test_a_pacing_client_that_never_waited_has_no_binding(tmp_path, capsys):
    text = "[scenario]\nduration = '5m'\n[org]\ntier = 'developer'\n" + CLIENT.format(prompt=100, policy="paced")
    (row,) = _run(tmp_path, capsys, text, "--replications", "2")
    assert row["mean_wait_mean"] == 0.0 and row["binding"] == "none"


def test_every_outcome_other_than_success_has_a_label():
    from sim.records import OUTCOMES
    from sim.report import OUTCOME_LABELS
    assert set(OUTCOME_LABELS) == set(OUTCOMES) - {"ok"}


def test_a_batch_that_misses_its_window_is_tabled(tmp_path, capsys):
    # 60 requests of 2 000 s each at 0.5 tokens/s: 120 000 s of work in a 24 h window -> 17 expire (the table
    # crashed on the "expired" outcome, losing the run's files)
    path = tmp_path / "s.toml"
    path.write_text("[scenario]\nduration = '2h'\nseed = 2\nreplications = 1\n[org]\ntier = 'developer'\n"
                    "[org.batch]\nstart_median = '0s'\nstart_p95 = '0s'\nspeed_median = 0.5\nspeed_p05 = 0.5\n"
                    "[[clients]]\nname = 'b'\nmodel = 'openai/gpt-oss-20b'\n"
                    "arrival = { kind = 'constant', rate = '1/min' }\n"
                    "prompt_tokens = 800\nmax_tokens = 200\ncompletion_tokens = 200\nlane = 'batch'\n"
                    "batch = { submit_at = '30m', submit_every = '1h', completion_window = '24h' }\n")
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    assert "expired (batch window) 14.2%" in out  # 17 of the 120 requests
    assert (tmp_path / "out" / "requests.parquet").exists()


def test_unconstrained_run_has_no_binding_and_no_other_outcomes(tmp_path, capsys):
    (row,) = _run(tmp_path, capsys, "[scenario]\nduration = '3m'\n[org]\ntier = 'developer'\n"
                  + CLIENT.format(prompt=100, policy="no-retry"), "--replications", "2")
    assert row["binding"] == "none" and row["success_ratio_mean"] == 1.0
    assert "-" == format_comparison(pd.DataFrame([row]), []).splitlines()[1].split()[-1]




def test_means_over_fewer_replications_than_ran_are_said_with_their_counts():
    """A replication with no success has no latency (nor attempts per success) to average: the mean is of the
    others, which ``partial`` records and the table's footnote names, per alternative and count."""
    nan = float("nan")
    comp = compare(summary_rows({"success_ratio": [0.0, 0.5, 0.4, 0.0], "latency_p50": [nan, 1.0, 2.0, nan],
                                 "latency_p99": [nan, 1.0, 3.0, nan], "attempts_per_success": [nan, 2.0, 2.0, nan],
                                 "mean_wait": [nan, 1.0, 1.0, 1.0]}), [])
    assert comp.loc[0, "partial"] == "latency_p50:2 latency_p99:2 attempts_per_success:2 mean_wait:3"
    assert comp.loc[0, "latency_p50_mean"] == 1.5 and comp.loc[0, "replications"] == 4
    assert format_comparison(comp, []).splitlines()[-1] == (
        "some means are over fewer replications than ran, those with a success to measure (a mean of the lucky "
        "ones, not of the alternative): the alternative: p50 s, p99 s, attempts/ok over 2 of 4")
    # every replication has it, or none does (no mean at all): nothing to say
    whole = compare(summary_rows({"latency_p50": [1.0, 2.0]}), [])
    none = compare(summary_rows({"latency_p50": [nan, nan]}), [])
    assert whole.loc[0, "partial"] == none.loc[0, "partial"] == ""
    assert "fewer replications" not in format_comparison(whole, []) + format_comparison(none, [])
    # a metric the table does not show (the mean wait): recorded, not footnoted
    hidden = compare(summary_rows({"mean_wait": [nan, 1.0]}), [])
    assert hidden.loc[0, "partial"] == "mean_wait:1" and "fewer replications" not in format_comparison(hidden, [])


def test_intervals_wider_than_the_mean_are_flagged():
    wide = compare(summary_rows({"latency_p99": [1.0, 60.0]}), [])  # two replications far apart
    assert wide.loc[0, "wide_ci"] == "latency_p99"
    assert wide.loc[0, "latency_p99_ci95"] > wide.loc[0, "latency_p99_mean"]
    text = format_comparison(wide, [])
    assert "!" in text.splitlines()[1] and "too few replications" in text.splitlines()[-1]
    narrow = compare(summary_rows({"latency_p99": [10.0, 10.5, 9.5, 10.2]}), [])
    assert narrow.loc[0, "wide_ci"] == ""
    assert "!" not in format_comparison(narrow, [])
    # a wide metric the table does not show (the mean wait): no cell marked, so no footnote either
    hidden = compare(summary_rows({"mean_wait": [1.0, 60.0]}), [])
    assert hidden.loc[0, "wide_ci"] == "mean_wait"
    assert "!" not in format_comparison(hidden, [])


def test_a_rate_the_format_would_round_to_zero_keeps_two_significant_digits():
    """0.04 req/min served read "0.0 ±0.0", as if nothing were: a mean other than 0 that its column's format
    rounds to zero gets two significant digits (its interval the same decimals); 0 and larger means as before."""
    low = format_comparison(compare(summary_rows({"throughput_rpm": [0.04, 0.05, 0.03]}), []), [])
    assert "0.040 ±0.025" in low.splitlines()[1], low
    tiny = format_comparison(compare(summary_rows({"throughput_rpm": [0.00012, 0.00012]}), []), [])
    assert "0.00012 ±0.00000" in tiny.splitlines()[1], tiny
    # one precision a column: 0.0836 beside 0.0443 is 0.084, not 0.1 (read as 2.3x the other, not 1.9x)
    mixed = pd.concat([compare(summary_rows({"throughput_rpm": [x, x]}), []).assign(model=m)
                       for m, x in (("a", 0.0443), ("b", 0.0836), ("c", 12.5))], ignore_index=True)
    rpm = {line.split()[0]: line.split()[3] for line in format_comparison(mixed, ["model"]).splitlines()[1:4]}
    assert rpm == {"a": "0.044", "b": "0.084", "c": "12.500"}, rpm
    # the other bound a success reads wrongly at: 99.97 % is not all (an error share 0.03 % beside "100.0")
    near = pd.concat([compare(summary_rows({"success_ratio": [x, x]}), []).assign(lane=m)
                      for m, x in (("a", 0.99972), ("b", 1.0), ("c", 0.5))], ignore_index=True)
    ok = {line.split()[0]: line.split()[1] for line in format_comparison(near, ["lane"]).splitlines()[1:4]}
    assert ok == {"a": "99.972", "b": "100.000", "c": "50.000"}, ok
    whole = compare(summary_rows({"success_ratio": [1.0, 1.0]}), [])  # (exactly all: as before)
    assert format_comparison(whole, []).splitlines()[1].split()[0] == "100.0"
    hardly = compare(summary_rows({"success_ratio": [0.0004, 0.0004]}), [])  # (a success near none: as any column)
    assert format_comparison(hardly, []).splitlines()[1].split()[0] == "0.040"
    busy = compare(summary_rows({"throughput_rpm": [99.97, 99.97]}), [])  # (100 is a bound of success only)
    assert format_comparison(busy, []).splitlines()[1].split()[2] == "100.0"
    none = format_comparison(compare(summary_rows({"throughput_rpm": [0.0, 0.0, 0.0]}), []), [])
    assert "0.0 ±0.0" in none.splitlines()[1]
    some = format_comparison(compare(summary_rows({"throughput_rpm": [0.4, 0.5, 0.3]}), []), [])
    assert "0.4 ±0.2" in some.splitlines()[1], some


def test_a_dash_for_the_cost_of_served_requests_is_explained():
    priced = compare(summary_rows({"cost_per_success": [0.001, 0.001]}), [])
    unpriced = compare(summary_rows({"cost_per_success": [np.nan, np.nan]}), [])
    nothing_served = compare(summary_rows({"cost_per_success": [np.nan, np.nan], "success_ratio": [0.0, 0.0]}), [])
    note = "$/1k ok '-' = a model Groq publishes no price for was served"
    assert note in format_comparison(unpriced, []).splitlines()[-1]
    assert note not in format_comparison(priced, []) and note not in format_comparison(nothing_served, [])


def test_a_success_partly_served_after_the_window_is_marked_in_its_cell_from_one_percent():
    """The headline a drain makes (a backlog served after the arrivals stopped) is marked where it is read,
    the success cell, and its footnote gives the late share and the success by the window's end."""
    rows = []
    for policy, late in (("held", 0.853), ("edge", LATE_NOTE), ("below", 0.0099), ("none", 0.0), ("nan", np.nan)):
        comp = compare(summary_rows({"after_window_share": [late, late]}), [])
        rows.append(comp.assign(tier="free", policy=policy))
    table = format_comparison(pd.concat(rows, ignore_index=True), ["tier", "policy"])
    lines = table.splitlines()
    success = {line.split()[1]: line.split()[2:4] for line in lines[1:6]}
    assert success == {"held": ["100.0", "±0.0*"], "edge": ["100.0", "±0.0*"], "below": ["100.0", "±0.0"],
                       "none": ["100.0", "±0.0"], "nan": ["100.0", "±0.0"]}
    assert all("*" not in cell for line in lines[1:6] for cell in line.split()[4:])  # the success cell alone
    # success 1.0 in both replications: by the window's end 1 - 0.853 = 14.7 %, 1 - 0.01 = 99 %
    assert lines[-1] == ("* = success includes requests finished after the simulated window, while the run drained "
                         "(req/min counts only the window's): share of the successes finished after it (and success "
                         "by the window's end): free/held 85.3% (14.7%), free/edge 1% (99%)")
    # a numeric axis value is named with its axis: a bare "2" beside the shares reads as one of them
    loads = pd.concat([compare(summary_rows({"after_window_share": [0.0175, 0.0175]}), []).assign(
        policy="held", load=x) for x in (2, 3)], ignore_index=True)
    assert format_comparison(loads, ["policy", "load"]).splitlines()[-1].endswith(
        "by the window's end): held/load=2 1.75% (98.2%), held/load=3 1.75% (98.2%)")
    quiet = compare(summary_rows({"after_window_share": [0.0, 0.002]}), [])
    assert "drained" not in format_comparison(quiet, []) and quiet.loc[0, "after_window_share_mean"] == 0.001
    assert "*" not in format_comparison(quiet, [])
    header, row = format_comparison(quiet, []).splitlines()[:2]  # no mark, no pad: the digits end under "%"
    assert header.index("success %") + len("success %") == row.index("±0.0") + len("±0.0")
    assert quiet.loc[0, "wide_ci"] == ""  # a share near 0 always has a wide interval: no "!" for it
    alone = compare(summary_rows({"after_window_share": [1.0]}), [])  # no axes: a single alternative
    assert format_comparison(alone, []).splitlines()[-1].endswith("window's end): the alternative 100% (0%)")


def test_the_success_by_the_windows_end_is_averaged_run_by_run():
    # runs: success 0.8 with half late, 0.6 with a quarter late -> by the end 0.4 and 0.45: mean 0.425 (the
    # product of the means, 0.7 x 0.625 = 0.4375, would not be a run's figure); t(1) x |0.4 - 0.45| / 2
    comp = compare(summary_rows({"success_ratio": [0.8, 0.6], "after_window_share": [0.5, 0.25]}), [])
    assert comp.loc[0, "success_in_window_mean"] == pytest.approx(0.425)
    assert comp.loc[0, "success_in_window_ci95"] == pytest.approx(12.706204736 * 0.025)
    assert format_comparison(comp, []).splitlines()[-1].endswith(": the alternative 37.5% (42.5%)")
    # nothing served: no late share (NaN), and nothing served by the window's end either
    none = compare(summary_rows({"success_ratio": [0.0, 0.0], "after_window_share": [np.nan, np.nan]}), [])
    assert none.loc[0, "success_in_window_mean"] == 0.0


def test_a_drained_backlog_is_marked_in_the_printed_table(tmp_path, capsys):
    """paced at 95 % of Free's RPM 30 against 45 a minute: its queue is served after the window.  The mark and
    the footnote's figures, against the late share computed from requests.parquet."""
    path = tmp_path / "s.toml"
    path.write_text("[scenario]\nduration = '10m'\nseed = 4\nreplications = 2\n[org]\ntier = 'free'\n"
                    "[[clients]]\nname = 'api'\nmodel = 'allam-2-7b'\narrival = { kind = 'poisson', rate = '45/min' }\n"
                    "prompt_tokens = 60\nmax_tokens = 30\n[compare]\npolicy = ['no-retry', 'paced']\n")
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--jobs", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rec = pd.read_parquet(out / "requests.parquet")
    ok = rec[(rec["outcome"] == "ok") & (rec["created"] < 600)]
    late = ok.assign(late=ok["finished"] >= 600).groupby(["point", "replication"])["late"].mean()
    offered = rec[rec["created"] < 600].groupby(["point", "replication"]).size()
    served = ok[ok["finished"] < 600].groupby(["point", "replication"]).size()
    paced_late, paced_served = late.loc[1].mean(), (served.loc[1] / offered.loc[1]).mean()
    assert late.loc[0].mean() < LATE_NOTE and paced_late > 0.2  # no-retry serves at once; paced queues
    assert [line.split()[0] for line in lines[1:3]] == ["no-retry", "paced"]
    assert not lines[1].split()[2].endswith("*") and lines[2].split()[2].endswith("*")
    assert lines[-1].endswith(f"paced {100 * paced_late:.3g}% ({100 * paced_served:.3g}%)")


def test_t_interval_matches_scipy():
    from scipy import stats
    values = [3.0, 5.0, 4.0, 8.0]
    row = compare(summary_rows({"latency_p95": values}), []).iloc[0]
    lo, hi = stats.t.interval(0.95, len(values) - 1, loc=sum(values) / 4, scale=stats.sem(values))
    assert row["latency_p95_ci95"] == pytest.approx((hi - lo) / 2)


def test_json_never_has_bare_nan_or_infinity():
    comp = pd.DataFrame([{"a": math.nan, "b": math.inf, "c": 1.5, "d": "x"}])
    assert _strict(comparison_json(comp)) == [{"a": None, "b": None, "c": 1.5, "d": "x"}]
    assert jsonable({"x": [float("-inf"), 2]}) == {"x": [None, 2]}


def test_capacity_json_is_strict_and_independent_of_jobs(tmp_path, capsys):
    path = tmp_path / "c.toml"
    # free 70B: nothing this big can be served (TPM 12000 < 20000 tokens): no p95, no ceiling met
    path.write_text("[scenario]\nduration = '2m'\n[compare]\ntier = ['free', 'developer']\n"
                    + CLIENT.format(prompt=20000, policy="no-retry").replace("llama-3.1-8b-instant",
                                                                            "llama-3.3-70b-versatile"))
    outputs = []
    for jobs in ("1", "2"):
        assert main(["capacity", str(path), "--format", "json", "--jobs", jobs, "--quiet"]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1]
    free, dev = _strict(outputs[0])
    assert free["sim_p95"] is None and free["sim_load"] == 0.0 and free["sim_cost_per_1k"] is None
    assert dev["sim_success"] is not None and dev["sim_cost_per_1k"] > 0  # developer bills per token


def test_capacity_lock_step_search_equals_each_cell_searched_alone():
    """The bisections of every tier run together on a two-process pool, each load's replications spread over
    it; every cell's result is the one its own serial bisection finds."""
    from sim.capacity import analytic_ceiling, capacity_table, simulated_capacity
    from sim.scenario import scenario_from_dict
    scenario = scenario_from_dict({
        "scenario": {"name": "cap", "duration": "3m", "seed": 5, "replications": 3},
        "clients": [{"name": "c", "model": "llama-3.1-8b-instant", "arrival": {"kind": "poisson", "rate": "40/min"},
                     "prompt_tokens": 400, "max_tokens": 100, "policy": "groq-sdk"}],
        "compare": {"tier": ["free", "developer"]}})
    rows = capacity_table(scenario, jobs=2)
    assert [r["tier"] for r in rows] == ["free", "developer"]
    for row in rows:
        point = {"tier": row["tier"]}
        alone = simulated_capacity(scenario, point, analytic_ceiling(scenario, point))
        assert {k: row[k] for k in alone} == alone
    assert rows[0]["sim_load"] != rows[1]["sim_load"]  # the tiers' limits differ: so do their capacities


def test_capacity_leaves_requests_too_large_for_the_tier_out_of_its_success_target():
    """A tenth of the requests are above Free's whole TPM (a 413 at any load).  Counted, they made a 99 %
    target unreachable at every load and the search ended near 0; left out, the simulated max is near the
    minute ceiling."""
    from sim.capacity import capacity_table
    from sim.scenario import scenario_from_dict
    data = {"scenario": {"name": "cap", "duration": "5m", "seed": 3, "replications": 2},
            "clients": [{"name": "c", "model": "openai/gpt-oss-20b", "arrival": {"kind": "poisson", "rate": "20/min"},
                         "prompt_tokens": {"dist": "empirical", "values": [300] * 9 + [9000]}, "max_tokens": 100,
                         "policy": "groq-sdk"}],
            "compare": {"tier": ["free"], "policy": ["groq-sdk", "no-retry"]}}
    (row,) = capacity_table(scenario_from_dict(data, source="<test>"))
    assert row["sim_rpm"] > 0.5 * row["minute_ceiling_rpm"] and row["sim_success"] >= 0.99



def test_capacity_says_when_no_request_fits_the_tier_at_all(tmp_path, capsys):
    """Every request above Free's whole TPM: no load has a success ratio.  It said the target was out of reach
    "e.g. below the service's own latency", which sent a planner looking at the wrong number."""
    from sim.cli import main
    path = tmp_path / "cap.toml"
    body = ("[scenario]\nname = 'cap'\nduration = '2m'\nreplications = 1\n[org]\ntier = 'free'\n[[clients]]\n"
            "name = 'c'\nmodel = 'openai/gpt-oss-20b'\narrival = { kind = 'poisson', rate = '5/min' }\n"
            "prompt_tokens = 300000\nmax_tokens = 100\n")
    path.write_text(body)
    assert main(["capacity", str(path), "--quiet", "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    assert ("free openai/gpt-oss-20b: no load met the target: every request of the mix is larger than a unit's "
            "whole limit of the tier (a 413 at any load)") in out and "service's own latency" not in out
    path.write_text(body.replace("300000", "300"))  # fits, but a p95 of 1 ms is below the service's own latency
    path.write_text(path.read_text() + "[capacity]\np95 = '1ms'\n")
    assert main(["capacity", str(path), "--quiet", "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    assert "out of reach at any load, e.g. below the service's own latency" in out and "too large" not in out


def test_capacity_says_which_axes_it_held(tmp_path, capsys):
    from sim.cli import main
    path = tmp_path / "cap.toml"
    path.write_text("[scenario]\nname = 'cap'\nduration = '2m'\n[[clients]]\nname = 'c'\n"
                    "model = 'openai/gpt-oss-20b'\narrival = { kind = 'poisson', rate = '5/min' }\n"
                    "[compare]\ntier = ['free']\npolicy = ['no-retry', 'groq-sdk']\n")
    assert main(["capacity", str(path), "--replications", "1", "--quiet"]) == 0
    assert "held at the first value of their [compare] axis: policy = no-retry\n" in capsys.readouterr().out


@pytest.mark.parametrize("section, said", [
    ("", "p95 latency <= 10 s (the default target: set yours in [capacity] success / p95) over"),
    ("[capacity]\np95 = '1h'\n", "p95 latency <= 3600 s (the default target for success: set yours in [capacity] "
                                  "success / p95) over"),
    ("[capacity]\np95 = '1h'\nsuccess = 0.9\n", "p95 latency <= 3600 s over"),
])
def test_capacity_says_when_its_target_is_the_default(tmp_path, capsys, section, said):
    """A planner reads the target as theirs; the default p95 of 10 s does not suit a nightly batch."""
    from sim.cli import main
    path = tmp_path / "cap.toml"
    path.write_text("[scenario]\nname = 'cap'\nduration = '2m'\n[[clients]]\nname = 'c'\n"
                    "model = 'openai/gpt-oss-20b'\narrival = { kind = 'poisson', rate = '5/min' }\n" + section)
    assert main(["capacity", str(path), "--replications", "1", "--quiet", "--jobs", "1"]) == 0
    assert said in capsys.readouterr().out


def test_the_table_adds_projects_up_and_the_per_project_means_follow(tmp_path):
    """What a quota buys the project it protects shows per project (the comparison adds them up)."""
    from sim.report import format_by_project
    rows = [{"point": p, "compare.project_quotas": q, "replication": r, "project": name, "success_ratio": s,
             "latency_p95": 1.0 + r} for p, q in ((0, False), (1, True)) for r in (0, 1)
            for name, s in (("etl", 0.5 if q else 0.6), ("support", 1.0 if q else 0.8 + 0.02 * r))]
    path = tmp_path / "by_project.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    lines = format_by_project(path, ["project_quotas"]).splitlines()
    assert lines[0] == "per project (mean over replications; by_project.csv):"
    assert [line.split() for line in lines[2:]] == [["False", "etl", "60.0", "1.50"], ["False", "support", "81.0",
                                                     "1.50"], ["True", "etl", "50.0", "1.50"],
                                                    ["True", "support", "100.0", "1.50"]]
    pd.DataFrame([r for r in rows if r["project"] == "etl"]).to_csv(path, index=False)
    assert format_by_project(path, ["project_quotas"]) == "" and format_by_project(tmp_path / "no.csv", []) == ""


PROJECTS = ("[scenario]\nduration = '2m'\nreplications = 1\n[org]\ntier = 'developer'\n"
            "[projects.a]\n[projects.b]\nlimits = { 'openai/gpt-oss-20b' = { rpm = 5 } }\n"
            "[[clients]]\nname = 'a'\nproject = 'a'\nmodel = 'openai/gpt-oss-20b'\n"
            "arrival = { kind = 'poisson', rate = '20/min' }\n"
            "[[clients]]\nname = 'b'\nproject = 'b'\nmodel = 'openai/gpt-oss-20b'\n"
            "arrival = { kind = 'poisson', rate = '20/min' }\n"
            "[[clients]]\nname = 'b2'\nproject = 'b'\nmodel = 'openai/gpt-oss-20b'\n"
            "arrival = { kind = 'poisson', rate = '1/min' }\n[compare]\nproject_quotas = [false, true]\n")


def test_run_prints_the_per_project_means_after_its_table(tmp_path, capsys):
    """Two groups share project b: the projects' means (b's both groups together), then each group's."""
    from sim.cli import main
    path = tmp_path / "p.toml"
    path.write_text(PROJECTS)
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet", "--jobs", "1"]) == 0
    printed = capsys.readouterr().out
    out = printed.split("per project (mean over replications; by_project.csv):\n")[1]
    out = out.split("per client group")[0].splitlines()  # (the per-client-group section follows)
    assert [line.split()[:2] for line in out[1:]] == [["False", "a"], ["False", "b"], ["True", "a"], ["True", "b"]]
    assert float(out[4].split()[2]) < 60  # b's own RPM 5 against 20/min, with the quota on
    assert "per client group (mean ±95% CI over replications; by_client.csv):\n" in printed


def test_with_each_group_its_own_project_the_per_group_section_names_the_project_and_stands_alone(tmp_path,
                                                                                                capsys):
    """The per-project section would repeat the per-group one (fewer figures, the same runs): one section,
    each group's project beside it; by_project.csv is written all the same."""
    from sim.cli import main
    path = tmp_path / "p.toml"
    path.write_text(PROJECTS.replace("name = 'b2'\nproject = 'b'", "name = 'b2'\nproject = 'a2'")
                    .replace("[projects.a]\n", "[projects.a]\n[projects.a2]\n"))
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet", "--jobs", "1"]) == 0
    printed = capsys.readouterr().out
    assert "per project" not in printed and (tmp_path / "out" / "by_project.csv").exists()
    out = printed.split("per client group and its project (mean ±95% CI over replications; by_client.csv, "
                        "by_project.csv):\n")[1].splitlines()
    assert out[0].split()[:4] == ["project_quotas", "client", "project", "success"]
    assert [line.split()[:3] for line in out[1:7]] == [
        ["False", "a", "a"], ["False", "b", "b"], ["False", "b2", "a2"],
        ["True", "a", "a"], ["True", "b", "b"], ["True", "b2", "a2"]]


def test_writing_a_studys_plots_leaves_the_callers_backend_alone(tmp_path):
    """A notebook's backend stays what it was after the package draws (figures without pyplot): it used to be
    switched to Agg for the rest of the session, and plt.show() then displayed nothing."""
    import subprocess
    import sys
    code = (
        "import matplotlib; matplotlib.use('svg')\n"
        "import sim, sys\n"
        "from sim.report import plot_study\nfrom sim.lane_plots import plot_lanes\n"
        "from sim.validation import plot_windows_vs_bucket\nfrom pathlib import Path\n"
        "sc = sim.load_scenario('scenarios/projects_noisy_neighbour.toml', {'duration': '5m'})\n"
        "st = sim.run_study(sc, jobs=1, progress=False)\nout = Path(sys.argv[1])\n"
        "files = plot_study(st, out) + plot_lanes(st, out) + plot_windows_vs_bucket(out)\n"
        "assert all(f.stat().st_size > 0 for f in files) and len(files) == 6, files\n"
        "print(matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules)\n")
    res = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert res.stdout.split() == ["svg", "False"], res.stdout + res.stderr


def _lane_rows(**values) -> pd.DataFrame:
    """Two replications of one alternative with lane metrics (none served on flex, no batch request unless
    ``values`` says so) and its last success at 1 h and 2 h."""
    base = {"flex_share": [0.0, 0.0], "batch_expired_share": [np.nan, np.nan], "done_by": [3600.0, 7200.0]}
    return compare(summary_rows({**base, **values}), [])


def test_when_the_work_is_done_is_a_column_of_a_batch_or_flex_study():
    # mean 1.5 h; t(1) x |1 h - 2 h| / 2 = 6.353 h, wider than the mean
    for lanes in ({"flex_share": [0.9, 0.95]}, {"batch_expired_share": [0.0, 0.0]}):
        table = format_comparison(_lane_rows(**lanes), [])
        header, row = table.splitlines()[:2]
        assert header.split()[-6:] == ["done", "by", "h", "binding", "not", "ok"]
        assert row.split()[-4:-2] == ["1.50", "±6.35!"]
        assert "done by h = when the last successful request was answered, in hours from the start" in table
    # lane metrics without the batch or flex lane (a projects study): no such column
    assert "done by" not in format_comparison(_lane_rows(), [])
    assert "done by" not in format_comparison(compare(summary_rows({"latency_p95": [1.0, 1.0]}), []), [])


def test_the_nightly_scenario_prints_when_each_alternative_is_done(tmp_path, capsys):
    """The printed done time of each alternative: the mean over replications of its last success's finish
    (requests of the window), from requests.parquet."""
    out = tmp_path / "out"
    assert main(["run", str(Path(__file__).resolve().parents[1] / "scenarios" / "nightly_batch_vs_flex.toml"),
                 "--out", str(out), "--duration", "5m", "--replications", "2", "--jobs", "1", "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    end = lines[0].index("done by h") + len("done by h")  # the column's cells are right-aligned to its header
    rec = pd.read_parquet(out / "requests.parquet")
    ok = rec[(rec["outcome"] == "ok") & (rec["created"] < 300)]
    done = ok.groupby(["point", "replication"])["finished"].max().groupby("point").mean() / 3600
    assert len(done) == 4 and done.max() > 0.5  # the batch lane's jobs end hours after the 5-minute window
    for point, line in enumerate(lines[1:5]):
        assert line[:end].split()[-2] == f"{done.loc[point]:.2f}", line
