"""`keel init`: the files parse, workflows call only real Keel commands, nothing overwritten."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from keel.cli import app
from keel.config import load_config

pytestmark = pytest.mark.integration


def _init(*args: str):
    return CliRunner().invoke(app, ["init", *args])


def _keel_calls(text: str) -> list[list[str]]:
    """Every `keel ...` command line in a shell script (one per line or after ||, &&)."""
    calls = []
    for line in text.splitlines():
        for part in re.split(r"\|\||&&|;", line):
            words = shlex.split(part.strip().rstrip("&"), comments=True)
            if words and words[0] == "keel":
                calls.append(words[1:])
    return calls


def test_init_writes_a_project_whose_files_parse(tmp_path: Path, adult_frame) -> None:
    root = tmp_path / "churn"
    done = _init(str(root), "--data", "data/raw/adult.csv", "--target", "income", "--json")
    assert done.exit_code == 0, done.output
    created = json.loads(done.stdout)["created"]
    for folder in (
        "data/raw",
        "data/processed",
        "data/features",
        "configs",
        "notebooks",
        "tests/unit",
        "tests/integration",
        "tests/model",
        "pipelines",
        "deployments",
    ):
        assert (root / folder).is_dir(), folder
    for path in created:
        if path.endswith((".yaml", ".yml")):
            assert yaml.safe_load((root / path).read_text()) is not None, path
    adult_frame.to_csv(root / "data/raw/adult.csv", index=False)
    config = load_config(root / "keel.yaml")  # the commented keel.yaml is valid as written
    assert (config.name, config.target) == ("churn", "income")
    assert "# " in (root / "keel.yaml").read_text()
    service = yaml.safe_load((root / "deployments/kserve.yaml").read_text())
    assert service["kind"] == "InferenceService"
    container = service["spec"]["predictor"]["containers"][0]
    assert [container["command"][0], container["args"][0]] == ["keel", "serve"]
    docker = (root / "deployments/Dockerfile").read_text()
    entry = json.loads(re.search(r"^ENTRYPOINT (.+)$", docker, re.M).group(1))
    assert entry[:2] == ["keel", "serve"]
    assert ".keel/" in (root / ".gitignore").read_text()
    # the distribution is keel-ml ("keel" on the index is another project), a compatible range
    from packaging.requirements import Requirement

    from keel._version import __version__

    wanted = [
        Requirement(line)
        for line in (root / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    keel = next(r for r in wanted if r.name.startswith("keel"))
    assert (
        keel.name == "keel-ml"
        and str(keel.specifier) == f"~={'.'.join(__version__.split('.')[:2])}"
    )
    assert keel.specifier.contains(__version__)
    # the image installs this very release of keel-ml from the index, never "keel"
    (install,) = re.findall(r"^RUN pip install .*$", docker, re.M)
    (line,) = re.findall(r'"([^"]+)"', install)
    assert Requirement(line).name == "keel-ml" and str(Requirement(line).specifier) == (
        f"=={__version__}"
    )


def test_workflows_call_only_keel_commands_and_options_that_exist(tmp_path: Path) -> None:
    root = tmp_path / "income"
    assert _init(str(root)).exit_code == 0
    workflows = {
        p.name: yaml.safe_load(p.read_text()) for p in (root / ".github/workflows").iterdir()
    }
    assert set(workflows) == {"train.yml", "deploy.yml"}
    # PyYAML reads the key `on` as True
    assert "pull_request" in workflows["train.yml"][True]
    assert workflows["deploy.yml"][True]["push"]["tags"] == ["model-v*"]
    scripts = [
        step["run"]
        for flow in workflows.values()
        for job in flow["jobs"].values()
        for step in job["steps"]
        if "run" in step
    ]
    calls = [c for script in scripts for c in _keel_calls(script)]
    commands = {c.name or c.callback.__name__ for c in app.registered_commands}
    assert len(calls) >= 6
    staged = [c for c in calls if c[0] == "promote"]
    assert staged[0][3:5] == ["--to", "staging"] and staged[1][3:5] == ["--to", "production"]
    for call in calls:
        assert call[0] in commands, call
        helptext = CliRunner().invoke(app, [call[0], "--help"], env={"COLUMNS": "200"}).stdout
        for option in (w.split("=")[0] for w in call[1:] if w.startswith("--")):
            assert option in helptext, (call, option)
    for docker_entry in ("deployments/Dockerfile",):
        assert "keel serve" in " ".join(
            json.loads(re.search(r"^ENTRYPOINT (.+)$", (root / docker_entry).read_text(), re.M)[1])
        )


def test_init_never_overwrites_and_refuses_a_file(tmp_path: Path) -> None:
    root = tmp_path / "p"
    root.mkdir()
    (root / "keel.yaml").write_text("mine: true\n")
    (root / ".gitignore").write_text("secret\n")
    done = _init(str(root), "--json")
    assert done.exit_code == 0
    kept = json.loads(done.stdout)["kept"]
    assert {"keel.yaml", ".gitignore"} <= set(kept)
    assert (root / "keel.yaml").read_text() == "mine: true\n"
    assert (root / ".gitignore").read_text() == "secret\n"
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    again = _init(str(root), "--json")
    assert json.loads(again.stdout)["created"] == []
    assert before == {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    (tmp_path / "file").write_text("x")
    refused = _init(str(tmp_path / "file"))
    assert refused.exit_code == 2 and "is a file" in refused.stderr
    bad = _init(str(tmp_path / "q"), "--name", "-bad name")
    assert bad.exit_code == 2 and "--name" in bad.stderr and "Traceback" not in bad.output
    assert not (tmp_path / "q").exists()


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_dvc_tracks_data_raw_in_the_scaffold(tmp_path: Path, adult_frame: pd.DataFrame) -> None:
    root = tmp_path / "income"
    done = _init(str(root), "--data", "data/raw/adult.csv", "--target", "income")
    assert done.exit_code == 0
    adult_frame.to_csv(root / "data/raw/adult.csv", index=False)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    added = subprocess.run(
        [sys.executable, "-m", "dvc", "add", "data/raw"], cwd=root, capture_output=True, text=True
    )
    assert added.returncode == 0, added.stderr
    assert yaml.safe_load((root / "data/raw.dvc").read_text())["outs"][0]["path"] == "raw"


def _steps(workflow: Path) -> list[tuple[str, str]]:
    """(name, script) of every `run:` step of a workflow, in order."""
    flow = yaml.safe_load(workflow.read_text())
    return [
        (step.get("name", ""), step["run"])
        for job in flow["jobs"].values()
        for step in job["steps"]
        if "run" in step
    ]


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_the_scaffolds_readme_and_train_workflow_run_as_written(
    tmp_path: Path, adult_frame: pd.DataFrame
) -> None:
    """The README's set-up, then every step of train.yml, in a shell, in order.

    What GitHub would do, here: the data comes back from a DVC remote (a local folder
    standing in for the team's bucket), `keel run` trains and registers, `keel check`
    holds, and the project's own tests pass against the champion. The one step not run
    is the install: this environment already holds what requirements.txt asks for, which
    the test checks instead.
    """
    from importlib.metadata import version

    from packaging.requirements import Requirement

    root = tmp_path / "income"
    assert _init(str(root), "--target", "income").exit_code == 0
    # the user's edits: protected attributes, and a fixed number of trials for speed
    config = (root / "keel.yaml").read_text().replace("budget: 60", "trials: 3")
    config = config.replace("sensitive_features: []", "sensitive_features: [sex]")
    (root / "keel.yaml").write_text(config)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org",
    }  # fmt: skip

    def sh(script: str) -> subprocess.CompletedProcess:
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=root, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, f"$ {script}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done

    # the README's set-up, as written (the data path is keel init's default)
    readme = (root / "README.md").read_text()
    assert "git init" in readme and "dvc add data/raw" in readme
    adult_frame.to_csv(tmp_path / "data.csv", index=False)
    sh("git init -q")
    sh(f"cp {tmp_path / 'data.csv'} data/raw/data.csv && dvc add -q data/raw")
    sh(f"dvc remote add -d team {tmp_path / 'remote'} && dvc push -q && git add -A"
       " && git commit -qm 'data and project'")  # fmt: skip
    (root / "data/raw/data.csv").unlink()  # a fresh checkout has only the .dvc pointer
    for line in (root / "requirements.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            wanted = Requirement(line)
            assert wanted.specifier.contains(version(wanted.name)), line
    ran = []
    for name, script in _steps(root / ".github/workflows/train.yml"):
        if script.startswith("pip install"):
            continue
        sh(script)
        ran.append(name)
    assert len(ran) == 5, ran
    assert (root / "data/raw/data.csv").is_file()  # dvc pull brought the data back
    assert (root / ".keel/mlflow.db").is_file()
