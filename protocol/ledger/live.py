"""The ledger state kept incrementally: applying a batch costs what it changes.

`LiveState.apply` takes newly accepted entries (and entries a feed freeze
dropped, and authors whose evidence changed) and updates the state in place;
it always equals `protocol.ledger.state.fold` of the entries applied so far
(a Hypothesis property checks this over random sets, orders and batchings,
digest included). Each rule of the fold has an incremental form:

- record: the first valid entry of an id installs it and releases the
  entries that were pending on it; a later one is rejected. An earlier one
  (only possible on a forked feed) replaces the winner: that record's slice
  of the state is recomputed from the entries that name it.
- grant, revoke: the pair's deciding entry is the maximum by rank, so a new
  entry replaces it only if it ranks higher.
- tombstone: the minimum by (seq, hash) counts; the first one ends the
  record's grants (found through a per-record index).
- attest: an attest rejected because its author was never granted the
  record waits under (record, author); the first grant to that pair turns it
  into an attestation (and a stealth grant that stops counting turns it back).
- sgrant, and revokes by others than the owner: the record's stealth slice
  (protocol.ledger.stealth) is decided again from the record's sgrant and
  revoke entries, and the difference applied: the same function as the fold,
  at a cost of the record's own stealth entries, not the ledger's.
- access: folded by protocol.ledger.access's AccessLog (the fold uses the
  same class), at a cost of one record's reads near its bound.
Removing entries (a freeze dropped them) recomputes the slices of the records
they name. `changes()` hands over which derived rows changed since the last
call, so the database writes a delta, and `problems()` checks entries about to
be written against the current state without folding anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from protocol.ledger.access import AccessLog, access_problem
from protocol.ledger.entries import (
    AttestBody,
    ClaimBody,
    Entry,
    EntryType,
    GrantBody,
    RevokeBody,
    StealthGrantBody,
)
from protocol.ledger.state import (
    GrantInfo,
    LedgerState,
    RecordInfo,
    change_rank,
    order,
    record_info,
    record_problem,
)
from protocol.ledger.stealth import StealthSlice, stealth_slice

Pair = tuple[bytes, bytes]
ATTESTS = frozenset({EntryType.ATTEST, EntryType.CLAIM})  # a claim is an attest that discloses
OWNER_NOTES = frozenset({EntryType.EMERGENCY, EntryType.SIGNOFF})  # owner-only, no view here


@dataclass
class StateChanges:
    """Keys whose derived rows changed; each row's current value is in the state."""

    records: set[bytes] = field(default_factory=set)
    grants: set[Pair] = field(default_factory=set)
    tombstones: set[bytes] = field(default_factory=set)
    flagged: set[bytes] = field(default_factory=set)

    @property
    def size(self) -> int:
        return len(self.records) + len(self.grants) + len(self.tombstones) + len(self.flagged)


class LiveState:
    def __init__(self) -> None:
        self.state = LedgerState()
        self.touched = 0  # entries examined by apply (a work counter tests assert on)
        self._naming: dict[bytes, list[Entry]] = {}  # record id -> every entry naming it
        self._violations: dict[bytes, str] = {}
        self._winner: dict[bytes, Entry] = {}
        self._latest: dict[Pair, Entry] = {}
        self._grantees: dict[bytes, set[bytes]] = {}  # record id -> grantees with a change
        self._tomb: dict[bytes, Entry] = {}
        self._ever: set[Pair] = set()
        self.state.ever_granted = self._ever  # the same set: kept as _ever changes
        self._old_grantees: dict[bytes, set[bytes]] = {}  # record -> old-format grantees
        self._stealthy: dict[bytes, list[Entry]] = {}  # record -> its sgrants and revokes
        self._stealth: dict[bytes, StealthSlice] = {}  # record -> its decided stealth slice
        self._attesters: dict[bytes, set[bytes]] = {}
        self._waiting: dict[bytes, dict[bytes, list[Entry]]] = {}  # record -> author -> attests
        self._pending: dict[bytes, list[Entry]] = {}
        self._reads = AccessLog(self.state)
        self._changes = StateChanges()

    # -- applying ---------------------------------------------------------------------

    def apply(
        self,
        added: Iterable[Entry],
        *,
        removed: Iterable[Entry] = (),
        flagged: Mapping[bytes, Sequence[bytes] | None] | None = None,
        violations: Mapping[bytes, str] | None = None,
    ) -> None:
        """Newly accepted entries in, dropped entries out; `flagged`: authors' new evidence."""
        for author, evidence in (flagged or {}).items():
            self.state.set_flagged(author, evidence)
            self._changes.flagged.add(author)
        stale: set[bytes] = set()
        for entry in removed:
            naming = self._naming.get(entry.record_id, [])
            if entry in naming:
                naming.remove(entry)
                self._violations.pop(entry.hash, None)
                self.state.rejected.pop(entry.hash, None)
                self.state.pending.discard(entry.hash)
                stale.add(entry.record_id)
        for record_id in stale:
            self._recompute(record_id)
        for entry in added:
            self._naming.setdefault(entry.record_id, []).append(entry)
            reason = (violations or {}).get(entry.hash)
            if reason is not None:
                self._violations[entry.hash] = reason
                self.state.rejected[entry.hash] = reason
            else:
                self._apply_one(entry)

    def _apply_one(self, entry: Entry) -> None:
        self.touched += 1
        if entry.type is EntryType.RECORD:
            self._record(entry)
            return
        problem = access_problem(entry) if entry.type is EntryType.ACCESS else None
        record = self.state.records.get(entry.record_id)
        if problem is not None:
            self.state.rejected[entry.hash] = problem
        elif record is None:
            self._pending.setdefault(entry.record_id, []).append(entry)
            self.state.pending.add(entry.hash)
        elif entry.type is EntryType.ACCESS:
            self._reads.add(entry)
        elif entry.type in ATTESTS:
            self._attest(entry, record)
        elif entry.type is EntryType.SGRANT or (
            entry.type is EntryType.REVOKE and entry.author != record.owner
        ):
            self._stealthy.setdefault(entry.record_id, []).append(entry)
            self._sync_stealth(record)
        elif entry.author != record.owner:
            self.state.rejected[entry.hash] = f"{entry.type} not by the record's owner"
        elif entry.type is EntryType.TOMBSTONE:
            self._tombstone(entry)
            self._sync_stealth(record)
        elif entry.type in OWNER_NOTES:
            pass  # accepted: protocol.emergency.review reads them from the entries
        else:
            if entry.type is EntryType.REVOKE:
                self._stealthy.setdefault(entry.record_id, []).append(entry)
            self._change(entry)
            self._sync_stealth(record)

    def _record(self, entry: Entry) -> None:
        problem = record_problem(entry)
        current = self._winner.get(entry.record_id)
        if problem is None and current is not None:
            if order(entry) < order(current):
                self._recompute(entry.record_id)  # an earlier entry of a forked feed wins
                return
            problem = "record already exists"
        if problem is not None:
            self.state.rejected[entry.hash] = problem
            return
        self._winner[entry.record_id] = entry
        self.state.put_record(record_info(entry))
        self._changes.records.add(entry.record_id)
        for waiting in self._pending.pop(entry.record_id, []):
            self.state.pending.discard(waiting.hash)
            self._apply_one(waiting)

    def _change(self, entry: Entry) -> None:
        body = entry.body
        assert isinstance(body, GrantBody | RevokeBody)
        pair = (body.record_id, body.grantee)
        if isinstance(body, GrantBody):
            self._old_grantees.setdefault(body.record_id, set()).add(body.grantee)
            if pair not in self._ever:
                self._ever.add(pair)
                self._release_attests(body.record_id, body.grantee)
        current = self._latest.get(pair)
        if current is None or change_rank(entry) > change_rank(current):
            self._latest[pair] = entry
            self._grantees.setdefault(body.record_id, set()).add(body.grantee)
            self._sync_grant(pair)

    def _sync_grant(self, pair: Pair) -> None:
        entry = self._latest.get(pair)
        body = None if entry is None else entry.body
        if isinstance(body, GrantBody) and pair[0] not in self._tomb:
            assert entry is not None
            info = GrantInfo(pair[0], pair[1], body.sealed_key, body.expires_at, entry.hash)
            self.state.put_grant(info)
        else:
            self.state.drop_grant(pair)
        self._changes.grants.add(pair)

    def _sync_stealth(self, record: RecordInfo) -> None:
        """Decide the record's stealth slice again and apply what changed."""
        record_id = record.record_id
        entries = self._stealthy.get(record_id)
        old = self._stealth.get(record_id)
        if not entries and old is None:
            return
        old = old or StealthSlice()
        old_grantees = self._old_grantees.get(record_id, set())
        new = stealth_slice(
            record.owner,
            entries or (),
            old_grantees=old_grantees,
            tombstoned=record_id in self._tomb,
        )
        self._stealth[record_id] = new
        for gone in old.rejected.keys() - new.rejected.keys():
            self.state.rejected.pop(gone, None)
        self.state.rejected.update(new.rejected)
        state = self.state
        for p in old.grants.keys() - new.grants.keys():
            current = state.grants.get((record_id, p))
            if current is not None and current.stealth:
                state.drop_grant((record_id, p))
                self._changes.grants.add((record_id, p))
        for p, grant in new.grants.items():
            if state.grants.get((record_id, p)) != grant:
                state.put_grant(grant)
                self._changes.grants.add((record_id, p))
        for p in old.ever - new.ever:
            if p not in old_grantees:
                self._ever.discard((record_id, p))
                self._unattest(record, p)
        for p in new.ever - old.ever:
            if (record_id, p) not in self._ever:
                self._ever.add((record_id, p))
                self._release_attests(record_id, p)

    def _drop_stealth(self, record_id: bytes) -> None:
        """Forget a record's stealth slice (its entries are applied again after this)."""
        old = self._stealth.pop(record_id, None)
        self._stealthy.pop(record_id, None)
        if old is None:
            return
        for p in old.grants:
            current = self.state.grants.get((record_id, p))
            if current is not None and current.stealth:
                self.state.drop_grant((record_id, p))
                self._changes.grants.add((record_id, p))
        for p in old.ever:
            self._ever.discard((record_id, p))
        for entry_hash in old.rejected:
            self.state.rejected.pop(entry_hash, None)

    def _unattest(self, record: RecordInfo, author: bytes) -> None:
        """A stealth grant stopped counting: its P's attestations wait again."""
        attesters = self._attesters.get(record.record_id, set())
        if author == record.owner or author not in attesters:
            return
        attesters.discard(author)
        self.state.set_attesters(record.record_id, attesters)
        for entry in self._naming.get(record.record_id, []):
            body = entry.body
            if (
                entry.author == author
                and isinstance(body, AttestBody | ClaimBody)
                and entry.hash not in self._violations
                and body.manifest_hash == record.manifest_hash
            ):
                self.state.rejected[entry.hash] = "attester was never granted the record"
                waiting = self._waiting.setdefault(record.record_id, {})
                waiting.setdefault(author, []).append(entry)

    def _tombstone(self, entry: Entry) -> None:
        record_id = entry.record_id
        current = self._tomb.get(record_id)
        if current is not None and order(current) <= order(entry):
            return
        self._tomb[record_id] = entry
        self.state.put_tombstone(record_id, entry.hash)
        self._changes.tombstones.add(record_id)
        if current is None:
            for grantee in self._grantees.get(record_id, ()):
                self._sync_grant((record_id, grantee))

    def _attest(self, entry: Entry, record: RecordInfo) -> None:
        body = entry.body
        assert isinstance(body, AttestBody | ClaimBody)
        if body.manifest_hash != record.manifest_hash:
            self.state.rejected[entry.hash] = "attests a different manifest"
        elif entry.author != record.owner and (record.record_id, entry.author) not in self._ever:
            self.state.rejected[entry.hash] = "attester was never granted the record"
            waiting = self._waiting.setdefault(record.record_id, {})
            waiting.setdefault(entry.author, []).append(entry)
        else:
            attesters = self._attesters.setdefault(record.record_id, set())
            if entry.author not in attesters:
                attesters.add(entry.author)
                self.state.set_attesters(record.record_id, attesters)

    def _release_attests(self, record_id: bytes, grantee: bytes) -> None:
        waiting = self._waiting.get(record_id, {}).pop(grantee, [])
        for entry in waiting:
            self.state.rejected.pop(entry.hash, None)
            self._apply_one(entry)

    def _recompute(self, record_id: bytes) -> None:
        """Rebuild one record's slice of the state from the entries that name it."""
        naming = self._naming.get(record_id, [])
        for entry in naming:
            if entry.hash not in self._violations:
                self.state.rejected.pop(entry.hash, None)
            self.state.pending.discard(entry.hash)
        self._pending.pop(record_id, None)
        self._waiting.pop(record_id, None)
        self._winner.pop(record_id, None)
        self._drop_stealth(record_id)
        self._old_grantees.pop(record_id, None)
        self.state.drop_record(record_id)
        self._changes.records.add(record_id)
        for grantee in self._grantees.pop(record_id, set()):
            pair = (record_id, grantee)
            self._latest.pop(pair, None)
            self._ever.discard(pair)
            self._sync_grant(pair)
        if self._tomb.pop(record_id, None) is not None:
            self.state.drop_tombstone(record_id)
            self._changes.tombstones.add(record_id)
        self._attesters.pop(record_id, None)
        self.state.set_attesters(record_id, ())
        self._reads.forget(record_id)
        live = [e for e in naming if e.hash not in self._violations]
        for entry in sorted((e for e in live if e.type is EntryType.RECORD), key=order):
            self._apply_one(entry)
        for entry in live:
            if entry.type is not EntryType.RECORD:
                self._apply_one(entry)
        if not naming:
            self._naming.pop(record_id, None)

    # -- reading ----------------------------------------------------------------------

    def changes(self) -> StateChanges:
        """The keys changed since the last call (for a delta write), and start afresh."""
        changes, self._changes = self._changes, StateChanges()
        return changes

    def problems(self, entries: Sequence[Entry]) -> dict[bytes, str]:
        """Why the state would reject each of `entries` (consecutive, new), without applying.

        Entries pending on an unknown record are no problem (they wait); an
        entry may rely on those before it in `entries` (a record, then its grants).
        """
        state = self.state
        new_records: dict[bytes, RecordInfo] = {}
        granted: set[Pair] = set()
        stealthy: dict[bytes, list[Entry]] = {}  # record -> its new sgrants and revokes
        old_new: dict[bytes, set[bytes]] = {}  # record -> the batch's old-format grantees
        found: dict[bytes, str] = {}
        for entry in entries:
            record = state.records.get(entry.record_id) or new_records.get(entry.record_id)
            reason: str | None = None
            if entry.type is EntryType.RECORD:
                reason = record_problem(entry) or ("record already exists" if record else None)
                if reason is None:
                    new_records[entry.record_id] = record_info(entry)
            elif entry.type is EntryType.ACCESS:
                reason = access_problem(entry)
            elif record is None:
                pass
            elif entry.type is EntryType.SGRANT or (
                entry.type is EntryType.REVOKE and entry.author != record.owner
            ):
                reason = self._stealth_problem(entry, record, stealthy, old_new)
                if isinstance(entry.body, StealthGrantBody):
                    granted.add((entry.record_id, entry.body.one_time))
            elif entry.type in ATTESTS:
                reason = self._attest_problem(entry, record, granted)
            elif entry.author != record.owner:
                reason = f"{entry.type} not by the record's owner"
            else:
                _note_owner_change(entry, granted, old_new, stealthy)
            if reason is not None:
                found[entry.hash] = reason
        return found

    def _attest_problem(self, entry: Entry, record: RecordInfo, granted: set[Pair]) -> str | None:
        body = entry.body
        assert isinstance(body, AttestBody | ClaimBody)  # a claim is an attestation here
        pair = (entry.record_id, entry.author)
        if body.manifest_hash != record.manifest_hash:
            return "attests a different manifest"
        if entry.author != record.owner and pair not in self._ever and pair not in granted:
            return "attester was never granted the record"
        return None

    def _stealth_problem(
        self,
        entry: Entry,
        record: RecordInfo,
        stealthy: dict[bytes, list[Entry]],
        old_new: dict[bytes, set[bytes]],
    ) -> str | None:
        """Why the stealth rules would refuse `entry` after the record's held entries
        and the batch's earlier ones (`old_new`: the batch's old-format grantees)."""
        record_id = record.record_id
        batch = stealthy.setdefault(record_id, [])
        batch.append(entry)
        decided = stealth_slice(
            record.owner,
            [*self._stealthy.get(record_id, ()), *batch],
            old_grantees=self._old_grantees.get(record_id, set()) | old_new.get(record_id, set()),
            tombstoned=record_id in self._tomb,
        )
        return decided.rejected.get(entry.hash)


def _note_owner_change(
    entry: Entry,
    granted: set[Pair],
    old_new: dict[bytes, set[bytes]],
    stealthy: dict[bytes, list[Entry]],
) -> None:
    """An owner's entry earlier in a batch that later entries of the batch may rely on."""
    body = entry.body
    if isinstance(body, GrantBody):
        granted.add((body.record_id, body.grantee))
        old_new.setdefault(body.record_id, set()).add(body.grantee)
    elif isinstance(body, RevokeBody):
        stealthy.setdefault(body.record_id, []).append(entry)
