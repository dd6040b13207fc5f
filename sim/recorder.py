"""Record every Groq API exchange of a program to a JSONL log, and read such logs back.

The log is the evidence ``groqsim calibrate`` and ``groqsim trace`` work from; the emulator
(``groqsim serve``) writes the same format.  One line per HTTP exchange (an SDK retry is its own line)::

    t_send        float   epoch seconds when the request left the client
    t_recv        float   epoch seconds when the whole response had arrived (or the attempt failed)
    status        int|null  HTTP status; null for an attempt that failed on the client (below)
    model         str     the request's ``model``
    endpoint      str     "chat.completions", "audio.transcriptions" or "audio.translations"
    max_tokens    int|null  the request's max_completion_tokens / max_tokens
    audio_seconds float|null  length of the uploaded audio (WAV) or the response's ``duration``
    usage         dict|null  the response's usage object (queue_time, prompt_tokens, prompt_time,
                             completion_tokens, completion_time, total_tokens, total_time)
    headers       dict    the response's lower-case ``x-ratelimit-*`` and ``retry-after`` headers (strings)
    error         dict|null  {"type", "code", "message"} of an error body, or of a failure on the client
    label         str|null   a project / API-key label chosen by the user
    request_id    str|null   ``x-request-id`` header, else the body's ``x_groq.id`` / ``id``

Optional keys (readers must not require them): ``retry_count`` (int|null), the SDK's
``x-stainless-retry-count`` request header: 0 for a first attempt, k for its k-th retry.  It is what lets
``groqsim trace`` fold retries back into one logical request.  ``service_tier`` (str|null): the tier that
answered as the response names it (the body's ``service_tier``, or "service tier `flex`" in an error's
message), else the one the request asked for; ``groqsim calibrate`` fits the on-demand limits only to lines
that are on-demand (flex has its own limits).

An attempt that failed on the client -- the SDK's ``timeout`` fired (after which the SDK retries it), or the
connection failed -- has no response: its line has ``status`` null, ``usage`` null, ``error`` ``{"type":
"timeout", "code": "client_timeout", "message": "ReadTimeout: timed out"}`` (type "connection", code
"client_connection_error" for any other transport error; the message is the exception's class and text, at
most 500 characters), ``t_recv`` when the failure was raised, ``headers`` and ``request_id`` those of the
response when its head had arrived before the body failed (else ``{}`` and null), and the request's facts
(model, max_tokens, retry_count, ...) as any line.  :func:`read_log` keeps such a line (:func:`client_failure`
names it); a line without a status that is not one is skipped as before.

Nothing of the prompt, the audio or the completion is stored: only sizes, timings, headers and error text.

Recording needs no monkey-patching: the official SDKs take an ``http_client``; httpx runs event hooks for
the exchanges, and a transport wrapped around the client's own sees the attempts that raise instead
(:meth:`Recorder.attach` installs both on any client, of either httpx flavour)::

    from sim.recorder import Recorder
    rec = Recorder("groq_calls.jsonl", label="prod-key")
    client = groq.Groq(http_client=rec.attach(groq.DefaultHttpxClient()))
    aclient = groq.AsyncGroq(http_client=rec.attach(groq.DefaultAsyncHttpxClient()))
    oclient = openai.OpenAI(base_url="https://api.groq.com/openai/v1",
                            http_client=rec.attach(openai.DefaultHttpxClient()))   # (httpx2) too

``rec.client(**kw)`` / ``rec.async_client(**kw)`` are ``rec.attach(httpx.Client(**kw))`` and its async twin.
The hooks alone (``event_hooks=rec.event_hooks()``, as before) still log every exchange that has a response,
but not the attempts that time out; ``rec.transport(inner)`` is the wrapping transport for a client built
by hand (``httpx.Client(transport=rec.transport(httpx.HTTPTransport()), event_hooks=rec.event_hooks())``).

Streaming responses are passed through untouched; their line is written when the stream ends, with the
usage the last chunk carries (``x_groq.usage``).  A stream that carries an error instead (Groq's SSE ``event:
error`` frame, ``{"error": {..., "status_code": 400}}``, which the SDKs raise) is logged with that error and
its ``status_code`` as the status: what the caller got was that error, not an answer.  A stream that fails
part-way (a read timeout between chunks) is logged as a failed attempt with its response's headers.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import re
import sys
import threading
import time
import warnings
import wave
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from .errors import ConfigError
from .fields import MAX_SIZE

CHAT, TRANSCRIPTIONS, TRANSLATIONS = "chat.completions", "audio.transcriptions", "audio.translations"
ENDPOINTS = {"/chat/completions": CHAT, "/audio/transcriptions": TRANSCRIPTIONS, "/audio/translations": TRANSLATIONS}
#: the log's endpoints whose requests are audio (charged audio seconds, no tokens)
AUDIO_ENDPOINTS = (TRANSCRIPTIONS, TRANSLATIONS)
#: every key of a log line, in the order written
KEYS = ("t_send", "t_recv", "status", "model", "endpoint", "max_tokens", "audio_seconds", "usage", "headers",
        "error", "label", "request_id")
OPTIONAL_KEYS = ("retry_count", "service_tier")
#: a line without these cannot be used at all (but ``status``: null on an attempt that failed on the client)
REQUIRED = ("t_send", "t_recv", "status", "model")
#: a failure on the client (no response): the ``error`` type of its line -> that error's code
CLIENT_ERRORS = {"timeout": "client_timeout", "connection": "client_connection_error"}
#: a t_send or t_recv above this (epoch seconds: the year ~5100) is in milliseconds (~1.7e12 today)
MAX_EPOCH_SECONDS = 1e11
#: the most retries a line may count: no SDK retries a request this often (each waits up to 8 s; groq's default
#: is 2)
MAX_RETRY_COUNT = 1_000
_BIG = f"above {MAX_SIZE:,} (no request asks or is charged that much)"
#: what a log must be, for the one line that refuses a file that is none
LOG_FORMAT = "expected a JSONL recorder log (sim.recorder): one JSON object per line, t_send/t_recv in epoch seconds"
USAGE_KEYS = ("queue_time", "prompt_tokens", "prompt_time", "completion_tokens", "completion_time",
              "total_tokens", "total_time")
_EXT = "groqsim_recorder"


def kept_headers(headers) -> dict[str, str]:
    """The rate-limit headers a log line keeps: ``x-ratelimit-*`` and ``retry-after``, lower-cased."""
    return {k.lower(): str(v) for k, v in headers.items()
            if k.lower().startswith("x-ratelimit-") or k.lower() == "retry-after"}


class LogWriter:
    """Appends log lines (thread-safe); validates each line's keys so a writer cannot drift from the schema."""

    def __init__(self, path: str | Path, mode: str = "a"):
        self.path = Path(path)
        self._fh = open(self.path, mode, encoding="utf-8")  # noqa: SIM115 (kept open across writes)
        self._lock = threading.Lock()

    def write(self, record: dict) -> None:
        unknown = [k for k in record if k not in KEYS and k not in OPTIONAL_KEYS]
        missing = [k for k in KEYS if k not in record]
        if unknown or missing:
            raise ValueError(f"log line keys: unknown {unknown}, missing {missing}")
        line = json.dumps({k: record[k] for k in (*KEYS, *OPTIONAL_KEYS) if k in record}, separators=(",", ":"))
        with self._lock:
            self._fh.write(line + "\n")
            self._fh.flush()

    def close(self) -> None:
        with self._lock:
            self._fh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---- reading ------------------------------------------------------------------------------------------

@dataclass
class Log:
    """A log as read: usable ``records`` (every key present, absent ones None) and ``problems``."""
    path: str
    records: list[dict]
    problems: list[tuple[int, str]] = field(default_factory=list)  # (line number, what is wrong)
    lines: int = 0
    numbers: list[int] = field(default_factory=list)  # each record's line number in the file

    def problem_summary(self, limit: int = 5) -> list[str]:
        """One line per problem kind: how many lines, the first line numbers."""
        kinds: dict[str, list[int]] = {}
        for n, msg in self.problems:
            kinds.setdefault(msg, []).append(n)
        out = []
        for msg, nums in kinds.items():
            where = ", ".join(str(n) for n in nums[:limit]) + (", ..." if len(nums) > limit else "")
            out.append(f"{len(nums)} line(s) {msg} (line {where})")
        return out


def client_failure(record: dict) -> str | None:
    """The kind of client-side failure (``"timeout"`` or ``"connection"``, :data:`CLIENT_ERRORS`) a log line
    records: no status and an ``error`` of such a type; None for any other line."""
    error = record.get("error")
    if record.get("status") is None and isinstance(error, dict) and error.get("type") in CLIENT_ERRORS:
        return error["type"]
    return None


def _number(value, kind=float):
    if value is None or isinstance(value, bool):
        return None
    try:
        out = kind(value)
    except (TypeError, ValueError, OverflowError):  # (int(1e400): JSON reads 1e400 as infinity)
        return None
    return out if kind is int or math.isfinite(out) else None


def _status(value) -> int | None:
    """An HTTP status: a whole number from 100 to 599 (``200`` or ``200.0``); None for anything else (``200.5``,
    ``999``, ``-1``, ``10**30``: no server answered that, and a C long could not even hold the last)."""
    number = _number(value)
    if number is None or not number.is_integer() or not 100 <= number <= 599:
        return None
    return int(number)


def _usable_usage(usage: dict) -> bool:
    """Every usage figure present is a finite number >= 0 (a negative token count or time is not Groq's)."""
    for k in USAGE_KEYS:
        v = usage.get(k)
        if v is not None and ((x := _number(v)) is None or x < 0):
            return False
    return True


def _impossible(rec: dict, raw: dict) -> list[str]:
    """What no real log line holds, set to None in ``rec`` (the line is used without it), each said as a
    phrase: a max_tokens, audio_seconds or usage token count above MAX_SIZE (a completion above a known
    max_tokens is left to the calibration's evidence, which says so), a retry_count above MAX_RETRY_COUNT, a
    label that is not a string."""
    why = []
    for key in ("max_tokens", "audio_seconds"):
        if rec[key] is not None and rec[key] > MAX_SIZE:
            rec[key] = None
            why.append(f"{'an' if key[0] == 'a' else 'a'} {key} {_BIG}")
    usage = rec["usage"]
    counted = ("prompt_tokens",) if rec["max_tokens"] is not None else ("prompt_tokens", "completion_tokens")
    if isinstance(usage, dict) and any((x := _number(usage.get(k))) is not None and x > MAX_SIZE for k in counted):
        rec["usage"] = None
        why.append(f"a usage counting tokens {_BIG}")
    if rec["retry_count"] is not None and rec["retry_count"] > MAX_RETRY_COUNT:
        rec["retry_count"] = None
        why.append(f"a retry_count above {MAX_RETRY_COUNT:,} (no SDK retries that often)")
    if raw.get("label") is not None and not isinstance(raw["label"], str):
        rec["label"] = None
        why.append("a label that is not a string")
    return why


def read_log(path: str | Path) -> Log:
    """Read a JSONL log, keeping every usable line and noting each bad one with its line number.
    Missing, unreadable or negative optional fields become None (and are noted; a usage with a negative or
    non-numeric figure is dropped whole), and so do values no real line holds (:func:`_impossible`); a line
    with a negative time is left out; a line without a readable t_send, t_recv, status or model (a
    non-empty string) is skipped -- but an attempt that failed on the client (:func:`client_failure`: status
    null, an error of type "timeout" or "connection") is kept with ``status`` None --, and a line that repeats
    an earlier one exactly (same request_id, same content: a log appended twice) is dropped.  A file that is
    not such a log at all -- empty, no line a JSON object, no line with a numeric t_send -- or whose times are
    in milliseconds raises :class:`ConfigError`
    (one line)."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8", errors="replace", newline="") as f:
            return _read_lines(path, f)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read log ({exc.strerror})") from None


def _read_lines(path: Path, lines) -> Log:
    """:func:`read_log` of an open file, read a line at a time (the whole text, its lines and a copy of each
    line for the repeats held a 34 MB log as 380 MB before a record was made).  A repeat is known by a digest of
    its content."""
    log = Log(str(path), [])
    seen: set[bytes] = set()
    objects = timed = 0
    for n, line in enumerate(_split(lines), start=1):
        if not line.strip():
            continue
        log.lines += 1
        try:
            raw = json.loads(line)
        except (ValueError, RecursionError):  # (JSONDecodeError, and a number of 5 000 digits, nesting too deep)
            log.problems.append((n, "are not JSON (truncated?): skipped"))
            continue
        if not isinstance(raw, dict):
            log.problems.append((n, "are not JSON objects: skipped"))
            continue
        objects += 1
        # the same request_id and content (or no request_id) as before
        same = hashlib.blake2b(json.dumps(raw, sort_keys=True).encode(), digest_size=16).digest()
        if same in seen:
            log.problems.append((n, "repeat an earlier line exactly (the log appended twice?): dropped"))
            continue
        seen.add(same)
        rec = {k: raw.get(k) for k in (*KEYS, *OPTIONAL_KEYS)}
        rec["t_send"], rec["t_recv"] = _number(raw.get("t_send")), _number(raw.get("t_recv"))
        for key in ("t_send", "t_recv"):
            if rec[key] is not None and rec[key] > MAX_EPOCH_SECONDS:
                value = f"{rec[key]:.3g}".replace("e+", "e")
                raise ConfigError(f"{path}: {key} {value} (line {n}) looks like milliseconds (allowed: epoch seconds)")
        timed += rec["t_send"] is not None
        rec["status"] = _status(raw.get("status"))
        required = [k for k in REQUIRED if k != "status" or client_failure(raw) is None]
        absent = [k for k in required if raw.get(k) is None]
        bad = [k for k in required if k not in absent
               and (rec[k] is None or (k == "model" and (not isinstance(rec[k], str) or not rec[k].strip())))]
        if absent or bad:
            why = [f"lack {', '.join(absent)}"] * bool(absent) + [f"have an unreadable {', '.join(bad)}"] * bool(bad)
            log.problems.append((n, f"{', '.join(why)}: skipped"))
            continue
        missing = [k for k in KEYS if k not in raw]
        if missing:
            log.problems.append((n, f"lack {', '.join(missing)}: used without them"))
        for key, kind in (("max_tokens", int), ("audio_seconds", float), ("retry_count", int)):
            rec[key] = _number(rec[key], kind)
        mistyped = [k for k in ("max_tokens", "audio_seconds", "retry_count") if raw.get(k) is not None
                    and (rec[k] is None or rec[k] < 0)]
        for k in mistyped:
            rec[k] = None
        if isinstance(raw.get("usage"), dict) and not _usable_usage(raw["usage"]):
            mistyped.append("usage")
        if mistyped:
            log.problems.append((n, f"have an unreadable or negative {', '.join(mistyped)}: used without it"))
        if not isinstance(rec["usage"], dict) or "usage" in mistyped:
            rec["usage"] = None
        if rec["t_send"] < 0 or rec["t_recv"] < 0:
            log.problems.append((n, "have a negative t_send or t_recv (allowed: epoch seconds): left out"))
            continue
        if impossible := _impossible(rec, raw):
            log.problems.append((n, f"have {', '.join(impossible)}: used without it"))
        rec["headers"] = ({str(k).lower(): str(v) for k, v in rec["headers"].items()}
                          if isinstance(rec["headers"], dict) else {})
        if not isinstance(rec["error"], dict):
            rec["error"] = None
        if not isinstance(rec["service_tier"], str):
            rec["service_tier"] = None
        log.records.append(rec)
        log.numbers.append(n)
    if not objects:
        raise ConfigError(f"{path}: {'no line is a JSON object' if log.lines else 'empty file'}; {LOG_FORMAT}")
    if not timed:
        raise ConfigError(f"{path}: no line has a numeric t_send (an ISO date is not one); {LOG_FORMAT}")
    return log


def _split(lines):
    """The lines of an open text file as ``str.splitlines`` splits the whole text (at the file's line ends and
    at ``\\x0c``, ``\\x1c``-``\\x1e``, ``\\x85``, ``\\u2028``...): each line's pieces in turn, so that line
    numbers are those of the text."""
    for line in lines:
        yield from line.splitlines()


# ---- recording ----------------------------------------------------------------------------------------

_SERVICE_TIER = re.compile(r"service tier `([a-z_]+)`")
_MULTIPART_MODEL = re.compile(rb'name="model"\r\n(?:[^\r\n]+\r\n)*\r\n([^\r\n]*)\r\n')


def wav_seconds(data: bytes) -> float | None:
    """Length of the WAV file that starts ``data`` (None when it is none): the frames present, by its header
    (``wave``), or for float and extensible WAVs, which ``wave`` refuses before Python 3.12, from its RIFF
    chunks (the ``data`` chunk's bytes over the ``fmt `` chunk's byte rate).  Either way only the bytes sent
    count: an encoder writing to a pipe leaves the sizes at 0xFFFFFFFF, and a truncated file claims more than
    it holds.  It never raises: ``data`` is whatever a client uploads, and ``wave`` fails on corrupt headers with
    more than ``wave.Error`` (Python 3.11's chunk reader raises a bare RuntimeError for a chunk that runs past
    the RIFF's end); a file neither reading finds a length in has none (None)."""
    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            present = len(w.readframes(w.getnframes())) // (w.getsampwidth() * w.getnchannels())
            return present / float(w.getframerate())
    except Exception:  # noqa: BLE001 - any failure of wave on untrusted bytes: read the chunks ourselves
        pass
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    pos, rate = 12, 0
    while pos + 8 <= len(data):
        cid, n = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "little")
        if cid == b"fmt " and n >= 12:
            rate = int.from_bytes(data[pos + 16:pos + 20], "little")  # after format, channels, sample rate
        elif cid == b"data":
            return min(n, len(data) - pos - 8) / rate if rate else None
        pos += 8 + n + (n & 1)  # chunks are padded to an even size
    return None


def _wav_seconds(body: bytes) -> float | None:
    """Duration of the first WAV file inside a multipart body (None when there is none)."""
    start = body.find(b"RIFF")
    if start < 0 or body[start + 8:start + 12] != b"WAVE":
        return None
    return wav_seconds(body[start:])


def _request_facts(request: httpx.Request, body: bytes, now: float) -> dict | None:
    """What the log keeps of a request (None: not an endpoint we log)."""
    endpoint = next((name for suffix, name in ENDPOINTS.items() if request.url.path.endswith(suffix)), None)
    if endpoint is None:
        return None
    facts = {"t_send": now, "endpoint": endpoint, "model": None, "max_tokens": None, "audio_seconds": None,
             "retry_count": _number(request.headers.get("x-stainless-retry-count"), int), "service_tier": None}
    if endpoint == CHAT:
        try:
            data = json.loads(body or b"{}")
        except (ValueError, RecursionError):  # not JSON, or nested deeper than the parser recurses
            data = {}
        if isinstance(data, dict):
            facts["model"] = data.get("model")
            facts["max_tokens"] = _number(data.get("max_completion_tokens", data.get("max_tokens")), int)
            tier = data.get("service_tier")
            facts["service_tier"] = tier if isinstance(tier, str) else None
    else:
        m = _MULTIPART_MODEL.search(body)
        facts["model"] = m.group(1).decode(errors="replace") if m else None
        try:
            facts["audio_seconds"] = _wav_seconds(body)
        except Exception as exc:  # noqa: BLE001 - an unreadable upload leaves its length unknown, never fails
            warnings.warn(f"sim.recorder: could not read the audio's length: {exc!r}", RuntimeWarning, stacklevel=2)
    return facts


def _usage_of(data) -> dict | None:
    if not isinstance(data, dict):
        return None
    usage = data.get("usage")
    if not isinstance(usage, dict):
        usage = (data.get("x_groq") or {}).get("usage") if isinstance(data.get("x_groq"), dict) else None
    return {k: usage.get(k) for k in USAGE_KEYS if k in usage} if isinstance(usage, dict) else None


def error_fields(error: dict) -> dict:
    """What the log keeps of an error object: its ``type``, ``code`` and ``message`` (None where absent)."""
    return {"type": error.get("type"), "code": error.get("code"), "message": error.get("message")}


class _SSEScanner:
    """Finds the usage object (and the service tier the chunks name) in a server-sent-event stream as its
    bytes pass by, and an error frame's error and status (``{"error": {..., "status_code": 400}}``)."""

    def __init__(self):
        self.buffer, self.usage, self.request_id, self.service_tier = b"", None, None, None
        self.error, self.status = None, None

    def feed(self, chunk: bytes) -> None:
        self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            if line.startswith(b"data:") and (b"usage" in line or b'"error"' in line
                                              or (self.service_tier is None and b'"service_tier"' in line)):
                try:
                    data = json.loads(line[5:].strip())
                except (ValueError, RecursionError):  # (a scanner must never break the stream it watches)
                    continue
                if not isinstance(data, dict):
                    continue
                if isinstance(data.get("error"), dict):
                    e = data["error"]
                    self.error = error_fields(e)
                    code = e.get("status_code")
                    self.status = code if isinstance(code, int) and not isinstance(code, bool) and (
                        400 <= code <= 599) else self.status
                self.usage = _usage_of(data) or self.usage
                self.request_id = self.request_id or (data.get("x_groq") or {}).get("id")
                tier = data.get("service_tier")
                self.service_tier = self.service_tier or (tier if isinstance(tier, str) else None)


class _RecordingStream:
    def __init__(self, inner, scanner: _SSEScanner, done):
        self._inner, self._scanner, self._done = inner, scanner, done

    def __iter__(self):
        for chunk in self._inner:
            self._scanner.feed(chunk)
            yield chunk
        self._done()  # the whole stream has passed (a client may never close it)

    def close(self):
        try:
            self._inner.close()
        finally:
            self._done()


class _AsyncRecordingStream:
    def __init__(self, inner, scanner: _SSEScanner, done):
        self._inner, self._scanner, self._done = inner, scanner, done

    async def __aiter__(self):
        async for chunk in self._inner:
            self._scanner.feed(chunk)
            yield chunk
        self._done()

    async def aclose(self):
        try:
            await self._inner.aclose()
        finally:
            self._done()


#: the httpx flavours whose clients a recorder can attach to (the openai SDK's is ``httpx2``)
FLAVOURS = ("httpx", "httpx2")


def _flavour(obj):
    """The httpx flavour (module ``httpx`` or ``httpx2``) ``obj``'s class comes from (its own or a base's);
    ``httpx`` for a class of neither."""
    for cls in type(obj).__mro__:
        name = cls.__module__.split(".")[0]
        if name in FLAVOURS and name in sys.modules:
            return sys.modules[name]
    return httpx


def _flavour_classes(name: str) -> tuple[type, ...]:
    """Exception class ``name`` (``TimeoutException``, ``TransportError``) of every httpx flavour loaded."""
    return tuple(getattr(sys.modules[m], name) for m in FLAVOURS if m in sys.modules)


def _failure_kind(exc: BaseException) -> str | None:
    """What a transport's exception says of the attempt: "timeout" (the client's timeout fired), "connection"
    (any other transport error, or an OS-level one such as TLS's), None (not a failure of the exchange: a
    bug, a cancellation; not logged)."""
    if isinstance(exc, _flavour_classes("TimeoutException")):
        return "timeout"
    if isinstance(exc, (*_flavour_classes("TransportError"), OSError)):
        return "connection"
    return None


class _FailureStream:
    """A response body (sync or async) that, should reading it raise (a read timeout between chunks, a
    dropped connection), has the attempt logged as failed, then re-raises the exception unchanged."""

    def __init__(self, inner, failed):
        self._inner, self._failed = inner, failed

    def __iter__(self):
        try:
            yield from self._inner
        except Exception as exc:
            self._failed(exc)
            raise

    async def __aiter__(self):
        try:
            async for chunk in self._inner:
                yield chunk
        except Exception as exc:
            self._failed(exc)
            raise

    def close(self):
        self._inner.close()

    async def aclose(self):
        await self._inner.aclose()


class _RecordingTransport:
    """Delegates every request to the client's own transport (``inner``); an attempt it raises on (the
    client's timeout, a connection error), before the response or while its body is read, is logged as
    failed by the recorder and the exception re-raised unchanged -- httpx's response hooks never see it."""

    def __init__(self, inner, recorder: Recorder):
        self._inner, self._recorder = inner, recorder

    def handle_request(self, request):
        try:
            response = self._inner.handle_request(request)
        except Exception as exc:
            self._recorder._failed(request, None, exc)
            raise
        return self._recorder._watch(request, response)

    async def handle_async_request(self, request):
        try:
            response = await self._inner.handle_async_request(request)
        except Exception as exc:
            self._recorder._failed(request, None, exc)
            raise
        return self._recorder._watch(request, response)

    def close(self):
        self._inner.close()

    async def aclose(self):
        await self._inner.aclose()

    def __enter__(self):
        self._inner.__enter__()
        return self

    def __exit__(self, *exc):
        self._inner.__exit__(*exc)

    async def __aenter__(self):
        await self._inner.__aenter__()
        return self

    async def __aexit__(self, *exc):
        await self._inner.__aexit__(*exc)

    def __getattr__(self, name):  # anything else the inner transport offers
        if name.startswith("__") or name in ("_inner", "_recorder"):
            raise AttributeError(name)
        return getattr(self._inner, name)


@dataclass(frozen=True)
class _Classes:
    """The recorder's stream and transport classes for one httpx flavour, as subclasses of its own bases (the
    openai SDK ships its own httpx fork, ``httpx2``, whose clients check for their own classes)."""
    stream: type
    async_stream: type
    transport: type
    failure_stream: type


_CLASSES: dict[str, _Classes] = {}


def _flavoured(obj) -> _Classes:
    """The recorder's classes for the httpx flavour of ``obj`` (a response, a transport)."""
    pkg = _flavour(obj)
    if pkg.__name__ not in _CLASSES:
        _CLASSES[pkg.__name__] = _Classes(
            type("RecordingStream", (_RecordingStream, pkg.SyncByteStream), {}),
            type("AsyncRecordingStream", (_AsyncRecordingStream, pkg.AsyncByteStream), {}),
            type("RecordingTransport", (_RecordingTransport, pkg.BaseTransport, pkg.AsyncBaseTransport), {}),
            type("FailureStream", (_FailureStream, pkg.SyncByteStream, pkg.AsyncByteStream), {}))
    return _CLASSES[pkg.__name__]


def _quiet_warning(message: str) -> None:
    """Warn, even where warnings are errors never raise: this is said while the user's own exception is on its
    way up, and must not replace it."""
    try:
        warnings.warn(message, RuntimeWarning, stacklevel=3)
    except Exception:  # noqa: BLE001 - a warnings filter set to "error": the original exception goes on
        pass


class Recorder:
    """httpx event hooks that log every chat-completion and transcription exchange to ``path``, and a wrapping
    transport that logs the attempts that fail on the client (:meth:`attach` installs both)."""

    def __init__(self, path: str | Path, label: str | None = None, clock=None):
        """Times are the wall clock when the recorder starts plus a monotonic clock's time since: a step of the
        system clock while it records (NTP, a manual change) moves no later line, and no round trip (one
        moved the rest of the log, and calibrate's replay, synced once, then missed a decision in five).
        ``clock`` (epoch seconds) is only for tests that run on a virtual clock."""
        self.writer = LogWriter(path)
        self.label = label
        if clock is None:
            offset = time.time() - time.monotonic()
            clock = lambda: offset + time.monotonic()  # noqa: E731
        self.clock = clock
        self._logged_lock = threading.Lock()

    # hooks ------------------------------------------------------------------------------------------
    def event_hooks(self) -> dict:
        """For ``httpx.Client(event_hooks=...)`` (or the SDKs' ``DefaultHttpxClient``): every exchange that has a
        response; an attempt that fails on the client needs :meth:`transport` too (:meth:`attach` adds both)."""
        return {"request": [self._on_request], "response": [self._on_response]}

    def async_event_hooks(self) -> dict:
        """For ``httpx.AsyncClient(event_hooks=...)`` (or ``DefaultAsyncHttpxClient``)."""
        return {"request": [self._on_request_async], "response": [self._on_response_async]}

    def transport(self, inner):
        """``inner`` (an httpx or httpx2 transport, sync or async) wrapped so that an attempt it raises on -- the
        client's timeout, a connection error -- is logged (status null, error type "timeout" or "connection")
        before the exception goes on unchanged.  It logs only requests the hooks saw: give the client
        :meth:`event_hooks` too (or use :meth:`attach`, which does both)."""
        if isinstance(inner, _RecordingTransport) and inner._recorder is self:
            return inner
        return _flavoured(inner).transport(inner, self)

    def attach(self, client):
        """Install the recorder on ``client`` -- an ``httpx.Client`` or ``AsyncClient``, an ``httpx2`` one, or an
        SDK's ``DefaultHttpxClient`` / ``DefaultAsyncHttpxClient`` (groq's: httpx; openai's: httpx2) -- and return
        it: its event hooks get the recorder's (after its own), and its transports (the default one and any
        mounted) are wrapped by :meth:`transport`, keeping the client's settings (limits, proxies, timeouts).
        Attaching twice changes nothing.  Should the client not keep its transports where httpx does, the hooks
        are still installed and a warning says that failed attempts will go unlogged."""
        is_async = any(cls.__name__ == "AsyncClient" for cls in type(client).__mro__)
        hooks = self.async_event_hooks() if is_async else self.event_hooks()
        current = client.event_hooks
        if hooks["request"][0] not in current.get("request", []):  # (bound methods compare by self and function)
            client.event_hooks = {k: [*current.get(k, []), *hooks[k]] for k in ("request", "response")}
        try:
            client._transport = self.transport(client._transport)
            client._mounts = {pattern: None if t is None else self.transport(t) for pattern, t in
                              client._mounts.items()}
        except AttributeError:
            warnings.warn("sim.recorder: this client keeps no httpx transport to wrap: attempts that time out on "
                          "the client will not be logged (the hooks log every response)", RuntimeWarning, stacklevel=2)
        return client

    def client(self, **kwargs) -> httpx.Client:
        """A plain ``httpx.Client(**kwargs)`` with the recorder attached (:meth:`attach`), for the groq SDK's
        ``http_client`` (for the openai SDK: ``rec.attach(openai.DefaultHttpxClient())``)."""
        return self.attach(httpx.Client(**kwargs))

    def async_client(self, **kwargs) -> httpx.AsyncClient:
        """``httpx.AsyncClient(**kwargs)`` with the recorder attached (:meth:`attach`)."""
        return self.attach(httpx.AsyncClient(**kwargs))

    def close(self) -> None:
        self.writer.close()

    # internals --------------------------------------------------------------------------------------
    def _on_request(self, request: httpx.Request) -> None:
        self._remember(request, request.read())

    async def _on_request_async(self, request: httpx.Request) -> None:
        self._remember(request, await request.aread())

    def _remember(self, request: httpx.Request, body: bytes) -> None:
        """Keep what the log needs of ``request`` on it for the response hook.  A recorder must never break
        the call it records: should reading the request fail anyway, it only warns and the exchange goes
        unlogged."""
        try:
            facts = _request_facts(request, body, self.clock())
        except Exception as exc:  # noqa: BLE001 - the user's request goes on, whatever its body holds
            warnings.warn(f"sim.recorder: could not log a request: {exc!r}", RuntimeWarning, stacklevel=3)
            return
        if facts is not None:
            request.extensions = {**request.extensions, _EXT: facts}

    def _streaming(self, response: httpx.Response) -> bool:
        return response.headers.get("content-type", "").startswith("text/event-stream")

    def _on_response(self, response: httpx.Response) -> None:
        facts = response.request.extensions.get(_EXT)
        if facts is None:
            return
        if self._streaming(response):
            scanner = _SSEScanner()
            if self._preloaded(response, facts, scanner):
                return
            response.stream = _flavoured(response).stream(response.stream, scanner,
                                                           self._once(facts, response, scanner))
            return
        response.read()
        self._write(facts, response, response.content, None)

    async def _on_response_async(self, response: httpx.Response) -> None:
        facts = response.request.extensions.get(_EXT)
        if facts is None:
            return
        if self._streaming(response):
            scanner = _SSEScanner()
            if self._preloaded(response, facts, scanner):
                return
            response.stream = _flavoured(response).async_stream(response.stream, scanner,
                                                                 self._once(facts, response, scanner))
            return
        await response.aread()
        self._write(facts, response, response.content, None)

    def _preloaded(self, response, facts: dict, scanner: _SSEScanner) -> bool:
        """A streamed body already in memory (a test transport's) is scanned and logged at once."""
        not_read = sys.modules[type(response).__module__.split(".")[0]].ResponseNotRead
        try:
            content = response.content
        except not_read:  # (of httpx or httpx2): a real stream, still to come
            return False
        scanner.feed(content + b"\n")
        self._write(facts, response, None, scanner)
        return True

    def _once(self, facts: dict, response, scanner):
        """A callback that writes the streamed exchange's line the first time it is called."""
        written = []

        def done():
            if not written:
                written.append(True)
                self._write(facts, response, None, scanner)
        return done

    def _first(self, facts: dict) -> bool:
        """True the first time an attempt's line is claimed: an attempt is one line, though a stream that
        fails part-way is seen both by its failure and by its close."""
        with self._logged_lock:
            if facts.get("logged"):
                return False
            facts["logged"] = True
            return True

    def _write(self, facts: dict, response: httpx.Response, content: bytes | None, scanner) -> None:
        """Write one line; a recorder must never break the call it records, so a failure only warns."""
        try:
            if self._first(facts):
                self._write_line(facts, response, content, scanner)
        except Exception as exc:  # noqa: BLE001 -- any failure (disk full, odd body) must not reach the caller
            warnings.warn(f"sim.recorder: could not log a response: {exc!r}", RuntimeWarning, stacklevel=2)

    def _watch(self, request, response):
        """The transport's ``response`` with its body watched for a failure while it is read (that too is a
        failed attempt: the SDK retries a body that timed out).  Never raises."""
        try:
            if request.extensions.get(_EXT) is not None:
                response.stream = _flavoured(response).failure_stream(
                    response.stream, lambda exc: self._failed(request, response, exc))
        except Exception as exc:  # noqa: BLE001 - the response goes on unwatched
            _quiet_warning(f"sim.recorder: could not watch a response: {exc!r}")
        return response

    def _failed(self, request, response, exc: BaseException) -> None:
        """Log the attempt of ``request`` that raised ``exc`` on the client (``response``: its head, when the
        body failed).  Never raises: the caller re-raises ``exc``, which must reach the user unchanged."""
        try:
            facts = request.extensions.get(_EXT)
            kind = _failure_kind(exc)
            if facts is None or kind is None or not self._first(facts):
                return
            headers = response.headers if response is not None else {}
            request_id = headers.get("x-request-id")
            self.writer.write({
                "t_send": facts["t_send"], "t_recv": self.clock(), "status": None, "model": facts["model"],
                "endpoint": facts["endpoint"], "max_tokens": facts["max_tokens"],
                "audio_seconds": facts["audio_seconds"], "usage": None, "headers": kept_headers(headers),
                "error": {"type": kind, "code": CLIENT_ERRORS[kind],
                          "message": (f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)[:500]},
                "label": self.label, "request_id": request_id if isinstance(request_id, str) else None,
                "retry_count": facts["retry_count"], "service_tier": facts["service_tier"],
            })
        except Exception as err:  # noqa: BLE001 -- disk full, a closed log: the user's exception goes on
            _quiet_warning(f"sim.recorder: could not log a failed attempt: {err!r}")

    def _write_line(self, facts: dict, response: httpx.Response, content: bytes | None, scanner) -> None:
        data = None
        if content:
            try:
                data = json.loads(content)
            except (json.JSONDecodeError, UnicodeDecodeError):
                data = None
        usage = scanner.usage if scanner else _usage_of(data)
        error = None
        if isinstance(data, dict) and isinstance(data.get("error"), dict):
            e = data["error"]
            error = error_fields(e)
        elif scanner and scanner.error:
            error = scanner.error
        elif response.status_code >= 400:
            error = {"type": None, "code": None, "message": None}
        request_id = response.headers.get("x-request-id")
        if request_id is None and isinstance(data, dict):
            x_groq = data.get("x_groq")
            request_id = (x_groq.get("id") if isinstance(x_groq, dict) else None) or data.get("id")
        if request_id is None and scanner:
            request_id = scanner.request_id
        tier = data.get("service_tier") if isinstance(data, dict) else scanner.service_tier if scanner else None
        if not isinstance(tier, str):  # the tier a 429 or 498 names, else the one asked for
            message = (error or {}).get("message")
            named = _SERVICE_TIER.search(message) if isinstance(message, str) else None
            tier = named.group(1) if named else facts["service_tier"]
        audio = facts["audio_seconds"]
        if audio is None and isinstance(data, dict):
            audio = _number(data.get("duration"))
        self.writer.write({
            "t_send": facts["t_send"], "t_recv": self.clock(),
            "status": scanner.status if scanner and scanner.status else response.status_code,
            "model": facts["model"], "endpoint": facts["endpoint"], "max_tokens": facts["max_tokens"],
            "audio_seconds": audio, "usage": usage, "headers": kept_headers(response.headers), "error": error,
            "label": self.label, "request_id": request_id if isinstance(request_id, str) else None,
            "retry_count": facts["retry_count"], "service_tier": tier,
        })
