"""The run records built from hand-filled columns: order, codes, the 429 log, the admissions the records do not
show, lane columns, and the memory the columns hold (the engine's columns become the frame's, uncopied)."""
import numpy as np
import pandas as pd
import pytest

from sim.records import (GAVE_UP, LANE_TIERS, OK, OUTCOMES, REFUSED_BY, UNIT_INDEX, Columns, earlier_admissions,
                         frames)

MODELS = ["m0", "m1", "m2"]


def _group(created, model, *, lanes=None):
    """A group of requests created at ``created`` for models ``model``: prompt 10 k + 1, max_tokens 100 + k,
    completion 5 + k, audio 0, charged 110 + 2 k for request k (``lanes``: (tier, project, lane))."""
    c = Columns()
    if lanes is not None:
        c.lane_columns(*lanes)
    k = np.arange(len(created))
    c.add({"created": np.asarray(created, float), "prompt": 10 * k + 1, "max_tokens": 100 + k,
           "completion": 5 + k, "audio": np.zeros(len(k)), "charge": 110.0 + 2 * k,
           "z_speed": np.full(len(k), 0.5), "z_queue": np.full(len(k), -0.5)}, np.asarray(model))
    return c


def _finish(c, i, finished, outcome=OK, admitted=None, qt=0.01, pt=0.1, ct=0.2):
    c.finished[i], c.outcome[i] = finished, outcome
    c.admitted[i] = finished - 0.3 if admitted is None else admitted
    c.qt[i], c.pt[i], c.ct[i] = qt, pt, ct


def test_records_are_in_creation_order_ties_in_group_order_with_their_codes_named():
    a, b = _group([0.0, 2.0, 5.0], [0, 2, 1]), _group([1.0, 2.0], [1, 1])
    _finish(a, 0, 0.4)
    _finish(a, 1, 2.6, outcome=GAVE_UP, pt=0.25, ct=0.5)
    a.refused[1], a.attempts[1], a.n429[1] = UNIT_INDEX["tpm"], 3, 2
    _finish(b, 0, 1.5)
    # a[2] and b[1] are still pending when the run ends: unfinished
    rec, _ = frames([a, b], ["alpha", "beta"], MODELS)

    assert list(rec.columns[:3]) == ["id", "client", "model"]
    assert rec["id"].tolist() == [0, 1, 2, 3, 4]
    assert rec["created"].tolist() == [0.0, 1.0, 2.0, 2.0, 5.0]
    assert rec["client"].tolist() == ["alpha", "beta", "alpha", "beta", "alpha"]  # the tie at 2.0: group order
    assert rec["model"].tolist() == ["m0", "m1", "m2", "m1", "m1"]
    assert rec["outcome"].tolist() == ["ok", "ok", "gave_up", "unfinished", "unfinished"]
    assert list(rec["outcome"].cat.categories) == list(OUTCOMES)
    assert list(rec["refused_by"].cat.categories) == list(REFUSED_BY)
    assert rec["refused_by"].tolist() == ["", "", "tpm", "", ""]
    assert rec["attempts"].tolist() == [0, 0, 3, 0, 0] and rec["n429"].tolist() == [0, 0, 2, 0, 0]
    assert rec["latency"].iloc[:3].tolist() == pytest.approx([0.4, 0.5, 0.6])
    assert np.isnan(rec["latency"].iloc[3]) and np.isnan(rec["finished"].iloc[4])
    assert rec["total_time"].iloc[:3].tolist() == pytest.approx([0.3, 0.3, 0.75])
    assert rec["prompt_tokens"].tolist() == [1, 1, 11, 11, 21]  # (each group's own k)
    assert rec["charged_tokens"].tolist() == [110.0, 110.0, 112.0, 112.0, 114.0]
    assert "service_tier" not in rec and "project" not in rec  # no lanes


def test_the_429_log_names_model_and_unit_and_is_in_time_order_across_groups():
    a, b = _group([0.0], [0]), _group([0.0], [2])
    for t, model, unit in ((0.5, 2, "rpm"), (3.0, 1, "tpd"), (7.0, 2, "ash")):
        b.refusal_t.append(t)
        b.refusal_code.append(8 * model + UNIT_INDEX[unit])
    a.refusal_t.append(1.0)
    a.refusal_code.append(8 * 0 + UNIT_INDEX["asd"])
    _, ref = frames([a, b], ["alpha", "beta"], MODELS)
    assert ref["time"].tolist() == [0.5, 1.0, 3.0, 7.0]
    assert ref["client"].tolist() == ["beta", "alpha", "beta", "beta"]
    assert ref["model"].tolist() == ["m2", "m0", "m1", "m2"]
    assert ref["unit"].tolist() == ["rpm", "asd", "tpd", "ash"]


def test_a_lane_run_adds_its_columns_as_categories():
    a = _group([0.0, 1.0], [0, 0], lanes=(1, "", "flex"))
    b = _group([0.5], [1], lanes=(0, "team-b", "on_demand"))
    a.extra["n498"][1], a.extra["scope"][0], a.extra["job"][1] = 4, 1, 7
    rec, _ = frames([a, b], ["alpha", "beta"], MODELS)
    assert rec["service_tier"].tolist() == ["flex", "on_demand", "flex"]
    assert list(rec["service_tier"].cat.categories) == list(LANE_TIERS)
    assert rec["n498"].tolist() == [0, 0, 4] and rec["job"].tolist() == [-1, -1, 7]
    assert rec["refused_scope"].cat.codes.tolist() == [1, 0, 0]
    assert np.isnan(rec["submitted"]).all() and rec["n429_project"].tolist() == [0, 0, 0]
    for col, values in (("project", ["", "team-b", ""]), ("lane", ["flex", "on_demand", "flex"])):
        assert isinstance(rec[col].dtype, pd.CategoricalDtype) and rec[col].tolist() == values


def test_earlier_admissions_keep_the_timed_out_attempts_but_not_the_records_own():
    a = _group([0.0, 0.0], [0, 1])
    a.timed_out(0, 1.0, 0, 9.0)    # request 0: admitted at 1, given up, admitted again at 4 (its record's)
    a.timed_out(1, 2.0, 2, 12.0)   # request 1 (sent to model 2 then): admitted at 2, given up
    a.timed_out(0, 4.0, 0, 10.0)   # request 0's last admission: the record's own, not listed again
    _finish(a, 0, 10.0, admitted=4.0)
    _finish(a, 1, 8.0, admitted=6.0)
    b = _group([0.5], [1])
    b.timed_out(0, 1.5, 1, 3.0)
    earlier = earlier_admissions([a, b], ["alpha", "beta"], MODELS)
    assert earlier["admitted"].tolist() == [1.0, 1.5, 2.0]
    assert earlier["client"].tolist() == ["alpha", "beta", "alpha"]
    assert earlier["model"].tolist() == ["m0", "m1", "m2"]
    assert earlier["finished"].tolist() == [9.0, 3.0, 12.0]
    assert earlier["charged_tokens"].tolist() == [110.0, 110.0, 112.0]
    assert earlier["max_tokens"].tolist() == [100, 100, 101] and earlier["completion_tokens"].tolist() == [5, 5, 6]
    assert "service_tier" not in earlier
    records, _ = frames([a, b], ["alpha", "beta"], MODELS)  # ids by creation, ties in group order: a0, a1, b0
    assert earlier["request"].tolist() == [0, 2, 1]
    assert earlier_admissions([a], ["alpha"], MODELS)["request"].tolist() == [0, 1]  # (one group: its rows)
    assert earlier_admissions([b, a], ["beta", "alpha"], MODELS)["request"].tolist() == [0, 2, 1]  # (by creation)
    mine = records.set_index("id").loc[earlier["request"]]
    assert mine["client"].tolist() == earlier["client"].tolist()
    assert mine["prompt_tokens"].tolist() == earlier["prompt_tokens"].tolist() == [1, 1, 11]


def test_earlier_admissions_of_a_lane_run_name_the_tier_that_admitted_them():
    a = _group([0.0], [0], lanes=(1, "", "flex"))
    a.timed_out(0, 1.0, 0, 5.0)      # admitted on flex
    a.extra["tier"][0] = 0           # then on on_demand
    a.timed_out(0, 2.0, 0, 6.0)
    _finish(a, 0, 7.0, admitted=3.0)
    b = _group([0.0], [1])           # a group of the same run without lane columns
    b.timed_out(0, 0.5, 1, 4.0)
    earlier = earlier_admissions([a, b], ["alpha", "beta"], MODELS)
    assert earlier["admitted"].tolist() == [0.5, 1.0, 2.0]
    assert earlier["service_tier"].tolist() == ["on_demand", "flex", "on_demand"]


def test_a_request_holds_about_100_bytes_and_the_run_frees_its_scratch_columns():
    """Per request: 10 float columns (8 bytes), 3 token counts (4), 5 small codes (1), 2 counters (2) = 101
    bytes; the service draws, the wanted model and the chain position (18 bytes) are the run's scratch."""
    c = _group(np.arange(1000.0), np.zeros(1000, int))
    assert c.nbytes() == 101 * 1000
    c.timed_out(3, 1.0, 0, 2.0)
    assert c.nbytes() == 101 * 1000 + 4 + 8 + 1 + 8
    c.release_scratch()
    assert c.nbytes() == 83 * 1000 + 21
    assert len(c.z_speed) == len(c.z_queue) == len(c.model) == len(c.pos) == 0
    assert len(c.served) == 1000  # (the records' model column: the model last tried)
    lanes = _group(np.arange(10.0), np.zeros(10, int), lanes=(0, "", "on_demand"))
    assert lanes.nbytes() == (101 + 1 + 2 + 1 + 2 + 4 + 8) * 10


def test_one_groups_columns_become_the_frames_without_a_copy():
    c = _group(np.arange(5.0), np.zeros(5, int))
    for i in range(5):
        _finish(c, i, i + 1.0)
    rec, _ = frames([c], ["alpha"], MODELS)
    for col, buf in (("created", c.created), ("finished", c.finished), ("admitted", c.admitted),
                     ("charged_tokens", c.charge), ("queue_time", c.qt)):
        assert np.shares_memory(rec[col].to_numpy(), np.frombuffer(buf)), col
