"""Checks between ingest and training: task inference, labels, leak-free splits."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from keel.errors import DataError, did_you_mean
from keel.evaluation import MetricSpec
from keel.tasks import Task, get_task

MIN_ROWS = 30
MAX_CLASSES_FOR_INTEGER_TARGET = 20


def check_columns(
    columns: list[str],
    target: str,
    sensitive_features: list[str] | tuple[str, ...] = (),
    ignore_columns: list[str] | tuple[str, ...] = (),
    origin: str = "data",
    time_column: str | None = None,
    group_column: str | None = None,
) -> None:
    """Check that every column named in the config exists in the data.

    Raises
    ------
    DataError
        Naming the key, the missing column and the near miss.
    """
    wanted = [("target", target)]
    wanted += [("sensitive_features", c) for c in sensitive_features]
    wanted += [("ignore_columns", c) for c in ignore_columns]
    wanted += [
        (k, c) for k, c in (("time_column", time_column), ("group_column", group_column)) if c
    ]
    for key, name in wanted:
        if name not in columns:
            shown = ", ".join(columns[:30]) + (", ..." if len(columns) > 30 else "")
            raise DataError(
                f"key '{key}': {name!r} is not a column of {origin}"
                f"{did_you_mean(name, columns)}; columns: {shown}"
            )


def infer_task(target: pd.Series) -> str:
    """Infer ``binary``, ``multiclass`` or ``regression`` from the target's values.

    Two distinct values make a binary task; strings, booleans and integers with at
    most 20 distinct values make a multiclass task; other numbers, a regression.
    """
    values = target.dropna()
    n_unique = values.nunique()
    if n_unique <= 1:
        raise DataError(
            f"target {target.name!r} has {n_unique} distinct value(s); a model needs at least two"
        )
    if n_unique == 2:
        return "binary"
    if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
        return "multiclass"
    as_float = values.astype(float)
    if (as_float % 1 == 0).all() and n_unique <= MAX_CLASSES_FOR_INTEGER_TARGET:
        return "multiclass"
    return "regression"


@dataclass(frozen=True)
class LabelInfo:
    """What training needs to know about the labels."""

    task: str
    classes: tuple[str, ...] = ()
    positive_class: str | None = None
    dropped_missing: int = 0
    metric: str | None = None

    @property
    def kind(self) -> Task:
        """The task's plug-in: what differs between kinds of model."""
        return get_task(self.task)

    @property
    def primary(self) -> MetricSpec:
        """The metric models are chosen, tuned and gated on (``metric:`` or the default)."""
        return self.kind.primary(self.metric)


def prepare_labels(
    frame: pd.DataFrame,
    target: str,
    task: str | None,
    positive_class: str | int | None,
    metric: str | None = None,
) -> tuple[pd.DataFrame, LabelInfo]:
    """Drop rows without a label, check the labels against the task.

    Returns the usable rows (a new frame; the input is not modified) and the label
    facts. For binary tasks the positive class is the one configured or, by
    default, the less frequent class (the one usually of interest). ``metric`` (the
    configured primary metric) must be one of the task's metrics.
    """
    usable, info = _prepare_labels(frame, target, task, positive_class)
    if metric is not None and metric not in info.kind.metrics.directions:
        known = tuple(info.kind.metrics.directions)
        raise DataError(
            f"key 'metric': {metric!r} is not a {info.task} metric"
            f"{did_you_mean(metric, known)}; choose one of {', '.join(known)}"
        )
    return usable, LabelInfo(**{**info.__dict__, "metric": metric})


def _prepare_labels(
    frame: pd.DataFrame, target: str, task: str | None, positive_class: str | int | None
) -> tuple[pd.DataFrame, LabelInfo]:
    missing = int(frame[target].isna().sum())
    usable = frame.loc[frame[target].notna()].reset_index(drop=True)
    if len(usable) < MIN_ROWS:
        raise DataError(
            f"only {len(usable)} rows have a value for target {target!r}"
            f" ({missing} have none); Keel needs at least {MIN_ROWS}"
        )
    plugin = get_task(task or infer_task(usable[target]))
    y, classes, chosen = plugin.prepare_target(usable[target], target, positive_class)
    if y is not usable[target]:
        usable = usable.assign(**{target: y})
    return usable, LabelInfo(
        task=plugin.name, classes=classes, positive_class=chosen, dropped_missing=missing
    )
