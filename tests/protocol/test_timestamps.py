"""Coarse ledger times: writers publish minutes, the feed rules and rate limits hold
on them as they did on milliseconds, and old fine-grained entries stay valid."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.ledger import feeds
from protocol.ledger.book import LedgerBook
from protocol.ledger.entries import Entry, GrantBody, RecordBody, derive_record_id, sign_entry
from protocol.ledger.timestamps import (
    TIMESTAMP_GRAIN_MS,
    entry_time,
    expiry_time,
    floor_time,
    is_coarse,
)
from tests.protocol.keys import seed
from tests.protocol.ledger_helpers import Feed

MINUTE = 60_000
NOON = 1_700_000_000_000 - 1_700_000_000_000 % MINUTE  # a minute boundary


@given(st.integers(0, 2**48), st.integers(0, 2**48))
def test_entry_times_are_coarse_and_never_go_back(now: int, after: int) -> None:
    stamp = entry_time(now, after)
    assert is_coarse(stamp) and stamp >= after
    assert stamp <= max(now, after + TIMESTAMP_GRAIN_MS)  # at most a grain past the later one
    if after <= floor_time(now):
        assert now - TIMESTAMP_GRAIN_MS < stamp <= now  # the minute it was written in


@given(st.integers(0, 2**48))
def test_expiry_is_rounded_up_never_shortened(end: int) -> None:
    rounded = expiry_time(end)
    assert is_coarse(rounded) and end <= rounded < end + TIMESTAMP_GRAIN_MS


def test_the_grain_is_the_smallest_rate_window() -> None:
    """Coarser than the smallest window, the per-minute limit would count per grain."""
    assert min(window for window, _ in feeds.RATE_LIMITS) == TIMESTAMP_GRAIN_MS
    assert all(window % TIMESTAMP_GRAIN_MS == 0 for window, _ in feeds.RATE_LIMITS)
    assert TIMESTAMP_GRAIN_MS < feeds.MAX_CLOCK_SKEW_MS  # a ceiled stamp is never "ahead"


class CoarseFeed:
    """An honest writer: real times in ms, published through `entry_time`."""

    def __init__(self, label: str) -> None:
        self.key = Feed(label).key
        self.public = bytes(self.key.verify_key)
        self.entries: list[Entry] = []
        nonce = seed(label)[:16]
        self.record_id = derive_record_id(self.public, nonce)
        self.first = RecordBody(self.record_id, nonce, b"m" * 32, 1024, 4, 8, self.public)

    def write_at(self, now_ms: int) -> Entry:
        head = self.entries[-1] if self.entries else None
        body = self.first if head is None else GrantBody(self.record_id, b"g" * 32, b"s" * 80, 0)
        stamp = entry_time(now_ms, head.timestamp if head else 0)
        entry = sign_entry(self.key, len(self.entries) + 1, head.hash if head else b"", stamp, body)
        self.entries.append(entry)
        return entry


def test_rate_limits_hold_on_coarse_times(monkeypatch: pytest.MonkeyPatch) -> None:
    """3 a minute and 10 an hour (scaled down): a writer one entry every 7 s is stopped
    at the 4th entry of a minute and at the 11th of an hour, as with exact times."""
    monkeypatch.setattr(feeds, "RATE_LIMITS", ((MINUTE, 3), (60 * MINUTE, 10)))
    feed = CoarseFeed("steady")
    entries = [feed.write_at(NOON + 7_000 * i) for i in range(4)]  # all within 12:00
    assert {e.timestamp for e in entries} == {NOON}
    book = LedgerBook()
    result = book.ingest([e.raw for e in entries], now_ms=NOON + MINUTE)
    assert len(book) == 3 and result.refused[0][1] == "over the rate limit of 3 entries in a minute"
    # Three a minute from the next minutes on: the hour's 10 are reached in minute 3.
    hourly = CoarseFeed("hourly")
    times = [NOON + minute * MINUTE + 7_000 * i for minute in range(5) for i in range(3)]
    written = [hourly.write_at(now) for now in times]
    book = LedgerBook()
    result = book.ingest([e.raw for e in written], now_ms=NOON + 5 * MINUTE)
    assert len(book) == 10
    assert result.refused[0][1] == "over the rate limit of 10 entries in an hour"
    assert all(is_coarse(e.timestamp) for e in book.entries())


def test_a_minute_boundary_allows_two_allowances_back_to_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What coarse times change, stated: the limit is per calendar minute, so at most
    twice it can land in one sliding minute (just before and just after a boundary)."""
    monkeypatch.setattr(feeds, "RATE_LIMITS", ((MINUTE, 3),))
    feed = CoarseFeed("edge")
    before = [feed.write_at(NOON + MINUTE - 100 + i) for i in range(3)]
    after = [feed.write_at(NOON + MINUTE + i) for i in range(3)]
    one_more = feed.write_at(NOON + MINUTE + 50)
    book = LedgerBook()
    result = book.ingest([e.raw for e in (*before, *after, one_more)], now_ms=NOON + 2 * MINUTE)
    assert len(book) == 6
    assert result.refused[0] == (feed.public, "over the rate limit of 3 entries in a minute")


def test_old_fine_grained_entries_stay_valid_and_are_followed_on_the_grain() -> None:
    old = Feed("old")  # its clock: 1,001,000 ms and on, a second apart: not on the minute
    record_id = old.record("r")
    old.grant(record_id, b"g" * 32)
    head = old.entries[-1]
    assert not is_coarse(head.timestamp)
    stamp = entry_time(head.timestamp + 10, head.timestamp)  # written 10 ms later
    assert stamp == 1_020_000 > head.timestamp  # the next minute, within the skew
    new = sign_entry(
        old.key, head.seq + 1, head.hash, stamp, GrantBody(record_id, b"h" * 32, b"s" * 80, 0)
    )
    book = LedgerBook()
    result = book.ingest([e.raw for e in (*old.entries, new)], now_ms=head.timestamp + 10)
    assert result.refused == [] and len(book) == 3


def test_a_fine_time_from_a_member_is_not_refused() -> None:
    """No rule asks for coarse times (docs/privacy.md): a finer time is its author's leak."""
    feed = Feed("fine")
    feed.record("r")
    book = LedgerBook()
    assert book.ingest([e.raw for e in feed.entries], now_ms=feed.clock).refused == []
