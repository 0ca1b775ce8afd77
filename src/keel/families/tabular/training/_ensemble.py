"""The ``ensemble`` candidate: greedy selection over tuned candidates' out-of-fold scores.

Tuning keeps the out-of-fold predictions of each tuned candidate's best few trials
(raw scores — log-odds — for classifiers, values for regressors). Caruana's greedy
selection (:func:`keel.evaluation.ensemble_selection`) picks weights on them; the
result is a :class:`keel.estimators.EnsembleClassifier` (or ``Regressor``) of those
trials' configurations behind one shared preprocessor, trained and scored on
validation like any candidate, and chosen only if it wins there.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from keel.config import ENSEMBLE
from keel.data import LabelInfo, Schema
from keel.families.tabular.features import build_preprocessor
from keel.families.tabular.training._candidates import configured_estimator, preprocessing_of
from keel.families.tabular.training._tuning import Trial, TuningResult, fold_indices
from keel.tasks import fast_metrics, get_task


def make_ensemble(spec: dict[str, Any], task: str, schema: Schema, seed: int) -> Pipeline:
    """The unfitted ensemble pipeline described by ``spec`` (``{"members": [...]}``).

    Each member is ``{"name", "candidate", "params", "weight"}``; the members share
    one preprocessor, so they must all want the same (scaled or not) inputs.
    """
    from keel.estimators import EnsembleClassifier, EnsembleRegressor

    members = spec.get("members") or []
    if len(members) < 1:
        raise ValueError("an ensemble needs at least one member")
    estimators, kinds = [], set()
    for member in members:
        params = member.get("params") or {}
        estimator = configured_estimator(member["candidate"], task, schema, seed, params)
        estimators.append((member["name"], estimator))
        kinds.add(preprocessing_of(member["candidate"], task, schema, params))
    if len(kinds) > 1:
        raise ValueError("ensemble members must all take the same preprocessing")
    scale, native = kinds.pop()
    kind = EnsembleRegressor if not get_task(task).labelled_classes else EnsembleClassifier
    model = kind(estimators, [float(m["weight"]) for m in members])
    preprocess = build_preprocessor(schema, scale, native_categories=native)
    return Pipeline([("preprocess", preprocess), ("model", model)])


def ensemble_members(
    tuned: dict[str, TuningResult], top: int, greater_is_better: bool
) -> dict[str, tuple[str, dict[str, Any], np.ndarray]]:
    """Label → (candidate, params, out-of-fold outputs) of each candidate's best trials."""
    sign = 1.0 if greater_is_better else -1.0
    found: dict[str, tuple[str, dict[str, Any], np.ndarray]] = {}
    for name, result in tuned.items():
        if name == ENSEMBLE:
            continue
        kept = [
            t
            for t in result.trials
            if t.outputs is not None and t.score is not None and np.isfinite(t.score)
        ]
        kept.sort(key=lambda t: -sign * t.score)
        for rank, trial in enumerate(kept[:top]):
            label = name if rank == 0 else f"{name}-{rank + 1}"
            found[label] = (name, dict(trial.params), trial.outputs)
    return found


def _scorer(task: str, truth: np.ndarray, classes: list[str], positive: Any, metric: str) -> Any:
    from keel.estimators import margin_to_proba

    def score(values: np.ndarray) -> float:
        if not get_task(task).labelled_classes:
            found = fast_metrics(task, truth, values)
        else:
            proba = margin_to_proba(values)
            predicted = np.asarray(classes)[proba.argmax(axis=1)]
            found = fast_metrics(task, truth, predicted, proba, classes, positive)
        return float(found.get(metric, np.nan))

    return score


def select_ensemble(
    tuned: dict[str, TuningResult],
    frame: pd.DataFrame,
    schema: Schema,
    labels: LabelInfo,
    n_splits: int,
    seed: int,
    top: int = 3,
    rounds: int = 25,
    time_column: str | None = None,
    group_column: str | None = None,
) -> TuningResult | None:
    """Greedy ensemble selection over the tuned trials' out-of-fold outputs.

    Returns the ``ensemble`` candidate's tuning result — its spec as ``best_params``
    (what ``keel reproduce`` passes back), its out-of-fold score, and each fold's
    metrics of the weighted outputs (its cross-validation, with weights chosen on
    the same rows: slightly optimistic) — or None when fewer than two trials kept
    their outputs or the selection keeps a single model (which is then a candidate
    already).
    """
    from keel.evaluation import ensemble_selection

    started = time.perf_counter()
    spec_metric = labels.primary
    members = ensemble_members(tuned, top, spec_metric.greater_is_better)
    # the members share one preprocessor: keep those that take the best candidate's
    sign = 1.0 if spec_metric.greater_is_better else -1.0
    scored = [r for n, r in tuned.items() if n != ENSEMBLE and r.best_score is not None]
    if scored:
        leader = max(scored, key=lambda r: sign * r.best_score)
        wanted = preprocessing_of(leader.name, labels.task, schema, leader.best_params)
        members = {
            label: found
            for label, found in members.items()
            if preprocessing_of(found[0], labels.task, schema, found[1]) == wanted
        }
    if len(members) < 2:
        return None
    stacked = [outputs for _, _, outputs in members.values()]
    covered = np.ones(len(frame), dtype=bool)
    for outputs in stacked:
        covered &= ~np.isnan(outputs.reshape(len(frame), -1)).any(axis=1)
    if covered.sum() < 2:
        return None
    truth_all = np.asarray(labels.kind.truth(frame[schema.target]))
    classes = (
        [] if not get_task(labels.task).labelled_classes else sorted(map(str, np.unique(truth_all)))
    )
    if get_task(labels.task).labelled_classes:
        truth_all = truth_all.astype(str)
    task, positive, metric = labels.task, labels.positive_class, spec_metric.name
    score = _scorer(task, truth_all[covered], classes, positive, metric)
    selection = ensemble_selection(
        {label: outputs[covered] for label, (_, _, outputs) in members.items()},
        score,
        spec_metric.greater_is_better,
        rounds,
    )
    if len(selection.members) < 2:
        return None
    spec = {
        "members": [
            {
                "name": label,
                "candidate": members[label][0],
                "params": members[label][1],
                "weight": selection.weights[label],
            }
            for label in selection.members
        ],
        "best_single": selection.best_single,
        "best_single_score": selection.best_single_score,
    }
    combined = sum(selection.weights[label] * members[label][2] for label in selection.members)
    folds = fold_indices(frame, truth_all, task, n_splits, seed, time_column, group_column)
    per_fold = []
    for _, held in folds:
        rows = held[covered[held]]
        if len(rows) == 0:
            continue
        per_fold.append(_fold_scores(task, truth_all[rows], combined[rows], classes, positive))
    scores = [f.get(metric, np.nan) for f in per_fold]
    seconds = time.perf_counter() - started
    trial = Trial(0, spec, "complete", selection.score, scores, seconds, per_fold)
    return TuningResult(ENSEMBLE, metric, spec, selection.score, [trial], seconds)


def _fold_scores(
    task: str, truth: np.ndarray, values: np.ndarray, classes: list[str], positive: Any
) -> dict[str, float]:
    from keel.estimators import margin_to_proba
    from keel.tasks import compute_metrics

    if not get_task(task).labelled_classes:
        return compute_metrics(task, truth, values)
    proba = margin_to_proba(values)
    predicted = np.asarray(classes)[proba.argmax(axis=1)]
    return compute_metrics(task, truth, predicted, proba, classes, positive)
