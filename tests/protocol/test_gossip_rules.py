"""Anti-entropy decisions, exercised between two books with no network at all."""

from __future__ import annotations

import random

from protocol.ledger.book import Head, LedgerBook
from protocol.ledger.gossip import heads_message, lag, missing_ranges, pick
from protocol.ledger.messages import FeedHead
from tests.protocol.ledger_helpers import Feed


def exchange(a: LedgerBook, b: LedgerBook, batch: int, budget: int) -> int:
    """a pulls from b once; returns how many entries moved."""
    ranges = missing_ranges(
        a.heads(),
        heads_message(b.heads()),
        batch=batch,
        budget=budget,
        orphan_floors=a.orphan_floors(),
    )
    raws = [raw for r in ranges for raw in b.range(r.author, r.first, r.last, budget)]
    return len(a.ingest(raws[:budget]).accepted)


def sync(a: LedgerBook, b: LedgerBook, batch: int = 8, budget: int = 32, limit: int = 200) -> int:
    for rounds in range(1, limit + 1):
        exchange(a, b, batch, budget)
        exchange(b, a, batch, budget)
        if set(e.hash for e in a.entries()) == set(e.hash for e in b.entries()) and not (
            a.orphan_count or b.orphan_count
        ):
            return rounds
    raise AssertionError("did not converge")


def test_a_node_far_behind_catches_up_in_bounded_batches() -> None:
    feed = Feed("busy author")
    record_id = feed.record("r")
    for i in range(100):
        feed.grant(record_id, bytes([i]) * 32)
    ahead, behind = LedgerBook(), LedgerBook()
    ahead.ingest(e.raw for e in feed.entries)
    moved = exchange(behind, ahead, batch=8, budget=32)
    assert moved == 8  # one batch per feed per exchange
    assert sync(behind, ahead) <= 13


def test_a_deep_fork_is_walked_back_until_both_sides_hold_both_branches() -> None:
    feed = Feed("forked author")
    record_id = feed.record("r")
    for i in range(2):
        feed.grant(record_id, bytes([i]) * 32)
    base = feed.entries[-1]
    west = [feed.grant(record_id, b"w" * 32, after=base)]
    for _ in range(150):
        west.append(feed.grant(record_id, b"w" * 32, after=west[-1]))
    east = [feed.revoke(record_id, b"w" * 32, after=base)]
    for _ in range(150):
        east.append(feed.revoke(record_id, b"w" * 32, after=east[-1]))
    a, b = LedgerBook(), LedgerBook()
    common = feed.entries[:3]
    a.ingest(e.raw for e in (*common, *west))
    b.ingest(e.raw for e in (*common, *east))
    assert a.heads()[feed.public].seq == b.heads()[feed.public].seq  # same length...
    assert a.heads()[feed.public].tip != b.heads()[feed.public].tip  # ...other branch
    rounds = sync(a, b)
    assert rounds <= 2 * (151 // 8) + 4
    assert feed.public in a.flagged and feed.public in b.flagged


def test_equal_heads_ask_for_nothing_and_pick_is_bounded() -> None:
    feed = Feed("quiet")
    feed.record("r")
    a, b = LedgerBook(), LedgerBook()
    a.ingest(e.raw for e in feed.entries)
    b.ingest(e.raw for e in feed.entries)
    assert missing_ranges(a.heads(), heads_message(b.heads()), batch=8, budget=8) == []
    rng = random.Random(1)
    assert len(pick(list(range(10)), 3, rng)) == 3
    assert sorted(pick([1, 2], 5, rng)) == [1, 2]


def test_lag_counts_entries_either_side_has_beyond_the_other() -> None:
    a, b, c = b"a" * 32, b"b" * 32, b"c" * 32
    tip = b"t" * 16
    mine = {a: Head(5, 5, tip), b: Head(2, 2, tip), c: Head(4, 4, tip)}
    theirs = [FeedHead(a, 3, 3, tip), FeedHead(b, 7, 7, tip), FeedHead(b"d" * 32, 1, 1, tip)]
    # b: 5 beyond us, d: 1 new to us; a: 2 beyond them, c: 4 they do not list.
    assert lag(mine, theirs) == (6, 6)
    assert lag(mine, heads_message(mine)) == (0, 0)
    assert lag({}, []) == (0, 0)
