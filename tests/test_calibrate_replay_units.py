"""The replay's audio units and the sync of a unit from a 429's "Used", on small logs computed by hand.

A transcription is charged its audio seconds on ASH and ASD (audio seconds per hour / day); a 429 names the
unit that refused, as Groq writes it ("on audio seconds per hour (ASH): Limit 7200, Used 7150, Requested 60.
Please try again in 5s", the reference's wording for tokens, "likewise for audio seconds"); the first 429
naming a unit that no header describes says what was used before the log.  Every line is received when sent
(and answers carry no usage times): each is placed at the server at its own send time, on a clock from the
log's midnight (:data:`tests.helpers.LOG_T0`), so the window limiters' hours start on the hour.  Without TPM
headers the first 120 s are burn-in (no decision scored).  A free-tier whisper model: ASH 7 200 (a token
bucket refills 2 audio seconds a second), ASD 28 800.
"""
import math
import warnings
from collections import namedtuple

import pandas as pd
import pytest

from sim.calibrate.evidence import evidence_table
from sim.calibrate.replay import _tokens_cost, own_one_way, replay
from sim.catalog import Limits
from sim.config import DEFAULT_RESERVATION
from sim.recorder import Log
from tests.helpers import LOG_MODEL, LOG_T0

WHISPER = "whisper-large-v3"
ASH = "audio seconds per hour (ASH)"
ASD = "audio seconds per day (ASD)"
RPM = "requests per minute (RPM)"
nan = math.nan


def _refusal(words, limit, used, requested, wait, model=WHISPER):
    """Groq's 429 body for a refusal on ``words`` (the reference's text)."""
    return {"message": f"Rate limit reached for model `{model}` in organization `org_x` service tier `on_demand` on "
                       f"{words}: Limit {limit}, Used {used}, Requested {requested}. Please try again in {wait}.",
            "type": "audio_seconds" if "audio" in words else "requests", "code": "rate_limit_exceeded"}


def _transcription(t, status=200, audio=None, error=None):
    """A transcription line sent (and answered) ``t`` s after :data:`LOG_T0`, of ``audio`` seconds (None: the
    recorder could not read its length)."""
    return {"t_send": LOG_T0 + t, "t_recv": LOG_T0 + t, "status": status, "model": WHISPER,
            "endpoint": "audio.transcriptions", "max_tokens": None, "audio_seconds": audio, "usage": None,
            "headers": {}, "error": error, "label": None, "request_id": f"req_{t}_{status}"}


def _usage(prompt, completion):
    """Groq's usage fields, with times a float adds exactly (so a round trip all spent at the server is 0 s of
    network, not a round-off either side of it)."""
    return {"queue_time": 0.25, "prompt_tokens": prompt, "prompt_time": 0.125, "completion_tokens": completion,
            "completion_time": 0.375, "total_tokens": prompt + completion, "total_time": 0.5}


def _chat(t, status=200, error=None):
    """A chat line of :data:`LOG_MODEL` at the server ``t`` s after :data:`LOG_T0` (its round trip all spent
    there: queue + total time)."""
    usage = _usage(100, 20) if status == 200 else None
    spent = usage["queue_time"] + usage["total_time"] if usage else 0.0
    return {"t_send": LOG_T0 + t, "t_recv": LOG_T0 + t + spent, "status": status, "model": LOG_MODEL,
            "endpoint": "chat.completions", "max_tokens": 200, "audio_seconds": None, "usage": usage,
            "headers": {}, "error": error, "label": None, "request_id": f"req_{t}_{status}"}


def _replay(lines, limits, algorithm="token_bucket", charge="max_tokens"):
    """(decisions, errors) of one hypothesis over ``lines``: a decision is 1 where it disagrees with the log,
    NaN in the burn-in; with no header, a response's error is its decision (0 in the burn-in)."""
    errors, res = replay(evidence_table(Log("units.jsonl", lines)), limits, algorithm, charge, 0.0, 0.0, 0.0)
    return res["decision"].tolist(), errors.tolist()


def _same(got, want):
    return len(got) == len(want) and all((math.isnan(a) and math.isnan(b)) or a == b for a, b in zip(got, want))


FREE = Limits(ash=7200)


def test_a_transcription_is_refused_and_charged_on_ash():
    """ASH 7 200, a token bucket: 2 audio seconds back a second.

    0 s: 6 000 s of audio (1 200 left); 120 s: 1 400 (1 440 there, 40 left); 125 s: a 429 for 60 (50 there:
    5 s to wait, Used 7 150); 130 s: 60, exactly what is there; 130.25 s: a 429 for 1 s (0.5 there: a wait of
    0.25 s, under one second); 131 s: 1 s (2 there); 131.25 s: a 429 for 1.75 (1.5 there)."""
    lines = [_transcription(0, audio=6000), _transcription(120, audio=1400),
             _transcription(125, 429, 60, _refusal(ASH, 7200, 7150, 60, "5s")), _transcription(130, audio=60),
             _transcription(130.25, 429, 1, _refusal(ASH, 7200, 7200, 1, "500ms")),
             _transcription(131, audio=1),
             _transcription(131.25, 429, 1.75, _refusal(ASH, 7200, 7199, 2, "500ms"))]
    decisions, errors = _replay(lines, FREE)
    assert _same(decisions, [nan, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    assert errors == [0.0] * 7
    # charging nothing (a model without audio units): every 429 is a wrong guess
    assert _same(_replay(lines, Limits(rpm=20))[0], [nan, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0])


def test_an_audio_seconds_per_day_budget_refuses_too_and_is_synced_from_its_own_429():
    """ASH 7 200 and ASD 28 800 (1/3 s back a second).  The log opens on a 429 naming ASD, Used 28 500 of it:
    ASD is synced (300 left), ASH, still full, is not.  150 s: 300 s of audio (350 on ASD, 50 left); 160 s: a
    429 on ASD for 100 (53.3 there); 170 s: 20 s (56.7 there).  Had ASD not been synced (a "Used 0"), the 429
    at 160 s would have been answered."""
    limits = Limits(ash=7200, asd=28800)
    lines = [_transcription(0, 429, 600, _refusal(ASD, 28800, 28500, 600, "15m0s")),
             _transcription(150, audio=300), _transcription(160, 429, 100, _refusal(ASD, 28800, 28747, 100, "2m21s")),
             _transcription(170, audio=20)]
    assert _same(_replay(lines, limits)[0], [nan, 0.0, 0.0, 0.0])
    unsynced = [lines[0] | {"error": _refusal(ASD, 28800, 0, 600, "0s")}] + lines[1:]
    assert _same(_replay(unsynced, limits)[0], [nan, 0.0, 1.0, 0.0])


def test_a_transcription_of_unknown_length_is_charged_no_audio():
    """131.25 s as above (1.5 left, the 429 charged nothing); 132 s: a transcription whose length the recorder
    could not read (3 there): no audio charged, so at 132.5 s a 4 s one fits exactly."""
    lines = [_transcription(0, audio=6000), _transcription(120, audio=1400),
             _transcription(125, 429, 60, _refusal(ASH, 7200, 7150, 60, "5s")), _transcription(130, audio=60),
             _transcription(131, audio=1), _transcription(131.25, 429, 1.75, _refusal(ASH, 7200, 7199, 2, "500ms")),
             _transcription(132), _transcription(132.5, audio=4)]
    assert _same(_replay(lines, FREE)[0], [nan] + [0.0] * 7)


def test_a_fixed_window_over_its_limit_still_admits_a_transcription_of_unknown_length():
    """A token bucket's log replayed as an hourly fixed window: 7 200 s at 0 s, 100 more at 120 s (the bucket had
    240 back; the window, full, would have refused: a wrong guess, then charged as the log says, 7 300 in the
    window).  A transcription of unknown length at 121 s asks for no audio: admitted, as the log says."""
    lines = [_transcription(0, audio=7200), _transcription(120, audio=100), _transcription(121)]
    assert _same(_replay(lines, FREE, "fixed_window")[0], [nan, 1.0, 0.0])
    assert _same(_replay(lines, FREE)[0], [nan, 0.0, 0.0])


def _mid_traffic(second_used=7150):
    """A log that opens mid-traffic: 1 000 s of audio at 0 s (6 200 left in the replay, 980 used), then at 10 s a
    429 for 300 saying Used 7 000 (6 020 before the log: 200 left).  130 s: 400 (440 there, 40 left); 135 s: a
    429 for 100 (50 there), Used ``second_used``; 150 s: 80, exactly what the replay has then."""
    return [_transcription(0, audio=1000), _transcription(10, 429, 300, _refusal(ASH, 7200, 7000, 300, "50s")),
            _transcription(130, audio=400),
            _transcription(135, 429, 100, _refusal(ASH, 7200, second_used, 100, "25s")),
            _transcription(150, audio=80)]


def test_the_first_429_naming_a_unit_charges_what_its_used_says_was_used_before_the_log():
    assert _same(_replay(_mid_traffic(), FREE)[0], [nan, nan, 0.0, 0.0, 0.0])
    # the same log without the "Used" figure (a 413-like text): nothing is known before the log, ASH stays full
    bare = _mid_traffic()
    bare[1] = bare[1] | {"error": {**bare[1]["error"], "message": bare[1]["error"]["message"].replace(
        "Used 7000, ", "")}}
    assert _same(_replay(bare, FREE)[0], [nan, nan, 0.0, 1.0, 0.0])


def test_only_the_first_429_naming_a_unit_syncs_it():
    """The second 429 says 20 s more used than the replay has (170 there at 135 s, not 150): not synced again, so
    the 80 s at 150 s still fit (synced again, 60 would be there)."""
    assert _same(_replay(_mid_traffic(second_used=7170), FREE)[0], [nan, nan, 0.0, 0.0, 0.0])


def test_a_used_below_what_the_hypothesis_counts_is_not_given_back():
    """A token bucket's log replayed as a fixed window: 7 000 s at 0 s; at 60 s a 429 for 500 whose Used is the
    bucket's 6 880 (120 back), 120 less than the window counts: the window keeps its 7 000, so it refuses the
    300 s the bucket answered at 130 s (it would admit them at 6 880)."""
    lines = [_transcription(0, audio=7000), _transcription(60, 429, 500, _refusal(ASH, 7200, 6880, 500, "1m30s")),
             _transcription(130, audio=300)]
    assert _same(_replay(lines, FREE, "fixed_window")[0], [nan, nan, 1.0])
    assert _same(_replay(lines, FREE)[0], [nan, nan, 0.0])


def test_one_audio_second_used_before_the_log_is_charged():
    """7 000 s at 0 s (200 left); at 5 s a 429 whose Used, 6 991, is one second more than the replay's 6 990:
    charged (209 left), so at 124.75 s (448.5 there, not 449.5) a 429 for 449 is right."""
    lines = [_transcription(0, audio=7000), _transcription(5, 429, 300, _refusal(ASH, 7200, 6991, 300, "45.5s")),
             _transcription(124.75, 429, 449, _refusal(ASH, 7200, 6752, 449, "500ms"))]
    assert _same(_replay(lines, FREE)[0], [nan, nan, 0.0])


def test_a_used_rounded_up_is_no_usage_before_the_log():
    """RPM 30 (llama-3.1-8b-instant's free tier), a token bucket: half a request back a second.  At 200 s a burst
    of 30 empties it; at 200.75 s a 429 (0.375 there: 29.625 used, which Groq writes as the headers round it,
    "Used 30", and the wait (30 + 1 - 30) / 0.5 = 2 s); at 202 s one request, exactly the one there.  The
    fraction the message rounds away is no usage before the log: the request at 202 s is admitted."""
    lines = [_chat(0)] + [_chat(200)] * 30 + [_chat(200.75, 429, _refusal(RPM, 30, 30, 1, "2s", LOG_MODEL)),
                                              _chat(202)]
    assert _same(_replay(lines, Limits(rpm=30))[0], [nan] + [0.0] * 32)


@pytest.mark.parametrize("algorithm", ["token_bucket", "fixed_window", "sliding_log", "sliding_window_counter"])
def test_an_exact_replay_of_fractional_audio_has_no_hidden_usage(algorithm):
    """Fractional audio seconds, as transcriptions have: 7 199.5 s at 0 s (0.5 left under every algorithm); a 429
    for 1 s at once says Used 7 200 (7 199.5 rounded up): no usage before the log.  A transcription of 0.5 s at
    121 s fits exactly in the window ones' hour (a bucket has long refilled)."""
    lines = [_transcription(0, audio=7199.5), _transcription(0, 429, 1, _refusal(ASH, 7200, 7200, 1, "500ms")),
             _transcription(121, audio=0.5)]
    assert _same(_replay(lines, FREE, algorithm)[0], [nan, nan, 0.0])


def test_a_refusal_on_requests_half_a_second_from_its_edge_is_a_refusal():
    """RPM 30 as above: after the request at 202 s (none left), a 429 at 203.5 s finds 0.75 there: a wait of
    half a second, still a refusal."""
    lines = [_chat(0)] + [_chat(200)] * 30 + [_chat(200.75, 429, _refusal(RPM, 30, 30, 1, "2s", LOG_MODEL)),
                                              _chat(202), _chat(203.5, 429, _refusal(RPM, 30, 30, 1, "2s", LOG_MODEL))]
    assert _same(_replay(lines, Limits(rpm=30))[0], [nan] + [0.0] * 33)


# ---- what a request is charged on the token units

_Row = namedtuple("_Row", "status max_tokens prompt_tokens completion_tokens msg_unit msg_requested")


@pytest.mark.parametrize("row, max_tokens, actual", [
    # an answer with its usage: prompt + max_tokens, or prompt + completion
    (_Row(200, 200.0, 50.0, 20.0, None, nan), 250.0, 70.0),
    # no max_tokens: the reservation the emulator charges, DEFAULT_RESERVATION
    (_Row(200, nan, 50.0, 20.0, None, nan), 50.0 + DEFAULT_RESERVATION, 70.0),
    # a usage without completion_tokens: its prompt alone under actual
    (_Row(200, 200.0, 50.0, nan, None, nan), 250.0, 50.0),
    # an answer without usage: the median prompt (100) + its max_tokens, or + the median completion (30)
    (_Row(200, 200.0, nan, nan, None, nan), 300.0, 130.0),
    (_Row(200, nan, nan, nan, None, nan), 100.0 + DEFAULT_RESERVATION, 130.0),
    # a 429 on a token unit: what its message says was Requested
    (_Row(429, 200.0, nan, nan, "tpm", 1443.0), 1443.0, 1443.0),
    (_Row(429, 200.0, nan, nan, "tpd", 1443.0), 1443.0, 1443.0),
    # a 429 on requests ("Requested 1" is one request), or on tokens without a Requested: the medians
    (_Row(429, 200.0, nan, nan, "rpm", 1.0), 300.0, 130.0),
    (_Row(429, 200.0, nan, nan, "tpm", nan), 300.0, 130.0),
    (_Row(429, nan, nan, nan, None, nan), 100.0 + DEFAULT_RESERVATION, 130.0),
])
def test_a_requests_token_charge_under_each_rule(row, max_tokens, actual):
    rows = pd.DataFrame([row._asdict(), _Row(200, 10.0, 5.0, 1.0, None, nan)._asdict()])  # (each row its own)
    assert _tokens_cost(rows, "max_tokens", 100.0, 30.0).tolist() == [max_tokens, 15.0]
    assert _tokens_cost(rows, "actual", 100.0, 30.0).tolist() == [actual, 6.0]


def test_a_refusals_own_round_trip_places_it():
    """A 429's whole round trip is the network's (the server spent nothing answering): 0.5 s, half of it one
    way; an answer's is less its queue and total times."""
    df = pd.DataFrame({"t_send": [100.0, 100.0], "t_recv": [100.5, 101.0], "queue_time": [nan, 0.1],
                       "total_time": [nan, 0.4], "status": [429, 200]})
    assert own_one_way(df, 0.125).tolist() == [0.25, 0.25]


def test_a_token_refusal_half_a_second_from_its_edge_is_a_refusal():
    """TPM 6 000, a token bucket (100 tokens back a second), charging prompt + max_tokens; the log starts
    untouched (its first header shows only its own 300), so every decision is scored.  1 s: 5 500 (5 800 there);
    1.5 s: a 429 for 400 (350 there: short by 50, half a second)."""
    def answer(t, prompt, max_tokens, remaining, reset):
        line = _chat(t)
        line["usage"] = _usage(prompt, 20)
        line["t_recv"] = LOG_T0 + t + line["usage"]["queue_time"] + line["usage"]["total_time"]
        line["max_tokens"] = max_tokens
        line["headers"] = {"x-ratelimit-limit-tokens": "6000", "x-ratelimit-remaining-tokens": str(remaining),
                           "x-ratelimit-reset-tokens": reset}
        return line
    refusal = _chat(1.5, 429, _refusal("tokens per minute (TPM)", 6000, 5650, 400, "500ms", LOG_MODEL))
    lines = [answer(0, 100, 200, 5700, "3s"), answer(1, 5000, 500, 300, "57s"), refusal]
    decisions, errors = _replay(lines, Limits(tpm=6000))
    assert _same(decisions, [0.0, 0.0, 0.0]) and errors == [0.0, 0.0, 0.0]


def _headed(t, status=200, remaining=None, reset=None, error=None, rtt=0.0):
    """A chat line at the server at ``t`` (sent half ``rtt`` before), with RPD headers when ``remaining`` is
    given (14 400 a day: llama-3.1-8b-instant's free tier)."""
    line = _chat(t, status, error)
    line["t_send"] -= rtt / 2
    line["t_recv"] += rtt / 2
    if remaining is not None:
        line["headers"] = {"x-ratelimit-limit-requests": "14400", "x-ratelimit-remaining-requests": str(remaining),
                           "x-ratelimit-reset-requests": reset}
    return line


TOO_LARGE = {"message": f"Request too large for model `{LOG_MODEL}` in organization `org_x` service tier `on_demand` "
                        "on tokens per minute (TPM): Limit 6000, Requested 14137, please reduce your message size "
                        "and try again.", "type": "tokens", "code": "rate_limit_exceeded"}


def test_the_request_residuals_are_centred_on_their_median_and_scaled_by_the_limit_and_a_day():
    """RPD 14 400, a token bucket: one request back every 6 s.  0 s: the first header says 14 000 left (399 used
    before the log: synced, no residual), a reset of 400 x 6 s; 60 s (sent 59.5 s, a round trip of 1 s): 14 009
    there (10 back, 1 charged), the log says 14 007 and 39m0s (the replay: 39m6s); 130 s: a 413, not scored, no
    headers; 180 s: 14 028 there, the log says 14 024 and 37m12s; 190 s: a 429 on RPM (no unit of the
    hypothesis: a wrong guess), 14 029.67 there, the log says 14 026 and a reset the evidence cannot read.

    Residuals (replay - log): remaining 0, 2, -, 4, 3 (their median 2.5 taken off: -2.5, -0.5, -, 1.5, 0.5) of
    14 400; reset 0, 6, -, 0, - of a day.  A response's error is the mean of its observed parts (0 with none)
    + 1 for a wrong decision."""
    lines = [_headed(0, remaining=14000, reset="40m0s"), _headed(60, remaining=14007, reset="39m0s", rtt=1.0),
             _headed(130, 413, error=TOO_LARGE), _headed(180, remaining=14024, reset="37m12s"),
             _headed(190, 429, remaining=14026, reset="soon", error=_refusal(RPM, 30, 30, 1, "2s", LOG_MODEL))]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (a response without any residual makes no empty mean)
        errors, res = replay(evidence_table(Log("rpd.jsonl", lines)), Limits(rpd=14400), "token_bucket",
                             "max_tokens", 0.1, 100.0, 20.0)  # (a typical one-way 0.1 s: 0.5 is plausible)
    assert res["t"].tolist() == [0.0, 60.0, 130.0, 180.0, 190.0]
    assert _same(res["remaining_requests"].tolist(), [0.0, 2.0, nan, 4.0, 3.0])
    assert _same(res["reset_requests"].tolist(), [0.0, 6.0, nan, 0.0, nan])
    assert _same(res["decision"].tolist(), [nan, nan, nan, 0.0, 1.0])
    assert errors.tolist() == pytest.approx([2.5 / 14400 / 2, (0.5 / 14400 + 6 / 86400) / 2, 0.0, 1.5 / 14400 / 2,
                                             0.5 / 14400 + 1.0], rel=1e-12)


@pytest.mark.parametrize("logged, residual", [(14397, 0.0), (14399, -1.0)])
def test_the_first_request_header_charges_what_it_says_was_used_and_gives_nothing_back(logged, residual):
    """A daily fixed window (RPD 14 400) counts the answer at 0 s (no headers) until midnight, and at 10 s the
    answer with the first header: 14 398 left.  The header's 14 397 is one request used before the log (charged:
    no residual); its 14 399 -- a token bucket's, which has refilled -- is more than the window has left, and is
    not given back."""
    lines = [_headed(0), _headed(10, remaining=logged, reset="12s")]
    errors, res = replay(evidence_table(Log("rpd.jsonl", lines)), Limits(rpd=14400), "fixed_window",
                         "max_tokens", 0.0, 100.0, 20.0)
    assert _same(res["remaining_requests"].tolist(), [nan, residual])


def test_a_log_that_starts_before_midnight_runs_on_the_clock_of_its_first_day():
    """RPD 14 400, a token bucket (a request back every 6 s), a log opening 30 s before midnight: 14 000 left
    at 23:59:30, and at 00:00:30, one request and 60 s later, 14 009 (10 back)."""
    lines = [_headed(-30, remaining=14000, reset="40m0s"), _headed(30, remaining=14009, reset="39m6s")]
    errors, res = replay(evidence_table(Log("rpd.jsonl", lines)), Limits(rpd=14400), "token_bucket",
                         "max_tokens", 0.0, 100.0, 20.0)
    assert res["remaining_requests"].tolist() == [0.0, 0.0] and res["reset_requests"].tolist() == [0.0, 0.0]


def test_the_replays_clock_keeps_the_logs_resolution():
    """Epoch seconds as the recorder writes them resolve 2^-22 s (0.24 us); the replay's clock counts from the
    log's midnight, so it keeps them.  RPM 30 (half a request back a second): a burst of 30 at 200 s + 2^-22
    empties the bucket, so at 202 s exactly a request finds 2^-23 less than one: refused, as the log says."""
    lines = [_chat(0)] + [_chat(200 + 2 ** -22)] * 30 + [_chat(202, 429, _refusal(RPM, 30, 30, 1, "2s", LOG_MODEL))]
    assert _same(_replay(lines, Limits(rpm=30))[0], [nan] + [0.0] * 31)


def test_a_request_of_one_token_is_checked_and_charged_and_one_of_none_is_not():
    """TPM 6 000 as a fixed minute window, charging prompt + completion; the answers without usage cost the
    medians, 0 + 0 here.  125 s: 5 999 tokens; 126 s: 1 (a one-token prompt, no answer), exactly the rest; 127 s:
    a 429 for one token; 127.5 s: 100 the log answered (a wrong guess, then counted: 6 100 in the window);
    128 s: an answer without usage, no token: nothing on TPM to check, admitted."""
    def answer(t, prompt, completion):
        return _chat(t) | {"usage": _usage(prompt, completion)}
    no_usage = _chat(128) | {"usage": None, "t_recv": LOG_T0 + 128}
    lines = [answer(0, 100, 20), answer(125, 5999, 0), answer(126, 1, 0),
             _chat(127, 429, _refusal("tokens per minute (TPM)", 6000, 6000, 1, "53s", LOG_MODEL)),
             answer(127.5, 100, 0), no_usage]
    errors, res = replay(evidence_table(Log("tpm.jsonl", lines)), Limits(tpm=6000), "fixed_window", "actual",
                         0.0, 0.0, 0.0)
    assert _same(res["decision"].tolist(), [nan, 0.0, 0.0, 0.0, 1.0, 0.0])


# ---- what calibrate_log gives the replay

def test_with_no_answer_a_refusal_costs_its_max_tokens_or_nothing_and_nothing_warns():
    """A log of 429s only (a client hammering a spent budget): no answer to take the median prompt and
    completion from, so both are 0 -- a refusal on requests costs its max_tokens (200) when charging max_tokens,
    nothing when charging the actual completion.  0 s: TPD spent ("Used 500000"): a fixed day window is synced
    full; 130 s: a 429 on RPM (its minute window fresh): charging max_tokens, TPD refuses the 200 tokens, as the
    log says; charging actual, no token is asked of TPD, and the fresh RPM admits it -- a wrong guess."""
    from sim.calibrate import calibrate_log
    lines = [_chat(0, 429, _refusal("tokens per day (TPD)", 500000, 500000, 1200, "24h0m0s", LOG_MODEL)),
             _chat(130, 429, _refusal(RPM, 30, 30, 1, "50s", LOG_MODEL))]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (no median of nothing)
        cal = calibrate_log(Log("refused.jsonl", lines))
    by = {(h.algorithm, h.charge): h for h in cal.hypotheses}
    assert _same(by[("fixed_window", "max_tokens")].residuals["decision"].tolist(), [nan, 0.0])
    assert _same(by[("fixed_window", "actual")].residuals["decision"].tolist(), [nan, 1.0])


def test_a_transcription_log_without_a_round_trip_is_replayed_at_its_send_times():
    """Two transcriptions and one 429 on ASH: one refused round trip is too few for the network's median, so
    the typical one-way delay is 0, and a round trip is plausible up to 10 ms: the 429's own 0.4 s is not, and
    every line is placed at its send time.  The service unknowns are a transcription model's."""
    from sim.calibrate import calibrate_log
    def rpd(remaining):  # (Groq's headers: what marks a transcription without usage as Groq's)
        return {"x-ratelimit-limit-requests": "2000", "x-ratelimit-remaining-requests": str(remaining),
                "x-ratelimit-reset-requests": "43.2s"}
    lines = [_transcription(0, audio=30) | {"t_recv": LOG_T0 + 2.0, "headers": rpd(1999)},
             _transcription(10, audio=60) | {"t_recv": LOG_T0 + 13.0, "headers": rpd(1998)},
             _transcription(20, 429, 90, _refusal(ASH, 7200, 7150, 90, "20s")) | {"t_recv": LOG_T0 + 20.4}]
    cal = calibrate_log(Log("stt.jsonl", lines))
    assert cal.best.residuals["t"].tolist() == [0.0, 10.0, 20.0]
    assert f"{WHISPER}: service audio_speed_factor, rtt_median (kept at the simulator's defaults)" in cal.unknown


@pytest.mark.parametrize("params, observed, hypotheses, anything", [
    ({}, False, [], False), ({"rtt_median": 0.2}, False, [], True), ({}, True, [], True), ({}, False, ["h"], True)])
def test_a_calibration_estimated_anything_when_it_has_a_service_figure_a_limit_or_a_ranking(
        params, observed, hypotheses, anything):
    from types import SimpleNamespace

    from sim.calibrate import Calibration
    cal = Calibration(Log("x.jsonl", []), pd.DataFrame(), service={"m": SimpleNamespace(params=lambda: params)},
                      limits={"m": SimpleNamespace(observed=observed)}, hypotheses=hypotheses)
    assert cal.estimated_anything is anything


def test_a_structured_answer_that_failed_its_validation_was_admitted_and_is_charged():
    """Groq sends ``json_validate_failed`` / ``tool_use_failed`` (400) after the model wrote its answer: the
    request went through the limits and counts (groq/groq-typescript#28: its headers show it counted).  RPM 3,
    a token bucket: answers at 200 s and 201 s and such a 400 at 201.5 s leave nothing for 202 s, which the
    log shows refused.  A 400 of a malformed request (no code of those) is refused before the limits: the
    same 429 would then be a wrong guess."""
    failed = {"message": "Failed to generate JSON. Please adjust your prompt. See 'failed_generation' for more "
                         "details.", "type": "invalid_request_error", "code": "json_validate_failed"}
    refused = _refusal(RPM, 3, 3, 1, "20s", model=LOG_MODEL)
    for code, wrong in (("json_validate_failed", 0.0), ("tool_use_failed", 0.0), (None, 1.0)):
        lines = [_chat(0), _chat(200), _chat(201), _chat(201.5, 400, failed | {"code": code}), _chat(202, 429, refused)]
        assert _same(_replay(lines, Limits(rpm=3))[0], [nan, 0.0, 0.0, nan if code is None else 0.0, wrong]), code
    table = evidence_table(Log("units.jsonl", lines[:3] + [_chat(201.5, 400, failed)]))
    assert table["charged_failure"].tolist() == [False, False, False, True]
