"""The emulator's admission decisions in process (``Emulator.decide`` / ``finish``, no server): what a 429
keeps of the unit that refused it, the bodies of injected faults, the tier an injected 498 names, audio's
charge, and the refund of a request that set no max_tokens."""
import pytest

from sim.config import DEFAULT_RESERVATION
from sim.emulator import Emulator
from tests.test_emulator import MODEL, flex_spec, make_spec


def test_a_429_keeps_the_unit_that_refused_it_in_its_decision_and_record():
    emu = Emulator(make_spec(overrides={MODEL: {"rpm": 1}}), time_scale=1)
    first, second = emu.decide(MODEL, 20, 8), emu.decide(MODEL, 20, 8)
    assert (first.status, first.refused_by) == (200, "")
    assert second.status == 429 and second.refused_by == "rpm"
    assert "on requests per minute (RPM): Limit 1, Used 1" in second.error.error["message"]
    emu.record(endpoint="chat", model=MODEL, status=second.status, t_send=second.now, label=None,
               headers=second.headers, error=second.error.error, d=second)
    rec = emu.records()
    assert rec["refused_by"].tolist() == ["rpm"] and rec["outcome"].tolist() == ["rate_limited"]


@pytest.mark.parametrize("status,error", [
    # 5xx from 500 on: Groq's own server-error bodies
    (500, {"message": "Internal Server Error", "type": "internal_server_error", "code": "internal_server_error"}),
    (503, {"message": "Service Unavailable", "type": "service_unavailable", "code": "service_unavailable"}),
    # another 4xx (not 498): the emulator's generic injected body with that status, not a capacity 498
    (429, {"message": "injected error 429", "type": "server_error", "code": "injected"}),
    (400, {"message": "injected error 400", "type": "server_error", "code": "injected"}),
])
def test_injected_faults_have_their_statuses_body_and_charge_nothing(status, error):
    emu = Emulator(make_spec(error_rate=1.0, error_status=status), time_scale=1)
    d = emu.decide(MODEL, 20, 8)
    assert d.status == d.error.status == status and d.error.error == error
    assert d.charged == 0.0 and d.refused_by == ""  # refused before the limits: no unit refused it
    assert emu.limits(MODEL).units["rpm"].remaining(emu.clock.now()) == 30  # free RPM 30, untouched


@pytest.mark.parametrize("asked", [None, "on_demand"])
def test_an_injected_498_on_demand_names_the_on_demand_tier(asked):
    # (auto and flex name flex: tests/test_emulator.py); an on-demand request, asked or by the org's default,
    # gets a 498 about on_demand, with the on-demand limits' headers (RPD 100; flex's would be 1 000)
    emu = Emulator(flex_spec(org={"error_rate": 1.0, "error_status": 498}), time_scale=1)
    d = emu.decide(MODEL, 20, 8, service_tier=asked)
    assert d.status == 498 and d.service_tier == "on_demand"
    assert d.error.error["code"] == d.error.error["type"] == "capacity_exceeded"
    assert f"model `{MODEL}` on service tier `on_demand`" in d.error.error["message"]
    assert d.headers["x-ratelimit-limit-requests"] == "100"


def test_a_transcription_charges_audio_not_tokens():
    # whisper answers have no completion tokens and charge no TPM, whatever the max_tokens default (1 024)
    emu = Emulator(make_spec(), time_scale=1)
    d = emu.decide("whisper-large-v3-turbo", 0, None, audio=10.0)
    assert d.status == 200 and d.completion == 0 and d.charged == 0.0


def test_a_request_without_max_tokens_gets_back_the_unused_default_reservation():
    """refund_unused: a request that sets no max_tokens reserves prompt + DEFAULT_RESERVATION (1 024) and,
    once answered, gets back 1 024 - completion (on-demand TPM 6 000 here; the clock stopped)."""
    emu = Emulator(flex_spec(accounting={"refund_unused": True}), time_scale=1)
    t = emu.clock.now()
    emu.clock.now = lambda: t
    tpm = emu.limits(MODEL).units["tpm"]
    d = emu.decide(MODEL, 20, None)
    assert d.status == 200 and d.charged == 20 + DEFAULT_RESERVATION and 5 <= d.completion <= 32
    assert tpm.remaining(t) == pytest.approx(6000 - 20 - DEFAULT_RESERVATION, abs=1e-6)
    emu.finish(MODEL, d, None)
    assert tpm.remaining(t) == pytest.approx(6000 - 20 - d.completion, abs=1e-6)
