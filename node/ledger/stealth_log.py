"""The stealth grants this node holds, in the order it took them in: a wallet's cursor.

A wallet scans every stealth grant once (view tags first), so it asks for the
grants after the last position it saw. Positions count entries in this
node's acceptance order, which is also their order on disk (an entry is
stored only once accepted, and loading reads the rows in that order), so a
cursor survives a restart. Entries a frozen feed drops leave their position
taken until the next restart, when later positions move down by as many: a
wallet that must not miss a grant after such a freeze scans again from 0
(40 µs a grant). Each record's taken indices are kept too: a writer picks
the smallest free one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from protocol.ledger.entries import Entry, StealthGrantBody
from protocol.ledger.stealth import next_index


@dataclass
class StealthLog:
    entries: list[Entry] = field(default_factory=list)  # position p is entries[p - 1]
    _indices: dict[bytes, set[int]] = field(default_factory=dict)

    def add(self, accepted: Iterable[Entry]) -> None:
        for entry in accepted:
            body = entry.body
            if isinstance(body, StealthGrantBody):
                self.entries.append(entry)
                self._indices.setdefault(body.record_id, set()).add(body.index)

    def after(
        self, cursor: int, limit: int, record_id: bytes | None = None
    ) -> tuple[list[tuple[int, Entry]], int]:
        """Up to `limit` (position, entry) after `cursor`, and the cursor to ask from next
        (past what was looked at, even when `record_id` filtered it out)."""
        found: list[tuple[int, Entry]] = []
        position = max(0, cursor)
        while position < len(self.entries) and len(found) < limit:
            entry = self.entries[position]
            position += 1
            if record_id is None or entry.record_id == record_id:
                found.append((position, entry))
        return found, position

    def next_index(self, record_id: bytes) -> int:
        """The smallest index no stealth grant of the record held here uses."""
        return next_index(self._indices.get(record_id, set()))
