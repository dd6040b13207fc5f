"""Request traces: every cell validated (file:row and column named), unsorted rows sorted with a warning,
reading cached by content so an edited trace is read afresh."""
import warnings

import pandas as pd
import pytest

from sim.errors import ConfigError, InputWarning
from sim.trace import check_kinds, file_digest, read_trace


def _write(tmp_path, body, name="t.csv"):
    path = tmp_path / name
    path.write_bytes(body) if isinstance(body, bytes) else path.write_text(body)
    return path


def test_csv_with_optional_columns_and_empty_cells(tmp_path):
    df = read_trace(_write(tmp_path, "timestamp,model,prompt_tokens,max_tokens\n0.5,llama-3.1-8b-instant,10,\n"
                                     "1.5,,20,30\n"))
    assert list(df["timestamp"]) == [0.5, 1.5]
    assert df["model"][0] == "llama-3.1-8b-instant" and pd.isna(df["model"][1])  # empty: the client's model
    assert df["prompt_tokens"].tolist() == [10, 20] and df["max_tokens"].isna().tolist() == [True, False]


def test_iso_timestamps_are_seconds_from_the_first(tmp_path):
    df = read_trace(_write(tmp_path, "timestamp\n2025-03-01T12:00:00Z\n2025-03-01T12:00:02.5Z\n"
                                     "2025-03-01T13:00:02.5+01:00\n"))
    assert df["timestamp"].tolist() == [0.0, 2.5, 2.5]


def test_jsonl(tmp_path):
    df = read_trace(_write(tmp_path, '{"timestamp": 1, "prompt_tokens": 5}\n\n{"timestamp": 2}\n', "t.jsonl"))
    assert df["timestamp"].tolist() == [1.0, 2.0] and df["prompt_tokens"].isna().tolist() == [False, True]


@pytest.mark.parametrize("body, where", [
    ("timestamp,prompt_tokens\n1,5\n\n3,x\n", "t.csv:4: column prompt_tokens"),  # blank lines keep numbering
    ("timestamp,completion_tokens\n1,-1\n", "t.csv:2: column completion_tokens"),
    ("timestamp\n1\n2\n1e400\n", "t.csv:4: column timestamp"),
    ("timestamp,audio_seconds\n1,nan\n", "t.csv:2: column audio_seconds"),
])
def test_errors_name_file_row_and_column(tmp_path, body, where):
    with pytest.raises(ConfigError, match=where.replace(".", r"\.")):
        read_trace(_write(tmp_path, body))


def test_unsorted_rows_are_sorted_with_one_warning(tmp_path):
    path = _write(tmp_path, "timestamp,prompt_tokens\n3,30\n1,10\n2,20\n", "u.csv")
    with pytest.warns(InputWarning, match=r"u\.csv:3: timestamps are not in order \(1 after 3\)"):
        df = read_trace(path)
    assert df["prompt_tokens"].tolist() == [10, 20, 30]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_trace(path)  # the same contents again: read from the cache, warned once


def test_errors_after_sorting_still_name_the_file_row(tmp_path):
    path = _write(tmp_path, "timestamp,max_tokens,completion_tokens\n5,10,5\n1,10,50\n")
    with pytest.raises(ConfigError, match=r"t\.csv:3: column completion_tokens"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        read_trace(path)


def test_an_edited_trace_is_read_afresh(tmp_path):
    path = _write(tmp_path, "timestamp\n1\n2\n")
    before = file_digest(path)
    assert len(read_trace(path)) == 2
    path.write_text("timestamp\n1\n2\n3\n")
    assert len(read_trace(path)) == 3 and file_digest(path) != before
    assert file_digest(tmp_path / "absent.csv") == "missing"


def _trace_scenario(tmp_path, stamps, compare=""):
    _write(tmp_path, "timestamp,prompt_tokens,max_tokens\n" + "".join(f"{t},10,5\n" for t in stamps))
    return _write(tmp_path, "[scenario]\nduration = '30m'\n[[clients]]\nname = 'rec'\nmodel = 'openai/gpt-oss-20b'\n"
                            "arrival = { kind = 'trace', file = 't.csv' }\n" + compare, name="s.toml")


@pytest.mark.parametrize("command", ["check", "run"])
def test_a_trace_the_horizon_leaves_out_is_said(tmp_path, capsys, command):
    from sim.cli import main
    path = _trace_scenario(tmp_path, [4000, 4100])  # wholly after the 30 minutes: a run of nothing
    extra = ["--replications", "1", "--out", str(tmp_path / "o"), "--quiet"] if command == "run" else []
    assert main([command, str(path), *extra]) == 0
    err = capsys.readouterr().err
    assert ("warning: clients.rec: none of the 2 rows of t.csv falls in a run of 30m (the first is at 1h6m40s): "
            "nothing is replayed") in err


def test_a_trace_the_horizon_cuts_is_said_at_the_lowest_load(tmp_path, capsys):
    from sim.cli import main
    path = _trace_scenario(tmp_path, [60, 1200, 2400, 3000], "[compare]\nload = [4, 2]\n")
    assert main(["check", str(path)]) == 0  # at load 2, 3000 s -> 1500 s: all in
    assert "the rest are not sent" not in capsys.readouterr().err
    assert main(["check", str(path), "--duration", "20m"]) == 0  # at load 2: 30 s, 600 s in; 1200 s, 1500 s not
    err = capsys.readouterr().err
    assert "note: clients.rec: a run of 20m at load 2 replays 2 of the 4 rows of t.csv (the trace runs to 25m)" in err


def test_a_trace_replayed_whole_is_not_noted(tmp_path, capsys):
    from sim.cli import main
    assert main(["check", str(_trace_scenario(tmp_path, [0, 60, 1799.5]))]) == 0
    assert "clients.rec" not in capsys.readouterr().err


def test_a_rows_kind_error_names_its_line_in_the_file_even_after_sorting(tmp_path):
    """Rows are replayed sorted by timestamp; an error found on a sorted row names the line it came from."""
    path = tmp_path / "t.csv"
    path.write_text("timestamp,model,prompt_tokens,audio_seconds\n9,m,5,\n1,w,0,30\n4,w,1,30\n")
    with pytest.warns(InputWarning):
        df = read_trace(path)
    kinds = {"m": "chat", "w": "stt"}
    with pytest.raises(ConfigError, match=r"t\.csv:4: column prompt_tokens: 1 on a row for 'w'"):
        check_kinds(str(path), df, kinds, "m", audio=False)
    check_kinds(str(path), df.drop(index=1).reset_index(drop=True), kinds, "m", audio=False)  # the bad row gone
    empty = tmp_path / "e.csv"
    empty.write_text("timestamp,audio_seconds\n0,30\n1,\n")
    check_kinds(str(empty), read_trace(empty), kinds, "w", audio=True)  # empty cells: the group's own audio
    with pytest.raises(ConfigError, match=r"e\.csv:3: column audio_seconds: empty"):
        check_kinds(str(empty), read_trace(empty), kinds, "w", audio=False)


@pytest.mark.parametrize("name, body, message", [
    ("t.csv", "timestamp,timestamp\n1,2\n", "t.csv:1: column 'timestamp' appears twice in the header (each column "
     "once, among timestamp, model, prompt_tokens, max_tokens, completion_tokens, audio_seconds)"),
    ("t.csv", "\ntimestamp,prompt_tokens,prompt_tokens\n1,2,3\n", "t.csv:2: column 'prompt_tokens' appears twice"),
    ("t.csv", "timestamp,\n1,\n", "t.csv:1: trace columns must include timestamp and be among timestamp, model, "
     "prompt_tokens, max_tokens, completion_tokens, audio_seconds (unexpected: a column with no name)"),
    ("t.jsonl", '{"timestamp": 1}\n{"timestamp": 2, "": 1}\n', "t.jsonl:2: trace columns must include timestamp "
     "and be among timestamp, model, prompt_tokens, max_tokens, completion_tokens, audio_seconds (unexpected: a "
     "column with no name)"),
    ("t.jsonl", '{"timestamp": NaN}\n', "t.jsonl:1: column timestamp: NaN is not a number (allowed: seconds >= 0, "
     "or an ISO date-time)"),
    ("t.csv", "timestamp\n1\nnan\n", "t.csv:3: column timestamp: NaN is not a number (allowed: seconds >= 0, or "
     "an ISO date-time)"),
    ("t.jsonl", '{"timestamp": 1, "prompt_tokens": NaN}\n', "t.jsonl:1: column prompt_tokens: NaN is not a number "
     "(allowed: a whole number from 0 to 10,000,000)"),
], ids=["csv-duplicate", "csv-duplicate-after-a-blank-line", "csv-no-name", "jsonl-no-name", "jsonl-nan",
        "csv-nan", "jsonl-nan-count"])
def test_a_trace_message_says_what_is_wrong(tmp_path, capsys, name, body, message):
    """What the message says is the problem: a column named twice (it said the second cell was no timestamp),
    a column with no name (it said "unexpected: none"), NaN (a JSON NaN was taken for an empty cell: "empty"
    for a timestamp, silently the client's size for a count)."""
    from sim.cli import main
    _write(tmp_path, body, name)
    scenario = _write(tmp_path, "[scenario]\nduration = '2m'\n[[clients]]\nname = 'c'\nmodel = 'openai/gpt-oss-20b'\n"
                                f"arrival = {{ kind = 'trace', file = '{name}' }}\n", name="s.toml")
    assert main(["check", str(scenario)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"groqsim: error: {tmp_path}/{message}") and err.count("\n") == 1, err


# --- each check at its edge, read directly (sim.trace.read_trace / check_kinds) ------------------------------

def _fails(tmp_path, body, name="t.csv"):
    """The message of the ConfigError reading ``body`` raises, with the file's path taken off."""
    path = _write(tmp_path, body, name)
    with pytest.raises(ConfigError) as err:
        read_trace(path)
    message = str(err.value)
    assert message.startswith(str(path))
    return message[len(str(path)):]


@pytest.mark.parametrize("name, body, message", [
    ("t.csv", "", ": trace is empty (expected a header line with timestamp and at least one row)"),
    ("t.csv", " \n\n", ": trace is empty (expected a header line with timestamp and at least one row)"),
    ("t.jsonl", "\n", ": trace is empty (expected a header line with timestamp and at least one row)"),
    ("t.csv", "timestamp,prompt_tokens\n", ": trace has a header but no rows"),
    ("t.csv", "timestamp,prompt_tokens\n1,2\n3,4,5\n", ":3: 3 field(s) where the header has 2 (timestamp, "
     "prompt_tokens)"),
    ("t.csv", "timestamp,prompt,tokens\n1,2,3\n", ":1: trace columns must include timestamp and be among "
     "timestamp, model, prompt_tokens, max_tokens, completion_tokens, audio_seconds (unexpected: prompt, tokens)"),
    ("t.csv", "model,prompt_tokens\nm,2\n", ": trace columns must include timestamp and be among timestamp, model, "
     "prompt_tokens, max_tokens, completion_tokens, audio_seconds (unexpected: none)"),
    ("t.jsonl", '{"timestamp": 1}\n[1, 2]\n', ':2: each line must be a JSON object like {"timestamp": 0.5}'),
    ("t.jsonl", '{"timestamp": 1}\n{"timestamp": 2, "user": "x"}\n{"timestamp": 3, "host": "y"}\n',
     ":2: trace columns must include timestamp and be among timestamp, model, prompt_tokens, max_tokens, "
     "completion_tokens, audio_seconds (unexpected: user, host)"),
    ("t.jsonl", '{"timestamp": 1}\n{"timestamp": 2,\n', ":2: not a JSON object (Expecting property name enclosed "
     "in double quotes)"),
    ("t.jsonl", '{"timestamp": 1}\n{"timestamp": 1' + "0" * 5000 + '}\n', ":2: not a JSON object (an integer of more "
     "than 4300 digits)"),
    ("t.jsonl", '{"timestamp": 1}\n' + "[" * 100_000 + "]" * 100_000 + "\n", ":2: not a JSON object (nested too deep)"),
    ("t.csv", "timestamp\n1\n2\n-0.5\n3\n", ":4: column timestamp: '-0.5' is not allowed (seconds must be finite "
     "and >= 0)"),
    ("t.csv", "timestamp\n2025-03-01T12:00:00Z\nyesterday\nlater\n", ":3: column timestamp: 'yesterday' is not a "
     "timestamp (allowed: seconds >= 0, or an ISO date-time like 2025-03-01T12:00:00Z)"),
    ("t.csv", "timestamp\n1.5\n2025-03-01T12:00:00Z\nsoon\n", ":3: column timestamp: '2025-03-01T12:00:00Z' is not "
     "a number (the column holds seconds; allowed: seconds >= 0 on every row, or ISO date-times on every row)"),
    ("t.csv", "timestamp\n1\n\n", None),  # (a blank line is no row: read, not refused)
    ("t.csv", "timestamp,prompt_tokens\n1,10000001\n", ":2: column prompt_tokens: '10000001' is not allowed (a whole "
     "number from 0 to 10,000,000)"),
    ("t.csv", "timestamp,max_tokens\n1,2.5\n", ":2: column max_tokens: '2.5' is not allowed (a whole number from 0 "
     "to 10,000,000)"),
    ("t.csv", "timestamp,audio_seconds\n1,-2.5\n", ":2: column audio_seconds: '-2.5' is not allowed (a number from "
     "0 to 10,000,000)"),
    ("t.csv", "timestamp,audio_seconds\n1,inf\n", ":2: column audio_seconds: 'inf' is not allowed (a number from "
     "0 to 10,000,000)"),
], ids=["empty", "blank", "jsonl-blank", "no-rows", "row-too-long", "named-unknown", "no-timestamp",
        "jsonl-not-object", "jsonl-unknown-line", "jsonl-bad-json", "jsonl-long-integer",
        "jsonl-deep", "negative-first-bad-row", "iso-bad",
        "mixed-first-text-row", "blank-line", "count-over-max", "count-not-whole", "audio-negative", "audio-inf"])
def test_each_check_names_the_file_line_and_what_is_allowed(tmp_path, name, body, message):
    if message is None:
        assert read_trace(_write(tmp_path, body, name))["timestamp"].tolist() == [1.0]
    else:
        assert _fails(tmp_path, body, name) == message


def test_what_a_trace_may_hold_at_the_edges(tmp_path):
    """The largest size, fractional audio, spaces after the commas (quoted cells too), string cells in JSONL,
    equal timestamps (in order: no warning), and no columns but the trace's."""
    body = ('timestamp, model, prompt_tokens, audio_seconds\n0.5, "openai/gpt-oss-20b", 10000000, 2.5\n'
            '0.5, "a, b", 0, \n')
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        df = read_trace(_write(tmp_path, body))
        jl = read_trace(_write(tmp_path, '{"timestamp": "2", "model": "m", "prompt_tokens": "7"}\n'
                                         '{"timestamp": 2, "model": null}\n', "t.jsonl"))
    assert list(df.columns) == ["timestamp", "prompt_tokens", "audio_seconds", "model"]
    assert df["model"].tolist() == ["openai/gpt-oss-20b", "a, b"]
    assert df["prompt_tokens"].tolist() == [10_000_000, 0]
    assert df["audio_seconds"].iloc[0] == 2.5 and pd.isna(df["audio_seconds"].iloc[1])
    assert jl["timestamp"].tolist() == [2.0, 2.0] and jl["model"].iloc[0] == "m" and pd.isna(jl["model"].iloc[1])
    assert jl["prompt_tokens"].iloc[0] == 7 and pd.isna(jl["prompt_tokens"].iloc[1])


def test_a_timestamp_going_back_warns_once_naming_the_first_row_out_of_order(tmp_path):
    path = _write(tmp_path, "timestamp\n0\n0.25\n0.25\n0.5\n0.3\n0.1\n")
    with pytest.warns(InputWarning) as caught:
        df = read_trace(path)
    assert [str(w.message) for w in caught] == [f"{path}:6: timestamps are not in order (0.3 after 0.5); "
                                               "replaying the trace sorted by timestamp"]
    assert df["timestamp"].tolist() == [0.0, 0.1, 0.25, 0.25, 0.3, 0.5]
    assert df.attrs["lines"].tolist() == [2, 7, 3, 4, 6, 5]  # each sorted row's line in the file (ties keep file order)


def test_a_speech_to_text_row_needs_audio_above_zero(tmp_path):
    kinds = {"w": "stt"}
    path = _write(tmp_path, "timestamp,audio_seconds\n0,1\n1,0.001\n")
    check_kinds(str(path), read_trace(path), kinds, "w", audio=False)  # every row has audio: fine
    zero = _write(tmp_path, "timestamp,audio_seconds\n0,1\n1,0\n", "z.csv")
    with pytest.raises(ConfigError, match=r"z\.csv:3: column audio_seconds: 0\.0 on a row for 'w', which is "
                                          "speech-to-text: each of its rows needs audio_seconds > 0"):
        check_kinds(str(zero), read_trace(zero), kinds, "w", audio=True)  # 0 is not an empty cell
