"""Workload generation: arrival times and request sizes, sampled in vectors before the clock starts.

Open-loop kinds produce every arrival time in ``[0, duration)`` at once; ``closed`` (N users with think
time) is driven by the engine, which asks :func:`sizes` for request sizes in blocks.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .config import Arrival, Client
from .errors import ConfigError

TRACE_COLUMNS = ("timestamp", "model", "prompt_tokens", "max_tokens", "completion_tokens", "audio_seconds")


def _poisson_times(rng: np.random.Generator, rate: float, duration: float) -> np.ndarray:
    """Homogeneous Poisson arrival times in [0, duration), drawn in blocks of exponential gaps."""
    if rate <= 0 or duration <= 0:
        return np.empty(0)
    chunks, t0 = [], 0.0
    block = int(rate * duration * 1.05 + 10 * np.sqrt(rate * duration) + 16)
    while t0 < duration:
        times = t0 + np.cumsum(rng.exponential(1.0 / rate, block))
        chunks.append(times)
        t0 = times[-1]
    times = np.concatenate(chunks)
    return times[times < duration]


def _renewal_times(rng, gaps_sampler, mean_gap: float, duration: float) -> np.ndarray:
    chunks, t0 = [], 0.0
    block = int(duration / mean_gap * 1.05) + 16
    while t0 < duration:
        times = t0 + np.cumsum(gaps_sampler(block))
        chunks.append(times)
        t0 = times[-1]
    times = np.concatenate(chunks)
    return times[times < duration]


def _thinned(rng, rate_fn, max_rate: float, duration: float) -> np.ndarray:
    """Non-homogeneous Poisson by thinning (Lewis & Shedler): candidates at ``max_rate``, kept with
    probability ``rate(t) / max_rate``."""
    cand = _poisson_times(rng, max_rate, duration)
    keep = rng.random(cand.size) * max_rate < rate_fn(cand)
    return cand[keep]


def arrival_times(arrival: Arrival, rng: np.random.Generator, duration: float, load: float = 1.0) -> np.ndarray:
    """Arrival times (seconds, sorted) of an open-loop arrival process scaled by ``load``."""
    kind = arrival.kind
    rate = (arrival.rate or 0.0) * load
    if kind == "poisson":
        return _poisson_times(rng, rate, duration)
    if kind == "constant":
        return np.arange(0.0, duration, 1.0 / rate) if rate > 0 else np.empty(0)
    if kind == "bursty":  # gamma gaps with coefficient of variation = burstiness (1 = Poisson)
        if rate <= 0:
            return np.empty(0)
        shape = 1.0 / arrival.burstiness ** 2
        return _renewal_times(rng, lambda n: rng.gamma(shape, 1.0 / (rate * shape), n), 1.0 / rate, duration)
    if kind == "onoff":  # exponential on/off periods (means `on`, `off`); Poisson at `rate` while on
        if rate <= 0:
            return np.empty(0)
        n = int(duration / (arrival.on + arrival.off)) * 2 + 16
        on = rng.exponential(arrival.on, n)
        off = rng.exponential(arrival.off, n) if arrival.off > 0 else np.zeros(n)
        starts = np.concatenate([[0.0], np.cumsum(on + off)[:-1]])
        cum_on = np.concatenate([[0.0], np.cumsum(on)])
        u = _poisson_times(rng, rate, cum_on[-1])  # times on a clock that only runs while "on"
        period = np.searchsorted(cum_on, u, side="right") - 1
        times = starts[period] + (u - cum_on[period])
        return times[times < duration]
    if kind == "piecewise":
        starts = np.array([s for s, _ in arrival.schedule])
        rates = np.array([r for _, r in arrival.schedule]) * load
        fn = lambda t: rates[np.searchsorted(starts, np.mod(t, arrival.period), side="right") - 1]  # noqa: E731
        return _thinned(rng, fn, rates.max(), duration) if rates.max() > 0 else np.empty(0)
    if kind == "diurnal":  # rate * (1 + amplitude * cos(2 pi (t - peak) / period))
        a, peak, period = arrival.amplitude, arrival.peak, arrival.period
        fn = lambda t: rate * (1 + a * np.cos(2 * np.pi * (t - peak) / period))  # noqa: E731
        return _thinned(rng, fn, rate * (1 + a), duration) if rate > 0 else np.empty(0)
    raise ValueError(f"{kind} has no precomputed arrival times")


def read_trace(path: str | Path) -> pd.DataFrame:
    """A trace of (timestamp, model, prompt_tokens, max_tokens/completion_tokens, audio_seconds) from CSV or
    JSONL.  ``timestamp`` is seconds from the start or an ISO date-time (made relative to the first row)."""
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


def sizes(client: Client, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """prompt, max_tokens, completion (capped by max_tokens) and audio seconds for ``n`` requests.
    Without a ``completion_tokens`` distribution every answer uses its whole ``max_tokens``."""
    prompt = np.maximum(np.rint(client.prompt_tokens.sample(rng, n)), 0)
    max_tokens = np.maximum(np.rint(client.max_tokens.sample(rng, n)), 0)
    if client.completion_tokens is None:
        completion = max_tokens.copy()
    else:
        completion = np.minimum(np.rint(client.completion_tokens.sample(rng, n)), max_tokens)
    audio = client.audio_seconds.sample(rng, n)
    return {"prompt": prompt, "max_tokens": max_tokens, "completion": completion, "audio": audio}


def trace_sizes(df: pd.DataFrame, client: Client, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Sizes from a trace, falling back on the client's distributions for absent columns."""
    drawn = sizes(client, rng, len(df))
    out = {}
    for key, col in (("prompt", "prompt_tokens"), ("max_tokens", "max_tokens"), ("audio", "audio_seconds")):
        out[key] = df[col].fillna(pd.Series(drawn[key])).to_numpy(float) if col in df else drawn[key]
    if "completion_tokens" in df:
        out["completion"] = df["completion_tokens"].to_numpy(float)
        if "max_tokens" not in df:
            out["max_tokens"] = out["completion"].copy()
    else:
        out["completion"] = np.minimum(drawn["completion"], out["max_tokens"])
    return out
