"""Validated configuration: the shapes of a scenario's org, client groups, request sizes and policies.

pydantic models with ``extra="forbid"`` so a misspelt key is an error, never silently ignored.  Durations
(``90s``, ``15m``, ``1d``) and rates (``20/min``) are parsed on the way in; distributions sample in vectors.
Names that have a registry elsewhere (limiter algorithms, retry schedules, jitters, arrival kinds) are taken
from it, never retyped here.
"""
from __future__ import annotations

import math
from typing import Annotated, Literal

import numpy as np
from pydantic import BeforeValidator, Field, StrictBool, TypeAdapter, ValidationError, field_validator, model_validator

from .arrivals import ArrivalSpec, arrival
from .batch import BatchJobs, BatchLane
from .errors import ConfigError, did_you_mean
from .fields import BOUNDS, MAX_SIZE, Duration, PositiveDuration, Strict, bound_message
from .flex import Flex, ServiceTier
from .headers import RETRY_AFTER_ROUNDING
from .limiters import ALGORITHMS
from .policies import JITTERS, SCHEDULES
from .service import lognormal_sigma
from .units import parse_count, parse_duration

__all__ = ["Dist", "Policy", "Client", "Accounting", "Org", "BUILTIN_POLICIES", "resolve_policy", "policy_table",
           "PolicyError",
           "arrival", "Duration", "Strict"]


def _count_text(value):
    """A size inside a distribution may be text as Groq writes counts (``"2K"``), as a size written alone may."""
    if not isinstance(value, str):
        return value
    try:
        count = parse_count(value)
    except ValueError:
        count = None
    if count is None:
        raise ValueError(f"{value!r} is not a size (allowed: a number such as 200, or a count such as 2K or 1.5M)")
    return count


_SIZE_RANGE = Field(ge=0, le=MAX_SIZE, allow_inf_nan=False)
_Size = Annotated[float, BeforeValidator(_count_text), _SIZE_RANGE]
_PositiveSize = Annotated[float, BeforeValidator(_count_text), Field(gt=0, le=MAX_SIZE, allow_inf_nan=False)]
_SIZE = TypeAdapter(Annotated[float, _SIZE_RANGE])  # (the number _count_text read, or the file's)


def _bare_size(value: float) -> float:
    """A size written alone, checked as itself: its error names the key the file wrote (``max_tokens``), not
    the ``value`` of the fixed distribution it stands for, a key the file does not have."""
    try:
        return _SIZE.validate_python(value)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ValueError(bound_message(err) if err["type"] in BOUNDS else err["msg"]) from None


_NEEDS = {"fixed": ("value",), "uniform": ("low", "high"), "lognormal": ("median", "p95"), "empirical": ("values",)}


class Dist(Strict):
    """A size distribution: a plain number means ``fixed``."""
    dist: Literal["fixed", "uniform", "lognormal", "empirical"] = "fixed"
    value: _Size | None = None
    low: _Size | None = None
    high: _Size | None = None
    median: _PositiveSize | None = None
    p95: _PositiveSize | None = None
    values: list[_Size] | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data):
        if isinstance(data, (np.integer, np.floating)):  # (numpy's numbers as Python's)
            data = data.item()
        if isinstance(data, (int, float)) and not isinstance(data, bool):
            return {"dist": "fixed", "value": _bare_size(data)}
        value = None
        if isinstance(data, str):  # a count as limits are written ("2K"), else what a size may be
            try:
                value = _count_text(data)
            except ValueError:
                pass
        elif isinstance(data, (dict, Dist)):
            kind = data.get("dist") if isinstance(data, dict) else None
            if isinstance(kind, str) and kind not in _NEEDS:  # (arrivals say "constant": sizes say "fixed")
                hint = "; a constant size is dist = 'fixed', value = N (or just N)" if kind in ("constant", "const") \
                    else ""
                raise ValueError(did_you_mean(kind, _NEEDS, "size distribution") + hint)
            return data
        if value is None:  # text that is no count, a bool, a list: not pydantic's "instance of Dist"
            raise ValueError(f"{data!r} is not a size (allowed: a number such as 200 or 2K, or a distribution "
                             "such as { dist = 'uniform', low = 100, high = 400 })")
        return {"dist": "fixed", "value": _bare_size(value)}

    @model_validator(mode="after")
    def _complete(self):
        need = _NEEDS[self.dist]
        missing = [k for k in need if getattr(self, k) is None]
        if missing:
            raise ValueError(f"dist '{self.dist}' needs {', '.join(need)} (missing: {', '.join(missing)})")
        unused = [k for ks in _NEEDS.values() for k in ks if k not in need and getattr(self, k) is not None]
        if unused:
            raise ValueError(f"dist '{self.dist}' takes {', '.join(need)}; {', '.join(unused)} would be ignored")
        if self.dist == "uniform" and self.low > self.high:
            raise ValueError("uniform needs low <= high")
        if self.dist == "lognormal":
            lognormal_sigma(self.median, self.p95)
        if self.dist == "empirical" and not self.values:
            raise ValueError("empirical needs a non-empty list of values")
        return self

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.dist == "fixed":
            return np.full(n, float(self.value))
        if self.dist == "uniform":
            return rng.uniform(self.low, self.high, n)
        if self.dist == "lognormal":
            x = np.exp(np.log(self.median) + lognormal_sigma(self.median, self.p95) * rng.standard_normal(n))
            return np.minimum(x, MAX_SIZE, out=x)
        return rng.choice(np.asarray(self.values, dtype=float), n)

    def sample_whole(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` whole numbers (token counts): a ``uniform`` gives each whole number from ``low`` to ``high`` the
        same chance (one uniform draw each, as :meth:`sample`), the others are rounded to the nearest.  Rounding
        a continuous uniform gave its two end values half the chance of the others (``low = 0, high = 2``:
        0, 1, 2 a quarter, a half, a quarter)."""
        if self.dist == "uniform":  # (a token size's bounds are whole numbers: the scenario checks them)
            x = np.floor(rng.uniform(self.low, self.high + 1, n))  # (numpy's U may round up to its top: capped)
            return np.minimum(x, self.high, out=x)
        return np.rint(self.sample(rng, n))

    def bounds(self) -> tuple[float, float]:
        """The smallest and largest value the distribution can give."""
        if self.dist == "fixed":
            return self.value, self.value
        if self.dist == "uniform":
            return self.low, self.high
        if self.dist == "lognormal":
            return 0.0, float(MAX_SIZE)
        return min(self.values), max(self.values)

    def mean(self) -> float:
        if self.dist == "fixed":
            return float(self.value)
        if self.dist == "uniform":
            return (self.low + self.high) / 2
        if self.dist == "lognormal":
            s = lognormal_sigma(self.median, self.p95)
            return float(self.median * np.exp(s * s / 2))
        return float(np.mean(self.values))


#: the statuses the groq SDK retries (``_base_client._should_retry``): 408, 409, 429 and every 5xx (the
#: openai SDK's are the same)
GROQ_SDK_RETRY_ON = [408, 409, 429, *range(500, 600)]
#: ``retry = "groq-sdk"`` / ``"openai-sdk"``: the SDK's own defaults, under whatever the policy sets itself
SDK_DEFAULTS = {
    "groq-sdk": {"max_attempts": 3, "base": 0.5, "cap": 8.0, "retry_on": GROQ_SDK_RETRY_ON, "timeout": 60.0},
    "openai-sdk": {"max_attempts": 3, "base": 0.5, "cap": 8.0, "retry_on": GROQ_SDK_RETRY_ON, "timeout": 600.0},
}


class Policy(Strict):
    """What a client does about 429s, errors and pacing: the settings :class:`sim.policies.ClientPolicy` is
    built from.  See docs/modelling.md for the exact rules."""
    retry: Literal[tuple(SCHEDULES)] = "none"
    max_attempts: Annotated[int, Field(ge=1, le=10_000)] = 1
    delay: Duration = 1.0
    base: Duration = 0.5
    cap: Duration = 60.0
    jitter: Literal[tuple(JITTERS)] = "none"
    honor_retry_after: StrictBool = False
    retry_after_cap: Duration | None = None
    retry_on: list[Annotated[int, Field(ge=400, le=599)]] = [429, 500, 502, 503]  # HTTP error statuses
    deadline: PositiveDuration | None = None
    #: how long the client waits for an attempt's answer (the SDK's read timeout) before it stops waiting and
    #: retries (a timed-out attempt was admitted and charged; the server still does the work)
    timeout: PositiveDuration | None = None
    pacing: Annotated[float, Field(gt=0, le=1)] | None = None
    adaptive: StrictBool = False
    cooldown: Literal["retry-after"] | Duration | None = None
    max_in_flight: Annotated[int, Field(ge=1)] | None = None
    queue_size: Annotated[int, Field(ge=0)] | None = None
    fallback: list[str] = []

    @field_validator("cooldown", mode="before")
    @classmethod
    def _cooldown(cls, value):
        """'retry-after' or a duration; anything else said so (pydantic's union said only "Input should be
        'retry-after'", hiding that a duration is allowed)."""
        if value is None or value == "retry-after":
            return value
        try:
            return parse_duration(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a cooldown (allowed: 'retry-after', or a duration such as 5s, 30 "
                             "or 0)") from None

    @field_validator("fallback")
    @classmethod
    def _fallback_once(cls, value: list[str]) -> list[str]:
        """Each fallback model once: a second hop to a model asks its limits again at once, no other model's."""
        twice = sorted({m for m in value if value.count(m) > 1})
        if twice:
            raise ValueError(f"{', '.join(map(repr, twice))} listed more than once (allowed: each model once; a "
                             "hop to the same model again asks its limits again at once, with no back-off)")
        return value

    @model_validator(mode="before")
    @classmethod
    def _sdk_defaults(cls, data):
        # groq-sdk = the official Python SDK 1.7.0's defaults (groq/_constants.py, _base_client.py):
        # DEFAULT_MAX_RETRIES = 2, backoff 0.5 s * 2^n capped at 8 s with jitter x(1 - 0.25 U),
        # retry-after honoured when 0 < value <= 60 s; _should_retry retries 408, 409, 429 and EVERY status
        # >= 500 (501, 505, 520, 529 too), not 498.  It also obeys an x-should-retry header, which no Groq
        # response on record carries and the simulator's answers never carry.
        # DEFAULT_TIMEOUT = httpx.Timeout(60, connect=5): an answer that has not come 60 s after the request
        # went is a timeout, retried with the same backoff (``except httpx.TimeoutException`` in ``request``)
        # while retries remain.
        # openai-sdk = the official openai Python SDK's (openai/_constants.py, _base_client.py), a client of
        # Groq's OpenAI-compatible API: the same retries, backoff and statuses, a retry-after obeyed up to
        # MAX_RETRY_AFTER_DELAY = 120 s and one above it not retried (schedule OpenAISDK), and
        # DEFAULT_TIMEOUT = httpx.Timeout(timeout=600, connect=5.0).
        if isinstance(data, dict) and data.get("retry") in SDK_DEFAULTS:
            data = {**SDK_DEFAULTS[data["retry"]], **data}
        return data

    def inert(self, written: set[str] | frozenset[str] = frozenset()) -> list[str]:
        """The settings that change nothing as combined here, or act otherwise than they read (retries without
        a named schedule), each a phrase saying why.  Said as notes, not refused: an ``extends`` or a built-in
        can bring a setting along that another one then overrides.  ``written``: the keys the user wrote
        (``delay``, ``base`` and ``cap`` are noted only when written, since every policy has them)."""
        out = []
        if self.max_attempts > 1 and self.retry == "none" and "retry" not in written:
            out.append(f"no retry schedule is named (retry 'none'), yet max_attempts = {self.max_attempts}: the "
                       f"retries back off as retry 'exponential' (base {self.base:g} s, cap {self.cap:g} s, jitter "
                       f"{self.jitter!r}); name the schedule, e.g. retry = 'exponential'")
        if self.max_attempts == 1 and self.retry != "none":
            out.append(f"retry {self.retry!r} never runs: max_attempts = 1 (set max_attempts above 1 to retry)")
        if self.fallback and self.max_attempts <= len(self.fallback):
            never = self.fallback[self.max_attempts - 1:]
            out.append(f"fallback model{'s' if len(never) > 1 else ''} {', '.join(map(repr, never))} never "
                       f"tried: max_attempts = {self.max_attempts} counts every attempt, a fallback hop's too (set "
                       f"max_attempts to at least {len(self.fallback) + 1} to try each model once, with retry "
                       "'fixed' and retry_on = [] for no other retry)")
        if self.jitter != "none" and self.retry not in ("none", "exponential"):
            out.append(f"jitter {self.jitter!r} has no effect with retry {self.retry!r} (jitter belongs to "
                       "retry 'exponential')")
        if self.retry_after_cap is not None and not self.honor_retry_after:
            out.append("retry_after_cap has no effect without honor_retry_after = true")
        if "delay" in written and self.retry != "fixed":
            out.append(f"delay has no effect with retry {self.retry!r} (only retry 'fixed' waits delay)")
        unused = sorted({"base", "cap"} & written) if self.retry == "fixed" else []
        if unused:
            out.append(f"{' and '.join(unused)} {'has' if len(unused) == 1 else 'have'} no effect with retry "
                       "'fixed' (it waits delay)")
        return out

    def reads_retry_after(self) -> bool:
        """Whether a client with this policy ever reads a 429's ``retry-after``: a cooldown as long as it says,
        or, when it retries 429s, a schedule that obeys it or gives up above a value (``groq-sdk``,
        ``openai-sdk``) or ``honor_retry_after``."""
        if self.cooldown == "retry-after":
            return True
        schedule = SCHEDULES[self.retry]
        return self.max_attempts > 1 and 429 in self.retry_on and (
            self.honor_retry_after or schedule.obeys > 0 or schedule.gives_up_above < math.inf)

    @model_validator(mode="after")
    def _base_within_cap(self):
        if self.base > self.cap:
            raise ValueError(f"base {self.base:g} s is above cap {self.cap:g} s (the back-off starts at base and "
                             "never exceeds cap)")
        return self


BUILTIN_POLICIES: dict[str, dict] = {
    "no-retry": {"retry": "none"},
    "groq-sdk": {"retry": "groq-sdk"},
    "openai-sdk": {"retry": "openai-sdk"},
    "fixed": {"retry": "fixed", "delay": 1.0, "max_attempts": 5},
    "exponential": {"retry": "exponential", "base": 1.0, "cap": 60.0, "max_attempts": 6},
    "full-jitter": {"retry": "exponential", "jitter": "full", "base": 1.0, "cap": 60.0, "max_attempts": 6},
    "equal-jitter": {"retry": "exponential", "jitter": "equal", "base": 1.0, "cap": 60.0, "max_attempts": 6},
    "decorrelated-jitter": {"retry": "exponential", "jitter": "decorrelated", "base": 1.0, "cap": 60.0,
                            "max_attempts": 6},
    "retry-after": {"retry": "exponential", "jitter": "full", "base": 1.0, "cap": 60.0, "max_attempts": 6,
                    "honor_retry_after": True},
    "paced": {"retry": "exponential", "jitter": "full", "base": 1.0, "cap": 60.0, "max_attempts": 6,
              "honor_retry_after": True, "pacing": 0.95},
    "adaptive": {"retry": "exponential", "jitter": "full", "base": 1.0, "cap": 60.0, "max_attempts": 6,
                 "honor_retry_after": True, "adaptive": True},
    "cooldown": {"retry": "fixed", "delay": 1.0, "max_attempts": 6, "honor_retry_after": True,
                 "cooldown": "retry-after"},
}


def resolve_policy(name: str, raw: dict) -> Policy:
    """A policy from its settings; ``extends = "built-in"`` starts from a built-in (a built-in's own name
    extends itself), so ``{"extends": "groq-sdk", "deadline": "30s"}`` is the SDK with a deadline."""
    raw = dict(raw)
    base = raw.pop("extends", name if name in BUILTIN_POLICIES else None)
    if base is not None and not isinstance(base, str):
        raise ConfigError(f"{base!r}: must be the name of a built-in policy (allowed: "
                          f"{', '.join(BUILTIN_POLICIES)})")
    if base is not None and base not in BUILTIN_POLICIES:
        raise ConfigError(did_you_mean(base, BUILTIN_POLICIES, "built-in policy"))
    return Policy(**{**BUILTIN_POLICIES.get(base, {}), **raw})


class PolicyError(ConfigError):
    """A named policy's settings are wrong; ``cause`` is the ConfigError or pydantic ValidationError."""

    def __init__(self, name: str, cause: Exception):
        super().__init__(f"policy {name!r}: {cause}")
        self.name, self.cause = name, cause


def policy_table(extra: dict[str, dict] | None = None) -> dict[str, Policy]:
    """The built-in policies plus ``extra`` named ones (raw settings, see :func:`resolve_policy`); a bad
    one raises :class:`PolicyError` naming it."""
    raw = {**{k: {} for k in BUILTIN_POLICIES}, **(extra or {})}
    table = {}
    for name, settings in raw.items():
        try:
            table[name] = resolve_policy(name, settings)
        except (ConfigError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
            raise PolicyError(name, exc) from None
    return table


class Client(Strict):
    """A group of requests with one model, size distributions, arrival process and policy."""
    name: Annotated[str, Field(min_length=1)]  # (a blank name reads back from the CSV tables as NaN)
    model: str
    arrival: ArrivalSpec
    prompt_tokens: Dist = Dist(dist="fixed", value=500)
    max_tokens: Dist = Dist(dist="fixed", value=512)
    completion_tokens: Dist | None = None
    audio_seconds: Dist = Dist(dist="fixed", value=0)
    policy: str = "no-retry"
    #: ``batch``: requests go to the Batch API as jobs (settings in ``batch``), not to the on-demand limits
    lane: Literal["on_demand", "batch"] = "on_demand"
    batch: BatchJobs = BatchJobs()
    #: the group's own service tier (default: the org's)
    service_tier: ServiceTier | None = None
    #: the project (``[projects.NAME]``) the group's API key belongs to (default: none, the org's limits)
    project: str | None = None

    @field_validator("prompt_tokens", "max_tokens", "completion_tokens")
    @classmethod
    def _whole_tokens(cls, dist):
        """A token count is a whole number: a fixed value, a uniform's bounds, an empirical's values."""
        if dist is not None:
            counts = [dist.value, dist.low, dist.high, *(dist.values or [])]
            bad = next((v for v in counts if v is not None and v != int(v)), None)
            if bad is not None:
                raise ValueError(f"{bad:g} is not a whole number of tokens (allowed: a whole number such as 512, "
                                 "or a distribution)")
        return dist

    @field_validator("audio_seconds", mode="before")
    @classmethod
    def _seconds_not_text(cls, value):
        if isinstance(value, (str, bool, list)):  # ("2K" is a count, for tokens; seconds are numbers)
            raise ValueError(f"{value!r} is not a number of seconds (allowed: a number such as 30, or a "
                             "distribution such as { dist = 'uniform', low = 5, high = 60 })")
        return value

    @model_validator(mode="after")
    def _completions_fit(self):
        if self.completion_tokens is not None and self.completion_tokens.bounds()[0] > self.max_tokens.bounds()[1]:
            raise ValueError(f"completion_tokens (at least {self.completion_tokens.bounds()[0]:g}) is above "
                             f"max_tokens (at most {self.max_tokens.bounds()[1]:g}): every answer would be cut to "
                             "max_tokens; a completion never exceeds max_tokens")
        return self

    @model_validator(mode="after")
    def _batch_lane(self):
        if self.lane == "batch" and not self.arrival.open_loop:
            raise ValueError("lane 'batch' needs an open-loop arrival (batch requests are submitted as files, "
                             "nobody waits on each answer): not 'closed'")
        return self


#: tokens reserved for a request that sets no max_tokens (our choice: Groq does not document its default
#: reservation); the emulator charges it and the calibration's replay assumes it
DEFAULT_RESERVATION = 1024


class Accounting(Strict):
    """What an admitted request is charged against TPM/TPD, and what is billed."""
    charge: Literal["max_tokens", "actual"] = "max_tokens"
    refund_unused: StrictBool = False
    cache_hit_ratio: Annotated[float, Field(ge=0, le=1)] = 0.0
    #: is an attempt the client's ``timeout`` gave up on billed (the server still finished it)?  Nothing on
    #: record says: False (the default) makes costs a lower bound, True an upper one (docs/modelling.md)
    bill_timed_out: StrictBool = False

    def charged(self, prompt, max_tokens, completion, cacheable=True):
        """Tokens charged (works on scalars and numpy arrays): uncached prompt + max_tokens or actual.
        ``cacheable`` (a bool or an array of them): is the prompt a chat prompt, whose cached part does not
        count?  A text-to-speech request's characters (its "prompt") are not cached: all count."""
        if not self.cache_hit_ratio:
            uncached = prompt
        else:
            uncached = np.where(cacheable, np.round(prompt * (1 - self.cache_hit_ratio)), prompt)
        return uncached + (max_tokens if self.charge == "max_tokens" else completion)

    def prefilled(self, kind: str) -> float:
        """The share of a prompt that is prefilled on a model of this kind (engine and emulator): a chat
        prompt's cached tokens skip prefill; a text-to-speech request's characters are all synthesised."""
        return 1.0 - self.cache_hit_ratio if kind == "chat" else 1.0

    @property
    def refunds(self) -> bool:
        """Is a reservation's unused part (``max_tokens - completion``) given back when the response completes?
        Only when ``refund_unused`` and the reservation is charged (``charge = "max_tokens"``)."""
        return self.refund_unused and self.charge == "max_tokens"


class Org(Strict):
    """The organization: its tier (a built-in, a ``[tiers]`` one, or one from ``limits_file``), the limiter
    algorithm, what is charged, the retry-after rounding and injected faults."""
    tier: str = "free"
    limits_file: str | None = None  # your own limits table (CSV), its tiers added to the built-in ones
    limiter: Literal[tuple(ALGORITHMS)] = "token_bucket"
    accounting: Accounting = Accounting()
    retry_after_rounding: Literal[RETRY_AFTER_ROUNDING] = "ceil"
    error_rate: Annotated[float, Field(ge=0, le=1)] = 0.0
    error_status: Annotated[int, Field(ge=400, le=599)] = 503  # an error: a 5xx, Groq's 498, any 4xx
    #: default service tier of every client group: on_demand, flex (limits x flex.multiplier, best effort,
    #: 498 when capacity is short) or auto (on-demand limits first, then flex)
    service_tier: ServiceTier = "on_demand"
    flex: Flex = Flex()
    #: the Batch API lane's processing assumptions
    batch: BatchLane = BatchLane()
    #: apply the projects' own limits (false: every project inherits the org's, to see what quotas buy)
    project_quotas: StrictBool = True

    @field_validator("limits_file")
    @classmethod
    def _named(cls, value):
        if value is not None and not value.strip():
            raise ValueError(f"{value!r} names no file (allowed: the path of a limits table, a CSV such as "
                             "my_limits.csv, relative to the scenario's folder)")
        return value
