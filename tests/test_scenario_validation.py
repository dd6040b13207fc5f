"""Scenario validation at its edges, in process: every refusal is ONE line naming the file, the key and what
is allowed (the whole line is asserted), every edge value just inside is accepted, and what each key becomes
in the engine's RunSpec is checked against values computed by hand from the scenario."""
import re
import warnings

import numpy as np
import pytest

from sim.cli import main
from sim.config import (BUILTIN_POLICIES, Accounting, Client, Dist, Org, Policy, PolicyError,
                        policy_table, resolve_policy)
from sim.arrivals import KINDS
from sim.errors import ConfigError, InputWarning
from sim.policies import SCHEDULES
from sim.scenario import Scenario, load_scenario, scenario_from_dict, scaled_warmup

SRC = "s.toml"  # (no such file: errors name it without a line)
#: the registries' lists, as the messages give them: a newcomer's new kind or schedule (docs/architecture.md)
#: is pinned by its own module's test (tests/test_arrivals.py, tests/test_policies.py), not by these
ARRIVAL_KINDS = ", ".join(KINDS)
BACKOFFS = ", ".join(s for s in SCHEDULES if s != "none")
MODEL = "llama-3.1-8b-instant"
C = {"name": "c", "model": MODEL, "arrival": {"kind": "poisson", "rate": "10/min"}}
POLICIES = ("no-retry, groq-sdk, openai-sdk, fixed, exponential, full-jitter, equal-jitter, decorrelated-jitter, "
            "retry-after, paced, adaptive, cooldown")
MODELS = ("allam-2-7b, groq/compound, groq/compound-mini, llama-3.1-8b-instant, llama-3.3-70b-versatile, "
          "meta-llama/llama-4-maverick-17b-128e-instruct, meta-llama/llama-4-scout-17b-16e-instruct, "
          "meta-llama/llama-guard-4-12b, meta-llama/llama-prompt-guard-2-22m, meta-llama/llama-prompt-guard-2-86m, "
          "moonshotai/kimi-k2-instruct, moonshotai/kimi-k2-instruct-0905, openai/gpt-oss-120b, openai/gpt-oss-20b, "
          "openai/gpt-oss-safeguard-20b, playai-tts, playai-tts-arabic, qwen/qwen3-32b, whisper-large-v3, "
          "whisper-large-v3-turbo")
LOAD = "is not allowed (a load multiplier is a number > 0, e.g. [0.5, 1, 2])"
PAID = ("is for paid plans, and tier 'free' bills nothing: use a billed tier (developer, or one of [tiers] with "
        "billed = true) or 'on_demand'")


@pytest.fixture(autouse=True)
def _quiet():
    """The notes a scenario's load warns (tested in tests/test_scenarios.py) are not these tests' business; any
    other warning is an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", InputWarning)
        yield


def sc(**tables):
    """A scenario of one client group ``C`` (``client=`` merges into it) and the tables given."""
    client = {**C, **tables.pop("client", {})}
    return scenario_from_dict({"clients": [client], **tables}, source=SRC)


def refused(**tables) -> str:
    with pytest.raises(ConfigError) as caught:
        sc(**tables)
    msg = str(caught.value)
    assert "\n" not in msg
    return msg


def pol(**settings):
    """The tables of a scenario whose group uses policy ``p`` with these settings."""
    return {"client": {"policy": "p"}, "policies": {"p": settings}}


# ---- refusals: the whole line --------------------------------------------------------------------------------

REFUSED = [
    # [scenario]
    ({"scenario": {"duratio": 5}}, "scenario.duratio: unknown key 'duratio' (did you mean 'duration', 'drain', "
     "'description'? allowed: name, description, duration, warmup, drain, seed, replications, speeds)"),
    ({"scenario": {"warmup": 10, "duration": 10}}, "scenario.warmup: 10: warmup (10 s) must be shorter than "
     "duration (10 s)"),
    ({"scenario": {"duration": 0}}, "scenario.duration: 0: must be > 0"),
    ({"scenario": {"seed": -1}}, "scenario.seed: -1: must be >= 0"),
    ({"scenario": {"replications": 0}}, "scenario.replications: 0: must be >= 1"),
    # [org]
    ({"org": {"error_rate": 1.1}}, "org.error_rate: 1.1: must be <= 1"),
    ({"org": {"error_rate": -0.1}}, "org.error_rate: -0.1: must be >= 0"),
    ({"org": {"error_status": 399}}, "org.error_status: 399: must be >= 400"),
    ({"org": {"error_status": 600}}, "org.error_status: 600: must be <= 599"),
    ({"org": {"accounting": {"cache_hit_ratio": -0.1}}},
     "org.accounting.cache_hit_ratio: -0.1: must be >= 0"),
    ({"org": {"accounting": {"cache_hit_ratio": 1.5}}},
     "org.accounting.cache_hit_ratio: 1.5: must be <= 1"),
    ({"org": {"limits_file": "  "}}, "org.limits_file: '  ' names no file (allowed: the path of a limits table, "
     "a CSV such as my_limits.csv, relative to the scenario's folder)"),
    ({"org": {"tier": "fre"}}, "org.tier: unknown tier 'fre' (did you mean 'free'? allowed: free, developer)"),
    ({"org": {"service_tier": "flex"}}, f"org.service_tier: service tier 'flex' {PAID}"),
    ({"client": {"service_tier": "auto"}}, f"clients[0].service_tier: service tier 'auto' {PAID}"),
    ({"compare": {"service_tier": ["on_demand", "flex"]}}, f"compare.service_tier: service tier 'flex' {PAID}"),
    # [capacity], [run]
    ({"capacity": {"success": 0}}, "capacity.success: 0: must be > 0"),
    ({"capacity": {"success": 1.01}}, "capacity.success: 1.01: must be <= 1"),
    ({"capacity": {"max_load": 0}}, "capacity.max_load: 0: must be > 0"),
    ({"capacity": {"tolerance": 1}}, "capacity.tolerance: 1: must be < 1"),
    ({"capacity": {"tolerance": 0.00009}}, "capacity.tolerance: 9e-05: must be >= 0.0001"),
    ({"capacity": {"p95": 0}}, "capacity.p95: 0: must be > 0"),
    ({"run": {"jobs": 0}}, "run.jobs: 0: must be >= 1"),
    ({"run": {"dask": "h:123456"}}, "run.dask: 'h:123456' is not a scheduler address (allowed: 'local', or "
     "host:port such as tcp://10.0.0.5:8786)"),
    # [policies]
    (pol(max_attempts=0), "policies.p.max_attempts: 0: must be >= 1"),
    (pol(retry="fixed", max_attempts=10001), "policies.p.max_attempts: 10001: must be <= 10000"),
    (pol(retry_on=[399]), "policies.p.retry_on[0]: 399: must be >= 400"),
    (pol(retry_on=[600]), "policies.p.retry_on[0]: 600: must be <= 599"),
    (pol(pacing=0), "policies.p.pacing: 0: must be > 0"),
    (pol(pacing=1.01), "policies.p.pacing: 1.01: must be <= 1"),
    (pol(max_in_flight=0), "policies.p.max_in_flight: 0: must be >= 1"),
    (pol(queue_size=-1), "policies.p.queue_size: -1: must be >= 0"),
    (pol(deadline="0s"), "policies.p.deadline: '0s': must be > 0 s"),
    (pol(timeout=0), "policies.p.timeout: 0: must be > 0"),
    (pol(base=2, cap=1), "policies.p: base 2 s is above cap 1 s (the back-off starts at base and never exceeds "
     "cap)"),
    (pol(extends="groq-sd"), f"policies.p.extends: unknown built-in policy 'groq-sd' (did you mean 'groq-sdk'? "
     f"allowed: {POLICIES})"),
    (pol(extends=3), f"policies.p.extends: 3: must be the name of a built-in policy (allowed: {POLICIES})"),
    (pol(retry="none", max_attempts=3), "policies.p.retry: 'none' makes one attempt, but max_attempts = 3: set "
     f"max_attempts = 1, or name how the retries back off (allowed: {BACKOFFS})"),
    (pol(extends="fixed", retry="none"), "policies.p.retry: 'none' makes one attempt, but max_attempts = 5 (from "
     f"extends 'fixed'): set max_attempts = 1, or name how the retries back off (allowed: {BACKOFFS})"),
    ({"client": {"policy": "p"}, "policies": {"p": {"retyr": "fixed"}}}, "policies.p.retyr: unknown key 'retyr' "
     "(did you mean 'retry', 'retry_on'? allowed: retry, max_attempts, delay, base, cap, jitter, honor_retry_after, "
     "retry_after_cap, retry_on, deadline, timeout, pacing, adaptive, cooldown, max_in_flight, queue_size, "
     "fallback)"),
    ({"client": {"policy": "groq-skd"}}, f"clients[0].policy: unknown policy 'groq-skd' (did you mean 'groq-sdk'? "
     f"allowed: {POLICIES})"),
    (pol(retry="fixed", max_attempts=2, fallback=["llama-3.1-8b-instan"]), "policies.p.fallback: unknown fallback "
     "model 'llama-3.1-8b-instan' (did you mean 'llama-3.1-8b-instant', 'llama-3.3-70b-versatile'? allowed: "
     f"{MODELS})"),
    (pol(retry="fixed", max_attempts=2, fallback=["whisper-large-v3"]), "policies.p.fallback: 'whisper-large-v3' "
     "(stt) cannot answer 'llama-3.1-8b-instant''s requests (chat): fall back to a model of the same kind"),
    # a cooldown: 'retry-after' or a duration (it said only "Input should be 'retry-after'")
    (pol(cooldown="-5s"), "policies.p.cooldown: '-5s' is not a cooldown (allowed: 'retry-after', or a duration "
     "such as 5s, 30 or 0)"),
    (pol(cooldown="retry_after"), "policies.p.cooldown: 'retry_after' is not a cooldown (allowed: 'retry-after', "
     "or a duration such as 5s, 30 or 0)"),
    (pol(cooldown=True), "policies.p.cooldown: true is not a cooldown (allowed: 'retry-after', or a duration such "
     "as 5s, 30 or 0)"),
    ({"client": {"project": ""}}, "clients[0].project: '' names no project (allowed: leave project out, or name a "
     "[projects.NAME] table)"),
    # [[clients]] sizes
    ({"client": {"prompt_tokens": -1}}, "clients[0].prompt_tokens: -1: must be >= 0"),
    # (a size written alone is named by its own key, not the fixed distribution's "value" it stands for;
    # written as a table, "value" is the file's own key)
    ({"client": {"prompt_tokens": {"dist": "fixed", "value": -1}}}, "clients[0].prompt_tokens.value: -1: must be >= 0"),
    ({"client": {"prompt_tokens": 10_000_001}}, "clients[0].prompt_tokens: 10000001: must be <= 10000000"),
    ({"client": {"prompt_tokens": {"dist": "lognormal", "median": 0, "p95": 5}}},
     "clients[0].prompt_tokens.median: 0: must be > 0"),
    ({"client": {"prompt_tokens": {"dist": "lognormal", "median": 100, "p95": 10_000_001}}},
     "clients[0].prompt_tokens.p95: 10000001: must be <= 10000000"),
    ({"client": {"prompt_tokens": float("nan")}}, "clients[0].prompt_tokens: nan: Input should be a finite "
     "number"),
    ({"client": {"prompt_tokens": "lots"}}, "clients[0].prompt_tokens: 'lots' is not a size (allowed: a number "
     "such as 200 or 2K, or a distribution such as { dist = 'uniform', low = 100, high = 400 })"),
    ({"client": {"prompt_tokens": {"dist": "fixed", "value": 1, "low": 3}}},
     "clients[0].prompt_tokens: dist 'fixed' takes value; low would be ignored"),
    # (arrivals are "constant", sizes "fixed": the word an arrival takes is said to be the wrong one here)
    ({"client": {"prompt_tokens": {"dist": "constant", "value": 100}}},
     "clients[0].prompt_tokens: unknown size distribution 'constant' (allowed: fixed, uniform, lognormal, "
     "empirical); a constant size is dist = 'fixed', value = N (or just N)"),
    ({"client": {"max_tokens": {"dist": "lognormall", "median": 100, "p95": 200}}},
     "clients[0].max_tokens: unknown size distribution 'lognormall' (did you mean 'lognormal'? allowed: fixed, "
     "uniform, lognormal, empirical)"),
    ({"client": {"prompt_tokens": {"dist": "uniform", "low": 1}}},
     "clients[0].prompt_tokens: dist 'uniform' needs low, high (missing: high)"),
    ({"client": {"prompt_tokens": {"dist": "uniform", "low": 5, "high": 4}}},
     "clients[0].prompt_tokens: uniform needs low <= high"),
    ({"client": {"prompt_tokens": {"dist": "empirical", "values": []}}},
     "clients[0].prompt_tokens: empirical needs a non-empty list of values"),
    ({"client": {"prompt_tokens": {"dist": "lognormal", "median": 100, "p95": 50}}},
     "clients[0].prompt_tokens: lognormal needs 0 < median <= upper quantile, got median=100.0, quantile=50.0"),
    ({"client": {"prompt_tokens": 2.5}}, "clients[0].prompt_tokens: 2.5 is not a whole number of tokens (allowed: "
     "a whole number such as 512, or a distribution)"),
    ({"client": {"max_tokens": {"dist": "empirical", "values": [1, 2.5]}}}, "clients[0].max_tokens: 2.5 is not a "
     "whole number of tokens (allowed: a whole number such as 512, or a distribution)"),
    ({"client": {"completion_tokens": {"dist": "uniform", "low": 1, "high": 2.5}}}, "clients[0].completion_tokens: "
     "2.5 is not a whole number of tokens (allowed: a whole number such as 512, or a distribution)"),
    ({"client": {"audio_seconds": "3"}}, "clients[0].audio_seconds: '3' is not a number of seconds (allowed: a "
     "number such as 30, or a distribution such as { dist = 'uniform', low = 5, high = 60 })"),
    ({"client": {"max_tokens": 100, "completion_tokens": 101}}, "clients[0]: completion_tokens (at least 101) is "
     "above max_tokens (at most 100): every answer would be cut to max_tokens; a completion never exceeds "
     "max_tokens"),
    ({"client": {"max_tokens": {"dist": "uniform", "low": 10, "high": 100},
                 "completion_tokens": {"dist": "empirical", "values": [300, 101]}}},
     "clients[0]: completion_tokens (at least 101) is above max_tokens (at most 100): every answer would be cut to "
     "max_tokens; a completion never exceeds max_tokens"),
    ({"client": {"lane": "batch", "arrival": {"kind": "closed", "users": 2, "think": "1s"}}},
     "clients[0]: lane 'batch' needs an open-loop arrival (batch requests are submitted as files, nobody waits on "
     "each answer): not 'closed'"),
    ({"client": {"arrival": {"kind": "poison", "rate": 1}}}, "clients[0].arrival.kind: unknown kind 'poison' (did "
     f"you mean 'poisson'? allowed: {ARRIVAL_KINDS})"),
    ({"client": {"arrival": {"rate": 1}}},
     f"clients[0].arrival.kind: required, and missing (allowed: {ARRIVAL_KINDS})"),
    ({"client": {"audio_seconds": 5}}, "clients[0].audio_seconds: 'llama-3.1-8b-instant' takes no audio: "
     "audio_seconds is for speech-to-text models (whisper-large-v3, whisper-large-v3-turbo)"),
    ({"client": {"model": "whisper-large-v3"}}, "clients[0].model: 'whisper-large-v3' is speech-to-text: its "
     "requests are audio, so the group needs audio_seconds > 0 (a text workload means nothing to it)"),
    ({"client": {"model": "whisper-large-v3", "audio_seconds": 5, "max_tokens": 5}}, "clients[0].max_tokens: "
     "'whisper-large-v3' is speech-to-text: its requests are audio (audio_seconds) and carry no tokens, so a group "
     "on it sets no prompt_tokens, max_tokens or completion_tokens"),
    ({"client": {"model": "playai-tts", "max_tokens": 5}}, "clients[0].max_tokens: 'playai-tts' is text-to-speech: "
     "its TPM/TPD count the input characters (prompt_tokens) only, so a group on it sets no max_tokens or "
     "completion_tokens"),
    ({"client": {"batch": {"submit_at": "1h"}}}, "clients[0].batch: batch settings need lane = \"batch\" (this "
     "group is served on demand, so they would be ignored)"),
    ({"client": {"project": "x"}}, "clients[0].project: no project 'x': define it as [projects.x]"),
    ({"client": {"project": "suport"}, "projects": {"support": {}}}, "clients[0].project: unknown project 'suport' "
     "(did you mean 'support'? allowed: support)"),
    ({"client": {"arrival": {"kind": "trace", "file": " "}}}, "clients[0].arrival.file: ' ' names no file (allowed: "
     "the path of a CSV or JSONL trace, relative to the scenario's folder)"),
    ({"client": {"arrival": {"kind": "trace", "file": "nope.csv"}}}, "clients[0].arrival.file: trace file "
     "'nope.csv' not found"),
    ({"client": {"model": "llama-3.1-8b-instan"}}, "clients[0].model: unknown model on tier 'free': "
     "'llama-3.1-8b-instan' (did you mean 'llama-3.1-8b-instant', 'llama-3.3-70b-versatile'? allowed: "
     f"{MODELS})"),
    # [tiers], [service], [prices], [projects]
    ({"tiers": {"x": {"base": "developer", "scale": {"tpm": 0}}}}, "tiers.x.scale.tpm: 0: must be > 0"),
    ({"tiers": {"x": {"base": "developer", "overrides": {MODEL: {"rpm": 0}}}}},
     "tiers.x.overrides.llama-3.1-8b-instant.rpm: 0: must be > 0"),
    ({"tiers": {"x": {"base": "developer", "overrides": {MODEL: {"rpd": "abc"}}}}},
     "tiers.x.overrides.llama-3.1-8b-instant.rpd: 'abc' is not a count (allowed: 30, 14.4K, 1M, or - for no limit)"),
    ({"tiers": {"x": {"base": "developer", "overrides": {MODEL: {"rpd": "1.5"}}}}},
     "tiers.x.overrides.llama-3.1-8b-instant.rpd: '1.5' is not a whole number (allowed: 30, 14.4K, 1M, or - for no "
     "limit)"),
    ({"tiers": {"developer": {"base": "free"}}}, "tiers.developer: 'developer' is a built-in tier; a custom tier "
     "needs its own name (e.g. [tiers.developer-custom] with base = 'developer')"),
    ({"tiers": {"a": {"base": "b"}, "b": {"base": "a"}}}, "tiers.a.base: 'a' -> 'b' -> 'a' is a cycle (allowed: a "
     "chain of bases that ends at a tier that exists: free, developer)"),
    ({"tiers": {"x": {"base": "develper"}}}, "tiers.x: unknown tier 'develper' (did you mean 'developer'? allowed: "
     "free, developer)"),
    ({"tiers": {"x": {"base": "developer", "overrides": {"llama-3.1-8b-instan": {"rpm": 5}}}}},
     "tiers.x.overrides.llama-3.1-8b-instan: unknown model 'llama-3.1-8b-instan' (did you mean "
     f"'llama-3.1-8b-instant', 'llama-3.3-70b-versatile'? allowed: {MODELS}); a new model also needs its speeds in "
     "[service.llama-3.1-8b-instan]"),
    ({"service": {"llama-3.1-8b-instan": {"output_tps": 5}}}, "service.llama-3.1-8b-instan: unknown model "
     "'llama-3.1-8b-instan' (did you mean 'llama-3.1-8b-instant', 'llama-3.3-70b-versatile'? allowed: "
     f"{MODELS}); a new model also needs its limits, e.g. [tiers.NAME.overrides.\"llama-3.1-8b-instan\"]"),
    ({"prices": {"llama-3.1-8b-instan": {"input_per_m": 5}}}, "prices.llama-3.1-8b-instan: unknown model "
     "'llama-3.1-8b-instan' (did you mean 'llama-3.1-8b-instant', 'llama-3.3-70b-versatile'? allowed: "
     f"{MODELS})"),
    # sections of the wrong shape
    ({"org": [1]}, "org: a list: must be a table [org]"),
    ({"org": 5}, "org: 5: must be a table [org]"),
    ({"policies": [{"a": 1}]}, "policies: a list of tables: must be a table [policies] ([policies.NAME] for each "
     "one, not [[policies]])"),
    ({"policies": []}, "policies: a list: must be a table [policies] ([policies.NAME] for each one, not "
     "[[policies]])"),
    ({"tiers": {"a": 5}}, "tiers.a: 5: must be a table [tiers.a]"),
    ({"orgs": {}}, "orgs: unknown key 'orgs' (did you mean 'org'? allowed: scenario, org, tiers, service, prices, "
     "clients, policies, compare, projects, capacity, run)"),
    ({"source": "x"}, "source: unknown key 'source' (did you mean 'service', 'prices'? allowed: scenario, org, tiers, "
     "service, prices, clients, policies, compare, projects, capacity, run)"),
    # [compare]
    ({"compare": {"tiers": ["free"]}}, "compare.tiers: unknown compare axis 'tiers' (did you mean 'tier', 'limiter'? "
     "allowed: tier, limiter, charge, refund_unused, cache_hit_ratio, bill_timed_out, error_rate, "
     "retry_after_rounding, model, policy, load, service_tier, lane, flex_multiplier, flex_failure, project_quotas)"),
    ({"compare": {"load": []}}, "compare.load: must be a non-empty list of values"),
    ({"compare": {"tier": "free"}}, "compare.tier: must be a non-empty list of values"),
    ({"compare": {"load": [1, 2, 1.0]}}, "compare.load: 1.0 is listed twice (each value of an axis once: a repeated "
     "one would be the same runs)"),
    ({"compare": {"load": [0]}}, f"compare.load: 0 {LOAD}"),
    ({"compare": {"load": [-1]}}, f"compare.load: -1 {LOAD}"),
    ({"compare": {"load": [1, float("inf")]}}, f"compare.load: inf {LOAD}"),
    ({"compare": {"load": [True]}}, f"compare.load: True {LOAD}"),
    ({"compare": {"load": ["2"]}}, f"compare.load: '2' {LOAD}"),
    ({"compare": {"tier": ["free", "fre"]}}, "compare.tier: unknown tier 'fre' (did you mean 'free'? allowed: "
     "free, developer)"),
    ({"compare": {"policy": ["no-retry", "groq-skd"]}}, "compare.policy: unknown policy 'groq-skd' (did you mean "
     f"'groq-sdk'? allowed: {POLICIES})"),
    ({"compare": {"model": [MODEL, "llama-3.1-8b-instan"]}}, "compare.model: unknown model on tier 'free': "
     "'llama-3.1-8b-instan' (did you mean 'llama-3.1-8b-instant', 'llama-3.3-70b-versatile'? allowed: "
     f"{MODELS})"),
    ({"compare": {"limiter": ["leaky"]}}, "compare.limiter: 'leaky': Input should be 'token_bucket', "
     "'fixed_window', 'sliding_log' or 'sliding_window_counter'"),
    ({"compare": {"flex_multiplier": [-1]}}, "compare.flex_multiplier: -1: must be > 0"),
    ({"compare": {"error_rate": [0.5, 2]}}, "compare.error_rate: 2: must be <= 1"),
]


@pytest.mark.parametrize("tables, said", REFUSED, ids=[m.split(":")[0] + f"-{k}" for k, (_, m) in
                                                        enumerate(REFUSED)])
def test_a_bad_value_is_one_line_naming_the_file_the_key_and_what_is_allowed(tables, said):
    assert refused(**tables) == f"{SRC}: {said}"


ACCEPTED = [  # each refusal's edge, just inside
    {"scenario": {"warmup": 9.5, "duration": 10}}, {"scenario": {"seed": 0, "replications": 1}},
    {"org": {"error_rate": 1, "error_status": 599}}, {"org": {"error_rate": 0, "error_status": 400}},
    {"org": {"accounting": {"cache_hit_ratio": 1}}}, {"org": {"accounting": {"cache_hit_ratio": 0}}},
    {"capacity": {"success": 1, "tolerance": 0.0001}}, {"capacity": {"tolerance": 0.99}},
    {"run": {"jobs": 1, "dask": "local"}}, {"run": {"dask": "tcp://10.0.0.5:8786"}},
    pol(retry="fixed", max_attempts=10000), pol(retry_on=[400, 599]), pol(pacing=1), pol(max_in_flight=1),
    pol(queue_size=0), pol(base=2, cap=2), pol(retry="exponential", max_attempts=2, base=0, cap=0),
    {"client": {"prompt_tokens": 0}}, {"client": {"prompt_tokens": 10_000_000, "max_tokens": 0}},
    {"client": {"prompt_tokens": {"dist": "uniform", "low": 5, "high": 5}}},
    {"client": {"prompt_tokens": {"dist": "lognormal", "median": 100, "p95": 100}}},
    {"client": {"max_tokens": 100, "completion_tokens": 100}},
    {"client": {"max_tokens": {"dist": "uniform", "low": 10, "high": 100},
                "completion_tokens": {"dist": "empirical", "values": [300, 100]}}},
    {"client": {"prompt_tokens": "2K", "max_tokens": np.int64(7), "completion_tokens": np.float64(3.0)}},
    {"compare": {"load": [0.001, 1e9]}},
]


@pytest.mark.parametrize("tables", ACCEPTED)
def test_each_edge_just_inside_is_accepted(tables):
    assert isinstance(sc(**tables), Scenario)


# ---- defaults: what a key left out means -----------------------------------------------------------------------

def test_a_scenario_of_one_group_has_the_documented_defaults():
    s = sc()
    dumped = s.model_dump()
    assert "source" not in dumped and s.source == SRC  # (not a file key)
    assert dumped["scenario"] == {"name": "unnamed", "description": "", "duration": 3600.0, "warmup": 0.0,
                                  "drain": 3600.0, "seed": 0, "replications": 1, "speeds": "docs"}
    assert dumped["capacity"] == {"p95": 10.0, "success": 0.99, "max_load": 64.0, "tolerance": 0.05}
    assert dumped["run"] == {"jobs": None, "dask": None}
    org = dumped["org"]
    assert {k: org[k] for k in ("tier", "limits_file", "limiter", "accounting", "retry_after_rounding",
                                "error_rate", "error_status", "service_tier", "project_quotas")} == {
        "tier": "free", "limits_file": None, "limiter": "token_bucket",
        "accounting": {"charge": "max_tokens", "refund_unused": False, "cache_hit_ratio": 0.0, "bill_timed_out": False},
        "retry_after_rounding": "ceil", "error_rate": 0.0, "error_status": 503, "service_tier": "on_demand",
        "project_quotas": True}
    client = s.clients[0]
    assert (client.prompt_tokens, client.max_tokens, client.audio_seconds) == (
        Dist(value=500), Dist(value=512), Dist(value=0))
    assert (client.completion_tokens, client.policy, client.lane, client.service_tier, client.project) == (
        None, "no-retry", "on_demand", None, None)
    assert (s.tiers, s.service, s.prices, s.policies, s.compare, s.projects) == ({}, {}, {}, {}, {}, {})


def test_a_policy_left_out_is_one_attempt_with_the_documented_settings():
    assert Policy().model_dump() == {
        "retry": "none", "max_attempts": 1, "delay": 1.0, "base": 0.5, "cap": 60.0, "jitter": "none",
        "honor_retry_after": False, "retry_after_cap": None, "retry_on": [429, 500, 502, 503], "deadline": None,
        "timeout": None, "pacing": None, "adaptive": False, "cooldown": None, "max_in_flight": None,
        "queue_size": None, "fallback": []}


SDK_RETRY_ON = [408, 409, 429] + list(range(500, 600))
FULL = {"retry": "exponential", "jitter": "full", "base": 1.0, "cap": 60.0, "max_attempts": 6}


@pytest.mark.parametrize("name, settings", [
    ("no-retry", {"retry": "none", "max_attempts": 1}),
    ("groq-sdk", {"retry": "groq-sdk", "max_attempts": 3, "base": 0.5, "cap": 8.0, "retry_on": SDK_RETRY_ON,
                  "timeout": 60.0}),
    ("openai-sdk", {"retry": "openai-sdk", "max_attempts": 3, "base": 0.5, "cap": 8.0, "retry_on": SDK_RETRY_ON,
                    "timeout": 600.0}),
    ("fixed", {"retry": "fixed", "delay": 1.0, "max_attempts": 5}),
    ("exponential", {"retry": "exponential", "base": 1.0, "cap": 60.0, "max_attempts": 6}),
    ("full-jitter", FULL),
    ("equal-jitter", {**FULL, "jitter": "equal"}),
    ("decorrelated-jitter", {**FULL, "jitter": "decorrelated"}),
    ("retry-after", {**FULL, "honor_retry_after": True}),
    ("paced", {**FULL, "honor_retry_after": True, "pacing": 0.95}),
    ("adaptive", {**FULL, "honor_retry_after": True, "adaptive": True}),
    ("cooldown", {"retry": "fixed", "delay": 1.0, "max_attempts": 6, "honor_retry_after": True,
                  "cooldown": "retry-after"}),
])
def test_each_built_in_policy_is_as_documented(name, settings):
    expected = Policy().model_dump() | settings
    assert policy_table()[name].model_dump() == expected
    assert resolve_policy(name, {}).model_dump() == expected  # (a built-in's own name extends itself)
    assert sc(client={"policy": name}).spec().policies[name].model_dump() == expected


def test_the_sdk_defaults_are_under_what_a_policy_sets_itself():
    p = resolve_policy("mine", {"retry": "groq-sdk", "max_attempts": 5, "timeout": 9})
    assert (p.max_attempts, p.base, p.cap, p.timeout, p.retry_on) == (5, 0.5, 8.0, 9.0, SDK_RETRY_ON)
    assert resolve_policy("mine", {"retry": "fixed"}).max_attempts == 1  # (no SDK: the plain default)
    assert resolve_policy("mine", {"extends": "exponential", "max_attempts": 2}).model_dump() == (
        Policy().model_dump() | {"retry": "exponential", "base": 1.0, "cap": 60.0, "max_attempts": 2})
    assert resolve_policy("fixed", {"extends": "groq-sdk"}).retry == "groq-sdk"  # (extends over the own name)
    assert list(policy_table({"mine": {"extends": "paced"}})) == [*BUILTIN_POLICIES, "mine"]
    assert policy_table({"fixed": {"delay": 3}})["fixed"].model_dump() == (
        Policy().model_dump() | {"retry": "fixed", "delay": 3.0, "max_attempts": 5})


def test_a_bad_policy_is_named_with_its_cause():
    with pytest.raises(PolicyError) as caught:
        policy_table({"mine": {"extends": "zzzz"}})
    assert (caught.value.name, str(caught.value)) == ("mine", f"policy 'mine': unknown built-in policy 'zzzz' "
                                                      f"(allowed: {POLICIES})")
    assert isinstance(caught.value.cause, ConfigError)
    with pytest.raises(PolicyError) as caught:
        policy_table({"mine": {"max_attempts": 0}})
    assert caught.value.name == "mine" and "greater than or equal to 1" in str(caught.value.cause)


# ---- Policy: inert settings and retry-after -------------------------------------------------------------------

@pytest.mark.parametrize("settings, written, notes", [
    ({"max_attempts": 2}, set(), ["no retry schedule is named (retry 'none'), yet max_attempts = 2: the retries "
                                  "back off as retry 'exponential' (base 0.5 s, cap 60 s, jitter 'none'); name the "
                                  "schedule, e.g. retry = 'exponential'"]),
    ({"max_attempts": 2}, {"retry"}, []),
    ({"max_attempts": 1}, set(), []),
    ({"retry": "fixed"}, set(), ["retry 'fixed' never runs: max_attempts = 1 (set max_attempts above 1 to retry)"]),
    ({"retry": "fixed", "max_attempts": 2}, set(), []),
    ({"retry": "fixed", "max_attempts": 2, "fallback": ["a", "b"]}, set(), [
        "fallback model 'b' never tried: max_attempts = 2 counts every attempt, a fallback hop's too (set "
        "max_attempts to at least 3 to try each model once, with retry 'fixed' and retry_on = [] for no other "
        "retry)"]),
    ({"retry": "fixed", "max_attempts": 2, "fallback": ["a", "b", "c"]}, set(), [
        "fallback models 'b', 'c' never tried: max_attempts = 2 counts every attempt, a fallback hop's too (set "
        "max_attempts to at least 4 to try each model once, with retry 'fixed' and retry_on = [] for no other "
        "retry)"]),
    ({"retry": "fixed", "max_attempts": 3, "fallback": ["a", "b"]}, set(), []),
    ({"retry": "fixed", "max_attempts": 2, "jitter": "full"}, set(), [
        "jitter 'full' has no effect with retry 'fixed' (jitter belongs to retry 'exponential')"]),
    ({"retry": "exponential", "max_attempts": 2, "jitter": "full"}, set(), []),
    ({"retry": "fixed", "max_attempts": 2, "jitter": "none"}, set(), []),
    ({"retry_after_cap": 5}, set(), ["retry_after_cap has no effect without honor_retry_after = true"]),
    ({"retry_after_cap": 5, "honor_retry_after": True}, set(), []),
    ({"retry": "exponential", "max_attempts": 2}, {"delay"}, [
        "delay has no effect with retry 'exponential' (only retry 'fixed' waits delay)"]),
    ({"retry": "fixed", "max_attempts": 2}, {"delay"}, []),
    ({"retry": "fixed", "max_attempts": 2}, {"cap"}, ["cap has no effect with retry 'fixed' (it waits delay)"]),
    ({"retry": "fixed", "max_attempts": 2}, {"base", "cap", "delay"}, [
        "base and cap have no effect with retry 'fixed' (it waits delay)"]),
    ({"retry": "exponential", "max_attempts": 2}, {"base", "cap"}, []),
])
def test_inert_settings_are_said_exactly(settings, written, notes):
    assert Policy(**settings).inert(written) == notes


@pytest.mark.parametrize("settings, reads", [
    ({"cooldown": "retry-after"}, True),
    ({"cooldown": 5}, False),
    ({"retry": "fixed", "max_attempts": 2, "honor_retry_after": True}, True),
    ({"retry": "fixed", "max_attempts": 1, "honor_retry_after": True}, False),
    ({"retry": "fixed", "max_attempts": 2, "honor_retry_after": True, "retry_on": [500]}, False),
    ({"retry": "fixed", "max_attempts": 2}, False),
    ({"retry": "exponential", "max_attempts": 2}, False),
    ({"retry": "groq-sdk"}, True),  # obeys retry-after
    ({"retry": "openai-sdk"}, True),  # gives up above a retry-after
    ({"retry": "groq-sdk", "max_attempts": 1}, False),
])
def test_a_policy_reads_retry_after_when_it_acts_on_it(settings, reads):
    assert Policy(**settings).reads_retry_after() is reads


# ---- Dist, Accounting -------------------------------------------------------------------------------------------

def test_a_size_is_a_number_a_count_or_a_distribution():
    assert Dist.model_validate(7) == Dist(dist="fixed", value=7.0)
    assert Dist.model_validate(np.int64(7)) == Dist(value=7.0)
    assert Dist.model_validate(np.float32(2.5)) == Dist(value=2.5)
    assert Dist.model_validate("2K") == Dist(value=2000.0)
    assert Dist.model_validate("1.5M") == Dist(value=1_500_000.0)
    assert Dist.model_validate({"dist": "uniform", "low": 1, "high": 3}) == Dist(dist="uniform", low=1, high=3)
    for bad in (True, None, [1]):
        with pytest.raises(ValueError):
            Dist.model_validate(bad)
    # the same counts inside a distribution, as the README allows "in a token size" (they were refused there)
    assert Dist.model_validate({"dist": "fixed", "value": "2K"}) == Dist(value=2000.0)
    assert Dist.model_validate({"dist": "uniform", "low": "1K", "high": "1.5K"}) == Dist(dist="uniform", low=1000,
                                                                                         high=1500)
    assert Dist.model_validate({"dist": "lognormal", "median": "2K", "p95": "5K"}) == Dist(dist="lognormal",
                                                                                           median=2000, p95=5000)
    assert Dist.model_validate({"dist": "empirical", "values": ["1K", 300]}).values == [1000, 300]
    for bad in ("2X", "-", "", "1.5"):  # not a count; no limit is no size; a count is whole
        with pytest.raises(ValueError, match=rf"{re.escape(repr(bad))} is not a size \(allowed: a number such as "
                                             r"200, or a count such as 2K or 1.5M\)"):
            Dist.model_validate({"dist": "fixed", "value": bad})
    with pytest.raises(ValueError, match="greater than 0"):
        Dist.model_validate({"dist": "lognormal", "median": "0", "p95": "5K"})


def test_a_distributions_bounds_and_mean():
    rng = np.random.default_rng(0)
    fixed, uniform = Dist(value=7), Dist(dist="uniform", low=2, high=10)
    emp, logn = Dist(dist="empirical", values=[5, 1, 9, 1]), Dist(dist="lognormal", median=100, p95=400)
    assert (fixed.bounds(), uniform.bounds(), emp.bounds(), logn.bounds()) == (
        (7, 7), (2, 10), (1, 9), (0.0, 10_000_000.0))
    sigma = np.log(4) / 1.6448536269514722
    assert (fixed.mean(), uniform.mean(), emp.mean()) == (7.0, 6.0, 4.0)
    assert logn.mean() == pytest.approx(100 * np.exp(sigma ** 2 / 2), rel=1e-9)
    assert fixed.sample(rng, 3).tolist() == [7.0, 7.0, 7.0]
    u = uniform.sample(rng, 2000)
    assert u.min() >= 2 and u.max() < 10 and abs(u.mean() - 6) < 0.2
    e = emp.sample(rng, 2000)
    assert set(e.tolist()) == {1.0, 5.0, 9.0} and abs(e.mean() - 4) < 0.3
    x = logn.sample(rng, 20000)
    assert np.median(x) == pytest.approx(100, rel=0.05) and np.quantile(x, 0.95) == pytest.approx(400, rel=0.07)
    huge = Dist(dist="lognormal", median=9_000_000, p95=10_000_000).sample(rng, 1000)
    assert huge.max() == 10_000_000.0  # the tail is cut at the largest size


def test_what_an_admitted_request_is_charged():
    assert Accounting().charged(100, 50, 20) == 150
    assert Accounting(charge="actual").charged(100, 50, 20) == 120
    assert Accounting(cache_hit_ratio=0.25).charged(101, 50, 20) == 76 + 50  # 75.75 uncached, rounded
    assert Accounting(cache_hit_ratio=1.0).charged(100, 50, 20) == 50
    assert Accounting(cache_hit_ratio=0.25).prefilled("chat") == 0.75
    assert Accounting().prefilled("chat") == 1.0
    # a text-to-speech request's characters are not a cached prompt: all charged, all synthesised
    assert Accounting(cache_hit_ratio=0.5).charged(1000, 0, 0, False) == 1000
    assert Accounting(cache_hit_ratio=0.5).prefilled("tts") == 1.0
    mixed = Accounting(cache_hit_ratio=0.5).charged(np.array([1000, 1000]), 0, 0, np.array([True, False]))
    assert mixed.tolist() == [500, 1000]
    assert (Accounting(refund_unused=True).refunds, Accounting(refund_unused=True, charge="actual").refunds,
            Accounting().refunds, Accounting(charge="actual").refunds) == (True, False, False, False)


def test_a_client_and_an_org_built_in_python_check_the_same():
    rate = {"kind": "poisson", "rate": 1}
    with pytest.raises(ValueError, match="is not a whole number of tokens"):
        Client(name="c", model=MODEL, arrival=rate, max_tokens=1.5)
    assert Client(name="c", model=MODEL, arrival=rate, completion_tokens=None).completion_tokens is None
    assert Org(limits_file="x.csv").limits_file == "x.csv"
    with pytest.raises(ValueError, match="names no file"):
        Org(limits_file="")


# ---- scenario -> RunSpec ---------------------------------------------------------------------------------------

DEV = {"org": {"tier": "developer"}}


@pytest.mark.parametrize("axis, value, field, expected", [
    ("tier", "free", ("org", "tier"), "free"),
    ("limiter", "sliding_log", ("org", "limiter"), "sliding_log"),
    ("charge", "actual", ("org", "accounting", "charge"), "actual"),
    ("refund_unused", True, ("org", "accounting", "refund_unused"), True),
    ("cache_hit_ratio", 0.5, ("org", "accounting", "cache_hit_ratio"), 0.5),
    ("error_rate", 0.1, ("org", "error_rate"), 0.1),
    ("retry_after_rounding", "floor", ("org", "retry_after_rounding"), "floor"),
    ("service_tier", "flex", ("org", "service_tier"), "flex"),
    ("flex_multiplier", 2, ("org", "flex", "multiplier"), 2.0),
    ("flex_failure", 0.25, ("org", "flex", "scarce_failure"), 0.25),
    ("project_quotas", False, ("org", "project_quotas"), False),
])
def test_each_org_axis_sets_its_field_of_the_runs_org(axis, value, field, expected):
    s = sc(**DEV, client={"service_tier": "flex"})
    spec = s.spec({axis: value}) if axis != "tier" else sc(client={}).spec({axis: value})
    got = spec.org.model_dump()
    for part in field[1:]:
        got = got[part]
    assert got == expected
    assert spec.load == 1.0 and spec.duration == 3600.0


def test_the_client_axes_set_every_groups_model_policy_and_lane_and_load_scales_the_rates():
    s = scenario_from_dict({**DEV, "clients": [C, {**C, "name": "d", "model": "openai/gpt-oss-20b",
                                                     "policy": "fixed"}]}, source=SRC)
    spec = s.spec({"model": "qwen/qwen3-32b", "policy": "groq-sdk", "lane": "batch", "load": 2.5})
    assert [(c.name, c.model, c.policy, c.lane) for c in spec.clients] == [
        ("c", "qwen/qwen3-32b", "groq-sdk", "batch"), ("d", "qwen/qwen3-32b", "groq-sdk", "batch")]
    assert spec.load == 2.5
    assert [(c.model, c.policy, c.lane) for c in s.spec().clients] == [
        (MODEL, "no-retry", "on_demand"), ("openai/gpt-oss-20b", "fixed", "on_demand")]
    assert s.spec().load == 1.0
    assert s.spec({"load": 3}).load == 3.0 and isinstance(s.spec({"load": 3}).load, float)


def test_a_grid_point_is_the_cross_product_in_file_order_and_its_number_is_its_spec():
    s = sc(**DEV, compare={"policy": ["no-retry", "fixed", "groq-sdk"], "load": [1, 2]})
    grid = s.grid()
    assert grid == [{"policy": p, "load": x} for p in ("no-retry", "fixed", "groq-sdk") for x in (1, 2)]
    assert s.check() == grid
    assert s.point(5) == {"policy": "groq-sdk", "load": 2} and s.point(np.int64(0)) == grid[0]
    spec = s.spec(3)
    assert (spec.clients[0].policy, spec.load) == ("fixed", 2.0)
    assert sc().grid() == [{}] and sc().point(0) == {}
    with pytest.raises(ConfigError) as caught:
        s.point(6)
    assert str(caught.value) == ("point(6): s.toml has 6 grid point(s), numbered 0 to 5 (scenario.grid() lists "
                                 "them)")
    with pytest.raises(ConfigError) as caught:
        s.point(-1, source="x.toml")
    assert str(caught.value) == "--point -1: x.toml has 6 grid point(s), numbered 0 to 5 (groqsim check lists them)"
    with pytest.raises(TypeError) as caught:
        s.point(1.0)
    assert str(caught.value) == "point(1.0): a grid point's number is a whole number from 0 to 5, not float"
    with pytest.raises(ConfigError) as caught:
        s.spec(6)
    assert "numbered 0 to 5" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        s.spec("x")
    assert str(caught.value) == ("s.toml: spec('x'): a grid point is a dict of axis -> value, e.g. {'policy': "
                                 "'no-retry', 'load': 1}, or its number in grid() (0 to 5)")
    with pytest.raises(ConfigError) as caught:
        sc().spec(1.5)
    assert str(caught.value) == ("s.toml: spec(1.5): a grid point is a dict of axis -> value, e.g. {'tier': "
                                 "'free'}, or its number in grid() (0 to 0)")


@pytest.mark.parametrize("point, said", [
    ({"load": 0}, "load 0 is not allowed (a load multiplier is a number > 0, e.g. 0.5 or 2)"),
    ({"load": -2}, "load -2 is not allowed (a load multiplier is a number > 0, e.g. 0.5 or 2)"),
    ({"load": float("inf")}, "load inf is not allowed (a load multiplier is a number > 0, e.g. 0.5 or 2)"),
    ({"load": True}, "load True is not allowed (a load multiplier is a number > 0, e.g. 0.5 or 2)"),
    ({"load": "2"}, "load '2' is not allowed (a load multiplier is a number > 0, e.g. 0.5 or 2)"),
    ({"tiers": "free"}, "unknown compare axis 'tiers' (did you mean 'tier', 'limiter'? allowed: tier, limiter, "
     "charge, refund_unused, cache_hit_ratio, bill_timed_out, error_rate, retry_after_rounding, model, policy, load, "
     "service_tier, lane, flex_multiplier, flex_failure, project_quotas)"),
])
def test_a_bad_grid_point_given_to_spec_is_one_line(point, said):
    with pytest.raises(ConfigError) as caught:
        sc().spec(point)
    assert str(caught.value) == f"s.toml: grid point: {said}"


def test_a_load_just_above_zero_and_a_numpy_load_are_taken():
    assert sc().spec({"load": 1e-9}).load == 1e-9
    assert sc().spec({"load": np.float64(0.5)}).load == 0.5


def test_a_duration_given_to_spec_keeps_the_warmups_share():
    s = sc(scenario={"duration": "10m", "warmup": "1m", "drain": "2m"})
    spec = s.spec()
    assert (spec.duration, spec.warmup, spec.drain) == (600.0, 60.0, 120.0)
    assert (s.spec(duration="5m").duration, s.spec(duration="5m").warmup) == (300.0, 30.0)
    assert (s.spec(duration=1200).duration, s.spec(duration=1200).warmup) == (1200.0, 120.0)
    assert (s.spec(duration=np.int64(600)).duration, s.spec(duration=600).warmup) == (600.0, 60.0)
    assert s.run_duration(None) is None and s.run_duration("90s") == 90.0 and s.run_duration(0.5) == 0.5
    assert scaled_warmup(60.0, 600.0, 300.0) == 30.0
    for bad, said in [("soon", "s.toml: duration: 'soon' is not a duration (allowed: a number of seconds, or like "
                       "90s, 15m, 2h, 1d, 2m59.56s, 500ms)"),
                      (0, "s.toml: duration 0.0: must be > 0 seconds (e.g. 600 or '10m')"),
                      ("0s", "s.toml: duration '0s': must be > 0 seconds (e.g. 600 or '10m')")]:
        with pytest.raises(ConfigError) as caught:
            s.spec(duration=bad)
        assert str(caught.value) == said


@pytest.mark.parametrize("compare, lanes", [
    ({}, False), ({"load": [1, 2]}, False), ({"tier": ["developer"]}, False), ({"service_tier": ["on_demand"]}, True),
    ({"lane": ["on_demand"]}, True), ({"flex_multiplier": [10]}, True), ({"flex_failure": [0.5]}, True),
    ({"project_quotas": [True]}, True),
])
def test_a_comparison_of_lanes_reports_lane_metrics_in_every_run(compare, lanes):
    assert sc(**DEV, compare=compare).spec().lane_report is lanes


def test_a_groups_sizes_become_the_specs_and_a_speech_model_carries_only_what_its_kind_takes():
    spec = sc(client={"prompt_tokens": "2K", "max_tokens": 300, "completion_tokens": 100}).spec()
    c = spec.clients[0]
    assert (c.prompt_tokens, c.max_tokens, c.completion_tokens) == (Dist(value=2000), Dist(value=300),
                                                                     Dist(value=100))
    stt = sc(client={"model": "whisper-large-v3", "audio_seconds": 30}).spec().clients[0]
    assert (stt.prompt_tokens, stt.max_tokens, stt.completion_tokens, stt.audio_seconds) == (
        Dist(value=0), Dist(value=0), None, Dist(value=30))
    tts = sc(client={"model": "playai-tts", "prompt_tokens": 80}).spec().clients[0]
    assert (tts.prompt_tokens, tts.max_tokens, tts.completion_tokens) == (Dist(value=80), Dist(value=0), None)
    zero = sc(client={"model": "playai-tts", "max_tokens": 0}).spec().clients[0]  # (nothing carried: allowed)
    assert zero.max_tokens == Dist(value=0)


def test_the_specs_policies_tiers_service_prices_and_projects_are_the_scenarios(tmp_path):
    s = sc(**DEV, client={"policy": "mine", "project": "support"},
           policies={"mine": {"extends": "fixed", "max_attempts": 3}},
           tiers={"big": {"base": "developer", "scale": {"tpm": 2}}},
           service={MODEL: {"output_tps": 123}}, prices={MODEL: {"input_per_m": 0.5}},
           projects={"support": {"limits": {MODEL: {"rpm": 7}}}})
    spec = s.spec()
    assert spec.policies["mine"].model_dump() == Policy().model_dump() | {"retry": "fixed", "delay": 1.0,
                                                                         "max_attempts": 3}
    assert set(spec.policies) == {*BUILTIN_POLICIES, "mine"}
    dev = spec.catalog.limits("developer", MODEL)
    assert spec.catalog.limits("big", MODEL).tpm == 2 * dev.tpm and spec.catalog.limits("big", MODEL).rpm == dev.rpm
    assert spec.service[MODEL].output_tps == 123
    assert spec.prices[MODEL].input_per_m == 0.5
    assert spec.projects["support"].limits == {MODEL: {"rpm": 7}}
    assert spec.clients[0].project == "support"


# ---- files: load_scenario, the line of a key, overrides, the command ------------------------------------------

CLIENT_TOML = "[[clients]]\nname = 'c'\nmodel = 'llama-3.1-8b-instant'\narrival = { kind = 'poisson', rate = 1 }\n"


def write(tmp_path, text, name="s.toml"):
    path = tmp_path / name
    path.write_text(text) if isinstance(text, str) else path.write_bytes(text)
    return path


def load_refused(path, overrides=None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_scenario(path, overrides)
    return str(caught.value)


@pytest.mark.parametrize("text, line, said", [
    ("# c\n[scenario]\nname = 'a # b'  # seed = 1\n\n[org]\ntier = 'fre'\n" + CLIENT_TOML, 6,
     "org.tier: unknown tier 'fre' (did you mean 'free'? allowed: free, developer)"),
    (CLIENT_TOML + "[org]\n# tier = 'x'\ntier = \"fre\"\n", 7,
     "org.tier: unknown tier 'fre' (did you mean 'free'? allowed: free, developer)"),
    (CLIENT_TOML + CLIENT_TOML.replace("'c'", "'d'") + "prompt_tokens = 'lots'\n", 9,
     "clients[1].prompt_tokens: 'lots' is not a size (allowed: a number such as 200 or 2K, or a distribution such "
     "as { dist = 'uniform', low = 100, high = 400 })"),
    (CLIENT_TOML + "[policies.mine]\nextends = 'fixed'\nmax_attempts = 0\n", 7,
     "policies.mine.max_attempts: 0: must be >= 1"),
    (CLIENT_TOML + "[org.accounting]\ncharge = 'all'\n", 6,
     "org.accounting.charge: 'all': Input should be 'max_tokens' or 'actual'"),
    ("[scenario]\nname = \"say \\\"#\\\" \" # x\nduraton = 5\n" + CLIENT_TOML, 3,
     "scenario.duraton: unknown key 'duraton' (did you mean 'duration', 'drain', 'description'? "
     "allowed: name, description, duration, warmup, drain, seed, replications, speeds)"),
    ("[scenario]\nname = 'x'\n\n[org]\ntier = 'free'\nlimitter = 'token_bucket'\n" + CLIENT_TOML, 6,
     "org.limitter: unknown key 'limitter' (did you mean 'limiter', 'limits_file', "
     "'tier'? allowed: tier, limits_file, limiter, "
     "accounting, retry_after_rounding, error_rate, error_status, service_tier, flex, batch, project_quotas)"),
])
def test_an_error_in_a_file_names_its_line(tmp_path, text, line, said):
    path = write(tmp_path, text)
    assert load_refused(path) == f"{path}:{line}: {said}"


def test_a_key_not_found_in_the_file_is_named_without_a_line(tmp_path):
    path = write(tmp_path, "[scenario]\nduration = '10m'\n")  # (no client: 'clients' is nowhere)
    assert load_refused(path) == (f"{path}: clients: a scenario needs at least one [[clients]] group (name, "
                                     "model, arrival, prompt_tokens, ...; see README)")


def test_a_file_that_is_not_a_scenario_is_one_line(tmp_path):
    missing = tmp_path / "missing.toml"
    assert load_refused(missing) == f"{missing}: cannot read scenario (No such file or directory)"
    path = write(tmp_path, b"[scenario]\nname = '\xff'\n")
    assert load_refused(path) == f"{path}: not a scenario: not UTF-8 text (byte 19); expected a TOML file"
    path = write(tmp_path, "[scenario\n")
    assert load_refused(path) == (f"{path}: not valid TOML: Expected ']' at the end of a table declaration (at line "
                                  "1, column 10)")
    # what tomllib lets through as Python errors: an integer past int()'s digits, nesting past the recursion
    path = write(tmp_path, "[scenario]\nseed = 1" + "0" * 5000 + "\n")
    assert load_refused(path) == f"{path}: not valid TOML: an integer of more than 4300 digits"
    for deep in ("x = " + "[" * 5000 + "]" * 5000, "x = " + "{a=" * 5000 + "1" + "}" * 5000):
        path = write(tmp_path, "[scenario]\n" + deep + "\n")
        assert load_refused(path) == f"{path}: not valid TOML: arrays or tables nested too deep"
    bom = write(tmp_path, b"\xef\xbb\xbf[scenario]\nduration = '10m'\n" + CLIENT_TOML.encode(), "bom.toml")
    assert load_scenario(bom).scenario.duration == 600.0
    assert load_scenario(str(bom)).source == str(bom)
    for bad, said in [({}, "load_scenario(path): takes the path of a TOML file, got a dict: for a scenario held as a "
                           "dict, use sim.scenario_from_dict(data)"),
                      (3, "load_scenario(path): takes the path of a TOML file (a str or Path), got int 3")]:
        with pytest.raises(TypeError) as caught:
            load_scenario(bad)
        assert str(caught.value) == said
    with pytest.raises(TypeError) as caught:
        load_scenario(bom, overrides=[1])
    assert str(caught.value) == ("load_scenario(overrides=...): a dict of [scenario] settings such as "
                                 "{'duration': '90s'}, got list")


@pytest.mark.parametrize("args, said", [
    (("a.toml",), "scenario_from_dict(data): takes a dict of the scenario's tables (as its TOML file parses to), got "
                  "str: for a scenario file, use sim.load_scenario(path)"),
    (([1],), "scenario_from_dict(data): takes a dict of the scenario's tables (as its TOML file parses to), got list"),
    (({}, 3), "scenario_from_dict(source=...): the name errors give the scenario, a str, got int 3"),
    (({}, "s", [1]), "scenario_from_dict(overrides=...): a dict of [scenario] settings such as {'duration': '90s'}, "
                     "got list"),
])
def test_scenario_from_dict_says_what_it_takes(args, said):
    with pytest.raises(TypeError) as caught:
        scenario_from_dict(*args)
    assert str(caught.value) == said


SCENARIO_10M = "[scenario]\nduration = '10m'\nwarmup = '1m'\n" + CLIENT_TOML


@pytest.mark.parametrize("text, overrides, duration, warmup, seed", [
    (SCENARIO_10M, {"duration": "5m"}, 300.0, 30.0, 0),
    (SCENARIO_10M, {"duration": "5m", "warmup": "10s"}, 300.0, 10.0, 0),
    (SCENARIO_10M, {"duration": None, "seed": 5}, 600.0, 60.0, 5),
    (SCENARIO_10M, {}, 600.0, 60.0, 0),
    ("[scenario]\nwarmup = '6m'\n" + CLIENT_TOML, {"duration": "20m"}, 1200.0, 120.0, 0),  # (from the default 1h)
    ("[scenario]\nduration = '10m'\nwarmup = 0\n" + CLIENT_TOML, {"duration": "1m"}, 60.0, 0.0, 0),
    ("[scenario]\nduration = 'x'\nwarmup = '1m'\n" + CLIENT_TOML, {"duration": "20m"}, 1200.0, 60.0, 0),
])
def test_overrides_replace_scenario_settings_and_a_new_duration_keeps_the_warmups_share(
        tmp_path, text, overrides, duration, warmup, seed):
    meta = load_scenario(write(tmp_path, text), overrides).scenario
    assert (meta.duration, meta.warmup, meta.seed) == (duration, warmup, seed)


def test_an_overridden_keys_error_says_it_came_from_the_overrides(tmp_path):
    path = write(tmp_path, SCENARIO_10M)
    assert load_refused(path, {"duration": "x"}) == (
        f"{path}: scenario.duration (from overrides, not the file): 'x' is not a duration (allowed: a number of "
        "seconds, or like 90s, 15m, 2h, 1d, 2m59.56s, 500ms)")
    assert load_refused(path, {"seed": -1, "duration": None}) == (
        f"{path}: scenario.seed (from overrides, not the file): -1: must be >= 0")
    assert load_refused(path, {"warmup": "20m"}) == (
        f"{path}: scenario.warmup (from overrides, not the file): '20m': warmup (1200 s) must be shorter than "
        "duration (600 s)")
    assert load_refused(path, {"duration": None, "warmup": None, "replications": 0}) == (
        f"{path}: scenario.replications (from overrides, not the file): 0: must be >= 1")


@pytest.mark.parametrize("text, said", [
    ("[scenario]\nduration = '2m'\n" + CLIENT_TOML + "[org]\ntier = 'fre'\n",
     "{path}:8: org.tier: unknown tier 'fre' (did you mean 'free'? allowed: free, developer)"),
    ("[scenario]\ndurration = '2m'\n" + CLIENT_TOML,
     "{path}:2: scenario.durration: unknown key 'durration' (did you mean 'duration', 'drain', "
     "'description'? allowed: name, description, duration, warmup, drain, seed, replications, speeds)"),
    ("[scenario]\nduration = '2m'\n" + CLIENT_TOML + "[compare]\nload = [1, 0]\n",
     f"{{path}}:8: compare.load: 0 {LOAD}"),
])
def test_the_command_exits_2_with_one_line_naming_file_line_and_key(tmp_path, capsys, text, said):
    path = write(tmp_path, text)
    capsys.readouterr()
    assert main(["check", str(path)]) == 2
    out, err = capsys.readouterr()
    assert err == f"groqsim: error: {said.format(path=path)}\n" and out == ""


# ---- traces, sizes, seeds ------------------------------------------------------------------------------------

TRACE = "timestamp,model,prompt_tokens,max_tokens\n1,openai/gpt-oss-20b,5,5\n50,,5,5\n100,qwen/qwen3-32b,5,5\n"


def trace_scenario(tmp_path, extra=""):
    write(tmp_path, TRACE, "t.csv")
    return load_scenario(write(tmp_path, "[scenario]\nduration = '70s'\n[[clients]]\nname = 'c'\n"
                                         "model = 'llama-3.1-8b-instant'\n"
                                         "arrival = { kind = 'trace', file = 't.csv' }\n" + extra))


def test_a_trace_is_read_from_the_scenarios_folder_and_its_models_are_the_groups(tmp_path):
    s = trace_scenario(tmp_path)
    assert s.client_models() == {MODEL, "openai/gpt-oss-20b", "qwen/qwen3-32b"}  # (the row without one: the group's)
    assert s.used_models() == s.client_models()
    assert s.spec().clients[0].arrival.file == str(tmp_path / "t.csv")
    assert s.path_of("t.csv") == tmp_path / "t.csv" and s.path_of("/x/y.csv").as_posix() == "/x/y.csv"
    assert s.trace_notes() == ["note: clients.c: a run of 1m10s replays 2 of the 3 rows of t.csv (the trace runs to "
                               "1m40s); the rest are not sent"]
    assert s.trace_notes(100.5) == []
    assert s.trace_notes(0.5) == ["warning: clients.c: none of the 3 rows of t.csv falls in a run of 0.5s (the first "
                                  "is at 1s): nothing is replayed; raise duration or shift the trace's timestamps"]
    assert s.size() == (1, 2.0) and s.size(100) == (1, 2.0) and s.size(101) == (1, 3.0)


def test_a_traces_rows_at_a_lower_load_come_later(tmp_path):
    s = trace_scenario(tmp_path, "[compare]\nload = [1, 0.5]\n")
    assert s.trace_notes() == ["note: clients.c: a run of 1m10s at load 0.5 replays 1 of the 3 rows of t.csv (the "
                               "trace runs to 3m20s); the rest are not sent"]
    assert s.size() == (2, 2.0 + 1.0)


def test_a_trace_whose_models_are_all_named_does_not_add_the_groups(tmp_path):
    write(tmp_path, "timestamp,model\n1,openai/gpt-oss-20b\n", "t.csv")
    s = load_scenario(write(tmp_path, "[[clients]]\nname = 'c'\nmodel = 'llama-3.1-8b-instant'\n"
                                      "arrival = { kind = 'trace', file = 't.csv' }\n"))
    assert s.client_models() == {"openai/gpt-oss-20b"}
    write(tmp_path, "timestamp,prompt_tokens\n1,5\n", "t.csv")
    assert s.client_models() == {MODEL}


def test_a_traces_unknown_model_is_named_by_its_file_line_and_column(tmp_path):
    """The line is that of the model's first row in the file (line 2 here, though line 3's row comes first in time)."""
    write(tmp_path, "timestamp,model\n5,llama-3.1-8b-instan\n1,llama-3.1-8b-instan\n2,llama-3.1-8b-instant\n",
          "t.csv")
    path = write(tmp_path, "[[clients]]\nname = 'c'\nmodel = 'llama-3.1-8b-instant'\n"
                           "arrival = { kind = 'trace', file = 't.csv' }\n")
    assert load_refused(path) == (f"{tmp_path / 't.csv'}:2: column model: unknown model on tier 'free': "
                                  "'llama-3.1-8b-instan' (did you mean 'llama-3.1-8b-instant', "
                                  f"'llama-3.3-70b-versatile'? allowed: {MODELS})")


def test_the_size_of_a_study_is_its_runs_and_requests():
    poisson = sc(scenario={"replications": 3}, compare={"load": [0.5, 1]},
                 client={"arrival": {"kind": "poisson", "rate": "60/min"}})
    assert poisson.size(100) == (6, 3 * (0.5 + 1) * 100)
    assert poisson.size() == (6, 3 * (0.5 + 1) * 3600)
    closed = sc(client={"arrival": {"kind": "closed", "users": 3, "think": "10s"}})
    assert closed.size(100) == (1, 3 * (1 + 100 / 10.05))  # (each user: a think time and the quickest answer)
    fast = sc(client={"arrival": {"kind": "closed", "users": 3, "think": "0s"}})
    assert fast.size(100) == (1, 3 * (1 + 100 / 0.05))  # (a refusal comes back in a round trip: 20 a second)
    crowd = sc(client={"arrival": {"kind": "closed", "users": 2_000_000, "think": "1000d"}})
    assert crowd.size(100)[1] > 2_000_000  # (two million users are two million processes, whatever they send)
    scaled = sc(compare={"load": [1, 100]}, client={"arrival": {"kind": "closed", "users": 3, "think": "10s"}})
    assert scaled.size(100) == (2, pytest.approx((3 + 300) * (1 + 100 / 10.05)))  # (users x load of them)
    grid = sc(compare={"policy": ["no-retry", "fixed"]}, client={"arrival": {"kind": "poisson", "rate": 1}})
    assert grid.size(10) == (2, 2 * 10)


def test_a_closed_loop_that_a_load_does_not_scale_exactly_is_noted():
    s = sc(client={"arrival": {"kind": "closed", "users": 3, "think": "10s"}},
           compare={"load": [0.5, 1, 1.1, 0.1, 0.2, 2]})
    assert s.setting_notes() == ["note: clients.c: a closed loop runs whole users, at least one (users = 3 x load, "
                                 "rounded): load 0.5 runs 2 users; load 1.1 runs 3 users; load 0.1, 0.2 run 1 user "
                                 "(the same runs)"]
    assert sc(client={"arrival": {"kind": "closed", "users": 4, "think": "10s"}},
              compare={"load": [0.5, 0.25, 2]}).setting_notes() == []


def test_a_duration_given_on_the_command_line_says_what_the_warm_up_becomes():
    """--duration scales the warm-up with it (its share of the run kept): said, as the file's own values
    would read otherwise (a 2 m warm-up and a 1 m duration in the file are refused)."""
    s = sc(scenario={"duration": "30m", "warmup": "2m"})
    assert s.setting_notes(60.0) == ["note: scenario.warmup: 2m of the file's 30m keeps its share of --duration 1m: "
                                     "a warm-up of 4s"]
    assert s.spec(s.grid()[0], duration=60.0).warmup == 4.0
    assert s.setting_notes() == s.setting_notes(1800.0) == []  # the file's own duration: nothing scaled
    assert sc(scenario={"duration": "30m"}).setting_notes(60.0) == []  # no warm-up to scale
    [short] = sc(scenario={"duration": "30m", "warmup": "0.5s"}).setting_notes(900.0)  # (below a second too)
    assert short.endswith("a warm-up of 0.25s")


def test_replication_seeds_are_the_scenarios_seed_spawned_by_replication():
    s = sc(scenario={"seed": 7, "replications": 2})
    seq = s.seed(3)
    assert (seq.entropy, seq.spawn_key) == (7, (3,))
    assert s.seed(np.int64(0)).spawn_key == (0,)
    for bad, kind in [(-1, ValueError), (1.0, TypeError), (True, TypeError)]:
        with pytest.raises(kind) as caught:
            s.seed(bad)
        assert str(caught.value) == (f"seed(replication={bad!r}): a replication is a whole number >= 0 (replication "
                                     "k of `groqsim run` is seed(k); this scenario runs 2)")


# ---- more refusals: nested keys, tiers, service, prices, projects, flex ------------------------------------------

MORE_REFUSED = [
    ({"client": {"arrival": {"kind": "poisson", "rat": 1}}}, "clients[0].arrival.rat: unknown key 'rat' (did you mean "
     "'rate'? allowed: kind, rate)"),
    ({"client": {"arrival": {"kind": "closed", "users": 1, "think": 1, "rate": 1}}}, "clients[0].arrival.rate: "
     "unknown key 'rate' (allowed: kind, users, think)"),
    ({"client": {"arrival": {"kind": 3}}}, f"clients[0].arrival.kind: unknown kind '3' (allowed: {ARRIVAL_KINDS})"),
    ({"client": {"arrival": 5}}, "clients[0].arrival: 5: Input should be a valid dictionary or object to extract "
     "fields from"),
    ({"client": {"arrival": {"kind": "poisson", "rate": "-5/min"}}}, "clients[0].arrival.rate: '-5/min' is not a "
     "rate (must be finite and >= 0)"),
    ({"client": {"lane": "batch", "batch": {"submit_att": 1}}}, "clients[0].batch.submit_att: unknown key "
     "'submit_att' (did you mean 'submit_at', 'submit_every'? allowed: submit_at, submit_every, completion_window, "
     "max_requests, max_bytes, bytes_per_token, line_overhead)"),
    ({"client": {"modle": "x"}}, "clients[0].modle: unknown key 'modle' (did you mean 'model'? allowed: name, "
     "model, arrival, prompt_tokens, max_tokens, completion_tokens, audio_seconds, policy, lane, batch, "
     "service_tier, project)"),
    ({"org": {"flex": {"multiplierr": 2}}}, "org.flex.multiplierr: unknown key 'multiplierr' (did you mean "
     "'multiplier'? allowed: multiplier, calm, scarce, scarce_failure, calm_failure)"),
    ({"tiers": {"x": {"bse": "free"}}}, "tiers.x.bse: unknown key 'bse' (did you mean 'base', 'scale'? allowed: "
     "base, scale, overrides, billed)"),
    ({"projects": {"x": {"limit": {}}}}, "projects.x.limit: unknown key 'limit' (did you mean 'limits'? allowed: "
     "description, limits)"),
    ({"capacity": {"p96": 1}}, "capacity.p96: unknown key 'p96' (did you mean 'p95'? allowed: p95, success, "
     "max_load, tolerance)"),
    ({"run": {"job": 1}}, "run.job: unknown key 'job' (did you mean 'jobs'? allowed: jobs, dask)"),
    ({"tiers": {"a": {"base": "a"}}}, "tiers.a.base: 'a' -> 'a' is a cycle (allowed: a chain of bases that ends at "
     "a tier that exists: free, developer)"),
    ({"tiers": {"z": {"base": "developer"}, "a": {"base": "b"}, "b": {"base": "c"}, "c": {"base": "b"}}},
     "tiers.b.base: 'b' -> 'c' -> 'b' is a cycle (allowed: a chain of bases that ends at a tier that exists: free, "
     "developer)"),
    ({"tiers": {"x": {"base": "developer", "scale": {"tpx": 2}}}}, "tiers.x.scale.tpx: unknown limit unit 'tpx' "
     "(did you mean 'tpm', 'tpd'? allowed: rpm, rpd, tpm, tpd, ash, asd)"),
    ({"service": {MODEL: {"output_tp": 5}}}, "service.llama-3.1-8b-instant: unknown service parameter for "
     "'llama-3.1-8b-instant': 'output_tp' (did you mean 'output_tps', 'rtt_p90'? allowed: output_tps, prefill_tps, "
     "prefill_fixed, speed_cv, queue_median, queue_p90, rtt_median, rtt_p90, audio_speed_factor)"),
    ({"service": {MODEL: {"output_tps": -5}}}, "service.llama-3.1-8b-instant: service parameter "
     "'llama-3.1-8b-instant'.output_tps = -5.0: must be > 0 tokens/s"),
    ({"prices": {MODEL: {"input_per": 5}}}, "prices.llama-3.1-8b-instant: unknown price for 'llama-3.1-8b-instant': "
     "'input_per' (did you mean 'input_per_m', 'output_per_m', 'cached_input_per_m'? allowed: input_per_m, "
     "output_per_m, cached_input_per_m, audio_per_hour, audio_min_seconds, characters_per_m)"),
    ({"prices": {MODEL: {"input_per_m": -5}}}, "prices.llama-3.1-8b-instant: price 'llama-3.1-8b-instant'.input_per_m "
     "= -5.0: must be a number >= 0 (USD)"),
    ({"client": {"project": "p"}, "projects": {"p": {"limits": {MODEL: {"rpm": 10**9}}}}},
     "projects.p.limits.llama-3.1-8b-instant: project 'p': rpm 1000000000 is above the organization's rpm limit 30 "
     "on llama-3.1-8b-instant (a project can only lower it)"),
    ({"client": {"service_tier": "flex"}, "org": {"tier": "developer", "flex": {"multiplier": 0.0001}}},
     "org.flex.multiplier: 0.0001 makes llama-3.1-8b-instant's flex 1000 x 0.0001 = 0.1: a scaled limit must be a "
     "finite number >= 1 (the limit would refuse everything, or nothing ever)"),
    ({"client": {"service_tier": "flex"}, "org": {"tier": "developer"}, "compare": {"flex_multiplier": [1, 0.0001]}},
     "compare.flex_multiplier: 0.0001 makes llama-3.1-8b-instant's flex 1000 x 0.0001 = 0.1: a scaled limit must "
     "be a finite number >= 1 (the limit would refuse everything, or nothing ever)"),
    ({"client": {"project": "p"}, "org": {"tier": "developer", "service_tier": "auto", "flex": {"multiplier": 0.01}},
      "projects": {"p": {"limits": {MODEL: {"rpm": 5}}}}},
     "projects.p.limits.llama-3.1-8b-instant: x flex multiplier 0.01: 5 x 0.01 = 0.05: a scaled limit must be a "
     "finite number >= 1 (the limit would refuse everything, or nothing ever)"),
    ({"compare": {"model": [MODEL, "whisper-large-v3"]}}, "compare.model: 'whisper-large-v3' is speech-to-text: "
     "its requests are audio, so the group needs audio_seconds > 0 (a text workload means nothing to it)"),
    ({"client": {"policy": "p"}, "policies": {"p": {"retry": "fixed", "max_attempts": 2, "fallback": [MODEL]}},
      "compare": {"model": ["openai/gpt-oss-20b", "playai-tts"]}},
     "policies.p.fallback: 'llama-3.1-8b-instant' (chat) cannot answer 'playai-tts''s requests (tts): fall back to "
     "a model of the same kind"),
    ({"client": {"model": "my-model"}, "service": {"my-model": {"output_tps": 5}},
      "tiers": {"x": {"base": "developer", "overrides": {"my-model": {"rpm": 5}}}}},
     f"clients[0].model: unknown model on tier 'free': 'my-model' (allowed: {MODELS})"),
    ({"client": {"policy": "p"}, "service": {"my-model": {"output_tps": 5}},
      "tiers": {"x": {"base": "developer", "overrides": {"my-model": {"rpm": 5}}}},
      "policies": {"p": {"retry": "fixed", "max_attempts": 2, "fallback": ["my-model"]}}},
     f"policies.p.fallback: unknown model on tier 'free': 'my-model' (allowed: {MODELS})"),
]


@pytest.mark.parametrize("tables, said", MORE_REFUSED, ids=[m.split(":")[0] + f"-{k}" for k, (_, m) in
                                                             enumerate(MORE_REFUSED)])
def test_a_bad_nested_value_is_one_line_naming_its_whole_key(tables, said):
    assert refused(**tables) == f"{SRC}: {said}"


def test_a_tier_may_extend_one_defined_after_it_and_a_new_model_with_limits_and_speeds_runs():
    s = sc(org={"tier": "b"}, tiers={"b": {"base": "a", "billed": True}, "a": {"base": "developer",
                                                                            "scale": {"tpm": 2}}})
    cat = s.spec().catalog
    assert cat.limits("b", MODEL).tpm == cat.limits("a", MODEL).tpm == 2 * cat.limits("developer", MODEL).tpm
    assert cat.bills("b")
    s = sc(client={"model": "my-model"}, org={"tier": "x"}, service={"my-model": {"output_tps": 100}},
           tiers={"x": {"base": "developer", "overrides": {"my-model": {"rpm": 5, "tpm": 500_000}}}})
    spec = s.spec()
    assert spec.service["my-model"].output_tps == 100 and spec.catalog.limits("x", "my-model").rpm == 5
    assert s.price_table() is not None


def test_a_model_with_limits_but_no_speeds_is_told_to_describe_them(tmp_path):
    write(tmp_path, "tier,model,rpm,rpd,tpm,tpd\nmine,newmodel,5,1K,1K,1K\n", "l.csv")
    path = write(tmp_path, CLIENT_TOML.replace(MODEL, "newmodel") + "[org]\ntier = 'mine'\nlimits_file = 'l.csv'\n")
    assert load_refused(path) == (f"{path}:3: clients[0].model: 'newmodel' has limits but no service figures: "
                                  "describe it in [service.\"newmodel\"] (at least output_tps)")
    ok = write(tmp_path, CLIENT_TOML.replace(MODEL, "newmodel") + "[org]\ntier = 'mine'\nlimits_file = 'l.csv'\n"
               "[service.newmodel]\noutput_tps = 100\n", "ok.toml")
    spec = load_scenario(ok).spec()
    assert spec.catalog.limits("mine", "newmodel").rpm == 5 and spec.service["newmodel"].output_tps == 100
    missing = write(tmp_path, CLIENT_TOML + "[org]\nlimits_file = 'nope.csv'\n", "m.toml")
    assert load_refused(missing) == (f"{missing}:6: org.limits_file: limits file {tmp_path / 'nope.csv'}: cannot "
                                     f"read it ([Errno 2] No such file or directory: '{tmp_path / 'nope.csv'}')")


def test_batch_settings_are_allowed_when_the_grid_compares_the_batch_lane():
    s = sc(**DEV, client={"batch": {"submit_at": "1h"}}, compare={"lane": ["on_demand", "batch"]})
    assert [c.lane for c in s.spec(1).clients] == ["batch"] and s.spec(1).clients[0].batch.submit_at == 3600.0
    assert sc(client={"lane": "batch", "service_tier": "flex"},
              org={"tier": "developer", "flex": {"multiplier": 0.0001}}).spec().clients[0].lane == "batch"


def test_the_small_helpers_read_values_as_the_file_writes_them():
    from sim.scenario import _first_repeat, _plain, _shape, _toml_list
    assert _toml_list([True, False, "a", 0.5, 2.0, 1e-7, 12345678]) == '[true, false, "a", 0.5, 2, 1e-07, 12345678]'
    plain = _plain({"a": [np.int64(1), np.float64(0.5), np.bool_(True), np.str_("x")], "b": {"c": np.int64(2)}})
    assert plain == {"a": [1, 0.5, True, "x"], "b": {"c": 2}}
    assert [type(v) for v in plain["a"]] + [type(plain["b"]["c"])] == [int, float, bool, str, int]
    assert (_first_repeat([None, 1, None, 2, 1.0]), _first_repeat([1, 2]), _first_repeat([])) == (4, None, None)
    assert [_shape(v) for v in ([], [1], [{}], {}, "x", 5)] == ["a list", "a list", "a list of tables", "a table",
                                                                "'x'", "5"]


# ---- more edges: each one a mutant's difference --------------------------------------------------------------

EDGE_REFUSED = [
    ({"clients": {"name": "x"}}, "clients: a table: must be a list of tables, one [[clients]] per client group"),
    ({"clients": [1]}, "clients: a list: must be a list of tables, one [[clients]] per client group"),
    ({"clients": [C, 5]}, "clients: a list: must be a list of tables, one [[clients]] per client group"),  # (not
    # "a list of tables: must be a list of tables", as it said when only the first entry was looked at)
    ({"clients": []}, "clients: []: a scenario needs at least one [[clients]] group (name, model, arrival, "
                      "prompt_tokens, ...; see README)"),
    ({"clients": [C, {**C, "model": "openai/gpt-oss-20b"}]}, "clients[1].name: 'c' names two client groups (each "
     "group's name once: records and tables key on it)"),
    ({"clients": [{**C, "arrival": {"kind": "poisson", "rate": 1}}], "capacity": {"max_load": float("inf")}},
     "capacity.max_load: inf: Input should be a finite number"),
    ({"clients": [C], "tiers": {"x": {"base": "developer", "scale": {"tpm": float("inf")}}}},
     "tiers.x.scale.tpm: inf: Input should be a finite number"),
    ({"clients": [{**C, "prompt_tokens": {"dist": "lognormal", "median": float("nan"), "p95": 5}}]},
     "clients[0].prompt_tokens.median: nan: Input should be a finite number"),
    ({"clients": [{**C, "prompt_tokens": float("inf")}]}, "clients[0].prompt_tokens: inf: Input should be a "
     "finite number"),
    ({"clients": [{**C, "audio_seconds": 0.5}]}, "clients[0].audio_seconds: 'llama-3.1-8b-instant' takes no audio: "
     "audio_seconds is for speech-to-text models (whisper-large-v3, whisper-large-v3-turbo)"),
    ({"clients": [{**C, "model": "playai-tts", "max_tokens": 1}]}, "clients[0].max_tokens: 'playai-tts' is "
     "text-to-speech: its TPM/TPD count the input characters (prompt_tokens) only, so a group on it sets no "
     "max_tokens or completion_tokens"),
    ({"clients": [{**C, "model": "playai-tts", "completion_tokens": {"dist": "uniform", "low": 0, "high": 5}}]},
     "clients[0].completion_tokens: 'playai-tts' is text-to-speech: its TPM/TPD count the input characters "
     "(prompt_tokens) only, so a group on it sets no max_tokens or completion_tokens"),
    # the first bad thing is named: a group's policy before a policy's fallback or the group's audio
    ({"clients": [{**C, "policy": "nope", "audio_seconds": 5}],
      "policies": {"p": {"retry": "fixed", "max_attempts": 2, "fallback": ["zzz"]}}},
     f"clients[0].policy: unknown policy 'nope' (did you mean 'no-retry'? allowed: {POLICIES}, p)"),
    ({"clients": [C], "compare": {"limiter": ["token_bucket"], "error_rate": [0.5, 2]}},
     "compare.error_rate: 2: must be <= 1"),
    ({"clients": [{**C, "name": ""}]}, "clients[0].name: '': String should have at least 1 character"),
    # a tier or model the grid replaces must still be a real name (as a policy: a misspelling is a mistake)
    ({"org": {"tier": "pro"}, "clients": [C], "compare": {"tier": ["free", "developer"]}},
     "org.tier: unknown tier 'pro' (allowed: free, developer)"),
    ({"clients": [{**C, "model": "openai/gpt-oss-2b"}], "compare": {"model": ["openai/gpt-oss-20b"]}},
     "clients[0].model: unknown model 'openai/gpt-oss-2b' (did you mean 'openai/gpt-oss-20b', 'openai/gpt-oss-120b', "
     f"'openai/gpt-oss-safeguard-20b'? allowed: {MODELS})"),
]


@pytest.mark.parametrize("data, said", EDGE_REFUSED, ids=[m.split(":")[0] + f"-{k}" for k, (_, m) in
                                                         enumerate(EDGE_REFUSED)])
def test_an_edge_is_refused_in_one_line(data, said):
    with pytest.raises(ConfigError) as caught:
        scenario_from_dict(data, source=SRC)
    assert str(caught.value) == f"{SRC}: {said}"


def test_more_edges_just_inside_are_taken_as_written():
    assert sc(**pol(retry="none")).spec().policies["p"].max_attempts == 1
    assert sc(**pol(retry="fixed", max_attempts=2, fallback=["openai/gpt-oss-20b"])).spec().policies["p"].fallback == [
        "openai/gpt-oss-20b"]
    assert sc(tiers={"x": {"base": "developer", "overrides": {MODEL: {"rpm": 5}}}}).spec().catalog.limits(
        "x", MODEL).rpm == 5
    assert sc(run={"dask": "tcp://h:1", "jobs": 3}).run.model_dump() == {"dask": "tcp://h:1", "jobs": 3}
    assert sc(org={"batch": {"start_median": "10m"}}).spec().org.batch.start_median == 600.0
    whisper = sc(client={"model": "whisper-large-v3", "audio_seconds": 0.5}).spec().clients[0]
    assert whisper.audio_seconds == Dist(value=0.5)
    tts = sc(client={"model": "playai-tts", "max_tokens": {"dist": "uniform", "low": 0, "high": 0}}).spec()
    assert tts.clients[0].max_tokens == Dist(value=0)
    assert Accounting().charged(100.4, 50, 0) == 150.4  # (nothing cached: the prompt as it is)
    assert sc(client={"arrival": {"kind": "poisson", "rate": 1}}).client_models() == {MODEL}


def test_numpy_values_read_as_the_python_ones():
    s = scenario_from_dict({"clients": [C], "scenario": {"seed": np.int64(3)}, "org": {"tier": "developer"},
                            "compare": {"load": [np.int64(2), np.float64(0.5)]}}, source=SRC)
    assert s.scenario.seed == 3 and s.grid() == [{"load": 2}, {"load": 0.5}] and type(s.grid()[0]["load"]) is int
    spec = s.spec({"refund_unused": np.bool_(True), "project_quotas": np.bool_(False), "tier": np.str_("free")})
    assert (spec.org.accounting.refund_unused, spec.org.project_quotas, spec.org.tier) == (True, False, "free")


def test_a_lognormal_size_rises_with_its_normal_draw():
    # (common random numbers: the same draw gives the larger size in every grid point)
    z = np.random.default_rng(5).standard_normal(50)
    x = Dist(dist="lognormal", median=100, p95=400).sample(np.random.default_rng(5), 50)
    assert (np.argsort(x) == np.argsort(z)).all() and ((x > 100) == (z > 0)).all()


def test_an_overridden_warmup_is_scaled_from_the_files_duration_when_it_has_one(tmp_path):
    zero = write(tmp_path, "[scenario]\nduration = 0\nwarmup = '1m'\n" + CLIENT_TOML)
    meta = load_scenario(zero, {"duration": "10m"}).scenario
    assert (meta.duration, meta.warmup) == (600.0, 60.0)  # (a file's duration of 0: the warm-up as written)
    one = write(tmp_path, "[scenario]\nduration = 1\nwarmup = 0.5\n" + CLIENT_TOML, "one.toml")
    meta = load_scenario(one, {"duration": "10s"}).scenario
    assert (meta.duration, meta.warmup) == (10.0, 5.0)


def test_an_overridden_key_is_said_so_by_every_later_error(tmp_path):
    path = write(tmp_path, SCENARIO_10M)
    s = load_scenario(path, {"duration": "5m"})
    assert str(s.error("scenario.duration", "x")) == f"{path}: scenario.duration (from overrides, not the file): x"
    assert str(s.error("scenario.warmup", "y")) == f"{path}:3: scenario.warmup: y"  # (scaled: the file's warm-up)
    assert str(s.error("scenario.seed", "z")) == f"{path}:1: scenario.seed: z"  # (not overridden: its table's line)
    assert str(load_scenario(path).error("scenario.duration", "x")) == f"{path}:2: scenario.duration: x"


@pytest.mark.parametrize("text, line", [
    # a comment after a closed string is cut (its words are no key), in basic and literal strings
    ("[[clients]]\nname = 'c' # prompt_tokens = 1\n", 5),
    ("[[clients]]\nname = \"c\" # prompt_tokens = 1\n", 5),
    ("[[clients]]\nname = \"c\\\"\" # prompt_tokens = 1\n", 5),
    ("[[clients]]\nname = \"c\\\"d\" # prompt_tokens = 1\n", 5),
    ("[[clients]]\nname = 'c\\' # prompt_tokens = 1\n", 5),
])
def test_a_keys_line_skips_comments_but_not_a_hash_in_a_string(tmp_path, text, line):
    path = write(tmp_path, text + "model = 'llama-3.1-8b-instant'\narrival = { kind = 'poisson', rate = 1 }\n"
                 "prompt_tokens = -1\n")
    assert load_refused(path).startswith(f"{path}:{line}: clients[0].prompt_tokens: -1: ")


def test_a_hash_inside_a_string_is_no_comment(tmp_path):
    for name in ('"x#"', "'x#'", '"x\\"#"'):
        path = write(tmp_path, "clients = [\n  { name = " + name + ", model = 'llama-3.1-8b-instant', arrival = "
                     "{ kind = 'poisson', rate = 1 }, prompt_tokens = -1 },\n]\n")
        assert load_refused(path).startswith(f"{path}:2: clients[0].prompt_tokens: -1: "), name


def test_the_line_of_a_key_on_the_first_line_and_of_the_second_group(tmp_path):
    path = write(tmp_path, "scenario.duration = 'ten'\n" + CLIENT_TOML)
    assert load_refused(path).startswith(f"{path}:1: scenario.duration: 'ten' is not a duration")
    second = CLIENT_TOML + "prompt_tokens = 5\n" + CLIENT_TOML.replace("'c'", "'d'") + "prompt_tokens = 'lots'\n"
    path = write(tmp_path, second + "[service.\"llama-3.1-8b-instant\"]\noutput_tps = 100\n")
    assert load_refused(path).startswith(f"{path}:10: clients[1].prompt_tokens: 'lots' is not a size")
    first = CLIENT_TOML + "prompt_tokens = 'lots'\n" + CLIENT_TOML.replace("'c'", "'d'") + "prompt_tokens = 5\n"
    path = write(tmp_path, first)
    assert load_refused(path).startswith(f"{path}:5: clients[0].prompt_tokens: 'lots' is not a size")
    inline = ("clients = [\n  { name = 'c', model = 'llama-3.1-8b-instant', arrival = { kind = 'poisson', rate = 1 }, "
              "prompt_tokens = 'lots' },\n]\n")
    path = write(tmp_path, inline)
    assert load_refused(path).startswith(f"{path}:2: clients[0].prompt_tokens: 'lots' is not a size")
    inline = ("clients = [\n  { name = 'c', model = 'llama-3.1-8b-instant', arrival = { kind = 'poisson', rate = 1 } },"
              "\n  { name = 'd', model = 'llama-3.1-8b-instant', arrival = { kind = 'poisson', rate = 1 }, "
              "max_tokens = 'lots' },\n]\n")
    path = write(tmp_path, inline)
    assert load_refused(path).startswith(f"{path}:3: clients[1].max_tokens: 'lots' is not a size")


def test_traces_beside_other_groups_and_at_the_edge_of_the_run(tmp_path):
    write(tmp_path, "timestamp,prompt_tokens,max_tokens\n1,5,5\n70,5,5\n", "t.csv")
    path = write(tmp_path, "[scenario]\nduration = '70s'\n" + CLIENT_TOML + "[[clients]]\nname = 't'\n"
                 "model = 'llama-3.1-8b-instant'\narrival = { kind = 'trace', file = 't.csv' }\n")
    s = load_scenario(path)
    assert s.trace_notes() == ["note: clients.t: a run of 1m10s replays 1 of the 2 rows of t.csv (the trace runs to "
                               "1m10s); the rest are not sent"]
    assert s.trace_notes(70.5) == [] and s.client_models() == {MODEL}
    assert s.spec().clients[1].arrival.file == str(tmp_path / "t.csv")
    absolute = write(tmp_path, "[scenario]\nduration = '70s'\n[[clients]]\nname = 't'\nmodel = "
                     f"'llama-3.1-8b-instant'\narrival = {{ kind = 'trace', file = '{tmp_path / 't.csv'}' }}\n",
                     "abs.toml")
    assert load_scenario(absolute).size() == (1, 1.0)


def test_a_speech_trace_needs_audio_from_its_rows_or_its_group(tmp_path):
    write(tmp_path, "timestamp,audio_seconds\n1,\n", "t.csv")
    body = "[[clients]]\nname = 'c'\nmodel = 'whisper-large-v3'\narrival = { kind = 'trace', file = 't.csv' }\n"
    ok = load_scenario(write(tmp_path, body + "audio_seconds = 0.5\n"))
    assert ok.spec().clients[0].audio_seconds == Dist(value=0.5)
    assert load_refused(write(tmp_path, body, "none.toml")) == (
        f"{tmp_path / 't.csv'}:2: column audio_seconds: empty on a row for 'whisper-large-v3', which is "
        "speech-to-text: each of its rows needs audio_seconds > 0 (or the client group's audio_seconds, on a "
        "speech-to-text model, for empty cells)")


def test_building_every_shape_in_python_warns_nothing():
    rate = {"kind": "poisson", "rate": 1}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Policy(retry="fixed", max_attempts=2, base=1, cap=2)
        Dist(dist="uniform", low=1, high=2)
        Client(name="c", model=MODEL, arrival=rate, completion_tokens=5, lane="batch")
        Org(limits_file="x.csv")
        Accounting(charge="actual")


@pytest.mark.parametrize("client, said", [
    ({"prompt_tokens": True}, "clients[0].prompt_tokens: true is not a size (allowed: a number such as 200 or 2K, "
     "or a distribution such as { dist = 'uniform', low = 100, high = 400 })"),
    ({"max_tokens": [1, 2]}, "clients[0].max_tokens: [1, 2] is not a size (allowed: a number such as 200 or 2K, or "
     "a distribution such as { dist = 'uniform', low = 100, high = 400 })"),
    ({"audio_seconds": True}, "clients[0].audio_seconds: true is not a number of seconds (allowed: a number such as "
     "30, or a distribution such as { dist = 'uniform', low = 5, high = 60 })"),
])
def test_a_size_that_is_neither_a_number_nor_a_table_says_what_a_size_may_be(client, said):
    # (it said "Input should be a valid dictionary or instance of Dist": a class name, and no allowed values)
    assert refused(client=client) == f"{SRC}: {said}"


def test_a_bad_service_or_price_is_named_by_its_own_model_among_others():
    assert refused(service={MODEL: {"output_tps": -5}, "openai/gpt-oss-20b": {"output_tps": 100}}) == (
        f"{SRC}: service.llama-3.1-8b-instant: service parameter 'llama-3.1-8b-instant'.output_tps = -5.0: must be "
        "> 0 tokens/s")
    assert refused(prices={MODEL: {"input_per_m": -5}, "openai/gpt-oss-20b": {"input_per_m": 1}}) == (
        f"{SRC}: prices.llama-3.1-8b-instant: price 'llama-3.1-8b-instant'.input_per_m = -5.0: must be a number >= 0 "
        "(USD)")


def test_retry_after_rounding_acts_when_a_compared_policy_reads_retry_after():
    s = sc(**DEV, compare={"policy": ["no-retry", "groq-sdk"], "retry_after_rounding": ["ceil", "floor"]})
    assert s.setting_notes() == []
    s = sc(**DEV, compare={"policy": ["no-retry", "fixed"], "retry_after_rounding": ["ceil", "floor"]})
    assert s.setting_notes() == [
        "note: compare.retry_after_rounding: no client policy reads a 429's retry-after (a schedule that obeys it, "
        "honor_retry_after, or cooldown = 'retry-after'): its values [\"ceil\", \"floor\"] give the same runs"]


def test_a_projects_flex_limits_are_checked_only_when_the_project_is_on_flex():
    projects = {"p": {"limits": {MODEL: {"rpm": 5}}}}
    on_demand = sc(client={"project": "p"}, org={"tier": "developer", "flex": {"multiplier": 0.01}},
                   projects=projects)
    assert on_demand.spec().projects["p"].limits == {MODEL: {"rpm": 5}}
    batch = sc(client={"project": "p", "lane": "batch", "service_tier": "flex"},
               org={"tier": "developer", "flex": {"multiplier": 0.01}}, projects=projects)
    assert batch.spec().clients[0].lane == "batch"


def test_a_trace_that_is_a_directory_or_has_a_bad_row_is_named(tmp_path):
    (tmp_path / "d.csv").mkdir()
    body = "[[clients]]\nname = 'c'\nmodel = 'llama-3.1-8b-instant'\narrival = {{ kind = 'trace', file = '{}' }}\n"
    path = write(tmp_path, body.format("d.csv"))
    assert load_refused(path) == (f"{path}:4: clients[0].arrival.file: trace file '{tmp_path / 'd.csv'}' is a "
                                  "directory (allowed: a CSV or JSONL file)")
    write(tmp_path, "timestamp\nsoon\n", "bad.csv")
    path = write(tmp_path, body.format("bad.csv"), "b.toml")
    said = load_refused(path)
    assert said.startswith(f"{tmp_path / 'bad.csv'}:2: column timestamp: ") and "is not a trace" not in said


def test_a_traces_model_with_limits_but_no_speeds_is_told_to_describe_them(tmp_path):
    write(tmp_path, "tier,model,rpm,rpd,tpm,tpd\nmine,newmodel,5,1K,1K,1K\nmine,llama-3.1-8b-instant,5,1K,1K,1K\n",
          "l.csv")
    write(tmp_path, "timestamp,model\n1,newmodel\n", "t.csv")
    path = write(tmp_path, "[org]\ntier = 'mine'\nlimits_file = 'l.csv'\n[[clients]]\nname = 'c'\n"
                           "model = 'llama-3.1-8b-instant'\narrival = { kind = 'trace', file = 't.csv' }\n")
    with pytest.raises(ConfigError) as caught:
        load_scenario(path)
    assert str(caught.value) == (f"{tmp_path / 't.csv'}:2: column model: 'newmodel' has limits but no service figures: "
                                 "describe it in [service.\"newmodel\"] (at least output_tps)")


def test_a_grid_larger_than_the_limit_is_refused_at_once_naming_its_size(monkeypatch):
    """A cross product past MAX_GRID is refused before any point is resolved (1e6 points took 161 s to
    resolve before the work limit could say no); one at the limit is taken."""
    import sim.scenario as scenario_module
    monkeypatch.setattr(scenario_module, "MAX_GRID", 4)
    resolved = []
    monkeypatch.setattr(scenario_module.Scenario, "spec", lambda self, point=None, **kw: resolved.append(point))
    data = {"clients": [C], "compare": {"load": [1, 2], "error_rate": [0.0, 0.1]}}
    assert len(scenario_from_dict(data, source=SRC).grid()) == 4 and len(resolved) == 4
    resolved.clear()
    with pytest.raises(ConfigError) as caught:
        scenario_from_dict({**data, "compare": {"load": [1, 2], "error_rate": [0.0, 0.1, 0.2]}}, source=SRC)
    assert str(caught.value) == (f"{SRC}: compare: 6 grid points (2 x 3 values); a study takes at most 4: split "
                                 "it, or give the axes fewer values")
    assert resolved == []


def test_what_the_batch_lane_ignores_is_noted_when_every_group_is_on_it():
    """A batch group's own service_tier, and the org's on-demand settings (limiter, retry-after rounding,
    injected errors) when every group is on the batch lane, change nothing: said, as their [compare] axes are.
    Set but met by an on-demand group, or not set at all, nothing is said."""
    batch = {"lane": "batch", "policy": "no-retry"}
    s = sc(org={"tier": "developer", "error_rate": 0.3, "limiter": "sliding_log"},
           client={**batch, "service_tier": "flex"})
    assert s.setting_notes() == [
        "note: clients.c: on the batch lane its service_tier 'flex' does not apply: a batch job is processed by "
        "the Batch API whatever the tier (docs/lanes.md)",
        "note: org.limiter: every client group is on the batch lane, which meets none of the org's on-demand "
        "limits, 429s or injected errors: it changes nothing",
        "note: org.error_rate: every client group is on the batch lane, which meets none of the org's on-demand "
        "limits, 429s or injected errors: it changes nothing"]
    assert sc(**DEV, client=batch).setting_notes() == []  # (nothing set that the lane ignores)
    assert sc(org={"tier": "developer", "error_rate": 0.3}, client={"policy": "no-retry"}).setting_notes() == []
    # the lane axis decides: on both lanes the settings act on the on-demand runs
    both = sc(org={"tier": "developer", "error_rate": 0.3}, client={"policy": "no-retry", "service_tier": "flex"},
              compare={"lane": ["on_demand", "batch"]})
    assert both.setting_notes() == []
    only = sc(org={"tier": "developer", "error_rate": 0.3}, client={"policy": "no-retry"}, compare={"lane": ["batch"]})
    assert [n.split(":")[1] for n in only.setting_notes()] == [" org.error_rate"]


@pytest.mark.parametrize("org, said", [
    ({"error_status": 500}, "note: org.error_status: error_rate is 0: no error is injected: it changes nothing"),
    ({"retry_after_rounding": "floor"}, "note: org.retry_after_rounding: no client policy reads a 429's retry-after"),
    ({"flex": {"multiplier": 5}}, "note: org.flex.multiplier: no client group is served on flex"),
    ({"project_quotas": False}, "note: org.project_quotas: no client group belongs to a project"),
])
def test_an_org_setting_that_changes_nothing_is_said_as_its_axis_is(org, said):
    """(The same settings as [compare] axes were said; written once in [org], nothing was.)"""
    notes = sc(org={"tier": "developer", **org}, client={"policy": "no-retry"}).setting_notes()
    assert len(notes) == 1 and notes[0].startswith(said), notes
    # acting, or not written (a default), nothing is said
    acting = {"error_status": {"error_rate": 0.1}, "retry_after_rounding": {}, "flex": {"service_tier": "flex"},
              "project_quotas": {}}[next(iter(org))]
    policy = "groq-sdk" if "retry_after_rounding" in org else "no-retry"
    if "project_quotas" not in org:
        assert sc(org={"tier": "developer", **org, **acting}, client={"policy": policy}).setting_notes() == []
    assert sc(org={"tier": "developer"}, client={"policy": "no-retry"}).setting_notes() == []


@pytest.mark.parametrize("flex", [{"calm": "10m"}, {"scarce": "0s"}, {"calm_failure": 0.1},
                                  {"calm": "10m", "scarce_failure": 0.9}])
def test_the_flex_capacity_process_changes_nothing_without_a_group_on_flex(flex):
    """Every setting of ``[org.flex]``'s capacity process (calm and scarce periods, each one's failure) acts on
    flex requests only: without a group on flex each is said, by its key; with one, none is, but a calm
    period's length when capacity is never scarce (``scarce = 0``)."""
    notes = sc(org={"tier": "developer", "flex": flex}, client={"policy": "no-retry"}).setting_notes()
    assert notes == [f"note: org.flex.{k}: no client group is served on flex (service_tier 'flex' or 'auto', off "
                     "the batch lane): it changes nothing" for k in ("scarce_failure", "calm", "scarce", "calm_failure")
                     if k in flex]
    on_flex = sc(org={"tier": "developer", "flex": flex}, client={"policy": "no-retry", "service_tier": "flex"})
    said = [n.split(":")[1].strip() for n in on_flex.setting_notes()]
    assert said == (["org.flex.calm"] if flex.get("scarce") == "0s" and "calm" in flex else [])
    never = sc(org={"tier": "developer", "flex": {"calm": "10m", "scarce": "0s"}},
               client={"policy": "no-retry", "service_tier": "auto"})
    assert never.setting_notes() == [
        "note: org.flex.calm: org.flex.scarce = 0: flex capacity is never scarce, so a calm period never ends: it "
        "changes nothing"]


def test_a_batch_lane_with_no_group_on_it_changes_nothing_in_a_run():
    """``[org.batch]`` shapes the batch lane's jobs (and the emulator's Batch API): a run without a group on the
    batch lane (its own lane, or a lane axis with it) is not changed by it, and says so."""
    lane = {"batch": {"start_median": "5m"}}
    assert sc(org={"tier": "developer", **lane}, client={"policy": "no-retry"}).setting_notes() == [
        "note: org.batch: no client group is on the batch lane (lane = 'batch', or a [compare] lane axis with it): "
        "it changes nothing in a run (groqsim serve's Batch API uses it)"]
    assert sc(org={"tier": "developer", **lane}, client={"policy": "no-retry", "lane": "batch"}).setting_notes() == []
    assert sc(org={"tier": "developer", **lane}, client={"policy": "no-retry"},
              compare={"lane": ["on_demand", "batch"]}).setting_notes() == []
    assert sc(org={"tier": "developer"}, client={"policy": "no-retry"}).setting_notes() == []  # (not written)


def test_billing_timed_out_attempts_is_said_to_change_nothing_without_a_timeout_or_a_bill():
    """``org.accounting.bill_timed_out`` (and its ``[compare]`` axis) acts only where a client policy gives an
    attempt up (a ``timeout``: groq-sdk's is 60 s, no-retry has none) on a tier that bills."""
    on = {"accounting": {"bill_timed_out": True}}
    assert sc(org={"tier": "developer", **on}, client={"policy": "groq-sdk"}).setting_notes() == []
    assert sc(org={"tier": "developer", **on}, client={"policy": "no-retry"}).setting_notes() == [
        "note: org.accounting.bill_timed_out: no client policy has a timeout, so no attempt is given up: it changes "
        "nothing"]
    assert sc(org={"tier": "free", **on}, client={"policy": "groq-sdk"}).setting_notes() == [
        "note: org.accounting.bill_timed_out: the tier does not bill: it changes nothing"]
    axis = {"bill_timed_out": [False, True]}
    free = sc(org={"tier": "free"}, client={"policy": "groq-sdk"}, compare=axis)
    assert [n for n in free.setting_notes() if "bill_timed_out" in n] == [
        "note: compare.bill_timed_out: the tier does not bill: its values [false, true] give the same runs"]
    both = sc(org={"tier": "free"}, client={"policy": "groq-sdk"}, compare={**axis, "tier": ["free", "developer"]})
    assert both.setting_notes() == [] and len(both.grid()) == 4
    policies = sc(org={"tier": "developer"}, client={"policy": "no-retry"},
                  compare={**axis, "policy": ["no-retry", "groq-sdk"]})
    assert policies.setting_notes() == []
    assert [p["bill_timed_out"] for p in policies.grid()] == [False, False, True, True]


def test_an_org_dumped_whole_is_not_said_to_set_its_defaults():
    """A notebook builds scenarios from ``model_dump()`` of another's org (every field written): a default,
    written, changes nothing and is not said (nor is a batch lane's default start_p95 beside start_median 0)."""
    org = sc(**DEV).org.model_dump()
    assert sc(org=org, client={"policy": "no-retry"}).setting_notes() == []
    org["batch"]["start_median"] = 0  # (not a default: said where no group is on the batch lane, which it shapes)
    assert [n.split(":")[1] for n in sc(org=org, client={"policy": "no-retry"}).setting_notes()] == [" org.batch"]
    assert sc(org=org, client={"policy": "no-retry", "lane": "batch"}).setting_notes() == []


def test_pricing_speeds_that_equal_the_docs_for_every_model_sent_are_said():
    """gpt-oss-120b reads 500 t/s on both of Groq's pages: speeds = 'pricing' changes nothing there (said);
    llama-3.3-70b reads 280 and 394: it acts (nothing said)."""
    same = sc(scenario={"speeds": "pricing"}, client={"model": "openai/gpt-oss-120b", "policy": "no-retry"}, **DEV)
    assert same.setting_notes() == [
        "note: scenario.speeds: 'pricing' gives every model sent here the same output speed as 'docs' (Groq's two "
        "published sets agree on these): it changes nothing"]
    differs = sc(scenario={"speeds": "pricing"}, client={"model": "llama-3.3-70b-versatile", "policy": "no-retry"},
                 **DEV)
    assert differs.setting_notes() == []
    # one model that differs among those sent (a compared one too) is enough
    both = sc(scenario={"speeds": "pricing"}, client={"model": "openai/gpt-oss-120b", "policy": "no-retry"},
              compare={"model": ["openai/gpt-oss-120b", "llama-3.3-70b-versatile"]}, **DEV)
    assert both.setting_notes() == []
