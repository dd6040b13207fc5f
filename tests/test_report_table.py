"""The comparison table's numbers, read cell by cell: what `compare` averages and flags, how
`format_comparison` scales and prints each cell (one replication, NaN, zero), strict JSON of numpy
scalars, the limit usage over time and the plots' legend labels.  Expected values computed by hand."""
import json
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from tests.helpers import summary_rows
from sim.report import compare, format_comparison, jsonable, usage_over_time
from sim.scenario import scenario_from_dict
from sim.study import StudyResult

#: t quantile 0.975 with 1 degree of freedom: the Cauchy distribution's, tan(pi (0.975 - 1/2)) = 12.706
T1 = math.tan(math.pi * 0.475)




def _cells(comp: pd.DataFrame) -> list[str]:
    """The table's first data line, split into its cells (no axes: none has a space)."""
    return format_comparison(comp, []).splitlines()[1].split()


def test_a_metric_at_zero_in_every_replication_is_not_flagged():
    # the commonest case (no 429, no wait): a zero interval is not wider than a zero mean
    comp = compare(summary_rows({"n429_per_attempt": [0.0, 0.0]}), [])
    assert comp.loc[0, "n429_per_attempt_mean"] == 0.0 and comp.loc[0, "n429_per_attempt_ci95"] == 0.0
    assert comp.loc[0, "wide_ci"] == ""
    text = format_comparison(comp, [])
    assert _cells(comp)[10:12] == ["0.000", "±0.000"]  # 429/attempt, with no "!"
    assert "!" not in text and "too few replications" not in text


def test_one_replication_prints_the_mean_alone():
    # --replications 1: no interval, so no "±nan"; no cost column: "$/1k ok" is "-"; nobody gave up: "-"
    comp = compare(summary_rows({"latency_p95": [3.0]}), [])
    assert comp.loc[0, "replications"] == 1 and math.isnan(comp.loc[0, "latency_p95_ci95"])
    assert _cells(comp) == ["100.0", "1.0", "1.00", "3.00", "1.00", "1.000", "1.00", "-", "none", "-"]
    assert "nan" not in format_comparison(comp, [])


def test_a_metric_with_no_value_prints_a_dash():
    comp = compare(summary_rows({"latency_p95": [math.nan, math.nan]}), [])
    assert math.isnan(comp.loc[0, "latency_p95_mean"])
    assert _cells(comp)[4:8] == ["1.00", "±0.00", "-", "1.00"]  # p50 ± its interval, p95, p99
    assert "nan" not in format_comparison(comp, [])


def test_replications_without_a_value_are_left_out_of_the_mean():
    # a replication that served nothing has no p95: the mean is the other's, over one value (no interval)
    row = compare(summary_rows({"latency_p95": [math.nan, 4.0]}), []).iloc[0]
    assert row["latency_p95_mean"] == 4.0 and math.isnan(row["latency_p95_ci95"])


def test_success_is_printed_in_percent_and_cost_per_thousand_successes():
    # two replications: mean (a+b)/2, ci = t(1) * sd / sqrt(2) = t(1) * |a-b|/2
    comp = compare(summary_rows({"success_ratio": [0.5, 1.0], "cost_per_success": [0.002, 0.004]}), [])
    row = comp.iloc[0]
    assert row["success_ratio_mean"] == pytest.approx(0.75)
    assert row["success_ratio_ci95"] == pytest.approx(T1 * 0.25)
    assert row["cost_per_success_ci95"] == pytest.approx(T1 * 0.001)
    cells = _cells(comp)
    assert cells[:2] == ["75.0", "±317.7!"]  # 100 x 0.75, 100 x 3.1766
    assert cells[-4:-2] == ["3.000", "±12.706!"]  # 1000 x $0.003, 1000 x $0.0127
    assert row["wide_ci"] == "success_ratio cost_per_success"


def test_compare_leaves_the_callers_summary_alone():
    summary = summary_rows({"latency_p95": [1.0, 2.0]})
    before = summary.copy()
    compare(summary, [])
    assert list(summary.columns) == list(before.columns)  # no "gave_up_share" added to it
    pd.testing.assert_frame_equal(summary, before)


def test_offered_mean_is_the_mean_of_the_replications_offered():
    # read by notebooks/tier_upgrade.ipynb ($/day)
    summary = summary_rows({"latency_p95": [1.0, 1.0]}).assign(offered=[100, 50])
    assert compare(summary, []).loc[0, "offered_mean"] == 75.0


def test_an_outcome_share_with_a_single_request_offered():
    # 1 offered, 1 gave up: a share of 1 (only 0 offered has no share)
    comp = compare(summary_rows({"latency_p95": [1.0]}).assign(offered=[1], gave_up=[1]), [])
    assert comp.loc[0, "gave_up_share_mean"] == 1.0
    assert format_comparison(comp, []).splitlines()[1].endswith("gave up 100%")
    nothing = compare(summary_rows({"latency_p95": [1.0]}).assign(offered=[0], gave_up=[0]), [])
    assert math.isnan(nothing.loc[0, "gave_up_share_mean"])


def test_numpy_integers_and_booleans_become_python_ones():
    # else json.dumps(..., default=str) writes them as strings ("3", "True")
    assert jsonable(np.int64(3)) == 3 and type(jsonable(np.int64(3))) is int
    assert jsonable(np.bool_(True)) is True and jsonable(np.bool_(False)) is False
    assert json.dumps(jsonable({"n": np.int32(7), "ok": np.bool_(True)})) == '{"n": 7, "ok": true}'


def _tpm_1000():
    """A spec whose llama-3.1-8b-instant allows 1 000 tokens a minute."""
    return scenario_from_dict({
        "scenario": {"name": "u", "duration": "5m"},
        "tiers": {"mine": {"base": "free", "overrides": {"llama-3.1-8b-instant": {"tpm": 1000}}}},
        "org": {"tier": "mine"},
        "clients": [{"name": "c", "model": "llama-3.1-8b-instant", "arrival": {"kind": "constant", "rate": "1/min"},
                     "prompt_tokens": 50, "max_tokens": 50}]}, source="<test>").spec()


def test_usage_over_time_is_what_the_trailing_window_charged_over_the_limit():
    # 100 tokens admitted at t = 0, 10 and 70; TPM's window ending at t is (t - 60, t]:
    # t = 10 holds 0 and 10 (200 / 1000); t = 60 holds 10 (its left edge, 0, is out); t = 70 holds 70
    records = pd.DataFrame({"model": ["llama-3.1-8b-instant"] * 3, "admitted": [0.0, 10.0, 70.0],
                            "charged_tokens": [100.0] * 3, "audio_seconds": [0.0] * 3})
    usage = usage_over_time(records, _tpm_1000(), np.array([10.0, 60.0, 70.0]))
    assert usage["llama-3.1-8b-instant TPM"] == pytest.approx([0.2, 0.1, 0.1])


def test_plot_labels_name_a_number_by_its_axis_and_a_name_alone():
    comparison = pd.DataFrame({"point": [0, 1], "tier": ["free", "developer"], "project_quotas": [True, False]})
    study = StudyResult(comparison=comparison, summary=pd.DataFrame(), scenario=SimpleNamespace(
        compare={"tier": ["free", "developer"], "project_quotas": [True, False]},
        scenario=SimpleNamespace(name="sweep")))
    assert study.label(1) == "developer, project_quotas=False"
    single = StudyResult(comparison=comparison.iloc[:1], summary=pd.DataFrame(),
                         scenario=SimpleNamespace(compare={}, scenario=SimpleNamespace(name="sweep")))
    assert single.label(0) == "sweep"  # no axes: the scenario's name


def test_summary_rows_read_back_from_json_make_the_same_frame_as_in_memory():
    """A run's summary row is kept as JSON (NaN written as null, numpy scalars as Python's): the frame built
    from the rows read back has the same values and dtypes as the one built from the rows in memory."""
    from sim.report import jsonable
    from sim.study import summary_frame
    rows = [{"point": 0, "policy": "a", "replication": 0, "key": "k0", "ok": np.int64(3), "latency_p95": np.nan,
             "share": 0.5, "binding": "rpm", "flag": True, "never": np.nan, "maybe": True},
            {"point": 0, "policy": "a", "replication": 1, "key": "k1", "ok": np.int64(0), "latency_p95": 1.5,
             "share": np.float64(np.nan), "binding": None, "flag": False, "never": np.nan, "maybe": None}]
    memory = summary_frame(rows)
    back = summary_frame([json.loads(json.dumps(jsonable(r), allow_nan=False)) for r in rows])
    pd.testing.assert_frame_equal(memory, back)
    assert memory["latency_p95"].dtype == float and np.isnan(memory["latency_p95"][0])
    assert memory["share"].tolist()[0] == 0.5 and np.isnan(memory["share"][1])
    assert memory["ok"].tolist() == [3, 0] and memory["flag"].tolist() == [True, False]
    assert memory["flag"].dtype == bool and memory["binding"].isna().tolist() == [False, True]
    assert memory["never"].dtype == float and memory["never"].isna().all()  # (NaN in every run: null in JSON)
    assert memory["maybe"].tolist() == [True, None]  # a flag is not a number, though Python counts it one


@pytest.mark.parametrize("bindings, named", [
    (["tpm (paced)", "none"], "tpm (paced)"),  # a tie: the limit, not "none" (it held back half the runs)
    (["none", "tpm (paced)"], "tpm (paced)"),
    (["rpm", "none", "none"], "none"),  # most replications decide
    (["tpm", "rpm"], "tpm"),  # a tie of limits: the earliest replication's, not the alphabetical first
    (["rpd", "tpm", "tpm", "rpd"], "rpd"),
    ([None, None], ""),
])
def test_the_binding_is_the_one_most_replications_name(bindings, named):
    summary = summary_rows({"latency_p95": [1.0] * len(bindings)}).assign(binding=bindings)
    assert compare(summary, []).loc[0, "binding"] == named


def test_a_bill_unknown_in_one_replication_is_unknown_for_the_point():
    """A success on an unpriced model makes a run's bill NaN; the point's mean was the other replications'
    (one of three: $0.218 per 1k with no footnote).  Unknown in any: NaN, so the table says '-' with its
    footnote; a latency NaN (a replication with no success) is still left out of its own mean."""
    summary = summary_rows({"cost_usd": [0.5, np.nan, 0.7], "cost_per_success": [0.001, np.nan, 0.002],
                            "latency_p95": [1.0, np.nan, 3.0], "success_ratio": [1.0, 0.5, 1.0]})
    row = compare(summary, []).iloc[0]
    assert np.isnan(row["cost_usd_mean"]) and np.isnan(row["cost_per_success_mean"])
    assert np.isnan(row["cost_per_success_ci95"])
    assert row["latency_p95_mean"] == 2.0
    text = format_comparison(compare(summary, []), [])
    assert "$/1k ok '-' = a model Groq publishes no price for was served" in text
    priced = summary_rows({"cost_usd": [0.5, 0.7], "cost_per_success": [0.001, 0.002], "success_ratio": [1.0, 1.0]})
    assert compare(priced, []).loc[0, "cost_per_success_mean"] == pytest.approx(0.0015)
