"""The simplest string a schema's ``pattern`` matches (sim/emulator/patterns.py), checked against other
readers of the same patterns: Python's ``re`` (JSON Schema's unanchored search), ``jsonschema``'s validator
and pydantic's (its own regular-expression engine, the one a client's ``Field(pattern=...)`` runs)."""
from __future__ import annotations

import re
import signal
from typing import Annotated

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import StringConstraints, TypeAdapter

from sim.emulator.patterns import LONGEST, simplest
from sim.emulator.shapes import instance

#: patterns as people write them in pydantic models and JSON schemas (phone numbers, codes, slugs, versions)
EVERYDAY = [r"^\d{3}-\d{4}$", r"^[A-Z]{2}[0-9]+$", r"[a-z]+@[a-z]+\.com", r"^(foo|bar)baz?$", r"^\w+$",
            r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$", r"^\+?[1-9]\d{1,14}$", r"^#[0-9a-fA-F]{6}$", r"^(\d+)\.(\d+)\.(\d+)$",
            r"^[a-z0-9]+(?:-[a-z0-9]+)*$", r"^[A-Z]{3}$", r"^\S+$", r"^[^\W\d_]+$", r"^sk-[A-Za-z0-9]{20,}$",
            r"^(GET|POST|PUT|DELETE)$", r"^\d{4}-\d{2}-\d{2}$", r"^[à-ÿ]+$", r"^ab?c*d+$", r"^.{3,5}$",
            r"^[1-9][0-9]*(\.[0-9]+)?$", r"^(?:[01]\d|2[0-3]):[0-5]\d$", r"^\$?\d+(,\d{3})*$"]


def _pydantic_takes(pattern: str, text: str, least: int = 0, most: int | None = None) -> bool:
    adapter = TypeAdapter(Annotated[str, StringConstraints(pattern=pattern, min_length=least, max_length=most)])
    try:
        adapter.validate_python(text)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("pattern", EVERYDAY)
def test_an_everyday_pattern_is_matched_and_its_variants_differ(pattern):
    """Each of the first variants matches (re, jsonschema, pydantic); the variants of a pattern with a choice
    differ from one another, as a ``uniqueItems`` array of them needs."""
    values = [simplest(pattern, k) for k in range(4)]
    for text in values:
        assert text is not None and re.search(pattern, text), (pattern, text)
        jsonschema.validate(text, {"type": "string", "pattern": pattern})
        assert _pydantic_takes(pattern, text), (pattern, text)
    assert len(set(values)) == 4, values  # (past the choices, more repetitions: "ad", "abd", "accd", "acccd")
    assert values[0] == simplest(pattern), "the 0th variant is the simplest"


@pytest.mark.parametrize("pattern, least, most, expected", [
    (r"^\d{3}-\d{4}$", 0, None, "000-0000"),
    (r"^[A-Z]{2}[0-9]+$", 0, None, "AA0"),
    (r"^[A-Z]{2}[0-9]+$", 6, None, "AA0000"),  # (a minLength reached by repeating the open repetition)
    (r"^\+?[1-9]\d{1,14}$", 12, None, "100000000000"),  # (the first repetition with room: \d, not \+?)
    (r"^\w+$", 0, 3, "a"),
    (r"^(foo|bar)baz?$", 0, None, "fooba"),  # (the first branch; an optional letter left out)
    (r"\bcat\b", 0, None, "cat"),  # (a word boundary is no text)
    (r"(ab)\1", 0, None, None),  # (a back-reference: pydantic's engine refuses it)
    (r"^\d{3}$", 4, None, None),  # (no length allowed: none)
    (r"^\d{3,}$", 0, 2, None),
    (r"^a$b", 0, None, None),  # (matches nothing)
    (r"^(?=.*\d)[a-z\d]{8,}$", 0, None, None),  # (a lookahead: not written)
    (r"\p{L}+", 0, None, None),  # (ECMA-262's property escape: not Python's)
    (r"(", 0, None, None),  # (not an expression)
])
def test_the_simplest_match_its_lengths_and_what_is_not_written(pattern, least, most, expected):
    assert simplest(pattern, 0, least, most) == expected


@pytest.mark.parametrize("pattern, ks, expected", [
    (r"^[b-d]$", range(4), ["b", "c", "d", "b"]),  # (a class's members in turn, its last one included)
    (r"^[α-γ]$", range(4), ["α", "β", "γ", "α"]),  # (a range outside the alphabet: its own characters)
    (r"^\w$", [61, 62], ["9", "_"]),  # (\w: letters, digits, then the underscore)
    (r"^[^a]$", [0], ["b"]), (r"[^\s\S]", [0], [None]),  # (a class with no member: none)
    (r"^[ab]*$", range(4), ["", "b", "ab", "bba"]),  # (past the choices, more copies, themselves varied)
    (r"^a?$", [0], [""]),
    (r"^a*$", [20_000], [""]),  # (k past the choices asks more copies than LONGEST: the simplest instead)
    (r"^(?<year>\d{4})-(?<month>\d{2})$", [0, 1], ["0000-00", "1000-00"]),  # (ECMA-262's named groups)
    (r"^(?>ab)c$", [0], [None]), (r"^a\Z$", [0], [None]),  # (pydantic's engine refuses them: not written)
])
def test_the_variants_of_a_pattern(pattern, ks, expected):
    assert [simplest(pattern, k) for k in ks] == expected


@pytest.mark.parametrize("pattern, least, most, expected", [
    (r"(a?)*", 3, None, "aaa"),  # (one repetition's copies are empty: every repetition repeated)
    (r"^(ab)+$", 10, None, "ababababab"),  # (a copy of two characters: four more)
    (r"^(ab?)*c$", 3, None, "abc"),  # (the repetition inside the copy takes the extra one)
    (r"^a{1,2}b*$", 4, None, "abbb"),  # (the first repetition with room for all three)
    (r"^a+b+$", 5, None, "aaaab"),
    (r"^a?b?c?$", 2, None, "abc"),  # (no repetition with room for two: every one, once)
    (r"^(ab?)*d*$", 2, None, "ab"),  # (the copy that took the extra one inside it is kept)
    (r"^\w+$", 0, 1, "a"), (r"^\w+$", 2, 2, "aa"),  # (exactly as long as allowed)
])
def test_a_min_length_is_reached_by_more_repetitions(pattern, least, most, expected):
    assert simplest(pattern, 0, least, most) == expected


def test_a_match_too_long_to_write_is_refused_at_once_and_a_check_cannot_backtrack_for_ever():
    """``a{100000}``, a repetition of a repetition, or a minLength of a billion: None, not a string built for
    seconds (the caller writes filler, sized without being written).  ``^(a+)+\\bb$`` written 30 long is 29
    a's and a b, with no word boundary before the b: a backtracking engine (Python's ``re``) tries 2^29 ways to
    split the a's before it says no, pydantic's engine says it at once."""
    def alarm(*_):
        raise TimeoutError("simplest() took more than 5 s")
    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(5)
    try:
        assert simplest(r"a{100000}") is None
        assert simplest(r"(a{1000}){1000}") is None
        assert simplest(r"((a{1000}){1000}){1000}") is None
        assert simplest(r"^a+$", least=10**9) is None
        assert simplest(r"^a+$", least=LONGEST) == "a" * LONGEST
        assert simplest(r"^(a+)+\bb$") is None and simplest(r"^(a+)+\bb$", least=30) is None
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_a_schemas_patterned_strings_are_followed_unique_items_differ_and_an_unwritable_one_is_filler():
    schema = {"type": "object", "required": ["code", "ids", "free", "odd"], "properties": {
        "code": {"type": "string", "pattern": "^[A-Z]{3}-\\d{2,}$", "minLength": 8},
        "ids": {"type": "array", "items": {"type": "string", "pattern": "^[a-f0-9]{4}$"}, "uniqueItems": True,
                "minItems": 3},
        "free": {"type": "string"},
        "odd": {"type": "string", "pattern": "^(?=x)x"}}}
    value = instance(schema, 4)
    assert value["code"] == "AAA-0000" and value["ids"] == ["aaaa", "baaa", "caaa"]
    assert value["free"].startswith("The") and value["odd"].startswith("The")  # (filler where none is written)
    jsonschema.validate({**value, "odd": "x"}, schema)  # (the rest of it validates)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(value, schema)


# a small grammar of regular expressions without lookarounds: every one can be written
_ATOMS = st.sampled_from(["a", "b", "7", r"\.", "-", "[a-z]", "[^x]", "[0-9A-F]", r"\d", r"\w", r"\s", r"\S", ".",
                          "[à-ÿ]", r"\$"])
_QUANTIFIERS = st.sampled_from(["", "?", "*", "+", "{2}", "{1,3}", "{2,}", "*?", "+?"])


def _expressions():
    def extend(inner):
        return st.one_of(
            st.lists(inner, min_size=1, max_size=4).map("".join),
            st.tuples(inner, inner).map(lambda ab: f"(?:{ab[0]}|{ab[1]})"),
            st.tuples(inner, _QUANTIFIERS).map(lambda iq: f"({iq[0]}){iq[1]}"))
    pieces = st.tuples(_ATOMS, _QUANTIFIERS).map("".join)
    return st.recursive(pieces, extend, max_leaves=8)


@settings(max_examples=150, deadline=None)
@given(body=_expressions(), anchored=st.booleans(), k=st.integers(0, 50), least=st.integers(0, 40))
def test_any_expression_of_the_grammar_is_written_as_a_match(body, anchored, k, least):
    """Every variant of every expression of the grammar is written, matches (re and pydantic), and a minLength
    is reached where the expression ends in an open repetition; whatever is written is within the lengths."""
    pattern = f"^{body}$" if anchored else body
    text = simplest(pattern, k)
    assert text is not None and re.search(pattern, text), (pattern, text)
    assert _pydantic_takes(pattern, text), (pattern, text)
    longer = simplest(pattern, k, least)
    if longer is not None:
        assert len(longer) >= least and re.search(pattern, longer)
    if len(text) >= least:
        assert longer == text  # (long enough already: the same string)
    if body.endswith(("+", "*", "{2,}")) and not body.endswith(("*?", "+?")) and "|" not in body:
        assert longer is not None  # (a final open repetition, always written: it can be repeated to any length)
