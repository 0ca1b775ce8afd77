"""A new version against the champion, on the same test rows: promote it only if better.

The challenger takes the champion's place only when it is better on the primary metric
beyond noise (the whole 95 % interval of the paired bootstrap difference on the new
run's test rows clears zero) and not worse on fairness (no fairness difference grows,
no ratio shrinks, by more than ``FAIRNESS_TOLERANCE``). Otherwise it stays
``challenger`` and the report says why.

Both models are scored only on test rows the champion was not fitted on: its package
records the rows it saw (``training_rows.json``), and a new run's split differs from
the champion's as soon as the data or the feature list changes. Scoring the champion
on its own training rows would flatter it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from keel.data import rows_seen
from keel.errors import KeelError
from keel.evaluation import baseline_gate, paired_difference
from keel.families.tabular.training import predict_with
from keel.registry import load_package
from keel.tasks import get_task

FAIRNESS_TOLERANCE = 0.01
MIN_UNSEEN_ROWS = 30  # fewer test rows unseen by the champion: no verdict


def _not_comparable(champion: Any, test_rows: pd.DataFrame, labels: Any) -> str | None:
    """Why the champion cannot be judged on these rows (another task, missing columns)."""
    if get_task(champion.task) is not labels.kind:
        return f"the champion is a {champion.task} model"
    missing = [c for c in champion.schema.feature_names if c not in test_rows.columns]
    if missing:
        return f"the champion needs columns this data lacks: {', '.join(missing[:5])}"
    return None


def _decision(better: bool, worse: list[str], numbers: str, version: str) -> dict[str, Any]:
    """Promote only when better beyond noise and no fairness measure got worse."""
    if not better:
        return {"promote": False, "reason": f"not better than champion v{version}: {numbers}"}
    if worse:
        return {
            "promote": False,
            "reason": f"better ({numbers}) but worse on fairness: {'; '.join(worse)}",
        }
    return {
        "promote": True,
        "reason": f"better than champion v{version}: {numbers}; fairness not worse",
    }


def _fairness_worse(before: Any, after: Any) -> list[str]:
    """Fairness measures the challenger makes worse than the champion, beyond tolerance."""
    worse = []
    for feature, result in after.features.items():
        theirs = before.features.get(feature, {}).get("measures", {})
        for measure, value in result["measures"].items():
            old = theirs.get(measure)
            if old is None or value != value or old != old:
                continue
            grew = value - old if not measure.endswith("ratio") else old - value
            if grew > FAIRNESS_TOLERANCE:
                worse.append(f"{feature} {measure} {old:.3f} → {value:.3f}")
    return worse


def versus_champion(
    uri: str,
    name: str,
    challenger: Any,
    challenger_threshold: float | None,
    test_rows: pd.DataFrame,
    features: list[str],
    target: str,
    labels: Any,
    fairness_of: Any,
    challenger_fairness: Any,
    seed: int = 0,
) -> dict[str, Any]:
    """Compare the new model with ``name@champion`` on ``test_rows``.

    ``fairness_of(model, threshold, schema)`` assesses a model's decisions on the same
    rows and groups. Returns ``{"compared", "promote", "reason", ...}``; never raises for
    a champion that cannot be compared (other features, other task, unloadable): it
    says why instead.
    """
    try:
        champion = load_package(f"{name}@champion", uri)
    except KeelError as exc:
        return {"compared": False, "promote": False, "reason": f"champion not loadable: {exc}"}
    out: dict[str, Any] = {"champion_version": champion.version, "compared": False}
    why = _not_comparable(champion, test_rows, labels)
    if why:
        return {**out, "promote": False, "reason": f"not comparable: {why}"}
    seen = None
    if "training_rows.json" in champion.documents:
        seen = rows_seen(champion.documents["training_rows.json"], test_rows)
    if seen is None:
        out["unseen_rows"] = "unknown: the champion's package does not say which rows it saw"
    else:
        out["champion_trained_on_test_rows"] = int(seen.sum())
        if len(seen) - int(seen.sum()) < MIN_UNSEEN_ROWS:
            return {
                **out,
                "promote": False,
                "reason": f"not comparable: the champion was trained on {int(seen.sum())} of"
                f" the {len(seen)} test rows; fewer than {MIN_UNSEEN_ROWS} are new to it",
            }
        test_rows = test_rows.loc[~seen]
    spec = labels.primary
    y = labels.kind.truth(test_rows[target])
    champion_threshold = champion.metadata.get("decision_threshold")
    scored = []
    for model, cut, columns in (
        (challenger, challenger_threshold, features),
        (champion.model, champion_threshold, champion.schema.feature_names),
    ):
        predictions, proba, classes = predict_with(
            model, test_rows[columns], labels.task, cut, labels.positive_class
        )
        scored.append((predictions, proba, classes))

    def primary(which: int):
        predictions, proba, classes = scored[which]

        def compute(rows: np.ndarray) -> float:
            values = labels.kind.metrics.fast(
                y[rows],
                predictions[rows],
                None if proba is None else proba[rows],
                classes,
                labels.positive_class,
            )
            return values.get(spec.name, float("nan"))

        return compute

    difference = paired_difference(primary(0), primary(1), len(y), seed=seed)
    verdict = baseline_gate(
        spec.name, spec.greater_is_better, "challenger", "champion", difference, 0.0
    )
    out.update(
        compared=True,
        rows=len(y),
        metric=spec.name,
        difference=difference.to_dict(),
        better=verdict.passed,
    )
    worse = (
        _fairness_worse(
            fairness_of(champion.model, champion_threshold, champion.schema), challenger_fairness
        )
        if challenger_fairness is not None
        else []
    )
    out["fairness_worse"] = worse
    d = difference
    where = f"on the same {len(y)} test rows"
    if seen is not None and seen.any():
        where += f" it never trained on ({int(seen.sum())} it had seen left out)"
    numbers = f"{spec.name} {d.value:+.4f} (95% CI {d.low:+.4f} to {d.high:+.4f}) {where}"
    out.update(_decision(verdict.passed, worse, numbers, champion.version))
    return out


__all__ = ["FAIRNESS_TOLERANCE", "MIN_UNSEEN_ROWS", "versus_champion"]
