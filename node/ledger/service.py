"""The node's ledger: accepted entries, their state, and their persistence.

Holds the LedgerBook in memory (the state is folded from it on demand and
cached), writes each accepted batch and the state it leads to in one SQLite
transaction (in a worker thread: the commit fsyncs; batches stay in order),
and at start compares the stored derived state with a fresh fold of the
stored entries, rebuilding the derived tables if they disagree. An entry is
announced to listeners (and so acknowledged or pushed) only once it is on disk.
New entries (the node's own, or a person's signed with their key in this
process) are written at the head of the signer's feed. Listeners (gossip)
hear about every newly accepted entry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence

import nacl.signing
import trio

from node.logs import event, get_logger
from node.offload import in_worker
from protocol.ledger.book import LedgerBook
from protocol.ledger.entries import Body, Entry, sign_entry
from protocol.ledger.state import LedgerState, fold
from storage.store.ledger_db import (
    DerivedGrant,
    DerivedRecord,
    DerivedState,
    LedgerDB,
    StoredEntry,
)

log = get_logger("ledger")
Listener = Callable[[list[Entry]], None]


class LedgerError(Exception):
    """A ledger write cannot be made (e.g. the signer's feed is forked)."""


class LedgerService:
    def __init__(
        self,
        *,
        identity: nacl.signing.SigningKey,
        clock_ms: Callable[[], int],
        db: LedgerDB | None = None,
    ) -> None:
        self.identity = identity
        self.clock_ms = clock_ms
        self.db = db
        self.book = LedgerBook()
        self._state: LedgerState | None = None
        self._listeners: list[Listener] = []
        self._writing = trio.Lock()
        self._changed = trio.Event()
        self.rejected_count = 0
        if db is not None:
            self._load(db)

    def _load(self, db: LedgerDB) -> None:
        result = self.book.ingest(db.load())
        state = self.state()
        stored = db.derived_digest()
        if stored != (state.digest(), len(self.book)) or result.rejected:
            db.replace_derived(_derived(state, len(self.book)))
            if stored is not None or len(self.book) or result.rejected:  # not just a new ledger
                event(
                    log,
                    logging.WARNING,
                    "rebuilt derived ledger tables",
                    entries=len(self.book),
                    unreadable=len(result.rejected),
                )
        event(
            log, logging.INFO, "ledger loaded", entries=len(self.book), records=len(state.records)
        )

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def state(self) -> LedgerState:
        if self._state is None:
            self._state = fold(self.book.entries(), self.book.flagged)
        return self._state

    async def ingest(self, raws: Iterable[bytes]) -> list[Entry]:
        """Accept what verifies and chains; returns the entries new to this node."""
        async with self._writing:
            result = self.book.ingest(raws)
            self.rejected_count += len(result.rejected)
            for reason in result.rejected[:3]:
                event(log, logging.DEBUG, "entry rejected", reason=reason)
            if not result.accepted:
                return []
            self._state = None
            if self.db is not None:
                rows = [StoredEntry(e.hash, e.author, e.seq, e.raw) for e in result.accepted]
                derived = _derived(self.state(), len(self.book))
                await in_worker(self.db.append, rows, derived)
        for listener in self._listeners:
            listener(result.accepted)
        self._changed.set()
        self._changed = trio.Event()
        return result.accepted

    async def changed(self) -> None:
        """Return after the next batch of entries is accepted."""
        await self._changed.wait()

    async def append(self, body: Body, signer: nacl.signing.SigningKey | None = None) -> Entry:
        """Write a new entry at the head of the signer's feed (default: this node)."""
        return (await self.append_all([body], signer))[0]

    async def append_all(
        self, bodies: Sequence[Body], signer: nacl.signing.SigningKey | None = None
    ) -> list[Entry]:
        """Write consecutive entries in one batch: stored together or not at all."""
        signer = signer or self.identity
        author = bytes(signer.verify_key)
        head = self.book.head_entry(author)
        if head is None and author in self.book.flagged:
            raise LedgerError("the signer's feed is forked; it cannot be extended here")
        seq, prev = (head.seq + 1, head.hash) if head is not None else (1, b"")
        entries = []
        for body in bodies:
            entry = sign_entry(signer, seq, prev, self.clock_ms(), body)
            entries.append(entry)
            seq, prev = seq + 1, entry.hash
        if len(await self.ingest([e.raw for e in entries])) != len(entries):
            raise LedgerError("the new entries were not accepted")
        return entries


def _derived(state: LedgerState, entry_count: int) -> DerivedState:
    return DerivedState(
        digest=state.digest(),
        entry_count=entry_count,
        records=[
            DerivedRecord(r.record_id, r.owner, r.manifest_hash, r.size, r.k, r.n, r.created_at)
            for r in state.records.values()
        ],
        grants=[DerivedGrant(g.record_id, g.grantee, g.expires_at) for g in state.grants.values()],
        tombstones=list(state.tombstones),
        flagged=list(state.flagged),
    )
