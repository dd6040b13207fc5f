"""sim/spec.py by its parts: a RunSpec built by hand -- its defaults (as a scenario file's), the edges of its
checks and the hints its errors give only where they help -- and the model kinds a run reads."""
import dataclasses

import numpy as np
import pytest

import sim
from helpers import client, run
from sim import RunSpec
from sim.config import arrival, policy_table


@pytest.fixture
def spec():
    return RunSpec(clients=[client()], policies=policy_table())


def test_a_runspec_by_hand_defaults_as_a_scenario_file_does(spec):
    """An hour measured from 0 and an hour of drain (docs/modelling.md: "the run then continues for `drain`
    (1 h)"), the arrival rates as written, no projects, no lane columns."""
    assert (spec.duration, spec.warmup, spec.drain, spec.load) == (3600.0, 0.0, 3600.0, 1.0)
    scenario = sim.scenario_from_dict({"clients": [{"name": "c", "model": "llama-3.3-70b-versatile",
                                                    "arrival": {"kind": "poisson", "rate": "1/min"}}]},
                                      source="<test>").spec()
    assert (scenario.duration, scenario.warmup, scenario.drain) == (spec.duration, spec.warmup, spec.drain)
    assert spec.projects == {} and spec.lane_report is False


def test_a_plain_run_spec_keeps_no_lane_columns():
    """Only a run that uses a lane (or asks with ``lane_report``) has the lane columns."""
    plain = run(client(), duration=60)
    assert "service_tier" not in plain.records and "n498" not in sim.summarize(plain)
    asked = run(client(), duration=60, lane_report=True)
    assert (asked.records["service_tier"] == "on_demand").all() and sim.summarize(asked)["n498"] == 0


@pytest.mark.parametrize("change, error, said", [
    ({"duration": 0}, ValueError, r"duration 0 must be > 0 seconds \(and finite\)$"),
    ({"duration": float("inf")}, ValueError, r"duration inf must be > 0 seconds \(and finite\)$"),
    ({"load": float("inf")}, ValueError, r"load inf must be > 0 \(and finite\): the multiplier"),
    ({"warmup": 3600.0}, ValueError, r"warmup 3600.0 must be >= 0 and shorter than duration \(3600 s\)"),
    # the scenario.spec() hint is for a duration written as text only
    ({"duration": "2h"}, TypeError, r"duration '2h' is a str: it is a number \(seconds\) "
                                    r"\(scenario.spec\(point, duration='2h'\) reads one like '2h'\)$"),
    ({"warmup": "10m"}, TypeError, r"warmup '10m' is a str: it is a number \(seconds\)$"),
    ({"duration": None}, TypeError, r"duration None is a NoneType: it is a number \(seconds\)$"),
    ({"load": None}, TypeError, r"load None is a NoneType: it is a number \(a multiplier\)$"),
])
def test_the_edges_of_a_runspecs_checks(spec, change, error, said):
    with pytest.raises(error, match="^RunSpec: " + said):
        dataclasses.replace(spec, **change)


def test_a_runspec_at_the_edges_it_accepts(spec):
    edge = dataclasses.replace(spec, duration=1e-3, warmup=0.0, drain=0.0, load=1e-6)
    assert (edge.duration, edge.drain, edge.load) == (1e-3, 0.0, 1e-6)


def test_clients_hints_only_where_they_help(spec):
    """"put it in a list" for one Client, "build one from a dict" for a dict: not for anything else."""
    with pytest.raises(TypeError, match=r"^RunSpec: clients is a list of Client, got dict$"):
        dataclasses.replace(spec, clients={"c": spec.clients[0]})
    with pytest.raises(TypeError, match=r"^RunSpec: clients\[1\] is a str, not a Client$"):
        dataclasses.replace(spec, clients=[spec.clients[0], "c"])
    assert dataclasses.replace(spec, clients=(spec.clients[0],)).clients == (spec.clients[0],)  # a tuple too


def test_each_models_kind(spec):
    kinds = spec.kinds
    assert kinds["whisper-large-v3"] == "stt" and kinds["playai-tts"] == "tts"
    assert kinds["llama-3.3-70b-versatile"] == kinds["openai/gpt-oss-20b"] == "chat"
    assert set(kinds) == set(spec.service)


def test_a_chat_groups_trace_charges_its_whisper_rows_no_tokens(tmp_path):
    """A run reads each model's kind: a whisper row of a chat group's trace, its token cells empty, is
    charged its audio and no tokens (the group's 500-token prompts fill only the chat rows)."""
    path = tmp_path / "t.csv"
    path.write_text("timestamp,model,prompt_tokens,max_tokens,audio_seconds\n"
                    "0,whisper-large-v3,,,30\n1,,,,\n")
    c = client(model="llama-3.1-8b-instant", arrival=arrival(kind="trace", file=str(path)), prompt_tokens=500,
               max_tokens=64, completion_tokens=32)
    rec = run(c, duration=10).records.set_index("model")
    assert rec.loc["whisper-large-v3", ["prompt_tokens", "max_tokens", "charged_tokens"]].tolist() == [0, 0, 0]
    assert rec.loc["whisper-large-v3", "audio_seconds"] == 30
    assert rec.loc["llama-3.1-8b-instant", "prompt_tokens"] == 500
    assert np.isclose(rec.loc["llama-3.1-8b-instant", "audio_seconds"], 0)
