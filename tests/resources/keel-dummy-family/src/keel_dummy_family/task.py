"""The ``constant`` task plug-in: one metric, the mean absolute error."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from keel.evaluation import MetricSet
from keel.tasks import BaseTask, register


def _mae(y_true: Any, y_pred: Any, *args: Any, **kwargs: Any) -> dict[str, float]:
    return {"mae": float(np.mean(np.abs(np.asarray(y_true, float) - np.asarray(y_pred, float))))}


class ConstantTask(BaseTask):
    """Every row gets one number."""

    name = "constant"
    metrics: ClassVar[MetricSet] = MetricSet(
        exact=_mae, fast=_mae, directions={"mae": False}, default="mae"
    )
    fairness_headline = "mae"


CONSTANT = register(ConstantTask())
