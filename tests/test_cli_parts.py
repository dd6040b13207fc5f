"""The ``groqsim`` command's parts, run in-process through ``sim.cli.main``: each subcommand's output (stdout
tables, stderr lines, files), exit statuses (0, 1, 2, 130), the work limits and their exact boundaries, the
options' defaults, empty and negative values, and the handling of Ctrl-C, SIGTERM and a closed pipe."""
import io
import json
import os
import re
import signal
import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest

import sim.capacity
import sim.cli
from sim.cli import _rate, build_parser, main
from sim.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
LOG = ROOT / "scenarios" / "logs" / "example_groq_calls.jsonl"

#: a model Groq still serves (no shut-down note on stderr)
MODEL = "openai/gpt-oss-20b"
CLIENT = ("[[clients]]\nname = '{name}'\nmodel = '" + MODEL + "'\narrival = {{ kind = 'poisson', rate = '{rate}' }}\n"
          "prompt_tokens = 50\nmax_tokens = 20\n")


def _scenario(tmp_path, extra: str = "", head: str = "duration = '1m'\n", rate: str = "10/min",
              name: str = "s.toml", clients: str | None = None) -> Path:
    """A tiny valid scenario (one group, 1 minute, about 10 requests) with ``extra`` tables appended."""
    path = tmp_path / name
    path.write_text("[scenario]\n" + head + (clients if clients is not None else CLIENT.format(name="c", rate=rate))
                    + extra)
    return path


def _err_lines(capsys) -> list[str]:
    return capsys.readouterr().err.splitlines()


def _one_error(capsys, code) -> str:
    """The single stderr line of a refused command (exit status 2)."""
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("groqsim"), err
    return lines[0]


# ---- parsing: usage errors, --help, defaults, empty and out-of-range values


def test_help_exits_0_and_a_usage_mistake_exits_2_with_the_subcommands_name(capsys):
    assert main(["--help"]) == 0
    assert "Capacity simulator for the Groq API's rate limits." in capsys.readouterr().out
    assert main(["run", "--help"]) == 0
    assert "--fresh" in capsys.readouterr().out
    assert main(["run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("groqsim run: error: ") and err.endswith(" (see groqsim run --help)\n"), err


@pytest.mark.parametrize("command", ["trace", "simlog"])
def test_trace_and_simlog_need_an_output_file(command, capsys):
    assert main([command, "x"]) == 2
    err = capsys.readouterr().err
    assert err == (f"groqsim {command}: error: the following arguments are required: -o/--output "
                   f"(see groqsim {command} --help)\n")


def test_the_documented_defaults():
    parse = build_parser().parse_args
    srv = parse(["serve", "s.toml"])
    assert (srv.port, srv.host, srv.time_scale, srv.point, srv.key, srv.seed, srv.out) == (
        8000, "127.0.0.1", 1.0, 0, None, None, None)
    log = parse(["simlog", "s.toml", "-o", "l.jsonl"])
    assert (log.point, log.seed, log.duration, log.force) == (0, None, None, False)
    run = parse(["run", "s.toml"])
    assert (run.format, run.jobs, run.fresh, run.quiet, run.force, run.dask, run.out) == (
        "table", None, False, False, False, None, None)
    assert parse(["limits"]).format == "table" and parse(["capacity", "s.toml"]).format == "table"


@pytest.mark.parametrize("argv, said", [
    (["limits", "--file", ""], "--file '': empty (allowed: a path, or leave the option out)"),
    (["run", "s.toml", "--dask", " "], "--dask ' ': empty (allowed: a scheduler address, e.g. tcp://host:8786, "
                                       "or local, or leave the option out)"),
    (["simlog", "s.toml", "-o", "  "], "--output '  ': empty (allowed: a path)"),
    (["calibrate", "log.jsonl", "--out", ""], "--out '': empty (allowed: a path, or leave the option out)"),
])
def test_an_empty_path_or_name_is_refused_before_anything_is_read(argv, said, capsys):
    assert main(argv) == 2
    assert capsys.readouterr().err == f"groqsim: error: {said}\n"


@pytest.mark.parametrize("argv, said", [
    (["run", "s.toml", "--jobs", "0"], "--jobs must be >= 1, got 0"),
    (["run", "s.toml", "--jobs=-3"], "--jobs must be >= 1, got -3"),
    (["capacity", "s.toml", "--replications", "0"], "--replications must be >= 1, got 0"),
    (["validate", "--jobs", "0"], "--jobs must be >= 1, got 0"),
    (["check", "s.toml", "--seed=-1"], "--seed must be >= 0, got -1"),
    (["simlog", "s.toml", "-o", "l.jsonl", "--seed=-7"], "--seed must be >= 0, got -7"),
])
def test_counts_below_their_minimum_are_refused_naming_the_option(argv, said, capsys):
    assert main(argv) == 2
    assert capsys.readouterr().err == f"groqsim: error: {said}\n"


def test_the_smallest_allowed_counts_are_accepted(tmp_path, checks, capsys):
    path = _scenario(tmp_path)
    assert main(["check", str(path), "--seed", "0", "--replications", "1"]) == 0
    assert main(["validate", "--jobs", "1"]) == 0
    capsys.readouterr()


def test_duration_boundaries(tmp_path, capsys):
    """Any duration > 0 is a duration, below a second too; 0 and negative ones are refused naming --duration."""
    path = _scenario(tmp_path)
    assert main(["check", str(path), "--duration", "500ms"]) == 0
    assert " run(s) of 0.5s, about 0 simulated requests" in capsys.readouterr().out
    assert main(["check", str(path), "--duration", "1s"]) == 0
    assert " run(s) of 1s," in capsys.readouterr().out
    assert _one_error(capsys, main(["check", str(path), "--duration", "0s"])) == (
        "groqsim: error: --duration '0s': must be > 0 (e.g. 90s, 15m, 1d)")
    assert _one_error(capsys, main(["check", str(path), "--duration=-1m"])) == (
        "groqsim: error: --duration '-1m': not a duration (allowed: > 0, e.g. 90s, 15m, 1d)")
    # written with a space, as the other options are: argparse alone said "expected one argument"
    assert _one_error(capsys, main(["check", str(path), "--duration", "-1m"])) == (
        "groqsim: error: --duration '-1m': not a duration (allowed: > 0, e.g. 90s, 15m, 1d)")
    assert _one_error(capsys, main(["check", str(path), "--duration", "-.5h"])) == (
        "groqsim: error: --duration '-.5h': not a duration (allowed: > 0, e.g. 90s, 15m, 1d)")
    assert _one_error(capsys, main(["run", str(path), "--seed", "-3", "--quiet"])) == (
        "groqsim: error: --seed must be >= 0, got -3")
    from sim.cli import _signed_values  # only a value option's next word, and only a number's shape
    assert _signed_values(["run", "f", "--duration", "-5m", "--out", "-5", "--quiet", "-1", "--jobs", "-x"]) == [
        "run", "f", "--duration=-5m", "--out", "-5", "--quiet", "-1", "--jobs", "-x"]
    assert _one_error(capsys, main(["check", str(path), "--duration", "soon"])) == (
        "groqsim: error: --duration 'soon': not a duration (allowed: > 0, e.g. 90s, 15m, 1d)")


# ---- paths


def test_a_path_that_is_not_utf8_is_refused_where_parquet_goes_and_kept_in_text(tmp_path, capsys):
    """Linux lets a name hold any bytes (0xff here, a surrogate in Python's str): pyarrow's writer refuses
    them, so ``run --out`` says so first, in one line, with nothing run; a log with such a name is calibrated,
    its name written escaped (it failed the report, and left an empty calibrated.toml)."""
    out = tmp_path / "o\udcff"
    assert main(["run", str(ROOT / "scenarios/chatbot_free_vs_developer.toml"), "--out", str(out), "--quiet"]) == 2
    shown = str(tmp_path) + "/o\\xff"
    assert capsys.readouterr().err == (f"groqsim: error: --out {shown}: the path is not UTF-8 text (the Parquet writer "
                                       "takes no other; allowed: a directory whose name is UTF-8)\n")
    assert not out.exists()
    log = tmp_path / "log\udcff.jsonl"
    log.write_bytes((ROOT / "scenarios/logs/example_groq_calls.jsonl").read_bytes())
    assert main(["calibrate", str(log), "--no-plots", "--out", str(tmp_path / "c")]) == 0
    assert (tmp_path / "c/calibrated.toml").read_text(encoding="utf-8").startswith(
        f"# groqsim calibrate {tmp_path}/log\\xff.jsonl: ")
    assert f"calibration of {tmp_path}/log\\xff.jsonl: " in (tmp_path / "c/report.txt").read_text(encoding="utf-8")
    assert f"calibration of {tmp_path}/log\\xff.jsonl: " in capsys.readouterr().out  # (a UTF-8 stdout took it)


# ---- limits


def test_limits_from_a_file_in_each_format(tmp_path, capsys):
    csv = tmp_path / "l.csv"
    csv.write_text(f"tier,model,rpm,rpd,tpm,tpd\nmine,{MODEL},5,1K,2K,3K\n")
    assert main(["limits", "--file", str(csv)]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[1].split() == ["mine", MODEL, "5", "1000", "2000", "3000", "-", "-"]
    assert err == ("groqsim: '-' = no published limit of that unit for that model on that tier (nothing "
                   "enforced)\n")
    assert main(["limits", "--file", str(csv), "--format", "csv"]) == 0
    out, err = capsys.readouterr()
    assert out == f"tier,model,rpm,rpd,tpm,tpd,ash,asd\nmine,{MODEL},5,1000,2000,3000,,\n" and err == ""
    assert main(["limits", "--file", str(csv), "--format", "json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == [{"tier": "mine", "model": MODEL, "rpm": 5, "rpd": 1000, "tpm": 2000, "tpd": 3000,
                                "ash": None, "asd": None, "shut_down": None}] and err == ""


def test_limits_mark_the_models_groq_no_longer_serves_on_each_tier(tmp_path, capsys):
    """The limits table (Groq's page, captured before) still lists models Groq has shut down since: the table
    and the JSON say when, per tier (llama-3.1-8b-instant: free and developer only); the CSV keeps its shape."""
    assert main(["limits", "--tier", "free"]) == 0
    out, err = capsys.readouterr()
    lines = {line.split()[1]: line.split()[2:] for line in out.splitlines()[1:]}
    assert out.split()[:9] == ["tier", "model", "rpm", "rpd", "tpm", "tpd", "ash", "asd", "shut_down"]
    assert lines["moonshotai/kimi-k2-instruct"][-1] == "2025-10-10"
    assert lines["llama-3.1-8b-instant"][-1] == "2026-08-16"
    assert lines[MODEL][-1] == "-"  # (its asd: no date after it)
    assert err.endswith("; shut_down = the day Groq stopped serving the model on that tier (a scenario sending "
                        "it is warned)\n")
    csv = tmp_path / "l.csv"
    csv.write_text("tier,model,rpm\nenterprise,llama-3.1-8b-instant,5\nfree,llama-3.1-8b-instant,5\n")
    assert main(["limits", "--file", str(csv), "--format", "json"]) == 0
    assert [r["shut_down"] for r in json.loads(capsys.readouterr().out)] == [None, "2026-08-16"]
    assert main(["limits", "--tier", "free", "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "tier,model,rpm,rpd,tpm,tpd,ash,asd"


def test_limits_without_a_file_are_groqs_published_ones(capsys):
    assert main(["limits", "--tier", "free", "--model", MODEL, "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == [f"free,{MODEL},30,1000,8000,200000,,"]


def test_a_closed_pipe_ends_the_command_quietly(monkeypatch):
    """``groqsim limits | head``: the reader went away; no traceback, exit 0, stderr closed (Python would
    otherwise complain on it at exit)."""
    class Gone(io.StringIO):
        def write(self, text):
            raise BrokenPipeError
    err = io.StringIO()
    monkeypatch.setattr(sys, "stdout", Gone())
    monkeypatch.setattr(sys, "stderr", err)
    assert main(["limits"]) == 0
    assert err.closed


# ---- check


def test_check_prints_the_grid_and_models(tmp_path, capsys, monkeypatch):
    path = _scenario(tmp_path, "[compare]\npolicy = ['no-retry', 'groq-sdk']\ntier = ['free']\n",
                     head="name = 'two'\nduration = '2m'\nreplications = 3\n")
    assert main(["check", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out == (f"{path}: ok: 'two', 2 grid point(s) x 3 replication(s) = 6 run(s) of 2m, about 120 "
                   "simulated requests\n"
                   "  [0] policy=no-retry, tier=free\n  [1] policy=groq-sdk, tier=free\n"
                   f"  models: {MODEL}\n") and err == ""
    assert main(["check", str(path), "--duration", "1m", "--replications", "1"]) == 0
    assert capsys.readouterr().out.startswith(f"{path}: ok: 'two', 2 grid point(s) x 1 replication(s) = 2 run(s) "
                                              "of 1m, about 20 simulated requests\n")
    # valid, but more than `run` does without --force: said by check too (it said "ok" and nothing more)
    monkeypatch.setattr(sim.cli, "MAX_REQUESTS", 100)
    monkeypatch.setattr(sim.cli, "MAX_RUNS", 5)
    assert main(["check", str(path)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        "  note: `groqsim run` refuses this without --force: 6 runs (limit 5), 120 simulated requests (limit 100)")
    assert main(["run", str(path), "--quiet", "--out", str(tmp_path / "o")]) == 2
    assert "more than this command does without --force" in capsys.readouterr().err
    monkeypatch.setattr(sim.cli, "MAX_REQUESTS", 10**9)
    monkeypatch.setattr(sim.cli, "MAX_RUNS", 6)  # at the limit is within it, as for run
    assert main(["check", str(path)]) == 0
    assert "note:" not in capsys.readouterr().out


def test_check_without_compare_axes_and_with_a_shut_down_model(tmp_path, capsys):
    path = _scenario(tmp_path, clients=CLIENT.format(name="c", rate="10/min").replace(MODEL, "llama-3.1-8b-instant"))
    assert main(["check", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[1:] == ["  [0] (no [compare] axes)", "  models: llama-3.1-8b-instant"]
    # said once, by the command (not once more as a Python warning)
    assert err.splitlines() == ["groqsim: warning: model 'llama-3.1-8b-instant' was shut down by Groq on 2026-08-16 "
                                "(free and developer tiers; Enterprise goes on)"]


# ---- run


def test_run_writes_to_results_and_the_scenarios_stem_by_default(tmp_path, monkeypatch, capsys):
    path = _scenario(tmp_path, name="my study.toml")
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(path), "--jobs", "1", "--format", "csv"]) == 0
    out = Path("results") / "my study"
    err = _err_lines(capsys)
    assert err[0] == "groqsim: 1 run(s), about 10 simulated requests"
    assert err[-1].startswith(f"wrote {out / 'summary.csv'}, {out / 'comparison.csv'}, ")
    assert (tmp_path / out / "comparison.csv").is_file() and len(list((tmp_path / out / "runs").glob("*.json"))) == 1


def test_run_prints_the_comparison_in_the_format_asked(tmp_path, capsys):
    path = _scenario(tmp_path, "[compare]\npolicy = ['no-retry', 'groq-sdk']\n", head="name = 'fmt'\nduration = '1m'\n")
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--jobs", "1"]) == 0
    table, err = capsys.readouterr()
    assert table.splitlines()[0].split()[:3] == ["policy", "success", "%"] and len(table.splitlines()) == 3
    assert err.splitlines()[1] == (
        "fmt: 2 alternative(s) x 1 replication(s) of 1m simulated; mean ±95% CI over replications; latencies of "
        "successful requests; binding = the limit that refused most, or whose budget ran out with requests "
        "unfinished, or that a pacing client waited on (none: no limit held anything back)")
    assert main(["run", str(path), "--out", str(out), "--jobs", "1", "--format", "csv"]) == 0
    csv, err = capsys.readouterr()
    assert csv == (out / "comparison.csv").read_text() and "alternative(s)" not in err
    assert main(["run", str(path), "--out", str(out), "--jobs", "1", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["policy"] for r in rows] == ["no-retry", "groq-sdk"]


def test_quiet_leaves_only_the_result(tmp_path, capsys):
    path = _scenario(tmp_path)
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--jobs", "1", "--quiet"]) == 0
    table, err = capsys.readouterr()
    assert err == "" and table.startswith("success %")
    assert main(["run", str(path), "--out", str(out), "--jobs", "1", "--quiet"]) == 0  # resumed: not said either
    assert capsys.readouterr().err == ""


def test_a_second_run_resumes_and_fresh_runs_again(tmp_path, capsys):
    path = _scenario(tmp_path, head="duration = '1m'\nreplications = 2\n")
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--jobs", "1", "--format", "csv"]) == 0
    first = capsys.readouterr().out
    runs = {f: f.stat().st_mtime_ns for f in (out / "runs").glob("*.json")}
    assert len(runs) == 2
    assert main(["run", str(path), "--out", str(out), "--jobs", "1", "--format", "csv"]) == 0
    again, err = capsys.readouterr()
    assert again == first
    assert (f"groqsim: resumed: 2 of 2 run(s) were already finished in {out / 'runs'} and were read back, not run "
            "again (--fresh runs them all)") in err.splitlines()
    assert {f: f.stat().st_mtime_ns for f in (out / "runs").glob("*.json")} == runs
    assert main(["run", str(path), "--out", str(out), "--jobs", "1", "--format", "csv", "--fresh"]) == 0
    fresh, err = capsys.readouterr()
    assert fresh == first and "groqsim: resumed" not in err  # (the message, not the word: a path may hold it)
    assert all(f.stat().st_mtime_ns != t for f, t in runs.items())


def _interrupt_at(monkeypatch, n):
    """Ctrl-C during the ``n``-th run (counted from 1)."""
    import sim.runner as runner
    real, calls = runner.execute, []

    def execute(*args):
        calls.append(1)
        if len(calls) == n:
            raise KeyboardInterrupt
        return real(*args)
    monkeypatch.setattr(runner, "execute", execute)


def test_an_interrupted_run_keeps_what_finished_and_exits_130(tmp_path, monkeypatch, capsys):
    path = _scenario(tmp_path, head="name = 'cut'\nduration = '1m'\nreplications = 3\n")
    out = tmp_path / "out"
    _interrupt_at(monkeypatch, 3)
    assert main(["run", str(path), "--out", str(out), "--jobs", "1"]) == 130
    table, err = capsys.readouterr()
    assert table.split()[:2] == ["success", "%"]  # the runs that finished are compared all the same
    err = err.splitlines()
    assert err[1].startswith("cut: 1 alternative(s) x at most 3 replication(s) (interrupted: 2 of 3 runs finished, "
                             "so fewer for some) of 1m simulated;")
    assert err[-2].startswith(f"wrote {out / 'summary.csv'}, ")
    assert err[-1] == (f"groqsim: interrupted: 2 run(s) finished and kept in {out}; run the same command again to "
                       "resume")
    assert len(pd.read_csv(out / "summary.csv")) == 2
    monkeypatch.undo()
    assert main(["run", str(path), "--out", str(out), "--jobs", "1", "--format", "csv"]) == 0
    assert ("groqsim: resumed: 2 of 3 run(s) were already finished in "
            f"{out / 'runs'} and were read back, not run again (--fresh runs them all)") in _err_lines(capsys)
    assert len(pd.read_csv(out / "summary.csv")) == 3


def test_a_run_interrupted_before_any_run_finished_exits_130(tmp_path, monkeypatch, capsys):
    path = _scenario(tmp_path)
    out = tmp_path / "out"
    _interrupt_at(monkeypatch, 1)
    assert main(["run", str(path), "--out", str(out), "--jobs", "1", "--quiet"]) == 130
    table, err = capsys.readouterr()
    assert table == "" and err == "groqsim: interrupted before any run finished\n"
    assert not (out / "summary.csv").exists()


def test_a_second_ctrl_c_while_the_study_is_gathered_counts_the_runs_kept(tmp_path, monkeypatch, capsys):
    import sim.runner as runner
    real = runner.run_study

    def gathered_then_stopped(*args, **kw):
        real(*args, **kw)
        raise KeyboardInterrupt
    monkeypatch.setattr(runner, "run_study", gathered_then_stopped)
    path = _scenario(tmp_path, head="duration = '1m'\nreplications = 2\n")
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--jobs", "1", "--quiet"]) == 130
    table, err = capsys.readouterr()
    assert table == "" and err == (f"groqsim: interrupted: 2 run(s) finished and kept in {out}; run the same "
                                   "command again to resume\n")


@pytest.mark.parametrize("where", ["format_comparison", "remove_stale"])
def test_a_second_ctrl_c_while_the_table_is_printed_or_the_files_listed_counts_the_runs_kept(
        tmp_path, monkeypatch, capsys, where):
    """Ctrl-C and ``timeout`` often signal twice: a second signal landing after the study was gathered, while
    its table is printed or its files are listed, still ends on the line that says what was kept (it ended on a
    bare "interrupted", seen under load in the process-group test of test_runner.py)."""
    import sim.report as report

    real, calls = getattr(report, where), []

    def stopped(*args, **kw):  # (the signal lands in the first call; the command's own later calls go on)
        calls.append(args)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return real(*args, **kw)
    monkeypatch.setattr(report, where, stopped)
    path = _scenario(tmp_path, head="duration = '1m'\nreplications = 2\n")
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--jobs", "1"]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"groqsim: interrupted: 2 run(s) finished and kept in {out}; run the same command again to resume"
    assert len(list((out / "runs").glob("*.json"))) == 2


def test_an_output_that_cannot_be_written_is_one_line_and_exit_2_and_the_same_command_then_writes_it(
        tmp_path, capsys):
    """A blocked output file does not stop the others; the runs stay in runs/, so the same command, once the
    path is free, writes it without running them again."""
    path = _scenario(tmp_path, head="duration = '1m'\nreplications = 2\n")
    out = tmp_path / "out"
    (out / "summary.csv").mkdir(parents=True)
    assert main(["run", str(path), "--out", str(out), "--jobs", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"groqsim: error: {out / 'summary.csv'}: cannot write (Is a directory); the other outputs "
                       "were written")
    assert (out / "comparison.csv").is_file() and (out / "latency_cdf.png").is_file()
    assert len(list((out / "runs").glob("*.json"))) == 2
    (out / "summary.csv").rmdir()
    assert main(["run", str(path), "--out", str(out), "--jobs", "1"]) == 0
    assert "resumed: 2 of 2 run(s) were already finished" in capsys.readouterr().err
    assert (out / "summary.csv").is_file()


def test_the_jobs_asked_are_the_pools(tmp_path, monkeypatch, capsys):
    """--jobs, else the scenario's [run] jobs, else one per core (None); the command stopped once it is made."""
    import sim.pool
    sizes = []

    class Recorded(sim.pool.Pool):
        def __init__(self, jobs=None):
            sizes.append(jobs)
            raise KeyboardInterrupt
    monkeypatch.setattr(sim.pool, "Pool", Recorded)
    plain = _scenario(tmp_path)
    pinned = _scenario(tmp_path, "[run]\njobs = 1\n", name="pinned.toml")
    for argv in ([str(plain), "--jobs", "1"], [str(plain)], [str(pinned)], [str(pinned), "--jobs", "2"]):
        assert main(["run", *argv, "--out", str(tmp_path / "out"), "--quiet"]) == 130
    assert capsys.readouterr().err == "groqsim: interrupted\n" * 4
    assert sizes == [1, None, 1, 2]


def test_a_refused_run_leaves_no_directory_it_made_and_keeps_one_that_was_there(tmp_path, capsys):
    path = _scenario(tmp_path)
    new, old = tmp_path / "new" / "deeper", tmp_path / "old"
    old.mkdir()
    for out in (new, old):
        code = main(["run", str(path), "--out", str(out), "--replications", "20001"])
        assert _one_error(capsys, code) == (
            f"groqsim: error: {path}: 20,001 run(s), about 200,010 simulated requests is more than this command does "
            "without --force (limits: 20,000 runs, 50,000,000 requests); lower --replications/--duration or add "
            "--force")
    assert not new.exists() and old.is_dir() and list(old.iterdir()) == []


@pytest.mark.parametrize("limit, runs, requests", [("MAX_RUNS", 2, None), ("MAX_REQUESTS", None, 20)])
def test_the_work_limits_are_inclusive(limit, runs, requests, tmp_path, monkeypatch, capsys):
    """Exactly at a limit runs; one more run (or more requests) is refused, and --force runs it."""
    path = _scenario(tmp_path)  # 10 requests a run
    monkeypatch.setattr(sim.cli, limit, runs or requests)
    out = str(tmp_path / "out")
    assert main(["run", str(path), "--out", out, "--jobs", "1", "--replications", "2", "--format", "csv"]) == 0
    assert _err_lines(capsys)[0] == "groqsim: 2 run(s), about 20 simulated requests"
    argv = ["run", str(path), "--out", out, "--jobs", "1", "--replications", "3", "--format", "csv"]
    assert "is more than this command does without --force" in _one_error(capsys, main(argv))
    assert main([*argv, "--force"]) == 0
    assert _err_lines(capsys)[0] == "groqsim: 3 run(s), about 30 simulated requests"


def test_the_closed_loop_users_of_one_run_are_limited_too(tmp_path, monkeypatch, capsys):
    """Users x load at the grid's heaviest load, summed over the groups (two groups, 2 and 1 users; load 1.5: 3
    and 2 after rounding, 5 in all): exactly at the limit runs, one more is refused, and --force runs it."""
    group = CLIENT.replace("kind = 'poisson', rate = '{rate}'", "kind = 'closed', users = {rate}, think = '30s'")
    path = _scenario(tmp_path, "[compare]\nload = [0.5, 1.5]\n", head="duration = '10s'\n",
                     clients=group.format(name="a", rate=2) + group.format(name="b", rate=1))
    out = str(tmp_path / "out")
    monkeypatch.setattr(sim.cli, "MAX_USERS", 5)
    assert main(["run", str(path), "--out", out, "--jobs", "1", "--quiet", "--format", "csv"]) == 0
    capsys.readouterr()  # (the note that load 0.5 and 1.5 round b's 1 user to 1 and 2)
    monkeypatch.setattr(sim.cli, "MAX_USERS", 4)
    assert _one_error(capsys, main(["run", str(path), "--out", out, "--jobs", "1", "--quiet"])) == (
        f"groqsim: error: {path}: 5 closed-loop users in one run (users x load, summed over the groups) is more than "
        "this command starts without --force (limit 4; each holds about 1 KB of memory); lower arrival.users or add "
        "--force")
    assert main(["run", str(path), "--out", out, "--jobs", "1", "--quiet", "--format", "csv", "--force"]) == 0
    capsys.readouterr()
    # no load axis: the users as written; a load that rounds a group to no user still starts one
    for users, compare, said in ((5, "", 5), (1, "[compare]\nload = [0.2]\n", 1)):
        monkeypatch.setattr(sim.cli, "MAX_USERS", said - 1)
        lone = _scenario(tmp_path, compare, head="duration = '10s'\n", name="lone.toml",
                         clients=group.format(name="a", rate=users))
        assert _one_error(capsys, main(["run", str(lone), "--out", out, "--quiet"])).startswith(
            f"groqsim: error: {lone}: {said} closed-loop users in one run")
    # an open loop has no users: nothing to limit
    monkeypatch.setattr(sim.cli, "MAX_USERS", 0)
    assert main(["run", str(_scenario(tmp_path, name="o.toml")), "--out", str(tmp_path / "o"), "--jobs", "1",
                 "--quiet", "--format", "csv"]) == 0


def test_capacitys_search_is_held_to_the_closed_loop_users_limit_too(tmp_path, monkeypatch, capsys):
    """A closed loop's search starts at max_load: 2 users x 64 = 128 in one run, which ``run`` would refuse
    above the limit; ``capacity`` started them whatever the limit (1.28 million users from 20 000)."""
    group = CLIENT.replace("kind = 'poisson', rate = '{rate}'", "kind = 'closed', users = {rate}, think = '30s'")
    path = _scenario(tmp_path, head="duration = '10s'\n", clients=group.format(name="a", rate=2))
    monkeypatch.setattr(sim.cli, "MAX_USERS", 127)
    assert _one_error(capsys, main(["capacity", str(path), "--jobs", "1", "--quiet"])) == (
        f"groqsim: error: {path}: capacity: the search would simulate load x64, 128 closed-loop users in one run "
        "(users x load, summed over the groups), more than this command starts without --force (127; each holds "
        "about 1 KB of memory); lower [capacity] max_load (64) or add --force")
    monkeypatch.setattr(sim.cli, "MAX_USERS", 128)
    assert main(["capacity", str(path), "--jobs", "1", "--quiet", "--format", "json"]) == 0
    monkeypatch.setattr(sim.cli, "MAX_USERS", 127)
    assert main(["capacity", str(path), "--jobs", "1", "--quiet", "--format", "json", "--force"]) == 0


def test_capacity_takes_its_default_jobs_from_the_scenarios_run_table(tmp_path, monkeypatch, capsys):
    import sim.capacity
    seen = []
    monkeypatch.setattr(sim.capacity, "capacity_table", lambda *a, **kw: seen.append(kw["jobs"]) or [])
    path = _scenario(tmp_path, "[run]\njobs = 3\n")
    for flags, jobs in (([], 3), (["--jobs", "1"], 1)):
        main(["capacity", str(path), "--quiet", "--format", "json", *flags])
        assert seen.pop() == jobs


def test_a_million_users_pass_the_limit_and_one_more_does_not(tmp_path, monkeypatch, capsys):
    """The limit as shipped (stopped just after the check: the million users are not simulated here)."""
    import sim.runner as runner

    def stopped(*args, **kw):
        raise KeyboardInterrupt
    monkeypatch.setattr(runner, "run_study", stopped)
    group = CLIENT.replace("kind = 'poisson', rate = '{rate}'", "kind = 'closed', users = {rate}, think = '1d'")
    for users, code in ((1_000_000, 130), (1_000_001, 2)):
        path = _scenario(tmp_path, head="duration = '10s'\n", clients=group.format(name="a", rate=users))
        assert main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == code
        assert ("closed-loop users" in capsys.readouterr().err) is (code == 2)


def _projects(tmp_path, y: str | None, name="p.toml") -> Path:
    """Groups x (project a) and y (project ``y``, or none) on Developer, which has two projects a and b."""
    text = ("[org]\ntier = 'developer'\n[projects.a]\n[projects.b]\n" + CLIENT.format(name="x", rate="10/min")
            + "project = 'a'\n" + CLIENT.format(name="y", rate="10/min") + (f"project = '{y}'\n" if y else ""))
    return _scenario(tmp_path, clients=text, name=name)


def test_groups_each_in_a_project_of_their_own_print_one_section_naming_both(tmp_path, capsys):
    assert main(["run", str(_projects(tmp_path, "b")), "--out", str(tmp_path / "out"), "--jobs", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "per project (mean over replications; by_project.csv):" not in lines
    at = lines.index("per client group and its project (mean ±95% CI over replications; by_client.csv, "
                     "by_project.csv):")
    assert lines[at + 1].split()[:3] == ["client", "project", "success"]
    assert [line.split()[:2] for line in lines[at + 2:]] == [["x", "a"], ["y", "b"]]


def test_groups_sharing_projects_or_without_one_print_both_sections(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", str(_projects(tmp_path, None)), "--out", str(out), "--jobs", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    at = lines.index("per project (mean over replications; by_project.csv):")
    assert [line.split()[0] for line in lines[at + 1:at + 4]] == ["project", "(no", "a"]
    at = lines.index("per client group (mean ±95% CI over replications; by_client.csv):")
    assert lines[at + 1].split()[:2] == ["client", "success"]
    # the sections are the table format's: csv and json print the comparison alone
    for fmt in ("csv", "json"):
        assert main(["run", str(_projects(tmp_path, None)), "--out", str(out), "--jobs", "1", "--format", fmt]) == 0
        printed = capsys.readouterr().out
        assert "per client group" not in printed and "per project" not in printed
    assert (out / "by_project.csv").is_file() and (out / "by_client.csv").is_file()


def test_an_earlier_studys_files_are_removed_only_once_a_study_completes(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    assert main(["run", str(_projects(tmp_path, "b")), "--out", str(out), "--jobs", "1", "--quiet"]) == 0
    one = _scenario(tmp_path, head="duration = '1m'\nreplications = 2\n")
    _interrupt_at(monkeypatch, 2)
    assert main(["run", str(one), "--out", str(out), "--jobs", "1", "--format", "csv"]) == 130
    assert "removed an earlier study's" not in capsys.readouterr().err and (out / "by_client.csv").is_file()
    monkeypatch.undo()
    assert main(["run", str(one), "--out", str(out), "--jobs", "1", "--format", "csv"]) == 0
    assert _err_lines(capsys)[-1] == ("removed an earlier study's lanes_cost_time.png, by_project.csv, by_lane.csv, "
                                      f"by_service_tier.csv, by_client.csv from {out}")
    assert not (out / "by_client.csv").exists() and (out / "summary.csv").is_file()


# ---- capacity


def _cells(line: str) -> list[str]:
    """A printed table's row, cut at the runs of two spaces or more between its columns."""
    return re.split(r"\s{2,}", line.strip())


def test_capacity_table_with_held_axes_and_a_target_half_written(tmp_path, capsys):
    path = _scenario(tmp_path, "[capacity]\nsuccess = 0.9\n[compare]\ntier = ['free', 'developer']\n"
                               "policy = ['no-retry', 'groq-sdk']\n")
    assert main(["capacity", str(path), "--jobs", "1"]) == 0
    out, err = capsys.readouterr()
    # one search per tier x model (12 loads each) instead of the grid's 4 points: 2 x 12 = 24 runs
    assert err == "groqsim: 24 run(s), about 240 simulated requests at load x1 (the loads the search tries send " \
                  "more or fewer)\n"
    lines = out.splitlines()
    assert lines[0].startswith("target: success >= 90% (of the requests that fit the tier: 413s left out), p95 "
                               "latency <= 10 s (the default target for p95: set yours in [capacity] success / p95) "
                               "over 60 s simulated; ")
    assert lines[1] == "held at the first value of their [compare] axis: policy = no-retry"
    assert lines[2].split()[:5] == ["tier", "model", "offered", "req/min", "ceiling"]
    free, developer = (_cells(line) for line in lines[3:5])
    assert free[:5] == ["free", MODEL, "10", "0.694", f"{MODEL} RPD"] and developer[:3] == ["developer", MODEL, "10"]
    assert developer[7] == "≥ 624 (load x64)" and free[7].endswith(" (load x6.38)") and "≥" not in free[7]
    assert free[8] == "90.8" and developer[8] == "100.0"  # success in %, as `run` prints it (a mean of 0.908)
    # a minute's run spends the day's RPD budget it starts with: both rows read above their long-run ceiling
    assert len(lines) == 7 and [line.split(":")[0] for line in lines[5:]] == [f"free {MODEL}", f"developer {MODEL}"]
    assert all("is above the long-run ceiling" in line for line in lines[5:])


def test_capacity_says_which_targets_are_defaults(tmp_path, capsys):
    for written, said in (("", " (the default target: set yours in [capacity] success / p95)"),
                          ("[capacity]\np95 = 20\nsuccess = 0.9\n", ""),
                          ("[capacity]\np95 = 20\n", " (the default target for success: set yours in [capacity] "
                                                     "success / p95)")):
        path = _scenario(tmp_path, written, head="duration = '20s'\n")
        assert main(["capacity", str(path), "--jobs", "1", "--quiet", "--duration", "30s"]) == 0
        target = capsys.readouterr().out.splitlines()[0]
        p95 = "20" if "p95" in written else "10"
        assert f"p95 latency <= {p95} s{said} over 30 s simulated; ceilings" in target, target


def test_capacity_json_is_the_rows_and_nothing_else(tmp_path, capsys):
    path = _scenario(tmp_path)
    assert main(["capacity", str(path), "--jobs", "1", "--quiet", "--format", "json"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and out.startswith('[\n  {\n    "tier": "free",\n')  # indented by 2
    (row,) = json.loads(out)
    assert (row["tier"], row["model"], row["offered_rpm"]) == ("free", MODEL, 10.0)


def test_capacity_explains_a_target_no_load_meets(tmp_path, capsys):
    big = _scenario(tmp_path, clients=CLIENT.format(name="c", rate="10/min").replace("prompt_tokens = 50",
                                                                                     "prompt_tokens = 90000"))
    assert main(["capacity", str(big), "--jobs", "1", "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    # nothing fits: no ceiling (it read 0.0146 req/min, from the units charged by requests they refuse), and
    # no figure where no load had a success ("-", as `run` prints; it read "nan")
    assert _cells(lines[-2])[3:] == ["0", "none fits (413)", "0 (none fits)", "0 (none fits)", "0 (load x0)",
                                     "-", "-", "-"]
    assert lines[-1] == (f"free {MODEL}: no load met the target: every request of the mix is larger than a unit's "
                         "whole limit of the tier (a 413 at any load), so there is no success ratio to meet: the "
                         "requests must be smaller or the tier's limits larger")
    short = _scenario(tmp_path, head="duration = '10m'\nwarmup = '1m'\n", name="short.toml", clients=CLIENT.format(
        name="c", rate="10/min").replace("prompt_tokens = 50\nmax_tokens = 20\n", ""))  # (answers of ~1 s)
    assert main(["capacity", str(short), "--jobs", "1", "--quiet", "--duration", "1s"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith(  # (--duration keeps the warm-up's share: 0.1 s)
        "e.g. below the service's own latency, or the window (0.9 s after the warm-up) too short for a request to "
        "finish in")
    fast = _scenario(tmp_path, "[capacity]\np95 = 0.01\n", name="fast.toml")
    assert main(["capacity", str(fast), "--jobs", "1", "--quiet"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"free {MODEL}: no load met the target, down to x0.000732 of the traffic: its success or p95 target (p95 <= "
        "0.01 s) is out of reach at any load, e.g. below the service's own latency, or the window (60 s after the "
        "warm-up) too short for a request to finish in")


def test_capacity_says_what_share_of_the_mix_never_fits_the_tier(tmp_path, capsys):
    # half the prompts above Free's TPM (a 413 at any load): "success 100 %" alone read as "Free fits"
    half = _scenario(tmp_path, "[compare]\ntier = ['free', 'developer']\n", clients=CLIENT.format(
        name="c", rate="10/min").replace("prompt_tokens = 50", "prompt_tokens = { dist = 'empirical', values = [50, "
                                         "9000] }"))
    assert main(["capacity", str(half), "--jobs", "1", "--quiet", "--duration", "20s"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[-6:] == ["success", "%", "p95", "s", "$/1k", "ok"]
    notes = [line for line in lines[4:] if "is above the long-run ceiling" not in line]  # (20 s beat the RPDs)
    share = float(notes[0].split(": ")[1].split("%")[0])
    assert 45 < share < 55  # (the mean of the 200 000 sizes drawn for the ceiling)
    assert notes == [f"free {MODEL}: {share:.1f}% of the requests are larger than a unit's whole limit of the "
                     "tier (a 413 at any load): they never succeed there; success counts the others, and the "
                     "ceilings are rates of the whole mix, 413s included"]  # (developer: all fit, no line)
    assert _cells(lines[2])[8] == "100.0"


def test_capacity_says_when_a_short_run_beat_a_ceiling(tmp_path, capsys):
    """RPD 144 (0.1 req/min for ever) against 10 req/min: a minute's run serves them all from the day's budget,
    and its simulated max reads far above the ceiling; a line says why (Developer's RPD ceiling, 347 req/min, is
    beaten too at the search's highest load).  A minute unit's too: RPM 5 starts with 5 requests to spend, and a
    minute's run served 9 a minute (the line blamed a daily budget, and was not said for a minute unit)."""
    daily = _scenario(tmp_path, "[capacity]\np95 = 10\nsuccess = 0.99\n[tiers.small]\nbase = 'developer'\n"
                      f"overrides = {{ '{MODEL}' = {{ rpd = 144 }} }}\n[compare]\ntier = ['small', 'developer']\n")
    assert main(["capacity", str(daily), "--jobs", "1", "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 6, lines
    for row, line in zip(lines[2:4], lines[4:]):
        tier, ceiling, sim_max = _cells(row)[0], _cells(row)[3], _cells(row)[7].split()
        sim_max = sim_max[1] if sim_max[0] == "≥" else sim_max[0]
        assert float(sim_max) > 1.05 * float(ceiling)
        assert line == (f"{tier} {MODEL}: the simulated max ({sim_max} req/min) is above the long-run ceiling "
                        f"({ceiling} req/min, RPD): a limit starts with its whole budget (a token bucket starts full), "
                        "which the 1m simulated spend on top of what refills; day after day the traffic fits only up "
                        "to the ceiling")
    assert _cells(lines[2])[3] == "0.1"
    slow = _scenario(tmp_path, "[capacity]\np95 = 10\nsuccess = 0.99\n[tiers.small]\nbase = 'developer'\n"
                     f"overrides = {{ '{MODEL}' = {{ rpm = 5, rpd = 144000 }} }}\n[org]\ntier = 'small'\n")
    assert main(["capacity", str(slow), "--jobs", "1", "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert _cells(lines[2])[3:5] == ["5", f"{MODEL} RPM"] and len(lines) == 4, lines
    sim_max = _cells(lines[2])[7].split()[0]
    assert float(sim_max) > 1.05 * 5 and lines[3] == (
        f"small {MODEL}: the simulated max ({sim_max} req/min) is above the long-run ceiling (5 req/min, RPM): a "
        "limit starts with its whole budget (a token bucket starts full), which the 1m simulated spend on top of "
        "what refills; day after day the traffic fits only up to the ceiling")
    assert _rate(999.4) == "999" and _rate(1030.4) == "1030" and _rate(0.0444) == "0.0444"
    assert _rate(999.5) == _rate(1000) == "1000" and _rate(999.49) == "999"  # (never 1e+03)


def test_capacity_names_every_unit_a_fallback_chains_ceiling_rests_on(tmp_path, capsys):
    chain = _scenario(tmp_path, "[org]\ntier = 'small'\n[tiers.small]\nbase = 'developer'\noverrides = { "
                      f"'{MODEL}' = {{ rpm = 30 }} }}\n[policies.fb]\nretry = 'groq-sdk'\n"
                      "fallback = ['openai/gpt-oss-120b']\n", clients=CLIENT.format(name="c", rate="45/min")
                      + "policy = 'fb'\n")
    assert main(["capacity", str(chain), "--jobs", "1", "--quiet", "--duration", "20s"]) == 0
    row = capsys.readouterr().out.splitlines()[2]
    assert _cells(row)[3:7] == ["377", f"{MODEL} RPM + openai/gpt-oss-120b RPD", "1030 (RPM)",
                                "1000000 (RPD)"], row


STUCK = ("[scenario]\nduration = '1m'\nreplications = 2\n[service.'openai/gpt-oss-20b']\nrtt_median = 0\n"
         "rtt_p90 = 0\n[[clients]]\nname = 'chat'\nmodel = 'openai/gpt-oss-120b'\n"
         "arrival = { kind = 'closed', users = 2, think = '0s' }\nprompt_tokens = 10000\nmax_tokens = 100\n"
         "policy = 'no-retry'\n")


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_an_error_only_a_capacity_run_finds_is_one_line_after_every_row(tmp_path, capsys, jobs):
    """A closed loop that cannot advance (think 0, every request a 413 with no round trip) on gpt-oss-20b only:
    its search stops with the line `run` gives (the file's line, the point), the other model's runs to its end,
    and every row is printed first.  It was a traceback (the error could not be pickled back from a worker:
    BrokenProcessPool, exit 1), and in one process a line naming no file, with no row."""
    path = tmp_path / "stuck.toml"  # (10-second runs: with 1-minute ones the 120b search took 20 s)
    path.write_text(STUCK.replace("duration = '1m'", "duration = '10s'")
                    + "[compare]\nmodel = ['openai/gpt-oss-120b', 'openai/gpt-oss-20b']\n")
    assert main(["capacity", str(path), "--jobs", jobs, "--quiet"]) == 2
    out, err = capsys.readouterr()
    assert err == (f"groqsim: error: {path}:10: clients[0].arrival.think: client 'chat': a think time of 0 and "
                   "requests that end the instant they start (dropped by a full queue, or a 413 or error with no "
                   "network round trip): its users would send requests for ever with no time passing; give "
                   "arrival.think > 0 (at tier = 'free', model = 'openai/gpt-oss-20b', load = 64.0)\n")
    rows = [_cells(line) for line in out.splitlines()[2:4]]
    assert [r[:2] for r in rows] == [["free", "openai/gpt-oss-120b"], ["free", "openai/gpt-oss-20b"]]
    # no ceiling (a closed loop has no rate to scale: "-", not "nan ()"); the 120b search ran to its end
    assert rows[0][2:] == ["0", "-", "-", "-", "load x0", "-", "-", "-"]
    assert rows[1][2:] == ["0", "-", "-", "-", "unfinished: no load simulated", "-", "-", "-"]


def test_when_two_capacity_cells_find_an_error_the_first_rows_is_said(tmp_path, capsys):
    both = STUCK.replace("rtt_p90 = 0\n", "rtt_p90 = 0\n[service.'openai/gpt-oss-120b']\nrtt_median = 0\n"
                         "rtt_p90 = 0\n")
    path = tmp_path / "both.toml"
    path.write_text(both + "[compare]\nmodel = ['openai/gpt-oss-20b', 'openai/gpt-oss-120b']\n")
    assert main(["capacity", str(path), "--jobs", "1", "--quiet"]) == 2
    assert capsys.readouterr().err.endswith("(at tier = 'free', model = 'openai/gpt-oss-20b', load = 64.0)\n")


def test_an_error_only_a_run_finds_says_the_finished_runs_are_kept(tmp_path, capsys):
    path = tmp_path / "stuck.toml"
    path.write_text(STUCK + "[compare]\nmodel = ['openai/gpt-oss-120b', 'openai/gpt-oss-20b']\n")
    out = tmp_path / "out"
    err = _one_error(capsys, main(["run", str(path), "--jobs", "1", "--quiet", "--out", str(out)]))
    # replication 0 of each point first: 120b's ran, then 20b's found the error
    assert err.endswith("give arrival.think > 0 (at grid point 1: model = 'openai/gpt-oss-20b'); the 1 run(s) "
                        f"finished are kept in {out / 'runs'}: the same command, once that is fixed, reuses them")
    assert len(list((out / "runs").glob("*.json"))) == 1
    bad = tmp_path / "bad.toml"  # refused before any run: nothing said of runs
    bad.write_text(STUCK.replace("duration = '1m'", "duration = '1m'\nbogus = 1"))
    assert "kept" not in _one_error(capsys, main(["run", str(bad), "--quiet", "--out", str(out)]))


def test_running_out_of_memory_past_the_work_limits_is_one_line(tmp_path, monkeypatch, capsys):
    """With --force the work limits are off: a rate of 1e12/min then asked numpy for 15 TiB, a traceback."""
    import sim.runner

    def huge(*_, **__):
        raise MemoryError("Unable to allocate 15.3 TiB for an array")
    monkeypatch.setattr(sim.runner, "simulate", huge)
    assert _one_error(capsys, main(["run", str(_scenario(tmp_path)), "--jobs", "1", "--quiet", "--force",
                                    "--out", str(tmp_path / "o")])) == (
        "groqsim: error: out of memory: the work asked for more than this machine holds; lower the rate, "
        "--duration, [compare] load or the replications")


def test_simlog_names_the_file_of_an_error_only_the_run_finds(tmp_path, capsys):
    path = tmp_path / "stuck.toml"
    path.write_text(STUCK.replace("openai/gpt-oss-120b", "openai/gpt-oss-20b") + "[compare]\nload = [1, 2]\n")
    assert _one_error(capsys, main(["simlog", str(path), "-o", str(tmp_path / "l.jsonl"), "--point", "1"])) == (
        f"groqsim: error: {path}:10: clients[0].arrival.think: client 'chat': a think time of 0 and requests that "
        "end the instant they start (dropped by a full queue, or a 413 or error with no network round trip): its "
        "users would send requests for ever with no time passing; give arrival.think > 0 (at grid point 1: load "
        "= 2)")


def test_capacity_of_a_closed_loop_reports_the_load_multiplier(tmp_path, capsys):
    closed = _scenario(tmp_path, clients=CLIENT.format(name="c", rate="x").replace(
        "kind = 'poisson', rate = 'x'", "kind = 'closed', users = 2, think = '10s'"))
    assert main(["capacity", str(closed), "--jobs", "1", "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    row = _cells(lines[2])
    assert row[:3] == ["free", MODEL, "0"] and row[-4].startswith("load x")  # no rate: the multiplier alone
    assert lines[3].startswith("offered 0 req/min: no open-loop on-demand traffic to scale (a closed loop, the batch "
                               "lane or zero rates), so the ceilings do not apply; simulated max is the load "
                               "multiplier")
    assert len(lines) == 4


# ---- trace, simlog, calibrate


def test_trace_writes_the_csv_and_says_what_it_folded(tmp_path, capsys):
    out = tmp_path / "t.csv"
    assert main(["trace", str(LOG), "-o", str(out)]) == 0
    err = _err_lines(capsys)
    assert err == ["note: 21 chat request(s) without usage (21 never answered): completion set to the model's median "
                   "(prompt imputed for 0 of them, the rest from their 429's Requested)",
                   f"wrote {out}: 224 request(s) from 333 log line(s) (109 SDK retries folded)"]
    trace = pd.read_csv(out)
    assert list(trace.columns) == ["timestamp", "model", "prompt_tokens", "max_tokens", "completion_tokens",
                                   "audio_seconds"] and len(trace) == 224


def test_simlog_writes_point_0_by_default_and_the_point_asked(tmp_path, capsys):
    """Free's RPM is 30: 90 requests a minute get 429s there, none on Developer (grid point 1)."""
    path = _scenario(tmp_path, "[compare]\ntier = ['free', 'developer']\n", rate="90/min")
    lines = {}
    for point in (None, "0", "1"):
        log = tmp_path / f"{point}.jsonl"
        assert main(["simlog", str(path), "-o", str(log), *(["--point", point] if point else [])]) == 0
        lines[point] = [json.loads(x) for x in log.read_text().splitlines()]
        refused = sum(x["status"] == 429 for x in lines[point])
        answered = sum(x["status"] == 200 for x in lines[point])
        assert _err_lines(capsys) == [f"wrote {log}: {len(lines[point])} attempt(s) of {answered + refused} "
                                      f"request(s), {refused} 429(s)"]
    assert lines[None] == lines["0"] and any(x["status"] == 429 for x in lines["0"])
    assert not any(x["status"] == 429 for x in lines["1"])


def test_simlog_is_replication_0_of_the_run(tmp_path, capsys):
    path = _scenario(tmp_path, head="duration = '1m'\nreplications = 2\n", rate="60/min")
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--jobs", "1", "--quiet", "--format", "csv"]) == 0
    assert main(["simlog", str(path), "-o", str(tmp_path / "l.jsonl")]) == 0
    capsys.readouterr()
    rec = pd.read_parquet(tmp_path / "out" / "requests.parquet")
    sent = sorted(x["t_send"] for x in map(json.loads, (tmp_path / "l.jsonl").read_text().splitlines()))
    for rep in (0, 1):  # (the log's clock is a date, and a request is sent a round trip's part before it arrives)
        created = sorted(rec.loc[rec["replication"] == rep, "created"])
        same = len(sent) == len(created) and all(abs((s - sent[0]) - (c - created[0])) < 0.1
                                                 for s, c in zip(sent, created))
        assert same == (rep == 0), rep


def test_simlog_says_how_many_attempts_it_could_not_log(tmp_path, capsys):
    path = _scenario(tmp_path, "[org]\nerror_rate = 0.5\n", rate="60/min")
    log = tmp_path / "l.jsonl"
    assert main(["simlog", str(path), "-o", str(log)]) == 0
    err = _err_lines(capsys)
    assert len(err) == 2 and err[0].startswith(f"wrote {log}: ")
    unlogged = int(err[1].split()[1])
    assert unlogged > 0 and err[1] == (f"note: {unlogged} attempt(s) reached no limit set (injected errors, flex "
                                       "498s, batch lane): not in the log")


def test_simlogs_limit_is_one_runs_requests_and_inclusive(tmp_path, monkeypatch, capsys):
    """2 grid points x 2 replications of about 10 requests each: one run, 10 requests, is what simlog writes."""
    path = _scenario(tmp_path, "[compare]\npolicy = ['no-retry', 'groq-sdk']\n",
                     head="duration = '1m'\nreplications = 2\n")
    log = str(tmp_path / "l.jsonl")
    monkeypatch.setattr(sim.cli, "MAX_LOG_REQUESTS", 10)
    assert main(["simlog", str(path), "-o", log]) == 0
    capsys.readouterr()
    monkeypatch.setattr(sim.cli, "MAX_LOG_REQUESTS", 9)
    assert _one_error(capsys, main(["simlog", str(path), "-o", log])) == (
        f"groqsim: error: {path}: about 10 simulated requests is more than simlog writes without --force (limit 9); "
        "lower --duration or add --force")
    assert main(["simlog", str(path), "-o", log, "--force"]) == 0
    capsys.readouterr()
    monkeypatch.undo()
    assert _one_error(capsys, main(["simlog", str(path), "-o", log, "--duration", "100000d"])) == (
        f"groqsim: error: {path}: about 1,440,000,000 simulated requests is more than simlog writes without --force "
        "(limit 2,000,000); lower --duration or add --force")


def test_calibrate_writes_to_results_calibration_and_the_logs_stem_by_default(tmp_path, monkeypatch, capsys):
    """... with the check beside them (the log's attempts simulated on the calibration: printed, and added to
    the report), or without it (--no-check)."""
    monkeypatch.chdir(tmp_path)
    assert main(["calibrate", str(LOG), "--no-plots"]) == 0
    report, err = capsys.readouterr()
    out = Path("results") / "calibration" / "example_groq_calls"
    files = ["calibrated.toml", "report.txt", "check_attempts.csv", "check.toml", "check.csv"]
    assert err == f"wrote {', '.join(str(out / f) for f in files)}\n"
    assert report == (tmp_path / out / "report.txt").read_text() and "\ncheck: the log's 333 attempt(s)" in report
    assert sorted(p.name for p in (tmp_path / out).iterdir()) == sorted(files)  # no figures
    assert main(["calibrate", str(LOG), "--no-plots", "--no-check", "--out", "bare"]) == 0
    report, err = capsys.readouterr()
    # (the section, not the word alone: the report names the log's path, which may hold it)
    assert err == "wrote bare/calibrated.toml, bare/report.txt\n" and "\ncheck:" not in report
    assert sorted(p.name for p in Path("bare").iterdir()) == ["calibrated.toml", "report.txt"]
    # again into the first directory, without the check: the earlier check's files go with it; a user's
    # check.csv beside no check.toml of ours stays
    assert main(["calibrate", str(LOG), "--no-plots", "--no-check", "--out", str(out)]) == 0
    capsys.readouterr()
    assert sorted(p.name for p in (tmp_path / out).iterdir()) == ["calibrated.toml", "report.txt"]
    (tmp_path / out / "check.csv").write_text("mine\n")
    assert main(["calibrate", str(LOG), "--no-plots", "--no-check", "--out", str(out)]) == 0
    capsys.readouterr()
    assert (tmp_path / out / "check.csv").read_text() == "mine\n"


def test_calibrate_of_a_log_it_can_estimate_nothing_from_writes_nothing(tmp_path, capsys):
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps({k: v for k, v in json.loads(x).items() if k != "t_recv"}) + "\n"
                           for x in LOG.read_text().splitlines()))
    out = tmp_path / "cal"
    assert main(["calibrate", str(log), "--out", str(out)]) == 2
    report, err = capsys.readouterr()
    assert "lack t_recv" in report
    assert err == f"groqsim: error: {log}: nothing could be estimated (see above)\n"
    assert not out.exists()


# ---- serve (the server itself replaced: what the command says and hands it)


def _free_port() -> int:
    import socket
    with socket.create_server(("127.0.0.1", 0)) as s:
        return s.getsockname()[1]


@pytest.fixture
def served(monkeypatch):
    """What ``serve`` would run: (emulator, host, port) per call; the emulator closed at once."""
    import sim.emulator
    calls = []

    def serve(emu, host, port):
        calls.append((emu, host, port))
        emu.close()
    monkeypatch.setattr(sim.emulator, "serve", serve)
    return calls


def test_serve_announces_its_address_and_serves_the_point_asked(tmp_path, monkeypatch, served, capsys):
    path = _scenario(tmp_path, "[compare]\ntier = ['free', 'developer']\n", name="emu.toml")
    port = _free_port()
    monkeypatch.chdir(tmp_path)
    assert main(["serve", str(path), "--port", str(port), "--point", "1", "--time-scale", "20"]) == 0
    (emu, host, given), = served
    out = Path("results") / "serve" / "emu"
    assert (host, given, emu.spec.org.tier, emu.time_scale) == ("127.0.0.1", port, "developer", 20.0)
    err = _err_lines(capsys)
    assert err[-1] == (f"groqsim serve: http://127.0.0.1:{port}/openai/v1 (tier developer, limiter "
                       f"{emu.spec.org.limiter}, time scale 20); log {out / 'requests.jsonl'}")
    # the emulator's own notes first, each a line
    assert len(err) == 2 and err[0].startswith("groqsim serve: not served, as Groq has shut them down for the "
                                               "developer tier (a request is answered 400 model_decommissioned): ")
    assert main(["serve", str(path), "--port", str(port), "--out", str(tmp_path / "o")]) == 0
    assert served[1][0].spec.org.tier == "free" and served[1][0].time_scale == 1.0  # point 0, real time
    assert _err_lines(capsys)[-1].endswith(f"time scale 1); log {tmp_path / 'o' / 'requests.jsonl'}")


def test_a_second_serve_on_the_same_out_is_refused(tmp_path, served, capsys):
    """Two emulators on one --out (the default one of two points of a scenario) wrote over each other's
    records, the second setting aside the first's log while it still wrote there: the second is refused, as a
    second `run` is; a serve that fails to start leaves no directory it made."""
    from sim.runner import hold_out
    path = _scenario(tmp_path, name="emu.toml")
    out = tmp_path / "out"
    out.mkdir()
    with hold_out(out):  # another groqsim command serving there
        assert _one_error(capsys, main(["serve", str(path), "--port", str(_free_port()), "--out", str(out)])) == (
            f"groqsim: error: --out {out}: another groqsim command is writing there now; wait for it to end, or "
            "choose another --out")
    assert served == [] and list(out.iterdir()) == []
    assert main(["serve", str(path), "--port", str(_free_port()), "--out", str(out)]) == 0 and len(served) == 1
    bad = _scenario(tmp_path, "[org]\ntier = 'gold'\n", name="bad.toml")
    fresh = tmp_path / "fresh"
    assert main(["serve", str(bad), "--port", str(_free_port()), "--out", str(fresh)]) == 2
    assert not fresh.exists() and len(served) == 1


def test_serve_says_when_no_key_carries_a_projects_limits(tmp_path, served, capsys):
    org = ("[org]\ntier = 'developer'\n[projects.etl]\nlimits = { '" + MODEL + "' = { rpm = 5 } }\n[projects.web]\n"
           + CLIENT.format(name="c", rate="10/min") + "project = 'etl'\n")
    path = _scenario(tmp_path, clients=org)
    port = str(_free_port())
    base = ["serve", str(path), "--port", port]
    assert main([*base, "--key", "sk-1=etl", "--out", str(tmp_path / "o1")]) == 0
    said = [line.replace("o1", "o2") for line in _err_lines(capsys)]
    assert main([*base, "--key", "sk-1=web", "--out", str(tmp_path / "o2")]) == 0
    assert _err_lines(capsys) == [*said[:-1], f"note: {path}: no --key is labelled etl, so the project limits of "
                                  "[projects] apply to no request here (label a key with its project: --key KEY=etl)",
                                  said[-1]]
    off = _scenario(tmp_path, name="off.toml",
                    clients=org.replace("tier = 'developer'\n", "tier = 'developer'\nproject_quotas = false\n"))
    assert main(["serve", str(off), "--port", port, "--out", str(tmp_path / "o3"), "--key", "sk-1=web"]) == 0
    assert len(_err_lines(capsys)) == len(said)  # quotas off: nothing to say
    assert len(served) == 3


@pytest.mark.parametrize("scale, allowed", [("0", False), ("-2", False), ("nan", False), ("inf", False),
                                            ("0.001", True), ("1e6", True), ("1.000001e6", False), ("1e16", False)])
def test_serves_time_scale_is_a_number_above_0_and_at_most_a_million(scale, allowed, tmp_path, served, capsys):
    path = _scenario(tmp_path)
    code = main(["serve", str(path), "--port", str(_free_port()), "--out", str(tmp_path / "o"), "--time-scale", scale])
    if allowed:
        assert code == 0 and len(served) == 1
        capsys.readouterr()
    else:
        assert _one_error(capsys, code) == (f"groqsim: error: --time-scale {float(scale)}: allowed: a number > 0 and "
                                            "at most 1e+06 (e.g. 20)")
        assert not served and not (tmp_path / "o").exists()


@pytest.mark.parametrize("port, allowed", [("1", True), ("65535", True), ("0", False), ("65536", False),
                                           ("-1", False), ("80x", False)])
def test_a_port_is_an_integer_from_1_to_65535(port, allowed, capsys):
    if allowed:
        assert build_parser().parse_args(["serve", "s.toml", "--port", port]).port == int(port)
    else:
        assert main(["serve", "s.toml", "--port", port]) == 2
        assert capsys.readouterr().err == (f"groqsim serve: error: argument --port: {port!r}: allowed: an integer "
                                           "from 1 to 65535 (see groqsim serve --help)\n")


def test_serve_on_an_address_of_another_machine_names_the_host(tmp_path, served, capsys):
    path = _scenario(tmp_path)
    code = main(["serve", str(path), "--host", "192.0.2.1", "--port", str(_free_port()), "--out", str(tmp_path / "o")])
    line = _one_error(capsys, code)
    assert line.startswith("groqsim: error: --host 192.0.2.1: not an address of this machine (") and line.endswith(
        "); allowed: one of its own addresses, e.g. 127.0.0.1")
    assert not served


# ---- validate (the checks replaced: the command's verdict and report)


@pytest.fixture
def checks(monkeypatch):
    """The checks validate reports: two that pass unless the test says otherwise; the arguments they got."""
    import sim.validation
    from sim.checks import Check
    given, result = [], [Check("a", "src", "1", "1", True), Check("b", "src", "2", "2", True)]

    def run_checks(**kw):
        given.append(kw)
        return list(result)
    monkeypatch.setattr(sim.validation, "run_checks", run_checks)
    return given, result


def test_validate_exits_0_when_every_check_passes_and_1_when_one_fails(tmp_path, checks, capsys):
    given, result = checks
    assert main(["validate", "--short", "--quiet", "--jobs", "2"]) == 0
    assert capsys.readouterr().out.endswith("2/2 checks passed\n")
    assert given == [{"short": True, "progress": False, "jobs": 2}]
    from sim.checks import Check
    result[1] = Check("b", "src", "2", "3", False)
    assert main(["validate"]) == 1
    assert capsys.readouterr().out.endswith("1/2 checks passed\n")
    assert given[1] == {"short": False, "progress": None, "jobs": None}
    assert not (tmp_path / "validation.md").exists()


def test_validate_writes_its_report_only_where_asked(tmp_path, checks, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["validate", "--quiet"]) == 0
    assert list(tmp_path.iterdir()) == []
    out = tmp_path / "report"
    assert main(["validate", "--quiet", "--out", str(out)]) == 0
    assert (out / "validation.md").read_text().splitlines()[2] == "| a | src | 1 | 1 | pass |"
    (out / "validation.md").unlink()
    (out / "validation.md").mkdir()
    assert main(["validate", "--quiet", "--out", str(out)]) == 2
    printed, err = capsys.readouterr()
    assert printed.endswith("2/2 checks passed\n")  # the results are printed whatever happens
    assert err == (f"groqsim: error: {out / 'validation.md'}: cannot write (Is a directory); the other outputs were "
                   "written\n")


# ---- the command as a whole: warnings, Ctrl-C, SIGTERM


def test_ctrl_c_in_any_command_is_one_line_and_130(monkeypatch, capsys):
    from sim.catalog import Catalog

    def interrupted():
        raise KeyboardInterrupt
    monkeypatch.setattr(Catalog, "published", staticmethod(interrupted))
    assert main(["limits"]) == 130
    assert capsys.readouterr() == ("", "groqsim: interrupted\n")


def test_sigterm_stops_the_command_as_ctrl_c_does(monkeypatch, capsys):
    """``console`` (the ``groqsim`` entry point) turns SIGTERM (a scheduler's time limit, ``kill``) into Ctrl-C."""
    import gc
    import time

    from sim.catalog import Catalog

    def killed():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)  # the signal's handler runs before this ends
        raise AssertionError("SIGTERM did not stop the command")
    monkeypatch.setattr(Catalog, "published", staticmethod(killed))
    monkeypatch.setattr(sys, "argv", ["groqsim", "limits"])
    # a handler that does nothing meanwhile: were console() to install none, the test fails instead of its process
    before = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        assert sim.cli.console() == 130
    finally:
        signal.signal(signal.SIGTERM, before)
        gc.unfreeze()
    assert capsys.readouterr().err == "groqsim: interrupted\n"


def test_the_simulators_warnings_are_one_line_and_other_libraries_are_silent(tmp_path, monkeypatch, capsys):
    from sim.catalog import Catalog
    from sim.errors import InputWarning
    real = Catalog.published

    def warning():
        warnings.warn("numpy says something", RuntimeWarning, stacklevel=1)
        warnings.warn("your input looks odd", InputWarning, stacklevel=1)
        warnings.warn("your input looks odd", InputWarning, stacklevel=1)  # said each time, not once per place
        return real()
    monkeypatch.setattr(Catalog, "published", staticmethod(warning))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # as `python -W error`: the command decides what is shown
        assert main(["limits", "--format", "csv", "--tier", "free", "--model", MODEL]) == 0
    assert capsys.readouterr().err == "groqsim: warning: your input looks odd\n" * 2


def test_simlogs_limit_is_the_point_asked_not_the_grids_mean(tmp_path, monkeypatch, capsys):
    """A grid of loads x1 and x3 (10 and 30 requests): the small point is written under a limit of 10, the large
    one refused under a limit of 25 (the mean of the two, 20, refused the first and let the second through)."""
    path = _scenario(tmp_path, "[compare]\nload = [1, 3]\n")
    log = str(tmp_path / "l.jsonl")
    monkeypatch.setattr(sim.cli, "MAX_LOG_REQUESTS", 10)
    assert main(["simlog", str(path), "-o", log, "--point", "0"]) == 0, capsys.readouterr().err
    capsys.readouterr()
    monkeypatch.setattr(sim.cli, "MAX_LOG_REQUESTS", 25)
    assert _one_error(capsys, main(["simlog", str(path), "-o", log, "--point", "1"])) == (
        f"groqsim: error: {path}: about 30 simulated requests is more than simlog writes without --force (limit 25); "
        "lower --duration or add --force")


class _Terminal(io.StringIO):
    """stderr as a terminal: where the progress bars are drawn unless --quiet."""

    def isatty(self):
        return True


@pytest.mark.parametrize("command", ["run", "capacity"])
def test_a_terminal_shows_the_progress_bar_unless_quiet(command, tmp_path, monkeypatch, capsys):
    path = _scenario(tmp_path)
    argv = [command, str(path), "--jobs", "1", "--format", "json"] + (
        ["--out", str(tmp_path / "out")] if command == "run" else ["--duration", "20s"])
    for quiet in (False, True):
        term = _Terminal()
        monkeypatch.setattr(sys, "stderr", term)
        assert main([*argv, *(["--quiet"] if quiet else [])]) == 0
        monkeypatch.undo()
        bar = "runs: 100%" if command == "run" else "100%"
        assert (bar in term.getvalue()) != quiet, term.getvalue()
    capsys.readouterr()


def test_quiet_keeps_the_warnings(tmp_path, capsys):
    path = _scenario(tmp_path, clients=CLIENT.format(name="c", rate="10/min").replace(MODEL, "llama-3.1-8b-instant"))
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--jobs", "1", "--quiet", "--resume"]) == 0
    assert capsys.readouterr().err == ("groqsim: warning: model 'llama-3.1-8b-instant' was shut down by Groq on "
                                       "2026-08-16 (free and developer tiers; Enterprise goes on)\n")


def test_ctrl_c_while_the_outputs_are_written_keeps_the_runs(tmp_path, monkeypatch, capsys):
    from sim import report

    def stopped(*args, **kw):
        raise KeyboardInterrupt
    monkeypatch.setattr(report, "write_outputs", stopped)
    out = tmp_path / "out"
    path = _scenario(tmp_path)
    assert main(["run", str(path), "--out", str(out), "--jobs", "1", "--quiet", "--format", "csv"]) == 130
    printed, err = capsys.readouterr()
    assert printed.startswith("point,replications,success_ratio_mean,")  # the comparison came first
    assert err == (f"groqsim: interrupted while writing the outputs: 1 run(s) finished and kept in {out}; run the "
                   "same command again to resume\n")
    assert len(list((out / "runs").glob("*.json"))) == 1


def test_capacitys_search_limit_and_force(tmp_path, monkeypatch, capsys):
    """Developer's ceiling is far above 10 requests a minute: the search tries load x64, 640 requests a run."""
    path = _scenario(tmp_path, "[org]\ntier = 'developer'\n")
    monkeypatch.setattr(sim.cli, "MAX_REQUESTS", 150)  # above the work estimate (12 loads x 10 requests)
    assert _one_error(capsys, main(["capacity", str(path), "--jobs", "1", "--quiet"])) == (
        f"groqsim: error: {path}: capacity: the search would simulate load x64, about 640 simulated requests in one "
        "run, more than this command does without --force (150); lower [capacity] max_load (64) or add --force")
    assert main(["capacity", str(path), "--jobs", "1", "--quiet", "--force", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["sim_capped"] is True
    # beside Free, whose loads stay within the limit (x6 then x12, ...): Free's search runs to its end and its
    # row is printed, Developer's says it simulated nothing, then the error
    both = _scenario(tmp_path, "[compare]\ntier = ['free', 'developer']\n", name="both.toml")
    monkeypatch.setattr(sim.cli, "MAX_REQUESTS", 250)  # above the estimate for two searches (2 x 120)
    assert main(["capacity", str(both), "--jobs", "1", "--quiet"]) == 2
    out, err = capsys.readouterr()
    free, developer = (_cells(line) for line in out.splitlines()[2:4])
    assert developer[7:9] == ["unfinished: no load simulated", "-"]
    assert main(["capacity", str(_scenario(tmp_path, name="free.toml")), "--jobs", "1", "--quiet"]) == 0
    assert free == _cells(capsys.readouterr().out.splitlines()[2])  # as searched alone, to its end
    assert err == (f"groqsim: error: {both}: capacity: the search would simulate load x64, about 640 simulated "
                   "requests in one run, more than this command does without --force (250); lower [capacity] "
                   "max_load (64) or add --force\n")


@pytest.mark.parametrize("first", ["interrupt", "refusal"])
def test_a_second_ctrl_c_while_capacitys_partial_table_is_printed_ends_on_the_unfinished_rows_line(
        tmp_path, monkeypatch, capsys, first):
    """Ctrl-C and ``timeout`` often signal twice: a second signal while the partial table is printed (after a
    Ctrl-C, or after a refusal by the work limit, whose error is still said) ends on the line that says what
    the rows marked 'unfinished' mean, with 130 (it ended on a bare "interrupted")."""
    path = _scenario(tmp_path, "[compare]\ntier = ['free', 'developer']\n")
    real, calls = sim.capacity.run_summary, []

    def run(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt if first == "interrupt" else ConfigError(f"{path}: capacity: refused")
        return real(*args)

    def printing(*args, **kw):
        raise KeyboardInterrupt
    monkeypatch.setattr(sim.capacity, "run_summary", run)
    monkeypatch.setattr(sim.cli, "align", printing)
    assert main(["capacity", str(path), "--jobs", "1", "--quiet"]) == 130
    refused = f"groqsim: error: {path}: capacity: refused\n" if first == "refusal" else ""
    assert capsys.readouterr().err == refused + (
        "groqsim: interrupted: the rows marked 'unfinished' are as far as their search went (the highest load that "
        "met the target so far, and the lowest that missed it)\n")


def test_capacity_stopped_half_way_prints_what_its_search_found(tmp_path, monkeypatch, capsys):
    """Ctrl-C in the third round (the 5th run): the table as far as the two searches went, then the reason;
    a later round over the work limit alike, with its error and exit status 2."""
    path = _scenario(tmp_path, "[compare]\ntier = ['free', 'developer']\n")
    real, calls = sim.capacity.run_summary, []

    def run(*args):
        calls.append(args[1]["load"])
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(*args)
    monkeypatch.setattr(sim.capacity, "run_summary", run)
    assert main(["capacity", str(path), "--jobs", "1", "--quiet"]) == 130
    out, err = capsys.readouterr()
    # free: x6 met, x12 missed, then x9 missed, and x7.5 was the round stopped; developer: x64 met, capped
    assert calls == [6.0, 64.0, 12.0, 9.0, 7.5]
    free, developer = (_cells(line) for line in out.splitlines()[2:4])
    assert free[7] == "≥ 59 (load x6; unfinished, x9 missed)" and developer[7] == "≥ 624 (load x64)"
    assert free[8:10] == ["100.0", "0.42"]  # the success (%, as `run` prints it) and p95 of the load that met it
    assert err == ("groqsim: interrupted: the rows marked 'unfinished' are as far as their search went (the "
                   "highest load that met the target so far, and the lowest that missed it)\n")
    # a refusal after a round (as the work limit's, see tests/test_capacity_search.py): the rows, then the error
    calls.clear()

    def refused(*args):
        calls.append(args[1]["load"])
        if len(calls) == 3:
            raise ConfigError(f"{path}: capacity: refused")
        return real(*args)
    monkeypatch.setattr(sim.capacity, "run_summary", refused)
    assert main(["capacity", str(path), "--jobs", "1", "--quiet", "--format", "json"]) == 2
    out, err = capsys.readouterr()
    free, developer = json.loads(out)
    assert (free["sim_load"], free["sim_finished"], developer["sim_finished"]) == (6.0, False, True)
    assert free["sim_missed_load"] is None and free["sim_success"] == 1.0  # (no load missed yet: JSON's null)
    assert err == f"groqsim: error: {path}: capacity: refused\n"


@pytest.mark.parametrize("row, cell", [
    ({"sim_finished": True, "sim_capped": False}, "59 (load x6)"),
    ({"sim_finished": True, "sim_capped": True}, "≥ 59 (load x6)"),
    ({"sim_finished": True, "sim_capped": True, "offered_rpm": 0.0}, "≥ load x6"),  # a closed loop: no rate
    ({"sim_missed_load": 9.0}, "≥ 59 (load x6; unfinished, x9 missed)"),
    ({"sim_missed_load": float("nan")}, "≥ 59 (load x6; unfinished, none missed yet)"),
    ({"sim_missed_load": 9.0, "offered_rpm": 0.0}, "≥ load x6 (unfinished, x9 missed)"),
    ({"sim_load": 0.0, "sim_rpm": 0.0, "sim_missed_load": 0.5}, "< load x0.5 (unfinished, none met yet)"),
    ({"sim_load": 0.0, "sim_rpm": 0.0}, "unfinished: no load simulated"),
])
def test_capacitys_simulated_max_reads_a_finished_search_or_its_bracket(row, cell):
    base = {"sim_load": 6.0, "sim_rpm": 59.0, "offered_rpm": 10.0, "sim_finished": False, "sim_capped": False,
            "sim_missed_load": float("nan")}
    assert sim.cli._simulated_max({**base, **row}) == cell


def test_an_unfinished_row_that_met_nothing_yet_gets_no_out_of_reach_note(tmp_path, capsys):
    scenario = sim.cli._load(build_parser().parse_args(["capacity", str(_scenario(tmp_path))]))
    args = build_parser().parse_args(["capacity", "s.toml"])
    row = {"tier": "free", "model": MODEL, "offered_rpm": 10.0, "ceiling_rpm": 1.0, "binding": f"{MODEL} RPD",
           "minute_ceiling_rpm": 30.0, "minute_binding": f"{MODEL} RPM", "daily_ceiling_per_day": 1000.0,
           "daily_binding": f"{MODEL} RPD", "too_large_share": 0.0, "sim_load": 0.0, "sim_rpm": 0.0,
           "sim_success": float("nan"), "sim_p95": float("nan"), "sim_cost_per_1k": float("nan"),
           "sim_capped": False, "sim_missed_load": 0.5, "sim_finished": False}
    assert sim.cli._capacity_rows(args, scenario, None, [row]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and "unfinished" in lines[2]  # the target, the header, the row: no note under it
    assert sim.cli._capacity_rows(args, scenario, None, [{**row, "sim_finished": True}]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith(f"free {MODEL}: no load met the target")


def test_capacitys_figures_are_right_aligned_under_their_headers(tmp_path, capsys):
    assert main(["capacity", str(_scenario(tmp_path)), "--jobs", "1", "--quiet", "--duration", "20s"]) == 0
    header, row = capsys.readouterr().out.splitlines()[1:3]
    assert row.startswith("free  " + MODEL + "  ")  # the names left-aligned
    assert header.index("offered req/min") + len("offered req/min") == row.index(" 10 ") + 3


def test_validate_refuses_an_out_that_is_a_file_before_any_check(tmp_path, checks, capsys):
    given, _ = checks
    taken = tmp_path / "taken"
    taken.write_text("mine\n")
    assert _one_error(capsys, main(["validate", "--out", str(taken)])) == (
        f"groqsim: error: --out {taken}: is an existing file, not a directory (give a directory to write into)")
    assert given == [] and taken.read_text() == "mine\n"


def test_calibrate_writes_where_asked(tmp_path, capsys):
    out = tmp_path / "cal"
    assert main(["calibrate", str(LOG), "--out", str(out), "--no-plots", "--no-check"]) == 0
    assert capsys.readouterr().err == f"wrote {out / 'calibrated.toml'}, {out / 'report.txt'}\n"


def test_serve_refuses_an_out_that_is_a_file_and_takes_a_seed(tmp_path, served, capsys):
    path = _scenario(tmp_path)
    taken = tmp_path / "taken"
    taken.write_text("mine\n")
    port = str(_free_port())
    assert _one_error(capsys, main(["serve", str(path), "--port", port, "--out", str(taken)])) == (
        f"groqsim: error: --out {taken}: is an existing file, not a directory (give a directory to write into)")
    assert not served
    assert main(["serve", str(path), "--port", port, "--out", str(tmp_path / "o"), "--seed", "7"]) == 0
    assert served[0][0].seed == 7
    capsys.readouterr()


def test_figures_started_early_then_cancelled_by_ctrl_c_are_drawn_at_the_end(tmp_path, monkeypatch, capsys):
    """With workers, the figures of replication 0 start while the other replications run; a Ctrl-C cancels those
    not started.  The interrupted command draws them itself and ends with its line, not a CancelledError."""
    from concurrent.futures import Future

    from sim import report

    def started(pool, study, out, early):
        for fig in report.FIRST_REPLICATION_FIGURES:
            early[fig] = Future()
            early[fig].cancel()
    monkeypatch.setattr(report, "start_early_figures", started)
    _interrupt_at(monkeypatch, 2)
    out = tmp_path / "out"
    path = _scenario(tmp_path, head="duration = '1m'\nreplications = 2\n")
    assert main(["run", str(path), "--out", str(out), "--jobs", "1", "--quiet", "--format", "csv"]) == 130
    assert capsys.readouterr().err == (f"groqsim: interrupted: 1 run(s) finished and kept in {out}; run the same "
                                       "command again to resume\n")
    assert (out / "utilisation_over_time.png").stat().st_size > 0 and (out / "throughput_over_time.png").is_file()
