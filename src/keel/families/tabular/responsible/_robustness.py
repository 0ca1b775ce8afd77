"""Adversarial robustness of a tabular model, and rules that mimic it.

Robustness asks how easily the model's **decisions** change when its inputs are
disturbed a little — the way noisy sensors, typos, missing fields or a person gaming
the system would disturb them:

- *noise curves*: Gaussian noise of ``level`` × each numeric feature's standard
  deviation (training rows), clipped to the range seen in training;
- *category swaps*: one categorical feature at a time set to another value seen in
  training (drawn by its training frequency);
- *missing values*: one feature at a time made missing;
- *minimal change*: for each of some test rows, the smallest change of one feature
  (numbers in steps of 0.05 standard deviation up to 2; a category swap counts as 1)
  that flips its decision, searched black-box through ``predict``/``predict_proba``.

A decision "flips" when the predicted class changes (binary: the side of the
decision threshold); for regression when the prediction moves by more than a
quarter of the predictions' standard deviation. Everything is seeded.

Rules: a shallow decision tree fitted to the model's decisions on training rows,
with its fidelity (agreement with the model) on test rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from keel.tasks import get_task

MAX_STEPS = 2.0  # standard deviations searched by the minimal-change search
STEP = 0.05
CATEGORY_COST = 1.0  # a category swap costs as much as one standard deviation
REGRESSION_FLIP = 0.25  # × std of the predictions
# the minimal-change search takes about this long at most: a wide table (a swap per
# category, 80 moves per number) and a large model cost ~0.2 s per searched row, so
# after the first PROBE_ROWS, only the rows that fit are searched (the count is shown)
SEARCH_SECONDS = 4.0
PROBE_ROWS = 5


class Decider:
    """The model's decisions on rows, as ``keel serve`` would make them."""

    def __init__(
        self, pipeline: Any, task: str, positive_class: Any, threshold: float | None
    ) -> None:
        self.pipeline = pipeline
        self.task = task
        self.threshold = threshold
        self.column = None
        from keel.estimators import decides_itself

        if (
            get_task(task).thresholded
            and not decides_itself(pipeline)
            and hasattr(pipeline, "predict_proba")
        ):
            classes = [str(c) for c in pipeline.classes_]
            self.column = classes.index(str(positive_class))
        self.tolerance = 0.0

    def __call__(self, rows: pd.DataFrame) -> np.ndarray:
        if self.column is not None:
            score = self.pipeline.predict_proba(rows)[:, self.column]
            return score >= (0.5 if self.threshold is None else self.threshold)
        return np.asarray(self.pipeline.predict(rows))

    def flipped(self, before: np.ndarray, after: np.ndarray) -> np.ndarray:
        """Which decisions changed."""
        if not get_task(self.task).labelled_classes:
            return np.abs(after.astype(float) - before.astype(float)) > self.tolerance
        return before != after


def _spreads(train: pd.DataFrame, numeric: list[str]) -> dict[str, tuple[float, float, float]]:
    out = {}
    for name in numeric:
        values = pd.to_numeric(train[name], errors="coerce").dropna()
        if values.empty:
            continue
        std = float(values.std()) or float(values.abs().mean()) or 1.0
        out[name] = (std, float(values.min()), float(values.max()))
    return out


def _with(rows: pd.DataFrame, name: str, values: Any) -> pd.DataFrame:
    changed = rows.copy()
    dtype = rows[name].dtype
    if pd.api.types.is_integer_dtype(dtype):
        values = np.round(np.asarray(values, dtype=float))
        if not np.isnan(values).any():
            values = values.astype(np.int64)
        else:
            dtype = "Float64" if isinstance(dtype, pd.api.extensions.ExtensionDtype) else float
    changed[name] = pd.Series(values, index=rows.index).astype(dtype, errors="ignore")
    return changed


def noise_curve(
    decide: Decider,
    rows: pd.DataFrame,
    spreads: dict[str, tuple[float, float, float]],
    levels: list[float],
    seed: int,
) -> list[dict[str, float]]:
    """Share of decisions flipped by noise of each level (all numeric features at once)."""
    base = decide(rows)
    rng = np.random.default_rng(seed)
    curve = []
    for level in levels:
        noisy = rows.copy()
        for name, (std, low, high) in spreads.items():
            values = pd.to_numeric(rows[name], errors="coerce").to_numpy(dtype=float)
            moved = np.clip(values + rng.normal(0.0, level * std, len(values)), low, high)
            noisy = _with(noisy, name, moved)
        flips = decide.flipped(base, decide(noisy))
        curve.append({"level": level, "flip_rate": float(flips.mean())})
    return curve


def per_feature(
    decide: Decider,
    rows: pd.DataFrame,
    train: pd.DataFrame,
    features: list[str],
    categorical: set[str],
    seed: int,
) -> tuple[dict[str, float], dict[str, float]]:
    """Flip rates of a category swap and of a missing value, feature by feature.

    Every variant is built first and all are scored in one model call (a wide table
    has a hundred of them; each call costs the preprocessing's fixed overhead).
    """
    base = decide(rows)
    rng = np.random.default_rng(seed)
    variants: list[tuple[str, str, pd.DataFrame]] = []
    for name in features:
        if name in categorical:
            shares = train[name].dropna().astype(str).value_counts(normalize=True)
            if len(shares) > 1:
                current = rows[name].astype(str).to_numpy()
                drawn = rng.choice(shares.index.to_numpy(), size=len(rows), p=shares.to_numpy())
                same = drawn == current
                while same.any():  # another value than the row's own
                    drawn[same] = rng.choice(
                        shares.index.to_numpy(), size=int(same.sum()), p=shares.to_numpy()
                    )
                    same = drawn == current
                swapped = rows.copy()
                swapped[name] = pd.Series(drawn, index=rows.index).astype(rows[name].dtype)
                variants.append(("swap", name, swapped))
        blank = rows.copy()
        if pd.api.types.is_integer_dtype(blank[name].dtype):
            blank[name] = blank[name].astype(float)
        blank[name] = None if blank[name].dtype == object else np.nan
        variants.append(("missing", name, blank))
    rates = _flip_rates(decide, base, variants)
    swaps = {
        name: rate for (kind, name, _), rate in zip(variants, rates, strict=True) if kind == "swap"
    }
    missing = {
        name: rate
        for (kind, name, _), rate in zip(variants, rates, strict=True)
        if kind == "missing"
    }
    return swaps, missing


def _flip_rates(
    decide: Decider, base: np.ndarray, variants: list[tuple[str, str, pd.DataFrame]]
) -> list[float]:
    """Share of rows flipped in each variant: one call for all, or one each if it fails."""
    if not variants:
        return []
    n = len(base)
    try:
        answers = np.asarray(decide(pd.concat([v for _, _, v in variants], ignore_index=True)))
        return [
            float(decide.flipped(base, answers[i * n : (i + 1) * n]).mean())
            for i in range(len(variants))
        ]
    except (ValueError, TypeError):  # one variant the model cannot take: find which
        rates = []
        for _, _, variant in variants:
            try:
                rates.append(float(decide.flipped(base, decide(variant)).mean()))
            except (ValueError, TypeError):
                rates.append(1.0)  # the model cannot take a missing value: every row breaks
        return rates


def minimal_changes(
    decide: Decider,
    rows: pd.DataFrame,
    train: pd.DataFrame,
    spreads: dict[str, tuple[float, float, float]],
    categorical: set[str],
    chunk: int = 100_000,
    seconds: float | None = None,
) -> list[dict[str, Any]]:
    """For each row, the cheapest single-feature change that flips its decision.

    Every trial (each numeric feature moved up and down in steps of ``STEP`` sd, each
    category swapped for one of the 20 most frequent others) is built column-wise and
    scored in large model calls: rows are searched in groups of at most ``chunk``
    trials, so memory stays bounded on wide tables. With ``seconds``, the first
    ``PROBE_ROWS`` rows are timed and only the rows that fit in ``seconds`` are searched.
    """
    options = {
        name: train[name].dropna().astype(str).value_counts().index[:20].to_numpy()
        for name in sorted(categorical)
        if name in rows
    }
    per_row = 2 * len(np.arange(STEP, MAX_STEPS + STEP / 2, STEP)) * len(spreads) + sum(
        len(v) for v in options.values()
    )
    group = max(1, chunk // max(per_row, 1))
    if seconds is not None:
        import time

        started = time.perf_counter()
        found = _search(decide, rows.head(PROBE_ROWS), spreads, options)
        each = (time.perf_counter() - started) / max(1, min(PROBE_ROWS, len(rows)))
        fit = int(max(0.0, seconds - each * PROBE_ROWS) / max(each, 1e-9))
        rows = rows.iloc[PROBE_ROWS : PROBE_ROWS + fit]
    else:
        found = []
    for at in range(0, len(rows), group):
        found += _search(decide, rows.iloc[at : at + group], spreads, options)
    return found


def _search(
    decide: Decider,
    rows: pd.DataFrame,
    spreads: dict[str, tuple[float, float, float]],
    options: dict[str, np.ndarray],
) -> list[dict[str, Any]]:
    steps = np.arange(STEP, MAX_STEPS + STEP / 2, STEP)
    moves = np.concatenate([steps, -steps])  # signed multiples of the std
    n = len(rows)
    parts: list[pd.DataFrame] = []
    owner, costs, features, labels = [], [], [], []
    for name, (std, low, high) in spreads.items():
        values = pd.to_numeric(rows[name], errors="coerce").to_numpy(dtype=float)
        who = np.repeat(np.arange(n), len(moves))
        signed = np.tile(moves, n)
        moved = np.clip(np.repeat(values, len(moves)) + signed * std, low, high)
        keep = ~np.isnan(moved) & (moved != np.repeat(values, len(moves)))
        if not keep.any():
            continue
        parts.append(_with(rows.iloc[who[keep]].reset_index(drop=True), name, moved[keep]))
        owner.append(who[keep])
        costs.append(np.abs(signed[keep]))
        features.append(np.full(int(keep.sum()), name, dtype=object))
        labels.append(
            np.array(
                [f"{name} {'+' if m > 0 else '-'}{abs(m):.2f} sd" for m in signed[keep]],
                dtype=object,
            )
        )
    for name, values in options.items():
        current = rows[name].astype(str).to_numpy()
        who = np.repeat(np.arange(n), len(values))
        value = np.tile(values, n)
        keep = value != np.repeat(current, len(values))
        if not keep.any():
            continue
        trial = rows.iloc[who[keep]].reset_index(drop=True)
        trial[name] = pd.Series(value[keep], dtype=object).astype(rows[name].dtype)
        parts.append(trial)
        owner.append(who[keep])
        costs.append(np.full(int(keep.sum()), CATEGORY_COST))
        features.append(np.full(int(keep.sum()), name, dtype=object))
        labels.append(np.array([f"{name} = {v}" for v in value[keep]], dtype=object))
    if not parts:
        return [{"cost": None} for _ in range(n)]
    who, cost = np.concatenate(owner), np.concatenate(costs)
    said, changed = np.concatenate(labels), np.concatenate(features)
    answers = np.asarray(decide(pd.concat(parts, ignore_index=True)))
    flips = decide.flipped(np.asarray(decide(rows))[who], answers)
    found: list[dict[str, Any]] = []
    for index in range(n):
        mine = np.flatnonzero((who == index) & flips)
        if not len(mine):
            found.append({"cost": None})
            continue
        best = mine[np.argmin(cost[mine])]  # ties: the first trial built
        found.append(
            {
                "cost": float(cost[best]),
                "change": str(said[best]),
                "feature": str(changed[best]),
            }
        )
    return found


def assess_robustness(
    pipeline: Any,
    test: pd.DataFrame,
    train: pd.DataFrame,
    schema: Any,
    labels: Any,
    threshold: float | None,
    config: Any,
    seed: int = 0,
) -> dict[str, Any]:
    """The robustness document of a tabular model (JSON-ready), with its verdict."""
    features = schema.feature_names
    categorical = {c.name for c in schema.features if c.kind in ("string", "boolean")}
    numeric = [c.name for c in schema.features if c.kind in ("integer", "float")]
    rows = test[features].sample(min(config.rows, len(test)), random_state=seed)
    decide = Decider(pipeline, labels.task, labels.positive_class, threshold)
    if not get_task(labels.task).labelled_classes:
        decide.tolerance = REGRESSION_FLIP * float(np.std(decide(rows))) or 1e-9
    spreads = _spreads(train, numeric)
    curve = noise_curve(decide, rows, spreads, list(config.noise), seed)
    swaps, missing = per_feature(decide, rows, train, features, categorical, seed)
    searched = minimal_changes(
        decide, rows.head(config.search_rows), train, spreads, categorical, seconds=SEARCH_SECONDS
    )
    costs = [f["cost"] for f in searched]
    budgets = sorted({0.1, 0.25, 0.5, 1.0, 2.0, config.budget})
    within = [
        {
            "budget": b,
            "share": float(np.mean([c is not None and c <= b for c in costs])) if costs else 0.0,
        }
        for b in budgets
    ]
    flipped = next(w["share"] for w in within if w["budget"] == config.budget)
    by_feature = pd.Series([f.get("feature") for f in searched if f.get("feature")])
    at = min(curve, key=lambda p: abs(p["level"] - 0.1))
    worst_missing = max(missing.items(), key=lambda kv: kv[1], default=(None, 0.0))
    worst_swap = max(swaps.items(), key=lambda kv: kv[1], default=(None, 0.0))
    checks = []
    for limit, value, what in (
        (config.max_flip_rate, at["flip_rate"], f"flip rate at noise {at['level']:g} sd"),
        (config.max_missing_flip_rate, worst_missing[1], f"missing {worst_missing[0]}"),
        (config.max_flipped_within_budget, flipped, f"rows flipped within {config.budget:g} sd"),
    ):
        if limit is not None:
            checks.append({"what": what, "value": value, "limit": limit, "passed": value <= limit})
    unit = (
        "decisions" if get_task(labels.task).labelled_classes else "predictions (moved > 0.25 sd)"
    )
    summary = [
        f"Noise of {at['level']:g} sd on every numeric feature flips {at['flip_rate']:.1%} of"
        f" {unit} ({len(rows)} test rows).",
        f"{flipped:.1%} of {len(searched)} test rows flip with one feature changed by at most"
        f" {config.budget:g} sd (or one category swap)"
        + (f"; most often {by_feature.mode().iloc[0]}" if not by_feature.empty else "")
        + ".",
    ]
    asked = min(config.search_rows, len(rows))
    if len(searched) < asked:
        summary.append(
            f"The search covered {len(searched)} of the {asked} rows asked: it stops after"
            f" about {SEARCH_SECONDS:g} s on a slow model (robustness.search_rows)."
        )
    if worst_missing[0] is not None:
        summary.append(
            f"A missing {worst_missing[0]} flips {worst_missing[1]:.1%}"
            " (the worst single missing feature)."
        )
    if worst_swap[0] is not None:
        summary.append(f"Swapping {worst_swap[0]} flips {worst_swap[1]:.1%} (the worst swap).")
    judged = bool(checks)
    passed = all(c["passed"] for c in checks)
    return {
        "rows": len(rows),
        "unit": unit,
        "noise_curve": curve,
        "category_swaps": dict(sorted(swaps.items(), key=lambda kv: -kv[1])),
        "missing": dict(sorted(missing.items(), key=lambda kv: -kv[1])),
        "minimal_change": {
            "rows": len(searched),
            "rows_asked": asked,
            "budget": config.budget,
            "flipped_within_budget": flipped,
            "curve": within,
            "examples": [f for f in searched if f.get("cost") is not None][:5],
        },
        "checks": checks,
        "judged": judged,
        "passed": passed,
        "verdict": ("passed" if passed else "failed") if judged else "not judged (no limit set)",
        "summary": summary,
    }


def surrogate_rules(
    pipeline: Any,
    test: pd.DataFrame,
    train: pd.DataFrame,
    schema: Any,
    labels: Any,
    threshold: float | None,
    depth: int = 3,
    seed: int = 0,
) -> dict[str, Any]:
    """A depth-``depth`` tree fitted to the model's decisions; its rules and fidelity."""
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor, export_text

    features = schema.feature_names
    categorical = [c.name for c in schema.features if c.kind in ("string", "boolean")]
    decide = Decider(pipeline, labels.task, labels.positive_class, threshold)
    fit_rows = train[features].sample(min(5000, len(train)), random_state=seed)
    eval_rows = test[features].sample(min(5000, len(test)), random_state=seed)

    def encode(rows: pd.DataFrame) -> pd.DataFrame:
        frame = pd.get_dummies(
            rows.astype({c: "object" for c in categorical}), columns=categorical, prefix_sep="="
        )
        return frame.astype(float).fillna(-1e9)  # missing goes left of every split

    x_fit = encode(fit_rows)
    x_eval = encode(eval_rows).reindex(columns=x_fit.columns, fill_value=0.0)
    y_fit, y_eval = decide(fit_rows), decide(eval_rows)
    if not get_task(labels.task).labelled_classes:
        tree = DecisionTreeRegressor(max_depth=depth, random_state=seed)
    else:
        tree = DecisionTreeClassifier(max_depth=depth, random_state=seed)
        y_fit, y_eval = y_fit.astype(str), y_eval.astype(str)
    tree.fit(x_fit, y_fit)
    guess = tree.predict(x_eval)
    if not get_task(labels.task).labelled_classes:
        spread = float(np.var(y_eval)) or 1.0
        fidelity = 1.0 - float(np.mean((guess - y_eval.astype(float)) ** 2)) / spread
        measure = "R² against the model's predictions"
    else:
        fidelity = float(np.mean(guess == y_eval))
        measure = "share of test rows where it decides as the model does"
    text = export_text(tree, feature_names=list(x_fit.columns), decimals=2)
    if get_task(labels.task).thresholded and decide.column is not None:
        text = text.replace("class: True", f"class: {labels.positive_class}").replace(
            "class: False", "class: not " + str(labels.positive_class)
        )
    lines = []
    for line in text.splitlines():
        # one-hot splits read as "feature is / is not value"
        if "=" in line and ("<= 0.50" in line or ">  0.50" in line):
            line = line.replace(" <= 0.50", " : no").replace(" >  0.50", " : yes")
        lines.append(line)
    return {
        "depth": depth,
        "fidelity": fidelity,
        "fidelity_measure": measure,
        "leaves": int(tree.get_n_leaves()),
        "text": "\n".join(lines),
    }


__all__ = ["Decider", "assess_robustness", "surrogate_rules"]
