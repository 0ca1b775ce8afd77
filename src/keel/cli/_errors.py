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
        lost = _unreachable(exc)
        if lost:
            _say(
                f"error: the tracking server stopped answering ({lost}); what the stages"
                " finished is kept in .keel/ and reused: start the server and run again"
            )
            raise typer.Exit(EXIT_INPUT) from None
        stage = getattr(exc, "keel_stage", None)
        where = f" in stage {stage}" if stage else ""
        _say(
            f"internal error{where}: {type(exc).__name__}:"
            f" {str(exc).splitlines()[0] if str(exc) else ''}"
            " — this is a bug in Keel; rerun with --debug for the traceback and report it"
        )
        raise typer.Exit(EXIT_INTERNAL) from None


def _unreachable(exc: BaseException) -> str | None:
    """Why, when ``exc`` (or its cause) is a tracking server that cannot be reached."""
    seen: BaseException | None = exc
    while seen is not None:
        text = str(seen)
        if isinstance(seen, ConnectionError) or "Max retries exceeded" in text:
            return "connection refused" if "refused" in text.lower() else type(seen).__name__
        seen = seen.__cause__ or seen.__context__
    return None


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
