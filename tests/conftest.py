"""Shared fixtures: a small real sample of UCI Adult and throwaway projects around it."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import yaml

DATA = Path(__file__).parent / "data"
ADULT_SAMPLE = DATA / "adult_sample.csv"


@pytest.fixture(autouse=True)
def _no_ambient_tracking(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never write to a tracking server the developer happens to have configured."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture(scope="session")
def adult_frame() -> pd.DataFrame:
    """2,000 real rows of UCI Adult (a seeded sample committed with the tests)."""
    return pd.read_csv(ADULT_SAMPLE)


ProjectFactory = Callable[..., Path]


@pytest.fixture
def make_project(tmp_path: Path, adult_frame: pd.DataFrame) -> ProjectFactory:
    """Write a project folder (keel.yaml + data) and return the keel.yaml path."""

    def make(
        config: dict | str | None = None,
        frame: pd.DataFrame | None = None,
        data_name: str = "adult.csv",
        folder: Path | None = None,
    ) -> Path:
        root = folder or tmp_path / "project"
        root.mkdir(parents=True, exist_ok=True)
        data = adult_frame if frame is None else frame
        if data_name.endswith(".csv"):
            data.to_csv(root / data_name, index=False)
        else:
            data.to_parquet(root / data_name, index=False)
        if config is None:
            config = {
                "name": "income",
                "data": data_name,
                "target": "income",
                "sensitive_features": ["sex", "race"],
            }
        text = config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False)
        (root / "keel.yaml").write_text(text)
        return root / "keel.yaml"

    return make


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
