"""Alias moves with a history: promote, rollback, and who did what, when and why.

Every move of an alias (``champion``, ``challenger``, ``staging``, ``production``) is
recorded in the registry itself, as a tag of the registered model
(``keel.history.<time>-<id>`` holding one JSON event), so the story travels with the
registry and needs no other database. Moves on a local SQLite store are serialised
by a file lock next to it: two promotions racing each read the alias, move it and
record the event in turn, never interleaved.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from keel.errors import KeelFinding, KeelInputError, ModelNotFoundError

HISTORY_PREFIX = "keel.history."
ALIASES = ("champion", "challenger", "staging", "production")
GATE_TAGS = (
    "keel.gate.baseline",
    "keel.gate.fairness",
    "keel.gate.behaviour",
    "keel.gate.robustness",
)


@dataclass(frozen=True)
class AliasEvent:
    """One move of one alias."""

    model: str
    alias: str
    from_version: str | None
    to_version: str | None
    action: str  # register | promote | rollback | force
    who: str
    when: str  # ISO 8601, UTC
    why: str

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return asdict(self)


def current_user() -> str:
    """Who is acting: ``KEEL_USER`` if set, else the login name."""
    return os.environ.get("KEEL_USER") or getpass.getuser()


def alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    """The version ``alias`` points at, or None."""
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def history(client: MlflowClient, name: str) -> list[AliasEvent]:
    """Every recorded alias move of model ``name``, oldest first."""
    model = _registered(client, name)
    events = [
        AliasEvent(**json.loads(value))
        for key, value in sorted(model.tags.items())
        if key.startswith(HISTORY_PREFIX)
    ]
    return events


def move_alias(
    client: MlflowClient,
    tracking_uri: str,
    name: str,
    alias: str,
    version: str,
    *,
    action: str,
    why: str,
    who: str | None = None,
    expected: str | object | None = ...,
) -> AliasEvent:
    """Point ``alias`` at ``version`` and record the move, under the registry's lock.

    With ``expected`` the move happens only if the alias still points where the caller
    last saw it (a compare-and-set: a racing move makes this one fail, not overwrite).
    """
    with registry_lock(tracking_uri):
        before = alias_version(client, name, alias)
        if expected is not ... and before != expected:
            raise KeelFinding(
                f"{name}@{alias} moved to version {before} meanwhile (expected {expected});"
                " nothing changed — look at `keel history` and try again"
            )
        client.set_registered_model_alias(name, alias, version)
        event = AliasEvent(
            model=name,
            alias=alias,
            from_version=before,
            to_version=str(version),
            action=action,
            who=who or current_user(),
            when=datetime.now(UTC).isoformat(timespec="milliseconds"),
            why=why,
        )
        key = f"{HISTORY_PREFIX}{time.time_ns():020d}-{uuid.uuid4().hex[:6]}"
        client.set_registered_model_tag(name, key, json.dumps(event.to_dict()))
        return event


EXPERIMENT_TAG = "keel.experiment."


def record_experiment(
    client: MlflowClient,
    name: str,
    experiment: str,
    summaries: dict[str, dict[str, Any]],
    documents: dict[str, str],
    why: str,
) -> AliasEvent:
    """Record a concluded A/B test on each compared version and in the model's history.

    ``summaries`` maps each version to its compact summary (a ``keel.experiment.NAME``
    tag on the version: what ``keel card`` shows); ``documents`` (file name → text: the
    full analysis, its HTML page) are logged under ``experiments/NAME/`` on each
    version's run. The history gets an ``experiment`` event (``keel history``).
    """
    for version, summary in summaries.items():
        mv = _version(client, name, version)
        client.set_model_version_tag(
            name, str(version), f"{EXPERIMENT_TAG}{experiment}", json.dumps(summary)
        )
        if mv.run_id:
            for file, text in documents.items():
                client.log_text(mv.run_id, text, f"experiments/{experiment}/{file}")
    versions = list(summaries)
    event = AliasEvent(
        model=name,
        alias="champion",
        from_version=str(versions[0]),
        to_version=str(versions[-1]),
        action="experiment",
        who=current_user(),
        when=datetime.now(UTC).isoformat(timespec="milliseconds"),
        why=why,
    )
    key = f"{HISTORY_PREFIX}{time.time_ns():020d}-{uuid.uuid4().hex[:6]}"
    client.set_registered_model_tag(name, key, json.dumps(event.to_dict()))
    return event


BATCH_TAG = "keel.batch."


def record_batch(client: MlflowClient, name: str, version: str, summary: dict[str, Any]) -> str:
    """Record a batch inference run (its lineage) on the version; the tag's key.

    One ``keel.batch.<time>`` tag per run: input and its digest, rows scored and
    rejected, the output, who and when. Listed by :func:`batch_runs`.
    """
    _version(client, name, version)
    key = f"{BATCH_TAG}{time.time_ns():020d}"
    record = {
        **summary,
        "who": current_user(),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    text = json.dumps(record, default=str)
    if len(text) > 4_000:  # a tag holds a few kB: keep the lineage, drop the detail
        text = json.dumps({k: v for k, v in record.items() if k != "problems"}, default=str)
    client.set_model_version_tag(name, str(version), key, text)
    return key


def batch_runs(tags: dict[str, str]) -> list[dict[str, Any]]:
    """The batch inference runs recorded on a version (its tags), oldest first."""
    runs = []
    for key in sorted(k for k in tags if k.startswith(BATCH_TAG)):
        try:
            runs.append(json.loads(tags[key]))
        except ValueError:
            continue
    return runs


def experiment_summaries(tags: dict[str, str]) -> list[dict[str, Any]]:
    """The A/B tests recorded on a version (its tags), oldest first."""
    found = []
    for key, value in tags.items():
        if key.startswith(EXPERIMENT_TAG):
            try:
                found.append(json.loads(value))
            except ValueError:
                continue
    return sorted(found, key=lambda s: str(s.get("concluded", "")))


def gate_failures(client: MlflowClient, name: str, version: str) -> list[str]:
    """The gates recorded as failed on the run that produced ``version``."""
    model_version = _version(client, name, version)
    if not model_version.run_id:
        return ["no run: the version was not produced by `keel run`"]
    tags = client.get_run(model_version.run_id).data.tags
    return [f"{t.removeprefix('keel.gate.')}" for t in GATE_TAGS if tags.get(t) == "failed"]


def promote(
    client: MlflowClient,
    tracking_uri: str,
    name: str,
    version: str,
    *,
    to: str = "champion",
    force: bool = False,
    reason: str | None = None,
    failed: list[str] | None = None,
) -> AliasEvent | None:
    """Move ``to`` (``champion``, ``staging`` or ``production``) to ``version``.

    Returns the recorded move, or ``None`` when ``to`` already points at ``version``
    (nothing changes and nothing is recorded: promoting is idempotent).

    Refused (KeelFinding, exit 1) when a gate failed — ``failed`` when given (``keel
    promote`` passes the required Definition-of-Done gates that did not pass), else
    the gates recorded as failed on the version's run — unless ``force`` with a
    ``reason`` (recorded as a ``force`` move). ``production`` only takes the version
    that ``staging`` points at.
    """
    if to not in ("champion", "staging", "production"):
        raise KeelInputError(f"--to must be champion, staging or production, not {to!r}")
    if force and not (reason and reason.strip()):
        raise KeelInputError("--force needs --reason: say why the gates are overridden")
    _live(client, name, version)
    if alias_version(client, name, to) == str(version):
        return None  # already there: a re-run of a deployment script changes nothing
    if to == "production":
        staged = alias_version(client, name, "staging")
        if staged != str(version):
            raise KeelFinding(
                f"{name} version {version} is not in staging (staging is"
                f" {'version ' + staged if staged else 'empty'}); a model reaches production"
                f" only from staging: `keel promote {name} {version} --to staging` first"
            )
    if failed is None:
        failed = gate_failures(client, name, version)
    if failed and not force:
        raise KeelFinding(
            f"{name} version {version} failed the gate(s) {', '.join(failed)}; not promoted"
            " (override with --force --reason '...', which is recorded)"
        )
    current = alias_version(client, name, to)
    why = reason or f"promoted to {to}"
    return move_alias(
        client,
        tracking_uri,
        name,
        to,
        str(version),
        action="force" if failed else "promote",
        why=why if not failed else f"{why} (gates overridden: {', '.join(failed)})",
        expected=current,
    )


def rollback(
    client: MlflowClient,
    tracking_uri: str,
    name: str,
    *,
    alias: str = "champion",
    reason: str | None = None,
) -> AliasEvent:
    """Put back the version ``alias`` pointed at before its last move.

    A second rollback undoes the first (it is a move like any other).
    """
    current = alias_version(client, name, alias)
    moves = [e for e in history(client, name) if e.alias == alias]
    previous = moves[-1].from_version if moves else None
    if current is None or previous is None:
        raise KeelInputError(
            f"{name}@{alias} has no previous version to roll back to"
            f" (history: {len(moves)} move(s)); see `keel history {name}`"
        )
    _live(client, name, previous)
    return move_alias(
        client,
        tracking_uri,
        name,
        alias,
        previous,
        action="rollback",
        why=reason or f"rolled back from version {current}",
        expected=current,
    )


_LOCKS: dict[str, tuple[threading.RLock, list[Any]]] = {}
_LOCKS_GUARD = threading.Lock()
LOCK_MODEL = "keel.registry-lock"
LOCK_STALE_SECONDS = 60.0
LOCK_WAIT_SECONDS = 120.0


@contextlib.contextmanager
def registry_lock(tracking_uri: str) -> Iterator[None]:
    """An exclusive lock on the registry for alias moves, between processes and machines.

    A local SQLite store: a ``flock`` on a file next to it. A tracking server: a
    registered model named ``keel.registry-lock`` that exists while the lock is held —
    the server's database refuses a second one with the same name, so creating it is an
    atomic test-and-set for every client of the server, wherever it runs. A holder that
    died leaves it behind: a lock older than 60 s is broken. Re-entrant within one
    process (a promotion that registers, then moves, takes it once).
    """
    remote = tracking_uri.startswith(("http://", "https://"))
    if not tracking_uri.startswith("sqlite:///") and not remote:
        yield
        return
    key = tracking_uri if remote else str(Path(tracking_uri.removeprefix("sqlite:///")).resolve())
    with _LOCKS_GUARD:
        local, holder = _LOCKS.setdefault(key, (threading.RLock(), []))
    with local:
        outermost = not holder
        if outermost:
            holder.append(_server_lock(tracking_uri) if remote else _file_lock(key))
        try:
            yield
        finally:
            if outermost:
                holder.pop()()


def _file_lock(store: str) -> Any:
    handle = open(store + ".keel-lock", "a")  # noqa: SIM115
    fcntl.flock(handle, fcntl.LOCK_EX)

    def release() -> None:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()

    return release


def _server_lock(tracking_uri: str) -> Any:
    """Hold ``keel.registry-lock`` on the server; the function that releases it."""
    client = MlflowClient(tracking_uri)
    me = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while True:
        try:
            client.create_registered_model(
                LOCK_MODEL,
                tags={"keel.holder": me, "keel.since": f"{time.time():.3f}"},
                description="Held by Keel while it moves an alias; deleted right after.",
            )
            break
        except MlflowException as exc:
            # RESOURCE_DOES_NOT_EXIST: our lock was deleted while its tags were being
            # written (broken as stale by a client that saw it half-made): try again
            if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST"):
                raise
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                continue
        try:
            held = client.get_registered_model(LOCK_MODEL)
            # the age from the server's own creation time, written with the row itself
            # (a tag may not be there yet while the holder is still creating the lock)
            since = (held.creation_timestamp or time.time() * 1000) / 1000
            if time.time() - since > LOCK_STALE_SECONDS:
                client.delete_registered_model(LOCK_MODEL)  # its holder died
                continue
        except MlflowException:
            continue  # released meanwhile: try again at once
        if time.monotonic() > deadline:
            raise KeelFinding(
                f"the registry at {tracking_uri} stayed locked by another alias move for"
                f" {LOCK_WAIT_SECONDS:.0f} s; try again"
            )
        time.sleep(0.05 + random.random() * 0.2)  # noqa: S311 (jitter, not a secret)

    def release() -> None:
        try:
            held = client.get_registered_model(LOCK_MODEL)
            if held.tags.get("keel.holder") == me:
                client.delete_registered_model(LOCK_MODEL)
        except MlflowException:
            pass  # broken as stale by another client: nothing to release

    return release


def _registered(client: MlflowClient, name: str) -> Any:
    try:
        return client.get_registered_model(name)
    except MlflowException:
        known = [m.name for m in client.search_registered_models(max_results=100)]
        raise ModelNotFoundError(
            f"no registered model {name!r}; known: {', '.join(known) or 'none'}"
        ) from None


def _live(client: MlflowClient, name: str, version: str) -> Any:
    """The version, refused (exit 2) when it is retired: no alias points at it again."""
    found = _version(client, name, version)
    retired = (found.tags or {}).get("keel.retired")
    if retired:
        raise KeelInputError(
            f"{name} version {version} is retired and takes no alias; its evidence is kept"
            f" (`keel card {name}/{version}`). Retrain, or promote a live version"
        )
    return found


def _version(client: MlflowClient, name: str, version: str) -> Any:
    _registered(client, name)
    try:
        return client.get_model_version(name, str(version))
    except MlflowException:
        quoted = name.replace("'", "\\'")
        versions = sorted(int(v.version) for v in client.search_model_versions(f"name='{quoted}'"))
        raise ModelNotFoundError(
            f"model {name!r} has no version {version}; versions: "
            f"{', '.join(map(str, versions)) or 'none'}"
        ) from None


__all__ = [
    "ALIASES",
    "AliasEvent",
    "alias_version",
    "current_user",
    "gate_failures",
    "history",
    "move_alias",
    "promote",
    "registry_lock",
    "rollback",
]
