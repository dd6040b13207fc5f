"""The one exception type for bad user input: the CLI prints it as one line and exits with status 2."""
from __future__ import annotations

import difflib


class ConfigError(ValueError):
    """Bad input from the user (scenario key, unknown model or tier, unparsable value)."""


class KeyedError(ConfigError):
    """A ConfigError about one key below whatever the caller read (``scale.rpm``): the caller names the rest
    of the path (``tiers.mine.``) and the file's line."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key, self.message = key, message


class InputWarning(UserWarning):
    """Input the simulator accepted after adjusting it (e.g. an unsorted trace it sorted): the CLI prints it as
    one line ``groqsim: warning: ...``; other libraries' warnings it does not show."""


class ShutDownModelWarning(InputWarning):
    """A scenario uses a model Groq has shut down (or will).  Warned as a scenario is loaded through the
    Python API; the command line says it in its own place, once the input is known good."""


class InertSettingWarning(InputWarning):
    """A scenario sets something that changes nothing in the combination it is in (a jitter on a fixed delay,
    a retry schedule with one attempt).  Warned as a scenario is loaded through the Python API; the command
    line says it in its own place, with the other notes."""


def did_you_mean(word: str, choices, what: str) -> str:
    """``unknown model 'x' (did you mean 'y'?; allowed: ...)`` with close matches first."""
    choices = list(choices)
    close = difflib.get_close_matches(word, choices, n=3, cutoff=0.5)
    close += [c for c in choices if word and word.lower() in c.lower() and c not in close][:3]
    hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
    return f"unknown {what} {word!r} ({hint}allowed: {', '.join(choices)})"


def writing(fn, *args) -> tuple[list, str | None]:
    """``fn(*args)`` -> (the files it wrote, None), or ([], one line naming the file) when one could not be
    written (an OSError: a directory in the way, no space, no permission): the command writes every other
    output, then says which failed, and nothing already computed is lost."""
    try:
        return fn(*args), None
    except OSError as exc:
        # (a rename's filename2 is the file it was to become)
        name = exc.filename2 or exc.filename or getattr(fn, "__name__", fn)
        return [], f"{name}: cannot write ({exc.strerror or exc})"


def write_problems(errors: list[str]) -> str:
    """The one line a command prints for the outputs it could not write."""
    more = f" (and {len(errors) - 1} other file(s))" if len(errors) > 1 else ""
    return f"{errors[0]}{more}; the other outputs were written"
