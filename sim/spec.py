"""One simulation run, fully resolved: the engine's whole input (no grid, no replications)."""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

import numpy as np

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
        """Checked once per run (a RunSpec built by hand, or changed with ``dataclasses.replace``): the measured
        window must hold time (``0 < duration``, ``0 <= warmup < duration``, as a scenario file says too),
        ``drain >= 0``, ``load > 0``, all finite numbers of seconds; ``clients`` a non-empty list of
        :class:`~sim.config.Client`."""
        for name in ("duration", "warmup", "drain", "load"):
            value = getattr(self, name)
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
                hint = (f" (scenario.spec(point, duration={value!r}) reads one like {value!r})"
                        if isinstance(value, str) and name == "duration" else "")
                raise TypeError(f"RunSpec: {name} {value!r} is a {type(value).__name__}: it is a number "
                                f"({'a multiplier' if name == 'load' else 'seconds'}){hint}")
        if not 0 < self.duration < math.inf:
            raise ValueError(f"RunSpec: duration {self.duration!r} must be > 0 seconds (and finite)")
        if not 0 <= self.warmup < self.duration:
            raise ValueError(f"RunSpec: warmup {self.warmup!r} must be >= 0 and shorter than duration "
                             f"({self.duration:g} s): the summaries measure [warmup, duration)")
        if not 0 <= self.drain < math.inf:
            raise ValueError(f"RunSpec: drain {self.drain!r} must be >= 0 seconds (and finite): how long the run "
                             "goes on after duration to finish what is in flight")
        if not 0 < self.load < math.inf:
            raise ValueError(f"RunSpec: load {self.load!r} must be > 0 (and finite): the multiplier of every "
                             "group's arrival rate (1: as written)")
        if not isinstance(self.clients, (list, tuple)):
            raise TypeError(f"RunSpec: clients is a list of Client, got {type(self.clients).__name__}"
                            + (" (put it in a list: [client])" if isinstance(self.clients, Client) else ""))
        if not self.clients:
            raise ValueError("RunSpec: clients is empty: a run needs at least one client group (a Client)")
        for k, c in enumerate(self.clients):
            if not isinstance(c, Client):
                hint = " (build one from a dict with sim.config.Client(**d))" if isinstance(c, dict) else ""
                raise TypeError(f"RunSpec: clients[{k}] is a {type(c).__name__}, not a Client{hint}")

    @property
    def kinds(self) -> dict[str, str]:
        """Each model's kind (``chat``, ``stt``, ``tts``): what its requests carry (:data:`sim.workload.CARRIES`)."""
        return kinds_of(self.service)
