"""The one exception type for bad user input: the CLI prints it as one line and exits with status 2."""
from __future__ import annotations

import difflib
import os
import sys
import warnings


class ConfigError(ValueError):
    """Bad input from the user (scenario key, unknown model or tier, unparsable value)."""


class KeyedError(ConfigError):
    """A ConfigError about one key below whatever the caller read (``scale.rpm``): the caller names the rest
    of the path (``tiers.mine.``) and the file's line."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key, self.message = key, message

    def __reduce__(self):
        """Pickled with both its arguments: a worker process's error reaches the parent (an exception is
        rebuilt from ``args``, here the one joined text, which broke the pool: BrokenProcessPool)."""
        return type(self), (self.key, self.message)


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


#: the (category, message) pairs :func:`warn_once` has shown in this process
_SAID: set[tuple[type, str]] = set()


def warn_once(message: str, category: type[Warning]) -> None:
    """Warn ``message`` once per process, attributed to the first caller outside this package.  Python's own
    once-per-line memory is reset whenever anything (pandas, inside every run) changes the warning filters, so a
    loop of loads and runs said each note again; this registry is not.  The filters still decide: ``"always"``
    shows it every time, ``"error"`` raises, and an ignored warning is not counted as said."""
    frame, level = sys._getframe(1), 2
    while frame.f_back is not None and frame.f_globals.get("__name__", "").partition(".")[0] == __package__:
        frame, level = frame.f_back, level + 1
    action = _action(message, category, frame.f_globals.get("__name__", "<string>"), frame.f_lineno)
    key = (category, message)
    if action == "ignore" or (key in _SAID and action not in ("always", "error")):
        return
    warnings.warn(message, category, stacklevel=level)
    _SAID.add(key)


def _action(message: str, category: type[Warning], module: str, lineno: int) -> str:
    """The action the warning filters take on this warning (the first filter that matches, as
    :func:`warnings.warn_explicit` looks them up)."""
    for action, msg, cat, mod, ln in warnings.filters:
        if (_matches(msg, message) and issubclass(category, cat) and _matches(mod, module)
                and (ln == 0 or ln == lineno)):
            return action
    return warnings.defaultaction


def _matches(pattern, text: str) -> bool:
    """A filter's message or module pattern against ``text`` as CPython's ``_warnings`` matches it: None matches
    everything, a plain string (Python's own default filters hold ``'__main__'``) only itself, a regex from
    its start."""
    return pattern is None or (pattern == text if isinstance(pattern, str) else bool(pattern.match(text)))


def did_you_mean(word: str, choices, what: str) -> str:
    """``unknown model 'x' (did you mean 'y'? allowed: ...)``: close matches first, then names containing the word."""
    choices = list(choices)
    text = word if isinstance(word, str) else ""  # (a Python API caller's dict key may be no string: no hint)
    close = difflib.get_close_matches(text, choices, n=3, cutoff=0.5)
    close += [c for c in choices if text and text.lower() in c.lower() and c not in close][:3]
    hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
    return f"unknown {what} {word!r} ({hint}allowed: {', '.join(choices)})"


def printable(path) -> str:
    """A path as text any output takes: a byte of its name that is not UTF-8 (Linux allows 0xff) as ``\\xff``,
    not as Python holds it, a lone surrogate, which a UTF-8 stdout or file refuses."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


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
