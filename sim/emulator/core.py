"""The emulator's state, without HTTP: the organization's limits on a scaled clock, admission, and records.

One :class:`Emulator` serves one scenario grid point (a :class:`~sim.engine.RunSpec`): its tier's limits
per model with the org's limiter algorithm (the simulator's own :class:`~sim.limitset.LimitSet`), the
org's accounting and fault injection, and the service model's timings.  :meth:`Emulator.decide` is
synchronous and never awaits, so on the server's single event loop every admission is atomic: the limit
set is checked and charged in one step and a refusal charges nothing.

Clock: the limiter clock counts seconds from the UTC midnight before the emulator was created (so fixed
windows are calendar-aligned) and, from then on, runs ``time_scale`` (K) times faster than the wall clock.
Every time in the records (seconds since start) and the JSONL log (epoch seconds: the start's wall-clock
epoch plus limiter seconds, those of an API that ran K× faster) is on that clock.
Durations sent to the client (reset headers, ``retry-after``, "try again in", the response delay) are
divided by K: they are the client's own seconds.  The log keeps them in limiter seconds instead (the headers
and message Groq would have sent at K = 1), so a log recorded at any K reads like one recorded against the
real API in real time and calibrates to the emulated org.  ``usage`` timings are limiter seconds everywhere,
as Groq would report them.

What a chat request body must hold (:meth:`Emulator.chat_error`), how its prompt is counted
(:func:`approx_prompt_tokens`) and the answer's text (:func:`filler`) live here too: the chat route and a Batch API
file's lines (:mod:`sim.emulator.batches`) share them.  The Batch API's state registers itself as
:attr:`Emulator.batches`, and its requests that have ended appear in :meth:`Emulator.records`.
"""
from __future__ import annotations

import datetime
import itertools
import math
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..catalog import UNITS, shutdowns
from ..config import Dist
from ..spec import RunSpec
from ..headers import (
    ErrorResponse,
    capacity_exceeded_error,
    invalid_request_error,
    rate_limit_error,
    rate_limit_headers,
    server_error,
)
from ..config import DEFAULT_RESERVATION
from ..errors import ConfigError, KeyedError, did_you_mean
from ..fields import MAX_SIZE
from ..flex import SERVICE_TIERS, CapacityProcess
from ..limitbook import FLEX, MODES, ON_DEMAND, LimitBook
from ..limitset import LimitSet
from ..projects import ORG, SCOPES
from ..records import LANE_TIERS
from ..recorder import LogWriter, error_fields, kept_headers
from ..service import ServiceModel
from ..units import usage_times

#: max_tokens charged when a request sets none (sim.config.DEFAULT_RESERVATION)
DEFAULT_MAX_TOKENS = DEFAULT_RESERVATION
#: prompt-token approximation (no tokenizer: they download vocabularies on first use): ~4 characters per
#: token of message text, plus OpenAI's counting recipe of 3 tokens per message and 3 to prime the reply
CHARS_PER_TOKEN, TOKENS_PER_MESSAGE, TOKENS_PER_REPLY = 4, 3, 3
#: a record's outcome; ``expired`` and ``cancelled`` are the Batch API's requests that never ran
OUTCOMES = ("ok", "rate_limited", "too_large", "error", "bad_request", "unauthorized", "expired", "cancelled")
RECORD_COLUMNS = ("id", "client", "model", "endpoint", "status", "outcome", "refused_by", "created", "finished",
                  "latency", "admitted", "attempts", "n429", "prompt_tokens", "max_tokens", "completion_tokens",
                  "audio_seconds", "charged_tokens", "queue_time", "prompt_time", "completion_time", "total_time",
                  "request_id", "service_tier")
#: a service tier's code (the limit book's) from its name, and back
TIER_CODES = {"on_demand": ON_DEMAND, "flex": FLEX}
TIER_NAMES = {code: name for name, code in TIER_CODES.items()}
_FILLER = (" The", " quick", " brown", " fox", " jumps", " over", " the", " lazy", " dog.")
_PERIOD = "".join(_FILLER)
_ENDS = tuple(itertools.accumulate(map(len, _FILLER)))  # the characters of the first 1, 2, ... words


def approx_prompt_tokens(messages: list) -> int:
    """Prompt tokens of chat ``messages``: ceil(characters / 4) per message text + 3 per message + 3."""
    total = TOKENS_PER_REPLY
    for m in messages:
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, list):  # content parts: count the text ones
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        chars = len(content) if isinstance(content, str) else 0
        total += TOKENS_PER_MESSAGE + math.ceil(chars / CHARS_PER_TOKEN)
    return total


def filler(tokens: int) -> str:
    """Generated text of ``tokens`` words (about one token each): :data:`_FILLER` repeated, built by string
    repetition (no cache: an answer of a million words would stay in memory with it)."""
    whole, part = divmod(max(tokens, 0), len(_FILLER))
    return (_PERIOD * whole + _PERIOD[:_ENDS[part - 1] if part else 0]).lstrip()


def message_error(messages: list) -> str | None:
    """Why chat ``messages`` are malformed (None: they are fine): each an object with a string ``role`` and
    a ``content`` that is a string, null or a list of parts whose ``text`` (if any) is a string."""
    for k, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            return f"'messages.{k}' : must be an object with a string 'role'"
        content = m.get("content")
        if isinstance(content, list):
            if not all(isinstance(p, dict) and isinstance(p.get("text", ""), str) for p in content):
                return f"'messages.{k}.content' : each part must be an object whose 'text' is a string"
        elif content is not None and not isinstance(content, str):
            return f"'messages.{k}.content' : must be a string or a list of content parts"
    return None


def decommissioned_error(model: str) -> ErrorResponse:
    """Groq's answer to a request naming a model it has shut down: 400 ``model_decommissioned``, word for word
    as real responses quote it (docs/emulator.md, "Models Groq has shut down")."""
    return invalid_request_error(
        f"The model `{model}` has been decommissioned and is no longer supported. Please refer to "
        "https://console.groq.com/docs/deprecations for a recommendation on which model to use instead.",
        code="model_decommissioned")


def completion_cap(body: dict) -> tuple[str, object]:
    """The key and value of a chat body's completion cap: ``max_completion_tokens`` unless unset, else
    ``max_tokens`` (an explicit null counts as unset: the openai SDK sends ``max_completion_tokens=None`` as
    null)."""
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    return key, body.get(key)


#: the fastest the emulator's limiter clock may run: a simulated day in under 0.1 s of wall time.  The Flex
#: capacity timeline and the limiters are drawn up to the limiter's time, which a larger factor throws years
#: ahead at start (10^16 hung the server while it drew them)
MAX_TIME_SCALE = 1e6


class Clock:
    """Limiter seconds since the UTC midnight before the server started; from the start on it runs ``scale``
    times faster than the wall clock.  Counting from a UTC midnight puts the limiters' windows (a fixed
    window's minutes and days) on the calendar, as a calibration replaying the log assumes."""

    def __init__(self, scale: float = 1.0):
        if not 0 < scale <= MAX_TIME_SCALE:
            raise ValueError(f"time scale must be > 0 and at most {MAX_TIME_SCALE:g}, got {scale!r}")
        self.scale = scale
        self._mono0, self.epoch0 = time.monotonic(), time.time()
        self.origin = math.floor(self.epoch0 / 86_400.0) * 86_400.0  # the UTC midnight: limiter time 0
        self.start = self.epoch0 - self.origin  # limiter time at start

    def now(self) -> float:
        return self.start + (time.monotonic() - self._mono0) * self.scale

    def epoch(self, t: float) -> float:
        """A limiter time as epoch seconds (the log's clock)."""
        return self.origin + t

    def wall(self, t: float) -> float:
        """The wall-clock epoch seconds at which the limiter clock reads ``t`` (what a client is told)."""
        return self.epoch0 + (t - self.start) / self.scale


@dataclass
class Decision:
    """What the server answers one request: either admitted with its timings, or an error response."""
    status: int
    headers: dict[str, str]
    now: float
    request_id: str
    error: ErrorResponse | None = None
    charged: float = 0.0
    completion: int = 0
    times: tuple[float, float, float] = (0.0, 0.0, 0.0)  # queue, prompt, completion (limiter seconds)
    refused_by: str = ""
    #: a 429's binding scope: "project" or "org" (:data:`sim.projects.SCOPES`)
    refused_scope: str = ""
    #: the service tier that served, refused or (a 498) had no capacity: "on_demand" or "flex"
    service_tier: str = "on_demand"
    #: what the JSONL log keeps: the headers and error object in limiter seconds (as sent at K = 1)
    log_headers: dict[str, str] | None = None
    log_error: dict | None = None

    def __post_init__(self):
        if self.log_headers is None:  # K = 1: the log holds what the client saw
            self.log_headers = self.headers
        if self.log_error is None and self.error is not None:
            self.log_error = self.error.error

    @property
    def delay(self) -> float:
        """Limiter seconds until the answer is complete (queue + prompt + completion time)."""
        return sum(self.times)

    @property
    def sent_headers(self) -> dict[str, str]:
        """The response's headers: the rate-limit headers and the request's ``x-request-id``."""
        return {**self.headers, "x-request-id": self.request_id}


@dataclass
class Emulator:
    """Limits, service model, faults and records of one emulated organization."""
    spec: RunSpec
    time_scale: float = 1.0
    seed: int = 0
    keys: dict[str, str] = field(default_factory=dict)  # API key -> project label
    org_id: str = "org_groqsim"
    log_path: Path | None = None
    parquet_path: Path | None = None
    notes: list[str] = field(default_factory=list)  # for the operator: files set aside, models shut down
    #: the models the scenario uses (served even if Groq has shut them down); None: the spec's client groups'
    #: models and their policies' fallbacks
    scenario_models: frozenset[str] | None = None
    #: the date models shut down are judged on (None: today's)
    today: datetime.date | None = None

    def __post_init__(self):
        org = self.spec.org
        self.clock = Clock(self.time_scale)
        served = {m: lim for m, lim in self.spec.catalog.tier(org.tier).items() if m in self.spec.service}
        used = self.scenario_models if self.scenario_models is not None else self._spec_models()
        gone, today = shutdowns(), self.today or datetime.date.today()
        #: models of the tier Groq has shut down for it, which the scenario does not use: answered 400
        #: ``model_decommissioned`` (:func:`decommissioned_error`) and not listed
        self.decommissioned = frozenset(m for m in served if m in gone and m not in used
                                        and gone[m].shut_down_for(org.tier, today))
        self.tier_limits = {m: lim for m, lim in served.items() if m not in self.decommissioned}
        if self.decommissioned:
            self.notes.append(f"not served, as Groq has shut them down for the {org.tier} tier (a request is "
                              f"answered 400 model_decommissioned): {', '.join(sorted(self.decommissioned))}")
        self.limitsets: dict[str, LimitSet] = {}  # model -> the org's on-demand set
        self.book = LimitBook(org, self.spec.projects, self._on_demand)
        #: the service tiers a request may ask for: flex and auto on paid plans only (groq-real-responses.md §6)
        self.service_tiers = SERVICE_TIERS if self.spec.catalog.bills(org.tier) else ("on_demand",)
        if "flex" in self.service_tiers:  # any model may be asked for on flex: each one's flex limits >= 1
            try:
                org.flex.check(sorted(self.tier_limits.items()))
            except KeyedError as exc:  # (named with its file and line by emulator_from_scenario)
                raise KeyedError(exc.key, f"{exc.message} (the emulator serves every model of the tier on flex: "
                                 "raise the multiplier)") from None
        # flex scarcity: one timeline (extended as the clock runs), drawn apart from the other draws, so flex
        # traffic moves neither the answers' lengths nor the injected faults
        timeline, draws = np.random.SeedSequence(self.seed).spawn(2)
        self.capacity = CapacityProcess(org.flex, np.random.default_rng(timeline), self.clock.now())
        self._flex_rng = np.random.default_rng(draws)
        self.services = {m: ServiceModel(m, self.spec.service[m]) for m in self.tier_limits}
        self.rng = np.random.default_rng(self.seed)
        self._normals, self._ni = np.empty(0), 0  # standard normals drawn a block at a time
        self._n, self._id_prefix = 0, uuid.uuid4().hex[:16]  # request ids: req_ + 26 hex digits, unique
        self._completion: dict[str, Dist] = {}
        for c in self.spec.clients:  # answer lengths as the scenario's client groups describe them
            if c.completion_tokens is not None:
                self._completion.setdefault(c.model, c.completion_tokens)
        projects = self.spec.projects
        for key, label in self.keys.items():  # with [projects], a key's label names one of them
            if projects and label not in projects:
                if key == label:
                    raise ConfigError(f"--key {key}: the scenario has [projects]: label each key with one, "
                                      f"--key KEY=PROJECT (allowed: {', '.join(projects)})")
                raise ConfigError(f"--key KEY={label}: " + did_you_mean(label, projects, "project"))
        self.rows: list[tuple] = []
        self.flushed = 0  # rows the last flush wrote
        self.close_error: Exception | None = None  # why the records could not be written at shutdown
        self.closed = False
        self.counts: dict[tuple[str, str, str, int], int] = {}
        #: the Batch API's files and jobs (:class:`sim.emulator.batches.Batches` registers itself here)
        self.batches = None
        self._log: LogWriter | None = None
        if self.log_path is not None:  # the calibration log format, written by its one writer
            try:
                Path(self.log_path).parent.mkdir(parents=True, exist_ok=True)
                self._set_aside_earlier_session()
                self._log = LogWriter(self.log_path)
            except OSError as exc:
                raise ConfigError(f"{self.log_path}: cannot write the log ({exc.strerror or exc}); choose a "
                                  "writable --out directory") from None

    def _set_aside_earlier_session(self) -> None:
        """An earlier session's log and records at these paths are renamed ``requests.N.jsonl`` /
        ``records.N.parquet`` (N the first free number): a session's two files describe that session only (its
        limiter state started afresh), and nothing earlier is overwritten."""
        earlier = [p for p in (Path(self.log_path), self.parquet_path and Path(self.parquet_path))
                   if p is not None and p.exists()]
        if not earlier:
            return
        n = 1
        while any(p.with_name(f"{p.stem}.{n}{p.suffix}").exists() for p in earlier):
            n += 1
        for p in earlier:
            p.rename(p.with_name(f"{p.stem}.{n}{p.suffix}"))
        self.notes.append(f"an earlier session's {' and '.join(p.name for p in earlier)} in {earlier[0].parent} "
                          f"kept as {' and '.join(f'{p.stem}.{n}{p.suffix}' for p in earlier)}")

    def _spec_models(self) -> set[str]:
        """The models the spec's client groups send to, their policies' fallbacks included."""
        return ({c.model for c in self.spec.clients}
                | {m for p in self.spec.policies.values() for m in p.fallback})

    # ---- what the org serves -----------------------------------------------------------------------
    def is_audio(self, model: str) -> bool:
        return bool(self.spec.service[model].audio_speed_factor)

    def answer_lengths(self, model: str) -> Dist | None:
        """The scenario's answer-length distribution for ``model`` (a client group's ``completion_tokens``);
        None: answers are as long as their cap."""
        return self._completion.get(model)

    def served_error(self, model: str) -> ErrorResponse | None:
        """Why the org does not serve ``model`` (None: it does): shut down by Groq (400 ``model_decommissioned``,
        :attr:`decommissioned`), or not served by the tier (404 ``model_not_found``, as Groq answers)."""
        if model in self.decommissioned:
            return decommissioned_error(model)
        if model not in self.tier_limits:
            return invalid_request_error(f"The model `{model}` does not exist or you do not have access to it.",
                                         404, code="model_not_found")
        return None

    def model_error(self, model, want_audio: bool) -> ErrorResponse | None:
        """Why a request cannot name ``model`` (None: it can): missing, not a string, not served
        (:meth:`served_error`), or of the other kind (audio / chat)."""
        if model is None or model == "":
            return invalid_request_error("'model' : property 'model' is missing", param="model")
        if not isinstance(model, str):
            return invalid_request_error("'model' : must be a string", param="model")
        if (err := self.served_error(model)) is not None:
            return err
        what = "audio transcriptions" if want_audio else "chat completions"
        if self.spec.service[model].kind == "tts":  # its endpoint, /audio/speech, is not emulated (docs/emulator.md)
            return invalid_request_error(f"model `{model}` does not support {what}: it is text-to-speech",
                                         param="model")
        if self.is_audio(model) != want_audio:
            return invalid_request_error(f"model `{model}` does not support {what}", param="model")
        return None

    def tier_error(self, tier) -> ErrorResponse | None:
        """Why a request's ``service_tier`` cannot be served (None: it can).  Our wording: Groq's own answer to
        an unknown tier, or to flex on the free plan, is not on record."""
        if tier in self.service_tiers:
            return None
        if tier in SERVICE_TIERS:
            why = f"{tier!r} is for paid plans; this organization is on the {self.spec.org.tier} tier"
        elif tier == "performance":
            why = "'performance' (provisioned capacity, enterprise) is not emulated"
        else:
            why = f"{tier!r} is not a service tier"
        return invalid_request_error(f"'service_tier' : {why} (allowed: {', '.join(self.service_tiers)})",
                                     param="service_tier")

    def first_tier(self, service_tier=None) -> str:
        """The tier whose limits a request's answer describes before the limits decide (a 400, an injected
        fault): flex for a request on flex, else on-demand (auto asks on-demand first)."""
        mode = service_tier if service_tier in self.service_tiers else self.spec.org.service_tier
        return "flex" if mode == "flex" else "on_demand"

    def chat_error(self, body: dict, check_tier: bool = True) -> ErrorResponse | None:
        """Why a chat completion body cannot be served (None: it can), checked in this order: the model, the
        messages, the service tier (unless ``check_tier`` is false: a Batch API line's tier is the batch's),
        ``n`` (Groq supports only 1), ``stream`` (a boolean: a string "false" is not false) and the completion
        cap (an integer >= 1)."""
        if (err := self.model_error(body.get("model"), want_audio=False)) is not None:
            return err
        messages = body.get("messages")
        if messages is not None and not isinstance(messages, list):
            return invalid_request_error("'messages' : must be an array of messages", param="messages")
        if not messages:
            return invalid_request_error("'messages' : property 'messages' is missing or empty", param="messages")
        if (bad := message_error(messages)) is not None:
            return invalid_request_error(bad, param="messages")
        tier = body.get("service_tier")
        if check_tier and tier is not None and (err := self.tier_error(tier)) is not None:
            return err
        n = body.get("n")
        if n is not None and (isinstance(n, bool) or n != 1):  # Groq's API reference: only n = 1 is supported
            return invalid_request_error("'n' : only n = 1 is supported", param="n")
        stream = body.get("stream")
        if stream is not None and not isinstance(stream, bool):
            return invalid_request_error("'stream' : must be a boolean (true or false)", param="stream")
        key, max_tokens = completion_cap(body)
        if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool)
                                       or not 1 <= max_tokens <= MAX_SIZE):
            return invalid_request_error(f"'{key}' must be an integer from 1 to {MAX_SIZE:,}", param=key)
        return None

    def _on_demand(self, model: str) -> LimitSet:
        ls = self.limitsets.get(model)
        if ls is None:
            ls = self.limitsets[model] = LimitSet(self.tier_limits[model], self.spec.org.limiter)
        return ls

    def limits(self, model: str, project: str | None = None, tier: str = "on_demand"):
        """The limits a request on ``model`` and service ``tier`` ("on_demand" or "flex") must pass: the
        organization's :class:`LimitSet` of that tier, or, for a key labelled with a project of the scenario
        that lowers this model's limits (and ``project_quotas`` on), a :class:`~sim.projects.ScopedLimits`
        charging the project's and the org's all-or-nothing (:class:`~sim.limitbook.LimitBook`)."""
        return self.book.limits(project, TIER_CODES[tier], model)

    def label(self, authorization: str | None) -> tuple[bool, str | None]:
        """(authorized, project label) from an ``Authorization: Bearer KEY`` header.  Without configured
        keys every caller is admitted (label None)."""
        if not self.keys:
            return True, None
        key = authorization[7:].strip() if authorization and authorization[:7].lower() == "bearer " else None
        return key in self.keys, self.keys.get(key)

    def headers_now(self, model: str, now: float | None = None, time_scale: float | None = None,
                    project: str | None = None, tier: str = "on_demand") -> dict[str, str]:
        """The rate-limit headers of service ``tier``'s limits at ``now``, durations in the client's seconds
        (``time_scale`` 1: limiter's); a project with its own limits sees, per unit, the scope with less
        remaining."""
        now = self.clock.now() if now is None else now
        return rate_limit_headers(self.limits(model, project, tier).look(now), now,
                                  time_scale=self.time_scale if time_scale is None else time_scale)

    def headers_sent_and_logged(self, model: str, now: float | None = None, project: str | None = None,
                                tier: str = "on_demand") -> tuple[dict[str, str], dict[str, str]]:
        """The rate-limit headers of a response about ``model`` on ``tier`` at ``now`` (default: now), and
        those its log line keeps (the same in limiter seconds)."""
        now = self.clock.now() if now is None else now
        sent = self.headers_now(model, now, project=project, tier=tier)
        return sent, sent if self.time_scale == 1 else self.headers_now(model, now, 1.0, project, tier)

    # ---- admission -----------------------------------------------------------------------------------
    def decide(self, model: str, prompt: float, max_tokens: float | None, audio: float = 0.0,
               project: str | None = None, service_tier: str | None = None, least: int = 0) -> Decision:
        """Admit (and charge) or refuse one request of ``project`` (a key's label) on ``service_tier`` (one of
        :attr:`service_tiers`; None: the scenario's ``org.service_tier``), atomically (no await).  Its
        completion is the model's sampled length, but at least ``least`` tokens (a structured answer's
        fewest), and at most the request's cap.

        As the simulator's lanes (:class:`sim.lanes.Route`): ``flex`` first meets the capacity process (a 498
        charges nothing), then the flex limits; ``auto`` tries the on-demand limits and, if they refuse, flex;
        refused by both, it reports the tier whose wait is shorter."""
        now = self.clock.now()
        self._n += 1
        rid = f"req_{self._id_prefix}{self._n:010x}"
        org = self.spec.org
        mode = service_tier or org.service_tier
        first = self.first_tier(mode)
        if org.error_rate and self.rng.random() < org.error_rate:  # an injected fault charges nothing
            s = org.error_status  # Groq's body for its own statuses (5xx, 498 flex capacity), else ours
            if s >= 500:
                err = server_error(s)
            elif s == 498:  # flex's capacity: under auto too (as a 498 of the capacity process)
                first = "flex" if mode != "on_demand" else first
                err = capacity_exceeded_error(model, first)
            else:
                err = ErrorResponse(s, {}, {"error": {"message": f"injected error {s}", "type": "server_error",
                                                      "code": "injected"}})
            return self._refusal(err, model, now, rid, project, first)
        mt = DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens
        dist = self._completion.get(model)
        completion = 0 if audio else int(min(mt, max(least, round(dist.sample(self.rng, 1)[0])) if dist else mt))
        charged = 0.0 if audio else float(org.accounting.charged(prompt, mt, completion,
                                                                 self.services[model].kind != "tts"))
        ls, wait, code = self.book.admit(project, MODES[mode], model, charged, audio, now,
                                         lambda: self._flex_short(now))  # (as the simulator's lanes route)
        served = TIER_NAMES[code]
        if ls is None:
            return self._refusal(capacity_exceeded_error(model, "flex"), model, now, rid, project, "flex")
        if wait > 0.0:
            refusal = dict(upgrade_hint=org.tier == "free", rounding=org.retry_after_rounding, service_tier=served)
            err = rate_limit_error(ls, model, self.org_id, charged, audio, now, wait, time_scale=self.time_scale,
                                   **refusal)
            logged = err if self.time_scale == 1 else rate_limit_error(
                ls, model, self.org_id, charged, audio, now, wait, **refusal)  # in limiter seconds, for the log
            return Decision(err.status, err.headers, now, rid, err, charged, refused_by=ls.binding or "",
                            refused_scope=getattr(ls, "binding_scope", None) or ORG, service_tier=served,
                            log_headers=logged.headers, log_error=logged.error)
        svc = self.services[model]
        times = svc.times(prompt * org.accounting.prefilled(svc.kind), completion, audio, self._normal(),
                          self._normal())
        sent, logged = self.headers_sent_and_logged(model, now, project, served)
        return Decision(200, sent, now, rid, None, charged, completion, times, service_tier=served,
                        log_headers=logged)

    def _flex_short(self, now: float) -> bool:
        """Is flex capacity short for an attempt at ``now`` (a 498)?  The timeline is drawn on as the clock runs."""
        self.capacity.extend(now)
        return self.capacity.fails(now, self._flex_rng.random())

    def _refusal(self, err: ErrorResponse, model: str, now: float, rid: str, project: str | None,
                 tier: str) -> Decision:
        """A refusal decided before the limits (an injected fault, a 498), with ``tier``'s rate-limit headers."""
        sent, logged = self.headers_sent_and_logged(model, now, project, tier)
        return Decision(err.status, {**sent, **err.headers}, now, rid, err, service_tier=tier,
                        log_headers={**logged, **err.headers})

    def _normal(self) -> float:
        if self._ni >= len(self._normals):
            self._normals, self._ni = self.rng.standard_normal(4096).tolist(), 0
        self._ni += 1
        return self._normals[self._ni - 1]

    def finish(self, model: str, d: Decision, max_tokens: float | None, project: str | None = None) -> None:
        """After an admitted answer completes: give back unused reserved tokens if the org refunds them."""
        acc = self.spec.org.accounting
        mt = DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens
        if acc.refunds and mt > d.completion:
            self.limits(model, project, d.service_tier).refund_tokens(mt - d.completion, d.now, self.clock.now())

    # ---- records ---------------------------------------------------------------------------------------
    def record(self, *, endpoint: str, model: str, status: int, t_send: float, label: str | None,
               headers: dict[str, str], usage: dict | None = None, error: dict | None = None,
               max_tokens: int | None = None, audio_seconds: float | None = None, request_id: str | None = None,
               prompt: float = 0, d: Decision | None = None, retry_count: int | None = None) -> None:
        """One JSONL line (the calibration format) and one records row per HTTP request."""
        t_recv = self.clock.now()
        outcome = ("ok" if status == 200 else "rate_limited" if status == 429 else "too_large" if status == 413
                   else "unauthorized" if status == 401 else "bad_request" if status < 500 and status != 498
                   else "error")
        key = (endpoint, model if model in self.tier_limits else "", outcome, status)  # bounded label values
        self.counts[key] = self.counts.get(key, 0) + 1
        if self._log is not None:
            err = error_fields(error) if error else None
            self._log.write({
                "t_send": self.clock.epoch(t_send), "t_recv": self.clock.epoch(t_recv), "status": status,
                "model": model, "endpoint": endpoint, "max_tokens": max_tokens, "audio_seconds": audio_seconds,
                "usage": usage, "headers": kept_headers(headers), "error": err, "label": label,
                "request_id": request_id, "retry_count": retry_count,
                "service_tier": d.service_tier if d is not None else None})
        q, p, c, total = usage_times(d.times if d is not None and status == 200 else (math.nan,) * 3)
        t_send, t_recv = t_send - self.clock.start, t_recv - self.clock.start  # records: since start
        self.rows.append((len(self.rows), label, model, endpoint, status, outcome, d.refused_by if d else "",
                          t_send, t_recv, t_recv - t_send, t_send if status == 200 else math.nan, 1,
                          int(status == 429), prompt, max_tokens, d.completion if d else 0, audio_seconds or 0.0,
                          d.charged if d else 0.0, q, p, c, total, request_id,
                          d.service_tier if d else None,  # no tier for a request refused before the limits
                          d.refused_scope if d else ""))  # total_time: queue apart

    def records(self) -> pd.DataFrame:
        """The simulator's record columns, one row per HTTP request (an attempt: the server cannot see
        which attempts belong to one client request, so ``attempts`` is 1 and ``n429`` 0 or 1), then one per
        Batch API request ended by now, with the simulator's batch columns ``submitted`` and ``job`` (NaN and
        -1 on the other rows; the two columns only when there are such rows)."""
        rows, columns = self.rows, [*RECORD_COLUMNS, "refused_scope"]
        batch = self.batches.rows(self.clock.now(), len(rows)) if self.batches is not None else []
        if batch:
            rows, columns = [(*r, math.nan, -1) for r in rows] + batch, [*columns, "submitted", "job"]
        df = pd.DataFrame(rows, columns=columns)
        for col in ("outcome", "model", "endpoint", "client"):
            df[col] = df[col].astype("category")
        df["refused_by"] = pd.Categorical(df["refused_by"], ("",) + UNITS)
        df["service_tier"] = pd.Categorical(df["service_tier"], LANE_TIERS)  # as the simulator's lanes keep it
        if self.spec.projects:  # a 429's scope: as a simulated run with projects records it
            df["refused_scope"] = pd.Categorical(df["refused_scope"], SCOPES)
        else:
            df = df.drop(columns="refused_scope")
        return df

    def flush(self) -> Path | None:
        """Flush the JSONL log and write the Parquet records (if a path is set); returns the Parquet path.
        :attr:`flushed` is how many rows it wrote (the Batch API's ended requests included).  The records are
        written to ``records.parquet.partial`` and renamed: when the rename fails (a directory in the way, say)
        the partial file keeps them and the :class:`OSError` says where they are."""
        if self.parquet_path is None:
            return None
        path = Path(self.parquet_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        records = self.records()
        partial = path.with_name(path.name + ".partial")
        records.to_parquet(partial, index=False)
        try:
            os.replace(partial, path)
        except OSError as exc:
            raise OSError(exc.errno, f"{exc.strerror}; the records are kept in {partial}", str(path)) from None
        self.flushed = len(records)
        return path

    def close(self) -> None:
        """Write the records and close the log (closed even when the records cannot be written: the error is
        raised after)."""
        self.closed = True
        try:
            self.flush()
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None

    def utilisation(self) -> dict[tuple[str, str, str], float]:
        """(service tier, model, unit) -> fraction of the org's limit in use now, for the sets used so far."""
        now = self.clock.now()
        sets = [("on_demand", self.limitsets), ("flex", self.book.flex)]
        return {(tier, m, u): 1.0 - lim.remaining(now) / lim.limit for tier, by_model in sets
                for m, ls in by_model.items() for u, lim in ls.units.items()}

    def project_utilisation(self) -> dict[tuple[str, str, str, str], float]:
        """(project, service tier, model, unit) -> fraction of a project's own limit in use now, for the units
        the project lowers (the rest of its set copies the org's), on the sets used so far."""
        now = self.clock.now()
        return {(p, TIER_NAMES[tier], m, u): 1.0 - lim.remaining(now) / lim.limit
                for (p, tier, m), scoped in self.book.scoped.items() for u, lim in scoped.project.units.items()
                if u in self.spec.projects[p].limits.get(m, {})}
