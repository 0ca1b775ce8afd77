"""The ``Task`` protocol: everything that differs between kinds of model.

A task plug-in is one object that the stages ask instead of testing the task's name:
how the target is read and checked, how rows are split and folded, which baselines
and candidates are trained, how a model predicts and decides, which metrics judge it,
how one feature alone is scored for leakage, what fairness shows first, which outputs
drift is watched on, and what a served answer holds. Every caller gets its task with
:func:`get_task` (an unknown name is a one-line error naming the known ones). Task
plug-ins live in their family's folder (``keel.families.<family>.task``), registered in
:data:`TASKS` when the family loads them, and pass the shared contract tests in
``tests/unit/test_tasks.py``.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from keel.evaluation import MetricSet, MetricSpec


class BaseTask:
    """What every kind of model has: a name, its metrics.

    A task belongs to the family that declares it (``keel.families``): the family runs
    its lifecycle; the task is the variant inside it (binary, multiclass or regression
    inside tabular).
    """

    name: ClassVar[str]
    metrics: ClassVar[MetricSet]
    fairness_headline: ClassVar[str]
    labelled_classes: ClassVar[bool] = False
    thresholded: ClassVar[bool] = False


class RankingTask(BaseTask):
    """A task whose answers are ranked lists judged by ranking metrics at cut-offs."""

    def directions(self, ks: Sequence[int]) -> dict[str, bool]:
        """Metric name → higher is better, for these cut-offs."""
        from keel.evaluation._ranking import ranking_directions

        return ranking_directions(ks)

    def primary_name(self, metric: str | None, ks: Sequence[int]) -> str:
        """The metric models are tuned, chosen and gated on (default NDCG at 10)."""
        from keel.errors import ConfigError, did_you_mean
        from keel.evaluation._ranking import metric_name, ranking_directions

        known = ranking_directions(ks)
        name = metric or ("ndcg_at_10" if 10 in ks else metric_name("ndcg", max(ks)))
        if name not in known:
            raise ConfigError(
                f"keel.yaml: key 'metric': {name!r} is not a ranking metric of cut-offs"
                f" {list(ks)}{did_you_mean(name, known)}; use one of {', '.join(known)}"
            )
        return name


class Task(BaseTask, ABC):
    """What a tabular kind of model needs from Keel, and what it tells Keel.

    Attributes
    ----------
    name : str
        The ``task:`` value in keel.yaml.
    metrics : MetricSet
        Exact and fast metrics, their directions, the default primary metric.
    thresholded : bool
        Decisions are a threshold on one class's probability, chosen on validation.
    labelled_classes : bool
        The model predicts one of a set of classes (with a probability per class).
    fairness_headline : str
        The per-group number a model card shows first.
    slice_metric : str
        The metric slices of the test rows are compared on.
    """

    name: ClassVar[str]
    metrics: ClassVar[MetricSet]
    thresholded: ClassVar[bool] = False
    labelled_classes: ClassVar[bool] = True
    fairness_headline: ClassVar[str]
    slice_metric: ClassVar[str]

    # --- labels ------------------------------------------------------------------------

    @abstractmethod
    def prepare_target(
        self, y: pd.Series, target: str, positive_class: str | int | None
    ) -> tuple[pd.Series, tuple[str, ...], str | None]:
        """Check the target's values; return them as the model learns them.

        Returns ``(y, classes, positive_class)``; raises ``DataError`` naming the
        target and the fix when the values do not fit the task.
        """

    @abstractmethod
    def truth(self, y: Any) -> np.ndarray:
        """The target as an array, as models fit it and metrics read it."""

    def primary(self, name: str | None = None) -> MetricSpec:
        """The metric models are chosen, tuned and gated on."""
        return self.metrics.spec(name)

    # --- splits and folds ------------------------------------------------------------------

    @property
    @abstractmethod
    def stratified(self) -> bool:
        """Splits and folds keep each class's share."""

    @abstractmethod
    def folds(self, n_splits: int, seed: int) -> Any:
        """The shuffled, seeded K-fold splitter of this task (scikit-learn)."""

    # --- candidates ---------------------------------------------------------------------

    @abstractmethod
    def estimator(self, name: str, seed: int) -> tuple[Any, bool]:
        """``(estimator, needs_scaled_inputs)`` of baseline or candidate ``name``."""

    # --- predictions --------------------------------------------------------------------

    @abstractmethod
    def predict(
        self,
        model: Any,
        frame: pd.DataFrame,
        threshold: float | None = None,
        positive_class: str | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None, tuple[str, ...]]:
        """``(predictions, probabilities or None, classes)`` of ``model`` on ``frame``."""

    @abstractmethod
    def watched(
        self,
        predictions: np.ndarray,
        proba: np.ndarray | None,
        classes: Sequence[str],
        positive_class: str | None,
        reference: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """The number behaviour tests watch per row, and the class column it came from."""

    @abstractmethod
    def outputs(
        self,
        predictions: np.ndarray,
        proba: np.ndarray | None,
        classes: Sequence[str],
        positive_class: str | None,
    ) -> dict[str, np.ndarray]:
        """The outputs drift is watched on, named as in the prediction log.

        ``prediction`` (a class) and/or ``score`` (a number).
        """

    def slice_gap(self, value: float, overall: float) -> float:
        """How much worse a slice is than all rows on :attr:`slice_metric` (> 0: worse)."""
        return overall - value

    @abstractmethod
    def worst(
        self,
        out: pd.DataFrame,
        y: np.ndarray,
        predictions: np.ndarray,
        proba: np.ndarray | None,
        classes: Sequence[str],
    ) -> np.ndarray:
        """Row order of ``out`` from most to least wrong; adds the error column(s)."""

    @abstractmethod
    def diagnostics(
        self,
        y: np.ndarray,
        predictions: np.ndarray,
        proba: np.ndarray | None,
        classes: Sequence[str],
        positive_class: str | None,
    ) -> dict[str, Any]:
        """Plot-ready diagnostics of a model on the test rows."""

    # --- leakage: one feature alone ---------------------------------------------------------

    @abstractmethod
    def probe_numeric(
        self, x_train: np.ndarray, y_train: pd.Series, x_val: np.ndarray, positive: str | None
    ) -> np.ndarray:
        """Predictions on validation of a shallow tree fitted on one numeric feature."""

    @abstractmethod
    def probe_category(
        self, keys_train: pd.Series, y_train: pd.Series, keys_val: pd.Series, positive: str | None
    ) -> np.ndarray:
        """Predictions on validation from one categorical feature's per-value statistic."""

    def probe_monotone(
        self,
        x_train: pd.Series,
        y_train: pd.Series,
        x_val: pd.Series,
        y_val: pd.Series,
        positive: str | None,
    ) -> tuple[str, float]:
        """A score that catches a feature moving in lockstep with the target."""
        return "", 0.0

    @abstractmethod
    def probe_score(
        self, y_val: pd.Series, prediction: np.ndarray, positive: str | None
    ) -> tuple[str, float]:
        """``(metric, score)`` of a one-feature prediction (1.0: the feature is the target)."""

    # --- explanations --------------------------------------------------------------------------

    def shap_values(
        self,
        values: np.ndarray,
        base: np.ndarray,
        classes: Sequence[str],
        positive_class: str | None,
        target_class: str | None,
        predicted: Any,
    ) -> tuple[np.ndarray, np.ndarray, str | None]:
        """SHAP values of one output per row: ``(values, base values, class explained)``.

        ``predicted()`` gives each row's most probable class column (asked only when
        needed).
        """
        return values, base, None

    @abstractmethod
    def explained_output(self, probability: bool, label: str | None) -> str:
        """What a SHAP value is in terms of, in words."""

    @abstractmethod
    def dependence(
        self, model: Any, rows: pd.DataFrame, classes: Sequence[str], positive: str | None
    ) -> tuple[np.ndarray, str]:
        """Model outputs for partial dependence (one column per output) and their name."""

    # --- fairness -----------------------------------------------------------------------------

    @abstractmethod
    def fairness_arrays(
        self, y_true: Any, y_pred: Any, positive_class: str | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Truth and decisions as fairness metrics read them (0/1 for binary)."""

    @abstractmethod
    def group_metrics(self) -> dict[str, Any]:
        """Per-group metric functions (fairlearn's ``MetricFrame`` metrics)."""

    def group_measures(self, spread: Any, table: pd.DataFrame) -> dict[str, float]:
        """Task-specific fairness measures from the per-group table (``spread(metric)``)."""
        return {}

    @abstractmethod
    def group_resample(
        self, g: np.ndarray, t: np.ndarray, d: np.ndarray, k: int, size: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Per-group metrics of one bootstrap resample (``g``: group codes)."""

    # --- reports, monitoring ------------------------------------------------------------------

    def balance(self, y: pd.Series) -> dict[str, float]:
        """Share of each class, largest first (empty when there are no classes)."""
        return class_balance(y) if self.labelled_classes else {}

    @abstractmethod
    def live_performance(
        self, y: pd.Series, predicted: pd.Series, scores: pd.Series, positive: str | None
    ) -> dict[str, float]:
        """Metrics of served answers against the labels sent to ``/feedback``."""

    def logged_truth(self, values: pd.Series) -> pd.Series:
        """Labels sent to ``/feedback``, as the target's values."""
        return values


def class_balance(y: pd.Series) -> dict[str, float]:
    """Share of each class, largest first."""
    shares = y.astype(str).value_counts(normalize=True)
    return {str(k): round(float(v), 6) for k, v in shares.items()}


TASKS: dict[str, BaseTask] = {}


def register(task: BaseTask) -> BaseTask:
    """Add a task plug-in to :data:`TASKS` (its ``name`` must be new)."""
    if task.name in TASKS:
        raise ValueError(f"task {task.name!r} is registered twice")
    TASKS[task.name] = task
    return task


def get_task(name: str | BaseTask) -> Any:
    """The plug-in of task ``name`` (a task is returned as it is).

    Task plug-ins live in their family (``keel.families``): the family that declares
    ``name`` registers its tasks on first use.
    """
    if isinstance(name, BaseTask):
        return name
    if name not in TASKS:
        from keel.errors import ConfigError, did_you_mean
        from keel.families import FAMILIES

        with contextlib.suppress(ConfigError):  # unknown: the error below lists the known
            FAMILIES.for_task(str(name)).load_tasks()
        if name not in TASKS:
            known = all_tasks()
            raise ConfigError(
                f"{name!r} is not a task Keel knows (the model or report names it); Keel knows"
                f" {', '.join(known)}{did_you_mean(str(name), known)}"
            ) from None
    return TASKS[name]


def all_tasks() -> dict[str, BaseTask]:
    """Every task of every family Keel knows (their plug-ins loaded)."""
    from keel.families import FAMILIES

    for family in FAMILIES.usable():
        if not set(family.tasks) <= set(TASKS):
            family.load_tasks()
    return dict(TASKS)


def compute_metrics(
    task: str | Task,
    y_true: Any,
    y_pred: Any,
    proba: np.ndarray | None = None,
    classes: Sequence[str] = (),
    positive_class: str | None = None,
) -> dict[str, float]:
    """Every metric of ``task`` on these rows (scikit-learn; undefined ones left out)."""
    return get_task(task).metrics.exact(y_true, y_pred, proba, classes, positive_class)


def fast_metrics(
    task: str | Task,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    proba: np.ndarray | None = None,
    classes: Sequence[str] = (),
    positive_class: str | None = None,
) -> dict[str, float]:
    """:func:`compute_metrics` in NumPy, for the hundreds of bootstrap resamples."""
    return get_task(task).metrics.fast(y_true, y_pred, proba, classes, positive_class)


def _loaded_first() -> Iterator[BaseTask]:
    """The plug-ins already loaded, then every family's (loaded only when needed)."""
    yield from list(TASKS.values())
    yield from all_tasks().values()


def greater_is_better(name: str) -> bool:
    """Whether a higher value of metric ``name`` is better (any task)."""
    for task in _loaded_first():
        if name in task.metrics.directions:
            return task.metrics.directions[name]
    raise ValueError(f"unknown metric {name!r}")
