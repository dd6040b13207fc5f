"""Request traces: recorded traffic replayed as a workload (CSV or JSONL).

A trace has a ``timestamp`` column (seconds from the start, or ISO date-times made relative to the first
row) and optionally ``model``, ``prompt_tokens``, ``max_tokens``, ``completion_tokens``, ``audio_seconds``;
absent columns and empty cells fall back on the client group's distributions (an empty
``completion_tokens`` draws the client's, capped by the row's ``max_tokens``).

Every cell is validated: a bad one is a :class:`~sim.errors.ConfigError` naming the file, the row (the line
number in the file, header = line 1 for CSV) and the column.  Unsorted timestamps are **sorted, with a
one-line warning** (:class:`~sim.errors.InputWarning`) naming the first row out of order: a trace merged
from several logs (one per model, per host) is a normal thing to replay, and order of arrival is what the
timestamps say, not the file's row order.  :func:`check_kinds` then checks each row against its model's
kind (no tokens to whisper, no audio to a chat model), once the scenario knows the models.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import sys
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import ConfigError, InputWarning
from .fields import MAX_SIZE

TRACE_COLUMNS = ("timestamp", "model", "prompt_tokens", "max_tokens", "completion_tokens", "audio_seconds")
#: the columns of whole numbers >= 0 (an empty cell falls back on the client's sizes)
_COUNTS = ("prompt_tokens", "max_tokens", "completion_tokens")


def read_trace(path: str | Path) -> pd.DataFrame:
    """The validated trace at ``path`` (timestamps in seconds from the first row, float).  Cached by the
    file's content, so a run reading it again costs nothing and an edited file is read afresh."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: trace file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read trace ({exc.strerror})") from None
    return _parse(str(path), data).copy()


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes ("missing" if it cannot be read): what a resumption key records of an input."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return "missing"


#: the file names a trace is read as JSONL by; any other is read as CSV (the names a trace usually has)
JSONL_SUFFIXES = (".jsonl", ".ndjson")
TRACE_SUFFIXES = (".csv", *JSONL_SUFFIXES)


@lru_cache(maxsize=32)
def _parse(name: str, data: bytes) -> pd.DataFrame:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{name}: trace is not UTF-8 text (byte {exc.start}); expected CSV or JSONL") from None
    if not text.strip():
        raise ConfigError(f"{name}: trace is empty (expected a header line with timestamp and at least one row)")
    odd = None  # the line of the first column not a trace's (the header's, in a CSV)
    if name.endswith(JSONL_SUFFIXES):
        rows, lines = [], []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except (ValueError, RecursionError) as exc:  # (also a number of 5 000 digits, nesting too deep)
                why = exc.msg if isinstance(exc, json.JSONDecodeError) else (
                    "nested too deep" if isinstance(exc, RecursionError)
                    else f"an integer of more than {sys.get_int_max_str_digits()} digits")
                raise ConfigError(f"{name}:{n}: not a JSON object ({why})") from None
            if not isinstance(obj, dict):
                raise ConfigError(f"{name}:{n}: each line must be a JSON object like {{\"timestamp\": 0.5}}")
            if odd is None and any(k not in TRACE_COLUMNS for k in obj):
                odd = n
            rows.append({k: "NaN" if isinstance(v, float) and math.isnan(v) else v for k, v in obj.items()})
            lines.append(n)
        df = pd.DataFrame(rows).astype(object).where(lambda d: d.notna(), "")  # (NaN is an absent key's)
    else:
        try:
            table = [(n, row) for n, row in enumerate(csv.reader(io.StringIO(text), skipinitialspace=True), start=1)
                     if row]
        except csv.Error as exc:
            raise ConfigError(f"{name}: not a valid CSV trace ({exc})") from None
        header = [h.strip() for h in table[0][1]]
        odd = table[0][0]
        twice = [h for k, h in enumerate(header) if h in header[:k] and h]
        if twice:
            raise ConfigError(f"{name}:{table[0][0]}: column {twice[0]!r} appears twice in the header (each column "
                              f"once, among {', '.join(TRACE_COLUMNS)})")
        for n, row in table[1:]:
            if len(row) != len(header):
                raise ConfigError(f"{name}:{n}: {len(row)} field(s) where the header has {len(header)} "
                                  f"({', '.join(header)})")
        df = pd.DataFrame([row for _, row in table[1:]], columns=header, dtype=object)
        lines = [n for n, _ in table[1:]]
    unknown = [str(c) if str(c).strip() else "a column with no name" for c in df.columns if c not in TRACE_COLUMNS]
    if unknown or "timestamp" not in df.columns:
        where = f"{name}:{odd}" if unknown else name
        raise ConfigError(f"{where}: trace columns must include timestamp and be among {', '.join(TRACE_COLUMNS)}"
                          f" (unexpected: {', '.join(unknown) or 'none'})")
    if not len(df):
        raise ConfigError(f"{name}: trace has a header but no rows")
    out = {"timestamp": _timestamps(name, df["timestamp"], lines)}
    for col in _COUNTS:
        if col in df:
            out[col] = _numbers(name, df[col], lines, col, whole=True)
    if "audio_seconds" in df:
        out["audio_seconds"] = _numbers(name, df["audio_seconds"], lines, "audio_seconds", whole=False)
    if "model" in df:
        models = [_cell(v) for v in df["model"]]
        out["model"] = [m if m else None for m in models]
    frame = pd.DataFrame(out)
    lines = [lines[k] for k in frame["timestamp"].argsort(kind="stable")]
    frame = frame.sort_values("timestamp", kind="stable").reset_index(drop=True)
    # each (sorted) row's line in the file, for errors found later: an array, which pandas copies (as it copies
    # attrs at each operation on the frame) at the cost of one memcpy, where a list of 89 000 took 10 ms a copy
    frame.attrs["lines"] = np.asarray(lines, dtype=np.int64)
    if "completion_tokens" in frame and "max_tokens" in frame:
        over = frame.index[frame["completion_tokens"] > frame["max_tokens"]]
        if len(over):
            k = over[0]
            raise ConfigError(f"{name}:{lines[k]}: column completion_tokens: {frame['completion_tokens'][k]:g} is more "
                              f"than max_tokens {frame['max_tokens'][k]:g} (a completion never exceeds max_tokens)")
    return frame


def _cell(value) -> str:
    """A cell as text (a CSV's cells are text already; a JSONL value's absence or null is "" by then)."""
    return str(value).strip()


def _is_nan(cell: str) -> bool:
    """A cell spelling not-a-number (``NaN``, ``nan``, ``-nan``: what float() reads as NaN)."""
    return cell.lower().lstrip("+-") == "nan"


def _timestamps(name: str, col: pd.Series, lines: list[int]) -> pd.Series:
    """Seconds (float) from numbers, or from ISO date-times relative to the earliest; non-decreasing."""
    cells = [_cell(v) for v in col]
    for k, c in enumerate(cells):
        if not c or _is_nan(c):
            raise ConfigError(f"{name}:{lines[k]}: column timestamp: {'NaN is not a number' if c else 'empty'} "
                              "(allowed: seconds >= 0, or an ISO date-time)")
    numeric = pd.to_numeric(pd.Series(cells), errors="coerce")
    if numeric.notna().all():
        ts = numeric.astype(float)
        bad = ts.index[~ts.map(math.isfinite) | (ts < 0)]
        if len(bad):
            k = bad[0]
            raise ConfigError(f"{name}:{lines[k]}: column timestamp: {cells[k]!r} is not allowed (seconds must be "
                              "finite and >= 0)")
    elif numeric.isna().all():
        parsed = pd.to_datetime(pd.Series(cells), utc=True, errors="coerce", format="ISO8601")
        if parsed.isna().any():
            k = int(parsed.index[parsed.isna()][0])
            raise ConfigError(f"{name}:{lines[k]}: column timestamp: {cells[k]!r} is not a timestamp (allowed: "
                              "seconds >= 0, or an ISO date-time like 2025-03-01T12:00:00Z)")
        ts = (parsed - parsed.min()).dt.total_seconds()
    else:
        k = int(numeric.index[numeric.isna()][0])
        raise ConfigError(f"{name}:{lines[k]}: column timestamp: {cells[k]!r} is not a number (the column holds "
                          "seconds; allowed: seconds >= 0 on every row, or ISO date-times on every row)")
    back = ts.index[ts.diff() < 0]
    if len(back):
        k = int(back[0])
        warnings.warn(InputWarning(f"{name}:{lines[k]}: timestamps are not in order ({cells[k]} after "
                                   f"{cells[k - 1]}); replaying the trace sorted by timestamp"), stacklevel=2)
    return ts


def _numbers(name: str, col: pd.Series, lines: list[int], what: str, whole: bool) -> pd.Series:
    """A column of sizes (``whole``: token counts), NaN for an empty cell (the client's distribution then)."""
    cells = [_cell(v) for v in col]
    values = pd.to_numeric(pd.Series(cells).replace("", None), errors="coerce").astype(float)
    allowed = f"a whole number from 0 to {MAX_SIZE:,}" if whole else f"a number from 0 to {MAX_SIZE:,}"
    v = values.to_numpy()
    # the first filled cell that is no number, or none allowed (a whole column at once: a row at a time through
    # the Series took 4 s for a trace of 89 000 rows)
    filled = np.fromiter((bool(c) for c in cells), bool, len(cells))
    bad = filled & (~np.isfinite(v) | (v < 0) | (v > MAX_SIZE) | (whole & (v != np.floor(v))))
    if bad.any():
        k = int(np.argmax(bad))
        if _is_nan(cells[k]):
            raise ConfigError(f"{name}:{lines[k]}: column {what}: NaN is not a number (allowed: {allowed})")
        raise ConfigError(f"{name}:{lines[k]}: column {what}: {cells[k]!r} is not allowed ({allowed})")
    return values


#: what a row sent to a model of each kind cannot carry (see sim.workload.CARRIES): the columns, and why
_NOT_CARRIED = {
    "stt": (("prompt_tokens", "max_tokens", "completion_tokens"),
            "is speech-to-text: its requests are audio and carry no tokens (leave the cell empty or 0)"),
    "tts": (("max_tokens", "completion_tokens", "audio_seconds"),
            "is text-to-speech: it is charged the input characters (prompt_tokens) only (leave the cell empty "
            "or 0)"),
    "chat": (("audio_seconds",), "takes no audio (audio_seconds is for speech-to-text models; leave the cell "
             "empty or 0)"),
}


def check_kinds(name: str, df: pd.DataFrame, kinds: dict[str, str], model: str, audio: bool) -> None:
    """Each row of a trace (as :func:`read_trace` returns it) against its model's kind (``kinds``: model ->
    ``chat``/``stt``/``tts``; a row without a model is the client group's ``model``): a row may not carry
    what its model does not take, and a speech-to-text row needs audio: its own ``audio_seconds`` > 0, or an
    empty cell when the group draws audio (``audio``).  Raises a ConfigError naming the file, line and
    column of the first bad row."""
    lines = df.attrs["lines"]
    models = df["model"].fillna(model) if "model" in df else pd.Series(model, index=df.index)
    row_kinds = models.map(kinds)
    for kind, (columns, why) in _NOT_CARRIED.items():
        for col in columns:
            if col in df:
                bad = df.index[(row_kinds == kind) & (df[col] > 0)]
                if len(bad):
                    k = bad[0]
                    raise ConfigError(f"{name}:{lines[k]}: column {col}: {df[col][k]:g} on a row for "
                                      f"{models[k]!r}, which {why}")
    stt = row_kinds == "stt"
    cell = df["audio_seconds"] if "audio_seconds" in df else pd.Series(float("nan"), index=df.index)
    bad = df.index[stt & ((cell == 0) | (cell.isna() & (not audio)))]
    if len(bad):
        k = bad[0]
        raise ConfigError(f"{name}:{lines[k]}: column audio_seconds: "
                          f"{'empty' if math.isnan(cell[k]) else repr(float(cell[k]))} on a row for {models[k]!r}, "
                          "which is speech-to-text: each of its rows needs audio_seconds > 0 (or the client "
                          "group's audio_seconds, on a speech-to-text model, for empty cells)")
