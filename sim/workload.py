"""Workload generation: request sizes and the open-loop request stream of a client group, sampled in
vectors before the clock starts, and the random streams every run draws from.

Each client group has independent random streams (arrivals, sizes, service, policy, faults), spawned from
the run's seed, so two alternatives compared with the same seed see the same arrivals and sizes.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from .config import Client

#: the independent random streams of one client group, by purpose (``RESERVICE``: the service draws of an
#: attempt sent again after its client gave up waiting on an admitted one)
ARRIVALS, SIZES, SERVICE, POLICY, FAULTS, NETWORK, RESERVICE = range(7)
BLOCK = 4096


def client_streams(seed: np.random.SeedSequence) -> list[np.random.Generator]:
    """One generator per purpose (``ARRIVALS`` ... ``RESERVICE``) for one client group.  (A stream added at the
    end leaves the others as they were: ``spawn(n)``'s first children do not depend on ``n``.)"""
    return [np.random.default_rng(s) for s in seed.spawn(7)]


class Uniforms:
    """U(0,1) numbers drawn a block at a time from one stream (cheap one-at-a-time draws)."""

    def __init__(self, rng: np.random.Generator):
        self.rng, self.buf, self.i = rng, [], 0

    def __call__(self) -> float:
        if self.i >= len(self.buf):
            self.buf, self.i = self._block(), 0
        self.i += 1
        return self.buf[self.i - 1]

    def _block(self) -> list[float]:
        return self.rng.random(BLOCK).tolist()


class Normals(Uniforms):
    """Standard normal numbers drawn a block at a time from one stream."""

    def _block(self) -> list[float]:
        return self.rng.standard_normal(BLOCK).tolist()


def sizes(client: Client, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """prompt, max_tokens, completion (capped by max_tokens) and audio seconds for ``n`` requests.
    Without a ``completion_tokens`` distribution every answer uses its whole ``max_tokens``."""
    prompt = np.maximum(client.prompt_tokens.sample_whole(rng, n), 0)
    max_tokens = np.maximum(client.max_tokens.sample_whole(rng, n), 0)
    if client.completion_tokens is None:
        completion = max_tokens.copy()
    else:
        completion = np.minimum(client.completion_tokens.sample_whole(rng, n), max_tokens)
    audio = client.audio_seconds.sample(rng, n)
    return {"prompt": prompt, "max_tokens": max_tokens, "completion": completion, "audio": audio}


#: the sizes a request to a model of each kind carries (the others are 0): speech-to-text sends audio,
#: text-to-speech characters (counted as prompt tokens), chat a prompt and an answer
CARRIES = {"chat": ("prompt", "max_tokens", "completion"), "stt": ("audio",), "tts": ("prompt",)}


def trace_sizes(df: pd.DataFrame, client: Client, rng: np.random.Generator,
                kinds: Mapping[str, str] | None = None) -> dict[str, np.ndarray]:
    """Sizes from a trace, falling back on the client's distributions for absent columns and empty cells (an
    empty ``completion_tokens`` draws the client's, capped by the row's ``max_tokens``).  With ``kinds``
    (model -> ``chat``/``stt``/``tts``), each row keeps only what its model's kind carries (``CARRIES``): a
    trace mixing a chat group's text with whisper rows charges the whisper rows no tokens, however empty
    cells were filled."""
    drawn = sizes(client, rng, len(df))
    out = {}
    for key, col in (("prompt", "prompt_tokens"), ("max_tokens", "max_tokens"), ("audio", "audio_seconds")):
        out[key] = df[col].fillna(pd.Series(drawn[key])).to_numpy(float) if col in df else drawn[key]
    if "completion_tokens" in df:
        completion = df["completion_tokens"].to_numpy(float)
        empty = np.isnan(completion)
        if "max_tokens" not in df:  # each answer used its whole max_tokens
            out["max_tokens"] = np.where(empty, out["max_tokens"], completion)
        out["completion"] = np.where(empty, np.minimum(drawn["completion"], out["max_tokens"]), completion)
    else:
        out["completion"] = np.minimum(drawn["completion"], out["max_tokens"])
    if kinds is not None:
        row_kinds = np.array([kinds[m] for m in _trace_models(df, client)])
        for kind, carried in CARRIES.items():
            rows = row_kinds == kind
            for key in out.keys() - set(carried):
                out[key] = np.where(rows, 0.0, out[key])
    return out


def _trace_models(df: pd.DataFrame, client: Client) -> list[str]:
    """Each trace row's model: its own, or the client's where the trace has none."""
    if "model" not in df:
        return [client.model] * len(df)
    return [m if isinstance(m, str) else client.model for m in df["model"]]


def open_loop(client: Client, streams: list[np.random.Generator], duration: float, load: float = 1.0,
              kinds: Mapping[str, str] | None = None) -> tuple[np.ndarray, dict[str, np.ndarray], list[str] | None]:
    """Every request of an open-loop client group in ``[0, duration)``: (arrival times, sizes, each
    request's model name -- None when all use the client's model).  ``kinds``: see :func:`trace_sizes`."""
    arrival = client.arrival
    if arrival.kind == "trace":
        df = arrival.rows(duration, load)
        return (df["timestamp"].to_numpy(float), trace_sizes(df, client, streams[SIZES], kinds),
                _trace_models(df, client))
    created = arrival.times(streams[ARRIVALS], duration, load)
    return created, sizes(client, streams[SIZES], len(created)), None


def request_mix(client: Client, duration: float, rng: np.random.Generator, n: int = 200_000,
                kinds: Mapping[str, str] | None = None):
    """(model, requests per second at load 1, sample of sizes) of one client group: what its traffic costs
    on average.  A closed loop has no rate of its own (it depends on latency) and yields nothing; a trace
    yields one stream per model, at the trace's own rate over the horizon."""
    arrival = client.arrival
    if not arrival.open_loop:
        return
    if arrival.kind != "trace":
        yield client.model, arrival.long_run_rate(), sizes(client, rng, n)
        return
    df = arrival.rows(duration)
    models = pd.Series(_trace_models(df, client), index=df.index)
    for model, rows in df.groupby(models, sort=True):
        yield model, len(rows) / duration, trace_sizes(rows.reset_index(drop=True), client, rng, kinds)
