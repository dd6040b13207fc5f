"""sim/errors.py: the errors' one-line messages and the warnings said once per process.

A simulator note (``warn_once``) is checked against what Python's own ``warnings`` module does with the same
filters: the first filter that matches (message, category, module and line of the caller) decides, and
``warnings.defaultaction`` when none does; ``"always"`` says it every time, ``"error"`` raises it, ``"ignore"``
says nothing (and an ignored note is not counted as said); otherwise it is said once per process, at the
line of the user's code that led to it.  Each test uses a message of its own, so the process-wide memory of
notes already said is never in the way."""
from __future__ import annotations

import inspect
import re
import uuid
import warnings

import pytest

import sim
from sim.catalog import Catalog
from sim.errors import (ConfigError, InertSettingWarning, InputWarning, KeyedError, ShutDownModelWarning,
                        did_you_mean, warn_once, write_problems, writing)


def _note() -> str:
    return f"a note nobody said before ({uuid.uuid4().hex})"


def _line() -> int:
    """The line that called this."""
    return inspect.currentframe().f_back.f_lineno


# ---- the errors -----------------------------------------------------------------------------------------

def test_a_keyed_error_is_one_line_key_first_and_keeps_its_parts():
    """A tier's ``scale`` with an unknown unit, through the Python API: a ConfigError (the CLI's one line),
    the key first; the caller (a scenario) reads ``key`` and ``message`` to name the rest of the path."""
    with pytest.raises(KeyedError) as e:
        Catalog.published().define_tier("mine", "free", scale={"rpmm": 2})
    assert isinstance(e.value, ConfigError) and isinstance(e.value, ValueError)
    assert str(e.value) == ("scale.rpmm: unknown limit unit 'rpmm' (did you mean 'rpm', 'tpm', 'rpd'? allowed: rpm, "
                            "rpd, tpm, tpd, ash, asd)")
    assert (e.value.key, e.value.message) == ("scale.rpmm", str(e.value).removeprefix("scale.rpmm: "))
    with pytest.raises(KeyedError, match=r"^scale\.rpm: [^:]+'s \d+ x 0 = 0: a scaled limit must be a finite"):
        Catalog.published().define_tier("none", "free", scale={"rpm": 0})


def test_a_keyed_error_crosses_a_process_boundary_whole():
    """A worker's error reaches the parent pickled: rebuilt from its key and message (pickle rebuilt it from
    the joined text alone, a TypeError in the pool's thread, and the command died of BrokenProcessPool)."""
    import pickle
    back = pickle.loads(pickle.dumps(KeyedError("clients[0].arrival.think", "stuck")))
    assert type(back) is KeyedError and (back.key, back.message) == ("clients[0].arrival.think", "stuck")
    assert str(back) == "clients[0].arrival.think: stuck"


def test_the_warning_classes_are_input_warnings_the_filters_can_name():
    assert issubclass(InputWarning, UserWarning)
    assert issubclass(ShutDownModelWarning, InputWarning) and issubclass(InertSettingWarning, InputWarning)
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=ShutDownModelWarning)
        warn_once(_note(), ShutDownModelWarning)
        warn_once(_note(), InertSettingWarning)
    assert [w.category for w in got] == [InertSettingWarning]


def test_did_you_mean_puts_close_names_then_names_containing_the_word():
    models = ["llama-3.1-8b-instant", "llama-3.3-70b-versatile", "openai/gpt-oss-20b"]
    assert did_you_mean("openai/gpt-oss-2b", models, "model") == (
        "unknown model 'openai/gpt-oss-2b' (did you mean 'openai/gpt-oss-20b'? allowed: llama-3.1-8b-instant, "
        "llama-3.3-70b-versatile, openai/gpt-oss-20b)")
    # too short to be close to any (difflib's ratio < 0.5), but a part of one, in any case
    assert did_you_mean("70B", models, "model") == (
        "unknown model '70B' (did you mean 'llama-3.3-70b-versatile'? allowed: llama-3.1-8b-instant, "
        "llama-3.3-70b-versatile, openai/gpt-oss-20b)")
    assert did_you_mean("mistral", models, "model") == (
        "unknown model 'mistral' (allowed: llama-3.1-8b-instant, llama-3.3-70b-versatile, openai/gpt-oss-20b)")
    assert did_you_mean("", ["a", "b"], "tier") == "unknown tier '' (allowed: a, b)"  # '' is in every name


def test_did_you_mean_names_at_most_three_that_contain_the_word():
    names = [f"llama-{k}-model-of-a-long-name" for k in range(5)]
    hint = re.search(r"did you mean (.*)\? allowed", did_you_mean("llama", names, "model")).group(1)
    assert hint == "'llama-0-model-of-a-long-name', 'llama-1-model-of-a-long-name', 'llama-2-model-of-a-long-name'"


def test_did_you_mean_reads_its_choices_once():
    """Any iterable of names: a generator's names are all listed."""
    assert did_you_mean("rmp", (u for u in ("rpm", "rpd", "tpm")), "limit unit") == (
        "unknown limit unit 'rmp' (did you mean 'rpm', 'rpd'? allowed: rpm, rpd, tpm)")


def test_a_name_that_is_no_string_is_an_unknown_name_not_a_crash():
    """A key of a dict given to the Python API may be an int: it was a TypeError from inside difflib
    ("'int' object is not iterable") instead of the one-line error naming it."""
    assert did_you_mean(2, ["name", "duration"], "key") == "unknown key 2 (allowed: name, duration)"
    assert did_you_mean(None, ["docs", "pricing"], "speeds") == "unknown speeds None (allowed: docs, pricing)"
    with pytest.raises(ConfigError, match=r"^<scenario>: scenario\[2\]: unknown key 2 \(allowed: name, "):
        sim.scenario_from_dict({"scenario": {2: "x"}})
    with pytest.raises(ConfigError, match=r"^<scenario>: \[1\]: unknown key 1 \(allowed: scenario, "):
        sim.scenario_from_dict({1: "x"})


def test_at_most_three_close_names_and_half_alike_is_close():
    assert did_you_mean("rpx", ["rpm", "rpd", "rps", "rph"], "unit") == (
        "unknown unit 'rpx' (did you mean 'rps', 'rpm', 'rph'? allowed: rpm, rpd, rps, rph)")
    # an SDK's name in a policy: max_attempts (ratio 0.61) and retry (0.50: half alike is close enough)
    with pytest.raises(ConfigError) as e:
        sim.scenario_from_dict({"clients": [{"name": "c", "model": "openai/gpt-oss-20b", "policy": "mine",
                                             "arrival": {"kind": "poisson", "rate": 1}}],
                                "policies": {"mine": {"retry": "exponential", "max_retries": 2}}})
    assert str(e.value).startswith("<scenario>: policies.mine.max_retries: unknown key 'max_retries' (did you "
                                   "mean 'max_attempts', 'retry'? allowed: retry, max_attempts, delay, ")


def test_writing_returns_the_files_or_one_line_naming_the_file():
    """An OSError while writing is one line naming the file (a rename's target, else the file, else the
    writer), with the system's reason; the files written otherwise come back as the writer returned them."""
    def writes(*paths):
        return list(paths)

    def fails(exc):
        def write_plots(*args):
            raise exc
        return write_plots

    assert writing(writes, "a.csv", "b.png") == (["a.csv", "b.png"], None)
    assert writing(writes) == ([], None)
    rename = OSError(21, "Is a directory", "out/x.partial", None, "out/x.parquet")
    assert writing(fails(rename), "out") == ([], "out/x.parquet: cannot write (Is a directory)")
    assert writing(fails(PermissionError(13, "Permission denied", "out/a.csv")), 1) == (
        [], "out/a.csv: cannot write (Permission denied)")
    assert writing(fails(OSError("disk on fire")), 1) == ([], "write_plots: cannot write (disk on fire)")
    with pytest.raises(ValueError):  # not a write error: not caught
        writing(fails(ValueError("a bug")))


def test_write_problems_names_the_first_and_counts_the_others():
    one = "out/summary.csv: cannot write (Is a directory)"
    assert write_problems([one]) == f"{one}; the other outputs were written"
    assert write_problems([one, "b: cannot write (x)"]) == (f"{one} (and 1 other file(s)); the other outputs were "
                                                             "written")
    assert write_problems([one, "b", "c"]) == f"{one} (and 2 other file(s)); the other outputs were written"


# ---- warn_once: the filters decide, as they do for warnings.warn ------------------------------------------

def test_said_once_per_process_at_the_first_callers_line():
    note = _note()
    with warnings.catch_warnings(record=True) as got:
        warnings.resetwarnings()
        warnings.simplefilter("default")
        first = _line() + 1
        warn_once(note, InputWarning)
        warn_once(note, InputWarning)  # another line: Python's "default" would say it again here
        for _ in range(3):
            warn_once(note, InputWarning)
    assert [(str(w.message), w.category, w.filename, w.lineno) for w in got] == [
        (note, InputWarning, __file__, first)]


def test_the_same_text_of_another_category_is_another_note():
    note = _note()
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("default")
        warn_once(note, InputWarning)
        warn_once(note, ShutDownModelWarning)
        warn_once(note, ShutDownModelWarning)
    assert [w.category for w in got] == [InputWarning, ShutDownModelWarning]


def test_always_says_it_every_time_and_error_raises_it_every_time():
    note = _note()
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        for _ in range(3):
            warn_once(note, InputWarning)
    assert len(got) == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(2):  # said already: still raised, as `python -W error` asks
            with pytest.raises(InputWarning, match=re.escape(note)):
                warn_once(note, InputWarning)


def test_an_ignored_note_is_not_counted_as_said():
    note = _note()
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("ignore")
        warn_once(note, InputWarning)
        warnings.simplefilter("default")
        warn_once(note, InputWarning)
        warn_once(note, InputWarning)
    assert [str(w.message) for w in got] == [note]
    # ignored by a filter naming its text or its caller's module (patterns, as -W and filterwarnings make them)
    for field in ("message", "module"):
        note = _note()
        pattern = re.escape(note if field == "message" else __name__)
        with warnings.catch_warnings(record=True) as got:
            warnings.filterwarnings("ignore", category=InputWarning, **{field: pattern})
            warn_once(note, InputWarning)
        assert got == []
        with warnings.catch_warnings(record=True) as got:
            warnings.simplefilter("default")
            warn_once(note, InputWarning)
        assert [str(w.message) for w in got] == [note], field


def _said(note: str, *filters: dict, line: int | None = None) -> int:
    """How many of three calls of ``warn_once`` and of ``warnings.warn`` show ``note`` under "always" with
    ``filters`` put in front (the later ones first, as ``filterwarnings`` inserts them); both must agree."""
    counts = []
    for say in (lambda: warn_once(note, InputWarning), lambda: warnings.warn(note, InputWarning, stacklevel=1)):
        with warnings.catch_warnings(record=True) as got:
            warnings.simplefilter("always")
            for f in filters:
                warnings.filterwarnings(**f)
            for _ in range(3):
                say()
        counts.append(len(got))
    assert counts[0] == counts[1], counts
    return counts[0]


def test_the_first_filter_that_matches_decides():
    note = _note()
    assert _said(note) == 3
    # filters that do not match this note stay out of the way, wherever they are
    assert _said(note, {"action": "ignore", "category": DeprecationWarning}) == 3
    assert _said(note, {"action": "ignore", "message": "something else"}) == 3
    assert _said(note, {"action": "ignore", "module": "some_other_module"}) == 3
    assert _said(note, {"action": "ignore", "category": ShutDownModelWarning}) == 3
    # one that matches it decides
    assert _said(note, {"action": "ignore", "message": "a note nobody"}) == 0
    assert _said(note, {"action": "ignore", "category": UserWarning}) == 0
    assert _said(note, {"action": "ignore", "module": re.escape(__name__)}) == 0
    assert _said(note, {"action": "ignore", "category": InputWarning},
                 {"action": "always", "category": InputWarning}) == 3  # the later filter is in front


def test_a_plain_string_filter_as_pythons_own_defaults_matches_only_itself():
    """Python's default filters hold plain strings (``('default', None, DeprecationWarning, '__main__', 0)``),
    which CPython's ``_warnings`` compares exactly; ``warn_once`` decides as ``warnings.warn`` does."""
    note = _note()
    for module, message, said in ((__name__, None, 0), (__name__[:-1], None, 3), (None, note, 0),
                                  (None, note[:-1], 3)):
        counts = []
        for say in (lambda: warn_once(note, InputWarning), lambda: warnings.warn(note, InputWarning, stacklevel=1)):
            with warnings.catch_warnings(record=True) as got:
                warnings.simplefilter("always")
                warnings.filters.insert(0, ("ignore", message, InputWarning, module, 0))
                for _ in range(3):
                    say()
            counts.append(len(got))
        assert counts == [said, said], (module, message, counts)


def test_a_filter_on_a_line_applies_to_that_line_only():
    """``-W ignore::...:LINE``: the line is the caller's (here, the line of the call in ``_said``)."""
    note = _note()
    src, start = inspect.getsourcelines(_said)
    line = start + next(k for k, text in enumerate(src) if "lambda: warn_once(" in text)
    wline = start + next(k for k, text in enumerate(src) if "lambda: warnings.warn(" in text)
    assert line == wline  # (both calls on one line, so one filter covers both)
    assert _said(note, {"action": "ignore", "category": InputWarning, "lineno": line}) == 0
    assert _said(note, {"action": "ignore", "category": InputWarning, "lineno": line + 1}) == 3


def test_with_no_filter_matching_the_default_action_decides(monkeypatch):
    note = _note()
    with warnings.catch_warnings(record=True) as got:
        warnings.resetwarnings()  # no filter at all
        monkeypatch.setattr(warnings, "defaultaction", "always")
        warn_once(note, InputWarning)
        warn_once(note, InputWarning)
        monkeypatch.setattr(warnings, "defaultaction", "ignore")
        warn_once(note, InputWarning)
    assert len(got) == 2


# ---- the caller's line, through the package ------------------------------------------------------------------

LOOPED = {"scenario": {"duration": "1m"}, "org": {"tier": "developer"},
          "clients": [{"name": "c", "model": "llama-3.1-8b-instant", "arrival": {"kind": "constant", "rate": "10/min"},
                       "prompt_tokens": 100, "completion_tokens": 50, "max_tokens": 100, "policy": "paced",
                       "lane": "batch"}]}


def test_a_scenarios_notes_point_at_the_line_that_loaded_it():
    """However deep in the package the note is made, it is attributed to the user's line, so a filter on the
    user's module or line applies to it."""
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        line = _line() + 1
        sim.scenario_from_dict(LOOPED)
    assert sorted((w.category.__name__, w.filename, w.lineno) for w in got) == [
        ("InertSettingWarning", __file__, line), ("ShutDownModelWarning", __file__, line)]
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=InputWarning, module=re.escape(__name__), lineno=_line() + 1)
        sim.scenario_from_dict(LOOPED)
        sim.scenario_from_dict(LOOPED)
    assert len(got) == 2
