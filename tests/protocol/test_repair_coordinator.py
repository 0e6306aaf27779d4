"""Who repairs a record: a per-record coordinator order, and turns that pass on when the
first-ranked holder lets a deadline go by (issue 13: repair cannot be captured)."""

from __future__ import annotations

import math
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.records.health import RecordHealth
from protocol.records.messages import HoldingsFound
from protocol.records.repair import (
    coordinator,
    coordinator_order,
    coordinator_turn,
    passed_over,
)

DEADLINE = 1800.0


def key(i: int) -> bytes:
    return bytes([i]) * 32


def record(i: int) -> bytes:
    return i.to_bytes(32, "big")


def health(record_id: bytes, *nodes: int, n: int = 5) -> RecordHealth:
    answers = [(key(node), HoldingsFound((i % n,), (), ())) for i, node in enumerate(nodes)]
    return RecordHealth.of(record_id, 2, n, answers)


def test_no_identity_is_first_for_every_record() -> None:
    nodes = [key(i) for i in range(1, 6)]
    firsts = Counter(coordinator_order(record(r), nodes)[0] for r in range(1000))
    assert set(firsts) == set(nodes)
    assert all(120 <= count <= 280 for count in firsts.values()), firsts  # ~200 each


def test_the_order_is_deterministic_whatever_the_survey_order() -> None:
    nodes = [key(i) for i in range(1, 8)]
    order = coordinator_order(record(7), nodes)
    assert coordinator_order(record(7), reversed(nodes)) == order
    assert coordinator_order(record(7), [*nodes, *nodes]) == order  # each holder once
    assert sorted(order) == sorted(nodes)
    assert coordinator_order(record(8), nodes) != order  # per record


def test_without_a_deadline_passed_the_first_ranked_holder_repairs() -> None:
    h = health(record(1), 1, 2, 3)
    order = coordinator_order(record(1), h.holders)
    assert coordinator(h) == order[0]
    assert coordinator(h, 0.0, DEADLINE) == order[0]
    assert coordinator(h, DEADLINE - 0.001, DEADLINE) == order[0]
    assert coordinator(health(record(1))) is None


def test_a_silent_first_holder_is_replaced_by_the_second_after_one_deadline() -> None:
    h = health(record(2), 1, 2, 3, 4)
    order = coordinator_order(record(2), h.holders)
    assert coordinator(h, DEADLINE, DEADLINE) == order[1]  # exactly one deadline: a tie
    assert passed_over(h, DEADLINE, DEADLINE) == order[0]
    assert coordinator(h, 2.5 * DEADLINE, DEADLINE) == order[2]
    assert passed_over(h, 2.5 * DEADLINE, DEADLINE) == order[1]
    # After the last rank the first gets a turn again: every live holder keeps trying.
    assert coordinator(h, 4 * DEADLINE, DEADLINE) == order[0]
    assert passed_over(h, 4 * DEADLINE, DEADLINE) == order[3]


def test_a_dead_first_holder_is_not_waited_for() -> None:
    h = health(record(3), 1, 2, 3)
    first, second, third = coordinator_order(record(3), h.holders)
    survivors = [n for n in (1, 2, 3) if key(n) != first]
    later = health(record(3), *survivors)  # the first no longer answers the survey
    assert coordinator(later, 0.0, DEADLINE) == second
    assert passed_over(later, 0.0, DEADLINE) is None  # nobody to blame: it is gone
    assert coordinator(later, DEADLINE, DEADLINE) == third


def test_a_holder_missing_from_a_later_survey_passes_its_turn_on() -> None:
    h = health(record(4), 1, 2, 3, 4)
    order = coordinator_order(record(4), h.holders)
    assert coordinator(h, DEADLINE, DEADLINE) == order[1]
    gone = next(i for i in (1, 2, 3, 4) if key(i) == order[1])
    later = health(record(4), *(i for i in (1, 2, 3, 4) if i != gone))
    assert coordinator(later, DEADLINE, DEADLINE) == order[2]  # the next one, at once


def test_healthy_again_means_the_first_ranked_holder_again() -> None:
    h = health(record(5), 1, 2, 3)
    order = coordinator_order(record(5), h.holders)
    assert coordinator(h, 1.5 * DEADLINE, DEADLINE) == order[1]
    assert coordinator(h, 0.0, DEADLINE) == order[0]  # the node's timer was reset
    assert passed_over(h, 0.0, DEADLINE) is None


def test_a_lone_holder_is_never_passed_over_by_itself() -> None:
    h = health(record(6), 1)
    assert coordinator(h, 3 * DEADLINE, DEADLINE) == key(1)
    assert passed_over(h, 3 * DEADLINE, DEADLINE) is None


@pytest.mark.parametrize("deadline", [0.0, -1.0, math.nan])
def test_a_deadline_must_be_positive(deadline: float) -> None:
    with pytest.raises(ValueError, match="deadline is positive"):
        coordinator_turn(10.0, deadline)


def test_turns_count_whole_deadlines_and_never_go_negative() -> None:
    assert coordinator_turn(-5.0, 10.0) == 0  # a clock that went backwards
    assert coordinator_turn(math.nan, 10.0) == 0
    assert [coordinator_turn(t, 10.0) for t in (0, 9.99, 10, 19.99, 20)] == [0, 0, 1, 1, 2]
    assert coordinator_turn(1e12, math.inf) == 0


@given(
    st.integers(0, 2**32),
    st.sets(st.integers(1, 40), min_size=1, max_size=10),
    st.integers(0, 50),
)
def test_every_holder_gets_one_turn_in_any_run_of_as_many_deadlines(
    record_number: int, nodes: set[int], start: int
) -> None:
    h = health(record(record_number), *sorted(nodes), n=len(nodes))
    turns = [coordinator(h, (start + i) * 10.0 + 1.0, 10.0) for i in range(len(nodes))]
    assert sorted(t for t in turns if t is not None) == sorted(h.holders)
