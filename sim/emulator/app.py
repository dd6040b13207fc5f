"""Groq's OpenAI-compatible HTTP API on Starlette, answering from an :class:`~sim.emulator.core.Emulator`.

Routes (as Groq's, under ``/openai/v1``): ``POST chat/completions`` (JSON, or SSE with ``stream: true``
whose last chunk carries ``x_groq.usage``), ``GET models``, ``GET models/{id}``, ``POST
audio/transcriptions`` and ``audio/translations`` (multipart; the audio length is read from a WAV file's
header (:func:`sim.recorder.wav_seconds`, the one reader the recorder uses too), or from a ``duration`` form field
in seconds for other formats or a ``url``, which is never fetched), and the Batch API's ``files``, ``files/{id}``,
``files/{id}/content``, ``batches``, ``batches/{id}``, ``batches/{id}/cancel`` (the state in
:mod:`sim.emulator.batches`).  Emulator routes: ``GET /metrics`` (Prometheus text), ``POST /groqsim/flush``
(write the Parquet records now).

Errors are the API's own JSON bodies (:mod:`sim.headers`): 400 invalid JSON / missing fields, 400
``model_decommissioned`` for a model Groq has shut down, 404 unknown model (``model_not_found``, as Groq
answers), 401 invalid key when keys are configured, 429/413 from the limits, injected 5xx; an unexpected
exception becomes a 500 body, never a traceback, and the server stays up.  A request is logged and recorded
once: a 200 only after its body is built, so a failure building it leaves just the 500.
"""
from __future__ import annotations

import asyncio
import contextvars
import json
import math
import sys
from contextlib import asynccontextmanager
from functools import partial

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import (
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

from ..headers import ErrorResponse, invalid_request_error, server_error
from ..recorder import CHAT, TRANSLATIONS, wav_seconds
from ..recorder import TRANSCRIPTIONS as AUDIO
from .batches import BatchError, Batches
from ..units import usage_times
from .core import Emulator, approx_prompt_tokens, completion_cap, filler
from .shapes import Shape, cut_short, least_tokens, reply, shape_error, tool_tokens, warm

RESPONSE_FORMATS = ("json", "text", "verbose_json")  # a transcription's formats on Groq
MAX_STREAM_CHUNKS = 16  # a stream sends the answer in at most this many content chunks
#: parsing a request body that is not JSON, or is nested deeper than the parser recurses (a 400, not a 500)
JSON_ERRORS = (ValueError, UnicodeDecodeError, RecursionError)
#: the request's SDK retry number (``x-stainless-retry-count``, as the recorder logs it), set per request
_RETRY: contextvars.ContextVar[int | None] = contextvars.ContextVar("retry_count", default=None)
#: what the limits charged the request being answered (its record's model and figures), set once admitted: a
#: failure after the charge is recorded with them, so the records show what left the budget
_ADMITTED: contextvars.ContextVar[dict | None] = contextvars.ContextVar("admitted", default=None)
MIN_SLEEP = 50e-6  # response delays shorter than this (real seconds) are not slept: a timer costs more


async def _delay(seconds: float) -> None:
    if seconds >= MIN_SLEEP:
        await asyncio.sleep(seconds)


def _error(err: ErrorResponse, extra: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(err.body, err.status, headers={**err.headers, **(extra or {})})


class _Metrics:
    """Prometheus collector reading the emulator's counts and limit utilisation at scrape time."""

    def __init__(self, emu: Emulator):
        self.emu = emu

    def collect(self):
        c = CounterMetricFamily("groqsim_requests", "HTTP requests answered, by endpoint, model, outcome and status",
                                labels=["endpoint", "model", "outcome", "status"])
        for (endpoint, model, outcome, status), n in sorted(self.emu.counts.items()):
            c.add_metric([endpoint, model, outcome, str(status)], n)
        yield c
        g = GaugeMetricFamily("groqsim_limit_utilisation", "fraction of each limit in use now (1 - remaining/limit)",
                              labels=["model", "unit", "service_tier"])
        for (tier, model, unit), u in sorted(self.emu.utilisation().items()):
            g.add_metric([model, unit, tier], u)
        yield g
        g = GaugeMetricFamily("groqsim_project_limit_utilisation", "fraction of a project's own limit in use now "
                              "(projects that lower a model's limits)",
                              labels=["project", "model", "unit", "service_tier"])
        for (project, tier, model, unit), u in sorted(self.emu.project_utilisation().items()):
            g.add_metric([project, model, unit, tier], u)
        yield g


def build_app(emu: Emulator) -> Starlette:
    """The ASGI app serving ``emu``; the Parquet records are written when the app shuts down."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Metrics(emu))
    K = emu.time_scale
    start = int(emu.clock.epoch0)  # the models' creation time: the server's start (wall clock)

    def auth(request: Request):
        ok, label = emu.label(request.headers.get("authorization"))
        if not ok:
            return None, invalid_request_error("Invalid API Key", 401, code="invalid_api_key")
        return label, None

    def refuse(endpoint, model, t_send, label, err, tier="on_demand", **kw) -> JSONResponse:
        """Answer ``err`` (a 4xx decided before the limits are asked); about a known model, it carries that
        model's rate-limit headers (of the request's ``tier``), as every Groq response does."""
        sent = logged = {}
        if isinstance(model, str) and model in emu.tier_limits:
            sent, logged = emu.headers_sent_and_logged(model, project=label, tier=tier)
        _record(emu, endpoint=endpoint, model=model if isinstance(model, str) else "", status=err.status,
                t_send=t_send, label=label, headers={**logged, **err.headers}, error=err.error, **kw)
        return _error(err, sent)

    async def chat(request: Request) -> Response:
        t_send = emu.clock.now()
        label, err = auth(request)
        if err is not None:
            return refuse(CHAT, "", t_send, None, err)
        try:
            body = json.loads(await request.body())
        except JSON_ERRORS:
            return refuse(CHAT, "", t_send, label, invalid_request_error(
                "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
                "your HTTP library correctly. The OpenAI API expects a JSON payload.)"))
        if not isinstance(body, dict):
            return refuse(CHAT, "", t_send, label, invalid_request_error("the request body must be a JSON object"))
        model = body.get("model")
        if (err := emu.chat_error(body) or shape_error(body)) is not None:  # model, messages, service_tier, n,
            # max_tokens; then tools, tool_choice, response_format
            return refuse(CHAT, model, t_send, label, err, emu.first_tier(body.get("service_tier")))
        tier, max_tokens = body.get("service_tier"), completion_cap(body)[1]
        prompt = approx_prompt_tokens(body["messages"]) + tool_tokens(body)
        shape = Shape(body)  # (its JSON value built once: sized, then written or cut short)
        least = least_tokens(shape)
        d = emu.decide(model, prompt, max_tokens, project=label, service_tier=tier, least=least)
        headers = d.sent_headers
        kw = {"max_tokens": max_tokens, "request_id": d.request_id, "prompt": prompt, "d": d}
        if d.error is not None:
            _record(emu, endpoint=CHAT, model=model, status=d.status, t_send=t_send, label=label,
                    headers=d.log_headers, error=d.log_error, **kw)
            return _error(d.error, headers)  # an injected fault's too carries the rate-limit headers
        _ADMITTED.set({"model": model, **kw})
        if least > d.completion:  # the cap came first: the value is unfinished, and Groq's validation fails it
            return await _cut_short(emu, d, shape, model, t_send, label, headers, kw)
        q, p, c, total = usage_times(d.times)
        usage = {"queue_time": q, "prompt_tokens": prompt, "prompt_time": p, "completion_tokens": d.completion,
                 "completion_time": c, "total_tokens": prompt + d.completion, "total_time": total}
        created = int(emu.clock.wall(d.now))  # the client's own clock (the log keeps limiter epochs)
        cid = "chatcmpl-" + d.request_id[4:]
        message, finish = reply(shape, d.completion, "call_" + d.request_id[4:], max_tokens)
        content, call = message["content"], (message.get("tool_calls") or [None])[0]
        # (every stream chunk names the tier too, as OpenAI's chunks carry service_tier)
        base = {"id": cid, "created": created, "model": model, "system_fingerprint": "fp_groqsim",
                "service_tier": d.service_tier}
        if body.get("stream"):
            options = body.get("stream_options")
            kw_stream = {"include_usage": isinstance(options, dict) and options.get("include_usage") is True}
            return StreamingResponse(_stream(emu, d, base, usage, finish, model, t_send, label, kw, content, call,
                                             **kw_stream),
                                     media_type="text/event-stream", headers=headers)
        await _delay(d.delay / K)
        emu.finish(model, d, max_tokens, label)
        response = JSONResponse({**base, "object": "chat.completion", "choices": [{
            "index": 0, "message": message, "logprobs": None, "finish_reason": finish}], "usage": usage,
            "usage_breakdown": None, "x_groq": {"id": d.request_id}, "service_tier": d.service_tier}, headers=headers)
        _record(emu, endpoint=CHAT, model=model, status=200, t_send=t_send, label=label, headers=d.log_headers,
                usage=usage, **kw)  # once the body is built: a failure building it is the request's one record
        return response

    async def speech_to_text(request: Request, endpoint: str, task: str) -> Response:
        """A transcription or a translation (``task``: transcribe or translate; ``endpoint`` the log's name for
        it): both are charged the audio's seconds against ASH/ASD."""
        t_send = emu.clock.now()
        label, err = auth(request)
        if err is not None:
            return refuse(endpoint, "", t_send, None, err)
        try:
            form = await request.form()
        except Exception:  # noqa: BLE001 - any malformed multipart body is the client's 400
            return refuse(endpoint, "", t_send, label, invalid_request_error("the body must be multipart/form-data"))
        model = form.get("model")
        # every field but the audio is text: a file part in its place is refused before anything is charged
        if (name := next((k for k, v in form.multi_items() if k != "file" and not isinstance(v, str)), None)):
            return refuse(endpoint, model, t_send, label, invalid_request_error(
                f"'{name}' : must be a text field, not a file", param=name))
        if (err := emu.model_error(model, want_audio=True)) is not None:
            return refuse(endpoint, model, t_send, label, err)
        upload, url = form.get("file"), form.get("url")
        if (upload is None or isinstance(upload, str)) and not (isinstance(url, str) and url):
            return refuse(endpoint, model, t_send, label, invalid_request_error(
                "'file' : a file or a url is required", param="file"))
        fmt = form.get("response_format", "json")
        if fmt not in RESPONSE_FORMATS:
            return refuse(endpoint, model, t_send, label, invalid_request_error(
                f"'response_format' : must be one of {', '.join(RESPONSE_FORMATS)}", param="response_format"))
        data = b"" if upload is None or isinstance(upload, str) else await upload.read()
        seconds = audio_seconds(data, form.get("duration"))
        if seconds is None:  # a url is never fetched (the emulator stays off the network): its length is declared
            return refuse(endpoint, model, t_send, label, invalid_request_error(
                "could not read the audio length, or it is 0: send a WAV file, or a 'duration' field in seconds "
                "(with a url, which the emulator does not fetch, the 'duration' field is required)",
                param="url" if not data else "file"))
        d = emu.decide(model, 0, None, seconds, project=label)
        kw = {"audio_seconds": seconds, "request_id": d.request_id, "d": d}
        headers = d.sent_headers
        if d.error is not None:
            _record(emu, endpoint=endpoint, model=model, status=d.status, t_send=t_send, label=label,
                    headers=d.log_headers, error=d.log_error, **kw)
            return _error(d.error, headers)
        _ADMITTED.set({"model": model, **kw})
        await _delay(d.delay / K)
        text = filler(max(1, round(seconds * 2.5)))  # about 150 spoken words a minute
        if fmt == "text":
            response = PlainTextResponse(text, headers=headers)
        else:
            out = {"text": text, "x_groq": {"id": d.request_id}}
            if fmt == "verbose_json":
                language = "english" if task == "translate" else form.get("language") or "english"
                out = {"task": task, "language": language, "duration": seconds, "segments": [], **out}
            response = JSONResponse(out, headers=headers)
        _record(emu, endpoint=endpoint, model=model, status=200, t_send=t_send, label=label,
                headers=d.log_headers, **kw)  # once the body is built: a failure building it is the one record
        return response

    async def models(request: Request) -> Response:
        if (err := auth(request)[1]) is not None:
            return _error(err)
        return JSONResponse({"object": "list", "data": [_model_obj(m, start) for m in emu.tier_limits]})

    async def model_info(request: Request) -> Response:
        if (err := auth(request)[1]) is not None:
            return _error(err)
        m = request.path_params["model"]
        if (err := emu.served_error(m)) is not None:
            return _error(err)
        return JSONResponse(_model_obj(m, start))

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    async def flush(request: Request) -> Response:
        try:
            path = emu.flush()
        except OSError as exc:  # the operator's path, not the client's request: said, and the server goes on
            return JSONResponse({"error": {"message": f"could not write the records to {exc.filename}: "
                                           f"{exc.strerror}", "type": "server_error", "code": "records_not_written"}},
                                status_code=500)
        return JSONResponse({"records": emu.flushed if path else len(emu.records()),
                             "parquet": str(path) if path else None,
                             "log": str(emu.log_path) if emu.log_path else None})

    async def on_error(request: Request, exc: Exception) -> Response:
        return _error(server_error(500))

    async def not_found(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        return _error(invalid_request_error(f"Unknown request URL: {request.method} {request.url.path}.", status,
                                            code="unknown_url"))

    # ---- the Batch API (sim/emulator/batches.py): not model requests, so neither logged nor recorded -----------
    store = emu.batches if emu.batches is not None else Batches(emu)

    def batch_api(handler):
        """A files/batches route: the key checked first, a refusal of the store answered as its error body."""
        async def run(request: Request) -> Response:
            label, err = auth(request)
            if err is not None:
                return _error(err)
            try:
                return await handler(request, label)
            except BatchError as exc:
                return _error(exc.err)
        return guarded(None, run)

    async def files(request: Request, label) -> Response:
        if request.method == "GET":
            q = request.query_params
            return JSONResponse(store.list_files(q.get("purpose"), q.get("order"), q.get("limit"), q.get("after")))
        try:
            form = await request.form()
        except Exception:  # noqa: BLE001 - any malformed multipart body is the client's 400
            return _error(invalid_request_error("the body must be multipart/form-data"))
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            return _error(invalid_request_error("'file' : a file is required", param="file"))
        data = await upload.read(store.max_bytes + 1)  # one byte over the cap is enough to refuse it
        return JSONResponse(store.upload(data, upload.filename, form.get("purpose")))

    async def file_info(request: Request, label) -> Response:
        file_id = request.path_params["file_id"]
        if request.method == "DELETE":
            return JSONResponse(store.delete(file_id))
        return JSONResponse(store.file(file_id))

    async def file_content(request: Request, label) -> Response:
        return Response(store.content(request.path_params["file_id"]), media_type="application/octet-stream")

    async def batches(request: Request, label) -> Response:
        if request.method == "GET":
            q = request.query_params
            return JSONResponse(store.list_batches(q.get("limit"), q.get("after")))
        try:
            body = json.loads(await request.body())
        except JSON_ERRORS:
            body = None
        if not isinstance(body, dict):
            return _error(invalid_request_error("the request body must be a JSON object"))
        return JSONResponse(store.create(body.get("input_file_id"), body.get("endpoint"),
                                         body.get("completion_window"), body.get("metadata"), label))

    async def batch_info(request: Request, label) -> Response:
        return JSONResponse(store.batch(request.path_params["batch_id"]))

    async def batch_cancel(request: Request, label) -> Response:
        return JSONResponse(store.cancel(request.path_params["batch_id"]))

    def guarded(endpoint: str | None, handler):
        """``handler``, whose unexpected exception becomes a 500 with a one-line note on stderr (Starlette's
        error middleware would print the traceback), logged and recorded on a model ``endpoint`` with the key's
        project label, as every other answer to that key is."""
        async def run(request: Request) -> Response:
            t_send = emu.clock.now()
            retries = request.headers.get("x-stainless-retry-count", "")
            _RETRY.set(int(retries) if retries.isdigit() else None)
            _ADMITTED.set(None)  # (per request, as the retry number: whatever context the server runs it in)
            try:
                return await handler(request)
            except Exception as exc:  # noqa: BLE001 - the server answers 500 and stays up
                print(f"groqsim serve: 500 on {request.method} {request.url.path}: {type(exc).__name__}: {exc}",
                      file=sys.stderr)
                err, admitted = server_error(500), _ADMITTED.get()
                d = admitted["d"] if admitted else None  # (admitted: the model, its charge and its headers)
                if endpoint is not None:
                    label = emu.label(request.headers.get("authorization"))[1]
                    _record(emu, endpoint=endpoint, status=500, t_send=t_send, label=label,
                            headers=d.log_headers if d else {}, error=err.error, **(admitted or {"model": ""}))
                return _error(err, d.sent_headers if d else None)
            finally:  # a multipart body's uploads (temporary files), which Starlette leaves to the garbage collector
                await request.close()
        return run

    @asynccontextmanager
    async def lifespan(app):
        warm()
        yield
        try:
            emu.close()
        except Exception as exc:  # noqa: BLE001 - said by serve() once the server has stopped, not as a traceback
            emu.close_error = exc

    return Starlette(routes=[
        Route("/openai/v1/chat/completions", guarded(CHAT, chat), methods=["POST"]),
        Route("/openai/v1/audio/transcriptions", guarded(AUDIO, partial(speech_to_text, endpoint=AUDIO,
                                                                        task="transcribe")), methods=["POST"]),
        Route("/openai/v1/audio/translations", guarded(TRANSLATIONS, partial(speech_to_text, endpoint=TRANSLATIONS,
                                                                            task="translate")), methods=["POST"]),
        Route("/openai/v1/models", models, methods=["GET"]),
        Route("/openai/v1/models/{model:path}", model_info, methods=["GET"]),
        Route("/openai/v1/files", batch_api(files), methods=["GET", "POST"]),
        Route("/openai/v1/files/{file_id}", batch_api(file_info), methods=["GET", "DELETE"]),
        Route("/openai/v1/files/{file_id}/content", batch_api(file_content), methods=["GET"]),
        Route("/openai/v1/batches", batch_api(batches), methods=["GET", "POST"]),
        Route("/openai/v1/batches/{batch_id}", batch_api(batch_info), methods=["GET"]),
        Route("/openai/v1/batches/{batch_id}/cancel", batch_api(batch_cancel), methods=["POST"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/groqsim/flush", flush, methods=["POST"]),
    ], exception_handlers={Exception: on_error, HTTPException: not_found}, lifespan=lifespan)


async def _cut_short(emu: Emulator, d, shape: Shape, model: str, t_send: float, label, headers: dict,
                     kw: dict) -> Response:
    """The 400 of an admitted answer whose JSON value the cap cut short (:func:`~.shapes.cut_short`), sent
    once the model has written to its cap: charged as the request was, with the rate-limit headers (real
    ``tool_use_failed`` responses carry them).  Streamed, it is an SSE ``event: error`` frame, as Groq sends
    it in a stream (the SDKs raise it as an ``APIError``)."""
    err = cut_short(shape, d.completion)
    await _delay(d.delay / emu.time_scale)  # (no refund to give: the model wrote to its cap)
    _record(emu, endpoint=CHAT, model=model, status=err.status, t_send=t_send, label=label, headers=d.log_headers,
            error=err.error, **kw)
    if shape.body.get("stream"):
        frame = {"error": {**err.error, "status_code": err.status}}
        return Response(b"event: error\ndata: " + json.dumps(frame).encode() + b"\n\n",
                        media_type="text/event-stream", headers=headers)
    return _error(err, headers)


async def _stream(emu: Emulator, d, base: dict, usage: dict, finish: str, model: str, t_send: float, label,
                  kw: dict, content: str | None, call: dict | None = None, include_usage: bool = False):
    """SSE chunks: the role, the answer (``content``; a tool ``call``: its id and name, then its arguments) in
    up to 16 pieces spread over the completion time, then the
    final chunk with ``finish_reason`` and ``x_groq.usage``, with ``stream_options.include_usage`` one more
    with no choices and the ``usage`` (OpenAI's form, which the openai SDK's clients read), then ``[DONE]``.
    Each chunk is due at its own time from the start (sleep overheads do not add up).  The request is logged
    and recorded however the stream ends: a client that stops reading was still charged (a stream it
    abandons is finished and logged, with its usage, when the server lets go of it)."""
    K = emu.time_scale
    q, p, c = d.times
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def until(seconds: float) -> None:  # real seconds since the start
        await _delay(start + seconds - loop.time())

    def chunk(delta: dict, finish_reason=None, **extra) -> bytes:
        obj = {**base, "object": "chat.completion.chunk",
               "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}], **extra}
        return b"data: " + json.dumps(obj).encode() + b"\n\n"

    finished = False
    try:
        await until((q + p) / K)
        yield chunk({"role": "assistant", "content": ""}, x_groq={"id": d.request_id})
        words = content if call is None else call["function"]["arguments"]
        n = min(MAX_STREAM_CHUNKS, d.completion) or (1 if words else 0)  # (a JSON value even of 0 tokens)
        bounds = [round(len(words) * k / n) for k in range(n + 1)] if n else [0]
        if call is not None:  # OpenAI's form: the call's id, type and name first, then its arguments in pieces
            yield chunk({"tool_calls": [{"index": 0, "id": call["id"], "type": "function",
                                         "function": {"name": call["function"]["name"], "arguments": ""}}]})
        for k in range(n):
            await until((q + p + c * (k + 1) / n) / K)
            piece = words[bounds[k]:bounds[k + 1]]
            yield chunk({"content": piece} if call is None else
                        {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
        emu.finish(model, d, kw["max_tokens"], label)  # before the client can see the end and send again
        finished = True
        yield chunk({}, finish, x_groq={"id": d.request_id, "usage": usage})
        if include_usage:
            yield b"data: " + json.dumps({**base, "object": "chat.completion.chunk", "choices": [],
                                          "usage": usage}).encode() + b"\n\n"
        yield b"data: [DONE]\n\n"
    finally:
        if not finished:
            emu.finish(model, d, kw["max_tokens"], label)
        _record(emu, endpoint=CHAT, model=model, status=200, t_send=t_send, label=label, headers=d.log_headers,
                usage=usage, **kw)


def _record(emu: Emulator, **kw) -> None:
    """:meth:`Emulator.record` with the request's SDK retry number, so a log of the emulator, like the
    recorder's, lets ``groqsim trace`` fold retries into their request."""
    emu.record(retry_count=_RETRY.get(), **kw)


def audio_seconds(data: bytes, declared) -> float | None:
    """Length (> 0) of a WAV file (:func:`sim.recorder.wav_seconds`), else the declared ``duration`` field, else
    None."""
    seconds = wav_seconds(data)
    if seconds is not None and seconds > 0:
        return seconds
    try:
        value = float(declared) if declared is not None else None
    except (TypeError, ValueError):
        return None
    return value if value is not None and 0 < value < math.inf else None


def _model_obj(model: str, created: int) -> dict:
    return {"id": model, "object": "model", "created": created, "owned_by": "groqsim", "active": True}
