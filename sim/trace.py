"""Request traces: recorded traffic replayed as a workload (CSV or JSONL).

A trace has a ``timestamp`` column (seconds from the start, or ISO date-times made relative to the first
row) and optionally ``model``, ``prompt_tokens``, ``max_tokens``, ``completion_tokens``, ``audio_seconds``;
absent columns fall back on the client group's distributions.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .errors import ConfigError

TRACE_COLUMNS = ("timestamp", "model", "prompt_tokens", "max_tokens", "completion_tokens", "audio_seconds")


def read_trace(path: str | Path) -> pd.DataFrame:
    """The trace at ``path``, sorted by timestamp (seconds, float)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: trace file not found")
    if path.suffix in (".jsonl", ".ndjson"):
        df = pd.DataFrame([json.loads(line) for line in path.read_text().splitlines() if line.strip()])
    else:
        df = pd.read_csv(path)
    unknown = [c for c in df.columns if c not in TRACE_COLUMNS]
    if unknown or "timestamp" not in df.columns:
        raise ConfigError(f"{path}: trace columns must include timestamp and be among {', '.join(TRACE_COLUMNS)}"
                          f" (unexpected: {', '.join(unknown) or 'none'})")
    ts = df["timestamp"]
    if not pd.api.types.is_numeric_dtype(ts):
        ts = pd.to_datetime(ts, utc=True)
        ts = (ts - ts.min()).dt.total_seconds()
    df = df.assign(timestamp=ts.astype(float)).sort_values("timestamp", kind="stable").reset_index(drop=True)
    return df
