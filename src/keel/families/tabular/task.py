"""The three tabular plug-ins: binary, multiclass, regression.

One table of baselines and candidates (a classifier and a regressor each); the
classification tasks share their label handling, folds and leakage probes.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from keel.errors import DataError, did_you_mean
from keel.evaluation import (
    BINARY_DIRECTIONS,
    MULTICLASS_DIRECTIONS,
    REGRESSION_DIRECTIONS,
    MetricSet,
    binary_metrics,
    decide,
    fast_binary,
    fast_multiclass,
    fast_regression,
    multiclass_metrics,
    regression_metrics,
)
from keel.tasks._protocol import Task, register

MAX_CLASSES = 100


def _lightgbm_params(seed: int) -> dict[str, Any]:
    return {
        "n_estimators": 300,
        "learning_rate": 0.05,
        "num_leaves": 31,
        "min_child_samples": 20,
        "subsample": 0.9,
        "subsample_freq": 1,
        "colsample_bytree": 0.9,
        "random_state": seed,
        # One thread: on small machines OpenMP's default threading makes fits and
        # one-row predictions 100x slower as soon as anything else runs.
        "n_jobs": 1,
        "verbose": -1,
    }


def _xgboost_params(seed: int) -> dict[str, Any]:
    return {
        "n_estimators": 300,
        "learning_rate": 0.05,
        "max_depth": 6,
        "min_child_weight": 1.0,
        "subsample": 0.9,
        "colsample_bytree": 0.9,
        "tree_method": "hist",
        "random_state": seed,
        "n_jobs": 1,  # as for LightGBM
        "verbosity": 0,
    }


def _candidates() -> dict[str, tuple[Callable[[int], Any], Callable[[int], Any], bool]]:
    """Name → (classifier(seed), regressor(seed), needs scaled inputs)."""
    from lightgbm import LGBMClassifier, LGBMRegressor
    from sklearn.dummy import DummyClassifier, DummyRegressor
    from sklearn.ensemble import (
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
    from xgboost import XGBRegressor

    from keel.estimators import LabelledXGBClassifier

    hgb = {"max_iter": 300, "learning_rate": 0.05, "early_stopping": False}
    # n_jobs=1 for the same reason as LightGBM: parallelism comes from elsewhere.
    forest = {"n_estimators": 200, "min_samples_leaf": 2, "n_jobs": 1}
    tree = {"max_depth": 4, "min_samples_leaf": 20}
    return {
        "dummy": (
            lambda s: DummyClassifier(strategy="prior", random_state=s),
            lambda s: DummyRegressor(strategy="mean"),
            False,
        ),
        "linear": (
            lambda s: LogisticRegression(max_iter=2000, C=1.0, random_state=s),
            lambda s: Ridge(alpha=1.0, random_state=s),
            True,
        ),
        "shallow_tree": (
            lambda s: DecisionTreeClassifier(**tree, random_state=s),
            lambda s: DecisionTreeRegressor(**tree, random_state=s),
            False,
        ),
        "lightgbm": (
            lambda s: LGBMClassifier(**_lightgbm_params(s)),
            lambda s: LGBMRegressor(**_lightgbm_params(s)),
            False,
        ),
        # XGBoost only takes labels 0..k-1; the subclass encodes and decodes them.
        "xgboost": (
            lambda s: LabelledXGBClassifier(**_xgboost_params(s)),
            lambda s: XGBRegressor(**_xgboost_params(s)),
            False,
        ),
        "hist_gradient_boosting": (
            lambda s: HistGradientBoostingClassifier(**hgb, random_state=s),
            lambda s: HistGradientBoostingRegressor(**hgb, random_state=s),
            False,
        ),
        "random_forest": (
            lambda s: RandomForestClassifier(**forest, random_state=s),
            lambda s: RandomForestRegressor(**forest, random_state=s),
            False,
        ),
    }


def _pick(name: str, column: int, seed: int) -> tuple[Any, bool]:
    # LightGBM warns that a categorical_feature given as a parameter "will be ignored"
    # by fit()'s default; it is not (the booster uses it; see make_pipeline in
    # keel.families.tabular.training)
    warnings.filterwarnings("ignore", message="categorical_feature keyword has been found")
    table = _candidates()
    if name not in table:
        raise DataError(
            f"unknown candidate {name!r}{did_you_mean(name, table)}; choose from {', '.join(table)}"
        )
    entry = table[name]
    return entry[column](seed), entry[2]


def _numeric_tree(regression: bool, x_train: np.ndarray, y: Any, x_val: np.ndarray) -> Any:
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    kind = DecisionTreeRegressor if regression else DecisionTreeClassifier
    return kind(max_depth=6, min_samples_leaf=5, random_state=0).fit(x_train, y)


class _Classification(Task):
    """What binary and multiclass share: string classes, stratified splits."""

    labelled_classes = True
    fairness_headline = "accuracy"

    @property
    def stratified(self) -> bool:
        """Splits and folds keep each class's share."""
        return True

    def truth(self, y: Any) -> np.ndarray:
        """Class labels as strings."""
        return np.asarray(y)

    def _classes(self, y: pd.Series, target: str) -> tuple[pd.Series, pd.Series]:
        counts = y.astype(str).value_counts()
        if len(counts) > MAX_CLASSES:
            raise DataError(
                f"target {target!r} has {len(counts)} classes (at most {MAX_CLASSES});"
                " is it a continuous value? set task: regression"
            )
        return y.astype(str), counts

    def folds(self, n_splits: int, seed: int) -> Any:
        """Stratified K-fold, shuffled and seeded."""
        from sklearn.model_selection import StratifiedKFold

        return StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)

    def estimator(self, name: str, seed: int) -> tuple[Any, bool]:
        """The classifier of candidate ``name``."""
        return _pick(name, 0, seed)

    def predict(self, model, frame, threshold=None, positive_class=None):
        """Classes and probabilities; a mitigated model's own decisions."""
        from keel.estimators import decides_itself

        proba = model.predict_proba(frame)
        classes = tuple(str(c) for c in model.classes_)
        if decides_itself(model):  # a mitigated model: its own (randomised) decisions
            return np.asarray(model.predict(frame)).astype(str), proba, classes
        if threshold is not None and self.thresholded:
            return decide(proba, classes, positive_class, threshold), proba, classes
        # the most probable class: what the classifiers' own predict() returns, in one pass
        predictions = np.asarray(classes, dtype=object)[proba.argmax(axis=1)]
        return predictions.astype(str), proba, classes

    def outputs(self, predictions, proba, classes, positive_class):
        """The predicted class (binary adds the positive class's probability)."""
        return {"prediction": np.asarray(predictions).astype(str)}

    def worst(self, out, y, predictions, proba, classes):
        """Lowest probability given to the true class first."""
        index = {c: i for i, c in enumerate(classes)}
        true_column = np.array([index.get(str(v), 0) for v in y])
        given = proba[np.arange(len(y)), true_column] if proba is not None else (y == predictions)
        out["probability_of_truth"] = np.round(given.astype(float), 6)
        return np.argsort(given, kind="stable")

    def diagnostics(self, y, predictions, proba, classes, positive_class):
        """Confusion matrix and per-class report."""
        labels_order = list(classes)
        matrix = skm.confusion_matrix(y, predictions, labels=labels_order)
        report = skm.classification_report(
            y, predictions, labels=labels_order, output_dict=True, zero_division=0
        )
        return {
            "confusion_matrix": {"labels": labels_order, "counts": matrix.tolist()},
            "per_class": {c: report[c] for c in labels_order if c in report},
        }

    def shap_values(self, values, base, classes, positive_class, target_class, predicted):
        """One class's SHAP values: the asked class, else each row's predicted class."""
        if values.ndim != 3:  # one output: it explains classes[1]
            return values, base, None
        n = len(values)
        if target_class is not None:
            column = np.full(n, list(classes).index(target_class))
        else:
            column = self._explained_column(classes, positive_class, n, predicted)
        picked = np.arange(n)
        values = values[picked, :, column]
        base = base[picked, column] if base.ndim == 2 else base[column]
        label = classes[column[0]] if len(set(column)) == 1 else "the predicted class"
        return values, base, label

    def _explained_column(self, classes, positive_class, n, predicted) -> np.ndarray:
        return np.asarray(predicted())

    def explained_output(self, probability, label):
        """The probability (or log-odds) of the class explained."""
        if probability:
            return f"the probability of {label!r}"
        return f"the log-odds (raw score) of {label!r}"

    def dependence(self, model, rows, classes, positive):
        """P(class) per class, in the model's class order."""
        return (
            np.asarray(model.predict_proba(rows)),
            "P(class), one list per class in the model's class order",
        )

    def fairness_arrays(self, y_true, y_pred, positive_class):
        """Classes as strings."""
        return np.asarray(y_true).astype(str), np.asarray(y_pred).astype(str)

    def group_metrics(self):
        """Count and accuracy per group."""
        from fairlearn.metrics import count
        from sklearn.metrics import accuracy_score

        return {"count": count, "accuracy": accuracy_score}

    def group_resample(self, g, t, d, k, size):
        """Accuracy per group."""
        return {"accuracy": np.bincount(g, weights=(d == t), minlength=k) / size}

    def live_performance(self, y, predicted, scores, positive):
        """Accuracy and balanced accuracy of the served classes."""
        truth, guess = y.astype(str).to_numpy(), predicted.astype(str).to_numpy()
        return {
            "accuracy": float((truth == guess).mean()),
            "balanced_accuracy": float(skm.balanced_accuracy_score(truth, guess)),
        }

    def probe_numeric(self, x_train, y_train, x_val, positive):
        """Class predictions of a shallow tree on one feature."""
        return _numeric_tree(False, x_train, y_train.astype(str), x_val).predict(x_val)

    def probe_category(self, keys_train, y_train, keys_val, positive):
        """The majority class of each category (overall majority for unseen ones)."""
        frame = pd.DataFrame({"k": keys_train.to_numpy(), "y": y_train.astype(str).to_numpy()})
        majority = frame.groupby("k")["y"].agg(lambda v: v.value_counts().index[0])
        return keys_val.map(majority).fillna(y_train.astype(str).mode().iloc[0]).to_numpy()

    def probe_score(self, y_val, prediction, positive):
        """Balanced accuracy of the one-feature classes."""
        return "balanced_accuracy", float(
            skm.balanced_accuracy_score(y_val.astype(str), np.asarray(prediction).astype(str))
        )


class BinaryTask(_Classification):
    """Two classes; decisions at a threshold on P(positive) chosen on validation."""

    name = "binary"
    metrics = MetricSet(binary_metrics, fast_binary, BINARY_DIRECTIONS, "roc_auc")
    thresholded = True
    fairness_headline = "selection_rate"
    slice_metric = "accuracy"

    def prepare_target(self, y, target, positive_class):
        """Exactly two classes; the positive one configured or the rarer one."""
        y, counts = self._classes(y, target)
        if len(counts) != 2:
            raise DataError(
                f"task is binary but target {target!r} has {len(counts)} classes"
                f" ({', '.join(map(str, counts.index[:5]))}...); set task: multiclass"
            )
        classes = tuple(sorted(counts.index))
        if positive_class is not None:
            chosen = str(positive_class)
            if chosen not in classes:
                raise DataError(
                    f"key 'positive_class': {positive_class!r} is not a class of target"
                    f" {target!r}{did_you_mean(chosen, classes)}; classes: {', '.join(classes)}"
                )
        else:
            chosen = str(counts.sort_index().sort_values(kind="stable").index[0])
        return y, classes, chosen

    def watched(self, predictions, proba, classes, positive_class, reference=None):
        """P(positive) per row."""
        return proba[:, list(classes).index(positive_class)], None

    def outputs(self, predictions, proba, classes, positive_class):
        """The decision and P(positive)."""
        found = super().outputs(predictions, proba, classes, positive_class)
        if proba is not None:
            found["score"] = proba[:, list(classes).index(str(positive_class))]
        return found

    def diagnostics(self, y, predictions, proba, classes, positive_class):
        """Confusion matrix, per-class report and the calibration curve."""
        out = super().diagnostics(y, predictions, proba, classes, positive_class)
        if proba is not None:
            from sklearn.calibration import calibration_curve

            truth = y == positive_class
            score = proba[:, list(classes).index(positive_class)]
            observed, predicted = calibration_curve(truth, score, n_bins=10, strategy="quantile")
            out["calibration"] = [
                {"predicted": float(p), "observed": float(o)}
                for p, o in zip(predicted, observed, strict=True)
            ]
        return out

    def _explained_column(self, classes, positive_class, n, predicted) -> np.ndarray:
        return np.full(n, list(classes).index(positive_class))

    def shap_values(self, values, base, classes, positive_class, target_class, predicted):
        """SHAP values of P(positive) (or its log-odds)."""
        if values.ndim == 3:
            return super().shap_values(values, base, classes, positive_class, None, predicted)
        if classes and positive_class == classes[0]:  # a single output explains classes[1]
            values, base = -values, -base
        return values, base, positive_class

    def dependence(self, model, rows, classes, positive):
        """P(positive)."""
        answers = np.asarray(model.predict_proba(rows))[:, [list(classes).index(positive)]]
        return answers, f"P({positive})"

    def fairness_arrays(self, y_true, y_pred, positive_class):
        """1 for the positive class, else 0."""
        truth = (np.asarray(y_true).astype(str) == str(positive_class)).astype(int)
        decided = (np.asarray(y_pred).astype(str) == str(positive_class)).astype(int)
        return truth, decided

    def group_metrics(self):
        """Selection rate, TPR, FPR and accuracy per group."""
        from fairlearn.metrics import (
            count,
            false_positive_rate,
            selection_rate,
            true_positive_rate,
        )
        from sklearn.metrics import accuracy_score

        return {
            "count": count,
            "selection_rate": selection_rate,
            "true_positive_rate": true_positive_rate,
            "false_positive_rate": false_positive_rate,
            "accuracy": accuracy_score,
        }

    def group_measures(self, spread, table):
        """Demographic parity, disparate impact, equal opportunity, equalized odds."""
        out: dict[str, float] = {}
        rates = table["selection_rate"].astype(float)
        out["demographic_parity_difference"] = spread("selection_rate")
        out["demographic_parity_ratio"] = (
            float(rates.min() / rates.max()) if rates.max() > 0 else float("nan")
        )
        # the four-fifths rule: lowest selection rate over the highest
        out["disparate_impact_ratio"] = out["demographic_parity_ratio"]
        out["equal_opportunity_difference"] = spread("true_positive_rate")
        out["equalized_odds_difference"] = max(
            spread("true_positive_rate"), spread("false_positive_rate")
        )
        return out

    def group_resample(self, g, t, d, k, size):
        """Selection rate, TPR, FPR and accuracy per group."""
        positives = np.bincount(g, weights=t, minlength=k)
        hits = np.bincount(g, weights=d * t, minlength=k)
        return {
            "selection_rate": np.bincount(g, weights=d, minlength=k) / size,
            "true_positive_rate": hits / positives,
            "false_positive_rate": np.bincount(g, weights=d * (1 - t), minlength=k)
            / (size - positives),
            "accuracy": np.bincount(g, weights=(d == t), minlength=k) / size,
        }

    def live_performance(self, y, predicted, scores, positive):
        """Accuracy, balanced accuracy and ROC AUC of P(positive)."""
        found = super().live_performance(y, predicted, scores, positive)
        hit = y.astype(str).to_numpy() == str(positive)
        if scores.notna().all() and 0 < hit.sum() < len(hit):
            found["roc_auc"] = float(skm.roc_auc_score(hit, scores))
        return found

    def probe_numeric(self, x_train, y_train, x_val, positive):
        """P(positive) of a shallow tree on one feature."""
        tree = _numeric_tree(False, x_train, y_train.astype(str), x_val)
        return tree.predict_proba(x_val)[:, list(tree.classes_).index(positive)]

    def probe_category(self, keys_train, y_train, keys_val, positive):
        """The positive rate of each category (overall rate for unseen ones)."""
        hits = y_train.astype(str) == positive
        rates = hits.groupby(keys_train.to_numpy()).mean()
        return keys_val.map(rates).fillna(float(hits.mean())).to_numpy()

    def probe_monotone(self, x_train, y_train, x_val, y_val, positive):
        """Rank ROC AUC of the raw values, either direction."""
        fill = float(x_val.median()) if x_val.notna().any() else 0.0
        _, auc = self.probe_score(y_val, x_val.fillna(fill).to_numpy(), positive)
        return "roc_auc", max(auc, 1.0 - auc)

    def probe_score(self, y_val, prediction, positive):
        """ROC AUC of the one-feature score."""
        truth = y_val.astype(str).to_numpy() == positive
        if truth.all() or not truth.any():
            return "roc_auc", 0.5
        return "roc_auc", float(skm.roc_auc_score(truth, prediction))


class MulticlassTask(_Classification):
    """Three or more classes; the most probable class is the answer."""

    name = "multiclass"
    metrics = MetricSet(multiclass_metrics, fast_multiclass, MULTICLASS_DIRECTIONS, "f1_macro")
    slice_metric = "accuracy"

    def prepare_target(self, y, target, positive_class):
        """At most 100 classes; no positive class."""
        y, counts = self._classes(y, target)
        return y, tuple(sorted(counts.index)), None

    def watched(self, predictions, proba, classes, positive_class, reference=None):
        """P(the class first predicted) per row, and that class's column."""
        column = proba.argmax(axis=1) if reference is None else reference
        return proba[np.arange(len(proba)), column], column


class RegressionTask(Task):
    """A number; judged on its errors."""

    name = "regression"
    metrics = MetricSet(regression_metrics, fast_regression, REGRESSION_DIRECTIONS, "rmse")
    labelled_classes = False
    fairness_headline = "rmse"
    slice_metric = "mae"

    @property
    def stratified(self) -> bool:
        """No classes to keep shares of."""
        return False

    def prepare_target(self, y, target, positive_class):
        """Numbers (not booleans)."""
        if not pd.api.types.is_numeric_dtype(y) or pd.api.types.is_bool_dtype(y):
            raise DataError(
                f"task is regression but target {target!r} is not numeric"
                f" (e.g. {y.iloc[0]!r}); set task: binary or multiclass"
            )
        return y, (), None

    def truth(self, y: Any) -> np.ndarray:
        """Floats."""
        return np.asarray(y).astype(float)

    def folds(self, n_splits: int, seed: int) -> Any:
        """K-fold, shuffled and seeded."""
        from sklearn.model_selection import KFold

        return KFold(n_splits=n_splits, shuffle=True, random_state=seed)

    def estimator(self, name: str, seed: int) -> tuple[Any, bool]:
        """The regressor of candidate ``name``."""
        return _pick(name, 1, seed)

    def predict(self, model, frame, threshold=None, positive_class=None):
        """Predicted values; no probabilities."""
        return model.predict(frame), None, ()

    def watched(self, predictions, proba, classes, positive_class, reference=None):
        """The predicted value per row."""
        return np.asarray(predictions).astype(float), None

    def outputs(self, predictions, proba, classes, positive_class):
        """The predicted value, as ``score``."""
        return {"score": np.asarray(predictions, dtype=float)}

    def slice_gap(self, value: float, overall: float) -> float:
        """Relative increase of the error."""
        return (value - overall) / max(abs(overall), 1e-12)

    def worst(self, out, y, predictions, proba, classes):
        """Largest absolute error first."""
        error = np.abs(np.asarray(predictions).astype(float) - y.astype(float))
        out["abs_error"] = error
        return np.argsort(-error, kind="stable")

    def diagnostics(self, y, predictions, proba, classes, positive_class):
        """Residuals by predicted decile."""
        predictions = np.asarray(predictions).astype(float)
        residual = y - predictions
        order = np.argsort(predictions, kind="stable")
        bins = np.array_split(order, min(10, len(order)))
        return {
            "residuals": [
                {
                    "predicted_mean": float(np.mean(predictions[b])),
                    "residual_mean": float(np.mean(residual[b])),
                    "residual_std": float(np.std(residual[b])),
                    "rows": len(b),
                }
                for b in bins
                if len(b)
            ]
        }

    def explained_output(self, probability, label):
        """The predicted value."""
        return "the predicted value"

    def dependence(self, model, rows, classes, positive):
        """The predicted value."""
        return np.asarray(model.predict(rows), dtype=float)[:, None], "predicted value"

    def fairness_arrays(self, y_true, y_pred, positive_class):
        """Numbers."""
        return np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)

    def group_metrics(self):
        """Count, RMSE and MAE per group."""
        from fairlearn.metrics import count
        from sklearn.metrics import mean_absolute_error, root_mean_squared_error

        return {"count": count, "rmse": root_mean_squared_error, "mae": mean_absolute_error}

    def group_resample(self, g, t, d, k, size):
        """RMSE and MAE per group."""
        error = d - t
        return {
            "rmse": np.sqrt(np.bincount(g, weights=error**2, minlength=k) / size),
            "mae": np.bincount(g, weights=np.abs(error), minlength=k) / size,
        }

    def live_performance(self, y, predicted, scores, positive):
        """MAE and RMSE of the served values."""
        error = pd.to_numeric(predicted, errors="coerce") - pd.to_numeric(y, errors="coerce")
        return {"mae": float(error.abs().mean()), "rmse": float(math.sqrt((error**2).mean()))}

    def probe_numeric(self, x_train, y_train, x_val, positive):
        """A shallow regression tree on one feature."""
        return _numeric_tree(True, x_train, y_train.astype(float), x_val).predict(x_val)

    def probe_category(self, keys_train, y_train, keys_val, positive):
        """The mean target of each category (overall mean for unseen ones)."""
        means = y_train.astype(float).groupby(keys_train.to_numpy()).mean()
        return keys_val.map(means).fillna(float(y_train.astype(float).mean())).to_numpy()

    def probe_monotone(self, x_train, y_train, x_val, y_val, positive):
        """The larger of a straight line's R² and Spearman's rho² (a curved copy)."""
        known = x_train.notna() & y_train.notna()
        if known.sum() < 3 or x_train[known].nunique() < 2:
            return "r2", 0.0
        slope, intercept = np.polyfit(x_train[known].astype(float), y_train[known].astype(float), 1)
        fill = float(x_train.median())
        prediction = slope * x_val.fillna(fill).to_numpy(dtype=float) + intercept
        line = self.probe_score(y_val, prediction, positive)[1]
        both = x_val.notna() & y_val.notna()
        rho = x_val[both].rank().corr(y_val[both].astype(float).rank())
        rho2 = float(rho) ** 2 if not math.isnan(rho) else 0.0
        return ("spearman_rho2", rho2) if rho2 > line else ("r2", line)

    def probe_score(self, y_val, prediction, positive):
        """R² of the one-feature prediction."""
        if np.var(y_val.astype(float)) == 0:
            return "r2", 0.0
        return "r2", float(skm.r2_score(y_val.astype(float), prediction))

    def logged_truth(self, values: pd.Series) -> pd.Series:
        """Numbers."""
        return pd.to_numeric(values, errors="coerce")


BINARY = register(BinaryTask())
MULTICLASS = register(MulticlassTask())
REGRESSION = register(RegressionTask())
