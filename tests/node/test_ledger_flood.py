"""A member flooding the ledger is bounded, and honest puts cost the same after it."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from node.ledger.service import LedgerError, LedgerService
from protocol.ledger.book import OVER_INTAKE
from protocol.ledger.entries import Body, GrantBody, RecordBody, derive_record_id
from protocol.ledger.intake import IntakeBudget
from protocol.ledger.state import fold
from protocol.ledger.timestamps import floor_time, is_coarse
from storage.store.ledger_db import LedgerDB
from tests.protocol.keys import seed, signing_key
from tests.protocol.ledger_helpers import Feed


class Clock:
    """A wall clock in ms that moves only when a test sets it (shared with
    tests/node/test_ledger_prepared.py)."""

    def __init__(self, now: int = 1_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def put_bodies(owner: bytes, label: str, grants: str = "ab") -> list[Body]:
    """What a put appends: its record entry and a grant per letter of `grants`."""
    nonce = seed(label)[:16]
    record_id = derive_record_id(owner, nonce)
    return [
        RecordBody(record_id, nonce, b"m" * 32, 10, 4, 8, owner),
        *(GrantBody(record_id, seed(f"{label} {g}"), b"s" * 80, 0) for g in grants),
    ]


async def test_a_flood_is_bounded_and_the_honest_put_step_stays_flat(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    with LedgerDB(tmp_path / "ledger.sqlite") as db:
        ledger = LedgerService(identity=signing_key("node"), clock_ms=clock, db=db)
        owner = ledger.public_key

        async def put_work(label: str) -> tuple[int, int]:
            touched = ledger.live.touched
            await ledger.append_all(put_bodies(owner, label))
            return ledger.live.touched - touched, db.entry_count()

        before, _ = await put_work("first")
        mallory = Feed("mallory")
        record_id = mallory.record("flood")
        for i in range(2_500):  # 2,500 entries in 25 s: the measured attack's pace
            mallory.clock += 10 - 1000
            mallory.grant(record_id, bytes([i % 256]) * 32)
        clock.now = mallory.clock
        with caplog.at_level(logging.WARNING, logger="medvault.ledger"):
            for start in range(0, 2_501, 250):  # pushed in gossip-sized batches
                await ledger.ingest(e.raw for e in mallory.entries[start : start + 250])
            await ledger.ingest(e.raw for e in mallory.entries)  # replayed: nothing changes
        assert len([e for e in ledger.book.entries() if e.author == mallory.public]) == 2_000
        assert db.entry_count() == 3 + 2_000  # the refused are not stored
        assert ledger.refused_count == 2 * 501
        offences = [r for r in caplog.records if r.getMessage() == "ledger entries refused"]
        reasons = sorted(r.__dict__["fields"]["reason"] for r in offences)
        assert reasons == [  # once per reason a minute, not once per entry
            "follows a refused entry",
            "over the rate limit of 2000 entries in a minute",
            "refused before",
        ]
        assert all(mallory.public.hex()[:16] in str(r.__dict__) for r in offences)
        after, stored = await put_work("second")
        assert after == before == 3  # an honest put looks at its own entries only
        assert stored == 3 + 2_000 + 3


async def test_an_honest_writer_is_told_when_it_would_break_a_bound(tmp_path: Path) -> None:
    clock = Clock()
    ledger = LedgerService(identity=signing_key("node"), clock_ms=clock)
    owner = ledger.public_key
    for i in range(666):
        await ledger.append_all(put_bodies(owner, f"put {i}"))  # 1,998 entries, no time passes
    with pytest.raises(LedgerError, match="over the rate limit of 2000 entries in a minute"):
        await ledger.append_all(put_bodies(owner, "one too many"))
    clock.now += 60_000
    await ledger.append_all(put_bodies(owner, "a minute later"))
    clock.now -= 30_000  # the clock steps back: the feed's timestamps do not
    entries = await ledger.append_all(put_bodies(owner, "after the step"))
    assert entries[0].timestamp == floor_time(clock.now + 30_000)  # published on the minute
    assert all(is_coarse(e.timestamp) for e in ledger.book.entries())
    nosy = Feed("nosy")
    with pytest.raises(LedgerError, match="not created earlier in its author's own feed"):
        foreign = entries[0].record_id
        await ledger.append(GrantBody(foreign, b"g" * 32, b"s" * 80, 0), signer=nosy.key)


async def test_a_backdated_flood_and_fork_siblings_are_bounded_at_the_node(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    clock.now = 1_800_000_000_000
    with LedgerDB(tmp_path / "ledger.sqlite") as db:
        ledger = LedgerService(
            identity=signing_key("node"),
            clock_ms=clock,
            db=db,
            intake=IntakeBudget(rate_per_s=10, burst=500),
        )
        mallory = Feed("mallory")
        record_id = mallory.record("backdated")  # timestamps in January 1970
        for i in range(1_499):
            mallory.grant(record_id, bytes([i % 256]) * 32)
        forks = [
            mallory.grant(record_id, bytes([i]) * 32, after=mallory.entries[1_000])
            for i in range(20)
        ]
        raws = [e.raw for e in mallory.entries[:1_500]]
        with caplog.at_level(logging.WARNING, logger="medvault.ledger"):
            for start in range(0, 1_500, 250):  # pushed in gossip-sized batches
                await ledger.ingest(raws[start : start + 250])
        assert db.entry_count() == 500  # the burst; the rest deferred, nothing stored
        offences = [r for r in caplog.records if r.getMessage() == "ledger entries refused"]
        assert [r.__dict__["fields"]["reason"] for r in offences] == [OVER_INTAKE]  # once
        assert not ledger.book.orphan_count
        await ledger.append_all(put_bodies(ledger.public_key, "own"))  # own writes go on
        clock.now += 60_000  # a minute later gossip offers them again: 500 more (the burst)
        assert len(await ledger.ingest(raws)) == 500
        clock.now += 60_000
        assert len(await ledger.ingest(raws)) == 500 and db.entry_count() == 1_503
        clock.now += 60_000
        accepted = await ledger.ingest(e.raw for e in forks)  # siblings at seq 1,002
        assert len(accepted) >= 1
        feed = [e for e in ledger.book.entries() if e.author == mallory.public]
        assert len([e for e in feed if e.seq == 1_002]) == 2  # two prove the fork
        assert ledger.book.flagged[mallory.public]
        assert (
            ledger.state().digest()
            == fold(ledger.book.entries(), ledger.book.flagged, ledger.book.violations).digest()
        )
