"""A recorder log as a table of evidence: one row per response, headers and Groq's error text parsed.
(An attempt that failed on the client has no response: it is a row only when asked for, as a trace asks.)

Parses Groq's own spellings: reset headers are Go ``time.Duration`` strings (``547ms``, ``2m52.8s``,
``1h2m3.5s``, also ``µs``/``ns``); 429 messages say ``on tokens per minute (TPM): Limit L, Used U,
Requested R. Please try again in 4.77s``; 413 messages ``Request too large ... Limit L, Requested R``.
"""
from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..recorder import OPTIONAL_KEYS, USAGE_KEYS, Log, _number, client_failure

_GO_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_GO_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
UNIT_WORDS = {"requests per minute": "rpm", "requests per day": "rpd", "tokens per minute": "tpm",
              "tokens per day": "tpd", "audio seconds per hour": "ash", "audio seconds per day": "asd"}
_UNIT_RE = re.compile(r"on (" + "|".join(UNIT_WORDS) + r")(?: \((\w+)\))?", re.IGNORECASE)
_NUM = r"(\d[\d,]*(?:\.\d+)?)"
_LIMIT = re.compile(rf"Limit {_NUM}")
_USED = re.compile(rf"Used {_NUM}")
_REQUESTED = re.compile(rf"Requested {_NUM}")
_WAIT = re.compile(r"try again in ([0-9.hmsuµμn]+)")
_MODEL = re.compile(r"for model `([^`]+)`")
#: header -> column
HEADER_COLUMNS = {"x-ratelimit-limit-requests": "h_limit_req", "x-ratelimit-remaining-requests": "h_rem_req",
                  "x-ratelimit-reset-requests": "h_reset_req", "x-ratelimit-limit-tokens": "h_limit_tok",
                  "x-ratelimit-remaining-tokens": "h_rem_tok", "x-ratelimit-reset-tokens": "h_reset_tok",
                  "retry-after": "h_retry_after"}
#: the codes of a 400 Groq sends after the model has written its answer, when the validation of a structured
#: answer fails it: the request was admitted and charged (groq/groq-typescript#28 shows a ``tool_use_failed``
#: whose headers count it), so the limiter replay charges it like an answer (docs/calibration.md)
CHARGED_FAILURES = ("json_validate_failed", "tool_use_failed")


def parse_go_duration(text: str) -> float:
    """Seconds from a Go duration string (``547ms``, ``2m52.8s``, ``1h2m3.5s``, ``850µs``, ``0s``)."""
    return _go_seconds(str(text).strip())


@functools.lru_cache(maxsize=1 << 16)
def _go_seconds(s: str) -> float:
    """:func:`parse_go_duration` of a stripped text, remembered: a log's reset headers repeat (a 429's
    ``0s``, a retry-after's whole seconds), two thirds of a long log's three per line."""
    text = s
    if not s:
        raise ValueError("empty duration")
    sign = -1.0 if s.startswith("-") else 1.0
    s = s.lstrip("+-")
    if not s:  # a sign alone is no duration (Go: invalid), not 0
        raise ValueError(f"{text!r} is not a Go duration (like 547ms, 2m52.8s, 1h2m3.5s)")
    pos, total = 0, 0.0
    for m in _GO_PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _GO_UNIT[m.group(2)]
        pos = m.end()
    if pos != len(s):
        try:
            return sign * float(s)  # plain seconds (retry-after)
        except ValueError:
            raise ValueError(f"{text!r} is not a Go duration (like 547ms, 2m52.8s, 1h2m3.5s)") from None
    return sign * total


def _num(text: str | None) -> float | None:
    return None if text is None else float(text.replace(",", ""))


@dataclass(frozen=True)
class LimitMessage:
    """What a 429 / 413 message says about one limit."""
    unit: str                 # rpm, rpd, tpm, tpd, ash, asd
    limit: float
    used: float | None        # None in a 413
    requested: float | None
    wait: float | None        # "Please try again in" (seconds)
    too_large: bool
    model: str | None


def parse_limit_message(message: str | None) -> LimitMessage | None:
    """Groq's rate-limit message -> :class:`LimitMessage` (None if it is not one)."""
    if not message or not isinstance(message, str):
        return None
    unit_m, limit_m = _UNIT_RE.search(message), _LIMIT.search(message)
    if not unit_m or not limit_m:
        return None
    wait_m, used_m, req_m, model_m = (_WAIT.search(message), _USED.search(message), _REQUESTED.search(message),
                                      _MODEL.search(message))
    wait = None
    if wait_m:
        try:
            wait = parse_go_duration(wait_m.group(1).rstrip("."))
        except ValueError:
            wait = None
    return LimitMessage(UNIT_WORDS[unit_m.group(1).lower()], _num(limit_m.group(1)),
                        _num(used_m.group(1)) if used_m else None, _num(req_m.group(1)) if req_m else None,
                        wait, "too large" in message.lower(), model_m.group(1) if model_m else None)


def _header_value(col: str, text: str) -> float:
    """A rate-limit header as a number; NaN (unknown) for one that is not a finite number >= 0, or a limit
    that is not > 0: no real header says that, and a fit must not take it for a limit."""
    try:
        value = parse_go_duration(text) if col in ("h_reset_req", "h_reset_tok") else float(text)
    except (TypeError, ValueError, OverflowError):
        return math.nan
    if not math.isfinite(value) or value < 0 or (value == 0 and col in ("h_limit_req", "h_limit_tok")):
        return math.nan
    return value


def evidence_table(log: Log, failed_attempts: bool = False) -> pd.DataFrame:
    """One row per usable log line, in arrival order at the client (``t_send``).  A usage reporting more
    ``completion_tokens`` than the request's ``max_tokens`` is impossible: its figures are left out (NaN) and
    the row flagged ``impossible_usage``.  An attempt that failed on the client (the SDK's timeout, a
    connection error: :func:`~sim.recorder.client_failure`) has no response, so nothing of a limit or of the
    service: it is left out, unless ``failed_attempts`` (a trace's attempts), when its row has ``status`` NaN
    and ``client_error`` its kind ("timeout" or "connection"; missing, NA, on every other row).
    ``charged_failure`` flags a 400 of :data:`CHARGED_FAILURES`: admitted and charged, with no usage."""
    rows = []
    for rec in log.records:
        failure = client_failure(rec)
        if failure is not None and not failed_attempts:
            continue
        row = {k: rec.get(k) for k in ("t_send", "t_recv", "status", "model", "endpoint", "max_tokens",
                                       "audio_seconds", "label", "request_id", *OPTIONAL_KEYS)}
        row["client_error"] = failure
        usage = rec["usage"] or {}
        for k in USAGE_KEYS:  # read as read_log checked them ("123" is 123), so no usage it kept is lost here
            v = _number(usage.get(k))
            row[k] = math.nan if v is None else v
        for header, col in HEADER_COLUMNS.items():
            row[col] = _header_value(col, rec["headers"][header]) if header in rec["headers"] else math.nan
        msg = parse_limit_message((rec["error"] or {}).get("message"))
        row["msg_unit"] = msg.unit if msg else None
        for f in ("limit", "used", "requested", "wait"):
            row[f"msg_{f}"] = getattr(msg, f) if msg and getattr(msg, f) is not None else math.nan
        row["msg_too_large"] = bool(msg and msg.too_large)
        code = (rec["error"] or {}).get("code")
        row["charged_failure"] = rec["status"] == 400 and code in CHARGED_FAILURES
        row["groq"] = bool(rec["usage"]) or any(h.startswith("x-ratelimit-") for h in rec["headers"]) or bool(msg)
        # more completion tokens than the request allowed cannot be: the usage is corrupt, not evidence
        max_tokens = rec["max_tokens"] if rec["max_tokens"] is not None else math.inf
        row["impossible_usage"] = bool(row["completion_tokens"] > max_tokens)  # (NaN compares False)
        if row["impossible_usage"]:
            row.update(dict.fromkeys(USAGE_KEYS, math.nan))
        rows.append(row)
    cols = ["t_send", "t_recv", "status", "model", "endpoint", "max_tokens", "audio_seconds", "label", "request_id",
            *OPTIONAL_KEYS, *USAGE_KEYS, *HEADER_COLUMNS.values(), "msg_unit", "msg_limit", "msg_used",
            "msg_requested", "msg_wait", "msg_too_large", "charged_failure", "groq", "impossible_usage",
            "client_error"]
    df = pd.DataFrame(rows, columns=cols)
    for col in ("max_tokens", "audio_seconds", "retry_count"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    return df.sort_values("t_send", kind="stable").reset_index(drop=True)


def successes(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of answered requests whose usage carries the timings."""
    ok = (df["status"] == 200) & df[["completion_tokens", "completion_time", "prompt_tokens"]].notna().all(axis=1)
    return df[ok]


def mode_value(values: pd.Series) -> tuple[float | None, int, int]:
    """(most frequent value, how many rows carry it, how many distinct values) of a numeric column."""
    v = values.dropna()
    if v.empty:
        return None, 0, 0
    counts = v.value_counts()
    return float(counts.index[0]), int(counts.iloc[0]), len(counts)


def finite(x) -> np.ndarray:
    a = np.asarray(x, dtype=float)
    return a[np.isfinite(a)]
