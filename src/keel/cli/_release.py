"""Commands that release a model: `keel check`, `keel promote`, `keel rollback`, `keel history`."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from keel.cli._common import (
    ConfigOpt,
    DebugOpt,
    JsonOpt,
    ModelArg,
    NameArg,
    ReasonOpt,
    _registry,
    app,
)
from keel.cli._errors import exit_codes
from keel.errors import KeelInputError


@app.command()
def check(
    model: ModelArg = None,
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


def _print_event(event: Any, json_out: bool, released: str | None = None) -> None:
    if json_out:
        print(json.dumps({**event.to_dict(), **({"git_tag": released} if released else {})}))
        return
    console = Console(stderr=True)
    console.print(
        f"{event.model}@{event.alias}: version {event.from_version or '-'} →"
        f" {event.to_version} ({event.action} by {event.who}: {event.why})"
    )
    if released:
        console.print(released)


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
        released = _release_tag(project, uri, name, str(version), to)
        _print_event(event, json_out, released)


def _release_tag(project: Any, uri: str, name: str, version: str, to: str) -> str | None:
    """``release.git_tag``: tag the version's commit ``NAME-vX.Y.Z`` when it goes live."""
    if not project.release.git_tag or to not in ("champion", "production"):
        return None
    from keel._git import tag_release
    from keel.registry import mlflow_scope, semver_of

    with mlflow_scope(uri) as client:
        tags = client.get_model_version(name, version).tags or {}
    semver, commit = semver_of(tags), tags.get("keel.commit", "")
    if semver is None:
        return f"no git tag: version {version} has no semantic version (an older Keel made it)"
    if not re.fullmatch(r"[0-9a-f]{40}", commit):
        why = "uncommitted changes" if commit.endswith("+dirty") else "no git commit"
        return f"no git tag: version {version} was trained from {why} ({commit or 'unknown'})"
    tag = f"{name}-v{semver}"
    message = (
        f"{name} {semver}: registry version {version} ({to})\n"
        f"data digest {tags.get('keel.dataset.digest', 'unknown')}\n"
        f"config digest {tags.get('keel.config.digest', 'unknown')}"
    )
    _, what = tag_release(project.root, tag, commit, message)
    return what


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
def retire(
    name: NameArg,
    version: Annotated[str, typer.Argument(help="The version to retire.")],
    reason: ReasonOpt = None,
    successor: Annotated[
        str | None,
        typer.Option(
            "--successor",
            help="The version that takes over as champion (promoted through the gates first).",
        ),
    ] = None,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Retire a version: its aliases go, it is marked retired, its evidence stays.

    A retired version takes no alias again and no `keel serve` loads it (a server
    following the alias keeps the version it has). Its run, report, card, runbook
    and every tag stay in the registry, so `keel card NAME/VERSION` and audits still
    work. The serving champion is refused unless `--successor VERSION` takes over:
    that version is promoted to champion first, through the same gates as `keel
    promote`; if that is refused, nothing is retired. The retirement (who, when, why,
    the aliases it held) is in `keel history`. Exit codes: 0 retired, 1 refused (the
    champion without a successor, or the successor failed a gate), 2 unknown model or
    version, already retired, or no --reason.
    """
    from keel.config import load_config, resolve_settings
    from keel.pipeline import check_version
    from keel.registry import mlflow_scope
    from keel.registry import promote as promote_version
    from keel.registry import retire as retire_version

    with exit_codes(debug):
        if not (reason or "").strip():
            raise KeelInputError("--reason is required: say why the version is retired")
        project = load_config(config)
        uri = resolve_settings(project).tracking_uri
        took_over = None
        if successor is not None:
            if str(successor) == str(version):
                raise KeelInputError("--successor must be another version than the one retired")
            checklist = check_version(f"{name}/{successor}", uri, project.gates)
            with mlflow_scope(uri) as client:
                took_over = promote_version(
                    client,
                    uri,
                    name,
                    successor,
                    to="champion",
                    reason=f"takes over from version {version}: {reason}",
                    failed=checklist.promotion_blockers,
                )
            if took_over is not None:
                released = _release_tag(project, uri, name, str(successor), "champion")
                if not json_out:
                    _print_event(took_over, False, released)
        with mlflow_scope(uri) as client:
            record = retire_version(
                client, uri, name, version, reason=str(reason), successor=successor
            )
        if json_out:
            print(json.dumps({**record, "successor_event": took_over and took_over.to_dict()}))
            return
        removed = ", ".join(record["aliases_removed"]) or "none"
        Console(stderr=True).print(
            f"{name} version {version} retired by {record['who']} ({reason}); aliases removed:"
            f" {removed}. Its evidence stays: keel card {name}/{version}"
        )


@app.command()
def history(
    name: NameArg,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """List a model's versions and every alias move, oldest first.

    Versions: semantic version, aliases, live or retired (who, when, why). Moves: when,
    who, alias, from, to, why.

    Exit codes: 0 listed, 2 unknown model.
    """
    from keel.registry import ALIASES, alias_version, mlflow_scope, version_table
    from keel.registry import history as alias_history

    with exit_codes(debug):
        uri = _registry(config)
        with mlflow_scope(uri) as client:
            events = alias_history(client, name)
            now = {a: alias_version(client, name, a) for a in ALIASES}
            versions = version_table(client, name)
        if json_out:
            print(
                json.dumps(
                    {
                        "model": name,
                        "aliases": now,
                        "versions": versions,
                        "events": [e.to_dict() for e in events],
                    }
                )
            )
            return
        listing = Table(title=f"{name}: versions")
        for column in ("version", "semantic", "registered (UTC)", "aliases", "status", "why"):
            listing.add_column(column)
        for v in versions:
            retired = v["retired"] or {}
            listing.add_row(
                v["version"],
                v["semver"] or "-",
                v["created"].replace("T", " ")[:19],
                ", ".join(v["aliases"]) or "-",
                f"retired by {retired.get('who')} {str(retired.get('when', ''))[:10]}"
                if v["retired"]
                else "live",
                retired.get("why") or v["semver_why"] or "",
            )
        Console().print(listing)
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
