"""``groqsim calibrate``'s report and TOML fragment rendered from a calibration built by hand: every figure it
prints is the one it was given (a slope as a speed, seconds as milliseconds, a CI and its n), every section
appears exactly when its estimate exists, and what was not estimated is said."""
import math
import tomllib

import numpy as np
import pandas as pd

from sim.calibrate import Calibration
from sim.calibrate.limits_fit import LimitsFit, Observed, TierMatch
from sim.calibrate.output import report_text, toml_fragment, write_outputs
from sim.calibrate.replay import Hypothesis
from sim.calibrate.service_fit import Figure, ServiceFit
from sim.recorder import Log

CHAT, STT = "openai/gpt-oss-20b", "whisper-large-v3"


def _evidence():
    # 3 Groq lines of the chat model (2 answered, one 429) and one transcription; one line from elsewhere
    return pd.DataFrame({"model": [CHAT, CHAT, CHAT, STT, CHAT], "status": [200, 200, 429, 200, 200],
                         "groq": [True, True, True, True, False]})


def _hyp(algorithm, charge, score, rank, indist=False, p=math.nan, decision=0.025):
    comps = {"remaining_tokens": 12.345, "reset_tokens": math.nan, "remaining_requests": 0.5, "reset_requests": 1.0,
             "decision": decision}
    return Hypothesis(algorithm, charge, score, comps, np.zeros(2), pd.DataFrame(), rank, indist, p)


def _full():
    chat = ServiceFit(CHAT, 2, output_tps=Figure(412.34, 400.0, 424.0, 30), output_median=Figure(405.0, 0, 0, 30),
                      speed_cv=0.125, prefill_slope=Figure(0.0002, 0.00015, 0.00025, 40),
                      prefill_fixed=Figure(0.012, 0.008, 0.016, 40), prefill_tps=5000.0,
                      queue_median=Figure(0.05, 0.04, 0.06, 25), queue_p90=0.2, queue_sigma=0.75,
                      queue_fit={"statistic": 0.41, "p_value": 0.3, "verdict": "fits"},
                      rtt=Figure(0.08, math.nan, math.nan, 1), rtt_p90=0.1, notes=["chat note"])
    stt = ServiceFit(STT, 1, kind="stt", audio_slope=Figure(0.004, 0.003, 0.005, 12),
                     audio_fixed=Figure(0.25, 0.2, 0.3, 12), audio_speed_factor=None, notes=["stt note"])
    cal = Calibration(Log("app.jsonl", [{}] * 5, lines=6), _evidence(), service={CHAT: chat, STT: stt},
                      limits={CHAT: LimitsFit(CHAT, {"rpd": Observed(14400, "headers", 3, 0),
                                                     "rpm": Observed(30, "429 messages", 1, 0)}, ["limits note"]),
                              STT: LimitsFit(STT)},
                      tier=TierMatch("free", {CHAT: {"rpm": 30}}, "free, except RPM 1.5x: a custom tier", {},
                                     {"free": (1, 2, 0.4), "developer": (0, 2, 3.0)}),
                      hypotheses=[_hyp("token_bucket", "max_tokens", 0.1234, 1),
                                  _hyp("fixed_window", "max_tokens", 0.13, 2, True, 0.4, math.nan),
                                  _hyp("sliding_log", "actual", 0.9, 3, False, 0.0012)],
                      notes=["log note"], unknown=["audio speed of whisper-large-v3"])
    return cal


def test_the_report_prints_each_estimate_as_given():
    text = report_text(_full())
    lines = text.splitlines()
    assert lines[0] == "calibration of app.jsonl: 6 line(s), 5 usable, 4 from Groq"
    assert lines[1] == "  note: log note"
    assert f"\n{CHAT}: 2 answered, 1 refused (429)\n" in text
    assert f"\n{STT}: 1 answered transcription(s), no usage, 0 refused (429)\n" in text
    assert ("  audio speed      250x real time from the slope (4 ms per audio second, 95% CI 3-5, n=12), fixed "
            "part 0.25 s (95% CI 0.2-0.3); audio_speed_factor = not estimated (note below)") in lines
    assert "  output speed     mean 412.3 t/s (95% CI 400-424, n=30); median 405 t/s, cv 0.125" in lines
    assert ("  prefill          5000 t/s from the slope (200 us/token, 95% CI 150-250, n=40), fixed part 12 ms "
            "(95% CI 8-16); prefill_tps = 5000") in lines
    assert ("  queue_time       lognormal median 0.05 s (95% CI 0.04-0.06, n=25), p90 0.2 s, sigma 0.750; "
            "Anderson-Darling 0.41, p~0.3: fits") in lines
    assert "  network rtt      median 0.08 s (n=1: too few for a 95% CI), p90 0.1 s" in lines
    assert ["  note: chat note", "  limits seen      RPD 14400 (headers, n=3), RPM 30 (429 messages, n=1)",
            "  note: limits note"] == [x for x in lines if x.startswith(("  note: chat", "  limits seen      RPD",
                                                                         "  note: limits"))]
    assert "  limits seen      none" in lines and "  note: stt note" in lines
    assert "tier: free, except RPM 1.5x: a custom tier" in lines
    assert "  free: 1/2 observed limits equal; developer: 0/2 observed limits equal" in lines
    assert ("\nlimiter x charge, replayed (error per response: header residuals / limit or window + 1 per wrong 429 "
            "decision; lower is better)\n") in text
    rows = [x.split() for x in lines if x.split()[:1] in (["1"], ["2"], ["3"])]
    assert rows == [["1", "token_bucket", "max_tokens", "0.1234", "12.3", "-", "0.5", "2.5%", "best"],
                    ["2", "fixed_window", "max_tokens", "0.1300", "12.3", "-", "0.5", "-", "indistinguishable"],
                    ["3", "sliding_log", "actual", "0.9000", "12.3", "-", "0.5", "2.5%", "worse", "(p=0.0012)"]]
    assert "sliding_log       actual  0.9000" in text  # rank and algorithm left-aligned, the rest right
    assert ("  best: token_bucket / charge max_tokens; the log cannot tell it from fixed_window / charge "
            "max_tokens") in lines
    assert lines[-2:] == ["not estimated:", "  - audio speed of whisper-large-v3"]


def test_the_report_leaves_out_what_was_not_estimated():
    cal = _full()
    cal.service[STT].audio_speed_factor = 250.0
    cal.service[CHAT].prefill_tps = None
    cal.hypotheses[1].indistinguishable = False
    cal.unknown = []
    text = report_text(cal)
    assert "audio_speed_factor = 250\n" in text and "prefill_tps = not estimated (note below)" in text
    assert "every other hypothesis fits significantly worse" in text and "not estimated:" not in text
    bare = Calibration(Log("none.jsonl", [], lines=0), pd.DataFrame(columns=["model", "status", "groq"]),
                       service={CHAT: ServiceFit(CHAT, 0)})
    assert report_text(bare) == ("calibration of none.jsonl: 0 line(s), 0 usable, 0 from Groq\n\n"
                                 f"{CHAT}: 0 answered, 0 refused (429)\n")
    unseen = Calibration(Log("l.jsonl", [], lines=1), _evidence(), limits={CHAT: LimitsFit(CHAT)},
                         tier=TierMatch("free", {}, "tier unknown: no limit was observed", {}, {}))
    assert "\ntier: not estimated: the log shows no limit" in report_text(unseen)
    assert "observed limits equal" not in report_text(unseen)


def test_the_fragment_sets_the_tier_limiter_and_service_the_log_supports():
    cal = _full()
    text = toml_fragment(cal)
    data = tomllib.loads(text)
    assert data["org"] == {"tier": "calibrated", "limiter": "token_bucket", "accounting": {"charge": "max_tokens"}}
    assert 'limiter = "token_bucket"  # ranked 1st of 3; the log cannot tell it from fixed_window / charge ' \
           'max_tokens' in text
    assert data["tiers"]["calibrated"] == {"base": "free", "overrides": {CHAT: {"rpm": 30}}}
    assert "\n# free, except RPM 1.5x: a custom tier\n" in text
    # the fixed part divided by E[1/S] = 1 + cv^2 (the simulator divides it by the speed factor too), to 4 digits
    assert data["service"][CHAT] == {"output_tps": 412.3, "prefill_tps": 5000.0, "prefill_fixed": 0.01182,
                                     "speed_cv": 0.125, "queue_median": 0.05, "queue_p90": 0.2,
                                     "rtt_median": 0.08, "rtt_p90": 0.1}
    assert f'[service."{CHAT}"]  # from 2 answered request(s)' in text
    assert STT not in data.get("service", {})  # nothing estimated of it: no section
    cal.hypotheses = []
    cal.tier = TierMatch("free", {}, "tier unknown: no limit was observed", {}, {})
    cal.limits = {CHAT: LimitsFit(CHAT)}
    text = toml_fragment(cal)
    assert "# tier: not estimated (the log shows no limit" in text and "tiers" not in tomllib.loads(text)
    assert "# limiter and accounting: not estimated (no headers or 429s to replay)" in text


def test_a_best_that_misses_too_many_decisions_is_no_finding():
    """The best hypothesis missing more than 5 % of its 429 decisions explains nothing (a clock step, lines lost,
    another key's traffic): the report says so and why, and the fragment keeps the defaults (it wrote the best,
    a window limiter, 'ranked 1st' with every other 'significantly worse')."""
    cal = _full()
    cal.hypotheses = [_hyp("sliding_log", "actual", 0.12, 1, decision=0.051),
                      _hyp("token_bucket", "max_tokens", 0.19, 2, False, 0.0005, decision=0.18)]
    lines = report_text(cal).splitlines()
    assert ("  no hypothesis explains this log: the best, sliding_log / charge actual, misses 5.1% of its 429 "
            "decisions (one of a log that the limits alone made misses at most 5%).  Usual causes: a step in the "
            "client's clock, lines missing (streams not read to the end, a process that died), other keys of "
            "the organization spending the same limits, or a client's log of `groqsim serve --time-scale K` with "
            "K != 1 (its times are real seconds, not the limiter's: calibrate the server's own requests.jsonl).  "
            "The fragment keeps the default token bucket") in lines
    assert not any(line.startswith("  best:") for line in lines)
    text = toml_fragment(cal)
    assert tomllib.loads(text)["org"] == {"tier": "calibrated", "limiter": "token_bucket",
                                          "accounting": {"charge": "max_tokens"}}
    assert ('limiter = "token_bucket"  # the default: no hypothesis explains the log (the best, sliding_log / '
            'charge actual, misses 5.1% of its 429 decisions; see the report)') in text
    cal.hypotheses[0].components["decision"] = 0.05  # at the bound: a finding
    assert 'limiter = "sliding_log"  # ranked 1st of 2' in toml_fragment(cal).splitlines()
    cal.hypotheses[0].components["decision"] = math.nan  # no decision scored (all in the burn-in): a finding
    assert 'limiter = "sliding_log"' in toml_fragment(cal) and "  best: sliding_log" in report_text(cal)


def test_the_fragment_rounds_each_figure_to_what_the_log_can_tell():
    """speed_cv to 3 decimals, prefill_tps to a whole token a second, output_tps to one decimal."""
    cal = _full()
    chat = cal.service[CHAT]
    chat.speed_cv, chat.prefill_tps = 0.12345, 5000.46
    chat.output_tps = Figure(412.3456, 400.0, 424.0, 30)
    service = tomllib.loads(toml_fragment(cal))["service"][CHAT]
    assert (service["speed_cv"], service["prefill_tps"], service["output_tps"]) == (0.123, 5000.0, 412.3)


def test_the_fragment_without_a_published_base_or_overrides_and_with_a_new_model():
    cal = _full()
    cal.tier = TierMatch(None, {CHAT: {"rpm": 30}}, "tier unknown: no model of the log is in the published table",
                         {}, {})
    text = toml_fragment(cal)
    assert "# tier unknown: no model of the log is in the published table (the base 'free' only carries the " \
           "limits below)\n" in text and tomllib.loads(text)["tiers"]["calibrated"]["base"] == "free"
    cal.tier = TierMatch("developer", {}, "matches the published developer tier on every observed limit", {},
                         {"developer": (2, 2, 0.0)})
    data = tomllib.loads(toml_fragment(cal))
    assert data["tiers"]["calibrated"] == {"base": "developer"}  # no empty overrides table
    text = report_text(cal)
    assert "  developer: 2/2 observed limits equal" in text
    cal.tier = TierMatch("developer", {}, "matches the published developer tier on every observed limit", {}, {})
    assert "observed limits equal" not in report_text(cal) and "\n  \n" not in report_text(cal)
    # a new model: its service section commented out under a tier override the user completes
    cal.new_models = [CHAT]
    text = toml_fragment(cal)
    assert (f'# [tiers.calibrated.overrides."{CHAT}"]\n# rpm = RPM\n# tpm = TPM\n# [service."{CHAT}"]') in text
    assert "# limits (units: rpm, rpd, tpm, tpd, ash, asd)\n" in text and "NAME" not in text
    cal.tier = None  # no tier estimated at all: nothing said of it, and the new model's tier is the user's
    text = toml_fragment(cal)
    assert "# tier" not in text and 'tier = "calibrated"' not in text
    assert f'# [tiers.NAME.overrides."{CHAT}"]' in text and ", NAME by a custom tier ([tiers.NAME], a base)" in text


def test_a_transcription_models_speed_factor_is_its_one_section_key(tmp_path):
    cal = _full()
    cal.service[STT].audio_speed_factor = 250.44
    assert tomllib.loads(toml_fragment(cal))["service"][STT] == {"audio_speed_factor": 250.4}  # one decimal


def test_the_outputs_go_to_a_new_folder_and_a_file_that_cannot_be_written_is_said(tmp_path):
    cal = _full()
    out = tmp_path / "a" / "b"
    errors = []
    files = write_outputs(cal, str(out), plots=False, errors=errors)  # (a str: as the command passes it)
    assert files == [out / "calibrated.toml", out / "report.txt"] and errors == []
    assert (out / "report.txt").read_text() == report_text(cal)
    (out / "calibrated.toml").unlink()
    (out / "calibrated.toml").mkdir()  # a folder where the fragment goes: that file fails, the report is written
    (out / "report.txt").unlink()
    files = write_outputs(cal, out, plots=False, errors=errors)
    assert files == [out / "report.txt"] and len(errors) == 1 and "calibrated.toml" in errors[0]


def test_the_report_counts_every_status_of_a_model():
    """Every line of a model is counted: a 413 (too large) and any other status next to the 429s (the report
    said "206 answered, 1238 refused (429)" of a log of 1 445 lines, leaving out its one 413)."""
    cal = _full()
    cal.evidence = pd.DataFrame({"model": [CHAT] * 8 + [STT],
                                 "status": [200, 200, 429, 413, 413, 498, 500, 498, 200], "groq": [True] * 9})
    text = report_text(cal)
    assert (f"\n{CHAT}: 2 answered, 1 refused (429), 2 too large (413), other statuses: 2 x 498, 1 x 500\n"
            in text)
    assert f"\n{STT}: 1 answered transcription(s), no usage, 0 refused (429)\n" in text
