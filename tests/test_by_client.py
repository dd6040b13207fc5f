"""The per-client-group breakdown: each group's run summary (by hand on a small record), its mean and interval
over replications (by hand), ``by_client.csv`` and the printed section against the records (pandas)."""
import math

import numpy as np
import pandas as pd
import pytest

from sim import RunSpec
from sim.catalog import Catalog, Limits
from sim.cli import main
from sim.config import Client, Org, arrival, policy_table
from sim.groups import client_summaries
from sim.records import OUTCOMES, REFUSED_BY, RunResult
from sim.report import compare
from sim.summary import summarize

#: t quantile 0.975 with 1 degree of freedom
T1 = math.tan(math.pi * 0.475)


def _result() -> RunResult:
    """Window [60, 120): client a offers 3 (2 ok, 1 gave up after 3 429s), b offers 2 (1 ok, 1 too large) and a
    third group, c, none; one request of a before the window."""
    cat = Catalog({"t": {"m": Limits(rpm=10, tpm=1000)}})
    clients = [Client(name=n, model="m", arrival=arrival(kind="poisson", rate=1.0)) for n in ("a", "b", "c")]
    spec = RunSpec(clients=clients, policies=policy_table(), org=Org(tier="t"), catalog=cat, duration=120.0,
                   warmup=60.0)
    client = ["a", "a", "b", "a", "b", "a"]
    outcome = ["ok", "ok", "too_large", "gave_up", "ok", "ok"]
    created = [10.0, 61.0, 62.0, 70.0, 80.0, 119.0]
    finished = [11.0, 63.0, 62.5, 74.0, 84.0, 125.0]  # a's last finishes after the window
    rec = pd.DataFrame({
        "client": pd.Categorical(client, categories=["a", "b", "c"]), "model": pd.Categorical(["m"] * 6),
        "created": created, "finished": finished, "latency": np.subtract(finished, created),
        "admitted": [10.0, 61.0, np.nan, np.nan, 80.0, 119.0],
        "attempts": np.array([1, 2, 1, 3, 1, 1], np.int16), "n429": np.array([0, 1, 0, 3, 0, 0], np.int16),
        "outcome": pd.Categorical(outcome, categories=OUTCOMES),
        "prompt_tokens": [100] * 6, "completion_tokens": [50] * 6, "charged_tokens": [200.0] * 6,
        "audio_seconds": [0.0] * 6,
        "refused_by": pd.Categorical(["", "rpm", "tpm", "rpm", "", ""], categories=REFUSED_BY)})
    refusals = pd.DataFrame({"time": [61.0, 70.0, 71.0, 72.0],
                             "client": pd.Categorical(["a"] * 4, categories=["a", "b", "c"]),
                             "model": pd.Categorical(["m"] * 4), "unit": pd.Categorical(["rpm"] * 4,
                                                                                        categories=REFUSED_BY)})
    return RunResult(rec, refusals, spec)


def test_each_groups_summary_is_its_own_requests():
    rows = client_summaries(_result())
    assert [r["client"] for r in rows] == ["a", "b", "c"]  # scenario order, the group that sent nothing too
    a, b, c = rows
    assert (a["offered"], a["ok"], a["gave_up"]) == (3, 2, 1)
    assert a["success_ratio"] == pytest.approx(2 / 3)
    assert a["n429_per_attempt"] == pytest.approx(4 / 6) and a["attempts_per_success"] == 3.0
    assert a["throughput_rpm"] == 1.0  # one success finished in the 1-minute window, one after it
    assert a["after_window_share"] == 0.5
    assert a["latency_p50"] == pytest.approx(4.0)  # latencies 2 and 6
    assert (b["offered"], b["ok"], b["too_large"], b["success_ratio"]) == (2, 1, 1, 0.5)
    assert b["latency_p95"] == 4.0 and b["n429_per_attempt"] == 0.0
    assert c["offered"] == 0 and math.isnan(c["success_ratio"])
    # the org's limits are no group's: no utilisation, top unit or binding in a group's row
    assert not any(k.startswith("util_") or k in ("binding", "top_unit", "top_util") for k in a)
    whole = summarize(_result())
    assert a["offered"] + b["offered"] + c["offered"] == whole["offered"] == 5


def test_compare_by_client_gives_a_row_per_point_and_group_in_the_order_given():
    # two replications of two points, groups listed b before a (scenario order, not alphabetical)
    frame = pd.DataFrame({
        "point": [1, 1, 0, 0, 1, 1, 0, 0], "tier": ["y", "y", "x", "x", "y", "y", "x", "x"],
        "replication": [0, 0, 0, 0, 1, 1, 1, 1], "client": ["b", "a"] * 4, "offered": [10] * 8,
        "success_ratio": [0.5, 1.0, 0.2, 0.9, 0.7, 1.0, 0.4, 0.9],
        "latency_p95": [1.0, 2.0, 3.0, 4.0, 1.0, 2.0, 3.0, 4.0], "gave_up": [5, 0, 8, 1, 3, 0, 6, 1]})
    comp = compare(frame, ["tier"], by=("client",))
    assert list(zip(comp["point"], comp["tier"], comp["client"])) == [(0, "x", "b"), (0, "x", "a"), (1, "y", "b"),
                                                                       (1, "y", "a")]
    assert list(comp["replications"]) == [2, 2, 2, 2]
    assert comp["success_ratio_mean"].tolist() == pytest.approx([0.3, 0.9, 0.6, 1.0])
    # t(1) x |a - b| / 2
    assert comp["success_ratio_ci95"].tolist() == pytest.approx([T1 * 0.1, 0.0, T1 * 0.1, 0.0])
    assert comp["gave_up_share_mean"].tolist() == pytest.approx([0.7, 0.1, 0.4, 0.0])
    assert "binding" not in comp


SCENARIO = """[scenario]
duration = '5m'
seed = 5
replications = 3
[org]
tier = 'free'
[[clients]]
name = 'steady'
model = 'llama-3.1-8b-instant'
arrival = { kind = 'poisson', rate = '10/min' }
prompt_tokens = 50
max_tokens = 20
[[clients]]
name = 'greedy'
model = 'llama-3.1-8b-instant'
arrival = { kind = 'poisson', rate = '40/min' }
prompt_tokens = 50
max_tokens = 20
[compare]
policy = ['no-retry', 'groq-sdk']
"""


def test_a_multi_group_study_writes_and_prints_each_groups_figures(tmp_path, capsys):
    """by_client.csv against the records (pandas, scipy's t-interval); the printed section, a line per grid
    point and group; the same file with one job and two."""
    from scipy import stats
    path = tmp_path / "s.toml"
    path.write_text(SCENARIO)
    outs = {}
    for jobs in ("1", "2"):
        outs[jobs] = tmp_path / f"out{jobs}"
        assert main(["run", str(path), "--out", str(outs[jobs]), "--jobs", jobs]) == 0
        printed = capsys.readouterr().out
    assert (outs["1"] / "by_client.csv").read_bytes() == (outs["2"] / "by_client.csv").read_bytes()
    table = pd.read_csv(outs["1"] / "by_client.csv")
    assert list(table.columns[:4]) == ["point", "policy", "client", "replications"]  # (no index column)
    rec = pd.read_parquet(outs["1"] / "requests.parquet")
    rec = rec[rec["created"] < 300]
    expected = []
    for (point, client), g in rec.groupby(["point", "client"], sort=False):
        runs = g.groupby("replication")
        success = runs["outcome"].apply(lambda o: (o == "ok").mean()).to_numpy()
        p95 = runs.apply(lambda r: np.percentile(r.loc[r["outcome"] == "ok", "latency"], 95)).to_numpy()
        per_attempt = (runs["n429"].sum() / runs["attempts"].sum()).to_numpy()
        half = stats.t.ppf(0.975, len(success) - 1) * stats.sem(success)
        expected.append((point, client, success.mean(), half, p95.mean(), per_attempt.mean()))
    got = list(zip(table["point"], table["client"], table["success_ratio_mean"], table["success_ratio_ci95"],
                   table["latency_p95_mean"], table["n429_per_attempt_mean"]))
    assert [g[:2] for g in got] == [(0, "steady"), (0, "greedy"), (1, "steady"), (1, "greedy")]
    assert sorted(e[:2] for e in expected) == sorted(g[:2] for g in got)
    for g in got:
        e = next(e for e in expected if e[:2] == g[:2])
        assert g[2:] == pytest.approx(e[2:])
    assert table["policy"].tolist() == ["no-retry", "no-retry", "groq-sdk", "groq-sdk"]
    assert table.loc[table["client"] == "greedy", "success_ratio_mean"].max() < 0.9  # a group worse than the org
    # printed under the table: its header, then a line per grid point and group with the CSV's success
    lines = printed.splitlines()
    at = lines.index("per client group (mean ±95% CI over replications; by_client.csv):")
    assert lines[at + 1].split()[:3] == ["policy", "client", "success"]
    for k, (_, r) in enumerate(table.iterrows()):
        cells = lines[at + 2 + k].split()
        assert cells[:4] == [r["policy"], r["client"], f"{100 * r['success_ratio_mean']:.1f}",
                             f"±{100 * r['success_ratio_ci95']:.1f}"]


def test_the_python_api_gives_the_per_group_table_as_a_frame(tmp_path):
    """``sim.report.client_comparison(study)``: what by_client.csv holds, for an in-memory study (no ``out``) as for
    one written to disk; empty for a scenario of one group."""
    from sim import load_scenario, run_study
    from sim.report import client_comparison
    path = tmp_path / "s.toml"
    path.write_text(SCENARIO)
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--jobs", "1", "--quiet"]) == 0
    frame = client_comparison(run_study(load_scenario(path), jobs=1, progress=False))
    assert list(frame["client"]) == ["steady", "greedy", "steady", "greedy"]
    assert frame.to_csv(index=False) == (tmp_path / "out" / "by_client.csv").read_text()
    one = tmp_path / "one.toml"
    one.write_text(SCENARIO.split("[[clients]]\nname = 'greedy'")[0] + "[compare]\npolicy = ['no-retry']\n")
    assert client_comparison(run_study(load_scenario(one), jobs=1, progress=False)).empty


def test_a_single_group_study_has_no_per_group_table(tmp_path, capsys):
    path = tmp_path / "s.toml"
    path.write_text(SCENARIO.split("[[clients]]\nname = 'greedy'")[0] + "[compare]\npolicy = ['no-retry']\n")
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--jobs", "1"]) == 0
    assert "per client group" not in capsys.readouterr().out
    assert not (out / "by_client.csv").exists()


def test_each_groups_summaries_are_made_by_the_runs_worker_and_a_resumed_older_run_is_read_from_its_files(
        tmp_path, capsys, monkeypatch):
    """The table reads no run's records (its rows come with the runs' summaries, kept in each run's JSON and
    out of summary.csv); a run finished by a version that did not keep them is summarised from its files, to
    the same bytes."""
    import json

    from sim import report
    path = tmp_path / "s.toml"
    path.write_text(SCENARIO)
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--jobs", "1"]) == 0
    first = (out / "by_client.csv").read_bytes()
    assert "by_client" not in pd.read_csv(out / "summary.csv").columns
    runs = sorted((out / "runs").glob("*.json"))
    kept = json.loads(runs[0].read_text())["by_client"]
    assert [g["client"] for g in kept] == ["steady", "greedy"] and {"success_ratio", "latency_p95"} <= kept[0].keys()

    def no_summarising(*args, **kw):
        raise AssertionError("the per-group table summarised a run's records again")
    monkeypatch.setattr(report, "client_summaries", no_summarising)
    assert main(["run", str(path), "--out", str(out), "--jobs", "1"]) == 0  # resumed: every run read back
    assert (out / "by_client.csv").read_bytes() == first
    monkeypatch.undo()
    for f in runs:  # as an earlier version wrote them
        row = json.loads(f.read_text())
        del row["by_client"]
        f.write_text(json.dumps(row))
    assert main(["run", str(path), "--out", str(out), "--jobs", "1"]) == 0
    assert (out / "by_client.csv").read_bytes() == first
    capsys.readouterr()


def test_the_per_group_section_prints_group_and_axis_names_as_written(tmp_path):
    """A group named "NA" or an axis value "None" is a name, not a missing value (pandas reads both as NaN by
    default); each group's project is printed beside it when it is given."""
    from sim.report import format_by_client
    rows = pd.DataFrame({"point": [0, 0], "tier": ["None", "None"], "client": ["NA", "b"], "replications": [2, 2],
                         "success_ratio_mean": [0.5, 1.0], "success_ratio_ci95": [0.1, 0.0]})
    rows.to_csv(tmp_path / "by_client.csv", index=False)
    lines = format_by_client(tmp_path / "by_client.csv", ["tier"], {"NA": "p1", "b": "p2"}).splitlines()
    assert lines[0].startswith("per client group and its project")
    assert [line.split()[:5] for line in lines[2:]] == [["None", "NA", "p1", "50.0", "±10.0"],
                                                        ["None", "b", "p2", "100.0", "±0.0"]]
