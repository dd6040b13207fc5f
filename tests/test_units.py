"""Go ``time.Duration`` strings (Groq's reset headers and 429 waits) and the scenario duration parser."""
import math
import re
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.units import (
    format_duration,
    format_go_duration,
    format_reset,
    format_wait,
    parse_count,
    parse_duration,
    parse_go_duration,
    parse_rate,
    seconds_to_ns,
)

NS, US, MS, S, M, H = 1, 1_000, 1_000_000, 1_000_000_000, 60_000_000_000, 3_600_000_000_000

# Go's own table (src/time/time_test.go durationTests) and ExampleDuration_String outputs.
GO_STRINGS = [
    ("0s", 0), ("1ns", 1 * NS), ("1.1µs", 1100 * NS), ("2.2ms", 2200 * US), ("3.3s", 3300 * MS),
    ("4m5s", 4 * M + 5 * S), ("4m5.001s", 4 * M + 5001 * MS), ("5h6m7.001s", 5 * H + 6 * M + 7001 * MS),
    ("8m0.000000001s", 8 * M + 1 * NS), ("2562047h47m16.854775807s", (1 << 63) - 1),
    ("-2562047h47m16.854775808s", -(1 << 63)), ("1h2m0.3s", 1 * H + 2 * M + 300 * MS), ("300ms", 300 * MS),
    ("1h15m30.918273645s", H + 15 * M + 30 * S + 918 * MS + 273 * US + 645 * NS),
]


@pytest.mark.parametrize("text,ns", GO_STRINGS)
def test_go_duration_string_matches_go(text, ns):
    assert format_go_duration(ns) == text
    assert parse_go_duration(text) == ns


# Go's ParseDuration table (src/time/time_test.go parseDurationTests), a selection.
@pytest.mark.parametrize("text,ns", [
    ("0", 0), ("5s", 5 * S), ("30s", 30 * S), ("1478s", 1478 * S), ("-5s", -5 * S), ("+5s", 5 * S),
    ("-0", 0), ("+0", 0), ("5.0s", 5 * S), ("5.6s", 5 * S + 600 * MS), ("5.s", 5 * S), (".5s", 500 * MS),
    ("1.0s", 1 * S), ("1.00s", 1 * S), ("1.004s", 1 * S + 4 * MS), ("1.0040s", 1 * S + 4 * MS),
    ("100.00100s", 100 * S + 1 * MS), ("10ns", 10 * NS), ("11us", 11 * US), ("12µs", 12 * US),
    ("12μs", 12 * US), ("13ms", 13 * MS), ("14s", 14 * S), ("15m", 15 * M), ("16h", 16 * H),
    ("3h30m", 3 * H + 30 * M), ("10.5s4m", 4 * M + 10 * S + 500 * MS), ("-2m3.4s", -(2 * M + 3 * S + 400 * MS)),
    ("1h2m3s4ms5us6ns", 1 * H + 2 * M + 3 * S + 4 * MS + 5 * US + 6 * NS),
    ("39h9m14.425s", 39 * H + 9 * M + 14425 * MS),
    ("52763797000ns", 52763797000 * NS), ("0.3333333333333333333h", 20 * M),
    ("9223372036854775807ns", (1 << 63) - 1), ("-9223372036854775808ns", -(1 << 63)),
])
def test_parse_go_duration_matches_go(text, ns):
    assert parse_go_duration(text) == ns


@pytest.mark.parametrize("text", ["", "3", "-", "s", ".", "-.", ".s", "+.s", "1d", "1.5x", "9223372036854775808ns",
                                  "3000000h"])
def test_parse_go_duration_rejects_what_go_rejects(text):
    with pytest.raises(ValueError):
        parse_go_duration(text)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1))
def test_go_duration_round_trips_exactly(ns):
    text = format_go_duration(ns)
    assert parse_go_duration(text) == ns
    # canonical as Go writes it: units in Go's order, no fraction ending in 0, no leading zeros
    assert re.fullmatch(r"-?(0s|[1-9]\d*(\.\d*[1-9])?(ns|µs|ms)|((([1-9]\d*)h)?([1-9]\d*|(?<=h)0)m)?"
                        r"(0|[1-9]\d?)(\.\d*[1-9])?s)", text), text


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=0, max_value=1e6, allow_nan=False))
def test_reset_header_is_ceil_to_ms_and_parses_back(seconds):
    text = format_reset(seconds)
    back = parse_duration(text)
    assert seconds - 1e-9 <= back < seconds + 0.001 + 1e-9
    assert parse_go_duration(text) % MS == 0


@pytest.mark.parametrize("seconds,text", [(0.547, "547ms"), (172.8, "2m52.8s"), (7.66, "7.66s"),
                                          (179.56, "2m59.56s"), (0, "0s"), (0.0004, "1ms"), (60, "1m0s"),
                                          (3725.5, "1h2m5.5s"), (90061, "25h1m1s")])
def test_reset_headers_as_groq_writes_them(seconds, text):
    assert format_reset(seconds) == text


def test_wait_has_full_precision_like_groq():
    assert format_wait((5034 + 1443 - 6000) / (6000 / 60)) == "4.77s"
    assert format_wait(6.780999999) == "6.780999999s"
    assert format_wait(578.016) == "9m38.016s"
    assert format_wait(0.02) == "20ms"
    assert seconds_to_ns(179.56, "ceil") == 179_560_000_000


@pytest.mark.parametrize("text,seconds", [("90s", 90), ("15m", 900), ("1d", 86_400), ("500ms", 0.5),
                                          ("2h", 7_200), ("2m59.56s", 179.56), ("547ms", 0.547), ("1.5µs", 1.5e-6),
                                          ("250ns", 2.5e-7), ("12", 12), (" 1m 30s ", 90)])
def test_parse_duration_keeps_scenario_inputs(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds, rel=1e-12)


@pytest.mark.parametrize("text", ["", "-5s", "abc", "5x", "inf"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError):
        parse_duration(text)


# ---- every unit and rounding mode, each asserted exactly (mutation testing found them unpinned) ---------

@pytest.mark.parametrize("text,per_second", [
    ("3.5/s", 3.5), ("3.5/sec", 3.5), ("3.5/second", 3.5), ("120/min", 2.0), ("120/minute", 2.0),
    ("120/m", 2.0), ("7200/h", 2.0), ("7200/hour", 2.0), ("172800/d", 2.0), ("172800/day", 2.0),
    ("2.5", 2.5), (" 20 / min ", 1 / 3), (4, 4.0), (0.25, 0.25), ("0/min", 0.0),
])
def test_parse_rate_every_unit(text, per_second):
    assert parse_rate(text) == pytest.approx(per_second, rel=1e-15)


@pytest.mark.parametrize("bad", ["20/fortnight", "fast", "-1/s", "inf/s", "nan", True, -0.5, float("inf"), [20],
                                 {"a": 1}, None])
def test_parse_rate_rejects(bad):
    with pytest.raises(ValueError):
        parse_rate(bad)


@pytest.mark.parametrize("text,seconds", [
    ("1ns", 1e-9), ("3us", 3e-6), ("3µs", 3e-6), ("3μs", 3e-6), ("7ms", 0.007), ("2s", 2.0), ("2m", 120.0),
    ("2h", 7200.0), ("2d", 172_800.0), ("1d2h3m4s5ms", 93_784.005), ("1.5m", 90.0), (".5s", 0.5), ("5.s", 5.0),
    (7, 7.0), (0.25, 0.25), (0, 0.0), ("0", 0.0), ("1e3", 1000.0),
])
def test_parse_duration_every_unit(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds, rel=1e-15)


@pytest.mark.parametrize("bad", [True, False, -1, -0.5, float("inf"), float("nan"), "5s-", "s5", "1x2s", "--1s",
                                 ["2m"], {"m": 2}, None])
def test_parse_duration_rejects_bools_negatives_and_junk(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


@pytest.mark.parametrize("text,count", [("0", 0), ("1", 1), ("14.4K", 14_400), ("14.4k", 14_400),
                                        ("1M", 1_000_000), ("2.5m", 2_500_000), (" 30 ", 30), ("500K", 500_000),
                                        ("", None), ("-", None), ("  -  ", None)])
def test_parse_count_exactly(text, count):
    assert parse_count(text) == count


@given(st.integers(0, 10**7), st.integers(0, 4), st.sampled_from(["K", "M", "k", ""]))
def test_parse_count_is_exact_for_every_decimal(digits, places, suffix):
    # a console's table as typed: 16.1K, 4.1M, 2.01K (float arithmetic read 16.1K as 16100.000000000002 and
    # refused it); the reference is exact rational arithmetic
    text = f"{digits // 10**places}" + (f".{digits % 10**places:0{places}d}" if places else "") + suffix
    value = Fraction(digits, 10**places) * {"K": 1000, "k": 1000, "M": 10**6, "": 1}[suffix]
    if value.denominator == 1:
        assert parse_count(text) == value
    else:
        with pytest.raises(ValueError, match="whole number"):
            parse_count(text)


@pytest.mark.parametrize("bad", ["1.5", "1.0001K", "K", "1G", "-3", "1e3"])
def test_parse_count_rejects_fractions_and_unknown_suffixes(bad):
    with pytest.raises(ValueError):
        parse_count(bad)


def test_seconds_to_ns_roundings():
    assert seconds_to_ns(1.5e-9) == 2 and seconds_to_ns(1.4e-9) == 1 and seconds_to_ns(0.0) == 0
    assert seconds_to_ns(1.2e-9, "ceil") == 2 and seconds_to_ns(1e-9, "ceil") == 1
    assert seconds_to_ns(179.56, "nearest") == 179_560_000_000 == seconds_to_ns(179.56, "ceil")
    assert seconds_to_ns(0.1 + 0.2, "ceil") == 300_000_000  # float noise below 1e-6 ns is not rounded up
    with pytest.raises(ValueError):
        seconds_to_ns(1.0, "floor")


@pytest.mark.parametrize("seconds,text", [
    (86_400, "1d"), (172_800, "2d"), (7_200, "2h"), (3_600, "1h"), (900, "15m"), (60, "1m"), (90, "1m30s"),
    (0.5, "0.5s"), (0, "0s"), (59.99, "59.99s"), (3_601, "1h0m1s"), (86_460, "1441m"),
    (90_061.5, "25h1m1.5s"), (0.004, "4ms"), (12.345, "12.35s"), (61.1, "1m1.1s"), (0.001, "1ms"),
    (0.0123, "0.02s"), (2.5e-6, "2.5us"), (86_400e6, "1000000d"),
])
def test_format_duration_as_a_scenario_writes_it(seconds, text):
    assert format_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(seconds, abs=0.01)


def test_a_duration_past_a_trillion_days_is_short_and_never_an_overflow():
    """(A duration near the float maximum crashed `check` with an OverflowError: ceil of infinity.)"""
    assert format_duration(1.7976931348623157e308) == "2.08e+303d"
    assert format_duration(math.inf) == "infd"


@pytest.mark.parametrize("text", ["\u0663s", "\u0663", "1\u0660m", "\uff15s"])
def test_a_duration_is_written_in_ascii_digits(text):
    """(Python's \\d and float() read Arabic-Indic or full-width digits: "٣s" was 3 s.)"""
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize("seconds,text", [(-1.0, "0s"), (0.0, "0s"), (1e-9, "1ms"), (0.001, "1ms"),
                                          (0.0010000001, "1ms"), (0.0010001, "2ms"), (59.9995, "1m0s")])
def test_reset_header_rounds_up_to_the_millisecond_and_never_below_zero(seconds, text):
    assert format_reset(seconds) == text


@pytest.mark.parametrize("seconds,text", [(-2.0, "0s"), (0.0, "0s"), (1e-9, "1ns"), (1.4e-9, "1ns"),
                                          (1.6e-9, "2ns"), (0.0000015, "1.5µs"), (3600.0, "1h0m0s")])
def test_wait_rounds_to_the_nearest_nanosecond_and_never_below_zero(seconds, text):
    assert format_wait(seconds) == text


def test_go_fraction_digits_beyond_int64_are_dropped_as_go_does():
    # Go's leadingFraction stops adding digits once the next would overflow int64; the value is unchanged
    assert parse_go_duration("1." + "9" * 30 + "s") == 2 * S
    assert parse_go_duration("0." + "0" * 25 + "1s") == 0
    assert parse_go_duration("1.000000001s") == S + 1
    assert parse_go_duration("0.000000001s") == 1
    assert parse_go_duration("-9223372036.854775808s") == -(1 << 63)
    with pytest.raises(ValueError):
        parse_go_duration("9223372036.854775808s")


@pytest.mark.parametrize("ns,text", [(999, "999ns"), (1_000, "1µs"), (1_001, "1.001µs"), (999_999, "999.999µs"),
                                     (1_000_000, "1ms"), (999_999_999, "999.999999ms"), (1_000_000_000, "1s"),
                                     (-1_000, "-1µs"), (-1_000_000_000, "-1s"), (60_000_000_000, "1m0s")])
def test_go_duration_unit_boundaries(ns, text):
    assert format_go_duration(ns) == text


def test_go_duration_of_a_whole_float_or_numpy_integer():
    np = pytest.importorskip("numpy")
    assert format_go_duration(1.5e9) == "1.5s" and format_go_duration(np.int64(547_000_000)) == "547ms"


def test_fraction_digits_past_int64_are_ignored_like_go():
    # Go's leadingFraction stops taking digits once the next would overflow int64 (19 of these 21 are kept):
    # 6358416439747221930 * (3.6e12 / 1e19) truncates to ...308; all 21 digits would give ...309
    assert parse_go_duration("0.635841643974722193090h") == 2_289_029_918_308
