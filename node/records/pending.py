"""Bytes each writer keeps on this node for records the ledger does not know.

A member could otherwise fill other nodes' disks with shards of records it
never writes to the ledger. Every batch of an unrecorded record is charged
to the record's writer (the first sender of its blocks, as holdings notes
it): reserved before anything is written, refused when the writer's pending
bytes would pass the cap, settled to what holdings really added after.
The record's bytes leave the count when the ledger learns the record or its
shards are deleted. Everything is O(1) per batch and kept in memory, rebuilt
from holdings at start. Runs on the trio thread only (no locks).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Reservation:
    record_id: bytes
    writer: bytes
    size: int


class PendingBytes:
    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._records: dict[bytes, tuple[bytes, int]] = {}  # record -> (writer, bytes)
        self._writers: dict[bytes, int] = {}  # writer -> bytes held and reserved

    def rebuild(
        self,
        weights: Iterable[tuple[bytes, bytes | None, int]],
        recorded: Callable[[bytes], bool],
    ) -> None:
        """Start from holdings' (record, uploader, weight) rows: the unrecorded ones count."""
        self._records.clear()
        self._writers.clear()
        for record_id, uploader, weight in weights:
            if not recorded(record_id):
                self._add(record_id, uploader or b"", weight)

    def of(self, writer: bytes) -> int:
        """Bytes of `writer` pending here (stored or reserved)."""
        return self._writers.get(writer, 0)

    def writer_of(self, record_id: bytes) -> bytes | None:
        entry = self._records.get(record_id)
        return None if entry is None else entry[0]

    def __contains__(self, record_id: object) -> bool:
        return record_id in self._records

    def reserve(self, record_id: bytes, sender: bytes, size: int) -> Reservation | None:
        """Charge `size` to the record's writer (the sender, for a new record); None
        when that would pass the cap (nothing is charged then)."""
        writer = self.writer_of(record_id) or sender
        if self.of(writer) + size > self.cap:
            return None
        self._writers[writer] = self.of(writer) + size
        return Reservation(record_id, writer, size)

    def settle(self, reservation: Reservation, added: int, *, keep: bool) -> None:
        """The batch is done: the reservation goes, and what it added to the record's
        weight counts unless the record is no longer pending (`keep` False)."""
        self._sub(reservation.writer, reservation.size)
        if keep and added:
            self._add(reservation.record_id, reservation.writer, added)

    def release(self, record_id: bytes) -> int:
        """The ledger knows the record, or its shards are gone: its bytes leave the count."""
        entry = self._records.pop(record_id, None)
        if entry is None:
            return 0
        writer, weight = entry
        self._sub(writer, weight)
        return weight

    def _add(self, record_id: bytes, writer: bytes, weight: int) -> None:
        held_by, before = self._records.get(record_id, (writer, 0))
        self._records[record_id] = (held_by, before + weight)
        self._writers[held_by] = self.of(held_by) + weight

    def _sub(self, writer: bytes, amount: int) -> None:
        left = self.of(writer) - amount
        if left > 0:
            self._writers[writer] = left
        else:
            self._writers.pop(writer, None)
