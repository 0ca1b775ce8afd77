"""Bias mitigation: the shipped model made fairer before, during or after fitting.

Each method is a *fitter*: given the chosen pipeline (its hyper-parameters) and the
rows it is to learn from, it returns the fitted, mitigated model. Keel's assessment
calls it wherever the plain model would be fitted (train + validation; every row with
``final_fit: all_rows``), so the test metrics, the gate, the fairness report and the
package all describe the mitigated model.

- ``reweighing`` (pre-processing): Kamiran & Calders weights per (group, label) cell.
- ``exponentiated_gradient`` (in-processing): fairlearn's reduction; a weighted
  mixture of models, each fitted on reweighted rows, meeting the constraint.
- ``threshold_optimizer`` (post-processing): fairlearn's per-group thresholds on the
  model's score, fitted on out-of-fold scores of the same rows (so that the scores
  look like those of unseen rows), on top of the model fitted on all of them.

fairlearn's mitigated classifiers decide at random; Keel keeps their probabilities
and draws each row's coin from its values (``keel.estimators.row_coins``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import Pipeline

from keel._groups import group_keys
from keel.estimators import GroupThresholdClassifier, MixtureClassifier
from keel.families.tabular.responsible._fairness import reweighing_weights

Fitter = Callable[[Any, pd.DataFrame], Any]
"""(unfitted pipeline, rows holding features and target) → fitted model."""

NEEDS_SENSITIVE_AT_PREDICTION = ("threshold_optimizer",)
BINARY_ONLY = ("exponentiated_gradient", "threshold_optimizer")


def mitigation_fitter(
    method: str,
    *,
    target: str,
    features: Sequence[str],
    sensitive: Sequence[str],
    edges: dict[str, list[float]],
    positive_class: Any = None,
    constraint: str = "demographic_parity",
    iterations: int = 50,
    folds: int = 5,
    seed: int = 0,
    min_group_size: int = 30,
) -> Fitter | None:
    """The fitter for ``fairness.mitigation``; ``None`` for ``none``."""
    sensitive, features = list(sensitive), list(features)
    if method == "none":
        return None
    if method == "reweighing":

        def reweighed(pipeline: Any, rows: pd.DataFrame) -> Any:
            model = clone(pipeline)
            weights = reweighing_weights(rows, target, sensitive, edges)
            model.fit(rows[features], rows[target].to_numpy(), model__sample_weight=weights)
            return model

        return reweighed
    if method == "exponentiated_gradient":
        return lambda pipeline, rows: fit_exponentiated_gradient(
            pipeline,
            rows[features],
            rows[target].to_numpy(),
            group_keys(rows, sensitive, edges),
            positive_class,
            constraint,
            iterations,
        )
    if method == "threshold_optimizer":
        return lambda pipeline, rows: fit_threshold_optimizer(
            pipeline,
            rows[features],
            rows[target].to_numpy(),
            sensitive,
            edges,
            positive_class,
            constraint,
            folds,
            seed,
            min_group_size,
        )
    raise ValueError(f"unknown mitigation {method!r}")


def _moment(constraint: str) -> Any:
    from fairlearn import reductions

    return {
        "demographic_parity": reductions.DemographicParity,
        "equalized_odds": reductions.EqualizedOdds,
        "true_positive_rate_parity": reductions.TruePositiveRateParity,
        "false_positive_rate_parity": reductions.FalsePositiveRateParity,
    }[constraint]()


def fit_exponentiated_gradient(
    pipeline: Any,
    x: pd.DataFrame,
    y: np.ndarray,
    groups: pd.Series,
    positive_class: Any,
    constraint: str = "demographic_parity",
    iterations: int = 50,
) -> Pipeline:
    """Fit fairlearn's ``ExponentiatedGradient`` around the pipeline's model.

    The preprocessing is fitted once (it does not depend on the weights) and the
    reduction runs on its output, so every fit inside it is of the bare model — which
    takes ``sample_weight`` directly. Returns ``Pipeline(preprocess, MixtureClassifier)``.
    """
    from fairlearn.reductions import ExponentiatedGradient

    preprocess = clone(pipeline.named_steps["preprocess"]).fit(x)
    matrix = preprocess.transform(x)
    reduction = ExponentiatedGradient(
        clone(pipeline.named_steps["model"]), _moment(constraint), max_iter=iterations
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reduction.fit(
            matrix, (y == positive_class).astype(int), sensitive_features=groups.to_numpy()
        )
    weights = np.asarray(reduction.weights_, dtype=float)
    members = list(reduction.predictors_)
    kept = [i for i, w in enumerate(weights) if w > 0]
    mixture = MixtureClassifier(
        members=[members[i] for i in kept],
        weights=weights[kept] / weights[kept].sum(),
        classes=np.unique(y),
        positive_class=positive_class,
    )
    return Pipeline([("preprocess", preprocess), ("model", mixture)])


class _ScoreColumn(BaseEstimator):
    """Hands fairlearn precomputed scores: ``predict(X)`` is ``X["score"]``."""

    def fit(self, X: pd.DataFrame, y: Any = None) -> _ScoreColumn:  # noqa: N803
        return self

    def __sklearn_is_fitted__(self) -> bool:
        return True

    def predict(self, X: pd.DataFrame) -> np.ndarray:  # noqa: N803
        return X["score"].to_numpy()


def fit_threshold_optimizer(
    pipeline: Any,
    x: pd.DataFrame,
    y: np.ndarray,
    sensitive: Sequence[str],
    edges: dict[str, list[float]],
    positive_class: Any,
    constraint: str = "demographic_parity",
    folds: int = 5,
    seed: int = 0,
    min_group_size: int = 30,
) -> GroupThresholdClassifier:
    """Fit fairlearn's ``ThresholdOptimizer`` on the pipeline's out-of-fold scores.

    The base model is fitted on every row; the thresholds on scores of rows the model
    producing them had not seen (``folds``-fold cross-fitting), since in-sample scores
    are over-confident and would put every threshold in the wrong place. A group with
    fewer than ``min_group_size`` rows, or without rows of both labels, gets no
    threshold of its own (fairlearn cannot place one): the base model decides it at
    0.5, and the model lists it in ``unadjusted``.
    """
    from fairlearn.postprocessing import ThresholdOptimizer

    base = clone(pipeline).fit(x, y)
    column = list(base.classes_).index(positive_class)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        oof = cross_val_predict(clone(pipeline), x, y, cv=splitter, method="predict_proba")
        optimizer = ThresholdOptimizer(
            estimator=_ScoreColumn(),
            constraints=constraint,
            objective="accuracy_score",
            prefit=True,
            predict_method="predict",
        )
        keys = group_keys(x, sensitive, edges).to_numpy()
        positive = (y == positive_class).astype(int)
        unadjusted = _unadjustable(keys, positive, min_group_size)
        kept = ~np.isin(keys, list(unadjusted))
        if not kept.any():
            raise ValueError(
                "threshold_optimizer: no sensitive group has enough rows of both labels"
                f" (at least {min_group_size} rows each); {unadjusted}"
            )
        optimizer.fit(
            pd.DataFrame({"score": oof[kept, column]}),
            positive[kept],
            sensitive_features=keys[kept],
        )
    rules = {
        str(key): _rule(bunch)
        for key, bunch in optimizer.interpolated_thresholder_.interpolation_dict.items()
    }
    return GroupThresholdClassifier(
        estimator=base,
        sensitive=list(sensitive),
        edges={k: list(v) for k, v in edges.items() if k in sensitive},
        rules=rules,
        positive_class=positive_class,
        unadjusted=unadjusted,
    )


def _unadjustable(keys: np.ndarray, positive: np.ndarray, minimum: int) -> dict[str, str]:
    """Groups too small, or without both labels, for a threshold of their own."""
    out = {}
    for key in sorted(set(keys.tolist())):
        rows = keys == key
        n, n_positive = int(rows.sum()), int(positive[rows].sum())
        if n < minimum:
            out[key] = f"{n} rows (fewer than {minimum})"
        elif n_positive in (0, n):
            out[key] = f"all {n} rows have the same label"
    return out


def _rule(bunch: Any) -> dict[str, Any]:
    """Return fairlearn's interpolation as plain numbers and strings (safe to save)."""
    rule = {
        "p0": float(bunch.p0),
        "op0": bunch.operation0.operator,
        "t0": float(bunch.operation0.threshold),
        "p1": float(bunch.p1),
        "op1": bunch.operation1.operator,
        "t1": float(bunch.operation1.threshold),
    }
    if "p_ignore" in bunch:
        rule["p_ignore"] = float(bunch.p_ignore)
        rule["constant"] = float(bunch.prediction_constant)
    return rule


__all__ = [
    "BINARY_ONLY",
    "NEEDS_SENSITIVE_AT_PREDICTION",
    "Fitter",
    "fit_exponentiated_gradient",
    "fit_threshold_optimizer",
    "mitigation_fitter",
]
