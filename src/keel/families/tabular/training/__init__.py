"""Training: baselines and candidates, each a Pipeline with its preprocessing inside."""

from keel.families.tabular.training._assess import (
    Assessment,
    assess,
    choose_threshold,
    refit_on_all_rows,
    refit_on_train_and_validation,
)
from keel.families.tabular.training._behaviour import check_behaviour_config, run_behaviour_tests
from keel.families.tabular.training._candidates import (
    BASELINES,
    CANDIDATE_FACTORIES,
    TrainedCandidate,
    build_candidate,
    evaluate_pipeline,
    make_pipeline,
    predict_with,
    select_best,
    train_candidates,
)
from keel.families.tabular.training._curves import learning_curve
from keel.families.tabular.training._ensemble import make_ensemble, select_ensemble
from keel.families.tabular.training._feature_tests import run_feature_tests
from keel.families.tabular.training._slices import slice_report, worst_rows
from keel.families.tabular.training._tuning import (
    DEFAULT_TRIALS,
    SEARCH_SPACES,
    RayFolds,
    Trial,
    TuningResult,
    cross_validate,
    fold_indices,
    folds_for,
    summarize_folds,
    tune,
)

__all__ = [
    "BASELINES",
    "CANDIDATE_FACTORIES",
    "DEFAULT_TRIALS",
    "SEARCH_SPACES",
    "Assessment",
    "RayFolds",
    "TrainedCandidate",
    "Trial",
    "TuningResult",
    "assess",
    "build_candidate",
    "check_behaviour_config",
    "choose_threshold",
    "cross_validate",
    "evaluate_pipeline",
    "fold_indices",
    "folds_for",
    "learning_curve",
    "make_ensemble",
    "make_pipeline",
    "predict_with",
    "refit_on_all_rows",
    "refit_on_train_and_validation",
    "run_behaviour_tests",
    "run_feature_tests",
    "select_best",
    "select_ensemble",
    "slice_report",
    "summarize_folds",
    "train_candidates",
    "tune",
    "worst_rows",
]
