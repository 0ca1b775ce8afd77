"""Estimator classes that Keel's saved models refer to by import path.

A model package stores the path of every class it holds (``keel.estimators.X``), so
the names here are part of the package format: keep them importable. This module
sits outside the layers: serving loads models that contain these classes without
importing training code.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from xgboost import XGBClassifier

__all__ = ["LabelledXGBClassifier"]


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
        super().fit(X, codes, **kwargs)
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
