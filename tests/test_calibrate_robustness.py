"""Logs that once gave calibrate and trace a confident wrong answer: a log appended twice, times in
milliseconds, files that are no recorder log, an impossible usage, negative round trips, too few samples for
an interval, a model named "", a log without rate-limit headers, a model outside the catalog.  Expected values
come from the synthetic logs' known parameters (sim.synthlog) or are worked out by hand in the comments."""
import json
import math
import tomllib
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from sim.calibrate import calibrate
from sim.calibrate.output import report_text, toml_fragment
from sim.calibrate.service_fit import _median_ci
from sim.cli import main
from sim.recorder import read_log
from sim.scenario import scenario_from_dict
from sim.synthlog import SynthSpec, synthesize, write_log
from sim.tracelog import log_to_trace

TRUE = SynthSpec()  # llama-3.1-8b-instant on free: 560 t/s, speed cv 0.15, max_tokens 512
T0 = 1_793_610_000.0  # 2026-11-02 09:00 UTC


def _lines(duration=1800.0, seed=3, **kw):
    return synthesize(replace(TRUE, duration=duration, **kw), seed)


def _write(path, lines):
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def _both_commands(path, tmp_path, capsys):
    """(exit status, stderr) of `groqsim calibrate` and of `groqsim trace` on ``path``."""
    out = []
    for command in (["calibrate", str(path), "--out", str(tmp_path / "cal"), "--no-plots"],
                    ["trace", str(path), "-o", str(tmp_path / "t.csv")]):
        rc = main(command)
        out.append((rc, capsys.readouterr().err))
    return out


# ---- 1. a log appended to itself ------------------------------------------------------------------------

def test_a_log_appended_twice_calibrates_as_the_log_once(tmp_path):
    lines = _lines(algorithm="sliding_log", charge="actual")
    once = tmp_path / "once.jsonl"
    write_log(lines, once)
    twice = _write(tmp_path / "twice.jsonl", once.read_text().splitlines() * 2)
    a, b = calibrate(once), calibrate(twice)
    assert len(b.evidence) == len(a.evidence) == len(lines)
    assert b.service[TRUE.model].n_answered == a.service[TRUE.model].n_answered
    assert b.service[TRUE.model].output_tps.n == a.service[TRUE.model].output_tps.n
    assert (b.best.algorithm, b.best.charge) == ("sliding_log", "actual")
    assert f"{len(lines)} line(s) repeat an earlier line exactly (the log appended twice?): dropped" in \
        " ".join(b.notes)
    assert len(log_to_trace(twice).trace) == len(log_to_trace(once).trace)


def test_only_identical_lines_are_duplicates(tmp_path):
    line = {"t_send": T0, "t_recv": T0 + 0.2, "status": 429, "model": TRUE.model, "endpoint": "chat.completions",
            "max_tokens": 64, "audio_seconds": None, "usage": None, "headers": {"retry-after": "2"}, "error": None,
            "label": None, "request_id": None}
    path = _write(tmp_path / "log.jsonl", [line, dict(line), dict(line, t_recv=T0 + 0.3),  # same but its time
                                           dict(line, request_id="a"), dict(line, request_id="b")])
    log = read_log(path)
    assert len(log.records) == 4 and [n for n, _ in log.problems] == [2]


# ---- 2. epoch milliseconds ------------------------------------------------------------------------------

def test_times_in_milliseconds_are_one_clear_error(tmp_path, capsys):
    lines = [dict(x, t_send=x["t_send"] * 1000, t_recv=x["t_recv"] * 1000) for x in _lines(duration=300.0)]
    path = _write(tmp_path / "ms.jsonl", lines)
    for rc, err in _both_commands(path, tmp_path, capsys):
        assert rc == 2 and len(err.strip().splitlines()) == 1, err
        assert f"{path}: t_send 1.79e12" in err and "looks like milliseconds (allowed: epoch seconds)" in err


# ---- 7. files that are no recorder log ------------------------------------------------------------------

def _not_logs(tmp_path):
    lines = _lines(duration=300.0)
    table = pd.DataFrame([{k: v for k, v in x.items() if not isinstance(v, dict)} for x in lines])
    table.to_csv(tmp_path / "log.csv", index=False)
    table.to_parquet(tmp_path / "log.parquet")
    iso = [dict(x, t_send=pd.Timestamp(x["t_send"], unit="s").isoformat(),
                t_recv=pd.Timestamp(x["t_recv"], unit="s").isoformat()) for x in lines]
    return {"csv": tmp_path / "log.csv", "parquet": tmp_path / "log.parquet",
            "iso": _write(tmp_path / "iso.jsonl", iso), "empty": _write(tmp_path / "empty.jsonl", []),
            "array": _write(tmp_path / "array.jsonl", [json.dumps(lines)])}


@pytest.mark.parametrize("case", ["csv", "parquet", "iso", "empty", "array"])
def test_a_file_that_is_no_recorder_log_says_what_is_expected(case, tmp_path, capsys):
    path = _not_logs(tmp_path)[case]
    for rc, err in _both_commands(path, tmp_path, capsys):
        assert rc == 2 and len(err.strip().splitlines()) == 1, err
        assert err.startswith(f"groqsim: error: {path}: ") and "Traceback" not in err
        assert "expected a JSONL recorder log (sim.recorder): one JSON object per line, t_send/t_recv in epoch " \
               "seconds" in err


# ---- 3. an impossible usage -----------------------------------------------------------------------------

def test_an_answer_with_more_completion_tokens_than_max_tokens_is_left_out(tmp_path):
    lines = _lines(duration=3600.0)
    bad = next(x for x in lines if x["usage"])
    bad["usage"]["completion_tokens"] = 10 ** 12  # max_tokens is 512
    path = _write(tmp_path / "log.jsonl", lines)
    cal = calibrate(path)
    svc = cal.service[TRUE.model]
    assert svc.output_tps.value == pytest.approx(TRUE.service.output_tps, rel=0.05)
    assert svc.output_tps.low < TRUE.service.output_tps < svc.output_tps.high
    assert svc.speed_cv == pytest.approx(TRUE.service.speed_cv, abs=0.02)
    assert svc.n_answered == sum(1 for x in lines if x["usage"]) - 1
    assert "1 response(s) report more completion_tokens than their max_tokens (impossible)" in " ".join(cal.notes)
    assert (cal.best.algorithm, cal.best.charge) == (TRUE.algorithm, TRUE.charge)
    export = log_to_trace(path)
    assert export.trace["completion_tokens"].max() <= TRUE.max_tokens
    assert any("1 line(s) report more completion_tokens" in n for n in export.notes)


# ---- 4. negative round trips ----------------------------------------------------------------------------

def _answer(k, net, status=200):
    """An answered request whose network round trip (response time - queue - total) is ``net``."""
    usage = {"queue_time": 0.05 + 0.001 * k, "prompt_tokens": 100 + 50 * k, "prompt_time": 0.01 + 0.005 * k,
             "completion_tokens": 100, "completion_time": 0.2, "total_tokens": 200 + 50 * k,
             "total_time": 0.21 + 0.005 * k}
    took = net + usage["queue_time"] + usage["total_time"]
    return {"t_send": T0 + 10 * k, "t_recv": T0 + 10 * k + took, "status": status, "model": TRUE.model,
            "endpoint": "chat.completions", "max_tokens": 512, "audio_seconds": None, "usage": usage,
            "headers": {}, "error": None, "label": None, "request_id": f"r{k}"}


def test_negative_round_trips_are_left_out_not_taken_as_zero(tmp_path):
    # 10 round trips 0.10, 0.11, ..., 0.19 s (median 0.145) and 4 of -0.5 s: taken as 0 they would make the
    # median the 7th and 8th of 14, (0.12 + 0.13) / 2 = 0.125
    rows = [_answer(k, 0.10 + 0.01 * k) for k in range(10)] + [_answer(10 + k, -0.5) for k in range(4)]
    cal = calibrate(_write(tmp_path / "log.jsonl", rows))
    svc = cal.service[TRUE.model]
    assert svc.rtt.value == pytest.approx(0.145) and svc.rtt.n == 10
    assert any(n.startswith("4 of 14 round trip(s) are negative") for n in svc.notes)


def test_when_every_round_trip_is_negative_none_is_written(tmp_path):
    cal = calibrate(_write(tmp_path / "log.jsonl", [_answer(k, -0.3) for k in range(12)]))
    svc = cal.service[TRUE.model]
    assert svc.rtt is None and "rtt_median" not in svc.params()
    assert "rtt_median" not in toml_fragment(cal)
    assert any(n.startswith("12 of 12 round trip(s) are negative") for n in svc.notes)


# ---- 9. small samples -----------------------------------------------------------------------------------

def test_a_prefill_slope_whose_interval_includes_zero_is_not_a_speed(tmp_path):
    # three answers: 1668 tokens in 269 ms, 312 in 37.1 ms, 249 in 40.2 ms; ordinary least squares of
    # time/tokens on 1/tokens (1 degree of freedom, t = 12.71) puts the slope at 157 us/token, 95 % CI about
    # -342 to 657: a speed from it is noise
    rows = [_answer(k, 0.1) for k in range(3)]
    for row, (prompt, took) in zip(rows, [(1668, 0.269), (312, 0.0371), (249, 0.0402)]):
        row["usage"].update(prompt_tokens=prompt, prompt_time=took)
    svc = calibrate(_write(tmp_path / "log.jsonl", rows)).service[TRUE.model]
    assert svc.prefill_slope.low * 1e6 == pytest.approx(-342, abs=2)
    assert svc.prefill_slope.high * 1e6 == pytest.approx(657, abs=2)
    assert svc.prefill_tps is None and "prefill_tps" not in svc.params() and "prefill_fixed" not in svc.params()
    assert any("too little to tell from noise" in n and "prefill speed not estimated" in n for n in svc.notes)


def test_a_median_gets_no_95_percent_interval_from_fewer_than_six_samples():
    # the widest order-statistic interval, min to max, covers the median with 1 - 2 x 0.5^n: 93.75 % for n = 5,
    # 96.9 % for n = 6
    five, six = _median_ci(np.arange(5.0)), _median_ci(np.arange(6.0))
    assert five.value == 2.0 and math.isnan(five.low) and math.isnan(five.high)
    assert "too few for a 95% CI" in five.text() and "95% CI" not in five.text().replace("for a 95% CI", "")
    assert (six.value, six.low, six.high) == (2.5, 0.0, 5.0)
    two = _median_ci(np.array([0.1, 0.2]))
    assert two.text(".2g") == "0.15 (n=2: too few for a 95% CI)"


# ---- 10. a model named "" -------------------------------------------------------------------------------

def test_an_empty_model_name_is_unreadable(tmp_path):
    rows = [_answer(k, 0.1) for k in range(3)]
    rows[1]["model"] = ""
    log = read_log(_write(tmp_path / "log.jsonl", rows))
    assert [r["model"] for r in log.records] == [TRUE.model] * 2
    assert log.problems == [(2, "have an unreadable model: skipped")]


# ---- 5. no rate-limit headers: no tier ------------------------------------------------------------------

def test_a_log_without_limits_asserts_no_tier(tmp_path):
    lines = [dict(x, headers={}) for x in _lines() if x["status"] == 200]
    cal = calibrate(_write(tmp_path / "log.jsonl", lines))
    data = tomllib.loads(toml_fragment(cal))
    assert "tier" not in data["org"] and "tiers" not in data
    assert data["service"][TRUE.model]["output_tps"] == pytest.approx(TRUE.service.output_tps, rel=0.05)
    assert "tier: not estimated: the log shows no limit" in report_text(cal)
    # pasted into a developer-tier scenario, the developer tier stays
    data["org"]["tier"] = "developer"
    data["clients"] = [{"name": "c", "model": TRUE.model, "arrival": {"kind": "poisson", "rate": "1/min"}}]
    assert scenario_from_dict(data).spec().org.tier == "developer"


# ---- 6. a model outside the catalog ---------------------------------------------------------------------

def _uncommented(fragment: str, model: str, rpm: int, tpm: int, tier: str) -> str:
    """The fragment with the new model's commented block filled in as its comment asks."""
    out, inside = [], False
    for line in fragment.splitlines():
        if line.startswith(f'# [tiers.{tier}.overrides."{model}"]') or line.startswith(f"# [tiers.NAME.overrides."
                                                                                      f'"{model}"]'):
            inside = True
        if inside and not line.startswith("# "):
            inside = False
        out.append(line[2:].replace("RPM", str(rpm)).replace("TPM", str(tpm)).replace("NAME", tier)
                   if inside else line)
    return "\n".join(out) + "\n"


def test_a_new_model_without_limits_does_not_break_the_fragment(tmp_path):
    new = "acme/finetune-1"
    known = _lines(duration=1200.0, seed=1)
    other = [dict(x, model=new, headers={}) for x in _lines(duration=1200.0, seed=2) if x["status"] == 200]
    cal = calibrate(_write(tmp_path / "log.jsonl", sorted(known + other, key=lambda x: x["t_recv"])))
    fragment = toml_fragment(cal)
    data = tomllib.loads(fragment)
    assert new not in data.get("service", {}) and new not in data["tiers"]["calibrated"].get("overrides", {})
    data["clients"] = [{"name": "c", "model": TRUE.model, "arrival": {"kind": "poisson", "rate": "1/min"}}]
    spec = scenario_from_dict(data).spec()  # the known model runs
    assert spec.service[TRUE.model].output_tps == pytest.approx(cal.service[TRUE.model].output_tps.value, abs=0.05)
    # completed as its comment says, the new model runs too, at its calibrated speed
    data = tomllib.loads(_uncommented(fragment, new, 30, 6000, "calibrated"))
    data["clients"] = [{"name": "c", "model": new, "arrival": {"kind": "poisson", "rate": "1/min"}}]
    spec = scenario_from_dict(data).spec()
    assert spec.catalog.limits("calibrated", new).items() == [("rpm", 30), ("tpm", 6000)]
    assert spec.service[new].output_tps == pytest.approx(cal.service[new].output_tps.value, abs=0.05)
    assert cal.new_models == [new] and any(new in n and "commented out" in n for n in cal.notes)


def test_a_log_of_a_new_model_alone_leaves_limits_to_fill_in(tmp_path):
    new = "acme/finetune-1"
    lines = [dict(x, model=new, headers={}) for x in _lines(duration=900.0) if x["status"] == 200]
    cal = calibrate(_write(tmp_path / "log.jsonl", lines))
    fragment = toml_fragment(cal)
    assert tomllib.loads(fragment) == {"org": {}}
    data = tomllib.loads(_uncommented(fragment, new, 30, 6000, "mine"))
    data["tiers"]["mine"]["base"] = "free"
    data["org"]["tier"] = "mine"
    data["clients"] = [{"name": "c", "model": new, "arrival": {"kind": "poisson", "rate": "1/min"}}]
    assert scenario_from_dict(data).spec().catalog.limits("mine", new).items() == [("rpm", 30), ("tpm", 6000)]


def test_a_clock_step_in_the_log_is_said_to_leave_no_limiter_finding(tmp_path):
    """The shipped example log with the client's clock stepped 10 s forward from its 150th line: no hypothesis
    replays it (the token bucket, its truth, then misses 15.9 % of its 429 decisions), so the report says that
    and the fragment keeps the defaults; stepped 2 s, the bucket misses 3.9 % and is still the finding."""
    from pathlib import Path
    lines = Path(__file__).resolve().parents[1].joinpath("scenarios", "logs", "example_groq_calls.jsonl") \
        .read_text().splitlines()

    def stepped(seconds):
        rows = [json.loads(x) for x in lines]
        for r in rows[150:]:
            r["t_send"] += seconds
            r["t_recv"] += seconds
        return calibrate(_write(tmp_path / f"step{seconds}.jsonl", rows))
    far = stepped(10)
    assert far.best.name == "token_bucket / charge max_tokens" and not far.best.explains
    assert far.best.components["decision"] == pytest.approx(0.159, abs=0.001)
    assert "  no hypothesis explains this log: the best, token_bucket / charge max_tokens, misses 15.9% " in \
        report_text(far)
    assert 'limiter = "token_bucket"  # the default: no hypothesis explains the log' in toml_fragment(far)
    near = stepped(2)
    assert near.best.explains and near.best.components["decision"] == pytest.approx(0.039, abs=0.001)
    assert 'limiter = "token_bucket"  # ranked 1st of 8' in toml_fragment(near)
