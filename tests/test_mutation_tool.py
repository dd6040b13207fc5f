"""tools/mutation.py itself (cheap checks; mutation runs are not part of CI): mutants are generated with stable
keys, a warm run's code swap reaches every reference to the function, selection follows coverage."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
mutation = pytest.importorskip("mutation")
from mutation_select import Selection  # noqa: E402
from mutation_server import _swap  # noqa: E402


def _mutant(spec, change, source_part):
    return next(m for m in mutation.list_mutants([spec]) if m.change == change and source_part in m.source)


def test_a_known_mutant_is_generated_and_changes_behaviour():
    m = _mutant("sim/units.py::parse_count", "condition -> `False`", "if value != value.to_integral_value()")
    assert m.key == "sim/units.py | if value != value.to_integral_value(): | condition -> `False` | #0"
    assert m.func == "parse_count" and not m.header and m.lo == m.hi == m.line
    ns: dict = {}
    exec(compile(mutation.mutated_source(m.path, m.site), "units_mutant", "exec"), ns)
    assert ns["parse_count"]("1.5") == 1  # the original raises: "1.5" is not a whole number


def test_keys_do_not_depend_on_the_functions_chosen():
    whole = {m.key: m.site for m in mutation.list_mutants(["sim/units.py"])}
    some = mutation.list_mutants(["sim/units.py::parse_count,format_reset"])
    assert some and all(whole[m.key] == m.site for m in some)
    assert {m.func for m in some} == {"parse_count", "format_reset"}


def test_swap_reaches_references_taken_before(tmp_path, monkeypatch):
    (tmp_path / "swapme.py").write_text("class A:\n    def f(self):\n        return 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import swapme
    bound = swapme.A().f
    mutated = tmp_path / "mutated.py"
    mutated.write_text("class A:\n    def f(self):\n        return 0\n")
    assert _swap("swapme", "A.f", str(mutated)) and bound() == 0
    assert not _swap("swapme", "A.g", str(mutated))


def test_selection_runs_the_tests_that_execute_the_line_fastest_first_and_killers_first():
    m = _mutant("sim/units.py::parse_count", "condition -> `False`", "if value != value.to_integral_value()")
    cov = {"tests": {"t::slow": {"seconds": 2.0, "process": False}, "t::fast": {"seconds": 0.1, "process": False},
                     "t::proc": {"seconds": 0.1, "process": True}, "t::other": {"seconds": 0.1, "process": False}},
           "lines": {m.path: {str(m.line): ["t::slow", "t::fast", "t::proc"], "1": ["t::other"]}},
           "import_lines": {m.path: [1]}}
    sel = Selection(cov)
    assert sel.for_mutant(m) == (["t::fast", "t::slow"], "warm")
    sel.killed_by(m, "t::slow")
    assert sel.for_mutant(m)[0] == ["t::slow", "t::fast"]
    cov["lines"][m.path] = {}
    assert Selection(cov).for_mutant(m) == ([], "warm")  # no test executes it: "no coverage"


def test_a_class_attribute_read_through_getattr_selects_its_readers():
    """``Pacer.charges`` is read only as ``getattr(gate, "charges", False)``: the line that reads it counts as a
    reader, so the tests executing that line are the ones run against the attribute's mutants."""
    m = _mutant("sim/policies.py", "`True` -> `False`", "charges = True")
    sorts = next(n for n, line in enumerate((Path(mutation.ROOT) / "sim/policies.py").read_text().splitlines(), 1)
                 if 'getattr(gate, "charges", False)' in line)
    assert m.refs is not None and ("sim/policies.py", sorts) in m.refs


def test_names_bound_together_select_the_readers_of_each():
    """``_B1, _B2, _BT = 1, 6, 11``: a tuple of module constants; each mutant of the line runs against the lines
    that read any of the names (the selection once found none and reported "no coverage")."""
    m = _mutant("sim/kernel.py", "`6` -> `7`", "_B1, _B2, _BT = 1, 6, 11")
    text = (Path(mutation.ROOT) / "sim/kernel.py").read_text().splitlines()
    loads = {n for n, line in enumerate(text, 1) if "bk[_B1], bk[_B2], bk[_BT]" in line}
    assert m.refs is not None and loads and {("sim/kernel.py", n) for n in loads} <= set(m.refs)


def test_a_fields_constraint_selects_every_test_of_its_file():
    """``burstiness: Annotated[float, Field(ge=0.001, le=50)]``: pydantic checks it whenever an arrival is built,
    where no line reads ``burstiness``; its mutants run against every test that uses sim/arrivals.py (the
    selection once ran only the readers of the name, and a constraint tested by a validation test survived)."""
    m = _mutant("sim/arrivals.py", "`50` -> `51`", "burstiness: Annotated[float, Field(ge=0.001, le=50)]")
    assert m.field and m.refs is not None and not _mutant("sim/arrivals.py", "`0` -> `1`", "KINDS = {").field
    lines: dict = {m.path: {"26": ["t::builds"]}}  # (poisson_times: built and sampled, the name never read)
    for path, line in m.refs:
        lines.setdefault(path, {})[str(line)] = ["t::reads"]
    cov = {"tests": {"t::builds": {"seconds": 0.1, "process": False}, "t::reads": {"seconds": 0.1, "process": False}},
           "lines": lines, "import_lines": {m.path: [m.line]}}
    assert set(Selection(cov).for_mutant(m)[0]) == {"t::builds", "t::reads"}
