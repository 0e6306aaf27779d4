"""The reader's fetch plan and latency average, without trio or peers."""

from __future__ import annotations

import pytest

from protocol.dht.contact import Contact
from protocol.records.fetching import UNKNOWN_LATENCY, FetchRounds, Latency
from protocol.records.messages import BlockRef


def contact(i: int) -> Contact:
    return Contact(bytes([i]) * 32, f"mem-{i}:1")


A, B, C, D = (contact(i) for i in (1, 2, 3, 4))


def rounds(
    holders: dict[int, list[Contact]],
    *,
    segments: int = 1,
    need: int = 2,
    n: int = 4,
    latency: Latency | None = None,
    corrupt: dict[bytes, set[int]] | None = None,
    avoid: tuple[int, ...] = (),
) -> FetchRounds:
    return FetchRounds(
        segments=range(segments),
        need=need,
        n=n,
        holders=holders,
        latency=latency or Latency(),
        corrupt=corrupt if corrupt is not None else {},
        avoid=avoid,
    )


def test_latency_is_smoothed_and_unknown_nodes_rank_in_between() -> None:
    latency = Latency()
    assert latency.rank(b"x") == UNKNOWN_LATENCY
    latency.note(b"x", 1.0)
    latency.note(b"x", 0.0)
    assert latency.rank(b"x") == pytest.approx(0.7)


def test_latency_memory_is_bounded() -> None:
    latency = Latency(max_nodes=5)
    for i in range(100):
        latency.note(i.to_bytes(4, "big"), 0.1)
    assert len(latency) == 5


def test_data_shards_first_each_from_its_fastest_holder() -> None:
    latency = Latency()
    latency.note(A.public_key, 0.5)
    latency.note(B.public_key, 0.01)
    plan = rounds({0: [A, B], 1: [A], 2: [C], 3: [D]}, latency=latency).next_round()
    assert plan == {B: [BlockRef(0, 0)], A: [BlockRef(0, 1)]}


def test_a_failed_block_is_tried_elsewhere_then_the_fetch_gives_up() -> None:
    fetch = rounds({0: [A, B], 1: [A], 2: [C]}, n=3)
    first = fetch.next_round()
    assert first == {A: [BlockRef(0, 0), BlockRef(0, 1)]}
    fetch.received(0, 1)  # index 0 from A did not come
    second = fetch.next_round()
    assert second == {B: [BlockRef(0, 0)]}
    third = fetch.next_round()  # B failed too: the parity shard from C
    assert third == {C: [BlockRef(0, 2)]}
    assert fetch.next_round() == {}
    assert fetch.short() == [0]
    assert fetch.shortfall() == "segment 0: only 1 verified shards reachable, 2 needed"


def test_holders_that_served_corrupt_blocks_and_avoided_indices_are_skipped() -> None:
    fetch = rounds({0: [A], 1: [B], 2: [C], 3: [D]}, corrupt={A.public_key: {0}}, avoid=(1,))
    assert fetch.next_round() == {C: [BlockRef(0, 2)], D: [BlockRef(0, 3)]}


def test_done_segments_ask_nothing() -> None:
    fetch = rounds({0: [A], 1: [A]}, segments=2, n=2)
    assert fetch.next_round() == {
        A: [BlockRef(0, 0), BlockRef(0, 1), BlockRef(1, 0), BlockRef(1, 1)]
    }
    for segment in (0, 1):
        for index in (0, 1):
            fetch.received(segment, index)
    assert fetch.short() == [] and fetch.next_round() == {}
