"""Scenario files and the groqsim command: every shipped scenario runs; bad files give one-line errors."""
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from sim.errors import ConfigError
from sim.scenario import _toml_list, load_scenario

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "scenarios").glob("*.toml"))


def groqsim(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "sim", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def test_there_are_shipped_scenarios():
    assert len(SHIPPED) >= 5


def test_no_shipped_scenario_uses_a_model_groq_shut_down():
    # examples are copied: one on a shut-down model (its trace's models included) teaches a dead end
    warned = {p.name: w for p in SHIPPED if (w := load_scenario(p).notes())}
    assert warned == {}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_scenario_runs_short(path, tmp_path):
    out = tmp_path / "out"
    res = groqsim("run", path, "--duration", "3m", "--replications", "2", "--jobs", "1", "--out", out,
                  "--format", "json", "--quiet")
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)
    scenario = load_scenario(path)
    assert len(rows) == len(scenario.grid())
    for name in ("summary.csv", "comparison.csv", "requests.parquet", "latency_cdf.png",
                 "throughput_over_time.png", "utilisation_over_time.png", "attempts_per_success.png"):
        assert (out / name).stat().st_size > 0, name
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == 2 * len(rows)
    records = pd.read_parquet(out / "requests.parquet")
    assert len(records) == summary["offered"].sum() + _outside_window(records, scenario)
    assert {"point", "replication", "outcome", "latency"} <= set(records.columns)
    comparison = pd.read_csv(out / "comparison.csv")
    assert list(comparison.columns) == list(rows[0].keys())


def _outside_window(records, scenario):
    warm = scenario.scenario.warmup * 180 / scenario.scenario.duration  # --duration scales the warm-up
    return int((records["created"] < warm).sum())


def test_check_prints_the_expanded_grid():
    res = groqsim("check", ROOT / "scenarios" / "chatbot_free_vs_developer.toml")
    assert res.returncode == 0
    assert "6 grid point(s) x 10 replication(s) = 60 run(s)" in res.stdout
    assert "[5] tier=developer, policy=retry-after" in res.stdout


def test_run_table_and_resume(tmp_path):
    path = ROOT / "scenarios" / "chatbot_free_vs_developer.toml"
    args = ("run", path, "--duration", "2m", "--replications", "1", "--jobs", "1", "--out", tmp_path, "--quiet")
    first = groqsim(*args)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines()[0].split()[:3] == ["tier", "policy", "success"]
    lines = first.stdout.splitlines()  # a header, 6 alternatives, and a 2-minute window's late successes
    assert len(lines) == 8 and lines[-1].startswith("* = success includes requests finished after the simulated window")
    stamp = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "runs").glob("*.json")}
    again = groqsim(*args)
    assert again.stdout == first.stdout
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "runs").glob("*.json")} == stamp  # nothing re-run


BAD = {
    "unknown key": ("[scenario]\nduraton = '1h'\n", "scenario.duraton", "did you mean 'duration'"),
    "unknown model": ("", "clients[0].model", "did you mean 'llama-3.3-70b-versatile'"),
    "unknown tier": ("[org]\ntier = 'pro'\n", "org.tier", "unknown tier 'pro'"),
    "negative rate": ("", "clients[0].arrival.rate", "'-5/min'"),
    "bad duration": ("[scenario]\nduration = 'ten minutes'\n", "scenario.duration", "not a duration"),
    "bad axis": ("[compare]\ntiers = ['free']\n", "compare.tiers", "did you mean 'tier'"),
    "bad dist": ("", "clients[0].prompt_tokens", "needs median, p95"),
    "bad enum": ("[org]\nlimiter = 'leaky'\n", "org.limiter", "token_bucket"),
}


def _client(model="llama-3.3-70b-versatile", rate="10/min", prompt="500"):
    return (f"[[clients]]\nname = 'c'\nmodel = '{model}'\narrival = {{ kind = 'poisson', rate = '{rate}' }}\n"
            f"prompt_tokens = {prompt}\n")


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_scenarios_give_one_line_errors(case, tmp_path):
    head, key, fragment = BAD[case]
    body = {"unknown model": _client(model="llama-3.3-70b"), "negative rate": _client(rate="-5/min"),
            "bad dist": _client(prompt="{ dist = 'lognormal', median = 5 }")}.get(case, _client())
    path = tmp_path / "bad.toml"
    path.write_text(head + body)
    res = groqsim("run", path, "--out", tmp_path / "o", "--quiet")
    assert res.returncode == 2
    err = res.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert str(path) in err and key in err and fragment in err, err
    assert not (tmp_path / "o").exists()  # rejected before anything ran
    with pytest.raises(ConfigError):
        load_scenario(path)


def test_error_names_the_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[scenario]\nname = 'x'\n\n[org]\ntier = 'free'\nlimitter = 'token_bucket'\n" + _client())
    res = groqsim("check", path)
    assert res.returncode == 2 and f"{path}:6: org.limitter" in res.stderr


def test_unreadable_and_invalid_toml(tmp_path):
    assert groqsim("check", tmp_path / "missing.toml").returncode == 2
    bad = tmp_path / "x.toml"
    bad.write_text("[scenario\n")
    res = groqsim("check", bad)
    assert res.returncode == 2 and "not valid TOML" in res.stderr


def test_custom_tier_in_scenario(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text("[org]\ntier = 'enterprise'\n[tiers.enterprise]\nbase = 'developer'\nscale = { tpm = 4 }\n"
                    "[tiers.enterprise.overrides.'llama-3.3-70b-versatile']\nrpd = '1M'\n" + _client())
    spec = load_scenario(path).spec()
    lim = spec.catalog.limits("enterprise", "llama-3.3-70b-versatile")
    assert (lim.tpm, lim.rpd, lim.rpm) == (1_200_000, 1_000_000, 1000)


def test_a_custom_tiers_multiplier_is_checked_on_the_models_the_scenario_sends(tmp_path):
    # rpm x 0.04 on Free: 30 -> 1 on gpt-oss-120b (sent), 10 -> 0.4 on playai-tts (never sent: left out)
    path = tmp_path / "t.toml"
    path.write_text("[org]\ntier = 'slow'\n[tiers.slow]\nbase = 'free'\nscale = { rpm = 0.04 }\n"
                    + _client().replace("llama-3.3-70b-versatile", "openai/gpt-oss-120b"))
    spec = load_scenario(path).spec()
    assert spec.catalog.limits("slow", "openai/gpt-oss-120b").rpm == 1
    path.write_text(path.read_text().replace("openai/gpt-oss-120b", "playai-tts"))
    with pytest.raises(ConfigError, match=r"tiers\.slow\.scale\.rpm: playai-tts's 10 x 0\.04 = 0\.4"):
        load_scenario(path).spec()


def test_capacity_command(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[scenario]\nduration = '10m'\n[capacity]\np95 = '5s'\nsuccess = 0.99\n"
                    "[compare]\ntier = ['free', 'developer']\n"
                    + _client(model="llama-3.1-8b-instant", rate="10/min", prompt="200") + "max_tokens = 100\n")
    res = groqsim("capacity", path, "--format", "json")
    assert res.returncode == 0, res.stderr
    free, dev = json.loads(res.stdout)
    # free 8B, 300 tokens/request: RPM 30/min, TPM 6000/300 = 20/min, TPD 500K/300 = 1 667/day = 1.16/min
    assert free["binding"] == "llama-3.1-8b-instant TPD"
    assert free["ceiling_rpm"] == pytest.approx(500_000 / 300 / 1440)
    assert free["minute_binding"] == "llama-3.1-8b-instant TPM" and free["minute_ceiling_rpm"] == pytest.approx(20.0)
    assert free["daily_ceiling_per_day"] == pytest.approx(500_000 / 300)
    assert free["ceilings_rpm"]["llama-3.1-8b-instant RPM"] == pytest.approx(30.0)
    # developer 8B: RPM 1000/min, TPM 250K/300 = 833/min, RPD 500K/day
    assert dev["binding"] == "llama-3.1-8b-instant RPD" and dev["minute_ceiling_rpm"] == pytest.approx(250_000 / 300)
    # ten simulated minutes spend TPD's full initial budget: the minute units decide (plus TPM's own
    # initial full bucket, 6000 tokens = 20 requests over 10 minutes = 2/min)
    assert 0.5 * free["minute_ceiling_rpm"] < free["sim_rpm"] <= 1.3 * free["minute_ceiling_rpm"]
    assert dev["sim_rpm"] > 10 * free["sim_rpm"]


def test_capacity_of_a_trace_uses_its_rate_models_and_sizes(tmp_path):
    from sim.capacity import analytic_ceiling
    trace = tmp_path / "t.csv"
    rows = ["timestamp,model,prompt_tokens,max_tokens"]
    rows += [f"{k * 2.0},llama-3.1-8b-instant,100,50" for k in range(30)]  # 30 in the first minute
    rows += [f"{k * 4.0 + 1},llama-3.3-70b-versatile,1000,200" for k in range(15)]
    trace.write_text("\n".join(rows) + "\n")
    path = tmp_path / "s.toml"
    path.write_text("[scenario]\nduration = '60s'\n[[clients]]\nname = 'r'\nmodel = 'llama-3.1-8b-instant'\n"
                    f"arrival = {{ kind = 'trace', file = '{trace}' }}\n")
    c = analytic_ceiling(load_scenario(path))
    assert c.base_rpm == pytest.approx(45.0)
    # free 70B: TPM 12 000 / 1 200 tokens = 10 of its requests a minute; it carries 15 of the 45/min
    assert c.per_unit["llama-3.3-70b-versatile TPM"] == pytest.approx(10 * 45 / 15)
    assert c.per_unit["llama-3.1-8b-instant TPM"] == pytest.approx(6000 / 150 * 45 / 30)


def test_capacity_names_the_models_a_trace_sends_to(tmp_path, capsys):
    from sim.cli import main
    trace = tmp_path / "t.csv"
    rows = ["timestamp,model,prompt_tokens,max_tokens"] + [f"{k},openai/gpt-oss-120b,100,50" for k in range(20)]
    trace.write_text("\n".join(rows) + "\n")  # every row names its model: the group's own is never used
    path = tmp_path / "s.toml"
    path.write_text("[scenario]\nduration = '60s'\nreplications = 1\n[[clients]]\nname = 'r'\n"
                    f"model = 'openai/gpt-oss-20b'\narrival = {{ kind = 'trace', file = '{trace}' }}\n")
    assert main(["capacity", str(path), "--jobs", "1", "--format", "json"]) == 0
    assert [r["model"] for r in json.loads(capsys.readouterr().out)] == ["openai/gpt-oss-120b"]
    trace.write_text("\n".join(rows + ["30,,100,50", "31,allam-2-7b,100,50"]) + "\n")  # an empty cell: the group's
    assert main(["capacity", str(path), "--jobs", "1", "--format", "json"]) == 0
    assert [r["model"] for r in json.loads(capsys.readouterr().out)] == [
        "allam-2-7b, openai/gpt-oss-120b, openai/gpt-oss-20b"]


#: a two-minute, one-replication Developer scenario on gpt-oss-20b, for ``groqsim capacity``; its client's
#: arrival and extra lines and the [capacity] table are the test's
CAPACITY_BASE = ("[scenario]\nduration = '2m'\nreplications = 1\n[org]\ntier = 'developer'\n[[clients]]\n"
                 "name = 'c'\nmodel = 'openai/gpt-oss-20b'\narrival = {arrival}\n{rest}")


def test_capacity_says_when_nothing_offered_can_be_scaled(tmp_path, capsys):
    """A closed loop offers no rate to divide a limit by: the table's ceilings are not figures to trust, and
    the command says so under the table (once), and what its simulated column holds instead."""
    from sim.cli import main
    path = tmp_path / "s.toml"
    path.write_text(CAPACITY_BASE.format(arrival="{ kind = 'closed', users = 2, think = '5s' }",
                                         rest="prompt_tokens = 100\nmax_tokens = 50\n[capacity]\nmax_load = 4\n"))
    assert main(["capacity", str(path), "--jobs", "1", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.count("offered 0 req/min: no open-loop on-demand traffic to scale") == 1
    assert "load x" in out.splitlines()[-2]  # the row's simulated column: a load multiplier
    open_loop = path.read_text().replace("{ kind = 'closed', users = 2, think = '5s' }",
                                         "{ kind = 'poisson', rate = '10/min' }")
    path.write_text(open_loop)
    assert main(["capacity", str(path), "--jobs", "1", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "offered 0 req/min" not in out
    # an open loop's simulated max carries the load it was found at: the headroom, whatever the window saw
    assert main(["capacity", str(path), "--jobs", "1", "--quiet", "--format", "json"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert f"{row['sim_rpm']:.3g} (load x{row['sim_load']:.3g})" in out.splitlines()[-1]


def test_capacity_says_when_no_load_meets_the_target(tmp_path, capsys):
    """A p95 target below the service's own latency is met at no load: the row's simulated max reads 0 with
    nan figures, and a line under the table says why instead of leaving the nans unexplained."""
    from sim.cli import main
    path = tmp_path / "s.toml"
    path.write_text(CAPACITY_BASE.format(arrival="{ kind = 'poisson', rate = '10/min' }",
                                         rest="[capacity]\np95 = '0.01s'\n"))
    assert main(["capacity", str(path), "--jobs", "1", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1].startswith("developer openai/gpt-oss-20b: no load met the target, down to x0.000754 of "
                                           "the traffic")  # (the lowest load tried: a 1024th of the first, x0.772)
    path.write_text(path.read_text().replace("0.01s", "10s"))
    assert main(["capacity", str(path), "--jobs", "1", "--quiet"]) == 0
    assert "no load met the target" not in capsys.readouterr().out


def test_check_states_the_duration_it_was_asked_for(capsys):
    from sim.cli import main
    path = str(ROOT / "scenarios" / "chatbot_free_vs_developer.toml")
    assert main(["check", path]) == 0
    assert "= 60 run(s) of 1h, about 72,000 simulated requests" in capsys.readouterr().out
    assert main(["check", path, "--duration", "2m"]) == 0  # the runs' length and their requests, both of 2 minutes
    assert "= 60 run(s) of 2m, about 2,400 simulated requests" in capsys.readouterr().out


def test_a_duration_override_keeps_the_warmups_share_as_the_command_line_does(tmp_path):
    """``load_scenario(path, {"duration": ...})`` gives the runs ``groqsim run --duration`` gives: the warm-up
    keeps its share of the run (2 m of 1 h -> 20 s of 10 m), and an override shorter than the file's warm-up
    is accepted as on the command line."""
    import sim
    path = ROOT / "scenarios" / "chatbot_free_vs_developer.toml"
    cli = sim.load_scenario(path)
    api = sim.load_scenario(path, {"duration": "10m"})
    assert api.scenario.warmup == cli.spec(duration=600.0).warmup == cli.scenario.warmup * 600 / cli.scenario.duration
    point = cli.grid()[0]
    a = sim.simulate(api.spec(point), api.seed(0)).records
    b = sim.simulate(cli.spec(point, duration=600.0), cli.seed(0)).records
    pd.testing.assert_frame_equal(a, b)
    assert sim.load_scenario(path, {"duration": "90s"}).scenario.warmup == pytest.approx(3.0)
    assert sim.load_scenario(path, {"duration": "90s", "warmup": "10s"}).scenario.warmup == 10.0


def test_a_model_groq_shut_down_is_warned_when_the_api_loads_the_scenario():
    """A notebook user sees the warning ``groqsim run`` prints (as a ShutDownModelWarning, once per load)."""
    import warnings

    from sim.errors import InputWarning, ShutDownModelWarning
    from sim.scenario import scenario_from_dict
    data = {"scenario": {"duration": "10m"}, "org": {"tier": "developer"},
            "clients": [{"name": "c", "model": "llama-3.3-70b-versatile", "arrival": {"kind": "poisson", "rate": 1}}]}
    with pytest.warns(ShutDownModelWarning, match=r"^model 'llama-3.3-70b-versatile' was shut down by Groq on "
                                                  r"2026-08-16") as caught:
        scenario_from_dict(data, source="<test>")
    assert len(caught) == 1 and issubclass(caught[0].category, InputWarning)
    data["clients"][0]["model"] = "openai/gpt-oss-20b"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scenario_from_dict(data, source="<test>")  # a model Groq serves: no warning


@pytest.mark.parametrize("settings, said", [
    ({"retry": "exponential"}, "retry 'exponential' never runs: max_attempts = 1"),
    ({"extends": "full-jitter", "retry": "fixed"}, "jitter 'full' has no effect with retry 'fixed'"),
    ({"extends": "groq-sdk", "jitter": "equal"}, "jitter 'equal' has no effect with retry 'groq-sdk'"),
    ({"extends": "exponential", "retry_after_cap": 30}, "retry_after_cap has no effect without honor_retry_after"),
    ({"extends": "exponential", "delay": 2}, "delay has no effect with retry 'exponential'"),
    ({"extends": "fixed", "cap": 5}, "cap has no effect with retry 'fixed'"),
    ({"extends": "fixed", "base": 1, "cap": 5}, "base and cap have no effect with retry 'fixed'"),
    ({"retry": "none", "fallback": ["openai/gpt-oss-120b"]},
     "fallback model 'openai/gpt-oss-120b' never tried: max_attempts = 1 counts every attempt"),
])
def test_a_setting_that_changes_nothing_is_said_naming_its_policy(settings, said):
    """A setting whose combination makes it inert is a note (the command line) and an InertSettingWarning
    (the Python API), not an error: an ``extends`` brings settings another then overrides."""
    from sim.errors import InertSettingWarning
    from sim.scenario import scenario_from_dict
    data = {"scenario": {"duration": "10m"}, "policies": {"mine": settings},
            "clients": [{"name": "c", "model": "openai/gpt-oss-20b", "arrival": {"kind": "poisson", "rate": 1},
                         "policy": "mine"}]}
    with pytest.warns(InertSettingWarning, match=f"^policies.mine: {said}") as caught:
        sc = scenario_from_dict(data, source="<test>")
    assert len(caught) == 1 and sc.setting_notes() == [f"note: policies.mine: {str(caught[0].message)[15:]}"]


@pytest.mark.parametrize("settings", [
    {"extends": "exponential"}, {"extends": "groq-sdk"}, {"extends": "fixed", "delay": 3},
    {"retry": "none"}, {"extends": "retry-after", "retry_after_cap": 30}, {"extends": "exponential", "cap": 30},
    {"retry": "fixed", "max_attempts": 2, "fallback": ["llama-3.1-8b-instant"]},
])
def test_settings_that_all_act_are_not_noted(settings):
    from sim.scenario import scenario_from_dict
    data = {"scenario": {"duration": "10m"}, "org": {"tier": "developer"}, "policies": {"mine": settings},
            "clients": [{"name": "c", "model": "openai/gpt-oss-20b", "arrival": {"kind": "poisson", "rate": 1},
                         "policy": "mine"}]}
    assert scenario_from_dict(data, source="<test>").setting_notes() == []


#: a scenario whose refund_unused changes nothing (charge = "actual": nothing is reserved)
REFUND_WITHOUT_RESERVATION = (
    "[scenario]\nduration = '2m'\n[org.accounting]\ncharge = 'actual'\nrefund_unused = true\n"
    "[[clients]]\nname = 'c'\nmodel = 'openai/gpt-oss-20b'\narrival = { kind = 'poisson', rate = 1 }\n")


def test_a_refund_with_nothing_reserved_is_noted_unless_the_grid_compares_them(tmp_path):
    body = REFUND_WITHOUT_RESERVATION
    path = tmp_path / "s.toml"
    path.write_text(body)
    assert load_scenario(path).setting_notes() == ['note: org.accounting.refund_unused has no effect with charge = '
                                                   '"actual" (nothing is reserved, so nothing is given back)']
    path.write_text(body.replace("'actual'", "'max_tokens'"))
    assert load_scenario(path).setting_notes() == []  # reserved, so refunded
    path.write_text(body + "[compare]\ncharge = ['actual', 'max_tokens']\n")
    assert load_scenario(path).setting_notes() == []


def test_a_note_is_one_line_on_stderr_and_check_still_passes(tmp_path):
    body = REFUND_WITHOUT_RESERVATION
    path = tmp_path / "s.toml"
    path.write_text(body)
    out = groqsim("check", path)
    assert out.returncode == 0 and out.stderr.count("\n") == 1
    assert out.stderr == ('groqsim: note: org.accounting.refund_unused has no effect with charge = "actual" '
                          "(nothing is reserved, so nothing is given back)\n")


def test_a_batch_lane_groups_policy_is_said_not_to_apply():
    """The batch lane bounds a request by its job's window alone: a policy's retries, pacing, deadline or
    timeout do not apply there, which the shipped nightly comparison (deadline 8 h) is told."""
    notes = load_scenario(ROOT / "scenarios" / "nightly_batch_vs_flex.toml").setting_notes()
    assert notes == ["note: clients.summaries: on the batch lane its policy 'nightly' does not apply (retries, "
                     "pacing, deadline): a batch request is bounded by its job's completion_window alone "
                     "(docs/lanes.md)"]
    from sim.scenario import scenario_from_dict
    data = {"scenario": {"duration": "10m"}, "org": {"tier": "developer"},
            "clients": [{"name": "b", "model": "openai/gpt-oss-20b", "arrival": {"kind": "poisson", "rate": 1},
                         "lane": "batch", "policy": "no-retry"}]}
    assert scenario_from_dict(data, source="<t>").setting_notes() == []  # nothing that would not apply
    data["clients"][0]["lane"] = "on_demand"
    data["policies"] = {"p": {"extends": "groq-sdk"}}
    data["clients"][0]["policy"] = "p"
    assert scenario_from_dict(data, source="<t>").setting_notes() == []  # on demand it all applies


def test_a_batch_submission_that_reads_otherwise_than_it_acts_is_noted():
    """``submit_at`` at or after the run's end puts everything in one submission then (during the drain), and
    ``submit_every`` without ``submit_at`` does nothing: both are said, against the run's own length."""
    from sim.scenario import scenario_from_dict

    def notes(batch, duration=None):
        data = {"scenario": {"duration": "10m"}, "org": {"tier": "developer"},
                "clients": [{"name": "b", "model": "openai/gpt-oss-20b", "arrival": {"kind": "poisson", "rate": 1},
                             "lane": "batch", "batch": batch}]}
        return scenario_from_dict(data, source="<t>").setting_notes(duration)

    assert notes({"submit_at": "2h"}) == ["note: clients.b: batch.submit_at 2h is at or after the end of the run "
                                          "(10m): everything goes in one submission then, while the run drains"]
    assert notes({"submit_at": "10m"})[0].startswith("note: clients.b: batch.submit_at 10m is at or after")
    assert notes({"submit_at": "5m"}) == [] and notes({"submit_at": "2h"}, duration=3 * 3600.0) == []
    assert notes({"submit_every": "1m"}) == ["note: clients.b: batch.submit_every has no effect without "
                                             "submit_at: everything goes in one submission at the end of the run"]
    assert notes({"submit_at": "1m", "submit_every": "1m"}) == []


def _notes(data: dict) -> list[str]:
    from sim.scenario import scenario_from_dict
    return scenario_from_dict({"scenario": {"duration": "10m"}, "org": {"tier": "developer"}, **data},
                              source="<t>").setting_notes()


CHAT_GROUP = {"name": "c", "model": "openai/gpt-oss-20b", "arrival": {"kind": "poisson", "rate": 1}}


@pytest.mark.parametrize("settings", [{"max_attempts": 3}, {"extends": "no-retry", "max_attempts": 3}])
def test_retries_without_a_named_schedule_are_said_to_back_off_exponentially(settings):
    """``retry`` left at 'none' (not written) with max_attempts > 1 retries as documented, with exponential
    back-off: that is said; written as 'none' it is an error (tests/test_cli_errors.py)."""
    from sim.errors import InertSettingWarning
    with pytest.warns(InertSettingWarning, match="policies.p: no retry schedule is named"):
        notes = _notes({"policies": {"p": settings}, "clients": [{**CHAT_GROUP, "policy": "p"}]})
    assert notes == ["note: policies.p: no retry schedule is named (retry 'none'), yet max_attempts = 3: the retries "
                     "back off as retry 'exponential' (base 0.5 s, cap 60 s, jitter 'none'); name the schedule, e.g. "
                     "retry = 'exponential'"]
    assert _notes({"policies": {"p": {"retry": "none", "max_attempts": 1}},
                   "clients": [{**CHAT_GROUP, "policy": "p"}]}) == []


@pytest.mark.filterwarnings("ignore::sim.errors.InertSettingWarning")
def test_a_closed_loop_load_that_is_not_whole_users_is_said():
    """The engine runs max(1, round(users x load)) users: a load below one user is one user (identical rows)."""
    closed = {**CHAT_GROUP, "arrival": {"kind": "closed", "users": 1, "think": "5s"}}
    assert _notes({"clients": [closed], "compare": {"load": [0.1, 0.5, 2.7, 4]}}) == [
        "note: clients.c: a closed loop runs whole users, at least one (users = 1 x load, rounded): load 0.1, 0.5 "
        "run 1 user (the same runs); load 2.7 runs 3 users"]
    assert _notes({"clients": [{**closed, "arrival": {**closed["arrival"], "users": 10}}],
                   "compare": {"load": [0.5, 2]}}) == []  # whole users
    assert _notes({"clients": [closed]}) == []  # no load axis: the users as written


@pytest.mark.filterwarnings("ignore::sim.errors.InertSettingWarning")
@pytest.mark.parametrize("compare, extra, said", [
    ({"flex_multiplier": [2, 10]}, {}, "compare.flex_multiplier: no client group is served on flex"),
    ({"flex_failure": [0.1, 0.9]}, {}, "compare.flex_failure: no client group is served on flex"),
    ({"flex_failure": [0.1, 0.9]}, {"org": {"tier": "developer", "service_tier": "flex", "flex": {"scarce": 0}}},
     "compare.flex_failure: org.flex.scarce = 0"),
    ({"flex_multiplier": [2, 10]}, {"group": {"lane": "batch"}, "org": {"tier": "developer", "service_tier": "flex"}},
     "compare.flex_multiplier: no client group is served on flex"),
    ({"project_quotas": [True, False]}, {}, "compare.project_quotas: no client group belongs to a project with "
     "limits of its own ([projects.NAME]): its values [true, false] give the same runs"),
    ({"service_tier": ["on_demand", "flex"]}, {"group": {"service_tier": "on_demand"}},
     "compare.service_tier: every client group sets its own service_tier"),
    ({"refund_unused": [True, False]}, {"org": {"tier": "developer", "accounting": {"charge": "actual"}}},
     'compare.refund_unused: with charge = "actual" nothing is reserved'),
])
def test_a_compare_axis_that_changes_nothing_is_said(compare, extra, said):
    notes = _notes({"clients": [{**CHAT_GROUP, **extra.get("group", {})}], "compare": compare,
                    **({"org": extra["org"]} if "org" in extra else {})})
    # (org settings the file writes that change nothing are said too: the batch group's org.service_tier)
    batch = extra.get("group", {}).get("lane") == "batch"
    assert len(notes) == 1 + batch and notes[0].startswith(f"note: {said}"), notes
    assert not batch or notes[1].startswith("note: org.service_tier: every client group sets its own"), notes


@pytest.mark.filterwarnings("ignore::sim.errors.InertSettingWarning")
@pytest.mark.parametrize("axis, values", [("limiter", ["token_bucket", "fixed_window"]),
                                          ("refund_unused", [True, False]),
                                          ("retry_after_rounding", ["ceil", "round"]), ("error_rate", [0, 0.3])])
def test_an_axis_of_the_on_demand_limits_is_said_to_change_nothing_when_every_group_is_on_the_batch_lane(axis,
                                                                                                          values):
    """And it does change nothing: both points' records are identical (and not when the group is on demand)."""
    from sim.engine import simulate
    from sim.scenario import scenario_from_dict
    group = {**CHAT_GROUP, "arrival": {"kind": "poisson", "rate": 2}, "max_tokens": 200,
             "completion_tokens": {"dist": "uniform", "low": 1, "high": 200}}
    data = {"scenario": {"duration": "10m"}, "org": {"tier": "free"}, "compare": {axis: values}}
    batch = scenario_from_dict({**data, "clients": [{**group, "lane": "batch"}]}, source="<t>")
    assert batch.setting_notes() == [
        f"note: compare.{axis}: every client group is on the batch lane, which meets none of the org's on-demand "
        f"limits, 429s or injected errors: its values {_toml_list(values)} give the same runs"]
    records = [simulate(batch.spec(k), batch.seed(0)).records for k in range(2)]
    pd.testing.assert_frame_equal(records[0], records[1])
    on_demand = scenario_from_dict({**data, "clients": [{**group, "arrival": {"kind": "poisson", "rate": 5},
                                                         "policy": "retry-after"}]}, source="<t>")
    assert on_demand.setting_notes() == []
    records = [simulate(on_demand.spec(k), on_demand.seed(0)).records for k in range(2)]
    assert not records[0].equals(records[1])


@pytest.mark.filterwarnings("ignore::sim.errors.InertSettingWarning")
@pytest.mark.parametrize("policy, reads", [
    ("no-retry", False), ({"retry": "exponential", "max_attempts": 4}, False),
    ({"retry": "groq-sdk", "max_attempts": 1}, False),  # never retried: its retry-after is never read
    ({"retry": "fixed", "delay": 2, "max_attempts": 4}, False),
    ({"extends": "groq-sdk", "retry_on": [500]}, False),  # retries, but not 429s
    ("groq-sdk", True), ("openai-sdk", True), ("retry-after", True),
    ({"retry": "exponential", "max_attempts": 4, "honor_retry_after": True}, True),
    ({"cooldown": "retry-after"}, True)])
def test_retry_after_rounding_is_said_to_change_nothing_when_no_policy_reads_retry_after(policy, reads):
    """And it does change nothing then (identical records), while with a policy that reads it the records
    differ: the runs are on the Free tier at four times its RPM."""
    from sim.engine import simulate
    from sim.scenario import scenario_from_dict
    policies = {"p": policy} if isinstance(policy, dict) else {}
    group = {**CHAT_GROUP, "arrival": {"kind": "poisson", "rate": 2}, "policy": "p" if policies else policy}
    scenario = scenario_from_dict({"scenario": {"duration": "10m"}, "org": {"tier": "free"}, "policies": policies,
                                   "clients": [group], "compare": {"retry_after_rounding": ["ceil", "round"]}},
                                  source="<t>")
    said = [n for n in scenario.setting_notes() if n.startswith("note: compare.retry_after_rounding")]
    assert said == ([] if reads else [
        "note: compare.retry_after_rounding: no client policy reads a 429's retry-after (a schedule that obeys it, "
        "honor_retry_after, or cooldown = 'retry-after'): its values [\"ceil\", \"round\"] give the same runs"])
    records = [simulate(scenario.spec(k), scenario.seed(0)).records for k in range(2)]
    assert records[0].equals(records[1]) != reads


@pytest.mark.filterwarnings("ignore::sim.errors.InertSettingWarning")
@pytest.mark.parametrize("compare, extra", [
    ({"flex_multiplier": [2, 10]}, {"group": {"service_tier": "flex"}}),
    ({"flex_multiplier": [2, 10], "service_tier": ["on_demand", "auto"]}, {}),
    ({"flex_failure": [0.1, 0.9]}, {"org": {"tier": "developer", "service_tier": "auto"}}),
    ({"project_quotas": [True, False]}, {"group": {"project": "a"},
                                         "projects": {"a": {"limits": {"openai/gpt-oss-20b": {"rpm": 10}}}}}),
    ({"service_tier": ["on_demand", "flex"]}, {}),
    ({"refund_unused": [True, False]}, {}),
    ({"refund_unused": [True, False], "charge": ["actual", "max_tokens"]},
     {"org": {"tier": "developer", "accounting": {"charge": "actual"}}}),
    # a batch group that the lane axis also puts on demand, on flex: the multiplier acts there
    ({"flex_multiplier": [2, 10], "lane": ["batch", "on_demand"]},
     {"group": {"lane": "batch", "service_tier": "flex"}}),
])
def test_a_compare_axis_that_acts_is_not_noted(compare, extra):
    assert _notes({"clients": [{**CHAT_GROUP, **extra.get("group", {})}], "compare": compare,
                   **{k: v for k, v in extra.items() if k != "group"}}) == []


def test_a_run_spec_refuses_a_window_without_time():
    """RunSpec (the Python API) refuses what the scenario loader refuses: warmup >= duration (summaries would
    divide by zero or give -0.0), duration <= 0."""
    from sim.config import Client, arrival, policy_table
    from sim.spec import RunSpec
    clients = [Client(name="c", model="openai/gpt-oss-20b", arrival=arrival(kind="poisson", rate=1.0))]
    for duration, warmup in ((60.0, 60.0), (60.0, 90.0), (0.0, 0.0), (-5.0, 0.0), (60.0, -1.0),
                             (float("nan"), 0.0), (float("inf"), 0.0)):
        with pytest.raises(ValueError, match="RunSpec: (warmup|duration)"):
            RunSpec(clients=clients, policies=policy_table(), duration=duration, warmup=warmup)
    assert RunSpec(clients=clients, policies=policy_table(), duration=60.0, warmup=59.0).warmup == 59.0


def test_checks_request_estimate_for_a_diurnal_window_is_what_a_run_makes(tmp_path, capsys):
    """4 hours of a diurnal day around its peak (60/min, amplitude 0.8, peak 2h): the day's mean rate would say
    14 400 requests a run; the window's mean rate, 60 x (1 + 0.8 x sin(pi/6) / (pi/6)) a minute (the cosine's
    mean over 2h either side of its peak, in a 24h period), about 25 400 -- what the runs make (3 replications,
    within 2 %: the Poisson noise is 0.4 %)."""
    import math
    import re

    from sim.cli import main
    path = tmp_path / "d.toml"
    path.write_text("[scenario]\nduration = '4h'\nseed = 1\nreplications = 3\n[org]\ntier = 'developer'\n"
                    "[[clients]]\nname = 'chat'\nmodel = 'openai/gpt-oss-20b'\n"
                    "arrival = { kind = 'diurnal', rate = '60/min', amplitude = 0.8, peak = '2h' }\n"
                    "prompt_tokens = 20\nmax_tokens = 10\n")
    assert main(["check", str(path)]) == 0
    estimate = int(re.search(r"about ([\d,]+) simulated requests", capsys.readouterr().out).group(1).replace(",", ""))
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--jobs", "1", "--quiet", "--format", "csv"]) == 0
    made = pd.read_parquet(tmp_path / "out" / "requests.parquet").groupby("replication").size()
    assert len(made) == 3 and abs(estimate - made.sum()) <= 0.02 * made.sum(), (estimate, made.tolist())
    assert estimate == round(3 * 240 * 60 * (1 + 0.8 * math.sin(math.pi / 6) / (math.pi / 6)))


@pytest.mark.filterwarnings("ignore::sim.errors.InertSettingWarning")
def test_project_quotas_on_models_no_group_sends_are_said_to_change_nothing(tmp_path):
    """The project's limits are on gpt-oss-120b and its group sends gpt-oss-20b: the axis is inert (said, and
    both points' records are identical); a group that can send the model (its model axis, a fallback, a
    trace whose rows may name it) makes it count."""
    from sim.engine import simulate
    from sim.scenario import scenario_from_dict
    other = "openai/gpt-oss-120b"
    data = {"scenario": {"duration": "10m"}, "org": {"tier": "developer"},
            "projects": {"etl": {"limits": {other: {"rpm": 1}}}},
            "clients": [{**CHAT_GROUP, "project": "etl", "arrival": {"kind": "poisson", "rate": "30/min"}}],
            "compare": {"project_quotas": [False, True]}}
    inert = scenario_from_dict(data, source="<t>")
    assert inert.setting_notes() == [
        "note: compare.project_quotas: no client group's project has limits on a model the group sends (its model, "
        "the model axis, its policies' fallbacks): its values [false, true] give the same runs"]
    pd.testing.assert_frame_equal(*(simulate(inert.spec(k), inert.seed(0)).records for k in range(2)))
    for change in ({"compare": {**data["compare"], "model": [CHAT_GROUP["model"], other]}},
                   {"policies": {"fb": {"extends": "groq-sdk", "fallback": [other]}},
                    "clients": [{**data["clients"][0], "policy": "fb"}]},
                   {"compare": {**data["compare"], "policy": ["no-retry", "fb"]},
                    "policies": {"fb": {"extends": "groq-sdk", "fallback": [other]}}}):
        notes = scenario_from_dict({**data, **change}, source="<t>").setting_notes()
        assert not any("project_quotas" in note for note in notes), (change, notes)
    trace = tmp_path / "t.csv"
    trace.write_text(f"timestamp,model\n1,{other}\n")
    replay = {**data["clients"][0], "arrival": {"kind": "trace", "file": str(trace)}}
    assert not any("project_quotas" in n for n in scenario_from_dict({**data, "clients": [replay]},
                                                                    source="<t>").setting_notes())


@pytest.mark.filterwarnings("ignore::sim.errors.InertSettingWarning")
@pytest.mark.parametrize("group_model, compare, said", [
    ("openai/gpt-oss-20b", {}, "'openai/gpt-oss-20b'"),
    ("openai/gpt-oss-120b", {}, None),
    ("openai/gpt-oss-120b", {"model": ["openai/gpt-oss-120b", "openai/gpt-oss-20b"]}, "'openai/gpt-oss-20b'"),
    ("openai/gpt-oss-20b", {"policy": ["no-retry", "fb"]}, "'openai/gpt-oss-20b'"),
    ("openai/gpt-oss-20b", {"policy": ["no-retry", "groq-sdk"]}, None),
])
def test_a_fallback_to_the_model_the_group_sends_is_said(group_model, compare, said):
    notes = _notes({"policies": {"fb": {"extends": "groq-sdk", "fallback": ["openai/gpt-oss-20b"]}},
                    "clients": [{**CHAT_GROUP, "model": group_model, "policy": "fb"}], "compare": compare})
    own = [n for n in notes if "falls back" in n]
    assert own == ([] if said is None else [
        f"note: clients.c: policy 'fb' falls back to {said}, a model the group itself sends: that hop asks the same "
        "model's limits again at once (an attempt with no back-off), not another model's"])


def test_the_readmes_scenario_example_passes_check_on_a_model_still_served(tmp_path):
    """The README's scenario format is the template users copy: with every commented option left as it is, it
    passes ``check`` and sends to no model Groq shut down."""
    text = (ROOT / "README.md").read_text()
    example = text.split("## Scenario format", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "example.toml"
    path.write_text(example)
    res = groqsim("check", path)
    assert res.returncode == 0, res.stderr
    assert load_scenario(path).notes() == []


def test_a_bad_trace_beside_a_tier_multiplier_is_said_as_a_bad_trace(tmp_path):
    # the multiplier asks which models the scenario sends, which reads the trace: a file that is no trace is
    # then the trace's own error, not one of reading it for the tier
    (tmp_path / "other.toml").write_text("[scenario]\nname = 'x'\n")
    path = tmp_path / "t.toml"
    path.write_text("[org]\ntier = 'slow'\n[tiers.slow]\nbase = 'free'\nscale = { rpm = 0.5 }\n"
                    + _client().replace("{ kind = 'poisson', rate = '10/min' }",
                                        "{ kind = 'trace', file = 'other.toml' }"))
    with pytest.raises(ConfigError, match="'other.toml' is not a trace"):
        load_scenario(path).check()
