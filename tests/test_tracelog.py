"""``groqsim trace``: SDK retries folded back into the requests they retry (sim.tracelog)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from groq._constants import INITIAL_RETRY_DELAY, MAX_RETRY_DELAY
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim.tracelog import SDK_INITIAL_DELAY, SDK_MAX_DELAY, log_to_trace, sdk_backoff

MODEL = "llama-3.1-8b-instant"
T0 = 1_793_577_600.0


def _line(t_send, t_recv, status, k, rid, retry_after=None, requested=None, usage=None, label="app",
          endpoint="chat.completions", audio=None):
    headers = {} if retry_after is None else {"retry-after": str(retry_after)}
    error = None
    if status == 429:
        unit = "tokens per minute (TPM)" if requested else "requests per minute (RPM)"
        error = {"type": "tokens" if requested else "requests", "code": "rate_limit_exceeded",
                 "message": f"Rate limit reached for model `{MODEL}` in organization `org_x` service tier "
                            f"`on_demand` on {unit}: Limit 6000, Used 5000, Requested {requested or 1}. "
                            f"Please try again in {retry_after or 1}s."}
    return {"t_send": T0 + t_send, "t_recv": T0 + t_recv, "status": status, "model": MODEL, "endpoint": endpoint,
            "max_tokens": None if audio else 256, "audio_seconds": audio, "usage": usage, "headers": headers,
            "error": error, "label": label, "request_id": rid, "retry_count": k}


def _usage(prompt, completion):
    return {"queue_time": 0.01, "prompt_tokens": prompt, "prompt_time": 0.01, "completion_tokens": completion,
            "completion_time": 0.1, "total_tokens": prompt + completion, "total_time": 0.11}


def _write(tmp_path, lines, name="log.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(x) + "\n" for x in sorted(lines, key=lambda x: x["t_recv"])))
    return path


def test_backoff_is_the_groq_sdks():
    assert (SDK_INITIAL_DELAY, SDK_MAX_DELAY) == (INITIAL_RETRY_DELAY, MAX_RETRY_DELAY)
    assert sdk_backoff(1) == (0.5 * 0.875, 0.5 * 0.125) and sdk_backoff(3) == (2.0 * 0.875, 2.0 * 0.125)
    assert sdk_backoff(10) == (8.0 * 0.875, 1.0)  # capped at MAX_RETRY_DELAY


def test_a_retry_that_fits_another_request_better_does_not_split_its_own(tmp_path):
    """A's 429 (asked 500 tokens) says retry in 2 s, B's (asked 700) in 1 s.  B's retry comes 1.3 s late, nearer
    A's expected retry time than B's, and is answered (a 200 names no tokens); then A's retry, refused again
    for its 500 tokens.  Linked line by line, B's retry took A's 429 and A's retry then had no predecessor:
    three requests out of two."""
    lines = [_line(0.0, 0.1, 429, 0, "a0", retry_after=2, requested=500),
             _line(0.5, 0.6, 429, 0, "b0", retry_after=1, requested=700),
             _line(2.9, 3.4, 200, 1, "b1", usage=_usage(440, 260)),
             _line(3.0, 3.1, 429, 1, "a1", retry_after=3, requested=500)]
    export = log_to_trace(_write(tmp_path, lines))
    assert len(export.trace) == 2 and export.retries_folded == 2
    assert export.trace["timestamp"].tolist() == [0.0, 0.5]
    a, b = export.trace.iloc[0], export.trace.iloc[1]
    assert (b["prompt_tokens"], b["completion_tokens"]) == (440, 260)  # B's own answer
    assert a["prompt_tokens"] == 500 - 256  # A never answered: its 429's Requested - max_tokens
    assert export.outcomes["attempts"].tolist() == [2, 2]
    assert export.outcomes["answered"].tolist() == [False, True]
    assert export.outcomes["latency"].tolist() == pytest.approx([3.1, 2.9], abs=1e-6)


def test_a_transcription_answered_is_answered(tmp_path):
    lines = [_line(0.0, 2.0, 200, 0, "w0", endpoint="audio.transcriptions", audio=30.0),
             _line(5.0, 5.1, 429, 0, "w1", retry_after=3, endpoint="audio.transcriptions", audio=12.0),
             _line(8.1, 9.0, 200, 1, "w1b", endpoint="audio.transcriptions", audio=12.0)]
    export = log_to_trace(_write(tmp_path, lines))
    assert export.trace["audio_seconds"].tolist() == [30.0, 12.0]
    assert export.outcomes["answered"].tolist() == [True, True] and export.outcomes["attempts"].tolist() == [1, 2]
    assert export.trace[["prompt_tokens", "completion_tokens"]].isna().all().all()  # no tokens to impute
    assert not any("without usage" in n or "unknown" in n for n in export.notes), export.notes


@st.composite
def sdk_logs(draw):
    """Requests of one key sent within a few seconds, each retried the way the groq SDK retries: after its
    429's retry-after when one (1-3 s) came, else after the jittered back-off, plus up to 0.3 s of the
    client's own delay; up to 3 retries, the last attempt answered or not.  Half the requests are refused on
    tokens, each asking its own count (a 200 names none)."""
    n = draw(st.integers(2, 16))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    lines = []
    for r in range(n):
        t = float(rng.uniform(0, 3))
        attempts = int(rng.integers(1, 5))
        requested = 300 + r if rng.random() < 0.5 else None
        for k in range(attempts):
            rtt = float(rng.uniform(0.05, 0.4))
            if k == attempts - 1 and rng.random() < 0.7:
                lines.append(_line(t, t + rtt, 200, k, f"r{r}_{k}", usage=_usage(100 + r, 50)))
                break
            ra = int(rng.integers(1, 4)) if rng.random() < 0.6 else None
            lines.append(_line(t, t + rtt, 429, k, f"r{r}_{k}", retry_after=ra, requested=requested))
            base = min(0.5 * 2 ** k, 8.0)
            t += rtt + (ra if ra is not None else base * (1 - 0.25 * rng.random())) + float(rng.uniform(0, 0.3))
    return n, lines


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sdk_logs())
def test_every_request_of_an_sdk_log_comes_back_whole(tmp_path, case):
    """However the requests' retries interleave, the fold finds as many requests as were sent, with as many
    attempts each: a link for every retry exists (its own request's), and the fold links as many as it can."""
    n, lines = case
    export = log_to_trace(_write(tmp_path, lines))
    assert len(export.trace) == n and export.retries_folded == len(lines) - n
    attempts = {}
    for x in lines:
        attempts[x["request_id"].split("_")[0]] = x["retry_count"] + 1
    assert sorted(export.outcomes["attempts"]) == sorted(attempts.values())
    firsts = sorted(x["t_send"] - T0 for x in lines if x["retry_count"] == 0)
    assert export.trace["timestamp"].tolist() == [round(t - firsts[0], 6) for t in firsts]
    assert export.outcomes["answered"].sum() == sum(x["status"] == 200 for x in lines)
