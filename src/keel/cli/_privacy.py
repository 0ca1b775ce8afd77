"""`keel forget`: a data subject's erasure, and the retention purge."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from keel.cli._common import ConfigOpt, DebugOpt, JsonOpt, _shown_url, app
from keel.cli._errors import exit_codes
from keel.errors import KeelInputError


@app.command()
def forget(
    subject: Annotated[
        str | None,
        typer.Option(
            "--subject", help="The person's id, as in privacy.subject_column (e.g. a user id)."
        ),
    ] = None,
    expired: Annotated[
        bool,
        typer.Option("--expired", help="Purge every row older than privacy.retention_days."),
    ] = False,
    show: Annotated[
        bool, typer.Option("--list", help="List the recorded erasures and purges.")
    ] = False,
    log: Annotated[
        str | None,
        typer.Option(help="Prediction log: SQLite file or database URL (default: keel.yaml's)."),
    ] = None,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Erase a data subject from the prediction log, or purge rows past retention.

    `--subject ID` removes every logged row of that person (found by the SHA-256 of
    their id, which the server keeps beside each row from `privacy.subject_column`;
    in rows logged before that, by the id in the stored inputs), the feedback of
    those rows, and their A/B-test outcomes. The erasure is recorded in the log (who,
    when, how many rows per table — never the id or the data), and every version of
    the model whose training snapshot holds the subject (or, for a recommender, whose
    package keeps them in its user-group map) is listed: packages are immutable
    evidence, so removing them there means retraining without them and `keel retire`.

    `--expired` removes rows older than `privacy.retention_days` (a server does this
    itself every hour). `--list` shows past erasures. A SQLite log that does not exist
    is not created: nothing was logged, so nothing is erased or recorded there (the
    versions holding the subject are still listed). Exit codes: 0 done, 2 bad options,
    no subject column or retention set, or a log that cannot be opened.
    """
    from keel.config import load_config
    from keel.serving import log_url

    with exit_codes(debug):
        chosen = [
            name
            for name, on in (
                ("--subject", subject is not None),
                ("--expired", expired),
                ("--list", show),
            )
            if on
        ]
        if len(chosen) != 1:
            raise KeelInputError(
                "say what to do: --subject ID (erase a person), --expired (apply"
                " privacy.retention_days) or --list (past erasures)"
                + (f"; not {' and '.join(chosen)} together" if chosen else "")
            )
        project = load_config(config)
        target = log or project.serving.prediction_log
        if target is None:
            raise KeelInputError(
                "the prediction log is off (serving.prediction_log: null) and no --log given"
            )
        path = None if "://" in target else Path(target)
        if path is not None and not path.is_absolute():
            path = project.root / path
        # a log that does not exist is not created (log_url would make its folder)
        url = None if path is not None and not path.exists() else log_url(target, project.root)
        shown = str(path) if path is not None else _shown_url(target)

        on_log = _log_caller(url, shown)
        if show:
            _show_erasures(on_log if url else None, json_out)
        elif expired:
            _purge(project, url, on_log, shown, json_out)
        else:
            _erase(project, subject, url, on_log, shown, json_out)


def _log_caller(url: str | None, shown: str) -> Any:
    """``on_log(action, *args)``: ``action(url, *args)``, a database error as exit 2."""

    def on_log(action: Any, *args: Any) -> Any:
        from sqlalchemy.exc import SQLAlchemyError

        try:
            return action(url, *args)
        except SQLAlchemyError as exc:
            why = str(exc.orig if getattr(exc, "orig", None) else exc).splitlines()[0]
            raise KeelInputError(
                f"the prediction log {shown} cannot be used ({why[:200]}); check"
                " serving.prediction_log or --log"
            ) from None

    return on_log


def _show_erasures(on_log: Any, json_out: bool) -> None:
    """`keel forget --list`: every erasure and purge, as recorded in the log."""
    from keel.monitoring._privacy import erasures

    found = on_log(erasures) if on_log else []
    if json_out:
        print(json.dumps({"erasures": found}))
        return
    table = Table(title="Erasures and purges")
    for column in ("when (UTC)", "who", "kind", "rows removed", "note"):
        table.add_column(column)
    for e in found:
        table.add_row(
            time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(e["time"])),
            e["who"],
            e["kind"],
            ", ".join(f"{k} {v}" for k, v in e["counts"].items()),
            json.dumps(e["note"]) if e["note"] else "",
        )
    Console().print(table)


def _purge(project: Any, url: str | None, on_log: Any, shown: str, json_out: bool) -> None:
    """`keel forget --expired`: rows older than privacy.retention_days."""
    from keel.monitoring._privacy import purge_expired
    from keel.registry import current_user

    days = project.privacy.retention_days
    if days is None:
        raise KeelInputError(
            "privacy.retention_days is not set: say how long rows are kept"
            " (privacy: {retention_days: 90}) in keel.yaml"
        )
    if url is None:
        record = {"kind": "retention", "counts": {}, "recorded": False}
    else:
        record = on_log(purge_expired, days, current_user())
    if json_out:
        print(json.dumps(record))
        return
    Console(stderr=True).print(
        f"purged rows older than {days} days: "
        + (", ".join(f"{k} {v}" for k, v in record["counts"].items()) or f"no log at {shown}")
    )


def _erase(
    project: Any, subject: str | None, url: str | None, on_log: Any, shown: str, json_out: bool
) -> None:
    """`keel forget --subject ID`: the person's rows erased; versions trained on them listed."""
    from keel.monitoring._privacy import forget_subject
    from keel.pipeline._privacy import subject_column, versions_holding
    from keel.registry import current_user

    subject = (subject or "").strip()
    if not subject or len(subject) > 200:
        raise KeelInputError("--subject must be a non-empty id of at most 200 characters")
    column = subject_column(project)
    versions = versions_holding(project, subject)
    note = {
        "subject_column": column,
        "versions_holding": [{"version": v["version"], "held_in": v["held_in"]} for v in versions],
    }
    if url is None:  # nothing was logged: nothing to erase there, nowhere to record
        record = {"kind": "subject", "counts": {}, "recorded": False, "note": note}
    else:
        record = on_log(forget_subject, subject, current_user(), column, note)
    result = {**record, "versions_holding": versions}
    if json_out:
        print(json.dumps(result))
        return
    console = Console(stderr=True)
    console.print(
        f"no prediction log at {shown}: nothing logged to erase"
        if url is None
        else f"erased from {shown}: "
        + ", ".join(f"{k} {v}" for k, v in record["counts"].items())
        + f" (recorded as erasure {record['id'][:12]} by {record['who']})"
    )
    if versions:
        table = Table(title=f"versions of {project.name} trained on this subject")
        for column_name in ("version", "semantic", "status", "held in"):
            table.add_column(column_name)
        for v in versions:
            table.add_row(v["version"], v["semver"] or "-", v["status"], "; ".join(v["held_in"]))
        Console().print(table)
        console.print(
            "Packages are immutable evidence: retrain without this subject (remove them"
            f" from the data source), then `keel retire {project.name} VERSION --reason"
            " 'erasure request'`."
        )
    else:
        console.print("No registered version was trained on this subject.")
