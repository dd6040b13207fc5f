"""A recorder log as a table of evidence (sim/calibrate/evidence.py), piece by piece: Go durations, Groq's
429 / 413 messages, rate-limit headers (what is a number and what is unknown), the table's rows and columns,
and its small helpers.  Expected values are by hand from the texts in docs/reference/groq-real-responses.md
(a 429 on "tokens per minute (TPM): Limit 6000, Used 5034, Requested 1443. Please try again in 4.77s", a 413
with no "Used" nor wait, reset headers like ``2m52.8s`` and ``547ms``, ``retry-after`` in whole seconds)."""
import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest

from sim.calibrate.evidence import (HEADER_COLUMNS, LimitMessage, _header_value, _num, evidence_table, finite,
                                    mode_value, parse_go_duration, parse_limit_message, successes)
from sim.recorder import OPTIONAL_KEYS, USAGE_KEYS, Log, read_log

nan = math.nan
MODEL = "llama-3.1-8b-instant"
TPM_429 = ("Rate limit reached for model `llama-3.1-8b-instant` in organization `org_01j` service tier `on_demand` "
           "on tokens per minute (TPM): Limit 6000, Used 5034, Requested 1443. Please try again in 4.77s. Need more "
           "tokens? Upgrade to Dev Tier today at https://console.groq.com/settings/billing")
TPM_413 = ("Request too large for model `llama-3.3-70b-versatile` in organization `org_01j` service tier `on_demand` "
           "on tokens per minute (TPM): Limit 12000, Requested 14137, please reduce your message size and try again.")


# ---- Go durations --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,seconds", [
    ("7ns", 7e-9), ("3us", 3e-6), ("3µs", 3e-6), ("3μs", 3e-6),   # micro sign U+00B5 and Greek mu U+03BC
    ("250ms", 0.25), ("1.5s", 1.5), ("2m", 120.0), ("3h", 10_800.0),
    ("1h1m1s1ms", 3661.001), (".5s", 0.5), ("2.s", 2.0),
    ("-1.5s", -1.5), ("+2s", 2.0), ("-90", -90.0), ("  4s  ", 4.0), ("2.5", 2.5),
])
def test_each_go_unit_and_sign(text, seconds):
    assert parse_go_duration(text) == pytest.approx(seconds, rel=1e-12, abs=0)


@pytest.mark.parametrize("text", ["", "   ", "1sxx2s", "1s 2s", "ms", "5d", "1.5.s", "-", "+", " - "])
def test_what_is_not_a_go_duration_is_an_error(text):
    # a part not directly after the previous one stops the reading ("1sxx2s" is not 3 s), and the rest is no number;
    # a sign alone is no duration (Go's time.ParseDuration: invalid), not 0 s
    with pytest.raises(ValueError):
        parse_go_duration(text)


def test_the_error_names_the_text_and_the_expected_form():
    with pytest.raises(ValueError, match=r"'2 days' is not a Go duration \(like 547ms"):
        parse_go_duration("2 days")
    with pytest.raises(ValueError, match="empty duration"):
        parse_go_duration(" ")
    with pytest.raises(ValueError, match="'-' is not a Go duration"):
        parse_go_duration("-")


# ---- Groq's messages -----------------------------------------------------------------------------------------

def test_a_real_429_message_field_by_field():
    assert parse_limit_message(TPM_429) == LimitMessage("tpm", 6000.0, 5034.0, 1443.0, 4.77, False,
                                                        "llama-3.1-8b-instant")


def test_a_message_is_a_value_frozen_and_hashable():
    m = parse_limit_message(TPM_429)
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.limit = 1.0
    assert len({m, parse_limit_message(TPM_429), parse_limit_message(TPM_413)}) == 2


def test_a_number_in_a_message():
    assert _num("14,400") == 14_400.0 and _num("0.5") == 0.5 and _num("1,000,000.25") == 1_000_000.25
    assert _num(None) is None  # an absent figure stays absent


def test_a_real_413_message_has_no_used_and_no_wait():
    assert parse_limit_message(TPM_413) == LimitMessage("tpm", 12000.0, None, 14137.0, None, True,
                                                        "llama-3.3-70b-versatile")


def test_thousands_separators_any_case_and_no_model_or_requested():
    m = parse_limit_message("REQUEST TOO LARGE on Tokens Per Day: Limit 1,000,000, Used 999,500.5")
    assert m == LimitMessage("tpd", 1_000_000.0, 999_500.5, None, None, True, None)


@pytest.mark.parametrize("wait_text,wait", [
    ("try again in 9m38.016s.", 578.016),   # the sentence's full stop is not part of the duration
    ("try again in 850ms", 0.85),
    ("try again in ...", None),             # nothing left once the full stops are stripped: no wait, no error
    ("try again in hm.", None),             # not a duration: no wait, no error
])
def test_the_wait_is_a_go_duration_or_none(wait_text, wait):
    m = parse_limit_message(f"on requests per minute (RPM): Limit 30, Used 30, Requested 1. Please {wait_text}")
    assert (m.unit, m.limit, m.used, m.requested, m.wait, m.too_large) == ("rpm", 30.0, 30.0, 1.0, wait, False)


@pytest.mark.parametrize("message", [
    None, "", 5, ["on tokens per minute (TPM): Limit 5"],  # not text
    "Internal server error",
    "Rate limit reached on tokens per minute (TPM). Please try again in 2s",  # a unit, no limit
    "Limit 6000, Used 5034, Requested 1443",                                   # a limit, no unit
    "on tokens per hour: Limit 6000",                                          # no unit Groq has
])
def test_what_is_not_a_limit_message_is_none(message):
    assert parse_limit_message(message) is None


@pytest.mark.parametrize("words,unit", [("requests per day (RPD)", "rpd"), ("tokens per day (TPD)", "tpd"),
                                        ("audio seconds per hour (ASH)", "ash"), ("audio seconds per day (ASD)", "asd"),
                                        ("requests per minute", "rpm")])
def test_every_unit_groq_names(words, unit):
    assert parse_limit_message(f"Rate limit reached on {words}: Limit 7200, Used 7200, Requested 10.").unit == unit


# ---- headers -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("col,text,value", [
    ("h_reset_tok", "547ms", 0.547), ("h_reset_req", "2m52.8s", 172.8),   # Go durations in the reset headers
    ("h_reset_tok", "0s", 0.0), ("h_reset_req", "3", 3.0),
    ("h_limit_req", "1000", 1000.0), ("h_limit_tok", "1", 1.0),           # a limit of 1 is a limit
    ("h_rem_req", "0", 0.0), ("h_rem_tok", "0", 0.0),                     # nothing left is a remaining of 0
    ("h_rem_tok", "0.5", 0.5), ("h_retry_after", "0", 0.0), ("h_retry_after", "2", 2.0),
])
def test_header_values(col, text, value):
    assert _header_value(col, text) == pytest.approx(value, rel=1e-12, abs=0)


@pytest.mark.parametrize("col,text", [
    ("h_limit_req", "0"), ("h_limit_tok", "0"), ("h_limit_tok", "0.0"),  # a limit of 0 is no limit
    ("h_rem_tok", "-5"), ("h_rem_req", "-0.5"), ("h_reset_tok", "-1s"),  # negative
    ("h_limit_req", "1e400"), ("h_rem_tok", "inf"), ("h_rem_tok", "nan"),  # not finite
    ("h_rem_tok", "2m"), ("h_limit_tok", "many"), ("h_reset_tok", "soon"), ("h_rem_req", None),  # not numbers
])
def test_header_values_that_are_unknown(col, text):
    assert math.isnan(_header_value(col, text))


# ---- the table -----------------------------------------------------------------------------------------------

COLUMNS = ["t_send", "t_recv", "status", "model", "endpoint", "max_tokens", "audio_seconds", "label", "request_id",
           "retry_count", "service_tier", "queue_time", "prompt_tokens", "prompt_time", "completion_tokens",
           "completion_time", "total_tokens", "total_time", "h_limit_req", "h_rem_req", "h_reset_req", "h_limit_tok",
           "h_rem_tok", "h_reset_tok", "h_retry_after", "msg_unit", "msg_limit", "msg_used", "msg_requested",
           "msg_wait", "msg_too_large", "charged_failure", "groq", "impossible_usage", "client_error"]


def _rec(t, status=200, *, usage=None, headers=None, error=None, max_tokens=100, **kw):
    rec = {"t_send": t, "t_recv": t + 0.5, "status": status, "model": MODEL, "endpoint": "chat.completions",
           "max_tokens": max_tokens, "audio_seconds": None, "usage": usage, "headers": headers or {}, "error": error,
           "label": None, "request_id": None, "retry_count": None, "service_tier": None}
    rec.update(kw)
    return rec


def _usage(completion_tokens=20, **kw):
    u = {"queue_time": 0.1, "prompt_tokens": 50, "prompt_time": 0.01, "completion_tokens": completion_tokens,
         "completion_time": 0.04, "total_tokens": 70, "total_time": 0.05}
    u.update(kw)
    return u


def _table(records, **kw):
    return evidence_table(Log("<test>", records), **kw)


def test_the_columns_and_their_names():
    assert COLUMNS[9:11] == list(OPTIONAL_KEYS) and COLUMNS[11:18] == list(USAGE_KEYS)
    assert COLUMNS[18:25] == list(HEADER_COLUMNS.values())
    df = _table([_rec(1.0, usage=_usage())])
    assert list(df.columns) == COLUMNS
    assert _table([]).columns.tolist() == COLUMNS and _table([]).empty


def test_an_answer_row():
    headers = {"x-ratelimit-limit-requests": "1000", "x-ratelimit-limit-tokens": "8000",
               "x-ratelimit-remaining-requests": "998", "x-ratelimit-remaining-tokens": "7927",
               "x-ratelimit-reset-requests": "2m52.8s", "x-ratelimit-reset-tokens": "547ms"}
    row = _table([_rec(5.0, usage=_usage(), headers=headers, label="a", request_id="req_1", retry_count=2,
                       service_tier="on_demand")]).iloc[0]
    assert (row.t_send, row.t_recv, row.status, row.model, row.endpoint, row.label, row.request_id) == \
        (5.0, 5.5, 200, MODEL, "chat.completions", "a", "req_1")
    assert (row.max_tokens, row.retry_count, row.service_tier) == (100.0, 2.0, "on_demand")
    assert [row[k] for k in USAGE_KEYS] == [0.1, 50.0, 0.01, 20.0, 0.04, 70.0, 0.05]
    assert [row[c] for c in HEADER_COLUMNS.values()][:6] == [1000.0, 998.0, pytest.approx(172.8), 8000.0, 7927.0,
                                                             0.547]
    assert math.isnan(row.h_retry_after) and math.isnan(row.audio_seconds)  # a header not sent: unknown
    assert row.msg_unit is None and all(math.isnan(row[f"msg_{f}"]) for f in ("limit", "used", "requested", "wait"))
    assert not row.msg_too_large  # (False, not NaN, which is true)
    assert bool(row.groq) and not row.impossible_usage and row.client_error is None


def test_a_429_row_and_a_413_row():
    df = _table([_rec(1.0, 429, headers={"retry-after": "5", "x-ratelimit-remaining-tokens": "0"},
                      error={"message": TPM_429, "type": "tokens"}),
                 _rec(2.0, 413, error={"message": TPM_413})])
    r429, r413 = df.iloc[0], df.iloc[1]
    assert (r429.msg_unit, r429.msg_limit, r429.msg_used, r429.msg_requested, r429.msg_wait) == \
        ("tpm", 6000.0, 5034.0, 1443.0, 4.77)
    assert not r429.msg_too_large and r429.h_retry_after == 5.0 and r429.h_rem_tok == 0.0
    assert (r413.msg_unit, r413.msg_limit, r413.msg_requested) == ("tpm", 12000.0, 14137.0)
    assert math.isnan(r413.msg_used) and math.isnan(r413.msg_wait) and r413.msg_too_large
    # no usage on a refusal: every usage figure unknown
    assert df[list(USAGE_KEYS)].isna().all().all() and df["groq"].all()


@pytest.mark.parametrize("rec,groq", [
    (_rec(1.0, 500), False),                                                      # nothing of Groq's
    (_rec(1.0, 503, headers={"retry-after": "3"}), False),                        # retry-after is anyone's header
    (_rec(1.0, 500, error={"message": "Internal server error"}), False),          # no rate-limit message
    (_rec(1.0, 500, usage={}), False),                                            # an empty usage says nothing
    (_rec(1.0, 429, headers={"x-ratelimit-remaining-tokens": "10"}), True),       # a Groq header alone
    (_rec(1.0, 429, error={"message": TPM_429}), True),                           # a Groq message alone
    (_rec(1.0, 200, usage={"prompt_tokens": 5}), True),                           # a usage alone
])
def test_which_rows_come_from_groq(rec, groq):
    assert bool(_table([rec])["groq"].iloc[0]) is groq


@pytest.mark.parametrize("completion,max_tokens,impossible", [
    (100, 100, False),       # every allowed token used: possible
    (101, 100, True),        # one more than allowed
    (10 ** 6, None, False),  # no max_tokens: nothing is too many
    (None, 5, False),        # no completion figure: nothing to compare
])
def test_a_usage_with_more_completion_tokens_than_max_tokens_is_set_aside(completion, max_tokens, impossible):
    u = _usage(completion_tokens=completion)
    row = _table([_rec(1.0, usage=u, max_tokens=max_tokens)]).iloc[0]
    assert bool(row.impossible_usage) is impossible
    if impossible:
        assert all(math.isnan(row[k]) for k in USAGE_KEYS)
    else:
        assert row.prompt_tokens == 50.0 and row.queue_time == 0.1 and row.total_time == 0.05


def test_usage_figures_that_are_not_numbers_are_unknown():
    u = {"queue_time": True, "prompt_tokens": "fifty", "prompt_time": None, "completion_tokens": 3,
         "completion_time": 0.5, "total_time": "inf"}
    row = _table([_rec(1.0, usage=u)]).iloc[0]
    assert math.isnan(row.queue_time) and math.isnan(row.prompt_tokens) and math.isnan(row.prompt_time)
    assert math.isnan(row.total_tokens) and math.isnan(row.total_time)  # absent, not finite
    assert (row.completion_tokens, row.completion_time) == (3.0, 0.5)


def test_usage_numbers_written_as_strings_are_read_as_read_log_reads_them(tmp_path):
    """read_log keeps a usage whose figures are numbers in strings ("50"); the evidence reads them the same way,
    so its answers keep their usage (it took them for unknown, and a log of such lines had no answer to fit)."""
    u = _usage(completion_tokens="20", prompt_tokens="50", queue_time=" 0.1", total_time="5e-2")
    path = tmp_path / "log.jsonl"
    path.write_text(json.dumps(_rec(1.0, usage=u)) + "\n")
    log = read_log(path)
    assert log.records[0]["usage"] == u and not log.problems
    row = evidence_table(log).iloc[0]
    assert (row.prompt_tokens, row.completion_tokens, row.queue_time, row.total_time) == (50.0, 20.0, 0.1, 0.05)
    assert len(successes(evidence_table(log))) == 1


def test_an_error_without_a_message_and_a_message_that_is_no_limit():
    df = _table([_rec(1.0, 500, error={"type": "server_error"}), _rec(2.0, 500, error={"message": "oops"})])
    assert df["msg_unit"].isna().all() and not df["msg_too_large"].any() and not df["groq"].any()


def test_rows_are_in_send_order_ties_in_log_order_and_numbered_from_zero():
    df = _table([_rec(3.0, label="c"), _rec(1.0, label="a1"), _rec(2.0, label="b"), _rec(1.0, label="a2")])
    assert df["label"].tolist() == ["a1", "a2", "b", "c"]
    assert df.index.tolist() == [0, 1, 2, 3] and "index" not in df.columns


def test_numeric_columns_are_floats_even_when_unknown():
    df = _table([_rec(1.0, max_tokens=None), _rec(2.0, max_tokens=7, audio_seconds=12, retry_count=1)])
    for col in ("max_tokens", "audio_seconds", "retry_count"):
        assert df[col].dtype == np.float64
    assert df["max_tokens"].tolist()[1] == 7.0 and math.isnan(df["max_tokens"].iloc[0])
    only_none = _table([_rec(1.0, max_tokens=None)])
    assert only_none["max_tokens"].dtype == only_none["retry_count"].dtype == only_none["audio_seconds"].dtype \
        == np.float64


def test_an_attempt_that_failed_on_the_client_is_a_row_only_when_asked():
    timeout = _rec(2.0, None, error={"type": "timeout", "message": "Request timed out."}, t_recv=32.0)
    connection = _rec(3.0, None, error={"type": "connection", "message": "Connection error."}, t_recv=3.1)
    answered = _rec(1.0, usage=_usage())
    assert _table([timeout, answered, connection])["t_send"].tolist() == [1.0]
    df = _table([timeout, answered, connection], failed_attempts=True)
    assert df["t_send"].tolist() == [1.0, 2.0, 3.0]
    assert df["client_error"].isna().tolist() == [True, False, False]  # (None, which pandas shows as NaN)
    assert df["client_error"].iloc[1:].tolist() == ["timeout", "connection"]
    assert df["status"].iloc[0] == 200 and df["status"].iloc[1:].isna().all()
    # a line with no status and an error that is no client failure is a row either way
    odd = _rec(4.0, None, error={"type": "server_error"})
    assert len(_table([odd])) == 1 and _table([odd])["client_error"].iloc[0] is None


# ---- helpers -------------------------------------------------------------------------------------------------

def test_successes_are_answers_with_the_timings():
    df = pd.DataFrame({"status": [200, 200, 200, 200, 429, 201],
                       "completion_tokens": [5, nan, 5, 5, 5, 5], "completion_time": [0.1, 0.1, nan, 0.1, 0.1, 0.1],
                       "prompt_tokens": [10, 10, 10, nan, 10, 10], "queue_time": [nan] * 6})
    assert successes(df).index.tolist() == [0]  # a missing queue_time does not matter


@pytest.mark.parametrize("values,expected", [
    ([], (None, 0, 0)),
    ([nan, nan], (None, 0, 0)),
    ([6000.0], (6000.0, 1, 1)),
    ([6000, 12000, 6000, nan, 250], (6000.0, 2, 3)),
    ([1, 2, 2, 2, 3, 3], (2.0, 3, 3)),
])
def test_mode_value(values, expected):
    assert mode_value(pd.Series(values, dtype=float)) == expected


def test_finite_keeps_the_finite_values_in_order():
    assert finite([3, nan, -math.inf, 1.5, math.inf, -2]).tolist() == [3.0, 1.5, -2.0]
    assert finite(pd.Series([nan])).size == 0 and finite([]).dtype == np.float64
