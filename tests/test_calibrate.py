"""groqsim calibrate / trace: Groq's text parsed exactly; synthetic logs with KNOWN parameters (made by
sim.synthlog from the simulator's LimitSet, headers and ServiceModel, importing nothing of sim.calibrate) are
calibrated back; bad logs give a message, never a traceback."""
import ast
import json
import math
import os
import re
import subprocess
import sys
import tomllib
from dataclasses import replace
from pathlib import Path

import groq
import httpx
import numpy as np
import pandas as pd
import pytest

from sim.calibrate import calibrate
from sim.calibrate.evidence import parse_go_duration, parse_limit_message
from sim.calibrate.output import report_text, toml_fragment, write_outputs
from sim.calibrate.replay import starts_untouched
from sim.catalog import Catalog, Limits
from sim.cli import main
from sim.headers import rate_limit_headers
from sim.limitset import LimitSet
from sim.recorder import Recorder
from sim.scenario import scenario_from_dict
from sim.service import ServiceModel
from sim.synthlog import SynthSpec, synthesize, write_log
from sim.tracelog import log_to_trace
from sim.trace import read_trace

ROOT = Path(__file__).resolve().parents[1]
TRUE = SynthSpec()  # llama-3.1-8b-instant on free: 560 t/s, prefill 6000 t/s, queue median 0.12 s


@pytest.mark.parametrize("text,seconds", [("547ms", 0.547), ("2m52.8s", 172.8), ("1h2m3.5s", 3723.5),
                                          ("6.780999999s", 6.780999999), ("9m38.016s", 578.016), ("0s", 0.0),
                                          ("850µs", 850e-6), ("1.5us", 1.5e-6), ("2", 2.0), ("24h0m0s", 86400.0)])
def test_go_durations(text, seconds):
    assert parse_go_duration(text) == pytest.approx(seconds)


def test_go_duration_rejects_garbage():
    with pytest.raises(ValueError):
        parse_go_duration("soon")


def test_real_429_and_413_messages():
    m = parse_limit_message(
        "Rate limit reached for model `llama-3.1-8b-instant` in organization `org_01j` service tier `on_demand` on "
        "tokens per minute (TPM): Limit 6000, Used 5034, Requested 1443. Please try again in 4.77s. Need more "
        "tokens? Upgrade to Dev Tier today at https://console.groq.com/settings/billing")
    assert (m.unit, m.limit, m.used, m.requested, m.wait, m.too_large) == ("tpm", 6000, 5034, 1443, 4.77, False)
    assert m.model == "llama-3.1-8b-instant"
    assert (m.used + m.requested - m.limit) / (m.limit / 60) == pytest.approx(m.wait, abs=0.01)  # token bucket
    big = parse_limit_message(
        "Request too large for model `llama-3.3-70b-versatile` in organization `org_01j` service tier `on_demand` "
        "on tokens per minute (TPM): Limit 12000, Requested 14137, please reduce your message size and try again.")
    assert (big.unit, big.limit, big.used, big.requested, big.wait, big.too_large) == \
        ("tpm", 12000, None, 14137, None, True)
    for words, unit in (("requests per minute (RPM)", "rpm"), ("requests per day (RPD)", "rpd"),
                        ("tokens per day (TPD)", "tpd"), ("audio seconds per hour (ASH)", "ash")):
        m = parse_limit_message(f"Rate limit reached for model `m` in organization `o` service tier `on_demand` on "
                                f"{words}: Limit 14400, Used 14400, Requested 1. Please try again in 9m38.016s.")
        assert (m.unit, m.limit, m.wait) == (unit, 14400, 578.016)
    assert parse_limit_message("Internal server error") is None


def synth(tmp_path, name="log.jsonl", seed=3, **kw) -> Path:
    spec = replace(TRUE, duration=3600.0, **kw)
    path = tmp_path / name
    write_log(synthesize(spec, seed), path)
    return path


CASES = [("token_bucket", "max_tokens"), ("token_bucket", "actual"), ("fixed_window", "max_tokens"),
         ("fixed_window", "actual"), ("sliding_log", "max_tokens"), ("sliding_log", "actual")]


@pytest.mark.parametrize("algorithm,charge", CASES)
def test_round_trip_recovers_the_known_truth(algorithm, charge, tmp_path):
    path = synth(tmp_path, algorithm=algorithm, charge=charge)
    cal = calibrate(path)
    svc = cal.service[TRUE.model]
    p = TRUE.service
    assert svc.output_tps.value == pytest.approx(p.output_tps, rel=0.05)
    assert svc.prefill_tps == pytest.approx(p.prefill_tps, rel=0.05)
    assert svc.queue_median.value == pytest.approx(p.queue_median, rel=0.05)
    assert svc.queue_median.low < p.queue_median < svc.queue_median.high
    assert svc.output_tps.low < p.output_tps < svc.output_tps.high
    assert svc.speed_cv == pytest.approx(p.speed_cv, abs=0.02)
    assert svc.rtt.value == pytest.approx(p.rtt_median, rel=0.05)
    assert svc.rtt_p90 == pytest.approx(p.rtt_p90, rel=0.05)
    assert (cal.best.algorithm, cal.best.charge) == (algorithm, charge)
    assert not any(h.indistinguishable for h in cal.hypotheses[1:])
    assert cal.tier.base == "free" and not cal.tier.overrides
    assert "matches the published free tier" in cal.tier.sentence
    assert (cal.evidence["status"] == 429).any()  # the evidence includes refusals
    fragment = tomllib.loads(toml_fragment(cal))
    assert fragment["org"] == {"tier": "calibrated", "limiter": algorithm, "accounting": {"charge": charge}}


@pytest.mark.parametrize("algorithm,charge", CASES)
def test_a_log_that_starts_mid_traffic_still_tells_the_truth(algorithm, charge, tmp_path):
    """Real logs start while the org's budgets are partly used (here the first hour of two is cut, the
    second hour exhausts TPD): the replay starts from what the first headers and 429s say is used."""
    lines = synthesize(replace(TRUE, duration=7200.0, rate=0.2, algorithm=algorithm, charge=charge), 4)
    cut = lines[0]["t_send"] + 3600
    path = tmp_path / "mid.jsonl"
    write_log([x for x in lines if x["t_send"] > cut], path)
    cal = calibrate(path)
    assert (cal.best.algorithm, cal.best.charge) == (algorithm, charge)
    assert cal.best.score < 0.01 < cal.hypotheses[1].score
    assert cal.limits[TRUE.model].observed["tpd"].value == 500_000  # only a 429 message shows TPD


def test_custom_tier_is_named_and_a_log_without_429s_says_what_it_cannot_know(tmp_path):
    dev = Catalog.published().limits("developer", TRUE.model)
    path = synth(tmp_path, tier="developer", limits=replace(dev, tpm=dev.tpm * 2))
    cal = calibrate(path)
    assert not (cal.evidence["status"] == 429).any()
    assert cal.tier.base == "developer"
    assert cal.tier.sentence == "developer, except TPM 2x: a custom tier"
    assert cal.tier.overrides == {TRUE.model: {"tpm": 2 * dev.tpm}}
    assert cal.tier.unknown[TRUE.model] == ["rpm"]
    text = report_text(cal)
    assert "no 429 in the log" in text and "RPM never shown" in text
    assert cal.best.algorithm == "token_bucket"  # the headers alone still tell the bucket's refill apart


def test_fragment_makes_a_runnable_scenario_with_the_exported_trace(tmp_path):
    path = synth(tmp_path, algorithm="fixed_window", charge="actual")
    cal = calibrate(path)
    export = log_to_trace(path)
    trace = tmp_path / "trace.csv"
    export.trace.to_csv(trace, index=False)
    data = tomllib.loads(toml_fragment(cal))
    data["clients"] = [{"name": "recorded", "model": TRUE.model, "policy": "groq-sdk",
                        "arrival": {"kind": "trace", "file": str(trace)}}]
    scenario = scenario_from_dict(data, source=str(tmp_path / "calibrated.toml"))
    spec = scenario.spec()
    assert spec.org.limiter == "fixed_window" and spec.org.accounting.charge == "actual"
    assert spec.catalog.limits("calibrated", TRUE.model) == Catalog.published().limits("free", TRUE.model)
    params = spec.service[TRUE.model]
    assert params.output_tps == pytest.approx(cal.service[TRUE.model].output_tps.value, abs=0.05)
    assert params.queue_median == pytest.approx(cal.service[TRUE.model].queue_median.value, rel=1e-3)
    files = write_outputs(cal, tmp_path / "out")
    assert {f.name for f in files} >= {"calibrated.toml", "report.txt", "service_0.png", "header_residuals.png"}


def test_a_fixed_prefill_part_is_found_and_reported(tmp_path):
    lines = synthesize(replace(TRUE, duration=3600.0), 4)
    for x in lines:
        if x["usage"]:
            x["usage"]["prompt_time"] += 0.02
    path = tmp_path / "fixed.jsonl"
    write_log(lines, path)
    svc = calibrate(path).service[TRUE.model]
    assert svc.prefill_fixed.low < 0.02 < svc.prefill_fixed.high and svc.prefill_fixed.low > 0
    assert svc.prefill_tps == pytest.approx(TRUE.service.prefill_tps, rel=0.05)
    assert any("fixed part of" in n and "prefill_fixed" in n for n in svc.notes)
    assert svc.params()["prefill_fixed"] == pytest.approx(0.02 / (1 + svc.speed_cv ** 2), rel=0.25)


def test_prefill_needs_two_prompt_sizes_and_says_so(tmp_path):
    lines = synthesize(replace(TRUE, duration=1800.0), 4)
    answered = [x for x in lines if x["usage"]]
    for x in answered:
        x["usage"]["prompt_tokens"] = 300
    path = tmp_path / "one_size.jsonl"
    write_log(lines, path)
    svc = calibrate(path).service[TRUE.model]
    assert svc.prefill_tps is None and "prefill_tps" not in svc.params()
    assert (f"prefill: {len(answered)} usable sample(s) with 1 distinct prompt size(s); need 3 samples and 2 sizes"
            in svc.notes)


def test_the_shipped_example_log_is_what_synthlog_writes(tmp_path, capsys):
    from sim.synthlog import main as synthlog
    assert synthlog([str(tmp_path / "ex.jsonl")]) == 0
    shipped = ROOT / "scenarios" / "logs" / "example_groq_calls.jsonl"
    assert (tmp_path / "ex.jsonl").read_bytes() == shipped.read_bytes()
    with pytest.raises(SystemExit):
        synthlog(["--help"])
    assert "usage: python -m sim.synthlog" in capsys.readouterr().out and not (ROOT / "--help").exists()


@pytest.mark.parametrize("tier", ["free", "developer"])
def test_synthetic_refusals_are_groqs_own_messages(tier):
    """Each 429 as the one producer (sim.headers) writes it: the wait at ns precision obeying Groq's identity
    (Used + Requested - Limit) / (Limit / window), the upgrade hint only on the free tier; usage times at
    Groq's 9 decimals at most."""
    from sim.synthlog import SynthSpec, synthesize
    from sim.units import parse_go_duration
    lines = synthesize(SynthSpec(tier=tier, limits=Limits(tpm=3000, rpm=3), rate=0.5, duration=300), seed=4)
    refused = [ln for ln in lines if ln["status"] == 429]
    assert len(refused) > 20
    for ln in refused:
        msg = ln["error"]["message"]
        m = re.search(r"on (\w+) per minute .*Limit (\d+), Used (\d+), Requested (\d+)\. Please try again in (\S+)\.",
                      msg)
        limit, used, requested = (int(g) for g in m.group(2, 3, 4))
        assert parse_go_duration(m.group(5)) / 1e9 == pytest.approx((used + requested - limit) / (limit / 60), abs=1e-9)
        assert ("Need more" in msg) == (tier == "free")
        assert ln["error"]["type"] == ("tokens" if m.group(1) == "tokens" else "requests")
    assert {m for ln in refused for m in re.findall(r"per minute \((\w+)\)", ln["error"]["message"])} == {"RPM", "TPM"}
    for ln in lines:
        if ln["usage"]:
            u = ln["usage"]
            assert all(len(repr(u[k]).split(".")[-1]) <= 9 for k in u if k.endswith("_time"))
            assert u["total_time"] == round(u["prompt_time"] + u["completion_time"], 9)  # as written, they add up


def test_the_docs_fragment_is_what_calibrate_writes_for_the_shipped_log():
    """docs/calibration.md shows the fragment of scenarios/logs/example_groq_calls.jsonl; pasting it must work,
    so it must be the real one (it once named keys that no longer exist)."""
    doc = (ROOT / "docs" / "calibration.md").read_text()
    shown = doc.split("The fragment, ready to paste")[1].split("```toml\n")[1].split("```")[0]
    written = toml_fragment(calibrate(ROOT / "scenarios" / "logs" / "example_groq_calls.jsonl"))
    assert shown.strip() == written.split("\n", 1)[1].strip()  # less its first line, a comment naming the log


def test_a_queue_that_is_not_lognormal_is_flagged(tmp_path):
    lines = synthesize(replace(TRUE, duration=3600.0), 3)
    for k, x in enumerate(x for x in lines if x["usage"]):  # two far-apart modes: 20 ms and 400 ms
        x["usage"]["queue_time"] = 0.02 if k % 2 else 0.4
        x["usage"]["queue_time"] *= 1 + 0.01 * (k % 7)
    path = tmp_path / "bimodal.jsonl"
    write_log(lines, path)
    cal = calibrate(path)
    svc = cal.service[TRUE.model]
    assert svc.queue_fit["verdict"] == "rejected at 5%" and svc.queue_fit["p_value"] < 0.05
    assert any("not lognormal" in n for n in svc.notes)


def test_mixed_models_are_calibrated_apart(tmp_path):
    a = synthesize(replace(TRUE, duration=1800.0, algorithm="sliding_log"), 1)
    b = synthesize(replace(TRUE, duration=1800.0, algorithm="sliding_log", model="llama-3.3-70b-versatile",
                           service=replace(TRUE.service, output_tps=280.0)), 2)
    path = tmp_path / "mixed.jsonl"
    write_log(sorted(a + b, key=lambda x: x["t_recv"]), path)
    cal = calibrate(path)
    assert set(cal.models) == {TRUE.model, "llama-3.3-70b-versatile"}
    assert cal.service["llama-3.3-70b-versatile"].output_tps.value == pytest.approx(280, rel=0.05)
    assert cal.service[TRUE.model].output_tps.value == pytest.approx(560, rel=0.05)
    assert cal.limits["llama-3.3-70b-versatile"].observed["tpm"].value == 12_000
    assert cal.best.algorithm == "sliding_log" and cal.tier.base == "free"
    assert any("2 models" in n for n in cal.notes)


def test_a_model_outside_the_catalog_keeps_its_observed_limits(tmp_path):
    lines = synthesize(replace(TRUE, duration=900.0), 8)
    for x in lines:
        x["model"] = "acme/finetune-1"
    path = tmp_path / "custom.jsonl"
    write_log(lines, path)
    cal = calibrate(path)
    assert cal.tier.base is None and "no model of the log is in the published table" in cal.tier.sentence
    data = tomllib.loads(toml_fragment(cal))
    assert data["tiers"]["calibrated"]["overrides"] == {"acme/finetune-1": {"rpd": 14_400, "tpm": 6_000}}
    data["clients"] = [{"name": "c", "model": "acme/finetune-1", "arrival": {"kind": "poisson", "rate": "1/min"}}]
    spec = scenario_from_dict(data).spec()
    assert spec.catalog.limits("calibrated", "acme/finetune-1").items() == [("rpd", 14_400), ("tpm", 6_000)]


def test_trace_folds_sdk_retries(tmp_path):
    lines = synthesize(replace(TRUE, duration=1200.0), 5)
    path = tmp_path / "log.jsonl"
    write_log(lines, path)
    export = log_to_trace(path)
    firsts = sorted((x for x in lines if x["retry_count"] == 0), key=lambda x: x["t_send"])
    assert export.retries_folded == sum(x["retry_count"] > 0 for x in lines) > 0
    assert len(export.trace) == len(firsts)
    t0 = firsts[0]["t_send"]
    assert export.trace["timestamp"].tolist() == pytest.approx([x["t_send"] - t0 for x in firsts], abs=1e-5)
    answered = {x["request_id"].rsplit("_", 1)[0]: x for x in lines if x["status"] == 200}
    for row, first in zip(export.trace.itertuples(), firsts):
        final = answered.get(first["request_id"].rsplit("_", 1)[0])
        if final:
            assert (row.prompt_tokens, row.completion_tokens) == (final["usage"]["prompt_tokens"],
                                                                  final["usage"]["completion_tokens"])
    assert export.outcomes["attempts"].sum() == len(lines)
    assert export.outcomes["answered"].sum() == sum(x["status"] == 200 for x in lines)
    out = tmp_path / "trace.csv"
    export.trace.to_csv(out, index=False)
    back = read_trace(out)
    assert len(back) == len(firsts) and back["max_tokens"].eq(TRUE.max_tokens).all()
    # without retry_count every line is a request
    bare = tmp_path / "bare.jsonl"
    bare.write_text("".join(json.dumps({k: v for k, v in x.items() if k != "retry_count"}) + "\n" for x in lines))
    plain = log_to_trace(bare)
    assert len(plain.trace) == len(lines) and any("not folded" in n for n in plain.notes)


def test_generator_imports_nothing_of_the_calibrator():
    """sim.synthlog builds its logs without the calibrator's fits, parsing or replay (it does share LimitSet and
    the header arithmetic, which tests/test_headers.py checks against the reference's worked example)."""
    tree = ast.parse((ROOT / "sim" / "synthlog.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert imported, "no imports found: the check would be vacuous"
    assert not any("calibrate" in m or "tracelog" in m for m in imported), imported


# ---- the whole path: a real SDK client, the recorder, the calibrator ----------------------------------

class VirtualGroq:
    """An httpx transport handler answering like Groq from the simulator's pieces, on a virtual clock that the
    recorder reads (each answer moves the clock to its arrival time at the client)."""

    def __init__(self, algorithm, charge, seed):
        self.t = 1793610000.0  # 2026-11-02 09:00 UTC
        self.origin = math.floor(self.t / 86_400) * 86_400
        self.ls = LimitSet(Catalog.published().limits("free", TRUE.model), algorithm)
        self.svc = ServiceModel(TRUE.model, TRUE.service)
        self.charge, self.rng = charge, np.random.default_rng(seed)

    def __call__(self, request):
        body = json.loads(request.content)
        prompt = len(body["messages"][0]["content"].split())
        max_tokens = body["max_tokens"]
        completion = int(min(max(round(self.rng.lognormal(math.log(150), 0.6)), 1), max_tokens))
        now = self.t + TRUE.service.rtt_median / 2 - self.origin
        wait = self.ls.acquire(prompt + (max_tokens if self.charge == "max_tokens" else completion), 0, now)
        if wait > 0:
            self.t += TRUE.service.rtt_median
            msg = (f"Rate limit reached for model `{TRUE.model}` in organization `org_x` service tier `on_demand` on "
                   f"tokens per minute (TPM): Limit 6000, Used 0, Requested 0. Please try again in {wait:.3f}s.")
            return httpx.Response(429, headers=rate_limit_headers(self.ls, now, wait),
                                  json={"error": {"message": msg, "type": "tokens", "code": "rate_limit_exceeded"}})
        q, pt, ct = self.svc.times(prompt, completion, 0.0, *self.rng.standard_normal(2))
        self.t += TRUE.service.rtt_median + q + pt + ct
        usage = {"queue_time": q, "prompt_tokens": prompt, "prompt_time": pt, "completion_tokens": completion,
                 "completion_time": ct, "total_tokens": prompt + completion, "total_time": pt + ct}
        return httpx.Response(200, headers=rate_limit_headers(self.ls, now), json={
            "id": "c", "object": "chat.completion", "created": int(self.t), "model": TRUE.model, "usage": usage,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}]})


@pytest.mark.parametrize("algorithm,charge", [("token_bucket", "max_tokens"), ("sliding_log", "actual")])
def test_recorded_sdk_traffic_calibrates_back(algorithm, charge, tmp_path):
    server = VirtualGroq(algorithm, charge, seed=9)
    path = tmp_path / "recorded.jsonl"
    rec = Recorder(path, label="e2e", clock=lambda: server.t)
    client = groq.Groq(api_key="k", max_retries=0, http_client=rec.client(transport=httpx.MockTransport(server)))
    rng = np.random.default_rng(10)
    for _ in range(700):
        server.t += rng.exponential(1 / TRUE.rate)
        try:
            client.chat.completions.create(model=TRUE.model, max_tokens=TRUE.max_tokens, messages=[
                {"role": "user", "content": "secret " * int(rng.lognormal(math.log(400), 0.8) + 1)}])
        except groq.RateLimitError:
            pass
    rec.close()
    assert "secret" not in path.read_text()
    cal = calibrate(path)
    svc = cal.service[TRUE.model]
    assert svc.n_answered > 400 and (cal.evidence["status"] == 429).sum() > 20
    assert svc.output_tps.value == pytest.approx(TRUE.service.output_tps, rel=0.05)
    assert svc.queue_median.value == pytest.approx(TRUE.service.queue_median, rel=0.05)
    assert svc.rtt.value == pytest.approx(TRUE.service.rtt_median, rel=0.05)
    assert (cal.best.algorithm, cal.best.charge) == (algorithm, charge)
    assert cal.tier.base == "free" and not cal.tier.overrides


# ---- bad logs through the command line ------------------------------------------------------------

def _good(tmp_path):
    return synthesize(replace(TRUE, duration=900.0), 7)


def _write(path, lines):
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def bad_logs(tmp_path):
    good = _good(tmp_path)
    no429 = [x for x in good if x["status"] == 200]
    foreign = [{"t_send": 1.0 + k, "t_recv": 1.2 + k, "status": 502, "model": "llama-3.1-8b-instant",
                "endpoint": "chat.completions", "max_tokens": 10, "audio_seconds": None, "usage": None,
                "headers": {"content-type": "text/html"}, "error": None, "label": None, "request_id": None}
               for k in range(5)]
    return {
        "truncated lines": (_write(tmp_path / "a.jsonl", [json.dumps(x) for x in good] + ['{"t_send": 17', "garbage"]),
                            0, ["not JSON (truncated?)", f"line {len(good) + 1}, {len(good) + 2}"]),
        "missing fields": (_write(tmp_path / "b.jsonl", [{k: v for k, v in x.items() if k not in ("usage", "label")}
                                                         for x in good]),
                           0, ["lack usage, label: used without them",
                               "service output_tps, prefill_tps, queue_median, rtt_median (kept at the simulator's "
                               "defaults)",
                               "limiter replay skipped: 99 of 99 answered chat requests have no usage"]),
        "no usable line": (_write(tmp_path / "c.jsonl", [{k: v for k, v in x.items() if k != "t_recv"}
                                                         for x in good]),
                           2, ["lack t_recv: skipped", "nothing could be estimated"]),
        "non-Groq responses only": (_write(tmp_path / "d.jsonl", foreign), 2,
                                    ["not from Groq", "no response in the log"]),
        "non-Groq among Groq": (_write(tmp_path / "e.jsonl", good + foreign), 0, ["5 response(s) carry neither"]),
        "mixed models": (_write(tmp_path / "f.jsonl", good + [dict(x, model="qwen/qwen3-32b") for x in no429[:40]]),
                         0, ["2 models in the log", "qwen/qwen3-32b:"]),
        "no 429s at all": (_write(tmp_path / "g.jsonl", no429), 0, ["no 429 in the log", "RPM, TPD never shown"]),
        "no headers": (_write(tmp_path / "h.jsonl", [dict(x, headers={}) for x in no429]), 0,
                       ["limiter algorithm and charging rule: no rate-limit headers", "limits seen      none"]),
        "empty file": (_write(tmp_path / "i.jsonl", []), 2, ["i.jsonl: empty file; expected a JSONL recorder log"]),
        "missing file": (tmp_path / "nope.jsonl", 2, ["cannot read log"]),
    }


CASE_NAMES = ["truncated lines", "missing fields", "no usable line", "non-Groq responses only", "non-Groq among Groq",
              "mixed models", "no 429s at all", "no headers", "empty file", "missing file"]


@pytest.mark.parametrize("case", CASE_NAMES)
def test_bad_logs_get_a_clear_message(case, tmp_path, capsys):
    path, status, phrases = bad_logs(tmp_path)[case]
    rc = main(["calibrate", str(path), "--out", str(tmp_path / "out"), "--no-plots"])
    out = capsys.readouterr()
    text = out.out + out.err
    assert rc == status, text
    for phrase in phrases:
        assert phrase in text, (phrase, text)
    assert "Traceback" not in text
    if status == 0:
        assert (tmp_path / "out" / "calibrated.toml").exists()
        tomllib.loads((tmp_path / "out" / "calibrated.toml").read_text())


def test_command_line_end_to_end(tmp_path):
    path = synth(tmp_path, algorithm="sliding_log", charge="max_tokens")
    env_path = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-m", "sim", "calibrate", str(path), "--out", str(tmp_path / "cal")],
                         check=False, capture_output=True, text=True, env=env_path, cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "best: sliding_log / charge max_tokens" in run.stdout
    assert 'limiter = "sliding_log"' in (tmp_path / "cal" / "calibrated.toml").read_text()
    run = subprocess.run([sys.executable, "-m", "sim", "trace", str(path), "-o", str(tmp_path / "t.csv")],
                         check=False, capture_output=True, text=True, env=env_path, cwd=tmp_path, timeout=300)
    assert run.returncode == 0 and "SDK retries folded" in run.stderr
    assert list(pd.read_csv(tmp_path / "t.csv").columns) == ["timestamp", "model", "prompt_tokens", "max_tokens",
                                                             "completion_tokens", "audio_seconds"]
    bad = subprocess.run([sys.executable, "-m", "sim", "calibrate", str(tmp_path / "none.jsonl")],
                         check=False, capture_output=True, text=True, env=env_path, cwd=tmp_path, timeout=300)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "cannot read log" in bad.stderr


@pytest.mark.parametrize("content,phrase", [(None, "cannot read log"), ("", "empty file"),
                                            ('{"t_send": 1\n', "no line is a JSON object"),
                                            ('{"t_recv": 1}\n', "no line has a numeric t_send")])
def test_trace_of_a_bad_log_is_a_one_line_error(content, phrase, tmp_path, capsys):
    path = tmp_path / "log.jsonl"
    if content is not None:
        path.write_text(content)
    assert main(["trace", str(path), "-o", str(tmp_path / "t.csv")]) == 2
    err = capsys.readouterr().err
    assert phrase in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("algorithm,charge", CASES)
def test_a_short_log_on_an_untouched_budget_is_evidence_from_its_first_line(algorithm, charge, tmp_path):
    """Under two minutes of traffic from a fresh org (as an emulator's or simulator's log starts): nothing
    before the log is hidden, so the replay scores the first minutes too and still names the truth, the other
    charge mode far behind (the first 429 naming TPM must not re-sync a wrong hypothesis to the logged usage)."""
    lines = synthesize(replace(TRUE, duration=110.0, rate=0.5, algorithm=algorithm, charge=charge), 3)
    path = tmp_path / "short.jsonl"
    write_log(lines, path)
    cal = calibrate(path)
    assert starts_untouched(cal.evidence)
    other = next(h for h in cal.hypotheses if h.algorithm == algorithm and h.charge != charge)
    assert (cal.best.algorithm, cal.best.charge) == (algorithm, charge)
    assert cal.best.score < 0.02 and other.score > 0.1 and not any(h.indistinguishable for h in cal.hypotheses[1:])


def test_a_log_that_starts_mid_traffic_is_not_taken_for_an_untouched_one(tmp_path):
    lines = synthesize(replace(TRUE, duration=1200.0, rate=0.2), 4)
    path = tmp_path / "mid.jsonl"
    write_log([x for x in lines if x["t_send"] > lines[0]["t_send"] + 600], path)
    cal = calibrate(path)
    assert not starts_untouched(cal.evidence)
    assert not any("starts on a TPM budget already in use" in u for u in cal.unknown)  # (600 s: scored after 120)


def test_a_short_log_that_starts_mid_traffic_says_nothing_of_tpm_was_scored(tmp_path):
    """Under the burn-in from start to end, on a budget in use: every TPM residual and decision is left out,
    and the report says so (it showed only dashes, and a ranking by the request units read as a verdict)."""
    lines = synthesize(replace(TRUE, duration=1200.0, rate=0.5), 4)
    path = tmp_path / "mid.jsonl"
    write_log([x for x in lines if 600 < x["t_send"] - lines[0]["t_send"] < 690], path)
    cal = calibrate(path)
    (said,) = [u for u in cal.unknown if "starts on a TPM budget already in use" in u]
    assert said.startswith(f"{TRUE.model}: ") and "no TPM residual or 429 decision is scored" in said


@pytest.mark.parametrize("algorithm", ["token_bucket", "fixed_window", "sliding_log"])
def test_the_first_tpm_429_does_not_resync_a_wrong_hypothesis(algorithm, tmp_path):
    """TPM is synced once, from the first TPM header; the first 429 naming TPM must not charge a wrong charge
    mode the difference between its prediction and the logged "Used" (which would erase the evidence)."""
    lines = synthesize(replace(TRUE, duration=110.0, rate=0.5, algorithm=algorithm, charge="max_tokens"), 3)
    path = tmp_path / "short.jsonl"
    write_log(lines, path)
    cal = calibrate(path)
    wrong = next(h for h in cal.hypotheses if h.algorithm == algorithm and h.charge == "actual")
    first = int((cal.evidence["msg_unit"] == "tpm").to_numpy().argmax())
    before, at = wrong.residuals["remaining_tokens"].iloc[[first - 1, first]]
    assert before > 500 and at > 0.5 * before  # actual charging keeps predicting more tokens left


def _stt_fit(rows, model="whisper-large-v3"):
    """fit_service over transcription lines (t_send, seconds taken, status, audio seconds)."""
    from sim.calibrate.evidence import evidence_table
    from sim.calibrate.service_fit import fit_service
    from sim.recorder import Log
    records = [{"t_send": 1000.0 + t, "t_recv": 1000.0 + t + took, "status": status, "model": model,
                "endpoint": "audio.transcriptions", "max_tokens": None, "audio_seconds": audio, "usage": None,
                "headers": {}, "error": None, "label": None, "request_id": None, "retry_count": None}
               for t, took, status, audio in rows]
    return fit_service(evidence_table(Log("<test>", records)), model)


def test_transcription_speed_is_the_slope_of_response_time_over_audio_length():
    """Noise-free times 0.2 s + audio / 150: the slope, the fixed part and audio_speed_factor = (1 + cv^2) x 150
    with the table's speed_cv; refused requests (429 and 413) give the round trip; rows without audio or time
    are left out of the line."""
    from sim.service import load_service_table, service_defaults
    answered = [(10.0 * k, 0.2 + a / 150, 200, a) for k, a in enumerate((30, 60, 90, 120, 240))]
    refused = [(100.0, 0.04, 429, 60), (101.0, 0.06, 413, 9000), (102.0, 0.05, 429, 30)]
    odd = [(103.0, 0.3, 200, None), (104.0, 0.0, 200, 50)]
    fit = _stt_fit(answered + refused + odd)
    cv = load_service_table()["whisper-large-v3"].speed_cv
    assert fit.kind == "stt" and fit.n_answered == 7 and len(fit.audio) == len(fit.response_time) == 5
    assert fit.audio_slope.value == pytest.approx(1 / 150) and fit.audio_fixed.value == pytest.approx(0.2)
    assert fit.audio_speed_factor == pytest.approx((1 + cv ** 2) * 150)
    assert fit.params() == {"audio_speed_factor": fit.audio_speed_factor, "rtt_median": pytest.approx(0.05),
                            "rtt_p90": pytest.approx(0.058)}  # numpy's p90 of 0.04, 0.05, 0.06
    assert fit.notes == [f"transcriptions carry no usage: audio_speed_factor from response times with speed_cv "
                         f"{cv:g} assumed; queue and prefill are inside the fixed part, kept at defaults"]
    custom = _stt_fit(answered, model="my-whisper")  # not in the table: the default speed_cv
    assert custom.audio_speed_factor == pytest.approx((1 + service_defaults()["speed_cv"] ** 2) * 150)
    assert custom.rtt is None and "network round trip: fewer than 2 refused requests" in custom.notes[-1]


def test_transcription_logs_too_thin_or_flat_say_so():
    two = _stt_fit([(0.0, 1.0, 200, 60), (5.0, 2.0, 200, 120)])
    assert two.audio_slope is None and two.audio_speed_factor is None
    assert "audio speed: 2 answered transcription(s) with audio_seconds and 2 distinct length(s); need 3 and 2" \
        in two.notes
    one_length = _stt_fit([(0.0, 1.0, 200, 60), (5.0, 1.2, 200, 60), (9.0, 0.9, 200, 60)])
    assert one_length.audio_slope is None and "3 answered transcription(s) with audio_seconds and 1 distinct" \
        in one_length.notes[0]
    least = _stt_fit([(0.0, 1.0, 200, 60), (5.0, 1.4, 200, 120), (9.0, 1.0, 200, 60),  # 3 answers, 2 lengths
                      (20.0, 0.05, 429, 60), (21.0, 0.07, 429, 60)])  # and 2 refusals: enough for each
    assert least.audio_speed_factor is not None and least.rtt.value == pytest.approx(0.06)
    noisy = _stt_fit([(0.0, 1.0, 200, 60), (5.0, 1.3, 200, 120), (9.0, 1.3, 200, 60), (13.0, 1.05, 200, 120)])
    assert noisy.audio_slope.value > 0 > noisy.audio_slope.low  # a slope the noise could have made
    assert noisy.audio_speed_factor is None and any("too little to tell from noise" in n for n in noisy.notes)
    flat = _stt_fit([(0.0, 3.0, 200, 30), (5.0, 2.0, 200, 60), (9.0, 1.0, 200, 120)])  # longer audio, faster
    assert flat.audio_speed_factor is None and "audio_speed_factor" not in flat.params()
    assert "response time does not grow with audio_seconds: audio speed not estimated" in flat.notes


def test_lines_with_impossible_values_are_set_aside_not_a_traceback(tmp_path, capsys):
    """A message that is not text, a status or max_tokens of 1e400 (JSON's infinity), a limit header of -5 or
    1e400: each crashed calibrate or trace; now each is an unusable field or line, noted."""
    from sim.calibrate.evidence import _header_value
    src = (Path(__file__).resolve().parents[1] / "scenarios" / "logs" / "example_groq_calls.jsonl").read_text()
    lines = src.splitlines()
    rows = [json.loads(x) for x in lines]
    err = next(k for k, r in enumerate(rows) if r.get("error"))
    rows[err]["error"]["message"] = 5
    lines[err] = json.dumps(rows[err])
    lines[3] = json.dumps(rows[3]).replace('"status": ' + str(rows[3]["status"]), '"status": 1e400')
    log = tmp_path / "bad.jsonl"
    log.write_text("\n".join(lines) + "\n")
    for command in (["calibrate", str(log), "--out", str(tmp_path / "cal"), "--no-plots"],
                    ["trace", str(log), "-o", str(tmp_path / "t.csv")]):
        assert main(command) == 0, command
        assert "Traceback" not in capsys.readouterr().err
    assert parse_limit_message(5) is None
    for text in ("-5", "1e400", "0", "nan", "x"):
        assert math.isnan(_header_value("h_limit_tok", text)), text
    assert _header_value("h_rem_tok", "0") == 0.0 and _header_value("h_limit_tok", "6000") == 6000.0


def test_a_custom_tier_of_two_models_names_the_model_of_each_difference():
    from sim.calibrate.limits_fit import LimitsFit, Observed, match_catalog
    chat = LimitsFit("llama-3.1-8b-instant", {"rpd": Observed(1000, "headers", 9, 0)})
    stt = LimitsFit("whisper-large-v3-turbo", {"rpd": Observed(400, "headers", 9, 0)})
    m = match_catalog([chat, stt])
    assert m.base == "free" and m.sentence == ("free, except llama-3.1-8b-instant RPD 0.0694x, "
                                               "whisper-large-v3-turbo RPD 0.2x: a custom tier")
    assert match_catalog([chat]).sentence == "free, except RPD 0.0694x: a custom tier"


def test_the_hypotheses_are_replayed_on_jobs_processes_with_the_same_result(monkeypatch, tmp_path, capsys):
    """``jobs`` processes replay the eight hypotheses, each on its own: the ranking, every error and residual, the
    report and the fragment are those of one process."""
    import functools

    from sim.calibrate import replay as replay_mod
    log = ROOT / "scenarios" / "logs" / "example_groq_calls.jsonl"
    score = replay_mod._score

    @functools.wraps(score)  # (a worker finds it by its name: the same function there, forked after the patch)
    def where(*call):
        errors, residuals = score(*call)
        return errors, residuals.assign(pid=os.getpid())
    monkeypatch.setattr(replay_mod, "_score", where)
    one, two = calibrate(log, jobs=1), calibrate(log, jobs=2)
    assert {h.residuals["pid"].iloc[0] for h in one.hypotheses} == {os.getpid()}
    assert os.getpid() not in {h.residuals["pid"].iloc[0] for h in two.hypotheses}
    assert [h.name for h in two.hypotheses] == [h.name for h in one.hypotheses] and len(one.hypotheses) == 8
    for a, b in zip(one.hypotheses, two.hypotheses):
        assert np.array_equal(a.errors, b.errors) and a.components == b.components
        assert (a.rank, a.score, a.p_value, a.indistinguishable) == (b.rank, b.score, b.p_value, b.indistinguishable)
        pd.testing.assert_frame_equal(a.residuals.drop(columns="pid"), b.residuals.drop(columns="pid"))
    monkeypatch.undo()
    outputs = []
    for jobs in ("1", "2"):
        assert main(["calibrate", str(log), "--out", str(tmp_path / jobs), "--no-plots", "--jobs", jobs]) == 0
        outputs.append((capsys.readouterr().out, (tmp_path / jobs / "calibrated.toml").read_text(),
                        (tmp_path / jobs / "report.txt").read_text()))
    assert outputs[0] == outputs[1] and "token_bucket" in outputs[0][0]
    with pytest.raises(ValueError, match=r"calibrate\(jobs=0\): jobs is a number of processes >= 1"):
        calibrate(log, jobs=0)
