"""Per-author bounds and frozen feeds: a flooding or rule-breaking member is bounded."""

from __future__ import annotations

import pytest

from protocol.ledger import feeds
from protocol.ledger.book import LedgerBook
from protocol.ledger.entries import Entry, GrantBody, RecordBody, derive_record_id, sign_entry
from protocol.ledger.feeds import MAX_CLOCK_SKEW_MS
from protocol.ledger.gossip import missing_ranges
from protocol.ledger.messages import FeedHead
from tests.protocol.keys import seed
from tests.protocol.ledger_helpers import Feed


def flood(feed: Feed, count: int, step_ms: int) -> list[Entry]:
    """`count` grants on one own record, `step_ms` apart."""
    record_id = feed.record("flooded")
    for _ in range(count - 1):
        feed.clock += step_ms - 1000  # Feed.write adds a second
        feed.grant(record_id, b"g" * 32)
    return feed.entries


def test_honest_pace_is_within_the_limits() -> None:
    # 40,000 entries a day (10,000 records with three grants) never reach a limit.
    day, per_day = 86_400_000, 40_000
    for window, most in feeds.RATE_LIMITS:
        assert most > per_day * window / day * 2  # twice the average, in every window
    assert feeds.MAX_FEED_ENTRIES >= 365 * 100_000


def test_a_flood_is_refused_beyond_the_rate_and_resumes_within_it() -> None:
    mallory = Feed("mallory")
    entries = flood(mallory, 2_050, step_ms=10)  # 100 a second
    book = LedgerBook()
    result = book.ingest([e.raw for e in entries], now_ms=mallory.clock)
    assert len(book) == 2_000  # the minute's allowance
    assert len(result.refused) == 50
    assert result.refused[0] == (mallory.public, "over the rate limit of 2000 entries in a minute")
    assert {r for _, r in result.refused[1:]} == {"follows a refused entry"}
    assert book.heads()[mallory.public].seq == 2_000
    replay = book.ingest([e.raw for e in entries], now_ms=mallory.clock)  # replays: no change
    assert replay.accepted == [] and len(book) == 2_000
    # A minute later the author may write again, following its last kept entry.
    head = entries[1_999]
    later = sign_entry(
        mallory.key, 2_001, head.hash, head.timestamp + 60_000, GrantBody(
            head.record_id, b"h" * 32, b"s" * 80, 0))  # fmt: skip
    assert book.ingest([later.raw], now_ms=later.timestamp).accepted == [later]


def test_every_window_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(feeds, "RATE_LIMITS", ((1_000, 3), (10_000, 5)))
    feed = Feed("busy")
    entries = flood(feed, 8, step_ms=1_000)  # 1 a second: within 3/s, over 5 per 10 s
    book = LedgerBook()
    result = book.ingest([e.raw for e in entries])
    assert len(book) == 5 and result.refused[0][1].startswith("over the rate limit of 5")


def test_quota_per_feed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(feeds, "MAX_FEED_ENTRIES", 3)
    feed = Feed("long")
    entries = flood(feed, 5, step_ms=60_000)
    book = LedgerBook()
    result = book.ingest([e.raw for e in entries])
    assert len(book) == 3 and result.refused[0][1] == "feed longer than 3 entries"


def test_timestamps_may_not_go_back_nor_run_ahead() -> None:
    feed = Feed("clock")
    record_id = feed.record("r")
    first = feed.entries[0]
    back = sign_entry(feed.key, 2, first.hash, first.timestamp - 1, GrantBody(
        record_id, b"g" * 32, b"s" * 80, 0))  # fmt: skip
    book = LedgerBook()
    result = book.ingest([first.raw, back.raw], now_ms=first.timestamp)
    assert result.refused == [(feed.public, "timestamp earlier than the entry before it")]
    ahead = sign_entry(feed.key, 2, first.hash, first.timestamp + MAX_CLOCK_SKEW_MS + 1,
                       GrantBody(record_id, b"g" * 32, b"s" * 80, 0))  # fmt: skip
    result = book.ingest([ahead.raw], now_ms=first.timestamp)
    assert "ahead of this node's clock" in result.refused[0][1] and ahead.hash not in book
    # Not remembered: offered again once the clock caught up, it is accepted.
    later = book.ingest([ahead.raw], now_ms=ahead.timestamp)
    assert later.accepted == [ahead]


def test_a_rule_breaking_entry_freezes_its_feed_in_any_order() -> None:
    owner, mallory = Feed("owner"), Feed("mallory")
    record_id = owner.record("r1")
    own = mallory.record("m1")
    mallory.grant(own, b"g" * 32)
    breach = mallory.grant(record_id, mallory.public)  # someone else's record
    after = [mallory.grant(own, bytes([i]) * 32) for i in range(5)]
    raws = [e.raw for e in (*owner.entries, *mallory.entries)]
    for order in (raws, raws[::-1]):
        book = LedgerBook()
        for raw in order:  # one at a time: orphans first in the reversed order
            book.ingest([raw])
        assert breach.hash in book and all(e.hash not in book for e in after)
        assert book.frozen == {mallory.public: breach.seq}
        assert book.flagged == {mallory.public: [breach.hash]}
        assert book.orphan_count == 0
        assert book.range(mallory.public, 1, 100, 100)[-1] == breach.raw  # served up to it
    # Gossip does not pull beyond the frozen seq from a peer that holds more.
    theirs = [FeedHead(mallory.public, 9, 9, b"t" * 16)]
    assert missing_ranges(book.heads(), theirs, batch=64, budget=256, frozen=book.frozen) == []


def test_a_freeze_below_held_entries_drops_them() -> None:
    mallory = Feed("mallory")
    own = mallory.record("m1")
    base = mallory.entries[0]
    branch = [mallory.grant(own, bytes([i]) * 32) for i in range(3)]  # seq 2..4
    breach = mallory.write(RecordBody(b"x" * 32, b"n" * 16, b"m" * 32, 1, 1, 1, mallory.public),
                           after=base)  # seq 2 on another branch, an id not its own  # fmt: skip
    book = LedgerBook()
    book.ingest([base.raw, *(e.raw for e in branch)])
    result = book.ingest([breach.raw])
    assert result.dropped == branch[1:] and len(book) == 3
    assert book.frozen == {mallory.public: 2}
    assert set(book.flagged[mallory.public]) == {branch[0].hash, breach.hash}  # fork + breach


def test_cross_feed_rules_never_freeze_an_honest_feed() -> None:
    owner, patient = Feed("owner"), Feed("patient")
    record_id = owner.record("r1")
    owner.grant(record_id, patient.public)
    attest = patient.attest(record_id)
    patient.attest(derive_record_id(owner.public, seed("not yet")[:16]))  # record unknown
    book = LedgerBook()
    book.ingest([e.raw for e in patient.entries])  # before the record and the grant
    book.ingest([e.raw for e in owner.entries])
    assert book.frozen == {} and book.flagged == {} and attest.hash in book
    assert len(book) == 4
