"""A record's audit trail: its grants, revokes, attestations, claims and reads, in time order.

What `medvault audit RECORD` shows (docs/operations.md). Built from the
record's ledger entries and the folded state, so every node that holds the
same entries shows the same trail. Reads come from the state
(`reads_of`: one row per read, however many entries logged it); every other
row is one entry, rejected and pending ones included (flagged), since a
forged grant or a refused statement is exactly what an auditor looks for.

Row kinds are strings, one function per entry type in `ENTRY_ROWS` and one
per purpose that makes a read its own kind (`READ_KINDS`): a new kind is one
more table line, and a CLI that does not know a kind still shows its row. A
read whose reader is neither the owner nor a key the record was ever granted
to (a member can sign and log such statements: docs/records.md) is flagged
NEVER_GRANTED so fake reads stand out.

Break-glass (docs/emergency.md) shows three ways: the owner's `emergency`
entry is a `break-glass` row (requester and its site, expiry, the reason where
the record key is given, open or signed off by whom and when), its
`emergency_signoff` a `signoff` row (the note likewise), and every read whose
reader's right came from an emergency grant is an `emergency` read flagged
EMERGENCY, whatever purpose it states (protocol.emergency.purpose).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from protocol.emergency import sealing
from protocol.emergency.purpose import came_with, emergency_at
from protocol.emergency.review import Access, accesses
from protocol.ledger.entries import (
    AccessBody,
    EmergencyBody,
    EmergencySignoffBody,
    Entry,
    EntryType,
    GrantBody,
    RevokeBody,
    StealthGrantBody,
)
from protocol.ledger.state import LedgerState
from protocol.records.purpose import Purpose


class RowKind(enum.StrEnum):
    RECORD = "record"
    GRANT = "grant"
    REVOKE = "revoke"
    ATTEST = "attest"
    CLAIM = "claim"
    TOMBSTONE = "tombstone"
    READ = "read"
    EMERGENCY = "emergency"  # a read under break-glass (stated ETREAT, or by an emergency grant)
    BREAK_GLASS = "break-glass"  # the owner's emergency entry: access opened
    SIGNOFF = "signoff"  # the owner's sign-off of an emergency access


NEVER_GRANTED = "reader never granted"
EMERGENCY = "EMERGENCY"
NOT_SIGNED_OFF = "open: not signed off"
NOT_COUNTED = "does not count: not the first sign-off by the owner of that access"
PENDING = "pending"
REJECTED = "REJECTED"


@dataclass(frozen=True)
class TrailRow:
    """One line of the trail.

    `who`: the grantee, revoked key, attester, reader or emergency requester
    (for a stealth grant its one-time key P: `one_time` is set, and only the
    patient's view key links it to her); `by`: the entry's author (a read: one
    of the nodes that logged it, all of them in `loggers`); `node` and `site`:
    the node a read went through (a break-glass row: the requester) and its
    certified site, when known; `at_ms`: the entry's time (minutes), or a
    read's statement time; `entry`: the entry hash (a read: its read id).
    Break-glass rows: `reason` (None where it does not open here), and once
    signed off `signed_off_by`, `signed_off_at`, `signoff` (its entry) and
    `note`. Sign-off rows: `emergency` (the entry signed off) and `note`; an
    emergency read: `emergency`, the access it ran under.
    """

    kind: str
    at_ms: int
    who: bytes
    one_time: bool
    by: bytes
    entry: bytes
    node: bytes | None = None
    site: str | None = None
    purpose: str | None = None
    expires_at: int = 0
    patient: bool = False
    loggers: tuple[bytes, ...] = ()
    flags: tuple[str, ...] = ()
    reason: str | None = None
    note: str | None = None
    emergency: bytes | None = None
    signoff: bytes | None = None
    signed_off_by: bytes | None = None
    signed_off_at: int = 0


@dataclass(frozen=True)
class _Context:
    """What rows beyond their own entry need: the owner, the record's emergency accesses,
    the record key (to open reasons and notes) and certified sites."""

    record_id: bytes
    owner: bytes | None
    accesses: list[Access]
    record_key: bytes | None
    site_of: Callable[[bytes], str | None]

    def opened(self, kind: bytes, subject: bytes, sealed: bytes) -> str | None:
        if self.record_key is None:
            return None
        try:
            return sealing.open_text(self.record_key, kind, self.record_id, subject, sealed)
        except sealing.SealError:
            return None


def _row(
    kind: RowKind, entry: Entry, who: bytes, *, expires_at: int = 0, patient: bool = False
) -> TrailRow:
    return TrailRow(str(kind), entry.timestamp, who, False, entry.author, entry.hash,
                    expires_at=expires_at, patient=patient)  # fmt: skip


def _grant(entry: Entry, ctx: _Context) -> TrailRow:
    body = entry.body
    assert isinstance(body, GrantBody)
    row = _row(RowKind.GRANT, entry, body.grantee, expires_at=body.expires_at)
    glass = (
        ctx.owner is not None
        and entry.author == ctx.owner
        and came_with(ctx.owner, body.record_id, body.grantee, body.expires_at, ctx.accesses)
    )
    return dataclasses.replace(row, flags=(EMERGENCY,)) if glass else row


def _sgrant(entry: Entry, ctx: _Context) -> TrailRow:
    body = entry.body
    assert isinstance(body, StealthGrantBody)
    return _row(RowKind.GRANT, entry, body.one_time, expires_at=body.expires_at,
                patient=body.patient)  # fmt: skip


def _revoke(entry: Entry, ctx: _Context) -> TrailRow:
    body = entry.body
    assert isinstance(body, RevokeBody)
    return _row(RowKind.REVOKE, entry, body.grantee)


def _emergency(entry: Entry, ctx: _Context) -> TrailRow:
    """Break-glass opened: open until the owner signs it off (review.accesses decides)."""
    body = entry.body
    assert isinstance(body, EmergencyBody)
    row = dataclasses.replace(
        _row(RowKind.BREAK_GLASS, entry, body.requester, expires_at=body.expires_at),
        node=body.requester,
        site=ctx.site_of(body.requester),
        reason=ctx.opened(sealing.REASON, body.requester, body.reason),
        flags=(EMERGENCY, NOT_SIGNED_OFF),
    )
    access = next((a for a in ctx.accesses if a.entry.hash == entry.hash), None)
    if access is None or access.signoff is None:
        return row
    signoff = access.signoff.body
    assert isinstance(signoff, EmergencySignoffBody)
    return dataclasses.replace(
        row,
        flags=(EMERGENCY,),
        signoff=access.signoff.hash,
        signed_off_by=access.signoff.author,
        signed_off_at=access.signoff.timestamp,
        note=ctx.opened(sealing.NOTE, entry.hash, signoff.note),
    )


def _signoff(entry: Entry, ctx: _Context) -> TrailRow:
    body = entry.body
    assert isinstance(body, EmergencySignoffBody)
    target = next((a for a in ctx.accesses if a.entry.hash == body.emergency), None)
    counted = (
        target is not None and target.signoff is not None and target.signoff.hash == entry.hash
    )
    who = target.body.requester if target is not None else entry.author
    return dataclasses.replace(
        _row(RowKind.SIGNOFF, entry, who),
        emergency=body.emergency,
        note=ctx.opened(sealing.NOTE, body.emergency, body.note),
        flags=() if counted else (NOT_COUNTED,),
    )


def _by_author(kind: RowKind) -> Callable[[Entry, _Context], TrailRow]:
    return lambda entry, ctx: _row(kind, entry, entry.author)


ENTRY_ROWS: dict[EntryType, Callable[[Entry, _Context], TrailRow]] = {
    EntryType.RECORD: _by_author(RowKind.RECORD),
    EntryType.GRANT: _grant,
    EntryType.SGRANT: _sgrant,
    EntryType.REVOKE: _revoke,
    EntryType.ATTEST: _by_author(RowKind.ATTEST),
    EntryType.CLAIM: _by_author(RowKind.CLAIM),
    EntryType.TOMBSTONE: _by_author(RowKind.TOMBSTONE),
    EntryType.EMERGENCY: _emergency,
    EntryType.SIGNOFF: _signoff,
}
READ_KINDS: dict[Purpose, RowKind] = {Purpose.ETREAT: RowKind.EMERGENCY}
_KIND_FLAGS: dict[str, tuple[str, ...]] = {str(RowKind.EMERGENCY): (EMERGENCY,)}


def trail(
    record_id: bytes,
    entries: Iterable[Entry],
    state: LedgerState,
    site_of: Callable[[bytes], str | None] = lambda key: None,
    record_key: bytes | None = None,
) -> list[TrailRow]:
    """The record's trail, earliest first (ties: the order `entries` came in).
    `record_key`: opens emergency reasons and sign-off notes (else they show as None)."""
    record = state.records.get(record_id)
    mine = [e for e in entries if e.record_id == record_id]
    one_time = {e.body.one_time for e in mine if isinstance(e.body, StealthGrantBody)}
    owner = record.owner if record is not None else None
    found = accesses((e, state.rejected.get(e.hash)) for e in mine)
    ctx = _Context(record_id, owner, found, record_key, site_of)
    rows: list[TrailRow] = []
    for entry in mine:
        make = ENTRY_ROWS.get(entry.type)
        if make is not None:
            rows.append(_flagged(make(entry, ctx), entry, state, one_time))
        elif isinstance(entry.body, AccessBody) and entry.hash in state.rejected:
            rows.append(_refused_read(entry, state.rejected[entry.hash], one_time))
    granted = {g for r, g in state.ever_granted if r == record_id}
    if owner is not None:
        granted.add(owner)
    accepted = [e for e in mine if e.hash not in state.rejected]
    for read in state.reads_of(record_id):
        under = None
        if owner is not None and found:
            under = emergency_at(owner, record_id, read.reader, at_ms=read.issued_at_ms,
                                 accepted=accepted, found=found)  # fmt: skip
        kind = str(RowKind.EMERGENCY if under else READ_KINDS.get(read.purpose, RowKind.READ))
        flags = _KIND_FLAGS.get(kind, ())
        if under is not None and read.purpose is not Purpose.ETREAT:
            flags += (f"stated {read.purpose.label} under an emergency grant",)
        if read.reader not in granted:
            flags += (NEVER_GRANTED,)
        rows.append(TrailRow(kind, read.issued_at_ms, read.reader, read.reader in one_time,
                             read.loggers[0], read.read_id, node=read.node,
                             site=site_of(read.node), purpose=str(read.purpose),
                             loggers=read.loggers, flags=flags,
                             emergency=under.entry.hash if under else None))  # fmt: skip
    order = {id(row): position for position, row in enumerate(rows)}
    return sorted(rows, key=lambda row: (row.at_ms, order[id(row)]))


def _flagged(row: TrailRow, entry: Entry, state: LedgerState, one_time: set[bytes]) -> TrailRow:
    """A row with the state's verdict: rejected and pending entries say so (and nothing
    else: a refused emergency entry is no emergency)."""
    flags = row.flags
    if entry.hash in state.rejected:
        flags = (f"{REJECTED}: {state.rejected[entry.hash]}",)
    elif entry.hash in state.pending:
        flags = (PENDING,)
    return dataclasses.replace(row, one_time=row.who in one_time, flags=flags)


def _refused_read(entry: Entry, reason: str, one_time: set[bytes]) -> TrailRow:
    """An access entry the ledger refused (a statement dated far from its logging)."""
    body = entry.body
    assert isinstance(body, AccessBody)
    statement = body.decoded
    return TrailRow(str(RowKind.READ), entry.timestamp, statement.reader,
                    statement.reader in one_time, entry.author, entry.hash,
                    node=statement.node, purpose=str(statement.purpose),
                    flags=(f"{REJECTED}: {reason}",))  # fmt: skip


def hidden_reads(record_id: bytes, entries: Iterable[Entry], state: LedgerState) -> int:
    """Reads logged in `entries` that the state no longer shows (it keeps the latest
    MAX_ACCESSES_PER_RECORD of a record: a flood pushes the oldest out)."""
    logged = {
        (e.body.decoded.reader, e.body.decoded.read_id)
        for e in entries
        if isinstance(e.body, AccessBody)
        and e.record_id == record_id
        and e.hash not in state.rejected
        and e.hash not in state.pending
    }
    return len(logged - set(state.accesses.get(record_id, {})))
