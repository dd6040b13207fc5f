"""One simulation run, fully resolved: the engine's whole input (no grid, no replications)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from .catalog import Catalog
from .config import Client, Org, Policy
from .prices import Price, price_table
from .projects import Project
from .service import ServiceParams, service_models
from .service import kinds as kinds_of


@dataclass
class RunSpec:
    """Everything one simulation run needs: client groups, named policies, the org, its limits catalog and
    service table, the measured window ``[warmup, duration)``, the drain after it and a load multiplier."""
    clients: list[Client]
    policies: dict[str, Policy]
    org: Org = field(default_factory=Org)
    catalog: Catalog = field(default_factory=Catalog.published)
    service: dict[str, ServiceParams] = field(default_factory=service_models)
    prices: dict[str, Price] = field(default_factory=price_table)
    duration: float = 3600.0
    warmup: float = 0.0
    drain: float = 3600.0
    load: float = 1.0
    #: the org's projects by name (client groups name theirs in ``Client.project``)
    projects: dict[str, Project] = field(default_factory=dict)
    #: keep the lane columns and metrics (cost, 498s, jobs) even if no group uses a lane: set when this run
    #: is one alternative of a comparison of lanes, so every row of the comparison has them
    lane_report: bool = False

    def __post_init__(self):
        """The measured window must hold time: ``0 < duration``, ``0 <= warmup < duration`` (a scenario file
        says so too), all finite."""
        if not 0 < self.duration < math.inf:
            raise ValueError(f"RunSpec: duration {self.duration!r} must be > 0 seconds (and finite)")
        if not 0 <= self.warmup < self.duration:
            raise ValueError(f"RunSpec: warmup {self.warmup!r} must be >= 0 and shorter than duration "
                             f"({self.duration:g} s): the summaries measure [warmup, duration)")

    @property
    def kinds(self) -> dict[str, str]:
        """Each model's kind (``chat``, ``stt``, ``tts``): what its requests carry (:data:`sim.workload.CARRIES`)."""
        return kinds_of(self.service)
