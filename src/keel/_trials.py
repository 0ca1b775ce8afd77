"""Tuning records every family's tuner returns: one :class:`Trial` per Optuna trial.

Generic on purpose: the tabular tuner (cross-validated folds) and the recommender's
(one validation split) fill the same records, and the run report, MLflow's nested
runs and ``keel reproduce`` read them without knowing which family tuned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Trial:
    """One tuning trial: its parameters, fold scores and what became of it."""

    number: int
    params: dict[str, Any]
    state: str
    score: float | None
    fold_scores: list[float]
    seconds: float
    fold_metrics: list[dict[str, float]] = field(default_factory=list, repr=False)
    # out-of-fold raw scores or values per train row (NaN: never held out); kept for
    # the best few trials only, when tuning was asked to keep them
    outputs: np.ndarray | None = field(default=None, repr=False)


@dataclass
class TuningResult:
    """The outcome of tuning one candidate."""

    name: str
    metric: str
    best_params: dict[str, Any]
    best_score: float | None
    trials: list[Trial] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def best_fold_metrics(self) -> list[dict[str, float]]:
        """Every metric on each fold for the best parameters: their cross-validation.

        The folds are those :func:`cross_validate` makes for the same rows and seed, so
        the chosen model's CV need not be fitted again.
        """
        for trial in self.trials:
            if trial.state == "complete" and trial.params == self.best_params:
                return trial.fold_metrics
        return []
