"""Estimator classes that Keel's saved models refer to by import path.

A model package stores the path of every class it holds (``keel.estimators.X``), so
the names here are part of the package format: keep them importable. This module
sits outside the layers: serving loads models that contain these classes without
importing training code.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, clone
from sklearn.utils import get_tags
from sklearn.utils.validation import check_is_fitted, validate_data
from xgboost import XGBClassifier

from keel._groups import group_keys

__all__ = [
    "EnsembleClassifier",
    "EnsembleRegressor",
    "GroupThresholdClassifier",
    "LabelledXGBClassifier",
    "MixtureClassifier",
    "decides_itself",
    "margin",
    "margin_to_proba",
    "row_coins",
]


class LabelledXGBClassifier(XGBClassifier):
    """XGBoost's classifier, accepting any class labels.

    XGBoost only takes the labels ``0..k-1``; this subclass encodes the labels it is
    fitted on and gives them back from ``predict`` and ``classes_``, like every other
    scikit-learn classifier. Hyper-parameters are XGBoost's own.
    """

    def fit(self, X: Any, y: Any, **kwargs: Any) -> LabelledXGBClassifier:  # noqa: N803
        """Fit on ``y`` encoded as ``0..k-1``; remember the labels."""
        labels, codes = np.unique(np.asarray(y), return_inverse=True)
        self.labels_ = None  # XGBoost reads classes_ as codes while fitting
        objective = self.objective
        super().fit(X, codes, **kwargs)
        # XGBoost writes the objective it chose (multi:softprob for k > 2 classes) back into
        # the parameter; the estimator contract keeps parameters as given (clone, search).
        # The booster keeps its own objective, so predictions do not depend on it.
        self.objective = objective
        self.labels_ = labels
        return self

    @property
    def classes_(self) -> np.ndarray:
        """The class labels, in the order of ``predict_proba``'s columns."""
        labels = getattr(self, "labels_", None)
        return np.arange(self.n_classes_) if labels is None else labels

    def predict(self, X: Any, **kwargs: Any) -> np.ndarray:  # noqa: N803
        """Most likely label of each row (the raw margin with ``output_margin=True``)."""
        raw = super().predict(X, **kwargs)
        if kwargs.get("output_margin"):
            return raw
        return self.classes_[np.asarray(raw, dtype=int)]


def row_coins(X: Any) -> np.ndarray:  # noqa: N803
    """A number in [0, 1) per row, fixed by the row's values (a hash).

    fairlearn's mitigated classifiers are randomised: a row is positive with
    probability ``p``. Keel draws that coin from the row itself, so the decisions keep
    the randomised classifier's group rates while the same input always gets the same
    answer (in evaluation, in serving, in a retried request).
    """
    frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(np.asarray(X))
    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy(dtype=np.uint64)
    return (hashed >> np.uint64(11)).astype(float) / float(2**53)


def decides_itself(model: Any) -> bool:
    """Whether ``model`` makes its own (randomised) decisions instead of a threshold.

    Such models' ``predict`` is the decision; ``predict_proba`` the probability of the
    positive decision. Looks inside a scikit-learn ``Pipeline`` too.
    """
    steps = getattr(model, "named_steps", None)
    inner = steps["model"] if steps is not None and "model" in steps else model
    return bool(getattr(inner, "decides_itself", False) or getattr(model, "decides_itself", False))


class _RandomisedBinary(ClassifierMixin, BaseEstimator):
    """A binary classifier deciding "positive" with a per-row probability (see row_coins).

    ``predict_proba`` is the model's *score* (what ranking, calibration and explanations
    read); ``decision_probability`` the probability that the mitigated, randomised rule
    says "positive"; ``predict`` that rule's decision, with the row's own coin.
    """

    decides_itself = True

    def __sklearn_is_fitted__(self) -> bool:
        """Built from fitted parts, never fitted itself."""
        return True

    def _score(self, X: Any) -> np.ndarray:  # noqa: N803
        raise NotImplementedError

    def decision_probability(self, X: Any) -> np.ndarray:  # noqa: N803
        """Probability of a positive decision per row (fairlearn's ``_pmf_predict``)."""
        raise NotImplementedError

    def predict_proba(self, X: Any) -> np.ndarray:  # noqa: N803
        """The score: probability of each class, columns in ``classes_`` order."""
        p = np.clip(self._score(X), 0.0, 1.0)
        column = list(self.classes_).index(self.positive_class)
        out = np.empty((len(p), 2))
        out[:, column], out[:, 1 - column] = p, 1.0 - p
        return out

    def predict(self, X: Any) -> np.ndarray:  # noqa: N803
        """Positive where the row's coin falls below its probability of a positive."""
        p = self.decision_probability(X)
        negative = next(c for c in self.classes_ if c != self.positive_class)
        return np.where(p > row_coins(X), self.positive_class, negative)


class MixtureClassifier(_RandomisedBinary):
    """fairlearn's ``ExponentiatedGradient`` result, in a form a model package can hold.

    ``members`` are binary classifiers fitted on the labels 0/1 (1 = ``positive_class``);
    a row is positive with probability ``sum(weights[i] * members[i].predict(x) == 1)``
    — fairlearn's ``_pmf_predict`` — and the coin comes from the row (``row_coins``).
    Its score (``predict_proba``) is the members' probabilities averaged with the same
    weights.
    """

    def __init__(
        self,
        members: list[Any] | None = None,
        weights: Any = None,
        classes: Any = None,
        positive_class: Any = None,
    ) -> None:
        self.members = members
        self.weights = weights
        self.classes = classes
        self.positive_class = positive_class

    @property
    def classes_(self) -> np.ndarray:
        """The two class labels, in ``predict_proba``'s column order."""
        return np.asarray(self.classes)

    def fit(self, X: Any, y: Any) -> MixtureClassifier:  # noqa: N803
        """Not fitted here: built from a fitted ``ExponentiatedGradient``."""
        raise TypeError("MixtureClassifier is built from a fitted ExponentiatedGradient")

    def decision_probability(self, X: Any) -> np.ndarray:  # noqa: N803
        """``sum(weights[i] * (members[i].predict(x) == 1))``, fairlearn's rule."""
        votes = np.column_stack([np.asarray(m.predict(X), dtype=float) for m in self.members])
        return votes @ np.asarray(self.weights, dtype=float)

    def _score(self, X: Any) -> np.ndarray:  # noqa: N803
        """The members' probabilities of a positive, averaged with the same weights."""
        soft = np.column_stack([m.predict_proba(X)[:, 1] for m in self.members])
        return soft @ np.asarray(self.weights, dtype=float)


class GroupThresholdClassifier(_RandomisedBinary):
    """fairlearn's ``ThresholdOptimizer`` result: per-group thresholds on a base model.

    ``rules`` maps a group (``keel._groups.group_keys`` of the ``sensitive`` columns,
    numeric ones binned by ``edges``) to fairlearn's interpolation: with probability
    ``p0`` apply ``score op0 t0``, else ``score op1 t1`` (and, for equalized odds, with
    probability ``p_ignore`` the constant ``constant`` instead). ``score`` is the base
    model's probability of ``positive_class``. A group without a rule — never seen
    while fitting, or listed in ``unadjusted`` (too few rows, or one label only) — is
    decided by the base model at 0.5 (fairlearn would answer "negative" for it).
    The sensitive columns must be among the model's input columns.
    """

    def __init__(
        self,
        estimator: Any = None,
        sensitive: list[str] | None = None,
        edges: dict[str, list[float]] | None = None,
        rules: dict[str, dict[str, Any]] | None = None,
        positive_class: Any = None,
        unadjusted: dict[str, str] | None = None,
    ) -> None:
        self.estimator = estimator
        self.sensitive = sensitive
        self.edges = edges
        self.rules = rules
        self.positive_class = positive_class
        self.unadjusted = unadjusted

    @property
    def classes_(self) -> np.ndarray:
        """The base model's class labels."""
        return self.estimator.classes_

    @property
    def named_steps(self) -> Any:
        """The base pipeline's steps: explanations describe the base model's score."""
        return self.estimator.named_steps

    def fit(self, X: Any, y: Any) -> GroupThresholdClassifier:  # noqa: N803
        """Not fitted here: built from a fitted ``ThresholdOptimizer``."""
        raise TypeError("GroupThresholdClassifier is built from a fitted ThresholdOptimizer")

    def base_scores(self, X: Any) -> np.ndarray:  # noqa: N803
        """The base model's probability of the positive class."""
        proba = self.estimator.predict_proba(X)
        return proba[:, list(self.estimator.classes_).index(self.positive_class)]

    def _score(self, X: Any) -> np.ndarray:  # noqa: N803
        return self.base_scores(X)

    def decision_probability(self, X: Any) -> np.ndarray:  # noqa: N803
        """Apply fairlearn's interpolated thresholds per group; the base at 0.5 elsewhere."""
        score = self.base_scores(X)
        keys = group_keys(X, self.sensitive, self.edges or {}).to_numpy()
        out = (score >= 0.5).astype(float)
        for key, rule in (self.rules or {}).items():
            rows = keys == key
            if not rows.any():
                continue
            s = score[rows]
            p = rule["p0"] * _compare(s, rule["op0"], rule["t0"]) + rule["p1"] * _compare(
                s, rule["op1"], rule["t1"]
            )
            if "p_ignore" in rule:
                p = rule["p_ignore"] * rule["constant"] + (1 - rule["p_ignore"]) * p
            out[rows] = p
        return out


def _compare(score: np.ndarray, operator: str, threshold: float) -> np.ndarray:
    return (score > threshold) if operator == ">" else (score < threshold)


def margin(model: Any, X: Any) -> np.ndarray:  # noqa: N803
    """A classifier's raw score: log-odds of ``classes_[1]`` ``(n,)``, or ``(n, k)`` logits.

    Boosted trees give theirs directly (LightGBM ``raw_score``, XGBoost ``output_margin``,
    scikit-learn's ``decision_function``); any other classifier the logit of its
    clipped probabilities. A ``Pipeline`` transforms ``X`` first.
    """
    steps = getattr(model, "steps", None)
    if steps is not None:
        X = model[:-1].transform(X) if len(steps) > 1 else X  # noqa: N806
        model = steps[-1][1]
    kind = type(model).__module__.split(".")[0]
    if kind == "lightgbm":
        raw = model.predict(X, raw_score=True)
    elif kind == "xgboost" or isinstance(model, LabelledXGBClassifier):
        raw = model.predict(X, output_margin=True)
    elif hasattr(model, "decision_function") and kind == "sklearn":
        raw = model.decision_function(X)
    else:
        p = np.clip(np.asarray(model.predict_proba(X), dtype=float), 1e-12, 1 - 1e-12)
        raw = np.log(p[:, 1] / p[:, 0]) if p.shape[1] == 2 else np.log(p)
    return np.asarray(raw, dtype=float)


def margin_to_proba(raw: np.ndarray) -> np.ndarray:
    """Probabilities from raw scores: the logistic (binary) or softmax (multiclass)."""
    raw = np.asarray(raw, dtype=float)
    if raw.ndim == 1:
        p = 1.0 / (1.0 + np.exp(-raw))
        return np.column_stack([1.0 - p, p])
    shifted = np.exp(raw - raw.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


class _Ensemble(BaseEstimator):
    """A weighted sum of members' outputs (greedy ensemble selection's result).

    ``members`` is a list of ``(name, estimator)``, ``weights`` one number per member
    (members of weight 0 are not fitted). ``fit`` fits a clone of each member; the
    fitted ones are ``members_``, in order, with ``weights_`` summing to 1. Members see
    the ensemble's own input (in Keel, the one preprocessed matrix they share).
    """

    def __init__(self, members: list[tuple[str, Any]] | None = None, weights: Any = None) -> None:
        self.members = members
        self.weights = weights

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> _Ensemble:  # noqa: N803
        """Fit every member that has a weight on ``X``, ``y`` (and ``sample_weight``)."""
        members = list(self.members or [])
        weights = np.asarray(
            self.weights if self.weights is not None else [1.0] * len(members), dtype=float
        )
        if not members or len(weights) != len(members) or (weights < 0).any() or not weights.sum():
            raise ValueError("an ensemble needs members and one non-negative weight each")
        kept = [(m, w) for m, w in zip(members, weights, strict=True) if w > 0]
        tags = self.__sklearn_tags__().input_tags
        X, y = validate_data(  # noqa: N806
            self, X, y, accept_sparse=tags.sparse, ensure_all_finite=not tags.allow_nan
        )
        extra = {} if sample_weight is None else {"sample_weight": sample_weight}
        self.members_ = [
            (name, clone(estimator).fit(X, y, **extra)) for (name, estimator), _ in kept
        ]
        self.weights_ = np.array([w for _, w in kept]) / sum(w for _, w in kept)
        return self

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "members_")

    def __sklearn_tags__(self) -> Any:
        """Inputs every member takes (sparse matrices, missing values) pass through."""
        tags = super().__sklearn_tags__()
        members = [get_tags(m).input_tags for _, m in self.members or []]
        tags.input_tags.sparse = bool(members) and all(m.sparse for m in members)
        tags.input_tags.allow_nan = bool(members) and all(m.allow_nan for m in members)
        return tags

    def _checked(self, X: Any) -> Any:  # noqa: N803
        """``X`` after the fitted check and the same validation as in ``fit``."""
        check_is_fitted(self)
        tags = self.__sklearn_tags__().input_tags
        return validate_data(
            self, X, reset=False, accept_sparse=tags.sparse, ensure_all_finite=not tags.allow_nan
        )


class EnsembleClassifier(ClassifierMixin, _Ensemble):
    """A weighted sum of classifiers' raw scores (log-odds), turned into probabilities.

    Summing log-odds rather than probabilities keeps the ensemble explainable exactly:
    TreeSHAP explains each boosted member's log-odds, and the SHAP values of a weighted
    sum are the weighted sum of the members' values (:func:`margin`). All members
    must be fitted on the same classes.
    """

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> EnsembleClassifier:  # noqa: N803
        """Fit the members; refuse members that disagree on the classes."""
        super().fit(X, y, sample_weight)
        first = [str(c) for c in self.members_[0][1].classes_]
        if any([str(c) for c in m.classes_] != first for _, m in self.members_):
            raise ValueError("the ensemble's members disagree on the classes")
        return self

    @property
    def classes_(self) -> np.ndarray:
        """The members' classes."""
        return np.asarray(self.members_[0][1].classes_)

    def decision_function(self, X: Any) -> np.ndarray:  # noqa: N803
        """Σ weight × member log-odds: ``(n,)`` for two classes, else ``(n, k)``."""
        X = self._checked(X)  # noqa: N806
        total = None
        for (_, member), weight in zip(self.members_, self.weights_, strict=True):
            part = weight * margin(member, X)
            total = part if total is None else total + part
        return total

    def predict_proba(self, X: Any) -> np.ndarray:  # noqa: N803
        """The logistic (softmax) of the summed log-odds, columns in ``classes_`` order."""
        return margin_to_proba(self.decision_function(X))

    def predict(self, X: Any) -> np.ndarray:  # noqa: N803
        """The class of highest probability."""
        best = np.argmax(self.predict_proba(X), axis=1)
        return self.classes_[best]


class EnsembleRegressor(RegressorMixin, _Ensemble):
    """A weighted average of regressors' predictions."""

    def predict(self, X: Any) -> np.ndarray:  # noqa: N803
        """Σ weight × member prediction."""
        X = self._checked(X)  # noqa: N806
        total = np.zeros(X.shape[0])
        for (_, member), weight in zip(self.members_, self.weights_, strict=True):
            total += weight * np.asarray(member.predict(X), dtype=float)
        return total
