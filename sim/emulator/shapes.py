"""The shape of a chat answer the request asks for: plain text, a JSON object (``response_format`` of type
``json_object``), an instance of a JSON schema (``json_schema``), or a call of one of the request's ``tools``
(``tool_choice`` ``"required"`` or naming a function).  Groq's built-in tools (``browser_search``,
``code_interpreter``: run by Groq, not by the client) are accepted and answered with text, as a model that used
them answers (the ``executed_tools`` Groq lists beside it are not emulated).

The emulator has no model: it answers with filler words (:func:`~sim.emulator.core.filler`), and for a
structured request with the simplest value its schema allows, strings holding the filler.  That is enough for
a client that parses what it asked for (the openai SDK's ``.parse``, a structured-output library, an agent
loop that runs a tool and asks again) to go on as it would against Groq, so its traffic is what is measured.
``usage`` still comes from the service model (the sampled completion length), raised to the fewest tokens the
value can be written in; a value that needs more than the request's cap is Groq's 400 (:func:`cut_short`).  A
request that leaves the choice to the model (``tool_choice`` ``"auto"`` or absent) gets text.
"""
from __future__ import annotations

import functools
import json
import math

from ..headers import ErrorResponse, invalid_request_error
from .core import CHARS_PER_TOKEN, filler
from .patterns import simplest

#: formats a string may declare, with a value of that format
_FORMATS = {"date-time": "2026-01-01T00:00:00Z", "date": "2026-01-01", "time": "00:00:00Z", "duration": "PT0S",
            "email": "user@example.com", "idn-email": "user@example.com", "hostname": "example.com",
            "idn-hostname": "example.com", "ipv4": "192.0.2.1", "ipv6": "2001:db8::1", "uri": "https://example.com",
            "uri-reference": "https://example.com", "iri": "https://example.com", "iri-reference": "https://example.com",
            "uri-template": "https://example.com", "json-pointer": "/a", "relative-json-pointer": "0", "regex": ".*",
            "uuid": "00000000-0000-4000-8000-000000000000",
            # pydantic's own (its ipaddress types)
            "ipvanyaddress": "192.0.2.1", "ipv4network": "192.0.2.0/24", "ipv6network": "2001:db8::/32",
            "ipvanynetwork": "192.0.2.0/24", "ipv4interface": "192.0.2.1/24", "ipv6interface": "2001:db8::1/32",
            "ipvanyinterface": "192.0.2.1/24"}


class _Cut:
    """Where a recursive type would loop, in the value being built: written as null, or as no item in an
    array that may be empty."""


_CUT = _Cut()


def shape_error(body: dict):
    """Why ``tools``, ``tool_choice`` or ``response_format`` cannot be served (an ErrorResponse; None: fine):
    tools a list of functions with names, a choice naming one of them, a format of a known type."""
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list) or not all(_function(t) is not None or _builtin(t) for t in tools):
            return invalid_request_error("'tools' : each tool is an object {\"type\": \"function\", \"function\": "
                                         "{\"name\": ...}} or a built-in tool {\"type\": \"browser_search\"} or "
                                         "{\"type\": \"code_interpreter\"}", param="tools")
    choice = body.get("tool_choice")
    names = [f["name"] for f in _functions(tools or [])]
    if isinstance(choice, dict):
        fn = choice.get("function")
        if not isinstance(fn, dict) or fn.get("name") not in names:
            return invalid_request_error(f"'tool_choice' : names no function of 'tools' ({', '.join(names) or 'none'})",
                                         param="tool_choice")
    elif choice is not None and choice not in ("none", "auto", "required"):
        return invalid_request_error("'tool_choice' : must be one of none, auto, required or a function",
                                     param="tool_choice")
    elif choice == "required" and not tools:
        return invalid_request_error("'tool_choice' : required, but no 'tools' given", param="tool_choice")
    fmt = body.get("response_format")
    if fmt is not None:
        kind = _format(body)
        if kind not in ("text", "json_object", "json_schema"):
            return invalid_request_error("'response_format.type' : must be one of text, json_object, json_schema",
                                         param="response_format")
        if kind == "json_schema":
            spec = fmt.get("json_schema")
            if (why := _unanswerable(spec.get("schema") if isinstance(spec, dict) else None)) is not None:
                return invalid_request_error(f"'response_format.json_schema.schema' : {why}",
                                             param="response_format")
    for fn in _functions(tools or []):
        if fn.get("parameters") is not None and (why := _unanswerable(fn["parameters"])) is not None:
            return invalid_request_error(f"'tools' : the parameters of function '{fn['name']}': {why}",
                                         param="tools")
    return None


def _unanswerable(schema) -> str | None:
    """Why ``schema`` cannot be answered (None: it can), found before the request is charged: not a valid JSON
    Schema by its metaschema (``jsonschema``; the draft its ``$schema`` names, else 2020-12), or one no value
    can be built of.  Without this a keyword of the wrong type (``"minItems": "2"``) failed the answer after
    the limits took the request: a 500 that the SDKs retry and pay for again.  The verdict is kept per schema
    text: a client sends the same tools with every request, and checking them took ~2 ms a tool."""
    if not isinstance(schema, dict):
        return "a JSON schema object is required"
    try:
        text = json.dumps(schema, sort_keys=True)
    except RecursionError:  # (parsed, yet nested deeper than it is written back)
        return "not a valid JSON schema: nested too deep"
    return _verdict(text)


def warm() -> None:
    """Load the schema checker (``jsonschema`` and its validators: ~50 ms) before the first request, which
    would otherwise pay it between its arrival, the time its log line is stamped with, and its admission."""
    _verdict('{"type": "object"}')


@functools.lru_cache(maxsize=256)
def _verdict(text: str) -> str | None:
    """:func:`_unanswerable` of the schema written as ``text`` (JSON, keys sorted)."""
    import jsonschema  # (here: only a structured request needs it)

    schema = json.loads(text)
    try:
        jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator).check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(map(str, exc.path))
        return f"not a valid JSON schema: {exc.message}" + (f" (at '{where}')" if where else "")
    try:
        _built(schema)  # (not filled: a huge minItems or minLength is not written out here)
    except (TypeError, AttributeError, ValueError, KeyError, IndexError, OverflowError, RecursionError) as exc:
        return f"no value can be built of this schema ({type(exc).__name__}: {exc})"
    return None


def tool_tokens(body: dict) -> int:
    """Prompt tokens the request's tool definitions add (their JSON, ~4 characters a token; Groq counts them)."""
    tools = body.get("tools")
    return math.ceil(len(json.dumps(tools)) / CHARS_PER_TOKEN) if tools else 0


def wants_json(body: dict) -> bool:
    """Does the request ask for JSON content (``response_format`` of type ``json_object`` or ``json_schema``)?"""
    return _format(body) in ("json_object", "json_schema")


class Shape:
    """What a request (checked by :func:`shape_error`) asks its answer to be, worked out once per request: the
    function it makes the model call (None: none), and its JSON schema's simplest value, built (None: text or
    a ``json_object``).  Sizing the answer, writing it and cutting it short all read the one built value."""

    def __init__(self, body: dict):
        self.body = body
        self.chosen, schema = _structure(body)
        self.value = None if schema is None else _built(schema)

    @classmethod
    def of(cls, request) -> Shape:
        """``request`` itself if it is a Shape, else the Shape of that request body."""
        return request if isinstance(request, Shape) else cls(request)


def answer(request: dict | Shape, tokens: int, call_id: str) -> tuple[str | None, dict | None]:
    """(content, tool call) of the answer to ``request`` (a body, or its :class:`Shape`) with ``tokens`` words
    of filler: a tool call (content None) when the request requires one, else text or JSON as it asks."""
    shape = Shape.of(request)
    if shape.chosen is not None:
        return None, {"id": call_id, "type": "function", "function": {
            "name": shape.chosen["name"], "arguments": json.dumps(_filled(shape.value, tokens))}}
    if shape.value is not None:
        return json.dumps(_filled(shape.value, tokens)), None
    if _format(shape.body) == "json_object":
        return json.dumps({"text": filler(tokens)}), None
    return filler(tokens), None


def reply(request: dict | Shape, tokens: int, call_id: str, cap: int | None) -> tuple[dict, str]:
    """(the assistant message, its ``finish_reason``) answering ``request`` (a body, or its :class:`Shape`)
    with ``tokens`` completion tokens under the request's ``cap``: a tool call (``tool_calls``), a whole JSON
    value (``stop``), or text cut at the cap (``length``)."""
    shape = Shape.of(request)
    content, call = answer(shape, tokens, call_id)
    finish = ("tool_calls" if call is not None else "stop" if wants_json(shape.body)  # (a whole JSON value)
              else "length" if cap is not None and tokens >= cap else "stop")
    return {"role": "assistant", "content": content, **({"tool_calls": [call]} if call is not None else {})}, finish


def least_tokens(request: dict | Shape) -> int:
    """The fewest completion tokens the answer ``request`` (a body, or its :class:`Shape`) asks for can be
    written in: 0 for text, else its JSON value's (:func:`_least`).  A model cut off by the request's cap
    before the value is whole fails it (:func:`cut_short`)."""
    value = Shape.of(request).value
    return 0 if value is None else _least(value)


def cut_short(request: dict | Shape, tokens: int) -> ErrorResponse:
    """Groq's 400 for an answer whose JSON value needs more than the ``tokens`` the request (a body, or its
    :class:`Shape`) allows: the model stopped at its cap with the value unfinished, so the validation that
    runs before Groq returns it fails: ``tool_use_failed`` for a tool call, ``json_validate_failed`` for a
    ``json_schema`` format (the messages and codes as real responses show them).  ``failed_generation`` holds
    what was written: the value's JSON cut to ``tokens`` tokens' worth of characters."""
    shape = Shape.of(request)
    chars = tokens * CHARS_PER_TOKEN  # (and as many tokens: each is a character at least, so enough is written)
    text = json.dumps(_fill(shape.value, 1, cap=chars))[:chars]
    what, code = (("Failed to call a function", "tool_use_failed") if shape.chosen is not None
                  else ("Failed to generate JSON", "json_validate_failed"))
    err = invalid_request_error(f"{what}. Please adjust your prompt. See 'failed_generation' for more details.",
                                code=code)
    err.error["failed_generation"] = text
    return err


def _structure(body: dict) -> tuple[dict | None, dict | None]:
    """(the function the request makes the model call, else None; the JSON schema its answer follows, else
    None): a required or named tool's parameters, else a ``json_schema`` format's schema."""
    choice, functions = body.get("tool_choice"), _functions(body.get("tools") or [])
    if functions and (choice == "required" or isinstance(choice, dict)):  # (built-in tools alone: text)
        chosen = functions[0] if choice == "required" else next(
            f for f in functions if f["name"] == choice["function"]["name"])
        return chosen, chosen.get("parameters") or {"type": "object"}
    if _format(body) == "json_schema":
        return None, body["response_format"]["json_schema"]["schema"]
    return None, None


def instance(schema: dict, tokens: int):
    """The simplest value ``schema`` allows (its local ``$ref``s resolved), its free strings holding filler
    words (``tokens`` shared among them, at least one each).  It has :func:`_least` tokens at least, which
    the caller bounds (a schema may ask for a billion items)."""
    return _filled(_built(schema), tokens)


def _filled(value, tokens: int):
    """A built value written out, ``tokens`` filler words shared among its free strings (one each at least)."""
    return _fill(value, max(1, tokens // max(1, _holes(value))))


def _built(schema: dict):
    """``schema``'s simplest value, built (:func:`_value` from its root), not yet written out."""
    return _value(schema, schema, set())


class _Words:
    """A free string of the value being built, filled once the number of them is known: at least ``least``
    words, cut to ``most`` characters (a schema's ``maxLength``); the ``k``-th variant of it starts with
    ``k`` (the items of a ``uniqueItems`` array differ)."""

    def __init__(self, least: int, most: int | None = None, k: int = 0):
        self.least, self.most, self.k = least, most, k


class _Array:
    """An array in the value being built: the values of its ``head`` (a tuple's ``prefixItems``), then
    ``count`` copies of ``item``, written out only when filled: its size is known before (a ``minItems`` of a
    billion is refused, not built).  With ``vary`` (``uniqueItems``), the k-th copy is ``vary(k)``, the
    item's k-th variant."""

    def __init__(self, head: list, item, count: int, vary=None):
        self.head, self.item, self.count, self.vary = head, item, count, vary


def _holes(value) -> int:
    if isinstance(value, _Words):
        return 1
    if isinstance(value, _Array):
        return sum(map(_holes, value.head)) + value.count * _holes(value.item)
    return sum(map(_holes, value.values())) if isinstance(value, dict) else 0  # (other lists: consts)


def _least(value) -> int:
    """The fewest tokens ``value`` (built, not filled) can be written in, at least one: a free string its
    least words (cut to its ``maxLength``), an object's key one more per property, any other value one."""
    if isinstance(value, _Words):
        return min(max(1, value.least), value.most) if value.most else max(1, value.least)
    if isinstance(value, _Array):
        return max(1, sum(map(_least, value.head)) + value.count * _least(value.item))
    if isinstance(value, dict):
        return max(1, sum(1 + _least(v) for v in value.values()))
    return max(1, sum(_least(v) for v in value)) if isinstance(value, list) else 1


def _fill(value, words: int, cap: float = math.inf):
    """``value`` written out with ``words`` filler words in each free string; with a ``cap``, only as much of
    it as ``cap`` tokens reach (the start of a value too long to write whole)."""
    if isinstance(value, _Words):
        text = filler(min(max(words, value.least), cap))
        text = f"{value.k} {text}" if value.k else text
        return text if value.most is None else text[:value.most].rstrip() or text[:value.most]
    if isinstance(value, _Array):  # (capped: the items whose least tokens reach past the cap, no more)
        n = min(value.count, cap // _least(value.item) + 1)
        items = [value.item] * n if value.vary is None else [value.item, *map(value.vary, range(1, n))][:n]
        return [_fill(v, words, cap) for v in value.head] + [_fill(v, words, cap) for v in items]
    if isinstance(value, dict):
        return {k: _fill(v, words, cap) for k, v in value.items()}
    return None if value is _CUT else value


def _value(schema, root: dict, seen: set, k: int = 0):
    """The simplest value ``schema`` allows, built (free strings and arrays still to be written out: see
    :func:`_fill`); with ``k``, its k-th variant, which differs from the others where the schema lets it: the
    next enum value, number or boolean, a string starting with ``k``, an object's first property varied."""
    if not isinstance(schema, dict):
        return None
    if "$ref" in schema:
        ref = schema["$ref"]
        if ref in seen:  # a recursive type: stop at its simplest
            return _CUT
        return _value(_resolve(ref, root), root, seen | {ref}, k)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][k % len(schema["enum"])]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            # the first option that is not null, nor a string with a pattern (which the answer may not follow)
            options = [s for s in schema[key] if not (isinstance(s, dict) and s.get("type") == "null")]
            plain = [s for s in options if not (isinstance(s, dict) and "pattern" in s)]
            return _value((plain or options or schema[key])[0], root, seen, k)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((t for t in kind if t != "null"), "null")
    if kind == "object":
        props = schema.get("properties") or {}
        names = schema.get("required", list(props))
        return {name: _value(props.get(name, {}), root, seen, k if i == 0 else 0) for i, name in enumerate(names)}
    if kind == "array":  # a tuple's items first (prefixItems; in drafts 4 to 2019-09, items as a list)
        head, rest = schema.get("prefixItems") or [], schema.get("items", {})
        if not head and isinstance(rest, list):
            head, rest = rest, schema.get("additionalItems", {})
        count = min(max(1, len(head), schema.get("minItems", 0)), schema.get("maxItems", math.inf),
                    len(head) if rest is False else math.inf)  # (items false: nothing after the tuple)
        item = _value(rest, root, seen)
        count = 0 if item is _CUT and not head and not schema.get("minItems") else count
        head = [_value(s, root, seen) for s in head[:count]]
        vary = functools.partial(_value, rest, root, seen) if schema.get("uniqueItems") is True else None
        return _Array(head, item, count - len(head), vary)
    if kind in ("integer", "number"):
        return _number(schema, kind == "integer", k)
    if kind == "boolean":
        return bool(k % 2)
    if kind == "null":
        return None
    if isinstance(schema.get("pattern"), str):  # (its k-th variant; None: one this cannot write, so filler)
        text = simplest(schema["pattern"], k, schema.get("minLength", 0), schema.get("maxLength"))
        if text is not None:
            return text
    if schema.get("format") in _FORMATS:
        return _FORMATS[schema["format"]]
    return _Words(schema.get("minLength", 1), schema.get("maxLength"), k)


def _number(schema: dict, integer: bool, k: int):
    """The simplest number ``schema`` allows: 0 when its bounds do, else the one nearest 0 (``minimum`` /
    ``maximum``, ``exclusiveMinimum`` / ``exclusiveMaximum`` as numbers or, in draft 4, as flags on them),
    a multiple of its ``multipleOf``: pydantic's ``gt``, ``ge``, ``lt``, ``le`` and ``multiple_of``.  Its
    ``k``-th variant is ``k`` steps (``multipleOf``, else 1) above it, else below it, within the bounds."""
    value = _simplest_number(schema, integer)
    step = schema.get("multipleOf") or 1
    value = next((v for v in (value + k * step, value - k * step) if _within(schema, v)), value)  # (k = 0: itself)
    return int(value) if integer else float(value)


def _bounds(schema: dict) -> tuple:
    """``schema``'s (minimum, maximum, exclusiveMinimum, exclusiveMaximum), each None where unset; draft 4's
    flags read as the bound they make exclusive."""
    low, high = schema.get("minimum"), schema.get("maximum")
    low_open, high_open = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if isinstance(low_open, bool):  # draft 4: a flag on minimum
        low_open = low if low_open else None
    if isinstance(high_open, bool):
        high_open = high if high_open else None
    return low, high, low_open, high_open


def _within(schema: dict, v) -> bool:
    """Is ``v`` within ``schema``'s bounds?"""
    low, high, low_open, high_open = _bounds(schema)
    return ((low is None or v >= low) and (high is None or v <= high)
            and (low_open is None or v > low_open) and (high_open is None or v < high_open))


def _simplest_number(schema: dict, integer: bool):
    """:func:`_number`'s simplest one (an int or a float either way: :func:`_number` makes it the kind)."""
    low, high, low_open, high_open = _bounds(schema)
    if low_open is not None and (low is None or low_open >= low):
        low, low_strict = low_open, True
    else:
        low_strict = False
    if high_open is not None and (high is None or high_open <= high):
        high, high_strict = high_open, True
    else:
        high_strict = False
    step = schema.get("multipleOf")
    if _within(schema, 0):
        return 0
    if low is not None and low >= 0:  # 0 is below the bounds: the least value above low
        if integer:
            value = math.floor(low) + 1 if low_strict else math.ceil(low)
        else:
            value = low if not low_strict else (low + high) / 2 if high is not None else low + 1
        value = math.ceil(value / step) * step if step else value  # (still above low: rounded up)
    else:  # 0 is above: the greatest value below high
        if integer:
            value = math.ceil(high) - 1 if high_strict else math.floor(high)
        else:
            value = high if not high_strict else (low + high) / 2 if low is not None else high - 1
        value = math.floor(value / step) * step if step else value
    return value


def _format(body: dict) -> str | None:
    """The ``response_format`` type the request names (None: no format, or one that is not an object)."""
    fmt = body.get("response_format")
    return fmt.get("type") if isinstance(fmt, dict) else None


def _resolve(ref: str, root: dict) -> dict:
    """The schema a local ``$ref`` (``#/$defs/Name``, ``#/definitions/Name``) points at; {} for any other."""
    if not ref.startswith("#/"):
        return {}
    node = root
    for part in ref[2:].split("/"):
        node = node.get(part) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else {}


def _builtin(tool) -> bool:
    """Is the tool one of Groq's built-in ones (run on Groq's side: the groq SDK's tool types besides
    ``function``)?"""
    return isinstance(tool, dict) and tool.get("type") in ("browser_search", "code_interpreter")


def _functions(tools: list) -> list[dict]:
    """The ``function`` objects of the request's function tools, in order (built-in tools left out)."""
    return [f for f in map(_function, tools) if f is not None]


def _function(tool) -> dict | None:
    """A tool's ``function`` object, if the tool is a function with a string name."""
    if not isinstance(tool, dict) or tool.get("type", "function") != "function":
        return None
    fn = tool.get("function")
    return fn if isinstance(fn, dict) and isinstance(fn.get("name"), str) and fn["name"] else None
