"""`keel init`: the files parse, workflows call only real Keel commands, nothing overwritten."""

from __future__ import annotations

import json
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
