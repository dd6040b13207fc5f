"""sim/fields.py: the field types every validated shape shares.

``Strict`` models (every scenario table, and the objects the Python API builds: ``Org``, ``Client``,
``BatchLane``...) refuse a misspelt key, cannot be changed once made, take no number written as text (nor a
whole float as a count) and no ``inf``/``nan``; ``Duration``, ``PositiveDuration`` and ``Rate`` read the
documented forms (``90s``, ``15m``, ``2h``, ``1d``, ``2m59.56s``, ``500ms``; ``20/min``, ``3.5/s``,
``400/h``, ``1000/day``; a plain number is seconds, or per second) and name what is allowed otherwise."""
from __future__ import annotations

import math
import tomllib
import warnings

import numpy as np
import pytest
from pydantic import ValidationError

import sim
from sim.batch import BatchJobs, BatchLane
from sim.config import Client, Dist, Org, arrival
from sim.errors import ConfigError
from sim.fields import MAX_SIZE, Duration, PositiveDuration, Rate, Strict, is_whole
from sim.flex import Flex
from sim.scenario import Meta


class Timing(Strict):
    """A shape of the caller's own, built from the shared types."""
    every: Duration = 0.0
    first: PositiveDuration = 1.0
    rate: Rate = 0.0


def _error(exc: pytest.ExceptionInfo) -> tuple[str, str]:
    err = exc.value.errors()[0]
    return err["type"], err["msg"]


# ---- Duration, PositiveDuration, Rate -------------------------------------------------------------------------

@pytest.mark.parametrize("text, seconds", [("90s", 90.0), ("15m", 900.0), ("2h", 7200.0), ("1d", 86_400.0),
                                           ("2m59.56s", 179.56), ("500ms", 0.5), (" 1h 30m ", 5400.0), (45, 45.0),
                                           (2.5, 2.5), ("12", 12.0), (0, 0.0)])
def test_a_duration_reads_the_documented_forms(text, seconds):
    assert Timing(every=text).every == pytest.approx(seconds, rel=1e-12)


@pytest.mark.parametrize("value, why", [("ten seconds", "is not a duration (allowed: a number of seconds, or like "
                                                        "90s, 15m, 2h, 1d, 2m59.56s, 500ms)"),
                                        (-1, "is not a duration (must be finite and >= 0)"),
                                        ("inf", "is not a duration (must be finite and >= 0)"),
                                        (True, "is not a duration (allowed: a number of seconds"),
                                        ([1], "is not a duration (allowed: a number of seconds")])
def test_a_bad_duration_says_what_is_allowed(value, why):
    with pytest.raises(ValidationError) as e:
        Timing(every=value)
    assert _error(e)[0] == "value_error" and f"{value!r} {why}" in _error(e)[1]


def test_a_positive_duration_is_above_zero():
    assert Timing(first="1ms").first == 0.001
    with pytest.raises(ValidationError) as e:
        Timing(first=0)
    assert _error(e) == ("greater_than", "Input should be greater than 0")
    with pytest.raises(ConfigError, match=r"scenario\.duration: '0s': must be > 0 s"):
        sim.scenario_from_dict({"scenario": {"duration": "0s"}})


@pytest.mark.parametrize("text, per_second", [("20/min", 20 / 60), ("3.5/s", 3.5), ("400/h", 400 / 3600),
                                              ("1000/day", 1000 / 86_400), (2, 2.0), ("2", 2.0), (0, 0.0)])
def test_a_rate_reads_the_documented_forms(text, per_second):
    assert Timing(rate=text).rate == pytest.approx(per_second, rel=1e-12)


@pytest.mark.parametrize("value, why", [("20/week", "is not a rate (allowed: like 20/min, 3.5/s, 400/h, 1000/day)"),
                                        ("fast", "is not a rate (allowed: like 20/min"),
                                        (-3, "is not a rate (must be finite and >= 0)"),
                                        (float("nan"), "is not a rate (must be finite and >= 0)"),
                                        (False, "is not a rate (allowed: a number per second")])
def test_a_bad_rate_says_what_is_allowed(value, why):
    with pytest.raises(ValidationError) as e:
        Timing(rate=value)
    assert f"{value!r} {why}" in _error(e)[1]


# ---- Strict: no unknown key, frozen, no text for numbers, finite --------------------------------------------

def test_a_misspelt_key_is_an_error_in_the_python_api_too():
    """A scenario file's keys are checked before pydantic sees them; the Python API's objects rely on the
    model alone."""
    with pytest.raises(ValidationError) as e:
        Org(tierr="developer")
    assert _error(e) == ("extra_forbidden", "Extra inputs are not permitted")
    with pytest.raises(ValidationError) as e:
        Client(name="c", model="openai/gpt-oss-20b", arrival=arrival(kind="poisson", rate=1), polcy="groq-sdk")
    assert e.value.errors()[0]["loc"] == ("polcy",) and _error(e)[0] == "extra_forbidden"
    with pytest.raises(ValidationError, match="extra_forbidden"):
        Timing(evry="5s")


def test_a_model_cannot_be_changed_once_made():
    """A spec's parts are shared (grid points copy what they do not change): none can be changed in place."""
    org = Org(tier="developer")
    with pytest.raises(ValidationError) as e:
        org.tier = "free"
    assert _error(e)[0] == "frozen_instance" and org.tier == "developer"
    with pytest.raises(ValidationError):
        Timing().every = 3.0
    assert hash(Flex()) == hash(Flex()) and len({BatchLane(), BatchLane(), BatchLane(speed_median=1000)}) == 2


def test_numbers_are_numbers_not_text_and_counts_are_whole():
    for make in (lambda: Org(error_rate="0.1"), lambda: BatchLane(speed_median="4000"),
                 lambda: Flex(multiplier="2")):
        with pytest.raises(ValidationError) as e:
            make()
        assert _error(e) == ("float_type", "Input should be a valid number")
    for bad in (1.0, "1", True):
        with pytest.raises(ValidationError) as e:
            Meta(seed=bad)
        assert _error(e)[0] == "int_type"
    # an int where a float goes is a number
    assert BatchLane(speed_median=4000).speed_median == 4000.0 and Org(error_rate=0).error_rate == 0.0


def test_inf_and_nan_are_refused_where_no_bound_would():
    for make in (lambda: BatchLane(speed_median=math.inf), lambda: BatchJobs(bytes_per_token=math.inf),
                 lambda: BatchJobs(line_overhead=math.nan)):
        with pytest.raises(ValidationError) as e:
            make()
        assert _error(e) == ("finite_number", "Input should be a finite number")


BASE = """[scenario]\nname = "f"\nduration = "1m"\n[org]\ntier = "developer"\n[[clients]]\nname = "c"
model = "openai/gpt-oss-20b"\narrival = { kind = "poisson", rate = "10/min" }\nprompt_tokens = 100\nmax_tokens = 100
"""


@pytest.mark.parametrize("extra, message", [
    ('[service."openai/gpt-oss-20b"]\noutput_tps = inf\n',
     'service.openai/gpt-oss-20b.output_tps: inf: Input should be a finite number'),
    ('[prices."openai/gpt-oss-20b"]\ninput = nan\n', 'prices.openai/gpt-oss-20b.input: nan: Input should be a '
                                                      'finite number'),
    ('[service."openai/gpt-oss-20b"]\noutput_tps = "500"\n',
     "service.openai/gpt-oss-20b.output_tps: '500': Input should be a valid number"),
])
def test_a_scenario_file_gets_the_same_one_line_errors(extra, message):
    with pytest.raises(ConfigError) as e:
        sim.scenario_from_dict(tomllib.loads(BASE + extra), source="f.toml")
    assert str(e.value) == f"f.toml: {message}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert sim.scenario_from_dict(tomllib.loads(BASE), source="f.toml").spec().clients[0].name == "c"


def test_seed_one_point_oh_in_a_file_is_not_a_seed():
    text = BASE.replace('duration = "1m"', 'duration = "1m"\nseed = 1.0')
    with pytest.raises(ConfigError, match=r"^f\.toml: scenario\.seed: 1\.0: Input should be a valid integer"):
        sim.scenario_from_dict(tomllib.loads(text), source="f.toml")


# ---- sizes and whole numbers --------------------------------------------------------------------------------

def test_a_size_is_at_most_max_size():
    assert MAX_SIZE == 10_000_000
    assert Dist(value=MAX_SIZE).value == MAX_SIZE
    with pytest.raises(ValidationError) as e:
        Dist(value=MAX_SIZE + 1)
    assert _error(e) == ("less_than_equal", "Input should be less than or equal to 10000000")


def test_is_whole_is_an_integer_but_not_a_bool():
    assert all(is_whole(v) for v in (0, 3, -2, np.int64(7), np.uint8(1), 10**30))
    assert not any(is_whole(v) for v in (True, np.bool_(False), 3.0, np.float64(2), "3", None))


@pytest.mark.parametrize("err, said", [
    ({"type": "greater_than_equal", "ctx": {"ge": 1.0}, "input": "0s"}, "must be >= 1 s"),  # a duration: seconds
    ({"type": "greater_than", "ctx": {"gt": 0.0}, "input": 0}, "must be > 0"),  # (a bare number: no unit)
    ({"type": "less_than", "ctx": {"lt": 1.0}, "input": 1.5}, "must be < 1"),
    ({"type": "less_than_equal", "ctx": {"le": 0.5}, "input": "2K"}, "must be <= 0.5"),  # (a count, not seconds)
    ({"type": "greater_than_equal", "ctx": {"ge": 0.0001}, "input": 1e-5}, "must be >= 0.0001"),
    ({"type": "greater_than", "ctx": {"gt": 0.0}, "input": "0.0"}, "must be > 0"),  # (a number quoted: no unit)
])
def test_a_bound_is_said_with_its_operator_and_a_durations_unit(err, said):
    from sim.fields import bound_message
    assert bound_message(err) == said
