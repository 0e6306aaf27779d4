"""A wallet's cursor survives a restart: positions count stealth grants in the order the node
accepted them, and the ledger is loaded back in that same order (not feed by feed, which
moved positions whenever a later author's key sorted first)."""

from __future__ import annotations

import os
from pathlib import Path

import nacl.signing

from node.ledger.service import LedgerService
from protocol.ledger.entries import Entry
from storage.store.ledger_db import LedgerDB
from tests.protocol.keys import seed
from tests.protocol.ledger_helpers import Feed


def grants(feed: Feed, count: int) -> list[Entry]:
    record_id = feed.record(f"{id(feed)} record")
    for index in range(count):
        feed.sgrant(record_id, os.urandom(114), index)
    return feed.entries


async def test_positions_are_the_same_after_a_restart(tmp_path: Path) -> None:
    first, second = Feed("cursor a"), Feed("cursor b")
    grants(first, 3)
    grants(second, 3)
    # Accept the feed whose key sorts last first, then interleave: acceptance order is
    # not author order.
    later, earlier = sorted([first, second], key=lambda f: f.public, reverse=True)
    order = [*later.entries[:2], *earlier.entries[:3], *later.entries[2:], *earlier.entries[3:]]
    node = nacl.signing.SigningKey(seed("cursor node"))
    path = tmp_path / "ledger.sqlite"
    with LedgerDB(path) as db:
        ledger = LedgerService(identity=node, clock_ms=lambda: 10**13, db=db)
        for entry in order:
            await ledger.ingest([entry.raw])
        before, _ = ledger.stealth.after(0, 100)
    with LedgerDB(path) as db:
        again = LedgerService(identity=node, clock_ms=lambda: 10**13, db=db)
        after, _ = again.stealth.after(0, 100)
    assert len(before) == 6
    assert [(p, e.hash) for p, e in after] == [(p, e.hash) for p, e in before]
    authors = [e.author for _, e in before]
    assert authors != sorted(authors)  # the case that moved positions before
