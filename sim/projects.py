"""Projects: an organization's sub-divisions with per-model limits of their own, checked with the org's.

Groq's organizations hold projects, each with its own API keys, usage and per-model limits, inherited from
the organization unless overridden (only lower: a project cannot hold more than its organization; Groq's
docs imply it without saying it, so it is our reading).  A request from a project must pass the project's
limits **and** the organization's: :class:`ScopedLimits` asks both scopes first and charges both only if both
admit, so a refusal charges neither.

Headers (our choice, Groq does not document it): for each unit the ``x-ratelimit-*`` headers describe the
scope with the smaller remaining budget at that moment -- the one that binds next -- so a client pacing on
its headers paces on whichever of project or org is tighter.  A refusal names the scope that refused with
the longest wait (``binding_scope``), as the 429 message names one limit.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Annotated

from pydantic import Field, field_validator

from .catalog import UNIT_SPEC, UNITS, Limits
from .errors import ConfigError, did_you_mean
from .fields import Strict
from .limitset import LimitSet
from .units import parse_count

ORG, PROJECT = "org", "project"
#: scope codes kept in the records (0: never refused)
SCOPES = ("", ORG, PROJECT)


class Project(Strict):
    """``[projects.NAME]``: per-model limits that override (lower) the organization's, e.g.
    ``limits = { "llama-3.1-8b-instant" = { rpm = 200, tpm = "50K" } }``."""
    description: str = ""
    limits: dict[str, dict[str, Annotated[int, Field(gt=0)] | str]] = {}

    @field_validator("limits")
    @classmethod
    def _units(cls, value):
        out = {}
        for model, units in value.items():
            out[model] = {}
            for unit, count in units.items():
                if unit not in UNITS:
                    raise ValueError(did_you_mean(unit, UNITS, f"limit unit for {model!r}:"))
                n = parse_count(count) if isinstance(count, str) else count
                if n is None or n <= 0:
                    raise ValueError(f"{model}.{unit}: a project limit must be a positive count, got {count!r}")
                out[model][unit] = n
        return out


def project_limits(name: str, project: Project, model: str, org: Limits) -> Limits | None:
    """The project's limits on ``model`` (None: it inherits the org's, nothing of its own to check).
    Raises ConfigError if an override is above the org's limit or sets a unit the org does not limit."""
    own = project.limits.get(model)
    if not own:
        return None
    for unit, value in own.items():
        ceiling = getattr(org, unit)
        if ceiling is None:
            raise ConfigError(f"project {name!r}: {unit} {value}: the organization has no {unit} limit on {model} "
                              f"(a project can only lower the org's limits: {', '.join(u for u, _ in org.items())})")
        if value > ceiling:
            raise ConfigError(f"project {name!r}: {unit} {value} is above the organization's {unit} limit "
                              f"{ceiling} on {model} (a project can only lower it)")
    return replace(org, **own)


class _Tighter:
    """One unit seen through two scopes: reads as the scope with less remaining at the last :meth:`pick`."""
    __slots__ = ("project", "org", "chosen")

    def __init__(self, project, org):
        self.project, self.org, self.chosen = project, org, org

    def pick(self, now: float) -> None:
        if self.project is not None and (self.org is None or self.project.remaining(now) < self.org.remaining(now)):
            self.chosen = self.project
        else:
            self.chosen = self.org

    @property
    def limit(self):
        return self.chosen.limit

    @property
    def window(self):
        return self.chosen.window

    def remaining(self, now: float) -> float:
        return self.chosen.remaining(now)

    def reset(self, now: float) -> float:
        return self.chosen.reset(now)


class ScopedLimits:
    """A project's limit set and its organization's, charged all-or-nothing across both.

    Quacks like a :class:`~sim.limitset.LimitSet` where the engine, the headers and client policies read
    one: :meth:`acquire` (0.0 admitted, > 0 the wait until both would admit, ``inf`` too large for
    either), :attr:`binding` (the unit), :attr:`binding_scope` (``"project"`` or ``"org"``), :attr:`units`
    (per unit, the tighter scope as of the last :meth:`acquire` or :meth:`look`) and :attr:`limits` (the
    lower of the two per unit)."""

    def __init__(self, project: LimitSet, org: LimitSet):
        self.project, self.org = project, org
        self.units = {u: _Tighter(project.units.get(u), org.units.get(u))
                      for u in UNIT_SPEC if u in project.units or u in org.units}
        self.limits = Limits(**{u: min((x for x in (getattr(project.limits, u), getattr(org.limits, u))
                                        if x is not None), default=None) for u in UNITS})
        self.binding: str | None = None
        self.binding_scope: str | None = None

    @property
    def scopes(self) -> tuple[LimitSet, LimitSet]:
        """The project's limit set and the organization's, in the order a tie between their waits binds."""
        return self.project, self.org

    def look(self, now: float) -> "ScopedLimits":
        """Point every unit's view at the scope with less remaining at ``now`` (what the headers show)."""
        for unit in self.units.values():
            unit.pick(now)
        return self

    def acquire(self, tokens: float = 0, audio_seconds: float = 0, now: float = 0.0) -> float:
        """Admit and charge both scopes, or charge neither."""
        p = self.project.check(tokens, audio_seconds, now)
        o = self.org.check(tokens, audio_seconds, now)
        if p.admitted and o.admitted:
            self.project.acquire(tokens, audio_seconds, now)
            self.org.acquire(tokens, audio_seconds, now)
            self.look(now)
            return 0.0
        # the wait until both admit is the longer one; the scope (and unit) behind it binds
        scope, decision = (PROJECT, p) if p.wait >= o.wait else (ORG, o)
        limits = self.project if scope == PROJECT else self.org
        self.binding_scope = scope
        self.binding = max(decision.refused, key=lambda u: limits.units[u].wait(
            _amount(u, tokens, audio_seconds), now))
        self.look(now)
        return max(p.wait, o.wait)

    def refund_tokens(self, tokens: float, charged_at: float, now: float) -> None:
        self.project.refund_tokens(tokens, charged_at, now)
        self.org.refund_tokens(tokens, charged_at, now)

    def remaining(self, unit: str, now: float) -> float | None:
        values = [s.remaining(unit, now) for s in (self.project, self.org)]
        values = [v for v in values if v is not None]
        return min(values) if values else None


def _amount(unit: str, tokens: float, audio: float) -> float:
    counts = UNIT_SPEC[unit][1]
    return 1.0 if counts == "requests" else tokens if counts == "tokens" else audio


__all__ = ["Project", "ScopedLimits", "project_limits", "SCOPES", "ORG", "PROJECT"]
