"""The Python API's answers to mistakes: a clear exception naming the argument, what was given and what is
allowed; warnings said once per process at the caller's line; numpy scalars read as Python's."""
import dataclasses
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import sim
from sim import errors
from sim.errors import ConfigError, InertSettingWarning, ShutDownModelWarning
from sim.capacity import analytic_ceiling, capacity_table, knee
from sim.runner import run_inputs

ROOT = Path(__file__).resolve().parents[1]
CHATBOT = ROOT / "scenarios" / "chatbot_free_vs_developer.toml"
SMALL = {"scenario": {"name": "x", "duration": "1m", "seed": 1}, "org": {"tier": "free"},
         "clients": [{"name": "c", "model": "openai/gpt-oss-20b", "arrival": {"kind": "poisson", "rate": "10/min"},
                      "prompt_tokens": 100, "completion_tokens": 50, "max_tokens": 100}],
         "compare": {"policy": ["no-retry", "groq-sdk"]}}


@pytest.fixture(scope="module")
def chatbot():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sim.load_scenario(CHATBOT)


@pytest.fixture(scope="module")
def small():
    return sim.scenario_from_dict(SMALL)


# ---- 1. spec(k): a grid point's number ---------------------------------------------------------------------

def test_spec_of_a_number_is_that_grid_point(chatbot):
    """``spec(0)`` was the file's settings (``point or {}``), not grid point 0."""
    grid = chatbot.grid()
    for k in (0, 1, len(grid) - 1, np.int64(2)):
        assert run_inputs(chatbot.spec(k)) == run_inputs(chatbot.spec(grid[k]))
    assert run_inputs(chatbot.spec(0)) != run_inputs(chatbot.spec())  # (the file alone: policy groq-sdk)


@pytest.mark.parametrize("bad", ["", [], False, True, "0", 1.0])
def test_spec_refuses_what_is_neither_a_point_nor_its_number(chatbot, bad):
    with pytest.raises(ConfigError, match=r"spec\(.*\): a grid point is a dict of axis -> value.*or its number"):
        chatbot.spec(bad)


def test_spec_of_a_number_outside_the_grid_names_the_range(chatbot):
    with pytest.raises(ConfigError, match=r"point\(6\): .*chatbot_free_vs_developer.toml has 6 grid point\(s\), "
                                          r"numbered 0 to 5 \(scenario.grid\(\) lists them\)"):
        chatbot.spec(6)


# ---- 2. RunSpec by hand ------------------------------------------------------------------------------------

@pytest.mark.parametrize("change, error, said", [
    ({"duration": "2m"}, TypeError, r"duration '2m' is a str: it is a number \(seconds\).*spec\(point, duration="),
    ({"drain": "1h"}, TypeError, r"drain '1h' is a str"),
    ({"load": "2"}, TypeError, r"load '2' is a str: it is a number \(a multiplier\)"),
    ({"load": True}, TypeError, r"load True is a bool"),
    ({"drain": -10.0}, ValueError, r"drain -10.0 must be >= 0 seconds \(and finite\)"),
    ({"drain": float("nan")}, ValueError, r"drain nan must be >= 0"),
    ({"drain": float("inf")}, ValueError, r"drain inf must be >= 0"),
    ({"load": 0}, ValueError, r"load 0 must be > 0 \(and finite\)"),
    ({"load": -2.0}, ValueError, r"load -2.0 must be > 0"),
    ({"load": float("nan")}, ValueError, r"load nan must be > 0"),
    ({"clients": []}, ValueError, r"clients is empty: a run needs at least one client group"),
    ({"clients": "c"}, TypeError, r"clients is a list of Client, got str"),
])
def test_a_runspec_built_by_hand_is_checked(small, change, error, said):
    with pytest.raises(error, match="^RunSpec: " + said):
        dataclasses.replace(small.spec(0), **change)


def test_a_runspec_names_a_client_that_is_not_a_client(small):
    good = small.spec(0)
    with pytest.raises(TypeError, match=r"clients\[0\] is a dict, not a Client \(build one from a dict with "):
        dataclasses.replace(good, clients=[good.clients[0].model_dump()])
    with pytest.raises(TypeError, match=r"got Client \(put it in a list: \[client\]\)"):
        dataclasses.replace(good, clients=good.clients[0])
    assert dataclasses.replace(good, drain=0, load=np.float64(2.0)).load == 2.0  # (numbers of any kind)


# ---- 3. warnings once per process, at the caller's line --------------------------------------------------

LOOPED = {"scenario": {"duration": "1m"}, "org": {"tier": "developer"},
          "clients": [{"name": "c", "model": "llama-3.1-8b-instant", "arrival": {"kind": "constant", "rate": "10/min"},
                       "prompt_tokens": 100, "completion_tokens": 50, "max_tokens": 100, "policy": "paced",
                       "lane": "batch"}]}


@pytest.fixture
def fresh(monkeypatch):
    """Nothing said yet in this process (and Python's default filters)."""
    monkeypatch.setattr(errors, "_SAID", set())
    with warnings.catch_warnings(record=True) as caught:
        warnings.resetwarnings()
        warnings.simplefilter("default")
        yield caught


def test_a_note_is_said_once_in_a_loop_of_loads_and_runs(fresh):
    """pandas' catch_warnings inside every run reset Python's once-per-line memory: 8 warnings for 4 loops."""
    for _ in range(4):
        scenario = sim.scenario_from_dict(LOOPED)
        sim.summarize(sim.simulate(scenario.spec(), scenario.seed(0)))
    assert sorted(w.category.__name__ for w in fresh) == ["InertSettingWarning", "ShutDownModelWarning"]
    assert {w.filename for w in fresh} == {__file__}  # the caller's line, not sim/scenario.py


def test_a_note_is_said_at_the_line_that_loaded_the_file(fresh, tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('[[clients]]\nname = "c"\nmodel = "openai/gpt-oss-20b"\narrival = { kind = "poisson", rate = 1 }\n'
                    'policy = "mine"\n[policies.mine]\nretry = "exponential"\n')
    sim.load_scenario(path)
    sim.load_scenario(path)
    assert [(w.category, w.filename) for w in fresh] == [(InertSettingWarning, __file__)]


def test_the_filters_still_decide(fresh):
    """"always" says it every time, "error" raises it; an ignored note is not counted as said."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sim.scenario_from_dict(LOOPED)
    assert not errors._SAID
    with warnings.catch_warnings(record=True) as always:
        warnings.simplefilter("always")
        sim.scenario_from_dict(LOOPED)
        sim.scenario_from_dict(LOOPED)
    assert len(always) == 4
    with warnings.catch_warnings(), pytest.raises(ShutDownModelWarning):
        warnings.simplefilter("error")
        sim.scenario_from_dict(LOOPED)


# ---- 4. wrong types -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("call, said", [
    (lambda s: sim.summarize(None), r"summarize\(result\): takes the RunResult sim.simulate returns, got NoneType"),
    (lambda s: sim.summarize(pd.DataFrame()), r"got DataFrame: pass the RunResult itself, not its .records"),
    (lambda s: sim.run_study(str(CHATBOT)), r"run_study\(scenario\): takes a Scenario, got str: load the file "
                                            r"first, sim.load_scenario\(path\)"),
    (lambda s: sim.run_study(SMALL), r"got dict: validate it first, sim.scenario_from_dict"),
    # the capacity functions a notebook calls (an AttributeError from deep inside: 'str' has no 'spec')
    (lambda s: analytic_ceiling(str(CHATBOT)), r"analytic_ceiling\(scenario\): takes a Scenario, got str: load the "
                                               r"file first"),
    (lambda s: analytic_ceiling(s.spec(s.point(0))), r"got RunSpec: a RunSpec is one run, sim.simulate"),
    (lambda s: capacity_table(str(CHATBOT)), r"capacity_table\(scenario\): takes a Scenario, got str"),
    (lambda s: knee(s), r"knee\(comparison\): takes a comparison frame \(study.comparison\), got Scenario"),
    (lambda s: sim.run_study(s, out=123), r"run_study\(out=123\): the output directory is a path"),
    (lambda s: sim.load_scenario(SMALL), r"load_scenario\(path\): .*got a dict: .*sim.scenario_from_dict"),
    (lambda s: sim.load_scenario(None), r"load_scenario\(path\): takes the path of a TOML file .*got NoneType"),
    (lambda s: sim.load_scenario(CHATBOT, overrides=[("seed", 3)]), r"load_scenario\(overrides=...\): a dict"),
    (lambda s: sim.scenario_from_dict(str(CHATBOT)), r"scenario_from_dict\(data\): .*got str: for a scenario "
                                                     r"file, use sim.load_scenario\(path\)"),
    (lambda s: sim.scenario_from_dict(None), r"scenario_from_dict\(data\): takes a dict .*got NoneType"),
    (lambda s: sim.scenario_from_dict([]), r"scenario_from_dict\(data\): takes a dict .*got list"),
    (lambda s: s.point("0"), r"point\('0'\): a grid point's number is a whole number from 0 to 1, not str"),
    (lambda s: s.seed(1.5), r"seed\(replication=1.5\): a replication is a whole number >= 0"),
    (lambda s: s.seed("0"), r"seed\(replication='0'\)"),
    (lambda s: s.seed(True), r"seed\(replication=True\)"),
])
def test_a_wrong_type_is_a_type_error_naming_the_argument(small, call, said):
    with pytest.raises(TypeError, match=said):
        call(small)


def test_a_grid_point_number_out_of_range_names_the_python_argument(small):
    study = sim.run_study(small, jobs=1, progress=False)
    for k in (5, -1):
        for point in (study.point, small.point):
            with pytest.raises(ConfigError, match=rf"^point\({k}\): <scenario> has 2 grid point\(s\), numbered 0 "
                                                  r"to 1 \(scenario.grid\(\) lists them\)$"):
                point(k)
    assert study.point(1) == small.point(np.int64(1)) == {"policy": "groq-sdk"}
    with pytest.raises(ValueError, match=r"seed\(replication=-1\): a replication is a whole number >= 0"):
        small.seed(-1)
    assert small.seed(np.int64(2)).spawn_key == small.seed(2).spawn_key == (2,)


def test_the_command_line_keeps_its_point_wording(small):
    with pytest.raises(ConfigError, match=r"^--point 5: s.toml has 2 grid point\(s\), numbered 0 to 1 "
                                          r"\(groqsim check lists them\)$"):
        small.point(5, "s.toml")


# ---- 5. numpy scalars ---------------------------------------------------------------------------------------

def _with(path, value):
    data = {**SMALL, "scenario": dict(SMALL["scenario"]), "clients": [dict(SMALL["clients"][0])]}
    target = data
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return sim.scenario_from_dict(data)


@pytest.mark.parametrize("path, value, plain", [
    (("clients", 0, "prompt_tokens"), np.int64(100), 100),
    (("clients", 0, "max_tokens"), np.int32(100), 100),
    (("clients", 0, "completion_tokens"), np.int64(50), 50),
    (("clients", 0, "prompt_tokens"), np.float64(100.0), 100),
    (("scenario", "seed"), np.int64(3), 3),
    (("scenario", "replications"), np.int64(3), 3),
])
def test_numpy_scalars_read_as_python_ones(path, value, plain):
    assert _with(path, value) == _with(path, plain)


def test_numpy_values_still_refused_as_python_ones_would_be():
    with pytest.raises(ConfigError, match=r"scenario.seed: 1.5: Input should be a valid integer"):
        _with(("scenario", "seed"), np.float64(1.5))
    assert sim.config.Dist.model_validate(np.int64(7)).value == 7


# ---- 6. overrides ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides, said", [
    ({"seeed": 3}, r"scenario.seeed \(from overrides, not the file\): unknown key 'seeed' \(did you mean 'seed'"),
    ({"duration": "abc"}, r"scenario.duration \(from overrides, not the file\): 'abc' is not a duration"),
    ({"seed": 1.5}, r"scenario.seed \(from overrides, not the file\): 1.5"),
    ({"warmup": "2h"}, r"scenario.warmup \(from overrides, not the file\): '2h': warmup \(7200 s\) must be shorter"),
])
def test_an_override_error_is_not_blamed_on_a_line_of_the_file(overrides, said):
    with pytest.raises(ConfigError, match=rf"^{CHATBOT}: {said}"):
        sim.load_scenario(CHATBOT, overrides=overrides)


def test_a_file_error_keeps_its_line_with_overrides(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(CHATBOT.read_text().replace("[scenario]", "[scenario]\nspeedz = 1", 1))
    with pytest.raises(ConfigError, match=rf"^{path}:\d+: scenario.speedz: unknown key"):
        sim.load_scenario(path, overrides={"seed": 3})


@pytest.mark.parametrize("make, error, says", [
    (lambda: sim.FixedWindow(10, 60).try_admit(-100, now=0.0), ValueError, "an amount is >= 0"),
    (lambda: sim.TokenBucket(10, 60).try_admit(float("nan"), now=0.0), ValueError, "an amount is >= 0"),
    (lambda: sim.TokenBucket(limit="14.4K", window=60), TypeError, "here 14400"),
    (lambda: sim.SlidingLog(10, "1m"), TypeError, "(window='1m'): a number"),
    (lambda: sim.Limits(rpm=-30), ValueError, "Limits(rpm=-30): a limit is a positive finite number"),
    (lambda: sim.Limits(tpm="30"), TypeError, "Limits(tpm='30'): a number of tokens or None"),
    (lambda: sim.Limits(rpd=True), TypeError, "Limits(rpd=True)"),
    (lambda: sim.Limits(rpm=0), ValueError, "Limits(rpm=0): a limit is a positive finite number"),
    (lambda: sim.Limits(tpd=float("inf")), ValueError, "Limits(tpd=inf)"),
    (lambda: sim.TokenBucket(0, 60), ValueError, "limit and window must be positive and finite, got 0, 60"),
    (lambda: sim.TokenBucket(10, 0), ValueError, "got 10, 0"),
    (lambda: sim.FixedWindow(float("inf"), 60), ValueError, "got inf, 60"),
    (lambda: sim.SlidingLog(10, float("nan")), ValueError, "got 10, nan"),
])
def test_the_exported_limiters_and_limits_refuse_what_they_cannot_mean_in_one_line(make, error, says):
    """A negative amount added to a window limiter's budget (``try_admit(-100)`` then admitted 20 requests under
    a limit of 10), and a text limit failed deep inside with a bare comparison error."""
    with pytest.raises(error) as info:
        make()
    assert says in str(info.value) and "\n" not in str(info.value)


def test_the_smallest_limits_are_accepted():
    assert sim.Limits(rpm=1, tpm=0.5).items() == [("rpm", 1), ("tpm", 0.5)]
    assert sim.TokenBucket(1, 1e-9).limit == 1


def test_a_refused_amount_leaves_the_limiter_as_it_was():
    lim = sim.FixedWindow(10, 60)
    with pytest.raises(ValueError):
        lim.try_admit(-100, now=0.0)
    assert sum(lim.try_admit(1, now=0.0) for _ in range(20)) == 10
