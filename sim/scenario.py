"""Scenario files (TOML): one study = org, client groups, policies and a ``[compare]`` grid.

:func:`load_scenario` validates the whole file (unknown keys are errors, with did-you-mean) and returns a
:class:`Scenario`; :meth:`Scenario.grid` expands the ``[compare]`` axes into grid points and
:meth:`Scenario.spec` resolves one point into the engine's :class:`~sim.engine.RunSpec`.
Every error is a :class:`~sim.errors.ConfigError` naming the file, the key path, what is allowed and,
where it can be found, the line.
"""
from __future__ import annotations

import itertools
import re
import tomllib
import typing
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, Field, ValidationError, model_validator

from .catalog import UNITS, Catalog
from .config import BUILTIN_POLICIES, Client, Duration, Org, Policy, Strict, resolve_policy
from .engine import RunSpec
from .errors import ConfigError, did_you_mean
from .service import ServiceParams, service_models

#: [compare] axis -> what it sets
AXES = {
    "tier": "org.tier", "limiter": "org.limiter", "charge": "org.accounting.charge",
    "refund_unused": "org.accounting.refund_unused", "cache_hit_ratio": "org.accounting.cache_hit_ratio",
    "error_rate": "org.error_rate", "retry_after_rounding": "org.retry_after_rounding",
    "model": "every client's model", "policy": "every client's policy", "load": "arrival-rate multiplier",
}


class Meta(Strict):
    name: str = "unnamed"
    description: str = ""
    duration: Duration = 3600.0
    warmup: Duration = 0.0
    drain: Duration = 3600.0
    seed: Annotated[int, Field(ge=0)] = 0
    replications: Annotated[int, Field(ge=1)] = 1


    @model_validator(mode="after")
    def _window(self):
        if not 0 < self.duration:
            raise ValueError("duration must be > 0")
        if self.warmup >= self.duration:
            raise ValueError(f"warmup ({self.warmup:g} s) must be shorter than duration ({self.duration:g} s)")
        return self


class TierDef(Strict):
    base: str
    scale: dict[str, Annotated[float, Field(gt=0)]] = {}
    overrides: dict[str, dict[str, Annotated[int, Field(gt=0)] | str]] = {}


class CapacityTarget(Strict):
    p95: Duration = 10.0
    success: Annotated[float, Field(gt=0, le=1)] = 0.99
    max_load: Annotated[float, Field(gt=0)] = 64.0
    tolerance: Annotated[float, Field(gt=0)] = 0.05


class RunSettings(Strict):
    jobs: Annotated[int, Field(ge=1)] | None = None
    dask: str | None = None


class Scenario(Strict):
    scenario: Meta = Meta()
    org: Org = Org()
    tiers: dict[str, TierDef] = {}
    service: dict[str, dict[str, float]] = {}
    clients: Annotated[list[Client], Field(min_length=1)]
    policies: dict[str, dict[str, Any]] = {}
    compare: dict[str, list[Any]] = {}
    capacity: CapacityTarget = CapacityTarget()
    run: RunSettings = RunSettings()

    # set by load_scenario; not part of the file
    source: str = Field(default="<scenario>", exclude=True)

    # ---- derived pieces -----------------------------------------------------------------------------
    def catalog(self) -> Catalog:
        cat = Catalog.published().copy()
        for name, t in self.tiers.items():
            try:
                cat.define_tier(name, t.base, t.scale, t.overrides)
            except ConfigError as exc:
                raise self.error(f"tiers.{name}", str(exc)) from None
        return cat

    def policy_table(self) -> dict[str, Policy]:
        table = {}
        for name, raw in {**{k: {} for k in BUILTIN_POLICIES}, **self.policies}.items():
            try:
                table[name] = resolve_policy(name, raw)
            except ConfigError as exc:
                raise self.error(f"policies.{name}.extends", str(exc)) from None
            except ValidationError as exc:
                raise _pydantic_error(self, exc, ("policies", name)) from None
        return table

    def grid(self) -> list[dict[str, Any]]:
        """The cross product of the ``[compare]`` axes, in file order ([{}] without a grid)."""
        axes = list(self.compare)
        return [dict(zip(axes, combo)) for combo in itertools.product(*(self.compare[a] for a in axes))]

    def spec(self, point: dict[str, Any] | None = None, *, duration: float | None = None) -> RunSpec:
        """Resolve one grid point into a :class:`RunSpec`, checking every model, tier and policy name."""
        point = point or {}
        org = self.org.model_dump()
        clients = [c.model_dump() for c in self.clients]
        load = 1.0
        for axis, value in point.items():
            if axis == "load":
                load = float(value)
            elif axis in ("model", "policy"):
                for c in clients:
                    c[axis] = value
            elif axis in ("charge", "refund_unused", "cache_hit_ratio"):
                org["accounting"][axis] = value
            else:
                org[axis] = value
        try:
            org_model = Org(**org)
            client_models = [Client(**c) for c in clients]
        except ValidationError as exc:
            raise _pydantic_error(self, exc, ("compare",)) from None
        catalog, policies = self.catalog(), self.policy_table()
        try:
            service = service_models(self.service)
        except ConfigError as exc:
            raise self.error("service", str(exc)) from None
        if org_model.tier not in catalog.tiers:
            where = "compare.tier" if "tier" in point else "org.tier"
            raise self.error(where, did_you_mean(org_model.tier, catalog.tiers, "tier"))
        for k, c in enumerate(client_models):
            where = f"clients[{k}]" if not point.get("model") else "compare.model"
            try:
                catalog.limits(org_model.tier, c.model)
            except ConfigError as exc:
                raise self.error(f"{where}.model", str(exc)) from None
            if c.model not in service:
                raise self.error(f"{where}.model", did_you_mean(c.model, service, "model"))
            if c.policy not in policies:
                where = f"clients[{k}]" if not point.get("policy") else "compare"
                raise self.error(f"{where}.policy", did_you_mean(c.policy, policies, "policy"))
            for fb in policies[c.policy].fallback:
                try:
                    catalog.limits(org_model.tier, fb)
                except ConfigError as exc:
                    raise self.error(f"policies.{c.policy}.fallback", str(exc)) from None
            if c.arrival.kind == "trace":
                path = Path(c.arrival.file)
                if not path.is_absolute():
                    path = Path(self.source).parent / path
                if not path.exists():
                    raise self.error(f"clients[{k}].arrival.file", f"trace file {str(path)!r} not found")
                client_models[k] = c.model_copy(update={"arrival": c.arrival.model_copy(update={"file": str(path)})})
        meta = self.scenario
        warmup = meta.warmup
        if duration is not None and duration != meta.duration:
            warmup = meta.warmup * duration / meta.duration  # a shorter run keeps the same warm-up share
        return RunSpec(clients=client_models, policies=policies, org=org_model, catalog=catalog, service=service,
                       duration=duration if duration is not None else meta.duration, warmup=warmup,
                       drain=meta.drain, load=load)

    def check(self) -> list[dict[str, Any]]:
        """Resolve every grid point (raises on the first bad one); returns the grid."""
        grid = self.grid()
        for point in grid:
            self.spec(point)
        return grid

    def error(self, key: str, message: str) -> ConfigError:
        line = _find_line(self.source, key)
        where = f"{self.source}:{line}" if line else self.source
        return ConfigError(f"{where}: {key}: {message}")


# ---- loading ----------------------------------------------------------------------------------------

def load_scenario(path: str | Path, overrides: dict[str, Any] | None = None) -> Scenario:
    """Read and validate a scenario file.  ``overrides`` (e.g. ``{"duration": "90s"}``) replace
    ``[scenario]`` settings, as the command line's ``--duration``/``--seed``/``--replications`` do."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read scenario ({exc.strerror})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return scenario_from_dict(data, source=str(path), overrides=overrides)


def scenario_from_dict(data: dict, source: str = "<scenario>", overrides: dict[str, Any] | None = None) -> Scenario:
    data = dict(data)
    if overrides:
        data["scenario"] = {**data.get("scenario", {}), **{k: v for k, v in overrides.items() if v is not None}}
    stub = Scenario.model_construct(source=source)
    _check_keys(stub, data, Scenario, ())
    for axis in data.get("compare", {}):
        if axis not in AXES:
            raise stub.error(f"compare.{axis}", did_you_mean(axis, AXES, "compare axis"))
        if not isinstance(data["compare"][axis], list) or not data["compare"][axis]:
            raise stub.error(f"compare.{axis}", "must be a non-empty list of values")
    try:
        scenario = Scenario(**data, source=source)
    except ValidationError as exc:
        raise _pydantic_error(stub, exc, ()) from None
    for unit_map in (t.scale for t in scenario.tiers.values()):
        for unit in unit_map:
            if unit not in UNITS:
                raise stub.error("tiers", did_you_mean(unit, UNITS, "limit unit"))
    for model, values in scenario.service.items():
        for key in values:
            if key not in ServiceParams.__dataclass_fields__ or key == "source":
                allowed = [f for f in ServiceParams.__dataclass_fields__ if f != "source"]
                raise stub.error(f"service.{model}.{key}", did_you_mean(key, allowed, "service parameter"))
    scenario.check()
    return scenario


def _model_of(annotation) -> type[BaseModel] | None:
    """The pydantic model class inside an annotation (through Optional, list[...], dict[str, ...])."""
    for arg in [annotation, *typing.get_args(annotation)]:
        for inner in [arg, *typing.get_args(arg)]:
            if isinstance(inner, type) and issubclass(inner, Strict):
                return inner
    return None


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
        sub = _model_of(fields[key].annotation)
        if key == "policies" and model is Scenario:
            sub = Policy
            for name, pol in (value or {}).items():
                _check_keys(stub, pol, Policy, path + (key, name))
            continue
        if sub is None:
            continue
        origin = typing.get_origin(fields[key].annotation)
        if isinstance(value, list):
            for k, item in enumerate(value):
                _check_keys(stub, item, sub, path + (key, k))
        elif isinstance(value, dict) and origin is dict:
            for name, item in value.items():
                _check_keys(stub, item, sub, path + (key, name))
        else:
            _check_keys(stub, value, sub, path + (key,))


def _path(parts: tuple) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _pydantic_error(stub: Scenario, exc: ValidationError, prefix: tuple) -> ConfigError:
    err = exc.errors()[0]
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and (p.startswith("function-") or "[" in p)))
    msg = err["msg"].removeprefix("Value error, ")
    if err.get("input") is not None and err["type"] not in ("missing",) and not isinstance(err["input"], dict):
        msg = f"{err['input']!r}: {msg}"
    return stub.error(_path(prefix + loc) or "scenario", msg)


def _find_line(source: str, key: str) -> int | None:
    """Best-effort line number of a dotted key path in a TOML file (None if not found)."""
    try:
        lines = Path(source).read_text().splitlines()
    except OSError:
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
