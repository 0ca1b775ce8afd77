"""`keel run` on a terminal, and `keel ask`: a retrieval model's commands."""

from __future__ import annotations

import json
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
    ui_hint,
)
from keel.cli._errors import exit_codes


def _render_retrieval_run(result: dict[str, Any]) -> None:
    """A retrieval model's run: every retriever on the test questions; answers; guardrails."""
    console = Console(highlight=False)
    primary = result["primary_metric"]
    table = Table(title=f"Every retriever on the labelled questions ({primary})")
    for column in ("retriever", "kind", "chunk words", "validation", "test", "answer F1"):
        table.add_column(column, justify="left" if column in ("retriever", "kind") else "right")
    for c in result["candidates"]:
        chosen = " ✔" if c["name"] == result["model"]["candidate"] else ""
        table.add_row(
            c["name"] + chosen,
            c["kind"],
            str(c["chunk_size"]),
            _num(c["validation"].get(primary)),
            _num(c["test"].get(primary)),
            _num(c["answers"].get("token_f1")),
        )
    console.print(table)
    intervals = result["assessment"]["intervals"]
    metrics = Table(title="Test metrics of the chosen model (95% bootstrap CI over questions)")
    for column in ("metric", "test", "95% CI"):
        metrics.add_column(column, justify="left" if column == "metric" else "right")
    for name, value in sorted(result["metrics"].items()):
        ci = intervals.get(name, {})
        metrics.add_row(name, _num(value), f"{_num(ci.get('low'))} – {_num(ci.get('high'))}")
    console.print(metrics)
    gate = result["assessment"]["gate"]
    console.print(("[green]" if gate["passed"] else "[red]") + gate["describe"] + "[/]")
    guard = result["assessment"]["guardrails"]
    rates = ", ".join(f"{k} {v:.0%}" for k, v in sorted(guard["block_rate"].items()))
    console.print(
        f"Guardrails blocked attack prompts: {rates}; labelled questions blocked:"
        f" {guard['benign_blocked']}"
    )
    versus = result["assessment"].get("versus_champion")
    if versus:
        verdict = "[green]promoted[/green]" if versus["promote"] else "stays challenger"
        console.print(f"Against the champion: {verdict} — {versus['reason']}")
    model = result["model"]
    console.print(
        f"Registered [bold]{model['uri']}[/bold] (version {model['version']},"
        f" {model['candidate']}); MLflow run {result['run_id']}"
    )
    console.print(
        f"Report: {result['reports']['html']}  Card: {result['reports']['model_card_md']}"
    )
    console.print(ui_hint(result["tracking_uri"]))


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
    from keel.errors import KeelFinding
    from keel.families.retrieval.generate import Generator
    from keel.families.retrieval.package import load_retrieval

    with exit_codes(debug):
        project = load_config(config)
        tracking = resolve_settings(project).tracking_uri
        uri = model or f"{project.name}@champion"
        loaded = load_retrieval(uri, tracking)  # refuses a model of another family
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
