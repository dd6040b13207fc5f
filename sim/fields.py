"""Field types shared by every validated shape: strict models, durations and rates parsed on the way in.

``Strict`` models forbid unknown keys (a misspelt key is an error, never silently ignored) and are frozen.
"""
from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from .units import parse_duration, parse_rate

Duration = Annotated[float, BeforeValidator(parse_duration)]
PositiveDuration = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]
Rate = Annotated[float, BeforeValidator(parse_rate)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    def written(self, name: str) -> bool:
        """Was field ``name`` given, and not as its default?  (A ``model_dump`` round trip gives every field:
        a default given changes nothing, and is not taken as the file's choice.)"""
        return name in self.model_fields_set and getattr(self, name) != type(self).model_fields[name].default

#: the largest size a request may have (tokens or audio seconds): far above any context window, and within
#: the 32-bit counts the records keep (a distribution's lognormal tail is cut there; a trace's cell above is
#: an error)
MAX_SIZE = 10_000_000


def is_whole(value) -> bool:
    """Is ``value`` an integer as the Python API takes one (a seed, an index, a count): a Python or numpy
    integer, not a bool?"""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


#: pydantic's bound errors: (operator, its ctx key)
BOUNDS = {"greater_than_equal": (">=", "ge"), "greater_than": (">", "gt"), "less_than_equal": ("<=", "le"),
          "less_than": ("<", "lt")}


def bound_message(err: dict) -> str:
    """pydantic's bound error (``err``, one of :data:`BOUNDS`' types) as a setting's message: ``must be >= 1``,
    ``must be > 0 s`` for a duration written as one ("0s"; its bound is in seconds)."""
    op, key = BOUNDS[err["type"]]
    limit = err.get("ctx", {}).get(key)
    if isinstance(limit, float) and limit.is_integer():
        limit = int(limit)  # (pydantic's ctx holds floats: 0.0 for a bound written 0)
    return f"must be {op} {limit}" + (" s" if _written_duration(err.get("input")) else "")


def _written_duration(value) -> bool:
    """Is ``value`` a duration as a file writes one ("0s", "5m"; not a bare number)?"""
    if not isinstance(value, str):
        return False
    try:
        parse_duration(value)
    except ValueError:
        return False
    return not value.strip().replace(".", "", 1).isdigit()
