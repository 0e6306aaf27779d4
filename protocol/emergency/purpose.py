"""Whether a read right comes from break-glass: the purpose a node states unasked, the flag
an audit shows whatever was stated.

A node that reads a record only because its owner opened emergency access for
it reads for emergency treatment (ETREAT), and says so without its operator
having to remember `--purpose emergency`. The owner writes the expiring grant
and its `emergency` entry in one batch (node/emergency/service.py): a grant
"came with" an emergency when the owner's accepted emergency entry names the
same record, the grantee as requester, and the grant's expiry. Only the owner's
entries count (the state refuses anyone else's grants and emergencies), so no
member can make another node's reads look like emergencies. Pure: the clock
and the entries are passed in.
"""

from __future__ import annotations

from collections.abc import Iterable

from protocol.emergency.review import Access, accesses
from protocol.ledger.entries import Entry, GrantBody, RevokeBody
from protocol.ledger.state import LedgerState, change_rank
from protocol.records import permit
from protocol.records.purpose import Purpose


def came_with(
    owner: bytes, record_id: bytes, grantee: bytes, expires_at: int, found: Iterable[Access]
) -> Access | None:
    """The owner's emergency access a grant (to `grantee`, ending `expires_at`) came with;
    None for an ordinary grant (one that never expires never came with one)."""
    if expires_at == 0:
        return None
    for access in found:
        body = access.body
        if access.entry.author == owner and (body.record_id, body.requester, body.expires_at) == (
            record_id,
            grantee,
            expires_at,
        ):
            return access
    return None


def default_purpose(
    state: LedgerState,
    record_id: bytes,
    reader: bytes,
    entries: Iterable[tuple[Entry, str | None]],
    now_ms: int,
) -> Purpose:
    """The purpose of a read by `reader` whose caller stated none: ETREAT when its current
    grant of the record came with an emergency access, TREAT otherwise (the owner, an
    ordinary grant, no current grant: the read is refused as ever). `entries` (the
    record's, each with its rejection reason) are read only for an expiring grant."""
    record = state.records.get(record_id)
    if record is None or reader == record.owner:
        return Purpose.TREAT
    grant = state.grant_for(record_id, reader, now_ms)
    if grant is None or grant.stealth or grant.expires_at == 0:
        return Purpose.TREAT
    emergency = came_with(record.owner, record_id, reader, grant.expires_at, accesses(entries))
    return Purpose.ETREAT if emergency is not None else Purpose.TREAT


def emergency_at(
    owner: bytes,
    record_id: bytes,
    reader: bytes,
    *,
    at_ms: int,
    accepted: Iterable[Entry],
    found: Iterable[Access],
) -> Access | None:
    """The emergency access a read by `reader` stated at `at_ms` may have run under.

    The statement's time is the reader's word: holders serve it until LIFETIME_MS after
    (protocol.records.permit), each checking the grant in force when it serves. So the
    owner's grant or revoke of the record to `reader` in force at `at_ms` (the latest
    stamped at or before it; entry times are floored to the minute) counts, and so does
    every one stamped in the statement's lifetime after it: if one is a grant that came
    with an emergency, so did the read. Whatever the read states or when it says it was
    made, a reader under break-glass cannot state it away (a statement backdated to
    before the emergency grant included); at worst an ordinary read just before a
    break-glass is shown under it too. (Dating a statement up to MAX_SKEW_MS ahead, past
    the owner's later ordinary grant, gains a reader nothing it was not then given.)"""
    start, end = at_ms, at_ms + permit.LIFETIME_MS
    before: Entry | None = None
    within: list[Entry] = []
    for entry in accepted:
        body = entry.body
        if not (
            isinstance(body, GrantBody | RevokeBody)
            and entry.author == owner
            and body.record_id == record_id
            and body.grantee == reader
            and entry.timestamp <= end
        ):
            continue
        if entry.timestamp > start:
            within.append(entry)
        elif before is None or change_rank(entry) > change_rank(before):
            before = entry
    found = list(found)
    for entry in ([before] if before is not None else []) + sorted(within, key=change_rank):
        if isinstance(entry.body, GrantBody):
            access = came_with(owner, record_id, reader, entry.body.expires_at, found)
            if access is not None:
                return access
    return None
