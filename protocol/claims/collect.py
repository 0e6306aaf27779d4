"""Which claim events one record's ledger entries make, for a holder of its record key.

An insurer holding a grant of a record (so its record key) asks the node for
the record's entries and gets here one event per accepted claim whose author
is a patient (co-owner) grant the owner made: a claim by any other grantee (a
clinician, a key she shared with) proves nothing about her and makes no event.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from protocol.claims.disclosure import DisclosureError, open_sealed
from protocol.claims.event import ClaimEvent, InvalidEvent, Verified, verify
from protocol.ledger.entries import ClaimBody, Entry, EntryType, StealthGrantBody


@dataclass
class Collected:
    events: list[Verified] = field(default_factory=list)
    skipped: dict[bytes, str] = field(default_factory=dict)  # claim entry hash -> why


def collect(
    entries: Iterable[tuple[Entry, str | None]],
    record_key: bytes,
    certificate: bytes | None = None,
) -> Collected:
    """Events from one record's (entry, rejected reason) pairs, in claim order."""
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
            event = ClaimEvent(record.raw, grant.raw, entry.raw, disclosure, certificate)
            found.events.append(verify(event))
        except (DisclosureError, InvalidEvent) as exc:
            found.skipped[entry.hash] = str(exc)
    return found
