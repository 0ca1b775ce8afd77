"""Each layer's public surface is exactly its ``__all__``, and every name in it exists."""

from __future__ import annotations

import importlib

import pytest

LAYERS = [
    "keel",
    "keel.config",
    "keel.data",
    "keel.tasks",
    "keel.reports",
    "keel.families.tabular.features",
    "keel.families.tabular.training",
    "keel.evaluation",
    "keel.registry",
    "keel.families.tabular.responsible",
    "keel.monitoring",
    "keel.serving",
    "keel.pipeline",
    "keel.cli",
    "keel.errors",
]


@pytest.mark.parametrize("name", LAYERS)
def test_all_is_sorted_and_resolves(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert len(set(exported)) == len(exported)
    for attr in exported:
        assert hasattr(module, attr), f"{name}.{attr} is in __all__ but missing"


@pytest.mark.parametrize("name", LAYERS[1:-1])
def test_public_names_are_all_exported(name: str) -> None:
    module = importlib.import_module(name)
    public = {
        n
        for n, v in vars(module).items()
        if not n.startswith("_") and getattr(v, "__module__", "").startswith("keel.")
    }
    assert public <= set(module.__all__)


def test_mlflow_scope_restores_globals_and_environment(monkeypatch, tmp_path) -> None:
    import os

    import mlflow

    from keel.registry import mlflow_scope

    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////tmp/theirs.db")
    before = mlflow.get_tracking_uri()
    with mlflow_scope(f"sqlite:///{tmp_path}/ours.db"):
        assert mlflow.get_registry_uri().endswith("ours.db")
    assert "MLFLOW_REGISTRY_URI" not in os.environ
    assert os.environ["MLFLOW_TRACKING_URI"] == "sqlite:////tmp/theirs.db"
    assert mlflow.get_tracking_uri() == before
