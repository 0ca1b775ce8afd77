"""Commands that watch a model in production: `keel drift`, `keel monitor`."""

from __future__ import annotations

import json
import os
import re
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
    _interactive,
    _num,
    _registry,
    app,
)
from keel.cli._errors import exit_codes
from keel.errors import KeelInputError


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
            from keel.reports import write_drift_report

            found["html"] = write_drift_report(found, reference, str(current), html_out)
        if json_out:
            print(json.dumps(found))
        else:
            _print_drift(report, Path(reference).name, current.name)
        if report.drifted:
            raise KeelFinding(
                f"dataset drift: {len(report.drifted_columns)} of {len(report.columns)} columns"
                f" drifted ({', '.join(report.drifted_columns[:8])})"
            )


def _print_drift(report: Any, reference: str, current: str) -> None:
    """One row per column: the test, its statistic and p-value, PSI, JS, W/σ, drift."""
    table = Table(title=f"Drift: {reference} → {current}")
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
    from keel.families import FAMILIES
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
            family = FAMILIES.of_metadata(found["model"])  # the report's own record
            atomic_write(html_out, family.render_dashboard(found, recent_alerts(project, log)))
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
    from keel.families import FAMILIES

    console = Console()
    model = found["model"]
    table = Table(
        title=f"Monitoring {model['name']} v{model['version']}: {found['rows']} rows,"
        f" windows of {found['window']}"
    )
    heads, row = FAMILIES.of_metadata(model).monitor_table()
    for head in heads:
        table.add_column(head)
    for w in found["windows"][-20:]:
        when = _short_time(w["start"]) + ("" if w["complete"] else " (open)")
        table.add_row(str(w["index"]), when, str(w["rows"]), *row(w, _num))
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

    if Path(reference).exists() or not MODEL_URI.match(reference):
        return read_table(Path(reference))
    from keel.pipeline import package_reference  # a model's reference: the registry

    _, found, outputs = package_reference(reference, _registry(config))
    for name, column in outputs.columns.items():  # model outputs, when CURRENT has them
        if name in current.columns and name not in found.columns:
            found.columns[name] = column
    return found
