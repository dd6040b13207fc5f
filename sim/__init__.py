"""groqsim: a capacity simulator for the Groq API's organization rate limits.

Python API (data flows one way: scenario -> workload -> clients -> limiters/service -> records -> summaries)::

    import sim
    scenario = sim.load_scenario("scenarios/chatbot_free_vs_developer.toml")
    result = sim.simulate(scenario.spec({"tier": "free", "policy": "groq-sdk"}), seed=7)
    result.records        # one row per request (pandas DataFrame)
    result.summary()      # the run's metrics
    study = sim.run_study(scenario, jobs=2)   # every grid point x replication
    study.comparison      # one row per grid point, mean and 95% CI
"""
__version__ = "0.1.0"

from .catalog import Catalog, Limits  # noqa: E402
from .headers import rate_limit_headers  # noqa: E402
from .limiters import ALGORITHMS, FixedWindow, SlidingLog, SlidingWindowCounter, TokenBucket  # noqa: E402
from .limitset import LimitSet  # noqa: E402
from .engine import RunResult, RunSpec, simulate  # noqa: E402
from .scenario import Scenario, load_scenario, scenario_from_dict  # noqa: E402
from .runner import StudyResult, run_study  # noqa: E402

__all__ = ["Catalog", "Limits", "LimitSet", "TokenBucket", "FixedWindow", "SlidingLog", "SlidingWindowCounter",
           "ALGORITHMS", "rate_limit_headers", "RunSpec", "RunResult", "simulate", "Scenario", "load_scenario",
           "scenario_from_dict", "StudyResult", "run_study"]
