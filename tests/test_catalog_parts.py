"""The limits catalog's parts at their edges: the units' windows (the limits page), scaling, a user's limits
file, tiers defined from others, the table's formats and the shutdown warning."""
import dataclasses
import datetime
import json

import pytest

from sim.catalog import UNIT_SPEC, Catalog, Limits, format_rows, shutdown_warning
from sim.errors import ConfigError, KeyedError


def test_each_unit_counts_over_the_window_its_name_says():
    """The limits page: per minute, per day, audio seconds per hour and per day."""
    assert UNIT_SPEC == {"rpm": (60.0, "requests"), "rpd": (86_400.0, "requests"), "tpm": (60.0, "tokens"),
                         "tpd": (86_400.0, "tokens"), "ash": (3_600.0, "audio_seconds"),
                         "asd": (86_400.0, "audio_seconds")}


def test_a_scaled_limit_rounds_and_must_stay_at_least_one():
    lim = Limits(rpm=30, tpm=6000)
    with pytest.raises(dataclasses.FrozenInstanceError):
        lim.rpm = 5  # (a tier's limits are shared by every spec built from the catalog)
    assert lim.scaled({"rpm": 1 / 30, "tpm": 0.5, "ash": 4}) == Limits(rpm=1, tpm=3000)  # no ash: none scaled
    # halves round up (Python's round took 2.5 to 2 and 3.5 to 4: equal fractions, unequal limits)
    assert [Limits(rpm=10).scaled({"rpm": f}).rpm for f in (0.05, 0.25, 0.35, 0.247)] == [1, 3, 4, 2]
    with pytest.raises(KeyedError, match=r"30 x 0\.0163934 = 0\.491803: a scaled limit must be a finite number >= 1"):
        lim.scaled({"rpm": 1 / 61})
    with pytest.raises(KeyedError):
        lim.scaled({"tpm": float("inf")})


def test_a_multiplier_that_takes_an_unsent_models_limit_below_one_leaves_that_model_out():
    """``scale = { rpm = 0.04 }`` on Free: gpt-oss-120b's 30 RPM becomes 1 (1.2), playai-tts's 10 becomes 0.4,
    which refused the whole tier even for a scenario that never sends to playai-tts."""
    from sim.catalog import Catalog
    cat = Catalog.published().copy().define_tier("h", "free", scale={"rpm": 0.04},
                                                 needed={"openai/gpt-oss-120b"})
    assert cat.limits("h", "openai/gpt-oss-120b").rpm == 1
    assert "playai-tts" not in cat.tier("h") and "openai/gpt-oss-20b" in cat.tier("h")
    with pytest.raises(KeyedError, match=r"^scale\.rpm: playai-tts's 10 x 0\.04 = 0\.4"):
        Catalog.published().copy().define_tier("h", "free", scale={"rpm": 0.04},
                                               needed={"openai/gpt-oss-120b", "playai-tts"})
    with pytest.raises(KeyedError):  # (no needed: every model must keep a limit)
        Catalog.published().copy().define_tier("h", "free", scale={"rpm": 0.04})


def _file(tmp_path, text):
    path = tmp_path / "limits.csv"
    path.write_text(text)
    return path


def test_a_limits_file_with_the_consoles_names_blank_rows_and_no_limit_spellings(tmp_path):
    path = _file(tmp_path, "Model ID,Requests per Minute (RPM),Tokens per Minute (TPM),Tokens per Day (TPD)\n"
                           "m1,30,6K,none\n"
                           " , , , \n"
                           "m2,\"1,000\",-,unlimited\n"
                           ",,,\n\n")
    cat = Catalog.from_file(path, tier="mine")
    assert cat.tiers == {"mine": {"m1": Limits(rpm=30, tpm=6000), "m2": Limits(rpm=1000)}}
    for text, message in (("model,rpm\nm,0\n", "row 2, column 'rpm': a limit must be positive ('-' = no limit)"),
                          ("model,rpm\nm,x\n", "row 2, column 'rpm': 'x' is not a count"),
                          ("model,rpm\n\n", "no rows after the header"),
                          ("\n,\n", "empty (expected a header row: tier, model, rpm, rpd, tpm, ...)")):
        with pytest.raises(ConfigError, match=f"limits file {path}: " + message.replace("(", r"\(").replace(
                ")", r"\)").replace(".", r"\.")):
            Catalog.from_file(_file(tmp_path, text))


def test_a_tier_defined_from_another_bills_like_it_unless_told_and_checks_its_overrides():
    cat = Catalog.published()
    cat.define_tier("cheap", "developer")
    cat.define_tier("gift", "developer", billed=False)
    cat.define_tier("paid", "free", billed=True)
    assert (cat.bills("cheap"), cat.bills("gift"), cat.bills("paid"), cat.bills("free")) == (True, False, True, False)
    with pytest.raises(ConfigError, match="tier 'nope'"):
        cat.bills("nope")
    with pytest.raises(KeyedError) as err:
        cat.define_tier("odd", "free", scale={"rpx": 2})
    assert err.value.key == "scale.rpx"
    assert cat.override("paid", "allam-2-7b", rpm=1, tpm="2K") is cat
    assert cat.limits("paid", "allam-2-7b") == Limits(rpm=1, rpd=7000, tpm=2000, tpd=500_000)
    for bad in (0, -3, 2.5):
        with pytest.raises(KeyedError, match=f"limit paid/allam-2-7b/rpm must be a positive integer, got {bad!r}"):
            cat.override("paid", "allam-2-7b", rpm=bad)
    with pytest.raises(KeyedError) as err:
        cat.override("paid", "allam-2-7b", rpx=5)
    assert err.value.key == "rpx"


def test_rows_pick_a_tier_and_a_model_and_name_what_is_missing():
    cat = Catalog({"a": {"m": Limits(rpm=5)}, "b": {"m": Limits(rpm=7), "n": Limits(tpm=9)}})
    assert [(r["tier"], r["model"], r["rpm"]) for r in cat.rows()] == [("a", "m", 5), ("b", "m", 7), ("b", "n", None)]
    assert [(r["tier"], r["model"]) for r in cat.rows(model="n")] == [("b", "n")]
    assert [(r["tier"], r["model"]) for r in cat.rows("b")] == [("b", "m"), ("b", "n")]
    with pytest.raises(ConfigError, match="model on tier 'a':"):
        cat.rows("a", "n")  # on another tier only: named with the tier
    with pytest.raises(ConfigError, match="unknown model 'x'|model 'x'"):
        cat.rows(model="x")


def test_the_table_as_csv_json_and_text():
    rows = Catalog({"a": {"m": Limits(rpm=5, tpd=900)}}).rows()
    assert format_rows(rows, "csv") == "tier,model,rpm,rpd,tpm,tpd,ash,asd\na,m,5,,,900,,\n"
    assert format_rows(iter(rows), "json") == json.dumps(rows, indent=2) + "\n"  # (any iterable of rows)
    assert json.loads(format_rows(rows, "json"))[0]["tpd"] == 900
    assert format_rows(rows, "table").splitlines() == ["tier  model  rpm  rpd  tpm  tpd  ash  asd",
                                                       "a     m        5    -    -  900    -    -"]  # numbers right


def test_the_shutdown_warning_on_the_day_before_and_the_day_itself():
    day = datetime.date(2025, 10, 10)  # moonshotai/kimi-k2-instruct's (data/model_shutdowns.csv)
    assert shutdown_warning("moonshotai/kimi-k2-instruct", day) == (
        "warning: model 'moonshotai/kimi-k2-instruct' was shut down by Groq on 2025-10-10 (all tiers)")
    # (the reference names no replacement for it; for playai-tts it names Orpheus's voices)
    assert shutdown_warning("playai-tts", datetime.date(2026, 1, 1)) == (
        "warning: model 'playai-tts' was shut down by Groq on 2025-12-31 (all tiers); replacement: Orpheus "
        "voices (100 characters/s; $22 per 1M characters)")
    assert "will be shut down by Groq on 2025-10-10" in shutdown_warning("moonshotai/kimi-k2-instruct",
                                                                        day - datetime.timedelta(days=1))
    assert shutdown_warning("openai/gpt-oss-20b", day) is None


def test_a_shutdown_without_a_replacement_names_none(monkeypatch):
    import sim.catalog as catalog
    gone = catalog.Shutdown("m", datetime.date(2026, 1, 1), "free tier", "", "test")
    with pytest.raises(dataclasses.FrozenInstanceError):
        gone.replacement = "x"
    monkeypatch.setattr(catalog, "shutdowns", lambda: {"m": gone})
    assert shutdown_warning("m", datetime.date(2026, 1, 1)) == \
        "warning: model 'm' was shut down by Groq on 2026-01-01 (free tier)"

