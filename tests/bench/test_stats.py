"""The analytic formulas the durability report prints beside its measurements."""

from __future__ import annotations

import math

import pytest

from benchmarks.stats import Scheme, binomial_availability, wilson_interval


def test_binomial_availability_matches_hand_computed_values() -> None:
    assert binomial_availability(1, 2, 0.5) == pytest.approx(0.75)
    assert binomial_availability(2, 4, 0.5) == pytest.approx(11 / 16)
    assert binomial_availability(4, 8, 0.2) == pytest.approx(
        sum(math.comb(8, i) * 0.2**i * 0.8 ** (8 - i) for i in range(5))
    )
    assert binomial_availability(3, 3, 0.1) == pytest.approx(0.9**3)
    assert binomial_availability(4, 8, 0.0) == 1.0


def test_more_redundancy_at_equal_overhead_is_more_available_at_low_failure_rates() -> None:
    assert binomial_availability(4, 8, 0.1) > binomial_availability(2, 4, 0.1)
    assert binomial_availability(2, 4, 0.1) > binomial_availability(1, 2, 0.1)


def test_binomial_rejects_a_probability_out_of_range() -> None:
    with pytest.raises(ValueError, match="out of range"):
        binomial_availability(1, 2, 1.5)


def test_wilson_interval_is_sound_at_the_edges_and_contains_the_estimate() -> None:
    low, high = wilson_interval(10, 10)
    assert high == 1.0 and 0.65 < low < 0.75  # 0.7225 for n = 10 at 95%
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and 0.25 < high < 0.30
    low, high = wilson_interval(50, 100)
    assert low < 0.5 < high and high - low == pytest.approx(2 * 0.0962, abs=0.002)
    wide = wilson_interval(5, 10)
    narrow = wilson_interval(500, 1000)
    assert wide[1] - wide[0] > narrow[1] - narrow[0]


def test_wilson_interval_rejects_impossible_counts() -> None:
    with pytest.raises(ValueError):
        wilson_interval(3, 2)
    with pytest.raises(ValueError):
        wilson_interval(0, 0)


def test_schemes_parse_and_describe_themselves() -> None:
    assert Scheme.parse("4/8") == Scheme(4, 8)
    assert Scheme.parse("1/3").label == "3x replication"
    assert Scheme.parse("10/14").overhead == pytest.approx(1.4)
    for bad in ("4", "8/4", "0/2", "a/b"):
        with pytest.raises(ValueError, match="scheme"):
            Scheme.parse(bad)
