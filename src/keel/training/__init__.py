"""Training: baselines and candidates, each a Pipeline with its preprocessing inside."""

from keel.training._candidates import (
    CANDIDATE_FACTORIES,
    TrainedCandidate,
    evaluate_pipeline,
    make_pipeline,
    predict_with,
    select_best,
    train_candidates,
)

__all__ = [
    "CANDIDATE_FACTORIES",
    "TrainedCandidate",
    "evaluate_pipeline",
    "make_pipeline",
    "predict_with",
    "select_best",
    "train_candidates",
]
