"""Save, register and load a constant model through Keel's registry adapter."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from keel.registry import ModelRef, load_pyfunc_package, log_pyfunc_package

CODE = Path(__file__).with_name("pyfunc.py")


def save(value: float, folder: Path) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "constant.json").write_text(json.dumps({"value": value}))
    return {}


def log_constant(
    value: float, name: str, metadata: dict[str, Any], files: dict[str, Any], tags: dict[str, str]
) -> ModelRef:
    return log_pyfunc_package(
        code=CODE,
        artifact="constant",
        save=lambda folder: save(value, folder),
        registered_name=name,
        metadata={**metadata, "family": "constant", "task": "constant"},
        example=pd.DataFrame({"x": [1.0, 2.0]}),
        output=pd.DataFrame({"score": [value, value]}),
        requirements=("mlflow", "pandas"),
        files=files,
        version_tags=tags,
    )


def load_constant(uri: str, tracking_uri: str) -> Any:
    def load(folder: Path) -> float:
        return float(json.loads((folder / "constant.json").read_text())["value"])

    return load_pyfunc_package(uri, tracking_uri, "constant", "constant", load)
