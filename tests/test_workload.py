"""Workload generation: sizes, traces and the request stream handed to the engine."""
import numpy as np
import pandas as pd
import pytest

from sim.config import Client, arrival
from sim.workload import Uniforms, client_streams, open_loop, request_mix, sizes


def _client(**kw):
    return Client(name="c", model="llama-3.1-8b-instant", arrival=kw.pop("arrival", arrival(kind="poisson", rate=2.0)),
                  **kw)


def test_completion_is_capped_by_max_tokens_and_defaults_to_it():
    rng = np.random.default_rng(1)
    sz = sizes(_client(max_tokens=50, completion_tokens={"dist": "uniform", "low": 0, "high": 100}), rng, 5000)
    assert sz["completion"].max() == 50 and (sz["completion"] <= sz["max_tokens"]).all()
    assert (sz["completion"] < 50).mean() == pytest.approx(0.5, abs=0.03)
    whole = sizes(_client(max_tokens=64), rng, 10)
    assert (whole["completion"] == 64).all()


def test_open_loop_is_reproducible_from_the_seed():
    seed = np.random.SeedSequence(9)
    a = open_loop(_client(), client_streams(seed), 600.0)
    b = open_loop(_client(), client_streams(np.random.SeedSequence(9)), 600.0)
    assert np.array_equal(a[0], b[0]) and all(np.array_equal(a[1][k], b[1][k]) for k in a[1]) and a[2] is None


def test_trace_rows_keep_their_models_and_sizes(tmp_path):
    path = tmp_path / "t.csv"
    pd.DataFrame({"timestamp": [0.0, 5.0, 1.0, 30.0], "model": ["m1", None, "m2", "m1"],
                  "prompt_tokens": [10, 20, 30, 40]}).to_csv(path, index=False)
    c = _client(arrival=arrival(kind="trace", file=str(path)), max_tokens=7)
    created, sz, models = open_loop(c, client_streams(np.random.SeedSequence(0)), 20.0)
    assert list(created) == [0.0, 1.0, 5.0]  # sorted, inside the horizon
    assert list(sz["prompt"]) == [10, 30, 20] and list(sz["max_tokens"]) == [7, 7, 7]
    assert list(sz["completion"]) == [7, 7, 7]  # no completion column, no distribution: the whole max_tokens
    assert models == ["m1", "m2", "llama-3.1-8b-instant"]
    faster, _, _ = open_loop(c, client_streams(np.random.SeedSequence(0)), 20.0, load=2.0)
    assert list(faster) == [0.0, 0.5, 2.5, 15.0]
    mix = {m: rate for m, rate, _ in request_mix(c, 40.0, np.random.default_rng(0))}
    assert mix == {"m1": 2 / 40, "m2": 1 / 40, "llama-3.1-8b-instant": 1 / 40}


def test_an_empty_completion_cell_draws_the_clients_capped_by_the_rows_max_tokens(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("timestamp,max_tokens,completion_tokens\n" + "".join(
        f"{k},{20 if k % 2 else ''},{'' if k % 4 < 2 else 5}\n" for k in range(400)))
    c = _client(arrival=arrival(kind="trace", file=str(path)), max_tokens=64,
                completion_tokens={"dist": "uniform", "low": 10, "high": 100})
    _, sz, _ = open_loop(c, client_streams(np.random.SeedSequence(0)), 1000.0)
    empty = np.arange(400) % 4 < 2
    assert (sz["completion"][~empty] == 5).all()
    assert (sz["max_tokens"] == np.where(np.arange(400) % 2, 20, 64)).all()  # empty max_tokens: the client's
    drawn = sz["completion"][empty]
    cap = sz["max_tokens"][empty]
    assert (drawn <= cap).all() and (drawn >= 10).all() and len(np.unique(drawn[cap == 64])) > 20
    assert (drawn[cap == 20] == 20).mean() > 0.8  # U(10, 100) capped at 20: mostly 20
    no_max = tmp_path / "n.csv"  # without max_tokens every answer used its whole max_tokens; empty: the client's
    no_max.write_text("timestamp,completion_tokens\n0,7\n1,\n")
    _, sz, _ = open_loop(_client(arrival=arrival(kind="trace", file=str(no_max)), max_tokens=64,
                                 completion_tokens={"dist": "uniform", "low": 10, "high": 30}),
                         client_streams(np.random.SeedSequence(0)), 10.0)
    assert list(sz["max_tokens"]) == [7, 64] and sz["completion"][0] == 7 and 10 <= sz["completion"][1] <= 30


def test_request_mix_of_a_process_is_its_mean_rate_and_closed_loops_have_none():
    mix = list(request_mix(_client(arrival=arrival(kind="constant", rate="30/min")), 60.0, np.random.default_rng(0),
                           n=100))
    assert [(m, r) for m, r, _ in mix] == [("llama-3.1-8b-instant", 0.5)] and len(mix[0][2]["prompt"]) == 100
    assert list(request_mix(_client(arrival=arrival(kind="closed", users=2, think="1s")), 60.0,
                            np.random.default_rng(0))) == []


def test_uniforms_come_from_the_stream_in_order():
    u = Uniforms(np.random.default_rng(3))
    drawn = [u() for _ in range(5000)]
    rng = np.random.default_rng(3)
    assert drawn == rng.random(4096).tolist() + rng.random(4096).tolist()[:904]


def test_a_lognormal_tail_is_cut_at_the_largest_size():
    from sim.config import MAX_SIZE, Dist
    wide = Dist(dist="lognormal", median=1, p95=MAX_SIZE)  # sigma ~ 9.8: its tail would overflow the records
    x = wide.sample(np.random.default_rng(1), 200_000)
    assert x.max() == MAX_SIZE and (x > 0).all()
    assert np.median(x) == pytest.approx(1, rel=0.05)  # the body is untouched


def test_trace_rows_carry_only_what_their_models_kind_takes(tmp_path):
    """A chat group's trace with whisper and TTS rows: empty cells draw the group's sizes, but a whisper row
    is charged no tokens, a TTS row no answer, and a chat row no audio, whatever was drawn."""
    path = tmp_path / "t.csv"
    path.write_text("timestamp,model,prompt_tokens,max_tokens,audio_seconds\n"
                    "0,whisper-large-v3,,,30\n1,playai-tts,80,,\n2,,,,\n3,whisper-large-v3,0,0,\n")
    kinds = {"whisper-large-v3": "stt", "playai-tts": "tts", "llama-3.1-8b-instant": "chat"}
    c = _client(arrival=arrival(kind="trace", file=str(path)), prompt_tokens=500, max_tokens=64)
    _, sz, models = open_loop(c, client_streams(np.random.SeedSequence(0)), 10.0, kinds=kinds)
    assert models == ["whisper-large-v3", "playai-tts", "llama-3.1-8b-instant", "whisper-large-v3"]
    assert list(sz["prompt"]) == [0, 80, 500, 0] and list(sz["max_tokens"]) == [0, 0, 64, 0]
    assert list(sz["completion"]) == [0, 0, 64, 0] and list(sz["audio"]) == [30, 0, 0, 0]
    _, plain, _ = open_loop(c, client_streams(np.random.SeedSequence(0)), 10.0)  # without kinds: as filled
    assert list(plain["prompt"]) == [500, 80, 500, 0] and list(plain["max_tokens"]) == [64, 64, 64, 0]
    per_model = {m: sz for m, _, sz in request_mix(c, 10.0, np.random.default_rng(0), kinds=kinds)}
    assert list(per_model["whisper-large-v3"]["prompt"]) == [0, 0]
    assert list(per_model["playai-tts"]["completion"]) == [0]


def test_a_speech_to_text_group_is_charged_no_tokens():
    """A whisper group that leaves the sizes at their defaults (500-token prompts, 512 max_tokens) sends
    audio only: the spec zeroes its token sizes, so it is charged no tokens and spends no prefill or
    decode time."""
    from sim.engine import simulate
    from sim.scenario import Scenario
    sc = Scenario.model_validate({
        "scenario": {"duration": 600, "seed": 3},
        "org": {"tier": "developer"},
        "clients": [{"name": "calls", "model": "whisper-large-v3", "arrival": {"kind": "poisson", "rate": 0.1},
                     "audio_seconds": 60}]})
    rec = simulate(sc.spec(), seed=3).records
    assert len(rec) > 20
    assert (rec["prompt_tokens"] == 0).all() and (rec["max_tokens"] == 0).all()
    assert (rec["charged_tokens"] == 0).all() and (rec["prompt_time"] == 0).all()
    assert (rec["audio_seconds"] == 60).all()


def test_a_uniform_token_size_gives_every_whole_number_between_its_bounds_the_same_chance():
    """Rounding U(low, high) gave the ends half the chance of the others; a chi-square test against the
    discrete uniform on {low..high} (scipy), and the ends' shares directly."""
    from scipy import stats
    rng = np.random.default_rng(1)
    n = 200_000
    prompt = sizes(_client(prompt_tokens={"dist": "uniform", "low": 100, "high": 110}), rng, n)["prompt"]
    values, counts = np.unique(prompt, return_counts=True)
    assert values.tolist() == list(range(100, 111))
    assert stats.chisquare(counts).pvalue > 1e-3
    assert abs(counts[0] / n - 1 / 11) < 0.005 and abs(counts[-1] / n - 1 / 11) < 0.005
    # (a token size's bounds are whole numbers: the scenario refuses others); low = high is that size
    same = sizes(_client(prompt_tokens={"dist": "uniform", "low": 7, "high": 7}), rng, 100)["prompt"]
    assert (same == 7.0).all()
