"""Lanes end to end: scenario validation of service tiers, batch jobs and projects; the shipped scenarios;
per-project and per-lane summaries."""
from pathlib import Path

import pandas as pd
import pytest

import sim
from sim.errors import ConfigError
from sim.summary import breakdown

ROOT = Path(__file__).resolve().parents[1]
NOISY = ROOT / "scenarios" / "projects_noisy_neighbour.toml"
NIGHTLY = ROOT / "scenarios" / "nightly_batch_vs_flex.toml"
BASE = NOISY.read_text()

BAD = {
    "service tier": (BASE.replace('tier = "developer"', 'tier = "developer"\nservice_tier = "flexx"'),
                     r":15: org.service_tier: 'flexx': Input should be 'on_demand', 'flex' or 'auto'$"),
    "closed batch": (BASE.replace('arrival = { kind = "poisson", rate = "40/min" }',
                                  'arrival = { kind = "closed", users = 4, think = "1s" }\nlane = "batch"'),
                     r":23: clients\[0\]: lane 'batch' needs an open-loop arrival"),
    "window": (BASE.replace('policy = "exponential"', 'policy = "exponential"\nlane = "batch"\n'
                                                      'batch = { completion_window = "12h" }'),
               r":43: clients\[1\].batch.completion_window: '12h': outside what Groq accepts \(24h to 7d\), got 12h$"),
    "batch key": (BASE.replace('policy = "exponential"', 'policy = "exponential"\nbatch = { window = "1d" }'),
                  r":42: clients\[1\].batch.window: unknown key 'window' \(did you mean 'completion_window'\?"),
    "project name": (BASE.replace('project = "etl"', 'project = "etll"'),
                     r":35: clients\[1\].project: unknown project 'etll' "
                     r"\(did you mean 'etl'\? allowed: support, etl\)$"),
    "above org": (BASE.replace('tpm = "120K"', 'tpm = "300K"'),
                  r":21: projects.etl.limits.openai/gpt-oss-20b: project 'etl': tpm 300000 is above the "
                  r"organization's tpm limit 250000 on openai/gpt-oss-20b \(a project can only lower it\)$"),
    "unit": (BASE.replace('tpm = "120K"', 'tpn = "100K"'),
             r":21: projects.etl.limits: unknown limit unit for 'openai/gpt-oss-20b': 'tpn' \(did you mean 'tpm'"),
    "project key": (BASE.replace('description = "bulk enrichment jobs"', 'descripton = "x"'),
                    r":20: projects.etl.descripton: unknown key 'descripton' \(did you mean 'description'\?"),
    "compare value": (BASE.replace('project_quotas = [false, true]', 'service_tier = ["flex", "batch"]'),
                      r":48: compare.service_tier: 'batch': Input should be 'on_demand', 'flex' or 'auto'$"),
    "flex": (BASE.replace('tier = "developer"', 'tier = "developer"\nflex = { multiplier = 0 }'),
             r"org.flex.multiplier: 0: must be > 0$"),
    # flex (and auto) are for paid plans: not on a tier that bills nothing, wherever the tier is asked for
    "flex on free": (BASE.replace('tier = "developer"', 'tier = "free"\nservice_tier = "auto"'),
                     r":15: org.service_tier: service tier 'auto' is for paid plans, and tier 'free' bills nothing: "
                     r"use a billed tier \(developer, or one of \[tiers\] with billed = true\) or 'on_demand'$"),
    "client flex on free": (BASE.replace('tier = "developer"', 'tier = "free"').replace(
        'policy = "exponential"', 'policy = "exponential"\nservice_tier = "flex"'),
        r"clients\[1\].service_tier: service tier 'flex' is for paid plans, and tier 'free' bills nothing"),
    "compared flex on free": (NIGHTLY.read_text().replace('tier = "developer"', 'tier = "free"'),
                              r"compare.service_tier: service tier 'flex' is for paid plans, and tier 'free'"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_lane_settings_are_precise_errors(case, tmp_path):
    text, pattern = BAD[case]
    path = tmp_path / "s.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=pattern):
        sim.load_scenario(path)


def test_projects_scenario_quota_protects_the_latency_sensitive_project():
    """Without the quota the ETL bursts take the org's TPM and the assistant sees 429s; with it the
    assistant is served in full while the ETL is held to its share -- per project, from the records."""
    scenario = sim.load_scenario(NOISY, {"duration": "40m"})
    rows = {}
    for point in scenario.grid():
        result = sim.simulate(scenario.spec(point, duration=2400.0), scenario.seed(0))
        rows[point["project_quotas"]] = breakdown(result, "project").set_index("project")
        s = sim.summarize(result)
        rec = result.records[result.records["created"] >= result.spec.warmup]
        window = rec[rec["created"] < result.spec.duration]
        if not point["project_quotas"]:
            assert s["project_refusals"] == 0
            continue
        # 429s, not requests: a request the quota refused three times counts three
        assert s["project_refusals"] == window["n429_project"].sum() > (window["refused_scope"] == "project").sum()
        assert s["project_refusals"] == s["n429"]  # the quota keeps the ETL under the org's limits
    free, capped = rows[False], rows[True]
    assert capped.loc["support", "success_ratio"] > free.loc["support", "success_ratio"]
    assert capped.loc["support", "n429"] < free.loc["support", "n429"]
    assert capped.loc["etl", "ok"] < free.loc["etl", "ok"]
    for table in (free, capped):  # every request has one outcome, per project
        outcomes = table[list(sim.OUTCOMES[1:])].sum(axis=1) + table["ok"]
        assert (outcomes == table["offered"]).all()


def test_nightly_scenario_compares_on_demand_flex_and_batch():
    scenario = sim.load_scenario(NIGHTLY)
    assert scenario.grid() == [{"lane": "on_demand", "service_tier": "on_demand"},
                               {"lane": "on_demand", "service_tier": "flex"},
                               {"lane": "batch", "service_tier": "on_demand"},
                               {"lane": "batch", "service_tier": "flex"}]
    out = {}
    for point in scenario.grid():
        spec = scenario.spec(point, duration=600.0)
        out[(point["lane"], point["service_tier"])] = sim.summarize(sim.simulate(spec, scenario.seed(0)))
    on_demand, flex, batch = out[("on_demand", "on_demand")], out[("on_demand", "flex")], out[("batch", "on_demand")]
    assert pd.Series(batch).equals(pd.Series(out[("batch", "flex")]))  # the batch lane ignores the service tier
    assert on_demand["batch_jobs"] == flex["batch_jobs"] == 0 and batch["batch_jobs"] >= 1
    assert on_demand["n498"] == 0 and flex["n498"] > 0
    # the same requests served cost the same on demand and on flex; batch is half price
    per_ok = {k: v["cost_usd"] / v["ok"] for k, v in (("od", on_demand), ("flex", flex), ("batch", batch))}
    assert per_ok["flex"] == pytest.approx(per_ok["od"], rel=0.05)
    assert per_ok["batch"] == pytest.approx(per_ok["od"] / 2, rel=0.05)
    assert flex["done_by"] < on_demand["done_by"]
    # the batch job is handed over at the window's end: every success finishes after it, none counts as
    # throughput; on demand most do (the pacer holds 500 req/min under TPM), flex keeps up
    assert batch["ok"] > 0 and batch["after_window_share"] == 1.0 and batch["throughput_rpm"] == 0.0
    assert on_demand["after_window_share"] > 0.5 and flex["after_window_share"] < 0.01


def test_breakdown_by_lane_and_unknown_column():
    scenario = sim.load_scenario(NIGHTLY)
    result = sim.simulate(scenario.spec({"lane": "batch", "service_tier": "flex"}, duration=300.0), 1)
    table = breakdown(result, "lane")
    assert table["lane"].tolist() == ["batch"] and table["offered"].sum() == len(result.records)
    with pytest.raises(ValueError, match="no column 'team'"):
        breakdown(result, "team")


def test_lane_plots(tmp_path):
    from sim.lane_plots import lane_tables, plot_lanes
    scenario = sim.load_scenario(NIGHTLY, {"replications": 2})
    study = sim.run_study(scenario, tmp_path / "study", jobs=1, duration=300.0, progress=False)
    files = plot_lanes(study, tmp_path)
    assert [f.name for f in files] == ["lanes_cost_time.png", "batch_job_times.png"]
    assert all(f.stat().st_size > 10_000 for f in files)
    tables = lane_tables(study, tmp_path)
    assert [f.name for f in tables] == ["by_project.csv", "by_lane.csv", "by_service_tier.csv"]
    by_tier = pd.read_csv(tmp_path / "by_service_tier.csv")
    assert len(by_tier) == 4 * 2  # four alternatives x two replications, one service tier each
    served = set(by_tier.groupby(["compare.lane", "compare.service_tier", "service_tier"]).size().index)
    assert served == {("on_demand", "on_demand", "on_demand"), ("on_demand", "flex", "flex"),
                      ("batch", "on_demand", "batch"), ("batch", "flex", "batch")}
    assert (by_tier["offered"] == study.summary.sort_values(["point", "replication"])["offered"].to_numpy()).all()
    plain = sim.run_study(sim.load_scenario(ROOT / "scenarios" / "chatbot_free_vs_developer.toml",
                                            {"replications": 1}), jobs=1, duration=60.0, progress=False)
    assert plot_lanes(plain, tmp_path) == [] and lane_tables(plain, tmp_path) == []


def test_routing_an_on_demand_group_changes_nothing():
    """The lane path (a Route on the on-demand limits) admits exactly what the engine's direct path admits,
    for every policy kind, including a pacer and a header-reading client."""
    from helpers import client, run
    from sim.config import Org
    groups = [client(name=p, model="llama-3.1-8b-instant", rate="30/min", policy=p)
              for p in ("groq-sdk", "paced", "adaptive", "cooldown")]
    direct = run(groups, duration=900, seed=3, org=Org(tier="free")).records
    routed = run(groups, duration=900, seed=3, org=Org(tier="free"), lane_report=True).records
    assert "service_tier" in routed and "service_tier" not in direct
    assert routed[direct.columns].equals(direct)


def test_unknown_project_in_a_run_spec():
    from helpers import client, run
    with pytest.raises(ConfigError, match="unknown project of client 'c': 'nope'"):
        run(client(project="nope"), duration=60)


def _live_and_batch(batch_rate: str = "60/min", speed: float = 5.0, live_policy: str = "no-retry") -> dict:
    """An on-demand group and a batch group of 1 100-token requests; the batch lane at ``speed`` tokens/s."""
    size = {"prompt_tokens": 1000, "max_tokens": 200, "completion_tokens": 100}
    return {"scenario": {"duration": "10m", "drain": "1h", "seed": 3, "replications": 2},
            "org": {"tier": "developer", "batch": {"start_median": 0, "start_p95": 0, "speed_median": speed,
                                                   "speed_p05": speed}},
            "clients": [{"name": "live", "model": "openai/gpt-oss-20b", "policy": live_policy,
                         "arrival": {"kind": "constant", "rate": "60/min"}, **size},
                        {"name": "nightly", "lane": "batch", "model": "openai/gpt-oss-20b",
                         "arrival": {"kind": "constant", "rate": batch_rate}, **size,
                         "batch": {"completion_window": "24h"}}],
            "compare": {"project_quotas": [True]}}


def test_the_batch_expired_share_is_of_batch_requests_and_the_outcome_share_of_all():
    """86 400 s x 5 tokens/s / 1 100 tokens: 392 of the 600 batch requests finish in the window, 208 expire.
    The lane metric is 208 / 600; the outcome's share in the comparison 208 / 1 200 (the comparison's
    outcome share had overwritten the lane metric of the same name)."""
    study = sim.run_study(sim.scenario_from_dict(_live_and_batch(), source="<test>"), jobs=1, progress=False)
    row = study.summary.iloc[0]
    assert row["expired"] == 208 and row["offered"] == 1200
    assert row["batch_expired_share"] == pytest.approx(208 / 600)
    comp = study.comparison.iloc[0]
    assert comp["batch_expired_share_mean"] == pytest.approx(208 / 600)
    assert comp["expired_share_mean"] == pytest.approx(208 / 1200)


def test_a_batch_group_leaves_the_on_demand_wait_and_binding_as_they_are():
    """A batch success has no admission (its wait is its job's): the mean wait is the on-demand successes',
    and a pacing client held back by TPM still binds (a batch group made both NaN and 'none')."""
    text = _live_and_batch(batch_rate="1/min", speed=5000.0, live_policy="paced")
    text["clients"][0].update(model="openai/gpt-oss-120b", arrival={"kind": "constant", "rate": "500/min"},
                              prompt_tokens=2500, max_tokens=400, completion_tokens=250)
    text["scenario"].update(drain="12h", replications=1)
    with_batch = sim.simulate(sim.scenario_from_dict(text, source="<test>").spec(), 0)
    text["clients"] = text["clients"][:1]
    alone = sim.simulate(sim.scenario_from_dict(text, source="<test>").spec(), 0)
    got, ref = sim.summarize(with_batch), sim.summarize(alone)
    assert ref["mean_wait"] > 100 and ref["binding"] == "tpm (paced)"
    assert got["mean_wait"] == pytest.approx(ref["mean_wait"])
    assert got["binding"] == "openai/gpt-oss-120b:tpm (paced)"  # (two models: the model is named)


def test_a_batch_panel_of_the_utilisation_figure_says_why_it_is_empty(tmp_path, monkeypatch):
    """The batch lane charges none of the per-model limits: its panel says so, over the run's time axis (it
    was blank, on an axis of 0 to 1)."""
    from matplotlib.figure import Figure

    from sim import report
    drawn = {}
    monkeypatch.setattr(report, "save", lambda fig, path, **kw: drawn.setdefault("fig", fig) and path)
    data = _live_and_batch(speed=5000.0)
    data["compare"] = {"lane": ["on_demand", "batch"]}
    data["clients"] = data["clients"][1:]
    study = sim.run_study(sim.scenario_from_dict(data, source="<test>"), jobs=1, progress=False)
    report.plot_utilisation(study, tmp_path)
    fig: Figure = drawn["fig"]
    on_demand, batch = fig.axes[:2]
    assert on_demand.get_lines() and all("no limit charged" not in t.get_text() for t in on_demand.texts)
    assert [t.get_text() for t in batch.texts] == ["no limit charged here\n(the batch lane uses none of the "
                                                   "per-model limits)"]
    assert batch.get_xlim() == (0.0, 10.0) and batch.get_legend() is None  # minutes of the 10-minute run


def test_the_cost_time_figure_names_each_alternative_by_its_axis_and_reads_its_hours_whole(tmp_path, monkeypatch):
    """A flag axis is named with its value ("project_quotas=True", not "True", as every other figure does), and
    runs done within seconds of each other read as hours, not as an offset ("+2.008") and ten-thousandths."""
    from sim import lane_plots
    drawn = []
    monkeypatch.setattr(lane_plots, "save", lambda fig, path, **kw: drawn.append(fig) or path)
    data = _live_and_batch(speed=5000.0)
    data["clients"] = data["clients"][:1]
    data["compare"] = {"project_quotas": [False, True]}
    study = sim.run_study(sim.scenario_from_dict(data, source="<test>"), jobs=1, progress=False)
    assert "done_by" in study.summary
    lane_plots.plot_lanes(study, tmp_path)
    ax = drawn[0].axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["project_quotas=False", "project_quotas=True"]
    drawn[0].canvas.draw()
    assert ax.xaxis.get_offset_text().get_text() == ""


def test_the_utilisation_figure_says_above_one_once_in_its_title_not_over_the_curves(tmp_path, monkeypatch):
    from sim import report
    drawn = []
    monkeypatch.setattr(report, "save", lambda fig, path, **kw: drawn.append(fig) or path)
    data = _live_and_batch(speed=5000.0)
    data["clients"] = data["clients"][:1]
    data["org"]["tier"] = "free"  # TPM 8 000 against 66 000 tokens a minute
    study = sim.run_study(sim.scenario_from_dict(data, source="<test>"), jobs=1, progress=False)
    report.plot_utilisation(study, tmp_path)
    (util,) = drawn
    assert max(max(line.get_ydata()) for line in util.axes[0].get_lines()) > 1  # a full bucket at the start
    assert "above 1 = more than the limit in one window" in util._suptitle.get_text().replace("\n", " ")
    assert not util.axes[0].texts


@pytest.mark.parametrize("tier, rate, refused", [("developer", "60/min", False), ("free", "120/min", True)])
def test_a_429_panel_without_429s_says_so(tier, rate, refused, tmp_path, monkeypatch):
    from sim import report
    from sim.study import load_refusals
    drawn = []
    monkeypatch.setattr(report, "save", lambda fig, path, **kw: drawn.append(fig) or path)
    data = _live_and_batch(speed=5000.0)
    data["clients"] = data["clients"][:1]
    data["clients"][0]["arrival"]["rate"] = rate
    data["org"]["tier"] = tier
    study = sim.run_study(sim.scenario_from_dict(data, source="<test>"), jobs=1, progress=False)
    assert (len(load_refusals(study, 0, 0)) > 0) == refused
    report.plot_throughput(study, tmp_path)
    assert [t.get_text() for t in drawn[0].axes[1].texts] == ([] if refused else ["no 429s in replication 0"])


@pytest.mark.parametrize("policies", [["no-retry", "fb"], ["no-retry", "fb", "groq-sdk", "fixed"]])
def test_the_utilisation_figure_has_one_legend_a_colour_per_unit_and_a_line_style_per_limit_set(
        policies, tmp_path, monkeypatch):
    """One legend for the figure, each limit of each limit set once (a legend in each panel hid the curves); a
    unit keeps its colour in every panel and the fallback model's limits are drawn dashed (colours taken in
    turn gave the fallback panel's RPM another colour than the others'); the shared y axis reaches the highest
    curve of any panel (set per panel, it froze at the first panels' range and cut the fallback's peaks); with
    an empty place in the grid, the legend sits there, below every panel above it."""
    from sim import report
    drawn = []
    monkeypatch.setattr(report, "save", lambda fig, path, **kw: drawn.append(fig) or path)
    data = {"scenario": {"duration": "4m", "seed": 5, "replications": 1},
            "org": {"tier": "free"},
            "clients": [{"name": "api", "model": "openai/gpt-oss-20b", "prompt_tokens": 50, "max_tokens": 20,
                         "arrival": {"kind": "constant", "rate": "90/min"}, "completion_tokens": 20}],
            "policies": {"fb": {"retry": "groq-sdk", "fallback": ["openai/gpt-oss-120b"]}},
            "compare": {"policy": policies}}
    study = sim.run_study(sim.scenario_from_dict(data, source="<test>"), jobs=1, progress=False)
    report.plot_utilisation(study, tmp_path)
    (fig,) = drawn
    panels = fig.axes
    assert len(panels) == len(policies) and all(ax.get_legend() is None for ax in panels)
    (legend,) = fig.legends
    names = [t.get_text() for t in legend.get_texts()]
    units = ["RPM", "RPD", "TPM", "TPD"]
    assert names == [f"openai/gpt-oss-20b {u}" for u in units] + [f"openai/gpt-oss-120b {u}" for u in units]
    curves = [[line for line in ax.get_lines() if line.get_color() != "k"] for ax in panels]  # (not y = 1)
    assert [len(c) for c in curves] == [4, 8] + [4] * (len(policies) - 2)  # the fallback panel: both limit sets
    colours = [report.UNIT_COLORS[u] for u in units]
    for k, panel in enumerate(curves):
        assert [line.get_color() for line in panel] == colours * (2 if k == 1 else 1)
        assert [line.get_linestyle() for line in panel] == ["-"] * 4 + (["--"] * 4 if k == 1 else [])
    lines = [line for panel in curves for line in panel]
    top = max(max(line.get_ydata()) for line in lines)
    assert top > 1.0 and all(ax.get_ylim()[1] >= top for ax in panels)
    fig.canvas.draw()
    box = legend.get_window_extent()
    if len(policies) == 4:  # two places empty in the second row: the legend is there
        assert box.y1 < min(ax.get_window_extent().y0 for ax in panels[:3])
        assert box.x0 > panels[3].get_window_extent().x1
    else:  # none empty: above the panels, under the title
        assert box.y0 > max(ax.get_window_extent().y1 for ax in panels)
        assert box.y1 < fig._suptitle.get_window_extent().y0
