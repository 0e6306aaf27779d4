"""The claim events this node's own key may see, in the order it first saw them: a stream's
cursor (`GET /v1/events`).

An insurer running a node holds plain grants to its node key; every claim by
the patient of such a record is an event for it (protocol.claims.collect).
An event becomes visible when its last part arrives: the claim, the owner's
patient grant, or this node's grant of the record, in any order. So the log
keeps (record id, claim entry hash) in the order this node found each event,
and a stream's cursor is a position in it. Only those 64 bytes per event are
kept: a stream materialises what it sends from the ledger when it sends it
(with the owner's certificate as known then), and a grant revoked since is
skipped then.

Positions hold while the process runs; a restart finds the same events in
another order, so a cursor names the process's `epoch` and a stream given
another epoch's cursor starts again from the first event (at-least-once: a
client drops repeats by the claim entry). Entries a frozen feed drops leave
their events in the log; a stream skips what no longer verifies.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import trio

from node.assembly import Node
from node.net.membership import encoded_certificate
from node.offload import in_worker
from protocol.claims.collect import Collected, collect_records
from protocol.claims.event import Verified
from protocol.ledger.entries import Entry, EntryType
from storage.errors import StorageError

MAX_TOUCHED = 4096  # records noted as changed between looks; beyond, the next look is whole


@dataclass(frozen=True)
class Sent:
    position: int
    verified: Verified
    uncertified: str | None  # why the event carries no certificate (None: it carries one)


class ClaimLog:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.epoch = secrets.token_hex(4)  # cursors of another process start over
        self.claims: list[tuple[bytes, bytes]] = []  # position p is claims[p - 1]
        self._known: set[bytes] = set()
        self._touched: set[bytes] | None = None  # None: look at every granted record
        self._looking = trio.Lock()
        self._grown = trio.Event()
        node.ledger.subscribe(self._note)

    def _note(self, accepted: Sequence[Entry]) -> None:
        """Called by the ledger (in its task) with every accepted batch."""
        if self._touched is not None:
            self._touched.update(e.record_id for e in accepted)
            if len(self._touched) > MAX_TOUCHED:
                self._touched = None
        if any(e.type in _MAY_SHOW for e in accepted):
            self._grown.set()
            self._grown = trio.Event()

    def changed(self) -> trio.Event:
        """The event set by the next ledger batch that may show a new claim event: take
        it before `after`, then wait on it (nothing between is missed)."""
        return self._grown

    def _keys(self, record_ids: set[bytes] | None) -> dict[bytes, bytes]:
        """Record id -> record key of the records this node holds a current grant of."""
        state, records, me = self.node.ledger.state(), self.node.records, self.node.public_key
        now = self.node.clock_ms()
        if record_ids is None:
            record_ids = {rid for rid, grantee in state.grants if grantee == me}
        keys = {}
        for record_id in record_ids:
            grant = state.grant_for(record_id, me, now)
            if grant is None or record_id in state.tombstones:
                continue
            try:
                keys[record_id] = records.own_key(grant)
            except StorageError:  # a junk grant (anyone may grant this node anything)
                continue
        return keys

    async def _collect(self, keys: dict[bytes, bytes]) -> Collected:
        if not keys:
            return Collected()
        ledger = self.node.ledger
        rejected = ledger.state().rejected
        rows = [(e, rejected.get(e.hash)) for e in ledger.book.entries() if e.record_id in keys]
        membership = self.node.parts.membership
        certificates = {
            e.author: encoded_certificate(membership, e.author)
            for e, _ in rows
            if e.type is EntryType.RECORD
        }
        return await in_worker(collect_records, rows, keys, certificates.get)

    async def _look(self) -> None:
        """Append the events found since the last look (only records that changed)."""
        async with self._looking:
            touched, self._touched = self._touched, set()
            found = await self._collect(self._keys(touched))
            for verified in found.events:
                if verified.claim_entry not in self._known:
                    self._known.add(verified.claim_entry)
                    self.claims.append((verified.record_id, verified.claim_entry))

    async def after(self, cursor: int, limit: int) -> tuple[list[Sent], int]:
        """Up to `limit` events after position `cursor` that this node may still see, and
        the position to go on from (past skipped ones too)."""
        await self._look()
        chosen = self.claims[cursor : cursor + limit]
        found = await self._collect(self._keys({rid for rid, _ in chosen}))
        by_claim = {v.claim_entry: v for v in found.events}
        sent = [
            Sent(cursor + offset + 1, by_claim[claim], found.uncertified.get(claim))
            for offset, (_, claim) in enumerate(chosen)
            if claim in by_claim
        ]
        return sent, cursor + len(chosen)


_MAY_SHOW = frozenset({EntryType.RECORD, EntryType.SGRANT, EntryType.GRANT, EntryType.CLAIM})
