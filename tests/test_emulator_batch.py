"""The emulator's Batch API (``groqsim serve``): files and batch jobs driven by the real groq and openai SDKs,
with the simulator's batch-lane semantics (sim.batch) on the emulator's scaled clock.  Each job's timing comes
from the scenario's ``[org.batch]`` and the seed, so the HTTP tests pick settings and time scales that make a
24 h job take about a second of real time."""
import datetime
import json
import math
import time
from contextlib import ExitStack
from decimal import Decimal

import groq
import httpx
import numpy as np
import openai
import pandas as pd
import pytest
import scipy.stats

from sim.batch import jobs_from_records
from sim.emulator import Emulator, parse_keys
from sim.emulator.batches import Batches
from sim.emulator.core import RECORD_COLUMNS, approx_prompt_tokens
from tests.test_emulator import MODEL, make_spec, msgs, running

ENDED = ("completed", "expired", "cancelled", "failed")
CHAT = "/v1/chat/completions"


@pytest.fixture
def serve(tmp_path):
    """serve(spec, time_scale=..., keys=...) -> (base url, emulator), as tests/test_emulator.py's fixture."""
    with ExitStack() as stack:
        def start(spec, **kw):
            emu = Emulator(spec, log_path=tmp_path / "requests.jsonl", parquet_path=tmp_path / "records.parquet", **kw)
            return stack.enter_context(running(emu)), emu
        yield start


def batch_spec(**lane):
    """The emulator test org with the batch lane's settings ``lane`` (``[org.batch]``)."""
    return make_spec(batch=lane)


def line(i: int, model: str = MODEL, max_tokens: int | None = 20, **body) -> dict:
    b = {"model": model, "messages": msgs(20 + 4 * i), **body}
    if max_tokens is not None:
        b["max_tokens"] = max_tokens
    return {"custom_id": f"req-{i}", "method": "POST", "url": CHAT, "body": b}


def jsonl(objs) -> bytes:
    return "".join((o if isinstance(o, str) else json.dumps(o)) + "\n" for o in objs).encode()


def upload(client, n: int, **kw):
    return client.files.create(file=("requests.jsonl", jsonl(line(i, **kw) for i in range(n))), purpose="batch")


def poll(get, batch_id: str, until=ENDED, timeout: float = 15.0):
    """Retrieve the batch until its status is in ``until``; returns it and the statuses seen, in order."""
    seen, deadline = [], time.monotonic() + timeout
    while True:
        b = get(batch_id)
        if not seen or seen[-1] != b.status:
            seen.append(b.status)
        if b.status in until:
            return b, seen
        assert time.monotonic() < deadline, f"batch still {b.status} after {timeout} s"
        time.sleep(0.02)


def lines_of(data: bytes) -> list[dict]:
    assert data.endswith(b"\n")
    return [json.loads(x) for x in data.decode().splitlines()]


# ---- the round trip ---------------------------------------------------------------------------------------

def test_groq_sdk_round_trip_upload_create_poll_download(serve):
    # a 20-minute start delay and ~0.5 tokens/s: ~1 100 tokens take ~40 limiter-minutes, ~1 s at K = 3 000
    url, emu = serve(batch_spec(start_median="20m", start_p95="30m", speed_median=0.5, speed_p05=0.3),
                     time_scale=3000)
    client = groq.Groq(base_url=url, api_key="k", max_retries=0)
    n = 30
    f = upload(client, n)
    assert f.id.startswith("file_") and f.purpose == "batch" and f.filename == "requests.jsonl"
    assert f.bytes == len(jsonl(line(i) for i in range(n))) and abs(f.created_at - time.time()) < 5
    assert client.files.info(f.id).bytes == f.bytes
    b = client.batches.create(input_file_id=f.id, endpoint=CHAT, completion_window="24h", metadata={"k": "v"})
    assert b.status == "validating" and b.id.startswith("batch_") and b.metadata == {"k": "v"}
    assert (b.request_counts.total, b.request_counts.completed, b.request_counts.failed) == (n, 0, 0)
    assert abs(b.expires_at - b.created_at - 86_400 / 3000) <= 1  # the client's seconds: 24 h / K
    assert b.output_file_id is None and b.in_progress_at is None
    t0 = time.monotonic()
    b, seen = poll(client.batches.retrieve, b.id)
    took = time.monotonic() - t0
    assert seen[0] == "validating" and "in_progress" in seen and seen[-1] == "completed", seen
    assert 0.2 < took < 10, took  # the limiter clock runs 3 000x: ~40 limiter-minutes in about a second
    assert b.request_counts.completed == n and b.request_counts.failed == 0 and b.error_file_id is None
    assert b.created_at <= b.in_progress_at <= b.finalizing_at == b.completed_at <= b.expires_at
    assert b.failed_at is b.expired_at is b.cancelled_at is None
    info = client.files.info(b.output_file_id)
    assert info.purpose == "batch_output" and info.created_at >= b.in_progress_at
    data = client.files.content(b.output_file_id).read()
    assert info.bytes == len(data)
    out = lines_of(data)
    assert [x["custom_id"] for x in out] == [f"req-{i}" for i in range(n)]  # all, in file order
    assert len({x["id"] for x in out}) == n and all(x["error"] is None for x in out)
    for i, x in enumerate(out):
        r = x["response"]
        assert r["status_code"] == 200 and r["request_id"].startswith("req_")
        c = groq.types.chat.ChatCompletion.model_validate(r["body"])  # a chat.completion the SDK's type reads
        u = c.usage
        assert c.model == MODEL and c.choices[0].message.content and c.object == "chat.completion"
        assert u.prompt_tokens == approx_prompt_tokens(msgs(20 + 4 * i))
        assert 5 <= u.completion_tokens <= 20 and u.total_tokens == u.prompt_tokens + u.completion_tokens
        assert u.total_time == pytest.approx(u.prompt_time + u.completion_time) and u.queue_time > 0
        assert c.choices[0].finish_reason == ("length" if u.completion_tokens == 20 else "stop")
        assert b.in_progress_at <= c.created <= b.completed_at
    ids = [x.id for x in client.files.list().data]
    assert ids == [b.output_file_id, f.id]  # newest first
    assert [x.id for x in client.batches.list().data] == [b.id]
    assert client.files.delete(f.id).deleted and [x.id for x in client.files.list().data] == [b.output_file_id]
    # the records: one row per batch request, as the simulator's batch lane records them; not in the calibration log
    rec = emu.records()
    rows = rec[rec["endpoint"] == "batch"]
    assert len(rows) == n and (rows["outcome"] == "ok").all() and (rows["status"] == 200).all()
    assert (rows["service_tier"] == "batch").all() and (rows["job"] == 0).all() and rows["admitted"].isna().all()
    assert (rows["charged_tokens"] == 0).all() and (rows["finished"].diff().dropna() > 0).all()  # in file order
    assert rows["request_id"].tolist() == [x["id"] for x in out]
    assert rows["completion_tokens"].tolist() == [x["response"]["body"]["usage"]["completion_tokens"] for x in out]
    assert (rows["submitted"] == rows["created"]).all() and rows["latency"].min() > 0
    assert emu.log_path.read_text() == ""  # the JSONL calibration log has no batch lines


def test_openai_sdk_round_trip_and_pagination(serve):
    url, emu = serve(batch_spec(start_median="5m", start_p95="10m", speed_median=2, speed_p05=1), time_scale=3000)
    client = openai.OpenAI(base_url=url + "/openai/v1", api_key="k", max_retries=0)
    files = [client.files.create(file=("in.jsonl", jsonl(line(i) for i in range(k + 2))), purpose="batch")
             for k in range(3)]
    assert files[0].status == "processed" and client.files.retrieve(files[0].id).bytes == files[0].bytes
    batches = [client.batches.create(input_file_id=f.id, endpoint=CHAT, completion_window="48h") for f in files]
    assert batches[0].completion_window == "48h" and batches[0].expires_at - batches[0].created_at < 60
    # the SDK's cursor pagination (after = the last id) walks every page and stops
    assert [b.id for b in client.batches.list(limit=2)] == [b.id for b in reversed(batches)]
    page = client.batches.list(limit=2)
    assert len(page.data) == 2 and page.has_more
    done = [poll(client.batches.retrieve, b.id)[0] for b in batches]
    assert [b.status for b in done] == ["completed"] * 3
    assert [b.request_counts.completed for b in done] == [2, 3, 4]
    for b in done:
        out = lines_of(client.files.content(b.output_file_id).content)
        for x in out:
            c = openai.types.chat.ChatCompletion.model_validate(x["response"]["body"])
            assert c.usage.total_tokens == c.usage.prompt_tokens + c.usage.completion_tokens
    listed = [f.id for f in client.files.list(limit=1)]
    assert len(listed) == 6 and set(listed) >= {f.id for f in files} | {b.output_file_id for b in done}
    assert [f.id for f in client.files.list(purpose="batch", order="asc")] == [f.id for f in files]
    assert client.files.delete(files[0].id).deleted
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(files[0].id)


# ---- how a batch ends: expired, cancelled, failed --------------------------------------------------------------

def test_a_batch_that_misses_its_window_expires_with_what_was_done(serve):
    # ~0.005 tokens/s from the start: 30 requests (~1 200 tokens) need ~3 days; the 24 h window passes in ~1 s
    url, emu = serve(batch_spec(start_median=0, start_p95=0, speed_median=0.005, speed_p05=0.004), time_scale=86_400,
                     keys=parse_keys(["sk-n=nightly"]))  # (sim.batch.jobs_from_records groups by a client label)
    client = groq.Groq(base_url=url, api_key="sk-n", max_retries=0)
    n = 30
    b = client.batches.create(input_file_id=upload(client, n).id, endpoint=CHAT, completion_window="24h")
    b, seen = poll(client.batches.retrieve, b.id)
    assert seen[-1] == "expired" and "in_progress" in seen, seen
    assert b.expired_at == b.expires_at and b.completed_at is None and b.finalizing_at is None
    done = b.request_counts.completed
    assert 0 < done < n and b.request_counts.failed == n - done  # completed + failed = total at the end
    out = lines_of(client.files.content(b.output_file_id).read())
    err = lines_of(client.files.content(b.error_file_id).read())
    assert [x["custom_id"] for x in out + err] == [f"req-{i}" for i in range(n)]  # the first ones were done
    assert len(out) == done and all(x["response"]["status_code"] == 200 for x in out)
    assert all(x["response"] is None and x["error"]["code"] == "batch_expired" for x in err)
    rec = emu.records()
    rows = rec[rec["endpoint"] == "batch"]
    assert rows["outcome"].value_counts().to_dict() == {"ok": done, "expired": n - done}
    expired = rows[rows["outcome"] == "expired"]
    assert (expired["status"] == 0).all() and np.allclose(expired["finished"] - expired["created"], 86_400)
    assert (rows.loc[rows["outcome"] == "ok", "finished"] - rows["created"].iloc[0] < 86_400).all()
    assert (rows["client"] == "nightly").all()
    [job] = jobs_from_records(rec).itertuples()  # the simulator's job table reads the emulator's records
    assert (job.requests, job.completed, job.expired, job.status) == (n, done, n - done, "expired")


def test_cancel_keeps_what_was_done_and_cancels_the_rest(serve):
    url, emu = serve(batch_spec(start_median=0, start_p95=0, speed_median=0.01, speed_p05=0.008), time_scale=20_000)
    client = groq.Groq(base_url=url, api_key="k", max_retries=0)
    n = 30
    b = client.batches.create(input_file_id=upload(client, n).id, endpoint=CHAT, completion_window="24h")
    deadline = time.monotonic() + 10
    while client.batches.retrieve(b.id).request_counts.completed < 2:  # ~0.2 s a request at this speed
        assert time.monotonic() < deadline
        time.sleep(0.02)
    c = client.batches.cancel(b.id)
    assert c.status == "cancelling" and c.cancelling_at is not None and c.cancelled_at is None
    assert client.batches.cancel(b.id).cancelling_at == c.cancelling_at  # asked again: answered as is
    c, seen = poll(client.batches.retrieve, b.id)
    assert seen[-1] == "cancelled" and c.cancelled_at >= c.cancelling_at and c.completed_at is None
    done = c.request_counts.completed
    assert 2 <= done < n and c.request_counts.failed == n - done
    out = lines_of(client.files.content(c.output_file_id).read())
    err = lines_of(client.files.content(c.error_file_id).read())
    assert len(out) == done and [x["custom_id"] for x in out + err] == [f"req-{i}" for i in range(n)]
    assert all(x["error"]["code"] == "batch_cancelled" for x in err)
    rows = emu.records().query("endpoint == 'batch'")
    assert rows["outcome"].value_counts().to_dict() == {"ok": done, "cancelled": n - done}
    assert (rows.loc[rows["outcome"] == "cancelled", "status"] == 0).all()
    again = client.batches.cancel(b.id)  # a cancelled batch is answered as is
    assert (again.status, again.cancelled_at) == ("cancelled", c.cancelled_at)


def test_an_invalid_line_fails_the_batch_with_its_line_number(serve):
    url, emu = serve(batch_spec(), time_scale=1)
    client = groq.Groq(base_url=url, api_key="k", max_retries=0)
    good = line(0)
    rows = [good, "{not json", "", line(3, model="no-such-model"), {**line(4), "custom_id": "req-0"},
            line(5, max_tokens=0), {**line(6), "url": "/v1/embeddings"}, line(7, model="whisper-large-v3"),
            {**line(8), "method": "GET"}, line(9, messages=[{"content": "no role"}])]
    f = client.files.create(file=("bad.jsonl", jsonl(rows)), purpose="batch")  # uploaded: the batch fails
    b = client.batches.create(input_file_id=f.id, endpoint=CHAT, completion_window="24h")
    assert b.status == "failed" and b.failed_at == b.created_at and b.output_file_id is None
    assert b.in_progress_at is None and (b.request_counts.total, b.request_counts.completed) == (0, 0)
    errors = [(e.line, e.code, e.param) for e in b.errors.data]
    assert errors == [(2, "invalid_json_line", None), (4, "model_not_found", "body.model"),
                      (5, "duplicate_custom_id", "custom_id"), (6, "invalid_request", "body.max_tokens"),
                      (7, "url_mismatch", "url"), (8, "invalid_request", "body.model"),
                      (9, "invalid_request", "method"), (10, "invalid_request", "body.messages")]
    assert "does not exist" in b.errors.data[1].message  # the chat route's own message for that body
    assert client.batches.retrieve(b.id).status == "failed" and not emu.records()["endpoint"].eq("batch").any()
    with pytest.raises(groq.BadRequestError):
        client.batches.cancel(b.id)


def test_the_batch_apis_400s_and_404s(serve):
    # jobs start at once and take microseconds: a batch has ended by the next call
    url, emu = serve(batch_spec(start_median=0, start_p95=0, speed_median=1e7, speed_p05=1e6), time_scale=1,
                     keys=parse_keys(["sk-a"]))
    client = groq.Groq(base_url=url, api_key="sk-a", max_retries=0)
    raw = httpx.Client(base_url=url + "/openai/v1", headers={"Authorization": "Bearer sk-a"})  # one: fast

    def refused(exc, call, param=None, status=None):
        with pytest.raises(exc) as e:
            call()
        err = e.value.body["error"]
        assert err["type"] == "invalid_request_error" and err["message"]
        if param is not None:
            assert err["param"] == param, err
        return err

    # uploads: purpose, not JSONL, too large, too many requests, no file
    refused(groq.BadRequestError, lambda: client.files.create(file=("a.jsonl", jsonl([line(0)])), purpose="fine-tune"),
            "purpose")
    for data in (b"\xff\xfe\x00binary", b"hello\nworld\n", b"\n \n"):
        refused(groq.BadRequestError, lambda d=data: client.files.create(file=("a.jsonl", d), purpose="batch"), "file")
    emu.batches.max_bytes = 700
    refused(groq.BadRequestError, lambda: upload(client, 10), "file")  # > 700 bytes
    assert upload(client, 3).bytes <= 700
    emu.batches.max_bytes, emu.batches.max_requests = Batches.max_bytes, 3
    refused(groq.BadRequestError, lambda: upload(client, 4), "file")  # 4 > 3 requests
    emu.batches.max_requests = Batches.max_requests
    assert raw.post("/files", data={"purpose": "batch"}).status_code == 400  # no file
    # unknown ids: 404 with the API's error body
    for call in (lambda: client.files.info("file_nope"), lambda: client.files.content("file_nope"),
                 lambda: client.files.delete("file_nope"), lambda: client.batches.retrieve("batch_nope"),
                 lambda: client.batches.cancel("batch_nope"),
                 lambda: client.batches.create(input_file_id="file_nope", endpoint=CHAT, completion_window="24h")):
        assert refused(groq.NotFoundError, call)["code"] == "not_found"
    # creating a batch: window 24h..7d, the chat endpoint, an input file
    f = upload(client, 2)
    for window in ("1h", "23h59m", "8d", "soon", ""):
        refused(groq.BadRequestError, lambda w=window: client.batches.create(input_file_id=f.id, endpoint=CHAT,
                                                                             completion_window=w), "completion_window")
    r = raw.post("/batches", json={"input_file_id": f.id, "endpoint": CHAT, "completion_window": 86_400})
    assert r.status_code == 400 and r.json()["error"]["param"] == "completion_window"  # a string, as the SDKs send
    refused(groq.BadRequestError, lambda: client.batches.create(input_file_id=f.id, endpoint="/v1/embeddings",
                                                                completion_window="24h"), "endpoint")
    refused(groq.BadRequestError, lambda: client.batches.create(input_file_id="", endpoint=CHAT,
                                                                completion_window="24h"), "input_file_id")
    done = client.batches.retrieve(client.batches.create(input_file_id=f.id, endpoint=CHAT,
                                                         completion_window="7d").id)
    assert done.status == "completed" and done.completion_window == "7d"
    refused(groq.BadRequestError, lambda: client.batches.cancel(done.id))
    refused(groq.BadRequestError, lambda: client.batches.create(input_file_id=done.output_file_id, endpoint=CHAT,
                                                                completion_window="24h"), "input_file_id")
    r = raw.get("/batches", params={"limit": "zero"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "limit"
    # keys are checked as on every route; the routes' other methods are unknown URLs
    with pytest.raises(groq.AuthenticationError):
        groq.Groq(base_url=url, api_key="wrong", max_retries=0).files.list()
    r = raw.put("/batches")
    assert r.status_code == 405 and r.json()["error"]["code"] == "unknown_url"


# ---- limits, seeds, failures, records (in process where no HTTP is needed) -----------------------------------

def test_batch_requests_charge_no_on_demand_limit(serve):
    # at K = 1 (the day's budget refills one request every 6 s), jobs that take a fraction of a second
    url, emu = serve(batch_spec(start_median=0, start_p95=0, speed_median=1e6, speed_p05=1e5), time_scale=1)
    client = groq.Groq(base_url=url, api_key="k", max_retries=0)
    first = client.chat.completions.with_raw_response.create(model=MODEL, messages=msgs(), max_tokens=8).headers
    n = 200  # > the free tier's 30 RPM and, with ~1 000 tokens reserved each (no max_tokens), its 6 000 TPM
    b = client.batches.create(input_file_id=upload(client, n, max_tokens=None).id, endpoint=CHAT,
                              completion_window="24h")
    b, _ = poll(client.batches.retrieve, b.id)
    assert b.status == "completed" and b.request_counts.completed == n
    after = client.chat.completions.with_raw_response.create(model=MODEL, messages=msgs(), max_tokens=8).headers
    # the day's request budget fell by the two chat requests only (each batch request would take one)
    assert int(first["x-ratelimit-remaining-requests"]) - int(after["x-ratelimit-remaining-requests"]) == 1
    # and its tokens (~200 000 reserved, 33x TPM) none: TPM has room for both chat requests' 24 tokens
    assert int(after["x-ratelimit-remaining-tokens"]) >= 6000 - 2 * (approx_prompt_tokens(msgs()) + 8)
    assert set(emu.limitsets) == {MODEL} and not emu.book.flex
    assert [json.loads(x)["endpoint"] for x in emu.log_path.read_text().splitlines()] == ["chat.completions"] * 2


def _emu(seed: int, **lane) -> Emulator:
    return Emulator(batch_spec(**{"start_median": "10m", "start_p95": "1h", "speed_median": 50, "speed_p05": 20,
                                  **lane}), time_scale=1, seed=seed)


def _advance(emu: Emulator, seconds: float) -> None:
    """Move the emulator's clock ``seconds`` (limiter) ahead: the batch's status and the records read it."""
    later = emu.clock.now() + seconds
    emu.clock.now = lambda: later


def _run(emu: Emulator, data: bytes, window: str = "24h") -> tuple[dict, list[dict], list[dict]]:
    """Upload ``data``, create a batch, and read it 8 days later: (batch, output lines, error lines)."""
    store = Batches(emu)
    b = store.create(store.upload(data, "in.jsonl", "batch")["id"], CHAT, window)
    _advance(emu, 8 * 86_400)
    b = store.batch(b["id"])
    read = (lambda fid: lines_of(store.content(fid)) if fid else [])
    return b, read(b["output_file_id"]), read(b["error_file_id"])


def test_a_cancel_before_the_start_takes_effect_at_once():
    emu = _emu(3, start_median="2h", start_p95="3h")
    store = Batches(emu)
    b = store.create(store.upload(jsonl(line(i) for i in range(3)), "in.jsonl", "batch")["id"], CHAT, "24h")
    assert b["status"] == "validating"
    c = store.cancel(b["id"])
    assert c["status"] == "cancelled" and c["cancelled_at"] == c["cancelling_at"] and c["in_progress_at"] is None
    assert c["request_counts"] == {"total": 3, "completed": 0, "failed": 3} and c["output_file_id"] is None
    assert [x["error"]["code"] for x in lines_of(store.content(c["error_file_id"]))] == ["batch_cancelled"] * 3
    _advance(emu, 2 * 86_400)  # nothing runs later either
    assert store.batch(b["id"])["status"] == "cancelled" and emu.records()["outcome"].tolist() == ["cancelled"] * 3


def test_request_failure_share_is_binomial():
    n, p = 3000, 0.2
    emu = _emu(11, request_failure=p)
    b, out, err = _run(emu, jsonl(line(i) for i in range(n)))
    failed = b["request_counts"]["failed"]
    assert b["status"] == "completed" and b["request_counts"]["completed"] == n - failed == len(out)
    assert scipy.stats.binomtest(failed, n, p).pvalue > 1e-3, failed
    assert len(err) == failed and all(x["response"]["status_code"] == 500 and x["error"] is None for x in err)
    assert {x["response"]["body"]["error"]["type"] for x in err} == {"internal_server_error"}
    assert len(out) + len(err) == n
    rows = emu.records()
    errors = rows[rows["outcome"] == "error"]
    assert len(errors) == failed and (errors["status"] == 500).all() and (errors["completion_tokens"] == 0).all()
    # a failed request is processed all the same (file order, at the job's speed): it ends between its neighbours
    assert rows["finished"].is_monotonic_increasing
    _, _, none = _run(_emu(11), jsonl(line(i) for i in range(200)))
    assert none == []  # request_failure 0 (the default): nothing fails


def _strip(lines: list[dict]) -> list[dict]:
    """Output lines without their ids and timestamps (the rest is the seed's)."""
    for x in lines:
        x.pop("id")
        if x["response"] is not None:
            x["response"].pop("request_id")
            body = x["response"]["body"]
            for k in ("id", "created", "x_groq"):
                body.pop(k, None)
    return lines


def test_the_same_seed_gives_the_same_batch_and_batches_move_no_chat_answer():
    data = jsonl(line(i, max_tokens=None if i % 3 else 25) for i in range(60))
    a, b, c = _emu(5), _emu(5), _emu(6)
    (_, oa, _), (_, ob, _), (_, oc, _) = (_run(e, data, "3d") for e in (a, b, c))
    oa, ob, oc = _strip(oa), _strip(ob), _strip(oc)
    assert oa == ob and oa != oc and len(oa) == 60
    ja, jb = (next(iter(e.batches.jobs.values())) for e in (a, b))
    # the same delays; each job's times are on its own emulator's clock, which started at another instant, so
    # start - created differs by the float rounding of those instants (~1e-12 s at 1e4 s), no more
    assert math.isclose(ja.start - ja.created, jb.start - jb.created, rel_tol=0, abs_tol=1e-9)
    assert np.allclose(ja.finish - ja.created, jb.finish - jb.created, rtol=0, atol=1e-9)
    # chat answers after the batch are those of an emulator that served no batch (its own random stream)
    fresh = _emu(5)
    answers = [[(d.completion, d.times) for d in (e.decide(MODEL, 30, 32) for _ in range(20))] for e in (a, fresh)]
    assert answers[0] == answers[1] and len(set(answers[0])) > 1


def test_records_have_a_batch_requests_row_once_it_has_ended(tmp_path):
    emu = Emulator(batch_spec(start_median="1h", start_p95="2h", speed_median=10, speed_p05=5), time_scale=1,
                   seed=2, parquet_path=tmp_path / "records.parquet")
    store, now = Batches(emu), emu.clock.now()
    emu.decide(MODEL, 20, 8)  # a chat row, recorded as the app does
    emu.record(endpoint="chat.completions", model=MODEL, status=200, t_send=now, label=None, headers={})
    f = store.upload(jsonl(line(i) for i in range(10)), "in.jsonl", "batch", now=now)
    b = store.create(f["id"], CHAT, "24h", label="team", now=now)
    job = store.jobs[b["id"]]
    assert store.rows(now) == [] and list(emu.records().columns) == list(RECORD_COLUMNS)  # nothing ended yet
    half = float(job.finish[4])
    assert len(store.rows(half)) == 5 and store.batch(b["id"], now=half)["request_counts"]["completed"] == 5
    assert store.batch(b["id"], now=half)["status"] == "in_progress"
    assert store.batch(b["id"], now=float(job.start) - 1)["status"] == "validating"
    store.batch(b["id"], now=float(job.finish[-1]))  # ended: now every row is there
    _advance(emu, float(job.finish[-1]) + 1 - emu.clock.now())  # the records are written at the clock's now
    emu.flush()
    rec = pd.read_parquet(tmp_path / "records.parquet")
    assert emu.flushed == len(rec) == 11  # what /groqsim/flush reports: the batch rows count too
    assert list(rec.columns) == [*RECORD_COLUMNS, "submitted", "job"]
    chat, batch = rec.iloc[0], rec.iloc[1:]
    assert chat["endpoint"] == "chat.completions" and chat["job"] == -1 and math.isnan(chat["submitted"])
    assert len(batch) == 10 and (batch["client"] == "team").all() and batch["id"].tolist() == list(range(1, 11))
    assert (batch["submitted"] == now - emu.clock.start).all() and (batch["max_tokens"] == 20).all()
    assert np.allclose(batch["finished"], job.finish - emu.clock.start)
    assert (batch["prompt_tokens"] == job.prompt).all() and (batch["total_time"] > 0).all()


def test_a_huge_max_tokens_is_a_400_and_a_bom_is_not_part_of_the_first_line(serve):
    """A cap above 10 M tokens (the simulator's own size limit) is refused on chat and fails a batch line (it
    made a 500, and a 2 KB batch file a 300 MB output); a JSONL file that starts with a byte-order mark reads."""
    url, emu = serve(batch_spec(start_median=0, start_p95=0, speed_median=1e7, speed_p05=1e6), time_scale=1)
    client = groq.Groq(base_url=url, api_key="k", max_retries=0)
    for cap in (10_000_001, 10 ** 400):
        r = httpx.post(url + "/openai/v1/chat/completions",
                       json={"model": MODEL, "messages": msgs(), "max_tokens": cap})
        assert r.status_code == 400 and r.json()["error"]["param"] == "max_tokens", r.text
        assert "an integer from 1 to 10,000,000" in r.json()["error"]["message"]
    f = client.files.create(file=("big.jsonl", jsonl([line(0), line(1, max_tokens=3_000_000_000)])), purpose="batch")
    b = client.batches.create(input_file_id=f.id, endpoint=CHAT, completion_window="24h")
    assert b.status == "failed" and [(e.line, e.param) for e in b.errors.data] == [(2, "body.max_tokens")]
    f = client.files.create(file=("bom.jsonl", b"\xef\xbb\xbf" + jsonl([line(0), line(1)])), purpose="batch")
    b = poll(client.batches.retrieve, client.batches.create(input_file_id=f.id, endpoint=CHAT,
                                                             completion_window="24h").id)[0]
    assert b.status == "completed" and b.request_counts.completed == 2


def test_a_line_nested_deeper_than_the_parser_recurses_is_an_invalid_line_not_a_500(serve):
    """``json.loads`` raises RecursionError on deep nesting: such a line is one that is not JSON (a file of
    nothing else is a 400 at upload; among valid lines, the batch made of it fails naming its line)."""
    url, emu = serve(batch_spec(start_median=0, start_p95=0, speed_median=1e7, speed_p05=1e6), time_scale=1)
    client = groq.Groq(base_url=url, api_key="k", max_retries=0)
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(groq.BadRequestError) as e:
        client.files.create(file=("a.jsonl", jsonl([deep])), purpose="batch")
    assert e.value.body["error"]["param"] == "file"
    f = client.files.create(file=("a.jsonl", jsonl([deep, line(1)])), purpose="batch")
    b = client.batches.retrieve(client.batches.create(input_file_id=f.id, endpoint=CHAT, completion_window="24h").id)
    assert b.status == "failed" and [(x.code, x.line) for x in b.errors.data] == [("invalid_json_line", 1)]


def test_batch_answers_usage_times_are_to_the_nanosecond_and_add_up():
    """A batch answer's ``usage`` is written as the chat route's: at most 9 decimals, and ``total_time`` the
    written sum of ``prompt_time`` and ``completion_time``; the records hold the same figures."""
    emu = _emu(5)
    b, out, err = _run(emu, jsonl(line(i) for i in range(20)))
    assert b["status"] == "completed" and len(out) == 20 and not err
    written = [json.loads(json.dumps(x["response"]["body"]["usage"]), parse_float=Decimal) for x in out]
    for u in written:
        assert all(max(0, -u[k].as_tuple().exponent) <= 9 for k in ("queue_time", "prompt_time", "completion_time",
                                                                      "total_time")), u
        assert u["total_time"] == u["prompt_time"] + u["completion_time"], u
    rec = emu.records()
    assert rec.loc[rec.endpoint == "batch", "total_time"].tolist() == [float(u["total_time"]) for u in written]


def test_a_line_naming_a_model_groq_has_shut_down_fails_the_batch_with_groqs_code():
    """A line's body is checked as the chat route checks it: a model Groq has shut down (and the scenario does
    not use) is ``model_decommissioned`` on ``body.model``."""
    emu = Emulator(batch_spec(start_median="10m", start_p95="1h", speed_median=50, speed_p05=20),
                   today=datetime.date(2026, 11, 27))
    b, out, err = _run(emu, jsonl([line(0), line(1, model="moonshotai/kimi-k2-instruct")]))
    assert b["status"] == "failed" and [(x["code"], x["line"], x["param"]) for x in b["errors"]["data"]] == [
        ("model_decommissioned", 2, "body.model")]
    assert "`moonshotai/kimi-k2-instruct` has been decommissioned" in b["errors"]["data"][0]["message"]
