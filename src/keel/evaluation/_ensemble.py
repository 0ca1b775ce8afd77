"""Greedy ensemble selection with replacement (Caruana et al., 2004).

Given each candidate's out-of-fold predictions on the same rows, start from an empty
ensemble and, ``rounds`` times, add (again, if it helps most) the candidate whose
addition gives the best score of the averaged predictions. The ensemble kept is the
best prefix of that sequence, so it is never worse on these rows than the best single
candidate (the first pick). The weights are how often each candidate was picked.
This is what AutoGluon's ``WeightedEnsemble`` does.

Pure: predictions are arrays (probabilities ``(n, classes)`` or values ``(n,)``) and
the score is a function of the averaged array.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Selection:
    """The chosen weights, the score they reach, and the score after each round."""

    weights: dict[str, float]
    score: float
    best_single: str
    best_single_score: float
    trace: list[float] = field(default_factory=list)

    @property
    def members(self) -> list[str]:
        """Candidates with a weight above zero, heaviest first."""
        return [n for n, w in sorted(self.weights.items(), key=lambda kv: -kv[1]) if w > 0]

    def to_dict(self) -> dict[str, object]:
        """JSON form."""
        return {
            "weights": self.weights,
            "score": self.score,
            "best_single": self.best_single,
            "best_single_score": self.best_single_score,
            "trace": self.trace,
        }


def ensemble_selection(
    predictions: Mapping[str, np.ndarray],
    score: Callable[[np.ndarray], float],
    greater_is_better: bool = True,
    rounds: int = 50,
) -> Selection:
    """Caruana's greedy selection with replacement over ``predictions``.

    Ties go to the candidate listed first, so the result is deterministic.
    """
    names = list(predictions)
    if not names:
        raise ValueError("ensemble selection needs at least one candidate")
    arrays = [np.asarray(predictions[n], dtype=float) for n in names]
    shape = arrays[0].shape
    if any(a.shape != shape for a in arrays):
        raise ValueError("every candidate's predictions must cover the same rows")
    sign = 1.0 if greater_is_better else -1.0
    singles = [float(score(a)) for a in arrays]
    best_single = int(np.argmax([sign * s for s in singles]))
    total = np.zeros(shape)
    counts = np.zeros(len(names), dtype=int)
    trace: list[float] = []
    best_score, best_counts = -np.inf, counts.copy()
    for step in range(1, max(1, rounds) + 1):
        trial = [float(score((total + a) / step)) for a in arrays]
        pick = int(np.argmax([sign * t for t in trial]))
        total += arrays[pick]
        counts[pick] += 1
        trace.append(trial[pick])
        if sign * trial[pick] > best_score:
            best_score, best_counts = sign * trial[pick], counts.copy()
    weights = {
        n: float(c) / float(best_counts.sum()) for n, c in zip(names, best_counts, strict=True)
    }
    return Selection(
        weights=weights,
        score=float(sign * best_score),
        best_single=names[best_single],
        best_single_score=singles[best_single],
        trace=trace,
    )


__all__ = ["Selection", "ensemble_selection"]
