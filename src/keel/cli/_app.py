"""The ``keel`` command: thin — parse, call the library, render.

One module per command group; each imports what it needs inside its commands, so
`keel drift` does not pay for SHAP and scikit-learn, nor `keel --help` for MLflow.
"""

from __future__ import annotations

from importlib import import_module

from keel.cli._common import app, is_loopback

# each module registers its commands; this order is the order of `keel --help`
for _group in ("_train", "_serve", "_release", "_watch", "_privacy", "_experiment", "_project"):
    import_module(f"keel.cli.{_group}")


def _family_commands() -> None:
    """Commands a family adds (``keel recommend``, ``keel ask``): its ``commands_module``."""
    from keel.families import FAMILIES

    for family in FAMILIES.usable():
        if family.commands_module:
            import_module(family.commands_module)


_family_commands()
serving_app = import_module("keel.cli._serve").serving_app  # `uvicorn --factory` target


def main() -> None:
    """Entry point of the ``keel`` command."""
    app()


__all__ = ["app", "is_loopback", "main", "serving_app"]
