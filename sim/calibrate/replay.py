"""Which limiter algorithm and charging rule explain the log: replay it through each and score the misfit.

Each hypothesis (every algorithm of :data:`sim.limiters.ALGORITHMS` x charge ``max_tokens`` / ``actual``) gets
a fresh :class:`~sim.limitset.LimitSet` of the calibrated limits.  The logged responses are replayed in the
order they reached the server (``t_send`` + half the response's own round trip, else half the median), on a
clock that starts at the UTC midnight before the log (so window algorithms have calendar-aligned windows).
For each response:

1. decision: would the hypothesis have refused it (any unit's ``wait > 0``)?  Compared with the logged
   status (200, or a 400 Groq sends after the answer was written, vs 429; a 413 is too large under every
   hypothesis and is not scored);
2. the log's truth is then applied (teacher forcing): an admitted request -- answered, or failed after its
   answer was written (a structured answer's validation: :data:`~.evidence.CHARGED_FAILURES`) -- is charged
   1 request and its tokens -- ``prompt_tokens + max_tokens`` or ``prompt_tokens + completion_tokens`` (the
   simulator's accounting, charged at admission) -- so one wrong guess does not derail the rest;
3. the hypothesis' ``remaining``/``reset`` of RPD and TPM are compared with the logged headers.

Usage before the log is unknown: at the first response carrying RPD (TPM) headers, each hypothesis is
charged what the header says is already used (likewise for any other unit at the first 429 naming it, from its
"Used"; exact for a token bucket and a fixed window; for the window
log and counter, approximate until their window has passed).  Per response error = mean of the header
residuals normalised by limit (remaining) or window (reset) + 1 if the decision differs; TPM residuals and
decisions of the log's first two minutes are left out -- unless the log starts on an untouched budget (one of
its first answers with a TPM header shows no more used than that request's own prompt + ``max_tokens``: an
emulator's or simulator's log, a fresh organization; :func:`starts_untouched`), where nothing before the log
is unknown -- and the RPD
residuals lose their median (what is left of an approximate start on a one-day window).  The score is the
mean error; a hypothesis is *indistinguishable* from the best when a paired one-sided t-test of their
per-response errors gives p > 0.05 (or both fit to within 1e-6).

A refused request's token cost is the ``Requested`` of its token-unit 429 message when there is one, else
the median prompt of answered requests + its ``max_tokens`` (or the median completion); so is a failed
admitted request's, which has no usage.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from ..catalog import UNIT_SPEC, Limits
from ..config import DEFAULT_RESERVATION
from ..headers import shown_remaining
from ..limiters import ALGORITHMS
from ..limitset import LimitSet
from ..pool import Pool

CHARGES = ("max_tokens", "actual")
#: the share of its scored 429 decisions a hypothesis may miss and still explain the log.  On logs that Groq's
#: limits alone made (an emulator's, a simulator's, the shipped example) the true pair misses none and the
#: others 12-40 %; a step in the client's clock, lines missing or another key's traffic on the same limits
#: leave every hypothesis missing more (2 s of clock step: the best 10 %, 5 % of lines dropped: 33 %), and
#: the best of them is then no finding
EXPLAINS = 0.05
BURN_IN = 120.0  # seconds: two minute-windows, after which the minute units' state no longer depends on the past
COMPONENTS = ("remaining_tokens", "reset_tokens", "remaining_requests", "reset_requests", "decision")


@dataclass
class Hypothesis:
    algorithm: str
    charge: str
    score: float
    components: dict[str, float]          # mean of each error component (NaN: not observed)
    errors: np.ndarray                    # per response
    residuals: pd.DataFrame               # t, component residuals (predicted - logged), for plots
    rank: int = 0
    indistinguishable: bool = False       # from the best
    p_value: float = math.nan             # paired test against the best

    @property
    def name(self) -> str:
        return f"{self.algorithm} / charge {self.charge}"

    @property
    def explains(self) -> bool:
        """Does it miss at most :data:`EXPLAINS` of its scored 429 decisions (or have none scored)?"""
        wrong = self.components.get("decision", math.nan)
        return math.isnan(wrong) or wrong <= EXPLAINS


def _tokens_cost(rows: pd.DataFrame, charge: str, prompt_median: float, completion_median: float) -> np.ndarray:
    """What each request charged the token units under ``charge``: with ``max_tokens``, its max_tokens, or
    :data:`sim.config.DEFAULT_RESERVATION` when it set none (as the emulator charges); else its completion.
    An answer with its usage: its prompt + that; a refusal naming a token unit: its ``Requested``; any other
    row: the median prompt + its max_tokens (or the median completion)."""
    reserved = rows["max_tokens"].fillna(DEFAULT_RESERVATION).to_numpy(float)
    prompt = rows["prompt_tokens"].to_numpy(float)
    extra = reserved if charge == "max_tokens" else rows["completion_tokens"].to_numpy(float)
    answered = (rows["status"] == 200).to_numpy() & ~np.isnan(prompt)
    requested = rows["msg_requested"].to_numpy(float)
    named = rows["msg_unit"].isin(["tpm", "tpd"]).to_numpy() & ~np.isnan(requested)
    guessed = prompt_median + (reserved if charge == "max_tokens" else completion_median)
    return np.where(answered, prompt + np.where(np.isnan(extra), 0.0, extra), np.where(named, requested, guessed))


def own_one_way(df: pd.DataFrame, typical: float) -> np.ndarray:
    """Half of each response's own network round trip -- ``t_recv - t_send``, less ``queue_time + total_time``
    for an answer -- where it is known and plausible (0 to 10x the typical one), else ``typical``: a request's
    own delay places it at the server more exactly than the median (decisions at a limit's edge depend on it)."""
    spent = df["t_recv"] - df["t_send"] - (df["queue_time"] + df["total_time"]).where(df["status"] == 200, 0.0)
    half = (spent / 2).to_numpy(float)
    ok = np.isfinite(half) & (half >= 0) & (half <= 10 * max(typical, 1e-3))
    return np.where(ok, half, typical)


def starts_untouched(df: pd.DataFrame) -> bool:
    """Does the log start on an untouched TPM budget?  One of its first answers with TPM headers shows no more
    tokens used (limit - remaining) than that request's own prompt + ``max_tokens`` (+ 1 for rounding),
    :data:`~sim.config.DEFAULT_RESERVATION` for a request that set none (what the replay charges it), or + its
    completion where longer (charged actual): then no usage before the log is hidden, under any hypothesis
    (decided from the log alone, so every hypothesis is scored on the same rows).  The first answers: the
    earliest sent, and the others sent before any answer with TPM headers came back.  Of concurrent requests
    the server charges one first, and it need not be the first stamped: 24 clients starting at once on a fresh
    emulator had their earliest line show 4 433 tokens used for its own 1 185."""
    rows = df[df["h_rem_tok"].notna() & df["h_limit_tok"].notna()]
    start = rows["t_send"].min()  # (none: NaN, and so no early answer)
    back = rows["t_recv"].min() if "t_recv" in rows else math.nan
    early = rows[rows["t_send"] <= (back if back > start else start)]  # (NaN compares False: the first only)
    early = early[(early["status"] == 200) & early["prompt_tokens"].notna()]
    reserve = early["max_tokens"].fillna(DEFAULT_RESERVATION)
    reserve = np.fmax(reserve, early["completion_tokens"])  # (fmax: an unknown completion leaves it)
    return bool((early["h_limit_tok"] - early["h_rem_tok"] <= early["prompt_tokens"] + reserve + 1).any())


class ServerOrder:
    """One model's rows as every hypothesis replays them, prepared once: in the order they reached the server,
    each column a plain list (a row at a time from a frame costs more than the limiters' own work)."""

    def __init__(self, df: pd.DataFrame, limits: Limits, one_way: float, prompt_median: float,
                 completion_median: float):
        df = df.assign(t_server=df["t_send"] + own_one_way(df, one_way)).sort_values("t_server", kind="stable")
        self.limits = limits
        t_server = df["t_server"].to_numpy(float)
        origin = math.floor(t_server[0] / 86_400.0) * 86_400.0
        self.now = (t_server - origin).tolist()
        self.t = (t_server - t_server[0]).tolist()
        burn = 0.0 if starts_untouched(df) else BURN_IN
        self.burn_in = (t_server - t_server[0] < burn).tolist()
        self.status = df["status"].tolist()
        self.admitted = ((df["status"] == 200) | df["charged_failure"]).tolist()
        self.tokens = {charge: _tokens_cost(df, charge, prompt_median, completion_median).tolist()
                       for charge in CHARGES}
        self.audio = df["audio_seconds"].fillna(0.0).to_numpy(float).tolist()
        self.logged = {c: df[c].to_numpy(float).tolist() for c in ("h_rem_tok", "h_reset_tok", "h_rem_req",
                                                                      "h_reset_req", "msg_used")}
        self.msg_unit = df["msg_unit"].astype(object).where(df["msg_unit"].notna(), None).tolist()


def replay(df: pd.DataFrame, limits: Limits, algorithm: str, charge: str, one_way: float,
           prompt_median: float, completion_median: float) -> tuple[np.ndarray, pd.DataFrame]:
    """Per-response errors and residuals of one hypothesis over one model's rows."""
    return replay_rows(ServerOrder(df, limits, one_way, prompt_median, completion_median), algorithm, charge)


def replay_rows(rows: ServerOrder, algorithm: str, charge: str) -> tuple[np.ndarray, pd.DataFrame]:
    """:func:`replay` of rows prepared once for every hypothesis."""
    limits = rows.limits
    ls = LimitSet(limits, algorithm)
    tok_units = [lim for u, lim in ls.units.items() if UNIT_SPEC[u][1] == "tokens"]
    req_units = [lim for u, lim in ls.units.items() if UNIT_SPEC[u][1] == "requests"]
    audio_units = [lim for u, lim in ls.units.items() if UNIT_SPEC[u][1] == "audio_seconds"]
    rpd, tpm = ls.units.get("rpd"), ls.units.get("tpm")
    done: set[str] = set()
    nan = math.nan
    decisions, rem_tok, reset_tok, rem_req, reset_req = [], [], [], [], []
    h_rem_tok, h_reset_tok = rows.logged["h_rem_tok"], rows.logged["h_reset_tok"]
    h_rem_req, h_reset_req, msg_used = rows.logged["h_rem_req"], rows.logged["h_reset_req"], rows.logged["msg_used"]
    for i, (now, status, admitted, tokens, audio, unit, burn_in) in enumerate(zip(
            rows.now, rows.status, rows.admitted, rows.tokens[charge], rows.audio, rows.msg_unit, rows.burn_in)):
        decision = nan
        if admitted or status == 429:
            refused = (not all(lim.fits(1, now) for lim in req_units)
                       or (tokens > 0 and not all(lim.fits(tokens, now) for lim in tok_units))
                       or (audio > 0 and not all(lim.fits(audio, now) for lim in audio_units)))
            decision = float(refused != (status == 429))
        if admitted:
            for lim in req_units:
                lim.admit(1, now)
            if tokens > 0:
                for lim in tok_units:
                    lim.admit(tokens, now)
            if audio > 0:
                for lim in audio_units:
                    lim.admit(audio, now)
        # usage before the log is unknown: at the first header of each unit, charge what the header says is
        # already used (exact for a bucket and a fixed window; a window log forgets it within one window)
        for lim, logged, synced in ((tpm, h_rem_tok[i], "tpm"), (rpd, h_rem_req[i], "rpd")):
            if lim is not None and synced not in done and not math.isnan(logged):
                done.add(synced)
                unknown = shown_remaining(lim, now) - logged
                if unknown > 0:
                    lim.admit(unknown, now)
        # other units (RPD and TPM are synced from their headers above): the first 429 naming them says how
        # much was "Used"
        if unit in ls.units and unit not in done and not math.isnan(msg_used[i]):
            done.add(unit)
            lim = ls.units[unit]
            # "Used" is the limit less what the headers show left: a fraction it rounds up is no usage
            unknown = msg_used[i] - (lim.limit - shown_remaining(lim, now))
            if unknown > 0:
                lim.admit(min(unknown, lim.limit), now)
        decisions.append(nan if burn_in else decision)
        if tpm is not None and not burn_in:
            rem_tok.append(shown_remaining(tpm, now) - h_rem_tok[i])
            reset_tok.append(tpm.reset(now) - h_reset_tok[i])
        else:
            rem_tok.append(nan)
            reset_tok.append(nan)
        if rpd is not None:
            rem_req.append(shown_remaining(rpd, now) - h_rem_req[i])
            reset_req.append(rpd.reset(now) - h_reset_req[i])
        else:
            rem_req.append(nan)
            reset_req.append(nan)
    res = pd.DataFrame({"t": rows.t, "status": rows.status, "remaining_tokens": rem_tok, "reset_tokens": reset_tok,
                        "remaining_requests": rem_req, "reset_requests": reset_req, "decision": decisions})
    scale = {"remaining_tokens": limits.tpm or 1.0, "reset_tokens": 60.0,
             "remaining_requests": limits.rpd or 1.0, "reset_requests": 86_400.0}
    parts = []
    for comp, s in scale.items():
        r = res[comp].to_numpy(float)
        if comp.endswith("requests") and np.isfinite(r).any():
            r = r - np.nanmedian(r)
        parts.append(np.abs(r) / s)
    # the mean of each response's observed residuals (nanmean's sum over its count), 0 where none is: a log with
    # 429s but no headers has none, and nanmean would warn of empty slices
    stacked = np.vstack(parts)
    seen = np.count_nonzero(~np.isnan(stacked), axis=0)
    header = np.where(seen > 0, np.nansum(stacked, axis=0) / np.maximum(seen, 1), 0.0)
    errors = header + np.nan_to_num(res["decision"].to_numpy(float), nan=0.0)
    return errors, res


def _score(prepared: list[ServerOrder], algorithm: str, charge: str) -> tuple[np.ndarray, pd.DataFrame]:
    """One hypothesis over every model's rows, one model after another: its errors and its residuals."""
    errs, resid = zip(*(replay_rows(rows, algorithm, charge) for rows in prepared))
    return np.concatenate(errs), pd.concat(resid, ignore_index=True)


def rank_hypotheses(per_model: list[tuple[pd.DataFrame, Limits, float, float, float]],
                    pool: Pool | None = None) -> list[Hypothesis]:
    """Score every algorithm x charge over all models' rows (the org has one limiter) and rank them.
    ``per_model`` items (at least one, each with rows): (rows, limits, one-way delay, median prompt, median
    completion).  ``pool``: workers that replay the hypotheses side by side (each replay is independent of the
    others: the same ranking whatever the number of workers); None: one after another here."""
    prepared = [ServerOrder(*model) for model in per_model]
    calls = [(prepared, algorithm, charge) for algorithm in ALGORITHMS for charge in CHARGES]
    scored = (pool or Pool(1)).map(_score, calls)
    hyps = []
    for (_, algorithm, charge), (errors, residuals) in zip(calls, scored):
        comps = {}
        for comp in COMPONENTS:
            v = residuals[comp].to_numpy(float)
            v = v[np.isfinite(v)]
            comps[comp] = float(np.mean(np.abs(v))) if len(v) else math.nan
        hyps.append(Hypothesis(algorithm, charge, float(np.mean(errors)), comps, errors, residuals))
    hyps.sort(key=lambda h: (h.score, h.algorithm != "token_bucket", h.charge != "max_tokens"))
    best = hyps[0]
    for k, h in enumerate(hyps):
        h.rank = k + 1
        if k == 0:
            continue
        diff = h.errors - best.errors
        if np.allclose(diff, 0.0, atol=1e-6):
            h.p_value, h.indistinguishable = 1.0, True
            continue
        p = stats.ttest_rel(h.errors, best.errors, alternative="greater").pvalue
        h.p_value = float(p) if np.isfinite(p) else 1.0
        h.indistinguishable = h.p_value > 0.05
    return hyps
