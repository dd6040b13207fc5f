"""sim.emulator.core without a server: the scaled clock, what a chat body must hold, the prompt-token count,
the 429's figures and durations at a time scale K, the records' outcomes and columns, and the utilisation
gauges.  Where Groq's real answers are on record (shared/reference/groq-real-responses.md) the expected values
come from them, not from the code: "Requested" is prompt + max_tokens, the wait in "Please try again in" is
(Used + Requested - Limit) / (Limit / window), resets are Go durations (``547ms``), ``retry-after`` whole
seconds at K = 1."""
from __future__ import annotations

import datetime
import json
import math
import re
import time
import tracemalloc

import pandas as pd
import pytest

from sim.emulator import Emulator
from sim.emulator.core import (
    RECORD_COLUMNS,
    Clock,
    Decision,
    approx_prompt_tokens,
    completion_cap,
    filler,
    message_error,
)
from sim.errors import ConfigError
from sim.fields import MAX_SIZE
from sim.scenario import scenario_from_dict
from tests.test_emulator import MODEL, flex_spec, make_spec, project_spec

AUDIO = "whisper-large-v3-turbo"


# ---- the clock -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("scale", [0.0, -1.0, math.inf, math.nan, 1.000001e6, 1e16])
def test_a_time_scale_that_is_not_above_0_and_at_most_a_million_is_refused(scale):
    with pytest.raises(ValueError, match=r"time scale must be > 0 and at most 1e\+06"):
        Clock(scale)
    assert Clock(1e6).scale == 1e6


def test_the_clock_counts_from_the_utc_midnight_and_runs_k_times_faster(monkeypatch):
    """Limiter time 0 is the UTC midnight before the start (fixed windows on the calendar); from the start on
    it runs K times faster than the wall clock; epoch() is the log's clock, wall() the client's."""
    mono = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: mono[0])
    assert Clock().scale == 1.0  # by default the wall clock's pace
    clock = Clock(20.0)
    midnight = datetime.datetime.fromtimestamp(clock.origin, datetime.timezone.utc)
    assert (midnight.hour, midnight.minute, midnight.second, midnight.microsecond) == (0, 0, 0, 0)
    assert 0 <= clock.epoch0 - clock.origin < 86_400 and clock.start == clock.epoch0 - clock.origin
    assert clock.now() == clock.start
    mono[0] += 1.5  # 1.5 wall seconds: 30 limiter seconds at K = 20
    assert clock.now() - clock.start == pytest.approx(30.0)
    assert clock.epoch(clock.start + 30.0) - clock.epoch0 == pytest.approx(30.0)  # the log: an API K x faster
    assert clock.wall(clock.start + 30.0) - clock.epoch0 == pytest.approx(1.5)  # the client: its own seconds


# ---- what a chat body must hold --------------------------------------------------------------------------

def test_prompt_tokens_are_a_quarter_of_the_characters_rounded_up_plus_three_per_message_and_three():
    assert approx_prompt_tokens([]) == 3
    assert approx_prompt_tokens([{"role": "user", "content": "x" * 40}]) == 3 + 3 + 10
    assert approx_prompt_tokens([{"role": "user", "content": "x" * 41}]) == 3 + 3 + 11  # ceil, not floor
    assert approx_prompt_tokens([{"role": "system", "content": "abcd"},
                                 {"role": "user", "content": None}]) == 3 + (3 + 1) + (3 + 0)
    # content parts: the text ones joined by a space ("abcdefgh" + " " = 9 characters -> 3 tokens)
    parts = [{"type": "text", "text": "abcdefgh"}, {"type": "image_url", "image_url": {"url": "u"}}, "junk"]
    assert approx_prompt_tokens([{"role": "user", "content": parts}]) == 3 + 3 + 3
    assert approx_prompt_tokens(["not an object"]) == 3 + 3


def test_the_answer_text_has_one_word_per_token_and_wraps_around_the_sentence():
    assert filler(0) == ""
    assert filler(3) == "The quick brown"
    assert filler(11) == "The quick brown fox jumps over the lazy dog. The quick"
    assert filler(18) == "The quick brown fox jumps over the lazy dog. The quick brown fox jumps over the lazy dog."
    assert len(filler(1000).split()) == 1000
    sentence = "The quick brown fox jumps over the lazy dog.".split()
    for n in range(-1, 30):  # every place in the sentence, across the wrap-arounds
        assert filler(n).split() == (sentence * 4)[:max(n, 0)], n


def test_long_answers_are_not_kept_after_they_are_sent():
    """Answers of a million words (max_tokens that high, against high limits) each ~5 MB: none stays in
    memory once the caller drops it (a cache of them grew the server by a gigabyte)."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(10**6, 10**6 + 5):
            assert len(filler(n)) > 4 * n
        assert tracemalloc.get_traced_memory()[0] - before < 100_000
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("messages,problem", [
    ([{"role": "user", "content": "hi"}], None),
    ([{"role": "user", "content": None}], None),  # an assistant turn with tool calls has null content
    ([{"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url"}]}], None),
    (["hi"], "'messages.0' : must be an object with a string 'role'"),
    ([{"role": "user", "content": "a"}, {"content": "hi"}], "'messages.1' : must be an object with a string 'role'"),
    ([{"role": 3, "content": "hi"}], "'messages.0' : must be an object with a string 'role'"),
    ([{"role": "user", "content": [{"type": "text", "text": 5}]}],
     "'messages.0.content' : each part must be an object whose 'text' is a string"),
    ([{"role": "user", "content": ["hi"]}],
     "'messages.0.content' : each part must be an object whose 'text' is a string"),
    ([{"role": "user", "content": 5}], "'messages.0.content' : must be a string or a list of content parts"),
])
def test_malformed_messages_name_the_message_and_what_is_wrong(messages, problem):
    assert message_error(messages) == problem


@pytest.mark.parametrize("body,cap", [
    ({"max_tokens": 5}, ("max_tokens", 5)),
    ({"max_completion_tokens": 7, "max_tokens": 5}, ("max_completion_tokens", 7)),
    ({"max_completion_tokens": None, "max_tokens": 5}, ("max_tokens", 5)),  # the openai SDK's explicit null
    ({}, ("max_tokens", None)),
])
def test_the_completion_cap_is_max_completion_tokens_unless_unset(body, cap):
    assert completion_cap(body) == cap


def _chat(**kw):
    return {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], **kw}


@pytest.mark.parametrize("body,status,param,text", [
    (_chat(), None, None, None),
    (_chat(n=1, stream=False, max_tokens=1), None, None, None),
    (_chat(max_tokens=MAX_SIZE), None, None, None),
    (_chat(model=None), 400, "model", "'model' : property 'model' is missing"),
    (_chat(model=""), 400, "model", "'model' : property 'model' is missing"),
    (_chat(model=7), 400, "model", "'model' : must be a string"),
    (_chat(messages=[]), 400, "messages", "'messages' : property 'messages' is missing or empty"),
    (_chat(messages="hi"), 400, "messages", "'messages' : must be an array of messages"),  # (there, not a list)
    (_chat(messages={"role": "user"}), 400, "messages", "'messages' : must be an array of messages"),
    (_chat(messages=None), 400, "messages", "'messages' : property 'messages' is missing or empty"),
    (_chat(messages=[{"content": "hi"}]), 400, "messages", "'messages.0' : must be an object"),
    (_chat(n=2), 400, "n", "only n = 1 is supported"),
    (_chat(n=True), 400, "n", "only n = 1 is supported"),  # a JSON true is not the number 1
    (_chat(stream="false"), 400, "stream", "must be a boolean"),
    (_chat(max_tokens=0), 400, "max_tokens", f"from 1 to {MAX_SIZE:,}"),
    (_chat(max_tokens=MAX_SIZE + 1), 400, "max_tokens", f"from 1 to {MAX_SIZE:,}"),
    (_chat(max_tokens=2.5), 400, "max_tokens", "must be an integer"),
    (_chat(max_tokens=True), 400, "max_tokens", "must be an integer"),
    (_chat(max_completion_tokens=0, max_tokens=5), 400, "max_completion_tokens", "must be an integer"),
    (_chat(service_tier="flex"), 400, "service_tier", "'flex' is for paid plans; this organization is on the free"),
    (_chat(service_tier="performance"), 400, "service_tier", "'performance' (provisioned capacity"),
    (_chat(service_tier="fast"), 400, "service_tier", "'fast' is not a service tier (allowed: on_demand)"),
    (_chat(model="no-such-model"), 404, None, "The model `no-such-model` does not exist or you do not have access"),
    (_chat(model=AUDIO), 400, "model", f"model `{AUDIO}` does not support chat completions"),
])
def test_a_chat_body_is_checked_as_the_api_checks_it(body, status, param, text):
    emu = Emulator(make_spec(), time_scale=1)
    err = emu.chat_error(body)
    if status is None:
        assert err is None
        return
    assert err.status == status and text in err.error["message"]
    assert err.error.get("param") == param
    if status == 404:
        assert err.error["code"] == "model_not_found"


def test_a_batch_line_skips_the_tier_check_and_an_audio_request_needs_an_audio_model():
    emu = Emulator(make_spec(), time_scale=1)
    assert emu.chat_error(_chat(service_tier="flex"), check_tier=False) is None  # a batch line: the batch's tier
    assert emu.model_error(AUDIO, want_audio=True) is None
    err = emu.model_error(MODEL, want_audio=True)
    assert err.status == 400 and err.error["message"] == f"model `{MODEL}` does not support audio transcriptions"


def test_a_paid_org_serves_flex_and_auto_and_names_the_first_tier_a_request_meets():
    emu = Emulator(flex_spec(), time_scale=1)
    assert emu.service_tiers == ("on_demand", "flex", "auto")
    assert all(emu.tier_error(t) is None for t in ("on_demand", "flex", "auto"))
    assert emu.tier_error("fast").error["message"].endswith("(allowed: on_demand, flex, auto)")
    assert [emu.first_tier(t) for t in (None, "on_demand", "flex", "auto", "bogus")] == [
        "on_demand", "on_demand", "flex", "on_demand", "on_demand"]
    assert Emulator(flex_spec("flex"), time_scale=1).first_tier("bogus") == "flex"  # the org's default
    free = Emulator(make_spec(), time_scale=1)
    assert free.service_tiers == ("on_demand",) and free.first_tier("flex") == "on_demand"  # not its to ask


def test_models_groq_shut_down_are_decommissioned_only_after_their_date():
    """llama-3.3-70b-versatile went off the free tier on 2026-08-16 (groq-real-responses.md §7): a request
    naming it after that is Groq's 400 model_decommissioned; the day before, it is served."""
    before = Emulator(make_spec(), time_scale=1, today=datetime.date(2026, 8, 15))
    after = Emulator(make_spec(), time_scale=1, today=datetime.date(2026, 8, 17))
    model = "llama-3.3-70b-versatile"
    assert before.served_error(model) is None and model in before.tier_limits
    err = after.served_error(model)
    assert err.status == 400 and err.error["code"] == "model_decommissioned"
    assert model not in after.tier_limits and any(model in n for n in after.notes)
    assert not any("model_decommissioned" in n for n in before.notes if model in n)


def test_a_keys_label_must_name_a_project_of_the_scenario():
    with pytest.raises(ConfigError, match="label each key with one"):
        Emulator(project_spec(), keys={"sk": "sk"})
    with pytest.raises(ConfigError, match="--key KEY=c: "):
        Emulator(project_spec(), keys={"sk": "c"})
    emu = Emulator(project_spec(), keys={"sk-a": "a"})
    assert emu.label("Bearer sk-a") == (True, "a") and emu.label("bearer  sk-a ") == (True, "a")
    assert emu.label("Basic sk-a") == (False, None) and emu.label(None) == (False, None)
    assert emu.label("Bearer other") == (False, None)
    assert Emulator(make_spec()).label(None) == (True, None)  # no keys configured: everyone is admitted


# ---- decisions: the 429's figures and its durations at a time scale ----------------------------------------

def _wait(message: str) -> float:
    """Seconds of a Go duration in "Please try again in ..." (``4.77s``, ``1m2.5s``, ``547ms``)."""
    d = re.search(r"Please try again in ([0-9hms.]+)\.", message).group(1)
    if d.endswith("ms"):
        return float(d[:-2]) / 1000
    total = 0.0
    for value, unit in re.findall(r"([0-9.]+)([hms])", d):
        total += float(value) * {"h": 3600, "m": 60, "s": 1}[unit]
    return total


@pytest.mark.parametrize("k", [1.0, 20.0])
def test_a_tpm_429_states_used_requested_and_the_refill_wait_in_the_clients_seconds(k):
    """TPM 6,000 a minute (the free tier's llama-3.1-8b-instant, as in the real 429 on record): 5 x (20 + 1,000)
    tokens admitted, then 20 + 960 more refused, 80 too many: a wait under a second is still a 429.  Requested
    is prompt + max_tokens, the wait (Used + Requested - Limit) / (6,000 / 60 s) (a Go duration: ``800ms``),
    divided by K on the wire and kept in limiter seconds in the log; retry-after is whole seconds (1) at K = 1."""
    emu = Emulator(make_spec(), time_scale=k)
    admitted = [emu.decide(MODEL, 20, 1000) for _ in range(5)]
    assert [d.status for d in admitted] == [200] * 5 and [d.charged for d in admitted] == [1020.0] * 5
    d = emu.decide(MODEL, 20, 960)
    assert d.status == 429 and d.refused_by == "tpm" and d.refused_scope == "org" and d.charged == 980.0
    logged = d.log_error["message"]
    m = re.search(r"on tokens per minute \(TPM\): Limit 6000, Used (\d+), Requested 980\.", logged)
    assert m, logged
    used = int(m.group(1))
    assert 5020 < used <= 5100  # 5 x 1,020, a little refilled meanwhile
    assert _wait(logged) == pytest.approx((used + 980 - 6000) / 100, abs=0.02)
    assert re.search(r"Please try again in \d+(\.\d+)?ms\.", logged)  # under a second: milliseconds
    assert _wait(d.error.error["message"]) == pytest.approx(_wait(logged) / k, rel=1e-3, abs=1e-3)
    assert "Need more tokens? Upgrade to Dev Tier" in logged  # the free tier's hint
    assert d.log_headers["retry-after"] == "1"  # whole seconds, rounded up, in the log (as Groq sends it)
    assert float(d.headers["retry-after"]) == pytest.approx(1 / k)
    assert emu.limits(MODEL).units["tpm"].remaining(d.now) == pytest.approx(6000 - used, abs=1)  # nothing charged
    paid = Emulator(flex_spec(), time_scale=k)  # a paid tier: no upgrade hint
    refused = [paid.decide(MODEL, 20, 8) for _ in range(3)][-1]
    assert refused.status == 429 and "Upgrade" not in refused.log_error["message"]


def test_a_request_larger_than_the_whole_limit_is_a_413_without_used_or_wait():
    emu = Emulator(make_spec(), time_scale=1)
    d = emu.decide(MODEL, 20, 6000)
    assert d.status == 413 and d.refused_by == "tpm"
    msg = d.error.error["message"]
    assert "Request too large for model" in msg and "Limit 6000, Requested 6020" in msg
    assert "Used" not in msg and "try again in" not in msg


def test_an_admitted_answer_has_headers_in_the_clients_seconds_and_the_log_keeps_limiter_seconds():
    """At K = 10 the reset headers of an answer are a tenth of those logged; remaining counts are the same.
    20 + 8 tokens on TPM 6,000/min refill in 280 ms, one request of RPD 14,400 in 6 s (Go durations)."""
    emu = Emulator(make_spec(), time_scale=10)
    d = emu.decide(MODEL, 20, 8)
    assert d.status == 200 and d.charged == 28 and d.error is None and d.log_error is None
    assert d.log_headers["x-ratelimit-reset-tokens"] == "280ms" and d.headers["x-ratelimit-reset-tokens"] == "28ms"
    assert d.log_headers["x-ratelimit-reset-requests"] == "6s" and d.headers["x-ratelimit-reset-requests"] == "600ms"
    for h in ("x-ratelimit-remaining-tokens", "x-ratelimit-limit-tokens", "x-ratelimit-remaining-requests"):
        assert d.headers[h] == d.log_headers[h]
    assert d.headers["x-ratelimit-remaining-tokens"] == "5972"
    assert d.headers["x-ratelimit-remaining-requests"] == "14399"
    assert d.delay == sum(d.times) and all(t > 0 for t in d.times[1:])
    same = Emulator(make_spec()).decide(MODEL, 20, 8)  # K = 1 by default: the log holds what the client saw
    assert same.log_headers == same.headers and same.headers["x-ratelimit-reset-tokens"] == "280ms"


def test_a_decision_defaults_its_log_to_what_the_client_saw():
    err = Emulator(make_spec()).served_error("nope")
    d = Decision(404, {"a": "1"}, 0.0, "req_x", err)
    assert d.log_headers == {"a": "1"} and d.log_error is err.error and d.delay == 0.0


def test_an_injected_fault_carries_the_tiers_headers_and_request_ids_are_unique():
    emu = Emulator(make_spec(error_rate=1.0, error_status=503), time_scale=1)
    a, b = emu.decide(MODEL, 20, 8), emu.decide(MODEL, 20, 8)
    assert a.status == 503 and a.headers["x-ratelimit-limit-tokens"] == "6000"
    assert a.headers["x-ratelimit-remaining-requests"] == "14400"  # charged nothing
    assert re.fullmatch(r"req_[0-9a-f]{26}", a.request_id) and a.request_id != b.request_id


def test_answers_follow_the_scenarios_lengths_capped_by_max_tokens():
    emu = Emulator(make_spec(), time_scale=1)  # the client group's completion_tokens: uniform 5..32
    lengths = [emu.decide(MODEL, 20, 1000).completion for _ in range(5)]
    assert all(5 <= n <= 32 for n in lengths)
    assert emu.decide(MODEL, 20, 3).completion == 3  # never past the cap
    assert emu.answer_lengths(MODEL) is not None and emu.answer_lengths("openai/gpt-oss-20b") is None
    assert emu.decide("openai/gpt-oss-20b", 20, 40).completion == 40  # no lengths given: as long as the cap


def test_finish_refunds_only_what_was_reserved_and_not_used_and_only_if_the_org_refunds():
    emu = Emulator(flex_spec(), time_scale=1)  # refund_unused off
    d = emu.decide(MODEL, 20, 1000)
    tpm = emu.limits(MODEL).units["tpm"]
    before = tpm.remaining(d.now)
    emu.finish(MODEL, d, 1000)
    assert tpm.remaining(d.now) == pytest.approx(before, abs=1e-6)
    emu = Emulator(flex_spec(accounting={"refund_unused": True}), time_scale=1)
    d = emu.decide(MODEL, 20, 5)  # completion == max_tokens 5 (uniform 5..32 capped): nothing to give back
    assert d.completion == 5
    tpm = emu.limits(MODEL).units["tpm"]
    before = tpm.remaining(d.now)
    emu.finish(MODEL, d, 5)
    assert tpm.remaining(d.now) == pytest.approx(before, abs=1e-6)


# ---- records -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("status,outcome", [
    (200, "ok"), (429, "rate_limited"), (413, "too_large"), (401, "unauthorized"), (400, "bad_request"),
    (404, "bad_request"), (499, "bad_request"), (498, "error"), (500, "error"), (503, "error"),
])
def test_a_records_outcome_follows_its_status(status, outcome):
    emu = Emulator(make_spec(), time_scale=1)
    emu.record(endpoint="chat.completions", model=MODEL, status=status, t_send=emu.clock.now(), label=None,
               headers={})
    rec = emu.records()
    assert rec["outcome"].tolist() == [outcome] and rec["n429"].tolist() == [int(status == 429)]
    assert emu.counts == {("chat.completions", MODEL, outcome, status): 1}


def test_a_record_row_has_its_times_since_the_start_and_an_admission_only_when_answered():
    emu = Emulator(make_spec(), time_scale=1)
    ok = emu.decide(MODEL, 20, 8)
    emu.record(endpoint="chat.completions", model=MODEL, status=200, t_send=ok.now, label="x", headers=ok.headers,
               max_tokens=8, prompt=20, d=ok, request_id=ok.request_id)
    emu.record(endpoint="chat.completions", model="nope", status=404, t_send=emu.clock.now(), label=None, headers={})
    rec = emu.records()
    assert rec["id"].tolist() == [0, 1] and rec["attempts"].tolist() == [1, 1]
    first, second = rec.iloc[0], rec.iloc[1]
    assert first["created"] == pytest.approx(ok.now - emu.clock.start) and 0 <= first["created"] < 5
    assert first["admitted"] == first["created"] and math.isnan(second["admitted"])
    assert first["latency"] == pytest.approx(first["finished"] - first["created"]) and first["latency"] >= 0
    assert first["finished"] <= emu.clock.now() - emu.clock.start  # since the start, as created
    assert (first["completion_tokens"], first["charged_tokens"], first["prompt_tokens"]) == (ok.completion, 28.0, 20)
    assert first["total_time"] == pytest.approx(first["prompt_time"] + first["completion_time"], abs=1e-9)
    assert first["queue_time"] > 0 and first["service_tier"] == "on_demand" and first["request_id"] == ok.request_id
    assert math.isnan(second["queue_time"]) and second["charged_tokens"] == 0.0
    # a request refused before any decision: no tokens, no audio, no tier
    assert (second["prompt_tokens"], second["completion_tokens"], second["audio_seconds"]) == (0, 0, 0.0)
    assert second["refused_by"] == "" and rec["service_tier"].isna().tolist() == [False, True]
    assert list(rec.columns) == list(RECORD_COLUMNS)  # no projects, no batches: the simulator's columns
    for col in ("outcome", "model", "endpoint", "client", "refused_by", "service_tier"):
        assert rec[col].dtype == "category", col
    assert {"", "rpm", "tpm"} <= set(rec["refused_by"].cat.categories)
    assert {"on_demand", "flex"} <= set(rec["service_tier"].cat.categories)
    assert ("chat.completions", "", "bad_request", 404) in emu.counts  # a model not served: no label value


def test_the_log_line_has_the_error_fields_and_the_send_time_on_the_epoch_clock(tmp_path):
    emu = Emulator(make_spec(overrides={MODEL: {"rpm": 1}}), time_scale=1, log_path=tmp_path / "r.jsonl")
    emu.decide(MODEL, 20, 8)
    d = emu.decide(MODEL, 20, 8)
    emu.record(endpoint="chat.completions", model=MODEL, status=d.status, t_send=d.now, label=None,
               headers=d.log_headers, error={**d.log_error, "extra": 1}, d=d, max_tokens=8)
    emu.record(endpoint="chat.completions", model=MODEL, status=200, t_send=d.now, label=None, headers={})
    rec = emu.records()
    assert rec["status"].tolist() == [429, 200] and math.isnan(rec["queue_time"][0])  # a 429 took no time
    # refused: no answer; charged_tokens is the request's cost (20 + 8), as the simulator records a refused one
    assert rec["completion_tokens"][0] == 0 and rec["charged_tokens"][0] == 28.0
    assert math.isnan(rec["total_time"][0]) and math.isnan(rec["admitted"][0])
    emu.close()
    line, bare = [json.loads(x) for x in open(tmp_path / "r.jsonl")]
    assert bare["error"] is None and bare["service_tier"] is None  # no error, no decision
    assert line["t_send"] == pytest.approx(emu.clock.epoch(d.now)) and line["t_recv"] >= line["t_send"]
    assert abs(line["t_send"] - time.time()) < 60  # epoch seconds, not since the start or midnight
    assert set(line["error"]) == {"type", "code", "message"} and line["error"]["code"] == "rate_limit_exceeded"
    assert line["service_tier"] == "on_demand" and line["status"] == 429


def test_utilisation_is_the_share_of_each_limit_in_use():
    emu = Emulator(flex_spec(), time_scale=1)  # RPM 2, RPD 100, TPM 6,000 on demand
    emu.decide(MODEL, 20, 580)
    u = emu.utilisation()
    assert u[("on_demand", MODEL, "rpm")] == pytest.approx(0.5, abs=0.01)
    assert u[("on_demand", MODEL, "rpd")] == pytest.approx(0.01, abs=0.001)
    assert u[("on_demand", MODEL, "tpm")] == pytest.approx(0.1, abs=0.01)
    assert not any(tier == "flex" for tier, _, _ in u)  # no flex set until a request asks for flex


def test_a_projects_utilisation_covers_only_the_units_it_lowers_and_its_429_names_its_scope():
    """Project a lowers RPM to 2 (the org's: 5): after one request it has used half of its own RPM; its third
    request is refused by the project's limit, recorded with scope "project" (the org still has room)."""
    emu = Emulator(project_spec(), time_scale=1, keys={"sk-a": "a"})
    ds = [emu.decide(MODEL, 20, 8, project="a")]
    assert emu.project_utilisation()[("a", "on_demand", MODEL, "rpm")] == pytest.approx(0.5, abs=0.01)
    ds += [emu.decide(MODEL, 20, 8, project="a") for _ in range(2)]
    assert [d.status for d in ds] == [200, 200, 429] and ds[2].refused_scope == "project"
    assert "Limit 2, Used 2, Requested 1." in ds[2].error.error["message"]
    pu = emu.project_utilisation()
    assert set(pu) == {("a", "on_demand", MODEL, "rpm")} and pu[("a", "on_demand", MODEL, "rpm")] == pytest.approx(
        1.0, abs=0.01)
    assert emu.utilisation()[("on_demand", MODEL, "rpm")] == pytest.approx(2 / 5, abs=0.01)
    for d in ds:
        emu.record(endpoint="chat.completions", model=MODEL, status=d.status, t_send=d.now, label="a",
                   headers=d.headers, d=d)
    rec = emu.records()
    assert rec["refused_scope"].tolist() == ["", "", "project"]
    assert set(rec["refused_scope"].cat.categories) == {"", "project", "org"}  # as a simulated run records it


def test_flush_writes_the_records_and_says_where_they_are_kept_when_the_path_is_taken(tmp_path):
    assert Emulator(make_spec()).flush() is None  # no records path: nothing written
    path = tmp_path / "records" / "day" / "records.parquet"  # directories made as needed, log and records alike
    emu = Emulator(make_spec(), log_path=tmp_path / "logs" / "today" / "r.jsonl", parquet_path=path)
    assert (emu.flushed, emu.closed) == (0, False)
    emu.record(endpoint="chat.completions", model=MODEL, status=200, t_send=emu.clock.now(), label=None, headers={})
    assert emu.flush() == path and emu.flushed == 1 and len(pd.read_parquet(path)) == 1
    path.unlink()
    path.mkdir()  # a directory in the way: the records stay in the partial file, the error says so
    writer = emu._log
    with pytest.raises(OSError, match="the records are kept in .*records.parquet.partial"):
        emu.close()
    assert writer._fh.closed  # the log's file is released all the same
    assert emu.closed and emu._log is None  # the log is closed all the same
    assert len(pd.read_parquet(path.with_name("records.parquet.partial"))) == 1


def test_an_earlier_session_is_set_aside_under_the_first_free_number(tmp_path):
    log = tmp_path / "requests.jsonl"
    log.write_text("session 0\n")
    (tmp_path / "requests.1.jsonl").write_text("session -1\n")
    emu = Emulator(make_spec(), log_path=log, parquet_path=tmp_path / "records.parquet")  # no records yet: the log
    assert (tmp_path / "requests.2.jsonl").read_text() == "session 0\n"
    assert (tmp_path / "requests.1.jsonl").read_text() == "session -1\n"
    assert emu.notes[-1] == f"an earlier session's requests.jsonl in {tmp_path} kept as requests.2.jsonl"
    emu.close()


def test_flex_scarcity_keeps_switching_as_the_clock_runs_on(monkeypatch):
    """Scarce and calm periods of 1 s on average, every flex attempt failing while scarce and none while calm:
    attempts spread over 2,000 limiter seconds after the start meet both, about half each (an emulator runs
    without end, so the timeline is drawn on as its clock goes; frozen at the start it would be all or none)."""
    emu = Emulator(flex_spec(scarce=1, calm=1, scarce_failure=1.0, multiplier=1000), time_scale=1, seed=5)
    t = [emu.clock.start]
    monkeypatch.setattr(emu.clock, "now", lambda: t[0])
    statuses = []
    for _ in range(200):
        t[0] += 10.0
        statuses.append(emu.decide(MODEL, 20, 8, service_tier="flex").status)
    assert set(statuses) == {200, 498}
    assert 60 <= statuses.count(498) <= 140, statuses.count(498)
    assert max(emu.capacity.switches) >= t[0]  # the timeline covers the last attempt


def test_a_scenario_whose_answers_are_empty_gets_empty_answers_charged_their_reservation():
    """completion_tokens = 0 is a valid scenario (every answer empty): the answers have 0 tokens, not 1, and
    each is charged prompt + max_tokens up front as Groq charges (groq-real-responses.md §3)."""
    data = {"scenario": {"name": "empty answers", "duration": "2m", "seed": 1}, "org": {"tier": "free"},
            "clients": [{"name": "a", "model": MODEL, "arrival": {"kind": "poisson", "rate": 1},
                         "prompt_tokens": 20, "max_tokens": 32, "completion_tokens": 0}]}
    emu = Emulator(scenario_from_dict(data, source="<test>").spec(), time_scale=1)
    ds = [emu.decide(MODEL, 20, 32) for _ in range(3)]
    assert [(d.status, d.completion, d.charged) for d in ds] == [(200, 0, 52.0)] * 3
    assert all(d.times[2] == 0.0 for d in ds)  # no output, no output time


def test_the_models_the_scenario_names_are_served_even_after_groq_shut_them_down():
    """scenario_models (the models a scenario uses) replaces the spec's client groups' models: qwen3-32b, shut
    down on the free tier on 2026-07-17, is served when named; the client group's llama-3.1-8b-instant, not
    named, is then answered 400 model_decommissioned (shut down 2026-08-16)."""
    emu = Emulator(make_spec(), scenario_models=frozenset({"qwen/qwen3-32b"}), today=datetime.date(2026, 11, 1))
    assert emu.served_error("qwen/qwen3-32b") is None
    assert emu.served_error(MODEL).error["code"] == "model_decommissioned"


def test_a_text_to_speech_model_answers_neither_chat_nor_transcriptions():
    """playai-tts (served until its shutdown on 2025-12-31): its endpoint, /audio/speech, is not emulated."""
    emu = Emulator(make_spec(), today=datetime.date(2025, 6, 1))
    for want_audio, what in ((False, "chat completions"), (True, "audio transcriptions")):
        err = emu.model_error("playai-tts", want_audio)
        assert err.status == 400 and err.error["message"] == (
            f"model `playai-tts` does not support {what}: it is text-to-speech")


def test_an_injected_498_under_auto_names_flex():
    """auto goes to flex when on demand refuses; an injected 498 is flex's capacity, so it names flex (and the
    flex limits' headers: RPD 100 x 10)."""
    emu = Emulator(flex_spec(org={"error_rate": 1.0, "error_status": 498}), time_scale=1)
    d = emu.decide(MODEL, 20, 8, service_tier="auto")
    assert d.status == 498 and d.service_tier == "flex"
    assert f"model `{MODEL}` on service tier `flex`" in d.error.error["message"]
    assert d.headers["x-ratelimit-limit-requests"] == "1000"


def test_the_speed_draws_never_run_out_and_differ_from_answer_to_answer():
    """Each answer draws two standard normals (speed, queue), a block of 4,096 at a time: 3,000 answers need
    more than one block, and every answer's queue time is its own draw."""
    emu = Emulator(flex_spec(multiplier=100_000), time_scale=1)
    ds = [emu.decide(MODEL, 20, 8, service_tier="flex") for _ in range(3000)]
    assert all(d.status == 200 for d in ds)
    queue = [d.times[0] for d in ds]
    assert len(set(queue)) == len(queue)
    logs = sorted(math.log(q) for q in queue)  # lognormal: the log's median sits mid-way of its quartiles
    q1, med, q3 = logs[750], logs[1500], logs[2250]
    assert abs((med - q1) - (q3 - med)) < 0.2 * (q3 - q1)


def test_headers_at_a_later_time_show_the_limits_refilled(monkeypatch):
    """headers_now / headers_sent_and_logged at an explicit ``now``: a minute after 20 + 1,000 tokens, TPM
    6,000 is whole again; at the time of the charge it is not."""
    emu = Emulator(make_spec(), time_scale=2)
    d = emu.decide(MODEL, 20, 1000)
    monkeypatch.setattr(emu.clock, "now", lambda: d.now)  # the clock stopped at the charge
    now_sent, now_logged = emu.headers_sent_and_logged(MODEL)  # at the clock's now (what the app asks)
    assert emu.headers_now(MODEL)["x-ratelimit-remaining-tokens"] == now_sent["x-ratelimit-remaining-tokens"] == "4980"
    assert float(now_logged["x-ratelimit-reset-tokens"][:-1]) > float(now_sent["x-ratelimit-reset-tokens"][:-1])
    assert emu.headers_now(MODEL, d.now)["x-ratelimit-remaining-tokens"] == "4980"
    sent, logged = emu.headers_sent_and_logged(MODEL, d.now + 60)
    assert sent["x-ratelimit-remaining-tokens"] == logged["x-ratelimit-remaining-tokens"] == "6000"
    assert emu.headers_now(MODEL, d.now, time_scale=1.0)["x-ratelimit-reset-tokens"] == "10.2s"  # 1,020 / 100
    assert emu.headers_now(MODEL, d.now)["x-ratelimit-reset-tokens"] == "5.1s"  # the client's seconds at K = 2


def test_a_session_without_a_log_closes_cleanly(tmp_path):
    emu = Emulator(make_spec(), parquet_path=tmp_path / "records.parquet")
    emu.close()
    assert emu.closed and (tmp_path / "records.parquet").exists()


def test_the_first_client_group_that_describes_a_models_answers_sets_their_lengths():
    """Two client groups on one model, the first giving no completion_tokens: the second's (fixed 7) holds."""
    client = {"model": MODEL, "arrival": {"kind": "poisson", "rate": 1}, "prompt_tokens": 20, "max_tokens": 32}
    data = {"scenario": {"name": "two groups", "duration": "2m", "seed": 1}, "org": {"tier": "free"},
            "clients": [{"name": "a", **client}, {"name": "b", **client, "completion_tokens": 7}]}
    emu = Emulator(scenario_from_dict(data, source="<test>").spec(), time_scale=1)
    assert [emu.decide(MODEL, 20, 32).completion for _ in range(3)] == [7, 7, 7]


def test_projects_share_the_orgs_limits():
    """The org's RPM 5 is one budget for all its projects: a spends 2 (its own RPM), b 3, and b's next request
    is refused by the org's limit (scope "org"), though b's own limits have room."""
    emu = Emulator(project_spec(), time_scale=1, keys={"sk-a": "a", "sk-b": "b"})
    assert [emu.decide(MODEL, 20, 8, project="a").status for _ in range(2)] == [200, 200]
    assert [emu.decide(MODEL, 20, 8, project="b").status for _ in range(3)] == [200, 200, 200]
    late = emu.decide(MODEL, 20, 8, project="b")
    assert (late.status, late.refused_by, late.refused_scope) == (429, "rpm", "org")
    assert "Limit 5, Used 5, Requested 1." in late.error.error["message"]
    assert emu.utilisation()[("on_demand", MODEL, "rpm")] == pytest.approx(1.0, abs=0.01)


def test_the_sent_and_logged_headers_describe_one_instant(monkeypatch):
    """At K = 4 the log's headers are the sent ones in limiter seconds: read at the same instant, even when the
    clock moves between the two readings (here 10 limiter seconds a reading: 1,000 tokens of TPM refill)."""
    emu = Emulator(make_spec(), time_scale=4)
    d = emu.decide(MODEL, 20, 1000)
    t = [d.now]

    def ticking():
        t[0] += 10.0
        return t[0]
    monkeypatch.setattr(emu.clock, "now", ticking)
    sent, logged = emu.headers_sent_and_logged(MODEL)
    assert sent["x-ratelimit-remaining-tokens"] == logged["x-ratelimit-remaining-tokens"]
    assert sent["x-ratelimit-remaining-requests"] == logged["x-ratelimit-remaining-requests"]


def test_the_docs_client_examples_name_models_the_docs_server_serves():
    """docs/emulator.md's client snippets against its own `groqsim serve` command: a model Groq has shut down for
    the tier (llama-3.1-8b-instant, since 2026-08-16) answered 400 model_decommissioned to the first thing a
    reader tries."""
    from pathlib import Path

    from sim.emulator import emulator_from_scenario
    root = Path(__file__).resolve().parents[1]
    doc = (root / "docs" / "emulator.md").read_text()
    scenario = re.search(r"groqsim serve (scenarios/\S+\.toml)", doc).group(1)
    clients = doc[doc.index("## Clients"):doc.index("## Routes")]
    models = re.findall(r'model="([^"]+)"', clients)
    assert len(models) >= 3
    emu = emulator_from_scenario(str(root / scenario))
    for model in models:
        assert emu.served_error(model) is None, model
    assert emu.served_error("llama-3.1-8b-instant") is not None  # (what the snippets named before)
