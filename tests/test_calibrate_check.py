"""The calibration's check: the log's attempts simulated on the calibrated scenario, beside the log.  The log's
figures are counted here from the JSONL lines themselves, not through the package; a calibration made wrong
on purpose shows in the check; a fragment that cannot run alone is said, not checked."""
import json
import math
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from sim.calibrate import calibrate
from sim.calibration_check import (CHECK_FILES, CHECK_REPLICATIONS, FIGURES, check_calibration, check_text,
                                  logged_figures, remove_earlier, why_not)
from sim.cli import main
from sim.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]
LOG = ROOT / "scenarios" / "logs" / "example_groq_calls.jsonl"
MODEL = "llama-3.1-8b-instant"


@pytest.fixture(scope="module")
def cal():
    return calibrate(LOG)


def _by_figure(check) -> dict:
    return {r.figure: r for r in check.table.itertuples()}


def test_the_example_logs_attempts_replay_on_its_calibration(cal, tmp_path):
    """The shipped log (a token bucket charging max_tokens, Free with TPM 2x, known service figures): its 333
    attempts, sent as logged and never retried, are refused as often on the calibrated scenario as in the log --
    the same attempts, to the last one -- and answered about as fast (p50 and p95 within 10 %)."""
    lines = [json.loads(x) for x in LOG.read_text().splitlines()]
    ok = [x["t_recv"] - x["t_send"] for x in lines if x["status"] == 200]
    refused = sum(x["status"] == 429 for x in lines)
    check_calibration(cal, str(tmp_path))  # (a path as text; the check made again into the same directory)
    check = check_calibration(cal, str(tmp_path))
    got = _by_figure(check)
    assert not any("failed on the client" in n or "Groq charged" in n for n in check.notes)
    for label, key in FIGURES:  # mean and 95 % interval (Student's t) over the replications' own figures
        runs = check.runs[key].to_numpy(float)
        assert got[label].simulated == pytest.approx(runs.mean())
        if np.ptp(runs) > 0:
            lo, hi = stats.t.interval(0.95, len(runs) - 1, loc=runs.mean(), scale=stats.sem(runs))
            assert got[label].ci95 == pytest.approx((hi - lo) / 2)
    assert check.attempts == len(lines) == 333 and check.replications == CHECK_REPLICATIONS == 3
    assert got["share answered"].logged == len(ok) / len(lines)
    assert got["429s per attempt"].logged == refused / len(lines)
    for p in (50, 95, 99):
        assert got[f"latency p{p} (s)"].logged == pytest.approx(np.percentile(ok, p))
    assert got["share answered"].simulated == pytest.approx(len(ok) / len(lines), abs=1e-12)
    assert got["429s per attempt"].simulated == pytest.approx(refused / len(lines), abs=1e-12)
    assert got["429s per attempt"].ci95 == 0.0  # (the same in every run: the limits decide, not the draws)
    for p in (50, 95):
        assert 0.9 < got[f"latency p{p} (s)"].ratio < 1.1
        assert got[f"latency p{p} (s)"].ci95 > 0  # (the service times are drawn: runs differ)
    assert [f.name for f in check.files] == ["check_attempts.csv", "check.toml"]
    scenario = load_scenario(tmp_path / "check.toml")
    assert scenario.org.tier == "calibrated" and scenario.scenario.replications == 3
    (client,) = scenario.clients
    assert client.policy == "no-retry" and client.arrival.kind == "trace"
    assert scenario.spec().service[MODEL].output_tps == round(cal.service[MODEL].params()["output_tps"], 1)
    text = check_text(check)
    assert text.startswith("check: the log's 333 attempt(s), each sent when the log sent it and never retried")
    assert "  429s per attempt           0.3904     0.3904        0    1.000\n" in text


def test_a_calibration_made_wrong_shows_in_the_check(cal, tmp_path):
    """Half the TPM the log showed: the simulated attempts are refused more often than the logged ones; a
    slower output speed: the answers take longer."""
    tier = cal.tier
    halved = replace(cal, tier=replace(tier, overrides={MODEL: {**tier.overrides[MODEL], "tpm": 6000}}))
    got = _by_figure(check_calibration(halved, tmp_path / "tpm"))
    assert got["429s per attempt"].ratio > 1.2 and got["share answered"].ratio < 0.9
    service = cal.service[MODEL]
    slow = replace(cal, service={MODEL: replace(service, output_tps=replace(service.output_tps,
                                                                             value=service.output_tps.value / 4))})
    got = _by_figure(check_calibration(slow, tmp_path / "slow"))
    assert got["latency p50 (s)"].ratio > 1.1 and got["latency p95 (s)"].ratio > 1.3


def test_a_fragment_that_cannot_run_alone_is_said_not_checked(cal, tmp_path, capsys):
    assert why_not(cal) is None
    assert why_not(replace(cal, new_models=["mine/new"])) == (
        "mine/new: in no published tier and no limit of its shown, so the fragment cannot run it (its limits are "
        "left to fill in)")
    blind = replace(cal, limits={m: replace(f, observed={}) for m, f in cal.limits.items()})
    assert why_not(blind) == "the log shows no limit, so the fragment sets no tier to simulate it on"
    with pytest.raises(ValueError, match="check_calibration: the log shows no limit"):
        check_calibration(blind, tmp_path)
    # on the command line: a log without headers or 429s is calibrated, and its check said not to be made
    log = tmp_path / "bare.jsonl"
    answers = [x for x in map(json.loads, LOG.read_text().splitlines()) if x["status"] == 200]
    log.write_text("".join(json.dumps({**x, "headers": {}}) + "\n" for x in answers))
    assert main(["calibrate", str(log), "--out", str(tmp_path / "out"), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert out.endswith("\ncheck: not made: the log shows no limit, so the fragment sets no tier to simulate it on\n")
    assert (tmp_path / "out" / "report.txt").read_text().endswith(out[out.rindex("\ncheck:"):])
    assert not (tmp_path / "out" / "check.toml").exists()


def test_attempts_that_failed_on_the_client_are_left_out_of_the_check(cal, tmp_path):
    """A line of a timed-out attempt (no status, an error of type timeout) has no answer to compare: the check
    leaves it out and says how many; a line of an endpoint the simulator does not model is named by its line."""
    lines = LOG.read_text().splitlines()
    first = json.loads(lines[0])
    timed_out = {**first, "status": None, "usage": None, "headers": {}, "request_id": None,
                 "error": {"type": "timeout", "message": "Request timed out."}}
    embedding = {**json.loads(lines[1]), "endpoint": "embeddings", "request_id": "emb_1"}  # (not modelled)
    log = tmp_path / "with_timeout.jsonl"
    log.write_text("\n".join([*lines, json.dumps(timed_out), json.dumps(embedding)]) + "\n")
    check = check_calibration(calibrate(log), tmp_path / "out")
    assert check.attempts == 333
    assert "1 attempt(s) that failed on the client (no answer) left out of the check" in check.notes
    assert ("1 line(s) have an endpoint the simulator does not model ('embeddings'; allowed: chat.completions, "
            "audio.transcriptions, audio.translations): left out (line 335)") in check.notes
    assert "\n  note: 1 attempt(s) that failed on the client (no answer) left out of the check\n" in check_text(check)
    assert not math.isnan(_by_figure(check)["latency p99 (s)"].simulated)


def test_one_replication_has_no_interval_and_a_log_without_429s_no_ratio_of_them(cal, tmp_path):
    one = check_calibration(cal, tmp_path / "one", replications=1)
    assert one.table["ci95"].isna().all() and len(one.runs) == 1
    assert "  share answered             0.6096     0.6096      nan    1.000\n" in check_text(one)
    log = tmp_path / "answers.jsonl"  # the answers alone, headers kept: limits seen, no 429
    log.write_text("".join(x + "\n" for x in LOG.read_text().splitlines() if json.loads(x)["status"] == 200))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # (no division by the log's 0)
        got = _by_figure(check_calibration(calibrate(log), tmp_path / "answers"))
    assert got["429s per attempt"].logged == 0.0 and math.isnan(got["429s per attempt"].ratio)
    assert got["share answered"].logged == 1.0


def test_a_log_with_no_answer_has_no_latency_to_show():
    from sim.tracelog import TraceExport
    outcomes = pd.DataFrame({"answered": [False, False], "served": [False, False], "attempts": [1, 1],
                             "n429": [1, 0], "latency": [0.3, 0.4]})
    refused = TraceExport(pd.DataFrame(), 2, 0, outcomes=outcomes)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = logged_figures(refused)
    assert got["success_ratio"] == 0.0 and got["n429_per_attempt"] == 0.5
    assert all(math.isnan(got[f"latency_p{p}"]) for p in (50, 95, 99))


def test_an_earlier_checks_files_are_removed_only_when_check_toml_is_a_checks(cal, tmp_path):
    made = check_calibration(cal, tmp_path / "made")
    (tmp_path / "made" / "check.csv").write_text("figure\n")  # (the command line writes it)
    assert sorted(remove_earlier(str(tmp_path / "made"))) == sorted(tmp_path / "made" / f for f in CHECK_FILES)
    assert not any(f.exists() for f in made.files) and not (tmp_path / "made" / "check.csv").exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    for name in CHECK_FILES:
        (mine / name).write_text("# my own check\n")
    assert remove_earlier(mine) == [] and all((mine / f).exists() for f in CHECK_FILES)
    assert remove_earlier(tmp_path / "absent") == []


def test_a_400_groq_charged_counts_as_answered_and_a_malformed_requests_400_does_not(tmp_path):
    """A 400 ``json_validate_failed`` / ``tool_use_failed`` comes after the model wrote its answer: the service
    served it (and the limits charged it), as the simulation serves every admitted attempt.  The check's logged
    figures count it answered, with its latency, and say how many; a 400 without such a code (a malformed
    request, refused before the limits) is not answered.  Counted here from the lines themselves."""
    lines = [json.loads(x) for x in LOG.read_text().splitlines()]
    failed = {"message": "Failed to generate JSON. Please adjust your prompt. See 'failed_generation' for more "
                         "details.", "type": "invalid_request_error", "code": "json_validate_failed",
              "failed_generation": "{\"a\": ["}
    answers = [i for i, x in enumerate(lines) if x["status"] == 200]
    charged, malformed = answers[10:40:3], answers[50:53]
    for k, i in enumerate(charged):
        lines[i] = {**lines[i], "status": 400, "usage": None,
                    "error": failed | ({"code": "tool_use_failed"} if k % 2 else {})}
    bad = {"message": "'messages' : property 'messages' is missing", "type": "invalid_request_error"}
    for i in malformed:
        lines[i] = {**lines[i], "status": 400, "usage": None, "error": bad}
    log = tmp_path / "charged.jsonl"
    log.write_text("".join(json.dumps(x) + "\n" for x in lines))
    check = check_calibration(calibrate(log), tmp_path / "out")
    got = _by_figure(check)
    served = [x["t_recv"] - x["t_send"] for i, x in enumerate(lines) if x["status"] == 200 or i in charged]
    assert len(served) == len(answers) - len(malformed) and len(charged) == 10
    assert got["share answered"].logged == len(served) / 333
    for p in (50, 95, 99):
        assert got[f"latency p{p} (s)"].logged == pytest.approx(np.percentile(served, p))
    assert got["429s per attempt"].logged == sum(x["status"] == 429 for x in lines) / 333
    assert ("10 attempt(s) answered a 400 Groq charged (json_validate_failed or tool_use_failed: a structured answer "
            "written, then failed) counted as answered, with their latency: the simulation, which writes no answers, "
            "serves them") in check.notes
