"""Scenario files (TOML): one study = org, client groups, policies and a ``[compare]`` grid.

:func:`load_scenario` validates the whole file (unknown keys are errors, with did-you-mean) and returns a
:class:`Scenario`; :meth:`Scenario.grid` expands the ``[compare]`` axes into grid points and
:meth:`Scenario.spec` resolves one point into the engine's :class:`~sim.engine.RunSpec`.
Every error is a :class:`~sim.errors.ConfigError` naming the file, the key path, what is allowed and,
where it can be found, the line.
"""
from __future__ import annotations

import itertools
import math
import numbers
import re
import sys
import tomllib
import typing
from dataclasses import replace
from pathlib import Path
from os import PathLike
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, PrivateAttr, StrictBool, ValidationError, field_validator

import numpy as np

from .arrivals import KINDS
from .catalog import Catalog, shutdown_warning
from .config import Client, Dist, Org, Policy, PolicyError, policy_table
from .errors import ConfigError, InertSettingWarning, KeyedError, ShutDownModelWarning, did_you_mean, warn_once
from .fields import BOUNDS, Duration, PositiveDuration, Strict, bound_message, is_whole
from .policies import SCHEDULES
from .prices import price_table
from .projects import Project, project_limits
from .service import SPEEDS, ServiceParams, kinds, service_models
from .spec import RunSpec
from .trace import TRACE_SUFFIXES, check_kinds, read_trace
from .units import format_duration, parse_duration

#: [compare] axis -> the field it sets (``clients.X``: every client group's ``X``; ``load``: the arrival-rate
#: multiplier).  The one table: validation, :meth:`Scenario.spec` and the docs all read it.
AXES = {
    "tier": "org.tier", "limiter": "org.limiter", "charge": "org.accounting.charge",
    "refund_unused": "org.accounting.refund_unused", "cache_hit_ratio": "org.accounting.cache_hit_ratio",
    "bill_timed_out": "org.accounting.bill_timed_out",
    "error_rate": "org.error_rate", "retry_after_rounding": "org.retry_after_rounding",
    "model": "clients.model", "policy": "clients.policy", "load": "load",
    "service_tier": "org.service_tier", "lane": "clients.lane", "flex_multiplier": "org.flex.multiplier",
    "flex_failure": "org.flex.scarce_failure", "project_quotas": "org.project_quotas",
}
#: axes that compare ways of buying capacity: their runs all report lane metrics (cost, 498s, batch jobs)
LANE_AXES = ("service_tier", "lane", "flex_multiplier", "flex_failure", "project_quotas")


class Meta(Strict):
    name: str = "unnamed"
    description: str = ""
    duration: PositiveDuration = 3600.0
    warmup: Duration = 0.0
    drain: Duration = 3600.0
    seed: Annotated[int, Field(ge=0)] = 0
    replications: Annotated[int, Field(ge=1)] = 1
    speeds: Literal[SPEEDS] = "docs"  # Groq's published output speeds: the docs models page or the pricing page


    @field_validator("warmup")
    @classmethod
    def _window(cls, warmup, info):
        duration = info.data.get("duration")  # (validated first; absent if it was wrong)
        if duration is not None and warmup >= duration:
            raise ValueError(f"warmup ({warmup:g} s) must be shorter than duration ({duration:g} s)")
        return warmup


class TierDef(Strict):
    base: str
    scale: dict[str, Annotated[float, Field(gt=0, allow_inf_nan=False)]] = {}
    overrides: dict[str, dict[str, Annotated[int, Field(gt=0)] | str]] = {}
    billed: StrictBool | None = None  # does the tier bill per token? (default: as its base; free does not)


class CapacityTarget(Strict):
    p95: PositiveDuration = 10.0
    success: Annotated[float, Field(gt=0, le=1)] = 0.99
    max_load: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 64.0
    #: the search stops when its bracket is narrower than this share of the load (0.05: 5 %; at least 0.0001:
    #: finer than a run's own noise, and each halving costs a simulation of every replication)
    tolerance: Annotated[float, Field(ge=1e-4, lt=1)] = 0.05


#: a Dask scheduler address: ``[scheme://]host:port`` (``local`` starts a LocalCluster)
DASK_ADDRESS = re.compile(r"^((tcp|tls|inproc|ucx|ws|wss)://)?[\w.\-\[\]:]+:\d{1,5}$")
DASK_ALLOWED = "'local', or host:port such as tcp://10.0.0.5:8786"


class RunSettings(Strict):
    jobs: Annotated[int, Field(ge=1)] | None = None
    dask: str | None = None

    @field_validator("dask")
    @classmethod
    def _address(cls, value):
        if value is not None and value != "local" and not DASK_ADDRESS.match(value):
            raise ValueError(f"{value!r} is not a scheduler address (allowed: {DASK_ALLOWED})")
        return value


class Scenario(Strict):
    scenario: Meta = Meta()
    org: Org = Org()
    tiers: dict[str, TierDef] = {}
    service: dict[str, dict[str, float]] = {}
    prices: dict[str, dict[str, float]] = {}
    clients: Annotated[list[Client], Field(min_length=1)]
    policies: dict[str, dict[str, Any]] = {}
    compare: dict[str, list[Any]] = {}
    projects: dict[str, Project] = {}
    capacity: CapacityTarget = CapacityTarget()
    run: RunSettings = RunSettings()

    # set by load_scenario; not part of the file
    source: str = Field(default="<scenario>", exclude=True)
    #: the keys (``scenario.duration``) load_scenario's ``overrides`` set: their errors are not the file's lines
    _overridden: frozenset = PrivateAttr(default=frozenset())

    # ---- derived pieces -----------------------------------------------------------------------------
    def _base_catalog(self) -> Catalog:
        """The published limits plus the tiers of ``[org] limits_file``."""
        cat = Catalog.published()
        if self.org.limits_file:
            try:
                cat = cat.with_tiers(Catalog.from_file(self.path_of(self.org.limits_file)))
            except ConfigError as exc:
                raise self.error("org.limits_file", str(exc)) from None
        return cat

    def catalog(self) -> Catalog:
        """The published limits, plus the tiers of ``[org] limits_file``, plus this scenario's ``[tiers.NAME]``.
        A custom tier may not take a built-in tier's name or one of ``limits_file`` (it would silently replace
        Groq's figures or the user's own), and its
        overrides may name only known models or models the scenario describes in ``[service.MODEL]`` (a typo
        would otherwise add a model)."""
        published = Catalog.published()
        cat = self._base_catalog()
        known = set(cat.models()) | set(self.service)
        from_file = set(cat.tiers)  # (the published ones and those of limits_file)
        needed = self._needed() if any(t.scale for t in self.tiers.values()) else None
        for name in self._tier_order(cat):
            t = self.tiers[name]
            if name in from_file:
                what = "a built-in tier" if name in published.tiers else f"a tier of limits_file {self.org.limits_file}"
                raise self.error(f"tiers.{name}", f"{name!r} is {what}; a custom tier needs its own name "
                                 f"(e.g. [tiers.{name}-custom] with base = {name!r})")
            for model in t.overrides:
                if model not in known:
                    raise self.error(f"tiers.{name}.overrides.{model}",
                                     did_you_mean(model, sorted(known), "model") + "; a new model also needs "
                                     f"its speeds in [service.{model}]")
            try:
                cat.define_tier(name, t.base, t.scale, t.overrides, t.billed, needed=needed)
            except KeyedError as exc:
                raise self.error(f"tiers.{name}.{exc.key}", exc.message) from None
            except (ConfigError, ValueError) as exc:
                raise self.error(f"tiers.{name}", str(exc)) from None
        return cat

    def _tier_order(self, base: Catalog) -> list[str]:
        """The ``[tiers]`` names in an order that defines each one's base first (file order where it already
        does); a chain of bases that never reaches a tier of ``base`` is a cycle, an error."""
        order, pending = [], list(self.tiers)
        while pending:
            ready = next((n for n in pending if self.tiers[n].base in base.tiers or self.tiers[n].base in order
                          or self.tiers[n].base not in self.tiers), None)  # (an unknown base: define_tier says so)
            if ready is None:
                chain, name = [pending[0]], self.tiers[pending[0]].base
                while name not in chain:
                    chain.append(name)
                    name = self.tiers[name].base
                cycle = chain[chain.index(name):] + [name]
                raise self.error(f"tiers.{cycle[0]}.base", f"{' -> '.join(map(repr, cycle))} is a cycle (allowed: a "
                                 f"chain of bases that ends at a tier that exists: {', '.join(base.tiers)})")
            order.append(ready)
            pending.remove(ready)
        return order

    def policy_table(self) -> dict[str, Policy]:
        """The built-in policies plus this scenario's ``[policies]`` (errors named by their key path)."""
        try:
            table = policy_table(self.policies)
        except PolicyError as exc:
            if isinstance(exc.cause, ValidationError):
                raise _pydantic_error(self, exc.cause, ("policies", exc.name)) from None
            raise self.error(f"policies.{exc.name}.extends", str(exc.cause)) from None
        for name, raw in self.policies.items():  # "none" written, and retries allowed: they would back off
            if raw.get("retry") == "none" and (attempts := table[name].max_attempts) > 1:
                where = "" if "max_attempts" in raw else f" (from extends {raw.get('extends', name)!r})"
                raise self.error(f"policies.{name}.retry", f"'none' makes one attempt, but max_attempts = {attempts}"
                                 f"{where}: set max_attempts = 1, or name how the retries back off (allowed: "
                                 f"{', '.join(s for s in SCHEDULES if s != 'none')})")
        return table

    def service_table(self):
        """The service table (``[scenario] speeds``) with the scenario's ``[service.MODEL]`` overrides (each
        checked by :func:`sim.service.service_models`, the error named by its key)."""
        known = self._base_catalog().models() + [m for t in self.tiers.values() for m in t.overrides]
        for model in self.service:
            if model not in known:
                raise self.error(f"service.{model}", did_you_mean(model, known, "model") + "; a new model also "
                                 "needs its limits, e.g. [tiers.NAME.overrides.\"" + model + "\"]")
        try:
            return service_models(self.service, self.scenario.speeds)
        except ConfigError as exc:
            model = next((m for m in self.service if repr(m) in str(exc)), None)
            raise self.error(f"service.{model}" if model else "service", str(exc)) from None

    def price_table(self):
        """Groq's prices with the scenario's ``[prices.MODEL]`` overrides.  A priced model must be one the
        limits or service tables know, or the scenario describes in ``[service.MODEL]`` (a typo would
        otherwise price a model nobody uses, leaving the intended one at Groq's price)."""
        known = set(self.catalog().models()) | set(self.service)
        for model in self.prices:
            if model not in known:
                raise self.error(f"prices.{model}", did_you_mean(model, sorted(known), "model"))
        try:
            return price_table(self.prices)
        except ConfigError as exc:
            model = next((m for m in self.prices if repr(m) in str(exc)), None)
            raise self.error(f"prices.{model}" if model else "prices", str(exc)) from None

    def path_of(self, name: str) -> Path:
        """A file the scenario names, relative to the scenario file's folder."""
        path = Path(name)
        return path if path.is_absolute() else Path(self.source).parent / path

    def client_models(self) -> set[str]:
        """The models the client groups send to as written: a group's own, or for a trace the models its rows
        name (and the group's for rows that name none)."""
        models = set()
        for c in self.clients:
            path = self.path_of(c.arrival.file) if c.arrival.kind == "trace" else None
            if path is None or not path.is_file():
                models.add(c.model)
                continue
            named = read_trace(path).get("model")
            if named is None or named.isna().any():
                models.add(c.model)
            if named is not None:
                models |= {m for m in named if isinstance(m, str)}
        return models

    def _needed(self) -> set[str] | None:
        """The models a custom tier's multiplier must keep at a limit of 1 or more (:meth:`used_models`); None
        (every model) when they cannot be read yet (a bad trace file: its own check says why, later)."""
        try:
            return self.used_models()
        except ConfigError:
            return None

    def used_models(self) -> set[str]:
        """Every model a run of the scenario may send to: the client groups' (:meth:`client_models`), a
        ``[compare] model`` axis's and the policies' fallbacks."""
        return (self.client_models() | set(self.compare.get("model", []))
                | {m for p in self.policy_table().values() for m in p.fallback})

    def notes(self) -> list[str]:
        """One-line warnings about what the scenario uses (models Groq has shut down)."""
        return [w for m in sorted(self.used_models()) if (w := shutdown_warning(m))]

    def setting_notes(self, duration: float | None = None) -> list[str]:
        """One line per setting that changes nothing as combined (:meth:`sim.config.Policy.inert`; a refund
        with nothing reserved; a batch group's policy), or that acts otherwise than it reads (a batch
        submission at or after the end of a run of ``duration``, else the scenario's), named by its key."""
        horizon = duration if duration is not None else self.scenario.duration
        table = self.policy_table()
        notes = [f"note: policies.{name}: {why}" for name, raw in self.policies.items()
                 for why in table[name].inert(set(raw))]
        for c in self.clients:  # a fallback to the model the group sends: a hop to the same limits
            for name in self.compare.get("policy", [c.policy]):
                own = sorted(set(table[name].fallback) & self._own_models(c))
                if own:
                    notes.append(f"note: clients.{c.name}: policy {name!r} falls back to {', '.join(map(repr, own))}, "
                                 "a model the group itself sends: that hop asks the same model's limits again at "
                                 "once (an attempt with no back-off), not another model's")
        batch_axis = "batch" in self.compare.get("lane", [])
        for c in self.clients:
            pol = table.get(c.policy)
            if pol is None or not (c.lane == "batch" or batch_axis):
                continue
            applied = [k for k, v in (("retries", pol.max_attempts > 1), ("pacing", pol.pacing or pol.adaptive),
                                      ("deadline", pol.deadline), ("timeout", pol.timeout)) if v]
            if applied:
                notes.append(f"note: clients.{c.name}: on the batch lane its policy {c.policy!r} does not apply "
                             f"({', '.join(applied)}): a batch request is bounded by its job's completion_window "
                             "alone (docs/lanes.md)")
            jobs = c.batch
            if jobs.submit_at is not None and jobs.submit_at >= horizon:
                notes.append(f"note: clients.{c.name}: batch.submit_at {format_duration(jobs.submit_at)} is at or "
                             f"after the end of the run ({format_duration(horizon)}): everything goes in one "
                             "submission then, while the run drains")
            elif jobs.submit_every is not None and jobs.submit_at is None:
                notes.append(f"note: clients.{c.name}: batch.submit_every has no effect without submit_at: "
                             "everything goes in one submission at the end of the run")
        lanes = set(self.compare["lane"]) if "lane" in self.compare else None  # (the axis sets every group's)
        for c in self.clients:
            if c.service_tier and (lanes or {c.lane}) == {"batch"}:
                notes.append(f"note: clients.{c.name}: on the batch lane its service_tier {c.service_tier!r} does "
                             "not apply: a batch job is processed by the Batch API whatever the tier (docs/lanes.md)")
        if self.scenario.speeds != "docs":  # the two published sets agree on some models
            docs, chosen = service_models(self.service, "docs"), self.service_table()

            def same(m):  # (their sources differ: the page each speed is from)
                a, b = docs.get(m), chosen.get(m)
                return a == b or (a is not None and b is not None and replace(a, source="") == replace(b, source=""))
            if all(same(m) for m in self.used_models()):
                notes.append(f"note: scenario.speeds: {self.scenario.speeds!r} gives every model sent here the same "
                             "output speed as 'docs' (Groq's two published sets agree on these): it changes nothing")
        meta = self.scenario
        if duration is not None and duration != meta.duration and meta.warmup > 0:
            scaled = scaled_warmup(meta.warmup, meta.duration, duration)
            notes.append(f"note: scenario.warmup: {format_duration(meta.warmup)} of the file's "
                         f"{format_duration(meta.duration)} keeps its share of --duration {format_duration(duration)}: "
                         f"a warm-up of {format_duration(scaled)}")
        acc = self.org.accounting
        if acc.refund_unused and acc.charge == "actual" and not {"charge", "refund_unused"} & set(self.compare):
            notes.append('note: org.accounting.refund_unused has no effect with charge = "actual" (nothing is '
                         "reserved, so nothing is given back)")
        return notes + self._load_notes() + self._axis_notes()

    def _load_notes(self) -> list[str]:
        """One line per closed loop a ``[compare] load`` does not scale exactly: it runs whole users, at least
        one (:meth:`sim.arrivals.Closed.users_at`, as the engine does)."""
        notes = []
        for c in self.clients:
            if c.arrival.open_loop or "load" not in self.compare:
                continue
            users, runs = c.arrival.users, {}
            for load in self.compare["load"]:
                n = c.arrival.users_at(load)
                if n != users * load:
                    runs.setdefault(n, []).append(f"{load:g}")
            if runs:
                said = "; ".join(f"load {', '.join(v)} {'run' if len(v) > 1 else 'runs'} {n} user{'s' * (n != 1)}"
                                 + (" (the same runs)" if len(v) > 1 else "") for n, v in runs.items())
                notes.append(f"note: clients.{c.name}: a closed loop runs whole users, at least one (users = {users} "
                             f"x load, rounded): {said}")
        return notes

    def _own_models(self, c: Client) -> set[str]:
        """The models client group ``c`` sends as its own: its model, or the model axis's values."""
        return set(self.compare.get("model", [c.model]))

    def _sends(self, c: Client) -> set[str]:
        """The models client group ``c`` can send to: its own (or the model axis's), its policies' fallbacks,
        and for a trace every model a project limits (its rows may name any)."""
        if c.arrival.kind == "trace":
            return {m for p in self.projects.values() for m in p.limits}
        policies = self.policy_table()
        sent = self._own_models(c)
        for p in self.compare.get("policy", [c.policy]):
            sent.update(policies[p].fallback)  # (every policy named is in the table: loading checks them)
        return sent

    #: the ``[org]`` setting each axis of :meth:`_inert` compares (its path under ``org``), then the settings
    #: no axis compares that :meth:`_inert` judges too
    _ORG_SETTINGS = {"limiter": "limiter", "error_rate": "error_rate", "error_status": "error_status",
                     "retry_after_rounding": "retry_after_rounding", "service_tier": "service_tier",
                     "flex_multiplier": "flex.multiplier", "flex_failure": "flex.scarce_failure",
                     "project_quotas": "project_quotas", "bill_timed_out": "accounting.bill_timed_out",
                     "flex_calm": "flex.calm", "flex_scarce": "flex.scarce", "flex_calm_failure": "flex.calm_failure",
                     "batch": "batch"}

    def _axis_notes(self) -> list[str]:
        """One line per ``[compare]`` axis whose values all give the same runs, as the rest of the file is,
        and per ``[org]`` setting written in the file (not compared) that changes nothing, for the same reason."""
        why, cmp = self._inert(), self.compare
        notes = [f"note: compare.{axis}: {why[axis]}: its values {_toml_list(cmp[axis])} give the same runs"
                 for axis in cmp if axis in why]
        for axis, field in self._ORG_SETTINGS.items():
            *outer, name = field.split(".")
            table = getattr(self.org, outer[0]) if outer else self.org
            if axis in why and axis not in cmp and table.written(name):
                notes.append(f"note: org.{field}: {why[axis]}: it changes nothing"
                             + (" in a run (groqsim serve's Batch API uses it)" if axis == "batch" else ""))
        return notes

    def _inert(self) -> dict[str, str]:
        """Axis -> why its values would all give the same runs, for each axis (or the ``[org]`` setting it
        compares) that acts on nothing here."""
        cmp, org = self.compare, self.org

        def lanes(c):
            return set(cmp["lane"]) if "lane" in cmp else {c.lane}

        def tiers(c):
            return {c.service_tier} if c.service_tier else set(cmp.get("service_tier", [org.service_tier]))

        on_demand = [c for c in self.clients if "on_demand" in lanes(c)]  # (the batch lane has none of these)
        on_flex = [c for c in on_demand if tiers(c) & {"flex", "auto"}]
        why = {}
        if not on_flex:
            for axis in ("flex_multiplier", "flex_failure", "flex_calm", "flex_scarce", "flex_calm_failure"):
                why[axis] = "no client group is served on flex (service_tier 'flex' or 'auto', off the batch lane)"
        elif org.flex.scarce == 0:
            why["flex_failure"] = "org.flex.scarce = 0: flex capacity is never scarce, so its failure never applies"
            why["flex_calm"] = "org.flex.scarce = 0: flex capacity is never scarce, so a calm period never ends"
        if not any("batch" in lanes(c) for c in self.clients):
            why["batch"] = "no client group is on the batch lane (lane = 'batch', or a [compare] lane axis with it)"
        if not any(c.project in self.projects and self.projects[c.project].limits for c in on_demand):
            why["project_quotas"] = "no client group belongs to a project with limits of its own ([projects.NAME])"
        elif not any(self._sends(c) & set(self.projects[c.project].limits) for c in on_demand
                     if c.project in self.projects):
            why["project_quotas"] = ("no client group's project has limits on a model the group sends (its model, "
                                     "the model axis, its policies' fallbacks)")
        if all(c.service_tier for c in on_demand):
            why["service_tier"] = "every client group sets its own service_tier or is on the batch lane"
        if org.accounting.charge == "actual" and "charge" not in cmp:
            why["refund_unused"] = 'with charge = "actual" nothing is reserved, so nothing is given back'
        table = self.policy_table()
        # the policies the on-demand groups may run (the policy axis's, else each group's own)
        used = [table[p] for c in on_demand for p in (cmp["policy"] if "policy" in cmp else [c.policy])]
        if not any(pol.timeout is not None for pol in used):
            why["bill_timed_out"] = "no client policy has a timeout, so no attempt is given up"
        elif not any(self.catalog().bills(t) for t in cmp.get("tier", [org.tier])):
            why["bill_timed_out"] = "the tier does not bill"
        if not any(pol.reads_retry_after() for pol in used):
            why["retry_after_rounding"] = ("no client policy reads a 429's retry-after (a schedule that obeys it, "
                                           "honor_retry_after, or cooldown = 'retry-after')")
        if org.error_rate == 0 and "error_rate" not in cmp:
            why["error_status"] = "error_rate is 0: no error is injected"
        if not on_demand:  # the batch lane (sim.batch) has its own processing: no limit set, 429 or injected error
            # (not charge: the records keep each request's charged_tokens, batch or not)
            for axis in ("limiter", "refund_unused", "retry_after_rounding", "error_rate", "error_status"):
                why[axis] = ("every client group is on the batch lane, which meets none of the org's on-demand "
                             "limits, 429s or injected errors")
        return why

    def trace_notes(self, duration: float | None = None) -> list[str]:
        """One line per trace the horizon (``duration``, else the scenario's) does not replay whole at the
        grid's lowest ``load``: rows at or after it are silently never sent, and a trace entirely after it
        makes a run of nothing."""
        horizon = duration if duration is not None else self.scenario.duration
        load = min(float(v) for v in self.compare.get("load", [1.0]))
        notes = []
        for c in self.clients:
            if c.arrival.kind != "trace" or not self.path_of(c.arrival.file).is_file():
                continue
            ts = read_trace(self.path_of(c.arrival.file))["timestamp"].to_numpy(float) / load
            inside = int((ts < horizon).sum())
            if inside == len(ts):
                continue
            at = f" at load {load:g}" if "load" in self.compare else ""
            run = f"a run of {format_duration(horizon)}{at}"
            if inside == 0:
                notes.append(f"warning: clients.{c.name}: none of the {len(ts):,} rows of {c.arrival.file} falls in "
                             f"{run} (the first is at {format_duration(float(ts.min()))}): nothing is replayed; "
                             "raise duration or shift the trace's timestamps")
            else:
                notes.append(f"note: clients.{c.name}: {run} replays {inside:,} of the {len(ts):,} rows of "
                             f"{c.arrival.file} (the trace runs to {format_duration(float(ts.max()))}); the rest "
                             "are not sent")
        return notes

    def seed(self, replication: int) -> np.random.SeedSequence:
        """The seed of replication ``replication`` (an integer >= 0): the same for every grid point (common
        random numbers), independent across replications and of which worker runs it."""
        if not is_whole(replication) or replication < 0:
            kind = ValueError if is_whole(replication) else TypeError
            raise kind(f"seed(replication={replication!r}): a replication is a whole number >= 0 (replication k of "
                       f"`groqsim run` is seed(k); this scenario runs {self.scenario.replications})")
        return np.random.SeedSequence(self.scenario.seed, spawn_key=(int(replication),))

    def grid(self) -> list[dict[str, Any]]:
        """The cross product of the ``[compare]`` axes, in file order ([{}] without a grid)."""
        axes = list(self.compare)
        return [dict(zip(axes, combo)) for combo in itertools.product(*(self.compare[a] for a in axes))]

    def point(self, index: int, source: str = "") -> dict[str, Any]:
        """Grid point ``index``, numbered from 0 as :meth:`grid` lists them (no negative index); a ConfigError
        names the valid range.  ``source`` (the command line's scenario argument): the error names ``--point``."""
        grid = self.grid()
        if not is_whole(index):
            raise TypeError(f"point({index!r}): a grid point's number is a whole number from 0 to {len(grid) - 1}, "
                            f"not {type(index).__name__}")
        if not 0 <= index < len(grid):
            said = f"--point {index}: {source}" if source else f"point({index!r}): {self.source}"
            listed = "groqsim check" if source else "scenario.grid()"
            raise ConfigError(f"{said} has {len(grid)} grid point(s), numbered 0 to {len(grid) - 1} ({listed} lists "
                              "them)")
        return grid[int(index)]

    def run_duration(self, duration: float | str | None) -> float | None:
        """A run length given in place of the scenario's (seconds, or ``"10m"``) in seconds; None stays None."""
        if duration is None:
            return None
        if isinstance(duration, numbers.Real) and not isinstance(duration, (bool, np.bool_)):
            duration = float(duration)  # (numpy's numbers too)
        try:
            seconds = parse_duration(duration)
        except ValueError as exc:
            raise ConfigError(f"{self.source}: duration: {exc}") from None
        if not 0 < seconds < math.inf:
            raise ConfigError(f"{self.source}: duration {duration!r}: must be > 0 seconds (e.g. 600 or '10m')")
        return seconds

    def spec(self, point: dict[str, Any] | None = None, *, duration: float | str | None = None) -> RunSpec:
        """Resolve one grid point into a :class:`RunSpec`, checking every model, tier and policy name.
        ``point``: axis -> value (as :meth:`grid` lists them; any axis of :data:`AXES`), or its number in
        :meth:`grid` (``spec(k) == spec(grid()[k])``); None: the file's settings alone; ``duration``: the run's
        length in seconds or as ``"10m"`` (the warm-up keeps its share of the run, as ``--duration`` does)."""
        if point is None:
            point = {}
        elif is_whole(point):  # a grid point's number, as point() and comparison["point"] number them
            point = self.point(point)
        elif not isinstance(point, dict):
            raise ConfigError(f"{self.source}: spec({point!r}): a grid point is a dict of axis -> value, e.g. "
                              f"{self.grid()[0] or {'tier': 'free'}}, or its number in grid() (0 to "
                              f"{len(self.grid()) - 1})")
        point = _plain(point)
        duration = self.run_duration(duration)
        org = self.org.model_dump()
        clients = [c.model_dump() for c in self.clients]
        load = 1.0
        for axis, value in point.items():
            if axis not in AXES:
                raise ConfigError(f"{self.source}: grid point: {did_you_mean(str(axis), AXES, 'compare axis')}")
            where, *path = AXES[axis].split(".")
            if where == "load":
                number = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
                if not number or not 0 < value < math.inf:
                    raise ConfigError(f"{self.source}: grid point: load {value!r} is not allowed (a load "
                                      "multiplier is a number > 0, e.g. 0.5 or 2)")
                load = float(value)
            elif where == "clients":
                for c in clients:
                    c[path[0]] = value
            else:
                target = org
                for part in path[:-1]:
                    target = target[part]
                target[path[-1]] = value
        try:
            org_model = Org(**org)
            client_models = [Client(**c) for c in clients]
        except ValidationError as exc:  # named by the axis the file wrote (flex_multiplier, not flex.multiplier)
            axes = {tuple(AXES[a].split(".")[1:]): a for a in point if a != "load"}
            raise _pydantic_error(self, exc, ("compare",), axes) from None
        catalog, policies = self.catalog(), self.policy_table()
        service = self.service_table()
        if org_model.tier not in catalog.tiers:
            where = "compare.tier" if "tier" in point else "org.tier"
            raise self.error(where, did_you_mean(org_model.tier, catalog.tiers, "tier"))
        if not catalog.bills(org_model.tier):  # flex and auto are for paid plans (groq-real-responses.md §6)
            for k, c in enumerate(client_models):
                wanted = c.service_tier or org_model.service_tier
                if wanted != "on_demand" and c.lane != "batch":  # (the batch lane ignores the service tier)
                    where = ("compare.service_tier" if "service_tier" in point else
                             f"clients[{k}].service_tier" if c.service_tier else "org.service_tier")
                    raise self.error(where, f"service tier {wanted!r} is for paid plans, and tier {org_model.tier!r} "
                                            "bills nothing: use a billed tier (developer, or one of [tiers] with "
                                            "billed = true) or 'on_demand'")
        for k, c in enumerate(self.clients):  # a name the grid replaces must still refer to something
            if c.policy not in policies:
                raise self.error(f"clients[{k}].policy", did_you_mean(c.policy, policies, "policy"))
            if "model" in point and c.model not in service:
                raise self.error(f"clients[{k}].model", _unserved(c.model, service, catalog, "model"))
        if self.org.tier not in catalog.tiers:  # (replaced by the grid's tier axis; else refused above)
            raise self.error("org.tier", did_you_mean(self.org.tier, catalog.tiers, "tier"))
        for name, pol in policies.items():
            for fb in pol.fallback:
                if fb not in service:
                    raise self.error(f"policies.{name}.fallback",
                                     _unserved(fb, service, catalog, "fallback model"))
        sent = [{c.model, *policies[c.policy].fallback} if c.policy in policies else {c.model}
                for c in client_models]  # the models each group's requests may reach (a trace's rows: below)
        for k, c in enumerate(client_models):
            where = f"clients[{k}]" if not point.get("model") else "compare"  # + ".model"
            try:
                catalog.limits(org_model.tier, c.model)
            except ConfigError as exc:
                raise self.error(f"{where}.model", str(exc)) from None
            if c.model not in service:
                raise self.error(f"{where}.model", _unserved(c.model, service, catalog, "model"))
            if c.audio_seconds.mean() > 0 and service[c.model].kind != "stt":
                raise self.error(f"clients[{k}].audio_seconds", f"{c.model!r} takes no audio: audio_seconds is for "
                                 "speech-to-text models (whisper-large-v3, whisper-large-v3-turbo)")
            if service[c.model].kind == "stt" and c.arrival.kind != "trace" and not c.audio_seconds.mean() > 0:
                raise self.error(f"{where}.model", f"{c.model!r} is speech-to-text: its requests are audio, so the "
                                 "group needs audio_seconds > 0 (a text workload means nothing to it)")
            kind = service[c.model].kind
            if kind != "chat":  # a request carries only what its model's kind takes (workload.CARRIES)
                unused = {"tts": ("max_tokens", "completion_tokens"),
                          "stt": ("prompt_tokens", "max_tokens", "completion_tokens")}[kind]
                written = [f for f in unused if f in self.clients[k].model_fields_set
                           and getattr(c, f) is not None and getattr(c, f).bounds()[1] > 0]
                if written:
                    raise self.error(f"clients[{k}].{written[0]}", f"{c.model!r} is " + (
                        "text-to-speech: its TPM/TPD count the input characters (prompt_tokens) only, so a group "
                        "on it sets no max_tokens or completion_tokens" if kind == "tts" else
                        "speech-to-text: its requests are audio (audio_seconds) and carry no tokens, so a group "
                        "on it sets no prompt_tokens, max_tokens or completion_tokens"))
                zero = Dist(dist="fixed", value=0)
                update = {"max_tokens": zero, "completion_tokens": None}
                if kind == "stt":
                    update["prompt_tokens"] = zero
                client_models[k] = c = c.model_copy(update=update)
            if ("batch" in self.clients[k].model_fields_set  # as written, not as resolved
                    and self.clients[k].lane != "batch" and "batch" not in self.compare.get("lane", [])):
                raise self.error(f"clients[{k}].batch", 'batch settings need lane = "batch" (this group is served '
                                 "on demand, so they would be ignored)")
            if c.policy not in policies:
                where = f"clients[{k}]" if not point.get("policy") else "compare"
                raise self.error(f"{where}.policy", did_you_mean(c.policy, policies, "policy"))
            for fb in policies[c.policy].fallback:
                try:
                    catalog.limits(org_model.tier, fb)
                except ConfigError as exc:
                    raise self.error(f"policies.{c.policy}.fallback", str(exc)) from None
                if service[fb].kind != service[c.model].kind:
                    raise self.error(f"policies.{c.policy}.fallback", f"{fb!r} ({service[fb].kind}) cannot answer "
                                     f"{c.model!r}'s requests ({service[c.model].kind}): fall back to a model of "
                                     "the same kind")
            _instant_loop(self, k, c, policies[c.policy], load, point)
            if c.project is not None:
                if c.project not in self.projects:
                    raise self.error(f"clients[{k}].project",
                                     did_you_mean(c.project, self.projects, "project") if self.projects
                                     else f"no project {c.project!r}: define it as [projects.{c.project}]"
                                     if c.project.strip() else f"{c.project!r} names no project (allowed: leave "
                                     "project out, or name a [projects.NAME] table)")
            if c.arrival.kind == "trace":
                if not c.arrival.file.strip():
                    raise self.error(f"clients[{k}].arrival.file", f"{c.arrival.file!r} names no file (allowed: "
                                     "the path of a CSV or JSONL trace, relative to the scenario's folder)")
                path = self.path_of(c.arrival.file)
                if not path.is_file():
                    raise self.error(f"clients[{k}].arrival.file", f"trace file {str(path)!r} "
                                     + ("is a directory (allowed: a CSV or JSONL file)" if path.is_dir()
                                        else "not found"))
                try:
                    trace_models = self._trace_models(path)
                    sent[k].update(trace_models)
                except ConfigError as exc:
                    if path.suffix.lower() in TRACE_SUFFIXES:
                        raise
                    raise self.error(f"clients[{k}].arrival.file", f"{c.arrival.file!r} is not a trace (allowed: a "
                                     f"CSV or JSONL trace, such as a .csv or .jsonl file): {exc}") from None
                for model, line in trace_models.items():
                    try:
                        catalog.limits(org_model.tier, model)
                    except ConfigError as exc:
                        raise ConfigError(f"{path}:{line}: column model: {exc}") from None
                    if model not in service:
                        raise ConfigError(f"{path}:{line}: column model: "
                                          + _unserved(model, service, catalog, "model for the service table:"))
                check_kinds(str(path), read_trace(path), kinds(service), c.model, c.audio_seconds.mean() > 0)
                client_models[k] = c.model_copy(update={"arrival": c.arrival.model_copy(update={"file": str(path)})})
        for c, models in zip(client_models, sent):  # flex limits are the org's x the multiplier: each still >= 1
            if (c.service_tier or org_model.service_tier) in ("flex", "auto") and c.lane != "batch":
                try:  # (its own model, its fallbacks', its trace's rows')
                    org_model.flex.check((m, catalog.limits(org_model.tier, m)) for m in sorted(models))
                except KeyedError as exc:
                    where = "compare.flex_multiplier" if "flex_multiplier" in point else "org.flex.multiplier"
                    raise self.error(where, exc.message) from None
        on_flex = {c.project for c in client_models
                   if (c.service_tier or org_model.service_tier) in ("flex", "auto") and c.lane != "batch"}
        for name, project in self.projects.items():
            for model in project.limits:
                where = f"projects.{name}.limits.{model}"
                try:
                    own = project_limits(name, project, model, catalog.limits(org_model.tier, model))
                except ConfigError as exc:
                    raise self.error(where, str(exc)) from None
                if own is not None and name in on_flex:  # its flex limits are its own x the multiplier too
                    try:
                        org_model.flex.limits(own)
                    except KeyedError as exc:
                        raise self.error(where, f"x flex multiplier {org_model.flex.multiplier:g}: "
                                         f"{exc.message}") from None
        meta = self.scenario
        warmup = meta.warmup
        if duration is not None and duration != meta.duration:
            warmup = scaled_warmup(meta.warmup, meta.duration, duration)
        return RunSpec(clients=client_models, policies=policies, org=org_model, catalog=catalog, service=service,
                       prices=self.price_table(), duration=duration if duration is not None else meta.duration,
                       warmup=warmup, drain=meta.drain, load=load, projects=dict(self.projects),
                       lane_report=any(a in self.compare for a in LANE_AXES))

    def _trace_models(self, path: Path) -> dict[str, int]:
        """The models a trace names, each with the line of its first row in the file, in name order (reading it
        validates every row: errors name file, row and column)."""
        df = read_trace(path)
        if "model" not in df:
            return {}
        first: dict[str, int] = {}
        for m, line in zip(df["model"], df.attrs["lines"]):
            if isinstance(m, str) and (m not in first or line < first[m]):
                first[m] = line
        return dict(sorted(first.items()))

    def size(self, duration: float | None = None, load: float | None = None) -> tuple[int, float]:
        """(runs, simulated requests) the study asks for: grid points x replications, and the sum over runs
        of each open-loop client group's mean rate over the horizon x load x horizon (``window_rate``: a
        diurnal day's first hours are not its mean; a trace's rows in the horizon; a closed loop's users x load,
        each at most one request per think time and quickest answer, :data:`QUICKEST_ANSWER`).  Retries are not
        counted.  ``load``: as if every grid point ran at that load (one point's requests: divide by the runs)."""
        horizon = duration if duration is not None else self.scenario.duration
        loads = [float(v) for v in self.compare.get("load", [1.0])] if load is None else [float(load)]
        requests = 0.0
        for x in loads:
            for c in self.clients:
                a = c.arrival
                if a.kind == "trace":
                    ts = read_trace(self._resolve(a.file))["timestamp"]
                    requests += float((ts / x < horizon).sum())
                elif a.open_loop:
                    requests += a.window_rate(horizon) * x * horizon
                else:  # as many users as the engine starts at this load, each at most one request per think
                    # time and quickest answer (a refusal a round trip away), and each one process at least
                    requests += a.users_at(x) * (1 + horizon / (a.think + QUICKEST_ANSWER))
        grid = len(self.grid())
        return grid * self.scenario.replications, requests * grid / len(loads) * self.scenario.replications

    def users(self, load: float | None = None) -> int:
        """The most closed-loop users one run starts: at each load of the grid (or at ``load``), every closed
        group's users x load (rounded, at least one, as the engine starts them), summed over the groups."""
        closed = [c.arrival for c in self.clients if not c.arrival.open_loop]
        loads = self.compare.get("load", [1.0]) if load is None else [load]
        return max(sum(a.users_at(x) for a in closed) for x in loads)

    def _resolve(self, file: str) -> Path:
        path = Path(file)
        return path if path.is_absolute() else Path(self.source).parent / path

    def check(self) -> list[dict[str, Any]]:
        """Resolve every grid point (raises on the first bad one); returns the grid.  A grid of more than
        :data:`MAX_GRID` points is refused at once (resolving them all would itself take minutes)."""
        sizes = [len(self.compare[a]) for a in self.compare]
        if (points := math.prod(sizes)) > MAX_GRID:
            raise self.error("compare", f"{points:,} grid points ({' x '.join(map(str, sizes))} values); "
                                        f"a study takes at most {MAX_GRID:,}: split it, or give the axes fewer values")
        grid = self.grid()
        for point in grid:
            self.spec(point)
        return grid

    def run_error(self, exc: ConfigError, point: dict, index: int | None = None) -> ConfigError:
        """What only a run of ``point`` finds (a closed loop that cannot advance), as one line naming the file,
        the key's line and the point (its number ``index`` in :meth:`grid` when it is one; the file may be fine
        at its other points)."""
        axes = ", ".join(f"{a} = {v!r}" for a, v in point.items())
        where = (f" (at grid point {index}: {axes})" if index is not None else f" (at {axes})") if axes else ""
        if isinstance(exc, KeyedError):
            return self.error(exc.key, exc.message + where)
        return ConfigError(f"{self.source}: {exc}{where}")

    def error(self, key: str, message: str) -> ConfigError:
        """A ConfigError naming the file, its line of ``key`` where found, and ``key`` (a key the overrides set:
        said so, with no line)."""
        if key in self._overridden:
            return ConfigError(f"{self.source}: {key} (from overrides, not the file): {message}")
        line = _find_line(self.source, key)
        where = f"{self.source}:{line}" if line else self.source
        return ConfigError(f"{where}: {key}: {message}")


def require_scenario(value, call: str) -> None:
    """A TypeError unless ``value`` is a :class:`Scenario`, saying how to make one of what was passed
    (``call``: the function and argument, as the user wrote them: ``"run_study(scenario)"``)."""
    if isinstance(value, Scenario):
        return
    hint = (": load the file first, sim.load_scenario(path)" if isinstance(value, (str, PathLike)) else
            ": validate it first, sim.scenario_from_dict(data)" if isinstance(value, dict) else
            ": a RunSpec is one run, sim.simulate(spec, seed)" if isinstance(value, RunSpec) else "")
    raise TypeError(f"{call}: takes a Scenario, got {type(value).__name__}{hint}")


def _instant_loop(scenario: Scenario, k: int, c: Client, policy, load: float, point: dict) -> None:
    """Refuse a closed loop certain to stop time: users with a think time of 0, more of them than the policy's
    in-flight cap and queue hold.  At the start every user sends; the one the full queue drops (whatever other
    gates say: the cap holds it first) ends the instant it began and, thinking 0 s, sends again at that same
    instant, to be dropped again: simulated time never moves (the engine stops such a loop after
    :data:`sim.engine.INSTANT_LOOP` requests; caught here, ``check`` finds it and no run starts).  A queue that
    fills only later (a cooldown after a 429) is found by the run."""
    a = c.arrival
    if a.open_loop or a.think != 0 or c.lane == "batch" or policy.queue_size is None or not policy.max_in_flight:
        return
    users, room = a.users_at(load), policy.max_in_flight + policy.queue_size
    if users > room:
        at = f" (at grid point {', '.join(f'{x} = {v!r}' for x, v in point.items())})" if point else ""
        raise scenario.error(f"clients[{k}].arrival.think", f"0 for {users} users with policy {c.policy!r} "
                             f"(max_in_flight = {policy.max_in_flight}, queue_size = {policy.queue_size}){at}: the "
                             "client's queue is full at the start, and a user whose request it drops sends again at "
                             "the same instant, for ever, with no time passing (allowed: think > 0, or at most "
                             f"{room} user(s))")


#: the quickest answer a closed loop's user can get, in s, when sizing a study: a refusal one round trip away
#: (the service's default median round trip); a think time of 0 sends again as soon as it comes
QUICKEST_ANSWER = ServiceParams.rtt_median

#: the most grid points a scenario's [compare] may cross (each is resolved and checked when it is loaded)
MAX_GRID = 100_000


# ---- loading ----------------------------------------------------------------------------------------

def load_scenario(path: str | Path, overrides: dict[str, Any] | None = None) -> Scenario:
    """Read and validate a scenario file.  ``overrides`` (e.g. ``{"duration": "90s"}``) replace
    ``[scenario]`` settings, as the command line's ``--duration``/``--seed``/``--replications`` do: a new
    ``duration`` keeps the warm-up's share of the run (unless ``warmup`` is overridden too)."""
    if isinstance(path, dict):
        raise TypeError("load_scenario(path): takes the path of a TOML file, got a dict: for a scenario held as a "
                        "dict, use sim.scenario_from_dict(data)")
    if not isinstance(path, (str, Path)):
        raise TypeError(f"load_scenario(path): takes the path of a TOML file (a str or Path), got "
                        f"{type(path).__name__} {path!r}")
    if overrides is not None and not isinstance(overrides, dict):
        raise TypeError(f"load_scenario(overrides=...): a dict of [scenario] settings such as {{'duration': '90s'}}, "
                        f"got {type(overrides).__name__}")
    if not str(path).strip():  # (Path("") is ".", the current directory: "cannot read ." said nothing)
        raise ConfigError(f"{str(path)!r}: no scenario file named (an empty path; e.g. "
                          "scenarios/chatbot_free_vs_developer.toml)")
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read scenario ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8-sig")  # a byte-order mark (Windows editors) is not part of the TOML
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a scenario: not UTF-8 text (byte {exc.start}); expected a TOML file") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:  # (arrays or tables nested thousands deep)
        raise ConfigError(f"{path}: not valid TOML: arrays or tables nested too deep") from None
    except ValueError:  # (the one ValueError tomllib lets through: an integer past Python's limit on int(str))
        raise ConfigError(f"{path}: not valid TOML: an integer of more than {sys.get_int_max_str_digits()} "
                          "digits") from None
    return scenario_from_dict(data, source=str(path), overrides=overrides)


def scaled_warmup(warmup: float, duration: float, new_duration: float) -> float:
    """The warm-up of a run made ``new_duration`` long instead of ``duration``: the same share of the run
    (``--duration``, a ``duration`` override)."""
    return warmup * new_duration / duration


def _overridden_warmup(meta: dict, duration):
    """The file's warm-up for an overridden ``duration`` (:func:`scaled_warmup`); the file's own value when
    either cannot be read (validation then says why)."""
    try:
        old, new = parse_duration(meta.get("duration", Meta().duration)), parse_duration(duration)
        return scaled_warmup(parse_duration(meta["warmup"]), old, new) if old > 0 else meta["warmup"]
    except ValueError:
        return meta["warmup"]


def scenario_from_dict(data: dict, source: str = "<scenario>", overrides: dict[str, Any] | None = None) -> Scenario:
    """Validate a scenario given as the dict its TOML file parses to (errors name ``source`` and the key).
    ``overrides`` replace ``[scenario]`` settings as :func:`load_scenario`'s do."""
    if not isinstance(data, dict):
        hint = (": for a scenario file, use sim.load_scenario(path)" if isinstance(data, (str, Path)) else "")
        raise TypeError(f"scenario_from_dict(data): takes a dict of the scenario's tables (as its TOML file parses "
                        f"to), got {type(data).__name__}{hint}")
    if not isinstance(source, str):
        raise TypeError(f"scenario_from_dict(source=...): the name errors give the scenario, a str, got "
                        f"{type(source).__name__} {source!r}")
    if overrides is not None and not isinstance(overrides, dict):
        raise TypeError(f"scenario_from_dict(overrides=...): a dict of [scenario] settings such as "
                        f"{{'duration': '90s'}}, got {type(overrides).__name__}")
    data, overrides = _plain(data), _plain(overrides)
    stub = Scenario.model_construct(source=source)
    _check_sections(stub, data)
    if overrides:
        meta, given = data.get("scenario", {}), {k: v for k, v in overrides.items() if v is not None}
        if "duration" in given and "warmup" not in given and isinstance(meta, dict) and meta.get("warmup"):
            given["warmup"] = _overridden_warmup(meta, given["duration"])
        data["scenario"] = {**meta, **given}
        stub._overridden = frozenset(f"scenario.{k}" for k in overrides if overrides[k] is not None)
    _check_keys(stub, data, Scenario, ())
    for axis in data.get("compare", {}):
        if axis not in AXES:
            raise stub.error(f"compare.{axis}", did_you_mean(axis, AXES, "compare axis"))
        if not isinstance(data["compare"][axis], list) or not data["compare"][axis]:
            raise stub.error(f"compare.{axis}", "must be a non-empty list of values")
        if (k := _first_repeat(data["compare"][axis])) is not None:
            raise stub.error(f"compare.{axis}", f"{data['compare'][axis][k]!r} is listed twice (each value of an axis "
                             "once: a repeated one would be the same runs)")
        if axis == "load":
            for v in data["compare"][axis]:
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 < v < math.inf):
                    raise stub.error("compare.load", f"{v!r} is not allowed (a load multiplier is a number > 0, "
                                     "e.g. [0.5, 1, 2])")
    names = [c.get("name") if isinstance(c, dict) else None for c in data.get("clients", [])]
    if (k := _first_repeat(names)) is not None:
        raise stub.error(f"clients[{k}].name", f"{names[k]!r} names two client groups (each group's name once: "
                         "records and tables key on it)")
    try:
        scenario = Scenario(**data, source=source)
    except ValidationError as exc:
        raise _pydantic_error(stub, exc, ()) from None
    scenario._overridden = stub._overridden
    scenario.check()
    for note in scenario.notes():  # a model Groq shut down: said in a notebook as on the command line
        warn_once(note.removeprefix("warning: "), ShutDownModelWarning)
    for note in scenario.setting_notes():
        warn_once(note.removeprefix("note: "), InertSettingWarning)
    return scenario


#: the scenario sections written as tables of named tables ([policies.NAME]) rather than one table
_NAMED_TABLES = ("tiers", "service", "prices", "policies", "projects")


def _check_sections(stub: Scenario, data: dict) -> None:
    """Each top-level section has the shape its TOML form gives it (a table; ``clients`` a list of tables;
    a named section's entries tables), before anything walks into it: a wrong one is one line, not a
    traceback from deep inside."""
    for key, value in data.items():
        if key not in Scenario.model_fields or key == "source":
            continue  # an unknown key: _check_keys names it
        if key == "clients":
            if not isinstance(value, list) or not all(isinstance(c, dict) for c in value):
                raise stub.error(key, f"{_shape(value)}: must be a list of tables, one [[clients]] per client group")
            continue
        if not isinstance(value, dict):
            hint = f" ([{key}.NAME] for each one, not [[{key}]])" if key in _NAMED_TABLES else ""
            raise stub.error(key, f"{_shape(value)}: must be a table [{key}]{hint}")
        if key in _NAMED_TABLES:
            for name, entry in value.items():
                if not isinstance(entry, dict):
                    raise stub.error(f"{key}.{name}", f"{_shape(entry)}: must be a table [{key}.{name}]")


def _shape(value) -> str:
    """How a TOML value reads, for an error: ``a list``, ``5``, ``'text'``."""
    if isinstance(value, list):
        return "a list of tables" if value and all(isinstance(v, dict) for v in value) else "a list"
    return "a table" if isinstance(value, dict) else repr(value)


def _unserved(model: str, service: dict, catalog: Catalog, what: str) -> str:
    """Why ``model`` is not in the service table: a new model's limits (``limits_file``, ``[tiers]``) without its
    service figures, else an unknown name (with did-you-mean)."""
    if model in catalog.models():
        return (f"{model!r} has limits but no service figures: describe it in [service.\"{model}\"] (at least "
                "output_tps)")
    return did_you_mean(model, service, what)


def _toml_list(values: list) -> str:
    """A list of plain values as the file writes it: ``[true, false]``, ``[2, 10]``, ``["flex", "auto"]``."""
    return "[" + ", ".join("true" if v is True else "false" if v is False else f'"{v}"' if isinstance(v, str)
                           else f"{v:g}" if isinstance(v, float) else str(v) for v in values) + "]"


def _plain(value):
    """``value`` with numpy scalars (``np.int64(3)``, ``np.float64(0.5)``, ``np.bool_``, ``np.str_``) as the
    Python ones, through dicts and lists (a copy; sweep values from numpy or pandas read as written ones)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value.item() if isinstance(value, np.generic) else value




def _first_repeat(values: list) -> int | None:
    """The index of the first value equal to an earlier one (``1 == 1.0``), ignoring None; None if all differ."""
    return next((k for k, v in enumerate(values) if v is not None and v in values[:k]), None)


def _models_in(annotation) -> list[type[BaseModel]]:
    """The pydantic model classes inside an annotation (through Optional, Annotated, Union, list, dict)."""
    if isinstance(annotation, type) and issubclass(annotation, Strict):
        return [annotation]
    found = []
    for arg in typing.get_args(annotation):
        found += [m for m in _models_in(arg) if m not in found]
    return found


def _model_of(stub: Scenario, annotation, value, path: tuple) -> type[BaseModel] | None:
    """The model class ``value`` will be validated as: the only one in the annotation, or, for a union
    discriminated by ``kind`` (arrival kinds), the one its ``kind`` names."""
    models = _models_in(annotation)
    if len(models) <= 1:
        return models[0] if models else None
    if not isinstance(value, dict) or "kind" not in value:
        return None  # pydantic names the missing discriminator
    by_kind = {m.model_fields["kind"].annotation.__args__[0]: m for m in models}
    if value["kind"] not in by_kind:
        raise stub.error(_path(path + ("kind",)), did_you_mean(str(value["kind"]), by_kind, "kind"))
    return by_kind[value["kind"]]


def _check_keys(stub: Scenario, data, model: type[BaseModel], path: tuple) -> None:
    """Reject unknown keys with the allowed ones listed (pydantic would only say 'extra inputs')."""
    if not isinstance(data, dict):
        return
    fields = {k: f for k, f in model.model_fields.items() if not (model is Scenario and k == "source")}
    for key, value in data.items():
        if key not in fields:
            if model is Policy and key == "extends":
                continue
            raise stub.error(_path(path + (key,)), did_you_mean(key, fields, "key"))
        if key == "policies" and model is Scenario:
            sub = Policy
            for name, pol in (value or {}).items():
                _check_keys(stub, pol, Policy, path + (key, name))
            continue
        annotation = fields[key].annotation
        origin = typing.get_origin(annotation)
        if isinstance(value, list):
            items = [((key, k), item) for k, item in enumerate(value)]
        elif isinstance(value, dict) and origin is dict:
            items = [((key, name), item) for name, item in value.items()]
        else:
            items = [((key,), value)]
        for where, item in items:
            sub = _model_of(stub, annotation, item, path + where)
            if sub is not None:
                _check_keys(stub, item, sub, path + where)


def _path(parts: tuple) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _pydantic_error(stub: Scenario, exc: ValidationError, prefix: tuple,
                    axes: dict[tuple, str] | None = None) -> ConfigError:
    """One line for pydantic's first error; ``axes`` maps a field's location to the ``[compare]`` axis that set
    it (the key the file wrote)."""
    err = exc.errors()[0]
    # pydantic's names for the members of a union ("constrained-int", "function-after[...]") are not keys
    loc = tuple(p for k, p in enumerate(err["loc"])
                if not (isinstance(p, str) and (p.startswith(("function-", "constrained-")) or "[" in p
                                                or (p in KINDS and k and err["loc"][k - 1] == "arrival"))))
    for field, axis in (axes or {}).items():
        if loc[:len(field)] == field:
            loc = (axis,)
            break
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "union_tag_not_found":  # a table without its discriminator (an arrival's kind)
        key = str(err.get("ctx", {}).get("discriminator", "kind")).strip("'")
        allowed = f" (allowed: {', '.join(KINDS)})" if loc[-1:] == ("arrival",) else ""
        return stub.error(_path(prefix + loc + (key,)), f"required, and missing{allowed}")
    value = err.get("input")
    if loc == ("clients",) and err["type"] in ("missing", "too_short"):  # (pydantic: "Field required")
        return stub.error(_path(prefix + loc), f"{'[]: ' if err['type'] == 'too_short' else ''}a scenario needs at "
                          "least one [[clients]] group (name, model, arrival, prompt_tokens, ...; see README)")
    if err["type"] == "missing":
        msg = "required, and missing"
    elif err["type"] == "too_short":
        msg = f"needs at least {err.get('ctx', {}).get('min_length', 1)} item(s)"
    elif err["type"] in BOUNDS:  # (pydantic: "Input should be greater than or equal to 1")
        msg = bound_message(err)
    shown = str(value).lower() if isinstance(value, bool) else repr(value)  # as the file wrote it: TOML's true
    if msg.startswith(repr(value)):  # (our own messages already start with the value, Python's way)
        msg = shown + msg[len(repr(value)):]
    elif value is not None and err["type"] not in ("missing",) and not isinstance(value, dict):
        msg = f"{shown}: {msg}"
    return stub.error(_path(prefix + loc) or "scenario", msg)


def _uncommented(line: str) -> str:
    """A TOML line without its comment (a ``#`` outside quotes and what follows)."""
    quote, escaped = None, False
    for k, ch in enumerate(line):
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\" and quote == '"':  # (a basic string's escape; a literal '...' has none)
                escaped = True
            elif ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            return line[:k]
    return line


def _find_line(source: str, key: str) -> int | None:
    """Best-effort line number of a dotted key path in a TOML file (None if not found)."""
    try:
        lines = [_uncommented(line) for line in Path(source).read_text().splitlines()]
    except (OSError, UnicodeDecodeError):
        return None
    parts = [p for p in re.split(r"\.|\[|\]", key) if p]
    start, found = 0, None
    for k, part in enumerate(parts):
        if part.isdigit() and k:
            header = re.compile(rf"^\s*\[\[\s*{re.escape(parts[k - 1])}\s*\]\]")
            hits = [n for n in range(start, len(lines)) if header.match(lines[n])]
            if len(hits) > int(part):
                start = found = hits[int(part)]
            continue
        pat = re.compile(rf"(^\s*\[+\s*[\w.\"/-]*\b{re.escape(part)}\b)|(\b\"?{re.escape(part)}\"?\s*=)")
        for n in range(start, len(lines)):
            if pat.search(lines[n]):
                start = found = n
                break
    return None if found is None else found + 1
