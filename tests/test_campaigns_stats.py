"""Uplift statistics: the intervals cover the true uplift about 95 % of the time (over many seeds, not one), and
the warnings say when groups are too small; holdout membership is stable, uniform and monotone in the share."""

from __future__ import annotations

import numpy as np
import pytest

from vehicle_ingest.campaigns.stats import MIN_GROUP, mean_uplift, rate_uplift
from vehicle_ingest.tags.holdout import held_out, holdout_position

RUNS = 400


def _coverage(draw) -> float:
    rng = np.random.default_rng(20261206)
    hits = 0
    for _ in range(RUNS):
        result, truth = draw(rng)
        hits += result.ci_low <= truth <= result.ci_high
    return hits / RUNS


@pytest.mark.parametrize(("p_control", "p_treated", "n_treated", "n_control"), [(0.1, 0.3, 80, 20), (0.5, 0.5, 60, 60)])
def test_rate_interval_covers_the_true_uplift_about_95_percent_of_the_time(p_control, p_treated, n_treated, n_control):
    def draw(rng):
        t, c = rng.binomial(n_treated, p_treated), rng.binomial(n_control, p_control)
        return rate_uplift(int(t), n_treated, int(c), n_control), p_treated - p_control

    # 400 runs: a true 95 % lands in [0.92, 0.98] with probability > 0.99.
    assert 0.92 <= _coverage(draw) <= 0.98


def test_mean_interval_covers_the_true_uplift_about_95_percent_of_the_time():
    def draw(rng):
        return mean_uplift(rng.normal(-20, 300, 60), rng.normal(-50, 200, 15)), 30.0

    assert 0.92 <= _coverage(draw) <= 0.98


def test_a_clear_effect_is_told_apart_and_small_groups_are_warned_about():
    clear = rate_uplift(60, 100, 10, 100)
    assert clear.ci_low > 0 and clear.p_value < 1e-6 and clear.warning is None
    assert clear.uplift == pytest.approx(0.5) and clear.relative_uplift == pytest.approx(5.0)
    assert 0 < clear.mde < 0.2  # 100 against 100 detect about 13 points over a 10 % rate
    small = rate_uplift(3, 10, 0, 2)
    assert small.ci_low < 0 < small.ci_high and "too small" in small.warning and str(MIN_GROUP) in small.warning
    assert small.mde > 0.5
    unclear = mean_uplift(np.arange(100.0), np.arange(100.0) + 1)
    assert unclear.ci_low < 0 < unclear.ci_high and "no effect told apart" in unclear.warning
    for empty in (rate_uplift(0, 0, 3, 10), mean_uplift([], [1.0, 2.0])):
        assert empty.uplift is None and empty.ci_low is None and "nothing to compare" in empty.warning
    zero = rate_uplift(0, 40, 0, 40)  # nobody in either group: an interval around 0, no division error
    assert zero.uplift == 0 and zero.ci_low < 0 < zero.ci_high


def test_holdout_membership_is_stable_uniform_and_monotone_in_the_share():
    # A fixed value: the hash is a contract (the engine, the simulator, every stored flag). Never change it.
    position = holdout_position("owner-00001", "maintenance_overdue", "vehicle-ingest-holdout-1")
    assert round(position, 12) == 0.448919812111
    owners = [f"owner-{i:05d}" for i in range(20_000)]
    tenth = {o for o in owners if held_out(o, "t", 0.1, "s")}
    fifth = {o for o in owners if held_out(o, "t", 0.2, "s")}
    assert tenth < fifth and 0.09 < len(tenth) / len(owners) < 0.11 and 0.19 < len(fifth) / len(owners) < 0.21
    other_tag = {o for o in owners if held_out(o, "u", 0.1, "s")}
    assert 0.005 < len(tenth & other_tag) / len(owners) < 0.015  # independent per tag
    assert not any(held_out(o, "t", 0.0, "s") for o in owners)
    with pytest.raises(ValueError, match="salt"):
        holdout_position("o", "t", "")
