"""Fairness numbers: equal to fairlearn's own on the same decisions, judged against limits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    demographic_parity_ratio,
    equal_opportunity_difference,
    equalized_odds_difference,
    selection_rate,
)
from pydantic import ValidationError

from keel.config import FairnessConfig
from keel.families.tabular.responsible import assess_fairness, bin_edges, group_labels

MEASURES = {
    "demographic_parity_difference": demographic_parity_difference,
    "demographic_parity_ratio": demographic_parity_ratio,
    "equalized_odds_difference": equalized_odds_difference,
    "equal_opportunity_difference": equal_opportunity_difference,
}


@pytest.fixture(scope="module")
def decided(adult_frame: pd.DataFrame):
    """Decisions of a real model (logistic regression) on the Adult sample."""
    from sklearn.linear_model import LogisticRegression

    x = pd.get_dummies(adult_frame[["age", "education-num", "hours-per-week", "occupation"]])
    y = (adult_frame["income"] == ">50K").to_numpy()
    model = LogisticRegression(max_iter=2000).fit(x, y)
    predictions = np.where(model.predict(x), ">50K", "<=50K")
    return adult_frame, predictions


def test_every_measure_equals_fairlearn(decided) -> None:
    frame, predictions = decided
    edges = {"age": bin_edges(frame["age"], [30, 50])}
    groups = group_labels(frame, ["sex", "race", "age"], edges)
    report = assess_fairness(
        frame["income"].to_numpy(), predictions, groups, "binary", ">50K", FairnessConfig()
    )
    truth = (frame["income"] == ">50K").astype(int)
    decisions = (predictions == ">50K").astype(int)
    for feature in ("sex", "race", "age", "sex & race & age"):
        found = report.features[feature]
        labels = (
            groups[feature] if feature in groups else groups.astype(str).agg(" & ".join, axis=1)
        )
        # every group: fairlearn's own per-group numbers
        expected = MetricFrame(
            metrics=selection_rate, y_true=truth, y_pred=decisions, sensitive_features=labels
        ).by_group
        for g in found["groups"]:
            assert g["selection_rate"]["value"] == pytest.approx(expected[g["group"]], abs=1e-12)
            assert g["rows"] == int((labels == g["group"]).sum())
            assert g["judged"] == (g["rows"] >= 30)
        # all groups: fairlearn's functions on every row
        for name, function in MEASURES.items():
            assert found["all_groups"][name] == pytest.approx(
                function(truth, decisions, sensitive_features=labels), abs=1e-12
            )
        # judged groups: the same functions on the rows of the judged groups only
        keep = ~labels.isin(found["small_groups"]).to_numpy()
        if len(set(labels[keep])) > 1:
            for name, function in MEASURES.items():
                assert found["measures"][name] == pytest.approx(
                    function(truth[keep], decisions[keep], sensitive_features=labels[keep]),
                    abs=1e-12,
                )
    assert report.features["race"]["small_groups"]  # the sample has races under 30 rows
    assert not report.judged and report.passed


def test_intervals_hold_the_point_values(decided) -> None:
    frame, predictions = decided
    groups = group_labels(frame, ["sex"], {})
    report = assess_fairness(
        frame["income"].to_numpy(), predictions, groups, "binary", ">50K", FairnessConfig()
    )
    for g in report.features["sex"]["groups"]:
        for metric in ("selection_rate", "true_positive_rate", "false_positive_rate", "accuracy"):
            v = g[metric]
            assert v["low"] <= v["value"] <= v["high"] and 0 < v["high"] - v["low"] < 0.3


def test_limits_are_judged_with_the_groups_named(decided) -> None:
    frame, predictions = decided
    groups = group_labels(frame, ["sex"], {})
    config = FairnessConfig(min_disparate_impact_ratio=0.8, max_equalized_odds_difference=0.99)
    report = assess_fairness(
        frame["income"].to_numpy(), predictions, groups, "binary", ">50K", config
    )
    assert report.judged and not report.passed
    [breach] = report.breaches
    assert breach["measure"] == "disparate_impact_ratio" and breach["value"] < 0.8
    assert breach["groups"]["lowest"]["group"] == "Female"
    assert "fairness gate FAILED: sex disparate_impact_ratio" in report.describe()
    assert report.to_dict()["limits"]["disparate_impact_ratio"] == {"kind": "min", "value": 0.8}


def test_binning_and_missing_values() -> None:
    frame = pd.DataFrame({"age": [17, 25, 30, 49, 50, 90, None], "flag": ["a"] * 6 + [None]})
    labels = group_labels(frame, ["age", "flag"], {"age": [30, 50]})
    assert labels["age"].tolist() == [
        "< 30",
        "< 30",
        "[30, 50)",
        "[30, 50)",
        ">= 50",
        ">= 50",
        "(missing)",
    ]
    assert labels["flag"].tolist()[-1] == "(missing)"
    quartiles = bin_edges(pd.Series(np.arange(100)), None)
    assert quartiles == pytest.approx([24.75, 49.5, 74.25])
    with pytest.raises(ValidationError, match="must be increasing"):
        FairnessConfig(bins={"age": [50, 30]})


def test_regression_and_multiclass_report_error_spreads() -> None:
    rng = np.random.default_rng(0)
    groups = pd.DataFrame({"g": rng.choice(["a", "b"], 400)})
    truth = rng.normal(size=400)
    noisy = truth + np.where(groups["g"] == "a", 0.1, 1.0) * rng.normal(size=400)
    report = assess_fairness(truth, noisy, groups, "regression", None, FairnessConfig())
    by = {g["group"]: g for g in report.features["g"]["groups"]}
    assert by["a"]["rmse"]["value"] < by["b"]["rmse"]["value"]
    assert report.features["g"]["measures"]["rmse_difference"] == pytest.approx(
        by["b"]["rmse"]["value"] - by["a"]["rmse"]["value"]
    )
    classes = rng.choice(["x", "y", "z"], 400)
    report = assess_fairness(classes, classes, groups, "multiclass", None, FairnessConfig())
    assert report.features["g"]["measures"]["accuracy_difference"] == 0.0


def test_reweighing_makes_label_independent_of_group(adult_frame: pd.DataFrame) -> None:
    from keel.families.tabular.responsible import reweighing_weights

    assert reweighing_weights(adult_frame, "income", ["sex"], {}).sum() == pytest.approx(2000)
    weights = reweighing_weights(adult_frame, "income", ["sex", "race"], {})
    frame = adult_frame.assign(w=weights, g=adult_frame["sex"] + " & " + adult_frame["race"])
    n = len(frame)
    for (group, label), cell in frame.groupby(["g", "income"])["w"].sum().items():
        expected = (frame["g"] == group).sum() * (frame["income"] == label).sum() / n
        assert cell == pytest.approx(expected)
