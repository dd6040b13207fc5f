"""sim/emulator/__init__.py: ``groqsim serve``'s entry: ``--key`` parsing, the emulator a scenario file gives, and
``serve`` (uvicorn run until stopped, the records written once it has stopped, a forced quit's cut-off answers
said in one line, a failure to write the records one ConfigError).

``serve`` runs the real uvicorn once (on 127.0.0.1, a free port, stopped by the test's own client); elsewhere
``uvicorn.Server.run`` is replaced by a stand-in that logs to ``uvicorn.error`` what uvicorn logs when it quits
at once on a second Ctrl-C ("Exception in ASGI application" with the CancelledError of each answer in progress,
``force_exit`` set) and returns without any shutdown."""
from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
import tomllib
import warnings

import httpx
import pandas as pd
import pytest
import uvicorn

import sim
from sim.emulator import Emulator, emulator_from_scenario, parse_keys, serve
from sim.errors import ConfigError

MODEL = "openai/gpt-oss-20b"
SCENARIO = f"""[scenario]\nname = "entry"\nduration = "2m"\nseed = 7\n[org]\ntier = "developer"\n[[clients]]
name = "app"\nmodel = "{MODEL}"\narrival = {{ kind = "poisson", rate = "10/min" }}\nprompt_tokens = 20\nmax_tokens = 32
[compare]\ntier = ["developer", "free"]\n"""


def _spec():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sim.scenario_from_dict(tomllib.loads(SCENARIO)).spec()


def _emulator(tmp_path, **kw) -> Emulator:
    return Emulator(_spec(), log_path=tmp_path / "requests.jsonl", parquet_path=tmp_path / "records.parquet", **kw)


def _free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as s:
        return s.getsockname()[1]


# ---- --key ----------------------------------------------------------------------------------------------------

def test_keys_are_labelled_by_their_project_or_by_themselves():
    assert parse_keys(None) == {} and parse_keys([]) == {}
    assert parse_keys(["sk-a=team-a", "sk-b", " sk-c = team c ", "sk-d=", "sk-e=x=y"]) == {
        "sk-a": "team-a", "sk-b": "sk-b", "sk-c": "team c", "sk-d": "sk-d", "sk-e": "x=y"}
    assert parse_keys(["sk=a", "sk=a", " sk =a"]) == {"sk": "a"}  # the same label again is no conflict


@pytest.mark.parametrize("item", ["=team", " =team", "", "  "])
def test_a_key_must_be_named(item):
    with pytest.raises(ConfigError) as e:
        parse_keys(["sk-ok", item])
    assert str(e.value) == (f"--key {item!r}: no key (allowed: KEY, or KEY=PROJECT to count its requests to a "
                            "project)")


def test_one_key_has_one_label():
    with pytest.raises(ConfigError) as e:
        parse_keys(["sk=support", "sk2", "sk=etl"])
    assert str(e.value) == "--key 'sk=etl': key 'sk' is already labelled 'support'; allowed: one label per key"
    with pytest.raises(ConfigError, match="key 'sk' is already labelled 'sk'"):
        parse_keys(["sk", "sk=etl"])  # a bare key is labelled by itself


# ---- the emulator of a scenario file --------------------------------------------------------------------------

@pytest.fixture
def scenario(tmp_path):
    path = tmp_path / "entry.toml"
    path.write_text(SCENARIO)
    return path


def test_a_scenario_file_gives_its_first_point_in_real_time_with_its_seed_and_no_files(scenario):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        emu = emulator_from_scenario(scenario)
    assert (emu.spec.org.tier, emu.time_scale, emu.seed, emu.keys) == ("developer", 1.0, 7, {})
    assert emu.log_path is None and emu.parquet_path is None
    assert emu.scenario_models == frozenset({MODEL}) and MODEL in emu.tier_limits


def test_the_options_are_the_callers(scenario, tmp_path):
    out = tmp_path / "served"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        emu = emulator_from_scenario(str(scenario), time_scale=20, keys={"sk": "sk"}, out=str(out), seed=0, point=1)
    assert (emu.spec.org.tier, emu.time_scale, emu.seed, emu.keys) == ("free", 20, 0, {"sk": "sk"})  # seed 0 kept
    assert (emu.log_path, emu.parquet_path) == (out / "requests.jsonl", out / "records.parquet")
    assert (out / "requests.jsonl").exists()  # the log is opened at once
    emu.close()
    assert pd.read_parquet(out / "records.parquet").empty


# ---- serve: the real server once --------------------------------------------------------------------------------

def test_serve_answers_on_the_port_given_until_stopped_and_then_writes_the_records(tmp_path, monkeypatch, capsys):
    """127.0.0.1 by default; uvicorn's own lines at ``log_level="info"`` but no access line per request (every
    request is in the emulator's log and records instead); the records written once the server has stopped."""
    emu = _emulator(tmp_path, time_scale=100)
    port, got, real_run = _free_port(), {}, uvicorn.Server.run

    def run(self, sockets=None):
        def client():
            try:
                deadline = time.monotonic() + 10
                while not self.started and time.monotonic() < deadline:
                    time.sleep(0.01)
                with httpx.Client(base_url=f"http://127.0.0.1:{port}/openai/v1", trust_env=False, timeout=10) as c:
                    got["models"] = c.get("/models").status_code
                    got["chat"] = c.post("/chat/completions", json={
                        "model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}).status_code
            finally:
                self.should_exit = True
        thread = threading.Thread(target=client, daemon=True)
        thread.start()
        try:
            real_run(self, sockets)
        finally:
            thread.join(10)
    monkeypatch.setattr(uvicorn.Server, "run", run)
    serve(emu, port=port, log_level="info")
    assert got == {"models": 200, "chat": 200}
    out, err = capsys.readouterr()
    assert f"Uvicorn running on http://127.0.0.1:{port}" in err
    assert "HTTP/1.1" not in out + err and "/chat/completions" not in out + err  # no access log
    assert emu.closed and pd.read_parquet(tmp_path / "records.parquet")["status"].tolist() == [200]


def test_serve_listens_on_127_0_0_1_port_8000_by_default(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: seen.append(
        (self.config.host, self.config.port)))
    serve(_emulator(tmp_path))
    assert seen == [("127.0.0.1", 8000)]


# ---- serve: a forced quit ------------------------------------------------------------------------------------------

class Heard(logging.Handler):
    """The records that got past ``uvicorn.error``'s filters."""

    def __init__(self):
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


def _uvicorn_quits(heard: Heard, cut: int, force_exit: bool = True):
    """A stand-in for ``uvicorn.Server.run``: a warning while serving, then (``force_exit``: a second Ctrl-C) the
    traceback of each of ``cut`` answers in progress, another cancelled task's, and a real error of the app."""
    def run(self, sockets=None):
        log = logging.getLogger("uvicorn.error")
        log.addHandler(heard)
        try:
            log.warning("a warning while serving")
            self.force_exit = force_exit
            for _ in range(cut):
                log.error("Exception in ASGI application\n", exc_info=asyncio.CancelledError())
            log.error("Cancelled the lifespan", exc_info=asyncio.CancelledError())
            log.error("Exception in ASGI application\n", exc_info=ZeroDivisionError("a bug of the app"))
        finally:
            log.removeHandler(heard)
    return run


def _messages(heard: Heard) -> list[tuple[str, str | None]]:
    return [(r.getMessage(), r.exc_info and type(r.exc_info[1]).__name__) for r in heard.records]


@pytest.mark.parametrize("cut, said", [(1, "1 answer"), (2, "2 answers")])
def test_a_forced_quit_counts_the_answers_cut_off_in_one_line(tmp_path, monkeypatch, capsys, cut, said):
    heard = Heard()
    monkeypatch.setattr(uvicorn.Server, "run", _uvicorn_quits(heard, cut))
    emu = _emulator(tmp_path)
    serve(emu)
    assert _messages(heard) == [("a warning while serving", None),
                                ("Exception in ASGI application\n", "ZeroDivisionError")]
    assert capsys.readouterr().err.splitlines()[-1] == (f"groqsim serve: quit at once (a second Ctrl-C): {said} in "
                                                        "progress cut off")
    assert emu.closed and (tmp_path / "records.parquet").exists()


def test_without_a_forced_quit_every_traceback_is_shown_and_nothing_is_said(tmp_path, monkeypatch, capsys):
    heard = Heard()
    monkeypatch.setattr(uvicorn.Server, "run", _uvicorn_quits(heard, 1, force_exit=False))
    serve(_emulator(tmp_path))
    assert _messages(heard) == [("a warning while serving", None),
                                ("Exception in ASGI application\n", "CancelledError"),
                                ("Cancelled the lifespan", "CancelledError"),
                                ("Exception in ASGI application\n", "ZeroDivisionError")]
    assert "quit at once" not in capsys.readouterr().err


def test_nothing_is_left_filtering_uvicorns_log_after_serve(tmp_path, monkeypatch):
    """A later server in the same process (a notebook, a test run) shows its own cancelled tracebacks."""
    monkeypatch.setattr(uvicorn.Server, "run", _uvicorn_quits(Heard(), 1))
    serve(_emulator(tmp_path))
    heard, log = Heard(), logging.getLogger("uvicorn.error")
    log.addHandler(heard)
    try:
        log.error("Exception in ASGI application\n", exc_info=asyncio.CancelledError())
    finally:
        log.removeHandler(heard)
    assert _messages(heard) == [("Exception in ASGI application\n", "CancelledError")]


# ---- serve: the records cannot be written ----------------------------------------------------------------------

def test_records_that_cannot_be_written_are_one_error_naming_where_they_are(tmp_path, monkeypatch):
    emu = _emulator(tmp_path)
    (tmp_path / "records.parquet").mkdir()  # a directory in the way (made after the emulator set files aside)
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: None)
    with pytest.raises(ConfigError) as e:
        serve(emu)
    parquet = tmp_path / "records.parquet"
    assert str(e.value) == (f"could not write the records to {parquet} (Is a directory; the records are kept in "
                            f"{parquet}.partial); every request is also in the log {tmp_path / 'requests.jsonl'}")
    assert emu.closed and (tmp_path / "records.parquet.partial").is_file()


def test_any_other_failure_writing_them_is_named_too(tmp_path, monkeypatch):
    emu = _emulator(tmp_path)

    def flush():
        raise RuntimeError("the disk said no")
    monkeypatch.setattr(emu, "flush", flush)
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: None)
    with pytest.raises(ConfigError) as e:
        serve(emu)
    assert str(e.value) == (f"could not write the records to {tmp_path / 'records.parquet'} "
                            "(RuntimeError('the disk said no')); every request is also in the log "
                            f"{tmp_path / 'requests.jsonl'}")


def test_a_closed_emulator_is_not_served_again(tmp_path, monkeypatch):
    """A second ``serve`` of the same emulator answered requests that neither its log (closed at the first stop)
    nor its records (written then, and not again) kept, silently; it is refused before anything is served."""
    emu, runs = _emulator(tmp_path), []

    def run(self, sockets=None):  # one request answered in each session
        runs.append(self.config.port)
        emu.record(endpoint="chat.completions", model=MODEL, status=400, t_send=emu.clock.now(), label="c",
                   headers={}, error={"message": "m", "type": "invalid_request_error", "code": None})
    monkeypatch.setattr(uvicorn.Server, "run", run)
    serve(emu, port=8001)
    with pytest.raises(ConfigError) as e:
        serve(emu, port=8002)
    assert str(e.value).startswith("serve(emu): the emulator is closed (it served a session already: its log is "
                                   "closed and its records written); allowed: a new Emulator for each session")
    assert runs == [8001] and len(pd.read_parquet(tmp_path / "records.parquet")) == 1
    assert len((tmp_path / "requests.jsonl").read_text().splitlines()) == 1


def test_the_package_exports_its_entry_points():
    names: dict = {}
    exec("from sim.emulator import *", names)
    assert set(names) - {"__builtins__"} == {"Emulator", "build_app", "emulator_from_scenario", "parse_keys", "serve"}


def test_a_flex_multiplier_that_zeroes_a_served_models_limit_is_named_before_serving(tmp_path):
    """The emulator serves every model of the tier on flex, not only the scenario's: a multiplier that scales
    one of them below 1 is refused at start, naming the file's line (a request to that model was a 500)."""
    path = tmp_path / "s.toml"
    path.write_text(SCENARIO.replace('tier = "developer"\n', 'tier = "developer"\n[org.flex]\nmultiplier = 0.004\n', 1)
                    .replace('[compare]\ntier = ["developer", "free"]\n', ""))
    assert sim.load_scenario(path).spec()  # (the scenario's own model, 20b, keeps flex limits >= 1)
    with pytest.raises(ConfigError) as caught:
        emulator_from_scenario(path)
    assert str(caught.value) == (
        f"{path}:8: org.flex.multiplier: 0.004 makes meta-llama/llama-prompt-guard-2-22m's flex 100 x 0.004 = 0.4: "
        "a scaled limit must be a finite number >= 1 (the limit would refuse everything, or nothing ever) (the "
        "emulator serves every model of the tier on flex: raise the multiplier)")
    path.write_text(path.read_text().replace("0.004", "0.01"))  # (RPM 100 x 0.01 = 1: the least allowed)
    assert emulator_from_scenario(path).tier_limits
