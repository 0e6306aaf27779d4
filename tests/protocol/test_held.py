"""A small record's get in one round, the pure part (protocol.records.held)."""

from __future__ import annotations

import pytest

from protocol.net.messages import BadMessage, Envelope, Kind, decode_envelope, encode_envelope
from protocol.records.held import (
    HELD_MAX_BYTES,
    SPARE_FLOOR,
    first_asks,
    held_asks,
    served_index,
    small,
    spare_delay,
)
from protocol.records.messages import MAX_HELD_SEGMENTS, FetchHeld, HeldFound


def test_a_record_is_small_when_one_index_fits_one_answer() -> None:
    third = (1024 * 1024 + 16 + 2) // 3  # a 1 MiB segment with its MAC, k=3
    assert small([third])
    assert small([HELD_MAX_BYTES])
    assert not small([HELD_MAX_BYTES + 1])
    assert not small([1] * (MAX_HELD_SEGMENTS + 1))  # many tiny segments: too many blocks
    assert not small([])


def test_a_holder_serves_a_data_index_first_and_none_when_it_holds_none() -> None:
    assert served_index([4, 1, 3], k=3) == 1
    assert served_index([4, 3], k=3) == 3
    assert served_index([], k=3) is None


def test_a_reader_asks_one_candidate_more_than_k_for_blocks() -> None:
    """The over-fetch bound: n answers of one index each, n - k more than needed."""
    assert held_asks(3, 5) == 4  # one spare, not every holder's index
    assert held_asks(4, 5) == 5
    assert held_asks(2, 2) == 2


def test_a_reader_asks_k_at_once_and_the_spare_only_later() -> None:
    assert first_asks(3, 5) == 3
    assert first_asks(2, 2) == 2  # no spare to ask: held_asks is 2 as well


def test_the_spare_is_asked_when_the_last_index_is_late() -> None:
    # Nothing in yet: twice the slowest expected answer.
    assert spare_delay(-1.0, expected=0.05) == pytest.approx(0.1)
    # All but one in after 4 ms: 4 ms more for the last (from the round's start: 8 ms).
    assert spare_delay(0.004, expected=0.05) == pytest.approx(0.008)
    # Sooner than the latency bound only: a round already past it asks at that bound.
    assert spare_delay(0.2, expected=0.05) == pytest.approx(0.1)
    # Answers within a millisecond still leave the last SPARE_FLOOR to come.
    assert spare_delay(0.0001, expected=0.05) == pytest.approx(0.0001 + SPARE_FLOOR)


def test_the_messages_round_trip_with_and_without_blocks() -> None:
    for message in (
        FetchHeld(b"r" * 32, b"permit"),
        HeldFound((1,), (2,), 1, (b"block", None)),
        HeldFound((), (), None, ()),
    ):
        envelope = Envelope(Kind.REQUEST, 3, message)
        assert decode_envelope(encode_envelope(envelope)).message == message


def test_an_answer_with_more_blocks_than_a_small_record_has_is_refused_on_decode() -> None:
    flood = HeldFound((0,), (), 0, tuple(b"x" for _ in range(MAX_HELD_SEGMENTS + 1)))
    with pytest.raises(BadMessage):
        decode_envelope(encode_envelope(Envelope(Kind.RESPONSE, 3, flood)))
