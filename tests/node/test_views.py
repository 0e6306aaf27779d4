"""A holder's views of its records: what the read gate weighs repair and audit reads by."""

from __future__ import annotations

import trio

from node.records.views import SURVEYS_WANTED, RecordViews
from protocol.records.health import RecordHealth
from protocol.records.messages import HoldingsFound

K, N = 3, 5


def key(i: int) -> bytes:
    return bytes([i]) * 32


def health(record: bytes, holders: range) -> RecordHealth:
    answers = [(key(i), HoldingsFound((i,), (), ())) for i in holders]
    return RecordHealth.of(record, K, N, answers)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def views(clock: Clock, held: set[bytes]) -> RecordViews:
    return RecordViews(holds=held.__contains__, clock=clock, stale_after=5.0, need_fresh=60.0)


async def test_a_view_says_whether_a_repair_read_is_needed_and_only_held_records_are_kept() -> None:
    clock = Clock()
    record, other = b"r" * 32, b"o" * 32
    seen = views(clock, {record})
    assert not seen.repair_read(record, key(0), 0, None)  # no view: not needed here
    seen.note(health(other, range(N)))  # not held: not kept
    assert seen.seen(other) is None
    seen.note(health(record, range(N)))
    assert not seen.repair_read(record, key(0), 0, None)
    seen.note(health(record, range(1, N)))  # index 0's holder is gone
    assert seen.repair_read(record, key(9), 1, None)
    assert not seen.repair_read(record, key(0), 0, None)  # it proves index 0: healthy
    clock.now = 60.0  # a need seen a minute ago no longer opens reads: look again
    assert not seen.repair_read(record, key(9), 1, None)
    seen.keep_only(set())
    assert seen.seen(record) is None


async def test_a_stale_view_is_looked_at_again_once_per_period_and_the_queue_is_bounded(
    autojump_clock: trio.abc.Clock,
) -> None:
    clock = Clock()
    records = [i.to_bytes(32, "big") for i in range(SURVEYS_WANTED + 10)]
    seen = views(clock, set(records))
    seen.note(health(records[0], range(N)))
    seen.look_again(records[0])  # fresh: nothing asked
    clock.now = 6.0
    for _ in range(3):
        seen.look_again(records[0])  # stale: asked once, not three times
    assert await seen.wanted() == records[0]
    for record in records[1:]:  # no view at all: asked, as far as the queue goes
        seen.look_again(record)
    wanted = [await seen.wanted() for _ in range(SURVEYS_WANTED)]
    assert wanted == records[1 : SURVEYS_WANTED + 1]
    with trio.move_on_after(1):  # the rest were dropped: the next pass looks at them
        await seen.wanted()
        raise AssertionError("more surveys queued than the bound")
    clock.now = 12.0
    seen.look_again(records[0])  # a period later: asked again
    assert await seen.wanted() == records[0]
