"""Emergency accesses from ledger entries: which are open (not yet signed off).

Emergency and sign-off entries change no view of the ledger state (only their
owner may write them, and the state rejects the rest); this fold reads them
from the accepted entries of a ledger (or of one record), so the owner's
`emergency review` and the patient's history agree on what is flagged.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from protocol.ledger.entries import EmergencyBody, EmergencySignoffBody, Entry


@dataclass(frozen=True)
class Access:
    entry: Entry  # the emergency entry
    body: EmergencyBody
    signoff: Entry | None  # the owner's first accepted sign-off of it

    @property
    def signed_off(self) -> bool:
        return self.signoff is not None


def accesses(entries: Iterable[tuple[Entry, str | None]]) -> list[Access]:
    """Accepted emergency entries with their sign-offs, oldest first. A sign-off counts
    only by the emergency entry's own author (the record's owner) for the same record."""
    emergencies: dict[bytes, Entry] = {}
    signoffs: list[Entry] = []
    for entry, rejected in entries:
        if rejected is not None:
            continue
        if isinstance(entry.body, EmergencyBody):
            emergencies[entry.hash] = entry
        elif isinstance(entry.body, EmergencySignoffBody):
            signoffs.append(entry)
    signed: dict[bytes, Entry] = {}
    for entry in sorted(signoffs, key=lambda e: (e.timestamp, e.hash)):
        body = entry.body
        assert isinstance(body, EmergencySignoffBody)
        target = emergencies.get(body.emergency)
        if (
            target is not None
            and target.author == entry.author
            and target.record_id == body.record_id
        ):
            signed.setdefault(body.emergency, entry)
    found = []
    for entry in sorted(emergencies.values(), key=lambda e: (e.timestamp, e.hash)):
        assert isinstance(entry.body, EmergencyBody)
        found.append(Access(entry, entry.body, signed.get(entry.hash)))
    return found
