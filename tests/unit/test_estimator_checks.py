"""scikit-learn's own estimator contract, run on every estimator class Keel ships.

Every tabular package stores these classes by import path (``keel.estimators.X``), so
they must behave like any scikit-learn estimator: ``clone``, search, pipelines,
``NotFittedError`` before ``fit``, ``n_features_in_``, honest input tags. One pytest id
per (estimator, check), as in scikit-learn's own ``test_common.py``.
"""

from __future__ import annotations

import pytest
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
from sklearn.utils.estimator_checks import parametrize_with_checks

from keel import estimators
from keel.estimators import (
    EnsembleClassifier,
    EnsembleRegressor,
    GroupThresholdClassifier,
    LabelledXGBClassifier,
    MixtureClassifier,
)

# MixtureClassifier and GroupThresholdClassifier hold a fitted fairlearn result
# (ExponentiatedGradient's mixture, ThresholdOptimizer's per-group rules); their `fit`
# refuses by design (tests/unit/test_mitigation.py), as a frozen estimator would, so the
# checks that fit them cannot pass. Every other check runs and must pass.
BUILT_FROM_FITTED = "built from a fitted fairlearn result: fit refuses by design"
FIT_CHECKS = (
    "check_classifier_data_not_an_array",
    "check_classifiers_classes",
    "check_classifiers_one_label",
    "check_classifiers_regression_target",
    "check_classifiers_train",
    "check_complex_data",
    "check_dict_unchanged",
    "check_dont_overwrite_parameters",
    "check_dtype_object",
    "check_estimator_sparse_array",
    "check_estimator_sparse_matrix",
    "check_estimator_sparse_tag",
    "check_estimators_dtypes",
    "check_estimators_empty_data_messages",
    "check_estimators_fit_returns_self",
    "check_estimators_nan_inf",
    "check_estimators_overwrite_params",
    "check_estimators_pickle",
    "check_f_contiguous_array_estimator",
    "check_fit1d",
    "check_fit2d_1feature",
    "check_fit2d_1sample",
    "check_fit2d_predict1d",
    "check_fit_check_is_fitted",
    "check_fit_idempotent",
    "check_fit_score_takes_y",
    "check_methods_sample_order_invariance",
    "check_methods_subset_invariance",
    "check_n_features_in",
    "check_n_features_in_after_fitting",
    "check_pipeline_consistency",
    "check_positive_only_tag_during_fit",
    "check_readonly_memmap_input",
    "check_requires_y_none",
    "check_supervised_y_2d",
    "check_supervised_y_no_nan",
)

ESTIMATORS = [
    EnsembleClassifier(
        members=[
            ("logistic", LogisticRegression()),
            ("tree", DecisionTreeClassifier(random_state=0)),
        ],
        weights=[0.6, 0.4],
    ),
    EnsembleRegressor(
        members=[("ridge", Ridge()), ("tree", DecisionTreeRegressor(random_state=0))],
        weights=[0.6, 0.4],
    ),
    LabelledXGBClassifier(n_estimators=5, n_jobs=1, random_state=0),
    MixtureClassifier(
        members=[LogisticRegression()], weights=[1.0], classes=[0, 1], positive_class=1
    ),
    GroupThresholdClassifier(
        estimator=LogisticRegression(), sensitive=[], rules={}, positive_class=1
    ),
]


def _expected_failures(estimator) -> dict[str, str]:
    if isinstance(estimator, MixtureClassifier | GroupThresholdClassifier):
        return dict.fromkeys(FIT_CHECKS, BUILT_FROM_FITTED)
    return {}


def test_every_shipped_estimator_class_is_checked():
    shipped = {
        name
        for name in estimators.__all__
        if isinstance(getattr(estimators, name), type) and name[0].isupper()
    }
    assert shipped == {type(e).__name__ for e in ESTIMATORS}


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.SkipTestWarning")
@pytest.mark.filterwarnings("ignore::FutureWarning:sklearn.*")
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@parametrize_with_checks(ESTIMATORS, expected_failed_checks=_expected_failures)
def test_scikit_learn_contract(estimator, check):
    check(estimator)
