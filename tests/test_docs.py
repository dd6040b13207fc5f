"""docs/modelling.md's table of built-in policies and its list of a policy's defaults, read against the code
they describe: a built-in changed in ``sim/config.py`` and not in the doc (or the other way) fails here."""
import re
import tomllib
from pathlib import Path

from sim.config import BUILTIN_POLICIES, Client, Policy

DOC = (Path(__file__).resolve().parents[1] / "docs" / "modelling.md").read_text()
BULLET = DOC.split("* **Defaults and built-ins.**", 1)[1].split("\n* ", 1)[0]


def _rows() -> dict[str, str]:
    rows = re.findall(r"^\s*\| `([a-z-]+)` \| (`[^|]+`) \|", BULLET, flags=re.M)
    return {name: settings for name, settings in rows}


def test_the_table_names_every_built_in_policy_once():
    names = re.findall(r"^\s*\| `([a-z-]+)` \|", BULLET, flags=re.M)
    assert names == list(BUILTIN_POLICIES)


def test_each_built_ins_settings_in_the_table_are_its_settings():
    for name, cell in _rows().items():
        written = tomllib.loads(f"x = {{{cell.strip('`')}}}")["x"]
        assert written == BUILTIN_POLICIES[name], name
        assert Policy(**written) == Policy(**BUILTIN_POLICIES[name])


def test_the_defaults_written_are_the_policys_defaults():
    intro = BULLET.split("| policy |", 1)[0]
    written = dict(re.findall(r"`(\w+) = ([^`]+)`", intro.split(" So ", 1)[0]))
    assert written.pop("policy", None) is None  # (the group's default is said in words)
    defaults = Policy()
    assert set(written) >= {"retry", "max_attempts", "delay", "base", "cap", "jitter", "honor_retry_after",
                            "retry_on"}
    for key, value in written.items():
        assert tomllib.loads(f"v = {value}")["v"] == getattr(defaults, key), key
    unset = re.search(r"and no (.*?) or `(\w+)`\.", intro, flags=re.S)
    named = re.findall(r"`(\w+)`", unset.group(1)) + [unset.group(2)]
    assert set(named) | set(written) == set(Policy.model_fields)
    for key in named:
        assert getattr(defaults, key) in (None, False, []), key
    assert f"`policy` defaults to `{Client.model_fields['policy'].default}`" in " ".join(intro.split())
