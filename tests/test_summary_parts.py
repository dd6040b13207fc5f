"""The summary's parts by hand on small records: percentiles, waits, the binding's tie order and project
quota, a breakdown per column, what utilisation and spent read at their windows' edges."""
import warnings

import numpy as np
import pandas as pd
import pytest

from sim.records import OUTCOMES, REFUSED_BY, RunResult
from sim.summary import _most_refused, breakdown, spent, summarize, usage_columns, utilisation
from tests.test_summary import MODEL, _result


def test_latency_percentiles_interpolate_between_the_windows_successes():
    s = summarize(_result())  # the window's successes took 2, 5 and 6 s
    assert (s["latency_p50"], s["latency_p90"], s["latency_p95"], s["latency_p99"]) == \
        pytest.approx((5.0, 5.8, 5.9, 5.98))


def test_summarize_names_what_it_was_given_instead_of_a_run_result():
    r = _result()
    with pytest.raises(TypeError, match=r"takes the RunResult sim\.simulate returns, got DataFrame: pass the "
                                        r"RunResult itself, not its \.records"):
        summarize(r.records)


def test_no_admission_among_the_successes_is_no_wait_not_a_warning():
    r = _result()
    rec = r.records.assign(admitted=np.nan)  # (a batch lane's successes are never admitted by a limit)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = summarize(RunResult(rec, r.refusals, r.spec))
    assert np.isnan(s["mean_wait"]) and s["ok"] == 3


def test_the_binding_is_a_project_quota_only_when_it_gave_most_429s():
    """4 429s in the window: 2 from a project's quota is not most of them, 3 is."""
    r = _result()
    for from_project, binding in ((2, "tpm"), (3, "tpm (project quota)")):
        n = np.zeros(6, np.int16)
        n[2] = from_project  # the request created at 62 (3 of its 429s)
        rec = r.records.assign(n429_project=n)
        assert summarize(RunResult(rec, r.refusals, r.spec))["binding"] == binding


def test_equal_refusal_counts_go_to_the_first_unit_in_the_records_order_not_the_alphabets():
    units = pd.Categorical(["ash", "tpd", "tpd", "ash"], categories=REFUSED_BY)  # tpd is listed before ash
    refusals = pd.DataFrame({"time": [1.0, 2.0, 3.0, 4.0], "model": pd.Categorical([MODEL] * 4), "unit": units})
    assert _most_refused(refusals, 0.0, 10.0) == (MODEL, "tpd")
    assert _most_refused(refusals, 0.0, 3.0) == (MODEL, "tpd")  # [0, 3): ash 1, tpd 2... at 3.0 excluded
    assert _most_refused(refusals, 3.0, 10.0) == (MODEL, "tpd")
    assert _most_refused(refusals.iloc[:0], 0.0, 10.0) is None and _most_refused(refusals, 5.0, 10.0) is None


def test_the_most_refused_of_many_models_is_found_past_int8_codes():
    models = [f"m{k}" for k in range(30)]
    refusals = pd.DataFrame({"time": [1.0, 2.0, 3.0], "model": pd.Categorical(["m29", "m29", "m0"],
                                                                              categories=models),
                             "unit": pd.Categorical(["asd", "asd", "rpm"], categories=REFUSED_BY)})
    assert _most_refused(refusals, 0.0, 10.0) == ("m29", "asd")  # code 29 * 7 + 6 = 209: past an int8


def _with_columns():
    """_result's records with a client and a project per row, 498s on two of them, and the model priced at $1
    and $2 per million input and output tokens (a success of 100 + 50 tokens costs $0.0002)."""
    from dataclasses import replace
    from sim.prices import Price
    r = _result()
    r = RunResult(r.records, r.refusals, replace(r.spec, prices={MODEL: Price(input_per_m=1.0, output_per_m=2.0)}))
    rec = r.records.assign(client=pd.Categorical(["a", "a", "b", "b", "a", "b"]),
                           project=pd.Categorical(["p", "q", "p", "p", "q", "q"]),
                           n498=np.array([0, 1, 0, 0, 2, 0], np.int16))
    return RunResult(rec, r.refusals, r.spec)


def test_a_breakdown_counts_each_value_of_a_column_over_the_window():
    """The window [60, 120) holds rows 1-5: a = (ok 61->63, too_large 80), b = (gave_up 62, ok 70->75, ok 119->125)."""
    by = breakdown(_with_columns(), "client")
    assert by["client"].tolist() == ["a", "b"]
    assert by["offered"].tolist() == [2, 3] and by["ok"].tolist() == [1, 2]
    assert by["success_ratio"].tolist() == pytest.approx([0.5, 2 / 3])
    assert by["too_large"].tolist() == [1, 0] and by["gave_up"].tolist() == [0, 1]
    assert "ok" in by and list(by.columns).count("ok") == 1
    assert by["n429"].tolist() == [0, 4] and by["n498"].tolist() == [3, 0]
    assert by["latency_p50"].tolist() == pytest.approx([2.0, 5.5])
    assert by["latency_p95"].tolist() == pytest.approx([2.0, 5.95])
    assert by["cost_usd"].tolist() == pytest.approx([2e-4, 4e-4])  # the window's successes only
    assert summarize(_with_columns())["cost_usd"] == pytest.approx(6e-4)
    projects = breakdown(_with_columns(), "project")  # (the window's first row is q's: listed in sorted order)
    assert projects["project"].tolist() == ["p", "q"] and projects["offered"].tolist() == [2, 3]
    r = _with_columns()
    at_end = RunResult(r.records.assign(created=[10.0, 61.0, 62.0, 70.0, 80.0, 120.0]), r.refusals, r.spec)
    assert breakdown(at_end, "client")["offered"].tolist() == [2, 2]  # created at the window's end: out
    plain = breakdown(_result(), "model")
    assert "n498" not in plain and plain["offered"].tolist() == [5]
    with pytest.raises(ValueError, match=r"no column 'lane' to break down by \(allowed: project, client, model\)"):
        breakdown(_with_columns(), "lane")


def test_a_breakdown_of_a_value_without_successes_has_no_latency():
    r = _with_columns()
    rec = r.records.assign(outcome=pd.Categorical(["ok", "ok", "gave_up", "gave_up", "too_large", "gave_up"],
                                                  categories=OUTCOMES))
    by = breakdown(RunResult(rec, r.refusals, r.spec), "client")
    assert by["latency_p50"].iloc[0] == 2.0 and np.isnan(by["latency_p50"].iloc[1])


def test_usage_columns_name_what_refunds_and_lanes_read():
    from dataclasses import replace
    spec = _result().spec
    assert usage_columns(spec) == ["admitted", "model", "charged_tokens", "audio_seconds"]
    refunding = replace(spec, org=spec.org.model_copy(update={"accounting": spec.org.accounting.model_copy(
        update={"refund_unused": True})}))  # (with the default charge, max_tokens: refunds on)
    assert refunding.org.accounting.refunds
    assert usage_columns(refunding) == ["admitted", "model", "charged_tokens", "audio_seconds", "finished",
                                        "max_tokens", "completion_tokens"]
    flex = replace(spec, org=spec.org.model_copy(update={"service_tier": "flex"}))
    assert usage_columns(flex) == ["admitted", "model", "charged_tokens", "audio_seconds", "service_tier"]


def test_utilisation_counts_an_admission_at_the_windows_start_and_not_at_its_end():
    r = _result()
    for admitted, rpm in (([10.0, 60.0, np.nan, 72.0, np.nan, 119.0], 0.3),   # 60: in
                          ([10.0, 61.0, np.nan, 72.0, np.nan, 120.0], 0.2)):  # 120: out
        rec = r.records.assign(admitted=admitted)
        assert utilisation(RunResult(rec, r.refusals, r.spec))[(MODEL, "rpm")] == pytest.approx(rpm)


def test_spent_is_every_charge_before_the_runs_end_over_a_budget_and_its_refill():
    """The run ends at duration + drain = 120 + 3600 s; RPM 10 gives 10 x (1 + 3720 / 60) = 630 requests at
    most; four admissions (at 10, 61, 72, 119) spent 4 / 630.  One at the end itself is not counted."""
    r = _result()
    assert r.spec.duration + r.spec.drain == 3720.0
    assert spent(r)[(MODEL, "rpm")] == pytest.approx(4 / 630)
    assert spent(r)[(MODEL, "tpm")] == pytest.approx(800 / (1000 * 63))
    rec = r.records.assign(admitted=[10.0, 61.0, np.nan, 72.0, np.nan, 3720.0])
    assert spent(RunResult(rec, r.refusals, r.spec))[(MODEL, "rpm")] == pytest.approx(3 / 630)


def _lane_window(outcomes):
    """A lane run's window by hand: on-demand, flex and three batch jobs of client b (job 1 expired)."""
    return pd.DataFrame({
        "outcome": pd.Categorical(outcomes, categories=OUTCOMES),
        "service_tier": pd.Categorical(["on_demand", "flex", "batch", "batch", "batch", "batch", "on_demand"],
                                       categories=("on_demand", "flex", "batch")),
        "finished": [10.0, 20.0, 100.0, 130.0, np.nan, 300.0, 15.0],
        "n498": np.array([1, 0, 0, 0, 0, 0, 2], np.int16), "n429_project": np.array([0, 2, 0, 0, 0, 0, 1], np.int16),
        "client": pd.Categorical(["a", "a", "b", "b", "b", "b", "a"]),
        "job": np.array([-1, -1, 0, 0, 1, 2, -1], np.int32),
        "submitted": [np.nan, np.nan, 30.0, 30.0, 40.0, 50.0, np.nan]})


def test_lane_metrics_by_hand():
    """Successes: rows 0-3 and 5, one of them on flex; jobs 0 (30 -> 130 s: 100 s) and 2 (50 -> 300 s: 250 s)
    completed, job 1 expired; one batch request of four expired."""
    from sim.summary import lane_metrics
    m = lane_metrics(_result(), _lane_window(["ok", "ok", "ok", "ok", "expired", "ok", "gave_up"]))
    assert (m["n498"], m["project_refusals"]) == (3, 3)
    assert m["flex_share"] == pytest.approx(0.2) and m["done_by"] == 300.0
    assert (m["batch_jobs"], m["jobs_expired"]) == (3, 1)
    assert (m["job_time_p50"], m["job_time_p90"], m["job_time_max"]) == pytest.approx((175.0, 235.0, 250.0))
    assert m["batch_expired_share"] == pytest.approx(0.25)


def test_lane_metrics_without_successes_or_batches_are_missing_not_warnings():
    from sim.summary import lane_metrics
    none_ok = _lane_window(["gave_up", "gave_up", "expired", "expired", "expired", "expired", "gave_up"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = lane_metrics(_result(), none_ok)
        plain = lane_metrics(_result(), none_ok[none_ok["service_tier"] != "batch"].assign(job=-1))
    assert np.isnan(m["flex_share"]) and np.isnan(m["done_by"])
    assert (m["batch_jobs"], m["jobs_expired"]) == (3, 3) and m["batch_expired_share"] == 1.0
    assert all(np.isnan(m[k]) for k in ("job_time_p50", "job_time_p90", "job_time_max"))
    assert plain["batch_jobs"] == 0 and np.isnan(plain["batch_expired_share"])


def test_admissions_a_timeout_gave_up_count_and_a_model_never_admitted_used_nothing():
    """An earlier admission (given up by the client's timeout, charged all the same) at 65 s adds one request
    and 200 tokens to the window; a second model of the limits, never admitted, used and spent nothing."""
    from dataclasses import replace
    from sim.catalog import Catalog, Limits
    r = _result()
    spec = replace(r.spec, catalog=Catalog({"t": {MODEL: Limits(rpm=10, tpm=1000), "m2": Limits(rpm=5)}}))
    rec = r.records.assign(model=pd.Categorical([MODEL] * 6, categories=[MODEL, "m2"]))
    earlier = pd.DataFrame({"model": pd.Categorical([MODEL], categories=[MODEL, "m2"]), "admitted": [65.0],
                            "finished": [90.0], "charged_tokens": [200.0], "audio_seconds": [0.0],
                            "max_tokens": [256], "completion_tokens": [50]})
    result = RunResult(rec, r.refusals, spec, earlier_admissions=earlier)
    util = utilisation(result)
    assert util[(MODEL, "rpm")] == pytest.approx(0.4) and util[(MODEL, "tpm")] == pytest.approx(0.8)
    assert util[("m2", "rpm")] == 0.0 and spent(result)[("m2", "rpm")] == 0.0
    assert spent(result)[(MODEL, "rpm")] == pytest.approx(5 / 630)

