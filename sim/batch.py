"""The Batch API lane: requests grouped into batch jobs, processed by Groq within a completion window.

What Groq states: a job is a file of at most 50 000 requests / 200 MB; its ``completion_window`` is 24 h to
7 d; jobs that miss it end ``expired`` and only completed requests are billed (at 50 % of on-demand); batch
traffic has its own limits and does not consume the organization's per-model limits.

What we assume (Groq publishes no processing speeds; every number is in :class:`BatchLane`, overridable in
``[org.batch]``):

* a submitted job waits a start delay (lognormal, ``start_median``/``start_p95``) -- other customers' jobs;
* it then runs at its own throughput in tokens per second (prompt + completion), lognormal with median
  ``speed_median`` and a slow tail: 5 % of jobs run slower than ``speed_p05``;
* a job's requests complete one after another in file order, so request ``k`` finishes at
  ``start + (tokens of requests 1..k) / speed``;
* a speech-to-text request (no tokens) takes its audio seconds at the model's published speed (x real time,
  as on demand), scaled by the job's speed against the median: ``audio / speed_factor x speed_median / speed``
  more (Groq publishes no batch speed for audio either; a job of audio hours can so miss its window);
* each processed request fails with probability ``request_failure`` (outcome ``error``, not billed);
* jobs run independently of each other (no cap on concurrent jobs is published).

A request not finished by ``submitted + completion_window`` is ``expired`` at that instant.  So per job,
completed + failed + expired = submitted.  Requests reach the lane as their client group's arrival
process creates them and go into the next submission (:class:`BatchJobs`); each submission is split into
files by the caps.  The job file's size is estimated as ``line_overhead + bytes_per_token x prompt``
bytes a request (JSON lines: a request body is roughly its prompt text plus a fixed envelope).
"""
from __future__ import annotations

import math
from typing import Annotated

import numpy as np
import pandas as pd
from pydantic import Field, field_validator, model_validator

from .fields import Duration, Strict
from .units import format_duration

MAX_REQUESTS = 50_000
MAX_BYTES = 200_000_000  # Groq's batch docs: "200 MB" a file (decimal megabytes, as written)
MIN_WINDOW, MAX_WINDOW = 24 * 3600.0, 7 * 24 * 3600.0
Z95 = 1.6448536269514722
JOB_STATUS = ("completed", "expired")


class BatchJobs(Strict):
    """``[clients.batch]``: when a batch-lane client group submits jobs and how they are cut."""
    #: first submission (default: the end of the horizon, one submission with everything)
    submit_at: Duration | None = None
    #: then one every so often (default: only ``submit_at``)
    submit_every: Annotated[Duration, Field(ge=1)] | None = None  # (a file a second at most: a job per period)
    completion_window: Duration = MIN_WINDOW
    max_requests: Annotated[int, Field(ge=1, le=MAX_REQUESTS)] = MAX_REQUESTS
    max_bytes: Annotated[int, Field(ge=1, le=MAX_BYTES)] = MAX_BYTES
    bytes_per_token: Annotated[float, Field(gt=0)] = 4.0
    line_overhead: Annotated[float, Field(ge=0)] = 300.0

    @field_validator("completion_window")
    @classmethod
    def _window(cls, value):
        if not MIN_WINDOW <= value <= MAX_WINDOW:
            raise ValueError(f"outside what Groq accepts (24h to 7d), got {format_duration(value)}")
        return value

    def submissions(self, horizon: float, last_created: float) -> np.ndarray:
        """The submission times: ``submit_at + k x submit_every`` before the horizon, plus one at the
        horizon for requests created after the last of them."""
        first = horizon if self.submit_at is None else self.submit_at
        if self.submit_every is None or first >= horizon:
            times = [first]
        else:
            times = list(first + self.submit_every * np.arange(math.ceil((horizon - first) / self.submit_every)))
        if last_created > times[-1]:
            times.append(max(horizon, last_created))
        return np.asarray(times, dtype=float)


class BatchLane(Strict):
    """``[org.batch]``: the batch lane's processing (assumptions, see the module docstring)."""
    start_median: Annotated[Duration, Field(ge=0)] = 900.0
    start_p95: Annotated[Duration, Field(ge=0)] = 3 * 3600.0
    speed_median: Annotated[float, Field(gt=0)] = 5000.0
    speed_p05: Annotated[float, Field(gt=0)] = 1000.0
    request_failure: Annotated[float, Field(ge=0, le=1)] = 0.0

    @model_validator(mode="after")
    def _order(self):
        if self.start_p95 < self.start_median:
            raise ValueError("start_p95 must be >= start_median")
        if self.start_median == 0 and self.start_p95 != 0 and self.written("start_p95"):
            raise ValueError("start_p95 has no effect with start_median = 0 (every job starts at once): leave it "
                             "out, or give start_median > 0 for a lognormal start delay")
        if self.speed_p05 > self.speed_median:
            raise ValueError("speed_p05 (the slow 5 % of jobs) must be <= speed_median")
        return self

    def start_delays(self, rng: np.random.Generator, n: int) -> np.ndarray:
        z = rng.standard_normal(n)
        if self.start_median == 0:
            return np.zeros(n)
        return self.start_median * np.exp(math.log(self.start_p95 / self.start_median) / Z95 * z)

    def speeds(self, rng: np.random.Generator, n: int) -> np.ndarray:
        z = rng.standard_normal(n)
        return self.speed_median * np.exp(math.log(self.speed_median / self.speed_p05) / Z95 * z)


def cut_jobs(submission: np.ndarray, request_bytes: np.ndarray, max_requests: int, max_bytes: float) -> np.ndarray:
    """Job number of each request (in order): a new file starts at every new submission and whenever the
    next request would exceed a cap (a request larger than ``max_bytes`` goes alone)."""
    job = np.empty(len(submission), dtype=np.int64)
    k, count, size, prev = -1, 0, 0.0, None
    for i, (s, b) in enumerate(zip(submission.tolist(), request_bytes.tolist())):
        if s != prev or count >= max_requests or (count and size + b > max_bytes):
            k, count, size, prev = k + 1, 0, 0.0, s
        job[i] = k
        count += 1
        size += b
    return job


def _so_far(x: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Running sum of ``x`` within each job (jobs are runs of requests starting at the indices ``first``)."""
    total = np.cumsum(x)
    return total - np.repeat(total[first] - x[first], np.diff(np.append(first, len(x))))


def process(created: np.ndarray, prompt: np.ndarray, completion: np.ndarray, jobs: BatchJobs, lane: BatchLane,
            rng: np.random.Generator, horizon: float,
            audio_time: np.ndarray | None = None) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """Run one client group's batch lane.  ``created`` must be sorted; ``audio_time``: each request's audio
    seconds over its model's speed factor (its processing time at the median job speed; None: no audio).
    Returns per-request arrays (``job``, ``submitted``, ``finished``, ``status``: 0 completed, 1 expired,
    2 failed) and the job table."""
    n = len(created)
    if n == 0:
        return ({k: np.empty(0) for k in ("job", "submitted", "finished", "status")},
                pd.DataFrame(columns=["job", "submitted", "requests", "bytes", "started", "speed", "finished",
                                      "status", "completed", "failed", "expired", "completion_time"]))
    times = jobs.submissions(horizon, float(created[-1]))
    submitted = times[np.searchsorted(times, created, side="left")]
    size = jobs.line_overhead + jobs.bytes_per_token * prompt
    job = cut_jobs(submitted, size, jobs.max_requests, jobs.max_bytes)
    n_jobs = int(job[-1]) + 1
    first = np.searchsorted(job, np.arange(n_jobs))
    job_submitted = submitted[first]
    start = job_submitted + lane.start_delays(rng, n_jobs)
    speed = lane.speeds(rng, n_jobs)
    finish = start[job] + _so_far(prompt + completion, first) / speed[job]
    if audio_time is not None and audio_time.any():  # (else nothing to add: a chat job's times stay as they were)
        finish = finish + _so_far(audio_time, first) * (lane.speed_median / speed[job])
    deadline = job_submitted[job] + jobs.completion_window
    failed = rng.random(n) < lane.request_failure
    expired = finish > deadline
    status = np.where(expired, 1, np.where(failed, 2, 0))
    finished = np.where(expired, deadline, finish)
    per = pd.DataFrame({"job": job, "status": status, "finish": finish, "bytes": size})
    g = per.groupby("job")
    table = pd.DataFrame({
        "job": np.arange(n_jobs), "submitted": job_submitted, "requests": g.size().to_numpy(),
        "bytes": g["bytes"].sum().to_numpy(), "started": start, "speed": speed,
        "completed": g["status"].agg(lambda s: int((s == 0).sum())).to_numpy(),
        "failed": g["status"].agg(lambda s: int((s == 2).sum())).to_numpy(),
        "expired": g["status"].agg(lambda s: int((s == 1).sum())).to_numpy()})
    last = g["finish"].max().to_numpy()
    all_done = table["expired"].to_numpy() == 0
    table["finished"] = np.where(all_done, last, job_submitted + jobs.completion_window)
    table["status"] = pd.Categorical.from_codes(np.where(all_done, 0, 1), JOB_STATUS)
    table["completion_time"] = np.where(all_done, last - job_submitted, np.nan)
    return {"job": job, "submitted": submitted, "finished": finished, "status": status}, table


def jobs_from_records(records: pd.DataFrame) -> pd.DataFrame:
    """The batch jobs as the request records tell them (works on records read back from disk): per
    (client, job) the submission time, requests, completed / failed / expired counts, when it finished
    (the last answer, or the window's end for an expired job), its status and completion time (NaN when
    expired).  Rows without a client (an emulator's batch without a labelled key) are a client of their own."""
    cols = ["client", "job", "submitted", "requests", "completed", "failed", "expired", "finished", "status",
            "completion_time"]
    if "job" not in records:
        return pd.DataFrame(columns=cols)
    rows = records[records["job"] >= 0]
    if not len(rows):
        return pd.DataFrame(columns=cols)
    outcome = rows["outcome"].astype(str)
    g = pd.DataFrame({"client": rows["client"].astype(str), "job": rows["job"], "submitted": rows["submitted"],
                      "finished": rows["finished"], "completed": outcome == "ok", "failed": outcome == "error",
                      "expired": outcome == "expired"}).groupby(["client", "job"], sort=True, dropna=False)
    table = g.agg(submitted=("submitted", "first"), requests=("finished", "size"), completed=("completed", "sum"),
                  failed=("failed", "sum"), expired=("expired", "sum"), finished=("finished", "max")).reset_index()
    done = table["expired"].to_numpy() == 0
    table["status"] = pd.Categorical.from_codes(np.where(done, 0, 1), JOB_STATUS)
    table["completion_time"] = np.where(done, table["finished"] - table["submitted"], np.nan)
    return table[cols]
