"""What an install ships: every subpackage (the emulator, calibration) and the data tables, not only ``sim``.

``packages = ["sim"]`` once left ``sim/emulator`` and ``sim/calibrate`` out of any non-editable install (a
wheel had no ``groqsim serve`` or ``calibrate``), unseen because the README installs with ``-e``."""
import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _config():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def _shipped(name: str, config) -> bool:
    listed = config.get("packages")
    if isinstance(listed, list):
        return name in listed
    find = listed["find"] if isinstance(listed, dict) else config.get("packages", {}).get("find", {})
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in find.get("include", ["*"]))


def test_every_subpackage_is_shipped():
    config = _config()
    packages = [".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "sim").rglob("__init__.py")]
    assert {"sim", "sim.emulator", "sim.calibrate"} <= set(packages)
    assert [p for p in packages if not _shipped(p, config)] == []


def test_the_data_tables_are_shipped():
    config = _config()
    patterns = config["package-data"]["sim"]
    tables = [p.relative_to(ROOT / "sim").as_posix() for p in (ROOT / "sim" / "data").glob("*.csv")]
    assert len(tables) >= 8
    assert [t for t in tables if not any(fnmatch.fnmatchcase(t, pat) for pat in patterns)] == []
    # sim/data has no __init__.py: setuptools finds it only as a namespace package
    assert not (ROOT / "sim" / "data" / "__init__.py").exists() and config["packages"]["find"]["namespaces"]
