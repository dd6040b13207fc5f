"""``groqsim trace``: SDK retries folded back into the requests they retry (sim.tracelog)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from groq._constants import INITIAL_RETRY_DELAY, MAX_RETRY_DELAY
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim.engine import Simulation
from sim.scenario import scenario_from_dict
from sim.trace import check_kinds, read_trace
from sim.cli import main
from sim.config import DEFAULT_RESERVATION
from sim.errors import ConfigError
from sim.tracelog import SDK_INITIAL_DELAY, SDK_MAX_DELAY, log_to_trace, sdk_backoff
from tests.helpers import LOG_MODEL as MODEL, LOG_T0 as T0, dense_sdk_log, log_line as _line, log_usage as _usage


def _write(tmp_path, lines, name="log.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(x) + "\n" for x in sorted(lines, key=lambda x: x["t_recv"])))
    return path


def test_backoff_is_the_groq_sdks():
    assert (SDK_INITIAL_DELAY, SDK_MAX_DELAY) == (INITIAL_RETRY_DELAY, MAX_RETRY_DELAY)
    assert sdk_backoff(1) == (0.5 * 0.875, 0.5 * 0.125) and sdk_backoff(3) == (2.0 * 0.875, 2.0 * 0.125)
    assert sdk_backoff(10) == (8.0 * 0.875, 1.0)  # capped at MAX_RETRY_DELAY
    assert sdk_backoff(10**6) == sdk_backoff(10)  # (2 ** 999999 overflowed)


def test_a_retry_that_fits_another_request_better_does_not_split_its_own(tmp_path):
    """A's 429 (asked 500 tokens) says retry in 2 s, B's (asked 700) in 1 s.  B's retry comes 1.3 s late, nearer
    A's expected retry time than B's, and is answered (a 200 names no tokens); then A's retry, refused again
    for its 500 tokens.  Linked line by line, B's retry took A's 429 and A's retry then had no predecessor:
    three requests out of two."""
    lines = [_line(0.0, 0.1, 429, 0, "a0", retry_after=2, requested=500),
             _line(0.5, 0.6, 429, 0, "b0", retry_after=1, requested=700),
             _line(2.9, 3.4, 200, 1, "b1", usage=_usage(440, 250)),
             _line(3.0, 3.1, 429, 1, "a1", retry_after=3, requested=500)]
    export = log_to_trace(_write(tmp_path, lines))
    assert len(export.trace) == 2 and export.retries_folded == 2
    assert export.trace["timestamp"].tolist() == [0.0, 0.5]
    a, b = export.trace.iloc[0], export.trace.iloc[1]
    assert (b["prompt_tokens"], b["completion_tokens"]) == (440, 250)  # B's own answer
    assert a["prompt_tokens"] == 500 - 256  # A never answered: its 429's Requested - max_tokens
    assert export.outcomes["attempts"].tolist() == [2, 2]
    assert export.outcomes["answered"].tolist() == [False, True]
    assert export.outcomes["latency"].tolist() == pytest.approx([3.1, 2.9], abs=1e-6)
    assert export.notes == ["1 chat request(s) without usage (1 never answered): completion set to the model's "
                            "median (prompt imputed for 0 of them, the rest from their 429's Requested)"]
    assert export.trace["prompt_tokens"].dtype == "Int64"  # counts, as read_trace reads them


def test_a_client_that_obeys_a_long_retry_after_is_folded(tmp_path):
    """The SDK waits 60 s at most; a client of its own may obey a retry-after of 5 minutes.  Its retry, 300 s
    after the 429, is found through the retry-after (the SDK's 120 s window does not reach back that far); a
    retry 200 s after a 429 that asked for 10 s matches neither and starts a request of its own."""
    lines = [_line(0.0, 0.1, 429, 0, "a0", retry_after=300),
             _line(300.2, 300.5, 200, 1, "a1", usage=_usage(120, 40)),
             _line(1000.0, 1000.1, 429, 0, "b0", retry_after=10),
             _line(1200.1, 1200.4, 200, 1, "b1", usage=_usage(90, 30))]
    export = log_to_trace(_write(tmp_path, lines))
    assert export.outcomes["attempts"].tolist() == [2, 1, 1] and export.retries_folded == 1
    assert export.trace["timestamp"].tolist() == [0.0, 1000.0, 1200.1]
    assert export.trace["prompt_tokens"].tolist()[0] == 120


@pytest.mark.parametrize("endpoint", ["audio.transcriptions", "audio.translations"])
def test_a_transcription_answered_is_answered(tmp_path, endpoint):
    lines = [_line(0.0, 2.0, 200, 0, "w0", endpoint=endpoint, audio=30.0),
             _line(5.0, 5.1, 429, 0, "w1", retry_after=3, endpoint=endpoint, audio=12.0),
             _line(8.1, 9.0, 200, 1, "w1b", endpoint=endpoint, audio=12.0)]
    export = log_to_trace(_write(tmp_path, lines))
    assert export.trace["audio_seconds"].tolist() == [30.0, 12.0]
    assert export.outcomes["answered"].tolist() == [True, True] and export.outcomes["attempts"].tolist() == [1, 2]
    assert (export.trace[["prompt_tokens", "max_tokens", "completion_tokens"]] == 0).all().all()  # no tokens
    out = tmp_path / "trace.csv"
    export.trace.to_csv(out, index=False)
    assert read_trace(out)["audio_seconds"].tolist() == [30.0, 12.0]  # replayable (an empty completion was not)
    assert not any("without usage" in n or "unknown" in n for n in export.notes), export.notes


def test_a_transcription_of_unknown_length_is_left_empty_and_said(tmp_path):
    """An mp3 upload's length is unknown to the recorder (and a json answer has no duration): its cell is left
    empty, for the replaying client's audio to fill, with a note -- not 0 s, which ``groqsim check`` rejects
    for a speech-to-text model.  A request whose refused first attempt did not know it takes its answer's."""
    w = "audio.transcriptions"
    lines = [{**_line(0.0, 2.0, 200, 0, "w0", endpoint=w), "max_tokens": None},
             {**_line(5.0, 5.1, 429, 0, "w1", retry_after=3, endpoint=w), "max_tokens": None},
             _line(8.1, 9.0, 200, 1, "w1b", endpoint=w, audio=12.0),
             _line(10.0, 10.5, 200, 0, "c", usage=_usage(100, 40))]
    export = log_to_trace(_write(tmp_path, lines))
    assert export.trace["audio_seconds"].tolist() == pytest.approx([np.nan, 12.0, 0.0], nan_ok=True)
    assert export.notes == ["1 transcription(s) of unknown length (the recorder reads only WAV lengths, and only a "
                            "verbose_json answer has a duration): audio_seconds left empty: the replaying client "
                            "group's audio_seconds fills them (give it one)"]
    out = tmp_path / "trace.csv"
    export.trace.to_csv(out, index=False)
    df = read_trace(out)
    kinds = {MODEL: "stt"}  # (the log_line model stands for a whisper model here)
    check_kinds(str(out), df.iloc[:2], kinds, MODEL, audio=True)  # the client's audio fills the empty cell
    with pytest.raises(ConfigError, match="trace.csv:2: column audio_seconds: empty on a row"):
        check_kinds(str(out), df.iloc[:2], kinds, MODEL, audio=False)


def test_a_request_without_max_tokens_reserves_what_the_replay_charges(tmp_path):
    """A chat request that set no max_tokens is charged DEFAULT_RESERVATION (1 024) by the emulator and the
    calibration's replay: the trace says the same (it wrote the completion, 40, so a replay of the trace under
    max_tokens charging reserved 40 where the calibration had charged 1 024), or the completion where longer."""
    lines = [_line(0.0, 0.5, 200, 0, "a", usage=_usage(100, 40), max_tokens=None),
             _line(1.0, 1.5, 200, 0, "b", usage=_usage(100, 3000), max_tokens=None),
             _line(2.0, 2.5, 200, 0, "c", usage=_usage(100, 40), max_tokens=64)]
    export = log_to_trace(_write(tmp_path, lines))
    assert DEFAULT_RESERVATION == 1024
    assert export.trace["max_tokens"].tolist() == [1024, 3000, 64]
    assert export.trace["completion_tokens"].tolist() == [40, 3000, 40]
    assert export.notes == ["2 chat request(s) set no max_tokens: max_tokens written as 1024 (what the emulator and "
                            "the calibration's replay take such a request to reserve), or the completion where longer"]


def test_a_refused_request_without_max_tokens_takes_its_prompt_from_requested_less_the_reservation(tmp_path):
    """A request that set no max_tokens and was only ever refused on TPM: its 429's Requested is its prompt plus
    the reservation (1 024).  The split needed a max_tokens, so such a request took the model's median prompt
    (100 here, for 4 000): a replay of the trace then charged far less than Groq had refused."""
    lines = [_line(0.0, 0.5, 200, 0, "a", usage=_usage(100, 40)),
             _line(1.0, 1.1, 429, 0, "b", retry_after=20, requested=4000 + 256),
             _line(2.0, 2.1, 429, 0, "c", retry_after=20, requested=4000 + 1024, max_tokens=None)]
    export = log_to_trace(_write(tmp_path, lines))
    assert export.trace["prompt_tokens"].tolist() == [100, 4000, 4000]
    assert export.trace["max_tokens"].tolist() == [256, 256, 1024]
    assert export.notes[0].endswith("(prompt imputed for 0 of them, the rest from their 429's Requested)")


@pytest.mark.parametrize("prompt, taken", [(0, False), (1, True), (10_000_000, True), (10_000_001, False)])
def test_a_429s_requested_gives_a_prompt_of_1_to_max_size_tokens(tmp_path, prompt, taken):
    """Requested less the reservation is the prompt when it is 1 to MAX_SIZE (10 M) tokens; none (Requested no
    more than the reservation) or more than any request holds, and the prompt is the model's median (100)."""
    from sim.fields import MAX_SIZE
    assert MAX_SIZE == 10_000_000
    lines = [_line(0.0, 0.5, 200, 0, "a", usage=_usage(100, 40)),
             _line(1.0, 1.1, 429, 0, "b", retry_after=20, requested=prompt + 256)]
    export = log_to_trace(_write(tmp_path, lines))
    assert export.trace["prompt_tokens"].tolist() == [100, prompt if taken else 100]


def test_imputed_sizes_and_what_the_notes_say(tmp_path):
    """Two answered requests give the model's medians (prompt 110, completion 45).  A request refused on
    requests (no tokens named) and without max_tokens gets both medians and max_tokens 1 024; a
    200 without usage is imputed too and said so; a line of another endpoint is left out; a model with no
    answered request leaves its sizes empty, with a note."""
    def chat(t, status, rid, usage=None, model=MODEL, max_tokens=256):
        x = _line(t, t + 0.2, status, 0, rid, retry_after=5 if status == 429 else None, usage=usage)
        return {**x, "model": model, "max_tokens": max_tokens}
    lines = [chat(0.0, 200, "a", _usage(100, 40)), chat(1.0, 200, "b", _usage(120, 50)),
             chat(2.0, 429, "c", max_tokens=None), chat(3.0, 200, "d"),
             {**chat(4.0, 200, "e", _usage(1, 1)), "endpoint": "embeddings"},
             chat(5.0, 429, "f", model="qwen/qwen3-32b")]
    export = log_to_trace(_write(tmp_path, lines))
    assert export.lines == 5 and export.trace["timestamp"].tolist() == [0.0, 1.0, 2.0, 3.0, 5.0]
    rows = export.trace.set_index("timestamp")
    assert rows.loc[2.0, ["prompt_tokens", "max_tokens", "completion_tokens"]].tolist() == [110, 1024, 45]
    assert rows.loc[3.0, ["prompt_tokens", "max_tokens", "completion_tokens"]].tolist() == [110, 256, 45]
    assert rows.loc[5.0, ["prompt_tokens", "completion_tokens"]].isna().all()
    assert export.notes == [
        "1 line(s) have an endpoint the simulator does not model ('embeddings'; allowed: chat.completions, "
        "audio.transcriptions, audio.translations): left out (line 5)",
        "3 chat request(s) without usage (2 never answered, 1 answered without it): completion set to the "
        "model's median (prompt imputed for 3 of them, the rest from their 429's Requested)",
        "1 chat request(s) set no max_tokens: max_tokens written as 1024 (what the emulator and the calibration's "
        "replay take such a request to reserve), or the completion where longer",
        "some sizes are unknown (a model with no answered request): left empty; the scenario's client "
        "distributions fill them"]
    # as the note says: the trace reads back and runs, the client's completion filling the empty cell
    out = tmp_path / "trace.csv"
    export.trace.to_csv(out, index=False)
    assert read_trace(out)["completion_tokens"].isna().tolist() == [False] * 4 + [True]
    sc = scenario_from_dict({"scenario": {"name": "t", "duration": 60, "seed": 1}, "clients": [{
        "name": "app", "model": MODEL, "arrival": {"kind": "trace", "file": str(out)}, "prompt_tokens": 300,
        "max_tokens": 64, "completion_tokens": {"dist": "uniform", "low": 30, "high": 50}}]}, source="<test>")
    rec = Simulation(sc.spec(), np.random.SeedSequence(0)).run().records.set_index("created")
    assert rec.loc[5.0, ["prompt_tokens", "max_tokens"]].tolist() == [300, 256]  # its own max_tokens
    assert 30 <= rec.loc[5.0, "completion_tokens"] <= 50 and rec.loc[1.0, "completion_tokens"] == 50


def test_transcriptions_of_two_models_are_two_keys(tmp_path):
    """Two transcriptions (no max_tokens) of two models refused together: each retry is its own model's,
    although each is sent nearer the other's expected retry time."""
    lines = [_line(0.0, 0.1, 429, 0, "v0", retry_after=2, endpoint="audio.transcriptions", audio=30.0),
             _line(0.0, 0.2, 429, 0, "t0", retry_after=2, endpoint="audio.transcriptions", audio=20.0),
             _line(2.1, 4.0, 200, 1, "t1", endpoint="audio.transcriptions", audio=20.0),
             _line(2.2, 3.0, 200, 1, "v1", endpoint="audio.transcriptions", audio=30.0)]
    lines[1]["model"] = lines[2]["model"] = "whisper-large-v3-turbo"
    export = log_to_trace(_write(tmp_path, lines))
    assert export.outcomes["attempts"].tolist() == [2, 2]
    by_audio = dict(zip(export.trace["audio_seconds"], export.outcomes["latency"]))
    assert by_audio == pytest.approx({30.0: 3.0, 20.0: 4.0}, abs=1e-6)


def test_between_two_requests_alike_the_timing_decides(tmp_path):
    """Two requests the log cannot tell apart but by time: A's 429 says 5 s, B's 1 s.  Each retry goes to the
    request whose expected retry time it hits, so each request keeps its own answer (and latency)."""
    lines = [_line(0.0, 0.1, 429, 0, "a0", retry_after=5), _line(0.1, 0.2, 429, 0, "b0", retry_after=1),
             _line(1.2, 1.5, 200, 1, "b1", usage=_usage(70, 7)), _line(5.1, 5.6, 200, 1, "a1", usage=_usage(90, 9))]
    export = log_to_trace(_write(tmp_path, lines))
    assert export.trace[["prompt_tokens", "completion_tokens"]].values.tolist() == [[90, 9], [70, 7]]
    assert export.outcomes["latency"].tolist() == pytest.approx([5.6, 1.4], abs=1e-6)


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


def test_chunks_and_candidate_caps_change_nothing_but_memory(tmp_path, monkeypatch):
    """The pairs are looked at a few retries at a time and capped per retry: on a dense log, two retries per
    chunk and 8 candidates each give the same requests as one chunk and no cap."""
    import sim.tracelog as tracelog
    lines = dense_sdk_log(40, 3)
    path = _write(tmp_path, lines)
    whole = log_to_trace(path)
    monkeypatch.setattr(tracelog, "CHUNK_PAIRS", 2 * 40)  # two retries per chunk (40 failures a rank)
    monkeypatch.setattr(tracelog, "CANDIDATES", 8)
    parts = log_to_trace(path)
    assert len(whole.trace) == 40 and parts.trace.equals(whole.trace) and parts.outcomes.equals(whole.outcomes)


BIG = "above 10,000,000 (no request asks or is charged that much)"


@pytest.mark.parametrize("change, note", [
    ({"max_tokens": 1e20}, f"have a max_tokens {BIG}: used without it"),
    ({"audio_seconds": 1e20}, f"have an audio_seconds {BIG}: used without it"),
    ({"usage": _usage(10**20, 40)}, f"have a usage counting tokens {BIG}: used without it"),
    ({"max_tokens": None, "usage": _usage(90, 10**20)}, f"have a usage counting tokens {BIG}: used without it"),
    ({"label": ["a"]}, "have a label that is not a string: used without it"),
    ({"retry_count": 1e308}, "have a retry_count above 1,000 (no SDK retries that often): used without it"),
    ({"t_send": -1e308}, "have a negative t_send or t_recv (allowed: epoch seconds): left out"),
], ids=["max_tokens", "audio_seconds", "usage", "usage-completion", "label", "retry_count", "t_send"])
def test_a_value_no_log_holds_is_said_and_not_used(tmp_path, capsys, change, note):
    """A count beyond any request's (or a retry count beyond any SDK's), a label that is not a string, a time
    before 1970: the line is used without it (or left out), one note naming how many lines and which; the
    trace written reads back (a traceback, or a trace that could not be replayed, before)."""
    lines = [_line(0.0, 0.5, 200, 0, "a", usage=_usage(100, 40)), _line(1.0, 1.5, 200, 0, "b", usage=_usage(90, 30))]
    lines[1].update(change)
    log, out = _write(tmp_path, lines), tmp_path / "t.csv"
    assert main(["trace", str(log), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"note: 1 line(s) {note} (line 2)\n" in err and "Traceback" not in err, err
    assert len(read_trace(out)) == (1 if "left out" in note else 2)


def test_a_line_of_an_endpoint_not_modelled_is_left_out_and_said(tmp_path, capsys):
    """An endpoint the simulator does not model: its lines are left out, saying how many, which and what is
    allowed; a log of nothing else is one error saying so (a bare "no usable request" before)."""
    allowed = "allowed: chat.completions, audio.transcriptions, audio.translations"
    chat = _line(0.0, 0.5, 200, 0, "a", usage=_usage(100, 40))
    images = [_line(t, t + 0.5, 200, 0, f"i{t}", endpoint="images") for t in (1.0, 2.0)]
    out = tmp_path / "t.csv"
    assert main(["trace", str(_write(tmp_path, [chat, *images])), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert (f"note: 2 line(s) have an endpoint the simulator does not model ('images'; {allowed}): left out "
            "(line 2, 3)\n") in err
    assert "wrote " + str(out) + ": 1 request(s) from 1 log line(s)" in err
    log = _write(tmp_path, [*images, {**images[0], "endpoint": "embeddings", "t_send": T0 + 3.0}], "only.jsonl")
    assert main(["trace", str(log), "-o", str(out)]) == 2
    assert capsys.readouterr().err == (
        f"groqsim: error: {log}: no usable request in the log (3 line(s) have an endpoint the simulator does not "
        f"model ('images', 'embeddings'; {allowed}): left out (line 1, 2, 3))\n")
    with pytest.raises(ConfigError, match="no usable request"):
        log_to_trace(log)


def _failed_on_client(t_send, t_recv, k, kind, label="app"):
    """A recorder line of an attempt that failed on the client: no status, no usage, no headers."""
    code, message = {"timeout": ("client_timeout", "ReadTimeout: timed out"),
                     "connection": ("client_connection_error", "ConnectError: [Errno 111] Connection refused")}[kind]
    return {**_line(t_send, t_recv, None, k, None, label=label),
            "error": {"type": kind, "code": code, "message": message}}


def test_attempts_that_failed_on_the_client_are_folded_into_their_requests(tmp_path, capsys):
    """A times out (the SDK's timeout: status null), is refused, then answered; B's connection fails, then it is
    answered.  Each failed attempt is an attempt of its request, its retry linked to it by the SDK's back-off
    (no retry-after): two requests of 3 and 2 attempts, and the notes count the failures by kind.  A line
    without a status that is no client failure is still skipped, and said."""
    lines = [_failed_on_client(0.0, 0.2, 0, "timeout"),
             _failed_on_client(0.1, 0.1, 0, "connection"),
             _line(0.55, 0.9, 200, 1, "b1", usage=_usage(100, 40)),
             _line(0.65, 0.7, 429, 1, "a1", retry_after=1),
             _line(1.75, 2.1, 200, 2, "a2", usage=_usage(120, 50)),
             {**_line(5.0, 5.1, None, 0, "x"), "error": {"type": "tokens", "code": "?", "message": "?"}}]
    path = _write(tmp_path, lines)
    export = log_to_trace(path)
    assert export.trace["timestamp"].tolist() == [0.0, 0.1] and export.retries_folded == 3
    assert export.outcomes["attempts"].tolist() == [3, 2]
    assert export.outcomes["answered"].tolist() == [True, True]
    assert export.trace["prompt_tokens"].tolist() == [120, 100]
    assert export.outcomes["latency"].tolist() == pytest.approx([2.1, 0.8], abs=1e-6)
    tail = "no response, so no usage or headers; kept as attempts of their requests (the server may still have " \
           "served and charged them)"
    assert export.notes == ["1 line(s) lack status: skipped (line 6)",
                            f"1 attempt(s) timed out on the client (the SDK's timeout): {tail}",
                            f"1 attempt(s) failed on the client (a connection error): {tail}"]
    assert main(["trace", str(path), "-o", str(tmp_path / "t.csv")]) == 0
    err = capsys.readouterr().err
    assert "note: 1 attempt(s) timed out on the client" in err
    assert "2 request(s) from 5 log line(s) (3 SDK retries folded)" in err
