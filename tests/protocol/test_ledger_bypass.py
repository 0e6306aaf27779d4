"""Two ways around the per-author bounds, closed: forks at one seq and backdated feeds."""

from __future__ import annotations

import random

import pytest

from protocol.ledger.book import OVER_INTAKE, OVER_SIBLINGS, LedgerBook
from protocol.ledger.entries import Entry, RecordBody, derive_record_id, sign_entry
from protocol.ledger.intake import IntakeBudget
from protocol.ledger.live import LiveState
from protocol.ledger.state import fold
from tests.protocol.keys import seed
from tests.protocol.ledger_helpers import Feed


def siblings(feed: Feed, count: int, seq: int = 1, prev: bytes = b"") -> list[Entry]:
    """`count` different record entries at one seq and one millisecond."""
    out = []
    for i in range(count):
        nonce = seed(f"sibling {seq} {i}")[:16]
        record_id = derive_record_id(feed.public, nonce)
        body = RecordBody(record_id, nonce, b"m" * 32, 10, 4, 8, feed.public)
        out.append(sign_entry(feed.key, seq, prev, 5_000_000, body))
    return out


def backdated(feed: Feed, count: int) -> list[Entry]:
    """A feed starting in 1970, one entry a second: within every rate window."""
    record_id = feed.record("old")
    for i in range(count - 1):
        feed.grant(record_id, bytes([i % 256]) * 32)
    return feed.entries


def test_fork_siblings_beyond_two_are_refused_unremembered() -> None:
    mallory = Feed("mallory")
    forks = siblings(mallory, 200)
    book = LedgerBook()
    result = book.ingest([e.raw for e in forks], now_ms=5_000_000)
    smallest = sorted(e.hash for e in forks)[:2]
    assert sorted(e.hash for e in book.entries()) == smallest
    assert book.flagged[mallory.public] and set(book.flagged[mallory.public]) == set(smallest)
    refusals = [reason for _, reason in result.refused]
    assert refusals.count(OVER_SIBLINGS) == len(refusals) >= 1
    assert len(result.accepted) == 2  # the evicted were never reported accepted
    assert book.heads()[mallory.public].count == 2


def test_the_same_two_siblings_and_branches_are_kept_in_any_order() -> None:
    mallory = Feed("mallory")
    forks = siblings(mallory, 6)
    branches = []
    mallory.clock = 5_000_000  # the branches follow their siblings' time
    for fork in forks:  # each sibling followed by a short branch
        prev = fork
        for _ in range(3):
            prev = mallory.write(RecordBody(*_record(mallory, prev.seq)), after=prev)
            branches.append(prev)
    everything = forks + branches
    outcomes = set()
    for trial in range(12):
        order = everything[:]
        random.Random(trial).shuffle(order)
        book, live = LedgerBook(), LiveState()
        for start in range(0, len(order), 1 + trial % 4):  # various batchings
            result = book.ingest([e.raw for e in order[start : start + 1 + trial % 4]])
            live.apply(
                result.accepted,
                removed=result.dropped,
                flagged=result.flags,
                violations={h: r for h, r in book.violations.items()},
            )
        kept = frozenset(e.hash for e in book.entries())
        full = fold(book.entries(), flagged=book.flagged, violations=book.violations)
        assert live.state.digest() == full.digest()  # incremental == full fold, evictions too
        outcomes.add((kept, full.digest()))
    assert len(outcomes) == 1
    ((kept, _),) = outcomes
    assert len(kept) == 2 * 4  # two siblings, each with its branch of three


def _record(feed: Feed, seq: int) -> tuple[bytes, bytes, bytes, int, int, int, bytes]:
    nonce = seed(f"branch {len(feed.entries)} {seq}")[:16]
    return derive_record_id(feed.public, nonce), nonce, b"m" * 32, 10, 4, 8, feed.public


def test_a_backdated_flood_is_taken_at_the_intake_pace_and_all_of_it_later() -> None:
    mallory = Feed("mallory")
    entries = backdated(mallory, 3_000)
    raws = [e.raw for e in entries]
    assert entries[-1].timestamp < 86_400_000 * 2  # January 1970
    intake = IntakeBudget(rate_per_s=10, burst=1_000)
    book = LedgerBook()
    now = 1_800_000_000_000
    result = book.ingest(raws, now_ms=now, intake=intake)
    assert len(book) == 1_000 and len(result.accepted) == 1_000
    assert {reason for _, reason in result.refused} == {OVER_INTAKE}
    assert not book.orphan_count  # the deferred do not fill the orphans
    assert book.ingest(raws, now_ms=now, intake=intake).accepted == []  # still empty
    assert len(book.ingest(raws, now_ms=now + 60_000, intake=intake).accepted) == 600
    later = book.ingest(raws, now_ms=now + 600_000, intake=intake)  # deferred, not remembered
    assert len(later.accepted) == 1_000  # a bucket holds no more than its burst
    last = book.ingest(raws, now_ms=now + 700_000, intake=intake)
    assert len(last.accepted) == 400 and len(book) == 3_000 and not last.refused
    assert book.heads()[mallory.public].seq == 3_000


def test_another_author_is_not_slowed_by_a_flooder() -> None:
    mallory, alice = Feed("mallory"), Feed("alice")
    intake = IntakeBudget(rate_per_s=1, burst=100)
    book = LedgerBook()
    book.ingest([e.raw for e in backdated(mallory, 500)], now_ms=10**12, intake=intake)
    alice.record("honest")
    assert len(book.ingest([alice.entries[0].raw], now_ms=10**12, intake=intake).accepted) == 1


def test_the_intake_bucket_refills_with_the_receivers_clock_only() -> None:
    bucket = IntakeBudget(rate_per_s=2, burst=3)
    author = b"a" * 32
    assert [bucket.take(author, 0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.take(author, -10_000)  # a clock stepped back refills nothing
    assert bucket.take(author, 500) and not bucket.take(author, 500)  # one per half second
    assert bucket.available(author, 10**9) == 3  # never more than the burst
    with pytest.raises(ValueError):
        IntakeBudget(rate_per_s=0)


@pytest.mark.slow
def test_the_reviewed_probe_of_110000_backdated_entries_is_bounded() -> None:
    mallory = Feed("mallory")
    raws = [e.raw for e in backdated(mallory, 110_000)]
    intake = IntakeBudget()
    book = LedgerBook()
    now = 1_800_000_000_000
    first = book.ingest(raws, now_ms=now, intake=intake)
    assert len(first.accepted) == 20_000  # the default burst
    assert {reason for _, reason in first.refused} == {OVER_INTAKE}
    offers = 0
    while len(book) < 110_000:  # gossip offers the rest again each time the bucket refilled
        now += 200_000  # 20,000 at 100 a second
        offers += 1
        assert len(book.ingest(raws, now_ms=now, intake=intake).accepted) <= 20_000
    assert offers == 5  # all of it after 1,000 s of this node's time, not at once
