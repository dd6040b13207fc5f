"""The replay's pieces by hand: where each response is placed at the server (its own round trip, when
plausible), when a log starts on an untouched budget, and how the hypotheses are ranked and told apart
(a paired one-sided t-test against the best, ties broken towards the simulator's defaults)."""
import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from sim.calibrate import replay as replay_mod
from sim.calibrate.replay import COMPONENTS, own_one_way, rank_hypotheses, starts_untouched
from sim.catalog import Limits

nan = math.nan


def _timed(rows):
    """Responses sent at 0 (and received at ``t_recv``), on a clock 100 s later (epoch times are not 0)."""
    df = pd.DataFrame(rows, columns=["t_send", "t_recv", "queue_time", "total_time", "status"])
    return df.assign(t_send=df["t_send"] + 100.0, t_recv=df["t_recv"] + 100.0)


def test_a_responses_own_one_way_delay_is_half_its_round_trip_when_plausible():
    # typical one-way 0.125 s: a plausible half round trip is 0 to 10 x 0.125 = 1.25 s, both ends included
    df = _timed([
        (0.0, 1.75, 0.25, 0.5, 200),   # an answer: 1.75 s less its 0.75 s at the server -> 1 s, half 0.5
        (0.0, 0.25, 0.25, 0.5, 429),   # a refusal: the server's times are not an answer's -> half 0.125
        (0.0, 0.75, 0.25, 0.5, 200),   # spent 0 at the network: 0 itself
        (0.0, 3.25, 0.25, 0.5, 200),   # half 1.25: exactly 10 x typical, kept
        (0.0, 3.5, 0.25, 0.5, 200),    # half 1.375: implausible (a stalled connection), the typical instead
        (0.0, 10.75, 0.25, 0.5, 200),  # half 5: implausible
        (0.0, 0.5, 0.25, 0.5, 200),    # negative: a clock step; the typical
        (0.0, nan, 0.25, 0.5, 200),    # no receive time: the typical
    ])
    assert own_one_way(df, 0.125).tolist() == [0.5, 0.125, 0.0, 1.25, 0.125, 0.125, 0.125, 0.125]


def test_with_no_typical_delay_the_plausible_bound_is_a_hundredth_of_a_second():
    # typical 0: the bound is 10 x 1 ms; a half of 0.005 is kept, one of 0.0105 is not
    df = _timed([(0.0, 0.61, 0.2, 0.4, 200), (0.0, 0.621, 0.2, 0.4, 200)])
    assert own_one_way(df, 0.0) == pytest.approx([0.005, 0.0], abs=1e-12)


def _headed(rows):
    return pd.DataFrame(rows, columns=["t_send", "status", "prompt_tokens", "max_tokens", "completion_tokens",
                                       "h_limit_tok", "h_rem_tok"])


@pytest.mark.parametrize("rows, untouched", [
    # the first answer with TPM headers used no more than its own prompt + max_tokens (+ 1): untouched
    ([(1.0, 200, 100, 50, 20, 6000, 6000 - 151)], True),
    ([(1.0, 200, 100, 50, 20, 6000, 6000 - 152)], False),       # one token more: usage before the log
    # no max_tokens: the replay charges it DEFAULT_RESERVATION (1 024), or its completion charged actual
    ([(1.0, 200, 100, nan, 20, 6000, 6000 - 1125)], True),
    ([(1.0, 200, 100, nan, 20, 6000, 6000 - 1126)], False),
    ([(1.0, 200, 100, nan, 2000, 6000, 6000 - 2101)], True),
    ([(1.0, 200, 100, nan, 2000, 6000, 6000 - 2102)], False),
    ([(1.0, 429, nan, 50, nan, 6000, 6000)], False),            # the first headers are a refusal's: unknown
    ([(1.0, 429, 100, 50, 20, 6000, 6000 - 150)], False),       # (even were its sizes known)
    ([(1.0, 200, nan, 50, nan, 6000, 6000)], False),            # an answer without usage: unknown
    ([(1.0, 200, 100, 50, 20, nan, nan)], False),               # no TPM headers at all
    # the earliest by t_send decides, not the first row
    ([(2.0, 200, 100, 50, 20, 6000, 6000 - 5000), (1.0, 200, 100, 50, 20, 6000, 6000 - 150)], True),
    ([(2.0, 200, 100, 50, 20, 6000, 6000 - 150), (1.0, 200, 100, 50, 20, 6000, 6000 - 5000)], False),
    # rows without TPM headers before it are skipped
    ([(0.5, 200, 100, 50, 20, nan, nan), (1.0, 200, 100, 50, 20, 6000, 6000 - 150)], True),
])
def test_a_log_starts_untouched_when_its_first_tpm_header_shows_only_its_own_request(rows, untouched):
    assert bool(starts_untouched(_headed(rows))) is untouched


@pytest.mark.parametrize("b_sent, untouched", [
    (1.1, True),    # b went before any answer came back: the server charged it first, and it shows its own alone
    (1.6, False),   # b went after a's answer (1.5): a's header, 300 used for its own 150, is the start
])
def test_of_requests_sent_at_once_the_one_the_server_charged_first_decides(b_sent, untouched):
    """Concurrent clients on a fresh budget: the earliest stamped request need not be the first charged, and its
    header then shows the others' tokens too.  A fresh emulator under 24 clients was taken for a log that starts
    mid-traffic, and its every decision left out as burn-in."""
    df = pd.DataFrame([(1.0, 1.5, 200, 100, 50, 20, 6000, 6000 - 300), (b_sent, 1.4 + b_sent, 200, 100, 50, 20,
                                                                         6000, 6000 - 150)],
                      columns=["t_send", "t_recv", "status", "prompt_tokens", "max_tokens", "completion_tokens",
                               "h_limit_tok", "h_rem_tok"])
    assert starts_untouched(df) is untouched


BEST = [0.1, 0.2, 0.3, 0.4]
ERRORS = {  # (algorithm, charge) -> per-response errors the replay gives
    ("token_bucket", "max_tokens"): BEST,
    ("token_bucket", "actual"): BEST,                          # the same: a tie, told apart by nothing
    ("fixed_window", "max_tokens"): [1.1, 1.3, 1.2, 1.5],      # worse on every response
    ("fixed_window", "actual"): [0.12, 0.18, 0.33, 0.38],      # a hair worse on average: noise
    ("sliding_log", "max_tokens"): BEST,                       # the same as the best
    ("sliding_log", "actual"): [2.0, 2.2, 2.1, 2.3],
    ("sliding_window_counter", "max_tokens"): [3.0, 3.3, 3.1, 3.2],
    ("sliding_window_counter", "actual"): [3.5, 3.1, 3.2, 3.3],
}


def _ranked(monkeypatch, errors, residuals=None, strict=True):
    """rank_hypotheses over one model's rows, each hypothesis' replay giving ``errors[(algorithm, charge)]``
    (and ``residuals``, else none observed); ``strict``: warnings are errors."""
    def fake(rows, algorithm, charge):
        e = np.array(errors[(algorithm, charge)])
        return e, (residuals(e) if residuals else pd.DataFrame({c: [nan] * len(e) for c in COMPONENTS}))
    monkeypatch.setattr(replay_mod, "replay_rows", fake)
    monkeypatch.setattr(replay_mod, "ServerOrder", lambda *model: None)  # (no rows to prepare)
    assert set(errors) == {(a, c) for a in replay_mod.ALGORITHMS for c in replay_mod.CHARGES}
    with warnings.catch_warnings():
        warnings.simplefilter("error" if strict else "ignore")
        return rank_hypotheses([(pd.DataFrame(), Limits(), 0.0, 0.0, 0.0)])


def test_hypotheses_are_ranked_by_score_ties_towards_the_simulators_defaults(monkeypatch):
    def residuals(e):
        res = pd.DataFrame({c: [nan] * 4 for c in COMPONENTS})
        res["remaining_tokens"] = [-2.0, nan, 4.0, nan]  # |.| of the finite ones: mean 3; reset_tokens: none
        res["decision"] = e.round(0)
        return res

    hyps = _ranked(monkeypatch, ERRORS, residuals)
    order = [(h.algorithm, h.charge) for h in hyps]
    # equal scores: the token bucket first, then charging max_tokens (the simulator's defaults)
    assert order == [("token_bucket", "max_tokens"), ("token_bucket", "actual"), ("sliding_log", "max_tokens"),
                     ("fixed_window", "actual"), ("fixed_window", "max_tokens"), ("sliding_log", "actual"),
                     ("sliding_window_counter", "max_tokens"), ("sliding_window_counter", "actual")]
    assert [h.rank for h in hyps] == list(range(1, 9))
    best = hyps[0]
    assert best.score == pytest.approx(0.25) and math.isnan(best.p_value) and not best.indistinguishable
    for h in hyps[1:3]:  # the same errors as the best: p = 1
        assert h.p_value == 1.0 and h.indistinguishable
    for h in hyps:
        assert h.components["remaining_tokens"] == pytest.approx(3.0) and math.isnan(h.components["reset_tokens"])
        assert h.components["decision"] == pytest.approx(np.abs(np.round(h.errors, 0)).mean())
        assert h.name == f"{h.algorithm} / charge {h.charge}"


def test_each_hypothesis_is_tested_against_the_best_with_a_paired_one_sided_test(monkeypatch):
    # no tie: every p is the paired one-sided t-test of its errors against the best's (a hypothesis that fits
    # worse on the same responses), told apart at p <= 0.05: 0.0513 is not, 0.0004 is
    errors = {**ERRORS, ("token_bucket", "actual"): [0.2745, 0.2255, 0.4745, 0.4255],
              ("sliding_log", "max_tokens"): [0.5, 0.7, 0.6, 0.9]}
    hyps = _ranked(monkeypatch, errors)
    best = hyps[0]
    assert (best.algorithm, best.charge) == ("token_bucket", "max_tokens")
    for h in hyps[1:]:
        assert h.p_value == pytest.approx(stats.ttest_rel(h.errors, best.errors, alternative="greater").pvalue)
        assert h.indistinguishable == (h.p_value > 0.05)
    p = {(h.algorithm, h.charge): h.p_value for h in hyps}
    assert 0.05 < p[("token_bucket", "actual")] < 0.052 and p[("fixed_window", "max_tokens")] < 0.001


@pytest.mark.parametrize("gaps, told_apart", [((1e-7, 2e-7, 1e-7, 3e-7), False),
                                              ((1.05e-6, 1.07e-6, 1.05e-6, 1.08e-6), True)])
def test_a_fit_within_a_millionth_on_every_response_is_the_same_fit(monkeypatch, gaps, told_apart):
    """Errors within 1e-6 of the best's on every response: the same fit (p = 1), whatever a t-test of such
    differences would say; 1.05e-6 or more apart, each time, is a worse fit."""
    errors = {**ERRORS, ("fixed_window", "actual"): [e + g for e, g in zip(BEST, gaps)]}
    hyps = _ranked(monkeypatch, errors)
    h = next(h for h in hyps if (h.algorithm, h.charge) == ("fixed_window", "actual"))
    assert h.indistinguishable is not told_apart and (h.p_value < 0.05 if told_apart else h.p_value == 1.0)


@pytest.mark.parametrize("n, told_apart", [(4, True), (1, False)])
def test_worse_by_the_same_on_every_response_is_told_apart_unless_there_is_one(monkeypatch, n, told_apart):
    """Worse by exactly 0.5 on each of 4 responses: the paired differences have no spread and the test's p is 0:
    worse.  With one response there is no test (scipy's p is not a number): not told apart, p = 1."""
    errors = {k: [0.25] * n for k in ERRORS}
    errors[("fixed_window", "max_tokens")] = [0.75] * n
    hyps = _ranked(monkeypatch, errors, strict=False)  # (scipy warns: differences without spread)
    last = hyps[-1]
    assert (last.algorithm, last.charge) == ("fixed_window", "max_tokens")
    assert last.indistinguishable is not told_apart and (last.p_value < 1e-6 if told_apart else last.p_value == 1.0)
    assert all(h.indistinguishable and h.p_value == 1.0 for h in hyps[1:-1])
    assert all(math.isnan(v) for v in last.components.values())


def _answer(t, prompt, max_tokens, completion, rem_tok, reset_tok, rem_req=86_399, reset_req="1s"):
    return {"t_send": t, "t_recv": t + 0.5, "status": 200, "model": "llama-3.1-8b-instant",
            "endpoint": "chat.completions", "max_tokens": max_tokens, "audio_seconds": None,
            "usage": {"queue_time": 0.1, "prompt_tokens": prompt, "prompt_time": 0.01, "completion_tokens": completion,
                      "completion_time": 0.39, "total_tokens": prompt + completion, "total_time": 0.4},
            "headers": {"x-ratelimit-limit-requests": "86400", "x-ratelimit-remaining-requests": str(rem_req),
                        "x-ratelimit-reset-requests": reset_req, "x-ratelimit-limit-tokens": "600",
                        "x-ratelimit-remaining-tokens": str(rem_tok), "x-ratelimit-reset-tokens": reset_tok},
            "error": None, "label": None, "request_id": f"req_{t}"}


def test_a_log_a_token_bucket_charging_max_tokens_wrote_replays_with_no_error(tmp_path):
    """Four responses of an org with TPM 600 (10 tokens a second back) and RPD 86 400 (one a second), written as
    a token bucket charging prompt + max_tokens: 300 tokens at t0 (300 left, full in 30 s), 300 more at t0 + 6
    (60 left, 54 s), a 429 at t0 + 7 for 400 (70 there), 200 at t0 + 60 (full again: 400 left, 20 s).

    That hypothesis replays with no error at all.  Charging prompt + completion instead (150, 150, 120 tokens)
    leaves after the sync on the first header (which sets 300 left either way) 210 instead of 60 at t0 + 6
    (+150 tokens, 39 s instead of 54: 0.25 and 0.25 of TPM and of a minute, with the RPD residuals at 0: error
    0.125) and 480 instead of 400 at t0 + 60 (+80 tokens, 12 s instead of 20: 0.1333 each, error 0.0667); its
    decisions are all right.  A fixed window resets on the minute: 60 s where the log says 30 s at t0."""
    from sim.calibrate import calibrate
    t0 = 1_800_000_000 - 1_800_000_000 % 86_400 + 3_600.0  # 01:00 UTC: a minute window starts at t0
    refusal = {**_answer(t0 + 7, 100, 300, 0, 0, "0s"), "t_recv": t0 + 7, "usage": None, "headers": {},
               "error": {"message": "Rate limit reached for model `llama-3.1-8b-instant` in organization `org_1` "
                                    "service tier `on_demand` on tokens per minute (TPM): Limit 600, Used 530, "
                                    "Requested 400. Please try again in 33s.", "type": "tokens",
                         "code": "rate_limit_exceeded"}, "status": 429}
    lines = [_answer(t0, 100, 200, 50, 300, "30s"), _answer(t0 + 6, 100, 200, 50, 60, "54s"), refusal,
             _answer(t0 + 60, 100, 100, 20, 400, "20s")]
    path = tmp_path / "log.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    cal = calibrate(path)
    by = {(h.algorithm, h.charge): h for h in cal.hypotheses}
    best = by[("token_bucket", "max_tokens")]
    assert cal.best is best and best.errors.tolist() == [0.0, 0.0, 0.0, 0.0]
    assert best.residuals["t"].tolist() == [0.0, 6.0, 7.0, 60.0]
    assert best.residuals["decision"].tolist() == [0.0, 0.0, 0.0, 0.0]
    actual = by[("token_bucket", "actual")]
    assert actual.errors == pytest.approx([0.0, 0.125, 0.0, 0.2 / 3], abs=1e-9)
    assert actual.residuals["remaining_tokens"].tolist()[:2] == [0.0, 150.0]
    assert actual.residuals["reset_tokens"].tolist()[:2] == pytest.approx([0.0, -15.0])
    assert actual.residuals["remaining_tokens"].iloc[3] == 80.0 and math.isnan(actual.residuals["remaining_tokens"][2])
    window = by[("fixed_window", "max_tokens")]
    assert window.residuals["reset_tokens"].iloc[0] == pytest.approx(30.0) and window.score > actual.score > 0
    # and its day starts at UTC midnight: at 01:00 the RPD window resets in 23 h, where the log says 1 s
    assert window.residuals["reset_requests"].iloc[0] == pytest.approx(23 * 3_600.0 - 1.0)


def test_the_residuals_of_several_models_are_one_frame_numbered_from_0(monkeypatch):
    """Each hypothesis replays every model's rows, one model after another: its errors and residuals are the
    models' in turn, in one frame numbered 0 to n - 1 (each model's own frame starts at 0)."""
    def fake(rows, algorithm, charge):
        n = rows
        return np.full(n, float(n)), pd.DataFrame({c: [float(n)] * n for c in ("t", *COMPONENTS)})
    monkeypatch.setattr(replay_mod, "replay_rows", fake)
    monkeypatch.setattr(replay_mod, "ServerOrder", lambda rows, *model: rows)  # (each model: its number of rows)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (every hypothesis fits alike: the t-test has no variance)
        hyps = rank_hypotheses([(2, Limits(), 0.0, 0.0, 0.0), (3, Limits(), 0.0, 0.0, 0.0)])
    for h in hyps:
        assert h.errors.tolist() == [2.0, 2.0, 3.0, 3.0, 3.0]
        assert h.residuals.index.tolist() == [0, 1, 2, 3, 4] and h.residuals["t"].tolist() == h.errors.tolist()
