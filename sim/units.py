"""Parsing and formatting of the quantities groqsim reads and writes.

Counts as Groq's limits page writes them (``14.4K``, ``1M``, ``-``), durations (``90s``, ``15m``, ``1d``,
``2m59.56s``, ``500ms``) and rates (``20/min``).  Every parser raises ``ValueError`` with a message that
says what is allowed, so callers can name the file and key around it.
"""
from __future__ import annotations

import math
import re

_SUFFIX = {"": 1, "K": 1_000, "M": 1_000_000}
_COUNT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KM]?)\s*$", re.IGNORECASE)
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|d|h|m|s)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_RATE_PER = {"s": 1.0, "sec": 1.0, "second": 1.0, "min": 60.0, "minute": 60.0, "m": 60.0,
             "h": 3600.0, "hour": 3600.0, "d": 86400.0, "day": 86400.0}


def parse_count(text: str) -> int | None:
    """``14.4K`` -> 14400, ``1M`` -> 1000000, ``-`` or empty -> None (no limit)."""
    text = text.strip()
    if text in ("-", ""):
        return None
    m = _COUNT.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a count (allowed: 30, 14.4K, 1M, or - for no limit)")
    value = float(m.group(1)) * _SUFFIX[m.group(2).upper()]
    if value != round(value):
        raise ValueError(f"{text!r} is not a whole number")
    return int(round(value))


def parse_duration(value: str | int | float) -> float:
    """Seconds from a number or a string such as ``90s``, ``15m``, ``2h``, ``1d``, ``2m59.56s``, ``500ms``."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = value.strip().replace(" ", "")
        pos, seconds = 0, 0.0
        for m in _DURATION_PART.finditer(text):
            if m.start() != pos:
                break
            seconds += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
            pos = m.end()
        if pos != len(text) or not text:
            try:
                seconds = float(text)
            except ValueError:
                raise ValueError(f"{value!r} is not a duration (allowed: a number of seconds, or like "
                                 "90s, 15m, 2h, 1d, 2m59.56s, 500ms)") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{value!r} is not a duration (must be finite and >= 0)")
    return seconds


def parse_rate(value: str | int | float) -> float:
    """Events per second from a number (per second) or ``20/min``, ``3.5/s``, ``1000/day``."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a rate")
    if isinstance(value, (int, float)):
        rate = float(value)
    else:
        num, _, per = value.replace(" ", "").partition("/")
        try:
            rate = float(num) / (_RATE_PER[per] if per else 1.0)
        except (ValueError, KeyError):
            raise ValueError(f"{value!r} is not a rate (allowed: like 20/min, 3.5/s, 400/h, 1000/day)") from None
    if not math.isfinite(rate) or rate < 0:
        raise ValueError(f"{value!r} is not a rate (must be finite and >= 0)")
    return rate


def format_reset(seconds: float) -> str:
    """Groq's reset-header style: ``2m59.56s``, ``7.66s``, ``1h0m5s`` (hours, minutes, seconds to 0.01 s)."""
    centis = int(math.ceil(round(max(seconds, 0.0) * 100, 6)))
    hours, centis = divmod(centis, 360_000)
    minutes, centis = divmod(centis, 6_000)
    secs = f"{centis / 100:.2f}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def format_duration(seconds: float) -> str:
    """A duration as a scenario would write it: ``1d``, ``6h``, ``15m``, else like ``2m59.56s``."""
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return format_reset(seconds)
