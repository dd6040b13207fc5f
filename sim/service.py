"""The Groq service's timing model: what each admitted request reports in ``usage``.

Per model (``data/service_params.csv``, every figure overridable from a scenario's ``[service.MODEL]``):

* ``completion_time = completion_tokens / (output_tps * S)`` and ``prompt_time = prompt_tokens /
  (prefill_tps * S)``, where ``S`` is the request's speed factor, lognormal with mean 1 and coefficient of
  variation ``speed_cv`` (speeds vary request to request; the *mean tokens/s* equals the table's figure).
* speech-to-text: ``completion_time = audio_seconds / (audio_speed_factor * S)`` (Groq quotes whisper speed
  as a multiple of real time).  Text-to-speech rows count input characters as prompt tokens.
* ``queue_time`` lognormal with the given median and p95.
* ``total_time = queue_time + prompt_time + completion_time``; the client sees ``total_time + rtt``.

The table's ``source`` column says which figures come from Groq's published speeds (model pages, 2025;
approximate, not re-measured) and which are assumptions.  Prefill speeds and queue times are not published:
they are assumptions (prefill = 10x output speed) to override when you have measurements.
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, replace
from importlib import resources

from .errors import ConfigError, did_you_mean

Z95 = 1.6448536269514722  # standard normal 95th percentile


@dataclass(frozen=True)
class ServiceParams:
    output_tps: float
    prefill_tps: float
    speed_cv: float = 0.15
    queue_median: float = 0.03
    queue_p95: float = 0.2
    rtt: float = 0.12
    audio_speed_factor: float | None = None
    source: str = ""


def load_service_table() -> dict[str, ServiceParams]:
    text = resources.files("sim").joinpath("data/service_params.csv").read_text()
    table = {}
    for row in csv.DictReader(io.StringIO(text)):
        model = row.pop("model")
        source = row.pop("source")
        values = {k: (float(v) if v else None) for k, v in row.items()}
        table[model] = ServiceParams(source=source, **values)
    return table


def lognormal_sigma(median: float, p95: float) -> float:
    """sigma of a lognormal with this median and 95th percentile."""
    if median <= 0 or p95 < median:
        raise ConfigError(f"lognormal needs 0 < median <= p95, got median={median}, p95={p95}")
    return math.log(p95 / median) / Z95


class ServiceModel:
    """Service times for one model, from two standard-normal draws per request (drawn in vectors)."""

    def __init__(self, model: str, params: ServiceParams):
        self.model, self.params = model, params
        p = params
        self.rtt = p.rtt
        self._s_sigma = math.sqrt(math.log1p(p.speed_cv ** 2))
        self._s_mu = -self._s_sigma ** 2 / 2  # E[S] = 1
        self._q_mu = math.log(p.queue_median)
        self._q_sigma = lognormal_sigma(p.queue_median, p.queue_p95)
        self._inv_out = 1.0 / p.output_tps if p.output_tps else 0.0
        self._inv_pre = 1.0 / p.prefill_tps if p.prefill_tps else 0.0
        self._inv_audio = 1.0 / p.audio_speed_factor if p.audio_speed_factor else 0.0

    def times(self, prompt: float, completion: float, audio: float, z_speed: float, z_queue: float):
        """(queue_time, prompt_time, completion_time) of one request."""
        inv_s = math.exp(-(self._s_mu + self._s_sigma * z_speed))
        queue = math.exp(self._q_mu + self._q_sigma * z_queue)
        return (queue, prompt * self._inv_pre * inv_s,
                (completion * self._inv_out + audio * self._inv_audio) * inv_s)


def service_models(overrides: dict[str, dict] | None = None) -> dict[str, ServiceParams]:
    table = load_service_table()
    for model, values in (overrides or {}).items():
        base = table.get(model, ServiceParams(output_tps=500.0, prefill_tps=5000.0, source="defaults"))
        try:
            table[model] = replace(base, **values, source="scenario override")
        except TypeError:
            bad = next(k for k in values if k not in ServiceParams.__dataclass_fields__)
            raise ConfigError(did_you_mean(bad, [f for f in ServiceParams.__dataclass_fields__ if f != "source"],
                                           f"service parameter for {model!r}:")) from None
    return table
