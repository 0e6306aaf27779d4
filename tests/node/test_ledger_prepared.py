"""Entries signed ahead of their commit (LedgerService.prepare_all / append_prepared):
used only while still current, never forking the feed, never written unless committed."""

from __future__ import annotations

from pathlib import Path

from node.ledger.service import LedgerService
from protocol.ledger.entries import Body
from protocol.ledger.timestamps import floor_time
from storage.store.ledger_db import LedgerDB
from tests.node.test_ledger_flood import Clock
from tests.node.test_ledger_flood import put_bodies as flood_put_bodies
from tests.protocol.keys import signing_key


def put_bodies(owner: bytes, label: str) -> list[Body]:
    return flood_put_bodies(owner, label, grants="a")


async def test_prepared_entries_are_committed_as_signed_and_not_written_before(
    tmp_path: Path,
) -> None:
    with LedgerDB(tmp_path / "ledger.sqlite") as db:
        ledger = LedgerService(identity=signing_key("node"), clock_ms=Clock(), db=db)
        ledger.trust_local()
        prepared = ledger.prepare_all(put_bodies(ledger.public_key, "one"))
        assert len(ledger.book) == 0 and db.entry_count() == 0  # nothing written yet
        entries = await ledger.append_prepared(prepared)
        assert [e.raw for e in entries] == [e.raw for e in prepared.entries]
        assert [e.seq for e in entries] == [1, 2] and db.entry_count() == 2


async def test_a_prepared_batch_behind_the_feeds_head_is_signed_again_not_forked(
    tmp_path: Path,
) -> None:
    ledger = LedgerService(identity=signing_key("node"), clock_ms=Clock())
    ledger.trust_local()
    owner = ledger.public_key
    stale = ledger.prepare_all(put_bodies(owner, "prepared first"))
    await ledger.append_all(put_bodies(owner, "written meanwhile"))  # the head moved
    entries = await ledger.append_prepared(stale)
    assert [e.seq for e in entries] == [3, 4]  # after the other write, not beside it
    assert {e.raw for e in entries}.isdisjoint(e.raw for e in stale.entries)
    assert owner not in ledger.book.flagged
    assert [e.seq for e in ledger.book.entries() if e.author == owner] == [1, 2, 3, 4]


async def test_a_prepared_batch_from_an_earlier_minute_is_stamped_anew() -> None:
    clock = Clock()
    ledger = LedgerService(identity=signing_key("node"), clock_ms=clock)
    ledger.trust_local()
    prepared = ledger.prepare_all(put_bodies(ledger.public_key, "slow holders"))
    clock.now += 60_000  # the holders took past the minute's grain
    entries = await ledger.append_prepared(prepared)
    assert [e.timestamp for e in entries] == [floor_time(clock.now)] * 2
    assert [e.seq for e in entries] == [1, 2]


async def test_an_unused_prepared_batch_leaves_nothing(tmp_path: Path) -> None:
    with LedgerDB(tmp_path / "ledger.sqlite") as db:
        ledger = LedgerService(identity=signing_key("node"), clock_ms=Clock(), db=db)
        ledger.trust_local()
        owner = ledger.public_key
        ledger.prepare_all(put_bodies(owner, "a put that failed"))  # then dropped
        entries = await ledger.append_all(put_bodies(owner, "the next put"))
        assert [e.seq for e in entries] == [1, 2]
        assert len(ledger.book) == 2 and db.entry_count() == 2
