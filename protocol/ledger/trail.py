"""A record's audit trail: its grants, revokes, attestations, claims and reads, in time order.

What `medvault audit RECORD` shows (docs/operations.md). Built from the
record's ledger entries and the folded state, so every node that holds the
same entries shows the same trail. Reads come from the state
(`reads_of`: one row per read, however many entries logged it); every other
row is one entry, rejected and pending ones included (flagged), since a
forged grant or a refused statement is exactly what an auditor looks for.

Row kinds are strings, one function per entry type in `ENTRY_ROWS` and one
per purpose that makes a read its own kind (`READ_KINDS`): a new kind (an
emergency grant) is one more table line, and a CLI that does not know a
kind still shows its row. A read whose reader is neither the owner nor a key
the record was ever granted to (a member can sign and log such statements:
docs/records.md) is flagged NEVER_GRANTED so fake reads stand out.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from protocol.ledger.entries import (
    AccessBody,
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
    EMERGENCY = "emergency"  # an emergency access (for now: a read for ETREAT)


NEVER_GRANTED = "reader never granted"
EMERGENCY = "EMERGENCY"
PENDING = "pending"
REJECTED = "REJECTED"


@dataclass(frozen=True)
class TrailRow:
    """One line of the trail.

    `who`: the grantee, revoked key, attester or reader (for a stealth grant
    its one-time key P: `one_time` is set, and only the patient's view key
    links it to her); `by`: the entry's author (a read: one of the nodes that
    logged it, all of them in `loggers`); `node` and `site`: the node a read
    went through and its certified site, when known; `at_ms`: the entry's
    time (minutes), or a read's statement time; `entry`: the entry hash (a
    read: its read id).
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


def _row(
    kind: RowKind, entry: Entry, who: bytes, *, expires_at: int = 0, patient: bool = False
) -> TrailRow:
    return TrailRow(str(kind), entry.timestamp, who, False, entry.author, entry.hash,
                    expires_at=expires_at, patient=patient)  # fmt: skip


def _grant(entry: Entry) -> TrailRow:
    body = entry.body
    assert isinstance(body, GrantBody)
    return _row(RowKind.GRANT, entry, body.grantee, expires_at=body.expires_at)


def _sgrant(entry: Entry) -> TrailRow:
    body = entry.body
    assert isinstance(body, StealthGrantBody)
    return _row(RowKind.GRANT, entry, body.one_time, expires_at=body.expires_at,
                patient=body.patient)  # fmt: skip


def _revoke(entry: Entry) -> TrailRow:
    body = entry.body
    assert isinstance(body, RevokeBody)
    return _row(RowKind.REVOKE, entry, body.grantee)


def _by_author(kind: RowKind) -> Callable[[Entry], TrailRow]:
    return lambda entry: _row(kind, entry, entry.author)


ENTRY_ROWS: dict[EntryType, Callable[[Entry], TrailRow]] = {
    EntryType.RECORD: _by_author(RowKind.RECORD),
    EntryType.GRANT: _grant,
    EntryType.SGRANT: _sgrant,
    EntryType.REVOKE: _revoke,
    EntryType.ATTEST: _by_author(RowKind.ATTEST),
    EntryType.CLAIM: _by_author(RowKind.CLAIM),
    EntryType.TOMBSTONE: _by_author(RowKind.TOMBSTONE),
}
READ_KINDS: dict[Purpose, RowKind] = {Purpose.ETREAT: RowKind.EMERGENCY}
_KIND_FLAGS: dict[str, tuple[str, ...]] = {str(RowKind.EMERGENCY): (EMERGENCY,)}


def trail(
    record_id: bytes,
    entries: Iterable[Entry],
    state: LedgerState,
    site_of: Callable[[bytes], str | None] = lambda key: None,
) -> list[TrailRow]:
    """The record's trail, earliest first (ties: the order `entries` came in)."""
    record = state.records.get(record_id)
    mine = [e for e in entries if e.record_id == record_id]
    one_time = {e.body.one_time for e in mine if isinstance(e.body, StealthGrantBody)}
    rows: list[TrailRow] = []
    for entry in mine:
        make = ENTRY_ROWS.get(entry.type)
        if make is not None:
            rows.append(_flagged(make(entry), entry, state, one_time))
        elif isinstance(entry.body, AccessBody) and entry.hash in state.rejected:
            rows.append(_refused_read(entry, state.rejected[entry.hash], one_time))
    granted = {g for r, g in state.ever_granted if r == record_id}
    if record is not None:
        granted.add(record.owner)
    for read in state.reads_of(record_id):
        kind = str(READ_KINDS.get(read.purpose, RowKind.READ))
        flags = _KIND_FLAGS.get(kind, ()) + (() if read.reader in granted else (NEVER_GRANTED,))
        rows.append(TrailRow(kind, read.issued_at_ms, read.reader, read.reader in one_time,
                             read.loggers[0], read.read_id, node=read.node,
                             site=site_of(read.node), purpose=str(read.purpose),
                             loggers=read.loggers, flags=flags))  # fmt: skip
    order = {id(row): position for position, row in enumerate(rows)}
    return sorted(rows, key=lambda row: (row.at_ms, order[id(row)]))


def _flagged(row: TrailRow, entry: Entry, state: LedgerState, one_time: set[bytes]) -> TrailRow:
    flags: tuple[str, ...] = ()
    if entry.hash in state.rejected:
        flags = (f"{REJECTED}: {state.rejected[entry.hash]}",)
    elif entry.hash in state.pending:
        flags = (PENDING,)
    return TrailRow(row.kind, row.at_ms, row.who, row.who in one_time, row.by, row.entry,
                    expires_at=row.expires_at, patient=row.patient, flags=flags)  # fmt: skip


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
