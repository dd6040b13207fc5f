"""Groq's published rate limits as data, plus user-defined tiers and single-limit overrides.

The published table (``data/groq_rate_limits.csv``, copied verbatim from Groq's rate-limits page, Nov 2026)
lists 2 tiers x 20 models x {RPM, RPD, TPM, TPD, ASH, ASD}.  ``None`` means the page lists no limit.
Organisations get exceptions, so a :class:`Catalog` can grow tiers derived from others (``enterprise`` =
``developer`` with TPM x 4) and take per-model overrides.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, replace
from importlib import resources
from typing import Iterable, Mapping

from .errors import ConfigError, did_you_mean
from .texttable import align
from .units import parse_count

UNITS = ("rpm", "rpd", "tpm", "tpd", "ash", "asd")
#: unit -> (window in seconds, what it counts)
UNIT_SPEC = {
    "rpm": (60.0, "requests"), "rpd": (86_400.0, "requests"),
    "tpm": (60.0, "tokens"), "tpd": (86_400.0, "tokens"),
    "ash": (3_600.0, "audio_seconds"), "asd": (86_400.0, "audio_seconds"),
}


@dataclass(frozen=True)
class Limits:
    """One model's limits on one tier; ``None`` = no limit of that unit."""
    rpm: int | None = None
    rpd: int | None = None
    tpm: int | None = None
    tpd: int | None = None
    ash: int | None = None
    asd: int | None = None

    def items(self):
        """(unit, limit) for the units that exist."""
        return [(u, getattr(self, u)) for u in UNITS if getattr(self, u) is not None]

    def scaled(self, factors: Mapping[str, float]) -> "Limits":
        return replace(self, **{u: None if getattr(self, u) is None else int(round(getattr(self, u) * f))
                                for u, f in factors.items()})


class Catalog:
    """Tiers -> models -> :class:`Limits`."""

    def __init__(self, tiers: dict[str, dict[str, Limits]]):
        self.tiers = tiers

    @classmethod
    def published(cls) -> "Catalog":
        text = resources.files("sim").joinpath("data/groq_rate_limits.csv").read_text()
        return cls.from_csv(text)

    @classmethod
    def from_csv(cls, text: str) -> "Catalog":
        tiers: dict[str, dict[str, Limits]] = {}
        for row in csv.DictReader(io.StringIO(text)):
            tiers.setdefault(row["tier"], {})[row["model"]] = Limits(**{u: parse_count(row[u]) for u in UNITS})
        return cls(tiers)

    def copy(self) -> "Catalog":
        return Catalog({t: dict(m) for t, m in self.tiers.items()})

    def tier(self, name: str) -> dict[str, Limits]:
        if name not in self.tiers:
            raise ConfigError(did_you_mean(name, self.tiers, "tier"))
        return self.tiers[name]

    def limits(self, tier: str, model: str) -> Limits:
        models = self.tier(tier)
        if model not in models:
            raise ConfigError(did_you_mean(model, models, f"model on tier {tier!r}:"))
        return models[model]

    def models(self) -> list[str]:
        seen: dict[str, None] = {}
        for models in self.tiers.values():
            seen.update(dict.fromkeys(models))
        return list(seen)

    def define_tier(self, name: str, base: str, scale: Mapping[str, float] | None = None,
                    overrides: Mapping[str, Mapping[str, int | str | None]] | None = None) -> "Catalog":
        """Add tier ``name`` = ``base`` with every limit of a unit multiplied (``{"tpm": 4}``) and then
        single limits set by hand (``{"llama-3.1-8b-instant": {"rpd": 20000}}``; ``None`` removes a limit)."""
        for unit in (scale or {}):
            if unit not in UNITS:
                raise ConfigError(did_you_mean(unit, UNITS, "limit unit"))
        models = {m: lim.scaled(scale or {}) for m, lim in self.tier(base).items()}
        self.tiers[name] = models
        for model, values in (overrides or {}).items():
            self.override(name, model, **values)
        return self

    def override(self, tier: str, model: str, **values: int | str | None) -> "Catalog":
        """Set single limits of one model on one tier (a model missing from the tier is added)."""
        models = self.tier(tier)
        for unit, value in values.items():
            if unit not in UNITS:
                raise ConfigError(did_you_mean(unit, UNITS, "limit unit"))
            if isinstance(value, str):
                value = parse_count(value)
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise ConfigError(f"limit {tier}/{model}/{unit} must be a positive integer, got {value!r}")
            values[unit] = value
        models[model] = replace(models.get(model, Limits()), **values)
        return self

    def rows(self, tier: str | None = None, model: str | None = None) -> list[dict]:
        """The table as dicts with keys tier, model and the six units (None where no limit)."""
        tiers = [tier] if tier else list(self.tiers)
        out = []
        for t in tiers:
            models = self.tier(t)
            if model is not None and model not in models:
                self.limits(t, model)  # raises with suggestions
            for m, lim in models.items():
                if model is None or m == model:
                    out.append({"tier": t, "model": m, **{u: getattr(lim, u) for u in UNITS}})
        return out


def format_rows(rows: Iterable[dict], fmt: str) -> str:
    """Render :meth:`Catalog.rows` as ``csv`` (empty field = no limit), ``json`` or an aligned ``table``."""
    rows = list(rows)
    header = ["tier", "model", *UNITS]
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(header)
        for r in rows:
            w.writerow(["" if r[k] is None else r[k] for k in header])
        return buf.getvalue()
    if fmt == "json":
        import json
        return json.dumps(rows, indent=2) + "\n"
    return align([header] + [[str(r[k]) if r[k] is not None else "-" for k in header] for r in rows], left=2)

