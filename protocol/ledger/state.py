"""The ledger state: a pure function of the set of accepted entries.

Rules (evaluated over the whole set, so arrival order cannot matter):
- record: the author must be the owner and the record id must be derived
  from the owner's key; for one id the owner's earliest entry wins.
- grant, revoke, tombstone: the record must be known (else the entry is
  pending until it is) and the author must be its owner (else rejected).
  For a (record, grantee) pair the latest of the owner's grants and revokes
  by seq decides; at the same seq (a forked feed) the revoke wins. A
  tombstone ends every grant of its record.
- attest: by the owner or by anyone the owner ever granted the record, and
  only for the record's own manifest hash.
Expiry is kept, not applied: `grant_for(.., now)` applies it, so the state and
its digest do not depend on when they are computed.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import msgpack

from protocol.ledger.entries import (
    AttestBody,
    Entry,
    EntryType,
    GrantBody,
    RecordBody,
    RevokeBody,
    derive_record_id,
)

_DIGEST_TAG = b"medvault/ledger-state/v1"


@dataclass(frozen=True)
class RecordInfo:
    record_id: bytes
    owner: bytes
    manifest_hash: bytes
    size: int
    k: int
    n: int
    created_at: int
    entry: bytes


@dataclass(frozen=True)
class GrantInfo:
    record_id: bytes
    grantee: bytes
    sealed_key: bytes
    expires_at: int
    entry: bytes

    def active(self, now_ms: int) -> bool:
        return self.expires_at == 0 or now_ms < self.expires_at


@dataclass
class LedgerState:
    records: dict[bytes, RecordInfo] = field(default_factory=dict)
    grants: dict[tuple[bytes, bytes], GrantInfo] = field(default_factory=dict)
    attestations: dict[bytes, tuple[bytes, ...]] = field(default_factory=dict)
    tombstones: dict[bytes, bytes] = field(default_factory=dict)
    flagged: dict[bytes, tuple[bytes, ...]] = field(default_factory=dict)
    pending: tuple[bytes, ...] = ()
    rejected: dict[bytes, str] = field(default_factory=dict)

    def grant_for(self, record_id: bytes, grantee: bytes, now_ms: int) -> GrantInfo | None:
        grant = self.grants.get((record_id, grantee))
        return grant if grant is not None and grant.active(now_ms) else None

    def grants_of(self, record_id: bytes) -> list[GrantInfo]:
        return sorted(
            (g for (r, _), g in self.grants.items() if r == record_id), key=lambda g: g.grantee
        )

    def digest(self) -> bytes:
        """Equal on every node that holds the same entries."""
        canonical: list[Any] = [
            sorted(
                [r.record_id, r.owner, r.manifest_hash, r.size, r.k, r.n, r.created_at, r.entry]
                for r in self.records.values()
            ),
            sorted(
                [g.record_id, g.grantee, g.sealed_key, g.expires_at, g.entry]
                for g in self.grants.values()
            ),
            sorted([record, list(attesters)] for record, attesters in self.attestations.items()),
            sorted([record, entry] for record, entry in self.tombstones.items()),
            sorted([author, list(evidence)] for author, evidence in self.flagged.items()),
        ]
        packed = msgpack.packb(canonical, use_bin_type=True)
        return hashlib.blake2b(packed, digest_size=32, key=_DIGEST_TAG).digest()


def _order(entry: Entry) -> tuple[int, bytes]:
    return entry.seq, entry.hash


def fold(entries: Iterable[Entry], flagged: dict[bytes, list[bytes]] | None = None) -> LedgerState:
    """The state of a set of accepted entries (see the module rules)."""
    by_type: dict[EntryType, list[Entry]] = defaultdict(list)
    for entry in entries:
        by_type[entry.type].append(entry)
    state = LedgerState(flagged={a: tuple(sorted(e)) for a, e in (flagged or {}).items()})
    _records(state, by_type[EntryType.RECORD])
    pending: list[bytes] = []

    def owned(entry: Entry) -> bool:
        record = state.records.get(entry.record_id)
        if record is None:
            pending.append(entry.hash)
            return False
        if entry.author != record.owner:
            state.rejected[entry.hash] = f"{entry.type} not by the record's owner"
            return False
        return True

    for entry in sorted(by_type[EntryType.TOMBSTONE], key=_order):
        if owned(entry):
            state.tombstones.setdefault(entry.record_id, entry.hash)
    changes = [e for e in (*by_type[EntryType.GRANT], *by_type[EntryType.REVOKE]) if owned(e)]
    _grants(state, changes)
    _attestations(state, by_type[EntryType.ATTEST], changes, pending)
    state.pending = tuple(sorted(pending))
    return state


def _records(state: LedgerState, entries: list[Entry]) -> None:
    for entry in sorted(entries, key=_order):
        body = entry.body
        assert isinstance(body, RecordBody)
        if entry.author != body.owner:
            state.rejected[entry.hash] = "record entry not written by its owner"
        elif body.record_id != derive_record_id(body.owner, body.nonce):
            state.rejected[entry.hash] = "record id is not derived from the owner's key"
        elif body.record_id in state.records:
            state.rejected[entry.hash] = "record already exists"
        else:
            state.records[body.record_id] = RecordInfo(
                body.record_id,
                body.owner,
                body.manifest_hash,
                body.size,
                body.k,
                body.n,
                entry.timestamp,
                entry.hash,
            )


def _grants(state: LedgerState, changes: list[Entry]) -> None:
    latest: dict[tuple[bytes, bytes], Entry] = {}

    def rank(entry: Entry) -> tuple[int, int, bytes]:
        return entry.seq, int(entry.type is EntryType.REVOKE), entry.hash

    for entry in changes:
        body = entry.body
        assert isinstance(body, GrantBody | RevokeBody)
        pair = (body.record_id, body.grantee)
        if pair not in latest or rank(entry) > rank(latest[pair]):
            latest[pair] = entry
    for (record_id, grantee), entry in latest.items():
        body = entry.body
        if isinstance(body, GrantBody) and record_id not in state.tombstones:
            state.grants[(record_id, grantee)] = GrantInfo(
                record_id, grantee, body.sealed_key, body.expires_at, entry.hash
            )


def _attestations(
    state: LedgerState, entries: list[Entry], changes: list[Entry], pending: list[bytes]
) -> None:
    ever_granted = {
        (e.body.record_id, e.body.grantee) for e in changes if isinstance(e.body, GrantBody)
    }
    attesters: dict[bytes, set[bytes]] = defaultdict(set)
    for entry in entries:
        body = entry.body
        assert isinstance(body, AttestBody)
        record = state.records.get(body.record_id)
        if record is None:
            pending.append(entry.hash)
        elif body.manifest_hash != record.manifest_hash:
            state.rejected[entry.hash] = "attests a different manifest"
        elif entry.author != record.owner and (body.record_id, entry.author) not in ever_granted:
            state.rejected[entry.hash] = "attester was never granted the record"
        else:
            attesters[body.record_id].add(entry.author)
    state.attestations = {r: tuple(sorted(a)) for r, a in attesters.items()}
