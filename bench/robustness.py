"""Keel's robustness stage vs IBM ART's HopSkipJump, same model, same rows, same process.

A user who wants "adversarial robustness" for a tabular model would otherwise reach for
the Adversarial Robustness Toolbox. Both attack a LightGBM pipeline trained on UCI
Adult (25,000 rows) through its decisions only (black box), on the same 100 test rows:

* Keel: the one-feature minimal-change search of
  ``keel.families.tabular.responsible.assess_robustness``
  (numeric steps of 0.05 sd up to 2 sd, a category swap costing 1) — plus the noise,
  swap and missing-value curves it computes in the same call;
* ART 1.20.1 HopSkipJump (L2, untargeted) over the numeric features, standardised
  (categories held fixed: ART attacks numeric arrays), through ``BlackBoxClassifier``.

Reported: wall time, model queries, and the share of rows whose decision flips within
an L2 budget of 0.5 and 1.0 standardised units. A one-feature change of c sd has L2
norm c, so Keel's figure is what an attacker moving one field achieves; HopSkipJump
moves every numeric field at once (a stronger attacker, and a smaller distance).

ART is installed with ``pip --target bench/.venvs/art-lib`` (no change to Keel's venv).
Run: ``.venv/bin/python bench/robustness.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "bench" / ".venvs" / "art-lib"
ART = ["adversarial-robustness-toolbox==1.20.1"]
ROWS = 100
RESULTS = ROOT / "bench" / "results" / "robustness.json"


def art_path() -> tuple[bool, str]:
    """ART importable from its own target folder (installed on first use), or why not."""
    marker = LIB / ".installed"
    if not (marker.exists() and marker.read_text().strip() == " ".join(ART)):
        done = subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(LIB), *ART],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            return False, (done.stderr.strip().splitlines() or ["pip failed"])[-1][:300]
        marker.write_text(" ".join(ART))
    sys.path.insert(0, str(LIB))
    return True, ""


def main() -> int:
    sys.path.insert(0, str(ROOT / "examples" / "adult"))
    from adult import load_adult

    from keel.config import RobustnessConfig
    from keel.data import infer_schema, prepare_labels
    from keel.families.tabular.responsible import Decider, assess_robustness
    from keel.families.tabular.training import make_pipeline

    ok, why = art_path()
    if not ok:
        print(f"ART does not install here: {why}")
        return 1
    from art.attacks.evasion import HopSkipJump
    from art.estimators.classification import BlackBoxClassifier

    train, held_out = load_adult()
    train = train.sample(25_000, random_state=0)
    frame, _ = prepare_labels(train, "income", "binary", ">50K")
    schema = infer_schema(frame, "income", ["fnlwgt"])
    model = make_pipeline("lightgbm", "binary", schema, 0)
    model.fit(frame[schema.feature_names], frame["income"])

    class Labels:
        task, positive_class = "binary", ">50K"

    test = held_out.sample(ROWS, random_state=1).reset_index(drop=True)
    decide = Decider(model, "binary", ">50K", 0.5)
    queries = {"keel": 0, "art": 0}

    class Counting:
        """The model, counting the rows it is asked about."""

        def __init__(self, name: str) -> None:
            self.name = name
            self.classes_ = model.classes_

        def predict_proba(self, rows: pd.DataFrame) -> np.ndarray:
            queries[self.name] += len(rows)
            return model.predict_proba(rows)

    started = time.perf_counter()
    found = assess_robustness(
        Counting("keel"),
        test,
        frame,
        schema,
        Labels,
        0.5,
        RobustnessConfig(rows=ROWS, search_rows=ROWS, budget=1.0),
    )
    keel_seconds = time.perf_counter() - started
    keel_curve = {p["budget"]: p["share"] for p in found["minimal_change"]["curve"]}

    numeric = [c.name for c in schema.features if c.kind in ("integer", "float")]
    mean = frame[numeric].mean().to_numpy(dtype=float)
    std = frame[numeric].std().to_numpy(dtype=float)
    low = (frame[numeric].min().to_numpy(dtype=float) - mean) / std
    high = (frame[numeric].max().to_numpy(dtype=float) - mean) / std
    base = test[schema.feature_names]
    x = ((test[numeric].to_numpy(dtype=float) - mean) / std).astype(np.float32)
    current = {"rows": base}

    def predict(batch: np.ndarray) -> np.ndarray:
        # each query row belongs to the test row ART is attacking (one at a time below)
        rows = pd.concat([current["rows"]] * len(batch), ignore_index=True)
        values = batch * std + mean
        for j, name in enumerate(numeric):
            column = values[:, j]
            if pd.api.types.is_integer_dtype(base[name].dtype):
                column = np.round(column).astype(base[name].dtype)
            rows[name] = column
        queries["art"] += len(rows)
        decided = decide.pipeline.predict_proba(rows)[:, decide.column] >= 0.5
        return np.stack([~decided, decided], axis=1).astype(np.float32)

    classifier = BlackBoxClassifier(
        predict, input_shape=(len(numeric),), nb_classes=2, clip_values=(low.min(), high.max())
    )
    attack = HopSkipJump(
        classifier,
        batch_size=512,
        targeted=False,
        norm=2,
        max_iter=20,
        max_eval=500,
        init_eval=50,
        verbose=False,
    )
    distances = []
    started = time.perf_counter()
    for i in range(ROWS):
        current["rows"] = base.iloc[[i]]
        adversarial = attack.generate(x[i : i + 1])
        flipped = predict(adversarial)[0].argmax() != predict(x[i : i + 1])[0].argmax()
        distances.append(float(np.linalg.norm(adversarial - x[i : i + 1])) if flipped else None)
        if (i + 1) % 20 == 0:
            print(
                f"HopSkipJump: {i + 1}/{ROWS} rows, {time.perf_counter() - started:.0f} s",
                file=sys.stderr,
                flush=True,
            )
    art_seconds = time.perf_counter() - started

    def share(budget: float) -> float:
        return float(np.mean([d is not None and d <= budget for d in distances]))

    result = {
        "rows": ROWS,
        "model": "lightgbm on 25,000 Adult rows",
        "keel": {
            "seconds": round(keel_seconds, 2),
            "queries": queries["keel"],
            "flipped_within_0.5": keel_curve.get(0.5),
            "flipped_within_1.0": keel_curve.get(1.0),
            "also_measured": "noise curve, category swaps, missing values",
        },
        "art_hopskipjump": {
            "seconds": round(art_seconds, 2),
            "queries": queries["art"],
            "flipped_within_0.5": share(0.5),
            "flipped_within_1.0": share(1.0),
            "flipped_at_all": float(np.mean([d is not None for d in distances])),
        },
        "speed_ratio_art_over_keel": round(art_seconds / keel_seconds, 1),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
