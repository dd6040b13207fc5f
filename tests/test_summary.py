"""Summaries computed by hand on a small run record."""
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from sim import RunSpec
from sim.catalog import Catalog, Limits
from sim.config import Client, Org, arrival, policy_table
from sim.records import OUTCOMES, REFUSED_BY, RunResult
from sim.summary import _binding, summarize, utilisation

MODEL = "m"


def _result():
    cat = Catalog({"t": {MODEL: Limits(rpm=10, tpm=1000)}})
    spec = RunSpec(clients=[Client(name="c", model=MODEL, arrival=arrival(kind="poisson", rate=1.0))],
                   policies=policy_table(), org=Org(tier="t"), catalog=cat, duration=120.0, warmup=60.0)
    outcome = ["ok", "ok", "gave_up", "ok", "too_large", "ok"]
    created = [10.0, 61.0, 62.0, 70.0, 80.0, 119.0]
    finished = [11.0, 63.0, 64.0, 75.0, 80.5, 125.0]  # the last finishes after the window
    rec = pd.DataFrame({
        "model": pd.Categorical([MODEL] * 6), "created": created, "finished": finished,
        "latency": np.subtract(finished, created),
        "admitted": [10.0, 61.0, np.nan, 72.0, np.nan, 119.0],
        "attempts": np.array([1, 1, 3, 2, 1, 1], np.int16), "n429": np.array([0, 0, 3, 1, 0, 0], np.int16),
        "outcome": pd.Categorical(outcome, categories=OUTCOMES),
        "prompt_tokens": [100] * 6, "completion_tokens": [50] * 6, "charged_tokens": [200.0] * 6,
        "audio_seconds": [0.0] * 6,
        "refused_by": pd.Categorical(["", "", "tpm", "tpm", "tpm", ""], categories=REFUSED_BY)})
    refusals = pd.DataFrame({"time": [62.0, 63.0, 63.5, 70.0, 5.0], "model": pd.Categorical([MODEL] * 5),
                             "unit": pd.Categorical(["tpm", "tpm", "rpm", "tpm", "rpm"], categories=REFUSED_BY)})
    return RunResult(rec, refusals, spec)


def test_summary_counts_the_window_by_creation_and_throughput_by_finish():
    s = summarize(_result())
    assert (s["offered"], s["ok"], s["gave_up"], s["too_large"]) == (5, 3, 1, 1)
    assert s["offered"] == sum(s[k] for k in OUTCOMES)
    assert s["success_ratio"] == pytest.approx(3 / 5)
    assert s["throughput_rpm"] == pytest.approx(2.0)  # 2 successes finished in [60, 120) over 1 minute
    assert s["after_window_share"] == pytest.approx(1 / 3)  # of the 3, the one created at 119 finishes at 125
    r = _result()
    edge = summarize(RunResult(r.records.assign(finished=[11.0, 63.0, 64.0, 75.0, 80.5, 120.0]), r.refusals, r.spec))
    assert (edge["throughput_rpm"], edge["after_window_share"]) == (2.0, 1 / 3)  # at the window's end: after it
    assert s["attempts"] == 8 and s["n429"] == 4 and s["n429_per_attempt"] == pytest.approx(0.5)
    assert s["attempts_per_success"] == pytest.approx(8 / 3)
    assert s["latency_p50"] == pytest.approx(5.0) and s["latency_max"] == pytest.approx(6.0)
    assert s["mean_wait"] == pytest.approx((0 + 2 + 0) / 3)
    assert s["binding"] == "tpm"  # 3 TPM refusals in the window against 1 RPM (the one at t=5 is outside)


def test_utilisation_is_charge_over_refill_in_the_window():
    util = utilisation(_result())
    # three admissions in [60, 120): 3 requests of RPM 10/min over 1 minute, 600 tokens of TPM 1000/min
    assert util[(MODEL, "rpm")] == pytest.approx(0.3)
    assert util[(MODEL, "tpm")] == pytest.approx(0.6)
    s = summarize(_result())
    assert s["top_unit"] == "tpm" and s["top_util"] == pytest.approx(0.6)


def _two_models(refusals):
    """_result's run with its last two requests on a second model "n", and ``refusals`` as its 429 log."""
    r = _result()
    rec = r.records.copy()
    rec["model"] = pd.Categorical([MODEL] * 4 + ["n"] * 2, categories=[MODEL, "n"])
    ref = pd.DataFrame({"time": [t for t, _, _ in refusals],
                        "model": pd.Categorical([m for _, m, _ in refusals], categories=[MODEL, "n"]),
                        "unit": pd.Categorical([u for _, _, u in refusals], categories=REFUSED_BY)})
    cat = Catalog({"t": {MODEL: Limits(rpm=10, tpm=1000), "n": Limits(rpm=10, tpm=1000)}})
    spec = RunSpec(clients=r.spec.clients, policies=r.spec.policies, org=r.spec.org, catalog=cat,
                   duration=120.0, warmup=60.0)
    return RunResult(rec, ref, spec)


def test_binding_counts_refusals_per_model_and_unit_and_a_tie_goes_to_the_first_in_their_order():
    # two TPM refusals of "n" against one RPM and one TPM of "m", plus three outside the window
    s = summarize(_two_models([(61.0, "n", "tpm"), (62.0, MODEL, "rpm"), (63.0, "n", "tpm"), (64.0, MODEL, "tpm"),
                               (1.0, MODEL, "rpm"), (2.0, MODEL, "rpm"), (120.0, MODEL, "rpm")]))
    assert s["binding"] == "n:tpm"
    # a tie (two each): the pair first in (model, unit) category order, as a grouped count lists them
    tie = [(61.0, "n", "rpm"), (62.0, MODEL, "tpm"), (63.0, "n", "rpm"), (64.0, MODEL, "tpm")]
    assert summarize(_two_models(tie))["binding"] == f"{MODEL}:tpm"
    assert summarize(_two_models(tie[:1] + tie[2:] + [(65.0, "n", "rpm")]))["binding"] == "n:rpm"
    # 429s before the window only: the request refused as too large (413) in the window names its unit
    assert summarize(_two_models([(5.0, "n", "rpm")]))["binding"] == "n:tpm (413)"


def test_utilisation_per_model_whether_the_model_column_is_categorical_or_plain():
    r = _two_models([])
    # in [60, 120): m admitted 2 (61, 72), n 1 (119): RPM 10/min over 1 minute, TPM 1000/min, 200 tokens each
    util = utilisation(r)
    assert util[(MODEL, "rpm")] == pytest.approx(0.2) and util[("n", "rpm")] == pytest.approx(0.1)
    assert util[(MODEL, "tpm")] == pytest.approx(0.4) and util[("n", "tpm")] == pytest.approx(0.2)
    plain = r.records.assign(model=r.records["model"].astype(str))
    from sim.summary import charged_by_model
    a, b = charged_by_model(r.records), charged_by_model(plain)
    assert list(a) == list(b) == [MODEL, "n"]
    for m in a:
        assert np.array_equal(a[m][0], b[m][0]) and np.array_equal(a[m][1]["tokens"], b[m][1]["tokens"])
    assert list(a[MODEL][0]) == [10.0, 61.0, 72.0] and list(a["n"][0]) == [119.0]
    late = r.records.assign(admitted=[100.0, 61.0, np.nan, 72.0, np.nan, 119.0])  # a retry admitted late
    times, charged = charged_by_model(late)[MODEL]
    assert list(times) == [61.0, 72.0, 100.0] and len(charged["requests"]) == 3


def test_summary_reads_plain_string_columns_as_it_reads_categorical_ones():
    """Records read back from requests.parquet hold outcome as plain strings; a 429 log may too."""
    r = _two_models([(61.0, "n", "tpm"), (62.0, MODEL, "rpm"), (63.0, "n", "tpm"), (64.0, MODEL, "tpm")])
    plain = RunResult(r.records.assign(outcome=r.records["outcome"].astype(str)),
                      r.refusals.assign(model=r.refusals["model"].astype(str), unit=r.refusals["unit"].astype(str)),
                      r.spec)
    a, b = summarize(r), summarize(plain)
    assert a == b or str(a) == str(b)
    assert b["binding"] == "n:tpm" and (b["ok"], b["gave_up"], b["too_large"]) == (3, 1, 1)


def _records(created, finished, outcome, model=MODEL, **extra):
    n = len(created)
    return pd.DataFrame({
        "model": pd.Categorical([model] * n), "created": created, "finished": finished,
        "latency": np.subtract(finished, created), "admitted": created,
        "attempts": np.ones(n, np.int16), "n429": np.zeros(n, np.int16),
        "outcome": pd.Categorical(outcome, categories=OUTCOMES),
        "prompt_tokens": [100] * n, "completion_tokens": [50] * n, "charged_tokens": [150.0] * n,
        "audio_seconds": [0.0] * n, **extra})


def _spec(limits, model=MODEL, warmup=60.0):
    cat = Catalog({"t": {model: limits}})
    return RunSpec(clients=[Client(name="c", model=model, arrival=arrival(kind="poisson", rate=1.0))],
                   policies=policy_table(), org=Org(tier="t"), catalog=cat, duration=120.0, warmup=warmup)


def test_summary_window_edges_count_at_the_start_and_not_at_the_end():
    """[warmup, duration): a request created at 60 counts, one created at 120 does not; a success finished at
    60 counts in the throughput, one finished at 120 does not; so do refusals at 60 and 120."""
    rec = _records([50.0, 60.0, 120.0], [60.0, 120.0, 121.0], ["ok", "ok", "ok"])
    ref = pd.DataFrame({"time": [60.0, 120.0, 120.0], "model": pd.Categorical([MODEL] * 3),
                        "unit": pd.Categorical(["rpd", "rpm", "rpm"], categories=REFUSED_BY)})
    s = summarize(RunResult(rec, ref, _spec(Limits(rpm=10, rpd=100, tpm=1000))))
    assert (s["offered"], s["ok"]) == (1, 1)
    assert s["throughput_rpm"] == pytest.approx(1.0) and s["tokens_per_min"] == pytest.approx(150.0)
    assert s["binding"] == "rpd"  # the refusals at 120 are outside (inside, RPM's two would bind)


def test_summary_of_an_empty_window_and_of_a_model_without_limits():
    rec = _records([10.0, 130.0], [11.0, 131.0], ["ok", "ok"])
    s = summarize(RunResult(rec, pd.DataFrame(), _spec(Limits())))
    assert (s["offered"], s["ok"], s["attempts"], s["n429"], s["n429_per_attempt"]) == (0, 0, 0, 0, 0.0)
    for key in ("success_ratio", "after_window_share", "attempts_per_success", "latency_p50", "latency_max",
                "mean_wait", "cost_per_success", "top_util", "util_rpm", "util_tpm"):
        assert np.isnan(s[key]), key
    assert s["binding"] == "none" and s["top_unit"] == "" and s["cost_usd"] == 0.0


def test_summary_cost_of_the_windows_successes():
    """llama-3.1-8b-instant at $0.05 / $0.08 per million input / output tokens: 100 + 50 tokens cost 9e-6."""
    model = "llama-3.1-8b-instant"
    rec = _records([10.0, 61.0, 62.0, 70.0], [11.0, 63.0, 64.0, 75.0], ["ok", "ok", "gave_up", "ok"], model=model)
    s = summarize(RunResult(rec, pd.DataFrame(), _spec(Limits(rpm=10), model)))
    assert s["cost_usd"] == pytest.approx(2 * 9e-6) and s["cost_per_success"] == pytest.approx(9e-6)
    assert s["util_rpm"] == pytest.approx(0.3) and np.isnan(s["util_tpm"])  # 3 admitted in the window of RPM 10
    whole = summarize(RunResult(rec, pd.DataFrame(), _spec(Limits(rpm=10), model, warmup=0.0)))  # 2 minutes
    assert whole["throughput_rpm"] == pytest.approx(3 / 2) and whole["tokens_per_min"] == pytest.approx(3 * 150 / 2)


def test_summary_utilisation_maxima_over_models_and_a_tie_in_unit_order():
    r = _two_models([(61.0, MODEL, "rpm"), (62.0, MODEL, "rpd"), (63.0, MODEL, "rpm"), (64.0, MODEL, "rpd")])
    s = summarize(r)
    assert s["util_rpm"] == pytest.approx(0.2) and s["util_tpm"] == pytest.approx(0.4)  # m's, the larger
    assert np.isnan(s["util_tpd"]) and s["top_unit"] == f"{MODEL}:tpm"
    assert s["binding"] == f"{MODEL}:rpm"  # a tie: RPM comes before RPD in the units' order
    plain = RunResult(r.records, r.refusals.assign(unit=r.refusals["unit"].astype(str)), r.spec)
    assert summarize(plain)["binding"] == f"{MODEL}:rpd"  # plain strings: sorted, as a groupby sorts them


def test_lane_runs_count_only_what_the_on_demand_limits_admitted():
    """Flex requests pass other limits (10x): a lane run's utilisation reads only the on-demand admissions."""
    tiers = pd.Categorical(["on_demand", "flex", "flex", "on_demand", "flex"],
                           categories=["on_demand", "flex", "batch"])
    rec = _records([61.0, 62.0, 63.0, 64.0, 65.0], [62.0, 63.0, 64.0, 65.0, 66.0], ["ok"] * 5, service_tier=tiers)
    util = utilisation(RunResult(rec, pd.DataFrame(), _spec(Limits(rpm=10))))
    assert util[(MODEL, "rpm")] == pytest.approx(0.2)
    # and the flex admissions are read against the flex limits (x 10 by default): 3 of 100 a minute
    assert util[(f"{MODEL} (flex)", "rpm")] == pytest.approx(0.03)


def test_a_run_without_lanes_charged_no_flex_limits():
    from sim.summary import charged_by_model
    rec = _records([61.0, 62.0], [62.0, 63.0], ["ok"] * 2)
    assert charged_by_model(rec, tier="flex") == {} and list(charged_by_model(rec)) == [MODEL]


def test_utilisation_gives_back_what_completions_refunded():
    """With ``refund_unused`` (charging max_tokens), a completed response's unused reservation is given back
    when it finishes: the window's TPM use is the charges in it less the refunds in it."""
    from sim.config import Accounting
    from sim.summary import spent
    # charged 150 each (prompt 100 + max_tokens 50); completions 10, 49, 0: 40, 1 and 50 given back at finish
    rec = _records([61.0, 62.0, 100.0], [70.0, 63.0, 125.0], ["ok"] * 3, max_tokens=[50] * 3)
    rec["completion_tokens"] = [10, 49, 0]
    spec = _spec(Limits(rpm=10, tpm=1000))
    refund = replace(spec, org=spec.org.model_copy(update={"accounting": Accounting(refund_unused=True)}))
    assert utilisation(RunResult(rec, pd.DataFrame(), spec))[(MODEL, "tpm")] == pytest.approx(0.45)
    # 450 charged in [60, 120), 41 given back in it (the third's 50 comes back at 125, after the window)
    assert utilisation(RunResult(rec, pd.DataFrame(), refund))[(MODEL, "tpm")] == pytest.approx(0.409)
    # over the whole run, drain included, of a full budget + the refill: 450 charged, 91 given back
    minutes = (spec.duration + spec.drain) / 60
    assert spent(RunResult(rec, pd.DataFrame(), refund))[(MODEL, "tpm")] == pytest.approx(359 / (1000 * (1 + minutes)))
    assert spent(RunResult(rec, pd.DataFrame(), spec))[(MODEL, "rpm")] == pytest.approx(3 / (10 * (1 + minutes)))


def test_summarize_names_the_binding_as_the_study_does():
    """``sim.summarize`` of a run gives the binding ``groqsim run`` reports: a pacing client held back by RPM
    reads ``rpm (paced)``, not ``none`` (the rule used to live in the study runner only)."""
    import sim
    from sim.runner import run_study
    from sim.scenario import scenario_from_dict
    scenario = scenario_from_dict({
        "scenario": {"name": "paced", "duration": "10m", "drain": "1h", "replications": 1},
        "tiers": {"mine": {"base": "free", "overrides": {"llama-3.1-8b-instant": {"rpm": 4}}}},
        "org": {"tier": "mine"},
        "clients": [{"name": "c", "model": "llama-3.1-8b-instant", "arrival": {"kind": "poisson", "rate": "10/min"},
                     "prompt_tokens": 200, "max_tokens": 100, "policy": "paced"}]}, source="<test>")
    s = sim.summarize(sim.simulate(scenario.spec(), scenario.seed(0)))
    assert s["n429"] == 0 and s["binding"] == "rpm (paced)"
    assert run_study(scenario, jobs=1, progress=False).summary["binding"].tolist() == ["rpm (paced)"]


def test_a_413_binding_is_the_model_and_unit_that_refused_most_in_the_window():
    """Without 429s in the window, the binding is the (model, unit) that refused the most requests as too large
    among those created in ``[warmup, duration)`` -- a request created at the warm-up's end counts, one
    created at the run's end does not -- a tie going to the first in (model, unit) order."""
    r = _two_models([])
    rec = r.records.copy()
    rec["model"] = pd.Categorical([MODEL, MODEL, MODEL, "n", "n", "n"], categories=[MODEL, "n"])
    rec["created"] = [10.0, 60.0, 70.0, 80.0, 119.0, 120.0]
    rec["outcome"] = pd.Categorical(["too_large"] * 6, categories=OUTCOMES)
    rec["refused_by"] = pd.Categorical(["tpm", "rpm", "rpm", "tpm", "tpm", "tpm"], categories=REFUSED_BY)
    # in the window: MODEL rpm at 60 and 70, n tpm at 80 and 119 (120 is outside): a tie, MODEL first
    assert _binding(RunResult(rec, r.refusals, r.spec), {"binding": "none"}) == f"{MODEL}:rpm (413)"
    rec["refused_by"] = pd.Categorical(["tpm", "tpm", "rpm", "tpm", "tpm", "tpm"], categories=REFUSED_BY)
    assert _binding(RunResult(rec, r.refusals, r.spec), {"binding": "none"}) == "n:tpm (413)"  # 2 against 1 + 1
    one = rec[rec["model"] == MODEL].copy()
    one["model"] = pd.Categorical([MODEL] * 3)
    one["refused_by"] = pd.Categorical(["rpm", "tpm", "tpm"], categories=REFUSED_BY)
    assert _binding(RunResult(one, r.refusals, r.spec), {"binding": "none"}) == "tpm (413)"  # one model: no name


def _no_413(r: RunResult) -> RunResult:
    """``r`` with no request too large in its window (so ``_binding`` reaches its later cases)."""
    rec = r.records.copy()
    rec["outcome"] = rec["outcome"].replace("too_large", "gave_up")
    return replace(r, records=rec)


def test_without_a_429_spilled_then_paced_then_spent_bind_in_that_order(monkeypatch):
    """The cases after the 429s, each reached only when those before it say nothing."""
    import sim.summary as summary
    r = _no_413(_result())
    held = {"binding": "none", "mean_wait": 0.5, "unfinished": 3}
    monkeypatch.setattr(summary, "spent", lambda result: {(MODEL, "rpd"): 0.95, (MODEL, "tpd"): 0.2})
    assert _binding(r, held) == "rpd (spent)"  # 0.95 of the budget counts as spent
    assert _binding(replace(r, paced_by=((MODEL, "tpm"),)), held) == "tpm (paced)"  # half a second's wait is one
    both = replace(r, paced_by=((MODEL, "tpm"),), spilled_by=((MODEL, "rpm"), (MODEL, "tpd")))
    assert _binding(both, held) == "rpm (spilled)"  # the first, the one that spilled most
    assert _binding(both, {**held, "binding": "tpd"}) == "tpd"  # a 429's unit comes first of all


def test_a_413_binds_only_when_nothing_held_the_rest_of_the_traffic_back(monkeypatch):
    """A request too large for a unit (one 413 in the window here) names the binding only when no spill, pacer or
    spent budget held the rest back: one 413 in 50 000 requests named TPM while the day's TPD ran out."""
    import sim.summary as summary
    r = _result()
    monkeypatch.setattr(summary, "spent", lambda result: {(MODEL, "tpd"): 0.99})
    assert _binding(r, {"binding": "none", "mean_wait": 0.0, "unfinished": 3}) == "tpd (spent)"
    assert _binding(replace(r, paced_by=((MODEL, "rpm"),)), {"binding": "none", "mean_wait": 0.5}) == "rpm (paced)"
    assert _binding(replace(r, spilled_by=((MODEL, "rpd"),)), {"binding": "none"}) == "rpd (spilled)"
    assert _binding(r, {"binding": "none", "mean_wait": 0.0, "unfinished": 0}) == "tpm (413)"


def test_a_pacer_that_held_no_successful_request_back_does_not_bind(monkeypatch):
    """paced_by says a pacing client's limit set waited at some point of the run; only a mean wait > 0 of the
    window's successful requests makes it the binding (a wait only in the warm-up, say, does not)."""
    import sim.summary as summary
    monkeypatch.setattr(summary, "spent", lambda result: {})
    r = replace(_no_413(_result()), paced_by=((MODEL, "tpm"),))
    assert _binding(r, {"binding": "none", "mean_wait": 0.0, "unfinished": 0}) == "none"
    assert _binding(r, {"binding": "none", "unfinished": 0}) == "none"  # no mean wait measured: none either


@pytest.mark.parametrize("used, unfinished, expected", [
    ({(MODEL, "rpd"): 0.97}, 0, "none"),          # spent, but every request finished: nothing held back
    ({}, 2, "none"),                              # unfinished, and no limit to have spent (unlimited)
    ({(MODEL, "rpd"): 0.94, (MODEL, "tpd"): 0.5}, 2, "none"),  # unfinished, but no budget near its end
    ({(MODEL, "rpd"): 0.5, (MODEL, "tpd"): 0.99}, 2, "tpd (spent)"),  # the most spent unit
])
def test_spent_binds_only_unfinished_requests_with_a_unit_used_up(monkeypatch, used, unfinished, expected):
    import sim.summary as summary
    monkeypatch.setattr(summary, "spent", lambda result: used)
    assert _binding(_no_413(_result()), {"binding": "none", "mean_wait": 0.0, "unfinished": unfinished}) == expected


def _impatient(bill: bool, tier: str = "developer") -> RunResult:
    """Two groups whose policy gives an attempt up after 0.4 s (shorter than most answers): many attempts are
    admitted, charged and finished by the server, then tried again; some of them belong to warm-up requests."""
    from sim import scenario_from_dict, simulate
    s = scenario_from_dict({
        "scenario": {"duration": "10m", "warmup": "1m", "seed": 3},
        "org": {"tier": tier, "accounting": {"bill_timed_out": bill}},
        "policies": {"impatient": {"retry": "fixed", "delay": 1.0, "max_attempts": 3, "timeout": 0.4}},
        "clients": [{"name": "a", "model": "openai/gpt-oss-20b", "arrival": {"kind": "poisson", "rate": "30/min"},
                     "prompt_tokens": 2000, "max_tokens": 400, "policy": "impatient"},
                    {"name": "b", "model": "openai/gpt-oss-20b", "arrival": {"kind": "poisson", "rate": "20/min"},
                     "prompt_tokens": 500, "max_tokens": 100, "policy": "impatient"}]})
    return simulate(s.spec(s.grid()[0]), seed=s.seed(0))


def test_timed_out_attempts_are_billed_only_when_asked_at_the_published_prices():
    """``org.accounting.bill_timed_out``: an attempt the client's timeout gave up on (the server finished it)
    is billed as a success of its model with its request's tokens, for the window's requests; off (the
    default) it costs nothing.  The difference is counted by hand at gpt-oss-20b's published prices ($0.075 /
    $0.30 per 1M input / output tokens); the run and every other metric are the same.  Per client group and
    broken down by client, each group's own attempts are in its own cost."""
    from sim.groups import client_summaries
    from sim.summary import breakdown
    off, on = _impatient(False), _impatient(True)
    pd.testing.assert_frame_equal(off.records, on.records)
    early = on.earlier_admissions
    mine = on.records.set_index("id").loc[early["request"]]
    assert (mine["client"].to_numpy() == early["client"].to_numpy()).all()
    created = mine["created"].to_numpy()
    in_window = (created >= 60.0) & (created < 600.0)
    assert in_window.sum() > 50 and (~in_window).sum() > 0  # some are warm-up requests' attempts: not counted
    dollars = ((early["prompt_tokens"] * 0.075 + early["completion_tokens"] * 0.30) / 1e6).to_numpy()
    a, b = summarize(off), summarize(on)
    assert b["cost_usd"] - a["cost_usd"] == pytest.approx(dollars[in_window].sum(), rel=1e-9)
    assert b["cost_per_success"] == pytest.approx(b["cost_usd"] / b["ok"], rel=1e-12)
    costs = ["cost_usd", "cost_per_success"]
    assert pd.Series(a).drop(costs).equals(pd.Series(b).drop(costs))
    for by_group in (client_summaries, lambda r: breakdown(r, "client").to_dict("records")):
        before, after = ({g["client"]: g["cost_usd"] for g in by_group(r)} for r in (off, on))
        assert sum(after.values()) == pytest.approx(b["cost_usd"], rel=1e-9)
        for name in ("a", "b"):
            theirs = in_window & (early["client"] == name).to_numpy()
            assert theirs.sum() > 10
            assert after[name] - before[name] == pytest.approx(dollars[theirs].sum(), rel=1e-9)
    from sim.errors import InertSettingWarning
    with pytest.warns(InertSettingWarning, match="bill_timed_out: the tier does not bill"):
        free = _impatient(True, tier="free")
    assert len(free.earlier_admissions) > 5 and summarize(free)["cost_usd"] == 0.0
