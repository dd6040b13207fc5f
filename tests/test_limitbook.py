"""The limit book: which limit set a request passes by project, service tier and model."""
import pytest

from sim.limitbook import FLEX, ON_DEMAND, LimitBook
from sim.limitset import LimitSet
from sim.projects import ScopedLimits
from sim.scenario import scenario_from_dict

MODEL = "openai/gpt-oss-20b"


def _book(quotas: bool = True) -> tuple[LimitBook, LimitSet]:
    spec = scenario_from_dict({
        "scenario": {"name": "book", "duration": "1m"},
        "org": {"tier": "developer", "project_quotas": quotas, "flex": {"multiplier": 3}},
        "projects": {"a": {"limits": {MODEL: {"rpm": 7}}}, "b": {}},
        "clients": [{"name": "c", "model": MODEL, "arrival": {"kind": "poisson", "rate": 1}, "project": "a"}],
    }, source="<test>").spec()
    on_demand = LimitSet(spec.catalog.tier("developer")[MODEL], spec.org.limiter)
    return LimitBook(spec.org, spec.projects, {MODEL: on_demand}.__getitem__), on_demand


def test_each_tier_and_project_gets_its_set_and_shares_its_orgs():
    book, on_demand = _book()
    assert book.limits(None, ON_DEMAND, MODEL) is on_demand
    flex = book.limits(None, FLEX, MODEL)
    assert flex is book.flex[MODEL] and flex is not on_demand
    assert (flex.limits.rpm, flex.limits.tpm) == (3 * on_demand.limits.rpm, 3 * on_demand.limits.tpm)
    a_flex, a = book.limits("a", FLEX, MODEL), book.limits("a", ON_DEMAND, MODEL)
    assert isinstance(a_flex, ScopedLimits) and isinstance(a, ScopedLimits)
    assert a_flex.project.limits.rpm == 21 and a.project.limits.rpm == 7  # a project's own limit x 3 under flex
    assert a_flex.org is flex and a.org is on_demand  # checked with its tier's org set, the one others use
    assert book.limits("a", FLEX, MODEL) is a_flex  # kept: later requests see the state earlier ones left
    assert book.limits("b", FLEX, MODEL) is flex  # a project that lowers nothing passes the org's set
    assert set(book.scoped) == {("a", FLEX, MODEL), ("a", ON_DEMAND, MODEL)}


def test_a_project_request_spends_the_orgs_flex_budget():
    book, _ = _book()
    flex = book.limits(None, FLEX, MODEL)
    before = flex.units["rpm"].remaining(0.0)
    assert book.limits("a", FLEX, MODEL).acquire(10, 0.0, 0.0) == 0.0
    assert flex.units["rpm"].remaining(0.0) == before - 1


def test_without_project_quotas_every_project_passes_the_orgs_sets():
    book, on_demand = _book(quotas=False)
    assert book.limits("a", ON_DEMAND, MODEL) is on_demand and book.limits("a", FLEX, MODEL) is book.flex[MODEL]


def test_admit_routes_by_mode_and_a_tie_between_tiers_goes_to_flex():
    """``admit``: on-demand never asks flex's capacity; flex asks it first (short: a 498, nothing charged);
    auto falls to flex only when on-demand refuses, and when both refuse with the same wait (here a request
    too large for either: a 413 on both) the 429/413 is flex's, as ``wf <= w`` says."""
    from sim.limitbook import AUTO
    book, on_demand = _book()
    asked = []

    def short():
        asked.append(1)
        return False
    s, w, tier = book.admit(None, ON_DEMAND, MODEL, 10, 0.0, 0.0, short)
    assert (s, w, tier, asked) == (on_demand, 0.0, ON_DEMAND, [])
    assert book.admit(None, AUTO, MODEL, 10, 0.0, 0.0, short)[2] == ON_DEMAND and asked == []
    huge = 10 * book.limits(None, FLEX, MODEL).limits.tpm
    s, w, tier = book.admit(None, AUTO, MODEL, huge, 0.0, 0.0, short)
    assert w == float("inf") and tier == FLEX and s is book.flex[MODEL] and asked == [1]
    before = book.flex[MODEL].units["rpm"].remaining(0.0)
    assert book.admit(None, FLEX, MODEL, 10, 0.0, 0.0, lambda: True) == (None, 0.0, FLEX)
    assert book.flex[MODEL].units["rpm"].remaining(0.0) == before  # a 498 charges nothing


def test_auto_refused_by_both_tiers_waits_for_the_sooner_one():
    """auto, on-demand and flex both refusing: the attempt waits for the tier that admits it sooner.  Here
    on-demand's RPM is spent (one request back in 60 / RPM s) and flex's TPM is spent (the request's tokens
    back in twice that), so on-demand's refusal stands."""
    from sim.limitbook import AUTO
    book, on_demand = _book()
    flex = book.limits(None, FLEX, MODEL)
    for _ in range(on_demand.limits.rpm):
        assert on_demand.acquire(1, 0.0, 0.0) == 0.0
    assert flex.acquire(flex.limits.tpm, 0.0, 0.0) == 0.0
    tokens = 2 * flex.limits.tpm / on_demand.limits.rpm
    w_on, w_flex = on_demand.check(tokens, 0.0, 0.0).wait, flex.check(tokens, 0.0, 0.0).wait
    assert w_on == pytest.approx(60 / on_demand.limits.rpm) and w_flex == pytest.approx(2 * w_on)
    s, w, tier = book.admit(None, AUTO, MODEL, tokens, 0.0, 0.0, lambda: False)
    assert (s, w, tier) == (on_demand, w_on, ON_DEMAND)
