"""Every malformed input a new user is likely to give -- scenarios, traces, command lines -- is refused with
exit status 2 and one line on stderr naming the file (and line) or option and what is allowed: no
traceback, nothing written to ``--out``.  Most cases run in-process through ``sim.cli.main`` (fast); a few
run ``python -m sim`` in a subprocess to prove the real command behaves the same."""
import gc
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sim.cli import main
from sim.policies import SCHEDULES

ROOT = Path(__file__).resolve().parents[1]

CLIENT = "[[clients]]\nname = 'c'\nmodel = 'llama-3.1-8b-instant'\narrival = { kind = 'poisson', rate = '10/min' }\n"
BASE = "[scenario]\nduration = '2m'\n" + CLIENT


def _with(extra: str = "", client: str = "", scenario: str = "duration = '2m'\n") -> str:
    """A small valid scenario with ``extra`` tables appended and ``client`` lines added to its client."""
    return f"[scenario]\n{scenario}" + CLIENT + client + extra


def _trace(body: str, name: str = "t.csv") -> dict:
    """A scenario replaying trace ``name`` whose contents are ``body``."""
    toml = ("[scenario]\nduration = '2m'\n[[clients]]\nname = 'c'\nmodel = 'llama-3.1-8b-instant'\n"
            f"arrival = {{ kind = 'trace', file = '{name}' }}\n")
    return {"s.toml": toml, name: body}


# (case id, files (name -> text or bytes; "s.toml" is the scenario), extra argv, fragments the line must contain)
SCENARIOS = [
    ("unknown-table", BASE + "[scenari]\nname = 'x'\n", "scenari"),
    ("unknown-scenario-key", _with(scenario="durration = '2m'\n"), "durration"),
    ("error-status-not-an-error", _with(extra="[org]\nerror_rate = 0.1\nerror_status = 200\n"),
     "org.error_status: 200: must be >= 400"),
    ("duration-zero", _with(scenario="duration = '0s'\n"),
     "s.toml:2: scenario.duration: '0s': must be > 0 s"),
    ("duration-negative", _with(scenario="duration = '-5m'\n"), "duration"),
    ("duration-word", _with(scenario="duration = 'soon'\n"), "duration"),
    ("duration-inf", _with(scenario="duration = inf\n"), "duration"),
    ("warmup-too-long", _with(scenario="duration = '2m'\nwarmup = '3m'\n"),
     "s.toml:3: scenario.warmup: '3m': warmup (180 s) must be shorter than duration (120 s)"),
    ("replications-zero", _with(scenario="duration = '2m'\nreplications = 0\n"), "replications"),
    ("replications-float", _with(scenario="duration = '2m'\nreplications = 2.5\n"), "replications"),
    ("seed-negative", _with(scenario="duration = '2m'\nseed = -1\n"), "seed"),
    ("seed-string", _with(scenario="duration = '2m'\nseed = 'x'\n"), "seed"),
    ("drain-word", _with(scenario="duration = '2m'\ndrain = 'later'\n"), "drain"),
    ("tier-unknown", BASE + "[org]\ntier = 'fre'\n", "tier"),
    ("limiter-unknown", BASE + "[org]\nlimiter = 'leaky'\n", "limiter"),
    ("org-unknown-key", BASE + "[org]\ntire = 'free'\n", "tire"),
    ("charge-unknown", BASE + "[org.accounting]\ncharge = 'all'\n", "charge"),
    ("cache-ratio-2", BASE + "[org.accounting]\ncache_hit_ratio = 2\n", "cache_hit_ratio"),
    ("error-rate-negative", BASE + "[org]\nerror_rate = -0.1\n", "error_rate"),
    ("rounding-unknown", BASE + "[org]\nretry_after_rounding = 'up'\n", "retry_after_rounding"),
    ("no-clients", "[scenario]\nduration = '2m'\n", "clients"),
    ("empty-file", "", "clients"),
    ("client-no-name", "[[clients]]\nmodel = 'llama-3.1-8b-instant'\narrival = { kind = 'poisson', rate = '1/s' }\n",
     "name"),
    ("client-no-model", "[[clients]]\nname = 'c'\narrival = { kind = 'poisson', rate = '1/s' }\n", "model"),
    ("model-unknown", CLIENT.replace("llama-3.1-8b-instant", "llama-9"), "model"),
    ("model-number", CLIENT.replace("'llama-3.1-8b-instant'", "3"), "model"),
    ("arrival-kind-unknown", CLIENT.replace("poisson", "poison"), "kind"),
    ("arrival-no-kind", CLIENT.replace("kind = 'poisson', ", ""),
     "clients[0].arrival.kind: required, and missing (allowed: poisson, constant,"),
    ("arrival-rate-negative", CLIENT.replace("10/min", "-10/min"), "rate"),
    ("arrival-rate-word", CLIENT.replace("10/min", "lots"), "rate"),
    ("arrival-rate-unit", CLIENT.replace("10/min", "10/fortnight"), "rate"),
    ("arrival-no-rate", CLIENT.replace(", rate = '10/min'", ""), "rate"),
    ("arrival-extra-key", CLIENT.replace("rate = '10/min'", "rate = '10/min', burst = 3"), "burst"),
    ("closed-no-users", CLIENT.replace("kind = 'poisson', rate = '10/min'", "kind = 'closed', think = '1s'"),
     "users"),
    ("prompt-negative", _with(client="prompt_tokens = -5\n"), "prompt_tokens"),
    ("prompt-dist-unknown", _with(client="prompt_tokens = { dist = 'normal', value = 3 }\n"), "prompt_tokens"),
    ("uniform-low-high", _with(client="prompt_tokens = { dist = 'uniform', low = 9, high = 1 }\n"), "prompt_tokens"),
    ("uniform-missing-high", _with(client="prompt_tokens = { dist = 'uniform', low = 9 }\n"), "prompt_tokens"),
    ("lognormal-median-p95", _with(client="max_tokens = { dist = 'lognormal', median = 50, p95 = 10 }\n"),
     "max_tokens"),
    ("empirical-empty", _with(client="prompt_tokens = { dist = 'empirical', values = [] }\n"), "prompt_tokens"),
    ("prompt-string", _with(client="prompt_tokens = 'many'\n"), "prompt_tokens"),
    ("client-policy-unknown", _with(client="policy = 'retry-forever'\n"), "policy"),
    ("client-unknown-key", _with(client="colour = 'red'\n"), "colour"),
    ("policy-unknown-key", _with("[policies.mine]\nretries = 3\n", "policy = 'mine'\n"), "retries"),
    ("policy-extends-unknown", _with("[policies.mine]\nextends = 'grok-sdk'\n", "policy = 'mine'\n"), "extends"),
    ("policy-attempts-zero", _with("[policies.mine]\nmax_attempts = 0\n", "policy = 'mine'\n"), "max_attempts"),
    ("policy-retry-unknown", _with("[policies.mine]\nretry = 'fibonacci'\n", "policy = 'mine'\n"), "retry"),
    ("policy-jitter-unknown", _with("[policies.mine]\njitter = 'some'\n", "policy = 'mine'\n"), "jitter"),
    ("policy-pacing-2", _with("[policies.mine]\npacing = 2\n", "policy = 'mine'\n"), "pacing"),
    ("policy-deadline-word", _with("[policies.mine]\ndeadline = 'soon'\n", "policy = 'mine'\n"), "deadline"),
    ("policy-fallback-unknown", _with("[policies.mine]\nfallback = ['llama-9']\n", "policy = 'mine'\n"), "fallback"),
    ("unused-policy-fallback-unknown", _with("[policies.spare]\nfallback = ['llama-9']\n"), "fallback"),
    ("flex-multiplier-zeroes-a-fallback",  # (its own model's flex limits were checked, not its fallback's)
     _with("[org]\ntier = 'developer'\nservice_tier = 'flex'\n[org.flex]\nmultiplier = 0.0015\n"
           "[policies.fb]\nretry = 'fixed'\nmax_attempts = 2\nfallback = ['allam-2-7b']\n",
           "policy = 'fb'\n").replace("llama-3.1-8b-instant", "openai/gpt-oss-120b"),
     "s.toml:12: org.flex.multiplier: 0.0015 makes allam-2-7b's flex 300 x 0.0015 = 0.45: a scaled limit must be"),
    ("policy-fallback-twice", _with("[policies.mine]\nmax_attempts = 3\nfallback = ['openai/gpt-oss-20b', "
                                    "'llama-3.3-70b-versatile', 'openai/gpt-oss-20b']\n", "policy = 'mine'\n"),
     "s.toml:10: policies.mine.fallback: ['openai/gpt-oss-20b', 'llama-3.3-70b-versatile', 'openai/gpt-oss-20b']: "
     "'openai/gpt-oss-20b' listed more than once (allowed: each model once; a hop to the same model again asks "
     "its limits again at once, with no back-off)"),
    ("compare-axis-unknown", BASE + "[compare]\ntiers = ['free']\n", "tiers"),
    ("compare-empty-list", BASE + "[compare]\ntier = []\n", "compare.tier"),
    ("compare-not-list", BASE + "[compare]\ntier = 'free'\n", "compare.tier"),
    ("compare-load-negative", BASE + "[compare]\nload = [-1]\n", "compare.load"),
    ("compare-load-zero", BASE + "[compare]\nload = [1, 0]\n", "compare.load"),
    ("compare-load-word", BASE + "[compare]\nload = ['double']\n", "compare.load"),
    ("compare-load-bool", BASE + "[compare]\nload = [true]\n", "compare.load"),
    ("compare-value-twice", BASE + "[compare]\nload = [1, 2, 1.0]\n", "compare.load: 1.0 is listed twice"),
    ("compare-tier-twice", BASE + "[compare]\ntier = ['free', 'free']\n", "compare.tier: 'free' is listed twice"),
    ("client-name-twice", BASE + CLIENT, "clients[1].name: 'c' names two client groups"),
    ("prices-model-typo", _with("[prices.'llama-3.1-8b']\ninput_per_m = 0.1\noutput_per_m = 0.2\n"),
     "prices.llama-3.1-8b: unknown model 'llama-3.1-8b' (did you mean 'llama-3.1-8b-instant'"),
    ("policy-base-above-cap", _with("[policies.mine]\nretry = 'exponential'\nbase = 10\ncap = 1\n",
                                    "policy = 'mine'\n"), "base 10 s is above cap 1 s"),
    ("policy-retry-on-200", _with("[policies.mine]\nretry_on = [429, 200]\n", "policy = 'mine'\n"),
     "policies.mine.retry_on[1]"),
    ("tier-billed-word", _with("[tiers.x]\nbase = 'free'\nbilled = 'yes'\n"), "tiers.x.billed: 'yes'"),
    ("compare-quotas-word", BASE + "[compare]\nproject_quotas = ['yes']\n", "compare.project_quotas: 'yes'"),
    ("compare-flex-word", BASE + "[compare]\nflex_multiplier = ['x']\n", ":8: compare.flex_multiplier: 'x'"),
    ("compare-charge-unknown", BASE + "[compare]\ncharge = ['both']\n", ":8: compare.charge: 'both'"),
    ("chat-client-audio", _with(client="audio_seconds = 30\n"), "clients[0].audio_seconds: 'llama-3.1-8b-instant' "
     "takes no audio"),
    ("batch-without-lane", _with(client="batch = { completion_window = '24h' }\n"),
     "clients[0].batch: batch settings need lane = \"batch\""),
    ("diurnal-period-zero", CLIENT.replace("kind = 'poisson', rate = '10/min'",
                                           "kind = 'diurnal', rate = '10/min', period = '0s'"),
     "clients[0].arrival.period"),
    ("compare-policy-unknown", BASE + "[compare]\npolicy = ['no-retry', 'nope']\n", "policy"),
    ("compare-policy-hides-bad-client-policy",
     _with("[compare]\npolicy = ['no-retry']\n", "policy = 'typo-policy'\n"), "policy"),
    ("compare-model-unknown", BASE + "[compare]\nmodel = ['llama-9']\n", "model"),
    ("compare-tier-unknown", BASE + "[compare]\ntier = ['free', 'gold']\n", "tier"),
    ("compare-limiter-unknown", BASE + "[compare]\nlimiter = ['leaky']\n", "limiter"),
    ("tier-named-builtin", BASE + "[tiers.free]\nbase = 'developer'\n", "tiers.free"),
    ("tier-base-unknown", BASE + "[tiers.mine]\nbase = 'gold'\n", "tiers.mine"),
    ("tier-scale-unit", BASE + "[tiers.mine]\nbase = 'free'\nscale = { tpx = 2 }\n", "tiers.mine"),
    ("tier-scale-negative", BASE + "[tiers.mine]\nbase = 'free'\nscale = { tpm = -2 }\n", "scale"),
    ("tier-override-unknown-model",
     BASE + "[tiers.mine]\nbase = 'free'\n[tiers.mine.overrides.'llama-9']\nrpm = 5\n", "llama-9"),
    ("tier-override-word", BASE + "[tiers.mine]\nbase = 'free'\n"
     "[tiers.mine.overrides.'llama-3.1-8b-instant']\nrpm = 'lots'\n", "tiers.mine"),
    ("tier-override-unit", BASE + "[tiers.mine]\nbase = 'free'\n"
     "[tiers.mine.overrides.'llama-3.1-8b-instant']\nrpx = 5\n", "tiers.mine"),
    ("tier-override-negative", BASE + "[tiers.mine]\nbase = 'free'\n"
     "[tiers.mine.overrides.'llama-3.1-8b-instant']\nrpm = -5\n",
     "tiers.mine.overrides.llama-3.1-8b-instant.rpm: -5: must be > 0"),
    ("service-unknown-model", BASE + "[service.'llama-9']\noutput_tps = 100\n", "llama-9"),
    ("service-unknown-param", BASE + "[service.'llama-3.1-8b-instant']\nspeed = 100\n", "speed"),
    ("service-param-word", BASE + "[service.'llama-3.1-8b-instant']\noutput_tps = 'fast'\n", "output_tps"),
    ("capacity-success-2", BASE + "[capacity]\nsuccess = 2\n", "success"),
    ("capacity-unknown-key", BASE + "[capacity]\np99 = '3s'\n", "p99"),
    ("run-jobs-zero", BASE + "[run]\njobs = 0\n", "jobs"),
    ("toml-syntax", "[scenario\nduration = '2m'\n", "TOML"),
    ("toml-duplicate-key", "[scenario]\nduration = '2m'\nduration = '3m'\n" + CLIENT, "TOML"),
    ("binary-file", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\xff\xfe", "UTF-8"),
    ("latin-1-file", "# caf\xe9\n".encode("latin-1") + BASE.encode(), "UTF-8"),
    # a section of the wrong shape: one line, not a traceback from deep inside
    ("policies-as-array-of-tables", BASE + "[[policies]]\nname = 'p'\nextends = 'retry-after'\n",
     "policies: a list of tables: must be a table [policies] ([policies.NAME] for each one, not [[policies]])"),
    ("policies-a-number", "policies = 5\n" + BASE, "policies: 5: must be a table [policies]"),
    ("policy-a-number", "policies = { p = 5 }\n" + BASE, "policies.p: 5: must be a table [policies.p]"),
    ("compare-a-number", "compare = 5\n" + BASE, "compare: 5: must be a table [compare]"),
    ("compare-a-list", "compare = [1]\n" + BASE, "compare: a list: must be a table [compare]"),
    ("scenario-a-list", "scenario = [1]\n" + CLIENT, "scenario: a list: must be a table [scenario]"),
    ("clients-a-number", "clients = 5\n", "clients: 5: must be a list of tables, one [[clients]] per client group"),
    ("clients-a-table", "[clients]\nname = 'c'\n", "clients: a table: must be a list of tables"),
    ("extends-a-number", BASE + "[policies.p]\nextends = 5\n",
     "policies.p.extends: 5: must be the name of a built-in policy (allowed: no-retry,"),
    ("duration-a-list", _with(scenario="duration = ['2m']\n"), "scenario.duration: ['2m'] is not a duration"),
    ("rate-a-table", BASE.replace("rate = '10/min'", "rate = { a = 1 }"), "{'a': 1} is not a rate"),
    ("capacity-tolerance-tiny", BASE + "[capacity]\ntolerance = 1e-300\n",
     "capacity.tolerance: 1e-300: must be >= 0.0001"),
    ("capacity-tolerance-1", BASE + "[capacity]\ntolerance = 1\n",
     "capacity.tolerance: 1: must be < 1"),
    ("capacity-p95-zero", BASE + "[capacity]\np95 = 0\n", "capacity.p95: 0: must be > 0"),
    ("scale-to-zero", BASE.replace("[scenario]", "[org]\ntier = 'ent'\n[scenario]")
     + "[tiers.ent]\nbase = 'developer'\nscale = { rpm = 0.0001 }\n",
     "tiers.ent.scale.rpm: llama-3.1-8b-instant's 1000 x 0.0001 = 0.1: a scaled limit must be a finite number >= 1"),
    ("scale-to-inf", BASE + "[tiers.ent]\nbase = 'developer'\nscale = { tpm = inf }\n",
     "tiers.ent.scale.tpm: inf: Input should be a finite number"),
    ("override-unit-typo",
     BASE + "[tiers.ent]\nbase = 'developer'\noverrides = { 'llama-3.1-8b-instant' = { rpdd = 5 } }\n",
     "tiers.ent.overrides.llama-3.1-8b-instant.rpdd: unknown limit unit 'rpdd'"),
    ("flex-multiplier-to-zero", BASE.replace("[scenario]", "[org]\ntier = 'developer'\nservice_tier = 'flex'\n"
                                             "[org.flex]\nmultiplier = 0.0001\n[scenario]"),
     "org.flex.multiplier: 0.0001 makes llama-3.1-8b-instant's flex"),
    ("dist-key-unused", _with(client="prompt_tokens = { dist = 'uniform', low = 5, high = 50, median = 3 }\n"),
     "dist 'uniform' takes low, high; median would be ignored"),
    ("size-inf", _with(client="prompt_tokens = inf\n"), "Input should be a finite number"),
    ("size-beyond-the-records", _with(client="prompt_tokens = 3e9\n"),
     "must be <= 10000000"),
    ("p95-inf", _with(client="prompt_tokens = { dist = 'lognormal', median = 500, p95 = inf }\n"), "finite"),
    ("completion-above-max", _with(client="max_tokens = 200\ncompletion_tokens = 500\n"),
     "completion_tokens (at least 500) is above max_tokens (at most 200): every answer would be cut"),
    ("deadline-zero", BASE + "[policies.p]\ndeadline = 0\n", "policies.p.deadline"),
    ("run-dask-not-an-address", BASE + "[run]\ndask = 'not an address'\n",
     "run.dask: 'not an address' is not a scheduler address (allowed: 'local', or host:port"),
    ("trace-a-directory", {"s.toml": BASE.replace("{ kind = 'poisson', rate = '10/min' }",
                                                  "{ kind = 'trace', file = '.' }")},
     "s.toml:6: clients[0].arrival.file: trace file"),
    ("flex-calm-1ns", BASE + "[org.flex]\ncalm = '1ns'\n", "org.flex.calm"),
    ("flex-scarce-1ns", BASE + "[org.flex]\nscarce = '1ns'\n", "org.flex.scarce: '1ns': 1e-09 s: a scarce period is 0"),
    ("batch-every-1ns", _with(client="lane = 'batch'\nbatch = { submit_at = 0, submit_every = '1ns' }\n"),
     "submit_every"),
    ("piecewise-out-of-order",
     BASE.replace("{ kind = 'poisson', rate = '10/min' }", "{ kind = 'piecewise', period = '3h', schedule = "
                  "[['0h', '10/min'], ['2h', '5/min'], ['1h', '60/min']] }"),
     "piece 2 starts at 3600 s, not after piece 1 (7200 s)"),
    ("piecewise-beyond-period",
     BASE.replace("{ kind = 'poisson', rate = '10/min' }", "{ kind = 'piecewise', schedule = "
                  "[['0h', '10/min'], ['30h', '60/min']] }"),
     "piece 1 starts at 108000 s, not within the period (86400 s)"),
    ("bursty-burstiness-huge", BASE.replace("kind = 'poisson'", "kind = 'bursty', burstiness = 1e6"),
     "clients[0].arrival.burstiness"),
    ("onoff-on-1ns", BASE.replace("kind = 'poisson'", "kind = 'onoff', on = '1ns', off = '1ns'"),
     "clients[0].arrival.on"),
    ("text-to-whisper", BASE + "[compare]\nmodel = ['llama-3.1-8b-instant', 'whisper-large-v3']\n",
     "compare.model: 'whisper-large-v3' is speech-to-text: its requests are audio, so the group needs audio_seconds"),
    # a TOML boolean or a quoted number where a number goes is refused, not read as 1, 0 or the number
    ("error-rate-true", _with(extra="[org]\nerror_rate = true\n"),
     "org.error_rate: true: Input should be a valid number"),
    ("replications-quoted", _with(scenario="duration = '2m'\nreplications = '3'\n"),
     "scenario.replications: '3': Input should be a valid integer"),
    ("output-tps-true", _with(extra="[service.'llama-3.1-8b-instant']\noutput_tps = true\n"), "output_tps"),
    ("run-jobs-quoted", _with(extra="[run]\njobs = '2'\n"), "run.jobs: '2': Input should be a valid integer"),
    ("users-true", BASE.replace("{ kind = 'poisson', rate = '10/min' }", "{ kind = 'closed', users = true }"),
     "clients[0].arrival.users: True"),
    ("batch-speed-inf", _with(extra="[org.batch]\nspeed_median = inf\n"),
     "org.batch.speed_median: inf: Input should be a finite number"),
    ("batch-bytes-inf", _with(client="lane = 'batch'\nbatch = { bytes_per_token = inf }\n"),
     "clients[0].batch.bytes_per_token: inf: Input should be a finite number"),
    ("tts-max-tokens", BASE.replace("llama-3.1-8b-instant", "playai-tts") + "max_tokens = 64\n",
     "clients[0].max_tokens: 'playai-tts' is text-to-speech: its TPM/TPD count the input characters"),
    ("project-flex-below-1", _with(client="project = 'a'\n", extra="[org]\ntier = 'developer'\nservice_tier = 'flex'\n"
                                   "[org.flex]\nmultiplier = 0.4\n[projects.a]\nlimits = { 'llama-3.1-8b-instant' "
                                   "= { rpm = 1 } }\n"),
     "projects.a.limits.llama-3.1-8b-instant: x flex multiplier 0.4: 1 x 0.4 = 0.4: a scaled limit must be"),
    ("stt-prompt-tokens", BASE.replace("llama-3.1-8b-instant", "whisper-large-v3")
     + "audio_seconds = 30\nprompt_tokens = { dist = 'uniform', low = 0, high = 10 }\n",
     "clients[0].prompt_tokens: 'whisper-large-v3' is speech-to-text: its requests are audio (audio_seconds) and "
     "carry no tokens"),
    ("fallback-to-whisper", _with(client="policy = 'p'\n", extra="[policies.p]\nfallback = ['whisper-large-v3']\n"),
     "policies.p.fallback: 'whisper-large-v3' (stt) cannot answer 'llama-3.1-8b-instant''s requests (chat)"),
    # retry = "none" written with retries allowed would back off as exponential: the two contradict each other
    ("retry-none-with-attempts", _with("[policies.p]\nretry = 'none'\nmax_attempts = 5\n", "policy = 'p'\n"),
     "s.toml:9: policies.p.retry: 'none' makes one attempt, but max_attempts = 5: set max_attempts = 1, or name how "
     "the retries back off (allowed: " + ", ".join(s for s in SCHEDULES if s != "none") + ")"),
    ("retry-none-extends-attempts", _with("[policies.p]\nextends = 'exponential'\nretry = 'none'\n",
                                          "policy = 'p'\n"),
     "policies.p.retry: 'none' makes one attempt, but max_attempts = 6 (from extends 'exponential')"),
    ("trace-file-empty", {"s.toml": BASE.replace("{ kind = 'poisson', rate = '10/min' }",
                                                 "{ kind = 'trace', file = '' }")},
     "s.toml:6: clients[0].arrival.file: '' names no file (allowed: the path of a CSV or JSONL trace"),
    ("trace-file-a-scenario", {"s.toml": BASE.replace("{ kind = 'poisson', rate = '10/min' }",
                                                      "{ kind = 'trace', file = 'other.toml' }"), "other.toml": BASE},
     "s.toml:6: clients[0].arrival.file: 'other.toml' is not a trace (allowed: a CSV or JSONL trace"),
    ("limits-file-empty", _with("[org]\nlimits_file = ''\n"), "s.toml:8: org.limits_file: '' names no file"),
    ("limits-file-new-model-unserved",
     {"s.toml": BASE.replace("llama-3.1-8b-instant", "newmodel") + "[org]\ntier = 'mine'\nlimits_file = 'l.csv'\n",
      "l.csv": "tier,model,rpm,rpd,tpm,tpd\nmine,newmodel,5,1K,1K,1K\n"},
     "s.toml:5: clients[0].model: 'newmodel' has limits but no service figures: describe it in "
     "[service.\"newmodel\"] (at least output_tps)"),
    ("tier-of-the-limits-file-redefined",  # (it silently replaced the file's figures by developer's)
     {"s.toml": BASE + "[org]\ntier = 'ent'\nlimits_file = 'l.csv'\n[tiers.ent]\nbase = 'developer'\n",
      "l.csv": "tier,model,rpm,rpd,tpm,tpd\nent,llama-3.1-8b-instant,5,100,1000,10000\n"},
     "s.toml:10: tiers.ent: 'ent' is a tier of limits_file l.csv; a custom tier needs its own name (e.g. "
     "[tiers.ent-custom] with base = 'ent')"),
    ("tier-base-cycle", BASE + "[tiers.a]\nbase = 'b'\n[tiers.b]\nbase = 'a'\n",
     "s.toml:8: tiers.a.base: 'a' -> 'b' -> 'a' is a cycle (allowed: a chain of bases that ends at a tier that "
     "exists: free, developer)"),
    ("tier-base-self", BASE + "[tiers.a]\nbase = 'a'\n", "tiers.a.base: 'a' -> 'a' is a cycle"),
    ("max-tokens-fraction", _with(client="max_tokens = 1.5\n"),
     "clients[0].max_tokens: 1.5 is not a whole number of tokens (allowed: a whole number such as 512"),
    ("prompt-tokens-fraction", _with(client="prompt_tokens = { dist = 'empirical', values = [100, 2.5] }\n"),
     "clients[0].prompt_tokens: 2.5 is not a whole number of tokens"),
    ("completion-tokens-fraction", _with(client="completion_tokens = { dist = 'uniform', low = 0.5, high = 9 }\n"),
     "clients[0].completion_tokens: 0.5 is not a whole number of tokens"),
    ("audio-seconds-quoted", BASE.replace("llama-3.1-8b-instant", "whisper-large-v3") + "audio_seconds = '30'\n",
     "clients[0].audio_seconds: '30' is not a number of seconds"),
]

TRACES = [
    ("trace-size-beyond-the-records", _trace("timestamp,prompt_tokens\n0,3000000000\n"),
     "t.csv:2: column prompt_tokens: '3000000000' is not allowed (a whole number from 0 to 10,000,000)"),
    ("trace-missing", {"s.toml": _trace("")["s.toml"]}, "not found"),
    ("trace-empty", _trace(""), "empty"),
    ("trace-header-only", _trace("timestamp,prompt_tokens\n"), "no rows"),
    ("trace-no-timestamp", _trace("time,prompt_tokens\n1,5\n"), "timestamp"),
    ("trace-unknown-column", _trace("timestamp,colour\n1,red\n"), "colour"),
    ("trace-token-word", _trace("timestamp,prompt_tokens\n1,5\n2,many\n"), "t.csv:3: column prompt_tokens"),
    ("trace-token-negative", _trace("timestamp,prompt_tokens\n1,-5\n"), "t.csv:2: column prompt_tokens"),
    ("trace-token-fraction", _trace("timestamp,max_tokens\n1,2.5\n"), "t.csv:2: column max_tokens"),
    ("trace-completion-text", _trace("timestamp,completion_tokens\n1,many\n"), "t.csv:2: column completion_tokens"),
    ("trace-completion-over-max", _trace("timestamp,max_tokens,completion_tokens\n1,10,20\n"), "completion_tokens"),
    ("trace-audio-negative", _trace("timestamp,audio_seconds\n1,-3\n"), "t.csv:2: column audio_seconds"),
    ("trace-timestamp-negative", _trace("timestamp\n-1\n"), "t.csv:2: column timestamp"),
    ("trace-timestamp-word", _trace("timestamp\n1\nnoon\n"), "t.csv:3: column timestamp"),
    ("trace-timestamp-bad-date", _trace("timestamp\n2025-01-01T00:00:00Z\n2025-13-45T00:00:00Z\n"),
     "t.csv:3: column timestamp"),
    ("trace-timestamp-empty", _trace("timestamp,prompt_tokens\n1,5\n,6\n"), "t.csv:3: column timestamp"),
    ("trace-timestamp-inf", _trace("timestamp\ninf\n"), "t.csv:2: column timestamp"),
    ("trace-model-unknown", _trace("timestamp,model\n1,llama-9\n"), "llama-9"),
    ("trace-not-utf8", _trace(b"timestamp\n1\xff\n"), "UTF-8"),
    ("trace-csv-ragged", _trace("timestamp,prompt_tokens\n1,5,7,8\n"), "t.csv"),
    ("trace-jsonl-bad-json", _trace('{"timestamp": 1}\n{"timestamp": \n', "t.jsonl"), "t.jsonl:2"),
    ("trace-jsonl-not-object", _trace('{"timestamp": 1}\n[1, 2]\n', "t.jsonl"), "t.jsonl:2"),
    ("trace-jsonl-negative", _trace('{"timestamp": 1, "prompt_tokens": -2}\n', "t.jsonl"), "t.jsonl:1"),
    # each row against its model's kind
    ("trace-tokens-to-whisper", _trace("timestamp,model,prompt_tokens,audio_seconds\n1,whisper-large-v3,0,30\n"
                                       "5,whisper-large-v3,40,30\n"),
     "t.csv:3: column prompt_tokens: 40 on a row for 'whisper-large-v3', which is speech-to-text"),
    ("trace-whisper-without-audio", _trace("timestamp,model,audio_seconds\n1,whisper-large-v3,30\n"
                                           "2,whisper-large-v3,\n"),
     "t.csv:3: column audio_seconds: empty on a row for 'whisper-large-v3', which is speech-to-text: each of its "
     "rows needs audio_seconds > 0"),
    ("trace-whisper-no-audio-column", _trace("timestamp,model\n1,whisper-large-v3\n"),
     "t.csv:2: column audio_seconds: empty on a row for 'whisper-large-v3'"),
    ("trace-whisper-zero-audio", _trace("timestamp,model,audio_seconds\n1,whisper-large-v3,0\n"),
     "t.csv:2: column audio_seconds: 0.0 on a row"),
    ("trace-audio-to-chat", _trace("timestamp,audio_seconds\n1,\n2,12\n"),
     "t.csv:3: column audio_seconds: 12 on a row for 'llama-3.1-8b-instant', which takes no audio"),
    ("trace-max-tokens-to-tts", _trace("timestamp,model,max_tokens\n1,playai-tts,64\n"),
     "t.csv:2: column max_tokens: 64 on a row for 'playai-tts', which is text-to-speech"),
]

COMMANDS = [  # (id, argv with {s} = a valid scenario, {out} = the output directory, {file} = an existing file)
    ("duration-0", ["run", "{s}", "--duration", "0", "--out", "{out}"], "--duration"),
    ("duration-word", ["run", "{s}", "--duration", "abc", "--out", "{out}"], "--duration"),
    ("duration-negative", ["run", "{s}", "--duration=-5m", "--out", "{out}"], "--duration"),
    ("replications-0", ["run", "{s}", "--replications", "0", "--out", "{out}"], "--replications"),
    ("replications-word", ["run", "{s}", "--replications", "two", "--out", "{out}"], "--replications"),
    ("jobs-0", ["run", "{s}", "--jobs", "0", "--out", "{out}"], "--jobs"),
    ("seed-negative", ["run", "{s}", "--seed=-1", "--out", "{out}"], "--seed"),
    ("format-unknown", ["run", "{s}", "--format", "xml", "--out", "{out}"], "--format"),
    ("resume-and-fresh", ["run", "{s}", "--resume", "--fresh", "--out", "{out}"], "--fresh"),
    ("out-is-a-file", ["run", "{s}", "--out", "{file}"], "--out"),
    ("out-under-a-file", ["run", "{s}", "--out", "{file}/sub"], "--out"),
    ("dask-not-an-address", ["run", "{s}", "--dask", "my laptop", "--out", "{out}"], "--dask"),
    ("serve-host-unknown", ["serve", "{s}", "--host", "999.1.1.1", "--port", "18555", "--out", "{out}"],
     "--host 999.1.1.1: not an address to listen on"),
    ("serve-host-not-ours", ["serve", "{s}", "--host", "192.0.2.1", "--port", "18555", "--out", "{out}"],
     "--host 192.0.2.1: not an address of this machine"),
    ("huge-replications", ["run", "{s}", "--replications", "10000000", "--out", "{out}"], "--force"),
    ("huge-duration", ["run", "{s}", "--duration", "100000d", "--out", "{out}"], "--force"),
    # beyond any machine: refused with --force too (numpy could not even size the arrays), the count readable
    ("beyond-any-machine", ["run", "{s}", "--duration", "1000000000000000d", "--force", "--out", "{out}"],
     "about 1.4e+19 simulated requests is more than any machine holds, even with --force (limit 1e+12"),
    ("simlog-beyond-any-machine",
     ["simlog", "{s}", "--duration", "1000000000000000d", "--force", "-o", "{out}/log.jsonl"],
     "about 1.4e+19 simulated requests is more than any machine holds, even with --force (limit 1e+12"),
    ("scenario-missing", ["run", "{out}/nothing.toml", "--out", "{out}"], "nothing.toml"),
    ("scenario-directory", ["check", "{dir}"], "cannot read"),
    ("simlog-over-its-scenario", ["simlog", "{s}", "-o", "{s}"], "that is the scenario being read"),
    ("trace-over-its-log", ["trace", "{file}", "-o", "{file}"], "that is the log being read"),
    ("no-command", [], "COMMAND"),
    ("unknown-command", ["simulate", "{s}"], "simulate"),
    ("no-scenario", ["run"], "scenario"),
    ("unknown-option", ["run", "{s}", "--colour", "red", "--out", "{out}"], "--colour"),
    ("option-of-another-command", ["check", "{s}", "--format", "json"],
     "groqsim check: error: unrecognized arguments: --format json (see groqsim check --help)"),
    ("check-replications-negative", ["check", "{s}", "--replications=-1"], "--replications"),
    ("capacity-duration-0", ["capacity", "{s}", "--duration", "0"], "--duration"),
    ("capacity-jobs-0", ["capacity", "{s}", "--jobs", "0"], "--jobs"),
    ("capacity-huge", ["capacity", "{s}", "--duration", "1000000d"], "--force"),
    ("limits-tier-unknown", ["limits", "--tier", "gold"], "--tier gold: unknown tier 'gold'"),
    ("limits-model-unknown", ["limits", "--model", "llama-9"],
     "--model llama-9: unknown model 'llama-9' (did you mean"),
    ("limits-model-unknown-on-tier", ["limits", "--tier", "developer", "--model", "nope"],
     "--model nope: unknown model on tier 'developer': 'nope'"),
    ("scenario-empty-path", ["run", "", "--out", "{out}"], "'': no scenario file named (an empty path"),
    ("validate-out-is-a-file", ["validate", "--short", "--out", "{file}"], "--out"),
    ("serve-port-too-large", ["serve", "{s}", "--port", "99999", "--out", "{out}"], "--port"),
    ("serve-port-zero", ["serve", "{s}", "--port", "0", "--out", "{out}"], "--port"),
    ("serve-port-word", ["serve", "{s}", "--port", "http", "--out", "{out}"], "--port"),
]


def _expect_one_line_error(code, err, fragment):
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("groqsim"), err
    assert "Traceback" not in err
    assert fragment.lower() in lines[0].lower(), (fragment, err)


def _write(tmp_path, files) -> Path:
    for name, body in files.items():
        path = tmp_path / name
        path.write_bytes(body) if isinstance(body, bytes) else path.write_text(body)
    return tmp_path / "s.toml"


@pytest.mark.parametrize("case", SCENARIOS + TRACES, ids=lambda c: c[0])
def test_malformed_input_is_one_line_and_writes_nothing(case, tmp_path, capsys):
    name, files, fragment = case
    scenario = _write(tmp_path, files if isinstance(files, dict) else {"s.toml": files})
    out = tmp_path / "out"
    for command in (["check", str(scenario)], ["run", str(scenario), "--out", str(out), "--jobs", "1"]):
        code = main(command)
        _expect_one_line_error(code, capsys.readouterr().err, fragment)
        assert not out.exists(), f"{name}: {command[0]} left {out}"


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_closed_loop_that_cannot_advance_is_one_line_not_a_hang(jobs, tmp_path, capsys):
    # users with no think time whose requests a full queue may drop at once: a dropped request ends the
    # instant it starts, and its user sends again at that instant, so simulated time would never move (a run
    # once looped for ever). With a cooldown the queue is full only after a 429, which only running finds:
    # the run stops with one line naming the key's line and the grid point (Developer's runs are fine)
    toml = BASE.replace("{ kind = 'poisson', rate = '10/min' }", "{ kind = 'closed', users = 2, think = 0 }\n"
                        "policy = 'one'").replace("llama-3.1-8b-instant", "openai/gpt-oss-20b") \
        + "[policies.one]\ncooldown = '10s'\nqueue_size = 0\n[compare]\ntier = ['developer', 'free']\n"
    scenario = _write(tmp_path, {"s.toml": toml})
    assert main(["check", str(scenario)]) == 0
    capsys.readouterr()
    code = main(["run", str(scenario), "--out", str(tmp_path / "out"), "--jobs", jobs, "--replications", "2",
                 "--quiet"])
    err = capsys.readouterr().err
    _expect_one_line_error(code, err, f"{scenario}:6: clients[0].arrival.think: client 'c': a think time of 0 "
                                      "and requests that end the instant they start")
    # the runs finished before it (Developer's: how many depends on the workers) are kept, and said so
    assert re.search(r"give arrival\.think > 0 \(at grid point 1: tier = 'free'\); the [12] run\(s\) finished are "
                     rf"kept in {re.escape(str(tmp_path / 'out' / 'runs'))}: the same command, once that is fixed, "
                     r"reuses them\n$", err), err
    _write(tmp_path, {"t.toml": toml.replace("think = 0", "think = '1ms'")})
    thinking = tmp_path / "t.toml"
    assert main(["run", str(thinking), "--out", str(tmp_path / "ok"), "--jobs", "1", "--quiet"]) == 0  # time passes


def test_a_closed_loop_certain_to_stop_time_is_refused_by_check(tmp_path, capsys):
    # an in-flight cap of 1 and no queue for 2 users who never think: the second user's request is dropped at
    # once, for ever; check (and run, before any run) says so, naming the grid point that does it
    toml = BASE.replace("{ kind = 'poisson', rate = '10/min' }", "{ kind = 'closed', users = 2, think = 0 }") \
        .replace("llama-3.1-8b-instant", "openai/gpt-oss-20b") \
        + "[policies.one]\nmax_in_flight = 1\nqueue_size = 0\n[compare]\npolicy = ['no-retry', 'one']\n"
    scenario = _write(tmp_path, {"s.toml": toml})
    for command in (["check", str(scenario)], ["run", str(scenario), "--out", str(tmp_path / "out"), "--jobs", "1"]):
        _expect_one_line_error(main(command), capsys.readouterr().err, (
            f"{scenario}:6: clients[0].arrival.think: 0 for 2 users with policy 'one' (max_in_flight = 1, "
            "queue_size = 0) (at grid point policy = 'one'): the client's queue is full at the start"))
        assert not (tmp_path / "out").exists()
    # room for every user (1 in flight + 1 queued), or a load that leaves one user: fine; load x1.5: 3 users
    for fixed in ("queue_size = 1", "load = [0.5]\npolicy = ['one']\n"):
        edited = toml.replace("queue_size = 0", fixed) if fixed.startswith("queue") else toml.replace(
            "policy = ['no-retry', 'one']\n", fixed)
        _write(tmp_path, {"s.toml": edited})
        assert main(["check", str(scenario)]) == 0, capsys.readouterr().err
    _write(tmp_path, {"s.toml": toml.replace("queue_size = 0", "queue_size = 1").replace(
        "policy = ['no-retry', 'one']", "policy = ['one']\nload = [1, 1.5]")})
    _expect_one_line_error(main(["check", str(scenario)]), capsys.readouterr().err,
                           "0 for 3 users with policy 'one' (max_in_flight = 1, queue_size = 1) (at grid point "
                           "policy = 'one', load = 1.5)")
    # the file's own policy, nothing compared: no grid point to name; a cooldown beside the cap changes nothing
    _write(tmp_path, {"s.toml": toml.replace("[compare]\npolicy = ['no-retry', 'one']\n", "").replace(
        "think = 0 }", "think = 0 }\npolicy = 'one'").replace("queue_size = 0", "queue_size = 0\ncooldown = '5s'")})
    _expect_one_line_error(main(["check", str(scenario)]), capsys.readouterr().err,
                           "0 for 2 users with policy 'one' (max_in_flight = 1, queue_size = 0): the client's queue")


def test_capacity_refuses_a_search_beyond_its_work_limit_before_simulating_it(tmp_path, capsys):
    # limits a million times Developer's: the search starts at twice the ceiling's load, ~1e8 x 20 requests a
    # minute; it ran out of memory with a traceback before
    toml = BASE.replace("llama-3.1-8b-instant", "openai/gpt-oss-20b") + (
        "[org]\ntier = 'mine'\n[tiers.mine]\nbase = 'developer'\n"
        "scale = { rpm = 1e6, rpd = 1e6, tpm = 1e6, tpd = 1e6 }\n"
        "[capacity]\nmax_load = 1e9\n")
    scenario = _write(tmp_path, {"s.toml": toml})
    code = main(["capacity", str(scenario), "--jobs", "1", "--quiet"])
    err = capsys.readouterr().err
    _expect_one_line_error(code, err, f"{scenario}: capacity: the search would simulate load x")
    assert "lower [capacity] max_load (1e+09) or add --force" in err


def test_capacity_without_traffic_says_there_is_nothing_to_scale(tmp_path, capsys):
    """Every group at rate 0: no load sends a request, so the search is refused, not reported as a target out
    of reach at any load beside nan ceilings."""
    scenario = _write(tmp_path, {"s.toml": BASE.replace("'10/min'", "0").replace("llama-3.1-8b-instant",
                                                                                    "openai/gpt-oss-20b")})
    code = main(["capacity", str(scenario), "--jobs", "1", "--quiet"])
    _expect_one_line_error(code, capsys.readouterr().err, f"{scenario}:6: clients[0].arrival: capacity: no traffic to "
                           "scale: every client group's arrival rate is 0")


def test_an_error_line_skips_a_commented_out_key(tmp_path, capsys):
    """The line number is the key's, not a comment's that names it (comment_line.toml of the audit)."""
    toml = BASE.replace("[[clients]]\n", "[[clients]]\n# policy = 'zzz'\n") + "policy = 'nope'  # policy = 'x'\n"
    scenario = _write(tmp_path, {"s.toml": toml})
    assert main(["check", str(scenario)]) == 2
    assert f"{scenario}:8: clients[0].policy: unknown policy 'nope'" in capsys.readouterr().err


def test_custom_tiers_resolve_in_dependency_order(tmp_path, capsys):
    """A tier may build on one defined further down the file; both orders give the same limits."""
    from sim.scenario import load_scenario
    tiers = {"a": "[tiers.a]\nbase = 'b'\nscale = { rpm = 2 }\n", "b": "[tiers.b]\nbase = 'developer'\n"
                                                                      "scale = { rpm = 3 }\n"}
    limits = []
    for order in ("ab", "ba"):
        scenario = _write(tmp_path, {"s.toml": BASE + "[org]\ntier = 'a'\n" + "".join(tiers[t] for t in order)})
        assert main(["check", str(scenario)]) == 0, capsys.readouterr().err
        limits.append(load_scenario(scenario).catalog().limits("a", "llama-3.1-8b-instant"))
    assert limits[0] == limits[1] and limits[0].rpm == 6 * load_scenario(scenario).catalog().limits(
        "developer", "llama-3.1-8b-instant").rpm


def test_a_byte_order_mark_is_not_part_of_the_toml(tmp_path, capsys):
    scenario = _write(tmp_path, {"s.toml": b"\xef\xbb\xbf" + BASE.encode()})  # as Windows editors save UTF-8
    assert main(["check", str(scenario)]) == 0, capsys.readouterr().err


def test_scenario_errors_name_the_file_and_line(tmp_path, capsys):
    scenario = _write(tmp_path, {"s.toml": BASE + "[compare]\nload = [1, -1]\n"})
    assert main(["check", str(scenario)]) == 2
    err = capsys.readouterr().err
    assert f"{scenario}:8: compare.load: -1 is not allowed" in err


@pytest.mark.parametrize("case", COMMANDS, ids=lambda c: c[0])
def test_malformed_command_line_is_one_line_and_writes_nothing(case, tmp_path, capsys):
    name, argv, fragment = case
    scenario = _write(tmp_path, {"s.toml": BASE})
    existing = tmp_path / "existing.txt"
    existing.write_text("keep me\n")
    (tmp_path / "folder").mkdir()
    out = tmp_path / "out"
    argv = [a.format(s=scenario, out=out, file=existing, dir=tmp_path / "folder") for a in argv]
    code = main(argv)
    _expect_one_line_error(code, capsys.readouterr().err, fragment)
    assert not out.exists() or not any(out.rglob("*")), f"{name} left files in {out}"
    assert existing.read_text() == "keep me\n"


def test_output_paths_that_cannot_be_written_are_one_line(tmp_path, capsys):
    """trace's file and calibrate's directory: a directory, a missing one, a file in the way."""
    scenario = _write(tmp_path, {"s.toml": BASE.replace("10/min", "90/min")})  # above Free's RPM 30: 429s
    log = tmp_path / "log.jsonl"
    assert main(["simlog", str(scenario), "-o", str(log)]) == 0
    existing = tmp_path / "existing.txt"
    existing.write_text("keep me\n")
    capsys.readouterr()
    for argv, fragment in ((["trace", log, "-o", tmp_path], "-o"),
                           (["trace", log, "-o", tmp_path / "no" / "t.csv"], "-o"),
                           (["calibrate", log, "--out", existing, "--no-plots"], "--out"),
                           (["calibrate", log, "--out", existing / "sub", "--no-plots"], "--out")):
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        _expect_one_line_error(code, err, fragment)
        if argv[3] == existing:
            assert out == ""  # a file in the way is said before the calibration's work and report
    assert existing.read_text() == "keep me\n" and not (tmp_path / "no").exists()


def test_serve_on_a_port_already_taken_is_one_line(tmp_path, capsys):
    import socket
    scenario = _write(tmp_path, {"s.toml": BASE})
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        code = main(["serve", str(scenario), "--port", str(port), "--out", str(tmp_path / "o")])
    _expect_one_line_error(code, capsys.readouterr().err, f"--port {port}: cannot listen on 127.0.0.1:{port}")


def test_unreachable_dask_scheduler_is_refused_within_seconds(tmp_path, capsys):
    import time
    scenario = _write(tmp_path, {"s.toml": BASE})
    start = time.monotonic()
    code = main(["run", str(scenario), "--dask", "tcp://127.0.0.1:9", "--out", str(tmp_path / "out")])
    elapsed = time.monotonic() - start
    err = capsys.readouterr().err
    assert code == 2 and elapsed < 20, (code, elapsed)
    assert "waiting up to" in err  # it says what it waits for before it waits
    lines = err.strip().splitlines()
    assert lines[-1].startswith("groqsim: error: --dask tcp://127.0.0.1:9: cannot reach") and "Traceback" not in err
    assert not (tmp_path / "out").exists()
    # --fresh removes a study's finished runs only once the work can start: not for a scheduler it cannot reach
    assert main(["run", str(scenario), "--out", str(tmp_path / "done"), "--jobs", "1", "--quiet"]) == 0
    before = sorted(p.name for p in (tmp_path / "done" / "runs").iterdir())
    code = main(["run", str(scenario), "--dask", "tcp://127.0.0.1:9", "--fresh", "--out", str(tmp_path / "done")])
    assert code == 2 and before and sorted(p.name for p in (tmp_path / "done" / "runs").iterdir()) == before


def test_force_runs_beyond_the_limit(tmp_path, capsys, monkeypatch):
    import sim.cli
    monkeypatch.setattr(sim.cli, "MAX_REQUESTS", 5)
    scenario = _write(tmp_path, {"s.toml": BASE})
    out = tmp_path / "out"
    assert main(["run", str(scenario), "--out", str(out), "--jobs", "1"]) == 2
    assert "about 20 simulated requests" in capsys.readouterr().err
    assert main(["run", str(scenario), "--out", str(out), "--jobs", "1", "--force", "--format", "csv"]) == 0
    assert "groqsim: 1 run(s), about 20 simulated requests" in capsys.readouterr().err


def test_unsorted_trace_is_sorted_with_one_warning(tmp_path, capsys):
    scenario = _write(tmp_path, _trace("timestamp,prompt_tokens\n5,10\n1,20\n9,30\n", "unsorted.csv"))
    assert main(["check", str(scenario)]) == 0
    err = [line for line in capsys.readouterr().err.strip().splitlines() if "shut down by Groq" not in line]
    assert err == [f"groqsim: warning: {tmp_path / 'unsorted.csv'}:3: timestamps are not in order (1 after 5); "
                   "replaying the trace sorted by timestamp"]
    from sim.trace import read_trace
    assert list(read_trace(tmp_path / "unsorted.csv")["prompt_tokens"]) == [20, 10, 30]


def test_library_warnings_do_not_reach_stderr(tmp_path):
    """A study whose every request is refused as too large makes numpy warn about empty means: not shown."""
    scenario = _write(tmp_path, {"s.toml": _with(client="prompt_tokens = 9000\n")})
    res = subprocess.run([sys.executable, "-W", "default", "-m", "sim", "run", str(scenario), "--out",
                          str(tmp_path / "out"), "--jobs", "1", "--quiet", "--replications", "2"],
                         capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    # only the model's shut-down warning, which --quiet does not hide (it hides progress and estimates)
    assert res.stderr.splitlines() == ["groqsim: warning: model 'llama-3.1-8b-instant' was shut down by Groq on "
                                       "2026-08-16 (free and developer tiers; Enterprise goes on)"]


SUBPROCESS = [  # the real command, for a few cases: exit status 2, one line, no traceback
    ("binary", {"s.toml": b"\x00\x01\x02\xff"}, ["check", "{s}"], "UTF-8"),
    ("duration-0", {"s.toml": BASE}, ["run", "{s}", "--duration", "0", "--out", "{out}"], "--duration"),
    ("out-is-a-file", {"s.toml": BASE, "f": "x"}, ["run", "{s}", "--out", "{d}/f"], "--out"),
    ("usage", {"s.toml": BASE}, ["run", "{s}", "--jobs", "many"], "--jobs"),
    ("trace", _trace("timestamp\n1\nx\n"), ["run", "{s}", "--out", "{out}"], "t.csv:3"),
]


@pytest.mark.parametrize("case", SUBPROCESS, ids=lambda c: c[0])
def test_the_real_command_gives_one_line(case, tmp_path):
    _, files, argv, fragment = case
    scenario = _write(tmp_path, files)
    argv = [a.format(s=scenario, out=tmp_path / "out", d=tmp_path) for a in argv]
    res = subprocess.run([sys.executable, "-m", "sim", *argv], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    _expect_one_line_error(res.returncode, res.stderr, fragment)
    assert not (tmp_path / "out").exists()


def test_every_option_has_help_text():
    from sim.cli import build_parser
    parser = build_parser()
    sub = next(a for a in parser._actions if a.choices and isinstance(a.choices, dict))
    for name, sp in sub.choices.items():
        for action in sp._actions:
            if action.dest != "help":
                assert action.help, f"groqsim {name} {action.option_strings or action.dest} has no help"
    assert "'-' means" in textwrap.dedent(sub.choices["limits"].format_help()).replace("\n", " ")


def test_malformed_input_count():
    """The note's figure: how many malformed inputs this file tries."""
    assert len(SCENARIOS) + len(TRACES) + len(COMMANDS) + len(SUBPROCESS) + 1 >= 100


def test_the_command_returns_mains_status_and_leaves_its_objects_frozen_for_a_quick_exit(monkeypatch, capsys):
    """``console`` (the ``groqsim`` entry point and ``python -m sim``) is ``main`` plus a gc.freeze before the
    interpreter exits; ``main`` itself, which tests and notebooks call, leaves the collector alone."""
    import gc

    from sim.cli import console
    assert gc.get_freeze_count() == 0
    assert main(["limits", "--tier", "nope"]) == 2 and gc.get_freeze_count() == 0
    monkeypatch.setattr(sys, "argv", ["groqsim", "limits", "--tier", "nope"])
    try:
        assert console() == 2
        assert gc.get_freeze_count() > 1000
    finally:
        gc.unfreeze()
    assert "nope" in capsys.readouterr().err


def test_the_command_runs_blas_on_one_thread_unless_the_user_said_otherwise(monkeypatch, capsys):
    from sim.cli import BLAS_THREADS, console
    for name in BLAS_THREADS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "3")
    monkeypatch.setattr(sys, "argv", ["groqsim", "limits", "--tier", "nope"])
    try:
        assert console() == 2
    finally:
        gc.unfreeze()
    assert [os.environ[name] for name in BLAS_THREADS] == ["1", "3", "1"]


@pytest.mark.skipif(not Path("/proc/self/task").is_dir() or (os.cpu_count() or 1) < 2,
                    reason="counts the process's threads in /proc; OpenBLAS starts none on one core")
def test_scipys_blas_loaded_while_the_command_runs_starts_no_spinning_threads():
    """What the setting is for: scipy ships its own OpenBLAS, loaded when the comparison imports scipy.special
    (while the workers run); with several cores it would start helper threads that spin on the workers'
    cores.  Counted in a fresh interpreter (this one may have loaded scipy already)."""
    code = textwrap.dedent("""
        import os, sys
        import sim.cli
        def main(argv=None):
            import scipy.special  # what the comparison imports
            return 0
        sim.cli.main = main
        before = len(os.listdir("/proc/self/task"))
        sim.cli.console()
        print(before, len(os.listdir("/proc/self/task")))
        """)
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                                            "OMP_NUM_THREADS")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    before, after = map(int, done.stdout.split())
    assert after == before, done.stderr


def test_a_size_may_be_written_as_a_count_and_a_word_says_what_is_allowed(tmp_path, capsys):
    from sim.scenario import scenario_from_dict
    client = {"name": "c", "model": "llama-3.1-8b-instant", "arrival": {"kind": "poisson", "rate": 1},
              "max_tokens": "2K", "prompt_tokens": "1.5K"}
    (c,) = scenario_from_dict({"scenario": {"duration": 60}, "clients": [client]}).clients
    assert (c.max_tokens.dist, c.max_tokens.value, c.prompt_tokens.value) == ("fixed", 2000, 1500)
    path = _write(tmp_path, {"s.toml": _with(client="max_tokens = 'lots'\n")})
    assert main(["check", str(path)]) == 2
    assert ("clients[0].max_tokens: 'lots' is not a size (allowed: a number such as 200 or 2K, or a "
            "distribution") in capsys.readouterr().err


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_an_output_that_cannot_be_written_is_one_line_and_the_others_are_written(jobs, tmp_path, capsys):
    scenario = _write(tmp_path, {"s.toml": BASE.replace("llama-3.1-8b-instant", "openai/gpt-oss-20b")})
    out = tmp_path / "out"
    (out / "latency_cdf.png").mkdir(parents=True)  # a directory where a figure goes
    (out / "summary.csv").mkdir()
    code = main(["run", str(scenario), "--out", str(out), "--jobs", jobs, "--quiet"])
    err = capsys.readouterr().err
    _expect_one_line_error(code, err, f"{out / 'summary.csv'}: cannot write (Is a directory) (and 1 other file(s)); "
                                      "the other outputs were written")
    for name in ("comparison.csv", "requests.parquet", "throughput_over_time.png", "utilisation_over_time.png",
                 "attempts_per_success.png"):
        assert (out / name).is_file(), name
    assert len(list((out / "runs").glob("*.json"))) == 1  # the run is kept: the same command resumes it


def test_a_calibration_output_that_cannot_be_written_is_one_line(tmp_path, capsys):
    out = tmp_path / "cal"
    (out / "calibrated.toml").mkdir(parents=True)
    code = main(["calibrate", str(ROOT / "scenarios" / "logs" / "example_groq_calls.jsonl"), "--out", str(out),
                 "--no-plots"])
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.startswith("groqsim")]
    assert code == 2 and lines == [f"groqsim: error: {out / 'calibrated.toml'}: cannot write (Is a directory); "
                                   "the other outputs were written"], err
    assert (out / "report.txt").is_file() and "Traceback" not in err


@pytest.mark.parametrize("argv, said", [
    (["limits", "--tier", ""], "--tier '': empty (allowed: a tier name, e.g. free, or leave the option out)"),
    (["limits", "--model", " "], "--model ' ': empty (allowed: a model name, e.g. openai/gpt-oss-20b, or leave the "
                                 "option out)"),
    (["run", "scenarios/chatbot_free_vs_developer.toml", "--out", ""],
     "--out '': empty (allowed: a path, or leave the option out)"),
    (["trace", "scenarios/logs/example_groq_calls.jsonl", "-o", ""], "--output '': empty (allowed: a path)"),
    (["serve", "scenarios/chatbot_free_vs_developer.toml", "--host", ""],
     "--host '': empty (allowed: an address, e.g. 127.0.0.1, or leave the option out)"),
], ids=["tier", "model", "out", "output", "host"])
def test_an_empty_option_is_refused_not_taken_for_its_default(argv, said, capsys):
    """``--tier ''`` listed every tier and ``--out ''`` wrote to results/<stem>: an empty value is no value."""
    assert main(argv) == 2
    assert capsys.readouterr().err == f"groqsim: error: {said}\n"


def test_check_lists_every_model_a_run_may_send_to(capsys):
    """The trace's rows name gpt-oss-120b besides the client group's gpt-oss-20b (36 % of the rows): check says
    so (it was visible only in a figure and in capacity's output)."""
    assert main(["check", str(ROOT / "scenarios" / "trace_replay.toml")]) == 0
    assert "\n  models: openai/gpt-oss-120b, openai/gpt-oss-20b\n" in capsys.readouterr().out
