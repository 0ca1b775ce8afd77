"""The compiled serving path gives the pipeline's answers exactly, or is not used."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from keel.data import infer_schema, prepare_labels, records_to_frame
from keel.families.tabular.serving.fast import compile_pipeline, verified
from keel.families.tabular.serving.served import Served
from keel.families.tabular.training import make_pipeline
from keel.registry import LoadedPackage


def _rows(frame: pd.DataFrame) -> list[dict]:
    return json.loads(frame.to_json(orient="records"))


@pytest.mark.parametrize(
    ("target", "task", "candidate"),
    [
        ("income", "binary", "lightgbm"),
        ("race", "multiclass", "lightgbm"),
        ("hours-per-week", "regression", "lightgbm"),
        ("income", "binary", "linear"),  # standardised numbers
        ("race", "multiclass", "random_forest"),
        ("hours-per-week", "regression", "hist_gradient_boosting"),
        ("income", "binary", "lightgbm native"),  # string features as category codes
        ("race", "multiclass", "lightgbm native"),
        ("income", "binary", "ensemble"),  # members' boosters called directly
        ("race", "multiclass", "ensemble"),
        ("hours-per-week", "regression", "ensemble"),
    ],
)
def test_fast_path_equals_the_pipeline(adult_frame, target, task, candidate) -> None:
    from keel.families.tabular.training import build_candidate

    frame, labels = prepare_labels(adult_frame, target, task, None)
    schema = infer_schema(frame, target, ["fnlwgt"])
    train, test = frame.iloc[:1500], frame.iloc[1500:]
    name, _, native = candidate.partition(" ")
    params = {"categories": "native"} if native else None
    if name == "ensemble":
        from keel.families.tabular.training import make_ensemble

        members = [
            {"name": "lightgbm", "candidate": "lightgbm", "params": {}, "weight": 0.6},
            {
                "name": "lightgbm-2",
                "candidate": "lightgbm",
                "params": {"num_leaves": 8},
                "weight": 0.4,
            },
        ]
        model = make_ensemble({"members": members}, task, schema, 0)
    else:
        model = build_candidate(name, task, schema, 0, params)
    model.fit(train[schema.feature_names], train[target])
    if name == "ensemble":  # the boosters are called directly, not through sklearn
        from keel.families.tabular.serving.fast import compile_pipeline

        calls = compile_pipeline(model)
        assert (calls._proba if task != "regression" else calls._predict) is not None
    if native:  # one column of codes per string feature, and LightGBM told which
        width = model.named_steps["preprocess"].transform(train[schema.feature_names]).shape[1]
        assert width == len(schema.feature_names)
        assert model.named_steps["model"].booster_.params["categorical_feature"]
    rows = _rows(test.drop(columns=[target]))
    # hostile-but-valid rows: unseen categories and every nullable field missing
    odd = dict(rows[0])
    for column in schema.features:
        if column.kind == "string":
            odd[column.name] = "never seen in training"
    rows += [odd, {k: (None if schema[k].nullable else v) for k, v in rows[1].items()}]
    package = LoadedPackage(
        target, "1", None, model, schema, task, labels.classes, {}, {"background.json": rows[:100]}
    )
    fast, slow = Served(package), Served(LoadedPackage(**{**package.__dict__, "documents": {}}))
    assert fast.fast is not None and slow.fast is None
    (a, errors), (b, _) = fast.answer(rows), slow.answer(rows)
    assert not errors, errors[:2]
    assert a["predictions"] == b["predictions"]
    if "probabilities" in a:
        got = np.array([[p[c] for c in sorted(p)] for p in a["probabilities"]])
        want = np.array([[p[c] for c in sorted(p)] for p in b["probabilities"]])
        assert np.abs(got - want).max() <= 1e-9
    # one row at a time: LightGBM's single-row C API, the same answers
    for row in [*rows[:15], odd]:
        (one, _), (other, _) = fast.answer([row]), slow.answer([row])
        assert one["predictions"] == other["predictions"]
        for p, q in zip(one.get("probabilities", []), other.get("probabilities", []), strict=True):
            assert max(abs(p[c] - q[c]) for c in p) <= 1e-9


def test_fast_path_is_refused_when_it_would_differ(adult_frame) -> None:
    frame, _ = prepare_labels(adult_frame, "income", None, None)
    schema = infer_schema(frame, "income", ["fnlwgt"])
    model = make_pipeline("lightgbm", "binary", schema, 0).fit(
        frame[schema.feature_names], frame["income"]
    )
    rows = _rows(frame.drop(columns=["income"]).head(50))
    values, _ = records_to_frame(rows, schema, as_columns=True)
    table, _ = records_to_frame(rows, schema)
    fast = compile_pipeline(model)
    assert verified(fast, model, table, values)
    # a one-hot block that disagrees with the encoder: two categories swapped
    onehot = next(b for b in fast.blocks if hasattr(b, "maps"))
    first, second = list(onehot.maps[0])[:2]
    onehot.maps[0][first], onehot.maps[0][second] = onehot.maps[0][second], onehot.maps[0][first]
    assert not verified(fast, model, table, values)
    assert compile_pipeline(model.named_steps["model"]) is None  # not a Keel pipeline
