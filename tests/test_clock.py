"""The clock: light calls fire in exactly the order SimPy's own Timeouts would, and SimPy processes still run."""
import random

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


def test_advance_merges_a_sorted_stream_in_queue_order():
    clock, seen = Clock(), []
    clock.call_at(2.0, lambda a, b: seen.append(("queued", clock.now)), None, None)
    assert clock.advance_or_call_at(1.0, None, None, None) and clock.now == 1.0  # before the queue: at once
    # at the same time as a queued call: the queued one (older id) goes first, the item is scheduled
    assert not clock.advance_or_call_at(2.0, lambda a, b: seen.append(("stream", clock.now)), None, None)
    clock.run(until=5)
    assert seen == [("queued", 2.0), ("stream", 2.0)]


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
