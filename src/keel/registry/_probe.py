"""Ask the registry whether a model version exists, without importing MLflow.

A ``keel run`` with nothing to do asks one question of the registry: is the version its
stored ``register`` stage made still there? Importing MLflow to ask it costs about
1.5 s, more than everything else a no-op run does. This module answers it directly:

- from a SQLite store (``sqlite:///…``, Keel's default), with one read-only query of
  MLflow's ``model_versions`` and ``model_version_tags`` tables;
- from an MLflow tracking server (``http(s)://…``), with one ``GET`` of its REST API
  (``/api/2.0/mlflow/model-versions/get``), authenticated as MLflow would from
  ``MLFLOW_TRACKING_TOKEN`` or ``MLFLOW_TRACKING_USERNAME``/``PASSWORD``.

Whenever it cannot be sure — another kind of store, a schema it does not know, several
rows for one version, TLS or auth settings it does not read, a network error — it says
so (``exists is None``) and the caller asks MLflow, as before. It never answers "gone"
for a version MLflow would find, nor "there" for one MLflow would not: a test compares
both on real stores.
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

DELETED = "Deleted_Internal"  # MLflow soft-deletes a version by this stage
# settings of MLflow's HTTP client this probe does not reproduce: ask MLflow instead
_UNREAD_SETTINGS = (
    "MLFLOW_TRACKING_INSECURE_TLS",
    "MLFLOW_TRACKING_SERVER_CERT_PATH",
    "MLFLOW_TRACKING_CLIENT_CERT_PATH",
    "MLFLOW_TRACKING_AUTH",
    "MLFLOW_WORKSPACE",
)


@dataclass(frozen=True)
class VersionProbe:
    """What the registry says of one version: ``exists`` is None when it cannot tell."""

    exists: bool | None
    run_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


CANNOT_TELL = VersionProbe(exists=None)
GONE = VersionProbe(exists=False)


def probe_version(tracking_uri: str, name: str, version: str | int) -> VersionProbe:
    """Whether ``name`` version ``version`` exists, with its run id and tags."""
    if os.environ.get("MLFLOW_REGISTRY_URI", tracking_uri) != tracking_uri:
        return CANNOT_TELL  # the registry lives elsewhere
    if tracking_uri.startswith("sqlite:///") and "?" not in tracking_uri:
        return _from_sqlite(Path(tracking_uri.removeprefix("sqlite:///")), name, str(version))
    if tracking_uri.startswith(("http://", "https://")):
        if any(os.environ.get(setting) for setting in _UNREAD_SETTINGS):
            return CANNOT_TELL
        return _from_server(tracking_uri, name, str(version))
    return CANNOT_TELL


def _from_sqlite(path: Path, name: str, version: str) -> VersionProbe:
    """One read-only query of MLflow's registry tables."""
    if not path.is_file():
        return GONE  # no store, no version (MLflow would create an empty one)
    try:
        with sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5) as db:
            rows = db.execute(
                "SELECT run_id, current_stage FROM model_versions WHERE name = ? AND version = ?",
                (name, int(version)),
            ).fetchall()
            if len(rows) > 1:
                return CANNOT_TELL  # one per workspace: MLflow knows which is ours
            if not rows or rows[0][1] == DELETED:
                return GONE
            tags = db.execute(
                "SELECT key, value FROM model_version_tags WHERE name = ? AND version = ?",
                (name, int(version)),
            ).fetchall()
    except (sqlite3.Error, ValueError):
        return CANNOT_TELL  # locked, an unknown schema, a version that is not a number
    return VersionProbe(exists=True, run_id=rows[0][0], tags=dict(tags))


def _from_server(base: str, name: str, version: str) -> VersionProbe:
    """One GET of the tracking server's REST API."""
    query = urllib.parse.urlencode({"name": name, "version": version})
    request = urllib.request.Request(  # noqa: S310 (the scheme is http or https, checked above)
        f"{base.rstrip('/')}/api/2.0/mlflow/model-versions/get?{query}"
    )
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    user, password = (os.environ.get(f"MLFLOW_TRACKING_{k}") for k in ("USERNAME", "PASSWORD"))
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    elif user and password:
        pair = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {pair}")
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310
            found = json.loads(answer.read())["model_version"]
    except urllib.error.HTTPError as error:
        try:
            code = json.loads(error.read()).get("error_code")
        except (ValueError, OSError):
            code = None
        return GONE if code == "RESOURCE_DOES_NOT_EXIST" else CANNOT_TELL
    except (OSError, ValueError, KeyError):
        return CANNOT_TELL  # unreachable, not JSON: MLflow retries and says why
    if found.get("current_stage") == DELETED:
        return GONE
    tags = {t["key"]: t.get("value", "") for t in found.get("tags", [])}
    return VersionProbe(exists=True, run_id=found.get("run_id"), tags=tags)


__all__ = ["CANNOT_TELL", "GONE", "VersionProbe", "probe_version"]
