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

import hashlib
import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

from keel._extras import require

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
    require("experiments", "statsmodels")  # A/B tests are an extra: keel-ml[experiments]
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
        if method not in (None, "ttest"):
            raise ValueError(f"a continuous metric is planned with a t-test, not {method!r}")
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
    require("experiments", "statsmodels")  # A/B tests are an extra: keel-ml[experiments]
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
    require("experiments", "statsmodels")  # A/B tests are an extra: keel-ml[experiments]
    from statsmodels.stats.multitest import multipletests

    rejected, adjusted, _, _ = multipletests(p_values, alpha=alpha, method="holm")
    return [(bool(r), float(p)) for r, p in zip(rejected, adjusted, strict=True)]


# --- assignment and the decision -------------------------------------------------------

CHAMPION_ARM, CHALLENGER_ARM = "champion", "challenger"


def assign(unit: str, salt: str, treatment_share: float) -> str:
    """The arm of ``unit``: a salted SHA-256 of its id, the same on every worker and day.

    The first 8 bytes of ``sha256(salt + ":" + unit)`` are a uniform number in [0, 1);
    below ``treatment_share`` is the challenger. A new salt (a new experiment)
    reshuffles every unit independently of the last experiment.
    """
    digest = hashlib.sha256(f"{salt}:{unit}".encode()).digest()
    place = int.from_bytes(digest[:8], "big") / 2**64
    return CHALLENGER_ARM if place < treatment_share else CHAMPION_ARM


@dataclass(frozen=True)
class Verdict:
    """What to do with an experiment, and why."""

    decision: str  # ship | keep the champion | keep running
    reason: str
    srm: dict[str, float | bool]
    effects: list[dict[str, object]]
    excluded_units: int

    def to_dict(self) -> dict[str, object]:
        """JSON form."""
        return asdict(self)


def ratio_test(
    metric: str,
    control: tuple[Any, Any],
    treatment: tuple[Any, Any],
    alpha: float = 0.05,
) -> tuple[Effect, float]:
    """A ratio metric (sum num / sum den per arm) compared by the delta method.

    ``control`` and ``treatment`` are ``(numerators, denominators)`` per unit (units
    with a zero denominator are left out). The difference is normal with variance the
    sum of the arms' delta-method variances (:func:`ratio_variance`); z-test and Wald
    interval with scipy's normal. Returns the effect and that variance.
    """
    import numpy as np
    from scipy import stats

    arms = []
    for numerator, denominator in (control, treatment):
        a, b = np.asarray(numerator, dtype=float), np.asarray(denominator, dtype=float)
        keep = b > 0
        if keep.sum() < 2:
            raise ValueError(f"{metric}: an arm has fewer than 2 units with data")
        arms.append(ratio_variance(a[keep], b[keep]))
    (r_c, v_c), (r_t, v_t) = arms
    variance = v_c + v_t
    diff = r_t - r_c
    se = math.sqrt(variance) if variance > 0 else 0.0
    z = float(stats.norm.ppf(1 - alpha / 2))
    # no variation in either arm (no errors at all): the difference is exact
    exact = 1.0 if diff == 0 else 0.0
    p_value = float(2 * stats.norm.sf(abs(diff) / se)) if se > 0 else exact
    effect = Effect(
        metric,
        r_c,
        r_t,
        diff,
        diff / r_c if r_c else math.nan,
        diff - z * se,
        diff + z * se,
        p_value,
        "ratio z (delta method)",
    )
    return effect, variance


def _ratio_row(
    metric: str, frame: Any, arms: tuple[Any, Any], pair: tuple[str, str], alpha: float
) -> tuple[Effect, float, dict[str, Any]]:
    num, den = pair
    if not (frame[den].fillna(0) > 0).any():
        raise ValueError(f"metric {metric!r} has no data in either arm")
    control, treated = arms
    effect, variance = ratio_test(
        metric,
        (control[num].fillna(0), control[den].fillna(0)),
        (treated[num].fillna(0), treated[den].fillna(0)),
        alpha,
    )
    return effect, variance, {}


def _unit_row(
    metric: str, frame: Any, arms: tuple[Any, Any], covariate: str | None, alpha: float
) -> tuple[Effect, float, dict[str, Any]]:
    """A per-unit metric: two proportions for 0/1 columns, else Welch (with CUPED)."""
    import numpy as np
    import pandas as pd

    values = frame[metric].dropna()
    if values.empty:
        raise ValueError(f"metric {metric!r} has no data in either arm")
    control, treated = arms
    binary = bool(values.isin([0, 1]).all())
    y = frame[metric].astype(float)
    cuped_theta = None
    if covariate is not None and not binary:
        adjusted, cuped_theta = cuped(y, frame[covariate].astype(float))
        y = pd.Series(adjusted, index=frame.index)
    yc, yt = y[control.index], y[treated.index]
    if binary:
        effect = two_proportions(
            metric, int(yc.sum()), len(control), int(yt.sum()), len(treated), alpha
        )
        variance = effect.control * (1 - effect.control) / max(
            1, len(control)
        ) + effect.treatment * (1 - effect.treatment) / max(1, len(treated))
    else:
        effect = welch(metric, yc, yt, alpha)
        variance = float(np.var(yc, ddof=1)) / len(control) + float(np.var(yt, ddof=1)) / len(
            treated
        )
    return effect, variance, {"cuped_theta": cuped_theta}


def _judge(
    found: dict[str, dict[str, Any]],
    success: list[str],
    guardrails: dict[str, float],
    lower_is_better: tuple[str, ...] | list[str],
    progress: tuple[int, int | None, bool],
) -> tuple[str, str]:
    """The decision and its reason once the sample ratio is sound."""
    for metric, margin in guardrails.items():
        worse = (
            found[metric]["high"] > margin
            if metric in lower_is_better
            else found[metric]["low"] < -margin
        )
        if worse:
            return (
                "keep the champion",
                f"guardrail {metric} may be worse by more than {margin:g}"
                f" (interval {found[metric]['low']:+.4g} to {found[metric]['high']:+.4g})",
            )
    smallest, planned_per_arm, reached = progress
    how = "fixed-horizon, Holm-corrected" if reached else "always-valid sequential test"

    def better(metric: str) -> bool:
        sign = -1 if metric in lower_is_better else 1
        return sign * float(found[metric]["absolute"]) > 0

    wins = [m for m in success if found[m]["significant"] and better(m)]
    losses = [m for m in success if found[m]["significant"] and not better(m)]
    if losses:
        return "keep the champion", f"the challenger is worse on {', '.join(losses)} ({how})"
    if wins and len(wins) == len(success):
        return "ship", f"the challenger is better on {', '.join(wins)} ({how})"
    if planned_per_arm is not None and reached:
        return "keep the champion", "no significant effect at the planned sample"
    if planned_per_arm is None:
        return "keep running", "no significant effect yet and no planned sample"
    return (
        "keep running",
        f"no significant effect yet; {smallest:,} of {planned_per_arm:,} units per arm",
    )


def decide(
    units: Any,
    success: list[str],
    *,
    treatment_share: float = 0.5,
    planned_per_arm: int | None = None,
    alpha: float = 0.05,
    guardrails: dict[str, float] | None = None,
    lower_is_better: tuple[str, ...] | list[str] = (),
    covariates: dict[str, str] | None = None,
    ratios: dict[str, tuple[str, str]] | None = None,
    tau2: float | None = None,
) -> Verdict:
    """Analyse one unit per row (``unit``, ``arm``, metric columns) and decide.

    - Units seen in both arms are counted and left out.
    - A sample-ratio mismatch blocks any decision.
    - Metrics: 0/1 columns get the two-proportion z-test, other columns Welch's t
      (with CUPED on ``covariates[metric]``, a pre-period column, when given), and
      ``ratios`` (``{metric: (numerator column, denominator column)}``) the delta method.
    - Every metric also gets the mSPRT always-valid p-value (``tau2``, default the
      squared control value / 100: a 10 % effect scale).
    - Success metrics: Holm's correction across them. Before ``planned_per_arm`` is
      reached, only the sequential p-values may decide (looking early is then safe);
      at the planned sample (or without a plan), the fixed-horizon test decides.
    - Guardrails (``{metric: non-inferiority margin}``) may not get worse by more than
      the margin: the interval's lower bound must stay above ``-margin`` (its upper
      bound below ``+margin`` for metrics in ``lower_is_better``, such as latency).
    """
    import pandas as pd

    ratios, covariates, guardrails = ratios or {}, covariates or {}, guardrails or {}
    frame = pd.DataFrame(units)
    arms = frame.groupby("unit")["arm"].nunique()
    both = set(arms[arms > 1].index)
    frame = frame[~frame["unit"].isin(both)]
    counts = frame["arm"].value_counts()
    n_c, n_t = int(counts.get(CHAMPION_ARM, 0)), int(counts.get(CHALLENGER_ARM, 0))
    srm = sample_ratio_mismatch([n_c, n_t], [1 - treatment_share, treatment_share])
    split = (frame[frame["arm"] == CHAMPION_ARM], frame[frame["arm"] == CHALLENGER_ARM])
    effects, found = [], {}
    for metric in [*success, *guardrails]:
        if metric in ratios:
            effect, variance, extra = _ratio_row(metric, frame, split, ratios[metric], alpha)
        else:
            effect, variance, extra = _unit_row(metric, frame, split, covariates.get(metric), alpha)
        scale = tau2 if tau2 is not None else (effect.control / 10) ** 2 or 1e-6
        row = effect.to_dict() | {"units": [n_c, n_t]} | extra
        row |= {
            "sequential_p_value": msprt_p_value(effect.absolute, max(variance, 1e-18), scale),
            "role": "success" if metric in success else "guardrail",
        }
        found[metric] = row
        effects.append(row)
    reached = planned_per_arm is None or min(n_c, n_t) >= planned_per_arm
    judged_on = "p_value" if reached else "sequential_p_value"
    for (rejected, adjusted), metric in zip(
        holm([found[m][judged_on] for m in success], alpha), success, strict=True
    ):
        found[metric] |= {"holm_p_value": adjusted, "significant": rejected, "judged_on": judged_on}
    if srm["flagged"]:
        return Verdict(
            "keep running",
            f"sample-ratio mismatch: {n_c} vs {n_t} units for a planned"
            f" {1 - treatment_share:.0%}/{treatment_share:.0%} split (p {srm['p_value']:.2g}):"
            " fix the assignment before reading any effect",
            srm,
            effects,
            len(both),
        )
    progress = (min(n_c, n_t), planned_per_arm, reached)
    decision, reason = _judge(found, success, guardrails, lower_is_better, progress)
    return Verdict(decision, reason, srm, effects, len(both))


__all__ = [
    "CHALLENGER_ARM",
    "CHAMPION_ARM",
    "SRM_ALPHA",
    "Design",
    "Effect",
    "Verdict",
    "assign",
    "cuped",
    "decide",
    "design",
    "holm",
    "msprt_p_value",
    "ratio_test",
    "ratio_variance",
    "sample_ratio_mismatch",
    "two_proportions",
    "welch",
]
