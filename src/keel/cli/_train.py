"""Commands that build a model: `keel run`, `keel validate`, `keel reproduce`, `keel card`."""

from __future__ import annotations

import json
import sys
from contextlib import redirect_stdout
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from keel.cli._common import (
    ConfigOpt,
    DebugOpt,
    JsonOpt,
    ModelArg,
    _interactive,
    app,
)
from keel.cli._errors import exit_codes
from keel.errors import KeelInputError


@app.command()
def run(
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
    from_stage: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="Re-run this stage and every later one, whatever is stored (the stages"
            " of the project's family: `keel families` lists them).",
        ),
    ] = None,
    no_cache: Annotated[
        bool,
        typer.Option("--no-cache", help="Run every stage; reuse and store nothing."),
    ] = False,
    ray_address: Annotated[
        str | None,
        typer.Option(
            help="Fit each tuning trial's folds on this Ray cluster (HOST:PORT); beats"
            " keel.yaml's tuning.ray_address. The same result as in process."
        ),
    ] = None,
) -> None:
    """Ingest, validate, split, tune, train baselines and candidates, evaluate, register.

    Reads keel.yaml, writes a dataset snapshot under .keel/data, tunes the candidates
    with Optuna for `budget:` seconds (or `trials:`), trains them beside three baselines
    (dummy, linear, shallow tree), picks the best on validation, and judges it on the
    untouched test rows with 95% bootstrap intervals and cross-validation. Everything is
    logged to MLflow (sqlite:///.keel/mlflow.db unless MLFLOW_TRACKING_URI or
    tracking_uri says otherwise). The model is registered and tagged with the dataset
    digest, config digest, code commit and gate summary. If it passes its gates (it
    beats the best baseline on the interval; behaviour and fairness limits hold) it is
    aliased `champion` the first time, and later `challenger`, unless it beats the
    champion on the primary metric beyond noise, on test rows the champion never
    trained on, and is not worse on fairness: then it is auto-promoted (recorded in
    `keel history`). The alias moves last, after the report and the card exist.

    `task: recommendation` runs the recommender's stages: a split by time with
    cold-start users, random/popularity baselines and tuned item_knn, ease, als, bpr,
    full-ranking metrics (NDCG@K, MAP@K, MRR, ...) over users, the popularity gate,
    fairness across user groups and item exposure (docs/recommendation.md).

    Every stage's outputs are stored under .keel/stages by a key of its code, the
    keel.yaml keys it reads and its inputs: a stage whose key is stored is reused, so
    running again with the same config, data and code re-runs nothing and registers no
    new version, changing only `card:` re-runs only the card, and a run after a failure
    (or a kill) resumes where it stopped. --json lists every stage: ran or reused.
    Exit codes: 0 done, 1 a gate failed, 2 bad config or data (nothing written).
    """
    from keel.config import load_config, resolve_settings
    from keel.families import FAMILIES
    from keel.pipeline import run_project

    with exit_codes(debug):
        project = _with_ray_address(load_config(config), ray_address)
        settings = resolve_settings(project)
        console = Console(stderr=True)
        show = _interactive(json_out)
        with Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=console,
            disable=not show,
            transient=True,
        ) as progress:
            names = FAMILIES.for_task(project.task).stage_names
            bar = progress.add_task("keel run", total=len(names), detail="")

            def observe(stage: str, detail: str) -> None:
                if stage in names:
                    progress.update(bar, completed=names.index(stage))
                progress.update(bar, description=stage, detail=detail)

            with redirect_stdout(sys.stderr):
                # failures are named by stage and alerted by the runner's hooks
                result = run_project(
                    project,
                    settings,
                    observer=observe,
                    start_from=from_stage,
                    use_cache=not no_cache,
                )
            progress.update(bar, completed=len(names))
        payload = result.to_dict()
        if json_out:
            print(json.dumps(payload, default=str))
        else:
            FAMILIES.for_task(payload["task"]).render_run(payload)
        _raise_findings(payload)


def _with_ray_address(project: Any, ray_address: str | None) -> Any:
    """The project with ``--ray-address`` as its tuning cluster (exit 2 if malformed)."""
    if ray_address is None:
        return project
    from keel.config import TuningConfig

    try:
        tuning = TuningConfig(ray_address=ray_address)
    except ValueError:
        raise KeelInputError(
            f"--ray-address must be HOST:PORT of a Ray cluster, not {ray_address!r}"
        ) from None
    return project.model_copy(update={"tuning": tuning})


def _raise_findings(payload: dict[str, Any]) -> None:
    """Exit 1 when a behaviour test, a fairness limit or the baseline gate withheld the alias."""
    from keel.errors import KeelFinding

    failed_behaviour = [b for b in payload["assessment"].get("behaviour", []) if not b["passed"]]
    if failed_behaviour:
        first = failed_behaviour[0]
        raise KeelFinding(
            f"behaviour test failed: {first['kind']}"
            f" {first.get('feature') or first.get('slice')}: {first['detail']}"
            + (f" (and {len(failed_behaviour) - 1} more)" if len(failed_behaviour) > 1 else "")
            + f"; version {payload['model']['version']} is registered without an alias"
        )
    fairness = payload["assessment"].get("fairness") or {}
    if fairness.get("breaches"):
        first = fairness["breaches"][0]
        extremes = first.get("groups") or {}
        between = (
            f" ({extremes['metric']}: {extremes['lowest']['group']}"
            f" {extremes['lowest']['value']:.3f} vs {extremes['highest']['group']}"
            f" {extremes['highest']['value']:.3f})"
            if extremes
            else ""
        )
        more = len(fairness["breaches"]) - 1
        raise KeelFinding(
            f"fairness gate failed: {first['feature']} {first['measure']} ="
            f" {first['value']:.4f}, limit {first['kind']} {first['limit']:g}{between}"
            + (f" (and {more} more)" if more else "")
            + f"; version {payload['model']['version']} is registered without an alias"
        )
    gate = payload["assessment"].get("gate")
    if gate and not gate["passed"]:
        d = gate["difference"]
        raise KeelFinding(
            f"baseline gate failed: {gate['model']} does not beat {gate['baseline']} on test"
            f" {gate['metric']} by {gate['margin']:g} with 95% confidence (difference"
            f" {d['value']:+.4f}, CI {d['low']:+.4f} to {d['high']:+.4f}); version"
            f" {payload['model']['version']} is registered without an alias"
        )


@app.command()
def card(
    model: ModelArg = None,
    config: ConfigOpt = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Folder for the files (default .keel/cards/NAME-vVERSION)."),
    ] = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Write the model card, datasheet, runbook and impact assessment of a version.

    Numbers come from the version's run (its report, config and training profile);
    owners, contacts, intended and out-of-scope uses, misuses, mitigations,
    limitations and data collection come from `card:` in keel.yaml as it was at
    training time; the runbook's commands, endpoints, key scopes and alert rules from
    its serving and monitoring settings; the datasheet's feature dictionary from
    `features:`. `keel run` writes the same files for every version it registers.
    Exit codes: 0 written, 2 unknown model or bad input.
    """
    from keel.config import load_config, resolve_settings
    from keel.pipeline import write_model_card

    with exit_codes(debug):
        project = load_config(config)
        settings = resolve_settings(project)
        paths = write_model_card(
            model or f"{project.name}@champion", settings.tracking_uri, out, project.root
        )
        if json_out:
            print(json.dumps({"paths": paths}))
        else:
            console = Console(stderr=True)
            for path in paths.values():
                console.print(f"wrote {path}")


@app.command()
def validate(
    data: Annotated[Path, typer.Argument(help="CSV or Parquet file to check.")],
    schema: Annotated[
        Path | None,
        typer.Option("--schema", "-s", help="Schema file (YAML/JSON) to check against."),
    ] = None,
    target: Annotated[
        str | None, typer.Option(help="Target column, when inferring a schema.")
    ] = None,
    write_schema: Annotated[
        Path | None,
        typer.Option("--write-schema", help="Write the (inferred) schema here, to edit."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Let --write-schema replace a file.")] = False,
    report: Annotated[
        Path | None,
        typer.Option(help="Folder for the reports (default .keel/reports/validate-<digest>)."),
    ] = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Check a data file against a schema and profile it; write JSON and HTML reports.

    Without --schema, the schema is inferred from DATA: write it with --write-schema,
    edit it (ranges, categories, formats), then check new data with --schema.
    Exit codes: 0 valid, 1 rules broken (every violation is listed), 2 bad input.
    """
    from keel.data import validate_file
    from keel.data import write_schema as save_schema
    from keel.errors import KeelFinding
    from keel.pipeline import write_validation_report

    with exit_codes(debug):
        if write_schema is not None and write_schema.exists() and not force:
            raise KeelInputError(
                f"{write_schema}: already exists; pass --force to replace it or choose another path"
            )
        result = validate_file(data, schema, target)
        payload = result.to_dict()
        profile = result.profile.to_dict()
        folder = (
            report or Path(".keel") / "reports" / f"validate-{result.dataset.digest}"
        ).resolve()
        payload["reports"] = write_validation_report(payload, profile, folder)
        if write_schema is not None:
            payload["schema_written"] = str(save_schema(result.schema, write_schema))
        if json_out:
            print(json.dumps(payload, default=str))
        else:
            _render_validation(payload)
        if not result.valid:
            first = result.violations[0].describe()
            more = len(result.violations) - 1
            raise KeelFinding(
                f"{data}: {first}" + (f" (and {more} more rule(s) broken)" if more else "")
            )


def _render_validation(result: dict[str, Any]) -> None:
    console = Console(highlight=False)
    verdict = "[green]valid[/green]" if result["valid"] else "[red]rules broken[/red]"
    console.print(
        f"{result['data']}: {result['rows']} rows, {result['columns']} columns,"
        f" digest {result['digest']}, schema {result['schema']}: {verdict}"
    )
    if result["violations"]:
        table = Table(title="Violations")
        for column in ("column", "rule", "failing rows", "examples"):
            table.add_column(column)
        for v in result["violations"]:
            examples = "; ".join(
                (f"row {e['row']}: " if "row" in e else "") + repr(e["value"])
                for e in v["examples"]
            )
            table.add_row(v["column"], v["check"], str(v["failing_rows"]), examples)
        console.print(table)
    console.print(f"Report: {result['reports']['html']}")
    if "schema_written" in result:
        console.print(f"Schema written to {result['schema_written']}: edit it, then use --schema")


@app.command()
def reproduce(
    run_id: Annotated[str, typer.Argument(help="The MLflow run id that `keel run` printed.")],
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Re-run a recorded run from its logged config, data snapshot and tuned parameters.

    Nothing is written. Every test metric is compared with the recorded one (to 1e-9),
    as are the chosen model and the data digest; the git commit of the code is compared
    too. Exit codes: 0 identical, 1 a difference (listed), 2 bad input.
    """
    from keel.config import load_config, resolve_settings
    from keel.errors import KeelFinding
    from keel.pipeline import reproduce as reproduce_run

    with exit_codes(debug):
        project = load_config(config)
        settings = resolve_settings(project)
        with redirect_stdout(sys.stderr):
            result = reproduce_run(run_id, project, settings)
        payload = result.to_dict()
        if json_out:
            print(json.dumps(payload, default=str))
        else:
            console = Console(highlight=False)
            verdict = "[green]identical[/green]" if result.identical else "[red]different[/red]"
            console.print(
                f"run {run_id}: {verdict} ({result.compared} test metrics compared;"
                f" model {result.candidate['reproduced']}; data {result.data_digest})"
            )
            for d in result.differences:
                console.print(f"  {d['metric']}: recorded {d['recorded']}, now {d['reproduced']}")
            if result.same_code is False:
                console.print(
                    f"  code differs: recorded {result.recorded_commit},"
                    f" now {result.current_commit}"
                )
        if not result.identical:
            raise KeelFinding(
                f"run {run_id} does not reproduce: {len(result.differences)} difference(s),"
                f" first {result.differences[0]['metric']}"
            )
