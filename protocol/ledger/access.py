"""Reads in the ledger: `access` entries folded into one line per read, per record.

An `access` entry carries a reader's signed access statement
(protocol.records.permit); the reader's node logs it when the read starts,
and a holder that served blocks under it logs it too if the ledger does not
show it in time (node/records/witness.py). So one read may arrive as several
entries (several loggers, several statements of one series): they fold into
one `AccessInfo` per (record, reader, read id), whose statement is the
earliest (by issue time, then bytes) and whose `loggers` are every author
that logged it.

Rules (decided per entry from the entry alone, so arrival order cannot matter):
- the statement verifies and names the body's record (checked when the entry
  decodes: protocol.ledger.entries.AccessBody);
- the record exists (else the entry is pending, as grants are);
- the statement was issued no later than MAX_AHEAD_MS after the entry's
  time and no earlier than MAX_BEHIND_MS before it: a read is logged when it
  happens, so a statement cannot be dated into a far future or past;
- at most MAX_ACCESSES_PER_RECORD reads per record are kept in the state: the
  latest by (issue time, reader, read id). The entries themselves stay in the
  ledger; a flood of reads (bounded per author by the feed rates) hides only
  the oldest ones from the state, and never a read newer than the flood's.

`AccessLog` keeps every record's contributions and the state's view of them
incrementally; `fold` and `LiveState` both use it, so they agree by
construction (tests check it against a brute-force reference).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import TYPE_CHECKING

from protocol.ledger.entries import AccessBody, Entry
from protocol.records.purpose import Purpose

if TYPE_CHECKING:
    from protocol.ledger.state import LedgerState

MAX_ACCESSES_PER_RECORD = 4096
MAX_AHEAD_MS = 5 * 60_000  # entry times are on the minute, a reader's clock may run ahead
MAX_BEHIND_MS = 24 * 3_600_000  # a witness logs within minutes; a day is generous

Key = tuple[bytes, bytes]  # (reader, read id)
SortKey = tuple[int, bytes, bytes]  # (issued at, reader, read id)


@dataclass(frozen=True)
class AccessInfo:
    """One read of a record: who (the reader key: for a stealth grant its one-time key
    P), through which node, when, why, and which ledger authors logged it."""

    record_id: bytes
    reader: bytes
    read_id: bytes
    node: bytes
    purpose: Purpose
    issued_at_ms: int
    loggers: tuple[bytes, ...]
    statement: bytes


@dataclass(frozen=True)
class _Part:
    issued_at_ms: int
    statement: bytes
    node: bytes
    purpose: Purpose
    author: bytes


def access_problem(entry: Entry) -> str | None:
    """Why an access entry is refused on its own (None: it is not)."""
    body = entry.body
    assert isinstance(body, AccessBody)
    issued = body.decoded.issued_at_ms
    if issued > entry.timestamp + MAX_AHEAD_MS:
        return "access statement issued after the entry that logs it"
    if issued < entry.timestamp - MAX_BEHIND_MS:
        return "access statement older than a day when logged"
    return None


def _info(record_id: bytes, key: Key, parts: dict[bytes, _Part]) -> AccessInfo:
    first = min(parts.values(), key=lambda p: (p.issued_at_ms, p.statement))
    loggers = tuple(sorted({p.author for p in parts.values()}))
    return AccessInfo(record_id, key[0], key[1], first.node, first.purpose,
                      first.issued_at_ms, loggers, first.statement)  # fmt: skip


class _RecordReads:
    def __init__(self) -> None:
        self.parts: dict[Key, dict[bytes, _Part]] = {}  # key -> entry hash -> part
        self.order: list[SortKey] = []  # every key's sort key, ascending

    def sort_key(self, key: Key) -> SortKey | None:
        parts = self.parts.get(key)
        if not parts:
            return None
        return (min(p.issued_at_ms for p in parts.values()), key[0], key[1])

    def threshold(self) -> SortKey | None:
        """The smallest sort key still kept (None: every key is)."""
        extra = len(self.order) - MAX_ACCESSES_PER_RECORD
        return self.order[extra] if extra > 0 else None

    def near_boundary(self) -> list[SortKey]:
        at = len(self.order) - MAX_ACCESSES_PER_RECORD
        return self.order[max(0, at - 2) : max(0, at + 2)]


def _kept(sort_key: SortKey, threshold: SortKey | None) -> bool:
    return threshold is None or sort_key >= threshold


class AccessLog:
    """Every record's logged reads; keeps `state.accesses` (and its digest) in step."""

    def __init__(self, state: LedgerState) -> None:
        self.state = state
        self._records: dict[bytes, _RecordReads] = {}

    def add(self, entry: Entry) -> None:
        body = entry.body
        assert isinstance(body, AccessBody)
        statement = body.decoded
        part = _Part(statement.issued_at_ms, body.statement, statement.node, statement.purpose,
                     entry.author)  # fmt: skip
        self._change(body.record_id, (statement.reader, statement.read_id), entry.hash, part)

    def forget(self, record_id: bytes) -> None:
        """Drop a record's reads (its entries are applied again after this)."""
        reads = self._records.pop(record_id, None)
        if reads is None:
            return
        for _, reader, read_id in reads.order:
            self.state.drop_access(record_id, (reader, read_id))

    def _change(self, record_id: bytes, key: Key, entry_hash: bytes, part: _Part) -> None:
        reads = self._records.setdefault(record_id, _RecordReads())
        old = reads.sort_key(key)
        before = reads.threshold()
        candidates = set(reads.near_boundary())
        known = set() if old is None else {old}
        reads.parts.setdefault(key, {})[entry_hash] = part
        new = reads.sort_key(key)
        assert new is not None
        if old != new:
            if old is not None:
                del reads.order[bisect.bisect_left(reads.order, old)]
            bisect.insort(reads.order, new)
        after = reads.threshold()
        candidates.update(reads.near_boundary())
        candidates.discard(new)
        for sort_key in candidates:  # keys that may have crossed the boundary
            if sort_key == old or sort_key in known:
                continue
            kept_before, kept_now = _kept(sort_key, before), _kept(sort_key, after)
            if kept_before and not kept_now:
                self.state.drop_access(record_id, (sort_key[1], sort_key[2]))
            elif kept_now and not kept_before:
                self._show(record_id, reads, (sort_key[1], sort_key[2]))
        if _kept(new, after):
            self._show(record_id, reads, key)
        else:
            self.state.drop_access(record_id, key)

    def _show(self, record_id: bytes, reads: _RecordReads, key: Key) -> None:
        self.state.put_access(_info(record_id, key, reads.parts[key]))
