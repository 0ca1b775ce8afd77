"""`keel run` on a terminal, and `keel recommend`: a recommender's commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from keel.cli._common import (
    ConfigOpt,
    DebugOpt,
    JsonOpt,
    _num,
    app,
    progress_bar,
    ui_hint,
)
from keel.cli._errors import exit_codes


def _render_ranking_run(result: dict[str, Any]) -> None:
    """A recommender's run: every model on all, warm and cold test users; the gate."""
    console = Console(highlight=False)
    primary = result["primary_metric"]
    table = Table(title=f"Every model on the full ranking ({primary}; test users warm / cold)")
    for column in ("model", "kind", "validation", "test", "warm", "cold"):
        table.add_column(column, justify="left" if column in ("model", "kind") else "right")
    for c in result["candidates"]:
        chosen = " ✔" if c["name"] == result["model"]["candidate"] else ""
        table.add_row(
            c["name"] + chosen,
            c["kind"],
            *(_num(c[key].get(primary)) for key in ("validation", "test", "test_warm")),
            _num(c["test_cold"].get(primary)),
        )
    console.print(table)
    for name, why in (result.get("skipped") or {}).items():
        console.print(f"[yellow]{name} skipped[/yellow]: {why['reason']}")
    intervals = result["assessment"]["intervals"]
    metrics = Table(title="Test metrics of the chosen model (95% bootstrap CI over users)")
    for column in ("metric", "test", "95% CI"):
        metrics.add_column(column, justify="left" if column == "metric" else "right")
    for name, value in sorted(result["metrics"].items()):
        ci = intervals.get(name, {})
        metrics.add_row(name, _num(value), f"{_num(ci.get('low'))} – {_num(ci.get('high'))}")
    console.print(metrics)
    gate = result["assessment"]["gate"]
    console.print(
        ("[green]" if gate["passed"] else "[red]") + gate["describe"] + "[/]"
        if "describe" in gate
        else f"baseline gate {'passed' if gate['passed'] else 'FAILED'}"
    )
    versus = result["assessment"].get("versus_champion")
    if versus:
        verdict = "[green]promoted[/green]" if versus["promote"] else "stays challenger"
        console.print(f"Against the champion: {verdict} — {versus['reason']}")
    protocol = result["data"]["protocol"]
    console.print(
        f"Split {protocol['strategy']}: {protocol['warm_test_users']} warm and"
        f" {protocol['cold_start_test_users']} cold-start test users;"
        f" fairness {result['assessment']['gates']['fairness']}"
    )
    model = result["model"]
    console.print(
        f"Registered [bold]{model['uri']}[/bold] (version {model['version']},"
        f" {model['candidate']}); MLflow run {result['run_id']}"
    )
    reused = [s["name"] for s in result.get("stages", []) if s["status"] == "reused"]
    if reused:
        console.print(f"Stages reused from .keel/stages: {len(reused)} of {len(result['stages'])}")
    console.print(
        f"Report: {result['reports']['html']}  Card: {result['reports']['model_card_md']}"
    )
    console.print(ui_hint(result["tracking_uri"]))


@app.command()
def recommend(
    model: Annotated[str, typer.Argument(help="NAME, NAME@ALIAS or NAME/VERSION.")],
    users: Annotated[Path, typer.Argument(help="CSV / Parquet / JSON Lines with the users.")],
    out: Annotated[Path, typer.Argument(help="Where to write (.parquet or .csv).")],
    k: Annotated[int, typer.Option("--k", help="Items per user (1..1000).")] = 10,
    force: Annotated[bool, typer.Option(help="Replace OUT if it exists.")] = False,
    filters: Annotated[
        str | None,
        typer.Option(
            help="Narrow every list: JSON {include, exclude, where} or @FILE, e.g."
            """ '{"where": {"genre": ["Comedy"]}}'."""
        ),
    ] = None,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Write the top-K items of every user in USERS to OUT, as `POST /recommend` would.

    MODEL is NAME, NAME@ALIAS or NAME/VERSION in the registry. Users are
    ranked in chunks with a progress bar, so memory stays flat however many users
    there are; a user the model never saw gets the popularity list with cold_start
    true. --filters narrows every list as a request's filters do (an allow-list, a
    block-list, conditions on item attributes), and keel.yaml's business rules hold as
    on the server; K items come whenever K qualify. OUT (user_id, rank, item_id,
    score, cold_start) appears whole or not at all.
    Exit codes: 0 written, 2 bad input (unknown model, missing column, OUT exists).
    """
    from keel.config import load_config, resolve_settings
    from keel.families.recommendation.batch import recommend_file
    from keel.families.recommendation.package import load_recommender
    from keel.families.recommendation.rules import read_filters

    with exit_codes(debug):
        wanted = read_filters(filters)
        project = load_config(config)
        tracking = resolve_settings(project).tracking_uri
        loaded = load_recommender(model, tracking)
        with progress_bar(
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
                filters=wanted,
            )
        if json_out:
            print(json.dumps(summary))
        else:
            Console(stderr=True).print(
                f"wrote {summary['rows']} recommendations for {summary['users']} users"
                f" ({summary['cold_start_users']} cold start) to {summary['out']}"
            )
