"""Each layer's public surface is exactly its ``__all__``, and every name in it exists."""

from __future__ import annotations

import importlib

import pytest

LAYERS = [
    "keel",
    "keel.config",
    "keel.data",
    "keel.features",
    "keel.training",
    "keel.evaluation",
    "keel.registry",
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
