"""A gated client's queue: retries first, in the order they fell due, and before any new request
(``Simulation._on_retry``; the fast lane's copy is compared with it in tests/test_kernel.py)."""
import numpy as np
import pytest

from sim.config import Org, policy_table
from sim.engine import Simulation
from sim.records import DEADLINE
from sim.service import service_models
from sim.spec import RunSpec
from tests.helpers import client, run


def _net(rtt: float):
    """A constant round trip: requests sent together are refused together, and their retries fall due together."""
    return service_models({"llama-3.3-70b-versatile": {"rtt_median": rtt, "rtt_p90": rtt}})


def _sends(monkeypatch, policy, extra, rate="300/min", kind="poisson", **kw):
    """Every attempt group 0 sends, ``(time, request, attempts before)``, in send order, and when each retry
    fell due, ``(request, attempts before) -> time``."""
    sent, due = [], {}
    send, on_retry = Simulation._send, Simulation._on_retry

    def spy_send(self, c, i, now):
        if c.index == 0:
            sent.append((now, i, int(c.attempts[i])))
        return send(self, c, i, now)

    def spy_retry(self, c, i):
        if c.index == 0:
            due[(i, int(c.attempts[i]))] = self.env.now
        return on_retry(self, c, i)

    monkeypatch.setattr(Simulation, "_send", spy_send)
    monkeypatch.setattr(Simulation, "_on_retry", spy_retry)
    # (a second group, not paced, takes a share of the limits: the pacer, which paces to them alone, meets 429s)
    run([client("gated", rate=rate, kind=kind, prompt_tokens=10, max_tokens=10, policy=policy),
         client("other", rate="20/min", prompt_tokens=10, max_tokens=10, policy="no-retry")],
        duration=300, kernel=False, extra_policies=extra, **kw)
    return sent, due


def _assert_retries_first(sent, due, least=20):
    retries = [due[(i, a)] for _, i, a in sent if a > 0]
    assert len(retries) > least
    # in send order, the retries' due times never go down: the first due goes first
    assert (np.diff(retries) >= 0).all(), f"{(np.diff(retries) < 0).sum()} retries overtook an earlier one"
    # a new request never goes out while a retry already due waits
    k = 0
    for t, _, a in sent:
        if a > 0:
            k += 1
        else:
            assert not (k < len(retries) and retries[k] <= t), f"a new request went out at {t} before a retry due"


@pytest.mark.parametrize("policy,extra", [
    ("cooldown", None), ("paced", None), ("adaptive", None),
    ("cool", {"cool": {"retry": "fixed", "delay": 2.0, "max_attempts": 8, "cooldown": "5s"}}),
    # a retry due the instant the cooldown ends, as the cooldown policy's (both its refusal's retry-after)
    ("cool", {"cool": {"retry": "fixed", "delay": 5.0, "max_attempts": 8, "cooldown": "5s"}}),
    # retries leaving the queue at their deadline, from anywhere in it
    ("cool", {"cool": {"retry": "fixed", "delay": 2.0, "max_attempts": 8, "cooldown": "5s", "deadline": "9s"}}),
    # new requests leaving it at their deadline too (the retries before them gone: their deadlines came first)
    ("cool", {"cool": {"extends": "cooldown", "deadline": "2s"}}),
])
@pytest.mark.parametrize("rtt", [None, 0.12, 0.0], ids=["network", "constant-rtt", "no-network"])
def test_retries_leave_in_the_order_they_fell_due_and_before_new_requests(monkeypatch, policy, extra, rtt):
    sent, due = _sends(monkeypatch, policy, extra, **({} if rtt is None else {"service": _net(rtt)}))
    # (no network and a deadline: every 429 pauses the group at once for 5 s, which outlasts the deadlines,
    # so few retries ever go out)
    _assert_retries_first(sent, due, least=0 if rtt == 0.0 and "deadline" in (extra or {}).get("cool", {}) else 20)


NO_NETWORK = {
    # a cooldown and a fallback hop (due at once)
    "hop": {"retry": "fixed", "delay": 1.0, "max_attempts": 3, "cooldown": 2.0, "fallback": ["llama-3.1-8b-instant"]},
    # a cooldown alone: the retry falls due a second later, inside the pause
    "cooldown": {"retry": "fixed", "delay": 1.0, "max_attempts": 3, "cooldown": 2.0},
    # no pause: a retry due at once, in a queue that two in-flight slots keep full
    "at-once": {"retry": "fixed", "delay": 0.0, "honor_retry_after": False, "max_attempts": 3, "max_in_flight": 2},
}


@pytest.mark.parametrize("name", list(NO_NETWORK))
def test_with_no_network_a_refusal_read_as_it_is_sent_holds_the_rest_of_its_instant(monkeypatch, name):
    """No round trip (``rtt_median = 0``): a 429 is read the instant its attempt goes out, and what it starts
    comes before the queue's next send.  With a cooldown the whole group pauses from then, so nothing more goes
    out at that instant (the queue went on sending every new request queued then, each refused in turn), and
    when the pause ends a retry or hop goes first; with a retry due at once, that retry is the next send."""
    models = ("llama-3.3-70b-versatile", "llama-3.1-8b-instant")
    events = []  # ("send", time, request, attempts before) and ("429", time, request, tries) in their order
    send, refused = Simulation._send, Simulation._refused

    def spy_send(self, c, i, now):
        events.append(("send", now, int(i), int(c.attempts[i])))
        return send(self, c, i, now)

    def spy_refused(self, c, i, tries, t, status, retry_after):
        if status == 429:
            events.append(("429", t, int(i), tries))
        return refused(self, c, i, tries, t, status, retry_after)

    monkeypatch.setattr(Simulation, "_send", spy_send)
    monkeypatch.setattr(Simulation, "_refused", spy_refused)
    spec = RunSpec(clients=[client("g", model=models[0], rate="600/min", kind="constant", prompt_tokens=10,
                                   max_tokens=10, completion_tokens=5, policy="p")],
                   policies=policy_table({"p": NO_NETWORK[name]}), org=Org(), duration=60.0,
                   service=service_models({m: {"rtt_median": 0, "rtt_p90": 0} for m in models}))
    sim = Simulation(spec, 1, kernel=False)
    result = sim.run()
    assert next(sim.env._eid) == result.events + 2  # every entry the run scheduled counted (a pump resumed too)
    reads = [k for k, e in enumerate(events) if e[0] == "429" and e[3] < 3]  # (refusals that are retried)
    assert len(reads) > 10
    for k in reads:
        _, t, i, _ = events[k]
        nxt = next((e for e in events[k + 1:] if e[0] == "send"), None)
        if nxt is None:
            continue
        if name == "at-once":  # the request's own retry, at once
            assert nxt[1:3] == (t, i), (t, i, nxt)
        else:  # the next attempt waits out the 2 s cooldown, and it is a hop or retry
            assert nxt[1] >= t + 2.0 and nxt[3] > 0, (t, nxt)


def test_a_retry_goes_before_an_arrival_due_the_same_instant(monkeypatch):
    """Arrivals every 0.5 s, a round trip of 0.125 s and a retry 0.25 s after its 429 is read: a retry sent
    at t falls due at t + 0.375, and its next attempt's at t + 0.75, the instant of an arrival whose event
    was scheduled before that retry's (as the arrival before it went).  The retry still goes first: a gated
    group's retry is due ahead of everything else at its instant."""
    tie = {"tie": {"retry": "fixed", "delay": 0.25, "max_attempts": 5, "max_in_flight": 1000}}
    sent, due = _sends(monkeypatch, "tie", tie, rate="120/min", kind="constant", service=_net(0.125))
    arrivals = {t for t, _, a in sent if a == 0}
    assert sum(due[(i, a)] in arrivals for _, i, a in sent if a > 0) > 20  # the ties this test is about
    _assert_retries_first(sent, due)


@pytest.mark.parametrize("size", [0, 1])
def test_a_retry_due_with_an_arrival_takes_no_room_in_a_bounded_queue(monkeypatch, size):
    """queue_size and no rule holding anything: a retry due the instant a request arrives goes out at once,
    and the arrival is never dropped for it."""
    bounded = {"q": {"retry": "fixed", "delay": 0.75, "max_attempts": 5, "queue_size": size}}
    sent, due = _sends(monkeypatch, "q", bounded, rate="120/min", kind="constant", service=_net(0.25))
    arrivals = {t for t, _, a in sent if a == 0}
    assert sum(due[(i, a)] in arrivals for _, i, a in sent if a > 0) > 20
    assert len(arrivals) == 600  # every arrival of the 300 s went out: none dropped
    _assert_retries_first(sent, due)


def test_retries_count_toward_queue_size_but_are_never_dropped(monkeypatch):
    """``queue_size`` 1 and a 5 s cooldown: retries held by the pause fill the queue past its bound (a retry is
    never dropped), new requests arriving to it are dropped, and every dropped request is a new one."""
    longest, on_retry = [0], Simulation._on_retry

    def spy(self, c, i):
        on_retry(self, c, i)
        longest[0] = max(longest[0], len(c.queue))

    monkeypatch.setattr(Simulation, "_on_retry", spy)
    res = run(client("g", rate="120/min", kind="constant", prompt_tokens=10, max_tokens=10, policy="q"),
              duration=300, kernel=False, service=_net(0.5),
              extra_policies={"q": {"retry": "fixed", "delay": 1.0, "max_attempts": 8, "cooldown": "5s",
                                    "queue_size": 1}})
    dropped = res.records[res.records["outcome"] == "dropped"]
    assert longest[0] > 1 and len(dropped) > 10
    assert (dropped["attempts"] == 0).all()


def test_no_attempt_goes_out_at_its_requests_deadline(monkeypatch):
    """Arrivals every 0.5 s, a round trip of 0.5 s, a 5 s cooldown and a 5 s deadline: a request that arrives
    the instant a 429 is read is held until the cooldown ends, its deadline; the queue's wake-up then comes
    before the request's own expiry (scheduled after it), and the pump ends it as a deadline miss instead of
    sending an attempt the client has given up on."""
    sent, ended, expiring = [], [], []
    send, finish, expire = Simulation._send, Simulation._finish, Simulation._expire

    def spy_send(self, c, i, now):
        sent.append(now - c.created[i])
        return send(self, c, i, now)

    def spy_expire(self, c, i):
        expiring.append(i)
        expire(self, c, i)
        expiring.pop()

    def spy_finish(self, c, i, outcome, t):
        if outcome == DEADLINE and self.env.now == t and not expiring:
            ended.append(i)  # a deadline miss the pump decided (not the request's own expiry)
        return finish(self, c, i, outcome, t)

    monkeypatch.setattr(Simulation, "_send", spy_send)
    monkeypatch.setattr(Simulation, "_expire", spy_expire)
    monkeypatch.setattr(Simulation, "_finish", spy_finish)
    run([client("gated", rate="120/min", kind="constant", prompt_tokens=10, max_tokens=10, policy="cool")],
        duration=300, kernel=False, service=_net(0.5),
        extra_policies={"cool": {"retry": "none", "cooldown": "5s", "deadline": "5s"}})
    assert len(ended) > 10 and len(sent) > 100
    assert max(sent) < 5.0  # every attempt went out before its request's deadline


@pytest.mark.parametrize("policy", [
    {"extends": "cooldown", "deadline": "2s"},
    {"retry": "fixed", "delay": 1.0, "max_attempts": 8, "cooldown": "5s", "deadline": "9s", "queue_size": 3},
    # a retry at the head of the queue at its deadline, the instant the cooldown ends: the wake-up, scheduled
    # first, finds it there (a round trip of 0.5 s: each 429 is read as the next request arrives)
    {"retry": "fixed", "delay": 1.0, "max_attempts": 3, "cooldown": "4.5s", "deadline": "5s", "max_in_flight": 1},
    {"extends": "paced", "deadline": "20s"},
])
def test_the_queue_counts_the_retries_at_its_front(monkeypatch, policy):
    """After every step of a gated group's queue, its first ``retrying`` entries are retries and the rest new
    requests: the count every insertion and removal keeps (the order tests above rest on it)."""
    wrong = []

    def checked(name):
        step = getattr(Simulation, name)

        def wrapper(self, c, *args):
            out = step(self, c, *args)
            if c.gated:
                q = list(c.queue)
                if not (0 <= c.retrying <= len(q) and all(c.attempts[i] > 0 for i in q[:c.retrying])
                        and all(c.attempts[i] == 0 for i in q[c.retrying:])):
                    wrong.append((name, self.env.now))
            return out
        monkeypatch.setattr(Simulation, name, wrapper)

    for name in ("_pump", "_expire", "_on_retry", "_arrive", "_completed"):
        checked(name)
    sent, _ = _sends(monkeypatch, "p", {"p": policy}, rate="120/min", kind="constant", service=_net(0.5))
    assert sum(a > 0 for _, _, a in sent) + sum(a == 0 for _, _, a in sent) > 100
    assert not wrong, wrong[:3]
