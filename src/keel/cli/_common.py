"""What every `keel` command shares: the app, its options, small helpers."""

from __future__ import annotations

import ipaddress
import os
import re
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from keel._version import __version__

app = typer.Typer(
    name="keel",
    help=(
        "Keel carries a tabular model through its whole life: data checked and versioned,"
        " baselines and candidates trained and evaluated, everything tracked in MLflow,"
        " the model registered and served.\n\n"
        "Start with `keel run` in a folder holding a keel.yaml "
        "(name, data, target), then `keel serve`."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="The keel.yaml to use (default: ./keel.yaml)."),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print exactly one JSON object on stdout, nothing else.")
]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks of errors.")]


def _interactive(json_mode: bool) -> bool:
    return not json_mode and sys.stderr.isatty() and not os.environ.get("CI")


def _version(value: bool) -> None:
    if value:
        print(f"keel {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Keel: a tabular model's whole life, with the evidence to prove it."""


ModelArg = Annotated[
    str | None,
    typer.Argument(
        help="NAME, NAME@ALIAS or NAME/VERSION in the registry (default: <name>@champion)."
    ),
]
NameArg = Annotated[str, typer.Argument(help="The registered model's name.")]
ReasonOpt = Annotated[
    str | None, typer.Option("--reason", help="Why: recorded in the alias history.")
]


def _num(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "—"
    return f"{value:.4f}"


def _shown_url(url: str) -> str:
    """A database URL without its password, for the terminal."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def _registry(config: Path | None) -> str:
    """The tracking URI of the project in this folder (or of --config)."""
    from keel.config import load_config, resolve_settings

    return resolve_settings(load_config(config)).tracking_uri


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
