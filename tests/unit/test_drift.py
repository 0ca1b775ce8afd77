"""Drift statistics: scipy's p-values, injected shifts found, no shift not flagged."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import chi2_contingency, ks_2samp
from typer.testing import CliRunner

from keel.cli import app
from keel.monitoring import DriftThresholds, categorical_drift, drift_report, numeric_drift
from tests.floats import same_float, same_p_value


@pytest.mark.parametrize("sizes", [(40, 55), (300, 200), (20_000, 15_000)])
def test_ks_p_values_are_scipys(sizes) -> None:
    rng = np.random.default_rng(0)
    ref = pd.Series(rng.normal(0, 1, sizes[0]))
    cur = pd.Series(rng.normal(0.1, 1, sizes[1]))
    found = numeric_drift("x", ref, cur)
    expected = ks_2samp(ref, cur)  # exact mode for the small ones, as scipy chooses
    assert same_p_value(found.p_value, expected.pvalue)
    assert same_float(found.statistic, expected.statistic)


def test_chi_square_counts_unseen_categories() -> None:
    ref = pd.Series(["a"] * 50 + ["b"] * 50)
    cur = pd.Series(["a"] * 30 + ["b"] * 50 + ["c"] * 20)
    found = categorical_drift("x", ref, cur)
    expected = chi2_contingency(np.array([[50, 50, 0], [30, 50, 20]]), correction=False)
    assert found.p_value == pytest.approx(expected.pvalue, rel=1e-12)
    assert found.unseen_categories == {"c": 20} and found.psi > 0.2


def test_injected_shift_is_found_and_nothing_else(adult_frame: pd.DataFrame) -> None:
    frame = adult_frame.drop(columns=["income"]).sample(frac=1.0, random_state=3)
    reference, current = frame.iloc[:1000], frame.iloc[1000:].copy()
    calm = drift_report(reference, current, thresholds=DriftThresholds(correction="bonferroni"))
    assert calm.drifted_columns == [] and not calm.drifted
    current["age"] = current["age"] + 8
    current["workclass"] = current["workclass"].where(current.index % 3 != 0, "Private")
    shifted = drift_report(reference, current, thresholds=DriftThresholds(correction="bonferroni"))
    assert set(shifted.drifted_columns) == {"age", "workclass"}
    age = {c.column: c for c in shifted.columns}["age"]
    assert age.p_value < 1e-20 and "wasserstein" in age.flags
    assert not shifted.drifted  # 2 of 13 columns: under the default share of one half
    assert drift_report(reference, current, thresholds=DriftThresholds(dataset_share=0.1)).drifted


def test_keel_drift_command(tmp_path, adult_frame: pd.DataFrame) -> None:
    frame = adult_frame.drop(columns=["income"])
    frame.iloc[:1000].to_csv(tmp_path / "ref.csv", index=False)
    shifted = frame.iloc[1000:].assign(age=lambda f: f.age + 15, sex="Female")
    shifted.to_parquet(tmp_path / "cur.parquet")
    runner = CliRunner()
    found = runner.invoke(
        app,
        [
            "drift",
            str(tmp_path / "ref.csv"),
            str(tmp_path / "cur.parquet"),
            "--json",
            "--share",
            "0.1",
        ],
    )
    assert found.exit_code == 1, found.output
    report = json.loads(found.stdout)
    assert {"age", "sex"} <= set(report["drifted_columns"]) and report["drifted"]
    assert "dataset drift" in found.stderr
    table = runner.invoke(app, ["drift", str(tmp_path / "ref.csv"), str(tmp_path / "ref.csv")])
    assert table.exit_code == 0 and "age" in table.stdout
    bad = runner.invoke(app, ["drift", str(tmp_path / "ref.csv"), str(tmp_path / "nope.csv")])
    assert bad.exit_code == 2 and "nope.csv" in bad.stderr
    wrong = runner.invoke(
        app, ["drift", str(tmp_path / "ref.csv"), str(tmp_path / "ref.csv"), "--columns", "agee"]
    )
    assert wrong.exit_code == 2 and "'agee'" in wrong.stderr
    assert "Traceback" not in bad.output + wrong.output


@pytest.mark.parametrize(
    ("n1", "n2", "integers"),
    [(40, 55, False), (3_000, 2_000, True), (20_000, 15_000, False), (50_000, 50_000, True)],
)
def test_sort_once_ks_and_wasserstein_are_scipys(n1, n2, integers) -> None:
    from scipy.stats import wasserstein_distance

    from keel.monitoring import ks_and_wasserstein

    rng = np.random.default_rng(n1)
    ref, cur = rng.normal(0, 1, n1), rng.normal(0.02, 1.1, n2)
    if integers:  # ties everywhere
        ref, cur = np.round(ref * 3), np.round(cur * 3)
    d, p, w = ks_and_wasserstein(np.sort(ref), np.sort(cur))
    expected = ks_2samp(ref, cur)
    assert same_float(d, expected.statistic) and same_p_value(p, expected.pvalue)
    assert same_float(w, wasserstein_distance(ref, cur))


def test_bins_and_shares_are_what_the_plots_show(adult_frame: pd.DataFrame) -> None:
    found = numeric_drift("age", adult_frame["age"].iloc[:1000], adult_frame["age"].iloc[1000:])
    assert len(found.bins) == len(found.reference_share) == len(found.current_share) >= 5
    assert sum(found.reference_share) == pytest.approx(1.0) and found.bins[0].startswith("< ")


def test_columns_in_worker_processes_give_the_same_report(monkeypatch) -> None:
    import keel.monitoring._drift as drift

    monkeypatch.setattr(drift, "PARALLEL_CELLS", 1_000)  # fork for this small table too
    rng = np.random.default_rng(5)
    rows = 20_000
    reference = pd.DataFrame({f"x{i}": rng.normal(0, 1, rows) for i in range(18)})
    reference["c0"] = rng.choice(["a", "b", "c"], rows)
    reference["c1"] = rng.choice(["u", "v"], rows)
    current = reference.sample(frac=1.0, random_state=1).reset_index(drop=True)
    current["x3"] = current["x3"] + 0.05
    serial = drift_report(reference, current).to_dict()
    parallel = drift_report(reference, current, workers=2).to_dict()
    assert parallel == serial and parallel["drifted_columns"] == ["x3"]


@pytest.mark.parametrize(
    ("ref", "cur"),
    [([1.0], [1.0]), ([1.0, 1.0, 1.0], [1.0, 2.0]), ([0.0, 1.0, 2.0], [5.0, 6.0])],
)
def test_ks_and_wasserstein_on_tiny_and_tied_samples(ref: list, cur: list) -> None:
    from scipy.stats import wasserstein_distance

    from keel.monitoring import ks_and_wasserstein

    d, p, w = ks_and_wasserstein(np.array(ref), np.array(cur))
    expected = ks_2samp(ref, cur)
    assert same_float(d, expected.statistic) and same_p_value(p, expected.pvalue)
    assert same_float(w, wasserstein_distance(ref, cur))
