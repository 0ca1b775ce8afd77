"""Commands that set a project up: `keel init`, `keel apikey`, `keel build`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from keel.cli._common import (
    ConfigOpt,
    DebugOpt,
    JsonOpt,
    app,
)
from keel.cli._errors import exit_codes
from keel.errors import KeelInputError


@app.command()
def init(
    folder: Annotated[Path, typer.Argument(help="Folder for the new project (created if absent).")],
    name: Annotated[
        str | None, typer.Option(help="Model name (default: the folder's name).")
    ] = None,
    data: Annotated[
        str, typer.Option(help="Training data path for keel.yaml.")
    ] = "data/raw/data.csv",
    target: Annotated[str, typer.Option(help="Target column for keel.yaml.")] = "target",
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Create a project in the standard layout; never overwrites an existing file.

    Writes data/{raw,processed,features}, configs, notebooks, tests/{unit,integration,
    model}, pipelines, deployments; a commented keel.yaml; .gitignore; DVC set-up for
    data/raw (.dvc/, dvc.yaml); GitHub Actions workflows (train-and-evaluate on pull
    requests, deploy through staging on a `model-vN` tag); a Dockerfile serving the
    champion with `keel serve`; a KServe InferenceService. Files that exist are kept
    and listed. Exit codes: 0 done, 2 FOLDER is a file or the name is invalid.
    """
    from keel.cli._scaffold import scaffold

    with exit_codes(debug):
        result = scaffold(folder, name, data, target)
        if json_out:
            print(json.dumps({"folder": str(folder), **result}))
            return
        console = Console(stderr=True)
        for path in result["created"]:
            console.print(f"created {folder / path}")
        for path in result["kept"]:
            console.print(f"[yellow]kept[/yellow] {folder / path} (exists; not overwritten)")
        console.print(f"next: put your data at {folder / data}, edit keel.yaml, run `keel run`")


@app.command()
def apikey(
    name: Annotated[str, typer.Argument(help="Who the key is for (e.g. web-frontend).")],
    scopes: Annotated[
        str, typer.Option(help="Comma-separated: predict, admin (admin has every scope).")
    ] = "predict",
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Make a new API key for `keel serve`: shown once, stored only as its SHA-256.

    Prints the key (give it to the client) and the entry to paste under
    `serving: api_keys:` in keel.yaml (or into KEEL_API_KEYS as a JSON list). The
    server hashes each presented key and compares it in constant time. Exit codes: 0
    made, 2 unknown scope.
    """
    import secrets

    from keel.errors import KeelInputError
    from keel.serving import hash_key

    with exit_codes(debug):
        wanted = [s.strip() for s in scopes.split(",") if s.strip()]
        unknown = [s for s in wanted if s not in ("predict", "admin")]
        if unknown or not wanted:
            raise KeelInputError(
                f"--scopes: unknown scope {unknown[0] if unknown else '(none)'!r}; use predict,"
                " admin or both"
            )
        key = "keel_" + secrets.token_urlsafe(32)
        entry = {"name": name, "sha256": hash_key(key), "scopes": wanted}
        if json_out:
            print(json.dumps({**entry, "key": key}))
            return
        print(f"key (shown once; give it to {name}): {key}", file=sys.stderr)
        print("add to keel.yaml under serving: api_keys:", file=sys.stderr)
        print(f"    - {{name: {name}, sha256: {entry['sha256']}, scopes: [{', '.join(wanted)}]}}")


@app.command()
def build(
    model: Annotated[
        str | None,
        typer.Argument(help="NAME@ALIAS to deploy (default: <name>@champion)."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Folder (default deployments/NAME-ALIAS).")
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace files that exist.")] = False,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Write deployment files for a registered model: Dockerfile, KServe, Kubernetes.

    The Dockerfile's entrypoint is `keel serve --model NAME@ALIAS`; kserve.yaml is an
    InferenceService with that image as a custom predictor; kubernetes.yaml a
    Deployment (readiness /ready, liveness /health, Prometheus annotations) and a
    Service. The model must exist in the registry. Exit codes: 0 written, 2 unknown
    model or alias, or files exist (without --force).
    """
    from keel.cli._build import build_files
    from keel.config import load_config, resolve_settings
    from keel.registry import mlflow_scope, model_version, package_family, parse_model_uri

    with exit_codes(debug):
        project = load_config(config)
        tracking = resolve_settings(project).tracking_uri
        uri = model or f"{project.name}@champion"
        name, version, alias = parse_model_uri(uri)
        if alias is None:
            raise KeelInputError(
                f"{uri}: give NAME@ALIAS (a deployment follows an alias; pin a version"
                f" with `keel promote {name} {version} --to staging` and build {name}@staging)"
            )
        with mlflow_scope(tracking) as client:
            mv = model_version(client, uri, tracking)
        family = package_family(uri, tracking)
        if not family.capabilities.builds_image:
            raise KeelInputError(
                f"{uri} is a {family.name} model: keel build writes KServe (Open Inference"
                " v2) and Kubernetes files for families that score rows; serve it with"
                f" `keel serve --model {uri}` in your own image"
            )
        folder = out or project.root / "deployments" / f"{name}-{alias}"
        paths = build_files(name, alias, str(mv.version), folder, force, family.extra)
        if json_out:
            print(json.dumps({"model": uri, "version": str(mv.version), "paths": paths}))
            return
        console = Console(stderr=True)
        for path in paths.values():
            console.print(f"wrote {path}")


@app.command()
def families(json_out: JsonOpt = False) -> None:
    """List the model families Keel knows: their tasks, capabilities and stages.

    The built-ins (tabular, recommendation, retrieval) and every family an installed
    package declares under the entry-point group `keel.families` (docs/families.md).
    """
    from dataclasses import asdict

    from rich.table import Table

    from keel.families import FAMILIES

    found = [
        {
            "name": f.name,
            "tasks": list(f.tasks),
            "default": f.default,
            "capabilities": asdict(f.capabilities),
            "stages": list(f.stage_names),
            "module": type(f).__module__,
        }
        for f in FAMILIES.usable()
    ]
    if json_out:
        print(json.dumps({"families": found}))
        return
    table = Table(title="Model families")
    for head in ("family", "tasks", "can", "stages", "from"):
        table.add_column(head)
    for f in found:
        can = [k for k, v in f["capabilities"].items() if v is True]
        can += [" ".join(f["capabilities"]["serves_routes"])]
        table.add_row(
            f["name"] + (" (default)" if f["default"] else ""),
            ", ".join(f["tasks"]),
            ", ".join(can),
            " → ".join(f["stages"]),
            f["module"],
        )
    Console().print(table)
