"""The statistics of online experiments: sample size, tests, SRM, CUPED, sequential p.

Everything here is built on statsmodels and scipy (no hand-written distribution code)
and is checked against them in ``tests/unit/test_experiments.py``.

Sample size (``keel experiment design``):

- **proportion, ``pooled``** (the default): the two-proportion z-test's own formula
  (Fleiss, *Statistical Methods for Rates and Proportions*, 3rd ed., eq. 4.14 without
  continuity correction)::

      n_control = (z_{1-a/2} sqrt(pbar qbar (1 + 1/r)) + z_{1-b} sqrt(p1 q1 + p2 q2 / r))^2
                  / (p2 - p1)^2,      n_treatment = r n_control

  with ``r`` the treatment/control ratio and ``pbar`` the weighted mean of ``p1, p2``
  (statsmodels' ``samplesize_proportions_2indep_onetail``). It is the default because
  it is the test the analysis runs (the pooled two-proportion z-test), so the planned
  power is the power of the test actually used.
- **proportion, ``arcsine``**: Cohen's h with statsmodels' ``NormalIndPower`` (what
  many calculators use; within a few units of ``pooled`` for small effects).
- **continuous**: Cohen's d = MDE / standard deviation with statsmodels'
  ``TTestIndPower`` (the two-sample t-test).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

MetricType = Literal["proportion", "continuous"]
Method = Literal["pooled", "arcsine", "ttest"]


@dataclass(frozen=True)
class Design:
    """How many units each arm needs, and how long that takes."""

    metric_type: str
    method: str
    baseline: float
    target: float
    mde: float
    relative: bool
    alpha: float
    power: float
    treatment_share: float
    control: int
    treatment: int
    total: int
    per_arm: int
    effect_size: float
    daily_units: float | None
    duration_days: int | None
    duration_weeks: int | None

    def to_dict(self) -> dict[str, object]:
        """JSON form."""
        return asdict(self)


def _check(name: str, value: float, low: float, high: float) -> None:
    if not (low < value < high) or math.isnan(value):
        raise ValueError(f"{name} must be between {low:g} and {high:g} (exclusive), got {value:g}")


def design(
    metric_type: MetricType,
    baseline: float,
    mde: float,
    *,
    relative: bool = False,
    alpha: float = 0.05,
    power: float = 0.8,
    treatment_share: float = 0.5,
    std: float | None = None,
    method: Method | None = None,
    daily_units: float | None = None,
) -> Design:
    """The sample size per arm (two-sided test) and the duration at ``daily_units``.

    ``mde`` is the minimum detectable effect: absolute, or relative to ``baseline`` with
    ``relative``. ``treatment_share`` is the challenger's share of units (0..1).
    Raises ``ValueError`` naming the argument when a value is out of range.
    """
    from statsmodels.stats.power import NormalIndPower, TTestIndPower
    from statsmodels.stats.proportion import (
        proportion_effectsize,
        samplesize_proportions_2indep_onetail,
    )

    _check("alpha", alpha, 0.0, 0.5)
    _check("power", power, 0.0, 1.0)
    _check("split (treatment share)", treatment_share, 0.0, 1.0)
    if mde == 0 or math.isnan(mde):
        raise ValueError("mde must not be 0: the smallest effect worth detecting")
    delta = baseline * mde if relative else mde
    target = baseline + delta
    ratio = treatment_share / (1.0 - treatment_share)  # treatment units per control unit
    if metric_type == "proportion":
        _check("baseline", baseline, 0.0, 1.0)
        _check("baseline + mde", target, 0.0, 1.0)
        method = method or "pooled"
        if method == "pooled":
            effect = (target - baseline) / math.sqrt(baseline * (1 - baseline))
            # statsmodels' nobs1 is the treatment arm, with nobs2 = ratio * nobs1 controls
            treated = samplesize_proportions_2indep_onetail(
                diff=target - baseline,
                prop2=baseline,
                power=power,
                ratio=1.0 / ratio,
                alpha=alpha,
                alternative="two-sided",
            )
            control = float(treated) / ratio
        elif method == "arcsine":
            effect = float(proportion_effectsize(target, baseline))
            control = NormalIndPower().solve_power(
                effect_size=abs(effect), alpha=alpha, power=power, ratio=ratio
            )
        else:
            raise ValueError(f"method for a proportion is pooled or arcsine, not {method!r}")
    elif metric_type == "continuous":
        if std is None or not std > 0:
            raise ValueError("a continuous metric needs --std, its standard deviation (> 0)")
        method = "ttest"
        effect = delta / std
        control = TTestIndPower().solve_power(
            effect_size=abs(effect), alpha=alpha, power=power, ratio=ratio
        )
    else:
        raise ValueError(f"metric type is proportion or continuous, not {metric_type!r}")
    n_control = math.ceil(float(control) - 1e-9)
    n_treatment = math.ceil(float(control) * ratio - 1e-9)
    days = weeks = None
    if daily_units is not None:
        if not daily_units > 0:
            raise ValueError(f"daily units must be > 0, got {daily_units:g}")
        days = math.ceil((n_control + n_treatment) / daily_units)
        weeks = math.ceil(days / 7)
    return Design(
        metric_type=metric_type,
        method=method,
        baseline=baseline,
        target=target,
        mde=mde,
        relative=relative,
        alpha=alpha,
        power=power,
        treatment_share=treatment_share,
        control=n_control,
        treatment=n_treatment,
        total=n_control + n_treatment,
        per_arm=max(n_control, n_treatment),
        effect_size=float(effect),
        daily_units=daily_units,
        duration_days=days,
        duration_weeks=weeks,
    )


# --- analysis -------------------------------------------------------------------------

SRM_ALPHA = 0.001
"""A sample-ratio mismatch is flagged (and blocks a decision) below this p-value."""


@dataclass(frozen=True)
class Effect:
    """Challenger minus champion on one metric, with its interval and p-value."""

    metric: str
    control: float
    treatment: float
    absolute: float
    relative: float
    low: float
    high: float
    p_value: float
    test: str

    def to_dict(self) -> dict[str, object]:
        """JSON form."""
        return asdict(self)


def two_proportions(
    metric: str,
    x_control: int,
    n_control: int,
    x_treatment: int,
    n_treatment: int,
    alpha: float = 0.05,
) -> Effect:
    """The pooled two-proportion z-test (statsmodels) and the Wald interval of the difference."""
    from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

    if min(n_control, n_treatment) <= 0:
        raise ValueError(f"{metric}: an arm has no units")
    p_c, p_t = x_control / n_control, x_treatment / n_treatment
    _, p_value = proportions_ztest([x_treatment, x_control], [n_treatment, n_control])
    low, high = confint_proportions_2indep(
        x_treatment, n_treatment, x_control, n_control, method="wald", alpha=alpha
    )
    return Effect(
        metric,
        p_c,
        p_t,
        p_t - p_c,
        (p_t - p_c) / p_c if p_c else math.nan,
        float(low),
        float(high),
        float(p_value),
        "two-proportion z (pooled)",
    )


def welch(metric: str, control: Any, treatment: Any, alpha: float = 0.05) -> Effect:
    """Welch's t-test of two means (scipy) and its interval of the difference."""
    import numpy as np
    from scipy import stats

    c, t = np.asarray(control, dtype=float), np.asarray(treatment, dtype=float)
    if min(len(c), len(t)) < 2:
        raise ValueError(f"{metric}: an arm has fewer than 2 values")
    result = stats.ttest_ind(t, c, equal_var=False)
    interval = result.confidence_interval(1 - alpha)
    diff = float(t.mean() - c.mean())
    return Effect(
        metric,
        float(c.mean()),
        float(t.mean()),
        diff,
        diff / float(c.mean()) if c.mean() else math.nan,
        float(interval.low),
        float(interval.high),
        float(result.pvalue),
        "Welch t",
    )


def sample_ratio_mismatch(counts: list[int], shares: list[float]) -> dict[str, float | bool]:
    """Chi-square test of the arms' counts against the planned split (scipy)."""
    from scipy import stats

    total = sum(counts)
    expected = [total * s / sum(shares) for s in shares]
    statistic, p_value = stats.chisquare(counts, expected)
    return {
        "statistic": float(statistic),
        "p_value": float(p_value),
        "flagged": bool(p_value < SRM_ALPHA),
    }


def cuped(y: Any, x: Any) -> tuple[Any, float]:
    """CUPED (Deng et al. 2013): ``y - theta (x - mean x)``, theta = cov(x, y) / var(x).

    ``x`` is a pre-period covariate of each unit (its metric before the experiment),
    pooled over both arms; the adjusted metric has the same mean and less variance.
    """
    import numpy as np

    y, x = np.asarray(y, dtype=float), np.asarray(x, dtype=float)
    variance = x.var(ddof=1)
    theta = float(np.cov(x, y, ddof=1)[0, 1] / variance) if variance > 0 else 0.0
    return y - theta * (x - x.mean()), theta


def ratio_variance(numerator: Any, denominator: Any) -> tuple[float, float]:
    """A ratio metric's value sum(num)/sum(den) and its variance by the delta method.

    For units i with (num_i, den_i): R = mean(num)/mean(den) and
    Var(R) ≈ (Var(num) - 2 R Cov(num, den) + R² Var(den)) / (n mean(den)²).
    """
    import numpy as np

    a, b = np.asarray(numerator, dtype=float), np.asarray(denominator, dtype=float)
    n = len(a)
    ratio = float(a.mean() / b.mean())
    cov = np.cov(a, b, ddof=1)
    variance = (cov[0, 0] - 2 * ratio * cov[0, 1] + ratio**2 * cov[1, 1]) / (n * b.mean() ** 2)
    return ratio, float(variance)


def msprt_p_value(difference: float, variance: float, tau2: float) -> float:
    """Always-valid p-value of the mixture SPRT (Johari, Pekelis, Walsh 2017, eq. 11).

    For an estimate ``difference`` of the effect with variance ``variance`` (V) and a
    normal mixing distribution of variance ``tau2`` (τ²) on the effect under H1::

        Λ = sqrt(V / (V + τ²)) · exp(τ² · difference² / (2 V (V + τ²))),   p = min(1, 1/Λ)

    The running p-value of an experiment is the minimum over its looks, so looking every
    day does not inflate the false-positive rate.
    """
    if variance <= 0 or tau2 <= 0:
        raise ValueError("variance and tau2 must be positive")
    log_lambda = 0.5 * math.log(variance / (variance + tau2)) + tau2 * difference**2 / (
        2 * variance * (variance + tau2)
    )
    return float(min(1.0, math.exp(-log_lambda)))


def holm(p_values: list[float], alpha: float = 0.05) -> list[tuple[bool, float]]:
    """Holm's step-down correction (statsmodels): ``(rejected, adjusted p)`` per metric."""
    from statsmodels.stats.multitest import multipletests

    rejected, adjusted, _, _ = multipletests(p_values, alpha=alpha, method="holm")
    return [(bool(r), float(p)) for r, p in zip(rejected, adjusted, strict=True)]


__all__ = [
    "SRM_ALPHA",
    "Design",
    "Effect",
    "cuped",
    "design",
    "holm",
    "msprt_p_value",
    "ratio_variance",
    "sample_ratio_mismatch",
    "two_proportions",
    "welch",
]
