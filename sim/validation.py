"""Validation: the simulator against answers known in closed form or from Groq's documentation.

``groqsim validate`` runs every check and prints the expected and measured figure of each; ``--short``
uses short horizons (the test suite runs that).  docs/validation.md explains each check and its source.
"""
from __future__ import annotations

import math
import zlib
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from .catalog import Catalog, Limits
from .checks import Check
from .errors import writing
from .figures import save, subplots
from .validation_fidelity import fidelity_checks
from .arrivals import arrival
from .config import Client, Dist, Org, policy_table
from .engine import simulate
from .records import OUTCOMES
from .spec import RunSpec
from .summary import summarize
from .headers import parse_reset, rate_limit_headers
from .limiters import ALGORITHMS
from .limitset import LimitSet
from .pool import Pool, call
from .service import load_service_table
from .texttable import align


MODEL = "llama-3.1-8b-instant"



def _tpm_only_catalog() -> Catalog:
    # free 8B with only TPM left (6 000/min), so one unit binds and its refill rate is the known answer
    return Catalog.published().copy().define_tier(
        "validation", "free", overrides={MODEL: {"rpm": None, "rpd": None, "tpd": None}})


_PATIENT = {"patient": {"retry": "exponential", "jitter": "full", "base": 1.0, "cap": 30.0, "max_attempts": 10_000,
                        "honor_retry_after": True}}


def _throughput(hours: float, algorithm: str, rate: str, prompt: int, max_tokens: int) -> float:
    """Throughput (req/min) of patient clients offering ``rate`` against the TPM-only tier."""
    client = Client(name="load", model=MODEL, arrival=arrival(kind="poisson", rate=rate), prompt_tokens=prompt,
                    max_tokens=max_tokens, policy="patient")
    spec = RunSpec(clients=[client], policies=policy_table(_PATIENT), org=Org(tier="validation", limiter=algorithm),
                   catalog=_tpm_only_catalog(), duration=hours * 3600, warmup=600, drain=0)
    return summarize(simulate(spec, 1))["throughput_rpm"]


def check_ceiling(hours: float, algorithm: str) -> list[Check]:
    """Sustained overload, patient retries: throughput = the binding unit's refill rate (TPM 6 000 / 30-token
    requests = 200 req/min), within 1%."""
    got = _throughput(hours, algorithm, "230/min", 20, 10)
    rel = got / 200.0 - 1
    return [Check(f"ceiling, {algorithm}", "TPM / tokens per request", "200.0 req/min ±1%",
                  f"{got:.1f} req/min ({rel:+.2%})", abs(rel) <= 0.01)]


def check_ceiling_large_requests(hours: float) -> list[Check]:
    """The sliding window counter is known to sustain one request less per window, ``(limit - cost) / window``:
    shown at 300-token requests."""
    got = _throughput(hours, "sliding_window_counter", "40/min", 200, 100)
    return [Check("ceiling, sliding_window_counter, large requests", "(limit − cost) / window = 5 700/300",
                  "19.00 req/min ±1%", f"{got:.2f} req/min", abs(got / 19.0 - 1) <= 0.01)]


def check_pacing(hours: float) -> list[Check]:
    """A pacing client below the ceiling is never refused."""
    paced = Client(name="paced", model=MODEL, arrival=arrival(kind="poisson", rate="18/min"), prompt_tokens=200,
                   max_tokens=100, policy="paced")
    spec = RunSpec(clients=[paced], policies=policy_table(), org=Org(tier="validation"), catalog=_tpm_only_catalog(),
                   duration=hours * 3600)
    s = summarize(simulate(spec, 2))
    return [Check("pacing below the ceiling", "pacing mirrors the limits", "0 refused (429)",
                  f"{s['n429']} refused of {s['attempts']} attempts", s["n429"] == 0 and s["ok"] > 0)]


def _ceiling_tasks(hours: float) -> list[tuple]:
    return [*((check_ceiling, hours, a) for a in ALGORITHMS), (check_ceiling_large_requests, hours),
            (check_pacing, hours)]


def check_ceilings(hours: float) -> list[Check]:
    """Every algorithm's ceiling, the sliding window counter's large-request ceiling, and pacing."""
    return [c for fn, *args in _ceiling_tasks(hours) for c in fn(*args)]


def check_reference_examples() -> list[Check]:
    ls = LimitSet(Limits(rpm=50, tpm=200_000))
    admitted = sum(ls.acquire(100, 0, 0.5 * k / 50) == 0.0 for k in range(60))
    refused_by = ls.check(100, 0, 0.6).refused
    tokens = 100 * admitted  # what the admitted requests charged TPM (the page: "only 5 000 tokens were used")
    out = [Check("page example: RPM binds first", "Groq rate-limits page", "50 admitted, then refused by rpm",
                 f"{admitted} admitted, refused by {', '.join(refused_by)}; TPM used {tokens:_}".replace("_", " "),
                 admitted == 50 and refused_by == ("rpm",) and tokens == 5_000)]
    ls = LimitSet(Limits(rpd=14_400, tpm=18_000))
    for _ in range(30):
        ls.acquire(0.1, 0, 0.0)
    h = rate_limit_headers(ls, 0.44)
    reset = parse_reset(h["x-ratelimit-reset-requests"])
    out.append(Check("page example: RPD reset header", "Groq rate-limits page (2m59.56s)",
                     "remaining 14370, reset 2m59.56s",
                     f"remaining {h['x-ratelimit-remaining-requests']}, reset {h['x-ratelimit-reset-requests']}",
                     h["x-ratelimit-remaining-requests"] == "14370" and abs(reset - 179.56) < 0.011))
    return out


def _in_system(rec: pd.DataFrame, t0: float, t1: float) -> float:
    start = rec["created"].clip(t0, t1)
    end = rec["finished"].fillna(t1).clip(t0, t1)
    return float((end - start).sum() / (t1 - t0))


def check_queueing_laws(hours: float) -> list[Check]:
    client = Client(name="c", model=MODEL, arrival=arrival(kind="poisson", rate="45/min"),
                    prompt_tokens=Dist(dist="lognormal", median=100, p95=400), max_tokens=100, policy="groq-sdk")
    spec = RunSpec(clients=[client], policies=policy_table(), org=Org(tier="free"), duration=hours * 3600)
    result = simulate(spec, 3)
    rec = result.records
    t0, t1 = 0.0, spec.duration
    done = rec[(rec["created"] >= t0) & (rec["finished"] < t1)]
    lam = len(rec[rec["created"] < t1]) / (t1 - t0)
    w = float((done["finished"] - done["created"]).mean())
    big_l = _in_system(rec, t0, t1)
    rel = big_l / (lam * w) - 1
    s = summarize(result)
    conserved = s["offered"] == sum(s[k] for k in OUTCOMES)
    return [
        Check("Little's law L = λW", "Little (1961)", "L / (λW) = 1 ±2%",
              f"L={big_l:.4f}, λW={lam * w:.4f} ({rel:+.2%})", abs(rel) <= 0.02),
        Check("conservation of requests", "every request has one outcome", f"{s['offered']} accounted",
              f"{s['offered']} offered = sum of outcomes: {conserved}", conserved),
    ]


def check_workloads(hours: float) -> list[Check]:
    rng = np.random.default_rng(2024)
    duration = hours * 3600
    rate = 2.0
    t = arrival(kind="poisson", rate=rate).times(rng, duration)
    counts = np.histogram(t, np.arange(0, duration + 60, 60))[0]
    dispersion = counts.var(ddof=1) / counts.mean()
    gaps = np.diff(t)
    ks = stats.kstest(gaps, "expon", args=(0, 1 / rate))
    out = [Check("Poisson counts: dispersion", "Poisson: variance = mean", "var/mean = 1 ±0.1",
                 f"{dispersion:.3f} over {len(counts)} minutes", abs(dispersion - 1) <= 0.1),
           Check("Poisson gaps: exponential", "Kolmogorov-Smirnov, fixed seed", "p-value > 0.01",
                 f"D={ks.statistic:.4f}, p={ks.pvalue:.3f}", ks.pvalue > 0.01)]
    d = Dist(dist="lognormal", median=800, p95=3000)
    x = d.sample(rng, 200_000)
    med, p95 = np.median(x), np.percentile(x, 95)
    out.append(Check("lognormal sizes: median and p95", "configured median 800, p95 3000", "within 2%",
                     f"median {med:.0f}, p95 {p95:.0f}", abs(med / 800 - 1) <= 0.02 and abs(p95 / 3000 - 1) <= 0.02))
    b = arrival(kind="bursty", rate=rate, burstiness=2.0).times(rng, duration)
    cv = np.std(np.diff(b)) / np.mean(np.diff(b))
    out.append(Check("bursty gaps: coefficient of variation", "gamma gaps, burstiness 2", "CV = 2 ±5%, rate ±3%",
                     f"CV {cv:.3f}, rate {len(b) / duration:.3f}/s",
                     abs(cv / 2 - 1) <= 0.05 and abs(len(b) / duration / rate - 1) <= 0.03))
    return out


def check_trace(tmp: Path) -> list[Check]:
    trace = tmp / "validation_trace.csv"
    rng = np.random.default_rng(7)
    times = np.sort(rng.uniform(0, 600, 200)).round(3)
    prompt = rng.integers(10, 2000, 200)
    pd.DataFrame({"timestamp": times, "prompt_tokens": prompt, "max_tokens": 100}).to_csv(trace, index=False)
    client = Client(name="t", model=MODEL, arrival=arrival(kind="trace", file=str(trace)))
    spec = RunSpec(clients=[client], policies=policy_table(), org=Org(tier="developer"), duration=600)
    rec = simulate(spec, 0).records
    exact = (np.array_equal(rec["created"].to_numpy(), times)
             and np.array_equal(rec["prompt_tokens"].to_numpy(), prompt))
    return [Check("trace replays exactly", "the trace file", "200 requests, same times and sizes",
                  f"{len(rec)} requests, identical: {exact}", exact and len(rec) == 200)]


def _admissions(algorithm: str, limit: int, window: float, horizon: float, demand_gap: float,
                start: float = 0.0) -> np.ndarray:
    """Admission times under saturating demand (one request every ``demand_gap`` s from ``start``)."""
    lim = ALGORITHMS[algorithm](limit, window)
    times = np.arange(start, horizon, demand_gap)
    return times[[lim.try_admit(1, float(t)) for t in times]]


def _max_in_interval(t: np.ndarray, length: float) -> int:
    return int((np.searchsorted(t, t + length, side="left") - np.arange(len(t))).max()) if len(t) else 0


WINDOW_DEMO = (30, 60.0)  # the limit and window the algorithms are compared on (checks and figure)


def check_windows_vs_bucket() -> list[Check]:
    limit, window = WINDOW_DEMO
    res = []
    # demand starts 10 s before the first boundary: the first window's budget and the second's are
    # spent within seconds of each other
    fixed = _admissions("fixed_window", limit, window, 600, 0.05, start=window - 10)
    worst = _max_in_interval(fixed, window)
    res.append(Check("fixed window: 2x limit across a boundary", "fixed-window algorithm",
                     f"max in any 60 s = {2 * limit}",
                     f"{worst}", worst == 2 * limit))
    bucket = _admissions("token_bucket", limit, window, 600, 0.05, start=window - 10)
    rate = limit / window
    bound_ok = all(_max_in_interval(bucket, T) <= limit + rate * T + 1e-9 for T in (1, 5, 30, 60, 120, 300))
    res.append(Check("token bucket: ≤ capacity + rate·T", "token-bucket definition",
                     "every interval T in {1,5,30,60,120,300} s", f"holds: {bound_ok}; max in 60 s = "
                     f"{_max_in_interval(bucket, window)} (≤ {limit + rate * window:.0f})", bound_ok))
    log = _admissions("sliding_log", limit, window, 600, 0.05)
    res.append(Check("sliding log: ≤ limit in every window", "sliding-log definition", f"max in any 60 s = {limit}",
                     f"{_max_in_interval(log, window - 1e-6)}", _max_in_interval(log, window - 1e-6) == limit))
    return res


def plot_windows_vs_bucket(out_dir: Path) -> list[Path]:
    """``windows_vs_bucket.png``: each algorithm's admissions under saturating demand from 10 s before a
    window boundary."""
    limit, window = WINDOW_DEMO
    rate = limit / window
    fig, ax = subplots(figsize=(8, 4.5))
    for algorithm in ALGORITHMS:
        t = _admissions(algorithm, limit, window, 240, 0.05, start=window - 10)
        ax.step(t, np.arange(1, len(t) + 1), where="post", label=algorithm)
    ax.plot([window - 10, 240], [limit, limit + rate * (250 - window)], "k--", lw=0.8,
            label="capacity + rate·(t − start)")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("admitted (cumulative)")
    ax.set_title(f"Saturating demand from t = {window - 10:g} s against {limit} per {window:g} s")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(True, alpha=0.3)
    return [save(fig, out_dir / "windows_vs_bucket.png")]


def write_report(checks: list[Check], out_dir: Path) -> list[str]:
    """``validation.md`` (the checks' table) and the figure under ``out_dir``; returns one line per file that
    could not be written (:func:`sim.errors.writing`), the other files written all the same."""
    out_dir.mkdir(parents=True, exist_ok=True)
    done = [writing(_write_text, out_dir / "validation.md", checks_markdown(checks)),
            writing(plot_windows_vs_bucket, out_dir)]
    return [e for _, e in done if e]


def _write_text(path: Path, text: str) -> list[Path]:
    path.write_text(text, encoding="utf-8")
    return [path]


#: z of the output-speed checks: 4 standard errors, a false alarm in about 1 of 1 000 reports over 16 models
SPEED_Z = 4.0


def check_service_speeds(hours: float) -> list[Check]:
    """Each model's mean output speed over ``hours`` of unlimited traffic, against its published figure.  A
    request's speed is the figure times S (lognormal, mean 1, coefficient of variation ``speed_cv``), so the
    mean of n requests' speeds lies within ``SPEED_Z`` standard errors (``speed_cv / sqrt(n)``) of it.  Each
    model draws with a seed of its own (from its name: the same whatever the table's order): with one seed for
    all, every model's relative error was the same (the same standard normals, scaled), one check in effect."""
    out = []
    table = load_service_table()
    for model, params in table.items():
        if not params.output_tps:
            continue
        client = Client(name="s", model=model, arrival=arrival(kind="poisson", rate="100/min"), prompt_tokens=100,
                        max_tokens=300)
        cat = Catalog.published().copy().define_tier("unlimited", "developer")
        cat.override("unlimited", model, rpm=None, rpd=None, tpm=None, tpd=None)
        rec = simulate(RunSpec(clients=[client], policies=policy_table(), org=Org(tier="unlimited"), catalog=cat,
                               duration=hours * 3600), zlib.crc32(model.encode())).records
        ok = rec[rec["outcome"] == "ok"]
        speed = float((ok["completion_tokens"] / ok["completion_time"]).mean())
        rel = speed / params.output_tps - 1
        tolerance = SPEED_Z * params.speed_cv / math.sqrt(len(ok))
        out.append(Check(f"output speed, {model}", "service_params.csv; mean of n requests' speeds",
                         f"{params.output_tps:g} tok/s ±{tolerance:.1%} ({SPEED_Z:g} s.e., n = {len(ok)})",
                         f"{speed:.1f} tok/s ({rel:+.2%})", abs(rel) <= tolerance))
    return out


def run_checks(short: bool = False, tmp: Path | None = None, progress: bool | None = False,
               jobs: int | None = 1, pool: Pool | None = None) -> list[Check]:
    """Every check, in a fixed order whatever ran them; ``short`` uses horizons that keep the whole set to
    seconds (the report's files: :func:`write_report`).  The independent groups (each ceiling a group of its
    own) run on ``pool``, or in ``jobs`` processes (None: one per core).  ``progress``: a bar over the groups on
    stderr (None: when stderr is a terminal)."""
    import sys
    import tempfile

    from tqdm import tqdm
    hours = 0.5 if short else 3.0
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(tmp or scratch)
        tasks = [(check_reference_examples,), *_ceiling_tasks(hours), (check_queueing_laws, hours),
                 (check_workloads, hours * 8), (check_trace, tmp), (check_windows_vs_bucket,),
                 (check_service_speeds, hours / 3), (fidelity_checks, hours)]
        groups: list[list[Check]] = [[] for _ in tasks]
        with Pool(jobs) if pool is None else nullcontext(pool) as runner, \
                tqdm(total=len(tasks), desc="checks", unit="group", file=sys.stderr,
                     disable=not (sys.stderr.isatty() if progress is None else progress)) as bar:
            for n, checks in runner.imap(call, tasks):
                groups[n] = checks
                bar.update(1)
    return [c for group in groups for c in group]


def format_checks(checks: list[Check]) -> str:
    header = ("check", "source", "expected", "measured", "result")
    rows = [header] + [(c.name, c.source, c.expected, c.measured, "pass" if c.passed else "FAIL") for c in checks]
    passed = sum(c.passed for c in checks)
    return align([list(r) for r in rows], left=5) + f"{passed}/{len(checks)} checks passed\n"


def checks_markdown(checks: list[Check]) -> str:
    """The checks as a Markdown table; a ``|`` inside a cell (``|z| <= 2.58``) is escaped, or it would split it."""
    def cell(text) -> str:
        return str(text).replace("|", "\\|")
    lines = ["| check | source | expected | measured | result |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {cell(c.name)} | {cell(c.source)} | {cell(c.expected)} | {cell(c.measured)} | "
              f"{'pass' if c.passed else 'FAIL'} |" for c in checks]
    return "\n".join(lines) + "\n"
