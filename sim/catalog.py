"""Groq's published rate limits as data, plus user-defined tiers and single-limit overrides.

The published table (``data/groq_rate_limits.csv``, copied verbatim from Groq's rate-limits page, Nov 2026)
lists 2 tiers x 20 models x {RPM, RPD, TPM, TPD, ASH, ASD}.  ``None`` means the page lists no limit.
Organisations get exceptions, so a :class:`Catalog` can grow tiers derived from others (``enterprise`` =
``developer`` with TPM x 4), take per-model overrides, and load the table a user's console shows
(:meth:`Catalog.from_file`).  Each tier says whether it bills: ``free`` does not, every other tier bills per
token unless told otherwise, and a derived tier inherits its base's.  ``data/model_shutdowns.csv`` lists the
models Groq has shut down since the table was captured (:func:`shutdown_warning`).
"""
from __future__ import annotations

import csv
import datetime
import functools
import io
import math
import numbers
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

from .errors import ConfigError, KeyedError, did_you_mean
from .texttable import align
from .units import half_up, parse_count

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

    def __post_init__(self):
        for unit in UNITS:
            value = getattr(self, unit)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"Limits({unit}={value!r}): a number of {UNIT_SPEC[unit][1]} or None (a count such "
                                "as '14.4K' is the scenario file's way to write one: here 14400)")
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"Limits({unit}={value!r}): a limit is a positive finite number, or None for none")

    def items(self):
        """(unit, limit) for the units that exist."""
        return [(u, getattr(self, u)) for u in UNITS if getattr(self, u) is not None]

    def scaled(self, factors: Mapping[str, float]) -> Limits:
        """Each unit's limit x its factor, rounded to the nearest whole number, halves up (Python's ``round``
        would take 2.5 to 2 and 3.5 to 4); a result below 1 (or not finite) is a
        :class:`~sim.errors.KeyedError` on ``scale.<unit>``: a limiter needs a positive limit."""
        out = {}
        for u, f in factors.items():
            limit = getattr(self, u)
            if limit is None:  # (no limit of that unit: none to scale)
                continue
            value = limit * f
            if not (math.isfinite(value) and half_up(value) >= 1):
                raise KeyedError(f"scale.{u}", f"{limit} x {f:g} = {value:g}: a scaled limit must be a finite "
                                 "number >= 1 (the limit would refuse everything, or nothing ever)")
            out[u] = half_up(value)
        return replace(self, **out)


#: a limits file's column headers (lower case, runs of other characters as one space) -> field
_HEADERS = {
    "tier": "tier", "model": "model", "model id": "model", "id": "model",
    "requests per minute": "rpm", "requests per day": "rpd", "tokens per minute": "tpm", "tokens per day": "tpd",
    "audio seconds per hour": "ash", "audio seconds per day": "asd", **{u: u for u in UNITS},
}
_NO_LIMIT = {"", "-", "\u2014", "\u2013", "none", "no limit", "unlimited", "n/a"}


class Catalog:
    """Tiers -> models -> :class:`Limits`, and whether each tier bills."""

    def __init__(self, tiers: dict[str, dict[str, Limits]], billed: Mapping[str, bool] | None = None):
        self.tiers = tiers
        self.billed = {t: (billed or {}).get(t, t != "free") for t in tiers}

    @classmethod
    def published(cls) -> Catalog:
        """Groq's published limits (``data/groq_rate_limits.csv``), as a catalog of the caller's own (tiers
        may be added to it); the file is parsed once per process."""
        return _published().copy()

    @classmethod
    def from_csv(cls, text: str) -> Catalog:
        tiers: dict[str, dict[str, Limits]] = {}
        for row in csv.DictReader(io.StringIO(text)):
            tiers.setdefault(row["tier"], {})[row["model"]] = Limits(**{u: parse_count(row[u]) for u in UNITS})
        return cls(tiers)

    @classmethod
    def from_file(cls, path: str | Path, tier: str = "console") -> Catalog:
        """A user's limits table: a CSV shaped like ``data/groq_rate_limits.csv`` (tier, model, rpm, rpd, tpm,
        tpd, ash, asd) or with the console's column names (``Model ID``, ``Requests per Minute``, ...).  The
        tier column and any unit column may be missing: rows without a tier go to ``tier``, a missing unit
        means no limit.  Counts as the page writes them (``14.4K``, ``1M``, ``14,400``; ``-`` = no limit).
        Any problem is a :class:`ConfigError` naming the file, row and column."""
        try:
            text = Path(path).read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"limits file {path}: cannot read it ({exc})") from None
        try:
            rows = list(csv.reader(io.StringIO(text)))
        except csv.Error as exc:  # (a field past the csv module's limit: an unclosed quote swallows the file)
            raise ConfigError(f"limits file {path}: not a CSV table ({exc}; an unclosed quote?)") from None
        while rows and not any(c.strip() for c in rows[-1]):
            rows.pop()
        if not rows:
            raise ConfigError(f"limits file {path}: empty (expected a header row: tier, model, rpm, rpd, tpm, ...)")
        columns = []
        for raw in rows[0]:
            key = re.sub(r"[^a-z0-9]+", " ", raw.lower()).strip()
            key = re.sub(r" (rpm|rpd|tpm|tpd|ash|asd)$", "", key)  # "Requests per Minute (RPM)"
            if key not in _HEADERS:
                raise ConfigError(f"limits file {path}: row 1, column {raw!r}: unknown column (allowed: tier, "
                                  "model or Model ID, rpm, rpd, tpm, tpd, ash, asd or their names spelled out)")
            columns.append(_HEADERS[key])
        for field_ in set(columns):
            if columns.count(field_) > 1:
                raise ConfigError(f"limits file {path}: row 1: two columns mean {field_!r}")
        if "model" not in columns or not set(columns) & set(UNITS):
            raise ConfigError(f"limits file {path}: row 1: needs a model column and at least one of {', '.join(UNITS)}")
        tiers: dict[str, dict[str, Limits]] = {}
        for n, row in enumerate(rows[1:], start=2):
            if not any(c.strip() for c in row):
                continue
            if len(row) != len(columns):
                raise ConfigError(f"limits file {path}: row {n}: {len(row)} fields, the header has {len(columns)}")
            values = dict(zip(columns, (c.strip() for c in row)))
            t, model = values.pop("tier", tier), values.pop("model")
            if not t or not model:
                raise ConfigError(f"limits file {path}: row {n}, column {'tier' if not t else 'model'!r}: empty")
            limits = {}
            for unit, raw in values.items():
                col = rows[0][columns.index(unit)]
                try:
                    value = None if raw.lower() in _NO_LIMIT else parse_count(raw.replace(",", ""))
                except ValueError as exc:
                    raise ConfigError(f"limits file {path}: row {n}, column {col!r}: {exc}") from None
                if value == 0:
                    raise ConfigError(f"limits file {path}: row {n}, column {col!r}: a limit must be positive "
                                      "('-' = no limit)")
                limits[unit] = value
            if model in tiers.setdefault(t, {}):
                raise ConfigError(f"limits file {path}: row {n}: {t}/{model} appears twice")
            tiers[t][model] = Limits(**limits)
        if not tiers:
            raise ConfigError(f"limits file {path}: no rows after the header")
        return cls(tiers)

    def __eq__(self, other: object) -> bool:
        """Equal when every tier has the same models, limits and billing (two specs built from the same scenario
        compare equal; a catalog is compared, never hashed)."""
        if not isinstance(other, Catalog):
            return NotImplemented
        return self.tiers == other.tiers and self.billed == other.billed

    __hash__ = None  # mutable (tiers can be added), so not a dict key

    def copy(self) -> Catalog:
        return Catalog({t: dict(m) for t, m in self.tiers.items()}, self.billed)

    def with_tiers(self, other: Catalog) -> Catalog:
        """A copy of this catalog in which ``other``'s tiers (with their billing) replace or add to ours."""
        cat = self.copy()
        for t, models in other.tiers.items():
            cat.tiers[t] = dict(models)
            cat.billed[t] = other.billed[t]
        return cat

    def bills(self, tier: str) -> bool:
        """Whether requests on ``tier`` are billed (the Free tier is not)."""
        self.tier(tier)
        return self.billed[tier]

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
                    overrides: Mapping[str, Mapping[str, int | str | None]] | None = None,
                    billed: bool | None = None, needed: Collection[str] | None = None) -> Catalog:
        """Add tier ``name`` = ``base`` with every limit of a unit multiplied (``{"tpm": 4}``) and then
        single limits set by hand (``{"llama-3.1-8b-instant": {"rpd": 20000}}``; ``None`` removes a limit).
        It bills like ``base`` unless ``billed`` says otherwise.  A limit the multiplier takes below 1 is an
        error, unless ``needed`` (the models a scenario may send) leaves its model out: that model is then
        left out of the tier, so that a multiplier fit for the models sent is not refused for one never sent."""
        for unit in (scale or {}):
            if unit not in UNITS:
                raise KeyedError(f"scale.{unit}", did_you_mean(unit, UNITS, "limit unit"))
        models = {}
        for m, lim in self.tier(base).items():
            try:
                models[m] = lim.scaled(scale or {})
            except KeyedError as exc:
                if needed is not None and m not in needed:
                    continue
                raise KeyedError(exc.key, f"{m}'s {exc.message}") from None
        self.tiers[name] = models
        self.billed[name] = self.billed[base] if billed is None else bool(billed)
        for model, values in (overrides or {}).items():
            try:
                self.override(name, model, **values)
            except KeyedError as exc:
                raise KeyedError(f"overrides.{model}.{exc.key}", exc.message) from None
        return self

    def override(self, tier: str, model: str, **values: int | str | None) -> Catalog:
        """Set single limits of one model on one tier (a model missing from the tier is added)."""
        models = self.tier(tier)
        for unit, value in values.items():
            if unit not in UNITS:
                raise KeyedError(unit, did_you_mean(unit, UNITS, "limit unit"))
            if isinstance(value, str):
                try:
                    value = parse_count(value)
                except ValueError as exc:
                    raise KeyedError(unit, str(exc)) from None
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise KeyedError(unit, f"limit {tier}/{model}/{unit} must be a positive integer, got {value!r}")
            values[unit] = value
        models[model] = replace(models.get(model, Limits()), **values)
        return self

    def rows(self, tier: str | None = None, model: str | None = None) -> list[dict]:
        """The table as dicts with keys tier, model and the six units (None where no limit)."""
        tiers = [tier] if tier else list(self.tiers)
        if model is not None and not any(model in self.tier(t) for t in tiers):
            if tier:
                self.limits(tier, model)  # raises with suggestions
            raise ConfigError(did_you_mean(model, self.models(), "model"))
        out = []
        for t in tiers:
            models = self.tier(t)
            for m, lim in models.items():
                if model is None or m == model:
                    out.append({"tier": t, "model": m, **{u: getattr(lim, u) for u in UNITS}})
        return out


def format_rows(rows: Iterable[dict], fmt: str) -> str:
    """Render :meth:`Catalog.rows` as ``csv`` (empty field = no limit), ``json`` or an aligned ``table``.  Rows
    marked by :func:`with_shutdowns` add a ``shut_down`` column to the table and key to the JSON; the CSV keeps
    the limits file's own shape (``groqsim limits --file`` reads it back)."""
    rows = list(rows)
    header = ["tier", "model", *UNITS]
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(header)
        for r in rows:
            w.writerow([r[k] for k in header])  # (csv writes None as an empty field)
        return buf.getvalue()
    if fmt == "json":
        import json
        return json.dumps(rows, indent=2) + "\n"
    cells = [[str(r[k]) if r[k] is not None else "-" for k in header] for r in rows]
    if any(r.get("shut_down") for r in rows):
        header, cells = [*header, "shut_down"], [c + [r["shut_down"] or ""] for c, r in zip(cells, rows)]
    return align([header] + cells, left=2)


def with_shutdowns(rows: Iterable[dict], today: datetime.date) -> list[dict]:
    """``rows`` of :meth:`Catalog.rows`, each with ``shut_down``: the day Groq stopped serving its model on its
    tier by ``today`` (ISO), or None (:data:`data/model_shutdowns.csv`; the limits table still lists them)."""
    gone = shutdowns()
    return [{**r, "shut_down": s.date.isoformat() if (s := gone.get(r["model"])) is not None
             and s.shut_down_for(r["tier"], today) else None} for r in rows]



@dataclass(frozen=True)
class Shutdown:
    """A model Groq has shut down (or will): the date, the tiers it concerns, what replaces it."""
    model: str
    date: datetime.date
    scope: str
    replacement: str
    source: str

    def shut_down_for(self, tier: str, today: datetime.date) -> bool:
        """Has Groq shut the model down for an organization on ``tier`` by ``today``?  The scope is "all
        tiers" or names the tiers it concerns before any ";" ("free and developer tiers; Enterprise goes on"): a
        tier it does not name (enterprise, a scenario's own) keeps the model."""
        if self.date > today:
            return False
        named = set(re.findall(r"[a-z0-9_-]+", self.scope.split(";")[0].lower()))
        return "all" in named or tier.lower() in named


@functools.cache
def _published() -> Catalog:
    """The parsed limits table, shared: a scenario resolves every grid point against it (``Scenario.spec``, in
    each run), and parsing it each time was most of a spec's ~3 ms.  Only copies leave this module."""
    return Catalog.from_csv(resources.files("sim").joinpath("data/groq_rate_limits.csv").read_text())


def shutdowns() -> dict[str, Shutdown]:
    """``data/model_shutdowns.csv``: models shut down since the limits table was captured."""
    text = resources.files("sim").joinpath("data/model_shutdowns.csv").read_text()
    return {r["model"]: Shutdown(r["model"], datetime.date.fromisoformat(r["shutdown"]), r["scope"],
                                 r["replacement"], r["source"]) for r in csv.DictReader(io.StringIO(text))}


def shutdown_warning(model: str, today: datetime.date | None = None) -> str | None:
    """One line warning that ``model`` is shut down (or will be), or None if Groq still serves it."""
    s = shutdowns().get(model)
    if s is None:
        return None
    today = today or datetime.date.today()
    when = "was shut down" if s.date <= today else "will be shut down"
    instead = f"; replacement: {s.replacement}" if s.replacement else ""
    return f"warning: model {model!r} {when} by Groq on {s.date.isoformat()} ({s.scope}){instead}"
