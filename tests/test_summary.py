"""Summaries computed by hand on a small run record."""
import numpy as np
import pandas as pd
import pytest

from sim import RunSpec
from sim.catalog import Catalog, Limits
from sim.config import Client, Org, arrival, policy_table
from sim.records import OUTCOMES, REFUSED_BY, RunResult
from sim.summary import summarize, utilisation

MODEL = "m"


def _result():
    cat = Catalog({"t": {MODEL: Limits(rpm=10, tpm=1000)}})
    spec = RunSpec(clients=[Client(name="c", model=MODEL, arrival=arrival(kind="poisson", rate=1.0))],
                   policies=policy_table(), org=Org(tier="t"), catalog=cat, duration=120.0, warmup=60.0)
    outcome = ["ok", "ok", "gave_up", "ok", "too_large", "ok"]
    created = [10.0, 61.0, 62.0, 70.0, 80.0, 119.0]
    finished = [11.0, 63.0, 64.0, 75.0, 80.5, 125.0]  # the last finishes after the window
    rec = pd.DataFrame({
        "model": pd.Categorical([MODEL] * 6), "created": created, "finished": finished,
        "latency": np.subtract(finished, created),
        "admitted": [10.0, 61.0, np.nan, 72.0, np.nan, 119.0],
        "attempts": np.array([1, 1, 3, 2, 1, 1], np.int16), "n429": np.array([0, 0, 3, 1, 0, 0], np.int16),
        "outcome": pd.Categorical(outcome, categories=OUTCOMES),
        "prompt_tokens": [100] * 6, "completion_tokens": [50] * 6, "charged_tokens": [200.0] * 6,
        "audio_seconds": [0.0] * 6})
    refusals = pd.DataFrame({"time": [62.0, 63.0, 63.5, 70.0, 5.0], "model": pd.Categorical([MODEL] * 5),
                             "unit": pd.Categorical(["tpm", "tpm", "rpm", "tpm", "rpm"], categories=REFUSED_BY)})
    return RunResult(rec, refusals, spec)


def test_summary_counts_the_window_by_creation_and_throughput_by_finish():
    s = summarize(_result())
    assert (s["offered"], s["ok"], s["gave_up"], s["too_large"]) == (5, 3, 1, 1)
    assert s["offered"] == sum(s[k] for k in OUTCOMES)
    assert s["success_ratio"] == pytest.approx(3 / 5)
    assert s["throughput_rpm"] == pytest.approx(2.0)  # 2 successes finished in [60, 120) over 1 minute
    assert s["attempts"] == 8 and s["n429"] == 4 and s["n429_per_attempt"] == pytest.approx(0.5)
    assert s["attempts_per_success"] == pytest.approx(8 / 3)
    assert s["latency_p50"] == pytest.approx(5.0) and s["latency_max"] == pytest.approx(6.0)
    assert s["mean_wait"] == pytest.approx((0 + 2 + 0) / 3)
    assert s["binding"] == "tpm"  # 3 TPM refusals in the window against 1 RPM (the one at t=5 is outside)


def test_utilisation_is_charge_over_refill_in_the_window():
    util = utilisation(_result())
    # three admissions in [60, 120): 3 requests of RPM 10/min over 1 minute, 600 tokens of TPM 1000/min
    assert util[(MODEL, "rpm")] == pytest.approx(0.3)
    assert util[(MODEL, "tpm")] == pytest.approx(0.6)
    s = summarize(_result())
    assert s["top_unit"] == "tpm" and s["top_util"] == pytest.approx(0.6)
