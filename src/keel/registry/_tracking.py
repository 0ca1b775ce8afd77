"""MLflow tracking, for the stages that record a run: the one door to MLflow's logging.

Thin on purpose: the pipeline says what to record, this module says how MLflow takes
it. Calls act on the active run (the one :func:`start_run` opened) unless a run id is
given. Everything runs inside :func:`keel.registry.mlflow_scope`.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# MLflow (about 1.5 s to import) loads inside the functions that use it, so importing
# this module, or keel.registry, costs nothing until a run is recorded.


def __getattr__(name: str) -> Any:
    """``TrackingError``: what MLflow raises when the store refuses (loads MLflow)."""
    if name == "TrackingError":
        from mlflow.exceptions import MlflowException

        return MlflowException
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@contextmanager
def start_run(experiment_id: str, run_name: str, nested: bool = False) -> Iterator[str]:
    """Open a run (nested in the active one if asked); yields its id; ends it on exit."""
    import mlflow

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, nested=nested) as run:
            yield run.info.run_id


def log_child_run(
    experiment_id: str,
    run_name: str,
    params: dict[str, Any],
    metrics: dict[str, float],
    tags: dict[str, Any],
) -> str:
    """A finished run nested in the active one, written in three store calls.

    What :func:`start_run` + ``log_*`` do in six or more; a tuning study logs one per
    trial (12 ms instead of 21 ms each on SQLite). Returns the run's id.
    """
    import time

    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

    parent = mlflow.active_run()
    client = MlflowClient()
    run_tags = {str(k): str(v) for k, v in tags.items()} | {MLFLOW_RUN_NAME: run_name}
    if parent is not None:
        run_tags[MLFLOW_PARENT_RUN_ID] = parent.info.run_id
    run = client.create_run(experiment_id, tags=run_tags, run_name=run_name)
    now = int(time.time() * 1000)
    client.log_batch(
        run.info.run_id,
        metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
        params=[Param(k, str(v)) for k, v in params.items()],
    )
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def log_params(params: dict[str, Any]) -> None:
    """Parameters of the active run."""
    import mlflow

    mlflow.log_params(params)


def log_metrics(metrics: dict[str, float]) -> None:
    """Metrics of the active run."""
    import mlflow

    mlflow.log_metrics(metrics)


def log_metric(name: str, value: float) -> None:
    """One metric of the active run."""
    import mlflow

    mlflow.log_metric(name, value)


def set_tags(tags: dict[str, Any]) -> None:
    """Tags of the active run."""
    import mlflow

    mlflow.set_tags(tags)


def set_tag(name: str, value: Any) -> None:
    """One tag of the active run."""
    import mlflow

    mlflow.set_tag(name, value)


def log_dict(document: dict[str, Any], path: str) -> None:
    """A JSON document as an artifact of the active run."""
    import mlflow

    mlflow.log_dict(document, path)


def log_text(text: str, path: str, run_id: str | None = None) -> None:
    """A text artifact of the active run, or of ``run_id``."""
    import mlflow

    if run_id is None:
        mlflow.log_text(text, path)
    else:
        mlflow.MlflowClient().log_text(run_id, text, path)


SCHEMA_ROWS = 10_000


def log_dataset(
    frame: Any, source: str, name: str, targets: str, digest: str, tags: dict[str, str]
) -> None:
    """The training data as an MLflow dataset input (context ``training``).

    MLflow infers the dataset's schema by looking at every value of text columns (31 s
    for 1.9M interactions); beyond :data:`SCHEMA_ROWS` rows the schema is inferred from
    the first :data:`SCHEMA_ROWS` (the columns and their types; the profile still
    counts every row). Two runs logging the same dataset at the same moment race to
    create its row on a shared tracking server (a unique-key violation for the slower
    one): the slower one tries again, and then finds the row the other created.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    dataset = mlflow.data.from_pandas(
        frame, source=source, name=name, targets=targets, digest=digest
    )
    if len(frame) > SCHEMA_ROWS:  # ``schema`` is a cached property: computed once, here
        from mlflow.models import infer_signature

        dataset.__dict__["schema"] = infer_signature(frame.head(SCHEMA_ROWS)).inputs
    for attempt in range(3):
        try:
            mlflow.log_input(dataset, context="training", tags=tags)
            return
        except MlflowException as exc:
            if attempt == 2 or "unique" not in str(exc).lower():
                raise
            time.sleep(0.2 * (attempt + 1))


def log_artifact(client: Any, run_id: str, path: str | Path, folder: str | None = None) -> None:
    """A file as an artifact of ``run_id`` (under ``folder``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        client.log_artifact(run_id, str(path), artifact_path=folder)


def package_info(name: str, version: str) -> tuple[bool, dict[str, Any], set[str]]:
    """A registered version's package: has a signature, Keel's metadata, ``keel/`` files."""
    import mlflow

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        info = mlflow.models.get_model_info(f"models:/{name}/{version}")
        try:
            listed = mlflow.artifacts.list_artifacts(artifact_uri=f"models:/{name}/{version}/keel")
            files = {Path(a.path).name for a in listed}
        except Exception:  # an older or foreign package: no keel/ folder
            files = set()
    return info.signature is not None, (info.metadata or {}).get("keel", {}), files


def client_for(tracking_uri: str) -> Any:
    """A client of the tracking and registry store at ``tracking_uri``."""
    import mlflow

    return mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
