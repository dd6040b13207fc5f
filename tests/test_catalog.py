import csv
import io
import json
import subprocess
import sys
from importlib import resources

import pytest

from sim.catalog import Catalog, Limits, format_rows
from sim.errors import ConfigError
from sim.units import parse_count, parse_duration, parse_rate

CAT = Catalog.published()


def published_rows():
    return list(csv.DictReader(io.StringIO(resources.files("sim").joinpath("data/groq_rate_limits.csv").read_text())))


def groqsim(*args):
    return subprocess.run([sys.executable, "-m", "sim", *args], check=False, capture_output=True, text=True)


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
                                       "rpd": 500000, "tpm": 300000, "tpd": None, "ash": None, "asd": None,
                                       "shut_down": "2026-07-17"}]  # (on free and developer)
    table = groqsim("limits", "--tier", "free")
    assert table.returncode == 0 and len(table.stdout.splitlines()) == 21  # header and 20 models
    assert "no published limit" in table.stderr  # the note on - goes to stderr


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


# ---- a user's own limits file -------------------------------------------------------------------------------

def test_limits_file_in_the_package_shape_round_trips(tmp_path):
    f = tmp_path / "limits.csv"
    f.write_text(resources.files("sim").joinpath("data/groq_rate_limits.csv").read_text())
    mine = Catalog.from_file(f)
    assert mine.rows() == CAT.rows() and mine.billed == CAT.billed
    # the CLI reads it too, and prints the same table as the published one
    out = groqsim("limits", "--file", str(f), "--format", "csv")
    assert out.returncode == 0 and out.stdout == groqsim("limits", "--format", "csv").stdout


def test_limits_file_with_console_column_names(tmp_path):
    f = tmp_path / "console.csv"
    f.write_text('Model ID,Requests per Minute,Requests per Day,Tokens per Minute (TPM),Tokens per Day\n'
                 'llama-3.3-70b-versatile,1K,"500,000",300K,No limit\n'
                 'openai/gpt-oss-120b,1000,500K,250000,-\n')
    cat = Catalog.from_file(f)
    assert list(cat.tiers) == ["console"] and cat.bills("console")
    assert cat.limits("console", "llama-3.3-70b-versatile") == Limits(rpm=1000, rpd=500_000, tpm=300_000)
    assert cat.limits("console", "openai/gpt-oss-120b").tpm == 250_000
    mine = Catalog.from_file(f, tier="developer")
    merged = CAT.with_tiers(mine)
    assert merged.tier("developer") == mine.tier("developer") and "qwen/qwen3-32b" not in merged.tier("developer")
    assert merged.tier("free") == CAT.tier("free") and merged.bills("developer") and not merged.bills("free")
    assert "qwen/qwen3-32b" in CAT.tier("developer")  # the original is untouched
    out = groqsim("limits", "--file", str(f), "--format", "json")
    assert out.returncode == 0 and json.loads(out.stdout)[1] == {
        "tier": "console", "model": "openai/gpt-oss-120b", "rpm": 1000, "rpd": 500000, "tpm": 250000, "tpd": None,
        "ash": None, "asd": None, "shut_down": None}


def test_a_model_on_one_tier_of_a_file_is_listed_without_tier(tmp_path):
    """``limits --model M`` without ``--tier`` lists M on the tiers that have it; a model on none is refused
    with every model of every tier (it used to be refused as unknown on the first tier only)."""
    f = tmp_path / "mine.csv"
    f.write_text("tier,model,rpm,tpm\nsmall,m-small,30,6000\nbig,m-big,1000,250000\nbig,m-small,1000,300000\n")
    cat = Catalog.from_file(f)
    assert [r["tier"] for r in cat.rows(model="m-big")] == ["big"]
    assert [(r["tier"], r["tpm"]) for r in cat.rows(model="m-small")] == [("small", 6000), ("big", 300000)]
    with pytest.raises(ConfigError, match=r"unknown model 'm-bug' \(did you mean 'm-big'.*allowed: m-small, m-big\)"):
        cat.rows(model="m-bug")
    with pytest.raises(ConfigError, match=r"unknown model on tier 'small': 'm-big'"):
        cat.rows("small", "m-big")
    out = groqsim("limits", "--file", str(f), "--model", "m-big", "--format", "csv")
    assert out.returncode == 0 and out.stdout.splitlines()[1:] == ["big,m-big,1000,,250000,,,"]


@pytest.mark.parametrize("text,match", [
    ("", "empty"),
    ("tier,model,rpm\nfree,m,30\nfree,m,40\n", r"row 3: free/m appears twice"),
    ("tier,model,rpm,tpm\nfree,m,30,lots\n", r"row 2, column 'tpm': 'lots' is not a count"),
    ("tier,model,rpm\nfree,m,0\n", r"row 2, column 'rpm': a limit must be positive"),
    ("tier,model,rpm,colour\nfree,m,30,red\n", r"row 1, column 'colour': unknown column"),
    ("tier,model\nfree,m\n", "needs a model column and at least one of rpm"),
    ("tier,model,rpm\nfree,m,30,40\n", r"row 2: 4 fields, the header has 3"),
    ("tier,model,rpm\nfree,,30\n", r"row 2, column 'model': empty"),
    ("model,rpm,RPM\nm,1,2\n", "two columns mean 'rpm'"),
    ("tier,model,rpm\n", "no rows after the header"),
    ('"tier,model,rpm\n' + "free,m,1\n" * 20_000, r"not a CSV table \(field larger than field limit \(131072\); "
     r"an unclosed quote\?\)"),
])
def test_limits_file_errors_name_file_row_and_column(tmp_path, text, match):
    f = tmp_path / "bad.csv"
    f.write_text(text)
    with pytest.raises(ConfigError, match=match) as exc:
        Catalog.from_file(f)
    assert str(exc.value).startswith(f"limits file {f}") and "\n" not in str(exc.value)


def test_limits_file_errors_on_the_command_line(tmp_path):
    out = groqsim("limits", "--file", str(tmp_path / "missing.csv"))
    assert out.returncode == 2 and "cannot read it" in out.stderr and "Traceback" not in out.stderr
    bad = tmp_path / "bad.csv"
    bad.write_text("tier,model,rpm\nfree,m,1.5\n")
    out = groqsim("limits", "--file", str(bad))
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and "row 2, column 'rpm'" in out.stderr


# ---- models Groq has shut down ------------------------------------------------------------------------------

def test_shutdowns_are_the_reference_dates():
    import datetime

    from sim.catalog import shutdown_warning, shutdowns
    s = shutdowns()
    expected = {"moonshotai/kimi-k2-instruct": "2025-10-10", "playai-tts": "2025-12-31",
                "playai-tts-arabic": "2025-12-31", "meta-llama/llama-guard-4-12b": "2026-03-05",
                "meta-llama/llama-4-maverick-17b-128e-instruct": "2026-03-09",
                "moonshotai/kimi-k2-instruct-0905": "2026-04-15", "qwen/qwen3-32b": "2026-07-17",
                "meta-llama/llama-4-scout-17b-16e-instruct": "2026-07-17", "llama-3.1-8b-instant": "2026-08-16",
                "llama-3.3-70b-versatile": "2026-08-16", "groq/compound": "2026-09-21",
                "groq/compound-mini": "2026-09-21"}
    assert {m: d.date.isoformat() for m, d in s.items()} == expected
    assert set(s) <= set(CAT.models())
    w = shutdown_warning("llama-3.3-70b-versatile", today=datetime.date(2026, 11, 25))
    assert w.startswith("warning: model 'llama-3.3-70b-versatile' was shut down by Groq on 2026-08-16")
    assert "Enterprise goes on" in w and "\n" not in w
    assert "will be shut down" in shutdown_warning("groq/compound", today=datetime.date(2026, 1, 1))
    assert shutdown_warning("openai/gpt-oss-20b") is None and shutdown_warning("whisper-large-v3") is None


def test_published_is_parsed_once_and_each_caller_gets_its_own():
    """The file is parsed once per process (every run's spec reads it), yet what a caller does to its catalog
    (a scenario adds its custom tiers) never reaches the next caller."""
    first = Catalog.published()
    assert first.tiers == Catalog.from_csv(
        resources.files("sim").joinpath("data/groq_rate_limits.csv").read_text()).tiers
    first.define_tier("mine", "free", {"rpm": 2})
    first.tiers["free"].pop("llama-3.1-8b-instant")
    first.billed["developer"] = False
    again = Catalog.published()
    assert "mine" not in again.tiers and "llama-3.1-8b-instant" in again.tiers["free"]
    assert again.billed["developer"] is True
    assert again.tiers == CAT.tiers and again.tiers["free"] is not first.tiers["free"]


def test_a_shutdown_concerns_the_tiers_its_scope_names_from_its_date():
    import datetime

    from sim.catalog import shutdowns
    gone = shutdowns()
    day = datetime.date(2026, 8, 16)
    llama = gone["llama-3.1-8b-instant"]  # "free and developer tiers; Enterprise goes on"
    assert llama.shut_down_for("free", day) and llama.shut_down_for("Developer", day)
    assert not llama.shut_down_for("enterprise", day) and not llama.shut_down_for("my-custom", day)
    assert not llama.shut_down_for("free", day - datetime.timedelta(days=1))  # not yet
    assert gone["groq/compound"].shut_down_for("my-custom", datetime.date(2026, 9, 21))  # "all tiers"


def test_catalogs_with_the_same_tiers_limits_and_billing_are_equal_and_so_are_the_specs_that_hold_them():
    from sim.scenario import load_scenario
    assert Catalog.published() == Catalog.published() and Catalog.published() is not Catalog.published()
    assert CAT != Catalog.published().define_tier("mine", "developer", scale={"tpm": 2})
    billed_free = Catalog(CAT.copy().tiers, {**CAT.billed, "free": True})
    assert billed_free != CAT and CAT.copy() == CAT
    one_limit_less = CAT.copy()
    one_limit_less.tiers["free"] = dict(one_limit_less.tiers["free"])
    one_limit_less.tiers["free"].pop(next(iter(one_limit_less.tiers["free"])))
    assert one_limit_less != CAT
    assert CAT != "free" and CAT.__eq__(CAT.tiers) is NotImplemented
    scenario = load_scenario("scenarios/chatbot_free_vs_developer.toml")
    assert scenario.spec(0) == scenario.spec(0)
    assert scenario.spec(0) != scenario.spec(len(scenario.grid()) - 1)
