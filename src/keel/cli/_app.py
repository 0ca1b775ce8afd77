"""The ``keel`` command: thin — parse, call the library, render."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import sys
from contextlib import redirect_stdout
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from keel._version import __version__
from keel.cli._errors import exit_codes
from keel.errors import KeelInputError

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


@app.command()
def run(
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
    from_stage: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="Re-run this stage and every later one, whatever is stored"
            " (ingest, pii, validate, split, leakage, profile, tune, train, evaluate,"
            " fairness, explain, register, compare, report, card, alias).",
        ),
    ] = None,
    no_cache: Annotated[
        bool,
        typer.Option("--no-cache", help="Run every stage; reuse and store nothing."),
    ] = False,
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

    Every stage's outputs are stored under .keel/stages by a key of its code, the
    keel.yaml keys it reads and its inputs: a stage whose key is stored is reused, so
    running again with the same config, data and code re-runs nothing and registers no
    new version, changing only `card:` re-runs only the card, and a run after a failure
    (or a kill) resumes where it stopped. --json lists every stage: ran or reused.
    Exit codes: 0 done, 1 a gate failed, 2 bad config or data (nothing written).
    """
    from keel.config import load_config, resolve_settings
    from keel.errors import KeelFinding
    from keel.pipeline import STAGES, run_project

    with exit_codes(debug):
        project = load_config(config)
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
            bar = progress.add_task("keel run", total=len(STAGES), detail="")

            def observe(stage: str, detail: str) -> None:
                if stage in STAGES:
                    progress.update(bar, completed=STAGES.index(stage))
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
            progress.update(bar, completed=len(STAGES))
        payload = result.to_dict()
        if json_out:
            print(json.dumps(payload, default=str))
        else:
            _render_run(payload)
        failed_behaviour = [
            b for b in payload["assessment"].get("behaviour", []) if not b["passed"]
        ]
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


def _render_run(result: dict[str, Any]) -> None:
    console = Console(highlight=False)
    primary = result["primary_metric"]
    table = Table(
        title=f"Candidates fitted on the train split (validation {primary}, test {primary})"
    )
    table.add_column("candidate")
    table.add_column(f"val {primary}", justify="right")
    table.add_column(f"test {primary}", justify="right")
    table.add_column("fit", justify="right")
    for c in result["candidates"]:
        chosen = " ✔" if c["name"] == result["model"]["candidate"] else ""
        table.add_row(
            c["name"] + chosen,
            _num(c["validation"].get(primary)),
            _num(c["test"].get(primary)),
            f"{c['fit_seconds']:.2f}s",
        )
    console.print(table)
    intervals = result["assessment"]["intervals"]
    cv = result["assessment"]["cross_validation"]
    metrics = Table(title="Test metrics of the chosen model (95% bootstrap CI; CV on train)")
    metrics.add_column("metric")
    metrics.add_column("test", justify="right")
    metrics.add_column("95% CI", justify="right")
    metrics.add_column("CV mean ± std", justify="right")
    for name, value in sorted(result["metrics"].items()):
        ci = intervals.get(name, {})
        fold = cv.get(name)
        metrics.add_row(
            name,
            _num(value),
            f"{_num(ci.get('low'))} – {_num(ci.get('high'))}" if ci else "—",
            f"{fold['mean']:.4f} ± {fold['std']:.4f}" if fold else "—",
        )
    console.print(metrics)
    gate = result["assessment"].get("gate")
    if gate:
        d = gate["difference"]
        verdict = "[green]passed[/green]" if gate["passed"] else "[red]FAILED[/red]"
        console.print(
            f"Baseline gate {verdict}: {gate['model']} − {gate['baseline']} on test"
            f" {gate['metric']} = {d['value']:+.4f} (95% CI {d['low']:+.4f} to {d['high']:+.4f})"
        )
    versus = result["assessment"].get("versus_champion")
    if versus:
        verdict = "[green]promoted[/green]" if versus["promote"] else "stays challenger"
        console.print(f"Against the champion: {verdict} — {versus['reason']}")
    for test in result["assessment"].get("behaviour", []):
        verdict = "[green]passed[/green]" if test["passed"] else "[red]FAILED[/red]"
        what = test.get("feature") or test.get("slice")
        console.print(f"Behaviour {test['kind']} {what}: {verdict} — {test['detail']}")
    fairness = result["assessment"].get("fairness")
    if fairness:
        for feature, found in fairness["features"].items():
            shown = ", ".join(
                f"{k} {v:.3f}"
                for k, v in found["measures"].items()
                if k in ("demographic_parity_difference", "equalized_odds_difference")
            )
            console.print(f"Fairness {feature}: {shown or 'one judged group only'}")
    for name, tuning in result.get("tuning", {}).items():
        console.print(
            f"Tuned {name}: {tuning['trials']} trials ({tuning['pruned']} pruned) in"
            f" {tuning['seconds']:.0f}s, best CV {tuning['metric']} {_num(tuning['best_cv_score'])}"
        )
    model = result["model"]
    console.print(
        f"Registered [bold]{model['uri']}[/bold] (version {model['version']},"
        f" {model['candidate']}); MLflow run {result['run_id']}"
    )
    console.print(f"Data {result['data']['digest']} ({result['data']['rows']} rows)")
    reused = [s["name"] for s in result.get("stages", []) if s["status"] == "reused"]
    if reused:
        ran = [s["name"] for s in result["stages"] if s["status"] != "reused"]
        console.print(
            f"Stages reused from .keel/stages: {len(reused)} of {len(result['stages'])}"
            + (f" (ran: {', '.join(ran)})" if ran else " (nothing changed: no new version)")
        )
    console.print(f"Report: {result['reports']['html']}")
    console.print(f"MLflow UI: mlflow ui --backend-store-uri {result['tracking_uri']}")


def _num(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "—"
    return f"{value:.4f}"


@app.command()
def card(
    model: Annotated[
        str | None,
        typer.Argument(
            help="NAME, NAME@ALIAS or NAME/VERSION in the registry (default: <name>@champion)."
        ),
    ] = None,
    config: ConfigOpt = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Folder for the files (default .keel/cards/NAME-vVERSION)."),
    ] = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Write the model card (Markdown + HTML) and the datasheet of a registered version.

    Numbers come from the version's run (its report, config and training profile);
    owners, intended and out-of-scope uses, limitations and data collection come from
    `card:` in keel.yaml as it was at training time. `keel run` writes the same files
    for every version it registers. Exit codes: 0 written, 2 unknown model or bad input.
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
    from keel.registry import mlflow_scope, model_version, parse_model_uri

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
        folder = out or project.root / "deployments" / f"{name}-{alias}"
        paths = build_files(name, alias, str(mv.version), folder, force)
        if json_out:
            print(json.dumps({"model": uri, "version": str(mv.version), "paths": paths}))
            return
        console = Console(stderr=True)
        for path in paths.values():
            console.print(f"wrote {path}")


@app.command()
def drift(
    reference: Annotated[
        str,
        typer.Argument(
            help="Reference data (CSV or Parquet), or a registered model (NAME@ALIAS or"
            " NAME/VERSION) whose package's training reference is used."
        ),
    ],
    current: Annotated[Path, typer.Argument(help="Current data (CSV or Parquet).")],
    columns: Annotated[
        str | None, typer.Option(help="Comma-separated columns (default: every shared one).")
    ] = None,
    alpha: Annotated[float, typer.Option(help="p-value below which a column drifts.")] = 0.05,
    correction: Annotated[
        str, typer.Option(help="Across columns: none, bonferroni or holm.")
    ] = "none",
    share: Annotated[
        float, typer.Option(help="Share of drifted columns that makes the table drift.")
    ] = 0.5,
    html_out: Annotated[
        Path | None, typer.Option("--html", help="Also write a self-contained HTML page here.")
    ] = None,
    chunk_rows: Annotated[
        int | None,
        typer.Option(
            min=1000,
            help="Read the files this many rows at a time (tables larger than memory):"
            " mergeable value counts per column, exact up to 1,000,000 distinct values.",
        ),
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option(help="Build the chunks' statistics on this Ray cluster (implies chunks)."),
    ] = None,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Compare two tables column by column: KS or chi-square, PSI, Wasserstein, JS.

    With --chunk-rows (or --ray-address) neither table is held in memory: each is read
    in chunks into per-column value counts that merge exactly, with a progress bar; on
    a Ray cluster the chunks are counted by its workers.

    REFERENCE is a file, or a model: `keel drift income@champion today.csv` compares
    with the training reference stored in the package (value counts per column, exact
    for columns with up to 20,000 distinct values; the training data is not needed).

    Numeric columns get scipy's two-sample Kolmogorov–Smirnov test (its p-values,
    exact mode where scipy uses it), PSI and Jensen–Shannon distance on the reference's
    deciles, and the Wasserstein distance; categorical ones a chi-square test of
    homogeneity (categories new in CURRENT counted and listed), PSI and JS on the
    shares. Exit codes: 0 no dataset drift, 1 dataset drift (a finding), 2 bad input.
    """
    from keel.data import read_table
    from keel.errors import KeelFinding
    from keel.monitoring import DriftThresholds, drift_report

    with exit_codes(debug):
        if correction not in ("none", "bonferroni", "holm"):
            raise KeelInputError(
                f"--correction must be none, bonferroni or holm, not {correction!r}"
            )
        if not 0 < alpha < 1 or not 0 <= share <= 1:
            raise KeelInputError("--alpha must be in (0, 1) and --share in [0, 1]")
        wanted = [c.strip() for c in columns.split(",") if c.strip()] if columns else None
        if chunk_rows is not None or ray_address is not None:
            ref, cur = _chunked_tables(
                reference, current, config, chunk_rows or 100_000, ray_address, wanted, json_out
            )
        else:
            cur = read_table(current)
            ref = _drift_reference(reference, config, cur)
        for table, path in ((ref, reference), (cur, current)):
            if table.empty if hasattr(table, "empty") else table.rows == 0:
                raise KeelInputError(f"{path}: no rows to compare")
        try:
            report = drift_report(
                ref,
                cur,
                wanted,
                DriftThresholds(alpha=alpha, correction=correction, dataset_share=share),
                workers=os.cpu_count() or 1,  # large tables: columns over one process per core
            )
        except ValueError as exc:
            raise KeelInputError(f"{reference} vs {current}: {exc}") from exc
        found = report.to_dict()
        if html_out is not None:
            from keel.pipeline import write_drift_report

            found["html"] = write_drift_report(found, reference, str(current), html_out)
        if json_out:
            print(json.dumps(found))
        else:
            table = Table(title=f"Drift: {Path(reference).name} → {current.name}")
            for head in ("column", "test", "statistic", "p-value", "PSI", "JS", "W/σ", "drift"):
                table.add_column(head, justify="right" if head != "column" else "left")
            for c in report.columns:
                table.add_row(
                    c.column,
                    c.test,
                    f"{c.statistic:.4f}",
                    f"{c.p_value:.3g}",
                    f"{c.psi:.3f}",
                    f"{c.jensen_shannon:.3f}",
                    "—" if c.wasserstein_normalized is None else f"{c.wasserstein_normalized:.3f}",
                    "[red]yes[/red]" if c.drifted else "no",
                )
            Console().print(table)
        if report.drifted:
            raise KeelFinding(
                f"dataset drift: {len(report.drifted_columns)} of {len(report.columns)} columns"
                f" drifted ({', '.join(report.drifted_columns[:8])})"
            )


@app.command()
def monitor(
    model: Annotated[
        str | None, typer.Argument(help="NAME@ALIAS or NAME/VERSION (default: <name>@champion).")
    ] = None,
    log: Annotated[
        str | None,
        typer.Option(help="Prediction log: SQLite file or database URL (default: serving's)."),
    ] = None,
    window: Annotated[
        str | None,
        typer.Option(help="hour, day, or a row count (default: monitoring.window, day)."),
    ] = None,
    html_out: Annotated[
        Path | None, typer.Option("--html", help="Also write the dashboard page here.")
    ] = None,
    alerts: Annotated[
        bool, typer.Option(help="Raise and deliver new alerts (--no-alerts: only report).")
    ] = True,
    retrain_on_alert: Annotated[
        bool,
        typer.Option(
            "--retrain",
            help="When this run raises an alert of monitoring.retrain.severities, train a"
            " challenger on the data plus the labelled production rows (keel run).",
        ),
    ] = False,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Watch a served model: drift, skew, performance and fairness per window; alerts.

    Reads the model's rows from the prediction log (what `keel serve` writes, labels
    from POST /feedback included) and its package's training reference (the training
    data is not needed), cuts the rows into windows (calendar hours or days in UTC, or
    N rows at a time) and, per window with at least monitoring.min_rows rows: feature
    drift (KS / chi-square, PSI, Wasserstein, JS), prediction drift, unseen
    categories, latency, performance where labels arrived (concept drift) and fairness
    per sensitive group (bias emergence). Training-serving skew compares every row
    served with the training data. Rules in monitoring.alerts raise one alert per
    incident (a run of crossing windows), delivered to monitoring.sinks (log, JSON
    lines, webhook). With --retrain, such an alert starts a `keel run` on the configured
    data plus the labelled rows of the log: the new version goes through every gate and
    becomes champion only by the release policy. Exit codes: 0 no new alert, 1 new
    alerts raised, 2 bad input.
    """
    from keel.config import check_window, load_config
    from keel.errors import KeelFinding
    from keel.monitoring import render_dashboard
    from keel.pipeline import atomic_write, recent_alerts, retrain, run_monitor

    with exit_codes(debug):
        project = load_config(config)
        spec: str | int | None = None
        if window is not None:
            try:
                spec = check_window(window)
            except ValueError as exc:
                raise KeelInputError(f"--window: {exc}") from exc
        report, deliveries = run_monitor(project, model, log, spec, alerts=alerts)
        found = report.to_dict()
        found["deliveries"] = deliveries
        if retrain_on_alert:
            found["retrain"] = retrain(project, report, log)
        if html_out is not None:
            atomic_write(html_out, render_dashboard(found, recent_alerts(project, log)))
            found["html"] = str(html_out)
        if json_out:
            print(json.dumps(found, default=str))
        else:
            _print_monitor(found)
        if report.alerts:
            raise KeelFinding(f"{len(report.alerts)} new alert(s)")


def _short_time(t: float) -> str:
    import time

    return time.strftime("%m-%d %H:%M:%S", time.gmtime(t))


def _print_monitor(found: dict[str, Any]) -> None:
    console = Console()
    model = found["model"]
    table = Table(
        title=f"Monitoring {model['name']} v{model['version']}: {found['rows']} rows,"
        f" windows of {found['window']}"
    )
    heads = ("#", "from (UTC)", "rows", "drift", "drifted", "pred.", "acc/MAE", "DP", "p95 ms")
    for head in heads:
        table.add_column(head)
    for w in found["windows"][-20:]:
        m = w["metrics"]
        table.add_row(
            str(w["index"]),
            _short_time(w["start"]) + ("" if w["complete"] else " (open)"),
            str(w["rows"]),
            _num(m.get("drift_share")) if w["judged"] else "too few rows",
            ", ".join((w["drift"] or {}).get("drifted_columns", [])[:4]) or "—",
            "[red]yes[/red]" if m.get("prediction_drift") else "—",
            _num(m.get("accuracy", m.get("mae"))),
            _num(m.get("demographic_parity_difference")),
            _num(m.get("latency_p95_ms")),
        )
    console.print(table)
    skew = found.get("skew") or {}
    if skew:
        columns = skew.get("drifted_columns", [])
        console.print(
            "training-serving skew: "
            + (f"[red]{', '.join(columns[:8])}[/red]" if columns else "none")
            + f" (unseen categories in {skew.get('unseen_share', 0):.1%} of rows)"
        )
    for note in found.get("notes", []):
        console.print(f"[dim]{note}[/dim]")
    for alert in found.get("alerts", []):
        console.print(f"[red]alert[/red] {alert['message']}")
    for d in found.get("deliveries", []):
        if d["error"]:
            console.print(f"[red]not delivered[/red] to {d['to']}: {d['error']}")
    if "html" in found:
        console.print(f"wrote {found['html']}")
    again = found.get("retrain")
    if again and again["retrained"]:
        model = again["model"]
        console.print(
            f"retrained on {again['production_rows']} labelled production rows: run"
            f" {again['run_id']}, {model.get('name')} v{model.get('version')}"
            f" (alias: {model.get('alias') or 'none'})"
        )
    elif again:
        console.print(f"[dim]not retrained: {again['why']}[/dim]")


def _chunked_tables(
    reference: str,
    current: Path,
    config: Path | None,
    rows: int,
    ray_address: str | None,
    wanted: list[str] | None,
    json_out: bool,
) -> tuple[Any, Any]:
    """Both tables as merged per-chunk references, with a progress bar."""
    from keel.monitoring import NumericReference, reference_of_file, total_rows

    console = Console(stderr=True)
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,} rows"),
        TimeElapsedColumn(),
        console=console,
        disable=not _interactive(json_out),
        transient=True,
    ) as progress:

        def read(path: Path, kinds: dict[str, str] | None) -> Any:
            if not path.exists():
                raise KeelInputError(f"{path}: no such file")
            bar = progress.add_task(f"reading {path.name}", total=total_rows(path))
            try:
                return reference_of_file(
                    path,
                    rows,
                    kinds=kinds,
                    columns=wanted,
                    ray_address=ray_address,
                    progress=lambda n: progress.advance(bar, n),
                )
            except ValueError as exc:
                raise KeelInputError(str(exc)) from exc

        header = _first_rows(current)
        if Path(reference).exists() or not MODEL_URI.match(reference):
            ref = read(Path(reference), None)
        else:  # the package's reference (with the model's outputs if CURRENT has them)
            ref = _drift_reference(reference, config, header)
        kinds = {
            name: "numeric" if isinstance(column, NumericReference) else "categorical"
            for name, column in ref.columns.items()
            if wanted is None or name in wanted
        }
        kinds = {name: kind for name, kind in kinds.items() if name in header.columns}
        if not kinds:
            raise KeelInputError(f"{reference} vs {current}: the two tables share no column")
        return ref, read(current, kinds)


def _first_rows(path: Path) -> Any:
    """The first rows of a CSV or Parquet file (its columns), or an input error."""
    from keel.monitoring import table_chunks

    if not path.exists():
        raise KeelInputError(f"{path}: no such file")
    try:
        return next(table_chunks(path, 100))
    except (ValueError, StopIteration, OSError) as exc:
        raise KeelInputError(f"{path}: cannot read it ({exc})") from exc


MODEL_URI = re.compile(r"^[A-Za-z0-9_.\-]+(@[A-Za-z0-9_\-]+|/[0-9]+)$")


def _drift_reference(reference: str, config: Path | None, current: Any) -> Any:
    """A table read from ``reference``, or the drift reference of the model it names."""
    from keel.data import read_table
    from keel.pipeline import package_reference

    if Path(reference).exists() or not MODEL_URI.match(reference):
        return read_table(Path(reference))
    _, found, outputs = package_reference(reference, _registry(config))
    for name, column in outputs.columns.items():  # model outputs, when CURRENT has them
        if name in current.columns and name not in found.columns:
            found.columns[name] = column
    return found


@app.command()
def check(
    model: Annotated[
        str | None,
        typer.Argument(
            help="NAME, NAME@ALIAS or NAME/VERSION in the registry (default: <name>@champion)."
        ),
    ] = None,
    config: ConfigOpt = None,
    record: Annotated[
        bool,
        typer.Option(
            "--record/--no-record", help="Record the result and waivers on the model version."
        ),
    ] = True,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Check a registered version against the Definition of Done, one gate per item.

    Model: schema, feature_code, tracked, evaluated, fairness, registered, load_tested,
    drift, dashboard, rollback, tests. Pipeline: stage_io, boundary_validation,
    idempotent, failure_alerts, lineage, end_to_end. Each gate says pass, fail or "not
    available yet" (the capability is not built yet) with its evidence (a run id, an
    artifact URI, a number). `gates: {required: [...], waivers: {GATE: {reason, author}}}`
    in keel.yaml says which must pass; the result and the waivers are recorded as tags
    on the version (`keel.check`, `keel.waiver.GATE`). Exit codes: 0 every required gate
    passed or is waived, 1 one did not, 2 unknown model or bad config.
    """
    from keel.config import load_config, resolve_settings
    from keel.errors import KeelFinding
    from keel.pipeline import check_version

    with exit_codes(debug):
        project = load_config(config)
        settings = resolve_settings(project)
        checklist = check_version(
            model or f"{project.name}@champion", settings.tracking_uri, project.gates, record
        )
        if json_out:
            print(json.dumps(checklist.to_dict()))
        else:
            _print_checklist(checklist)
        if not checklist.passed:
            names = ", ".join(r.gate for r in checklist.blocking)
            raise KeelFinding(
                f"{checklist.model} version {checklist.version} is not done: required gate(s)"
                f" {names} did not pass; fix them or waive them in keel.yaml (gates: waivers:)"
            )


def _print_checklist(checklist: Any) -> None:
    colour = {"pass": "green", "fail": "red", "waived": "yellow", "not available yet": "dim"}
    table = Table(title=f"{checklist.model} version {checklist.version}: Definition of Done")
    for column in ("checklist", "gate", "item", "required", "status", "evidence"):
        table.add_column(column, overflow="fold")
    for r in checklist.results:
        status = f"[{colour.get(r.status, 'white')}]{r.status}[/]"
        evidence = r.evidence
        if r.waiver:
            evidence = f"waived by {r.waiver['author']}: {r.waiver['reason']} — {evidence}"
        table.add_row(r.checklist, r.gate, r.item, "yes" if r.required else "", status, evidence)
    Console().print(table)


@app.command()
def serve(
    config: ConfigOpt = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="NAME, NAME@ALIAS or NAME/VERSION in the registry (default: <name>@champion).",
        ),
    ] = None,
    host: Annotated[
        str, typer.Option(help="Interface to bind. Loopback by default; anything else is public.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes.")] = 1,
    poll_seconds: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=3600.0,
            help="How often to ask the registry where the alias points (0: never follow).",
        ),
    ] = 5.0,
    debug: DebugOpt = False,
) -> None:
    """Serve a registered model over REST: POST /predict, GET /health, docs at /docs.

    The model is loaded from the MLflow registry only (never from a file path):
    by default `<name>@champion` of the keel.yaml in this folder. Served by alias, the
    server follows it: every --poll-seconds it asks the registry where the alias
    points, and when `keel promote` or `keel rollback` moved it, loads the new version
    beside the old one, checks it answers its own example rows, and swaps atomically —
    requests in flight finish on the old model, none fails. NAME/VERSION is pinned.
    """
    from keel.config import load_config, resolve_settings
    from keel.registry import load_package, parse_model_uri
    from keel.serving import ServingSpec, create_app_from_spec, log_url

    with exit_codes(debug):
        project = load_config(config)
        settings = resolve_settings(project)
        uri = model or f"{project.name}@champion"
        package = load_package(uri, settings.tracking_uri)
        console = Console(stderr=True)
        if not is_loopback(host):
            console.print(
                f"[yellow]warning:[/yellow] binding {host} exposes the model beyond this machine"
            )
        console.print(
            f"serving {package.name} version {package.version} ({package.task})"
            f" on http://{host}:{port}  (POST /predict, GET /health, /docs)"
        )
        import uvicorn

        from keel.responsible import explain_row

        serving = project.serving.model_copy(
            update={"redact": {**project.pii.columns, **project.serving.redact}}
        )
        url = log_url(serving.prediction_log, project.root) if serving.prediction_log else None
        console.print(f"prediction log: {_shown_url(url) if url else 'off'}")
        alias = parse_model_uri(uri)[2] if poll_seconds > 0 else None
        if alias:
            console.print(
                f"following {package.name}@{alias} (registry polled every {poll_seconds:g} s)"
            )
        spec = ServingSpec(
            model=f"{package.name}/{package.version}",
            tracking_uri=settings.tracking_uri,
            follow_alias=alias,
            poll_seconds=poll_seconds if poll_seconds > 0 else 5.0,
            serving=serving,
            monitoring=project.monitoring,
            log_url=url,
        )
        if workers == 1:
            app = create_app_from_spec(spec, explain_row, package)
            uvicorn.run(app, host=host, port=port, log_level="warning")
        else:
            os.environ.update(spec.to_env())  # one typed spec for every worker process
            uvicorn.run(
                "keel.cli._app:serving_app",
                factory=True,
                host=host,
                port=port,
                workers=workers,
                log_level="warning",
            )


@app.command()
def loadtest(
    url: Annotated[
        str, typer.Argument(help="The running server (loopback only).")
    ] = "http://127.0.0.1:8000",
    requests: Annotated[int, typer.Option(help="At most this many requests (≤ 100,000).")] = 1000,
    seconds: Annotated[float, typer.Option(help="Stop after this long (≤ 600 s).")] = 30.0,
    concurrency: Annotated[int, typer.Option(help="Clients sending at once.")] = 8,
    rows: Annotated[int, typer.Option(help="Rows per request.")] = 1,
    api_key: Annotated[
        str | None, typer.Option(envvar="KEEL_API_KEY", help="Key, if the server needs one.")
    ] = None,
    record: Annotated[
        bool, typer.Option("--record/--no-record", help="Attach the result to the version.")
    ] = True,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Drive a running `keel serve` and report p50/p95/p99 latency, throughput, errors.

    Sends POST /predict with the served package's own example rows from --concurrency
    clients until --requests are done or --seconds have passed, on loopback only. The
    result is recorded on the served version (tag `keel.loadtest`): the evidence of
    `keel check`'s load_tested gate and the latency section of `keel card`. Exit codes:
    0 measured with no error, 1 some requests failed, 2 bad options or no server.
    """
    from keel.config import load_config, resolve_settings
    from keel.errors import KeelFinding
    from keel.serving import record_loadtest, run_loadtest

    with exit_codes(debug):
        project = load_config(config)
        tracking = resolve_settings(project).tracking_uri
        console = Console(stderr=True)
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
            console=console,
            disable=not _interactive(json_out),
            transient=True,
        ) as bar:
            task = bar.add_task("loadtest", total=requests)
            result = run_loadtest(
                url,
                tracking,
                requests=requests,
                seconds=seconds,
                concurrency=concurrency,
                rows=rows,
                api_key=api_key,
                progress=lambda n: bar.update(task, completed=n),
            )
        if record and result.requests:
            record_loadtest(result, tracking)
        if json_out:
            print(json.dumps(result.to_dict()))
        else:
            table = Table(
                title=f"{result.model['name']} version {result.model['version']} at {result.url}"
            )
            for column in (
                "requests",
                "concurrency",
                "rows",
                "p50 ms",
                "p95 ms",
                "p99 ms",
                "max ms",
                "req/s",
                "errors",
            ):
                table.add_column(column, justify="right")
            table.add_row(
                str(result.requests),
                str(result.concurrency),
                str(result.rows_per_request),
                f"{result.p50_ms:.1f}",
                f"{result.p95_ms:.1f}",
                f"{result.p99_ms:.1f}",
                f"{result.max_ms:.1f}",
                f"{result.throughput:.0f}",
                f"{result.error_rate:.2%}",
            )
            Console().print(table)
        if result.error_rate > 0:
            raise KeelFinding(
                f"{result.error_rate:.2%} of requests failed: {result.statuses}"
                + (" (recorded)" if record else "")
            )


NameArg = Annotated[str, typer.Argument(help="The registered model's name.")]
ReasonOpt = Annotated[
    str | None, typer.Option("--reason", help="Why: recorded in the alias history.")
]


def serving_app() -> Any:
    """The app factory each `keel serve --workers N` worker runs (explanations wired in)."""
    from keel.responsible import explain_row
    from keel.serving import create_app_from_env

    return create_app_from_env(explain_row=explain_row)


def _shown_url(url: str) -> str:
    """A database URL without its password, for the terminal."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def _registry(config: Path | None) -> str:
    """The tracking URI of the project in this folder (or of --config)."""
    from keel.config import load_config, resolve_settings

    return resolve_settings(load_config(config)).tracking_uri


def _print_event(event: Any, json_out: bool) -> None:
    if json_out:
        print(json.dumps(event.to_dict()))
        return
    Console(stderr=True).print(
        f"{event.model}@{event.alias}: version {event.from_version or '-'} →"
        f" {event.to_version} ({event.action} by {event.who}: {event.why})"
    )


@app.command()
def promote(
    name: NameArg,
    version: Annotated[str, typer.Argument(help="The version to promote.")],
    to: Annotated[
        str, typer.Option("--to", help="champion, staging or production (only from staging).")
    ] = "champion",
    force: Annotated[
        bool, typer.Option("--force", help="Promote although a gate failed (needs --reason).")
    ] = False,
    reason: ReasonOpt = None,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Point an alias (default `champion`) at a version, if its gates passed.

    Runs `keel check` on the version first (recorded on it): every gate required by
    keel.yaml's `gates:` must pass or be waived there, and no gate of the version's own
    run (baseline, fairness, behaviour) may have failed unless waived. `--force
    --reason` overrides, and the override is recorded with the gates it skipped.
    The move is recorded (who, when, from, to, why) and listed by `keel history`.
    A running `keel serve` of NAME@ALIAS follows the alias. Promoting the version the
    alias already points at changes nothing and succeeds, so a deployment script can be
    re-run. Exit codes: 0 moved (or already there), 1 refused (a gate failed, not in
    staging, or a racing move), 2 unknown model or version, or bad options.
    """
    from keel.config import load_config, resolve_settings
    from keel.pipeline import check_version
    from keel.registry import mlflow_scope
    from keel.registry import promote as promote_version

    with exit_codes(debug):
        project = load_config(config)
        uri = resolve_settings(project).tracking_uri
        # required Definition-of-Done gates, plus any gate the run itself failed,
        # unless keel.yaml waives it (the check, and its waivers, are recorded)
        checklist = check_version(f"{name}/{version}", uri, project.gates)
        with mlflow_scope(uri) as client:
            event = promote_version(
                client,
                uri,
                name,
                version,
                to=to,
                force=force,
                reason=reason,
                failed=checklist.promotion_blockers,
            )
        if event is None:
            message = f"{name}@{to} is already version {version}; nothing changed"
            if json_out:
                print(
                    json.dumps({"model": name, "alias": to, "version": version, "changed": False})
                )
            Console(stderr=True).print(message)
            return
        _print_event(event, json_out)


@app.command()
def rollback(
    name: NameArg,
    alias: Annotated[str, typer.Option("--alias", help="The alias to move back.")] = "champion",
    reason: ReasonOpt = None,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Put back the version the alias (default `champion`) pointed at before its last move.

    One command, recorded like any move; running again undoes it. Exit codes: 0 rolled
    back, 1 a racing move changed the alias, 2 unknown model or nothing to go back to.
    """
    from keel.registry import mlflow_scope
    from keel.registry import rollback as roll_back

    with exit_codes(debug):
        uri = _registry(config)
        with mlflow_scope(uri) as client:
            event = roll_back(client, uri, name, alias=alias, reason=reason)
        _print_event(event, json_out)


@app.command()
def history(
    name: NameArg,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """List every alias move of a model, oldest first: when, who, alias, from, to, why.

    Exit codes: 0 listed, 2 unknown model.
    """
    from keel.registry import ALIASES, alias_version, mlflow_scope
    from keel.registry import history as alias_history

    with exit_codes(debug):
        uri = _registry(config)
        with mlflow_scope(uri) as client:
            events = alias_history(client, name)
            now = {a: alias_version(client, name, a) for a in ALIASES}
        if json_out:
            print(
                json.dumps({"model": name, "aliases": now, "events": [e.to_dict() for e in events]})
            )
            return
        table = Table(title=f"{name}: alias history")
        for column in ("when (UTC)", "who", "action", "alias", "from", "to", "why"):
            table.add_column(column)
        for e in events:
            table.add_row(
                e.when.replace("T", " ")[:19],
                e.who,
                e.action,
                e.alias,
                e.from_version or "-",
                e.to_version or "-",
                e.why,
            )
        console = Console()
        console.print(table)
        console.print(
            "now: " + ", ".join(f"{a} → {v}" for a, v in now.items() if v) or "no aliases"
        )


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
    from keel.errors import KeelFinding, KeelInputError
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


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main() -> None:
    """Entry point of the ``keel`` command."""
    app()
