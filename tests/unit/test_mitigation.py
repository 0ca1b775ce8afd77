"""Bias mitigation: Keel's saved forms decide exactly as fairlearn's own objects say."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from fairlearn.metrics import demographic_parity_difference
from fairlearn.postprocessing import ThresholdOptimizer
from fairlearn.reductions import DemographicParity, ExponentiatedGradient

from keel._groups import group_keys
from keel.data import infer_schema
from keel.estimators import (
    GroupThresholdClassifier,
    MixtureClassifier,
    decides_itself,
    row_coins,
)
from keel.families.tabular.responsible import mitigation_fitter
from keel.families.tabular.responsible._mitigate import _rule, _ScoreColumn
from keel.families.tabular.training import make_pipeline
from keel.registry import TRUSTED_TYPES

POSITIVE = ">50K"


@pytest.fixture(scope="module")
def parts(adult_frame: pd.DataFrame):
    frame = adult_frame.drop(columns=["fnlwgt"])
    schema = infer_schema(frame, "income")
    return frame.iloc[:1500], frame.iloc[1500:], schema


def _gap(rows: pd.DataFrame, decided: np.ndarray) -> float:
    return demographic_parity_difference(
        rows["income"] == POSITIVE, decided == POSITIVE, sensitive_features=rows["sex"]
    )


def test_row_coins_are_fixed_by_the_row_and_uniform() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=20_000), "b": rng.integers(0, 5, 20_000)})
    coins = row_coins(frame)
    assert ((coins >= 0) & (coins < 1)).all()
    assert np.array_equal(coins, row_coins(frame.copy()))  # same rows, same coins
    assert np.array_equal(coins[:10], row_coins(frame.head(10)))  # not tied to position
    assert abs(coins.mean() - 0.5) < 0.01 and abs(np.quantile(coins, 0.1) - 0.1) < 0.01
    assert not np.array_equal(row_coins(frame.assign(a=frame["a"] + 1)), coins)


def test_mixture_is_fairlearns_exponentiated_gradient(parts) -> None:
    train, test, schema = parts
    features = schema.feature_names
    pipeline = make_pipeline("linear", "binary", schema, 0)
    fit = mitigation_fitter(
        "exponentiated_gradient",
        target="income",
        features=features,
        sensitive=["sex"],
        edges={},
        positive_class=POSITIVE,
        iterations=15,
    )
    shipped = fit(pipeline, train)
    mixture = shipped.named_steps["model"]
    assert isinstance(mixture, MixtureClassifier) and decides_itself(shipped)
    # fairlearn's own reduction, run the same way, gives the same probabilities
    matrix = shipped.named_steps["preprocess"].transform(train[features])
    reduction = ExponentiatedGradient(
        make_pipeline("linear", "binary", schema, 0).named_steps["model"],
        DemographicParity(),
        max_iter=15,
    )
    groups = group_keys(train, ["sex"], {}).to_numpy()
    with warnings.catch_warnings():  # fairlearn 0.15 + pandas 3: a deprecation warning
        warnings.simplefilter("ignore")
        reduction.fit(matrix, (train["income"] == POSITIVE).astype(int), sensitive_features=groups)
    test_matrix = shipped.named_steps["preprocess"].transform(test[features])
    expected = reduction._pmf_predict(test_matrix)[:, 1]
    got = shipped.named_steps["model"].decision_probability(test_matrix)
    assert np.allclose(got, expected, atol=1e-9)
    # decisions: the coin of each row, so repeatable; and the gap between sexes shrinks
    decided = shipped.predict(test[features])
    assert np.array_equal(decided, shipped.predict(test[features]))
    plain = make_pipeline("linear", "binary", schema, 0).fit(train[features], train["income"])
    assert _gap(test, decided) < _gap(test, plain.predict(test[features]))
    # the saved form holds only types Keel declares trusted, and loads back the same
    untrusted = set(sio.get_untrusted_types(data=sio.dumps(shipped)))
    assert untrusted <= set(TRUSTED_TYPES)
    again = sio.loads(sio.dumps(shipped), trusted=sorted(untrusted))
    assert np.array_equal(again.predict(test[features]), decided)


@pytest.mark.parametrize("constraint", ["demographic_parity", "equalized_odds"])
def test_group_thresholds_are_fairlearns_threshold_optimizer(parts, constraint) -> None:
    train, test, schema = parts
    features = schema.feature_names
    edges = {"age": [30.0, 50.0]}
    fit = mitigation_fitter(
        "threshold_optimizer",
        target="income",
        features=features,
        sensitive=["sex", "age"],
        edges=edges,
        positive_class=POSITIVE,
        constraint=constraint,
        folds=3,
    )
    shipped = fit(make_pipeline("linear", "binary", schema, 0), train)
    assert isinstance(shipped, GroupThresholdClassifier) and decides_itself(shipped)
    assert len(shipped.rules) == 6 and shipped.unadjusted == {}  # 2 sexes x 3 age bins
    # fairlearn's optimizer on the same scores and groups answers the same probabilities
    scores = shipped.base_scores(test[features])
    optimizer = ThresholdOptimizer(
        estimator=_ScoreColumn(),
        constraints=constraint,
        prefit=True,
        predict_method="predict",
    )
    keys = group_keys(test, ["sex", "age"], edges).to_numpy()
    # fairlearn cannot fit a group with one label: none of 53 test women under 30 earn >50K
    adjusted = keys != "Female & < 30"
    test, scores, keys = test[adjusted], scores[adjusted], keys[adjusted]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optimizer.fit(
            pd.DataFrame({"score": scores}),
            (test["income"] == POSITIVE).astype(int),
            sensitive_features=keys,
        )
    # swap in the fitted rules so that both sides hold the same thresholds
    shipped.rules = {
        k: _rule(b) for k, b in optimizer.interpolated_thresholder_.interpolation_dict.items()
    }
    expected = optimizer._pmf_predict(pd.DataFrame({"score": scores}), sensitive_features=keys)
    got = shipped.decision_probability(test[features])
    assert np.allclose(got, expected[:, 1], atol=1e-12)
    # the score is the base model's own probability
    column = list(shipped.classes_).index(POSITIVE)
    assert np.allclose(shipped.predict_proba(test[features])[:, column], scores, atol=1e-12)


def test_threshold_optimizer_narrows_the_gap_and_handles_unseen_groups(parts) -> None:
    train, test, schema = parts
    features = schema.feature_names
    fit = mitigation_fitter(
        "threshold_optimizer",
        target="income",
        features=features,
        sensitive=["sex"],
        edges={},
        positive_class=POSITIVE,
        folds=3,
    )
    shipped = fit(make_pipeline("linear", "binary", schema, 0), train)
    plain = make_pipeline("linear", "binary", schema, 0).fit(train[features], train["income"])
    assert _gap(test, shipped.predict(test[features])) < _gap(test, plain.predict(test[features]))
    # a group never seen while fitting: the base model's own decision at 0.5
    odd = test[features].head(50).assign(sex="Unstated")
    base = shipped.estimator.predict_proba(odd)[:, list(shipped.classes_).index(POSITIVE)]
    assert np.array_equal(shipped.decision_probability(odd), (base >= 0.5).astype(float))
    # the explanation reads the base model's steps
    assert shipped.named_steps["model"] is shipped.estimator.named_steps["model"]


def test_groups_too_small_or_with_one_label_keep_the_base_decision(parts) -> None:
    train, test, schema = parts
    features = schema.feature_names
    fit = mitigation_fitter(
        "threshold_optimizer",
        target="income",
        features=features,
        sensitive=["sex", "age"],
        edges={"age": [30.0, 50.0]},
        positive_class=POSITIVE,
        folds=3,
        min_group_size=100,
    )
    # fitted on the test rows: "Female & < 30" has 53 rows, none of them >50K
    shipped = fit(make_pipeline("linear", "binary", schema, 0), test)
    assert set(shipped.unadjusted) == {
        "Female & < 30",
        "Female & [30, 50)",
        "Female & >= 50",
        "Male & < 30",
        "Male & >= 50",
    }
    assert set(shipped.rules) == {"Male & [30, 50)"}
    with pytest.raises(ValueError, match="no sensitive group"):
        mitigation_fitter(
            "threshold_optimizer",
            target="income",
            features=features,
            sensitive=["sex"],
            edges={},
            positive_class=POSITIVE,
            folds=3,
            min_group_size=10_000,
        )(make_pipeline("linear", "binary", schema, 0), train)


def test_reweighing_fitter_and_none(parts) -> None:
    train, _test, schema = parts
    common = {
        "target": "income",
        "features": schema.feature_names,
        "sensitive": ["sex"],
        "edges": {},
        "positive_class": POSITIVE,
    }
    assert mitigation_fitter("none", **common) is None
    model = mitigation_fitter("reweighing", **common)(
        make_pipeline("linear", "binary", schema, 0), train
    )
    assert not decides_itself(model)
    with pytest.raises(ValueError, match="unknown mitigation"):
        mitigation_fitter("magic", **common)


def test_built_estimators_refuse_fit() -> None:
    with pytest.raises(TypeError, match="ExponentiatedGradient"):
        MixtureClassifier().fit(None, None)
    with pytest.raises(TypeError, match="ThresholdOptimizer"):
        GroupThresholdClassifier().fit(None, None)
