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
from typing import Literal

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


__all__ = ["Design", "design"]
