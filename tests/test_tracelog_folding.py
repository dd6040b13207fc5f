"""``groqsim trace``'s folding, window by window (sim.tracelog): small logs whose right folding is stated by hand
(which failed attempt each retry repeats, the trace's rows), the edges of each window exactly, the groq SDK's
own retry rule as the reference, the notes' texts, and the matcher's parts (``_pairs``, ``_match``,
``_candidates``) against what their docstrings promise."""
from __future__ import annotations

import json
import warnings
from unittest import mock

import httpx
import numpy as np
import pytest
from groq import Groq
from groq import _base_client
from groq._models import FinalRequestOptions
from hypothesis import given, settings
from hypothesis import strategies as st

import sim.tracelog as tracelog
from sim.fields import MAX_SIZE
from sim.tracelog import NEAR, RECENT, _candidates, _match, _pairs, log_to_trace, sdk_backoff
from tests.helpers import dense_sdk_log, log_line as _line, log_usage as _usage

ALLOWED = "allowed: chat.completions, audio.transcriptions, audio.translations"


def _trace(tmp_path, lines):
    path = tmp_path / "log.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return log_to_trace(path)


def _sizes(export):
    return export.trace[["prompt_tokens", "max_tokens", "completion_tokens"]].astype(float).values.tolist()


# ---- the SDK's back-off ---------------------------------------------------------------------------------------


def test_sdk_backoff_spans_exactly_the_sdks_own_waits():
    """groq-python's ``_calculate_retry_timeout`` (no retry-after) with its jitter at both ends: retry k waits
    between the two, and ``sdk_backoff(k)`` is their middle and half-range, up to the 8 s cap and far past it."""
    client, options = Groq(api_key="x", max_retries=100), FinalRequestOptions.construct(method="post", url="/x")
    for k in range(1, 71):
        waits = []
        for u in (0.0, 1.0):  # random() in [0, 1): the longest wait, the shortest (its limit)
            with mock.patch.object(_base_client, "random", lambda u=u: u):
                waits.append(client._calculate_retry_timeout(100 - (k - 1), options, None))
        mean, half = sdk_backoff(k)
        assert (mean - half, mean + half) == pytest.approx((min(waits), max(waits)), abs=1e-12), k


def test_the_sdk_ignores_a_retry_after_of_0():
    """The reference for the next test: a ``retry-after: 0`` is no wait the SDK obeys (it wants 0 < s <= 60);
    it backs off instead."""
    client, options = Groq(api_key="x", max_retries=2), FinalRequestOptions.construct(method="post", url="/x")
    with mock.patch.object(_base_client, "random", lambda: 0.0):
        assert client._calculate_retry_timeout(2, options, httpx.Headers({"retry-after": "0"})) == 0.5
        assert client._calculate_retry_timeout(2, options, httpx.Headers({"retry-after": "3"})) == 3.0


def test_a_retry_after_of_0_is_no_expected_retry_time(tmp_path):
    """B's 429 (no retry-after) is answered at 0.2 s, A's (``retry-after: 0``) at 0.55 s; a retry goes out at
    0.56 s.  The SDK backs off after both (0.5 x 0.875 s on average): B's is due at 0.6375, A's at 0.9875, so
    the retry is B's.  Taken at its word, A's 0 s would have put A's due at 0.55 and taken the retry."""
    lines = [_line(0.0, 0.2, 429, 0, "b0"), _line(0.1, 0.55, 429, 0, "a0", retry_after=0),
             _line(0.56, 0.9, 200, 1, "b1", usage=_usage(100, 10))]
    export = _trace(tmp_path, lines)
    assert export.trace["timestamp"].tolist() == [0.0, 0.1]
    assert export.outcomes["attempts"].tolist() == [2, 1]
    assert export.outcomes["answered"].tolist() == [True, False]


def test_the_retry_after_decides_when_it_is_met(tmp_path):
    """A's 429 (answered at 0.1 s) says retry in 5 s; B's (answered at 1.0 s) says nothing, so its client backs
    off (due at 1.4375 s).  A retry sent at 5.1 s is A's, met to the millisecond; by the back-off alone it
    would be B's (3.66 s late against A's 4.56 s)."""
    lines = [_line(0.0, 0.1, 429, 0, "a0", retry_after=5), _line(0.5, 1.0, 429, 0, "b0"),
             _line(5.1, 5.5, 200, 1, "a1", usage=_usage(120, 30))]
    export = _trace(tmp_path, lines)
    assert export.trace["timestamp"].tolist() == [0.0, 0.5]
    assert export.outcomes["attempts"].tolist() == [2, 1]
    assert export.outcomes["latency"].tolist() == pytest.approx([5.5, 0.5], abs=1e-6)
    assert export.trace["prompt_tokens"].tolist()[0] == 120


# ---- the windows, edge by edge --------------------------------------------------------------------------------


@pytest.mark.parametrize("gap, folded", [(0.0, True), (119.99, True), (RECENT, True), (RECENT + 0.01, False)],
                         ids=["at-once", "inside", "edge", "outside"])
def test_a_failure_without_retry_after_is_looked_for_recent_seconds_back(tmp_path, gap, folded):
    """A 429 without retry-after, answered at 0.5 s; its retry sent ``gap`` later.  Up to RECENT = 120 s
    (the edge included; the SDK waits 60 s at most) it is the 429's retry, one request of two attempts; 10 ms
    beyond, it is a request of its own (the log began mid-request)."""
    assert RECENT == 120.0
    lines = [_line(0.0, 0.5, 429, 0, "a0"), _line(0.5 + gap, 0.9 + gap, 200, 1, "a1", usage=_usage(100, 20))]
    export = _trace(tmp_path, lines)
    if folded:
        assert export.outcomes["attempts"].tolist() == [2] and export.retries_folded == 1
        assert export.outcomes["latency"].tolist() == pytest.approx([0.9 + gap], abs=1e-6)
    else:
        assert export.outcomes["attempts"].tolist() == [1, 1] and export.retries_folded == 0
        assert export.trace["timestamp"].tolist() == [0.0, round(0.5 + gap, 6)]
        assert export.outcomes["answered"].tolist() == [False, True]


@pytest.mark.parametrize("offset, folded", [(-NEAR - 0.01, False), (-NEAR, True), (-59.0, True), (0.0, True),
                                            (NEAR, True), (NEAR + 0.01, False)],
                         ids=["early-out", "early-edge", "early-in", "on-time", "late-edge", "late-out"])
def test_a_long_retry_after_is_met_within_near_seconds(tmp_path, offset, folded):
    """A 429 answered at 0.5 s says retry in 300 s (a client of its own may obey that; the SDK does not).  A
    retry sent ``offset`` from 300.5 s, always more than RECENT after the 429, is its retry within NEAR = 60 s
    either way (edges included), and a request of its own 10 ms beyond."""
    assert NEAR == 60.0
    t = 300.5 + offset
    lines = [_line(0.0, 0.5, 429, 0, "a0", retry_after=300), _line(t, t + 0.4, 200, 1, "a1", usage=_usage(90, 9))]
    export = _trace(tmp_path, lines)
    assert export.outcomes["attempts"].tolist() == ([2] if folded else [1, 1])
    assert export.retries_folded == int(folded)


def test_a_failure_answered_after_the_retry_was_sent_is_not_its_predecessor(tmp_path):
    """The 429 is answered at 1.0 s, saying 5 s; an attempt marked as a retry goes out at 0.99 s, within NEAR of
    the 429's due time but before the 429 came back: it cannot repeat it.  Two requests."""
    lines = [_line(0.0, 1.0, 429, 0, "a0", retry_after=5), _line(0.99, 1.3, 200, 1, "x1", usage=_usage(80, 8))]
    export = _trace(tmp_path, lines)
    assert export.outcomes["attempts"].tolist() == [1, 1] and export.retries_folded == 0
    assert export.trace["timestamp"].tolist() == [0.0, 0.99]


def test_a_rank_with_one_retry_folds_without_a_warning(tmp_path):
    """One retry and its 429: folded, and quietly (scipy warns about a zero weight it drops: a dummy edge whose
    cost came to 0 would have said so on the user's terminal)."""
    lines = [_line(0.0, 0.1, 429, 0, "a0", retry_after=1), _line(1.1, 1.4, 200, 1, "a1", usage=_usage(70, 7))]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        export = _trace(tmp_path, lines)
    assert export.outcomes["attempts"].tolist() == [2]


# ---- the notes ------------------------------------------------------------------------------------------------


def test_a_log_without_retry_count_keeps_every_line_and_says_so(tmp_path):
    lines = [_line(0.0, 0.1, 429, None, "a0", retry_after=1), _line(1.1, 1.4, 200, None, "a1", usage=_usage(70, 7))]
    export = _trace(tmp_path, lines)
    assert export.outcomes["attempts"].tolist() == [1, 1]
    assert "no retry_count in the log: every line is kept as a request of its own (retries not folded)" \
        in export.notes


def test_an_impossible_usage_is_imputed_and_said(tmp_path):
    """b's usage claims 300 completion tokens of max_tokens 256: not used; b gets the model's medians (of a
    alone: 100 and 40), and two notes say why."""
    lines = [_line(0.0, 0.5, 200, 0, "a", usage=_usage(100, 40)), _line(1.0, 1.5, 200, 0, "b", usage=_usage(90, 300))]
    export = _trace(tmp_path, lines)
    assert _sizes(export) == [[100, 256, 40], [100, 256, 40]]
    assert export.notes == [
        "1 line(s) report more completion_tokens than their max_tokens (impossible): their usage is not used "
        "(sizes imputed as for a request without it)",
        "1 chat request(s) without usage (0 never answered, 1 answered without it): completion set to the "
        "model's median (prompt imputed for 1 of them, the rest from their 429's Requested)"]


@pytest.mark.parametrize("n, where", [(5, "2, 3, 4, 5, 6"), (6, "2, 3, 4, 5, 6, ...")])
def test_the_lines_left_out_are_named_five_at_most(tmp_path, n, where):
    chat = _line(0.0, 0.5, 200, 0, "a", usage=_usage(100, 40))
    other = [_line(1.0 + m, 1.5 + m, 200, 0, f"e{m}", endpoint="embeddings") for m in range(n)]
    export = _trace(tmp_path, [chat, *other])
    assert export.notes == [f"{n} line(s) have an endpoint the simulator does not model ('embeddings'; {ALLOWED}): "
                            f"left out (line {where})"]
    assert len(export.trace) == 1


def test_a_long_endpoint_name_is_cut_to_40_characters(tmp_path):
    name = "x" * 50
    lines = [_line(0.0, 0.5, 200, 0, "a", usage=_usage(100, 40)), _line(1.0, 1.5, 200, 0, "b", endpoint=name)]
    export = _trace(tmp_path, lines)
    assert export.notes == [f"1 line(s) have an endpoint the simulator does not model ('{'x' * 39}; {ALLOWED}): "
                            "left out (line 2)"]


# ---- sizes: usage, the 429's Requested, medians -----------------------------------------------------------------


def test_an_answered_request_takes_its_own_usage(tmp_path):
    lines = [_line(0.0, 0.5, 200, 0, "a", usage=_usage(123, 45)), _line(1.0, 1.5, 200, 0, "b", usage=_usage(77, 5))]
    export = _trace(tmp_path, lines)
    assert _sizes(export) == [[123, 256, 45], [77, 256, 5]]
    assert export.notes == []


@pytest.mark.parametrize("requested, prompt", [
    (256, 100),                    # Requested = max_tokens names no prompt at all: the median
    (257, 1),
    (MAX_SIZE + 256, MAX_SIZE),    # the largest prompt believed
    (MAX_SIZE + 257, 100),         # past any request: the median
], ids=["no-prompt", "one-token", "max-size", "beyond"])
def test_the_prompt_of_a_request_never_answered_is_its_429s_requested_less_max_tokens(tmp_path, requested, prompt):
    """Groq charges prompt + max_tokens up front, so a token 429's Requested less max_tokens (256) is the prompt,
    when it is one (1 .. MAX_SIZE tokens); else the model's median prompt (100, of the answered request)."""
    lines = [_line(0.0, 0.5, 200, 0, "a", usage=_usage(100, 40)),
             _line(1.0, 1.1, 429, 0, "b", retry_after=2, requested=requested)]
    export = _trace(tmp_path, lines)
    assert _sizes(export)[1] == [prompt, 256, 40]
    by_median = int(prompt == 100)
    assert export.notes == [f"1 chat request(s) without usage (1 never answered): completion set to the model's "
                            f"median (prompt imputed for {by_median} of them, the rest from their 429's Requested)"]


def test_a_request_whose_429s_name_two_counts_takes_its_first_attempts(tmp_path):
    """One request refused three times, 1 s apart as its 429s say: on tokens (Requested 500), on requests (no
    count), on tokens again (Requested 600; a count allowed only because the 429 between names none).  It is
    one request, its prompt from the first count: 500 - 256."""
    lines = [_line(0.0, 0.1, 429, 0, "a0", retry_after=1, requested=500), _line(1.1, 1.2, 429, 1, "a1", retry_after=1),
             _line(2.2, 2.3, 429, 2, "a2", retry_after=1, requested=600)]
    export = _trace(tmp_path, lines)
    assert export.outcomes["attempts"].tolist() == [3]
    assert export.trace["prompt_tokens"].tolist() == [244]


def test_a_line_without_endpoint_but_with_audio_is_a_transcription(tmp_path):
    """A line without an endpoint is taken for chat, unless it carries audio (0.5 s here): then it is a
    transcription, of no tokens (not the chat medians of the answered chat request)."""
    lines = [_line(0.0, 0.5, 200, 0, "a", usage=_usage(100, 40)),
             _line(1.0, 1.5, 200, 0, "w", endpoint=None, audio=0.5, max_tokens=None)]
    export = _trace(tmp_path, lines)
    assert _sizes(export) == [[100, 256, 40], [0, 0, 0]]
    assert export.trace["audio_seconds"].tolist() == [0.0, 0.5]
    assert export.notes == []


# ---- _pairs: a binary search that must find exactly the brute-force pairs ----------------------------------------


def _brute_pairs(s_key, s_lo, s_hi, p_key, p_val):
    return sorted((i, j) for i in range(len(s_key)) for j in range(len(p_key))
                  if s_key[i] == p_key[j] and s_lo[i] <= p_val[j] <= s_hi[i])


def _found(*args):
    i, j = _pairs(*args)
    assert len(i) == len(j)
    return sorted(zip(i.tolist(), j.tolist()))


def test_pairs_of_nothing_are_none():
    e, s = np.empty(0), np.array([0])
    for args in ((s, np.array([1.0]), np.array([2.0]), np.empty(0, int), e),
                 (np.empty(0, int), e, e, s, np.array([1.0]))):
        i, j = _pairs(*args)
        assert len(i) == 0 and len(j) == 0


def test_pairs_never_cross_keys_at_the_edges_of_the_range():
    """A retry of key 0 whose window spans the top of the values, failures of key 1 at the bottom, or a window
    reaching far past every failure: no pair (the keys' ranges sit apart however the windows and values lie)."""
    assert _found(np.array([0]), np.array([50.0]), np.array([100.0]), np.array([0, 1]), np.array([0.0, 0.0])) == []
    assert _found(np.array([1]), np.array([0.0]), np.array([5.0]), np.array([0, 1]), np.array([0.0, 100.0])) == []
    # the window reaches 55 s past the last failure (a retry sent long after every failure was answered)
    assert _found(np.array([0]), np.array([50.0]), np.array([100.0]), np.array([0, 1]), np.array([45.0, 45.0])) == []
    assert _found(np.array([0, 1]), np.array([0.0, 0.0]), np.array([100.0, 100.0]), np.array([1, 0]),
                  np.array([0.0, 100.0])) == [(0, 1), (1, 0)]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 200), st.integers(0, 80)), max_size=8),
       st.lists(st.tuples(st.integers(0, 3), st.integers(0, 280)), max_size=10))
def test_pairs_are_exactly_those_of_a_window(retries, failures):
    """Every (retry, failure) of one key with lo <= value <= hi (edges included), none else: values on a
    quarter-second grid, so that edges are met exactly and no tolerance decides."""
    s_key = np.array([r[0] for r in retries], int)
    s_lo = np.array([r[1] / 4 for r in retries], float)
    s_hi = s_lo + np.array([r[2] / 4 for r in retries], float)
    p_key = np.array([f[0] for f in failures], int)
    p_val = np.array([f[1] / 4 for f in failures], float)
    assert _found(s_key, s_lo, s_hi, p_key, p_val) == _brute_pairs(s_key, s_lo, s_hi, p_key, p_val)


# ---- _match ---------------------------------------------------------------------------------------------------


def test_match_without_pairs_leaves_every_retry_alone():
    assert _match(3, 2, np.empty(0, int), np.empty(0, int), np.empty(0)).tolist() == [-1, -1, -1]


def test_match_leaves_alone_exactly_the_retries_no_matching_can_link():
    """Retry 0 has no candidate; retry 1 has failure 0: [-1, 0] (retry 0 takes its dummy, no failure)."""
    assert _match(2, 1, np.array([1]), np.array([0]), np.array([0.0])).tolist() == [-1, 0]
    # as many linked as can be before any cost: retry 1's only failure is 0, so retry 0 takes the dearer 1
    assert _match(2, 2, np.array([0, 0, 1]), np.array([0, 1, 0]), np.array([0.0, 50.0, 3.0])).tolist() == [1, 0]


# ---- _candidates: the cap is a budget of CANDIDATES pairs per retry of a chunk --------------------------------


def _crowd(n_fail, key, send, first_recv):
    """``n_fail`` failures of ``key`` answered 0.5 s apart from ``first_recv`` (none says retry-after), all
    before ``send`` and within RECENT of it: the first answered is the most missed."""
    recv = first_recv + 0.5 * np.arange(n_fail)
    return np.full(n_fail, key), recv, np.full(n_fail, np.nan), recv + sdk_backoff(1)[0]


def test_a_retry_over_the_budget_keeps_its_64_least_missed_candidates():
    assert tracelog.CANDIDATES == 64
    p_key, recv, due_after, due_backoff = _crowd(65, 0, 100.0, 10.0)
    i, j, miss = _candidates(np.array([0]), np.array([100.0]), p_key, recv, due_after, due_backoff)
    assert sorted(j.tolist()) == list(range(1, 65)) and set(i.tolist()) == {0}  # failure 0, answered first, dropped
    assert np.allclose(miss, 100.0 - due_backoff[j])


def test_a_chunk_within_its_budget_keeps_every_candidate():
    """Retry 0 has 65 candidates, retry 1 has 63: 128 pairs, 64 a retry on average, so nothing is dropped (the
    cap bounds a chunk's memory; it does not thin a chunk that fits)."""
    a, b = _crowd(65, 0, 100.0, 10.0), _crowd(63, 1, 100.0, 20.0)
    p_key, recv, due_after, due_backoff = (np.concatenate([x, y]) for x, y in zip(a, b))
    i, j, miss = _candidates(np.array([0, 1]), np.array([100.0, 100.0]), p_key, recv, due_after, due_backoff)
    assert sorted(zip(i.tolist(), j.tolist())) == [(0, m) for m in range(65)] + [(1, 65 + m) for m in range(63)]


def test_candidates_of_no_failure_are_none():
    e = np.empty(0)
    i, j, miss = _candidates(np.array([0, 0]), np.array([1.0, 2.0]), np.empty(0, int), e, e, e)
    assert len(i) == len(j) == len(miss) == 0


def _dense_log(n=30):
    return dense_sdk_log(n, 7)


@pytest.mark.parametrize("chunk", [1, 2 * 30, 7 * 30])
def test_a_chunk_looks_at_no_more_pairs_than_chunk_pairs_and_changes_nothing(tmp_path, monkeypatch, chunk):
    """30 requests of 3 attempts (30 failures a rank): with CHUNK_PAIRS = 1, 60 or 210 each search covers one,
    two or seven retries (at least one however small the budget) against the rank's 30 failures, and the
    trace is the one of a single chunk."""
    lines = _dense_log()
    whole = _trace(tmp_path, lines)
    assert whole.outcomes["attempts"].tolist() == [3] * 30
    seen = []
    real_pairs = tracelog._pairs

    def spy(s_key, s_lo, s_hi, p_key, p_val):
        seen.append(len(s_key))
        return real_pairs(s_key, s_lo, s_hi, p_key, p_val)

    monkeypatch.setattr(tracelog, "CHUNK_PAIRS", chunk)
    monkeypatch.setattr(tracelog, "_pairs", spy)
    parts = _trace(tmp_path, lines)
    assert max(seen) == max(1, chunk // 30) and min(seen) >= 1
    assert parts.trace.equals(whole.trace) and parts.outcomes.equals(whole.outcomes)
