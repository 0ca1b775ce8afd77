"""Commands that serve a model: `keel serve`, `keel loadtest`."""

from __future__ import annotations

import json
import os
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
    _shown_url,
    app,
    is_loopback,
)
from keel.cli._errors import exit_codes


def _bar(label: str, count: str, console: Console, json_out: bool) -> Progress:
    """The progress bar of a long command: spinner, label, bar, count, time (not in --json)."""
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
    from keel.registry import (
        load_package,
        load_recommender,
        load_retrieval,
        package_task,
        parse_model_uri,
    )
    from keel.serving import POLL_SECONDS, ServingSpec, create_app_from_spec, log_url
    from keel.tasks import get_task

    with exit_codes(debug):
        project = load_config(config)
        settings = resolve_settings(project)
        uri = model or f"{project.name}@champion"
        task = package_task(uri, settings.tracking_uri)  # one read of MLmodel picks the loader
        retrieval = task == "retrieval"
        recommender = get_task(task).family == "ranking"
        loader = load_retrieval if retrieval else load_recommender if recommender else load_package
        package = loader(uri, settings.tracking_uri)
        console = Console(stderr=True)
        if not is_loopback(host):
            console.print(
                f"[yellow]warning:[/yellow] binding {host} exposes the model beyond this machine"
            )
        route = "POST /ask" if retrieval else "POST /recommend" if recommender else "POST /predict"
        console.print(
            f"serving {package.name} version {package.version} ({package.task})"
            f" on http://{host}:{port}  ({route}, GET /health, /docs)"
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
            poll_seconds=poll_seconds if poll_seconds > 0 else POLL_SECONDS,  # unused then
            serving=serving,
            monitoring=project.monitoring,
            privacy=project.privacy,
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
        with _bar("{task.description}", "{task.completed}/{task.total}", console, json_out) as bar:
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
    """The app factory each `keel serve --workers N` worker runs (explanations wired in)."""
    from keel.responsible import explain_row
    from keel.serving import create_app_from_env

    return create_app_from_env(explain_row=explain_row)


@app.command()
def recommend(
    model: Annotated[str, typer.Argument(help="NAME, NAME@ALIAS or NAME/VERSION.")],
    users: Annotated[Path, typer.Argument(help="CSV / Parquet / JSON Lines with the users.")],
    out: Annotated[Path, typer.Argument(help="Where to write (.parquet or .csv).")],
    k: Annotated[int, typer.Option("--k", help="Items per user (1..1000).")] = 10,
    force: Annotated[bool, typer.Option(help="Replace OUT if it exists.")] = False,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Write the top-K items of every user in USERS to OUT, as `POST /recommend` would.

    MODEL is NAME, NAME@ALIAS or NAME/VERSION in the registry. Users are
    ranked in chunks with a progress bar, so memory stays flat however many users
    there are; a user the model never saw gets the popularity list with cold_start
    true. OUT (user_id, rank, item_id, score, cold_start) appears whole or not at all.
    Exit codes: 0 written, 2 bad input (unknown model, missing column, OUT exists).
    """
    from keel.config import load_config, resolve_settings
    from keel.registry import load_recommender
    from keel.serving._batch import recommend_file

    with exit_codes(debug):
        project = load_config(config)
        tracking = resolve_settings(project).tracking_uri
        loaded = load_recommender(model, tracking)
        with _bar(
            "recommend", "{task.completed}/{task.total} users", Console(stderr=True), json_out
        ) as bar:
            task = bar.add_task("recommend", total=None)
            summary = recommend_file(
                loaded,
                users,
                out,
                k,
                force,
                progress=lambda n, total: bar.update(task, completed=n, total=total),
            )
        if json_out:
            print(json.dumps(summary))
        else:
            Console(stderr=True).print(
                f"wrote {summary['rows']} recommendations for {summary['users']} users"
                f" ({summary['cold_start_users']} cold start) to {summary['out']}"
            )


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question, in words.")],
    model: Annotated[
        str | None,
        typer.Option("--model", help="NAME, NAME@ALIAS or NAME/VERSION (default <name>@champion)."),
    ] = None,
    k: Annotated[
        int | None, typer.Option("--k", min=1, max=20, help="Passages (default: the tuned number).")
    ] = None,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Answer QUESTION from a registered retrieval model, as `POST /ask` would, with citations.

    The model is loaded from the registry (default `<name>@champion` of the keel.yaml
    here); the same guardrails run, and the question is not logged. Example:
    keel ask "How do I roll back a model?" --model keel-docs@champion. Exit codes: 0
    answered, 1 blocked by a guardrail, 2 bad input (unknown model, not a retrieval model).
    """
    from keel.config import load_config, resolve_settings
    from keel.errors import KeelFinding, KeelInputError
    from keel.registry import is_retrieval, load_retrieval
    from keel.tasks._generate import Generator

    with exit_codes(debug):
        project = load_config(config)
        tracking = resolve_settings(project).tracking_uri
        uri = model or f"{project.name}@champion"
        if not is_retrieval(uri, tracking):
            raise KeelInputError(f"{uri} is not a retrieval model; keel ask needs task: retrieval")
        loaded = load_retrieval(uri, tracking)
        from keel.data._pii import pii_finder

        answer = loaded.model.ask(
            question,
            k,
            find=pii_finder(loaded.model.guardrails.pii_entities),
            generator=Generator.from_settings(loaded.metadata.get("generator")),
        )
        answer = {k: v for k, v in answer.items() if k not in ("cited_texts", "seconds")}
        answer["model"] = {"name": loaded.name, "version": loaded.version}
        if json_out:
            print(json.dumps(answer, default=str))
        else:
            console = Console(highlight=False)
            if answer["blocked"] is None:
                console.print(answer["answer"])
                for c in answer["citations"]:
                    if c["cited"]:
                        console.print(f"  [{c['n']}] {c['doc_id']} — {c['title']}")
            failed = [v for v in answer["guardrails"] if not v["passed"]]
            for v in failed:
                console.print(f"[yellow]{v['rule']}[/yellow] ({v['action']}): {v['reason']}")
        if answer["blocked"] is not None:
            raise KeelFinding(
                f"blocked by {answer['blocked']['rule']}: {answer['blocked']['reason']}"
            )


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
    --k items of every user in INPUT, as `keel recommend` does. Example: keel predict
    income@champion people.parquet scores.parquet; keel predict income sqlite:///crm.db out.csv
    --query 'SELECT * FROM customers'. Exit codes: 0 written (rejects are reported,
    not failures), 2 unknown model, unreadable INPUT, a missing feature column, or
    OUTPUT exists.
    """
    from keel.config import load_config, resolve_settings
    from keel.errors import KeelInputError
    from keel.registry import (
        is_recommender,
        load_package,
        load_recommender,
        mlflow_scope,
        record_batch,
    )

    with exit_codes(debug):
        project = load_config(config)
        tracking = resolve_settings(project).tracking_uri
        console = Console(stderr=True)
        with _bar("predict", "{task.completed:,} rows", console, json_out) as bar:
            task = bar.add_task("predict", total=None)

            def progress(done: int, total: int | None) -> None:
                bar.update(task, completed=done, total=total)

            if is_recommender(model, tracking):
                from keel.serving._batch import recommend_file

                if ray_address:
                    raise KeelInputError("--ray-address scores tabular models; not recommenders")
                loaded = load_recommender(model, tracking)
                summary = recommend_file(loaded, Path(source), out, k, force, progress=progress)
                name, version = loaded.name, loaded.version
            else:
                from keel.serving._predict_file import Source, predict_file

                package = load_package(model, tracking)
                summary = predict_file(
                    package,
                    Source(source, query, project.root),
                    out,
                    rejects,
                    force=force,
                    chunk=chunk,
                    unseen=project.serving.unseen_categories,
                    progress=progress,
                    ray_address=ray_address,
                )
                name, version = package.name, package.version
        if record:
            with mlflow_scope(tracking) as client:
                summary["lineage_tag"] = record_batch(client, name, version, summary)
        if json_out:
            print(json.dumps(summary, default=str))
            return
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
