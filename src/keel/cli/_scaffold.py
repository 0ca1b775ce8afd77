"""`keel init DIR`: a new project in the standard layout, never overwriting a file."""

from __future__ import annotations

import re
from pathlib import Path

from keel._extras import requirement
from keel.errors import KeelInputError

FOLDERS = (
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
    ".github/workflows",
)

KEEL_YAML = """\
# keel.yaml — the whole project in one file. Every key but name, data and target has
# a default; `keel run --help` and docs/configuration.md explain them all.

# The registered model's name (letters, digits, '_', '.', '-').
name: {name}

# The training data: a CSV or Parquet file (tracked by DVC under data/raw), a
# {{dvc: {{path: ..., rev: ...}}}} reference, or {{sql: ..., url: ...}}.
data: {data}

# The column to predict. The task (binary, multiclass, regression) is inferred.
target: {target}

# Columns the model must not see (ids, leaks, sampling weights).
ignore_columns: []

# Protected attributes: fairness is assessed per group and their intersections.
sensitive_features: []

# Seconds of Optuna tuning per candidate (or `trials: N` for repeatable runs).
budget: 60
seed: 42
candidates: [lightgbm]

# Fairness limits; a breach fails the fairness gate (no alias, exit 1).
fairness:
  min_group_size: 30
  # max_demographic_parity_difference: 0.1
  # max_equalized_odds_difference: 0.1
  mitigation: none        # reweighing | exponentiated_gradient | threshold_optimizer

# What only people can say: it goes on the model card.
card:
  owners: []              # ["Team <team@example.org>"]
  intended_use: null
  out_of_scope: []
  limitations: []

# The Definition of Done: gates that must pass for `keel check` and `keel promote`.
gates:
  required: [schema, tracked, evaluated, fairness, registered, rollback,
             stage_io, boundary_validation, lineage, end_to_end]
  waivers: {{}}             # fairness: {{reason: "...", author: "you@example.org"}}
"""

GITIGNORE = """\
# Keel's local state: MLflow store, snapshots, reports (the registry is the record)
.keel/
mlruns/
# data lives in DVC, not git
/data/raw/*
!/data/raw/.gitkeep
/data/processed/*
/data/features/*
# Python
__pycache__/
*.pyc
.venv/
.ipynb_checkpoints/
"""

DVC_CONFIG = """\
[core]
    autostage = true
"""

DVC_GITIGNORE = """\
/config.local
/tmp
/cache
"""

DVC_YAML = """\
# `dvc repro` re-runs training when the data or the config changed.
stages:
  train:
    cmd: keel run --json > .keel/last_run.json
    deps:
      - data/raw
      - keel.yaml
"""

TRAIN_WORKFLOW = """\
# Train and evaluate on every pull request: the gates decide, the report is attached.
name: train-and-evaluate
on:
  pull_request:
jobs:
  train:
    runs-on: ubuntu-latest
    env:
      MLFLOW_TRACKING_URI: ${{{{ secrets.MLFLOW_TRACKING_URI }}}}
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with:
          python-version: "3.11"
      - name: Install Keel
        run: pip install -r requirements.txt
      - name: Fetch the data
        run: dvc pull data/raw
      - name: Validate the data
        run: keel validate {data} --json
      - name: Train, evaluate, register (exit 1 when a gate fails)
        run: keel run --json
      - name: Definition of Done
        run: keel check {name}@challenger || keel check {name}@champion
      - name: The project's tests (keel.yaml, the data, the champion)
        run: pytest tests
"""

DEPLOY_WORKFLOW = """\
# Deploy on a tag `model-vN`: version N goes to staging, is smoke-tested there, then
# reaches production (Keel refuses production for a version that skipped staging).
name: deploy
on:
  push:
    tags: ["model-v*"]
jobs:
  deploy:
    runs-on: ubuntu-latest
    env:
      MLFLOW_TRACKING_URI: ${{{{ secrets.MLFLOW_TRACKING_URI }}}}
      KEEL_USER: ${{{{ github.actor }}}}
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with:
          python-version: "3.11"
      - name: Install Keel
        run: pip install -r requirements.txt
      - name: Which version
        run: echo "VERSION=${{GITHUB_REF_NAME#model-v}}" >> "$GITHUB_ENV"
      - name: Definition of Done
        run: keel check {name}/$VERSION
      - name: To staging
        run: keel promote {name} $VERSION --to staging --reason "tag $GITHUB_REF_NAME"
      - name: Smoke test in staging
        run: |
          keel serve --model {name}@staging --port 8000 --poll-seconds 0 &
          for i in $(seq 60); do curl -fs http://127.0.0.1:8000/health && break; sleep 1; done
          curl -fs http://127.0.0.1:8000/health
      - name: To production
        run: keel promote {name} $VERSION --to production --reason "tag $GITHUB_REF_NAME"
      - name: To champion (servers following {name}@champion swap by themselves)
        run: keel promote {name} $VERSION --reason "tag $GITHUB_REF_NAME"
"""

REQUIREMENTS = """\
# Keel is published as keel-ml (the name "keel" on the index is another project);
# any release compatible with the one that wrote this project.
{keel}
dvc=={dvc}
# the project's own tests (tests/)
pytest>=8
"""

# The project's own tests: `pytest tests` (CI runs them after `keel run`). They read
# keel.yaml, so they need no edit when the name, the data or the target changes.
TEST_CONFIG = """\
\"\"\"keel.yaml is a valid Keel configuration.\"\"\"

from pathlib import Path

import pytest
import yaml

from keel.config import load_config

ROOT = Path(__file__).resolve().parents[2]


def test_keel_yaml_names_the_model_the_data_and_the_target():
    config = yaml.safe_load((ROOT / "keel.yaml").read_text())
    assert {"name", "data", "target"} <= set(config)


def test_keel_yaml_is_valid_once_the_data_is_there():
    data = ROOT / yaml.safe_load((ROOT / "keel.yaml").read_text())["data"]
    if not data.exists():
        pytest.skip(f"no data at {data} yet: `dvc pull` or copy it there")
    assert load_config(ROOT / "keel.yaml").name
"""

TEST_DATA = """\
\"\"\"The training data passes Keel's checks (schema inferred, every rule listed).\"\"\"

import json
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_the_training_data_is_valid(tmp_path):
    config = yaml.safe_load((ROOT / "keel.yaml").read_text())
    data = ROOT / config["data"]
    if not data.exists():
        pytest.skip(f"no data at {data} yet: `dvc pull` or copy it there")
    done = subprocess.run(
        ["keel", "validate", str(data), "--target", config["target"],
         "--report", str(tmp_path), "--json"],
        capture_output=True, text=True, check=False,
    )
    assert done.returncode == 0, done.stderr or done.stdout
    assert json.loads(done.stdout)["valid"]
"""

TEST_MODEL = """\
\"\"\"The champion meets the Definition of Done (the gates in keel.yaml).\"\"\"

import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def _keel(*args):
    return subprocess.run(
        ["keel", *args], capture_output=True, text=True, cwd=ROOT, check=False
    )


def test_the_champion_meets_the_definition_of_done():
    name = yaml.safe_load((ROOT / "keel.yaml").read_text())["name"]
    if _keel("history", name, "--json").returncode != 0:
        pytest.skip(f"no model {name!r} registered yet: run `keel run` first")
    done = _keel("check", f"{name}@champion", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
"""

DOCKERFILE = """\
# Serves {model} from the MLflow registry (never from a file in the image).
#   docker build -t {name}-serve . && docker run -p 8000:8000 \\
#     -e MLFLOW_TRACKING_URI=http://mlflow:5000 {name}-serve
FROM python:3.11-slim
WORKDIR /app
# Keel from the package index: the release that wrote this file (published as keel-ml;
# "keel" on the index is another project). To try an unreleased Keel instead, copy its
# wheel in (`make dist` in Keel's repository) and install that file.
RUN pip install --no-cache-dir "{requirement}"
COPY keel.yaml /app/keel.yaml
RUN useradd --create-home keel
USER keel
EXPOSE 8000
HEALTHCHECK CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health')"
ENTRYPOINT ["keel", "serve", {model_args}"--host", "0.0.0.0", "--port", "8000"]
"""

KSERVE = """\
# KServe InferenceService: the Keel image as a custom predictor.
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: {k8s_name}
spec:
  predictor:
    minReplicas: 1
    containers:
      - name: kserve-container
        image: registry.example.org/{k8s_name}-serve:latest
        command: ["keel"]
        args: ["serve", {model_args}"--host", "0.0.0.0", "--port", "8080"]
        ports:
          - containerPort: 8080
            protocol: TCP
        env:
          - name: MLFLOW_TRACKING_URI
            value: http://mlflow.mlflow.svc.cluster.local:5000
        readinessProbe:
          httpGet:
            path: /health
            port: 8080
        resources:
          requests: {{cpu: "1", memory: 1Gi}}
          limits: {{cpu: "1", memory: 2Gi}}
"""

README = """\
# {name}

A Keel project. Layout: `data/raw` (DVC-tracked inputs), `data/processed`,
`data/features`, `configs`, `notebooks`, `tests/{{unit,integration,model}}`,
`pipelines` (`dvc.yaml` stages), `deployments` (Dockerfile, KServe manifest).

```
git init                    # once; DVC is already set up in .dvc/
cp /path/to/data.csv {data} && dvc add data/raw
keel run                    # train, evaluate, register
keel check                  # the Definition of Done for {name}@champion
keel serve                  # REST on 127.0.0.1:8000, follows {name}@champion
```

CI: `.github/workflows/train.yml` trains and checks every pull request;
`deploy.yml` takes tag `model-vN` through staging to production.
"""


def scaffold(folder: Path, name: str | None, data: str, target: str) -> dict[str, list[str]]:
    """Create the project in ``folder``; return ``{"created": [...], "kept": [...]}``.

    An existing file is never overwritten: it is listed under ``kept``.

    Raises
    ------
    KeelInputError
        When ``folder`` is an existing file, or the project name is not a valid model
        name.
    """
    if folder.exists() and not folder.is_dir():
        raise KeelInputError(f"{folder} is a file; give a folder for the new project")
    name = name or re.sub(r"[^A-Za-z0-9_.-]+", "-", folder.resolve().name).strip("-.") or "model"
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", name):
        raise KeelInputError(
            f"--name {name!r}: a model name starts with a letter or digit and uses only"
            " letters, digits, '_', '.', '-'"
        )
    from importlib.metadata import PackageNotFoundError, version

    try:
        dvc = version("dvc")
    except PackageNotFoundError:
        dvc = "3.67.1"
    k8s_name = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:50] or "model"
    values = {
        "name": name,
        "data": data,
        "target": target,
        "k8s_name": k8s_name,
        "model": f"{name}@champion",
        "model_args": "",
        "requirement": requirement(),
    }
    files = {
        "keel.yaml": KEEL_YAML.format(**values),
        ".gitignore": GITIGNORE,
        ".dvc/config": DVC_CONFIG,
        ".dvc/.gitignore": DVC_GITIGNORE,
        ".dvcignore": "# paths DVC should not look at\n",
        "dvc.yaml": DVC_YAML,
        "requirements.txt": REQUIREMENTS.format(keel=requirement(exact=False), dvc=dvc),
        ".github/workflows/train.yml": TRAIN_WORKFLOW.format(**values),
        ".github/workflows/deploy.yml": DEPLOY_WORKFLOW.format(**values),
        "deployments/Dockerfile": DOCKERFILE.format(**values),
        "deployments/kserve.yaml": KSERVE.format(**values),
        "README.md": README.format(**values),
        "tests/unit/test_keel_yaml.py": TEST_CONFIG,
        "tests/integration/test_data.py": TEST_DATA,
        "tests/model/test_champion.py": TEST_MODEL,
        "pipelines/README.md": "DVC stages live in ../dvc.yaml; `dvc repro` runs them.\n",
        "configs/README.md": "Extra configurations (`keel run -c configs/NAME.yaml`).\n",
    }
    for sub in FOLDERS:
        if not any(path.startswith(sub + "/") for path in files):
            files[f"{sub}/.gitkeep"] = ""
    created, kept = [], []
    try:
        for sub in FOLDERS:
            (folder / sub).mkdir(parents=True, exist_ok=True)
        for path, text in files.items():
            target_path = folder / path
            target_path.parent.mkdir(parents=True, exist_ok=True)
            try:
                with target_path.open("x") as handle:  # "x": fails if the file exists
                    handle.write(text)
                created.append(path)
            except FileExistsError:
                kept.append(path)
    except OSError as exc:
        raise KeelInputError(
            f"{folder}: cannot write the project there ({exc.strerror or type(exc).__name__});"
            " choose another folder"
        ) from exc
    return {"created": created, "kept": kept}


__all__ = ["FOLDERS", "scaffold"]
