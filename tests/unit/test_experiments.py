"""A/B test design: sample sizes equal statsmodels', durations, one-line errors."""

from __future__ import annotations

import json
import math

import pytest
from statsmodels.stats.power import NormalIndPower, TTestIndPower
from statsmodels.stats.proportion import (
    proportion_effectsize,
    samplesize_proportions_2indep_onetail,
)
from typer.testing import CliRunner

from keel.cli import app
from keel.evaluation._experiments import design


@pytest.mark.parametrize(
    ("baseline", "mde", "share", "alpha", "power"),
    [(0.10, 0.01, 0.5, 0.05, 0.8), (0.03, 0.005, 0.2, 0.01, 0.9), (0.5, -0.02, 0.7, 0.1, 0.8)],
)
def test_pooled_equals_statsmodels(baseline, mde, share, alpha, power):
    found = design("proportion", baseline, mde, treatment_share=share, alpha=alpha, power=power)
    ratio = share / (1 - share)
    treated = samplesize_proportions_2indep_onetail(
        diff=mde, prop2=baseline, power=power, ratio=1 / ratio, alpha=alpha
    )
    assert found.treatment == math.ceil(treated - 1e-9)
    assert found.control == math.ceil(treated / ratio - 1e-9)
    assert found.total == found.control + found.treatment


def test_the_textbook_number():
    # 10 % -> 11 %, alpha 0.05, power 0.8, equal arms: 14,751 a arm (Fleiss, no correction)
    found = design("proportion", 0.10, 0.01, daily_units=1000)
    assert (found.per_arm, found.total) == (14_751, 29_502)
    assert (found.duration_days, found.duration_weeks) == (30, 5)
    relative = design("proportion", 0.10, 0.10, relative=True)
    assert relative.per_arm == found.per_arm and relative.target == pytest.approx(0.11)


def test_arcsine_and_continuous_equal_statsmodels():
    arcsine = design("proportion", 0.10, 0.01, method="arcsine", treatment_share=0.25)
    expected = NormalIndPower().solve_power(
        effect_size=abs(proportion_effectsize(0.11, 0.10)), alpha=0.05, power=0.8, ratio=1 / 3
    )
    assert arcsine.control == math.ceil(expected - 1e-9)
    continuous = design("continuous", 50.0, 2.0, std=20.0, daily_units=300)
    t = TTestIndPower().solve_power(effect_size=0.1, alpha=0.05, power=0.8, ratio=1.0)
    assert continuous.per_arm == math.ceil(t - 1e-9)
    assert continuous.duration_days == math.ceil(continuous.total / 300)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"baseline": 1.2, "mde": 0.1}, "baseline must be between 0 and 1"),
        ({"baseline": 0.95, "mde": 0.1}, "baseline + mde"),
        ({"baseline": 0.1, "mde": 0.0}, "mde must not be 0"),
        ({"baseline": 0.1, "mde": 0.01, "alpha": 0.7}, "alpha"),
        ({"baseline": 0.1, "mde": 0.01, "treatment_share": 1.0}, "split"),
        ({"baseline": 0.1, "mde": 0.01, "method": "exact"}, "pooled or arcsine"),
        ({"baseline": 0.1, "mde": 0.01, "daily_units": 0}, "daily units"),
    ],
)
def test_bad_designs_name_the_value(kwargs, words):
    with pytest.raises(ValueError, match=words.replace("+", r"\+")):
        design("proportion", **kwargs)
    with pytest.raises(ValueError, match="--std"):
        design("continuous", 10.0, 1.0)
    with pytest.raises(ValueError, match="t-test, not 'arcsine'"):
        design("continuous", 10.0, 1.0, std=3.0, method="arcsine")


def test_the_command_contract(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no keel.yaml: no log to read the daily units from
    runner = CliRunner()
    done = runner.invoke(
        app,
        [
            "experiment",
            "design",
            "--metric-type",
            "proportion",
            "--baseline",
            "0.10",
            "--mde",
            "0.01",
            "--alpha",
            "0.05",
            "--power",
            "0.8",
            "--daily-units",
            "1000",
            "--json",
        ],
    )
    assert done.exit_code == 0, done.output
    found = json.loads(done.stdout)
    assert (found["per_arm"], found["total"], found["duration_days"]) == (14_751, 29_502, 30)
    for args, words in (
        (["--baseline", "0.1", "--mde", "0.01", "--split", "0"], "--split"),
        (["--baseline", "0.1"], "--baseline and --mde are required"),
        (["--metric-type", "continuous", "--baseline", "5", "--mde", "1"], "--std"),
        (["--metric-type", "ratio", "--baseline", "5", "--mde", "1"], "proportion or continuous"),
    ):
        bad = runner.invoke(app, ["experiment", "design", *args])
        assert bad.exit_code == 2 and words in bad.output and "Traceback" not in bad.output
    table = runner.invoke(app, ["experiment", "design", "--baseline", "0.1", "--mde", "0.01"])
    assert table.exit_code == 0 and "14,751" in table.output


def test_two_proportions_equal_statsmodels():
    from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

    from keel.evaluation._experiments import two_proportions

    found = two_proportions("conversion", 1_000, 10_000, 1_090, 10_000)
    _, p = proportions_ztest([1_090, 1_000], [10_000, 10_000])
    low, high = confint_proportions_2indep(1_090, 10_000, 1_000, 10_000, method="wald")
    assert found.p_value == pytest.approx(p, rel=1e-12) and 0.01 < found.p_value < 0.05
    assert (found.low, found.high) == pytest.approx((low, high), rel=1e-12)
    assert found.absolute == pytest.approx(0.009) and found.relative == pytest.approx(0.09)
    with pytest.raises(ValueError, match="no units"):
        two_proportions("conversion", 0, 0, 1, 10)


def test_welch_equals_scipy_and_cuped_shrinks_the_variance():
    import numpy as np
    from scipy import stats

    from keel.evaluation._experiments import cuped, welch

    rng = np.random.default_rng(3)
    before = rng.normal(100, 20, size=4_000)
    arm = np.repeat([0, 1], 2_000)
    after = before + rng.normal(0, 5, size=4_000) + 1.0 * arm
    found = welch("revenue", after[arm == 0], after[arm == 1])
    reference = stats.ttest_ind(after[arm == 1], after[arm == 0], equal_var=False)
    assert found.p_value == pytest.approx(reference.pvalue, rel=1e-12)
    adjusted, theta = cuped(after, before)
    assert theta == pytest.approx(1.0, abs=0.05)
    assert adjusted.var() < after.var() / 10 and adjusted.mean() == pytest.approx(after.mean())
    sharper = welch("revenue", adjusted[arm == 0], adjusted[arm == 1])
    assert sharper.p_value < found.p_value and sharper.high - sharper.low < found.high - found.low


def test_sample_ratio_mismatch_and_holm():
    from scipy import stats
    from statsmodels.stats.multitest import multipletests

    from keel.evaluation._experiments import holm, sample_ratio_mismatch

    fine = sample_ratio_mismatch([5_020, 4_980], [50, 50])
    assert not fine["flagged"] and fine["p_value"] > 0.5
    skewed = sample_ratio_mismatch([5_300, 4_700], [50, 50])
    assert skewed["flagged"]
    assert skewed["p_value"] == pytest.approx(stats.chisquare([5_300, 4_700]).pvalue)
    assert not sample_ratio_mismatch([8_000, 2_000], [80, 20])["flagged"]
    corrected = holm([0.01, 0.04, 0.03])
    _, adjusted, _, _ = multipletests([0.01, 0.04, 0.03], method="holm")
    assert [p for _, p in corrected] == pytest.approx(list(adjusted))
    assert [r for r, _ in corrected] == [True, False, False]


def test_delta_method_variance_matches_a_bootstrap():
    import numpy as np

    from keel.evaluation._experiments import ratio_variance

    rng = np.random.default_rng(0)
    sessions = rng.poisson(5, size=3_000) + 1
    clicks = rng.binomial(sessions, 0.2)
    ratio, variance = ratio_variance(clicks, sessions)
    assert ratio == pytest.approx(clicks.sum() / sessions.sum())
    draws = rng.integers(0, 3_000, size=(2_000, 3_000))
    boot = clicks[draws].sum(1) / sessions[draws].sum(1)
    assert variance == pytest.approx(boot.var(), rel=0.1)


def test_msprt_worked_number_and_limits():
    from keel.evaluation._experiments import msprt_p_value

    # V = 0.01, tau^2 = 0.01, difference 0.3:
    # Lambda = sqrt(0.5) * exp(0.01 * 0.09 / (2 * 0.01 * 0.02)) = 0.70711 * e^2.25 = 6.7087
    assert msprt_p_value(0.3, 0.01, 0.01) == pytest.approx(1 / 6.70872, rel=1e-4)
    assert msprt_p_value(0.0, 0.01, 0.01) == 1.0  # no effect: no evidence
    assert msprt_p_value(1.0, 0.01, 0.01) < 1e-10
    with pytest.raises(ValueError, match="positive"):
        msprt_p_value(0.1, 0.0, 0.01)


def test_assignment_is_sticky_balanced_and_reshuffled_by_a_new_salt():
    import numpy as np

    from keel.evaluation._experiments import CHALLENGER_ARM, assign

    units = [f"user-{i}" for i in range(20_000)]
    first = [assign(u, "exp-1", 0.3) for u in units]
    assert first == [assign(u, "exp-1", 0.3) for u in units]  # every worker, every day
    share = np.mean([a == CHALLENGER_ARM for a in first])
    assert abs(share - 0.3) < 4 * np.sqrt(0.3 * 0.7 / 20_000)
    other = np.array([assign(u, "exp-2", 0.3) == CHALLENGER_ARM for u in units])
    again = np.array([a == CHALLENGER_ARM for a in first])
    assert abs(np.corrcoef(other, again)[0, 1]) < 0.03


def _simulated(seed: int, n: int, rate_c: float, rate_t: float, share: float = 0.5):
    import numpy as np
    import pandas as pd

    from keel.evaluation._experiments import assign

    rng = np.random.default_rng(seed)
    arms = [assign(f"u{seed}-{i}", f"salt-{seed}", share) for i in range(n)]
    treated = np.array([a == "challenger" for a in arms])
    converted = rng.random(n) < np.where(treated, rate_t, rate_c)
    latency = rng.normal(20, 3, size=n)
    return pd.DataFrame(
        {
            "unit": [f"u{i}" for i in range(n)],
            "arm": arms,
            "converted": converted.astype(int),
            "latency": latency,
        }
    )


def test_a_known_effect_is_shipped_and_srm_blocks():
    import pandas as pd

    from keel.evaluation._experiments import decide

    units = _simulated(1, 20_000, 0.10, 0.12)
    found = decide(
        units,
        ["converted"],
        guardrails={"latency": 1.0},
        lower_is_better=("latency",),
        planned_per_arm=3_842,
    )
    assert found.decision == "ship", found.reason
    effect = next(e for e in found.effects if e["metric"] == "converted")
    assert effect["low"] < 0.02 < effect["high"] and effect["sequential_p_value"] < 0.05
    skewed = units[~((units["arm"] == "champion") & (units.index % 9 == 0))]
    blocked = decide(skewed, ["converted"])
    assert blocked.decision == "keep running" and "sample-ratio mismatch" in blocked.reason
    flipped = {"champion": "challenger", "challenger": "champion"}
    both = units.head(3).assign(arm=units.head(3)["arm"].map(flipped))
    assert decide(pd.concat([units, both]), ["converted"]).excluded_units == 3
    worse = units.assign(latency=units["latency"] + 2.0 * (units["arm"] == "challenger"))
    guarded = decide(
        worse, ["converted"], guardrails={"latency": 1.0}, lower_is_better=("latency",)
    )
    assert guarded.decision == "keep the champion" and "guardrail latency" in guarded.reason
    with pytest.raises(ValueError, match="no data"):
        decide(units.assign(converted=float("nan")), ["converted"])


def test_a_a_runs_are_rarely_significant_and_sequential_looks_stay_valid():
    import numpy as np

    from keel.evaluation._experiments import msprt_p_value, two_proportions

    rng = np.random.default_rng(7)
    fixed, peeking, sequential = 0, 0, 0
    seeds, looks, per_look = 400, 10, 400
    for _ in range(seeds):
        c = rng.random((looks, per_look)) < 0.1
        t = rng.random((looks, per_look)) < 0.1
        xc, xt = np.cumsum(c.sum(1)), np.cumsum(t.sum(1))
        n = per_look * np.arange(1, looks + 1)
        ps, seq = [], 1.0
        for k in range(looks):
            effect = two_proportions("a", int(xc[k]), int(n[k]), int(xt[k]), int(n[k]))
            ps.append(effect.p_value)
            variance = 2 * 0.1 * 0.9 / n[k]
            seq = min(seq, msprt_p_value(effect.absolute, variance, 0.01**2))
        fixed += ps[-1] < 0.05
        peeking += min(ps) < 0.05
        sequential += seq < 0.05
    assert fixed / seeds < 0.08  # the fixed-horizon test at its planned end
    assert peeking / seeds > fixed / seeds  # peeking at a fixed test inflates errors
    assert sequential / seeds <= 0.05  # the always-valid p-value does not


def test_a_log_that_is_not_a_prediction_log_gives_no_duration(tmp_path, monkeypatch):
    import sqlite3

    (tmp_path / "d.csv").write_text("x,y\n1,0\n2,1\n")
    (tmp_path / "keel.yaml").write_text(
        "name: m\ndata: d.csv\ntarget: y\nserving: {prediction_log: other.db}\n"
    )
    with sqlite3.connect(tmp_path / "other.db") as db:
        db.execute("CREATE TABLE something (a INTEGER)")
    monkeypatch.chdir(tmp_path)
    done = CliRunner().invoke(
        app, ["experiment", "design", "--baseline", "0.1", "--mde", "0.01", "--json"]
    )
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["duration_days"] is None
