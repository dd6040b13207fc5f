"""The emulator's structured answers (sim/emulator/shapes.py), driven by the real openai and groq SDKs: a
``response_format`` JSON object or schema that the openai SDK's ``.parse`` validates into the caller's pydantic
model, tool calls a client can run (streamed too), tool definitions counted in the prompt, and bad tools
refused as the API refuses them."""
from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import signal
import subprocess
import sys
from typing import Annotated, Literal, Optional

import groq
import httpx
import openai
import pytest
from pydantic import BaseModel, ByteSize, Field, StringConstraints

from sim.emulator import Emulator
from sim.emulator.shapes import cut_short, instance, least_tokens, shape_error
from tests.helpers import running
from tests.test_emulator import MODEL, make_spec, msgs

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
    "required": ["city", "days"]}}}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {
    "type": "object", "properties": {"zone": {"type": "string", "enum": ["UTC", "CET"]}}, "required": ["zone"]}}}


class Inner(BaseModel):
    count: int
    tags: list[str]


class Answer(BaseModel):
    answer: str
    score: float
    ok: bool
    kind: Literal["short", "long"]
    inner: Inner
    note: Optional[str] = None
    when: str


@pytest.fixture
def url(tmp_path):
    emu = Emulator(make_spec(), time_scale=10, log_path=tmp_path / "log.jsonl", parquet_path=tmp_path / "r.parquet")
    with running(emu) as base:
        yield base + "/openai/v1"


def test_the_openai_sdks_parse_validates_a_json_schema_answer_into_the_callers_model(url):
    client = openai.OpenAI(base_url=url, api_key="k", max_retries=0)
    r = client.chat.completions.parse(model=MODEL, messages=msgs(), response_format=Answer, max_tokens=18)
    parsed = r.choices[0].message.parsed
    assert isinstance(parsed, Answer) and parsed.answer.strip() and parsed.inner.tags[0].strip()
    assert parsed.kind == "short" and r.choices[0].finish_reason == "stop"  # (a whole value, even at max_tokens)
    # usage: the service model's sampled length, but no fewer than the value's 17 tokens (7 keys, the SDK's
    # strict schema requiring note too, 6 values, and inner's 2 keys, count and one tag), and no more than the cap
    assert 17 <= r.usage.completion_tokens <= 18


def test_a_json_object_answer_is_a_json_object_streamed_or_not(url):
    client = groq.Groq(base_url=url.removesuffix("/openai/v1"), api_key="k", max_retries=0)
    r = client.chat.completions.create(model=MODEL, messages=msgs(), response_format={"type": "json_object"})
    assert isinstance(json.loads(r.choices[0].message.content), dict)
    chunks = list(client.chat.completions.create(model=MODEL, messages=msgs(), stream=True,
                                                 response_format={"type": "json_object"}))
    assert isinstance(json.loads("".join(c.choices[0].delta.content or "" for c in chunks)), dict)


def test_a_required_or_named_tool_is_called_with_arguments_its_schema_takes(url):
    client = openai.OpenAI(base_url=url, api_key="k", max_retries=0)
    r = client.chat.completions.create(model=MODEL, messages=msgs(), tools=[WEATHER, TIME], tool_choice="required")
    call, = r.choices[0].message.tool_calls
    assert r.choices[0].finish_reason == "tool_calls" and r.choices[0].message.content is None
    assert call.function.name == "get_weather" and call.id.startswith("call_")
    args = json.loads(call.function.arguments)
    assert set(args) == {"city", "days"} and args["city"].strip() and args["days"] == 1
    r = client.chat.completions.create(model=MODEL, messages=msgs(), tools=[WEATHER, TIME],
                                       tool_choice={"type": "function", "function": {"name": "get_time"}})
    assert json.loads(r.choices[0].message.tool_calls[0].function.arguments) == {"zone": "UTC"}
    auto = client.chat.completions.create(model=MODEL, messages=msgs(), tools=[WEATHER])  # (the model's choice)
    assert auto.choices[0].message.tool_calls is None and auto.choices[0].message.content


def test_a_streamed_tool_call_comes_as_openais_deltas(url):
    client = openai.OpenAI(base_url=url, api_key="k", max_retries=0)
    chunks = list(client.chat.completions.create(model=MODEL, messages=msgs(), tools=[WEATHER],
                                                 tool_choice="required", stream=True))
    deltas = [c.choices[0].delta.tool_calls[0] for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    assert deltas[0].id.startswith("call_") and deltas[0].function.name == "get_weather"
    arguments = "".join(d.function.arguments or "" for d in deltas)
    assert set(json.loads(arguments)) == {"city", "days"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_tool_definitions_count_in_the_prompt(url):
    client = openai.OpenAI(base_url=url, api_key="k", max_retries=0)
    plain = client.chat.completions.create(model=MODEL, messages=msgs()).usage.prompt_tokens
    tooled = client.chat.completions.create(model=MODEL, messages=msgs(), tools=[WEATHER, TIME]).usage.prompt_tokens
    assert tooled - plain == -(-len(json.dumps([WEATHER, TIME])) // 4)


@pytest.mark.parametrize("extra, param", [
    ({"tools": [{"type": "function", "function": {"description": "no name"}}]}, "tools"),
    ({"tools": "get_weather"}, "tools"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tools": [WEATHER], "tool_choice": "always"}, "tool_choice"),
    ({"response_format": {"type": "yaml"}}, "response_format"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, "response_format"),
    ({"response_format": {"type": "json_schema", "json_schema": "x"}}, "response_format"),
    # schemas with a keyword of the wrong type: refused before the limits take them (they failed the answer with
    # a 500 after the charge, which the SDKs retried and paid for again)
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {
        "type": "array", "minItems": "2"}}}}, "response_format"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {
        "type": "object", "properties": [1]}}}}, "response_format"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {
        "type": "object", "properties": {"a": {"type": "string", "maxLength": "3"}}}}}}, "response_format"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "required": 5}}}],
      "tool_choice": "required"}, "tools"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": "x"}}]}, "tools"),
])
def test_bad_tools_and_formats_are_400s_naming_the_parameter(url, extra, param):
    client = openai.OpenAI(base_url=url, api_key="k", max_retries=2)  # (a 400 is not retried; a 500 would be)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODEL, messages=msgs(), **extra)
    assert caught.value.body["param"] == param and caught.value.body["type"] == "invalid_request_error"
    h = caught.value.response.headers  # charged nothing: every request of the limit is left
    assert h["x-ratelimit-remaining-requests"] == h["x-ratelimit-limit-requests"]


def test_a_schema_instance_follows_refs_unions_formats_and_shares_the_words():
    schema = {"$defs": {"Node": {"type": "object", "properties": {"name": {"type": "string"},
                                                                  "child": {"anyOf": [{"$ref": "#/$defs/Node"},
                                                                                      {"type": "null"}]}},
                                 "required": ["name", "child"]}},
              "type": "object", "properties": {"root": {"$ref": "#/$defs/Node"},
                                               "at": {"type": "string", "format": "date-time"},
                                               "n": {"type": ["null", "number"], "minimum": 2.5},
                                               "pair": {"type": "array", "items": {"type": "string"}, "minItems": 2},
                                               "fixed": {"const": 7}}}
    value = instance(schema, 12)
    assert value["root"]["child"] is None  # (a recursive type stops where it would loop: null, which it allows)
    assert value["at"] == "2026-01-01T00:00:00Z" and value["n"] == 2.5 and value["fixed"] == 7
    words = [value["root"]["name"], *value["pair"]]
    assert [len(w.split()) for w in words] == [4, 4, 4]  # 12 words shared by the 3 free strings


@pytest.mark.parametrize("schema, tokens, value", [
    ({"type": "boolean"}, 3, False),
    ({"type": "null"}, 3, None),
    ({"type": "integer"}, 3, 0),
    ({"type": "integer", "minimum": 2.2}, 3, 3),
    ({"type": "number"}, 3, 0.0),
    ({"type": "number", "minimum": 1.5}, 3, 1.5),
    ({"type": "array", "items": {"type": "integer"}, "minItems": 0}, 3, [0]),  # (one item to show, at least)
    ({"type": "array", "items": True}, 3, [None]),  # (a boolean schema: anything)
    ({"properties": {"a": {"type": "integer"}}}, 3, {"a": 0}),  # (properties without a type: an object)
    ({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "boolean"}}}, 3,
     {"a": 0, "b": False}),  # (no required list: every property)
    ({"anyOf": [{"type": "null"}, {"type": "integer"}]}, 3, 0),  # (the first option that is not null)
    ({"oneOf": [{"type": "null"}]}, 3, None),  # (null when it is all there is)
    ({"allOf": [{"type": "integer", "minimum": 4}]}, 3, 4),
    ({"type": ["null", "boolean"]}, 3, False),
    ({"type": "string", "format": "email"}, 3, "user@example.com"),
    ({"type": "string", "format": "duration"}, 3, "PT0S"),  # (pydantic's timedelta)
    ({"type": "string", "format": "ipv4"}, 3, "192.0.2.1"),
    ({"type": "string", "format": "ipv6"}, 3, "2001:db8::1"),
    ({"type": "string", "format": "ipv4network"}, 3, "192.0.2.0/24"),  # (pydantic's own formats)
    # a union's first option that is neither null nor a string with a pattern (a pattern may not be written)
    ({"anyOf": [{"type": "string", "pattern": "^x$"}, {"type": "integer", "minimum": 2}]}, 3, 2),
    ({"anyOf": [{"type": "null"}, {"type": "string", "pattern": "^x$"}]}, 3, "x"),  # (all: first)
    ({"type": "string", "pattern": "^(?=y)y$"}, 3, "The quick brown"),  # (a lookahead: not written, filler)
    ({"type": "string", "pattern": "^a?$"}, 3, ""),  # (no minLength: the empty match is the simplest)
    ({"type": "string", "pattern": "^[A-Z]{2}-\\d+$", "minLength": 5}, 3, "AA-00"),
    ({"type": "string", "format": "email", "pattern": "@example\\.org$"}, 3, "@example.org"),  # (pattern first)
    # a recursive type stops where it would loop: no item in an array that may be empty, else null
    ({"$defs": {"N": {"type": "object", "properties": {"kids": {"type": "array", "items": {"$ref": "#/$defs/N"}}},
                      "required": ["kids"]}}, "$ref": "#/$defs/N"}, 3, {"kids": []}),
    ({"$defs": {"N": {"type": "object", "properties": {"kids": {"type": "array", "items": {"$ref": "#/$defs/N"},
                                                                "minItems": 1}}, "required": ["kids"]}},
      "$ref": "#/$defs/N"}, 3, {"kids": [None]}),
    ({"enum": ["b", "a"]}, 3, "b"),
    ({}, 2, "The quick"),  # (no type at all: a string)
    ({"type": "string", "minLength": 4}, 2, "The quick brown fox"),  # (at least the words it must hold)
    ({"type": "string", "minLength": 0}, 0, "The"),  # (a free string holds a word, at least)
    ({"$ref": "#/$defs/missing", "$defs": {}}, 1, "The"),  # (a reference to nothing: any value, a string)
    ({"$ref": "other.json#/Thing"}, 1, "The"),  # (a reference outside the schema: not followed)
    ({"$ref": "#/$defs/N/deeper", "$defs": {"N": 5}}, 1, "The"),  # (a path through a non-object)
    # bounds, as pydantic writes gt / ge / lt / le / multiple_of / max_length (and draft 4's flags)
    ({"type": "integer", "exclusiveMinimum": 0}, 3, 1),
    ({"type": "integer", "exclusiveMinimum": 2.5}, 3, 3),
    ({"type": "integer", "maximum": -3}, 3, -3),
    ({"type": "integer", "exclusiveMaximum": -3}, 3, -4),
    ({"type": "integer", "minimum": 7, "multipleOf": 5}, 3, 10),
    ({"type": "integer", "exclusiveMinimum": 10, "multipleOf": 5}, 3, 15),
    ({"type": "integer", "minimum": 0, "exclusiveMinimum": True}, 3, 1),
    ({"type": "integer", "minimum": -5, "maximum": 5}, 3, 0),  # (0 when the bounds allow it)
    ({"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}, 3, 0.5),
    ({"type": "number", "exclusiveMinimum": 0}, 3, 1.0),
    ({"type": "number", "exclusiveMaximum": 0}, 3, -1.0),
    ({"type": "number", "maximum": -0.5, "minimum": -2}, 3, -0.5),
    ({"type": "number", "exclusiveMaximum": -1, "minimum": -2}, 3, -1.5),
    ({"type": "number", "minimum": 0.3, "multipleOf": 0.25}, 3, 0.5),
    ({"type": "string", "maxLength": 9}, 5, "The quick"),  # (cut to the length it allows)
    ({"type": "string", "maxLength": 4}, 5, "The"),  # (not ending on a space)
    ({"type": "array", "items": {"type": "integer"}, "minItems": 0, "maxItems": 0}, 3, []),
    # uniqueItems: the k-th item is the item's k-th variant (the next number within the bounds, else below the
    # simplest; the next enum value or boolean; a string starting with k; an object's first property varied)
    ({"type": "array", "items": {"type": "integer"}, "uniqueItems": True, "minItems": 3}, 3, [0, 1, 2]),
    ({"type": "array", "items": {"type": "integer", "minimum": 5, "maximum": 6}, "uniqueItems": True,
      "minItems": 2}, 3, [5, 6]),
    ({"type": "array", "items": {"type": "integer", "maximum": -2}, "uniqueItems": True, "minItems": 2}, 3, [-2, -3]),
    ({"type": "array", "items": {"type": "integer", "minimum": 0, "exclusiveMaximum": 1}, "uniqueItems": True,
      "minItems": 2}, 3, [0, 0]),  # (no second value: the first again)
    ({"type": "array", "items": {"type": "number", "exclusiveMinimum": 0, "multipleOf": 0.5}, "uniqueItems": True,
      "minItems": 2}, 3, [1.0, 1.5]),
    ({"type": "array", "items": {"enum": ["a", "b"]}, "uniqueItems": True, "minItems": 3}, 3, ["a", "b", "a"]),
    ({"type": "array", "items": {"type": "boolean"}, "uniqueItems": True, "minItems": 3}, 3, [False, True, False]),
    ({"type": "array", "items": {"type": "integer", "maximum": -1, "multipleOf": 2}, "uniqueItems": True,
      "minItems": 2}, 3, [-2, -4]),
    ({"type": "array", "items": {"type": "integer", "minimum": -1, "maximum": 0}, "uniqueItems": True,
      "minItems": 2}, 3, [0, -1]),  # (the bounds themselves are within)
    # (draft 4's flags: the bound itself is out, or, with the flag false, in)
    ({"type": "array", "items": {"type": "integer", "minimum": -1, "exclusiveMinimum": False, "maximum": 0},
      "uniqueItems": True, "minItems": 2}, 3, [0, -1]),
    ({"type": "array", "items": {"type": "integer", "maximum": 1, "exclusiveMaximum": False, "minimum": 0},
      "uniqueItems": True, "minItems": 2}, 3, [0, 1]),
    ({"type": "array", "items": {"type": "integer", "minimum": 5, "exclusiveMinimum": True, "maximum": 6},
      "uniqueItems": True, "minItems": 2}, 3, [6, 6]),
    ({"type": "array", "items": {"type": "integer", "maximum": -5, "exclusiveMaximum": True, "minimum": -6},
      "uniqueItems": True, "minItems": 2}, 3, [-6, -6]),
    ({"type": "array", "items": {"type": "string", "maxLength": 3}, "uniqueItems": True, "minItems": 2}, 2,
     ["The", "1 T"]),
    ({"type": "array", "items": {"$ref": "#/$defs/P"}, "uniqueItems": True, "minItems": 2,
      "$defs": {"P": {"type": "object", "properties": {"n": {"type": "integer"}, "s": {"type": "string"}}}}}, 4,
     [{"n": 0, "s": "The quick"}, {"n": 1, "s": "The quick"}]),
    ({"type": "array", "items": {"type": "integer"}, "uniqueItems": False, "minItems": 2}, 3, [0, 0]),
    ({"type": "array", "items": {"type": "integer"}, "uniqueItems": True, "maxItems": 0}, 3, []),
    # tuples: prefixItems (2020-12), or items as a list with additionalItems (drafts 4 to 2019-09)
    ({"type": "array", "prefixItems": [{"type": "integer"}, {"type": "boolean"}], "minItems": 2, "maxItems": 2}, 3,
     [0, False]),
    ({"type": "array", "prefixItems": [{"type": "integer"}, {"type": "boolean"}]}, 3, [0, False]),  # (all shown)
    ({"type": "array", "prefixItems": [{"type": "integer"}, {"type": "boolean"}], "maxItems": 1}, 3, [0]),
    ({"type": "array", "prefixItems": [{"type": "integer"}], "items": {"type": "boolean"}, "minItems": 3}, 3,
     [0, False, False]),
    ({"type": "array", "prefixItems": [{"type": "integer"}], "items": False, "minItems": 3}, 3, [0]),  # (closed)
    ({"type": "array", "items": [{"type": "integer"}, {"type": "boolean"}], "additionalItems": False}, 3, [0, False]),
    ({"type": "array", "items": [{"type": "integer"}], "additionalItems": {"type": "null"}, "minItems": 2}, 3,
     [0, None]),
    ({"type": "integer", "exclusiveMinimum": 3}, 3, 4),  # (above a whole bound: the next whole number)
    ({"type": "integer", "minimum": 1, "exclusiveMinimum": False}, 3, 1),  # (draft 4's flag, off)
    ({"type": "integer", "maximum": -3, "exclusiveMaximum": True}, 3, -4),  # (draft 4's flag, on)
    ({"type": "integer", "maximum": -3, "exclusiveMaximum": False}, 3, -3),
    ({"type": "number", "maximum": -1, "exclusiveMaximum": -1}, 3, -2.0),  # (both: the stricter)
    ({"type": "number", "minimum": 1, "exclusiveMinimum": 1}, 3, 2.0),
    ({"type": "integer", "maximum": -7, "multipleOf": 5}, 3, -10),
    ({"type": "number", "maximum": -0.3, "multipleOf": 0.25}, 3, -0.5),
])
def test_the_simplest_instance_of_each_kind_of_schema(schema, tokens, value):
    got = instance(schema, tokens)
    # (an integer's 0, not 0.0, at any depth: JSON writes them apart)
    assert got == value and json.dumps(got) == json.dumps(value)


@pytest.mark.parametrize("body, param", [
    ({"tools": [5]}, "tools"),
    ({"tools": [{"type": "web_search"}]}, "tools"),  # (functions and Groq's two built-in tools)
    ({"tools": [{"type": "function", "function": {"name": ""}}]}, "tools"),
    ({"tools": [{"type": "function", "function": "get_weather"}]}, "tools"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": "get_weather"}}, "tool_choice"),
    ({"response_format": "json"}, "response_format"),
])
def test_shape_errors_name_the_parameter(body, param):
    err = shape_error(body)
    assert err.status == 400 and err.body["error"]["param"] == param


@pytest.mark.parametrize("schema, says", [
    ({"type": "array", "minItems": "2"}, "not a valid JSON schema: '2' is not of type 'integer' (at 'minItems')"),
    ({"properties": {"a": {"type": "integer", "minimum": "a"}}},
     "not a valid JSON schema: 'a' is not of type 'number' (at 'properties/a/minimum')"),
    ({"type": "strin"}, "not a valid JSON schema"),  # (not one of the seven types)
    ({"$schema": "http://json-schema.org/draft-04/schema#", "type": "integer", "exclusiveMinimum": 3},
     "not a valid JSON schema: 3 is not of type 'boolean' (at 'exclusiveMinimum')"),  # (draft 4's flag)
    ({"$schema": "http://json-schema.org/draft-04/schema#", "exclusiveMinimum": True},
     "not a valid JSON schema: 'minimum' is a dependency of 'exclusiveMinimum'\""),  # (at its root: no place)
    ({"type": "integer", "minimum": float("inf")},  # (Python's json reads Infinity): valid, yet no value has it
     "no value can be built of this schema (OverflowError: cannot convert float infinity to integer)"),
    ([], "a JSON schema object is required"),
    (None, "a JSON schema object is required"),
])
def test_a_schema_that_is_not_one_is_refused_saying_where(schema, says):
    err = shape_error({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}})
    assert err.status == 400 and (err.body["error"]["message"] + '"').startswith(
        f"'response_format.json_schema.schema' : {says}")  # (a closing quote marks where the message ends)


def test_a_schema_nested_past_the_writers_recursion_is_refused_and_a_verdict_is_kept_per_schema():
    deep = {}
    node = deep
    for _ in range(5000):  # (built in Python: json.loads would refuse it as unparsable JSON first)
        node["items"] = node = {}
    err = shape_error({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": deep}}})
    assert err.status == 400 and err.body["error"]["message"].endswith("not a valid JSON schema: nested too deep")
    from sim.emulator import shapes
    shapes._verdict.cache_clear()
    for _ in range(3):  # the same tools with every request: checked once
        assert shape_error({"tools": [WEATHER, TIME]}) is None
    assert shapes._verdict.cache_info().misses == 2 and shapes._verdict.cache_info().hits == 4


def test_well_formed_tools_and_formats_pass():
    for body in ({}, {"tools": [WEATHER, {"function": TIME["function"]}], "tool_choice": "auto"},
                 {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
                 {"response_format": {"type": "text"}}, {"tool_choice": "none"},
                 {"tools": [{"type": "browser_search"}, {"type": "code_interpreter"}, WEATHER]},
                 {"tools": [{"type": "function", "function": {"name": "f", "parameters": None}}]},
                 {"response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {
                     "$schema": "http://json-schema.org/draft-04/schema#", "type": "integer", "minimum": 0,
                     "exclusiveMinimum": True}}}},
                 {"response_format": {"type": "json_schema", "json_schema": {
                     "name": "b", "schema": Answer.model_json_schema()}}}):
        assert shape_error(body) is None, body


class Bounded(BaseModel):
    title: str = Field(max_length=40)
    n: int = Field(gt=0)
    score: float = Field(gt=0, lt=1)
    below: int = Field(lt=-2)
    step: int = Field(ge=7, multiple_of=5)
    few: list[int] = Field(max_length=0)
    pair: tuple[int, bool]  # (a tuple: prefixItems)
    ids: set[int] = Field(min_length=3)  # (uniqueItems)
    net: ipaddress.IPv4Network  # (a format of pydantic's own)
    size: ByteSize  # (a union of a string with a pattern and an integer)


def test_the_openai_sdks_parse_validates_a_schema_with_bounds(url):
    """pydantic's everyday limits (max_length, gt, lt, ge, multiple_of) are in the schema the SDK sends: the
    simplest instance must respect them, or ``.parse`` raises where Groq's answer would validate."""
    client = openai.OpenAI(base_url=url, api_key="k", max_retries=0)
    r = client.chat.completions.parse(model=MODEL, messages=msgs(), response_format=Bounded, max_tokens=64)
    parsed = r.choices[0].message.parsed
    assert isinstance(parsed, Bounded) and 0 < len(parsed.title) <= 40
    assert (parsed.n, parsed.score, parsed.below, parsed.step, parsed.few, parsed.pair, parsed.ids) == (
        1, 0.5, -3, 10, [], (0, False), {0, 1, 2})
    assert (parsed.net, parsed.size) == (ipaddress.IPv4Network("192.0.2.0/24"), 0)


class Patterned(BaseModel):
    phone: str = Field(pattern=r"^\+?[1-9]\d{1,14}$")
    code: str = Field(pattern=r"^[A-Z]{3}-\d{4}$")
    slug: str = Field(pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$", min_length=12)
    tags: set[Annotated[str, StringConstraints(pattern=r"^#[a-z]{2}$")]] = Field(min_length=3)
    colour: str = Field(pattern=r"^#[0-9a-fA-F]{6}$")


def test_the_openai_sdks_parse_validates_strings_with_patterns(url):
    """pydantic's ``Field(pattern=...)`` is validated by ``.parse`` with pydantic's own engine: the answer's
    strings follow their patterns (and lengths), and a set of them holds different strings, as Groq's would."""
    client = openai.OpenAI(base_url=url, api_key="k", max_retries=0)
    r = client.chat.completions.parse(model=MODEL, messages=msgs(), response_format=Patterned, max_tokens=64)
    parsed = r.choices[0].message.parsed
    assert (parsed.phone, parsed.code, parsed.slug, parsed.colour) == ("10", "AAA-0000", "aaaaaaaaaaaa", "#aaaaaa")
    assert parsed.tags == {"#aa", "#ba", "#ca"}


class Tree(BaseModel):
    name: str
    children: list["Tree"]
    after: datetime.timedelta


def test_the_openai_sdks_parse_validates_a_recursive_model_with_a_duration(url):
    """The SDK's strict schema requires every field, a recursive list too: the answer stops the recursion
    where the type comes round again with an empty list (not [null], which ``.parse`` refuses), and a
    timedelta is an ISO 8601 duration."""
    client = openai.OpenAI(base_url=url, api_key="k", max_retries=0)
    r = client.chat.completions.parse(model=MODEL, messages=msgs(), response_format=Tree, max_tokens=32)
    parsed = r.choices[0].message.parsed
    [child] = parsed.children  # (the root is the schema itself; the recursion stops at its first $ref)
    assert child.children == [] and child.after == parsed.after == datetime.timedelta(0)


def test_groqs_built_in_tools_are_answered_with_text(url):
    """browser_search and code_interpreter (the groq SDK's tool types besides function) run on Groq's side: the
    answer is the model's text, no tool call for the client to run, even with tool_choice required."""
    client = groq.Groq(base_url=url.removesuffix("/openai/v1"), api_key="k", max_retries=0)
    for tools in ([{"type": "browser_search"}], [{"type": "code_interpreter"}]):
        r = client.chat.completions.create(model=MODEL, messages=msgs(), tools=tools, tool_choice="required")
        assert r.choices[0].message.content.startswith("The quick") and r.choices[0].message.tool_calls is None
        assert r.choices[0].finish_reason == "stop"
    # beside a function, a required call is the function's
    r = client.chat.completions.create(model=MODEL, messages=msgs(), tools=[{"type": "browser_search"}, WEATHER],
                                       tool_choice="required")
    assert r.choices[0].message.tool_calls[0].function.name == "get_weather"


BIG = {"type": "object", "properties": {"rows": {"type": "array", "items": {"type": "integer"}, "minItems": 10**9},
                                        "note": {"type": "string", "minLength": 10**9}}}


@contextlib.contextmanager
def within(seconds: float):
    """Fail (not hang) if the block takes longer: a schema asking for a billion items must not be built."""
    def late(*_):
        raise TimeoutError(f"took more than {seconds} s")
    old = signal.signal(signal.SIGALRM, late)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _schema_body(schema: dict, **extra) -> dict:
    return {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}, **extra}


def test_the_least_an_answer_takes_is_counted_without_writing_it():
    """A billion items (or a string of a billion characters) is a valid schema: it is sized, not built."""
    with within(5):
        assert shape_error(_schema_body(BIG)) is None
        assert least_tokens(_schema_body(BIG)) == 2 + 10**9 + 10**9  # (two keys, the items, the words)
        err = cut_short(_schema_body(BIG), 50)
    assert least_tokens({}) == 0 and least_tokens({"response_format": {"type": "json_object"}}) == 0
    tool = {"type": "function", "function": {"name": "f", "parameters": BIG}}
    assert least_tokens({"tools": [tool], "tool_choice": "auto"}) == 0  # (the model may answer with text)
    assert least_tokens({"tools": [tool], "tool_choice": "required"}) == 2 + 2 * 10**9
    assert err.status == 400 and err.error["code"] == "json_validate_failed" and err.error["type"] == (
        "invalid_request_error")
    # what was written: the start of the value, cut to 50 tokens' characters
    assert err.error["failed_generation"] == ('{"rows": [' + "0, " * 200)[:200]
    first = {"type": "object", "properties": {"a": {"type": "string", "minLength": 0}, "b": BIG}}
    assert cut_short(_schema_body(first), 10).error["failed_generation"] == (
        '{"a": "The", "b": {"rows": [' + "0, " * 40)[:40]
    long_items = {"type": "array", "items": {"type": "string", "minLength": 100}, "minItems": 10**9}
    assert cut_short(_schema_body(long_items), 5).error["failed_generation"] == '["The quick brown fo'  # (one item)


@pytest.mark.parametrize("schema, least", [
    ({"type": "integer"}, 1),
    ({"type": "string", "minLength": 0}, 1),  # (a free string holds a word)
    ({"type": "string", "minLength": 0, "maxLength": 5}, 1),
    ({"const": [1, 2, 3]}, 3),
    ({"const": {"a": 1, "b": [2, 2]}}, 5),
    ({"type": "string", "minLength": 7}, 7),
    ({"type": "string", "minLength": 7, "maxLength": 3}, 3),  # (cut to what it allows)
    ({"type": "array", "items": {"type": "string", "minLength": 3}, "minItems": 4}, 12),
    ({"type": "array", "items": {"type": "object"}, "minItems": 5}, 5),  # (an empty object is a token too)
    ({"type": "array", "items": {"type": "integer"}, "maxItems": 0}, 1),  # ([] is one)
    ({"type": "array", "prefixItems": [{"type": "string", "minLength": 4}, {"type": "integer"}], "minItems": 4}, 7),
    ({"type": "object", "properties": {"a": {"type": "array", "items": {
        "type": "array", "items": {"type": "boolean"}, "minItems": 3}, "minItems": 2}}}, 7),
])
def test_the_least_tokens_of_a_value(schema, least):
    assert least_tokens(_schema_body(schema)) == least


@pytest.fixture
def emu_url(tmp_path):
    emu = Emulator(make_spec(), time_scale=10, log_path=tmp_path / "log.jsonl", parquet_path=tmp_path / "r.parquet")
    with running(emu) as base:
        yield emu, base + "/openai/v1"


def test_an_answer_the_cap_cuts_short_is_groqs_400_charged_with_the_rate_limit_headers(emu_url, tmp_path):
    """A value that needs more tokens than max_tokens allows: the model stops at the cap with the value
    unfinished and Groq's validation fails it, a 400 ``json_validate_failed`` (``tool_use_failed`` for a tool
    call) with ``failed_generation``, after the request was charged, so the rate-limit headers come with it.
    Streamed, the SDKs raise it from the stream's ``event: error``."""
    emu, url = emu_url
    client = openai.OpenAI(base_url=url, api_key="k", max_retries=0)
    with within(20):
        with pytest.raises(openai.BadRequestError) as cut:
            client.chat.completions.parse(model=MODEL, messages=msgs(), response_format=Answer, max_tokens=8)
    body, headers = cut.value.body, cut.value.response.headers
    assert body["code"] == "json_validate_failed" and body["message"].startswith("Failed to generate JSON.")
    assert body["failed_generation"].startswith('{"answer": "The') and len(body["failed_generation"]) == 8 * 4
    assert headers["x-ratelimit-remaining-requests"] == "14399"  # (the free tier's RPD, one taken)
    g = groq.Groq(base_url=url.removesuffix("/openai/v1"), api_key="k", max_retries=0)
    tool = {"type": "function", "function": {"name": "f", "parameters": BIG}}
    with within(20):
        with pytest.raises(groq.BadRequestError) as called:
            g.chat.completions.create(model=MODEL, messages=msgs(), tools=[tool], tool_choice="required", max_tokens=9)
        with pytest.raises(openai.APIError, match="Failed to generate JSON") as streamed:
            for _ in client.chat.completions.create(model=MODEL, messages=msgs(), max_tokens=5, stream=True,
                                                    **_schema_body(BIG)):
                pass
    assert called.value.body["error"]["code"] == "tool_use_failed"  # (the groq SDK keeps the whole body)
    assert len(called.value.body["error"]["failed_generation"]) == 9 * 4
    assert called.value.response.headers["x-ratelimit-remaining-requests"] == "14398"
    assert streamed.value.body["code"] == "json_validate_failed" and streamed.value.body["status_code"] == 400
    rec = emu.records()
    assert rec["status"].tolist() == [400, 400, 400] and set(rec["outcome"]) == {"bad_request"}
    assert rec["completion_tokens"].tolist() == [8, 9, 5]  # the model wrote to its cap
    assert (rec["charged_tokens"] == rec["prompt_tokens"] + rec["max_tokens"]).all()
    emu.flush()
    logged = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [x["error"]["code"] for x in logged] == ["json_validate_failed", "tool_use_failed",
                                                    "json_validate_failed"]
    assert all(x["headers"]["x-ratelimit-remaining-requests"] for x in logged)


def test_a_value_that_fits_is_answered_with_at_least_its_tokens(emu_url):
    """The sampled length is raised to what the value needs (the spec samples 5 to 32 tokens): ten items of
    three words each take 30 tokens, and the answer shows all ten."""
    emu, url = emu_url
    client = openai.OpenAI(base_url=url, api_key="k", max_retries=0)
    schema = {"type": "array", "items": {"type": "string", "minLength": 3}, "minItems": 10}
    for _ in range(3):
        r = client.chat.completions.create(model=MODEL, messages=msgs(), max_tokens=31, **_schema_body(schema))
        assert r.usage.completion_tokens in (30, 31) and len(json.loads(r.choices[0].message.content)) == 10


def test_warm_loads_the_schema_checker_which_a_plain_import_leaves_to_the_first_structured_request():
    code = ("import sys; from sim.emulator import shapes; before = 'jsonschema' in sys.modules; shapes.warm(); "
            "print(before, 'jsonschema' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out == "False True\n"


def test_the_recorder_logs_a_streamed_cut_short_answer_as_its_400(emu_url, tmp_path):
    """Recorded on the client, the stream's ``event: error`` is the line's error and status, as the emulator's
    own log has it, so a calibration of either log charges it alike."""
    from sim.recorder import Recorder, read_log
    emu, url = emu_url
    rec = Recorder(tmp_path / "client.jsonl")
    client = openai.OpenAI(base_url=url, api_key="k", max_retries=0, http_client=rec.attach(httpx.Client()))
    with pytest.raises(openai.APIError):
        for _ in client.chat.completions.create(model=MODEL, messages=msgs(), max_tokens=5, stream=True,
                                                **_schema_body(BIG)):
            pass
    client.close()
    [line] = read_log(tmp_path / "client.jsonl").records
    assert (line["status"], line["error"]["code"], line["usage"]) == (400, "json_validate_failed", None)
    assert line["headers"]["x-ratelimit-remaining-requests"] == "14399"
