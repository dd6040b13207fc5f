"""The clock: light calls fire in exactly the order SimPy's own Timeouts would, and SimPy processes still run."""
import random

import numpy as np
import pytest
import simpy

from sim.clock import Clock


def _schedule_both(seed):
    """The same random program of delayed calls, as light calls on a Clock and as Timeouts on SimPy."""
    fired = {"clock": [], "simpy": []}
    clock, env = Clock(), simpy.Environment()
    rng = random.Random(seed)
    plan = [(rng.choice([0.0, 0.5, 1.0, rng.random() * 3]), k) for k in range(200)]

    def on_clock(tag, depth):
        fired["clock"].append((clock.now, tag))
        if depth < 2:
            clock.call_after(plan[tag % len(plan)][0], on_clock, tag + 1000, depth + 1)

    def on_simpy(ev):
        tag, depth = ev.value
        fired["simpy"].append((env.now, tag))
        if depth < 2:
            t = simpy.Timeout(env, plan[tag % len(plan)][0], (tag + 1000, depth + 1))
            t.callbacks.append(on_simpy)

    for delay, tag in plan:
        clock.call_at(delay, on_clock, tag, 0)
        simpy.Timeout(env, max(delay - env.now, 0.0), (tag, 0)).callbacks.append(on_simpy)
    clock.run(until=100)
    env.run(until=100)
    return fired


@pytest.mark.parametrize("seed", range(5))
def test_light_calls_fire_like_simpy_timeouts(seed):
    fired = _schedule_both(seed)
    assert fired["clock"] == fired["simpy"] and len(fired["clock"]) == 600


def test_merge_interleaves_a_sorted_stream_with_the_queue_like_one_call_per_item():
    """A merged stream fires exactly as scheduling every item with call_at up front would, ties included
    (a queued call at the same time is older: it goes first), and items due before the queue go at once."""
    rng = np.random.default_rng(3)
    times = np.sort(np.round(rng.uniform(0, 50, 400), 1)).tolist()  # rounded: many ties with the queue
    queued = np.round(rng.uniform(0, 50, 200), 1).tolist()

    def fire(clock, log, merged):
        for k, t in enumerate(queued):
            clock.call_at(t, lambda a, b: log.append(("q", a, clock.now)), k, None)
        if merged:
            clock.call_at(times[0], clock.merge, (times, lambda a, j, now: log.append(("s", j, now)), None), 0)
        else:
            for j, t in enumerate(times):
                clock.call_at(t, lambda a, b: log.append(("s", a, clock.now)), j, None)
        clock.run(until=60)
        return log

    merged, one_by_one = fire(Clock(), [], True), fire(Clock(), [], False)
    assert merged == one_by_one and len(merged) == 600
    # the queued calls scheduled before the stream keep their order relative to it
    assert [e for e in merged if e[0] == "s"] == [("s", j, t) for j, t in enumerate(times)]


def test_simpy_processes_and_until_still_work():
    clock, log = Clock(), []

    def user(env):
        for _ in range(3):
            yield env.timeout(1.5)
            log.append(env.now)

    clock.process(user(clock))
    clock.call_at(2.0, lambda a, b: log.append(("call", clock.now)), None, None)
    clock.run(until=4.0)
    assert log == [1.5, ("call", 2.0), 3.0] and clock.now == 4.0
    with pytest.raises(ValueError):
        clock.run(until=1.0)


def test_engine_on_the_bare_heapq_loop_gives_the_same_records():
    """bench/heapq_clock.py's baseline: the engine run on a bare heap (``Simulation(clock=...)``) must give
    the records of the SimPy clock, or bench.py's engine/heapq ratio compares different work.  The overload
    workload retries a lot: a retry scheduled on the wrong clock would be lost."""
    import sys
    from pathlib import Path
    bench = str(Path(__file__).resolve().parent.parent / "bench")
    sys.path.insert(0, bench)
    try:
        from bench import workloads
        from heapq_clock import HeapClock
    finally:
        sys.path.remove(bench)
    from sim.engine import Simulation
    spec = workloads(600.0)["overload"]
    ours, bare = Simulation(spec, 3).run(), Simulation(spec, 3, clock=HeapClock()).run()
    assert ours.records["n429"].sum() > 100  # retries happened
    assert ours.records.equals(bare.records) and ours.refusals.equals(bare.refusals)
    assert ours.events == bare.events
