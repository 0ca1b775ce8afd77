"""Shared fixtures: a small real sample of UCI Adult and throwaway projects around it."""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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
                "budget": 0,
            }
        text = config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False)
        (root / "keel.yaml").write_text(text)
        return root / "keel.yaml"

    return make


def keel_in(root: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    """`keel ARGS` in-process from ``root`` (the CLI reads ./keel.yaml there).

    The terminal is 250 columns wide, so help texts and tables are not wrapped.
    """
    import os

    from typer.testing import CliRunner

    from keel.cli import app

    old = os.getcwd()
    os.chdir(root)
    try:
        return CliRunner().invoke(app, list(args), env={"COLUMNS": "250", **(env or {})})
    finally:
        os.chdir(old)


SMALL_PROJECT = {
    "name": "income",
    "data": "adult.csv",
    "target": "income",
    "ignore_columns": ["fnlwgt"],
    "budget": 0,
    "cv_folds": 2,
}


def train_project(root: Path, frame: pd.DataFrame, **config: Any) -> dict[str, Any]:
    """Write ``frame`` and a small keel.yaml (``SMALL_PROJECT`` + ``config``) into
    ``root``, run `keel run --json` there, and return its JSON (it must succeed)."""
    frame.to_csv(root / "adult.csv", index=False)
    (root / "keel.yaml").write_text(json.dumps({**SMALL_PROJECT, **config}))
    done = keel_in(root, "run", "--json")
    assert done.exit_code == 0, done.output
    return json.loads(done.stdout)


def start_server(root: Path, *extra: str) -> tuple[Any, str]:
    """Start ``keel serve`` in ``root`` on a free loopback port; wait until it is ready.

    Its stderr goes to ``root/serve.log``. Returns ``(process, url)``; the caller stops
    the process.
    """
    import os
    import subprocess
    import sys
    import time

    import httpx

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    with (root / "serve.log").open("a") as log:  # the child keeps its own descriptor
        process = subprocess.Popen(
            [sys.executable, "-m", "keel", "serve", "--port", str(port), *extra],
            cwd=root,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, (root / "serve.log").read_text()
        try:
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise AssertionError("server did not start in 120 s")


class WebhookReceiver:
    """A webhook receiver on loopback that fails its first ``failures`` POSTs."""

    def __init__(self, failures: int = 0, status: int = 500) -> None:
        self.received: list[dict] = []
        self.attempts = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.attempts += 1
                if receiver.attempts <= failures:
                    self.send_response(status)
                    self.end_headers()
                    return
                receiver.received.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/SECRET-TOKEN"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def postgres_cluster(user: str) -> Iterator[str]:
    """A throwaway PostgreSQL cluster on loopback (Debian's binaries); its SQLAlchemy URL.

    Skips when the server binaries are missing (.ci/run installs them) or, as root, when
    there is no ``postgres`` account to run it (PostgreSQL refuses to run as root).
    """
    import glob
    import os
    import shutil
    import subprocess
    import tempfile

    def binary(name: str) -> str | None:
        found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or [shutil.which(name)]
        return found[-1] if found and found[-1] else None

    initdb, pg_ctl = binary("initdb"), binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("PostgreSQL server binaries not installed (.ci/run installs them)")
    runas: list[str] = []
    if os.geteuid() == 0:
        if subprocess.run(["id", "postgres"], capture_output=True).returncode != 0:
            pytest.skip("running as root and there is no 'postgres' user to run the server")
        runas = ["runuser", "-u", "postgres", "--"]
    # not under pytest's private tmp: the server's account must be able to reach it
    folder = Path(tempfile.mkdtemp(prefix="keel-pg-"))
    data = folder / "data"
    if runas:
        shutil.chown(folder, "postgres")
    subprocess.run(
        [*runas, initdb, "-D", str(data), "-U", user, "-A", "trust"],
        check=True,
        capture_output=True,
    )
    port = free_port()
    subprocess.run(
        [
            *runas,
            pg_ctl,
            "-D",
            str(data),
            "-w",
            "-l",
            str(folder / "pg.log"),
            "-o",
            f"-p {port} -k {folder} -c listen_addresses=127.0.0.1",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql+psycopg://{user}@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*runas, pg_ctl, "-D", str(data), "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def ray_head(cpus: int) -> Iterator[str]:
    """A Ray head with ``cpus`` worker CPUs on loopback (`ray start`); its HOST:PORT."""
    import os
    import shutil
    import subprocess
    import sys
    import tempfile

    ray = Path(sys.executable).parent / "ray"
    if not ray.exists():
        pytest.fail("ray is not installed: it is in keel-ml[dev] (make install-dev)")
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
            f"--num-cpus={cpus}",
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


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


# Requests Chromium makes for itself (updates, accounts), not for the page.
BROWSER_OWN_HOSTS = ("google.com", "googleapis.com", "gstatic.com", "gvt1.com")


@dataclass
class RenderedPage:
    """A page as headless Chromium saw it."""

    dom: str
    screenshot: Path
    console: list[str]  # every console message (errors, uncaught exceptions, logs)
    requests: list[str]  # every http(s) URL the page asked for


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory):
    """Render a local HTML file in headless Chromium: DOM, screenshot, console, requests."""
    import shutil
    import subprocess

    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.skip("Chromium not installed (Debian package chromium; .ci/run installs it)")
    profile = tmp_path_factory.mktemp("chromium-profile")

    def render(page: Path) -> RenderedPage:
        flags = [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
        net_log = page.with_suffix(".netlog.json")
        done = subprocess.run(
            [
                binary,
                *flags,
                "--enable-logging=stderr",
                "--v=0",
                f"--log-net-log={net_log}",
                "--dump-dom",
                page.resolve().as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
        urls = set(re.findall(r"https?://[A-Za-z0-9.-]+[^\s\"\\<;]*", net_log.read_text()))
        requests = sorted(
            u
            for u in urls
            if not any(
                urlsplit(u).hostname and urlsplit(u).hostname.endswith(h) for h in BROWSER_OWN_HOSTS
            )
            and urlsplit(u).hostname != "www.w3.org"  # SVG namespace string, never fetched
        )
        shot = page.with_suffix(".png")
        subprocess.run(
            [
                binary,
                *flags,
                "--window-size=1300,1800",
                f"--screenshot={shot}",
                page.resolve().as_uri(),
            ],
            capture_output=True,
            timeout=120,
            check=True,
        )
        return RenderedPage(done.stdout, shot, console, requests)

    return render


@pytest.fixture(scope="session")
def movielens() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """MovieLens 100k ``(ratings, users, items)``, read from the installed recbole files."""
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1] / "examples" / "movielens"))
    from movielens import load_movielens

    return load_movielens()


def movielens_project(root: Path, users: int = 300, **overrides: Any) -> Path:
    """A recommendation project on the first ``users`` MovieLens users; keel.yaml's path."""
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1] / "examples" / "movielens"))
    from movielens import write_project

    config = write_project(root, users=users)
    loaded = yaml.safe_load(config.read_text())
    loaded.update(
        {"trials": 2, "fairness": {"bins": {"age": [0, 25, 35, 50, 120]}, "resamples": 50}}
    )
    loaded.update(overrides)
    config.write_text(yaml.safe_dump(loaded, sort_keys=False))
    return config
