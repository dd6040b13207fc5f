"""What ``groqsim calibrate`` writes: a scenario TOML fragment, a short text report and a few plots."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..catalog import UNITS
from ..errors import printable, writing
from ..figures import save, subplots
from ..texttable import align
from . import Calibration
from .limits_fit import PUBLISHED_TIERS
from .replay import EXPLAINS


def _g(x: float, digits: int = 4) -> str:
    return f"{x:.{digits}g}"


def _key(name: str) -> str:
    return json.dumps(name)  # a TOML basic string is a JSON string


def toml_fragment(cal: Calibration) -> str:
    """``[org]``, ``[tiers.calibrated]`` and ``[service."MODEL"]`` tables in the scenario format."""
    lines = [f"# groqsim calibrate {printable(cal.log.path)}: paste into a scenario (and set its clients)"]
    best = cal.best
    lines.append("[org]")
    # a log that shows no limit cannot tell the tier: the fragment then leaves the scenario's own alone
    tiered = bool(cal.tier and cal.limits_observed and (cal.tier.base or cal.tier.overrides))
    if tiered:
        lines.append('tier = "calibrated"')
    elif cal.tier:
        lines.append("# tier: not estimated (the log shows no limit: no rate-limit header, no 429 naming one)")
    if best and not best.explains:  # no finding: the simulator's defaults, the reference's token bucket
        lines.append(f'limiter = "token_bucket"  # the default: no hypothesis explains the log (the best, '
                     f'{best.name}, misses {best.components["decision"]:.1%} of its 429 decisions; see the report)')
        lines.append('accounting = { charge = "max_tokens" }  # the default, likewise')
    elif best:
        others = [h.name for h in cal.hypotheses[1:] if h.indistinguishable]
        why = f"ranked 1st of {len(cal.hypotheses)}" + (f"; the log cannot tell it from {', '.join(others)}"
                                                          if others else "")
        lines.append(f'limiter = "{best.algorithm}"  # {why}')
        lines.append(f'accounting = {{ charge = "{best.charge}" }}')
    elif cal.replay_skipped:
        lines.append("# limiter and accounting: not estimated (replay skipped: what the answers were charged is "
                     "unknown; see the report)")
    else:
        lines.append("# limiter and accounting: not estimated (no headers or 429s to replay)")
    if tiered:
        base = cal.tier.base or PUBLISHED_TIERS[0]
        lines += ["", f"# {cal.tier.sentence}" + ("" if cal.tier.base else
                                                    f" (the base {base!r} only carries the limits below)"),
                  "[tiers.calibrated]", f'base = "{base}"']
        if cal.tier.overrides:
            lines.append("[tiers.calibrated.overrides]")
            for model, units in cal.tier.overrides.items():
                lines.append(f"{_key(model)} = {{ " + ", ".join(f"{u} = {v}" for u, v in units.items()) + " }")
    for model, svc in cal.service.items():
        params = svc.params()
        if not params:
            continue
        section = [f"[service.{_key(model)}]  # from {svc.n_answered} answered request(s)"]
        rounded = {"output_tps": 1, "prefill_tps": 0, "speed_cv": 3, "audio_speed_factor": 1}
        for k, v in params.items():
            section.append(f"{k} = {round(v, rounded[k]) if k in rounded else _g(v)}")
        if model in cal.new_models:  # `groqsim run` refuses a new model without limits: the user completes it
            tier = "calibrated" if tiered else "NAME"
            section = [f"[tiers.{tier}.overrides.{_key(model)}]", "rpm = RPM", "tpm = TPM", *section]
            lines += ["", f"# {model}: in no published tier, and the log shows none of its limits, which",
                      "# `groqsim run` needs for a new model. To use it, uncomment and replace RPM and TPM by its",
                      f"# limits (units: {', '.join(UNITS)})" + ("" if tiered else
                                                               ", NAME by a custom tier ([tiers.NAME], a base)"),
                      *(f"# {x}" for x in section)]
        else:
            lines += ["", *section]
    return "\n".join(lines) + "\n"


def report_text(cal: Calibration) -> str:
    """The short human report: what the log shows, with sample counts and 95 % CIs, and what it does not."""
    groq = int(cal.evidence["groq"].sum()) if len(cal.evidence) else 0
    out = [f"calibration of {printable(cal.log.path)}: {cal.log.lines} line(s), {len(cal.log.records)} usable, "
           f"{groq} from Groq"]
    out += [f"  note: {n}" for n in cal.notes]
    for model, svc in cal.service.items():
        what = " transcription(s), no usage" if svc.kind == "stt" else ""
        status = cal.evidence["status"][cal.evidence["model"] == model].to_numpy(dtype=int)
        codes, counts = np.unique(status, return_counts=True)
        seen = dict(zip(codes.tolist(), counts.tolist()))
        others = ", ".join(f"{n} x {code}" for code, n in seen.items() if code not in (200, 429, 413))
        out.append(f"\n{model}: {svc.n_answered} answered{what}, {seen.get(429, 0)} refused (429)"
                   + (f", {seen[413]} too large (413)" if 413 in seen else "")
                   + (f", other statuses: {others}" if others else ""))
        if svc.audio_slope:
            out.append(f"  audio speed      {1 / svc.audio_slope.value:.4g}x real time from the slope "
                       f"({svc.audio_slope.value * 1000:.3g} ms per audio second, 95% CI "
                       f"{svc.audio_slope.low * 1000:.3g}-{svc.audio_slope.high * 1000:.3g}, n={svc.audio_slope.n}), "
                       f"fixed part {svc.audio_fixed.value:.3g} s (95% CI {svc.audio_fixed.low:.3g}-"
                       f"{svc.audio_fixed.high:.3g}); audio_speed_factor = "
                       + (f"{svc.audio_speed_factor:.4g}" if svc.audio_speed_factor else "not estimated (note below)"))
        if svc.output_tps:
            out.append(f"  output speed     mean {svc.output_tps.text('.4g', ' t/s')}; median "
                       f"{svc.output_median.value:.4g} t/s, cv {svc.speed_cv:.3f}")
        if svc.prefill_slope:
            out.append(f"  prefill          {1 / svc.prefill_slope.value:.4g} t/s from the slope "
                       f"({svc.prefill_slope.value * 1e6:.3g} us/token, 95% CI {svc.prefill_slope.low * 1e6:.3g}-"
                       f"{svc.prefill_slope.high * 1e6:.3g}, n={svc.prefill_slope.n}), fixed part "
                       f"{svc.prefill_fixed.value * 1000:.3g} ms (95% CI {svc.prefill_fixed.low * 1000:.3g}-"
                       f"{svc.prefill_fixed.high * 1000:.3g}); prefill_tps = "
                       + (f"{svc.prefill_tps:.4g}" if svc.prefill_tps else "not estimated (note below)"))
        if svc.queue_median:
            out.append(f"  queue_time       lognormal median {svc.queue_median.text('.4g', ' s')}, p90 "
                       f"{svc.queue_p90:.4g} s, sigma {svc.queue_sigma:.3f}; Anderson-Darling "
                       f"{svc.queue_fit['statistic']:.2f}, p~{svc.queue_fit['p_value']:.3g}: "
                       f"{svc.queue_fit['verdict']}")
        if svc.rtt:
            out.append(f"  network rtt      median {svc.rtt.text('.4g', ' s')}, p90 {svc.rtt_p90:.4g} s")
        out += [f"  note: {n}" for n in svc.notes]
        lim = cal.limits.get(model)
        if lim and lim.observed:
            out.append("  limits seen      " + ", ".join(f"{u.upper()} {o.value} ({o.source}, n={o.n})"
                                                       for u, o in lim.observed.items()))
        elif lim:
            out.append("  limits seen      none")
        out += [f"  note: {n}" for n in (lim.notes if lim else [])]
    if cal.tier and not cal.limits_observed:
        out.append("\ntier: not estimated: the log shows no limit (no rate-limit header, no 429 naming one); the "
                   "fragment sets no tier, so your scenario's own tier stays")
    elif cal.tier:
        out.append(f"\ntier: {cal.tier.sentence}")
        if cal.tier.per_tier:
            out.append("  " + "; ".join(f"{t}: {m}/{c} observed limits equal"
                                        for t, (m, c, _) in cal.tier.per_tier.items()))
    if cal.hypotheses:
        out.append("\nlimiter x charge, replayed (error per response: header residuals / limit or window + 1 per "
                   "wrong 429 decision; lower is better)")
        rows = [["rank", "algorithm", "charge", "score", "|remaining tok|", "|reset tok| s", "|remaining req|",
                 "429 decisions wrong", "vs best"]]
        for h in cal.hypotheses:
            c = h.components
            shown = [_g(c[k], 3) if not math.isnan(c[k]) else "-"  # "-": the log has no such header
                     for k in ("remaining_tokens", "reset_tokens", "remaining_requests")]
            rows.append([str(h.rank), h.algorithm, h.charge, f"{h.score:.4f}", *shown, f"{c['decision']:.1%}"
                         if not math.isnan(c["decision"]) else "-",
                         "best" if h.rank == 1 else ("indistinguishable" if h.indistinguishable
                                                     else f"worse (p={h.p_value:.2g})")])
        out.append(align(rows, left=2).rstrip("\n"))
        best = cal.best
        ties = [h.name for h in cal.hypotheses[1:] if h.indistinguishable]
        if not best.explains:
            out.append(f"  no hypothesis explains this log: the best, {best.name}, misses "
                       f"{best.components['decision']:.1%} of its 429 decisions (one of a log that the limits alone "
                       f"made misses at most {EXPLAINS:.0%}).  Usual causes: a step in the client's clock, lines "
                       "missing (streams not read to the end, a process that died), other keys of the "
                       "organization spending the same limits, or a client's log of `groqsim serve --time-scale "
                       "K` with K != 1 (its times are real seconds, not the limiter's: calibrate the server's own "
                       "requests.jsonl).  The fragment keeps the default token bucket")
        else:
            out.append(f"  best: {best.name}" + (f"; the log cannot tell it from {', '.join(ties)}" if ties else
                                                  "; every other hypothesis fits significantly worse"))
    if cal.unknown:
        out.append("\nnot estimated:")
        out += [f"  - {u}" for u in cal.unknown]
    return "\n".join(out) + "\n"


def write_plots(cal: Calibration, out: Path) -> list[Path]:
    """Fitted vs observed distributions per model, and header residuals per hypothesis."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    from scipy import stats
    files = []
    for k, (model, svc) in enumerate(cal.service.items()):
        if len(svc.audio):
            fig, ax = subplots(figsize=(6, 3.6))
            ax.scatter(svc.audio, svc.response_time, s=6, alpha=0.5, label=f"observed (n={len(svc.audio)})")
            x = np.linspace(0, svc.audio.max(), 50)
            ax.plot(x, svc.audio_fixed.value + svc.audio_slope.value * x, color="C1", label="linear fit")
            ax.set(xlabel="audio_seconds", ylabel="t_recv - t_send (s)", title=f"{model}: transcription time")
            ax.legend(fontsize=8)
            files.append(save(fig, out / f"service_{k}.png", dpi=90))
            continue
        if not len(svc.speeds) and not len(svc.queue):
            continue
        fig, axes = subplots(1, 3, figsize=(13, 3.6))
        if len(svc.speeds):
            ax = axes[0]
            ax.hist(svc.speeds, bins=40, density=True, alpha=0.6, label=f"observed (n={len(svc.speeds)})")
            x = np.linspace(svc.speeds.min(), svc.speeds.max(), 200)
            sigma = math.sqrt(math.log1p(svc.speed_cv ** 2))
            ax.plot(x, stats.lognorm.pdf(x, sigma, scale=svc.output_median.value), label="lognormal fit")
            ax.set(xlabel="completion_tokens / completion_time (t/s)", title="output speed")
            ax.legend(fontsize=8)
        if len(svc.prompt):
            ax = axes[1]
            ax.scatter(svc.prompt, svc.prompt_time * 1000, s=6, alpha=0.5, label="observed")
            x = np.linspace(0, svc.prompt.max(), 50)
            ax.plot(x, (svc.prefill_fixed.value + svc.prefill_slope.value * x) * 1000, color="C1", label="linear fit")
            ax.set(xlabel="prompt_tokens", ylabel="prompt_time (ms)", title="prefill")
            ax.legend(fontsize=8)
        if len(svc.queue):
            ax = axes[2]
            bins = np.logspace(np.log10(svc.queue.min()), np.log10(svc.queue.max()), 40)
            ax.hist(svc.queue, bins=bins, density=True, alpha=0.6, label=f"observed (n={len(svc.queue)})")
            ax.plot(bins, stats.lognorm.pdf(bins, svc.queue_sigma, scale=svc.queue_median.value),
                    label=f"lognormal fit ({svc.queue_fit['verdict']})")
            ax.set(xscale="log", xlabel="queue_time (s)", title="queue time")
            # ticks at 1, 2 and 5 of each decade, as plain numbers: a range within one decade still gets some
            ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.legend(fontsize=8)
        fig.suptitle(model)
        files.append(save(fig, out / f"service_{k}.png", dpi=90))
    if cal.hypotheses:
        fig, axes = subplots(1, 2, figsize=(13, 3.8))
        for k, h in enumerate(cal.hypotheses[:4]):
            r = h.residuals
            style = {"s": 5, "alpha": 0.6, "label": h.name, "color": f"C{k}"}
            axes[0].scatter(r["t"], r["remaining_tokens"], **style)
            axes[1].scatter(r["t"], r["reset_tokens"], **style)
        axes[0].set(xlabel="seconds into the log", ylabel="predicted - logged", title="x-ratelimit-remaining-tokens")
        axes[1].set(xlabel="seconds into the log", ylabel="predicted - logged (s)", title="x-ratelimit-reset-tokens")
        axes[0].legend(fontsize=7, markerscale=3)
        fig.suptitle("header residuals of the four best hypotheses")
        files.append(save(fig, out / "header_residuals.png", dpi=90))
    return files


def write_outputs(cal: Calibration, out: str | Path, plots: bool = True, errors: list[str] | None = None
                  ) -> list[Path]:
    """``calibrated.toml``, ``report.txt`` and (``plots``) the figures; a file that cannot be written does
    not stop the others: its line goes to ``errors`` (:func:`sim.errors.writing`)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    done = [writing(_text, out / "calibrated.toml", toml_fragment(cal)), writing(_text, out / "report.txt",
                                                                                 report_text(cal))]
    if plots:
        done.append(writing(write_plots, cal, out))
    if errors is not None:
        errors += [e for _, e in done if e]
    return [f for files, _ in done for f in files]


def _text(path: Path, text: str) -> list[Path]:
    path.write_text(text, encoding="utf-8")
    return [path]
