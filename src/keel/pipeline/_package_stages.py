"""Stages every family's graph shares once a version is registered: the alias, last.

A family's ``register`` stage returns :func:`run_record`; its graph ends with
:func:`alias` (moves the planned alias once every piece of evidence exists) and reuses
a stored registration only while :func:`still_registered` holds.
"""

from __future__ import annotations

from typing import Any

from keel.pipeline._lifecycle import RunContext


def run_record(run_id: str, experiment_id: str, name: str, version: Any, doc: dict) -> dict:
    """The ``run`` output of a ``register`` stage: where the version and its report are."""
    return {
        "run_id": run_id,
        "experiment_id": experiment_id,
        "name": name,
        "version": str(version),
        "report": doc,
    }


def alias(inputs: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """Move the alias last, once the evidence exists: none when a gate failed."""
    from keel.registry import ModelRef, assign_alias, mlflow_scope

    run = inputs["run"]
    if inputs["planned_alias"] is None:
        ctx.say("gates failed: no alias")
        return {"alias": None}
    with mlflow_scope(ctx.settings.tracking_uri) as client:
        ref = assign_alias(
            client,
            ModelRef(run["name"], run["version"]),
            ctx.settings.tracking_uri,
            inputs["versus"],
        )
    return {"alias": ref.alias}


def still_registered(outputs: dict[str, Any], ctx: RunContext) -> bool:
    """The stored registration still exists."""
    from keel.pipeline._record import still_registered as check

    return check(outputs, ctx)
