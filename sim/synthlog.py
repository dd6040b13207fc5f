"""Synthetic recorder logs with KNOWN parameters, made from the simulator's own pieces.

A Poisson stream of chat requests for one model goes through a :class:`~sim.limitset.LimitSet` of a chosen
algorithm and charge mode; admitted requests get service times from :class:`~sim.service.ServiceModel`,
every response the headers of :func:`sim.headers.rate_limit_headers`, refusals Groq's 429 / 413 bodies
(:func:`sim.headers.rate_limit_error`; a free tier's end "Need more tokens? Upgrade to Dev Tier…"), usage
times at Groq's nanosecond precision.
The client retries a 429 like the official SDK (the simulator's ``groq-sdk`` schedule): after ``retry-after``
seconds when 0 < s <= 60, else after the SDK's own backoff, min(0.5 x 2^n, 8) s x (1 - 0.25 U) (at most
``max_retries`` times; each attempt is a line of its own with its ``retry_count``).  Used to prove that
``groqsim calibrate`` recovers what went in, and to make the shipped example log.  It deliberately shares no
code with :mod:`sim.calibrate`.

Conventions: the limiters' clock starts at the UTC midnight before the first request (calendar-aligned
windows); a request reaches the server half its round trip after it was sent; ``total_time =
prompt_time + completion_time`` with ``queue_time`` apart, as Groq reports them.
"""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from .catalog import Catalog, Limits
from .config import SDK_DEFAULTS
from .errors import ConfigError, did_you_mean
from .headers import rate_limit_error, rate_limit_headers
from .limitset import LimitSet
from .policies import GroqSDK
from .recorder import LogWriter
from .service import ServiceModel, ServiceParams, lognormal_sigma
from .units import usage_times



@dataclass
class SynthSpec:
    """What the synthetic organization and client are (all known, so a calibration can be checked)."""
    model: str = "llama-3.1-8b-instant"
    tier: str = "free"
    limits: Limits | None = None            # None: the catalog's limits of ``model`` on ``tier``
    algorithm: str = "token_bucket"
    charge: str = "max_tokens"              # or "actual"
    service: ServiceParams = field(default_factory=lambda: ServiceParams(
        output_tps=560.0, prefill_tps=6000.0, prefill_fixed=0.0, speed_cv=0.15, queue_median=0.12, queue_p90=0.23,
        rtt_median=0.12, rtt_p90=0.14))
    rate: float = 0.12                      # requests per second
    duration: float = 600.0
    prompt_median: float = 400.0
    prompt_p95: float = 1500.0
    max_tokens: int = 512
    completion_median: float = 150.0
    completion_p95: float = 450.0
    max_retries: int = 2
    start: str = "2026-11-02T09:00:00"      # UTC
    label: str | None = "synthetic"

    def resolved_limits(self) -> Limits:
        return self.limits or Catalog.published().limits(self.tier, self.model)


#: the groq SDK's wait before a retry (the simulator's ``groq-sdk`` schedule, with the SDK's own base and cap)
SDK_BACKOFF = GroqSDK(SDK_DEFAULTS["groq-sdk"]["base"], SDK_DEFAULTS["groq-sdk"]["cap"])


def _lognormal(rng, median, p95, n):
    return np.exp(np.log(median) + lognormal_sigma(median, p95) * rng.standard_normal(n))


def synthesize(spec: SynthSpec, seed: int = 0) -> list[dict]:
    """The log lines of one synthetic run, in the order the responses arrived."""
    if spec.charge not in ("max_tokens", "actual"):  # (any other word charged the actual tokens, silently)
        raise ConfigError(did_you_mean(spec.charge, ("max_tokens", "actual"), "SynthSpec charge"))
    rng = np.random.default_rng(seed)
    limits = spec.resolved_limits()
    ls = LimitSet(limits, spec.algorithm)
    svc = ServiceModel(spec.model, spec.service)
    start = datetime.fromisoformat(spec.start).replace(tzinfo=UTC).timestamp()
    origin = math.floor(start / 86_400.0) * 86_400.0
    n = rng.poisson(spec.rate * spec.duration)
    arrivals = np.sort(rng.uniform(0.0, spec.duration, n)) + start
    prompt = np.maximum(np.rint(_lognormal(rng, spec.prompt_median, spec.prompt_p95, n)), 1)
    completion = np.minimum(np.maximum(np.rint(_lognormal(rng, spec.completion_median, spec.completion_p95, n)), 1),
                            spec.max_tokens)
    z = rng.standard_normal((n, 2))
    def rtt():  # the service model's own lognormal network round trip
        return svc.round_trip(rng.standard_normal())

    events = []  # (server time, request, attempt, t_send, round trip)
    for i, t in enumerate(arrivals):
        r = rtt()
        heapq.heappush(events, (t + r / 2, i, 0, t, r))
    lines = []
    while events:
        t_server, i, attempt, t_send, r = heapq.heappop(events)
        now = t_server - origin
        p, c = float(prompt[i]), float(completion[i])
        tokens = p + (spec.max_tokens if spec.charge == "max_tokens" else c)
        wait = ls.acquire(tokens, 0.0, now)
        line = {"t_send": float(t_send), "model": spec.model, "endpoint": "chat.completions",
                "max_tokens": spec.max_tokens,
                "audio_seconds": None, "usage": None, "error": None, "label": spec.label,
                "request_id": f"req_{seed}_{i}_{attempt}", "retry_count": attempt}
        if wait == 0.0:
            q, pt, ct = svc.times(p, c, 0.0, float(z[i, 0]), float(z[i, 1]))
            line.update(status=200, t_recv=float(t_send + r + q + pt + ct), headers=rate_limit_headers(ls, now),
                        usage=_usage(int(p), int(c), *usage_times((q, pt, ct))))
        else:
            err = rate_limit_error(ls, spec.model, "org_synthetic", tokens, 0.0, now, wait,
                                   upgrade_hint=spec.tier == "free")
            line.update(status=err.status, t_recv=float(t_send + r), headers=err.headers, error=err.error)
            if err.status == 429 and attempt < spec.max_retries:  # retry number attempt + 1, as the SDK waits
                t_next = line["t_recv"] + SDK_BACKOFF.delay(attempt + 1, float(err.headers["retry-after"]), rng.random)
                r2 = rtt()
                heapq.heappush(events, (t_next + r2 / 2, i, attempt + 1, t_next, r2))
        lines.append(line)
    lines.sort(key=lambda x: x["t_recv"])
    return lines


def _usage(prompt: int, completion: int, queue: float, prompt_time: float, completion_time: float,
           total: float) -> dict:
    """A ``usage`` object in the order Groq writes its fields (groq-real-responses.md section 1)."""
    return {"queue_time": queue, "prompt_tokens": prompt, "prompt_time": prompt_time, "completion_tokens": completion,
            "completion_time": completion_time, "total_tokens": prompt + completion, "total_time": total}


def write_log(lines: list[dict], path) -> None:
    with LogWriter(path, "w") as w:
        for line in lines:
            w.write(line)


def example_spec() -> SynthSpec:
    """The shipped example (``scenarios/logs/example_groq_calls.jsonl``): a llama-3.1-8b chat service on a
    Free-tier organization that was granted twice the TPM, with service figures unlike the defaults (the
    independent ~650 t/s output speed, Groq's real 2025-26 queue times) -- so calibrating visibly moves answers."""
    return SynthSpec(model="llama-3.1-8b-instant", tier="free",
                     limits=Catalog.published().limits("free", "llama-3.1-8b-instant").scaled({"tpm": 2}),
                     algorithm="token_bucket", charge="max_tokens",
                     service=ServiceParams(output_tps=650.0, prefill_tps=8000.0, prefill_fixed=0.0, speed_cv=0.2,
                                           queue_median=0.13, queue_p90=0.27, rtt_median=0.09, rtt_p90=0.12),
                     rate=0.2, duration=1200.0, prompt_median=500.0, prompt_p95=2000.0, max_tokens=512,
                     completion_median=200.0, completion_p95=480.0, label="support-bot")


def main(argv: list[str] | None = None) -> int:
    """``python -m sim.synthlog OUT.jsonl``: write the shipped example log (scenarios/logs/example_groq_calls.jsonl)."""
    import argparse
    p = argparse.ArgumentParser(prog="python -m sim.synthlog", description="Write the shipped example recorder log "
                                "(scenarios/logs/example_groq_calls.jsonl), generated from known truth.")
    p.add_argument("out", help="log file to write (JSONL)")
    write_log(synthesize(example_spec(), seed=2026), p.parse_args(argv).out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
