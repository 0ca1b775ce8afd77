"""Commands that serve a model: `keel serve`, `keel loadtest`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from keel.cli._common import (
    ConfigOpt,
    DebugOpt,
    JsonOpt,
    _shown_url,
    app,
    is_loopback,
    progress_bar,
)
from keel.cli._errors import exit_codes


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
    from keel.registry import package_family, parse_model_uri
    from keel.serving import POLL_SECONDS, ServingSpec, create_app_from_spec, log_url

    with exit_codes(debug):
        project = load_config(config)
        settings = resolve_settings(project)
        uri = model or f"{project.name}@champion"
        family = package_family(uri, settings.tracking_uri)  # one read of MLmodel
        package = family.load(uri, settings.tracking_uri)
        console = Console(stderr=True)
        if not is_loopback(host):
            console.print(
                f"[yellow]warning:[/yellow] binding {host} exposes the model beyond this machine"
            )
        routes = ", ".join(f"POST {r}" for r in family.capabilities.serves_routes[:1])
        console.print(
            f"serving {package.name} version {package.version} ({package.task})"
            f" on http://{host}:{port}  ({routes}, GET /health, /docs)"
        )
        import uvicorn

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
            poll_seconds=poll_seconds if poll_seconds > 0 else POLL_SECONDS,  # unused then
            serving=serving,
            monitoring=project.monitoring,
            privacy=project.privacy,
            log_url=url,
        )
        if workers == 1:
            app = create_app_from_spec(spec, package=package)
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
        with progress_bar(
            "{task.description}", "{task.completed}/{task.total}", console, json_out
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


def serving_app() -> Any:
    """The app factory each `keel serve --workers N` worker runs."""
    from keel.serving import create_app_from_env

    return create_app_from_env()


@app.command()
def predict(
    model: Annotated[str, typer.Argument(help="NAME, NAME@ALIAS or NAME/VERSION.")],
    source: Annotated[
        str,
        typer.Argument(
            metavar="INPUT", help="CSV / Parquet / JSON Lines, or a database URL with --query."
        ),
    ],
    out: Annotated[
        Path, typer.Argument(metavar="OUTPUT", help="Where to write (.parquet or .csv).")
    ],
    query: Annotated[
        str | None, typer.Option(help="The SQL query when INPUT is a database URL.")
    ] = None,
    rejects: Annotated[
        Path | None,
        typer.Option(help="Where rows that fail the checks go (default OUTPUT.rejects.csv)."),
    ] = None,
    chunk: Annotated[
        int, typer.Option(help="Rows per chunk: memory holds one chunk at a time.")
    ] = 50_000,
    k: Annotated[int, typer.Option("--k", help="Items per user (recommenders).")] = 10,
    filters: Annotated[
        str | None, typer.Option(help="Recommenders: JSON {include, exclude, where} or @FILE.")
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option(help="Score the chunks as tasks on this Ray cluster (HOST:PORT)."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace OUTPUT (and the reject file).")] = False,
    record: Annotated[
        bool,
        typer.Option("--record/--no-record", help="Record the lineage on the model version."),
    ] = True,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Score every row of INPUT with a registered model, as `POST /predict` would.

    The rows go through serving's checks a chunk at a time; those that pass get the
    same answer as `/predict` (the same decision threshold), those that fail go to the
    reject file with their row number and every rule they broke. OUTPUT has `row`, the
    id columns INPUT has, `prediction` and one `probability_<class>` per class; it and
    the reject file appear whole or not at all. The run's lineage (model version, input
    and its SHA-256, rows scored and rejected, output) is recorded on the version
    (`keel.batch.*` tags). --ray-address checks and scores the chunks as tasks on a Ray
    cluster; the driver reads INPUT and writes OUTPUT. A recommender writes the top
    --k items of every user in INPUT, as `keel recommend` does (--filters narrows the
    lists). Example: keel predict
    income@champion people.parquet scores.parquet; keel predict income sqlite:///crm.db out.csv
    --query 'SELECT * FROM customers'. Exit codes: 0 written (rejects are reported,
    not failures), 2 unknown model, unreadable INPUT, a missing feature column, or
    OUTPUT exists.
    """
    from keel.config import load_config, resolve_settings
    from keel.errors import KeelInputError
    from keel.registry import mlflow_scope, package_family, record_batch

    with exit_codes(debug):
        project = load_config(config)
        tracking = resolve_settings(project).tracking_uri
        family = package_family(model, tracking)
        if not family.capabilities.batch_predict:
            raise KeelInputError(
                f"{model} is a {family.name} model: keel predict scores files for families"
                " that answer rows offline; serve it (keel serve) and send requests instead"
            )
        console = Console(stderr=True)
        with progress_bar("predict", "{task.completed:,} rows", console, json_out) as bar:
            task = bar.add_task("predict", total=None)

            def progress(done: int, total: int | None) -> None:
                bar.update(task, completed=done, total=total)

            summary, name, version = family.batch_predict(
                model,
                tracking,
                source,
                out,
                {
                    "query": query,
                    "root": project.root,
                    "rejects": rejects,
                    "force": force,
                    "chunk": chunk,
                    "unseen": project.serving.unseen_categories,
                    "progress": progress,
                    "ray_address": ray_address,
                    "k": k,
                    "filters": filters,
                },
            )
        if record:
            with mlflow_scope(tracking) as client:
                summary["lineage_tag"] = record_batch(client, name, version, summary)
        if json_out:
            print(json.dumps(summary, default=str))
            return
        _print_scored(console, summary, name, version)


def _print_scored(console: Console, summary: dict[str, Any], name: str, version: str) -> None:
    """What `keel predict` wrote, on a terminal (rows or recommendations)."""
    if "scored" in summary:
        console.print(
            f"scored {summary['scored']:,} of {summary['rows']:,} rows with {name} version"
            f" {version} into {summary['out']}"
            + (
                f"; {summary['rejected']:,} rejected into {summary['rejects']}"
                if summary["rejected"]
                else "; none rejected"
            )
        )
        for problem in summary["problems"][:5]:
            console.print(f"  {problem['rows']:,} × {problem['rule']}")
    else:
        console.print(
            f"wrote {summary['rows']} recommendations for {summary['users']} users to"
            f" {summary['out']}"
        )
