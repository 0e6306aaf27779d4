"""Dial backoff and the duplicate-connection tie-break, without trio."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.net.dialing import Backoff, keep_new_connection


def fixed(value: float) -> Backoff:
    return Backoff(initial=1.0, maximum=8.0, rng=lambda: value)


def test_delays_double_up_to_the_cap_without_jitter() -> None:
    backoff = fixed(0.0)
    assert [backoff.failed("a:1", 0.0) for _ in range(6)] == [1, 2, 4, 8, 8, 8]


def test_jitter_takes_up_to_half_of_each_step() -> None:
    backoff = fixed(0.999)
    assert backoff.failed("a:1", 0.0) == pytest.approx(0.5005)
    assert backoff.failed("a:1", 0.0) == pytest.approx(1.001)


def test_wait_counts_down_and_success_clears_it() -> None:
    backoff = fixed(0.0)
    assert backoff.wait("a:1", 10.0) == 0.0
    backoff.failed("a:1", 10.0)
    backoff.failed("a:1", 11.0)  # 2 s from 11
    assert backoff.wait("a:1", 12.0) == pytest.approx(1.0)
    assert backoff.wait("a:1", 13.5) == 0.0
    assert backoff.wait("b:1", 12.0) == 0.0  # per address
    backoff.succeeded("a:1")
    assert backoff.wait("a:1", 12.0) == 0.0
    assert backoff.failed("a:1", 12.0) == 1.0  # starts over


def test_memory_is_bounded_by_forgetting_the_oldest_failure() -> None:
    backoff = Backoff(initial=1.0, maximum=8.0, rng=lambda: 0.0, max_addresses=3)
    for i in range(1000):
        backoff.failed(f"flood-{i}:1", 0.0)
    assert len(backoff) == 3
    assert backoff.wait("flood-999:1", 0.0) > 0
    assert backoff.wait("flood-0:1", 0.0) == 0.0


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="initial"):
        Backoff(initial=5.0, maximum=1.0, rng=lambda: 0.0)


@given(st.lists(st.floats(0, 0.9999), min_size=1, max_size=20))
def test_every_delay_lies_within_half_and_all_of_its_step(draws: list[float]) -> None:
    values = iter(draws)
    backoff = Backoff(initial=1.0, maximum=8.0, rng=lambda: next(values))
    step = 1.0
    for _ in draws:
        delay = backoff.failed("a:1", 0.0)
        assert step / 2 < delay <= step
        step = min(step * 2, 8.0)


def kept_outbound(local: bytes, remote: bytes, *, first_outbound: bool) -> bool:
    """Of two crossing connections, the direction `local` keeps after the second arrives."""
    second_outbound = not first_outbound
    replace = keep_new_connection(
        local, remote, existing_outbound=first_outbound, new_outbound=second_outbound
    )
    return second_outbound if replace else first_outbound


@pytest.mark.parametrize("first_outbound", [True, False])
def test_crossing_dials_settle_on_the_connection_the_smaller_key_dialed(
    first_outbound: bool,
) -> None:
    small, large = b"\x01" * 32, b"\x02" * 32
    # Whatever order each side saw the two connections in, small keeps its
    # outbound one and large keeps its inbound one: the same connection.
    assert kept_outbound(small, large, first_outbound=first_outbound) is True
    assert kept_outbound(large, small, first_outbound=first_outbound) is False


@pytest.mark.parametrize("outbound", [True, False])
def test_a_redial_in_the_same_direction_replaces_the_stale_connection(outbound: bool) -> None:
    for a, b in itertools.permutations([b"\x01" * 32, b"\x02" * 32]):
        assert keep_new_connection(a, b, existing_outbound=outbound, new_outbound=outbound)
