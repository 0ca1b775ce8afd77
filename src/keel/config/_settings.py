"""Where Keel keeps things: the one place the environment is read."""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from keel.config._model import ProjectConfig

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"


@dataclass(frozen=True)
class Settings:
    """Resolved storage locations for one project.

    Attributes
    ----------
    tracking_uri
        MLflow tracking and registry store (SQLite under ``.keel/`` by default).
    artifact_location
        Where MLflow artifacts of new experiments go (``.keel/artifacts``).
    data_store
        Content-addressed dataset snapshots (``.keel/data``).
    reports_dir
        Human-readable reports (``.keel/reports``).
    stage_store
        Outputs of ``keel run``'s stages, by cache key (``.keel/stages``).
    """

    tracking_uri: str
    artifact_location: str | None  # None: the tracking server's own (a shared store)
    data_store: Path
    reports_dir: Path
    stage_store: Path | None = None


def resolve_settings(config: ProjectConfig, environ: Mapping[str, str] | None = None) -> Settings:
    """Resolve storage for ``config``: config beats environment beats defaults."""
    env = os.environ if environ is None else environ
    keel_dir = config.keel_dir
    tracking_uri = (
        config.tracking_uri or env.get(TRACKING_URI_ENV) or sqlite_uri(keel_dir / "mlflow.db")
    )
    # a tracking server keeps the artifacts where every client can read them (its
    # --artifacts-destination, proxied); only a local store keeps them in .keel/
    shared = is_server(tracking_uri)
    return Settings(
        tracking_uri=tracking_uri,
        artifact_location=None if shared else (keel_dir / "artifacts").resolve().as_uri(),
        data_store=keel_dir / "data",
        reports_dir=keel_dir / "reports",
        stage_store=keel_dir / "stages",
    )


def shown_url(url: str) -> str:
    """``scheme://host[:port]/…``: a URL without its path, query or password (for humans)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/…"


def is_server(tracking_uri: str) -> bool:
    """Whether the tracking URI is a tracking server (shared), not a local store."""
    return tracking_uri.startswith(("http://", "https://", "databricks"))


def sqlite_uri(path: Path) -> str:
    """Return the SQLAlchemy URI of a SQLite file (absolute path)."""
    return f"sqlite:///{Path(path).resolve()}"
