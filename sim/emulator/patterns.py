"""The simplest string a regular expression matches: a JSON schema's ``pattern`` (pydantic's
``Field(pattern=...)``, ``constr``), so that a structured answer passes the validation the client runs on it.

The expression is parsed by Python's own parser (``re._parser``, the one ``re.compile`` uses) and written out
node by node: a literal as itself, a class or ``.`` as its first member in :data:`ALPHABET` (``a``, then
``A``, ``0``, ...), an alternation as its first branch, a repetition its least number of times, an anchor or
a word boundary as nothing.  The ``k``-th variant (the items of a ``uniqueItems`` array) takes, at each choice
(a class, an alternation, ``.``), the option of the next digit of ``k`` in a mixed radix, and what is left of
``k`` past the last choice is as many more repetitions of an open repetition (``?``, ``+``, ``*``,
``{m,n}``), so variants differ where the expression lets them.  A ``minLength`` is reached by repeating an open
repetition more often (one, else every one).

What is written is checked, with the lengths, by pydantic's engine (:func:`_matcher`: unanchored, as JSON
Schema's patterns are), so a string is returned only when it matches.  An expression that cannot be written
this way gives None, and the caller writes filler instead: a lookaround, a back-reference, a conditional,
syntax Python's parser does not take (ECMA-262's ``\\p{L}``), a match longer than :data:`LONGEST`.
"""
from __future__ import annotations

import functools
import math
import re
from re import _constants as C  # noqa: N812 (the opcode names, as re._parser's)
from re import _parser

from pydantic_core import SchemaError, SchemaValidator, core_schema

#: the characters a class or ``.`` is written as, in order of preference: readable ones first
ALPHABET = ("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
            " -_.,:;!?@#$%&*+/=()[]{}<>'\"\\|^~`")
#: the longest string written out (characters): an expression or minLength asking for more gives None
LONGEST = 10_000
#: how many characters of a class's range outside ALPHABET are options (from its first)
RANGE_HEAD = 26
#: how many times the number of extra repetitions is re-estimated to reach a ``minLength``
TRIES = 8
_REPEATS = (C.MAX_REPEAT, C.MIN_REPEAT, C.POSSESSIVE_REPEAT)
_CATEGORIES = {C.CATEGORY_DIGIT: str.isdecimal, C.CATEGORY_SPACE: str.isspace,
               C.CATEGORY_WORD: lambda ch: ch.isalnum() or ch == "_"}
_NOT = {C.CATEGORY_NOT_DIGIT: C.CATEGORY_DIGIT, C.CATEGORY_NOT_SPACE: C.CATEGORY_SPACE,
        C.CATEGORY_NOT_WORD: C.CATEGORY_WORD}


class _Unwritable(Exception):
    """The expression holds what is not written out (a lookaround, a conditional), or more than LONGEST."""


#: ECMA-262's (and pydantic's engine's) ``(?<name>``, which Python's parser reads only as ``(?P<name>``
_NAMED = re.compile(r"(?<!\\)\(\?<(?=[A-Za-z_])")
#: why an expression is not written: not one (re.error), or one with what is not written out
_FAILURES = (re.error, _Unwritable, RecursionError, OverflowError, ValueError, TypeError)


@functools.lru_cache(maxsize=1024)
def simplest(pattern: str, k: int = 0, least: int = 0, most: int | None = None) -> str | None:
    """The simplest string ``pattern`` matches (anywhere in it), its ``k``-th variant, between ``least`` and
    ``most`` characters long; None when there is none this module can write (see the module's docstring).
    Kept per arguments: a client sends the same schema with every request."""
    matches = _matcher(pattern)
    if matches is None:
        return None
    try:
        tree = _parser.parse(_NAMED.sub("(?P<", pattern))  # (ECMA-262's named group, in Python's spelling)
        writer = _Writer(k, 0)
        writer.seq(tree)
    except _FAILURES:
        return None
    # more copies of one repetition (what is left of k first); else of every open one, from none: ``(a?)*``
    for extra, every in ((writer.k, False), (0, True)):
        try:
            text = _lengthened(tree, k, extra, least, every)
        except _FAILURES:
            continue
        if text is not None and least <= len(text) and (most is None or len(text) <= most) and matches(text):
            return text
    return None


@functools.lru_cache(maxsize=256)
def _matcher(pattern: str):
    """Does a string match ``pattern`` (anywhere in it)?  Asked of pydantic's engine (the Rust ``regex`` crate,
    which a client's ``Field(pattern=...)`` runs, in time linear in the string: a user's ``^(a+)+$`` cannot
    hang the emulator as a backtracking engine would); None for a pattern it refuses (a back-reference, a
    lookaround)."""
    try:
        return SchemaValidator(core_schema.str_schema(pattern=pattern)).isinstance_python
    except SchemaError:
        return None


def _lengthened(tree, k: int, extra: int, least: int, every: bool) -> str | None:
    """The expression written with ``extra`` more repetitions, and more until it is ``least`` characters long,
    re-estimated as it grows; None when it does not grow."""
    text = _Writer(k, extra, every).seq(tree)
    for _ in range(TRIES):
        if len(text) >= least:
            break
        if least > LONGEST:
            return None
        step = len(_Writer(k, extra + 1, every).seq(tree)) - len(text)
        if step <= 0:  # (no repetition left open)
            return None
        extra += math.ceil((least - len(text)) / step)
        text = _Writer(k, extra, every).seq(tree)
    return text


class _Writer:
    """Writes a parsed expression out: ``k`` still to spend at the choices (its digits, lowest first),
    ``extra`` repetitions to add to the first repetition that has room for them all (``every``: to every
    repetition, as far as each has room)."""

    def __init__(self, k: int, extra: int, every: bool = False):
        self.k, self.extra, self.every, self.length = k, extra, every, 0

    def seq(self, items) -> str:
        return "".join(self.node(op, av) for op, av in items)

    def choose(self, n: int) -> int:
        """The option taken at a choice of ``n``: the next digit of k in base n."""
        if n <= 0:
            raise _Unwritable
        i, self.k = self.k % n, self.k // n
        return i

    def pick(self, options: list[str]) -> str:
        return options[self.choose(len(options))]

    def node(self, op, av) -> str:
        if op is C.LITERAL:
            return self.grow(chr(av))
        if op is C.NOT_LITERAL:
            return self.grow(self.pick([ch for ch in ALPHABET if ord(ch) != av]))
        if op is C.ANY:
            return self.grow(self.pick(list(ALPHABET)))
        if op is C.IN:
            return self.grow(self.pick(_members(av)))
        if op is C.BRANCH:
            branches = av[1]
            return self.seq(branches[self.choose(len(branches))])
        if op is C.SUBPATTERN:
            return self.seq(av[3])
        if op in _REPEATS:
            return self.repeat(*av)
        if op is C.AT:  # anchors and word boundaries: the simplest text at them is no text
            return ""
        raise _Unwritable(op)  # ASSERT, ASSERT_NOT, GROUPREF, GROUPREF_EXISTS, ...

    def repeat(self, low: int, high: int, items) -> str:
        """``items`` ``low`` times; with extra repetitions pending and room for them, one copy written first (a
        repetition inside it may take them: ``(a?)*``), else as many more copies, if a copy is not empty."""
        if not (self.extra and high > low):
            return "".join(self.seq(items) for _ in range(low))
        if self.every:
            return "".join(self.seq(items) for _ in range(min(low + self.extra, high)))
        first = self.seq(items)
        n = max(low, 1) if not self.extra else low  # (taken inside the copy: this one kept)
        if self.extra and first and high - low >= self.extra:
            n, self.extra = low + self.extra, 0
        return (first if n else "") + "".join(self.seq(items) for _ in range(n - 1))

    def grow(self, text: str) -> str:
        """``text``, counted towards LONGEST (a repetition of a repetition cannot build a huge string)."""
        self.length += len(text)
        if self.length > LONGEST:
            raise _Unwritable("too long")
        return text


def _members(items) -> list[str]:
    """The characters of a class (``[...]``, ``\\d``, ``\\w``, ...) among ALPHABET, then the class's own literals
    and its ranges' first RANGE_HEAD characters (``[à-ÿ]`` has none in ALPHABET)."""
    negate = bool(items) and items[0][0] is C.NEGATE
    own = "".join(chr(av) if op is C.LITERAL else "".join(map(chr, range(av[0], min(av[1] + 1, av[0] + RANGE_HEAD))))
                  for op, av in items if op in (C.LITERAL, C.RANGE))
    pool = ALPHABET if negate else ALPHABET + own
    return [ch for ch in dict.fromkeys(pool) if _in(items, ch) is not negate]


def _in(items, ch: str) -> bool:
    """Is ``ch`` one of the class's items (its NEGATE aside)?"""
    o = ord(ch)
    for op, av in items:
        if op is C.LITERAL and av == o or op is C.RANGE and av[0] <= o <= av[1]:
            return True
        if op is C.CATEGORY:
            if av in _CATEGORIES and _CATEGORIES[av](ch) or av in _NOT and not _CATEGORIES[_NOT[av]](ch):
                return True
    return False
