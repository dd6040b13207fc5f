"""A recorder log as a replayable trace (:func:`sim.trace.read_trace`'s format), one row per logical request.

SDK retries are folded back into the request they retry: a line with ``retry_count = k > 0`` (the SDK's
``x-stainless-retry-count`` header, kept by :mod:`sim.recorder`) is linked to a failed line with ``retry_count
= k - 1`` of the same model, endpoint, ``max_tokens`` and label, answered before it was sent, whose token-unit
429 (if both have one) asked for the same tokens.  Each rank's links are one minimum-cost bipartite matching
(:func:`_fold`): as many retries linked as possible, then the least distance from each retry's send to when
its predecessor's client would have retried.  A log without ``retry_count`` keeps every line as a request.
An attempt that failed on the client (the SDK's timeout fired, or the connection failed: a line with no status,
:func:`~sim.recorder.client_failure`) is a failed attempt like a 429, its retry linked to it as to one (it has
no ``retry-after``: the SDK's back-off places the retry); the notes count them.

Each row: ``timestamp`` = the first attempt's ``t_send`` in seconds from the log's first request; sizes from
the answered attempt's ``usage``.  A chat request without usage (never answered, or answered without it):
its prompt is ``Requested - max_tokens`` of a token-unit 429 (Groq charges prompt + max_tokens up front),
else the model's median prompt; its completion the model's median completion (at most ``max_tokens``).  A
transcription has no tokens: its sizes are 0; its audio_seconds is the first attempt's that knows it, else
empty (the replaying client's fills it).  A chat request without ``max_tokens`` gets
:data:`~sim.config.DEFAULT_RESERVATION` (or its completion, where longer) as ``max_tokens``, as the calibration's
replay charges it.  The imputations, the unknown lengths and the unset max_tokens are counted in the notes.

What a trace cannot carry is said in the notes, with its lines: a line of an endpoint the simulator does not
model is left out (:func:`_screen`); a value no real log holds (a count above :data:`~sim.fields.MAX_SIZE`,
a retry_count beyond any SDK's, a label that is not a string) is set aside by :func:`~sim.recorder.read_log`,
which says so, and the line used without it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.sparse import csr_array
from scipy.sparse.csgraph import min_weight_full_bipartite_matching

from .calibrate.evidence import evidence_table
from .config import DEFAULT_RESERVATION
from .errors import ConfigError
from .fields import MAX_SIZE
from .recorder import AUDIO_ENDPOINTS, CHAT, Log, read_log
from .trace import TRACE_COLUMNS

TOKEN_UNITS = ("tpm", "tpd")
#: the endpoints the simulator models (a line without one is taken for chat)
MODELLED = (CHAT, *AUDIO_ENDPOINTS)


@dataclass
class TraceExport:
    trace: pd.DataFrame
    lines: int                      # log lines used
    retries_folded: int
    notes: list[str] = field(default_factory=list)
    #: per trace row, what happened in the log: answered (bool: a 200), served (bool: a 200 or a 400 Groq charged,
    #: :data:`~sim.calibrate.evidence.CHARGED_FAILURES`), attempts, n429 (its attempts answered 429), latency
    #: (first send to last answer)
    outcomes: pd.DataFrame | None = None


#: the SDK's wait before retry k without a usable ``retry-after``: ``min(0.5 x 2^(k-1), 8) x (1 - 0.25 U)`` s
#: (groq-python's ``_calculate_retry_timeout``: INITIAL_RETRY_DELAY, MAX_RETRY_DELAY and its jitter)
SDK_INITIAL_DELAY, SDK_MAX_DELAY, SDK_JITTER = 0.5, 8.0, 0.25
#: a retry's predecessor is looked for among the failures answered at most this long before it (s): the SDK
#: waits 60 s at most (the longest retry-after it obeys; its back-off is at most 8 s)
RECENT = 120.0
#: ... and among those whose retry-after (any length: other clients may obey a longer one) ends within this
#: of the retry's send (s)
NEAR = 60.0
#: candidates kept per retry (the least missed) in a chunk of retries whose pairs outnumber this many per retry
CANDIDATES = 64
#: candidate pairs looked at in one go
CHUNK_PAIRS = 4_000_000


def sdk_backoff(k: int) -> tuple[float, float]:
    """(mean, half-range) of the SDK's back-off before retry ``k`` (1 = the first retry)."""
    ceiling = min(SDK_INITIAL_DELAY * 2.0 ** min(k - 1, 64), SDK_MAX_DELAY)  # (2 ** 1024 overflows)
    return ceiling * (1 - SDK_JITTER / 2), ceiling * SDK_JITTER / 2


def _pairs(s_key, s_lo, s_hi, p_key, p_val):
    """Candidate pairs ``(i, j)``: retry i and predecessor j of the same key with ``s_lo[i] <= p_val[j] <=
    s_hi[i]``, found by binary search on the predecessors sorted by key then value."""
    if not len(s_key) or not len(p_key):
        return np.empty(0, int), np.empty(0, int)
    base = min(p_val.min(), s_lo.min())
    span = max(p_val.max(), s_hi.max()) - base + 10.0  # keys apart by more than any window
    order = np.lexsort((p_val, p_key))
    sorted_val = p_key[order] * span + (p_val[order] - base)
    lo = np.searchsorted(sorted_val, s_key * span + (s_lo - base) - 1e-3, "left")
    hi = np.searchsorted(sorted_val, s_key * span + (s_hi - base) + 1e-3, "right")
    counts = np.maximum(hi - lo, 0)
    i = np.repeat(np.arange(len(s_key)), counts)
    j = order[np.repeat(lo, counts) + np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)]
    return i, j


def _match(n: int, n_pred: int, i: np.ndarray, j: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """For each of ``n`` retries its predecessor (0 .. n_pred - 1) in a matching of the candidate pairs
    ``(i, j)`` that matches as many retries as it can and, among those, has the least total ``cost``; -1 for
    a retry left alone.  Each retry may also take a dummy of its own, at a cost above any saving: a retry is
    left alone only when no matching gives it a predecessor (scipy's LAPJVsp, sparse)."""
    out = np.full(n, -1)
    if not len(i):
        return out
    big = 2.0 * (n + 1) * (float(cost.max()) + 2.0)
    graph = csr_array((np.concatenate([1.0 + cost, np.full(n, big)]),
                       (np.concatenate([i, np.arange(n)]), np.concatenate([j, n_pred + np.arange(n)]))),
                      shape=(n, n_pred + n))
    rows, cols = min_weight_full_bipartite_matching(graph)
    real = cols < n_pred
    out[rows[real]] = cols[real]
    return out


def _candidates(s_key, s_send, p_key, p_recv, p_due_after, p_due_backoff):
    """Pairs ``(i, j, miss)``: retry i (key, send time) and failure j of the same key answered before it, either
    at most :data:`RECENT` before or with its retry-after ending within :data:`NEAR` of the send; ``miss``:
    the distance from the retry's send to the nearer of the failure's two expected retry times (after its
    retry-after, after the SDK's mean back-off).  A few retries at a time, so that a dense log never holds every
    pair at once; a chunk with more than :data:`CANDIDATES` pairs per retry on average keeps each retry's
    :data:`CANDIDATES` least missed (a chunk within that budget keeps them all)."""
    after = np.flatnonzero(np.isfinite(p_due_after))
    out_i, out_j, out_miss = [], [], []
    step = max(1, CHUNK_PAIRS // max(len(p_key), 1))
    for start in range(0, len(s_key), step):
        k, t = s_key[start:start + step], s_send[start:start + step]
        i1, j1 = _pairs(k, t - RECENT, t + 1e-6, p_key, p_recv)
        i2, j2 = _pairs(k, t - NEAR, t + NEAR, p_key[after], p_due_after[after])
        pair = np.unique(np.concatenate([i1 * len(p_key) + j1, i2 * len(p_key) + after[j2]]))
        i, j = pair // len(p_key) + start, pair % len(p_key)
        before = p_recv[j] <= s_send[i] + 1e-6  # answered before the retry was sent
        i, j = i[before], j[before]
        miss = np.fmin(np.abs(s_send[i] - p_due_after[j]), np.abs(s_send[i] - p_due_backoff[j]))
        if len(i) > CANDIDATES * len(k):  # the least missed per retry (pairs come sorted by retry)
            order = np.lexsort((miss, i))
            i, j, miss = i[order], j[order], miss[order]
            keep = np.arange(len(i)) - np.searchsorted(i, i, "left") < CANDIDATES
            i, j, miss = i[keep], j[keep], miss[keep]
        out_i.append(i), out_j.append(j), out_miss.append(miss)
    return np.concatenate(out_i), np.concatenate(out_j), np.concatenate(out_miss)


def _fold(df: pd.DataFrame) -> np.ndarray:
    """Each row's logical request: 0, 1, ... in the row order of their first attempts.

    Retry k of a request follows attempt k - 1 of it, so the links of each rank are one bipartite matching
    between the rank's attempts and the failed attempts of the rank before: same key, answered before the
    retry was sent (:func:`_candidates` says how long before), the same tokens asked in token-unit 429s.  It
    is solved for the whole rank at once: as many retries linked as possible, then the least total distance
    between each retry's send and the nearer time its predecessor's client would have retried (after the
    predecessor's ``retry-after``, or after the SDK's mean back-off).  Matched line by line instead, a retry
    could take another request's predecessor and leave that request's own retry without one: the log would
    show a request that never was."""
    n = len(df)
    k = df["retry_count"].to_numpy(float)
    key = df.groupby(["model", "endpoint", "max_tokens", "label"], dropna=False, sort=False).ngroup().to_numpy()
    t0 = float(df["t_send"].min())
    t_send, t_recv = df["t_send"].to_numpy(float) - t0, df["t_recv"].to_numpy(float) - t0
    failed = df["status"].to_numpy() != 200
    retry_after = df["h_retry_after"].to_numpy(float)
    retry_after = np.where(retry_after > 0, retry_after, np.nan)
    tokens = np.where(df["msg_unit"].isin(TOKEN_UNITS), df["msg_requested"].to_numpy(float), np.nan)
    prev = np.full(n, -1)
    ranks = np.unique(k[np.isfinite(k) & (k > 0)])
    for r in ranks:
        s, p = np.flatnonzero(k == r), np.flatnonzero((k == r - 1) & failed)
        if not len(p):
            continue
        backoff, _ = sdk_backoff(int(r))
        i, j, miss = _candidates(key[s], t_send[s], key[p], t_recv[p], t_recv[p] + retry_after[p], t_recv[p] + backoff)
        ok = ~(np.isfinite(tokens[s[i]]) & np.isfinite(tokens[p[j]]) & (tokens[s[i]] != tokens[p[j]]))
        link = _match(len(s), len(p), i[ok], j[ok], miss[ok])
        prev[s[link >= 0]] = p[link[link >= 0]]
    group = np.full(n, -1)
    roots = np.flatnonzero(prev < 0)
    group[roots] = np.arange(len(roots))
    for r in ranks:
        s = np.flatnonzero((k == r) & (prev >= 0))
        group[s] = group[prev[s]]
    return group


def _last_per_group(rows: np.ndarray, group: np.ndarray, n_groups: int, first: bool = False) -> np.ndarray:
    """Per group, the last (``first``: the first) of ``rows`` (row indices in attempt order), -1 where none."""
    out = np.full(n_groups, -1)
    if len(rows):
        g = group[rows]
        edge = np.r_[True, g[1:] != g[:-1]] if first else np.r_[g[1:] != g[:-1], True]
        out[g[edge]] = rows[edge]
    return out


def _screen(log: Log) -> tuple[list[dict], list[str]]:
    """The records a trace can carry, and a note on the lines it cannot: those of an endpoint the simulator
    does not model are left out (how many, which, what is allowed).  What no real line holds is already said
    and set aside by :func:`~sim.recorder.read_log`."""
    others = list(dict.fromkeys(repr(r["endpoint"])[:40] for r in log.records
                                if r["endpoint"] is not None and r["endpoint"] not in MODELLED))
    if not others:
        return log.records, []
    off = [n for r, n in zip(log.records, log.numbers) if r["endpoint"] is not None and r["endpoint"] not in MODELLED]
    where = ", ".join(map(str, off[:5])) + (", ..." if len(off) > 5 else "")
    note = (f"{len(off)} line(s) have an endpoint the simulator does not model ({', '.join(others[:3])}"
            f"{', ...' if len(others) > 3 else ''}; allowed: {', '.join(MODELLED)}): left out (line {where})")
    return [r for r in log.records if r["endpoint"] is None or r["endpoint"] in MODELLED], [note]


def log_to_trace(path: str | Path) -> TraceExport:
    """The trace of the recorder log at ``path`` (see the module's docstring); :class:`ConfigError` if no
    line of it makes a request, naming why lines were left out."""
    return trace_of_log(read_log(path))


def trace_of_log(log: Log, fold: bool = True, evidence: pd.DataFrame | None = None) -> TraceExport:
    """:func:`log_to_trace` of a log already read (:func:`~sim.recorder.read_log`); ``fold`` False: every
    attempt a request of its own, its sizes its own line's (imputed as for a request without usage).
    ``evidence``: the log's :func:`~sim.calibrate.evidence.evidence_table` when already built (a calibration's:
    without the attempts that failed on the client), not built again."""
    path = log.path
    records, screened = _screen(log)
    notes = [*log.problem_summary(), *screened]
    if evidence is None:
        df = evidence_table(Log(log.path, records, log.problems, log.lines), failed_attempts=True)
    else:  # the same screen: the lines of an endpoint the simulator models
        df = evidence[evidence["endpoint"].isna() | evidence["endpoint"].isin(MODELLED)].reset_index(drop=True)
    if df.empty:
        raise ConfigError(f"{path}: no usable request in the log" + (f" ({'; '.join(notes)})" if notes else ""))
    if df["impossible_usage"].any():
        notes.append(f"{int(df['impossible_usage'].sum())} line(s) report more completion_tokens than their "
                     "max_tokens (impossible): their usage is not used (sizes imputed as for a request without it)")
    if fold and df["retry_count"].isna().all():
        notes.append("no retry_count in the log: every line is kept as a request of its own (retries not folded)")
    for kind, what in (("timeout", "timed out on the client (the SDK's timeout)"),
                       ("connection", "failed on the client (a connection error)")):
        n = int((df["client_error"] == kind).sum())
        if n:
            notes.append(f"{n} attempt(s) {what}: no response, so no usage or headers; kept as attempts of their "
                         "requests (the server may still have served and charged them)")
    group = _fold(df) if fold else np.arange(len(df))
    n_groups = int(group.max()) + 1
    order = np.lexsort((np.nan_to_num(df["retry_count"].to_numpy(float)), group))  # by request, attempts in order
    first = _last_per_group(order, group, n_groups, first=True)
    last = _last_per_group(order, group, n_groups)
    status = df["status"].to_numpy()
    used = _last_per_group(order[((status == 200) & df["prompt_tokens"].notna().to_numpy())[order]], group, n_groups)
    asked = df["msg_unit"].isin(TOKEN_UNITS).to_numpy() & df["msg_requested"].notna().to_numpy()
    asked = _last_per_group(order[asked[order]], group, n_groups, first=True)
    answered = np.bincount(group[status == 200], minlength=n_groups) > 0
    # ... or answered a 400 Groq charged (a structured answer written, then failed: the service served it)
    served = answered | (np.bincount(group[df["charged_failure"].to_numpy(bool)], minlength=n_groups) > 0)

    ok = df[df["status"] == 200]
    med_prompt = ok.groupby("model")["prompt_tokens"].median()
    med_completion = ok.groupby("model")["completion_tokens"].median()
    model = df["model"].to_numpy(object)[first]
    max_tokens = df["max_tokens"].to_numpy(float)[first]
    # a request's audio length: its first attempt's that knows it (an mp3 upload's is known only from a
    # verbose_json answer's duration); unknown stays NaN, an empty cell the replaying client's audio fills
    seconds = df["audio_seconds"].to_numpy(float)
    told = _last_per_group(order[np.isfinite(seconds)[order]], group, n_groups, first=True)
    audio = np.where(told >= 0, seconds[told], np.nan)
    is_audio = np.isin(df["endpoint"].to_numpy(object)[first], AUDIO_ENDPOINTS) | (audio > 0)
    audio[~is_audio] = 0.0  # a chat request carries no audio
    # sizes from the answer's usage; a chat request without one is imputed (a transcription has no tokens)
    prompt = np.where(used >= 0, df["prompt_tokens"].to_numpy(float)[used], np.nan)
    completion = np.where(used >= 0, df["completion_tokens"].to_numpy(float)[used], np.nan)
    impute = (used < 0) & ~is_audio
    requested = np.where(asked >= 0, df["msg_requested"].to_numpy(float)[asked], np.nan)
    # what the 429's Requested holds beside the prompt: the max_tokens the request set, or the reservation of one
    # that set none (as the emulator charges it)
    reserved = np.where(np.isnan(max_tokens), DEFAULT_RESERVATION, max_tokens)
    from_429 = impute & (requested > reserved) & (requested - reserved <= MAX_SIZE)  # NaN compares False
    prompt[from_429] = (requested - reserved)[from_429]
    by_median = impute & ~from_429
    prompt[by_median] = [med_prompt.get(m, np.nan) for m in model[by_median]]
    median = np.array([med_completion.get(m, np.nan) for m in model[impute]], float)
    cap = max_tokens[impute]
    completion[impute] = np.where(np.isnan(cap), median, np.minimum(median, cap))  # NaN median stays NaN
    # a chat request that set no max_tokens reserved sim.config.DEFAULT_RESERVATION (as the emulator charges and
    # the calibration's replay assumes), or its completion where longer (a trace's completion never exceeds it)
    unset = np.isnan(max_tokens) & ~is_audio
    max_tokens = np.where(unset, np.fmax(DEFAULT_RESERVATION, completion), max_tokens)
    # a transcription has no tokens: zero (an empty cell would take the replaying client's sizes)
    prompt[is_audio], max_tokens[is_audio], completion[is_audio] = 0.0, 0.0, 0.0
    t_send = df["t_send"].to_numpy(float)
    trace = pd.DataFrame({"timestamp": np.round(t_send[first] - t_send.min(), 6), "model": model,
                          "prompt_tokens": prompt, "max_tokens": max_tokens, "completion_tokens": completion,
                          "audio_seconds": audio}, columns=list(TRACE_COLUMNS))
    for col in ("prompt_tokens", "max_tokens", "completion_tokens"):
        trace[col] = trace[col].round().astype("Int64")
    folded = len(df) - n_groups
    if impute.any():
        never = int((impute & ~answered).sum())
        notes.append(f"{int(impute.sum())} chat request(s) without usage ({never} never answered"
                     + (f", {int(impute.sum()) - never} answered without it" if never < impute.sum() else "")
                     + f"): completion set to the model's median (prompt imputed for {int(by_median.sum())} "
                     "of them, the rest from their 429's Requested)")
    unknown = int(np.isnan(audio).sum())
    if unknown:
        notes.append(f"{unknown} transcription(s) of unknown length (the recorder reads only WAV lengths, and only "
                     "a verbose_json answer has a duration): audio_seconds left empty: the replaying client "
                     "group's audio_seconds fills them (give it one)")
    if unset.any():
        notes.append(f"{int(unset.sum())} chat request(s) set no max_tokens: max_tokens written as "
                     f"{DEFAULT_RESERVATION} (what the emulator and the calibration's replay take such a request to "
                     "reserve), or the completion where longer")
    if trace[["prompt_tokens", "completion_tokens"]].isna().any().any():  # (transcriptions are 0)
        notes.append("some sizes are unknown (a model with no answered request): left empty; the scenario's "
                     "client distributions fill them")
    outcomes = pd.DataFrame({"answered": answered, "served": served,
                             "attempts": np.bincount(group, minlength=n_groups),
                             "n429": np.bincount(group[status == 429], minlength=n_groups),
                             "latency": df["t_recv"].to_numpy(float)[last] - t_send[first]})
    return TraceExport(trace, len(df), folded, notes, outcomes)
