"""What every `keel` command shares: the app, its options, small helpers."""

from __future__ import annotations

import ipaddress
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from keel._version import __version__

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

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


def print_costs(console: Console, stages: list[dict[str, Any]]) -> None:
    """The three stages that cost the most CPU in this run, with their peak memory."""
    ran = [s for s in stages if s.get("status") == "ran" and s.get("cpu_seconds") is not None]
    if not ran:
        return
    costly = sorted(ran, key=lambda s: -s["cpu_seconds"])[:3]
    console.print(
        "Most CPU: "
        + ", ".join(
            f"{s['name']} {s['cpu_seconds']:.1f} s"
            + (f" (peak {s['peak_mb']:.0f} MB)" if s.get("peak_mb") is not None else "")
            for s in costly
        )
    )


def ui_hint(tracking_uri: str) -> str:
    """How to look at the runs: the server's own UI, or `mlflow ui` on the local store."""
    if tracking_uri.startswith(("http://", "https://")):
        return f"MLflow UI: {tracking_uri}"
    return f"MLflow UI: mlflow ui --backend-store-uri {tracking_uri}"


def progress_bar(label: str, count: str, console: Console, json_out: bool) -> Progress:
    """The progress bar of a long command: spinner, label, bar, count, time (not in --json)."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    return Progress(
        SpinnerColumn(),
        TextColumn(label),
        BarColumn(),
        TextColumn(count),
        TimeElapsedColumn(),
        console=console,
        disable=not _interactive(json_out),
        transient=True,
    )
