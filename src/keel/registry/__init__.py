"""Registry: model packages in MLflow, aliases, loading from the registry only."""

from keel.registry._mlflow import (
    CHALLENGER,
    CHAMPION,
    TRUSTED_TYPES,
    LoadedPackage,
    ModelRef,
    assign_alias,
    ensure_experiment,
    load_package,
    log_model_package,
    mlflow_scope,
    parse_model_uri,
    version_documents,
)

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "TRUSTED_TYPES",
    "LoadedPackage",
    "ModelRef",
    "assign_alias",
    "ensure_experiment",
    "load_package",
    "log_model_package",
    "mlflow_scope",
    "parse_model_uri",
    "version_documents",
]
