"""The Batch API lane: jobs cut by Groq's caps, the completion window, conservation, its own limits, cost."""
import tomllib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st
from pydantic import ValidationError

from helpers import client, run
from sim.batch import MAX_BYTES, MAX_REQUESTS, BatchJobs, BatchLane, cut_jobs, jobs_from_records, process
from sim.config import Accounting, Org
from sim.flex import Flex
from sim.cost import request_costs
from sim.prices import BATCH_DISCOUNT
from sim.engine import Simulation
from sim import RunSpec, scenario_from_dict, simulate
from sim.config import policy_table
from sim.projects import Project


@settings(max_examples=60)
@given(n=st.integers(1, 400), max_requests=st.integers(1, 120), max_bytes=st.integers(2_000, 200_000),
       window=st.sampled_from(["24h", "2d", "7d"]), speed=st.floats(0.5, 200), p05=st.floats(0.05, 1.0),
       every=st.sampled_from([None, "10m", "1h"]), failure=st.floats(0, 0.5), seed=st.integers(0, 2**32 - 1))
def test_expired_completed_failed_add_up(n, max_requests, max_bytes, window, speed, p05, every, failure, seed):
    rng = np.random.default_rng(seed)
    created = np.sort(rng.uniform(0, 7200, n))
    prompt, completion = rng.integers(10, 20_000, n).astype(float), rng.integers(0, 2_000, n).astype(float)
    jobs = BatchJobs(submit_at="30m", submit_every=every, completion_window=window, max_requests=max_requests,
                     max_bytes=max_bytes)
    lane = BatchLane(speed_median=speed, speed_p05=speed * p05, request_failure=failure)
    per, table = process(created, prompt, completion, jobs, lane, np.random.default_rng(seed + 1), 7200.0)
    # per job and overall: completed + failed + expired = submitted
    assert (table["completed"] + table["failed"] + table["expired"] == table["requests"]).all()
    assert table["requests"].sum() == n
    assert np.bincount(per["status"], minlength=3).tolist() == [table["completed"].sum(), table["expired"].sum(),
                                                                table["failed"].sum()]
    # Groq's caps: at most max_requests a file, at most max_bytes unless one request alone is larger
    assert (table["requests"] <= max_requests).all()
    assert ((table["bytes"] <= max_bytes) | (table["requests"] == 1)).all()
    # nobody is submitted before it exists; expired means not done by the window's end, at that instant
    assert (per["submitted"] >= created).all()
    deadline = per["submitted"] + jobs.completion_window
    assert (per["finished"][per["status"] == 1] == deadline[per["status"] == 1]).all()
    assert (per["finished"][per["status"] != 1] <= deadline[per["status"] != 1]).all()
    assert ((table["status"] == "expired") == (table["expired"] > 0)).all()


def test_deterministic_speed_gives_exact_finish_and_expiry():
    """No start delay and no speed spread: request k of a job finishes at submit + (k x work) / speed;
    those past the window expire."""
    n, work = 10, 1000.0 + 200.0
    lane = BatchLane(start_median=0, start_p95=0, speed_median=0.1, speed_p05=0.1)
    jobs = BatchJobs(submit_at="1h", completion_window="24h")
    per, table = process(np.zeros(n), np.full(n, 1000.0), np.full(n, 200.0), jobs, lane,
                         np.random.default_rng(0), 7200.0)
    finish = 3600 + np.arange(1, n + 1) * work / 0.1  # 12 000 s each
    done = finish <= 3600 + 86_400
    assert done.sum() == 7  # 7 x 12 000 = 84 000 s <= 86 400 < 96 000
    assert np.allclose(per["finished"][done], finish[done])
    assert (per["status"] == np.where(done, 0, 1)).all()
    assert table["status"].tolist() == ["expired"] and np.isnan(table["completion_time"][0])


def test_submissions_and_caps():
    assert BatchJobs().submissions(3600, 3500).tolist() == [3600]  # default: one, at the horizon
    assert BatchJobs(submit_at="0s", submit_every="20m").submissions(3600, 3590).tolist() == [0, 1200, 2400, 3600]
    assert BatchJobs(submit_at="10m").submissions(3600, 3000).tolist() == [600, 3600]  # late ones: at the end
    job = cut_jobs(np.zeros(7), np.array([5, 5, 5, 20, 1, 1, 1.0]), 3, 10)
    assert job.tolist() == [0, 0, 1, 2, 3, 3, 3]
    with pytest.raises(ValidationError, match=r"outside what Groq accepts \(24h to 7d\), got 12h"):
        BatchJobs(completion_window="12h")
    with pytest.raises(ValidationError, match="less than or equal to 50000"):
        BatchJobs(max_requests=MAX_REQUESTS + 1)
    with pytest.raises(ValidationError):
        BatchJobs(max_bytes=MAX_BYTES + 1)
    with pytest.raises(ValidationError, match="speed_p05"):
        BatchLane(speed_median=100, speed_p05=200)


def _state(sim: Simulation, now: float) -> list:
    return [(u, lim.remaining(now), lim.reset(now)) for ls in sim.limitsets for u, lim in ls.units.items()]


@settings(max_examples=8)
@given(rate=st.integers(60, 3000), seed=st.integers(0, 1000))
def test_batch_lane_never_touches_on_demand_limits(rate, seed):
    """The on-demand group's records are the same with or without a heavy batch group on the same model,
    and a batch group alone leaves the org's limit state as new."""
    chat = client(name="chat", model="llama-3.1-8b-instant", rate="20/min", policy="groq-sdk", project="p")
    bulk = client(name="bulk", model="llama-3.1-8b-instant", rate=f"{rate}/min", lane="batch")
    projects = {"p": Project()}
    alone = run([chat], duration=600, seed=seed, projects=projects).records
    both = run([chat, bulk], duration=600, seed=seed, projects=projects).records
    mine = both[both["client"] == "chat"].reset_index(drop=True)
    cols = ["created", "finished", "outcome", "attempts", "n429", "admitted"]
    assert mine[cols].equals(alone[cols])
    assert (both[both["client"] == "bulk"]["service_tier"] == "batch").all()
    spec = RunSpec(clients=[bulk], policies=policy_table(), duration=600)
    sim = Simulation(spec, seed)
    fresh = _state(sim, 600.0)
    sim.run()
    assert _state(sim, 600.0) == fresh and sim.events == 0


def test_batch_records_jobs_and_cost():
    bulk = client(name="bulk", model="llama-3.1-8b-instant", rate="600/min", lane="batch",
                  prompt_tokens=1500, max_tokens=300)
    res = run(bulk, duration=1800, org=Org(tier="developer", batch=BatchLane(speed_median=2000, speed_p05=300)),
              seed=5)
    rec, jobs = res.records, res.jobs
    assert set(rec["outcome"].unique()) <= {"ok", "expired"}
    assert len(jobs) == 1 and jobs["requests"].sum() == len(rec)
    assert (rec["job"] == 0).all() and (rec["submitted"] == 1800).all() and rec["admitted"].isna().all()
    cost = request_costs(rec, res.spec)
    ok = (rec["outcome"] == "ok").to_numpy()
    # half of list price (llama-3.1-8b-instant: $0.05 in / $0.08 out per 1M; the batch page: "50 % cheaper"),
    # expired requests free
    assert BATCH_DISCOUNT == 0.5
    assert cost[ok] == pytest.approx(0.5 * (1500 * 0.05 + 300 * 0.08) / 1e6)
    assert (cost[~ok] == 0).all()
    on_demand = rec.assign(service_tier="on_demand")
    cached = replace(res.spec, org=res.spec.org.model_copy(update={"accounting": Accounting(cache_hit_ratio=0.5)}))
    list_price = (750 * 0.05 + 750 * 0.025 + 300 * 0.08) / 1e6  # half the prompt cached at half price
    assert request_costs(on_demand, cached)[ok] == pytest.approx(list_price)
    # the batch discount does not stack with caching
    assert request_costs(rec, cached)[ok] == pytest.approx(cost[ok])
    assert not request_costs(rec, replace(res.spec, org=res.spec.org.model_copy(update={"tier": "free"}))).any()


def test_jobs_from_records_agree_with_the_lane():
    bulk = client(name="bulk", model="llama-3.1-8b-instant", rate="300/min", lane="batch", prompt_tokens=3000,
                  max_tokens=300, batch=BatchJobs(submit_at="0s", submit_every="10m", max_requests=1000))
    res = run(bulk, duration=3600, org=Org(batch=BatchLane(speed_median=300, speed_p05=20)), seed=2)
    lane, derived = res.jobs, jobs_from_records(res.records)
    assert len(lane) > 6 and (lane["status"] == "expired").any() and (lane["status"] == "completed").any()
    for col in ("job", "submitted", "requests", "completed", "failed", "expired", "finished", "completion_time"):
        assert np.allclose(derived[col].to_numpy(float), lane[col].to_numpy(float), equal_nan=True), col
    assert (derived["status"] == lane["status"]).all()


def test_the_job_table_keeps_requests_without_a_client():
    """An emulator's batch sent without a labelled key has no client: its job is still in the table."""
    rec = pd.DataFrame({"client": pd.Categorical([None, None, "a"]), "job": [0, 0, 1],
                        "submitted": [1.0, 1.0, 5.0], "finished": [2.0, 3.0, 9.0],
                        "outcome": pd.Categorical(["ok", "expired", "ok"])})
    table = jobs_from_records(rec).sort_values("job")
    assert table[["job", "requests", "completed", "expired"]].values.tolist() == [[0, 2, 1, 1], [1, 1, 1, 0]]
    assert table["status"].astype(str).tolist() == ["expired", "completed"]


def _lanes_doc_block(header: str) -> dict:
    """The settings docs/lanes.md shows under ``header`` in its indented TOML examples."""
    lines = (Path(__file__).resolve().parents[1] / "docs" / "lanes.md").read_text(encoding="utf-8").splitlines()
    k = next(n for n, line in enumerate(lines) if line.startswith(f"    {header}"))
    block = []
    for line in lines[k + 1:]:
        if not line.startswith("    "):
            break
        block.append(line.strip())
    return tomllib.loads("\n".join(block))


def test_the_lanes_defaults_are_the_ones_docs_lanes_md_states():
    """What a scenario gets without setting the lanes' assumptions is what docs/lanes.md shows and its table
    states (start delay median 15 min, p95 3 h; 5 000 tokens/s per job, 5 % below 1 000; a request line 300 B
    + 4 B per prompt token; files of at most 50 000 requests and 200 MB; flex at 10x, calm 50 min, scarce
    10 min, failing half the attempts when scarce)."""
    batch, flex = _lanes_doc_block("[org.batch]"), _lanes_doc_block("[org.flex]")
    assert {"start_median", "start_p95", "speed_median", "speed_p05"} <= batch.keys()
    assert {"multiplier", "calm", "scarce", "scarce_failure"} <= flex.keys()
    assert BatchLane() == BatchLane(**batch) and Flex() == Flex(**flex)
    jobs = BatchJobs()
    assert (jobs.line_overhead, jobs.bytes_per_token) == (300.0, 4.0)
    assert (jobs.max_requests, jobs.max_bytes) == (50_000, 200_000_000) == (MAX_REQUESTS, MAX_BYTES)
    assert jobs.completion_window == 24 * 3600.0


def test_the_completion_window_is_what_groq_accepts():
    """Groq's batch docs: a completion_window from 24 h to 7 d."""
    for ok in ("24h", "3d", "7d"):
        BatchJobs(completion_window=ok)
    for bad in ("23h59m", "7d1s"):
        with pytest.raises(ValidationError, match="24h to 7d"):
            BatchJobs(completion_window=bad)


def test_start_delays_and_speeds_are_lognormal_with_the_quantiles_asked():
    lane = BatchLane(start_median="20m", start_p95="2h", speed_median=4000, speed_p05=500)
    delays = lane.start_delays(np.random.default_rng(1), 200_000)
    assert np.median(delays) == pytest.approx(1200.0, rel=0.01)
    assert np.percentile(delays, 95) == pytest.approx(7200.0, rel=0.02)
    speeds = lane.speeds(np.random.default_rng(2), 200_000)
    assert np.median(speeds) == pytest.approx(4000.0, rel=0.01)
    assert np.percentile(speeds, 5) == pytest.approx(500.0, rel=0.02)
    # a start median of 0: every job starts at once (the default p95 unused; one given is refused, below)
    assert not BatchLane(start_median=0).start_delays(np.random.default_rng(3), 100).any()


#: a lane without randomness: jobs start when submitted and run at 100 tokens/s
STEADY = BatchLane(start_median=0, start_p95=0, speed_median=100, speed_p05=100)


def test_process_by_hand():
    """Five requests of 100 + 100 tokens (a 700-byte line each: 300 B + 4 B x 100 prompt tokens), one
    submission at the horizon, files of at most 2 requests: jobs [0, 0, 1, 1, 2], each request done 2 s after
    the one before it in its file, a job's first 2 s after its start."""
    created = np.array([0.0, 10.0, 20.0, 30.0, 40.0])
    tokens = np.full(5, 100.0)
    per, table = process(created, tokens, tokens, BatchJobs(max_requests=2), STEADY, np.random.default_rng(0), 3600.0)
    assert per["job"].tolist() == [0, 0, 1, 1, 2] and (per["submitted"] == 3600.0).all()
    assert per["finished"].tolist() == [3602.0, 3604.0, 3602.0, 3604.0, 3602.0] and not per["status"].any()
    assert table["requests"].tolist() == [2, 2, 1] and table["bytes"].tolist() == [1400.0, 1400.0, 700.0]
    assert table["completion_time"].tolist() == [4.0, 4.0, 2.0]
    # the same files cut by size: 1 400 bytes hold two of these lines
    per, _ = process(created, tokens, tokens, BatchJobs(max_bytes=1400), STEADY, np.random.default_rng(0), 3600.0)
    assert per["job"].tolist() == [0, 0, 1, 1, 2]
    # a job that cannot finish in its window: its requests end expired at the window's end
    slow = BatchLane(start_median=0, start_p95=0, speed_median=1, speed_p05=1)
    big = np.full(2, 50_000.0)
    per, table = process(created[:2], big, big, BatchJobs(), slow, np.random.default_rng(0), 3600.0)
    assert per["status"].tolist() == [1, 1] and (per["finished"] == 3600.0 + 86_400).all()
    assert table["status"].tolist() == ["expired"] and np.isnan(table["completion_time"][0])
    # nothing created: nothing submitted
    per, table = process(np.empty(0), np.empty(0), np.empty(0), BatchJobs(), STEADY, np.random.default_rng(0), 60.0)
    assert all(v.size == 0 for v in per.values()) and table.empty and "completion_time" in table


def test_submissions_and_files():
    hour = 3600.0
    every = BatchJobs(submit_at="1h", submit_every="2h")
    assert (every.submissions(10 * hour, 8 * hour) / hour).tolist() == [1, 3, 5, 7, 9]
    assert (every.submissions(10 * hour, 9 * hour) / hour).tolist() == [1, 3, 5, 7, 9]  # the last one takes it
    assert (every.submissions(10 * hour, 9.5 * hour) / hour).tolist() == [1, 3, 5, 7, 9, 10]  # one more at the end
    at_end = BatchJobs(submit_at="10h", submit_every="2h")
    assert (at_end.submissions(10 * hour, 9 * hour) / hour).tolist() == [10]  # at the horizon: one, in the drain
    # a new file at each new submission, at max_requests, and before a line that would pass max_bytes
    sub = np.array([1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0])
    assert cut_jobs(sub, np.full(7, 10.0), 2, 1e9).tolist() == [0, 0, 1, 2, 2, 3, 3]
    assert cut_jobs(sub, np.array([5.0, 5.0, 1.0, 20.0, 1.0, 9.0, 1.0]), 100, 10).tolist() == [0, 0, 1, 2, 3, 3, 4]


def test_settings_at_their_edges():
    for ok in ({"submit_every": "1s"}, {"max_requests": 1}, {"max_bytes": 1}, {"bytes_per_token": 0.5},
               {"line_overhead": 0}, {"submit_at": 0}):
        BatchJobs(**ok)
    for bad in ({"submit_every": "0.5s"}, {"max_requests": 0}, {"max_bytes": 0}, {"bytes_per_token": 0},
                {"line_overhead": -1}, {"submit_at": -1}, {"max_requests": MAX_REQUESTS + 1}):
        with pytest.raises(ValidationError):
            BatchJobs(**bad)
    with pytest.raises(ValidationError, match="start_p95 must be >= start_median"):
        BatchLane(start_median="1h", start_p95="30m")
    with pytest.raises(ValidationError, match="start_p95 has no effect with start_median = 0"):
        BatchLane(start_median=0, start_p95="5h")  # (it would be silently ignored)
    BatchLane(start_median=0, start_p95=0)
    for ok in ({"multiplier": 0.5}, {"calm": "1s"}, {"scarce": 0}, {"scarce": "1s"}):
        Flex(**ok)
    for bad in ({"multiplier": 0}, {"multiplier": float("inf")}, {"calm": "0.5s"}, {"scarce": "0.5s"}):
        with pytest.raises(ValidationError):
            Flex(**bad)


def test_jobs_from_records_without_batch_rows_and_in_client_order():
    assert jobs_from_records(pd.DataFrame({"client": ["a"], "outcome": ["ok"]})).empty
    assert jobs_from_records(pd.DataFrame({"client": ["a"], "job": [-1], "outcome": ["ok"], "submitted": [0.0],
                                           "finished": [1.0]})).empty
    rec = pd.DataFrame({"client": ["b", "a", "b"], "job": [0, 0, 1], "outcome": ["ok", "expired", "ok"],
                        "submitted": [10.0, 10.0, 20.0], "finished": [12.0, 86_410.0, 25.0]})
    table = jobs_from_records(rec)
    assert list(zip(table["client"], table["job"])) == [("a", 0), ("b", 0), ("b", 1)]
    assert table["status"].tolist() == ["expired", "completed", "completed"]
    assert table["completion_time"].tolist()[1:] == [2.0, 5.0] and np.isnan(table["completion_time"][0])


def test_audio_takes_its_time_scaled_by_the_jobs_speed():
    """A speech-to-text request has no tokens: its time in a job is its audio over the model's speed factor,
    times median / the job's speed.  A chat request's time is unchanged by an all-zero audio column."""
    rng = np.random.default_rng(4)
    n = 40
    created = np.sort(rng.uniform(0, 3600, n))
    tokens, audio_time = rng.integers(0, 500, n).astype(float), rng.uniform(0, 30, n)
    lane = BatchLane(speed_median=200, speed_p05=40)
    jobs = BatchJobs(max_requests=7)
    per, table = process(created, tokens, tokens, jobs, lane, np.random.default_rng(9), 3600.0, audio_time)
    job = per["job"]
    speed, start = table["speed"].to_numpy()[job], table["started"].to_numpy()[job]
    first = np.searchsorted(job, job)  # each request's job's first request
    so_far = np.array([(2 * tokens[f:i + 1]).sum() / s + audio_time[f:i + 1].sum() * 200 / s
                       for i, (f, s) in enumerate(zip(first, speed))])
    done = per["status"] != 1
    assert done.all() and np.allclose(per["finished"], start + so_far, rtol=1e-12)
    assert len(set(speed.tolist())) > 1  # (the jobs' speeds differ: the scaling is seen)
    plain, _ = process(created, tokens, tokens, jobs, lane, np.random.default_rng(9), 3600.0)
    zero, _ = process(created, tokens, tokens, jobs, lane, np.random.default_rng(9), 3600.0, np.zeros(n))
    assert (plain["finished"] == zero["finished"]).all()
    assert (per["finished"] > plain["finished"]).all()


def test_a_whisper_batch_is_as_slow_as_its_audio():
    """An hour of whisper-large-v3 audio a request (189x real time, docs): at a fixed job speed equal to the
    median, request k of the one job ends k x 3600 / 189 s after the job starts, and what is not done within
    the 24 h window expires (86 400 / (3600 / 189) = 4 536 requests fit)."""
    scenario = scenario_from_dict({
        "scenario": {"name": "stt", "duration": "1h"},
        "org": {"tier": "developer", "batch": {"start_median": 0, "start_p95": 0, "speed_median": 5000,
                                               "speed_p05": 5000}},
        "clients": [{"name": "stt", "model": "whisper-large-v3", "lane": "batch",
                     "arrival": {"kind": "constant", "rate": "100/min"},
                     "audio_seconds": {"dist": "fixed", "value": 3600}}]})
    res = simulate(scenario.spec({}), scenario.seed(0))
    rec = res.records
    assert len(rec) == 6000 and (rec["job"] == 0).all() and not rec["prompt_tokens"].any()
    k = np.arange(1, 6001)
    ok = rec["outcome"].astype(str).to_numpy() == "ok"
    assert ok.sum() == 4536 and ok[:4536].all()
    assert np.allclose(rec["finished"].to_numpy()[ok], 3600 + k[ok] * 3600 / 189, rtol=1e-12)
    assert (rec["finished"][~ok] == 3600 + 86_400).all()
    assert res.jobs["status"].tolist() == ["expired"]
