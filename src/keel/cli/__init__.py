"""The ``keel`` command line (Typer)."""

from keel.cli._app import app, main

__all__ = ["app", "main"]
