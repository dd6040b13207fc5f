"""Parsing and formatting of the quantities groqsim reads and writes.

Counts as Groq's limits page writes them (``14.4K``, ``1M``, ``-``), durations (``90s``, ``15m``, ``1d``,
``2m59.56s``, ``500ms``), rates (``20/min``), and Go ``time.Duration`` strings exactly as Go writes and reads
them (Groq's reset headers and 429 waits: ``547ms``, ``2m52.8s``, ``6.780999999s``).  Every parser raises
``ValueError`` with a message that says what is allowed, so callers can name the file and key around it.
"""
from __future__ import annotations

import math
import re
from decimal import Decimal

_SUFFIX = {"": 1, "K": 1_000, "M": 1_000_000}
# (re.ASCII: \d is 0-9 only, not every script's digits, which float() would read: "٣s" is not 3 s)
_COUNT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KM]?)\s*$", re.IGNORECASE | re.ASCII)
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|d|h|m|s)", re.ASCII)
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "\u03bcs": 1e-6, "ms": 0.001, "s": 1.0, "m": 60.0,
                 "h": 3600.0, "d": 86400.0}
_RATE_PER = {"s": 1.0, "sec": 1.0, "second": 1.0, "min": 60.0, "minute": 60.0, "m": 60.0,
             "h": 3600.0, "hour": 3600.0, "d": 86400.0, "day": 86400.0}


def half_up(value: float) -> int:
    """The whole number nearest ``value``, halves up: a scaled limit, a closed loop's users at a load (Python's
    ``round`` takes halves to even: 2.5 to 2, 3.5 to 4, so equal fractions gave unequal results)."""
    return math.floor(value + 0.5)


def parse_count(text: str) -> int | None:
    """``14.4K`` -> 14400, ``1M`` -> 1000000, ``-`` or empty -> None (no limit)."""
    text = text.strip()
    if text in ("-", ""):
        return None
    m = _COUNT.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a count (allowed: 30, 14.4K, 1M, or - for no limit)")
    value = Decimal(m.group(1)) * _SUFFIX[m.group(2).upper()]  # exact: 16.1K is 16100, not 16100.000000000002
    if value != value.to_integral_value():
        raise ValueError(f"{text!r} is not a whole number (allowed: 30, 14.4K, 1M, or - for no limit)")
    return int(value)


def parse_duration(value: str | float) -> float:
    """Seconds from a number or a string such as ``90s``, ``15m``, ``2h``, ``1d``, ``2m59.56s``, ``500ms``.
    Every Go duration string (``1.5µs``, ``250ns``, ``2m52.8s``) is accepted too; ``d`` (days) is ours."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{value!r} is not a duration (allowed: a number of seconds, or like 90s, 15m, 2h, 1d)")
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
                if not text.isascii():  # (float() reads every script's digits: "٣" would be 3 s)
                    raise ValueError
                seconds = float(text)
            except ValueError:
                raise ValueError(f"{value!r} is not a duration (allowed: a number of seconds, or like "
                                 "90s, 15m, 2h, 1d, 2m59.56s, 500ms)") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{value!r} is not a duration (must be finite and >= 0)")
    return seconds


def parse_rate(value: str | float) -> float:
    """Events per second from a number (per second) or ``20/min``, ``3.5/s``, ``1000/day``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{value!r} is not a rate (allowed: a number per second, or like 20/min, 3.5/s, 1000/day)")
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


# --- Go ``time.Duration`` strings (Groq's reset headers and "Please try again in ..." waits) -------------
_NS_PER = {"ns": 1, "us": 1_000, "\u00b5s": 1_000, "\u03bcs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
           "m": 60_000_000_000, "h": 3_600_000_000_000}
_GO_PART = re.compile(r"(\d*)(?:\.(\d*))?(ns|us|\u00b5s|\u03bcs|ms|s|m|h)", re.ASCII)
_INT64_MAX = (1 << 63) - 1


def _frac(v: int, prec: int) -> tuple[str, int]:
    """Go's ``fmtFrac``: the ``prec`` low decimal digits of ``v`` as ``.ddd`` without trailing zeros."""
    v, low = divmod(v, 10 ** prec)
    digits = f"{low:0{prec}d}".rstrip("0") if prec else ""
    return ("." + digits if digits else ""), v


def format_go_duration(ns: int) -> str:
    """Exactly Go's ``time.Duration(ns).String()``: ``0s``, ``1ns``, ``1.1µs``, ``547ms``, ``7.66s``,
    ``2m52.8s``, ``1h2m0.3s`` (no days; trailing zeros dropped; ``µ`` is U+00B5 as Go writes it)."""
    ns = int(ns)
    sign, u = ("-", -ns) if ns < 0 else ("", ns)
    if u == 0:
        return "0s"
    if u < 1_000_000_000:
        prec, unit = (0, "ns") if u < 1_000 else (3, "\u00b5s") if u < 1_000_000 else (6, "ms")
        frac, whole = _frac(u, prec)
        return f"{sign}{whole}{frac}{unit}"
    frac, secs = _frac(u, 9)
    mins, secs = divmod(secs, 60)
    if not mins:
        return f"{sign}{secs}{frac}s"
    hours, mins = divmod(mins, 60)
    return f"{sign}{hours}h{mins}m{secs}{frac}s" if hours else f"{sign}{mins}m{secs}{frac}s"


def _go_fraction(digits: str, unit_ns: int) -> int:
    """Go's ``leadingFraction`` + ``float64(f) * (float64(unit) / scale)``: digits beyond int64 are dropped."""
    f, scale = 0, 1.0
    for c in digits:
        y = f * 10 + int(c)
        if f > _INT64_MAX // 10 or y > 1 << 63:
            break
        f, scale = y, scale * 10
    return int(float(f) * (float(unit_ns) / scale))


def parse_go_duration(text: str) -> int:
    """Nanoseconds from a Go duration string, as Go's ``time.ParseDuration`` reads it (exact, integer
    arithmetic): ``[-+]`` then one or more ``<decimal><unit>`` with units ns, us/µs/μs, ms, s, m, h; ``0``
    alone is zero.  Fractions are converted as Go does (float64, truncated to the nanosecond)."""
    s = text.strip()
    sign = -1 if s[:1] == "-" else 1
    body = s[1:] if s[:1] in "+-" else s
    if body == "0":
        return 0
    pos, total = 0, 0
    for m in _GO_PART.finditer(body):
        whole, frac, unit = m.group(1), m.group(2), m.group(3)
        if m.start() != pos or not (whole or frac):
            break
        scale = _NS_PER[unit]
        total += int(whole or 0) * scale
        if frac:
            total += _go_fraction(frac, scale)
        pos = m.end()
    if not body or pos != len(body):
        raise ValueError(f"{text!r} is not a Go duration (allowed: like 547ms, 7.66s, 2m52.8s, 1h2m3.5s)")
    if total > _INT64_MAX + (sign < 0):
        raise ValueError(f"{text!r} is out of range of a Go duration (about 292 years)")
    return sign * total


def ns(seconds: float) -> float:
    """A time in ``usage`` as Groq reports it: seconds at nanosecond precision (``0.69108819``: at most 9
    decimals written)."""
    return round(seconds, 9)


def usage_times(times) -> tuple[float, float, float, float]:
    """(queue, prompt, completion, total) time of an answer's ``usage`` from its (queue, prompt, completion)
    service times, as Groq reports them: to the nanosecond (:func:`ns`), and ``total_time`` the sum of the
    rounded prompt and completion times, so it equals their sum as written (groq-real-responses.md section 1)."""
    q, p, c = (ns(float(t)) for t in times)
    return q, p, c, ns(p + c)


def seconds_to_ns(seconds: float, rounding: str = "nearest") -> int:
    """Float seconds to integer nanoseconds, ``nearest`` or ``ceil`` (``ceil`` ignores float noise below
    1e-6 ns, so 179.56 s stays 179560000000 ns)."""
    if rounding == "nearest":
        return round(seconds * 1e9)
    if rounding == "ceil":
        return math.ceil(round(seconds * 1e9, 6))
    raise ValueError(f"rounding {rounding!r} (allowed: nearest, ceil)")


#: Precision of reset headers: whole milliseconds, rounded up.  Every real capture has at most 3 decimals
#: (``547ms``, ``2m52.8s``, ``7.66s``, ``2m59.56s``); rounding up never tells a client "full" too early.
RESET_PRECISION_NS = 1_000_000


def format_reset(seconds: float) -> str:
    """A reset header: the Go duration of ``seconds`` rounded up to a whole millisecond (``547ms``,
    ``7.66s``, ``2m59.56s``, ``1h0m5s``; ``0s`` when full)."""
    ms = math.ceil(round(max(seconds, 0.0) * 1000, 6))  # (float noise below 1 ns is not rounded up)
    return format_go_duration(ms * RESET_PRECISION_NS)


def format_wait(seconds: float) -> str:
    """The wait in a 429 message ("Please try again in 4.77s"): Go duration at full (1 ns) precision, as Groq
    writes it (``6.780999999s``), from float seconds rounded to the nearest nanosecond."""
    return format_go_duration(seconds_to_ns(max(seconds, 0.0)))


def _format_hms(seconds: float) -> str:
    """Scenario style below a minute multiple: ``1m30s``, ``0.5s`` (to 0.01 s, rounded up); below 0.01 s in
    ``ms`` or ``us`` (3 digits: ``4ms``, not a horizon shown 0.01 s long)."""
    seconds = max(seconds, 0.0)
    if 0 < seconds < 0.01:
        return f"{seconds * 1e3:.3g}ms" if seconds >= 1e-3 else f"{seconds * 1e6:.3g}us"
    centis = math.ceil(round(seconds * 100, 6))
    hours, centis = divmod(centis, 360_000)
    minutes, centis = divmod(centis, 6_000)
    secs = f"{centis / 100:.2f}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def format_duration(seconds: float) -> str:
    """A duration as a scenario would write it: ``1d``, ``6h``, ``15m``, else like ``2m59.56s``; from a trillion
    days on ``1.16e+303d`` (a wall of digits reads as nothing; infinity as ``infd``)."""
    if seconds >= 86_400e12:
        return f"{seconds / 86_400:.3g}d"
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return _format_hms(seconds)
