"""Uplift statistics from statsmodels: no hand-written statistics here, only the choice of method and its reading.

- A rate (binary outcome): the difference of two independent proportions, treated minus control; its
  95 % interval is Newcombe's hybrid score interval and its p-value the Agresti-Caffo test
  (`confint_proportions_2indep` / `test_proportions_2indep`, statsmodels' defaults for a difference),
  both sound with small groups and with rates of 0 or 1, where a plain Wald interval collapses.
- A mean (numeric outcome): Welch's t interval and test (unequal variances, `CompareMeans`).
- Minimum detectable effect: the smallest true uplift the groups at hand would detect with 80 % power
  at the 5 % level (`NormalIndPower` on Cohen's h for rates, `TTestIndPower` on Cohen's d for means),
  expressed in the outcome's own units (points of rate above the control's, or units of the mean).
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

__all__ = ["ALPHA", "MIN_GROUP", "POWER", "Uplift", "mean_uplift", "rate_uplift"]

ALPHA = 0.05
POWER = 0.8
MIN_GROUP = 30  # below this in either group, an interval says little and a warning says so


@dataclass(frozen=True, slots=True)
class Uplift:
    treated_outcome: float | None  # rate or mean of the treated group
    control_outcome: float | None
    uplift: float | None  # treated minus control
    relative_uplift: float | None  # uplift / control outcome (None when the control's is 0 or below)
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    mde: float | None  # minimum detectable effect, same units as the uplift
    warning: str | None


def _finite(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _relative(uplift: float | None, control: float | None) -> float | None:
    """Uplift as a share of the control's outcome; none against 0 or a negative baseline (a fall in km, say)."""
    return None if uplift is None or control is None or control <= 0 else uplift / control


def _warning(treated: int, control: int, uplift: Uplift) -> str | None:
    if treated == 0 or control == 0:
        missing = "treated" if treated == 0 else "held-out (control)"
        return f"no {missing} owners with a complete window yet: nothing to compare"
    mde = "an unknown" if uplift.mde is None else f"{uplift.mde:.3g}"
    spans_zero = uplift.ci_low is None or uplift.ci_high is None or uplift.ci_low <= 0 <= uplift.ci_high
    if not spans_zero:
        return None  # told apart from zero: the groups were large enough for this effect
    if min(treated, control) < MIN_GROUP:
        return (
            f"groups too small to tell ({treated} treated, {control} control, fewer than {MIN_GROUP} in one):"
            f" only an uplift of about {mde} or more would likely show"
        )
    if uplift.mde is not None and abs(uplift.uplift or 0.0) < uplift.mde:
        return f"no effect told apart from zero; with these groups an uplift under {mde} would likely go unseen"
    return None


@functools.lru_cache(maxsize=1024)
def _detectable_size(treated: int, control: int, means: bool) -> float:
    """The standardised effect (Cohen's h for rates, d for means) detectable with these groups: a root search,
    which depends on the group sizes alone, so it is remembered."""
    from statsmodels.stats.power import NormalIndPower, TTestIndPower

    analysis = TTestIndPower() if means else NormalIndPower()
    return float(analysis.solve_power(None, nobs1=treated, alpha=ALPHA, power=POWER, ratio=control / treated))


def _rate_mde(control_rate: float, treated: int, control: int) -> float | None:
    h = _detectable_size(treated, control, means=False)
    # Back from Cohen's h (2 asin sqrt p1 - 2 asin sqrt p0) to points of rate above the control's.
    angle = math.asin(math.sqrt(control_rate)) + h / 2
    return _finite(math.sin(min(angle, math.pi / 2)) ** 2 - control_rate)


def rate_uplift(treated_successes: int, treated: int, control_successes: int, control: int) -> Uplift:
    """Treated minus control rate, with its interval, p-value and minimum detectable effect."""
    if treated == 0 or control == 0:
        rates = (treated_successes / treated if treated else None, control_successes / control if control else None)
        empty = Uplift(*rates, *[None] * 7)
        return _with_warning(empty, treated, control)
    from statsmodels.stats.proportion import confint_proportions_2indep, test_proportions_2indep

    p1, p0 = treated_successes / treated, control_successes / control
    with warnings.catch_warnings():  # 0/n or n/n in both groups: statsmodels divides by zero on the way, harmlessly
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = confint_proportions_2indep(
            treated_successes, treated, control_successes, control, compare="diff", alpha=ALPHA
        )
        test = test_proportions_2indep(treated_successes, treated, control_successes, control, compare="diff")
    uplift = p1 - p0
    result = Uplift(
        p1, p0, uplift, _relative(uplift, p0), _finite(low), _finite(high), _finite(test.pvalue),
        _rate_mde(p0, treated, control), None,
    )  # fmt: skip
    return _with_warning(result, treated, control)


def mean_uplift(treated_values: Sequence[float], control_values: Sequence[float]) -> Uplift:
    """Treated minus control mean (Welch), with its interval, p-value and minimum detectable effect."""
    t, c = np.asarray(treated_values, dtype=np.float64), np.asarray(control_values, dtype=np.float64)
    means = (float(t.mean()) if len(t) else None, float(c.mean()) if len(c) else None)
    if len(t) < 2 or len(c) < 2:  # Welch needs a variance in each group
        uplift = None if means[0] is None or means[1] is None else means[0] - means[1]
        empty = Uplift(*means, uplift, _relative(uplift, means[1]), None, None, None, None, None)
        return _with_warning(empty, len(t), len(c))
    from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

    compare = CompareMeans(DescrStatsW(t), DescrStatsW(c))
    with warnings.catch_warnings():  # both groups constant: no interval (nan), said by the warning
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = compare.tconfint_diff(alpha=ALPHA, usevar="unequal")
        _, p_value, _ = compare.ttest_ind(usevar="unequal")
        pooled = math.sqrt((t.var(ddof=1) + c.var(ddof=1)) / 2)
        d = _detectable_size(len(t), len(c), means=True)
    uplift = float(t.mean() - c.mean())
    result = Uplift(
        means[0], means[1], uplift, _relative(uplift, means[1]), _finite(low), _finite(high), _finite(p_value),
        _finite(float(d) * pooled), None,
    )  # fmt: skip
    return _with_warning(result, len(t), len(c))


def _with_warning(result: Uplift, treated: int, control: int) -> Uplift:
    return replace(result, warning=_warning(treated, control, result))
