"""``groqsim calibrate``'s tier verdict (sim/calibrate/limits_fit.py): the limits read from a log's headers and
429 messages, and the published tier they are matched to.  Expected values by hand from the published table
(sim/data/groq_rate_limits.csv): llama-3.1-8b-instant is free RPM 30, RPD 14.4K, TPM 6K, TPD 500K and
developer RPM 1K, RPD 500K, TPM 250K, no TPD."""
import math

import pandas as pd
import pytest

from sim.calibrate.limits_fit import LimitsFit, Observed, _ratio_text, fit_limits, match_catalog

MODEL = "llama-3.1-8b-instant"
nan = math.nan


def _fit(**observed: int) -> LimitsFit:
    return LimitsFit(MODEL, {u: Observed(v, "headers", 5, 0) for u, v in observed.items()})


def _per_tier(m, tier):
    match, compared, dist = m.per_tier[tier]
    return match, compared, pytest.approx(dist, abs=1e-9)


def test_with_no_unit_equal_the_closer_tier_in_log_ratio_is_the_base():
    # TPM 200 000: free's 6 000 is 33x away (|log| 3.51), developer's 250 000 only 0.8x (|log| 0.22)
    m = match_catalog([_fit(tpm=200_000)])
    assert m.base == "developer" and m.sentence == "developer, except TPM 0.8x: a custom tier"
    assert m.overrides == {MODEL: {"tpm": 200_000}}
    assert m.unknown == {MODEL: ["rpm", "rpd"]}  # developer publishes no TPD: nothing inherited for it
    assert _per_tier(m, "free") == (0, 1, math.log(200_000 / 6000))
    assert _per_tier(m, "developer") == (0, 1, math.log(250_000 / 200_000))
    # and the other way round: TPM 7 000 is 1.17x free's, 36x below developer's
    m = match_catalog([_fit(tpm=7000)])
    assert m.base == "free" and m.sentence == "free, except TPM 1.17x: a custom tier"


def test_more_equal_units_win_over_a_smaller_distance():
    # free: TPD equal (1 match), RPM 33x and TPM 42x away: distance 3.51 + 3.73 = 7.24;
    # developer: RPM and TPM equal (2 matches), TPD unpublished: distance 10.  Matches decide first.
    m = match_catalog([_fit(tpd=500_000, rpm=1000, tpm=250_000)])
    assert _per_tier(m, "free") == (1, 3, math.log(1000 / 30) + math.log(250_000 / 6000))
    assert _per_tier(m, "developer") == (2, 3, 10.0)
    assert m.base == "developer"
    # the unit the base tier does not publish is named as such (no ratio to print), not a crash
    assert m.sentence == "developer, except TPD 500000 (not in the published developer tier): a custom tier"
    assert m.overrides == {MODEL: {"tpd": 500_000}} and m.unknown == {MODEL: ["rpd"]}


def test_every_observed_limit_equal_to_a_tier_matches_it():
    m = match_catalog([_fit(rpd=14_400, tpm=6000)])
    assert m.base == "free" and m.sentence == "matches the published free tier on every observed limit"
    assert m.overrides == {} and m.unknown == {MODEL: ["rpm", "tpd"]}
    assert m.per_tier["free"] == (2, 2, 0.0)


def test_no_limit_observed_or_no_known_model_leaves_the_tier_unknown():
    m = match_catalog([LimitsFit(MODEL)])
    # the first published tier that lists the model (free), nothing compared
    assert m.base == "free" and m.sentence == "tier unknown: no limit was observed"
    assert m.overrides == {} and m.per_tier == {"free": (0, 0, 0.0), "developer": (0, 0, 0.0)}
    m = match_catalog([LimitsFit("my-finetune", {"rpm": Observed(5, "headers", 1, 0)})])
    assert m.base is None and m.sentence == "tier unknown: no model of the log is in the published table"
    assert m.overrides == {"my-finetune": {"rpm": 5}}


@pytest.mark.parametrize("observed,published,text", [
    (15_000, 6000, "2.5x"),       # above 1, not whole: 3 significant digits, not rounded to "2x"
    (12_000, 6000, "2x"),         # whole
    (20_040, 10_000, "2x"),       # within 0.5 % of a whole number: that number
    (20_080, 10_000, "2.01x"),    # 0.8 % off: not
    (10_052, 10_000, "1.01x"),    # 0.52 % off: just past the 0.5 % that counts as whole
    (6_000_000, 6000, "1000x"),   # a huge whole ratio printed whole ("1e+03x" with 3 significant digits)
    (1, 1000, "0.001x"),          # tiny: never rounded to "0x"
    (5990, 6000, "0.998x"),       # below 1: never rounded, however close to 1
    (3000, 6000, "0.5x"),
    (6000, 6000, "1x"),
])
def test_ratio_text(observed, published, text):
    assert _ratio_text(observed, published) == text


def _log(**cols) -> pd.DataFrame:
    n = len(next(iter(cols.values())))
    base = {"h_limit_req": [nan] * n, "h_limit_tok": [nan] * n, "msg_unit": [None] * n, "msg_limit": [nan] * n}
    return pd.DataFrame({**base, **cols})


def test_fit_limits_keeps_the_most_frequent_header_and_says_what_disagreed():
    df = _log(h_limit_req=[14_400] * 4, h_limit_tok=[6000, 6000, 12_000, nan],
              msg_unit=[None, "tpm", None, "rpm"], msg_limit=[nan, 7000, nan, 30])
    fit = fit_limits(df, "m")
    assert fit.model == "m"
    # RPD in 4 rows, one value; TPM 6 000 in 2 rows, 12 000 once (1 other value); NaN rows are not counts
    assert fit.observed["rpd"] == Observed(14_400, "headers", 4, 0)
    assert fit.observed["tpm"] == Observed(6000, "headers", 2, 1)
    assert fit.observed["rpm"] == Observed(30, "429 messages", 1, 0)  # only a message names RPM
    assert set(fit.observed) == {"rpd", "tpm", "rpm"}
    assert fit.notes == ["TPM header changed during the log (2 values); kept the most frequent, 6000",
                         "TPM: headers say 6000, messages say 7000; kept the headers'"]


def test_a_unit_seen_both_ways_and_agreeing_keeps_the_headers_count_and_no_note():
    df = _log(h_limit_req=[1000] * 3, h_limit_tok=[6000] * 3, msg_unit=["tpm", None, "tpm"],
              msg_limit=[6000, nan, 6000])
    fit = fit_limits(df, "m")
    assert fit.observed["tpm"] == Observed(6000, "headers", 3, 0)  # not replaced by the messages' (2 rows)
    assert fit.observed["rpd"] == Observed(1000, "headers", 3, 0) and fit.notes == []


def test_message_limits_count_their_rows_and_other_values():
    df = _log(msg_unit=["rpm", "rpm", "rpm", "tpd", "ash"], msg_limit=[30, 30, 60, 500_000, nan])
    fit = fit_limits(df, "m")
    assert fit.observed == {"rpm": Observed(30, "429 messages", 2, 1), "tpd": Observed(500_000, "429 messages", 1, 0)}
    # (no header column filled: no RPD/TPM; a message naming a unit without a limit adds nothing)
    assert fit.notes == []
