"""A recorder log as a replayable trace (:func:`sim.workload.read_trace`'s format), one row per logical request.

SDK retries are folded back into the request they retry: a line with ``retry_count = k > 0`` (the SDK's
``x-stainless-retry-count`` header, kept by :mod:`sim.recorder`) belongs to an earlier request of the same
model, endpoint, ``max_tokens`` and label whose last attempt had ``retry_count = k - 1``, failed, and had
been answered before this one was sent; among several, the one whose answer came the SDK's wait earlier
(its ``retry-after`` when 0 < it <= 60 s, else the SDK's mean back-off ``0.5 s x 2^(k-1) x 0.875``) and
whose token-unit 429s asked for the same tokens.  A log without ``retry_count`` keeps every line as a
request.

Each row: ``timestamp`` = the first attempt's ``t_send`` in seconds from the log's first request; sizes from
the answered attempt's ``usage``.  A request never answered has no usage: its prompt is ``Requested -
max_tokens`` of a token-unit 429 (Groq charges prompt + max_tokens up front), else the model's median
prompt; its completion the model's median completion (at most ``max_tokens``).  A request without
``max_tokens`` gets its completion as ``max_tokens``.  The imputations are counted in the notes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .calibrate.evidence import evidence_table
from .errors import ConfigError
from .recorder import read_log
from .trace import TRACE_COLUMNS

TOKEN_UNITS = ("tpm", "tpd")


@dataclass
class TraceExport:
    trace: pd.DataFrame
    lines: int                      # log lines used
    retries_folded: int
    notes: list[str] = field(default_factory=list)
    #: per trace row, what happened in the log: answered (bool), attempts, latency (first send to last answer)
    outcomes: pd.DataFrame | None = None


def _nan(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _fold(df: pd.DataFrame) -> list[list[int]]:
    """Row indices of each logical request, in order of first attempt."""
    groups: list[list[int]] = []
    open_: dict[tuple, list[int]] = {}  # key -> indices of groups whose last attempt failed
    for i, row in enumerate(df.itertuples(index=False)):
        key = (row.model, row.endpoint, None if _nan(row.max_tokens) else row.max_tokens, row.label)
        k = row.retry_count
        target = None
        if not _nan(k) and k > 0:
            best = math.inf
            for g in open_.get(key, []):
                last = df.iloc[groups[g][-1]]
                if last["retry_count"] != k - 1 or last["t_recv"] > row.t_send + 1e-6:
                    continue
                if not _nan(row.msg_requested) and not _nan(last["msg_requested"]) and \
                        row.msg_unit in TOKEN_UNITS and last["msg_unit"] in TOKEN_UNITS and \
                        row.msg_requested != last["msg_requested"]:
                    continue  # the same request asks for the same tokens
                ra = last["h_retry_after"]
                expected = ra if not _nan(ra) and 0 < ra <= 60 else 0.5 * 2 ** (k - 1) * 0.875
                miss = abs(row.t_send - last["t_recv"] - expected)
                if miss < best:
                    best, target = miss, g
        if target is None:
            groups.append([i])
            target = len(groups) - 1
        else:
            groups[target].append(i)
        candidates = open_.setdefault(key, [])
        if target in candidates:
            candidates.remove(target)
        if row.status != 200:
            candidates.append(target)
    return groups


def log_to_trace(path: str | Path) -> TraceExport:
    log = read_log(path)
    df = evidence_table(log)
    df = df[df["endpoint"].isna() | df["endpoint"].isin(["chat.completions", "audio.transcriptions"])]
    df = df.reset_index(drop=True)
    if df.empty:
        raise ConfigError(f"{path}: no usable request in the log" + (
            f" ({'; '.join(log.problem_summary())})" if log.problems else ""))
    notes = list(log.problem_summary())
    if df["retry_count"].isna().all():
        notes.append("no retry_count in the log: every line is kept as a request of its own (retries not folded)")
    groups = _fold(df)
    ok = df[df["status"] == 200]
    med_prompt = ok.groupby("model")["prompt_tokens"].median()
    med_completion = ok.groupby("model")["completion_tokens"].median()
    rows, outcomes, imputed_prompt, imputed_completion = [], [], 0, 0
    t0 = df["t_send"].min()
    for g in groups:
        attempts = df.iloc[g]
        first = attempts.iloc[0]
        answered = attempts[(attempts["status"] == 200) & attempts["prompt_tokens"].notna()]
        max_tokens = first["max_tokens"]
        if len(answered):
            a = answered.iloc[-1]
            prompt, completion = a["prompt_tokens"], a["completion_tokens"]
        else:
            token_msgs = attempts[attempts["msg_unit"].isin(["tpm", "tpd"]) & attempts["msg_requested"].notna()]
            if len(token_msgs) and not _nan(max_tokens) and token_msgs["msg_requested"].iloc[0] > max_tokens:
                prompt = token_msgs["msg_requested"].iloc[0] - max_tokens
            else:
                prompt = med_prompt.get(first["model"], np.nan)
                imputed_prompt += 1
            completion = med_completion.get(first["model"], np.nan)
            if not _nan(max_tokens) and not _nan(completion):
                completion = min(completion, max_tokens)
            imputed_completion += 1
        if _nan(max_tokens):
            max_tokens = completion
        audio = 0.0 if _nan(first["audio_seconds"]) else first["audio_seconds"]
        rows.append([round(first["t_send"] - t0, 6), first["model"], prompt, max_tokens, completion, audio])
        outcomes.append((len(answered) > 0, len(attempts), attempts["t_recv"].iloc[-1] - first["t_send"]))
    trace = pd.DataFrame(rows, columns=list(TRACE_COLUMNS))
    for col in ("prompt_tokens", "max_tokens", "completion_tokens"):
        trace[col] = trace[col].round().astype("Int64")
    folded = len(df) - len(groups)
    if imputed_prompt or imputed_completion:
        notes.append(f"{imputed_completion} request(s) never answered: completion set to the model's median "
                     f"(prompt imputed for {imputed_prompt} of them, the rest from their 429's Requested)")
    if trace[["prompt_tokens", "completion_tokens"]].isna().any().any():
        notes.append("some sizes are unknown (a model with no answered request): left empty; the scenario's "
                     "client distributions fill them")
    return TraceExport(trace, len(df), folded, notes,
                       pd.DataFrame(outcomes, columns=["answered", "attempts", "latency"]))
