"""The stages of ``keel run`` that write: register, compare, report, card, alias.

They reach MLflow only through :mod:`keel.registry` helpers and MLflow's own logging
calls inside the run that ``register`` opens. Each is idempotent: ``register`` finds the
version its cache key already registered (a retry after a failure never registers a
duplicate), ``report`` and ``card`` overwrite their files and artifacts, ``alias``
moves the alias only once, after every piece of evidence exists.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keel._version import __version__
from keel.config import ProjectConfig
from keel.families.tabular.stages import JUDGE, RECORD, assessment_document, fairness_judge
from keel.pipeline._context import RECORDED_KEYS, RunContext, now
from keel.pipeline._package_stages import (
    STAGE_TAG,
    config_digest,
    git_commit,
    log_config,
    registered_by_key,
    still_registered,
)
from keel.pipeline._stages import Stage, package_digest
from keel.registry import tracking
from keel.reports import ModelSummary, RunReport

if TYPE_CHECKING:  # pandas loads with the stages that run, not for a no-op run
    import pandas as pd


def register(inputs: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """Snapshot the data, log the MLflow run, register the package (once per key)."""
    from keel.data import snapshot
    from keel.registry import ensure_experiment, mlflow_scope

    config, settings = ctx.config, ctx.settings
    dataset = inputs["dataset"]
    snapshot_path = snapshot(dataset, settings.data_store)
    with mlflow_scope(settings.tracking_uri) as client:
        experiment_id = ensure_experiment(client, config.name, settings.artifact_location)
        done = registered_by_key(client, config.name, ctx.key)
        if done is not None:  # a retry: this key's version exists, its run holds the rest
            ctx.say(f"{config.name} version {done.version} (already registered)")
            ctx.run_id = done.run_id
            _semver(client, settings.tracking_uri, config, inputs, str(done.version))
            report = _report_document(config, inputs, done.run_id, done.version, snapshot_path)
            return {"run": _run_doc(done.run_id, experiment_id, config.name, done.version, report)}
        ctx.say(config.name)
        best = inputs["best"]
        with tracking.start_run(experiment_id, f"keel-{best.name}") as run_id:
            ctx.run_id = run_id
            _log_candidates(experiment_id, inputs)
            _log_run(config, inputs, snapshot_path)
            version = _log_package(client, config, inputs, run_id, ctx.key, ctx.family)
            semver = _semver(client, settings.tracking_uri, config, inputs, str(version))
            ctx.say(f"{config.name} version {version} = {semver}")
            _log_gates(config, inputs)
            report = _report_document(config, inputs, run_id, version, snapshot_path)
    return {"run": _run_doc(run_id, experiment_id, config.name, version, report)}


def _semver(
    client: Any, tracking_uri: str, config: ProjectConfig, inputs: dict[str, Any], version: str
) -> str:
    """Tag the version's semantic version, from its interface and the previous version's."""
    from keel.families.tabular.responsible import NEEDS_SENSITIVE_AT_PREDICTION
    from keel.registry import assign_semver, tabular_interface

    labels = inputs["labels"]
    interface = tabular_interface(
        inputs["schema"].to_dict(),
        {
            "task": labels.task,
            "target": config.target,
            "classes": list(labels.classes),
            "requires_sensitive_features": list(config.sensitive_features)
            if config.fairness.mitigation in NEEDS_SENSITIVE_AT_PREDICTION
            else [],
        },
    )
    semver, _ = assign_semver(client, tracking_uri, config.name, version, interface)
    return semver


def _run_doc(
    run_id: str, experiment_id: str, name: str, version: str, report: RunReport
) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "experiment_id": experiment_id,
        "name": name,
        "version": str(version),
        "report": report,
    }


def flat_params(params: dict[str, Any]) -> dict[str, Any]:
    """Hyper-parameters as MLflow takes them: an ensemble's, per member."""
    members = params.get("members")
    if not isinstance(members, list):
        return params
    out: dict[str, Any] = {}
    for member in members:
        out[f"{member['name']}.weight"] = round(float(member["weight"]), 6)
        out |= {f"{member['name']}.{k}": v for k, v in (member.get("params") or {}).items()}
    return out


def _log_candidates(experiment_id: str, inputs: dict[str, Any]) -> None:
    """A nested run per candidate and per tuning trial."""
    for c in inputs["trained"]:
        with tracking.start_run(experiment_id, c.name, nested=True):
            tracking.log_params({f"model.{k}": v for k, v in c.params.items()})
            tracking.log_metrics({f"val_{k}": v for k, v in c.validation_metrics.items()})
            tracking.log_metrics({f"test_{k}": v for k, v in inputs["all_test"][c.name].items()})
            tracking.log_metric("fit_seconds", c.fit_seconds)
            tracking.set_tag("keel.candidate", c.name)
    for name, result in inputs["tuned"].items():
        for trial in result.trials:
            metrics = {"trial_seconds": trial.seconds}
            if trial.score is not None:
                metrics[f"cv_{result.metric}"] = trial.score
            tracking.log_child_run(
                experiment_id,
                f"{name}-trial-{trial.number}",
                {f"model.{k}": v for k, v in flat_params(trial.params).items()},
                metrics,
                {"keel.candidate": name, "keel.trial.state": trial.state},
            )


def _log_run(config: ProjectConfig, inputs: dict[str, Any], snapshot_path: Path) -> None:
    """Everything that makes the run reproducible, logged on the active MLflow run."""
    dataset, labels, schema = inputs["dataset"], inputs["labels"], inputs["schema"]
    splits, best = inputs["splits"], inputs["best"]
    test_metrics = inputs["assessment"].test_metrics
    tracking.log_params(
        {
            "seed": config.seed,
            "task": labels.task,
            "candidate": best.name,
            "positive_class": labels.positive_class,
            "split.validation": config.split.validation,
            "split.test": config.split.test,
            "split.stratified": splits.stratified,
            "split.method": splits.method,
            "time_column": config.time_column,
            "group_column": config.group_column,
            **{f"model.{k}": v for k, v in best.params.items()},
        }
    )
    tracking.log_metrics({f"test_{k}": v for k, v in test_metrics.items()})
    tracking.log_metrics({f"val_{k}": v for k, v in best.validation_metrics.items()})
    for name, size in splits.sizes().items():
        tracking.log_metric(f"rows_{name}", size)
    tags = {
        "keel.version": __version__,
        "keel.dataset.digest": dataset.digest,
        "keel.schema.digest": schema.digest,
        "keel.split.digest": splits.digest,
        "keel.config.digest": config_digest(config),
        "keel.task": labels.task,
    }
    commit = git_commit(config.root)
    if commit:
        tags["mlflow.source.git.commit"] = commit
    tracking.set_tags(tags)
    origin = dataset.lineage.get("kind") == "file"
    # MLflow resolves only file-like sources; SQL and DVC data point at Keel's snapshot,
    # with where it came from in the input's tags.
    uri = Path(dataset.source).as_uri() if origin else Path(snapshot_path).resolve().as_uri()
    lineage_tags = {
        f"keel.source.{k}": str(v)[:5000] for k, v in dataset.lineage.items() if v is not None
    }
    tracking.log_dataset(
        inputs["frame"],
        uri,
        Path(dataset.source).name if origin else f"{config.name}-{dataset.lineage['kind']}",
        config.target,
        dataset.digest,
        lineage_tags,
    )
    log_config(config)
    tracking.log_dict(schema.to_dict(), "schema.json")
    tracking.log_dict(inputs["profile"], "profile.json")


def _log_package(
    client: Any, config: ProjectConfig, inputs: dict[str, Any], run_id: str, key: str, family: str
) -> str:
    """Register the shipped model with its documents; returns the new version."""
    from keel.data import encode_row_keys
    from keel.families.tabular.responsible import NEEDS_SENSITIVE_AT_PREDICTION
    from keel.registry import log_model_package

    labels, schema, splits = inputs["labels"], inputs["schema"], inputs["splits"]
    assessment, dataset = inputs["assessment"], inputs["dataset"]
    cut = (assessment.threshold or {}).get("value")
    metadata = {
        "family": family,
        "task": labels.task,
        "classes": list(labels.classes),
        "positive_class": labels.positive_class,
        # binary: serving decides "positive" when P(positive) >= this
        "decision_threshold": cut,
        "candidate": inputs["best"].name,
        "target": config.target,
        "sensitive_features": list(config.sensitive_features),
        # serving refuses rows without these (the model decides per group)
        "requires_sensitive_features": list(config.sensitive_features)
        if config.fairness.mitigation in NEEDS_SENSITIVE_AT_PREDICTION
        else [],
        "mitigation": config.fairness.mitigation,
        "dataset_digest": dataset.digest,
        "split_digest": splits.digest,
        "run_id": run_id,
        "seed": config.seed,
        "keel_version": __version__,
    }
    features = splits.train[schema.feature_names]
    model_columns = [*schema.feature_names, config.target]
    _, ref = log_model_package(
        inputs["shipped"],
        registered_name=config.name,
        example=features.head(5),
        schema=schema,
        metadata=metadata,
        signature_rows=features.head(1000),
        version_tags={STAGE_TAG: key},
        files={
            "profile.json": inputs["profile"],
            # the local explanations' background (training rows)
            "background.json": json.loads(
                inputs["background"].to_json(orient="records", date_format="iso")
            ),
            # monitoring's reference: training features, and the outputs on the test rows
            "drift_reference.json": drift_reference(inputs["shipped"], splits, schema, labels, cut),
            # which rows the shipped model saw: a later version is compared with it only
            # on rows it did not train on
            "training_rows.json": encode_row_keys(
                [splits.train, splits.validation]
                + ([splits.test] if config.final_fit == "all_rows" else []),
                model_columns,
            ),
        },
    )
    for tag, value in {
        "keel.dataset.digest": dataset.digest,
        "keel.config.digest": config_digest(config),
        "keel.commit": git_commit(config.root) or "unknown (not a git checkout)",
        "keel.gates": ", ".join(f"{k} {v}" for k, v in gate_verdicts(inputs).items()),
    }.items():
        client.set_model_version_tag(ref.name, ref.version, tag, value)
    return ref.version


def gate_verdicts(values: Any) -> dict[str, str]:
    """The run's own gates: baseline, behaviour, fairness."""
    gate = values["assessment"].gate
    behaviour, fairness = values["behaviour"], values["fairness"]
    return {
        "baseline": "not run" if gate is None else _verdict(gate.passed),
        "behaviour": _verdict(all(b["passed"] for b in behaviour))
        if behaviour
        else "not configured",
        "fairness": "not assessed"
        if fairness is None
        else (_verdict(fairness.passed) if fairness.judged else "not judged"),
        "robustness": _robustness_verdict(values["robustness"]),
    }


def _robustness_verdict(found: dict[str, Any] | None) -> str:
    if found is None:
        return "not assessed"
    return _verdict(found["passed"]) if found["judged"] else "not judged"


def gates_passed(values: Any) -> bool:
    """Every gate of the run passed (the version may take an alias)."""
    gate, fairness = values["assessment"].gate, values["fairness"]
    return (
        (gate is None or gate.passed)
        and all(b["passed"] for b in values["behaviour"])
        and (fairness is None or fairness.passed)
        and (values["robustness"] is None or values["robustness"]["passed"])
    )


def _log_gates(config: ProjectConfig, inputs: dict[str, Any]) -> None:
    """The run's tags (given, gates, feature code) and the numbers behind its gates."""
    if inputs["run_tags"]:
        tracking.set_tags(inputs["run_tags"])
    # where a failed run of this pipeline is reported (keel check: failure_alerts)
    tracking.set_tag("keel.failure_alerts", ",".join(s.type for s in config.monitoring.sinks))
    verdicts, assessment = gate_verdicts(inputs), inputs["assessment"]
    if inputs["fairness"] is not None:
        _log_fairness(inputs["fairness"])
    if inputs["behaviour"]:
        tracking.set_tag("keel.gate.behaviour", verdicts["behaviour"])
    found = inputs["robustness"]
    if found is not None:
        tracking.set_tag("keel.gate.robustness", verdicts["robustness"])
        breaches = [c for c in found["checks"] if not c["passed"]]
        if breaches:
            tracking.set_tag(
                "keel.robustness.breaches",
                "; ".join(f"{c['what']} {c['value']:.3f} > {c['limit']:g}" for c in breaches),
            )
        for point in found["noise_curve"]:
            tracking.log_metric(
                f"robustness_flip_rate_noise_{point['level']:g}", point["flip_rate"]
            )
        tracking.log_metric(
            "robustness_flipped_within_budget", found["minimal_change"]["flipped_within_budget"]
        )
    features_ok = all(t["passed"] for t in inputs["feature_tests"])
    tracking.set_tag("keel.gate.feature_code", "passed" if features_ok else "failed")
    # the feature code's version: the digest of keel.families.tabular.features as it ran
    tracking.set_tag("keel.code.features", package_digest("keel.families.tabular.features"))
    gate = assessment.gate
    if gate is not None:
        tracking.set_tag("keel.gate.baseline", verdicts["baseline"])
        tracking.log_metric("gate_difference_low", gate.difference.low)
        tracking.log_metric("gate_difference_high", gate.difference.high)
    for name, interval in assessment.intervals.items():
        tracking.log_metric(f"test_{name}_ci_low", interval.low)
        tracking.log_metric(f"test_{name}_ci_high", interval.high)
    for name, summary in assessment.cross_validation.items():
        tracking.log_metric(f"cv_{name}_mean", summary["mean"])
        tracking.log_metric(f"cv_{name}_std", summary["std"])


def _log_fairness(fairness: Any) -> None:
    """The fairness gate and measures on the MLflow run (names made MLflow-safe)."""
    if fairness.judged:
        tracking.set_tag("keel.gate.fairness", "passed" if fairness.passed else "failed")
        if not fairness.passed:
            tracking.set_tag("keel.fairness.breaches", fairness.describe()[:5000])
    else:
        tracking.set_tag("keel.gate.fairness", "not judged: no limits configured")
    for feature, result in fairness.features.items():
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", feature).strip("_")
        for measure, value in result["measures"].items():
            if value == value:  # not NaN
                tracking.log_metric(f"fairness_{safe}_{measure}", value)


def _report_document(
    config: ProjectConfig, inputs: dict[str, Any], run_id: str, version: str, snapshot_path: Path
) -> RunReport:
    """The run report (``report.json``), before the comparison with the champion."""
    from keel.families.tabular.training import BASELINES

    labels, dataset, splits = inputs["labels"], inputs["dataset"], inputs["splits"]
    frame, schema = inputs["frame"], inputs["schema"]
    data_info = {
        "source": dataset.source,
        "lineage": dataset.lineage,
        "pii": inputs["pii_report"].to_dict(),
        "digest": dataset.digest,
        "rows": dataset.n_rows,
        "rows_without_target": labels.dropped_missing,
        "snapshot": str(snapshot_path),
        "schema_digest": schema.digest,
        "split_digest": splits.digest,
        "split_sizes": splits.sizes(),
        "split_method": splits.method,
        "split_details": splits.details,
        "stratified": splits.stratified,
        "class_balance": labels.kind.balance(frame[config.target]),
        "strongest_single_features": [
            {"feature": f.feature, "metric": f.metric, "score": round(f.score, 4)}
            for f in inputs["feature_scores"][:5]
        ],
    }
    if config.time_column:
        data_info["period"] = _period(frame[config.time_column], config.time_column, splits)
    return RunReport(
        run_id=run_id,
        task=labels.task,
        primary_metric=labels.primary.name,
        model=ModelSummary(
            name=config.name,
            version=str(version),
            candidate=inputs["best"].name,
            positive_class=labels.positive_class,
        ),
        test_metrics=inputs["assessment"].test_metrics,
        assessment=assessment_document(inputs),
        tuning=tuning_summary(inputs["tuned"]),
        candidates=[
            {
                "name": c.name,
                "baseline": c.name in BASELINES,
                "fit_seconds": round(c.fit_seconds, 3),
                "validation": c.validation_metrics,
                "test": inputs["all_test"][c.name],
            }
            for c in inputs["trained"]
        ],
        data=data_info,
        schema=schema.to_dict(),
    )


def tuning_summary(tuned: dict[str, Any]) -> dict[str, Any]:
    """Per tuned candidate: metric, best score and parameters, trial counts, seconds."""
    return {
        name: {
            "metric": r.metric,
            "best_cv_score": r.best_score,
            "best_params": r.best_params,
            "trials": len(r.trials),
            "pruned": sum(t.state == "pruned" for t in r.trials),
            "stopped_by_budget": sum(t.state.startswith("stopped") for t in r.trials),
            "seconds": round(r.seconds, 2),
        }
        for name, r in tuned.items()
    }


def compare(inputs: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """Which alias the version will take; against the champion on the same test rows."""
    from keel.families.tabular.promotion import versus_champion
    from keel.registry import CHALLENGER, CHAMPION, alias_version, mlflow_scope

    config, settings = ctx.config, ctx.settings
    if not gates_passed(inputs):
        return {"versus": None, "planned_alias": None}
    version = inputs["run"]["version"]
    with mlflow_scope(settings.tracking_uri) as client:
        champion = alias_version(client, config.name, CHAMPION)
        held = [
            a for a in (CHAMPION, CHALLENGER) if alias_version(client, config.name, a) == version
        ]
    if held:  # this version's own stages run again (a resumed run): it keeps its alias
        return {"versus": None, "planned_alias": held[0]}
    if champion is None:
        return {"versus": None, "planned_alias": CHAMPION}
    ctx.say("against the champion, on the same test rows")
    splits, schema, labels = inputs["splits"], inputs["schema"], inputs["labels"]
    assessment = inputs["assessment"]
    versus = versus_champion(
        settings.tracking_uri,
        config.name,
        assessment.final_pipeline,
        assessment.threshold.get("value"),
        splits.test,
        schema.feature_names,
        config.target,
        labels,
        fairness_judge(config, splits, schema, labels),
        inputs["fairness"],
        config.seed,
    )
    return {"versus": versus, "planned_alias": CHAMPION if versus.get("promote") else CHALLENGER}


def full_report(run: dict[str, Any], versus: dict[str, Any] | None, alias: str | None) -> RunReport:
    """The report with the comparison and the alias the version takes."""
    return run["report"].completed(alias, versus)


def report(inputs: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """``report.{json,html}`` and ``worst_rows.csv``, logged on the run."""
    from keel.registry import mlflow_scope
    from keel.reports import write_reports

    run = inputs["run"]
    ctx.say(f"run {run['run_id']}")
    document = full_report(run, inputs["versus"], inputs["planned_alias"])
    document = dataclasses.replace(
        document, assessment={**document.assessment, "resources": ctx.resources()}
    )
    written = write_reports(document, ctx.settings.reports_dir / run["run_id"])
    worst_path = Path(written["json"]).with_name("worst_rows.csv")
    inputs["assessment"].worst.to_csv(worst_path, index=False)
    written["worst_rows"] = str(worst_path)
    with mlflow_scope(ctx.settings.tracking_uri) as client:
        for path in written.values():
            tracking.log_artifact(client, run["run_id"], path, "reports")
    return {"reports": written}


def card(inputs: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """Model card and datasheet of the version, logged on its run (``card/``).

    Re-run on the same version when only the card's words changed: a PATCH release
    (the semantic version's last number goes up).
    """
    from keel.registry import bump_patch, mlflow_scope, semver_of
    from keel.reports import write_card

    config, settings, run = ctx.config, ctx.settings, inputs["run"]
    ctx.say(f"{run['name']} version {run['version']}")
    alias = inputs["planned_alias"]
    digest = _card_digest(config)
    with mlflow_scope(settings.tracking_uri) as client:
        tags = client.get_model_version(run["name"], run["version"]).tags or {}
        semver = semver_of(tags)
        if tags.get("keel.card") and tags.get("keel.card.digest") != digest:
            # the same model, new words on its card: a PATCH release
            semver = bump_patch(
                client, settings.tracking_uri, run["name"], run["version"], "card words changed"
            )
            ctx.say(f"documents only: {semver}")
    cards = write_card(
        full_report(run, inputs["versus"], alias),
        config.card.model_dump(),
        {
            "name": run["name"],
            "version": run["version"],
            "semver": semver,
            "aliases": [alias] if alias else [],
            "created": now(),
            "tracking_uri": settings.tracking_uri,
        },
        inputs["profile"],
        Path(inputs["reports"]["json"]).parent,
        config=config.model_dump(mode="json"),
    )
    with mlflow_scope(settings.tracking_uri) as client:
        for path in cards.values():
            tracking.log_artifact(client, run["run_id"], path, "card")
        # the card's words are in keel.yaml: the logged copy follows them
        log_config(config, run["run_id"])
        client.set_model_version_tag(run["name"], run["version"], "keel.card", "card/")
        client.set_model_version_tag(run["name"], run["version"], "keel.card.digest", digest)
    return {"cards": cards}


def _card_digest(config: ProjectConfig) -> str:
    """16 hex digits of what the documents are written from, beyond the run's evidence.

    The card's words, the feature descriptions, and the operations the runbook and the
    datasheet describe (serving, monitoring, privacy).
    """
    dumped = config.model_dump(mode="json")
    keys = ("card", "features", "privacy", "serving", "monitoring")
    text = json.dumps({k: dumped.get(k) for k in keys}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def alias(inputs: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """Move the alias last: the version's report, card and gates' evidence exist."""
    from keel.registry import ModelRef, alias_version, assign_alias, mlflow_scope

    run, planned = inputs["run"], inputs["planned_alias"]
    ref = ModelRef(run["name"], run["version"])
    with mlflow_scope(ctx.settings.tracking_uri) as client:
        if planned is not None and alias_version(client, run["name"], planned) == run["version"]:
            ref = ModelRef(run["name"], run["version"], planned)  # already there: no move
        elif planned is not None:
            ctx.say(planned)
            ref = assign_alias(client, ref, ctx.settings.tracking_uri, inputs["versus"])
        client.set_tag(run["run_id"], "keel.alias", ref.alias or "none: a gate failed")
    return {"alias": ref.alias}


def drift_reference(
    model: Any, splits: Any, schema: Any, labels: Any, cut: float | None
) -> dict[str, Any]:
    """The package's drift reference: features of the training rows, outputs on test rows.

    ``outputs`` has the columns the prediction log has: ``prediction`` (classification)
    and ``score`` (P(positive) for binary models, the predicted value for regression).
    """
    import pandas as pd

    from keel.families.tabular.training import predict_with
    from keel.monitoring import DriftReference

    features = DriftReference.from_frame(splits.train[schema.feature_names])
    predictions, proba, classes = predict_with(
        model, splits.test[schema.feature_names], labels.task, cut, labels.positive_class
    )
    outputs = labels.kind.outputs(predictions, proba, classes, labels.positive_class)
    return {
        "features": features.to_dict(),
        "outputs": DriftReference.from_frame(pd.DataFrame(outputs)).to_dict(),
    }


def _period(times: pd.Series, column: str, splits: Any) -> str:
    """When the rows were collected, for the card: first to last value of the time column."""
    values = times.dropna()
    if values.empty:
        return f"unknown: {column!r} is empty"
    text = f"{values.min()} to {values.max()} ({column})"
    details = splits.details or {}
    if details.get("train_until") and details.get("test_from"):
        text += (
            f"; trained on rows up to {details['train_until']}, tested from {details['test_from']}"
        )
    return text


def _verdict(passed: bool) -> str:
    return "passed" if passed else "failed"


_MODEL_INPUTS = (
    "dataset",
    "pii_report",
    "frame",
    "labels",
    "schema",
    "splits",
    "feature_scores",
    "profile",
    "tuned",
    "trained",
    "best",
    "assessment",
    "shipped",
    "behaviour",
    "shipped_fit",
    "feature_tests",
    "all_test",
    "fairness",
    "mitigation",
    "explanations",
    "background",
    "robustness",
    "run_tags",
)

STAGES = (
    Stage(
        "register",
        register,
        inputs=_MODEL_INPUTS,
        outputs={"run": dict},
        reads=RECORDED_KEYS,
        code=RECORD,
        still_valid=still_registered,
    ),
    Stage(
        "compare",
        compare,
        inputs=(
            "run",
            "assessment",
            "behaviour",
            "fairness",
            "robustness",
            "splits",
            "schema",
            "labels",
        ),
        outputs={"versus": (dict, type(None)), "planned_alias": (str, type(None))},
        reads=("name", "seed", "target", "sensitive_features", "fairness"),
        code=JUDGE,
    ),
    Stage(
        "report",
        report,
        inputs=("run", "versus", "planned_alias", "assessment"),
        outputs={"reports": dict},
        code=("keel.reports",),
    ),
    Stage(
        "card",
        card,
        inputs=("run", "versus", "planned_alias", "profile", "reports"),
        outputs={"cards": dict},
        reads=("card", "features", "privacy", "serving", "monitoring"),
        code=("keel.reports",),
    ),
    Stage(
        "alias",
        alias,
        inputs=("run", "versus", "planned_alias", "reports", "cards"),
        outputs={"alias": (str, type(None))},
        code=("keel.registry",),
    ),
)
