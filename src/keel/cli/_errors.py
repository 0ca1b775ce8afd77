"""One place mapping Keel's exceptions to exit codes and one-line messages."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import typer

from keel.errors import KeelFinding, KeelInputError

EXIT_OK, EXIT_FINDING, EXIT_INPUT, EXIT_INTERNAL = 0, 1, 2, 3


@contextmanager
def exit_codes(debug: bool = False) -> Iterator[None]:
    """Run a command body; turn errors into one line on stderr and an exit code.

    ``KeelInputError`` → 2, ``KeelFinding`` → 1, anything else → 3 (a bug in Keel).
    With ``debug`` the traceback is shown as well.
    """
    try:
        yield
    except typer.Exit:
        raise
    except KeelInputError as exc:
        _say(f"error: {exc}")
        if debug:
            raise
        raise typer.Exit(EXIT_INPUT) from None
    except KeelFinding as exc:
        _say(f"finding: {exc}")
        if debug:
            raise
        raise typer.Exit(EXIT_FINDING) from None
    except KeyboardInterrupt:
        _say("interrupted")
        raise typer.Exit(130) from None
    except Exception as exc:
        if debug:
            raise
        stage = getattr(exc, "keel_stage", None)
        where = f" in stage {stage}" if stage else ""
        _say(
            f"internal error{where}: {type(exc).__name__}:"
            f" {str(exc).splitlines()[0] if str(exc) else ''}"
            " — this is a bug in Keel; rerun with --debug for the traceback and report it"
        )
        raise typer.Exit(EXIT_INTERNAL) from None


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
