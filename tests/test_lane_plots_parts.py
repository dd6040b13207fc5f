"""sim.lane_plots: what the lane figures show, read from the matplotlib figures before they are saved, on a
study built by hand (runs whose done-by times, costs and batch jobs are known), and the lane tables of a small
study.  Styling (sizes, colours, font sizes, grid) is not checked here (docs/testing.md, "The figures")."""
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import sim
from sim import lane_plots
from sim.study import StudyResult

H = 3600.0


def _scenario(labels, warmup: str = "0s"):
    """A scenario comparing ``lane`` (only its compare axes are read: the figures' labels; and its measurement
    window)."""
    return sim.scenario_from_dict({
        "scenario": {"duration": "10m", "warmup": warmup, "replications": 2},
        "org": {"tier": "developer"},
        "clients": [{"name": "nightly", "lane": "batch", "model": "openai/gpt-oss-20b",
                     "arrival": {"kind": "constant", "rate": "1/min"}, "prompt_tokens": 100, "max_tokens": 10,
                     "completion_tokens": 10}],
        "compare": {"lane": ["on_demand", "batch"]}}, source="<test>")


def _records(rows, created: float = 300.0):
    """Request records of one run: (client, job, submitted, finished, outcome) per request, each created at
    ``created`` (inside the measurement window of the 10-minute runs)."""
    return pd.DataFrame(rows, columns=["client", "job", "submitted", "finished", "outcome"]).assign(created=created)


LIVE = _records([("live", -1, 0.0, 1.0, "ok"), ("live", -1, 5.0, 6.0, "ok")])


def _study(runs: dict, labels: list[str]) -> StudyResult:
    """``runs``: (point, replication) -> (done_by s, cost $, batch jobs, records)."""
    summary = pd.DataFrame([{"point": p, "replication": r, "key": f"k{p}-{r}", "done_by": d, "cost_usd": c,
                             "batch_jobs": b} for (p, r), (d, c, b, _) in runs.items()])
    comparison = pd.DataFrame({"point": range(len(labels)), "lane": labels})
    results = {key: SimpleNamespace(records=rec) for key, (*_, rec) in runs.items()}
    return StudyResult(_scenario(labels), summary, comparison, results=results)


def _lane_study() -> StudyResult:
    """Three alternatives listed out of order: ``on_demand`` (no batch job), ``batch`` (two runs of two jobs
    each, the same job numbers in both runs: 4 jobs, completed after 2 h and 0.5 h, then 3 h, the fourth
    expired) and ``flex`` (one job in one run, expired)."""
    batch0 = pd.concat([LIVE, _records([("nightly", 0, 0.0, 3600.0, "ok"), ("nightly", 0, 0.0, 7200.0, "ok"),
                                        ("nightly", 1, 100.0, 1900.0, "ok")])])
    batch1 = _records([("nightly", 0, 0.0, 10800.0, "ok"), ("nightly", 1, 50.0, 600.0, "ok"),
                       ("nightly", 1, 50.0, 86450.0, "expired")])
    flex0 = pd.concat([LIVE, _records([("nightly", 0, 0.0, 86400.0, "expired")])])
    return _study({(2, 0): (9000.0, 0.25, 1, flex0), (2, 1): (9100.0, 0.3, 0, LIVE),
                   (0, 0): (7200.0, 1.0, 0, LIVE), (0, 1): (7300.0, 1.1, 0, LIVE),
                   (1, 0): (18000.0, 0.5, 2, batch0), (1, 1): (21600.0, 0.55, 2, batch1)},
                  ["on_demand", "batch", "flex"])


@pytest.fixture
def drawn(monkeypatch):
    """{file name: figure} of what plot_lanes saves (the figure as drawn, not written)."""
    saved = {}
    monkeypatch.setattr(lane_plots, "save", lambda fig, path, **kw: saved.setdefault(Path(path).name, fig) and path)
    return saved


def test_the_cost_time_figure_has_one_series_per_alternative(tmp_path, drawn):
    files = lane_plots.plot_lanes(_lane_study(), tmp_path)
    assert files == [tmp_path / "lanes_cost_time.png", tmp_path / "batch_job_times.png"]
    ax = drawn["lanes_cost_time.png"].axes[0]
    dots = [c.get_offsets().data.tolist() for c in ax.collections]
    assert dots == [[[2.0, 1.0], [7300 / H, 1.1]], [[5.0, 0.5], [6.0, 0.55]], [[2.5, 0.25], [9100 / H, 0.3]]]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["on_demand", "batch", "flex"]
    assert ax.get_xlabel() == "last success answered (hours from the start)"
    assert ax.get_ylabel() == "cost of the billed requests ($)"
    assert ax.get_title() == "Cost against time to done, one dot per run"
    assert len({c.get_paths()[0].vertices.tobytes() for c in ax.collections}) == 3  # a marker each


def test_the_batch_figure_is_the_completion_time_cdf_of_each_alternatives_jobs(tmp_path, drawn):
    """Jobs are counted per run (job 0 of replication 0 is not job 0 of replication 1); an expired job never
    reaches the top; an alternative whose jobs all expired is in the legend with no line; an alternative
    without batch jobs is not there at all."""
    lane_plots.plot_lanes(_lane_study(), tmp_path)
    ax = drawn["batch_job_times.png"].axes[0]
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["batch (4 jobs, 25% expired)", "flex (1 jobs, 100% expired)"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [line.get_label() for line in lines]
    step, empty = lines
    np.testing.assert_allclose(step.get_xdata(), [0.0, 0.5, 2.0, 3.0], rtol=1e-12)  # hours from submission
    np.testing.assert_allclose(step.get_ydata(), [0.0, 0.25, 0.5, 0.75], rtol=1e-12)
    assert step.get_drawstyle() == "steps-post"
    assert len(empty.get_xdata()) == len(empty.get_ydata()) == 0
    assert ax.get_ylim() == (0.0, 1.0)
    assert ax.get_xlabel() == "job completion time (hours from submission)"
    assert ax.get_ylabel() == "share of jobs completed"
    assert ax.get_title() == "Batch jobs: completion time (expired jobs never reach the top)"


def test_the_batch_figure_counts_the_jobs_of_the_measurement_windows_requests(tmp_path, drawn):
    """As summary.csv's batch_jobs and job times: a job of requests created in the warm-up (before 1 minute) or
    after the run's 10 minutes is not drawn; the jobs of the window's requests are."""
    scenario = _scenario(["on_demand", "batch"], warmup="1m")
    window = _records([("nightly", 0, 0.0, 3600.0, "ok")], created=60.0)
    early = _records([("nightly", 1, 0.0, 7200.0, "ok")], created=59.9)
    late = _records([("nightly", 2, 0.0, 10800.0, "expired")], created=600.0)
    study = _study({(0, 0): (7200.0, 1.0, 0, LIVE), (1, 0): (3600.0, 0.5, 1, pd.concat([window, early, late]))},
                   ["on_demand", "batch"])
    study.scenario = scenario
    lane_plots.plot_lanes(study, tmp_path)
    line, = drawn["batch_job_times.png"].axes[0].get_lines()
    assert line.get_label() == "batch (1 jobs, 0% expired)"
    np.testing.assert_allclose(line.get_xdata(), [0.0, 1.0], rtol=1e-12)


def test_without_batch_jobs_only_the_cost_time_figure(tmp_path, drawn):
    study = _study({(0, 0): (7200.0, 1.0, 0, LIVE), (1, 0): (3600.0, 2.0, 0, LIVE)}, ["on_demand", "flex"])
    assert lane_plots.plot_lanes(study, tmp_path) == [tmp_path / "lanes_cost_time.png"]
    assert list(drawn) == ["lanes_cost_time.png"]


def test_a_study_without_lane_metrics_draws_and_writes_nothing(tmp_path, drawn):
    study = _lane_study()
    study.summary = study.summary.drop(columns="done_by")
    assert lane_plots.plot_lanes(study, tmp_path) == [] and lane_plots.lane_tables(study, tmp_path) == []
    assert drawn == {} and list(tmp_path.iterdir()) == []


def test_runs_done_seconds_apart_read_as_hours_without_an_offset(tmp_path, drawn):
    """7 200 s and 7 202 s: the axis reads 2.0000 ... 2.0005 h, not "+2" in the corner and ten-thousandths."""
    study = _study({(0, 0): (7200.0, 1.0, 0, LIVE), (0, 1): (7202.0, 1.0, 0, LIVE)}, ["on_demand"])
    lane_plots.plot_lanes(study, tmp_path)
    fig = drawn["lanes_cost_time.png"]
    fig.canvas.draw()
    ax = fig.axes[0]
    assert ax.xaxis.get_offset_text().get_text() == ""
    ticks = [float(t.get_text().replace("\u2212", "-")) for t in ax.get_xticklabels() if t.get_text()]
    assert min(ticks) >= 1.999 and max(ticks) <= 2.001


def test_thirteen_alternatives_draw_a_visible_series_each_told_apart(tmp_path, drawn):
    """More alternatives than markers (13, as the shipped retry sweep): every alternative's dots are drawn
    (a positive size) and no two alternatives look alike (marker, size and colour)."""
    labels = [f"alt{k}" for k in range(13)]
    study = _study({(k, 0): (H * (k + 1), float(k), 0, LIVE) for k in range(13)}, labels)
    lane_plots.plot_lanes(study, tmp_path)
    ax = drawn["lanes_cost_time.png"].axes[0]
    assert [c.get_offsets().data.tolist() for c in ax.collections] == [[[k + 1.0, float(k)]] for k in range(13)]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == labels
    assert all(c.get_sizes()[0] > 0 for c in ax.collections)
    looks = {(c.get_paths()[0].vertices.tobytes(), float(c.get_sizes()[0]), tuple(c.get_edgecolor()[0]))
             for c in ax.collections}
    assert len(looks) == 13


def test_twenty_five_alternatives_each_look_their_own_in_both_figures(tmp_path, drawn):
    """Beyond the markers and the colours (25 alternatives, each with a batch job): no two alternatives'
    dots share colour and marker, and no two batch lines share colour and line style."""
    n = 25
    job = _records([("nightly", 0, 0.0, 3600.0, "ok")])
    study = _study({(k, 0): (H * (k + 1), float(k), 1, job) for k in range(n)}, [f"alt{k}" for k in range(n)])
    lane_plots.plot_lanes(study, tmp_path)
    dots = drawn["lanes_cost_time.png"].axes[0].collections
    assert len({(c.get_paths()[0].vertices.tobytes(), tuple(c.get_edgecolor()[0])) for c in dots}) == n
    lines = drawn["batch_job_times.png"].axes[0].get_lines()
    assert len(lines) == n and len({(line.get_color(), line.get_linestyle()) for line in lines}) == n


def test_the_figures_are_written_where_asked(tmp_path):
    files = lane_plots.plot_lanes(_lane_study(), str(tmp_path))
    assert files == [tmp_path / "lanes_cost_time.png", tmp_path / "batch_job_times.png"]
    assert all(f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for f in files)


# ---- the tables ----------------------------------------------------------------------------------------------

def test_the_lane_tables_hold_every_run_and_group(tmp_path):
    """One row per run and group, led by the run's point, its axis values and replication; no index column;
    the requests of each run's groups add up to what the run offered."""
    data = {"scenario": {"duration": "5m", "drain": "2h", "seed": 3, "replications": 2},
            "org": {"tier": "developer", "batch": {"start_median": 0, "start_p95": 0, "speed_median": 5000,
                                                   "speed_p05": 5000}},
            "clients": [{"name": "live", "model": "openai/gpt-oss-20b", "arrival": {"kind": "poisson",
                                                                                     "rate": "20/min"},
                         "prompt_tokens": 100, "max_tokens": 20, "completion_tokens": 10},
                        {"name": "nightly", "model": "openai/gpt-oss-20b", "arrival": {"kind": "constant",
                                                                                        "rate": "10/min"},
                         "prompt_tokens": 100, "max_tokens": 20, "completion_tokens": 10,
                         "batch": {"completion_window": "24h"}}],
            "compare": {"lane": ["on_demand", "batch"]}}
    study = sim.run_study(sim.scenario_from_dict(data, source="<test>"), jobs=1, progress=False)
    files = lane_plots.lane_tables(study, str(tmp_path))
    assert files == [tmp_path / f"by_{by}.csv" for by in ("project", "lane", "service_tier")]
    summary = study.summary.sort_values(["point", "replication"])
    assert summary["offered"].nunique() == 2  # (Poisson arrivals: each replication its own count)
    for by, path in zip(("project", "lane", "service_tier"), files):
        table = pd.read_csv(path)
        assert list(table.columns[:4]) == ["point", "compare.lane", "replication", by]
        runs = table.groupby(["point", "replication"], sort=True)["offered"].sum()
        assert runs.tolist() == summary["offered"].tolist()
        assert sorted(set(zip(table["point"], table["compare.lane"]))) == [(0, "on_demand"), (1, "batch")]
    by_lane = pd.read_csv(files[1])
    assert (by_lane["lane"] == by_lane["compare.lane"]).all() and len(by_lane) == 4


def test_the_lane_tables_bill_timed_out_attempts_as_the_summary_does(tmp_path):
    """With ``[org] accounting.bill_timed_out``, an attempt a client's timeout gave up on is billed: every
    breakdown's cost of a run adds up to the run's summary cost, which holds them (the tables were built from
    the records alone and left them out: 0.0168 against 0.503 $)."""
    data = {"scenario": {"duration": "5m", "seed": 5},
            "org": {"tier": "developer", "accounting": {"bill_timed_out": True}},
            "policies": {"impatient": {"retry": "fixed", "delay": 1.0, "max_attempts": 3, "timeout": "2s"}},
            "clients": [{"name": "c", "model": "openai/gpt-oss-120b", "arrival": {"kind": "constant",
                                                                                   "rate": "30/min"},
                         "prompt_tokens": 1000, "max_tokens": 2000, "completion_tokens": 1500,
                         "policy": "impatient"}],
            "compare": {"service_tier": ["on_demand", "flex"]}}
    study = sim.run_study(sim.scenario_from_dict(data, source="<test>"), jobs=1, progress=False)
    files = lane_plots.lane_tables(study, str(tmp_path))
    cost = study.summary.sort_values("point").set_index("point")["cost_usd"]
    assert (cost > 0.1).all()  # (mostly timed-out attempts: 1 500 tokens at ~500 t/s take longer than 2 s)
    for path in files:
        per_run = pd.read_csv(path).groupby("point")["cost_usd"].sum()
        assert per_run.to_numpy() == pytest.approx(cost.to_numpy(), rel=1e-9), path
