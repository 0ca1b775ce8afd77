"""The constant family's stages, on Keel's runner: read, fit, judge, register, alias."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from keel.pipeline import Graph, RunContext, Stage
from keel.pipeline._package_stages import alias, run_record, still_registered

STAGE_TAG = "keel.stage.register"
CODE = ("keel_dummy_family", "keel.data", "keel.registry")


def ingest(inputs: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """Read the rows (any table Keel reads) and check the target is numeric."""
    from keel.data import load_data
    from keel.errors import DataError

    dataset = load_data(ctx.config.data, ctx.config.root)
    target = ctx.config.target
    frame = dataset.frame
    if target not in frame.columns:
        raise DataError(f"{ctx.config.data_label}: no target column {target!r}")
    values = frame[target].astype(float)
    return {"dataset": dataset, "values": values.to_numpy()}


def train(inputs: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """The constant: the mean (or median: ``constant.statistic``) of the first 80 % of rows."""
    values = inputs["values"]
    cut = max(1, int(len(values) * 0.8))
    statistic = np.median if ctx.config.section.statistic == "median" else np.mean
    return {"value": float(statistic(values[:cut])), "cut": cut}


def evaluate(inputs: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """Mean absolute error on the last 20 % of rows."""
    held = inputs["values"][inputs["cut"] :]
    return {"metrics": {"mae": float(np.mean(np.abs(held - inputs["value"])))}}


def register(inputs: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """Log the run and register the package once per cache key."""
    from keel.pipeline._package_stages import registered_by_key
    from keel.registry import ensure_experiment, mlflow_scope, tracking
    from keel_dummy_family.package import log_constant

    config, settings = ctx.config, ctx.settings
    doc = {
        "name": config.name,
        "task": "constant",
        "family": "constant",
        "chosen": "constant",
        "metrics": inputs["metrics"],
        "value": inputs["value"],
        "card": config.card.model_dump(),
    }
    with mlflow_scope(settings.tracking_uri) as client:
        experiment_id = ensure_experiment(client, config.name, settings.artifact_location)
        done = registered_by_key(client, config.name, ctx.key)
        if done is not None:
            ctx.run_id = done.run_id
            doc |= {"run_id": done.run_id, "version": str(done.version)}
            return {"run": run_record(done.run_id, experiment_id, config.name, done.version, doc)}
        with tracking.start_run(experiment_id, "keel-constant") as run_id:
            ctx.run_id = run_id
            tracking.log_metrics({f"test_{k}": v for k, v in inputs["metrics"].items()})
            reference = {"value": inputs["value"], "rows": len(inputs["values"])}
            ref = log_constant(
                inputs["value"],
                config.name,
                {"name": config.name, "run_id": run_id},
                {"monitoring_reference.json": reference},
                {STAGE_TAG: ctx.key},
            )
            doc |= {"run_id": run_id, "version": ref.version}
    return {"run": run_record(run_id, experiment_id, config.name, ref.version, doc)}


def compare(inputs: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """Champion when there is none yet; else challenger (no comparison: a test family)."""
    from keel.registry import CHALLENGER, CHAMPION, alias_version, mlflow_scope

    with mlflow_scope(ctx.settings.tracking_uri) as client:
        champion = alias_version(client, ctx.config.name, CHAMPION)
    planned = CHAMPION if champion is None else CHALLENGER
    return {"versus": None, "planned_alias": planned}


def report(inputs: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """``report.json`` on the run (what ``keel card`` and ``keel check`` read)."""
    from keel.registry import mlflow_scope, tracking

    run = inputs["run"]
    doc = {**run["report"], "alias": inputs["planned_alias"], "resources": ctx.resources()}
    with mlflow_scope(ctx.settings.tracking_uri):
        tracking.log_text(json.dumps(doc, default=str), "reports/report.json", run["run_id"])
    return {"reports": {"json": f"runs:/{run['run_id']}/reports/report.json"}}


GRAPH = Graph(
    [
        Stage(
            "ingest", ingest, (), {"dataset": object, "values": object}, ("data", "target"), CODE
        ),
        Stage(
            "train", train, ("values",), {"value": float, "cut": int}, ("constant.statistic",), CODE
        ),
        Stage("evaluate", evaluate, ("values", "value", "cut"), {"metrics": dict}, (), CODE),
        Stage(
            "register",
            register,
            ("dataset", "values", "value", "metrics"),
            {"run": dict},
            ("name", "card"),
            CODE,
            still_valid=still_registered,
        ),
        Stage("compare", compare, ("run",), {"versus": object, "planned_alias": object}, (), CODE),
        Stage("report", report, ("run", "planned_alias"), {"reports": dict}, (), CODE),
        Stage(
            "alias",
            alias,
            ("run", "reports", "versus", "planned_alias"),
            {"alias": object},
            (),
            CODE,
        ),
    ],
    sources=("extra_rows", "fixed_params", "run_tags"),
)


def run_result(state: Any, record: bool) -> dict[str, Any]:
    """The ``keel run --json`` fields."""
    values = state.values
    model = {"name": "", "version": None, "alias": None, "candidate": "constant"}
    if record:
        run = values["run"]
        alias_name = values["alias"]
        model = {
            "name": run["name"],
            "version": run["version"],
            "alias": alias_name,
            "candidate": "constant",
            "uri": f"models:/{run['name']}@{alias_name}"
            if alias_name
            else f"models:/{run['name']}/{run['version']}",
        }
    return {
        "run_id": values["run"]["run_id"] if record else "",
        "experiment_id": values["run"]["experiment_id"] if record else "",
        "model": model,
        "task": "constant",
        "primary_metric": "mae",
        "metrics": values["metrics"],
        "candidates": [{"name": "constant", "test": values["metrics"]}],
        "data": {"digest": values["dataset"].digest},
        "assessment": {},
        "tuning": {},
        "reports": values["reports"] if record else {},
    }


__all__ = ["GRAPH", "run_result"]
