"""Feature-code tests run on the shipped pipeline: the evidence of the ``feature_code`` gate.

The feature pipeline lives inside the model, so its tests run on the model that ships,
on real test rows, every run: the answers of the DoD item "feature code tested" are
recorded with the version instead of assumed from a commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from keel.data import LabelInfo, Schema
from keel.families.tabular.training._candidates import predict_with

ROWS = 200


def run_feature_tests(
    model: Any, rows: pd.DataFrame, schema: Schema, labels: LabelInfo, keep: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """Four contract tests of the feature pipeline inside ``model``.

    ``keep`` names columns left as they are (sensitive features a mitigated model
    needs at prediction time). Returns ``[{"name", "passed", "detail"}]``.
    """
    features = list(schema.feature_names)
    sample = rows[features].head(ROWS).reset_index(drop=True)
    if sample.empty:
        return [{"name": "rows", "passed": False, "detail": "no test rows to test the features on"}]
    base = _answers(model, sample, labels)
    found = []
    again = _answers(model, sample.copy(), labels)
    found.append(
        _result(
            "deterministic",
            again == base,
            "the same rows give the same answers twice",
        )
    )
    shuffled = sample[list(reversed(features))]
    found.append(
        _result(
            "column_order",
            _answers(model, shuffled, labels) == base,
            "columns in another order give the same answers (matched by name)",
        )
    )
    blank = sample.copy()
    for name in features:
        if name not in keep:
            blank[name] = np.nan if schema[name].kind in ("integer", "float") else None
    found.append(_survives("missing_values", model, blank, labels, "every feature missing"))
    unseen = sample.copy()
    categorical = [
        n for n in features if schema[n].kind not in ("integer", "float") and n not in keep
    ]
    for name in categorical:
        unseen[name] = "__keel_unseen_category__"
    found.append(
        _survives(
            "unseen_categories",
            model,
            unseen,
            labels,
            f"a category never seen in training in {len(categorical)} column(s)",
        )
    )
    return found


def _answers(model: Any, frame: pd.DataFrame, labels: LabelInfo) -> list:
    predictions, proba, _ = predict_with(model, frame, labels.task)
    values = np.asarray(proba if proba is not None else predictions)
    return values.tolist()


def _survives(name: str, model: Any, frame: pd.DataFrame, labels: LabelInfo, what: str) -> dict:
    try:
        answers = _answers(model, frame, labels)
    except Exception as exc:  # a failed test is a finding, recorded with its reason
        return _result(name, False, f"{what}: {type(exc).__name__}: {str(exc)[:200]}")
    # probabilities (classification) or values (regression): numbers either way
    finite = bool(np.isfinite(np.asarray(answers, dtype=float)).all())
    return _result(
        name,
        len(answers) == len(frame) and finite,
        f"{what}: one finite answer per row" if finite else f"{what}: non-finite answers",
    )


def _result(name: str, passed: bool, detail: str) -> dict[str, Any]:
    return {"name": name, "passed": bool(passed), "detail": detail}


__all__ = ["run_feature_tests"]
