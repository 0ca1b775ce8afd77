"""Stages every family's graph shares once a version is registered: the alias, last.

A family's ``register`` stage returns :func:`run_record`; its graph ends with
:func:`alias` (moves the planned alias once every piece of evidence exists) and reuses
a stored registration only while :func:`still_registered` holds.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

from keel._git import commit_of
from keel.config import ProjectConfig
from keel.pipeline._context import RECORDED_KEYS, RunContext

STAGE_TAG = "keel.stage.register"


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


def registered_by_key(client: Any, name: str, key: str) -> Any:
    """The version of ``name`` registered by the register stage with cache key ``key``.

    A registry that cannot be asked raises (the runner retries a transient failure):
    answering "none" would register a duplicate.
    """
    for version in client.search_model_versions(f"name = '{name}'"):
        if (version.tags or {}).get(STAGE_TAG) == key:
            return version
    return None


def still_registered(outputs: dict[str, Any], ctx: RunContext) -> bool:
    """Whether the stored registration still exists in the registry.

    Asked without MLflow when the store allows (``keel.registry._probe``: one SQLite
    query or one REST call), which keeps a run with nothing to do fast; with MLflow's
    client otherwise.
    """
    from keel.registry._probe import probe_version

    run = outputs["run"]
    found = probe_version(ctx.settings.tracking_uri, run["name"], run["version"])
    if found.exists is not None:
        tagged = found.tags.get(STAGE_TAG) is not None
        return bool(found.exists) and tagged and found.run_id == run["run_id"]
    from keel.registry import mlflow_scope, tracking

    with mlflow_scope(ctx.settings.tracking_uri) as client:
        try:
            version = client.get_model_version(run["name"], run["version"])
        except tracking.TrackingError:
            return False
        return (version.tags or {}).get(STAGE_TAG) is not None and version.run_id == run["run_id"]


def log_config(config: ProjectConfig, run_id: str | None = None) -> None:
    """The config as the run used it, as ``keel.yaml`` on the run.

    On the active run (``run_id`` None, every family's register stage) it also tags the
    Keel release that ran it: ``keel.version``.
    """
    from keel.registry import tracking

    text = yaml.safe_dump(config.model_dump(mode="json", by_alias=True), sort_keys=False)
    tracking.log_text(text, "keel.yaml", run_id)
    if run_id is None:
        from keel._version import __version__

        tracking.set_tag("keel.version", __version__)


def config_digest(config: ProjectConfig) -> str:
    """16 hex digits of the config as the run used it (every key but the card's words)."""
    dumped = config.model_dump(mode="json")
    section = [k for k in dumped if k not in type(config).model_fields]  # a family's own
    keys = [*RECORDED_KEYS, *section]
    text = json.dumps({k: dumped.get(k) for k in keys}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def git_commit(folder: Path) -> str | None:
    """The commit of the git work tree holding ``folder`` (``+dirty`` if changed), if any."""
    return commit_of(folder, mark_dirty=True)
