"""Candidate models: each one a scikit-learn Pipeline with its preprocessing inside."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from keel.config import BASELINE_NAMES, CANDIDATES, ENSEMBLE
from keel.data import LabelInfo, Schema, Splits
from keel.evaluation import MetricSpec, is_better
from keel.families.tabular.features import build_preprocessor, categorical_positions
from keel.tasks import get_task

# keel.yaml's candidates that build on their own (an ensemble is built from its spec)
CANDIDATE_FACTORIES: tuple[str, ...] = tuple(c for c in CANDIDATES if c != ENSEMBLE)
BASELINES: tuple[str, ...] = BASELINE_NAMES


# candidates that can split on categories themselves: tuning chooses, per run, whether
# their string features stay one column of codes each (ENCODING: "native") or become
# one-hot columns ("one_hot", the default: on small samples it overfits less)
NATIVE_CATEGORICAL: frozenset[str] = frozenset({"lightgbm"})
ENCODING = "categories"  # the hyper-parameter that is the preprocessing's, not the model's
ENCODINGS: tuple[str, ...] = ("one_hot", "native")


def preprocessing_of(
    name: str, task: str, schema: Schema, params: dict[str, Any] | None = None
) -> tuple[bool, bool]:
    """``(scaled numbers, native categories)``: the preprocessing candidate ``name`` takes."""
    _, scale = get_task(task).estimator(name, 0)
    return scale, _native(name, schema, params)


def _native(name: str, schema: Schema, params: dict[str, Any] | None) -> bool:
    return (
        name in NATIVE_CATEGORICAL
        and (params or {}).get(ENCODING) == "native"
        and bool(categorical_positions(schema))
    )


def build_candidate(
    name: str, task: str, schema: Schema, seed: int, params: dict[str, Any] | None = None
) -> Pipeline:
    """Candidate ``name``'s unfitted pipeline with hyper-parameters ``params`` applied.

    ``params`` are the model's, plus ``categories`` (``one_hot`` or ``native``) for a
    candidate in ``NATIVE_CATEGORICAL``.
    """
    if name not in CANDIDATE_FACTORIES:
        raise ValueError(f"unknown candidate {name!r}; known: {', '.join(CANDIDATE_FACTORIES)}")
    estimator, scale = get_task(task).estimator(name, seed)
    native = _native(name, schema, params)
    return Pipeline(
        [
            ("preprocess", build_preprocessor(schema, scale, native_categories=native)),
            ("model", _configured(estimator, schema, params, native)),
        ]
    )


def configured_estimator(
    name: str, task: str, schema: Schema, seed: int, params: dict[str, Any] | None = None
) -> Any:
    """Candidate ``name``'s estimator with ``params`` (told which columns are codes)."""
    estimator, _ = get_task(task).estimator(name, seed)
    return _configured(estimator, schema, params, _native(name, schema, params))


def _configured(estimator: Any, schema: Schema, params: dict | None, native: bool) -> Any:
    model_params = {k: v for k, v in (params or {}).items() if k != ENCODING}
    if model_params:
        estimator.set_params(**model_params)
    if native:
        estimator.set_params(categorical_feature=categorical_positions(schema))
    return estimator


def make_pipeline(name: str, task: str, schema: Schema, seed: int) -> Pipeline:
    """Return the unfitted pipeline (preprocessing + estimator) of candidate ``name``."""
    return build_candidate(name, task, schema, seed)


@dataclass
class TrainedCandidate:
    """A fitted candidate and how it did on the validation rows."""

    name: str
    pipeline: Pipeline = field(repr=False)
    params: dict[str, Any]
    fit_seconds: float
    validation_metrics: dict[str, float]

    @property
    def primary(self) -> float:
        """Value of the task's primary metric on validation (NaN when undefined)."""
        return self.validation_metrics.get(self._primary_name, float("nan"))

    _primary_name: str = field(default="", repr=False)


def predict_with(
    pipeline: Pipeline,
    frame: pd.DataFrame,
    task: str,
    threshold: float | None = None,
    positive_class: str | None = None,
):
    """Return ``(predictions, probabilities or None, classes)`` for ``frame``.

    With ``threshold`` (binary), the predictions are the decisions at that threshold
    on ``positive_class``'s probability — what serving answers — not ``predict``'s 0.5.
    A model that decides itself (fairness mitigation, ``keel.estimators``) is asked
    for its decisions.
    """
    return get_task(task).predict(pipeline, frame, threshold, positive_class)


def evaluate_pipeline(
    pipeline: Pipeline, frame: pd.DataFrame, schema: Schema, labels: LabelInfo
) -> dict[str, float]:
    """Metrics of a fitted pipeline on ``frame`` (which holds the target)."""
    predictions, proba, classes = predict_with(pipeline, frame[schema.feature_names], labels.task)
    return labels.kind.metrics.exact(
        frame[schema.target].to_numpy(),
        predictions,
        proba=proba,
        classes=classes,
        positive_class=labels.positive_class,
    )


def train_candidates(
    names: Sequence[str],
    splits: Splits,
    schema: Schema,
    labels: LabelInfo,
    seed: int,
    on_candidate: Callable[[str], None] | None = None,
    params: dict[str, dict[str, Any]] | None = None,
) -> list[TrainedCandidate]:
    """Fit every named candidate on the train rows and score it on validation.

    ``params`` overrides hyper-parameters per candidate (the tuned ones).
    """
    x_train = splits.train[schema.feature_names]
    y_train = labels.kind.truth(splits.train[schema.target])
    trained = []
    for name in names:
        overrides = (params or {}).get(name) or {}
        if name == ENSEMBLE:
            if not overrides.get("members"):
                continue  # no ensemble was selected (nothing tuned, or one model won)
            from keel.families.tabular.training._ensemble import make_ensemble

            if on_candidate is not None:
                on_candidate(f"{name} of {', '.join(m['name'] for m in overrides['members'])}")
            pipeline = make_ensemble(overrides, labels.task, schema, seed)
            overrides = {}
        else:
            if on_candidate is not None:
                on_candidate(name)
            pipeline = build_candidate(name, labels.task, schema, seed, overrides)
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)
            pipeline.fit(x_train, y_train)
        seconds = time.perf_counter() - started
        metrics = evaluate_pipeline(pipeline, splits.validation, schema, labels)
        fitted_params = model_params(pipeline.named_steps["model"])
        if name in NATIVE_CATEGORICAL and categorical_positions(schema):
            fitted_params.pop("categorical_feature", None)
            native = _native(name, schema, overrides)
            fitted_params[ENCODING] = "native" if native else "one_hot"
        candidate = TrainedCandidate(
            name=name,
            pipeline=pipeline,
            params=fitted_params,
            fit_seconds=seconds,
            validation_metrics=metrics,
            _primary_name=labels.primary.name,
        )
        trained.append(candidate)
    return trained


def model_params(model: Any) -> dict[str, Any]:
    """A fitted model's plain hyper-parameters; an ensemble's per member, with weights."""
    members = getattr(model, "members_", None)
    if members is None:
        return {
            k: v
            for k, v in model.get_params().items()
            if isinstance(v, str | int | float | bool) or v is None
        }
    out: dict[str, Any] = {}
    for (label, member), weight in zip(members, model.weights_, strict=True):
        out[f"{label}.weight"] = round(float(weight), 6)
        out |= {f"{label}.{k}": v for k, v in model_params(member).items()}
    return out


def select_best(
    candidates: Sequence[TrainedCandidate], metric: str | MetricSpec
) -> TrainedCandidate:
    """The candidate with the best validation primary metric (first one wins ties).

    ``metric`` is the primary metric's spec, or a task name for its default metric.
    """
    spec = metric if isinstance(metric, MetricSpec) else get_task(metric).primary()
    if not candidates:
        raise ValueError("no candidates were trained")
    best = candidates[0]
    for candidate in candidates[1:]:
        value = candidate.primary
        if not np.isnan(value) and is_better(spec, value, best.primary):
            best = candidate
    return best
