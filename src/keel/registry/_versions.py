"""Semantic versions of registered models, and retirement.

Every registered version gets ``MAJOR.MINOR.PATCH`` (tag ``keel.semver``), computed
from its package's **interface** — the inputs a request may carry and what the model
answers — compared with the latest earlier version of the same model:

- MAJOR when a request or an answer that worked with the earlier version may not
  work any more: an input removed, its kind changed, a new input that is required, an
  optional input made required, the task, the classes or the recommender's id
  columns changed;
- MINOR for a retrain or a different model behind a compatible interface;
- PATCH when only the documents change (the card's words re-rendered on the same
  version: ``keel run`` after a ``card:`` edit).

The interface itself is tagged (``keel.interface``), so the comparison is made from
the registry alone. Retiring a version (``keel retire``) removes its aliases, tags it
``keel.retired`` and records the event; its run, card and evidence stay, and no
server loads it again.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from mlflow import MlflowClient

from keel.errors import KeelFinding, KeelInputError
from keel.registry._aliases import (
    ALIASES,
    HISTORY_PREFIX,
    AliasEvent,
    _version,
    alias_version,
    current_user,
    registry_lock,
)

SEMVER_TAG = "keel.semver"
INTERFACE_TAG = "keel.interface"
RETIRED_TAG = "keel.retired"
_SEMVER = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")


def tabular_interface(schema: dict[str, Any], metadata: dict[str, Any]) -> dict[str, Any]:
    """What a tabular version accepts and answers, from its schema and metadata."""
    inputs = {
        c["name"]: {"kind": c["kind"], "required": not c.get("nullable", False)}
        for c in schema.get("columns", [])
        if c.get("role", "feature") == "feature"
    }
    return {
        "task": metadata.get("task"),
        "inputs": inputs,
        "output": {
            "target": metadata.get("target"),
            "classes": [str(c) for c in metadata.get("classes") or []],
            # rows must carry these when the model decides per group
            "requires": sorted(metadata.get("requires_sensitive_features") or []),
        },
    }


def recommender_interface(metadata: dict[str, Any]) -> dict[str, Any]:
    """What a recommender accepts (a user id, a history of item ids) and answers (items)."""
    return {
        "task": "recommendation",
        "inputs": {
            str(metadata.get("user_column") or "user_id"): {"kind": "id", "required": False},
            str(metadata.get("item_column") or "item_id"): {"kind": "id", "required": False},
        },
        "output": {"items": "ranked item ids", "item_column": metadata.get("item_column")},
    }


def parse_semver(text: str | None) -> tuple[int, int, int] | None:
    """``(major, minor, patch)`` of ``X.Y.Z``, or None."""
    found = _SEMVER.match(text or "")
    return (int(found[1]), int(found[2]), int(found[3])) if found else None


def breaking_changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Why a request or an answer that worked ``before`` may fail ``after`` (empty: none)."""
    why = []
    if before.get("task") != after.get("task"):
        why.append(f"task {before.get('task')} → {after.get('task')}")
    old, new = before.get("inputs") or {}, after.get("inputs") or {}
    for name in sorted(set(old) - set(new)):
        why.append(f"input {name!r} removed")
    for name in sorted(set(new) - set(old)):
        if new[name].get("required"):
            why.append(f"new required input {name!r}")
    for name in sorted(set(old) & set(new)):
        if old[name].get("kind") != new[name].get("kind"):
            why.append(f"input {name!r} kind {old[name].get('kind')} → {new[name].get('kind')}")
        elif new[name].get("required") and not old[name].get("required"):
            why.append(f"input {name!r} became required")
    old_out, new_out = before.get("output") or {}, after.get("output") or {}
    for key in sorted(set(old_out) | set(new_out)):
        if old_out.get(key) != new_out.get(key):
            why.append(f"output {key} {old_out.get(key)} → {new_out.get(key)}")
    return why


def next_semver(
    previous: str | None, before: dict[str, Any] | None, after: dict[str, Any]
) -> tuple[str, str]:
    """The version after ``previous`` for a new package, and why."""
    parsed = parse_semver(previous)
    if parsed is None or before is None:
        return "1.0.0", "first version of the model"
    major, minor, _ = parsed
    breaking = breaking_changes(before, after)
    if breaking:
        return f"{major + 1}.0.0", "incompatible: " + "; ".join(breaking)
    return f"{major}.{minor + 1}.0", "compatible: same inputs and outputs, new model"


def assign_semver(
    client: MlflowClient, tracking_uri: str, name: str, version: str, interface: dict[str, Any]
) -> tuple[str, str]:
    """Tag a newly registered version with its semantic version; returns it and why.

    Idempotent: a version that has one keeps it.
    """
    with registry_lock(tracking_uri):
        tags = client.get_model_version(name, version).tags or {}
        if parse_semver(tags.get(SEMVER_TAG)):
            return tags[SEMVER_TAG], tags.get("keel.semver.why", "")
        versions = client.search_model_versions(f"name = '{name}'")  # once, for both uses
        numbered = [(v, parse_semver((v.tags or {}).get(SEMVER_TAG))) for v in versions]
        earlier = max(
            (v for v, parsed in numbered if parsed and int(v.version) < int(version)),
            key=lambda v: int(v.version),
            default=None,
        )
        before = None
        if earlier is not None:
            try:
                before = json.loads((earlier.tags or {}).get(INTERFACE_TAG) or "null")
            except ValueError:
                before = None
        semver, why = next_semver(
            (earlier.tags or {}).get(SEMVER_TAG) if earlier is not None else None,
            before,
            interface,
        )
        # a MAJOR.MINOR already taken by another version (several lines of development,
        # or a patched one): take the next free MINOR
        used = {parsed[:2] for _, parsed in numbered if parsed}
        major, minor, _ = parse_semver(semver)  # type: ignore[misc]
        while (major, minor) in used:
            minor += 1
        semver = f"{major}.{minor}.0"
        client.set_model_version_tag(
            name, version, INTERFACE_TAG, json.dumps(interface, sort_keys=True)
        )
        client.set_model_version_tag(name, version, "keel.semver.why", why[:4000])
        client.set_model_version_tag(name, version, SEMVER_TAG, semver)
    return semver, why


def bump_patch(client: MlflowClient, tracking_uri: str, name: str, version: str, why: str) -> str:
    """The same model, new documents: ``X.Y.Z`` → ``X.Y.(Z+1)``; returns the new version."""
    with registry_lock(tracking_uri):
        tags = client.get_model_version(name, version).tags or {}
        parsed = parse_semver(tags.get(SEMVER_TAG))
        if parsed is None:
            return ""
        semver = f"{parsed[0]}.{parsed[1]}.{parsed[2] + 1}"
        client.set_model_version_tag(name, version, "keel.semver.why", why[:4000])
        client.set_model_version_tag(name, version, SEMVER_TAG, semver)
    return semver


def semver_of(tags: dict[str, str] | None) -> str | None:
    """The semantic version tagged on a version, if any."""
    value = (tags or {}).get(SEMVER_TAG)
    return value if parse_semver(value) else None


def retired_of(tags: dict[str, str] | None) -> dict[str, Any] | None:
    """The retirement record of a version (who, when, why), or None when it is live."""
    raw = (tags or {}).get(RETIRED_TAG)
    if not raw:
        return None
    try:
        found = json.loads(raw)
    except ValueError:
        return {"why": raw}
    return found if isinstance(found, dict) else {"why": str(found)}


def retire(
    client: MlflowClient,
    tracking_uri: str,
    name: str,
    version: str,
    *,
    reason: str,
    successor: str | None = None,
) -> dict[str, Any]:
    """Retire ``version``: remove its aliases, tag it retired, record the event.

    The serving champion is refused (``KeelFinding``): another version must take
    ``champion`` first (``keel retire --successor`` promotes it, through the gates,
    before calling this). Every run, artifact and card stays. Returns the record.
    """
    if not (reason or "").strip():
        raise KeelInputError("--reason is required: say why the version is retired")
    version = str(version)
    if retired_of(_version(client, name, version).tags):
        raise KeelInputError(f"{name} version {version} is already retired")
    with registry_lock(tracking_uri):
        held = [a for a in ALIASES if alias_version(client, name, a) == version]
        if "champion" in held:
            raise KeelFinding(
                f"{name} version {version} is the serving champion; name the version that"
                " takes over with --successor VERSION (promoted through the gates first),"
                " or promote another version, then retire this one"
            )
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        who = current_user()
        events = [AliasEvent(name, a, version, None, "retire", who, now, reason) for a in held]
        if not held:
            events.append(AliasEvent(name, "-", version, None, "retire", who, now, reason))
        for alias in held:
            client.delete_registered_model_alias(name, alias)
        record: dict[str, Any] = {"who": who, "when": now, "why": reason, "aliases_removed": held}
        if successor is not None:
            record["successor"] = str(successor)
        client.set_model_version_tag(name, version, RETIRED_TAG, json.dumps(record))
        for index, event in enumerate(events):
            key = f"{HISTORY_PREFIX}{time.time_ns() + index:020d}-{uuid.uuid4().hex[:6]}"
            client.set_registered_model_tag(name, key, json.dumps(event.to_dict()))
    return {"model": name, "version": version, **record}


def version_table(client: MlflowClient, name: str) -> list[dict[str, Any]]:
    """Every version of ``name``: semantic version, created, aliases, retired or live."""
    versions = client.search_model_versions(f"name = '{name}'")
    aliases = {a: alias_version(client, name, a) for a in ALIASES}
    rows = []
    for v in sorted(versions, key=lambda v: int(v.version)):
        tags = v.tags or {}
        retired = retired_of(tags)
        rows.append(
            {
                "version": str(v.version),
                "semver": semver_of(tags),
                "created": datetime.fromtimestamp(v.creation_timestamp / 1000, UTC).isoformat(
                    timespec="seconds"
                ),
                "aliases": [a for a, held in aliases.items() if held == str(v.version)],
                "status": "retired" if retired else "live",
                "retired": retired,
                "semver_why": tags.get("keel.semver.why"),
                "dataset_digest": tags.get("keel.dataset.digest"),
                "commit": tags.get("keel.commit"),
            }
        )
    return rows


__all__ = [
    "INTERFACE_TAG",
    "RETIRED_TAG",
    "SEMVER_TAG",
    "assign_semver",
    "breaking_changes",
    "bump_patch",
    "next_semver",
    "parse_semver",
    "recommender_interface",
    "retire",
    "retired_of",
    "semver_of",
    "tabular_interface",
    "version_table",
]
