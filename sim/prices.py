"""What a run costs in US dollars, from Groq's published prices (``data/prices.csv``, source and date per row).

Billing rules (Groq's pricing and batch pages, groq-real-responses.md sections 5-6):

* only successful requests are billed (a 429, 413, 5xx, deadline miss or drop costs nothing); an attempt the
  client's timeout gave up on is not billed either, although the server finished it: an assumption, since
  nothing on record says whether Groq bills it (docs/modelling.md, "Prices"; ``org.accounting.bill_timed_out``
  bills it, :func:`sim.cost.timed_out_cost`);
* chat models: prompt tokens at the input price, completion tokens at the output price; cached prompt tokens
  (a share ``cache_hit_ratio`` of the prompt, rounded as the limits round it) at the cached-input price, or
  50 % of the input price where the table gives none;
* speech-to-text: per audio hour, at least ``audio_min_seconds`` (10 s) per request;
* text-to-speech: per input character (the simulator counts characters as prompt tokens);
* the batch lane (``batch_discount`` = 0.5) takes 50 % off and does not stack with the caching discount;
* tiers that do not bill (Free) cost nothing: pass ``billed=Catalog.bills(tier)``.

Models Groq publishes no price for (allam-2-7b, the compound systems, whose bill depends on the tools they
call) cost NaN and are listed in :attr:`Bill.unpriced`; give them a price in a scenario's ``[prices."MODEL"]``.
"""
from __future__ import annotations

import csv
import functools
import io
import math
from dataclasses import dataclass, fields, replace
from importlib import resources

import numpy as np
import pandas as pd

from .errors import ConfigError, did_you_mean

CACHED_SHARE = 0.5  # cached input tokens cost half the input price where no cached price is published
BATCH_DISCOUNT = 0.5  # Groq's batch API discount since mid-2025 (25 % before)


@dataclass(frozen=True)
class Price:
    """USD per 1M input / output / cached input tokens, per audio hour (with a minimum billed length per
    request), per 1M characters.  ``None`` = not billed that way."""
    input_per_m: float | None = None
    output_per_m: float | None = None
    cached_input_per_m: float | None = None
    audio_per_hour: float | None = None
    audio_min_seconds: float = 0.0
    characters_per_m: float | None = None
    source: str = ""

    def check(self, model: str) -> Price:
        """Raise :class:`ConfigError` naming ``model`` and the key when a figure is not a price."""
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "source" or v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ConfigError(f"price {model!r}.{f.name} = {v!r}: must be a number >= 0 (USD)")
        if self.cached_input_per_m is not None and self.input_per_m is None:
            raise ConfigError(f"price {model!r}.cached_input_per_m needs input_per_m")
        if (self.input_per_m is None) != (self.output_per_m is None):
            raise ConfigError(f"price {model!r}: give both input_per_m and output_per_m, or neither")
        if all(getattr(self, k) is None for k in ("input_per_m", "audio_per_hour", "characters_per_m")):
            raise ConfigError(f"price {model!r}: needs input_per_m and output_per_m, audio_per_hour or "
                              "characters_per_m")
        return self


#: keys a scenario's ``[prices."MODEL"]`` may set
PRICE_KEYS = tuple(f.name for f in fields(Price) if f.name != "source")


def load_prices() -> dict[str, Price]:
    """The package's price table (``data/prices.csv``), a table of the caller's own (parsed once per process)."""
    return dict(_prices())


@functools.cache
def _prices() -> dict[str, Price]:
    text = resources.files("sim").joinpath("data/prices.csv").read_text()
    table = {}
    for row in csv.DictReader(io.StringIO(text)):
        model, source = row.pop("model"), f"{row.pop('source')} ({row.pop('date')})"
        table[model] = Price(source=source, **{k: float(v) for k, v in row.items() if v != ""}).check(model)
    return table


def price_table(overrides: dict[str, dict] | None = None) -> dict[str, Price]:
    """The package prices with a scenario's ``[prices."MODEL"]`` overrides applied and checked (a model without
    a published price may be given one)."""
    table = load_prices()
    for model, values in (overrides or {}).items():
        for key in values:
            if key not in PRICE_KEYS:
                raise ConfigError(did_you_mean(key, PRICE_KEYS, f"price for {model!r}:"))
        table[model] = replace(table.get(model, Price()), **values, source="scenario override").check(model)
    return table


@dataclass(frozen=True)
class Bill:
    """A run's bill: ``usd`` in total, per successful request, per model; models without a price."""
    usd: float
    successes: int
    per_success: float
    by_model: dict[str, float]
    unpriced: tuple[str, ...]


def request_costs(records: pd.DataFrame, prices: dict[str, Price], *, billed: bool = True,
                  cache_hit_ratio: float = 0.0, batch_discount: float = 0.0) -> np.ndarray:
    """USD of each record (columns model, outcome, prompt_tokens, completion_tokens, audio_seconds): 0 for a
    request that did not succeed or on a tier that does not bill, NaN for a success of an unpriced model."""
    if not 0 <= cache_hit_ratio <= 1:
        raise ConfigError(f"cache_hit_ratio = {cache_hit_ratio!r}: must be between 0 and 1")
    if not 0 <= batch_discount < 1:
        raise ConfigError(f"batch_discount = {batch_discount!r}: must be >= 0 and < 1 (Groq's batch: 0.5)")
    n = len(records)
    if not billed or n == 0:
        return np.zeros(n)
    codes, models = pd.factorize(records["model"].astype(str))
    nan = float("nan")

    def per_model(attr, default=nan, scale=1.0):
        return np.array([default if (v := getattr(prices.get(m, Price()), attr)) is None else v * scale
                         for m in models] + [nan])[codes]  # code -1 (missing model) -> NaN

    priced = np.array([m in prices for m in models] + [False])[codes]
    prompt = records["prompt_tokens"].to_numpy(float)
    completion = records["completion_tokens"].to_numpy(float)
    audio = records["audio_seconds"].to_numpy(float)
    inp, out = per_model("input_per_m", 0.0, 1e-6), per_model("output_per_m", 0.0, 1e-6)
    if batch_discount or not cache_hit_ratio:
        tokens = prompt * inp + completion * out
    else:
        cached = per_model("cached_input_per_m", nan, 1e-6)
        cached_price = np.where(np.isnan(cached), CACHED_SHARE * inp, cached)
        uncached = np.round(prompt * (1 - cache_hit_ratio))
        tokens = uncached * inp + (prompt - uncached) * cached_price + completion * out
    audio_cost = np.maximum(audio, per_model("audio_min_seconds", 0.0)) / 3600 * per_model("audio_per_hour", 0.0)
    audio_cost = np.where(audio > 0, audio_cost, 0.0)
    chars = prompt * per_model("characters_per_m", 0.0, 1e-6)
    cost = (tokens + audio_cost + chars) * (1 - batch_discount)
    ok = (records["outcome"] == "ok").to_numpy()
    return np.where(ok, np.where(priced, cost, nan), 0.0)


def bill(records: pd.DataFrame, prices: dict[str, Price], *, billed: bool = True, cache_hit_ratio: float = 0.0,
         batch_discount: float = 0.0) -> Bill:
    """The :class:`Bill` of a records frame (see :func:`request_costs` for the rules)."""
    cost = request_costs(records, prices, billed=billed, cache_hit_ratio=cache_hit_ratio,
                         batch_discount=batch_discount)
    ok = (records["outcome"] == "ok").to_numpy()
    model = records["model"].astype(str).to_numpy()
    by_model = {m: float(cost[model == m].sum()) for m in dict.fromkeys(model[ok])}
    unpriced = tuple(m for m in by_model if billed and m not in prices)
    usd = float(cost.sum())
    successes = int(ok.sum())
    return Bill(usd, successes, usd / successes if successes else float("nan"), by_model, unpriced)
