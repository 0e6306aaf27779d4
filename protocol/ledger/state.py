"""The ledger state: a pure function of the set of accepted entries.

Rules (evaluated over the whole set, so arrival order cannot matter):
- Entries the book found breaking a feed-local rule (`violations`, see
  protocol.ledger.feeds) are rejected with the book's reason and have no effect.
- record: the author must be the owner and the record id must be derived
  from the owner's key; for one id the owner's earliest entry wins.
- grant, revoke, tombstone: the record must be known (else the entry is
  pending until it is) and the author must be its owner (else rejected).
  For a (record, grantee) pair the latest of the owner's grants and revokes
  by seq decides; at the same seq (a forked feed) the revoke wins. A
  tombstone ends every grant of its record.
- sgrant (stealth grants) and revokes by others than the owner: decided per
  record by protocol.ledger.stealth (a grant's one-time key P is its grantee;
  co-owners, i.e. patients, may grant and revoke); an owner's revoke that
  names a stealth grant's P ends it.
- attest: by the owner or by anyone the owner ever granted the record (a
  stealth grant's P included), and only for the record's own manifest hash.
  A claim (protocol.claims: an attestation that discloses) is an attest here.
- access: a read, logged by anyone (the reader's node, a holder that served
  it); folded per (record, reader, read id) by protocol.ledger.access.
- emergency, emergency_signoff (break-glass, protocol.emergency): the record
  must be known (else pending) and the author its owner (else rejected); they
  change no view here: protocol.emergency.review reads them from the entries.
Expiry is kept, not applied: `grant_for(.., now)` applies it, so the state and
its digest do not depend on when they are computed.

`fold` computes the state of a whole set at once: it is the reference that
protocol.ledger.live (the incremental state a node keeps) is tested against.

The digest is a multiset hash (AdHASH, Bellare-Micciancio): every item of the
state (a record, a grant, an attester of a record, a tombstone, a flagged
author with its evidence) is hashed with keyed BLAKE2b-512 and the hashes are
summed modulo 2^512; the digest is BLAKE2b-256 of that sum. Adding or removing
one item costs one hash, so the digest follows the state incrementally and
never sorts the whole state. It detects disagreement between honest nodes; it
is not a commitment an adversary cannot collide (additive hashes fall to
generalised-birthday attacks with enough chosen items), and nothing relies on
it as one.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack

from protocol.ledger.access import AccessInfo, AccessLog, access_problem
from protocol.ledger.entries import (
    AccessBody,
    AttestBody,
    ClaimBody,
    Entry,
    EntryType,
    GrantBody,
    RecordBody,
    RevokeBody,
    derive_record_id,
)
from protocol.ledger.state_types import GrantInfo as GrantInfo  # noqa: PLC0414 (re-exported)
from protocol.ledger.stealth import stealth_slice

_DIGEST_TAG = b"medvault/ledger-state/v2"
_ITEM_TAG = b"medvault/ledger-state-item/v2"
_MODULUS = 1 << 512


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


def item_hash(kind: str, *fields: Any) -> int:
    """One state item's share of the digest sum."""
    packed = msgpack.packb([kind, *fields], use_bin_type=True)
    return int.from_bytes(hashlib.blake2b(packed, digest_size=64, key=_ITEM_TAG).digest(), "big")


def _record_item(r: RecordInfo) -> int:
    return item_hash("record", r.record_id, r.owner, r.manifest_hash, r.size, r.k, r.n,
                     r.created_at, r.entry)  # fmt: skip


def _grant_item(g: GrantInfo) -> int:
    if g.stealth:
        return item_hash("sgrant", g.record_id, g.grantee, g.sealed_key, g.expires_at, g.entry,
                         g.index, g.patient)  # fmt: skip
    return item_hash("grant", g.record_id, g.grantee, g.sealed_key, g.expires_at, g.entry)


@dataclass
class LedgerState:
    """The views callers read; change them only through the methods (they keep the digest)."""

    records: dict[bytes, RecordInfo] = field(default_factory=dict)
    grants: dict[tuple[bytes, bytes], GrantInfo] = field(default_factory=dict)
    attestations: dict[bytes, tuple[bytes, ...]] = field(default_factory=dict)
    tombstones: dict[bytes, bytes] = field(default_factory=dict)
    flagged: dict[bytes, tuple[bytes, ...]] = field(default_factory=dict)
    pending: set[bytes] = field(default_factory=set)
    rejected: dict[bytes, str] = field(default_factory=dict)
    # record -> (reader, read id) -> the read (protocol.ledger.access)
    accesses: dict[bytes, dict[tuple[bytes, bytes], AccessInfo]] = field(default_factory=dict)
    # (record, grantee) pairs ever granted by the owner, revoked or not (not in the
    # digest: it follows from the grants and revokes that are).
    ever_granted: set[tuple[bytes, bytes]] = field(default_factory=set, compare=False)
    _by_record: dict[bytes, dict[bytes, GrantInfo]] = field(
        default_factory=dict, repr=False, compare=False
    )
    _sum: int = field(default=0, repr=False, compare=False)

    def grant_ended(self, record_id: bytes, grantee: bytes, now_ms: int) -> bool:
        """`grantee` was granted the record once and holds no current grant now."""
        return (record_id, grantee) in self.ever_granted and (
            self.grant_for(record_id, grantee, now_ms) is None
        )

    def grant_for(self, record_id: bytes, grantee: bytes, now_ms: int) -> GrantInfo | None:
        grant = self.grants.get((record_id, grantee))
        return grant if grant is not None and grant.active(now_ms) else None

    def grants_of(self, record_id: bytes) -> list[GrantInfo]:
        return sorted(self._by_record.get(record_id, {}).values(), key=lambda g: g.grantee)

    def digest(self) -> bytes:
        """Equal on every node that holds the same entries (see the module's note)."""
        return hashlib.blake2b(
            self._sum.to_bytes(64, "big"), digest_size=32, key=_DIGEST_TAG
        ).digest()

    def recomputed_sum(self) -> int:
        """The digest sum computed from the views (the running sum must equal it)."""
        items = [_record_item(r) for r in self.records.values()]
        items += [_grant_item(g) for g in self.grants.values()]
        items += [item_hash("attest", r, a) for r, who in self.attestations.items() for a in who]
        items += [item_hash("tombstone", r, e) for r, e in self.tombstones.items()]
        items += [item_hash("flagged", a, list(e)) for a, e in self.flagged.items()]
        items += [_access_item(a) for reads in self.accesses.values() for a in reads.values()]
        return sum(items) % _MODULUS

    def reads_of(self, record_id: bytes) -> list[AccessInfo]:
        """The record's logged reads, earliest first."""
        reads = self.accesses.get(record_id, {}).values()
        return sorted(reads, key=lambda a: (a.issued_at_ms, a.reader, a.read_id))

    def put_access(self, info: AccessInfo) -> None:
        key = (info.reader, info.read_id)
        reads = self.accesses.setdefault(info.record_id, {})
        if reads.get(key) == info:
            return
        self.drop_access(info.record_id, key)
        self.accesses.setdefault(info.record_id, {})[key] = info
        self._add(_access_item(info))

    def drop_access(self, record_id: bytes, key: tuple[bytes, bytes]) -> None:
        reads = self.accesses.get(record_id)
        old = None if reads is None else reads.pop(key, None)
        if old is None:
            return
        self._sub(_access_item(old))
        if not reads:
            del self.accesses[record_id]

    # -- changes (each keeps the running digest sum) ------------------------------

    def _add(self, item: int) -> None:
        self._sum = (self._sum + item) % _MODULUS

    def _sub(self, item: int) -> None:
        self._sum = (self._sum - item) % _MODULUS

    def put_record(self, info: RecordInfo) -> None:
        self.drop_record(info.record_id)
        self.records[info.record_id] = info
        self._add(_record_item(info))

    def drop_record(self, record_id: bytes) -> None:
        old = self.records.pop(record_id, None)
        if old is not None:
            self._sub(_record_item(old))

    def put_grant(self, info: GrantInfo) -> None:
        pair = (info.record_id, info.grantee)
        if self.grants.get(pair) == info:
            return
        self.drop_grant(pair)
        self.grants[pair] = info
        self._by_record.setdefault(info.record_id, {})[info.grantee] = info
        self._add(_grant_item(info))

    def drop_grant(self, pair: tuple[bytes, bytes]) -> None:
        old = self.grants.pop(pair, None)
        if old is None:
            return
        self._sub(_grant_item(old))
        of_record = self._by_record[pair[0]]
        del of_record[pair[1]]
        if not of_record:
            del self._by_record[pair[0]]

    def put_tombstone(self, record_id: bytes, entry: bytes) -> None:
        self.drop_tombstone(record_id)
        self.tombstones[record_id] = entry
        self._add(item_hash("tombstone", record_id, entry))

    def drop_tombstone(self, record_id: bytes) -> None:
        old = self.tombstones.pop(record_id, None)
        if old is not None:
            self._sub(item_hash("tombstone", record_id, old))

    def set_attesters(self, record_id: bytes, attesters: Iterable[bytes]) -> None:
        new = set(attesters)
        old = set(self.attestations.get(record_id, ()))
        for gone in old - new:
            self._sub(item_hash("attest", record_id, gone))
        for added in new - old:
            self._add(item_hash("attest", record_id, added))
        if new:
            self.attestations[record_id] = tuple(sorted(new))
        else:
            self.attestations.pop(record_id, None)

    def set_flagged(self, author: bytes, evidence: Sequence[bytes] | None) -> None:
        old = self.flagged.pop(author, None)
        if old is not None:
            self._sub(item_hash("flagged", author, list(old)))
        if evidence:
            self.flagged[author] = tuple(sorted(set(evidence)))
            self._add(item_hash("flagged", author, list(self.flagged[author])))


def _access_item(a: AccessInfo) -> int:
    return item_hash("access", a.record_id, a.reader, a.read_id, a.node, str(a.purpose),
                     a.issued_at_ms, list(a.loggers), a.statement)  # fmt: skip


def order(entry: Entry) -> tuple[int, bytes]:
    """Which of two competing entries counts first (records, tombstones)."""
    return entry.seq, entry.hash


def change_rank(entry: Entry) -> tuple[int, int, bytes]:
    """Which grant or revoke of a pair decides: the latest seq; at a tie the revoke."""
    return entry.seq, int(entry.type is EntryType.REVOKE), entry.hash


def record_problem(entry: Entry) -> str | None:
    """Why a record entry is invalid on its own (None: it is not)."""
    body = entry.body
    assert isinstance(body, RecordBody)
    if entry.author != body.owner:
        return "record entry not written by its owner"
    if body.record_id != derive_record_id(body.owner, body.nonce):
        return "record id is not derived from the owner's key"
    return None


def record_info(entry: Entry) -> RecordInfo:
    body = entry.body
    assert isinstance(body, RecordBody)
    return RecordInfo(body.record_id, body.owner, body.manifest_hash, body.size, body.k, body.n,
                      entry.timestamp, entry.hash)  # fmt: skip


def fold(
    entries: Iterable[Entry],
    flagged: Mapping[bytes, Sequence[bytes]] | None = None,
    violations: Mapping[bytes, str] | None = None,
) -> LedgerState:
    """The state of a set of accepted entries (see the module rules)."""
    by_type: dict[EntryType, list[Entry]] = defaultdict(list)
    state = LedgerState()
    for author, evidence in (flagged or {}).items():
        state.set_flagged(author, evidence)
    for entry in entries:
        reason = (violations or {}).get(entry.hash)
        if reason is not None:
            state.rejected[entry.hash] = reason
        else:
            by_type[entry.type].append(entry)
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

    for entry in sorted(by_type[EntryType.TOMBSTONE], key=order):
        if owned(entry) and entry.record_id not in state.tombstones:
            state.put_tombstone(entry.record_id, entry.hash)
    changes = [e for e in by_type[EntryType.GRANT] if owned(e)]
    stealthy: dict[bytes, list[Entry]] = defaultdict(list)  # record -> sgrants and revokes
    for entry in (*by_type[EntryType.SGRANT], *by_type[EntryType.REVOKE]):
        record = state.records.get(entry.record_id)
        if record is None:
            pending.append(entry.hash)
            continue
        if entry.type is EntryType.REVOKE and entry.author == record.owner:
            changes.append(entry)
        stealthy[entry.record_id].append(entry)
    for entry in (*by_type[EntryType.EMERGENCY], *by_type[EntryType.SIGNOFF]):
        owned(entry)  # owner-only, no view of its own (protocol.emergency.review)
    _grants(state, changes)
    ever = _stealth(state, stealthy, changes)
    attests = [*by_type[EntryType.ATTEST], *by_type[EntryType.CLAIM]]
    _attestations(state, attests, changes, pending, ever)
    _accesses(state, by_type[EntryType.ACCESS], pending)
    state.pending = set(pending)
    return state


def _accesses(state: LedgerState, entries: list[Entry], pending: list[bytes]) -> None:
    reads = AccessLog(state)
    for entry in entries:
        assert isinstance(entry.body, AccessBody)
        problem = access_problem(entry)
        if problem is not None:
            state.rejected[entry.hash] = problem
        elif entry.record_id not in state.records:
            pending.append(entry.hash)
        else:
            reads.add(entry)


def old_grantees(changes: Iterable[Entry], record_id: bytes) -> set[bytes]:
    """Keys the owner granted `record_id` in the old format (among its grants and revokes)."""
    return {
        e.body.grantee
        for e in changes
        if isinstance(e.body, GrantBody) and e.body.record_id == record_id
    }


def _stealth(
    state: LedgerState, stealthy: Mapping[bytes, list[Entry]], changes: list[Entry]
) -> set[tuple[bytes, bytes]]:
    """Install each record's stealth grants; the (record, P) pairs that ever counted."""
    ever: set[tuple[bytes, bytes]] = set()
    for record_id, entries in stealthy.items():
        decided = stealth_slice(
            state.records[record_id].owner,
            entries,
            old_grantees=old_grantees(changes, record_id),
            tombstoned=record_id in state.tombstones,
        )
        state.rejected.update(decided.rejected)
        for grant in decided.grants.values():
            state.put_grant(grant)
        ever |= {(record_id, p) for p in decided.ever}
    return ever


def _records(state: LedgerState, entries: list[Entry]) -> None:
    for entry in sorted(entries, key=order):
        problem = record_problem(entry)
        if problem is None and entry.record_id in state.records:
            problem = "record already exists"
        if problem is not None:
            state.rejected[entry.hash] = problem
        else:
            state.put_record(record_info(entry))


def _grants(state: LedgerState, changes: list[Entry]) -> None:
    latest: dict[tuple[bytes, bytes], Entry] = {}
    for entry in changes:
        body = entry.body
        assert isinstance(body, GrantBody | RevokeBody)
        pair = (body.record_id, body.grantee)
        if pair not in latest or change_rank(entry) > change_rank(latest[pair]):
            latest[pair] = entry
    for (record_id, grantee), entry in latest.items():
        body = entry.body
        if isinstance(body, GrantBody) and record_id not in state.tombstones:
            state.put_grant(GrantInfo(record_id, grantee, body.sealed_key, body.expires_at,
                                      entry.hash))  # fmt: skip


def _attestations(
    state: LedgerState,
    entries: list[Entry],
    changes: list[Entry],
    pending: list[bytes],
    stealth_ever: set[tuple[bytes, bytes]],
) -> None:
    ever_granted = {
        (e.body.record_id, e.body.grantee) for e in changes if isinstance(e.body, GrantBody)
    } | stealth_ever
    state.ever_granted = ever_granted
    attesters: dict[bytes, set[bytes]] = defaultdict(set)
    for entry in entries:
        body = entry.body
        assert isinstance(body, AttestBody | ClaimBody)
        record = state.records.get(body.record_id)
        if record is None:
            pending.append(entry.hash)
        elif body.manifest_hash != record.manifest_hash:
            state.rejected[entry.hash] = "attests a different manifest"
        elif entry.author != record.owner and (body.record_id, entry.author) not in ever_granted:
            state.rejected[entry.hash] = "attester was never granted the record"
        else:
            attesters[body.record_id].add(entry.author)
    for record_id, who in attesters.items():
        state.set_attesters(record_id, who)
