import csv
import io
import json
import subprocess
import sys
from importlib import resources

import pytest

from sim.catalog import Catalog, format_rows
from sim.errors import ConfigError
from sim.units import parse_count, parse_duration, parse_rate

CAT = Catalog.published()


def published_rows():
    return list(csv.DictReader(io.StringIO(resources.files("sim").joinpath("data/groq_rate_limits.csv").read_text())))


def groqsim(*args):
    return subprocess.run([sys.executable, "-m", "sim", *args], capture_output=True, text=True)


def test_counts_parse_like_the_page():
    assert parse_count("14.4K") == 14_400
    assert parse_count("1M") == 1_000_000
    assert parse_count("1.2K") == 1_200
    assert parse_count("30") == 30
    assert parse_count("-") is None
    with pytest.raises(ValueError):
        parse_count("lots")


def test_durations_print_as_written():
    from sim.units import format_duration
    assert [format_duration(s) for s in (86_400, 7_200, 900, 90, 0.5)] == ["1d", "2h", "15m", "1m30s", "0.5s"]


def test_durations_and_rates():
    assert parse_duration("90s") == 90
    assert parse_duration("15m") == 900
    assert parse_duration("2h") == 7200
    assert parse_duration("1d") == 86400
    assert parse_duration("2m59.56s") == pytest.approx(179.56)
    assert parse_duration("500ms") == 0.5
    assert parse_duration(12) == 12
    assert parse_rate("20/min") == pytest.approx(1 / 3)
    assert parse_rate("1000/day") == pytest.approx(1000 / 86400)
    for bad in ("ten minutes", "-5s", "5x"):
        with pytest.raises(ValueError):
            parse_duration(bad)
    with pytest.raises(ValueError):
        parse_rate("-3/min")


def test_csv_has_all_40_rows_exactly_as_published():
    out = groqsim("limits", "--format", "csv")
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert list(rows[0]) == ["tier", "model", "rpm", "rpd", "tpm", "tpd", "ash", "asd"]
    pub = published_rows()
    assert len(rows) == len(pub) == 40
    for mine, theirs in zip(rows, pub):
        assert mine["tier"] == theirs["tier"] and mine["model"] == theirs["model"]
        for u in ("rpm", "rpd", "tpm", "tpd", "ash", "asd"):
            expected = parse_count(theirs[u])
            assert mine[u] == ("" if expected is None else str(expected))
    # spot checks typed from the page
    assert rows[3] == {"tier": "free", "model": "llama-3.1-8b-instant", "rpm": "30", "rpd": "14400",
                       "tpm": "6000", "tpd": "500000", "ash": "", "asd": ""}
    last = rows[-1]
    assert last["model"] == "whisper-large-v3-turbo" and last["ash"] == "400000" and last["asd"] == "4000000"


def test_limits_filters_and_json():
    out = groqsim("limits", "--tier", "developer", "--model", "qwen/qwen3-32b", "--format", "json")
    assert out.returncode == 0
    assert json.loads(out.stdout) == [{"tier": "developer", "model": "qwen/qwen3-32b", "rpm": 1000,
                                       "rpd": 500000, "tpm": 300000, "tpd": None, "ash": None, "asd": None}]
    table = groqsim("limits", "--tier", "free")
    assert table.returncode == 0 and len(table.stdout.splitlines()) == 21


def test_unknown_model_suggests_close_match():
    out = groqsim("limits", "--model", "llama-3.3-70b")
    assert out.returncode == 2
    assert "did you mean 'llama-3.3-70b-versatile'" in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    out = groqsim("limits", "--tier", "pro")
    assert out.returncode == 2 and "unknown tier 'pro'" in out.stderr


def test_custom_tier_and_overrides():
    cat = CAT.copy().define_tier("enterprise", base="developer", scale={"tpm": 4},
                                 overrides={"llama-3.1-8b-instant": {"rpd": "1M"}})
    assert cat.limits("enterprise", "llama-3.3-70b-versatile").tpm == 1_200_000
    assert cat.limits("enterprise", "llama-3.3-70b-versatile").rpm == 1000
    assert cat.limits("enterprise", "llama-3.1-8b-instant").rpd == 1_000_000
    assert cat.limits("developer", "llama-3.3-70b-versatile").tpm == 300_000  # base untouched
    assert "enterprise" not in CAT.tiers
    with pytest.raises(ConfigError, match="limit unit"):
        CAT.copy().define_tier("x", base="free", scale={"tpx": 2})
    with pytest.raises(ConfigError, match="positive integer"):
        CAT.copy().override("free", "allam-2-7b", rpm=-3)


def test_table_format_marks_missing_limits():
    text = format_rows(CAT.rows("free", "whisper-large-v3"), "table")
    assert text.splitlines()[1].split()[-4:] == ["-", "-", "7200", "28800"]
