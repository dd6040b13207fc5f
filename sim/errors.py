"""The one exception type for bad user input: the CLI prints it as one line and exits with status 2."""
from __future__ import annotations

import difflib


class ConfigError(ValueError):
    """Bad input from the user (scenario key, unknown model or tier, unparsable value)."""


class InputWarning(UserWarning):
    """Input the simulator accepted after adjusting it (e.g. an unsorted trace it sorted): the CLI prints it as
    one line ``groqsim: warning: ...``; other libraries' warnings it does not show."""


def did_you_mean(word: str, choices, what: str) -> str:
    """``unknown model 'x' (did you mean 'y'?; allowed: ...)`` with close matches first."""
    choices = list(choices)
    close = difflib.get_close_matches(word, choices, n=3, cutoff=0.5)
    close += [c for c in choices if word and word.lower() in c.lower() and c not in close][:3]
    hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
    return f"unknown {what} {word!r} ({hint}allowed: {', '.join(choices)})"
