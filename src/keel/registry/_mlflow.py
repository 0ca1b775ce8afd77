"""The MLflow adapter: tracking scope, model packages, the registry and its aliases."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature

from keel.data import Schema
from keel.errors import KeelError, ModelNotFoundError, did_you_mean
from keel.registry._aliases import alias_version, move_alias, registry_lock

CHAMPION = "champion"
CHALLENGER = "challenger"
METADATA_KEY = "keel"
PACKAGE_DIR = "keel"  # folder inside the model's artifacts holding Keel's JSON documents

# Types inside Keel's pipelines that skops does not trust by default. Declared here,
# once, instead of trusting whatever a file happens to contain.
TRUSTED_TYPES: tuple[str, ...] = (
    "collections.OrderedDict",
    "lightgbm.basic.Booster",
    "lightgbm.sklearn.LGBMClassifier",
    "lightgbm.sklearn.LGBMRegressor",
    "numpy.dtype",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.tree._tree.Tree",
    "keel.estimators.EnsembleClassifier",
    "keel.estimators.EnsembleRegressor",
    "keel.estimators.GroupThresholdClassifier",
    "keel.estimators.LabelledXGBClassifier",
    "keel.estimators.MixtureClassifier",
    "xgboost.core.Booster",
    "xgboost.sklearn.XGBRegressor",
)

_REQUIREMENTS = (
    "mlflow",
    "scikit-learn",
    "lightgbm",
    "xgboost-cpu",
    "skops",
    "pandas",
    "numpy",
    "scipy",
)


# MLflow's HTTP client retries a refused request 7 times with a doubling backoff (minutes
# of silence when the server is down); Keel's commands retry a few times, then say so
HTTP_RETRIES = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
}
_REACHED: dict[str, float] = {}
CHECK_EVERY_SECONDS = 30.0


def reachable(tracking_uri: str, tries: int = 3) -> None:
    """A tracking server answers ``GET /health`` (retried ``tries`` times), or one error.

    Local stores pass at once. A server that answered within the last 30 s is not asked
    again. Raises ModelNotFoundError (exit 2) naming the server and the fix.
    """
    if not tracking_uri.startswith(("http://", "https://")):
        return
    for name, value in HTTP_RETRIES.items():
        os.environ.setdefault(name, value)
    if time.monotonic() - _REACHED.get(tracking_uri, -1e9) < CHECK_EVERY_SECONDS:
        return
    import requests

    problem = ""
    for attempt in range(tries):
        try:
            answer = requests.get(tracking_uri.rstrip("/") + "/health", timeout=5)
            if answer.status_code == 200:
                _REACHED[tracking_uri] = time.monotonic()
                return
            problem = f"HTTP {answer.status_code}"
        except requests.RequestException as exc:
            problem = type(exc).__name__
        if attempt + 1 < tries:
            time.sleep(2**attempt)  # 1 s, 2 s, ...
    raise ModelNotFoundError(
        f"cannot reach the MLflow tracking server at {tracking_uri} ({problem}, {tries}"
        " tries): start it, or point tracking_uri / MLFLOW_TRACKING_URI at a running one"
    )


_WARMING: dict[str, threading.Thread] = {}


def warm_up(tracking_uri: str) -> None:
    """Import MLflow's store code for ``tracking_uri`` in a background thread.

    The first use of a SQL tracking store imports MLflow's SQLAlchemy store and its
    schema migrations (~1.2 s). Tuning leaves a core free (every model is fitted on one
    thread), so the imports happen beside it. Nothing is opened or written: a run
    writes nothing before its data has passed every check. :func:`mlflow_scope` waits
    for the thread before any use.
    """
    if tracking_uri in _WARMING or "://" not in tracking_uri:
        return
    if tracking_uri.split("://")[0].split("+")[0] not in ("sqlite", "postgresql", "mysql"):
        return

    def load() -> None:
        with contextlib.suppress(Exception):  # the real use reports any problem
            import mlflow.store.model_registry.sqlalchemy_store
            import mlflow.store.tracking.sqlalchemy_store  # noqa: F401

    thread = threading.Thread(target=load, name="keel-warm-up", daemon=True)
    _WARMING[tracking_uri] = thread
    thread.start()


@contextmanager
def mlflow_scope(tracking_uri: str) -> Iterator[MlflowClient]:
    """Point MLflow's process-wide tracking and registry URIs at ``tracking_uri``.

    MLflow keeps these in module globals *and* mirrors them into the environment
    (``MLFLOW_TRACKING_URI``, ``MLFLOW_REGISTRY_URI``) for subprocesses. Keel sets them
    only inside this scope and restores all four exactly afterwards, so a later
    ``MlflowClient`` in the same process is not silently pointed at this store.
    """
    from mlflow.tracking import _tracking_service
    from mlflow.tracking._model_registry import utils as registry_utils

    names = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    previous_env = {name: os.environ.get(name) for name in names}
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"  # Keel draws its own
    previous_tracking = getattr(_tracking_service.utils, "_tracking_uri", None)
    previous_registry = getattr(registry_utils, "_registry_uri", None)
    warming = _WARMING.get(tracking_uri)
    if warming is not None:
        warming.join(timeout=120)
    quiet = [logging.getLogger(n) for n in ("mlflow", "alembic")]
    levels = [lg.level for lg in quiet]
    for lg in quiet:
        lg.setLevel(logging.WARNING)
    reachable(tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    try:
        yield MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    finally:
        mlflow.set_tracking_uri(previous_tracking)
        registry_utils._registry_uri = previous_registry
        for name, value in previous_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        for lg, level in zip(quiet, levels, strict=True):
            lg.setLevel(level)


def ensure_experiment(client: MlflowClient, name: str, artifact_location: str | None) -> str:
    """Return the id of experiment ``name``, creating it with ``artifact_location``.

    ``None`` leaves the location to the tracking server (its proxied artifact store).
    Two runs starting at once may both find no experiment: the one whose creation is
    refused as a duplicate uses the other's.
    """
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location)
    except MlflowException as exc:
        if "ALREADY_EXISTS" not in str(exc.error_code) + str(exc):
            raise
        created = client.get_experiment_by_name(name)
        if created is None:
            raise
        return created.experiment_id


@dataclass(frozen=True)
class ModelRef:
    """A registered model version and the alias Keel gave it."""

    name: str
    version: str
    alias: str | None = None

    @property
    def uri(self) -> str:
        """``models:/NAME/VERSION``."""
        return f"models:/{self.name}/{self.version}"


def family_tags(metadata: dict[str, Any]) -> dict[str, str]:
    """``keel.family`` and ``keel.task`` of a package's metadata (run and version tags)."""
    return {f"keel.{k}": str(metadata[k]) for k in ("family", "task") if metadata.get(k)}


def log_model_package(
    pipeline: Any,
    *,
    registered_name: str,
    example: pd.DataFrame,
    schema: Schema,
    metadata: dict[str, Any],
    signature_rows: pd.DataFrame,
    files: dict[str, dict[str, Any]] | None = None,
    version_tags: dict[str, str] | None = None,
) -> tuple[str, ModelRef]:
    """Log ``pipeline`` as an MLflow model in the active run, then register it.

    The package carries the signature, an input example, pinned requirements, the
    schema under ``metadata['keel']`` (visible to any MLflow client) and, under
    ``keel/`` in the model's artifacts, ``schema.json`` and every JSON document in
    ``files`` (the profile, say). Files are added before registration, so a
    registered version is complete from its first moment; ``version_tags`` are set by
    the registration itself (the stage key that makes registering idempotent).
    """
    import skops.io as sio

    untrusted = set(sio.get_untrusted_types(data=sio.dumps(pipeline)))
    unexpected = sorted(untrusted - set(TRUSTED_TYPES))
    if unexpected:
        raise KeelError(f"the model holds types Keel does not trust for skops: {unexpected}")
    predictions = pipeline.predict(signature_rows)
    signature = infer_signature(signature_rows, predictions)
    requirements = [f"{p}=={installed_version(p)}" for p in _REQUIREMENTS]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        info = mlflow.sklearn.log_model(
            pipeline,
            name="model",
            signature=signature,
            input_example=example,
            serialization_format="skops",
            skops_trusted_types=sorted(untrusted),
            pip_requirements=requirements,
            metadata={METADATA_KEY: {**metadata, "schema": schema.to_dict()}},
        )
        documents = {"schema.json": schema.to_dict(), **(files or {})}
        with tempfile.TemporaryDirectory() as folder:
            for name, document in documents.items():
                (Path(folder) / name).write_text(json.dumps(document, sort_keys=True))
            MlflowClient().log_model_artifacts(info.model_id, folder, PACKAGE_DIR)
        # tags given at registration: the version and its tags appear together
        recorded = family_tags(metadata)
        mlflow.set_tags(recorded)
        version = mlflow.register_model(
            info.model_uri, registered_name, tags={**(version_tags or {}), **recorded}
        )
    return info.model_uri, ModelRef(registered_name, str(version.version))


def assign_alias(
    client: MlflowClient,
    ref: ModelRef,
    tracking_uri: str,
    versus: dict[str, Any] | None = None,
) -> ModelRef:
    """Alias a new version that passed its gates, and record the move.

    ``champion`` if the model has none yet, or if ``versus`` (the comparison with the
    champion on the same test rows) says to promote it; else ``challenger``.
    """
    with registry_lock(tracking_uri):
        current = alias_version(client, ref.name, CHAMPION)
        first = current is None
        promote = first or bool(versus and versus.get("promote"))
        if first:
            why = "first version to pass its gates"
        elif versus:
            why = versus.get("reason", "")
        else:
            why = "new version"
        compared = (versus or {}).get("champion_version")
        if promote and not first and compared is not None and str(compared) != current:
            # another run moved the champion while this one was compared with the old one
            promote = False
            why = (
                f"compared with version {compared}, but the champion moved to version"
                f" {current} meanwhile: registered as challenger (`keel promote` compares"
                " again)"
            )
        alias = CHAMPION if promote else CHALLENGER
        move_alias(
            client,
            tracking_uri,
            ref.name,
            alias,
            ref.version,
            action="register" if first or not promote else "auto-promote",
            why=why,
        )
    return ModelRef(ref.name, ref.version, alias)


@dataclass
class LoadedPackage:
    """A model loaded from the registry with everything serving needs."""

    name: str
    version: str
    alias: str | None
    model: Any = field(repr=False)
    schema: Schema
    task: str
    classes: tuple[str, ...]
    metadata: dict[str, Any] = field(repr=False)
    documents: dict[str, Any] = field(default_factory=dict, repr=False)
    semver: str | None = None

    @property
    def profile(self) -> dict[str, Any] | None:
        """The reference profile stored in the package (``keel/profile.json``), if any."""
        return self.documents.get("profile.json")


def parse_model_uri(uri: str) -> tuple[str, str | None, str | None]:
    """Split ``NAME``, ``NAME@ALIAS``, ``NAME/VERSION`` or ``models:/...`` into parts."""
    text = uri.removeprefix("models:/")
    if "@" in text:
        name, alias = text.split("@", 1)
        return name, None, alias
    if "/" in text:
        name, version = text.split("/", 1)
        return name, version, None
    return text, None, CHAMPION


def _version_of(client: MlflowClient, uri: str, tracking_uri: str) -> Any:
    """The registry's ModelVersion for ``NAME[@ALIAS|/VERSION]``, or a clear error."""
    name, version, alias = parse_model_uri(uri)
    try:
        if alias is not None:
            return client.get_model_version_by_alias(name, alias)
        return client.get_model_version(name, str(version))
    except MlflowException as exc:
        known = [m.name for m in client.search_registered_models(max_results=100)]
        hint = did_you_mean(name, known) if name not in known else ""
        what = f"alias '{alias}'" if alias else f"version {version}"
        raise ModelNotFoundError(
            f"model {name!r} has no {what} in the registry at {tracking_uri}{hint};"
            " run `keel run` first or check the name"
        ) from exc


def model_version(client: MlflowClient, uri: str, tracking_uri: str) -> Any:
    """The registry's ModelVersion for ``NAME[@ALIAS|/VERSION]``.

    Raises
    ------
    ModelNotFoundError
        When there is no registry, or the name, alias or version does not exist.
    """
    _require_store(tracking_uri, parse_model_uri(uri)[0])
    return _version_of(client, uri, tracking_uri)


def _require_store(tracking_uri: str, name: str) -> None:
    if tracking_uri.startswith("sqlite:///"):
        store = Path(tracking_uri.removeprefix("sqlite:///"))
        if not store.exists():
            raise ModelNotFoundError(
                f"no model registry at {store}; run `keel run` first to train and register"
                f" {name!r}, or point MLFLOW_TRACKING_URI at your registry"
            )


def version_documents(
    uri: str, tracking_uri: str, paths: tuple[str, ...]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A registered version's facts and JSON/YAML documents logged on its run.

    Returns ``(info, documents)``: ``info`` has name, version, aliases, created, run_id
    and tracking_uri; ``documents`` maps each of ``paths`` (run artifact paths) that
    exists to its parsed content (``.json`` and ``.yaml`` files).
    """
    import yaml

    name = parse_model_uri(uri)[0]
    _require_store(tracking_uri, name)
    with mlflow_scope(tracking_uri) as client:
        mv = _version_of(client, uri, tracking_uri)
        documents: dict[str, Any] = {}
        with warnings.catch_warnings(), tempfile.TemporaryDirectory() as folder:
            warnings.simplefilter("ignore")
            for path in paths:
                try:
                    local = mlflow.artifacts.download_artifacts(
                        run_id=mv.run_id, artifact_path=path, dst_path=folder
                    )
                except (MlflowException, OSError):
                    continue
                text = Path(local).read_text()
                documents[path] = (
                    json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
                )
    created = pd.Timestamp(mv.creation_timestamp, unit="ms", tz="UTC")
    info = {
        "name": mv.name,
        "version": str(mv.version),
        "aliases": sorted(mv.aliases or []),
        "created": created.strftime("%Y-%m-%d %H:%M UTC"),
        "run_id": mv.run_id,
        "tracking_uri": tracking_uri,
        "tags": dict(mv.tags or {}),
        "semver": (mv.tags or {}).get("keel.semver"),
    }
    return info, documents


def package_documents(
    uri: str, tracking_uri: str, names: tuple[str, ...]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A registered version's Keel metadata and some of its package documents.

    Reads the package's ``MLmodel`` and ``keel/NAME`` files only, not the model
    itself: what monitoring needs (task, classes, the drift reference) without loading
    an estimator. Returns ``(metadata, documents)``; ``metadata`` also has ``name`` and
    ``version``; a document the package lacks is absent from ``documents``.

    Raises
    ------
    ModelNotFoundError
        When the name, alias or version does not exist, or Keel did not make it.
    """
    name, _, _ = parse_model_uri(uri)
    _require_store(tracking_uri, name)
    with mlflow_scope(tracking_uri) as client:
        mv = _version_of(client, uri, tracking_uri)
        base = f"models:/{name}/{mv.version}"
        documents: dict[str, Any] = {}
        with warnings.catch_warnings(), tempfile.TemporaryDirectory() as folder:
            warnings.simplefilter("ignore")
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=f"{base}/MLmodel", dst_path=folder
            )
            meta = (mlflow.models.Model.load(local).metadata or {}).get(METADATA_KEY)
            for doc in names:
                try:
                    path = mlflow.artifacts.download_artifacts(
                        artifact_uri=f"{base}/{PACKAGE_DIR}/{doc}", dst_path=folder
                    )
                except (MlflowException, OSError):
                    continue
                documents[doc] = json.loads(Path(path).read_text())
    if not meta:
        raise ModelNotFoundError(f"{base} was not made by Keel (no '{METADATA_KEY}' metadata)")
    return {**meta, "name": name, "version": str(mv.version)}, documents


@dataclass
class DownloadedPackage:
    """A registered version's files in a temporary folder, its Keel metadata and documents."""

    name: str
    alias: str | None
    version: Any
    model_uri: str
    local: Path
    meta: dict[str, Any]
    documents: dict[str, Any]


@contextmanager
def downloaded_package(uri: str, tracking_uri: str) -> Iterator[DownloadedPackage]:
    """Download ``NAME[@ALIAS|/VERSION]`` from the registry only; the files last the scope."""
    name, _, alias = parse_model_uri(uri)
    _require_store(tracking_uri, name)
    with mlflow_scope(tracking_uri) as client:
        mv = _version_of(client, uri, tracking_uri)
        model_uri = f"models:/{name}/{mv.version}"
        retired = (mv.tags or {}).get("keel.retired")
        if retired:
            why = ""
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                why = f" ({json.loads(retired).get('why')})"
            raise ModelNotFoundError(
                f"{name} version {mv.version} is retired{why}; it is not loaded any more."
                f" Serve another version (see `keel history {name}`)"
            )
        with warnings.catch_warnings(), tempfile.TemporaryDirectory() as folder:
            warnings.simplefilter("ignore")
            local = Path(
                mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=folder)
            )
            info = mlflow.models.Model.load(str(local))
            documents = {
                path.name: json.loads(path.read_text())
                for path in (local / PACKAGE_DIR).glob("*.json")
            }
            meta = (info.metadata or {}).get(METADATA_KEY) or {}
            yield DownloadedPackage(name, alias, mv, model_uri, local, meta, documents)


def load_package(uri: str, tracking_uri: str) -> LoadedPackage:
    """Load a registered model (``NAME[@ALIAS|/VERSION]``) from the registry only.

    Raises
    ------
    ModelNotFoundError
        When the name, alias or version does not exist in the registry.
    """
    from keel.families import FAMILIES

    with downloaded_package(uri, tracking_uri) as found:
        name, alias, meta, documents = found.name, found.alias, found.meta, found.documents
        model_uri, mv = found.model_uri, found.version
        if not meta or "schema" not in meta:
            raise ModelNotFoundError(
                f"{model_uri} was not made by Keel (no '{METADATA_KEY}' metadata with a schema)"
            )
        family = FAMILIES.of_metadata(meta)
        if not family.capabilities.has_target:
            raise ModelNotFoundError(
                f"{model_uri} is a {family.name} model ({meta.get('task')}): this command takes"
                " models that score rows of features (keel serve, keel monitor and keel card"
                f" take every family)"
            )
        model = mlflow.sklearn.load_model(str(found.local))
    return LoadedPackage(
        name=name,
        version=str(mv.version),
        alias=alias,
        model=model,
        schema=Schema.from_dict(meta["schema"]),
        task=meta["task"],
        classes=tuple(meta.get("classes", ())),
        metadata=meta,
        documents=documents,
        semver=(mv.tags or {}).get("keel.semver"),
    )
