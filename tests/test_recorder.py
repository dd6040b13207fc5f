"""The recorder with the REAL groq and openai SDK clients, their http_client answered by an httpx.MockTransport
that replies like Groq does (usage, x-ratelimit-* headers, 429 bodies).  What lands in the log is asserted."""
import asyncio
import contextlib
import io
import json
import math
import wave

import groq
import httpx
import httpx2
import numpy as np
import openai
import pytest
from hypothesis import given, settings, strategies as st

from sim.errors import ConfigError
from sim.recorder import KEYS, LogWriter, Recorder, read_log, wav_seconds

SECRET = "the quick brown secret prompt xyzzy"
ANSWER = "plugh the completion text"
USAGE = {"queue_time": 0.107146454, "prompt_tokens": 86, "prompt_time": 0.018903883, "completion_tokens": 220,
         "completion_time": 0.69108819, "total_tokens": 306, "total_time": 0.709992073}
HEADERS = {"x-ratelimit-limit-requests": "1000", "x-ratelimit-limit-tokens": "8000",
           "x-ratelimit-remaining-requests": "998", "x-ratelimit-remaining-tokens": "7927",
           "x-ratelimit-reset-requests": "2m52.8s", "x-ratelimit-reset-tokens": "547ms",
           "x-request-id": "req_01k454m1g2fst99rvda9y6109p", "x-groq-region": "gcp-asia-south1"}
MSG_429 = ("Rate limit reached for model `llama-3.1-8b-instant` in organization `org_01abc` service tier "
           "`on_demand` on tokens per minute (TPM): Limit 6000, Used 5034, Requested 1443. Please try again in "
           "4.77s. Need more tokens? Upgrade to Dev Tier today at https://console.groq.com/settings/billing")


def completion_body(model):
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1756800000, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER}, "logprobs": None,
                         "finish_reason": "stop"}],
            "usage": USAGE, "x_groq": {"id": "req_01k454m1g2fst99rvda9y6109p"}, "service_tier": "on_demand"}


class GroqLike:
    """Answers ``fail`` 429s, then successes; remembers the requests it saw."""

    def __init__(self, fail=0):
        self.fail, self.seen = fail, []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        if request.url.path.endswith("/audio/transcriptions"):
            return httpx.Response(200, headers=HEADERS, json={"text": ANSWER, "x_groq": {"id": "req_audio"}})
        model = json.loads(request.content)["model"]
        if len(self.seen) <= self.fail:
            # retry-after-ms (not sent by Groq) only keeps the SDK's back-off short in this test
            h = {**HEADERS, "x-ratelimit-remaining-tokens": "0", "retry-after": "5", "retry-after-ms": "5",
                 "x-request-id": f"req_429_{len(self.seen)}"}
            return httpx.Response(429, headers=h, json={"error": {"message": MSG_429, "type": "tokens",
                                                                  "code": "rate_limit_exceeded"}})
        return httpx.Response(200, headers=HEADERS, json=completion_body(model))


def _as_httpx2(resp: httpx.Response) -> "httpx2.Response":
    return httpx2.Response(resp.status_code, headers=dict(resp.headers), content=resp.content)


def lines(path):
    return [json.loads(s) for s in path.read_text().splitlines()]


def chat(client):
    return client.chat.completions.create(model="llama-3.1-8b-instant", max_tokens=300,
                                          messages=[{"role": "user", "content": SECRET}])


@pytest.mark.parametrize("sdk", ["groq", "openai"])
def test_sync_sdk_logs_every_attempt_without_text(sdk, tmp_path):
    log = tmp_path / "log.jsonl"
    rec = Recorder(log, label="prod-key")
    server = GroqLike(fail=2)
    if sdk == "groq":
        transport = httpx.MockTransport(server)
        client = groq.Groq(api_key="gsk_test", max_retries=2,
                           http_client=groq.DefaultHttpxClient(transport=transport, event_hooks=rec.event_hooks()))
    else:  # openai's SDK runs on its own httpx fork (httpx2): its transport answers with its own Response
        transport = httpx2.MockTransport(lambda r: _as_httpx2(server(r)))
        client = openai.OpenAI(api_key="gsk_test", base_url="https://api.groq.com/openai/v1", max_retries=2,
                               http_client=openai.DefaultHttpxClient(transport=transport,
                                                                     event_hooks=rec.event_hooks()))
    out = chat(client)
    assert out.choices[0].message.content == ANSWER  # the SDK still reads the body the hook has read
    rec.close()
    got = lines(log)
    assert len(server.seen) == 3 and len(got) == 3  # the SDK's two retries are lines of their own
    assert [g["status"] for g in got] == [429, 429, 200]
    assert [g["retry_count"] for g in got] == [0, 1, 2]
    for g in got:
        assert list(g)[:len(KEYS)] == list(KEYS)
        assert g["model"] == "llama-3.1-8b-instant" and g["endpoint"] == "chat.completions"
        assert g["max_tokens"] == 300 and g["label"] == "prod-key" and g["audio_seconds"] is None
        assert g["t_send"] <= g["t_recv"]
    assert got[0]["headers"] == {**{k: v for k, v in HEADERS.items() if k.startswith("x-ratelimit")},
                                 "x-ratelimit-remaining-tokens": "0", "retry-after": "5"}
    assert got[0]["error"] == {"type": "tokens", "code": "rate_limit_exceeded", "message": MSG_429}
    assert got[0]["usage"] is None and got[0]["request_id"] == "req_429_1"
    assert got[2]["usage"] == USAGE and got[2]["error"] is None
    assert got[2]["request_id"] == "req_01k454m1g2fst99rvda9y6109p"
    assert got[1]["t_send"] >= got[0]["t_recv"]
    text = log.read_text()
    assert SECRET not in text and ANSWER not in text and "gsk_test" not in text


def test_async_sdk_and_streaming(tmp_path):
    log = tmp_path / "log.jsonl"
    rec = Recorder(log)
    chunks = [{"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "openai/gpt-oss-20b",
               "choices": [{"index": 0, "delta": {"content": ANSWER}, "finish_reason": None}]},
              {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "openai/gpt-oss-20b",
               "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
               "x_groq": {"id": "req_stream", "usage": USAGE}}]
    sse = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"

    async def body():  # arrives in pieces, as from the network
        data = sse.encode()
        for k in range(0, len(data), 50):
            yield data[k:k + 50]

    def handler(request):
        if json.loads(request.content).get("stream"):
            return httpx.Response(200, headers={**HEADERS, "content-type": "text/event-stream"}, content=body())
        return GroqLike()(request)

    async def main():
        client = groq.AsyncGroq(api_key="k", http_client=groq.DefaultAsyncHttpxClient(
            transport=httpx.MockTransport(handler), event_hooks=rec.async_event_hooks()))
        await client.chat.completions.create(model="openai/gpt-oss-20b", max_completion_tokens=64,
                                             messages=[{"role": "user", "content": SECRET}])
        stream = await client.chat.completions.create(model="openai/gpt-oss-20b", stream=True,
                                                      messages=[{"role": "user", "content": SECRET}])
        text = "".join([c.choices[0].delta.content or "" async for c in stream])
        assert text == ANSWER

    asyncio.run(main())
    rec.close()
    got = lines(log)
    assert len(got) == 2
    assert got[0]["max_tokens"] == 64 and got[0]["usage"] == USAGE
    assert got[1]["usage"] == USAGE and got[1]["max_tokens"] is None  # usage from the last chunk
    assert got[1]["headers"]["x-ratelimit-reset-requests"] == "2m52.8s"
    assert SECRET not in log.read_text() and ANSWER not in log.read_text()


def test_transcription_logs_audio_seconds_from_the_upload(tmp_path):
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\x00\x00" * 16000 * 3)  # 3 s of silence
    log = tmp_path / "log.jsonl"
    rec = Recorder(log, label="audio")
    client = groq.Groq(api_key="k", http_client=rec.client(transport=httpx.MockTransport(GroqLike())))
    client.audio.transcriptions.create(model="whisper-large-v3-turbo", file=("a.wav", buf.getvalue()))
    rec.close()
    (got,) = lines(log)
    assert got["endpoint"] == "audio.transcriptions" and got["model"] == "whisper-large-v3-turbo"
    assert got["audio_seconds"] == pytest.approx(3.0) and got["request_id"] == "req_01k454m1g2fst99rvda9y6109p"


def test_reader_reports_bad_lines_with_numbers(tmp_path):
    path = tmp_path / "log.jsonl"
    with LogWriter(path, "w") as w:
        w.write({k: None for k in KEYS} | {"t_send": 1.0, "t_recv": 1.5, "status": 200, "model": "m",
                                           "headers": {"X-RateLimit-Limit-Tokens": "6000"}})
        with pytest.raises(ValueError):
            w.write({"t_send": 1.0})
    with path.open("a") as f:
        f.write('{"t_send": 2.0, "t_recv": 2.1, "status": 429, "model": "m"}\n')
        f.write('{"t_send": 3.0, "status": 200, "model": "m"}\n')
        f.write("[1, 2]\n")
        f.write('{"t_send": 1' + "0" * 5000 + '}\n')  # (past int()'s digits: a ValueError, not a JSONDecodeError)
        f.write("[" * 100_000 + "]" * 100_000 + "\n")  # (past the decoder's recursion)
        f.write('{"t_send": 4.0, "t_recv": 4.1, "sta')
    log = read_log(path)
    assert len(log.records) == 2 and log.lines == 7
    assert log.records[0]["headers"] == {"x-ratelimit-limit-tokens": "6000"}
    assert log.records[1]["usage"] is None and log.records[1]["headers"] == {}
    assert [n for n, _ in log.problems] == [2, 3, 4, 5, 6, 7]
    assert "t_recv" in log.problems[1][1] and all("truncated" in why for _, why in log.problems[3:])


def test_reader_tells_unreadable_from_absent_and_drops_negative_figures(tmp_path):
    base = {k: None for k in KEYS} | {"t_send": 1.0, "t_recv": 1.5, "status": 200, "model": "m", "headers": {}}
    usage = {"prompt_tokens": 10, "completion_tokens": 0, "completion_time": 0.0, "queue_time": 0.01}  # 0 is fine
    lines = [base | {"status": "abc"}, base | {"model": 7, "t_send": "x"}, base | {"status": None},
             base | {"usage": usage | {"completion_tokens": -5}}, base | {"usage": usage | {"queue_time": "soon"}},
             base | {"max_tokens": -1, "audio_seconds": "long", "retry_count": 2},
             base | {"usage": usage, "max_tokens": 0, "retry_count": 0, "error": "oops"},
             base | {"status": True, "t_recv": math.inf}]
    path = tmp_path / "log.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines[:3]) + "\n\n  \n"  # blank lines: not counted
                    + "".join(json.dumps(x) + "\n" for x in lines[3:]))
    log = read_log(path)
    assert log.lines == len(lines) and len(log.records) == 4
    assert log.problems == [(1, "have an unreadable status: skipped"),
                            (2, "have an unreadable t_send, model: skipped"),
                            (3, "lack status: skipped"),
                            (6, "have an unreadable or negative usage: used without it"),
                            (7, "have an unreadable or negative usage: used without it"),
                            (8, "have an unreadable or negative max_tokens, audio_seconds: used without it"),
                            (10, "have an unreadable t_recv, status: skipped")]
    assert [r["usage"] for r in log.records] == [None, None, None, usage]
    assert (log.records[2]["max_tokens"], log.records[2]["audio_seconds"], log.records[2]["retry_count"]) == (
        None, None, 2)
    assert (log.records[3]["max_tokens"], log.records[3]["retry_count"], log.records[3]["error"]) == (0, 0, None)


def test_a_step_of_the_system_clock_while_recording_moves_no_line(tmp_path, monkeypatch):
    """The wall clock read once, at the start, then a monotonic clock: an NTP step or a manual change of the
    system clock between two calls (here an hour back) moves neither the later lines nor their round trips."""
    import time
    from types import SimpleNamespace

    import sim.recorder
    step = [0.0]  # the system clock's step so far (the recorder's module reads this one)
    monkeypatch.setattr(sim.recorder, "time", SimpleNamespace(time=lambda: time.time() + step[0],
                                                              monotonic=time.monotonic))
    log = tmp_path / "log.jsonl"
    started = time.time()
    rec = Recorder(log)
    client = groq.Groq(api_key="k", http_client=rec.client(transport=httpx.MockTransport(GroqLike())),
                       max_retries=0)
    chat(client)
    step[0] = -3600.0
    chat(client)
    first, second = (json.loads(x) for x in log.read_text().splitlines())
    assert started <= first["t_send"] <= first["t_recv"] <= second["t_send"] <= second["t_recv"]
    assert second["t_recv"] - started < 60 and second["t_recv"] - second["t_send"] < 10


def test_a_clock_given_is_the_one_read(tmp_path):
    """(For tests on a virtual clock: ``clock`` replaces the anchored wall clock.)"""
    log = tmp_path / "log.jsonl"
    rec = Recorder(log, clock=lambda: 1234.5)
    chat(groq.Groq(api_key="k", http_client=rec.client(transport=httpx.MockTransport(GroqLike())), max_retries=0))
    line = json.loads(log.read_text().splitlines()[0])
    assert (line["t_send"], line["t_recv"]) == (1234.5, 1234.5)


def test_a_failing_log_never_breaks_the_call(tmp_path):
    rec = Recorder(tmp_path / "log.jsonl")
    rec.writer.close()  # writing now fails
    client = groq.Groq(api_key="k", http_client=rec.client(transport=httpx.MockTransport(GroqLike())))
    with pytest.warns(RuntimeWarning, match="could not log"):
        out = chat(client)
    assert out.choices[0].message.content == ANSWER


def _pcm_wav(seconds, rate=16_000):
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\0\0" * int(seconds * rate))
    return buf.getvalue()


def test_a_wavs_length_is_the_audio_sent_not_what_its_header_claims():
    """A WAV's header can claim more than the file holds: an encoder writing to a pipe leaves the RIFF and
    data sizes at 0xFFFFFFFF, and a truncated upload keeps its original header.  ASH/ASD count the audio
    sent, so the length is capped at the frames present (16-bit PCM through ``wave``, as float WAVs are by
    their chunks)."""
    data = _pcm_wav(3.0)
    assert wav_seconds(data) == 3.0
    piped = bytearray(data)
    piped[4:8] = b"\xff\xff\xff\xff"
    at = piped.find(b"data") + 4
    piped[at:at + 4] = b"\xff\xff\xff\xff"
    assert wav_seconds(bytes(piped)) == 3.0  # not 134 217.7 s
    assert wav_seconds(data[:44 + 32_000]) == 1.0  # truncated after 1 s of the 3 its header says
    assert wav_seconds(b"not audio") is None


def _chunk(cid: bytes, payload: bytes, size: int | None = None) -> bytes:
    """A RIFF chunk: id, size (its payload's unless given), payload, padded to an even length."""
    n = len(payload) if size is None else size
    return cid + n.to_bytes(4, "little") + payload + b"\0" * (len(payload) & 1)


def _float_wav(chunks: list[bytes], riff=b"RIFF") -> bytes:
    body = b"WAVE" + b"".join(chunks)
    return riff + len(body).to_bytes(4, "little") + body


#: a fmt chunk of a 32-bit float mono WAV at 8 kHz (format 3, which ``wave`` refuses before Python 3.12):
#: 32 000 bytes a second
FLOAT_FMT = _chunk(b"fmt ", (3).to_bytes(2, "little") + (1).to_bytes(2, "little") + (8000).to_bytes(4, "little")
                   + (32000).to_bytes(4, "little") + (4).to_bytes(2, "little") + (32).to_bytes(2, "little"))


def test_a_float_wavs_length_is_read_from_its_chunks():
    """Float and extensible WAVs are read chunk by chunk: the data chunk's bytes (never more than were sent)
    over the fmt chunk's byte rate; chunks before the data (an odd-sized LIST among them, padded to an even
    size) are skipped; what is not a RIFF/WAVE file, or has its data before its format, has no length."""
    data = b"\0" * 64_000  # 2 s
    assert wav_seconds(_float_wav([FLOAT_FMT, _chunk(b"data", data)])) == 2.0
    assert wav_seconds(_float_wav([FLOAT_FMT, _chunk(b"LIST", b"INFOabc"), _chunk(b"data", data)])) == 2.0
    assert wav_seconds(_float_wav([FLOAT_FMT, _chunk(b"data", data, size=0xFFFFFFFF)])) == 2.0  # piped
    assert wav_seconds(_float_wav([FLOAT_FMT, _chunk(b"data", data[:16_000], size=64_000)])) == 0.5  # truncated
    assert wav_seconds(_float_wav([FLOAT_FMT, _chunk(b"data", b"")])) == 0.0
    short_fmt = _chunk(b"fmt ", FLOAT_FMT[8:20])  # a 12-byte fmt chunk still names its byte rate
    assert wav_seconds(_float_wav([short_fmt, _chunk(b"data", data)])) == 2.0
    assert wav_seconds(_float_wav([_chunk(b"data", data), FLOAT_FMT])) is None  # no rate before the data
    assert wav_seconds(_float_wav([FLOAT_FMT, _chunk(b"data", data)], riff=b"RIFX")) is None  # big-endian: not read
    assert wav_seconds(_float_wav([FLOAT_FMT])) is None  # no data chunk
    assert wav_seconds(b"RIFF\0\0\0\0WAV") is None


def test_a_pcm_wavs_length_counts_whole_frames_by_its_sample_rate():
    """16-bit stereo: 4 bytes a frame.  A trailing partial frame is not audio; the header's byte-rate field,
    which ``wave`` ignores, does not matter."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(1000)
        w.writeframes(b"\0" * 4 * 1500)
    data = bytearray(buf.getvalue())
    assert wav_seconds(bytes(data)) == 1.5
    data[28:32] = (12345).to_bytes(4, "little")  # a wrong byte rate
    assert wav_seconds(bytes(data)) == 1.5
    assert wav_seconds(bytes(data[:-2])) == 1.499  # the last frame cut in half


def _corrupt_wav() -> bytes:
    """A WAV whose JUNK chunk claims more bytes than the RIFF holds (Python 3.11's ``wave`` raises a bare
    RuntimeError on it)."""
    chunks = b"JUNK" + (1 << 20).to_bytes(4, "little") + b"\0" * 4 + _pcm_wav(1.0)[12:]
    return b"RIFF" + (4 + len(chunks)).to_bytes(4, "little") + b"WAVE" + chunks


def test_wav_seconds_never_raises_on_a_corrupt_header():
    """``wav_seconds`` reads what clients upload: a corrupt header has no length (None), whatever ``wave``
    raises on it; so do 3 000 random corruptions of a WAV's first 64 bytes (it returns a length or None)."""
    assert wav_seconds(_corrupt_wav()) is None
    rng = np.random.default_rng(3)
    good = _pcm_wav(0.5)
    for _ in range(3000):
        data = bytearray(good)
        at = rng.integers(0, 64, rng.integers(1, 6))
        data[at[0]:at[0] + len(at)] = rng.integers(0, 256, len(at), dtype=np.uint8).tobytes()
        seconds = wav_seconds(bytes(data))
        assert seconds is None or seconds >= 0


def test_an_upload_it_cannot_read_never_breaks_the_call(tmp_path, monkeypatch):
    """A recorder must never break the request it records: a WAV whose header makes ``wave`` raise is logged
    with its length unknown; a failure reading the upload anyway only warns (and the line is still written);
    one reading the request at all warns and leaves the exchange unlogged.  The call succeeds every time."""
    log = tmp_path / "log.jsonl"
    rec = Recorder(log)
    client = groq.Groq(api_key="k", http_client=rec.client(transport=httpx.MockTransport(GroqLike())))
    stt = client.audio.transcriptions
    assert stt.create(model="whisper-large-v3", file=("a.wav", _corrupt_wav())).text == ANSWER
    monkeypatch.setattr("sim.recorder._wav_seconds", lambda body: 1 / 0)
    with pytest.warns(RuntimeWarning, match="could not read the audio's length: ZeroDivisionError"):
        assert stt.create(model="whisper-large-v3", file=("a.wav", _pcm_wav(1.0))).text == ANSWER
    monkeypatch.setattr("sim.recorder._request_facts", lambda *a: [][1])
    with pytest.warns(RuntimeWarning, match="could not log a request: IndexError"):
        assert stt.create(model="whisper-large-v3", file=("a.wav", _pcm_wav(1.0))).text == ANSWER
    rec.close()
    assert [(x["status"], x["model"], x["audio_seconds"]) for x in lines(log)] == [
        (200, "whisper-large-v3", None)] * 2


def test_json_nested_too_deep_is_skipped_not_raised(tmp_path):
    """``json.loads`` raises RecursionError on deep nesting: a chat body or a stream's event that deep is read
    as no JSON (the request logged without its model; the event skipped), never an exception in the call."""
    from sim.recorder import _request_facts, _SSEScanner
    deep = b"[" * 100_000 + b"]" * 100_000
    facts = _request_facts(httpx.Request("POST", "https://api.groq.com/openai/v1/chat/completions"), deep, 1.0)
    assert facts["endpoint"] == "chat.completions" and facts["model"] is None
    scanner = _SSEScanner()
    scanner.feed(b'data: {"usage": ' + deep + b"}\n" + b"data: " + json.dumps({"usage": USAGE}).encode() + b"\n")
    assert scanner.usage == USAGE


# ---- attempts that fail on the client (the SDK's timeout, a connection error) ----------------------------

CHAT_URL = "https://api.groq.com/openai/v1/chat/completions"
CHAT_BODY = {"model": "llama-3.1-8b-instant", "max_tokens": 300, "messages": [{"role": "user", "content": SECRET}]}


def _raising(pkg, exc_factory, seen):
    """A mock transport of httpx flavour ``pkg`` whose every request raises ``exc_factory(request)``; the
    exceptions raised are kept in ``seen`` (so the caller's can be compared by identity)."""
    def handler(request):
        seen.append(exc_factory(request))
        raise seen[-1]
    return pkg.MockTransport(handler)


@pytest.mark.parametrize("flavour", ["httpx", "httpx2"])
@pytest.mark.parametrize("kind", ["timeout", "connection", "bug"])
def test_the_transport_logs_a_failed_attempt_and_re_raises_the_very_exception(flavour, kind, tmp_path):
    """Sync and async, either httpx flavour: the exception the client's own transport raised reaches the
    caller unchanged (the same object); a timeout or a connection error is logged first (status null, the
    request's facts, error type "timeout" / "connection"); an exception that is no failure of the exchange (a
    bug in a transport) is not a line."""
    pkg = httpx if flavour == "httpx" else httpx2
    make = {"timeout": lambda r: pkg.ReadTimeout("timed out", request=r),
            "connection": lambda r: pkg.ConnectError("[Errno 111] Connection refused", request=r),
            "bug": lambda r: ValueError("a bug")}[kind]
    log = tmp_path / "log.jsonl"
    rec = Recorder(log, label="lbl")
    seen = []
    client = rec.attach(pkg.Client(transport=_raising(pkg, make, seen)))
    with pytest.raises(type(make(None) if kind == "bug" else make(pkg.Request("POST", CHAT_URL)))) as err:
        client.post(CHAT_URL, json=CHAT_BODY, headers={"x-stainless-retry-count": "1"})
    assert err.value is seen[-1]

    async def go():
        aclient = rec.attach(pkg.AsyncClient(transport=_raising(pkg, make, seen)))
        with pytest.raises(type(seen[-1])) as aerr:
            await aclient.post(CHAT_URL, json=CHAT_BODY)
        assert aerr.value is seen[-1]

    asyncio.run(go())
    rec.close()
    got = lines(log)
    if kind == "bug":
        assert got == []
        return
    assert len(got) == 2 and [g["retry_count"] for g in got] == [1, None]
    code = {"timeout": "client_timeout", "connection": "client_connection_error"}[kind]
    for g, exc in zip(got, seen):
        assert list(g) == [*KEYS, "retry_count", "service_tier"]
        assert g["status"] is None and g["usage"] is None and g["headers"] == {} and g["request_id"] is None
        assert g["error"] == {"type": kind, "code": code, "message": f"{type(exc).__name__}: {exc}"}
        assert (g["model"], g["endpoint"], g["max_tokens"], g["label"]) == (
            "llama-3.1-8b-instant", "chat.completions", 300, "lbl")
        assert g["t_send"] <= g["t_recv"]
    back = read_log(log)
    assert back.problems == [] and [r["status"] for r in back.records] == [None, None]


def test_a_failure_logging_a_failed_attempt_never_reaches_the_caller(tmp_path, monkeypatch):
    """A recorder must never break the call it records, least of all while the call's own exception is on its
    way up: a log that cannot be written only warns, and the timeout still reaches the caller unchanged -- even
    where warnings are errors, and whatever fails inside the recorder."""
    import warnings
    rec = Recorder(tmp_path / "log.jsonl")
    rec.writer.close()  # writing now fails
    seen = []
    client = rec.client(transport=_raising(httpx, lambda r: httpx.ReadTimeout("timed out", request=r), seen))
    with pytest.warns(RuntimeWarning, match="could not log a failed attempt"):
        with pytest.raises(httpx.ReadTimeout) as err:
            client.post(CHAT_URL, json=CHAT_BODY)
    assert err.value is seen[-1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(httpx.ReadTimeout) as err:
            client.post(CHAT_URL, json=CHAT_BODY)
    assert err.value is seen[-1]
    monkeypatch.setattr("sim.recorder._failure_kind", lambda exc: 1 / 0)
    with pytest.warns(RuntimeWarning, match="could not log a failed attempt: ZeroDivisionError"):
        with pytest.raises(httpx.ReadTimeout) as err:
            client.post(CHAT_URL, json=CHAT_BODY)
    assert err.value is seen[-1]
    # and through the SDK: it retries the timeout it sees, then raises its own APITimeoutError from it
    sdk = groq.Groq(api_key="k", max_retries=0, http_client=client)
    with pytest.warns(RuntimeWarning), pytest.raises(groq.APITimeoutError) as err:
        chat(sdk)
    assert err.value.__cause__ is seen[-1]


def test_attach_keeps_the_clients_own_hooks_and_transports_and_is_idempotent(tmp_path):
    """``attach`` adds the recorder's hooks after the client's own and wraps its transports, the mounted ones
    too; attaching again changes nothing (one line per exchange)."""
    log = tmp_path / "log.jsonl"
    rec = Recorder(log)
    called = []
    own, mounted = httpx.MockTransport(GroqLike()), httpx.MockTransport(GroqLike())
    client = httpx.Client(transport=own, mounts={"https://other.example": mounted},
                          event_hooks={"request": [lambda r: called.append("mine")]})
    assert rec.attach(rec.attach(client)) is client
    assert len(client.event_hooks["request"]) == 2 and len(client.event_hooks["response"]) == 1
    assert client._transport._inner is own  # wrapped once
    assert [t._inner for t in client._mounts.values()] == [mounted]
    sdk = groq.Groq(api_key="k", http_client=client)
    assert chat(sdk).choices[0].message.content == ANSWER
    client.post("https://other.example/openai/v1/chat/completions", json=CHAT_BODY)
    rec.close()
    assert called == ["mine", "mine"] and [g["status"] for g in lines(log)] == [200, 200]


def test_the_reader_keeps_a_failed_attempt_but_no_other_line_without_a_status(tmp_path):
    base = {k: None for k in KEYS} | {"t_send": 1.0, "t_recv": 1.2, "model": "m", "headers": {}, "retry_count": 0}
    timeout = {"type": "timeout", "code": "client_timeout", "message": "ReadTimeout: timed out"}
    path = tmp_path / "log.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in [
        base | {"error": timeout},
        base | {"error": {"type": "connection", "code": "client_connection_error", "message": "ConnectError"},
                "t_send": 2.0},
        base | {"error": {"type": "tokens", "code": "rate_limit_exceeded", "message": "?"}, "t_send": 3.0},
        base | {"error": timeout, "status": "abc", "t_send": 4.0}]))
    log = read_log(path)
    assert [r["t_send"] for r in log.records] == [1.0, 2.0]
    assert [r["status"] for r in log.records] == [None, None] and log.records[0]["error"] == timeout
    assert log.problems == [(3, "lack status: skipped"), (4, "have an unreadable status: skipped")]


# ---- the same, driven by the real SDKs against the emulator (groqsim serve) on a loopback port -------------

MODEL = "llama-3.1-8b-instant"
#: the emulator's limiter clock this much slower than the wall: its answers (0.1-0.3 s of queue and service at
#: K = 1, drawn in the same order on every run, seed 1) take 0.4-1.3 s, well beyond the client's timeout
SLOW = 0.25
CLIENT_TIMEOUT = 0.2


@contextlib.contextmanager
def _serving(tmp_path):
    """``groqsim serve`` (uvicorn, in a thread) on a free loopback port, slowed by :data:`SLOW`."""
    from sim.emulator import Emulator
    from sim.scenario import scenario_from_dict
    from tests.helpers import running
    spec = scenario_from_dict({
        "scenario": {"name": "timeouts", "duration": "2m", "seed": 1}, "org": {"tier": "free"},
        "clients": [{"name": "app", "model": MODEL, "arrival": {"kind": "poisson", "rate": "45/min"},
                     "prompt_tokens": 20, "max_tokens": 32, "completion_tokens": {"dist": "uniform", "low": 5,
                                                                                  "high": 32},
                     "policy": "groq-sdk"}]}, source="<test>").spec()
    emu = Emulator(spec, time_scale=SLOW, log_path=tmp_path / "requests.jsonl",
                   parquet_path=tmp_path / "records.parquet")
    with running(emu) as url:
        yield url


def _messages():
    return [{"role": "user", "content": "x" * 40}]


@pytest.mark.parametrize("sdk", ["groq", "openai"])
def test_attempts_that_hit_the_sdks_timeout_are_logged_read_and_traced(sdk, tmp_path, capsys):
    """The real SDK, ``timeout=0.2, max_retries=1``, against a server slower than that: both attempts time out
    (the SDK raises its APITimeoutError from the transport's own ReadTimeout) and both are lines -- status null,
    error "timeout", retry_count 0 then 1, no usage, no headers.  A later call with a longer timeout is
    answered.  ``read_log`` keeps all three lines, ``groqsim trace`` folds the two timeouts into one request
    of two attempts and says so, and ``groqsim calibrate`` leaves them out of its evidence (no usage, no
    headers: nothing of the service or the limits)."""
    from sim.calibrate import calibrate
    from sim.cli import main
    from sim.tracelog import log_to_trace
    log = tmp_path / "log.jsonl"
    rec = Recorder(log, label="app")
    with _serving(tmp_path) as url:
        if sdk == "groq":
            client = groq.Groq(base_url=url, api_key="k", http_client=rec.client(), timeout=CLIENT_TIMEOUT,
                               max_retries=1)
            timeout_error, read_timeout = groq.APITimeoutError, httpx.ReadTimeout
        else:
            client = openai.OpenAI(base_url=url + "/openai/v1", api_key="k", timeout=CLIENT_TIMEOUT, max_retries=1,
                                   http_client=rec.attach(openai.DefaultHttpxClient()))
            timeout_error, read_timeout = openai.APITimeoutError, httpx2.ReadTimeout
        with pytest.raises(timeout_error) as err:
            client.chat.completions.create(model=MODEL, messages=_messages(), max_tokens=32)
        assert type(err.value.__cause__) is read_timeout  # the transport's exception, unchanged
        answer = client.with_options(timeout=30).chat.completions.create(model=MODEL, messages=_messages(),
                                                                          max_tokens=32)
        client.close()  # (its pooled connection, else a ResourceWarning in some later test)
    rec.close()
    got = lines(log)
    assert [g["status"] for g in got] == [None, None, 200] and [g["retry_count"] for g in got] == [0, 1, 0]
    for g in got[:2]:
        assert g["error"] == {"type": "timeout", "code": "client_timeout", "message": "ReadTimeout: timed out"}
        assert g["usage"] is None and g["headers"] == {} and g["request_id"] is None
        assert (g["model"], g["max_tokens"], g["label"]) == (MODEL, 32, "app")
        assert CLIENT_TIMEOUT * 0.9 <= g["t_recv"] - g["t_send"] < 5 * CLIENT_TIMEOUT
    assert got[1]["t_send"] >= got[0]["t_recv"]  # the SDK's retry, after its back-off
    assert got[2]["usage"]["completion_tokens"] == answer.usage.completion_tokens

    back = read_log(log)
    assert back.problems == [] and [r["status"] for r in back.records] == [None, None, 200]
    export = log_to_trace(log)
    assert len(export.trace) == 2 and export.retries_folded == 1
    assert export.outcomes["attempts"].tolist() == [2, 1] and export.outcomes["answered"].tolist() == [False, True]
    assert any(n.startswith("2 attempt(s) timed out on the client") for n in export.notes)
    assert main(["trace", str(log), "-o", str(tmp_path / "trace.csv")]) == 0
    err_text = capsys.readouterr().err
    assert "note: 2 attempt(s) timed out on the client" in err_text
    assert "2 request(s) from 3 log line(s) (1 SDK retry folded)" in err_text
    cal = calibrate(log)
    assert len(cal.evidence) == 1 and cal.evidence["status"].tolist() == [200]
    assert not any("not from Groq" in n for n in cal.notes)


def test_a_stream_that_times_out_part_way_and_an_async_client(tmp_path):
    """A stream whose head has arrived but whose first chunk comes later than the timeout: the SDK hands the
    ReadTimeout to the code reading the stream (it retries no stream once begun), and the attempt is one line --
    status null, error "timeout", with the head's rate-limit headers and request id -- not a second one when
    the stream is closed.  The async SDK's timed-out attempts are lines as the sync one's."""
    log = tmp_path / "log.jsonl"
    rec = Recorder(log)
    with _serving(tmp_path) as url:
        client = groq.Groq(base_url=url, api_key="k", http_client=rec.client(), timeout=CLIENT_TIMEOUT,
                           max_retries=1)
        with pytest.raises(httpx.ReadTimeout):
            with client.chat.completions.create(model=MODEL, messages=_messages(), max_tokens=32,
                                                stream=True) as stream:
                for _ in stream:
                    pass

        async def go():
            aclient = groq.AsyncGroq(base_url=url, api_key="k", http_client=rec.async_client(),
                                     timeout=CLIENT_TIMEOUT, max_retries=1)
            with pytest.raises(groq.APITimeoutError):
                await aclient.chat.completions.create(model=MODEL, messages=_messages(), max_tokens=32)

        asyncio.run(go())
    rec.close()
    got = lines(log)
    assert [(g["status"], g["retry_count"], g["error"]["type"]) for g in got] == [
        (None, 0, "timeout"), (None, 0, "timeout"), (None, 1, "timeout")]
    assert got[0]["headers"]["x-ratelimit-limit-tokens"] == "6000" and got[0]["request_id"].startswith("req_")
    assert got[1]["headers"] == {} and got[1]["request_id"] is None
    assert [r["status"] for r in read_log(log).records] == [None] * 3


def test_calibrate_says_how_many_attempts_failed_on_the_client(tmp_path):
    from sim.calibrate import calibrate
    base = {k: None for k in KEYS} | {"t_send": 1.0, "t_recv": 1.2, "model": "m", "headers": {}, "retry_count": 0}
    path = tmp_path / "log.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in [
        base | {"error": {"type": "timeout", "code": "client_timeout", "message": "ReadTimeout"}},
        base | {"error": {"type": "timeout", "code": "client_timeout", "message": "ReadTimeout"}, "t_send": 2.0},
        base | {"error": {"type": "connection", "code": "client_connection_error", "message": "x"}, "t_send": 3.0}]))
    cal = calibrate(path)
    assert "3 attempt(s) failed on the client (connection: 1, timeout: 2): no answer to fit, left out " \
           "(groqsim trace counts them as attempts)" in cal.notes
    assert cal.unknown == ["everything: the log has no usable line"]


def test_a_failed_attempts_message_is_its_exception_cut_short_and_unseen_requests_are_no_line(tmp_path):
    """The message is the exception's class and text (the class alone when it has no text), at most 500
    characters; a failure of a request the recorder's hooks never saw (an endpoint it does not log) is no line
    and no warning."""
    import warnings
    log = tmp_path / "log.jsonl"
    rec = Recorder(log)
    for make in (lambda r: httpx.ReadTimeout("", request=r), lambda r: httpx.ReadTimeout("x" * 900, request=r)):
        with pytest.raises(httpx.ReadTimeout):
            rec.client(transport=_raising(httpx, make, [])).post(CHAT_URL, json=CHAT_BODY)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        with pytest.raises(httpx.ReadTimeout):
            rec.client(transport=_raising(httpx, lambda r: httpx.ReadTimeout("t", request=r), [])).post(
                "https://api.groq.com/openai/v1/models", json={})
    assert said == []
    rec.close()
    assert [g["error"]["message"] for g in lines(log)] == ["ReadTimeout", ("ReadTimeout: " + "x" * 900)[:500]]


def test_the_reader_sets_aside_what_no_real_line_holds_for_every_reader(tmp_path):
    """A max_tokens or usage count above MAX_SIZE, a retry_count beyond any SDK's, a label that is not a
    string: the line is kept without it and said (calibrate and trace read the same); a negative time is left
    out.  Before, calibrate replayed a 1e20-token reservation."""
    from sim.calibrate import calibrate
    base = {k: None for k in KEYS} | {"t_send": 1.0, "t_recv": 1.2, "status": 200, "model": "m", "headers": {},
                                      "retry_count": 0, "max_tokens": 100}
    path = tmp_path / "log.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in [
        base | {"max_tokens": 1e20, "retry_count": 1e308, "label": ["a"]},
        base | {"t_send": 2.0, "usage": {"prompt_tokens": 2e7, "completion_tokens": 5}},
        base | {"t_send": -3.0},
        base | {"t_send": 4.0}]))
    log = read_log(path)
    assert [r["t_send"] for r in log.records] == [1.0, 2.0, 4.0] and log.numbers == [1, 2, 4]
    first, second = log.records[0], log.records[1]
    assert (first["max_tokens"], first["retry_count"], first["label"], second["usage"]) == (None, None, None, None)
    big = "above 10,000,000 (no request asks or is charged that much)"
    said = [f"1 line(s) have a max_tokens {big}, a retry_count above 1,000 (no SDK retries that often), a label "
            "that is not a string: used without it (line 1)",
            f"1 line(s) have a usage counting tokens {big}: used without it (line 2)",
            "1 line(s) have a negative t_send or t_recv (allowed: epoch seconds): left out (line 3)"]
    assert log.problem_summary() == said
    assert all(note in calibrate(path).notes for note in said)


# ---- the log file: written as it goes, closed when done; the reader's edges ------------------------------

def _line(**kw):
    return {k: None for k in KEYS} | {"t_send": 1.0, "t_recv": 1.5, "status": 200, "model": "m", "headers": {}} | kw


def _write_lines(path, records):
    path.write_text("".join(json.dumps(x) + "\n" for x in records))
    return path


def test_each_line_is_in_the_file_at_once_and_a_closed_recorder_writes_none(tmp_path):
    """A log is read while the program runs (``groqsim trace`` on a live log): every line is on disk as soon as
    its exchange ends, not when the recorder closes.  Closing the writer (its ``with`` block, or
    ``Recorder.close``) closes the file: a later line is refused (the writer raises; the recorder only warns and
    the call goes on) and the file keeps the lines it had."""
    log = tmp_path / "log.jsonl"
    rec = Recorder(log)
    client = groq.Groq(api_key="k", http_client=rec.client(transport=httpx.MockTransport(GroqLike())))
    chat(client)
    assert [g["status"] for g in lines(log)] == [200]  # before rec.close()
    rec.close()
    with pytest.warns(RuntimeWarning, match="could not log a response"):
        assert chat(client).choices[0].message.content == ANSWER
    assert len(lines(log)) == 1
    with LogWriter(tmp_path / "w.jsonl", "w") as w:
        w.write(_line())
    with pytest.raises(ValueError):  # (I/O on a closed file)
        w.write(_line(t_send=2.0))
    assert len(lines(tmp_path / "w.jsonl")) == 1


def test_the_problem_summary_names_the_first_five_line_numbers():
    from sim.recorder import Log
    six = Log("p", [], problems=[(n, "x") for n in range(1, 7)] + [(9, "y")])
    assert six.problem_summary() == ["6 line(s) x (line 1, 2, 3, 4, 5, ...)", "1 line(s) y (line 9)"]
    five = Log("p", [], problems=[(n, "x") for n in range(1, 6)])
    assert five.problem_summary() == ["5 line(s) x (line 1, 2, 3, 4, 5)"]
    assert five.problem_summary(limit=2) == ["5 line(s) x (line 1, 2, ...)"]


def test_the_readers_bounds_are_inclusive_where_the_schema_says_above(tmp_path):
    """A value AT a bound is real: max_tokens, audio_seconds and a prompt's tokens of exactly 10,000,000, a
    retry_count of 1,000, times of 0 (a virtual clock starts there: ``Recorder(clock=...)``), a t_send of 1e11.
    A completion above 10,000,000 tokens is set aside only when the request's max_tokens is unknown (against a
    known one the calibration weighs it).  A service_tier that is not a string is none."""
    big = {"prompt_tokens": 10_000_000, "completion_tokens": 20_000_000}
    path = _write_lines(tmp_path / "log.jsonl", [
        _line(max_tokens=10_000_000, audio_seconds=10_000_000, retry_count=1_000, service_tier="flex"),
        _line(t_send=0.0, t_recv=0.5, max_tokens=100, usage=big),
        _line(t_send=0.0, t_recv=0.0, usage=big, service_tier=5),
        _line(t_send=1e11, t_recv=1e11)])
    log = read_log(path)
    assert log.numbers == [1, 2, 3, 4]
    first, second, third, _ = log.records
    assert (first["max_tokens"], first["audio_seconds"], first["retry_count"]) == (10_000_000, 10_000_000, 1_000)
    assert (first["service_tier"], third["service_tier"]) == ("flex", None)
    assert second["usage"] == big and third["usage"] is None
    assert log.problems == [(3, "have a usage counting tokens above 10,000,000 (no request asks or is charged that "
                                "much): used without it")]


@pytest.mark.parametrize("key", ["t_send", "t_recv"])
def test_times_above_1e11_are_milliseconds_and_refused(key, tmp_path):
    path = _write_lines(tmp_path / "log.jsonl", [_line(), _line(t_send=1e11, t_recv=1e11) | {key: 1.05e11}])
    with pytest.raises(ConfigError, match=rf"log.jsonl: {key} 1.05e11 \(line 2\) looks like milliseconds"):
        read_log(path)


def test_a_file_that_is_no_log_is_refused_and_a_repeated_line_dropped(tmp_path):
    """A file that is empty (blank lines only), holds no JSON object, or no numeric t_send is no log (one line
    saying what a log is); a missing file cannot be read.  A line that repeats an earlier one -- the same
    object, whatever its keys' order -- is dropped and said; one differing in its request_id is kept."""
    fmt = "expected a JSONL recorder log (sim.recorder): one JSON object per line, t_send/t_recv in epoch seconds"
    cases = {"empty file": "\n  \n", "no line is a JSON object": '[1]\n"x"\n',
             "no line has a numeric t_send (an ISO date is not one)": json.dumps(_line(t_send="2025-01-01")) + "\n"}
    for said, text in cases.items():
        path = tmp_path / "bad.jsonl"
        path.write_text(text)
        with pytest.raises(ConfigError) as err:
            read_log(path)
        assert str(err.value) == f"{path}: {said}; {fmt}"
    with pytest.raises(ConfigError, match="cannot read log"):
        read_log(tmp_path / "absent.jsonl")
    one = _line(request_id="req_1")
    path = tmp_path / "log.jsonl"
    path.write_text(json.dumps(one) + "\n" + json.dumps(one) + "\n" + json.dumps(dict(reversed(one.items())))
                    + "\n" + json.dumps(one | {"request_id": "req_2"}) + "\n")
    log = read_log(path)
    assert [r["request_id"] for r in log.records] == ["req_1", "req_2"] and log.numbers == [1, 4]
    assert log.problems == [(n, "repeat an earlier line exactly (the log appended twice?): dropped") for n in (2, 3)]


# ---- what a line says of odd requests and answers -----------------------------------------------------------

def _recorded(tmp_path, handler, send):
    """``send(client)`` through a recorder's httpx client answered by ``handler``, with warnings as errors (the
    recorder must not warn on any of these); the lines written."""
    import warnings
    log = tmp_path / "log.jsonl"
    rec = Recorder(log)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        send(rec.client(transport=httpx.MockTransport(handler)))
    rec.close()
    return lines(log)


def test_the_tier_a_line_names_is_the_answers_else_the_one_its_error_names_else_the_one_asked_for(tmp_path):
    """The tier that answered, as the response names it (the body's ``service_tier``), wins over the one the
    request asked for; a 429 or 498 names its tier in its message ("service tier `flex`"); an answer naming no
    tier leaves the one asked for; a request's tier that is not a string is none."""
    def handler(request):
        asked = json.loads(request.content).get("service_tier")
        if asked == "auto":
            return httpx.Response(200, json={"service_tier": "flex", "usage": USAGE})
        if asked == "on_demand":
            return httpx.Response(429, json={"error": {"message": MSG_429.replace("`on_demand`", "`flex`"),
                                                       "type": "tokens", "code": "rate_limit_exceeded"}})
        return httpx.Response(500, json={"error": {"message": "internal", "type": "internal_server_error"}})

    def send(client):
        for tier in ("auto", "on_demand", "flex", 7):
            client.post(CHAT_URL, json=CHAT_BODY | {"service_tier": tier})

    got = _recorded(tmp_path, handler, send)
    assert [g["service_tier"] for g in got] == ["flex", "flex", "flex", None]
    assert [g["status"] for g in got] == [200, 429, 500, 500]


def test_a_body_that_is_no_json_object_is_still_a_line(tmp_path):
    """A chat request whose body is JSON but no object is logged without its model; an answer that is not JSON
    (a proxy's HTML page) is a line with no usage, and, at 400 or above, an error of unknown type, code and
    message; a 200 that is not JSON has no error."""
    def handler(request):
        if request.url.params.get("ok"):
            return httpx.Response(200, text="fine")
        return httpx.Response(400, headers={"content-type": "text/html"}, text="<html>Bad Request</html>")

    def send(client):
        client.post(CHAT_URL, json=[1, 2])
        client.post(CHAT_URL, json=CHAT_BODY, params={"ok": 1})

    got = _recorded(tmp_path, handler, send)
    assert [(g["status"], g["model"], g["usage"], g["error"]) for g in got] == [
        (400, None, None, {"type": None, "code": None, "message": None}),
        (200, "llama-3.1-8b-instant", None, None)]


def test_without_an_x_request_id_header_the_request_id_is_the_bodys(tmp_path):
    """No ``x-request-id`` header: the body's ``x_groq.id``, else its ``id`` (an ``x_groq`` that is not an object
    is ignored), and never a value that is not a string."""
    bodies = [{"id": "chatcmpl-1", "x_groq": {"id": "req_x", "usage": USAGE}},
              {"id": "chatcmpl-2", "x_groq": "weird"},
              {"id": 12345, "usage": USAGE}]

    def handler(request):
        return httpx.Response(200, json=bodies[int(request.url.params["k"])])

    got = _recorded(tmp_path, handler, lambda c: [c.post(CHAT_URL, json=CHAT_BODY, params={"k": k})
                                                  for k in range(3)])
    assert [g["request_id"] for g in got] == ["req_x", "chatcmpl-2", None]
    assert [g["usage"] for g in got] == [USAGE, None, USAGE]  # x_groq.usage when the body has none of its own


def test_audio_seconds_are_the_uploads_else_the_answers_duration_and_a_model_may_be_absent(tmp_path):
    """A WAV upload's length is measured (also when the body is the bare WAV, no multipart form); an upload
    that is no WAV (an mp3) takes the answer's ``duration`` (verbose_json); a form without a model is logged
    without one."""
    url = "https://api.groq.com/openai/v1/audio/transcriptions"

    def handler(request):
        return httpx.Response(200, json={"text": ANSWER, "duration": 12.5})

    def send(client):
        client.post(url, files={"file": ("a.wav", _pcm_wav(2.0))}, data={"model": "whisper-large-v3"})
        client.post(url, files={"file": ("a.mp3", b"ID3\x04\x00" + b"\xff" * 400)}, data={"model": "whisper-large-v3"})
        client.post(url, content=_pcm_wav(1.5), headers={"content-type": "audio/wav"})
        client.post(url, files={"file": ("a.mp3", b"ID3" + b"\0" * 100)})

    got = _recorded(tmp_path, handler, send)
    assert [(g["model"], g["audio_seconds"]) for g in got] == [
        ("whisper-large-v3", 2.0), ("whisper-large-v3", 12.5), (None, 1.5), (None, 12.5)]


def test_a_wav_whose_data_chunk_header_is_cut_short_has_no_length():
    """A float WAV (read chunk by chunk) cut inside its data chunk's 8-byte header: no data chunk was sent."""
    for cut in range(1, 8):
        assert wav_seconds(_float_wav([FLOAT_FMT, b"data\x10\x00\x00\x00"[:cut]])) is None


def test_requests_to_endpoints_it_does_not_log_are_neither_read_nor_lines(tmp_path):
    """``/models`` and the like pass through untouched: no line, no warning (sync and async)."""
    def handler(request):
        return httpx.Response(200, json={"data": []})

    def send(client):
        assert client.get("https://api.groq.com/openai/v1/models").json() == {"data": []}
        rec = Recorder(tmp_path / "async.jsonl")

        async def go():
            async with rec.async_client(transport=httpx.MockTransport(handler)) as aclient:
                assert (await aclient.get("https://api.groq.com/openai/v1/models")).json() == {"data": []}

        asyncio.run(go())
        rec.close()
        assert (tmp_path / "async.jsonl").read_text() == ""

    assert _recorded(tmp_path, handler, send) == []


# ---- streams: sync and async, whole, closed early, failing part-way ---------------------------------------

class _Body(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body that arrives in ``pieces`` (sync or async), as from the network; remembers how many
    pieces were produced and whether it was closed.  ``fail``: raise it after the first piece."""

    def __init__(self, pieces, fail=None):
        self.pieces, self.fail, self.produced, self.closed = pieces, fail, 0, False

    def __iter__(self):
        for piece in self.pieces:
            self.produced += 1
            yield piece
            if self.fail:
                raise self.fail

    async def __aiter__(self):
        for piece in self.__iter__():
            yield piece

    def close(self):
        self.closed = True

    async def aclose(self):
        self.closed = True


def _sse(events, sep=b"data: "):
    return [sep + (e if isinstance(e, bytes) else json.dumps(e).encode()) + b"\n\n" for e in events]


#: a stream naming its tier in a chunk without usage (after one whose tier is no string), with a line that is JSON
#: but no object, its usage and request id in the last chunk
ODD_STREAM = [{"choices": [], "service_tier": 7}, {"choices": [], "service_tier": "flex"}, b'[1, "usage"]',
              {"choices": [], "x_groq": {"id": "req_stream", "usage": USAGE}}, b"[DONE]"]
SSE = {"content-type": "text/event-stream"}


@pytest.mark.parametrize("sep", [b"data: ", b"data:"])
def test_a_sync_stream_is_logged_when_it_ends_with_what_its_chunks_say(sep, tmp_path):
    """A stream read through (``data:`` with or without its space, as SSE allows) is one line when it ends:
    the usage, the request id (no header names it) and the tier its chunks carry; lines that are JSON but no
    object are skipped.  A body already in memory (a test transport's) is logged at once, the same."""
    pieces = b"".join(_sse(ODD_STREAM, sep))
    bodies = [_Body([pieces[k:k + 40] for k in range(0, len(pieces), 40)]), pieces]

    def handler(request):
        body = bodies.pop(0)
        return httpx.Response(200, headers=SSE, **({"stream": body} if isinstance(body, _Body) else {"content": body}))

    def send(client):
        for _ in range(2):
            with client.stream("POST", CHAT_URL, json=CHAT_BODY) as response:
                assert b"".join(response.iter_bytes()) == pieces

    got = _recorded(tmp_path, handler, send)
    assert [(g["usage"], g["request_id"], g["service_tier"]) for g in got] == [(USAGE, "req_stream", "flex")] * 2


def test_a_stream_that_carries_an_error_frame_is_logged_as_that_error(tmp_path):
    """Groq sends an error in a stream as an SSE ``event: error`` frame (a structured answer that failed its
    validation: ``{"error": {..., "code": "json_validate_failed", "status_code": 400}}``), which the SDKs
    raise: the line has that error and its status_code, not a 200 with no usage.  A frame whose status_code is
    no HTTP error status (or none) keeps the response's own status."""
    failed = {"message": "Failed to generate JSON. Please adjust your prompt. See 'failed_generation' for more "
                         "details.", "type": "invalid_request_error", "code": "json_validate_failed",
              "failed_generation": "[0, 0"}
    bodies = [b"event: error\n" + _sse([{"error": failed | {"status_code": status}}])[0]
              for status in (400, 200, "400", True, 599, 600)]

    def handler(request):
        return httpx.Response(200, headers={**SSE, "x-ratelimit-remaining-requests": "999"},
                              stream=_Body([bodies.pop(0)]))

    def send(client):
        for _ in range(6):
            with client.stream("POST", CHAT_URL, json=CHAT_BODY) as response:
                response.read()

    got = _recorded(tmp_path, handler, send)
    assert [g["status"] for g in got] == [400, 200, 200, 200, 599, 200] and all(g["usage"] is None for g in got)
    assert all(g["error"] == {k: failed[k] for k in ("type", "code", "message")} for g in got)
    assert got[0]["headers"] == {"x-ratelimit-remaining-requests": "999"}


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_stream_closed_early_is_one_line_and_its_body_is_closed(mode, tmp_path):
    """A client that stops reading a stream and closes it (``break`` out of the SDK's stream) still has its
    line -- answered, no usage yet -- and the network body under it is closed (its connection released)."""
    body = _Body(_sse(ODD_STREAM))

    def handler(request):
        return httpx.Response(200, headers={**HEADERS, **SSE}, stream=body)

    def send(client):
        if mode == "sync":
            with client.stream("POST", CHAT_URL, json=CHAT_BODY) as response:
                next(response.iter_bytes())
            return
        rec = Recorder(tmp_path / "async.jsonl")

        async def go():
            async with rec.async_client(transport=httpx.MockTransport(handler)) as aclient:
                async with aclient.stream("POST", CHAT_URL, json=CHAT_BODY) as response:
                    await response.aiter_bytes().__anext__()

        asyncio.run(go())
        rec.close()
        assert [(g["status"], g["usage"]) for g in lines(tmp_path / "async.jsonl")] == [(200, None)]

    got = _recorded(tmp_path, handler, send)
    assert body.closed and body.produced < len(ODD_STREAM)
    if mode == "sync":
        assert [(g["status"], g["usage"], g["request_id"]) for g in got] == [(200, None, HEADERS["x-request-id"])]


def test_an_async_client_streams_logs_and_reads_through_the_recorders_transport(tmp_path):
    """Through ``async_client`` (hooks and transport): an answer whose body arrives in pieces is a line with
    its usage; a stream reaches the caller before its body has arrived (the recorder reads nothing ahead) and
    is a line when it ends; a stream failing part-way (a read timeout between chunks) is one failed attempt
    with its head's headers, the timeout reaching the caller."""
    log = tmp_path / "log.jsonl"
    rec = Recorder(log)
    stream = _Body(_sse(ODD_STREAM))
    timeout = httpx.ReadTimeout("timed out")
    answers = [lambda: httpx.Response(200, headers=HEADERS, stream=_Body([json.dumps(completion_body("m")).encode()])),
               lambda: httpx.Response(200, headers=SSE, stream=stream),
               lambda: httpx.Response(200, headers={**HEADERS, **SSE}, stream=_Body(_sse(ODD_STREAM), fail=timeout))]

    async def go():
        async with rec.async_client(transport=httpx.MockTransport(lambda r: answers.pop(0)())) as aclient:
            assert (await aclient.post(CHAT_URL, json=CHAT_BODY)).json()["usage"] == USAGE
            async with aclient.stream("POST", CHAT_URL, json=CHAT_BODY) as response:
                assert stream.produced == 0  # the head only, so far
                got = [piece async for piece in response.aiter_bytes()]
            assert b"".join(got) == b"".join(_sse(ODD_STREAM))
            with pytest.raises(httpx.ReadTimeout) as err:
                async with aclient.stream("POST", CHAT_URL, json=CHAT_BODY) as response:
                    async for _ in response.aiter_bytes():
                        pass
            assert err.value is timeout

    asyncio.run(go())
    rec.close()
    got = lines(log)
    assert [(g["status"], g["usage"], g["request_id"]) for g in got] == [
        (200, USAGE, HEADERS["x-request-id"]), (200, USAGE, "req_stream"), (None, None, HEADERS["x-request-id"])]
    assert got[2]["error"] == {"type": "timeout", "code": "client_timeout", "message": "ReadTimeout: timed out"}
    assert got[2]["headers"]["x-ratelimit-limit-tokens"] == "8000"


# ---- attach: whatever transport the client has ------------------------------------------------------------

class _OwnTransport(httpx.MockTransport):
    """A transport class of the user's own (not httpx's module): remembers how the client drove it."""

    def __init__(self, handler):
        super().__init__(handler)
        self.calls = []

    def __enter__(self):
        self.calls.append("enter")
        return self

    def __exit__(self, *exc):
        self.calls.append("exit")

    def close(self):
        self.calls.append("close")

    async def __aenter__(self):
        self.calls.append("aenter")
        return self

    async def __aexit__(self, *exc):
        self.calls.append("aexit")

    async def aclose(self):
        self.calls.append("aclose")


class _DuckTransport:
    """No httpx class at all: only ``handle_request``."""

    def __init__(self, fail=None):
        self.fail = fail

    def handle_request(self, request):
        if self.fail:
            raise self.fail
        return httpx.Response(200, json=completion_body("m"))


def test_attach_wraps_a_transport_of_the_users_own_class_and_passes_the_clients_lifecycle_through(tmp_path):
    """A transport subclassed outside httpx, or only duck-typed like one, is wrapped as httpx's (no warning):
    answers and failures are logged.  Opening and closing the client opens and closes the transport under the
    recorder's (sync and async), and whatever else the inner transport offers is reached through the wrapper
    (its dunders excepted); a copy of the wrapper wraps the same transport."""
    import copy
    import warnings
    log = tmp_path / "log.jsonl"
    rec = Recorder(log)
    own = _OwnTransport(GroqLike())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with rec.attach(httpx.Client(transport=own)) as client:
            client.post(CHAT_URL, json=CHAT_BODY)
        rec.attach(httpx.Client(transport=own)).close()  # (closing a client closed by its `with` does nothing)
        duck = rec.attach(httpx.Client(transport=_DuckTransport()))
        duck.post(CHAT_URL, json=CHAT_BODY)
        failing = rec.attach(httpx.Client(transport=_DuckTransport(fail=httpx.ConnectError("refused"))))
        with pytest.raises(httpx.ConnectError):
            failing.post(CHAT_URL, json=CHAT_BODY)
        aown = _OwnTransport(GroqLike())

        async def go():
            async with rec.attach(httpx.AsyncClient(transport=aown)) as aclient:
                await aclient.post(CHAT_URL, json=CHAT_BODY)
            await rec.attach(httpx.AsyncClient(transport=aown)).aclose()

        asyncio.run(go())
    assert own.calls == ["enter", "exit", "close"] and aown.calls == ["aenter", "aexit", "aclose"]
    wrapped = client._transport
    assert wrapped.handler is own.handler and wrapped.calls is own.calls  # (any attribute, through)
    own.__custom__ = 1
    assert not hasattr(wrapped, "__custom__")
    twin = copy.copy(wrapped)
    assert twin._inner is own and twin is not wrapped
    with wrapped as entered:  # a transport used by hand (`with rec.transport(...) as t`) is itself
        assert entered is wrapped

    awrapped = rec.transport(aown)

    async def enter():
        async with awrapped as aentered:
            return aentered

    assert asyncio.run(enter()) is awrapped
    rec.close()
    got = lines(log)
    assert [g["status"] for g in got] == [200, 200, None, 200]
    assert got[2]["error"]["type"] == "connection"


def test_attach_leaves_a_mount_of_none_to_the_default_transport_and_warns_where_it_cannot_wrap(tmp_path):
    """A mount of None (httpx: "the default transport for these URLs") stays None, so those requests take the
    wrapped default transport and are logged.  A client keeping no transport where httpx does gets the hooks and
    a warning pointing at the caller's own line."""
    log = tmp_path / "log.jsonl"
    rec = Recorder(log)
    client = rec.attach(httpx.Client(transport=httpx.MockTransport(GroqLike()),
                                     mounts={"https://api.groq.com": None}))
    assert list(client._mounts.values()) == [None]
    client.post(CHAT_URL, json=CHAT_BODY)
    rec.close()
    assert [g["status"] for g in lines(log)] == [200]

    class Odd:  # an SDK client of some other make: hooks, no _transport
        event_hooks: dict = {}

    odd = Odd()
    with pytest.warns(RuntimeWarning, match="keeps no httpx transport to wrap") as said:
        assert rec.attach(odd) is odd
    assert said[0].filename == __file__
    assert odd.event_hooks["request"] == [rec._on_request] and odd.event_hooks["response"] == [rec._on_response]


def test_a_response_the_recorder_cannot_watch_is_still_answered_and_logged(tmp_path, monkeypatch):
    """Should wrapping an answer's body fail, the recorder only warns: the caller has its answer and the hooks
    their line (only a failure of that body would go unlogged)."""
    log = tmp_path / "log.jsonl"
    rec = Recorder(log)
    client = rec.client(transport=httpx.MockTransport(GroqLike()))
    monkeypatch.setattr("sim.recorder._flavoured", lambda obj: 1 / 0)
    with pytest.warns(RuntimeWarning, match="could not watch a response: ZeroDivisionError"):
        assert client.post(CHAT_URL, json=CHAT_BODY).json()["usage"] == USAGE
    rec.close()
    assert [(g["status"], g["usage"]) for g in lines(log)] == [(200, USAGE)]


@pytest.mark.parametrize("status, kept", [(200, 200), (429.0, 429), ("413", 413), (100, 100), (599, 599),
                                          (200.5, None), (999, None), (600, None), (-1, None), (99, None),
                                          (10**30, None), (2**63, None)])
def test_a_status_is_a_whole_http_status(tmp_path, status, kept):
    """No server answers 200.5, 999, -1 or 10**30 (which overflowed a C long in calibrate's tables, and 2**63
    wrapped to a negative status): such a line is skipped as unreadable, not counted as answered."""
    line = {k: None for k in KEYS} | {"t_send": 1.0, "t_recv": 1.5, "status": status, "model": "m", "headers": {}}
    path = tmp_path / "log.jsonl"
    path.write_text(json.dumps(line) + "\n")
    log = read_log(path)
    if kept is None:
        assert log.problems == [(1, "have an unreadable status: skipped")] and not log.records
    else:
        assert [r["status"] for r in log.records] == [kept] and isinstance(log.records[0]["status"], int)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.text(alphabet="ab{}\"", max_size=6),
                          st.sampled_from(["\n", "\r", "\r\n", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85",
                                           "\u2028", "\u2029", ""])), max_size=12))
def test_a_log_read_a_line_at_a_time_is_split_as_its_whole_text_was(pieces):
    """read_log reads the file a line at a time (the whole text and its lines held a 34 MB log as 380 MB): its
    lines, and so the line numbers its notes give, are still those of ``str.splitlines`` on the whole text."""
    from sim.recorder import _split
    text = "".join(a + b for a, b in pieces)
    assert list(_split(io.StringIO(text, newline=""))) == text.splitlines()


def test_a_log_read_from_disk_gives_its_lines_numbers_across_odd_line_ends(tmp_path):
    path = tmp_path / "odd.jsonl"
    good = [json.dumps({"t_send": 1.0 + k, "t_recv": 1.5 + k, "status": 200, "model": "m"}) for k in range(3)]
    path.write_bytes(f"{good[0]}\r\nnot json\u2028{good[1]}\r{good[2]}\n".encode())
    log = read_log(path)
    assert log.lines == 4 and log.numbers == [1, 3, 4]
    assert [n for n, why in log.problems if why.startswith("are not JSON")] == [2]
