"""Everything a response says about limits: Groq's rate-limit headers and error bodies, as data.

The one producer for the simulator, validation and the live emulator (``groqsim serve``), all computed from
a :class:`~sim.limitset.LimitSet`'s state.

Headers (Groq's docs and a real capture, ``docs/reference``): ``x-ratelimit-*-requests`` always refer to
RPD and ``x-ratelimit-*-tokens`` to TPM; they are sent on every response; a model without an RPD (or TPM)
limit gets no request (or token) headers.  Remaining budgets are rounded down to integers; resets are Go
``time.Duration`` strings rounded up to the millisecond (:func:`sim.units.format_reset`: ``547ms``,
``2m52.8s``).  ``retry-after`` (whole seconds) only on a 429.  No real response on record carries a
``retry-after-ms`` (which the groq SDK 1.7.0 would read first) or an ``x-should-retry``, so neither is produced here.

Error bodies are ``{"error": {"message", "type", "code"}}`` as Groq writes them:

* 429 ``rate_limit_exceeded``: "Rate limit reached for model `M` in organization `org_…` service tier
  `on_demand` on tokens per minute (TPM): Limit L, Used U, Requested R. Please try again in 4.77s." --
  ``type`` is what the binding unit counts (``requests``/``tokens``; ``audio_seconds`` for ASH/ASD, our
  choice: no real audio 429 is on record).  Used = limit − remaining of the binding unit at the refusal,
  rounded up to a whole number; Requested = the request's amount of that unit (1 for RPM/RPD), rounded up;
  the wait, at 1 ns precision, is for a token bucket (Used + Requested − Limit) ÷ (Limit / window) of the
  figures shown, as every real message's is (never shorter than the exact wait, which ``retry-after`` and the
  headers give; less than one unit's refill time longer, two for a fractional Requested), and the exact wait
  for the window limiters.  Free-tier messages end "Need more tokens? Upgrade to Dev Tier today at …" as the
  real one does (our wording for requests/audio: "Need more requests?" / "Need more audio seconds?").
* 413 ``rate_limit_exceeded`` (a request larger than a unit's whole limit): "Request too large for model
  `M` … on tokens per minute (TPM): Limit L, Requested R, please reduce your message size and try again. …".
* 498 ``capacity_exceeded`` (flex tier out of capacity) and 5xx: Groq's status and code; the message text
  is ours (no real capture of these bodies is on record).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from .catalog import UNIT_SPEC
from .limiters import TokenBucket
from .limitset import LimitSet
from .units import format_reset, format_wait, parse_duration

RETRY_AFTER_ROUNDING = ("ceil", "round", "floor")
#: the units Groq's headers describe, with the headers' suffix: RPD as ``*-requests``, TPM as ``*-tokens``
HEADER_UNITS = (("rpd", "requests"), ("tpm", "tokens"))

#: How Groq names each unit in its messages.
UNIT_WORDS = {"rpm": "requests per minute (RPM)", "rpd": "requests per day (RPD)",
              "tpm": "tokens per minute (TPM)", "tpd": "tokens per day (TPD)",
              "ash": "audio seconds per hour (ASH)", "asd": "audio seconds per day (ASD)"}
_NEED_MORE = {"requests": "requests", "tokens": "tokens", "audio_seconds": "audio seconds"}
BILLING_URL = "https://console.groq.com/settings/billing"
#: Status -> (code/type, message) of the server errors the emulator and fault injection produce.
SERVER_ERRORS = {500: ("internal_server_error", "Internal Server Error"),
                 502: ("bad_gateway", "Bad Gateway"),
                 503: ("service_unavailable", "Service Unavailable"),
                 504: ("gateway_timeout", "Gateway Timeout")}


def retry_after_seconds(wait: float, rounding: str = "ceil") -> int:
    """The whole-second ``retry-after`` for a wait.  ``ceil`` (default) never tells a client to come back
    before it would be admitted; ``round``/``floor`` are alternatives for studying early retries.
    Never below 1 on a 429: a retry-after of 0 would tell clients to hammer."""
    if rounding == "ceil":
        value = math.ceil(wait - 1e-9)
    elif rounding == "round":
        value = math.floor(wait + 0.5)
    elif rounding == "floor":
        value = math.floor(wait)
    else:
        raise ValueError(f"retry_after rounding {rounding!r} (allowed: {', '.join(RETRY_AFTER_ROUNDING)})")
    return max(1, int(value))


def rate_limit_headers(limits: LimitSet, now: float, wait: float | None = None,
                       rounding: str = "ceil", time_scale: float = 1.0) -> dict[str, str]:
    """The headers Groq sends at ``now``; pass the refusal's ``wait`` to add ``retry-after`` (a 429).

    ``time_scale`` K ≠ 1 (the emulator's ``--time-scale``: the limiter clock runs K× faster than the
    client's) divides every duration by K, so the headers say how long to wait in the client's own seconds:
    resets are ``reset / K``; ``retry-after`` is Groq's whole-second value divided by K, written as a decimal
    (``0.25`` at K = 20 for a 5 s retry-after), which both SDKs parse as a float.  A client that sleeps it
    then waits exactly as long, on the limiter clock, as a client of the real API sleeping the whole seconds
    (what the simulator models); an integer would round every wait up to K limiter-seconds."""
    h: dict[str, str] = {}
    for unit, suffix in HEADER_UNITS:
        lim = limits.units.get(unit)
        if lim is None:
            continue
        h[f"x-ratelimit-limit-{suffix}"] = str(int(lim.limit))
        h[f"x-ratelimit-remaining-{suffix}"] = str(shown_remaining(lim, now))
        h[f"x-ratelimit-reset-{suffix}"] = format_reset(lim.reset(now) / time_scale)
    if wait is not None and math.isfinite(wait):
        seconds = retry_after_seconds(wait, rounding)
        h["retry-after"] = str(seconds) if time_scale == 1 else _decimal(seconds / time_scale)
    return h


def shown_remaining(lim, now: float) -> int:
    """What ``x-ratelimit-remaining-*`` shows of a limiter at ``now``: whole units, rounded down (never more than
    is left), a float's round-off just under a whole number not taken for a unit less (1e-9).  A 429's "Used"
    is the limit minus this.  The calibration's replay reads its hypotheses through the same rounding."""
    return math.floor(lim.remaining(now) + 1e-9)


def _decimal(x: float) -> str:
    """``0.25`` not ``2.5e-01``: a plain decimal to the microsecond, trailing zeros dropped."""
    return f"{x:.6f}".rstrip("0").rstrip(".") or "0"


def parse_reset(value: str) -> float:
    """Seconds from a reset header value (``2m59.56s`` -> 179.56, ``547ms`` -> 0.547)."""
    return parse_duration(value)


def retry_after_function(rounding: str = "ceil"):
    """``retry_after_seconds`` with the rounding fixed, as a fast one-argument function (the engine's hot
    path calls it on every 429)."""
    if rounding == "ceil":
        def ceil(wait: float, _ceil=math.ceil) -> int:
            value = _ceil(wait - 1e-9)
            return value if value > 1 else 1
        return ceil
    if rounding not in RETRY_AFTER_ROUNDING:
        raise ValueError(f"retry_after rounding {rounding!r} (allowed: {', '.join(RETRY_AFTER_ROUNDING)})")
    return lambda wait: retry_after_seconds(wait, rounding)


def observe(limits: LimitSet, now: float) -> tuple:
    """What the rate-limit headers tell a client at ``now``, as numbers before formatting:
    ``(now, RPD remaining, RPD limit, RPD reset s, TPM remaining, TPM limit, TPM reset s)``; a unit the
    model does not have reads as an unlimited budget (``inf``, ``inf``, 0)."""
    obs = [now]
    for unit, _ in HEADER_UNITS:
        lim = limits.units.get(unit)
        obs += [lim.remaining(now), lim.limit, lim.reset(now)] if lim else [math.inf, math.inf, 0.0]
    return tuple(obs)


@dataclass(frozen=True)
class Refusal:
    """Why a cost is refused: the binding unit (longest wait; the first in catalog order on a tie) and
    the figures Groq's message shows.  ``wait`` is ``inf`` when the cost exceeds the unit's whole limit."""
    unit: str
    limit: float
    used: float
    requested: float
    wait: float
    #: the unit's refill rate (limit / window, per second) when its limiter is a token bucket, else None
    refill: float | None = None

    @property
    def too_large(self) -> bool:
        return math.isinf(self.wait)

    @property
    def counts(self) -> str:
        """What the unit counts: ``requests``, ``tokens`` or ``audio_seconds`` (the body's ``type``)."""
        return UNIT_SPEC[self.unit][1]


def refusal(limits: LimitSet, tokens: float, audio_seconds: float, now: float) -> Refusal | None:
    """The binding refusal of a cost at ``now`` (changes nothing), or ``None`` if it would be admitted.

    A limit set with ``scopes`` (a project's and its organization's, :class:`~sim.projects.ScopedLimits`)
    is refused by the scope with the longer wait, the project's on a tie, as its ``acquire`` decides."""
    scopes = getattr(limits, "scopes", None)
    if scopes is not None:
        found = [r for r in (refusal(s, tokens, audio_seconds, now) for s in scopes) if r is not None]
        return max(found, key=lambda r: r.wait, default=None)
    amounts = {"requests": 1, "tokens": tokens, "audio_seconds": audio_seconds}
    best: Refusal | None = None
    for unit, lim in limits.units.items():
        amount = amounts[UNIT_SPEC[unit][1]]
        if not amount:
            continue
        w = lim.wait(amount, now)
        if w > 0 and (best is None or w > best.wait):
            best = Refusal(unit, lim.limit, lim.limit - lim.remaining(now), amount, w,
                           lim.limit / lim.window if isinstance(lim, TokenBucket) else None)
    return best


def _num(x: float) -> str:
    """Figures as Groq prints them: whole numbers."""
    return str(math.floor(x + 0.5))


@dataclass(frozen=True)
class ErrorResponse:
    """An HTTP error as data: status, headers (lower-case) and the JSON body."""
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: dict = field(default_factory=dict)

    def json(self) -> str:
        return json.dumps(self.body, ensure_ascii=False)

    @property
    def error(self) -> dict:
        return self.body["error"]


def rate_limit_message(r: Refusal, model: str, org_id: str, service_tier: str = "on_demand",
                       upgrade_hint: bool = False, time_scale: float = 1.0) -> str:
    """Groq's 429 (or 413, when ``r.too_large``) message text for a refusal."""
    head = (f"in organization `{org_id}` service tier `{service_tier}` on {UNIT_WORDS[r.unit]}: "
            f"Limit {_num(r.limit)}")
    tail = (f" Need more {_NEED_MORE[r.counts]}? Upgrade to Dev Tier today at {BILLING_URL}"
            if upgrade_hint else "")
    if r.too_large:
        return (f"Request too large for model `{model}` {head}, Requested {_num(math.ceil(r.requested))}, "
                f"please reduce your message size and try again.{tail}")
    # Used as the headers have it (limit - remaining rounded down): whole, and never below what refused it
    used, requested = math.ceil(r.used - 1e-9), math.ceil(r.requested)
    # a token bucket's wait from the figures shown, as Groq's always are: (Used + Requested - Limit) / refill;
    # at least the exact wait (Used and Requested are rounded up), less than a unit's refill time more for each
    wait = max((used + requested - r.limit) / r.refill, r.wait) if r.refill else r.wait
    return (f"Rate limit reached for model `{model}` {head}, Used {_num(used)}, Requested {_num(requested)}. "
            f"Please try again in {format_wait(wait / time_scale)}.{tail}")


def rate_limit_error(limits: LimitSet, model: str, org_id: str, tokens: float, audio_seconds: float,
                     now: float, wait: float | None = None, service_tier: str = "on_demand",
                     upgrade_hint: bool = False, rounding: str = "ceil",
                     time_scale: float = 1.0) -> ErrorResponse:
    """The 429 (or 413 when the cost can never fit) Groq answers for a refused cost at ``now``.

    Call it right after :meth:`LimitSet.acquire` returned ``wait`` > 0 (nothing was charged, so the state
    is the one at the refusal).  ``wait`` (default: the binding unit's) gives ``retry-after``;
    ``upgrade_hint`` adds the free tier's "Need more tokens? Upgrade to Dev Tier…" sentence; ``time_scale``
    as in :func:`rate_limit_headers` (the figures stay in limiter units, the durations are divided)."""
    r = refusal(limits, tokens, audio_seconds, now)
    if r is None:
        raise ValueError("rate_limit_error: the cost would be admitted at this time (nothing to refuse)")
    if wait is None:
        wait = r.wait
    msg = rate_limit_message(r, model, org_id, service_tier, upgrade_hint, time_scale)
    status = 413 if r.too_large else 429
    headers = rate_limit_headers(limits, now, None if r.too_large else wait, rounding, time_scale)
    return ErrorResponse(status, headers, {"error": {"message": msg, "type": r.counts,
                                                     "code": "rate_limit_exceeded"}})


def capacity_exceeded_error(model: str, service_tier: str = "flex",
                            headers: dict[str, str] | None = None) -> ErrorResponse:
    """498 ``capacity_exceeded``: the flex tier is out of capacity; clients should back off and retry."""
    msg = (f"Capacity exceeded for model `{model}` on service tier `{service_tier}`. "
           "Please back off with jitter and try again.")
    return ErrorResponse(498, dict(headers or {}), {"error": {"message": msg, "type": "capacity_exceeded",
                                                              "code": "capacity_exceeded"}})


def server_error(status: int = 500, headers: dict[str, str] | None = None) -> ErrorResponse:
    """A 5xx body (``internal_server_error``, ``service_unavailable``, …; other 5xx get a generic one)."""
    if not 500 <= status <= 599:
        raise ValueError(f"server_error status {status} (allowed: 500-599)")
    code, msg = SERVER_ERRORS.get(status, ("server_error", f"Server error {status}"))
    return ErrorResponse(status, dict(headers or {}), {"error": {"message": msg, "type": code, "code": code}})


def invalid_request_error(message: str, status: int = 400, code: str | None = None,
                          param: str | None = None) -> ErrorResponse:
    """The API's own 4xx for a malformed request (OpenAI-compatible ``invalid_request_error`` shape)."""
    err: dict = {"message": message, "type": "invalid_request_error"}
    if param is not None:
        err["param"] = param
    if code is not None:
        err["code"] = code
    return ErrorResponse(status, {}, {"error": err})
