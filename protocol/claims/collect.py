"""Which claim events one record's ledger entries make, for a holder of its record key.

An insurer holding a grant of a record (so its record key) asks the node for
the record's entries and gets here one event per accepted claim whose author
is a patient (co-owner) grant the owner made: a claim by any other grantee (a
clinician, a key she shared with) proves nothing about her and makes no event.

`collect_records` is the part the CLI (`events --as`, entries over the control
socket) and the daemon (`GET /v1/events`, its own ledger) share: entries of
many records in, the events of the records a key is known for out, each
carrying the owner's certificate when the caller knows one that verifies.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from protocol.claims.disclosure import DisclosureError, open_sealed
from protocol.claims.event import ClaimEvent, InvalidEvent, Verified, verify
from protocol.ledger.entries import ClaimBody, Entry, EntryType, RecordBody, StealthGrantBody

NO_CERTIFICATE = "the owner's certificate is unknown here (its node was never met)"


@dataclass
class Collected:
    events: list[Verified] = field(default_factory=list)
    skipped: dict[bytes, str] = field(default_factory=dict)  # claim entry hash -> why
    # claim entry hash -> why its event carries no certificate (the event is still valid)
    uncertified: dict[bytes, str] = field(default_factory=dict)


def collect(
    entries: Iterable[tuple[Entry, str | None]],
    record_key: bytes,
    certificate: bytes | None = None,
) -> Collected:
    """Events from one record's (entry, rejected reason) pairs, in claim order.

    A certificate that does not verify for the record (expired at its time, for
    another key) is left out of the event rather than costing the event: the
    reason is in `uncertified`, and `verify --authority` refuses such an event.
    """
    accepted = [e for e, rejected in entries if rejected is None]
    found = Collected()
    records = [e for e in accepted if e.type is EntryType.RECORD]
    if not records:
        return found
    record = records[0]
    patients: dict[bytes, Entry] = {}
    for entry in accepted:
        body = entry.body
        if isinstance(body, StealthGrantBody) and body.patient and entry.author == record.author:
            patients.setdefault(body.one_time, entry)
    for entry in accepted:
        body = entry.body
        if not isinstance(body, ClaimBody):
            continue
        grant = patients.get(entry.author)
        if grant is None:
            found.skipped[entry.hash] = "signed by no patient grant of the record's owner"
            continue
        try:
            disclosure = open_sealed(
                record_key, body.record_id, body.manifest_hash, body.sealed, body.disclosure
            )
            event = ClaimEvent(record.raw, grant.raw, entry.raw, disclosure, None)
            found.events.append(_with_certificate(event, certificate, entry.hash, found))
        except (DisclosureError, InvalidEvent) as exc:
            found.skipped[entry.hash] = str(exc)
    return found


def _with_certificate(
    event: ClaimEvent, certificate: bytes | None, claim: bytes, found: Collected
) -> Verified:
    """The event with the certificate if it verifies, else without it (noted)."""
    plain = verify(event)  # InvalidEvent: no event at all
    if certificate is None:
        found.uncertified[claim] = NO_CERTIFICATE
        return plain
    try:
        return verify(ClaimEvent(event.record, event.grant, event.claim, event.disclosure,
                                 certificate))  # fmt: skip
    except InvalidEvent as exc:
        found.uncertified[claim] = str(exc)
        return plain


def collect_records(
    entries: Iterable[tuple[Entry, str | None]],
    keys: Mapping[bytes, bytes],
    certificate_of: Callable[[bytes], bytes | None],
) -> Collected:
    """The events of every record in `keys` (record id -> record key) among `entries`
    (any mix of records; others are ignored), ordered by claim time then claim hash.

    `certificate_of(owner node key)` gives the owner's encoded certificate, or
    None when the caller knows none: the event then carries none, and says why.
    """
    by_record: dict[bytes, list[tuple[Entry, str | None]]] = {}
    for entry, rejected in entries:
        if entry.record_id in keys:
            by_record.setdefault(entry.record_id, []).append((entry, rejected))
    found = Collected()
    for record_id in sorted(by_record):
        rows = by_record[record_id]
        owner = _owner(rows)
        if owner is None:
            continue
        part = collect(rows, keys[record_id], certificate_of(owner))
        found.events.extend(part.events)
        found.skipped.update(part.skipped)
        found.uncertified.update(part.uncertified)
    found.events.sort(key=lambda v: (v.attested_at, v.claim_entry))
    return found


def _owner(rows: list[tuple[Entry, str | None]]) -> bytes | None:
    for entry, rejected in rows:
        if rejected is None and isinstance(entry.body, RecordBody):
            return entry.body.owner
    return None
