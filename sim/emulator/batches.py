"""The emulator's Batch API: uploaded files and batch jobs, without HTTP (:mod:`sim.emulator.app` serves them).

What Groq states (groq-real-responses.md §6): a batch file holds at most 50 000 requests / 200 MB; the
``completion_window`` is 24 h to 7 d; a job that misses it ends ``expired`` and only its completed requests are
billed; batch traffic has its own limits and does not consume the per-model limits.  So nothing here asks the
emulator's limits (:meth:`Emulator.limits`): the batch limits themselves are not modelled.

What we assume is the simulator's batch lane (:class:`sim.batch.BatchLane`, the scenario's ``[org.batch]``),
drawn in full when a batch is created, from a random stream of its own (batch traffic moves no chat answer):
the job starts after a start delay, then runs at its own speed in tokens per second; its requests complete one
after another in file order (request ``k`` at ``start + tokens(1..k) / speed``, tokens = prompt + completion);
each fails with probability ``request_failure``; one not done by ``created + completion_window`` is expired.
Answers are as the chat route's: prompt tokens counted the same way (tools included), completion tokens from
the scenario's answer lengths for the model, raised to a structured answer's fewest and capped by the line's
``max_tokens`` (default 1 024), ``usage`` times from the service model; the answer shaped as the line asks
(:func:`~sim.emulator.shapes.reply`: text, a JSON value, a tool call).  A line whose JSON value needs more than
its cap is processed to its cap and fails, as the chat route's does: a 400 ``json_validate_failed`` or
``tool_use_failed`` in the error file (how Groq's batch reports it is not on record: this is its chat answer).

A batch's status is read off the clock (limiter seconds, :class:`~sim.emulator.core.Clock`): ``validating``
until the job starts, ``in_progress`` until its last request is done (then ``completed``; finalizing takes no
time) or until the window ends (``expired``); a cancel makes it ``cancelling`` until the request in progress is
done (at once before the start), then ``cancelled``.  An input file with an invalid line makes the batch
``failed`` at creation, the lines' errors in ``errors.data``.  The output file (answered requests) and the
error file (failed, expired, cancelled ones) appear when the batch ends.  Times sent to the client
(``*_at``) are wall-clock epochs, as chat's ``created`` is.
"""
from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass

import numpy as np

from ..batch import MAX_BYTES, MAX_REQUESTS, MAX_WINDOW, MIN_WINDOW
from ..headers import ErrorResponse, invalid_request_error, server_error
from ..units import format_duration, parse_duration, usage_times
from .core import DEFAULT_MAX_TOKENS, Emulator, approx_prompt_tokens, completion_cap
from .shapes import Shape, cut_short, least_tokens, reply, shape_error, tool_tokens

ENDPOINT = "/v1/chat/completions"  # the one endpoint Groq's Batch API serves
INPUT, OUTPUT = "batch", "batch_output"  # file purposes
#: the error-file entry of a request that never ran (OpenAI's codes; Groq's are not on record, the texts ours)
#: the model errors whose body names no param (Groq's 404 and decommissioned 400): a line's error says "model"
MODEL_CODES = ("model_not_found", "model_decommissioned")
NOT_RUN = {"expired": {"code": "batch_expired", "message": "the batch's completion window ended before this "
                                                           "request was processed"},
           "cancelled": {"code": "batch_cancelled", "message": "the batch was cancelled before this request "
                                                               "was processed"}}


class BatchError(Exception):
    """A Batch API call refused: ``err`` is the API's error response (a 400 or 404)."""

    def __init__(self, err: ErrorResponse):
        super().__init__(err.error["message"])
        self.err = err


def _bad(message: str, param: str | None = None) -> BatchError:
    return BatchError(invalid_request_error(message, param=param))


def _not_found(kind: str, ident: str) -> BatchError:
    return BatchError(invalid_request_error(f"The {kind} `{ident}` does not exist or you do not have access to it.",
                                            404, code="not_found"))


def completion_window(text) -> float:
    """Seconds of a ``completion_window`` such as ``24h`` or ``7d`` (sim.units' durations); a 400 outside
    24 h..7 d, as Groq accepts."""
    try:
        if not isinstance(text, str):
            raise ValueError
        seconds = parse_duration(text)
    except ValueError:
        raise _bad(f"'completion_window' : {text!r} is not a duration (such as 24h or 7d)",
                   "completion_window") from None
    if not MIN_WINDOW <= seconds <= MAX_WINDOW:
        raise _bad(f"'completion_window' : must be from {format_duration(MIN_WINDOW)} to "
                   f"{format_duration(MAX_WINDOW)}, got {text}", "completion_window")
    return seconds


@dataclass
class File:
    """A stored file: an uploaded batch input (its valid requests and its invalid lines' errors) or a batch's
    output or error file."""
    id: str
    filename: str
    purpose: str
    created: float  # limiter seconds
    data: bytes
    requests: list[tuple[str, dict]] | None = None  # an input's (custom_id, body) lines
    errors: list[dict] | None = None  # an input's invalid lines: {code, line, message, param}

    def view(self, emu: Emulator) -> dict:
        # "status" is not in Groq's file object; the openai SDK's FileObject requires it (wait_for_processing)
        return {"id": self.id, "object": "file", "bytes": len(self.data),
                "created_at": int(emu.clock.wall(self.created)), "filename": self.filename, "purpose": self.purpose,
                "status": "processed"}


@dataclass
class Job:
    """One batch: its whole plan, drawn at creation, and whether and when it was cancelled.  Arrays are per
    request, in file order; times in limiter seconds."""
    id: str
    number: int  # creation order in this session (the records' ``job``)
    input_file_id: str
    completion_window: str
    window: float
    metadata: dict | None
    label: str | None
    created: float
    first: int  # number of the job's first request (its ids)
    errors: list[dict]  # the input file's invalid lines: the batch failed
    custom_ids: list[str]
    models: list[str]
    caps: list  # each line's completion cap (None: unset)
    prompt: np.ndarray
    completion: np.ndarray
    shapes: list[Shape]  # what each line's answer is shaped as (its JSON value built once)
    start: float = math.inf
    finish: np.ndarray | None = None  # when each request is done
    failed: np.ndarray | None = None  # processed, but failed (request_failure)
    cut: np.ndarray | None = None  # processed, but its JSON value needs more than its cap: Groq's 400
    times: np.ndarray | None = None  # (queue, prompt, completion time) of each answer, as usage reports them
    cancelling: float | None = None  # when a cancel was asked
    cancelled: float | None = None  # when it took effect
    output_file_id: str | None = None
    error_file_id: str | None = None
    settled: bool = False  # its output and error files exist

    @property
    def deadline(self) -> float:
        return self.created + self.window

    @property
    def final(self) -> str:
        """The status the batch ends with (as planned now: a cancel can still change it)."""
        if self.errors:
            return "failed"
        if self.cancelled is not None:
            return "cancelled"
        return "completed" if self.finish[-1] <= self.deadline else "expired"

    @property
    def end(self) -> float:
        """When the batch reaches :attr:`final` (limiter seconds; later than now while it runs)."""
        if self.errors:
            return self.created
        if self.cancelled is not None:
            return self.cancelled
        return min(float(self.finish[-1]), self.deadline)

    def status(self, now: float) -> str:
        if self.errors or now >= self.end:
            return self.final
        if self.cancelling is not None:
            return "cancelling"
        return "validating" if now < self.start else "in_progress"

    def counts(self, now: float) -> dict:
        """``request_counts`` at ``now``: done so far; at the end every request not answered is ``failed``
        (expired and cancelled ones too), so completed + failed = total."""
        if self.errors:
            return {"total": 0, "completed": 0, "failed": 0}
        done, bad = self.finish <= min(now, self.end), self.failed | self.cut
        completed = int((done & ~bad).sum())
        failed = int((done & bad).sum()) + (int((self.finish > self.end).sum()) if now >= self.end else 0)
        return {"total": len(self.custom_ids), "completed": completed, "failed": failed}

    def view(self, emu: Emulator, now: float) -> dict:
        """The batch object at ``now``: timestamps of what has happened by then, as the client's epochs."""
        end, final = self.end, self.final
        ended = now >= end

        def at(t: float | None, happened: bool = True) -> int | None:
            return int(emu.clock.wall(t)) if t is not None and happened else None
        return {
            "id": self.id, "object": "batch", "endpoint": ENDPOINT,
            "errors": {"object": "list", "data": self.errors} if self.errors else None,
            "input_file_id": self.input_file_id, "completion_window": self.completion_window,
            "status": self.status(now), "output_file_id": self.output_file_id, "error_file_id": self.error_file_id,
            "created_at": at(self.created), "in_progress_at": at(self.start, self.start <= now and self.start < end),
            "expires_at": at(self.deadline), "finalizing_at": at(end, ended and final == "completed"),
            "completed_at": at(end, ended and final == "completed"), "failed_at": at(end, final == "failed"),
            "expired_at": at(end, ended and final == "expired"), "cancelling_at": at(self.cancelling),
            "cancelled_at": at(end, ended and final == "cancelled"), "request_counts": self.counts(now),
            "metadata": self.metadata}


class Batches:
    """The organization's files and batch jobs.  Every call takes the time it happens (default: the
    emulator's clock now) and first settles the batches that have ended by then (their output files)."""
    max_bytes, max_requests = MAX_BYTES, MAX_REQUESTS  # a file's caps (Groq's; a test may lower them)

    def __init__(self, emu: Emulator):
        self.emu = emu
        self.files: dict[str, File] = {}
        self.jobs: dict[str, Job] = {}
        # a stream of its own (a distinct seed from the emulator's draws and its flex streams)
        self.rng = np.random.default_rng(np.random.SeedSequence([emu.seed, 2]))
        self._prefix, self._n = uuid.uuid4().hex[:16], {"file": 0, "batch": 0, "req": 0}
        emu.batches = self  # its ended requests go into the emulator's records

    def _id(self, kind: str, k: int | None = None) -> str:
        if k is None:
            k = self._n[kind]
            self._n[kind] += 1
        return f"{self._prefix}{k:010x}"

    def _now(self, now: float | None) -> float:
        now = self.emu.clock.now() if now is None else now
        self._settle(now)
        return now

    # ---- files -----------------------------------------------------------------------------------------
    def upload(self, data: bytes, filename: str | None, purpose, now: float | None = None) -> dict:
        """Store an upload; a 400 unless its purpose is ``batch`` and it is JSONL within the caps.  Its lines
        are checked now; an invalid one fails the batch made of the file (OpenAI-compatible APIs do so)."""
        now = self._now(now)
        if purpose != INPUT:
            raise _bad(f"'purpose' : must be 'batch', got {purpose!r}", "purpose")
        if len(data) > self.max_bytes:  # (the app reads one byte past the cap: the size is not known)
            raise _bad(f"the file is over {self.max_bytes:,} bytes, the most a batch file holds", "file")
        try:
            text = data.decode("utf-8-sig")  # a byte-order mark (Windows tools) is not part of the first line
        except UnicodeDecodeError:
            raise _bad("the file is not JSONL: it is not UTF-8 text", "file") from None
        lines = [(k, line) for k, line in enumerate(text.split("\n"), 1) if line.strip()]
        if not lines:
            raise _bad("the file is empty: a batch file is JSONL, one request per line", "file")
        if len(lines) > self.max_requests:
            raise _bad(f"the file has {len(lines)} requests; a batch file holds at most {self.max_requests}", "file")
        requests, errors, seen, parsed = [], [], set(), 0
        for k, line in lines:
            try:
                obj = json.loads(line)
                parsed += 1
            except (ValueError, RecursionError):  # not JSON, or nested deeper than the parser recurses
                obj = None
            err = self._line_error(obj, seen)
            if err is None:
                requests.append((obj["custom_id"], obj["body"]))
            else:
                errors.append({"code": err[0], "line": k, "message": err[1], "param": err[2]})
        if not parsed:
            raise _bad("the file is not JSONL: no line is JSON", "file")
        f = File("file_" + self._id("file"), filename or "batch.jsonl", INPUT, now, data, requests, errors)
        self.files[f.id] = f
        return f.view(self.emu)

    def _line_error(self, obj, seen: set) -> tuple[str, str, str | None] | None:
        """(code, message, param) of what is wrong with a line's object (None: a request the batch can run)."""
        if not isinstance(obj, dict):
            return "invalid_json_line", "the line is not a JSON object", None
        cid = obj.get("custom_id")
        if not isinstance(cid, str):
            return "invalid_request", "'custom_id' : must be a string", "custom_id"
        if cid in seen:
            return "duplicate_custom_id", f"'custom_id' : {cid!r} is on an earlier line too", "custom_id"
        seen.add(cid)
        if obj.get("method") != "POST":
            return "invalid_request", "'method' : must be 'POST'", "method"
        if obj.get("url") != ENDPOINT:
            return "url_mismatch", f"'url' : must be '{ENDPOINT}', the batch's endpoint", "url"
        body = obj.get("body")
        if not isinstance(body, dict):
            return "invalid_request", "'body' : must be a chat completion request object", "body"
        err = self.emu.chat_error(body, check_tier=False) or shape_error(body)  # the chat route's, in its order
        if err is not None:
            # the param (a 404 for the model names none, as Groq's does: here it says which field)
            param = err.error.get("param") or ("model" if err.error.get("code") in MODEL_CODES else None)
            return (err.error.get("code") or "invalid_request", err.error["message"],
                    f"body.{param}" if param else "body")
        return None

    def file(self, file_id: str, now: float | None = None) -> dict:
        self._now(now)
        return self._file(file_id).view(self.emu)

    def _file(self, file_id: str) -> File:
        f = self.files.get(file_id)
        if f is None:
            raise _not_found("file", file_id)
        return f

    def content(self, file_id: str, now: float | None = None) -> bytes:
        self._now(now)
        return self._file(file_id).data

    def delete(self, file_id: str, now: float | None = None) -> dict:
        """Delete a file (a batch made of it is unaffected: it read the file when it was created)."""
        self._now(now)
        self._file(file_id)
        del self.files[file_id]
        return {"id": file_id, "object": "file", "deleted": True}

    def list_files(self, purpose: str | None = None, order: str | None = None, limit: str | None = None,
                   after: str | None = None, now: float | None = None) -> dict:
        """Files, newest first (``order=asc``: oldest first), of one ``purpose`` if given; a page of
        ``limit`` after the id ``after`` (the openai SDK's cursor), all without ``limit``."""
        self._now(now)
        if order not in (None, "asc", "desc"):
            raise _bad(f"'order' : must be 'asc' or 'desc', got {order!r}", "order")
        files = [f for f in self.files.values() if purpose is None or f.purpose == purpose]
        if order != "asc":
            files.reverse()
        page, more = _page(files, limit, after)
        return {"object": "list", "data": [f.view(self.emu) for f in page], "has_more": more}

    # ---- batches -----------------------------------------------------------------------------------------
    def create(self, input_file_id, endpoint, window, metadata=None, label: str | None = None,
               now: float | None = None) -> dict:
        """Create a batch of an uploaded file's requests and draw its whole plan (see the module docstring)."""
        now = self._now(now)
        if not isinstance(input_file_id, str) or not input_file_id:
            raise _bad("'input_file_id' : must be the id of an uploaded file", "input_file_id")
        if endpoint != ENDPOINT:
            raise _bad(f"'endpoint' : must be '{ENDPOINT}' (the one endpoint the Batch API serves), got "
                       f"{endpoint!r}", "endpoint")
        seconds = completion_window(window)
        if metadata is not None and not (isinstance(metadata, dict) and all(isinstance(v, str)
                                                                            for v in metadata.values())):
            raise _bad("'metadata' : must be an object of strings", "metadata")
        f = self._file(input_file_id)
        if f.purpose != INPUT:
            raise _bad(f"'input_file_id' : file `{input_file_id}` has purpose {f.purpose!r}, not 'batch'",
                       "input_file_id")
        requests = [] if f.errors else f.requests
        bodies = [b for _, b in requests]
        job = Job("batch_" + self._id("batch"), len(self.jobs), f.id, window, seconds, metadata, label, now,
                  self._n["req"], list(f.errors), [c for c, _ in requests], [b["model"] for b in bodies],
                  [completion_cap(b)[1] for b in bodies],
                  np.array([approx_prompt_tokens(b["messages"]) + tool_tokens(b) for b in bodies], dtype=float),
                  np.empty(0), [Shape(b) for b in bodies])
        self._n["req"] += len(requests)
        if f.errors:
            job.settled = True  # failed: nothing runs, no files
        else:
            self._plan(job)
        self.jobs[job.id] = job
        return job.view(self.emu, now)

    def _plan(self, job: Job) -> None:
        """Draw the job as the simulator's batch lane does: start delay, speed, answer lengths, failures, then
        the answers' service times (usage)."""
        rng, lane, n = self.rng, self.emu.spec.org.batch, len(job.custom_ids)
        job.start = job.created + float(lane.start_delays(rng, 1)[0])
        speed = float(lane.speeds(rng, 1)[0])
        cap = np.array([DEFAULT_MAX_TOKENS if c is None else c for c in job.caps], dtype=float)
        job.completion = cap.copy()
        least = np.array([least_tokens(s) for s in job.shapes], dtype=float)  # (a structured answer's fewest)
        models = np.array(job.models)
        for m in dict.fromkeys(job.models):  # as chat answers: the scenario's lengths for the model, capped
            dist = self.emu.answer_lengths(m)
            if dist is not None:
                at = np.flatnonzero(models == m)
                sampled = np.maximum(least[at], np.maximum(0, np.round(dist.sample(rng, len(at)))))
                job.completion[at] = np.minimum(cap[at], sampled)
        job.cut = least > job.completion  # (written to its cap, unfinished: Groq's validation fails it)
        job.finish = job.start + np.cumsum(job.prompt + job.completion) / speed
        job.failed = rng.random(n) < lane.request_failure
        z = rng.standard_normal((n, 2)).tolist()
        services = self.emu.services
        job.times = np.array([services[m].times(p, c, 0.0, z1, z2) for m, p, c, (z1, z2)
                              in zip(job.models, job.prompt.tolist(), job.completion.tolist(), z)]).reshape(n, 3)

    def batch(self, batch_id: str, now: float | None = None) -> dict:
        now = self._now(now)
        return self._job(batch_id).view(self.emu, now)

    def _job(self, batch_id: str) -> Job:
        job = self.jobs.get(batch_id)
        if job is None:
            raise _not_found("batch", batch_id)
        return job

    def cancel(self, batch_id: str, now: float | None = None) -> dict:
        """Cancel a batch: at once before it starts, else when the request in progress is done (what was done
        before is kept).  A 400 for a batch that has ended (a cancelled or cancelling one is answered as is)."""
        now = self._now(now)
        job = self._job(batch_id)
        status = job.status(now)
        if status in ("completed", "expired", "failed"):
            raise _bad(f"batch `{batch_id}` cannot be cancelled: it is {status}")
        if job.cancelling is None:
            job.cancelling = now
            in_progress = float(job.finish[np.searchsorted(job.finish, now, side="right")])
            job.cancelled = now if now < job.start else min(in_progress, job.deadline)
            self._settle(now)
        return job.view(self.emu, now)

    def list_batches(self, limit: str | None = None, after: str | None = None, now: float | None = None) -> dict:
        """Batches, newest first; a page of ``limit`` after the id ``after``, all without ``limit``."""
        now = self._now(now)
        page, more = _page(list(reversed(self.jobs.values())), limit, after)
        return {"object": "list", "data": [j.view(self.emu, now) for j in page], "has_more": more}

    # ---- ends, files, records ------------------------------------------------------------------------------
    def _settle(self, now: float) -> None:
        """Write the output and error files of the batches ended by ``now``, in the order they ended."""
        for job in sorted((j for j in self.jobs.values() if not j.settled and now >= j.end),
                          key=lambda j: (j.end, j.number)):
            out, err = self._lines(job)
            for lines, kind in ((out, "output"), (err, "error")):
                if lines:
                    f = File("file_" + self._id("file"), f"{job.id}_{kind}.jsonl", OUTPUT, job.end,
                             b"".join(lines))
                    self.files[f.id] = f
                    setattr(job, f"{kind}_file_id", f.id)
            job.settled = True

    def _lines(self, job: Job) -> tuple[list[bytes], list[bytes]]:
        """The output file's lines (answered requests) and the error file's (failed, expired, cancelled), in
        file order."""
        out, err, end, wall = [], [], job.end, self.emu.clock.wall
        failure = server_error(500).body
        for i, cid in enumerate(job.custom_ids):
            rid = self._id("req", job.first + i)
            line = {"id": "batch_req_" + rid, "custom_id": cid}
            if job.finish[i] > end:
                err.append(_jsonl({**line, "response": None, "error": NOT_RUN[job.final]}))
            elif job.failed[i] or job.cut[i]:
                body = failure if job.failed[i] else cut_short(job.shapes[i], int(job.completion[i])).body
                err.append(_jsonl({**line, "response": {"status_code": 500 if job.failed[i] else 400,
                                                        "request_id": "req_" + rid, "body": body}, "error": None}))
            else:
                out.append(_jsonl({**line, "response": {"status_code": 200, "request_id": "req_" + rid,
                                                        "body": self._answer(job, i, rid, wall)}, "error": None}))
        return out, err

    @staticmethod
    def _answer(job: Job, i: int, rid: str, wall) -> dict:
        """Request ``i``'s chat.completion, as the chat route answers it (``service_tier`` null: Groq's value
        in a batch answer is not on record, and the SDKs' types allow no ``batch``)."""
        q, p, c, total = usage_times(job.times[i].tolist())
        prompt, completion, cap = int(job.prompt[i]), int(job.completion[i]), job.caps[i]
        usage = {"queue_time": q, "prompt_tokens": prompt, "prompt_time": p, "completion_tokens": completion,
                 "completion_time": c, "total_tokens": prompt + completion, "total_time": total}
        message, finish = reply(job.shapes[i], completion, "call_" + rid, cap)
        return {"id": "chatcmpl-" + rid, "object": "chat.completion", "created": int(wall(float(job.finish[i]))),
                "model": job.models[i], "system_fingerprint": "fp_groqsim", "choices": [{
                    "index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
                "usage": usage, "usage_breakdown": None, "x_groq": {"id": "req_" + rid}, "service_tier": None}

    def rows(self, now: float, first_id: int = 0) -> list[tuple]:
        """Records rows (the emulator's columns, then ``submitted`` and ``job``) of the batch requests ended by
        ``now``: status 200 ``ok``, 500 ``error`` (request_failure), 400 ``bad_request`` (a JSON value its cap
        cut short, with the cap's completion tokens), or 0 (no answer) ``expired`` / ``cancelled``; ``created``
        and ``submitted`` the batch's creation, ``finished`` the request's end, times since the emulator's
        start; no limit charged, so ``admitted`` NaN and ``charged_tokens`` 0."""
        out, t0, nan = [], self.emu.clock.start, math.nan
        for job in self.jobs.values():
            if job.errors:
                continue
            end, created = job.end, job.created - t0
            ends = np.minimum(job.finish, end)
            for i in np.flatnonzero(ends <= now).tolist():
                ran = job.finish[i] <= end
                cut = ran and not job.failed[i] and job.cut[i]  # (written to its cap, as the chat route records it)
                ok = ran and not job.failed[i] and not cut
                status, outcome = ((200, "ok") if ok else (400, "bad_request") if cut else (500, "error") if ran
                                   else (0, job.final))
                q, p, c, total = usage_times(job.times[i].tolist() if ok else (nan, nan, nan))
                t = float(ends[i]) - t0
                out.append((first_id + len(out), job.label, job.models[i], "batch", status, outcome, "", created, t,
                            t - created, nan, 1, 0, int(job.prompt[i]), job.caps[i],
                            int(job.completion[i]) if ok or cut else 0, 0.0, 0.0, q, p, c, total,
                            "batch_req_" + self._id("req", job.first + i), "batch", "", created, job.number))
        return out


def _jsonl(obj: dict) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def _page(items: list, limit: str | None, after: str | None) -> tuple[list, bool]:
    """The items after the one whose id is ``after`` (from the first without), at most ``limit`` (all
    without), and whether more follow."""
    if after is not None:
        k = next((k for k, x in enumerate(items) if x.id == after), None)
        if k is None:
            raise _bad(f"'after' : no item `{after}` in this list", "after")
        items = items[k + 1:]
    if limit is None:
        return items, False
    try:
        n = int(limit)
        if n < 1:
            raise ValueError
    except ValueError:
        raise _bad(f"'limit' : must be an integer >= 1, got {limit!r}", "limit") from None
    return items[:n], len(items) > n
