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


# --- SimPy's own Environment as the reference for everything that is not a light call -----------------------

def _on_both(program):
    """Run ``program(env, log)`` on SimPy's Environment and on a Clock; each returns what it saw: the log
    (times and tags), the last ``now`` and what the program returned or raised (type and message)."""
    seen = []
    for env in (simpy.Environment(), Clock()):
        log = []
        try:
            out = ("returned", program(env, log))
        except Exception as exc:  # noqa: BLE001 - the exception itself is what is compared
            out = ("raised", type(exc).__name__, str(exc).split(":")[0],
                   type(exc.__cause__).__name__ if exc.__cause__ is not None else None)
        seen.append((log, env.now, out))
    return seen


def test_run_until_an_event_stops_when_it_is_processed_and_returns_its_value_as_simpy_does():
    def program(env, log):
        def worker():
            yield env.timeout(2.5)
            log.append((env.now, "worker done"))
            return "answer"

        def bystander():
            while True:
                yield env.timeout(1)
                log.append((env.now, "tick"))

        proc = env.process(worker())
        env.process(bystander())
        first = env.run(until=proc)
        again = env.run(until=proc)  # processed already: its value at once, the clock unmoved
        log.append((env.now, "again"))
        env.run(until=4.5)  # then on, to an absolute time
        log.append((env.now, env.run(until=proc)))  # long processed: its value, the clock unmoved
        return first, again

    simpy_seen, clock_seen = _on_both(program)
    assert clock_seen == simpy_seen
    log, now, out = clock_seen
    assert out == ("returned", ("answer", "answer")) and now == 4.5
    assert log == [(1, "tick"), (2, "tick"), (2.5, "worker done"), (2.5, "again"), (3, "tick"), (4, "tick"),
                   (4.5, "answer")]


def _sleeper(env, delay):
    yield env.timeout(delay)


def test_run_until_an_event_that_never_comes_is_an_error_and_run_to_the_end_returns_none():
    def never(env, log):
        env.timeout(1.0).callbacks.append(lambda e: log.append((env.now, "timeout")))
        return env.run(until=env.event())

    def to_the_end(env, log):
        env.process(_sleeper(env, 3.0))
        return env.run()

    simpy_seen, clock_seen = _on_both(never)
    assert clock_seen == simpy_seen and clock_seen[0] == [(1.0, "timeout")]
    message = 'No scheduled events left but "until" event was not triggered'
    assert clock_seen[2][:3] == ("raised", "RuntimeError", message)
    simpy_seen, clock_seen = _on_both(to_the_end)
    assert clock_seen == simpy_seen and clock_seen[1:] == (3.0, ("returned", None))


def test_run_until_a_time_is_absolute_and_must_lie_ahead():
    def program(env, log):
        env.process(_sleeper(env, 10.0))
        env.run(until=2)
        log.append((env.now, "first"))
        env.run(until=5.0)  # absolute: 5, not 2 + 5
        log.append((env.now, "second"))
        env.run(until="5.5")  # anything float() reads, as SimPy takes it
        log.append((env.now, "third"))
        for bad in (5.5, 4):  # the current time itself, and a time behind it
            try:
                env.run(until=bad)
            except ValueError as exc:
                log.append((env.now, str(exc)))
        return None

    simpy_seen, clock_seen = _on_both(program)
    assert clock_seen == simpy_seen
    assert clock_seen[0] == [(2, "first"), (5.0, "second"), (5.5, "third"),
                             (5.5, "until (5.5) must be greater than the current simulation time"),
                             (5.5, "until (4) must be greater than the current simulation time")]


def test_a_failed_event_crashes_the_run_unless_defused_as_in_simpy():
    def crash(env, log):
        def failing():
            yield env.timeout(1)
            raise KeyError("boom")
        env.process(failing())
        return env.run(until=3)

    def defused(env, log):
        ev = env.event()
        ev.fail(KeyError("quiet"))
        ev.defused = True
        env.timeout(2).callbacks.append(lambda e: log.append((env.now, "after")))
        return env.run(until=3)

    simpy_seen, clock_seen = _on_both(crash)
    assert clock_seen == simpy_seen and clock_seen[2] == ("raised", "KeyError", "'boom'", "KeyError")
    assert clock_seen[1] == 1
    simpy_seen, clock_seen = _on_both(defused)
    assert clock_seen == simpy_seen and clock_seen == ([(2, "after")], 3, ("returned", None))


def test_callbacks_after_the_stop_run_first_when_the_run_resumes_as_in_simpy():
    """An event whose callbacks go on past the one that stops the run: the rest are kept on the event,
    which is scheduled again ahead of everything else at that instant (an URGENT process start and a NORMAL
    timeout created at the same moment included)."""
    def program(env, log):
        ev = env.event()

        def starter(e):
            def late():
                log.append((env.now, "process started in a callback"))
                yield env.timeout(0)
            env.process(late())
            env.timeout(0).callbacks.append(lambda t: log.append((env.now, "timeout(0) of the same moment")))
        ev.callbacks.append(starter)

        def trigger():
            yield env.timeout(1)
            ev.succeed("x")

        def waiter():  # waits on ev after the run began: its callback comes after the stop's
            yield env.timeout(0.5)
            value = yield ev
            log.append((env.now, f"waiter got {value}"))

        env.process(trigger())
        env.process(waiter())
        stopped = env.run(until=ev)
        log.append((env.now, f"run returned {stopped}"))
        env.run()
        return None

    simpy_seen, clock_seen = _on_both(program)
    assert clock_seen == simpy_seen
    assert clock_seen[0] == [(1, "run returned x"), (1, "waiter got x"), (1, "process started in a callback"),
                             (1, "timeout(0) of the same moment")]


def test_step_processes_one_entry_at_a_time_light_calls_included():
    clock, log = Clock(), []
    clock.call_at(2.0, lambda a, b: log.append((clock.now, a, b)), "light", 7)
    clock.timeout(1.0).callbacks.append(lambda e: log.append((clock.now, "timeout", None)))
    clock.step()
    assert log == [(1.0, "timeout", None)]
    clock.step()
    assert log == [(1.0, "timeout", None), (2.0, "light", 7)] and clock.now == 2.0
    with pytest.raises(simpy.core.EmptySchedule):
        clock.step()


def test_a_stream_due_in_the_past_is_merged_at_the_current_time_never_before():
    clock, log = Clock(), []
    clock.run(until=5.0)
    stream = (np.array([1.0, 2.0, 6.0, 6.0, 7.5]), lambda a, j, now: log.append((j, now, clock.now)), None)
    clock.call_at(stream[0][0], clock.merge, stream, 0)
    assert clock.run() is None  # nothing else queued: the merge runs the stream to its end by itself
    assert log == [(0, 5.0, 5.0), (1, 5.0, 5.0), (2, 6.0, 6.0), (3, 6.0, 6.0), (4, 7.5, 7.5)]
