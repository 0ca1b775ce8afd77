"""The stages of ``keel run``, each a plain function of its inputs and the run context.

The wiring (what each stage needs, makes and reads) is :data:`LIFECYCLE`, at the end
of this module; :mod:`keel.pipeline._stages` runs it. Stages up to ``explain`` only
read: every input problem surfaces before anything is written. ``register`` opens the
MLflow run and registers the version (idempotently: a retry finds the version its key
already registered); ``compare`` weighs it against the champion; ``report`` and ``card``
write the evidence; ``alias`` moves the alias last, once the evidence exists.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from keel.config import ENSEMBLE, ProjectConfig
from keel.errors import DataError
from keel.pipeline._context import (
    RunContext,
    file_digest,
    protect_dataset,
    with_rows,
)
from keel.pipeline._stages import Graph, Stage, lazy_type

if TYPE_CHECKING:  # pandas loads with the stages that run, not for a no-op run
    import pandas as pd

DATA_FRAME = lazy_type("pandas", "DataFrame")

DATA = ("keel.data", "keel.config")
LEARN = (
    *DATA,
    "keel.families.tabular.features",
    "keel.families.tabular.training",
    "keel.evaluation",
    "keel.estimators",
)
JUDGE = (*LEARN, "keel.families.tabular.responsible", "keel._groups")
RECORD = (*JUDGE, "keel.registry", "keel.monitoring")
# --- reading and checking: nothing is written by these --------------------------------


def ingest(inputs: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """Read the configured rows (plus any extra rows) and check the named columns exist."""
    from keel.data import check_columns, load_data

    config = ctx.config
    ctx.say(config.data_label)
    dataset = load_data(config.data, config.root)
    extra = inputs["extra_rows"]
    if extra is not None and len(extra):
        dataset = with_rows(dataset, extra, ctx.extra_label)
    check_columns(
        dataset.columns,
        config.target,
        config.sensitive_features,
        config.ignore_columns,
        origin=f"{config.data_label} ({len(dataset.columns)} columns)",
        time_column=config.time_column,
        group_column=config.group_column,
    )
    return {"raw": dataset}


def source_fingerprint(ctx: RunContext) -> str | None:
    """SHA-256 of the data file's bytes; ``None`` (cannot tell: run) for SQL and DVC."""
    return file_digest(ctx.config.data_path, ctx.settings.stage_store)


def schema_fingerprint(ctx: RunContext) -> str | None:
    """SHA-256 of the hand-edited schema file, if one is configured ('' when none)."""
    path = ctx.config.schema_path
    return "" if path is None else file_digest(path, ctx.settings.stage_store)


def pii(inputs: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """Rewrite personal data as configured (presidio), or stop the run."""
    config = ctx.config
    dataset = inputs["raw"]
    ctx.say("scanning text columns")
    dataset, report = protect_dataset(dataset, config.pii)
    return {"dataset": dataset, "pii_report": report}


def validate(inputs: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """Check rows against the schema (configured or inferred); labels against the task."""
    from keel.data import infer_schema, mixed_type_violations, prepare_labels, validate_frame
    from keel.families.tabular.training import check_behaviour_config

    config = ctx.config
    dataset = inputs["dataset"]
    ctx.say(f"{dataset.n_rows} rows")
    _stop_on_violations(mixed_type_violations(dataset.frame), config.data_label)
    schema = None
    if config.schema_path is not None:
        schema = configured_schema(config)
        _stop_on_violations(validate_frame(dataset.frame, schema), config.data_label)
    frame, labels = prepare_labels(
        dataset.frame, config.target, config.task, config.positive_class, config.metric
    )
    if schema is None:
        # Validation against an inferred schema is left out on purpose: inferred from
        # these very rows, it cannot fail.
        schema = infer_schema(frame, config.target, config.excluded_columns)
    if not schema.features:
        raise DataError(
            f"{config.data_label}: no usable feature columns besides target {config.target!r}"
        )
    check_behaviour_config(config.behaviour, schema, labels.task)
    check_fairness_config(config, frame, labels.task, schema.feature_names)
    return {"frame": frame, "labels": labels, "schema": schema}


def split(inputs: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """Seeded train/validation/test split (stratified, by time or by group)."""
    from keel.data import split_frame

    config = ctx.config
    ctx.say(f"seed {config.seed}")
    schema, labels = inputs["schema"], inputs["labels"]
    splits = split_frame(
        inputs["frame"],
        config.target,
        labels.task,
        validation=config.split.validation,
        test=config.split.test,
        seed=config.seed,
        key_columns=[*schema.feature_names, config.target],
        time_column=config.time_column,
        group_column=config.group_column,
    )
    return {"splits": splits}


def leakage(inputs: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """Rows repeated across splits; single features that predict the target alone."""
    from keel.data import check_duplicates, check_single_feature_leakage, single_feature_scores

    config = ctx.config
    splits, schema, labels = inputs["splits"], inputs["schema"], inputs["labels"]
    ctx.say("duplicates, single-feature predictors")
    check_duplicates(splits, [*schema.feature_names, config.target])
    scores = single_feature_scores(splits, schema, labels.task, labels.positive_class)
    check_single_feature_leakage(scores, config.target, config.leakage_threshold)
    return {"feature_scores": list(scores)}


def profile(inputs: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """Statistics of the rows the model learns from (the drift reference)."""
    from keel.data import Profile

    ctx.say("train rows")
    return {"profile": Profile.from_frame(inputs["splits"].train, inputs["schema"]).to_dict()}


def tune(inputs: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """Optuna on CV folds of the train rows, for ``budget:`` seconds or ``trials:``."""
    from keel.families.tabular.training import SEARCH_SPACES

    config = ctx.config
    tunable = (
        [c for c in config.candidates if c in SEARCH_SPACES]
        if (config.budget or config.trials) and inputs["fixed_params"] is None
        else []
    )
    tuned: dict[str, Any] = {}
    address = config.tuning.ray_address
    if address and tunable:
        from keel._ray import connected
        from keel.families.tabular.training import RayFolds

        ctx.say(f"folds on the Ray cluster at {address}")
        with connected(address) as ray:
            _tune_each(tunable, inputs, ctx, tuned, RayFolds(ray))
    else:
        _tune_each(tunable, inputs, ctx, tuned, None)
    if ENSEMBLE in config.candidates and tuned:
        from keel.families.tabular.training import select_ensemble

        ctx.say("ensemble selection over the best trials' out-of-fold predictions")
        found = select_ensemble(
            tuned,
            inputs["splits"].train,
            inputs["schema"],
            inputs["labels"],
            config.cv_folds,
            config.seed,
            top=config.ensemble.top_trials,
            rounds=config.ensemble.rounds,
            time_column=config.time_column,
            group_column=config.group_column,
        )
        if found is not None:
            tuned[ENSEMBLE] = found
    return {"tuned": tuned}


# What the stages after tuning cost, in seconds (fitted to bench/quality.py's five
# datasets, 2 cores, 2026-12-03): a fixed part — bootstrap intervals, fairness,
# reports, registration — growing with the rows, the features (explanations and
# robustness go feature by feature) and the trials (one nested MLflow run each), plus
# fits of the chosen model: trained once more, refitted on train + validation, a
# three-point learning curve, and SHAP, robustness and serialisation, which scale
# with the model's size.
AFTER_TUNING_SECONDS = 6.0
AFTER_TUNING_PER_1000_ROWS = 0.1
AFTER_TUNING_PER_FEATURE = 0.05
AFTER_TUNING_PER_TRIAL = 0.015
# fits' worth of work on the chosen model after tuning, per kind of model: a
# classifier's evidence predicts probabilities many times (SHAP per class, robustness,
# bootstrap, learning curve), a multiclass one once more per class beyond two
FITS_AFTER_TUNING = {"regression": 3.0, "binary": 7.0, "multiclass": 7.0}
PER_EXTRA_CLASS = 0.25


def after_tuning_seconds(
    config: ProjectConfig,
    rows: int,
    fold_fits: dict[str, float],
    features: int = 0,
    trials: int = 0,
    task: str = "binary",
    classes: int = 2,
) -> float:
    """Seconds the stages after tuning will need, from the trials seen so far.

    ``fold_fits`` holds each tuned candidate's best trial's seconds per fold; a model
    fitted on all train rows takes ``folds / (folds - 1)`` of that. Every tuned
    candidate is fitted once more in ``train``; the chosen one (an ensemble: all its
    members) about ``FITS_AFTER_TUNING`` times after it.
    """
    scale = config.cv_folds / (config.cv_folds - 1)
    fits = sum(fold_fits.values())
    chosen = max(fold_fits.values(), default=0.0)
    if ENSEMBLE in config.candidates:
        chosen = max(chosen, config.ensemble.top_trials * fits)
    extra = 1.5 if config.final_fit == "all_rows" else 0.0  # one more fit, on every row
    fits_after = FITS_AFTER_TUNING.get(task, 7.0) * (1 + PER_EXTRA_CLASS * max(0, classes - 2))
    return (
        AFTER_TUNING_SECONDS
        + AFTER_TUNING_PER_1000_ROWS * rows / 1000
        + AFTER_TUNING_PER_FEATURE * features
        + AFTER_TUNING_PER_TRIAL * trials
        + scale * (fits + (fits_after + extra) * chosen)
    )


def _tune_each(
    tunable: list[str],
    inputs: dict[str, Any],
    ctx: RunContext,
    tuned: dict[str, Any],
    folds_on: Any,
) -> None:
    """Tune each candidate in turn, sharing what the whole-run budget leaves for tuning.

    ``budget:`` is the wall time of the whole ``keel run``: tuning ends when what is
    left is what the later stages are estimated to need (:func:`after_tuning_seconds`,
    re-estimated after every trial); the candidates not yet tuned share the rest
    equally.
    """
    from keel.families.tabular.training import tune as tune_one

    config = ctx.config
    rows = len(inputs["splits"].train) + len(inputs["splits"].validation)
    run_ends = ctx.started + config.budget
    features = len(inputs["schema"].feature_names)
    labels = inputs["labels"]
    fold_fits: dict[str, float] = {}
    seen = [0]  # trials finished, over every candidate
    for index, name in enumerate(tunable):
        ctx.say(f"{name}: starting")
        began = time.perf_counter()
        share = len(tunable) - index

        def stop_at(began: float = began, share: int = share) -> float:
            ends = run_ends - after_tuning_seconds(
                config, rows, fold_fits, features, seen[0], labels.task, len(labels.classes)
            )
            return began + (ends - began) / share

        def show(trial: Any, best_score: float | None, name: str = name) -> None:
            seen[0] += 1
            if best_score is not None and trial.score == best_score and trial.fold_scores:
                fold_fits[name] = trial.seconds / len(trial.fold_scores)
            fold_fits.setdefault(name, trial.seconds / max(1, len(trial.fold_scores)))
            best_text = "—" if best_score is None else f"{best_score:.4f}"
            ctx.say(f"{name}: trial {trial.number}, best {best_text}")

        tuned[name] = tune_one(
            name,
            inputs["splits"].train,
            inputs["schema"],
            inputs["labels"],
            config.seed,
            config.budget,
            config.cv_folds,
            on_trial=show,
            time_column=config.time_column,
            group_column=config.group_column,
            trials=config.trials,
            folds_on=folds_on,
            keep_outputs=config.ensemble.top_trials if ENSEMBLE in config.candidates else 0,
            stop_at=stop_at,
        )


def train(inputs: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """Baselines and candidates on the train rows; the best on validation."""
    from keel.families.tabular.training import select_best, train_candidates

    config = ctx.config
    fixed = inputs["fixed_params"]
    trained = train_candidates(
        config.models,
        inputs["splits"],
        inputs["schema"],
        inputs["labels"],
        config.seed,
        on_candidate=ctx.say,
        params=fixed
        if fixed is not None
        else {n: r.best_params for n, r in inputs["tuned"].items()},
    )
    return {"trained": list(trained), "best": select_best(trained, inputs["labels"].primary)}


def final_fitter(config: ProjectConfig, splits: Any, schema: Any, labels: Any) -> Any:
    """How the shipped model is fitted: plainly, or with bias mitigation."""
    from keel.families.tabular.responsible import mitigation_fitter, sensitive_edges

    return mitigation_fitter(
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


def evaluate(inputs: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """Test metrics with intervals, the baseline gate, CV, threshold, behaviour tests."""
    from keel.families.tabular.responsible import NEEDS_SENSITIVE_AT_PREDICTION
    from keel.families.tabular.training import (
        assess,
        evaluate_pipeline,
        refit_on_all_rows,
        run_behaviour_tests,
        run_feature_tests,
    )

    config = ctx.config
    best, trained, tuned = inputs["best"], inputs["trained"], inputs["tuned"]
    splits, schema, labels = inputs["splits"], inputs["schema"], inputs["labels"]
    fit_final = final_fitter(config, splits, schema, labels)
    ctx.say(f"{best.name}: bootstrap intervals, gate, {config.cv_folds}-fold CV")
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
    cut = assessment.threshold.get("value")
    behaviour = run_behaviour_tests(
        config.behaviour, assessment.final_pipeline, splits.test, schema, labels, cut
    )
    shipped = assessment.final_pipeline
    shipped_doc: dict[str, Any] = {"fit": "train_and_validation", "rows": assessment.refit_rows}
    if config.final_fit == "all_rows":
        ctx.say(f"refit {best.name} on all rows")
        shipped = refit_on_all_rows(best.pipeline, splits, schema, labels, fit_final)
        # the shipped model must pass the behaviour tests too (its minimum-functionality
        # numbers are optimistic: it has seen the test rows)
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
            " test metrics are those of the same model fitted on"
            f" {assessment.refit_rows} rows (train + validation)",
        }
    all_test = {c.name: evaluate_pipeline(c.pipeline, splits.test, schema, labels) for c in trained}
    needed = config.fairness.mitigation in NEEDS_SENSITIVE_AT_PREDICTION
    feature_tests = run_feature_tests(
        shipped, splits.test, schema, labels, keep=config.sensitive_features if needed else ()
    )
    return {
        "feature_tests": feature_tests,
        "assessment": assessment,
        "shipped": shipped,
        "behaviour": list(behaviour),
        "shipped_fit": shipped_doc,
        "all_test": all_test,
    }


def fairness_judge(config: ProjectConfig, splits: Any, schema: Any, labels: Any) -> Any:
    """``judge(model, threshold, columns)``: fairness of a model's decisions on test rows."""
    from keel.families.tabular.responsible import assess_model_fairness

    def judge(model: Any, threshold: float | None = None, columns: Any = None) -> Any:
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

    return judge


def fairness(inputs: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """Per-group metrics and measures on the test rows; before/after any mitigation."""
    from keel.families.tabular.training import choose_threshold, refit_on_train_and_validation

    config = ctx.config
    if not config.sensitive_features:
        return {"fairness": None, "mitigation": None}
    splits, schema, labels = inputs["splits"], inputs["schema"], inputs["labels"]
    assessment, best = inputs["assessment"], inputs["best"]
    judge = fairness_judge(config, splits, schema, labels)
    cut = assessment.threshold.get("value")
    ctx.say(", ".join(config.sensitive_features))
    found = judge(assessment.final_pipeline, cut)
    mitigation = None
    if config.fairness.mitigation != "none":
        ctx.say(f"before {config.fairness.mitigation}, for comparison")
        unmitigated = refit_on_train_and_validation(best.pipeline, splits, schema, labels)
        before_cut = cut
        if cut is None and labels.kind.thresholded and config.threshold_objective != "none":
            # the mitigated model decides itself; the plain one at its own threshold
            before_cut = choose_threshold(best, splits, schema, labels, config.threshold_objective)[
                "value"
            ]
        mitigation = before_and_after(
            unmitigated,
            judge(unmitigated, before_cut),
            found,
            assessment.test_metrics,
            splits.test,
            schema,
            labels,
            config,
            before_cut,
        )
    return {"fairness": found, "mitigation": mitigation}


def explain(inputs: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """SHAP in original features, permutation importance, partial dependence, rules."""
    from keel.families.tabular.responsible import explain_model, surrogate_rules

    assessment = inputs["assessment"]
    ctx.say("SHAP, permutation importance, partial dependence")
    args = (
        assessment.final_pipeline,
        inputs["splits"].test,
        inputs["splits"].train,
        inputs["schema"],
        inputs["labels"],
        assessment.threshold.get("value"),
    )
    explanations, background = explain_model(*args, ctx.config.seed)
    ctx.say("rules that mimic the model (a depth-3 tree)")
    explanations["rules"] = surrogate_rules(*args, seed=ctx.config.seed)
    return {"explanations": explanations, "background": background}


def robustness(inputs: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """Noise curves, category swaps, missing values, minimal decision-flipping changes."""
    from keel.families.tabular.responsible import assess_robustness

    settings = ctx.config.robustness
    if not settings.enabled:
        return {"robustness": None}
    assessment = inputs["assessment"]
    ctx.say(f"noise, swaps, missing values on {settings.rows} rows; minimal changes")
    found = assess_robustness(
        assessment.final_pipeline,
        inputs["splits"].test,
        inputs["splits"].train,
        inputs["schema"],
        inputs["labels"],
        assessment.threshold.get("value"),
        settings,
        ctx.config.seed,
    )
    return {"robustness": found}


# --- helpers of the read-only stages ------------------------------------------------------


def configured_schema(config: ProjectConfig) -> Any:
    """The hand-edited schema of ``keel.yaml``'s ``schema:``, with the config's roles."""
    from keel.data import Schema, read_schema

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


def check_fairness_config(
    config: ProjectConfig, frame: pd.DataFrame, task: str, features: list[str]
) -> None:
    """Mitigation fits the task and has what it needs; binned features are numeric.

    That every sensitive feature is a column was checked at ingest (check_columns).
    """
    from keel.families.tabular.responsible import BINARY_ONLY, NEEDS_SENSITIVE_AT_PREDICTION
    from keel.tasks import get_task

    fairness = config.fairness
    method = fairness.mitigation
    if method != "none" and not config.sensitive_features:
        raise DataError(f"key 'fairness.mitigation': {method} needs sensitive_features")
    kind = get_task(task)
    if method == "reweighing" and not kind.labelled_classes:
        raise DataError(
            "key 'fairness.mitigation': reweighing balances groups across labels, so it needs"
            " a classification task; this target is a regression one"
        )
    if method in BINARY_ONLY and not kind.thresholded:
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
    from pandas.api.types import is_numeric_dtype

    for name in config.fairness.bins:
        if name not in config.sensitive_features:
            raise DataError(
                f"key 'fairness.bins': {name!r} is not one of sensitive_features"
                f" ({', '.join(config.sensitive_features) or 'none'})"
            )
        if not is_numeric_dtype(frame[name]):
            raise DataError(
                f"key 'fairness.bins': {name!r} is not numeric, so it cannot be binned;"
                " remove its bins (each value is its own group)"
            )


def before_and_after(
    unmitigated: Any,
    before: Any,
    found: Any,
    test_metrics: dict[str, float],
    test_rows: pd.DataFrame,
    schema: Any,
    labels: Any,
    config: ProjectConfig,
    cut: float | None,
) -> dict[str, Any]:
    """Test metrics and fairness measures of the model without and with mitigation."""
    from keel.families.tabular.responsible import BINARY_ONLY, NEEDS_SENSITIVE_AT_PREDICTION
    from keel.families.tabular.training import predict_with

    predictions, proba, classes = predict_with(
        unmitigated, test_rows[schema.feature_names], labels.task, cut, labels.positive_class
    )
    metrics = labels.kind.metrics.exact(
        labels.kind.truth(test_rows[config.target]),
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
            "fairness": {f: r["measures"] for f, r in found.features.items()},
            "passed": found.passed,
        },
    }


def assessment_document(values: Any) -> dict[str, Any]:
    """The report's ``assessment`` section, from the stages' outputs."""
    doc = {
        **values["assessment"].to_dict(),
        "behaviour": values["behaviour"],
        "shipped": values["shipped_fit"],
        "feature_tests": values["feature_tests"],
    }
    if values["fairness"] is not None:
        doc["fairness"] = values["fairness"].to_dict()
    if values["mitigation"] is not None:
        doc["mitigation"] = values["mitigation"]
    doc["explanations"] = values["explanations"]
    if values["robustness"] is not None:
        doc["robustness"] = values["robustness"]
    return doc


def _reading_stages() -> list[Stage]:
    """Reading, checking, splitting, leakage, profiling, tuning and training."""
    any_ = object
    return [
        Stage(
            "ingest",
            ingest,
            inputs=("extra_rows",),
            outputs={"raw": any_},
            reads=(
                "data",
                "target",
                "sensitive_features",
                "ignore_columns",
                "time_column",
                "group_column",
            ),
            code=DATA,
            fingerprint=source_fingerprint,
            persist=False,  # rows before PII redaction never reach the disk
        ),
        Stage(
            "pii",
            pii,
            inputs=("raw",),
            outputs={"dataset": any_, "pii_report": any_},
            reads=("pii",),
            code=DATA,
        ),
        Stage(
            "validate",
            validate,
            inputs=("dataset",),
            outputs={"frame": DATA_FRAME, "labels": any_, "schema": any_},
            reads=(
                "schema_file",
                "target",
                "task",
                "positive_class",
                "metric",
                "ignore_columns",
                "time_column",
                "group_column",
                "pii.columns",
                "behaviour",
                "fairness",
                "sensitive_features",
            ),
            code=(*DATA, "keel.families.tabular.training", "keel.families.tabular.responsible"),
            fingerprint=schema_fingerprint,  # the schema file's content, not only its name
        ),
        Stage(
            "split",
            split,
            inputs=("frame", "labels", "schema"),
            outputs={"splits": any_},
            reads=("split", "seed", "target", "time_column", "group_column"),
            code=DATA,
        ),
        Stage(
            "leakage",
            leakage,
            inputs=("splits", "schema", "labels"),
            outputs={"feature_scores": list},
            reads=("target", "leakage_threshold"),
            code=DATA,
        ),
        Stage(
            "profile",
            profile,
            inputs=("splits", "schema"),
            outputs={"profile": dict},
            code=DATA,
        ),
        Stage(
            "tune",
            tune,
            inputs=("splits", "schema", "labels", "fixed_params"),
            outputs={"tuned": dict},
            reads=(
                "candidates",
                "budget",
                "trials",
                "ensemble",
                "seed",
                "cv_folds",
                "time_column",
                "group_column",
            ),
            code=LEARN,
        ),
        Stage(
            "train",
            train,
            inputs=("splits", "schema", "labels", "tuned", "fixed_params"),
            outputs={"trained": list, "best": any_},
            reads=("candidates", "seed"),
            code=LEARN,
        ),
    ]


def _judging_stages() -> list[Stage]:
    """Evaluation and the responsible-AI stages, then the ones that record (register on)."""
    from keel.families.tabular import record

    any_ = object
    return [
        Stage(
            "evaluate",
            evaluate,
            inputs=("trained", "best", "tuned", "splits", "schema", "labels"),
            outputs={
                "feature_tests": list,
                "assessment": any_,
                "shipped": any_,
                "behaviour": list,
                "shipped_fit": dict,
                "all_test": dict,
            },
            reads=(
                "cv_folds",
                "seed",
                "gate_margin",
                "sensitive_features",
                "time_column",
                "group_column",
                "threshold_objective",
                "fairness",
                "final_fit",
                "behaviour",
                "target",
            ),
            code=JUDGE,
        ),
        Stage(
            "fairness",
            fairness,
            inputs=("assessment", "best", "splits", "schema", "labels"),
            outputs={"fairness": any_, "mitigation": (dict, type(None))},
            reads=("sensitive_features", "fairness", "seed", "threshold_objective", "target"),
            code=JUDGE,
        ),
        Stage(
            "explain",
            explain,
            inputs=("assessment", "splits", "schema", "labels"),
            outputs={"explanations": dict, "background": DATA_FRAME},
            reads=("seed",),
            code=JUDGE,
        ),
        Stage(
            "robustness",
            robustness,
            inputs=("assessment", "splits", "schema", "labels"),
            outputs={"robustness": (dict, type(None))},
            reads=("seed", "robustness"),
            code=JUDGE,
        ),
        *record.STAGES,
    ]


def _graph() -> Graph:
    sources = ("extra_rows", "fixed_params", "run_tags")
    return Graph([*_reading_stages(), *_judging_stages()], sources=sources)


LIFECYCLE = _graph()
"""The stage graph of ``keel run``: checked when this module is imported."""

STAGES = tuple(LIFECYCLE.names)
READ_ONLY_UNTIL = "robustness"
