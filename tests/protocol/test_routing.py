from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.dht.contact import Contact, ContactInfo, distance
from protocol.dht.routing import Added, BucketFull, Ignored, RoutingTable, Updated


def contact(rnd: random.Random, port: int = 1) -> Contact:
    return Contact(rnd.randbytes(32), f"10.0.0.1:{port}")


def test_add_update_and_own_id() -> None:
    rnd = random.Random(1)
    own = contact(rnd)
    table = RoutingTable(own, k=4)
    other = contact(rnd, 2)
    assert isinstance(table.observe(other, 0), Added)
    assert isinstance(table.observe(other, 1), Updated)
    assert isinstance(table.observe(own, 1), Ignored)
    assert other in table and len(table) == 1
    assert table.get(other.node_id) == other


def test_full_far_bucket_asks_to_ping_the_least_recently_seen() -> None:
    rnd = random.Random(2)
    own = contact(rnd)
    table = RoutingTable(own, k=2, symbol_bits=1)  # binary: the far half never splits
    # Contacts whose ids differ from ours in the first bit land in the far half.
    far = [
        c
        for c in (contact(rnd, i) for i in range(200))
        if (c.long_id >> 159) != (own.long_id >> 159)
    ]
    first, second, third = far[:3]
    for c in (first, second):
        table.observe(c, 0)
    table.observe(first, 1)  # first is now the most recently seen
    decision = table.observe(third, 2)
    assert isinstance(decision, BucketFull)
    assert decision.oldest == second and decision.candidate == third
    assert third not in table
    # The ping of `second` failed: the waiting replacement takes its place.
    assert table.remove(second.node_id) == third
    assert third in table and second not in table


def test_successful_ping_keeps_the_old_contact() -> None:
    rnd = random.Random(3)
    own = contact(rnd)
    table = RoutingTable(own, k=1, symbol_bits=1)
    far = [
        c
        for c in (contact(rnd, i) for i in range(200))
        if (c.long_id >> 159) != (own.long_id >> 159)
    ]
    table.observe(far[0], 0)
    decision = table.observe(far[1], 1)
    assert isinstance(decision, BucketFull) and decision.oldest == far[0]
    assert isinstance(table.observe(far[0], 2), Updated)
    assert far[0] in table and far[1] not in table


def test_symbol_bits_set_the_bucket_shape() -> None:
    rnd = random.Random(7)
    own = contact(rnd)
    contacts = [contact(rnd, i) for i in range(4000)]
    binary = RoutingTable(own, k=4, symbol_bits=1)
    wide = RoutingTable(own, k=4, symbol_bits=5)
    for c in contacts:
        binary.observe(c, 0)
        wide.observe(c, 0)
    # Binary: one bucket per level of shared prefix with our own id.
    assert all(
        b.has_in_range(own) or (b.range[1] - b.range[0] + 1) * 2 > (own.long_id ^ b.range[0])
        for b in binary._buckets
    )
    assert wide.bucket_count > 3 * binary.bucket_count
    assert len(wide) > 3 * len(binary)


def test_own_bucket_splits_and_keeps_k_per_bucket() -> None:
    rnd = random.Random(4)
    table = RoutingTable(contact(rnd), k=8)
    for i in range(3000):
        table.observe(contact(rnd, i), 0)
    assert table.bucket_count > 5
    assert all(len(b) <= 8 for b in table._buckets)
    # Ranges tile the whole id space without gaps.
    ranges = sorted(b.range for b in table._buckets)
    assert ranges[0][0] == 0 and ranges[-1][1] == 2**160 - 1
    assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(ranges))


@given(st.integers(0, 2**32), st.integers(1, 400), st.integers(1, 30))
def test_closest_equals_brute_force(seed: int, population: int, count: int) -> None:
    rnd = random.Random(seed)
    table = RoutingTable(contact(rnd), k=5)
    for i in range(population):
        table.observe(contact(rnd, i), 0)
    target = rnd.randbytes(20)
    brute = sorted(table.contacts(), key=lambda c: distance(c.node_id, target))[:count]
    assert table.closest(target, count) == brute
    excluded = brute[0].node_id if brute else None
    assert all(c.node_id != excluded for c in table.closest(target, count, exclude=excluded))


def test_refresh_targets_fall_in_stale_buckets() -> None:
    rnd = random.Random(5)
    table = RoutingTable(contact(rnd), k=4)
    for i in range(500):
        table.observe(contact(rnd, i), 0)
    targets = table.refresh_targets(now=100, interval=50, random_bytes=rnd.randbytes)
    assert len(targets) == table.bucket_count  # none refreshed yet
    for target in targets:
        table.mark_refreshed(target, 100)
    assert table.refresh_targets(now=120, interval=50, random_bytes=rnd.randbytes) == []
    assert (
        len(table.refresh_targets(now=151, interval=50, random_bytes=rnd.randbytes))
        == table.bucket_count
    )


def test_snapshot_restores_the_same_contacts() -> None:
    rnd = random.Random(6)
    own = contact(rnd)
    table = RoutingTable(own, k=6)
    for i in range(300):
        table.observe(contact(rnd, i), 0)
    copy = RoutingTable(own, k=6)
    assert copy.restore(table.snapshot(), now=5) == len(table)
    assert sorted(c.public_key for c in copy.contacts()) == sorted(
        c.public_key for c in table.contacts()
    )


def test_contact_validation() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        ContactInfo(b"short", "h:1")
    with pytest.raises(ValueError, match="HOST:PORT"):
        ContactInfo(bytes(32), "nocolon")
    a = Contact(bytes(32), "h:1")
    assert a == Contact(bytes(32), "other:2") and hash(a) == hash(Contact(bytes(32), "x:3"))
