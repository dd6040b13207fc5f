"""``groqsim serve``: a live Groq emulator that real clients (groq/openai SDKs, LiteLLM...) can be pointed at.

:class:`~sim.emulator.core.Emulator` holds the state (limits, clock, records), :func:`~sim.emulator.app.build_app`
the Starlette app; :func:`serve` runs it on uvicorn.  See docs/emulator.md.
"""
from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

from ..errors import ConfigError, KeyedError
from .app import build_app
from .core import Emulator

__all__ = ["Emulator", "build_app", "emulator_from_scenario", "parse_keys", "serve"]


def parse_keys(items: list[str] | None) -> dict[str, str]:
    """``["KEY=label", "KEY2"]`` -> ``{"KEY": "label", "KEY2": "KEY2"}`` (API key -> project label)."""
    from ..errors import ConfigError
    out = {}
    for item in items or []:
        key, _, label = item.partition("=")
        if not key.strip():
            raise ConfigError(f"--key {item!r}: no key (allowed: KEY, or KEY=PROJECT to count its requests to a "
                              "project)")
        key, label = key.strip(), label.strip() or key.strip()
        if out.get(key, label) != label:  # one key, two projects: which one the key's requests count to?
            raise ConfigError(f"--key {item!r}: key {key!r} is already labelled {out[key]!r}; allowed: one label "
                              "per key")
        out[key] = label
    return out


def emulator_from_scenario(path: str | Path, time_scale: float = 1.0, keys: dict[str, str] | None = None,
                           out: str | Path | None = None, seed: int | None = None, point: int = 0) -> Emulator:
    """An emulator for grid point ``point`` of a scenario, logging to ``out``/requests.jsonl and
    records.parquet.  It serves every model the scenario uses (any grid point's, fallbacks included: those its
    start-up warnings name), even one Groq has shut down; the tier's other shut-down models are answered as Groq
    does (:attr:`Emulator.decommissioned`)."""
    from ..scenario import load_scenario
    scenario = load_scenario(path)
    spec = scenario.spec(scenario.point(point, str(path)))
    out_dir = Path(out) if out is not None else None
    try:
        return Emulator(spec, time_scale=time_scale, seed=scenario.scenario.seed if seed is None else seed,
                        keys=keys or {}, log_path=out_dir / "requests.jsonl" if out_dir else None,
                        parquet_path=out_dir / "records.parquet" if out_dir else None, notes=scenario.notes(),
                        scenario_models=frozenset(scenario.used_models()))
    except KeyedError as exc:  # (a setting of the file that only serving finds wrong: named with its line)
        raise scenario.error(exc.key, exc.message) from None


class _CutOff(logging.Filter):
    """Drops uvicorn's tracebacks of what its forced quit cancels (``count``: the answers in progress)."""

    def __init__(self, server):
        super().__init__()
        self.server, self.count = server, 0

    def filter(self, record: logging.LogRecord) -> bool:
        if self.server.force_exit and record.exc_info and isinstance(record.exc_info[1], asyncio.CancelledError):
            self.count += record.getMessage().startswith("Exception in ASGI application")
            return False
        return True


def serve(emu: Emulator, host: str = "127.0.0.1", port: int = 8000, log_level: str = "warning") -> None:
    """Run the emulator on uvicorn until interrupted (Ctrl-C); records are written on shutdown.  Records that
    could not be written then raise :class:`~sim.errors.ConfigError` (one line: where, why, and where they are
    kept instead).  A closed emulator (one that served a session already) is refused: its log is closed and its
    records written, so a second session's requests would be kept nowhere."""
    if emu.closed:
        raise ConfigError("serve(emu): the emulator is closed (it served a session already: its log is closed and "
                          "its records written); allowed: a new Emulator for each session "
                          "(sim.emulator.emulator_from_scenario)")
    import uvicorn
    # the records are written here once the server has stopped, not by the app's lifespan: a second Ctrl-C
    # makes uvicorn quit at once, cancelling the lifespan and the answers in progress, each of which uvicorn
    # logged as a traceback; they are counted instead, and said in one line
    server = uvicorn.Server(uvicorn.Config(build_app(emu), host=host, port=port, log_level=log_level,
                                           access_log=False, lifespan="off"))
    cut = _CutOff(server)
    log = logging.getLogger("uvicorn.error")
    log.addFilter(cut)
    try:
        server.run()
    except KeyboardInterrupt:  # the Ctrl-C uvicorn re-raises once it has stopped (uvicorn.run ignores it too)
        pass
    finally:
        log.removeFilter(cut)
    if cut.count:
        print(f"groqsim serve: quit at once (a second Ctrl-C): {cut.count} answer{'s' * (cut.count != 1)} in "
              "progress cut off", file=sys.stderr)
    try:  # (nothing closed it while serving: the app's lifespan, which would, is off)
        emu.close()
    except Exception as exc:  # noqa: BLE001 - said below, in one line
        emu.close_error = exc
    exc = emu.close_error
    if exc is not None:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else repr(exc)
        raise ConfigError(f"could not write the records to {getattr(exc, 'filename', None) or emu.parquet_path} "
                          f"({why}); every request is also in the log {emu.log_path}")
