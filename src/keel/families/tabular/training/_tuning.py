"""Hyper-parameter tuning: Optuna's TPE with pruning, cross-validated, under a time budget."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import GroupKFold, TimeSeriesSplit

from keel._trials import Trial, TuningResult
from keel.data import LabelInfo, Schema
from keel.families.tabular.features import categorical_positions
from keel.families.tabular.training._candidates import (
    ENCODING,
    ENCODINGS,
    NATIVE_CATEGORICAL,
    build_candidate,
    predict_with,
)
from keel.tasks import compute_metrics, get_task


def _lightgbm_space(trial: Any) -> dict[str, Any]:
    return {
        "n_estimators": trial.suggest_int("n_estimators", 100, 1000, log=True),
        "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
        "num_leaves": trial.suggest_int("num_leaves", 8, 256, log=True),
        "min_child_samples": trial.suggest_int("min_child_samples", 5, 100, log=True),
        "subsample": trial.suggest_float("subsample", 0.5, 1.0),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.5, 1.0),
        "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 10.0, log=True),
    }


def _xgboost_space(trial: Any) -> dict[str, Any]:
    return {
        "n_estimators": trial.suggest_int("n_estimators", 100, 1000, log=True),
        "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
        "max_depth": trial.suggest_int("max_depth", 3, 10),
        "min_child_weight": trial.suggest_float("min_child_weight", 0.5, 20.0, log=True),
        "subsample": trial.suggest_float("subsample", 0.5, 1.0),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.5, 1.0),
        "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 10.0, log=True),
    }


def _hgb_space(trial: Any) -> dict[str, Any]:
    return {
        "max_iter": trial.suggest_int("max_iter", 100, 800, log=True),
        "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
        "max_leaf_nodes": trial.suggest_int("max_leaf_nodes", 8, 128, log=True),
        "min_samples_leaf": trial.suggest_int("min_samples_leaf", 5, 100, log=True),
        "l2_regularization": trial.suggest_float("l2_regularization", 1e-4, 10.0, log=True),
    }


def _forest_space(trial: Any) -> dict[str, Any]:
    return {
        "n_estimators": trial.suggest_int("n_estimators", 100, 500, log=True),
        "max_depth": trial.suggest_int("max_depth", 4, 32, log=True),
        "min_samples_leaf": trial.suggest_int("min_samples_leaf", 1, 20, log=True),
        "max_features": trial.suggest_categorical("max_features", ["sqrt", 0.5, 1.0]),
    }


# The first trial of every study: the candidate's own defaults (within the space), so
# tuning can only report something at least as good as not tuning, on the same folds.
DEFAULT_TRIALS: dict[str, dict[str, Any]] = {
    "lightgbm": {
        "n_estimators": 300,
        "learning_rate": 0.05,
        "num_leaves": 31,
        "min_child_samples": 20,
        "subsample": 0.9,
        "colsample_bytree": 0.9,
        "reg_lambda": 1e-3,
        "categories": "one_hot",  # only searched when there are string features
    },
    "xgboost": {
        "n_estimators": 300,
        "learning_rate": 0.05,
        "max_depth": 6,
        "min_child_weight": 1.0,
        "subsample": 0.9,
        "colsample_bytree": 0.9,
        "reg_lambda": 1.0,
    },
    "hist_gradient_boosting": {
        "max_iter": 300,
        "learning_rate": 0.05,
        "max_leaf_nodes": 31,
        "min_samples_leaf": 20,
        "l2_regularization": 1e-4,
    },
    "random_forest": {
        "n_estimators": 200,
        "max_depth": 32,
        "min_samples_leaf": 2,
        "max_features": "sqrt",
    },
}

SEARCH_SPACES: dict[str, Callable[[Any], dict[str, Any]]] = {
    "lightgbm": _lightgbm_space,
    "xgboost": _xgboost_space,
    "hist_gradient_boosting": _hgb_space,
    "random_forest": _forest_space,
}


def assemble_outputs(n: int, parts: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray | None:
    """One array over ``n`` rows from per-fold ``(rows, values)``; None if shapes differ."""
    if not parts:
        return None
    tail = parts[0][1].shape[1:]
    if any(values.shape[1:] != tail for _, values in parts):
        return None  # a fold saw fewer classes: its scores do not line up
    out = np.full((n, *tail), np.nan)
    for rows, values in parts:
        out[rows] = values
    return out


def folds_for(task: str, n_splits: int, seed: int) -> Any:
    """The task's shuffled, seeded K-fold (stratified for classification)."""
    return get_task(task).folds(n_splits, seed)


def fold_indices(
    frame: pd.DataFrame,
    y: np.ndarray,
    task: str,
    n_splits: int,
    seed: int,
    time_column: str | None = None,
    group_column: str | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(fit rows, held-out rows) per fold, honouring how the data was split.

    Time: expanding-window folds in time order (always fit on the past, score on the
    future). Groups: no group on both sides. Otherwise shuffled (stratified) K-fold.
    """
    if time_column is not None:
        raw = frame[time_column]
        times = raw if pd.api.types.is_numeric_dtype(raw) else pd.to_datetime(raw, errors="coerce")
        order = np.argsort(times.to_numpy(), kind="stable")
        return [
            (order[fit], order[held])
            for fit, held in TimeSeriesSplit(n_splits=n_splits).split(order)
        ]
    if group_column is not None:
        groups = frame[group_column].to_numpy()
        return list(GroupKFold(n_splits=n_splits).split(frame, y, groups))
    return list(folds_for(task, n_splits, seed).split(frame, y))


def fold_metrics(
    pipeline: Any,
    x: pd.DataFrame,
    y: np.ndarray,
    fit_rows: np.ndarray,
    held_rows: np.ndarray,
    task: str,
    positive_class: Any,
    keep: bool = False,
) -> Any:
    """Fit a clone of ``pipeline`` on ``fit_rows``; every metric on ``held_rows``.

    One fold of :func:`cross_validate`, the same in process and as a Ray task. With
    ``keep``, ``(metrics, outputs)``: the held-out rows' raw scores (log-odds, see
    :func:`keel.estimators.margin`) or predicted values, for ensemble selection.
    """
    model = clone(pipeline)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(x.iloc[fit_rows], y[fit_rows])
    held = x.iloc[held_rows]
    predictions, proba, classes = predict_with(model, held, task)
    metrics = compute_metrics(task, y[held_rows], predictions, proba, classes, positive_class)
    if not keep:
        return metrics
    if proba is None:
        return metrics, np.asarray(predictions, dtype=float)
    from keel.estimators import margin

    return metrics, margin(model, held)


def cross_validate(
    pipeline: Any,
    frame: pd.DataFrame,
    schema: Schema,
    labels: LabelInfo,
    n_splits: int,
    seed: int,
    on_fold: Callable[[int, dict[str, float]], None] | None = None,
    time_column: str | None = None,
    group_column: str | None = None,
    folds_on: Any = None,
    outputs: list[tuple[np.ndarray, np.ndarray]] | None = None,
) -> list[dict[str, float]]:
    """Every metric on each held-out fold of ``frame`` (fit on the others).

    ``outputs``, a list, receives ``(held-out row positions, their raw scores or
    values)`` per fold: the out-of-fold predictions ensemble selection works on.

    ``folds_on`` (a :class:`keel.families.tabular.training.RayFolds`) fits the folds at
    once as tasks on a Ray cluster; their results are still handed to ``on_fold`` in
    fold order, so a pruning decision is the same as in process (the folds after it are
    cancelled).
    """
    x = frame[schema.feature_names]
    y = labels.kind.truth(frame[schema.target])
    results = []
    folds = fold_indices(frame, y, labels.task, n_splits, seed, time_column, group_column)
    if folds_on is not None:
        found = folds_on.run(
            pipeline,
            x,
            y,
            folds,
            labels.task,
            labels.positive_class,
            source=frame,
            keep=outputs is not None,
        )
    else:
        found = (
            fold_metrics(
                pipeline, x, y, fit, held, labels.task, labels.positive_class, outputs is not None
            )
            for fit, held in folds
        )
    try:
        for k, metrics in enumerate(found):
            if outputs is not None:
                metrics, values = metrics
                outputs.append((folds[k][1], values))
            results.append(metrics)
            if on_fold is not None:
                on_fold(k, metrics)
    finally:
        close = getattr(found, "close", None)
        if close is not None:
            close()  # cancels the folds still running when a trial is pruned
    return results


class RayFolds:
    """Cross-validation folds as Ray tasks on a connected cluster (see keel._ray).

    Optuna stays in the driver and asks for one trial at a time, as in process: TPE's
    next suggestion depends on every finished trial, so trials run side by side would
    search differently (and depend on timing). What is spread is the work of a trial:
    its folds, fitted at once, one thread each. The rows go to the object store once
    per frame.
    """

    def __init__(self, ray: Any) -> None:
        self.ray = ray
        self.task = ray.remote(_fold_task)
        self._stored: dict[int, tuple[Any, Any, Any]] = {}

    def run(
        self,
        pipeline: Any,
        x: pd.DataFrame,
        y: np.ndarray,
        folds: list[tuple[np.ndarray, np.ndarray]],
        task: str,
        positive_class: Any,
        source: Any = None,
        keep: bool = False,
    ) -> Any:
        """Each fold's metrics, in fold order (a generator: closing it cancels the rest).

        ``source`` (the frame ``x`` and ``y`` come from) keeps one copy of the rows in
        the object store for every trial on it.
        """
        held = self._stored.get(id(source))
        if source is None or held is None or held[0] is not source:
            held = (source, self.ray.put(x), self.ray.put(y))
            self._stored = {id(source): held}
        _, x_ref, y_ref = held
        refs = [
            self.task.remote(pipeline, x_ref, y_ref, fit, held, task, positive_class, keep)
            for fit, held in folds
        ]
        return self._in_order(refs)

    def _in_order(self, refs: list[Any]) -> Any:
        done = 0
        try:
            for ref in refs:
                yield self.ray.get(ref)
                done += 1
        finally:
            for ref in refs[done + 1 :]:
                self.ray.cancel(ref)


def _fold_task(
    pipeline: Any,
    x: pd.DataFrame,
    y: np.ndarray,
    fit_rows: np.ndarray,
    held_rows: np.ndarray,
    task: str,
    positive_class: Any,
    keep: bool = False,
) -> Any:
    """One fold on a Ray worker, on one thread (the cluster's CPUs are the parallelism)."""
    import threadpoolctl

    with threadpoolctl.threadpool_limits(1):
        return fold_metrics(pipeline, x, y, fit_rows, held_rows, task, positive_class, keep)


def summarize_folds(folds: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Mean and standard deviation of every metric over the folds."""
    names = sorted({k for f in folds for k in f})
    out = {}
    for name in names:
        values = np.array([f[name] for f in folds if name in f])
        out[name] = {
            "mean": float(values.mean()),
            "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "folds": len(values),
        }
    return out


def _keep_best_outputs(trials: list[Trial], keep: int, sign: float) -> None:
    """Drop the out-of-fold predictions of all but the ``keep`` best complete trials."""
    held = [t for t in trials if t.outputs is not None and t.score is not None]
    held.sort(key=lambda t: -sign * t.score)
    for trial in held[keep:]:
        trial.outputs = None


@dataclass
class _Study:
    """One candidate's tuning: the objective Optuna calls, the trials and the clock."""

    name: str
    frame: pd.DataFrame
    schema: Schema
    labels: LabelInfo
    seed: int
    budget_seconds: float
    n_splits: int
    n_trials: int | None
    on_trial: Callable[[Trial, float | None], None] | None
    cv: dict[str, Any]  # time_column, group_column, folds_on for cross_validate
    keep_outputs: int
    stop_at: Callable[[], float] | None
    trials: list[Trial] = field(default_factory=list)
    best: float | None = None
    started: float = field(default_factory=time.perf_counter)

    @property
    def sign(self) -> float:
        return 1.0 if self.labels.primary.greater_is_better else -1.0

    def spent(self) -> bool:
        """True once the budget (or the whole run's deadline) is used up."""
        now = time.perf_counter()
        if now - self.started > self.budget_seconds:
            return True
        return self.n_trials is None and self.stop_at is not None and now > self.stop_at()

    def stop_when_spent(self, study: Any, _trial: Any) -> None:
        if self.spent():
            study.stop()

    def params(self, trial: Any) -> dict[str, Any]:
        params = SEARCH_SPACES[self.name](trial)
        if self.name in NATIVE_CATEGORICAL and categorical_positions(self.schema):
            params[ENCODING] = trial.suggest_categorical(ENCODING, list(ENCODINGS))
        return params

    def __call__(self, trial: Any) -> float:
        import optuna

        params = self.params(trial)
        pipeline = build_candidate(self.name, self.labels.task, self.schema, self.seed, params)
        scores: list[float] = []
        fold_metrics: list[dict[str, float]] = []
        started = time.perf_counter()
        state = ["pruned"]
        primary, sign = self.labels.primary.name, self.sign

        def report(k: int, metrics: dict[str, float]) -> None:
            scores.append(metrics.get(primary, float("nan")))
            fold_metrics.append(metrics)
            trial.report(sign * float(np.nanmean(scores)), step=k)
            if trial.should_prune():
                raise optuna.TrialPruned
            over = self.spent()
            if over and k < self.n_splits - 1 and any(t.state == "complete" for t in self.trials):
                # the budget is wall time: stop a trial between folds once it is spent
                state[0] = "stopped: budget spent"
                raise optuna.TrialPruned

        parts: list[tuple[np.ndarray, np.ndarray]] | None = [] if self.keep_outputs else None
        try:
            cross_validate(
                pipeline,
                self.frame,
                self.schema,
                self.labels,
                self.n_splits,
                self.seed,
                on_fold=report,
                outputs=parts,
                **self.cv,
            )
        except optuna.TrialPruned:
            seconds = time.perf_counter() - started
            self.trials.append(Trial(trial.number, params, state[0], None, scores, seconds))
            raise
        score = float(np.nanmean(scores))
        seconds = time.perf_counter() - started
        done = Trial(trial.number, params, "complete", score, scores, seconds, fold_metrics)
        self.trials.append(done)
        if parts:
            done.outputs = assemble_outputs(len(self.frame), parts)
            _keep_best_outputs(self.trials, self.keep_outputs, sign)
        if self.best is None or sign * score > sign * self.best:
            self.best = score
        if self.on_trial is not None:
            self.on_trial(done, self.best)
        return sign * score


def tune(
    name: str,
    frame: pd.DataFrame,
    schema: Schema,
    labels: LabelInfo,
    seed: int,
    budget_seconds: float,
    n_splits: int,
    on_trial: Callable[[Trial, float | None], None] | None = None,
    time_column: str | None = None,
    group_column: str | None = None,
    trials: int | None = None,
    folds_on: Any = None,
    keep_outputs: int = 0,
    stop_at: Callable[[], float] | None = None,
) -> TuningResult:
    """Tune candidate ``name`` with Optuna (TPE, median pruning) on CV folds of ``frame``.

    Stops starting trials once ``budget_seconds`` of wall time are used (a running
    trial stops at its next fold boundary). With ``trials``, exactly that many trials
    run instead and the clock is ignored: the result is then the same on any machine
    under any load (a wall-clock budget fits more or fewer trials). Each trial reports
    its running mean after every fold so that a clearly worse trial is pruned early.
    ``folds_on`` fits each trial's folds as tasks on a Ray cluster: the same trials in
    the same order, so the same result for a fixed ``trials`` and seed.
    ``keep_outputs`` keeps the out-of-fold predictions of that many best trials
    (``Trial.outputs``), for ensemble selection. ``stop_at()``, asked again at every
    fold, is a ``time.perf_counter()`` instant after which no trial continues (the
    whole run's deadline, which moves as trials show how large the model grows);
    the first trial always completes.
    """
    import optuna

    spec = labels.primary
    if trials is not None:
        budget_seconds = float("inf")
    if SEARCH_SPACES.get(name) is None or budget_seconds <= 0 or trials == 0:
        return TuningResult(name, spec.name, {}, None)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cv = {"time_column": time_column, "group_column": group_column, "folds_on": folds_on}
    run = _Study(
        name,
        frame,
        schema,
        labels,
        seed,
        budget_seconds,
        n_splits,
        trials,
        on_trial,
        cv,
        keep_outputs,
        stop_at,
    )
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1),
    )
    if name in DEFAULT_TRIALS:
        study.enqueue_trial(DEFAULT_TRIALS[name])
        if name in NATIVE_CATEGORICAL and categorical_positions(schema):
            # the same defaults with category codes: the encodings compared fairly
            study.enqueue_trial({**DEFAULT_TRIALS[name], ENCODING: "native"})
    run.started = time.perf_counter()
    # One clock for both limits: no trial starts once the budget is spent, and a
    # running one stops at its next fold boundary (see ``_Study.__call__``).
    study.optimize(run, n_trials=trials, callbacks=[run.stop_when_spent], catch=())
    seconds = time.perf_counter() - run.started
    if not any(t.state == "complete" for t in run.trials):
        return TuningResult(name, spec.name, {}, None, run.trials, seconds)
    best = run.sign * study.best_value
    return TuningResult(name, spec.name, dict(study.best_params), best, run.trials, seconds)
