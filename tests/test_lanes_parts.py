"""sim/lanes.py by its parts: the tier codes the records name, the tier a request is marked with before (or
without) an attempt, the batch lane's records and job table when several groups use it, a project name
checked for every group, and the order of the limits that spilled ``auto`` attempts to a 498."""
import numpy as np
import pandas as pd
import pytest

from helpers import client, run
from sim import RunSpec
from sim.batch import BatchJobs, BatchLane
from sim.config import Org, policy_table
from sim.errors import ConfigError
from sim.lanes import TIERS, Lanes
from sim.limitbook import FLEX, ON_DEMAND
from sim.projects import Project

#: one attempt in flight and no client-side queue: every request arriving meanwhile is dropped unsent
CAPPED = {"capped": {"max_in_flight": 1, "queue_size": 0}}
#: the batch lane with no start delay and one speed: a job of n requests of 1 100 tokens ends n x 1 100 / 5 000 s
#: after its submission
QUICK = BatchLane(start_median=0, start_p95=0, speed_median=5000.0, speed_p05=5000.0)
SIZE = {"prompt_tokens": 1000, "max_tokens": 200, "completion_tokens": 100}


def test_the_tier_codes_name_the_records_service_tiers():
    """``sim.lanes.TIERS`` is how the records spell a tier code: on-demand, flex, then the batch lane."""
    assert TIERS == ("on_demand", "flex", "batch")
    assert (TIERS[ON_DEMAND], TIERS[FLEX]) == ("on_demand", "flex")
    res = run(client(name="b", rate="60/min", lane="batch", **SIZE), duration=120, org=Org(batch=QUICK))
    assert res.records["service_tier"].cat.categories.tolist() == list(TIERS)


@pytest.mark.parametrize("org_tier, group_tier, marked", [
    ("on_demand", "flex", "flex"),   # the group's own tier wins over the org's
    ("flex", None, "flex"),          # a group without one takes the org's
    ("flex", "auto", "on_demand"),   # auto tries on-demand first
    ("flex", "on_demand", "on_demand"),
])
def test_a_request_never_sent_is_marked_with_its_groups_first_tier(org_tier, group_tier, marked):
    """A request dropped by the client (one in flight, no queue) never reaches a limit: its ``service_tier``
    is the tier its group would have tried first, so a breakdown by tier puts it with its group's."""
    org = Org(tier="developer", service_tier=org_tier)
    res = run(client(rate="600/min", policy="capped", service_tier=group_tier), duration=60, org=org,
              extra_policies=CAPPED)
    dropped = res.records[res.records["outcome"] == "dropped"]
    assert len(dropped) > 100 and (dropped["attempts"] == 0).all()
    assert set(dropped["service_tier"]) == {marked}


def _two_batch_groups():
    """Two batch groups of constant arrivals (at 0, 5, 10, ... s and 0, 10, 20, ... s), each submitted every 5
    minutes of a 10-minute run: 2 jobs each, the requests created by 300 s in the first (61 and 31), the others
    in the one at 600 s (59 and 29)."""
    jobs = BatchJobs(submit_at="5m", submit_every="5m")
    groups = [client(name="a", kind="constant", rate="12/min", lane="batch", batch=jobs, **SIZE),
              client(name="b", kind="constant", rate="6/min", lane="batch", batch=jobs, **SIZE)]
    return run(groups, duration=600, org=Org(batch=QUICK))


def test_several_batch_groups_number_their_jobs_in_one_sequence():
    """Job numbers are the run's, not each group's: the second group's jobs follow the first's, in the records
    and in the job table, whose rows are numbered 0..n-1 and start with the client."""
    res = _two_batch_groups()
    rec, jobs = res.records, res.jobs
    assert jobs.columns[0] == "client"
    assert jobs.index.tolist() == [0, 1, 2, 3]
    assert jobs["client"].tolist() == ["a", "a", "b", "b"]
    assert jobs["job"].tolist() == [0, 1, 2, 3]
    assert jobs["requests"].tolist() == [61, 59, 31, 29]
    assert jobs["submitted"].tolist() == [300.0, 600.0, 300.0, 600.0]
    # every record names its own job: the table's row of that number is its group's and counts it
    per_job = rec.groupby("job")["client"].agg(["first", "nunique", "size"])
    assert per_job.index.tolist() == [0, 1, 2, 3]
    assert per_job["first"].tolist() == jobs["client"].tolist() and (per_job["nunique"] == 1).all()
    assert per_job["size"].tolist() == jobs["requests"].tolist()
    # one attempt each (the file's line), on the batch lane; a job of n done n x 1 100 / 5 000 s after submission
    assert (rec["attempts"] == 1).all() and (rec["service_tier"] == "batch").all()
    assert (rec["outcome"] == "ok").all()
    last = rec.groupby("job")["finished"].max()
    assert np.allclose(last.to_numpy(), [300 + 13.42, 600 + 12.98, 300 + 6.82, 600 + 6.38])


def test_a_batch_group_that_sent_nothing_has_no_job():
    """No request in the window: no job, no record of the group; the run's other batch group keeps its own."""
    quiet = client(name="quiet", rate="1/day", lane="batch", **SIZE)
    alone = run(quiet, duration=5, org=Org(batch=QUICK))  # (seed 1: its first arrival is hours away)
    assert len(alone.records) == 0 and alone.jobs is None
    busy = client(name="busy", kind="constant", rate="60/min", lane="batch", **SIZE)
    both = run([quiet, busy], duration=5, org=Org(batch=QUICK))
    assert both.jobs["client"].tolist() == ["busy"] and both.jobs["job"].tolist() == [0]
    assert both.jobs.index.tolist() == [0]
    assert set(both.records["client"]) == {"busy"}


def test_a_batch_group_naming_an_unknown_project_is_refused_as_any_group():
    """A RunSpec built by hand: a batch-lane group's project is checked like every group's (it went through
    silently, and its records then named a project the org does not have)."""
    for lane in ("on_demand", "batch"):
        with pytest.raises(ConfigError, match="unknown project of client 'c': 'etll'.*did you mean 'etl'"):
            run(client(project="etll", lane=lane), duration=60, projects={"etl": Project()})
    res = run(client(project="etl", lane="batch"), duration=60, projects={"etl": Project()})
    assert set(res.records["project"]) == {"etl"}


def test_the_limits_that_spilled_auto_attempts_rank_most_first_then_by_model_and_unit():
    """``spilled_by`` ranks the on-demand limits by how many ``auto`` attempts they sent to a 498 (the first is
    the run's binding, marked ``(spilled)``); on a tie the first model in the run's order wins, then RPM
    before TPM -- not whichever spilled first."""
    spec = RunSpec(clients=[client()], policies=policy_table())
    lanes = Lanes(spec, [], ["model-a", "model-b"], np.random.SeedSequence(0))
    assert lanes.spilled_by() == ()
    lanes.spilled.update({(1, "rpm"): 3, (0, "tpm"): 5, (1, "tpm"): 3, (0, "rpm"): 3})
    assert lanes.spilled_by() == (("model-a", "tpm"), ("model-a", "rpm"), ("model-b", "rpm"), ("model-b", "tpm"))
    # units tie in the catalog's order, as the binding of the 429s does (by name RPD would come before RPM)
    lanes.spilled.clear()
    lanes.spilled.update({(0, "tpd"): 2, (0, "rpd"): 2, (0, "rpm"): 2, (0, "tpm"): 2})
    assert lanes.spilled_by() == (("model-a", "rpm"), ("model-a", "rpd"), ("model-a", "tpm"), ("model-a", "tpd"))


def test_a_run_without_batch_groups_has_no_job_table():
    res = run(client(service_tier="flex"), duration=60, org=Org(tier="developer"))
    assert res.jobs is None
    assert isinstance(_two_batch_groups().jobs, pd.DataFrame)
