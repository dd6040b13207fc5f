"""The emulator's HTTP app (sim/emulator/app.py) in process: Starlette's TestClient for raw HTTP, and the real
groq/openai SDK clients on ``httpx.ASGITransport``, with the emulator's clock frozen so every figure is exact.

The expected values come from the real evidence (shared/reference/groq-real-responses.md,
groq-rate-limits.md) or are computed by hand: the free tier's limits (openai/gpt-oss-20b: RPD 1 000, TPM
8 000; whisper-large-v3: RPD 2 000, ASH 7 200), a continuously refilling token bucket (a request's tokens come
back at TPM / 60 s, a request at RPD / 86 400 s), resets and waits as Go durations, "Requested" = prompt +
``max_tokens``, the 413 without "Used", ``retry-after`` only on a 429, and Groq's error bodies.  The answer's
real seconds are not slept: ``_delay`` is replaced by a recorder (its own threshold has a test of its own)."""
from __future__ import annotations

import asyncio
import gc
import io
import json
import re
import warnings
import wave

import groq
import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

import sim.emulator.app as app_mod
from sim.emulator import Emulator, build_app, parse_keys
from sim.emulator.app import audio_seconds
from tests.test_emulator import MODEL, flex_spec, make_spec, msgs, project_spec, wav_bytes
from tests.helpers import answer_text as text_of

OSS = "openai/gpt-oss-20b"  # no client group of make_spec's answers with it: its answers are as long as their cap
WHISPER = "whisper-large-v3"
CHAT = "/openai/v1/chat/completions"
STT = "/openai/v1/audio/transcriptions"
STT_EN = "/openai/v1/audio/translations"
RID = re.compile(r"^req_[0-9a-f]{26}$")
BILLING = "https://console.groq.com/settings/billing"


class Frozen:
    """The emulator's limiter clock stopped at ``t`` (moved only by :meth:`advance`): no refill between calls."""

    def __init__(self, emu: Emulator):
        self.t = emu.clock.now()
        emu.clock.now = lambda: self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def delays(monkeypatch):
    """The real seconds the app would sleep, recorded instead, each as (asked, the event loop's time then)."""
    seen = []

    async def record(seconds):
        seen.append((seconds, asyncio.get_running_loop().time()))
    monkeypatch.setattr(app_mod, "_delay", record)
    return seen


@pytest.fixture
def app():
    """app(spec, **emulator kw) -> (TestClient, emulator, frozen clock); the clients are closed at the end."""
    made = []

    def make(spec, raise_server_exceptions=True, **kw):
        # (the app answers every failure itself: an exception reaching the test client is a traceback the
        # live server would print)
        emu = Emulator(spec, **kw)
        clock = Frozen(emu)
        tc = TestClient(build_app(emu), raise_server_exceptions=raise_server_exceptions)
        made.append((tc, emu))
        return tc, emu, clock
    yield make
    for tc, emu in made:
        tc.close()
        emu.parquet_path = None  # (the log closed; no records written)
        emu.close()


def sdk(emu: Emulator, go, key: str = "k"):
    """Run ``go(groq_client, openai_client, raw)`` (async) against the app in process, the real SDKs on an
    ``httpx.ASGITransport``."""
    async def main():
        transport = httpx.ASGITransport(app=build_app(emu))
        async with httpx.AsyncClient(transport=transport, base_url="http://emu") as raw, \
                httpx.AsyncClient(transport=transport) as h1, httpx.AsyncClient(transport=transport) as h2:
            g = groq.AsyncGroq(base_url="http://emu", api_key=key, max_retries=0, http_client=h1)
            o = openai.AsyncOpenAI(base_url="http://emu/openai/v1", api_key=key, max_retries=0, http_client=h2)
            return await go(g, o, raw)
    return asyncio.run(main())


def log_lines(emu: Emulator) -> list[dict]:
    emu.flush()
    with open(emu.log_path) as f:
        return [json.loads(x) for x in f]


def err_of(r) -> dict:
    return r.json()["error"]


def chat(tc, model=OSS, chars=40, headers=None, **body):
    return tc.post(CHAT, json={"model": model, "messages": msgs(chars), **body}, headers=headers or {})


# ---- a chat completion --------------------------------------------------------------------------------

def test_a_chat_completion_is_groqs_object_with_the_limits_charged_and_exact_headers(app, delays, tmp_path):
    tc, emu, clock = app(make_spec(), log_path=tmp_path / "r.jsonl")
    r = chat(tc, max_tokens=10)  # 40 characters: 3 + 3 + 10 = 16 prompt tokens; no answer lengths: 10 = the cap
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    b, h = r.json(), r.headers
    rid = h["x-request-id"]
    assert RID.match(rid) and b["x_groq"] == {"id": rid} and b["id"] == "chatcmpl-" + rid[4:]
    assert set(b) == {"id", "object", "created", "model", "system_fingerprint", "service_tier", "choices", "usage",
                      "usage_breakdown", "x_groq"}
    assert (b["object"], b["model"], b["system_fingerprint"], b["service_tier"], b["usage_breakdown"]) == (
        "chat.completion", OSS, "fp_groqsim", "on_demand", None)
    assert b["choices"] == [{"index": 0, "message": {"role": "assistant", "content": text_of(10)}, "logprobs": None,
                             "finish_reason": "length"}]  # as long as max_tokens: cut at the cap
    u = b["usage"]
    assert (u["prompt_tokens"], u["completion_tokens"], u["total_tokens"]) == (16, 10, 26)
    assert u["total_time"] == pytest.approx(u["prompt_time"] + u["completion_time"], abs=2e-9)
    assert u["queue_time"] > 0 and u["prompt_time"] > 0 and u["completion_time"] > 0
    assert b["created"] == int(emu.clock.wall(clock.t))
    # one request of RPD 1 000 comes back in 86.4 s; 26 tokens of TPM 8 000 in 26 / (8000 / 60) = 0.195 s
    assert {k: v for k, v in h.items() if k.startswith("x-ratelimit")} == {
        "x-ratelimit-limit-requests": "1000", "x-ratelimit-remaining-requests": "999",
        "x-ratelimit-reset-requests": "1m26.4s", "x-ratelimit-limit-tokens": "8000",
        "x-ratelimit-remaining-tokens": "7974", "x-ratelimit-reset-tokens": "195ms"}
    assert "retry-after" not in h
    # the answer is due after queue + prompt + completion time (K = 1: the limiter's seconds are the client's)
    assert [s for s, _ in delays] == [pytest.approx(u["queue_time"] + u["prompt_time"] + u["completion_time"],
                                                    abs=3e-9)]
    [line] = log_lines(emu)
    assert (line["status"], line["model"], line["endpoint"], line["max_tokens"], line["request_id"]) == (
        200, OSS, "chat.completions", 10, rid)
    assert line["usage"] == u and line["error"] is None and line["retry_count"] is None
    assert line["headers"]["x-ratelimit-remaining-tokens"] == "7974"
    [row] = emu.records().itertuples()
    assert (row.status, row.outcome, row.prompt_tokens, row.completion_tokens, row.charged_tokens) == (
        200, "ok", 16, 10, 26)


def test_an_answer_shorter_than_its_cap_stops_and_no_cap_is_not_a_length_stop(app, delays):
    tc, emu, _ = app(make_spec())
    r = chat(tc, model=MODEL, max_tokens=1000)  # the scenario's answers on MODEL: 5..32 tokens, below 1 000
    c = r.json()["choices"][0]
    assert c["finish_reason"] == "stop" and len(c["message"]["content"].split()) == r.json()["usage"][
        "completion_tokens"] <= 32
    r = chat(tc)  # no max_tokens: 1 024 reserved (and answered, OSS having no answer lengths), not cut at a cap
    assert r.json()["choices"][0]["finish_reason"] == "stop" and r.json()["usage"]["completion_tokens"] == 1024
    assert r.headers["x-ratelimit-remaining-tokens"] == str(8000 - 16 - 1024)
    r = chat(tc, max_completion_tokens=3, max_tokens=50)  # max_completion_tokens wins
    assert r.json()["usage"]["completion_tokens"] == 3 and r.json()["choices"][0]["finish_reason"] == "length"


def test_a_value_the_cap_cuts_short_is_groqs_400_sent_after_the_caps_tokens_and_charged(app, delays, tmp_path):
    """A JSON value needing more tokens than the cap (100 items > 12): the model writes to its cap, and Groq's
    validation fails the unfinished value: a 400 ``json_validate_failed`` (a tool call's: ``tool_use_failed``)
    holding what was written, after the 12 tokens' time, charged as an answer of 12 tokens, with the headers of
    that charge; streamed, one ``event: error`` frame."""
    tc, emu, clock = app(make_spec(), log_path=tmp_path / "r.jsonl")
    fmt = {"type": "json_schema", "json_schema": {"name": "n", "schema": {
        "type": "array", "items": {"type": "integer"}, "minItems": 100}}}
    r = chat(tc, max_tokens=12, response_format=fmt)
    failed = {"message": "Failed to generate JSON. Please adjust your prompt. See 'failed_generation' for more "
                         "details.", "type": "invalid_request_error", "code": "json_validate_failed",
              "failed_generation": ("[" + "0, " * 100)[:48]}  # (12 tokens' worth of characters, ~4 a token)
    assert r.status_code == 400 and r.json() == {"error": failed}
    # 16 + 12 = 28 tokens of TPM 8 000 come back in 28 / (8000 / 60) = 0.21 s
    assert {k: v for k, v in r.headers.items() if k.startswith("x-ratelimit")} == {
        "x-ratelimit-limit-requests": "1000", "x-ratelimit-remaining-requests": "999",
        "x-ratelimit-reset-requests": "1m26.4s", "x-ratelimit-limit-tokens": "8000",
        "x-ratelimit-remaining-tokens": "7972", "x-ratelimit-reset-tokens": "210ms"}
    assert len(delays) == 1 and delays[0][0] > 0  # (sent once the 12 tokens are written)
    s = chat(tc, max_tokens=12, response_format=fmt, stream=True)
    assert s.status_code == 200 and s.headers["content-type"].startswith("text/event-stream")
    assert s.text == "event: error\ndata: " + json.dumps({"error": {**failed, "status_code": 400}}) + "\n\n"
    assert s.headers["x-ratelimit-remaining-tokens"] == "7944"
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {
        "xs": {"type": "array", "items": {"type": "string", "minLength": 5}, "minItems": 3}}}}}  # 1 + 15 tokens
    t = chat(tc, max_tokens=15, tools=[tool], tool_choice="required")
    assert t.status_code == 400 and err_of(t)["code"] == "tool_use_failed" and err_of(t)["message"] == (
        "Failed to call a function. Please adjust your prompt. See 'failed_generation' for more details.")
    assert err_of(t)["failed_generation"] == '{"xs": ["The quick brown fox jumps", "The quick brown fox jumps", '[:60]
    assert chat(tc, max_tokens=16, tools=[tool], tool_choice="required").status_code == 200  # (16 fits)
    lines = log_lines(emu)
    assert [(x["status"], (x["error"] or {}).get("code"), x["usage"] is None) for x in lines] == [
        (400, "json_validate_failed", True), (400, "json_validate_failed", True), (400, "tool_use_failed", True),
        (200, None, False)]
    assert lines[0]["headers"]["x-ratelimit-remaining-tokens"] == "7972"
    rec = emu.records()
    assert rec["completion_tokens"].tolist() == [12, 12, 15, 16] and rec["charged_tokens"].tolist()[:2] == [28, 28]
    assert rec["outcome"].tolist() == ["bad_request"] * 3 + ["ok"]


def test_at_a_time_scale_the_client_is_told_its_own_seconds_and_the_log_the_limiters(app, delays, tmp_path):
    tc, emu, clock = app(make_spec(), time_scale=4, log_path=tmp_path / "r.jsonl")
    clock.advance(1000.0)  # 1 000 limiter seconds after the start: 250 of the client's
    r = chat(tc, max_tokens=10)
    u = r.json()["usage"]
    # `created` is the client's clock (the limiter's would read 750 s later).  Counted from the limiter's
    # start: the clock was frozen a little after it (the emulator's construction, x4; 10 ms on a loaded
    # machine made it 750.03)
    ahead = clock.t - emu.clock.start
    assert 1000.0 <= ahead < 1001.0
    assert r.json()["created"] == int(emu.clock.wall(clock.t))
    assert emu.clock.wall(clock.t) - emu.clock.epoch0 == pytest.approx(ahead / 4, abs=1e-5)
    assert emu.clock.epoch(clock.t) - emu.clock.wall(clock.t) == pytest.approx(ahead * 3 / 4, abs=1e-5)
    assert [s for s, _ in delays] == [pytest.approx((u["queue_time"] + u["prompt_time"] + u["completion_time"]) / 4,
                                                    abs=3e-9)]
    assert (r.headers["x-ratelimit-reset-requests"], r.headers["x-ratelimit-reset-tokens"]) == ("21.6s", "49ms")
    logged = log_lines(emu)[0]["headers"]
    assert (logged["x-ratelimit-reset-requests"], logged["x-ratelimit-reset-tokens"]) == ("1m26.4s", "195ms")
    # a 400 about a known model carries its headers too: the client's seconds on the wire, the limiter's logged
    r = chat(tc, max_tokens=0)
    assert r.status_code == 400 and r.headers["x-ratelimit-reset-requests"] == "21.6s"
    assert log_lines(emu)[1]["headers"]["x-ratelimit-reset-requests"] == "1m26.4s"


def test_the_sdks_read_the_answer_in_process():
    emu = Emulator(make_spec(), time_scale=1000)
    Frozen(emu)

    async def go(g, o, raw):
        a = await g.chat.completions.create(model=OSS, messages=msgs(), max_tokens=4)
        b = await o.chat.completions.create(model=OSS, messages=msgs(), max_tokens=4)
        models = await g.models.list()
        one = await o.models.retrieve(OSS)
        return a, b, models, one
    a, b, models, one = sdk(emu, go)
    assert a.choices[0].message.content == b.choices[0].message.content == "The quick brown fox"
    assert a.usage.total_tokens == b.usage.total_tokens == 20 and b.service_tier == "on_demand"
    assert [m.id for m in models.data] == list(emu.tier_limits) and OSS in emu.tier_limits
    assert one.id == OSS and one.owned_by == "groqsim" and one.created == int(emu.clock.epoch0)


# ---- streams ------------------------------------------------------------------------------------------

def events(r) -> list:
    assert r.headers["content-type"].startswith("text/event-stream")
    out = []
    for block in r.text.split("\n\n"):
        if block:
            assert block.startswith("data: ")
            out.append(block[6:] if block == "data: [DONE]" else json.loads(block[6:]))
    return out


def test_a_stream_sends_the_role_then_16_pieces_then_the_end_with_x_groq_usage(app, delays, tmp_path):
    tc, emu, _ = app(make_spec(), time_scale=0.01, log_path=tmp_path / "r.jsonl")  # the client's seconds x 100
    r = chat(tc, max_tokens=40, stream=True)
    assert r.status_code == 200
    rid = r.headers["x-request-id"]
    assert RID.match(rid) and r.headers["x-ratelimit-remaining-tokens"] == str(8000 - 16 - 40)
    ev = events(r)
    assert ev[-1] == "[DONE]"
    chunks = ev[:-1]
    assert len(chunks) == 1 + 16 + 1  # the role, the answer in 16 pieces (40 tokens > 16), the end
    for c in chunks:
        assert (c["object"], c["id"], c["model"], c["system_fingerprint"], c["service_tier"]) == (
            "chat.completion.chunk", "chatcmpl-" + rid[4:], OSS, "fp_groqsim", "on_demand")
        assert len(c["choices"]) == 1 and c["choices"][0]["index"] == 0 and c["choices"][0]["logprobs"] is None
    first, pieces, last = chunks[0], chunks[1:-1], chunks[-1]
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""} and first["x_groq"] == {"id": rid}
    assert first["choices"][0]["finish_reason"] is None
    parts = [c["choices"][0]["delta"]["content"] for c in pieces]
    assert all(set(c["choices"][0]["delta"]) == {"content"} and c["choices"][0]["finish_reason"] is None
               and "x_groq" not in c for c in pieces)
    assert "".join(parts) == text_of(40) and max(map(len, parts)) - min(map(len, parts)) <= 1  # even pieces
    assert last["choices"][0]["delta"] == {} and last["choices"][0]["finish_reason"] == "length"
    u = last["x_groq"]["usage"]
    assert last["x_groq"]["id"] == rid and "usage" not in last
    assert (u["prompt_tokens"], u["completion_tokens"], u["total_tokens"]) == (16, 40, 56)
    # each chunk is due at its time from the start, in the client's seconds (K = 0.01: 100 times the limiter's):
    # the role after queue + prompt time, piece k after k/16 of the completion time more
    q, p, c = u["queue_time"], u["prompt_time"], u["completion_time"]
    targets = [s + now for s, now in delays]
    assert len(delays) == 17 and delays[0][0] == pytest.approx((q + p) * 100, abs=1e-3)
    for k in range(1, 17):
        assert targets[k] - targets[0] == pytest.approx(c * k / 16 * 100, abs=1e-3)
    [line] = log_lines(emu)
    assert line["status"] == 200 and line["usage"] == u and line["request_id"] == rid and line["max_tokens"] == 40


def test_a_short_answer_streams_one_piece_a_token_and_usage_only_when_asked(app, delays):
    tc, emu, _ = app(make_spec())
    ev = events(chat(tc, max_tokens=3, stream=True, stream_options={"include_usage": True}))
    # 3 tokens: 3 pieces (fewer than 16), even in length, the answer when joined
    assert "".join(c["choices"][0]["delta"]["content"] for c in ev[1:4]) == "The quick brown"
    assert [len(c["choices"][0]["delta"]["content"]) for c in ev[1:4]] == [5, 5, 5]
    end, usage, done = ev[4:]
    assert end["choices"][0]["finish_reason"] == "length" and done == "[DONE]"
    # OpenAI's usage chunk: no choices, the usage (the same as x_groq's)
    assert usage["choices"] == [] and usage["usage"] == end["x_groq"]["usage"] and usage["object"] == \
        "chat.completion.chunk" and "x_groq" not in usage and usage["id"] == end["id"]
    for options in ({"include_usage": "yes"}, {"include_usage": 1}, ["include_usage"], {"include_usage": False}):
        ev = events(chat(tc, max_tokens=3, stream=True, stream_options=options))
        assert len(ev) == 1 + 3 + 1 + 1 and all("usage" not in c for c in ev[:-1]), options  # only `true` asks


def test_an_answer_of_no_tokens_streams_no_piece():
    """A scenario whose answers are 0 tokens long: the stream is the role, the end and [DONE]."""
    from sim.scenario import scenario_from_dict
    data = {"scenario": {"name": "empty", "duration": "2m", "seed": 1}, "org": {"tier": "free"},
            "clients": [{"name": "app", "model": OSS, "arrival": {"kind": "poisson", "rate": 1},
                         "prompt_tokens": 20, "max_tokens": 32, "completion_tokens": 0}]}
    emu = Emulator(scenario_from_dict(data, source="<test>").spec(), time_scale=1000)
    with TestClient(build_app(emu)) as tc:
        ev = events(chat(tc, max_tokens=8, stream=True))
    assert len(ev) == 3 and ev[1]["choices"][0]["finish_reason"] == "stop"
    assert ev[1]["x_groq"]["usage"]["completion_tokens"] == 0


def refund_spec():
    return make_spec(accounting={"refund_unused": True})


def test_an_answer_gives_back_its_unused_reservation_once_streamed_or_not(app, delays):
    """refund_unused: a request reserves prompt + max_tokens and, once answered, gets back max_tokens minus
    its completion, once (TPM 6 000 on MODEL; the clock is stopped: no refill)."""
    tc, emu, clock = app(refund_spec())
    tpm = emu.limits(MODEL).units["tpm"]
    r = chat(tc, model=MODEL, max_tokens=100)
    assert tpm.remaining(clock.t) == 6000 - 16 - r.json()["usage"]["completion_tokens"]
    ev = events(chat(tc, model=MODEL, max_tokens=100, stream=True))
    used = 16 + r.json()["usage"]["completion_tokens"] + 16 + ev[-2]["x_groq"]["usage"]["completion_tokens"]
    assert tpm.remaining(clock.t) == 6000 - used


def test_a_stream_read_to_its_end_sends_no_usage_chunk_unless_asked():
    emu = Emulator(make_spec(), time_scale=1e6)
    d = emu.decide(OSS, 16, 2)
    kw = {"max_tokens": 2, "request_id": d.request_id, "prompt": 16, "d": d}

    async def read_all(**extra):
        gen = app_mod._stream(emu, d, {"id": "x"}, {"total_tokens": 18}, "length", OSS, emu.clock.now(), None, kw,
                              app_mod.filler(2), **extra)
        return [chunk async for chunk in gen]
    plain, asked = asyncio.run(read_all()), asyncio.run(read_all(include_usage=True))
    assert len(plain) == 1 + 2 + 1 + 1 and plain[-1] == b"data: [DONE]\n\n"
    assert asked[:4] == plain[:4] and json.loads(asked[4][6:])["usage"] == {"total_tokens": 18}
    assert [r[4] for r in emu.rows] == [200, 200]


def test_a_stream_the_client_abandons_is_finished_refunded_and_recorded_once():
    emu = Emulator(refund_spec(), time_scale=1)
    clock = Frozen(emu)
    d = emu.decide(MODEL, 16, 100)
    kw = {"max_tokens": 100, "request_id": d.request_id, "prompt": 16, "d": d}

    async def read_one_chunk():
        gen = app_mod._stream(emu, d, {"id": "x"}, {"prompt_tokens": 16}, "stop", MODEL, clock.t, None, kw,
                              app_mod.filler(100))
        first = await gen.__anext__()
        assert emu.rows == []  # not recorded while it runs
        await gen.aclose()
        return first
    first = asyncio.run(read_one_chunk())
    assert first.startswith(b"data: {") and b'"role": "assistant"' in first
    tpm = emu.limits(MODEL).units["tpm"]
    assert tpm.remaining(clock.t) == 6000 - 16 - d.completion  # finished: the unused 100 - completion given back
    [row] = emu.records().itertuples()
    assert (row.status, row.outcome, row.request_id, row.max_tokens) == (200, "ok", d.request_id, 100)


# ---- refusals -----------------------------------------------------------------------------------------

def test_a_429_is_groqs_body_and_headers_with_the_request_id(app, delays, tmp_path):
    tc, emu, _ = app(make_spec(overrides={MODEL: {"rpm": 1}}), log_path=tmp_path / "r.jsonl")
    assert chat(tc, model=MODEL, max_tokens=8).status_code == 200
    r = chat(tc, model=MODEL, max_tokens=8)
    assert r.status_code == 429
    # the clock is stopped: the one RPM request comes back in exactly 60 s (a token bucket)
    assert r.json() == {"error": {
        "message": f"Rate limit reached for model `{MODEL}` in organization `org_groqsim` service tier `on_demand` "
                   "on requests per minute (RPM): Limit 1, Used 1, Requested 1. Please try again in 1m0s.",
        "type": "requests", "code": "rate_limit_exceeded"}}
    h = r.headers
    assert h["retry-after"] == "60" and RID.match(h["x-request-id"])
    assert (h["x-ratelimit-limit-requests"], h["x-ratelimit-remaining-requests"]) == ("14400", "14399")
    assert delays == [delays[0]]  # the refusal is not delayed
    lines = log_lines(emu)
    assert [x["status"] for x in lines] == [200, 429] and lines[1]["request_id"] == h["x-request-id"]
    assert lines[1]["error"]["type"] == "requests" and lines[1]["headers"]["retry-after"] == "60"
    assert lines[1]["max_tokens"] == 8 and lines[1]["usage"] is None
    rec = emu.records()
    assert rec["outcome"].tolist() == ["ok", "rate_limited"] and rec["refused_by"].tolist() == ["", "rpm"]


def test_a_413_and_an_injected_fault_through_the_sdk(app):
    """The free tier's 413 (TPM 8 000 on OSS, 16 + 14 000 requested), with Groq's upgrade hint, and an injected
    503: both are the SDK's errors with Groq's bodies and the model's headers, never retried here."""
    emu = Emulator(make_spec(), time_scale=1)
    Frozen(emu)

    async def go(g, o, raw):
        with pytest.raises(groq.APIStatusError) as e:
            await g.chat.completions.create(model=OSS, messages=msgs(), max_tokens=14_000)
        return e.value
    e = sdk(emu, go)
    assert e.status_code == 413 and e.body == {"error": {
        "message": f"Request too large for model `{OSS}` in organization `org_groqsim` service tier `on_demand` on "
                   "tokens per minute (TPM): Limit 8000, Requested 14016, please reduce your message size and try "
                   f"again. Need more tokens? Upgrade to Dev Tier today at {BILLING}",
        "type": "tokens", "code": "rate_limit_exceeded"}}
    assert "retry-after" not in e.response.headers and RID.match(e.response.headers["x-request-id"])
    emu = Emulator(make_spec(error_rate=1.0, error_status=503), time_scale=1)
    Frozen(emu)

    async def fault(g, o, raw):
        with pytest.raises(openai.InternalServerError) as e:
            await o.chat.completions.create(model=OSS, messages=msgs(), max_tokens=8)
        return e.value
    e = sdk(emu, fault)
    assert e.status_code == 503 and e.body == {"message": "Service Unavailable", "type": "service_unavailable",
                                               "code": "service_unavailable"}
    assert e.response.headers["x-ratelimit-remaining-requests"] == "1000"  # charged nothing
    assert [r[4:6] for r in emu.rows] == [(503, "error")]


def test_bad_chat_requests_are_400s_recorded_once_with_the_known_models_headers(app, tmp_path):
    tc, emu, _ = app(make_spec(), log_path=tmp_path / "r.jsonl")
    r = tc.post(CHAT, content=b"{not json")
    assert r.status_code == 400 and r.json() == {"error": {
        "message": "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
                   "your HTTP library correctly. The OpenAI API expects a JSON payload.)",
        "type": "invalid_request_error"}}
    assert not any(k.startswith("x-ratelimit") for k in r.headers)
    for content in (b"\xff\xfe{}", b"[" * 50_000 + b"]" * 50_000):  # not UTF-8; deeper than the parser recurses
        assert tc.post(CHAT, content=content).status_code == 400
    r = tc.post(CHAT, json=[{"model": OSS}])
    assert r.status_code == 400 and err_of(r) == {"message": "the request body must be a JSON object",
                                                  "type": "invalid_request_error"}
    r = chat(tc, model=5)
    assert r.status_code == 400 and err_of(r)["param"] == "model" and "x-ratelimit-limit-requests" not in r.headers
    r = chat(tc, model="no-such-model")
    assert r.status_code == 404 and r.json() == {"error": {
        "message": "The model `no-such-model` does not exist or you do not have access to it.",
        "type": "invalid_request_error", "code": "model_not_found"}}
    assert "x-ratelimit-limit-requests" not in r.headers and "x-request-id" not in r.headers
    r = chat(tc, max_tokens=0)  # a known model: its full budget, nothing charged, no retry-after
    assert r.status_code == 400 and err_of(r)["param"] == "max_tokens"
    assert {k: v for k, v in r.headers.items() if k.startswith("x-ratelimit")} == {
        "x-ratelimit-limit-requests": "1000", "x-ratelimit-remaining-requests": "1000",
        "x-ratelimit-reset-requests": "0s", "x-ratelimit-limit-tokens": "8000",
        "x-ratelimit-remaining-tokens": "8000", "x-ratelimit-reset-tokens": "0s"}
    lines = log_lines(emu)
    assert [x["status"] for x in lines] == [400] * 5 + [404, 400]
    assert [x["model"] for x in lines] == [""] * 5 + ["no-such-model", OSS]  # a model that is not a string: ""
    assert lines[-1]["headers"]["x-ratelimit-remaining-tokens"] == "8000" and lines[-1]["error"]["type"] == \
        "invalid_request_error"
    rec = emu.records()
    assert rec["model"].tolist() == [""] * 5 + ["no-such-model", OSS]
    assert set(rec["outcome"]) == {"bad_request"} and (rec["charged_tokens"] == 0).all()


def test_a_400_for_a_flex_request_carries_flex_headers(app):
    tc, emu, _ = app(flex_spec())
    r = chat(tc, model=MODEL, n=2, service_tier="flex")
    assert r.status_code == 400 and r.headers["x-ratelimit-limit-requests"] == "1000"  # RPD 100 x 10
    r = chat(tc, model=MODEL, n=2)
    assert r.status_code == 400 and r.headers["x-ratelimit-limit-requests"] == "100"


def test_keys_are_checked_on_every_model_route_with_groqs_401(app, delays, tmp_path):
    tc, emu, _ = app(make_spec(), keys=parse_keys(["sk-a=team"]), log_path=tmp_path / "r.jsonl")
    invalid = {"error": {"message": "Invalid API Key", "type": "invalid_request_error", "code": "invalid_api_key"}}
    wav = {"file": ("a.wav", wav_bytes(2))}
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "sk-a"}):
        for r in (chat(tc, max_tokens=4, headers=headers), tc.get("/openai/v1/models", headers=headers),
                  tc.get(f"/openai/v1/models/{OSS}", headers=headers),
                  tc.post(STT, data={"model": WHISPER}, files=wav, headers=headers),
                  tc.post(STT_EN, data={"model": WHISPER}, files=wav, headers=headers)):
            assert (r.status_code, r.json()) == (401, invalid)
            assert not any(k.startswith("x-ratelimit") for k in r.headers)
    lines = log_lines(emu)
    assert [(x["status"], x["label"], x["endpoint"]) for x in lines] == [
        (401, None, "chat.completions"), (401, None, "audio.transcriptions"), (401, None, "audio.translations")] * 3
    assert set(emu.records()["outcome"]) == {"unauthorized"}
    ok = {"Authorization": "Bearer sk-a"}
    assert chat(tc, max_tokens=4, headers=ok).status_code == 200
    assert tc.get("/openai/v1/models", headers=ok).status_code == 200
    assert log_lines(emu)[-1]["label"] == "team"


def test_an_unexpected_failure_is_a_500_recorded_with_the_keys_label(app, monkeypatch, capsys, tmp_path):
    tc, emu, _ = app(make_spec(), keys=parse_keys(["sk-a=team"]), log_path=tmp_path / "r.jsonl")
    monkeypatch.setattr(emu, "decide", lambda *a, **k: 1 / 0)
    auth = {"Authorization": "Bearer sk-a"}
    r = chat(tc, max_tokens=4, headers={**auth, "x-stainless-retry-count": "1"})
    assert r.status_code == 500 and r.json() == {"error": {
        "message": "Internal Server Error", "type": "internal_server_error", "code": "internal_server_error"}}
    assert capsys.readouterr().err == ("groqsim serve: 500 on POST /openai/v1/chat/completions: "
                                       "ZeroDivisionError: division by zero\n")
    r = tc.post(STT, data={"model": WHISPER}, files={"file": ("a.wav", wav_bytes(2))}, headers=auth)
    assert r.status_code == 500
    lines = log_lines(emu)
    assert [(x["status"], x["label"], x["model"], x["endpoint"], x["headers"], x["retry_count"]) for x in lines] == [
        (500, "team", "", "chat.completions", {}, 1), (500, "team", "", "audio.transcriptions", {}, None)]
    assert lines[0]["error"] == {"type": "internal_server_error", "code": "internal_server_error",
                                 "message": "Internal Server Error"}
    assert emu.records()["client"].tolist() == ["team", "team"]


def test_the_sdks_retry_number_is_logged_only_when_it_is_a_number(app, delays, tmp_path):
    tc, emu, _ = app(make_spec(), log_path=tmp_path / "r.jsonl")
    for value in ("2", "0", "x", "-1", None):
        chat(tc, max_tokens=2, headers={"x-stainless-retry-count": value} if value is not None else {})
    assert [x["retry_count"] for x in log_lines(emu)] == [2, 0, None, None, None]


# ---- transcriptions and translations --------------------------------------------------------------------

def test_a_transcription_in_each_format_charges_its_seconds(app, delays, tmp_path):
    tc, emu, clock = app(make_spec(), log_path=tmp_path / "r.jsonl")
    r = tc.post(STT, data={"model": WHISPER}, files={"file": ("a.wav", wav_bytes(4))})
    assert r.status_code == 200
    rid = r.headers["x-request-id"]
    # about 150 words a minute: 4 s -> 10 words; whisper has no token limits: the request headers only
    assert r.json() == {"text": text_of(10), "x_groq": {"id": rid}} and RID.match(rid)
    assert {k: v for k, v in r.headers.items() if k.startswith("x-ratelimit")} == {
        "x-ratelimit-limit-requests": "2000", "x-ratelimit-remaining-requests": "1999",
        "x-ratelimit-reset-requests": "43.2s"}  # a request of RPD 2 000 comes back in 86 400 / 2 000 s
    assert emu.limits(WHISPER).units["ash"].remaining(clock.t) == 7200 - 4
    assert len(delays) == 1 and delays[0][0] > 0
    r = tc.post(STT, data={"model": WHISPER, "response_format": "verbose_json", "language": "fr"},
                files={"file": ("a.wav", wav_bytes(4))})
    assert r.json() == {"task": "transcribe", "language": "fr", "duration": 4.0, "segments": [],
                        "text": text_of(10), "x_groq": {"id": r.headers["x-request-id"]}}
    r = tc.post(STT, data={"model": WHISPER, "response_format": "verbose_json"},
                files={"file": ("a.wav", wav_bytes(1))})
    assert (r.json()["language"], r.json()["text"]) == ("english", "The quick")  # 2.5 words, rounded to even
    r = tc.post(STT_EN, data={"model": WHISPER, "response_format": "verbose_json", "language": "fr"},
                files={"file": ("a.wav", wav_bytes(2))})
    assert (r.json()["task"], r.json()["language"], r.json()["text"]) == ("translate", "english", text_of(5))
    r = tc.post(STT, data={"model": WHISPER, "response_format": "text", "duration": "0.1"},
                files={"file": ("a.mp3", b"ID3")})
    assert r.headers["content-type"].startswith("text/plain") and r.text == "The"  # never fewer than one word
    assert RID.match(r.headers["x-request-id"])
    lines = log_lines(emu)
    assert [(x["endpoint"], x["status"], x["audio_seconds"], x["max_tokens"]) for x in lines] == [
        ("audio.transcriptions", 200, 4.0, None), ("audio.transcriptions", 200, 4.0, None),
        ("audio.transcriptions", 200, 1.0, None), ("audio.translations", 200, 2.0, None),
        ("audio.transcriptions", 200, 0.1, None)]
    assert lines[0]["request_id"] == rid and lines[0]["headers"]["x-ratelimit-remaining-requests"] == "1999"
    assert emu.limits(WHISPER).units["ash"].remaining(clock.t) == pytest.approx(7200 - 4 - 4 - 1 - 2 - 0.1)
    rec = emu.records()  # no prompt: no prompt tokens nor prompt time, the audio's seconds take the time
    assert (rec["prompt_tokens"] == 0).all() and (rec["prompt_time"] == 0).all() and (rec["completion_time"] > 0).all()
    assert (rec["charged_tokens"] == 0).all() and rec["audio_seconds"].tolist() == [4.0, 4.0, 1.0, 2.0, 0.1]


def test_a_transcriptions_refusals_are_400s_before_anything_is_charged(app, tmp_path):
    tc, emu, clock = app(make_spec(), log_path=tmp_path / "r.jsonl")
    wav = {"file": ("a.wav", wav_bytes(2))}

    def refused(r, message, param=None):
        want = {"message": message, "type": "invalid_request_error", **({"param": param} if param else {})}
        assert (r.status_code, err_of(r)) == (400, want), r.text
        return r
    r = refused(tc.post(STT, content=b"garbage", headers={"content-type": "multipart/form-data; boundary=x"}),
                "the body must be multipart/form-data")
    assert "x-ratelimit-limit-requests" not in r.headers
    refused(tc.post(STT, data={"model": WHISPER}, files={**wav, "language": ("l.txt", b"en")}),
            "'language' : must be a text field, not a file", "language")
    r = refused(tc.post(STT, data={"model": OSS}, files=wav), f"model `{OSS}` does not support audio "
                "transcriptions", "model")
    assert r.headers["x-ratelimit-limit-requests"] == "1000"  # the model's own limits (OSS: RPD 1 000)
    for fields in ({"model": WHISPER}, {"model": WHISPER, "url": ""}, {"model": WHISPER, "file": "a.wav"}):
        r = refused(tc.post(STT, data=fields), "'file' : a file or a url is required", "file")
        assert r.headers["x-ratelimit-remaining-requests"] == "2000"
    refused(tc.post(STT, data={"model": WHISPER, "response_format": "srt"}, files=wav),
            "'response_format' : must be one of json, text, verbose_json", "response_format")
    why = ("could not read the audio length, or it is 0: send a WAV file, or a 'duration' field in seconds (with a "
           "url, which the emulator does not fetch, the 'duration' field is required)")
    refused(tc.post(STT, data={"model": WHISPER, "url": "https://example.com/a.mp3"}), why, "url")
    refused(tc.post(STT, data={"model": WHISPER}, files={"file": ("a.mp3", b"ID3 not a wav")}), why, "file")
    refused(tc.post(STT, data={"model": WHISPER, "duration": "0"}, files={"file": ("a.mp3", b"ID3")}), why, "file")
    assert emu.limits(WHISPER).units["rpd"].remaining(clock.t) == 2000
    lines = log_lines(emu)
    assert len(lines) == 10 and {x["status"] for x in lines} == {400}
    assert [x["model"] for x in lines[:3]] == ["", WHISPER, OSS]


def test_audio_over_the_hours_limit_is_a_429_and_over_the_whole_limit_a_413(app, delays):
    tc, emu, _ = app(make_spec())
    ok = tc.post(STT, data={"model": WHISPER, "duration": "4000"}, files={"file": ("a.mp3", b"ID3")})
    assert ok.status_code == 200 and len(ok.json()["text"].split()) == 10_000
    r = tc.post(STT, data={"model": WHISPER, "duration": "4000"}, files={"file": ("a.mp3", b"ID3")})
    # ASH 7 200 refills 2 audio seconds a second: (4 000 + 4 000 - 7 200) / 2 = 400 s
    assert r.status_code == 429 and r.json() == {"error": {
        "message": f"Rate limit reached for model `{WHISPER}` in organization `org_groqsim` service tier `on_demand` "
                   "on audio seconds per hour (ASH): Limit 7200, Used 4000, Requested 4000. Please try again in "
                   f"6m40s. Need more audio seconds? Upgrade to Dev Tier today at {BILLING}",
        "type": "audio_seconds", "code": "rate_limit_exceeded"}}
    assert r.headers["retry-after"] == "400" and RID.match(r.headers["x-request-id"])
    r = tc.post(STT_EN, data={"model": WHISPER, "url": "https://x/a.mp3", "duration": "7201"})
    assert r.status_code == 413 and "ASH): Limit 7200, Requested 7201, please reduce" in err_of(r)["message"]
    assert "retry-after" not in r.headers
    assert len(delays) == 1
    assert [(row.endpoint, row.status, row.audio_seconds) for row in emu.records().itertuples()] == [
        ("audio.transcriptions", 200, 4000.0), ("audio.transcriptions", 429, 4000.0),
        ("audio.translations", 413, 7201.0)]


def test_the_sdk_transcribes_in_process():
    emu = Emulator(make_spec(), time_scale=1000)
    Frozen(emu)

    async def go(g, o, raw):
        t = await o.audio.transcriptions.create(file=("a.wav", wav_bytes(2)), model=WHISPER)
        v = await g.audio.translations.create(file=("a.wav", wav_bytes(2)), model=WHISPER,
                                              response_format="verbose_json")
        return t, v
    t, v = sdk(emu, go)
    assert t.text == v.text == text_of(5)


def test_an_uploads_temporary_file_is_closed_with_its_request(app, delays):
    """Starlette leaves a multipart body's files to the garbage collector (a ResourceWarning each): the app
    closes them once the request is answered, a transcription's and a Batch API upload's alike."""
    tc, emu, _ = app(make_spec())
    gc.collect()  # (what earlier tests left behind)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert tc.post(STT, data={"model": WHISPER}, files={"file": ("a.wav", wav_bytes(2))}).status_code == 200
        assert tc.post(STT, data={"model": OSS}, files={"file": ("a.wav", wav_bytes(2))}).status_code == 400
        assert tc.post("/openai/v1/files", data={"purpose": "batch"},
                       files={"file": ("a.jsonl", b'{"a": 1}\n')}).status_code == 200
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)
            and "SpooledTemporaryFile" in str(w.message)] == []


def half_second_wav() -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(1)
        w.setframerate(8000)
        w.writeframes(b"\x80" * 4000)
    return buf.getvalue()


@pytest.mark.parametrize("data,declared,seconds", [
    (wav_bytes(3), None, 3.0), (wav_bytes(3), "9", 3.0),  # a WAV's header wins
    (half_second_wav(), None, 0.5),
    (wav_bytes(0), "2.5", 2.5),  # an empty WAV: the declared length
    (b"ID3", "12.5", 12.5), (b"ID3", 7, 7.0), (b"ID3", "1e-9", 1e-9),
    (b"ID3", None, None), (b"ID3", "0", None), (b"ID3", "-1", None), (b"ID3", "inf", None), (b"ID3", "nan", None),
    (b"ID3", "soon", None), (b"ID3", [3], None), (wav_bytes(0), None, None),
])
def test_the_audio_length_is_the_wavs_else_the_declared_positive_finite_one(data, declared, seconds):
    assert audio_seconds(data, declared) == seconds


def test_a_delay_under_50_microseconds_is_not_slept(monkeypatch):
    slept = []

    async def sleep(seconds):
        slept.append(seconds)
    monkeypatch.setattr(app_mod.asyncio, "sleep", sleep)
    for seconds in (0.0, 49e-6, 50e-6, 53e-6, 0.2):
        asyncio.run(app_mod._delay(seconds))
    assert slept == [50e-6, 53e-6, 0.2]


# ---- models, metrics, flush, unknown URLs, shutdown --------------------------------------------------------

def test_models_are_listed_and_retrieved_and_unknown_or_shut_down_ones_refused(app):
    import datetime
    tc, emu, _ = app(make_spec(), today=datetime.date(2026, 11, 27))
    created = int(emu.clock.epoch0)
    r = tc.get("/openai/v1/models")
    assert r.json() == {"object": "list", "data": [
        {"id": m, "object": "model", "created": created, "owned_by": "groqsim", "active": True}
        for m in emu.tier_limits]}
    assert OSS in emu.tier_limits and WHISPER in emu.tier_limits
    assert tc.get(f"/openai/v1/models/{OSS}").json() == {"id": OSS, "object": "model", "created": created,
                                                         "owned_by": "groqsim", "active": True}
    r = tc.get("/openai/v1/models/nope")
    assert r.status_code == 404 and r.json() == {"error": {
        "message": "The model `nope` does not exist or you do not have access to it.",
        "type": "invalid_request_error", "code": "model_not_found"}}
    r = tc.get("/openai/v1/models/qwen/qwen3-32b")  # shut down for the free tier on 2026-07-17
    assert r.status_code == 400 and err_of(r)["code"] == "model_decommissioned"
    assert emu.rows == []  # the model routes are not requests to a model: not recorded


def test_metrics_count_answers_and_the_limits_in_use(app, delays):
    tc, emu, _ = app(make_spec())
    chat(tc, max_tokens=10)
    chat(tc, max_tokens=10)
    chat(tc, model="nope")
    tc.post(STT, data={"model": WHISPER, "duration": "720"}, files={"file": ("a.mp3", b"ID3")})
    r = tc.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(r.text) for s in f.samples}
    requests = {k[1]: v for k, v in samples.items() if k[0] == "groqsim_requests_total"}
    assert requests == {
        (("endpoint", "chat.completions"), ("model", OSS), ("outcome", "ok"), ("status", "200")): 2.0,
        (("endpoint", "chat.completions"), ("model", ""), ("outcome", "bad_request"), ("status", "404")): 1.0,
        (("endpoint", "audio.transcriptions"), ("model", WHISPER), ("outcome", "ok"), ("status", "200")): 1.0}
    util = {dict(k[1])["model"] + " " + dict(k[1])["unit"]: v for k, v in samples.items()
            if k[0] == "groqsim_limit_utilisation"}
    assert {k for k in samples if k[0] == "groqsim_limit_utilisation"} == {
        ("groqsim_limit_utilisation", (("model", m), ("service_tier", "on_demand"), ("unit", u)))
        for m, units in ((OSS, ("rpm", "rpd", "tpm", "tpd")), (WHISPER, ("rpm", "rpd", "ash", "asd"))) for u in units}
    # 2 requests of 26 tokens, the clock stopped: 2 of RPM 30, 52 of TPM 8 000; 720 of ASH 7 200
    assert util[f"{OSS} rpm"] == pytest.approx(2 / 30) and util[f"{OSS} tpm"] == pytest.approx(52 / 8000)
    assert util[f"{OSS} rpd"] == pytest.approx(2 / 1000) and util[f"{WHISPER} ash"] == pytest.approx(0.1)
    assert not any(k[0] == "groqsim_project_limit_utilisation" for k in samples)


def test_metrics_show_a_projects_own_limits(app, delays):
    tc, emu, _ = app(project_spec(), keys={"sk-a": "a"})
    chat(tc, model=MODEL, max_tokens=8, headers={"Authorization": "Bearer sk-a"})
    text = tc.get("/metrics").text
    samples = {tuple(sorted(s.labels.items())): s.value for f in text_string_to_metric_families(text)
               for s in f.samples if s.name == "groqsim_project_limit_utilisation"}
    assert samples == {(("model", MODEL), ("project", "a"), ("service_tier", "on_demand"), ("unit", "rpm")):
                       pytest.approx(1 / 2)}  # project a lowers RPM to 2: 1 of 2 in use


def test_flush_says_what_it_wrote_and_a_path_it_cannot_write_is_a_500(app, delays, tmp_path):
    tc, emu, _ = app(make_spec())
    chat(tc, max_tokens=2)
    chat(tc, max_tokens=2)
    assert tc.post("/groqsim/flush").json() == {"records": 2, "parquet": None, "log": None}  # nothing to write
    tc, emu, _ = app(make_spec(), log_path=tmp_path / "r.jsonl", parquet_path=tmp_path / "r.parquet")
    chat(tc, max_tokens=2)
    assert tc.post("/groqsim/flush").json() == {"records": 1, "parquet": str(tmp_path / "r.parquet"),
                                                "log": str(tmp_path / "r.jsonl")}
    chat(tc, max_tokens=2)
    (tmp_path / "r.parquet").unlink()
    (tmp_path / "r.parquet").mkdir()
    r = tc.post("/groqsim/flush")
    assert r.status_code == 500 and r.json() == {"error": {
        "message": f"could not write the records to {tmp_path / 'r.parquet'}: Is a directory; the records are kept "
                   f"in {tmp_path / 'r.parquet.partial'}", "type": "server_error", "code": "records_not_written"}}


def test_an_unguarded_routes_failure_is_a_plain_500_and_unknown_urls_are_404_or_405(app, monkeypatch):
    tc, emu, _ = app(make_spec(), raise_server_exceptions=False)
    monkeypatch.setattr(emu, "flush", lambda: 1 / 0)
    r = tc.post("/groqsim/flush")
    assert r.status_code == 500 and r.json() == {"error": {
        "message": "Internal Server Error", "type": "internal_server_error", "code": "internal_server_error"}}
    r = tc.get("/openai/v1/nope")
    assert r.status_code == 404 and r.json() == {"error": {
        "message": "Unknown request URL: GET /openai/v1/nope.", "type": "invalid_request_error", "code": "unknown_url"}}
    r = tc.get(CHAT)
    assert r.status_code == 405 and err_of(r) == {"message": f"Unknown request URL: GET {CHAT}.",
                                                  "type": "invalid_request_error", "code": "unknown_url"}


def test_shutting_down_writes_the_records_and_keeps_a_failure_for_serve_to_say(tmp_path, monkeypatch):
    emu = Emulator(make_spec(), time_scale=1000, parquet_path=tmp_path / "r.parquet")
    with TestClient(build_app(emu)) as tc:
        assert chat(tc, max_tokens=2).status_code == 200
        assert not emu.closed
    assert emu.closed and emu.close_error is None and (tmp_path / "r.parquet").exists()
    emu = Emulator(make_spec(), time_scale=1000)
    boom = OSError(28, "No space left on device")

    def close():
        raise boom
    monkeypatch.setattr(emu, "close", close)
    with TestClient(build_app(emu)):
        pass
    assert emu.close_error is boom


def test_the_schema_checker_is_loaded_when_the_server_starts(monkeypatch):
    """Before the first request: a structured request would otherwise pay jsonschema's import (~50 ms)
    between its arrival, the time its log line is stamped with, and its admission, and a calibration of the
    log would place it that much early."""
    calls = []
    monkeypatch.setattr(app_mod, "warm", lambda: calls.append(1))
    with TestClient(build_app(Emulator(make_spec()))):
        assert calls == [1]
