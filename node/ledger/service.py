"""The node's ledger: accepted entries, their state, and their persistence.

Holds the LedgerBook in memory and the state incrementally beside it
(protocol.ledger.live: a batch costs what it changes, not the ledger's size),
writes each accepted batch and the derived rows it changed in one SQLite
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
from dataclasses import dataclass

import nacl.signing
import trio

from node.ledger.stealth_log import StealthLog
from node.logs import RateLimitedLog, event, get_logger
from node.offload import in_worker
from protocol.ledger.book import LedgerBook
from protocol.ledger.confirm import FeedConfirmation
from protocol.ledger.entries import Body, Entry, InvalidEntry, decode_entry, sign_entry
from protocol.ledger.intake import IntakeBudget
from protocol.ledger.live import LiveState, StateChanges
from protocol.ledger.messages import FeedHead
from protocol.ledger.state import GrantInfo, LedgerState, RecordInfo
from protocol.ledger.timestamps import entry_time
from protocol.signer import Signer, as_signer
from storage.store.ledger_db import (
    DerivedDelta,
    DerivedGrant,
    DerivedRecord,
    DerivedState,
    LedgerDB,
    StoredEntry,
)

log = get_logger("ledger")
Listener = Callable[[list[Entry]], None]
CONFIRM_WAIT = 30.0  # seconds a write waits for peers to confirm this node's own feed
MAX_FEED_LOCKS = 1024  # feeds with a write lock kept (idle ones are dropped beyond it)


class LedgerError(Exception):
    """A ledger write cannot be made (e.g. the signer's feed is forked)."""


class LedgerService:
    def __init__(
        self,
        *,
        identity: nacl.signing.SigningKey,
        clock_ms: Callable[[], int],
        db: LedgerDB | None = None,
        confirm_own_feed: bool = False,
        intake: IntakeBudget | None = None,
    ) -> None:
        self.identity = identity
        self.public_key = bytes(identity.verify_key)
        self.confirmation = FeedConfirmation(self.public_key)
        self.own_feed_confirmed = trio.Event()
        self.ledger_caught_up = trio.Event()
        if not confirm_own_feed:
            self.trust_local()
        self._resume_fork = False
        self._feed_locks: dict[bytes, trio.Lock] = {}
        self.clock_ms = clock_ms
        self.db = db
        self.book = LedgerBook()
        self.intake = intake or IntakeBudget()  # per author, on this node's clock
        self.live = LiveState()
        self._listeners: list[Listener] = []
        self._writing = trio.Lock()
        self._changed = trio.Event()
        self.rejected_count = 0
        self.refused_count = 0
        self._offences = RateLimitedLog(log, "ledger entries refused", period=60.0)
        self.stealth = StealthLog()
        if db is not None:
            self._load(db)

    def _load(self, db: LedgerDB) -> None:
        """Load the stored entries; drop corrupt rows; rebuild derived tables that disagree.

        A row that does not decode, or whose entry does not hash to the row's
        key, is deleted (gossip brings a good copy: the feed then has a gap the
        next exchange fills). The derived tables are compared by content, not
        only by their stored digest.
        """
        good: list[bytes] = []
        good_hashes: list[bytes] = []
        corrupt: list[bytes] = []
        for stored_hash, raw in db.load_rows():
            try:
                intact = decode_entry(raw).hash == stored_hash
            except InvalidEntry:
                intact = False
            if intact:
                good.append(raw)
                good_hashes.append(stored_hash)
            else:
                corrupt.append(stored_hash)
        if corrupt:
            db.delete_entries(corrupt)
            event(log, logging.WARNING, "corrupt ledger rows dropped", rows=len(corrupt))
        loaded = self.book.ingest(good)  # no clock: what was stored once is not "future"
        self.stealth.add(loaded.accepted)
        self.live.apply(loaded.accepted, flagged=self.book.flagged, violations=self.book.violations)
        if loaded.refused:  # stored before the feed bounds existed: no longer kept
            book = self.book
            db.delete_entries([h for h in good_hashes if h not in book and not book.is_orphan(h)])
        self.live.changes()  # compared as a whole below
        state = self.state()
        derived = _derived(state, len(self.book))
        stored = db.derived_content()
        if _comparable(stored) != _comparable(derived):
            db.replace_derived(derived)
            if stored.entry_count >= 0 or len(self.book):  # not just a new ledger
                event(log, logging.WARNING, "rebuilt derived ledger tables", entries=len(self.book))
        event(
            log, logging.INFO, "ledger loaded", entries=len(self.book), records=len(state.records)
        )

    def trust_local(self) -> None:
        """Write this node's own entries without waiting for peers to confirm its feed."""
        self.confirmation.trust_local()
        self.own_feed_confirmed.set()
        self.ledger_caught_up.set()

    @property
    def caught_up(self) -> bool:
        """Peers showed no feed beyond this node's copy (or the operator vouched for it)."""
        return self.confirmation.caught_up

    def heard_heads(self, peer: bytes, heads: Sequence[FeedHead], peers_known: int) -> None:
        """A peer showed its feed heads (after gossip pulled what it had beyond ours)."""
        confirmation = self.confirmation
        if confirmation.confirmed and confirmation.caught_up:
            return
        ours = self.book.heads()
        confirmation.heard(peer, heads, ours, peers_known)
        if confirmation.caught_up:
            self.ledger_caught_up.set()
        if confirmation.confirmed and not self.own_feed_confirmed.is_set():
            self.own_feed_confirmed.set()
            own = ours.get(self.public_key)
            event(
                log,
                logging.INFO,
                "own ledger feed confirmed",
                seq=0 if own is None else own.seq,
                peers=confirmation.confirmations,
            )

    def resume_forked_feed(self) -> bytes:
        """Let the next write continue this node's forked feed from one of its tips.

        The way back for a node whose own feed forked (two entries at its top
        seq, e.g. written after restoring an older ledger with the peers'
        check overridden): the tip with the smallest hash is continued, so
        the top seq is single again. The fork stays on record as evidence.
        Returns the hash of the tip that will be continued.
        """
        tips = self.book.tips(self.public_key)
        if len(tips) < 2:
            raise LedgerError("this node's own feed is not forked at its head")
        self._resume_fork = True
        return min(tip.hash for tip in tips)

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def state(self) -> LedgerState:
        """The current state (kept up to date in place; do not change it)."""
        return self.live.state

    async def ingest(self, raws: Iterable[bytes], *, budgeted: bool = True) -> list[Entry]:
        """Accept what verifies and chains; returns the entries new to this node.
        `budgeted`: entries from others count against their author's intake budget
        (this node's own writes are checked by the feed limits instead)."""
        async with self._writing:
            intake = self.intake if budgeted else None
            result = self.book.ingest(raws, now_ms=self.clock_ms(), intake=intake)
            self.rejected_count += len(result.rejected)
            for reason in result.rejected[:3]:
                event(log, logging.DEBUG, "entry rejected", reason=reason)
            self._note_offences(result.refused, result.frozen)
            if not result.accepted and not result.dropped:
                return []
            self.stealth.add(result.accepted)
            violations = self.book.violations
            self.live.apply(
                result.accepted,
                removed=result.dropped,
                flagged=result.flags,
                violations={
                    e.hash: violations[e.hash] for e in result.accepted if e.hash in violations
                },
            )
            delta = _delta(self.state(), self.live.changes(), len(self.book))
            if self.db is not None:
                rows = [StoredEntry(e.hash, e.author, e.seq, e.raw) for e in result.accepted]
                dropped = [e.hash for e in result.dropped]
                await in_worker(self.db.append, rows, delta, dropped)
            if not result.accepted:
                return []
        for listener in self._listeners:
            listener(result.accepted)
        self._changed.set()
        self._changed = trio.Event()
        return result.accepted

    def _note_offences(
        self, refused: Sequence[tuple[bytes, str]], frozen: Sequence[tuple[bytes, str]]
    ) -> None:
        """Each author's refused entries and frozen feed, logged once a minute per reason."""
        self.refused_count += len(refused)
        counts: dict[tuple[bytes, str], int] = {}
        for author, reason in refused:
            counts[(author, reason)] = counts.get((author, reason), 0) + 1
        for (author, reason), count in counts.items():
            self._offences.note(reason, author.hex()[:16], entries=count)
        for author, reason in frozen:
            self._offences.note(f"feed frozen: {reason}", author.hex()[:16])

    async def changed(self) -> None:
        """Return after the next batch of entries is accepted."""
        await self._changed.wait()

    async def _confirmed(self) -> None:
        """Wait (a while) until peers confirmed this node's feed; LedgerError if they do not."""
        if await _wait(self.own_feed_confirmed, CONFIRM_WAIT):
            return
        raise LedgerError(
            "this node's own ledger feed is not yet confirmed by its peers (it may have been"
            " restored from an older backup, and writing now could fork it); writes wait"
            " until peers are reachable, or run with --trust-local-ledger if this node's"
            " ledger is known to be current"
        )

    async def append(
        self, body: Body, signer: Signer | nacl.signing.SigningKey | None = None
    ) -> Entry:
        """Write a new entry at the head of the signer's feed (default: this node)."""
        return (await self.append_all([body], signer))[0]

    async def append_all(
        self, bodies: Sequence[Body], signer: Signer | nacl.signing.SigningKey | None = None
    ) -> list[Entry]:
        """Write consecutive entries in one batch: stored together or not at all.

        Writes to one feed are serialised from reading its head to storing the
        entries: two at once would both follow the same head, a fork.
        """
        return await self.append_prepared(Prepared(as_signer(signer or self.identity), bodies))

    def prepare_all(
        self, bodies: Sequence[Body], signer: Signer | nacl.signing.SigningKey | None = None
    ) -> Prepared:
        """Sign `bodies` after the feed's current head without writing them:
        `append_prepared` later stores them as they are if nothing was written to the
        feed meanwhile and the clock is on the same grain, and signs them again
        otherwise. Nothing is written or kept here; an unused `Prepared` is simply
        dropped (a put that fails records nothing). Inline, not in a worker thread: a
        few signatures, and a thread holding the GIL would delay the event loop more."""
        key = as_signer(signer or self.identity)
        follows = self._follows(key.public)
        return Prepared(key, bodies, follows, _signed(key, follows, bodies, self.clock_ms()))

    async def append_prepared(self, prepared: Prepared) -> list[Entry]:
        """Write prepared entries (see `prepare_all`, `append_all`): the rules are
        checked and the batch committed as `append_all` does, in one transaction."""
        signer = prepared.signer
        author = signer.public
        if author == self.public_key:
            await self._confirmed()
        async with self._feed_lock(author):
            resuming = author == self.public_key and self._resume_fork
            follows = self._follows(author)
            now_ms = self.clock_ms()
            entries = prepared.entries
            stamps = _stamps(now_ms, follows[2], len(prepared.bodies))
            if follows != prepared.follows or [e.timestamp for e in entries] != stamps:
                entries = _signed(signer, follows, prepared.bodies, now_ms)
            await self.check_rules(entries)
            if len(await self.ingest([e.raw for e in entries], budgeted=False)) != len(entries):
                raise LedgerError("the new entries were not accepted")
            if resuming:
                self._resume_fork = False  # only once a write followed the chosen tip
            return list(entries)

    def _follows(self, author: bytes) -> tuple[int, bytes, int]:
        """(seq, previous hash, previous timestamp) a new entry of `author`'s feed
        follows; LedgerError if the feed is forked and cannot be extended."""
        resuming = author == self.public_key and self._resume_fork
        head = self.book.head_entry(author)
        if head is None and resuming:
            head = min(self.book.tips(author), key=lambda tip: tip.hash)
        if head is None and author in self.book.flagged:
            hint = (
                " (`medvault ledger --resume-feed` continues it from one of its tips)"
                if author == self.public_key
                else ""
            )
            raise LedgerError(f"the signer's feed is forked; it cannot be extended here{hint}")
        if head is None:
            return 1, b"", 0
        return head.seq + 1, head.hash, head.timestamp  # timestamps never go back in a feed

    def _feed_lock(self, author: bytes) -> trio.Lock:
        lock = self._feed_locks.get(author)
        if lock is None:
            if len(self._feed_locks) > MAX_FEED_LOCKS:  # people's keys come and go
                self._feed_locks = {a: k for a, k in self._feed_locks.items() if k.locked()}
            lock = self._feed_locks[author] = trio.Lock()
        return lock

    async def check_rules(self, entries: Sequence[Entry]) -> None:
        """LedgerError if the state rules would reject any of `entries`.

        Checked before an entry is written: an entry that breaks a rule has no
        effect, but once written it is signed history every node keeps. Checked
        against the current state, not by folding the ledger again.
        """
        problems = self.live.problems(entries)
        problems.update(self.book.check_new(list(entries), now_ms=self.clock_ms()))
        for entry in entries:
            reason = problems.get(entry.hash)
            if reason is not None:
                raise LedgerError(f"the ledger would reject this {entry.type} entry: {reason}")


@dataclass(frozen=True)
class Prepared:
    """Bodies to append, with entries signed ahead (LedgerService.prepare_all)."""

    signer: Signer
    bodies: Sequence[Body]
    follows: tuple[int, bytes, int] | None = None  # the feed position they were signed after
    entries: Sequence[Entry] = ()


def _stamps(now_ms: int, floor: int, count: int) -> list[int]:
    """The timestamps `count` new entries written at `now_ms` after one stamped `floor`
    get (on the minute: docs/privacy.md)."""
    stamps = []
    for _ in range(count):
        floor = entry_time(now_ms, floor)
        stamps.append(floor)
    return stamps


def _signed(
    signer: Signer, follows: tuple[int, bytes, int], bodies: Sequence[Body], now_ms: int
) -> list[Entry]:
    """`bodies` signed as consecutive entries after the feed position `follows`."""
    seq, prev, floor = follows
    entries = []
    for body, stamp in zip(bodies, _stamps(now_ms, floor, len(bodies)), strict=True):
        entry = sign_entry(signer, seq, prev, stamp, body)
        entries.append(entry)
        seq, prev = seq + 1, entry.hash
    return entries


async def _wait(event_: trio.Event, seconds: float) -> bool:
    with trio.move_on_after(seconds):
        await event_.wait()
    return event_.is_set()


def _comparable(derived: DerivedState) -> tuple[object, ...]:
    return (
        derived.digest,
        derived.entry_count,
        sorted(derived.records, key=lambda r: r.record_id),
        sorted(derived.grants, key=lambda g: (g.record_id, g.grantee)),
        sorted(derived.tombstones),
        sorted(derived.flagged),
    )


def _record_row(r: RecordInfo) -> DerivedRecord:
    return DerivedRecord(r.record_id, r.owner, r.manifest_hash, r.size, r.k, r.n, r.created_at)


def _grant_row(g: GrantInfo) -> DerivedGrant:
    return DerivedGrant(g.record_id, g.grantee, g.expires_at)


def _derived(state: LedgerState, entry_count: int) -> DerivedState:
    return DerivedState(
        digest=state.digest(),
        entry_count=entry_count,
        records=[_record_row(r) for r in state.records.values()],
        grants=[_grant_row(g) for g in state.grants.values()],
        tombstones=list(state.tombstones),
        flagged=list(state.flagged),
    )


def _delta(state: LedgerState, changes: StateChanges, entry_count: int) -> DerivedDelta:
    """The rows `changes` names, as they now are (present: upsert; absent: delete)."""
    records = [state.records.get(r) for r in changes.records]
    grants = [state.grants.get(p) for p in changes.grants]
    return DerivedDelta(
        digest=state.digest(),
        entry_count=entry_count,
        records=[_record_row(r) for r in records if r is not None],
        records_gone=[r for r in changes.records if r not in state.records],
        grants=[_grant_row(g) for g in grants if g is not None],
        grants_gone=[p for p in changes.grants if p not in state.grants],
        tombstones=[t for t in changes.tombstones if t in state.tombstones],
        tombstones_gone=[t for t in changes.tombstones if t not in state.tombstones],
        flagged=[a for a in changes.flagged if a in state.flagged],
        flagged_gone=[a for a in changes.flagged if a not in state.flagged],
    )
