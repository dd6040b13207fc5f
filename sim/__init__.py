"""groqsim: a capacity simulator for the Groq API's organization rate limits.

Python API (data flows one way: scenario -> workload -> clients -> limiters/service -> records -> summaries)::

    import sim
    scenario = sim.load_scenario("scenarios/chatbot_free_vs_developer.toml")
    point = {"tier": "free", "policy": "groq-sdk"}
    result = sim.simulate(scenario.spec(point), scenario.seed(0))  # groqsim run's replication 0 of that point
    result.records           # one row per request (pandas DataFrame)
    sim.summarize(result)    # the run's metrics
    study = sim.run_study(scenario, jobs=2)   # every grid point x replication
    study.comparison         # one row per grid point, mean and 95% CI
"""
from .version import __version__
from .catalog import Catalog, Limits
from .headers import rate_limit_headers
from .limiters import ALGORITHMS, FixedWindow, SlidingLog, SlidingWindowCounter, TokenBucket
from .limitset import LimitSet
from .spec import RunSpec
from .records import OUTCOMES, RunResult
from .engine import simulate
from .summary import summarize
from .scenario import Scenario, load_scenario, scenario_from_dict
from .study import StudyResult
from .runner import run_study

__all__ = ["__version__", "Catalog", "Limits", "LimitSet", "TokenBucket", "FixedWindow", "SlidingLog",
           "SlidingWindowCounter", "ALGORITHMS", "rate_limit_headers", "RunSpec", "RunResult", "OUTCOMES",
           "simulate", "summarize", "Scenario", "load_scenario", "scenario_from_dict", "StudyResult", "run_study"]
