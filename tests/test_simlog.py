"""sim.simlog / `groqsim simlog`: a simulator run exported as a recorder log agrees line by line with the run's
own records and sim.headers, and calibrates back to the parameters that made it (every limiter algorithm the
issue names x both charge modes, the service figures, the tier -- a published one and a custom one)."""
import json
import math
import tomllib
from collections import Counter

import numpy as np
import pytest

from sim.calibrate import calibrate
from sim.calibrate.evidence import parse_limit_message
from sim.calibrate.output import report_text, toml_fragment
from sim.cli import main
from sim.recorder import KEYS, read_log
from sim.scenario import scenario_from_dict
from sim.simlog import simulate_log
from sim.tracelog import log_to_trace

MODEL = "llama-3.1-8b-instant"
# unlike the simulator's defaults for the model (560 t/s, prefill ~26K t/s, cv 0.32, rtt 0.05 s), so a
# calibration that fell back on a default would fail
TRUE = {"output_tps": 650.0, "prefill_tps": 7000.0, "prefill_fixed": 0.004, "speed_cv": 0.2, "queue_median": 0.13,
        "queue_p90": 0.2, "rtt_median": 0.1, "rtt_p90": 0.13}


def scenario(algorithm="token_bucket", charge="max_tokens", tier="free", tiers=None, duration=3600.0, rate=0.25,
             clients=None, seed=1):
    """A free-tier chat app at about 1.3x TPM when charged prompt + max_tokens (RPM, RPD, TPD not reached): the SDK's
    retries after retry-after keep traffic at the limit, so 429s and near-limit headers are frequent with either
    charge mode and every limiter (the evidence that tells the hypotheses apart)."""
    return scenario_from_dict({
        "scenario": {"name": "simlog", "seed": seed, "duration": duration, "drain": 600},
        "org": {"tier": tier, "limiter": algorithm, "accounting": {"charge": charge}},
        "tiers": tiers or {},
        "service": {MODEL: TRUE},
        "clients": clients or [{
            "name": "app", "model": MODEL, "arrival": {"kind": "poisson", "rate": rate}, "policy": "groq-sdk",
            "prompt_tokens": {"dist": "lognormal", "median": 200, "p95": 800}, "max_tokens": 256,
            "completion_tokens": {"dist": "lognormal", "median": 80, "p95": 220}}],
    }, source="<test>")


def export(tmp_path, name="log.jsonl", seed=5, **kw):
    sc = scenario(**kw)
    log = simulate_log(sc.spec(), seed)
    path = log.write(tmp_path / name)
    return path, log


CASES = [("token_bucket", "max_tokens"), ("token_bucket", "actual"), ("fixed_window", "max_tokens"),
         ("fixed_window", "actual"), ("sliding_log", "max_tokens"), ("sliding_log", "actual")]


@pytest.mark.parametrize("algorithm,charge", CASES)
def test_simulator_log_calibrates_back_to_its_parameters(algorithm, charge, tmp_path):
    path, log = export(tmp_path, algorithm=algorithm, charge=charge)
    cal = calibrate(path)
    statuses = Counter(x["status"] for x in log.lines)
    assert statuses[200] > 300 and statuses[429] > 50, statuses  # refusals and answers: evidence both ways
    best, runner_up = cal.hypotheses[0], cal.hypotheses[1]
    assert (best.algorithm, best.charge) == (algorithm, charge)
    assert not any(h.indistinguishable for h in cal.hypotheses[1:])
    assert best.score < 0.02 and runner_up.score > 0.1  # the truth fits; the nearest other does not
    svc = cal.service[MODEL]
    assert svc.output_tps.value == pytest.approx(TRUE["output_tps"], rel=0.05)
    assert svc.output_tps.low < TRUE["output_tps"] < svc.output_tps.high
    assert svc.prefill_tps == pytest.approx(TRUE["prefill_tps"], rel=0.05)
    assert svc.params()["prefill_fixed"] == pytest.approx(TRUE["prefill_fixed"], rel=0.25)
    assert svc.queue_median.value == pytest.approx(TRUE["queue_median"], rel=0.05)
    assert svc.queue_median.low < TRUE["queue_median"] < svc.queue_median.high
    assert svc.speed_cv == pytest.approx(TRUE["speed_cv"], abs=0.02)
    assert svc.rtt.value == pytest.approx(TRUE["rtt_median"], rel=0.05)
    assert cal.tier.base == "free" and not cal.tier.overrides
    assert "matches the published free tier" in cal.tier.sentence
    assert tomllib.loads(toml_fragment(cal))["org"] == {"tier": "calibrated", "limiter": algorithm,
                                                         "accounting": {"charge": charge}}


def test_a_custom_tier_is_named(tmp_path):
    """An org granted twice the free tier's TPM: named as free with that exception, and replayed with it."""
    path, _ = export(tmp_path, tier="doubled", tiers={"doubled": {"base": "free", "scale": {"tpm": 2}}}, rate=0.5)
    cal = calibrate(path)
    assert cal.tier.sentence == "free, except TPM 2x: a custom tier"
    assert cal.tier.overrides == {MODEL: {"tpm": 12_000}}
    assert (cal.best.algorithm, cal.best.charge) == ("token_bucket", "max_tokens")


def test_lines_are_the_runs_attempts_with_the_simulators_headers_and_bodies(tmp_path):
    """Every attempt that reached the limits is one line, agreeing with the run's records; 413s (prompts
    beyond TPM) are not retried; transcriptions are lines of their own; the file reads back clean."""
    clients = [{"name": "chat", "model": MODEL, "arrival": {"kind": "poisson", "rate": 0.1}, "policy": "groq-sdk",
                "prompt_tokens": {"dist": "lognormal", "median": 700, "p95": 5000}, "max_tokens": 512,
                "completion_tokens": {"dist": "uniform", "low": 20, "high": 300}},
               {"name": "speech", "model": "whisper-large-v3", "arrival": {"kind": "poisson", "rate": 0.05},
                "audio_seconds": {"dist": "uniform", "low": 5, "high": 60}, "policy": "groq-sdk"}]
    sc = scenario(clients=clients, duration=1800.0)
    log = simulate_log(sc.spec(), 3)
    path = log.write(tmp_path / "log.jsonl")
    back = read_log(path)
    assert not back.problems and len(back.records) == len(log.lines)
    assert all(list(json.loads(x))[:len(KEYS)] == list(KEYS) for x in path.read_text().splitlines())
    rec = log.result.records
    assert log.unlogged == 0 and len(log.lines) == rec["attempts"].sum()
    status = Counter(x["status"] for x in log.lines)
    assert status[200] == (rec["outcome"] == "ok").sum() and status[429] == rec["n429"].sum() > 0
    assert status[413] == (rec["outcome"] == "too_large").sum() > 0
    assert [x["t_recv"] for x in log.lines] == sorted(x["t_recv"] for x in log.lines)
    t0 = 1793577600.0  # 2026-11-02 00:00 UTC: simulation time 0
    by_request = {}
    for x in log.lines:
        group, row, attempt = (int(v) for v in x["request_id"].split("_")[2:])
        by_request.setdefault((x["label"], row), []).append(x)
        assert x["retry_count"] == attempt
        h = x["headers"]
        assert h["x-ratelimit-limit-tokens" if x["model"] == MODEL else "x-ratelimit-limit-requests"]
        if x["status"] == 429:
            msg = parse_limit_message(x["error"]["message"])
            assert x["error"]["code"] == "rate_limit_exceeded" and msg.model == x["model"]
            assert msg.wait > 0 and int(h["retry-after"]) == max(1, math.ceil(msg.wait - 1e-9))
            assert x["error"]["message"].endswith("https://console.groq.com/settings/billing")  # free tier
        elif x["status"] == 413:
            assert "retry-after" not in h and x["error"]["message"].startswith("Request too large")
            assert x["retry_count"] == 0  # the SDK does not retry a 413
    rows = rec.set_index(["client", rec.groupby("client", observed=True).cumcount()])
    for (label, row), lines in by_request.items():
        r = rows.loc[(label, row)]
        assert [x["retry_count"] for x in lines] == list(range(len(lines))) and len(lines) == r["attempts"]
        first, last = lines[0], lines[-1]
        assert 0 < t0 + r["created"] - first["t_send"] < 0.5  # the server decides half a round trip after
        if r["outcome"] == "ok":
            assert last["status"] == 200
            if r["attempts"] == 1:  # the client's whole wait is the record's latency
                assert last["t_recv"] - last["t_send"] == pytest.approx(r["latency"], abs=1e-6)
            if label == "speech":
                assert last["endpoint"] == "audio.transcriptions" and last["usage"] is None
                assert last["audio_seconds"] == r["audio_seconds"] and last["max_tokens"] is None
            else:
                u = last["usage"]
                assert (u["prompt_tokens"], u["completion_tokens"]) == (r["prompt_tokens"], r["completion_tokens"])
                # the record's times as Groq writes them: to the nanosecond, total = prompt + completion as
                # written (queue apart)
                times = (u["queue_time"], u["prompt_time"], u["completion_time"])
                assert times == tuple(round(r[k], 9) for k in ("queue_time", "prompt_time", "completion_time"))
                assert all(abs(t * 1e9 - round(t * 1e9)) < 1e-3 for t in times)
                assert u["total_time"] == round(u["prompt_time"] + u["completion_time"], 9)
                assert last["max_tokens"] == r["max_tokens"]
        if last["status"] == 429 and label == "chat":
            assert parse_limit_message(last["error"]["message"]).requested in (r["charged_tokens"], 1)
    # the trace export folds the SDK's retries back into the run's requests
    export = log_to_trace(path)
    assert len(export.trace) == len(rec) and export.retries_folded == rec["attempts"].sum() - len(rec) > 0


def test_same_seed_same_log_and_a_seed_sequence_is_not_consumed(tmp_path):
    spec = scenario(duration=600.0).spec()
    seq = np.random.SeedSequence(7)
    a, b = simulate_log(spec, seq), simulate_log(spec, seq)
    assert a.lines == b.lines and a.lines != simulate_log(spec, 8).lines


def test_command_line(tmp_path, capsys):
    path = tmp_path / "sc.toml"
    path.write_text('[scenario]\nname = "cli"\nduration = "10m"\nseed = 2\n[org]\ntier = "free"\n'
                    'limiter = "fixed_window"\n[compare]\nload = [1, 2]\n[[clients]]\nname = "app"\n'
                    f'model = "{MODEL}"\npolicy = "groq-sdk"\narrival = {{ kind = "poisson", rate = "8/min" }}\n')
    out = tmp_path / "log.jsonl"
    assert main(["simlog", str(path), "-o", str(out), "--point", "1"]) == 0
    err = capsys.readouterr().err
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert f"wrote {out}: {len(lines)} attempt(s)" in err
    assert main(["calibrate", str(out), "--out", str(tmp_path / "cal"), "--no-plots"]) == 0
    assert "best: fixed_window" in capsys.readouterr().out
    again = tmp_path / "again.jsonl"
    assert main(["simlog", str(path), "-o", str(again), "--point", "1"]) == 0
    assert again.read_text() == out.read_text()  # deterministic: the scenario's seed
    assert main(["simlog", str(path), "-o", str(again), "--seed", "3", "--duration", "2m"]) == 0
    assert again.read_text() != out.read_text()
    firsts = [x["t_send"] for x in map(json.loads, again.read_text().splitlines()) if x["retry_count"] == 0]
    assert 1793577600.0 - 1 < min(firsts) and max(firsts) < 1793577600.0 + 120
    capsys.readouterr()
    for argv, phrase in [([str(path), "-o", str(out), "--point", "2"], "--point 2: "),
                         ([str(path), "-o", str(out), "--point", "-1"], "numbered 0 to 1"),
                         ([str(tmp_path / "none.toml"), "-o", str(out)], "cannot read scenario"),
                         ([str(path), "-o", str(tmp_path / "no" / "dir.jsonl")], "cannot write the log"),
                         ([str(path), "-o", str(out), "--duration", "soon"], "--duration"),
                         ([str(path), "-o", str(out), "--seed", "-2"], "--seed must be >= 0"),
                         ([str(path)], "required: -o/--output")]:
        assert main(["simlog", *argv]) == 2
        err = capsys.readouterr().err
        assert phrase in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_a_429_names_the_service_tier_whose_limits_refused(tmp_path):
    # a billed copy of Free (flex is for paid plans): flex at 10x its limits, one group on flex, one on auto
    # (on-demand first, then flex), both well above even the flex TPM
    app = {"model": MODEL, "arrival": {"kind": "poisson", "rate": 2.0}, "policy": "groq-sdk", "prompt_tokens": 400,
           "max_tokens": 256}
    sc = scenario(tier="paid", tiers={"paid": {"base": "free", "billed": True}}, duration=300.0,
                  clients=[{**app, "name": "flex", "service_tier": "flex"},
                           {**app, "name": "auto", "service_tier": "auto"}])
    lines = simulate_log(sc.spec(), 3).lines
    tiers = Counter((x["label"], x["error"]["message"].split("service tier `")[1].split("`")[0])
                    for x in lines if x["status"] == 429)
    assert tiers[("flex", "flex")] > 0 and tiers[("flex", "on_demand")] == 0
    assert tiers[("auto", "flex")] > 0  # auto's 429 is flex's when flex's wait is the shorter
    assert all(x["status"] in (200, 429) for x in lines)
    served = Counter((x["label"], x["service_tier"]) for x in lines)  # every line names its tier, as the recorder's
    assert served[("flex", "flex")] == sum(x["label"] == "flex" for x in lines)
    assert served[("auto", "on_demand")] > 0 and served[("auto", "flex")] > 0
    for x in lines:
        if x["status"] == 429:
            assert f"service tier `{x['service_tier']}`" in x["error"]["message"]


@pytest.mark.parametrize("algorithm", ["token_bucket", "sliding_log"])
def test_a_transcription_log_calibrates_its_audio_speed_and_limiter(algorithm, tmp_path):
    """Transcriptions carry no usage: the audio speed comes from response times against audio length, and
    the limiter replay runs on their audio-seconds charges (it used to be skipped as "no usage")."""
    whisper = "whisper-large-v3"
    sc = scenario_from_dict({
        "scenario": {"name": "stt", "seed": 2, "duration": 6 * 3600.0, "drain": 600},
        "org": {"tier": "free", "limiter": algorithm},
        "service": {whisper: {"audio_speed_factor": 120.0, "rtt_median": 0.08, "rtt_p90": 0.1}},
        "clients": [{"name": "calls", "model": whisper, "arrival": {"kind": "poisson", "rate": "2/min"},
                     "prompt_tokens": 0, "max_tokens": 0, "audio_seconds": {"dist": "uniform", "low": 30, "high": 360},
                     "policy": "retry-after"}]}, source="<test>")
    path = simulate_log(sc.spec(), 7).write(tmp_path / "stt.jsonl")
    cal = calibrate(path)
    svc = cal.service[whisper]
    answered = sum(1 for x in read_log(path).records if x["status"] == 200)
    assert svc.kind == "stt" and svc.n_answered == answered > 100
    assert svc.audio_slope.low < (1 + 0.32 ** 2) / 120.0 < svc.audio_slope.high  # the default speed_cv, 0.32
    assert svc.audio_speed_factor == pytest.approx(120.0, rel=0.15)
    assert svc.rtt.value == pytest.approx(0.08, rel=0.1)  # from the 429s' own round trips
    assert cal.best.algorithm == algorithm
    assert not any("replay skipped" in u or "no rate-limit headers" in u for u in cal.unknown)
    assert not any("output_tps" in u for u in cal.unknown)
    fragment = tomllib.loads(toml_fragment(cal))
    assert fragment["service"][whisper]["audio_speed_factor"] == round(svc.audio_speed_factor, 1)
    assert f"{answered} answered transcription(s), no usage" in report_text(cal)


def test_the_server_decides_in_the_middle_of_each_round_trip_from_the_given_days_midnight(tmp_path):
    """A line's send is half its network round trip before the server's decision (the simulator's one-way
    time): for a success, that decision is the record's ``admitted``; time 0 is the start day's UTC midnight
    (a date or its ISO text alike), and the default seed is 0."""
    from datetime import date, datetime
    spec = scenario(duration=900.0).spec()
    log = simulate_log(spec, start=date(2026, 1, 2))
    assert log.lines == simulate_log(spec, 0, start="2026-01-02").lines
    assert log.lines == simulate_log(spec, 0, start=datetime(2026, 1, 2, 15, 30)).lines  # (its day's midnight)
    t0 = 1767312000.0  # 2026-01-02 00:00 UTC
    rec = log.result.records
    rows = rec.set_index(["client", rec.groupby("client", observed=True).cumcount()])
    checked = 0
    for x in log.lines:
        if x["status"] != 200:
            continue
        u = x["usage"]
        rtt = x["t_recv"] - x["t_send"] - (u["queue_time"] + u["prompt_time"] + u["completion_time"])
        r = rows.loc[(x["label"], int(x["request_id"].split("_")[3]))]
        assert x["t_send"] + rtt / 2 - t0 == pytest.approx(r["admitted"], abs=1e-6)
        checked += 1
    assert checked > 50
    with pytest.raises(Exception, match=r"start '2026-13-01': allowed: a date like 2026-11-02"):
        simulate_log(spec, start="2026-13-01")
    written = log.write(str(tmp_path / "log.jsonl"))  # a path given as text
    assert written == tmp_path / "log.jsonl" and len(read_log(written).records) == len(log.lines)
