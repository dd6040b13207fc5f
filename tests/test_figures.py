"""The study figures read well: every text drawn inside the figure, no two texts on top of each other, a legend
beside the panels rather than over them, and each figure's own contract (what the utilisation figure draws in
every panel, where its time axes and legend go).  Checked on the figures as they are saved, for grids of 1, 2,
4 and 13 alternatives (one panel; a full row; a row with empty places; the retry-policy sweep)."""
import itertools
import math

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.container import BarContainer

import sim
from sim import figures, report

#: pixels a text may stick out or two texts may touch (anti-aliasing, rounding of extents)
SLACK = 1.0


def _drawn_texts(fig):
    """(renderer, every non-empty text the figure draws): titles, axis labels, annotations, legend entries and
    the labels of the ticks inside each axis's view (matplotlib makes ticks beyond it, and does not draw them)."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    texts = [*fig.texts, *(t for legend in fig.legends for t in legend.get_texts())]
    if fig._suptitle is not None:
        texts.append(fig._suptitle)
    for ax in fig.axes:
        texts += [ax.title, ax._left_title, ax._right_title, *ax.texts]
        if ax.get_legend() is not None:
            texts += ax.get_legend().get_texts()
        for axis, view in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
            lo, hi = sorted(view)
            texts += [axis.label, axis.get_offset_text()]
            for tick in [*axis.get_major_ticks(), *axis.get_minor_ticks()]:
                loc = tick.get_loc()
                if loc is not None and lo - 1e-9 * max(1.0, abs(hi)) <= loc <= hi + 1e-9 * max(1.0, abs(hi)):
                    texts += [tick.label1, tick.label2]
    unique = {id(t): t for t in texts}  # (the suptitle is also one of fig.texts)
    return canvas.get_renderer(), [t for t in unique.values() if t.get_visible() and t.get_text().strip()]


def assert_readable(fig, name: str) -> None:
    """Every text inside the figure; no two overlapping (two rotated tick labels of one axis are compared by
    their anchors' spacing: their upright boxes overlap while the slanted glyphs do not); no two panels
    overlapping; a figure legend on none of the panels."""
    renderer, texts = _drawn_texts(fig)
    page = fig.bbox.padded(SLACK)
    for t in texts:
        box = t.get_window_extent(renderer)
        assert page.contains(box.x0, box.y0) and page.contains(box.x1, box.y1), (
            f"{name}: {t.get_text()!r} sticks out of the figure ({box} in {fig.bbox})")
    for a, b in itertools.combinations(texts, 2):
        if a.get_rotation() % 90 and b.get_rotation() % 90:
            continue  # (slanted labels: their upright boxes overlap by design)
        box_a, box_b = a.get_window_extent(renderer).padded(-SLACK), b.get_window_extent(renderer).padded(-SLACK)
        assert not box_a.overlaps(box_b), f"{name}: {a.get_text()!r} overlaps {b.get_text()!r}"
    panels = [ax for ax in fig.axes if ax.get_visible()]
    for a, b in itertools.combinations(panels, 2):
        assert not a.bbox.padded(-SLACK).overlaps(b.bbox), f"{name}: two panels overlap"
    for legend in fig.legends:
        box = legend.get_window_extent(renderer).padded(-SLACK)
        assert not any(box.overlaps(ax.bbox) for ax in panels), f"{name}: the legend lies on a panel"


def _study(policies: list[str], tier: str = "free"):
    """A 6-minute study of one client group at 90 requests a minute on gpt-oss-20b, one replication per
    policy; ``fb`` falls back to gpt-oss-120b (a second limit set in its panel)."""
    data = {"scenario": {"duration": "6m", "seed": 5, "replications": 1},
            "org": {"tier": tier},
            "clients": [{"name": "api", "model": "openai/gpt-oss-20b", "prompt_tokens": 50, "max_tokens": 20,
                         "arrival": {"kind": "constant", "rate": "90/min"}, "completion_tokens": 20}],
            "policies": {"fb": {"retry": "groq-sdk", "fallback": ["openai/gpt-oss-120b"]}},
            "compare": {"policy": policies} if len(policies) > 1 else {}}
    if len(policies) == 1:
        data["clients"][0]["policy"] = policies[0]
    return sim.run_study(sim.scenario_from_dict(data, source="<test>"), jobs=1, progress=False)


THIRTEEN = ["no-retry", "fixed", "exponential", "full-jitter", "equal-jitter", "decorrelated-jitter", "groq-sdk",
            "retry-after", "paced", "adaptive", "cooldown", "fb", "openai-sdk"]
GRIDS = {1: ["fb"], 2: ["no-retry", "fb"], 4: ["no-retry", "fb", "groq-sdk", "fixed"], 13: THIRTEEN}


@pytest.fixture(scope="module")
def studies():
    """grid size -> its study (run once: the figures are drawn by each test, so that each test runs the drawing
    code it checks)."""
    return {n: _study(policies) for n, policies in GRIDS.items()}


def _keeper(saved: dict):
    """A stand-in for ``save`` that writes and lays out the figure as the command does, and keeps it in
    ``saved`` under its file name."""
    def keep(fig, path, **kw):
        saved[path.name] = fig
        return figures.save(fig, path, **kw)
    return keep


def _draw(study, figure, out) -> dict:
    """{file name: figure} of what ``figure(study, out)`` saved."""
    saved = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(report, "save", _keeper(saved))
        figure(study, out)
    return saved


@pytest.mark.parametrize("n", sorted(GRIDS))
@pytest.mark.parametrize("figure", report.FIGURES, ids=lambda f: f.__name__)
def test_every_study_figure_is_readable(studies, n, figure, tmp_path):
    ((name, fig),) = _draw(studies[n], figure, tmp_path).items()
    assert_readable(fig, f"{name} ({n} alternatives)")


@pytest.mark.parametrize("n", sorted(GRIDS))
def test_the_utilisation_figure_draws_each_panel_whole(studies, n, tmp_path):
    """Each panel: its alternative's name above it; every limit's curve over the whole run (from 0 to the
    run's end on the shared time axis, a visible line); the limit as a dashed black line at 1; a grid; counts
    from 0.  The time axis is numbered and named under each column's last panel only (the others share it), the
    y axis named on the first column only."""
    study = studies[n]
    fig = _draw(study, report.plot_utilisation, tmp_path)["utilisation_over_time.png"]
    panels = fig.axes
    cols = min(n, 3)
    minutes = study.scenario.scenario.duration / 60
    assert [ax.get_title() for ax in panels] == [study.label(p) for p in study.comparison["point"]]
    for k, ax in enumerate(panels):
        curves = [line for line in ax.get_lines() if line.get_color() != "k"]
        (limit,) = [line for line in ax.get_lines() if line.get_color() == "k"]
        assert curves and all(line.get_linewidth() > 0 for line in curves)
        assert all(line.get_xdata()[0] == 0 and line.get_xdata()[-1] == pytest.approx(minutes) for line in curves)
        assert list(limit.get_ydata()) == [1, 1] and limit.get_linestyle() == "--"
        assert all(line.get_visible() for line in ax.get_xgridlines() + ax.get_ygridlines())
        assert ax.get_xlim() == pytest.approx((0, minutes)) and ax.get_ylim()[0] == 0
        assert ax.get_ylim()[1] >= max(max(line.get_ydata()) for line in curves)
        last = k + cols >= n  # nothing below it
        labels = [t for t in ax.get_xticklabels() if t.get_visible() and t.get_text()]
        assert bool(labels) == last and (ax.get_xlabel() == "simulated time (min)") == last, k
        assert (ax.get_ylabel() != "") == (k % cols == 0), k


@pytest.mark.parametrize("n", sorted(GRIDS))
def test_the_utilisation_legend_lists_each_limit_once_beside_the_panels(studies, n, tmp_path):
    """One legend, each limit set's units once; in the last row's empty places when there are some, else above
    the panels under the title, its entries side by side as many as the width holds (two rows for eight
    entries on two panels, one on three)."""
    fig = _draw(studies[n], report.plot_utilisation, tmp_path)["utilisation_over_time.png"]
    (legend,) = fig.legends
    names = [t.get_text() for t in legend.get_texts()]
    assert len(names) == len(set(names)) == 8  # (gpt-oss-20b and the fallback gpt-oss-120b: RPM, RPD, TPM, TPD)
    renderer, _ = _drawn_texts(fig)
    box = legend.get_window_extent(renderer)
    panels = [ax.bbox for ax in fig.axes]
    cols = min(n, 3)
    if n % cols:  # empty places in the last row: the legend is there, right of the last panel, below the others
        assert box.x0 > panels[-1].x1 and box.y1 < min(p.y0 for p in panels[:-(n % cols)])
    else:
        assert box.y0 > max(p.y1 for p in panels) and box.y1 < fig._suptitle.get_window_extent(renderer).y0
        line = legend.get_texts()[0].get_window_extent(renderer).height
        rows = {1: 8, 2: 2, 3: 1}[cols] if n > 1 else 8
        assert box.height < (rows + 1) * line * 1.6


def test_a_legend_of_many_limit_sets_above_one_panel_grows_the_figure_not_into_the_panel(tmp_path):
    """One alternative charging four models' limits: 16 legend entries above a single panel.  The figure was
    3.2 in tall whatever the legend took, the legend needed more than that, and matplotlib refused the margins
    (``bottom cannot be >= top``): ``groqsim run`` ended in a traceback with no figure written."""
    clients = [{"name": m, "model": m, "arrival": {"kind": "poisson", "rate": "10/min"}, "prompt_tokens": 500,
                "max_tokens": 256} for m in ("openai/gpt-oss-120b", "openai/gpt-oss-20b", "allam-2-7b")]
    clients.append({"name": "voice", "model": "whisper-large-v3-turbo", "audio_seconds": 10,
                    "arrival": {"kind": "poisson", "rate": "5/min"}})
    study = sim.run_study(sim.scenario_from_dict({"scenario": {"duration": "5m", "seed": 1}, "org": {"tier": "free"},
                                                  "clients": clients}, source="<test>"), jobs=1, progress=False)
    fig = _draw(study, report.plot_utilisation, tmp_path)["utilisation_over_time.png"]
    assert len(fig.legends[0].get_texts()) == 16  # (3 x RPM, RPD, TPM, TPD; whisper's RPM, RPD, ASH, ASD)
    assert_readable(fig, "four models' limits, one panel")
    (panel,) = fig.axes
    assert panel.get_position().height * fig.get_size_inches()[1] >= report.PANEL_MIN - 1e-9


@pytest.mark.parametrize("tier, above", [("free", True), ("developer", False)])
def test_the_utilisation_title_explains_above_one_only_when_a_curve_goes_above(tier, above, tmp_path, monkeypatch):
    drawn = []
    monkeypatch.setattr(report, "save", lambda fig, path, **kw: drawn.append(fig) or path)
    study = _study(["no-retry", "groq-sdk"], tier=tier)
    report.plot_utilisation(study, tmp_path)
    (fig,) = drawn
    peak = max(max(line.get_ydata()) for ax in fig.axes for line in ax.get_lines() if line.get_color() != "k")
    assert (peak > 1) == above
    assert ("above 1 = more than the limit" in fig._suptitle.get_text().replace("\n", " ")) == above
    assert math.isclose(fig._suptitle.get_fontsize(), 9) == above


@pytest.mark.parametrize("peak, above", [(1.0, False), (1.04, True)])
def test_the_utilisation_title_says_above_one_for_any_curve_above_the_limit(peak, above, studies, tmp_path,
                                                                            monkeypatch):
    """The note is about any excess: a curve at 1.04 gets it, one that reaches the limit exactly does not."""
    def usage(records, spec, times, earlier=None):
        return {"m RPM": np.minimum(times / times[-1] * 2 * peak, peak)}

    monkeypatch.setattr(report, "usage_over_time", usage)
    fig = _draw(studies[2], report.plot_utilisation, tmp_path)["utilisation_over_time.png"]
    assert ("above 1 = more than the limit" in fig._suptitle.get_text().replace("\n", " ")) == above


@pytest.mark.parametrize("n", [1, 2, 4])
def test_the_utilisation_title_is_wrapped_to_the_figure_width_not_narrower(n, studies, tmp_path):
    """A long title breaks where the figure's width ends: on one panel into about three lines, on three
    panels' width into one; each line but the last fills most of the width."""
    fig = _draw(studies[n], report.plot_utilisation, tmp_path)["utilisation_over_time.png"]
    title = fig._suptitle
    lines = title.get_text().split("\n")
    assert "above 1" in title.get_text() and len(lines) == {1: 3, 2: 2, 4: 1}[n]
    renderer, _ = _drawn_texts(fig)
    if len(lines) > 1:
        assert title.get_window_extent(renderer).width > 0.7 * fig.bbox.width


# ---- the other figures' contracts -------------------------------------------------------------------------

@pytest.mark.parametrize("duration, bin_s, unit", [(600, 10, "min"), (601, 60, "min"), (6 * 3600, 60, "min"),
                                                   (6 * 3600 + 1, 300, "h"), (2 * 86400, 300, "h"),
                                                   (2 * 86400 + 1, 900, "h"), (2000 * 900, 900, "h"),
                                                   (2000 * 900 + 1, 1800, "h"), (1e8 * 86400, 4.32e9, "h")])
def test_the_time_axis_reads_in_minutes_up_to_six_hours_then_in_hours(duration, bin_s, unit):
    """Bins of 10 s up to ten minutes, a minute up to six hours, 5 minutes up to two days, 15 beyond, wider by
    quarter hours past 2 000 of them (a run of 10^8 days drew a 71 GiB histogram); the axis in minutes up to six
    hours, then hours."""
    from types import SimpleNamespace
    got = report._time_axis(SimpleNamespace(duration=float(duration), scenario=None))
    assert got == (duration, bin_s, {"min": 60.0, "h": 3600.0}[unit], unit)


def test_the_latency_cdf_draws_each_alternatives_successes_over_every_replication(tmp_path):
    """A line per alternative with successes: the quantiles of its successful requests' latencies over all
    replications at 1 001 levels from 0 to 1, named by the alternative, on a log time axis; an alternative
    with none (every prompt too large for Free's TPM: all 413) draws no line and has no legend entry.  Only
    the requests of the measurement window count, as in the table's percentiles: not the warm-up's."""
    data = {"scenario": {"duration": "4m", "warmup": "1m", "seed": 2, "replications": 2},
            "clients": [{"name": "api", "model": "openai/gpt-oss-20b", "prompt_tokens": 9000, "max_tokens": 20,
                         "arrival": {"kind": "constant", "rate": "6/min"}, "completion_tokens": 20}],
            "compare": {"tier": ["free", "developer"]}}
    study = sim.run_study(sim.scenario_from_dict(data, source="<test>"), jobs=1, progress=False)
    fig = _draw(study, report.plot_latency_cdf, tmp_path)["latency_cdf.png"]
    (ax,) = fig.axes
    rec = study.records(1)
    ok = rec.loc[(rec["outcome"] == "ok") & (rec["created"] >= 60), "latency"].to_numpy()
    assert (study.records(0)["outcome"] == "too_large").all() and len(ok) == 36  # (2 replications x 18)
    assert (rec["outcome"] == "ok").sum() == 48  # (the warm-up's 2 x 6 are left out)
    assert study.comparison["latency_p50_mean"].iloc[1] == pytest.approx(
        np.mean([np.quantile(g.loc[g["created"] >= 60, "latency"], 0.5) for _, g in rec.groupby("replication")]))
    (line,) = ax.get_lines()
    levels = np.linspace(0, 1, 1001)
    assert np.array_equal(line.get_xdata(), np.quantile(ok, levels)) and np.array_equal(line.get_ydata(), levels)
    assert line.get_label() == "developer" and line.get_linewidth() > 0
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["developer"]
    renderer, _ = _drawn_texts(fig)  # the legend beside the axes, on none of the curves, inside the figure
    box = ax.get_legend().get_window_extent(renderer).padded(-SLACK)
    assert not box.overlaps(ax.bbox) and fig.bbox.contains(box.x1, box.y1)
    assert ax.get_xscale() == "log" and "latency" in ax.get_xlabel()
    assert ax.get_ylabel() == "fraction of successful requests" and ax.xaxis.get_gridlines()[0].get_visible()
    assert ax.get_title() == "Latency CDF per alternative (successes of the measurement window, replications pooled)"


def test_the_throughput_figure_counts_completions_and_429s_per_minute(studies, tmp_path):
    """Top: each alternative's completions (replication 0) per minute in 10 s bins, named in the legend;
    bottom: its 429s the same way; both from 0, over the run's time in minutes."""
    study = studies[2]
    fig = _draw(study, report.plot_throughput, tmp_path)["throughput_over_time.png"]
    top, bottom = fig.axes
    edges = np.arange(0, 360 + 10, 10.0)
    for k, p in enumerate(study.comparison["point"]):
        rec = study.records(p, 0)
        done = np.histogram(rec.loc[rec["outcome"] == "ok", "finished"], edges)[0] * 6.0
        refused = np.histogram(sim.study.load_refusals(study, p, 0)["time"], edges)[0] * 6.0
        for ax, counts in ((top, done), (bottom, refused)):
            line = ax.get_lines()[k]
            assert np.array_equal(line.get_xdata(), edges[:-1] / 60) and np.array_equal(line.get_ydata(), counts)
            assert line.get_linewidth() > 0
        assert refused.sum() > 0
    assert [t.get_text() for t in top.get_legend().get_texts()] == [study.label(p) for p in study.comparison["point"]]
    renderer, _ = _drawn_texts(fig)  # the legend beside the panels, on none of their curves
    box = top.get_legend().get_window_extent(renderer).padded(-SLACK)
    assert not box.overlaps(top.bbox) and not box.overlaps(bottom.bbox)
    assert top.get_ylabel() == "completed req/min" and bottom.get_ylabel() == "429s per min"
    assert bottom.get_xlabel() == "simulated time (min)" and top.get_ylim()[0] == bottom.get_ylim()[0] == 0
    assert top.get_title() == "Throughput and 429s over time (replication 0)" and not bottom.texts
    assert top.xaxis.get_gridlines()[0].get_visible() and bottom.yaxis.get_gridlines()[0].get_visible()
    assert not any(t.get_visible() and t.get_text() for t in top.get_xticklabels())  # (shared with the bottom)


def test_the_attempts_figure_draws_each_alternatives_mean_and_interval(studies, tmp_path):
    study = studies[4]
    fig = _draw(study, report.plot_attempts, tmp_path)["attempts_per_success.png"]
    (ax,) = fig.axes
    comp = study.comparison
    assert [bar.get_height() for bar in ax.patches] == list(comp["attempts_per_success_mean"])
    bars = [c for c in ax.containers if isinstance(c, BarContainer)][0]
    errors = bars.errorbar  # (the error bars ``bar(yerr=...)`` drew: vertical segments from mean - ci to mean + ci)
    low = [segment[0][1] for segment in errors.lines[2][0].get_segments()]
    assert low == pytest.approx(list(comp["attempts_per_success_mean"] - comp["attempts_per_success_ci95"].fillna(0)))
    labels = ax.get_xticklabels()
    assert [t.get_text() for t in labels] == [study.label(p) for p in comp["point"]]
    assert all(t.get_rotation() == 30 for t in labels)
    assert ax.get_ylabel() == "attempts per successful request"
    assert ax.get_title() == "Attempts per success (mean, 95% CI)" and ax.yaxis.get_gridlines()[0].get_visible()


@pytest.mark.parametrize("n", [1, 10, 11, 20, 25])
def test_alternatives_get_distinct_styles_and_markers_placed_apart(n):
    """Every alternative its own colour and line style (ten colours up to ten alternatives, twenty beyond, then
    the line style changes), marker, and marker offset: identical curves still show both."""
    import matplotlib
    styles = figures.line_styles(n)
    assert len({(s["color"], s["linestyle"]) for s in styles}) == n
    palette = matplotlib.colormaps["tab10" if n <= 10 else "tab20"].colors
    assert [s["color"] for s in styles[:min(n, len(palette))]] == list(palette[:min(n, len(palette))])
    assert [s["linestyle"] for s in styles] == [["-", "--"][k // len(palette)] for k in range(n)]
    marked = [report._marked(s, k, 1001, n) for k, s in enumerate(styles)]
    assert len({m["marker"] for m in marked}) == min(n, 11)
    every = {m["markevery"][1] for m in marked}
    assert every == {125}
    assert len({m["markevery"][0] for m in marked}) == n and all(0 <= m["markevery"][0] < 125 for m in marked)
    assert all(m["markersize"] == 4 for m in marked)
    assert report._marked(styles[0], 0, 5, n)["markevery"] == (0, 1)  # (a run of a few bins: a marker on each)


@pytest.mark.parametrize("n", [1, 10, 11, 20, 21, 25, 40, 60])
def test_alternatives_drawn_as_dots_get_a_colour_and_marker_pair_of_their_own(n):
    """Dots: no two alternatives share both colour and marker, however many; the first ten take matplotlib's
    own colour cycle and the markers in order, as the lane figure always drew them."""
    import matplotlib
    styles = figures.dot_styles(n)
    assert len({(s["color"], s["marker"]) for s in styles}) == n
    palette = matplotlib.colormaps["tab10" if n <= 10 else "tab20"].colors
    assert [s["color"] for s in styles] == [palette[k % len(palette)] for k in range(n)]
    if n <= 10:
        assert "".join(s["marker"] for s in styles) == figures.MARKERS[:n]
    # the alternative that takes a colour again takes the marker after that of the colour's first alternative
    index = [figures.MARKERS.index(s["marker"]) for s in styles]
    assert all((index[k + len(palette)] - index[k]) % len(figures.MARKERS) == 1 for k in range(n - len(palette)))


# ---- the other commands' figures ----------------------------------------------------------------------------

def _saved(monkeypatch, module) -> dict:
    """{file name: figure} of every figure ``module`` saves from now on."""
    saved = {}
    monkeypatch.setattr(module, "save", _keeper(saved))
    return saved


def test_the_lane_figures_are_readable(tmp_path, monkeypatch):
    """``lanes_cost_time.png`` and ``batch_job_times.png`` of a study comparing on-demand and batch lanes."""
    from sim import lane_plots
    from tests.test_lanes import _live_and_batch
    data = _live_and_batch(speed=5000.0)
    data["compare"] = {"lane": ["on_demand", "batch"]}
    data["clients"] = data["clients"][1:]
    study = sim.run_study(sim.scenario_from_dict(data, source="<test>"), jobs=1, progress=False)
    saved = _saved(monkeypatch, lane_plots)
    lane_plots.plot_lanes(study, tmp_path)
    assert set(saved) == {"lanes_cost_time.png", "batch_job_times.png"}
    for name, fig in saved.items():
        assert_readable(fig, name)


def test_the_validation_figure_is_readable(tmp_path, monkeypatch):
    from sim import validation
    saved = _saved(monkeypatch, validation)
    validation.plot_windows_vs_bucket(tmp_path)
    assert_readable(saved["windows_vs_bucket.png"], "windows_vs_bucket.png")


def test_the_calibration_figures_are_readable(tmp_path, monkeypatch):
    """``service_*.png`` and ``header_residuals.png`` of the shipped example log's calibration."""
    from pathlib import Path

    from sim.calibrate import calibrate
    from sim.calibrate import output
    saved = _saved(monkeypatch, output)
    log = Path(__file__).resolve().parents[1] / "scenarios" / "logs" / "example_groq_calls.jsonl"
    output.write_plots(calibrate(log), tmp_path)
    assert "header_residuals.png" in saved and any(name.startswith("service_") for name in saved)
    for name, fig in saved.items():
        assert_readable(fig, name)


def test_the_figures_take_a_str_directory_as_run_study_does(tmp_path):
    """(A notebook passes the ``out`` it gave run_study, a str: it was a TypeError, 'str' / 'str'.)"""
    data = {"scenario": {"duration": "1m", "seed": 2, "replications": 1},
            "clients": [{"name": "api", "model": "openai/gpt-oss-20b",
                         "arrival": {"kind": "constant", "rate": "6/min"}}]}
    study = sim.run_study(sim.scenario_from_dict(data, source="<test>"), jobs=1, progress=False)
    (tmp_path / "figs").mkdir()
    drawn = report.plot_study(study, str(tmp_path / "figs"))
    assert len(drawn) == len(report.FIGURES) and all(p.is_file() and p.parent == tmp_path / "figs" for p in drawn)
    written = report.write_outputs(study, str(tmp_path / "all"))
    assert (tmp_path / "all" / "summary.csv") in written and all(p.is_file() for p in written)
