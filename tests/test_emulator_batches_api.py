"""The emulator's Batch API (sim/emulator/batches.py) with every figure computed by hand: a batch lane without
randomness (start delay and speed with median = quantile, so exactly the median), answers of a fixed length, and
the times given to each call (``now=``), so a batch's status, counts, timestamps, files and records are known
to the second.  Object shapes are OpenAI's (the Batch API Groq mirrors): a batch's ``status`` goes
validating -> in_progress -> completed / expired, or cancelling -> cancelled, or failed at creation; its
``*_at`` fields are set once what they name has happened; ``request_counts`` total = completed + failed at the
end; an output file line is ``{id, custom_id, response: {status_code, request_id, body}, error}``, an error line
of a request never run ``{..., response: null, error: {code: batch_expired | batch_cancelled, message}}``.
The HTTP routes are driven in process (Starlette's TestClient, the real groq/openai SDKs on httpx's
ASGITransport)."""
from __future__ import annotations

import asyncio
import json
import math
import re
import uuid

import groq
import httpx
import numpy as np
import openai
import pandas as pd
import pytest
from starlette.testclient import TestClient

from sim.emulator import Emulator, build_app, parse_keys
from sim.emulator.batches import BatchError, Batches
from sim.scenario import scenario_from_dict
from tests.helpers import answer_text as text_of

FIXED = "openai/gpt-oss-20b"  # answers of exactly 7 tokens (a fixed completion_tokens), capped by max_tokens
EMPTY = "openai/gpt-oss-120b"  # answers of 0 tokens
CAPPED = "openai/gpt-oss-safeguard-20b"  # no answer lengths in the scenario: an answer is as long as its cap
CHAT = "/v1/chat/completions"
ID = re.compile(r"^(file|batch|batch_req|req|chatcmpl)[_-]?[0-9a-f]{26}$")
DAY = 86_400.0


def lane_spec(start="10m", speed=10.0, failure=0.0):
    """A free-tier org whose batch lane has no randomness: every job starts ``start`` after its creation and
    runs ``speed`` tokens a second."""
    client = {"arrival": {"kind": "poisson", "rate": 1}, "prompt_tokens": 20, "max_tokens": 32}
    data = {"scenario": {"name": "batch by hand", "duration": "2m", "seed": 1},
            "org": {"tier": "free", "batch": {"start_median": start, "start_p95": start, "speed_median": speed,
                                              "speed_p05": speed, "request_failure": failure}},
            "clients": [{"name": "a", "model": FIXED, "completion_tokens": 7, **client},
                        {"name": "b", "model": EMPTY, "completion_tokens": 0, **client}]}
    return scenario_from_dict(data, source="<test>").spec()


def line(i, model=FIXED, max_tokens: int | None = 20, chars=28, **extra) -> dict:
    """Request ``i``: 28 characters make 3 + 3 + 7 = 13 prompt tokens."""
    body = {"model": model, "messages": [{"role": "user", "content": "x" * chars}], **extra}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return {"custom_id": f"r{i}", "method": "POST", "url": CHAT, "body": body}


def jsonl(objs) -> bytes:
    return "".join((o if isinstance(o, str) else json.dumps(o)) + "\n" for o in objs).encode()


def lines_of(data: bytes) -> list[dict]:
    assert data.endswith(b"\n")
    return [json.loads(x) for x in data.decode().splitlines()]


class Org:
    """An emulator with a stopped clock, its Batch API, and helpers at given limiter times."""

    def __init__(self, parquet_path=None, **lane):
        self.emu = Emulator(lane_spec(**lane), time_scale=1, parquet_path=parquet_path)
        self.t0 = self.emu.clock.now()
        self.now = self.t0
        self.emu.clock.now = lambda: self.now
        self.store = Batches(self.emu)

    def wall(self, t: float) -> int:
        return int(self.emu.clock.wall(t))

    def batch(self, lines, window="24h", at=None, **kw) -> dict:
        at = self.t0 if at is None else at
        f = self.store.upload(jsonl(lines), "in.jsonl", "batch", now=at)
        return self.store.create(f["id"], CHAT, window, now=at, **kw)

    def get(self, b, dt: float) -> dict:
        return self.store.batch(b["id"], now=self.t0 + dt)


def refused(call, status: int, message: str, param=None, code=None):
    with pytest.raises(BatchError) as e:
        call()
    err = {"message": message, "type": "invalid_request_error", **({"param": param} if param else {}),
           **({"code": code} if code else {})}
    assert (e.value.err.status, e.value.err.body) == (status, {"error": err})
    assert str(e.value) == message
    return e.value


# ---- a batch's life, to the second -----------------------------------------------------------------------

def test_a_batch_runs_its_requests_one_after_another_at_the_lanes_speed():
    """3 requests of 13 + 7 = 20 tokens at 10 tokens/s, 10 minutes after the creation: done at +602, +604, +606 s."""
    org = Org()
    b = org.batch([line(i) for i in range(3)], metadata={"k": "v"})
    t0, W = org.t0, org.wall
    assert ID.match(b["id"]) and b["id"].startswith("batch_")
    assert b == {"id": b["id"], "object": "batch", "endpoint": CHAT, "errors": None,
                 "input_file_id": b["input_file_id"], "completion_window": "24h", "status": "validating",
                 "output_file_id": None, "error_file_id": None, "created_at": W(t0), "in_progress_at": None,
                 "expires_at": W(t0 + DAY), "finalizing_at": None, "completed_at": None, "failed_at": None,
                 "expired_at": None, "cancelling_at": None, "cancelled_at": None,
                 "request_counts": {"total": 3, "completed": 0, "failed": 0}, "metadata": {"k": "v"}}
    assert org.get(b, 599.999)["status"] == "validating" and org.get(b, 599.999)["in_progress_at"] is None
    at_start = org.get(b, 600)
    assert (at_start["status"], at_start["in_progress_at"]) == ("in_progress", W(t0 + 600))
    assert at_start["request_counts"] == {"total": 3, "completed": 0, "failed": 0}
    assert [org.get(b, dt)["request_counts"]["completed"] for dt in (601.999, 602, 603.999, 604)] == [0, 1, 1, 2]
    running = org.get(b, 605)
    assert running["completed_at"] is running["finalizing_at"] is running["output_file_id"] is None
    done = org.get(b, 606)  # the last request done: the batch is completed at that very second
    assert done["status"] == "completed" and done["request_counts"] == {"total": 3, "completed": 3, "failed": 0}
    assert done["finalizing_at"] == done["completed_at"] == W(t0 + 606) and done["in_progress_at"] == W(t0 + 600)
    assert done["expired_at"] is done["failed_at"] is done["cancelled_at"] is done["cancelling_at"] is None
    assert done["error_file_id"] is None and ID.match(done["output_file_id"])  # nothing failed: no error file
    out = org.store.file(done["output_file_id"], now=t0 + 606)
    content = org.store.content(done["output_file_id"], now=t0 + 606)
    assert out == {"id": done["output_file_id"], "object": "file", "bytes": len(content), "created_at": W(t0 + 606),
                   "filename": f"{b['id']}_output.jsonl", "purpose": "batch_output", "status": "processed"}
    answers = lines_of(content)
    assert [x["custom_id"] for x in answers] == ["r0", "r1", "r2"]
    usages = [x["response"]["body"]["usage"] for x in answers]
    for i, x in enumerate(answers):
        n = x["id"][len("batch_req_"):]
        assert ID.match(x["id"]) and x["error"] is None and set(x) == {"id", "custom_id", "response", "error"}
        assert x["response"]["status_code"] == 200 and x["response"]["request_id"] == "req_" + n
        body = x["response"]["body"]
        u = body.pop("usage")
        assert body == {"id": "chatcmpl-" + n, "object": "chat.completion", "created": W(t0 + 602 + 2 * i),
                        "model": FIXED, "system_fingerprint": "fp_groqsim", "choices": [{
                            "index": 0, "message": {"role": "assistant", "content": text_of(7)}, "logprobs": None,
                            "finish_reason": "stop"}], "usage_breakdown": None, "x_groq": {"id": "req_" + n},
                        "service_tier": None}
        assert (u["prompt_tokens"], u["completion_tokens"], u["total_tokens"]) == (13, 7, 20)
        assert u["total_time"] == pytest.approx(u["prompt_time"] + u["completion_time"], abs=2e-9)
        assert u["queue_time"] > 0 and u["prompt_time"] > 0 and u["completion_time"] > 0
    assert len({x["id"] for x in answers}) == 3
    # the records: one row a request, finished when it was done; no limit charged, one attempt, no 429
    org.now = t0 + 606
    rec = org.emu.records()
    assert len(rec) == 3 and rec["id"].tolist() == [0, 1, 2]
    start = org.emu.clock.start
    for i, row in enumerate(rec.itertuples()):
        assert pd.isna(row.client) and (row.model, row.endpoint, row.status, row.outcome, row.refused_by) == (
            FIXED, "batch", 200, "ok", "")
        assert row.created == row.submitted == t0 - start and row.finished == pytest.approx(t0 + 602 + 2 * i - start)
        assert row.latency == pytest.approx(602 + 2 * i) and math.isnan(row.admitted)
        assert (row.attempts, row.n429, row.prompt_tokens, row.max_tokens, row.completion_tokens) == (1, 0, 13, 20, 7)
        assert (row.audio_seconds, row.charged_tokens, row.service_tier, row.job) == (0.0, 0.0, "batch", 0)
        assert row.request_id == answers[i]["id"]
        assert row.total_time == usages[i]["total_time"] and row.queue_time == usages[i]["queue_time"]
    assert org.store.rows(t0 + 606)[0][0] == 0 and org.store.rows(t0 + 606, 5)[0][0] == 5  # ids from first_id


def test_answers_are_the_scenarios_lengths_capped_by_each_lines_max_tokens():
    """FIXED answers 7 tokens (5 with max_tokens 5: cut, "length"); CAPPED has no answer lengths: as long as
    its cap, 1 024 without one; EMPTY answers 0 tokens."""
    org = Org(speed=1e6)
    b = org.batch([line(0, max_tokens=5), line(1, max_tokens=None), line(2, model=CAPPED, max_tokens=9),
                   line(3, model=CAPPED, max_tokens=None), line(4, model=EMPTY), line(5, max_tokens=7)])
    done = org.get(b, DAY)
    bodies = [x["response"]["body"] for x in lines_of(org.store.content(done["output_file_id"], now=org.t0 + DAY))]
    assert [x["usage"]["completion_tokens"] for x in bodies] == [5, 7, 9, 1024, 0, 7]
    assert [x["choices"][0]["finish_reason"] for x in bodies] == ["length", "stop", "length", "stop", "stop", "length"]
    assert [x["model"] for x in bodies] == [FIXED, FIXED, CAPPED, CAPPED, EMPTY, FIXED]
    assert bodies[4]["choices"][0]["message"]["content"] == "" and bodies[2]["choices"][0]["message"][
        "content"] == text_of(9)
    org.now = org.t0 + DAY
    caps = org.emu.records()["max_tokens"].tolist()[:3]
    assert caps[0] == 5 and math.isnan(caps[1]) and caps[2] == 9  # a line without max_tokens: none recorded


def test_a_line_gets_the_shape_it_asks_for_and_a_value_its_cap_cuts_short_is_groqs_400():
    """As the chat route answers: a ``json_schema`` line a JSON value of its schema (its pattern followed), at
    least as many tokens as the value needs (a list of 12 integers: 12 > the 7 FIXED answers); a line that
    requires a tool a call of it, its tools counted in the prompt; text otherwise.  A value that needs more
    than the line's cap is processed to the cap and fails: Groq's 400 ``json_validate_failed`` in the error
    file, a ``bad_request`` record of the cap's tokens, counted failed."""
    import jsonschema  # (here: the emulator loads it lazily too)
    schema = {"type": "object", "required": ["code", "ns"], "additionalProperties": False, "properties": {
        "code": {"type": "string", "pattern": "^[A-Z]{2}-\\d{3}$"},
        "ns": {"type": "array", "items": {"type": "integer"}, "minItems": 12}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
    org = Org(speed=1e6)
    b = org.batch([line(0, response_format=fmt), line(1, tools=[tool], tool_choice="required"), line(2),
                   line(3, max_tokens=10, response_format=fmt)])
    done = org.get(b, DAY)
    assert done["status"] == "completed" and done["request_counts"] == {"total": 4, "completed": 3, "failed": 1}
    out = {x["custom_id"]: x["response"]["body"] for x in lines_of(
        org.store.content(done["output_file_id"], now=org.t0 + DAY))}
    value = json.loads(out["r0"]["choices"][0]["message"]["content"])
    jsonschema.validate(value, schema)
    assert value["code"] == "AA-000" and out["r0"]["choices"][0]["finish_reason"] == "stop"
    assert out["r0"]["usage"]["completion_tokens"] == 1 + 1 + 1 + 12  # (a key, a string; a key, 12 numbers)
    call = out["r1"]["choices"][0]["message"]["tool_calls"][0]
    assert call["function"]["name"] == "lookup" and json.loads(call["function"]["arguments"])["city"]
    assert out["r1"]["choices"][0]["finish_reason"] == "tool_calls"
    assert out["r1"]["choices"][0]["message"]["content"] is None
    assert out["r1"]["usage"]["prompt_tokens"] > out["r2"]["usage"]["prompt_tokens"] == 13  # (the tool counted)
    assert out["r2"]["choices"][0]["message"]["content"] == text_of(7)
    from groq.types.chat import ChatCompletion as GroqCompletion
    from openai.types.chat import ChatCompletion as OpenAICompletion
    for body in out.values():  # (each parses as both SDKs' ChatCompletion, its tool call too)
        assert OpenAICompletion.model_validate(body).id == body["id"]
        assert GroqCompletion.model_validate(body).choices[0].finish_reason in ("stop", "tool_calls")
    [cut] = lines_of(org.store.content(done["error_file_id"], now=org.t0 + DAY))
    assert cut["custom_id"] == "r3" and cut["response"]["status_code"] == 400 and cut["error"] is None
    err = cut["response"]["body"]["error"]
    assert (err["type"], err["code"]) == ("invalid_request_error", "json_validate_failed")
    assert err["message"] == ("Failed to generate JSON. Please adjust your prompt. See 'failed_generation' for "
                              "more details.") and err["failed_generation"].startswith('{"code": "AA-000", "ns": [')
    org.now = org.t0 + DAY
    rec = org.emu.records().set_index("request_id")
    row = rec.loc[cut["id"]]
    assert (row["status"], row["outcome"], row["completion_tokens"]) == (400, "bad_request", 10)
    assert math.isnan(row["total_time"])


def test_a_line_with_a_malformed_tool_fails_the_batch_as_the_chat_route_refuses_it():
    org = Org()
    b = org.batch([line(0), line(1, tools="lookup")])
    assert b["status"] == "failed"
    [e] = b["errors"]["data"]
    assert (e["line"], e["param"]) == (2, "body.tools") and e["message"].startswith("'tools' : each tool is")


def test_a_batch_that_misses_its_window_expires_with_the_requests_done_by_then():
    """20 000 s a request (20 tokens at 0.001/s) from +600 s: 4 done (+80 600 s) in the 24 h window, 2 expired."""
    org = Org(speed=0.001)
    b = org.batch([line(i) for i in range(6)])
    t0, W = org.t0, org.wall
    before = org.get(b, DAY - 0.5)
    assert before["status"] == "in_progress" and before["request_counts"] == {"total": 6, "completed": 4, "failed": 0}
    assert before["expired_at"] is None and before["output_file_id"] is None
    end = org.get(b, DAY)
    assert end["status"] == "expired" and end["request_counts"] == {"total": 6, "completed": 4, "failed": 2}
    assert end["expired_at"] == end["expires_at"] == W(t0 + DAY)
    assert end["completed_at"] is end["finalizing_at"] is end["cancelled_at"] is None
    out = lines_of(org.store.content(end["output_file_id"], now=t0 + DAY))
    err = lines_of(org.store.content(end["error_file_id"], now=t0 + DAY))
    assert [x["custom_id"] for x in out] == ["r0", "r1", "r2", "r3"]
    assert [x["response"]["body"]["created"] for x in out] == [W(t0 + 600 + 20_000 * k) for k in (1, 2, 3, 4)]
    assert err == [{"id": x["id"], "custom_id": f"r{i}", "response": None, "error": {
        "code": "batch_expired", "message": "the batch's completion window ended before this request was processed"}}
        for i, x in zip((4, 5), err)]
    assert org.store.file(end["error_file_id"], now=t0 + DAY)["filename"] == f"{b['id']}_error.jsonl"
    org.now = t0 + DAY
    rec = org.emu.records()
    assert rec["status"].tolist() == [200] * 4 + [0] * 2 and rec["outcome"].tolist() == ["ok"] * 4 + ["expired"] * 2
    late = rec.iloc[4:]
    assert (late["finished"] == t0 + DAY - org.emu.clock.start).all() and (late["completion_tokens"] == 0).all()
    assert late[["queue_time", "prompt_time", "completion_time", "total_time"]].isna().all().all()
    assert np.allclose(late["latency"], DAY) and (late["max_tokens"] == 20).all()
    org.now = t0 + DAY - 1
    assert org.emu.records()["status"].tolist() == [200] * 4  # an expired request's row once the window ends


def test_a_last_request_done_at_the_deadline_completes_and_a_start_at_it_expires_unstarted():
    # 13 + 21 587 = 21 600 tokens at 0.25 tokens/s from the creation: done exactly 86 400 s later
    org = Org(start=0, speed=0.25)
    b = org.batch([line(0, model=CAPPED, max_tokens=21_587)])
    end = org.get(b, DAY)
    assert end["status"] == "completed" and end["completed_at"] == end["expires_at"] and end["error_file_id"] is None
    assert org.get(b, DAY - 0.001)["status"] == "in_progress"
    org = Org(start="24h")  # the job would start when its window ends: it never starts
    b = org.batch([line(0)])
    assert org.get(b, DAY - 0.001)["status"] == "validating"
    end = org.get(b, DAY)
    assert (end["status"], end["in_progress_at"], end["expired_at"]) == ("expired", None, org.wall(org.t0 + DAY))
    assert end["request_counts"] == {"total": 1, "completed": 0, "failed": 1} and end["output_file_id"] is None


def test_failed_requests_are_500_lines_in_the_error_file_and_error_rows():
    org = Org(failure=1.0)  # every request fails
    b = org.batch([line(i) for i in range(2)])
    end = org.get(b, 604)
    assert end["status"] == "completed" and end["request_counts"] == {"total": 2, "completed": 0, "failed": 2}
    assert end["output_file_id"] is None
    err = lines_of(org.store.content(end["error_file_id"], now=org.t0 + 604))
    for i, x in enumerate(err):
        n = x["id"][len("batch_req_"):]
        assert x == {"id": "batch_req_" + n, "custom_id": f"r{i}", "response": {
            "status_code": 500, "request_id": "req_" + n, "body": {"error": {
                "message": "Internal Server Error", "type": "internal_server_error", "code": "internal_server_error"}}},
            "error": None}
    assert org.get(b, 602)["request_counts"] == {"total": 2, "completed": 0, "failed": 1}  # counted once processed
    org.now = org.t0 + 604
    rec = org.emu.records()
    assert rec["status"].tolist() == [500, 500] and rec["outcome"].tolist() == ["error", "error"]
    assert (rec["completion_tokens"] == 0).all() and rec["total_time"].isna().all()
    assert rec["finished"].tolist() == pytest.approx([org.t0 + 602 - org.emu.clock.start,
                                                      org.t0 + 604 - org.emu.clock.start])


# ---- cancelling -------------------------------------------------------------------------------------------

def test_a_cancel_before_the_start_takes_effect_at_once():
    org = Org()
    b = org.batch([line(i) for i in range(3)])
    c = org.store.cancel(b["id"], now=org.t0 + 100)
    assert c["status"] == "cancelled" and c["cancelling_at"] == c["cancelled_at"] == org.wall(org.t0 + 100)
    assert c["in_progress_at"] is None and c["request_counts"] == {"total": 3, "completed": 0, "failed": 3}
    assert c["output_file_id"] is None
    err = lines_of(org.store.content(c["error_file_id"], now=org.t0 + 100))
    assert [x["error"] for x in err] == [{"code": "batch_cancelled", "message": "the batch was cancelled before this "
                                                                                 "request was processed"}] * 3
    assert org.get(b, 2 * DAY)["status"] == "cancelled"
    org.now = org.t0 + 100
    assert org.emu.records()["outcome"].tolist() == ["cancelled"] * 3


def test_a_cancel_at_the_start_waits_for_the_request_in_progress():
    org = Org()
    b = org.batch([line(i) for i in range(4)])
    c = org.store.cancel(b["id"], now=org.t0 + 600)  # request 0 in progress until +602
    assert c["status"] == "cancelling" and c["cancelling_at"] == org.wall(org.t0 + 600) and c["cancelled_at"] is None
    assert c["in_progress_at"] == org.wall(org.t0 + 600)
    again = org.store.cancel(b["id"], now=org.t0 + 601)  # asked again: answered as is
    assert again["status"] == "cancelling" and again["cancelling_at"] == c["cancelling_at"]
    assert org.get(b, 601.999)["status"] == "cancelling"
    end = org.get(b, 602)
    assert end["status"] == "cancelled" and end["cancelled_at"] == org.wall(org.t0 + 602)
    assert end["request_counts"] == {"total": 4, "completed": 1, "failed": 3} and end["completed_at"] is None
    assert len(lines_of(org.store.content(end["output_file_id"], now=org.t0 + 602))) == 1


def test_a_cancel_as_a_request_is_done_keeps_it_and_waits_for_the_next():
    org = Org()
    b = org.batch([line(i) for i in range(4)])
    c = org.store.cancel(b["id"], now=org.t0 + 604)  # request 1 done at +604; request 2 in progress until +606
    assert c["status"] == "cancelling" and c["request_counts"]["completed"] == 2
    end = org.get(b, 606)
    assert end["status"] == "cancelled" and end["request_counts"] == {"total": 4, "completed": 3, "failed": 1}


def test_a_cancel_whose_request_in_progress_outlasts_the_window_ends_at_the_deadline():
    org = Org(speed=0.001)  # requests done at +20 600, +40 600, ... +80 600, then +100 600 after the deadline
    b = org.batch([line(i) for i in range(6)])
    c = org.store.cancel(b["id"], now=org.t0 + 85_000)
    assert c["status"] == "cancelling"
    end = org.get(b, DAY)
    assert end["status"] == "cancelled" and end["cancelled_at"] == org.wall(org.t0 + DAY)
    assert end["expired_at"] is None and end["request_counts"] == {"total": 6, "completed": 4, "failed": 2}


def test_a_batch_that_has_ended_cannot_be_cancelled():
    org = Org()
    done = org.batch([line(0)])
    org.get(done, 602)
    refused(lambda: org.store.cancel(done["id"], now=org.t0 + 602), 400,
            f"batch `{done['id']}` cannot be cancelled: it is completed")
    slow = Org(speed=0.001)
    b = slow.batch([line(i) for i in range(6)])
    refused(lambda: slow.store.cancel(b["id"], now=slow.t0 + DAY), 400,
            f"batch `{b['id']}` cannot be cancelled: it is expired")
    failed = org.batch([line(0, max_tokens=0)])
    refused(lambda: org.store.cancel(failed["id"], now=org.t0), 400,
            f"batch `{failed['id']}` cannot be cancelled: it is failed")


# ---- uploads and invalid lines ---------------------------------------------------------------------------

def test_an_upload_is_a_file_object_and_its_ids_are_unique():
    org = Org()
    f = org.store.upload(b'{"a": 1}\n', "a.jsonl", "batch", now=org.t0)
    assert f == {"id": f["id"], "object": "file", "bytes": 9, "created_at": org.wall(org.t0), "filename": "a.jsonl",
                 "purpose": "batch", "status": "processed"}
    g = org.store.upload(b'{"a": 1}\n', None, "batch", now=org.t0)
    assert g["filename"] == "batch.jsonl" and ID.match(f["id"]) and ID.match(g["id"]) and f["id"] != g["id"]
    b1, b2 = org.batch([line(i) for i in range(3)]), org.batch([line(i) for i in range(3)])
    assert ID.match(b1["id"]) and b1["id"] != b2["id"]
    ids = []
    for b in (b1, b2):
        end = org.get(b, 606)
        ids += [x["id"] for x in lines_of(org.store.content(end["output_file_id"], now=org.t0 + 606))]
    assert len(set(ids)) == 6 and all(ID.match(x) for x in ids)
    org.now = org.t0 + 606
    assert org.emu.records()["job"].tolist() == [0, 0, 0, 1, 1, 1]


def test_an_upload_is_refused_unless_it_is_a_batch_jsonl_file_within_the_caps():
    org = Org()
    up = org.store.upload
    refused(lambda: up(jsonl([line(0)]), "a", "fine-tune"), 400, "'purpose' : must be 'batch', got 'fine-tune'",
            "purpose")
    data = jsonl([line(0), line(1)])
    org.store.max_bytes = len(data)
    assert up(data, "a", "batch")["bytes"] == len(data)  # at the cap: accepted
    org.store.max_bytes = len(data) - 1
    refused(lambda: up(data, "a", "batch"), 400, f"the file is over {len(data) - 1:,} bytes, the most a batch file "
                                                 "holds", "file")
    org.store.max_bytes, org.store.max_requests = Batches.max_bytes, 2
    assert up(data, "a", "batch")["purpose"] == "batch"  # 2 requests: at the cap
    refused(lambda: up(jsonl([line(i) for i in range(3)]), "a", "batch"), 400,
            "the file has 3 requests; a batch file holds at most 2", "file")
    org.store.max_requests = Batches.max_requests
    refused(lambda: up(b"\xff\xfe\x00", "a", "batch"), 400, "the file is not JSONL: it is not UTF-8 text", "file")
    for empty in (b"", b"\n \n\t\n"):
        refused(lambda d=empty: up(d, "a", "batch"), 400,
                "the file is empty: a batch file is JSONL, one request per line", "file")
    refused(lambda: up(b"hello\nworld\n", "a", "batch"), 400, "the file is not JSONL: no line is JSON", "file")
    assert up(b"[1]\n", "a", "batch")["bytes"] == 4  # JSON, not a request: the batch made of it fails
    assert up(b"\xef\xbb\xbf" + jsonl([line(0)]), "a", "batch")["bytes"] > 3  # a byte-order mark is not a line


def test_each_invalid_line_is_named_with_its_number_code_and_param():
    org = Org()
    rows = [line(0), "[1]", "", {**line(2), "custom_id": 5}, {**line(3), "method": "GET", "custom_id": "dup"},
            {**line(4), "custom_id": "dup"}, {**line(5), "url": "/v1/embeddings"}, {**line(6), "body": "hi"},
            line(7, model="nope"), line(8, max_tokens=0), line(9, model="whisper-large-v3"),
            line(10, stream="yes"), line(11, service_tier="flex"), "not json"]
    b = org.batch(rows)
    assert b["status"] == "failed" and b["failed_at"] == b["created_at"] == org.wall(org.t0)
    assert b["request_counts"] == {"total": 0, "completed": 0, "failed": 0}
    assert b["in_progress_at"] is b["output_file_id"] is b["error_file_id"] is None
    assert b["errors"]["object"] == "list"
    assert b["errors"]["data"] == [
        {"code": "invalid_json_line", "line": 2, "message": "the line is not a JSON object", "param": None},
        {"code": "invalid_request", "line": 4, "message": "'custom_id' : must be a string", "param": "custom_id"},
        {"code": "invalid_request", "line": 5, "message": "'method' : must be 'POST'", "param": "method"},
        {"code": "duplicate_custom_id", "line": 6, "message": "'custom_id' : 'dup' is on an earlier line too",
         "param": "custom_id"},
        {"code": "url_mismatch", "line": 7, "message": f"'url' : must be '{CHAT}', the batch's endpoint",
         "param": "url"},
        {"code": "invalid_request", "line": 8, "message": "'body' : must be a chat completion request object",
         "param": "body"},
        {"code": "model_not_found", "line": 9, "message": "The model `nope` does not exist or you do not have access "
                                                          "to it.", "param": "body.model"},
        {"code": "invalid_request", "line": 10, "message": "'max_tokens' must be an integer from 1 to 10,000,000",
         "param": "body.max_tokens"},
        {"code": "invalid_request", "line": 11, "message": "model `whisper-large-v3` does not support chat "
                                                           "completions", "param": "body.model"},
        {"code": "invalid_request", "line": 12, "message": "'stream' : must be a boolean (true or false)",
         "param": "body.stream"},
        # line 13 asks for flex, which a free org cannot use on chat: a line's tier is the batch's, not checked
        {"code": "invalid_json_line", "line": 14, "message": "the line is not a JSON object", "param": None}]
    assert org.get(b, 2 * DAY)["status"] == "failed" and org.store.rows(org.t0 + 2 * DAY) == []
    org.now = org.t0 + 2 * DAY
    assert len(org.emu.records()) == 0
    ok = org.batch([line(0, service_tier="flex")])
    assert org.get(ok, 602)["status"] == "completed"


# ---- creating a batch --------------------------------------------------------------------------------------

def test_a_batch_is_refused_without_a_valid_file_endpoint_window_or_metadata():
    org = Org()
    fid = org.store.upload(jsonl([line(0)]), "a", "batch")["id"]
    create = org.store.create
    for bad in (None, "", 5):
        refused(lambda x=bad: create(x, CHAT, "24h"), 400, "'input_file_id' : must be the id of an uploaded file",
                "input_file_id")
    refused(lambda: create(fid, "/v1/embeddings", "24h"), 400,
            f"'endpoint' : must be '{CHAT}' (the one endpoint the Batch API serves), got '/v1/embeddings'", "endpoint")
    for window in ("23h59m59s", "7d1s", "1h"):
        refused(lambda w=window: create(fid, CHAT, w), 400,
                f"'completion_window' : must be from 1d to 7d, got {window}", "completion_window")
    for window in ("soon", 86_400, None):
        refused(lambda w=window: create(fid, CHAT, w), 400,
                f"'completion_window' : {window!r} is not a duration (such as 24h or 7d)", "completion_window")
    assert [create(fid, CHAT, w)["completion_window"] for w in ("24h", "1d", "168h", "7d")] == ["24h", "1d", "168h",
                                                                                                  "7d"]
    for metadata in ({"a": 1}, ["a"], "a"):
        refused(lambda m=metadata: create(fid, CHAT, "24h", m), 400, "'metadata' : must be an object of strings",
                "metadata")
    assert create(fid, CHAT, "24h", {})["metadata"] == {} and create(fid, CHAT, "24h")["metadata"] is None
    refused(lambda: create("file_nope", CHAT, "24h"), 404,
            "The file `file_nope` does not exist or you do not have access to it.", code="not_found")
    b = org.batch([line(0)])
    out = org.get(b, 602)["output_file_id"]
    refused(lambda: create(out, CHAT, "24h", now=org.t0 + 602), 400,
            f"'input_file_id' : file `{out}` has purpose 'batch_output', not 'batch'", "input_file_id")
    assert org.batch([line(0)], window="7d")["expires_at"] == org.wall(org.t0 + 7 * DAY)


def test_unknown_ids_are_404s_and_a_deleted_input_leaves_its_batch_running():
    org = Org()
    for call, kind in ((org.store.file, "file"), (org.store.content, "file"), (org.store.delete, "file"),
                       (org.store.batch, "batch"), (org.store.cancel, "batch")):
        refused(lambda c=call: c("x_1"), 404, f"The {kind} `x_1` does not exist or you do not have access to it.",
                code="not_found")
    b = org.batch([line(0)])
    assert org.store.delete(b["input_file_id"], now=org.t0) == {"id": b["input_file_id"], "object": "file",
                                                                "deleted": True}
    refused(lambda: org.store.file(b["input_file_id"]), 404,
            f"The file `{b['input_file_id']}` does not exist or you do not have access to it.", code="not_found")
    assert org.get(b, 602)["status"] == "completed"


# ---- lists and pages -------------------------------------------------------------------------------------------

def test_files_are_listed_newest_first_by_purpose_and_in_pages():
    org = Org()
    b = org.batch([line(0)])
    second = org.store.upload(jsonl([line(1)]), "b", "batch", now=org.t0 + 1)["id"]
    listing = org.store.list_files(now=org.t0 + 602)  # the batch has ended: its output file is listed
    ids = [f["id"] for f in listing["data"]]
    out = org.get(b, 602)["output_file_id"]
    assert ids == [out, second, b["input_file_id"]] and listing == {
        "object": "list", "data": listing["data"], "has_more": False}
    assert [f["id"] for f in org.store.list_files(order="desc")["data"]] == ids
    assert [f["id"] for f in org.store.list_files(order="asc")["data"]] == ids[::-1]
    assert [f["id"] for f in org.store.list_files(purpose="batch")["data"]] == ids[1:]
    assert [f["id"] for f in org.store.list_files(purpose="batch_output")["data"]] == [out]
    refused(lambda: org.store.list_files(order="up"), 400, "'order' : must be 'asc' or 'desc', got 'up'", "order")
    page = org.store.list_files(limit="2")
    assert [f["id"] for f in page["data"]] == ids[:2] and page["has_more"] is True
    page = org.store.list_files(limit="2", after=ids[0])
    assert [f["id"] for f in page["data"]] == ids[1:] and page["has_more"] is False  # exactly 2 left
    page = org.store.list_files(limit="1", after=ids[1])
    assert [f["id"] for f in page["data"]] == ids[2:] and page["has_more"] is False
    assert org.store.list_files(after=ids[2]) == {"object": "list", "data": [], "has_more": False}
    refused(lambda: org.store.list_files(after="file_x"), 400, "'after' : no item `file_x` in this list", "after")
    for limit in ("0", "-1", "two", "1.5"):
        refused(lambda x=limit: org.store.list_files(limit=x), 400, f"'limit' : must be an integer >= 1, got {limit!r}",
                "limit")


def test_batches_are_listed_newest_first_in_pages():
    org = Org()
    bs = [org.batch([line(0)]) for _ in range(3)]
    ids = [b["id"] for b in reversed(bs)]
    assert [b["id"] for b in org.store.list_batches()["data"]] == ids
    assert org.store.list_batches()["has_more"] is False
    page = org.store.list_batches(limit="1", after=ids[0], now=org.t0 + 602)
    assert [b["id"] for b in page["data"]] == ids[1:2] and page["has_more"] is True
    assert page["data"][0]["status"] == "completed"  # each batch as it is at the time of the call


def test_every_call_first_writes_the_files_of_the_batches_ended_by_then():
    """A batch's output file exists as soon as the batch has ended, whichever call comes first: twin
    organizations (the same seed and id prefix), one asking the batch for its output file's id, the others
    asking for that file straight away (and, a moment before the end, not finding it)."""
    prefix = uuid.uuid4().hex[:16]

    def twin():
        org = Org()
        org.store._prefix = prefix  # (ids: the store's random prefix, then a count)
        org.batch([line(i) for i in range(2)])  # done at +604
        return org
    first = twin()
    out = first.store.list_batches(now=first.t0 + 604)["data"][0]["output_file_id"]
    assert out is not None
    for ask in ("file", "content", "delete"):
        org = twin()
        got = getattr(org.store, ask)(out, now=org.t0 + 604)
        if ask == "file":
            assert got["purpose"] == "batch_output" and got["created_at"] == org.wall(org.t0 + 604)
        elif ask == "content":
            assert [x["custom_id"] for x in lines_of(got)] == ["r0", "r1"]
        else:
            assert got == {"id": out, "object": "file", "deleted": True}
    early = twin()
    refused(lambda: early.store.file(out, now=early.t0 + 603.9), 404,
            f"The file `{out}` does not exist or you do not have access to it.", code="not_found")


def test_batches_ended_at_once_write_their_files_in_the_order_they_ended():
    org = Org()
    slow = org.batch([line(i) for i in range(5)])  # done at +610
    fast = org.batch([line(0)], at=org.t0 + 1)  # done at +603
    listing = org.store.list_files(order="asc", now=org.t0 + 700)["data"]
    outs = [f["filename"] for f in listing if f["purpose"] == "batch_output"]
    assert outs == [f"{fast['id']}_output.jsonl", f"{slow['id']}_output.jsonl"]
    assert [f["created_at"] for f in listing if f["purpose"] == "batch_output"] == [org.wall(org.t0 + 603),
                                                                                    org.wall(org.t0 + 610)]
    assert len(org.store.list_files(now=org.t0 + 800)["data"]) == 4  # written once


# ---- over HTTP, in process ---------------------------------------------------------------------------------

@pytest.fixture
def http():
    """http(org, keys) -> TestClient on the org's emulator (whose Batch API store the app must use)."""
    made = []

    def make(org: Org, **kw):
        if kw.get("keys"):
            org.emu.keys = kw["keys"]
        tc = TestClient(build_app(org.emu))  # (an exception reaching it: a traceback the live server would print)
        made.append(tc)
        return tc
    yield make
    for tc in made:
        tc.close()


def test_the_routes_serve_the_organizations_store_with_its_errors(http, monkeypatch, capsys):
    org = Org()
    b = org.batch([line(0)])  # made before the app: the app serves this very store
    tc = http(org, keys=parse_keys(["sk-a=team"]))
    auth = {"Authorization": "Bearer sk-a"}
    invalid = {"error": {"message": "Invalid API Key", "type": "invalid_request_error", "code": "invalid_api_key"}}
    for method, path in (("GET", "/files"), ("POST", "/files"), ("GET", f"/files/{b['input_file_id']}"),
                         ("DELETE", f"/files/{b['input_file_id']}"), ("GET", f"/files/{b['input_file_id']}/content"),
                         ("GET", "/batches"), ("POST", "/batches"), ("GET", f"/batches/{b['id']}"),
                         ("POST", f"/batches/{b['id']}/cancel")):
        r = tc.request(method, "/openai/v1" + path, headers={"Authorization": "Bearer nope"})
        assert (r.status_code, r.json()) == (401, invalid), path
    r = tc.get(f"/openai/v1/batches/{b['id']}", headers=auth)
    assert r.status_code == 200 and r.json()["id"] == b["id"] and r.json()["status"] == "validating"
    r = tc.get("/openai/v1/batches/batch_x", headers=auth)
    assert r.status_code == 404 and r.json() == {"error": {
        "message": "The batch `batch_x` does not exist or you do not have access to it.",
        "type": "invalid_request_error", "code": "not_found"}}
    r = tc.get(f"/openai/v1/files/{b['input_file_id']}/content", headers=auth)
    assert r.content == jsonl([line(0)]) and r.headers["content-type"] == "application/octet-stream"
    monkeypatch.setattr(org.store, "list_files", lambda *a: 1 / 0)
    r = tc.get("/openai/v1/files", headers=auth)
    assert r.status_code == 500 and r.json()["error"]["code"] == "internal_server_error"
    assert capsys.readouterr().err == ("groqsim serve: 500 on GET /openai/v1/files: ZeroDivisionError: division by "
                                       "zero\n")
    assert org.emu.rows == []  # Batch API calls are not requests to a model: never recorded


def test_uploads_and_creations_over_http(http):
    org = Org()
    tc = http(org)
    files = "/openai/v1/files"
    r = tc.post(files, content=b"x", headers={"content-type": "multipart/form-data; boundary=b"})
    assert (r.status_code, r.json()["error"]) == (400, {"message": "the body must be multipart/form-data",
                                                        "type": "invalid_request_error"})
    for form in ({"data": {"purpose": "batch"}}, {"data": {"purpose": "batch", "file": "a.jsonl"}}):
        r = tc.post(files, **form)
        assert (r.status_code, r.json()["error"]) == (400, {"message": "'file' : a file is required",
                                                            "type": "invalid_request_error", "param": "file"})
    data = jsonl([line(0), line(1)])
    org.store.max_bytes = len(data)
    r = tc.post(files, data={"purpose": "batch"}, files={"file": ("in.jsonl", data)})
    assert r.status_code == 200 and r.json()["bytes"] == len(data) and r.json()["filename"] == "in.jsonl"
    fid = r.json()["id"]
    org.store.max_bytes = len(data) - 1  # one byte over: the app reads one past the cap and refuses
    r = tc.post(files, data={"purpose": "batch"}, files={"file": ("in.jsonl", data)})
    assert r.status_code == 400 and r.json()["error"]["param"] == "file"
    org.store.max_bytes = Batches.max_bytes
    r = tc.post(files, data={"purpose": "assistants"}, files={"file": ("in.jsonl", data)})
    assert r.status_code == 400 and r.json()["error"]["param"] == "purpose"
    for body in (b"{not json", b"[1]", b"\xff"):
        r = tc.post("/openai/v1/batches", content=body)
        assert (r.status_code, r.json()["error"]) == (400, {"message": "the request body must be a JSON object",
                                                            "type": "invalid_request_error"})
    r = tc.post("/openai/v1/batches", json={"input_file_id": fid, "endpoint": CHAT, "completion_window": "48h",
                                            "metadata": {"m": "1"}})
    b = r.json()
    assert r.status_code == 200 and (b["input_file_id"], b["completion_window"], b["metadata"]) == (fid, "48h",
                                                                                                   {"m": "1"})
    r = tc.post("/openai/v1/batches", json={"input_file_id": fid, "endpoint": "/v1/embeddings",
                                            "completion_window": "24h"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "endpoint"
    r = tc.post(f"/openai/v1/batches/{b['id']}/cancel")
    assert r.json()["status"] == "cancelled"  # before its start
    second = tc.post("/openai/v1/batches", json={"input_file_id": fid, "endpoint": CHAT,
                                                 "completion_window": "24h"}).json()
    page = tc.get("/openai/v1/batches", params={"limit": "1"}).json()
    assert [x["id"] for x in page["data"]] == [second["id"]] and page["has_more"] is True and page["object"] == "list"
    page = tc.get("/openai/v1/batches", params={"limit": "1", "after": second["id"]}).json()
    assert [x["id"] for x in page["data"]] == [b["id"]] and page["has_more"] is False
    assert tc.get("/openai/v1/batches", params={"after": "batch_x"}).json()["error"]["param"] == "after"
    for _ in range(2):  # a GET reads the file and leaves it
        assert tc.get(f"/openai/v1/files/{fid}").json() == {
            "id": fid, "object": "file", "bytes": len(data), "created_at": org.wall(org.t0), "filename": "in.jsonl",
            "purpose": "batch", "status": "processed"}
    listing = tc.get("/openai/v1/files", params={"purpose": "batch", "order": "asc", "limit": "5"}).json()
    assert [x["id"] for x in listing["data"]] == [fid] and listing["has_more"] is False
    r = tc.delete(f"/openai/v1/files/{fid}")
    assert r.json() == {"id": fid, "object": "file", "deleted": True}
    assert tc.get(f"/openai/v1/files/{fid}").status_code == 404


def test_the_sdks_page_through_files_and_batches_and_label_a_keys_batch():
    org = Org()
    org.emu.keys = parse_keys(["sk-n=nightly"])

    async def go():
        transport = httpx.ASGITransport(app=build_app(org.emu))
        async with httpx.AsyncClient(transport=transport) as h1, httpx.AsyncClient(transport=transport) as h2:
            g = groq.AsyncGroq(base_url="http://emu", api_key="sk-n", max_retries=0, http_client=h1)
            o = openai.AsyncOpenAI(base_url="http://emu/openai/v1", api_key="sk-n", max_retries=0, http_client=h2)
            f1 = await g.files.create(file=("a.jsonl", jsonl([line(0)])), purpose="batch")
            f2 = await o.files.create(file=("b.jsonl", jsonl([line(0), line(1)])), purpose="batch")
            info = await g.files.info(f1.id)
            b1 = await g.batches.create(input_file_id=f1.id, endpoint=CHAT, completion_window="24h")
            b2 = await o.batches.create(input_file_id=f2.id, endpoint=CHAT, completion_window="24h",
                                        metadata={"k": "v"})
            listed = [x.id async for x in o.files.list(limit=1)]
            asc = [x.id async for x in o.files.list(purpose="batch", order="asc")]
            batches = [x.id async for x in o.batches.list(limit=1)]
            got = await o.batches.retrieve(b2.id)
            cancelled = await g.batches.cancel(b1.id)
            page = await o.batches.list(limit=1, after=b2.id)
            return f1, f2, info, b1, b2, listed, asc, batches, got, cancelled, page
    f1, f2, info, b1, b2, listed, asc, batches, got, cancelled, page = asyncio.run(go())
    assert info.bytes == f1.bytes and f2.filename == "b.jsonl"
    assert listed == [f2.id, f1.id] and asc == [f1.id, f2.id] and batches == [b2.id, b1.id]
    assert got.metadata == {"k": "v"} and got.request_counts.total == 2 and cancelled.status == "cancelled"
    assert [x.id for x in page.data] == [b1.id]
    org.now = org.t0 + 606
    rec = org.emu.records()
    assert rec["client"].tolist() == ["nightly"] * 3 and rec["job"].tolist() == [0, 1, 1]  # the key's label


def test_a_flush_reports_the_rows_it_wrote_while_batch_requests_keep_ending(http, tmp_path):
    """/groqsim/flush answers how many records it wrote, even as batch requests end while it runs (here the
    clock moves a second at each reading, and a request ends every second)."""
    org = Org(parquet_path=tmp_path / "r.parquet", start=0, speed=20.0)
    org.batch([line(i) for i in range(200)])
    tc = http(org)

    def tick():
        org.now += 1.0
        return org.now
    org.emu.clock.now = tick
    r = tc.post("/groqsim/flush")
    written = pd.read_parquet(tmp_path / "r.parquet")
    assert r.json() == {"records": len(written), "parquet": str(tmp_path / "r.parquet"), "log": None}
    assert 0 < len(written) < 200 and (written["endpoint"] == "batch").all()
