"""What ``calibrate`` says of a log beside its estimates: lines it left out and why (client failures, responses
not from Groq, another service tier, unknown endpoints), several models, a limiter replay it skipped for want
of usage (at its 90 % edge), and a log with nothing to calibrate."""
import json
from pathlib import Path

from sim.calibrate import calibrate
from sim.calibrate.output import toml_fragment
from sim.recorder import KEYS, OPTIONAL_KEYS

EXAMPLE = Path(__file__).resolve().parent.parent / "scenarios" / "logs" / "example_groq_calls.jsonl"
MODEL = "llama-3.1-8b-instant"


def _example():
    return [json.loads(x) for x in EXAMPLE.read_text().splitlines() if x.strip()]


def _write(tmp_path, records, name="log.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps({k: r.get(k) for k in KEYS + OPTIONAL_KEYS}) + "\n" for r in records))
    return path


def _odd(base, t, **kw):
    return {**base, "t_send": t, "t_recv": t + 0.5, "request_id": f"odd-{t}", **kw}


def test_lines_left_out_are_counted_and_said(tmp_path):
    lines = _example()
    first, t = lines[0], lines[-1]["t_send"]
    odd = [
        _odd(first, t + 1, status=None, usage=None, headers={},  # timed out on the client (twice)
             error={"type": "timeout", "code": "client_timeout", "message": "ReadTimeout: timed out"}),
        _odd(first, t + 2, status=None, usage=None, headers={},
             error={"type": "timeout", "code": "client_timeout", "message": "ReadTimeout: timed out"}),
        _odd(first, t + 3, status=None, usage=None, headers={},
             error={"type": "connection", "code": "connection_error", "message": "ConnectError"}),
        _odd(first, t + 4, status=502, usage=None, headers={}, error=None),  # a proxy's: not from Groq
        _odd(first, t + 5, status=503, usage=None, headers={}, error=None),
        _odd(first, t + 6, endpoint="embeddings"),                           # an endpoint not modelled
        _odd(first, t + 7, service_tier="flex"), _odd(first, t + 8, service_tier="flex"),
        _odd(first, t + 9, service_tier="auto"),
        _odd(first, t + 10, model="openai/gpt-oss-20b", headers={}),        # a second model
    ]
    cal = calibrate(_write(tmp_path, lines + odd))
    notes = "\n".join(cal.notes)
    assert ("3 attempt(s) failed on the client (connection: 1, timeout: 2): no answer to fit, left out (groqsim "
            "trace counts them as attempts)") in cal.notes
    assert ("2 response(s) carry neither usage, x-ratelimit-* headers nor a Groq rate-limit message (not from "
            "Groq? statuses 502: 1, 503: 1): left out") in cal.notes
    assert "1 response(s) of unknown endpoint kept as chat completions" in cal.notes
    assert (f"2 models in the log ({MODEL}, openai/gpt-oss-20b): each is calibrated on its own rows; the limiter "
            "ranking uses them all (one organization, one limiter)") in cal.notes
    assert ("3 line(s) of another service tier (auto: 1, flex: 2) left out of the limits and the limiter replay, "
            "which are the on-demand tier's; kept for the service fits") in cal.notes
    assert "impossible" not in notes and cal.models == [MODEL, "openai/gpt-oss-20b"]
    # the clean example says none of it
    clean = calibrate(EXAMPLE)
    assert not any(k in "\n".join(clean.notes) for k in ("failed on the client", "not from Groq", "unknown endpoint",
                                                          "models in the log", "another service tier"))


def _skipped_as_said(cal, model: str, said: str, skipped: bool) -> None:
    """The replay of ``model`` skipped (or not) and said (or not) with ``said``; a skipped replay is said once,
    not again as "no headers or 429s to replay", and scores no hypothesis."""
    assert (said in cal.unknown) is skipped and (cal.replay_skipped == [model]) is skipped
    assert bool(cal.hypotheses) is not skipped
    assert not any(u.startswith("limiter algorithm and charging rule") for u in cal.unknown)


def test_the_replay_needs_usage_on_nine_answers_in_ten(tmp_path):
    lines = _example()
    answered = [k for k, r in enumerate(lines) if r["status"] == 200 and r["endpoint"] == "chat.completions"]
    edge = max(k for k in range(len(answered)) if len(answered) - k >= 0.9 * len(answered))
    for drop, skipped in ((edge, False), (edge + 1, True)):
        cut = [dict(r) for r in lines]
        for k in answered[:drop]:
            cut[k]["usage"] = None  # the headers stay: still Groq's
        cal = calibrate(_write(tmp_path, cut, f"log{drop}.jsonl"))
        said = (f"{MODEL}: limiter replay skipped: {drop} of {len(answered)} answered chat requests have no usage, so "
                "what they were charged is unknown")
        _skipped_as_said(cal, MODEL, said, skipped)


def test_the_replay_needs_the_length_of_nine_transcriptions_in_ten(tmp_path):
    """A transcription is charged its audio seconds: one of unknown length (an mp3 upload answered in json) is an
    unknown charge, like a chat answer without usage.  Charged 0 s instead, a log whose 429s the audio limit
    made was "explained by no hypothesis"; past a tenth unknown the replay is skipped, saying why."""
    whisper, t0 = "whisper-large-v3", 1_793_577_600.0 + 3600
    headers = {"x-ratelimit-limit-requests": "2000", "x-ratelimit-reset-requests": "43.2s"}
    lines = [{"t_send": t0 + 10 * k, "t_recv": t0 + 10 * k + 1, "status": 200, "model": whisper,
              "endpoint": "audio.transcriptions", "max_tokens": None, "audio_seconds": 30.0, "usage": None,
              "headers": {**headers, "x-ratelimit-remaining-requests": str(1999 - k)}, "error": None,
              "label": "app", "request_id": f"w{k}"} for k in range(20)]
    for unknown, skipped in ((2, False), (3, True)):
        cut = [dict(r, audio_seconds=None) if k < unknown else r for k, r in enumerate(lines)]
        cal = calibrate(_write(tmp_path, cut, f"w{unknown}.jsonl"))
        said = (f"{whisper}: limiter replay skipped: {unknown} of 20 answered transcriptions have no audio_seconds "
                "(no WAV upload, no duration answered), so what they were charged is unknown")
        _skipped_as_said(cal, whisper, said, skipped)
    assert ("# limiter and accounting: not estimated (replay skipped: what the answers were charged is unknown; see "
            "the report)") in toml_fragment(cal)


def test_a_log_with_nothing_to_calibrate_says_so(tmp_path):
    first = _example()[0]
    failures = [_odd(first, 1e9 + k, status=None, usage=None, headers={},
                     error={"type": "timeout", "code": "client_timeout", "message": "ReadTimeout"}) for k in range(2)]
    cal = calibrate(_write(tmp_path, failures, "fail.jsonl"))
    assert cal.unknown == ["everything: the log has no usable line"] and cal.service == {}
    foreign = [_odd(first, 1e9 + k, status=502, usage=None, headers={}, error=None) for k in range(2)]
    cal = calibrate(_write(tmp_path, foreign, "foreign.jsonl"))
    assert cal.unknown == ["everything: no response in the log comes from Groq"] and cal.service == {}


def test_the_replay_is_given_half_the_median_round_trip_and_the_median_sizes(monkeypatch):
    import numpy as np

    import sim.calibrate as cal_mod
    seen = []
    monkeypatch.setattr(cal_mod, "rank_hypotheses", lambda per_model, pool: seen.extend(per_model) or [])
    cal = calibrate(EXAMPLE)
    ((rows, limits, one_way, pm, cm),) = seen
    ok = rows[rows["status"] == 200]
    assert one_way == cal.service[MODEL].rtt.value / 2 > 0
    assert pm == float(np.median(ok["prompt_tokens"])) and cm == float(np.median(ok["completion_tokens"]))
    assert set(rows["status"]) == {200, 429} and len(rows) == len(cal.evidence)
    # the observed RPD and TPM over the free tier's others (llama-3.1-8b-instant: RPM 30, TPD 500 000)
    assert (limits.rpd, limits.tpm, limits.rpm, limits.tpd) == (14400, 12000, 30, 500_000)


def test_the_replay_takes_each_models_on_demand_answers_refusals_and_413s(monkeypatch, tmp_path):
    import sim.calibrate as cal_mod
    seen = []
    monkeypatch.setattr(cal_mod, "rank_hypotheses", lambda per_model, pool: seen.extend(per_model) or [])
    lines = _example()
    first, t = lines[0], lines[-1]["t_send"]
    too_large = {"message": "Request too large for model `llama-3.1-8b-instant` in organization `org_1` service "
                            "tier `on_demand` on tokens per minute (TPM): Limit 12000, Requested 20000, please "
                            "reduce your message size and try again.", "type": "tokens", "code": "rate_limit_exceeded"}
    odd = [_odd(first, t + 1, service_tier="flex"), _odd(first, t + 2, status=500, usage=None, error={
        "message": "internal", "type": "internal_server_error", "code": None}),
           _odd(first, t + 3, status=413, usage=None, error=too_large),
           _odd(first, t + 4, model="openai/gpt-oss-20b")]
    calibrate(_write(tmp_path, lines + odd))
    (rows, *_), (other, *_) = seen
    assert len(rows) == len(lines) + 1 and set(rows["status"]) == {200, 429, 413}
    assert (rows["service_tier"].isna() | (rows["service_tier"] == "on_demand")).all()
    assert list(other["model"]) == ["openai/gpt-oss-20b"]


def test_what_could_not_be_estimated_is_listed(tmp_path):
    # the example shows RPD and TPM in its headers and RPM nowhere: assumed from the free tier it matches
    cal = calibrate(EXAMPLE)
    assert cal.unknown == [f"{MODEL}: RPM, TPD never shown by a header or a 429: assumed from the published free tier"]
    # without its 429s and headers: no limit seen, no tier, no replay
    quiet = [{**r, "headers": {}} for r in _example() if r["status"] == 200]
    cal = calibrate(_write(tmp_path, quiet))
    assert cal.unknown == [
        "tier: no limit was observed (no rate-limit header, no 429 naming one): the fragment sets no tier, so your "
        "scenario's own tier stays",
        "no 429 in the log: limits other than RPD and TPM unseen; the limiter ranking rests on the headers alone",
        "limiter algorithm and charging rule: no rate-limit headers or 429s to replay"]
    # a model in no published tier, its limits seen in the headers: the tier is unknown, said as the match says
    other = [{**r, "model": "acme/new-model"} for r in _example() if r["status"] == 200]
    cal = calibrate(_write(tmp_path, other, "other.jsonl"))
    assert "tier: tier unknown: no model of the log is in the published table" in cal.unknown
    assert not any("never shown" in u for u in cal.unknown)
    # a second model in no published tier beside one in the free tier: only the first has units assumed
    two = _example() + [{**r, "model": "acme/new-model", "t_send": r["t_send"] + 1e5, "t_recv": r["t_recv"] + 1e5}
                        for r in _example() if r["status"] == 200]
    cal = calibrate(_write(tmp_path, two, "two.jsonl"))
    assert [u for u in cal.unknown if "never shown" in u] == [
        f"{MODEL}: RPM, TPD never shown by a header or a 429: assumed from the published free tier"]
    # 429s that name their limit, but no headers: the replay still runs on the refusals
    refusals = [{**r, "headers": {}} for r in _example()]
    cal = calibrate(_write(tmp_path, refusals, "refusals.jsonl"))
    assert cal.hypotheses and not any(u.startswith("limiter algorithm") for u in cal.unknown)
    # nothing of the service estimated (no usage, so no round trip net of the server's times): each key said
    bare = [{**r, "usage": None} for r in _example()]
    cal = calibrate(_write(tmp_path, bare, "bare.jsonl"))
    assert (f"{MODEL}: service output_tps, prefill_tps, queue_median, rtt_median (kept at the simulator's defaults)"
            in cal.unknown)


def test_the_replay_is_skipped_below_exactly_nine_answers_in_ten(tmp_path):
    # a prefix of the example with 10 x m answered requests: m without usage leaves 9 in 10, enough
    lines = _example()
    answered = [k for k, r in enumerate(lines) if r["status"] == 200]
    m = len(answered) // 10
    prefix = [dict(r) for r in lines[:answered[10 * m - 1] + 1]]
    for k in answered[:m]:
        prefix[k]["usage"] = None
    cal = calibrate(_write(tmp_path, prefix, "nine.jsonl"))
    assert cal.replay_skipped == [] and cal.hypotheses
