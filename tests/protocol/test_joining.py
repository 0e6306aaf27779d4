"""When a node looks itself up again: joining, settling, settled (without trio)."""

from __future__ import annotations

import math

import pytest

from protocol.dht.joining import JoinSchedule, Phase, Seen

NEVER = -math.inf


def schedule(**kwargs: float) -> JoinSchedule:
    return JoinSchedule(rng=lambda: 0.0, first=0.5, cap=8.0, quiet=60.0, **kwargs)


def test_a_node_nobody_answered_keeps_joining_with_doubling_capped_delays() -> None:
    plan = schedule()
    seen = Seen(0.0, 1, NEVER, 0.0)  # a bootstrap contact, never answered
    delays = [plan.next_delay(seen) for _ in range(7)]
    assert {phase for phase, _ in delays} == {Phase.JOINING}
    assert [d for _, d in delays] == [0.5, 1, 2, 4, 8, 8, 8]


def test_an_empty_table_is_joining_even_after_answers() -> None:
    assert schedule().phase(Seen(100.0, 0, 90.0, NEVER)) is Phase.JOINING


def test_settling_lasts_until_a_lookup_after_the_longest_wait_learns_nothing() -> None:
    plan = schedule()
    seen = Seen(10.0, 3, 9.0, NEVER)
    for step in (0.5, 1.0, 2.0, 4.0):
        assert plan.next_delay(seen) == (Phase.SETTLING, step)
        plan.looked_up(grew=False)  # nothing new, but latecomers may still come
    assert plan.next_delay(seen) == (Phase.SETTLING, 8.0)
    plan.looked_up(grew=True)  # a latecomer found after the longest wait: keep going
    assert plan.next_delay(seen) == (Phase.SETTLING, 8.0)
    plan.looked_up(grew=False)
    assert plan.next_delay(seen) == (Phase.SETTLED, 8.0)  # checked again every cap seconds


def settle(plan: JoinSchedule, seen: Seen) -> None:
    while plan.next_delay(seen)[0] is not Phase.SETTLED:
        plan.looked_up(grew=False)


def test_a_node_cut_off_joins_again_and_settles_anew() -> None:
    plan = schedule()
    settle(plan, Seen(100.0, 20, 99.0, NEVER))
    assert plan.phase(Seen(100.0, 20, 99.0, NEVER)) is Phase.SETTLED
    # Queries fail, nobody was heard for longer than `quiet`: cut off.
    cut = Seen(200.0, 20, 100.0, 190.0)
    assert plan.next_delay(cut) == (Phase.JOINING, 0.5)
    # Failures alone do not mean cut off while peers are still heard.
    assert plan.phase(Seen(200.0, 20, 199.0, 198.0)) is Phase.SETTLING
    # Quiet alone (no failures) does not either: nobody needed asking.
    assert plan.phase(Seen(500.0, 20, 100.0, NEVER)) is Phase.SETTLING


def test_the_delay_starts_again_when_the_phase_changes() -> None:
    plan = schedule()
    joining = Seen(0.0, 1, NEVER, NEVER)
    for _ in range(4):
        plan.next_delay(joining)
    assert plan.next_delay(Seen(5.0, 4, 4.0, NEVER)) == (Phase.SETTLING, 0.5)


@pytest.mark.parametrize("draw", [0.0, 0.5, 0.9999])
def test_jitter_keeps_each_delay_within_half_and_all_of_its_step(draw: float) -> None:
    plan = JoinSchedule(rng=lambda: draw, first=1.0, cap=4.0)
    seen = Seen(0.0, 1, NEVER, NEVER)
    for step in (1.0, 2.0, 4.0, 4.0):
        _, delay = plan.next_delay(seen)
        assert step / 2 < delay <= step


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="first <= cap"):
        JoinSchedule(rng=lambda: 0.0, first=5.0, cap=1.0)
