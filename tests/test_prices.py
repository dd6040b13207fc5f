"""Prices and the cost of a run, checked by hand against Groq's pricing page (groq-real-responses.md section 5)."""
import csv
import dataclasses
import io
import math
from importlib import resources

import numpy as np
import pandas as pd
import pytest

from sim.catalog import Catalog
from sim.errors import ConfigError
from sim.prices import PRICE_KEYS, bill, load_prices, price_table, request_costs

PRICES = load_prices()


def frame(rows):
    return pd.DataFrame(rows, columns=["model", "outcome", "prompt_tokens", "completion_tokens", "audio_seconds"])


SMALL = frame([
    ("llama-3.3-70b-versatile", "ok", 1000, 500, 0.0),      # 1000 x 0.59 + 500 x 0.79 per 1M = 0.000985
    ("llama-3.3-70b-versatile", "gave_up", 1000, 500, 0.0),  # not billed
    ("openai/gpt-oss-120b", "ok", 2000, 1000, 0.0),          # 2000 x 0.15 + 1000 x 0.60 per 1M = 0.0009
    ("openai/gpt-oss-120b", "too_large", 90000, 1000, 0.0),  # not billed
    ("whisper-large-v3", "ok", 0, 0, 4.0),                   # billed 10 s: 10/3600 x 0.111 = 0.000308333
    ("whisper-large-v3-turbo", "ok", 0, 0, 3600.0),          # one hour: 0.04
    ("playai-tts", "ok", 2000, 0, 0.0),                      # 2000 characters x 50 per 1M = 0.1
])
SMALL_USD = [0.000985, 0.0, 0.0009, 0.0, 10 / 3600 * 0.111, 0.04, 0.1]


def test_table_is_the_pricing_page():
    assert (PRICES["llama-3.1-8b-instant"].input_per_m, PRICES["llama-3.1-8b-instant"].output_per_m) == (0.05, 0.08)
    assert (PRICES["qwen/qwen3-32b"].input_per_m, PRICES["qwen/qwen3-32b"].output_per_m) == (0.29, 0.59)
    assert PRICES["moonshotai/kimi-k2-instruct-0905"].cached_input_per_m == 0.50
    assert PRICES["openai/gpt-oss-20b"].cached_input_per_m == 0.0375
    assert PRICES["whisper-large-v3"].audio_per_hour == 0.111 and PRICES["whisper-large-v3"].audio_min_seconds == 10
    assert PRICES["playai-tts"].characters_per_m == 50
    rows = list(csv.DictReader(io.StringIO(resources.files("sim").joinpath("data/prices.csv").read_text())))
    assert all(r["source"] and r["date"] for r in rows)
    # every model of the limits table has a price, except those Groq publishes none for
    assert set(Catalog.published().models()) - set(PRICES) == {"allam-2-7b", "groq/compound", "groq/compound-mini"}


def test_cost_of_a_hand_checked_frame():
    assert request_costs(SMALL, PRICES) == pytest.approx(SMALL_USD)
    b = bill(SMALL, PRICES)
    assert b.usd == pytest.approx(sum(SMALL_USD)) and b.successes == 5
    assert b.per_success == pytest.approx(sum(SMALL_USD) / 5)
    assert b.by_model["whisper-large-v3-turbo"] == pytest.approx(0.04) and b.unpriced == ()
    assert "too_large" not in b.by_model and set(b.by_model) == {m for m, o in zip(SMALL["model"], SMALL["outcome"])
                                                                   if o == "ok"}


def test_short_clips_a_single_row_and_no_success():
    # a clip shorter than a second is billed the 10-s minimum too; one longer than the minimum, its length
    # (no audio, no bill: the emulator refuses an empty file with a 400, as Groq does)
    clips = frame([("whisper-large-v3", "ok", 0, 0, 0.5), ("whisper-large-v3", "ok", 0, 0, 12.5),
                   ("whisper-large-v3", "ok", 0, 0, 0.0)])
    assert request_costs(clips, PRICES) == pytest.approx([10 / 3600 * 0.111, 12.5 / 3600 * 0.111, 0.0])
    assert request_costs(SMALL.iloc[:1], PRICES) == pytest.approx(SMALL_USD[:1])  # a frame of one request
    none = bill(SMALL.iloc[[1, 3]], PRICES)  # no success: nothing to pay, no cost per success
    assert none.usd == 0.0 and none.successes == 0 and math.isnan(none.per_success) and none.by_model == {}


def test_a_fully_cached_prompt():
    # cache_hit_ratio 1 is allowed: every prompt token at the cached price
    c = request_costs(SMALL, PRICES, cache_hit_ratio=1.0)
    assert c[2] == pytest.approx((2000 * 0.075 + 1000 * 0.60) / 1e6)
    assert c[0] == pytest.approx((1000 * 0.295 + 500 * 0.79) / 1e6)


def test_categorical_columns_like_the_engine_writes():
    cat = SMALL.assign(model=SMALL["model"].astype("category"), outcome=pd.Categorical(
        SMALL["outcome"], ["ok", "gave_up", "too_large", "deadline", "dropped", "error", "unfinished"]))
    assert request_costs(cat, PRICES) == pytest.approx(SMALL_USD)


def test_caching_and_batch():
    # gpt-oss-120b publishes a cached price (0.075): 1000 uncached x 0.15 + 1000 cached x 0.075 + 1000 x 0.60
    # llama-3.3-70b publishes none: cached tokens at 50 % of 0.59
    c = request_costs(SMALL, PRICES, cache_hit_ratio=0.5)
    assert c[2] == pytest.approx((1000 * 0.15 + 1000 * 0.075 + 1000 * 0.60) / 1e6)
    assert c[0] == pytest.approx((500 * 0.59 + 500 * 0.295 + 500 * 0.79) / 1e6)
    # batch: 50 % off everything, and the caching discount does not stack
    b = request_costs(SMALL, PRICES, batch_discount=0.5, cache_hit_ratio=0.5)
    assert b == pytest.approx(np.array(SMALL_USD) * 0.5)
    with pytest.raises(ConfigError, match="batch_discount"):
        request_costs(SMALL, PRICES, batch_discount=1.0)
    with pytest.raises(ConfigError, match="cache_hit_ratio"):
        request_costs(SMALL, PRICES, cache_hit_ratio=1.5)


def test_free_tier_bills_nothing_and_paid_tiers_bill():
    cat = Catalog.published().copy().define_tier("enterprise", "developer", {"tpm": 4})
    cat.define_tier("free-plus", "free", {"rpm": 2})
    assert not cat.bills("free") and cat.bills("developer") and cat.bills("enterprise") and not cat.bills("free-plus")
    assert cat.copy().define_tier("sponsored", "developer", billed=False).bills("sponsored") is False
    b = bill(SMALL, PRICES, billed=cat.bills("free"))
    assert b.usd == 0.0 and b.per_success == 0.0 and b.unpriced == ()
    assert bill(SMALL, PRICES, billed=cat.bills("enterprise")).usd == pytest.approx(sum(SMALL_USD))
    with pytest.raises(ConfigError, match="unknown tier"):
        cat.bills("pro")


def test_unpriced_models_cost_nan_and_are_named():
    rec = pd.concat([SMALL, frame([("groq/compound", "ok", 100, 100, 0.0), ("allam-2-7b", "error", 9, 9, 0.0)])],
                    ignore_index=True)
    c = request_costs(rec, PRICES)
    assert math.isnan(c[7]) and c[8] == 0.0  # a failed request costs nothing, priced or not
    b = bill(rec, PRICES)
    assert math.isnan(b.usd) and b.unpriced == ("groq/compound",)
    priced = price_table({"groq/compound": {"input_per_m": 1.0, "output_per_m": 2.0}})
    assert bill(rec, priced).usd == pytest.approx(sum(SMALL_USD) + 300 / 1e6)


def test_overrides_are_validated():
    t = price_table({"llama-3.3-70b-versatile": {"input_per_m": 0.5}})
    assert t["llama-3.3-70b-versatile"].input_per_m == 0.5 and t["llama-3.3-70b-versatile"].output_per_m == 0.79
    assert t["llama-3.3-70b-versatile"].source == "scenario override"
    for values, match in [({"input_per_m": -1}, r"'llama-3.3-70b-versatile'\.input_per_m"),
                          ({"output_per_m": float("inf")}, "output_per_m"),
                          ({"input_pre_m": 1}, "did you mean 'input_per_m'")]:
        with pytest.raises(ConfigError, match=match):
            price_table({"llama-3.3-70b-versatile": values})
    with pytest.raises(ConfigError, match="both input_per_m and output_per_m"):
        price_table({"new-model": {"input_per_m": 1.0}})
    with pytest.raises(ConfigError, match="needs input_per_m"):
        price_table({"new-model": {"audio_per_hour": 1.0, "cached_input_per_m": 0.1}})
    with pytest.raises(ConfigError, match="needs input_per_m and output_per_m, audio_per_hour or characters_per_m"):
        price_table({"new-model": {"audio_min_seconds": 10.0}})  # no price to bill by
    assert "source" not in PRICE_KEYS and "audio_min_seconds" in PRICE_KEYS


def test_each_caller_gets_a_price_table_of_its_own():
    """Parsed once per process, but a caller's changes (a scenario's overrides) stay in its own table."""
    mine = load_prices()
    mine["llama-3.1-8b-instant"] = mine.pop("qwen/qwen3-32b")
    assert load_prices() == PRICES and "qwen/qwen3-32b" in load_prices()
    assert price_table({"qwen/qwen3-32b": {"input_per_m": 9.0}})["qwen/qwen3-32b"].input_per_m == 9.0
    assert load_prices()["qwen/qwen3-32b"].input_per_m == 0.29
    with pytest.raises(dataclasses.FrozenInstanceError):  # the rows are shared: changed only by replacing them
        load_prices()["qwen/qwen3-32b"].input_per_m = 9.0
