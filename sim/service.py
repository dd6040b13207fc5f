"""The Groq service's timing model: what each admitted request reports in ``usage``, and the network around it.

Per model (``data/service_params.csv``; figures left empty there come from ``data/service_defaults.csv``;
every figure is overridable from a scenario's ``[service."MODEL"]``):

* ``prompt_time = (prefill_fixed + prompt_tokens / prefill_tps) / S`` where ``prompt_tokens`` are the tokens
  that need prefill (cached prompt tokens skip it), ``completion_time = completion_tokens / (output_tps * S)``;
  ``S`` is the request's speed factor, lognormal with mean 1 and coefficient of variation ``speed_cv``.
* speech-to-text: ``completion_time = audio_seconds / (audio_speed_factor * S)`` (Groq quotes whisper speed
  as a multiple of real time).  Text-to-speech rows count input characters as prompt tokens.
* ``total_time = prompt_time + completion_time``: ``queue_time`` is reported apart, as in every real
  ``usage`` object.  ``queue_time`` is lognormal by median and p90, fitted to 18 real samples.
* The network round trip is lognormal by median and p90 too (a constant would keep un-jittered clients in
  lockstep).  A client waits ``rtt`` for a refusal and ``rtt + queue_time + total_time`` for a success.

Output speeds come in two published sets: Groq's docs models page (``speeds="docs"``, the default) and its
pricing page (``speeds="pricing"``, ``data/service_speeds_pricing.csv``), with source and date per row.
The prefill fit is :func:`fit_prefill` over ``data/prefill_samples.csv`` (docs/modelling.md explains it).
"""
from __future__ import annotations

import csv
import functools
import io
import math
from dataclasses import dataclass, fields, replace
from importlib import resources

import numpy as np

from .errors import ConfigError, did_you_mean

Z95 = 1.6448536269514722  # standard normal 95th percentile
Z90 = 1.2815515655446004  # standard normal 90th percentile
SPEEDS = ("docs", "pricing")
KINDS = ("chat", "stt", "tts")
#: the largest speed_cv a scenario may set (a lognormal of cv 3 already has sigma 1.5)
SPEED_CV_MAX = 3.0


@dataclass(frozen=True)
class ServiceParams:
    """One model's service figures.  ``kind``: ``chat`` (text in, text out), ``stt`` (audio in: time from
    ``audio_speed_factor``), ``tts`` (characters in, counted as prompt tokens, at ``prefill_tps`` per second)."""
    output_tps: float
    prefill_tps: float
    prefill_fixed: float = 0.00505
    speed_cv: float = 0.32
    queue_median: float = 0.128
    queue_p90: float = 0.269
    rtt_median: float = 0.05
    rtt_p90: float = 0.08
    audio_speed_factor: float | None = None
    kind: str = "chat"
    source: str = ""

    def check(self, model: str) -> ServiceParams:
        """Raise :class:`ConfigError` naming ``model`` and the key when a figure is outside its allowed range."""
        def bad(key, allowed):
            return ConfigError(f"service parameter {model!r}.{key} = {getattr(self, key)!r}: must be {allowed}")
        if self.kind not in KINDS:
            raise bad("kind", f"one of {', '.join(KINDS)}")
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name not in ("kind", "source") and v is not None and (
                    isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
                raise bad(f.name, "a finite number")
        if self.kind == "chat" and not self.output_tps > 0:
            raise bad("output_tps", "> 0 tokens/s")
        if self.output_tps < 0:
            raise bad("output_tps", ">= 0 tokens/s (0 only for speech models)")
        if self.kind in ("chat", "tts") and not self.prefill_tps > 0:
            raise bad("prefill_tps", "> 0 tokens/s")
        if self.prefill_tps < 0:
            raise bad("prefill_tps", ">= 0 (0 only for speech-to-text models)")
        if self.kind == "stt" and not (self.audio_speed_factor or 0) > 0:
            raise bad("audio_speed_factor", "> 0 (x real time) for a speech-to-text model")
        if self.kind != "stt" and self.audio_speed_factor is not None:
            raise bad("audio_speed_factor", "empty for a model that takes no audio")
        if self.prefill_fixed < 0:
            raise bad("prefill_fixed", ">= 0 seconds")
        if not 0 <= self.speed_cv <= SPEED_CV_MAX:
            raise bad("speed_cv", f"between 0 and {SPEED_CV_MAX:g}")
        if not self.queue_median > 0:
            raise bad("queue_median", "> 0 seconds")
        if not self.queue_p90 >= self.queue_median:
            raise bad("queue_p90", f">= queue_median ({self.queue_median:g} s)")
        if self.rtt_median < 0:
            raise bad("rtt_median", ">= 0 seconds")
        if not self.rtt_p90 >= self.rtt_median:
            raise bad("rtt_p90", f">= rtt_median ({self.rtt_median:g} s)")
        if self.rtt_median == 0 and self.rtt_p90 != 0:
            raise bad("rtt_p90", "0 when rtt_median is 0 (no network)")
        return self


#: keys a scenario's ``[service."MODEL"]`` may set (numbers only; ``kind`` and ``source`` come from the data)
SERVICE_KEYS = tuple(f.name for f in fields(ServiceParams) if f.name not in ("kind", "source"))


def data_rows(name: str) -> list[dict[str, str]]:
    """The rows of package data file ``sim/data/NAME`` (a CSV with a header) as dicts."""
    return list(csv.DictReader(io.StringIO(resources.files("sim").joinpath(f"data/{name}").read_text())))


def service_defaults() -> dict[str, float]:
    """The figures a model's row leaves empty (``data/service_defaults.csv``: key, value, source)."""
    return dict(_service_defaults())


def load_service_table(speeds: str = "docs") -> dict[str, ServiceParams]:
    """Every model's :class:`ServiceParams` from the package data, with the ``docs`` or ``pricing`` speeds
    (a table of the caller's own; the files are parsed once per process, as every run's spec reads them)."""
    if speeds not in SPEEDS:
        raise ConfigError(did_you_mean(speeds, SPEEDS, "speeds"))
    return dict(_service_table(speeds))


@functools.cache
def _service_defaults() -> dict[str, float]:
    return {r["key"]: float(r["value"]) for r in data_rows("service_defaults.csv")}


@functools.cache
def _service_table(speeds: str) -> dict[str, ServiceParams]:
    defaults = _service_defaults()
    table = {}
    for row in data_rows("service_params.csv"):
        model, kind, source = row.pop("model"), row.pop("kind"), f"{row.pop('source')} ({row.pop('date')})"
        values = {**defaults, **{k: float(v) for k, v in row.items() if v != ""}}
        table[model] = ServiceParams(kind=kind, source=source, **values).check(model)
    if speeds == "pricing":
        for row in data_rows("service_speeds_pricing.csv"):
            base = table[row["model"]]
            new = {k: float(row[k]) for k in ("output_tps", "audio_speed_factor") if row[k] != ""}
            table[row["model"]] = replace(base, **new, source=f"{row['source']} ({row['date']})").check(row["model"])
    return table


def service_models(overrides: dict[str, dict] | None = None, speeds: str = "docs") -> dict[str, ServiceParams]:
    """The package table with a scenario's ``[service."MODEL"]`` overrides applied and checked.  A model not
    in the table needs at least ``output_tps`` (the other figures take the defaults)."""
    table = load_service_table(speeds)
    defaults = service_defaults()
    for model, values in (overrides or {}).items():
        for key in values:
            if key not in SERVICE_KEYS:
                raise ConfigError(did_you_mean(key, SERVICE_KEYS, f"service parameter for {model!r}:"))
        if model in table:
            base = table[model]
        elif "output_tps" in values:
            base = ServiceParams(**{k: defaults[k] for k in defaults if k != "output_tps"},
                                 output_tps=values["output_tps"])
        else:
            raise ConfigError(f"service model {model!r} is not in the service table: give at least its output_tps")
        table[model] = replace(base, **values, source="scenario override").check(model)
    return table


def kinds(service: dict[str, ServiceParams]) -> dict[str, str]:
    """Each model's kind (``chat``, ``stt``, ``tts``) in a service table: what its requests carry
    (:data:`sim.workload.CARRIES`, :func:`sim.trace.check_kinds`)."""
    return {model: params.kind for model, params in service.items()}


def lognormal_sigma(median: float, p95: float) -> float:
    """sigma of a lognormal with this median and 95th percentile."""
    return lognormal_sigma_q(median, p95, Z95)


def lognormal_sigma_q(median: float, value: float, z: float) -> float:
    """sigma of a lognormal whose median is ``median`` and whose quantile at standard-normal ``z`` is ``value``."""
    if median <= 0 or value < median:
        raise ConfigError(f"lognormal needs 0 < median <= upper quantile, got median={median}, quantile={value}")
    return math.log(value / median) / z


class ServiceModel:
    """Service times for one model from pre-drawn standard normals (the engine draws them in vectors).

    ``times(...)`` is called once per admitted request; ``round_trip(z)`` once per answer the client reads
    (:meth:`round_trips` for a block of draws).  ``rtt`` is the median round trip, for callers wanting a constant.
    """

    def __init__(self, model: str, params: ServiceParams):
        p = params.check(model)
        s_sigma = math.sqrt(math.log1p(p.speed_cv ** 2))
        self._s_sigma, self._s_nmu = s_sigma, s_sigma ** 2 / 2  # S = exp(-sigma^2/2 + sigma z): E[S] = 1
        self._q_mu = math.log(p.queue_median)
        self._q_sigma = lognormal_sigma_q(p.queue_median, p.queue_p90, Z90)
        self.rtt = p.rtt_median
        self.kind = p.kind
        self._r_mu = math.log(p.rtt_median) if p.rtt_median > 0 else -math.inf
        self._r_sigma = lognormal_sigma_q(p.rtt_median, p.rtt_p90, Z90) if p.rtt_median > 0 else 0.0
        self._fixed = p.prefill_fixed
        self._inv_out = 1.0 / p.output_tps if p.output_tps else 0.0
        self._inv_pre = 1.0 / p.prefill_tps if p.prefill_tps else 0.0
        self._inv_audio = 1.0 / p.audio_speed_factor if p.audio_speed_factor else 0.0

    def coefficients(self) -> tuple[float, ...]:
        """The constants :meth:`times` computes with, in the order it uses them (sim/kernel.py writes ``times``
        out for a group of one model): ``s_nmu, s_sigma, q_mu, q_sigma, fixed, inv_pre, inv_out, inv_audio``."""
        return (self._s_nmu, self._s_sigma, self._q_mu, self._q_sigma, self._fixed, self._inv_pre, self._inv_out,
                self._inv_audio)

    def times(self, prompt: float, completion: float, audio: float, z_speed: float, z_queue: float):
        """(queue_time, prompt_time, completion_time) of one request; ``total_time`` = the last two."""
        inv_s = math.exp(self._s_nmu - self._s_sigma * z_speed)
        return (math.exp(self._q_mu + self._q_sigma * z_queue),
                (self._fixed + prompt * self._inv_pre) * inv_s,
                (completion * self._inv_out + audio * self._inv_audio) * inv_s)

    def audio_time(self, audio: np.ndarray) -> np.ndarray:
        """Seconds to transcribe ``audio`` seconds at the model's published speed (x real time), no spread."""
        return audio * self._inv_audio

    def round_trip(self, z: float) -> float:
        """The network round trip (seconds) for a standard-normal draw ``z``."""
        return math.exp(self._r_mu + self._r_sigma * z)

    def round_trips(self, z: np.ndarray) -> list[float]:
        """:meth:`round_trip` of each draw of ``z``, the very same floats: numpy forms ``mu + sigma * z`` (the
        same two correctly rounded operations) and ``math.exp`` takes the exponential, because numpy's
        vectorised exp rounds the last bit differently for about one draw in twenty."""
        return list(map(math.exp, (self._r_mu + self._r_sigma * z).tolist()))

    def with_round_trips(self, z: np.ndarray) -> list[tuple[float, float]]:
        """Each draw of ``z`` with its round trip: ``(z, round_trip(z))`` pairs."""
        return list(zip(z.tolist(), self.round_trips(z)))


def fit_prefill(samples: list[dict] | None = None) -> tuple[float, dict[str, float], float]:
    """(fixed part in s, {model: prefill tokens/s}, default tokens/s) from real ``usage`` samples.

    The short-prompt samples cannot separate a fixed part from the rate (llama-3.3-70b takes the same time
    for 86 and 352 tokens), so the fixed part is set by rule to half the smallest prompt_time observed, and
    each model's rate is its uncached prompt tokens over its prompt_time minus the fixed part, pooled over its
    samples.  Models without samples get the median of the fitted rates.  See docs/modelling.md.
    """
    rows = [r for r in (samples if samples is not None else data_rows("prefill_samples.csv"))
            if r.get("used_in_fit", "yes") == "yes"]
    fixed = min(float(r["prompt_time"]) for r in rows) / 2
    tokens: dict[str, float] = {}
    time: dict[str, float] = {}
    for r in rows:
        m = r["model"]
        tokens[m] = tokens.get(m, 0.0) + float(r["prompt_tokens"]) - float(r.get("cached_tokens") or 0)
        time[m] = time.get(m, 0.0) + float(r["prompt_time"]) - fixed
    rates = {m: tokens[m] / time[m] for m in tokens}
    return fixed, rates, float(np.median(list(rates.values())))
