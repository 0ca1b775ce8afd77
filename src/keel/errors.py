"""The one exceptions module of Keel.

The hierarchy is shaped by what the caller can do about an error:

* :class:`KeelInputError` (and its children) — the user gave Keel something it
  cannot use: a config, a data file, a request. The CLI maps it to exit code 2 and
  prints the message as one line; the server maps it to HTTP 4xx.
* :class:`KeelFinding` — Keel worked and found something the user must know
  (a gate failed, drift was detected). Exit code 1.
* Anything else is a bug in Keel (exit code 3, traceback only with ``--debug``).

Foreign exceptions are wrapped at the boundary with ``raise ... from exc``.
"""

from __future__ import annotations

from collections.abc import Iterable
from difflib import get_close_matches

__all__ = [
    "ConfigError",
    "DataError",
    "KeelError",
    "KeelFinding",
    "KeelInputError",
    "KeelWarning",
    "ModelNotFoundError",
    "did_you_mean",
]


class KeelError(Exception):
    """Base class of every error Keel raises on purpose."""


class KeelInputError(KeelError):
    """Bad input or usage: exit code 2, HTTP 4xx. Nothing was written."""


class ConfigError(KeelInputError):
    """``keel.yaml`` (or a command-line option) cannot be used as given."""


class DataError(KeelInputError):
    """A data file or a batch of rows cannot be used as given."""


class ModelNotFoundError(KeelInputError):
    """The registry has no model (or version, or alias) by that name."""


class KeelFinding(KeelError):
    """Keel did its job and found something that needs attention: exit code 1."""


class KeelWarning(UserWarning):
    """Something Keel worked around and the user should know about."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for a near miss, else an empty string."""
    close = get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.6)
    if not close:
        lowered = {str(c).lower(): str(c) for c in choices}
        if str(name).lower() in lowered:
            close = [lowered[str(name).lower()]]
    return f" (did you mean '{close[0]}'?)" if close else ""
