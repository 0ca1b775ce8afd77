"""`keel drift --ray-address` on a real Ray cluster the test starts on loopback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from keel.cli import app
from tests.conftest import free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ray_cluster():
    ray = Path(sys.executable).parent / "ray"
    if not ray.exists():
        pytest.fail("ray is not installed: it is in keel[dev] (make install-dev)")
    # a short folder: Ray's unix sockets live under it and their paths are capped
    folder = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    port = free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    started = subprocess.run(
        [
            str(ray),
            "start",
            "--head",
            "--node-ip-address=127.0.0.1",
            f"--port={port}",
            "--num-cpus=1",
            "--include-dashboard=false",
            "--disable-usage-stats",
            f"--temp-dir={folder}",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    assert started.returncode == 0, started.stderr[-2000:]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([str(ray), "stop", "--force"], capture_output=True, env=env, timeout=120)
        shutil.rmtree(folder, ignore_errors=True)


def test_drift_on_ray_equals_drift_in_process(
    tmp_path: Path, adult_frame: pd.DataFrame, ray_cluster: str
) -> None:
    frame = adult_frame.drop(columns=["income"])
    frame.iloc[:1200].to_parquet(tmp_path / "ref.parquet")
    frame.iloc[1200:].assign(age=lambda f: f.age + 6).to_csv(tmp_path / "cur.csv", index=False)
    args = ["drift", str(tmp_path / "ref.parquet"), str(tmp_path / "cur.csv"), "--json"]
    local = CliRunner().invoke(app, args)
    on_ray = CliRunner().invoke(app, [*args, "--chunk-rows", "1000", "--ray-address", ray_cluster])
    assert local.exit_code == on_ray.exit_code == 0, on_ray.output
    a, b = json.loads(local.stdout), json.loads(on_ray.stdout)
    assert a["drifted_columns"] == b["drifted_columns"] and "age" in b["drifted_columns"]
    for x, y in zip(a["columns"], b["columns"], strict=True):
        assert x["column"] == y["column"]
        assert x["p_value"] == pytest.approx(y["p_value"], rel=1e-9, abs=1e-300)


def test_an_unreachable_cluster_is_a_clear_error(tmp_path: Path, adult_frame: pd.DataFrame) -> None:
    adult_frame.to_csv(tmp_path / "a.csv", index=False)
    done = CliRunner().invoke(
        app,
        [
            "drift",
            str(tmp_path / "a.csv"),
            str(tmp_path / "a.csv"),
            "--ray-address",
            f"127.0.0.1:{free_port()}",
        ],
    )
    assert done.exit_code == 2, done.output
    assert "Ray cluster" in done.output and "Traceback" not in done.output
