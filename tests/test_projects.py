"""Projects: a request passes its project's limits and the org's all-or-nothing; validation of overrides."""
import copy
import math

import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from sim import LimitSet, rate_limit_headers
from sim.catalog import Limits
from sim.errors import ConfigError
from sim.limiters import ALGORITHMS
from sim import projects
from sim.projects import Project, ScopedLimits, project_limits
from sim.cli import main
from sim.headers import parse_reset, rate_limit_error, refusal
from sim.recorder import read_log

ORG = Limits(rpm=30, rpd=1000, tpm=6000, tpd=100_000)
PROJ = Limits(rpm=10, rpd=1000, tpm=3000, tpd=100_000)


def _remaining(ls: LimitSet, now: float) -> dict:
    return {u: ls.units[u].remaining(now) for u in ls.units}


@settings(max_examples=60)
@given(algorithm=st.sampled_from(sorted(ALGORITHMS)),
       steps=st.lists(st.tuples(st.floats(0, 20), st.integers(0, 7000), st.booleans()), min_size=1, max_size=60))
def test_all_or_nothing_across_project_and_org(algorithm, steps):
    """Every attempt either charges both scopes exactly as each alone would be charged, or charges neither;
    the wait is the longer of the two scopes' waits.  Other projects (``other``) spend the org meanwhile."""
    scoped = ScopedLimits(LimitSet(PROJ, algorithm), LimitSet(ORG, algorithm))
    now = 0.0
    for dt, tokens, other in steps:
        now += dt
        if other:  # another project's request spends the org budget only
            scoped.org.acquire(tokens, 0, now)
            continue
        p_dec, o_dec = scoped.project.check(tokens, 0, now), scoped.org.check(tokens, 0, now)
        want_p, want_o = copy.deepcopy(scoped.project), copy.deepcopy(scoped.org)
        wait = scoped.acquire(tokens, 0, now)
        if p_dec.admitted and o_dec.admitted:
            assert wait == 0.0
            assert want_p.acquire(tokens, 0, now) == 0.0 and want_o.acquire(tokens, 0, now) == 0.0
        else:
            assert wait == max(p_dec.wait, o_dec.wait) > 0
            refuser = scoped.project if scoped.binding_scope == "project" else scoped.org
            assert scoped.binding in refuser.units
            assert scoped.binding in (p_dec.refused if scoped.binding_scope == "project" else o_dec.refused)
        assert _remaining(scoped.project, now) == _remaining(want_p, now)
        assert _remaining(scoped.org, now) == _remaining(want_o, now)


def test_refusal_names_the_binding_scope_and_unit():
    scoped = ScopedLimits(LimitSet(PROJ), LimitSet(ORG))
    for _ in range(10):
        assert scoped.acquire(100, 0, 0.0) == 0.0
    assert scoped.acquire(100, 0, 0.0) == pytest.approx(6.0)  # project rpm 10: one refills every 6 s
    assert (scoped.binding_scope, scoped.binding) == ("project", "rpm")
    # org exhausted by others: the org binds even though the project has room
    scoped = ScopedLimits(LimitSet(PROJ), LimitSet(ORG))
    assert scoped.org.acquire(6000, 0, 0.0) == 0.0
    wait = scoped.acquire(1000, 0, 0.0)
    assert (scoped.binding_scope, scoped.binding) == ("org", "tpm")
    assert wait == pytest.approx(1000 / (6000 / 60))
    assert scoped.acquire(5000, 0, 0.0) == math.inf  # above the project's whole TPM: a 413 by the project
    assert (scoped.binding_scope, scoped.binding) == ("project", "tpm")
    # both refuse: the longer wait (project: 500 over at 50/s; org: 500 over at 100/s)
    scoped = ScopedLimits(LimitSet(PROJ), LimitSet(ORG))
    scoped.project.acquire(2500, 0, 0.0)
    scoped.org.acquire(5500, 0, 0.0)
    assert scoped.acquire(1000, 0, 0.0) == pytest.approx(10.0)
    assert (scoped.binding_scope, scoped.binding) == ("project", "tpm")


def test_a_429_on_scoped_limits_states_the_binding_scopes_limit():
    """The body's Limit/Used and the status follow the scope whose wait binds (the crash this replaced:
    ``sim.headers.refusal`` read ``wait`` off a unit view that has none)."""
    scoped = ScopedLimits(LimitSet(PROJ), LimitSet(ORG))
    scoped.org.acquire(5000, 0, 0.0)  # other projects: org has 1000 of 6000 left, the project all 3000
    wait = scoped.acquire(2000, 0, 0.0)
    err = rate_limit_error(scoped, "m", "org_x", 2000, 0, 0.0, wait)
    assert err.status == 429 and "Limit 6000, Used 5000, Requested 2000" in err.body["error"]["message"]
    assert "try again in 10s" in err.body["error"]["message"]  # 1000 over at the org's 100 tokens/s
    scoped = ScopedLimits(LimitSet(PROJ), LimitSet(ORG))
    scoped.project.acquire(2500, 0, 0.0)
    scoped.org.acquire(5500, 0, 0.0)  # both refuse 1000: project 500 over at 50/s, org 500 over at 100/s
    wait = scoped.acquire(1000, 0, 0.0)
    err = rate_limit_error(scoped, "m", "org_x", 1000, 0, 0.0, wait)
    assert "Limit 3000, Used 2500, Requested 1000" in err.body["error"]["message"]
    assert scoped.acquire(4000, 0, 0.0) == math.inf
    err = rate_limit_error(scoped, "m", "org_x", 4000, 0, 0.0)
    assert err.status == 413 and "Limit 3000, Requested 4000" in err.body["error"]["message"]
    assert refusal(ScopedLimits(LimitSet(PROJ), LimitSet(ORG)), 100, 0, 0.0) is None


def test_simlog_of_a_projects_scenario(tmp_path, capsys):
    """``groqsim simlog`` on the shipped projects scenario (it crashed): the quota's 429s name the ETL
    project's TPM, and only its requests get them."""
    out = tmp_path / "p.jsonl"
    assert main(["simlog", "scenarios/projects_noisy_neighbour.toml", "--point", "1", "--duration", "20m",
                 "-o", str(out)]) == 0
    refused = [x for x in read_log(out).records if x["status"] == 429]
    assert refused and {x["label"] for x in refused} == {"etl"}
    assert all("tokens per minute (TPM): Limit 120000," in x["error"]["message"] for x in refused)


def test_headers_show_the_tighter_scope():
    scoped = ScopedLimits(LimitSet(PROJ), LimitSet(ORG))
    scoped.acquire(1000, 0, 0.0)
    h = rate_limit_headers(scoped.look(0.0), 0.0)
    assert (h["x-ratelimit-limit-tokens"], h["x-ratelimit-remaining-tokens"]) == ("3000", "2000")  # project's
    scoped.org.acquire(4500, 0, 0.0)  # another project takes most of the org's TPM
    h = rate_limit_headers(scoped.look(0.0), 0.0)
    assert (h["x-ratelimit-limit-tokens"], h["x-ratelimit-remaining-tokens"]) == ("6000", "500")  # org's
    assert parse_reset(h["x-ratelimit-reset-tokens"]) == pytest.approx(5500 / 100, abs=0.01)
    assert scoped.limits == PROJ  # what a pacer copies: the lower of the two per unit


def test_project_limits_only_lower():
    p = Project(limits={"m": {"rpm": 10, "tpm": "3K"}})
    assert project_limits("p", p, "m", ORG) == Limits(rpm=10, rpd=1000, tpm=3000, tpd=100_000)
    assert project_limits("p", p, "other", ORG) is None  # inherits the org's
    with pytest.raises(ConfigError, match=r"project 'p': rpm 40 is above the organization's rpm limit 30"):
        project_limits("p", Project(limits={"m": {"rpm": 40}}), "m", ORG)
    with pytest.raises(ConfigError, match="no ash limit"):
        project_limits("p", Project(limits={"m": {"ash": 40}}), "m", ORG)
    with pytest.raises(ValueError, match="unknown limit unit for 'm': 'rpn'"):
        Project(limits={"m": {"rpn": 4}})


def test_the_per_project_table_shows_the_traffic_of_no_project(tmp_path, capsys):
    """Two projects and a group of no project: the table printed after the comparison has all three (the group
    of no project, written as an empty name in by_project.csv, was read back as missing and dropped); one
    project and a group of no project are two groups, so the table is printed."""
    group = ("[[clients]]\nname = '{n}'\n{p}model = 'openai/gpt-oss-20b'\narrival = {{ kind = 'constant', rate = "
             "'60/min' }}\nprompt_tokens = 1000\nmax_tokens = 200\ncompletion_tokens = 100\n")
    head = ("[scenario]\nduration = '5m'\nseed = 1\nreplications = 1\n[org]\ntier = 'developer'\n"
            "[projects.a]\nlimits = { 'openai/gpt-oss-20b' = { rpm = 30 } }\n[projects.b]\n"
            "[compare]\nproject_quotas = [true, false]\n")
    for groups, shown in (([("ca", "a"), ("cb", "b"), ("loose", None)], {"a", "b", "(no project)"}),
                          ([("ca", "a"), ("loose", None)], {"a", "(no project)"})):
        path = tmp_path / "s.toml"
        path.write_text(head + "".join(group.format(n=n, p=f"project = '{p}'\n" if p else "") for n, p in groups))
        assert main(["run", str(path), "--out", str(tmp_path / "out"), "--jobs", "1", "--fresh"]) == 0
        table = capsys.readouterr().out.split("per project (mean over replications; by_project.csv):\n")[1]
        table = table.split("per client group")[0]  # (the per-client-group section follows)
        lines = [line.split(None, 1) for line in table.splitlines()[1:] if line.strip()]
        listed = [rest.rsplit(maxsplit=2)[0].strip() for _, rest in lines]
        assert set(listed) == shown, table
        order = [p or "(no project)" for p in dict.fromkeys(
            pd.read_csv(tmp_path / "out" / "by_project.csv", keep_default_na=False)["project"])]
        # the grid's order (true first, as [compare] lists it), then the projects as by_project.csv lists them
        assert [quotas for quotas, _ in lines] == ["True"] * len(order) + ["False"] * len(order), table
        assert listed == order * 2, table


def test_a_binding_the_project_quota_gave_says_so():
    """Project a's own RPM 30 refuses; the org's limits refuse nothing: the binding names the quota (it read a
    bare "rpm", taken for the org's)."""
    import sim
    group = {"model": "openai/gpt-oss-20b", "arrival": {"kind": "constant", "rate": "60/min"},
             "prompt_tokens": 1000, "max_tokens": 200, "completion_tokens": 100}
    data = {"scenario": {"duration": "5m", "seed": 1, "replications": 1}, "org": {"tier": "developer"},
            "projects": {"a": {"limits": {"openai/gpt-oss-20b": {"rpm": 30}}}},
            "clients": [{"name": "ca", "project": "a", **group}, {"name": "loose", **group}],
            "compare": {"project_quotas": [True, False]}}
    study = sim.run_study(sim.scenario_from_dict(data, source="<test>"), jobs=1, progress=False)
    assert study.summary["binding"].tolist() == ["rpm (project quota)", "none"]


def test_scoped_limits_charge_both_or_neither_and_name_what_binds():
    """ScopedLimits directly: a project (RPM 3, TPM 1 000) under its org (RPM 10, TPM 6 000, RPD 100), both
    token buckets.  Admitted requests charge both scopes; a refused one charges neither; the longer wait binds
    (the project's on a tie), its scope and its unit named; the headers' view reads the scope with less left."""
    project, org = LimitSet(Limits(rpm=3, tpm=1000)), LimitSet(Limits(rpm=10, tpm=6000, rpd=100))
    s = ScopedLimits(project, org)
    assert set(s.units) == {"rpm", "rpd", "tpm"}  # every unit of either scope
    assert (s.limits.rpm, s.limits.tpm, s.limits.rpd) == (3, 1000, 100)  # the lower of the two per unit
    for _ in range(3):
        assert s.acquire(tokens=100, now=0.0) == 0.0
    assert project.remaining("rpm", 0.0) == 0 and org.remaining("rpm", 0.0) == 7  # both charged
    assert org.remaining("tpm", 0.0) == 5700 and org.remaining("rpd", 0.0) == 97
    wait = s.acquire(tokens=100, now=0.0)  # the project's RPM: one request back in 60 / 3 = 20 s
    assert wait == pytest.approx(20.0) and (s.binding_scope, s.binding) == (projects.PROJECT, "rpm")
    assert org.remaining("rpm", 0.0) == 7 and org.remaining("tpm", 0.0) == 5700  # refused: nothing charged
    assert s.remaining("rpm", 0.0) == 0 and s.remaining("rpd", 0.0) == 97  # the lower, or the only one
    assert s.remaining("ash", 0.0) is None
    # the headers' view follows every acquire (no look() needed): the project has less RPM left
    assert s.units["rpm"].remaining(0.0) == 0 and s.units["rpm"].limit == 3
    assert s.units["rpd"].limit == 100 and s.units["tpm"].window == 60.0
    # a tie between the scopes' waits binds the project (it is listed first in ``scopes``)
    tie = ScopedLimits(LimitSet(Limits(rpm=3)), LimitSet(Limits(rpm=3)))
    assert tie.binding is None and tie.binding_scope is None  # nothing refused yet
    for _ in range(3):
        tie.acquire(now=0.0)
    assert tie.acquire(now=0.0) == pytest.approx(20.0) and tie.binding_scope == projects.PROJECT
    # within the binding scope, the unit with the longest wait for this request's own amount of it binds:
    # RPM (one request back in 6 s) and TPM (200 tokens back in 12 s) both refuse; TPM binds
    two = ScopedLimits(LimitSet(Limits(rpm=100)), LimitSet(Limits(rpm=10, tpm=1000)))
    for _ in range(10):
        assert two.acquire(tokens=100, now=0.0) == 0.0
    assert two.acquire(tokens=200, now=0.0) == pytest.approx(12.0)
    assert (two.binding_scope, two.binding) == (projects.ORG, "tpm")
    assert two.acquire(tokens=50, now=0.0) == pytest.approx(6.0) and two.binding == "rpm"  # (TPM: 3 s)
    assert two.units["rpm"].limit == 10  # the org has less left: the view moved to it
    assert two.acquire(tokens=105, now=0.0) == pytest.approx(6.3) and two.binding == "tpm"  # (RPM: 6 s)
    # audio units are weighed by the request's audio seconds: ASH (1 s back in 36 s) binds, not RPM (6 s)
    audio = ScopedLimits(LimitSet(Limits(rpm=100)), LimitSet(Limits(rpm=10, ash=100)))
    for _ in range(10):
        assert audio.acquire(audio_seconds=10, now=0.0) == 0.0
    assert audio.acquire(audio_seconds=1, now=0.0) == pytest.approx(36.0) and audio.binding == "ash"
    # a project whose two units refuse: its own units rank them (RPM 20 s, TPM 200 tokens at 5/s: 40 s)
    own = ScopedLimits(LimitSet(Limits(rpm=3, tpm=300)), LimitSet(Limits(rpm=10, tpm=6000)))
    for _ in range(3):
        assert own.acquire(tokens=100, now=0.0) == 0.0
    assert own.units["rpm"].limit == 3  # admitted only: the view already follows the project
    assert own.acquire(tokens=200, now=0.0) == pytest.approx(40.0)
    assert (own.binding_scope, own.binding) == (projects.PROJECT, "tpm")
    # acquire()'s defaults: no tokens, no audio, at time 0
    assert own.acquire() == pytest.approx(20.0) and own.binding == "rpm"
    fresh = ScopedLimits(LimitSet(Limits(tpm=10, ash=10)), LimitSet(Limits(tpm=10, ash=10)))
    assert fresh.acquire() == 0.0 and fresh.remaining("tpm", 0.0) == 10 and fresh.remaining("ash", 0.0) == 10
    # with as much left in both scopes, the view is the org's (the project shows only when it has less)
    even = ScopedLimits(LimitSet(Limits(rpm=5)), LimitSet(Limits(rpm=10)))
    for _ in range(5):
        even.org.acquire(now=0.0)
    assert even.look(0.0).units["rpm"].limit == 10 and even.units["rpm"].remaining(0.0) == 5
    # the org's tokens bind when the request is too large for what it has left and the project has room
    big = ScopedLimits(LimitSet(Limits(tpm=5000)), LimitSet(Limits(tpm=6000, rpm=10)))
    assert big.acquire(tokens=4000, now=0.0) == 0.0
    big.org.acquire(tokens=1500, now=0.0)  # another project's traffic on the same org
    wait = big.acquire(tokens=900, now=0.0)  # project 1 000 left, org 500 left: 400 tokens at 100/s
    assert wait == pytest.approx(4.0) and (big.binding_scope, big.binding) == (projects.ORG, "tpm")
    assert big.units["tpm"].limit == 6000  # the org has less left: its view
    # refunds go back to both scopes
    big.refund_tokens(300, 0.0, 0.0)
    assert big.project.remaining("tpm", 0.0) == pytest.approx(1300) and big.org.remaining("tpm", 0.0) == 800


def test_a_project_limit_is_a_positive_count_at_most_the_orgs():
    assert Project(limits={"m": {"rpm": "1K", "rpd": "1"}}).limits == {"m": {"rpm": 1000, "rpd": 1}}
    for bad in (0, -5):
        with pytest.raises(ValueError, match="greater than 0"):
            Project(limits={"m": {"rpm": bad}})
    for bad in ("0", "-"):  # (a count written as text is checked once parsed; "-", no limit, is none)
        with pytest.raises(ValueError, match="a project limit must be a positive count"):
            Project(limits={"m": {"rpm": bad}})
    with pytest.raises(ValueError, match="is not a count"):
        Project(limits={"m": {"rpm": "lots"}})
    assert project_limits("p", Project(limits={"m": {"rpm": 30}}), "m", ORG).rpm == 30  # the org's own: allowed
    with pytest.raises(ConfigError, match="above the organization's rpm limit"):
        project_limits("p", Project(limits={"m": {"rpm": 31}}), "m", ORG)
