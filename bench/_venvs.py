"""Competitor tools in their own virtualenvs (bench/.venvs/TOOL), pinned, made on first use.

Some tools cannot share Keel's environment (Evidently 0.7 does not import with pandas
3; AutoGluon pins its own scikit-learn), so each gets a venv of its own.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENVS = ROOT / "bench" / ".venvs"
TOOL_REQUIREMENTS = {
    "flaml": ["flaml[automl]==2.7.0", "pandas==3.1.1", "scikit-learn==1.9.1"],
    "autogluon": ["autogluon.tabular[lightgbm,xgboost]==1.6.3"],
    "evidently": ["evidently==0.7.23", "pandas==2.3.3", "pyarrow==26.0.1"],
    "nannyml": ["nannyml==0.13.1", "statsmodels==0.15.0", "pyarrow==26.0.1"],
    "gbstats": ["gbstats==0.8.0", "pandas==1.5.3", "numpy==1.26.4", "scipy==1.17.1"],
}


def tool_python(tool: str) -> tuple[Path | None, str]:
    """The python of the tool's own venv, creating it on first use; or why not."""
    venv = VENVS / tool
    python = venv / "bin" / "python"
    marker = venv / ".installed"
    if marker.exists() and marker.read_text().split() == TOOL_REQUIREMENTS[tool]:
        return python, ""
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", *TOOL_REQUIREMENTS[tool]],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["pip failed"])[-1]
        return None, f"{tool} does not install here: {reason[:300]}"
    marker.write_text(" ".join(TOOL_REQUIREMENTS[tool]) + "\n")
    return python, ""
