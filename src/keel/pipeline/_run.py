"""The stage runner of ``keel run``: plain stages, wired and tracked in one place."""

from __future__ import annotations

import hashlib
import json
import re
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import yaml

from keel._git import commit_of
from keel._version import __version__
from keel.config import ProjectConfig, Settings, resolve_settings
from keel.data import (
    Dataset,
    Profile,
    Schema,
    check_columns,
    check_duplicates,
    check_single_feature_leakage,
    class_balance,
    content_digest,
    encode_row_keys,
    infer_schema,
    load_data,
    mixed_type_violations,
    prepare_labels,
    protect,
    read_schema,
    single_feature_scores,
    snapshot,
    split_frame,
    validate_frame,
)
from keel.errors import DataError
from keel.evaluation import compute_metrics
from keel.monitoring import DriftReference
from keel.pipeline._promotion import versus_champion
from keel.pipeline._report import write_card, write_reports
from keel.registry import (
    CHAMPION,
    alias_version,
    assign_alias,
    ensure_experiment,
    log_model_package,
    mlflow_scope,
)
from keel.responsible import (
    BINARY_ONLY,
    NEEDS_SENSITIVE_AT_PREDICTION,
    assess_model_fairness,
    explain_model,
    mitigation_fitter,
    sensitive_edges,
)
from keel.training import (
    BASELINES,
    SEARCH_SPACES,
    assess,
    check_behaviour_config,
    choose_threshold,
    evaluate_pipeline,
    predict_with,
    refit_on_all_rows,
    refit_on_train_and_validation,
    run_behaviour_tests,
    select_best,
    train_candidates,
    tune,
)

STAGES = (
    "ingest",
    "pii",
    "validate",
    "split",
    "leakage",
    "profile",
    "tune",
    "train",
    "evaluate",
    "fairness",
    "explain",
    "register",
    "report",
)

Observer = Callable[[str, str], None]
"""Called with ``(stage, detail)`` when a stage starts; the CLI draws progress from it."""


@dataclass
class RunResult:
    """What ``keel run`` did: the JSON object ``keel run --json`` prints."""

    run_id: str
    experiment_id: str
    tracking_uri: str
    model: dict[str, Any]
    task: str
    primary_metric: str
    metrics: dict[str, float]
    candidates: list[dict[str, Any]]
    data: dict[str, Any]
    assessment: dict[str, Any]
    tuning: dict[str, Any]
    reports: dict[str, str]
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def run_project(
    config: ProjectConfig,
    settings: Settings | None = None,
    observer: Observer | None = None,
    fixed_params: dict[str, dict[str, Any]] | None = None,
    record: bool = True,
    extra_rows: pd.DataFrame | None = None,
    extra_label: str = "extra rows",
    tags: dict[str, str] | None = None,
) -> RunResult:
    """Run the whole lifecycle once: ingest → validate → split → train → evaluate → register.

    Nothing is written (no MLflow run, no snapshot) until the config and the data
    have passed every check. ``fixed_params`` replaces tuning with known
    hyper-parameters per candidate (``keel reproduce``); ``record=False`` stops after
    evaluation and writes nothing at all. ``extra_rows`` are appended to the
    configured data before anything is checked (continuous training adds the labelled
    production rows; they go through the same validation, split and gates); ``tags``
    are set on the run.
    """
    settings = settings or resolve_settings(config)
    notify = observer or (lambda stage, detail: None)
    timer = _Timer()

    # Stages that only read: every input problem surfaces before anything is written.
    with timer("ingest"):
        notify("ingest", config.data_label)
        dataset = load_data(config.data, config.root)
        if extra_rows is not None and len(extra_rows):
            dataset = with_rows(dataset, extra_rows, extra_label)
        check_columns(
            dataset.columns,
            config.target,
            config.sensitive_features,
            config.ignore_columns,
            origin=f"{config.data_label} ({len(dataset.columns)} columns)",
            time_column=config.time_column,
            group_column=config.group_column,
        )
    with timer("pii"):
        notify("pii", "scanning text columns")
        protected, pii_report = protect(
            dataset.frame,
            dict(config.pii.columns),
            scan=config.pii.scan,
            threshold=config.pii.threshold,
        )
        if protected is not dataset.frame:
            # From here on only the protected rows exist: they are what is snapshotted,
            # profiled, logged and learned from. The raw digest stays in the lineage.
            dataset = Dataset(
                frame=protected,
                source=dataset.source,
                digest=content_digest(protected),
                lineage={**dataset.lineage, "raw_digest": dataset.digest},
            )
    with timer("validate"):
        notify("validate", f"{dataset.n_rows} rows")
        _stop_on_violations(mixed_type_violations(dataset.frame), config.data_label)
        if config.schema_path is not None:
            schema = _configured_schema(config)
            _stop_on_violations(validate_frame(dataset.frame, schema), config.data_label)
        frame, labels = prepare_labels(
            dataset.frame, config.target, config.task, config.positive_class, config.metric
        )
        if config.schema_path is None:
            schema = infer_schema(frame, config.target, config.excluded_columns)
        if not schema.features:
            raise DataError(
                f"{config.data_label}: no usable feature columns besides target {config.target!r}"
            )
        # Validation against an inferred schema is left out on purpose: inferred from
        # these very rows, it cannot fail. A configured schema was checked above, once,
        # on the rows as read.
        check_behaviour_config(config.behaviour, schema, labels.task)
        _check_fairness_config(config, frame, labels.task, schema.feature_names)
    with timer("split"):
        notify("split", f"seed {config.seed}")
        model_columns = [*schema.feature_names, config.target]
        splits = split_frame(
            frame,
            config.target,
            labels.task,
            validation=config.split.validation,
            test=config.split.test,
            seed=config.seed,
            key_columns=model_columns,
            time_column=config.time_column,
            group_column=config.group_column,
        )
    with timer("leakage"):
        notify("leakage", "duplicates, single-feature predictors")
        check_duplicates(splits, model_columns)
        feature_scores = single_feature_scores(splits, schema, labels.task, labels.positive_class)
        check_single_feature_leakage(feature_scores, config.target, config.leakage_threshold)

    with timer("profile"):
        notify("profile", "train rows")
        # The drift reference: statistics of the rows the model learns from.
        profile_doc = Profile.from_frame(splits.train, schema).to_dict()
    with timer("tune"):
        tunable = (
            [c for c in config.candidates if c in SEARCH_SPACES]
            if config.budget or config.trials
            else []
        )
        if fixed_params is not None:
            tunable = []
        tuned = {}
        for name in tunable:
            notify("tune", f"{name}: starting")

            def show(trial, best_score, name=name):
                best_text = "—" if best_score is None else f"{best_score:.4f}"
                notify("tune", f"{name}: trial {trial.number}, best {best_text}")

            tuned[name] = tune(
                name,
                splits.train,
                schema,
                labels,
                config.seed,
                config.budget / len(tunable),
                config.cv_folds,
                on_trial=show,
                time_column=config.time_column,
                group_column=config.group_column,
                trials=config.trials,
            )
    with timer("train"):
        trained = train_candidates(
            config.models,
            splits,
            schema,
            labels,
            config.seed,
            on_candidate=lambda name: notify("train", name),
            params=fixed_params
            if fixed_params is not None
            else {n: r.best_params for n, r in tuned.items()},
        )
        best = select_best(trained, labels.primary)
    fit_final = mitigation_fitter(
        config.fairness.mitigation,
        target=config.target,
        features=schema.feature_names,
        sensitive=config.sensitive_features,
        edges=sensitive_edges(splits.train, config.sensitive_features, config.fairness),
        positive_class=labels.positive_class,
        constraint=config.fairness.constraint,
        iterations=config.fairness.mitigation_iterations,
        folds=config.cv_folds,
        seed=config.seed,
        min_group_size=config.fairness.min_group_size,
    )

    with timer("evaluate"):
        notify("evaluate", f"{best.name}: bootstrap intervals, gate, {config.cv_folds}-fold CV")
        assessment = assess(
            best,
            trained,
            splits,
            schema,
            labels,
            cv_folds=config.cv_folds,
            seed=config.seed,
            margin=config.gate_margin,
            sensitive=config.sensitive_features,
            time_column=config.time_column,
            group_column=config.group_column,
            threshold_objective=config.threshold_objective,
            fold_metrics=tuned[best.name].best_fold_metrics if best.name in tuned else (),
            fit_final=fit_final,
        )
        test_metrics = assessment.test_metrics
        cut = assessment.threshold.get("value")
        behaviour = run_behaviour_tests(
            config.behaviour, assessment.final_pipeline, splits.test, schema, labels, cut
        )
        shipped = assessment.final_pipeline
        shipped_doc = {"fit": "train_and_validation", "rows": assessment.refit_rows}
        if config.final_fit == "all_rows":
            notify("evaluate", f"refit {best.name} on all {len(frame)} rows")
            shipped = refit_on_all_rows(best.pipeline, splits, schema, labels, fit_final)
            # the shipped model must pass the behaviour tests too (its minimum-
            # functionality numbers are optimistic: it has seen the test rows)
            behaviour += [
                {**b, "model": "shipped (all rows)"}
                for b in run_behaviour_tests(
                    config.behaviour, shipped, splits.test, schema, labels, cut
                )
            ]
            shipped_doc = {
                "fit": "all_rows",
                "rows": len(splits.train) + len(splits.validation) + len(splits.test),
                "note": "the shipped model was refitted on every row after evaluation; the"
                f" test metrics are those of the same model fitted on"
                f" {assessment.refit_rows} rows (train + validation)",
            }
        assessment_doc = {**assessment.to_dict(), "behaviour": behaviour, "shipped": shipped_doc}
        all_test = {
            c.name: evaluate_pipeline(c.pipeline, splits.test, schema, labels) for c in trained
        }

    def fairness_of(model: Any, threshold: float | None = None, columns: Any = None) -> Any:
        """Fairness of ``model``'s decisions on the test rows (groups binned on train)."""
        return assess_model_fairness(
            model,
            splits.test,
            splits.train,
            columns or schema,
            labels,
            config.sensitive_features,
            config.fairness,
            threshold,
            config.seed,
        )

    with timer("fairness"):
        fairness = None
        if config.sensitive_features:
            notify("fairness", ", ".join(config.sensitive_features))
            fairness = fairness_of(assessment.final_pipeline, cut)
            assessment_doc["fairness"] = fairness.to_dict()
            if fit_final is not None:
                notify("fairness", f"before {config.fairness.mitigation}, for comparison")
                unmitigated = refit_on_train_and_validation(best.pipeline, splits, schema, labels)
                before_cut = cut
                if cut is None and labels.task == "binary" and config.threshold_objective != "none":
                    # the mitigated model decides itself; the plain one at its own threshold
                    before_cut = choose_threshold(
                        best, splits, schema, labels, config.threshold_objective
                    )["value"]
                assessment_doc["mitigation"] = _before_and_after(
                    unmitigated,
                    fairness_of(unmitigated, before_cut),
                    fairness,
                    test_metrics,
                    splits.test,
                    schema,
                    labels,
                    config,
                    before_cut,
                )

    with timer("explain"):
        notify("explain", "SHAP, permutation importance, partial dependence")
        explanations, background = explain_model(
            assessment.final_pipeline,
            splits.test,
            splits.train,
            schema,
            labels,
            cut,
            config.seed,
        )
        assessment_doc["explanations"] = explanations

    primary = labels.primary.name
    if not record:
        return RunResult(
            run_id="",
            experiment_id="",
            tracking_uri=settings.tracking_uri,
            model={"name": config.name, "version": None, "alias": None, "candidate": best.name},
            task=labels.task,
            primary_metric=primary,
            metrics=test_metrics,
            candidates=[
                {"name": c.name, "validation": c.validation_metrics, "test": all_test[c.name]}
                for c in trained
            ],
            data={"digest": dataset.digest, "split_digest": splits.digest},
            reports={},
            assessment=assessment_doc,
            tuning={},
            stage_seconds=dict(timer.seconds),
        )
    snapshot_path = snapshot(dataset, settings.data_store)
    primary = labels.primary.name
    data_info = {
        "source": dataset.source,
        "lineage": dataset.lineage,
        "pii": pii_report.to_dict(),
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
        "class_balance": class_balance(frame[config.target]) if labels.task != "regression" else {},
        "strongest_single_features": [
            {"feature": f.feature, "metric": f.metric, "score": round(f.score, 4)}
            for f in feature_scores[:5]
        ],
    }
    if config.time_column:
        data_info["period"] = _period(frame[config.time_column], config.time_column, splits)
    tuning_summary = {
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
    candidates = [
        {
            "name": c.name,
            "baseline": c.name in BASELINES,
            "fit_seconds": round(c.fit_seconds, 3),
            "validation": c.validation_metrics,
            "test": all_test[c.name],
        }
        for c in trained
    ]
    with mlflow_scope(settings.tracking_uri) as client:
        experiment_id = ensure_experiment(client, config.name, settings.artifact_location)
        with timer("register"), _quiet_mlflow():
            notify("register", config.name)
            with mlflow.start_run(experiment_id=experiment_id, run_name=f"keel-{best.name}") as run:
                run_id = run.info.run_id
                for c in trained:
                    with mlflow.start_run(
                        experiment_id=experiment_id, run_name=c.name, nested=True
                    ):
                        mlflow.log_params({f"model.{k}": v for k, v in c.params.items()})
                        mlflow.log_metrics({f"val_{k}": v for k, v in c.validation_metrics.items()})
                        mlflow.log_metrics({f"test_{k}": v for k, v in all_test[c.name].items()})
                        mlflow.log_metric("fit_seconds", c.fit_seconds)
                        mlflow.set_tag("keel.candidate", c.name)
                for name, result in tuned.items():
                    for trial in result.trials:
                        with mlflow.start_run(
                            experiment_id=experiment_id,
                            run_name=f"{name}-trial-{trial.number}",
                            nested=True,
                        ):
                            mlflow.log_params({f"model.{k}": v for k, v in trial.params.items()})
                            mlflow.set_tags(
                                {"keel.candidate": name, "keel.trial.state": trial.state}
                            )
                            if trial.score is not None:
                                mlflow.log_metric(f"cv_{result.metric}", trial.score)
                            mlflow.log_metric("trial_seconds", trial.seconds)
                _log_run(
                    config,
                    dataset,
                    frame,
                    labels,
                    schema,
                    splits,
                    best,
                    test_metrics,
                    snapshot_path,
                )
                metadata = {
                    "task": labels.task,
                    "classes": list(labels.classes),
                    "positive_class": labels.positive_class,
                    # binary: serving decides "positive" when P(positive) >= this
                    "decision_threshold": (assessment.threshold or {}).get("value"),
                    "candidate": best.name,
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
                mlflow.log_dict(profile_doc, "profile.json")
                _, ref = log_model_package(
                    shipped,
                    registered_name=config.name,
                    example=features.head(5),
                    schema=schema,
                    metadata=metadata,
                    signature_rows=features.head(1000),
                    files={
                        "profile.json": profile_doc,
                        # the local explanations' background (training rows)
                        "background.json": json.loads(
                            background.to_json(orient="records", date_format="iso")
                        ),
                        # which rows the shipped model saw: a later version is compared
                        # with it only on rows it did not train on
                        # monitoring's reference (no training data needed at monitoring
                        # time): training features, and the outputs on the test rows
                        "drift_reference.json": drift_reference(
                            shipped,
                            splits,
                            schema,
                            labels,
                            (assessment.threshold or {}).get("value"),
                        ),
                        "training_rows.json": encode_row_keys(
                            [splits.train, splits.validation]
                            + ([splits.test] if config.final_fit == "all_rows" else []),
                            model_columns,
                        ),
                    },
                )
                gate = assessment.gate
                behaviour_ok = all(b["passed"] for b in behaviour)
                fairness_ok = fairness is None or fairness.passed
                gates = {
                    "baseline": "not run" if gate is None else _verdict(gate.passed),
                    "behaviour": _verdict(behaviour_ok) if behaviour else "not configured",
                    "fairness": "not assessed"
                    if fairness is None
                    else (_verdict(fairness.passed) if fairness.judged else "not judged"),
                }
                for key, value in {
                    "keel.dataset.digest": dataset.digest,
                    "keel.config.digest": config_digest(config),
                    "keel.commit": git_commit(config.root) or "unknown (not a git checkout)",
                    "keel.gates": ", ".join(f"{k} {v}" for k, v in gates.items()),
                }.items():
                    client.set_model_version_tag(ref.name, ref.version, key, value)
                if (gate is None or gate.passed) and behaviour_ok and fairness_ok:
                    versus = None
                    if alias_version(client, ref.name, CHAMPION) is not None:
                        notify("register", "against the champion, on the same test rows")
                        versus = versus_champion(
                            settings.tracking_uri,
                            ref.name,
                            assessment.final_pipeline,
                            cut,
                            splits.test,
                            schema.feature_names,
                            config.target,
                            labels,
                            fairness_of,
                            fairness,
                            config.seed,
                        )
                        assessment_doc["versus_champion"] = versus
                    ref = assign_alias(client, ref, settings.tracking_uri, versus)
                mlflow.set_tag("keel.alias", ref.alias or "none: a gate failed")
                if tags:
                    mlflow.set_tags(tags)
                # where a failed run of this pipeline is reported (keel check: failure_alerts)
                mlflow.set_tag(
                    "keel.failure_alerts", ",".join(s.type for s in config.monitoring.sinks)
                )
                if fairness is not None:
                    _log_fairness(fairness)
                if behaviour:
                    mlflow.set_tag("keel.gate.behaviour", "passed" if behaviour_ok else "failed")
                if gate is not None:
                    mlflow.set_tag("keel.gate.baseline", "passed" if gate.passed else "failed")
                    mlflow.log_metric("gate_difference_low", gate.difference.low)
                    mlflow.log_metric("gate_difference_high", gate.difference.high)
                for name, interval in assessment.intervals.items():
                    mlflow.log_metric(f"test_{name}_ci_low", interval.low)
                    mlflow.log_metric(f"test_{name}_ci_high", interval.high)
                for name, summary in assessment.cross_validation.items():
                    mlflow.log_metric(f"cv_{name}_mean", summary["mean"])
                    mlflow.log_metric(f"cv_{name}_std", summary["std"])
                report = {
                    "run_id": run_id,
                    "task": labels.task,
                    "primary_metric": primary,
                    "model": {
                        "name": ref.name,
                        "version": ref.version,
                        "alias": ref.alias,
                        "candidate": best.name,
                        "positive_class": labels.positive_class,
                    },
                    "test_metrics": test_metrics,
                    "assessment": assessment_doc,
                    "tuning": tuning_summary,
                    "candidates": candidates,
                    "data": data_info,
                    "schema": schema.to_dict(),
                }
                with timer("report"):
                    notify("report", "")
                    reports = write_reports(report, settings.reports_dir / run_id)
                    worst_path = Path(reports["json"]).with_name("worst_rows.csv")
                    assessment.worst.to_csv(worst_path, index=False)
                    reports["worst_rows"] = str(worst_path)
                    for path in reports.values():
                        mlflow.log_artifact(path, artifact_path="reports")
                    cards = write_card(
                        report,
                        config.card.model_dump(),
                        {
                            "name": ref.name,
                            "version": ref.version,
                            "aliases": [ref.alias] if ref.alias else [],
                            "created": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                            "tracking_uri": settings.tracking_uri,
                        },
                        profile_doc,
                        Path(reports["json"]).parent,
                    )
                    for path in cards.values():
                        mlflow.log_artifact(path, artifact_path="card")
                    client.set_model_version_tag(ref.name, ref.version, "keel.card", "card/")
                    reports.update(cards)
                for stage, seconds in timer.seconds.items():
                    mlflow.log_metric(f"stage_seconds.{stage}", seconds)

    return RunResult(
        run_id=run_id,
        experiment_id=experiment_id,
        tracking_uri=settings.tracking_uri,
        model={
            "name": ref.name,
            "version": ref.version,
            "alias": ref.alias,
            "candidate": best.name,
            "uri": f"models:/{ref.name}@{ref.alias}" if ref.alias else ref.uri,
        },
        task=labels.task,
        primary_metric=primary,
        metrics=test_metrics,
        assessment=assessment_doc,
        tuning=tuning_summary,
        candidates=candidates,
        data=data_info,
        reports=reports,
        stage_seconds=dict(timer.seconds),
    )


def _configured_schema(config: ProjectConfig) -> Schema:
    """The hand-edited schema of ``keel.yaml``'s ``schema:``, with the config's roles."""
    schema = read_schema(config.schema_path)
    if schema.target != config.target:
        raise DataError(
            f"{config.schema_file}: its target is {schema.target!r} but keel.yaml says"
            f" {config.target!r}; make them agree"
        )
    columns = tuple(
        replace(c, role="ignored", note="listed in ignore_columns")
        if c.name in config.excluded_columns
        else c
        for c in schema.columns
    )
    return Schema(columns=columns, target=schema.target)


def _stop_on_violations(violations: list, data: str) -> None:
    if violations:
        more = len(violations) - 1
        raise DataError(
            f"{data}: {violations[0].describe()}"
            + (f" (and {more} more rule(s) broken; `keel validate` lists them all)" if more else "")
        )


def _log_run(
    config, dataset, frame, labels, schema, splits, best, test_metrics, snapshot_path
) -> None:
    """Everything that makes the run reproducible, logged on the active MLflow run."""
    mlflow.log_params(
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
    mlflow.log_metrics({f"test_{k}": v for k, v in test_metrics.items()})
    mlflow.log_metrics({f"val_{k}": v for k, v in best.validation_metrics.items()})
    for name, size in splits.sizes().items():
        mlflow.log_metric(f"rows_{name}", size)
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
    mlflow.set_tags(tags)
    origin = dataset.lineage.get("kind") == "file"
    # MLflow resolves only file-like sources; SQL and DVC data point at Keel's snapshot,
    # with where it came from in the input's tags.
    uri = Path(dataset.source).as_uri() if origin else Path(snapshot_path).resolve().as_uri()
    source = mlflow.data.from_pandas(
        frame,
        source=uri,
        name=Path(dataset.source).name if origin else f"{config.name}-{dataset.lineage['kind']}",
        targets=config.target,
        digest=dataset.digest,
    )
    lineage_tags = {
        f"keel.source.{k}": str(v)[:5000] for k, v in dataset.lineage.items() if v is not None
    }
    mlflow.log_input(source, context="training", tags=lineage_tags)
    mlflow.log_text(
        yaml.safe_dump(config.model_dump(mode="json", by_alias=True), sort_keys=False), "keel.yaml"
    )
    mlflow.log_dict(schema.to_dict(), "schema.json")


def git_commit(folder: Path) -> str | None:
    """The commit of the git work tree holding ``folder`` (``+dirty`` if changed), if any."""
    return commit_of(folder, mark_dirty=True)


class _Timer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = round(time.perf_counter() - started, 3)


@contextmanager
def _quiet_mlflow() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


__all__ = ["STAGES", "Observer", "RunResult", "git_commit", "run_project"]


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


def config_digest(config: ProjectConfig) -> str:
    """16 hex digits of the config as the run used it (every key, defaults included)."""
    text = json.dumps(config.model_dump(mode="json"), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _check_fairness_config(
    config: ProjectConfig, frame: pd.DataFrame, task: str, features: list[str]
) -> None:
    """Mitigation fits the task and has what it needs; binned features are numeric.

    That every sensitive feature is a column was checked at ingest (check_columns).
    """
    fairness = config.fairness
    method = fairness.mitigation
    if method != "none" and not config.sensitive_features:
        raise DataError(f"key 'fairness.mitigation': {method} needs sensitive_features")
    if method == "reweighing" and task == "regression":
        raise DataError(
            "key 'fairness.mitigation': reweighing balances groups across labels, so it needs"
            " a classification task; this target is a regression one"
        )
    if method in BINARY_ONLY and task != "binary":
        raise DataError(
            f"key 'fairness.mitigation': {method} is for binary tasks; this one is {task}"
            " (use reweighing, or none)"
        )
    if method in NEEDS_SENSITIVE_AT_PREDICTION:
        missing = [c for c in config.sensitive_features if c not in features]
        if missing:
            raise DataError(
                f"key 'fairness.mitigation': {method} decides per group at prediction time,"
                f" so {', '.join(map(repr, missing))} must be a model input; remove it from"
                " ignore_columns (or choose exponentiated_gradient)"
            )
    # (a config logged by a run and read back sets every key: only a changed one is an error)
    if fairness.constraint != "demographic_parity" and method not in BINARY_ONLY:
        raise DataError(
            "key 'fairness.constraint': only exponentiated_gradient and threshold_optimizer"
            f" take a constraint; mitigation is {method}"
        )
    for name in config.fairness.bins:
        if name not in config.sensitive_features:
            raise DataError(
                f"key 'fairness.bins': {name!r} is not one of sensitive_features"
                f" ({', '.join(config.sensitive_features) or 'none'})"
            )
        if not pd.api.types.is_numeric_dtype(frame[name]):
            raise DataError(
                f"key 'fairness.bins': {name!r} is not numeric, so it cannot be binned;"
                " remove its bins (each value is its own group)"
            )


def _log_fairness(fairness: Any) -> None:
    """The fairness gate and measures on the MLflow run (names made MLflow-safe)."""
    if fairness.judged:
        mlflow.set_tag("keel.gate.fairness", "passed" if fairness.passed else "failed")
        if not fairness.passed:
            mlflow.set_tag("keel.fairness.breaches", fairness.describe()[:5000])
    else:
        mlflow.set_tag("keel.gate.fairness", "not judged: no limits configured")
    for feature, result in fairness.features.items():
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", feature).strip("_")
        for measure, value in result["measures"].items():
            if value == value:  # not NaN
                mlflow.log_metric(f"fairness_{safe}_{measure}", value)


def with_rows(dataset: Dataset, rows: pd.DataFrame, label: str) -> Dataset:
    """``dataset`` with ``rows`` appended (missing columns empty); its own digest."""
    frame = pd.concat(
        [dataset.frame, rows.reindex(columns=dataset.frame.columns)], ignore_index=True
    )
    return Dataset(
        frame=frame,
        source=f"{dataset.source} + {label}",
        digest=content_digest(frame),
        lineage={**dataset.lineage, "appended": {"rows": len(rows), "from": label}},
    )


def drift_reference(
    model: Any, splits: Any, schema: Schema, labels: Any, cut: float | None
) -> dict[str, Any]:
    """The package's drift reference: features of the training rows, outputs on test rows.

    ``outputs`` has the columns the prediction log has: ``prediction`` (classification)
    and ``score`` (P(positive) for binary models, the predicted value for regression).
    """
    features = DriftReference.from_frame(splits.train[schema.feature_names])
    predictions, proba, classes = predict_with(
        model, splits.test[schema.feature_names], labels.task, cut, labels.positive_class
    )
    outputs: dict[str, Any] = {}
    if labels.task == "regression":
        outputs["score"] = np.asarray(predictions, dtype=float)
    else:
        outputs["prediction"] = np.asarray(predictions).astype(str)
        if labels.task == "binary" and proba is not None:
            outputs["score"] = proba[:, list(classes).index(str(labels.positive_class))]
    return {
        "features": features.to_dict(),
        "outputs": DriftReference.from_frame(pd.DataFrame(outputs)).to_dict(),
    }


def _before_and_after(
    unmitigated: Any,
    before: Any,
    fairness: Any,
    test_metrics: dict[str, float],
    test_rows: pd.DataFrame,
    schema: Schema,
    labels: Any,
    config: ProjectConfig,
    cut: float | None,
) -> dict[str, Any]:
    """Test metrics and fairness measures of the model without and with mitigation."""
    predictions, proba, classes = predict_with(
        unmitigated, test_rows[schema.feature_names], labels.task, cut, labels.positive_class
    )
    y = test_rows[config.target].to_numpy()
    metrics = compute_metrics(
        labels.task,
        y.astype(float) if labels.task == "regression" else y,
        predictions,
        proba,
        classes,
        labels.positive_class,
    )
    method = config.fairness.mitigation
    return {
        "method": method,
        "constraint": config.fairness.constraint if method in BINARY_ONLY else None,
        "shipped": "after",
        "sensitive_features_at_prediction": method in NEEDS_SENSITIVE_AT_PREDICTION,
        "before": {
            "decision_threshold": cut,
            "metrics": metrics,
            "fairness": {f: r["measures"] for f, r in before.features.items()},
            "passed": before.passed,
        },
        "after": {
            "metrics": test_metrics,
            "fairness": {f: r["measures"] for f, r in fairness.features.items()},
            "passed": fairness.passed,
        },
    }
