"""The service timing model against the real usage samples of groq-real-responses.md."""
import csv
import dataclasses
import io
import math
import re
from dataclasses import fields, replace
from importlib import resources

import numpy as np
import pytest
from scipy import stats

from sim.errors import ConfigError
from sim.service import (
    SERVICE_KEYS,
    Z90,
    Z95,
    ServiceModel,
    ServiceParams,
    fit_prefill,
    lognormal_sigma,
    lognormal_sigma_q,
    load_service_table,
    service_defaults,
    service_models,
)

# the 18 queue_time values of the reference, typed from groq-real-responses.md section 1
REFERENCE_QUEUE = [0.019, 0.019, 0.043, 0.045, 0.046, 0.049, 0.051, 0.052, 0.107, 0.149, 0.161, 0.175, 0.205,
                   0.215, 0.232, 0.234, 0.351, 0.361]
# (model, prompt tokens that need prefill, prompt_time) from the same section
REFERENCE_PREFILL = [("llama-3.3-70b-versatile", 86, 0.018903883), ("llama-3.3-70b-versatile", 352, 0.0182),
                     ("openai/gpt-oss-120b", 275, 0.0150), ("openai/gpt-oss-120b", 1678 - 1536, 0.013),
                     ("openai/gpt-oss-20b", 137, 0.0116), ("qwen/qwen3-32b", 260, 0.0101)]
TABLE = load_service_table()


def rows(name):
    return list(csv.DictReader(io.StringIO(resources.files("sim").joinpath(f"data/{name}").read_text())))


def test_normal_quantiles_are_scipys():
    assert Z90 == pytest.approx(stats.norm.ppf(0.90), abs=1e-12)
    assert Z95 == pytest.approx(stats.norm.ppf(0.95), abs=1e-12)


def test_queue_samples_file_is_the_reference():
    assert sorted(float(r["queue_time"]) for r in rows("queue_time_samples.csv")) == REFERENCE_QUEUE


def test_default_queue_lognormal_matches_the_18_real_samples():
    d = service_defaults()
    assert d["queue_median"] == pytest.approx(np.median(REFERENCE_QUEUE), abs=5e-4)
    assert d["queue_p90"] == pytest.approx(np.percentile(REFERENCE_QUEUE, 90), abs=5e-4)
    model = ServiceModel("m", TABLE["llama-3.3-70b-versatile"])
    z = np.random.default_rng(1).standard_normal(50_000)
    q = np.array([model.times(10, 10, 0, 0.0, zi)[0] for zi in z])
    assert np.median(q) == pytest.approx(0.128, rel=0.02)
    assert np.percentile(q, 90) == pytest.approx(0.269, rel=0.03)
    # its mean (0.151 s) is within 10 % of the samples' (0.140 s; the lognormal's tail runs past their max 0.36 s),
    # although the samples are bimodal (eight at 0.02-0.05 s, ten at 0.1-0.36 s: KS rejects the shape, p < 0.01)
    sigma = math.log(d["queue_p90"] / d["queue_median"]) / Z90
    fitted = stats.lognorm(s=sigma, scale=d["queue_median"])
    assert fitted.mean() == pytest.approx(np.mean(REFERENCE_QUEUE), rel=0.10)
    assert np.mean(q) == pytest.approx(fitted.mean(), rel=0.02)


def test_prefill_fit_reproduces_the_table_and_the_samples():
    fixed, rates, default = fit_prefill()
    assert fixed == pytest.approx(0.0101 / 2)
    assert service_defaults()["prefill_fixed"] == pytest.approx(fixed)
    assert service_defaults()["prefill_tps"] == pytest.approx(default, rel=1e-4)
    for model, rate in rates.items():
        assert TABLE[model].prefill_tps == pytest.approx(rate, rel=1e-4)
    # each model's total prompt_time over its samples is reproduced exactly (speed factor 1)
    for model in rates:
        p = TABLE[model]
        predicted = sum(p.prefill_fixed + n / p.prefill_tps for m, n, _ in REFERENCE_PREFILL if m == model)
        real = sum(t for m, _, t in REFERENCE_PREFILL if m == model)
        assert predicted == pytest.approx(real, rel=1e-3)
    # every sample within a factor 2 (llama-3.3-70b's two samples take the same time for 86 and 352 tokens,
    # which no line with a positive slope fits better), and prefill is thousands of tokens/s, not 10 x the output speed
    for m, n, t in REFERENCE_PREFILL:
        p = TABLE[m]
        assert 1 / 2 < (p.prefill_fixed + n / p.prefill_tps) / t < 2
    for model, p in TABLE.items():
        if p.kind == "chat":
            assert p.prefill_tps >= 10_000, model


def test_prefill_fit_ignores_the_retired_model_and_counts_only_uncached_tokens():
    samples = [{"model": "a", "prompt_tokens": "100", "cached_tokens": "0", "prompt_time": "0.02",
                "used_in_fit": "yes"},
               {"model": "a", "prompt_tokens": "1100", "cached_tokens": "1000", "prompt_time": "0.02",
                "used_in_fit": "yes"},
               {"model": "b", "prompt_tokens": "5", "cached_tokens": "0", "prompt_time": "0.001", "used_in_fit": "no"}]
    fixed, rates, default = fit_prefill(samples)
    assert fixed == 0.01 and rates == {"a": pytest.approx(200 / 0.02)} and default == pytest.approx(10_000)
    # a sample without cached tokens (empty, or no column) has none: all its prompt tokens need prefill
    bare = [{"model": "a", "prompt_tokens": "100", "prompt_time": "0.02"},
            {"model": "b", "prompt_tokens": "100", "cached_tokens": "", "prompt_time": "0.03"}]
    fixed, rates, default = fit_prefill(bare)
    assert fixed == 0.01 and rates == pytest.approx({"a": 100 / 0.01, "b": 100 / 0.02}, rel=1e-12)
    assert default == pytest.approx(7500.0, rel=1e-12)


def test_total_time_is_prompt_plus_completion_and_queue_is_apart():
    p = TABLE["llama-3.3-70b-versatile"]
    m = ServiceModel("m", p)
    q, pt, ct = m.times(86, 220, 0.0, 0.0, 0.0)
    assert q == pytest.approx(p.queue_median)  # z = 0: the median
    inv_s = math.exp(math.log1p(p.speed_cv ** 2) / 2)  # 1 / S at z = 0, with E[S] = 1
    assert pt == pytest.approx((p.prefill_fixed + 86 / p.prefill_tps) * inv_s)
    assert ct == pytest.approx(220 / p.output_tps * inv_s)
    # the real sample: prompt 86 tokens in 0.0189 s, 220 completion tokens in 0.691 s (this model: 280 t/s)
    assert pt == pytest.approx(0.0189, rel=0.5) and ct == pytest.approx(0.691, rel=0.25)
    # mean speed over requests equals the table's output speed
    z = np.random.default_rng(3).standard_normal(20_000)
    speeds = [1000 / m.times(0, 1000, 0, zi, 0.0)[2] for zi in z]
    assert np.mean(speeds) == pytest.approx(p.output_tps, rel=0.01)


def test_speech_models_time_audio_and_characters():
    stt = ServiceModel("w", TABLE["whisper-large-v3"])
    _, pt, ct = stt.times(0, 0, 189.0, 0.0, 0.0)
    inv_s = math.exp(math.log1p(TABLE["whisper-large-v3"].speed_cv ** 2) / 2)
    assert pt == 0.0 and ct == pytest.approx(inv_s)
    tts = ServiceModel("t", TABLE["playai-tts"])
    assert tts.times(140, 0, 0, 0.0, 0.0)[1] == pytest.approx(inv_s)


def test_round_trip_is_a_lognormal_with_the_table_quantiles():
    p = TABLE["openai/gpt-oss-20b"]
    m = ServiceModel("m", p)
    assert m.round_trip(0.0) == pytest.approx(p.rtt_median) and m.rtt == p.rtt_median
    assert m.round_trip(Z90) == pytest.approx(p.rtt_p90)
    z = np.random.default_rng(5).standard_normal(1000)
    pairs = m.with_round_trips(z)
    assert [x for x, _ in pairs] == z.tolist() and all(r == m.round_trip(x) for x, r in pairs)  # the same floats
    assert m.round_trips(z) == [r for _, r in pairs]
    v = np.array([r for _, r in pairs])
    assert np.all(v > 0)
    assert 0.01 <= p.rtt_median <= 0.1 and p.rtt_p90 > p.rtt_median  # tens of ms, with a spread
    none = ServiceModel("m", replace(p, rtt_median=0.0, rtt_p90=0.0))
    assert none.round_trip(2.0) == 0.0 and all(r == 0.0 for _, r in none.with_round_trips(z))


def test_docs_and_pricing_speed_sets():
    pricing = load_service_table("pricing")
    assert TABLE["llama-3.1-8b-instant"].output_tps == 560 and pricing["llama-3.1-8b-instant"].output_tps == 840
    assert TABLE["llama-3.3-70b-versatile"].output_tps == 280 and pricing["llama-3.3-70b-versatile"].output_tps == 394
    assert TABLE["meta-llama/llama-guard-4-12b"].output_tps == 1200
    assert pricing["meta-llama/llama-guard-4-12b"].output_tps == 325
    assert TABLE["whisper-large-v3"].audio_speed_factor == 189 and pricing["whisper-large-v3"].audio_speed_factor == 217
    assert pricing["whisper-large-v3-turbo"].audio_speed_factor == 228
    assert pricing["groq/compound"].output_tps == TABLE["groq/compound"].output_tps == 450  # docs only
    assert pricing["llama-3.3-70b-versatile"].prefill_tps == TABLE["llama-3.3-70b-versatile"].prefill_tps
    assert "pricing page" in pricing["qwen/qwen3-32b"].source and "docs" in TABLE["qwen/qwen3-32b"].source
    for r in rows("service_params.csv") + rows("service_speeds_pricing.csv"):
        assert r["source"] and r["date"], r["model"]
    assert service_models(speeds="pricing")["qwen/qwen3-32b"].output_tps == 662
    with pytest.raises(ConfigError, match="speeds"):
        service_models(speeds="marketing")


def test_dataclass_defaults_are_the_data_defaults():
    d = service_defaults()
    for f in fields(ServiceParams):
        if f.name in d and f.name != "prefill_tps":
            assert f.default == pytest.approx(d[f.name]), f.name


def test_overrides_are_applied_and_validated():
    table = service_models({"llama-3.3-70b-versatile": {"output_tps": 300, "queue_median": 0.05, "queue_p90": 0.1}})
    p = table["llama-3.3-70b-versatile"]
    assert p.output_tps == 300 and p.queue_median == 0.05 and p.source == "scenario override"
    new = service_models({"my-model": {"output_tps": 123}})["my-model"]
    assert new.output_tps == 123 and new.prefill_tps == service_defaults()["prefill_tps"]
    bad = [({"output_tps": 0}, "output_tps"), ({"prefill_tps": -1}, "prefill_tps"),
           ({"queue_p90": 0.01}, "queue_p90"), ({"queue_median": 0}, "queue_median"),
           ({"rtt_median": 0.1, "rtt_p90": 0.05}, "rtt_p90"), ({"speed_cv": -0.1}, "speed_cv"),
           ({"prefill_fixed": -0.01}, "prefill_fixed"), ({"output_tps": float("nan")}, "output_tps"),
           ({"audio_speed_factor": 100}, "audio_speed_factor"), ({"rtt_median": 0.0}, "rtt_p90")]
    for values, key in bad:
        with pytest.raises(ConfigError, match=rf"'llama-3.3-70b-versatile'\.{key} .*must be"):
            service_models({"llama-3.3-70b-versatile": values})
    with pytest.raises(ConfigError, match="audio_speed_factor"):
        service_models({"whisper-large-v3": {"audio_speed_factor": 0}})
    with pytest.raises(ConfigError, match="did you mean 'output_tps'"):
        service_models({"llama-3.3-70b-versatile": {"output_tp": 3}})
    with pytest.raises(ConfigError, match="give at least its output_tps"):
        service_models({"unknown-model": {"prefill_tps": 3}})
    assert "kind" not in SERVICE_KEYS and "source" not in SERVICE_KEYS and "rtt_p90" in SERVICE_KEYS


def test_check_allows_each_edge_and_refuses_one_step_past_it():
    """ServiceParams.check, kind by kind (a data row or a scenario's ``[service."MODEL"]``): a figure at the edge
    of what is allowed passes, one just past it is refused, the error naming the model, the key and the rule."""
    chat, stt, tts = TABLE["llama-3.3-70b-versatile"], TABLE["whisper-large-v3"], TABLE["playai-tts"]
    allowed = [(chat, {"output_tps": 0.5}), (chat, {"prefill_tps": 0.5}), (chat, {"prefill_fixed": 0.0}),
               (chat, {"speed_cv": 0.0}), (chat, {"speed_cv": 3.0}), (chat, {"queue_p90": chat.queue_median}),
               (chat, {"rtt_p90": chat.rtt_median}), (chat, {"rtt_median": 0.0, "rtt_p90": 0.0}),
               (stt, {"output_tps": 0.0}), (stt, {"prefill_tps": 0.0}), (stt, {"prefill_tps": 0.5}),
               (stt, {"audio_speed_factor": 0.5}), (tts, {"output_tps": 0.0})]
    for base, values in allowed:
        params = replace(base, **values)
        assert params.check("m") is params, values
    refused = [(chat, {"kind": "video"}, "kind", "one of chat, stt, tts"),
               (chat, {"prefill_fixed": math.inf}, "prefill_fixed", "a finite number"),
               (chat, {"speed_cv": True}, "speed_cv", "a finite number"),
               (chat, {"queue_median": "0.1"}, "queue_median", "a finite number"),
               (chat, {"output_tps": 0.0}, "output_tps", "> 0 tokens/s"),
               (stt, {"output_tps": -1.0}, "output_tps", ">= 0 tokens/s"),
               (chat, {"prefill_tps": 0.0}, "prefill_tps", "> 0 tokens/s"),
               (tts, {"prefill_tps": 0.0}, "prefill_tps", "> 0 tokens/s"),
               (stt, {"prefill_tps": -1.0}, "prefill_tps", ">= 0"),
               (stt, {"audio_speed_factor": 0.0}, "audio_speed_factor", "> 0"),
               (stt, {"audio_speed_factor": None}, "audio_speed_factor", "> 0"),
               (chat, {"speed_cv": 3.01}, "speed_cv", "between 0 and 3"),
               (chat, {"speed_cv": -0.01}, "speed_cv", "between 0 and 3"),
               (chat, {"queue_p90": chat.queue_median * 0.99}, "queue_p90", ">= queue_median"),
               (chat, {"rtt_median": -0.01}, "rtt_median", ">= 0 seconds"),
               (chat, {"rtt_p90": chat.rtt_median * 0.99}, "rtt_p90", ">= rtt_median")]
    for base, values, key, rule in refused:
        with pytest.raises(ConfigError, match=rf"^service parameter 'm'\.{key} = .*: must be {re.escape(rule)}"):
            replace(base, **values).check("m")


def test_service_tables_cannot_be_changed_in_place():
    """The package table is parsed once per process and its rows are shared by every caller's copy: a row is
    frozen, so a caller changes its own table only by putting a new row in it (as overrides do)."""
    with pytest.raises(dataclasses.FrozenInstanceError):
        load_service_table()["llama-3.3-70b-versatile"].output_tps = 1.0
    assert load_service_table()["llama-3.3-70b-versatile"].output_tps == 280


def test_a_speech_to_text_model_without_prefill_times_only_its_audio():
    """prefill_tps = 0 is allowed for speech-to-text (its requests carry no prompt tokens): the prompt time is
    the fixed part, the completion time the audio at its speed."""
    p = replace(TABLE["whisper-large-v3"], prefill_tps=0.0)
    q, pt, ct = ServiceModel("w", p).times(0, 0, 30.0, 0.0, 0.0)
    inv_s = math.exp(math.log1p(p.speed_cv ** 2) / 2)
    assert q == pytest.approx(p.queue_median) and pt == pytest.approx(p.prefill_fixed * inv_s)
    assert ct == pytest.approx(30.0 / p.audio_speed_factor * inv_s)


def test_lognormal_sigma_from_a_median_and_an_upper_quantile():
    assert lognormal_sigma(0.1, 0.2) == pytest.approx(math.log(2) / stats.norm.ppf(0.95))
    assert stats.lognorm(s=lognormal_sigma_q(0.1, 0.3, Z90), scale=0.1).ppf(0.90) == pytest.approx(0.3)
    assert lognormal_sigma_q(0.1, 0.1, Z90) == 0.0  # no spread
    for median, value in ((0.0, 0.1), (-0.1, 0.1), (0.2, 0.1)):
        with pytest.raises(ConfigError, match="0 < median <= upper quantile"):
            lognormal_sigma_q(median, value, Z90)


def test_speed_spread_is_estimated_from_the_real_llama_samples():
    sigma = math.log(528 / 275) / 2.059  # expected range of 4 standard normal draws: d2(4) = 2.059
    assert service_defaults()["speed_cv"] == pytest.approx(math.sqrt(math.expm1(sigma ** 2)), abs=0.01)


def test_fidelity_checks_on_frames():
    import pandas as pd

    from sim.validation_fidelity import (
        check_client_wait,
        check_output_speed_samples,
        check_prefill_samples,
        check_queue_defaults,
        check_queue_lognormal_fit,
        check_total_time_identity,
    )
    m = ServiceModel("m", TABLE["llama-3.3-70b-versatile"])
    rng = np.random.default_rng(9)
    n = 4000
    zs, zq, zr = rng.standard_normal((3, n))
    q, pt, ct = np.array([m.times(500, 200, 0, a, b) for a, b in zip(zs, zq)]).T
    rtt = np.array(m.round_trips(zr))
    good = pd.DataFrame({"outcome": "ok", "queue_time": q, "prompt_time": pt, "completion_time": ct,
                         "total_time": pt + ct, "latency": rtt + q + pt + ct})
    assert check_total_time_identity(good).passed and check_client_wait(good).passed
    assert check_queue_defaults(good).passed
    old = good.assign(total_time=q + pt + ct)  # the old model: queue inside total_time
    assert not check_total_time_identity(old).passed and not check_client_wait(old).passed
    assert not check_client_wait(good.assign(latency=0.12 + q + pt + ct)).passed  # a constant 120 ms network
    assert not check_queue_defaults(good.assign(queue_time=q * 0.25)).passed  # the old 30 ms median
    assert check_queue_lognormal_fit().passed and check_prefill_samples().passed
    assert check_output_speed_samples().passed


def test_quantile_ci_covers_the_true_quantile_at_its_rate():
    from sim.validation_fidelity import quantile_ci
    rng = np.random.default_rng(12)
    for p in (0.5, 0.9):
        true = stats.norm.ppf(p)
        covered = [lo <= true <= hi for lo, hi in (quantile_ci(rng.standard_normal(500), p) for _ in range(400))]
        assert 0.97 <= np.mean(covered) <= 1.0  # a 99 % interval
    lo, hi = quantile_ci(np.arange(1000.0), 0.9)
    assert lo < 900 < hi and hi - lo < 60


def test_each_caller_gets_a_service_table_of_its_own():
    """Parsed once per process (every run's spec reads them), but a caller's changes stay in its own table:
    a scenario's [service.MODEL] override does not leak into the next scenario's."""
    mine = load_service_table()
    mine.pop("llama-3.1-8b-instant")
    defaults = service_defaults()
    defaults["prefill_tps"] = -1.0
    assert load_service_table() == TABLE and "llama-3.1-8b-instant" in load_service_table()
    assert service_defaults()["prefill_tps"] > 0
    fast = service_models({"llama-3.1-8b-instant": {"output_tps": 9999.0}})
    assert fast["llama-3.1-8b-instant"].output_tps == 9999.0
    assert load_service_table()["llama-3.1-8b-instant"].output_tps == TABLE["llama-3.1-8b-instant"].output_tps != 9999
    assert load_service_table("pricing") != load_service_table("docs")  # one cache entry per speeds
