"""The calibration round trip through the live emulator: the real groq SDK drives `groqsim serve`'s app (a
real uvicorn server on a loopback port) and the emulator's own JSONL log is calibrated back to the org it
served -- limiter, charge mode, tier and output speed.  The log keeps the headers in limiter seconds (the
client saw them divided by the time scale), so the TPM headers tell `max_tokens` and `actual` charging apart."""
import time

import groq
import numpy as np
import pytest

from sim.calibrate import calibrate
from sim.emulator import Emulator
from sim.scenario import scenario_from_dict
from tests.test_emulator import MODEL, running

OUTPUT_TPS = 650.0  # unlike the table's 560: calibration must find the emulator's figure, not the default
REQUESTS, REAL_SECONDS = 300, 45.0  # each case sends at most this many requests, for at most this long


def _spec(algorithm: str, charge: str):
    return scenario_from_dict({
        "scenario": {"name": "calibration round trip", "seed": 4},
        "org": {"tier": "developer", "limiter": algorithm, "accounting": {"charge": charge}},
        # a short queue, so a request takes ~60 limiter-ms and one sequential client can overrun TPM
        "service": {MODEL: {"output_tps": OUTPUT_TPS, "queue_median": 0.004, "queue_p90": 0.008}},
        "clients": [{"name": "app", "model": MODEL, "arrival": {"kind": "poisson", "rate": "1/s"},
                     "max_tokens": 64, "completion_tokens": {"dist": "uniform", "low": 8, "high": 64}}],
    }, source="<test>").spec()


@pytest.mark.parametrize("algorithm,charge", [("token_bucket", "max_tokens"), ("sliding_log", "max_tokens"),
                                             ("token_bucket", "actual"), ("fixed_window", "actual")])
def test_emulator_log_calibrates_back(algorithm, charge, tmp_path):
    # developer (RPM 1000, TPM 250K) at a time scale of 2: one client sending as fast as it is answered
    # (prompts of 4-12K characters, ~1-3K tokens, + a 512-token reservation) demands ~2.5K tokens per
    # ~0.2 limiter-seconds: once the first minute's full budget is spent (~100 requests), about 3x TPM even
    # when the machine is slow (a slow machine stretches the limiter clock by 2x its own overhead per request),
    # so the log holds both successes and 429s.  The replay scores the log from its first line (it starts on
    # an untouched budget), so a few hundred requests -- tens of seconds -- are evidence enough.
    emu = Emulator(_spec(algorithm, charge), time_scale=2.0, log_path=tmp_path / "log.jsonl", seed=5)
    rng = np.random.default_rng(6)
    # charged by actual tokens, a request costs its prompt and an answer of 8-64 tokens, not the 512
    # reserved: longer prompts keep it over TPM on a loaded machine too (at 4-12K characters a busy
    # CI machine once gave only 28 refusals in 300 requests)
    chars = (6000, 16000) if charge == "actual" else (4000, 12000)
    with running(emu) as url:
        client = groq.Groq(base_url=url, api_key="k", max_retries=0)
        stop = time.monotonic() + REAL_SECONDS
        for _ in range(REQUESTS):
            if time.monotonic() > stop:  # a very slow machine: what was logged so far must do
                break
            try:
                # a reservation far above the answers (8-64 tokens): max_tokens vs actual charging differ
                client.chat.completions.create(model=MODEL, max_tokens=512, messages=[
                    {"role": "user", "content": "y" * int(rng.integers(*chars))}])
            except groq.RateLimitError:
                pass
    emu.close()
    cal = calibrate(tmp_path / "log.jsonl")
    ok = int((cal.evidence["status"] == 200).sum())
    refused = int((cal.evidence["status"] == 429).sum())
    assert ok > 60 and refused > 40, (ok, refused)
    ranking = [(h.algorithm, h.charge, round(h.score, 4)) for h in cal.hypotheses]
    assert (cal.best.algorithm, cal.best.charge) == (algorithm, charge), ranking
    assert not any(h.indistinguishable for h in cal.hypotheses[1:]), ranking
    other_charge = next(h for h in cal.hypotheses if h.algorithm == algorithm and h.charge != charge)
    assert other_charge.score > cal.best.score + 0.02, ranking  # the charge mode itself is evident
    assert cal.tier.base == "developer" and not cal.tier.overrides
    svc = cal.service[MODEL]
    assert svc.output_tps.value == pytest.approx(OUTPUT_TPS, rel=0.08)  # ~100-200 answers, speed cv 0.32


def test_flex_lines_are_left_out_of_the_on_demand_limits(tmp_path):
    """A log where flex answered most requests (headers of flex's 10x limits) still calibrates the on-demand
    limits: lines of another tier are left out of the limits and the replay, and the report says so."""
    from tests.test_emulator import flex_spec, msgs
    emu = Emulator(flex_spec(), time_scale=1, log_path=tmp_path / "log.jsonl")
    with running(emu) as url:
        client = groq.Groq(base_url=url, api_key="k", max_retries=0)
        for tier in ["on_demand"] * 3 + ["flex"] * 6:
            try:
                client.chat.completions.create(model=MODEL, messages=msgs(), max_tokens=8, service_tier=tier)
            except groq.RateLimitError:  # the third on-demand request: RPM 2
                pass
    emu.close()
    cal = calibrate(tmp_path / "log.jsonl")
    observed = {u: o.value for u, o in cal.limits[MODEL].observed.items()}
    assert observed == {"rpd": 100, "tpm": 6000, "rpm": 2}  # not flex's 1,000 and 60,000
    assert "6 line(s) of another service tier (flex: 6) left out of the limits" in " ".join(cal.notes)
    assert len(cal.evidence) == 9  # the evidence (and the service fits) keep every line


def test_structured_answers_the_cap_cut_short_are_replayed_as_charged(tmp_path):
    """The emulator answers a JSON value longer than the cap with Groq's 400 ``json_validate_failed``, after
    charging it (as Groq's own such 400s count).  Calibrating its log, the replay charges those lines too: the
    true hypothesis then follows every header exactly (equal prompts, so the median prompt a line without
    usage is charged is its own).  Left out, each would leave one request and 16 + 32 tokens unaccounted."""
    from tests.test_emulator import make_spec, msgs
    emu = Emulator(make_spec(), time_scale=1, log_path=tmp_path / "log.jsonl")
    fmt = {"type": "json_schema", "json_schema": {"name": "n", "schema": {
        "type": "array", "items": {"type": "integer"}, "minItems": 100}}}
    with running(emu) as url:
        client = groq.Groq(base_url=url, api_key="k", max_retries=0)
        for i in range(24):
            try:
                client.chat.completions.create(model=MODEL, messages=msgs(), max_tokens=32,
                                               **({"response_format": fmt} if i % 3 == 1 else {}))
            except groq.BadRequestError as e:
                assert e.body["error"]["code"] == "json_validate_failed"
    emu.close()
    cal = calibrate(tmp_path / "log.jsonl", jobs=1)
    assert cal.evidence["status"].tolist().count(400) == 8 and cal.evidence["charged_failure"].sum() == 8
    assert (cal.best.algorithm, cal.best.charge) == ("token_bucket", "max_tokens")
    assert cal.best.components["remaining_requests"] == 0 and cal.best.components["remaining_tokens"] < 2
