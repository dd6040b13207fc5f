"""One row of a validation report: a known answer, where it comes from, what was measured, pass or fail."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Check:
    name: str
    source: str
    expected: str
    measured: str
    passed: bool
