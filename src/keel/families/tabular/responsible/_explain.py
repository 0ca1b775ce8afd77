"""Explanations in terms of the original features.

SHAP, permutation importance, partial dependence, local explanations and an
approximate counterfactual hint.

SHAP runs on the model inside the pipeline (tree explainer for tree models, linear for
linear ones, a model-agnostic permutation explainer otherwise), on the preprocessed
matrix; the columns one original feature became (one-hot) are then summed back into
that feature. Sums preserve additivity: base value + the folded values = the model's
output, in the space the explainer works in (log-odds for boosted trees and logistic
regression, probability for forests and single trees, the prediction for regression).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.inspection import permutation_importance

from keel.estimators import decides_itself
from keel.families.tabular.training import predict_with
from keel.tasks import fast_metrics, get_task

MAX_SHAP_ROWS = 300
MAX_FOREST_ROWS = 100  # exact TreeSHAP on deep forests is slow
BACKGROUND_ROWS = 100
PD_ROWS = 300

_TREE_TYPES = (
    "LGBMClassifier",
    "LGBMRegressor",
    "XGBClassifier",
    "XGBRegressor",
    "LabelledXGBClassifier",
    "HistGradientBoostingClassifier",
    "HistGradientBoostingRegressor",
    "RandomForestClassifier",
    "RandomForestRegressor",
    "DecisionTreeClassifier",
    "DecisionTreeRegressor",
)
_LINEAR_TYPES = ("LogisticRegression", "Ridge")


def feature_columns(preprocessor: Any) -> list[tuple[str, list[int]]]:
    """``(original feature, its output columns)`` of a fitted ColumnTransformer."""
    out: list[tuple[str, list[int]]] = []
    position = 0
    for name, transformer, columns in preprocessor.transformers_:
        if name == "remainder" or transformer == "drop":
            continue
        encoder = transformer
        if hasattr(transformer, "named_steps"):
            encoder = list(transformer.named_steps.values())[-1]
        widths = getattr(encoder, "_n_features_outs", None) or [1] * len(columns)
        for column, width in zip(columns, widths, strict=True):
            out.append((column, list(range(position, position + int(width)))))
            position += int(width)
    return out


@dataclass
class Explanation:
    """SHAP values folded back to the original features, for some rows."""

    features: list[str]
    values: np.ndarray  # rows × features
    base: np.ndarray  # one base value per row
    output: str  # what base + sum(values) equals, in words
    explainer: str

    def importance(self) -> dict[str, float]:
        """Mean absolute SHAP value per feature, largest first."""
        mean = np.abs(self.values).mean(axis=0)
        order = np.argsort(-mean, kind="stable")
        return {self.features[i]: float(mean[i]) for i in order}


def explain(
    pipeline: Any,
    rows: pd.DataFrame,
    background: pd.DataFrame,
    task: str,
    positive_class: str | None = None,
    target_class: str | None = None,
    cache: dict[int, Any] | None = None,
) -> Explanation:
    """SHAP values of ``rows`` (raw feature columns) folded to the original features.

    Binary models are explained for ``positive_class``; multiclass ones for
    ``target_class`` (default: the class each row is predicted to be). ``cache`` keeps
    the explainer between calls on the same model (building a TreeExplainer for a
    large ensemble takes seconds).
    """
    import shap

    preprocessor = pipeline.named_steps["preprocess"]
    model = pipeline.named_steps["model"]
    kind = type(model).__name__
    matrix = preprocessor.transform(rows)
    reference = preprocessor.transform(background)
    cache = {} if cache is None else cache
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if hasattr(model, "members_"):  # an ensemble: the weighted sum of its members'
            result = explainer = _ensemble_shap(model, matrix, reference, task, cache)
        else:
            function = model.predict_proba if hasattr(model, "predict_proba") else model.predict
            explainer, result = _shap_of(model, matrix, reference, cache, function)
    values = np.asarray(result.values, dtype=float)
    base = np.asarray(result.base_values, dtype=float)
    classes = [str(c) for c in getattr(model, "classes_", [])]
    probability = kind.startswith(("RandomForest", "DecisionTree")) or isinstance(
        explainer, shap.PermutationExplainer
    )
    plugin = get_task(task)
    values, base, label = plugin.shap_values(
        values,
        base,
        classes,
        positive_class,
        target_class,
        lambda: np.asarray(pipeline.predict_proba(rows)).argmax(axis=1),
    )
    base = np.broadcast_to(base, (len(rows),)).astype(float)
    folded = np.zeros((len(rows), 0))
    names = []
    for feature, columns in feature_columns(preprocessor):
        names.append(feature)
        folded = np.column_stack([folded, values[:, columns].sum(axis=1)])
    output = plugin.explained_output(probability, label)
    shown = getattr(explainer, "name", None) or type(explainer).__name__
    return Explanation(names, folded, base, output, shown)


def _shap_of(
    model: Any, matrix: Any, reference: Any, cache: dict[int, Any], function: Any, trees=True
) -> tuple[Any, Any]:
    """``(explainer, result)``: TreeSHAP, linear, or a permutation explainer of ``function``.

    Trees get TreeSHAP unless ``trees`` is false; linear models the linear explainer.
    """
    import shap

    kind = type(model).__name__
    explainer = cache.get(id(model))
    if trees and kind in _TREE_TYPES:
        explainer = explainer or shap.TreeExplainer(model)
        result = explainer(matrix, check_additivity=False)
    elif kind in _LINEAR_TYPES:
        explainer = explainer or shap.LinearExplainer(model, reference)
        result = explainer(matrix)
    else:
        explainer = explainer or shap.PermutationExplainer(function, reference)
        result = explainer(matrix, max_evals=2 * matrix.shape[1] + 1, silent=True)
    cache[id(model)] = explainer
    return explainer, result


class _EnsembleShap:
    """SHAP values of an ensemble: the weighted sum of its members' (see explain)."""

    def __init__(self, values: np.ndarray, base: np.ndarray, kinds: list[str]) -> None:
        self.values, self.base_values = values, base
        self.name = f"weighted sum of {len(kinds)} members' SHAP ({', '.join(sorted(set(kinds)))})"


def _ensemble_shap(
    model: Any, matrix: Any, reference: Any, task: str, cache: dict[int, Any]
) -> _EnsembleShap:
    """Σ weight × member SHAP, in the ensemble's own output space.

    A classifier ensemble sums its members' log-odds (``EnsembleClassifier``), so each
    member is explained in log-odds: TreeSHAP for boosted trees, the linear explainer
    for a logistic regression, else a permutation explainer of its log-odds. Shapley
    values are linear in the explained function, so the sum is exact (additive).
    """
    from keel.estimators import margin

    classify = get_task(task).labelled_classes
    values = base = None
    kinds = []
    for (_, member), weight in zip(model.members_, model.weights_, strict=True):
        probability_trees = classify and type(member).__name__.startswith(
            ("RandomForest", "DecisionTree")
        )
        explainer, found = _shap_of(
            member,
            matrix,
            reference,
            cache,
            lambda x, m=member: margin(m, x),
            trees=not probability_trees,
        )
        kinds.append(type(explainer).__name__)
        part = weight * np.asarray(found.values, dtype=float)
        part_base = weight * np.asarray(found.base_values, dtype=float)
        values = part if values is None else values + part
        base = part_base if base is None else base + part_base
    return _EnsembleShap(values, base, kinds)


def explain_row(
    pipeline: Any,
    row: pd.DataFrame,
    background: pd.DataFrame,
    task: str,
    positive_class: str | None = None,
    top: int = 10,
    cache: dict[int, Any] | None = None,
) -> dict[str, Any]:
    """The local explanation of one row: each feature's value and contribution.

    What serving answers on ``/explain``: contributions sorted by size, the base value,
    and what base + contributions add up to.
    """
    found = explain(pipeline, row.head(1), background, task, positive_class, cache=cache)
    contributions = [
        {
            "feature": name,
            "value": _plain(row.iloc[0][name]),
            "contribution": float(found.values[0, i]),
        }
        for i, name in enumerate(found.features)
    ]
    contributions.sort(key=lambda c: -abs(c["contribution"]))
    return {
        "base": float(found.base[0]),
        "output": found.output,
        "total": float(found.base[0] + found.values[0].sum()),
        "contributions": contributions[:top],
        "explainer": found.explainer,
    }


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value


def permutation_ranking(
    pipeline: Any,
    rows: pd.DataFrame,
    y: np.ndarray,
    task: str,
    metric: str,
    greater_is_better: bool,
    positive_class: str | None = None,
    seed: int = 0,
    repeats: int = 3,
) -> dict[str, dict[str, float]]:
    """Drop in ``metric`` when each original feature is shuffled (mean ± std), largest first."""

    def score(model: Any, x: pd.DataFrame, truth: np.ndarray) -> float:
        predictions, proba, classes = predict_with(model, x, task)  # one pass
        value = fast_metrics(task, truth, predictions, proba, classes, positive_class)[metric]
        return value if greater_is_better else -value

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = permutation_importance(
            pipeline, rows, y, scoring=score, n_repeats=repeats, random_state=seed, n_jobs=1
        )
    order = np.argsort(-result.importances_mean, kind="stable")
    return {
        str(rows.columns[i]): {
            "mean": float(result.importances_mean[i]),
            "std": float(result.importances_std[i]),
        }
        for i in order
    }


def partial_dependences(
    pipeline: Any,
    rows: pd.DataFrame,
    features: list[str],
    categorical: set[str],
    task: str,
    positive_class: str | None = None,
    grid: int = 20,
) -> dict[str, dict[str, Any]]:
    """Average prediction (P(positive) for binary) as each feature alone varies.

    The brute-force definition (what ``sklearn.inspection.partial_dependence`` computes
    with ``kind="average"``), done here so that categorical columns with missing values
    work: every row gets the grid value, the model predicts, the answers are averaged.
    Numbers: ``grid`` quantiles from the 5th to the 95th percentile; categories: the
    ``grid`` most frequent ones.
    """
    out = {}
    classes = [str(c) for c in getattr(pipeline, "classes_", [])]
    for feature in features:
        column = rows[feature]
        if feature in categorical:
            values = list(column.dropna().value_counts().index[:grid])
        else:
            numbers = pd.to_numeric(column, errors="coerce").dropna()
            if numbers.empty:
                continue
            values = list(np.unique(np.quantile(numbers, np.linspace(0.05, 0.95, grid))))
            if pd.api.types.is_integer_dtype(column):
                values = sorted({round(v) for v in values})
        if not values:
            continue
        stacked = pd.concat([rows] * len(values), ignore_index=True)
        stacked[feature] = pd.Series(np.repeat(np.asarray(values, dtype=object), len(rows)))
        stacked[feature] = stacked[feature].astype(column.dtype)
        answers, output = get_task(task).dependence(pipeline, stacked, classes, positive_class)
        average = answers.reshape(len(values), len(rows), -1).mean(axis=1)
        out[feature] = {
            "grid": [_plain(v) for v in values],
            "average": average[:, 0].tolist() if average.shape[1] == 1 else average.T.tolist(),
            "categorical": feature in categorical,
            "output": output,
        }
    return out


def counterfactual_hint(
    pipeline: Any,
    row: pd.DataFrame,
    reference: pd.DataFrame,
    features: list[str],
    categorical: set[str],
    positive_class: str,
    threshold: float = 0.5,
) -> dict[str, Any] | None:
    """APPROXIMATE: the smallest single-feature change that flips a binary decision.

    Tries, for each of ``features`` (the most important ones), the values seen in
    ``reference`` (categories; or 20 quantiles for numbers), one feature at a time, and
    returns the change that flips the decision with the smallest step (numbers: in
    units of the feature's standard deviation; categories count as one step). Not a
    causal statement: it says what the model does, not what would happen in the world.
    """
    classes = [str(c) for c in pipeline.classes_]
    column = classes.index(positive_class)
    before = float(pipeline.predict_proba(row.head(1))[0, column])
    decided = before >= threshold
    best: dict[str, Any] | None = None
    for feature in features:
        current = row.iloc[0][feature]
        if feature in categorical:
            candidates = [v for v in reference[feature].dropna().unique() if v != current]
        else:
            numbers = pd.to_numeric(reference[feature], errors="coerce").dropna()
            if numbers.empty:
                continue
            candidates = np.unique(np.quantile(numbers, np.linspace(0, 1, 21)))
            if pd.api.types.is_integer_dtype(row[feature]):
                candidates = np.unique(np.round(candidates)).astype(np.int64)
        if len(candidates) == 0:
            continue
        trial = pd.concat([row.head(1)] * len(candidates), ignore_index=True)
        trial[feature] = pd.Series(list(candidates), dtype=row[feature].dtype)
        proba = pipeline.predict_proba(trial)[:, column]
        flipped = (proba >= threshold) != decided
        if not flipped.any():
            continue
        if feature in categorical:
            steps = np.ones(len(candidates))
        else:
            spread = float(pd.to_numeric(reference[feature], errors="coerce").std()) or 1.0
            steps = np.abs(np.asarray(candidates, dtype=float) - float(current)) / spread
        steps = np.where(flipped, steps, np.inf)
        i = int(np.argmin(steps))
        if best is None or steps[i] < best["steps"]:
            best = {
                "feature": feature,
                "from": _plain(current),
                "to": _plain(candidates[i]),
                "steps": float(steps[i]),
                "probability_before": before,
                "probability_after": float(proba[i]),
            }
    if best is None:
        return None
    best["approximate"] = True
    best["note"] = (
        "approximate: one feature changed at a time among the most important ones;"
        " what the model does, not a causal claim"
    )
    return best


# Seconds each part of explain_model may take before it uses fewer rows: a large model
# (a big ensemble, thousands of trees) costs per row in all three. TreeSHAP costs about
# SHAP_PER_PREDICT predictions per explained row (measured on LightGBM ensembles).
PERMUTATION_SECONDS = 2.0
DEPENDENCE_SECONDS = 1.5
SHAP_SECONDS = 3.0
SHAP_PER_PREDICT = 300
PERMUTATION_ROWS = 1000
MIN_ROWS = 100


def explained_rows(pipeline: Any, rows: pd.DataFrame, features: int, shap_limit: int) -> dict:
    """How many rows SHAP, permutation importance and partial dependence use.

    The defaults (``shap_limit``, 1,000, ``PD_ROWS``) for a model that predicts fast; a
    model whose predictions are slow gets fewer, never below ``MIN_ROWS``, from one
    timed prediction of up to 500 rows. The document reports the counts used.
    """
    import time

    probe = rows.head(500)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipeline.predict(probe)
    per_row = (time.perf_counter() - started) / max(1, len(probe))

    def within(seconds: float, calls: float, default: int) -> int:
        fit = int(seconds / max(per_row * calls, 1e-12))
        return max(min(default, MIN_ROWS), min(default, fit))

    return {
        "shap": within(SHAP_SECONDS, SHAP_PER_PREDICT, shap_limit),
        "permutation": within(PERMUTATION_SECONDS, features * 3 + 1, PERMUTATION_ROWS),
        "dependence": within(DEPENDENCE_SECONDS, 5 * 20, PD_ROWS),
    }


def explain_model(
    pipeline: Any,
    test_rows: pd.DataFrame,
    train_rows: pd.DataFrame,
    schema: Any,
    labels: Any,
    threshold: float | None = None,
    seed: int = 0,
    top: int = 5,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Why the model decides as it does: a JSON-ready document and a background sample.

    The background (training rows) goes into the package for local explanations.
    """
    features = schema.feature_names
    categorical = {c.name for c in schema.features if c.kind in ("string", "boolean")}
    background = train_rows[features].sample(
        min(BACKGROUND_ROWS, len(train_rows)), random_state=seed
    )
    kind = type(pipeline.named_steps["model"]).__name__
    limit = MAX_FOREST_ROWS if kind.startswith(("RandomForest", "Dummy")) else MAX_SHAP_ROWS
    rows = explained_rows(pipeline, test_rows[features], len(features), limit)
    shown = test_rows.sample(min(rows["shap"], len(test_rows)), random_state=seed)
    cache: dict[int, Any] = {}
    found = explain(
        pipeline, shown[features], background, labels.task, labels.positive_class, cache=cache
    )
    importance = found.importance()
    scored = test_rows.sample(min(rows["permutation"], len(test_rows)), random_state=seed)
    permutation = permutation_ranking(
        pipeline,
        scored[features],
        labels.kind.truth(scored[schema.target]),
        labels.task,
        labels.primary.name,
        labels.primary.greater_is_better,
        labels.positive_class,
        seed,
    )
    leaders = list(importance)[:top]
    # averages over a few hundred rows are stable; each grid value costs a full predict
    dependence = partial_dependences(
        pipeline,
        scored[features].head(rows["dependence"]),
        leaders,
        categorical,
        labels.task,
        labels.positive_class,
    )
    example_row = test_rows[features].head(1)
    example: dict[str, Any] = {
        "row": {k: _plain(v) for k, v in example_row.iloc[0].items()},
        "explanation": explain_row(
            pipeline, example_row, background, labels.task, labels.positive_class, cache=cache
        ),
    }
    if get_task(labels.task).thresholded:  # a decision that can flip: what would flip it
        example["counterfactual"] = counterfactual_hint(
            pipeline,
            example_row,
            train_rows,
            leaders,
            categorical,
            labels.positive_class,
            0.5 if threshold is None else threshold,
        )
    document = {
        "explainer": found.explainer,
        "output": found.output,
        "rows_explained": len(shown),
        "rows_used": {
            "shap": len(shown),
            "permutation": len(scored),
            "partial_dependence": min(len(scored), rows["dependence"]),
        },
        "shap_importance": importance,
        "permutation_importance": {
            "metric": labels.primary.name,
            "rows": len(scored),
            "features": permutation,
        },
        "partial_dependence": dependence,
        "example": example,
    }
    if hasattr(pipeline, "rules"):  # per-group thresholds (threshold_optimizer)
        document["note"] = (
            "SHAP values explain the base model's score; the shipped model then decides"
            " with a threshold per sensitive group, so a row's group also moves its decision."
            " Permutation importance and partial dependence describe the shipped decisions."
        )
    elif decides_itself(pipeline):
        document["note"] = (
            "The shipped model is a fairness-mitigated mixture of models: these numbers"
            " explain its score (the members' probabilities, weighted); its decisions are"
            " drawn per row from the members' votes."
        )
    return document, background
