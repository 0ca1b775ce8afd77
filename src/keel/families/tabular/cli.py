"""`keel run` on a terminal: a tabular run as tables."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from keel.cli._common import _num, print_costs, ui_hint


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
    robustness = result["assessment"].get("robustness")
    if robustness:
        verdict = robustness["verdict"]
        colour = "red" if verdict == "failed" else "green" if verdict == "passed" else "default"
        console.print(f"Robustness [{colour}]{verdict}[/{colour}]: {robustness['summary'][0]}")
        console.print(f"  {robustness['summary'][1]}")
    for name, tuning in result.get("tuning", {}).items():
        console.print(
            f"Tuned {name}: {tuning['trials']} trials ({tuning['pruned']} pruned) in"
            f" {tuning['seconds']:.0f}s, best CV {tuning['metric']} {_num(tuning['best_cv_score'])}"
        )
    print_costs(console, result.get("stages", []))
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
    if result["reports"].get("runbook_md"):
        console.print(f"Runbook: {result['reports']['runbook_md']}")
    console.print(ui_hint(result["tracking_uri"]))
