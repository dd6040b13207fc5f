"""``groqsim serve``: the live emulator driven over HTTP by the real groq and openai SDKs."""
from __future__ import annotations

import asyncio
import datetime
import io
import json
import math
import re
import socket
import time
import wave
from decimal import Decimal

import groq
import httpx
import numpy as np
import openai
import pandas as pd
import pytest
import scipy.stats

import sim
import sim.emulator.app
from sim.emulator import Emulator, parse_keys
from sim.errors import ConfigError
from sim.emulator.core import RECORD_COLUMNS
from sim.units import usage_times
from sim.recorder import Recorder
from sim.scenario import scenario_from_dict
from sim.service import service_models
from tests.helpers import running

MODEL = "llama-3.1-8b-instant"
LOG_KEYS = {"t_send", "t_recv", "status", "model", "endpoint", "max_tokens", "audio_seconds", "usage", "headers",
            "error", "label", "request_id", "retry_count", "service_tier"}  # the recorder's schema, optional keys too


def make_spec(tier: str = "free", overrides: dict | None = None, rate: str = "45/min", **org):
    data = {"scenario": {"name": "emulator test", "duration": "2m", "seed": 1},
            "org": {"tier": tier, **org},
            "clients": [{"name": "app", "model": MODEL, "arrival": {"kind": "poisson", "rate": rate},
                         "prompt_tokens": 20, "max_tokens": 32,
                         "completion_tokens": {"dist": "uniform", "low": 5, "high": 32}, "policy": "groq-sdk"}]}
    if overrides:
        data["tiers"] = {"tiny": {"base": "free", "overrides": overrides}}
        data["org"]["tier"] = "tiny"
    return scenario_from_dict(data, source="<test>").spec()


@pytest.fixture
def serve(tmp_path):
    """serve(spec, time_scale=..., keys=...) -> (base url, emulator); servers stop at the end of the test."""
    with _Stack() as stack:
        def start(spec, **kw):
            kw.setdefault("log_path", tmp_path / "requests.jsonl")
            kw.setdefault("parquet_path", tmp_path / "records.parquet")
            emu = Emulator(spec, **kw)
            return stack.enter(running(emu)), emu
        yield start


class _Stack:
    def __enter__(self):
        self.cms = []
        return self

    def enter(self, cm):
        self.cms.append(cm)
        return cm.__enter__()

    def __exit__(self, *exc):
        for cm in reversed(self.cms):
            cm.__exit__(None, None, None)


def msgs(chars: int = 40):
    return [{"role": "user", "content": "x" * chars}]


def wav_bytes(seconds: int, rate: int = 8000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(1)
        w.setframerate(rate)
        w.writeframes(b"\x80" * (seconds * rate))
    return buf.getvalue()


def body(e: groq.APIStatusError) -> dict:
    """The error object: the groq SDK keeps the whole body, openai's only its ``error``."""
    return e.body.get("error", e.body)


def log_lines(emu: Emulator) -> list[dict]:
    emu.flush()
    return [json.loads(line) for line in open(emu.log_path)]


# ---- success, streaming, models -----------------------------------------------------------------------

def test_groq_sdk_sync_success_usage_and_headers(serve):
    url, emu = serve(make_spec(), time_scale=10)
    client = groq.Groq(base_url=url, api_key="k", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=msgs(40), max_tokens=32)
    r = raw.parse()
    u = r.usage
    assert raw.status_code == 200 and r.model == MODEL and r.choices[0].message.content
    assert u.prompt_tokens == 3 + 3 + 10  # 40 characters / 4 + per-message and priming tokens
    assert 5 <= u.completion_tokens <= 32 and u.total_tokens == u.prompt_tokens + u.completion_tokens
    assert u.total_time == pytest.approx(u.prompt_time + u.completion_time) and u.queue_time > 0
    h = raw.headers
    assert h["x-ratelimit-limit-requests"] == "14400" and h["x-ratelimit-remaining-requests"] == "14399"
    assert h["x-ratelimit-limit-tokens"] == "6000"
    assert int(h["x-ratelimit-remaining-tokens"]) == 6000 - (u.prompt_tokens + 32)  # prompt + max_tokens charged
    assert "retry-after" not in h and h["x-request-id"].startswith("req_")
    [line] = log_lines(emu)
    assert set(line) == LOG_KEYS and line["status"] == 200 and line["usage"]["prompt_tokens"] == u.prompt_tokens
    assert line["endpoint"] == "chat.completions" and line["max_tokens"] == 32
    assert line["request_id"] == h["x-request-id"] and line["t_recv"] >= line["t_send"]
    assert set(line["headers"]) == {k for k in h if k.startswith("x-ratelimit-")}
    assert [m.id for m in client.models.list().data] == list(emu.tier_limits)


def test_openai_sdk_async_success_and_stream_with_x_groq_usage(serve):
    url, emu = serve(make_spec(), time_scale=10)

    async def go():
        client = openai.AsyncOpenAI(base_url=url + "/openai/v1", api_key="k", max_retries=0)
        r = await client.chat.completions.create(model=MODEL, messages=msgs(), max_tokens=16)
        chunks = [c async for c in await client.chat.completions.create(model=MODEL, messages=msgs(), max_tokens=16,
                                                                          stream=True)]
        return r, chunks

    r, chunks = asyncio.run(go())
    assert r.choices[0].finish_reason in ("stop", "length") and r.usage.completion_tokens <= 16
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    last = chunks[-1]
    usage = last.model_extra["x_groq"]["usage"]
    assert last.choices[0].finish_reason in ("stop", "length")
    assert usage["completion_tokens"] == len(text.split()) and usage["total_time"] == pytest.approx(
        usage["prompt_time"] + usage["completion_time"])
    assert len(chunks) >= 3 and all("usage" not in (c.model_extra.get("x_groq") or {}) for c in chunks[:-1])
    assert all(c.usage is None for c in chunks)  # OpenAI's usage chunk only when asked for
    lines = log_lines(emu)
    assert [x["status"] for x in lines] == [200, 200] and lines[1]["usage"] == usage


def test_stream_options_include_usage_n_and_the_sdks_retry_number(serve):
    """``stream_options.include_usage`` adds OpenAI's usage chunk (no choices) that openai-SDK clients read;
    n > 1 is a 400 (Groq supports only n = 1); the log keeps each request's SDK retry number, so a trace of
    an emulator log folds retries into their request as one of the recorder's does."""
    url, emu = serve(make_spec(), time_scale=10)
    client = openai.OpenAI(base_url=url + "/openai/v1", api_key="k", max_retries=0)
    chunks = list(client.chat.completions.create(model=MODEL, messages=msgs(), max_tokens=16, stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == \
        chunks[-2].model_extra["x_groq"]["usage"]["completion_tokens"]
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=msgs(), max_tokens=16, n=2)
    assert body(e.value)["param"] == "n"
    httpx.post(url + "/openai/v1/chat/completions", headers={"x-stainless-retry-count": "2"},
               json={"model": MODEL, "messages": msgs(), "max_tokens": 8})
    assert [x["retry_count"] for x in log_lines(emu)] == [0, 0, 2]  # (the SDK sends 0 on a first attempt)
    with pytest.raises(openai.BadRequestError) as e:  # flex is for paid plans: this org is on the free tier
        client.chat.completions.create(model=MODEL, messages=msgs(), max_tokens=8, service_tier="flex")
    assert body(e.value)["param"] == "service_tier" and "paid plans" in body(e.value)["message"]


def test_groq_sdk_async_transcription_and_audio_413(serve):
    url, emu = serve(make_spec(), time_scale=10)

    async def go():
        client = groq.AsyncGroq(base_url=url, api_key="k", max_retries=0)
        t = await client.audio.transcriptions.create(file=("a.wav", wav_bytes(3)), model="whisper-large-v3")
        with pytest.raises(groq.APIStatusError) as big:  # 7201 s (a 1 Hz WAV) > ASH 7200
            await client.audio.transcriptions.create(file=("b.wav", wav_bytes(7201, rate=1)), model="whisper-large-v3")
        declared = await client.audio.transcriptions.create(file=("c.mp3", b"ID3 not a wav"), model="whisper-large-v3",
                                                            extra_body={"duration": "12.5"})
        return t, big.value, declared

    t, big, declared = asyncio.run(go())
    assert t.text and declared.text
    assert big.status_code == 413 and body(big)["type"] == "audio_seconds"
    assert "audio seconds per hour (ASH): Limit 7200, Requested 7201, please reduce" in body(big)["message"]
    lines = log_lines(emu)
    assert [(x["status"], x["audio_seconds"]) for x in lines] == [(200, 3.0), (413, 7201.0), (200, 12.5)]
    assert lines[0]["endpoint"] == "audio.transcriptions" and "x-ratelimit-limit-tokens" not in lines[0]["headers"]


# ---- limits: 429, 413, retries, concurrency -------------------------------------------------------------

def test_429_body_and_headers_are_the_simulators(serve):
    url, emu = serve(make_spec(overrides={MODEL: {"rpm": 2}}), time_scale=1)
    client = groq.Groq(base_url=url, api_key="k", max_retries=0)
    for _ in range(2):
        client.chat.completions.create(model=MODEL, messages=msgs(), max_tokens=8)
    with pytest.raises(groq.RateLimitError) as e:
        client.chat.completions.create(model=MODEL, messages=msgs(), max_tokens=8)
    err, h = e.value, e.value.response.headers
    assert err.status_code == 429 and body(err) == {"message": body(err)["message"], "type": "requests",
                                                    "code": "rate_limit_exceeded"}
    msg = body(err)["message"]
    assert msg.startswith(f"Rate limit reached for model `{MODEL}` in organization `org_groqsim` service tier "
                          "`on_demand` on requests per minute (RPM): Limit 2, Used 2, Requested 1. "
                          "Please try again in ")
    wait = sim.units.parse_duration(re.search(r"try again in (\S+?)\.$", msg).group(1))
    assert 29 < wait <= 30 and h["retry-after"] == "30"  # 1 request / 30 s refill, whole seconds rounded up
    assert set(h) >= {"x-ratelimit-limit-requests", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"}
    assert log_lines(emu)[-1]["error"]["type"] == "requests"


def project_spec(quotas: bool = True):
    """A tiny tier (RPM 5, TPM 6,000) shared by projects "a" (RPM 2 of its own) and "b" (TPM 300)."""
    data = {"scenario": {"name": "emulator projects", "duration": "2m", "seed": 1},
            "org": {"tier": "tiny", "project_quotas": quotas},
            "tiers": {"tiny": {"base": "free", "overrides": {MODEL: {"rpm": 5, "tpm": 6000}}}},
            "projects": {"a": {"limits": {MODEL: {"rpm": 2}}}, "b": {"limits": {MODEL: {"tpm": 300}}}},
            "clients": [{"name": "app", "model": MODEL, "project": "a", "arrival": {"kind": "poisson", "rate": 1},
                         "prompt_tokens": 20, "max_tokens": 32}]}
    return scenario_from_dict(data, source="<test>").spec()


def test_a_keys_project_limits_are_enforced_with_the_orgs(serve):
    """A key labelled with a project passes the project's limits and the org's, all-or-nothing; its 429
    states the binding scope's limit; its headers show, per unit, the scope with less left."""
    url, emu = serve(project_spec(), time_scale=1, keys={"sk-a": "a", "sk-b": "b"})
    a = groq.Groq(base_url=url, api_key="sk-a", max_retries=0)
    b = openai.OpenAI(base_url=url + "/openai/v1", api_key="sk-b", max_retries=0)
    for _ in range(2):
        a.chat.completions.create(model=MODEL, messages=msgs(), max_tokens=8)
    with pytest.raises(groq.RateLimitError) as e:  # project a's own RPM 2
        a.chat.completions.create(model=MODEL, messages=msgs(), max_tokens=8)
    assert "on requests per minute (RPM): Limit 2, Used 2, Requested 1." in body(e.value)["message"]
    r = b.chat.completions.with_raw_response.create(model=MODEL, messages=msgs(), max_tokens=100)
    r.parse()
    # b's TPM 300 is below the org's 6,000: its tokens headers are the project's
    assert r.headers["x-ratelimit-limit-tokens"] == "300"
    assert int(r.headers["x-ratelimit-remaining-tokens"]) < 300 - 100
    with pytest.raises(openai.RateLimitError) as e:  # b's own TPM: 300 - (prompt + 100) left, 250 asked
        b.chat.completions.create(model=MODEL, messages=msgs(), max_tokens=250)
    assert "on tokens per minute (TPM): Limit 300, Used " in body(e.value)["message"]
    b.chat.completions.create(model=MODEL, messages=msgs(), max_tokens=8)
    b.chat.completions.create(model=MODEL, messages=msgs(), max_tokens=8)  # the org's 5th request this minute
    with pytest.raises(openai.RateLimitError) as e:  # b has room; the org's RPM 5 is spent (a 2, b 3)
        b.chat.completions.create(model=MODEL, messages=msgs(), max_tokens=8)
    assert "on requests per minute (RPM): Limit 5, Used 5, Requested 1." in body(e.value)["message"]
    refused = [x for x in log_lines(emu) if x["status"] == 429]
    assert [x["label"] for x in refused] == ["a", "b", "b"]
    rec = emu.records()  # which scope refused, as a simulated run with projects records it
    assert rec.loc[rec["status"] == 429, "refused_scope"].tolist() == ["project", "project", "org"]
    assert set(rec.loc[rec["status"] == 200, "refused_scope"]) == {""}
    metrics = httpx.get(url + "/metrics").text
    gauge = r'groqsim_project_limit_utilisation\{model="%s",project="a",service_tier="on_demand",unit="rpm"\} (\S+)'
    rpm_a = re.search(gauge % MODEL, metrics)
    assert rpm_a and 0.95 < float(rpm_a.group(1)) <= 1.0  # 2 of 2, barely refilled
    assert re.search(r'project="b",service_tier="on_demand",unit="tpm"\} 0\.[1-9]', metrics)  # b's TPM 300, refilling
    assert 'project="b",service_tier="on_demand",unit="rpm"' not in metrics  # b lowers TPM only


def test_project_limits_off_and_unknown_project_labels(serve):
    url, _ = serve(project_spec(quotas=False), time_scale=1, keys={"sk-a": "a"})
    a = groq.Groq(base_url=url, api_key="sk-a", max_retries=0)
    for _ in range(3):  # project_quotas = false: only the org's RPM 5 applies
        a.chat.completions.create(model=MODEL, messages=msgs(), max_tokens=8)
    with pytest.raises(ConfigError, match=r"--key KEY=aa: unknown project 'aa' \(did you mean 'a'"):
        Emulator(project_spec(), keys={"sk": "aa"})


def test_a_stream_the_client_abandons_is_still_logged_and_recorded(serve):
    url, emu = serve(make_spec(), time_scale=1)
    body = {"model": MODEL, "messages": msgs(), "max_tokens": 4000, "stream": True}  # seconds of answer
    with httpx.Client() as c, c.stream("POST", url + "/openai/v1/chat/completions", json=body) as r:
        assert r.status_code == 200
        for k, _ in enumerate(r.iter_lines()):
            if k >= 2:
                break  # stop reading: the connection closes with the answer unfinished
    deadline = time.monotonic() + 10
    while not emu.rows:
        assert time.monotonic() < deadline, "the abandoned stream was never recorded"
        time.sleep(0.05)
    (line,) = log_lines(emu)
    assert line["status"] == 200 and line["usage"]["completion_tokens"] > 0 and line["max_tokens"] == 4000
    assert emu.counts[("chat.completions", MODEL, "ok", 200)] == 1


def test_chat_413_is_not_retried_by_the_sdk(serve):
    url, emu = serve(make_spec(), time_scale=10)
    client = groq.Groq(base_url=url, api_key="k")  # default: 2 retries
    with pytest.raises(groq.APIStatusError) as e:
        client.chat.completions.create(model="openai/gpt-oss-20b", messages=msgs(), max_tokens=14_000)
    assert e.value.status_code == 413
    assert ("on tokens per minute (TPM): Limit 8000, Requested 14016, please reduce your message size"
            in body(e.value)["message"])
    assert "retry-after" not in e.value.response.headers
    assert [x["status"] for x in log_lines(emu)] == [413]


def test_sdk_retries_observed_with_the_sdks_own_backoff(serve):
    """RPD = 1: the retry-after (a day / K) exceeds the SDK's 60 s cap, so groq 1.7.0 falls back on its own
    backoff 0.5 s x 2^n x (1 - U/4): the server sees 3 attempts, 0.375-0.5 s then 0.75-1 s apart."""
    K = 100
    url, emu = serve(make_spec(overrides={MODEL: {"rpd": 1}}), time_scale=K)
    client = groq.Groq(base_url=url, api_key="k")
    client.chat.completions.create(model=MODEL, messages=msgs(), max_tokens=8)
    with pytest.raises(groq.RateLimitError):
        client.chat.completions.create(model=MODEL, messages=msgs(), max_tokens=8)
    rec = emu.records()
    assert rec["status"].tolist() == [200, 429, 429, 429]
    gaps = np.diff(rec["created"].to_numpy()[1:]) / K  # real seconds between the attempts
    assert 0.375 <= gaps[0] < 0.5 + 0.3 and 0.75 <= gaps[1] < 1.0 + 0.3  # (+ the loaded machine's latency)


def test_sdk_honours_the_scaled_retry_after(serve):
    """RPM = 1 at K = 50: retry-after 60 limiter-s is sent as 1.2 (real s); openai's SDK sleeps it and its
    retry is admitted 60 limiter-seconds later, as the simulator's groq-sdk client would be."""
    K = 50
    url, emu = serve(make_spec(overrides={MODEL: {"rpm": 1}}), time_scale=K)
    client = openai.OpenAI(base_url=url + "/openai/v1", api_key="k")
    client.chat.completions.create(model=MODEL, messages=msgs(), max_tokens=8)
    client.chat.completions.create(model=MODEL, messages=msgs(), max_tokens=8)
    rec = emu.records()
    assert rec["status"].tolist() == [200, 429, 200]
    # the log keeps Groq's whole seconds on the limiter clock, ceil(wait) with wait = 60 s - elapsed; the
    # client was sent retry-after / K
    retry_after = int(log_lines(emu)[1]["headers"]["retry-after"])
    assert 50 <= retry_after <= 60
    gap = rec["created"][2] - rec["created"][1]
    assert retry_after <= gap < retry_after + 0.5 * K and rec["created"][2] - rec["created"][0] >= 60


def test_the_log_is_in_limiter_seconds_and_the_wire_in_the_clients(serve):
    """At K = 5 the client is told every duration / K; the log keeps what Groq would have said at K = 1
    (what calibration replays against the limiter clock): same budgets and figures, durations K times longer.
    (At K = 20 RPM 1 refilled a request every 3 s of real time: on a loaded machine the second request was
    sometimes admitted too.)"""
    K = 5
    url, emu = serve(make_spec(overrides={MODEL: {"rpm": 1}}), time_scale=K)
    sent = [httpx.post(url + "/openai/v1/chat/completions", json={"model": MODEL, "messages": msgs(),
                                                                   "max_tokens": 8}) for _ in range(2)]
    assert [r.status_code for r in sent] == [200, 429]
    lines = log_lines(emu)
    for r, line in zip(sent, lines):
        wire, logged = r.headers, line["headers"]
        assert set(logged) == {k for k in wire if k.startswith("x-ratelimit-") or k == "retry-after"}
        for k, v in logged.items():
            if k.startswith("x-ratelimit-reset-"):  # each rounded up to the millisecond at its own scale
                assert sim.units.parse_duration(wire[k]) * K == pytest.approx(sim.units.parse_duration(v),
                                                                             abs=1e-3 * K)
            elif k == "retry-after":
                assert v == str(int(v)) and float(wire[k]) * K == pytest.approx(int(v))
            else:
                assert wire[k] == v
    assert int(lines[1]["headers"]["retry-after"]) > 50 and lines[0]["headers"]["x-ratelimit-reset-tokens"]
    said, kept = r.json()["error"]["message"], lines[1]["error"]["message"]
    pattern = r"try again in (\S+?)\.(?: |$)"
    wait_said, wait_kept = (sim.units.parse_duration(re.search(pattern, m).group(1)) for m in (said, kept))
    assert wait_said * K == pytest.approx(wait_kept, rel=1e-6) and 50 < wait_kept <= 60
    assert said.split("Please")[0] == kept.split("Please")[0]  # Limit, Used, Requested: limiter units both


def test_200_concurrent_requests_against_rpm_5_admit_exactly_5(serve):
    url, _ = serve(make_spec(overrides={MODEL: {"rpm": 5}}), time_scale=0.1)  # limiter clock 10x slower
    body = {"model": MODEL, "messages": msgs(), "max_tokens": 8}

    async def go():
        async with httpx.AsyncClient(base_url=url, limits=httpx.Limits(max_connections=200), timeout=30) as c:
            rs = await asyncio.gather(*(c.post("/openai/v1/chat/completions", json=body) for _ in range(200)))
        return [r.status_code for r in rs]

    t0 = time.monotonic()
    statuses = asyncio.run(go())
    assert time.monotonic() - t0 < 120  # less than one request refilled (5 per limiter minute = 10 real ones)
    assert statuses.count(200) == 5 and statuses.count(429) == 195


def test_concurrent_token_heavy_requests_never_overdraw_tpm(serve):
    """TPM 6000, each request charges 1 500+: at most 4 fit (+ the refill over the burst); refusals charge nothing."""
    url, emu = serve(make_spec(), time_scale=1)
    body = {"model": MODEL, "messages": msgs(4 * 1400), "max_tokens": 94}  # 1406 + 94 = 1500 tokens

    async def go():
        async with httpx.AsyncClient(base_url=url, limits=httpx.Limits(max_connections=50), timeout=30) as c:
            return await asyncio.gather(*(c.post("/openai/v1/chat/completions", json=body) for _ in range(50)))

    t0 = time.monotonic()
    rs = asyncio.run(go())
    elapsed = time.monotonic() - t0
    ok = sum(r.status_code == 200 for r in rs)
    assert 4 <= ok <= 4 + math.floor(elapsed * 100 / 1500)  # TPM refills 100 tokens/s
    rec = emu.records()
    assert rec.loc[rec.status == 200, "charged_tokens"].sum() <= 6000 + elapsed * 100
    assert (rec.loc[rec.status == 429, "charged_tokens"] == 1500).all()
    tokens = emu.limits(MODEL).units["tpm"]
    assert tokens.remaining(emu.clock.now()) >= 0


# ---- bad requests, keys, faults ---------------------------------------------------------------------------

def test_bad_requests_get_api_errors_and_the_server_stays_up(serve, monkeypatch, capsys):
    url, emu = serve(make_spec(), time_scale=10, keys=parse_keys(["sk-a=team-a", "sk-b=team-b"]))
    chat = url + "/openai/v1/chat/completions"
    auth = {"Authorization": "Bearer sk-a"}
    r = httpx.post(chat, json={"model": MODEL, "messages": msgs()})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    with pytest.raises(groq.AuthenticationError):
        groq.Groq(base_url=url, api_key="wrong", max_retries=0).chat.completions.create(model=MODEL, messages=msgs())
    r = httpx.post(chat, content=b"{not json", headers=auth)
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    r = httpx.post(chat, json={"messages": msgs()}, headers=auth)
    assert r.status_code == 400 and r.json()["error"]["param"] == "model"
    r = httpx.post(chat, json={"model": "no-such-model", "messages": msgs()}, headers=auth)
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    assert ("chat.completions", "", "bad_request", 404) in emu.counts  # any name a client sends: one label
    assert log_lines(emu)[-1]["model"] == "no-such-model"
    assert not any(h.startswith("x-ratelimit") for h in r.headers)  # no model: no limits to tell
    r = httpx.post(chat, json={"model": MODEL, "messages": msgs(), "max_tokens": "lots"}, headers=auth)
    assert r.status_code == 400
    # about a known model, a 400 carries its limits as every response does, and charges nothing
    assert (r.headers["x-ratelimit-limit-requests"], r.headers["x-ratelimit-remaining-requests"]) == ("14400", "14400")
    assert r.headers["x-ratelimit-limit-tokens"] == "6000" and "retry-after" not in r.headers
    assert log_lines(emu)[-1]["headers"]["x-ratelimit-remaining-requests"] == "14400"
    r = httpx.post(chat, json={"model": "whisper-large-v3", "messages": msgs()}, headers=auth)  # not a chat model
    assert r.status_code == 400 and r.json()["error"]["param"] == "model"
    assert r.json()["error"]["message"].startswith("model `whisper-large-v3` does not support chat completions")
    # text-to-speech neither, while Groq served it (playai-tts was shut down on 2025-12-31)
    err = Emulator(make_spec(), today=datetime.date(2025, 6, 1)).model_error("playai-tts", want_audio=False)
    assert err.error["param"] == "model" and err.error["message"].startswith(
        "model `playai-tts` does not support chat completions: it is text-to-speech")
    monkeypatch.setattr(emu, "decide", lambda *a, **k: 1 / 0)
    before = len(emu.rows)
    r = httpx.post(chat, json={"model": MODEL, "messages": msgs()}, headers=auth)
    assert r.status_code == 500 and r.json()["error"]["type"] == "internal_server_error"
    assert "Traceback" not in r.text and "ZeroDivision" not in r.text
    assert [row[4:6] for row in emu.rows[before:]] == [(500, "error")]  # recorded (and logged) too
    assert emu.records()["model"].iloc[-1] == "" and emu.records()["charged_tokens"].iloc[-1] == 0  # (not admitted)
    assert "groqsim serve: 500 on POST /openai/v1/chat/completions: ZeroDivisionError" in capsys.readouterr().err
    monkeypatch.undo()
    r = httpx.post(chat, json={"model": MODEL, "messages": msgs()}, headers={"Authorization": "Bearer sk-b"})
    assert r.status_code == 200
    labels = [x["label"] for x in log_lines(emu)]
    assert labels[-1] == "team-b" and labels[0] is None and "team-a" in labels


def test_what_real_clients_send_is_read_as_the_api_reads_it(serve):
    """Nulls, malformed messages, keys on the model routes, unknown URLs, the client's clock, transcription
    formats and WAV variants."""
    url, emu = serve(make_spec(), time_scale=50, keys=parse_keys(["sk-a"]))
    chat, auth = url + "/openai/v1/chat/completions", {"Authorization": "Bearer sk-a"}
    # an explicit null max_completion_tokens leaves max_tokens in force (the openai SDK sends None as null)
    r = httpx.post(chat, json={"model": MODEL, "messages": msgs(), "max_completion_tokens": None, "max_tokens": 3},
                   headers=auth)
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] <= 3
    assert log_lines(emu)[-1]["max_tokens"] == 3
    assert abs(r.json()["created"] - time.time()) < 5  # the client's clock, not the 50x limiter clock
    r = httpx.post(chat, json={"model": MODEL, "messages": msgs(), "max_completion_tokens": 0}, headers=auth)
    assert r.status_code == 400 and r.json()["error"]["param"] == "max_completion_tokens"
    for messages, where in (([{"role": "user", "content": [{"type": "text", "text": None}]}], "messages.0.content"),
                            (["hi"], "messages.0"), ([{"role": "user", "content": 5}], "messages.0.content")):
        r = httpx.post(chat, json={"model": MODEL, "messages": messages}, headers=auth)
        assert r.status_code == 400 and r.json()["error"]["message"].startswith(f"'{where}' :"), r.text
    r = httpx.post(chat, json={"model": 5, "messages": msgs()}, headers=auth)
    assert r.status_code == 400 and r.json()["error"]["message"] == "'model' : must be a string"
    with pytest.raises(groq.AuthenticationError):
        groq.Groq(base_url=url, api_key="wrong", max_retries=0).models.list()
    with pytest.raises(groq.AuthenticationError):
        groq.Groq(base_url=url, api_key="wrong", max_retries=0).models.retrieve(MODEL)
    models = groq.Groq(base_url=url, api_key="sk-a", max_retries=0).models.list().data
    assert MODEL in [m.id for m in models] and len({m.created for m in models}) == 1
    for bad in ({"stream": "false"}, {"n": True}):  # a string is not false, nor true the number 1
        r = httpx.post(chat, json={"model": MODEL, "messages": msgs(), **bad}, headers=auth)
        assert r.status_code == 400 and r.json()["error"]["param"] == next(iter(bad)), r.text
    sdk = groq.Groq(base_url=url, api_key="sk-a", max_retries=0)
    translated = sdk.audio.translations.with_raw_response.create(file=("a.wav", wav_bytes(4)), model="whisper-large-v3",
                                                                 response_format="verbose_json")
    assert translated.headers["x-ratelimit-limit-requests"] and translated.parse().text
    assert translated.http_response.json()["task"] == "translate"
    assert log_lines(emu)[-1]["endpoint"] == "audio.translations" and log_lines(emu)[-1]["audio_seconds"] == 4.0
    by_url = sdk.audio.transcriptions.create(url="https://example.com/call.mp3", model="whisper-large-v3",
                                             extra_body={"duration": 9})  # never fetched: its length is declared
    assert by_url.text and log_lines(emu)[-1]["audio_seconds"] == 9.0
    with pytest.raises(groq.BadRequestError) as e:
        sdk.audio.transcriptions.create(url="https://example.com/call.mp3", model="whisper-large-v3")
    assert body(e.value)["param"] == "url" and "'duration' field is required" in body(e.value)["message"]
    stt = sdk.audio.transcriptions
    with pytest.raises(groq.BadRequestError) as e:
        stt.create(file=("a.wav", wav_bytes(3)), model="whisper-large-v3", response_format="srt")
    assert body(e.value)["param"] == "response_format"
    with pytest.raises(groq.BadRequestError):
        stt.create(file=("a.wav", wav_bytes(0)), model="whisper-large-v3")  # no audio: nothing to transcribe
    # a 32-bit float WAV (format 3), which the stdlib's wave refuses before Python 3.12: 2 s at 8 kHz mono
    data = b"\0" * (2 * 8000 * 4)
    fmt = (3).to_bytes(2, "little") + (1).to_bytes(2, "little") + (8000).to_bytes(4, "little") + \
        (32000).to_bytes(4, "little") + (4).to_bytes(2, "little") + (32).to_bytes(2, "little")
    riff = b"WAVE" + b"fmt " + len(fmt).to_bytes(4, "little") + fmt + b"data" + len(data).to_bytes(4, "little") + data
    stt.create(file=("f.wav", b"RIFF" + len(riff).to_bytes(4, "little") + riff), model="whisper-large-v3")
    assert log_lines(emu)[-1]["audio_seconds"] == 2.0


def test_injected_faults_are_retried_by_the_sdk_and_charge_nothing(serve):
    url, emu = serve(make_spec(error_rate=1.0, error_status=503), time_scale=10)
    client = groq.Groq(base_url=url, api_key="k", max_retries=1)
    with pytest.raises(groq.InternalServerError) as e:
        client.chat.completions.create(model=MODEL, messages=msgs(), max_tokens=8)
    assert e.value.status_code == 503 and body(e.value)["code"] == "service_unavailable"
    assert [x["status"] for x in log_lines(emu)] == [503, 503]
    assert emu.limits(MODEL).units["rpm"].remaining(emu.clock.now()) == 30


def test_an_injected_498_is_groqs_capacity_exceeded_and_the_sdk_does_not_retry_it(serve):
    url, emu = serve(make_spec(error_rate=1.0, error_status=498), time_scale=10)
    client = groq.Groq(base_url=url, api_key="k", max_retries=2)
    with pytest.raises(groq.APIStatusError) as e:
        client.chat.completions.create(model=MODEL, messages=msgs(), max_tokens=8)
    assert e.value.status_code == 498 and body(e.value)["code"] == body(e.value)["type"] == "capacity_exceeded"
    assert f"`{MODEL}`" in body(e.value)["message"] and "x-ratelimit-limit-requests" in e.value.response.headers
    assert [(x["status"], x["error"]["code"]) for x in log_lines(emu)] == [(498, "capacity_exceeded")]


# ---- flex and auto -------------------------------------------------------------------------------------------

def flex_spec(service_tier: str = "on_demand", tier: str = "developer", accounting: dict | None = None,
              org: dict | None = None, **flex):
    """A tiny paid tier (RPM 2, RPD 100, TPM 6,000 on demand; flex x10 of each), flex never scarce unless
    ``flex`` says otherwise; ``org``: other [org] settings."""
    data = {"scenario": {"name": "emulator flex", "duration": "2m", "seed": 1},
            "org": {"tier": "tiny", "service_tier": service_tier, "accounting": accounting or {}, **(org or {}),
                    "flex": {"scarce": 0, "calm_failure": 0.0, **flex}},
            "tiers": {"tiny": {"base": tier, "overrides": {MODEL: {"rpm": 2, "rpd": 100, "tpm": 6000}}}},
            "clients": [{"name": "app", "model": MODEL, "arrival": {"kind": "poisson", "rate": 1},
                         "prompt_tokens": 20, "max_tokens": 32,
                         "completion_tokens": {"dist": "uniform", "low": 5, "high": 32}}]}
    return scenario_from_dict(data, source="<test>").spec()


def test_flex_has_its_own_limits_ten_times_on_demand(serve):
    """service_tier="flex" is served on its own limits, the on-demand ones x the multiplier, and says so in
    the body, the headers and the records; on-demand traffic does not spend it, nor flex the on-demand."""
    url, emu = serve(flex_spec(), time_scale=1)
    client = groq.Groq(base_url=url, api_key="k", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=msgs(), max_tokens=8,
                                                            service_tier="flex")
    r, h = raw.parse(), raw.headers
    assert r.service_tier == "flex"
    assert h["x-ratelimit-limit-requests"] == "1000" and h["x-ratelimit-remaining-requests"] == "999"  # RPD 100 x 10
    assert h["x-ratelimit-limit-tokens"] == "60000"  # TPM 6,000 x 10
    od = client.chat.completions.with_raw_response.create(model=MODEL, messages=msgs(), max_tokens=8)
    assert od.parse().service_tier == "on_demand"
    assert od.headers["x-ratelimit-limit-requests"] == "100" and od.headers["x-ratelimit-remaining-requests"] == "99"
    client.chat.completions.create(model=MODEL, messages=msgs(), max_tokens=8)
    with pytest.raises(groq.RateLimitError) as e:  # on demand: RPM 2 spent
        client.chat.completions.create(model=MODEL, messages=msgs(), max_tokens=8)
    assert "service tier `on_demand` on requests per minute (RPM): Limit 2, Used 2" in body(e.value)["message"]
    for _ in range(5):  # flex RPM 20: untouched by the on-demand requests
        assert client.chat.completions.create(model=MODEL, messages=msgs(), max_tokens=8,
                                              service_tier="flex").service_tier == "flex"
    rec = emu.records()
    assert rec["service_tier"].tolist() == ["flex", "on_demand", "on_demand", "on_demand"] + ["flex"] * 5
    assert [x["service_tier"] for x in log_lines(emu)] == rec["service_tier"].tolist()
    util = emu.utilisation()
    assert 0.25 < util[("flex", MODEL, "rpm")] <= 6 / 20  # 6 of 20, refilling at 20 a minute since
    assert 0.9 < util[("on_demand", MODEL, "rpm")] <= 1.0
    metrics = httpx.get(url + "/metrics").text
    flex = re.search(r'groqsim_limit_utilisation\{model="%s",service_tier="flex",unit="rpm"\} (\S+)' % MODEL, metrics)
    assert flex and 0.2 < float(flex.group(1)) <= 0.3


def test_flex_429_names_its_tier_and_a_flex_org_serves_flex_by_default(serve):
    url, emu = serve(flex_spec(service_tier="flex", multiplier=1.5), time_scale=1)
    client = openai.OpenAI(base_url=url + "/openai/v1", api_key="k", max_retries=0)
    served = [client.chat.completions.create(model=MODEL, messages=msgs(), max_tokens=8).service_tier
              for _ in range(3)]  # no service_tier asked: the scenario's org.service_tier
    assert served == ["flex"] * 3  # flex RPM: 2 x 1.5 = 3
    with pytest.raises(openai.RateLimitError) as e:
        client.chat.completions.create(model=MODEL, messages=msgs(), max_tokens=8)
    assert "service tier `flex` on requests per minute (RPM): Limit 3, Used 3" in body(e.value)["message"]
    assert e.value.response.headers["x-ratelimit-limit-requests"] == "150"
    on_demand = client.chat.completions.create(model=MODEL, messages=msgs(), max_tokens=8, service_tier="on_demand")
    assert on_demand.service_tier == "on_demand"  # asked for explicitly


def test_flex_capacity_shortage_is_a_fast_498_that_charges_nothing(serve):
    """With flex capacity short (here: always), a flex request fails at once with Groq's 498
    ``capacity_exceeded``; no limit is charged, and the SDKs do not retry it by themselves."""
    url, emu = serve(flex_spec(calm_failure=1.0), time_scale=1)
    client = groq.Groq(base_url=url, api_key="k")  # the SDK's default retries
    with pytest.raises(groq.APIStatusError) as e:
        client.chat.completions.create(model=MODEL, messages=msgs(), max_tokens=8, service_tier="flex")
    assert e.value.status_code == 498 and body(e.value)["code"] == "capacity_exceeded"
    assert f"model `{MODEL}` on service tier `flex`" in body(e.value)["message"]
    assert e.value.response.headers["x-ratelimit-remaining-requests"] == "1000"  # flex's, uncharged
    assert emu.limits(MODEL, tier="flex").units["rpm"].remaining(emu.clock.now()) == pytest.approx(20, abs=0.01)
    rec = emu.records()
    assert rec["status"].tolist() == [498] and rec["outcome"].tolist() == ["error"]  # one attempt: no SDK retry
    assert rec["service_tier"].tolist() == ["flex"] and rec["charged_tokens"].tolist() == [0.0]
    assert log_lines(emu)[0]["error"]["code"] == "capacity_exceeded"


def test_auto_uses_on_demand_first_then_flex(serve):
    url, emu = serve(flex_spec(), time_scale=1)
    client = groq.Groq(base_url=url, api_key="k", max_retries=0)
    raws = [client.chat.completions.with_raw_response.create(model=MODEL, messages=msgs(), max_tokens=8,
                                                              service_tier="auto") for _ in range(4)]
    assert [r.parse().service_tier for r in raws] == ["on_demand", "on_demand", "flex", "flex"]
    assert [r.headers["x-ratelimit-limit-requests"] for r in raws] == ["100", "100", "1000", "1000"]


def test_auto_falls_to_a_short_flex_as_the_simulator_does(tmp_path):
    """auto with on-demand spent and flex capacity short is a 498; with both limit sets refusing, the 429
    is the tier's whose wait is shorter (sim.lanes.Route's rule)."""
    emu = Emulator(flex_spec(calm_failure=1.0), time_scale=1)
    assert [emu.decide(MODEL, 20, 8, service_tier="auto").status for _ in range(3)] == [200, 200, 498]
    emu = Emulator(flex_spec(multiplier=1.0), time_scale=1)  # flex's RPM 2, as on demand: both spent
    decisions = [emu.decide(MODEL, 20, 8, service_tier="auto") for _ in range(5)]
    assert [(d.status, d.service_tier) for d in decisions] == [
        (200, "on_demand"), (200, "on_demand"), (200, "flex"), (200, "flex"), (429, "on_demand")]
    # on demand, spent first, refills first: its wait is the shorter one, and the 429 names its tier
    assert "service tier `on_demand`" in decisions[-1].error.error["message"]
    emu = Emulator(flex_spec(multiplier=1.0), time_scale=1)  # flex spent first this time: its wait is shorter
    assert [emu.decide(MODEL, 20, 8, service_tier=t).status for t in ("flex", "flex", None, None)] == [200] * 4
    late = emu.decide(MODEL, 20, 8, service_tier="auto")
    assert (late.status, late.service_tier) == (429, "flex") and "service tier `flex`" in late.error.error["message"]


def test_flex_failures_follow_the_configured_probability():
    """Never scarce, calm_failure 0.3: the share of 498s over 2,000 flex requests is 0.3 (binomial test).
    The 498 draws are a stream of their own: whether flex had capacity moves no later answer's length."""
    emu = Emulator(flex_spec(calm_failure=0.3, multiplier=1000), time_scale=1)
    statuses = [emu.decide(MODEL, 20, 8, service_tier="flex").status for _ in range(2000)]
    assert set(statuses) == {200, 498}
    assert scipy.stats.binomtest(statuses.count(498), 2000, 0.3).pvalue > 1e-3, statuses.count(498)
    lengths = []
    for failure in (0.0, 0.5):
        emu = Emulator(flex_spec(calm_failure=failure, multiplier=100), seed=3)
        first = [emu.decide(MODEL, 20, 32, service_tier="flex").status for _ in range(10)]
        assert (498 in first) == bool(failure)
        lengths.append([emu.decide(MODEL, 20, 32).completion for _ in range(2)])  # on demand (RPM 2)
    assert lengths[0] == lengths[1]


def test_an_unused_reservation_goes_back_to_the_tier_that_served():
    emu = Emulator(flex_spec(accounting={"refund_unused": True}), time_scale=1)
    t = emu.clock.now()
    emu.clock.now = lambda: t  # (stopped: flex's TPM of 60 000 refills a token a millisecond)
    d = emu.decide(MODEL, 20, 1000, service_tier="flex")
    assert d.status == 200 and d.completion <= 32
    flex, on_demand = emu.limits(MODEL, tier="flex").units["tpm"], emu.limits(MODEL).units["tpm"]
    assert flex.remaining(t) == pytest.approx(60_000 - 1020, abs=1e-6)
    emu.finish(MODEL, d, 1000)
    assert flex.remaining(t) == pytest.approx(60_000 - 20 - d.completion, abs=1e-6)
    assert on_demand.remaining(emu.clock.now()) == pytest.approx(6000, abs=0.01)  # never charged, never refunded


def test_cached_prompt_tokens_skip_prefill_as_in_the_simulator():
    # prompt_time = (prefill_fixed + uncached prompt / prefill_tps) / S, S drawn alike under one seed
    params = service_models()[MODEL]
    decided = [Emulator(flex_spec(accounting={"cache_hit_ratio": ratio}), time_scale=1).decide(MODEL, 4_000, 8)
               for ratio in (0.0, 0.75)]
    assert [d.status for d in decided] == [200, 200]
    expected = (params.prefill_fixed + 1_000 / params.prefill_tps) / (params.prefill_fixed + 4_000 / params.prefill_tps)
    assert decided[1].times[1] / decided[0].times[1] == pytest.approx(expected, rel=1e-9)


def test_the_recorder_logs_the_tier_that_answered(serve, tmp_path):
    """The recorder keeps the tier the response names (the body's service_tier, a 498's or 429's message),
    else the one the request asked for (a stream: its chunks are not read for it)."""
    url, _ = serve(flex_spec(calm_failure=1.0), time_scale=1)
    rec = Recorder(tmp_path / "client.jsonl")
    client = groq.Groq(base_url=url, api_key="k", max_retries=0, http_client=rec.client())
    client.chat.completions.create(model=MODEL, messages=msgs(), max_tokens=8)
    client.chat.completions.create(model=MODEL, messages=msgs(), max_tokens=8, service_tier="auto")
    with pytest.raises(groq.APIStatusError):  # on demand spent: auto tries flex, which has no capacity
        client.chat.completions.create(model=MODEL, messages=msgs(), max_tokens=8, service_tier="auto")
    with pytest.raises(groq.APIStatusError):
        list(client.chat.completions.create(model=MODEL, messages=msgs(), max_tokens=8, service_tier="flex",
                                            stream=True))
    rec.close()
    lines = [json.loads(x) for x in open(tmp_path / "client.jsonl")]
    assert [(x["status"], x["service_tier"]) for x in lines] == [
        (200, "on_demand"), (200, "on_demand"), (498, "flex"), (498, "flex")]


def test_a_stream_names_its_tier_and_the_recorder_keeps_it(serve, tmp_path):
    """Every chunk of a streamed answer names the tier that served it (as OpenAI's chunks carry it), so a
    recorded stream logs that tier: flex by the org's default, on-demand for an auto request it served, and
    a calibration of the log reads the on-demand limits from the on-demand lines only."""
    from sim.calibrate import calibrate
    url, emu = serve(flex_spec(service_tier="flex"), time_scale=1)
    rec = Recorder(tmp_path / "client.jsonl")
    client = openai.OpenAI(base_url=url + "/openai/v1", api_key="k", max_retries=0, http_client=rec.client())
    chunks = list(client.chat.completions.create(model=MODEL, messages=msgs(), max_tokens=8, stream=True))
    assert len(chunks) >= 3 and {c.service_tier for c in chunks} == {"flex"}
    for tier in ("auto", "on_demand"):  # (on demand: RPM 2)
        list(client.chat.completions.create(model=MODEL, messages=msgs(), max_tokens=8, stream=True,
                                            service_tier=tier))
    rec.close()
    lines = [json.loads(x) for x in open(tmp_path / "client.jsonl")]
    assert [x["service_tier"] for x in lines] == ["flex", "on_demand", "on_demand"]
    assert [x["headers"]["x-ratelimit-limit-requests"] for x in lines] == ["1000", "100", "100"]
    cal = calibrate(tmp_path / "client.jsonl")
    assert cal.limits[MODEL].observed["rpd"].value == 100  # the on-demand RPD, not flex's 1 000


def test_an_injected_498_and_a_400_speak_for_the_tier_asked(serve):
    """An injected 498 (flex capacity) on an auto request names flex, in its message and its record; a 400 for
    a flex request carries flex's rate-limit headers."""
    emu = Emulator(flex_spec(org={"error_rate": 1.0, "error_status": 498}), time_scale=1)
    d = emu.decide(MODEL, 20, 8, service_tier="auto")
    assert d.status == 498 and d.service_tier == "flex" and "service tier `flex`" in d.error.error["message"]
    assert d.headers["x-ratelimit-limit-requests"] == "1000"
    url, _ = serve(flex_spec(), time_scale=1)
    r = httpx.post(url + "/openai/v1/chat/completions", json={"model": MODEL, "messages": msgs(), "n": 2,
                                                              "service_tier": "flex"})
    assert r.status_code == 400 and r.headers["x-ratelimit-limit-requests"] == "1000"
    r = httpx.post(url + "/openai/v1/chat/completions", json={"model": MODEL, "messages": msgs(), "n": 2})
    assert r.status_code == 400 and r.headers["x-ratelimit-limit-requests"] == "100"


def test_service_tier_the_org_cannot_use_is_a_400(serve):
    url, _ = serve(flex_spec(), time_scale=1)
    client = groq.Groq(base_url=url, api_key="k", max_retries=0)
    for tier, why in [("performance", "'performance' (provisioned capacity, enterprise) is not emulated"),
                      ("fast", "'fast' is not a service tier")]:
        with pytest.raises(groq.BadRequestError) as e:
            client.chat.completions.create(model=MODEL, messages=msgs(), max_tokens=8, service_tier=tier)
        assert body(e.value)["message"] == f"'service_tier' : {why} (allowed: on_demand, flex, auto)"
    url, _ = serve(flex_spec(tier="free"), time_scale=1)
    client = groq.Groq(base_url=url, api_key="k", max_retries=0)
    with pytest.raises(groq.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=msgs(), max_tokens=8, service_tier="auto")
    assert body(e.value)["message"] == ("'service_tier' : 'auto' is for paid plans; this organization is on the "
                                        "tiny tier (allowed: on_demand)")


# ---- records and metrics -----------------------------------------------------------------------------------

def test_metrics_flush_and_parquet_on_shutdown(tmp_path):
    emu = Emulator(make_spec(), time_scale=10, log_path=tmp_path / "r.jsonl", parquet_path=tmp_path / "r.parquet")
    with running(emu) as url:
        groq.Groq(base_url=url, api_key="k").chat.completions.create(model=MODEL, messages=msgs(), max_tokens=8)
        text = httpx.get(url + "/metrics").text
        assert ('groqsim_requests_total{endpoint="chat.completions",model="llama-3.1-8b-instant",outcome="ok",'
                'status="200"} 1.0') in text
        assert 'groqsim_limit_utilisation{model="llama-3.1-8b-instant",service_tier="on_demand",unit="rpm"}' in text
        assert 'service_tier="flex"' not in text  # no flex set until a request asks for flex
        assert httpx.post(url + "/groqsim/flush").json()["records"] == 1
        httpx.post(url + "/openai/v1/chat/completions", json={"model": MODEL, "messages": msgs()})
    df = pd.read_parquet(tmp_path / "r.parquet")  # rewritten at shutdown with both requests
    assert list(df.columns) == list(RECORD_COLUMNS) and len(df) == 2 and df["outcome"].tolist() == ["ok", "ok"]


# ---- simulator == emulator -------------------------------------------------------------------------------

def test_simulator_and_emulator_agree_on_admitted_and_429_counts(serve):
    """The simulator's workload (2 minutes of Poisson traffic at 2x RPM 30, groq-sdk policy) replayed live
    at K = 20 by the real AsyncGroq client (its own retries, honouring the scaled retry-after).

    Tolerance: the arrivals and sizes are the same, and the groq-sdk client honours retry-after (no jitter),
    so the two runs differ only in when retries land: the simulator adds its rtt (0.12 s) before a client
    reads a 429, the live run its real overhead x K (about 2-10 ms x 20).  An attempt's outcome flips only if
    a token of the RPM bucket (one every 2 s) falls inside that shift of at most ~0.25 s: p <= 1/8 per
    retry.  With R retries the flips are at most Binomial(R, 1/8): we allow R/8 + 3 sd + 1."""
    K = 20
    spec = make_spec(rate="60/min")  # (at 1.5x a full bucket plus 2 minutes of refill admits nearly everything)
    res = sim.simulate(spec, seed=11)
    rec = res.records
    sim_ok, sim_429 = int((rec["outcome"] == "ok").sum()), int(rec["n429"].sum())
    url, emu = serve(spec, time_scale=K)

    async def replay():
        client = groq.AsyncGroq(base_url=url, api_key="k", max_retries=2)
        await client.models.list()  # warm up (the first call costs ~1 s real: 20 s of limiter time)
        t0 = time.monotonic()

        async def one(t, max_tokens):
            await asyncio.sleep(max(0.0, t / K - (time.monotonic() - t0)))
            try:
                await client.chat.completions.create(model=MODEL, messages=msgs(4 * 14), max_tokens=int(max_tokens))
            except groq.RateLimitError:
                pass

        await asyncio.gather(*(one(t, m) for t, m in zip(rec["created"], rec["max_tokens"])))

    asyncio.run(replay())
    out = emu.records()
    emu_ok, emu_429 = int((out["status"] == 200).sum()), int((out["status"] == 429).sum())
    retries = sim_429
    tol = retries / 8 + 3 * math.sqrt(retries * (1 / 8) * (7 / 8)) + 1
    assert len(rec) > 60 and sim_429 > 10  # the workload does overload the limit
    assert abs(emu_ok - sim_ok) <= tol, (emu_ok, sim_ok, tol)
    assert abs(emu_429 - sim_429) <= tol, (emu_429, sim_429, tol)


def test_serve_command_rejects_a_bad_scenario(capsys):
    """Each mistake is one line and exit 2, on a free port (the port is checked before the scenario is loaded:
    port 8000, the default, may be taken on the machine running the tests)."""
    from sim.cli import main as run_main
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])

    def main(argv):
        return run_main([*argv, "--port", port])
    assert main(["serve", "no/such/scenario.toml"]) == 2
    assert "cannot read scenario" in capsys.readouterr().err
    assert main(["serve", "scenarios/retry_policies_overload.toml", "--time-scale", "0"]) == 2
    assert main(["serve", "scenarios/projects_noisy_neighbour.toml", "--point", "2"]) == 2
    assert "--point 2: scenarios/projects_noisy_neighbour.toml has 2 grid point(s), numbered 0 to 1" in \
        capsys.readouterr().err
    assert main(["serve", "scenarios/projects_noisy_neighbour.toml", "--key", "sk=etl2"]) == 2
    assert capsys.readouterr().err.endswith("--key KEY=etl2: unknown project 'etl2' (did you mean 'etl'? "
                                            "allowed: support, etl)\n")
    assert main(["serve", "scenarios/projects_noisy_neighbour.toml", "--key", "sk-s"]) == 2
    assert "--key sk-s: the scenario has [projects]: label each key with one, --key KEY=PROJECT (allowed: " \
        "support, etl)" in capsys.readouterr().err
    assert main(["serve", "scenarios/projects_noisy_neighbour.toml", "--key", "sk=support", "--key", "sk=etl"]) == 2
    assert capsys.readouterr().err.endswith("--key 'sk=etl': key 'sk' is already labelled 'support'; allowed: one "
                                            "label per key\n")
    assert parse_keys(["sk=support", "sk=support", "sk2"]) == {"sk": "support", "sk2": "sk2"}  # repeats agree
    assert main(["serve", "scenarios/retry_policies_overload.toml", "--time-scale", "inf"]) == 2
    err = capsys.readouterr().err
    assert "--time-scale inf: allowed: a number > 0 and at most 1e+06" in err and "Traceback" not in err
    assert main(["serve", "scenarios/retry_policies_overload.toml", "--out", "README.md"]) == 2
    assert "--out README.md: is an existing file" in capsys.readouterr().err


def test_a_new_session_sets_the_last_ones_files_aside(tmp_path):
    log, parquet = tmp_path / "requests.jsonl", tmp_path / "records.parquet"
    for n in (1, 2):
        log.write_text(f"session {n}\n")
        parquet.write_bytes(b"PAR1")
        emu = Emulator(make_spec(), log_path=log, parquet_path=parquet, today=datetime.date(2025, 1, 1))
        assert emu.notes == [f"an earlier session's requests.jsonl and records.parquet in {tmp_path} kept as "
                             f"requests.{n}.jsonl and records.{n}.parquet"]
        emu.close()
        assert (tmp_path / f"requests.{n}.jsonl").read_text() == f"session {n}\n"
    assert Emulator(make_spec(), log_path=tmp_path / "new" / "requests.jsonl", today=datetime.date(2025, 1, 1)
                    ).notes == []


def _serve_child(tmp_path, time_scale: float = 10):
    """``python -m sim serve`` of a one-client scenario in a child process on a free port, once it answers:
    (process, base url)."""
    import os
    import subprocess
    import sys
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    scenario = tmp_path / "old.toml"  # on a model Groq shut down: serve warns as check and run do
    scenario.write_text(f"[org]\ntier = 'free'\n[[clients]]\nname = 'c'\nmodel = '{MODEL}'\n"
                        "arrival = { kind = 'poisson', rate = '10/min' }\n")
    proc = subprocess.Popen([sys.executable, "-m", "sim", "serve", str(scenario), "--port",
                             str(port), "--time-scale", str(time_scale), "--key", "sk-1=proj", "--out",
                             str(tmp_path)],
                            env={**os.environ}, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            httpx.get(url + "/metrics", timeout=0.5)
            return proc, url
        except httpx.TransportError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError("server did not start") from None
            time.sleep(0.1)


def test_python_m_sim_serve_end_to_end(tmp_path):
    """The real command in a child process: serves, then on SIGINT writes its Parquet records and exits."""
    import signal
    proc, url = _serve_child(tmp_path)
    try:
        client = groq.Groq(base_url=url, api_key="sk-1", max_retries=0)
        assert client.chat.completions.create(model=MODEL, messages=msgs(), max_tokens=8).usage.total_tokens > 0
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 0
    err = proc.stderr.read().decode()
    assert "groqsim serve: http://127.0.0.1" in err
    assert "groqsim serve: warning: model 'llama-3.1-8b-instant' was shut down by Groq" in err  # as check/run say
    df = pd.read_parquet(tmp_path / "records.parquet")
    assert df["client"].tolist() == ["proj"] and df["status"].tolist() == [200]
    assert json.loads((tmp_path / "requests.jsonl").read_text())["label"] == "proj"


def test_serve_keeps_its_records_when_their_path_is_taken(tmp_path):
    """A directory where records.parquet goes: one error line, exit 2, and the records kept beside it (they
    were lost, after a traceback and exit 0)."""
    import signal
    proc, url = _serve_child(tmp_path)
    try:
        client = groq.Groq(base_url=url, api_key="sk-1", max_retries=0)
        client.chat.completions.create(model=MODEL, messages=msgs(), max_tokens=8)
        (tmp_path / "records.parquet").mkdir()
        proc.send_signal(signal.SIGINT)
    finally:
        code = proc.wait(20)
    err = proc.stderr.read().decode()
    kept = tmp_path / "records.parquet.partial"
    assert pd.read_parquet(kept)["status"].tolist() == [200]
    assert code == 2 and err.splitlines()[-1] == (
        f"groqsim: error: could not write the records to {tmp_path / 'records.parquet'} (Is a directory; the "
        f"records are kept in {kept}); every request is also in the log {tmp_path / 'requests.jsonl'}"), err


def test_a_second_ctrl_c_during_a_stream_quits_at_once_without_a_traceback_and_keeps_the_records(tmp_path):
    """The first Ctrl-C waits for the answer in progress (a stream of several seconds at this time scale); a second
    quits at once, as uvicorn does, with every request recorded and no traceback (uvicorn logged the cancelled
    lifespan as an "Exception in 'lifespan' protocol")."""
    import signal
    import threading
    proc, url = _serve_child(tmp_path, time_scale=0.1)
    client = groq.Groq(base_url=url, api_key="sk-1", max_retries=0, timeout=60)
    assert client.chat.completions.create(model=MODEL, messages=msgs(), max_tokens=1).usage.completion_tokens == 1
    started = threading.Event()

    def stream():
        try:
            for _ in client.chat.completions.create(model=MODEL, messages=msgs(), max_tokens=500, stream=True):
                started.set()
        except Exception:  # noqa: BLE001 - the server quits in the middle of it: that is the test
            pass
    reader = threading.Thread(target=stream, daemon=True)
    reader.start()
    try:
        assert started.wait(20)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.5)
        assert proc.poll() is None  # waiting for the stream
        proc.send_signal(signal.SIGINT)
    finally:
        code = proc.wait(20)
    err = proc.stderr.read().decode()
    assert code == 0 and "Traceback" not in err and "Exception in" not in err, err
    assert err.splitlines()[-1] == "groqsim serve: quit at once (a second Ctrl-C): 1 answer in progress cut off"
    assert pd.read_parquet(tmp_path / "records.parquet")["status"].tolist() == [200, 200]


def test_serve_writes_the_records_when_uvicorn_quits_without_its_shutdown(tmp_path, monkeypatch):
    """A second Ctrl-C makes uvicorn quit at once, skipping the app's shutdown: serve() writes the records."""
    import uvicorn as uv

    from sim.emulator import serve as serve_command
    emu = Emulator(make_spec(), log_path=tmp_path / "requests.jsonl", parquet_path=tmp_path / "records.parquet")
    emu.record(endpoint="chat.completions", model=MODEL, status=400, t_send=emu.clock.now(), label="c",
               headers={}, error={"message": "m", "type": "invalid_request_error", "code": None})
    monkeypatch.setattr(uv.Server, "run", lambda self, sockets=None: None)  # returned, no shutdown run
    serve_command(emu)
    assert emu.closed and len(pd.read_parquet(tmp_path / "records.parquet")) == 1


# ---- untrusted input, a failure's one record, models Groq shut down, usage precision ----------------------

def corrupt_wav(seconds: int = 2) -> bytes:
    """A WAV whose JUNK chunk (before ``fmt ``) claims more bytes than the RIFF holds: Python 3.11's ``wave``
    raises a bare RuntimeError on it."""
    good = wav_bytes(seconds)
    chunks = b"JUNK" + (1 << 20).to_bytes(4, "little") + b"\0" * 4 + good[12:]
    return b"RIFF" + (4 + len(chunks)).to_bytes(4, "little") + b"WAVE" + chunks


def test_a_corrupt_wav_is_a_400_or_its_declared_duration_and_the_recorder_lets_it_go(serve, tmp_path):
    """A WAV whose length cannot be read follows the documented rule (its ``duration`` field if sent, else a
    400; it was a 500 either way), and the client's own recorder, which reads the same header, logs the
    exchange with the length unknown instead of failing the request (APIConnectionError)."""
    url, emu = serve(make_spec(), time_scale=10)
    rec = Recorder(tmp_path / "client.jsonl", label="me")
    client = groq.Groq(base_url=url, api_key="k", max_retries=0,
                       http_client=groq.DefaultHttpxClient(event_hooks=rec.event_hooks()))
    with pytest.raises(groq.BadRequestError) as e:
        client.audio.transcriptions.create(file=("a.wav", corrupt_wav()), model="whisper-large-v3")
    assert body(e.value)["param"] == "file" and "could not read the audio length" in body(e.value)["message"]
    t = client.audio.transcriptions.create(file=("a.wav", corrupt_wav()), model="whisper-large-v3",
                                           extra_body={"duration": 2.5})
    assert t.text
    assert [(x["status"], x["audio_seconds"]) for x in log_lines(emu)] == [(400, None), (200, 2.5)]
    rec.close()
    got = [json.loads(line) for line in (tmp_path / "client.jsonl").read_text().splitlines()]
    assert [(x["status"], x["audio_seconds"], x["label"]) for x in got] == [(400, None, "me"), (200, None, "me")]


def test_a_form_field_sent_as_a_file_is_a_400_before_anything_is_charged(serve):
    """Every transcription field but the audio is text: ``language`` (or ``model``) sent as a file part is a
    400 naming it, charges nothing, and leaves one log line and one count (``language`` was admitted, charged,
    logged as a 200 and then answered 500)."""
    url, emu = serve(make_spec(), time_scale=10)
    stt = url + "/openai/v1/audio/transcriptions"
    fields = {"model": "whisper-large-v3", "duration": "3", "response_format": "verbose_json"}
    r = httpx.post(stt, data=fields, files={"file": ("a.mp3", b"x"), "language": ("lang.txt", b"en")})
    assert r.status_code == 400 and r.json()["error"] == {
        "message": "'language' : must be a text field, not a file", "type": "invalid_request_error",
        "param": "language"}
    assert r.headers["x-ratelimit-remaining-requests"] == r.headers["x-ratelimit-limit-requests"]  # not charged
    r = httpx.post(stt, data={k: v for k, v in fields.items() if k != "model"},
                   files={"file": ("a.mp3", b"x"), "model": ("m.txt", b"whisper-large-v3")})
    assert r.status_code == 400 and r.json()["error"]["param"] == "model"
    r = httpx.post(stt, data={**fields, "language": "fr"}, files={"file": ("a.mp3", b"x")})
    assert r.status_code == 200 and r.json()["language"] == "fr"
    assert int(r.headers["x-ratelimit-remaining-requests"]) == int(r.headers["x-ratelimit-limit-requests"]) - 1
    assert [x["status"] for x in log_lines(emu)] == [400, 400, 200]
    assert sorted((k[2], k[3], n) for k, n in emu.counts.items()) == [("bad_request", 400, 1),
                                                                      ("bad_request", 400, 1), ("ok", 200, 1)]


def test_a_failure_building_an_answer_is_its_one_record_and_keeps_the_keys_label(serve, monkeypatch):
    """A 200 is logged and recorded only once its body is built, so an answer that fails to build leaves one
    line, the 500's; and that 500 carries the key's project label (``client`` in the records), as every
    other answer to the key does."""
    url, emu = serve(make_spec(), time_scale=10, keys=parse_keys(["sk-a=team-a"]))
    auth = {"Authorization": "Bearer sk-a"}
    monkeypatch.setattr(sim.emulator.app, "reply", lambda *a: 1 / 0)  # the answers' text cannot be made
    monkeypatch.setattr(sim.emulator.app, "filler", lambda n: 1 / 0)
    r = httpx.post(url + "/openai/v1/chat/completions", json={"model": MODEL, "messages": msgs(), "max_tokens": 8},
                   headers=auth)
    # admitted, it carries the headers of its charge (as every response about a model does), sent and logged
    assert r.status_code == 500 and r.headers["x-ratelimit-remaining-requests"] == "14399"
    assert r.headers["x-request-id"].startswith("req_")
    tokens = r.headers["x-ratelimit-remaining-tokens"]
    r = httpx.post(url + "/openai/v1/audio/transcriptions", data={"model": "whisper-large-v3"},
                   files={"file": ("a.wav", wav_bytes(1))}, headers=auth)
    assert r.status_code == 500 and r.headers["x-ratelimit-remaining-requests"] == "1999"
    assert [(x["status"], x["label"]) for x in log_lines(emu)] == [(500, "team-a")] * 2
    assert log_lines(emu)[0]["headers"]["x-ratelimit-remaining-tokens"] == tokens
    assert sorted((k[2], k[3], n) for k, n in emu.counts.items()) == [("error", 500, 1)] * 2
    records = emu.records()
    assert list(records["client"]) == ["team-a"] * 2
    # both were admitted and charged before the answer failed: the records say so, with the model, as the
    # limits saw it (a 500 on model "" charging 0 hid what left the budget)
    assert list(records["model"]) == [MODEL, "whisper-large-v3"]
    assert records["charged_tokens"][0] == records["prompt_tokens"][0] + 8 and records["audio_seconds"][1] == 1.0
    assert [x["model"] for x in log_lines(emu)] == [MODEL, "whisper-large-v3"]


def test_json_nested_deeper_than_the_parser_recurses_is_a_400(serve):
    """``json.loads`` raises RecursionError (not ValueError) on deep nesting: still unparsable JSON, a 400."""
    url, emu = serve(make_spec(), time_scale=10)
    deep = b"[" * 100_000 + b"]" * 100_000
    r = httpx.post(url + "/openai/v1/chat/completions", content=deep)
    assert r.status_code == 400 and r.json()["error"]["message"].startswith("We could not parse the JSON body")
    r = httpx.post(url + "/openai/v1/batches", content=deep)
    assert r.status_code == 400 and r.json()["error"]["message"] == "the request body must be a JSON object"
    assert [x["status"] for x in log_lines(emu)] == [400]  # (Batch API calls are not logged)


#: what the tier table holds that Groq had shut down for the free tier by 2026-11-27 (groq-real-responses.md §7)
SHUT_DOWN_FOR_FREE = {"moonshotai/kimi-k2-instruct", "playai-tts", "playai-tts-arabic", "meta-llama/llama-guard-4-12b",
                      "meta-llama/llama-4-maverick-17b-128e-instruct", "moonshotai/kimi-k2-instruct-0905",
                      "qwen/qwen3-32b", "meta-llama/llama-4-scout-17b-16e-instruct", "llama-3.1-8b-instant",
                      "llama-3.3-70b-versatile", "groq/compound", "groq/compound-mini"}


def test_models_groq_has_shut_down_are_answered_as_groq_does_unless_the_scenario_uses_them(serve, tmp_path):
    """A model Groq has shut down for the org's tier by today, that the scenario does not use, is Groq's 400
    ``model_decommissioned`` (its body word for word) and is not listed; the scenario's own model stays
    served.  A shutdown counts from its date and for the tiers its scope names."""
    today = datetime.date(2026, 11, 27)
    url, emu = serve(make_spec(), time_scale=10, today=today)  # free tier; MODEL is shut down for it, but used
    assert emu.decommissioned == SHUT_DOWN_FOR_FREE - {MODEL}
    client = groq.Groq(base_url=url, api_key="k", max_retries=0)
    listed = {m.id for m in client.models.list().data}
    assert not listed & SHUT_DOWN_FOR_FREE - {MODEL} and {MODEL, "openai/gpt-oss-20b", "whisper-large-v3"} <= listed
    with pytest.raises(groq.BadRequestError) as e:
        client.chat.completions.create(model="moonshotai/kimi-k2-instruct", messages=msgs())
    assert e.value.body == {"error": {
        "message": "The model `moonshotai/kimi-k2-instruct` has been decommissioned and is no longer supported. "
                   "Please refer to https://console.groq.com/docs/deprecations for a recommendation on which model "
                   "to use instead.", "type": "invalid_request_error", "code": "model_decommissioned"}}
    with pytest.raises(groq.BadRequestError) as e:
        client.models.retrieve("qwen/qwen3-32b")
    assert body(e.value)["code"] == "model_decommissioned"
    assert client.chat.completions.create(model=MODEL, messages=msgs(), max_tokens=4).choices
    assert [(x["status"], (x["error"] or {}).get("code")) for x in log_lines(emu)] == [
        (400, "model_decommissioned"), (200, None)]
    # the date and the scope: maverick (all tiers, 2026-03-09) is gone on 2026-07-01, qwen3 (free and developer
    # tiers, 2026-07-17) not yet; on a tier of the scenario's own only the all-tier shutdowns count
    dev = Emulator(make_spec(tier="developer"), today=datetime.date(2026, 7, 1)).decommissioned
    assert "meta-llama/llama-4-maverick-17b-128e-instruct" in dev and "qwen/qwen3-32b" not in dev
    own = Emulator(make_spec(overrides={MODEL: {"rpm": 5}}), today=today).decommissioned
    assert "groq/compound" in own and "qwen/qwen3-32b" not in own
    # a scenario file's models: every grid point's (a [compare] model axis) stays served, as its warnings say
    scenario = tmp_path / "s.toml"
    scenario.write_text(f"""[scenario]\nname = "s"\nduration = "2m"\n[org]\ntier = "free"\n
[[clients]]\nname = "app"\nmodel = "{MODEL}"\narrival = {{kind = "poisson", rate = "10/min"}}\nprompt_tokens = 20
max_tokens = 32\n[compare]\nmodel = ["{MODEL}", "groq/compound"]\n""")
    from_file = sim.emulator.emulator_from_scenario(scenario)
    assert "groq/compound" in from_file.tier_limits and "groq/compound-mini" not in from_file.tier_limits


def _decimals(x: Decimal) -> int:
    return max(0, -x.as_tuple().exponent)


def test_usage_times_are_to_the_nanosecond_and_total_is_prompt_plus_completion(serve):
    """As Groq writes them (groq-real-responses.md §1): at most 9 decimals, and ``total_time`` exactly
    ``prompt_time + completion_time`` as written, in a JSON answer, a stream's ``x_groq.usage`` and usage chunk,
    and the records."""
    url, emu = serve(make_spec(), time_scale=50)
    chat = url + "/openai/v1/chat/completions"
    usages = []
    for _ in range(5):
        r = httpx.post(chat, json={"model": MODEL, "messages": msgs(), "max_tokens": 16})
        usages.append(json.loads(r.text, parse_float=Decimal)["usage"])
    with httpx.stream("POST", chat, json={"model": MODEL, "messages": msgs(), "max_tokens": 16, "stream": True,
                                          "stream_options": {"include_usage": True}}) as r:
        events = [json.loads(line[6:], parse_float=Decimal) for line in r.iter_lines() if line.startswith("data: {")]
    usages += [events[-2]["x_groq"]["usage"], events[-1]["usage"]]
    for u in usages:
        times = [u[k] for k in ("queue_time", "prompt_time", "completion_time", "total_time")]
        assert all(isinstance(t, Decimal) and _decimals(t) <= 9 for t in times), u
        assert u["total_time"] == u["prompt_time"] + u["completion_time"], u
    rec = emu.records()
    for col in ("queue_time", "prompt_time", "completion_time", "total_time"):
        assert rec[col].tolist() == [float(u[col]) for u in usages[:6]]


def test_usage_times_round_the_parts_and_sum_them():
    """:func:`usage_times` on many draws: every figure has at most 9 decimals as written (``repr``), and the
    total is the written sum of the written parts."""
    rng = np.random.default_rng(7)
    for q, p, c in rng.lognormal(-2, 2, (5000, 3)).tolist():
        times = usage_times((q, p, c))
        written = [Decimal(repr(t)) for t in times]
        assert all(_decimals(t) <= 9 for t in written), times
        assert written[3] == written[1] + written[2], times
        assert abs(times[1] - p) <= 5e-10 and abs(times[3] - (p + c)) <= 1.5e-9
