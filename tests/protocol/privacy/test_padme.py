"""Padmé: never shorter, at most 12% longer, monotonic, and few distinct sizes."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.privacy import padme


def paper_padme(length: int) -> int:
    """Algorithm 1 of the PURBs paper, written as printed (floating-point logs)."""
    e = math.floor(math.log2(length))
    s = math.floor(math.log2(e)) + 1
    last_bits = e - s
    bit_mask = (1 << last_bits) - 1
    return (length + bit_mask) & ~bit_mask


def test_agrees_with_the_paper_and_known_values() -> None:
    assert [padme(n) for n in (0, 1, 2, 3, 9, 100, 129, 1000, 10**6)] == [
        0, 1, 2, 3, 10, 104, 144, 1024, 1015808,
    ]  # fmt: skip
    assert all(padme(n) == paper_padme(n) for n in range(2, 70_000))


@given(st.integers(0, 2**48))
def test_never_shorter_at_most_12_percent_longer_and_stable(length: int) -> None:
    padded = padme(length)
    assert length <= padded <= length * 1.12
    assert padme(padded) == padded  # a padded size is its own class


@given(st.integers(0, 2**40), st.integers(0, 2**20))
def test_monotonic(length: int, more: int) -> None:
    assert padme(length) <= padme(length + more)


def test_worst_overhead_and_the_few_sizes_a_range_leaks() -> None:
    overhead = max((padme(n) - n) / n for n in range(1, 1 << 16))
    assert 0.11 < overhead < 0.12  # 129 -> 144
    sizes = {padme(n) for n in range(1, (1 << 20) + 1)}
    assert len(sizes) == 300  # of 2^20 lengths: 8.2 bits of 20 leak
    assert math.log2(len(sizes)) < 2 * math.log2(20) + 1  # O(log log M) bits


@pytest.mark.parametrize("bad", [-1, 1.5, "10", True])
def test_refuses_what_is_not_a_length(bad: object) -> None:
    with pytest.raises(ValueError, match="non-negative integer"):
        padme(bad)  # type: ignore[arg-type]
