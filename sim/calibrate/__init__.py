"""``groqsim calibrate``: from a recorder log (:mod:`sim.recorder`) to a scenario the evidence supports.

:func:`calibrate` reads the log and estimates, per model, the service model (:mod:`.service_fit`), the
organization's limits and the closest published tier (:mod:`.limits_fit`), and ranks limiter algorithm x
charging rule by replaying the log (:mod:`.replay`).  :mod:`.output` renders a scenario TOML fragment,
a short report and plots.  Whatever cannot be estimated is said, never guessed silently.
"""
from __future__ import annotations

from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..catalog import Catalog, Limits
from ..fields import is_whole
from ..pool import Pool
from ..recorder import AUDIO_ENDPOINTS, CHAT, Log, client_failure, read_log
from .evidence import evidence_table, successes
from .limits_fit import LimitsFit, TierMatch, fit_limits, match_catalog
from .replay import BURN_IN, Hypothesis, rank_hypotheses, starts_untouched
from .service_fit import ServiceFit, fit_service

__all__ = ["Calibration", "calibrate", "calibrate_log"]

GROQ_ENDPOINTS = (CHAT, *AUDIO_ENDPOINTS)


@dataclass
class Calibration:
    log: Log
    evidence: pd.DataFrame
    service: dict[str, ServiceFit] = field(default_factory=dict)
    limits: dict[str, LimitsFit] = field(default_factory=dict)
    tier: TierMatch | None = None
    hypotheses: list[Hypothesis] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)        # about the whole log
    unknown: list[str] = field(default_factory=list)      # what could not be estimated
    replay_skipped: list[str] = field(default_factory=list)  # models whose answers' charges are unknown
    new_models: list[str] = field(default_factory=list)   # in no published tier, no limit of theirs observed

    @property
    def models(self) -> list[str]:
        return list(self.service)

    @property
    def limits_observed(self) -> bool:
        """Did the log show any limit (a header or a 429 naming one)?  If not, it cannot tell the tier."""
        return any(f.observed for f in self.limits.values())

    @property
    def best(self) -> Hypothesis | None:
        return self.hypotheses[0] if self.hypotheses else None

    @property
    def estimated_anything(self) -> bool:
        return bool(any(s.params() for s in self.service.values()) or any(f.observed for f in self.limits.values())
                    or self.hypotheses)


def calibrate(path: str | Path, catalog: Catalog | None = None, jobs: int | None = 1,
              pool: Pool | None = None) -> Calibration:
    """Read a log file and calibrate (see :func:`calibrate_log`)."""
    return calibrate_log(read_log(path), catalog, jobs, pool)


def calibrate_log(log: Log, catalog: Catalog | None = None, jobs: int | None = 1,
                  pool: Pool | None = None) -> Calibration:
    """Fit the service and the limits to a log, and rank the limiter hypotheses by how well each replays it.
    ``jobs``: processes that replay the hypotheses (None: one per core; or on ``pool``); the result does not
    depend on it."""
    if jobs is not None and (not is_whole(jobs) or jobs < 1):
        raise ValueError(f"calibrate(jobs={jobs!r}): jobs is a number of processes >= 1 (None: one per core)")
    catalog = catalog or Catalog.published()
    df = evidence_table(log)
    cal = Calibration(log, df)
    cal.notes += log.problem_summary()
    failed = Counter(kind for r in log.records if (kind := client_failure(r)))
    if failed:  # no answer: nothing to fit, and the server may or may not have admitted (and charged) them
        cal.notes.append(f"{sum(failed.values())} attempt(s) failed on the client ("
                         + ", ".join(f"{kind}: {n}" for kind, n in sorted(failed.items()))
                         + "): no answer to fit, left out (groqsim trace counts them as attempts)")
    if df.empty:
        cal.unknown.append("everything: the log has no usable line")
        return cal
    foreign = df[~df["groq"]]
    if len(foreign):
        statuses = ", ".join(f"{s}: {n}" for s, n in foreign["status"].value_counts().sort_index().items())
        cal.notes.append(f"{len(foreign)} response(s) carry neither usage, x-ratelimit-* headers nor a Groq rate-limit "
                         f"message (not from Groq? statuses {statuses}): left out")
    other = df[df["groq"] & ~df["endpoint"].isin(GROQ_ENDPOINTS)]
    if len(other) and df["endpoint"].notna().any():
        cal.notes.append(f"{len(other)} response(s) of unknown endpoint kept as chat completions")
    df = df[df["groq"]]
    impossible = int(df["impossible_usage"].sum())
    if impossible:
        cal.notes.append(f"{impossible} response(s) report more completion_tokens than their max_tokens (impossible): "
                         "their usage is left out of the fits and the limiter replay")
    if df.empty:
        cal.unknown.append("everything: no response in the log comes from Groq")
        return cal
    models = list(dict.fromkeys(df["model"]))
    if len(models) > 1:
        cal.notes.append(f"{len(models)} models in the log ({', '.join(models)}): each is calibrated on its own "
                         "rows; the limiter ranking uses them all (one organization, one limiter)")
    # the limits are the on-demand tier's: a line flex (or auto) answered shows flex's own, larger limits
    on_demand = df["service_tier"].isna() | (df["service_tier"] == "on_demand")
    if not on_demand.all():
        counts = df.loc[~on_demand, "service_tier"].value_counts().sort_index()
        tiers = ", ".join(f"{t}: {n}" for t, n in counts.items())
        cal.notes.append(f"{int((~on_demand).sum())} line(s) of another service tier ({tiers}) left out of the "
                         "limits and the limiter replay, which are the on-demand tier's; kept for the service fits")
    for model in models:
        rows = df[df["model"] == model]
        cal.service[model] = fit_service(rows, model)
        cal.limits[model] = fit_limits(rows[on_demand[rows.index]], model)
        if model not in catalog.models() and not cal.limits[model].observed:
            cal.new_models.append(model)
            cal.notes.append(f"{model} is in no published tier and the log shows none of its limits: its "
                             "[service] section is written commented out, beside the limits "
                             "`groqsim run` needs for a new model, left as RPM and TPM to fill in (then uncomment)")
    cal.tier = match_catalog(list(cal.limits.values()), catalog)
    per_model = []
    replayed = df["status"].isin([200, 429, 413]) | df["charged_failure"]  # (a 400 of a written answer too)
    for model in models:
        rows = df[(df["model"] == model) & replayed & on_demand]
        limits = _replay_limits(catalog, cal.tier.base, model, cal.limits[model])
        has_headers = rows[["h_rem_tok", "h_rem_req"]].notna().any().any()
        if rows.empty or not limits.items() or not (has_headers or (rows["status"] == 429).any()):
            continue
        svc = cal.service[model]
        ok = successes(rows)
        # what an answer was charged: a chat answer's from its usage, a transcription's its audio seconds (no
        # tokens; unknown for an upload the recorder cannot measure, such as an mp3 answered in json)
        done, audio = rows["status"] == 200, rows["endpoint"].isin(AUDIO_ENDPOINTS)
        chat, speech = int((done & ~audio).sum()), int((done & audio).sum())
        no_length = int((done & audio & rows["audio_seconds"].isna()).sum())
        lacking = {"chat requests have no usage": (chat - len(ok), chat),
                   "transcriptions have no audio_seconds (no WAV upload, no duration answered)": (no_length, speech)}
        if sum(n for n, _ in lacking.values()) > 0.1 * (chat + speech):
            why = " and ".join(f"{n} of {of} answered {what}" for what, (n, of) in lacking.items() if n)
            cal.unknown.append(f"{model}: limiter replay skipped: {why}, so what they were charged is unknown")
            cal.replay_skipped.append(model)
            continue
        span = float(rows["t_send"].max() - rows["t_send"].min())
        if span < BURN_IN and not starts_untouched(rows):
            cal.unknown.append(f"{model}: the log starts on a TPM budget already in use (its first answers show "
                               f"more tokens used than their own) and spans {span:.0f} s, all within the first "
                               f"{BURN_IN:.0f} s that usage from before it may still fill: no TPM residual or 429 "
                               "decision is scored, so its limiter ranking rests on the request units alone")
        one_way = (svc.rtt.value if svc.rtt else 0.0) / 2
        pm = float(np.nanmedian(ok["prompt_tokens"])) if len(ok) else 0.0
        cm = float(np.nanmedian(ok["completion_tokens"])) if len(ok) else 0.0
        per_model.append((rows, limits, max(one_way, 0.0), pm, cm))
    if per_model:
        with Pool(jobs) if pool is None else nullcontext(pool) as runner:
            cal.hypotheses = rank_hypotheses(per_model, runner)
    _collect_unknowns(cal)
    return cal


def _replay_limits(catalog: Catalog, base: str | None, model: str, fit: LimitsFit) -> Limits:
    """The calibrated tier's limits of a model: the base tier's, with the observed ones put in."""
    limits = catalog.tiers.get(base, {}).get(model, Limits()) if base else Limits()
    return replace(limits, **{u: o.value for u, o in fit.observed.items()})


def _collect_unknowns(cal: Calibration) -> None:
    for model, svc in cal.service.items():
        wanted = ("audio_speed_factor", "rtt_median") if svc.kind == "stt" else (
            "output_tps", "prefill_tps", "queue_median", "rtt_median")
        missing = [k for k in wanted if k not in svc.params()]
        if missing:
            cal.unknown.append(f"{model}: service {', '.join(missing)} (kept at the simulator's defaults)")
    if cal.tier and not cal.limits_observed:
        cal.unknown.append("tier: no limit was observed (no rate-limit header, no 429 naming one): the fragment "
                           "sets no tier, so your scenario's own tier stays")
    elif cal.tier and cal.tier.base is None:
        cal.unknown.append(f"tier: {cal.tier.sentence}")
    for model, units in (cal.tier.unknown if cal.tier else {}).items():
        if units:
            cal.unknown.append(f"{model}: {', '.join(u.upper() for u in units)} never shown by a header or a 429: "
                               f"assumed from the published {cal.tier.base} tier")
    if not (cal.evidence["status"] == 429).any():
        cal.unknown.append("no 429 in the log: limits other than RPD and TPM unseen; the limiter ranking rests on "
                           "the headers alone")
    if not cal.hypotheses and not cal.replay_skipped:
        cal.unknown.append("limiter algorithm and charging rule: no rate-limit headers or 429s to replay")
