"""``keel reproduce RUN_ID``: re-run a recorded run and report every difference."""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from keel.config import ProjectConfig, Settings, parse_config
from keel.errors import KeelInputError
from keel.families import FAMILIES
from keel.pipeline._run import git_commit, run_project
from keel.registry import mlflow_scope, tracking

TOLERANCE = 1e-9


@dataclass
class Reproduction:
    """What re-running a recorded run gave, beside what was recorded."""

    run_id: str
    identical: bool
    same_code: bool | None
    recorded_commit: str | None
    current_commit: str | None
    data_digest: str
    candidate: dict[str, str]
    differences: list[dict[str, Any]] = field(default_factory=list)
    compared: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON form (``keel reproduce --json``)."""
        return asdict(self)


def reproduce(run_id: str, project: ProjectConfig, settings: Settings) -> Reproduction:
    """Re-run ``run_id`` from its logged config, its data snapshot and its tuned parameters.

    Nothing is written: the reproduction is compared with the recorded test metrics
    (to 1e-9) and the chosen model. The code is compared by git commit.
    """
    with mlflow_scope(settings.tracking_uri) as client:
        try:
            run = client.get_run(run_id)
        except tracking.TrackingError as exc:
            raise KeelInputError(
                f"run {run_id!r} is not in the tracking store {settings.tracking_uri}"
            ) from exc
        with tempfile.TemporaryDirectory() as folder:
            try:
                config_file = client.download_artifacts(run_id, "keel.yaml", folder)
                report_file = client.download_artifacts(run_id, "reports/report.json", folder)
            except (tracking.TrackingError, OSError) as exc:
                raise KeelInputError(
                    f"run {run_id!r} was not made by `keel run` (no keel.yaml or report)"
                ) from exc
            logged = yaml.safe_load(Path(config_file).read_text())
            document = json.loads(Path(report_file).read_text())
    if not isinstance(logged, dict):
        raise KeelInputError(
            f"run {run_id!r} was recorded by an older or different `keel run`"
            " (its keel.yaml is not a mapping)"
        )
    family = FAMILIES.of_metadata(document)  # the report's own record of its task
    candidate, tuning = family.reproduce_params(document)
    digest = run.data.tags.get("keel.dataset.digest", "")
    tables = {"data": digest}
    # every other configured table whose snapshot the run tagged (a recommender's
    # users and items)
    tables |= {
        k: run.data.tags[f"keel.{k}.digest"]
        for k, spec in logged.items()
        if isinstance(spec, str) and f"keel.{k}.digest" in run.data.tags
    }
    for key, table_digest in tables.items():
        if not table_digest:
            continue
        snapshot = settings.data_store / table_digest / "data.parquet"
        if not snapshot.is_file():
            raise KeelInputError(
                f"the {key} snapshot of run {run_id} is not in {settings.data_store}"
                f" (digest {table_digest}); it is needed to reproduce the run"
            )
        logged[key] = str(snapshot)
    logged.pop("tracking_uri", None)
    config = parse_config(logged, origin=f"keel.yaml of run {run_id}").with_root(project.root)
    fixed = {name: t.get("best_params") or {} for name, t in tuning.items()}
    again = run_project(config, settings, fixed_params=fixed, record=False)
    recorded = {
        k.removeprefix("test_"): v
        for k, v in run.data.metrics.items()
        if k.startswith("test_") and not k.endswith(("_ci_low", "_ci_high"))
    }
    reproduced = again.metrics
    differences = []
    for name, value in sorted(recorded.items()):
        new = reproduced.get(name)
        if new is None or not math.isclose(new, value, rel_tol=0, abs_tol=TOLERANCE):
            differences.append({"metric": f"test_{name}", "recorded": value, "reproduced": new})
    chosen = {"recorded": candidate, "reproduced": again.model["candidate"]}
    if chosen["recorded"] != chosen["reproduced"]:
        differences.append({"metric": "chosen model", **chosen})
    if again.data.get("digest") != digest:
        differences.append(
            {"metric": "data digest", "recorded": digest, "reproduced": again.data["digest"]}
        )
    recorded_commit = run.data.tags.get("mlflow.source.git.commit")
    current_commit = git_commit(project.root)
    same_code = (
        None if not recorded_commit or not current_commit else recorded_commit == current_commit
    )
    return Reproduction(
        run_id=run_id,
        identical=not differences,
        same_code=same_code,
        recorded_commit=recorded_commit,
        current_commit=current_commit,
        data_digest=digest,
        candidate=chosen,
        differences=differences,
        compared=len(recorded),
    )
